/* GGUF reader (versions 2 and 3, little-endian): header, metadata key/values,
 * tensor infos and the aligned data section. The parser works on a memory
 * buffer it does not own (the fuzz target's entry point) and checks every
 * length, count and offset against it; nb_gguf_open maps a file. */
#ifndef NB_GGUF_H
#define NB_GGUF_H

#include "tools/import/safetensors.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_ckpt;

enum nb_gguf_vtype {
	NB_GGUF_U8 = 0,
	NB_GGUF_I8 = 1,
	NB_GGUF_U16 = 2,
	NB_GGUF_I16 = 3,
	NB_GGUF_U32 = 4,
	NB_GGUF_I32 = 5,
	NB_GGUF_F32 = 6,
	NB_GGUF_BOOL = 7,
	NB_GGUF_STRING = 8,
	NB_GGUF_ARRAY = 9,
	NB_GGUF_U64 = 10,
	NB_GGUF_I64 = 11,
	NB_GGUF_F64 = 12,
	NB_GGUF_VTYPE_COUNT,
};

/* ggml tensor types this reader knows the block layout of. */
enum nb_ggml_type {
	NB_GGML_F32 = 0,
	NB_GGML_F16 = 1,
	NB_GGML_Q4_0 = 2,
	NB_GGML_Q4_1 = 3,
	NB_GGML_Q5_0 = 6,
	NB_GGML_Q5_1 = 7,
	NB_GGML_Q8_0 = 8,
	NB_GGML_Q8_1 = 9,
	NB_GGML_Q2_K = 10,
	NB_GGML_Q3_K = 11,
	NB_GGML_Q4_K = 12,
	NB_GGML_Q5_K = 13,
	NB_GGML_Q6_K = 14,
	NB_GGML_Q8_K = 15,
	NB_GGML_I8 = 24,
	NB_GGML_I16 = 25,
	NB_GGML_I32 = 26,
	NB_GGML_I64 = 27,
	NB_GGML_F64 = 28,
	NB_GGML_BF16 = 30,
	NB_GGML_TYPE_COUNT = 31,
};

#define NB_GGUF_MAX_DEPTH 4 /* nested arrays */
#define NB_GGUF_DEFAULT_ALIGNMENT 32

struct nb_gguf_kv {
	const char *key; /* inside the buffer, key_len bytes, not NUL-terminated */
	uint64_t key_len;
	uint32_t type;     /* enum nb_gguf_vtype */
	uint32_t arr_type; /* element type when type == NB_GGUF_ARRAY */
	uint64_t arr_n;    /* element count when type == NB_GGUF_ARRAY */
	const uint8_t *val; /* the value (an array's first element), val_len bytes */
	uint64_t val_len;
};

struct nb_gguf_tensor {
	char name[64]; /* NUL-terminated */
	uint32_t ndim; /* 1..4 */
	uint64_t ne[4]; /* ggml order: ne[0] varies fastest */
	uint32_t type;  /* enum nb_ggml_type */
	uint64_t n_elems;
	const uint8_t *data;
	uint64_t size;
};

struct nb_gguf {
	struct nb_st_map map; /* set by nb_gguf_open only */
	uint32_t version;
	uint32_t alignment;
	uint64_t n_kv;
	struct nb_gguf_kv *kv;
	uint64_t n_tensors;
	struct nb_gguf_tensor *tensors;
};

void nb_gguf_init(struct nb_gguf *g);
void nb_gguf_free(struct nb_gguf *g);
/* what names the source in messages. The kv and tensors point into buf. */
int nb_gguf_parse(struct nb_gguf *g, const void *buf, size_t len, const char *what);
int nb_gguf_open(struct nb_gguf *g, const char *path);

const struct nb_gguf_kv *nb_gguf_find(const struct nb_gguf *g, const char *key);
const struct nb_gguf_tensor *nb_gguf_find_tensor(const struct nb_gguf *g, const char *name);
const char *nb_gguf_type_name(uint32_t type);

/* Typed getters: -NB_ENOENT if the key is absent, -NB_EFORMAT if it has
 * another type or (integers) a value out of range. */
int nb_gguf_get_u32(const struct nb_gguf *g, const char *key, uint32_t *v);
int nb_gguf_get_f32(const struct nb_gguf *g, const char *key, float *v);
int nb_gguf_get_bool(const struct nb_gguf *g, const char *key, bool *v);
/* s is not NUL-terminated. */
int nb_gguf_get_str(const struct nb_gguf *g, const char *key, const char **s, uint64_t *len);
/* An array of type elem_type; *n elements starting at *p. */
int nb_gguf_get_arr(const struct nb_gguf *g, const char *key, uint32_t elem_type,
		    const uint8_t **p, uint64_t *n);
/* Steps over one string of a string array (already bounds-checked by the
 * parser): returns the string and advances *p. */
void nb_gguf_next_str(const uint8_t **p, const char **s, uint64_t *len);

/* A new float32 copy of an F32, F16, BF16, Q8_0 or Q4_0 tensor; other types
 * give -NB_ENOTSUP naming the type. */
int nb_gguf_to_f32(const struct nb_gguf_tensor *t, float **out);

/* The metadata -> hyper-parameters, tokenizer and tensors mapping of
 * nb_import_gguf, on a parsed file (what names it in messages). */
int nb_gguf_to_ckpt(struct nb_ckpt *c, const struct nb_gguf *g, const char *what);

#endif
