# The agents label (docs/agents.md): the OpenAPI contract, the MCP server over
# stdio and Streamable HTTP with the official MCP client SDKs, and the
# knowledge index. The JavaScript tests run with `node --test` on the npm
# packages scripts/install-test-packages.sh agents installed from the lockfile in
# tests/agents/ (offline here); test_kb is C (unit;agents).
if(TARGET cu_ita)
  cu_add_test(test_kb SOURCES ${CU_TEST_DIR}/test_kb.c LIBS cu_ita LABELS "unit;agents")
  set_tests_properties(test_kb PROPERTIES ENVIRONMENT "CU_SRC=${PROJECT_SOURCE_DIR}")
  find_program(CU_NODE NAMES node nodejs)
  if(CU_NODE)
    foreach(case openapi mcp pulls)
      add_test(NAME agents_${case}
               COMMAND ${CU_NODE} --test --test-reporter=spec
                       ${CU_TEST_DIR}/agents/${case}.test.mjs
               WORKING_DIRECTORY ${CU_TEST_DIR}/agents)
      set_tests_properties(agents_${case} PROPERTIES LABELS agents TIMEOUT 240
        ENVIRONMENT "CODEX_ITA=$<TARGET_FILE:codex-ita>;CODEXCTL=$<TARGET_FILE:codexctl>;CU_SRC=${PROJECT_SOURCE_DIR}")
    endforeach()
  endif()
endif()
