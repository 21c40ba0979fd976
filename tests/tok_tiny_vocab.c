/* Hand-made vocabularies for the tokenizer tests (see tok_tiny_vocab.h). */
#include "tok_tiny_vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

unsigned tiny_byte_char(unsigned byte) {
    unsigned moved = 0;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        if (b == byte) return printable ? b : 0x100 + moved;
        if (!printable) moved++;
    }
    return 0;
}

/* Appends s to the buffer as a JSON string literal. */
static void put_json_string(char **p, const char *s) {
    *(*p)++ = '"';
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') *(*p)++ = '\\';
        *(*p)++ = *s;
    }
    *(*p)++ = '"';
}

char *tiny_vocab_json(const char *const *extra, int n_extra) {
    size_t size = 256 * 24 + 64;
    for (int i = 0; i < n_extra; i++) size += 2 * strlen(extra[i]) + 24;
    char *json = malloc(size), *p = json;
    if (!json) return NULL;
    *p++ = '{';
    for (unsigned b = 0; b < 256; b++) {
        unsigned cp = tiny_byte_char(b);
        char ch[3] = {0};
        if (cp < 0x80) {
            ch[0] = (char)cp;
        } else {
            ch[0] = (char)(0xC0 | (cp >> 6));
            ch[1] = (char)(0x80 | (cp & 0x3F));
        }
        put_json_string(&p, ch);
        p += sprintf(p, ": %u, ", b);
    }
    for (int i = 0; i < n_extra; i++) {
        put_json_string(&p, extra[i]);
        p += sprintf(p, ": %d, ", 256 + i);
    }
    p += sprintf(p, "\"<|endoftext|>\": %d}", 256 + n_extra);
    return json;
}
