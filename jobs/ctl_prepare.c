/*
 * codexctl prepare: tokenises a corpus into an HDF5 dataset (io/dataset.h,
 * docs/prepare.md).
 *
 * It works in two passes over names, one over contents. First the inputs
 * (files, directories walked recursively, globs) become one sorted list of
 * files, so the result never depends on directory order. Then each file is
 * checked (readable, not empty, not binary, valid UTF-8, not too large),
 * tokenised — one document per file, or one per line of a .jsonl file — and
 * appended to the train or val split at once, so only one document is ever
 * in memory. A document goes to val by a seeded hash of its identity (path,
 * line), or because it came from a --val input. Every file gets a manifest
 * row saying what became of it; a file rejected under an `error` policy
 * means no dataset at all (exit 1).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <getopt.h>
#include <glob.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/timer.h"
#include "io/dataset.h"
#include "io/tokenizer_files.h"
#include "jobs/ctl.h"
#include "safety/redact.h"
#include "safety/rules.h"
#include "safety/safety.h"

#define SNIFF_BYTES 8192
#define DEFAULT_MAX_FILE_BYTES (64ull << 20)

enum { POLICY_SKIP = 0, POLICY_ERROR = 1, POLICY_KEEP = 2 };
enum {
    R_BINARY,
    R_INVALID_UTF8,
    R_EMPTY,
    R_UNREADABLE,
    R_TOO_LARGE,
    R_BAD_JSONL,
    R_SAFETY_BLOCK,
    N_REASONS
};
static const char *const REASONS[N_REASONS] = {
    "binary", "invalid_utf8", "empty", "unreadable", "too_large", "bad_jsonl", "safety_block"};

typedef struct {
    char *path;
    int val; /* from a --val input */
    uint64_t bytes;
} item_t;

typedef struct {
    item_t *v;
    size_t n, cap;
} item_list_t;

typedef struct {
    const char *out, *tok_kind, *tok_path, *field;
    int tok_kind_set;   /* --tokenizer given */
    const char *policy; /* the safety policy; NULL: the built-in default */
    int no_safety;      /* --no-safety: nothing redacted, recorded in the report */
    double val_fraction;
    uint64_t seed;
    const char **inc, **exc, **inputs, **vals;
    int n_inc, n_exc, n_inputs, n_vals;
    int on_binary, on_utf8, progress, val_fraction_set;
    uint64_t max_bytes;
    dev_t out_dev;
    ino_t out_ino;
    int out_exists;
} opts_t;

/* What one run did: counts for the summary and the running state. */
typedef struct {
    const opts_t *o;
    cu_tokenizer_t *tok;
    dataset_writer_t *w;
    safety_engine_t *eng; /* NULL with --no-safety */
    safety_report_t rep;
    int32_t *ids;
    size_t n_ids, cap_ids;
    long skipped[N_REASONS], rejected[N_REASONS], kept_invalid;
    size_t redactions;
    long files_done, files_total;
    uint64_t bytes_done, bytes_total;
    double start, last_draw;
    int drawn;
} run_t;

static const char USAGE[] =
    "usage: codexctl prepare -o OUT.h5 [options] INPUT...\n"
    "\n"
    "Tokenises files, directories (recursive, sorted; hidden entries skipped) and\n"
    "globs into an HDF5 dataset for data.source: hdf5 (docs/prepare.md).\n"
    "\n"
    "  -o, --output OUT.h5          the dataset to write (required)\n"
    "  --tokenizer byte|gpt2        tokenizer (default byte; gpt2 when --tokenizer-path is\n"
    "                               given)\n"
    "  --tokenizer-path DIR         byte-level BPE folder: encoder.json + vocab.bpe,\n"
    "                               vocab.json + merges.txt or a Hugging Face tokenizer.json\n"
    "                               (default third_party_data/gpt2)\n"
    "  --val-fraction F             share of documents hashed into val (default 0.05)\n"
    "  --val PATH                   use PATH (file, dir or glob) as the val split; repeatable\n"
    "  --seed N                     key of the train/val hash (default 0)\n"
    "  --include GLOB               only files whose name or path matches; repeatable\n"
    "  --exclude GLOB               leave out files whose name or path matches; repeatable\n"
    "  --jsonl-field NAME           the text field of .jsonl lines (default text)\n"
    "  --on-binary skip|error       files with NUL bytes in their first 8 KB (default skip)\n"
    "  --on-invalid-utf8 skip|error|keep  (default skip; keep tokenises the bytes as they are)\n"
    "  --max-file-bytes N           skip larger files (default 67108864; 0: no limit)\n"
    "  --progress auto|always|never a progress bar on stderr (default auto: on a terminal)\n"
    "  --policy PATH                the safety policy (default: the built-in one, as in\n"
    "                               configs/safety/policy.yaml): secrets and personal data\n"
    "                               become <REDACTED:rule> before tokenising; a document a\n"
    "                               block rule hits is left out and listed\n"
    "  --no-safety                  no redaction (recorded in the dataset's safety_report)\n"
    "  -h, --help                   this text\n"
    "\n"
    "Exit status: 0 written, 1 a file was rejected under an error policy or writing\n"
    "failed (nothing written), 2 bad usage.\n";

static int usage_error(const char *fmt, const char *arg) {
    fputs("codexctl prepare: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs("\n(codexctl prepare --help shows the options)\n", stderr);
    return 2;
}

static int push_str(const char ***v, int *n, const char *s) {
    const char **grown = realloc(*v, sizeof(char *) * (size_t)(*n + 1));
    if (!grown) return -1;
    grown[(*n)++] = s;
    *v = grown;
    return 0;
}

static int parse_policy(const char *s, int allow_keep) {
    if (!strcmp(s, "skip")) return POLICY_SKIP;
    if (!strcmp(s, "error")) return POLICY_ERROR;
    if (allow_keep && !strcmp(s, "keep")) return POLICY_KEEP;
    return -1;
}

static int parse_number(const char *s, double lo, double hi, double *v) {
    char *end;
    errno = 0;
    *v = strtod(s, &end);
    return !*s || *end || errno || *v < lo || *v > hi ? -1 : 0;
}

enum {
    O_TOK = 256,
    O_TOKPATH,
    O_VALF,
    O_VAL,
    O_SEED,
    O_INC,
    O_EXC,
    O_FIELD,
    O_BIN,
    O_UTF8,
    O_MAX,
    O_PROG,
    O_POLICY,
    O_NO_SAFETY
};

static int parse_option(opts_t *o, int c, const char *arg) {
    double v;
    switch (c) {
    case 'o':
        o->out = arg;
        return 0;
    case O_TOK:
        if (strcmp(arg, "byte") && strcmp(arg, "gpt2"))
            return usage_error("--tokenizer: '%s' is not byte or gpt2", arg);
        o->tok_kind = arg;
        o->tok_kind_set = 1;
        return 0;
    case O_TOKPATH:
        o->tok_path = arg;
        return 0;
    case O_VALF:
        if (parse_number(arg, 0, 0.9, &v))
            return usage_error("--val-fraction: '%s' is not in [0, 0.9]", arg);
        o->val_fraction = v;
        o->val_fraction_set = 1;
        return 0;
    case O_VAL:
        return push_str(&o->vals, &o->n_vals, arg) ? 1 : 0;
    case O_SEED:
        if (parse_number(arg, 0, 9007199254740992.0, &v) || v != (double)(uint64_t)v)
            return usage_error("--seed: '%s' is not a non-negative integer", arg);
        o->seed = (uint64_t)v;
        return 0;
    case O_INC:
        return push_str(&o->inc, &o->n_inc, arg) ? 1 : 0;
    case O_EXC:
        return push_str(&o->exc, &o->n_exc, arg) ? 1 : 0;
    case O_FIELD:
        o->field = arg;
        return 0;
    case O_BIN:
        if ((o->on_binary = parse_policy(arg, 0)) < 0)
            return usage_error("--on-binary: '%s' is not skip or error", arg);
        return 0;
    case O_UTF8:
        if ((o->on_utf8 = parse_policy(arg, 1)) < 0)
            return usage_error("--on-invalid-utf8: '%s' is not skip, error or keep", arg);
        return 0;
    case O_MAX:
        if (parse_number(arg, 0, 1e18, &v) || v != (double)(uint64_t)v)
            return usage_error("--max-file-bytes: '%s' is not a non-negative integer", arg);
        o->max_bytes = (uint64_t)v;
        return 0;
    case O_PROG:
        if (!strcmp(arg, "always"))
            o->progress = 1;
        else if (!strcmp(arg, "never"))
            o->progress = 0;
        else if (!strcmp(arg, "auto"))
            o->progress = isatty(STDERR_FILENO);
        else
            return usage_error("--progress: '%s' is not auto, always or never", arg);
        return 0;
    case O_POLICY:
        o->policy = arg;
        return 0;
    case O_NO_SAFETY:
        o->no_safety = 1;
        return 0;
    default:
        return usage_error("%s", "unknown option");
    }
}

/* Returns -1 to stop with exit 0 (--help), else an exit code (0 to go on). */
static int parse_args(opts_t *o, int argc, char **argv) {
    static const struct option longs[] = {{"output", required_argument, 0, 'o'},
                                          {"tokenizer", required_argument, 0, O_TOK},
                                          {"tokenizer-path", required_argument, 0, O_TOKPATH},
                                          {"val-fraction", required_argument, 0, O_VALF},
                                          {"val", required_argument, 0, O_VAL},
                                          {"seed", required_argument, 0, O_SEED},
                                          {"include", required_argument, 0, O_INC},
                                          {"exclude", required_argument, 0, O_EXC},
                                          {"jsonl-field", required_argument, 0, O_FIELD},
                                          {"on-binary", required_argument, 0, O_BIN},
                                          {"on-invalid-utf8", required_argument, 0, O_UTF8},
                                          {"max-file-bytes", required_argument, 0, O_MAX},
                                          {"progress", required_argument, 0, O_PROG},
                                          {"policy", required_argument, 0, O_POLICY},
                                          {"no-safety", no_argument, 0, O_NO_SAFETY},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    *o = (opts_t){.tok_kind = "byte",
                  .field = "text",
                  .val_fraction = 0.05,
                  .max_bytes = DEFAULT_MAX_FILE_BYTES,
                  .progress = isatty(STDERR_FILENO)};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", longs, NULL)) != -1) {
        if (c == 'h') {
            fputs(USAGE, stdout);
            return -1;
        }
        if (c == '?' || c == ':')
            return usage_error("bad or incomplete option '%s'", argv[optind - 1]);
        int rc = parse_option(o, c, optarg);
        if (rc) return rc;
    }
    for (int i = optind; i < argc; i++)
        if (push_str(&o->inputs, &o->n_inputs, argv[i])) return 1;
    if (!o->out) return usage_error("%s", "no output: give -o OUT.h5");
    if (o->n_inputs == 0) return usage_error("%s", "no INPUT files or directories given");
    if (o->n_vals && o->val_fraction_set)
        return usage_error("%s", "--val-fraction and --val exclude each other: pick one");
    if (o->n_vals) o->val_fraction = 0;
    /* a tokenizer folder means its BPE; the byte tokenizer has no files */
    if (o->tok_path && !o->tok_kind_set) o->tok_kind = "gpt2";
    if (o->tok_path && !strcmp(o->tok_kind, "byte"))
        return usage_error("--tokenizer-path %s: the byte tokenizer reads no files (drop "
                           "--tokenizer byte to use the folder's BPE)",
                           o->tok_path);
    struct stat st;
    if (stat(o->out, &st) == 0) {
        o->out_exists = 1;
        o->out_dev = st.st_dev;
        o->out_ino = st.st_ino;
    }
    return 0;
}

/* ---- collecting the file list ---- */

static int wanted(const opts_t *o, const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    int in = o->n_inc == 0;
    for (int i = 0; !in && i < o->n_inc; i++)
        in = !fnmatch(o->inc[i], base, 0) || !fnmatch(o->inc[i], path, 0);
    for (int i = 0; in && i < o->n_exc; i++)
        in = fnmatch(o->exc[i], base, 0) && fnmatch(o->exc[i], path, 0);
    return in;
}

static int add_item(item_list_t *l, const char *path, int val, uint64_t bytes) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        item_t *grown = realloc(l->v, cap * sizeof *grown);
        if (!grown) return -1;
        l->v = grown;
        l->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy) return -1;
    l->v[l->n++] = (item_t){copy, val, bytes};
    return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int add_path(const opts_t *o, item_list_t *l, const char *path, int val, int top);

static int walk_dir(const opts_t *o, item_list_t *l, const char *dir, int val) {
    struct dirent **names;
    int n = scandir(dir, &names, NULL, by_name);
    if (n < 0) {
        fprintf(stderr, "codexctl prepare: cannot list %s: %s (skipped)\n", dir, strerror(errno));
        return 0;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (rc == 0 && name[0] != '.') { /* ., .., .git and other hidden entries */
            size_t len = strlen(dir) + strlen(name) + 2;
            char *child = malloc(len);
            if (!child)
                rc = -1;
            else {
                snprintf(child, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name);
                rc = add_path(o, l, child, val, 0);
                free(child);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* A file, or a directory to walk. Inputs named on the command line (top)
 * must exist; symbolic links to directories below them are not followed. */
static int add_path(const opts_t *o, item_list_t *l, const char *path, int val, int top) {
    struct stat st, lst;
    if (stat(path, &st) != 0) {
        if (top) {
            fprintf(stderr, "codexctl prepare: %s: %s\n", path, strerror(errno));
            return 2;
        }
        return add_item(l, path, val, 0); /* a dangling link: reported as unreadable */
    }
    if (S_ISDIR(st.st_mode)) {
        if (!top && lstat(path, &lst) == 0 && S_ISLNK(lst.st_mode)) return 0;
        return walk_dir(o, l, path, val);
    }
    if (!S_ISREG(st.st_mode) && !top) return 0;
    if (o->out_exists && st.st_dev == o->out_dev && st.st_ino == o->out_ino) return 0;
    if (!wanted(o, path)) return 0;
    return add_item(l, path, val, (uint64_t)st.st_size);
}

static int add_input(const opts_t *o, item_list_t *l, const char *input, int val) {
    struct stat st;
    if (stat(input, &st) == 0 || !strpbrk(input, "*?[")) return add_path(o, l, input, val, 1);
    glob_t g;
    int rc = glob(input, 0, NULL, &g);
    if (rc == GLOB_NOMATCH) {
        fprintf(stderr, "codexctl prepare: %s matches no file\n", input);
        return 2;
    }
    if (rc != 0) return -1;
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++) rc = add_path(o, l, g.gl_pathv[i], val, 1);
    globfree(&g);
    return rc;
}

static int by_path(const void *a, const void *b) {
    return strcmp(((const item_t *)a)->path, ((const item_t *)b)->path);
}

/* Sorted by path, each file once (a --val input wins over a train one). */
static void sort_unique(item_list_t *l) {
    qsort(l->v, l->n, sizeof *l->v, by_path);
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (k && !strcmp(l->v[k - 1].path, l->v[i].path)) {
            l->v[k - 1].val |= l->v[i].val;
            free(l->v[i].path);
        } else {
            l->v[k++] = l->v[i];
        }
    }
    l->n = k;
}

static int collect(const opts_t *o, item_list_t *l) {
    int rc = 0;
    for (int i = 0; rc == 0 && i < o->n_inputs; i++) rc = add_input(o, l, o->inputs[i], 0);
    for (int i = 0; rc == 0 && i < o->n_vals; i++) rc = add_input(o, l, o->vals[i], 1);
    if (rc < 0) fputs("codexctl prepare: out of memory listing the inputs\n", stderr);
    if (rc) return rc < 0 ? 1 : rc;
    sort_unique(l);
    if (l->n == 0) {
        fputs("codexctl prepare: no input files (check the paths and --include/--exclude)\n",
              stderr);
        return 2;
    }
    return 0;
}

/* ---- checking and tokenising ---- */

/* Strict UTF-8: no overlong forms, surrogates or code points past U+10FFFF. */
static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int len = c >= 0xc2 && c <= 0xdf   ? 2
                  : c >= 0xe0 && c <= 0xef ? 3
                  : c >= 0xf0 && c <= 0xf4 ? 4
                                           : 0;
        if (!len || i + (size_t)len > n) return 0;
        for (int k = 1; k < len; k++)
            if ((s[i + (size_t)k] & 0xc0) != 0x80) return 0;
        uint8_t c1 = s[i + 1];
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f) || (c == 0xf0 && c1 < 0x90) ||
            (c == 0xf4 && c1 > 0x8f))
            return 0;
        i += (size_t)len;
    }
    return 1;
}

/* The document's split: a --val input, or a seeded hash of (path, line). */
static int doc_split(const opts_t *o, const item_t *it, uint64_t line) {
    if (it->val) return DATASET_VAL;
    if (o->n_vals || o->val_fraction <= 0) return DATASET_TRAIN;
    uint64_t h = cu_hash64(o->seed, 0x5b117);
    for (const unsigned char *p = (const unsigned char *)it->path; *p; p++) h = cu_hash64(h, *p);
    h = cu_hash64(h, line);
    return (double)(h >> 11) * (1.0 / 9007199254740992.0) < o->val_fraction ? DATASET_VAL
                                                                            : DATASET_TRAIN;
}

static void progress_draw(run_t *r, int force) {
    if (!r->o->progress) return;
    double now = cu_now();
    if (!force && now - r->last_draw < 0.2) return;
    r->last_draw = now;
    double mb = (double)r->bytes_done / 1e6, total = (double)r->bytes_total / 1e6;
    double rate = now > r->start ? mb / (now - r->start) : 0;
    int filled = r->bytes_total ? (int)(30.0 * (double)r->bytes_done / (double)r->bytes_total) : 30;
    char bar[31];
    for (int i = 0; i < 30; i++) bar[i] = i < filled ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] files %ld/%ld  %.1f/%.1f MB  %.1f MB/s\033[K", bar, r->files_done,
            r->files_total, mb, total, rate);
    r->drawn = 1;
}

/* A message on stderr above the progress bar. */
static void report(run_t *r, const char *path, uint64_t line, const char *what) {
    if (r->drawn) fputs("\r\033[K", stderr);
    r->drawn = 0;
    if (line)
        fprintf(stderr, "codexctl prepare: %s:%llu: %s\n", path, (unsigned long long)line, what);
    else
        fprintf(stderr, "codexctl prepare: %s: %s\n", path, what);
}

typedef struct {
    uint64_t docs[2], tokens;
    char sha[65];
    int status; /* 0 ok, 1 skipped, 2 rejected */
    int reason; /* -1 none */
} result_t;

static void refuse(run_t *r, result_t *res, int reason, int policy, const item_t *it, uint64_t line,
                   const char *why);

static int encode_doc(run_t *r, const item_t *it, uint64_t line, const uint8_t *text, size_t len,
                      result_t *res, cu_error_t *err) {
    r->n_ids = 0;
    safety_redact_result_t sr;
    int rc = CU_OK;
    if (r->eng) {
        /* the data stage of the safety policy, before anything is tokenised */
        rc = safety_redact(r->eng, SAFETY_STAGE_DATA, it->path, (const char *)text, len, &sr, err);
        if (rc) return cu_error_prefix(err, "%s", it->path);
        rc = safety_report_add(&r->rep, it->path, &sr, err);
        if (rc == CU_OK && sr.blocked) {
            char why[200];
            snprintf(why, sizeof why, "a block rule of the safety policy matched (%s)",
                     sr.block_rule >= 0 ? safety_rules()[sr.block_rule].id : "?");
            refuse(r, res, R_SAFETY_BLOCK, POLICY_SKIP, it, line, why);
            safety_redact_result_free(&sr);
            return CU_OK;
        }
        r->redactions += sr.total;
        text = (const uint8_t *)sr.text;
        len = sr.len;
    }
    if (rc == CU_OK)
        rc = tokenizer_encode_doc(r->tok, text, len, &r->ids, &r->n_ids, &r->cap_ids, err);
    if (r->eng) safety_redact_result_free(&sr);
    if (rc) return cu_error_prefix(err, "%s", it->path);
    int split = doc_split(r->o, it, line);
    if ((rc = dataset_append_doc(r->w, split, r->ids, r->n_ids, err))) return rc;
    res->docs[split]++;
    res->tokens += r->n_ids + 1;
    return CU_OK;
}

static void sha_hex(EVP_MD_CTX *ctx, char hex[65]) {
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    for (unsigned i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* Sets the outcome for reason under policy (skip or error). */
static void refuse(run_t *r, result_t *res, int reason, int policy, const item_t *it, uint64_t line,
                   const char *why) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s (%s)", why, policy == POLICY_ERROR ? "rejected" : "skipped");
    report(r, it->path, line, msg);
    res->status = policy == POLICY_ERROR ? 2 : 1;
    res->reason = reason;
    if (policy == POLICY_ERROR)
        r->rejected[reason]++;
    else
        r->skipped[reason]++;
}

static int read_all(int fd, uint8_t *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        got += (size_t)k;
    }
    return 0;
}

/* One document: the whole file. */
static int process_plain(run_t *r, const item_t *it, int fd, size_t size, result_t *res,
                         cu_error_t *err) {
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return cu_error_set(err, CU_ENOMEM, "out of memory reading %s", it->path);
    if (read_all(fd, buf, size) < 0) {
        free(buf);
        refuse(r, res, R_UNREADABLE, POLICY_SKIP, it, 0, "read error");
        return CU_OK;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, buf, size);
    sha_hex(ctx, res->sha);
    EVP_MD_CTX_free(ctx);
    int rc = CU_OK;
    if (memchr(buf, 0, size < SNIFF_BYTES ? size : SNIFF_BYTES))
        refuse(r, res, R_BINARY, r->o->on_binary, it, 0, "binary (NUL bytes in the first 8 KB)");
    else if (!utf8_valid(buf, size) && r->o->on_utf8 != POLICY_KEEP)
        refuse(r, res, R_INVALID_UTF8, r->o->on_utf8, it, 0, "invalid UTF-8");
    else {
        if (!utf8_valid(buf, size)) {
            r->kept_invalid++;
            res->reason = R_INVALID_UTF8; /* kept as bytes */
        }
        rc = encode_doc(r, it, 0, buf, size, res, err);
    }
    free(buf);
    return rc;
}

/* One line of a .jsonl file: a document from its text field. Returns 1 when
 * the file must be rejected. */
static int jsonl_line(run_t *r, const item_t *it, uint64_t line, char *s, size_t n, result_t *res,
                      cu_error_t *err, int *rc) {
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    size_t k = 0;
    while (k < n && (s[k] == ' ' || s[k] == '\t')) k++;
    if (k == n) return 0; /* blank lines separate nothing */
    if (!utf8_valid((const uint8_t *)s, n)) {
        int policy = r->o->on_utf8 == POLICY_ERROR ? POLICY_ERROR : POLICY_SKIP;
        refuse(r, res, R_INVALID_UTF8, policy, it, line, "invalid UTF-8");
        if (policy == POLICY_SKIP) res->status = 0, res->reason = R_INVALID_UTF8;
        return policy == POLICY_ERROR;
    }
    json_error_t jerr;
    json_t *doc = json_loadb(s, n, JSON_ALLOW_NUL, &jerr);
    json_t *text = json_is_object(doc) ? json_object_get(doc, r->o->field) : NULL;
    if (!json_is_string(text)) {
        char msg[400];
        if (!doc)
            snprintf(msg, sizeof msg, "not JSON: %s", jerr.text);
        else
            snprintf(msg, sizeof msg, "no string field \"%s\"", r->o->field);
        json_decref(doc);
        refuse(r, res, R_BAD_JSONL, POLICY_ERROR, it, line, msg);
        return 1;
    }
    *rc = encode_doc(r, it, line, (const uint8_t *)json_string_value(text),
                     json_string_length(text), res, err);
    json_decref(doc);
    return 0;
}

/* One document per line, read line by line. */
static int process_jsonl(run_t *r, const item_t *it, int fd, result_t *res, cu_error_t *err) {
    uint8_t sniff[SNIFF_BYTES];
    ssize_t got = pread(fd, sniff, sizeof sniff, 0);
    if (got > 0 && memchr(sniff, 0, (size_t)got)) {
        refuse(r, res, R_BINARY, r->o->on_binary, it, 0, "binary (NUL bytes in the first 8 KB)");
        return CU_OK;
    }
    FILE *f = fdopen(dup(fd), "r");
    if (!f) return cu_error_set(err, CU_EIO, "%s: %s", it->path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    char *s = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = CU_OK, reject = 0;
    for (uint64_t line = 1; rc == CU_OK && !reject && (n = getline(&s, &cap, f)) >= 0; line++) {
        EVP_DigestUpdate(ctx, s, (size_t)n);
        reject = jsonl_line(r, it, line, s, (size_t)n, res, err, &rc);
        r->bytes_done += (uint64_t)n;
        progress_draw(r, 0);
    }
    if (rc == CU_OK && !reject && ferror(f))
        refuse(r, res, R_UNREADABLE, POLICY_SKIP, it, 0, "read error");
    sha_hex(ctx, res->sha);
    EVP_MD_CTX_free(ctx);
    free(s);
    fclose(f);
    return rc;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static int process_open(run_t *r, const item_t *it, int fd, result_t *res, cu_error_t *err) {
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        refuse(r, res, R_UNREADABLE, POLICY_SKIP, it, 0, "not a regular file");
        return CU_OK;
    }
    if (st.st_size == 0) {
        refuse(r, res, R_EMPTY, POLICY_SKIP, it, 0, "empty");
        return CU_OK;
    }
    if (ends_with(it->path, ".jsonl")) return process_jsonl(r, it, fd, res, err);
    if (r->o->max_bytes && (uint64_t)st.st_size > r->o->max_bytes) {
        refuse(r, res, R_TOO_LARGE, POLICY_SKIP, it, 0, "larger than --max-file-bytes");
        return CU_OK;
    }
    int rc = process_plain(r, it, fd, (size_t)st.st_size, res, err);
    r->bytes_done += (uint64_t)st.st_size;
    return rc;
}

static int process_file(run_t *r, const item_t *it, cu_error_t *err) {
    result_t res = {.reason = -1};
    int fd = open(it->path, O_RDONLY);
    int rc = CU_OK;
    if (fd < 0) {
        char why[300];
        snprintf(why, sizeof why, "cannot open: %s", strerror(errno));
        refuse(r, &res, R_UNREADABLE, POLICY_SKIP, it, 0, why);
    } else {
        uint64_t before = r->bytes_done;
        rc = process_open(r, it, fd, &res, err);
        close(fd);
        r->bytes_done = before + it->bytes; /* the listed size, whatever was read */
    }
    r->files_done++;
    progress_draw(r, 0);
    if (rc) return rc;
    static const char *const status[3] = {"ok", "skipped", "rejected"};
    int any = res.docs[0] + res.docs[1] > 0;
    const char *split = !any ? "" : !res.docs[1] ? "train" : !res.docs[0] ? "val" : "mixed";
    dataset_file_t row = {it->path,
                          it->bytes,
                          res.sha,
                          split,
                          res.docs[0] + res.docs[1],
                          res.tokens,
                          status[res.status],
                          res.reason < 0 ? "" : REASONS[res.reason]};
    return dataset_add_file(r->w, &row, err);
}

/* ---- the command ---- */

static long count_reasons(const long *v) {
    long n = 0;
    for (int i = 0; i < N_REASONS; i++) n += v[i];
    return n;
}

static void print_reasons(const char *label, const long *v) {
    if (!count_reasons(v)) return;
    printf("%s:", label);
    const char *sep = " ";
    for (int i = 0; i < N_REASONS; i++)
        if (v[i]) {
            printf("%s%s %ld", sep, REASONS[i], v[i]);
            sep = ", ";
        }
    putchar('\n');
}

static void print_summary(const run_t *r, int wide) {
    uint64_t dt = dataset_documents(r->w, DATASET_TRAIN), dv = dataset_documents(r->w, DATASET_VAL);
    printf("documents: %llu (train %llu, val %llu) from %ld files\n", (unsigned long long)(dt + dv),
           (unsigned long long)dt, (unsigned long long)dv, r->files_total);
    printf("tokens: train %llu, val %llu (%s)\n",
           (unsigned long long)dataset_tokens(r->w, DATASET_TRAIN),
           (unsigned long long)dataset_tokens(r->w, DATASET_VAL), wide ? "uint32" : "uint16");
    if (r->eng)
        printf("safety: %zu secrets or personal data redacted, %zu files left out by block rules\n",
               r->redactions, r->rep.files_blocked);
    else
        printf("safety: off (--no-safety)\n");
    print_reasons("skipped", r->skipped);
    print_reasons("rejected", r->rejected);
    if (r->kept_invalid) printf("kept with invalid UTF-8: %ld\n", r->kept_invalid);
}

static int start_run(run_t *r, const opts_t *o, item_list_t *files, cu_error_t *err) {
    const char *path = o->tok_path;
    if (!strcmp(o->tok_kind, "gpt2") && !path) path = "third_party_data/gpt2";
    int rc = io_tokenizer_load(o->tok_kind, path, &r->tok, err);
    if (rc) return rc;
    dataset_info_t info = {.tokenizer_kind = o->tok_kind,
                           .vocab_size = tokenizer_vocab_size(r->tok),
                           .tokenizer_sha256 = tokenizer_hash(r->tok),
                           .eot_id = tokenizer_eot(r->tok),
                           .seed = o->seed,
                           .val_fraction = o->val_fraction,
                           .val_split = o->n_vals ? "explicit" : "fraction"};
    r->files_total = (long)files->n;
    for (size_t i = 0; i < files->n; i++) r->bytes_total += files->v[i].bytes;
    r->start = r->last_draw = cu_now();
    if (!o->no_safety) {
        if ((rc = safety_engine_new(o->policy, &r->eng, err)))
            return cu_error_prefix(err, "--policy");
        if ((rc = safety_report_init(&r->rep, err))) return rc;
    }
    return dataset_create(&r->w, o->out, &info, err);
}

/* Tokenises every file; returns the exit code. */
static int run_files(run_t *r, item_list_t *files) {
    cu_error_t err = {0};
    int rc = start_run(r, r->o, files, &err);
    for (size_t i = 0; rc == CU_OK && i < files->n; i++) rc = process_file(r, &files->v[i], &err);
    progress_draw(r, 1);
    if (r->drawn) fputc('\n', stderr);
    if (rc) {
        fprintf(stderr, "codexctl prepare: %s\n", err.msg);
        dataset_abort(r->w);
        return !r->tok && rc != CU_ENOMEM ? 2 : 1; /* no tokenizer: bad input */
    }
    int wide = tokenizer_vocab_size(r->tok) > 65536;
    print_summary(r, wide);
    if (count_reasons(r->rejected)) {
        dataset_abort(r->w);
        fprintf(stderr,
                "codexctl prepare: %ld file(s) rejected (see above); %s not written. Fix or "
                "remove them, or choose a skip policy (--on-binary, --on-invalid-utf8)\n",
                count_reasons(r->rejected), r->o->out);
        return 1;
    }
    if (dataset_documents(r->w, DATASET_TRAIN) + dataset_documents(r->w, DATASET_VAL) == 0) {
        dataset_abort(r->w);
        fprintf(stderr, "codexctl prepare: no documents left; %s not written\n", r->o->out);
        return 1;
    }
    if (r->eng) {
        json_t *j = safety_report_json(&r->rep, r->eng);
        json_object_set_new(j, "enabled", json_true());
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        int bad = !text || dataset_set_safety_report(r->w, text, &err) != CU_OK;
        free(text);
        if (bad) {
            fprintf(stderr, "codexctl prepare: cannot record the safety report: %s\n", err.msg);
            dataset_abort(r->w);
            return 1;
        }
    }
    if (dataset_finish(r->w, &err)) {
        fprintf(stderr, "codexctl prepare: %s\n", err.msg);
        return 1;
    }
    struct stat st;
    double mb = stat(r->o->out, &st) == 0 ? (double)st.st_size / 1e6 : 0;
    printf("wrote %s: %.2f MB in %.2f s\n", r->o->out, mb, cu_now() - r->start);
    return 0;
}

static void free_opts(opts_t *o, item_list_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].path);
    free(l->v);
    free(o->inc);
    free(o->exc);
    free(o->inputs);
    free(o->vals);
}

int ctl_prepare(int argc, char **argv) {
    opts_t o;
    item_list_t files = {0};
    int code = parse_args(&o, argc, argv);
    if (code == 0) code = collect(&o, &files);
    if (code == 0) {
        run_t r = {.o = &o};
        code = run_files(&r, &files);
        free(r.ids);
        tokenizer_free(r.tok);
        if (r.eng) safety_report_free(&r.rep);
        safety_engine_free(r.eng);
    }
    free_opts(&o, &files);
    return code < 0 ? 0 : code;
}
