/*
 * Unit tests of io_tokenizer_load (io/tokenizer_files.h): both naming
 * conventions load and agree, and every way a tokenizer directory can be
 * wrong gives an error that names the file and says what is expected. Works
 * in a fresh directory under $TMPDIR (or /tmp) with hand-made files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "io/tokenizer_files.h"
#include "tok_tiny_vocab.h"

static char root[512];

static void path_in(char *out, size_t size, const char *dir, const char *name) {
    snprintf(out, size, "%s/%s%s%s", root, dir, *name ? "/" : "", name);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[1024];
    path_in(path, sizeof path, dir, name);
    FILE *f = fopen(path, "wb");
    CHECK_MSG(f != NULL, "cannot create %s", path);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void make_dir(const char *dir) {
    char path[1024];
    path_in(path, sizeof path, dir, "");
    CHECK_MSG(mkdir(path, 0755) == 0, "cannot create %s", path);
}

static const char *const TOKENS[] = {"he", "lo", "llo", "hello"};
static const char MERGES[] = "#version: 0.2\nh e\nl o\nl lo\nhe llo\n";

/* Loads kind/dir (dir relative to root; NULL passes NULL) and expects an
 * error with `code` whose message holds every needle. */
static void expect_error(const char *kind, const char *dir, int code, const char *const *needles,
                         int line) {
    char path[1024];
    if (dir) path_in(path, sizeof path, dir, "");
    cu_tokenizer_t *tok = (cu_tokenizer_t *)&tok;
    cu_error_t err = {0};
    int rc = io_tokenizer_load(kind, dir ? path : NULL, &tok, &err);
    int ok = rc == code && err.code == code && tok == NULL;
    for (int i = 0; needles[i]; i++) ok = ok && strstr(err.msg, needles[i]) != NULL;
    CHECK_MSG(ok, "line %d: rc %d (want %d): \"%s\"", line, rc, code, err.msg);
    for (int i = 0; !ok && needles[i]; i++)
        if (!strstr(err.msg, needles[i])) fprintf(stderr, "  missing: \"%s\"\n", needles[i]);
    if (rc == CU_OK) tokenizer_free(tok);
}

#define EXPECT_ERROR(kind, dir, code, ...)                                                         \
    expect_error(kind, dir, code, (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

static void test_setup(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/cu-tokfiles-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(root) != NULL);
    char *vocab = tiny_vocab_json(TOKENS, 4);
    make_dir("openai");
    write_text("openai", "encoder.json", vocab);
    write_text("openai", "vocab.bpe", MERGES);
    make_dir("hf");
    write_text("hf", "vocab.json", vocab);
    write_text("hf", "merges.txt", MERGES);
    free(vocab);
}

static void test_byte_kind(void) {
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    CHECK(io_tokenizer_load("byte", NULL, &tok, &err) == CU_OK && tok);
    if (tok) CHECK(tokenizer_kind(tok) == CU_TOKENIZER_BYTE && tokenizer_vocab_size(tok) == 257);
    tokenizer_free(tok);
    CHECK(io_tokenizer_load("byte", "/no/such/dir", &tok, &err) == CU_OK); /* path ignored */
    tokenizer_free(tok);
}

static void test_both_layouts_load_alike(void) {
    char a_dir[1024], b_dir[1024];
    path_in(a_dir, sizeof a_dir, "openai", "");
    path_in(b_dir, sizeof b_dir, "hf", "");
    cu_tokenizer_t *a = NULL, *b = NULL;
    cu_error_t err = {0};
    CHECK_MSG(io_tokenizer_load("gpt2", a_dir, &a, &err) == CU_OK, "%s", err.msg);
    CHECK_MSG(io_tokenizer_load("gpt2", b_dir, &b, &err) == CU_OK, "%s", err.msg);
    if (a && b) {
        CHECK(tokenizer_kind(a) == CU_TOKENIZER_GPT2);
        CHECK(tokenizer_vocab_size(a) == 261 && tokenizer_eot(a) == 260);
        CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(b)) == 0);
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        CHECK(tokenizer_encode(a, (const uint8_t *)"hello", 5, &ids, &n, &cap, &err) == CU_OK);
        CHECK(n == 1 && ids[0] == 259);
        free(ids);
    }
    tokenizer_free(a);
    tokenizer_free(b);
}

static void test_errors(void) {
    EXPECT_ERROR("gpt3", "openai", CU_EINVAL, "unknown tokenizer kind \"gpt3\"", "\"byte\"",
                 "\"gpt2\"");
    EXPECT_ERROR(NULL, "openai", CU_EINVAL, "unknown tokenizer kind", "\"gpt2\"");
    EXPECT_ERROR("gpt2", NULL, CU_EINVAL, "needs a directory", "encoder.json + vocab.bpe",
                 "vocab.json + merges.txt", "scripts/fetch-gpt2-bpe.sh");
    EXPECT_ERROR("gpt2", "missing", CU_EIO, "/missing", "No such file", "encoder.json + vocab.bpe",
                 "scripts/fetch-gpt2-bpe.sh");
    EXPECT_ERROR("gpt2", "openai/vocab.bpe", CU_EINVAL, "not a directory",
                 "encoder.json + vocab.bpe");

    make_dir("empty");
    EXPECT_ERROR("gpt2", "empty", CU_EIO,
                 "/empty' holds neither encoder.json + vocab.bpe, "
                 "vocab.json + merges.txt nor tokenizer.json",
                 "scripts/fetch-gpt2-bpe.sh");
    make_dir("half");
    write_text("half", "encoder.json", "{}");
    EXPECT_ERROR("gpt2", "half", CU_EIO, "half/encoder.json' is there but",
                 "half/vocab.bpe' is "
                 "missing");
    make_dir("half2");
    write_text("half2", "merges.txt", "");
    EXPECT_ERROR("gpt2", "half2", CU_EIO, "half2/vocab.json' is missing");

    /* Parse errors name the file they are in. */
    char *vocab = tiny_vocab_json(TOKENS, 4);
    make_dir("badjson");
    write_text("badjson", "encoder.json", "{\"a\": 1,,}");
    write_text("badjson", "vocab.bpe", MERGES);
    EXPECT_ERROR("gpt2", "badjson", CU_EFORMAT, "badjson/encoder.json: not valid JSON (line 1");
    make_dir("badmerges");
    write_text("badmerges", "encoder.json", vocab);
    write_text("badmerges", "vocab.bpe", "#version: 0.2\nh e\nl o x\n");
    EXPECT_ERROR("gpt2", "badmerges", CU_EFORMAT,
                 "badmerges/vocab.bpe line 3: expected two "
                 "tokens");
    make_dir("unknown");
    write_text("unknown", "vocab.json", vocab);
    write_text("unknown", "merges.txt", "h e\nhe zz\n");
    EXPECT_ERROR("gpt2", "unknown", CU_EFORMAT, "unknown/merges.txt line 2: token \"zz\"");
    /* A directory where a file should be: found, but unreadable. */
    make_dir("dirfile");
    make_dir("dirfile/encoder.json");
    write_text("dirfile", "vocab.bpe", MERGES);
    EXPECT_ERROR("gpt2", "dirfile", CU_EIO, "dirfile/encoder.json");
    free(vocab);
}

/* dir/tokenizer.json with the tiny vocabulary; `extra` is appended to the
 * top-level object (may be ""; a repeated key wins), `model_extra` is
 * spliced into model. */
static void write_tokenizer_json(const char *dir, const char *extra, const char *model_extra) {
    char *vocab = tiny_vocab_json(TOKENS, 4);
    size_t size = strlen(vocab) + strlen(extra) + strlen(model_extra) + 1024;
    char *doc = malloc(size);
    snprintf(
        doc, size,
        "{\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"ByteLevel\", "
        "\"add_prefix_space\": false, \"use_regex\": true}, \"added_tokens\": [{\"id\": 260, "
        "\"content\": \"<|endoftext|>\", \"special\": true}], \"model\": {%s\"type\": "
        "\"BPE\", \"vocab\": %s, \"merges\": [\"h e\", [\"l\", \"o\"], \"l lo\", \"he llo\"]}%s}",
        model_extra, vocab, extra);
    make_dir(dir);
    write_text(dir, "tokenizer.json", doc);
    free(doc);
    free(vocab);
}

static cu_tokenizer_t *load_dir(const char *dir) {
    char path[1024];
    path_in(path, sizeof path, dir, "");
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    CHECK_MSG(io_tokenizer_load("gpt2", path, &tok, &err) == CU_OK, "%s: %s", dir, err.msg);
    return tok;
}

/* tokenizer.json loads like the two-file layouts (same ids, same hash);
 * the special tokens come from tokenizer_config.json or config.json. */
static void test_tokenizer_json(void) {
    write_tokenizer_json("tj", "", "");
    cu_tokenizer_t *a = load_dir("openai"), *t = load_dir("tj");
    if (a && t) {
        CHECK(tokenizer_vocab_size(t) == 261 && tokenizer_eot(t) == 260);
        CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(t)) == 0);
        CHECK(tokenizer_bos(t) == -1 && tokenizer_doc_start(t) == -1);
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        cu_error_t err = {0};
        CHECK(tokenizer_encode(t, (const uint8_t *)"hello<|endoftext|>", 18, &ids, &n, &cap,
                               &err) == CU_OK);
        CHECK(n > 2 && ids[0] == 259); /* the special's text is text, not id 260 */
        for (size_t i = 0; i < n; i++) CHECK(ids[i] != 260);
        free(ids);
    }
    tokenizer_free(t);
    write_tokenizer_json("tjspec", "", "");
    write_text("tjspec", "tokenizer_config.json",
               "{\"bos_token\": \"<|endoftext|>\", \"eos_token\": {\"content\": \"hello\"}, "
               "\"pad_token\": null, \"add_bos_token\": true}");
    t = load_dir("tjspec");
    if (a && t) {
        CHECK(tokenizer_bos(t) == 260 && tokenizer_doc_start(t) == 260);
        CHECK(tokenizer_eot(t) == 259 && tokenizer_pad(t) == -1);
        CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(t)) != 0); /* framing changed */
        int32_t *ids = NULL; /* a document or prompt starts with BOS */
        size_t n = 0, cap = 0;
        cu_error_t err = {0};
        CHECK(tokenizer_encode_doc(t, (const uint8_t *)"hello", 5, &ids, &n, &cap, &err) == CU_OK);
        CHECK(n == 2 && ids[0] == 260 && ids[1] == 259);
        free(ids);
    }
    tokenizer_free(t);
    write_tokenizer_json("tjcfg", "", "");
    write_text("tjcfg", "config.json", "{\"bos_token_id\": 104, \"eos_token_id\": [258, 260]}");
    t = load_dir("tjcfg");
    if (t) {
        CHECK(tokenizer_bos(t) == 104 && tokenizer_doc_start(t) == -1);
        CHECK(tokenizer_eot(t) == 258);
    }
    tokenizer_free(t);
    /* Llama-3 says add-BOS through its post_processor, not tokenizer_config */
    write_tokenizer_json("tjtmpl",
                         ", \"post_processor\": {\"type\": \"Sequence\", \"processors\": "
                         "[{\"type\": \"ByteLevel\"}, {\"type\": \"TemplateProcessing\", "
                         "\"single\": [{\"SpecialToken\": {\"id\": \"<|endoftext|>\", "
                         "\"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}]}]}",
                         "");
    t = load_dir("tjtmpl");
    if (t) CHECK(tokenizer_bos(t) == 260 && tokenizer_doc_start(t) == 260);
    tokenizer_free(t);
    tokenizer_free(a);

    /* beside vocab.json + merges.txt, tokenizer.json is the tokenizer (it
     * may say more than GPT-2's layout can: here ignore_merges) */
    write_tokenizer_json("tjim", "", "\"ignore_merges\": true, ");
    write_tokenizer_json("both", "", "\"ignore_merges\": true, ");
    char *vocab = tiny_vocab_json(TOKENS, 4);
    write_text("both", "vocab.json", vocab);
    write_text("both", "merges.txt", MERGES);
    free(vocab);
    cu_tokenizer_t *im = load_dir("tjim"), *both = load_dir("both"), *hf = load_dir("hf");
    if (im && both && hf) {
        CHECK(strcmp(tokenizer_hash(both), tokenizer_hash(im)) == 0);
        CHECK(strcmp(tokenizer_hash(both), tokenizer_hash(hf)) != 0);
    }
    tokenizer_free(im);
    tokenizer_free(both);
    tokenizer_free(hf);

    write_tokenizer_json("tjwp", "", "\"ignore\": 1, ");
    write_text("tjwp", "tokenizer.json", "{\"model\": {\"type\": \"WordPiece\"}}");
    EXPECT_ERROR("gpt2", "tjwp", CU_EFORMAT, "tjwp/tokenizer.json: model.type WordPiece");
    /* NFC (Qwen2's) is read; NFKC and a Lowercase inside a Sequence are not */
    write_tokenizer_json("tjnorm", ", \"normalizer\": {\"type\": \"NFKC\"}", "");
    EXPECT_ERROR("gpt2", "tjnorm", CU_EFORMAT, "tjnorm/tokenizer.json: normalizer NFKC");
    write_tokenizer_json("tjnorm2",
                         ", \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": "
                         "[{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}",
                         "");
    EXPECT_ERROR("gpt2", "tjnorm2", CU_EFORMAT, "tjnorm2/tokenizer.json: normalizer Lowercase");
    write_tokenizer_json("tjbf", "", "\"byte_fallback\": true, ");
    EXPECT_ERROR("gpt2", "tjbf", CU_EFORMAT, "byte_fallback");
    /* SentencePiece-style files: what they may hold is checked, naming the key */
    write_tokenizer_json("tjsp1",
                         ", \"pre_tokenizer\": {\"type\": \"Metaspace\", \"replacement\": \"_\"}",
                         "\"byte_fallback\": true, ");
    EXPECT_ERROR("gpt2", "tjsp1", CU_EFORMAT, "pre_tokenizer Metaspace is not supported");
    write_tokenizer_json("tjsp2",
                         ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": "
                         "\" \"}, \"content\": \"\xe2\x96\x81\"}, \"decoder\": {\"type\": "
                         "\"ByteLevel\"}, \"pre_tokenizer\": null",
                         "\"byte_fallback\": true, ");
    EXPECT_ERROR("gpt2", "tjsp2", CU_EFORMAT, "decoder ByteLevel is not supported");
    write_tokenizer_json("tjsp3",
                         ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": {\"String\": "
                         "\" \"}, \"content\": \"\xe2\x96\x81\"}, \"pre_tokenizer\": null",
                         "\"byte_fallback\": true, \"unk_token\": \"<unk>\", ");
    EXPECT_ERROR("gpt2", "tjsp3", CU_EFORMAT, "unk_token \"<unk>\" is not in the vocabulary");
    write_tokenizer_json("tjsp4", ", \"normalizer\": {\"type\": \"Prepend\", \"prepend\": \"_\"}",
                         "");
    EXPECT_ERROR("gpt2", "tjsp4", CU_EFORMAT, "normalizer Prepend is not supported");
    write_tokenizer_json("tjeos", "", "");
    write_text("tjeos", "tokenizer_config.json", "{\"eos_token\": \"</nope>\"}");
    EXPECT_ERROR("gpt2", "tjeos", CU_EFORMAT, "tjeos/tokenizer_config.json: eos_token \"</nope>\"");
    write_tokenizer_json("tjbos", "", "");
    write_text("tjbos", "tokenizer_config.json", "{\"add_bos_token\": true}");
    EXPECT_ERROR("gpt2", "tjbos", CU_EINVAL, "add_bos_token is true but there is no bos");
}

static void set_str(char *dst, size_t cap, const char *src) {
    size_t n = strlen(src);
    CHECK_MSG(n < cap, "%s does not fit", src);
    if (n < cap) memcpy(dst, src, n + 1);
}

/* model.init a folder with tokenizer files: tokenizer.path comes from it
 * (gpt2), and the byte tokenizer is refused for it. */
/* The ids of text under a tokenizer, as a string of numbers. */
static void ids_of(cu_tokenizer_t *t, const char *text, char *out, size_t cap) {
    int32_t *ids = NULL;
    size_t n = 0, c = 0, len = 0;
    cu_error_t err = {0};
    out[0] = 0;
    CHECK(tokenizer_encode(t, (const uint8_t *)text, strlen(text), &ids, &n, &c, &err) == CU_OK);
    for (size_t i = 0; i < n && len + 16 < cap; i++)
        len += (size_t)snprintf(out + len, cap - len, "%d ", ids[i]);
    free(ids);
}

/* Qwen2's NFC normalizer and StarCoder2's Digits pre-tokenizer load, enter
 * the hash, and NFC changes what a decomposed character encodes to. */
static void test_normalizer_and_digits(void) {
    write_tokenizer_json("tjnfc", ", \"normalizer\": {\"type\": \"NFC\"}", "");
    write_tokenizer_json("tjdig",
                         ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                         "[{\"type\": \"Digits\", \"individual_digits\": true}, "
                         "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, "
                         "\"use_regex\": true}]}",
                         "");
    cu_tokenizer_t *plain = load_dir("tj"), *nfc = load_dir("tjnfc"), *dig = load_dir("tjdig");
    if (!plain || !nfc || !dig) return;
    CHECK(strcmp(tokenizer_hash(plain), tokenizer_hash(nfc)) != 0);
    CHECK(strcmp(tokenizer_hash(plain), tokenizer_hash(dig)) != 0);
    char a[256], b[256], c[256];
    ids_of(nfc, "caf\x65\xcc\x81 hello", a, sizeof a); /* e + combining acute */
    ids_of(nfc, "caf\xc3\xa9 hello", b, sizeof b);     /* the composed e-acute */
    ids_of(plain, "caf\x65\xcc\x81 hello", c, sizeof c);
    CHECK_MSG(!strcmp(a, b) && strcmp(a, c), "NFC %s, composed %s, plain %s", a, b, c);
    ids_of(nfc, "ok\xff\xfe\x65\xcc\x81", a, sizeof a); /* invalid bytes pass through */
    ids_of(plain, "ok\xff\xfe\xc3\xa9", b, sizeof b);
    CHECK_MSG(!strcmp(a, b), "NFC around invalid bytes %s vs %s", a, b);
    ids_of(dig, "hello 42", a, sizeof a);
    ids_of(plain, "hello 42", b, sizeof b);
    CHECK_MSG(!strcmp(a, b), "no digit merges: the same bytes %s vs %s", a, b);
    write_tokenizer_json("tjdig2",
                         ", \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": "
                         "[{\"type\": \"Digits\", \"individual_digits\": false}, "
                         "{\"type\": \"ByteLevel\", \"use_regex\": true}]}",
                         "");
    EXPECT_ERROR("gpt2", "tjdig2", CU_EFORMAT, "Digits without individual_digits");
    tokenizer_free(plain);
    tokenizer_free(nfc);
    tokenizer_free(dig);
}

static void test_resolve_config(void) {
    char tj[1024], hf[1024], half[1024], empty[1024];
    path_in(tj, sizeof tj, "tj", "");
    path_in(hf, sizeof hf, "hf", "");
    path_in(half, sizeof half, "half", "");
    path_in(empty, sizeof empty, "empty", "");
    CHECK(io_tokenizer_dir_has_files(tj) && io_tokenizer_dir_has_files(hf));
    CHECK(!io_tokenizer_dir_has_files(half) && !io_tokenizer_dir_has_files(empty));
    char file[1100];
    snprintf(file, sizeof file, "%s/tokenizer.json", tj);
    CHECK(!io_tokenizer_dir_has_files(file) && !io_tokenizer_dir_has_files("/no/such/dir"));

    cu_config_t c;
    cu_error_t err = {0};
    config_defaults(&c);
    set_str(c.model.init, sizeof c.model.init, tj);
    set_str(c.tokenizer.kind, sizeof c.tokenizer.kind, "gpt2");
    CHECK_MSG(io_tokenizer_resolve_config(&c, &err) == CU_OK, "%s", err.msg);
    CHECK_MSG(strcmp(c.tokenizer.path, tj) == 0, "derived tokenizer.path '%s'", c.tokenizer.path);
    set_str(c.tokenizer.path, sizeof c.tokenizer.path, hf); /* given: kept */
    CHECK(io_tokenizer_resolve_config(&c, &err) == CU_OK && strcmp(c.tokenizer.path, hf) == 0);
    config_defaults(&c); /* model.init the folder's weights file: the same folder */
    char weights[1100];
    snprintf(weights, sizeof weights, "%s/model.safetensors", tj);
    write_text("tj", "model.safetensors", "x");
    set_str(c.model.init, sizeof c.model.init, weights);
    set_str(c.tokenizer.kind, sizeof c.tokenizer.kind, "gpt2");
    CHECK(io_tokenizer_resolve_config(&c, &err) == CU_OK && strcmp(c.tokenizer.path, tj) == 0);
    config_defaults(&c); /* byte on a folder that ships a tokenizer, for real text */
    set_str(c.data.source, sizeof c.data.source, "hdf5");
    set_str(c.model.init, sizeof c.model.init, tj);
    CHECK(io_tokenizer_resolve_config(&c, &err) == CU_EINVAL);
    CHECK_MSG(strstr(err.msg, tj) && strstr(err.msg, "tokenizer.kind is byte") &&
                  strstr(err.msg, "tokenizer.kind: gpt2"),
              "%s", err.msg);
    set_str(c.data.source, sizeof c.data.source, "random"); /* ids do not matter */
    CHECK(io_tokenizer_resolve_config(&c, &err) == CU_OK && !c.tokenizer.path[0]);
    config_defaults(&c); /* a folder without tokenizer files: nothing changes */
    set_str(c.model.init, sizeof c.model.init, empty);
    set_str(c.tokenizer.kind, sizeof c.tokenizer.kind, "gpt2");
    CHECK(io_tokenizer_resolve_config(&c, &err) == CU_OK && !c.tokenizer.path[0]);
}

static void remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        static const char *const names[] = {"tjim",
                                            "both",
                                            "encoder.json",
                                            "vocab.bpe",
                                            "vocab.json",
                                            "merges.txt",
                                            "openai",
                                            "hf",
                                            "empty",
                                            "half",
                                            "half2",
                                            "badjson",
                                            "badmerges",
                                            "unknown",
                                            "dirfile",
                                            "tokenizer.json",
                                            "tokenizer_config.json",
                                            "model.safetensors",
                                            "config.json",
                                            "tj",
                                            "tjspec",
                                            "tjcfg",
                                            "tjwp",
                                            "tjnorm",
                                            "tjnorm2",
                                            "tjnfc",
                                            "tjdig",
                                            "tjdig2",
                                            "tjbf",
                                            "tjsp1",
                                            "tjsp2",
                                            "tjsp3",
                                            "tjsp4",
                                            "tjeos",
                                            "tjbos",
                                            "tjtmpl"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char child[1024];
            if (snprintf(child, sizeof child, "%s/%s", path, names[i]) < (int)sizeof child)
                remove_tree(child);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void test_cleanup(void) {
    remove_tree(root);
    struct stat st;
    CHECK(stat(root, &st) != 0);
}

TEST_MAIN(TEST(test_setup), TEST(test_byte_kind), TEST(test_both_layouts_load_alike),
          TEST(test_errors), TEST(test_tokenizer_json), TEST(test_normalizer_and_digits),
          TEST(test_resolve_config), TEST(test_cleanup))
