/* Hyper-parameter checks: what an image or an importer may hand the model. */
#include "firmware/tensor.h"

#include "firmware/arch.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>
#include <stdio.h>

/* Each bound is a little above the largest model of any supported family
 * (Llama 3.1 405B: dim 16384, hidden 53248, 126 layers, 128 heads; Gemma 3:
 * head_dim 256, vocabulary 262144; Qwen2.5-1M: a context of 1010000), so
 * every checkpoint the importers take passes, while a corrupted header
 * (one flipped byte of seq_len 512 is 16712192) fails here rather than as
 * a 20 GB KV cache. They also keep the products the runtime forms (tensor
 * sizes, scratch buffers) far from overflowing 64 bits. */
#define NB_MAX_DIM (1u << 14)
#define NB_MAX_HIDDEN (1u << 16) /* NB_KERNEL_MAX_K: the k of every matrix product */
#define NB_MAX_LAYERS 256u
#define NB_MAX_HEADS 256u
#define NB_MAX_HEAD_DIM 512u
#define NB_MAX_VOCAB (1u << 20)
#define NB_MAX_SEQ_LEN (1u << 20)
#define NB_MAX_NORM_EPS 1e-2f
#define NB_MAX_ROPE_THETA 1e10f /* 3.6e9 in a 1M-context Llama 3 fine-tune */
#define NB_MAX_ROPE_FACTOR 1024.0f
#define NB_MAX_EMBED_SCALE 1024.0f

static int check_u32(const char *field, uint32_t v, uint32_t max)
{
	if (v == 0 || v > max) {
		nb_err("hparams: %s = %u, must be in 1..%u", field, v, max);
		return -NB_EFORMAT;
	}
	return 0;
}

/* min < v <= max, finite */
static int check_f32(const char *field, float v, float min, float max)
{
	if (!(v > min && v <= max)) {
		nb_err("hparams: %s = %g, must be in (%g, %g]", field, (double)v, (double)min,
		       (double)max);
		return -NB_EFORMAT;
	}
	return 0;
}

static int check_llama3_scaling(const struct nb_hparams *hp)
{
	int err;

	if ((err = check_f32("rope_factor", hp->rope_factor, 0.0f, NB_MAX_ROPE_FACTOR)) ||
	    (err = check_f32("rope_low_freq_factor", hp->rope_low_freq_factor, 0.0f,
			     NB_MAX_ROPE_FACTOR)) ||
	    (err = check_f32("rope_high_freq_factor", hp->rope_high_freq_factor, 0.0f,
			     NB_MAX_ROPE_FACTOR)) ||
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

static int check_rope(const struct nb_hparams *hp)
{
	int err = check_f32("rope_theta", hp->rope_theta, 1.0f, NB_MAX_ROPE_THETA);

	if (err)
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

static int check_shapes(const struct nb_hparams *hp)
{
	int err;

	if ((err = check_u32("dim", hp->dim, NB_MAX_DIM)) ||
	    (err = check_u32("hidden_dim", hp->hidden_dim, NB_MAX_HIDDEN)) ||
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
	/* q_dim is the k of the output projection. */
	if ((uint64_t)hp->n_heads * hp->head_dim > NB_MAX_HIDDEN) {
		nb_err("hparams: n_heads * head_dim = %llu exceeds %u",
		       (unsigned long long)hp->n_heads * hp->head_dim, NB_MAX_HIDDEN);
		return -NB_EFORMAT;
	}
	return 0;
}

/* The family and the pieces of its layer. */
static int check_layer_kind(const struct nb_hparams *hp)
{
	if (!nb_arch_get(hp->arch)) {
		char names[128];

		nb_arch_list(names, sizeof(names));
		nb_err("hparams: unknown architecture %u (this build runs %s)", hp->arch, names);
		return -NB_ENOTSUP;
	}
	if (hp->features & ~(uint32_t)NB_FEAT_ALL) {
		nb_err("hparams: unknown layer features %#x", hp->features & ~(uint32_t)NB_FEAT_ALL);
		return -NB_ENOTSUP;
	}
	if (hp->activation >= NB_ACT_COUNT) {
		nb_err("hparams: unknown activation %u", hp->activation);
		return -NB_ENOTSUP;
	}
	if (hp->norm_offset != 0.0f && hp->norm_offset != 1.0f) {
		nb_err("hparams: norm_offset = %g, must be 0 or 1", (double)hp->norm_offset);
		return -NB_EFORMAT;
	}
	if (hp->embed_scale != 0.0f)
		return check_f32("embed_scale", hp->embed_scale, 0.0f, NB_MAX_EMBED_SCALE);
	return 0;
}

int nb_hparams_check(const struct nb_hparams *hp)
{
	int err;

	if ((err = check_layer_kind(hp)) || (err = check_shapes(hp)))
		return err;
	if (hp->tied_embeddings > 1) {
		nb_err("hparams: tied_embeddings = %u, must be 0 or 1", hp->tied_embeddings);
		return -NB_EFORMAT;
	}
	if ((err = check_f32("norm_eps", hp->norm_eps, 0.0f, NB_MAX_NORM_EPS)))
		return err;
	return check_rope(hp);
}
