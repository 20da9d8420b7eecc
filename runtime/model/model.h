/* What a model is, independent of where its bytes live (an mmapped image,
 * or a checkpoint being imported on the host): hyper-parameters and tensor
 * views. The forward pass (runtime/model/forward.c) only sees these. */
#ifndef NB_MODEL_H
#define NB_MODEL_H

#include "firmware/tensor.h"

#include <stddef.h>
#include <stdint.h>

/* Canonical tensor names (those of GGUF), with layer index N:
 *   token_embd.weight      {vocab, dim}
 *   blk.N.attn_norm.weight {dim}
 *   blk.N.attn_q.weight    {n_heads * head_dim, dim}
 *   blk.N.attn_k.weight    {n_kv_heads * head_dim, dim}
 *   blk.N.attn_v.weight    {n_kv_heads * head_dim, dim}
 *   blk.N.attn_q.bias      {n_heads * head_dim}     (NB_FEAT_QKV_BIAS)
 *   blk.N.attn_k.bias      {n_kv_heads * head_dim}  (NB_FEAT_QKV_BIAS)
 *   blk.N.attn_v.bias      {n_kv_heads * head_dim}  (NB_FEAT_QKV_BIAS)
 *   blk.N.attn_q_norm.weight {head_dim}             (NB_FEAT_QK_NORM)
 *   blk.N.attn_k_norm.weight {head_dim}             (NB_FEAT_QK_NORM)
 *   blk.N.attn_output.weight {dim, n_heads * head_dim}
 *   blk.N.ffn_norm.weight  {dim}
 *   blk.N.ffn_gate.weight  {hidden, dim}   (w1)
 *   blk.N.ffn_up.weight    {hidden, dim}   (w3)
 *   blk.N.ffn_down.weight  {dim, hidden}   (w2)
 *   output_norm.weight     {dim}
 *   output.weight          {vocab, dim}    (absent when tied_embeddings)
 * A tensor marked with a feature is part of the model exactly when the
 * hyper-parameters have that feature. */
#define NB_TENSOR_NAME_MAX 64

/* The shape a canonical tensor must have under hp ({rows, cols} or {n});
 * -NB_ENOENT if name is not one of the model's (a layer index out of
 * range, a feature's tensor without the feature, or "output.weight" when
 * the embeddings are tied). */
int nb_model_tensor_shape(const struct nb_hparams *hp, const char *name, uint32_t *ndim,
			  uint64_t shape[4]);

/* Calls fn(arg, name) for every tensor a model with hp is made of, the
 * global ones first, then layer by layer; stops at the first call that
 * returns non-zero and returns that. */
int nb_model_each_tensor(const struct nb_hparams *hp, int (*fn)(void *arg, const char *name),
			 void *arg);

/* One transformer block; q_dim = n_heads * head_dim, kv_dim = n_kv_heads * head_dim. */
struct nb_layer {
	const struct nb_tensor *attn_norm; /* {dim} */
	const struct nb_tensor *wq;        /* {q_dim, dim} */
	const struct nb_tensor *wk;        /* {kv_dim, dim} */
	const struct nb_tensor *wv;        /* {kv_dim, dim} */
	const struct nb_tensor *bq;        /* {q_dim}; NULL without NB_FEAT_QKV_BIAS */
	const struct nb_tensor *bk;        /* {kv_dim} */
	const struct nb_tensor *bv;        /* {kv_dim} */
	const struct nb_tensor *q_norm;    /* {head_dim}; NULL without NB_FEAT_QK_NORM */
	const struct nb_tensor *k_norm;    /* {head_dim} */
	const struct nb_tensor *wo;        /* {dim, q_dim} */
	const struct nb_tensor *ffn_norm;  /* {dim} */
	const struct nb_tensor *w_gate;    /* {hidden, dim} */
	const struct nb_tensor *w_up;      /* {hidden, dim} */
	const struct nb_tensor *w_down;    /* {dim, hidden} */
};

/* A bound model: checked hyper-parameters and pointers into the caller's
 * tensor array (which must outlive it). */
struct nb_model {
	struct nb_hparams hp;
	const struct nb_tensor *token_embd;  /* {vocab, dim} */
	struct nb_layer *layers;             /* [n_layers], owned */
	const struct nb_tensor *output_norm; /* {dim} */
	const struct nb_tensor *output;      /* {vocab, dim}; == token_embd when tied */
};

void nb_model_init(struct nb_model *m);
/* m: initialized (nb_model_init) or freed. Checks hp, finds every
 * canonical tensor in tensors[0..n) and checks its type, shape and byte
 * size; names the first one missing or wrong. Other names are ignored. */
int nb_model_bind(struct nb_model *m, const struct nb_hparams *hp, const struct nb_tensor *tensors,
		  size_t n);
/* NULL-safe, idempotent. */
void nb_model_free(struct nb_model *m);

#endif
