/* The NEON quantized matmul around a file's integer dot products: included
 * by neon.c and neon_dotprod.c after they define
 *   q4_usum(qs, aq, G)  the 4 rows' raw (stored-level) sums of a 4-bit group
 *   q8_row(w, a0, a1)   one 8-bit row of 32 against activations a0, a1,
 *                       as four int32 partial sums
 *   NEON_QUAD_LOOKUP    the name of the type -> quad kernel function, and
 *   NEON_QUAD_LINKAGE   its linkage (static, or empty to export it)
 *   NEON_MM_Q           the name of the mm_q function
 * (as x86_mmq.h serves avx2.c and avx512vnni.c). The float epilogue and
 * the lane order are the same for both, so are the bits. Not a module of
 * its own: no header guard on purpose. */

/* The 4 rows' sums of an 8-bit group of 32. */
NB_NEON_INLINE int32x4_t q8_sum(const uint8_t *qs, const int8_t *aq)
{
	const int8_t *w = (const int8_t *)qs;
	const int8x16_t a0 = vld1q_s8(aq), a1 = vld1q_s8(aq + 16);

	return vpaddq_s32(vpaddq_s32(q8_row(w, a0, a1), q8_row(w + 32, a0, a1)),
			  vpaddq_s32(q8_row(w + 64, a0, a1), q8_row(w + 96, a0, a1)));
}

NB_NEON_INLINE float32x4_t group(float32x4_t lane, const uint8_t *blk, const int8_t *aq, float da,
				 int32_t asum, const enum nb_neon_kind kind, const uint32_t G)
{
	const uint8_t *qs = blk + NB_NEON_QS(kind);
	int32x4_t usum = kind == NB_NEON_Q8 ? q8_sum(qs, aq) : q4_usum(qs, aq, G);

	return nb_neon_step(lane, blk, da, nb_neon_isum(usum, blk, kind, asum));
}

/* One group per iteration, the four lanes rotating after each, so only
 * one group's registers are live (A72 has no spare ones for two). */
NB_NEON_INLINE float32x4_t quad_row(const uint8_t *qb, uint32_t ng, const int8_t *aq,
				    const float *ad, const int32_t *as, const enum nb_neon_kind kind,
				    const uint32_t G, const uint32_t bs)
{
	float32x4_t l[4] = { vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f),
			     vdupq_n_f32(0.0f) };

	for (uint32_t g = 0; g < ng; g++, qb += bs, aq += G) {
		float32x4_t done = group(l[0], qb, aq, ad[g], as[g], kind, G);
		l[0] = l[1];
		l[1] = l[2];
		l[2] = l[3];
		l[3] = done;
	}
	return nb_neon_lanes_sum(l, ng);
}

#define QUAD_KERNEL(name, kind, G, block)                                                   \
	static float32x4_t name(const uint8_t *qb, uint32_t ng, const int8_t *aq,            \
				const float *ad, const int32_t *as)                          \
	{                                                                                    \
		return quad_row(qb, ng, aq, ad, as, kind, G, sizeof(block));                 \
	}
QUAD_KERNEL(quad_q4_g32, NB_NEON_Q4, 32, struct nb_q4_g32)
QUAD_KERNEL(quad_q4_g128, NB_NEON_Q4, 128, struct nb_q4_g128)
QUAD_KERNEL(quad_q4z_g32, NB_NEON_Q4Z, 32, struct nb_q4z_g32)
QUAD_KERNEL(quad_q4z_g128, NB_NEON_Q4Z, 128, struct nb_q4z_g128)
QUAD_KERNEL(quad_q8_g32, NB_NEON_Q8, 32, struct nb_q8_g32)
#undef QUAD_KERNEL

NEON_QUAD_LINKAGE nb_neon_quad_fn NEON_QUAD_LOOKUP(uint32_t type)
{
	switch (type) {
	case NB_QTYPE_Q4_G32:
		return quad_q4_g32;
	case NB_QTYPE_Q4_G128:
		return quad_q4_g128;
	case NB_QTYPE_Q4Z_G32:
		return quad_q4z_g32;
	case NB_QTYPE_Q4Z_G128:
		return quad_q4z_g128;
	case NB_QTYPE_Q8_G32:
		return quad_q8_g32;
	default:
		return NULL;
	}
}

static void NEON_MM_Q(float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		      const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	nb_neon_quad_fn f = NEON_QUAD_LOOKUP(type);

	if (!f) /* not a type this file knows: whatever the specification does */
		nb_mm_q_ref(out, ldo, a, type, w, rows, r0, r1);
	else
		nb_neon_mm_q(f, out, ldo, a, type, w, rows, r0, r1);
}

