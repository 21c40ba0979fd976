/*
 * Loading tokenizers from files (see tokenizer_files.h): finds which pair of
 * GPT-2 BPE files a directory holds, reads both, and hands them to
 * model/tokenizer.c with their paths, so a parse error names the file.
 */
#include "io/tokenizer_files.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPECTED_FILES "encoder.json + vocab.bpe, or vocab.json + merges.txt"
#define FETCH_HINT "scripts/fetch-gpt2-bpe.sh fetches GPT-2's into third_party_data/gpt2/"

static int path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Reads a whole file. Allocates *data (NUL-terminated, *len excludes it). */
static int read_file(const char *path, char **data, size_t *len, cu_error_t *err) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    int rc = CU_OK;
    while (buf) {
        if (n + 1 >= cap) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) break;
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (!buf || n + 1 >= cap) {
        rc = cu_error_set(err, CU_ENOMEM, "out of memory reading '%s'", path);
    } else if (ferror(f)) {
        rc = cu_error_set(err, CU_EIO, "cannot read '%s': %s", path, strerror(errno));
    }
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return CU_OK;
}

/* Which of the two naming conventions `dir` follows; fills the paths. */
static int find_bpe_files(const char *dir, char *vocab, char *merges, size_t size,
                          cu_error_t *err) {
    static const char *const pairs[2][2] = {{"encoder.json", "vocab.bpe"},
                                            {"vocab.json", "merges.txt"}};
    for (int i = 0; i < 2; i++) {
        snprintf(vocab, size, "%s/%s", dir, pairs[i][0]);
        snprintf(merges, size, "%s/%s", dir, pairs[i][1]);
        int have_vocab = path_exists(vocab), have_merges = path_exists(merges);
        if (have_vocab && have_merges) return CU_OK;
        if (have_vocab || have_merges)
            return cu_error_set(err, CU_EIO,
                                "'%s' is there but '%s' is missing (a GPT-2 BPE "
                                "directory holds %s)",
                                have_vocab ? vocab : merges, have_vocab ? merges : vocab,
                                EXPECTED_FILES);
    }
    return cu_error_set(err, CU_EIO,
                        "'%s' holds neither encoder.json + vocab.bpe nor vocab.json + "
                        "merges.txt; %s",
                        dir, FETCH_HINT);
}

static int load_gpt2(const char *dir, cu_tokenizer_t **out, cu_error_t *err) {
    if (!dir || !*dir)
        return cu_error_set(err, CU_EINVAL, "tokenizer \"gpt2\" needs a directory holding %s; %s",
                            EXPECTED_FILES, FETCH_HINT);
    struct stat st;
    if (stat(dir, &st) != 0)
        return cu_error_set(err, CU_EIO,
                            "GPT-2 BPE directory '%s': %s (expected a directory "
                            "holding %s; %s)",
                            dir, strerror(errno), EXPECTED_FILES, FETCH_HINT);
    if (!S_ISDIR(st.st_mode))
        return cu_error_set(err, CU_EINVAL,
                            "GPT-2 BPE path '%s' is not a directory (expected a directory "
                            "holding %s)",
                            dir, EXPECTED_FILES);
    size_t size = strlen(dir) + 32;
    char *vocab_path = malloc(size), *merges_path = malloc(size);
    char *vocab = NULL, *merges = NULL;
    size_t vocab_len = 0, merges_len = 0;
    int rc = CU_OK;
    if (!vocab_path || !merges_path)
        rc = cu_error_set(err, CU_ENOMEM, "out of memory loading the tokenizer");
    if (rc == CU_OK) rc = find_bpe_files(dir, vocab_path, merges_path, size, err);
    if (rc == CU_OK) rc = read_file(vocab_path, &vocab, &vocab_len, err);
    if (rc == CU_OK) rc = read_file(merges_path, &merges, &merges_len, err);
    if (rc == CU_OK)
        rc = tokenizer_open_gpt2_named(out, vocab, vocab_len, vocab_path, merges, merges_len,
                                       merges_path, err);
    free(vocab);
    free(merges);
    free(vocab_path);
    free(merges_path);
    return rc;
}

int io_tokenizer_load(const char *kind, const char *path, cu_tokenizer_t **out, cu_error_t *err) {
    *out = NULL;
    if (kind && strcmp(kind, "byte") == 0) return tokenizer_open_byte(out, err);
    if (kind && strcmp(kind, "gpt2") == 0) return load_gpt2(path, out, err);
    return cu_error_set(err, CU_EINVAL,
                        "unknown tokenizer kind \"%s\" (expected \"byte\" or \"gpt2\")",
                        kind ? kind : "(none)");
}
