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

/* 0 if the hyper-parameters are self-consistent and within the limits a
 * board can run (names the problem through the logger), else -NB_EFORMAT. */
int nb_hparams_check(const struct nb_hparams *hp);

#endif
