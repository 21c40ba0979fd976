# train.shard_optimizer and parallel checkpoints (tests/shard_e2e.py): sharded
# and unsharded bit-identical on 1, 2, 4 ranks; stop on 4 sharded, resume on
# 2 sharded and 1 unsharded; a corrupted slice falls back; bf16 full
# fine-tuning with sharded fp32 master weights (bit-identical, resumable);
# eval.patience on several ranks.
foreach(case bitwise1 bitwise2 bitwise4 resume corrupt bf16 bf16resume patience)
  add_test(NAME shard_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/shard_e2e.py $<TARGET_FILE:codex-train>
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(shard_${case} PROPERTIES LABELS mpi TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()

# The reducer's fixed summation order and owner slices (tests/test_reducer.c):
# 1 rank (unit, also under ASan) and 3 and 4 ranks (mpi).
cu_add_test(test_reducer SOURCES ${CU_TEST_DIR}/test_reducer.c LIBS cu_mpi LABELS unit)
set_tests_properties(test_reducer PROPERTIES ENVIRONMENT
  "OPENBLAS_NUM_THREADS=1;OMPI_MCA_mca_base_component_disable_dlclose=1;ASAN_OPTIONS=fast_unwind_on_malloc=0;LSAN_OPTIONS=suppressions=${CU_TEST_DIR}/fixtures/mpi/lsan.supp")
foreach(n 3 4)
  add_test(NAME test_reducer_np${n}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                   $<TARGET_FILE:test_reducer>)
  set_tests_properties(test_reducer_np${n} PROPERTIES LABELS mpi TIMEOUT 120
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
