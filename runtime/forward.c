/* Forward pass of the Llama architecture (llama2.c run.c order) over a
 * batch of rows: RMSNorm, attention with RoPE and grouped-query heads,
 * SwiGLU MLP. The matrix products -- nearly all of the time -- run on the
 * thread pool through the kernel dispatch table, and so does attention,
 * split over (row, up to four query heads of one KV head); the rest is
 * cheap and runs on the calling thread. */
#include "runtime/forward.h"

#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "runtime/err.h"
#include "runtime/log.h"
#include "runtime/pool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define DEFAULT_BATCH 64

/* ---- building blocks ---------------------------------------------------- */

/* out[dim] = row token of the embedding table {vocab, dim}. */
static void embed(float *out, const struct nb_tensor *e, int32_t token)
{
	size_t dim = (size_t)e->shape[1];

	if (e->type == NB_DTYPE_F32)
		memcpy(out, (const float *)e->data + (size_t)token * dim, dim * sizeof(*out));
	else
		nb_quant_dequant_row(e->type, e->data, dim, (uint64_t)token, out);
}

/* out[n] = x[n] / rms(x) * w[n]; out may alias x. */
static void rmsnorm(float *out, const float *x, const struct nb_tensor *w, size_t n, float eps)
{
	const float *wf = w->data; /* norm weights are always float32 */
	float ss = v4_dot(x, x, n) / (float)n + eps;
	float scale = 1.0f / sqrtf(ss);
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = wf[i] * (scale * x[i]);
}

static void add(float *x, const float *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		x[i] += y[i];
}

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
};

static void swiglu_worker(void *arg, unsigned ith, unsigned nth)
{
	const struct swiglu_job *j = arg;
	const struct nb_kernels *kern = j->kern;
	/* blocks of the quantization group, else any size: 16 floats */
	const uint32_t G = j->a ? j->a->group : 16, per_row = (j->k + G - 1) / G;
	uint64_t b0, b1;

	nb_pool_split((uint64_t)j->m * per_row, ith, nth, &b0, &b1);
	for (uint64_t b = b0; b < b1; b++) {
		const size_t row = (size_t)(b / per_row) * j->k, c0 = (size_t)(b % per_row) * G;
		const size_t c1 = c0 + G < j->k ? c0 + G : j->k;
		kern->silu_mul(j->gate + row + c0, j->up + row + c0, c1 - c0);
	}
	if (j->a)
		nb_quant_act_blocks(j->a, j->gate, b0, b1);
}

/* ---- matrix products ---------------------------------------------------- */

/* out[i][r] = w[r] . x[i] for the rows of up to three weights that share
 * one input (q/k/v, gate/up), in one pool run. */
struct matmul_job {
	float *out;               /* [m][rows] */
	const struct nb_tensor *w;
	const struct nb_qact *a;  /* the input quantized for w's group (matmul() sets it) */
};

struct matmul {
	struct nb_fwd *f;
	const float *x;           /* [m][cols] float input (F32 weights) */
	uint32_t m, n_jobs;
	struct matmul_job jobs[3];
	uint64_t quads;           /* row quads of all jobs, end to end */
};

static void matmul_rows_f32(const struct matmul *mm, const struct matmul_job *j, uint64_t r0,
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
		const struct matmul_job *j = &mm->jobs[t];
		uint64_t rows = j->w->shape[0], nq = (rows + NB_QROWS - 1) / NB_QROWS;
		uint64_t a = q0 - base, b = (q1 < base + nq ? q1 : base + nq) - base;

		if (q0 < base + nq) {
			uint64_t r0 = a * NB_QROWS, r1 = b * NB_QROWS < rows ? b * NB_QROWS : rows;
			if (j->w->type == NB_DTYPE_F32)
				matmul_rows_f32(mm, j, r0, r1);
			else
				mm->f->kern->mm_q(j->out, (size_t)rows, j->a, j->w->type, j->w->data,
						  rows, r0, r1);
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
 * self-scheduling) started ~20 streams per thread on each 2048-row
 * matrix, each start a memory latency, and those matrices streamed at
 * 44 GB/s here against 53 for the large ones. Stealing keeps the threads
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

static void parallel(struct nb_fwd *f, nb_pool_fn fn, void *arg)
{
	if (f->pool)
		nb_pool_run(f->pool, fn, arg);
	else
		fn(arg, 0, 1);
}

struct quant_job {
	struct nb_qact *a;
	const float *x;
};

static void quant_worker(void *arg, unsigned ith, unsigned nth)
{
	const struct quant_job *q = arg;
	uint64_t b0, b1, n = (uint64_t)q->a->m * (q->a->kp / q->a->group);

	nb_pool_split(n, ith, nth, &b0, &b1);
	nb_quant_act_blocks(q->a, q->x, b0, b1);
}

/* The activation buffer for w's group size, shaped for m rows of its
 * input; NULL for a float w. */
static struct nb_qact *act_for(struct nb_fwd *f, const struct nb_tensor *w, uint32_t m)
{
	struct nb_qact *a;

	if (w->type == NB_DTYPE_F32)
		return NULL;
	a = &f->act[nb_qinfo(w->type)->group == 32 ? 0 : 1];
	nb_quant_act_prepare(a, m, (uint32_t)w->shape[1]);
	return a;
}

/* x [m][cols] quantized into the buffer of w's group size, its blocks
 * split over the pool (each block is independent: same bits). */
static const struct nb_qact *quantize_input(struct nb_fwd *f, const struct nb_tensor *w,
					    const float *x, uint32_t m)
{
	struct quant_job q = { act_for(f, w, m), x };

	parallel(f, quant_worker, &q);
	return q.a;
}

/* Every matrix product of the model comes through here. The jobs share the
 * input x [m][cols]; each quantized job gets it quantized for its own group
 * size (an image may mix formats), once per size and call, unless the
 * caller has (ready: x quantized already, for its group). */
static void matmul_ready(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
			 const struct matmul_job *jobs, const struct nb_qact *ready)
{
	struct matmul mm = { .f = f, .x = x, .m = m, .n_jobs = n_jobs };
	const struct nb_qact *by_group[2] = { NULL, NULL }; /* group 32, group 128 */

	if (ready)
		by_group[ready->group == 32 ? 0 : 1] = ready;

	for (uint32_t t = 0; t < n_jobs; t++) {
		mm.jobs[t] = jobs[t];
		mm.quads += (jobs[t].w->shape[0] + NB_QROWS - 1) / NB_QROWS;
		if (jobs[t].w->type != NB_DTYPE_F32) {
			int g = nb_qinfo(jobs[t].w->type)->group == 32 ? 0 : 1;
			if (!by_group[g])
				by_group[g] = quantize_input(f, jobs[t].w, x, m);
			mm.jobs[t].a = by_group[g];
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
	parallel(f, matmul_worker, &mm);
}

static void matmul(struct nb_fwd *f, const float *x, uint32_t m, uint32_t n_jobs,
		   const struct matmul_job *jobs)
{
	matmul_ready(f, x, m, n_jobs, jobs, NULL);
}

static void matmul1(struct nb_fwd *f, float *out, const struct nb_tensor *w, const float *x,
		    uint32_t m)
{
	const struct matmul_job j = { out, w, NULL };
	matmul(f, x, m, 1, &j);
}

/* ---- rotary position embedding ---------------------------------------- */

/* Llama 3.1: frequencies whose wavelength exceeds the original context are
 * slowed down by rope_factor, short ones kept, those between blended. */
static double llama3_scale(const struct nb_hparams *hp, double freq)
{
	const double pi = 3.14159265358979323846;
	double wavelen = 2.0 * pi / freq;
	double low_wavelen = hp->rope_orig_ctx / (double)hp->rope_low_freq_factor;
	double high_wavelen = hp->rope_orig_ctx / (double)hp->rope_high_freq_factor;
	double smooth;

	if (wavelen < high_wavelen)
		return freq;
	if (wavelen > low_wavelen)
		return freq / hp->rope_factor;
	smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
		 ((double)hp->rope_high_freq_factor - hp->rope_low_freq_factor);
	return (1.0 - smooth) * freq / hp->rope_factor + smooth * freq;
}

/* inv_freq[i] = theta^(-2i / head_dim), in float64 like the reference: a
 * float32 angle pos * freq loses low bits at long positions. */
static void rope_init(struct nb_fwd *f)
{
	const struct nb_hparams *hp = &f->m->hp;
	uint32_t i;

	for (i = 0; i < hp->head_dim / 2; i++) {
		f->inv_freq[i] = pow((double)hp->rope_theta, -2.0 * i / hp->head_dim);
		if (hp->rope_scaling == NB_ROPE_SCALING_LLAMA3)
			f->inv_freq[i] = llama3_scale(hp, f->inv_freq[i]);
	}
}

/* The rotation of row b's position, shared by every head of every layer. */
static void rope_angles(struct nb_fwd *f, uint32_t b, uint32_t pos)
{
	const uint32_t half = f->m->hp.head_dim / 2;

	for (uint32_t i = 0; i < half; i++) {
		double angle = (double)pos * f->inv_freq[i];

		f->rope_cos[b * half + i] = (float)cos(angle);
		f->rope_sin[b * half + i] = (float)sin(angle);
	}
}

/* Rotates the pairs (x[2i], x[2i+1]) of each of n_heads heads x[n_heads][head_dim]. */
static void rope(const struct nb_fwd *f, uint32_t b, float *x, uint32_t n_heads)
{
	const size_t hd = f->m->hp.head_dim, half = hd / 2;
	const float *cs = f->rope_cos + b * half, *sn = f->rope_sin + b * half;

	for (size_t h = 0; h < n_heads; h++) {
		float *v = x + h * hd;

		for (size_t i = 0; i < half; i++) {
			float c = cs[i], s = sn[i];
			float v0 = v[2 * i], v1 = v[2 * i + 1];

			v[2 * i] = v0 * c - v1 * s;
			v[2 * i + 1] = v0 * s + v1 * c;
		}
	}
}

/* ---- attention --------------------------------------------------------- */

/* The cache is head-major, [n_layers][n_kv_heads][max_ctx][head_dim]: the
 * keys (values) one head reads are one contiguous stream. The weights
 * evict them from the caches each token, and read row by row in a
 * [pos][kv_dim] layout they were 256-byte pieces 1 KiB apart (TinyLlama),
 * which the prefetchers followed poorly: attention took 10.8% of decode
 * at positions 128-330 (TinyLlama, 2 threads), 8.2% head-major. */
static float *kv_at(const struct nb_kv *kv, float *cache, const struct nb_hparams *hp,
		    uint32_t layer, uint32_t head, uint32_t pos)
{
	return cache + (((size_t)layer * hp->n_kv_heads + head) * kv->max_ctx + pos) * hp->head_dim;
}

/* Floats of one thread's attention scratch (kernels.h's attend). */
#define ATTN_SCRATCH(max_ctx, head_dim) (4 * ((uint64_t)(max_ctx) + (head_dim)))

struct attn {
	struct nb_fwd *f;
	uint32_t n, layer;
	const uint32_t *pos;
	struct nb_kv *const *kv;
};

/* Attention goes to the kernel table in units of up to four query heads
 * of one KV head (the kernel's width): TinyLlama's 32 query heads over 4
 * KV heads make 8 units per row. */
#define ATTN_UNIT_HEADS 4

static uint32_t units_per_kv_head(const struct nb_hparams *hp)
{
	const uint32_t group = hp->n_heads / hp->n_kv_heads;

	return (group + ATTN_UNIT_HEADS - 1) / ATTN_UNIT_HEADS;
}

/* xb[b][h] = softmax(q_h . k_t / sqrt(head_dim)) over t <= pos, weighting
 * v_t, for the query heads of unit u of row b. */
static void attend(struct nb_fwd *f, const struct nb_kv *kv, uint32_t layer, uint32_t b,
		   uint32_t u, uint32_t pos, float *scratch)
{
	const struct nb_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim, q_dim = (size_t)hp->n_heads * hd;
	const uint32_t group = hp->n_heads / hp->n_kv_heads, per_kv = units_per_kv_head(hp);
	const uint32_t kv_head = u / per_kv, first = (u % per_kv) * ATTN_UNIT_HEADS;
	const uint32_t h0 = kv_head * group + first;
	const uint32_t n_q = group - first < ATTN_UNIT_HEADS ? group - first : ATTN_UNIT_HEADS;
	const float *keys = kv_at(kv, kv->k, hp, layer, kv_head, 0);   /* [max_ctx][head_dim] */
	const float *values = kv_at(kv, kv->v, hp, layer, kv_head, 0); /* [max_ctx][head_dim] */
	const float *q = f->q + b * q_dim + h0 * hd;                /* [n_q][head_dim] */
	float *out = f->xb + b * (q_dim > hp->dim ? q_dim : hp->dim) + h0 * hd; /* [n_q][head_dim] */

	f->kern->attend(out, scratch, q, keys, values, (uint32_t)hd, n_q, pos + 1,
			1.0f / sqrtf((float)hd));
}

static void attn_worker(void *arg, unsigned ith, unsigned nth)
{
	const struct attn *a = arg;
	const struct nb_hparams *hp = &a->f->m->hp;
	const uint32_t units = hp->n_kv_heads * units_per_kv_head(hp);
	float *scratch = a->f->att + (size_t)ith * ATTN_SCRATCH(a->f->max_ctx, hp->head_dim);
	uint64_t t0, t1;

	if (a->n >= 2 * nth) {
		/* many rows (a prompt, or a batch of sequences): a row's work
		 * grows with its position, so rows are dealt round-robin, whole
		 * (a contiguous split left the thread with a prompt's later rows
		 * working while the others waited) */
		for (uint32_t b = ith; b < a->n; b += nth)
			for (uint32_t u = 0; u < units; u++)
				attend(a->f, a->kv[b], a->layer, b, u, a->pos[b], scratch);
		return;
	}
	/* decode: contiguous units, so that a thread's units share few KV
	 * heads and each KV head is read from memory once */
	nb_pool_split((uint64_t)a->n * units, ith, nth, &t0, &t1);
	for (uint64_t t = t0; t < t1; t++) {
		uint32_t b = (uint32_t)(t / units), u = (uint32_t)(t % units);
		attend(a->f, a->kv[b], a->layer, b, u, a->pos[b], scratch);
	}
}

/* ---- the model --------------------------------------------------------- */

static int check_rows(const struct nb_fwd *f, uint32_t n, const int32_t *tokens,
		      const uint32_t *pos, struct nb_kv *const *kv)
{
	if (!f->m) {
		nb_err("forward: context not open");
		return -NB_EINVAL;
	}
	if (n == 0 || n > f->max_batch) {
		nb_err("forward: batch of %u rows, this context takes 1..%u", n, f->max_batch);
		return -NB_EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct nb_kv *c = kv[i];
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= f->m->hp.vocab_size) {
			nb_err("forward: token %d outside the vocabulary 0..%u", (int)tokens[i],
			       f->m->hp.vocab_size - 1);
			return -NB_EINVAL;
		}
		if (pos[i] >= c->max_ctx || pos[i] >= f->max_ctx) {
			nb_err("forward: position %u beyond the context of %u", pos[i],
			       c->max_ctx < f->max_ctx ? c->max_ctx : f->max_ctx);
			return -NB_ERANGE;
		}
	}
	return 0;
}

static void store_kv(struct nb_fwd *f, struct nb_kv *const *kv, const uint32_t *pos,
		     uint32_t n, uint32_t layer)
{
	const struct nb_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim, kv_dim = (size_t)hp->n_kv_heads * hd;

	for (uint32_t b = 0; b < n; b++) {
		for (uint32_t h = 0; h < hp->n_kv_heads; h++) {
			memcpy(kv_at(kv[b], kv[b]->k, hp, layer, h, pos[b]), f->k + b * kv_dim + h * hd,
			       hd * sizeof(float));
			memcpy(kv_at(kv[b], kv[b]->v, hp, layer, h, pos[b]), f->v + b * kv_dim + h * hd,
			       hd * sizeof(float));
		}
	}
}

static void layer_forward(struct nb_fwd *f, uint32_t l, uint32_t n, const uint32_t *pos,
			  struct nb_kv *const *kv)
{
	const struct nb_hparams *hp = &f->m->hp;
	const struct nb_layer *ly = &f->m->layers[l];
	const size_t dim = hp->dim, hidden = hp->hidden_dim;
	const size_t q_dim = (size_t)hp->n_heads * hp->head_dim;
	const size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim;
	const size_t xb_dim = q_dim > dim ? q_dim : dim;
	const struct matmul_job qkv[3] = { { f->q, ly->wq, NULL }, { f->k, ly->wk, NULL },
					   { f->v, ly->wv, NULL } };
	const struct matmul_job gate_up[2] = { { f->hb, ly->w_gate, NULL }, { f->hb2, ly->w_up, NULL } };
	struct attn at = { f, n, l, pos, kv };

	/* attention block */
	for (uint32_t b = 0; b < n; b++) /* xb [n][dim] */
		rmsnorm(f->xb + b * dim, f->x + b * dim, ly->attn_norm, dim, hp->norm_eps);
	matmul(f, f->xb, n, 3, qkv); /* q [n][q_dim], k, v [n][kv_dim] */
	for (uint32_t b = 0; b < n; b++) {
		rope(f, b, f->q + b * q_dim, hp->n_heads);
		rope(f, b, f->k + b * kv_dim, hp->n_kv_heads);
	}
	store_kv(f, kv, pos, n, l);
	parallel(f, attn_worker, &at); /* xb [n][xb_dim], heads side by side */
	if (xb_dim != q_dim)           /* pack rows to [n][q_dim] for the product */
		for (uint32_t b = 1; b < n; b++)
			memmove(f->xb + b * q_dim, f->xb + b * xb_dim, q_dim * sizeof(float));
	matmul1(f, f->xb2, ly->wo, f->xb, n); /* xb2 [n][dim] */
	add(f->x, f->xb2, n * dim);

	/* MLP block: w_down(silu(w_gate x) * w_up x) */
	for (uint32_t b = 0; b < n; b++) /* xb [n][dim] */
		rmsnorm(f->xb + b * dim, f->x + b * dim, ly->ffn_norm, dim, hp->norm_eps);
	matmul(f, f->xb, n, 2, gate_up);        /* hb, hb2 [n][hidden] */
	{
		const struct matmul_job down = { f->xb2, ly->w_down, NULL };
		struct swiglu_job sj = { f->kern, f->hb, f->hb2, n, (uint32_t)hidden,
					 act_for(f, ly->w_down, n) };
		parallel(f, swiglu_worker, &sj); /* hb [n][hidden], quantized */
		matmul_ready(f, f->hb, n, 1, &down, sj.a); /* xb2 [n][dim] */
	}
	add(f->x, f->xb2, n * dim);
}

int nb_fwd_batch(struct nb_fwd *f, uint32_t n, const int32_t *tokens, const uint32_t *pos,
		 struct nb_kv *const *kv_in, const uint8_t *want, float **logits)
{
	struct nb_kv **kv = f->row_kv;
	const struct nb_model *m = f->m;
	const size_t dim = m ? m->hp.dim : 0;
	uint32_t n_want = 0;
	int err;

	if (!m || n == 0 || n > f->max_batch)
		return check_rows(f, n, tokens, pos, kv);
	for (uint32_t b = 0; b < n; b++)
		kv[b] = kv_in && kv_in[b] ? kv_in[b] : &f->kv0;
	err = check_rows(f, n, tokens, pos, kv);
	if (err)
		return err;
	for (uint32_t b = 0; b < n; b++) {
		embed(f->x + b * dim, m->token_embd, tokens[b]); /* x [n][dim] */
		rope_angles(f, b, pos[b]);
	}
	for (uint32_t l = 0; l < m->hp.n_layers; l++)
		layer_forward(f, l, n, pos, kv);

	/* final norm of the wanted rows, gathered in xb2 [n_want][dim] */
	for (uint32_t b = 0; b < n; b++) {
		if (want ? !want[b] : b != n - 1)
			continue;
		rmsnorm(f->xb2 + n_want * dim, f->x + b * dim, m->output_norm, dim, m->hp.norm_eps);
		n_want++;
	}
	if (n_want)
		matmul1(f, f->logits, m->output, f->xb2, n_want); /* logits [n_want][vocab] */
	*logits = f->logits;
	return 0;
}

int nb_fwd_token(struct nb_fwd *f, int32_t token, uint32_t pos, float **logits)
{
	return nb_fwd_batch(f, 1, &token, &pos, NULL, NULL, logits);
}

int nb_fwd_prompt(struct nb_fwd *f, const int32_t *tokens, size_t n, uint32_t pos0,
		  float **logits)
{
	uint32_t pos[DEFAULT_BATCH];
	size_t done = 0;
	int err = 0;

	if (!f->m) {
		nb_err("forward: context not open");
		return -NB_EINVAL;
	}
	if (n == 0) {
		nb_err("forward: empty prompt");
		return -NB_EINVAL;
	}
	if (pos0 >= f->max_ctx || n > f->max_ctx - pos0) {
		nb_err("forward: %zu tokens from position %u exceed the context of %u", n, pos0,
		       f->max_ctx);
		return -NB_ERANGE;
	}
	for (size_t i = 0; i < n; i++) {
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= f->m->hp.vocab_size) {
			nb_err("forward: token %d outside the vocabulary", (int)tokens[i]);
			return -NB_EINVAL;
		}
	}
	while (!err && done < n) {
		uint32_t chunk = (uint32_t)(n - done);
		uint32_t cap = f->max_batch < DEFAULT_BATCH ? f->max_batch : DEFAULT_BATCH;

		chunk = chunk < cap ? chunk : cap;
		for (uint32_t i = 0; i < chunk; i++)
			pos[i] = pos0 + (uint32_t)(done + i);
		err = nb_fwd_batch(f, chunk, tokens + done, pos, NULL, NULL, logits);
		done += chunk;
	}
	return err;
}

/* ---- KV cache and context ---------------------------------------------- */

uint64_t nb_kv_bytes(const struct nb_hparams *hp, uint32_t max_ctx)
{
	return 2ull * hp->n_layers * max_ctx * hp->n_kv_heads * hp->head_dim * sizeof(float);
}

/* The cache is faulted in whole when it is opened: left to fault as the
 * positions advance, each (layer, head) stream crossed into a new page
 * every 16 tokens (TinyLlama), 11 page faults per token, and a fault on
 * this VM cost ~14 us per layer of decode (2.4% of a token). A cache
 * larger than the memory available is refused with an error here, where
 * faulting it in would have the kernel kill the process, and lazily it
 * would do so in the middle of an answer. Huge pages where the kernel
 * gives them: 2 MiB aligned, advised. */
#define KV_ALIGN (2u << 20)

/* MemAvailable of /proc/meminfo in bytes; UINT64_MAX if unknown. */
static uint64_t mem_available(void)
{
	FILE *f = fopen("/proc/meminfo", "r");
	unsigned long long kb;
	char line[128];
	uint64_t avail = UINT64_MAX;

	if (!f)
		return avail;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			avail = (uint64_t)kb * 1024;
	fclose(f);
	return avail;
}

static int kv_map(struct nb_kv *kv, uint64_t bytes)
{
	uint64_t avail = mem_available();
	size_t len;
	char *p;

	if (bytes > avail) {
		nb_err("forward: a KV cache of %.1f MB does not fit the %.1f MB of memory available; "
		       "a shorter context (--ctx) needs less", (double)bytes / 1e6, (double)avail / 1e6);
		return -NB_ENOMEM;
	}
	if (bytes > SIZE_MAX - KV_ALIGN)
		return -NB_ENOMEM;
	len = (size_t)bytes + KV_ALIGN;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		nb_err("forward: no memory for a KV cache of %llu bytes", (unsigned long long)bytes);
		return -NB_ENOMEM;
	}
	kv->map = p;
	kv->map_len = len;
	p = (char *)(((uintptr_t)p + KV_ALIGN - 1) & ~(uintptr_t)(KV_ALIGN - 1));
	madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* advice: small pages work too */
	for (size_t i = 0; i < bytes; i += 4096)
		((volatile char *)p)[i] = 0;
	kv->k = (float *)(void *)p;
	kv->v = (float *)(void *)(p + bytes / 2);
	return 0;
}

int nb_kv_open(struct nb_kv *kv, const struct nb_model *m, uint32_t max_ctx)
{
	uint64_t bytes = nb_kv_bytes(&m->hp, max_ctx);

	memset(kv, 0, sizeof(*kv));
	if (max_ctx == 0 || max_ctx > m->hp.seq_len) {
		nb_err("forward: context %u outside 1..%u (the model's seq_len)", max_ctx,
		       m->hp.seq_len);
		return -NB_ERANGE;
	}
	if (kv_map(kv, bytes))
		return -NB_ENOMEM;
	kv->max_ctx = max_ctx;
	return 0;
}

void nb_kv_close(struct nb_kv *kv)
{
	if (!kv)
		return;
	if (kv->map)
		munmap(kv->map, kv->map_len);
	memset(kv, 0, sizeof(*kv));
}

/* Lays the float buffers out one after another in a single allocation;
 * offsets first (ok stays false on overflow), pointers once it exists. */
struct layout {
	uint64_t size;
	bool ok;
};

static uint64_t reserve(struct layout *lo, uint64_t count, uint64_t elem)
{
	uint64_t at = lo->size, bytes;

	if (__builtin_mul_overflow(count, elem, &bytes) ||
	    __builtin_add_overflow(lo->size, bytes, &lo->size))
		lo->ok = false;
	lo->size = (lo->size + 63) & ~63ull; /* every buffer on its own cache lines */
	return at;
}

struct offsets {
	uint64_t x, xb, xb2, q, k, v, att, hb, hb2, logits, inv_freq, rope_cos, rope_sin;
};

static struct layout plan(const struct nb_hparams *hp, const struct nb_fwd *f,
			  struct offsets *o)
{
	struct layout lo = { 0, true };
	const uint64_t B = f->max_batch, fl = sizeof(float);
	const uint64_t q_dim = (uint64_t)hp->n_heads * hp->head_dim;
	const uint64_t kv_dim = (uint64_t)hp->n_kv_heads * hp->head_dim;

	o->inv_freq = reserve(&lo, hp->head_dim / 2, sizeof(double));
	o->rope_cos = reserve(&lo, B * (hp->head_dim / 2), fl);
	o->rope_sin = reserve(&lo, B * (hp->head_dim / 2), fl);
	o->x = reserve(&lo, B * hp->dim, fl);
	o->xb = reserve(&lo, B * (q_dim > hp->dim ? q_dim : hp->dim), fl);
	o->xb2 = reserve(&lo, B * hp->dim, fl);
	o->q = reserve(&lo, B * q_dim, fl);
	o->k = reserve(&lo, B * kv_dim, fl);
	o->v = reserve(&lo, B * kv_dim, fl);
	o->att = reserve(&lo, (uint64_t)f->n_threads * ATTN_SCRATCH(f->max_ctx, hp->head_dim), fl);
	o->hb = reserve(&lo, B * hp->hidden_dim, fl);
	o->hb2 = reserve(&lo, B * hp->hidden_dim, fl);
	o->logits = reserve(&lo, B * hp->vocab_size, fl);
	if (lo.size > SIZE_MAX)
		lo.ok = false;
	return lo;
}

static void place(struct nb_fwd *f, const struct offsets *o)
{
	char *base = f->mem;

	f->inv_freq = (double *)(void *)(base + o->inv_freq);
	f->rope_cos = (float *)(void *)(base + o->rope_cos);
	f->rope_sin = (float *)(void *)(base + o->rope_sin);
	f->x = (float *)(void *)(base + o->x);
	f->xb = (float *)(void *)(base + o->xb);
	f->xb2 = (float *)(void *)(base + o->xb2);
	f->q = (float *)(void *)(base + o->q);
	f->k = (float *)(void *)(base + o->k);
	f->v = (float *)(void *)(base + o->v);
	f->att = (float *)(void *)(base + o->att);
	f->hb = (float *)(void *)(base + o->hb);
	f->hb2 = (float *)(void *)(base + o->hb2);
	f->logits = (float *)(void *)(base + o->logits);
}

/* Largest matrix input, so the quantized activation buffers fit any product. */
static uint32_t max_cols(const struct nb_hparams *hp)
{
	uint32_t q_dim = hp->n_heads * hp->head_dim, c = hp->dim;

	c = q_dim > c ? q_dim : c;
	return hp->hidden_dim > c ? hp->hidden_dim : c;
}

int nb_fwd_open_opts(struct nb_fwd *f, const struct nb_model *m, const struct nb_fwd_opts *o)
{
	struct nb_cpu cpu;
	struct offsets off;
	struct layout lo;
	int err;

	memset(f, 0, sizeof(*f));
	if (!m->layers) {
		nb_err("forward: model not bound");
		return -NB_EINVAL;
	}
	f->m = m;
	f->pool = o->pool;
	f->n_threads = o->pool && nb_pool_size(o->pool) ? nb_pool_size(o->pool) : 1;
	f->max_batch = o->max_batch ? o->max_batch : DEFAULT_BATCH;
	f->max_ctx = o->max_ctx;
	nb_cpu_detect(&cpu);
	f->kern = o->kernels ? o->kernels : nb_kernels_select(&cpu, NULL);
	err = nb_kv_open(&f->kv0, m, o->max_ctx);
	if (err)
		goto fail;
	lo = plan(&m->hp, f, &off);
	err = -NB_ENOMEM;
	if (!lo.ok || !(f->mem = aligned_alloc(64, (size_t)lo.size))) {
		nb_err("forward: no memory for %llu bytes of scratch", (unsigned long long)lo.size);
		goto fail;
	}
	memset(f->mem, 0, (size_t)lo.size);
	place(f, &off);
	f->row_kv = calloc(f->max_batch, sizeof(*f->row_kv));
	f->ranges = aligned_alloc(sizeof(*f->ranges), f->n_threads * sizeof(*f->ranges));
	if (!f->row_kv || !f->ranges)
		goto fail;
	if (nb_qact_alloc(&f->act[0], f->max_batch, max_cols(&m->hp), 32, f->kern->act_flags) ||
	    nb_qact_alloc(&f->act[1], f->max_batch, max_cols(&m->hp), 128, f->kern->act_flags))
		goto fail;
	f->act[0].quant_block = f->act[1].quant_block = f->kern->quant_block;
	rope_init(f);
	return 0;
fail:
	nb_fwd_close(f);
	return err;
}

int nb_fwd_open(struct nb_fwd *f, const struct nb_model *m, uint32_t max_ctx)
{
	const struct nb_fwd_opts o = { .max_ctx = max_ctx };
	return nb_fwd_open_opts(f, m, &o);
}

void nb_fwd_close(struct nb_fwd *f)
{
	if (!f)
		return;
	nb_kv_close(&f->kv0);
	nb_qact_free(&f->act[0]);
	nb_qact_free(&f->act[1]);
	free(f->row_kv);
	free(f->ranges);
	free(f->mem);
	memset(f, 0, sizeof(*f));
}
