/*
 * Tokenizers from files: picks the tokenizer kind by name and, for GPT-2
 * BPE, reads the vocabulary and merges from a directory, so the model layer
 * (model/tokenizer.h) never touches the file system.
 */
#ifndef CU_IO_TOKENIZER_FILES_H
#define CU_IO_TOKENIZER_FILES_H

#include "core/error.h"
#include "model/tokenizer.h"

/* kind "byte": the byte tokenizer (path is ignored and may be NULL).
 * kind "gpt2": GPT-2 BPE from the directory `path`, which holds either
 * encoder.json + vocab.bpe (OpenAI's names) or vocab.json + merges.txt
 * (Hugging Face's). scripts/fetch-gpt2-bpe.sh puts GPT-2's files in
 * third_party_data/gpt2/. Errors name the file that is missing or bad and
 * the files expected. Allocates *out; free with tokenizer_free. */
int io_tokenizer_load(const char *kind, const char *path, cu_tokenizer_t **out, cu_error_t *err);

#endif
