/* Shared pieces of the NEON quantized matmuls (neon.c, neon_dotprod.c,
 * neon_i8mm.c). Only baseline ARMv8.0 instructions live here, so every one
 * of those files can include it whatever its -march.
 *
 * The float epilogue is kernels/quant.h's, on 4 rows at once: four
 * accumulators (the lanes, group g feeding lane g % 4), and per group
 * s = d_w * d_a, t = s * (float)isum, lane = lane + t, each its own
 * rounding (the build has -ffp-contract=off, so no FMLA);
 * out = (lane0 + lane1) + (lane2 + lane3). */
#ifndef NB_NEON_COMMON_H
#define NB_NEON_COMMON_H

#include "kernels/kernels.h"

#include <arm_neon.h>

/* The per-type kernels are one template instantiated with constant G,
 * block size and kind; forcing the inlining keeps those constant. */
#define NB_NEON_INLINE static inline __attribute__((always_inline))

enum nb_neon_kind {
	NB_NEON_Q4,  /* symmetric 4-bit: offset NB_Q4_BIAS */
	NB_NEON_Q4Z, /* 4-bit with zero points: offset z */
	NB_NEON_Q8,  /* 8-bit: no offset */
};

/* The kind of a type of kernels/quant.h's list. */
#define NB_NEON_KIND(bits, zp) ((bits) == 8 ? NB_NEON_Q8 : (zp) ? NB_NEON_Q4Z : NB_NEON_Q4)

/* The 4 outputs of one quad for one activation row: qb the quad's first
 * block, ng groups; aq, ad, as the row's levels, scales and block sums. */
typedef float32x4_t (*nb_neon_quad_fn)(const uint8_t *qb, uint32_t ng, const int8_t *aq,
				       const float *ad, const int32_t *as);

/* The dotprod backend's quad kernels, at type - NB_QTYPE_MIN; the i8mm
 * backend runs decode and an odd last activation row with them. */
extern const nb_neon_quad_fn nb_neon_dotprod_quads[NB_QTYPE_COUNT];

/* A block's levels (kernels/quant.h's layout). */
NB_NEON_INLINE const uint8_t *nb_neon_levels(const uint8_t *blk, enum nb_neon_kind kind)
{
	return nb_qblock_levels(blk, kind == NB_NEON_Q4Z);
}

/* FCVTL is exact for every binary16 (subnormals included), like
 * nb_f16_to_f32; bytes, not halfwords, so no alignment is assumed. */
NB_NEON_INLINE float32x4_t nb_neon_scales(const uint8_t *blk)
{
	return vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(blk + NB_QBLOCK_SCALES)));
}

/* The 4 rows' zero points (nb_qblock_zero): row 2i in the low nibble of
 * byte i, 2i+1 high, so row r is bits 4r..4r+3 of the 16-bit word. */
NB_NEON_INLINE int32x4_t nb_neon_zero_points(const uint8_t *blk)
{
	static const int32_t shifts[4] = { 0, -4, -8, -12 };
	const uint8_t *zp = blk + NB_QBLOCK_ZEROS;
	uint32x4_t z = vdupq_n_u32((uint32_t)zp[0] | (uint32_t)zp[1] << 8);

	z = vshlq_u32(z, vld1q_s32(shifts));
	return vreinterpretq_s32_u32(vandq_u32(z, vdupq_n_u32(15)));
}

/* isum = sum(level * a) - offset * sum(a): exact in int32 (kernels.h caps k). */
NB_NEON_INLINE int32x4_t nb_neon_isum(int32x4_t usum, const uint8_t *blk, enum nb_neon_kind kind,
				      int32_t asum)
{
	if (kind == NB_NEON_Q8)
		return usum;
	if (kind == NB_NEON_Q4)
		return vmlsq_s32(usum, vdupq_n_s32(NB_Q4_BIAS), vdupq_n_s32(asum));
	return vmlsq_s32(usum, nb_neon_zero_points(blk), vdupq_n_s32(asum));
}

/* lane + (d_w * d_a) * (float)isum: three roundings in the order of
 * nb_dot_epilogue_step, d_w the first operand as there. */
NB_NEON_INLINE float32x4_t nb_neon_step(float32x4_t lane, const uint8_t *blk, float da,
				      int32x4_t isum)
{
	float32x4_t s = vmulq_f32(nb_neon_scales(blk), vdupq_n_f32(da));

	return vaddq_f32(lane, vmulq_f32(s, vcvtq_f32_s32(isum)));
}

/* The kernels rotate their four lanes after every group, l[0] always the
 * next group's: after ng groups lane k is l[(k - ng) mod 4]. Returns
 * (lane0 + lane1) + (lane2 + lane3). */
NB_NEON_INLINE float32x4_t nb_neon_lanes_sum(const float32x4_t l[4], uint32_t ng)
{
	const uint32_t s = (4 - (ng & 3)) & 3; /* where lane 0 is */

	return vaddq_f32(vaddq_f32(l[s], l[(s + 1) & 3]), vaddq_f32(l[(s + 2) & 3], l[(s + 3) & 3]));
}

/* 64-bit halves: [x.lo | y.lo] and [x.hi | y.hi]. */
NB_NEON_INLINE int8x16_t nb_neon_zip1_64(int8x16_t x, int8x16_t y)
{
	return vreinterpretq_s8_s64(vzip1q_s64(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)));
}

NB_NEON_INLINE int8x16_t nb_neon_zip2_64(int8x16_t x, int8x16_t y)
{
	return vreinterpretq_s8_s64(vzip2q_s64(vreinterpretq_s64_s8(x), vreinterpretq_s64_s8(y)));
}

/* Low and high nibbles of 16 bytes, as int8 0..15. */
NB_NEON_INLINE int8x16_t nb_neon_lo(uint8x16_t w)
{
	return vreinterpretq_s8_u8(vandq_u8(w, vdupq_n_u8(15)));
}

NB_NEON_INLINE int8x16_t nb_neon_hi(uint8x16_t w)
{
	return vreinterpretq_s8_u8(vshrq_n_u8(w, 4));
}

/* Writes the quad's outputs that exist (row < rows) and are asked for
 * (row < r1) into one output row o. */
NB_NEON_INLINE void nb_neon_store(float *o, float32x4_t v, uint64_t quad, uint64_t rows,
				  uint64_t r1)
{
	const uint64_t row = quad * NB_QROWS, end = rows < r1 ? rows : r1;
	float t[NB_QROWS];

	if (row + NB_QROWS <= end) {
		vst1q_f32(o + row, v);
		return;
	}
	vst1q_f32(t, v);
	for (uint32_t r = 0; r < NB_QROWS; r++)
		if (row + r < end)
			o[row + r] = t[r];
}

/* The whole product of a type of group G and block size bs, one quad
 * kernel call per (quad, activation row): the quad's blocks stay in L1
 * while every activation row passes over them. */
NB_NEON_INLINE void nb_neon_mm_q(nb_neon_quad_fn f, const uint32_t G, const uint32_t bs, float *out,
				 size_t ldo, const struct nb_qact *a, const void *w, uint64_t rows,
				 uint64_t r0, uint64_t r1)
{
	const uint32_t ng = a->kp / G;

	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * bs;
		for (uint32_t i = 0; i < a->m; i++)
			nb_neon_store(out + (size_t)i * ldo,
				      f(qb, ng, a->q + (size_t)i * a->kp, a->d + (size_t)i * ng,
					a->sum + (size_t)i * ng),
				      quad, rows, r1);
	}
}

#endif
