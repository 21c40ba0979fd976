/*
 * A decoder-only transformer with optional LoRA adapters, of one of two
 * architectures:
 *  - GPT-2: learned positions, pre-LayerNorm blocks, GELU-tanh MLP, token
 *    embedding tied to the output head (gpt.c);
 *  - Llama: rotary positions, pre-RMSNorm blocks, grouped-query attention,
 *    SwiGLU MLP, no biases, output head tied or not (llama.c).
 *
 * Memory is a few contiguous buffers, so zeroing, reducing and saving are one
 * call over one span each:
 *   params      every base weight, in the order of gpt_param_names()
 *   lora        every adapter matrix A (r, in) and B (out, r), layer by layer
 *   trainable   = lora when LoRA is enabled, else params (full fine-tuning)
 *   grads       same length as trainable
 *
 * With LoRA the base weights are frozen: the backward computes no gradient
 * for them and stops below the lowest trainable tensor.
 */
#ifndef CU_MODEL_GPT_H
#define CU_MODEL_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"

/* Architectures of the model object. */
enum { GPT_ARCH_GPT2 = 0, GPT_ARCH_LLAMA = 1, GPT_ARCH_STARCODER2 = 2, GPT_N_ARCHS = 3 };

typedef struct {
    int n_layer, n_head, n_embd, vocab_size, max_seq_len;
    int arch; /* GPT_ARCH_*; 0 (GPT-2) when not set */
    /* Llama and StarCoder2 (GPT-2 ignores them); 0 takes the default in brackets */
    int n_kv_head;      /* key/value heads, divides n_head [n_head] */
    int head_dim;       /* Llama's block: width of one head [n_embd / n_head]; q_proj
                           is (n_head * head_dim, n_embd), o_proj its transpose */
    int ffn_hidden;     /* SwiGLU width [4 * n_embd] */
    float rope_theta;   /* rotary base [10000] */
    float norm_eps;     /* RMSNorm epsilon [1e-5] */
    int tie_embeddings; /* output head is the token embedding */
    /* Llama-block variants of the Hugging Face families (llama_family.c);
     * all 0 for plain Llama */
    int qkv_bias;                        /* q/k/v projections carry biases (Qwen2) */
    int sliding_window;                  /* a position attends to the last W, itself included;
                                            0 = all (Mistral) */
    int rope_type;                       /* GPT_ROPE_*: how rope_theta's frequencies are scaled */
    float rope_factor;                   /* linear and llama3: frequencies divided by it */
    float rope_low_freq, rope_high_freq; /* llama3's low/high_freq_factor */
    int rope_orig_max;                   /* llama3's original_max_position_embeddings */
} gpt_config_t;

/* Rotary frequency scaling, as Hugging Face's rope_scaling.rope_type. */
enum { GPT_ROPE_DEFAULT = 0, GPT_ROPE_LINEAR = 1, GPT_ROPE_LLAMA3 = 2 };

/* The linear layers of a block that LoRA can adapt, in the order data flows:
 * GPT-2's four, Llama's seven. A model's sites are numbered
 * layer * gpt_n_targets(arch) + target. */
enum { LORA_QKV = 0, LORA_ATTN_PROJ = 1, LORA_MLP_FC = 2, LORA_MLP_PROJ = 3, LORA_N_TARGETS = 4 };
enum {
    LLAMA_Q = 0,
    LLAMA_K = 1,
    LLAMA_V = 2,
    LLAMA_O = 3,
    LLAMA_GATE = 4,
    LLAMA_UP = 5,
    LLAMA_DOWN = 6,
    LLAMA_N_TARGETS = 7
};
/* StarCoder2's six: attention as Llama's, a two-linear GELU MLP. */
enum { SC2_Q = 0, SC2_K = 1, SC2_V = 2, SC2_O = 3, SC2_FC = 4, SC2_PROJ = 5, SC2_N_TARGETS = 6 };
#define LORA_MAX_TARGETS 7

typedef struct {
    int enabled;
    unsigned targets; /* bit (1 << LORA_*) per adapted layer */
    int r;
    float alpha;
    int rslora;        /* scale = alpha / sqrt(r) instead of alpha / r */
    float dropout;     /* on the adapter's input, training only */
    int init_gaussian; /* A ~ N(0, 1/r) instead of kaiming-uniform */
} lora_config_t;

/* Parses a target name into target bits for an architecture: GPT-2's
 * "qkv", "attn_proj", "mlp_fc", "mlp_proj"; Llama's "q_proj", "k_proj",
 * "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"; StarCoder2's
 * "q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"; "all-linear"
 * for every one. Returns 0 for a name the architecture does not have. */
unsigned lora_target_bits(int arch, const char *name);
const char *lora_target_name(int arch, int target);
/* The names of the targets in bits, "a, b, c" (last_sep before the last
 * one, e.g. ", " or " and "), into buf. */
void lora_target_list(int arch, unsigned bits, const char *last_sep, char *buf, size_t cap);
/* The target's module path inside a block, in Hugging Face's naming
 * ("attn.c_attn", "self_attn.q_proj"). */
const char *lora_target_module(int arch, int target);
int gpt_n_targets(int arch);
/* "gpt2" / "llama" / "starcoder2"; gpt_arch_parse returns -1 for an unknown name. */
const char *gpt_arch_name(int arch);
int gpt_arch_parse(const char *name);
/* Width of one attention head: head_dim when set, else n_embd / n_head. */
int gpt_head_size(const gpt_config_t *c);
/* Input and output width of a target's linear layer. */
void gpt_target_dims(const gpt_config_t *c, int target, int *in, int *out);

/* One named tensor inside a buffer. */
typedef struct {
    char name[64];
    size_t offset; /* in floats from the buffer's start */
    int ndim;
    int shape[2];
    int decay; /* weight decay applies (matrices, not biases or norms) */
} gpt_tensor_t;

/* A tensor's number of values. */
static inline size_t gpt_tensor_numel(const gpt_tensor_t *t) {
    return (size_t)t->shape[0] * (size_t)(t->ndim == 2 ? t->shape[1] : 1);
}

typedef struct {
    double loss_sum; /* summed over valid targets */
    long n_valid;    /* targets >= 0 */
    long n_correct;  /* argmax == target */
} gpt_loss_t;

typedef struct gpt gpt_t;

/* Allocates the model (base weights zero) and, if lora->enabled, its adapters. */
int gpt_create(gpt_t **out, const gpt_config_t *cfg, const lora_config_t *lora, cu_error_t *err);
void gpt_free(gpt_t *m);

const gpt_config_t *gpt_config(const gpt_t *m);
const lora_config_t *gpt_lora_config(const gpt_t *m);
/* The factor adapters are applied with: alpha / r, or alpha / sqrt(r) with rslora. */
float gpt_lora_scale(const gpt_t *m);

/* GPT-2's initialisation: N(0, std) weights, residual projections (GPT-2's
 * c_proj, Llama's o_proj and down_proj) scaled by 1/sqrt(2 L), zero biases,
 * unit norm gains. */
void gpt_init_weights(gpt_t *m, uint64_t seed, float std);
/* LoRA's initialisation: A kaiming-uniform (or gaussian), B zero. */
void gpt_init_lora(gpt_t *m, uint64_t seed);

float *gpt_params(gpt_t *m, size_t *n);
const gpt_tensor_t *gpt_param_tensors(const gpt_t *m, int *n);
float *gpt_lora_params(gpt_t *m, size_t *n); /* NULL without LoRA */
const gpt_tensor_t *gpt_lora_tensors(const gpt_t *m, int *n);
float *gpt_trainable(gpt_t *m, size_t *n);
float *gpt_grads(gpt_t *m, size_t *n);
const gpt_tensor_t *gpt_trainable_tensors(const gpt_t *m, int *n);
void gpt_zero_grad(gpt_t *m);

/* Sizes the activation buffers for micro-batches of B sequences of T tokens. */
int gpt_reserve(gpt_t *m, int B, int T, cu_error_t *err);

/* Forward pass. inputs (B, T) token ids; targets (B, T) next-token ids or -1
 * to ignore, may be NULL (then no loss). With train != 0, LoRA dropout is
 * active (masks drawn from dropout_key) and the head's gradient, scaled by
 * grad_scale, is prepared for gpt_backward. Token ids must be < vocab_size. */
int gpt_forward(gpt_t *m, const int32_t *inputs, const int32_t *targets, int B, int T, int train,
                float grad_scale, uint64_t dropout_key, gpt_loss_t *loss, cu_error_t *err);
/* The global index of the first token row of the next training forwards.
 * Dropout masks are drawn per (dropout_key, site, global row, column), so
 * the same global batch gets the same masks however it is split into
 * micro-batches and ranks. Default 0. */
void gpt_set_dropout_row0(gpt_t *m, uint64_t row0);

/* Called during gpt_backward with a range of the gradient buffer (in
 * floats) once nothing more will be added to it in this backward, last
 * layer first, so a caller can start reducing it while lower layers are
 * still computing. Every range of the buffer is reported exactly once per
 * backward. NULL (the default) turns reporting off. */
typedef void (*gpt_grad_ready_fn)(void *ctx, size_t offset, size_t count);
void gpt_set_grad_ready(gpt_t *m, gpt_grad_ready_fn fn, void *ctx);

/* Backward of the last training forward: grads += d(grad_scale * loss). */
void gpt_backward(gpt_t *m);

/* After a forward: logits of rows [row0, row0 + n) of the B*T positions. */
void gpt_logits(gpt_t *m, int row0, int n, float *logits /* (n, V) */);

/* Single-sequence inference with a KV cache. gpt_kv_reset starts a new
 * sequence; gpt_kv_step feeds one token at the next position and writes the
 * logits for the position after it. Uses adapters unmerged. */
int gpt_kv_reserve(gpt_t *m, int max_len, cu_error_t *err);
void gpt_kv_reset(gpt_t *m);
int gpt_kv_step(gpt_t *m, int32_t token, float *logits /* (V) */, cu_error_t *err);
int gpt_kv_len(const gpt_t *m);

/* Precision of the products with base weights (gemm.h). fp32: OpenBLAS,
 * the default. bf16: the base weights get a bf16 copy (made before the next
 * forward, and again after any call that hands out a writable pointer to
 * them: gpt_params, and gpt_trainable in full fine-tuning, whose fp32 buffer
 * stays the master copy), and the forward and input-gradient products run on
 * oneDNN with fp32 accumulation; LoRA, norms, attention, softmax, the loss
 * and every gradient stay fp32. */
enum { GPT_PREC_FP32 = 0, GPT_PREC_BF16 = 1 };
int gpt_set_precision(gpt_t *m, int precision, cu_error_t *err);
int gpt_precision(const gpt_t *m);
/* Lends the base tensor number `tensor` (of gpt_param_tensors) in bf16:
 * the backend reads bf16 (numel values, the tensor's layout) in place from
 * then on, e.g. from a read-only mapping of a bf16 safetensors file shared
 * by every rank of a node; not owned, must outlive the model's use. The
 * tensor's fp32 values are then neither read nor converted (leave them
 * unwritten: their pages then never become private). Only for a frozen base:
 * bf16 precision (set first) and LoRA; gpt_set_precision forgets it. */
int gpt_map_bf16_tensor(gpt_t *m, int tensor, const uint16_t *bf16, cu_error_t *err);
/* "fp32" / "bf16"; gpt_precision_parse returns -1 for anything else. */
const char *gpt_precision_name(int precision);
int gpt_precision_parse(const char *name);
/* Tells the model its fp32 base weights were written through a pointer
 * obtained earlier (an optimizer step in full fine-tuning), so the bf16 copy
 * is remade before the next forward. */
void gpt_params_updated(gpt_t *m);

/* Sharded master weights (bf16 full fine-tuning, train.shard_optimizer):
 * in bf16 the model reads most matrices only through their bf16 copy, so a
 * rank that updates only [lo, hi) of the trainable buffer need not hold the
 * rest of their fp32 values.
 *
 * gpt_fp32_read: whether the model reads base tensor `tensor`'s fp32 values
 * itself (always in fp32; in bf16 the vectors and the embedding tables,
 * which are looked up row by row, not the matrices of products).
 *
 * gpt_shard_master: bf16 full fine-tuning only. Brings the bf16 copy up to
 * date from the whole fp32 buffer, then gives back the pages of every
 * matrix the model does not read in fp32 outside [lo, hi) (they read as
 * zero from then on) and sets *kept to the number of fp32 values still
 * held. From then on the caller keeps the copy whole: after an update of
 * [lo, hi) it rounds that range (gpt_bf16_round), gathers the other ranks'
 * ranges into gpt_bf16_params and their values of the tensors read in fp32
 * into the fp32 buffer; the model no longer remakes the copy itself
 * (gpt_params_updated then only says that it changed). */
int gpt_fp32_read(const gpt_t *m, int tensor);
int gpt_shard_master(gpt_t *m, size_t lo, size_t hi, size_t *kept, cu_error_t *err);
void gpt_bf16_round(gpt_t *m, size_t lo, size_t hi);
/* The bf16 copy of the base weights (n_params values), NULL in fp32. */
uint16_t *gpt_bf16_params(gpt_t *m);
/* What computes the products: "OpenBLAS sgemm (fp32)" or oneDNN's kernel. */
const char *gpt_gemm_kernel(const gpt_t *m);
/* The first failure inside the backend since the model was made (CU_OK if
 * none): a forward or backward whose products failed computed zeros. */
int gpt_gemm_status(const gpt_t *m, cu_error_t *err);

/* bf16 only: batches of sequences of at least T tokens run attention's
 * products in bf16 as well (model/attention_bf16.h: batched over the heads
 * on oneDNN); shorter ones keep the fp32 attention, which is as fast or
 * faster there (docs/performance.md). T <= 0: the default,
 * GPT_ATT16_FROM_T; 1: every batch (tests). */
#define GPT_ATT16_FROM_T 256
void gpt_set_bf16_attention_from(gpt_t *m, int T);

/* Activation checkpointing: the forward keeps each block's input only and
 * the backward recomputes the block before going through it, so activation
 * memory is one block's plus L block inputs. Bit for bit the same losses and
 * gradients. Takes effect at the next gpt_reserve (the activation buffers
 * are released). */
void gpt_set_activation_checkpointing(gpt_t *m, int on);
int gpt_activation_checkpointing(const gpt_t *m);

/* Floating-point operations of one forward+backward on B x T tokens, for
 * throughput figures: counts the matrix products actually performed (no
 * weight gradients for frozen weights). */
double gpt_flops_per_step(const gpt_t *m, int B, int T);

#endif
