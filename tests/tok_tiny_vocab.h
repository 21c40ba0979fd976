/*
 * Hand-made GPT-2-style vocabularies for the tokenizer unit tests: the 256
 * byte tokens (token of byte b has id b, so expected ids can be worked out by
 * hand), then the caller's extra tokens from id 256, then <|endoftext|>.
 */
#ifndef CU_TESTS_TOK_TINY_VOCAB_H
#define CU_TESTS_TOK_TINY_VOCAB_H

#include <stddef.h>

/* GPT-2's byte -> code point table, written out here independently of
 * model/bpe.c: printable bytes keep their code point, the other 68 move to
 * U+0100.. in byte order (so space, 0x20, is U+0120 'Ġ'). */
unsigned tiny_byte_char(unsigned byte);

/* The JSON vocabulary: byte tokens, then extra[0..n_extra) (UTF-8 strings
 * with GPT-2 byte characters, e.g. "\xc4\xa0w" for " w"), then
 * <|endoftext|> at id 256 + n_extra. Allocates; free() it. */
char *tiny_vocab_json(const char *const *extra, int n_extra);

#endif
