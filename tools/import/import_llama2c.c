/* llama2.c checkpoints (karpathy/llama2.c export.py): the legacy format
 * (7 x int32 header, then float32 tensors grouped by kind across layers,
 * including the unused RoPE tables) and version 1 (a 256-byte header with
 * magic "ak42", then the tensors in another order). llama2.c already uses
 * the interleaved RoPE layout: nothing is permuted. */
#include "firmware/arch.h"
#include "tools/import/ckpt.h"
#include "tools/import/safetensors.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define L2C_MAGIC 0x616b3432u /* "ak42" */
#define L2C_V1_HEADER 256
#define L2C_LEGACY_HEADER 28

/* Row and column counts of a stored tensor, in hyper-parameter units. */
enum l2c_dim { L_ONE, L_DIM, L_HIDDEN, L_KV, L_VOCAB, L_FREQ };

struct l2c_seg {
	const char *name; /* canonical name (after "blk.N." if per layer); NULL: skipped */
	bool per_layer;
	uint8_t rows, cols; /* enum l2c_dim; cols L_ONE: a vector */
};

/* export.py legacy_export: freq_cis_real and freq_cis_imag follow the final
 * norm; the classifier comes last unless shared. */
static const struct l2c_seg legacy_order[] = {
	{ "token_embd.weight", false, L_VOCAB, L_DIM },
	{ "attn_norm.weight", true, L_DIM, L_ONE },
	{ "attn_q.weight", true, L_DIM, L_DIM },
	{ "attn_k.weight", true, L_KV, L_DIM },
	{ "attn_v.weight", true, L_KV, L_DIM },
	{ "attn_output.weight", true, L_DIM, L_DIM },
	{ "ffn_norm.weight", true, L_DIM, L_ONE },
	{ "ffn_gate.weight", true, L_HIDDEN, L_DIM },
	{ "ffn_down.weight", true, L_DIM, L_HIDDEN },
	{ "ffn_up.weight", true, L_HIDDEN, L_DIM },
	{ "output_norm.weight", false, L_DIM, L_ONE },
	{ NULL, false, L_FREQ, L_ONE },
	{ NULL, false, L_FREQ, L_ONE },
};

/* export.py version1_export */
static const struct l2c_seg v1_order[] = {
	{ "attn_norm.weight", true, L_DIM, L_ONE },
	{ "ffn_norm.weight", true, L_DIM, L_ONE },
	{ "output_norm.weight", false, L_DIM, L_ONE },
	{ "token_embd.weight", false, L_VOCAB, L_DIM },
	{ "attn_q.weight", true, L_DIM, L_DIM },
	{ "attn_k.weight", true, L_KV, L_DIM },
	{ "attn_v.weight", true, L_KV, L_DIM },
	{ "attn_output.weight", true, L_DIM, L_DIM },
	{ "ffn_gate.weight", true, L_HIDDEN, L_DIM },
	{ "ffn_down.weight", true, L_DIM, L_HIDDEN },
	{ "ffn_up.weight", true, L_HIDDEN, L_DIM },
};

static const struct l2c_seg output_seg = { "output.weight", false, L_VOCAB, L_DIM };

struct l2c_layout {
	const struct l2c_seg *segs;
	size_t n_segs;
	bool shared; /* classifier is the embedding */
	uint64_t data_off;
};

static int32_t rd_i32(const uint8_t *p)
{
	return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
			 (uint32_t)p[3] << 24);
}

static uint64_t dim_of(const struct nb_hparams *hp, uint8_t d)
{
	switch (d) {
	case L_DIM:
		return hp->dim;
	case L_HIDDEN:
		return hp->hidden_dim;
	case L_KV:
		return (uint64_t)hp->n_kv_heads * hp->head_dim;
	case L_VOCAB:
		return hp->vocab_size;
	case L_FREQ:
		return (uint64_t)hp->seq_len * (hp->head_dim / 2);
	default:
		return 1;
	}
}

/* The seven header fields: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 * vocab_size (legacy: negative = separate classifier), seq_len. */
static int read_params(struct nb_hparams *hp, const uint8_t *p, bool legacy, bool *shared,
		       const char *path)
{
	int32_t v[7];

	for (int i = 0; i < 7; i++)
		v[i] = rd_i32(p + 4 * i);
	if (legacy && v[5] < 0 && v[5] != INT32_MIN) {
		*shared = false;
		v[5] = -v[5];
	}
	for (int i = 0; i < 7; i++) {
		if (v[i] <= 0) {
			nb_err("%s: header field %d is %d, must be positive", path, i, v[i]);
			return -NB_EFORMAT;
		}
	}
	if (v[0] % v[3] != 0 || v[3] % v[4] != 0 || (v[0] / v[3]) % 2 != 0) {
		nb_err("%s: dim %d, n_heads %d, n_kv_heads %d do not divide into even heads", path,
		       v[0], v[3], v[4]);
		return -NB_EFORMAT;
	}
	hp->dim = (uint32_t)v[0];
	hp->hidden_dim = (uint32_t)v[1];
	hp->n_layers = (uint32_t)v[2];
	hp->n_heads = (uint32_t)v[3];
	hp->n_kv_heads = (uint32_t)v[4];
	hp->vocab_size = (uint32_t)v[5];
	hp->seq_len = (uint32_t)v[6];
	hp->head_dim = hp->dim / hp->n_heads;
	hp->norm_eps = 1e-5f;
	hp->rope_theta = 10000.0f;
	hp->rope_scaling = NB_ROPE_SCALING_NONE;
	nb_arch_apply(nb_arch_get(NB_ARCH_LLAMA), hp);
	return 0;
}

static int read_header(struct nb_hparams *hp, struct l2c_layout *lay, const uint8_t *p,
		       size_t len, const char *path)
{
	int32_t version;

	if (len < L2C_LEGACY_HEADER) {
		nb_err("%s: %zu bytes: too short for a llama2.c checkpoint", path, len);
		return -NB_EFORMAT;
	}
	lay->shared = true;
	if ((uint32_t)rd_i32(p) != L2C_MAGIC) {
		lay->segs = legacy_order;
		lay->n_segs = sizeof(legacy_order) / sizeof(legacy_order[0]);
		lay->data_off = L2C_LEGACY_HEADER;
		return read_params(hp, p, true, &lay->shared, path);
	}
	if (len < L2C_V1_HEADER) {
		nb_err("%s: %zu bytes: too short for a llama2.c version header", path, len);
		return -NB_EFORMAT;
	}
	version = rd_i32(p + 4);
	if (version != 1) {
		nb_err("%s: llama2.c format version %d not supported (legacy and 1 only)", path,
		       version);
		return -NB_ENOTSUP;
	}
	if (p[36] > 1) {
		nb_err("%s: shared-classifier flag is %u, must be 0 or 1", path, p[36]);
		return -NB_EFORMAT;
	}
	lay->shared = p[36] == 1;
	lay->segs = v1_order;
	lay->n_segs = sizeof(v1_order) / sizeof(v1_order[0]);
	lay->data_off = L2C_V1_HEADER;
	return read_params(hp, p + 8, false, &lay->shared, path);
}

/* Bytes of one segment (all layers); false on overflow. */
static bool seg_bytes(const struct nb_hparams *hp, const struct l2c_seg *s, uint64_t *bytes)
{
	uint64_t r = dim_of(hp, s->rows), c = dim_of(hp, s->cols), n = s->per_layer ? hp->n_layers : 1;

	/* each factor < 2^31 (seq_len * head_dim / 2 < 2^62) */
	if (c != 0 && r > UINT64_MAX / 4 / c)
		return false;
	if (n != 0 && r * c * 4 > UINT64_MAX / n)
		return false;
	*bytes = r * c * 4 * n;
	return true;
}

static int check_size(const struct nb_hparams *hp, const struct l2c_layout *lay, size_t len,
		      const char *path)
{
	uint64_t total = lay->data_off, b;

	for (size_t i = 0; i <= lay->n_segs; i++) {
		const struct l2c_seg *s = i < lay->n_segs ? &lay->segs[i] : &output_seg;
		if (i == lay->n_segs && lay->shared)
			break;
		if (!seg_bytes(hp, s, &b) || b > UINT64_MAX - total) {
			nb_err("%s: header implies an impossibly large file", path);
			return -NB_EFORMAT;
		}
		total += b;
	}
	if (total != len) {
		nb_err("%s: %zu bytes, but the header implies %llu", path, len,
		       (unsigned long long)total);
		return -NB_EFORMAT;
	}
	return 0;
}

static int add_seg(struct nb_ckpt *c, const struct l2c_seg *s, const uint8_t **p)
{
	uint64_t shape[2] = { dim_of(&c->hp, s->rows), dim_of(&c->hp, s->cols) };
	uint32_t n_layers = s->per_layer ? c->hp.n_layers : 1;
	size_t bytes = (size_t)(shape[0] * shape[1] * sizeof(float));
	char name[NB_TENSOR_NAME_MAX];
	float *data;
	int ret;

	for (uint32_t l = 0; l < n_layers; l++, *p += bytes) {
		if (s->name == NULL)
			continue;
		if (s->per_layer)
			snprintf(name, sizeof(name), "blk.%u.%s", l, s->name);
		else
			snprintf(name, sizeof(name), "%s", s->name);
		data = malloc(bytes);
		if (data == NULL)
			return -NB_ENOMEM;
		memcpy(data, *p, bytes);
		ret = nb_ckpt_add(c, name, s->cols == L_ONE ? 1 : 2, shape, data);
		if (ret != 0)
			return ret;
	}
	return 0;
}

/* "dir/stories260K.bin" -> "stories260K" */
static void name_from_path(char *dst, size_t cap, const char *path)
{
	const char *base = strrchr(path, '/'), *dot;
	size_t n;

	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	n = dot && dot != base ? (size_t)(dot - base) : strlen(base);
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, base, n);
	dst[n] = '\0';
}

static int import_tensors(struct nb_ckpt *c, const uint8_t *buf, size_t len, const char *path)
{
	struct l2c_layout lay;
	const uint8_t *p;
	int ret = read_header(&c->hp, &lay, buf, len, path);

	if (ret == 0)
		ret = check_size(&c->hp, &lay, len, path);
	if (ret != 0)
		return ret;
	c->hp.tied_embeddings = lay.shared;
	p = buf + lay.data_off;
	for (size_t i = 0; i < lay.n_segs && ret == 0; i++)
		ret = add_seg(c, &lay.segs[i], &p);
	if (ret == 0 && !lay.shared)
		ret = add_seg(c, &output_seg, &p);
	return ret;
}

int nb_import_llama2c(struct nb_ckpt *c, const char *path, const char *tokenizer_bin)
{
	struct nb_st_map m;
	int ret = nb_st_map_open(&m, path);

	if (ret != 0)
		return ret;
	ret = import_tensors(c, m.addr, m.len, path);
	nb_st_map_close(&m);
	if (ret != 0)
		goto fail;
	name_from_path(c->name, sizeof(c->name), path);
	if (tokenizer_bin != NULL) {
		ret = nb_tok_import_llama2c(&c->tok, tokenizer_bin);
		if (ret != 0)
			goto fail;
	}
	ret = nb_ckpt_validate(c);
	if (ret != 0)
		goto fail;
	return 0;
fail:
	nb_err("%s: llama2.c import failed: %s", path, nb_strerror(ret));
	nb_ckpt_free(c);
	return ret;
}
