/*
 * The compute precision of the model object (gpt.h): in bf16 the base
 * weights get a bf16 copy that the matrix-product backend (gemm.h) reads in
 * place of the fp32 ones. The fp32 buffer stays what loaders, checkpoints
 * and (in full fine-tuning) the optimizer write, so the copy is marked
 * stale whenever a writable pointer to it is handed out and remade at the
 * start of the next forward.
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
    free(m->params_bf16);
    m->gemm = NULL;
    m->params_bf16 = NULL;
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
    m->params_bf16 = malloc(m->n_params * sizeof(uint16_t));
    if (!m->params_bf16) {
        gpt_impl_free_precision(m);
        return cu_error_set(err, CU_ENOMEM, "out of memory for the bf16 weights (%.1f MB)",
                            (double)m->n_params * 2.0 / 1e6);
    }
    rc = gemm_add_bf16(m->gemm, m->params, m->params_bf16, m->n_params, err);
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
    if (m->bf16_stale) {
        gemm_to_bf16(m->params_bf16, m->params, m->n_params);
        m->bf16_stale = 0;
    }
    return gemm_status(m->gemm, err);
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
