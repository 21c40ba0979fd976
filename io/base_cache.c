/*
 * The bf16 cache of an fp32 or fp16 base (see base_cache.h).
 *
 * Building reads the source twice: once whole, file by file, for the
 * sha256 the job records as its base hash (the same bytes a job without
 * the cache hashes), then tensor by tensor through a read-only mapping, in
 * chunks of CHUNK values that are converted and streamed to the cache
 * (st_stream_*, which also hashes what it writes). The mapped source pages
 * are dropped after each chunk, so neither memory nor the resident set
 * grows with the base.
 */
#include "io/base_cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/hf_gpt2.h"

enum { CHUNK = 1 << 20 }; /* values converted at a time */

static const char ZEROS64[] = "0000000000000000000000000000000000000000000000000000000000000000";

const char *base_cache_action_name(base_cache_action_t a) {
    return a == BASE_CACHE_REUSED ? "reused" : a == BASE_CACHE_REBUILT ? "rebuilt" : "converted";
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The dtype a tensor has in the cache. */
static st_dtype_t cache_dtype(const st_entry_t *e) {
    if (e->dtype == ST_BF16) return ST_BF16;
    return e->ndim == 2 && hf_gpt2_is_product_weight(e->name) ? ST_BF16 : ST_F32;
}

/* GPT-2's Conv1D weights, (in, out) in the source: the cache holds their
 * transpose, (out, in), so that they can be lent in place. */
static int is_conv(const st_entry_t *e) {
    return e->ndim == 2 && hf_gpt2_is_conv1d(e->name);
}

/* Dimension d of tensor e's shape in the cache. */
static int64_t cache_dim(const st_entry_t *e, int d) {
    return is_conv(e) ? e->shape[1 - d] : e->shape[d];
}

static int has_conv(const st_model_t *src) {
    for (int i = 0; i < st_count(src); i++)
        if (is_conv(st_entry(src, i))) return 1;
    return 0;
}

int base_cache_needed(const st_model_t *src) {
    for (int i = 0; i < st_count(src); i++) {
        const st_entry_t *e = st_entry(src, i);
        if (is_conv(e) || (e->dtype != ST_BF16 && cache_dtype(e) == ST_BF16)) return 1;
    }
    return 0;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* One file's line of the identity. */
static int identity_line(char *buf, size_t cap, const char *path, cu_error_t *err) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return cu_error_set(err, CU_EIO, "cannot stat %s: %s", path, strerror(errno));
    const char *slash = strrchr(path, '/');
    size_t used = strlen(buf);
    int k = snprintf(buf + used, cap - used,
                     "%s size=%lld ino=%llu mtime=%lld.%09ld ctime=%lld.%09ld\n",
                     slash ? slash + 1 : path, (long long)sb.st_size, (unsigned long long)sb.st_ino,
                     (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec, (long long)sb.st_ctim.tv_sec,
                     sb.st_ctim.tv_nsec);
    if (k < 0 || (size_t)k >= cap - used)
        return cu_error_set(err, CU_EINVAL, "%s: too many files for the base cache", path);
    return CU_OK;
}

static int make_identity(const st_model_t *src, const char *weights_path, char *buf, size_t cap,
                         cu_error_t *err) {
    snprintf(buf, cap, "codex base cache %s\n", BASE_CACHE_VERSION);
    char idx[4200] = "";
    if (ends_with(weights_path, ".json"))
        snprintf(idx, sizeof idx, "%s", weights_path);
    else if (cu_is_dir(weights_path)) {
        snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", weights_path);
        if (access(idx, F_OK) != 0) idx[0] = 0;
    }
    int rc = idx[0] ? identity_line(buf, cap, idx, err) : CU_OK;
    for (int i = 0; rc == CU_OK && i < st_file_count(src); i++)
        rc = identity_line(buf, cap, st_file_path(src, i), err);
    return rc;
}

static void sha256_hex(const void *data, size_t n, char hex[65]) {
    unsigned char d[32];
    unsigned dl = 0;
    EVP_Digest(data, n, d, &dl, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

static int mkdir_one(const char *dir, cu_error_t *err) {
    if (mkdir(dir, 0755) == 0 || errno == EEXIST) return CU_OK;
    return cu_error_set(err, CU_EIO, "cannot create %s: %s", dir, strerror(errno));
}

/* mkdir -p */
static int make_dirs(const char *dir, cu_error_t *err) {
    char buf[4200];
    int rc = cu_format(buf, sizeof buf, err, "%s", dir);
    for (char *p = buf + 1; rc == CU_OK && *p; p++)
        if (*p == '/') {
            *p = 0;
            rc = mkdir_one(buf, err);
            *p = '/';
        }
    return rc ? rc : mkdir_one(buf, err);
}

int base_cache_locate(const st_model_t *src, const char *weights_path, const char *root,
                      base_cache_t *c, cu_error_t *err) {
    memset(c, 0, sizeof *c);
    int rc = make_identity(src, weights_path, c->identity, sizeof c->identity, err);
    if (rc) return cu_error_prefix(err, "base cache");
    char hex[65];
    sha256_hex(c->identity, strlen(c->identity), hex);
    memcpy(c->key, hex, 32);
    c->key[32] = 0;
    if ((rc = cu_format(c->path, sizeof c->path, err, "%s/%s/model.safetensors", root, c->key)) ||
        (rc = cu_format(c->lock, sizeof c->lock, err, "%s/%s.lock", root, c->key)))
        return cu_error_prefix(err, "base cache (CU_BASE_CACHE)");
    return CU_OK;
}

/* ------------------------------------------------------------ checking */

static int is_hex64(const char *s) {
    if (!s || strlen(s) != 64) return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

/* Version, identity and the two hashes' form; copies source_sha256. */
static int check_header(st_model_t *m, base_cache_t *c, char *why, size_t cap) {
    const char *v = st_metadata(m, "codex_base_cache"), *id = st_metadata(m, "source_identity");
    const char *ss = st_metadata(m, "source_sha256"), *ds = st_metadata(m, "data_sha256");
    if (!v || strcmp(v, BASE_CACHE_VERSION))
        snprintf(why, cap, "not a version %s base cache", BASE_CACHE_VERSION);
    else if (!id || strcmp(id, c->identity))
        snprintf(why, cap, "made from another source");
    else if (!is_hex64(ss) || !is_hex64(ds) || !strcmp(ds, ZEROS64))
        snprintf(why, cap, "its recorded checksums are malformed");
    else {
        memcpy(c->source_sha256, ss, 65);
        return 1;
    }
    return 0;
}

/* Every source tensor is there, of its shape and the cache's dtype. */
static int check_tensors(const st_model_t *src, const st_model_t *m, char *why, size_t cap) {
    if (st_count(m) != st_count(src)) {
        snprintf(why, cap, "it holds %d tensors, the source %d", st_count(m), st_count(src));
        return 0;
    }
    for (int i = 0; i < st_count(src); i++) {
        const st_entry_t *e = st_entry(src, i), *f = st_find(m, e->name);
        int same = f && f->ndim == e->ndim && f->dtype == cache_dtype(e);
        for (int d = 0; same && d < e->ndim; d++) same = f->shape[d] == cache_dim(e, d);
        if (!same) {
            snprintf(why, cap, "tensor '%s' is missing or differs from the source's", e->name);
            return 0;
        }
    }
    return 1;
}

/* bytes as "1.23 GB" or "4.5 MB" */
static const char *human(uint64_t bytes, char *buf, size_t cap) {
    if (bytes >= 1000000000u)
        snprintf(buf, cap, "%.2f GB", (double)bytes / 1e9);
    else
        snprintf(buf, cap, "%.1f MB", (double)bytes / 1e6);
    return buf;
}

static void progress_line(FILE *progress, const char *what, const char *path, uint64_t done,
                          uint64_t total, double t0) {
    if (!progress) return;
    char a[32], b[32];
    fprintf(progress, "base cache: %s %s: %3.0f%% (%s of %s, %.0f s)\n", what, path,
            total ? 100.0 * (double)done / (double)total : 100.0, human(done, a, sizeof a),
            human(total, b, sizeof b), now_s() - t0);
    fflush(progress);
}

/* The sha256 of the data area of the file at path (after its header). */
static int data_sha256(const char *path, char hex[65], FILE *progress, cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    uint8_t lenb[8];
    uint64_t hlen = 0, total = 0, done = 0;
    int rc =
        fread(lenb, 1, 8, f) == 8 ? CU_OK : cu_error_set(err, CU_EFORMAT, "%s: too short", path);
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | lenb[i];
    struct stat sb;
    if (rc == CU_OK && (fstat(fileno(f), &sb) != 0 || (uint64_t)sb.st_size < 8 + hlen ||
                        fseeko(f, (off_t)(8 + hlen), SEEK_SET) != 0))
        rc = cu_error_set(err, CU_EFORMAT, "%s: header length past the end", path);
    if (rc == CU_OK) total = (uint64_t)sb.st_size - 8 - hlen;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char *buf = malloc(4u << 20);
    if (rc == CU_OK && (!md || !buf || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)))
        rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    double t0 = now_s();
    int tenth = 0;
    size_t k;
    while (rc == CU_OK && (k = fread(buf, 1, 4u << 20, f)) > 0) {
        EVP_DigestUpdate(md, buf, k);
        done += k;
        if (total >= (1u << 30) && done * 10 / total > (uint64_t)tenth)
            progress_line(progress, "checking", path, done, total, t0), tenth++;
    }
    if (rc == CU_OK && ferror(f)) rc = cu_error_set(err, CU_EIO, "error reading %s", path);
    unsigned char d[32];
    unsigned dl = 0;
    if (rc == CU_OK && EVP_DigestFinal_ex(md, d, &dl))
        for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", d[i]);
    EVP_MD_CTX_free(md);
    free(buf);
    fclose(f);
    return rc;
}

/* 1 when the cache file is complete and right; else 0 and why. */
static int cache_ok(const st_model_t *src, base_cache_t *c, FILE *progress, char *why, size_t cap) {
    st_model_t *m = NULL;
    cu_error_t e = {0};
    if (st_open(c->path, &m, &e) != CU_OK) {
        snprintf(why, cap, "%.400s", e.msg);
        return 0;
    }
    int ok = check_header(m, c, why, cap) && check_tensors(src, m, why, cap);
    const char *layout = st_metadata(m, "conv1d");
    if (ok && has_conv(src) && !(layout && !strcmp(layout, "out,in"))) {
        snprintf(why, cap, "its Conv1D weights are not marked as transposed");
        ok = 0;
    }
    char want[65];
    if (ok) snprintf(want, sizeof want, "%s", st_metadata(m, "data_sha256"));
    st_close(m);
    char got[65] = "";
    if (ok && data_sha256(c->path, got, progress, &e) != CU_OK) {
        snprintf(why, cap, "%.400s", e.msg);
        ok = 0;
    }
    if (ok && strcmp(got, want)) {
        snprintf(why, cap, "its data's sha256 %.12s... is not the recorded %.12s...", got, want);
        ok = 0;
    }
    return ok;
}

int base_cache_open_prepared(base_cache_t *c, cu_error_t *err) {
    st_model_t *m = NULL;
    int rc = st_open(c->path, &m, err);
    char why[512];
    if (rc == CU_OK && !check_header(m, c, why, sizeof why))
        rc = cu_error_set(err, CU_EFORMAT, "%s: %s", c->path, why);
    st_close(m);
    return rc ? cu_error_prefix(err, "base cache") : CU_OK;
}

/* ------------------------------------------------------------ building */

static void f16_to_f32(const uint16_t *in, float *out, size_t n, st_dtype_t dt) {
    for (size_t i = 0; i < n; i++) {
        uint16_t v;
        memcpy(&v, &in[i], 2);
        out[i] = dt == ST_F16 ? st_f16_to_f32(v) : st_bf16_to_f32(v);
    }
}

/* Lets go of the mapped source pages [p, p + n): they stay in the page
 * cache but leave this process's resident set. */
static void drop_pages(const void *p, size_t n) {
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1), b = (uintptr_t)p + n;
    madvise((void *)a, (size_t)(b - a), MADV_DONTNEED);
}

static void to_f32(const char *at, float *out, size_t k, st_dtype_t dt) {
    if (dt == ST_F32)
        memcpy(out, at, k * 4);
    else
        f16_to_f32((const uint16_t *)(const void *)at, out, k, dt);
}

/* A Conv1D weight (in, out) at p, streamed into s as its transpose. */
static int convert_transposed(const st_entry_t *e, const char *p, st_stream_t *s, uint64_t *done,
                              cu_error_t *err) {
    size_t in = (size_t)e->shape[0], out = (size_t)e->shape[1], w = e->dtype == ST_F32 ? 4 : 2;
    float *a = malloc(in * out * sizeof *a), *b = malloc(in * out * sizeof *b);
    int rc = a && b ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK) {
        to_f32(p, a, in * out, e->dtype);
        for (size_t i = 0; i < in; i++)
            for (size_t o = 0; o < out; o++) b[o * in + i] = a[i * out + o];
        rc = st_stream_put(s, b, in * out, err);
        drop_pages(p, in * out * w);
        *done += in * out * w;
    }
    free(a);
    free(b);
    return rc;
}

/* Streams tensor e of src, converted to floats, into s. */
static int convert_one(st_model_t *src, const st_entry_t *e, st_stream_t *s, float *buf,
                       uint64_t *done, uint64_t total, FILE *progress, const char *path, double t0,
                       int *tenth, cu_error_t *err) {
    if (e->numel == 0) return CU_OK;
    const char *p = st_map_entry(src, e, err);
    if (!p) return err->code;
    size_t w = e->dtype == ST_F32 ? 4 : 2;
    if (is_conv(e)) return convert_transposed(e, p, s, done, err);
    for (int64_t i = 0; i < e->numel; i += CHUNK) {
        size_t k = (size_t)(e->numel - i < CHUNK ? e->numel - i : CHUNK);
        const char *at = p + (size_t)i * w;
        to_f32(at, buf, k, e->dtype);
        int rc = st_stream_put(s, buf, k, err);
        drop_pages(at, k * w);
        if (rc) return rc;
        *done += k * w;
        if (total && *done * 10 / total > (uint64_t)*tenth) {
            progress_line(progress, "converting", path, *done, total, t0);
            *tenth = (int)(*done * 10 / total);
        }
    }
    return CU_OK;
}

static int build(st_model_t *src, const char *weights_path, base_cache_t *c, FILE *progress,
                 cu_error_t *err) {
    double t0 = now_s();
    int n = st_count(src);
    uint64_t total = 0, size = 0; /* bytes: of the source's tensors, of the cache's */
    for (int i = 0; i < n; i++) total += st_entry(src, i)->end - st_entry(src, i)->begin;
    if (progress) {
        char h[32];
        fprintf(progress, "base cache: hashing %s (%s)\n", weights_path, human(total, h, sizeof h));
        fflush(progress);
    }
    int rc = hf_gpt2_weights_sha256(src, weights_path, c->source_sha256, err);
    st_tensor_t *t = calloc((size_t)n + 1, sizeof *t);
    st_dtype_t *dt = calloc((size_t)n + 1, sizeof *dt);
    float *buf = malloc(CHUNK * sizeof *buf);
    if (rc == CU_OK && (!t || !dt || !buf)) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const st_entry_t *e = st_entry(src, i);
        t[i].name = e->name;
        t[i].ndim = e->ndim;
        memcpy(t[i].shape, e->shape, sizeof t[i].shape);
        for (int d = 0; d < e->ndim && d < 2; d++) t[i].shape[d] = cache_dim(e, d);
        dt[i] = cache_dtype(e);
        size += (uint64_t)e->numel * (dt[i] == ST_BF16 ? 2u : 4u);
    }
    const char *meta[] = {"format",           "pt",          "codex_base_cache",
                          BASE_CACHE_VERSION, "source",      weights_path,
                          "source_identity",  c->identity,   "source_sha256",
                          c->source_sha256,   "data_sha256", ZEROS64,
                          "conv1d",           "out,in"};
    st_stream_t *s = NULL;
    if (rc == CU_OK) rc = st_stream_begin_typed(c->path, t, dt, n, meta, 7, &s, err);
    if (rc == CU_OK && (rc = st_stream_checksum(s, "data_sha256", err))) st_stream_abort(s);
    uint64_t done = 0;
    int tenth = 0;
    for (int i = 0; rc == CU_OK && i < n; i++)
        if ((rc = convert_one(src, st_entry(src, i), s, buf, &done, total, progress, weights_path,
                              t0, &tenth, err)))
            st_stream_abort(s);
    if (rc == CU_OK) rc = st_stream_end(s, err);
    free(t);
    free(dt);
    free(buf);
    /* the identity must still be the one the key was made from */
    char now[sizeof c->identity];
    if (rc == CU_OK && (rc = make_identity(src, weights_path, now, sizeof now, err)) == CU_OK &&
        strcmp(now, c->identity)) {
        unlink(c->path);
        rc = cu_error_set(err, CU_EIO,
                          "%s changed while it was being converted; run the job again once it "
                          "is complete",
                          weights_path);
    }
    struct stat sb;
    if (rc == CU_OK && stat(c->path, &sb) == 0) c->bytes = (uint64_t)sb.st_size;
    if (rc == CU_OK && progress) {
        char h[32];
        fprintf(progress, "base cache: converted %s to %s (%s) in %.0f s\n", weights_path, c->path,
                human(c->bytes, h, sizeof h), now_s() - t0);
        fflush(progress);
    }
    if (rc == CU_EIO && (strstr(err->msg, strerror(ENOSPC)) || strstr(err->msg, strerror(EDQUOT)) ||
                         strstr(err->msg, strerror(EFBIG)))) {
        char root[4200];
        snprintf(root, sizeof root, "%s", c->path);
        char *slash = strrchr(root, '/');
        if (slash) *slash = 0;
        cu_error_prefix(err,
                        "base cache: converting to bf16 needs %.2f GB free in %s (set "
                        "CU_BASE_CACHE to a directory with room, or CU_BASE_CACHE=off to convert "
                        "in each rank's memory)",
                        (double)size / 1e9, root);
    } else if (rc) {
        cu_error_prefix(err, "base cache: converting %s", weights_path);
    }
    return rc;
}

/* Temporary files under the lock are what a killed converter left. */
static void remove_stale(const char *path) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) return;
    *slash = 0;
    const char *base = slash + 1;
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    size_t bl = strlen(base);
    while ((de = readdir(d)))
        if (!strncmp(de->d_name, base, bl) && !strncmp(de->d_name + bl, ".tmp.", 5)) {
            char p[4500];
            snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
            unlink(p);
        }
    closedir(d);
}

/* CU_TEST_BASE_CACHE_HOLD: lets a test hold the lock as long as it wants. */
static void test_hold(void) {
    const char *f = getenv("CU_TEST_BASE_CACHE_HOLD");
    if (!f || !*f) return;
    char held[4200];
    snprintf(held, sizeof held, "%s.held", f);
    FILE *h = fopen(held, "w");
    if (h) fclose(h);
    for (int i = 0; i < 600 * 100 && access(f, F_OK) != 0; i++) usleep(10000);
}

static int take_lock(const base_cache_t *c, FILE *progress, int *fd, cu_error_t *err) {
    *fd = open(c->lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return cu_error_set(err, CU_EIO, "cannot open %s: %s", c->lock, strerror(errno));
    int rc = flock(*fd, LOCK_EX | LOCK_NB);
    if (rc != 0 && errno == EWOULDBLOCK) {
        if (progress) {
            fprintf(progress, "base cache: waiting for %s (another process is preparing it)\n",
                    c->lock);
            fflush(progress);
        }
        while ((rc = flock(*fd, LOCK_EX)) != 0 && errno == EINTR) {
        }
    }
    if (rc != 0) {
        rc = cu_error_set(err, CU_EIO,
                          "cannot lock %s: %s (the file system must support flock; set "
                          "CU_BASE_CACHE to a directory on one that does)",
                          c->lock, strerror(errno));
        close(*fd);
        *fd = -1;
    }
    return rc;
}

int base_cache_prepare(st_model_t *src, const char *weights_path, base_cache_t *c, FILE *progress,
                       cu_error_t *err) {
    double t0 = now_s();
    char dir[4200];
    snprintf(dir, sizeof dir, "%s", c->path);
    *strrchr(dir, '/') = 0;
    int fd = -1, rc = make_dirs(dir, err);
    if (rc == CU_OK) rc = take_lock(c, progress, &fd, err);
    if (rc) return cu_error_prefix(err, "base cache");
    test_hold();
    remove_stale(c->path);
    c->action = BASE_CACHE_CONVERTED;
    if (access(c->path, F_OK) == 0) {
        if (cache_ok(src, c, progress, c->why, sizeof c->why)) {
            c->action = BASE_CACHE_REUSED;
            struct stat sb;
            if (stat(c->path, &sb) == 0) c->bytes = (uint64_t)sb.st_size;
            if (progress) {
                fprintf(progress, "base cache: using %s (bf16 of %s)\n", c->path, weights_path);
                fflush(progress);
            }
        } else {
            fprintf(progress ? progress : stderr,
                    "base cache: %s is not usable (%s): rebuilding it\n", c->path, c->why);
            if (progress) fflush(progress);
            c->action = BASE_CACHE_REBUILT;
            unlink(c->path);
        }
    }
    if (c->action != BASE_CACHE_REUSED) rc = build(src, weights_path, c, progress, err);
    close(fd); /* releases the lock */
    c->seconds = now_s() - t0;
    return rc;
}
