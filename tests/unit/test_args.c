/* Command-line arguments (runtime/base/args.h): the value parsers' ranges
 * and syntax, and the one message format of every usage error. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/argfile.h"
#include "runtime/base/args.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* ---- --config FILE (runtime/base/argfile.h) ---------------------------- */

static const struct option cfg_opts[] = {
	{ "socket", required_argument, NULL, 's' }, { "slots", required_argument, NULL, 'n' },
	{ "local-only", no_argument, NULL, 'l' },   { "ctx", optional_argument, NULL, 'c' },
	{ "config", required_argument, NULL, 'C' }, { NULL, 0, NULL, 0 },
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_config_file(void **state)
{
	char path[] = "/tmp/nb-test-argfile-XXXXXX";
	char *argv[] = { "serve", "--config", path, "--slots", "9", NULL };
	struct nb_argfile af;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	write_file(path, "# a comment\n\n  socket = /run/x.sock  \r\nslots 2\n"
			 "local-only\nlocal-only = off\nctx \"\"\n--socket=\"/a b\"\n");
	assert_int_equal(nb_argfile_open(&af, "serve", 5, argv, cfg_opts), 0);
	/* the file's words first, the command line's after (they win) */
	assert_int_equal(af.argc, 5 + 5);
	assert_string_equal(af.argv[0], "serve");
	assert_string_equal(af.argv[1], "--socket=/run/x.sock");
	assert_string_equal(af.argv[2], "--slots=2");
	assert_string_equal(af.argv[3], "--local-only");
	assert_string_equal(af.argv[4], "--ctx=");
	assert_string_equal(af.argv[5], "--socket=/a b");
	assert_string_equal(af.argv[6], "--config");
	assert_string_equal(af.argv[8], "--slots");
	assert_null(af.argv[10]);
	nb_argfile_close(&af);
	unlink(path);
}

static void test_config_file_errors(void **state)
{
	static const struct {
		const char *text, *message;
	} bad[] = {
		{ "socket = x\nbogus = 1\n", "serve: @:2: unknown option 'bogus'" },
		{ "config = other\n", "serve: @:1: unknown option 'config'" },
		{ "slots\n", "serve: @:1: slots needs a value" },
		{ "slots =\n", "serve: @:1: slots needs a value" },
		{ "local-only = maybe\n", "serve: @:1: local-only takes no value (or true/false), not 'maybe'" },
		{ "socket = \"/x\n", "serve: @:1: socket: unterminated quote" },
		{ "socket = a\0b\n", "serve: --config @: not a text file" },
	};
	char path[] = "/tmp/nb-test-argfile-XXXXXX";
	char *argv[] = { "serve", "--config=", NULL };
	char arg[64], want[256];
	struct nb_argfile af;
	FILE *saved;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	snprintf(arg, sizeof(arg), "--config=%s", path);
	argv[1] = arg;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		FILE *f = fopen(path, "w");
		assert_non_null(f);
		fwrite(bad[i].text, 1, strlen(bad[i].text) + (strstr(bad[i].message, "text") ? 4 : 0), f);
		fclose(f);
		capture_begin(&saved);
		assert_true(nb_argfile_open(&af, "serve", 2, argv, cfg_opts) < 0);
		capture_end(saved);
		const char *at = strchr(bad[i].message, '@');
		snprintf(want, sizeof(want), "%.*s%s%s", (int)(at - bad[i].message), bad[i].message,
			 path, at + 1);
		assert_non_null(strstr(logged, want));
		assert_null(af.argv);
	}
	unlink(path);
	capture_begin(&saved);
	assert_int_equal(nb_argfile_open(&af, "serve", 2, argv, cfg_opts), -NB_ENOENT);
	capture_end(saved);
	assert_non_null(strstr(logged, "No such file"));
	/* without --config: the command line itself */
	argv[1] = "--slots=3";
	assert_int_equal(nb_argfile_open(&af, "serve", 2, argv, cfg_opts), 0);
	assert_ptr_equal(af.argv, argv);
	nb_argfile_close(&af);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_float_ranges),   cmocka_unit_test(test_open_interval),
		cmocka_unit_test(test_whole_numbers),  cmocka_unit_test(test_choice),
		cmocka_unit_test(test_getopt_messages), cmocka_unit_test(test_usage_error),
		cmocka_unit_test(test_config_file),     cmocka_unit_test(test_config_file_errors),
	};

	nb_log_set_level(NB_LOG_INFO);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
