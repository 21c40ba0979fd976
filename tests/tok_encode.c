/*
 * tok_encode: prints what the tokenizer makes of files, for the reference
 * tests (tests/reference/gpt2_parity.py) and for measuring speed by hand.
 *
 *   tok_encode [--kind gpt2|byte] [--dir DIR] [MODE] FILE...
 *
 * For each FILE it prints a line "# FILE" and then, by MODE: (default) the
 * ids, one a line; --pretok the byte offset just past each pre-token;
 * --algo plain|heap the ids with every pre-token merged by that loop and no
 * cache; --roundtrip "ok" if decode(encode(x)) == x (the decoder's
 * whole-text rule: tokenizer_decode_text), else where it differs.
 * --hash prints the tokenizer's hash first (alone when no FILE is given).
 * --bench SECONDS encodes the files (as one text) again and again for that
 * long and prints MB/s, cold cache and warm. The tokenizer is loaded once.
 * DIR defaults to $CU_GPT2_BPE_DIR, else $CU_SOURCE_DIR/third_party_data/gpt2.
 * Exit: 0 done (a round-trip mismatch included: the caller compares), 1 an
 * error, 2 bad usage.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/tokenizer_files.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

static int read_all(const char *path, uint8_t **data, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (got == 0) break;
        n += got;
    }
    int bad = !buf || ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -1;
    }
    *data = buf;
    *len = n;
    return 0;
}

static const char *default_dir(char *buf, size_t size) {
    const char *dir = getenv("CU_GPT2_BPE_DIR");
    if (dir && *dir) return dir;
    const char *src = getenv("CU_SOURCE_DIR");
    snprintf(buf, size, "%s/third_party_data/gpt2", src && *src ? src : ".");
    return buf;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%d\n", ids[i]);
    return 0;
}

static int run_pretok(const uint8_t *text, size_t len) {
    for (size_t i = 0; i < len;) {
        i = bpe_pretoken_end(text, len, i);
        printf("%zu\n", i);
    }
    return 0;
}

static int run_roundtrip(const cu_tokenizer_t *tok, const uint8_t *text, size_t len,
                         const int32_t *ids, size_t n) {
    uint8_t *back = NULL;
    size_t blen = 0, bcap = 0;
    cu_error_t err = {0};
    if (tokenizer_decode_text(tok, ids, n, &back, &blen, &bcap, &err)) {
        fprintf(stderr, "tok_encode: decode failed: %s\n", err.msg);
        free(back);
        return 1;
    }
    size_t at = 0;
    while (at < blen && at < len && back[at] == text[at]) at++;
    if (blen == len && at == len)
        printf("ok\n");
    else
        printf("mismatch: %zu bytes back for %zu, first difference at byte %zu\n", blen, len, at);
    free(back);
    return 0;
}

/* The first pass starts with an empty cache, as encoding a dataset does;
 * later passes show the speed once every pre-token is cached. */
static int run_bench(cu_tokenizer_t *tok, const uint8_t *text, size_t len, double seconds) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0, rounds = 0;
    cu_error_t err = {0};
    double first = 0, start = now_s(), elapsed = 0;
    do {
        n = 0;
        if (tokenizer_encode(tok, text, len, &ids, &n, &cap, &err)) {
            fprintf(stderr, "tok_encode: %s\n", err.msg);
            free(ids);
            return 1;
        }
        rounds++;
        elapsed = now_s() - start;
        if (rounds == 1) first = elapsed;
    } while (elapsed < seconds || rounds < 2);
    double mb = (double)len / 1e6;
    printf("%zu bytes -> %zu tokens (%.3f bytes/token)\n", len, n,
           n ? (double)len / (double)n : 0.0);
    printf("first pass (cold cache): %.3f s, %.1f MB/s\n", first, mb / first);
    printf("next %zu passes (warm cache): %.1f MB/s\n", rounds - 1,
           mb * (double)(rounds - 1) / (elapsed - first));
    free(ids);
    return 0;
}

/* Every pre-token merged by one loop, no cache: exercises that loop alone. */
static int run_algo(cu_bpe_t *bpe, cu_bpe_merge_algo_t algo, const uint8_t *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    cu_error_t err = {0};
    int rc = CU_OK;
    for (size_t i = 0; rc == CU_OK && i < len;) {
        size_t j = bpe_pretoken_end(text, len, i);
        rc = bpe_encode_piece(bpe, text + i, j - i, algo, &ids, &n, &cap, &err);
        i = j;
    }
    if (rc == CU_OK)
        print_ids(ids, n);
    else
        fprintf(stderr, "tok_encode: %s\n", err.msg);
    free(ids);
    return rc ? 1 : 0;
}

typedef struct {
    const char *kind, *dir;
    int pretok, roundtrip, hash;
    cu_bpe_merge_algo_t algo;
    double bench;
} options_t;

static int encode_file(cu_tokenizer_t *tok, const options_t *o, const uint8_t *text, size_t len) {
    if (o->pretok) return run_pretok(text, len);
    if (o->algo != CU_BPE_MERGE_AUTO) return run_algo(tokenizer_bpe(tok), o->algo, text, len);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    cu_error_t err = {0};
    int rc = 0;
    if (tokenizer_encode(tok, text, len, &ids, &n, &cap, &err)) {
        fprintf(stderr, "tok_encode: %s\n", err.msg);
        rc = 1;
    } else if (o->roundtrip) {
        rc = run_roundtrip(tok, text, len, ids, n);
    } else {
        print_ids(ids, n);
    }
    free(ids);
    return rc;
}

/* All files, concatenated, for --bench. */
static int read_files(char **files, int nfiles, uint8_t **text, size_t *len) {
    *text = NULL;
    *len = 0;
    for (int i = 0; i < nfiles; i++) {
        uint8_t *one = NULL, *all;
        size_t n = 0;
        if (read_all(files[i], &one, &n)) {
            fprintf(stderr, "tok_encode: cannot read '%s'\n", files[i]);
            free(*text);
            return 1;
        }
        all = realloc(*text, *len + n + 1);
        if (!all) {
            free(one);
            free(*text);
            return 1;
        }
        memcpy(all + *len, one, n);
        *text = all;
        *len += n;
        free(one);
    }
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: tok_encode [--kind gpt2|byte] [--dir DIR] [--hash] [--pretok | --algo "
                    "plain|heap | --roundtrip | --bench SECONDS] FILE...\n");
    return 2;
}

static int parse_args(int argc, char **argv, options_t *o, int *first_file) {
    *o = (options_t){.kind = "gpt2"};
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--pretok") == 0)
            o->pretok = 1;
        else if (strcmp(a, "--hash") == 0)
            o->hash = 1;
        else if (strcmp(a, "--roundtrip") == 0)
            o->roundtrip = 1;
        else if (!v)
            return usage();
        else if (strcmp(a, "--kind") == 0)
            o->kind = v, i++;
        else if (strcmp(a, "--dir") == 0)
            o->dir = v, i++;
        else if (strcmp(a, "--bench") == 0)
            o->bench = atof(v), i++;
        else if (strcmp(a, "--algo") == 0 && strcmp(v, "plain") == 0)
            o->algo = CU_BPE_MERGE_PLAIN, i++;
        else if (strcmp(a, "--algo") == 0 && strcmp(v, "heap") == 0)
            o->algo = CU_BPE_MERGE_HEAP, i++;
        else
            return usage();
    }
    if (i == argc && !o->hash) return usage();
    *first_file = i;
    return 0;
}

int main(int argc, char **argv) {
    options_t o;
    int first;
    if (parse_args(argc, argv, &o, &first)) return 2;
    char dirbuf[4096];
    if (!o.dir) o.dir = default_dir(dirbuf, sizeof dirbuf);

    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    if (io_tokenizer_load(o.kind, o.dir, &tok, &err)) {
        fprintf(stderr, "tok_encode: %s\n", err.msg);
        return 1;
    }
    if (o.algo != CU_BPE_MERGE_AUTO && !tokenizer_bpe(tok)) {
        fprintf(stderr, "tok_encode: --algo needs --kind gpt2\n");
        tokenizer_free(tok);
        return 2;
    }
    int rc = 0;
    if (o.hash) printf("%s\n", tokenizer_hash(tok));
    if (o.bench > 0) {
        uint8_t *text;
        size_t len;
        rc = read_files(argv + first, argc - first, &text, &len);
        if (rc == 0) rc = run_bench(tok, text, len, o.bench);
        free(text);
    }
    for (int i = first; i < argc && o.bench <= 0 && rc == 0; i++) {
        uint8_t *text = NULL;
        size_t len = 0;
        if (read_all(argv[i], &text, &len)) {
            fprintf(stderr, "tok_encode: cannot read '%s'\n", argv[i]);
            rc = 1;
            break;
        }
        printf("# %s\n", argv[i]);
        rc = encode_file(tok, &o, text, len);
        free(text);
    }
    tokenizer_free(tok);
    return rc;
}
