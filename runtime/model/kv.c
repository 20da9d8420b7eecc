/* The KV cache of a sequence (memory, faulted in at open) and attention over
 * it on the thread pool, through the kernel table's attend. */
#include "runtime/model/kv.h"

#include "kernels/kernels.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"
#include "runtime/model/matmul.h"
#include "runtime/model/pool.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

uint64_t nb_kv_bytes(const struct nb_hparams *hp, uint32_t max_ctx)
{
	return 2ull * hp->n_layers * max_ctx * hp->n_kv_heads * hp->head_dim * sizeof(float);
}

/* The cache is faulted in whole when it is opened: left to fault as the
 * positions advance, each (layer, head) stream crosses into a new page
 * every few tokens, and the faults land in the middle of decode steps. A
 * cache larger than the memory available is refused with an error at open,
 * where faulting it in would have the kernel kill the process, and lazily
 * it would do so in the middle of an answer. Huge pages where the kernel
 * gives them: 2 MiB aligned, advised. */
#define KV_ALIGN (2u << 20)

static int kv_map(struct nb_kv *kv, uint64_t bytes)
{
	uint64_t avail = nb_sys_mem_available();
	size_t len;
	char *p;

	if (bytes > avail) {
		nb_err("forward: a KV cache of %.1f MB does not fit the %.1f MB of memory available; "
		       "a shorter context (--ctx) needs less", (double)bytes / 1e6, (double)avail / 1e6);
		return -NB_ENOMEM;
	}
	if (bytes > SIZE_MAX - KV_ALIGN)
		return -NB_ENOMEM;
	len = (size_t)bytes + KV_ALIGN;
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		nb_err("forward: no memory for a KV cache of %llu bytes", (unsigned long long)bytes);
		return -NB_ENOMEM;
	}
	kv->map = p;
	kv->map_len = len;
	p = (char *)(((uintptr_t)p + KV_ALIGN - 1) & ~(uintptr_t)(KV_ALIGN - 1));
	madvise(p, (size_t)bytes, MADV_HUGEPAGE); /* advice: small pages work too */
	for (size_t i = 0; i < bytes; i += 4096)
		((volatile char *)p)[i] = 0;
	kv->k = (float *)(void *)p;
	kv->v = (float *)(void *)(p + bytes / 2);
	return 0;
}

int nb_kv_open(struct nb_kv *kv, const struct nb_model *m, uint32_t max_ctx)
{
	uint64_t bytes = nb_kv_bytes(&m->hp, max_ctx);

	memset(kv, 0, sizeof(*kv));
	if (max_ctx == 0 || max_ctx > m->hp.seq_len) {
		nb_err("forward: context %u outside 1..%u (the model's seq_len)", max_ctx,
		       m->hp.seq_len);
		return -NB_ERANGE;
	}
	if (kv_map(kv, bytes))
		return -NB_ENOMEM;
	kv->max_ctx = max_ctx;
	return 0;
}

void nb_kv_close(struct nb_kv *kv)
{
	if (!kv)
		return;
	if (kv->map)
		munmap(kv->map, kv->map_len);
	memset(kv, 0, sizeof(*kv));
}

void nb_kv_store(struct nb_fwd *f, struct nb_kv *const *kv, const uint32_t *pos,
		     uint32_t n, uint32_t layer)
{
	const struct nb_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim, kv_dim = (size_t)hp->n_kv_heads * hd;

	for (uint32_t b = 0; b < n; b++) {
		for (uint32_t h = 0; h < hp->n_kv_heads; h++) {
			memcpy(nb_kv_at(kv[b], kv[b]->k, hp, layer, h, pos[b]), f->k + b * kv_dim + h * hd,
			       hd * sizeof(float));
			memcpy(nb_kv_at(kv[b], kv[b]->v, hp, layer, h, pos[b]), f->v + b * kv_dim + h * hd,
			       hd * sizeof(float));
		}
	}
}

struct attn {
	struct nb_fwd *f;
	uint32_t n, layer;
	const uint32_t *pos;
	struct nb_kv *const *kv;
	bool by_rows;
	struct nb_pool_work work; /* rows, or units in chunks of one KV head */
};

/* Attention goes to the kernel table in units of up to four query heads
 * of one KV head (the kernel's width): TinyLlama's 32 query heads over 4
 * KV heads make 8 units per row. */
#define ATTN_UNIT_HEADS 4

static uint32_t units_per_kv_head(const struct nb_hparams *hp)
{
	const uint32_t group = hp->n_heads / hp->n_kv_heads;

	return (group + ATTN_UNIT_HEADS - 1) / ATTN_UNIT_HEADS;
}

/* xb[b][h] = softmax(q_h . k_t / sqrt(head_dim)) over t <= pos, weighting
 * v_t, for the query heads of unit u of row b. */
static void attend(struct nb_fwd *f, const struct nb_kv *kv, uint32_t layer, uint32_t b,
		   uint32_t u, uint32_t pos, float *scratch)
{
	const struct nb_hparams *hp = &f->m->hp;
	const size_t hd = hp->head_dim, q_dim = (size_t)hp->n_heads * hd;
	const uint32_t group = hp->n_heads / hp->n_kv_heads, per_kv = units_per_kv_head(hp);
	const uint32_t kv_head = u / per_kv, first = (u % per_kv) * ATTN_UNIT_HEADS;
	const uint32_t h0 = kv_head * group + first;
	const uint32_t n_q = group - first < ATTN_UNIT_HEADS ? group - first : ATTN_UNIT_HEADS;
	const float *keys = nb_kv_at(kv, kv->k, hp, layer, kv_head, 0);   /* [max_ctx][head_dim] */
	const float *values = nb_kv_at(kv, kv->v, hp, layer, kv_head, 0); /* [max_ctx][head_dim] */
	const float *q = f->q + b * q_dim + h0 * hd;                /* [n_q][head_dim] */
	float *out = f->xb + b * (q_dim > hp->dim ? q_dim : hp->dim) + h0 * hd; /* [n_q][head_dim] */

	f->kern->attend(out, scratch, q, keys, values, (uint32_t)hd, n_q, pos + 1,
			1.0f / sqrtf((float)hd));
}

/* Many rows (a prompt, or a batch of sequences) are claimed a whole row at
 * a time, last row first: a row's work grows with its position, so the
 * longest go first and the short ones even out the end (dealt out in a
 * fixed pattern, a prompt's later rows kept one thread working while the
 * others waited). A few rows (decode) are claimed by KV head: the units
 * of one KV head together, so each KV head is read from memory once. */
static void attn_worker(void *arg, unsigned ith, unsigned nth)
{
	struct attn *a = arg;
	const struct nb_hparams *hp = &a->f->m->hp;
	const uint32_t units = hp->n_kv_heads * units_per_kv_head(hp);
	float *scratch = a->f->att + (size_t)ith * NB_ATTN_SCRATCH(a->f->max_ctx, hp->head_dim);
	uint64_t t0, t1;
	(void)nth;

	while (nb_pool_claim(&a->work, &t0, &t1)) {
		for (uint64_t t = t0; t < t1; t++) {
			if (a->by_rows) {
				const uint32_t b = a->n - 1 - (uint32_t)t;
				for (uint32_t u = 0; u < units; u++)
					attend(a->f, a->kv[b], a->layer, b, u, a->pos[b], scratch);
			} else {
				const uint32_t b = (uint32_t)(t / units), u = (uint32_t)(t % units);
				attend(a->f, a->kv[b], a->layer, b, u, a->pos[b], scratch);
			}
		}
	}
}

void nb_kv_attend(struct nb_fwd *f, uint32_t n, uint32_t layer, const uint32_t *pos,
		  struct nb_kv *const *kv)
{
	const struct nb_hparams *hp = &f->m->hp;
	struct attn at = { f, n, layer, pos, kv, n >= 2 * f->n_threads, { 0 } };

	if (at.by_rows)
		nb_pool_work_init(&at.work, n, 1);
	else
		nb_pool_work_init(&at.work, (uint64_t)n * hp->n_kv_heads * units_per_kv_head(hp),
				  units_per_kv_head(hp));
	nb_fwd_parallel(f, attn_worker, &at);
}
