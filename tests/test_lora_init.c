/*
 * PiSSA and OLoRA initialisation (jobs/lora_init.c) on a small random GPT-2:
 * residual + s B A gives back every adapted weight, PiSSA's s B A is the best
 * rank-r approximation (its error is LAPACK's tail of singular values), OLoRA's
 * B has orthonormal columns and A is upper trapezoidal, and the initialised
 * model computes the base model's logits. Runs on 1 rank (unit) and 2 ranks
 * (mpi), where every rank must hold the same adapters.
 */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "jobs/lora_init.h"
#include "mpi/grid.h"
#include "mpi/world.h"

void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t, size_t);

static cu_world_t W;
static cu_grid_t *G;
static const gpt_config_t CFG = {
    .n_layer = 2, .n_head = 2, .n_embd = 32, .vocab_size = 61, .max_seq_len = 16};

static gpt_t *make_model(int lora, const char *init, int rslora) {
    lora_config_t lc = {.enabled = lora,
                        .targets = lora_target_bits(GPT_ARCH_GPT2, "all-linear"),
                        .r = 5,
                        .alpha = 7,
                        .rslora = rslora};
    (void)init;
    gpt_t *m = NULL;
    cu_error_t err = {0};
    CHECK(gpt_create(&m, &CFG, &lc, &err) == CU_OK);
    /* a large std so the weights are far from low-rank */
    gpt_init_weights(m, 42, 0.5f);
    return m;
}

static const gpt_tensor_t *find(const gpt_tensor_t *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static void tail_singular_energy(const float *w, int out, int in, int r, double *tail) {
    double *a = malloc(sizeof(double) * (size_t)out * in), query = 0;
    int k = out < in ? out : in, lwork = -1, info = 0, one = 1;
    double *s = malloc(sizeof(double) * k);
    for (int i = 0; i < out; i++)
        for (int j = 0; j < in; j++) a[i + (size_t)j * out] = w[(size_t)i * in + j];
    dgesvd_("N", "N", &out, &in, a, &out, s, NULL, &one, NULL, &one, &query, &lwork, &info, 1, 1);
    lwork = (int)query;
    double *work = malloc(sizeof(double) * lwork);
    dgesvd_("N", "N", &out, &in, a, &out, s, NULL, &one, NULL, &one, work, &lwork, &info, 1, 1);
    *tail = 0;
    for (int t = r; t < k; t++) *tail += s[t] * s[t];
    free(a), free(s), free(work);
}

static void check_init(const char *init, int rslora) {
    gpt_t *m = make_model(1, init, rslora), *base = make_model(0, init, rslora);
    cu_error_t err = {0};
    int rc = lora_init_factorise(m, G, init, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    size_t n;
    float *lora = gpt_lora_params(m, &n);
    float *lora0 = malloc(n * sizeof(float));
    memcpy(lora0, lora, n * sizeof(float));
    CHECK(lora_fold(m, lora0, -gpt_lora_scale(m), &err) == CU_OK);
    /* the same adapters on every rank */
    float *root = malloc(n * sizeof(float));
    memcpy(root, lora, n * sizeof(float));
    MPI_Bcast(root, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
    CHECK(memcmp(root, lora, n * sizeof(float)) == 0);

    int nl, np;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nl), *pt = gpt_param_tensors(m, &np);
    const float *res = gpt_params(m, NULL), *orig = gpt_params(base, NULL);
    double s = gpt_lora_scale(m);
    for (int i = 0; i + 1 < nl; i += 2) {
        char wname[64];
        snprintf(wname, sizeof wname, "%.*s.weight", (int)(strlen(lt[i].name) - 7), lt[i].name);
        const gpt_tensor_t *tw = find(pt, np, wname);
        CHECK(tw != NULL);
        if (!tw) continue;
        int out = tw->shape[0], in = tw->shape[1], r = lt[i].shape[0];
        const float *a = lora + lt[i].offset, *b = lora + lt[i + 1].offset;
        double worst = 0, wmax = 0, err2 = 0;
        for (int o = 0; o < out; o++)
            for (int j = 0; j < in; j++) {
                double ba = 0;
                for (int t = 0; t < r; t++) ba += (double)b[o * r + t] * a[t * in + j];
                double w0 = orig[tw->offset + (size_t)o * in + j];
                double back = res[tw->offset + (size_t)o * in + j] + s * ba;
                worst = fmax(worst, fabs(back - w0));
                wmax = fmax(wmax, fabs(w0));
                err2 += (w0 - s * ba) * (w0 - s * ba);
            }
        CHECK_MSG(worst <= 1e-5 * wmax, "%s %s: |W_res + s B A - W| = %g", init, wname, worst);
        if (!strcmp(init, "pissa")) {
            double tail;
            tail_singular_energy(orig + tw->offset, out, in, r, &tail);
            /* Eckart-Young: the residual holds exactly the discarded energy
             * (float factors: 1e-4 relative) */
            CHECK_REL(err2, tail, 1e-4, 1e-12);
        } else {
            double ortho = 0;
            for (int p = 0; p < r; p++)
                for (int q = 0; q < r; q++) {
                    double d = 0;
                    for (int o = 0; o < out; o++) d += (double)b[o * r + p] * b[o * r + q];
                    ortho = fmax(ortho, fabs(d - (p == q)));
                }
            CHECK_MSG(ortho < 1e-5, "olora %s: B^T B - I = %g", wname, ortho);
            for (int t = 0; t < r; t++)
                for (int j = 0; j < t && j < in; j++) CHECK(a[t * in + j] == 0.0f);
        }
    }
    /* the initialised model is the base model */
    int32_t tokens[12] = {1, 5, 9, 3, 60, 2, 7, 7, 11, 0, 42, 17};
    gpt_loss_t la = {0}, lb = {0};
    CHECK(gpt_reserve(m, 1, 12, &err) == CU_OK && gpt_reserve(base, 1, 12, &err) == CU_OK);
    CHECK(gpt_forward(m, tokens, tokens, 1, 12, 0, 1.0f, 0, &la, &err) == CU_OK);
    CHECK(gpt_forward(base, tokens, tokens, 1, 12, 0, 1.0f, 0, &lb, &err) == CU_OK);
    float *x = malloc(sizeof(float) * 12 * 61), *y = malloc(sizeof(float) * 12 * 61);
    gpt_logits(m, 0, 12, x);
    gpt_logits(base, 0, 12, y);
    double worst = 0, big = 0;
    for (int i = 0; i < 12 * 61; i++)
        worst = fmax(worst, fabs(x[i] - y[i])), big = fmax(big, fabs(y[i]));
    CHECK_MSG(worst <= 1e-4 * fmax(big, 1.0), "%s: logits differ from the base by %g", init, worst);
    free(x), free(y), free(lora0), free(root);
    gpt_free(m);
    gpt_free(base);
}

static void pissa(void) {
    check_init("pissa", 0);
}
static void pissa_rslora(void) {
    check_init("pissa", 1);
}
static void olora(void) {
    check_init("olora", 0);
}

/* A rank above a weight's rank is refused with the tensor's name. */
static void rank_too_large(void) {
    lora_config_t lc = {
        .enabled = 1, .targets = lora_target_bits(GPT_ARCH_GPT2, "qkv"), .r = 40, .alpha = 8};
    gpt_t *m = NULL;
    cu_error_t err = {0};
    CHECK(gpt_create(&m, &CFG, &lc, &err) == CU_OK);
    gpt_init_weights(m, 1, 0.1f);
    CHECK(lora_init_factorise(m, G, "pissa", &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "c_attn") != NULL);
    gpt_free(m);
}

int main(int argc, char **argv) {
    cu_error_t err = {0};
    if (world_init(&W, &argc, &argv, &err) != 0 || grid_create(&G, &W, &err) != 0) {
        fprintf(stderr, "test_lora_init: %s\n", err.msg);
        return 1;
    }
    static const cu_test_case_t cases[] = {TEST(pissa), TEST(pissa_rslora), TEST(olora),
                                           TEST(rank_too_large)};
    int rc = world_agree(&W, cu_test_run(cases, (int)(sizeof cases / sizeof cases[0])));
    grid_free(G);
    world_finalize(&W);
    return rc;
}
