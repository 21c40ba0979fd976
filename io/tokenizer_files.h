/*
 * Tokenizers from files: picks the tokenizer kind by name and, for GPT-2
 * BPE, reads the vocabulary and merges from a directory, so the model layer
 * (model/tokenizer.h) never touches the file system.
 */
#ifndef CU_IO_TOKENIZER_FILES_H
#define CU_IO_TOKENIZER_FILES_H

#include "core/error.h"
#include "io/config.h"
#include "tokenizer/tokenizer.h"

/* kind "byte": the byte tokenizer (path is ignored and may be NULL).
 * kind "gpt2": byte-level BPE from the directory `path`, which holds
 * encoder.json + vocab.bpe (OpenAI's names), vocab.json + merges.txt
 * (Hugging Face's) or a Hugging Face tokenizer.json (docs/formats.md).
 * scripts/fetch-gpt2-bpe.sh puts GPT-2's files in third_party_data/gpt2/.
 * Errors name the file that is missing or bad and the files expected.
 * Allocates *out; free with tokenizer_free. */
int io_tokenizer_load(const char *kind, const char *path, cu_tokenizer_t **out, cu_error_t *err);

/* 1 when the directory dir holds the files of a byte-level BPE (any of the
 * three layouts above), else 0 (also for a file or a missing path). */
int io_tokenizer_dir_has_files(const char *dir);

/* The tokenizer of a model downloaded as a folder: with tokenizer.kind
 * gpt2 and an empty tokenizer.path, a model.init folder that holds
 * tokenizer files becomes tokenizer.path (model.init may also name the
 * folder's model.safetensors or model.safetensors.index.json; so the job, its job.yaml and
 * final.h5 name it, and export, eval and generate find it). With
 * tokenizer.kind byte, such a folder is an error (CU_EINVAL naming both
 * keys) unless data.source is random: the byte ids would not be the ids
 * the model was trained with. */
int io_tokenizer_resolve_config(cu_config_t *cfg, cu_error_t *err);

#endif
