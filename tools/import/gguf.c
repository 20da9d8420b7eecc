#include "tools/import/gguf.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
/* Smallest encodings, to cap counts against the bytes left before allocating. */
#define KV_MIN_BYTES 13	    /* key length, type, a one-byte value */
#define TENSOR_MIN_BYTES 32 /* name length, ndim, one ne, type, offset */
#define ARRAY_MIN_BYTES 12  /* element type, count */
#define STRING_MIN_BYTES 8  /* length */
#define TENSOR_MAX_ELEMS (1ull << 56)

/* Bytes of a fixed-size metadata value; 0 for strings and arrays. */
static const uint8_t vtype_size[NB_GGUF_VTYPE_COUNT] = {
	[NB_GGUF_U8] = 1,  [NB_GGUF_I8] = 1,  [NB_GGUF_U16] = 2, [NB_GGUF_I16] = 2,
	[NB_GGUF_U32] = 4, [NB_GGUF_I32] = 4, [NB_GGUF_F32] = 4, [NB_GGUF_BOOL] = 1,
	[NB_GGUF_U64] = 8, [NB_GGUF_I64] = 8, [NB_GGUF_F64] = 8,
};

static const struct {
	const char *name;
	uint32_t block; /* elements per block; 0: unknown type */
	uint32_t bytes; /* bytes per block */
} ggml_types[NB_GGML_TYPE_COUNT] = {
	[NB_GGML_F32] = { "F32", 1, 4 },      [NB_GGML_F16] = { "F16", 1, 2 },
	[NB_GGML_Q4_0] = { "Q4_0", 32, 18 },  [NB_GGML_Q4_1] = { "Q4_1", 32, 20 },
	[NB_GGML_Q5_0] = { "Q5_0", 32, 22 },  [NB_GGML_Q5_1] = { "Q5_1", 32, 24 },
	[NB_GGML_Q8_0] = { "Q8_0", 32, 34 },  [NB_GGML_Q8_1] = { "Q8_1", 32, 36 },
	[NB_GGML_Q2_K] = { "Q2_K", 256, 84 }, [NB_GGML_Q3_K] = { "Q3_K", 256, 110 },
	[NB_GGML_Q4_K] = { "Q4_K", 256, 144 }, [NB_GGML_Q5_K] = { "Q5_K", 256, 176 },
	[NB_GGML_Q6_K] = { "Q6_K", 256, 210 }, [NB_GGML_Q8_K] = { "Q8_K", 256, 292 },
	[NB_GGML_I8] = { "I8", 1, 1 },	      [NB_GGML_I16] = { "I16", 1, 2 },
	[NB_GGML_I32] = { "I32", 1, 4 },      [NB_GGML_I64] = { "I64", 1, 8 },
	[NB_GGML_F64] = { "F64", 1, 8 },      [NB_GGML_BF16] = { "BF16", 1, 2 },
};

/* A bounds-checked cursor over the file. */
struct rd {
	const uint8_t *base, *p, *end;
	const char *what;
};

static size_t rd_off(const struct rd *r)
{
	return (size_t)(r->p - r->base);
}

static uint64_t rd_left(const struct rd *r)
{
	return (uint64_t)(r->end - r->p);
}

static int rd_bytes(struct rd *r, uint64_t n, const uint8_t **out)
{
	if (n > rd_left(r)) {
		nb_err("%s: offset %zu: %llu bytes needed, %llu left (truncated?)", r->what,
		       rd_off(r), (unsigned long long)n, (unsigned long long)rd_left(r));
		return -NB_EFORMAT;
	}
	if (out != NULL)
		*out = r->p;
	r->p += n;
	return 0;
}

static uint64_t le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = n - 1; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int rd_u32(struct rd *r, uint32_t *v)
{
	const uint8_t *p;
	int ret = rd_bytes(r, 4, &p);

	if (ret == 0)
		*v = (uint32_t)le(p, 4);
	return ret;
}

static int rd_u64(struct rd *r, uint64_t *v)
{
	const uint8_t *p;
	int ret = rd_bytes(r, 8, &p);

	if (ret == 0)
		*v = le(p, 8);
	return ret;
}

static int rd_str(struct rd *r, const char **s, uint64_t *len)
{
	const uint8_t *p;
	int ret = rd_u64(r, len);

	if (ret == 0)
		ret = rd_bytes(r, *len, &p);
	if (ret == 0)
		*s = (const char *)p;
	return ret;
}

static int skip_array(struct rd *r, uint32_t et, uint64_t n, int depth);

static int skip_value(struct rd *r, uint32_t type, int depth)
{
	const char *s;
	uint64_t len, n;
	uint32_t et;
	int ret;

	if (type >= NB_GGUF_VTYPE_COUNT) {
		nb_err("%s: offset %zu: unknown value type %u", r->what, rd_off(r), type);
		return -NB_EFORMAT;
	}
	if (vtype_size[type] != 0)
		return rd_bytes(r, vtype_size[type], NULL);
	if (type == NB_GGUF_STRING)
		return rd_str(r, &s, &len);
	if (depth >= NB_GGUF_MAX_DEPTH) {
		nb_err("%s: offset %zu: arrays nested deeper than %d", r->what, rd_off(r),
		       NB_GGUF_MAX_DEPTH);
		return -NB_EFORMAT;
	}
	ret = rd_u32(r, &et);
	if (ret == 0)
		ret = rd_u64(r, &n);
	if (ret == 0)
		ret = skip_array(r, et, n, depth + 1);
	return ret;
}

static int skip_array(struct rd *r, uint32_t et, uint64_t n, int depth)
{
	uint64_t min;
	int ret;

	if (et >= NB_GGUF_VTYPE_COUNT) {
		nb_err("%s: offset %zu: unknown array element type %u", r->what, rd_off(r), et);
		return -NB_EFORMAT;
	}
	min = vtype_size[et] ? vtype_size[et] : et == NB_GGUF_STRING ? STRING_MIN_BYTES
								     : ARRAY_MIN_BYTES;
	/* bounds the loop below by the file size */
	if (n > rd_left(r) / min) {
		nb_err("%s: offset %zu: array of %llu elements does not fit in the file",
		       r->what, rd_off(r), (unsigned long long)n);
		return -NB_EFORMAT;
	}
	if (vtype_size[et] != 0)
		return rd_bytes(r, n * min, NULL);
	for (uint64_t i = 0; i < n; i++) {
		ret = skip_value(r, et, depth);
		if (ret != 0)
			return ret;
	}
	return 0;
}

static int read_kv(struct rd *r, struct nb_gguf_kv *kv)
{
	int ret = rd_str(r, &kv->key, &kv->key_len);

	if (ret == 0)
		ret = rd_u32(r, &kv->type);
	if (ret != 0)
		return ret;
	if (kv->type == NB_GGUF_ARRAY) {
		ret = rd_u32(r, &kv->arr_type);
		if (ret == 0)
			ret = rd_u64(r, &kv->arr_n);
		kv->val = r->p;
		if (ret == 0)
			ret = skip_array(r, kv->arr_type, kv->arr_n, 1);
	} else {
		kv->val = r->p;
		ret = skip_value(r, kv->type, 0);
	}
	if (ret != 0) {
		nb_err("%s: bad value of key %.*s", r->what,
		       (int)(kv->key_len > 200 ? 200 : kv->key_len), kv->key);
		return ret;
	}
	kv->val_len = (uint64_t)(r->p - kv->val);
	return 0;
}

static int cmp_kv(const void *pa, const void *pb)
{
	const struct nb_gguf_kv *a = pa, *b = pb;
	uint64_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
	int c = n ? memcmp(a->key, b->key, (size_t)n) : 0;

	if (c != 0)
		return c;
	return a->key_len < b->key_len ? -1 : a->key_len > b->key_len;
}

static int read_kvs(struct nb_gguf *g, struct rd *r)
{
	int ret;

	if (g->n_kv > rd_left(r) / KV_MIN_BYTES) {
		nb_err("%s: %llu metadata entries do not fit in the file", r->what,
		       (unsigned long long)g->n_kv);
		return -NB_EFORMAT;
	}
	g->kv = calloc(g->n_kv ? (size_t)g->n_kv : 1, sizeof(*g->kv));
	if (g->kv == NULL)
		return -NB_ENOMEM;
	for (uint64_t i = 0; i < g->n_kv; i++) {
		ret = read_kv(r, &g->kv[i]);
		if (ret != 0)
			return ret;
	}
	qsort(g->kv, (size_t)g->n_kv, sizeof(*g->kv), cmp_kv);
	for (uint64_t i = 1; i < g->n_kv; i++) {
		if (cmp_kv(&g->kv[i - 1], &g->kv[i]) == 0) {
			nb_err("%s: metadata key %.*s appears twice", r->what,
			       (int)(g->kv[i].key_len > 200 ? 200 : g->kv[i].key_len),
			       g->kv[i].key);
			return -NB_EFORMAT;
		}
	}
	return 0;
}

static int read_alignment(struct nb_gguf *g, const char *what)
{
	const struct nb_gguf_kv *kv = nb_gguf_find(g, "general.alignment");
	uint32_t a;

	g->alignment = NB_GGUF_DEFAULT_ALIGNMENT;
	if (kv == NULL)
		return 0;
	if (kv->type != NB_GGUF_U32) {
		nb_err("%s: general.alignment is not a uint32", what);
		return -NB_EFORMAT;
	}
	a = (uint32_t)le(kv->val, 4);
	if (a == 0 || (a & (a - 1)) != 0) {
		nb_err("%s: general.alignment %u is not a power of two", what, a);
		return -NB_EFORMAT;
	}
	g->alignment = a;
	return 0;
}

static int tensor_size(struct nb_gguf_tensor *t, const char *what)
{
	uint64_t n = 1;
	uint32_t blk;

	if (t->type >= NB_GGML_TYPE_COUNT || ggml_types[t->type].block == 0) {
		nb_err("%s: tensor %s: ggml type %u not supported", what, t->name, t->type);
		return -NB_ENOTSUP;
	}
	for (uint32_t d = 0; d < t->ndim; d++) {
		if (t->ne[d] != 0 && n > TENSOR_MAX_ELEMS / t->ne[d]) {
			nb_err("%s: tensor %s: too many elements", what, t->name);
			return -NB_ERANGE;
		}
		n *= t->ne[d];
	}
	blk = ggml_types[t->type].block;
	if (t->ne[0] % blk != 0) {
		nb_err("%s: tensor %s: row of %llu elements is not a whole number of %s blocks",
		       what, t->name, (unsigned long long)t->ne[0], ggml_types[t->type].name);
		return -NB_EFORMAT;
	}
	/* n / blk blocks of at most 8 bytes per element: no overflow */
	t->n_elems = n;
	t->size = n / blk * ggml_types[t->type].bytes;
	return 0;
}

static int read_tensor_info(struct rd *r, struct nb_gguf_tensor *t, uint64_t *offset)
{
	const char *name;
	uint64_t len;
	int ret = rd_str(r, &name, &len);

	if (ret != 0)
		return ret;
	if (len >= sizeof(t->name) || memchr(name, '\0', (size_t)len) != NULL) {
		nb_err("%s: offset %zu: tensor name of %llu bytes (at most %zu, no NUL)", r->what,
		       rd_off(r), (unsigned long long)len, sizeof(t->name) - 1);
		return -NB_EFORMAT;
	}
	memcpy(t->name, name, (size_t)len);
	t->name[len] = '\0';
	ret = rd_u32(r, &t->ndim);
	if (ret != 0)
		return ret;
	if (t->ndim < 1 || t->ndim > 4) {
		nb_err("%s: tensor %s: %u dimensions (1..4)", r->what, t->name, t->ndim);
		return -NB_EFORMAT;
	}
	for (uint32_t d = 0; d < t->ndim && ret == 0; d++)
		ret = rd_u64(r, &t->ne[d]);
	if (ret == 0)
		ret = rd_u32(r, &t->type);
	if (ret == 0)
		ret = rd_u64(r, offset);
	if (ret == 0)
		ret = tensor_size(t, r->what);
	return ret;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct nb_gguf_tensor *)a)->name,
		      ((const struct nb_gguf_tensor *)b)->name);
}

/* Offsets are relative to the data section, which starts at the first
 * aligned offset after the tensor infos. */
static int place_tensors(struct nb_gguf *g, struct rd *r, const uint64_t *offs)
{
	uint64_t pos = rd_off(r), len = (uint64_t)(r->end - r->base), start, avail;

	start = pos + (g->alignment - pos % g->alignment) % g->alignment;
	if (g->n_tensors == 0)
		return 0;
	if (start > len) {
		nb_err("%s: data section at offset %llu past the end of the file", r->what,
		       (unsigned long long)start);
		return -NB_EFORMAT;
	}
	avail = len - start;
	for (uint64_t i = 0; i < g->n_tensors; i++) {
		struct nb_gguf_tensor *t = &g->tensors[i];
		if (offs[i] % g->alignment != 0 || offs[i] > avail || t->size > avail - offs[i]) {
			nb_err("%s: tensor %s: data at %llu (+%llu bytes) misaligned or outside the %llu-byte data section",
			       r->what, t->name, (unsigned long long)offs[i],
			       (unsigned long long)t->size, (unsigned long long)avail);
			return -NB_EFORMAT;
		}
		t->data = r->base + start + offs[i];
	}
	return 0;
}

static int read_tensors(struct nb_gguf *g, struct rd *r)
{
	uint64_t *offs;
	int ret = 0;

	if (g->n_tensors > rd_left(r) / TENSOR_MIN_BYTES) {
		nb_err("%s: %llu tensors do not fit in the file", r->what,
		       (unsigned long long)g->n_tensors);
		return -NB_EFORMAT;
	}
	g->tensors = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*g->tensors));
	offs = calloc(g->n_tensors ? (size_t)g->n_tensors : 1, sizeof(*offs));
	if (g->tensors == NULL || offs == NULL) {
		ret = -NB_ENOMEM;
		goto out;
	}
	for (uint64_t i = 0; i < g->n_tensors && ret == 0; i++)
		ret = read_tensor_info(r, &g->tensors[i], &offs[i]);
	if (ret == 0)
		ret = place_tensors(g, r, offs);
	if (ret != 0)
		goto out;
	qsort(g->tensors, (size_t)g->n_tensors, sizeof(*g->tensors), cmp_tensor);
	for (uint64_t i = 1; i < g->n_tensors; i++) {
		if (strcmp(g->tensors[i - 1].name, g->tensors[i].name) == 0) {
			nb_err("%s: tensor %s appears twice", r->what, g->tensors[i].name);
			ret = -NB_EFORMAT;
			goto out;
		}
	}
out:
	free(offs);
	return ret;
}

static int read_header(struct nb_gguf *g, struct rd *r)
{
	const uint8_t *magic;
	int ret = rd_bytes(r, 4, &magic);

	if (ret != 0)
		return ret;
	if (memcmp(magic, GGUF_MAGIC, 4) != 0) {
		nb_err("%s: not a GGUF file (bad magic)", r->what);
		return -NB_EFORMAT;
	}
	ret = rd_u32(r, &g->version);
	if (ret != 0)
		return ret;
	if (g->version != 2 && g->version != 3) {
		nb_err("%s: GGUF version %u not supported (2, 3 little-endian only)", r->what,
		       g->version);
		return -NB_ENOTSUP;
	}
	ret = rd_u64(r, &g->n_tensors);
	if (ret == 0)
		ret = rd_u64(r, &g->n_kv);
	return ret;
}

void nb_gguf_init(struct nb_gguf *g)
{
	memset(g, 0, sizeof(*g));
}

void nb_gguf_free(struct nb_gguf *g)
{
	if (g == NULL)
		return;
	free(g->kv);
	free(g->tensors);
	nb_st_map_close(&g->map);
	nb_gguf_init(g);
}

int nb_gguf_parse(struct nb_gguf *g, const void *buf, size_t len, const char *what)
{
	struct rd r = { .base = buf, .p = buf, .end = (const uint8_t *)buf + len, .what = what };
	struct nb_st_map m = g->map;
	int ret;

	if (buf == NULL)
		r.base = r.p = r.end = (const uint8_t *)"";
	ret = read_header(g, &r);
	if (ret == 0)
		ret = read_kvs(g, &r);
	if (ret == 0)
		ret = read_alignment(g, what);
	if (ret == 0)
		ret = read_tensors(g, &r);
	if (ret != 0) {
		/* keep a mapping nb_gguf_open made; drop what this parse built */
		g->map.addr = NULL;
		nb_gguf_free(g);
		g->map = m;
	}
	return ret;
}

int nb_gguf_open(struct nb_gguf *g, const char *path)
{
	int ret;

	nb_gguf_free(g);
	ret = nb_st_map_open(&g->map, path);
	if (ret == 0)
		ret = nb_gguf_parse(g, g->map.addr, g->map.len, path);
	if (ret != 0)
		nb_gguf_free(g);
	return ret;
}

const struct nb_gguf_kv *nb_gguf_find(const struct nb_gguf *g, const char *key)
{
	struct nb_gguf_kv k = { .key = key, .key_len = strlen(key) };

	if (g->n_kv == 0)
		return NULL;
	return bsearch(&k, g->kv, (size_t)g->n_kv, sizeof(*g->kv), cmp_kv);
}

const struct nb_gguf_tensor *nb_gguf_find_tensor(const struct nb_gguf *g, const char *name)
{
	struct nb_gguf_tensor k;

	if (g->n_tensors == 0 || strlen(name) >= sizeof(k.name))
		return NULL;
	strcpy(k.name, name);
	return bsearch(&k, g->tensors, (size_t)g->n_tensors, sizeof(*g->tensors), cmp_tensor);
}

const char *nb_gguf_type_name(uint32_t type)
{
	if (type < NB_GGML_TYPE_COUNT && ggml_types[type].name != NULL)
		return ggml_types[type].name;
	return "?";
}

static const struct nb_gguf_kv *find_typed(const struct nb_gguf *g, const char *key, int *ret)
{
	const struct nb_gguf_kv *kv = nb_gguf_find(g, key);

	*ret = kv == NULL ? -NB_ENOENT : 0;
	return kv;
}

int nb_gguf_get_u32(const struct nb_gguf *g, const char *key, uint32_t *v)
{
	int ret;
	const struct nb_gguf_kv *kv = find_typed(g, key, &ret);
	uint64_t x;
	int64_t s;

	if (kv == NULL)
		return ret;
	switch (kv->type) {
	case NB_GGUF_U8: case NB_GGUF_U16: case NB_GGUF_U32: case NB_GGUF_U64:
		x = le(kv->val, vtype_size[kv->type]);
		break;
	case NB_GGUF_I8: case NB_GGUF_I16: case NB_GGUF_I32: case NB_GGUF_I64: {
		int bits = 8 * vtype_size[kv->type];
		x = le(kv->val, vtype_size[kv->type]);
		/* sign-extend */
		s = bits == 64 ? (int64_t)x : (int64_t)(x << (64 - bits)) >> (64 - bits);
		if (s < 0)
			goto bad;
		x = (uint64_t)s;
		break;
	}
	default:
		goto bad;
	}
	if (x > UINT32_MAX)
		goto bad;
	*v = (uint32_t)x;
	return 0;
bad:
	nb_err("%s: not an integer in 0..2^32-1", key);
	return -NB_EFORMAT;
}

int nb_gguf_get_f32(const struct nb_gguf *g, const char *key, float *v)
{
	int ret;
	const struct nb_gguf_kv *kv = find_typed(g, key, &ret);
	uint64_t x;
	uint32_t x32;
	double d;

	if (kv == NULL)
		return ret;
	if (kv->type == NB_GGUF_F32) {
		x32 = (uint32_t)le(kv->val, 4);
		memcpy(v, &x32, sizeof(*v));
		return 0;
	}
	if (kv->type == NB_GGUF_F64) {
		x = le(kv->val, 8);
		memcpy(&d, &x, sizeof(d));
		*v = (float)d;
		return 0;
	}
	nb_err("%s: not a float", key);
	return -NB_EFORMAT;
}

int nb_gguf_get_bool(const struct nb_gguf *g, const char *key, bool *v)
{
	int ret;
	const struct nb_gguf_kv *kv = find_typed(g, key, &ret);

	if (kv == NULL)
		return ret;
	if (kv->type != NB_GGUF_BOOL) {
		nb_err("%s: not a bool", key);
		return -NB_EFORMAT;
	}
	*v = kv->val[0] != 0;
	return 0;
}

int nb_gguf_get_str(const struct nb_gguf *g, const char *key, const char **s, uint64_t *len)
{
	int ret;
	const struct nb_gguf_kv *kv = find_typed(g, key, &ret);

	if (kv == NULL)
		return ret;
	if (kv->type != NB_GGUF_STRING) {
		nb_err("%s: not a string", key);
		return -NB_EFORMAT;
	}
	*len = le(kv->val, 8);
	*s = (const char *)kv->val + 8;
	return 0;
}

int nb_gguf_get_arr(const struct nb_gguf *g, const char *key, uint32_t elem_type,
		    const uint8_t **p, uint64_t *n)
{
	int ret;
	const struct nb_gguf_kv *kv = find_typed(g, key, &ret);

	if (kv == NULL)
		return ret;
	if (kv->type != NB_GGUF_ARRAY || kv->arr_type != elem_type) {
		nb_err("%s: not an array of value type %u", key, elem_type);
		return -NB_EFORMAT;
	}
	*p = kv->val;
	*n = kv->arr_n;
	return 0;
}

void nb_gguf_next_str(const uint8_t **p, const char **s, uint64_t *len)
{
	*len = le(*p, 8);
	*s = (const char *)*p + 8;
	*p += 8 + *len;
}

static void deq_q8_0(const uint8_t *src, float *dst, uint64_t n_blocks)
{
	for (uint64_t b = 0; b < n_blocks; b++, src += 34, dst += 32) {
		float d = nb_st_f16_to_f32((uint16_t)le(src, 2));
		for (int j = 0; j < 32; j++)
			dst[j] = (float)(int8_t)src[2 + j] * d;
	}
}

/* Q4_0: low nibbles are elements 0..15, high nibbles 16..31, offset by 8. */
static void deq_q4_0(const uint8_t *src, float *dst, uint64_t n_blocks)
{
	for (uint64_t b = 0; b < n_blocks; b++, src += 18, dst += 32) {
		float d = nb_st_f16_to_f32((uint16_t)le(src, 2));
		for (int j = 0; j < 16; j++) {
			dst[j] = (float)((src[2 + j] & 0x0f) - 8) * d;
			dst[j + 16] = (float)((src[2 + j] >> 4) - 8) * d;
		}
	}
}

int nb_gguf_to_f32(const struct nb_gguf_tensor *t, float **out)
{
	const uint8_t *src = t->data;
	float *dst;

	*out = NULL;
	switch (t->type) {
	case NB_GGML_F32: case NB_GGML_F16: case NB_GGML_BF16:
	case NB_GGML_Q8_0: case NB_GGML_Q4_0:
		break;
	default:
		nb_err("tensor %s: ggml type %s (%u) not supported (F32, F16, BF16, Q8_0, Q4_0)",
		       t->name, nb_gguf_type_name(t->type), t->type);
		return -NB_ENOTSUP;
	}
	if (t->n_elems > SIZE_MAX / sizeof(float))
		return -NB_ENOMEM;
	dst = malloc(t->n_elems ? (size_t)t->n_elems * sizeof(float) : 1);
	if (dst == NULL)
		return -NB_ENOMEM;
	if (t->type == NB_GGML_F32) {
		memcpy(dst, src, (size_t)t->size);
	} else if (t->type == NB_GGML_Q8_0) {
		deq_q8_0(src, dst, t->n_elems / 32);
	} else if (t->type == NB_GGML_Q4_0) {
		deq_q4_0(src, dst, t->n_elems / 32);
	} else {
		for (uint64_t i = 0; i < t->n_elems; i++) {
			uint16_t h = (uint16_t)le(src + 2 * i, 2);
			dst[i] = t->type == NB_GGML_F16 ? nb_st_f16_to_f32(h) : nb_st_bf16_to_f32(h);
		}
	}
	*out = dst;
	return 0;
}
