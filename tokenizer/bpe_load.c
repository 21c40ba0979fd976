/*
 * Loading GPT-2 BPE (see bpe.h): parses the token->id JSON with jansson,
 * builds the id->bytes table for decoding through GPT-2's bytes_to_unicode
 * mapping, finds the token of each byte and <|endoftext|>, reads the merges
 * into a hash table from (left id, right id) to (rank, merged id), and takes
 * the sha256 of it all. Every merge's parts and result must be tokens of the
 * vocabulary: that is what lets the encoder work on ids instead of strings
 * (bpe.c), and a file that breaks it is rejected with the line that does.
 */
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe_impl.h"

#define BPE_MAX_VOCAB (1 << 22)

static const char EOT_TEXT[] = "<|endoftext|>";

/* ---- bytes_to_unicode ------------------------------------------------- */

/* GPT-2's byte -> character table: bytes that print as themselves keep their
 * code point; the rest move, in byte order, to U+0100 onwards. */
static void bytes_to_unicode(uint32_t cp_of_byte[256]) {
    uint32_t moved = 0;
    for (uint32_t b = 0; b < 256; b++) {
        int keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp_of_byte[b] = keep ? b : 256 + moved++;
    }
}

static size_t utf8_put(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6)); /* table code points are below U+0800 */
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* A pair listed again keeps its last rank, as in the reference's dict. */
static void merge_put(cu_bpe_t *bpe, int32_t a, int32_t b, int32_t rank, int32_t merged) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & bpe->merge_mask;
    while (bpe->merges[i].key != MERGE_EMPTY && bpe->merges[i].key != key)
        i = (i + 1) & bpe->merge_mask;
    bpe->merges[i].key = key;
    bpe->merges[i].rank = rank;
    bpe->merges[i].merged = merged;
}

/* ---- loading ---------------------------------------------------------- */

static void hash_u32(EVP_MD_CTX *md, uint32_t v) {
    uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    EVP_DigestUpdate(md, b, 4);
}

/* The vocabulary's ids -> keys (pointing into `root`), checked. */
static int vocab_index(cu_bpe_t *bpe, json_t *root, const char *name, const char ***keys_out,
                       cu_error_t *err) {
    if (!json_is_object(root))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: expected a JSON object mapping each token to its id", name);
    if (json_object_size(root) == 0)
        return cu_error_set(err, CU_EFORMAT, "%s: the vocabulary is empty", name);
    const char *key;
    json_t *value;
    json_int_t max_id = -1;
    json_object_foreach(root, key, value) {
        if (!json_is_integer(value))
            return cu_error_set(err, CU_EFORMAT,
                                "%s: token \"%.60s\" has an id that is not an integer", name, key);
        json_int_t id = json_integer_value(value);
        if (id < 0 || id >= BPE_MAX_VOCAB)
            return cu_error_set(err, CU_EFORMAT, "%s: token \"%.60s\" has id %lld, outside 0..%d",
                                name, key, (long long)id, BPE_MAX_VOCAB - 1);
        if (id > max_id) max_id = id;
    }
    bpe->vocab_size = (int)max_id + 1;
    const char **keys = calloc((size_t)bpe->vocab_size, sizeof *keys);
    if (!keys) return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    json_object_foreach(root, key, value) {
        json_int_t id = json_integer_value(value);
        if (keys[id]) {
            int rc =
                cu_error_set(err, CU_EFORMAT, "%s: tokens \"%.60s\" and \"%.60s\" share id %lld",
                             name, keys[id], key, (long long)id);
            free(keys);
            return rc;
        }
        keys[id] = key;
    }
    *keys_out = keys;
    return CU_OK;
}

/* SentencePiece-style: ▁ (E2 96 81) is a space, <0xXX> its byte, the rest
 * UTF-8 as written. Writes the bytes at out, returns how many. */
static size_t sp_token_bytes(const char *key, uint8_t *out) {
    int byte = sp_byte_token(key);
    if (byte >= 0) {
        out[0] = (uint8_t)byte;
        return 1;
    }
    size_t at = 0;
    for (const char *p = key; *p;) {
        if (!strncmp(p, "\xe2\x96\x81", 3)) {
            out[at++] = ' ';
            p += 3;
        } else {
            out[at++] = (uint8_t)*p++;
        }
    }
    return at;
}

/* id -> bytes. A character of bytes_to_unicode's table is its byte; any
 * other (a special token made of something else) is kept as UTF-8. */
static int vocab_build_decoder(cu_bpe_t *bpe, const char **keys, const char *name,
                               cu_error_t *err) {
    uint32_t cp_of_byte[256];
    int byte_of_cp[0x144];
    bytes_to_unicode(cp_of_byte);
    for (int i = 0; i < 0x144; i++) byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) byte_of_cp[cp_of_byte[b]] = b;

    size_t total = 0, vocab = (size_t)(unsigned)bpe->vocab_size;
    for (size_t id = 0; id < vocab; id++)
        if (keys[id]) total += strlen(keys[id]);
    bpe->tok_bytes = malloc(total ? total : 1);
    bpe->tok_off = malloc((vocab + 1) * sizeof *bpe->tok_off);
    bpe->present = calloc(vocab, 1);
    if (!bpe->tok_bytes || !bpe->tok_off || !bpe->present)
        return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    size_t at = 0;
    for (int id = 0; id < bpe->vocab_size; id++) {
        bpe->tok_off[id] = at;
        if (!keys[id]) continue;
        bpe->present[id] = 1;
        const uint8_t *k = (const uint8_t *)keys[id];
        size_t n = strlen(keys[id]);
        if (bpe->sp) {
            at += sp_token_bytes(keys[id], bpe->tok_bytes + at);
            continue;
        }
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            size_t len = bpe_utf8_char(k, n, i, &cp);
            if (cp < 0x144 && byte_of_cp[cp] >= 0) {
                bpe->tok_bytes[at++] = (uint8_t)byte_of_cp[cp];
            } else {
                memcpy(bpe->tok_bytes + at, k + i, len);
                at += len;
            }
            i += len;
        }
    }
    bpe->tok_off[bpe->vocab_size] = at;
    return CU_OK;
}

static int vocab_find_specials(cu_bpe_t *bpe, json_t *root, const char *name, const char *eot_text,
                               cu_error_t *err) {
    uint32_t cp_of_byte[256];
    bytes_to_unicode(cp_of_byte);
    for (int b = 0; bpe->sp && b < 256; b++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", b);
        json_t *v = json_object_get(root, s);
        bpe->byte_id[b] = v ? (int32_t)json_integer_value(v) : -1;
    }
    for (int b = 0; !bpe->sp && b < 256; b++) {
        char s[3] = {0};
        utf8_put(cp_of_byte[b], s);
        json_t *v = json_object_get(root, s);
        if (!v)
            return cu_error_set(err, CU_EFORMAT,
                                "%s: no token for byte 0x%02X (\"%s\"); a GPT-2 byte-level "
                                "vocabulary has one for each of the 256 bytes",
                                name, b, s);
        bpe->byte_id[b] = (int32_t)json_integer_value(v);
    }
    json_t *v = json_object_get(root, eot_text);
    if (!v) return cu_error_set(err, CU_EFORMAT, "%s: no \"%s\" token", name, eot_text);
    bpe->eot = (int)json_integer_value(v);
    return CU_OK;
}

static void hash_vocab(EVP_MD_CTX *md, const cu_bpe_t *bpe, const char **keys) {
    static const char header[] = "cu-tokenizer/1\0gpt2";
    EVP_DigestUpdate(md, header, sizeof header);
    hash_u32(md, (uint32_t)bpe->vocab_size);
    for (int id = 0; id < bpe->vocab_size; id++) {
        if (!keys[id]) {
            hash_u32(md, UINT32_MAX);
            continue;
        }
        size_t n = strlen(keys[id]);
        hash_u32(md, (uint32_t)n);
        EVP_DigestUpdate(md, keys[id], n);
    }
}

static int is_field_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Splits a merges line into at most 3 fields (3 means "too many"). */
static int split_fields(const char *p, const char *end, const char *f[3], size_t flen[3]) {
    int nf = 0;
    while (p < end && nf < 3) {
        while (p < end && is_field_space(*p)) p++;
        if (p == end) break;
        const char *s = p;
        while (p < end && !is_field_space(*p)) p++;
        f[nf] = s;
        flen[nf] = (size_t)(p - s);
        nf++;
    }
    return nf;
}

static int vocab_lookup(json_t *root, char *buf, const char *a, size_t alen, const char *b,
                        size_t blen, int32_t *id) {
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    buf[alen + blen] = '\0';
    json_t *v = json_object_get(root, buf);
    if (!v) return 0;
    *id = (int32_t)json_integer_value(v);
    return 1;
}

static int load_merges(cu_bpe_t *bpe, json_t *root, const char *text, size_t len, const char *name,
                       EVP_MD_CTX *md, cu_error_t *err) {
    size_t lines = 1, longest = 0;
    for (const char *p = text, *end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        if ((size_t)(le - p) > longest) longest = (size_t)(le - p);
        lines++;
        p = nl ? nl + 1 : end;
    }
    size_t slots = 16;
    while (slots < 2 * lines) slots *= 2;
    bpe->merges = malloc(slots * sizeof *bpe->merges);
    char *buf = malloc(longest + 1);
    if (!bpe->merges || !buf) {
        free(buf);
        return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    }
    bpe->merge_mask = slots - 1;
    for (size_t i = 0; i < slots; i++) bpe->merges[i].key = MERGE_EMPTY;

    int rc = CU_OK;
    size_t line_no = 0;
    int32_t rank = 0;
    for (const char *p = text, *end = text + len; p < end && rc == CU_OK;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        const char *line = p;
        p = nl ? nl + 1 : end;
        line_no++;
        if (line_no == 1 && le - line >= 8 && memcmp(line, "#version", 8) == 0) continue;
        if (memchr(line, '\0', (size_t)(le - line))) {
            rc = cu_error_set(err, CU_EFORMAT, "%s line %zu: contains a NUL byte", name, line_no);
            break;
        }
        const char *f[3];
        size_t fl[3];
        int nf = split_fields(line, le, f, fl);
        if (nf == 0) continue;
        if (nf != 2) {
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s line %zu: expected two tokens separated by a space, got \"%.*s\"",
                              name, line_no, (int)(le - line > 80 ? 80 : le - line), line);
            break;
        }
        int32_t a, b, ab;
        int have_a = vocab_lookup(root, buf, f[0], fl[0], "", 0, &a);
        if (!have_a || !vocab_lookup(root, buf, f[1], fl[1], "", 0, &b)) {
            int which = have_a ? 1 : 0;
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s line %zu: token \"%.*s\" is not in the vocabulary", name, line_no,
                              (int)(fl[which] > 60 ? 60 : fl[which]), f[which]);
            break;
        }
        if (!vocab_lookup(root, buf, f[0], fl[0], f[1], fl[1], &ab)) {
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s line %zu: the merged token \"%.*s%.*s\" is not in the vocabulary",
                              name, line_no, (int)(fl[0] > 60 ? 60 : fl[0]), f[0],
                              (int)(fl[1] > 60 ? 60 : fl[1]), f[1]);
            break;
        }
        if (rank == INT32_MAX) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: too many merges", name);
            break;
        }
        merge_put(bpe, a, b, rank++, ab);
        hash_u32(md, (uint32_t)a);
        hash_u32(md, (uint32_t)b);
    }
    free(buf);
    return rc;
}

/* added_tokens join the vocabulary; one that is there already must keep
 * its id. */
static int vocab_add(json_t *root, json_t *added, const char *name, cu_error_t *err) {
    if (!json_is_object(added))
        return cu_error_set(err, CU_EFORMAT, "%s: added_tokens are not token -> id", name);
    const char *key;
    json_t *value;
    json_object_foreach(added, key, value) {
        json_t *have = json_object_get(root, key);
        if (have && !json_equal(have, value))
            return cu_error_set(err, CU_EFORMAT,
                                "%s: added token \"%.60s\" has id %lld but the vocabulary gives "
                                "it %lld",
                                name, key, (long long)json_integer_value(value),
                                (long long)json_integer_value(have));
        if (!have && json_object_set(root, key, value))
            return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    }
    return CU_OK;
}

/* ignore_merges: token bytes -> id for every vocabulary token but the added
 * ones (Hugging Face looks the piece up in the model's vocabulary only). */
static int build_whole(cu_bpe_t *bpe, const char **keys, json_t *added, const char *name,
                       cu_error_t *err) {
    size_t slots = 16;
    while (slots < 2 * (size_t)bpe->vocab_size) slots *= 2;
    bpe->whole = malloc(slots * sizeof *bpe->whole);
    if (!bpe->whole) return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    bpe->whole_mask = slots - 1;
    for (size_t i = 0; i < slots; i++) bpe->whole[i] = -1;
    for (int id = 0; id < bpe->vocab_size; id++) {
        if (!keys[id] || (added && json_object_get(added, keys[id]))) continue;
        /* SentencePiece-style: <0xXX> only by byte fallback; a literal space
         * never reaches the model (the normalizer made it ▁) */
        if (bpe->sp && (sp_byte_token(keys[id]) >= 0 || strchr(keys[id], ' '))) continue;
        const uint8_t *b = bpe->tok_bytes + bpe->tok_off[id];
        size_t n = bpe->tok_off[id + 1] - bpe->tok_off[id];
        size_t i = (size_t)hash_bytes(b, n) & bpe->whole_mask;
        while (bpe->whole[i] >= 0) i = (i + 1) & bpe->whole_mask;
        bpe->whole[i] = id; /* two tokens with the same bytes: the first id wins lookups */
    }
    return CU_OK;
}

/* Extras that change how text encodes go into the hash after the merges;
 * with none of them the hash is bpe_open's. */
static void hash_options(EVP_MD_CTX *md, const bpe_options_t *o) {
    if (o->eot_text && strcmp(o->eot_text, EOT_TEXT)) {
        EVP_DigestUpdate(md, "\0eot\0", 5);
        EVP_DigestUpdate(md, o->eot_text, strlen(o->eot_text));
    }
    if (o->split_regex) {
        EVP_DigestUpdate(md, "\0split\0", 7);
        EVP_DigestUpdate(md, o->split_regex, strlen(o->split_regex));
        if (o->split_then_gpt2) EVP_DigestUpdate(md, "\0then-gpt2", 11);
    }
    if (o->ignore_merges) EVP_DigestUpdate(md, "\0ignore_merges", 15);
    if (o->nfc) EVP_DigestUpdate(md, "\0nfc", 5);
    if (o->digits) EVP_DigestUpdate(md, "\0digits", 8);
    if (o->sp) {
        char s[96];
        int n = snprintf(s, sizeof s, "%csp %d %d %d %d %d", 0, o->sp_prepend, o->sp_split,
                         o->byte_fallback, o->fuse_unk, o->decode_strip);
        EVP_DigestUpdate(md, s, (size_t)n);
        if (o->unk_text) EVP_DigestUpdate(md, o->unk_text, strlen(o->unk_text) + 1);
    }
}

int bpe_open(cu_bpe_t **out, const char *vocab_json, size_t vocab_len, const char *vocab_name,
             const char *merges, size_t merges_len, const char *merges_name, cu_error_t *err) {
    return bpe_open_opts(out, vocab_json, vocab_len, vocab_name, merges, merges_len, merges_name,
                         NULL, err);
}

int bpe_open_opts(cu_bpe_t **out, const char *vocab_json, size_t vocab_len, const char *vocab_name,
                  const char *merges, size_t merges_len, const char *merges_name,
                  const bpe_options_t *opts, cu_error_t *err) {
    *out = NULL;
    static const bpe_options_t DEFAULTS = {0};
    if (!opts) opts = &DEFAULTS;
    json_t *added = NULL;
    if (!vocab_json || !merges)
        return cu_error_set(err, CU_EINVAL, "GPT-2 tokenizer: vocabulary or merges missing");
    cu_bpe_t *bpe = calloc(1, sizeof *bpe);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!bpe || !md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        free(bpe);
        EVP_MD_CTX_free(md);
        return cu_error_set(err, CU_ENOMEM, "out of memory opening the GPT-2 tokenizer");
    }
    json_error_t jerr;
    json_t *root = json_loadb(vocab_json, vocab_len, 0, &jerr);
    const char **keys = NULL;
    int rc;
    if (!root) {
        rc = cu_error_set(err, CU_EFORMAT, "%s: not valid JSON (line %d, column %d: %s)",
                          vocab_name, jerr.line, jerr.column, jerr.text);
        goto done;
    }
    rc = CU_OK;
    if (opts->added_json) {
        added = json_loads(opts->added_json, 0, &jerr);
        rc = added ? vocab_add(root, added, vocab_name, err)
                   : cu_error_set(err, CU_EFORMAT, "%s: added_tokens: %s", vocab_name, jerr.text);
    }
    bpe->sp = opts->sp;
    bpe->sp_prepend = opts->sp_prepend;
    bpe->sp_split = opts->sp_split;
    bpe->byte_fallback = opts->byte_fallback;
    bpe->fuse_unk = opts->fuse_unk;
    bpe->decode_strip = opts->decode_strip;
    bpe->ignore_merges = opts->ignore_merges;
    bpe->unk = -1;
    if (rc == CU_OK) rc = vocab_index(bpe, root, vocab_name, &keys, err);
    if (rc == CU_OK) rc = vocab_build_decoder(bpe, keys, vocab_name, err);
    if (rc == CU_OK)
        rc = vocab_find_specials(bpe, root, vocab_name, opts->eot_text ? opts->eot_text : EOT_TEXT,
                                 err);
    if (rc == CU_OK) {
        hash_vocab(md, bpe, keys);
        rc = load_merges(bpe, root, merges, merges_len, merges_name, md, err);
    }
    if (rc == CU_OK && (opts->ignore_merges || opts->sp))
        rc = build_whole(bpe, keys, added, vocab_name, err);
    if (rc == CU_OK && opts->sp && opts->unk_text) {
        json_t *u = json_object_get(root, opts->unk_text);
        if (!u)
            rc = cu_error_set(err, CU_EFORMAT, "%s: unk_token \"%.60s\" is not in the vocabulary",
                              vocab_name, opts->unk_text);
        else
            bpe->unk = (int32_t)json_integer_value(u);
    }
    if (rc == CU_OK && opts->sp && (opts->split_regex || opts->nfc || opts->digits))
        rc = cu_error_set(err, CU_EFORMAT,
                          "%s: a SentencePiece-style tokenizer with a Split, NFC or Digits "
                          "pre-tokenizer is not supported",
                          vocab_name);
    if (rc == CU_OK && opts->split_regex)
        rc = bpe_regex_compile(bpe, opts->split_regex, opts->split_then_gpt2, vocab_name, err);
    if (rc == CU_OK && opts->digits && opts->split_regex)
        rc = cu_error_set(err, CU_EFORMAT,
                          "%s: Digits and a Split pattern together are not "
                          "supported",
                          vocab_name);
    bpe->nfc = opts->nfc;
    bpe->digits = opts->digits;
    if (rc == CU_OK) hash_options(md, opts);
    if (rc == CU_OK) {
        unsigned char digest[EVP_MAX_MD_SIZE];
        unsigned int dlen = 0;
        if (!EVP_DigestFinal_ex(md, digest, &dlen) || dlen != 32)
            rc = cu_error_set(err, CU_EINTERNAL, "sha256 of the GPT-2 tokenizer failed");
        for (unsigned int i = 0; rc == CU_OK && i < dlen; i++)
            snprintf(bpe->hash + 2 * i, 3, "%02x", digest[i]);
    }
done:
    free(keys);
    json_decref(added);
    json_decref(root);
    EVP_MD_CTX_free(md);
    if (rc != CU_OK) {
        bpe_free(bpe);
        return rc;
    }
    *out = bpe;
    return CU_OK;
}

void bpe_free(cu_bpe_t *bpe) {
    if (!bpe) return;
    free(bpe->tok_bytes);
    free(bpe->tok_off);
    free(bpe->present);
    free(bpe->merges);
    free(bpe->cache);
    free(bpe->cache_keys);
    free(bpe->cache_ids);
    free(bpe->sym);
    free(bpe->prv);
    free(bpe->nxt);
    free(bpe->heap);
    free(bpe->pend);
    free(bpe->whole);
    free(bpe->norm);
    bpe_regex_free(bpe);
    free(bpe);
}

int bpe_vocab_size(const cu_bpe_t *bpe) {
    return bpe->vocab_size;
}

int bpe_token_id(const cu_bpe_t *bpe, const uint8_t *s, size_t n) {
    for (int id = 0; id < bpe->vocab_size; id++)
        if (bpe->present[id] && bpe->tok_off[id + 1] - bpe->tok_off[id] == n &&
            !memcmp(bpe->tok_bytes + bpe->tok_off[id], s, n))
            return id;
    return -1;
}

int bpe_eot(const cu_bpe_t *bpe) {
    return bpe->eot;
}

const char *bpe_hash(const cu_bpe_t *bpe) {
    return bpe->hash;
}
