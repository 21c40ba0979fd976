# How codex-train computes (tests/compute_e2e.py, issue 14): activation
# checkpointing and 2 threads bit-identical to a plain fp32 run; the demo in
# bf16 within 2% of fp32's validation loss.
foreach(case exact bf16_demo)
  add_test(NAME compute_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/compute_e2e.py $<TARGET_FILE:codex-train>
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(compute_${case} PROPERTIES LABELS mpi TIMEOUT 900)
endforeach()
