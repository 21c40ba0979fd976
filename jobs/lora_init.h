/*
 * Adapters initialised from the base weights they adapt (lora.init: pissa |
 * olora), computed on the job's ScaLAPACK process grid (mpi/grid.h).
 *
 * Both start training from A0, B0 with the frozen base replaced by the
 * residual W - s B0 A0 (s the adapter scale), so the model computes exactly
 * the base's function at step 0. Conventions, as PEFT implements them:
 *   pissa  W (out, in) = U S V^T; A0 = diag(sqrt(S_r / s)) V_r^T (r, in),
 *          B0 = U_r diag(sqrt(S_r / s)) (out, r): s B0 A0 is the best rank-r
 *          approximation of W.
 *   olora  W = Q R (thin Householder QR of W itself, LAPACK's signs);
 *          B0 = Q[:, :r] (out, r), A0 = R[:r, :] (r, in), not divided by s.
 * A0 and B0 are stored with the trained adapters (group /lora_init of
 * checkpoints and final.h5), so a resumed job (on any number of ranks)
 * rebuilds the residual from the original base instead of factorising again,
 * and an export can turn the adapter into plain LoRA against the original
 * base: s (B A - B0 A0) = s [B | -B0] [A ; A0].
 */
#ifndef CU_JOBS_LORA_INIT_H
#define CU_JOBS_LORA_INIT_H

#include "core/error.h"
#include "model/gpt.h"
#include "mpi/grid.h"

/* lora.init is pissa or olora. */
int lora_init_from_weights(const char *init);

/* Writes A0, B0 of every adapter into the model's adapter buffer from the
 * (original) base weights. Collective over the grid; identical bits on
 * every rank. */
int lora_init_factorise(gpt_t *m, cu_grid_t *g, const char *init, cu_error_t *err);

/* Base weight W = W + scale B A for every adapted linear, with adapters
 * lora laid out as gpt_lora_tensors: a merged export folds the trained
 * adapters in (scale = the adapter scale s), a PiSSA/OLoRA job's residual
 * is W - s B0 A0 (scale = -s). Each element sums its r products in double,
 * in a fixed order, and is rounded once, so the same inputs give the same
 * bits whatever the rank count or BLAS threads. */
int lora_fold(gpt_t *m, const float *lora, double scale, cu_error_t *err);

#endif
