/* The pieces of `nibble perplexity` (tools/quant/perplexity.h): the
 * perplexity of a model image on a text, by the per-document method of the
 * project's reference or by llama.cpp's llama-perplexity windowing, and
 * optionally the KL divergence from a base image on the same windows. The
 * scoring streams: a window's positions go through the forward pass a
 * batch at a time and only running sums are kept. */
#include "tools/quant/perplexity.h"
#include "runtime/base/err.h"
#include "runtime/model/forward.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "runtime/text/unicode.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Larger texts are not an evaluation set a board or a host tool needs, and
 * the SPM encoder of --llama-compat holds a few words per byte of it. */
#define PPL_MAX_TEXT (64u << 20)
#define PPL_DEFAULT_SEP "<|endoftext|>"

/* ---- windowing ------------------------------------------------------------ */

int nb_ppl_plan(struct nb_ppl_plan *p, enum nb_ppl_method method, uint64_t n_tokens, uint32_t ctx)
{
	memset(p, 0, sizeof(*p));
	if (method != NB_PPL_DOCS && method != NB_PPL_LLAMA)
		return -NB_EINVAL;
	/* llama-perplexity scores positions ctx/2 .. ctx-2: needs ctx >= 3. */
	if (ctx < (method == NB_PPL_LLAMA ? 3u : 2u)) {
		nb_err("perplexity: windows of %u tokens leave nothing to score (at least %u)", ctx,
		       method == NB_PPL_LLAMA ? 3u : 2u);
		return -NB_EINVAL;
	}
	p->ctx = ctx;
	p->first = method == NB_PPL_LLAMA ? ctx / 2 : 0;
	p->bos_first = method == NB_PPL_LLAMA;
	p->n_windows = n_tokens / ctx;
	p->n_scored = p->n_windows * (ctx - 1 - p->first);
	return 0;
}

static bool is_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

static void strip(const char **s, size_t *len)
{
	while (*len && is_space(**s)) {
		(*s)++;
		(*len)--;
	}
	while (*len && is_space((*s)[*len - 1]))
		(*len)--;
}

static bool line_is_sep(const char *line, size_t len, const char *sep, size_t sep_len)
{
	strip(&line, &len);
	return len == sep_len && memcmp(line, sep, len) == 0;
}

bool nb_ppl_next_doc(const char *text, size_t len, const char *sep, size_t *pos,
		     const char **doc, size_t *doc_len)
{
	size_t start = *pos, p = *pos, end = len, sep_len = strlen(sep);

	if (start >= len)
		return false;
	while (p < len) {
		const char *nl = memchr(text + p, '\n', len - p);
		size_t line_end = nl ? (size_t)(nl - text) : len;
		size_t next = nl ? line_end + 1 : len;

		if (line_is_sep(text + p, line_end - p, sep, sep_len)) {
			end = p;
			p = next;
			break;
		}
		p = next;
	}
	*pos = p;
	*doc = text + start;
	*doc_len = end - start;
	strip(doc, doc_len);
	return true;
}

size_t nb_ppl_utf8_invalid_at(const char *text, size_t len)
{
	size_t i = 0, n;
	uint32_t cp;

	while (i < len) {
		if ((uint8_t)text[i] < 0x80) {
			i++;
			continue;
		}
		/* The decoder gives U+FFFD of length 1 for anything malformed;
		 * a real U+FFFD is 3 bytes long. */
		n = nb_unicode_decode(text + i, len - i, &cp);
		if (n == 1 && cp == NB_UC_REPLACEMENT)
			return i;
		i += n;
	}
	return len;
}

/* ---- tokenizing ------------------------------------------------------------ */

void nb_ppl_stream_free(struct nb_ppl_stream *s)
{
	free(s->ids);
	memset(s, 0, sizeof(*s));
}

static int stream_reserve(struct nb_ppl_stream *s, size_t *cap, size_t room)
{
	size_t want;
	int32_t *grown;

	if (*cap - s->n >= room)
		return 0;
	if (room > SIZE_MAX / sizeof(int32_t) / 4 - s->n)
		return -NB_ENOMEM;
	/* Doubling keeps appending one document at a time linear. */
	want = s->n + room > *cap * 2 ? s->n + room : *cap * 2;
	grown = realloc(s->ids, want * sizeof(int32_t));
	if (!grown)
		return -NB_ENOMEM;
	s->ids = grown;
	*cap = want;
	return 0;
}

/* Appends the encoding of text (with BOS) to the stream. */
static int stream_append(const struct nb_tok *t, const char *text, size_t len,
			 struct nb_ppl_stream *s, size_t *cap)
{
	/* SPM: at most one id per byte, plus BOS and a 3-byte ▁ prefix. */
	size_t need = 0, room = len + 8;
	int ret;

	for (int attempt = 0; attempt < 2; attempt++) {
		ret = stream_reserve(s, cap, room);
		if (ret)
			return ret;
		ret = nb_tok_encode(t, text, len, true, s->ids + s->n, *cap - s->n, &need);
		if (ret != -NB_ERANGE || need <= room)
			break;
		room = need;
	}
	if (ret)
		return ret;
	s->n += need;
	return 0;
}

/* Appends documents until the end of the text or max_tokens (0: no limit). */
static int append_docs(const struct nb_tok *t, const char *text, size_t len, const char *sep,
		       size_t max_tokens, struct nb_ppl_stream *s, size_t *cap)
{
	size_t pos = 0, doc_len;
	const char *doc;
	int ret;

	while (nb_ppl_next_doc(text, len, sep, &pos, &doc, &doc_len)) {
		if (doc_len == 0)
			continue;
		if (max_tokens && s->n >= max_tokens) {
			s->truncated = true;
			break;
		}
		ret = stream_append(t, doc, doc_len, s, cap);
		if (ret)
			return ret;
		s->n_docs++;
	}
	return 0;
}

int nb_ppl_tokenize(const struct nb_tok *t, enum nb_ppl_method method, const char *text,
		    size_t len, const char *sep, size_t max_tokens, struct nb_ppl_stream *s)
{
	size_t cap = 0;
	int ret;

	memset(s, 0, sizeof(*s));
	if (method == NB_PPL_LLAMA) {
		if (len && text[len - 1] == '\n')
			len--;
		ret = stream_append(t, text, len, s, &cap);
		s->n_docs = 1;
	} else {
		ret = append_docs(t, text, len, sep ? sep : PPL_DEFAULT_SEP, max_tokens, s, &cap);
	}
	if (ret) {
		nb_ppl_stream_free(s);
		return ret;
	}
	if (max_tokens && s->n > max_tokens) {
		s->n = max_tokens;
		s->truncated = true;
	}
	return 0;
}

/* ---- per-position statistics ----------------------------------------------- */

/* log(sum_i exp(x_i - max)) and max, in double. */
static double log_sum_exp(const float *x, uint32_t n, double *max)
{
	double m = x[0], sum = 0.0;

	for (uint32_t i = 1; i < n; i++)
		if (x[i] > m)
			m = x[i];
	for (uint32_t i = 0; i < n; i++)
		sum += exp((double)x[i] - m);
	*max = m;
	return log(sum);
}

double nb_ppl_nll(const float *logits, uint32_t n, int32_t target)
{
	double max, lse = log_sum_exp(logits, n, &max);

	return lse - ((double)logits[target] - max);
}

double nb_ppl_kl(const float *p_logits, const float *q_logits, uint32_t n)
{
	double mp, mq, lzp = log_sum_exp(p_logits, n, &mp), lzq = log_sum_exp(q_logits, n, &mq);
	double kl = 0.0;

	for (uint32_t i = 0; i < n; i++) {
		double lp = (double)p_logits[i] - mp - lzp;
		double lq = (double)q_logits[i] - mq - lzq;

		/* p_i = 0 contributes 0, even where q_i = 0 too. */
		if (lp > -INFINITY)
			kl += exp(lp) * (lp - lq);
	}
	return kl;
}

/* ---- scoring ------------------------------------------------------------------ */

/* A scoring run: a window's positions go through the model in batches of
 * up to `batch` rows, bit-identical to one at a time (runtime/model/forward.h). */
struct ppl_run {
	const struct nb_ppl_eval *e;
	const struct nb_ppl_plan *p;
	struct nb_fwd fm, fb;
	uint32_t vocab, batch;
	int32_t *tok;  /* [batch] */
	uint32_t *pos; /* [batch] */
	uint8_t *want; /* [batch] rows whose logits are scored */
};

static int score_position(struct ppl_run *r, const float *lm, const float *lb, int32_t target,
			  uint64_t w, uint32_t pos, struct nb_ppl_stats *st)
{
	double nll, bnll = 0.0, kl = 0.0;

	if (target < 0 || (uint32_t)target >= r->vocab) {
		nb_err("perplexity: token %d at position %u of window %llu is outside the vocabulary",
		       (int)target, pos + 1, (unsigned long long)w);
		return -NB_EINVAL;
	}
	nll = nb_ppl_nll(lm, r->vocab, target);
	if (lb) {
		bnll = nb_ppl_nll(lb, r->vocab, target);
		kl = nb_ppl_kl(lb, lm, r->vocab);
	}
	if (!isfinite(nll) || !isfinite(bnll) || isnan(kl)) {
		nb_err("perplexity: non-finite logits of the %s in window %llu at position %u",
		       isfinite(nll) ? "base model" : "model", (unsigned long long)w, pos);
		return -NB_EFORMAT;
	}
	st->n_scored++;
	st->nll += nll;
	if (lb) {
		st->base_nll += bnll;
		st->kl += kl;
		st->top1_same += nb_llm_argmax(lm, r->vocab) == nb_llm_argmax(lb, r->vocab);
	}
	return 0;
}

/* Rows pos0 .. pos0+n-1 of window w: runs them and scores the wanted ones. */
static int score_rows(struct ppl_run *r, const int32_t *win, uint64_t w, uint32_t pos0,
		      uint32_t n, struct nb_ppl_stats *st)
{
	const struct nb_ppl_plan *p = r->p;
	float *lm, *lb = NULL;
	uint32_t k = 0;
	int ret;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t pos = pos0 + i;

		r->tok[i] = pos == 0 && p->bos_first && r->e->bos >= 0 ? r->e->bos : win[pos];
		r->pos[i] = pos;
		r->want[i] = pos >= p->first;
	}
	ret = nb_fwd_batch(&r->fm, n, r->tok, r->pos, NULL, r->want, &lm);
	if (!ret && r->e->base)
		ret = nb_fwd_batch(&r->fb, n, r->tok, r->pos, NULL, r->want, &lb);
	/* Logits come as [wanted rows][vocab], in row order. */
	for (uint32_t i = 0; !ret && i < n; i++) {
		if (!r->want[i])
			continue;
		ret = score_position(r, lm + (size_t)k * r->vocab, lb ? lb + (size_t)k * r->vocab : NULL,
				     win[pos0 + i + 1], w, pos0 + i, st);
		k++;
	}
	return ret;
}

static int score_window(struct ppl_run *r, const int32_t *win, uint64_t w, struct nb_ppl_stats *st)
{
	/* The last token is only ever a target: ctx - 1 positions to run. */
	uint32_t n_run = r->p->ctx - 1;
	int ret = 0;

	for (uint32_t pos0 = 0; !ret && pos0 < n_run; pos0 += r->batch) {
		uint32_t n = n_run - pos0 < r->batch ? n_run - pos0 : r->batch;

		ret = score_rows(r, win, w, pos0, n, st);
	}
	return ret;
}

static int check_model(const struct nb_model *m, const char *what, uint32_t ctx, uint32_t vocab)
{
	if (m->hp.seq_len < ctx) {
		nb_err("perplexity: the %s's context is %u tokens, the window %u", what, m->hp.seq_len,
		       ctx);
		return -NB_ERANGE;
	}
	if (m->hp.vocab_size != vocab) {
		nb_err("perplexity: the base model has %u tokens, the model %u", m->hp.vocab_size, vocab);
		return -NB_EINVAL;
	}
	return 0;
}

static int run_open(struct ppl_run *r)
{
	int ret = nb_fwd_open(&r->fm, r->e->model, r->p->ctx);

	if (ret)
		return ret;
	r->batch = r->fm.max_batch;
	if (r->e->base) {
		ret = nb_fwd_open(&r->fb, r->e->base, r->p->ctx);
		if (ret)
			return ret;
		if (r->fb.max_batch < r->batch)
			r->batch = r->fb.max_batch;
	}
	r->tok = calloc(r->batch, sizeof(*r->tok));
	r->pos = calloc(r->batch, sizeof(*r->pos));
	r->want = calloc(r->batch, sizeof(*r->want));
	return r->tok && r->pos && r->want ? 0 : -NB_ENOMEM;
}

static void run_close(struct ppl_run *r)
{
	free(r->tok);
	free(r->pos);
	free(r->want);
	nb_fwd_close(&r->fb);
	nb_fwd_close(&r->fm);
}

int nb_ppl_score(const struct nb_ppl_eval *e, const struct nb_ppl_plan *p, const int32_t *ids,
		 size_t n, struct nb_ppl_stats *st)
{
	struct ppl_run r = { .e = e, .p = p, .vocab = e->model->hp.vocab_size };
	int ret;

	memset(st, 0, sizeof(*st));
	if (p->ctx < 2 || p->first + 1 >= p->ctx || p->n_windows > n / p->ctx) {
		nb_err("perplexity: a plan of %llu windows of %u tokens does not fit %zu tokens",
		       (unsigned long long)p->n_windows, p->ctx, n);
		return -NB_EINVAL;
	}
	ret = check_model(e->model, "model", p->ctx, r.vocab);
	if (!ret && e->base)
		ret = check_model(e->base, "base model", p->ctx, r.vocab);
	if (ret)
		return ret;
	ret = run_open(&r);
	for (uint64_t w = 0; !ret && w < p->n_windows; w++) {
		ret = score_window(&r, ids + w * p->ctx, w, st);
		if (!ret && e->progress)
			e->progress(e->progress_arg, w, p, st);
	}
	run_close(&r);
	return ret;
}

/* ---- tokenizer compatibility ----------------------------------------------------- */

int nb_ppl_check_vocab(const struct nb_tok_spec *model, const struct nb_tok_spec *base)
{
	if (model->n_vocab != base->n_vocab) {
		nb_err("perplexity: the base model's tokenizer has %u pieces, the model's %u",
		       base->n_vocab, model->n_vocab);
		return -NB_EINVAL;
	}
	if (model->bos_id != base->bos_id) {
		nb_err("perplexity: BOS is %d in the base model, %d in the model", base->bos_id,
		       model->bos_id);
		return -NB_EINVAL;
	}
	for (uint32_t i = 0; i < model->n_vocab; i++) {
		uint32_t a = model->offsets[i + 1] - model->offsets[i];
		uint32_t b = base->offsets[i + 1] - base->offsets[i];

		if (a != b || memcmp(model->text + model->offsets[i], base->text + base->offsets[i],
				     a) != 0) {
			nb_err("perplexity: token %u is '%.*s' in the model, '%.*s' in the base model",
			       i, (int)a, model->text + model->offsets[i], (int)b,
			       base->text + base->offsets[i]);
			return -NB_EINVAL;
		}
	}
	return 0;
}

/* ---- the text ------------------------------------------------------------------ */

int nb_ppl_read_text(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;
	size_t bad, line = 1;
	char *buf = NULL;
	int ret = -NB_EIO;

	if (!f) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
		nb_err("%s: not a regular file", path);
		goto out;
	}
	if ((uint64_t)sb.st_size > PPL_MAX_TEXT) {
		nb_err("%s: %lld bytes, more than the %u a text may have", path,
		       (long long)sb.st_size, PPL_MAX_TEXT);
		ret = -NB_ERANGE;
		goto out;
	}
	*len = (size_t)sb.st_size;
	buf = malloc(*len + 1);
	if (!buf) {
		ret = -NB_ENOMEM;
		goto out;
	}
	if (fread(buf, 1, *len, f) != *len) {
		nb_err("%s: read failed", path);
		goto out;
	}
	buf[*len] = '\0';
	for (bad = 0; bad < *len && is_space(buf[bad]); bad++)
		;
	if (bad == *len) {
		nb_err("%s: no text (the file is empty or only whitespace)", path);
		ret = -NB_EINVAL;
		goto out;
	}
	bad = nb_ppl_utf8_invalid_at(buf, *len);
	if (bad != *len) {
		for (size_t i = 0; i < bad; i++)
			line += buf[i] == '\n';
		nb_err("%s: not valid UTF-8 at byte offset %zu (line %zu)", path, bad, line);
		ret = -NB_EFORMAT;
		goto out;
	}
	*out = buf;
	buf = NULL;
	ret = 0;
out:
	free(buf);
	fclose(f);
	return ret;
}
