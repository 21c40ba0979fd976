/*
 * The matrix-product backend (see gemm.h): OpenBLAS for fp32, oneDNN matmul
 * primitives for bf16 with fp32 accumulation, an sgemm emulation of the bf16
 * products where oneDNN has no bf16 kernel.
 *
 * oneDNN matmul computes dst (M, N) = src (M, K) @ wei (K, N), each described
 * by dims and strides, so both orientations of a row-major (out, in) weight
 * are the same buffer seen through different strides: x W^T reads W with
 * strides (1, K), x W with strides (N, 1). Accumulating into the output
 * (beta != 0) is a "sum" post-op scaled by beta. A primitive is specific to
 * its shape: the cache keeps one per (M, K, N, orientation, beta) and
 * replaces the oldest when full. Memory objects are kept with their
 * primitive and pointed at the call's buffers with set_data_handle.
 */
#include "model/gemm.h"

#include <cblas.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* GPT-2's step uses about 35 shapes, Llama's about 60 (base products both
 * ways, the LM head, six small products per adapted linear). */
#define GEMM_CACHE 128

typedef struct {
    int M, K, N, trans; /* trans: x W^T */
    float beta;
    int pack; /* the weights in oneDNN's own layout (see gemm_packed_t) */
    int bias; /* adds a bias row (1, N) inside the kernel */
    /* gemm_small's products: the source transposed (read as (K, M)), the
     * product scaled by alpha, created and run on one thread */
    int small, ta;
    float alpha;
    dnnl_primitive_t prim; /* NULL: no oneDNN kernel, emulate */
    dnnl_memory_t src, wei, dst, bia;
    dnnl_memory_t scratch; /* NULL when the primitive needs none */
    size_t scratch_bytes;
    dnnl_memory_desc_t plain; /* the weights as the caller holds them */
    dnnl_memory_desc_t want;  /* the weights as the primitive reads them */
    int reorders;             /* want differs from plain: needs a packed copy */
} gemm_entry_t;

/* A batched product's primitive (gemm_batched), keyed by its whole
 * descriptor. */
typedef struct {
    gemm_batch_t key;
    dnnl_primitive_t prim; /* NULL: no oneDNN kernel, emulate */
    dnnl_memory_t src, wei, dst, scratch;
    size_t scratch_bytes;
} gemm_bentry_t;

/* Batched products of one step: attention's per-block products, about 7
 * shapes per query block of the sequence. */
#define GEMM_BCACHE 64

typedef struct {
    const float *f32;
    const uint16_t *bf16;
    size_t n;
    int pack;
} gemm_range_t;

/* A private copy of one weight matrix in the layout a primitive asked for
 * (oneDNN's blocked, pair-interleaved bf16), made by a reorder on first use
 * and kept until the weights change: the kernel then reads the weights
 * straight instead of re-blocking them on every call. One per (weight,
 * orientation). */
typedef struct {
    const uint16_t *w16;
    int trans, K, N;
    dnnl_memory_desc_t md;
    dnnl_memory_t mem; /* owns the buffer */
    int stale;
} gemm_packed_t;

struct gemm {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    gemm_entry_t cache[GEMM_CACHE];
    int n_cached, next_evict;
    gemm_bentry_t bcache[GEMM_BCACHE];
    int n_bcached, next_bevict;
    void *work; /* gemm_workspace's buffer */
    size_t work_cap;
    gemm_range_t *ranges; /* grown as weights register */
    int n_ranges, cap_ranges;
    gemm_packed_t *packed; /* grown as packable weights are first used */
    int n_packed, cap_packed;
    uint16_t *xbf; /* the activation rounded to bf16 */
    size_t xbf_cap;
    const float *xbf_of; /* whose rounding xbf holds (M x K floats), NULL: none */
    size_t xbf_n;
    int xbf_lent;      /* xbf was lent (gemm_lend_activation) and not yet used */
    uint16_t *sa, *sb; /* gemm_small's operands rounded to bf16 */
    size_t sa_cap, sb_cap;
    float *emu; /* emulation: a widened operand */
    size_t emu_cap;
    void *scratch; /* the primitives' scratchpad, one for all, sized to the largest */
    size_t scratch_cap;
    char kernel[128];
    int emulated;
    int status;
    char status_msg[256];
};

/* ------------------------------------------------------------ conversion */

void gemm_to_bf16(uint16_t *dst, const float *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = gemm_bf16_of(src[i]);
}

void gemm_from_bf16(float *dst, const uint16_t *src, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t u = (uint32_t)src[i] << 16;
        memcpy(&dst[i], &u, sizeof u);
    }
}

/* ------------------------------------------------------------- lifecycle */

int gemm_create(gemm_t **out, cu_error_t *err) {
    *out = NULL;
    gemm_t *g = calloc(1, sizeof *g);
    if (!g) return cu_error_set(err, CU_ENOMEM, "out of memory (matrix-product backend)");
    if (dnnl_engine_create(&g->engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create(&g->stream, g->engine, dnnl_stream_default_flags) != dnnl_success) {
        gemm_free(g);
        return cu_error_set(err, CU_EINTERNAL, "oneDNN: could not create a CPU engine");
    }
    snprintf(g->kernel, sizeof g->kernel, "none yet");
    *out = g;
    return CU_OK;
}

static void entry_release(gemm_entry_t *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->wei) dnnl_memory_destroy(e->wei);
    if (e->dst) dnnl_memory_destroy(e->dst);
    if (e->bia) dnnl_memory_destroy(e->bia);
    if (e->scratch) dnnl_memory_destroy(e->scratch);
    memset(e, 0, sizeof *e);
}

static void bentry_release(gemm_bentry_t *e) {
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->src) dnnl_memory_destroy(e->src);
    if (e->wei) dnnl_memory_destroy(e->wei);
    if (e->dst) dnnl_memory_destroy(e->dst);
    if (e->scratch) dnnl_memory_destroy(e->scratch);
    memset(e, 0, sizeof *e);
}

static void packed_release_all(gemm_t *g) {
    for (int i = 0; i < g->n_packed; i++) dnnl_memory_destroy(g->packed[i].mem);
    g->n_packed = 0;
}

void gemm_free(gemm_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_cached; i++) entry_release(&g->cache[i]);
    for (int i = 0; i < g->n_bcached; i++) bentry_release(&g->bcache[i]);
    packed_release_all(g);
    free(g->packed);
    if (g->stream) dnnl_stream_destroy(g->stream);
    if (g->engine) dnnl_engine_destroy(g->engine);
    free(g->xbf);
    free(g->sa);
    free(g->sb);
    free(g->emu);
    free(g->scratch);
    free(g->work);
    free(g->ranges);
    free(g);
}

int gemm_add_bf16(gemm_t *g, const float *f32, const uint16_t *bf16, size_t n, cu_error_t *err) {
    return gemm_add_bf16_packed(g, f32, bf16, n, 0, err);
}

int gemm_add_bf16_packed(gemm_t *g, const float *f32, const uint16_t *bf16, size_t n, int pack,
                         cu_error_t *err) {
    if (g->n_ranges == g->cap_ranges) {
        int cap = g->cap_ranges ? 2 * g->cap_ranges : 16;
        gemm_range_t *r = realloc(g->ranges, (size_t)cap * sizeof *r);
        if (!r) return cu_error_set(err, CU_ENOMEM, "out of memory (bf16 weight ranges)");
        g->ranges = r;
        g->cap_ranges = cap;
    }
    g->ranges[g->n_ranges++] = (gemm_range_t){f32, bf16, n, pack};
    return CU_OK;
}

void gemm_clear_bf16(gemm_t *g) {
    g->n_ranges = 0;
    packed_release_all(g);
}

void gemm_bf16_changed(gemm_t *g) {
    if (!g) return;
    for (int i = 0; i < g->n_packed; i++) g->packed[i].stale = 1;
}

size_t gemm_packed_bytes(const gemm_t *g) {
    size_t n = 0;
    for (int i = 0; g && i < g->n_packed; i++) n += dnnl_memory_desc_get_size(&g->packed[i].md);
    return n;
}

static const uint16_t *bf16_of(const gemm_t *g, const float *w, int *pack) {
    for (int i = g->n_ranges - 1; i >= 0; i--) { /* the latest wins */
        const gemm_range_t *r = &g->ranges[i];
        if (w >= r->f32 && w < r->f32 + r->n) {
            *pack = r->pack;
            return r->bf16 + (w - r->f32);
        }
    }
    return NULL;
}

int gemm_has_bf16(const gemm_t *g, const float *w) {
    int pack;
    return g && bf16_of(g, w, &pack);
}

const char *gemm_kernel_name(const gemm_t *g) {
    return g ? g->kernel : "OpenBLAS sgemm (fp32)";
}

int gemm_emulated(const gemm_t *g) {
    return g && g->emulated;
}

int gemm_status(const gemm_t *g, cu_error_t *err) {
    if (!g || g->status == CU_OK) return CU_OK;
    return cu_error_set(err, g->status, "%s", g->status_msg);
}

static void set_status(gemm_t *g, int code, const char *msg) {
    if (g->status == CU_OK) {
        g->status = code;
        snprintf(g->status_msg, sizeof g->status_msg, "%s", msg);
    }
}

static void fail(gemm_t *g, int code, const char *msg, float *out, int M, int N) {
    set_status(g, code, msg);
    memset(out, 0, sizeof(float) * (size_t)M * N);
}

/* Grows *buf to hold n elements of size sz. */
static int reserve(void **buf, size_t *cap, size_t n, size_t sz) {
    if (n <= *cap) return 1;
    void *p = realloc(*buf, n * sz);
    if (!p) return 0;
    *buf = p;
    *cap = n;
    return 1;
}

/* ------------------------------------------------------------ primitives */

uint16_t *gemm_lend_activation(gemm_t *g, const float *x, size_t n) {
    if (!g) return NULL;
    g->xbf_of = NULL;
    g->xbf_lent = 0;
    if (!reserve((void **)&g->xbf, &g->xbf_cap, n, sizeof(uint16_t))) return NULL;
    g->xbf_of = x;
    g->xbf_n = n;
    g->xbf_lent = 1;
    return g->xbf;
}

static const char *isa_name(dnnl_cpu_isa_t isa) {
    switch (isa) {
    case dnnl_cpu_isa_sse41:
        return "sse41";
    case dnnl_cpu_isa_avx:
        return "avx";
    case dnnl_cpu_isa_avx2:
        return "avx2";
    case dnnl_cpu_isa_avx2_vnni:
        return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core:
        return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni:
        return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16:
        return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx:
        return "avx512_core_amx";
    default:
        return "other";
    }
}

void gemm_describe(char *buf, size_t cap) {
    const dnnl_version_t *v = dnnl_version();
    snprintf(buf, cap, "oneDNN %d.%d.%d, CPU ISA %s", v->major, v->minor, v->patch,
             isa_name(dnnl_get_effective_cpu_isa()));
}

/* The attributes of every primitive here: the scratchpad is ours (oneDNN's
 * own is allocated and freed around every call: page faults each product),
 * alpha an output scale, beta a sum post-op (*po, to destroy after the
 * primitive descriptor is made). */
static dnnl_primitive_attr_t attr_make(float alpha, float beta, dnnl_post_ops_t *po) {
    dnnl_primitive_attr_t attr = NULL;
    *po = NULL;
    dnnl_primitive_attr_create(&attr);
    dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (alpha != 1.0f) dnnl_primitive_attr_set_output_scales(attr, 1, 0, &alpha);
    if (beta != 0.0f) {
        dnnl_post_ops_create(po);
        dnnl_post_ops_append_sum(*po, beta);
        dnnl_primitive_attr_set_post_ops(attr, *po);
    }
    return attr;
}

/* pd's primitive and, when it needs a scratchpad, the memory object to
 * point at ours; 0 (and *prim NULL) when oneDNN cannot make it. */
static int prim_make(gemm_t *g, const_dnnl_primitive_desc_t pd, dnnl_primitive_t *prim,
                     dnnl_memory_t *scratch, size_t *scratch_bytes) {
    if (dnnl_primitive_create(prim, pd) != dnnl_success) {
        *prim = NULL;
        return 0;
    }
    const dnnl_memory_desc_t *sp = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    *scratch_bytes = sp ? dnnl_memory_desc_get_size(sp) : 0;
    if (*scratch_bytes) dnnl_memory_create(scratch, sp, g->engine, DNNL_MEMORY_NONE);
    return 1;
}

/* Creates the primitive of one cache entry; leaves e->prim NULL when oneDNN
 * has no bf16 implementation here (the caller emulates). */
static void entry_create(gemm_t *g, gemm_entry_t *e) {
    dnnl_dims_t sd = {e->M, e->K}, ss = {e->K, 1}, st = {1, e->M};
    dnnl_dims_t wd = {e->K, e->N}, ws = {1, e->K}, wn = {e->N, 1};
    dnnl_dims_t dd = {e->M, e->N}, ds = {e->N, 1};
    dnnl_dims_t bd = {1, e->N};
    dnnl_memory_desc_t smd, wmd, dmd, bmd;
    dnnl_memory_desc_init_by_strides(&smd, 2, sd, dnnl_bf16, e->ta ? st : ss);
    dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dnnl_f32, ds);
    dnnl_memory_desc_init_by_strides(&wmd, 2, wd, dnnl_bf16, e->trans ? ws : wn);
    dnnl_memory_desc_init_by_strides(&dmd, 2, dd, dnnl_f32, ds);
    e->plain = wmd;
    /* packable weights: let the primitive choose their layout */
    dnnl_memory_desc_t wreq = wmd;
    if (e->pack) dnnl_memory_desc_init_by_tag(&wreq, 2, wd, dnnl_bf16, dnnl_format_tag_any);
    dnnl_matmul_desc_t desc;
    dnnl_post_ops_t po;
    dnnl_primitive_desc_t pd = NULL;
    if (dnnl_matmul_desc_init(&desc, &smd, &wreq, e->bias ? &bmd : NULL, &dmd) != dnnl_success)
        return;
    dnnl_primitive_attr_t attr = attr_make(e->alpha, e->beta, &po);
    if (dnnl_primitive_desc_create(&pd, &desc, attr, g->engine, NULL) == dnnl_success) {
        const char *impl = NULL;
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl);
        const dnnl_memory_desc_t *want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
        if (want && prim_make(g, pd, &e->prim, &e->scratch, &e->scratch_bytes)) {
            if (!e->small) snprintf(g->kernel, sizeof g->kernel, "oneDNN %s", impl ? impl : "?");
            e->want = *want;
            e->reorders = !dnnl_memory_desc_equal(&e->want, &e->plain);
            dnnl_memory_create(&e->src, &smd, g->engine, DNNL_MEMORY_NONE);
            dnnl_memory_create(&e->wei, e->reorders ? &e->want : &wmd, g->engine, DNNL_MEMORY_NONE);
            dnnl_memory_create(&e->dst, &dmd, g->engine, DNNL_MEMORY_NONE);
            if (e->bias) dnnl_memory_create(&e->bia, &bmd, g->engine, DNNL_MEMORY_NONE);
        }
        dnnl_primitive_desc_destroy(pd);
    }
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
    if (!e->prim && !e->small) {
        snprintf(g->kernel, sizeof g->kernel,
                 "emulated bf16 (oneDNN has no bf16 matmul at ISA %s; needs avx512_core): "
                 "OpenBLAS sgemm on bf16 operands",
                 isa_name(dnnl_get_effective_cpu_isa()));
    }
}

/* The cache entry of a product (made now if new); small: gemm_small's. */
static gemm_entry_t *entry_find(gemm_t *g, gemm_entry_t key) {
    for (int i = 0; i < g->n_cached; i++) {
        gemm_entry_t *e = &g->cache[i];
        if (e->M == key.M && e->K == key.K && e->N == key.N && e->trans == key.trans &&
            e->beta == key.beta && e->pack == key.pack && e->bias == key.bias &&
            e->small == key.small && e->ta == key.ta && e->alpha == key.alpha)
            return e;
    }
    gemm_entry_t *e;
    if (g->n_cached < GEMM_CACHE) {
        e = &g->cache[g->n_cached++];
    } else {
        e = &g->cache[g->next_evict];
        g->next_evict = (g->next_evict + 1) % GEMM_CACHE;
        entry_release(e);
    }
    *e = key;
    entry_create(g, e);
    return e;
}

static gemm_entry_t *entry_get(gemm_t *g, int M, int K, int N, int trans, float beta, int pack,
                               int bias) {
    gemm_entry_t key = {.M = M, .K = K, .N = N, .trans = trans, .beta = beta, .alpha = 1.0f};
    key.pack = pack;
    key.bias = bias;
    return entry_find(g, key);
}

/* ---------------------------------------------------------------- products */

/* The bf16 product by emulation: the bf16 weight widened to fp32 (exact),
 * the activation already rounded to bf16 and widened back, sgemm with fp32
 * accumulation. */
static void emulate(gemm_t *g, float *out, const uint16_t *x16, const uint16_t *w16, int M, int K,
                    int N, int trans, float beta) {
    size_t nx = (size_t)M * K, nw = (size_t)K * N;
    if (!reserve((void **)&g->emu, &g->emu_cap, nx + nw, sizeof(float))) {
        fail(g, CU_ENOMEM, "out of memory in the bf16 emulation", out, M, N);
        return;
    }
    float *x = g->emu, *w = g->emu + nx;
    gemm_from_bf16(x, x16, nx);
    gemm_from_bf16(w, w16, nw);
    if (trans)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, beta, out,
                    N);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, x, K, w, N, beta, out,
                    N);
}

/* The packed copy of w16 in the layout e wants, made or refreshed now;
 * NULL when out of memory or the reorder fails (the caller then runs the
 * unpacked primitive). */
static void *packed_get(gemm_t *g, const gemm_entry_t *e, const uint16_t *w16) {
    gemm_packed_t *p = NULL;
    for (int i = 0; i < g->n_packed && !p; i++) {
        gemm_packed_t *q = &g->packed[i];
        if (q->w16 == w16 && q->trans == e->trans && q->K == e->K && q->N == e->N) p = q;
    }
    if (p && !dnnl_memory_desc_equal(&p->md, &e->want)) { /* another layout: replace */
        dnnl_memory_destroy(p->mem);
        *p = g->packed[--g->n_packed];
        p = NULL;
    }
    if (!p) {
        if (g->n_packed == g->cap_packed) {
            int cap = g->cap_packed ? 2 * g->cap_packed : 32;
            gemm_packed_t *np = realloc(g->packed, (size_t)cap * sizeof *np);
            if (!np) return NULL;
            g->packed = np;
            g->cap_packed = cap;
        }
        gemm_packed_t q = {.w16 = w16, .trans = e->trans, .K = e->K, .N = e->N, .md = e->want};
        if (dnnl_memory_create(&q.mem, &q.md, g->engine, DNNL_MEMORY_ALLOCATE) != dnnl_success)
            return NULL;
        q.stale = 1;
        p = &g->packed[g->n_packed++];
        *p = q;
    }
    void *buf = NULL;
    dnnl_memory_get_data_handle(p->mem, &buf);
    if (!p->stale) return buf;
    dnnl_memory_t from = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t r = NULL;
    int ok = dnnl_memory_create(&from, &e->plain, g->engine, (void *)w16) == dnnl_success &&
             dnnl_reorder_primitive_desc_create(&rpd, &e->plain, g->engine, &p->md, g->engine,
                                                NULL) == dnnl_success &&
             dnnl_primitive_create(&r, rpd) == dnnl_success;
    if (ok) {
        dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, p->mem}};
        ok = dnnl_primitive_execute(r, g->stream, 2, args) == dnnl_success &&
             dnnl_stream_wait(g->stream) == dnnl_success;
    }
    if (r) dnnl_primitive_destroy(r);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (from) dnnl_memory_destroy(from);
    if (!ok) return NULL;
    p->stale = 0;
    return buf;
}

/* The primitives' scratchpad (one for all, grown to the largest); NULL
 * when out of memory. */
static void *scratch_for(gemm_t *g, size_t need) {
    if (need > g->scratch_cap) {
        free(g->scratch);
        g->scratch_cap = 0;
        size_t bytes = (need + 4095) & ~(size_t)4095;
        if (!(g->scratch = aligned_alloc(4096, bytes))) return NULL;
        g->scratch_cap = bytes;
    }
    return g->scratch;
}

/* Runs e's primitive: out = e's product of src (bf16) and wei (+ bias when
 * e has one). */
static void entry_run(gemm_t *g, gemm_entry_t *e, const void *src, const void *wei,
                      const float *bias, float *out) {
    int M = e->M, N = e->N;
    dnnl_memory_set_data_handle(e->src, (void *)src);
    dnnl_memory_set_data_handle(e->wei, (void *)wei);
    dnnl_memory_set_data_handle(e->dst, out);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    int nargs = 3;
    if (e->scratch) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch};
    if (e->bias) {
        dnnl_memory_set_data_handle(e->bia, (void *)bias);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bia};
    }
    if (e->scratch) {
        void *sp = scratch_for(g, e->scratch_bytes);
        if (!sp) {
            fail(g, CU_ENOMEM, "out of memory (oneDNN scratchpad)", out, M, N);
            return;
        }
        dnnl_memory_set_data_handle(e->scratch, sp);
    }
    if (dnnl_primitive_execute(e->prim, g->stream, nargs, args) != dnnl_success ||
        dnnl_stream_wait(g->stream) != dnnl_success)
        fail(g, CU_EINTERNAL, "oneDNN: a bf16 matmul failed to run", out, M, N);
}

/* out = beta * out + bias, row by row, before a product that accumulates
 * onto out (beta 1 then): the fp32 path's order, and the emulation's. */
static void fold_bias(float *out, const float *bias, int M, int N, float beta) {
    for (int n = 0; n < M; n++) {
        float *o = out + (long)n * N;
        if (beta == 0.0f) {
            memcpy(o, bias, sizeof(float) * N);
        } else {
            for (int i = 0; i < N; i++) o[i] = beta * o[i] + bias[i];
        }
    }
}

static void product_emulated(gemm_t *g, float *out, const uint16_t *w16, const float *bias, int M,
                             int K, int N, int trans, float beta) {
    if (bias) fold_bias(out, bias, M, N, beta), beta = 1.0f;
    emulate(g, out, g->xbf, w16, M, K, N, trans, beta);
}

static void product_bf16(gemm_t *g, float *out, const float *x, const uint16_t *w16, int pack,
                         const float *bias, int M, int K, int N, int trans, float beta) {
    size_t nx = (size_t)M * K;
    int lent = g->xbf_lent && g->xbf_of == x && g->xbf_n == nx;
    g->xbf_lent = 0;
    if (!lent) { /* round x here */
        g->xbf_of = NULL;
        if (!reserve((void **)&g->xbf, &g->xbf_cap, nx, sizeof(uint16_t))) {
            fail(g, CU_ENOMEM, "out of memory rounding an activation to bf16", out, M, N);
            return;
        }
        gemm_to_bf16(g->xbf, x, nx);
        g->xbf_of = x;
        g->xbf_n = nx;
    }
    gemm_entry_t *e = entry_get(g, M, K, N, trans, beta, pack, bias != NULL);
    g->emulated = e->prim == NULL;
    if (!e->prim) {
        product_emulated(g, out, w16, bias, M, K, N, trans, beta);
        return;
    }
    const void *wbuf = w16;
    if (e->reorders && !(wbuf = packed_get(g, e, w16))) {
        /* no memory for a packed copy: this shape reads the weights as they are */
        e = entry_get(g, M, K, N, trans, beta, 0, bias != NULL);
        if (!e->prim) {
            product_emulated(g, out, w16, bias, M, K, N, trans, beta);
            return;
        }
        wbuf = w16;
    }
    entry_run(g, e, g->xbf, wbuf, bias, out);
}

void gemm_xwt_bias(gemm_t *g, float *out, const float *x, const float *w, const float *bias, int M,
                   int K, int N, float beta) {
    int pack = 0;
    const uint16_t *w16 = g ? bf16_of(g, w, &pack) : NULL;
    if (!w16) {
        if (g) g->xbf_of = NULL, g->xbf_lent = 0;
        if (bias) fold_bias(out, bias, M, N, beta), beta = 1.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, beta, out,
                    N);
        return;
    }
    product_bf16(g, out, x, w16, pack, bias, M, K, N, 1, beta);
}

void gemm_xwt(gemm_t *g, float *out, const float *x, const float *w, int M, int K, int N,
              float beta) {
    gemm_xwt_bias(g, out, x, w, NULL, M, K, N, beta);
}

void gemm_xw(gemm_t *g, float *out, const float *x, const float *w, int M, int K, int N,
             float beta) {
    int pack = 0;
    const uint16_t *w16 = g ? bf16_of(g, w, &pack) : NULL;
    if (!w16) {
        if (g) g->xbf_of = NULL, g->xbf_lent = 0;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, x, K, w, N, beta, out,
                    N);
        return;
    }
    product_bf16(g, out, x, w16, pack, NULL, M, K, N, 0, beta);
}

/* ---------------------------------------------------------- small products */

/* gemm_small's product on OpenBLAS, the operands as they are. */
static void small_sgemm(float *out, const float *a, int ta, const float *b, int tb, int M, int N,
                        int K, float alpha, float beta) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, alpha, a, ta ? M : K, b, tb ? K : N, beta, out, N);
}

/* The small product by emulation: the bf16 operands widened to fp32
 * (exact), sgemm with fp32 accumulation. */
static void small_emulate(gemm_t *g, float *out, const uint16_t *a16, int ta, const uint16_t *b16,
                          int tb, int M, int N, int K, float alpha, float beta) {
    size_t na = (size_t)M * K, nb = (size_t)K * N;
    if (!reserve((void **)&g->emu, &g->emu_cap, na + nb, sizeof(float))) {
        fail(g, CU_ENOMEM, "out of memory in the bf16 emulation", out, M, N);
        return;
    }
    float *a = g->emu, *b = g->emu + na;
    gemm_from_bf16(a, a16, na);
    gemm_from_bf16(b, b16, nb);
    small_sgemm(out, a, ta, b, tb, M, N, K, alpha, beta);
}

void gemm_small(gemm_t *g, float *out, const float *a, int ta, int a_last, const float *b, int tb,
                int M, int N, int K, float alpha, float beta) {
    if (!g) { /* fp32 */
        small_sgemm(out, a, ta, b, tb, M, N, K, alpha, beta);
        return;
    }
    size_t na = (size_t)M * K, nb = (size_t)K * N;
    const uint16_t *a16 = g->xbf;
    g->xbf_lent = 0; /* a lent activation is for the next product only */
    if (!(a_last && a == g->xbf_of && na == g->xbf_n)) {
        if (!reserve((void **)&g->sa, &g->sa_cap, na, sizeof(uint16_t))) {
            fail(g, CU_ENOMEM, "out of memory rounding an operand to bf16", out, M, N);
            return;
        }
        gemm_to_bf16(g->sa, a, na);
        a16 = g->sa;
    }
    if (!reserve((void **)&g->sb, &g->sb_cap, nb, sizeof(uint16_t))) {
        fail(g, CU_ENOMEM, "out of memory rounding an operand to bf16", out, M, N);
        return;
    }
    gemm_to_bf16(g->sb, b, nb);
    /* one thread, so the blocking (and the order of the sums) never depends
     * on the thread count */
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    gemm_entry_t key = {
        .M = M, .K = K, .N = N, .trans = tb, .beta = beta, .small = 1, .ta = ta, .alpha = alpha};
    gemm_entry_t *e = entry_find(g, key);
    if (e->prim)
        entry_run(g, e, a16, g->sb, NULL, out);
    else
        small_emulate(g, out, a16, ta, g->sb, tb, M, N, K, alpha, beta);
    omp_set_num_threads(threads);
}

/* ------------------------------------------------------- batched products */

void *gemm_workspace(gemm_t *g, size_t bytes) {
    if (bytes > g->work_cap) {
        free(g->work);
        g->work_cap = 0;
        size_t cap = (bytes + 4095) & ~(size_t)4095;
        if (!(g->work = aligned_alloc(4096, cap))) {
            set_status(g, CU_ENOMEM, "out of memory (bf16 attention's workspace)");
            return NULL;
        }
        g->work_cap = cap;
    }
    return g->work;
}

/* A 5-d descriptor of one operand: batch dims, rows, columns. A dimension
 * of size 1 gets a harmless non-zero stride (it is never stepped along). */
static void batch_md(dnnl_memory_desc_t *md, const int dims[5], const long strides[5],
                     dnnl_data_type_t dt) {
    dnnl_dims_t d, s;
    for (int i = 0; i < 5; i++) {
        d[i] = dims[i];
        s[i] = dims[i] == 1 && strides[i] == 0 ? 1 : strides[i];
    }
    dnnl_memory_desc_init_by_strides(md, 5, d, dt, s);
}

static void bentry_create(gemm_t *g, gemm_bentry_t *e) {
    const gemm_batch_t *d = &e->key;
    int ad[5] = {d->batch[0], d->batch[1], d->batch[2], d->M, d->K};
    int wd[5] = {d->batch[0], d->batch[1], d->batch[2], d->K, d->N};
    int od[5] = {d->batch[0], d->batch[1], d->batch[2], d->M, d->N};
    for (int i = 0; i < 3; i++)
        if (d->w[i] == 0) wd[i] = 1; /* broadcast */
    dnnl_memory_desc_t amd, wmd, omd;
    batch_md(&amd, ad, d->a, dnnl_bf16);
    batch_md(&wmd, wd, d->w, dnnl_bf16);
    batch_md(&omd, od, d->out, dnnl_f32);
    dnnl_matmul_desc_t desc;
    if (dnnl_matmul_desc_init(&desc, &amd, &wmd, NULL, &omd) != dnnl_success) return;
    dnnl_post_ops_t po;
    dnnl_primitive_desc_t pd = NULL;
    dnnl_primitive_attr_t attr = attr_make(d->alpha, d->beta, &po);
    if (dnnl_primitive_desc_create(&pd, &desc, attr, g->engine, NULL) == dnnl_success) {
        if (prim_make(g, pd, &e->prim, &e->scratch, &e->scratch_bytes)) {
            dnnl_memory_create(&e->src, &amd, g->engine, DNNL_MEMORY_NONE);
            dnnl_memory_create(&e->wei, &wmd, g->engine, DNNL_MEMORY_NONE);
            dnnl_memory_create(&e->dst, &omd, g->engine, DNNL_MEMORY_NONE);
        }
        dnnl_primitive_desc_destroy(pd);
    }
    if (po) dnnl_post_ops_destroy(po);
    dnnl_primitive_attr_destroy(attr);
}

static int batch_equal(const gemm_batch_t *x, const gemm_batch_t *y) {
    for (int i = 0; i < 3; i++)
        if (x->batch[i] != y->batch[i]) return 0;
    for (int i = 0; i < 5; i++)
        if (x->a[i] != y->a[i] || x->w[i] != y->w[i] || x->out[i] != y->out[i]) return 0;
    return x->M == y->M && x->K == y->K && x->N == y->N && x->alpha == y->alpha &&
           x->beta == y->beta;
}

static gemm_bentry_t *bentry_find(gemm_t *g, const gemm_batch_t *d) {
    for (int i = 0; i < g->n_bcached; i++)
        if (batch_equal(&g->bcache[i].key, d)) return &g->bcache[i];
    gemm_bentry_t *e;
    if (g->n_bcached < GEMM_BCACHE) {
        e = &g->bcache[g->n_bcached++];
    } else {
        e = &g->bcache[g->next_bevict];
        g->next_bevict = (g->next_bevict + 1) % GEMM_BCACHE;
        bentry_release(e);
    }
    e->key = *d;
    bentry_create(g, e);
    return e;
}

/* Widens an (R x C) bf16 view with strides (rs, cs) into a dense fp32 one. */
static void widen_view(float *dst, const uint16_t *src, int R, int C, long rs, long cs) {
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            uint32_t u = (uint32_t)src[r * rs + c * cs] << 16;
            memcpy(&dst[(long)r * C + c], &u, sizeof u);
        }
}

static void batched_emulated(gemm_t *g, const gemm_batch_t *d, float *out, const uint16_t *a,
                             const uint16_t *w) {
    size_t na = (size_t)d->M * d->K, nw = (size_t)d->K * d->N;
    if (!reserve((void **)&g->emu, &g->emu_cap, na + nw, sizeof(float))) {
        set_status(g, CU_ENOMEM, "out of memory in the bf16 emulation");
        return;
    }
    float *af = g->emu, *wf = g->emu + na;
    for (int i = 0; i < d->batch[0]; i++)
        for (int j = 0; j < d->batch[1]; j++)
            for (int l = 0; l < d->batch[2]; l++) {
                widen_view(af, a + i * d->a[0] + j * d->a[1] + l * d->a[2], d->M, d->K, d->a[3],
                           d->a[4]);
                widen_view(wf, w + i * d->w[0] + j * d->w[1] + l * d->w[2], d->K, d->N, d->w[3],
                           d->w[4]);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, d->M, d->N, d->K, d->alpha,
                            af, d->K, wf, d->N, d->beta,
                            out + i * d->out[0] + j * d->out[1] + l * d->out[2], (int)d->out[3]);
            }
}

void gemm_batched(gemm_t *g, const gemm_batch_t *d, float *out, const uint16_t *a,
                  const uint16_t *w) {
    /* a lent activation stays lent: these products neither read nor
     * change the backend's activation buffer */
    gemm_bentry_t *e = bentry_find(g, d);
    if (!e->prim) {
        batched_emulated(g, d, out, a, w);
        return;
    }
    dnnl_memory_set_data_handle(e->src, (void *)a);
    dnnl_memory_set_data_handle(e->wei, (void *)w);
    dnnl_memory_set_data_handle(e->dst, out);
    dnnl_exec_arg_t args[4] = {
        {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    int nargs = 3;
    if (e->scratch) {
        void *sp = scratch_for(g, e->scratch_bytes);
        if (!sp) {
            set_status(g, CU_ENOMEM, "out of memory (oneDNN scratchpad)");
            return;
        }
        dnnl_memory_set_data_handle(e->scratch, sp);
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch};
    }
    if (dnnl_primitive_execute(e->prim, g->stream, nargs, args) != dnnl_success ||
        dnnl_stream_wait(g->stream) != dnnl_success)
        set_status(g, CU_EINTERNAL, "oneDNN: a batched bf16 matmul failed to run");
}
