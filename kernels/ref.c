/* Scalar reference kernels: the specification of every other backend. */
#include "kernels/kernels.h"
#include "kernels/attn.h"

#include <string.h>

/* Columns of each row unpacked at a time: a group of any size is taken in
 * steps of up to this many (the integer sums are exact in any order). */
#define SPAN 128

/* Activation rows are taken in tiles so each block is unpacked once per tile. */
#define TILE 16

/* isum[t][r] = sum over the group of stored level * activation, for the
 * tile's nt activation rows (at aq[t]) and the block's 4 rows. The levels
 * are read through quant.h's accessors only: they define the layout. */
static inline void block_sums(const struct nb_qinfo *qi, const uint8_t *blk,
			      const int8_t *const aq[TILE], uint32_t nt,
			      int32_t isum[TILE][NB_QROWS])
{
	const uint32_t G = qi->group;
	int32_t lv[NB_QROWS][SPAN];

	for (uint32_t c0 = 0; c0 < G; c0 += SPAN) {
		const uint32_t n = G - c0 < SPAN ? G - c0 : SPAN;
		for (uint32_t r = 0; r < NB_QROWS; r++)
			nb_qrow_levels(blk + nb_qblock_row_at(G, qi->bits, qi->zero_point, r), G,
				       qi->bits, c0, n, lv[r]);
		for (uint32_t t = 0; t < nt; t++) {
			const int8_t *x = aq[t] + c0;
			int32_t s[NB_QROWS] = { 0 }; /* locals: stores to isum would reload x */
			for (uint32_t r = 0; r < NB_QROWS; r++)
				for (uint32_t j = 0; j < n; j++)
					s[r] += lv[r][j] * x[j];
			for (uint32_t r = 0; r < NB_QROWS; r++)
				isum[t][r] = c0 ? isum[t][r] + s[r] : s[r];
		}
	}
}

void nb_mm_q_ref(float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		     const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint32_t G = qi->group, ng = a->kp / G;
	int32_t isum[TILE][NB_QROWS], off[NB_QROWS];
	const int8_t *aq[TILE];
	float dw[NB_QROWS];

	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * qi->block_size;
		for (uint32_t i0 = 0; i0 < a->m; i0 += TILE) {
			uint32_t nt = a->m - i0 < TILE ? a->m - i0 : TILE;
			float lane[TILE][NB_QROWS][4] = { { { 0 } } };

			for (uint32_t g = 0; g < ng; g++) {
				const uint8_t *blk = qb + g * qi->block_size;
				for (uint32_t t = 0; t < nt; t++)
					aq[t] = a->q + (size_t)(i0 + t) * a->kp + (size_t)g * G;
				block_sums(qi, blk, aq, nt, isum);
				for (uint32_t r = 0; r < NB_QROWS; r++) {
					dw[r] = nb_qblock_scale(blk, r);
					off[r] = nb_qblock_offset(blk, qi->bits, qi->zero_point, r);
				}
				for (uint32_t t = 0; t < nt; t++) {
					const size_t ai = (size_t)(i0 + t);
					const float da = a->d[ai * ng + g];
					const int32_t asum = a->sum[ai * ng + g];
					/* levels are stored + offset: subtract offset * sum(a) */
					for (uint32_t r = 0; r < NB_QROWS; r++)
						lane[t][r][g % 4] = nb_dot_epilogue_step(
							lane[t][r][g % 4], dw[r], da, isum[t][r] - off[r] * asum);
				}
			}
			for (uint32_t t = 0; t < nt; t++)
				for (uint32_t r = 0; r < NB_QROWS; r++) {
					uint64_t row = quad * NB_QROWS + r;
					if (row < r1 && row < rows)
						out[(size_t)(i0 + t) * ldo + row] =
							(lane[t][r][0] + lane[t][r][1]) +
							(lane[t][r][2] + lane[t][r][3]);
				}
		}
	}
}

const struct nb_kernels nb_kernels_scalar = {
	.name = "scalar",
	.requires = 0,
	/* .mm_q all NULL: every type runs nb_mm_q_ref, the specification */
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
