/* ARMv8.0 NEON kernels (Cortex-A72 / Raspberry Pi 4): no SDOT, so widen
 * with SMULL and pairwise-accumulate with SADALP. */
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/neon_common.h"

#include <arm_neon.h>

static int32_t dot_i8_neon(const int8_t *a, const int8_t *b, size_t n)
{
	int32x4_t acc = vdupq_n_s32(0);
	size_t i = 0;
	int32_t sum;

	for (; i + 16 <= n; i += 16) {
		int8x16_t va = vld1q_s8(a + i), vb = vld1q_s8(b + i);
		/* int8*int8 fits int16 exactly (|-128*-128| = 16384). */
		int16x8_t lo = vmull_s8(vget_low_s8(va), vget_low_s8(vb));
		int16x8_t hi = vmull_high_s8(va, vb);
		acc = vpadalq_s16(acc, lo);
		acc = vpadalq_s16(acc, hi);
	}
	sum = vaddvq_s32(acc);
	for (; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_neon(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_mm_i8_by_dot(dot_i8_neon, c, a, b, m, n, k);
}

/* ---- Quantized matmul -------------------------------------------------
 * Per (quad, activation row), per group: each row's products widen into
 * one int16x8 (SMULL, then SMLAL/SMLAL2), SADDLP makes it 4 int32, and an
 * ADDP tree reduces the 4 rows at once into [r0 r1 r2 r3], the order of the
 * block's scales. The activation loads are shared by the 4 rows.
 *
 * int16 bounds: a 4-bit lane sums G/8 <= 16 products |u * a| <= 15 * 128,
 * at most 30720; an 8-bit lane sums 2 products |w * a| <= 128 * 127 (the
 * activations are -127..127 by nb_quant_act), at most 32512. */

/* 16 bytes of nibbles against their activations: elements j (low nibbles,
 * alo) and j + G/2 (high nibbles, ahi). */
NB_NEON_INLINE int16x8_t q4_mac(int16x8_t p, uint8x16_t w, int8x16_t alo, int8x16_t ahi)
{
	int8x16_t lo = nb_neon_lo(w), hi = nb_neon_hi(w);

	p = vmlal_s8(p, vget_low_s8(lo), vget_low_s8(alo));
	p = vmlal_high_s8(p, lo, alo);
	p = vmlal_s8(p, vget_low_s8(hi), vget_low_s8(ahi));
	return vmlal_high_s8(p, hi, ahi);
}

/* Unsigned-nibble sums of the 4 rows of one block. */
NB_NEON_INLINE int32x4_t q4_usum(const uint8_t *qs, const int8_t *aq, const uint32_t G)
{
	const uint32_t rb = G / 2; /* bytes per row */
	int16x8_t p0 = vdupq_n_s16(0), p1 = p0, p2 = p0, p3 = p0;

	/* G = 128: four chunks in straight line, no loop overhead */
#pragma GCC unroll 4
	for (uint32_t c = 0; c < rb; c += 16) {
		const int8x16_t alo = vld1q_s8(aq + c), ahi = vld1q_s8(aq + rb + c);
		p0 = q4_mac(p0, vld1q_u8(qs + c), alo, ahi);
		p1 = q4_mac(p1, vld1q_u8(qs + rb + c), alo, ahi);
		p2 = q4_mac(p2, vld1q_u8(qs + 2 * rb + c), alo, ahi);
		p3 = q4_mac(p3, vld1q_u8(qs + 3 * rb + c), alo, ahi);
	}
	return vpaddq_s32(vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)),
			  vpaddq_s32(vpaddlq_s16(p2), vpaddlq_s16(p3)));
}

/* One 8-bit row of 32: two int16x8 of two products per lane. */
NB_NEON_INLINE int32x4_t q8_row(const int8_t *w, int8x16_t a0, int8x16_t a1)
{
	int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
	int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)), w0, a0);
	int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(a1)), w1, a1);

	return vpadalq_s16(vpaddlq_s16(p0), p1);
}

#define NEON_QUAD_LINKAGE static /* only this table uses the ARMv8.0 quad kernels */
#define NEON_QUAD_LOOKUP neon_quad_kernel
#define NEON_MM_Q mm_q_neon
#include "kernels/neon_quad.h"

const struct nb_kernels nb_kernels_neon = {
	.name = "neon",
	.requires = NB_CPU_NEON,
	.dot_i8 = dot_i8_neon,
	.mm_i8 = mm_i8_neon,
	.mm_q = mm_q_neon,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
