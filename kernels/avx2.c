/* AVX2 kernels (compiled with -mavx2; chosen only when cpuid says so). */
#include "kernels/kernels.h"

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

/* ---- Quantized matmul -------------------------------------------------
 * Per (quad, activation row): 4 outputs. Two groups at a time: the integer
 * partial sums of 4 rows x 2 groups are reduced by an hadd tree into one
 * vector [g0 r0..r3 | g1 r0..r3] -- the order the two blocks store their
 * scales in -- and fed to one float accumulator whose low half is lane 0
 * (even groups) and high half lane 1 (odd groups), as kernels/quant.h
 * defines. */

static inline __m256i load2x128(const uint8_t *lo, const uint8_t *hi)
{
	return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
				       _mm_loadu_si128((const __m128i *)hi), 1);
}

/* Nibbles (unsigned) x activations of one group: rows A,B of a pair, A's
 * four partial sums in lanes 0-3, B's in 4-7. qa, qb: the rows' bytes. */
static inline __m256i q4_pair(const uint8_t *qa, const uint8_t *qb, uint32_t G, const int8_t *aq)
{
	const __m256i mask = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
	__m256i acc = _mm256_setzero_si256();

	for (uint32_t c = 0; c < G / 32; c++) {
		__m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(aq + c * 16)));
		__m256i ahi = _mm256_broadcastsi128_si256(
			_mm_loadu_si128((const __m128i *)(aq + G / 2 + c * 16)));
		__m256i w = load2x128(qa + c * 16, qb + c * 16);
		__m256i lo = _mm256_and_si256(w, mask);
		__m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), mask);
		/* <= 4 * 15 * 127 per int16 lane: no saturation. */
		__m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
		acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
	}
	return acc;
}

/* Unsigned nibble sums of 4 rows x 2 groups, in scale order. */
static inline __m256i q4_usums(const struct nb_qinfo *qi, const uint8_t *b0, const uint8_t *b1,
			       const int8_t *a0, const int8_t *a1)
{
	const uint32_t G = qi->group, rb = G / 2, off = qi->zero_point ? 12 : 8;
	const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	const uint8_t *q0 = b0 + off;
	__m256i h0 = _mm256_hadd_epi32(q4_pair(q0, q0 + rb, G, a0), q4_pair(q0 + 2 * rb, q0 + 3 * rb, G, a0));
	__m256i h1 = _mm256_setzero_si256();

	if (b1) {
		const uint8_t *q1 = b1 + off;
		h1 = _mm256_hadd_epi32(q4_pair(q1, q1 + rb, G, a1), q4_pair(q1 + 2 * rb, q1 + 3 * rb, G, a1));
	}
	return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(h0, h1), perm);
}

/* int8 x int8 of one row and group (|w| <= 127, so sign() is exact). */
static inline __m256i q8_row(const int8_t *w, const int8_t *aq)
{
	__m256i vw = _mm256_loadu_si256((const __m256i *)w), va = _mm256_loadu_si256((const __m256i *)aq);
	__m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(vw, vw), _mm256_sign_epi8(va, vw));
	return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __m256i q8_sums(const uint8_t *b0, const uint8_t *b1, const int8_t *a0,
			      const int8_t *a1)
{
	const int8_t *q0 = (const int8_t *)(b0 + 8), *q1 = b1 ? (const int8_t *)(b1 + 8) : NULL;
	const __m256i z = _mm256_setzero_si256();
	__m256i t0 = _mm256_hadd_epi32(q8_row(q0, a0), q8_row(q0 + 32, a0));
	__m256i t1 = _mm256_hadd_epi32(q8_row(q0 + 64, a0), q8_row(q0 + 96, a0));
	__m256i t2 = q1 ? _mm256_hadd_epi32(q8_row(q1, a1), q8_row(q1 + 32, a1)) : z;
	__m256i t3 = q1 ? _mm256_hadd_epi32(q8_row(q1 + 64, a1), q8_row(q1 + 96, a1)) : z;
	__m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);

	return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
				_mm256_permute2x128_si256(u0, u1, 0x31));
}

/* Level offsets (8, or the zero points) of 4 rows x 2 groups. */
static inline __m256i offsets(const struct nb_qinfo *qi, const uint8_t *b0, const uint8_t *b1)
{
	int32_t o[8];

	if (!qi->zero_point)
		return _mm256_set1_epi32(qi->bits == 8 ? 0 : 8);
	for (int r = 0; r < 4; r++) {
		o[r] = (b0[8 + r / 2] >> (r & 1 ? 4 : 0)) & 15;
		o[4 + r] = b1 ? (b1[8 + r / 2] >> (r & 1 ? 4 : 0)) & 15 : 0;
	}
	return _mm256_loadu_si256((const __m256i *)o);
}

static inline __m256 scales(const uint8_t *b0, const uint8_t *b1)
{
	int64_t d0, d1 = 0;

	memcpy(&d0, b0, 8);
	if (b1)
		memcpy(&d1, b1, 8);
	return _mm256_cvtph_ps(_mm_set_epi64x(d1, d0));
}

/* The 4 outputs of one quad for one activation row. */
static void quad_row(float o[4], const struct nb_qinfo *qi, const uint8_t *qb, uint32_t ng,
		     const int8_t *aq, const float *ad, const int32_t *as)
{
	const uint32_t G = qi->group;
	__m256 acc = _mm256_setzero_ps();

	for (uint32_t g = 0; g < ng; g += 2) {
		const uint8_t *b0 = qb + (size_t)g * qi->block_size;
		const uint8_t *b1 = g + 1 < ng ? b0 + qi->block_size : NULL;
		const int8_t *a0 = aq + (size_t)g * G, *a1 = a0 + G;
		__m256i asum = _mm256_set_m128i(_mm_set1_epi32(b1 ? as[g + 1] : 0), _mm_set1_epi32(as[g]));
		__m256 da = _mm256_set_m128(_mm_set1_ps(b1 ? ad[g + 1] : 0.0f), _mm_set1_ps(ad[g]));
		__m256i isum;

		if (qi->bits == 8) {
			isum = q8_sums(b0, b1, a0, a1);
		} else {
			isum = q4_usums(qi, b0, b1, a0, a1);
			isum = _mm256_sub_epi32(isum, _mm256_mullo_epi32(offsets(qi, b0, b1), asum));
		}
		acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_mul_ps(scales(b0, b1), da),
						       _mm256_cvtepi32_ps(isum)));
	}
	_mm_storeu_ps(o, _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1)));
}

static void mm_q_avx2(float *out, size_t ldo, const struct nb_qact *a, uint32_t type,
		      const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint32_t ng = a->kp / qi->group;
	float o[4];

	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * qi->block_size;
		for (uint32_t i = 0; i < a->m; i++) {
			quad_row(o, qi, qb, ng, a->q + (size_t)i * a->kp, a->d + (size_t)i * ng,
				 a->sum + (size_t)i * ng);
			for (uint32_t r = 0; r < NB_QROWS; r++) {
				uint64_t row = quad * NB_QROWS + r;
				if (row < r1 && row < rows)
					out[(size_t)i * ldo + row] = o[r];
			}
		}
	}
}

const struct nb_kernels nb_kernels_avx2 = {
	.name = "avx2",
	.requires = NB_CPU_AVX2 | NB_CPU_F16C,
	.dot_i8 = dot_i8_avx2,
	.mm_i8 = mm_i8_avx2,
	.mm_q = mm_q_avx2,
};
