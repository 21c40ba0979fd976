/*
 * The run fingerprint (see fingerprint.h). Config keys are written with
 * config_format_value, so the text is exactly what job.yaml says; hashes
 * are written whole.
 */
#include "jobs/fingerprint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The config keys that decide the trainable tensors' shapes and meaning. */
static const char *const KEYS[] = {
    "model.arch",   "model.n_layer",    "model.n_head",      "model.n_kv_head",
    "model.n_embd", "model.vocab_size", "model.max_seq_len", "model.ffn_hidden",
    "lora.enabled", "lora.r",           "lora.alpha",        "lora.rslora",
    "lora.targets", "lora.init",        "data.source",       "data.seq_len",
};

static int add(char **buf, size_t *len, size_t *cap, const char *key, const char *value) {
    size_t need = strlen(key) + strlen(value) + 3;
    if (*len + need > *cap) {
        size_t c = (*cap + need) * 2;
        char *g = realloc(*buf, c);
        if (!g) return -1;
        *buf = g;
        *cap = c;
    }
    *len += (size_t)snprintf(*buf + *len, *cap - *len, "%s=%s\n", key, value);
    return 0;
}

char *fingerprint_make(const fingerprint_input_t *in) {
    char *buf = NULL, value[512];
    size_t len = 0, cap = 0;
    int bad = add(&buf, &len, &cap, "version", "1");
    for (size_t i = 0; !bad && i < sizeof KEYS / sizeof KEYS[0]; i++) {
        if (config_format_value(in->cfg, KEYS[i], value, sizeof value, NULL) != CU_OK) continue;
        bad = add(&buf, &len, &cap, KEYS[i], value);
    }
    /* added after version 1: written only when set, so earlier runs keep
     * their fingerprint */
    if (!bad && in->cfg->model.head_dim > 0) {
        snprintf(value, sizeof value, "%d", in->cfg->model.head_dim);
        bad = add(&buf, &len, &cap, "model.head_dim", value);
    }
    /* a random base is a function of the seed and the init scale */
    char base[600];
    if (in->base_sha256 && in->base_sha256[0])
        snprintf(base, sizeof base, "sha256:%s", in->base_sha256);
    else
        snprintf(base, sizeof base, "random seed %ld std %g", (long)in->cfg->job.seed,
                 (double)in->cfg->model.init_std);
    if (!bad) bad = add(&buf, &len, &cap, "base", base);
    if (!bad)
        bad = add(&buf, &len, &cap, "tokenizer", in->tokenizer_sha256 ? in->tokenizer_sha256 : "");
    if (!bad)
        bad = add(&buf, &len, &cap, "data",
                  in->data_sha256 && in->data_sha256[0] ? in->data_sha256 : "random");
    if (bad) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* The value of key in fp ("" when absent) into out. */
static void value_of(const char *fp, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    out[0] = '\0';
    for (const char *p = fp; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        if (n > kl && !strncmp(p, key, kl) && p[kl] == '=') {
            size_t v = n - kl - 1 < cap - 1 ? n - kl - 1 : cap - 1;
            memcpy(out, p + kl + 1, v);
            out[v] = '\0';
            return;
        }
        p = nl ? nl + 1 : NULL;
    }
}

/* 1 when fp has a line for key. */
static int has_key(const char *fp, const char *key) {
    size_t kl = strlen(key);
    for (const char *p = fp; p && *p;) {
        if (!strncmp(p, key, kl) && p[kl] == '=') return 1;
        p = strchr(p, '\n');
        if (p) p++;
    }
    return 0;
}

/* Every key of a in its order, then the keys only b has. */
int fingerprint_diff(const char *a, const char *b, char *out, size_t cap) {
    int n = 0;
    size_t used = 0;
    if (out && cap) out[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        const char *src = pass ? b : a, *other = pass ? a : b;
        for (const char *p = src; p && *p;) {
            const char *nl = strchr(p, '\n'), *eq = strchr(p, '=');
            size_t n_line = nl ? (size_t)(nl - p) : strlen(p);
            char key[128], va[512], vb[512];
            if (eq && (size_t)(eq - p) < n_line && (size_t)(eq - p) < sizeof key) {
                memcpy(key, p, (size_t)(eq - p));
                key[eq - p] = '\0';
                int in_other = has_key(other, key);
                value_of(a, key, va, sizeof va);
                value_of(b, key, vb, sizeof vb);
                if ((pass == 0 || !in_other) && strcmp(va, vb)) {
                    n++;
                    if (out && used < cap)
                        used += (size_t)snprintf(out + used, cap - used, "%s%s: %s -> %s",
                                                 used ? "; " : "", key, va[0] ? va : "(none)",
                                                 vb[0] ? vb : "(none)");
                }
            }
            p = nl ? nl + 1 : NULL;
        }
    }
    if (out && used >= cap && cap) out[cap - 1] = '\0';
    return n;
}
