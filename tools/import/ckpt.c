#include "tools/import/ckpt.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CKPT_MAX_ELEMS (1ull << 40)

void nb_ckpt_init(struct nb_ckpt *c)
{
	memset(c, 0, sizeof(*c));
	nb_tok_spec_init(&c->tok);
}

void nb_ckpt_free(struct nb_ckpt *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->n_tensors; i++)
		free(c->tensors[i].data);
	free(c->tensors);
	free(c->chat_template);
	free(c->license);
	nb_tok_spec_free(&c->tok);
	nb_ckpt_init(c);
}

const struct nb_ckpt_tensor *nb_ckpt_find(const struct nb_ckpt *c, const char *name)
{
	for (size_t i = 0; i < c->n_tensors; i++)
		if (strcmp(c->tensors[i].name, name) == 0)
			return &c->tensors[i];
	return NULL;
}

static int check_new(const struct nb_ckpt *c, const char *name, uint32_t ndim,
		     const uint64_t *shape, const float *data)
{
	uint64_t n = 1;

	if (name == NULL || strlen(name) >= NB_TENSOR_NAME_MAX || data == NULL || ndim < 1 ||
	    ndim > 4) {
		nb_err("checkpoint: bad tensor %.64s (name, %u dims or no data)",
		       name ? name : "(null)", ndim);
		return -NB_EINVAL;
	}
	for (uint32_t i = 0; i < ndim; i++) {
		if (shape[i] == 0 || shape[i] > CKPT_MAX_ELEMS / n) {
			nb_err("checkpoint: tensor %s: shape[%u] = %llu: zero or over 2^40 elements",
			       name, i, (unsigned long long)shape[i]);
			return -NB_EINVAL;
		}
		n *= shape[i];
	}
	if (nb_ckpt_find(c, name) != NULL) {
		nb_err("checkpoint: tensor %s added twice", name);
		return -NB_EINVAL;
	}
	return 0;
}

int nb_ckpt_add(struct nb_ckpt *c, const char *name, uint32_t ndim, const uint64_t *shape,
		float *data)
{
	struct nb_ckpt_tensor *t;
	int ret = check_new(c, name, ndim, shape, data);

	if (ret != 0)
		goto out_data;
	/* capacity 16, 32, 64...: the array is full when n_tensors is one of those */
	if (c->n_tensors == 0 || (c->n_tensors >= 16 && (c->n_tensors & (c->n_tensors - 1)) == 0)) {
		size_t cap = c->n_tensors ? 2 * c->n_tensors : 16;
		t = realloc(c->tensors, cap * sizeof(*t));
		if (t == NULL) {
			ret = -NB_ENOMEM;
			goto out_data;
		}
		c->tensors = t;
	}
	t = &c->tensors[c->n_tensors++];
	memset(t, 0, sizeof(*t));
	strcpy(t->name, name);
	t->ndim = ndim;
	memcpy(t->shape, shape, ndim * sizeof(shape[0]));
	t->data = data;
	return 0;
out_data:
	free(data);
	return ret;
}

static int check_tensor(const struct nb_ckpt *c, const struct nb_ckpt_tensor *t)
{
	uint64_t shape[4];
	uint32_t ndim;

	if (nb_model_tensor_shape(&c->hp, t->name, &ndim, shape) != 0) {
		nb_err("checkpoint: tensor %s is not one of the model's%s", t->name,
		       strcmp(t->name, "output.weight") == 0 ? " (embeddings are tied)" : "");
		return -NB_EFORMAT;
	}
	if (t->ndim != ndim) {
		nb_err("checkpoint: tensor %s has %u dimensions, expected %u", t->name, t->ndim,
		       ndim);
		return -NB_EFORMAT;
	}
	for (uint32_t i = 0; i < ndim; i++) {
		if (t->shape[i] != shape[i]) {
			nb_err("checkpoint: tensor %s: shape[%u] = %llu, expected %llu", t->name, i,
			       (unsigned long long)t->shape[i], (unsigned long long)shape[i]);
			return -NB_EFORMAT;
		}
	}
	return 0;
}

static int check_present(void *arg, const char *name)
{
	if (nb_ckpt_find(arg, name) != NULL)
		return 0;
	nb_err("checkpoint: tensor %s missing", name);
	return -NB_EFORMAT;
}

static int check_tok(const struct nb_ckpt *c)
{
	const struct nb_tok_spec *s = &c->tok;
	const int32_t ids[] = { s->bos_id, s->eos_id, s->unk_id, s->pad_id };

	if (s->n_vocab == 0)
		return 0;
	if (s->n_vocab > c->hp.vocab_size) {
		nb_err("checkpoint: tokenizer has %u pieces, the model only %u embeddings",
		       s->n_vocab, c->hp.vocab_size);
		return -NB_EFORMAT;
	}
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		if (ids[i] < -1 || (ids[i] >= 0 && (uint32_t)ids[i] >= s->n_vocab)) {
			nb_err("checkpoint: special token id %d outside the %u-piece vocabulary",
			       ids[i], s->n_vocab);
			return -NB_EFORMAT;
		}
	}
	return 0;
}

/* Known names only, each the right shape, none twice (nb_ckpt_add), and
 * every one the architecture needs. The tokenizer is optional here (the
 * image writer requires one); if present, its ids must fit the model. */
int nb_ckpt_validate(const struct nb_ckpt *c)
{
	int ret = nb_hparams_check(&c->hp);

	if (ret != 0)
		return ret;
	for (size_t i = 0; i < c->n_tensors; i++) {
		ret = check_tensor(c, &c->tensors[i]);
		if (ret != 0)
			return ret;
	}
	ret = nb_model_each_tensor(&c->hp, check_present, (void *)c);
	if (ret == 0)
		ret = check_tok(c);
	return ret;
}
