/* ARMv8.6 i8mm kernels: SMMLA multiplies a 2x8 by an 8x2 int8 tile into a
 * 2x2 int32 block, two rows of activations against two weight rows at once. */
#include "kernels/kernels.h"
#include "kernels/attn.h"
#include "kernels/neon_common.h"

#include <arm_neon.h>

/* ---- Quantized matmul -------------------------------------------------
 * With two or more activation rows (prompt, batch): per (quad, pair of
 * activation rows), per group, SMMLA tiles of 2 activation rows x 2 weight
 * rows x 8 elements. ZIP1/ZIP2 on 64-bit halves build the tiles: two
 * weight rows' 16 nibble bytes give [row a bytes 0-7 | row b bytes 0-7]
 * and [.. 8-15 | .. 8-15], then AND/USHR make the element-j and
 * element-(j + G/2) operands; the two activation rows are zipped alike.
 * Accumulators [x0.w0 x0.w1 x1.w0 x1.w1] and [x0.w2 x0.w3 x1.w2 x1.w3]
 * zip back into [r0 r1 r2 r3] of each activation row, the order of the
 * scales. Per G = 32 block and 2 activation rows: 8 loads, 8+2 ZIP,
 * 8 AND/USHR, 8 SMMLA (16 SDOT and 6 ADDP with dotprod). An odd last row
 * goes through the dotprod kernel; the float epilogue is the same. */

/* Nibble rows a, b (16 bytes each) against zipped activations: l* for
 * elements j, h* for j + G/2; *a bytes 0-7, *b bytes 8-15. */
NB_NEON_INLINE int32x4_t q4_mmla(int32x4_t t, uint8x16_t wa, uint8x16_t wb, int8x16_t la,
				 int8x16_t lb, int8x16_t ha, int8x16_t hb)
{
	uint8x16_t z1 = vreinterpretq_u8_s8(nb_neon_zip1_64(vreinterpretq_s8_u8(wa),
							     vreinterpretq_s8_u8(wb)));
	uint8x16_t z2 = vreinterpretq_u8_s8(nb_neon_zip2_64(vreinterpretq_s8_u8(wa),
							     vreinterpretq_s8_u8(wb)));

	t = vmmlaq_s32(t, la, nb_neon_lo(z1));
	t = vmmlaq_s32(t, lb, nb_neon_lo(z2));
	t = vmmlaq_s32(t, ha, nb_neon_hi(z1));
	return vmmlaq_s32(t, hb, nb_neon_hi(z2));
}

/* Unsigned-nibble sums of the 4 rows of one block for activation rows x0
 * (into *u0) and x1 (into *u1). */
NB_NEON_INLINE void q4_tile(int32x4_t *u0, int32x4_t *u1, const uint8_t *qs, const int8_t *x0,
			    const int8_t *x1, const uint32_t G)
{
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 4);
	int32x4_t t01 = vdupq_n_s32(0), t23 = vdupq_n_s32(0);

	/* G = 128: four chunks in straight line, no loop overhead */
#pragma GCC unroll 4
	for (uint32_t c = 0; c < rb; c += 16) {
		const int8x16_t l0 = vld1q_s8(x0 + c), l1 = vld1q_s8(x1 + c);
		const int8x16_t h0 = vld1q_s8(x0 + rb + c), h1 = vld1q_s8(x1 + rb + c);
		const int8x16_t la = nb_neon_zip1_64(l0, l1), lb = nb_neon_zip2_64(l0, l1);
		const int8x16_t ha = nb_neon_zip1_64(h0, h1), hb = nb_neon_zip2_64(h0, h1);
		t01 = q4_mmla(t01, vld1q_u8(qs + c), vld1q_u8(qs + rb + c), la, lb, ha, hb);
		t23 = q4_mmla(t23, vld1q_u8(qs + 2 * rb + c), vld1q_u8(qs + 3 * rb + c), la, lb,
			      ha, hb);
	}
	*u0 = vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(t01), vreinterpretq_s64_s32(t23)));
	*u1 = vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(t01), vreinterpretq_s64_s32(t23)));
}

/* 16 elements of 8-bit rows a, b against zipped activations (xa bytes
 * 0-7, xb bytes 8-15). */
NB_NEON_INLINE int32x4_t q8_mmla(int32x4_t t, const int8_t *wa, const int8_t *wb, int8x16_t xa,
				 int8x16_t xb)
{
	int8x16_t va = vld1q_s8(wa), vb = vld1q_s8(wb);

	t = vmmlaq_s32(t, xa, nb_neon_zip1_64(va, vb));
	return vmmlaq_s32(t, xb, nb_neon_zip2_64(va, vb));
}

NB_NEON_INLINE void q8_tile(int32x4_t *u0, int32x4_t *u1, const uint8_t *qs, const int8_t *x0,
			    const int8_t *x1, const uint32_t G)
{
	const int8_t *w = (const int8_t *)qs;
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 8);
	int32x4_t t01 = vdupq_n_s32(0), t23 = vdupq_n_s32(0);

	for (uint32_t c = 0; c < G; c += 16) {
		const int8x16_t v0 = vld1q_s8(x0 + c), v1 = vld1q_s8(x1 + c);
		const int8x16_t xa = nb_neon_zip1_64(v0, v1), xb = nb_neon_zip2_64(v0, v1);
		t01 = q8_mmla(t01, w + c, w + rb + c, xa, xb);
		t23 = q8_mmla(t23, w + 2 * rb + c, w + 3 * rb + c, xa, xb);
	}
	*u0 = vreinterpretq_s32_s64(vzip1q_s64(vreinterpretq_s64_s32(t01), vreinterpretq_s64_s32(t23)));
	*u1 = vreinterpretq_s32_s64(vzip2q_s64(vreinterpretq_s64_s32(t01), vreinterpretq_s64_s32(t23)));
}

/* One group for two activation rows, lanes l0 and l1 (one per row). g
 * indexes the rows' scales and sums; x0, x1 the group's activations. */
NB_NEON_INLINE void group2(float32x4_t *l0, float32x4_t *l1, const uint8_t *blk, const int8_t *x0,
			   size_t kp, const float *ad, const int32_t *as, uint32_t ng, uint32_t g,
			   const enum nb_neon_kind kind, const uint32_t G)
{
	const uint8_t *qs = nb_neon_levels(blk, kind);
	int32x4_t u0, u1;

	if (kind == NB_NEON_Q8)
		q8_tile(&u0, &u1, qs, x0, x0 + kp, G);
	else
		q4_tile(&u0, &u1, qs, x0, x0 + kp, G);
	*l0 = nb_neon_step(*l0, blk, ad[g], nb_neon_isum(u0, blk, kind, as[g]));
	*l1 = nb_neon_step(*l1, blk, ad[ng + g], nb_neon_isum(u1, blk, kind, as[ng + g]));
}

/* The 4 outputs of one quad for activation rows aq and aq + kp (their
 * scales and sums at ad, ad + ng and as, as + ng): o[0] and o[1]. */
typedef void (*pair_fn)(float32x4_t o[2], const uint8_t *qb, uint32_t ng, const int8_t *aq,
			size_t kp, const float *ad, const int32_t *as);

NB_NEON_INLINE void quad_pair(float32x4_t o[2], const uint8_t *qb, uint32_t ng, const int8_t *aq,
			      size_t kp, const float *ad, const int32_t *as,
			      const enum nb_neon_kind kind, const uint32_t G, const uint32_t bs)
{
	/* Per activation row, the four lanes, this group's first, rotating
	 * after each group. */
	const float32x4_t z = vdupq_n_f32(0.0f);
	float32x4_t l0[4] = { z, z, z, z }, l1[4] = { z, z, z, z };

	for (uint32_t g = 0; g < ng; g++, qb += bs, aq += G) {
		float32x4_t done0 = l0[0], done1 = l1[0];
		group2(&done0, &done1, qb, aq, kp, ad, as, ng, g, kind, G);
		for (int k = 0; k < 3; k++) {
			l0[k] = l0[k + 1];
			l1[k] = l1[k + 1];
		}
		l0[3] = done0;
		l1[3] = done1;
	}
	o[0] = nb_neon_lanes_sum(l0, ng);
	o[1] = nb_neon_lanes_sum(l1, ng);
}

/* The product with a type's pair kernel f2 and the dotprod backend's quad
 * kernel f1 of the same type (group G, block size bs). */
NB_NEON_INLINE void mm_q_pairs(pair_fn f2, nb_neon_quad_fn f1, const uint32_t G, const uint32_t bs,
			       float *out, size_t ldo, const struct nb_qact *a, const void *w,
			       uint64_t rows, uint64_t r0, uint64_t r1)
{
	const uint32_t ng = a->kp / G;

	if (a->m < 2) { /* decode: SMMLA would waste half of every tile */
		nb_neon_mm_q(f1, G, bs, out, ldo, a, w, rows, r0, r1);
		return;
	}
	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * bs;
		uint32_t i = 0;
		for (; i + 2 <= a->m; i += 2) {
			float32x4_t o[2];
			f2(o, qb, ng, a->q + (size_t)i * a->kp, a->kp, a->d + (size_t)i * ng,
			   a->sum + (size_t)i * ng);
			nb_neon_store(out + (size_t)i * ldo, o[0], quad, rows, r1);
			nb_neon_store(out + (size_t)(i + 1) * ldo, o[1], quad, rows, r1);
		}
		if (i < a->m)
			nb_neon_store(out + (size_t)i * ldo,
				      f1(qb, ng, a->q + (size_t)i * a->kp, a->d + (size_t)i * ng,
					 a->sum + (size_t)i * ng),
				      quad, rows, r1);
	}
}

/* One kernel per type of kernels/quant.h's list: its pair kernel (noipa:
 * compiled alone, as neon_quad.h's quad kernels), and the product. */
#define I8MM_TYPE(NAME, name, G, bits, zp)                                                     \
	static __attribute__((noipa)) void pair_##name(                                    \
		float32x4_t o[2], const uint8_t *qb, uint32_t ng, const int8_t *aq, size_t kp, \
		const float *ad, const int32_t *as)                                            \
	{                                                                                     \
		quad_pair(o, qb, ng, aq, kp, ad, as, NB_NEON_KIND(bits, zp), G,              \
			  NB_QBLOCK_BYTES(G, bits, zp));                                      \
	}                                                                                     \
	static void mm_q_##name(float *out, size_t ldo, const struct nb_qact *a, const void *w, \
				uint64_t rows, uint64_t r0, uint64_t r1)                      \
	{                                                                                     \
		mm_q_pairs(pair_##name, nb_neon_dotprod_quads[NB_QTYPE_##NAME - NB_QTYPE_MIN], \
			   G, NB_QBLOCK_BYTES(G, bits, zp), out, ldo, a, w, rows, r0, r1);    \
	}
NB_QTYPE_LIST(I8MM_TYPE)
#undef I8MM_TYPE

#define I8MM_ENTRY(NAME, name, G, bits, zp) [NB_QTYPE_##NAME - NB_QTYPE_MIN] = mm_q_##name,

const struct nb_kernels nb_kernels_neon_i8mm = {
	.name = "neon-i8mm",
	.requires = NB_CPU_NEON | NB_CPU_DOTPROD | NB_CPU_I8MM,
	.mm_q = { NB_QTYPE_LIST(I8MM_ENTRY) },
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
