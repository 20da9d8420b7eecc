/* Hyper-parameter checks: what an image or an importer may hand the model. */
#include "firmware/tensor.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>

/* Generous limits, far above any model a board runs, but low enough that
 * the products the runtime forms from them (tensor sizes, scratch buffers)
 * stay far from overflowing 64 bits and an absurd header fails here
 * instead of in a terabyte allocation. */
#define NB_MAX_DIM (1u << 16)       /* also NB_KERNEL_MAX_K: k of every matmul */
#define NB_MAX_LAYERS 1024u
#define NB_MAX_HEADS 1024u
#define NB_MAX_HEAD_DIM 1024u
#define NB_MAX_VOCAB (1u << 24)
#define NB_MAX_SEQ_LEN (1u << 24)

static int check_u32(const char *field, uint32_t v, uint32_t max)
{
	if (v == 0 || v > max) {
		nb_err("hparams: %s = %u, must be in 1..%u", field, v, max);
		return -NB_EFORMAT;
	}
	return 0;
}

static int check_pos(const char *field, float v)
{
	if (!isfinite(v) || v <= 0.0f) {
		nb_err("hparams: %s = %g, must be finite and > 0", field, (double)v);
		return -NB_EFORMAT;
	}
	return 0;
}

static int check_llama3_scaling(const struct nb_hparams *hp)
{
	int err;

	if ((err = check_pos("rope_factor", hp->rope_factor)) ||
	    (err = check_pos("rope_low_freq_factor", hp->rope_low_freq_factor)) ||
	    (err = check_pos("rope_high_freq_factor", hp->rope_high_freq_factor)) ||
	    (err = check_u32("rope_orig_ctx", hp->rope_orig_ctx, NB_MAX_SEQ_LEN)))
		return err;
	/* The smoothing between the two bands divides by their difference. */
	if (!(hp->rope_high_freq_factor > hp->rope_low_freq_factor)) {
		nb_err("hparams: rope_high_freq_factor %g must exceed rope_low_freq_factor %g",
		       (double)hp->rope_high_freq_factor, (double)hp->rope_low_freq_factor);
		return -NB_EFORMAT;
	}
	return 0;
}

int nb_hparams_check(const struct nb_hparams *hp)
{
	int err;

	if (hp->arch != NB_ARCH_LLAMA) {
		nb_err("hparams: unknown architecture %u", hp->arch);
		return -NB_EFORMAT;
	}
	if ((err = check_u32("dim", hp->dim, NB_MAX_DIM)) ||
	    (err = check_u32("hidden_dim", hp->hidden_dim, NB_MAX_DIM)) ||
	    (err = check_u32("n_layers", hp->n_layers, NB_MAX_LAYERS)) ||
	    (err = check_u32("n_heads", hp->n_heads, NB_MAX_HEADS)) ||
	    (err = check_u32("n_kv_heads", hp->n_kv_heads, hp->n_heads)) ||
	    (err = check_u32("head_dim", hp->head_dim, NB_MAX_HEAD_DIM)) ||
	    (err = check_u32("vocab_size", hp->vocab_size, NB_MAX_VOCAB)) ||
	    (err = check_u32("seq_len", hp->seq_len, NB_MAX_SEQ_LEN)))
		return err;
	if (hp->n_heads % hp->n_kv_heads != 0) {
		nb_err("hparams: n_heads %u is not a multiple of n_kv_heads %u", hp->n_heads,
		       hp->n_kv_heads);
		return -NB_EFORMAT;
	}
	if (hp->head_dim % 2 != 0) {
		nb_err("hparams: head_dim %u is odd; RoPE rotates pairs", hp->head_dim);
		return -NB_EFORMAT;
	}
	/* q_dim is the k of the output projection: same limit as dim. */
	if ((uint64_t)hp->n_heads * hp->head_dim > NB_MAX_DIM) {
		nb_err("hparams: n_heads * head_dim = %llu exceeds %u",
		       (unsigned long long)hp->n_heads * hp->head_dim, NB_MAX_DIM);
		return -NB_EFORMAT;
	}
	if (hp->tied_embeddings > 1) {
		nb_err("hparams: tied_embeddings = %u, must be 0 or 1", hp->tied_embeddings);
		return -NB_EFORMAT;
	}
	if ((err = check_pos("norm_eps", hp->norm_eps)) ||
	    (err = check_pos("rope_theta", hp->rope_theta)))
		return err;
	switch (hp->rope_scaling) {
	case NB_ROPE_SCALING_NONE:
		return 0;
	case NB_ROPE_SCALING_LLAMA3:
		return check_llama3_scaling(hp);
	default:
		nb_err("hparams: unknown rope_scaling %u", hp->rope_scaling);
		return -NB_EFORMAT;
	}
}

