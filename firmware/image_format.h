/* The .nib model image, on disk. These structs ARE the format (little
 * endian, documented byte for byte in docs/image-format.md): every field
 * has a fixed width and every struct a static_assert'ed size. */
#ifndef NB_IMAGE_FORMAT_H
#define NB_IMAGE_FORMAT_H

#include <assert.h>
#include <stdint.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the image format is little endian and is used in place: big-endian hosts are not supported"
#endif

/* "\x89NIB\r\n\x1a\n": a non-ASCII first byte and CR LF / ^Z / LF catch
 * images mangled by text-mode transfers (as PNG's signature does). */
#define NB_IMAGE_MAGIC "\x89NIB\r\n\x1a\n"
#define NB_IMAGE_VERSION 1u
#define NB_IMAGE_PAGE 4096u         /* sections start on page boundaries */
#define NB_IMAGE_TENSOR_ALIGN 64u   /* widest kernel load; cache line */
#define NB_IMAGE_MAX_SECTIONS 16u
#define NB_IMAGE_TRAILER_SIZE 4096u /* the signature trailer, one page */

enum nb_image_section_kind {
	NB_SECTION_HPARAMS = 1,   /* struct nb_image_hparams */
	NB_SECTION_META = 2,      /* key/value strings (name, license, ...) */
	NB_SECTION_TOKENIZER = 3, /* tokenizer blob (docs/tokenizer-blob.md) */
	NB_SECTION_TENSORS = 4,   /* struct nb_image_tensor[n] */
	NB_SECTION_GOLDEN = 5,    /* struct nb_image_golden + ids */
	NB_SECTION_DATA = 6,      /* tensor bytes */
	NB_SECTION_TRAILER = 7,   /* signature trailer (zeros until signed) */
	NB_SECTION_KIND_MAX = 7,
};

struct nb_image_section {
	uint32_t kind; /* enum nb_image_section_kind */
	uint32_t reserved;
	uint64_t offset; /* from the start of the file, page aligned */
	uint64_t size;   /* bytes */
};
static_assert(sizeof(struct nb_image_section) == 24, "section entry layout");

struct nb_image_header {
	uint8_t magic[8];
	uint32_t version;       /* NB_IMAGE_VERSION */
	uint32_t header_size;   /* sizeof(struct nb_image_header) */
	uint64_t file_size;     /* the whole file, trailer included */
	uint64_t model_version; /* monotonic: updates never go backwards */
	uint32_t n_sections;
	uint32_t flags; /* none defined: must be 0 */
	uint8_t reserved[24];
	struct nb_image_section sections[NB_IMAGE_MAX_SECTIONS];
};
static_assert(sizeof(struct nb_image_header) == 64 + 16 * 24, "header layout");

struct nb_image_hparams {
	uint32_t arch; /* enum nb_arch */
	uint32_t dim;
	uint32_t hidden_dim;
	uint32_t n_layers;
	uint32_t n_heads;
	uint32_t n_kv_heads;
	uint32_t head_dim;
	uint32_t vocab_size;
	uint32_t seq_len;
	uint32_t tied_embeddings;
	float norm_eps;
	float rope_theta;
	uint32_t rope_scaling;
	float rope_factor;
	float rope_low_freq_factor;
	float rope_high_freq_factor;
	uint32_t rope_orig_ctx;
	/* The layer's pieces (struct nb_hparams): zero in images written before
	 * they existed, which is Llama's layer. */
	uint32_t features;   /* enum nb_feature bits */
	uint32_t activation; /* enum nb_act */
	float norm_offset;
	float embed_scale;
	uint32_t reserved[11]; /* zero */
};
static_assert(sizeof(struct nb_image_hparams) == 128, "hparams layout");

struct nb_image_tensor {
	char name[64]; /* NUL-terminated, NUL-padded */
	uint32_t type; /* enum nb_dtype or a kernels/quant.h type */
	uint32_t ndim; /* 1..4 */
	uint64_t shape[4]; /* shape[0] slowest; unused dimensions are 0 */
	uint64_t offset;   /* from the start of the DATA section, 64-aligned */
	uint64_t size;     /* bytes: exactly what type and shape need */
	uint32_t layout;   /* 0 = row-major; kernel-specific interleaves later */
	uint32_t reserved;
};
static_assert(sizeof(struct nb_image_tensor) == 128, "tensor entry layout");

/* The golden test vector: greedy continuation of a prompt, computed when
 * the image was made. Ids follow: n_prompt prompt ids, then n_expected. */
struct nb_image_golden {
	uint32_t n_prompt;
	uint32_t n_expected;
	int32_t ids[];
};
static_assert(sizeof(struct nb_image_golden) == 8, "golden layout");

/* Records of the META section, back to back, each 4-byte aligned:
 * u32 key_len, u32 value_len, key bytes, value bytes, zero padding. */
struct nb_image_meta_record {
	uint32_t key_len;
	uint32_t value_len;
};
static_assert(sizeof(struct nb_image_meta_record) == 8, "meta record layout");

#define NB_TRAILER_MAGIC "NIBSIG\0\1"

#endif
