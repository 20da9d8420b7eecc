/* The forward pass of a bound model (runtime/model/model.h), for a batch of
 * tokens at once: rows may belong to different sequences (each with its own
 * KV cache) at different positions, which is what continuous batching and
 * prompt processing need. Matrix products go through the kernel dispatch
 * table: float32 weights in the reference float path, quantized weights
 * through the integer kernels, split over a thread pool. Every output is
 * computed wholly by one thread in a fixed order, so neither the number of
 * threads nor the batch a token runs in changes a single bit. */
#ifndef NB_FORWARD_H
#define NB_FORWARD_H

#include "kernels/quant.h"
#include "runtime/model/kv.h"
#include "runtime/model/model.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_pool;
struct nb_kernels;

/* One thread's share of a matrix product: row quads lo | hi << 32. */
struct nb_fwd_range {
	_Alignas(64) _Atomic uint64_t lo_hi;
};

struct nb_fwd_opts {
	uint32_t max_ctx;   /* longest context of any nb_kv run through it */
	uint32_t max_batch; /* rows per nb_fwd_batch call; 0 = 64 */
	struct nb_pool *pool;             /* NULL: the calling thread only */
	const struct nb_kernels *kernels; /* NULL: the best this CPU runs */
	bool no_kv0;        /* every row brings its own cache: no kv0 (nb_fwd_token and
			     * nb_fwd_prompt then fail with -NB_EINVAL) */
};

/* Scratch for batches of up to max_batch rows, allocated once by
 * nb_fwd_open, so the token loop neither allocates nor makes syscalls.
 * q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim. */
struct nb_fwd {
	const struct nb_model *m;
	const struct nb_kernels *kern;
	struct nb_pool *pool;
	uint32_t max_ctx, max_batch, n_threads;
	struct nb_kv kv0;   /* the sequence of nb_fwd_token / nb_fwd_prompt (unless no_kv0) */
	float *x;           /* [max_batch][dim] residual stream */
	float *xb;          /* [max_batch][max(dim, q_dim)] normed input, attention output */
	float *xb2;         /* [max_batch][dim] projection output before the residual add */
	float *q;           /* [max_batch][q_dim] */
	float *k;           /* [max_batch][kv_dim] keys of this batch, then cached */
	float *v;           /* [max_batch][kv_dim] */
	float *hb;          /* [max_batch][hidden] silu(gate) * up */
	float *hb2;         /* [max_batch][hidden] up */
	float *att;         /* [n_threads][4 (max_ctx + head_dim)] attention scratch */
	float *logits;      /* [max_batch][vocab] */
	double *inv_freq;   /* [head_dim / 2] RoPE frequency of each pair, scaling applied */
	float *rope_cos;    /* [max_batch][head_dim / 2] */
	float *rope_sin;    /* [max_batch][head_dim / 2] */
	struct nb_qact act[NB_QTYPE_COUNT]; /* quantized activations, one per group size
					      * (runtime/model/matmul.c); group 0: unused */
	struct nb_kv **row_kv;   /* [max_batch] the cache of each row of a batch */
	struct nb_fwd_range *ranges; /* [n_threads] of the matrix product running */
	void *mem;          /* the one allocation behind the float buffers */
	/* Optional (NULL): sees the input x [cols] of every matrix product row
	 * with its weight, before the product. Calibration of the quantizers
	 * (AWQ, GPTQ) collects activations through it. */
	void (*capture)(void *arg, const struct nb_tensor *w, const float *x);
	void *capture_arg;
};

/* Opens a context with its own KV cache (kv0) of max_ctx positions, on
 * the calling thread, with the best kernels for this CPU. */
int nb_fwd_open(struct nb_fwd *f, const struct nb_model *m, uint32_t max_ctx);
int nb_fwd_open_opts(struct nb_fwd *f, const struct nb_model *m, const struct nb_fwd_opts *o);
/* NULL-safe, idempotent. */
void nb_fwd_close(struct nb_fwd *f);

/* Runs n <= max_batch tokens: row i is token tokens[i] at position pos[i]
 * of the sequence kv[i] (kv NULL, or kv[i] NULL: the context's kv0;
 * -NB_EINVAL if it was opened with no_kv0). A
 * sequence's cache must hold its positions < pos[i], from earlier calls or
 * earlier rows of this one. Logits are computed for the rows with want[i]
 * != 0 (want NULL: the last row only) and *logits points to them as
 * [n_wanted][vocab] in row order, valid until the next call. Checks every
 * token and position before running any. */
int nb_fwd_batch(struct nb_fwd *f, uint32_t n, const int32_t *tokens, const uint32_t *pos,
		 struct nb_kv *const *kv, const uint8_t *want, float **logits);

/* Runs token at position pos of kv0 (which must hold positions 0..pos-1)
 * and points *logits at the [vocab] output. -NB_EINVAL for a token outside
 * the vocabulary, -NB_ERANGE for pos >= max_ctx. */
int nb_fwd_token(struct nb_fwd *f, int32_t token, uint32_t pos, float **logits);

/* Runs tokens[0..n) at positions pos0.. of kv0, in batches of max_batch,
 * and returns the logits of the last. */
int nb_fwd_prompt(struct nb_fwd *f, const int32_t *tokens, size_t n, uint32_t pos0,
		  float **logits);

#endif
