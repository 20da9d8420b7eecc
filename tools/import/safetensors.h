/* safetensors reader (HF checkpoints, PEFT adapters): an 8-byte little-endian
 * header length, a JSON header {name: {dtype, shape, data_offsets}} and the
 * data section the offsets are relative to. The parser works on a memory
 * buffer it does not own (also the fuzz target's entry point); nb_st_open
 * maps a file and parses it. Float tensors convert to float32 exactly. */
#ifndef NB_SAFETENSORS_H
#define NB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* Longest header accepted: the reference implementation's limit. */
#define NB_ST_HEADER_MAX (100u << 20)
#define NB_ST_MAX_DIMS 8

/* A read-only mapping of a whole file (also used by the GGUF and llama2.c
 * readers). An empty file maps to addr NULL, len 0. */
struct nb_st_map {
	void *addr;
	size_t len;
};

int nb_st_map_open(struct nb_st_map *m, const char *path);
void nb_st_map_close(struct nb_st_map *m);

enum nb_st_dtype {
	NB_ST_F32,
	NB_ST_F16,
	NB_ST_BF16,
	NB_ST_F64,
	NB_ST_I64,
	NB_ST_I32,
	NB_ST_I16,
	NB_ST_I8,
	NB_ST_U64,
	NB_ST_U32,
	NB_ST_U16,
	NB_ST_U8,
	NB_ST_BOOL,
	NB_ST_F8_E4M3,
	NB_ST_F8_E5M2,
	NB_ST_DTYPE_COUNT,
};

struct nb_st_tensor {
	char *name;     /* owned, NUL-terminated */
	uint32_t dtype; /* enum nb_st_dtype */
	uint32_t ndim;  /* 0 (a scalar) .. NB_ST_MAX_DIMS */
	uint64_t shape[NB_ST_MAX_DIMS];
	uint64_t n_elems;
	const uint8_t *data; /* inside the caller's buffer; n_elems * element size bytes */
	uint64_t size;
};

struct nb_st {
	struct nb_st_map map;        /* set by nb_st_open only */
	size_t n_tensors;
	struct nb_st_tensor *tensors; /* sorted by name */
};

void nb_st_init(struct nb_st *st);
void nb_st_free(struct nb_st *st);
/* Parses len bytes at buf; the tensors point into buf, which must outlive
 * st. what names the source in messages. */
int nb_st_parse(struct nb_st *st, const void *buf, size_t len, const char *what);
int nb_st_open(struct nb_st *st, const char *path);
const struct nb_st_tensor *nb_st_find(const struct nb_st *st, const char *name);
const char *nb_st_dtype_name(uint32_t dtype);
/* A new float32 copy of a F32, F16 or BF16 tensor; other dtypes give
 * -NB_ENOTSUP naming the dtype. */
int nb_st_to_f32(const struct nb_st_tensor *t, float **out);

/* IEEE half and bfloat16 to float32, exact (subnormals, inf, NaN kept). */
float nb_st_f16_to_f32(uint16_t h);
float nb_st_bf16_to_f32(uint16_t h);

#endif
