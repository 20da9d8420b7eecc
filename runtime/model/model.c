/* Model binding: hyper-parameter checks, the shape every canonical tensor
 * must have, and the lookup of a model's tensors into struct nb_model. */
#include "runtime/model/model.h"
#include "kernels/quant.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-layer tensors: name suffix after "blk.N.", the shape in units of
 * the hyper-parameters, and what the model must have for the tensor to be
 * one of its own (model_has). */
enum shape_dim { D_DIM, D_HIDDEN, D_Q, D_KV, D_HEAD, D_VOCAB, D_NONE };

#define HAS_UNTIED_OUTPUT (1u << 31) /* beside the enum nb_feature bits */

struct tensor_kind {
	const char *suffix;
	uint32_t ndim;
	enum shape_dim rows, cols;
	uint32_t needs; /* NB_FEAT_* or HAS_UNTIED_OUTPUT; 0: every model */
	size_t offset;  /* of the pointer in struct nb_layer or struct nb_model */
};

#define LAYER(field) offsetof(struct nb_layer, field)

static const struct tensor_kind layer_kinds[] = {
	{ "attn_norm.weight", 1, D_DIM, D_NONE, 0, LAYER(attn_norm) },
	{ "attn_q.weight", 2, D_Q, D_DIM, 0, LAYER(wq) },
	{ "attn_k.weight", 2, D_KV, D_DIM, 0, LAYER(wk) },
	{ "attn_v.weight", 2, D_KV, D_DIM, 0, LAYER(wv) },
	{ "attn_q.bias", 1, D_Q, D_NONE, NB_FEAT_QKV_BIAS, LAYER(bq) },
	{ "attn_k.bias", 1, D_KV, D_NONE, NB_FEAT_QKV_BIAS, LAYER(bk) },
	{ "attn_v.bias", 1, D_KV, D_NONE, NB_FEAT_QKV_BIAS, LAYER(bv) },
	{ "attn_q_norm.weight", 1, D_HEAD, D_NONE, NB_FEAT_QK_NORM, LAYER(q_norm) },
	{ "attn_k_norm.weight", 1, D_HEAD, D_NONE, NB_FEAT_QK_NORM, LAYER(k_norm) },
	{ "attn_output.weight", 2, D_DIM, D_Q, 0, LAYER(wo) },
	{ "ffn_norm.weight", 1, D_DIM, D_NONE, 0, LAYER(ffn_norm) },
	{ "ffn_gate.weight", 2, D_HIDDEN, D_DIM, 0, LAYER(w_gate) },
	{ "ffn_up.weight", 2, D_HIDDEN, D_DIM, 0, LAYER(w_up) },
	{ "ffn_down.weight", 2, D_DIM, D_HIDDEN, 0, LAYER(w_down) },
};

#define N_LAYER_KINDS (sizeof(layer_kinds) / sizeof(layer_kinds[0]))

static const struct tensor_kind global_kinds[] = {
	{ "token_embd.weight", 2, D_VOCAB, D_DIM, 0, offsetof(struct nb_model, token_embd) },
	{ "output_norm.weight", 1, D_DIM, D_NONE, 0, offsetof(struct nb_model, output_norm) },
	{ "output.weight", 2, D_VOCAB, D_DIM, HAS_UNTIED_OUTPUT, offsetof(struct nb_model, output) },
};

#define N_GLOBAL_KINDS (sizeof(global_kinds) / sizeof(global_kinds[0]))

static uint32_t model_has(const struct nb_hparams *hp)
{
	return hp->features | (hp->tied_embeddings ? 0 : HAS_UNTIED_OUTPUT);
}

static bool kind_in(const struct nb_hparams *hp, const struct tensor_kind *k)
{
	return (k->needs & ~model_has(hp)) == 0;
}

static uint64_t dim_value(const struct nb_hparams *hp, enum shape_dim d)
{
	switch (d) {
	case D_DIM:
		return hp->dim;
	case D_HIDDEN:
		return hp->hidden_dim;
	case D_Q:
		return (uint64_t)hp->n_heads * hp->head_dim;
	case D_KV:
		return (uint64_t)hp->n_kv_heads * hp->head_dim;
	case D_HEAD:
		return hp->head_dim;
	case D_VOCAB:
		return hp->vocab_size;
	case D_NONE:
		break;
	}
	return 0;
}

static void kind_shape(const struct nb_hparams *hp, const struct tensor_kind *k, uint32_t *ndim,
		       uint64_t shape[4])
{
	memset(shape, 0, 4 * sizeof(shape[0]));
	*ndim = k->ndim;
	shape[0] = dim_value(hp, k->rows);
	if (k->ndim > 1)
		shape[1] = dim_value(hp, k->cols);
}

/* Parses "blk.N." with N a canonical decimal (no sign, no leading zero)
 * below n_layers; returns the rest of the name, or NULL. */
static const char *parse_layer(const char *name, uint32_t n_layers, uint32_t *layer)
{
	static const char prefix[] = "blk.";
	const char *p = name + sizeof(prefix) - 1;
	uint64_t v = 0;

	if (strncmp(name, prefix, sizeof(prefix) - 1) != 0 || *p < '0' || *p > '9')
		return NULL;
	if (p[0] == '0' && p[1] != '.')
		return NULL;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v >= n_layers)
			return NULL;
	}
	if (*p != '.')
		return NULL;
	*layer = (uint32_t)v;
	return p + 1;
}

/* The kind of a canonical name of this model (and its layer, or
 * UINT32_MAX), or NULL. */
static const struct tensor_kind *find_kind(const struct nb_hparams *hp, const char *name,
					   uint32_t *layer)
{
	const char *suffix;
	size_t i;

	*layer = UINT32_MAX;
	for (i = 0; i < N_GLOBAL_KINDS; i++)
		if (strcmp(name, global_kinds[i].suffix) == 0)
			return kind_in(hp, &global_kinds[i]) ? &global_kinds[i] : NULL;
	suffix = parse_layer(name, hp->n_layers, layer);
	if (!suffix)
		return NULL;
	for (i = 0; i < N_LAYER_KINDS; i++)
		if (strcmp(suffix, layer_kinds[i].suffix) == 0)
			return kind_in(hp, &layer_kinds[i]) ? &layer_kinds[i] : NULL;
	return NULL;
}

int nb_model_tensor_shape(const struct nb_hparams *hp, const char *name, uint32_t *ndim,
			  uint64_t shape[4])
{
	const struct tensor_kind *k;
	uint32_t layer;

	k = find_kind(hp, name, &layer);
	if (!k)
		return -NB_ENOENT;
	kind_shape(hp, k, ndim, shape);
	return 0;
}

/* The one place that knows which element types the runtime can execute and
 * how many bytes a tensor of each takes. Quantized block types join here
 * (and in forward.c's matvec and embed), for matrices only: the forward
 * pass reads norm weights as float32. */
static int tensor_bytes(const struct nb_tensor *t, uint64_t elems, uint64_t *bytes)
{
	if (t->ndim == 1 && t->type != NB_DTYPE_F32) {
		nb_err("tensor %s: element type %u, vectors must be float32", t->name, t->type);
		return -NB_ENOTSUP;
	}
	switch (t->type) {
	case NB_DTYPE_F32:
		if ((uintptr_t)t->data % sizeof(float) != 0) {
			nb_err("tensor %s: float32 data not 4-byte aligned", t->name);
			return -NB_EFORMAT;
		}
		*bytes = elems * sizeof(float);
		return 0;
	default:
		if (nb_qinfo(t->type) && t->ndim == 2)
			return nb_qtensor_bytes(t->type, t->shape[0], t->shape[1], bytes);
		nb_err("tensor %s: element type %u not supported", t->name, t->type);
		return -NB_ENOTSUP;
	}
}

int nb_model_each_tensor(const struct nb_hparams *hp, int (*fn)(void *arg, const char *name),
			 void *arg)
{
	char name[NB_TENSOR_NAME_MAX];
	int ret = 0;

	for (size_t i = 0; !ret && i < N_GLOBAL_KINDS; i++)
		if (kind_in(hp, &global_kinds[i]))
			ret = fn(arg, global_kinds[i].suffix);
	for (uint32_t l = 0; !ret && l < hp->n_layers; l++) {
		for (size_t i = 0; !ret && i < N_LAYER_KINDS; i++) {
			if (!kind_in(hp, &layer_kinds[i]))
				continue;
			snprintf(name, sizeof(name), "blk.%u.%s", l, layer_kinds[i].suffix);
			ret = fn(arg, name);
		}
	}
	return ret;
}

static int check_tensor(const struct nb_hparams *hp, const struct tensor_kind *k,
			const struct nb_tensor *t)
{
	uint64_t shape[4], elems = 1, bytes;
	uint32_t ndim, i;
	int err;

	kind_shape(hp, k, &ndim, shape);
	if (t->ndim != ndim) {
		nb_err("tensor %s: %u dimensions, expected %u", t->name, t->ndim, ndim);
		return -NB_EFORMAT;
	}
	for (i = 0; i < ndim; i++) {
		if (t->shape[i] != shape[i]) {
			nb_err("tensor %s: shape[%u] = %llu, expected %llu", t->name, i,
			       (unsigned long long)t->shape[i], (unsigned long long)shape[i]);
			return -NB_EFORMAT;
		}
		elems *= shape[i]; /* < 2^24 * 2^16: no overflow (nb_hparams_check) */
	}
	if (!t->data) {
		nb_err("tensor %s: no data", t->name);
		return -NB_EFORMAT;
	}
	err = tensor_bytes(t, elems, &bytes);
	if (err)
		return err;
	if (t->size != bytes) {
		nb_err("tensor %s: %llu bytes, expected %llu", t->name,
		       (unsigned long long)t->size, (unsigned long long)bytes);
		return -NB_EFORMAT;
	}
	return 0;
}

static const struct nb_tensor **slot_of(struct nb_model *m, const struct tensor_kind *k,
					uint32_t layer)
{
	char *base = layer == UINT32_MAX ? (char *)m : (char *)&m->layers[layer];

	return (const struct nb_tensor **)(void *)(base + k->offset);
}

/* Files every canonical tensor into its slot, checking it on the way. */
static int bind_tensors(struct nb_model *m, const struct nb_tensor *tensors, size_t n)
{
	const struct nb_tensor **slot;
	const struct tensor_kind *k;
	uint32_t layer;
	size_t i;
	int err;

	for (i = 0; i < n; i++) {
		if (!tensors[i].name)
			continue;
		k = find_kind(&m->hp, tensors[i].name, &layer);
		if (!k)
			continue;
		slot = slot_of(m, k, layer);
		if (*slot) {
			nb_err("tensor %s appears twice", tensors[i].name);
			return -NB_EFORMAT;
		}
		err = check_tensor(&m->hp, k, &tensors[i]);
		if (err)
			return err;
		*slot = &tensors[i];
	}
	return 0;
}

static int check_complete(struct nb_model *m)
{
	uint32_t l;
	size_t i;

	for (i = 0; i < N_GLOBAL_KINDS; i++) {
		if (kind_in(&m->hp, &global_kinds[i]) && !*slot_of(m, &global_kinds[i], UINT32_MAX)) {
			nb_err("tensor %s missing", global_kinds[i].suffix);
			return -NB_ENOENT;
		}
	}
	for (l = 0; l < m->hp.n_layers; l++) {
		for (i = 0; i < N_LAYER_KINDS; i++) {
			if (kind_in(&m->hp, &layer_kinds[i]) && !*slot_of(m, &layer_kinds[i], l)) {
				nb_err("tensor blk.%u.%s missing", l, layer_kinds[i].suffix);
				return -NB_ENOENT;
			}
		}
	}
	return 0;
}

void nb_model_init(struct nb_model *m)
{
	memset(m, 0, sizeof(*m));
}

int nb_model_bind(struct nb_model *m, const struct nb_hparams *hp, const struct nb_tensor *tensors,
		  size_t n)
{
	int err;

	nb_model_free(m);
	err = nb_hparams_check(hp);
	if (err)
		return err;
	m->hp = *hp;
	m->layers = calloc(hp->n_layers, sizeof(*m->layers));
	if (!m->layers) {
		nb_err("model: no memory for %u layers", hp->n_layers);
		return -NB_ENOMEM;
	}
	err = bind_tensors(m, tensors, n);
	if (err)
		goto err_free;
	err = check_complete(m);
	if (err)
		goto err_free;
	if (hp->tied_embeddings)
		m->output = m->token_embd;
	return 0;

err_free:
	nb_model_free(m);
	return err;
}

void nb_model_free(struct nb_model *m)
{
	if (!m)
		return;
	free(m->layers);
	nb_model_init(m);
}
