/*
 * Bucketed, overlapped gradient allreduce (see reducer.h).
 */
#include "mpi/reducer.h"

#include <mpi.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"

struct grad_reducer {
    const cu_world_t *w;
    float *buf;
    size_t n, bucket;        /* bucket size in floats */
    size_t pend_lo, pend_hi; /* pending (not yet started) range */
    MPI_Request *reqs;
    int n_reqs, cap_reqs, calls, failed;
};

int reducer_create(grad_reducer_t **out, const cu_world_t *w, float *buf, size_t n,
                   size_t bucket_bytes, cu_error_t *err) {
    grad_reducer_t *r = calloc(1, sizeof *r);
    if (!r) return cu_error_set(err, CU_ENOMEM, "out of memory (reducer)");
    r->w = w;
    r->buf = buf;
    r->n = n;
    r->bucket = bucket_bytes / sizeof(float);
    if (r->bucket < 1024) r->bucket = 1024;
    *out = r;
    return CU_OK;
}

void reducer_free(grad_reducer_t *r) {
    if (!r) return;
    free(r->reqs);
    free(r);
}

void reducer_begin(grad_reducer_t *r) {
    r->pend_lo = r->pend_hi = 0;
    r->n_reqs = 0;
    r->calls = 0;
    r->failed = 0;
}

/* MPI counts are int: slices of at most 2^30 floats. */
static void start(grad_reducer_t *r, size_t lo, size_t hi) {
    while (lo < hi && r->w->size > 1) {
        size_t count = hi - lo < ((size_t)1 << 30) ? hi - lo : ((size_t)1 << 30);
        if (r->n_reqs == r->cap_reqs) {
            int cap = r->cap_reqs ? 2 * r->cap_reqs : 64;
            MPI_Request *grown = realloc(r->reqs, sizeof(MPI_Request) * (size_t)cap);
            if (!grown) {
                /* fall back to a blocking call rather than lose the range */
                world_collective_enter();
                if (MPI_Allreduce(MPI_IN_PLACE, r->buf + lo, (int)count, MPI_FLOAT, MPI_SUM,
                                  MPI_COMM_WORLD) != MPI_SUCCESS)
                    r->failed = 1;
                lo += count;
                r->calls++;
                continue;
            }
            r->reqs = grown;
            r->cap_reqs = cap;
        }
        if (MPI_Iallreduce(MPI_IN_PLACE, r->buf + lo, (int)count, MPI_FLOAT, MPI_SUM,
                           MPI_COMM_WORLD, &r->reqs[r->n_reqs]) != MPI_SUCCESS)
            r->failed = 1;
        else
            r->n_reqs++;
        r->calls++;
        lo += count;
    }
}

void reducer_ready(grad_reducer_t *r, size_t offset, size_t count) {
    if (count == 0) return;
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
    /* let outstanding reductions move while the backward computes */
    if (r->n_reqs > 0) {
        int flag;
        MPI_Testall(r->n_reqs, r->reqs, &flag, MPI_STATUSES_IGNORE);
    }
}

int reducer_finish(grad_reducer_t *r, cu_error_t *err) {
    if (r->w->size == 1) return CU_OK;
    if (r->pend_hi > r->pend_lo) start(r, r->pend_lo, r->pend_hi);
    r->pend_lo = r->pend_hi = 0;
    world_collective_enter(); /* on every rank, with or without requests */
    int rc = r->n_reqs ? MPI_Waitall(r->n_reqs, r->reqs, MPI_STATUSES_IGNORE) : MPI_SUCCESS;
    r->n_reqs = 0;
    if (rc != MPI_SUCCESS || r->failed)
        return cu_error_set(err, CU_EMPI, "gradient allreduce failed");
    return CU_OK;
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
