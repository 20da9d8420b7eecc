/* The families the runtime knows, one descriptor each. */
#include "firmware/arch.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const struct nb_arch_desc archs[] = {
	{ .arch = NB_ARCH_LLAMA, .name = "llama", .activation = NB_ACT_SILU },
};

#define N_ARCHS (sizeof(archs) / sizeof(archs[0]))

const struct nb_arch_desc *nb_arch_get(uint32_t arch)
{
	for (size_t i = 0; i < N_ARCHS; i++)
		if (archs[i].arch == arch)
			return &archs[i];
	return NULL;
}

const struct nb_arch_desc *nb_arch_find(const char *name, size_t len)
{
	for (size_t i = 0; i < N_ARCHS; i++)
		if (strlen(archs[i].name) == len && memcmp(archs[i].name, name, len) == 0)
			return &archs[i];
	return NULL;
}

void nb_arch_list(char *buf, size_t cap)
{
	size_t used = 0;

	if (cap)
		buf[0] = '\0';
	for (size_t i = 0; i < N_ARCHS && used < cap; i++) {
		int n = snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", archs[i].name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

void nb_arch_apply(const struct nb_arch_desc *d, struct nb_hparams *hp)
{
	hp->arch = d->arch;
	hp->features = d->features;
	hp->activation = d->activation;
	hp->norm_offset = d->norm_offset;
	hp->embed_scale = d->embed_scale_sqrt_dim ? sqrtf((float)hp->dim) : 0.0f;
}
