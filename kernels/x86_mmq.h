/* The x86 quantized matmul, shared by the AVX2 and AVX-512 VNNI backends:
 * included by avx2.c and avx512vnni.c after they define
 *   MMQ_DOT2(acc, u1, s1, u2, s2)  acc + dot4(u1, s1) + dot4(u2, s2) per int32 lane
 *   MMQ_DOT1(u, s)                 dot4(u, s) per int32 lane
 * where dot4 sums the 4 unsigned x signed byte products of each lane. Both
 * give the same exact integer partials, so both backends give the same
 * bits (AVX2: maddubs + madd, without saturation for these ranges; VNNI:
 * vpdpbusd). It defines one kernel per type of kernels/quant.h's list, any
 * group, and MMQ_TABLE, the backend's mm_q table of them. Not a module of
 * its own: no header guard on purpose. */

/* ---- Quantized matmul -------------------------------------------------
 * Per row quad and tile of up to 4 activation rows, two groups at a time:
 * each block's nibbles are loaded and unpacked once for the whole tile, the
 * integer partial sums of 4 rows x 2 groups are reduced by an hadd tree into
 * one vector [g0 r0..r3 | g1 r0..r3] -- the order the two blocks store their
 * scales in -- and fed to two float accumulators per activation row: groups
 * 4j, 4j + 1 to [lane 0 | lane 1], groups 4j + 2, 4j + 3 to [lane 2 | lane 3],
 * exactly as kernels/quant.h defines. */

/* Activation rows per tile: each block is unpacked once for all of them.
 * 4 fits AVX2's 16 vector registers; the VNNI build (AVX512VL: 32) uses 8. */
#ifndef MMQ_TILE
#define MMQ_TILE 4
#endif
#define TILE MMQ_TILE
/* Bytes ahead in the weight stream, and into which cache: the AVX-512
 * build eats the stream faster, so it looks further ahead, into L2 (the
 * distances were chosen by measuring streaming decode products on one
 * core: docs/ARCHITECTURE.md). */
#ifdef MMQ_ZMM
#define PREFETCH 8192
#define PREFETCH_HINT _MM_HINT_T1
#else
#define PREFETCH 2048
#define PREFETCH_HINT _MM_HINT_T0
#endif

/* Symmetric 4-bit levels are offset by NB_Q4_BIAS: a shift. */
#define Q4_BIAS_SHIFT 3
static_assert(NB_Q4_BIAS == 1 << Q4_BIAS_SHIFT, "x86_mmq.h: NB_Q4_BIAS is 2^Q4_BIAS_SHIFT");

static inline __m256i load2x128(const uint8_t *lo, const uint8_t *hi)
{
	return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
				       _mm_loadu_si128((const __m128i *)hi), 1);
}

static inline __m256i bcast128(const int8_t *p)
{
	return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
}

/* Unsigned nibbles x activations of one group for nt activation rows:
 * p01[t] holds rows 0 and 1 (four partial sums each, lanes 0-3 / 4-7),
 * p23[t] rows 2 and 3. Every int16 lane sums <= 4 * 15 * 127: no saturation. */
static inline __attribute__((always_inline)) void
q4_group(const uint8_t *qs, uint32_t G, const int8_t *const aq[TILE], const uint32_t nt,
	 __m256i p01[TILE], __m256i p23[TILE])
{
	const __m256i mask = _mm256_set1_epi8(0x0f);
	const uint32_t rb = NB_QBLOCK_ROW_BYTES(G, 4);

#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++)
		p01[t] = p23[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
	for (uint32_t c = 0; c < G / 32; c++) {
		/* Group 32: rows 0,1 (and 2,3) are 2 rb = 32 contiguous bytes. */
		__m256i w01 = G == 32 ? _mm256_loadu_si256((const __m256i *)qs)
				      : load2x128(qs + c * 16, qs + rb + c * 16);
		__m256i w23 = G == 32 ? _mm256_loadu_si256((const __m256i *)(qs + 2 * rb))
				      : load2x128(qs + 2 * rb + c * 16, qs + 3 * rb + c * 16);
		__m256i lo01 = _mm256_and_si256(w01, mask);
		__m256i hi01 = _mm256_and_si256(_mm256_srli_epi16(w01, 4), mask);
		__m256i lo23 = _mm256_and_si256(w23, mask);
		__m256i hi23 = _mm256_and_si256(_mm256_srli_epi16(w23, 4), mask);
#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++) {
			__m256i alo = bcast128(aq[t] + c * 16), ahi = bcast128(aq[t] + rb + c * 16);
			p01[t] = MMQ_DOT2(p01[t], lo01, alo, hi01, ahi);
			p23[t] = MMQ_DOT2(p23[t], lo23, alo, hi23, ahi);
		}
	}
}

/* int8 x int8 of one group (|w| <= 127, so sign() is exact): full sums of
 * the 4 rows for each activation row, as p[t][r] partial vectors reduced
 * later; 32 columns per step. */
static inline __attribute__((always_inline)) void
q8_group(const int8_t *qs, const uint32_t G, const int8_t *const aq[TILE], const uint32_t nt,
	 __m256i p[TILE][4])
{
#pragma GCC unroll 8
	for (uint32_t r = 0; r < 4; r++) {
#pragma GCC unroll 8
		for (uint32_t c = 0; c < G / 32; c++) {
			__m256i w = _mm256_loadu_si256(
				(const __m256i *)(qs + r * NB_QBLOCK_ROW_BYTES(G, 8) + 32 * c));
			__m256i aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 8
			for (uint32_t t = 0; t < nt; t++) {
				__m256i a = _mm256_loadu_si256((const __m256i *)(aq[t] + 32 * c));
				__m256i s = MMQ_DOT1(aw, _mm256_sign_epi8(a, w));
				p[t][r] = c ? _mm256_add_epi32(p[t][r], s) : s;
			}
		}
	}
}

/* [g0 r0..r3 | g1 r0..r3] from each group's halved 4-bit partials
 * (hadd(rows 0,1, rows 2,3) of group 0 and of group 1). */
static inline __m256i q4_finish(__m256i h0, __m256i h1)
{
	const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
	return _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(h0, h1), perm);
}

/* The same from the 8-bit per-row partials of two groups. */
static inline __m256i q8_reduce(const __m256i a[4], const __m256i b[4])
{
	__m256i u0 = _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
	__m256i u1 = _mm256_hadd_epi32(_mm256_hadd_epi32(b[0], b[1]), _mm256_hadd_epi32(b[2], b[3]));

	return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
				_mm256_permute2x128_si256(u0, u1, 0x31));
}

/* Zero points of 4 rows x 2 groups (zero-point types only). */
static inline __m256i zero_points(const uint8_t *b0, const uint8_t *b1)
{
	int32_t o[8];

	for (uint32_t r = 0; r < 4; r++) {
		o[r] = (int32_t)nb_qblock_zero(b0, r);
		o[4 + r] = b1 ? (int32_t)nb_qblock_zero(b1, r) : 0;
	}
	return _mm256_loadu_si256((const __m256i *)o);
}

static inline __m256 scales(const uint8_t *b0, const uint8_t *b1)
{
	int64_t d0, d1 = 0;

	memcpy(&d0, b0 + NB_QBLOCK_SCALES, 8);
	if (b1)
		memcpy(&d1, b1 + NB_QBLOCK_SCALES, 8);
	return _mm256_cvtph_ps(_mm_set_epi64x(d1, d0));
}

/* [p[0] x4 | p[1] x4] from one 64-bit load (p[1] read only if both). */
static inline __m256i pair_i32(const int32_t *p, bool both)
{
	const __m256i idx = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
	__m128i v = both ? _mm_loadl_epi64((const __m128i *)p) : _mm_cvtsi32_si128(p[0]);
	return _mm256_permutevar8x32_epi32(_mm256_castsi128_si256(v), idx);
}

static inline __m256 pair_f32(const float *p, bool both)
{
	return _mm256_castsi256_ps(pair_i32((const int32_t *)p, both));
}

#ifdef MMQ_ZMM
/* Group 128 on 512-bit registers: a row's 64 bytes are one load, low
 * nibbles against activations 0-63, high against 64-127; each row's 16
 * partials (8 products each, |p| <= 8 * 15 * 127 = 15240, and two of them
 * < 2^15: the saturating packs never saturate) reduce exactly by packs +
 * madd to one partial per row and 128-bit lane, then across the lanes.
 * Returns [r0 r1 r2 r3]. */
static inline __m128i g128_sums(__m512i p0, __m512i p1, __m512i p2, __m512i p3)
{
	const __m512i ones = _mm512_set1_epi16(1);
	__m512i x = _mm512_madd_epi16(_mm512_packs_epi32(p0, p1), ones);
	__m512i y = _mm512_madd_epi16(_mm512_packs_epi32(p2, p3), ones);
	__m512i z = _mm512_madd_epi16(_mm512_packs_epi32(x, y), ones);

	z = _mm512_add_epi32(z, _mm512_shuffle_i32x4(z, z, _MM_SHUFFLE(1, 0, 3, 2)));
	z = _mm512_add_epi32(z, _mm512_shuffle_i32x4(z, z, _MM_SHUFFLE(2, 3, 0, 1)));
	return _mm512_castsi512_si128(z);
}

static inline __attribute__((always_inline)) void
g128_group(const uint8_t *qs, const int8_t *const aq[TILE], const uint32_t nt, __m128i s[TILE])
{
	const __m512i mask = _mm512_set1_epi8(0x0f);
	__m512i lo[4], hi[4];

	#pragma GCC unroll 4
	for (int r = 0; r < 4; r++) {
		__m512i w = _mm512_loadu_si512(qs + NB_QBLOCK_ROW_BYTES(128, 4) * r);
		lo[r] = _mm512_and_si512(w, mask);
		hi[r] = _mm512_and_si512(_mm512_srli_epi16(w, 4), mask);
	}
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		__m512i a0 = _mm512_loadu_si512(aq[t]), a1 = _mm512_loadu_si512(aq[t] + 64), p[4];
		#pragma GCC unroll 4
		for (int r = 0; r < 4; r++)
			p[r] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo[r], a0),
						   hi[r], a1);
		s[t] = g128_sums(p[0], p[1], p[2], p[3]);
	}
}
#endif

/* The raw (offset-level) sums of two groups for nt activation rows, as
 * [g0 r0..r3 | g1 r0..r3]; q1 == NULL: the second group is absent (0). */
static inline __attribute__((always_inline)) void
q4_pair(__m256i raw[TILE], const uint8_t *q0, const uint8_t *q1, const uint32_t G,
	const int8_t *const a0[TILE], const int8_t *const a1[TILE], const uint32_t nt)
{
#ifdef MMQ_ZMM
	if (G == 128) {
		__m128i s0[TILE], s1[TILE];
		g128_group(q0, a0, nt, s0);
		if (q1)
			g128_group(q1, a1, nt, s1);
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++)
			raw[t] = _mm256_inserti128_si256(_mm256_castsi128_si256(s0[t]),
							 q1 ? s1[t] : _mm_setzero_si128(), 1);
		return;
	}
#endif
	/* Each group's partials are halved at once (hadd of its two row
	 * pairs), which keeps a tile's live state small. */
	__m256i p01[TILE], p23[TILE], h0[TILE], h1[TILE];
	q4_group(q0, G, a0, nt, p01, p23);
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++)
		h0[t] = _mm256_hadd_epi32(p01[t], p23[t]);
	if (q1) {
		q4_group(q1, G, a1, nt, p01, p23);
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++)
			h1[t] = _mm256_hadd_epi32(p01[t], p23[t]);
	} else {
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++)
			h1[t] = _mm256_setzero_si256();
	}
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++)
		raw[t] = q4_finish(h0[t], h1[t]);
}

struct tile {
	const int8_t *q[TILE];  /* activation rows */
	const int8_t *qx[TILE]; /* the same interleaved (nb_qact.qx), or NULL */
	const float *d[TILE];   /* their group scales */
	const int32_t *s[TILE]; /* their group sums */
};

/* Groups g and g + 1 (if g + 1 < ng) of the quad into acc, which holds the
 * epilogue lanes of those two groups: [g % 4 r0..r3 | (g + 1) % 4 r0..r3]. */
static inline __attribute__((always_inline)) void
pair_step(__m256 acc[TILE], const uint8_t *qb, uint32_t g, uint32_t ng, const struct tile *at,
	  const uint32_t G, const uint32_t bits, const int zpt, const uint32_t block,
	  const uint32_t nt)
{
	const uint8_t *b0 = qb + (size_t)g * block;
	const uint8_t *b1 = g + 1 < ng ? b0 + block : NULL;

	/* The weights are one sequential stream (the next quad follows this
	 * one): fetch every line of the two blocks ahead of the hardware
	 * prefetcher. */
	for (uint32_t c = 0; c < 2 * block; c += 64)
		_mm_prefetch((const char *)b0 + PREFETCH + c, PREFETCH_HINT);
	const int8_t *a0[TILE], *a1[TILE];
	__m256i isum[TILE], zp = _mm256_setzero_si256();
	__m256 dw = scales(b0, b1);

	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		a0[t] = at->q[t] + (size_t)g * G;
		a1[t] = a0[t] + G;
	}
	if (bits == 8) {
		__m256i p0[TILE][4], p1[TILE][4];
		q8_group((const int8_t *)nb_qblock_levels(b0, 0), G, a0, nt, p0);
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++)
			#pragma GCC unroll 8
			for (int r = 0; r < 4; r++)
				p1[t][r] = _mm256_setzero_si256();
		if (b1)
			q8_group((const int8_t *)nb_qblock_levels(b1, 0), G, a1, nt, p1);
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++)
			isum[t] = q8_reduce(p0[t], p1[t]);
	} else {
		__m256i raw[TILE];
		q4_pair(raw, nb_qblock_levels(b0, zpt), b1 ? nb_qblock_levels(b1, zpt) : NULL, G,
			a0, a1, nt);
		if (zpt)
			zp = zero_points(b0, b1);
		#pragma GCC unroll 8
		for (uint32_t t = 0; t < nt; t++) {
			__m256i asum = pair_i32(at->s[t] + g, b1 != NULL);
			/* levels are stored + offset: subtract offset * sum(a) */
			__m256i corr = zpt ? _mm256_mullo_epi32(zp, asum) : _mm256_slli_epi32(asum, Q4_BIAS_SHIFT);
			isum[t] = _mm256_sub_epi32(raw[t], corr);
		}
	}
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		__m256 da = pair_f32(at->d[t] + g, b1 != NULL);
		acc[t] = _mm256_add_ps(acc[t], _mm256_mul_ps(_mm256_mul_ps(dw, da),
							     _mm256_cvtepi32_ps(isum[t])));
	}
}

/* The 4 outputs of one quad for nt activation rows: four groups per
 * iteration, lanes 0 and 1 in acc01, 2 and 3 in acc23. */
static inline __attribute__((always_inline)) void
quad_tile(float o[TILE][4], const uint8_t *qb, uint32_t ng, const struct tile *at,
	  const uint32_t G, const uint32_t bits, const int zpt, const uint32_t block,
	  const uint32_t nt)
{
	__m256 acc01[TILE], acc23[TILE];

	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++)
		acc01[t] = acc23[t] = _mm256_setzero_ps();
	for (uint32_t g = 0; g < ng; g += 4) {
		pair_step(acc01, qb, g, ng, at, G, bits, zpt, block, nt);
		if (g + 2 < ng)
			pair_step(acc23, qb, g + 2, ng, at, G, bits, zpt, block, nt);
	}
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		__m128 l01 = _mm_add_ps(_mm256_castps256_ps128(acc01[t]), _mm256_extractf128_ps(acc01[t], 1));
		__m128 l23 = _mm_add_ps(_mm256_castps256_ps128(acc23[t]), _mm256_extractf128_ps(acc23[t], 1));
		_mm_storeu_ps(o[t], _mm_add_ps(l01, l23));
	}
}

#ifdef MMQ_ZMM
#define MMQ_ZMM_G32 1
/* ---- AVX-512: four groups of 32 per step ---------------------------------
 * The 16-byte rows of four q4 group-32 blocks are transposed by 4-byte
 * words, so that word k of every (row, group) pair sits in one register,
 * lane (r, g) at 32-bit element 4 r + g. The activations come interleaved
 * the same way (nb_qact.qx), so one 16-byte broadcast holds the matching
 * four columns of the four groups, and eight vpdpbusd (words 0-3, low and
 * high nibbles) leave each (row, group) lane with its whole exact integer
 * dot product: no horizontal reduction. The scales are permuted into the
 * same row-major [r: g0 g1 g2 g3] layout once per step, the activations'
 * scales and sums are contiguous in it already, and one accumulator whose
 * element k of lane r is row r's epilogue lane k takes the four groups in
 * one add: the four lanes kernels/quant.h defines. */

/* Row-major index of the group-major [g: r0..r3] order. */
#define TO_ROWS _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15)

/* w[k] lane (r, g) = word k of row r of block g: a 4x4 transpose of words
 * inside each 128-bit lane. */
static inline void transpose_words(__m512i w[4])
{
	__m512i t0 = _mm512_unpacklo_epi32(w[0], w[1]), t1 = _mm512_unpackhi_epi32(w[0], w[1]);
	__m512i t2 = _mm512_unpacklo_epi32(w[2], w[3]), t3 = _mm512_unpackhi_epi32(w[2], w[3]);

	w[0] = _mm512_unpacklo_epi64(t0, t2);
	w[1] = _mm512_unpackhi_epi64(t0, t2);
	w[2] = _mm512_unpacklo_epi64(t1, t3);
	w[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* The 4 rows' scales of 4 consecutive blocks, as [r: g0 g1 g2 g3]. */
static inline __m512 scales4(const uint8_t *blk, uint32_t block)
{
	const uint8_t *b = blk + NB_QBLOCK_SCALES;
	__m128i s01 = _mm_castpd_si128(_mm_loadh_pd(
		_mm_castsi128_pd(_mm_loadl_epi64((const __m128i *)b)), (const double *)(b + block)));
	__m128i s23 = _mm_castpd_si128(_mm_loadh_pd(
		_mm_castsi128_pd(_mm_loadl_epi64((const __m128i *)(b + 2 * block))),
		(const double *)(b + 3 * block)));
	__m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(s01), s23, 1);

	return _mm512_permutexvar_ps(TO_ROWS, _mm512_cvtph_ps(h));
}

/* The 4 rows' zero points of 4 consecutive blocks, as [r: g0 g1 g2 g3]. */
static inline __m512i zero_points4(const uint8_t *b, uint32_t block)
{
	uint64_t v = 0;

	for (int j = 0; j < 4; j++) {
		uint16_t z;
		memcpy(&z, b + j * block + NB_QBLOCK_ZEROS, 2);
		v |= (uint64_t)z << (16 * j);
	}
	__m128i x = _mm_cvtsi64_si128((long long)v), m = _mm_set1_epi8(0x0f);
	__m128i gm = _mm_unpacklo_epi8(_mm_and_si128(x, m), _mm_and_si128(_mm_srli_epi16(x, 4), m));

	return _mm512_permutexvar_epi32(TO_ROWS, _mm512_cvtepu8_epi32(gm));
}

/* One step: groups [g, g + 4) of the quad at b for nt activation rows. */
static inline __attribute__((always_inline)) void
step4(__m512 acc[TILE], const uint8_t *b, const uint32_t block, const struct tile *at, uint32_t g,
      const int zpt, const uint32_t nt, const int prefetch)
{
	const __m512i mask = _mm512_set1_epi8(0x0f);
	__m512i w[4], lo[4], hi[4], zp = _mm512_setzero_si512();
	__m512 dw = scales4(b, block);

	for (int c = 0; prefetch && c < 5; c++)
		_mm_prefetch((const char *)b + PREFETCH + 64 * c, PREFETCH_HINT);
	#pragma GCC unroll 4
	for (int j = 0; j < 4; j++)
		w[j] = _mm512_loadu_si512(nb_qblock_levels(b + j * block, zpt));
	transpose_words(w);
	#pragma GCC unroll 4
	for (int k = 0; k < 4; k++) {
		lo[k] = _mm512_and_si512(w[k], mask);
		hi[k] = _mm512_and_si512(_mm512_srli_epi16(w[k], 4), mask);
	}
	if (zpt)
		zp = zero_points4(b, block);
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		const int8_t *a = at->qx[t] + (size_t)g * 32;
		__m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
		/* two chains of four: half the latency of one */
		#pragma GCC unroll 4
		for (int k = 0; k < 4; k++) {
			__m512i al = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a + 16 * k)));
			__m512i ah = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(a + 64 + 16 * k)));
			s0 = _mm512_dpbusd_epi32(s0, lo[k], al);
			s1 = _mm512_dpbusd_epi32(s1, hi[k], ah);
		}
		__m512i asum = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(at->s[t] + g)));
		/* levels are stored + offset: subtract offset * sum(a) */
		__m512i corr = zpt ? _mm512_mullo_epi32(zp, asum) : _mm512_slli_epi32(asum, Q4_BIAS_SHIFT);
		__m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), corr);
		__m512 da = _mm512_broadcast_f32x4(_mm_loadu_ps(at->d[t] + g));
		__m512 term = _mm512_mul_ps(_mm512_mul_ps(dw, da), _mm512_cvtepi32_ps(isum));
		acc[t] = _mm512_add_ps(acc[t], term);
	}
}

/* The last 1-3 groups, zero-padded to a step: a zero block adds +0.0 to a
 * lane, which leaves it unchanged (a lane is never -0.0). */
static __attribute__((noinline)) void
step4_tail(__m512 acc[TILE], const uint8_t *b, const uint32_t block, const struct tile *at,
	   uint32_t g, uint32_t rem, const int zpt, const uint32_t nt)
{
	uint8_t wb[4 * NB_QBLOCK_BYTES(32, 4, 1)] = { 0 };
	int8_t qx[TILE][128] = { { 0 } };
	float d[TILE][4] = { { 0 } };
	int32_t s[TILE][4] = { { 0 } };
	struct tile lt;

	memcpy(wb, b, rem * block);
	for (uint32_t t = 0; t < nt; t++) {
		for (uint32_t j = 0; j < rem * 32; j++)
			qx[t][nb_qact_x_offset(j)] = at->q[t][(size_t)g * 32 + j];
		memcpy(d[t], at->d[t] + g, rem * sizeof(float));
		memcpy(s[t], at->s[t] + g, rem * sizeof(int32_t));
		lt.qx[t] = qx[t];
		lt.d[t] = d[t];
		lt.s[t] = s[t];
	}
	switch (nt) { /* constant tile heights keep acc[] in registers */
	#define TAIL_CASE(n) case n: step4(acc, wb, block, &lt, 0, zpt, n, 0); break;
	TAIL_CASE(1) TAIL_CASE(2) TAIL_CASE(3) TAIL_CASE(4)
	TAIL_CASE(5) TAIL_CASE(6) TAIL_CASE(7) TAIL_CASE(8)
	#undef TAIL_CASE
	}
}

static inline __attribute__((always_inline)) void
quad_tile_g32(float o[TILE][4], const uint8_t *qb, uint32_t ng, const struct tile *at,
	      const int zpt, const uint32_t block, const uint32_t nt)
{
	__m512 acc[TILE];
	uint32_t g = 0;

	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
	for (; g + 4 <= ng; g += 4)
		step4(acc, qb + (size_t)g * block, block, at, g, zpt, nt, 1);
	if (g < ng)
		step4_tail(acc, qb + (size_t)g * block, block, at, g, ng - g, zpt, nt);
	#pragma GCC unroll 8
	for (uint32_t t = 0; t < nt; t++) {
		/* element 0 of lane r: (lane 0 + lane 1) + (lane 2 + lane 3) of row r */
		__m512 pairs = _mm512_add_ps(acc[t], _mm512_shuffle_ps(acc[t], acc[t], _MM_SHUFFLE(2, 3, 0, 1)));
		__m512 sum = _mm512_add_ps(pairs, _mm512_shuffle_ps(pairs, pairs, _MM_SHUFFLE(1, 0, 3, 2)));
		_mm_storeu_ps(o[t], _mm512_castps512_ps128(_mm512_permutexvar_ps(TO_ROWS, sum)));
	}
}
#endif

#ifndef MMQ_ZMM_G32
#define MMQ_ZMM_G32 0
#define quad_tile_g32(...) ((void)0)
#endif

/* One specialization per (format, tile height): every loop bound is a
 * constant, so the tile's accumulators live in registers. */
#define QUAD_FN(name, G, bits, zpt, block, nt)                                                 \
	static __attribute__((noinline)) void name(float o[TILE][4], const uint8_t *qb,       \
						   uint32_t ng, const struct tile *at)         \
	{                                                                                     \
		if (MMQ_ZMM_G32 && G == 32 && bits == 4 && at->qx[0])                         \
			quad_tile_g32(o, qb, ng, at, zpt, block, nt);                         \
		else                                                                          \
			quad_tile(o, qb, ng, at, G, bits, zpt, block, nt);                    \
	}
#define QUAD_FNS4(fmt, G, bits, zpt, block)                                                    \
	QUAD_FN(quad_##fmt##_1, G, bits, zpt, block, 1)                                       \
	QUAD_FN(quad_##fmt##_2, G, bits, zpt, block, 2)                                       \
	QUAD_FN(quad_##fmt##_3, G, bits, zpt, block, 3)                                       \
	QUAD_FN(quad_##fmt##_4, G, bits, zpt, block, 4)
#if TILE == 8
#define QUAD_FNS(fmt, G, bits, zpt, block)                                                     \
	QUAD_FNS4(fmt, G, bits, zpt, block)                                                   \
	QUAD_FN(quad_##fmt##_5, G, bits, zpt, block, 5)                                       \
	QUAD_FN(quad_##fmt##_6, G, bits, zpt, block, 6)                                       \
	QUAD_FN(quad_##fmt##_7, G, bits, zpt, block, 7)                                       \
	QUAD_FN(quad_##fmt##_8, G, bits, zpt, block, 8)
#define QUAD_ROW(fmt)                                                                          \
	{ quad_##fmt##_1, quad_##fmt##_2, quad_##fmt##_3, quad_##fmt##_4,                     \
	  quad_##fmt##_5, quad_##fmt##_6, quad_##fmt##_7, quad_##fmt##_8 }
#elif TILE == 4
#define QUAD_FNS QUAD_FNS4
#define QUAD_ROW(fmt) { quad_##fmt##_1, quad_##fmt##_2, quad_##fmt##_3, quad_##fmt##_4 }
#else
#error "MMQ_TILE must be 4 or 8"
#endif

typedef void (*quad_fn)(float o[TILE][4], const uint8_t *qb, uint32_t ng, const struct tile *at);

/* Tile i0 of the activation rows (nt of them). */
static inline void tile_at(struct tile *at, const struct nb_qact *a, uint32_t i0, uint32_t nt, uint32_t ng)
{
	for (uint32_t t = 0; t < nt; t++) {
		at->q[t] = a->q + (size_t)(i0 + t) * a->kp;
		at->qx[t] = a->qx ? a->qx + (size_t)(i0 + t) * a->kp : NULL;
		at->d[t] = a->d + (size_t)(i0 + t) * ng;
		at->s[t] = a->sum + (size_t)(i0 + t) * ng;
	}
}

/* Tiles whose pointers are set up once per call; a larger batch sets up
 * the rest per quad. */
#define MAX_TILES 16

/* The product with a type's quad kernels, fns[nt - 1] for nt activation rows. */
static inline __attribute__((always_inline)) void
mm_q_run(const quad_fn fns[TILE], const uint32_t G, const uint32_t block, float *out, size_t ldo,
	 const struct nb_qact *a, const void *w, uint64_t rows, uint64_t r0, uint64_t r1)
{
	const uint32_t ng = a->kp / G, n_tiles = (a->m + TILE - 1) / TILE;
	const uint64_t end = r1 < rows ? r1 : rows;
	float o[TILE][4];
	struct tile tiles[MAX_TILES], spare;

	for (uint32_t i = 0; i < n_tiles && i < MAX_TILES; i++)
		tile_at(&tiles[i], a, i * TILE, a->m - i * TILE < TILE ? a->m - i * TILE : TILE, ng);
	for (uint64_t quad = r0 / NB_QROWS; quad * NB_QROWS < r1; quad++) {
		const uint8_t *qb = (const uint8_t *)w + quad * ng * block;
		const uint64_t row0 = quad * NB_QROWS;
		for (uint32_t i = 0, i0 = 0; i0 < a->m; i++, i0 += TILE) {
			uint32_t nt = a->m - i0 < TILE ? a->m - i0 : TILE;
			const struct tile *at = &spare;
			if (i < MAX_TILES)
				at = &tiles[i];
			else
				tile_at(&spare, a, i0, nt, ng);
			fns[nt - 1](o, qb, ng, at);
			for (uint32_t t = 0; t < nt; t++) {
				float *dst = out + (size_t)(i0 + t) * ldo + row0;
				if (row0 >= r0 && row0 + NB_QROWS <= end)
					memcpy(dst, o[t], sizeof(o[t]));
				else
					for (uint32_t r = 0; r < NB_QROWS; r++)
						if (row0 + r >= r0 && row0 + r < end)
							dst[r] = o[t][r];
			}
		}
	}
}

/* One kernel per type of the list: its quad kernels, and the product. */
#define MMQ_TYPE(NAME, name, G, bits, zp)                                                      \
	QUAD_FNS(name, G, bits, zp, NB_QBLOCK_BYTES(G, bits, zp))                             \
	static void mm_q_##name(float *out, size_t ldo, const struct nb_qact *a, const void *w, \
				uint64_t rows, uint64_t r0, uint64_t r1)                      \
	{                                                                                     \
		static const quad_fn fns[TILE] = QUAD_ROW(name);                              \
		mm_q_run(fns, G, NB_QBLOCK_BYTES(G, bits, zp), out, ldo, a, w, rows, r0, r1);  \
	}
NB_QTYPE_LIST(MMQ_TYPE)
#undef MMQ_TYPE

#define MMQ_ENTRY(NAME, name, G, bits, zp) [NB_QTYPE_##NAME - NB_QTYPE_MIN] = mm_q_##name,
/* The backend's struct nb_kernels.mm_q: a kernel for every type. */
#define MMQ_TABLE { NB_QTYPE_LIST(MMQ_ENTRY) }
