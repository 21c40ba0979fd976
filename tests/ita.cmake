# codex-ita: unit tests of its parts (keys, job directory reader, config,
# tracing) and tests that start the real server on a loopback port and speak
# HTTP to it (tests/ita_server.py), plus the dashboard in headless Chromium
# (tests/ita_dashboard.py over the DevTools pipe, tests/dashboard/ with playwright-core).
if(TARGET cu_ita)
  cu_add_test(test_ita SOURCES ${CU_TEST_DIR}/test_ita.c LIBS cu_ita LABELS "unit;ita")
  foreach(case config keys_cli auth trace jobs robustness sse prometheus shutdown tls live_job
               hygiene tests_run submit sched hostile
               exhaustion)
    add_test(NAME ita_${case}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/ita_server.py $<TARGET_FILE:codex-ita>
                     $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR} ${case})
    set_tests_properties(ita_${case} PROPERTIES LABELS ita TIMEOUT 120)
  endforeach()
  # issue 19: Prometheus exposition checked by promtool, and the example alert rules
  add_test(NAME ita_monitoring
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/ita_server.py $<TARGET_FILE:codex-ita>
                   $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR} monitoring)
  set_tests_properties(ita_monitoring PROPERTIES LABELS ita TIMEOUT 120)
  # issue 18: attacks on the service and the bounds that hold them
  foreach(case pool pool_submit slow_header write_timeout reserve rapid_reset audit job_index
               smuggling renegotiation)
    add_test(NAME ita_attack_${case}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/ita_attack.py $<TARGET_FILE:codex-ita>
                     $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR} ${case})
    set_tests_properties(ita_attack_${case} PROPERTIES LABELS ita TIMEOUT 120)
  endforeach()
  find_program(CU_CHROMIUM NAMES chromium chromium-browser)
  if(CU_CHROMIUM)
    add_test(NAME ita_dashboard
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/ita_dashboard.py $<TARGET_FILE:codex-ita>
                     $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR} ${CU_CHROMIUM})
    set_tests_properties(ita_dashboard PROPERTIES LABELS ita TIMEOUT 120)
    add_test(NAME ita_dashboard_live
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/ita_dashboard.py $<TARGET_FILE:codex-ita>
                     $<TARGET_FILE:codexctl> ${PROJECT_SOURCE_DIR} ${CU_CHROMIUM} live)
    set_tests_properties(ita_dashboard_live PROPERTIES LABELS ita TIMEOUT 120)
    # The dashboard's views driven by playwright-core (tests/dashboard,
    # installed by scripts/install-test-packages.sh dashboard) on this
    # Chromium; screenshots go to dashboard-shots/ in the build tree.
    find_program(CU_NODE NAMES node nodejs)
    if(CU_NODE)
      foreach(case scale job compare)
        add_test(NAME ita_dashboard_${case}
                 COMMAND ${CU_NODE} --test --test-reporter=spec
                         ${CU_TEST_DIR}/dashboard/${case}.test.mjs
                 WORKING_DIRECTORY ${CU_TEST_DIR}/dashboard)
        set_tests_properties(ita_dashboard_${case} PROPERTIES LABELS ita TIMEOUT 240
          ENVIRONMENT "CODEX_ITA=$<TARGET_FILE:codex-ita>;CODEXCTL=$<TARGET_FILE:codexctl>;CU_SRC=${PROJECT_SOURCE_DIR};CU_CHROMIUM=${CU_CHROMIUM};CU_SHOTS=${PROJECT_BINARY_DIR}/dashboard-shots")
      endforeach()
    endif()
  endif()
endif()
