#include "kernels/quant.h"
#include "kernels/vec.h"
#include "runtime/base/err.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* What every type of the list must be for the kernels (quant.h): levels
 * of 4 or 8 bits, zero points with 4 bits only, a group of whole 32s. */
#define QTYPE_CHECK(NAME, name, G, bits, zp)                                                   \
	static_assert((bits == 4 || (bits == 8 && !zp)) && G % 32 == 0 && G > 0, #name);
NB_QTYPE_LIST(QTYPE_CHECK)
#undef QTYPE_CHECK

#define QTYPE_INFO(NAME, name, G, bits, zp) \
	[NB_QTYPE_##NAME - NB_QTYPE_MIN] = { #name, G, NB_QBLOCK_BYTES(G, bits, zp), bits, zp },
static const struct nb_qinfo qinfo[NB_QTYPE_COUNT] = { NB_QTYPE_LIST(QTYPE_INFO) };
#undef QTYPE_INFO

const struct nb_qinfo *nb_qinfo(uint32_t type)
{
	if (type < NB_QTYPE_MIN || type > NB_QTYPE_MAX || !qinfo[type - NB_QTYPE_MIN].name)
		return NULL;
	return &qinfo[type - NB_QTYPE_MIN];
}

uint32_t nb_qtype_by_name(const char *name)
{
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++)
		if (nb_qinfo(t) && strcmp(name, nb_qinfo(t)->name) == 0)
			return t;
	return 0;
}

#define QTYPE_NAME(NAME, name, G, bits, zp) ", " #name
static const char qtype_names[] = NB_QTYPE_LIST(QTYPE_NAME);
#undef QTYPE_NAME

const char *nb_qtype_names(void)
{
	return qtype_names + 2; /* past the first ", " */
}

int nb_qtensor_bytes(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *bytes)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	uint64_t quads, groups, blocks;

	if (!qi)
		return -NB_ENOTSUP;
	if (rows == 0 || cols == 0 || rows > (1ull << 32) || cols > (1ull << 32))
		return -NB_ERANGE;
	quads = (rows + NB_QROWS - 1) / NB_QROWS;
	groups = (cols + qi->group - 1) / qi->group;
	if (__builtin_mul_overflow(quads, groups, &blocks) ||
	    __builtin_mul_overflow(blocks, qi->block_size, bytes))
		return -NB_ERANGE;
	return 0;
}

float nb_f16_to_f32(nb_f16 h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
	uint32_t bits;
	float f;

	if (exp == 0x1f) {
		bits = sign | 0x7f800000 | (man << 13);
	} else if (exp != 0) {
		bits = sign | ((exp + 112) << 23) | (man << 13);
	} else if (man == 0) {
		bits = sign;
	} else { /* subnormal: normalize */
		exp = 113;
		while (!(man & 0x400)) {
			man <<= 1;
			exp--;
		}
		bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
	}
	memcpy(&f, &bits, sizeof(f));
	return f;
}

nb_f16 nb_f32_to_f16(float f)
{
	uint32_t bits, sign, man;
	int32_t exp;

	memcpy(&bits, &f, sizeof(bits));
	sign = (bits >> 16) & 0x8000;
	exp = (int32_t)((bits >> 23) & 0xff) - 127 + 15;
	man = bits & 0x7fffff;
	if (((bits >> 23) & 0xff) == 0xff)
		return (nb_f16)(sign | 0x7c00 | (man ? 0x200 : 0));
	if (exp >= 0x1f)
		return (nb_f16)(sign | 0x7c00);
	if (exp <= 0) { /* subnormal or zero: shift in the implicit bit, round even */
		uint32_t shift = (uint32_t)(14 - exp), m = man | 0x800000, half, rest;
		if (shift > 24)
			return (nb_f16)sign;
		half = 1u << (shift - 1);
		rest = m & ((1u << shift) - 1);
		m >>= shift;
		if (rest > half || (rest == half && (m & 1)))
			m++;
		return (nb_f16)(sign | m);
	}
	{
		uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fff;
		if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
			h++; /* may carry into the exponent, up to inf: correct */
		return (nb_f16)h;
	}
}

float nb_f16_round(float f)
{
	return nb_f16_to_f32(nb_f32_to_f16(f));
}

int nb_qact_alloc(struct nb_qact *a, uint32_t m, uint32_t k, uint32_t group, unsigned flags)
{
	uint32_t kp = (k + group - 1) / group * group;

	memset(a, 0, sizeof(*a));
	a->q = aligned_alloc(64, ((size_t)m * kp + 63) & ~(size_t)63);
	a->d = malloc((size_t)m * (kp / group) * sizeof(float));
	a->sum = malloc((size_t)m * (kp / group) * sizeof(int32_t));
	const bool want_qx = group == 32 && (flags & NB_QACT_INTERLEAVED);

	if (want_qx)
		a->qx = aligned_alloc(64, ((size_t)m * kp + 63) & ~(size_t)63);
	if (!a->q || !a->d || !a->sum || (want_qx && !a->qx)) {
		nb_qact_free(a);
		return -NB_ENOMEM;
	}
	a->k = k;
	a->kp = kp;
	a->group = group;
	a->cap = (uint64_t)m * kp;
	return 0;
}

void nb_qact_free(struct nb_qact *a)
{
	free(a->q);
	free(a->d);
	free(a->sum);
	free(a->qx);
	memset(a, 0, sizeof(*a));
}

/* Half away from zero, without libm (same result on every C library). */
static int32_t round_away(float x)
{
	return x >= 0 ? (int32_t)(x + 0.5f) : -(int32_t)(-x + 0.5f);
}

void nb_quant_act_prepare(struct nb_qact *a, uint32_t m, uint32_t k)
{
	a->m = m;
	a->k = k;
	a->kp = (k + a->group - 1) / a->group * a->group;
}

/* A whole block of G (a multiple of 4) four lanes at a time: lane by lane
 * the same operations as the scalar loop below (max is order-free for
 * non-NaN values; |y| + 0.5f then truncation is round_away), so the same
 * bits. kernels/vec.h's four-float vectors: SSE2 on x86-64, NEON on
 * aarch64. */
typedef int8_t qa_v4b __attribute__((vector_size(4)));

static v4i select4(v4i mask, v4i a, v4i b)
{
	return (a & mask) | (b & ~mask);
}

static void quant_block_v4(const float *xs, uint32_t G, int8_t *q, float *d_out, int32_t *sum_out)
{
	const v4i abs_mask = { 0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff };
	const v4i hi = { 127, 127, 127, 127 }, lo = -hi;
	v4f amax = { 0 }, v, dv;
	v4i acc = { 0 };
	float m, d;

	for (uint32_t j = 0; j < G; j += 4) {
		v = v4_load(xs + j);
		v4f av = (v4f)((v4i)v & abs_mask);
		amax = v4_select(av > amax, av, amax);
	}
	m = amax[0] > amax[1] ? amax[0] : amax[1];
	m = amax[2] > m ? amax[2] : m;
	m = amax[3] > m ? amax[3] : m;
	d = m / 127.0f;
	*d_out = d;
	if (!(d > 0)) {
		memset(q, 0, G);
		*sum_out = 0;
		return;
	}
	dv = (v4f){ d, d, d, d };
	for (uint32_t j = 0; j < G; j += 4) {
		v = v4_load(xs + j);
		v4f y = v / dv;
		v4i t = __builtin_convertvector((v4f)((v4i)y & abs_mask) + 0.5f, v4i);
		v4i r = select4(y >= 0, t, -t);
		r = select4(r > hi, hi, r);
		r = select4(r < lo, lo, r);
		qa_v4b b = __builtin_convertvector(r, qa_v4b); /* exact: r is in -127..127 */
		memcpy(q + j, &b, sizeof(b));
		acc += r;
	}
	*sum_out = acc[0] + acc[1] + acc[2] + acc[3];
}

/* A group of 32 in a whole chunk: its eight 4-byte words copied to their
 * places in the row's interleaved copy (see quant.h). */
static void interleave_group(int8_t *qx_row, uint32_t g, const int8_t *q)
{
	int8_t *chunk = qx_row + (size_t)(g & ~3u) * 32;

	for (uint32_t w = 0; w < 8; w++)
		memcpy(chunk + ((w / 4) * 16 + (w % 4) * 4 + (g & 3)) * 4, q + 4 * w, 4);
}

void nb_quant_act_blocks(struct nb_qact *a, const float *x, uint64_t b0, uint64_t b1)
{
	const uint32_t G = a->group, ng = a->kp / G, k = a->k;

	for (uint64_t b = b0; b < b1; b++) {
		const uint32_t i = (uint32_t)(b / ng), g = (uint32_t)(b % ng);
		const float *xs = x + (size_t)i * k + (size_t)g * G;
		int8_t *q = a->q + (size_t)i * a->kp + (size_t)g * G;
		uint32_t n = k - g * G < G ? k - g * G : G;
		float amax = 0, d;
		int32_t sum = 0;

		if (n == G && G % 16 == 0 && a->quant_block) {
			a->quant_block(xs, G, q, &a->d[b], &a->sum[b]);
		} else if (n == G && G % 4 == 0) {
			quant_block_v4(xs, G, q, &a->d[b], &a->sum[b]);
		} else {
			for (uint32_t j = 0; j < n; j++)
				amax = fabsf(xs[j]) > amax ? fabsf(xs[j]) : amax;
			d = amax / 127.0f;
			for (uint32_t j = 0; j < G; j++) {
				int32_t v = 0;
				if (j < n && d > 0) {
					v = round_away(xs[j] / d);
					v = v > 127 ? 127 : v < -127 ? -127 : v;
				}
				q[j] = (int8_t)v;
				sum += v;
			}
			a->d[b] = d;
			a->sum[b] = sum;
		}
		if (a->qx && g < ng / 4 * 4)
			interleave_group(a->qx + (size_t)i * a->kp, g, q);
	}
}

void nb_quant_act(struct nb_qact *a, const float *x, uint32_t m, uint32_t k)
{
	nb_quant_act_prepare(a, m, k);
	nb_quant_act_blocks(a, x, 0, (uint64_t)m * (a->kp / a->group));
}

/* Address of the block of (quad, group). */
static size_t block_at(const struct nb_qinfo *qi, uint64_t quad, uint64_t g, uint64_t ngroups)
{
	return (size_t)((quad * ngroups + g) * qi->block_size);
}

/* Row r of a zeroed block whose scale and zero point are written: its n
 * levels q (NULL: none; zero-point types give them as stored, the others
 * as levels), the rest of the group padded with level 0. */
static void pack_levels(const struct nb_qinfo *qi, uint8_t *blk, uint32_t r, const int8_t *q,
			uint64_t n)
{
	uint8_t *row = blk + nb_qblock_row_at(qi->group, qi->bits, qi->zero_point, r);
	const int32_t offset = qi->zero_point ? 0 : nb_qtype_bias(qi->bits);
	const int32_t pad = nb_qblock_offset(blk, qi->bits, qi->zero_point, r);

	for (uint32_t j = 0; j < qi->group; j++)
		nb_qrow_put_level(row, qi->group, qi->bits, j, j < n ? q[j] + offset : pad);
}

int nb_quant_pack(uint32_t type, uint64_t rows, uint64_t cols, const int8_t *q, const float *d,
		  const uint8_t *z, void *out)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	uint64_t bytes, ng, quads;

	if (!qi || nb_qtensor_bytes(type, rows, cols, &bytes))
		return -NB_EINVAL;
	memset(out, 0, bytes);
	ng = (cols + qi->group - 1) / qi->group;
	quads = (rows + NB_QROWS - 1) / NB_QROWS;
	for (uint64_t quad = 0; quad < quads; quad++) {
		for (uint64_t g = 0; g < ng; g++) {
			uint8_t *b = (uint8_t *)out + block_at(qi, quad, g, ng);
			for (uint32_t rr = 0; rr < NB_QROWS; rr++) {
				uint64_t r = quad * NB_QROWS + rr, c0 = g * qi->group;
				uint8_t zr = 0;
				nb_f16 h = 0;
				if (r < rows) {
					h = nb_f32_to_f16(d[r * ng + g]);
					zr = z ? z[r * ng + g] & 15 : 0;
				}
				nb_qblock_put_scale(b, rr, h);
				if (qi->zero_point)
					nb_qblock_put_zero(b, rr, zr);
				pack_levels(qi, b, rr, r < rows ? q + r * cols + c0 : NULL,
					    r < rows ? (cols - c0 < qi->group ? cols - c0 : qi->group) : 0);
			}
		}
	}
	return 0;
}

void nb_quant_dequant_row(uint32_t type, const void *data, uint64_t cols, uint64_t r, float *out)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint64_t ng = (cols + qi->group - 1) / qi->group, quad = r / NB_QROWS;
	const uint32_t rr = (uint32_t)(r % NB_QROWS), G = qi->group;

	for (uint64_t g = 0; g < ng; g++) {
		const uint8_t *b = (const uint8_t *)data + block_at(qi, quad, g, ng);
		const uint8_t *row = b + nb_qblock_row_at(G, qi->bits, qi->zero_point, rr);
		const int32_t off = nb_qblock_offset(b, qi->bits, qi->zero_point, rr);
		const float d = nb_qblock_scale(b, rr);

		for (uint32_t j = 0; j < G && g * G + j < cols; j++)
			out[g * G + j] = d * (float)(nb_qrow_level(row, G, qi->bits, j) - off);
	}
}

static void rtn_group(const struct nb_qinfo *qi, const float *w, uint32_t n, int8_t *q,
		      float *d_out, uint8_t *z_out)
{
	float d = 0, lo = 0, hi = 0, m = 0;
	int32_t z = 0, qmin, qmax;

	for (uint32_t j = 0; j < n; j++) {
		lo = w[j] < lo ? w[j] : lo;
		hi = w[j] > hi ? w[j] : hi;
		m = fabsf(w[j]) > fabsf(m) ? w[j] : m;
	}
	if (qi->zero_point) {
		d = nb_f16_round((hi - lo) / 15.0f);
		z = d > 0 ? round_away(-lo / d) : 0;
		z = z < 0 ? 0 : z > 15 ? 15 : z;
		qmin = 0;
		qmax = 15;
	} else if (qi->bits == 4) {
		d = nb_f16_round(m / -8.0f);
		qmin = -8;
		qmax = 7;
	} else {
		d = nb_f16_round(fabsf(m) / 127.0f);
		qmin = -127;
		qmax = 127;
	}
	for (uint32_t j = 0; j < n; j++) {
		int32_t v = d != 0 ? round_away(w[j] / d) + z : z;
		q[j] = (int8_t)(v < qmin ? qmin : v > qmax ? qmax : v);
	}
	*d_out = d;
	*z_out = (uint8_t)z;
}

int nb_quantize_rtn(uint32_t type, const float *w, uint64_t rows, uint64_t cols, void *out)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	uint64_t ng;
	int8_t *q;
	float *d;
	uint8_t *z;
	int ret = -NB_ENOMEM;

	if (!qi)
		return -NB_EINVAL;
	ng = (cols + qi->group - 1) / qi->group;
	q = malloc(rows * cols);
	d = malloc(rows * ng * sizeof(float));
	z = malloc(rows * ng);
	if (q && d && z) {
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t g = 0; g < ng; g++) {
				uint64_t c0 = g * qi->group;
				uint32_t n = (uint32_t)(cols - c0 < qi->group ? cols - c0 : qi->group);
				rtn_group(qi, w + r * cols + c0, n, q + r * cols + c0, &d[r * ng + g],
					  &z[r * ng + g]);
			}
		ret = nb_quant_pack(type, rows, cols, q, d, z, out);
	}
	free(q);
	free(d);
	free(z);
	return ret;
}
