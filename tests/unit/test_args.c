/* Command-line arguments (runtime/base/args.h): the value parsers' ranges
 * and syntax, and the one message format of every usage error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/args.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What the logger wrote while fn ran, without the trailing newline. */
static char logged[1024];

static void capture_begin(FILE **saved)
{
	*saved = stderr;
	stderr = tmpfile();
	assert_non_null(stderr);
}

static void capture_end(FILE *saved)
{
	size_t n;

	rewind(stderr);
	n = fread(logged, 1, sizeof(logged) - 1, stderr);
	logged[n] = '\0';
	if (n && logged[n - 1] == '\n')
		logged[n - 1] = '\0';
	fclose(stderr);
	stderr = saved;
}

static void test_float_ranges(void **state)
{
	static const char *const bad[] = { "", "abc", "nan", "inf", "-inf", "0x1p0", "1e9", "1.5x",
					   " 1", "-1", "." };
	FILE *saved;
	double v;

	(void)state;
	assert_int_equal(nb_arg_float("run", "--temp", "0", 0, 100, &v), 0);
	assert_true(v == 0.0);
	assert_int_equal(nb_arg_float("run", "--temp", "100", 0, 100, &v), 0);
	assert_int_equal(nb_arg_float("run", "--temp", ".5", 0, 100, &v), 0);
	assert_true(v == 0.5);
	assert_int_equal(nb_arg_float("run", "--temp", "1e-400", 0, 100, &v), 0); /* underflow: ~0 */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		capture_begin(&saved);
		assert_int_equal(nb_arg_float("run", "--temp", bad[i], 0, 100, &v), -NB_EINVAL);
		capture_end(saved);
		char want[128];
		snprintf(want, sizeof(want), "nibble: error: run: --temp: '%s' is not a number in 0..100",
			 bad[i]);
		assert_string_equal(logged, want);
	}
}

static void test_open_interval(void **state)
{
	FILE *saved;
	double v;

	(void)state;
	assert_int_equal(nb_arg_interval("run", "--top-p", "1", 0, 1, NB_ARG_ABOVE_MIN, &v), 0);
	assert_int_equal(nb_arg_interval("run", "--top-p", "1e-9", 0, 1, NB_ARG_ABOVE_MIN, &v), 0);
	capture_begin(&saved);
	assert_int_equal(nb_arg_interval("run", "--top-p", "0", 0, 1, NB_ARG_ABOVE_MIN, &v),
			 -NB_EINVAL);
	capture_end(saved);
	assert_string_equal(logged, "nibble: error: run: --top-p: '0' is not a number in (0, 1]");
	capture_begin(&saved);
	assert_int_equal(nb_arg_interval("run", "--top-p", "-0", 0, 1, NB_ARG_ABOVE_MIN, &v),
			 -NB_EINVAL);
	capture_end(saved);
	assert_int_equal(nb_arg_interval("run", "--min-p", "0", 0, 1, NB_ARG_BELOW_MAX, &v), 0);
	capture_begin(&saved);
	assert_int_equal(nb_arg_interval("run", "--min-p", "1", 0, 1, NB_ARG_BELOW_MAX, &v),
			 -NB_EINVAL);
	capture_end(saved);
	assert_string_equal(logged, "nibble: error: run: --min-p: '1' is not a number in [0, 1)");
}

static void test_whole_numbers(void **state)
{
	unsigned long long u;
	long long s;
	uint32_t u32;
	FILE *saved;

	(void)state;
	assert_int_equal(nb_arg_uint("run", "--seed", "18446744073709551615", 0, UINT64_MAX, &u), 0);
	assert_true(u == UINT64_MAX);
	capture_begin(&saved);
	assert_int_equal(nb_arg_uint("run", "--seed", "18446744073709551616", 0, UINT64_MAX, &u),
			 -NB_EINVAL);
	assert_int_equal(nb_arg_uint("run", "--seed", "-1", 0, UINT64_MAX, &u), -NB_EINVAL);
	assert_int_equal(nb_arg_uint("run", "--seed", "+1", 0, UINT64_MAX, &u), -NB_EINVAL);
	assert_int_equal(nb_arg_u32("run", "-n", "4294967296", 1, UINT32_MAX, &u32), -NB_EINVAL);
	capture_end(saved);
	capture_begin(&saved);
	assert_int_equal(nb_arg_u32("run", "-n", "0", 1, UINT32_MAX, &u32), -NB_EINVAL);
	capture_end(saved);
	assert_string_equal(logged, "nibble: error: run: -n: '0' is not a whole number in 1..4294967295");
	assert_int_equal(nb_arg_u32("run", "-n", "4294967295", 1, UINT32_MAX, &u32), 0);
	assert_true(u32 == UINT32_MAX);
	assert_int_equal(nb_arg_int("x", "--d", "-5", -10, 10, &s), 0);
	assert_true(s == -5);
	capture_begin(&saved);
	assert_int_equal(nb_arg_int("x", "--d", "--5", -10, 10, &s), -NB_EINVAL);
	capture_end(saved);
}

static void test_choice(void **state)
{
	static const char *const names[] = { "rtn", "awq", "gptq" };
	FILE *saved;
	size_t i = 99;

	(void)state;
	assert_int_equal(nb_arg_choice("quantize", "--method", "gptq", names, 3, &i), 0);
	assert_int_equal(i, 2);
	capture_begin(&saved);
	assert_int_equal(nb_arg_choice("quantize", "--method", "GPTQ", names, 3, &i), -NB_EINVAL);
	capture_end(saved);
	assert_string_equal(logged,
			    "nibble: error: quantize: --method: 'GPTQ' is not one of rtn, awq, gptq");
}

/* One nb_getopt run over args: how many errors it reported; the last
 * message in logged. */
static int getopt_all(const char *const *args)
{
	static const struct option opts[] = {
		{ "temp", required_argument, NULL, 256 }, { "top-k", required_argument, NULL, 257 },
		{ "top-p", required_argument, NULL, 258 }, { "check", no_argument, NULL, 'c' },
		{ "model", required_argument, NULL, 'm' }, { NULL, 0, NULL, 0 },
	};
	char *argv[16];
	int argc = 0, c, n_bad = 0;
	FILE *saved;

	while (args[argc]) {
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	optind = 0; /* glibc: a full reset */
	capture_begin(&saved);
	while ((c = nb_getopt("run", argc, argv, "cvm:", opts)) != -1)
		n_bad += c == '?';
	capture_end(saved);
	return n_bad;
}

static void test_getopt_messages(void **state)
{
	static const struct {
		const char *args[6];
		const char *msg;
	} cases[] = {
		{ { "run", "--bogus", NULL }, "unknown option '--bogus'" },
		{ { "run", "--bogus=1", NULL }, "unknown option '--bogus'" },
		{ { "run", "-x", NULL }, "unknown option '-x'" },
		{ { "run", "--check", "-xv", NULL }, "unknown option '-x'" },
		{ { "run", "-vx", NULL }, "unknown option '-x'" },
		{ { "run", "--temp", NULL }, "option '--temp' needs an argument" },
		{ { "run", "-m", NULL }, "option '-m' needs an argument" },
		{ { "run", "-vm", NULL }, "option '-m' needs an argument" },
		{ { "run", "--check=yes", NULL }, "option '--check' takes no argument" },
		{ { "run", "--top", "1", NULL }, "ambiguous option '--top' (--top-k, --top-p)" },
		{ { "run", "--t=1", NULL }, "ambiguous option '--t' (--temp, --top-k, --top-p)" },
	};
	char want[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(getopt_all(cases[i].args), 1);
		snprintf(want, sizeof(want), "nibble: error: run: %s (see nibble run --help)",
			 cases[i].msg);
		assert_string_equal(logged, want);
	}
	/* Abbreviations that are not ambiguous, and flags, are no errors. */
	{
		static const char *const ok[] = { "run", "--ch", "--te=1", "-cv", "--model", "x", NULL };
		assert_int_equal(getopt_all(ok), 0);
		assert_string_equal(logged, "");
	}
}

static void test_usage_error(void **state)
{
	FILE *saved;

	(void)state;
	capture_begin(&saved);
	assert_int_equal(nb_usage_error("serve", "no model (-m %s)", "MODEL.nib"), 2);
	capture_end(saved);
	assert_string_equal(logged,
			    "nibble: error: serve: no model (-m MODEL.nib) (see nibble serve --help)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_float_ranges),   cmocka_unit_test(test_open_interval),
		cmocka_unit_test(test_whole_numbers),  cmocka_unit_test(test_choice),
		cmocka_unit_test(test_getopt_messages), cmocka_unit_test(test_usage_error),
	};

	nb_log_set_level(NB_LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
