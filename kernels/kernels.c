#include "kernels/kernels.h"

#include <string.h>

/* Every backend's table (each defined in its own file, built when its
 * option is on): a new backend is one name here and its entry below. */
extern const struct nb_kernels nb_kernels_avx2, nb_kernels_avx512vnni, nb_kernels_neon,
	nb_kernels_neon_dotprod, nb_kernels_neon_i8mm, nb_kernels_opencl;

/* Those built in, best first, the scalar reference last. */
static const struct nb_kernels *const nb_backends[] = {
#if IS_ENABLED(CONFIG_BACKEND_OPENCL)
	&nb_kernels_opencl, /* a device, where there is one; else the next */
#endif
#if IS_ENABLED(CONFIG_KERNEL_NEON_I8MM)
	&nb_kernels_neon_i8mm,
#endif
#if IS_ENABLED(CONFIG_KERNEL_NEON_DOTPROD)
	&nb_kernels_neon_dotprod,
#endif
#if IS_ENABLED(CONFIG_KERNEL_NEON)
	&nb_kernels_neon,
#endif
#if IS_ENABLED(CONFIG_KERNEL_AVX512VNNI)
	&nb_kernels_avx512vnni,
#endif
#if IS_ENABLED(CONFIG_KERNEL_AVX2)
	&nb_kernels_avx2,
#endif
	&nb_kernels_scalar,
};

size_t nb_kernels_count(void)
{
	return sizeof(nb_backends) / sizeof(nb_backends[0]);
}

const struct nb_kernels *nb_kernels_at(size_t i)
{
	return i < nb_kernels_count() ? nb_backends[i] : NULL;
}

bool nb_kernels_runs_on(const struct nb_kernels *k, const struct nb_cpu *cpu)
{
	return (k->requires & cpu->features) == k->requires && (!k->available || k->available());
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
