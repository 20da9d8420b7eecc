/* ARMv8.2 dotprod kernels (Cortex-A76/A78). This file alone is compiled
 * with +dotprod, and the table is picked only when HWCAP has ASIMDDP, so
 * the same binary still runs on a Cortex-A72. */
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/neon_common.h"

#include <arm_neon.h>

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
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 4);
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

/* 32 columns of an 8-bit row. */
NB_NEON_INLINE int32x4_t q8_row(const int8_t *w, int8x16_t a0, int8x16_t a1)
{
	return vdotq_s32(vdotq_s32(vdupq_n_s32(0), vld1q_s8(w), a0), vld1q_s8(w + 16), a1);
}

#define NEON_QUAD_EXPORT nb_neon_dotprod_quads /* neon_i8mm.c runs decode with them */
#include "kernels/neon_quad.h"

const struct nb_kernels nb_kernels_neon_dotprod = {
	.name = "neon-dotprod",
	.requires = NB_CPU_NEON | NB_CPU_DOTPROD,
	.mm_q = NEON_MM_Q_TABLE,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
