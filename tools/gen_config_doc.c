/*
 * gen-config-doc: rewrites the generated reference in docs/config.md — the
 * part between the CU_CONFIG_DOC_BEGIN and CU_CONFIG_DOC_END marker lines —
 * from the schema in io/config.c. The rest of the file is left as written.
 *
 *   gen-config-doc [--check] [DOC.md]     (DOC.md defaults to docs/config.md)
 *
 * Exit status: 0 when the file is (now) up to date; 1 with --check when it
 * is out of date (nothing is written); 2 on an error. The new text goes to a
 * temporary file that is renamed over the old, so a reader never sees half.
 * `cmake --build <build> --target update-config-doc` runs it on the source
 * tree's docs/config.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "io/config.h"

static int read_all(const char *path, char **out, size_t *len, cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        char *bigger = realloc(buf, cap * 2 + 1);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        free(buf);
        return cu_error_set(err, CU_EIO, "cannot read %s", path);
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return CU_OK;
}

static int write_atomically(const char *path, const char *text, cu_error_t *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    int ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return cu_error_set(err, CU_EIO, "cannot write %s: %s", path, strerror(errno));
    }
    return CU_OK;
}

int main(int argc, char **argv) {
    int check = 0;
    const char *path = "docs/config.md";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--check"))
            check = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: gen-config-doc [--check] [DOC.md]\n"
                   "Rewrites the generated config reference in DOC.md (default "
                   "docs/config.md).\n--check: only report whether it is up to date (exit 1 "
                   "if not).\n");
            return 0;
        } else
            path = argv[i];
    }
    cu_error_t err = {0};
    char *doc = NULL, *updated = NULL;
    size_t len = 0;
    int changed = 0;
    int rc = read_all(path, &doc, &len, &err);
    if (rc == CU_OK) rc = config_doc_update(doc, len, &updated, &changed, &err);
    if (rc == CU_OK && changed && !check) rc = write_atomically(path, updated, &err);
    free(doc);
    free(updated);
    if (rc != CU_OK) {
        fprintf(stderr, "gen-config-doc: %s: %s\n", path, err.msg);
        return 2;
    }
    if (check && changed) {
        fprintf(stderr, "gen-config-doc: %s is out of date; run gen-config-doc %s\n", path, path);
        return 1;
    }
    printf("%s %s\n", path, changed ? "updated" : "is up to date");
    return 0;
}
