/*
 * Unit tests of the tokenizers (model/tokenizer.h and the BPE internals in
 * model/bpe.h) on hand-made vocabularies, so they need no downloaded files:
 * the byte tokenizer; BPE ids worked out by hand; merge-order subtleties
 * (every occurrence of the lowest pair before any new pair, a repeated merge
 * keeping its last rank) that GPT-2's own merges never exercise; the plain
 * and heap merge loops agreeing on random merge tables; the pre-tokeniser on
 * tricky inputs; UTF-8 decoding as Python's surrogateescape does it, checked
 * exhaustively; round trips of random bytes; long runs; bad vocabularies and
 * merges giving errors; the hash.
 */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "harness.h"
#include "tok_tiny_vocab.h"
#include "tokenizer/bpe.h"
#include "tokenizer/tokenizer.h"

#define G "\xc4\xa0" /* U+0120, GPT-2's character for the space byte */

/* ---- helpers ---------------------------------------------------------- */

static cu_tokenizer_t *open_bpe(const char *const *extra, int n_extra, const char *merges) {
    char *json = tiny_vocab_json(extra, n_extra);
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    int rc = tokenizer_open_gpt2(&tok, json, strlen(json), merges, strlen(merges), &err);
    CHECK_MSG(rc == CU_OK && tok, "open failed: %s", err.msg);
    free(json);
    return tok;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < n; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Encodes text[0..len) and compares with want; reports the line on failure. */
static void check_ids(cu_tokenizer_t *tok, const char *text, size_t len, const int32_t *want,
                      size_t nwant, int line) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    cu_error_t err = {0};
    int rc = tokenizer_encode(tok, (const uint8_t *)text, len, &ids, &n, &cap, &err);
    int same = rc == CU_OK && n == nwant && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
    CHECK_MSG(same, "line %d: encoding \"%s\" (rc %d %s)", line, text, rc, err.msg);
    if (!same) {
        print_ids("want", want, nwant);
        print_ids("got ", ids, n);
    }
    free(ids);
}

#define ID_LIST(...) ((const int32_t[]){__VA_ARGS__})
#define ID_COUNT(...) (sizeof ID_LIST(__VA_ARGS__) / sizeof(int32_t))
#define CHECK_IDS(tok, text, ...)                                                                  \
    check_ids(tok, text, sizeof(text) - 1, ID_LIST(__VA_ARGS__), ID_COUNT(__VA_ARGS__), __LINE__)

/* One pre-token merged by the given loop, no cache. */
static size_t merge_with(cu_tokenizer_t *tok, cu_bpe_merge_algo_t algo, const char *word,
                         size_t len, int32_t **ids, size_t *cap) {
    size_t n = 0;
    cu_error_t err = {0};
    int rc =
        bpe_encode_piece(tokenizer_bpe(tok), (const uint8_t *)word, len, algo, ids, &n, cap, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    return n;
}

static int round_trips(cu_tokenizer_t *tok, const uint8_t *text, size_t len) {
    int32_t *ids = NULL;
    uint8_t *back = NULL;
    size_t n = 0, cap = 0, blen = 0, bcap = 0;
    cu_error_t err = {0};
    int ok = tokenizer_encode(tok, text, len, &ids, &n, &cap, &err) == CU_OK &&
             tokenizer_decode(tok, ids, n, &back, &blen, &bcap, &err) == CU_OK && blen == len &&
             (len == 0 || memcmp(back, text, len) == 0);
    free(ids);
    free(back);
    return ok;
}

/* ---- the byte tokenizer ----------------------------------------------- */

static void test_byte_tokenizer(void) {
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    CHECK(tokenizer_open_byte(&tok, &err) == CU_OK);
    if (!tok) return;
    CHECK(tokenizer_kind(tok) == CU_TOKENIZER_BYTE);
    CHECK(tokenizer_vocab_size(tok) == 257);
    CHECK(tokenizer_eot(tok) == 256);
    CHECK(strlen(tokenizer_hash(tok)) == 64);
    CHECK_IDS(tok, "ab\xff\x00 ", 97, 98, 255, 0, 32);
    CHECK_IDS(tok, "<|endoftext|>", 60, 124, 101, 110, 100, 111, 102, 116, 101, 120, 116, 124, 62);

    uint8_t *out = NULL;
    size_t len = 0, cap = 0;
    CHECK(tokenizer_decode(tok, ID_LIST(104, 105, 256, 0, 255), 5, &out, &len, &cap, &err) ==
          CU_OK);
    CHECK(len == 17 && memcmp(out, "hi<|endoftext|>\x00\xff", 17) == 0);
    CHECK(tokenizer_decode(tok, ID_LIST(104, 257), 2, &out, &len, &cap, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "257") != NULL);
    CHECK(tokenizer_decode(tok, ID_LIST(-1), 1, &out, &len, &cap, &err) == CU_EINVAL);
    CHECK(len == 17); /* nothing appended on error */
    free(out);

    cu_rng_t rng;
    cu_rng_seed(&rng, 1);
    uint8_t buf[512];
    for (int t = 0; t < 200; t++) {
        size_t n = (size_t)cu_rng_below(&rng, sizeof buf);
        for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)cu_rng_next(&rng);
        CHECK(round_trips(tok, buf, n));
    }
    tokenizer_free(tok);
}

/* ---- BPE by hand ------------------------------------------------------ */

static const char *const HELLO_TOKENS[] = {
    "he", "ll", "hell", "hello", G "w", "or", G "wor", "ld", G "world", G G, G G G G, "'s",
};
static const char HELLO_MERGES[] = "#version: 0.2\n"
                                   "h e\nl l\nhe ll\nhell o\n" G " w\no r\n" G "w or\nl d\n" G
                                   "wor ld\n" G " " G "\n" G G " " G G "\n' s\n";
enum { HE = 256, LL, HELL, HELLO, GW, OR, GWOR, LD, GWORLD, GG, GGGG, APOS_S, HELLO_EOT };

static cu_tokenizer_t *open_hello(void) {
    return open_bpe(HELLO_TOKENS, 12, HELLO_MERGES);
}

static void test_bpe_hand_checked(void) {
    cu_tokenizer_t *tok = open_hello();
    if (!tok) return;
    CHECK(tokenizer_kind(tok) == CU_TOKENIZER_GPT2);
    CHECK(tokenizer_vocab_size(tok) == 269);
    CHECK(tokenizer_eot(tok) == HELLO_EOT);
    /* h e l l o: he (rank 0), ll (1), hell (2), hello (3). */
    CHECK_IDS(tok, "hello", HELLO);
    /* Ġ w o r l d: Ġw (4), or (5), Ġwor (6), ld (7), Ġworld (8). */
    CHECK_IDS(tok, "hello world", HELLO, GWORLD);
    /* No Ġ: w o r l d -> w or ld, and (w, or) is no merge. */
    CHECK_IDS(tok, "world", 'w', OR, LD);
    /* Each pass merges every occurrence: he..he, ll..ll, hell..hell. */
    CHECK_IDS(tok, "hellohello", HELLO, HELLO);
    /* Six spaces and x: "     " + " x"; ĠĠ ĠĠ Ġ then ĠĠĠĠ Ġ. */
    CHECK_IDS(tok, "      x", GGGG, ' ', ' ', 'x');
    CHECK_IDS(tok, "it's", 'i', 't', APOS_S);
    CHECK_IDS(tok, "IT'S", 'I', 'T', '\'', 'S');
    CHECK_IDS(tok, "\xff", 255);
    CHECK_IDS(tok, "caf\xc3\xa9", 'c', 'a', 'f', 0xC3, 0xA9);
    /* The end-of-text string is text, never the special id. */
    CHECK_IDS(tok, "<|endoftext|>", '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|',
              '>');
    check_ids(tok, "", 0, NULL, 0, __LINE__);

    /* Encoding appends to what is there. */
    int32_t *ids = malloc(2 * sizeof *ids);
    size_t n = 2, cap = 2;
    cu_error_t err = {0};
    ids[0] = 7;
    ids[1] = 8;
    CHECK(tokenizer_encode(tok, (const uint8_t *)"hello world", 11, &ids, &n, &cap, &err) == 0);
    CHECK(n == 4 && cap >= 4 && ids[0] == 7 && ids[1] == 8 && ids[2] == HELLO && ids[3] == GWORLD);

    uint8_t *out = NULL;
    size_t len = 0, ocap = 0;
    CHECK(tokenizer_decode(tok, ids + 2, 2, &out, &len, &ocap, &err) == CU_OK);
    CHECK(len == 11 && memcmp(out, "hello world", 11) == 0);
    CHECK(tokenizer_decode(tok, ID_LIST(HELLO_EOT, GG), 2, &out, &len, &ocap, &err) == CU_OK);
    CHECK(len == 26 && memcmp(out, "hello world<|endoftext|>  ", 26) == 0);
    CHECK(tokenizer_decode(tok, ID_LIST(HELLO_EOT + 1), 1, &out, &len, &ocap, &err) == CU_EINVAL);
    CHECK(len == 26);
    free(out);
    free(ids);
    tokenizer_free(tok);
}

/* Merge lists that a trained BPE would never produce, where the order of
 * choices shows: the reference merges every occurrence of the lowest pair
 * before looking at the pairs that creates, even ones of lower rank. */
static void test_bpe_merge_order(void) {
    static const char *const tokens[] = {"aa", "aaa"};
    cu_tokenizer_t *tok = open_bpe(tokens, 2, "aa a\na a\n"); /* (aa,a) rank 0, (a,a) rank 1 */
    if (!tok) return;
    enum { AA = 256, AAA = 257 };
    static const struct {
        const char *word;
        int32_t want[3];
        size_t n;
    } cases[] = {
        {"aaaa", {AA, AA}, 2},   /* a a a a -> aa aa, not aaa a */
        {"aaa", {AAA}, 1},       /* aa a -> aaa */
        {"aaaaa", {AA, AAA}, 2}, /* aa aa a -> aa aaa */
        {"aaaaaa", {AA, AA, AA}, 3},
    };
    int32_t *ids = NULL;
    size_t cap = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len = strlen(cases[c].word);
        check_ids(tok, cases[c].word, len, cases[c].want, cases[c].n, __LINE__);
        for (int algo = CU_BPE_MERGE_PLAIN; algo <= CU_BPE_MERGE_HEAP; algo++) {
            size_t n = merge_with(tok, (cu_bpe_merge_algo_t)algo, cases[c].word, len, &ids, &cap);
            CHECK_MSG(n == cases[c].n && memcmp(ids, cases[c].want, n * sizeof *ids) == 0,
                      "\"%s\" with merge loop %d", cases[c].word, algo);
        }
    }
    tokenizer_free(tok);

    /* A merge listed twice keeps its last rank, as a Python dict does:
     * (a,a) ends at rank 2, after (a,b) at rank 1, so "aab" -> a ab. */
    static const char *const tokens2[] = {"aa", "ab"};
    tok = open_bpe(tokens2, 2, "a a\na b\na a\n");
    if (!tok) return;
    CHECK_IDS(tok, "aab", 'a', 257);
    for (int algo = CU_BPE_MERGE_PLAIN; algo <= CU_BPE_MERGE_HEAP; algo++) {
        size_t n = merge_with(tok, (cu_bpe_merge_algo_t)algo, "aab", 3, &ids, &cap);
        CHECK(n == 2 && ids[0] == 'a' && ids[1] == 257);
    }
    free(ids);
    tokenizer_free(tok);
}

/* Random merge tables over {a, b, c} in random (so often untrained) order:
 * the heap loop must agree with the plain reference loop on every word. */
static void test_merge_loops_agree(void) {
    cu_rng_t rng;
    cu_rng_seed(&rng, 42);
    enum { TABLES = 60, MAX_TOKENS = 40, WORDS = 150 };
    for (int t = 0; t < TABLES; t++) {
        char tok_text[MAX_TOKENS + 3][64];
        int ntok = 3;
        strcpy(tok_text[0], "a");
        strcpy(tok_text[1], "b");
        strcpy(tok_text[2], "c");
        char merges[MAX_TOKENS][130];
        int nmerges = 0;
        int want = 5 + (int)cu_rng_below(&rng, MAX_TOKENS - 5);
        for (int tries = 0; nmerges < want && tries < 1000; tries++) {
            int x = (int)cu_rng_below(&rng, (uint64_t)ntok),
                y = (int)cu_rng_below(&rng, (uint64_t)ntok);
            char cat[130];
            if (snprintf(cat, sizeof cat, "%s%s", tok_text[x], tok_text[y]) >= 64) continue;
            int known = 0;
            for (int k = 0; k < ntok; k++) known |= strcmp(tok_text[k], cat) == 0;
            int dup = 0;
            char line[130];
            snprintf(line, sizeof line, "%s %s", tok_text[x], tok_text[y]);
            for (int k = 0; k < nmerges; k++) dup |= strcmp(merges[k], line) == 0;
            if (dup) continue;
            if (!known) strcpy(tok_text[ntok++], cat);
            strcpy(merges[nmerges++], line);
        }
        /* Shuffle the ranks: later merges may now come before the merges
         * that make their parts. */
        for (int k = nmerges - 1; k > 0; k--) {
            int j = (int)cu_rng_below(&rng, (uint64_t)k + 1);
            if (j == k) continue;
            char tmp[130];
            strcpy(tmp, merges[k]);
            strcpy(merges[k], merges[j]);
            strcpy(merges[j], tmp);
        }
        char merge_text[MAX_TOKENS * 131 + 1] = "";
        for (int k = 0; k < nmerges; k++) strcat(strcat(merge_text, merges[k]), "\n");
        const char *extra[MAX_TOKENS];
        for (int k = 3; k < ntok; k++) extra[k - 3] = tok_text[k];
        cu_tokenizer_t *tok = open_bpe(extra, ntok - 3, merge_text);
        if (!tok) return;
        int32_t *plain = NULL, *heap = NULL;
        size_t pcap = 0, hcap = 0;
        for (int w = 0; w < WORDS; w++) {
            char word[200];
            size_t len = 1 + (size_t)cu_rng_below(&rng, w < WORDS / 2 ? 12 : sizeof word - 1);
            for (size_t i = 0; i < len; i++) word[i] = (char)('a' + cu_rng_below(&rng, 3));
            size_t np = merge_with(tok, CU_BPE_MERGE_PLAIN, word, len, &plain, &pcap);
            size_t nh = merge_with(tok, CU_BPE_MERGE_HEAP, word, len, &heap, &hcap);
            int same = np == nh && memcmp(plain, heap, np * sizeof *plain) == 0;
            CHECK_MSG(same, "table %d, word \"%.*s\": plain and heap loops differ\nmerges:\n%s", t,
                      (int)len, word, merge_text);
            if (!same) {
                print_ids("plain", plain, np);
                print_ids("heap ", heap, nh);
            }
            /* The cached, automatic path agrees too, twice (miss, hit). */
            for (int again = 0; again < 2; again++) check_ids(tok, word, len, plain, np, __LINE__);
        }
        free(plain);
        free(heap);
        tokenizer_free(tok);
    }
}

/* ---- the pre-tokeniser ------------------------------------------------ */

static void check_pretokens(const char *text, const char *const *want, int line) {
    size_t len = strlen(text), at = 0;
    int k = 0, ok = 1;
    while (at < len && ok) {
        size_t end = bpe_pretoken_end((const uint8_t *)text, len, at);
        ok = want[k] && end > at && strlen(want[k]) == end - at &&
             memcmp(want[k], text + at, end - at) == 0;
        CHECK_MSG(ok, "line %d: in \"%s\" pre-token %d is \"%.*s\", expected \"%s\"", line, text, k,
                  (int)(end - at), text + at, want[k] ? want[k] : "(end)");
        at = end;
        k++;
    }
    CHECK_MSG(!ok || want[k] == NULL, "line %d: \"%s\" ended early, before \"%s\"", line, text,
              want[k]);
}

#define CHECK_PRETOKENS(text, ...)                                                                 \
    check_pretokens(text, (const char *const[]){__VA_ARGS__, NULL}, __LINE__)

static void test_pretokenizer(void) {
    CHECK_PRETOKENS("Hello world", "Hello", " world");
    /* Contractions: ASCII apostrophe, lower case only, and they split words. */
    CHECK_PRETOKENS("it's", "it", "'s");
    CHECK_PRETOKENS("IT'S", "IT", "'", "S");
    CHECK_PRETOKENS("we'll've", "we", "'ll", "'ve");
    CHECK_PRETOKENS("don't", "don", "'t");
    CHECK_PRETOKENS("they're I'm he'd", "they", "'re", " I", "'m", " he", "'d");
    CHECK_PRETOKENS("'sam", "'s", "am");
    CHECK_PRETOKENS("'''s", "'''", "s");
    CHECK_PRETOKENS("x 's", "x", " '", "s");
    CHECK_PRETOKENS("rock'n'roll", "rock", "'", "n", "'", "roll");
    CHECK_PRETOKENS("'r 'l 'v", "'", "r", " '", "l", " '", "v");
    CHECK_PRETOKENS("it\xe2\x80\x99s", "it", "\xe2\x80\x99", "s"); /* curly: no contraction */
    CHECK_PRETOKENS("'", "'");
    CHECK_PRETOKENS("x.'s", "x", ".'", "s");
    /* Whitespace: a run before a word leaves its last character to it. */
    CHECK_PRETOKENS("a  b", "a", " ", " b");
    CHECK_PRETOKENS("a   b", "a", "  ", " b");
    CHECK_PRETOKENS("a \n b", "a", " \n", " b");
    CHECK_PRETOKENS("a\n\nb", "a", "\n", "\n", "b");
    CHECK_PRETOKENS("\t\tfoo", "\t", "\t", "foo");
    CHECK_PRETOKENS("a \tb", "a", " ", "\t", "b");
    CHECK_PRETOKENS("x   ", "x", "   ");
    CHECK_PRETOKENS("   ", "   ");
    CHECK_PRETOKENS(" ", " ");
    CHECK_PRETOKENS("a\n", "a", "\n");
    CHECK_PRETOKENS("a \n", "a", " \n");
    CHECK_PRETOKENS("  !", " ", " !");
    CHECK_PRETOKENS("\r\n\r\nx", "\r\n\r", "\n", "x");
    /* Digits are one run however long; other scripts' digits are numbers. */
    CHECK_PRETOKENS("abc123def", "abc", "123", "def");
    CHECK_PRETOKENS("x=1000000", "x", "=", "1000000");
    CHECK_PRETOKENS("3.14 42", "3", ".", "14", " 42");
    CHECK_PRETOKENS("\xd9\xa3\xd9\xa4 \xc2\xbd", "\xd9\xa3\xd9\xa4", " \xc2\xbd"); /* ٣٤ ½ */
    /* Emoji, ZWJ sequences, modifiers, combining marks are "other". */
    CHECK_PRETOKENS("hi \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd!", "hi",
                    " \xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd!");
    CHECK_PRETOKENS("\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7x",
                    "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", "x");
    CHECK_PRETOKENS("e\xcc\x81x", "e", "\xcc\x81", "x");
    CHECK_PRETOKENS("caf\xc3\xa9 na\xc3\xafve", "caf\xc3\xa9", " na\xc3\xafve");
    CHECK_PRETOKENS("\xe4\xb8\xad\xe6\x96\x87\xe3\x80\x82", "\xe4\xb8\xad\xe6\x96\x87",
                    "\xe3\x80\x82"); /* 中文。 */
    /* Invalid UTF-8: each byte is one "other" character. */
    CHECK_PRETOKENS("a\xff"
                    "b",
                    "a", "\xff", "b");
    CHECK_PRETOKENS("!!\xff\xfe??", "!!\xff\xfe??");
    CHECK_PRETOKENS(" \xff", " \xff");
    CHECK_PRETOKENS("\xe2\x82", "\xe2\x82");
    CHECK_PRETOKENS("caf\xe9!", "caf", "\xe9!");
    CHECK_PRETOKENS("\xed\xa0\x80x", "\xed\xa0\x80", "x"); /* an encoded surrogate */
    CHECK_PRETOKENS("\xc0\x80", "\xc0\x80");               /* overlong NUL */
    CHECK_PRETOKENS("'\xff", "'\xff");
    /* <|endoftext|> is text. */
    CHECK_PRETOKENS("<|endoftext|>", "<|", "endoftext", "|>");
    CHECK_PRETOKENS("a<|endoftext|> b", "a", "<|", "endoftext", "|>", " b");
    /* Unicode whitespace is whitespace; the BOM is not. */
    CHECK_PRETOKENS("a\xe3\x80\x80"
                    "b",
                    "a", "\xe3\x80\x80", "b");
    CHECK_PRETOKENS("a \xc2\xa0"
                    "b",
                    "a", " ", "\xc2\xa0", "b");
    CHECK_PRETOKENS("a\xc2\x85"
                    "b",
                    "a", "\xc2\x85", "b"); /* U+0085 */
    CHECK_PRETOKENS("\xef\xbb\xbf"
                    "abc",
                    "\xef\xbb\xbf", "abc");
    CHECK_PRETOKENS("a\x1c"
                    "b",
                    "a", "\x1c", "b"); /* not \s in the regex module */
}

/* Python decodes with surrogateescape; the rule it applies, written out
 * independently: a sequence is valid when it is the shortest encoding of a
 * scalar value (no surrogates, at most U+10FFFF). */
static int reference_utf8(const uint8_t *s, size_t n, uint32_t *cp) {
    static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4};
    size_t len = lead_len[s[0] >> 4];
    if (len == 1) {
        *cp = s[0];
        return 1;
    }
    if (len == 0 || len > n || (len == 4 && s[0] >= 0xF8)) goto bad;
    uint32_t c = s[0] & (0x7F >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) goto bad;
        c = (c << 6) | (s[k] & 0x3F);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min_cp[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) goto bad;
    *cp = c;
    return (int)len;
bad:
    *cp = 0xDC00u | s[0];
    return 1;
}

static void test_utf8_decoding(void) {
    uint8_t s[4];
    long bad = 0;
    /* Every 1-, 2- and 3-byte input, exhaustively. */
    for (uint32_t v = 0; v < (1u << 24) && bad < 5; v++) {
        s[0] = (uint8_t)(v >> 16);
        s[1] = (uint8_t)(v >> 8);
        s[2] = (uint8_t)v;
        for (size_t n = 1; n <= 3; n++) {
            if (n < 3 && (v & ((1u << (8 * (3 - n))) - 1))) continue;
            uint32_t cp, want_cp;
            size_t got = bpe_utf8_char(s, n, 0, &cp);
            size_t want = (size_t)reference_utf8(s, n, &want_cp);
            if (got != want || cp != want_cp) {
                bad++;
                CHECK_MSG(0, "%zu bytes %02X %02X %02X: got len %zu U+%04X, want len %zu U+%04X", n,
                          s[0], s[1], s[2], got, cp, want, want_cp);
            }
        }
    }
    /* 4-byte inputs: every lead byte from F0 with random tails, and the
     * edges exactly. */
    cu_rng_t rng;
    cu_rng_seed(&rng, 7);
    for (int t = 0; t < 2000000 && bad < 5; t++) {
        s[0] = (uint8_t)(0xF0 + cu_rng_below(&rng, 16));
        for (int k = 1; k < 4; k++)
            s[k] = (uint8_t)(cu_rng_below(&rng, 4) ? 0x80 + cu_rng_below(&rng, 64)
                                                   : cu_rng_below(&rng, 256));
        uint32_t cp, want_cp;
        size_t got = bpe_utf8_char(s, 4, 0, &cp), want = (size_t)reference_utf8(s, 4, &want_cp);
        if (got != want || cp != want_cp) {
            bad++;
            CHECK_MSG(0, "%02X %02X %02X %02X: got len %zu U+%04X, want len %zu U+%04X", s[0], s[1],
                      s[2], s[3], got, cp, want, want_cp);
        }
    }
    uint32_t cp;
    CHECK(bpe_utf8_char((const uint8_t *)"\xf4\x8f\xbf\xbf", 4, 0, &cp) == 4 && cp == 0x10FFFF);
    CHECK(bpe_utf8_char((const uint8_t *)"\xf4\x90\x80\x80", 4, 0, &cp) == 1 && cp == 0xDCF4);
    CHECK(bpe_utf8_char((const uint8_t *)"\xf0\x90\x80\x80", 4, 0, &cp) == 4 && cp == 0x10000);
    CHECK(bpe_utf8_char((const uint8_t *)"\xf0\x8f\xbf\xbf", 4, 0, &cp) == 1 && cp == 0xDCF0);
    CHECK(bpe_utf8_char((const uint8_t *)"\xf0\x9f\x98\x80", 3, 0, &cp) == 1); /* truncated */
}

/* ---- round trips and long inputs ------------------------------------- */

static void test_roundtrip_random(void) {
    cu_tokenizer_t *tok = open_hello();
    if (!tok) return;
    static const char *const pieces[] = {"hello",
                                         " world",
                                         " ",
                                         "  ",
                                         "\t",
                                         "\n",
                                         "'s",
                                         "'",
                                         "x",
                                         "42",
                                         "\xff",
                                         "\xc3\xa9",
                                         "\xe2\x82",
                                         "\xf0\x9f\x98\x80",
                                         "<|endoftext|>",
                                         "\r\n"};
    cu_rng_t rng;
    cu_rng_seed(&rng, 3);
    uint8_t buf[4096];
    for (int t = 0; t < 600; t++) {
        size_t n = 0, want = (size_t)cu_rng_below(&rng, sizeof buf - 16);
        while (n < want) {
            if (t % 2) {
                buf[n++] = (uint8_t)cu_rng_next(&rng); /* any byte at all */
            } else {
                const char *p = pieces[cu_rng_below(&rng, sizeof pieces / sizeof pieces[0])];
                size_t l = strlen(p);
                memcpy(buf + n, p, l);
                n += l;
            }
        }
        CHECK_MSG(round_trips(tok, buf, n), "random input %d (%zu bytes)", t, n);
    }
    tokenizer_free(tok);
}

static void test_long_inputs(void) {
    /* 1 MiB of one letter: doubling merges up to 64 letters a token. */
    static const char *const tokens[] = {
        "aa",
        "aaaa",
        "aaaaaaaa",
        "aaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    cu_tokenizer_t *tok =
        open_bpe(tokens, 6,
                 "a a\naa aa\naaaa aaaa\naaaaaaaa aaaaaaaa\n"
                 "aaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaa\n"
                 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n");
    if (!tok) return;
    size_t len = 1u << 20;
    uint8_t *text = malloc(len);
    memset(text, 'a', len);
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    cu_error_t err = {0};
    CHECK(tokenizer_encode(tok, text, len, &ids, &n, &cap, &err) == CU_OK);
    CHECK(n == len / 64);
    int all64 = 1;
    for (size_t i = 0; i < n; i++) all64 &= ids[i] == 261;
    CHECK(all64);
    CHECK(round_trips(tok, text, len));
    tokenizer_free(tok);

    /* 99,999 spaces then " x": ĠĠ and ĠĠĠĠ leave 24999 x ĠĠĠĠ, ĠĠ, Ġ. */
    tok = open_hello();
    if (!tok) return;
    len = 100001;
    memset(text, ' ', len);
    text[len - 1] = 'x';
    n = 0;
    CHECK(tokenizer_encode(tok, text, len, &ids, &n, &cap, &err) == CU_OK);
    CHECK(n == 25003 && ids[0] == GGGG && ids[24998] == GGGG && ids[24999] == GG &&
          ids[25000] == ' ' && ids[25001] == ' ' && ids[25002] == 'x');
    CHECK(round_trips(tok, text, len));
    /* A 1 MiB word of random letters, and 1 MiB of random bytes. */
    cu_rng_t rng;
    cu_rng_seed(&rng, 5);
    len = 1u << 20;
    for (size_t i = 0; i < len; i++) text[i] = (uint8_t)("helowrd"[cu_rng_below(&rng, 7)]);
    CHECK(round_trips(tok, text, len));
    for (size_t i = 0; i < len; i++) text[i] = (uint8_t)cu_rng_next(&rng);
    CHECK(round_trips(tok, text, len));
    free(ids);
    free(text);
    tokenizer_free(tok);
}

/* More distinct words than the cache holds: it empties itself and fills up
 * again, and the ids stay those of the uncached plain loop. */
static void test_cache_eviction(void) {
    cu_tokenizer_t *tok = open_hello();
    if (!tok) return;
    enum { WORDS = 700000 };
    size_t cap_text = (size_t)WORDS * 12, len = 0;
    uint8_t *text = malloc(cap_text);
    cu_rng_t rng;
    cu_rng_seed(&rng, 11);
    for (int w = 0; w < WORDS; w++) {
        text[len++] = ' ';
        size_t n = 6 + (size_t)cu_rng_below(&rng, 5); /* almost all distinct */
        for (size_t i = 0; i < n; i++) text[len++] = (uint8_t)('a' + cu_rng_below(&rng, 26));
    }
    int32_t *plain = NULL, *ids = NULL;
    size_t np = 0, pcap = 0, n = 0, cap = 0;
    cu_error_t err = {0};
    for (size_t i = 0; i < len;) {
        size_t j = bpe_pretoken_end(text, len, i);
        CHECK(bpe_encode_piece(tokenizer_bpe(tok), text + i, j - i, CU_BPE_MERGE_PLAIN, &plain, &np,
                               &pcap, &err) == CU_OK);
        i = j;
    }
    uint64_t hits = 0, misses = 0, misses_first = 0;
    for (int pass = 0; pass < 2; pass++) {
        n = 0;
        CHECK(tokenizer_encode(tok, text, len, &ids, &n, &cap, &err) == CU_OK);
        CHECK_MSG(n == np && memcmp(ids, plain, n * sizeof *ids) == 0, "pass %d", pass);
        bpe_cache_stats(tokenizer_bpe(tok), &hits, &misses);
        if (pass == 0) misses_first = misses;
    }
    /* Had nothing been evicted, the second pass would have missed nothing. */
    CHECK_MSG(misses > misses_first, "misses %llu then %llu, hits %llu",
              (unsigned long long)misses_first, (unsigned long long)misses,
              (unsigned long long)hits);
    free(plain);
    free(ids);
    free(text);
    tokenizer_free(tok);
}

/* ---- bad input -------------------------------------------------------- */

static void expect_open_error(const char *vocab, const char *merges, int code, const char *needle,
                              int line) {
    cu_tokenizer_t *tok = (cu_tokenizer_t *)&tok; /* must be reset to NULL */
    cu_error_t err = {0};
    int rc = tokenizer_open_gpt2(&tok, vocab, strlen(vocab), merges, strlen(merges), &err);
    CHECK_MSG(rc == code && err.code == code && tok == NULL && strstr(err.msg, needle),
              "line %d: rc %d (want %d), message \"%s\" (want \"%s\" in it)", line, rc, code,
              err.msg, needle);
    if (rc == CU_OK) tokenizer_free(tok);
}

static void test_bad_vocab(void) {
    char *good = tiny_vocab_json(NULL, 0);
    expect_open_error("", "", CU_EFORMAT, "not valid JSON", __LINE__);
    expect_open_error("{\"a\": 1", "", CU_EFORMAT, "not valid JSON", __LINE__);
    expect_open_error("[1, 2]", "", CU_EFORMAT, "JSON object", __LINE__);
    expect_open_error("{}", "", CU_EFORMAT, "empty", __LINE__);
    expect_open_error("{\"a\": \"1\"}", "", CU_EFORMAT, "not an integer", __LINE__);
    expect_open_error("{\"a\": 1.5}", "", CU_EFORMAT, "not an integer", __LINE__);
    expect_open_error("{\"a\": -1}", "", CU_EFORMAT, "outside", __LINE__);
    expect_open_error("{\"a\": 99999999999}", "", CU_EFORMAT, "outside", __LINE__);
    expect_open_error("{\"a\": 1, \"b\": 1}", "", CU_EFORMAT, "share id 1", __LINE__);
    expect_open_error("{\"a\": 0, \"<|endoftext|>\": 1}", "", CU_EFORMAT, "no token for byte",
                      __LINE__);
    /* Every byte but no end-of-text token. */
    char *no_eot = strdup(good);
    *strstr(no_eot, ", \"<|endoftext|>\"") = '}';
    expect_open_error(no_eot, "", CU_EFORMAT, "<|endoftext|>", __LINE__);
    free(no_eot);
    /* A byte token missing: "a" renamed to DEL, which no byte maps to. */
    char *no_a = strdup(good);
    strstr(no_a, "\"a\":")[1] = '\x7f';
    expect_open_error(no_a, "", CU_EFORMAT, "byte 0x61", __LINE__);
    free(no_a);
    free(good);
}

static void test_bad_merges(void) {
    static const char *const tokens[] = {"ab", "abc"};
    char *vocab = tiny_vocab_json(tokens, 2);
    expect_open_error(vocab, "a b\nab\n", CU_EFORMAT, "merges line 2: expected two tokens",
                      __LINE__);
    expect_open_error(vocab, "a b c\n", CU_EFORMAT, "line 1: expected two tokens", __LINE__);
    expect_open_error(vocab, "a b\nab zz\n", CU_EFORMAT, "line 2: token \"zz\" is not in",
                      __LINE__);
    expect_open_error(vocab, "q a\n", CU_EFORMAT, "merged token \"qa\" is not in", __LINE__);
    expect_open_error(vocab, "#version: 0.2\na b\n#version: 0.2\n", CU_EFORMAT, "line 3", __LINE__);
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    static const char nul[] = "a b\na\0b\n";
    CHECK(tokenizer_open_gpt2(&tok, vocab, strlen(vocab), nul, sizeof nul - 1, &err) ==
              CU_EFORMAT &&
          strstr(err.msg, "line 2: contains a NUL byte"));
    /* Accepted: no "#version", CRLF, tabs, blank lines, no final newline, no merges. */
    static const char *const ok[] = {"a b\nab c", "#version: 0.2\r\na b\r\n\r\nab\tc\r\n",
                                     "\n\n  a   b  \n", "", "#version: 0.2\n"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        CHECK_MSG(tokenizer_open_gpt2(&tok, vocab, strlen(vocab), ok[i], strlen(ok[i]), &err) ==
                      CU_OK,
                  "merges \"%s\": %s", ok[i], err.msg);
        tokenizer_free(tok);
        tok = NULL;
    }
    /* Merges given, so "abc" is one token; without them, three. */
    tok = open_bpe(tokens, 2, "a b\nab c");
    if (tok) CHECK_IDS(tok, "abc", 257);
    tokenizer_free(tok);
    tok = open_bpe(tokens, 2, "");
    if (tok) CHECK_IDS(tok, "abc", 'a', 'b', 'c');
    tokenizer_free(tok);
    free(vocab);
}

/* Random damage to a good vocabulary and merges: opening gives either a
 * working tokenizer or an error with a message, never a crash (the ASan
 * build runs this too). */
static void test_open_damaged_files(void) {
    char *vocab = tiny_vocab_json(HELLO_TOKENS, 12);
    size_t vlen = strlen(vocab), mlen = strlen(HELLO_MERGES);
    char *v = malloc(vlen + 1), *m = malloc(mlen + 1);
    static const char junk[] = "{}[]\",:0123456789 \n\t\\\x00\xff\xc4\xa0"
                               "aeu-e.";
    cu_rng_t rng;
    cu_rng_seed(&rng, 9);
    int opened = 0, refused = 0;
    for (int t = 0; t < 3000; t++) {
        memcpy(v, vocab, vlen + 1);
        memcpy(m, HELLO_MERGES, mlen + 1);
        size_t nv = vlen, nm = mlen;
        int edits = 1 + (int)cu_rng_below(&rng, 4);
        for (int e = 0; e < edits; e++) {
            int in_vocab = t % 3 == 0 || (t % 3 == 2 && e == 0);
            char *buf = in_vocab ? v : m;
            size_t *n = in_vocab ? &nv : &nm;
            if (*n == 0) continue;
            size_t at = (size_t)cu_rng_below(&rng, *n);
            switch (cu_rng_below(&rng, 3)) {
            case 0: /* overwrite a byte */
                buf[at] = junk[cu_rng_below(&rng, sizeof junk - 1)];
                break;
            case 1: /* cut the text short */
                *n = at;
                break;
            default: /* drop a stretch */
            {
                size_t drop = 1 + (size_t)cu_rng_below(&rng, 16);
                if (at + drop > *n) drop = *n - at;
                memmove(buf + at, buf + at + drop, *n - at - drop);
                *n -= drop;
            }
            }
        }
        cu_tokenizer_t *tok = NULL;
        cu_error_t err = {0};
        int rc = tokenizer_open_gpt2(&tok, v, nv, m, nm, &err);
        if (rc == CU_OK) {
            opened++;
            CHECK(tok != NULL && round_trips(tok, (const uint8_t *)"hello world  x's", 16));
            tokenizer_free(tok);
        } else {
            refused++;
            CHECK_MSG(tok == NULL && err.code == rc && err.msg[0] != '\0', "rc %d", rc);
        }
    }
    CHECK(opened > 0 && refused > 0); /* both outcomes were exercised */
    free(v);
    free(m);
    free(vocab);
}

/* ---- hashes, gaps, odd tokens ----------------------------------------- */

static void test_hash(void) {
    static const char *const tokens[] = {"ab", "abc"};
    char *vocab = tiny_vocab_json(tokens, 2);
    cu_tokenizer_t *a = open_bpe(tokens, 2, "a b\nab c\n");
    cu_tokenizer_t *b = open_bpe(tokens, 2, "#version: 0.2\na  b\r\n\nab c");
    cu_tokenizer_t *c = open_bpe(tokens, 2, "a b\n");
    cu_tokenizer_t *byte = NULL;
    cu_error_t err = {0};
    CHECK(tokenizer_open_byte(&byte, &err) == CU_OK);
    if (!a || !b || !c || !byte) goto out;
    const char *h = tokenizer_hash(a);
    CHECK(strlen(h) == 64 && strspn(h, "0123456789abcdef") == 64);
    CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(b)) == 0); /* same data, other layout */
    CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(c)) != 0); /* fewer merges */
    CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(byte)) != 0);
    /* The same vocabulary with other spacing. */
    cu_tokenizer_t *d = NULL;
    char *spaced = malloc(strlen(vocab) * 2 + 1), *p = spaced;
    for (const char *q = vocab; *q; q++) { /* ", " never occurs inside a token */
        *p++ = *q;
        if (q[0] == ',' && q[1] == ' ') *p++ = '\n';
    }
    *p = '\0';
    CHECK(tokenizer_open_gpt2(&d, spaced, strlen(spaced), "a b\nab c\n", 9, &err) == CU_OK);
    if (d) CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(d)) == 0);
    tokenizer_free(d);
    free(spaced);
    /* A different id for one token changes the hash. */
    static const char *const swapped[] = {"abc", "ab"};
    cu_tokenizer_t *e = open_bpe(swapped, 2, "a b\nab c\n");
    if (e) CHECK(strcmp(tokenizer_hash(a), tokenizer_hash(e)) != 0);
    if (e) CHECK_IDS(e, "abc", 256);
    tokenizer_free(e);
out:
    tokenizer_free(a);
    tokenizer_free(b);
    tokenizer_free(c);
    tokenizer_free(byte);
    free(vocab);
}

/* ---- non-special added tokens matched in text ------------------------ */

/* The hello vocabulary with added tokens <a> (269), <ab> (270) and <w>
 * (271), the first n_matched of `matched` matched in text. */
enum { ADD_A = HELLO_EOT + 1, ADD_AB, ADD_W };
static cu_tokenizer_t *open_added(const tokenizer_added_token_t *matched, size_t n_matched) {
    char *json = tiny_vocab_json(HELLO_TOKENS, 12);
    tokenizer_bpe_options_t opts = {0};
    opts.added_json = "{\"<a>\": 269, \"<ab>\": 270, \"<w>\": 271}";
    opts.matched = matched;
    opts.n_matched = n_matched;
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    int rc = tokenizer_open_bpe(&tok, json, strlen(json), "vocab", HELLO_MERGES,
                                strlen(HELLO_MERGES), "merges", &opts, &err);
    CHECK_MSG(rc == CU_OK && tok, "open failed: %s", err.msg);
    free(json);
    return tok;
}

static void test_added_tokens(void) {
    tokenizer_added_token_t list[] = {
        {"<a>", ADD_A, 0, 0, 0}, {"<ab>", ADD_AB, 0, 0, 0}, {"<w>", ADD_W, 1, 1, 1}};
    cu_tokenizer_t *none = open_added(list, 0), *tok = open_added(list, 3);
    if (!none || !tok) goto out;
    /* leftmost-longest: <ab> over <a> at the same place; an unfinished
     * "<a" stays text */
    CHECK_IDS(tok, "x<ab>y<a>b<a", 'x', ADD_AB, 'y', ADD_A, 'b', '<', 'a');
    CHECK_IDS(tok, "<a><ab><a>", ADD_A, ADD_AB, ADD_A);
    /* pre-tokenising restarts after a match: "world" has no space prefix */
    CHECK_IDS(tok, "hello<a>world", HELLO, ADD_A, 'w', OR, LD);
    CHECK_IDS(tok, "hello <ab> world", HELLO, ' ', ADD_AB, GWORLD);
    /* <w>: single_word (refused next to a letter, digit or '_'), lstrip and
     * rstrip (the spaces around it are absorbed) */
    CHECK_IDS(tok, "hello  <w>  world", HELLO, ADD_W, 'w', OR, LD);
    CHECK_IDS(tok, "x<w>", 'x', '<', 'w', '>');
    CHECK_IDS(tok, "_<w>", '_', '<', 'w', '>');
    CHECK_IDS(tok, "<w>7", '<', 'w', '>', '7');
    CHECK_IDS(tok, ".<w>.", '.', ADD_W, '.');
    /* without matched tokens the same vocabulary encodes them as text */
    CHECK_IDS(none, "<a>", '<', 'a', '>');
    CHECK(round_trips(tok, (const uint8_t *)" <ab>x <a> y", 12));
    /* the hash: unchanged by an empty matched list, changed by any token,
     * id or flag in it */
    cu_tokenizer_t *again = open_added(list, 0), *two = open_added(list, 2);
    CHECK(again && strcmp(tokenizer_hash(none), tokenizer_hash(again)) == 0);
    CHECK(strcmp(tokenizer_hash(none), tokenizer_hash(tok)) != 0);
    CHECK(two && strcmp(tokenizer_hash(two), tokenizer_hash(tok)) != 0);
    list[2].rstrip = 0;
    cu_tokenizer_t *flag = open_added(list, 3);
    CHECK(flag && strcmp(tokenizer_hash(flag), tokenizer_hash(tok)) != 0);
    list[2].rstrip = 1;
    cu_tokenizer_t *same = open_added(list, 3);
    CHECK(same && strcmp(tokenizer_hash(same), tokenizer_hash(tok)) == 0);
    tokenizer_free(again);
    tokenizer_free(two);
    tokenizer_free(flag);
    tokenizer_free(same);
    /* an empty list and no added_json: exactly tokenizer_open_gpt2's hash */
    cu_tokenizer_t *plain = open_hello(), *opt = NULL;
    char *json = tiny_vocab_json(HELLO_TOKENS, 12);
    tokenizer_bpe_options_t opts = {0};
    opts.matched = list;
    cu_error_t err = {0};
    CHECK(tokenizer_open_bpe(&opt, json, strlen(json), "v", HELLO_MERGES, strlen(HELLO_MERGES), "m",
                             &opts, &err) == CU_OK);
    CHECK(plain && opt && strcmp(tokenizer_hash(plain), tokenizer_hash(opt)) == 0);
    tokenizer_free(plain);
    tokenizer_free(opt);
    /* an id outside the vocabulary is an error naming the input */
    tokenizer_added_token_t bad = {"<z>", 999, 0, 0, 0};
    opts.matched = &bad;
    opts.n_matched = 1;
    cu_tokenizer_t *b = NULL;
    CHECK(tokenizer_open_bpe(&b, json, strlen(json), "vocab.json", HELLO_MERGES,
                             strlen(HELLO_MERGES), "m", &opts, &err) == CU_EFORMAT);
    CHECK(!b && strstr(err.msg, "vocab.json") && strstr(err.msg, "<z>"));
    free(json);
out:
    tokenizer_free(none);
    tokenizer_free(tok);
}

static void test_vocab_gaps_and_odd_tokens(void) {
    /* Ids 256..299 unused; the end-of-text token at 300; a token made of
     * characters outside the byte table decodes to its own UTF-8. */
    static const char *const tokens[] = {"\xe4\xb8\xad"}; /* 中 */
    char *json = tiny_vocab_json(tokens, 1);
    char *gap = malloc(strlen(json) + 16);
    strcpy(gap, json);
    strcpy(strstr(gap, "\"<|endoftext|>\""), "\"<|endoftext|>\": 300}");
    cu_tokenizer_t *tok = NULL;
    cu_error_t err = {0};
    CHECK_MSG(tokenizer_open_gpt2(&tok, gap, strlen(gap), "", 0, &err) == CU_OK, "%s", err.msg);
    if (tok) {
        CHECK(tokenizer_vocab_size(tok) == 301 && tokenizer_eot(tok) == 300);
        uint8_t *out = NULL;
        size_t len = 0, cap = 0;
        CHECK(tokenizer_decode(tok, ID_LIST(256, 300), 2, &out, &len, &cap, &err) == CU_OK);
        CHECK(len == 16 && memcmp(out, "\xe4\xb8\xad<|endoftext|>", 16) == 0);
        CHECK(tokenizer_decode(tok, ID_LIST(299), 1, &out, &len, &cap, &err) == CU_EINVAL);
        CHECK(strstr(err.msg, "299") != NULL);
        free(out);
    }
    tokenizer_free(tok);
    free(gap);
    free(json);
}

TEST_MAIN(TEST(test_byte_tokenizer), TEST(test_bpe_hand_checked), TEST(test_bpe_merge_order),
          TEST(test_merge_loops_agree), TEST(test_pretokenizer), TEST(test_utf8_decoding),
          TEST(test_roundtrip_random), TEST(test_long_inputs), TEST(test_cache_eviction),
          TEST(test_bad_vocab), TEST(test_bad_merges), TEST(test_open_damaged_files),
          TEST(test_hash), TEST(test_added_tokens), TEST(test_vocab_gaps_and_odd_tokens))
