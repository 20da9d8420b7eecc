/* Token sampler: repetition penalty, temperature, top-k, top-p, min-p (see
 * sampler.h for the order). Works on a preallocated candidate array; the
 * selections are partial heap sorts under a total order (higher value
 * first, then lower id), so ties never depend on the sort algorithm. */
#include "runtime/model/sampler.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NB_SAMPLER_MAX_VOCAB (1u << 24) /* as nb_hparams_check */
#define NB_SAMPLER_MAX_HISTORY (1u << 20)

/* ---- random numbers ----------------------------------------------------- */

/* splitmix64 (Steele, Lea, Flood 2014): one 64-bit state, identical on
 * every machine, unlike rand(). */
static uint64_t rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [0, 1): the top 24 bits, exactly representable in a float. */
static float rng_float(uint64_t *state)
{
	return (float)(rng_next(state) >> 40) * (1.0f / 16777216.0f);
}

/* ---- parameters and lifetime ------------------------------------------- */

void nb_sampler_params_default(struct nb_sampler_params *p)
{
	*p = (struct nb_sampler_params){
		.temperature = 1.0f,
		.top_k = 0,
		.top_p = 1.0f,
		.min_p = 0.0f,
		.repeat_penalty = 1.0f,
		.repeat_last_n = 0,
		.seed = 0,
	};
}

static int check_params(uint32_t vocab_size, const struct nb_sampler_params *p)
{
	if (vocab_size == 0 || vocab_size > NB_SAMPLER_MAX_VOCAB) {
		nb_err("sampler: vocabulary of %u outside 1..%u", vocab_size, NB_SAMPLER_MAX_VOCAB);
		return -NB_EINVAL;
	}
	if (!isfinite(p->temperature) || p->temperature < 0.0f) {
		nb_err("sampler: temperature %g, must be finite and >= 0", (double)p->temperature);
		return -NB_EINVAL;
	}
	if (!(p->top_p > 0.0f && p->top_p <= 1.0f)) {
		nb_err("sampler: top_p %g outside (0, 1]", (double)p->top_p);
		return -NB_EINVAL;
	}
	if (!(p->min_p >= 0.0f && p->min_p < 1.0f)) {
		nb_err("sampler: min_p %g outside [0, 1)", (double)p->min_p);
		return -NB_EINVAL;
	}
	if (!isfinite(p->repeat_penalty) || p->repeat_penalty <= 0.0f) {
		nb_err("sampler: repeat_penalty %g, must be finite and > 0",
		       (double)p->repeat_penalty);
		return -NB_EINVAL;
	}
	if (p->repeat_last_n > NB_SAMPLER_MAX_HISTORY) {
		nb_err("sampler: repeat_last_n %u exceeds %u", p->repeat_last_n,
		       NB_SAMPLER_MAX_HISTORY);
		return -NB_EINVAL;
	}
	return 0;
}

int nb_sampler_open(struct nb_sampler *s, uint32_t vocab_size,
		    const struct nb_sampler_params *p)
{
	int err;

	memset(s, 0, sizeof(*s));
	err = check_params(vocab_size, p);
	if (err)
		return err;
	s->p = *p;
	s->vocab_size = vocab_size;
	s->cand = malloc((size_t)vocab_size * sizeof(*s->cand));
	s->penalized = calloc(vocab_size, 1);
	s->history = malloc((size_t)(p->repeat_last_n ? p->repeat_last_n : 1) *
			    sizeof(*s->history));
	if (!s->cand || !s->penalized || !s->history) {
		nb_err("sampler: no memory for a vocabulary of %u", vocab_size);
		nb_sampler_close(s);
		return -NB_ENOMEM;
	}
	nb_sampler_reset(s);
	return 0;
}

void nb_sampler_close(struct nb_sampler *s)
{
	if (!s)
		return;
	free(s->cand);
	free(s->penalized);
	free(s->history);
	memset(s, 0, sizeof(*s));
}

void nb_sampler_reset(struct nb_sampler *s)
{
	s->rng = s->p.seed;
	s->hist_len = 0;
	s->hist_next = 0;
}

void nb_sampler_accept(struct nb_sampler *s, int32_t token)
{
	uint32_t cap = s->p.repeat_last_n;

	/* a token outside the vocabulary has no logit to penalize */
	if (cap == 0 || token < 0 || (uint32_t)token >= s->vocab_size)
		return;
	s->history[s->hist_next] = token;
	s->hist_next = (s->hist_next + 1) % cap;
	if (s->hist_len < cap)
		s->hist_len++;
}

/* ---- filters ----------------------------------------------------------- */

/* Each distinct token of the window once, as llama.cpp does. */
static void penalize(struct nb_sampler *s)
{
	float pen = s->p.repeat_penalty;
	uint32_t i;

	if (pen == 1.0f)
		return;
	for (i = 0; i < s->hist_len; i++) {
		int32_t t = s->history[i];
		float *v = &s->cand[t].value;

		if (s->penalized[t])
			continue;
		s->penalized[t] = 1;
		*v = *v > 0.0f ? *v / pen : *v * pen;
	}
	for (i = 0; i < s->hist_len; i++)
		s->penalized[s->history[i]] = 0;
}

/* The total order of candidates: higher value first, ties to the lower id. */
static bool better(const struct nb_sampler_cand *a, const struct nb_sampler_cand *b)
{
	return a->value > b->value || (a->value == b->value && a->id < b->id);
}

static void sift_down(struct nb_sampler_cand *c, size_t n, size_t i)
{
	for (;;) {
		size_t best = i, l = 2 * i + 1, r = l + 1;
		struct nb_sampler_cand tmp;

		if (l < n && better(&c[l], &c[best]))
			best = l;
		if (r < n && better(&c[r], &c[best]))
			best = r;
		if (best == i)
			return;
		tmp = c[i];
		c[i] = c[best];
		c[best] = tmp;
		i = best;
	}
}

static void reverse(struct nb_sampler_cand *c, size_t n)
{
	size_t i;

	for (i = 0; i < n / 2; i++) {
		struct nb_sampler_cand tmp = c[i];

		c[i] = c[n - 1 - i];
		c[n - 1 - i] = tmp;
	}
}

/* Moves the best candidates, best first, to c[0..m) and returns m: at most
 * max_keep of them, and (unless mass is INFINITY) no more once their values
 * add up to mass, the one that reaches it included. A partial heap sort: O(n + m log n), where a
 * full sort of a 128k vocabulary would cost milliseconds per token. */
static size_t take_best(struct nb_sampler_cand *c, size_t n, size_t max_keep, float mass)
{
	size_t heap = n, m = 0, i;
	float sum = 0.0f;

	for (i = n / 2; i-- > 0;)
		sift_down(c, n, i);
	while (m < max_keep && heap > 0) {
		struct nb_sampler_cand top = c[0];

		/* the popped best goes just past the shrinking heap */
		c[0] = c[--heap];
		c[heap] = top;
		sift_down(c, heap, 0);
		m++;
		if (mass != INFINITY && (sum += top.value) >= mass)
			break;
	}
	reverse(c, n);
	return m;
}

static int32_t argmax(const struct nb_sampler_cand *c, size_t n)
{
	size_t best = 0, i;

	for (i = 1; i < n; i++)
		if (c[i].value > c[best].value) /* strict: the lowest id wins a tie */
			best = i;
	return c[best].id;
}

/* values = exp((v - max) / T) / sum: dividing after the shift cannot
 * overflow, whatever the temperature. Returns false if every value is -inf. */
static bool softmax(struct nb_sampler_cand *c, size_t n, float temperature)
{
	float max = -INFINITY, sum = 0.0f;
	size_t i;

	for (i = 0; i < n; i++)
		if (c[i].value > max)
			max = c[i].value;
	if (max == -INFINITY)
		return false;
	for (i = 0; i < n; i++) {
		c[i].value = expf((c[i].value - max) / temperature);
		sum += c[i].value;
	}
	for (i = 0; i < n; i++)
		c[i].value /= sum;
	return true;
}

/* Keeps, in order, the candidates with probability >= min_p * the highest. */
static size_t min_p_filter(struct nb_sampler_cand *c, size_t n, float min_p)
{
	float max = 0.0f, threshold;
	size_t i, m = 0;

	for (i = 0; i < n; i++)
		if (c[i].value > max)
			max = c[i].value;
	threshold = min_p * max;
	for (i = 0; i < n; i++)
		if (c[i].value >= threshold)
			c[m++] = c[i];
	return m;
}

/* Inverse-CDF draw over the (not necessarily normalized) probabilities. */
static int32_t draw(const struct nb_sampler_cand *c, size_t n, float u)
{
	float total = 0.0f, cum = 0.0f, r;
	size_t i;

	for (i = 0; i < n; i++)
		total += c[i].value;
	r = u * total;
	for (i = 0; i < n; i++) {
		cum += c[i].value;
		if (r < cum)
			return c[i].id;
	}
	return c[n - 1].id; /* rounding left r at the total */
}

/* Copies logits into the candidates; NaN and +inf have no meaning as scores. */
static int load(struct nb_sampler *s, const float *logits)
{
	uint32_t i;

	for (i = 0; i < s->vocab_size; i++) {
		if (isnan(logits[i]) || logits[i] == INFINITY) {
			nb_err("sampler: logit of token %u is %g", i, (double)logits[i]);
			return -NB_EINVAL;
		}
		s->cand[i].value = logits[i];
		s->cand[i].id = (int32_t)i;
	}
	return 0;
}

int nb_sampler_sample(struct nb_sampler *s, const float *logits, int32_t *token)
{
	const struct nb_sampler_params *p = &s->p;
	size_t n = s->vocab_size;
	float u;
	int err;

	err = load(s, logits);
	if (err)
		return err;
	penalize(s);
	if (p->temperature == 0.0f) {
		*token = argmax(s->cand, n);
		return 0;
	}
	u = rng_float(&s->rng); /* one draw per call: the stream depends only on the count */
	if (p->top_k > 0 && p->top_k < n)
		n = take_best(s->cand, n, p->top_k, INFINITY);
	if (!softmax(s->cand, n, p->temperature)) {
		nb_err("sampler: every logit is -inf");
		return -NB_EINVAL;
	}
	if (p->top_p < 1.0f)
		n = take_best(s->cand, n, n, p->top_p);
	if (p->min_p > 0.0f)
		n = min_p_filter(s->cand, n, p->min_p);
	*token = draw(s->cand, n, u);
	return 0;
}
