#include "runtime/applets/applet.h"
#include "runtime/base/kconfig.h"

#include <string.h>

/* The enabled applets of applets.def, in its order, then NULL. This is the
 * one object compiled with the applet symbols (the Makefile hides them from
 * every other one), so a configuration that only changes which applets are
 * in recompiles this file and links. */
#define NB_APPLET(name, symbol) NB_IF_ENABLED(CONFIG_APPLET_##symbol, &nb_applet_##name,)
static const struct nb_applet *const nb_applets[] = {
#include "runtime/applets/applets.def"
	NULL
};
#undef NB_APPLET

const struct nb_applet *nb_applet_find(const char *name)
{
	for (const struct nb_applet *const *a = nb_applets; *a; a++)
		if (strcmp((*a)->name, name) == 0)
			return *a;
	return NULL;
}

void nb_applet_foreach(void (*fn)(const struct nb_applet *a, void *arg), void *arg)
{
	for (const struct nb_applet *const *a = nb_applets; *a; a++)
		fn(*a, arg);
}

int nb_applet_exec(const struct nb_applet *a, int argc, char **argv)
{
	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		printf("%s", a->usage);
		return NB_EXIT_OK;
	}
	return a->main(argc, argv);
}
