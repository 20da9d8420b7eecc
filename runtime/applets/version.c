#include "runtime/applets/applet.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/version.h"
#include "kernels/cpu.h"
#include "kernels/kernels.h"

#include "generated/features.h"

void nb_version_print(FILE *out)
{
	struct nb_cpu cpu;
	char feat[128];

	nb_cpu_detect(&cpu);
	nb_cpu_describe(&cpu, feat, sizeof(feat));
	fprintf(out, "nibble %s (git %s)\n", nb_version_string(), nb_version_revision());
	fprintf(out, "board:    %s\n", CONFIG_BOARD_NAME);
	fprintf(out, "build:    %s, %s\n", NB_CPU_ARCH_NAME,
		IS_ENABLED(CONFIG_STATIC) ? "static" : "dynamic");
	fprintf(out, "features: %s\n", NB_FEATURES);
	fprintf(out, "cpu:      %s\n", feat);
	fprintf(out, "kernels:  %s\n", nb_kernels_select(&cpu, NULL)->name);
}

static int version_main(int argc, char **argv)
{
	if (nb_getopt("version", argc, argv, "", NULL) != -1)
		return NB_EXIT_USAGE;
	if (optind != argc)
		return nb_usage_error("version", "unexpected argument '%s'", argv[optind]);
	nb_version_print(stdout);
	return NB_EXIT_OK;
}

const struct nb_applet nb_applet_version = {
	.name = "version",
	.summary = "print version, git revision, board and enabled features",
	.usage = "usage: nibble version\n\n"
		 "Prints the version, git revision, board, the Kconfig features built in,\n"
		 "the CPU features detected and the kernel backend chosen for this CPU.\n",
	.main = version_main,
};
