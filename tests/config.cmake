# The job configuration (io/config*.c): the unit suite, the check that
# docs/config.md's generated reference matches the schema, and the tool that
# regenerates it:
#   cmake --build <build dir> --target update-config-doc
cu_add_test(test_config SOURCES ${CU_TEST_DIR}/test_config.c LIBS cu_io LABELS unit)
cu_add_test(test_config_doc SOURCES ${CU_TEST_DIR}/test_config_doc.c LIBS cu_io LABELS unit)
# so that the binaries find fixtures and docs when run by hand, too
target_compile_definitions(test_config PRIVATE CU_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
target_compile_definitions(test_config_doc PRIVATE CU_TEST_SOURCE_DIR="${PROJECT_SOURCE_DIR}")

add_executable(gen-config-doc ${PROJECT_SOURCE_DIR}/tools/gen_config_doc.c)
target_link_libraries(gen-config-doc PRIVATE cu_io)
add_custom_target(update-config-doc
                  COMMAND gen-config-doc ${PROJECT_SOURCE_DIR}/docs/config.md
                  COMMENT "Regenerating the reference in docs/config.md"
                  VERBATIM)
