# The command line as a new user meets it (issue 19): submit's --local dry
# run and sweep grids, export's folders and base name, warnings instead of
# refusals, shell completion for bash and zsh, and docs that match --help.
foreach(case local_dry_run sweep_grid export warmup_generate completion_bash completion_zsh docs)
  add_test(NAME cli_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/cli_e2e.py ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(cli_${case} PROPERTIES LABELS cli TIMEOUT 300)
endforeach()
