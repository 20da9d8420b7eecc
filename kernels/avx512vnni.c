/* AVX-512 VNNI kernels. The group-32 4-bit formats (q4_g32, q4z_g32: the
 * default) run on 512-bit registers, four groups per step (x86_mmq.h,
 * quad_tile_g32); the others on 256-bit registers (AVX512VL) with the same
 * hadd tree as avx2.c. vpdpbusd sums four u8 x s8 products into each int32
 * lane in one instruction, where AVX2 needs maddubs + madd + add. The same
 * exact integer sums and the float epilogue of kernels/quant.h: the same
 * bits. Chosen only when cpuid says AVX512F, VL, BW and VNNI and the OS
 * saves the AVX-512 state. */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#define MMQ_DOT2(acc, u1, s1, u2, s2) \
	_mm256_dpbusd_epi32(_mm256_dpbusd_epi32((acc), (u1), (s1)), (u2), (s2))
#define MMQ_DOT1(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define MMQ_NAME mm_q_vnni
#define MMQ_TILE 8
#define MMQ_ZMM
#include "kernels/x86_mmq.h"

/* int8 x int8 through the AVX2 table: only the quantized matmul matters here. */
static int32_t dot_i8_vnni(const int8_t *a, const int8_t *b, size_t n)
{
	return nb_kernels_avx2.dot_i8(a, b, n);
}

static void mm_i8_vnni(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_kernels_avx2.mm_i8(c, a, b, m, n, k);
}

const struct nb_kernels nb_kernels_avx512vnni = {
	.name = "avx512vnni",
	.requires = NB_CPU_AVX2 | NB_CPU_F16C | NB_CPU_AVX512VNNI,
	.act_flags = NB_QACT_INTERLEAVED,
	.dot_i8 = dot_i8_vnni,
	.mm_i8 = mm_i8_vnni,
	.mm_q = mm_q_vnni,
};
