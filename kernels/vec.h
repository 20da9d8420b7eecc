/* Float vectors of fixed width (GCC vector extension) and the float
 * arithmetic whose order nibble defines: the dot product, e^x. Shared by
 * the forward pass and the attention kernels (kernels/attn.h), which every
 * backend compiles with its own instruction set: the operations are
 * lane-wise IEEE with -ffp-contract=off, so the same source gives the same
 * bits on SSE2, AVX2, AVX-512 and NEON. */
#ifndef NB_VEC_H
#define NB_VEC_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f v4_load(const float *p)
{
	v4f v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void v4_store(float *p, v4f v)
{
	memcpy(p, &v, sizeof(v));
}

static inline v4f v4_select(v4i mask, v4f a, v4f b)
{
	return (v4f)(((v4i)a & mask) | ((v4i)b & ~mask));
}

/* Float dot product: four interleaved partial sums (lane j sums the
 * products at i = j mod 4, the tail goes to lane 0), combined as
 * (s0 + s1) + (s2 + s3). A fixed order the compiler may not change without
 * -ffast-math, so the result does not depend on it. */
static inline float v4_dot(const float *a, const float *b, size_t n)
{
	v4f s = { 0 };
	size_t i;
	float s0;

	for (i = 0; i + 4 <= n; i += 4)
		s += v4_load(a + i) * v4_load(b + i);
	s0 = s[0];
	for (; i < n; i++)
		s0 += a[i] * b[i];
	return (s0 + s[1]) + (s[2] + s[3]);
}

/* e^x lane by lane, our own so that every platform and C library gives
 * the same bits (libm's expf may differ by an ulp between musl, glibc and
 * versions): n = round(x log2 e) by the 1.5 * 2^23 trick, r = x - n ln 2
 * in two exact-ish steps (Cody-Waite), e^r by its degree-6 Taylor
 * polynomial (|r| <= 0.347: relative error < 2e-7), times 2^n built in the
 * exponent bits. x < -87 gives 0 (below the normal range, nothing a
 * softmax or silu can see), x > 88 gives +inf. Defined for any width
 * (vf floats, vi int32 of the same count), each lane the same operations:
 * a backend with wider registers defines its own and gets the same bits. */
#define NB_DEFINE_VEXP(name, vf, vi)                                                    \
	static inline __attribute__((always_inline)) vf name(vf x)                      \
	{                                                                               \
		const vf zero = { 0 }, shift = zero + 12582912.0f, lo = zero - 87.0f;    \
		const vf hi = zero + 88.0f, inf = zero + INFINITY;                      \
		vf xc = (vf)(((vi)lo & (vi)(x < lo)) |                                  \
			     ((vi)(vf)(((vi)hi & (vi)(x > hi)) | ((vi)x & ~(vi)(x > hi))) & \
			      ~(vi)(x < lo)));                                          \
		vf n = (xc * 1.44269504f + shift) - shift;                              \
		vf r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;                   \
		vf p = zero + 1.0f / 720;                                               \
		p = p * r + 1.0f / 120;                                                 \
		p = p * r + 1.0f / 24;                                                  \
		p = p * r + 1.0f / 6;                                                   \
		p = p * r + 0.5f;                                                       \
		p = p * r + 1.0f;                                                       \
		p = p * r + 1.0f;                                                       \
		p = p * (vf)((__builtin_convertvector(n, vi) + 127) << 23);             \
		p = (vf)(((vi)inf & (vi)(x > hi)) | ((vi)p & ~(vi)(x > hi)));           \
		return (vf)((vi)p & ~(vi)(x < lo));                                     \
	}

NB_DEFINE_VEXP(v4_exp, v4f, v4i)

/* gate[i] = silu(gate[i]) * up[i] = gate / (1 + e^-gate) * up, i < n; the
 * last partial vector too, so a value never depends on where it is. */
static inline void v4_silu_mul(float *gate, const float *up, size_t n)
{
	for (size_t i = 0; i < n; i += 4) {
		size_t k = n - i < 4 ? n - i : 4;
		v4f g = { 0 }, u = { 0 };

		if (k == 4) { /* constant sizes: plain vector moves */
			memcpy(&g, gate + i, sizeof(g));
			memcpy(&u, up + i, sizeof(u));
		} else {
			memcpy(&g, gate + i, k * sizeof(float));
			memcpy(&u, up + i, k * sizeof(float));
		}
		g = g / (1.0f + v4_exp(-g)) * u;
		if (k == 4)
			memcpy(gate + i, &g, sizeof(g));
		else
			memcpy(gate + i, &g, k * sizeof(float));
	}
}

#endif
