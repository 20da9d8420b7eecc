/* nibble: one binary, many applets (busybox style). */
#include "runtime/applets/applet.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void print_summary(const struct nb_applet *a, void *arg)
{
	fprintf(arg, "  %-12s %s\n", a->name, a->summary);
}

static void print_usage(FILE *out)
{
	fprintf(out, "usage: nibble [-v|-q] <applet> [options]\n"
		     "       nibble --version | --help | --list | --install DIR\n\n"
		     "applets:\n");
	nb_applet_foreach(print_summary, out);
	fprintf(out, "\n`nibble <applet> --help` describes one applet. NIBBLE_LOG=error|warn|info|debug\n"
		     "sets the log level (info); -v and -q raise and lower it.\n");
}

static void print_name(const struct nb_applet *a, void *arg)
{
	(void)arg;
	printf("%s\n", a->name);
}

struct install_ctx {
	const char *dir;
	const char *target;
	int failed;
};

static void install_link(const struct nb_applet *a, void *arg)
{
	struct install_ctx *ctx = arg;
	char path[PATH_MAX];

	if (snprintf(path, sizeof(path), "%s/%s", ctx->dir, a->name) >= (int)sizeof(path)) {
		nb_err("install: path too long: %s/%s", ctx->dir, a->name);
		ctx->failed = 1;
		return;
	}
	if (symlink(ctx->target, path) != 0 && errno != EEXIST) {
		nb_err("install: %s: %s", path, strerror(errno));
		ctx->failed = 1;
	}
}

/* Links every applet name to this binary, so `selftest` runs `nibble selftest`. */
static int install_links(const char *dir)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	struct install_ctx ctx = { .dir = dir, .target = self };

	if (n < 0) {
		nb_err("install: cannot find this binary: %s", strerror(errno));
		return NB_EXIT_FAIL;
	}
	self[n] = '\0';
	nb_applet_foreach(install_link, &ctx);
	return ctx.failed ? NB_EXIT_FAIL : NB_EXIT_OK;
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');
	return slash ? slash + 1 : path;
}

/* NIBBLE_LOG: a bad value is reported, not silently ignored. */
static void log_level_from_env(void)
{
	const char *env = getenv("NIBBLE_LOG");
	int level;

	if (!env)
		return;
	level = nb_log_parse_level(env);
	if (level >= 0)
		nb_log_set_level(level);
	else
		nb_warn("NIBBLE_LOG='%s' is not a log level (error, warn, info, debug or 0..3): "
			"ignored", env);
}

/* A level the build compiled out would print nothing: say so. */
static void check_log_level(void)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	int level = nb_log_get_level();

	if (level > CONFIG_LOG_LEVEL && level <= NB_LOG_DEBUG)
		nb_warn("%s messages are not compiled into this build (CONFIG_LOG_LEVEL is %s)",
			names[level], names[CONFIG_LOG_LEVEL]);
}

int main(int argc, char **argv)
{
	const struct nb_applet *a;

	log_level_from_env();
	a = nb_applet_find(base_name(argc > 0 ? argv[0] : "nibble"));
	if (a) {
		check_log_level();
		return nb_applet_exec(a, argc, argv);
	}

	while (argc > 1 && (strcmp(argv[1], "-v") == 0 || strcmp(argv[1], "-q") == 0)) {
		nb_log_set_level(nb_log_get_level() + (argv[1][1] == 'v' ? 1 : -1));
		argc--;
		argv++;
	}
	check_log_level();
	if (argc < 2) {
		print_usage(stderr);
		return NB_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		print_usage(stdout);
		return NB_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0) {
		nb_version_print(stdout);
		return NB_EXIT_OK;
	}
	if (strcmp(argv[1], "--list") == 0) {
		nb_applet_foreach(print_name, NULL);
		return NB_EXIT_OK;
	}
	if (strcmp(argv[1], "--install") == 0) {
		if (argc != 3) {
			nb_err("--install needs a directory");
			return NB_EXIT_USAGE;
		}
		return install_links(argv[2]);
	}
	a = nb_applet_find(argv[1]);
	if (!a) {
		nb_err("unknown applet '%s' (try `nibble --help`)", argv[1]);
		return NB_EXIT_USAGE;
	}
	return nb_applet_exec(a, argc - 1, argv + 1);
}
