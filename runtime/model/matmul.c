/* Matrix products of the forward pass on the thread pool: activation
 * quantization for each weight's group size, the split of row quads over
 * the threads by work stealing, and SwiGLU fused with the quantization of
 * the down projection's input. Every output is computed wholly by one
 * thread in the order kernels/quant.h defines, so neither the split nor the
 * batch changes a bit. */
#include "runtime/model/matmul.h"

#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "runtime/base/err.h"
#include "runtime/model/pool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* gate [m][k] = silu(gate) * up, and, when a is not NULL, quantized into a
 * for the down projection in the same pass: each thread quantizes the
 * blocks it has just computed, which saves a pool run and a pass over the
 * hidden vector per layer. */
struct swiglu_job {
	const struct nb_kernels *kern;
	float *gate;
	const float *up;
	uint32_t m, k;
	struct nb_qact *a;
	struct nb_pool_work blocks; /* of the quantization group, else of 16 floats */
};

/* Blocks of a chunk: 16 blocks of 32 floats, 64 bytes of scales. */
#define SWIGLU_CHUNK 16

static void swiglu_worker(void *arg, unsigned ith, unsigned nth)
{
	struct swiglu_job *j = arg;
	const struct nb_kernels *kern = j->kern;
	const uint32_t G = j->a ? j->a->group : 16, per_row = (j->k + G - 1) / G;
	uint64_t b0, b1;
	(void)ith;
	(void)nth;

	while (nb_pool_claim(&j->blocks, &b0, &b1)) {
		for (uint64_t b = b0; b < b1; b++) {
			const size_t row = (size_t)(b / per_row) * j->k, c0 = (size_t)(b % per_row) * G;
			const size_t c1 = c0 + G < j->k ? c0 + G : j->k;
			kern->silu_mul(j->gate + row + c0, j->up + row + c0, c1 - c0);
		}
		if (j->a)
			nb_quant_act_blocks(j->a, j->gate, b0, b1);
	}
}

struct matmul {
	struct nb_fwd *f;
	const float *x;           /* [m][cols] float input (F32 weights) */
	uint32_t m, n_jobs;
	struct nb_mm_job jobs[3];
	uint64_t quads;           /* row quads of all jobs, end to end */
};

static void matmul_rows_f32(const struct matmul *mm, const struct nb_mm_job *j, uint64_t r0,
			    uint64_t r1)
{
	const size_t rows = (size_t)j->w->shape[0], cols = (size_t)j->w->shape[1];
	const float *wf = j->w->data;

	for (uint32_t i = 0; i < mm->m; i++)
		for (uint64_t r = r0; r < r1; r++)
			j->out[i * rows + r] = v4_dot(wf + r * cols, mm->x + (size_t)i * cols, cols);
}

/* Rows [4 q0, 4 q1) of the jobs laid end to end, clipped to each job. */
static void matmul_quads(const struct matmul *mm, uint64_t q0, uint64_t q1)
{
	uint64_t base = 0;

	for (uint32_t t = 0; t < mm->n_jobs && q0 < q1; t++) {
		const struct nb_mm_job *j = &mm->jobs[t];
		uint64_t rows = j->w->shape[0], nq = (rows + NB_QROWS - 1) / NB_QROWS;
		uint64_t a = q0 - base, b = (q1 < base + nq ? q1 : base + nq) - base;

		if (q0 < base + nq) {
			uint64_t r0 = a * NB_QROWS, r1 = b * NB_QROWS < rows ? b * NB_QROWS : rows;
			if (j->w->type == NB_DTYPE_F32)
				matmul_rows_f32(mm, j, r0, r1);
			else
				nb_kernels_mm_q(mm->f->kern, j->out, (size_t)rows, j->a, j->w->type,
						j->w->data, rows, r0, r1);
			q0 = base + b;
		}
		base += nq;
	}
}

/* Each thread streams a contiguous range of row quads of its own, front to
 * back, a few quads per grab, and a thread done with its own range moves
 * the back half of what is left of another's into its own. So a thread's
 * weights are one sequential stream, which its prefetch runs ahead on
 * across grabs: handing out chunks of one shared range (guided
 * self-scheduling) starts many streams per thread on each matrix, each
 * start a memory latency. Stealing keeps the threads
 * finishing together however the memory system or the hypervisor favours
 * one core. A range is one atomic word, lo | hi << 32 (quads of a product
 * are far below 2^32), changed by CAS, but for the owner refilling its
 * empty range, which no one else touches. Every row is computed whole by
 * one thread: the split does not change a bit. */
#define MATMUL_GRAB_QUADS 8

static uint64_t range_word(uint64_t lo, uint64_t hi)
{
	return lo | hi << 32;
}

/* [*b, *e): up to MATMUL_GRAB_QUADS from the front of r. */
static bool take_front(_Atomic uint64_t *r, uint64_t *b, uint64_t *e)
{
	uint64_t w = atomic_load_explicit(r, memory_order_relaxed), lo, hi;

	do {
		lo = (uint32_t)w;
		hi = w >> 32;
		if (lo >= hi)
			return false;
		*b = lo;
		*e = hi - lo > MATMUL_GRAB_QUADS ? lo + MATMUL_GRAB_QUADS : hi;
	} while (!atomic_compare_exchange_weak_explicit(r, &w, range_word(*e, hi),
							 memory_order_relaxed, memory_order_relaxed));
	return true;
}

/* [*b, *e): the back half (rounded up) of the fullest range but mine. */
static bool steal(struct nb_fwd_range *ranges, unsigned ith, unsigned nth, uint64_t *b,
		  uint64_t *e)
{
	for (;;) {
		uint64_t most = 0, w = 0, lo, hi;
		unsigned victim = nth;

		for (unsigned v = 0; v < nth; v++) {
			uint64_t x = atomic_load_explicit(&ranges[v].lo_hi, memory_order_relaxed);
			if (v != ith && (uint32_t)x < x >> 32 && (x >> 32) - (uint32_t)x > most) {
				most = (x >> 32) - (uint32_t)x;
				victim = v;
				w = x;
			}
		}
		if (victim == nth)
			return false;
		lo = (uint32_t)w;
		hi = w >> 32;
		*b = hi - (hi - lo + 1) / 2;
		*e = hi;
		if (atomic_compare_exchange_weak_explicit(&ranges[victim].lo_hi, &w,
							  range_word(lo, *b), memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

static void matmul_worker(void *arg, unsigned ith, unsigned nth)
{
	struct matmul *mm = arg;
	struct nb_fwd_range *ranges = mm->f->ranges;
	uint64_t b, e;

	for (;;) {
		while (take_front(&ranges[ith].lo_hi, &b, &e))
			matmul_quads(mm, b, e);
		if (!steal(ranges, ith, nth, &b, &e))
			return;
		/* mine now, front first, and open to thieves in turn */
		atomic_store_explicit(&ranges[ith].lo_hi, range_word(b, e), memory_order_relaxed);
	}
}

void nb_fwd_parallel(struct nb_fwd *f, nb_pool_fn fn, void *arg)
{
	if (f->pool)
		nb_pool_share(f->pool, fn, arg);
	else
		fn(arg, 0, 1);
}

struct quant_job {
	struct nb_qact *a;
	const float *x;
	struct nb_pool_work blocks;
};

/* Blocks of a chunk: 64 bytes of scales. */
#define QUANT_CHUNK 16

static void quant_worker(void *arg, unsigned ith, unsigned nth)
{
	struct quant_job *q = arg;
	uint64_t b0, b1;
	(void)ith;
	(void)nth;

	while (nb_pool_claim(&q->blocks, &b0, &b1))
		nb_quant_act_blocks(q->a, q->x, b0, b1);
}

/* The buffer of group size G in f->act, NULL if none (every group of a
 * quantized type has one: nb_mm_acts_open). */
static struct nb_qact *act_of_group(struct nb_fwd *f, uint32_t G)
{
	for (size_t i = 0; i < NB_QTYPE_COUNT; i++)
		if (f->act[i].group == G)
			return &f->act[i];
	return NULL;
}

int nb_mm_acts_open(struct nb_fwd *f, uint32_t cols)
{
	size_t n = 0;

	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++) {
		const uint32_t G = nb_qinfo(t)->group;
		if (act_of_group(f, G))
			continue;
		if (nb_qact_alloc(&f->act[n], f->max_batch, cols, G, f->kern->act_flags))
			return -NB_ENOMEM;
		f->act[n++].quant_block = f->kern->quant_block;
	}
	return 0;
}

void nb_mm_acts_close(struct nb_fwd *f)
{
	for (size_t i = 0; i < NB_QTYPE_COUNT; i++)
		nb_qact_free(&f->act[i]);
}

/* The activation buffer for w's group size, shaped for m rows of its
 * input; NULL for a float w. */
struct nb_qact *nb_mm_act_for(struct nb_fwd *f, const struct nb_tensor *w, uint32_t m)
{
	struct nb_qact *a;

	if (w->type == NB_DTYPE_F32)
		return NULL;
	a = act_of_group(f, nb_qinfo(w->type)->group);
	nb_quant_act_prepare(a, m, (uint32_t)w->shape[1]);
	return a;
}

/* x [m][cols] quantized into the buffer of w's group size, its blocks
 * split over the pool (each block is independent: same bits). */
static const struct nb_qact *quantize_input(struct nb_fwd *f, const struct nb_tensor *w,
					    const float *x, uint32_t m)
{
	struct quant_job q = { nb_mm_act_for(f, w, m), x, { 0 } };

	nb_pool_work_init(&q.blocks, (uint64_t)m * (q.a->kp / q.a->group), QUANT_CHUNK);
	nb_fwd_parallel(f, quant_worker, &q);
	return q.a;
}

/* Every matrix product of the model comes through here. The jobs share the
 * input x [m][cols]; each quantized job gets it quantized for its own group
 * size (an image may mix formats), once per size and call, unless the
 * caller has (ready: x quantized already, for its group). */
void nb_mm_ready(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
			 const struct nb_mm_job *jobs, const struct nb_qact *ready)
{
	struct matmul mm = { .f = f, .x = x, .m = m, .n_jobs = n_jobs };
	const struct nb_qact *by_slot[NB_QTYPE_COUNT] = { NULL }; /* x quantized, per f->act */

	if (ready)
		by_slot[act_of_group(f, ready->group) - f->act] = ready;

	for (uint32_t t = 0; t < n_jobs; t++) {
		mm.jobs[t] = jobs[t];
		mm.quads += (jobs[t].w->shape[0] + NB_QROWS - 1) / NB_QROWS;
		if (jobs[t].w->type != NB_DTYPE_F32) {
			size_t s = (size_t)(act_of_group(f, nb_qinfo(jobs[t].w->type)->group) - f->act);
			if (!by_slot[s])
				by_slot[s] = quantize_input(f, jobs[t].w, x, m);
			mm.jobs[t].a = by_slot[s];
		}
		if (f->capture)
			for (uint32_t i = 0; i < m; i++)
				f->capture(f->capture_arg, jobs[t].w, x + (size_t)i * jobs[t].w->shape[1]);
	}
	for (unsigned i = 0; i < f->n_threads; i++) {
		uint64_t lo, hi;
		nb_pool_split(mm.quads, i, f->n_threads, &lo, &hi);
		atomic_store_explicit(&f->ranges[i].lo_hi, range_word(lo, hi), memory_order_relaxed);
	}
	nb_fwd_parallel(f, matmul_worker, &mm);
}

void nb_mm(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
		   const struct nb_mm_job *jobs)
{
	nb_mm_ready(f, x, m, n_jobs, jobs, NULL);
}

void nb_mm1(struct nb_fwd *f, float *out, const struct nb_tensor *w, const float *x,
		    uint32_t m)
{
	const struct nb_mm_job j = { out, w, NULL };
	nb_mm(f, x, m, 1, &j);
}


void nb_mm_swiglu(struct nb_fwd *f, float *gate, const float *up, uint32_t m, uint32_t k,
		  struct nb_qact *a)
{
	struct swiglu_job sj = { f->kern, gate, up, m, k, a, { 0 } };
	const uint32_t G = a ? a->group : 16;

	nb_pool_work_init(&sj.blocks, (uint64_t)m * ((k + G - 1) / G), SWIGLU_CHUNK);
	nb_fwd_parallel(f, swiglu_worker, &sj);
}
