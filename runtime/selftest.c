/* `nibble selftest`: the built-in checks, run on the target board after
 * flashing. Every kernel backend this CPU runs is compared with the scalar
 * reference; the crypto and GPIO libraries are exercised. */
#include "firmware/digest.h"
#include "kernels/check.h"
#include "kernels/cpu.h"
#include "runtime/applet.h"
#include "runtime/err.h"

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
			printf("%-5s %-24s not supported by this CPU\n", "skip", what);
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

static int selftest_main(int argc, char **argv)
{
	static const struct option opts[] = { { "seed", required_argument, NULL, 's' },
					      { NULL, 0, NULL, 0 } };
	struct tally t = { 0, 0 };
	uint64_t seed = 1;
	struct nb_cpu cpu;
	char feat[128];
	int c;

	while ((c = getopt_long(argc, argv, "s:", opts, NULL)) != -1) {
		if (c != 's')
			return NB_EXIT_USAGE;
		seed = strtoull(optarg, NULL, 0);
	}
	nb_cpu_detect(&cpu);
	nb_cpu_describe(&cpu, feat, sizeof(feat));
	printf("cpu   %s\n", feat);
	check_kernels(&t, &cpu, seed);
	check_sha256(&t);
	check_gpiod(&t);
	printf("selftest: %d passed, %d failed\n", t.passed, t.failed);
	return t.failed ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_selftest = {
	.name = "selftest",
	.summary = "run the built-in checks on this board",
	.usage = "usage: nibble selftest [--seed N]\n\n"
		 "Detects the CPU features, compares every kernel backend this CPU can run\n"
		 "with the scalar reference on random and extreme inputs (bit for bit),\n"
		 "checks SHA-256 (mbedTLS) and the GPIO library. Exits 1 on any failure.\n",
	.main = selftest_main,
};
