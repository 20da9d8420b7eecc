#include "kernels/check.h"
#include "runtime/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum fill { FILL_RANDOM, FILL_MIN, FILL_MAX, FILL_ALTERNATE, FILL_COUNT };

/* Sizes around every vector width and unroll step, plus the k limit. */
static const size_t check_sizes[] = { 0,  1,  2,  3,   7,   8,   9,   15,   16,   17,  31,
				      32, 33, 47, 63,  64,  65,  127, 128,  129,  172, 255,
				      256, 257, 1000, 4103, NB_KERNEL_MAX_K };
static const size_t check_rows[] = { 1, 2, 3, 4, 5, 8 };

static void fill(int8_t *v, size_t n, enum fill how, struct nb_rng *rng)
{
	for (size_t i = 0; i < n; i++) {
		switch (how) {
		case FILL_MIN:
			v[i] = -128;
			break;
		case FILL_MAX:
			v[i] = 127;
			break;
		case FILL_ALTERNATE:
			v[i] = (i & 1) ? 127 : -128;
			break;
		default:
			v[i] = (int8_t)(nb_rng_next(rng) & 0xff);
		}
	}
}

static void note_mismatch(struct nb_check_result *r, const char *what, size_t m, size_t n,
			  size_t k, int32_t got, int32_t want)
{
	if (r->mismatches++ == 0)
		snprintf(r->first, sizeof(r->first), "%s m=%zu n=%zu k=%zu: got %d, want %d", what,
			 m, n, k, got, want);
}

static void check_dot(const struct nb_kernels *kern, const int8_t *a, const int8_t *b, size_t k,
		      struct nb_check_result *r)
{
	int32_t want = nb_kernels_scalar.dot_i8(a, b, k);
	int32_t got = kern->dot_i8(a, b, k);

	r->cases++;
	if (got != want)
		note_mismatch(r, "dot_i8", 1, 1, k, got, want);
}

static void check_mm(const struct nb_kernels *kern, const int8_t *a, const int8_t *b, size_t m,
		     size_t n, size_t k, int32_t *want, int32_t *got, struct nb_check_result *r)
{
	nb_kernels_scalar.mm_i8(want, a, b, m, n, k);
	memset(got, 0x5a, m * n * sizeof(*got));
	kern->mm_i8(got, a, b, m, n, k);
	r->cases++;
	for (size_t i = 0; i < m * n; i++) {
		if (got[i] != want[i]) {
			note_mismatch(r, "mm_i8", m, n, k, got[i], want[i]);
			return;
		}
	}
}

int nb_check_backend(const struct nb_kernels *k, uint64_t seed, struct nb_check_result *r)
{
	const size_t max_rows = 8, max_k = NB_KERNEL_MAX_K;
	struct nb_rng rng = { seed };
	int8_t *a = malloc(max_rows * max_k), *b = malloc(max_rows * max_k);
	int32_t *want = malloc(max_rows * max_rows * sizeof(int32_t));
	int32_t *got = malloc(max_rows * max_rows * sizeof(int32_t));
	int ret = -NB_ENOMEM;

	memset(r, 0, sizeof(*r));
	if (!a || !b || !want || !got)
		goto out;
	for (size_t s = 0; s < sizeof(check_sizes) / sizeof(check_sizes[0]); s++) {
		size_t kk = check_sizes[s];
		for (int fa = 0; fa < FILL_COUNT; fa++) {
			fill(a, max_rows * kk, (enum fill)fa, &rng);
			for (int fb = 0; fb < FILL_COUNT; fb++) {
				fill(b, max_rows * kk, (enum fill)fb, &rng);
				check_dot(k, a, b, kk, r);
				/* Tile shapes on the smaller sizes keep the check quick. */
				if (kk > 4103)
					continue;
				for (size_t mi = 0; mi < sizeof(check_rows) / sizeof(check_rows[0]); mi++)
					for (size_t ni = 0; ni < sizeof(check_rows) / sizeof(check_rows[0]); ni++)
						check_mm(k, a, b, check_rows[mi], check_rows[ni], kk, want,
							 got, r);
			}
		}
	}
	ret = r->mismatches ? -NB_ESELFTEST : 0;
out:
	free(a);
	free(b);
	free(want);
	free(got);
	return ret;
}
