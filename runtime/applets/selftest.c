/* `nibble selftest`: the built-in checks, run on the target board after
 * flashing. Every kernel backend this CPU runs is compared with the scalar
 * reference; the crypto and GPIO libraries are exercised. */
#include "firmware/digest.h"
#include "kernels/check.h"
#include "kernels/cpu.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/model/pool.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <gpiod.h>

struct tally {
	int passed, failed;
};

static void report(struct tally *t, int ok, const char *what, const char *detail)
{
	printf("%-5s %-24s %s\n", ok ? "ok" : "FAIL", what, detail);
	if (ok)
		t->passed++;
	else
		t->failed++;
}

static void check_kernels(struct tally *t, const struct nb_cpu *cpu, uint64_t seed)
{
	const struct nb_kernels *best = nb_kernels_select(cpu, NULL);
	char what[64], detail[200];

	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		struct nb_check_result r;
		int ret;

		snprintf(what, sizeof(what), "kernels/%s", k->name);
		if (!nb_kernels_runs_on(k, cpu)) {
			printf("%-5s %-24s not supported here\n", "skip", what);
			continue;
		}
		ret = nb_check_backend(k, seed, &r);
		if (ret == 0)
			snprintf(detail, sizeof(detail), "%u cases equal to scalar%s", r.cases,
				 k == best ? " (selected)" : "");
		else if (ret == -NB_ENOMEM)
			snprintf(detail, sizeof(detail), "out of memory");
		else
			snprintf(detail, sizeof(detail), "%u of %u cases differ; first: %s",
				 r.mismatches, r.cases, r.first);
		report(t, ret == 0, what, detail);
	}
}

/* FIPS 180-2 test vector: SHA-256("abc"). */
static void check_sha256(struct tally *t)
{
	static const char want[] =
		"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
	uint8_t d[NB_DIGEST_LEN];
	char hex[2 * NB_DIGEST_LEN + 1] = "";
	int ok = nb_digest_buf("abc", 3, d) == 0;

	if (ok)
		nb_digest_hex(d, hex);
	ok = ok && strcmp(hex, want) == 0;
	report(t, ok, "crypto/sha256", ok ? "mbedTLS, FIPS 180-2 vector" : hex);
}

static void check_gpiod(struct tally *t)
{
	const char *v = gpiod_version_string();
	char detail[64];

	snprintf(detail, sizeof(detail), "libgpiod %s linked", v ? v : "?");
	report(t, v != NULL && v[0] != '\0', "gpio/libgpiod", detail);
}

/* Logits of every position of prompt, one token at a time. */
static int model_logits(const struct nb_llm *l, const struct nb_kernels *k, struct nb_pool *pool,
			const int32_t *prompt, uint32_t n, float *out)
{
	const uint32_t vocab = l->model.hp.vocab_size;
	const struct nb_fwd_opts o = { .max_ctx = n, .max_batch = 4, .pool = pool, .kernels = k };
	struct nb_fwd f;
	float *lg;
	int ret = nb_fwd_open_opts(&f, &l->model, &o);

	for (uint32_t p = 0; !ret && p < n; p++) {
		ret = nb_fwd_token(&f, prompt[p], p, &lg);
		if (!ret)
			memcpy(out + (size_t)p * vocab, lg, vocab * sizeof(float));
	}
	nb_fwd_close(&f);
	return ret;
}

static void compare_logits(struct tally *t, const char *what, const float *want,
			   const float *got, size_t n, uint32_t positions)
{
	char detail[128];
	int same = memcmp(want, got, n * sizeof(float)) == 0;

	snprintf(detail, sizeof(detail), "%s %u positions x %zu logits bit for bit",
		 same ? "equal to scalar:" : "DIFFER from scalar:", positions, n / positions);
	report(t, same, what, detail);
}

/* The whole model on every backend this CPU runs, and on two threads:
 * the logits must be the scalar reference's, bit for bit. */
static void check_model(struct tally *t, const struct nb_cpu *cpu, const char *path)
{
	static const int32_t fallback[] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	const int32_t *prompt = fallback;
	uint32_t n = 8, diff = 0;
	struct nb_llm l;
	struct nb_pool pool;
	float *want = NULL, *got = NULL;
	char what[64];
	size_t len;

	if (nb_llm_open(&l, path, 0)) {
		report(t, 0, "model/open", path);
		return;
	}
	if (l.img.golden) {
		prompt = l.img.golden->ids;
		n = l.img.golden->n_prompt + l.img.golden->n_expected;
	}
	n = n < l.model.hp.seq_len ? n : l.model.hp.seq_len;
	len = (size_t)n * l.model.hp.vocab_size;
	want = malloc(len * sizeof(float));
	got = malloc(len * sizeof(float));
	if (!want || !got || model_logits(&l, &nb_kernels_scalar, NULL, prompt, n, want)) {
		report(t, 0, "model/scalar", "cannot run the model");
		goto out;
	}
	for (size_t i = 0; i + 1 < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		if (!nb_kernels_runs_on(k, cpu))
			continue;
		snprintf(what, sizeof(what), "model/%s", k->name);
		if (model_logits(&l, k, NULL, prompt, n, got) == 0)
			compare_logits(t, what, want, got, len, n);
		else
			report(t, 0, what, "cannot run the model");
	}
	if (nb_pool_open(&pool, 2, NULL) == 0) {
		snprintf(what, sizeof(what), "model/%s x2 threads", nb_kernels_select(cpu, NULL)->name);
		if (model_logits(&l, nb_kernels_select(cpu, NULL), &pool, prompt, n, got) == 0)
			compare_logits(t, what, want, got, len, n);
		nb_pool_close(&pool);
	}
	if (l.img.golden) {
		int ret = nb_llm_check_golden(&l, &diff);
		report(t, ret == 0, "model/golden", ret == 0 ? "golden vector reproduced exactly"
				 : "golden vector NOT reproduced");
	}
out:
	free(want);
	free(got);
	nb_llm_close(&l);
}

static int selftest_main(int argc, char **argv)
{
	static const struct option opts[] = { { "seed", required_argument, NULL, 's' },
					      { "model", required_argument, NULL, 'm' },
					      { NULL, 0, NULL, 0 } };
	const char *model = NULL;
	struct tally t = { 0, 0 };
	unsigned long long seed = 1;
	struct nb_cpu cpu;
	char feat[128];
	int c;

	while ((c = nb_getopt("selftest", argc, argv, "s:m:", opts)) != -1) {
		if (c == 'm')
			model = optarg;
		else if (c != 's' || nb_arg_uint("selftest", "--seed", optarg, 0, UINT64_MAX, &seed))
			return NB_EXIT_USAGE;
	}
	if (optind != argc)
		return nb_usage_error("selftest", "unexpected argument '%s'", argv[optind]);
	nb_cpu_detect(&cpu);
	nb_cpu_describe(&cpu, feat, sizeof(feat));
	printf("cpu   %s\n", feat);
	check_kernels(&t, &cpu, seed);
	check_sha256(&t);
	check_gpiod(&t);
	if (model)
		check_model(&t, &cpu, model);
	printf("selftest: %d passed, %d failed\n", t.passed, t.failed);
	return t.failed ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_selftest = {
	.name = "selftest",
	.summary = "run the built-in checks on this board",
	.usage = "usage: nibble selftest [-s, --seed N] [-m, --model MODEL.nib]\n\n"
		 "Detects the CPU features, compares every kernel backend this CPU can run\n"
		 "with the scalar reference on random and extreme inputs (bit for bit),\n"
		 "checks SHA-256 (mbedTLS) and the GPIO library. With -m, also runs the\n"
		 "model on every backend and on two threads and requires the scalar\n"
		 "reference's logits bit for bit, and its golden vector. --seed (0..2^64-1,\n"
		 "default 1) picks the random inputs. Exits 1 on any failure.\n",
	.main = selftest_main,
};
