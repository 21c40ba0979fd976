/*
 * The compute precision of the model object (gpt.h): in bf16 the base
 * weights get a bf16 copy that the matrix-product backend (gemm.h) reads in
 * place of the fp32 ones. The fp32 buffer stays what loaders, checkpoints
 * and (in full fine-tuning) the optimizer write, so the copy is marked
 * stale whenever a writable pointer to it is handed out and remade at the
 * start of the next forward.
 *
 * A frozen base can instead lend its bf16 tensors in place
 * (gpt_map_bf16_tensor, e.g. a read-only mapping of a bf16 safetensors
 * file): those are registered with the backend directly and skipped by the
 * copy, and since both buffers are lazily zeroed mappings their pages never
 * become private memory of the rank.
 *
 * Under LoRA the bf16 copy is registered as packable: the backend keeps the
 * frozen weights in oneDNN's own layout (reordered once) so the products
 * skip the per-call re-blocking. Lent tensors are not packed, so a shared
 * mapping stays shared. In full fine-tuning the weights change every step:
 * a packed copy would be remade each step, and at GPT-2 124M shapes it was
 * no faster than re-blocking per call while it cost twice the bf16 bytes
 * (4 micro-batches of 64 tokens: 1.62-1.69 s a step unpacked, 1.67-2.08 s
 * packed, 480 MB more), so full fine-tuning does not pack.
 *
 * Sharded master weights (gpt_shard_master): the fp32 values of a matrix
 * that only products read are held in the trainer's slice only, and the
 * trainer keeps the copy current (it rounds its own range and gathers the
 * rest), so the copy is never remade here from the fp32 buffer again.
 */
#include <stdlib.h>
#include <string.h>

#include "model/gpt_impl.h"

static const char *const PRECISION_NAMES[2] = {"fp32", "bf16"};

const char *gpt_precision_name(int precision) {
    return precision == GPT_PREC_BF16 ? PRECISION_NAMES[1] : PRECISION_NAMES[0];
}

int gpt_precision_parse(const char *name) {
    for (int i = 0; i < 2; i++)
        if (strcmp(name, PRECISION_NAMES[i]) == 0) return i;
    return -1;
}

int gpt_precision(const gpt_t *m) {
    return m->precision;
}

void gpt_impl_free_precision(gpt_t *m) {
    gemm_free(m->gemm);
    gpt_impl_free_lazy(m->params_bf16, m->n_params * sizeof(uint16_t));
    free(m->bf16_mapped);
    m->gemm = NULL;
    m->params_bf16 = NULL;
    m->bf16_mapped = NULL;
    m->master_sharded = 0;
}

int gpt_fp32_read(const gpt_t *m, int tensor) {
    const gpt_tensor_t *t = &m->ptensors[tensor];
    if (m->precision != GPT_PREC_BF16 || t->ndim != 2) return 1;
    const float *p = m->params + t->offset;
    return p == m->wte || p == m->wpe || p == m->embed;
}

static size_t clamp(size_t x, size_t lo, size_t hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

/* The range [*a, *b) of base tensor i whose fp32 values stay held with the
 * master weights sharded over [lo, hi), inside the tensor (empty: a == b,
 * at its start or end). */
static void held(const gpt_t *m, int i, size_t lo, size_t hi, size_t *a, size_t *b) {
    const gpt_tensor_t *t = &m->ptensors[i];
    size_t o = t->offset, e = o + gpt_tensor_numel(t);
    int all = gpt_fp32_read(m, i);
    *a = all ? o : clamp(lo, o, e);
    *b = all ? e : clamp(hi, *a, e);
}

int gpt_set_precision(gpt_t *m, int precision, cu_error_t *err) {
    if (precision != GPT_PREC_FP32 && precision != GPT_PREC_BF16)
        return cu_error_set(err, CU_EINVAL, "unknown precision %d", precision);
    if (precision == m->precision) return CU_OK;
    gpt_impl_free_precision(m);
    m->precision = GPT_PREC_FP32;
    if (precision == GPT_PREC_FP32) return CU_OK;
    int rc = gemm_create(&m->gemm, err);
    if (rc) return rc;
    m->params_bf16 = gpt_impl_alloc_lazy(m->n_params * sizeof(uint16_t), err);
    if (!m->params_bf16) {
        gpt_impl_free_precision(m);
        return cu_error_prefix(err, "the bf16 weights");
    }
    rc =
        gemm_add_bf16_packed(m->gemm, m->params, m->params_bf16, m->n_params, m->lora.enabled, err);
    if (rc) {
        gpt_impl_free_precision(m);
        return rc;
    }
    m->precision = GPT_PREC_BF16;
    m->bf16_stale = 1;
    return CU_OK;
}

int gpt_impl_sync_precision(gpt_t *m, cu_error_t *err) {
    if (m->precision != GPT_PREC_BF16) return CU_OK;
    /* with sharded master weights the trainer keeps the copy current itself
     * (gpt_shard_master): the backend only learns that it changed */
    int remake = m->bf16_stale && !m->master_sharded;
    if (remake && !m->bf16_mapped) {
        gemm_to_bf16(m->params_bf16, m->params, m->n_params);
    } else if (remake) {
        for (int i = 0; i < m->n_ptensors; i++) {
            const gpt_tensor_t *t = &m->ptensors[i];
            if (!m->bf16_mapped[i])
                gemm_to_bf16(m->params_bf16 + t->offset, m->params + t->offset,
                             gpt_tensor_numel(t));
        }
    }
    if (m->bf16_stale) gemm_bf16_changed(m->gemm);
    m->bf16_stale = 0;
    return gemm_status(m->gemm, err);
}

int gpt_map_bf16_tensor(gpt_t *m, int tensor, const uint16_t *bf16, cu_error_t *err) {
    if (m->precision != GPT_PREC_BF16 || !m->lora.enabled)
        return cu_error_set(err, CU_EINVAL, "a mapped bf16 base needs bf16 and LoRA");
    if (tensor < 0 || tensor >= m->n_ptensors)
        return cu_error_set(err, CU_EINVAL, "no base tensor %d", tensor);
    if (!m->bf16_mapped && !(m->bf16_mapped = calloc((size_t)m->n_ptensors, 1)))
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    const gpt_tensor_t *t = &m->ptensors[tensor];
    int rc = gemm_add_bf16(m->gemm, m->params + t->offset, bf16, gpt_tensor_numel(t), err);
    if (rc) return rc;
    m->bf16_mapped[tensor] = 1;
    return CU_OK;
}

int gpt_shard_master(gpt_t *m, size_t lo, size_t hi, size_t *kept, cu_error_t *err) {
    if (m->precision != GPT_PREC_BF16 || m->lora.enabled)
        return cu_error_set(err, CU_EINVAL, "sharded master weights need bf16 full fine-tuning");
    if (lo > hi || hi > m->n_params)
        return cu_error_set(err, CU_EINVAL, "master range [%zu, %zu) outside %zu weights", lo, hi,
                            m->n_params);
    *kept = 0;
    /* tensor by tensor: each one's bf16 copy made from its whole fp32
     * values, then the part not held given back, so the copy's pages come
     * as the released ones go and the peak stays the fp32 buffer's */
    for (int i = 0; i < m->n_ptensors; i++) {
        const gpt_tensor_t *t = &m->ptensors[i];
        size_t a, b, o = t->offset, e = o + gpt_tensor_numel(t);
        gemm_to_bf16(m->params_bf16 + o, m->params + o, e - o);
        held(m, i, lo, hi, &a, &b);
        *kept += b - a;
        cu_zero_release(m->params + o, (a - o) * sizeof(float));
        cu_zero_release(m->params + b, (e - b) * sizeof(float));
    }
    m->master_sharded = 1;
    m->bf16_stale = 0;
    gemm_bf16_changed(m->gemm);
    return gemm_status(m->gemm, err);
}

void gpt_bf16_round(gpt_t *m, size_t lo, size_t hi) {
    if (m->params_bf16 && hi > lo) gemm_to_bf16(m->params_bf16 + lo, m->params + lo, hi - lo);
}

uint16_t *gpt_bf16_params(gpt_t *m) {
    return m->params_bf16;
}

void gpt_params_updated(gpt_t *m) {
    m->bf16_stale = 1;
}

const char *gpt_gemm_kernel(const gpt_t *m) {
    return gemm_kernel_name(m->gemm);
}

int gpt_gemm_status(const gpt_t *m, cu_error_t *err) {
    return gemm_status(m->gemm, err);
}
