/* Quantized weight and activation formats. The block layout below IS the
 * image format (docs/image-format.md, "Quantized tensors"): the quantizer
 * writes it on the host in exactly the order the kernels read it, and
 * every reader and writer of a block goes through the accessors here.
 *
 * Weights: a matrix {rows, cols} is stored as row quads (4 rows, the last
 * quad zero-padded) and, inside a quad, one block per group of G columns
 * (cols zero-padded to a multiple of G). A block holds the 4 rows' scales
 * (and zero points) and their 4-bit or 8-bit levels, so one sequential
 * stream feeds four dot products that share each activation load.
 *
 * Block of a type of group G and b-bit levels:
 *   offset 0   the 4 rows' scales, binary16, row r at 2 r
 *   offset 8   zero-point types only: the 4 rows' zero points, row 2i in
 *              the low nibble of byte 8 + i, row 2i + 1 in its high nibble;
 *              then 2 zero bytes
 *   offset L   the levels (L = 12 with zero points, else 8): row r's
 *              G b / 8 bytes at L + r G b / 8
 * G is a multiple of 32 (the kernels take a row's levels in 16-byte
 * loads); nothing else about it is assumed anywhere.
 *
 * Nibbles: byte j of a row's levels holds element j in its low nibble and
 * element j + G/2 in its high nibble (unpacking gives two halves in order).
 *
 * Dequantized value: symmetric   w = d * q,        q in -8..7  (nibble - 8)
 *                    asymmetric  w = d * (q - z),  q in 0..15, z in 0..15
 *                    8-bit       w = d * q,        q in -127..127
 *
 * Activations are quantized per block of G to int8 in -127..127 with a
 * float scale (see nb_quant_act). The result of a dot product is defined by
 * nb_dot_epilogue below and the scalar kernels; every backend must match it
 * bit for bit. */
#ifndef NB_QUANT_H
#define NB_QUANT_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The numbers are the image format: never reuse one. */
enum nb_qtype {
	NB_QTYPE_Q4_G32 = 16,   /* symmetric 4-bit, group 32: 4.5 bits/weight */
	NB_QTYPE_Q4_G128 = 17,  /* symmetric 4-bit, group 128: 4.125 bits/weight */
	NB_QTYPE_Q4Z_G32 = 18,  /* 4-bit with zero point, group 32: 4.75 bits/weight */
	NB_QTYPE_Q4Z_G128 = 19, /* 4-bit with zero point, group 128: 4.1875 bits/weight */
	NB_QTYPE_Q8_G32 = 20,   /* 8-bit, group 32: 8.5 bits/weight */
	NB_QTYPE_Q4_G64 = 21,   /* symmetric 4-bit, group 64: 4.25 bits/weight */
	NB_QTYPE_MIN = 16,
	NB_QTYPE_MAX = 21,
};

#define NB_QTYPE_COUNT (NB_QTYPE_MAX - NB_QTYPE_MIN + 1)

/* Every quantized type, as X(NAME, name, group, bits, zero_point): NAME
 * completes NB_QTYPE_, name is what users type. nb_qinfo is made from it,
 * and the backends whose kernels take any group make one kernel per entry,
 * so a type added here runs on them with no other change. */
#define NB_QTYPE_LIST(X)                                                                        \
	X(Q4_G32, q4_g32, 32, 4, 0)                                                             \
	X(Q4_G64, q4_g64, 64, 4, 0)                                                             \
	X(Q4_G128, q4_g128, 128, 4, 0)                                                          \
	X(Q4Z_G32, q4z_g32, 32, 4, 1)                                                           \
	X(Q4Z_G128, q4z_g128, 128, 4, 1)                                                        \
	X(Q8_G32, q8_g32, 32, 8, 0)

#define NB_QROWS 4 /* rows interleaved per quad */

/* IEEE binary16, stored raw; converted exactly to float. */
typedef uint16_t nb_f16;

float nb_f16_to_f32(nb_f16 h);
/* Round to nearest even; overflow to inf (quantizers never produce it). */
nb_f16 nb_f32_to_f16(float f);

/* ---- The block layout: offsets, and accessors of one block ------------- */

#define NB_QBLOCK_SCALES 0u             /* the 4 binary16 scales: 8 bytes */
#define NB_QBLOCK_ZEROS 8u              /* the 4 zero-point nibbles: 2 bytes */
#define NB_QBLOCK_LEVELS(zp) ((zp) ? 12u : 8u)
#define NB_QBLOCK_ROW_BYTES(G, bits) ((G) * (bits) / 8u)
#define NB_QBLOCK_BYTES(G, bits, zp) (NB_QBLOCK_LEVELS(zp) + NB_QROWS * NB_QBLOCK_ROW_BYTES(G, bits))

/* A block's levels: row 0's first byte. */
static inline const uint8_t *nb_qblock_levels(const uint8_t *blk, uint32_t zp)
{
	return blk + NB_QBLOCK_LEVELS(zp);
}

/* Offset of row r's levels in a block. */
static inline size_t nb_qblock_row_at(uint32_t G, uint32_t bits, uint32_t zp, uint32_t r)
{
	return NB_QBLOCK_LEVELS(zp) + (size_t)r * NB_QBLOCK_ROW_BYTES(G, bits);
}

static inline nb_f16 nb_qblock_scale_f16(const uint8_t *blk, uint32_t r)
{
	nb_f16 h;

	memcpy(&h, blk + NB_QBLOCK_SCALES + 2 * r, sizeof(h));
	return h;
}

static inline float nb_qblock_scale(const uint8_t *blk, uint32_t r)
{
	return nb_f16_to_f32(nb_qblock_scale_f16(blk, r));
}

/* Row r's zero point (zero-point types only). */
static inline uint32_t nb_qblock_zero(const uint8_t *blk, uint32_t r)
{
	return (blk[NB_QBLOCK_ZEROS + r / 2] >> (r & 1 ? 4 : 0)) & 15;
}

/* Symmetric 4-bit levels -8..7 are stored as nibbles level + NB_Q4_BIAS. */
#define NB_Q4_BIAS 8

/* What a type's stored levels are offset by when it has no zero point:
 * NB_Q4_BIAS for symmetric 4-bit, 0 for 8-bit. */
static inline int32_t nb_qtype_bias(uint32_t bits)
{
	return bits == 4 ? NB_Q4_BIAS : 0;
}

/* What row r's stored levels are offset by (the stored value of level 0):
 * its zero point z with zero points, else nb_qtype_bias. */
static inline int32_t nb_qblock_offset(const uint8_t *blk, uint32_t bits, uint32_t zp, uint32_t r)
{
	return zp ? (int32_t)nb_qblock_zero(blk, r) : nb_qtype_bias(bits);
}

/* 4-bit levels: byte j of a row holds element j in its low nibble and
 * element j + G/2 in its high nibble. */
static inline int32_t nb_q4_lo(uint8_t b)
{
	return b & 15;
}

static inline int32_t nb_q4_hi(uint8_t b)
{
	return b >> 4;
}

/* The stored level of element j < G of a row's levels: the signed byte
 * (8-bit) or the nibble 0..15 (4-bit). */
static inline int32_t nb_qrow_level(const uint8_t *row, uint32_t G, uint32_t bits, uint32_t j)
{
	if (bits == 8)
		return (int8_t)row[j];
	return j < G / 2 ? nb_q4_lo(row[j]) : nb_q4_hi(row[j - G / 2]);
}

/* lv[i] = nb_qrow_level(row, G, bits, c0 + i) for i < n (c0 + n <= G),
 * in loops rather than a test per element. */
static inline void nb_qrow_levels(const uint8_t *row, uint32_t G, uint32_t bits, uint32_t c0,
				  uint32_t n, int32_t *lv)
{
	const uint32_t h = G / 2, n_lo = c0 >= h ? 0 : h - c0 < n ? h - c0 : n;
	uint32_t i;

	if (bits == 8) {
		for (i = 0; i < n; i++)
			lv[i] = (int8_t)row[c0 + i];
	} else if (c0 == 0 && n == G) { /* the whole row: each byte once */
		for (i = 0; i < h; i++) {
			lv[i] = nb_q4_lo(row[i]);
			lv[h + i] = nb_q4_hi(row[i]);
		}
	} else {
		for (i = 0; i < n_lo; i++)
			lv[i] = nb_q4_lo(row[c0 + i]);
		for (; i < n; i++)
			lv[i] = nb_q4_hi(row[c0 + i - h]);
	}
}

/* Writers, into a zeroed block. */
static inline void nb_qblock_put_scale(uint8_t *blk, uint32_t r, nb_f16 h)
{
	memcpy(blk + NB_QBLOCK_SCALES + 2 * r, &h, sizeof(h));
}

static inline void nb_qblock_put_zero(uint8_t *blk, uint32_t r, uint32_t z)
{
	blk[NB_QBLOCK_ZEROS + r / 2] |= (uint8_t)((z & 15) << (r & 1 ? 4 : 0));
}

static inline void nb_qrow_put_level(uint8_t *row, uint32_t G, uint32_t bits, uint32_t j,
				     int32_t stored)
{
	if (bits == 8)
		row[j] = (uint8_t)stored;
	else if (j < G / 2)
		row[j] |= (uint8_t)(stored & 15);
	else
		row[j - G / 2] |= (uint8_t)((stored & 15) << 4);
}

/* Properties of a quantized type. */
struct nb_qinfo {
	const char *name;   /* "q4_g32", ... */
	uint32_t group;     /* G */
	uint32_t block_size; /* bytes per (quad, group) block */
	uint8_t bits;
	uint8_t zero_point;
};

/* NULL if type is not a quantized type. */
const struct nb_qinfo *nb_qinfo(uint32_t type);
/* The quantized type a user calls name ("q4_g32"), 0 if none. */
uint32_t nb_qtype_by_name(const char *name);
/* Every type's name, in NB_QTYPE_LIST's order, joined by ", ". */
const char *nb_qtype_names(void);
/* Bytes of a {rows, cols} matrix of this type; -NB_ERANGE on overflow. */
int nb_qtensor_bytes(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *bytes);

/* Activations of m rows of k columns, quantized per block of G: q holds
 * m * kp int8 (kp = k rounded up to G, zero-padded), d m * kp/G scales,
 * sum m * kp/G block sums (for zero-point weights). */
struct nb_qact {
	int8_t *q;
	float *d;
	int32_t *sum;
	/* Group 32 with NB_QACT_INTERLEAVED only (else NULL): the same levels, each whole chunk of four
	 * groups (128 bytes) reordered by 4-byte words as [half][word][group]
	 * -- word w of half h of group g at word 16 h + 4 w + g of its chunk --
	 * so that one 16-byte load holds the same 4 columns of 4 groups: the
	 * order kernels that take 4 groups per register read them in. Row
	 * stride kp; the bytes of a trailing partial chunk are not written. */
	int8_t *qx;
	uint32_t m, k, kp, group;
	uint64_t cap; /* int8 elements allocated: m * kp may not exceed it */
	/* A backend's quantizer of one whole block (kernels.h quant_block), or
	 * NULL (nb_qact_alloc's default) for the portable one here. */
	void (*quant_block)(const float *x, uint32_t G, int8_t *q, float *d, int32_t *sum);
};

/* d = max|x| / 127 of each block (0 for an all-zero block), q = x / d
 * rounded half away from zero, in -127..127. Sets m, k and kp; m * kp must
 * fit the allocation. Defined here, in portable C; a backend may quantize
 * whole blocks faster with the same bits (nb_qact.quant_block: 16 lanes
 * on AVX-512). */
void nb_quant_act(struct nb_qact *a, const float *x, uint32_t m, uint32_t k);
/* The same in parts, for threads: prepare sets the shape, then blocks
 * [b0, b1) of the m * ceil(k/G) blocks (row-major) may be quantized in any
 * order by anyone: each block's result depends on that block alone. */
void nb_quant_act_prepare(struct nb_qact *a, uint32_t m, uint32_t k);
void nb_quant_act_blocks(struct nb_qact *a, const float *x, uint64_t b0, uint64_t b1);

/* Offset in qx (from the row start) of column j of a whole chunk. */
static inline size_t nb_qact_x_offset(uint32_t j)
{
	const uint32_t g = j / 32, c = j % 32;

	return (size_t)(g & ~3u) * 32 + ((c / 16) * 16 + (c % 16) / 4 * 4 + (g & 3)) * 4 + c % 4;
}

/* Allocates buffers for up to m rows of k columns in groups of G; with
 * NB_QACT_INTERLEAVED and G = 32 also qx, which nb_quant_act then fills
 * (only kernels that read it ask: it costs a copy of every level). */
#define NB_QACT_INTERLEAVED 1u
int nb_qact_alloc(struct nb_qact *a, uint32_t m, uint32_t k, uint32_t group, unsigned flags);
void nb_qact_free(struct nb_qact *a);

/* Packing: levels q (rows x cols, row-major) as the format defines them
 * (-8..7 symmetric 4-bit, 0..15 zero-point 4-bit, -127..127 8-bit), scales
 * d and zero points z (rows x ceil(cols/G)) into the block layout. d is
 * stored as binary16: quantizers must compute levels against
 * nb_f16_round(d) so that the stored weights are what they measured. */
int nb_quant_pack(uint32_t type, uint64_t rows, uint64_t cols, const int8_t *q, const float *d,
		  const uint8_t *z, void *out);
/* Row r of a packed matrix, dequantized to cols floats. */
void nb_quant_dequant_row(uint32_t type, const void *data, uint64_t cols, uint64_t r, float *out);
float nb_f16_round(float f);

/* Round-to-nearest quantization of a float matrix, per (row, group):
 * symmetric 4-bit: d = -m/8 for the value m of largest magnitude (m maps to
 * -8 exactly); zero-point 4-bit: d = (max-min)/15, z = round(-min/d);
 * 8-bit: d = max|w|/127. out has nb_qtensor_bytes() bytes. */
int nb_quantize_rtn(uint32_t type, const float *w, uint64_t rows, uint64_t cols, void *out);

/* The float epilogue every backend implements, per output element (i, r):
 * four lanes, group g feeding lane g % 4 in increasing g with
 *     lane = lane + (d_w * d_a) * (float)isum          (three roundings, in that order)
 * where isum is the exact int32 dot product of the group's levels (minus
 * z * sum(a) for zero-point types) and d_w, d_a the weight and activation
 * scales; then out = (lane0 + lane1) + (lane2 + lane3). Lanes start at
 * +0.0. Four lanes match one 512-bit step of 4 rows x 4 groups (one add per
 * step), two 256-bit vectors of 4 rows x 2 groups, and four 128-bit NEON
 * accumulators of 4 rows; and a group that is not there (zero padding)
 * adds +0.0, which leaves a lane as it is (a lane is never -0.0). */
static inline float nb_dot_epilogue_step(float lane, float d_w, float d_a, int32_t isum)
{
	return lane + (d_w * d_a) * (float)isum;
}

#endif
