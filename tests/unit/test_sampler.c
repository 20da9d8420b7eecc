/* The sampler: greedy and its tie rule, determinism, every filter, and the
 * frequencies of draws against the distribution they come from. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/model/sampler.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_MALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_MALLOC_HOOKS 1
#endif
#endif

#ifdef HAVE_MALLOC_HOOKS
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));
static volatile size_t n_mallocs;
static void count_malloc(const volatile void *p, size_t size)
{
	(void)p;
	(void)size;
	n_mallocs++;
}
static void ignore_free(const volatile void *p) { (void)p; }
static size_t n_mallocs_now(void) { return n_mallocs; }
#else
static size_t n_mallocs_now(void) { return 0; }
#endif

static struct nb_sampler_params params(float temperature)
{
	struct nb_sampler_params p;

	nb_sampler_params_default(&p);
	p.temperature = temperature;
	p.seed = 1234;
	return p;
}

static int32_t sample1(struct nb_sampler *s, const float *logits)
{
	int32_t tok = -1;

	assert_int_equal(nb_sampler_sample(s, logits, &tok), 0);
	return tok;
}

/* Pseudo-random logits in [-8, 8) from a test-local LCG. */
static void random_logits(float *x, size_t n, uint32_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1664525u + 1013904223u;
		x[i] = (float)(seed >> 8) / 16777216.0f * 16.0f - 8.0f;
	}
}

static int32_t argmax(const float *x, size_t n)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (int32_t)best;
}

/* Draws n_draws tokens and returns Pearson's chi-square statistic against
 * the expected probabilities want[vocab]; a token with want 0 must never come. */
static double chi_square(struct nb_sampler *s, const float *logits, const double *want,
			 size_t vocab, int n_draws)
{
	size_t count[16] = { 0 };
	double chi = 0.0;

	assert_true(vocab <= 16);
	for (int i = 0; i < n_draws; i++) {
		int32_t t = sample1(s, logits);

		assert_true(t >= 0 && (size_t)t < vocab);
		count[t]++;
	}
	for (size_t i = 0; i < vocab; i++) {
		double e = want[i] * n_draws;

		if (want[i] == 0.0) {
			assert_int_equal(count[i], 0);
			continue;
		}
		chi += (count[i] - e) * (count[i] - e) / e;
	}
	return chi;
}

/* 99.9% quantiles of chi-square with 1..3 degrees of freedom: with a fixed
 * seed the test is deterministic, and a correct sampler passes it with a
 * wide margin. */
static const double chi_999[] = { 0.0, 10.83, 13.82, 16.27 };

static const double dist4[] = { 0.5, 0.25, 0.15, 0.1 };

static void log_probs(float *logits, const double *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		logits[i] = (float)log(p[i]) + 3.0f; /* softmax ignores the shift */
}

/* ---- tests --------------------------------------------------------------- */

static void test_params_checked(void **state)
{
	struct nb_sampler_params p;
	struct nb_sampler s;
	(void)state;

#define BAD(field, value)                                                  \
	do {                                                               \
		p = params(1.0f);                                          \
		p.field = value;                                           \
		assert_int_equal(nb_sampler_open(&s, 16, &p), -NB_EINVAL); \
		assert_null(s.cand);                                       \
	} while (0)
	BAD(temperature, -0.5f);
	BAD(temperature, NAN);
	BAD(temperature, INFINITY);
	BAD(top_p, 0.0f);
	BAD(top_p, 1.5f);
	BAD(top_p, NAN);
	BAD(min_p, -0.1f);
	BAD(min_p, 1.0f);
	BAD(repeat_penalty, 0.0f);
	BAD(repeat_penalty, NAN);
	BAD(repeat_last_n, 0xffffffffu);
#undef BAD
	p = params(1.0f);
	assert_int_equal(nb_sampler_open(&s, 0, &p), -NB_EINVAL);
	assert_int_equal(nb_sampler_open(&s, 0x7fffffffu, &p), -NB_EINVAL);
	assert_int_equal(nb_sampler_open(&s, 16, &p), 0);
	nb_sampler_close(&s);
	nb_sampler_close(&s); /* idempotent */
	nb_sampler_close(NULL);
}

static void test_greedy_is_argmax(void **state)
{
	struct nb_sampler_params p = params(0.0f);
	float logits[300];
	struct nb_sampler s;
	(void)state;

	assert_int_equal(nb_sampler_open(&s, 300, &p), 0);
	for (uint32_t seed = 1; seed <= 50; seed++) {
		random_logits(logits, 300, seed);
		assert_int_equal(sample1(&s, logits), argmax(logits, 300));
	}
	/* ties go to the lowest id */
	for (size_t i = 0; i < 300; i++)
		logits[i] = -1.0f;
	logits[7] = logits[42] = logits[299] = 5.0f;
	assert_int_equal(sample1(&s, logits), 7);
	logits[7] = 4.0f;
	assert_int_equal(sample1(&s, logits), 42);
	/* masked tokens and an all-masked vocabulary */
	for (size_t i = 0; i < 300; i++)
		logits[i] = -INFINITY;
	logits[123] = -1e30f;
	assert_int_equal(sample1(&s, logits), 123);
	nb_sampler_close(&s);
}

static void test_bad_logits(void **state)
{
	struct nb_sampler_params p = params(1.0f);
	float logits[8] = { 0 };
	struct nb_sampler s;
	int32_t tok;
	(void)state;

	assert_int_equal(nb_sampler_open(&s, 8, &p), 0);
	logits[3] = NAN;
	assert_int_equal(nb_sampler_sample(&s, logits, &tok), -NB_EINVAL);
	logits[3] = INFINITY;
	assert_int_equal(nb_sampler_sample(&s, logits, &tok), -NB_EINVAL);
	for (size_t i = 0; i < 8; i++)
		logits[i] = -INFINITY;
	assert_int_equal(nb_sampler_sample(&s, logits, &tok), -NB_EINVAL);
	logits[5] = 0.0f; /* one token left: it is certain */
	assert_int_equal(sample1(&s, logits), 5);
	nb_sampler_close(&s);
}

static void test_same_seed_same_tokens(void **state)
{
	struct nb_sampler_params p = params(1.0f);
	struct nb_sampler a, b, c;
	float logits[64];
	int32_t first[200];
	int same_as_other_seed = 0;
	(void)state;

	p.top_k = 40;
	p.top_p = 0.95f;
	p.min_p = 0.01f;
	assert_int_equal(nb_sampler_open(&a, 64, &p), 0);
	assert_int_equal(nb_sampler_open(&b, 64, &p), 0);
	p.seed++;
	assert_int_equal(nb_sampler_open(&c, 64, &p), 0);
	for (int i = 0; i < 200; i++) {
		random_logits(logits, 64, (uint32_t)i % 7 + 1);
		logits[i % 64] *= 0.25f;
		first[i] = sample1(&a, logits);
		assert_int_equal(sample1(&b, logits), first[i]);
		same_as_other_seed += sample1(&c, logits) == first[i];
	}
	assert_true(same_as_other_seed < 150);
	/* reset restarts the stream */
	nb_sampler_reset(&a);
	for (int i = 0; i < 200; i++) {
		random_logits(logits, 64, (uint32_t)i % 7 + 1);
		logits[i % 64] *= 0.25f;
		assert_int_equal(sample1(&a, logits), first[i]);
	}
	nb_sampler_close(&a);
	nb_sampler_close(&b);
	nb_sampler_close(&c);
}

/* An independent splitmix64 (Vigna's splitmix64.c), checked against its
 * published outputs for seed 1234567. */
static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* The stream is part of the contract (same tokens on every machine): each
 * call draws u = top 24 bits of the next splitmix64 output / 2^24 from the
 * seed, and picks the token whose cumulative-probability interval holds u. */
static void test_stream_is_splitmix64(void **state)
{
	static const uint64_t published[] = { 6457827717110365317ull, 3203168211198807973ull,
					      9817491932198370423ull, 4593380528125082431ull,
					      16408922859458223821ull };
	static const double cdf[] = { 0.5, 0.75, 0.9, 1.0 };
	struct nb_sampler_params p = params(1.0f);
	uint64_t x = 1234567;
	float logits[4];
	struct nb_sampler s;
	int checked = 0;
	(void)state;

	for (size_t i = 0; i < 5; i++)
		assert_true(splitmix64(&x) == published[i]);

	log_probs(logits, dist4, 4);
	p.seed = x = 987654321;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	for (int i = 0; i < 200; i++) {
		double u = (double)(splitmix64(&x) >> 40) / 16777216.0;
		int32_t want = 0, got = sample1(&s, logits);
		bool near = false;

		while (u >= cdf[want])
			want++;
		for (size_t j = 0; j < 3; j++) /* float rounding may move a boundary */
			near |= fabs(u - cdf[j]) < 1e-5;
		if (near)
			continue;
		assert_int_equal(got, want);
		checked++;
	}
	assert_true(checked > 190);
	nb_sampler_close(&s);
}

static void test_top_k_1_and_tiny_top_p_are_greedy(void **state)
{
	struct nb_sampler_params pk = params(1.0f), pp = params(1.0f);
	struct nb_sampler k, tp;
	float logits[1000];
	(void)state;

	pk.top_k = 1;
	pp.top_p = 1e-6f;
	assert_int_equal(nb_sampler_open(&k, 1000, &pk), 0);
	assert_int_equal(nb_sampler_open(&tp, 1000, &pp), 0);
	for (uint32_t seed = 1; seed <= 100; seed++) {
		random_logits(logits, 1000, seed);
		if (seed % 3 == 0) { /* near-flat logits: still the argmax */
			for (size_t i = 0; i < 1000; i++)
				logits[i] *= 1e-3f;
		}
		assert_int_equal(sample1(&k, logits), argmax(logits, 1000));
		assert_int_equal(sample1(&tp, logits), argmax(logits, 1000));
	}
	/* exact ties: the lowest id, as greedy */
	for (size_t i = 0; i < 1000; i++)
		logits[i] = 0.0f;
	assert_int_equal(sample1(&k, logits), 0);
	assert_int_equal(sample1(&tp, logits), 0);
	nb_sampler_close(&k);
	nb_sampler_close(&tp);
}

static void test_frequencies_match_probabilities(void **state)
{
	struct nb_sampler_params p = params(1.0f);
	struct nb_sampler s;
	float logits[4];
	double chi;
	(void)state;

	log_probs(logits, dist4, 4);
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, dist4, 4, 100000);
	printf("    T=1 over {.5 .25 .15 .1}: chi-square %.2f (3 dof)\n", chi);
	assert_true(chi < chi_999[3]);
	nb_sampler_close(&s);
}

/* The filters keep the right tokens and renormalize over them. */
static void test_filters_renormalize(void **state)
{
	static const double top2[] = { 2.0 / 3.0, 1.0 / 3.0, 0.0, 0.0 };
	static const double top3[] = { 0.5 / 0.9, 0.25 / 0.9, 0.15 / 0.9, 0.0 };
	struct nb_sampler_params p;
	struct nb_sampler s;
	float logits[4];
	double chi;
	(void)state;

	log_probs(logits, dist4, 4);

	p = params(1.0f);
	p.top_k = 2;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, top2, 4, 30000);
	assert_true(chi < chi_999[1]);
	nb_sampler_close(&s);

	/* top-p 0.7: 0.5 is short of it, 0.5 + 0.25 reaches it */
	p = params(1.0f);
	p.top_p = 0.7f;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, top2, 4, 30000);
	assert_true(chi < chi_999[1]);
	nb_sampler_close(&s);

	/* min-p 0.25: threshold 0.125 drops the 0.1 token */
	p = params(1.0f);
	p.min_p = 0.25f;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, top3, 4, 30000);
	assert_true(chi < chi_999[2]);
	nb_sampler_close(&s);

	/* min-p 0.4: threshold 0.2 keeps 0.5 and 0.25 */
	p = params(1.0f);
	p.min_p = 0.4f;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, top2, 4, 30000);
	assert_true(chi < chi_999[1]);
	nb_sampler_close(&s);

	/* top-k 3 then top-p 0.8 over the renormalized {.556 .278 .167}:
	 * .556 + .278 = .833 reaches it */
	p = params(1.0f);
	p.top_k = 3;
	p.top_p = 0.8f;
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, top2, 4, 30000);
	assert_true(chi < chi_999[1]);
	nb_sampler_close(&s);
}

static void test_temperature_extremes(void **state)
{
	static const double uniform[] = { 0.25, 0.25, 0.25, 0.25 };
	struct nb_sampler_params p;
	struct nb_sampler s;
	float logits[4] = { 0.0f, 1.0f, 2.0f, 3.0f };
	double chi;
	(void)state;

	p = params(1e-4f); /* cold: the argmax every time */
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	for (int i = 0; i < 1000; i++)
		assert_int_equal(sample1(&s, logits), 3);
	nb_sampler_close(&s);

	p = params(1e-30f); /* far below any logit gap: still no NaN */
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	for (int i = 0; i < 100; i++)
		assert_int_equal(sample1(&s, logits), 3);
	nb_sampler_close(&s);

	p = params(1e6f); /* hot: uniform */
	assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
	chi = chi_square(&s, logits, uniform, 4, 40000);
	assert_true(chi < chi_999[3]);
	nb_sampler_close(&s);

	/* T=0.5 squares the probabilities: {.5 .25 .15 .1} -> {.25 .0625 .0225 .01} / .345 */
	{
		double want[4], sum = 0.0;

		for (size_t i = 0; i < 4; i++)
			sum += want[i] = dist4[i] * dist4[i];
		for (size_t i = 0; i < 4; i++)
			want[i] /= sum;
		log_probs(logits, dist4, 4);
		p = params(0.5f);
		assert_int_equal(nb_sampler_open(&s, 4, &p), 0);
		chi = chi_square(&s, logits, want, 4, 40000);
		assert_true(chi < chi_999[3]);
		nb_sampler_close(&s);
	}
}

static void test_repetition_penalty(void **state)
{
	struct nb_sampler_params p = params(0.0f);
	struct nb_sampler s;
	float logits[8] = { 3.0f, 2.9f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f };
	(void)state;

	p.repeat_penalty = 1.1f;
	p.repeat_last_n = 3;
	assert_int_equal(nb_sampler_open(&s, 8, &p), 0);
	assert_int_equal(sample1(&s, logits), 0);
	/* positive logits are divided: 3.0 / 1.1 = 2.73 < 2.9 */
	nb_sampler_accept(&s, 0);
	assert_int_equal(sample1(&s, logits), 1);
	/* the caller's logits are untouched */
	assert_true(logits[0] == 3.0f);
	/* once per distinct token: 3.0 / 1.1^2 = 2.48 would lose to 2.6 */
	logits[1] = 2.6f;
	nb_sampler_accept(&s, 0);
	assert_int_equal(sample1(&s, logits), 0);
	/* out of the window of 3, the penalty lapses */
	logits[1] = 2.9f;
	nb_sampler_accept(&s, 5);
	nb_sampler_accept(&s, 6);
	assert_int_equal(sample1(&s, logits), 1); /* 0 still in {0, 5, 6} */
	nb_sampler_accept(&s, 7);
	assert_int_equal(sample1(&s, logits), 0); /* window {5, 6, 7} */
	/* tokens outside the vocabulary are ignored, not stored */
	nb_sampler_accept(&s, -1);
	nb_sampler_accept(&s, 8);
	assert_int_equal(sample1(&s, logits), 0);

	/* negative logits are multiplied: -1.0 * 1.1 = -1.1 < -1.05 */
	for (size_t i = 0; i < 8; i++)
		logits[i] = -5.0f;
	logits[3] = -1.0f;
	logits[4] = -1.05f;
	nb_sampler_reset(&s);
	assert_int_equal(sample1(&s, logits), 3);
	nb_sampler_accept(&s, 3);
	assert_int_equal(sample1(&s, logits), 4);
	nb_sampler_close(&s);

	/* penalty 1 and repeat_last_n 0 are off */
	logits[3] = -1.0f;
	p.repeat_penalty = 1.0f;
	assert_int_equal(nb_sampler_open(&s, 8, &p), 0);
	nb_sampler_accept(&s, 3);
	assert_int_equal(sample1(&s, logits), 3);
	nb_sampler_close(&s);
	p.repeat_penalty = 1.5f;
	p.repeat_last_n = 0;
	assert_int_equal(nb_sampler_open(&s, 8, &p), 0);
	nb_sampler_accept(&s, 3);
	assert_int_equal(sample1(&s, logits), 3);
	nb_sampler_close(&s);
}

/* A large vocabulary through every filter, without allocating per token. */
static void test_large_vocab_no_allocation(void **state)
{
	struct nb_sampler_params p = params(0.8f);
	struct nb_sampler s;
	float *logits = malloc(32000 * sizeof(*logits));
	int32_t toks[64];
	(void)state;

	assert_non_null(logits);
	random_logits(logits, 32000, 99);
	logits[31999] = 20.0f; /* dominant: beyond the nucleus' first token */
	logits[17] = 19.5f;
	p.top_k = 40;
	p.top_p = 0.9f;
	p.min_p = 0.05f;
	p.repeat_penalty = 1.1f;
	p.repeat_last_n = 64;
	assert_int_equal(nb_sampler_open(&s, 32000, &p), 0);
#ifdef HAVE_MALLOC_HOOKS
	assert_int_not_equal(__sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free),
			     0);
#endif
	size_t before = n_mallocs_now();
	for (int i = 0; i < 64; i++) {
		toks[i] = -1;
		nb_sampler_sample(&s, logits, &toks[i]);
		nb_sampler_accept(&s, toks[i]);
	}
	size_t after = n_mallocs_now();
#ifdef HAVE_MALLOC_HOOKS
	__sanitizer_install_malloc_and_free_hooks(NULL, NULL);
#endif
	assert_int_equal(after - before, 0);
	for (int i = 0; i < 64; i++)
		assert_true(toks[i] == 17 || toks[i] == 31999);
	nb_sampler_close(&s);
	free(logits);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_params_checked),
		cmocka_unit_test(test_greedy_is_argmax),
		cmocka_unit_test(test_bad_logits),
		cmocka_unit_test(test_same_seed_same_tokens),
		cmocka_unit_test(test_stream_is_splitmix64),
		cmocka_unit_test(test_top_k_1_and_tiny_top_p_are_greedy),
		cmocka_unit_test(test_frequencies_match_probabilities),
		cmocka_unit_test(test_filters_renormalize),
		cmocka_unit_test(test_temperature_extremes),
		cmocka_unit_test(test_repetition_penalty),
		cmocka_unit_test(test_large_vocab_no_allocation),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
