/* AVX-512 VNNI kernels. The group-32 4-bit formats (q4_g32, q4z_g32: the
 * default) run on 512-bit registers, four groups per step (x86_mmq.h,
 * quad_tile_g32), the group-128 4-bit ones a 64-byte row per register
 * (g128_group); the others (8-bit, and 4-bit of any other group) on 256-bit
 * registers (AVX512VL) with the same hadd tree as avx2.c. vpdpbusd sums four u8 x s8 products into each int32
 * lane in one instruction, where AVX2 needs maddubs + madd + add. The same
 * exact integer sums and the float epilogue of kernels/quant.h: the same
 * bits. Chosen only when cpuid says AVX512F, VL, BW and VNNI and the OS
 * saves the AVX-512 state. */
#include "kernels/kernels.h"
#include "kernels/vec.h"

#include <immintrin.h>
#include <string.h>

static v4f attn_scores4_zmm(float *att, float *scratch, const float *q, const float *k,
			    const float *v, uint32_t hd, uint32_t n, float scale);
static void attn_wsum4_zmm(float *out, const float *att, const float *v, uint32_t hd, uint32_t n,
			   uint32_t i0);
#define ATTN_SCORES4 attn_scores4_zmm
#define ATTN_WSUM4 attn_wsum4_zmm
#include "kernels/attn.h"

#define MMQ_DOT2(acc, u1, s1, u2, s2) \
	_mm256_dpbusd_epi32(_mm256_dpbusd_epi32((acc), (u1), (s1)), (u2), (s2))
#define MMQ_DOT1(u, s) _mm256_dpbusd_epi32(_mm256_setzero_si256(), (u), (s))
#define MMQ_TILE 8
#define MMQ_ZMM
#include "kernels/x86_mmq.h"

/* ---- attention (kernels/attn.h) on 512-bit registers ------------------- */

/* Each group of four lanes: (l0 + l1) + (l2 + l3), in all four lanes
 * (the later adds are the same sums with the operands swapped). */
static inline __m512 hsum4_zmm(__m512 s)
{
	s = _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm512_add_ps(s, _mm512_permute_ps(s, _MM_SHUFFLE(1, 0, 3, 2)));
}

static inline __m512 mul_key(__m512 acc, __m512 q, const float *k)
{
	return _mm512_add_ps(acc, _mm512_mul_ps(q, _mm512_broadcast_f32x4(_mm_loadu_ps(k))));
}

/* The spec's running maximum over the four keys of r (key-major): maxps
 * is x > m ? x : m, NaN and signed zeros included. */
static inline __m128 max_keys(__m128 m, __m512 r)
{
	m = _mm_max_ps(_mm512_extractf32x4_ps(r, 1), _mm_max_ps(_mm512_castps512_ps128(r), m));
	return _mm_max_ps(_mm512_extractf32x4_ps(r, 3), _mm_max_ps(_mm512_extractf32x4_ps(r, 2), m));
}

/* attn_scores4_v4's sums with the four heads side by side: lane group h
 * of a register holds head h's four partial sums of one key, so a key's
 * four floats are loaded once (broadcast) for four heads; eight keys per
 * step (eight chains of adds), their results transposed to att[4 t + h]
 * in registers. */
static v4f attn_scores4_zmm(float *att, float *scratch, const float *q, const float *k,
			    const float *v, uint32_t hd, uint32_t n, float scale)
{
	const __m512i key_major = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7,
						    11, 15);
	const __m512 sc = _mm512_set1_ps(scale);
	float *qi = scratch; /* qi[16 c + 4 h + j] = q[h][4 c + j] */
	__m128 m = _mm_setzero_ps(); /* the first key's scores start it */
	uint32_t t = 0;

	for (uint32_t c = 0; c < hd / 4; c++)
		for (uint32_t h = 0; h < 4; h++)
			memcpy(qi + 16 * c + 4 * h, q + (size_t)h * hd + 4 * c, 4 * sizeof(float));
	for (; t + 8 <= n; t += 8) {
		const float *k0 = k + (size_t)t * hd, *k4 = k0 + 4 * (size_t)hd;
		/* The cache went out to memory while the weights streamed by: a
		 * lone stream the hardware prefetcher ramps up slowly on. Keys a
		 * step ahead, and the values the weighted sum reads next. */
		for (uint32_t c = 0; c < 8 * hd; c += 16) {
			_mm_prefetch((const char *)(k0 + 8 * (size_t)hd + c), _MM_HINT_T0);
			_mm_prefetch((const char *)(v + (size_t)t * hd + c), _MM_HINT_T1);
		}
		__m512 s[8], r;

		/* named sums, so that they stay in registers */
		__m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0,
		       s6 = s0, s7 = s0;
		for (uint32_t i = 0; i < hd; i += 4) {
			const __m512 qc = _mm512_loadu_ps(qi + 4 * i);
			s0 = mul_key(s0, qc, k0 + i);
			s1 = mul_key(s1, qc, k0 + hd + i);
			s2 = mul_key(s2, qc, k0 + 2 * hd + i);
			s3 = mul_key(s3, qc, k0 + 3 * hd + i);
			s4 = mul_key(s4, qc, k4 + i);
			s5 = mul_key(s5, qc, k4 + hd + i);
			s6 = mul_key(s6, qc, k4 + 2 * hd + i);
			s7 = mul_key(s7, qc, k4 + 3 * hd + i);
		}
		s[0] = s0, s[1] = s1, s[2] = s2, s[3] = s3, s[4] = s4, s[5] = s5, s[6] = s6, s[7] = s7;
		for (int half = 0; half < 2; half++) {
			const __m512 *h = s + 4 * half;
			/* lane 4 h + j: key t + j of head h */
			r = _mm512_mask_blend_ps(0x2222, hsum4_zmm(h[0]), hsum4_zmm(h[1]));
			r = _mm512_mask_blend_ps(0x4444, r, hsum4_zmm(h[2]));
			r = _mm512_mask_blend_ps(0x8888, r, hsum4_zmm(h[3]));
			r = _mm512_mul_ps(_mm512_permutexvar_ps(key_major, r), sc);
			_mm512_storeu_ps(att + 4 * (t + 4 * half), r);
			if (t + half == 0)
				m = _mm512_castps512_ps128(r);
			m = max_keys(m, r);
		}
	}
	for (; t < n; t++) {
		const float *kt = k + (size_t)t * hd;
		__m512 s = _mm512_setzero_ps();
		__m128 r;

		for (uint32_t i = 0; i < hd; i += 4)
			s = mul_key(s, _mm512_loadu_ps(qi + 4 * i), kt + i);
		s = _mm512_permutexvar_ps(key_major, hsum4_zmm(s));
		r = _mm_mul_ps(_mm512_castps512_ps128(s), _mm_set1_ps(scale));
		_mm_storeu_ps(att + 4 * t, r);
		m = t == 0 ? r : _mm_max_ps(r, m);
	}
	return (v4f)m;
}

/* attn_wsum4_v4's sums sixteen elements per register, up to sixteen
 * registers of sums per pass (64 elements of four heads): a value row is
 * loaded once for four heads and the adds have independent chains. */
static void attn_wsum4_zmm(float *out, const float *att, const float *v, uint32_t hd, uint32_t n,
			   uint32_t i0)
{
	for (; i0 + 64 <= hd; i0 += 64) {
		/* named sums, so that they stay in registers: head h, slice s */
		__m512 o00 = _mm512_setzero_ps(), o01 = o00, o02 = o00, o03 = o00, o10 = o00,
		       o11 = o00, o12 = o00, o13 = o00, o20 = o00, o21 = o00, o22 = o00, o23 = o00,
		       o30 = o00, o31 = o00, o32 = o00, o33 = o00;

		for (uint32_t t = 0; t < n; t++) {
			const float *vt = v + (size_t)t * hd + i0, *p = att + 4 * t;
			const __m512 v0 = _mm512_loadu_ps(vt), v1 = _mm512_loadu_ps(vt + 16);
			const __m512 v2 = _mm512_loadu_ps(vt + 32), v3 = _mm512_loadu_ps(vt + 48);
#define WSUM_HEAD(h)                                                           \
	do {                                                                   \
		const __m512 a = _mm512_set1_ps(p[h]);                         \
		o##h##0 = _mm512_add_ps(o##h##0, _mm512_mul_ps(a, v0));        \
		o##h##1 = _mm512_add_ps(o##h##1, _mm512_mul_ps(a, v1));        \
		o##h##2 = _mm512_add_ps(o##h##2, _mm512_mul_ps(a, v2));        \
		o##h##3 = _mm512_add_ps(o##h##3, _mm512_mul_ps(a, v3));        \
	} while (0)
			WSUM_HEAD(0);
			WSUM_HEAD(1);
			WSUM_HEAD(2);
			WSUM_HEAD(3);
#undef WSUM_HEAD
		}
		const __m512 o[4][4] = { { o00, o01, o02, o03 }, { o10, o11, o12, o13 },
					 { o20, o21, o22, o23 }, { o30, o31, o32, o33 } };
		for (int h = 0; h < 4; h++)
			for (int s = 0; s < 4; s++)
				_mm512_storeu_ps(out + (size_t)h * hd + i0 + 16 * s, o[h][s]);
	}
	for (; i0 + 16 <= hd; i0 += 16) {
		__m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;

		for (uint32_t t = 0; t < n; t++) {
			const __m512 vt = _mm512_loadu_ps(v + (size_t)t * hd + i0);
			const float *p = att + 4 * t;
			o0 = _mm512_add_ps(o0, _mm512_mul_ps(_mm512_set1_ps(p[0]), vt));
			o1 = _mm512_add_ps(o1, _mm512_mul_ps(_mm512_set1_ps(p[1]), vt));
			o2 = _mm512_add_ps(o2, _mm512_mul_ps(_mm512_set1_ps(p[2]), vt));
			o3 = _mm512_add_ps(o3, _mm512_mul_ps(_mm512_set1_ps(p[3]), vt));
		}
		_mm512_storeu_ps(out + i0, o0);
		_mm512_storeu_ps(out + hd + i0, o1);
		_mm512_storeu_ps(out + 2 * (size_t)hd + i0, o2);
		_mm512_storeu_ps(out + 3 * (size_t)hd + i0, o3);
	}
	attn_wsum4_v4(out, att, v, hd, n, i0);
}

/* ---- elementwise: SwiGLU, activation quantization ---------------------- */

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

NB_DEFINE_VEXP(v16_exp, v16f, v16i)

/* v4_silu_mul sixteen lanes at a time, each lane the same operations. */
static void silu_mul_zmm(float *gate, const float *up, size_t n)
{
	size_t i = 0;

	for (; i + 16 <= n; i += 16) {
		v16f g, u;
		memcpy(&g, gate + i, sizeof(g));
		memcpy(&u, up + i, sizeof(u));
		g = g / (1.0f + v16_exp(-g)) * u;
		memcpy(gate + i, &g, sizeof(g));
	}
	v4_silu_mul(gate + i, up + i, n - i);
}

/* kernels/quant.c's quant_block_v4, sixteen lanes at a time: the maximum
 * of |x| (exact in any order: NaN never wins, as there), x / d rounded half
 * away from zero by truncating |y| + 0.5, clamped to -127..127; the sum is
 * an exact integer sum. */
static void quant_block_zmm(const float *x, uint32_t G, int8_t *q, float *d_out, int32_t *sum_out)
{
	const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
	__m512 amax = _mm512_setzero_ps(), dv;
	__m512i acc = _mm512_setzero_si512();
	float d;

	for (uint32_t j = 0; j < G; j += 16)
		amax = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), amax);
	d = _mm512_reduce_max_ps(amax) / 127.0f;
	*d_out = d;
	if (!(d > 0)) {
		memset(q, 0, G);
		*sum_out = 0;
		return;
	}
	dv = _mm512_set1_ps(d);
	for (uint32_t j = 0; j < G; j += 16) {
		const __m512 y = _mm512_div_ps(_mm512_loadu_ps(x + j), dv);
		const __m512i t = _mm512_cvttps_epi32(_mm512_add_ps(_mm512_abs_ps(y), _mm512_set1_ps(0.5f)));
		const __mmask16 pos = _mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_GE_OQ);
		__m512i r = _mm512_mask_mov_epi32(_mm512_sub_epi32(_mm512_setzero_si512(), t), pos, t);

		r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
		_mm_storeu_si128((__m128i *)(q + j), _mm512_cvtepi32_epi8(r));
		acc = _mm512_add_epi32(acc, r);
	}
	*sum_out = _mm512_reduce_add_epi32(acc);
}

const struct nb_kernels nb_kernels_avx512vnni = {
	.name = "avx512vnni",
	.requires = NB_CPU_AVX2 | NB_CPU_F16C | NB_CPU_AVX512VNNI,
	.act_flags = NB_QACT_INTERLEAVED,
	.mm_q = MMQ_TABLE,
	.attend = attn_run,
	.silu_mul = silu_mul_zmm,
	.quant_block = quant_block_zmm,
};
