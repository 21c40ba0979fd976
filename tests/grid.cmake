# ScaLAPACK process grid (mpi/grid.c): distributed SVD/QR against LAPACK on
# 1 rank (unit, also under ASan) and under mpirun on 2 and 4 ranks (mpi).
cu_add_test(test_grid SOURCES ${CU_TEST_DIR}/test_grid.c LIBS cu_mpi LABELS unit)
foreach(n 2 4)
  add_test(NAME test_grid_np${n}
           COMMAND ${MPIEXEC_EXECUTABLE} ${MPIEXEC_NUMPROC_FLAG} ${n} --oversubscribe
                   $<TARGET_FILE:test_grid>)
  set_tests_properties(test_grid_np${n} PROPERTIES LABELS mpi TIMEOUT 300
                       ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endforeach()
