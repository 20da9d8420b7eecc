/* Forward pass of the model (llama2.c run.c order) over a batch of rows:
 * RMSNorm, attention with RoPE and grouped-query heads, a gated MLP. What
 * a family changes in Llama's layer (q/k/v biases, q/k norms, GeGLU, the
 * norm weights' offset, scaled embeddings) is read from the
 * hyper-parameters. The matrix products -- nearly all of the time -- run on
 * the thread pool through the kernel dispatch table (matmul.c), and so
 * does attention, split over (row, up to four query heads of one KV head)
 * (kv.c); the rest is cheap and runs on the calling thread. */
#include "runtime/model/forward.h"

#include "kernels/kernels.h"
#include "kernels/vec.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/kv.h"
#include "runtime/model/matmul.h"
#include "runtime/model/pool.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 64

/* ---- building blocks ---------------------------------------------------- */

/* out[dim] = row token of the embedding table {vocab, dim}, times scale
 * unless it is 0. */
static void embed(float *out, const struct nb_tensor *e, int32_t token, float scale)
{
	size_t dim = (size_t)e->shape[1];

	if (e->type == NB_DTYPE_F32)
		memcpy(out, (const float *)e->data + (size_t)token * dim, dim * sizeof(*out));
	else
		nb_quant_dequant_row(e->type, e->data, dim, (uint64_t)token, out);
	if (scale != 0.0f)
		for (size_t i = 0; i < dim; i++)
			out[i] *= scale;
}

/* out[n] = x[n] / rms(x) * (norm_offset + w[n]); out may alias x. Llama's
 * (offset 0) multiplies by w itself: 0 + w would turn a -0 weight into +0. */
static void rmsnorm(float *out, const float *x, const struct nb_tensor *w, size_t n,
		    const struct nb_hparams *hp)
{
	const float *wf = w->data; /* norm weights are always float32 */
	float ss = v4_dot(x, x, n) / (float)n + hp->norm_eps;
	float scale = 1.0f / sqrtf(ss);
	size_t i;

	if (hp->norm_offset == 0.0f)
		for (i = 0; i < n; i++)
			out[i] = wf[i] * (scale * x[i]);
	else
		for (i = 0; i < n; i++)
			out[i] = (hp->norm_offset + wf[i]) * (scale * x[i]);
}

/* Each of n_heads heads of x [n_heads][head_dim] RMS-normalized in place
 * with the same weights w [head_dim] (q/k norm). */
static void head_rmsnorm(float *x, const struct nb_tensor *w, uint32_t n_heads,
			 const struct nb_hparams *hp)
{
	for (uint32_t h = 0; h < n_heads; h++)
		rmsnorm(x + (size_t)h * hp->head_dim, x + (size_t)h * hp->head_dim, w, hp->head_dim,
			hp);
}

static void add(float *x, const float *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		x[i] += y[i];
}

/* gate[i] = gelu(gate[i]) * up[i], i < n, with GELU's tanh approximation
 * 0.5 x (1 + tanh(u)) written as x / (1 + e^(-2u)), u = sqrt(2 / pi) (x +
 * 0.044715 x^3), on vec.h's exp: the same bits on every platform. */
static void gelu_tanh_mul(float *gate, const float *up, size_t n)
{
	const float c = 1.5957691216057308f; /* 2 sqrt(2 / pi) */

	for (size_t i = 0; i < n; i += 4) {
		size_t k = n - i < 4 ? n - i : 4;
		v4f g = { 0 }, u = { 0 };

		memcpy(&g, gate + i, k * sizeof(float));
		memcpy(&u, up + i, k * sizeof(float));
		g = g / (1.0f + v4_exp(-(c * (g + 0.044715f * (g * g * g))))) * u;
		memcpy(gate + i, &g, k * sizeof(float));
	}
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
		if (!c->k) {
			nb_err("forward: row %u names no KV cache and this context has none "
			       "of its own (no_kv0)", i);
			return -NB_EINVAL;
		}
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

static void layer_forward(struct nb_fwd *f, uint32_t l, uint32_t n, const uint32_t *pos,
			  struct nb_kv *const *kv)
{
	const struct nb_hparams *hp = &f->m->hp;
	const struct nb_layer *ly = &f->m->layers[l];
	const size_t dim = hp->dim, hidden = hp->hidden_dim;
	const size_t q_dim = (size_t)hp->n_heads * hp->head_dim;
	const size_t kv_dim = (size_t)hp->n_kv_heads * hp->head_dim;
	const size_t xb_dim = q_dim > dim ? q_dim : dim;
	const struct nb_mm_job qkv[3] = { { f->q, ly->wq, NULL }, { f->k, ly->wk, NULL },
					   { f->v, ly->wv, NULL } };
	const struct nb_mm_job gate_up[2] = { { f->hb, ly->w_gate, NULL }, { f->hb2, ly->w_up, NULL } };

	/* attention block */
	for (uint32_t b = 0; b < n; b++) /* xb [n][dim] */
		rmsnorm(f->xb + b * dim, f->x + b * dim, ly->attn_norm, dim, hp);
	nb_mm(f, f->xb, n, 3, qkv); /* q [n][q_dim], k, v [n][kv_dim] */
	for (uint32_t b = 0; b < n; b++) {
		float *q = f->q + b * q_dim, *k = f->k + b * kv_dim, *v = f->v + b * kv_dim;

		if (ly->bq) {
			add(q, ly->bq->data, q_dim);
			add(k, ly->bk->data, kv_dim);
			add(v, ly->bv->data, kv_dim);
		}
		if (ly->q_norm) {
			head_rmsnorm(q, ly->q_norm, hp->n_heads, hp);
			head_rmsnorm(k, ly->k_norm, hp->n_kv_heads, hp);
		}
		rope(f, b, q, hp->n_heads);
		rope(f, b, k, hp->n_kv_heads);
	}
	nb_kv_store(f, kv, pos, n, l);
	nb_kv_attend(f, n, l, pos, kv); /* xb [n][xb_dim], heads side by side */
	if (xb_dim != q_dim)           /* pack rows to [n][q_dim] for the product */
		for (uint32_t b = 1; b < n; b++)
			memmove(f->xb + b * q_dim, f->xb + b * xb_dim, q_dim * sizeof(float));
	nb_mm1(f, f->xb2, ly->wo, f->xb, n); /* xb2 [n][dim] */
	add(f->x, f->xb2, n * dim);

	/* MLP block: w_down(act(w_gate x) * w_up x) */
	for (uint32_t b = 0; b < n; b++) /* xb [n][dim] */
		rmsnorm(f->xb + b * dim, f->x + b * dim, ly->ffn_norm, dim, hp);
	nb_mm(f, f->xb, n, 2, gate_up);        /* hb, hb2 [n][hidden] */
	if (hp->activation == NB_ACT_GELU_TANH) {
		gelu_tanh_mul(f->hb, f->hb2, n * hidden); /* hb [n][hidden] */
		nb_mm1(f, f->xb2, ly->w_down, f->hb, n);  /* xb2 [n][dim] */
	} else {
		const struct nb_mm_job down = { f->xb2, ly->w_down, NULL };
		struct nb_qact *a = nb_mm_act_for(f, ly->w_down, n);
		nb_mm_swiglu(f, f->hb, f->hb2, n, (uint32_t)hidden, a); /* hb [n][hidden], quantized */
		nb_mm_ready(f, f->hb, n, 1, &down, a);                   /* xb2 [n][dim] */
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
		embed(f->x + b * dim, m->token_embd, tokens[b], m->hp.embed_scale); /* x [n][dim] */
		rope_angles(f, b, pos[b]);
	}
	for (uint32_t l = 0; l < m->hp.n_layers; l++)
		layer_forward(f, l, n, pos, kv);

	/* final norm of the wanted rows, gathered in xb2 [n_want][dim] */
	for (uint32_t b = 0; b < n; b++) {
		if (want ? !want[b] : b != n - 1)
			continue;
		rmsnorm(f->xb2 + n_want * dim, f->x + b * dim, m->output_norm, dim, &m->hp);
		n_want++;
	}
	if (n_want)
		nb_mm1(f, f->logits, m->output, f->xb2, n_want); /* logits [n_want][vocab] */
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
	if (!f->kv0.k) {
		nb_err("forward: this context has no KV cache of its own (no_kv0)");
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
	o->att = reserve(&lo, (uint64_t)f->n_threads * NB_ATTN_SCRATCH(f->max_ctx, hp->head_dim), fl);
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
	if (o->max_ctx == 0 || o->max_ctx > m->hp.seq_len) {
		nb_err("forward: context %u outside 1..%u (the model's seq_len)", o->max_ctx,
		       m->hp.seq_len);
		return -NB_ERANGE;
	}
	f->m = m;
	f->pool = o->pool;
	f->n_threads = o->pool && nb_pool_size(o->pool) ? nb_pool_size(o->pool) : 1;
	f->max_batch = o->max_batch ? o->max_batch : DEFAULT_BATCH;
	f->max_ctx = o->max_ctx;
	nb_cpu_detect(&cpu);
	f->kern = o->kernels ? o->kernels : nb_kernels_select(&cpu, NULL);
	err = o->no_kv0 ? 0 : nb_kv_open(&f->kv0, m, o->max_ctx);
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
	if (nb_mm_acts_open(f, max_cols(&m->hp)))
		goto fail;
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
	nb_mm_acts_close(f);
	free(f->row_kv);
	free(f->ranges);
	free(f->mem);
	memset(f, 0, sizeof(*f));
}
