/* Attention of the query heads that share one key/value head: the kernel
 * table's attend (kernels/kernels.h). Every backend includes this file and
 * compiles it with its own instruction set; the arithmetic is lane-wise
 * IEEE on four-float vectors (native on SSE2 and NEON), so each gives the
 * scalar build's bits. A backend may replace the two loops that matter by
 * defining ATTN_SCORES4 / ATTN_WSUM4 (same signatures, same bits) before
 * including this file: avx512vnni.c does, with 512-bit registers. (The
 * scores get the values too, which a backend may prefetch.)
 *
 * The specification, for each query head h (positions t < n):
 *   s_t   = v4_dot(q_h, k_t, hd) * scale
 *   m     = s_0, replaced by each later s_t > m, in increasing t
 *   e_t   = v4_exp(s_t - m)
 *   sum   = +0 + e_0 + e_1 + ..., in increasing t
 *   out_i = +0 + (e_0 / sum) v_0,i + (e_1 / sum) v_1,i + ..., increasing t
 *
 * The heads of a group read the same keys and values, so four go through
 * together with their weights side by side, att[4 t + h]: a key or value
 * row is loaded once for four heads, and the softmax of four heads is one
 * vector sequence (lane h is head h); the maximum is found in the scores
 * pass. */
#ifndef NB_ATTN_H
#define NB_ATTN_H

#include "kernels/vec.h"

static inline float v4_hsum(v4f s)
{
	return (s[0] + s[1]) + (s[2] + s[3]);
}

/* ---- four heads ------------------------------------------------------------ */

/* The running maximum of the spec, lane h for head h: folded into the
 * scores pass, where its chain of selects hides behind the dot products. */
static inline v4f attn_max4(v4f m, v4f x)
{
	return v4_select(x > m, x, m);
}

#ifndef ATTN_SCORES4
#define ATTN_SCORES4 attn_scores4_v4
/* att[4 t + h] = s_t of head h, q [4][hd], hd % 4 == 0; returns m. */
static v4f attn_scores4_v4(float *att, float *scratch, const float *q, const float *k,
			   const float *v, uint32_t hd, uint32_t n, float scale)
{
	v4f m = { 0 };

	(void)scratch;
	(void)v;
	for (uint32_t t = 0; t < n; t++) {
		const float *kt = k + (size_t)t * hd;
		v4f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 }, r;

		for (uint32_t i = 0; i < hd; i += 4) {
			const v4f kv = v4_load(kt + i);
			s0 += v4_load(q + i) * kv;
			s1 += v4_load(q + hd + i) * kv;
			s2 += v4_load(q + 2 * hd + i) * kv;
			s3 += v4_load(q + 3 * hd + i) * kv;
		}
		r = (v4f){ v4_hsum(s0), v4_hsum(s1), v4_hsum(s2), v4_hsum(s3) } * scale;
		v4_store(att + 4 * t, r);
		m = t ? attn_max4(m, r) : r;
	}
	return m;
}
#endif

/* att[4 t + h] = e_t of head h; returns the sums. */
static v4f attn_exp4(float *att, uint32_t n, v4f m)
{
	v4f sum = { 0 };

	for (uint32_t t = 0; t < n; t++) {
		v4f e = v4_exp(v4_load(att + 4 * t) - m);
		sum += e;
		v4_store(att + 4 * t, e);
	}
	return sum;
}

static void attn_div4(float *att, uint32_t n, v4f sum)
{
	for (uint32_t t = 0; t < n; t++)
		v4_store(att + 4 * t, v4_load(att + 4 * t) / sum);
}

/* out[h][i] for i in [i0, hd), four heads of weights att[4 t + h], four
 * elements at a time (also the tail of a backend's ATTN_WSUM4). */
static void attn_wsum4_v4(float *out, const float *att, const float *v, uint32_t hd, uint32_t n,
			  uint32_t i0)
{
	for (; i0 + 4 <= hd; i0 += 4) {
		v4f o0 = { 0 }, o1 = { 0 }, o2 = { 0 }, o3 = { 0 };

		for (uint32_t t = 0; t < n; t++) {
			const v4f vt = v4_load(v + (size_t)t * hd + i0);
			const v4f p = v4_load(att + 4 * t);
			o0 += p[0] * vt;
			o1 += p[1] * vt;
			o2 += p[2] * vt;
			o3 += p[3] * vt;
		}
		v4_store(out + i0, o0);
		v4_store(out + hd + i0, o1);
		v4_store(out + 2 * (size_t)hd + i0, o2);
		v4_store(out + 3 * (size_t)hd + i0, o3);
	}
}

#ifndef ATTN_WSUM4
#define ATTN_WSUM4 attn_wsum4_v4
#endif

/* ---- one head ---------------------------------------------------------- */

/* att[t] = s_t, four keys at a time so that four independent sums hide the
 * latency of the adds. */
static void attn_scores1(float *att, const float *q, const float *k, uint32_t hd, uint32_t n,
			 float scale)
{
	uint32_t t = 0;

	for (; hd % 4 == 0 && t + 4 <= n; t += 4) {
		const float *k0 = k + (size_t)t * hd, *k1 = k0 + hd, *k2 = k1 + hd, *k3 = k2 + hd;
		v4f s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };

		for (uint32_t i = 0; i < hd; i += 4) {
			const v4f qi = v4_load(q + i);
			s0 += qi * v4_load(k0 + i);
			s1 += qi * v4_load(k1 + i);
			s2 += qi * v4_load(k2 + i);
			s3 += qi * v4_load(k3 + i);
		}
		att[t] = v4_hsum(s0) * scale;
		att[t + 1] = v4_hsum(s1) * scale;
		att[t + 2] = v4_hsum(s2) * scale;
		att[t + 3] = v4_hsum(s3) * scale;
	}
	for (; t < n; t++)
		att[t] = v4_dot(q, k + (size_t)t * hd, hd) * scale;
}

static void attn_softmax1(float *x, uint32_t n)
{
	float m = x[0], sum = 0.0f;
	uint32_t t;

	for (t = 1; t < n; t++)
		if (x[t] > m)
			m = x[t];
	const v4f mv = { m, m, m, m };
	for (t = 0; t + 4 <= n; t += 4)
		v4_store(x + t, v4_exp(v4_load(x + t) - mv));
	if (t < n) { /* the tail through v4_exp too: a value never depends on where it is */
		v4f e = mv;
		memcpy(&e, x + t, (n - t) * sizeof(float));
		e = v4_exp(e - mv);
		memcpy(x + t, &e, (n - t) * sizeof(float));
	}
	for (t = 0; t < n; t++)
		sum += x[t];
	for (t = 0; t < n; t++)
		x[t] /= sum;
}

/* out[i] for one head, sixteen elements (four sums) at a time. */
static void attn_wsum1(float *out, const float *att, const float *v, uint32_t hd, uint32_t n)
{
	uint32_t i0 = 0;

	for (; i0 + 16 <= hd; i0 += 16) {
		v4f o0 = { 0 }, o1 = { 0 }, o2 = { 0 }, o3 = { 0 };

		for (uint32_t t = 0; t < n; t++) {
			const float *vt = v + (size_t)t * hd + i0;
			const float a = att[t];
			o0 += a * v4_load(vt);
			o1 += a * v4_load(vt + 4);
			o2 += a * v4_load(vt + 8);
			o3 += a * v4_load(vt + 12);
		}
		v4_store(out + i0, o0);
		v4_store(out + i0 + 4, o1);
		v4_store(out + i0 + 8, o2);
		v4_store(out + i0 + 12, o3);
	}
	for (; i0 < hd; i0++) {
		float o = 0.0f;
		for (uint32_t t = 0; t < n; t++)
			o += att[t] * v[(size_t)t * hd + i0];
		out[i0] = o;
	}
}

/* ---- the kernel ------------------------------------------------------------- */

static void attn_run(float *out, float *scratch, const float *q, const float *k, const float *v,
		     uint32_t hd, uint32_t n_q, uint32_t n, float scale)
{
	if (n_q == 4 && hd % 4 == 0) {
		v4f m = ATTN_SCORES4(scratch, scratch + 4 * (size_t)n, q, k, v, hd, n, scale);
		attn_div4(scratch, n, attn_exp4(scratch, n, m));
		ATTN_WSUM4(out, scratch, v, hd, n, 0);
		return;
	}
	for (uint32_t h = 0; h < n_q; h++) {
		attn_scores1(scratch, q + (size_t)h * hd, k, hd, n, scale);
		attn_softmax1(scratch, n);
		attn_wsum1(out + (size_t)h * hd, scratch, v, hd, n);
	}
}

#endif
