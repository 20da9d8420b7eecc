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

/* The upper bound of the default context: longer ones are asked for with
 * --ctx (2048 positions of TinyLlama are 92 MB of KV cache a sequence). */
#define NB_LLM_CTX_DEFAULT_MAX 2048

void nb_llm_init(struct nb_llm *l);
/* Opens and validates the image, checks its signature under the trust
 * policy (firmware/verify.h), builds the tokenizer, binds the tensors. */
int nb_llm_open_trusted(struct nb_llm *l, const char *path, unsigned image_flags,
			const struct nb_trust *trust);
/* The same under the device's policy (nb_trust_default). */
int nb_llm_open(struct nb_llm *l, const char *path, unsigned image_flags);
void nb_llm_close(struct nb_llm *l);

/* The context (KV cache positions a sequence) of n_seqs sequences of this
 * model: one rule for every applet, which names itself in the messages
 * (applet). requested != 0 (--ctx) is taken as it is: beyond the model's
 * seq_len it is a usage error naming --ctx and that limit (-NB_EINVAL),
 * and caches larger than mem_avail bytes together are an error
 * (-NB_ENOMEM). requested 0 takes the least of seq_len,
 * NB_LLM_CTX_DEFAULT_MAX and what lets the caches fit half of the memory
 * left beside the weights (-NB_ENOMEM if not one position does), and says
 * which in an info line (a warning if memory chose). mem_avail:
 * nb_sys_mem_available() (UINT64_MAX: unknown, no limit). */
int nb_llm_context(const struct nb_llm *l, const char *applet, uint32_t requested,
		   uint32_t n_seqs, uint64_t mem_avail, uint32_t *ctx);

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
