/*
 * ScaLAPACK process grid and distributed SVD/QR (see grid.h).
 *
 * How a factorisation runs: every rank holds the whole input, so distributing
 * it is a local copy of the rank's blocks (block-cyclic, NB x NB blocks over
 * a P x Q grid, ScaLAPACK's layout); no message is needed. ScaLAPACK then
 * factorises the distributed matrix. Gathering is a sum onto rank 0 of
 * matrices that are zero outside each rank's own blocks — every element has
 * exactly one non-zero contribution, so the sum is exact — followed by a
 * broadcast from rank 0, which makes the results bit-identical everywhere.
 *
 * ScaLAPACK ships no C header: the prototypes below are declared here, with
 * gfortran's hidden length arguments for the character parameters. The grid
 * is made over the default BLACS system context, which is MPI_COMM_WORLD —
 * the communicator of mpi/world.c.
 */
#include "mpi/grid.h"

#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

void Cblacs_get(int icontxt, int what, int *val);
void Cblacs_gridinit(int *icontxt, char *order, int nprow, int npcol);
void Cblacs_gridinfo(int icontxt, int *nprow, int *npcol, int *myrow, int *mycol);
void Cblacs_gridexit(int icontxt);
int numroc_(const int *n, const int *nb, const int *iproc, const int *isrcproc, const int *nprocs);
void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb,
               const int *irsrc, const int *icsrc, const int *ictxt, const int *lld, int *info);
void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
              const int *ia, const int *ja, const int *desca, double *s, double *u, const int *iu,
              const int *ju, const int *descu, double *vt, const int *ivt, const int *jvt,
              const int *descvt, double *work, const int *lwork, int *info, size_t jobu_len,
              size_t jobvt_len);
void pdgeqrf_(const int *m, const int *n, double *a, const int *ia, const int *ja, const int *desca,
              double *tau, double *work, const int *lwork, int *info);
void pdorgqr_(const int *m, const int *n, const int *k, double *a, const int *ia, const int *ja,
              const int *desca, const double *tau, double *work, const int *lwork, int *info);

struct cu_grid {
    const cu_world_t *w;
    int ctx;
    int p, q, myrow, mycol;
};

/* One distributed matrix: its descriptor and this rank's local blocks. */
typedef struct {
    int m, n, nb, mloc, nloc;
    int desc[9];
    double *loc; /* (mloc, nloc) column-major, lld = max(1, mloc) */
} dmat_t;

static const int ZERO = 0, ONE = 1;

int grid_create(cu_grid_t **out, const cu_world_t *w, cu_error_t *err) {
    *out = NULL;
    cu_grid_t *g = calloc(1, sizeof *g);
    if (!g) return cu_error_set(err, CU_ENOMEM, "out of memory (process grid)");
    g->w = w;
    /* near-square: the largest divisor of the size not above its root */
    g->p = 1;
    for (int d = 1; d * d <= w->size; d++)
        if (w->size % d == 0) g->p = d;
    g->q = w->size / g->p;
    Cblacs_get(-1, 0, &g->ctx);
    char order[] = "Row";
    Cblacs_gridinit(&g->ctx, order, g->p, g->q);
    int p = 0, q = 0;
    Cblacs_gridinfo(g->ctx, &p, &q, &g->myrow, &g->mycol);
    int rc = (p == g->p && q == g->q) ? CU_OK : CU_EMPI;
    if (world_agree(w, rc) != CU_OK) {
        cu_error_set(err, CU_EMPI, "BLACS could not build a %d x %d process grid", g->p, g->q);
        free(g);
        return CU_EMPI;
    }
    *out = g;
    return CU_OK;
}

void grid_free(cu_grid_t *g) {
    if (!g) return;
    Cblacs_gridexit(g->ctx);
    free(g);
}

void grid_shape(const cu_grid_t *g, int *p, int *q) {
    *p = g->p;
    *q = g->q;
}

/* Block size: 64 for large matrices, smaller for small ones so that every
 * rank still holds a share of the work. */
static int block_size(const cu_grid_t *g, int m, int n) {
    int mn = m < n ? m : n, pq = g->p > g->q ? g->p : g->q;
    int nb = 64;
    while (nb > 8 && mn < nb * pq * 2) nb /= 2;
    return nb;
}

static int dmat_init(dmat_t *d, const cu_grid_t *g, int m, int n, int nb, cu_error_t *err) {
    memset(d, 0, sizeof *d);
    d->m = m;
    d->n = n;
    d->nb = nb;
    d->mloc = numroc_(&m, &nb, &g->myrow, &ZERO, &g->p);
    d->nloc = numroc_(&n, &nb, &g->mycol, &ZERO, &g->q);
    int lld = d->mloc > 1 ? d->mloc : 1, info = 0;
    descinit_(d->desc, &m, &n, &nb, &nb, &ZERO, &ZERO, &g->ctx, &lld, &info);
    if (info != 0)
        return cu_error_set(err, CU_EINTERNAL, "descinit (%d x %d, block %d): info %d", m, n, nb,
                            info);
    size_t count = (size_t)lld * (size_t)(d->nloc > 1 ? d->nloc : 1);
    d->loc = calloc(count, sizeof(double));
    if (!d->loc) return cu_error_set(err, CU_ENOMEM, "out of memory (%d x %d local blocks)", m, n);
    return CU_OK;
}

static void dmat_free(dmat_t *d) {
    free(d->loc);
    d->loc = NULL;
}

/* Global index of local index l along a dimension split over np processes. */
static int global_index(int l, int nb, int me, int np) {
    return ((l / nb) * np + me) * nb + l % nb;
}

/* Copies this rank's blocks out of the whole column-major matrix a (m, n). */
static void dmat_scatter(dmat_t *d, const cu_grid_t *g, const double *a) {
    int lld = d->mloc > 1 ? d->mloc : 1;
    for (int jl = 0; jl < d->nloc; jl++) {
        int j = global_index(jl, d->nb, g->mycol, g->q);
        for (int il = 0; il < d->mloc; il++)
            d->loc[il + (size_t)jl * lld] =
                a[global_index(il, d->nb, g->myrow, g->p) + (size_t)j * d->m];
    }
}

/* Sums a double buffer onto rank 0 and broadcasts it: with one non-zero
 * contribution per element the result is exact and identical everywhere. */
static int gather_exact(const cu_grid_t *g, double *buf, size_t n, cu_error_t *err) {
    if (g->w->size == 1) return CU_OK;
    const size_t slice = (size_t)1 << 28;
    for (size_t off = 0; off < n; off += slice) {
        int count = (int)(n - off < slice ? n - off : slice);
        int rc =
            g->w->rank == 0
                ? MPI_Reduce(MPI_IN_PLACE, buf + off, count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD)
                : MPI_Reduce(buf + off, NULL, count, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        if (rc == MPI_SUCCESS) rc = MPI_Bcast(buf + off, count, MPI_DOUBLE, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return cu_error_set(err, CU_EMPI, "gathering a distributed matrix failed (MPI %d)", rc);
    }
    return CU_OK;
}

/* Rank 0's buffer to every rank, in slices that fit MPI's int counts. */
static int gather_bcast(const cu_grid_t *g, double *buf, size_t n, cu_error_t *err) {
    if (g->w->size == 1) return CU_OK;
    const size_t slice = (size_t)1 << 28;
    int rc = MPI_SUCCESS;
    for (size_t off = 0; off < n && rc == MPI_SUCCESS; off += slice)
        rc = MPI_Bcast(buf + off, (int)(n - off < slice ? n - off : slice), MPI_DOUBLE, 0,
                       MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return cu_error_set(err, CU_EMPI, "broadcasting a factor failed (MPI %d)", rc);
    return CU_OK;
}

/* Writes the whole matrix (m, n) into a on every rank (a is overwritten). */
static int dmat_gather(const dmat_t *d, const cu_grid_t *g, double *a, cu_error_t *err) {
    memset(a, 0, sizeof(double) * (size_t)d->m * (size_t)d->n);
    int lld = d->mloc > 1 ? d->mloc : 1;
    for (int jl = 0; jl < d->nloc; jl++) {
        int j = global_index(jl, d->nb, g->mycol, g->q);
        for (int il = 0; il < d->mloc; il++)
            a[global_index(il, d->nb, g->myrow, g->p) + (size_t)j * d->m] =
                d->loc[il + (size_t)jl * lld];
    }
    return gather_exact(g, a, (size_t)d->m * (size_t)d->n, err);
}

/* Every rank's return code becomes the worst of them; the message of the
 * failing rank is lost on the others, so they say which rank to look at. */
static int agree(const cu_grid_t *g, int rc, cu_error_t *err) {
    int all = world_agree(g->w, rc);
    if (all != CU_OK && rc == CU_OK)
        cu_error_set(err, all, "another rank failed in a distributed factorisation");
    return all;
}

static void transpose(const double *a, int m, int n, double *t /* (n, m) */) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) t[j + (size_t)i * n] = a[i + (size_t)j * m];
}

/* pdgesvd with m >= n (ScaLAPACK's tall case). */
static int svd_tall(cu_grid_t *g, const double *a, int m, int n, double *u, double *s, double *vt,
                    cu_error_t *err) {
    int nb = block_size(g, m, n), k = n, rc = CU_OK;
    dmat_t da = {0}, du = {0}, dvt = {0};
    double *work = NULL;
    rc = dmat_init(&da, g, m, n, nb, err);
    if (rc == CU_OK) rc = dmat_init(&du, g, m, k, nb, err);
    if (rc == CU_OK) rc = dmat_init(&dvt, g, k, n, nb, err);
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    dmat_scatter(&da, g, a);

    double query = 0;
    int lwork = -1, info = 0;
    pdgesvd_("V", "V", &m, &n, da.loc, &ONE, &ONE, da.desc, s, du.loc, &ONE, &ONE, du.desc, dvt.loc,
             &ONE, &ONE, dvt.desc, &query, &lwork, &info, 1, 1);
    if (info != 0) {
        rc = cu_error_set(err, CU_EINTERNAL, "pdgesvd workspace query: info %d", info);
    } else {
        /* some ScaLAPACK releases under-report the workspace slightly */
        lwork = (int)query + 64 * nb;
        work = malloc(sizeof(double) * (size_t)lwork);
        if (!work) rc = cu_error_set(err, CU_ENOMEM, "out of memory (pdgesvd workspace)");
    }
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    pdgesvd_("V", "V", &m, &n, da.loc, &ONE, &ONE, da.desc, s, du.loc, &ONE, &ONE, du.desc, dvt.loc,
             &ONE, &ONE, dvt.desc, work, &lwork, &info, 1, 1);
    if (info < 0)
        rc = cu_error_set(err, CU_EINTERNAL, "pdgesvd: argument %d was invalid", -info);
    else if (info == k + 1)
        rc = cu_error_set(err, CU_EINTERNAL,
                          "pdgesvd: the ranks computed different singular values (info %d)", info);
    else if (info > 0)
        rc = cu_error_set(err, CU_EINTERNAL,
                          "pdgesvd: the bidiagonal QR iteration did not converge (info %d) on a "
                          "%d x %d matrix; it may hold NaN or Inf",
                          info, m, n);
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    rc = dmat_gather(&du, g, u, err);
    if (rc == CU_OK) rc = dmat_gather(&dvt, g, vt, err);
    /* s is replicated by pdgesvd; broadcast anyway so it is rank 0's bits */
    if (rc == CU_OK && g->w->size > 1 && MPI_Bcast(s, k, MPI_DOUBLE, 0, MPI_COMM_WORLD))
        rc = cu_error_set(err, CU_EMPI, "broadcasting singular values failed");
    rc = agree(g, rc, err);
done:
    free(work);
    dmat_free(&da);
    dmat_free(&du);
    dmat_free(&dvt);
    return rc;
}

static int check_finite(const double *a, size_t n, const char *what, cu_error_t *err) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i]))
            return cu_error_set(err, CU_EINVAL, "%s holds a NaN or Inf (element %zu)", what, i);
    return CU_OK;
}

/* A much taller than wide matrix first goes through QR, as LAPACK's dgesvd
 * does: a = q r, r = u_r s vt, u = q u_r. pdgesvd then bidiagonalises the
 * n x n r instead of the m x n a. q u_r is one local product, computed on
 * rank 0 and broadcast so every rank has the same bits. */
static int svd_tall_qr(cu_grid_t *g, const double *a, int m, int n, double *u, double *s,
                       double *vt, cu_error_t *err) {
    if (m < 2 * n) return svd_tall(g, a, m, n, u, s, vt, err);
    double *q = malloc(sizeof(double) * (size_t)m * n);
    double *r = malloc(sizeof(double) * (size_t)n * n);
    double *ur = malloc(sizeof(double) * (size_t)n * n);
    int rc = (q && r && ur) ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory (SVD)");
    if ((rc = agree(g, rc, err)) == CU_OK) rc = grid_qr(g, a, m, n, q, r, err);
    if (rc == CU_OK) rc = svd_tall(g, r, n, n, ur, s, vt, err);
    if (rc == CU_OK) {
        if (g->w->rank == 0)
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, n, n, 1.0, q, m, ur, n, 0.0,
                        u, m);
        rc = gather_bcast(g, u, (size_t)m * n, err);
    }
    free(q);
    free(r);
    free(ur);
    return rc;
}

int grid_svd(cu_grid_t *g, const double *a, int m, int n, double *u, double *s, double *vt,
             cu_error_t *err) {
    if (m < 1 || n < 1) return cu_error_set(err, CU_EINVAL, "SVD of an empty %d x %d matrix", m, n);
    int rc = check_finite(a, (size_t)m * n, "the matrix to factorise", err);
    if (rc) return rc;
    if (m >= n) return svd_tall_qr(g, a, m, n, u, s, vt, err);
    /* a^T = u' s vt' gives a = vt'^T s u'^T */
    int k = m;
    double *at = malloc(sizeof(double) * (size_t)m * n);
    double *ut = malloc(sizeof(double) * (size_t)n * k);
    double *vtt = malloc(sizeof(double) * (size_t)k * m);
    rc = (at && ut && vtt) ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory (SVD)");
    if ((rc = agree(g, rc, err)) == CU_OK) {
        transpose(a, m, n, at);
        rc = svd_tall_qr(g, at, n, m, ut, s, vtt, err);
    }
    if (rc == CU_OK) {
        transpose(vtt, k, m, u); /* u (m, k) = vt'^T */
        transpose(ut, n, k, vt); /* vt (k, n) = u'^T */
    }
    free(at);
    free(ut);
    free(vtt);
    return rc;
}

int grid_qr(cu_grid_t *g, const double *a, int m, int n, double *q, double *r, cu_error_t *err) {
    if (m < 1 || n < 1) return cu_error_set(err, CU_EINVAL, "QR of an empty %d x %d matrix", m, n);
    int rc = check_finite(a, (size_t)m * n, "the matrix to factorise", err);
    if (rc) return rc;
    int nb = block_size(g, m, n), k = m < n ? m : n, info = 0, lwork = -1;
    dmat_t da = {0};
    double *tau = NULL, *work = NULL, *whole = NULL, query = 0;
    rc = dmat_init(&da, g, m, n, nb, err);
    if (rc == CU_OK) {
        /* tau is indexed by local columns of a */
        tau = malloc(sizeof(double) * (size_t)(da.nloc + 1));
        whole = malloc(sizeof(double) * (size_t)m * n);
        if (!tau || !whole) rc = cu_error_set(err, CU_ENOMEM, "out of memory (QR)");
    }
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    dmat_scatter(&da, g, a);

    /* one workspace serves both calls: query both, take the larger */
    pdgeqrf_(&m, &n, da.loc, &ONE, &ONE, da.desc, tau, &query, &lwork, &info);
    double query2 = 0;
    int info2 = 0;
    if (info == 0) pdorgqr_(&m, &k, &k, da.loc, &ONE, &ONE, da.desc, tau, &query2, &lwork, &info2);
    if (info != 0 || info2 != 0) {
        rc = cu_error_set(err, CU_EINTERNAL, "pdgeqrf/pdorgqr workspace query: info %d/%d", info,
                          info2);
    } else {
        lwork = (int)(query > query2 ? query : query2) + 64 * nb;
        work = malloc(sizeof(double) * (size_t)lwork);
        if (!work) rc = cu_error_set(err, CU_ENOMEM, "out of memory (QR workspace)");
    }
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    pdgeqrf_(&m, &n, da.loc, &ONE, &ONE, da.desc, tau, work, &lwork, &info);
    if (info != 0) rc = cu_error_set(err, CU_EINTERNAL, "pdgeqrf: info %d", info);
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    /* r is the upper trapezoid of the first k rows of the factored a */
    if ((rc = dmat_gather(&da, g, whole, err)) != CU_OK) goto done;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < k; i++) r[i + (size_t)j * k] = i <= j ? whole[i + (size_t)j * m] : 0.0;
    pdorgqr_(&m, &k, &k, da.loc, &ONE, &ONE, da.desc, tau, work, &lwork, &info);
    if (info != 0) rc = cu_error_set(err, CU_EINTERNAL, "pdorgqr: info %d", info);
    if ((rc = agree(g, rc, err)) != CU_OK) goto done;
    rc = agree(g, dmat_gather(&da, g, whole, err), err);
    if (rc == CU_OK) memcpy(q, whole, sizeof(double) * (size_t)m * k);
done:
    free(tau);
    free(work);
    free(whole);
    dmat_free(&da);
    return rc;
}

int grid_svd_product(cu_grid_t *g, const double *b, const double *a, int m, int r1, int n, int k,
                     double *u, double *s, double *vt, double *s_all, cu_error_t *err) {
    int k1 = m < r1 ? m : r1, k2 = n < r1 ? n : r1, kc = k1 < k2 ? k1 : k2;
    if (k < 1 || k > kc)
        return cu_error_set(err, CU_EINVAL,
                            "rank %d is outside 1..%d for a %d x %d product of rank <= %d", k, kc,
                            m, n, r1);
    size_t big = (size_t)m * k1 + (size_t)k1 * r1 + (size_t)n * k2 + (size_t)k2 * r1 +
                 (size_t)n * r1 + (size_t)k1 * k2 + (size_t)k1 * kc + (size_t)kc * k2;
    double *mem = malloc(sizeof(double) * big);
    int rc = mem ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory (factorising B A)");
    if ((rc = agree(g, rc, err)) != CU_OK) {
        free(mem);
        return rc;
    }
    double *qb = mem, *rb = qb + (size_t)m * k1; /* (m, k1), (k1, r1) */
    double *qa = rb + (size_t)k1 * r1;           /* (n, k2) */
    double *ra = qa + (size_t)n * k2;            /* (k2, r1) */
    double *at = ra + (size_t)k2 * r1;           /* (n, r1) */
    double *core = at + (size_t)n * r1;          /* (k1, k2) */
    double *uc = core + (size_t)k1 * k2;         /* (k1, kc) */
    double *vtc = uc + (size_t)k1 * kc;          /* (kc, k2) */
    transpose(a, r1, n, at);
    rc = grid_qr(g, b, m, r1, qb, rb, err);
    if (rc == CU_OK) rc = grid_qr(g, at, n, r1, qa, ra, err);
    if (rc == CU_OK) {
        /* b a = qb (rb ra^T) qa^T: the core is small; rank 0 computes it
         * and broadcasts it */
        if (g->w->rank == 0)
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, k1, k2, r1, 1.0, rb, k1, ra, k2,
                        0.0, core, k1);
        if (g->w->size > 1 && MPI_Bcast(core, k1 * k2, MPI_DOUBLE, 0, MPI_COMM_WORLD))
            rc = cu_error_set(err, CU_EMPI, "broadcasting the core matrix failed");
        rc = agree(g, rc, err);
    }
    if (rc == CU_OK) rc = grid_svd(g, core, k1, k2, uc, s_all, vtc, err);
    if (rc == CU_OK) {
        /* u = qb uc[:, :k], vt = vtc[:k, :] qa^T; rank 0 multiplies and
         * broadcasts */
        if (g->w->rank == 0) {
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, m, k, k1, 1.0, qb, m, uc, k1,
                        0.0, u, m);
            cblas_dgemm(CblasColMajor, CblasNoTrans, CblasTrans, k, n, k2, 1.0, vtc, kc, qa, n, 0.0,
                        vt, k);
        }
        memcpy(s, s_all, sizeof(double) * (size_t)k);
        if (g->w->size > 1 && (MPI_Bcast(u, m * k, MPI_DOUBLE, 0, MPI_COMM_WORLD) ||
                               MPI_Bcast(vt, k * n, MPI_DOUBLE, 0, MPI_COMM_WORLD)))
            rc = cu_error_set(err, CU_EMPI, "broadcasting the factors failed");
        rc = agree(g, rc, err);
    }
    free(mem);
    return rc;
}
