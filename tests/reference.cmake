# Whole-model checks against an independent PyTorch GPT-2 + LoRA (label
# reference): ref_dump runs the C model on a tiny fixed problem and dumps
# weights, batch, loss and gradients (or an AdamW loss trajectory) into a
# temporary directory; tests/reference/gpt2_lora_ref.py recomputes them in
# float64 and requires the loss within 1e-5, every gradient tensor within
# 1e-3 and every AdamW step's loss within 1e-4 (relative).
add_executable(ref_dump ${CU_TEST_DIR}/ref_dump.c)
target_link_libraries(ref_dump PRIVATE cu_model)

if(CU_PYTHON_ORACLE)
  set(CU_REF_SCRIPT ${CU_TEST_DIR}/reference/gpt2_lora_ref.py)

  # cu_add_reference_test(name ENV var=value... ARGS script-argument...)
  function(cu_add_reference_test name)
    cmake_parse_arguments(R "" "" "ENV;ARGS" ${ARGN})
    add_test(NAME ${name} COMMAND ${CU_PYTHON_ORACLE} ${CU_REF_SCRIPT}
                                  --dumper $<TARGET_FILE:ref_dump> ${R_ARGS})
    set(env OPENBLAS_NUM_THREADS=1 ${R_ENV})
    # 77: PyTorch is not installed for the oracle interpreter
    set_tests_properties(${name} PROPERTIES LABELS reference SKIP_RETURN_CODE 77 TIMEOUT 120
                         ENVIRONMENT "${env}")
  endfunction()

  # LoRA on all-linear targets: plain, rsLoRA, with dropout; and on two
  # targets only, where the backward stops inside the lowest block.
  cu_add_reference_test(reference_gpt2_lora ARGS lora rslora lora_dropout lora_partial)
  cu_add_reference_test(reference_gpt2_full ARGS full)
  cu_add_reference_test(reference_gpt2_adamw ARGS adamw_lora adamw_full)

  # The check can fail: one gradient element of the lowest adapter is moved
  # by 1% of the tensor's scale, and the test passes only if exactly that
  # tensor is reported. (Not WILL_FAIL: that would also pass on a crash or a
  # missing dump; --expect-fail checks the failure is the right one.)
  cu_add_reference_test(reference_detects_corruption
                        ENV CU_REF_CORRUPT=h.0.attn.c_attn.lora_A
                        ARGS --expect-fail h.0.attn.c_attn.lora_A lora)
endif()

# train.precision bf16 against PyTorch's bf16 autocast on the same weights
# (tests/reference/bf16_ref.py): loss within 1e-2, LoRA gradients within 5e-2
# norm-wise, GPT-2 and Llama; and the same with oneDNN's ISA limited below
# AVX-512 BF16: to AVX512_CORE (oneDNN's own bf16 emulation) and to AVX2
# (no oneDNN bf16 matmul at all: the backend's emulation on sgemm).
if(CU_PYTHON_ORACLE)
  foreach(variant default avx512_core no_avx512)
    set(extra)
    if(variant STREQUAL "avx512_core")
      set(extra --max-isa AVX512_CORE --expect-kernel oneDNN)
    elseif(variant STREQUAL "no_avx512")
      set(extra --max-isa AVX2 --expect-kernel emulated)
    endif()
    add_test(NAME reference_bf16_${variant}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/bf16_ref.py
                     --dumper $<TARGET_FILE:ref_dump> ${extra} bf16_lora bf16_llama_lora)
    set_tests_properties(reference_bf16_${variant} PROPERTIES LABELS reference
                         SKIP_RETURN_CODE 77 TIMEOUT 120 ENVIRONMENT "OPENBLAS_NUM_THREADS=1")
  endforeach()
endif()
