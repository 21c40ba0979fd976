/*
 * Bucketed, overlapped gradient reduction in a fixed order (see reducer.h).
 */
#include "mpi/reducer.h"

#include <limits.h>
#include <math.h>
#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

/* Buckets in flight at once: each holds a receive area of W bucket pieces,
 * so the extra memory is bounded by IN_FLIGHT * W * bucket floats. */
#define IN_FLIGHT 4

/* buf is given back in blocks of this many bytes, aligned in memory (one
 * transparent huge page): a block goes once every float in it has been
 * exchanged. Giving back 4 KB pages at bucket edges instead would split the
 * huge pages, and faulting 4 KB pages back in is slow (on this project's
 * test VMs 50 us a page: seconds per micro-batch at 124M). */
#define RELEASE_BYTES ((size_t)2 << 20)

typedef struct {
    MPI_Request req;
    size_t sa, sb; /* the bucket sent: buf[sa, sb) */
    size_t a, len; /* this rank's piece of the bucket: buf[a, a + len) */
    float *recv;   /* W contributions of len floats, in rank order */
    int *counts;   /* send counts, send displs, recv counts, recv displs (4W) */
} flight_t;

struct grad_reducer {
    const cu_world_t *w;
    float *buf;
    float *sum;              /* the summed gradient: this rank's slice */
    size_t n, bucket;        /* bucket size in floats */
    size_t *bounds;          /* W + 1 slice boundaries */
    size_t pend_lo, pend_hi; /* pending (not yet started) range */
    flight_t fl[IN_FLIGHT];
    int head, active, calls, failed, gather_all;
    int first;       /* the round's first micro-batch: its sums start sum */
    size_t reported; /* floats reported in this micro-batch */
    size_t off0;     /* floats of buf's first release block before buf */
    size_t *done;    /* per release block: floats exchanged so far */
    int gathered;    /* buf holds the last round's gathered sum */
};

void reducer_slice(size_t n, int size, int rank, size_t *lo, size_t *hi) {
    size_t units = (n + REDUCER_ALIGN - 1) / REDUCER_ALIGN;
    size_t a = units * (size_t)rank / (size_t)size * REDUCER_ALIGN;
    size_t b = units * (size_t)(rank + 1) / (size_t)size * REDUCER_ALIGN;
    *lo = a < n ? a : n;
    *hi = b < n ? b : n;
}

int reducer_create(grad_reducer_t **out, const cu_world_t *w, float *buf, size_t n,
                   size_t bucket_bytes, int gather_all, cu_error_t *err) {
    if (n > (size_t)INT_MAX)
        return cu_error_set(err, CU_EINVAL, "%zu trainable parameters: more than MPI counts reach",
                            n);
    grad_reducer_t *r = calloc(1, sizeof *r);
    if (!r) return cu_error_set(err, CU_ENOMEM, "out of memory (reducer)");
    r->w = w;
    r->buf = buf;
    r->n = n;
    r->gather_all = gather_all;
    r->first = 1;
    r->bucket = bucket_bytes / sizeof(float);
    if (r->bucket < 1024) r->bucket = 1024;
    r->bounds = calloc((size_t)w->size + 1, sizeof(size_t));
    r->off0 = (size_t)((uintptr_t)buf % RELEASE_BYTES) / sizeof(float);
    size_t per = RELEASE_BYTES / sizeof(float);
    r->done = calloc((n + r->off0 + per - 1) / per + 1, sizeof(size_t));
    int ok = r->bounds != NULL && r->done != NULL;
    if (ok && w->size > 1) ok = (r->sum = cu_alloc_pages(n * sizeof(float), NULL)) != NULL;
    for (int i = 0; ok && i < IN_FLIGHT; i++) {
        r->fl[i].counts = calloc(4 * (size_t)w->size, sizeof(int));
        ok = r->fl[i].counts != NULL;
    }
    if (!ok) {
        reducer_free(r);
        return cu_error_set(err, CU_ENOMEM, "out of memory (reducer)");
    }
    for (int q = 0; q < w->size; q++)
        reducer_slice(n, w->size, q, &r->bounds[q], &r->bounds[q + 1]);
    *out = r;
    return CU_OK;
}

void reducer_free(grad_reducer_t *r) {
    if (!r) return;
    for (int i = 0; i < IN_FLIGHT; i++) {
        free(r->fl[i].recv);
        free(r->fl[i].counts);
    }
    free(r->bounds);
    free(r->done);
    cu_free_pages(r->sum, r->n * sizeof(float));
    free(r);
}

void reducer_begin(grad_reducer_t *r) {
    r->pend_lo = r->pend_hi = 0;
    r->head = r->active = 0;
    r->calls = 0;
    r->failed = 0;
    r->first = 1;
    r->reported = 0;
    if (r->gathered) /* the last round's gathered sum */
        cu_zero_release(r->buf, r->n * sizeof(float));
    r->gathered = 0;
    size_t per = RELEASE_BYTES / sizeof(float);
    memset(r->done, 0, ((r->n + r->off0 + per - 1) / per + 1) * sizeof(size_t));
}

/* buf[a, b) has been exchanged: every release block now wholly exchanged
 * is cleared with its pages given back (and counts from zero again). */
static void release_exchanged(grad_reducer_t *r, size_t a, size_t b) {
    size_t per = RELEASE_BYTES / sizeof(float);
    for (size_t k = (a + r->off0) / per; k * per < b + r->off0; k++) {
        size_t lo = k * per > r->off0 ? k * per - r->off0 : 0;
        size_t hi = (k + 1) * per - r->off0 < r->n ? (k + 1) * per - r->off0 : r->n;
        size_t x = a > lo ? a : lo, y = b < hi ? b : hi;
        r->done[k] += y - x;
        if (r->done[k] < hi - lo) continue;
        cu_zero_release(r->buf + lo, (hi - lo) * sizeof(float));
        r->done[k] = 0;
    }
}

/* Waits for the oldest bucket, adds its contributions to sum in rank order
 * (after what earlier micro-batches left there), and clears the bucket in
 * buf, giving its whole pages back: the next micro-batch starts from zeros
 * and this rank never holds more of buf than the buckets not yet done. */
static void complete_oldest(grad_reducer_t *r) {
    flight_t *f = &r->fl[r->head];
    if (MPI_Wait(&f->req, MPI_STATUS_IGNORE) != MPI_SUCCESS) r->failed = 1;
    float *out = r->sum + f->a;
    size_t len = f->len;
    if (r->first) memcpy(out, f->recv, len * sizeof(float));
    for (int q = r->first ? 1 : 0; q < r->w->size; q++) {
        const float *in = f->recv + (size_t)q * len;
        for (size_t i = 0; i < len; i++) out[i] += in[i];
    }
    release_exchanged(r, f->sa, f->sb);
    r->head = (r->head + 1) % IN_FLIGHT;
    r->active--;
}

/* Sends each owner its piece of buf[a, b) (at most one bucket) and receives
 * every rank's contribution to this rank's piece. */
static void launch(grad_reducer_t *r, size_t a, size_t b) {
    if (r->active == IN_FLIGHT) complete_oldest(r);
    flight_t *f = &r->fl[(r->head + r->active) % IN_FLIGHT];
    int W = r->w->size, me = r->w->rank;
    if (!f->recv && !(f->recv = malloc(r->bucket * (size_t)W * sizeof(float)))) {
        r->failed = 1;
        return;
    }
    int *sc = f->counts, *sd = sc + W, *rc = sd + W, *rd = rc + W;
    for (int q = 0; q < W; q++) {
        size_t lo = a > r->bounds[q] ? a : r->bounds[q];
        size_t hi = b < r->bounds[q + 1] ? b : r->bounds[q + 1];
        sc[q] = hi > lo ? (int)(hi - lo) : 0;
        sd[q] = hi > lo ? (int)(lo - a) : 0;
    }
    size_t lo = a > r->bounds[me] ? a : r->bounds[me];
    size_t hi = b < r->bounds[me + 1] ? b : r->bounds[me + 1];
    f->sa = a;
    f->sb = b;
    f->a = lo;
    f->len = hi > lo ? hi - lo : 0;
    for (int q = 0; q < W; q++) {
        rc[q] = (int)f->len;
        rd[q] = q * (int)f->len;
    }
    if (MPI_Ialltoallv(r->buf + a, sc, sd, MPI_FLOAT, f->recv, rc, rd, MPI_FLOAT, MPI_COMM_WORLD,
                       &f->req) != MPI_SUCCESS) {
        r->failed = 1;
        return;
    }
    r->active++;
    r->calls++;
}

static void start(grad_reducer_t *r, size_t lo, size_t hi) {
    while (lo < hi && r->w->size > 1) {
        size_t count = hi - lo < r->bucket ? hi - lo : r->bucket;
        launch(r, lo, lo + count);
        lo += count;
    }
}

void reducer_ready(grad_reducer_t *r, size_t offset, size_t count) {
    if (count == 0) return;
    r->reported += count;
    size_t lo = offset, hi = offset + count;
    int adjacent = r->pend_hi > r->pend_lo && (hi == r->pend_lo || lo == r->pend_hi);
    if (r->pend_hi == r->pend_lo) {
        r->pend_lo = lo;
        r->pend_hi = hi;
    } else if (adjacent) {
        if (lo < r->pend_lo) r->pend_lo = lo;
        if (hi > r->pend_hi) r->pend_hi = hi;
    } else {
        start(r, r->pend_lo, r->pend_hi);
        r->pend_lo = lo;
        r->pend_hi = hi;
    }
    if (r->pend_hi - r->pend_lo >= r->bucket) {
        start(r, r->pend_lo, r->pend_hi);
        r->pend_lo = r->pend_hi = 0;
    }
    /* let outstanding exchanges move while the backward computes, and
     * finish the oldest ones already done: their pages of buf go back */
    for (int i = 0; i < r->active; i++) {
        flight_t *f = &r->fl[(r->head + i) % IN_FLIGHT];
        int flag = 0;
        if (f->req != MPI_REQUEST_NULL) MPI_Test(&f->req, &flag, MPI_STATUS_IGNORE);
    }
    while (r->active > 0 && r->fl[r->head].req == MPI_REQUEST_NULL) complete_oldest(r);
}

int reducer_end_micro_batch(grad_reducer_t *r, cu_error_t *err) {
    if (r->w->size == 1) return CU_OK;
    if (r->pend_hi > r->pend_lo) start(r, r->pend_lo, r->pend_hi);
    r->pend_lo = r->pend_hi = 0;
    world_collective_enter(); /* on every rank, with or without buckets in flight */
    while (r->active > 0) complete_oldest(r);
    size_t reported = r->reported;
    r->first = 0;
    r->reported = 0;
    if (r->failed) return cu_error_set(err, CU_EMPI, "gradient reduction failed");
    if (reported != r->n) /* a gap would leave an old sum in place */
        return cu_error_set(err, CU_EINTERNAL,
                            "the backward reported %zu of %zu gradient floats for reduction",
                            reported, r->n);
    return CU_OK;
}

int reducer_finish(grad_reducer_t *r, cu_error_t *err) {
    if (r->w->size == 1) return CU_OK;
    int rc = r->reported > 0 ? reducer_end_micro_batch(r, err) : CU_OK;
    if (rc || !r->gather_all) return rc;
    /* gathered in buf (all zeros now): sum holds only this rank's slice, so
     * unsharded training keeps one whole gradient, not two */
    size_t lo = r->bounds[r->w->rank], hi = r->bounds[r->w->rank + 1];
    memcpy(r->buf + lo, r->sum + lo, (hi - lo) * sizeof(float));
    r->gathered = 1;
    return world_allgather_slices(r->w, r->buf, r->n, err);
}

float *reducer_sum(grad_reducer_t *r) {
    return r->w->size == 1 || r->gather_all ? r->buf : r->sum;
}

int reducer_calls(const grad_reducer_t *r) {
    return r->calls;
}

int world_identical(const cu_world_t *w, const void *buf, size_t bytes, int *same,
                    cu_error_t *err) {
    /* a 64-bit hash of the bytes, compared through its min and max */
    uint64_t h = 0x9e3779b97f4a7c15ULL;
    const unsigned char *p = buf;
    size_t i = 0;
    for (; i + 8 <= bytes; i += 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        h = cu_hash64(h, x);
    }
    for (; i < bytes; i++) h = cu_hash64(h, p[i]);
    unsigned long long mn = h, mx = h;
    *same = 1;
    if (w->size == 1) return CU_OK;
    world_collective_enter();
    if (MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD) !=
            MPI_SUCCESS ||
        MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
        return cu_error_set(err, CU_EMPI, "comparing weights across ranks failed");
    *same = mn == mx;
    return CU_OK;
}

/* Each rank's part of [a, b) for a buffer of n values sliced by
 * reducer_slice: counts and offsets from a (int, as MPI takes them). */
static int span_parts(const cu_world_t *w, size_t n, size_t a, size_t b, int **counts,
                      cu_error_t *err) {
    if (b - a > (size_t)INT_MAX)
        return cu_error_set(err, CU_EINVAL, "%zu values: more than MPI counts reach", b - a);
    *counts = malloc(2 * sizeof(int) * (size_t)w->size);
    if (!*counts) return cu_error_set(err, CU_ENOMEM, "out of memory (gathering slices)");
    for (int q = 0; q < w->size; q++) {
        size_t lo, hi;
        reducer_slice(n, w->size, q, &lo, &hi);
        lo = lo > a ? lo : a;
        hi = hi < b ? hi : b;
        (*counts)[q] = hi > lo ? (int)(hi - lo) : 0;
        (*counts)[w->size + q] = hi > lo ? (int)(lo - a) : 0;
    }
    return CU_OK;
}

int world_allgather_span(const cu_world_t *w, void *buf, size_t elem, size_t n, size_t a, size_t b,
                         cu_error_t *err) {
    if (w->size == 1 || b <= a) return CU_OK;
    int *counts;
    int rc = span_parts(w, n, a, b, &counts, err);
    if (rc) return rc;
    world_collective_enter();
    rc = MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, (char *)buf + a * elem, counts,
                        counts + w->size, elem == 2 ? MPI_UINT16_T : MPI_FLOAT, MPI_COMM_WORLD);
    free(counts);
    return rc == MPI_SUCCESS ? CU_OK
                             : cu_error_set(err, CU_EMPI, "gathering the updated slices failed");
}

int world_allgather_slices(const cu_world_t *w, float *buf, size_t n, cu_error_t *err) {
    return world_allgather_span(w, buf, sizeof(float), n, 0, n, err);
}

int world_gather_span(const cu_world_t *w, const float *buf, size_t n, size_t a, size_t b,
                      float *dst, cu_error_t *err) {
    if (w->size == 1) {
        memcpy(dst, buf + a, (b - a) * sizeof(float));
        return CU_OK;
    }
    if (b <= a) return CU_OK;
    int *counts;
    int rc = span_parts(w, n, a, b, &counts, err);
    if (rc) return rc;
    int mine = counts[w->rank];
    const float *from = buf + a + (size_t)counts[w->size + w->rank];
    world_collective_enter();
    rc = MPI_Gatherv(from, mine, MPI_FLOAT, dst, counts, counts + w->size, MPI_FLOAT, 0,
                     MPI_COMM_WORLD);
    free(counts);
    return rc == MPI_SUCCESS ? CU_OK
                             : cu_error_set(err, CU_EMPI, "gathering the weights to rank 0 failed");
}

static double sum_squares(const float *g, size_t lo, size_t hi) {
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) s += (double)g[i] * g[i];
    return s;
}

int world_slices_norm(const cu_world_t *w, const float *buf, size_t n, int whole, double *norm,
                      cu_error_t *err) {
    if (w->size == 1) {
        *norm = sqrt(sum_squares(buf, 0, n));
        return CU_OK;
    }
    if (n / REDUCER_ALIGN >= (size_t)INT_MAX)
        return cu_error_set(err, CU_EINVAL, "%zu floats: more than MPI counts reach", n);
    size_t chunks = (n + REDUCER_ALIGN - 1) / REDUCER_ALIGN;
    double *part = malloc(sizeof(double) * (chunks ? chunks : 1));
    int *counts = malloc(2 * sizeof(int) * (size_t)w->size);
    if (!part || !counts) {
        free(part);
        free(counts);
        return cu_error_set(err, CU_ENOMEM, "out of memory (norm)");
    }
    int *displs = counts + w->size;
    for (int q = 0; q < w->size; q++) {
        size_t lo, hi; /* slices start on chunk boundaries */
        reducer_slice(n, w->size, q, &lo, &hi);
        size_t c0 = lo / REDUCER_ALIGN, c1 = (hi + REDUCER_ALIGN - 1) / REDUCER_ALIGN;
        counts[q] = hi > lo ? (int)(c1 - c0) : 0;
        displs[q] = hi > lo ? (int)c0 : 0;
        if (!whole && q != w->rank) continue;
        for (size_t c = c0; hi > lo && c < c1; c++) {
            size_t e = (c + 1) * REDUCER_ALIGN;
            part[c] = sum_squares(buf, c * REDUCER_ALIGN, e < n ? e : n);
        }
    }
    int rc = CU_OK;
    if (!whole) {
        world_collective_enter();
        if (MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, part, counts, displs, MPI_DOUBLE,
                           MPI_COMM_WORLD) != MPI_SUCCESS)
            rc = cu_error_set(err, CU_EMPI, "gathering the gradient norm's partial sums failed");
    }
    double s = 0.0;
    for (size_t c = 0; c < chunks; c++) s += part[c];
    *norm = sqrt(s);
    free(part);
    free(counts);
    return rc;
}
