/* Perplexity of a model on a text, and how far a model's predictions are
 * from a base model's: the windowing, the per-position statistics and the
 * scoring loop of `nibble perplexity`, apart from the applet so that tests
 * can drive each piece. docs/perplexity.md describes both methods. */
#ifndef NB_PERPLEXITY_H
#define NB_PERPLEXITY_H

#include "runtime/model/model.h"
#include "runtime/text/tokenizer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nb_ppl_method {
	/* Documents split on a separator line, each stripped and encoded
	 * with BOS, concatenated; every position of a window after the
	 * first is scored. */
	NB_PPL_DOCS = 0,
	/* llama.cpp's llama-perplexity: the whole text as one encoding with
	 * one BOS; each window starts with BOS; its second half is scored. */
	NB_PPL_LLAMA = 1,
};

/* Which tokens of a stream are scored. Window w is the tokens
 * [w * ctx, (w + 1) * ctx), its first one replaced by BOS when bos_first;
 * the logits at positions first..ctx-2 predict the tokens at
 * first+1..ctx-1. A trailing partial window is dropped. */
struct nb_ppl_plan {
	uint32_t ctx;
	uint32_t first;
	bool bos_first;
	uint64_t n_windows;
	uint64_t n_scored; /* n_windows * (ctx - 1 - first) */
};

/* -NB_EINVAL if ctx leaves nothing to score (ctx < 2, or < 3 for
 * NB_PPL_LLAMA). n_windows may be 0: the caller decides if that is an error. */
int nb_ppl_plan(struct nb_ppl_plan *p, enum nb_ppl_method method, uint64_t n_tokens, uint32_t ctx);

/* The next document of text[*pos, len): everything up to the next line that,
 * stripped of ASCII whitespace, equals sep (or up to the end), itself
 * stripped of ASCII whitespace at both ends (it may be empty). Advances
 * *pos past the separator line. false once *pos reaches len. */
bool nb_ppl_next_doc(const char *text, size_t len, const char *sep, size_t *pos,
		     const char **doc, size_t *doc_len);

/* Offset of the first byte that is not well-formed UTF-8, or len. */
size_t nb_ppl_utf8_invalid_at(const char *text, size_t len);

/* The whole file at path into *out (NUL-terminated, caller frees): a
 * regular file of at most 64 MiB, not only whitespace, valid UTF-8 (else
 * an error naming the byte offset and line). */
int nb_ppl_read_text(const char *path, char **out, size_t *len);

struct nb_ppl_stream {
	int32_t *ids;
	size_t n;      /* tokens kept */
	size_t n_docs; /* documents encoded (NB_PPL_DOCS; 1 for NB_PPL_LLAMA) */
	bool truncated; /* max_tokens left some of the text out */
};

/* The token stream of text. NB_PPL_DOCS: every non-empty document
 * (nb_ppl_next_doc with sep; NULL: "<|endoftext|>") encoded with BOS,
 * concatenated. NB_PPL_LLAMA:
 * the text minus one trailing '\n' (as llama.cpp's -f reads a file),
 * encoded at once with BOS. max_tokens > 0 keeps only that many. s need
 * not be initialized; free it with nb_ppl_stream_free. */
int nb_ppl_tokenize(const struct nb_tok *t, enum nb_ppl_method method, const char *text,
		    size_t len, const char *sep, size_t max_tokens, struct nb_ppl_stream *s);
void nb_ppl_stream_free(struct nb_ppl_stream *s);

/* -log softmax(logits)[target], in double with the maximum subtracted.
 * NaN or infinite if the logits are not finite. */
double nb_ppl_nll(const float *logits, uint32_t n, int32_t target);
/* KL(P || Q) = sum_i p_i (log p_i - log q_i) with P = softmax(p_logits),
 * Q = softmax(q_logits), in double; exactly 0 for identical logits. */
double nb_ppl_kl(const float *p_logits, const float *q_logits, uint32_t n);

/* Sums over the scored positions so far. The base_* fields and kl,
 * top1_same are filled only when there is a base model. */
struct nb_ppl_stats {
	uint64_t n_scored;
	double nll;       /* of the model */
	double base_nll;  /* of the base model */
	double kl;        /* KL(base || model) */
	uint64_t top1_same; /* positions where both argmax tokens agree */
};

struct nb_ppl_eval {
	const struct nb_model *model;
	const struct nb_model *base; /* NULL: no comparison */
	int32_t bos;                 /* replaces the first token of a window (plan.bos_first); -1 none */
	/* Optional: called after each window. */
	void (*progress)(void *arg, uint64_t window, const struct nb_ppl_plan *p,
			 const struct nb_ppl_stats *st);
	void *progress_arg;
};

/* Scores plan p over ids[0, n) (n >= p->n_windows * p->ctx) into *st (zeroed
 * first). Each window starts from position 0 of one KV cache allocated once
 * per model, which is a fresh cache since position i only attends to 0..i.
 * Only the running sums are kept, never the logits of past positions.
 * -NB_ERANGE if a model's context is shorter than the window, -NB_EFORMAT
 * naming the position if a model gives non-finite logits. */
int nb_ppl_score(const struct nb_ppl_eval *e, const struct nb_ppl_plan *p, const int32_t *ids,
		 size_t n, struct nb_ppl_stats *st);

/* 0 if both tokenizers give every id the same piece (a base and a model
 * can then be compared position by position), else -NB_EINVAL naming the
 * first difference. */
int nb_ppl_check_vocab(const struct nb_tok_spec *model, const struct nb_tok_spec *base);

#endif
