# cu_slurm's parsing, quoting and scripts without a Slurm (the source sits
# beside the library, slurm/tests/).
if(TARGET cu_slurm)
  cu_add_test(test_slurm SOURCES ${PROJECT_SOURCE_DIR}/slurm/tests/test_slurm.c LIBS cu_slurm cu_rundir
              LABELS unit slurm)
endif()

# codexctl against a real single-node Slurm that each test starts and stops
# itself (tests/slurm_e2e.py). A test exits 77, shown as skipped, only when
# the Slurm or munge programs are missing. The tests share the machine's
# cores and each starts its own slurmctld/slurmd, so they run one at a time.
foreach(case dry_run preempt_resume preempt_mpirun timeout cancel sweep_local)
  add_test(NAME slurm_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/slurm_e2e.py $<TARGET_FILE:codexctl>
                   $<TARGET_FILE:codex-train> ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(slurm_${case} PROPERTIES LABELS slurm TIMEOUT 400 SKIP_RETURN_CODE 77
                       RESOURCE_LOCK slurm_cluster ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
# codex-ita submitting to, watching and cancelling jobs on the same kind of
# single-node Slurm (POST /v1/jobs, the scheduler view, pre-emption, TIMEOUT).
if(TARGET codex-ita)
  add_test(NAME slurm_ita
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/slurm_e2e.py $<TARGET_FILE:codexctl>
                   $<TARGET_FILE:codex-train> ${PROJECT_SOURCE_DIR} ita $<TARGET_FILE:codex-ita>)
  set_tests_properties(slurm_ita PROPERTIES LABELS slurm TIMEOUT 600 SKIP_RETURN_CODE 77
                       RESOURCE_LOCK slurm_cluster ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endif()
