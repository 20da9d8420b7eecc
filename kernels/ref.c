/* Scalar reference kernels: the specification of every other backend. */
#include "kernels/kernels.h"

static int32_t dot_i8_ref(const int8_t *a, const int8_t *b, size_t n)
{
	int32_t sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += (int32_t)a[i] * (int32_t)b[i];
	return sum;
}

static void mm_i8_ref(int32_t *c, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k)
{
	nb_mm_i8_by_dot(dot_i8_ref, c, a, b, m, n, k);
}

const struct nb_kernels nb_kernels_scalar = {
	.name = "scalar",
	.requires = 0,
	.dot_i8 = dot_i8_ref,
	.mm_i8 = mm_i8_ref,
};
