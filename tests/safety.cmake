# The safety layer (safety/): detectors and their rule samples, policy,
# redaction and output checks, located findings and diffs, the scan CLI,
# the sandbox, and the rule list in docs/safety.md (regenerate it with
# `<build dir>/tests/test_safety_doc --write docs/safety.md`).
if(TARGET cu_safety)
  cu_add_test(test_safety_rules SOURCES ${CU_TEST_DIR}/test_safety_rules.c LIBS cu_safety
              LABELS unit)
  cu_add_test(test_safety_policy SOURCES ${CU_TEST_DIR}/test_safety_policy.c LIBS cu_safety
              LABELS unit)
  cu_add_test(test_safety_hits SOURCES ${CU_TEST_DIR}/test_safety_hits.c LIBS cu_safety
              LABELS unit)
  cu_add_test(test_safety_scan SOURCES ${CU_TEST_DIR}/test_safety_scan.c LIBS cu_jobs
              LABELS unit)
  cu_add_test(test_safety_sandbox SOURCES ${CU_TEST_DIR}/test_safety_sandbox.c LIBS cu_safety
              LABELS unit)
  cu_add_test(test_safety_doc SOURCES ${CU_TEST_DIR}/test_safety_doc.c LIBS cu_safety
              LABELS unit)
endif()
# The labelled corpus of tests/safety_corpus.py (380 files written at run
# time): recall and false-positive rate of `codexctl scan` above floors.
if(TARGET cu_safety AND TARGET codexctl)
  add_test(NAME safety_corpus
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/safety_corpus.py check $<TARGET_FILE:codexctl>)
  set_tests_properties(safety_corpus PROPERTIES LABELS unit TIMEOUT 300)
endif()
