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
 * The bf16 copy is registered as packable: the backend keeps the frozen
 * weights in oneDNN's own layout (reordered once, again after each change)
 * so the products skip the per-call re-blocking. Lent tensors are not
 * packed, so a shared mapping stays shared.
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
    rc = gemm_add_bf16_packed(m->gemm, m->params, m->params_bf16, m->n_params, 1, err);
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
    if (m->bf16_stale && !m->bf16_mapped) {
        gemm_to_bf16(m->params_bf16, m->params, m->n_params);
    } else if (m->bf16_stale) {
        for (int i = 0; i < m->n_ptensors; i++) {
            const gpt_tensor_t *t = &m->ptensors[i];
            if (!m->bf16_mapped[i])
                gemm_to_bf16(m->params_bf16 + t->offset, m->params + t->offset, gpt_impl_numel(t));
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
    int rc = gemm_add_bf16(m->gemm, m->params + t->offset, bf16, gpt_impl_numel(t), err);
    if (rc) return rc;
    m->bf16_mapped[tensor] = 1;
    return CU_OK;
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
