/* Multi-call dispatch, busybox style: `nibble <applet> ...` or a link named
 * after the applet. Each applet file defines one struct nb_applet; the list
 * of them is runtime/applets/applets.def, and Kconfig decides which ones are
 * built in. */
#ifndef NB_APPLET_H
#define NB_APPLET_H

#include "runtime/base/args.h"

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

/* nb_applet_bench, nb_applet_chat, ...: one per line of applets.def. */
#define NB_APPLET(name, symbol) extern const struct nb_applet nb_applet_##name;
#include "runtime/applets/applets.def"
#undef NB_APPLET

/* NULL if no applet of that name is built in. */
const struct nb_applet *nb_applet_find(const char *name);
/* Calls fn for every built-in applet, in alphabetical order. */
void nb_applet_foreach(void (*fn)(const struct nb_applet *a, void *arg), void *arg);
/* Runs an applet; argv[0] is the applet name. Handles --help itself. */
int nb_applet_exec(const struct nb_applet *a, int argc, char **argv);

/* From version.c: the version block of `nibble --version` and `nibble version`. */
void nb_version_print(FILE *out);

#endif
