# HDF5 datasets: the writer and the "hdf5" token source (unit), and
# codexctl prepare end to end (tests/prepare_e2e.py).
cu_add_test(test_dataset SOURCES ${CU_TEST_DIR}/test_dataset.c LIBS cu_io LABELS unit)
foreach(case usage select jsonl policies determinism split gpt2 streaming specials)
  add_test(NAME prepare_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/prepare_e2e.py $<TARGET_FILE:codexctl>
                   ${PROJECT_SOURCE_DIR} ${case})
  # streaming limits the address space (RLIMIT_AS) below the corpus size,
  # which a sanitizer build cannot run under: it is not a `unit` test
  set(labels unit)
  if(case STREQUAL "streaming")
    set(labels slow)
  endif()
  set_tests_properties(prepare_${case} PROPERTIES LABELS "${labels}" TIMEOUT 300
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
