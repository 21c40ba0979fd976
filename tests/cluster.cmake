# Multi-node tests on a cluster of hosts made of namespaces of this machine
# (tests/cluster/cluster.sh; tests/cluster/cluster_e2e.py says what each case
# proves). Label cluster; a case exits 77, shown as skipped, only where
# namespaces cannot be created (not root) or, for slurm_*, Slurm is missing.
# Every case brings up its own bed under the build tree and tears it down;
# the Slurm cases also hold /tmp/cu-slurm.lock, like the slurm label's.
foreach(case bed mpi_hosts mpi_vanish slurm_nodes slurm_failover)
  add_test(NAME cluster_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/cluster/cluster_e2e.py
                   $<TARGET_FILE:codex-train> $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR}
                   ${CMAKE_BINARY_DIR}/cluster-bed-${case} ${case}
                   $<$<TARGET_EXISTS:codex-ita>:$<TARGET_FILE:codex-ita>>)
  set_tests_properties(cluster_${case} PROPERTIES LABELS cluster TIMEOUT 600 SKIP_RETURN_CODE 77
                       RESOURCE_LOCK slurm_cluster ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endforeach()
