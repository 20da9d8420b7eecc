/* Compares a kernel backend with the scalar reference on random and
 * extreme inputs. Used by `nibble selftest` on the target and by the unit
 * tests; a mismatch of a single value fails the check. */
#ifndef NB_CHECK_H
#define NB_CHECK_H

#include "kernels/kernels.h"

struct nb_check_result {
	unsigned cases;      /* kernel calls compared */
	unsigned mismatches; /* calls whose output differed */
	char first[160];     /* description of the first mismatch */
};

/* 0 if every output equals the reference, else -NB_ESELFTEST. */
int nb_check_backend(const struct nb_kernels *k, uint64_t seed, struct nb_check_result *r);

/* splitmix64: a tiny seeded generator, so every check is reproducible. */
struct nb_rng {
	uint64_t state;
};

static inline uint64_t nb_rng_next(struct nb_rng *r)
{
	uint64_t z = (r->state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

#endif
