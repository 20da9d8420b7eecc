/* AVX2 kernels (compiled with -mavx2; chosen only when cpuid says so). */
#include "kernels/kernels.h"
#include "kernels/attn.h"

#include <immintrin.h>
#include <string.h>

/* Sign-extend to int16 and use madd: exact for the whole int8 range.
 * (maddubs + sign would be faster but saturates at -128 * -128 pairs.) */
static int32_t dot_i8_avx2(const int8_t *a, const int8_t *b, size_t n)
{
	__m256i acc = _mm256_setzero_si256();
	size_t i = 0;
	int32_t sum;

	for (; i + 16 <= n; i += 16) {
		__m256i va = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + i)));
		__m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + i)));
		acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));
	}
	__m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
	s = _mm_hadd_epi32(s, s);
	s = _mm_hadd_epi32(s, s);
	sum = _mm_cvtsi128_si32(s);
	for (; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_avx2(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_mm_i8_by_dot(dot_i8_avx2, c, a, b, m, n, k);
}

/* ---- Quantized matmul: maddubs + madd (kernels/x86_mmq.h) ---------------- */

/* <= 4 * 15 * 127 per int16 lane before madd: no saturation. */
#define MMQ_DOT2(acc, u1, s1, u2, s2)                                                   \
	_mm256_add_epi32((acc), _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16((u1), (s1)), \
								    _mm256_maddubs_epi16((u2), (s2))), \
						  _mm256_set1_epi16(1)))
#define MMQ_DOT1(u, s) _mm256_madd_epi16(_mm256_maddubs_epi16((u), (s)), _mm256_set1_epi16(1))
#define MMQ_NAME mm_q_avx2
#include "kernels/x86_mmq.h"

const struct nb_kernels nb_kernels_avx2 = {
	.name = "avx2",
	.requires = NB_CPU_AVX2 | NB_CPU_F16C,
	.dot_i8 = dot_i8_avx2,
	.mm_i8 = mm_i8_avx2,
	.mm_q = mm_q_avx2,
	.attend = attn_run,
	.silu_mul = v4_silu_mul,
};
