/* ARMv8.2 dotprod kernels (Cortex-A76/A78). This file alone is compiled
 * with +dotprod, and the table is picked only when HWCAP has ASIMDDP, so
 * the same binary still runs on a Cortex-A72. */
#include "kernels/kernels.h"

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

const struct nb_kernels nb_kernels_neon_dotprod = {
	.name = "neon-dotprod",
	.requires = NB_CPU_NEON | NB_CPU_DOTPROD,
	.dot_i8 = nb_dot_i8_neon_dotprod,
	.mm_i8 = mm_i8_neon_dotprod,
	.mm_q = nb_mm_q_ref, /* no NEON quantized kernel yet: the reference */
};
