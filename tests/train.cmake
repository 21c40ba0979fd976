# End-to-end runs of codex-train under mpirun (tests/train_e2e.py).
foreach(case help bad_config demo_loss_falls full_finetune ranks_agree resume_exact
             signal_and_fallback kill9 safety exec dataset
             hf_roundtrip corrupt_checkpoint lora_init_from llama slurm_env)
  add_test(NAME train_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/train_e2e.py $<TARGET_FILE:codex-train>
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(train_${case} PROPERTIES LABELS mpi TIMEOUT 600)
endforeach()

# docs/formats.md's HDF5 layouts against h5dump -H of real files.
add_test(NAME formats_h5_layout
         COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/formats_h5.py $<TARGET_FILE:codex-train>
                 ${PROJECT_SOURCE_DIR})
set_tests_properties(formats_h5_layout PROPERTIES LABELS mpi TIMEOUT 120)

# A pre-trained Hugging Face Llama folder (BF16 shards, GQA, a Llama-3-style
# tokenizer.json) through prepare, 2-rank LoRA, export, generate and eval,
# checked against PyTorch (tests/hf_journey.py; docs/export.md's journey).
add_test(NAME hf_llama_journey
         COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/hf_journey.py
                 --train $<TARGET_FILE:codex-train> --ctl $<TARGET_FILE:codexctl>
                 --tok-encode $<TARGET_FILE:tok_encode> --dumper $<TARGET_FILE:hf_dump>)
set_tests_properties(hf_llama_journey PROPERTIES LABELS reference SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1")

# Runs you can trust (issue 13, tests/runs_e2e.py): the run directory under
# faults (a second writer, another run's identity, Ctrl-C, a rank failing
# alone, a stopped or killed rank, a rank whose main thread stalls, a full
# disk) and the agreement of codexctl and codex-ita on every status.
foreach(case lock identity sigint rank_error sigstop stall disk_full best check preflight follow agree)
  add_test(NAME runs_${case}
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/runs_e2e.py ${PROJECT_BINARY_DIR}
                   ${PROJECT_SOURCE_DIR} ${case})
  set_tests_properties(runs_${case} PROPERTIES LABELS "mpi;runs" TIMEOUT 300
                       SKIP_RETURN_CODE 77)
endforeach()

# The same journey for a Qwen2.5-Coder-style folder (q/k/v biases, tied head,
# BF16 shards; a tokenizer.json with NFC, Qwen2's Split pattern and FIM
# tokens kept as tokens): prepare, 2-rank LoRA, PEFT and merged export, eval
# equal to the job's validation loss, lora.init_from and the merged folder
# continuing (tests/hf_qwen2_journey.py).
add_test(NAME hf_qwen2_journey
         COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/hf_qwen2_journey.py
                 --train $<TARGET_FILE:codex-train> --ctl $<TARGET_FILE:codexctl>
                 --tok-encode $<TARGET_FILE:tok_encode> --dumper $<TARGET_FILE:hf_dump>)
set_tests_properties(hf_qwen2_journey PROPERTIES LABELS reference SKIP_RETURN_CODE 77 TIMEOUT 300
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
