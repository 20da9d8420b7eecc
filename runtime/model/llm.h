/* A loaded model ready to generate: the mmapped image, its tokenizer and
 * the bound tensors. Decoding state (KV cache) lives in a struct nb_fwd per
 * sequence, so one nb_llm serves many requests. */
#ifndef NB_LLM_H
#define NB_LLM_H

#include "firmware/image.h"
#include "firmware/trust.h"
#include "runtime/model/forward.h"
#include "runtime/model/model.h"
#include "runtime/text/tokenizer.h"

struct nb_llm {
	struct nb_image img;
	struct nb_tok *tok;
	struct nb_model model;
	struct nb_sig_info sig; /* what the signature check found */
};

void nb_llm_init(struct nb_llm *l);
/* Opens and validates the image, checks its signature under the trust
 * policy (firmware/verify.h), builds the tokenizer, binds the tensors. */
int nb_llm_open_trusted(struct nb_llm *l, const char *path, unsigned image_flags,
			const struct nb_trust *trust);
/* The same under the device's policy (nb_trust_default). */
int nb_llm_open(struct nb_llm *l, const char *path, unsigned image_flags);
void nb_llm_close(struct nb_llm *l);

/* Index of the largest logit, the lowest id on ties: the greedy choice of
 * golden vectors, benchmarks and top-1 agreement. */
int32_t nb_llm_argmax(const float *v, uint32_t n);

/* Greedy continuation (nb_llm_argmax) of prompt for steps
 * tokens, no stop on EOS: the golden-vector procedure. */
int nb_llm_greedy(const struct nb_model *m, const int32_t *prompt, uint32_t n_prompt,
		  uint32_t steps, int32_t *out);

/* Runs the image's golden vector. 0 if every token matches, -NB_ESELFTEST
 * (with *first_diff = index of the first mismatch) if not, -NB_ENOENT if the
 * image has none. */
int nb_llm_check_golden(const struct nb_llm *l, uint32_t *first_diff);

#endif
