#include "kernels/check.h"
#include "runtime/base/err.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How the weight levels and activations of a case are filled. */
enum fill { FILL_RANDOM, FILL_MIN, FILL_MAX, FILL_ALTERNATE, FILL_COUNT };

/* Levels at random, or pinned at the ends of their range. */
static void fill_levels(const struct nb_qinfo *qi, int8_t *q, uint8_t *z, size_t n, size_t nz,
			enum fill how, struct nb_rng *rng)
{
	int lo = qi->bits == 8 ? -127 : qi->zero_point ? 0 : -8;
	int hi = qi->bits == 8 ? 127 : qi->zero_point ? 15 : 7;

	for (size_t i = 0; i < n; i++) {
		uint64_t x = nb_rng_next(rng);
		q[i] = (int8_t)(how == FILL_MIN ? lo : how == FILL_MAX ? hi
				: how == FILL_ALTERNATE ? ((i & 1) ? hi : lo)
				: lo + (int)(x % (uint64_t)(hi - lo + 1)));
	}
	for (size_t i = 0; i < nz; i++)
		z[i] = (uint8_t)(how == FILL_MIN ? 0 : how == FILL_MAX ? 15 : nb_rng_next(rng) % 16);
}

static float rand_float(struct nb_rng *rng, float scale)
{
	return scale * ((float)(int32_t)(nb_rng_next(rng) >> 40) / (float)(1 << 23));
}

struct mmq_case {
	uint32_t type, rows, cols, m;
	enum fill wfill, afill;
};

static int check_mmq_case(const struct nb_kernels *k, const struct mmq_case *c, struct nb_rng *rng,
			  struct nb_check_result *r)
{
	const struct nb_qinfo *qi = nb_qinfo(c->type);
	const uint32_t ng = (c->cols + qi->group - 1) / qi->group;
	uint64_t bytes = 0;
	int8_t *q = malloc((size_t)c->rows * c->cols);
	uint8_t *z = malloc((size_t)c->rows * ng);
	float *d = malloc((size_t)c->rows * ng * sizeof(float));
	float *x = malloc((size_t)c->m * c->cols * sizeof(float));
	float *want = malloc((size_t)c->m * c->rows * sizeof(float));
	float *got = malloc((size_t)c->m * c->rows * sizeof(float));
	void *w = NULL;
	struct nb_qact a;
	int ret = -NB_ENOMEM;

	nb_qtensor_bytes(c->type, c->rows, c->cols, &bytes);
	w = malloc(bytes);
	if (!q || !z || !d || !x || !want || !got || !w ||
	    nb_qact_alloc(&a, c->m, c->cols, qi->group, k->act_flags))
		goto out;
	fill_levels(qi, q, z, (size_t)c->rows * c->cols, (size_t)c->rows * ng, c->wfill, rng);
	for (size_t i = 0; i < (size_t)c->rows * ng; i++)
		d[i] = rand_float(rng, 0.05f) + (i % 7 == 0 ? 1e-3f : 0);
	for (size_t i = 0; i < (size_t)c->m * c->cols; i++)
		x[i] = c->afill == FILL_RANDOM ? rand_float(rng, 4.0f)
		       : c->afill == FILL_MIN ? -3.0f : c->afill == FILL_MAX ? 3.0f
		       : (i & 1) ? 2.5f : -2.5f;
	nb_quant_pack(c->type, c->rows, c->cols, q, d, z, w);
	nb_quant_act(&a, x, c->m, c->cols);
	nb_mm_q_ref(want, c->rows, &a, c->type, w, c->rows, 0, c->rows);
	memset(got, 0x7f, (size_t)c->m * c->rows * sizeof(float));
	/* Split the rows in two calls at a quad boundary, as threads do. */
	{
		uint64_t mid = (c->rows / 2) & ~(uint64_t)(NB_QROWS - 1);
		nb_kernels_mm_q(k, got, c->rows, &a, c->type, w, c->rows, 0, mid);
		nb_kernels_mm_q(k, got, c->rows, &a, c->type, w, c->rows, mid, c->rows);
	}
	r->cases++;
	if (memcmp(got, want, (size_t)c->m * c->rows * sizeof(float)) != 0) {
		for (size_t i = 0; i < (size_t)c->m * c->rows; i++) {
			if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
				if (r->mismatches++ == 0)
					snprintf(r->first, sizeof(r->first),
						 "mm_q %s rows=%u cols=%u m=%u at %zu: got %.9g, want %.9g",
						 qi->name, c->rows, c->cols, c->m, i, (double)got[i],
						 (double)want[i]);
				break;
			}
		}
	}
	ret = 0;
	nb_qact_free(&a);
out:
	free(q);
	free(z);
	free(d);
	free(x);
	free(want);
	free(got);
	free(w);
	return ret;
}

/* Every quantized type, shapes with row and column tails (172 = 5 groups
 * of 32 + 12; 1, 5, 17 rows), batches of 1..15 activation rows (every tile
 * height), and one batch of 137 rows (17 tiles of 8 and a tail of 1: past
 * the 16 tiles the x86 kernels set up once per call). */
static int check_mmq(const struct nb_kernels *k, struct nb_rng *rng, struct nb_check_result *r)
{
	static const uint32_t shapes[][2] = { { 4, 32 },  { 1, 32 },   { 5, 64 },  { 8, 96 },
					      { 17, 172 }, { 12, 256 }, { 3, 128 }, { 36, 2048 } };
	/* 9 = a full tile of 8 plus one; 15 = 8 + 7 */
	static const uint32_t ms[] = { 1, 2, 3, 5, 9, 15 };

	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++)
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
			for (size_t mi = 0; mi < sizeof(ms) / sizeof(ms[0]); mi++)
				for (int f = 0; f < FILL_COUNT; f++) {
					struct mmq_case c = { t, shapes[s][0], shapes[s][1], ms[mi],
							      (enum fill)f, (enum fill)((f + mi) % FILL_COUNT) };
					if (check_mmq_case(k, &c, rng, r))
						return -NB_ENOMEM;
				}
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++) {
		struct mmq_case c = { t, 17, 172, 137, FILL_RANDOM, FILL_RANDOM };
		if (check_mmq_case(k, &c, rng, r))
			return -NB_ENOMEM;
	}
	return 0;
}

/* ---- attention ------------------------------------------------------------ */

enum attn_fill { ATTN_RANDOM, ATTN_LARGE, ATTN_ZERO_Q, ATTN_INF, ATTN_NAN, ATTN_FILLS };

static void fill_attn(float *x, size_t n, enum attn_fill how, struct nb_rng *rng)
{
	for (size_t i = 0; i < n; i++)
		x[i] = rand_float(rng, how == ATTN_LARGE ? 300.0f : 4.0f);
	if (how == ATTN_INF)
		x[n / 2] = (n & 1) ? INFINITY : -INFINITY;
	if (how == ATTN_NAN)
		x[n / 3] = NAN;
}

/* One call on q [n_q][hd], k, v [n][hd], compared bit for bit. */
static void check_attend_case(const struct nb_kernels *k, const float *q, const float *kv,
			      uint32_t hd, uint32_t n_q, uint32_t n, float *scratch, float *want,
			      float *got, struct nb_check_result *r)
{
	const float *keys = kv, *values = kv + (size_t)n * hd;
	const size_t bytes = (size_t)n_q * hd * sizeof(float);

	nb_kernels_scalar.attend(want, scratch, q, keys, values, hd, n_q, n, 0.125f);
	memset(got, 0x7f, bytes);
	k->attend(got, scratch, q, keys, values, hd, n_q, n, 0.125f);
	r->cases++;
	if (memcmp(got, want, bytes) != 0 && r->mismatches++ == 0) {
		for (size_t i = 0; i < bytes / sizeof(float); i++) {
			if (memcmp(&got[i], &want[i], sizeof(float)) != 0) {
				snprintf(r->first, sizeof(r->first),
					 "attend hd=%u n_q=%u n=%u at %zu: got %.9g, want %.9g", hd,
					 n_q, n, i, (double)got[i], (double)want[i]);
				break;
			}
		}
	}
}

/* Head sizes with and without 4-, 16- and 64-float tails, 1..4 heads, key
 * counts around every step of 4 and 8; random, large (scores far apart),
 * zero queries (all scores equal), an infinity and a NaN. */
static int check_attend(const struct nb_kernels *k, struct nb_rng *rng, struct nb_check_result *r)
{
	static const uint32_t hds[] = { 2, 6, 8, 16, 20, 64, 80, 128, 132 };
	static const uint32_t ns[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100 };
	const uint32_t max_hd = 132, max_n = 100;
	float *q = malloc(4 * max_hd * sizeof(float));
	float *kv = malloc(2 * (size_t)max_n * max_hd * sizeof(float));
	float *scratch = malloc(4 * (max_n + max_hd) * sizeof(float));
	float *want = malloc(4 * max_hd * sizeof(float)), *got = malloc(4 * max_hd * sizeof(float));
	int ret = -NB_ENOMEM;

	if (!q || !kv || !scratch || !want || !got)
		goto out;
	for (size_t h = 0; h < sizeof(hds) / sizeof(hds[0]); h++)
		for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++)
			for (int f = 0; f < ATTN_FILLS; f++) {
				const uint32_t hd = hds[h], n = ns[i];
				fill_attn(q, 4 * (size_t)hd, f == ATTN_ZERO_Q ? ATTN_RANDOM : f, rng);
				if (f == ATTN_ZERO_Q)
					memset(q, 0, 4 * (size_t)hd * sizeof(float));
				fill_attn(kv, 2 * (size_t)n * hd, f == ATTN_LARGE ? ATTN_RANDOM : f, rng);
				for (uint32_t n_q = 1; n_q <= 4; n_q++)
					check_attend_case(k, q, kv, hd, n_q, n, scratch, want, got, r);
			}
	ret = 0;
out:
	free(q);
	free(kv);
	free(scratch);
	free(want);
	free(got);
	return ret;
}

/* ---- elementwise: silu_mul, quant_block ---------------------------------- */

static void check_floats(const char *what, size_t n, const void *got, const void *want,
			 size_t bytes, struct nb_check_result *r)
{
	r->cases++;
	if (memcmp(got, want, bytes) != 0 && r->mismatches++ == 0)
		snprintf(r->first, sizeof(r->first), "%s n=%zu: outputs differ", what, n);
}

/* Random values over the range silu and quantization see, then the edges:
 * exp's cut-offs (+-87, +-88), zeros of both signs, an all-zero block. */
static void fill_elementwise(float *x, size_t n, int how, struct nb_rng *rng)
{
	static const float edges[] = { -88.5f, -88.0f, -87.5f, -87.0f, -0.0f, 0.0f,
				       87.0f,  87.5f,  88.0f,  88.5f,  1e-30f, -1e-30f };

	for (size_t i = 0; i < n; i++)
		x[i] = how == 0 ? rand_float(rng, 8.0f) : how == 1 ? edges[i % 12]
		       : how == 2 ? 0.0f : rand_float(rng, 1e4f);
}

/* A whole block of each type's group size (a size several types share is
 * checked as often): the backend's block quantizer against the portable one. */
static int check_quant_block(const struct nb_kernels *k, int how, struct nb_rng *rng,
			     struct nb_check_result *r)
{
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++) {
		const uint32_t G = nb_qinfo(t)->group;
		float *x = malloc(G * sizeof(float)), dw, dg;
		int8_t *qw = malloc(G), *qg = malloc(G);
		int32_t sw, sg;
		int ok = x && qw && qg;

		if (ok) {
			struct nb_qact a = { .q = qw, .d = &dw, .sum = &sw, .group = G };
			fill_elementwise(x, G, how, rng);
			nb_quant_act(&a, x, 1, G); /* quant_block NULL: the portable one */
			k->quant_block(x, G, qg, &dg, &sg);
			check_floats("quant_block levels", G, qg, qw, G, r);
			check_floats("quant_block scale", G, &dg, &dw, sizeof(dw), r);
			check_floats("quant_block sum", G, &sg, &sw, sizeof(sw), r);
		}
		free(x);
		free(qw);
		free(qg);
		if (!ok)
			return -NB_ENOMEM;
	}
	return 0;
}

static int check_elementwise(const struct nb_kernels *k, struct nb_rng *rng,
			     struct nb_check_result *r)
{
	static const size_t ns[] = { 1, 3, 4, 15, 16, 17, 33, 100 };
	float x[100], up[100], want[100], got[100];

	for (int how = 0; how < 4; how++) {
		for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
			fill_elementwise(x, ns[i], how, rng);
			fill_elementwise(up, ns[i], 0, rng);
			memcpy(want, x, ns[i] * sizeof(float));
			memcpy(got, x, ns[i] * sizeof(float));
			nb_kernels_scalar.silu_mul(want, up, ns[i]);
			k->silu_mul(got, up, ns[i]);
			check_floats("silu_mul", ns[i], got, want, ns[i] * sizeof(float), r);
		}
		if (k->quant_block && check_quant_block(k, how, rng, r))
			return -NB_ENOMEM;
	}
	return 0;
}

int nb_check_backend(const struct nb_kernels *k, uint64_t seed, struct nb_check_result *r)
{
	struct nb_rng rng = { seed };
	int ret;

	memset(r, 0, sizeof(*r));
	ret = check_mmq(k, &rng, r);
	if (!ret)
		ret = check_attend(k, &rng, r);
	if (!ret)
		ret = check_elementwise(k, &rng, r);
	if (!ret)
		ret = r->mismatches ? -NB_ESELFTEST : 0;
	return ret;
}
