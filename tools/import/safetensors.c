#include "tools/import/safetensors.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the checkpoint readers assume a little-endian host"
#endif

/* JSON numbers are doubles: integers above 2^53 are not exact. */
#define JSON_INT_MAX 9007199254740992.0

static const struct {
	const char *name;
	uint32_t size;
} st_dtypes[NB_ST_DTYPE_COUNT] = {
	[NB_ST_F32] = { "F32", 4 },	  [NB_ST_F16] = { "F16", 2 },
	[NB_ST_BF16] = { "BF16", 2 },	  [NB_ST_F64] = { "F64", 8 },
	[NB_ST_I64] = { "I64", 8 },	  [NB_ST_I32] = { "I32", 4 },
	[NB_ST_I16] = { "I16", 2 },	  [NB_ST_I8] = { "I8", 1 },
	[NB_ST_U64] = { "U64", 8 },	  [NB_ST_U32] = { "U32", 4 },
	[NB_ST_U16] = { "U16", 2 },	  [NB_ST_U8] = { "U8", 1 },
	[NB_ST_BOOL] = { "BOOL", 1 },	  [NB_ST_F8_E4M3] = { "F8_E4M3", 1 },
	[NB_ST_F8_E5M2] = { "F8_E5M2", 1 },
};

int nb_st_map_open(struct nb_st_map *m, const char *path)
{
	struct stat sb;
	int fd, ret = -NB_EIO;

	m->addr = NULL;
	m->len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fstat(fd, &sb) != 0) {
		nb_err("%s: stat: %s", path, strerror(errno));
		goto out_fd;
	}
	if (!S_ISREG(sb.st_mode)) {
		nb_err("%s: not a regular file", path);
		ret = -NB_EINVAL;
		goto out_fd;
	}
	if ((uint64_t)sb.st_size > SIZE_MAX) {
		nb_err("%s: too large to map", path);
		ret = -NB_ERANGE;
		goto out_fd;
	}
	ret = 0;
	if (sb.st_size == 0)
		goto out_fd;
	m->addr = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (m->addr == MAP_FAILED) {
		nb_err("%s: mmap: %s", path, strerror(errno));
		m->addr = NULL;
		ret = -NB_EIO;
		goto out_fd;
	}
	m->len = (size_t)sb.st_size;
out_fd:
	close(fd);
	return ret;
}

void nb_st_map_close(struct nb_st_map *m)
{
	if (m->addr != NULL)
		munmap(m->addr, m->len);
	m->addr = NULL;
	m->len = 0;
}

float nb_st_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
	float f;

	if (exp == 0) {
		/* zero or subnormal: mant * 2^-24, exact in float32 */
		f = (float)mant * 0x1p-24f;
		return sign ? -f : f;
	}
	if (exp == 31)
		bits = sign | 0x7f800000u | (mant << 13); /* inf, NaN with its payload */
	else
		bits = sign | ((exp + 112u) << 23) | (mant << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

float nb_st_bf16_to_f32(uint16_t h)
{
	uint32_t bits = (uint32_t)h << 16;
	float f;

	memcpy(&f, &bits, sizeof(f));
	return f;
}

const char *nb_st_dtype_name(uint32_t dtype)
{
	return dtype < NB_ST_DTYPE_COUNT ? st_dtypes[dtype].name : "?";
}

void nb_st_init(struct nb_st *st)
{
	memset(st, 0, sizeof(*st));
}

void nb_st_free(struct nb_st *st)
{
	if (st == NULL)
		return;
	for (size_t i = 0; i < st->n_tensors; i++)
		free(st->tensors[i].name);
	free(st->tensors);
	nb_st_map_close(&st->map);
	nb_st_init(st);
}

static int json_u64(const cJSON *v, uint64_t *out)
{
	double d;

	if (!cJSON_IsNumber(v))
		return -NB_EFORMAT;
	d = v->valuedouble;
	if (!(d >= 0.0 && d <= JSON_INT_MAX) || d != (double)(uint64_t)d)
		return -NB_EFORMAT;
	*out = (uint64_t)d;
	return 0;
}

static int parse_dtype(const char *what, const char *name, const cJSON *v, uint32_t *dtype)
{
	if (!cJSON_IsString(v)) {
		nb_err("%s: tensor %s: dtype missing or not a string", what, name);
		return -NB_EFORMAT;
	}
	for (uint32_t i = 0; i < NB_ST_DTYPE_COUNT; i++) {
		if (strcmp(v->valuestring, st_dtypes[i].name) == 0) {
			*dtype = i;
			return 0;
		}
	}
	nb_err("%s: tensor %s: dtype %.32s not supported", what, name, v->valuestring);
	return -NB_ENOTSUP;
}

static int parse_shape(const char *what, struct nb_st_tensor *t, const cJSON *v)
{
	const cJSON *d;
	uint64_t n = 1;

	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > NB_ST_MAX_DIMS) {
		nb_err("%s: tensor %s: shape missing, not an array or more than %d dims", what,
		       t->name, NB_ST_MAX_DIMS);
		return -NB_EFORMAT;
	}
	t->ndim = 0;
	cJSON_ArrayForEach(d, v) {
		uint64_t x;
		if (json_u64(d, &x) != 0) {
			nb_err("%s: tensor %s: shape[%u] is not a non-negative integer", what,
			       t->name, t->ndim);
			return -NB_EFORMAT;
		}
		/* elements * 8 bytes must not overflow */
		if (x != 0 && n > (UINT64_MAX / 8) / x) {
			nb_err("%s: tensor %s: shape too large", what, t->name);
			return -NB_ERANGE;
		}
		n *= x;
		t->shape[t->ndim++] = x;
	}
	t->n_elems = n;
	return 0;
}

static int parse_offsets(const char *what, struct nb_st_tensor *t, const cJSON *v,
			 const uint8_t *data, uint64_t data_len)
{
	uint64_t begin, end;

	if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 ||
	    json_u64(cJSON_GetArrayItem(v, 0), &begin) != 0 ||
	    json_u64(cJSON_GetArrayItem(v, 1), &end) != 0) {
		nb_err("%s: tensor %s: data_offsets must be [begin, end]", what, t->name);
		return -NB_EFORMAT;
	}
	if (begin > end || end > data_len) {
		nb_err("%s: tensor %s: data_offsets [%llu, %llu] outside the %llu-byte data section",
		       what, t->name, (unsigned long long)begin, (unsigned long long)end,
		       (unsigned long long)data_len);
		return -NB_ERANGE;
	}
	t->size = t->n_elems * st_dtypes[t->dtype].size;
	if (end - begin != t->size) {
		nb_err("%s: tensor %s: %llu bytes of data for %llu elements of %s", what, t->name,
		       (unsigned long long)(end - begin), (unsigned long long)t->n_elems,
		       st_dtypes[t->dtype].name);
		return -NB_EFORMAT;
	}
	t->data = data + begin;
	return 0;
}

static int parse_entry(const char *what, struct nb_st_tensor *t, const cJSON *e,
		       const uint8_t *data, uint64_t data_len)
{
	int ret;

	t->name = strdup(e->string);
	if (t->name == NULL)
		return -NB_ENOMEM;
	if (!cJSON_IsObject(e)) {
		nb_err("%s: tensor %s: not an object", what, t->name);
		return -NB_EFORMAT;
	}
	ret = parse_dtype(what, t->name, cJSON_GetObjectItemCaseSensitive(e, "dtype"), &t->dtype);
	if (ret == 0)
		ret = parse_shape(what, t, cJSON_GetObjectItemCaseSensitive(e, "shape"));
	if (ret == 0)
		ret = parse_offsets(what, t, cJSON_GetObjectItemCaseSensitive(e, "data_offsets"),
				    data, data_len);
	return ret;
}

static int cmp_tensor(const void *a, const void *b)
{
	return strcmp(((const struct nb_st_tensor *)a)->name,
		      ((const struct nb_st_tensor *)b)->name);
}

static int cmp_data(const void *a, const void *b)
{
	const struct nb_st_tensor *x = *(const struct nb_st_tensor *const *)a;
	const struct nb_st_tensor *y = *(const struct nb_st_tensor *const *)b;

	return x->data < y->data ? -1 : x->data > y->data;
}

/* No byte in two tensors: overlapping data_offsets are a damaged or
 * hostile header (the format writes each tensor once, back to back).
 * Empty tensors hold no bytes. */
static int check_disjoint(const struct nb_st *st, const char *what)
{
	const struct nb_st_tensor **by = malloc((st->n_tensors ? st->n_tensors : 1) * sizeof(*by));
	const struct nb_st_tensor *prev = NULL;
	size_t n = 0;
	int ret = 0;

	if (by == NULL)
		return -NB_ENOMEM;
	for (size_t i = 0; i < st->n_tensors; i++)
		if (st->tensors[i].size)
			by[n++] = &st->tensors[i];
	qsort(by, n, sizeof(*by), cmp_data);
	for (size_t i = 0; i < n && ret == 0; prev = by[i++]) {
		if (prev && by[i]->data < prev->data + prev->size) {
			nb_err("%s: tensors %s and %s overlap in the data section", what, prev->name,
			       by[i]->name);
			ret = -NB_EFORMAT;
		}
	}
	free(by);
	return ret;
}

static int parse_tensors(struct nb_st *st, const cJSON *root, const uint8_t *data,
			 uint64_t data_len, const char *what)
{
	const cJSON *e;
	size_t n = 0;
	int ret;

	cJSON_ArrayForEach(e, root)
		n++;
	st->tensors = calloc(n ? n : 1, sizeof(*st->tensors));
	if (st->tensors == NULL)
		return -NB_ENOMEM;
	cJSON_ArrayForEach(e, root) {
		if (strcmp(e->string, "__metadata__") == 0)
			continue;
		ret = parse_entry(what, &st->tensors[st->n_tensors++], e, data, data_len);
		if (ret != 0)
			return ret;
	}
	qsort(st->tensors, st->n_tensors, sizeof(*st->tensors), cmp_tensor);
	for (size_t i = 1; i < st->n_tensors; i++) {
		if (strcmp(st->tensors[i - 1].name, st->tensors[i].name) == 0) {
			nb_err("%s: tensor %s listed twice", what, st->tensors[i].name);
			return -NB_EFORMAT;
		}
	}
	return check_disjoint(st, what);
}

int nb_st_parse(struct nb_st *st, const void *buf, size_t len, const char *what)
{
	const uint8_t *p = buf;
	const char *end = NULL;
	cJSON *root = NULL;
	uint64_t hlen = 0;
	int ret = -NB_EFORMAT;

	if (len < 8) {
		nb_err("%s: %zu bytes: too short for a safetensors file", what, len);
		return -NB_EFORMAT;
	}
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | p[i];
	if (hlen > len - 8) {
		nb_err("%s: header length %llu past the end of the file (%zu bytes)", what,
		       (unsigned long long)hlen, len);
		return -NB_EFORMAT;
	}
	if (hlen > NB_ST_HEADER_MAX) {
		nb_err("%s: header length %llu over the %u-byte limit", what,
		       (unsigned long long)hlen, NB_ST_HEADER_MAX);
		return -NB_ERANGE;
	}
	root = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)hlen, &end, false);
	if (root == NULL || !cJSON_IsObject(root)) {
		nb_err("%s: header is not a JSON object", what);
		goto out;
	}
	/* writers pad the header with spaces; like serde_json, which the
	 * reference reader uses, take white space after the object, and
	 * nothing else */
	for (; end < (const char *)p + 8 + hlen; end++) {
		if (*end != ' ' && *end != '\n' && *end != '\r' && *end != '\t') {
			nb_err("%s: header has bytes after its JSON object", what);
			goto out;
		}
	}
	ret = parse_tensors(st, root, p + 8 + hlen, len - 8 - hlen, what);
out:
	cJSON_Delete(root);
	if (ret != 0) {
		/* keep a mapping nb_st_open made; drop what this parse built */
		struct nb_st_map m = st->map;
		st->map.addr = NULL;
		nb_st_free(st);
		st->map = m;
	}
	return ret;
}

int nb_st_open(struct nb_st *st, const char *path)
{
	int ret;

	nb_st_free(st);
	ret = nb_st_map_open(&st->map, path);
	if (ret != 0)
		return ret;
	ret = nb_st_parse(st, st->map.addr, st->map.len, path);
	if (ret != 0)
		nb_st_free(st);
	return ret;
}

const struct nb_st_tensor *nb_st_find(const struct nb_st *st, const char *name)
{
	struct nb_st_tensor key = { .name = (char *)name };

	if (st->n_tensors == 0)
		return NULL;
	return bsearch(&key, st->tensors, st->n_tensors, sizeof(*st->tensors), cmp_tensor);
}

int nb_st_to_f32(const struct nb_st_tensor *t, float **out)
{
	const uint8_t *src = t->data;
	float *dst;

	*out = NULL;
	if (t->dtype != NB_ST_F32 && t->dtype != NB_ST_F16 && t->dtype != NB_ST_BF16) {
		nb_err("tensor %s: dtype %s not supported (F32, F16, BF16 only)", t->name,
		       nb_st_dtype_name(t->dtype));
		return -NB_ENOTSUP;
	}
	if (t->n_elems > SIZE_MAX / sizeof(float))
		return -NB_ENOMEM;
	dst = malloc(t->n_elems ? (size_t)t->n_elems * sizeof(float) : 1);
	if (dst == NULL)
		return -NB_ENOMEM;
	if (t->dtype == NB_ST_F32) {
		memcpy(dst, src, (size_t)t->size);
	} else {
		for (uint64_t i = 0; i < t->n_elems; i++) {
			uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
			dst[i] = t->dtype == NB_ST_F16 ? nb_st_f16_to_f32(h) : nb_st_bf16_to_f32(h);
		}
	}
	*out = dst;
	return 0;
}
