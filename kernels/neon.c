/* ARMv8.0 NEON kernels (Cortex-A72 / Raspberry Pi 4): no SDOT, so widen
 * with SMULL and pairwise-accumulate with SADALP. */
#include "kernels/kernels.h"

#include <arm_neon.h>

static int32_t dot_i8_neon(const int8_t *a, const int8_t *b, size_t n)
{
	int32x4_t acc = vdupq_n_s32(0);
	size_t i = 0;
	int32_t sum;

	for (; i + 16 <= n; i += 16) {
		int8x16_t va = vld1q_s8(a + i), vb = vld1q_s8(b + i);
		/* int8*int8 fits int16 exactly (|-128*-128| = 16384). */
		int16x8_t lo = vmull_s8(vget_low_s8(va), vget_low_s8(vb));
		int16x8_t hi = vmull_high_s8(va, vb);
		acc = vpadalq_s16(acc, lo);
		acc = vpadalq_s16(acc, hi);
	}
	sum = vaddvq_s32(acc);
	for (; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_neon(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_mm_i8_by_dot(dot_i8_neon, c, a, b, m, n, k);
}

const struct nb_kernels nb_kernels_neon = {
	.name = "neon",
	.requires = NB_CPU_NEON,
	.dot_i8 = dot_i8_neon,
	.mm_i8 = mm_i8_neon,
	.mm_q = nb_mm_q_ref, /* no NEON quantized kernel yet: the reference */
};
