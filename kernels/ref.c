/* Scalar reference kernels: the specification of every other backend. */
#include "kernels/kernels.h"
#include "kernels/attn.h"

#include <string.h>

static int32_t dot_i8_ref(const int8_t *a, const int8_t *b, size_t n)
{
	int32_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_ref(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_mm_i8_by_dot(dot_i8_ref, c, a, b, m, n, k);
}

/* One block (4 rows x G) unpacked: levels as stored (unsigned nibbles, or
 * signed bytes for 8-bit), each row's scale and its level offset (8 for
 * symmetric 4-bit, z for zero point, 0 for 8-bit). */
struct unpacked {
	int32_t lv[NB_QROWS][128];
	float d[NB_QROWS];
	int32_t off[NB_QROWS];
};

static void unpack_block(const struct nb_qinfo *qi, const uint8_t *b, struct unpacked *u)
{
	const uint32_t G = qi->group;
	const uint8_t *qs = b + (qi->zero_point ? 12 : 8);

	for (uint32_t r = 0; r < NB_QROWS; r++) {
		nb_f16 h;
		memcpy(&h, b + 2 * r, 2);
		u->d[r] = nb_f16_to_f32(h);
		if (qi->bits == 8) {
			u->off[r] = 0;
			for (uint32_t j = 0; j < G; j++)
				u->lv[r][j] = (int8_t)qs[r * G + j];
			continue;
		}
		u->off[r] = qi->zero_point ? (b[8 + r / 2] >> (r & 1 ? 4 : 0)) & 15 : 8;
		for (uint32_t j = 0; j < G / 2; j++) {
			u->lv[r][j] = qs[r * G / 2 + j] & 15;
			u->lv[r][j + G / 2] = qs[r * G / 2 + j] >> 4;
		}
	}
}

/* Activation rows are taken in tiles so each block is unpacked once per tile. */
#define TILE 16

void nb_mm_q_ref(float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		     const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint32_t G = qi->group, ng = a->kp / G;
	struct unpacked u;

	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * qi->block_size;
		for (uint32_t i0 = 0; i0 < a->m; i0 += TILE) {
			uint32_t nt = a->m - i0 < TILE ? a->m - i0 : TILE;
			float lane[TILE][NB_QROWS][4] = { { { 0 } } };

			for (uint32_t g = 0; g < ng; g++) {
				unpack_block(qi, qb + g * qi->block_size, &u);
				for (uint32_t t = 0; t < nt; t++) {
					const size_t ai = (size_t)(i0 + t);
					const int8_t *aq = a->q + ai * a->kp + (size_t)g * G;
					const float da = a->d[ai * ng + g];
					const int32_t asum = a->sum[ai * ng + g];
					for (uint32_t r = 0; r < NB_QROWS; r++) {
						int32_t isum = 0;
						for (uint32_t j = 0; j < G; j++)
							isum += u.lv[r][j] * aq[j];
						isum -= u.off[r] * asum;
						lane[t][r][g % 4] = nb_dot_epilogue_step(lane[t][r][g % 4],
											 u.d[r], da, isum);
					}
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
	.dot_i8 = dot_i8_ref,
	.mm_i8 = mm_i8_ref,
	.mm_q = nb_mm_q_ref,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
