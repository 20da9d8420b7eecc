#include "kernels/kernels.h"

#include <string.h>

static const struct nb_kernels *const nb_backends[] = {
	NB_KERNELS_NEON_I8MM, NB_KERNELS_NEON_DOTPROD, NB_KERNELS_NEON,
	NB_KERNELS_AVX512VNNI, NB_KERNELS_AVX2, &nb_kernels_scalar,
};

#define NB_NBACKENDS (sizeof(nb_backends) / sizeof(nb_backends[0]))

size_t nb_kernels_count(void)
{
	size_t n = 0;
	for (size_t i = 0; i < NB_NBACKENDS; i++)
		n += nb_backends[i] != NULL;
	return n;
}

const struct nb_kernels *nb_kernels_at(size_t i)
{
	for (size_t j = 0; j < NB_NBACKENDS; j++) {
		if (!nb_backends[j])
			continue;
		if (i-- == 0)
			return nb_backends[j];
	}
	return NULL;
}

bool nb_kernels_runs_on(const struct nb_kernels *k, const struct nb_cpu *cpu)
{
	return (k->requires & cpu->features) == k->requires;
}

const struct nb_kernels *nb_kernels_select(const struct nb_cpu *cpu, const char *name)
{
	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		if (name && strcmp(name, k->name) != 0)
			continue;
		if (nb_kernels_runs_on(k, cpu))
			return k;
		if (name)
			return NULL;
	}
	return name ? NULL : &nb_kernels_scalar;
}
