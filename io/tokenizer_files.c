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

#include <jansson.h>

#include "core/fileio.h"

#define EXPECTED_FILES "encoder.json + vocab.bpe, vocab.json + merges.txt, or tokenizer.json"
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
    /* tokenizer.json first, as Hugging Face's fast tokenizers read it: it is
     * the whole tokenizer (pattern, added tokens, ignore_merges), where
     * vocab.json + merges.txt beside it would mean GPT-2's pattern */
    snprintf(vocab, size, "%s/tokenizer.json", dir);
    merges[0] = '\0';
    if (path_exists(vocab)) return CU_OK;
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
                        "'%s' holds neither encoder.json + vocab.bpe, vocab.json + "
                        "merges.txt nor tokenizer.json; %s",
                        dir, FETCH_HINT);
}

/* ------------------------------------------------------ tokenizer.json */

/* GPT-2's pattern as tokenizer.json spells it: the hand-written
 * pre-tokeniser (model/bpe_pretok.c) does exactly this, faster. */
static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef struct {
    char *vocab, *merges, *added, *pattern;
    size_t merges_len;
    tokenizer_added_token_t *matched; /* contents point into the JSON */
    tokenizer_bpe_options_t opts;
} tj_parts_t;

static void tj_free(tj_parts_t *t) {
    free(t->vocab);
    free(t->merges);
    free(t->added);
    free(t->pattern);
    free(t->matched);
}

/* A ByteLevel pre-tokenizer: add_prefix_space must be false; *use_regex. */
static int tj_bytelevel(json_t *pt, const char *path, int *use_regex, cu_error_t *err) {
    if (json_is_true(json_object_get(pt, "add_prefix_space")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: pre_tokenizer ByteLevel with add_prefix_space true is not "
                            "supported",
                            path);
    json_t *ur = json_object_get(pt, "use_regex");
    *use_regex = ur ? json_is_true(ur) : 1;
    return CU_OK;
}

/* StarCoder2's Sequence [Digits(individual_digits), ByteLevel(use_regex)]. */
static int tj_digits(json_t *digits, json_t *bl, size_t n, const char *path, tj_parts_t *t,
                     cu_error_t *err) {
    const char *bt = json_string_value(json_object_get(bl, "type"));
    int use_regex = 1;
    if (n != 2 || !bt || strcmp(bt, "ByteLevel"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: pre_tokenizer Sequence of Digits and %s is not supported "
                            "(Digits then ByteLevel is)",
                            path, bt ? bt : "(none)");
    if (!json_is_true(json_object_get(digits, "individual_digits")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: pre_tokenizer Digits without individual_digits is not supported",
                            path);
    int rc = tj_bytelevel(bl, path, &use_regex, err);
    if (rc == CU_OK && !use_regex)
        rc = cu_error_set(err, CU_EFORMAT,
                          "%s: Digits then ByteLevel without use_regex is not supported", path);
    t->opts.digits = 1;
    return rc;
}

/* normalizer: none, NFC, or a Sequence of NFC (Qwen2's is NFC). */
static int tj_normalizer(json_t *nz, const char *path, tj_parts_t *t, cu_error_t *err) {
    if (!nz || json_is_null(nz)) return CU_OK;
    const char *type = json_string_value(json_object_get(nz, "type"));
    if (type && !strcmp(type, "Sequence")) {
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(nz, "normalizers"), i, v) {
            int rc = tj_normalizer(v, path, t, err);
            if (rc) return rc;
        }
        return CU_OK;
    }
    if (!type || strcmp(type, "NFC"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: normalizer %s is not supported (none or NFC: Qwen2's)", path,
                            type ? type : "(no type)");
    t->opts.nfc = 1;
    return CU_OK;
}

/* ---- SentencePiece-style (Llama 2, CodeLlama, Mistral v0.1) ---- */

#define SP_SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's stand-in for a space */

static const char *type_of(json_t *o) {
    const char *t = json_string_value(json_object_get(o, "type"));
    return t ? t : "(no type)";
}

/* byte_fallback, a Metaspace pre_tokenizer or a Prepend / Replace
 * normalizer: the tokenizer.json of a converted SentencePiece model. */
static int tj_is_sp(json_t *root, json_t *model) {
    if (json_is_true(json_object_get(model, "byte_fallback"))) return 1;
    if (!strcmp(type_of(json_object_get(root, "pre_tokenizer")), "Metaspace")) return 1;
    json_t *nz = json_object_get(root, "normalizer");
    json_t *list = json_object_get(nz, "normalizers");
    size_t n = json_is_array(list) ? json_array_size(list) : 1;
    for (size_t i = 0; i < n; i++) {
        const char *ty = type_of(json_is_array(list) ? json_array_get(list, i) : nz);
        if (!strcmp(ty, "Prepend") || !strcmp(ty, "Replace")) return 1;
    }
    return 0;
}

/* Replace whose pattern is the String " " and content ▁ (normalizer), or
 * the reverse (decoder). */
static int is_replace(json_t *r, const char *from, const char *to) {
    const char *pat = json_string_value(json_object_get(json_object_get(r, "pattern"), "String"));
    const char *content = json_string_value(json_object_get(r, "content"));
    return !strcmp(type_of(r), "Replace") && pat && content && !strcmp(pat, from) &&
           !strcmp(content, to);
}

/* normalizer: none, or Prepend(▁) and Replace(" " -> ▁), alone or in a
 * Sequence. *replaces: spaces become ▁. */
static int tj_sp_normalizer(json_t *nz, const char *path, tj_parts_t *t, int *replaces,
                            cu_error_t *err) {
    if (!nz || json_is_null(nz)) return CU_OK;
    json_t *list = json_object_get(nz, "normalizers");
    int seq = !strcmp(type_of(nz), "Sequence") && json_is_array(list);
    size_t n = seq ? json_array_size(list) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = seq ? json_array_get(list, i) : nz;
        const char *pre = json_string_value(json_object_get(v, "prepend"));
        if (!strcmp(type_of(v), "Prepend") && pre && !strcmp(pre, SP_SPACE)) {
            t->opts.sp_prepend = TOKENIZER_SP_PREPEND_ALWAYS;
        } else if (is_replace(v, " ", SP_SPACE)) {
            *replaces = 1;
        } else {
            return cu_error_set(
                err, CU_EFORMAT,
                "%s: normalizer %s is not supported in a SentencePiece-style (byte_fallback) "
                "tokenizer.json (Prepend \"" SP_SPACE "\" and Replace \" \" -> "
                "\"" SP_SPACE "\" are)",
                path, type_of(v));
        }
    }
    return CU_OK;
}

/* pre_tokenizer: none, or Metaspace (replacement ▁, prepend_scheme or the
 * older add_prefix_space, split). */
static int tj_sp_pre_tokenizer(json_t *pt, const char *path, tj_parts_t *t, int *replaces,
                               cu_error_t *err) {
    if (!pt || json_is_null(pt)) return CU_OK;
    const char *rep = json_string_value(json_object_get(pt, "replacement"));
    if (strcmp(type_of(pt), "Metaspace") || !rep || strcmp(rep, SP_SPACE))
        return cu_error_set(
            err, CU_EFORMAT,
            "%s: pre_tokenizer %s is not supported in a SentencePiece-style (byte_fallback) "
            "tokenizer.json (none, or Metaspace with replacement \"" SP_SPACE "\")",
            path, type_of(pt));
    *replaces = 1;
    const char *scheme = json_string_value(json_object_get(pt, "prepend_scheme"));
    json_t *apx = json_object_get(pt, "add_prefix_space");
    int mode = TOKENIZER_SP_PREPEND_META;
    if (scheme && !strcmp(scheme, "first"))
        mode = TOKENIZER_SP_PREPEND_FIRST;
    else if (scheme && !strcmp(scheme, "never"))
        mode = TOKENIZER_SP_PREPEND_NONE;
    else if (scheme && strcmp(scheme, "always"))
        return cu_error_set(err, CU_EFORMAT, "%s: Metaspace prepend_scheme \"%s\" is not known",
                            path, scheme);
    else if (!scheme && apx && !json_is_true(apx))
        mode = TOKENIZER_SP_PREPEND_NONE;
    if (t->opts.sp_prepend != TOKENIZER_SP_PREPEND_ALWAYS) t->opts.sp_prepend = mode;
    json_t *split = json_object_get(pt, "split");
    t->opts.sp_split = split ? json_is_true(split) : 1;
    return CU_OK;
}

/* decoder: Replace(▁ -> " "), ByteFallback, Fuse, Strip(" ", start N) and
 * Metaspace, alone or in a Sequence; what they add up to is one rule:
 * ▁ is a space, <0xXX> its byte, and the whole text loses its first N
 * leading spaces (decode_strip). */
static int tj_sp_decoder(json_t *dec, const char *path, tj_parts_t *t, cu_error_t *err) {
    if (!dec || json_is_null(dec)) return CU_OK;
    json_t *list = json_object_get(dec, "decoders");
    int seq = !strcmp(type_of(dec), "Sequence") && json_is_array(list);
    size_t n = seq ? json_array_size(list) : 1;
    for (size_t i = 0; i < n; i++) {
        json_t *v = seq ? json_array_get(list, i) : dec;
        const char *ty = type_of(v);
        const char *content = json_string_value(json_object_get(v, "content"));
        json_t *start = json_object_get(v, "start");
        if (!strcmp(ty, "ByteFallback") || !strcmp(ty, "Fuse") || is_replace(v, SP_SPACE, " "))
            continue;
        if (!strcmp(ty, "Strip") && content && !strcmp(content, " ") && json_is_integer(start) &&
            json_integer_value(start) >= 0 && json_integer_value(start) <= 8 &&
            json_integer_value(json_object_get(v, "stop")) == 0) {
            t->opts.decode_strip += (int)json_integer_value(start);
            continue;
        }
        if (!strcmp(ty, "Metaspace")) {
            const char *scheme = json_string_value(json_object_get(v, "prepend_scheme"));
            json_t *apx = json_object_get(v, "add_prefix_space");
            if (scheme ? strcmp(scheme, "never") != 0 : !apx || json_is_true(apx))
                t->opts.decode_strip += 1;
            continue;
        }
        return cu_error_set(
            err, CU_EFORMAT,
            "%s: decoder %s is not supported in a SentencePiece-style (byte_fallback) "
            "tokenizer.json (Replace, ByteFallback, Fuse, Strip, Metaspace are)",
            path, ty);
    }
    return CU_OK;
}

static int tj_sentencepiece(json_t *root, json_t *model, const char *path, tj_parts_t *t,
                            cu_error_t *err) {
    int replaces = 0;
    t->opts.sp = 1;
    int rc = tj_sp_normalizer(json_object_get(root, "normalizer"), path, t, &replaces, err);
    if (rc == CU_OK)
        rc = tj_sp_pre_tokenizer(json_object_get(root, "pre_tokenizer"), path, t, &replaces, err);
    if (rc == CU_OK) rc = tj_sp_decoder(json_object_get(root, "decoder"), path, t, err);
    if (rc == CU_OK && !replaces)
        rc = cu_error_set(err, CU_EFORMAT,
                          "%s: a SentencePiece-style tokenizer.json (byte_fallback) needs a "
                          "Replace \" \" -> \"" SP_SPACE "\" normalizer or a Metaspace "
                          "pre_tokenizer",
                          path);
    t->opts.byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    t->opts.fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->opts.unk_text = json_string_value(json_object_get(model, "unk_token"));
    return rc;
}

static int tj_pre_tokenizer(json_t *pt, const char *path, tj_parts_t *t, cu_error_t *err) {
    const char *type = json_string_value(json_object_get(pt, "type"));
    int use_regex = 1;
    if (type && !strcmp(type, "ByteLevel")) {
        int rc = tj_bytelevel(pt, path, &use_regex, err);
        if (rc == CU_OK && !use_regex)
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s: a lone ByteLevel pre_tokenizer without use_regex is not "
                              "supported",
                              path);
        return rc; /* GPT-2's pre-tokeniser */
    }
    json_t *seq = json_object_get(pt, "pretokenizers");
    json_t *split = json_array_get(seq, 0), *bl = json_array_get(seq, 1);
    const char *st = json_string_value(json_object_get(split, "type"));
    if (type && !strcmp(type, "Sequence") && st && !strcmp(st, "Digits"))
        return tj_digits(split, bl, json_array_size(seq), path, t, err);
    const char *bt = json_string_value(json_object_get(bl, "type"));
    if (!type || strcmp(type, "Sequence") || json_array_size(seq) != 2 || !st ||
        strcmp(st, "Split") || !bt || strcmp(bt, "ByteLevel"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: pre_tokenizer %s is not supported (ByteLevel, or Sequence of "
                            "Split and ByteLevel)",
                            path, type ? type : "(none)");
    const char *re = json_string_value(json_object_get(json_object_get(split, "pattern"), "Regex"));
    const char *behavior = json_string_value(json_object_get(split, "behavior"));
    if (!re)
        return cu_error_set(err, CU_EFORMAT, "%s: the Split pre_tokenizer has no pattern.Regex",
                            path);
    if (!behavior || strcmp(behavior, "Isolated") || json_is_true(json_object_get(split, "invert")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: Split behavior %s%s is not supported (only Isolated, not "
                            "inverted)",
                            path, behavior ? behavior : "(none)",
                            json_is_true(json_object_get(split, "invert")) ? " inverted" : "");
    int rc = tj_bytelevel(bl, path, &use_regex, err);
    if (rc) return rc;
    if (!strcmp(re, GPT2_PATTERN)) {
        return CU_OK; /* GPT-2's pattern; a second GPT-2 split inside changes nothing */
    }
    t->pattern = strdup(re);
    if (!t->pattern) return cu_error_set(err, CU_ENOMEM, "out of memory");
    t->opts.split_regex = t->pattern;
    t->opts.split_then_gpt2 = use_regex;
    return CU_OK;
}

/* model.merges: "a b" strings or [a, b] pairs -> merges.txt text. */
static int tj_merges(json_t *merges, const char *path, tj_parts_t *t, cu_error_t *err) {
    if (!json_is_array(merges)) return cu_error_set(err, CU_EFORMAT, "%s: no model.merges", path);
    size_t cap = 1024, len = 0;
    char *buf = malloc(cap);
    if (!buf) return cu_error_set(err, CU_ENOMEM, "out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *a = NULL, *b = NULL;
        char *own = NULL;
        if (json_is_string(m)) {
            own = strdup(json_string_value(m));
            char *sp = own ? strchr(own, ' ') : NULL;
            if (sp) {
                *sp = '\0';
                a = own;
                b = sp + 1;
            }
        } else if (json_is_array(m) && json_array_size(m) == 2) {
            a = json_string_value(json_array_get(m, 0));
            b = json_string_value(json_array_get(m, 1));
        }
        int bad = !a || !b || !*a || !*b || strpbrk(a, " \t\r\n") || strpbrk(b, " \t\r\n");
        size_t need = bad ? 0 : strlen(a) + strlen(b) + 2;
        if (!bad && len + need + 1 > cap) {
            while (len + need + 1 > cap) cap *= 2;
            char *bigger = realloc(buf, cap);
            if (!bigger) {
                free(own);
                free(buf);
                return cu_error_set(err, CU_ENOMEM, "out of memory");
            }
            buf = bigger;
        }
        if (!bad) len += (size_t)sprintf(buf + len, "%s %s\n", a, b);
        free(own);
        if (bad) {
            free(buf);
            return cu_error_set(err, CU_EFORMAT,
                                "%s: model.merges[%zu] is not two tokens without spaces (only "
                                "byte-level BPE is supported)",
                                path, i);
        }
    }
    t->merges = buf;
    t->merges_len = len;
    return CU_OK;
}

/* added_tokens -> {content: id}; the non-special ones (special false) are
 * also matched in text (t->opts.matched), with their single_word, lstrip
 * and rstrip flags. Special tokens are never matched: data must not inject
 * control tokens. */
static int tj_added(json_t *added, const char *path, tj_parts_t *t, cu_error_t *err) {
    json_t *obj = json_object();
    size_t i;
    json_t *a;
    t->matched = calloc(json_array_size(added) + 1, sizeof *t->matched);
    if (!obj || !t->matched) {
        json_decref(obj);
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    json_array_foreach(added, i, a) {
        const char *content = json_string_value(json_object_get(a, "content"));
        json_t *id = json_object_get(a, "id");
        if (!content || !json_is_integer(id)) {
            json_decref(obj);
            return cu_error_set(err, CU_EFORMAT, "%s: added_tokens[%zu] needs content and id", path,
                                i);
        }
        json_object_set(obj, content, id);
        if (json_is_true(json_object_get(a, "special")) || !content[0]) continue;
        tokenizer_added_token_t *m = &t->matched[t->opts.n_matched++];
        m->content = content;
        m->id = (int)json_integer_value(id);
        m->single_word = json_is_true(json_object_get(a, "single_word"));
        m->lstrip = json_is_true(json_object_get(a, "lstrip"));
        m->rstrip = json_is_true(json_object_get(a, "rstrip"));
    }
    t->opts.matched = t->matched;
    t->added = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!t->added) return cu_error_set(err, CU_ENOMEM, "out of memory");
    t->opts.added_json = t->added;
    return CU_OK;
}

static int tj_parse(const char *path, json_t *root, tj_parts_t *t, cu_error_t *err) {
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!json_is_object(model) || (type && strcmp(type, "BPE")))
        return cu_error_set(err, CU_EFORMAT, "%s: model.type %s is not supported (only BPE)", path,
                            type ? type : "(none)");
    int sp = tj_is_sp(root, model);
    int nrc = sp ? tj_sentencepiece(root, model, path, t, err)
                 : tj_normalizer(json_object_get(root, "normalizer"), path, t, err);
    if (nrc) return nrc;
    const char *cont = json_string_value(json_object_get(model, "continuing_subword_prefix"));
    const char *suf = json_string_value(json_object_get(model, "end_of_word_suffix"));
    if ((cont && *cont) || (suf && *suf))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: continuing_subword_prefix / end_of_word_suffix are not supported",
                            path);
    json_t *dropout = json_object_get(model, "dropout");
    if (json_is_number(dropout) && json_number_value(dropout) > 0)
        return cu_error_set(err, CU_EFORMAT, "%s: BPE dropout is not supported", path);
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return cu_error_set(err, CU_EFORMAT, "%s: no model.vocab", path);
    t->vocab = json_dumps(vocab, JSON_COMPACT);
    if (!t->vocab) return cu_error_set(err, CU_ENOMEM, "out of memory");
    t->opts.ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    int rc = tj_merges(json_object_get(model, "merges"), path, t, err);
    if (rc == CU_OK && !sp)
        rc = tj_pre_tokenizer(json_object_get(root, "pre_tokenizer"), path, t, err);
    if (rc == CU_OK) rc = tj_added(json_object_get(root, "added_tokens"), path, t, err);
    if (rc) return rc;
    /* the end-of-text token: GPT-2's name, else Llama-3's, else </s> */
    static const char *const EOT_NAMES[] = {"<|endoftext|>", "<|end_of_text|>", "</s>"};
    json_t *added = json_loads(t->added, 0, NULL);
    for (size_t k = 0; k < 3 && !t->opts.eot_text; k++)
        if (json_object_get(vocab, EOT_NAMES[k]) || json_object_get(added, EOT_NAMES[k]))
            t->opts.eot_text = EOT_NAMES[k];
    json_decref(added);
    if (!t->opts.eot_text)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: no end-of-text token (<|endoftext|>, <|end_of_text|> or </s>)",
                            path);
    return CU_OK;
}

/* The special token a TemplateProcessing post_processor (top level or in a
 * Sequence) puts first in a single sequence, as Llama-3's does with
 * <|begin_of_text|>; NULL for none. Points into root. */
static const char *template_bos(json_t *pp) {
    const char *type = json_string_value(json_object_get(pp, "type"));
    if (type && !strcmp(type, "Sequence")) {
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(pp, "processors"), i, p) {
            const char *b = template_bos(p);
            if (b) return b;
        }
        return NULL;
    }
    if (!type || strcmp(type, "TemplateProcessing")) return NULL;
    json_t *first = json_array_get(json_object_get(pp, "single"), 0);
    return json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
}

/* *bos: template_bos's token (allocated, may be NULL). */
static int load_tokenizer_json(const char *path, cu_tokenizer_t **out, char **bos,
                               cu_error_t *err) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return cu_error_set(err, CU_EFORMAT, "%s: not valid JSON (line %d: %s)", path, je.line,
                            je.text);
    tj_parts_t t = {0};
    int rc = tj_parse(path, root, &t, err);
    const char *b = template_bos(json_object_get(root, "post_processor"));
    if (rc == CU_OK && b && !(*bos = strdup(b))) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK)
        rc = tokenizer_open_bpe(out, t.vocab, strlen(t.vocab), path, t.merges, t.merges_len, path,
                                &t.opts, err);
    tj_free(&t);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------ special tokens */

/* A tokenizer_config.json token: "text" or {"content": "text", ...}. */
static const char *token_text(json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

/* An id from config.json: an integer, or the first of a list. */
static int config_id(json_t *v) {
    if (json_is_array(v)) v = json_array_get(v, 0);
    return json_is_integer(v) ? (int)json_integer_value(v) : -1;
}

/* The model's special tokens from dir/tokenizer_config.json (bos_token,
 * eos_token, pad_token, add_bos_token), else dir/config.json (bos_token_id,
 * eos_token_id, pad_token_id). Neither file: the tokenizer's own
 * end-of-text, no bos. tmpl_bos, the token tokenizer.json's post_processor
 * starts a sequence with, stands for bos_token and add_bos_token when
 * tokenizer_config.json does not give them. */
static int load_specials(const char *dir, cu_tokenizer_t *tok, const char *tmpl_bos,
                         cu_error_t *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    json_t *tc = path_exists(path) ? json_load_file(path, 0, NULL) : NULL;
    if (path_exists(path) && !tc) return cu_error_set(err, CU_EFORMAT, "%s: not valid JSON", path);
    char cpath[4200];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    json_t *cc = path_exists(cpath) ? json_load_file(cpath, 0, NULL) : NULL;
    int ids[3] = {-1, tokenizer_eot(tok), -1};
    static const char *const keys[3] = {"bos_token", "eos_token", "pad_token"};
    static const char *const id_keys[3] = {"bos_token_id", "eos_token_id", "pad_token_id"};
    int rc = CU_OK;
    for (int i = 0; i < 3 && rc == CU_OK; i++) {
        const char *text = token_text(json_object_get(tc, keys[i]));
        if (text) {
            ids[i] = tokenizer_token_id(tok, text);
            if (ids[i] < 0)
                rc = cu_error_set(err, CU_EFORMAT, "%s: %s \"%s\" is not a token of the vocabulary",
                                  path, keys[i], text);
        } else if (config_id(json_object_get(cc, id_keys[i])) >= 0) {
            ids[i] = config_id(json_object_get(cc, id_keys[i]));
        }
    }
    json_t *ab = json_object_get(tc, "add_bos_token");
    int add_bos = json_is_true(ab);
    if (rc == CU_OK && tmpl_bos && !ab) {
        int id = tokenizer_token_id(tok, tmpl_bos);
        if (id < 0)
            rc = cu_error_set(err, CU_EFORMAT,
                              "tokenizer.json: post_processor's first token \"%s\" is not in the "
                              "vocabulary",
                              tmpl_bos);
        else if (ids[0] < 0 || ids[0] == id) {
            ids[0] = id;
            add_bos = 1;
        }
    }
    json_decref(tc);
    json_decref(cc);
    if (rc == CU_OK) rc = tokenizer_set_specials(tok, ids[0], ids[1], ids[2], add_bos, err);
    if (rc) cu_error_prefix(err, "%s", dir);
    return rc;
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
    char *tmpl_bos = NULL;
    if (rc == CU_OK && !merges_path[0]) {
        rc = load_tokenizer_json(vocab_path, out, &tmpl_bos, err);
    } else {
        if (rc == CU_OK) rc = read_file(vocab_path, &vocab, &vocab_len, err);
        if (rc == CU_OK) rc = read_file(merges_path, &merges, &merges_len, err);
        if (rc == CU_OK)
            rc = tokenizer_open_gpt2_named(out, vocab, vocab_len, vocab_path, merges, merges_len,
                                           merges_path, err);
    }
    if (rc == CU_OK && (rc = load_specials(dir, *out, tmpl_bos, err))) {
        tokenizer_free(*out);
        *out = NULL;
    }
    free(tmpl_bos);
    free(vocab);
    free(merges);
    free(vocab_path);
    free(merges_path);
    return rc;
}

int io_tokenizer_dir_has_files(const char *dir) {
    static const char *const names[][2] = {
        {"encoder.json", "vocab.bpe"}, {"vocab.json", "merges.txt"}, {"tokenizer.json", NULL}};
    if (!dir || !dir[0] || !cu_is_dir(dir)) return 0;
    char a[4200], b[4200];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(a, sizeof a, "%s/%s", dir, names[i][0]);
        snprintf(b, sizeof b, "%s/%s", dir, names[i][1] ? names[i][1] : names[i][0]);
        if (path_exists(a) && path_exists(b)) return 1;
    }
    return 0;
}

/* The folder of a Hugging Face model.init: itself, or the folder of its
 * model.safetensors / model.safetensors.index.json named as a file. */
static void model_folder(const char *init, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", init);
    size_t n = strlen(dir);
    int hf_file = (n > 12 && !strcmp(dir + n - 12, ".safetensors")) ||
                  (n > 11 && !strcmp(dir + n - 11, ".index.json"));
    if (cu_is_dir(dir) || !hf_file) return;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(dir, cap, ".");
}

int io_tokenizer_resolve_config(cu_config_t *cfg, cu_error_t *err) {
    char init[sizeof cfg->model.init];
    model_folder(cfg->model.init, init, sizeof init);
    if (strcmp(init, "random") == 0 || !io_tokenizer_dir_has_files(init)) return CU_OK;
    if (strcmp(cfg->tokenizer.kind, "gpt2") == 0 && !cfg->tokenizer.path[0]) {
        if (strlen(init) >= sizeof cfg->tokenizer.path)
            return cu_error_set(err, CU_EINVAL, "model.init: path too long for tokenizer.path");
        memcpy(cfg->tokenizer.path, init, strlen(init) + 1);
        return CU_OK;
    }
    if (strcmp(cfg->tokenizer.kind, "byte") == 0 && strcmp(cfg->data.source, "random") != 0)
        return cu_error_set(err, CU_EINVAL,
                            "model.init %s ships its own tokenizer but tokenizer.kind is byte, "
                            "whose ids are not the model's: set tokenizer.kind: gpt2 "
                            "(tokenizer.path then defaults to that folder)",
                            init);
    return CU_OK;
}

int io_tokenizer_load(const char *kind, const char *path, cu_tokenizer_t **out, cu_error_t *err) {
    *out = NULL;
    if (kind && strcmp(kind, "byte") == 0) return tokenizer_open_byte(out, err);
    if (kind && strcmp(kind, "gpt2") == 0) return load_gpt2(path, out, err);
    return cu_error_set(err, CU_EINVAL,
                        "unknown tokenizer kind \"%s\" (expected \"byte\" or \"gpt2\")",
                        kind ? kind : "(none)");
}
