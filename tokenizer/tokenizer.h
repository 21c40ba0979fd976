/*
 * Tokenizers: byte-level (256 byte tokens + specials) and GPT-2 byte-level
 * BPE. Both turn arbitrary bytes — invalid UTF-8 included — into token ids
 * and back, and decode(encode(x)) == x for every input.
 *
 * The model layer knows nothing of files: tokenizer_open_gpt2 takes the
 * vocabulary and merges already in memory (io/tokenizer_files.h loads them).
 */
#ifndef CU_TOKENIZER_TOKENIZER_H
#define CU_TOKENIZER_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct cu_tokenizer cu_tokenizer_t;

typedef enum { CU_TOKENIZER_BYTE = 0, CU_TOKENIZER_GPT2 = 1 } cu_tokenizer_kind_t;

/* Byte-level: ids 0..255 are bytes, 256 is <|endoftext|>; vocab_size 257. Allocates. */
int tokenizer_open_byte(cu_tokenizer_t **out, cu_error_t *err);

/* GPT-2 BPE. `vocab_json` is the token->id JSON object (encoder.json or
 * vocab.json); `merges` is the merges list (vocab.bpe or merges.txt, a
 * "#version" first line is optional). Allocates. */
int tokenizer_open_gpt2(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                        const char *merges, size_t merges_len, cu_error_t *err);

/* tokenizer_open_gpt2, with error messages that name the two inputs as
 * `vocab_name` and `merges_name` (e.g. their file paths). Allocates. */
int tokenizer_open_gpt2_named(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                              const char *vocab_name, const char *merges, size_t merges_len,
                              const char *merges_name, cu_error_t *err);

/* A non-special added token of tokenizer.json, matched in the text before
 * pre-tokenising (Hugging Face's AddedVocabulary): `content` (bytes, NUL-
 * terminated) becomes `id`. single_word: no word character (\p{L}, \p{N} or
 * '_') may touch the match on either side; lstrip / rstrip: whitespace (\s)
 * left / right of the match is absorbed into it. */
typedef struct {
    const char *content;
    int id;
    int single_word, lstrip, rstrip;
} tokenizer_added_token_t;

/* What a Hugging Face tokenizer.json adds to a byte-level BPE's vocabulary
 * and merges (see tokenizer/bpe.h, bpe_options_t). */
typedef struct {
    const char *eot_text;    /* the end-of-text token; NULL: "<|endoftext|>" */
    const char *added_json;  /* added_tokens as a JSON object token -> id, or NULL */
    const char *split_regex; /* NULL: GPT-2's pre-tokeniser; else a Split pattern */
    int split_then_gpt2;     /* then GPT-2's pattern inside each piece */
    int ignore_merges;       /* a piece that is a whole token is that token */
    int nfc;    /* normalizer NFC (Qwen2's): text between added tokens is NFC'd first */
    int digits; /* pre_tokenizer Digits(individual_digits) before the byte-level split
                   (StarCoder2's): every \p{N} character is a pre-token of its own */
    /* SentencePiece-style BPE (Llama 2, CodeLlama, Mistral v0.1), sp != 0:
     * tokens are text with U+2581 (▁) standing for a space and <0xXX> for
     * a byte; the text between added tokens gets a leading ▁ (sp_prepend),
     * is cut before every ▁ when sp_split (Metaspace split), and each piece
     * is merged from its characters: a character that is no token becomes
     * its UTF-8 bytes' <0xXX> tokens (byte_fallback), else unk_text's token
     * (consecutive ones fused into one with fuse_unk), else is dropped. */
    int sp;
    int sp_prepend; /* TOKENIZER_SP_PREPEND_* */
    int sp_split;
    int byte_fallback, fuse_unk;
    const char *unk_text; /* NULL: no unknown token */
    int decode_strip;     /* the decoder strips this many leading spaces (Strip, Metaspace) */
    /* non-special added tokens matched in the text (special ones never are);
     * a non-empty list is part of the hash */
    const tokenizer_added_token_t *matched;
    size_t n_matched;
} tokenizer_bpe_options_t;

/* When the SentencePiece-style leading ▁ is added to a stretch of text:
 * NONE never; ALWAYS to every non-empty one (normalizer Prepend); META
 * unless it starts with a space (Metaspace prepend_scheme always); FIRST as
 * META, only for the stretch at the start of the text (prepend_scheme
 * first). */
enum {
    TOKENIZER_SP_PREPEND_NONE = 0,
    TOKENIZER_SP_PREPEND_ALWAYS = 1,
    TOKENIZER_SP_PREPEND_META = 2,
    TOKENIZER_SP_PREPEND_FIRST = 3
};

/* tokenizer_open_gpt2_named with tokenizer.json's options. Allocates. */
int tokenizer_open_bpe(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                       const char *vocab_name, const char *merges, size_t merges_len,
                       const char *merges_name, const tokenizer_bpe_options_t *opts,
                       cu_error_t *err);

/* The model's special tokens (from its tokenizer_config.json / config.json):
 * bos -1 when it has none, eos replaces the end-of-text id that separates
 * documents, pad -1 when none; add_bos: documents and prompts start with
 * bos. Ids must be in the vocabulary (CU_EINVAL). Changes the hash when the
 * framing changes (eos other than the end-of-text token, or add_bos). */
int tokenizer_set_specials(cu_tokenizer_t *tok, int bos, int eos, int pad, int add_bos,
                           cu_error_t *err);
int tokenizer_bos(const cu_tokenizer_t *tok); /* -1: none */
/* The id of the token whose text is `text` (a special's name such as
 * "<|endoftext|>"), -1 when there is none. A linear search. */
int tokenizer_token_id(const cu_tokenizer_t *tok, const char *text);
int tokenizer_pad(const cu_tokenizer_t *tok); /* -1: none */
/* The id a document or prompt starts with, -1 for none (add_bos false). */
int tokenizer_doc_start(const cu_tokenizer_t *tok);

void tokenizer_free(cu_tokenizer_t *tok);

cu_tokenizer_kind_t tokenizer_kind(const cu_tokenizer_t *tok);
int tokenizer_vocab_size(const cu_tokenizer_t *tok);
/* The end-of-text id that separates documents. */
int tokenizer_eot(const cu_tokenizer_t *tok);
/* sha256 (hex, 64 chars + NUL) over the tokenizer's defining data, for
 * datasets and provenance: two tokenizers with equal hashes encode alike. */
const char *tokenizer_hash(const cu_tokenizer_t *tok);

/* Encodes bytes as plain text: special-token strings in the input are text,
 * exactly as GPT-2's reference encoder treats them; non-special added tokens
 * (tokenizer_bpe_options_t.matched) are matched leftmost-longest first and
 * the text between matches is pre-tokenised and merged on its own. Appends to *ids (grown
 * with realloc; *ids may start NULL), updating *n and *cap. Not thread-safe
 * on one tokenizer (it keeps a cache and scratch space inside `tok`): give
 * each thread its own. */
int tokenizer_encode(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids, size_t *n,
                     size_t *cap, cu_error_t *err);

/* tokenizer_encode of one document or prompt: its start token first when
 * the model's files say add_bos_token (tokenizer_doc_start), then the text.
 * The caller ends a document with tokenizer_eot. */
int tokenizer_encode_doc(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids,
                         size_t *n, size_t *cap, cu_error_t *err);

/* Decodes ids to bytes, appending to *out (grown with realloc). Specials
 * decode to their text (e.g. "<|endoftext|>"). An id outside the vocabulary
 * is an error. */
int tokenizer_decode(const cu_tokenizer_t *tok, const int32_t *ids, size_t n, uint8_t **out,
                     size_t *len, size_t *cap, cu_error_t *err);

/* tokenizer_decode of a whole text (what tokenizer_encode made of it), as
 * the tokenizer's decoder does it: a SentencePiece-style one strips the
 * leading space its encoder added (decode_strip). tokenizer_decode keeps
 * it, since a continuation's leading ▁ is a real space. */
int tokenizer_decode_text(const cu_tokenizer_t *tok, const int32_t *ids, size_t n, uint8_t **out,
                          size_t *len, size_t *cap, cu_error_t *err);

#endif
