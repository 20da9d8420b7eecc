/* Matrix products of the forward pass (runtime/model/matmul.c). */
#ifndef NB_MATMUL_H
#define NB_MATMUL_H

#include "runtime/model/forward.h"
#include "runtime/model/pool.h"

#include <stdint.h>

/* out[i][r] = w[r] . x[i] for i < m: one product of a batch. a is set by
 * nb_mm_ready (the input quantized for w's group size). */
struct nb_mm_job {
	float *out; /* [m][rows of w] */
	const struct nb_tensor *w;
	const struct nb_qact *a;
};

/* Runs fn on the pool, or on the calling thread when there is none. */
void nb_fwd_parallel(struct nb_fwd *f, nb_pool_fn fn, void *arg);

/* Up to three products that share one input x [m][cols] (q/k/v, gate/up) in
 * one pool run. Each quantized weight gets x quantized for its own group
 * size, once per size and call, unless ready holds it already. */
void nb_mm_ready(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
		 const struct nb_mm_job *jobs, const struct nb_qact *ready);
void nb_mm(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
	   const struct nb_mm_job *jobs);
void nb_mm1(struct nb_fwd *f, float *out, const struct nb_tensor *w, const float *x, uint32_t m);

/* f->act: a buffer of f->max_batch rows of up to cols columns for each
 * group size of the quantized types, so an image may mix any of them. The
 * buffer of a group the model does not have is never written (a large one
 * is a mapping never faulted in). */
int nb_mm_acts_open(struct nb_fwd *f, uint32_t cols);
void nb_mm_acts_close(struct nb_fwd *f);

/* The activation buffer of w's group size, shaped for m rows of its input;
 * NULL for a float w. */
struct nb_qact *nb_mm_act_for(struct nb_fwd *f, const struct nb_tensor *w, uint32_t m);

/* gate [m][k] = silu(gate) * up on the pool, and, when a is not NULL,
 * quantized into a (nb_mm_act_for of the down projection) in the same run:
 * each thread quantizes the blocks it has just computed. */
void nb_mm_swiglu(struct nb_fwd *f, float *gate, const float *up, uint32_t m, uint32_t k,
		  struct nb_qact *a);

#endif
