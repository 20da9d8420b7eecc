/* ARMv8.2 dotprod kernels (Cortex-A76/A78). This file alone is compiled
 * with +dotprod, and the table is picked only when HWCAP has ASIMDDP, so
 * the same binary still runs on a Cortex-A72. */
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/neon_common.h"

#include <arm_neon.h>

int32_t nb_dot_i8_neon_dotprod(const int8_t *a, const int8_t *b, size_t n)
{
	int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
	size_t i = 0;
	int32_t sum;

	for (; i + 32 <= n; i += 32) {
		acc0 = vdotq_s32(acc0, vld1q_s8(a + i), vld1q_s8(b + i));
		acc1 = vdotq_s32(acc1, vld1q_s8(a + i + 16), vld1q_s8(b + i + 16));
	}
	for (; i + 16 <= n; i += 16)
		acc0 = vdotq_s32(acc0, vld1q_s8(a + i), vld1q_s8(b + i));
	sum = vaddvq_s32(vaddq_s32(acc0, acc1));
	for (; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_neon_dotprod(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n,
			       size_t k)
{
	nb_mm_i8_by_dot(nb_dot_i8_neon_dotprod, c, a, b, m, n, k);
}

/* ---- Quantized matmul -------------------------------------------------
 * Hot path of decode (m = 1). Per (quad, activation row), per group of a
 * 4-bit type: each 16 activation bytes are loaded once for the 4 rows; a
 * row's 16 nibble bytes become two SDOT operands (AND 0x0f for elements j,
 * USHR 4 for elements j + G/2) into that row's int32x4; at the end of the
 * group one ADDP tree (3 ADDP) turns the 4 rows' accumulators into
 * [r0 r1 r2 r3], lined up with the block's 4 scales, so there is no
 * per-row horizontal reduction. Per G = 32 block: 4+2 loads, 4 AND,
 * 4 USHR, 8 SDOT, 3 ADDP, then MLS (offsets), SCVTF, 2 FMUL, FADD and the
 * FCVTL of the scales. gcc 12 makes that a loop of 45 instructions per
 * q4_g32 block (128 weights; 6 of them MOVs, as SDOT accumulates in
 * place), 111 per q4_g128 block (512 weights), 37 per q8_g32 block. */

/* 16 bytes of nibbles: elements j against alo, j + G/2 against ahi. */
NB_NEON_INLINE int32x4_t q4_dot(int32x4_t acc, uint8x16_t w, int8x16_t alo, int8x16_t ahi)
{
	return vdotq_s32(vdotq_s32(acc, nb_neon_lo(w), alo), nb_neon_hi(w), ahi);
}

/* Unsigned-nibble sums of the 4 rows of one block. */
NB_NEON_INLINE int32x4_t q4_usum(const uint8_t *qs, const int8_t *aq, const uint32_t G)
{
	const uint32_t rb = G / 2; /* bytes per row */
	int32x4_t s0 = vdupq_n_s32(0), s1 = s0, s2 = s0, s3 = s0;

	/* G = 128: four chunks in straight line, no loop overhead */
#pragma GCC unroll 4
	for (uint32_t c = 0; c < rb; c += 16) {
		const int8x16_t alo = vld1q_s8(aq + c), ahi = vld1q_s8(aq + rb + c);
		s0 = q4_dot(s0, vld1q_u8(qs + c), alo, ahi);
		s1 = q4_dot(s1, vld1q_u8(qs + rb + c), alo, ahi);
		s2 = q4_dot(s2, vld1q_u8(qs + 2 * rb + c), alo, ahi);
		s3 = q4_dot(s3, vld1q_u8(qs + 3 * rb + c), alo, ahi);
	}
	return vpaddq_s32(vpaddq_s32(s0, s1), vpaddq_s32(s2, s3));
}

NB_NEON_INLINE int32x4_t q8_row(const int8_t *w, int8x16_t a0, int8x16_t a1)
{
	return vdotq_s32(vdotq_s32(vdupq_n_s32(0), vld1q_s8(w), a0), vld1q_s8(w + 16), a1);
}

#define NEON_QUAD_LINKAGE /* exported: neon_i8mm.c runs an odd last row with it */
#define NEON_QUAD_LOOKUP nb_neon_dotprod_quad_kernel
#define NEON_MM_Q mm_q_neon_dotprod
#include "kernels/neon_quad.h"

const struct nb_kernels nb_kernels_neon_dotprod = {
	.name = "neon-dotprod",
	.requires = NB_CPU_NEON | NB_CPU_DOTPROD,
	.dot_i8 = nb_dot_i8_neon_dotprod,
	.mm_i8 = mm_i8_neon_dotprod,
	.mm_q = mm_q_neon_dotprod,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
