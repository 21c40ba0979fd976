/*
 * The HDF5 dataset writer (io/dataset.h) and the "hdf5" token source
 * (tokens_open_h5): round trips, the uint16/uint32 choice, hyperslab windows
 * against the in-memory source, document offsets, the manifest, and bad
 * files (ids outside the vocabulary, a vocabulary larger than the model's,
 * truncation).
 */
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "io/dataset.h"
#include "io/tokens.h"

static char tmpdir[64];

static const char *tmp_path(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static dataset_info_t info_for(int vocab) {
    return (dataset_info_t){.tokenizer_kind = "byte",
                            .vocab_size = vocab,
                            .tokenizer_sha256 = "00ff",
                            .eot_id = vocab - 1,
                            .seed = 7,
                            .val_fraction = 0.25,
                            .val_split = "fraction"};
}

/* Writes docs of pseudo-random ids < vocab - 1 to split (doc d has lens[d]
 * ids); the joined stream (with end-of-text ids) goes to stream if non-NULL. */
static void write_docs(dataset_writer_t *w, int split, int vocab, const size_t *lens, int n_docs,
                       int32_t *stream, size_t *n_stream) {
    size_t at = 0;
    for (int d = 0; d < n_docs; d++) {
        int32_t *ids = malloc(sizeof(int32_t) * (lens[d] ? lens[d] : 1));
        for (size_t i = 0; i < lens[d]; i++)
            ids[i] = (int32_t)((i * 7919 + (size_t)d * 104729) % (size_t)(vocab - 1));
        cu_error_t err;
        CHECK(dataset_append_doc(w, split, ids, lens[d], &err) == CU_OK);
        if (stream) {
            memcpy(stream + at, ids, sizeof(int32_t) * lens[d]);
            stream[at + lens[d]] = vocab - 1;
        }
        at += lens[d] + 1;
        free(ids);
    }
    if (n_stream) *n_stream = at;
}

static int stored_type_size(const char *path, const char *name) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t t = H5Dget_type(ds);
    int size = H5Tequal(t, H5T_STD_U16LE) > 0 ? 2 : H5Tequal(t, H5T_STD_U32LE) > 0 ? 4 : -1;
    H5Tclose(t);
    H5Dclose(ds);
    H5Fclose(f);
    return size;
}

static void read_u64(const char *path, const char *name, uint64_t *out) {
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    CHECK(H5Dread(ds, H5T_NATIVE_UINT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    H5Dclose(ds);
    H5Fclose(f);
}

static void test_round_trip_and_offsets(void) {
    const char *path = tmp_path("rt.h5");
    dataset_info_t info = info_for(257);
    info.eot_id = 256;
    dataset_writer_t *w;
    cu_error_t err;
    CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
    const char *docs[3] = {"int main(void) { return 0; }\n", "", "def f():\n    pass\n"};
    for (int d = 0; d < 3; d++) {
        int32_t ids[64];
        size_t n = strlen(docs[d]);
        for (size_t i = 0; i < n; i++) ids[i] = (unsigned char)docs[d][i];
        CHECK(dataset_append_doc(w, d == 1 ? DATASET_VAL : DATASET_TRAIN, ids, n, &err) == CU_OK);
    }
    CHECK(dataset_tokens(w, DATASET_TRAIN) == strlen(docs[0]) + strlen(docs[2]) + 2);
    CHECK(dataset_documents(w, DATASET_VAL) == 1);
    int32_t bad = 257;
    CHECK(dataset_append_doc(w, DATASET_TRAIN, &bad, 1, &err) == CU_EINVAL);
    CHECK(access(path, F_OK) != 0); /* nothing under the final name yet */
    CHECK(dataset_finish(w, &err) == CU_OK);

    dataset_meta_t m;
    CHECK(dataset_read_meta(path, &m, &err) == CU_OK);
    CHECK(m.vocab_size == 257 && m.eot_id == 256 && m.bytes_per_token == 2);
    CHECK(!strcmp(m.tokenizer_kind, "byte") && !strcmp(m.tokenizer_sha256, "00ff"));
    size_t n0 = strlen(docs[0]) + 1;
    CHECK(m.tokens[DATASET_TRAIN] == n0 + strlen(docs[2]) + 1);
    CHECK(m.tokens[DATASET_VAL] == 1 && m.documents[DATASET_TRAIN] == 2);
    uint64_t offs[2] = {99, 99};
    read_u64(path, "train/doc_offsets", offs);
    CHECK(offs[0] == 0 && offs[1] == n0);
    uint64_t voff = 99;
    read_u64(path, "val/doc_offsets", &voff);
    CHECK(voff == 0);
    /* the stored stream: document bytes, each followed by end-of-text */
    uint64_t all[64];
    read_u64(path, "train/tokens", all);
    CHECK(all[0] == 'i' && all[n0 - 1] == 256 && all[n0] == 'd' && all[m.tokens[0] - 1] == 256);
}

static void test_width_by_vocab(void) {
    int vocabs[2] = {65536, 65537};
    for (int k = 0; k < 2; k++) {
        const char *path = tmp_path(k ? "w32.h5" : "w16.h5");
        dataset_info_t info = info_for(vocabs[k]);
        dataset_writer_t *w;
        cu_error_t err;
        CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
        int32_t ids[2] = {0, vocabs[k] - 2};
        CHECK(dataset_append_doc(w, DATASET_TRAIN, ids, 2, &err) == CU_OK);
        CHECK(dataset_finish(w, &err) == CU_OK);
        int want = k ? 4 : 2;
        CHECK_MSG(stored_type_size(path, "train/tokens") == want, "vocab %d", vocabs[k]);
        CHECK(stored_type_size(path, "val/tokens") == want);
        dataset_meta_t m;
        CHECK(dataset_read_meta(path, &m, &err) == CU_OK && m.bytes_per_token == want);
        uint64_t back[3];
        read_u64(path, "train/tokens", back);
        CHECK(back[1] == (uint64_t)vocabs[k] - 2 && back[2] == (uint64_t)vocabs[k] - 1);
    }
}

/* Hyperslab windows equal the in-memory source's for the same stream and
 * seed, over more than one epoch and across a chunk (buffer) boundary. */
static void check_windows_match(int vocab, const size_t *lens, int n_docs, int seq_len) {
    const char *path = tmp_path("win.h5");
    dataset_info_t info = info_for(vocab);
    dataset_writer_t *w;
    cu_error_t err;
    size_t total = 0;
    for (int d = 0; d < n_docs; d++) total += lens[d] + 1;
    int32_t *stream = malloc(sizeof(int32_t) * total);
    size_t n;
    CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
    write_docs(w, DATASET_TRAIN, vocab, lens, n_docs, stream, &n);
    CHECK(n == total);
    CHECK(dataset_finish(w, &err) == CU_OK);

    token_source_t *mem, *h5;
    CHECK(tokens_open_ids(&mem, stream, n, vocab, 42, "memory", &err) == CU_OK);
    CHECK_MSG(tokens_open_h5(&h5, path, "train", vocab, 42, &err) == CU_OK, "%s", err.msg);
    CHECK(tokens_count(h5) == n);
    long wm, wh;
    CHECK(tokens_windows(mem, seq_len, &wm, &err) == CU_OK);
    CHECK(tokens_windows(h5, seq_len, &wh, &err) == CU_OK && wm == wh);
    int32_t *a = malloc(sizeof(int32_t) * ((size_t)seq_len + 1));
    int32_t *b = malloc(sizeof(int32_t) * ((size_t)seq_len + 1));
    int same = 1;
    for (long g = 0; g < 2 * wm + 3; g++) {
        long ea, eb;
        CHECK(tokens_sample(mem, g, seq_len, a, &ea, &err) == CU_OK);
        CHECK(tokens_sample(h5, g, seq_len, b, &eb, &err) == CU_OK);
        same &= ea == eb && memcmp(a, b, sizeof(int32_t) * ((size_t)seq_len + 1)) == 0;
    }
    CHECK_MSG(same, "hyperslab windows differ from memory (vocab %d)", vocab);
    token_source_t *val = (token_source_t *)1;
    CHECK(tokens_split(h5, seq_len, 0.2f, &val, &err) == CU_OK && val == NULL);
    CHECK(tokens_count(h5) == n); /* not cut */
    free(a);
    free(b);
    tokens_free(mem);
    tokens_free(h5);
}

static void test_windows_match_memory(void) {
    size_t small[4] = {100, 0, 333, 57};
    check_windows_match(300, small, 4, 16);
    check_windows_match(70000, small, 4, 7);
    size_t big[3] = {700000, 500000, 12345}; /* more than one 1 Mi-token chunk */
    check_windows_match(1000, big, 3, 4096);
}

typedef struct {
    char *path;
    uint64_t bytes;
    char *sha256, *split;
    uint64_t documents, tokens;
    char *status, *reason;
} row_t;

static void test_manifest(void) {
    const char *path = tmp_path("man.h5");
    dataset_info_t info = info_for(257);
    dataset_writer_t *w;
    cu_error_t err;
    CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
    dataset_file_t f1 = {"src/a.c", 10, "abcd", "train", 1, 11, "ok", ""};
    dataset_file_t f2 = {"bin/x.png", 99, "ef01", "", 0, 0, "skipped", "binary"};
    CHECK(dataset_add_file(w, &f1, &err) == CU_OK && dataset_add_file(w, &f2, &err) == CU_OK);
    CHECK(dataset_finish(w, &err) == CU_OK);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "manifest", H5P_DEFAULT);
    CHECK(ds >= 0);
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8); /* HDF5 does not convert between character sets */
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(row_t));
    H5Tinsert(t, "path", HOFFSET(row_t, path), str);
    H5Tinsert(t, "bytes", HOFFSET(row_t, bytes), H5T_NATIVE_UINT64);
    H5Tinsert(t, "sha256", HOFFSET(row_t, sha256), str);
    H5Tinsert(t, "split", HOFFSET(row_t, split), str);
    H5Tinsert(t, "documents", HOFFSET(row_t, documents), H5T_NATIVE_UINT64);
    H5Tinsert(t, "tokens", HOFFSET(row_t, tokens), H5T_NATIVE_UINT64);
    H5Tinsert(t, "status", HOFFSET(row_t, status), str);
    H5Tinsert(t, "reason", HOFFSET(row_t, reason), str);
    row_t rows[2];
    memset(rows, 0, sizeof rows);
    int ok = H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0;
    CHECK(ok);
    if (ok) CHECK(!strcmp(rows[0].path, "src/a.c") && rows[0].bytes == 10 && rows[0].tokens == 11);
    if (ok) CHECK(!strcmp(rows[0].split, "train") && !strcmp(rows[0].status, "ok"));
    if (ok) CHECK(!strcmp(rows[1].path, "bin/x.png") && !strcmp(rows[1].status, "skipped"));
    if (ok) CHECK(!strcmp(rows[1].reason, "binary") && !strcmp(rows[1].sha256, "ef01"));
    hid_t space = H5Dget_space(ds);
    H5Dvlen_reclaim(t, space, H5P_DEFAULT, rows);
    H5Sclose(space);
    H5Tclose(t);
    H5Tclose(str);
    H5Dclose(ds);
    H5Fclose(f);
}

static void write_small(const char *path, int vocab) {
    dataset_info_t info = info_for(vocab);
    dataset_writer_t *w;
    cu_error_t err;
    size_t lens[2] = {200, 300};
    CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
    write_docs(w, DATASET_TRAIN, vocab, lens, 2, NULL, NULL);
    CHECK(dataset_finish(w, &err) == CU_OK);
}

static void test_out_of_vocab(void) {
    const char *path = tmp_path("oov.h5");
    write_small(path, 300);
    cu_error_t err;
    token_source_t *src;
    /* the model's vocabulary is smaller than the dataset's tokenizer's */
    CHECK(tokens_open_h5(&src, path, "train", 299, 1, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "300") && strstr(err.msg, "299") && strstr(err.msg, path));
    CHECK(tokens_open_h5(&src, path, "test", 300, 1, &err) == CU_EINVAL);
    /* an id >= the vocabulary planted in the file is found when read */
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t ds = H5Dopen2(f, "train/tokens", H5P_DEFAULT);
    hid_t space = H5Dget_space(ds);
    hsize_t at = 123, one = 1;
    hid_t mem = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &at, NULL, &one, NULL);
    uint32_t big = 4000;
    CHECK(H5Dwrite(ds, H5T_NATIVE_UINT32, mem, space, H5P_DEFAULT, &big) >= 0);
    H5Sclose(mem);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
    CHECK(tokens_open_h5(&src, path, "train", 300, 1, &err) == CU_OK);
    long windows;
    CHECK(tokens_windows(src, 500, &windows, &err) == CU_OK && windows == 1);
    int32_t win[501];
    CHECK(tokens_sample(src, 0, 500, win, NULL, &err) == CU_EFORMAT);
    CHECK_MSG(strstr(err.msg, path) && strstr(err.msg, "token 123") && strstr(err.msg, "4000"),
              "%s", err.msg);
    tokens_free(src);
    /* the empty val split opens but holds no window */
    CHECK(tokens_open_h5(&src, path, "val", 300, 1, &err) == CU_OK);
    CHECK(tokens_count(src) == 0 && tokens_windows(src, 8, &windows, &err) == CU_EINVAL);
    tokens_free(src);
}

static void test_truncated_and_foreign(void) {
    const char *path = tmp_path("trunc.h5");
    write_small(path, 300);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    CHECK(truncate(path, size / 2) == 0);
    cu_error_t err;
    token_source_t *src = (token_source_t *)1;
    CHECK(tokens_open_h5(&src, path, "train", 300, 1, &err) != CU_OK);
    CHECK(src == NULL && strstr(err.msg, path));
    const char *text = tmp_path("plain.h5");
    f = fopen(text, "w");
    fputs("not hdf5\n", f);
    fclose(f);
    CHECK(tokens_open_h5(&src, text, "train", 300, 1, &err) == CU_EFORMAT && strstr(err.msg, text));
    CHECK(tokens_open_h5(&src, tmp_path("missing.h5"), "train", 300, 1, &err) != CU_OK);
    CHECK(strstr(err.msg, "missing.h5"));
}

static void test_abort_leaves_nothing(void) {
    const char *path = tmp_path("aborted.h5");
    dataset_info_t info = info_for(300);
    dataset_writer_t *w;
    cu_error_t err;
    CHECK(dataset_create(&w, path, &info, &err) == CU_OK);
    dataset_abort(w);
    CHECK(access(path, F_OK) != 0);
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    CHECK(access(tmp, F_OK) != 0);
    CHECK(dataset_create(&w, tmp_path("nodir/x.h5"), &info, &err) == CU_EIO);
    CHECK(strstr(err.msg, "nodir"));
}

static void setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/cu_dataset_XXXXXX");
    if (!mkdtemp(tmpdir)) abort();
}

static void cleanup(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
}

TEST_MAIN(TEST(setup), TEST(test_round_trip_and_offsets), TEST(test_width_by_vocab),
          TEST(test_windows_match_memory), TEST(test_manifest), TEST(test_out_of_vocab),
          TEST(test_truncated_and_foreign), TEST(test_abort_leaves_nothing), TEST(cleanup))
