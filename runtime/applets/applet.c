#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Alphabetical: --help lists them in this order. */
static const struct nb_applet *const nb_applets[] = {
	NB_APPLET_BENCH,
	NB_APPLET_CHAT,
	NB_APPLET_CONVERT,
	NB_APPLET_INSPECT,
	NB_APPLET_KEYGEN,
	NB_APPLET_PERPLEXITY,
	NB_APPLET_QUANTIZE,
	NB_APPLET_RUN,
	NB_APPLET_SELFTEST,
	NB_APPLET_SERVE,
	NB_APPLET_SHA256,
	NB_APPLET_SIGN,
	NB_APPLET_UPDATE,
	NB_APPLET_VERIFY,
	NB_APPLET_VERSION,
};

const struct nb_applet *nb_applet_find(const char *name)
{
	for (size_t i = 0; i < sizeof(nb_applets) / sizeof(nb_applets[0]); i++)
		if (nb_applets[i] && strcmp(nb_applets[i]->name, name) == 0)
			return nb_applets[i];
	return NULL;
}

void nb_applet_foreach(void (*fn)(const struct nb_applet *a, void *arg), void *arg)
{
	for (size_t i = 0; i < sizeof(nb_applets) / sizeof(nb_applets[0]); i++)
		if (nb_applets[i])
			fn(nb_applets[i], arg);
}

int nb_applet_exec(const struct nb_applet *a, int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s", a->usage);
		return NB_EXIT_OK;
	}
	return a->main(argc, argv);
}
