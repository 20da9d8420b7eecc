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

/* e^x in four lanes, our own so that every platform and C library gives
 * the same bits (libm's expf may differ by an ulp between musl, glibc and
 * versions) and four at a time: n = round(x log2 e) by the 1.5 * 2^23
 * trick, r = x - n ln 2 in two exact-ish steps (Cody-Waite), e^r by its
 * degree-6 Taylor polynomial (|r| <= 0.347: relative error < 2e-7), times
 * 2^n built in the exponent bits. x < -87 gives 0 (below the normal range,
 * nothing a softmax or silu can see), x > 88 gives +inf. */
static inline __attribute__((always_inline)) v4f v4_exp(v4f x)
{
	const v4f shift = { 12582912.0f, 12582912.0f, 12582912.0f, 12582912.0f };
	const v4f lo = { -87.0f, -87.0f, -87.0f, -87.0f }, hi = { 88.0f, 88.0f, 88.0f, 88.0f };
	const v4f zero = { 0 }, inf = { INFINITY, INFINITY, INFINITY, INFINITY };
	v4f xc = v4_select(x < lo, lo, v4_select(x > hi, hi, x));
	v4f n = (xc * 1.44269504f + shift) - shift;
	v4f r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
	v4f p = { 1.0f / 720, 1.0f / 720, 1.0f / 720, 1.0f / 720 };

	p = p * r + 1.0f / 120;
	p = p * r + 1.0f / 24;
	p = p * r + 1.0f / 6;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	p = p * (v4f)((__builtin_convertvector(n, v4i) + 127) << 23);
	return v4_select(x < lo, zero, v4_select(x > hi, inf, p));
}

#endif
