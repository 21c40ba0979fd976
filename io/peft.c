/*
 * PEFT adapter folders: name mapping, adapter_config.json and
 * adapter_model.safetensors, both ways (see io/peft.h).
 *
 * Everything is driven by PEFT_ARCHS: an architecture's block prefixes and
 * its adaptable modules (our path, the Hugging Face path, our LoRA target
 * bit). Names are translated piece by piece (prefix, layer number, module,
 * lora_A/lora_B, suffix) so a name that does not fit the table is refused
 * rather than guessed at.
 */
#include "io/peft.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"

static const peft_arch_t PEFT_ARCHS[] = {
    {.arch = "gpt2",
     .our_block = "h.",
     .peft_block = "base_model.model.transformer.h.",
     .fan_in_fan_out = 1,
     .n_modules = 4,
     .modules = {{"attn.c_attn", "attn.c_attn", LORA_QKV},
                 {"attn.c_proj", "attn.c_proj", LORA_ATTN_PROJ},
                 {"mlp.c_fc", "mlp.c_fc", LORA_MLP_FC},
                 {"mlp.c_proj", "mlp.c_proj", LORA_MLP_PROJ}}},
    {.arch = "llama",
     .our_block = "layers.",
     .peft_block = "base_model.model.model.layers.",
     .fan_in_fan_out = 0,
     .n_modules = 7,
     .modules = {{"self_attn.q_proj", "self_attn.q_proj", LLAMA_Q},
                 {"self_attn.k_proj", "self_attn.k_proj", LLAMA_K},
                 {"self_attn.v_proj", "self_attn.v_proj", LLAMA_V},
                 {"self_attn.o_proj", "self_attn.o_proj", LLAMA_O},
                 {"mlp.gate_proj", "mlp.gate_proj", LLAMA_GATE},
                 {"mlp.up_proj", "mlp.up_proj", LLAMA_UP},
                 {"mlp.down_proj", "mlp.down_proj", LLAMA_DOWN}}},
    {.arch = "starcoder2",
     .our_block = "layers.",
     .peft_block = "base_model.model.model.layers.",
     .fan_in_fan_out = 0,
     .n_modules = 6,
     .modules = {{"self_attn.q_proj", "self_attn.q_proj", SC2_Q},
                 {"self_attn.k_proj", "self_attn.k_proj", SC2_K},
                 {"self_attn.v_proj", "self_attn.v_proj", SC2_V},
                 {"self_attn.o_proj", "self_attn.o_proj", SC2_O},
                 {"mlp.c_fc", "mlp.c_fc", SC2_FC},
                 {"mlp.c_proj", "mlp.c_proj", SC2_PROJ}}},
};

const peft_arch_t *peft_arch_find(const char *arch) {
    for (size_t i = 0; i < sizeof PEFT_ARCHS / sizeof PEFT_ARCHS[0]; i++)
        if (arch && !strcmp(PEFT_ARCHS[i].arch, arch)) return &PEFT_ARCHS[i];
    return NULL;
}

/* ------------------------------------------------------------ names */

/* Splits "<prefix><N>.<module><rest>" where module is one of the table's
 * (ours or peft paths by `peft`). Returns the module or NULL; *layer, *rest. */
static const peft_module_t *split_name(const peft_arch_t *a, const char *name, int peft,
                                       long *layer, const char **rest) {
    const char *prefix = peft ? a->peft_block : a->our_block;
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return NULL;
    const char *p = name + pl;
    if (*p < '0' || *p > '9') return NULL;
    char *end;
    errno = 0;
    *layer = strtol(p, &end, 10);
    if (errno || *end != '.' || *layer > 1000000) return NULL;
    p = end + 1;
    for (int i = 0; i < a->n_modules; i++) {
        const char *m = peft ? a->modules[i].peft : a->modules[i].ours;
        size_t ml = strlen(m);
        if (!strncmp(p, m, ml) && p[ml] == '.') {
            *rest = p + ml;
            return &a->modules[i];
        }
    }
    return NULL;
}

int peft_name_from_ours(const peft_arch_t *a, const char *ours, char *out, size_t cap,
                        cu_error_t *err) {
    long layer;
    const char *rest;
    const peft_module_t *m = split_name(a, ours, 0, &layer, &rest);
    if (!m || (strcmp(rest, ".lora_A") && strcmp(rest, ".lora_B")))
        return cu_error_set(err, CU_EINTERNAL, "'%s' is not a %s LoRA tensor name", ours, a->arch);
    return cu_format(out, cap, err, "%s%ld.%s%s.weight", a->peft_block, layer, m->peft, rest);
}

int peft_name_to_ours(const peft_arch_t *a, const char *peft, char *out, size_t cap,
                      cu_error_t *err) {
    long layer;
    const char *rest;
    const peft_module_t *m = split_name(a, peft, 1, &layer, &rest);
    const char *ab = NULL;
    if (m && (!strncmp(rest, ".lora_A.", 8) || !strncmp(rest, ".lora_B.", 8))) {
        ab = rest[6] == 'A' ? "lora_A" : "lora_B";
        rest += 7;
    }
    if (!ab || (strcmp(rest, ".weight") && strcmp(rest, ".default.weight")))
        return cu_error_set(err, CU_EFORMAT,
                            "'%s' is not a LoRA tensor of a %s model "
                            "(%s<N>.<module>.lora_A|lora_B.weight)",
                            peft, a->arch, a->peft_block);
    return cu_format(out, cap, err, "%s%ld.%s.%s", a->our_block, layer, m->ours, ab);
}

static const char *last_part(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

int peft_target_modules(const peft_arch_t *a, unsigned targets, const char **names, int cap) {
    int n = 0;
    for (int i = 0; i < a->n_modules; i++) {
        const peft_module_t *m = &a->modules[i];
        if (!(targets & (1u << m->target))) continue;
        const char *shortn = last_part(m->peft);
        int clash = 0; /* another module of that name that must stay unadapted */
        for (int j = 0; j < a->n_modules; j++)
            if (j != i && !strcmp(last_part(a->modules[j].peft), shortn) &&
                !(targets & (1u << a->modules[j].target)))
                clash = 1;
        const char *name = clash ? m->peft : shortn;
        int dup = 0;
        for (int k = 0; k < n; k++) dup |= !strcmp(names[k], name);
        if (!dup && n < cap) names[n++] = name;
    }
    return n;
}

/* ------------------------------------------------------------ write */

static int write_json_atomic(const char *path, json_t *doc, cu_error_t *err) {
    char tmp[4200];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
    if (rc == CU_OK && json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot write %s", tmp);
    if (rc == CU_OK && rename(tmp, path) != 0) {
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
    }
    return rc;
}

static json_t *config_json(const peft_arch_t *a, const peft_adapter_t *p) {
    const char *names[PEFT_MAX_MODULES];
    int n = peft_target_modules(a, p->targets, names, PEFT_MAX_MODULES);
    json_t *tm = json_array();
    for (int i = 0; tm && i < n; i++) json_array_append_new(tm, json_string(names[i]));
    double alpha = p->alpha;
    char dbuf[32]; /* the config's float as written, not its binary expansion */
    snprintf(dbuf, sizeof dbuf, "%.7g", p->dropout);
    return json_pack("{s:s, s:s, s:i, s:o, s:f, s:o, s:b, s:b, s:s, s:s?, s:b, s:b, s:n, s:n, s:n}",
                     "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", p->r, "lora_alpha",
                     alpha == floor(alpha) && fabs(alpha) < 1e9 ? json_integer((json_int_t)alpha)
                                                                : json_real(alpha),
                     "lora_dropout", strtod(dbuf, NULL), "target_modules", tm, "use_rslora",
                     p->rslora, "fan_in_fan_out", a->fan_in_fan_out, "bias", "none",
                     "base_model_name_or_path", p->base_model, "inference_mode", 1,
                     "init_lora_weights", 1, "modules_to_save", "layers_to_transform", "revision");
}

int peft_write(const char *dir, const peft_arch_t *a, const peft_adapter_t *p, const float *buf,
               const gpt_tensor_t *t, int nt, cu_error_t *err) {
    st_tensor_t *st = calloc((size_t)nt, sizeof *st);
    char(*names)[192] = calloc((size_t)nt, sizeof *names);
    int rc = st && names ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int i = 0; rc == CU_OK && i < nt; i++) {
        rc = peft_name_from_ours(a, t[i].name, names[i], sizeof names[i], err);
        st[i] = (st_tensor_t){.name = names[i],
                              .data = buf + t[i].offset,
                              .ndim = 2,
                              .shape = {t[i].shape[0], t[i].shape[1]}};
    }
    char path[4200];
    const char *meta[] = {"format", "pt", "codex_base_sha256", p->base_sha256};
    if (rc == CU_OK) rc = cu_format(path, sizeof path, err, "%s/adapter_model.safetensors", dir);
    if (rc == CU_OK) rc = st_write(path, st, nt, ST_F32, meta, p->base_sha256[0] ? 2 : 1, err);
    free(st);
    free(names);
    if (rc) return rc;
    json_t *doc = config_json(a, p);
    if (!doc) return cu_error_set(err, CU_ENOMEM, "out of memory");
    rc = cu_format(path, sizeof path, err, "%s/adapter_config.json", dir);
    if (rc == CU_OK) rc = write_json_atomic(path, doc, err);
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------- read */

static int sha256_file(const char *path, char hex[65], cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)
                 ? CU_OK
                 : cu_error_set(err, CU_EINTERNAL, "sha256 unavailable");
    unsigned char buf[65536];
    size_t k;
    while (rc == CU_OK && (k = fread(buf, 1, sizeof buf, f)) > 0) EVP_DigestUpdate(ctx, buf, k);
    if (rc == CU_OK && ferror(f)) rc = cu_error_set(err, CU_EIO, "error reading %s", path);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (rc == CU_OK) EVP_DigestFinal_ex(ctx, md, &mdlen);
    for (unsigned i = 0; rc == CU_OK && i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    EVP_MD_CTX_free(ctx);
    fclose(f);
    return rc;
}

/* Which of the table's modules one target_modules entry selects, as PEFT
 * matches it: the module's full name equals it or ends with ".<entry>".
 * "all-linear" selects them all. */
static unsigned match_target(const peft_arch_t *a, const char *entry) {
    if (!strcmp(entry, "all-linear")) {
        unsigned all = 0;
        for (int i = 0; i < a->n_modules; i++) all |= 1u << a->modules[i].target;
        return all;
    }
    unsigned bits = 0;
    size_t el = strlen(entry);
    for (int i = 0; i < a->n_modules; i++) {
        /* the module's name in the HF model, e.g. "transformer.h.0.attn.c_proj" */
        char full[256];
        snprintf(full, sizeof full, "%s0.%s", a->peft_block + strlen("base_model.model."),
                 a->modules[i].peft);
        size_t fl = strlen(full);
        if (!strcmp(full, entry) ||
            (el < fl && full[fl - el - 1] == '.' && !strcmp(full + fl - el, entry)))
            bits |= 1u << a->modules[i].target;
    }
    return bits;
}

static int read_targets(const peft_arch_t *a, json_t *tm, const char *path, peft_adapter_t *p,
                        cu_error_t *err) {
    char list[1024] = "";
    size_t n = json_is_array(tm) ? json_array_size(tm) : 1;
    if (!json_is_array(tm) && !json_is_string(tm))
        return cu_error_set(err, CU_EFORMAT, "%s: target_modules must be a list of names", path);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_is_array(tm) ? json_array_get(tm, i) : tm;
        if (!json_is_string(e))
            return cu_error_set(err, CU_EFORMAT, "%s: target_modules[%zu] is not a string", path,
                                i);
        const char *s = json_string_value(e);
        unsigned bits = match_target(a, s);
        if (!bits)
            return cu_error_set(err, CU_EFORMAT,
                                "%s: target_modules entry '%s' matches no adaptable layer of a "
                                "%s model",
                                path, s, a->arch);
        p->targets |= bits;
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", l ? ", " : "", s);
    }
    p->target_modules = strdup(list);
    return p->target_modules ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
}

int peft_read_config(const char *dir, const peft_arch_t *a, peft_adapter_t *p, cu_error_t *err) {
    memset(p, 0, sizeof *p);
    char path[4200], wpath[4200];
    int rc = cu_format(path, sizeof path, err, "%s/adapter_config.json", dir);
    if (rc == CU_OK) rc = cu_format(wpath, sizeof wpath, err, "%s/adapter_model.safetensors", dir);
    if (rc) return rc;
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc)
        return cu_error_set(err, access(path, R_OK) ? CU_EIO : CU_EFORMAT, "%s: %s", path,
                            access(path, R_OK) ? strerror(errno) : je.text);
    const char *type = json_string_value(json_object_get(doc, "peft_type"));
    json_t *r = json_object_get(doc, "r"), *al = json_object_get(doc, "lora_alpha");
    json_t *tm = json_object_get(doc, "target_modules");
    if (!type || strcmp(type, "LORA"))
        rc = cu_error_set(err, CU_EFORMAT, "%s: peft_type is %s, not LORA", path,
                          type ? type : "missing");
    else if (!json_is_integer(r) || json_integer_value(r) < 1 || json_integer_value(r) > 65536)
        rc = cu_error_set(err, CU_EFORMAT, "%s: r must be a positive integer", path);
    else if (!json_is_number(al))
        rc = cu_error_set(err, CU_EFORMAT, "%s: lora_alpha must be a number", path);
    else if (!tm)
        rc = cu_error_set(err, CU_EFORMAT, "%s: target_modules is missing", path);
    json_t *rp = json_object_get(doc, "rank_pattern"), *ap = json_object_get(doc, "alpha_pattern");
    if (rc == CU_OK && ((json_is_object(rp) && json_object_size(rp)) ||
                        (json_is_object(ap) && json_object_size(ap))))
        rc = cu_error_set(err, CU_EFORMAT,
                          "%s: rank_pattern / alpha_pattern (per-layer ranks) are not supported",
                          path);
    json_t *ltt = json_object_get(doc, "layers_to_transform");
    if (rc == CU_OK && ltt && !json_is_null(ltt))
        rc = cu_error_set(err, CU_EFORMAT, "%s: layers_to_transform is not supported", path);
    const char *bias = json_string_value(json_object_get(doc, "bias"));
    if (rc == CU_OK && bias && strcmp(bias, "none"))
        rc =
            cu_error_set(err, CU_EFORMAT, "%s: bias '%s' is not supported (only none)", path, bias);
    if (rc == CU_OK) {
        p->r = (int)json_integer_value(r);
        p->alpha = json_number_value(al);
        p->dropout = json_number_value(json_object_get(doc, "lora_dropout"));
        p->rslora = json_is_true(json_object_get(doc, "use_rslora"));
        p->fan_in_fan_out = json_is_true(json_object_get(doc, "fan_in_fan_out"));
        const char *bm = json_string_value(json_object_get(doc, "base_model_name_or_path"));
        if (bm && !(p->base_model = strdup(bm))) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    if (rc == CU_OK) rc = read_targets(a, tm, path, p, err);
    json_decref(doc);
    if (rc == CU_OK) rc = sha256_file(path, p->config_sha256, err);
    if (rc == CU_OK) rc = sha256_file(wpath, p->sha256, err);
    st_model_t *m = NULL;
    if (rc == CU_OK) rc = st_open(wpath, &m, err);
    const char *bs = rc ? NULL : st_metadata(m, "codex_base_sha256");
    if (bs && strlen(bs) == 64) memcpy(p->base_sha256, bs, 65);
    st_close(m);
    return rc;
}

void peft_adapter_free(peft_adapter_t *p) {
    free(p->target_modules);
    free(p->base_model);
    p->target_modules = p->base_model = NULL;
}

int peft_read_tensors(const char *dir, const peft_arch_t *a, float *buf, const gpt_tensor_t *t,
                      int nt, cu_error_t *err) {
    char path[4200];
    int rc = cu_format(path, sizeof path, err, "%s/adapter_model.safetensors", dir);
    st_model_t *m = NULL;
    if (rc == CU_OK) rc = st_open(path, &m, err);
    if (rc) return rc;
    char ours[192];
    /* every tensor in the file must be one of ours (no extras) */
    for (int i = 0; rc == CU_OK && i < st_count(m); i++) {
        const st_entry_t *e = st_entry(m, i);
        rc = peft_name_to_ours(a, e->name, ours, sizeof ours, err);
        int found = 0;
        for (int k = 0; rc == CU_OK && k < nt && !found; k++) found = !strcmp(t[k].name, ours);
        if (rc)
            cu_error_prefix(err, "%s", path);
        else if (!found)
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s: tensor %s is not part of this job's adapter (its "
                              "lora.targets or model.n_layer differ)",
                              path, e->name);
    }
    char name[192];
    for (int k = 0; rc == CU_OK && k < nt; k++) {
        rc = peft_name_from_ours(a, t[k].name, name, sizeof name, err);
        const st_entry_t *e = rc ? NULL : st_find(m, name);
        if (!e) {
            char alt[200]; /* the ".default.weight" spelling */
            snprintf(alt, sizeof alt, "%.*s.default.weight", (int)(strlen(name) - 7), name);
            e = rc ? NULL : st_find(m, alt);
        }
        if (rc) break;
        if (!e) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: tensor %s is missing", path, name);
            break;
        }
        if (e->ndim != 2 || e->shape[0] != t[k].shape[0] || e->shape[1] != t[k].shape[1]) {
            rc = cu_error_set(
                err, CU_EFORMAT, "%s: tensor %s has shape %s(%lld, %lld), this job needs (%d, %d)",
                path, e->name, e->ndim == 2 ? "" : "of another rank, ", (long long)e->shape[0],
                (long long)(e->ndim > 1 ? e->shape[1] : 0), t[k].shape[0], t[k].shape[1]);
            break;
        }
        rc = st_read_f32(m, e, buf + t[k].offset, err);
    }
    st_close(m);
    return rc;
}
