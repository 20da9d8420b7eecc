/* The KV cache of one sequence, and attention over it. */
#ifndef NB_KV_H
#define NB_KV_H

#include "runtime/model/model.h"

#include <stddef.h>
#include <stdint.h>

struct nb_fwd;

/* The KV cache of one sequence: positions 0..max_ctx-1 of every layer. */
struct nb_kv {
	float *k;    /* [n_layers][n_kv_heads][max_ctx][head_dim] */
	float *v;    /* [n_layers][n_kv_heads][max_ctx][head_dim] */
	uint32_t max_ctx;
	void *map;      /* the mapping k and v live in (nb_kv_open) */
	size_t map_len;
};

int nb_kv_open(struct nb_kv *kv, const struct nb_model *m, uint32_t max_ctx);
/* NULL-safe, idempotent. */
void nb_kv_close(struct nb_kv *kv);
/* Bytes nb_kv_open allocates. */
uint64_t nb_kv_bytes(const struct nb_hparams *hp, uint32_t max_ctx);

/* The cache is head-major, [n_layers][n_kv_heads][max_ctx][head_dim]: the
 * keys (values) one head reads are one contiguous stream. The weights
 * evict them from the caches each token, and in a [pos][kv_dim] layout a
 * head's rows are short pieces far apart, which the hardware prefetchers
 * follow poorly. */

static inline float *nb_kv_at(const struct nb_kv *kv, float *cache, const struct nb_hparams *hp,
			      uint32_t layer, uint32_t head, uint32_t pos)
{
	return cache + (((size_t)layer * hp->n_kv_heads + head) * kv->max_ctx + pos) * hp->head_dim;
}

/* Floats of one thread's attention scratch (kernels.h's attend). */
#define NB_ATTN_SCRATCH(max_ctx, head_dim) (4 * ((uint64_t)(max_ctx) + (head_dim)))

/* Stores the keys and values of rows 0..n-1 (f->k, f->v) at their positions
 * of their caches, layer `layer`. */
void nb_kv_store(struct nb_fwd *f, struct nb_kv *const *kv, const uint32_t *pos, uint32_t n,
		 uint32_t layer);
/* f->xb [n][max(dim, q_dim)] = attention of each row's query heads (f->q)
 * over positions 0..pos[b] of its cache, on the pool. */
void nb_kv_attend(struct nb_fwd *f, uint32_t n, uint32_t layer, const uint32_t *pos,
		  struct nb_kv *const *kv);

#endif
