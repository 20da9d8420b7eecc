/* The NEON quantized matmul around a file's integer dot products: included
 * by neon.c and neon_dotprod.c after they define
 *   q4_usum(qs, aq, G)  the 4 rows' raw (stored-level) sums of a 4-bit group
 *   q8_row(w, a0, a1)   32 columns of one 8-bit row against activations
 *                       a0, a1, as four int32 partial sums
 * and, to export the quad kernels as a table of that name, NEON_QUAD_EXPORT
 * (as x86_mmq.h serves avx2.c and avx512vnni.c). It defines one kernel per
 * type of kernels/quant.h's list, any group, and NEON_MM_Q_TABLE, the
 * backend's mm_q table of them. The float epilogue and the lane order are
 * the same for both, so are the bits. Not a module of its own: no header
 * guard on purpose. */

/* The 4 rows' sums of an 8-bit group, 32 columns per step. */
NB_NEON_INLINE int32x4_t q8_sum(const uint8_t *qs, const int8_t *aq, const uint32_t G)
{
	const int8_t *w = (const int8_t *)qs;
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 8);
	int32x4_t s = vdupq_n_s32(0);

	for (uint32_t c = 0; c < G; c += 32) {
		const int8x16_t a0 = vld1q_s8(aq + c), a1 = vld1q_s8(aq + c + 16);
		int32x4_t t = vpaddq_s32(vpaddq_s32(q8_row(w + c, a0, a1), q8_row(w + rb + c, a0, a1)),
					 vpaddq_s32(q8_row(w + 2 * rb + c, a0, a1),
						    q8_row(w + 3 * rb + c, a0, a1)));
		s = c ? vaddq_s32(s, t) : t;
	}
	return s;
}

NB_NEON_INLINE float32x4_t group(float32x4_t lane, const uint8_t *blk, const int8_t *aq, float da,
				 int32_t asum, const enum nb_neon_kind kind, const uint32_t G)
{
	const uint8_t *qs = nb_neon_levels(blk, kind);
	int32x4_t usum = kind == NB_NEON_Q8 ? q8_sum(qs, aq, G) : q4_usum(qs, aq, G);

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

/* One kernel per type of the list: its quad kernel, and the product. noipa
 * keeps each quad kernel compiled alone, as when it was only reached
 * through a pointer (no inlining, no interprocedural specialization). */
#define NEON_TYPE(NAME, name, G, bits, zp)                                                     \
	static __attribute__((noipa)) float32x4_t quad_##name(                             \
		const uint8_t *qb, uint32_t ng, const int8_t *aq, const float *ad,             \
		const int32_t *as)                                                             \
	{                                                                                     \
		return quad_row(qb, ng, aq, ad, as, NB_NEON_KIND(bits, zp), G,               \
				NB_QBLOCK_BYTES(G, bits, zp));                                \
	}                                                                                     \
	static void mm_q_##name(float *out, size_t ldo, const struct nb_qact *a, const void *w, \
				uint64_t rows, uint64_t r0, uint64_t r1)                      \
	{                                                                                     \
		nb_neon_mm_q(quad_##name, G, NB_QBLOCK_BYTES(G, bits, zp), out, ldo, a, w,   \
			     rows, r0, r1);                                                   \
	}
NB_QTYPE_LIST(NEON_TYPE)
#undef NEON_TYPE

#define NEON_MM_Q_ENTRY(NAME, name, G, bits, zp) [NB_QTYPE_##NAME - NB_QTYPE_MIN] = mm_q_##name,
/* The backend's struct nb_kernels.mm_q: a kernel for every type. */
#define NEON_MM_Q_TABLE { NB_QTYPE_LIST(NEON_MM_Q_ENTRY) }

#ifdef NEON_QUAD_EXPORT
#define NEON_QUAD_ENTRY(NAME, name, G, bits, zp) [NB_QTYPE_##NAME - NB_QTYPE_MIN] = quad_##name,
const nb_neon_quad_fn NEON_QUAD_EXPORT[NB_QTYPE_COUNT] = { NB_QTYPE_LIST(NEON_QUAD_ENTRY) };
#undef NEON_QUAD_ENTRY
#endif
