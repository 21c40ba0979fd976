/*
 * Sampling: the distribution sample_token draws from (temperature, top-k,
 * top-p) measured against the definition, and generation on the KV cache.
 */
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "model/sample.h"

#define V 4
static const float BASE[V] = {2.0f, 1.5f, 0.5f, -1.0f};

/* Frequencies of each token over n draws. */
static void draw(const sample_params_t *p, int n, double freq[V]) {
    cu_rng_t rng;
    cu_rng_seed(&rng, 99);
    int idx[V], counts[V] = {0};
    for (int i = 0; i < n; i++) {
        float z[V];
        memcpy(z, BASE, sizeof z);
        int t = sample_token(z, V, p, &rng, idx);
        CHECK(t >= 0 && t < V);
        if (t >= 0 && t < V) counts[t]++;
    }
    for (int v = 0; v < V; v++) freq[v] = (double)counts[v] / n;
}

/* softmax(BASE / temp) restricted to the first `keep` tokens (BASE is sorted). */
static void expected(double temp, int keep, double p[V]) {
    double sum = 0.0;
    for (int v = 0; v < V; v++) {
        p[v] = v < keep ? exp(BASE[v] / temp) : 0.0;
        sum += p[v];
    }
    for (int v = 0; v < V; v++) p[v] /= sum;
}

static void check_freq(const char *what, const double got[V], const double want[V]) {
    for (int v = 0; v < V; v++)
        CHECK_MSG(fabs(got[v] - want[v]) < 0.015, "%s: token %d drawn %.4f, expected %.4f", what, v,
                  got[v], want[v]);
}

static void test_greedy(void) {
    double f[V];
    sample_params_t p = {.temperature = 0.0f};
    draw(&p, 100, f);
    CHECK(f[0] == 1.0);
    p = (sample_params_t){.temperature = 1.0f, .top_k = 1};
    draw(&p, 100, f);
    CHECK(f[0] == 1.0);
    p = (sample_params_t){.temperature = 1.0f, .top_p = 0.01f};
    draw(&p, 100, f);
    CHECK(f[0] == 1.0);
}

static void test_temperature(void) {
    double f[V], want[V];
    sample_params_t p = {.temperature = 1.0f, .top_p = 1.0f};
    draw(&p, 40000, f);
    expected(1.0, V, want);
    check_freq("temperature 1", f, want);
    p.temperature = 0.5f;
    draw(&p, 40000, f);
    expected(0.5, V, want);
    check_freq("temperature 0.5", f, want);
}

static void test_top_k(void) {
    double f[V], want[V];
    sample_params_t p = {.temperature = 1.0f, .top_k = 2, .top_p = 1.0f};
    draw(&p, 40000, f);
    expected(1.0, 2, want);
    check_freq("top_k 2", f, want);
}

static void test_top_p(void) {
    /* probabilities at temperature 1: 0.5466, 0.3315, 0.1220, 0.0... so
     * top_p 0.8 keeps the two whose mass first reaches 0.8 */
    double f[V], want[V];
    sample_params_t p = {.temperature = 1.0f, .top_p = 0.8f};
    draw(&p, 40000, f);
    expected(1.0, 2, want);
    check_freq("top_p 0.8", f, want);
    p.top_p = 0.9f; /* 0.5466 + 0.3315 = 0.878 < 0.9: three kept */
    draw(&p, 40000, f);
    expected(1.0, 3, want);
    check_freq("top_p 0.9", f, want);
}

static void test_large_vocab_top_k(void) {
    /* quickselect over a big vocabulary keeps exactly the k best */
    int n = 50257, k = 40;
    float *z = malloc(sizeof(float) * n);
    int *idx = malloc(sizeof(int) * n);
    cu_rng_t rng;
    cu_rng_seed(&rng, 5);
    float *orig = malloc(sizeof(float) * n);
    for (int i = 0; i < n; i++) orig[i] = cu_rng_normal(&rng);
    float kth = 0.0f;
    {
        /* the k-th largest, by counting */
        float *sorted = malloc(sizeof(float) * n);
        memcpy(sorted, orig, sizeof(float) * n);
        for (int a = 0; a < k; a++) {
            int best = a;
            for (int b = a + 1; b < n; b++)
                if (sorted[b] > sorted[best]) best = b;
            float t = sorted[a];
            sorted[a] = sorted[best];
            sorted[best] = t;
        }
        kth = sorted[k - 1];
        free(sorted);
    }
    sample_params_t p = {.temperature = 2.0f, .top_k = k, .top_p = 1.0f};
    for (int i = 0; i < 500; i++) {
        memcpy(z, orig, sizeof(float) * n);
        int t = sample_token(z, n, &p, &rng, idx);
        CHECK(orig[t] >= kth);
    }
    free(z), free(idx), free(orig);
}

static gpt_t *tiny(void) {
    gpt_config_t cfg = {
        .n_layer = 1, .n_head = 2, .n_embd = 8, .vocab_size = 11, .max_seq_len = 12};
    lora_config_t lc = {.enabled = 1, .targets = 15u, .r = 2, .alpha = 4.0f};
    gpt_t *m;
    if (gpt_create(&m, &cfg, &lc, NULL) != CU_OK) return NULL;
    gpt_init_weights(m, 3, 0.5f);
    gpt_init_lora(m, 4);
    return m;
}

static void test_generate(void) {
    gpt_t *m = tiny();
    CHECK(m != NULL);
    if (!m) return;
    int32_t prompt[3] = {1, 2, 3}, out[20], out2[20];
    int n = 0, n2 = 0;
    sample_params_t p = {.temperature = 1.0f, .top_k = 5, .top_p = 0.9f};
    cu_rng_t a, b;
    cu_rng_seed(&a, 7);
    cu_rng_seed(&b, 7);
    CHECK(sample_generate(m, prompt, 3, 6, &p, &a, -1, out, &n, NULL) == CU_OK);
    CHECK(n == 6);
    CHECK(sample_generate(m, prompt, 3, 6, &p, &b, -1, out2, &n2, NULL) == CU_OK);
    CHECK(n2 == 6 && memcmp(out, out2, sizeof(int32_t) * 6) == 0); /* same seed, same text */
    for (int i = 0; i < n; i++) CHECK(out[i] >= 0 && out[i] < 11);
    /* greedy continuation equals the argmax of the batched forward's logits */
    sample_params_t g = {.temperature = 0.0f};
    CHECK(sample_generate(m, prompt, 3, 1, &g, &a, -1, out, &n, NULL) == CU_OK && n == 1);
    float logits[3 * 11];
    CHECK(gpt_forward(m, prompt, NULL, 1, 3, 0, 1.0f, 0, NULL, NULL) == CU_OK);
    gpt_logits(m, 0, 3, logits);
    int best = 0;
    for (int v = 1; v < 11; v++)
        if (logits[2 * 11 + v] > logits[2 * 11 + best]) best = v;
    CHECK(out[0] == best);
    /* the stop token ends generation without being emitted */
    CHECK(sample_generate(m, prompt, 3, 5, &g, &a, best, out, &n, NULL) == CU_OK && n == 0);
    /* a prompt longer than the context keeps its end; output fits the context */
    int32_t longp[30];
    for (int i = 0; i < 30; i++) longp[i] = i % 11;
    CHECK(sample_generate(m, longp, 30, 8, &p, &a, -1, out, &n, NULL) == CU_OK && n == 8);
    /* n_vocab: ids at and above it (an embedding's padding rows) are never
     * drawn, greedy or sampled, even when they are the likeliest */
    sample_params_t lim = {.temperature = 0.0f, .n_vocab = best};
    if (best > 0) {
        CHECK(sample_generate(m, prompt, 3, 1, &lim, &a, -1, out, &n, NULL) == CU_OK && n == 1);
        CHECK_MSG(out[0] < best, "greedy drew %d with n_vocab %d", out[0], best);
    }
    lim = (sample_params_t){.temperature = 5.0f, .n_vocab = 3};
    CHECK(sample_generate(m, prompt, 3, 9, &lim, &a, -1, out, &n, NULL) == CU_OK && n == 9);
    for (int i = 0; i < n; i++) CHECK_MSG(out[i] < 3, "drew %d with n_vocab 3", out[i]);
    cu_error_t err;
    CHECK(sample_generate(m, prompt, 0, 4, &p, &a, -1, out, &n, &err) == CU_EINVAL);
    gpt_free(m);
}

TEST_MAIN(TEST(test_greedy), TEST(test_temperature), TEST(test_top_k), TEST(test_top_p),
          TEST(test_large_vocab_top_k), TEST(test_generate))
