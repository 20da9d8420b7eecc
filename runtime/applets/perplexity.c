/* `nibble perplexity`: the perplexity of a model image on a text and the
 * KL divergence from a base image, by the pieces of tools/quant/perplexity.h;
 * docs/perplexity.md describes both methods. */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/llm.h"
#include "tools/quant/perplexity.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define PPL_DEFAULT_CTX 256u

struct ppl_opts {
	const char *model, *text, *base, *sep;
	uint32_t ctx;
	size_t max_tokens;
	enum nb_ppl_method method;
	int verbose;
};

static int parse_opts(struct ppl_opts *o, int argc, char **argv)
{
	enum { O_CTX = 256, O_LLAMA, O_KL, O_MAX, O_SEP };
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "file", required_argument, NULL, 'f' },
		{ "ctx", required_argument, NULL, O_CTX }, { "llama-compat", no_argument, NULL, O_LLAMA },
		{ "kl-base", required_argument, NULL, O_KL },
		{ "max-tokens", required_argument, NULL, O_MAX },
		{ "separator", required_argument, NULL, O_SEP },
		{ "verbose", no_argument, NULL, 'v' }, { NULL, 0, NULL, 0 },
	};
	unsigned long long v;
	int c, ret = 0;

	while (!ret && (c = nb_getopt("perplexity", argc, argv, "m:f:v", opts)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'f': o->text = optarg; break;
		case 'v': o->verbose = 1; break;
		case O_LLAMA: o->method = NB_PPL_LLAMA; break;
		case O_KL: o->base = optarg; break;
		case O_SEP: o->sep = optarg; break;
		case O_CTX:
			ret = nb_arg_u32("perplexity", "--ctx", optarg, 2, UINT32_MAX, &o->ctx);
			break;
		case O_MAX:
			ret = nb_arg_uint("perplexity", "--max-tokens", optarg, 0, SIZE_MAX, &v);
			o->max_tokens = (size_t)v;
			break;
		default: return -NB_EINVAL;
		}
	}
	if (ret)
		return ret;
	if (optind != argc)
		return nb_usage_error("perplexity", "unexpected argument '%s'", argv[optind]);
	if (!o->model || !o->text)
		return nb_usage_error("perplexity", "needs -m MODEL.nib and -f TEXT");
	if (o->sep && o->method == NB_PPL_LLAMA)
		return nb_usage_error("perplexity",
				      "--separator applies to the per-document method only");
	return 0;
}

static void print_progress(void *arg, uint64_t w, const struct nb_ppl_plan *p,
			   const struct nb_ppl_stats *st)
{
	const struct ppl_opts *o = arg;

	fprintf(stderr, "perplexity: window %llu/%llu: %llu positions, ppl %.4f",
		(unsigned long long)w + 1, (unsigned long long)p->n_windows,
		(unsigned long long)st->n_scored, exp(st->nll / (double)st->n_scored));
	if (o->base)
		fprintf(stderr, ", KL %.6f, top-1 %.4f", st->kl / (double)st->n_scored,
			(double)st->top1_same / (double)st->n_scored);
	fprintf(stderr, "\n");
}

static int check_same_vocab(const struct nb_llm *m, const struct nb_llm *b, const char *base)
{
	struct nb_tok_spec sm, sb;
	int ret;

	nb_tok_spec_init(&sm);
	nb_tok_spec_init(&sb);
	ret = nb_tok_spec_parse(&sm, m->img.tok_blob, m->img.tok_size);
	if (!ret)
		ret = nb_tok_spec_parse(&sb, b->img.tok_blob, b->img.tok_size);
	if (!ret)
		ret = nb_ppl_check_vocab(&sm, &sb);
	if (ret)
		nb_err("perplexity: %s cannot be compared with the model: different tokenizers",
		       base);
	nb_tok_spec_free(&sm);
	nb_tok_spec_free(&sb);
	return ret;
}

static void print_summary(const struct ppl_opts *o, size_t text_len, const struct nb_ppl_stream *s,
			  const struct nb_ppl_plan *p, const struct nb_ppl_stats *st)
{
	double n = (double)st->n_scored;

	printf("model:           %s\n", o->model);
	printf("text:            %s (%zu bytes", o->text, text_len);
	if (o->method == NB_PPL_DOCS)
		printf(", %zu document%s", s->n_docs, s->n_docs == 1 ? "" : "s");
	printf(")\n");
	printf("method:          %s, ctx %u\n",
	       o->method == NB_PPL_DOCS ? "per document" : "llama-perplexity", p->ctx);
	printf("tokens:          %zu%s\n", s->n, s->truncated ? " (--max-tokens)" : "");
	printf("windows:         %llu\n", (unsigned long long)p->n_windows);
	printf("scored:          %llu positions\n", (unsigned long long)st->n_scored);
	printf("mean NLL:        %.10f\n", st->nll / n);
	printf("PPL:             %.6f\n", exp(st->nll / n));
	if (!o->base)
		return;
	printf("base:            %s\n", o->base);
	printf("base mean NLL:   %.10f\n", st->base_nll / n);
	printf("base PPL:        %.6f\n", exp(st->base_nll / n));
	printf("KL(base||model): %.8f mean over scored positions\n", st->kl / n);
	printf("top-1 agreement: %.6f (%llu of %llu)\n", (double)st->top1_same / n,
	       (unsigned long long)st->top1_same, (unsigned long long)st->n_scored);
}

/* Tokenizes, plans the windows and checks they leave something to score. */
static int prepare(const struct ppl_opts *o, const struct nb_llm *m, const char *text, size_t len,
		   struct nb_ppl_stream *s, struct nb_ppl_plan *p)
{
	int ret = nb_ppl_tokenize(m->tok, o->method, text, len, o->sep, o->max_tokens, s);

	if (ret) {
		nb_err("%s: could not be tokenized (%s)", o->text, nb_strerror(ret));
		return ret;
	}
	if (s->n == 0) {
		nb_err("%s: no text to score", o->text);
		return -NB_EINVAL;
	}
	ret = nb_ppl_plan(p, o->method, s->n, o->ctx);
	if (!ret && p->n_windows == 0) {
		nb_err("%s: %zu tokens, fewer than one window of %u", o->text, s->n, o->ctx);
		ret = -NB_ERANGE;
	}
	return ret;
}

static int perplexity(struct ppl_opts *o, const char *text, size_t len)
{
	struct nb_llm m, b;
	struct nb_ppl_stream s = { 0 };
	struct nb_ppl_plan p;
	struct nb_ppl_stats st;
	int ret;

	ret = nb_llm_open(&m, o->model, nb_image_default_flags());
	if (ret)
		return ret;
	nb_llm_init(&b);
	if (o->base) {
		ret = nb_llm_open(&b, o->base, nb_image_default_flags());
		if (!ret)
			ret = check_same_vocab(&m, &b, o->base);
		if (ret)
			goto out;
	}
	if (o->ctx == 0)
		o->ctx = m.img.hp.seq_len < PPL_DEFAULT_CTX ? m.img.hp.seq_len : PPL_DEFAULT_CTX;
	if (o->ctx > m.img.hp.seq_len) {
		nb_err("perplexity: --ctx %u is longer than the model's context of %u", o->ctx,
		       m.img.hp.seq_len);
		ret = -NB_ERANGE;
		goto out;
	}
	ret = prepare(o, &m, text, len, &s, &p);
	if (ret)
		goto out;
	ret = nb_ppl_score(&(struct nb_ppl_eval){ .model = &m.model, .base = o->base ? &b.model : NULL,
						  .bos = nb_tok_bos(m.tok),
						  .progress = o->verbose ? print_progress : NULL,
						  .progress_arg = o },
			   &p, s.ids, s.n, &st);
	if (!ret)
		print_summary(o, len, &s, &p, &st);
out:
	nb_ppl_stream_free(&s);
	nb_llm_close(&b);
	nb_llm_close(&m);
	return ret;
}

static int perplexity_main(int argc, char **argv)
{
	struct ppl_opts o = { .method = NB_PPL_DOCS };
	char *text = NULL;
	size_t len = 0;
	int ret;

	if (parse_opts(&o, argc, argv))
		return NB_EXIT_USAGE;
	ret = nb_ppl_read_text(o.text, &text, &len);
	if (ret)
		return NB_EXIT_FAIL;
	ret = perplexity(&o, text, len);
	free(text);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_perplexity = {
	.name = "perplexity",
	.summary = "perplexity of a model on a text, KL divergence from a base model",
	.usage =
		"usage: nibble perplexity -m MODEL.nib -f TEXT [options]\n\n"
		"Prints the tokens, windows, scored positions, mean negative log-likelihood\n"
		"(NLL, natural log, summed in double) and PPL = exp(mean NLL) of the model on\n"
		"the UTF-8 text. Each window is evaluated from an empty KV cache.\n\n"
		"Per-document method (default):\n"
		"  The text is split into documents at every line that is the separator\n"
		"  (surrounding whitespace ignored); each document is stripped of leading\n"
		"  and trailing whitespace and, if not empty, encoded with BOS; the encodings\n"
		"  are concatenated into one stream, which is cut into non-overlapping\n"
		"  windows of --ctx tokens (a trailing partial window is dropped). In every\n"
		"  window positions 1..ctx-1 are predicted from the ones before.\n\n"
		"--llama-compat (llama.cpp's llama-perplexity):\n"
		"  The whole file, minus one trailing newline, is encoded as one text with\n"
		"  one BOS at the start, and cut into chunks of --ctx tokens (a partial\n"
		"  chunk is dropped). The first token of every chunk is replaced by BOS,\n"
		"  and only the second half is scored: positions ctx/2+1..ctx-1, i.e.\n"
		"  ctx-1-ctx/2 tokens per chunk.\n\n"
		"  -m, --model FILE      model image (.nib)\n"
		"  -f, --file FILE       the text (UTF-8)\n"
		"      --ctx N           window length in tokens, 2 or more (3 with\n"
		"                        --llama-compat), at most the model's (256)\n"
		"      --llama-compat    llama-perplexity windowing instead of per document\n"
		"      --separator STR   document separator line (<|endoftext|>; '' splits at\n"
		"                        blank lines); per-document method only\n"
		"      --max-tokens N    keep only the first N tokens of the stream (0: all)\n"
		"      --kl-base FILE    also run this image (same tokenizer) on the same windows\n"
		"                        and report its PPL, the mean KL(base || model) over\n"
		"                        the scored positions and the fraction of positions\n"
		"                        where both models' most likely token is the same\n"
		"  -v, --verbose         a progress line per window on stderr\n",
	.main = perplexity_main,
};
