/* Multi-call dispatch, busybox style: `nibble <applet> ...` or a link named
 * after the applet. Each applet file defines one struct nb_applet; which
 * ones exist is decided by Kconfig (the NULL stubs below). */
#ifndef NB_APPLET_H
#define NB_APPLET_H

#include "runtime/base/args.h"
#include "runtime/base/kconfig.h"

#include <stdio.h>

struct nb_applet {
	const char *name;
	const char *summary; /* one line for `nibble --help` */
	const char *usage;   /* full text for `nibble <applet> --help` */
	/* Returns the exit status: 0 ok, 1 failure, 2 usage error. */
	int (*main)(int argc, char **argv);
};

#define NB_EXIT_OK 0
#define NB_EXIT_FAIL 1
#define NB_EXIT_USAGE 2

#if IS_ENABLED(CONFIG_APPLET_VERSION)
extern const struct nb_applet nb_applet_version;
#define NB_APPLET_VERSION (&nb_applet_version)
#else
#define NB_APPLET_VERSION NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_SELFTEST)
extern const struct nb_applet nb_applet_selftest;
#define NB_APPLET_SELFTEST (&nb_applet_selftest)
#else
#define NB_APPLET_SELFTEST NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_SHA256)
extern const struct nb_applet nb_applet_sha256;
#define NB_APPLET_SHA256 (&nb_applet_sha256)
#else
#define NB_APPLET_SHA256 NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_RUN)
extern const struct nb_applet nb_applet_run;
#define NB_APPLET_RUN (&nb_applet_run)
#else
#define NB_APPLET_RUN NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_INSPECT)
extern const struct nb_applet nb_applet_inspect;
#define NB_APPLET_INSPECT (&nb_applet_inspect)
#else
#define NB_APPLET_INSPECT NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_BENCH)
extern const struct nb_applet nb_applet_bench;
#define NB_APPLET_BENCH (&nb_applet_bench)
#else
#define NB_APPLET_BENCH NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_CONVERT)
extern const struct nb_applet nb_applet_convert;
#define NB_APPLET_CONVERT (&nb_applet_convert)
#else
#define NB_APPLET_CONVERT NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_PERPLEXITY)
extern const struct nb_applet nb_applet_perplexity;
#define NB_APPLET_PERPLEXITY (&nb_applet_perplexity)
#else
#define NB_APPLET_PERPLEXITY NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_QUANTIZE)
extern const struct nb_applet nb_applet_quantize;
#define NB_APPLET_QUANTIZE (&nb_applet_quantize)
#else
#define NB_APPLET_QUANTIZE NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_SERVE)
extern const struct nb_applet nb_applet_serve;
#define NB_APPLET_SERVE (&nb_applet_serve)
#else
#define NB_APPLET_SERVE NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_CHAT)
extern const struct nb_applet nb_applet_chat;
#define NB_APPLET_CHAT (&nb_applet_chat)
#else
#define NB_APPLET_CHAT NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_KEYGEN)
extern const struct nb_applet nb_applet_keygen;
#define NB_APPLET_KEYGEN (&nb_applet_keygen)
#else
#define NB_APPLET_KEYGEN NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_SIGN)
extern const struct nb_applet nb_applet_sign;
#define NB_APPLET_SIGN (&nb_applet_sign)
#else
#define NB_APPLET_SIGN NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_VERIFY)
extern const struct nb_applet nb_applet_verify;
#define NB_APPLET_VERIFY (&nb_applet_verify)
#else
#define NB_APPLET_VERIFY NULL
#endif

#if IS_ENABLED(CONFIG_APPLET_UPDATE)
extern const struct nb_applet nb_applet_update;
#define NB_APPLET_UPDATE (&nb_applet_update)
#else
#define NB_APPLET_UPDATE NULL
#endif

/* NULL if no applet of that name is built in. */
const struct nb_applet *nb_applet_find(const char *name);
/* Calls fn for every built-in applet, in alphabetical order. */
void nb_applet_foreach(void (*fn)(const struct nb_applet *a, void *arg), void *arg);
/* Runs an applet; argv[0] is the applet name. Handles --help itself. */
int nb_applet_exec(const struct nb_applet *a, int argc, char **argv);

/* From version.c: the version block of `nibble --version`. */
void nb_version_print(FILE *out);
const char *nb_version_string(void);

#endif
