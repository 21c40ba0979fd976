# End-to-end runs of codex-train under mpirun (tests/train_e2e.py).
foreach(case help bad_config demo_loss_falls full_finetune ranks_agree resume_exact
             signal_and_fallback)
  add_test(NAME train_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/train_e2e.py $<TARGET_FILE:codex-train>
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(train_${case} PROPERTIES LABELS mpi TIMEOUT 600)
endforeach()
