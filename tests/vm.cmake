# The sandbox's cgroup v2 path on a real kernel with a pure cgroup v2 tree:
# tests/vm/cgroup2.sh boots Debian's kernel under qemu (TCG) and runs
# test_safety_sandbox_vm there, under the service's own cgroup and under a
# delegated one. Label vm; exits 77 (skipped) where qemu-system-x86,
# busybox-static or the kernel (`tests/vm/cgroup2.sh --fetch`) is missing.
#
# test_safety_sandbox_vm is test_safety_sandbox built from the same sources
# for a baseline x86-64 CPU: the rest of the tree is built -march=native, and
# qemu's emulated CPU has no AVX-512.
if(TARGET cu_safety AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  add_executable(test_safety_sandbox_vm
                 ${CU_TEST_DIR}/test_safety_sandbox.c ${CU_TEST_DIR}/harness.c
                 ${PROJECT_SOURCE_DIR}/safety/sandbox.c ${PROJECT_SOURCE_DIR}/safety/sandbox_cg.c
                 ${PROJECT_SOURCE_DIR}/core/error.c ${PROJECT_SOURCE_DIR}/core/timer.c)
  target_include_directories(test_safety_sandbox_vm PRIVATE ${CU_TEST_DIR} ${PROJECT_SOURCE_DIR})
  target_compile_options(test_safety_sandbox_vm PRIVATE -march=x86-64-v2 -mtune=generic)
  target_link_libraries(test_safety_sandbox_vm PRIVATE PkgConfig::SECCOMP)
  add_test(NAME vm_cgroup2_sandbox
           COMMAND bash ${CU_TEST_DIR}/vm/cgroup2.sh $<TARGET_FILE:test_safety_sandbox_vm>)
  set_tests_properties(vm_cgroup2_sandbox PROPERTIES LABELS vm TIMEOUT 1000 SKIP_RETURN_CODE 77)
endif()
