/*
 * The distributed SVD and QR of mpi/grid.c against single-process LAPACK
 * (OpenBLAS's dgesvd/dgeqrf) on the same matrices: square, tall, wide and
 * rank-deficient. Run on 1, 2 and 4 ranks (tests/grid.cmake); every rank
 * must also hold bit-identical factors.
 */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "harness.h"
#include "mpi/grid.h"
#include "mpi/world.h"

void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t, size_t);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work,
             const int *lwork, int *info);

static cu_world_t W;
static cu_grid_t *G;

/* A column-major (m, n) matrix of rank min(m, n, rank) with N(0, 1)
 * factors; rank <= 0 means full rank. */
static double *make_matrix(int m, int n, int rank, uint64_t seed) {
    cu_rng_t rng;
    cu_rng_seed(&rng, seed);
    double *a = malloc(sizeof(double) * (size_t)m * n);
    if (rank <= 0) {
        for (size_t i = 0; i < (size_t)m * n; i++) a[i] = cu_rng_normal(&rng);
        return a;
    }
    double *l = malloc(sizeof(double) * (size_t)m * rank), *r = malloc(sizeof(double) * rank * n);
    for (int i = 0; i < m * rank; i++) l[i] = cu_rng_normal(&rng);
    for (int i = 0; i < rank * n; i++) r[i] = cu_rng_normal(&rng);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int t = 0; t < rank; t++) acc += l[i + t * m] * r[t + j * rank];
            a[i + (size_t)j * m] = acc;
        }
    free(l);
    free(r);
    return a;
}

static double fro(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return sqrt(s);
}

/* LAPACK's singular values of a (m, n). */
static void lapack_singular_values(const double *a, int m, int n, double *s) {
    double *copy = malloc(sizeof(double) * (size_t)m * n), query = 0;
    memcpy(copy, a, sizeof(double) * (size_t)m * n);
    int lwork = -1, info = 0, one = 1;
    dgesvd_("N", "N", &m, &n, copy, &m, s, NULL, &one, NULL, &one, &query, &lwork, &info, 1, 1);
    lwork = (int)query;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    dgesvd_("N", "N", &m, &n, copy, &m, s, NULL, &one, NULL, &one, work, &lwork, &info, 1, 1);
    CHECK(info == 0);
    free(work);
    free(copy);
}

/* ||q^T q - I||_max for q (m, k). */
static double orthogonality_error(const double *q, int m, int k, int ld, int row_major_rows) {
    double worst = 0;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            double dot = 0;
            for (int i = 0; i < m; i++) {
                double x = row_major_rows ? q[a + (size_t)i * ld] : q[i + (size_t)a * ld];
                double y = row_major_rows ? q[b + (size_t)i * ld] : q[i + (size_t)b * ld];
                dot += x * y;
            }
            worst = fmax(worst, fabs(dot - (a == b ? 1.0 : 0.0)));
        }
    return worst;
}

/* Every rank's buffer equals rank 0's, byte for byte. */
static int same_on_all_ranks(const double *buf, int n) {
    double *root = malloc(sizeof(double) * (size_t)n);
    memcpy(root, buf, sizeof(double) * (size_t)n);
    MPI_Bcast(root, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    int same = memcmp(root, buf, sizeof(double) * (size_t)n) == 0, all = 0;
    MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    free(root);
    return all;
}

static void check_svd(int m, int n, int rank, uint64_t seed) {
    double *a = make_matrix(m, n, rank, seed);
    int k = m < n ? m : n;
    double *u = malloc(sizeof(double) * (size_t)m * k), *s = malloc(sizeof(double) * k);
    double *vt = malloc(sizeof(double) * (size_t)k * n), *ref = malloc(sizeof(double) * k);
    cu_error_t err = {0};
    int rc = grid_svd(G, a, m, n, u, s, vt, &err);
    CHECK_MSG(rc == 0, "%d x %d: %s", m, n, err.msg);
    lapack_singular_values(a, m, n, ref);
    for (int i = 0; i < k; i++) CHECK_REL(s[i], ref[i], 1e-4, 1e-8 * ref[0]);
    for (int i = 1; i < k; i++) CHECK(s[i] <= s[i - 1]);
    if (rank > 0 && rank < k) CHECK_MSG(s[rank] < 1e-10 * s[0], "rank-deficient tail %g", s[rank]);
    /* reconstruction a - u diag(s) vt */
    double *d = malloc(sizeof(double) * (size_t)m * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int t = 0; t < k; t++) acc += u[i + (size_t)t * m] * s[t] * vt[t + (size_t)j * k];
            d[i + (size_t)j * m] = a[i + (size_t)j * m] - acc;
        }
    double rel = fro(d, (size_t)m * n) / fro(a, (size_t)m * n);
    CHECK_MSG(rel < 1e-12, "%d x %d: ||A - U S V^T|| / ||A|| = %g", m, n, rel);
    CHECK_MSG(orthogonality_error(u, m, k, m, 0) < 1e-10, "%d x %d: U not orthonormal", m, n);
    CHECK_MSG(orthogonality_error(vt, n, k, k, 1) < 1e-10, "%d x %d: V not orthonormal", m, n);
    CHECK(same_on_all_ranks(u, m * k));
    CHECK(same_on_all_ranks(vt, k * n));
    CHECK(same_on_all_ranks(s, k));
    free(a), free(u), free(s), free(vt), free(ref), free(d);
}

static void check_qr(int m, int n, int rank, uint64_t seed) {
    double *a = make_matrix(m, n, rank, seed);
    int k = m < n ? m : n;
    double *q = malloc(sizeof(double) * (size_t)m * k), *r = malloc(sizeof(double) * (size_t)k * n);
    cu_error_t err = {0};
    int rc = grid_qr(G, a, m, n, q, r, &err);
    CHECK_MSG(rc == 0, "%d x %d: %s", m, n, err.msg);
    double *d = malloc(sizeof(double) * (size_t)m * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int t = 0; t < k; t++) acc += q[i + (size_t)t * m] * r[t + (size_t)j * k];
            d[i + (size_t)j * m] = a[i + (size_t)j * m] - acc;
        }
    double rel = fro(d, (size_t)m * n) / fro(a, (size_t)m * n);
    CHECK_MSG(rel < 1e-12, "%d x %d: ||A - Q R|| / ||A|| = %g", m, n, rel);
    CHECK_MSG(orthogonality_error(q, m, k, m, 0) < 1e-10, "%d x %d: Q not orthonormal", m, n);
    for (int j = 0; j < n; j++)
        for (int i = j + 1; i < k; i++) CHECK(r[i + (size_t)j * k] == 0.0);
    /* LAPACK's Householder QR gives the same R (same sign convention) */
    double *copy = malloc(sizeof(double) * (size_t)m * n), *tau = malloc(sizeof(double) * k), query;
    memcpy(copy, a, sizeof(double) * (size_t)m * n);
    int lwork = -1, info = 0;
    dgeqrf_(&m, &n, copy, &m, tau, &query, &lwork, &info);
    lwork = (int)query;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    dgeqrf_(&m, &n, copy, &m, tau, work, &lwork, &info);
    CHECK(info == 0);
    double scale = fabs(copy[0]);
    for (int j = 0; j < n; j++)
        for (int i = 0; i <= j && i < k; i++)
            CHECK_REL(r[i + (size_t)j * k], copy[i + (size_t)j * m], 1e-4, 1e-8 * scale);
    CHECK(same_on_all_ranks(q, m * k));
    CHECK(same_on_all_ranks(r, k * n));
    free(a), free(q), free(r), free(d), free(copy), free(tau), free(work);
}

static void svd_square(void) {
    check_svd(96, 96, 0, 1);
}
static void svd_tall(void) {
    check_svd(150, 40, 0, 2);
}
static void svd_wide(void) {
    check_svd(40, 150, 0, 3);
}
static void svd_rank_deficient(void) {
    check_svd(90, 70, 7, 4);
}
static void svd_wide_rank_deficient(void) {
    check_svd(33, 129, 5, 5);
}
static void svd_tiny(void) {
    check_svd(1, 3, 0, 6);
}
static void qr_square(void) {
    check_qr(80, 80, 0, 7);
}
static void qr_tall(void) {
    check_qr(200, 24, 0, 8);
}
static void qr_wide(void) {
    check_qr(24, 200, 0, 9);
}
static void qr_rank_deficient(void) {
    check_qr(100, 60, 6, 10);
}

/* The product path (QR of both factors, SVD of the core) against the SVD of
 * the product itself. */
static void svd_product_matches_full(void) {
    int m = 120, r1 = 12, n = 70, k = 5;
    double *b = make_matrix(m, r1, 0, 11), *a = make_matrix(r1, n, 0, 12);
    double *p = malloc(sizeof(double) * (size_t)m * n);
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int t = 0; t < r1; t++) acc += b[i + t * m] * a[t + j * r1];
            p[i + (size_t)j * m] = acc;
        }
    double *u = malloc(sizeof(double) * m * k), *s = malloc(sizeof(double) * k);
    double *vt = malloc(sizeof(double) * k * n), *s_all = malloc(sizeof(double) * r1);
    double *ref = malloc(sizeof(double) * n);
    cu_error_t err = {0};
    CHECK_MSG(grid_svd_product(G, b, a, m, r1, n, k, u, s, vt, s_all, &err) == 0, "%s", err.msg);
    lapack_singular_values(p, m, n, ref);
    for (int i = 0; i < r1; i++) CHECK_REL(s_all[i], ref[i], 1e-4, 1e-8 * ref[0]);
    for (int i = r1; i < n; i++) CHECK(ref[i] < 1e-10 * ref[0]);
    /* the rank-k reconstruction error is the discarded energy (Eckart-Young) */
    double err2 = 0, tail = 0;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int t = 0; t < k; t++) acc += u[i + t * m] * s[t] * vt[t + j * k];
            double d = p[i + (size_t)j * m] - acc;
            err2 += d * d;
        }
    for (int i = k; i < r1; i++) tail += s_all[i] * s_all[i];
    CHECK_REL(err2, tail, 1e-8, 1e-12);
    CHECK(orthogonality_error(u, m, k, m, 0) < 1e-10);
    CHECK(orthogonality_error(vt, n, k, k, 1) < 1e-10);
    CHECK(same_on_all_ranks(u, m * k));
    CHECK(same_on_all_ranks(vt, k * n));
    cu_error_t bad = {0};
    CHECK(grid_svd_product(G, b, a, m, r1, n, r1 + 1, u, s, vt, s_all, &bad) == CU_EINVAL);
    free(b), free(a), free(p), free(u), free(s), free(vt), free(s_all), free(ref);
}

/* A NaN is refused with a message on every rank, and the grid still works. */
static void nan_is_an_error(void) {
    double a[6] = {1, 2, 3, NAN, 5, 6}, u[4], s[2], vt[6];
    cu_error_t err = {0};
    CHECK(grid_svd(G, a, 2, 3, u, s, vt, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "NaN") != NULL);
    check_svd(20, 10, 0, 13);
}

int main(int argc, char **argv) {
    cu_error_t err = {0};
    if (world_init(&W, &argc, &argv, &err) != 0 || grid_create(&G, &W, &err) != 0) {
        fprintf(stderr, "test_grid: %s\n", err.msg);
        return 1;
    }
    int p, q;
    grid_shape(G, &p, &q);
    if (W.rank == 0) printf("grid %d x %d on %d rank%s\n", p, q, W.size, W.size == 1 ? "" : "s");
    CHECK(p * q == W.size && p <= q);
    static const cu_test_case_t cases[] = {TEST(svd_square),
                                           TEST(svd_tall),
                                           TEST(svd_wide),
                                           TEST(svd_rank_deficient),
                                           TEST(svd_wide_rank_deficient),
                                           TEST(svd_tiny),
                                           TEST(qr_square),
                                           TEST(qr_tall),
                                           TEST(qr_wide),
                                           TEST(qr_rank_deficient),
                                           TEST(svd_product_matches_full),
                                           TEST(nan_is_an_error)};
    int rc = cu_test_run(cases, (int)(sizeof cases / sizeof cases[0]));
    rc = world_agree(&W, rc);
    grid_free(G);
    world_finalize(&W);
    return rc;
}
