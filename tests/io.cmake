# Token sources, data order, HDF5 tensor files.
cu_add_test(test_io SOURCES ${CU_TEST_DIR}/test_io.c LIBS cu_io LABELS unit)
