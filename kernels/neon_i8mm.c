/* ARMv8.6 i8mm kernels: SMMLA multiplies a 2x8 by an 8x2 int8 tile into a
 * 2x2 int32 block, two rows of activations against two weight rows at once. */
#include "kernels/kernels.h"

#include <arm_neon.h>

static int32_t dot_tail(const int8_t *a, const int8_t *b, size_t from, size_t k)
{
	int32_t sum = 0;
	for (size_t i = from; i < k; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

/* c00 c01 / c10 c11 for rows a0,a1 against weight rows b0,b1. */
static void tile_2x2(int32_t *c, size_t ldc, const int8_t *a0, const int8_t *a1,
		     const int8_t *b0, const int8_t *b1, size_t k)
{
	int32x4_t acc = vdupq_n_s32(0);
	size_t i = 0;

	for (; i + 8 <= k; i += 8) {
		int8x16_t va = vcombine_s8(vld1_s8(a0 + i), vld1_s8(a1 + i));
		int8x16_t vb = vcombine_s8(vld1_s8(b0 + i), vld1_s8(b1 + i));
		acc = vmmlaq_s32(acc, va, vb);
	}
	c[0] = vgetq_lane_s32(acc, 0) + dot_tail(a0, b0, i, k);
	c[1] = vgetq_lane_s32(acc, 1) + dot_tail(a0, b1, i, k);
	c[ldc] = vgetq_lane_s32(acc, 2) + dot_tail(a1, b0, i, k);
	c[ldc + 1] = vgetq_lane_s32(acc, 3) + dot_tail(a1, b1, i, k);
}

static void mm_i8_neon_i8mm(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n,
			    size_t k)
{
	size_t i = 0, j;

	for (; i + 2 <= m; i += 2) {
		for (j = 0; j + 2 <= n; j += 2)
			tile_2x2(c + i * n + j, n, a + i * k, a + (i + 1) * k, b + j * k,
				 b + (j + 1) * k, k);
		for (; j < n; j++) {
			c[i * n + j] = nb_dot_i8_neon_dotprod(a + i * k, b + j * k, k);
			c[(i + 1) * n + j] = nb_dot_i8_neon_dotprod(a + (i + 1) * k, b + j * k, k);
		}
	}
	for (; i < m; i++)
		for (j = 0; j < n; j++)
			c[i * n + j] = nb_dot_i8_neon_dotprod(a + i * k, b + j * k, k);
}

const struct nb_kernels nb_kernels_neon_i8mm = {
	.name = "neon-i8mm",
	.requires = NB_CPU_NEON | NB_CPU_DOTPROD | NB_CPU_I8MM,
	.dot_i8 = nb_dot_i8_neon_dotprod,
	.mm_i8 = mm_i8_neon_i8mm,
	.mm_q = nb_mm_q_ref, /* no NEON quantized kernel yet: the reference */
};
