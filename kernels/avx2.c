/* AVX2 kernels (compiled with -mavx2; chosen only when cpuid says so). */
#include "kernels/kernels.h"
#include "kernels/attn.h"

#include <immintrin.h>
#include <string.h>

/* ---- Quantized matmul: maddubs + madd (kernels/x86_mmq.h) ---------------- */

/* <= 4 * 15 * 127 per int16 lane before madd: no saturation. */
#define MMQ_DOT2(acc, u1, s1, u2, s2)                                                   \
	_mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16((u1), (s1)), \
								    _mm256_maddubs_epi16((u2), (s2))), \
						  _mm256_set1_epi16(1)))
#define MMQ_DOT1(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#include "kernels/x86_mmq.h"

const struct nb_kernels nb_kernels_avx2 = {
	.name = "avx2",
	.requires = NB_CPU_AVX2 | NB_CPU_F16C,
	.mm_q = MMQ_TABLE,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
