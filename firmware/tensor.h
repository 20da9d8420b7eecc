/* Tensors and hyper-parameters as the image stores them: the vocabulary
 * shared by the image format (firmware/), the model (runtime/model/) and the
 * host tools, so that none of them needs to include the others. */
#ifndef NB_TENSOR_H
#define NB_TENSOR_H

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

/* Model families (firmware/arch.h describes each). The numbers are the
 * image format: never reuse one. */
enum nb_arch {
	NB_ARCH_LLAMA = 1, /* RMSNorm, RoPE, GQA attention, SwiGLU MLP */
};

/* What a layer adds to Llama's (nb_hparams.features), each with the
 * optional tensors it binds (runtime/model/model.h). Bits are the image
 * format: never reuse one. */
enum nb_feature {
	NB_FEAT_QKV_BIAS = 1u << 0, /* q, k, v products plus a bias (Qwen2) */
	NB_FEAT_QK_NORM = 1u << 1,  /* RMSNorm of every q and k head before RoPE (Qwen3) */
	NB_FEAT_ALL = (1u << 2) - 1,
};

/* The activation of the gated MLP's gate (nb_hparams.activation). */
enum nb_act {
	NB_ACT_SILU = 0,      /* SwiGLU: silu(gate) * up */
	NB_ACT_GELU_TANH = 1, /* GeGLU: gelu(gate) * up, tanh approximation (Gemma) */
	NB_ACT_COUNT = 2,
};

enum nb_rope_scaling {
	NB_ROPE_SCALING_NONE = 0,
	NB_ROPE_SCALING_LLAMA3 = 1, /* frequency-dependent scaling of Llama 3.1 */
};

/* Hyper-parameters. RoPE is always applied in the interleaved-pair layout
 * (x[2i], x[2i+1]) of llama2.c and GGUF; importers of rotate-half
 * checkpoints (HF) permute the rows of wq and wk to it.
 *
 * The layer is Llama's; features, activation, norm_offset and embed_scale
 * say how a family's differs. They are stored in the image (zero in images
 * older than them, which is Llama), so the runtime computes what the image
 * says whatever its family: a family made of known pieces needs no runtime
 * change. */
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
	uint32_t features;   /* enum nb_feature bits */
	uint32_t activation; /* enum nb_act */
	float norm_offset;   /* RMSNorm scales by (norm_offset + w): 0, or 1 for Gemma's (1 + w) */
	float embed_scale;   /* embeddings are multiplied by it; 0: not scaled */
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

/* 0 if the hyper-parameters are self-consistent and within the limits a
 * board can run, else -NB_EFORMAT, or -NB_ENOTSUP for a family, feature or
 * activation this build does not know (names the problem through the
 * logger). */
int nb_hparams_check(const struct nb_hparams *hp);

#endif
