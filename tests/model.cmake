# Model layers, whole-model gradients, optimizer.
cu_add_test(test_grad SOURCES ${CU_TEST_DIR}/test_grad.c ${CU_TEST_DIR}/gradcheck.c LIBS cu_model LABELS unit)
cu_add_test(test_sample SOURCES ${CU_TEST_DIR}/test_sample.c LIBS cu_model LABELS unit)
cu_add_test(test_grad_llama SOURCES ${CU_TEST_DIR}/test_grad_llama.c ${CU_TEST_DIR}/gradcheck.c LIBS cu_model LABELS unit)
# Activation checkpointing and thread count leave fp32 results bitwise
# unchanged; bf16 full fine-tuning's bf16 copy follows its fp32 masters.
cu_add_test(test_compute SOURCES ${CU_TEST_DIR}/test_compute.c LIBS cu_model LABELS unit)
# issue 14: a bf16 base lent in place from its files equals the bf16 copy
cu_add_test(test_base_map SOURCES ${CU_TEST_DIR}/test_base_map.c LIBS cu_io cu_model LABELS unit)
# issue 14: an fp32 base's bf16 cache made once, reused, equal to the bf16
# copy, rebuilt when corrupt, new for a changed source, nothing left on a
# full disk; private memory not growing with the base (measured)
cu_add_test(test_base_cache SOURCES ${CU_TEST_DIR}/test_base_cache.c LIBS cu_io cu_model LABELS unit)
# issue 14: bf16 weights kept in oneDNN's packed layout give the products
# of the same weights read in place, and follow their changes
cu_add_test(test_gemm SOURCES ${CU_TEST_DIR}/test_gemm.c LIBS cu_model LABELS unit)
# issue 14: codex-train on fp32 (sharded) and fp16 bases through the bf16
# cache: converted once, reused, rebuilt when corrupt, one conversion for 2
# ranks and for two jobs at once; bit-identical to the job on the bf16 base
# (tests/base_cache_e2e.py).
add_test(NAME base_cache_e2e
         COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/base_cache_e2e.py $<TARGET_FILE:codex-train>)
set_tests_properties(base_cache_e2e PROPERTIES LABELS mpi TIMEOUT 600)
# issue 14: attention with bf16 products (batched over heads) against the
# fp32 attention, GPT-2's and GQA with a window, 1 vs 2 threads; also on the
# emulation (oneDNN limited to AVX2)
cu_add_test(test_attention_bf16 SOURCES ${CU_TEST_DIR}/test_attention_bf16.c LIBS cu_model LABELS unit)
add_test(NAME test_attention_bf16_avx2 COMMAND test_attention_bf16)
set_tests_properties(test_attention_bf16_avx2 PROPERTIES LABELS unit
                     ENVIRONMENT "OPENBLAS_NUM_THREADS=1;DNNL_MAX_CPU_ISA=AVX2")
