/*
 * docs/config.md's reference table must be what the schema generates: this
 * test fails when a key is added or changed in io/config.c without
 * regenerating the docs, and says how to regenerate them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/config.h"

static char *read_doc(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (buf) {
        *len = fread(buf, 1, (size_t)size, f);
        buf[*len] = '\0';
    }
    fclose(f);
    return buf;
}

/* Line number of the first difference, to point the reader at it. */
static int first_diff_line(const char *a, const char *b) {
    int line = 1;
    for (; *a && *a == *b; a++, b++) line += *a == '\n';
    return line;
}

static void test_docs_match_schema(void) {
    const char *src = getenv("CU_SOURCE_DIR");
#ifdef CU_TEST_SOURCE_DIR
    if (!src) src = CU_TEST_SOURCE_DIR;
#endif
    char path[1024];
    snprintf(path, sizeof path, "%s/docs/config.md", src ? src : ".");
    size_t len = 0;
    char *doc = read_doc(path, &len);
    CHECK_MSG(doc != NULL, "cannot read %s", path);
    if (!doc) return;
    char *updated = NULL;
    int changed = 0;
    cu_error_t err = {0};
    int rc = config_doc_update(doc, len, &updated, &changed, &err);
    CHECK_MSG(rc == CU_OK, "%s: %s", path, err.msg);
    CHECK_MSG(rc != CU_OK || !changed,
              "%s is out of date with the schema in io/config.c (first difference at line %d).\n"
              "Regenerate it with:  cmake --build <build dir> --target update-config-doc\n"
              "(or run <build dir>/tests/gen-config-doc %s)",
              path, updated ? first_diff_line(doc, updated) : 0, path);
    free(updated);
    free(doc);
}

TEST_MAIN(TEST(test_docs_match_schema))
