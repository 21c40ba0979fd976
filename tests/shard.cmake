# train.shard_optimizer and parallel checkpoints (tests/shard_e2e.py): sharded
# and unsharded bit-identical on 1, 2, 4 ranks; stop on 4 sharded, resume on
# 2 sharded and 1 unsharded; a corrupted slice falls back.
foreach(case bitwise resume corrupt)
  add_test(NAME shard_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/shard_e2e.py $<TARGET_FILE:codex-train>
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(shard_${case} PROPERTIES LABELS mpi TIMEOUT 300 SKIP_RETURN_CODE 77)
endforeach()
