/* Token sampling from logits. Deterministic: the same seed, parameters and
 * logits give the same tokens on every machine (own RNG, fixed summation
 * orders, total orders for every sort).
 *
 * Filters, in this order:
 *   1. repetition penalty over the last repeat_last_n accepted tokens
 *      (llama.cpp: a positive logit is divided by repeat_penalty, a
 *      negative one multiplied; each distinct token once);
 *   2. temperature 0: greedy, the argmax; ties go to the lowest token id;
 *   3. temperature: logits / temperature;
 *   4. top-k: keep the k highest (ties by lowest id);
 *   5. softmax;
 *   6. top-p: keep the most probable tokens until their mass reaches top_p
 *      (the token that crosses it included);
 *   7. min-p: drop tokens with probability < min_p * the highest one;
 *   8. draw one token from what is left, in proportion to its probability.
 * The penalty comes before the argmax: temperature 0 is plain greedy
 * decoding only with repeat_penalty 1, as every default has it.
 */
#ifndef NB_SAMPLER_H
#define NB_SAMPLER_H

#include <stddef.h>
#include <stdint.h>

struct nb_sampler_params {
	float temperature;      /* >= 0; 0 = greedy */
	uint32_t top_k;         /* 0 = off */
	float top_p;            /* (0, 1]; 1 = off */
	float min_p;            /* [0, 1); 0 = off */
	float repeat_penalty;   /* > 0; 1 = off */
	uint32_t repeat_last_n; /* tokens of history the penalty looks at; 0 = off */
	uint64_t seed;
};

/* One candidate token: its id and its logit, then its probability. */
struct nb_sampler_cand {
	float value;
	int32_t id;
};

struct nb_sampler {
	struct nb_sampler_params p;
	uint32_t vocab_size;
	uint64_t rng;                  /* splitmix64 state */
	struct nb_sampler_cand *cand;  /* [vocab] working set, then the survivors */
	uint8_t *penalized;            /* [vocab] 1 while a token's penalty is applied */
	int32_t *history;              /* [repeat_last_n] ring of accepted tokens */
	uint32_t hist_len, hist_next;
};

/* temperature 1, every filter off, seed 0. */
void nb_sampler_params_default(struct nb_sampler_params *p);

/* Checks the parameters and allocates every buffer for vocab_size, so that
 * sampling never allocates. s need not be initialized; after a failure it
 * is closed. */
int nb_sampler_open(struct nb_sampler *s, uint32_t vocab_size,
		    const struct nb_sampler_params *p);
/* NULL-safe, idempotent. */
void nb_sampler_close(struct nb_sampler *s);

/* Forgets the history and restarts the RNG from the seed. */
void nb_sampler_reset(struct nb_sampler *s);

/* Adds a token (of the prompt or generated) to the penalty history. */
void nb_sampler_accept(struct nb_sampler *s, int32_t token);

/* Picks the next token from logits[vocab_size] (not modified). Does not
 * accept it. -NB_EINVAL if a logit is NaN or +inf. */
int nb_sampler_sample(struct nb_sampler *s, const float *logits, int32_t *token);

#endif
