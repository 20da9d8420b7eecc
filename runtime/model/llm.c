#include "runtime/model/llm.h"
#include "firmware/verify.h"
#include "runtime/base/args.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/kv.h"

#include <stdlib.h>
#include <string.h>

void nb_llm_init(struct nb_llm *l)
{
	nb_image_init(&l->img);
	l->tok = NULL;
	nb_model_init(&l->model);
	memset(&l->sig, 0, sizeof(l->sig));
}

static int open_tokenizer(struct nb_llm *l, const char *path)
{
	struct nb_tok_spec spec;
	int ret;

	nb_tok_spec_init(&spec);
	ret = nb_tok_spec_parse(&spec, l->img.tok_blob, l->img.tok_size);
	if (!ret)
		ret = nb_tok_open(&l->tok, &spec);
	if (!ret && nb_tok_vocab_size(l->tok) != l->img.hp.vocab_size) {
		nb_err("%s: tokenizer has %u pieces, the model %u", path, nb_tok_vocab_size(l->tok),
		       l->img.hp.vocab_size);
		ret = -NB_EFORMAT;
	}
	if (ret)
		nb_err("%s: bad tokenizer section (%s)", path, nb_strerror(ret));
	nb_tok_spec_free(&spec);
	return ret;
}

int nb_llm_open_trusted(struct nb_llm *l, const char *path, unsigned image_flags,
			const struct nb_trust *trust)
{
	int ret;

	nb_llm_init(l);
	ret = nb_image_open(&l->img, path, image_flags);
	if (ret)
		return ret;
	ret = nb_verify_image(&l->img, path, trust, &l->sig);
	if (!ret)
		ret = open_tokenizer(l, path);
	if (ret)
		goto fail;
	ret = nb_model_bind(&l->model, &l->img.hp, l->img.tensors, l->img.n_tensors);
	if (ret) {
		nb_err("%s: tensors do not match the model (%s)", path, nb_strerror(ret));
		goto fail;
	}
	return 0;
fail:
	nb_llm_close(l);
	return ret;
}

int nb_llm_open(struct nb_llm *l, const char *path, unsigned image_flags)
{
	struct nb_trust t;
	int ret = nb_trust_default(&t);

	if (ret) {
		nb_llm_init(l);
		return ret;
	}
	ret = nb_llm_open_trusted(l, path, image_flags, &t);
	nb_trust_free(&t);
	return ret;
}

void nb_llm_close(struct nb_llm *l)
{
	nb_model_free(&l->model);
	nb_tok_close(l->tok);
	l->tok = NULL;
	nb_image_close(&l->img);
}

static int explicit_context(const struct nb_llm *l, const char *applet, uint32_t requested,
			    uint32_t n_seqs, uint64_t mem_avail)
{
	const struct nb_hparams *hp = &l->model.hp;
	uint64_t need = n_seqs * nb_kv_bytes(hp, requested);

	if (requested > hp->seq_len) {
		nb_usage_error(applet, "--ctx %u: this model's context is at most %u positions",
			       requested, hp->seq_len);
		return -NB_EINVAL;
	}
	if (need > mem_avail) {
		nb_err("%s: --ctx %u: %u KV cache%s of %.1f MB %s not fit the %.1f MB of memory "
		       "available", applet, requested, n_seqs, n_seqs > 1 ? "s" : "",
		       nb_kv_bytes(hp, requested) / 1e6, n_seqs > 1 ? "do" : "does", mem_avail / 1e6);
		return -NB_ENOMEM;
	}
	nb_info("%s: context %u positions a sequence (--ctx), %.1f MB of KV cache each", applet,
		requested, nb_kv_bytes(hp, requested) / 1e6);
	return 0;
}

int nb_llm_context(const struct nb_llm *l, const char *applet, uint32_t requested,
		   uint32_t n_seqs, uint64_t mem_avail, uint32_t *ctx)
{
	const struct nb_hparams *hp = &l->model.hp;
	const uint64_t weights = l->img.map_size, per_pos = n_seqs * nb_kv_bytes(hp, 1);
	uint64_t budget = mem_avail == UINT64_MAX ? UINT64_MAX
			  : mem_avail > weights ? (mem_avail - weights) / 2 : 0;
	uint64_t fit = per_pos ? budget / per_pos : UINT64_MAX;
	uint32_t c = hp->seq_len < NB_LLM_CTX_DEFAULT_MAX ? hp->seq_len : NB_LLM_CTX_DEFAULT_MAX;

	if (n_seqs == 0)
		return -NB_EINVAL;
	if (requested) {
		int ret = explicit_context(l, applet, requested, n_seqs, mem_avail);
		if (!ret)
			*ctx = requested;
		return ret;
	}
	if (fit == 0) {
		nb_err("%s: no memory for %u KV cache%s: %.1f MB available, %.1f MB of it for the "
		       "weights", applet, n_seqs, n_seqs > 1 ? "s" : "", mem_avail / 1e6,
		       weights / 1e6);
		return -NB_ENOMEM;
	}
	if (fit < c) {
		c = (uint32_t)fit;
		nb_warn("%s: context %u positions a sequence: %u KV cache%s of more would not fit "
			"half of the %.1f MB of memory available beside the weights (--ctx sets it)",
			applet, c, n_seqs, n_seqs > 1 ? "s" : "", (mem_avail - weights) / 1e6);
	} else if (c < hp->seq_len) {
		nb_info("%s: context %u positions a sequence (the default at most; the model takes "
			"--ctx up to %u), %.1f MB of KV cache each", applet, c, hp->seq_len,
			nb_kv_bytes(hp, c) / 1e6);
	} else {
		nb_info("%s: context %u positions a sequence (the model's), %.1f MB of KV cache each",
			applet, c, nb_kv_bytes(hp, c) / 1e6);
	}
	*ctx = c;
	return 0;
}

int32_t nb_llm_argmax(const float *v, uint32_t n)
{
	int32_t best = 0;

	for (uint32_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = (int32_t)i;
	return best;
}

int nb_llm_greedy(const struct nb_model *m, const int32_t *prompt, uint32_t n_prompt,
		  uint32_t steps, int32_t *out)
{
	uint32_t ctx = n_prompt + steps;
	struct nb_fwd f;
	float *logits;
	int ret;

	if (n_prompt == 0 || ctx > m->hp.seq_len)
		return -NB_ERANGE;
	ret = nb_fwd_open(&f, m, ctx);
	if (ret)
		return ret;
	ret = nb_fwd_prompt(&f, prompt, n_prompt, 0, &logits);
	for (uint32_t i = 0; !ret && i < steps; i++) {
		out[i] = nb_llm_argmax(logits, m->hp.vocab_size);
		if (i + 1 < steps)
			ret = nb_fwd_token(&f, out[i], n_prompt + i, &logits);
	}
	nb_fwd_close(&f);
	return ret;
}

int nb_llm_check_golden(const struct nb_llm *l, uint32_t *first_diff)
{
	const struct nb_image_golden *g = l->img.golden;
	int32_t *got;
	int ret;

	if (!g)
		return -NB_ENOENT;
	got = malloc(g->n_expected * sizeof(*got) + 1);
	if (!got)
		return -NB_ENOMEM;
	ret = nb_llm_greedy(&l->model, g->ids, g->n_prompt, g->n_expected, got);
	for (uint32_t i = 0; !ret && i < g->n_expected; i++) {
		if (got[i] != g->ids[g->n_prompt + i]) {
			*first_diff = i;
			ret = -NB_ESELFTEST;
		}
	}
	free(got);
	return ret;
}
