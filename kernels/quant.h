/* Quantized weight and activation formats. These structs ARE the image
 * format (docs/image-format.md, "Quantized tensors"): the quantizer writes
 * them on the host in exactly the order the kernels read them.
 *
 * Weights: a matrix {rows, cols} is stored as row quads (4 rows, the last
 * quad zero-padded) and, inside a quad, one block per group of G columns
 * (cols zero-padded to a multiple of G). A block holds the 4 rows' scales
 * (and zero points) and their 4-bit or 8-bit levels, so one sequential
 * stream feeds four dot products that share each activation load.
 *
 * Nibbles: byte j of a row's group holds element j in its low nibble and
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

enum nb_qtype {
	NB_QTYPE_Q4_G32 = 16,   /* symmetric 4-bit, group 32: 4.5 bits/weight */
	NB_QTYPE_Q4_G128 = 17,  /* symmetric 4-bit, group 128: 4.125 bits/weight */
	NB_QTYPE_Q4Z_G32 = 18,  /* 4-bit with zero point, group 32: 4.75 bits/weight */
	NB_QTYPE_Q4Z_G128 = 19, /* 4-bit with zero point, group 128: 4.1875 bits/weight */
	NB_QTYPE_Q8_G32 = 20,   /* 8-bit, group 32: 8.5 bits/weight */
	NB_QTYPE_MIN = 16,
	NB_QTYPE_MAX = 20,
};

#define NB_QROWS 4 /* rows interleaved per quad */

/* IEEE binary16, stored raw; converted exactly to float. */
typedef uint16_t nb_f16;

struct nb_q4_g32 {
	nb_f16 d[NB_QROWS];
	uint8_t qs[NB_QROWS][16];
};
static_assert(sizeof(struct nb_q4_g32) == 72, "q4_g32 block");

struct nb_q4_g128 {
	nb_f16 d[NB_QROWS];
	uint8_t qs[NB_QROWS][64];
};
static_assert(sizeof(struct nb_q4_g128) == 264, "q4_g128 block");

struct nb_q4z_g32 {
	nb_f16 d[NB_QROWS];
	uint8_t z[NB_QROWS / 2]; /* zero points, two per byte: row 2i low, 2i+1 high */
	uint8_t pad[2];
	uint8_t qs[NB_QROWS][16];
};
static_assert(sizeof(struct nb_q4z_g32) == 76, "q4z_g32 block");

struct nb_q4z_g128 {
	nb_f16 d[NB_QROWS];
	uint8_t z[NB_QROWS / 2];
	uint8_t pad[2];
	uint8_t qs[NB_QROWS][64];
};
static_assert(sizeof(struct nb_q4z_g128) == 268, "q4z_g128 block");

struct nb_q8_g32 {
	nb_f16 d[NB_QROWS];
	int8_t qs[NB_QROWS][32];
};
static_assert(sizeof(struct nb_q8_g32) == 136, "q8_g32 block");

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
/* Bytes of a {rows, cols} matrix of this type; -NB_ERANGE on overflow. */
int nb_qtensor_bytes(uint32_t type, uint64_t rows, uint64_t cols, uint64_t *bytes);

float nb_f16_to_f32(nb_f16 h);
/* Round to nearest even; overflow to inf (quantizers never produce it). */
nb_f16 nb_f32_to_f16(float f);

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
