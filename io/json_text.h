/*
 * JSON documents as the files that hold them: the text of a jansson object
 * with the final newline a state or metadata file ends with. Shared by
 * codex-train's job directory, codexctl and codex-ita, which write the same
 * state.json format (docs/formats.md) without sharing the code that builds it.
 */
#ifndef CU_IO_JSON_TEXT_H
#define CU_IO_JSON_TEXT_H

#include <jansson.h>
#include <stddef.h>

/* Allocates json_dumps(o, flags) followed by '\n' and a NUL; *len is its
 * length without the NUL. NULL when o is NULL or memory runs out. The caller
 * frees the text. */
char *json_text_line(const json_t *o, size_t flags, size_t *len);

#endif
