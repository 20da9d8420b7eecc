/* ARMv8.0 NEON kernels (Cortex-A72 / Raspberry Pi 4): no SDOT, so widen
 * with SMULL and pairwise-accumulate with SADALP. */
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/neon_common.h"

#include <arm_neon.h>

/* ---- Quantized matmul -------------------------------------------------
 * Per (quad, activation row), per group: each row's products widen into
 * one int16x8 (SMULL, then SMLAL/SMLAL2), SADDLP makes it 4 int32, and an
 * ADDP tree reduces the 4 rows at once into [r0 r1 r2 r3], the order of the
 * block's scales. The activation loads are shared by the 4 rows.
 *
 * int16 bounds: a 4-bit lane sums at most 16 products |u * a| <= 15 * 128
 * (a span of 128 columns; a longer group adds its spans in int32), at most
 * 30720; an 8-bit lane sums 2 products |w * a| <= 128 * 127 (the
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

/* Bytes of a row whose products one int16 lane may sum (see above). */
#define Q4_SPAN 64

/* Unsigned-nibble sums of the 4 rows of one block, a span at a time. */
NB_NEON_INLINE int32x4_t q4_usum(const uint8_t *qs, const int8_t *aq, const uint32_t G)
{
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 4);
	int32x4_t s = vdupq_n_s32(0);

	for (uint32_t c0 = 0; c0 < rb; c0 += Q4_SPAN) {
		const uint32_t c1 = rb - c0 < Q4_SPAN ? rb : c0 + Q4_SPAN;
		int16x8_t p0 = vdupq_n_s16(0), p1 = p0, p2 = p0, p3 = p0;

		/* G = 128: four chunks in straight line, no loop overhead */
#pragma GCC unroll 4
		for (uint32_t c = c0; c < c1; c += 16) {
			const int8x16_t alo = vld1q_s8(aq + c), ahi = vld1q_s8(aq + rb + c);
			p0 = q4_mac(p0, vld1q_u8(qs + c), alo, ahi);
			p1 = q4_mac(p1, vld1q_u8(qs + rb + c), alo, ahi);
			p2 = q4_mac(p2, vld1q_u8(qs + 2 * rb + c), alo, ahi);
			p3 = q4_mac(p3, vld1q_u8(qs + 3 * rb + c), alo, ahi);
		}
		int32x4_t t = vpaddq_s32(vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)),
					 vpaddq_s32(vpaddlq_s16(p2), vpaddlq_s16(p3)));
		s = c0 ? vaddq_s32(s, t) : t;
	}
	return s;
}

/* 32 columns of an 8-bit row: two int16x8 of two products per lane. */
NB_NEON_INLINE int32x4_t q8_row(const int8_t *w, int8x16_t a0, int8x16_t a1)
{
	int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16);
	int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(a0)), w0, a0);
	int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(a1)), w1, a1);

	return vpadalq_s16(vpaddlq_s16(p0), p1);
}

#include "kernels/neon_quad.h"

const struct nb_kernels nb_kernels_neon = {
	.name = "neon",
	.requires = NB_CPU_NEON,
	.mm_q = NEON_MM_Q_TABLE,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
