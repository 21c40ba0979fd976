# ScaLAPACK process grid (mpi/grid.c) and the adapters initialised with it
# (jobs/lora_init.c): distributed SVD/QR against LAPACK, PiSSA/OLoRA
# invariants. Each runs on 1 rank (unit, also under ASan) and under mpirun on
# more ranks (mpi).
cu_add_test(test_grid SOURCES ${CU_TEST_DIR}/test_grid.c LIBS cu_mpi LABELS unit)
cu_add_test(test_lora_init SOURCES ${CU_TEST_DIR}/test_lora_init.c LIBS cu_jobs LABELS unit)
# Under ASan, Open MPI's own allocations that live until exit are suppressed
# (tests/fixtures/mpi/lsan.supp); the slow unwinder and keeping MPI's plugins
# loaded give the full stacks the suppressions match on.
foreach(t test_grid test_lora_init)
  set_tests_properties(${t} PROPERTIES ENVIRONMENT
    "OPENBLAS_NUM_THREADS=1;CU_SOURCE_DIR=${PROJECT_SOURCE_DIR};OMPI_MCA_mca_base_component_disable_dlclose=1;ASAN_OPTIONS=fast_unwind_on_malloc=0;LSAN_OPTIONS=suppressions=${CU_TEST_DIR}/fixtures/mpi/lsan.supp")
endforeach()
set(CU_MPI_TEST_ENV "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
foreach(n 2 4)
  add_test(NAME test_grid_np${n}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                   $<TARGET_FILE:test_grid>)
  set_tests_properties(test_grid_np${n} PROPERTIES LABELS mpi TIMEOUT 300
                       ENVIRONMENT "${CU_MPI_TEST_ENV}")
endforeach()
add_test(NAME test_lora_init_np2
         COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} 2 --oversubscribe
                 $<TARGET_FILE:test_lora_init>)
set_tests_properties(test_lora_init_np2 PROPERTIES LABELS mpi TIMEOUT 300
                     ENVIRONMENT "${CU_MPI_TEST_ENV}")

# PiSSA/OLoRA training, resume and export, codexctl resize / merge: the real
# binaries under mpirun (tests/adapter_e2e.py). lora_logits prints a model's
# logits so the driver can compare a run, its exports and a base + adapter.
add_executable(lora_logits ${CU_TEST_DIR}/lora_logits.c)
target_link_libraries(lora_logits PRIVATE cu_jobs)
foreach(case pissa_ranks pissa_resume pissa_export resize_merge)
  add_test(NAME adapter_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/adapter_e2e.py ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(adapter_${case} PROPERTIES LABELS mpi TIMEOUT 600
                       DEPENDS lora_logits)
endforeach()
