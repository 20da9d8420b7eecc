/* What a model is, independent of where its bytes live (an mmapped image,
 * or a checkpoint being imported on the host): hyper-parameters and tensor
 * views. The forward pass (runtime/forward.c) only sees these. */
#ifndef NB_MODEL_H
#define NB_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Tensor element types. The numbers are the image format: never reuse one.
 * 16..63 are reserved for the quantized block types of kernels/quant.h. */
enum nb_dtype {
	NB_DTYPE_F32 = 0,
	NB_DTYPE_F16 = 1,  /* import only: converted to F32 */
	NB_DTYPE_BF16 = 2, /* import only: converted to F32 */
	NB_DTYPE_COUNT_FLOAT = 3,
};

enum nb_arch {
	NB_ARCH_LLAMA = 1, /* RMSNorm, RoPE, GQA attention, SwiGLU MLP */
};

enum nb_rope_scaling {
	NB_ROPE_SCALING_NONE = 0,
	NB_ROPE_SCALING_LLAMA3 = 1, /* frequency-dependent scaling of Llama 3.1 */
};

/* Hyper-parameters. RoPE is always applied in the interleaved-pair layout
 * (x[2i], x[2i+1]) of llama2.c and GGUF; importers of rotate-half
 * checkpoints (HF) permute the rows of wq and wk to it. */
struct nb_hparams {
	uint32_t arch;       /* enum nb_arch */
	uint32_t dim;        /* model width */
	uint32_t hidden_dim; /* MLP width */
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads; /* < n_heads: grouped-query attention */
	uint32_t head_dim;   /* usually dim / n_heads */
	uint32_t vocab_size;
	uint32_t seq_len;    /* longest context the model was trained for */
	uint32_t tied_embeddings; /* 1: output matrix is token_embd */
	float norm_eps;
	float rope_theta;
	uint32_t rope_scaling; /* enum nb_rope_scaling */
	float rope_factor;
	float rope_low_freq_factor;
	float rope_high_freq_factor;
	uint32_t rope_orig_ctx;
};

/* A view of one tensor. shape[0] is the slowest-varying dimension: a
 * weight matrix is shape {rows = out features, cols = in features}, each
 * row contiguous (PyTorch order; GGUF's ne[] is the reverse). */
struct nb_tensor {
	const char *name;
	uint32_t type; /* enum nb_dtype or a kernels/quant.h type */
	uint32_t ndim;
	uint64_t shape[4];
	const void *data;
	uint64_t size; /* bytes */
};

/* Canonical tensor names (those of GGUF), with layer index N:
 *   token_embd.weight      {vocab, dim}
 *   blk.N.attn_norm.weight {dim}
 *   blk.N.attn_q.weight    {n_heads * head_dim, dim}
 *   blk.N.attn_k.weight    {n_kv_heads * head_dim, dim}
 *   blk.N.attn_v.weight    {n_kv_heads * head_dim, dim}
 *   blk.N.attn_output.weight {dim, n_heads * head_dim}
 *   blk.N.ffn_norm.weight  {dim}
 *   blk.N.ffn_gate.weight  {hidden, dim}   (w1)
 *   blk.N.ffn_up.weight    {hidden, dim}   (w3)
 *   blk.N.ffn_down.weight  {dim, hidden}   (w2)
 *   output_norm.weight     {dim}
 *   output.weight          {vocab, dim}    (absent when tied_embeddings)
 */
#define NB_TENSOR_NAME_MAX 64

/* 0 if the hyper-parameters are self-consistent and within the limits a
 * board can run (names the problem through the logger), else -NB_EFORMAT. */
int nb_hparams_check(const struct nb_hparams *hp);

/* The shape a canonical tensor must have under hp ({rows, cols} or {n});
 * -NB_ENOENT if name is not one of the architecture's (a layer index out of
 * range, or "output.weight" when the embeddings are tied). */
int nb_model_tensor_shape(const struct nb_hparams *hp, const char *name, uint32_t *ndim,
			  uint64_t shape[4]);

/* One transformer block; q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim. */
struct nb_layer {
	const struct nb_tensor *attn_norm; /* {dim} */
	const struct nb_tensor *wq;        /* {q_dim, dim} */
	const struct nb_tensor *wk;        /* {kv_dim, dim} */
	const struct nb_tensor *wv;        /* {kv_dim, dim} */
	const struct nb_tensor *wo;        /* {dim, q_dim} */
	const struct nb_tensor *ffn_norm;  /* {dim} */
	const struct nb_tensor *w_gate;    /* {hidden, dim} */
	const struct nb_tensor *w_up;      /* {hidden, dim} */
	const struct nb_tensor *w_down;    /* {dim, hidden} */
};

/* A bound model: checked hyper-parameters and pointers into the caller's
 * tensor array (which must outlive it). */
struct nb_model {
	struct nb_hparams hp;
	const struct nb_tensor *token_embd;  /* {vocab, dim} */
	struct nb_layer *layers;             /* [n_layers], owned */
	const struct nb_tensor *output_norm; /* {dim} */
	const struct nb_tensor *output;      /* {vocab, dim}; == token_embd when tied */
};

void nb_model_init(struct nb_model *m);
/* m: initialized (nb_model_init) or freed. Checks hp, finds every
 * canonical tensor in tensors[0..n) and checks its type, shape and byte
 * size; names the first one missing or wrong. Other names are ignored. */
int nb_model_bind(struct nb_model *m, const struct nb_hparams *hp, const struct nb_tensor *tensors,
		  size_t n);
/* NULL-safe, idempotent. */
void nb_model_free(struct nb_model *m);

#endif
