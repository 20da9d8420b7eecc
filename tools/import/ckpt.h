/* A model checkpoint in host memory, in float32: what every importer
 * (llama2.c, HF safetensors, GGUF) produces and the image writer consumes.
 * Tensors use the canonical names and layout of runtime/model/model.h, already in
 * the interleaved RoPE layout. */
#ifndef NB_CKPT_H
#define NB_CKPT_H

#include "runtime/model/model.h"
#include "runtime/text/tokenizer.h"

struct nb_ckpt_tensor {
	char name[NB_TENSOR_NAME_MAX];
	uint32_t ndim;
	uint64_t shape[4];
	float *data; /* owned; product(shape) floats */
};

struct nb_ckpt {
	struct nb_hparams hp;
	struct nb_tok_spec tok;
	char name[64];       /* model name, e.g. "stories260K" */
	char *chat_template; /* Jinja text or NULL */
	char *license;       /* license text or NULL */
	size_t n_tensors;
	struct nb_ckpt_tensor *tensors;
};

void nb_ckpt_init(struct nb_ckpt *c);
void nb_ckpt_free(struct nb_ckpt *c);
/* Takes ownership of data (freed on failure too). -NB_EINVAL on a
 * duplicate name or a shape with a zero or > 2^40 elements. */
int nb_ckpt_add(struct nb_ckpt *c, const char *name, uint32_t ndim, const uint64_t *shape,
		float *data);
const struct nb_ckpt_tensor *nb_ckpt_find(const struct nb_ckpt *c, const char *name);
/* Checks that every tensor the architecture needs is present with the
 * shape the hyper-parameters imply; names the first problem. */
int nb_ckpt_validate(const struct nb_ckpt *c);

/* Importers: fill an initialized checkpoint, or fail naming the problem
 * (never crash on a malformed file). path is a file (llama2.c, GGUF) or an
 * HF directory. tokenizer may be NULL when the source carries its own. */
int nb_import_llama2c(struct nb_ckpt *c, const char *path, const char *tokenizer_bin);
int nb_import_hf(struct nb_ckpt *c, const char *dir);
int nb_import_gguf(struct nb_ckpt *c, const char *path);

/* Tokenizer sources into a spec. */
int nb_tok_import_llama2c(struct nb_tok_spec *s, const char *tokenizer_bin);
int nb_tok_import_spm_model(struct nb_tok_spec *s, const char *tokenizer_model);
int nb_tok_import_json(struct nb_tok_spec *s, const char *tokenizer_json);

#endif
