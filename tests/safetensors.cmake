# safetensors reading and writing, Hugging Face GPT-2 and Llama import, codexctl export.
cu_add_test(test_safetensors SOURCES ${CU_TEST_DIR}/test_safetensors.c LIBS cu_io LABELS unit)

# tests/reference/hf_gpt2_ref.py builds a tiny Hugging Face GPT-2 in
# PyTorch and checks our import (hf_dump), `codexctl export --format peft`
# and `--format merged` against it (label reference).
add_executable(hf_dump ${CU_TEST_DIR}/hf_dump.c)
target_link_libraries(hf_dump PRIVATE cu_io)

if(CU_PYTHON_ORACLE)
  add_test(NAME reference_hf_gpt2
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_gpt2_ref.py
                   --dumper $<TARGET_FILE:hf_dump> --codexctl $<TARGET_FILE:codexctl>
                   import peft merged)
  # 77: PyTorch is not installed for the oracle interpreter
  set_tests_properties(reference_hf_gpt2 PROPERTIES LABELS reference SKIP_RETURN_CODE 77
                       TIMEOUT 300 ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
  # Real codex-train runs (LoRA from random weights, and a full run whose
  # weights cannot move) exported and compared.
  add_test(NAME reference_hf_export_train
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_gpt2_ref.py
                   --dumper $<TARGET_FILE:hf_dump> --codexctl $<TARGET_FILE:codexctl>
                   --codex-train $<TARGET_FILE:codex-train> train)
  set_tests_properties(reference_hf_export_train PROPERTIES LABELS reference
                       SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endif()

# tests/reference/hf_llama_ref.py: a tiny Llama (GQA, untied head) written in
# PyTorch from the formulas, saved with HF names in F32 and BF16; our import
# (logits), LoRA gradients (hf_dump grads), PEFT and merged export against it.
if(CU_PYTHON_ORACLE)
  add_test(NAME reference_hf_llama
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_llama_ref.py
                   --dumper $<TARGET_FILE:hf_dump> --codexctl $<TARGET_FILE:codexctl>
                   import grads peft merged)
  set_tests_properties(reference_hf_llama PROPERTIES LABELS reference SKIP_RETURN_CODE 77
                       TIMEOUT 300 ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
endif()

# tests/reference/hf_family_ref.py: the Llama-block families (Qwen2's q/k/v
# biases and tied head, Llama 3.1's llama3 and CodeLlama's linear rope
# scaling, Mistral's sliding window) and StarCoder2 (its own block) against a
# float64 PyTorch reference:
# BF16 import, LoRA gradients, PEFT and merged export, greedy generate over 32
# tokens; and the config.json fields codex-train refuses with exit 2.
if(CU_PYTHON_ORACLE)
  foreach(family qwen2 llama3 llama_linear mistral mistral_head_dim starcoder2 refuse)
    add_test(NAME reference_family_${family}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_family_ref.py
                     --dumper $<TARGET_FILE:hf_dump> --codexctl $<TARGET_FILE:codexctl>
                     --train $<TARGET_FILE:codex-train> ${family})
    set_tests_properties(reference_family_${family} PROPERTIES LABELS reference
                         SKIP_RETURN_CODE 77 TIMEOUT 300 ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
  endforeach()
endif()

# io/peft: PEFT names both ways, adapter_config.json, adapter reading errors.
cu_add_test(test_peft SOURCES ${CU_TEST_DIR}/test_peft.c LIBS cu_io LABELS unit)
