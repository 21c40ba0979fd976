/*
 * JSON file text with its final newline (see json_text.h).
 */
#include "io/json_text.h"

#include <stdlib.h>
#include <string.h>

char *json_text_line(const json_t *o, size_t flags, size_t *len) {
    char *text = o ? json_dumps(o, flags) : NULL;
    if (!text) return NULL;
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line) {
        free(text);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}
