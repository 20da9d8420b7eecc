/* Every kernel backend against the scalar reference, and the dispatch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/check.h"
#include "kernels/kernels.h"
#include "runtime/err.h"

#include <stdlib.h>
#include <string.h>

static void test_every_runnable_backend_equals_scalar(void **state)
{
	struct nb_cpu cpu;
	(void)state;

	nb_cpu_detect(&cpu);
	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		struct nb_check_result r;

		if (!nb_kernels_runs_on(k, &cpu))
			continue;
		for (uint64_t seed = 1; seed <= 3; seed++) {
			int ret = nb_check_backend(k, seed, &r);
			if (ret != 0)
				fail_msg("%s: %s", k->name, r.first);
			assert_true(r.cases > 10000);
		}
	}
}

static void test_scalar_reference_values(void **state)
{
	int8_t a[NB_KERNEL_MAX_K], b[4] = { -128, 127, 3, -5 };
	int8_t c[4] = { -128, -128, 2, 7 };
	(void)state;

	assert_int_equal(nb_kernels_scalar.dot_i8(b, c, 0), 0);
	assert_int_equal(nb_kernels_scalar.dot_i8(b, c, 4), 16384 - 16256 + 6 - 35);
	/* The largest sum the k limit allows must not overflow. */
	memset(a, -128, sizeof(a));
	assert_int_equal(nb_kernels_scalar.dot_i8(a, a, NB_KERNEL_MAX_K), 1 << 30);
}

static void test_mm_layout(void **state)
{
	/* a: 2x3, b: 3 weight rows of 3: c[i][j] = dot(a_i, b_j). */
	const int8_t a[6] = { 1, 2, 3, 4, 5, 6 };
	const int8_t b[9] = { 1, 0, 0, 0, 1, 0, 1, 1, 1 };
	const int32_t want[6] = { 1, 2, 6, 4, 5, 15 };
	int32_t c[6];
	(void)state;

	nb_kernels_scalar.mm_i8(c, a, b, 2, 3, 3);
	assert_memory_equal(c, want, sizeof(want));
}

static void test_select_falls_back_to_scalar(void **state)
{
	struct nb_cpu bare = { .features = 0, .ncpus = 1 };
	(void)state;

	assert_ptr_equal(nb_kernels_select(&bare, NULL), &nb_kernels_scalar);
	assert_ptr_equal(nb_kernels_select(&bare, "scalar"), &nb_kernels_scalar);
	assert_null(nb_kernels_select(&bare, "no-such-backend"));
	if (nb_kernels_count() > 1)
		assert_null(nb_kernels_select(&bare, nb_kernels_at(0)->name));
}

static void test_select_prefers_best_supported(void **state)
{
	struct nb_cpu all = { .features = ~0u, .ncpus = 1 };
	(void)state;

	assert_ptr_equal(nb_kernels_select(&all, NULL), nb_kernels_at(0));
	assert_ptr_equal(nb_kernels_at(nb_kernels_count() - 1), &nb_kernels_scalar);
	assert_null(nb_kernels_at(nb_kernels_count()));
}

static void test_cpu_describe(void **state)
{
	struct nb_cpu cpu = { .features = NB_CPU_AVX2 | NB_CPU_I8MM, .ncpus = 4 };
	char buf[128], tiny[8];
	(void)state;

	nb_cpu_describe(&cpu, buf, sizeof(buf));
	assert_non_null(strstr(buf, " avx2"));
	assert_non_null(strstr(buf, " i8mm"));
	assert_null(strstr(buf, "dotprod"));
	assert_non_null(strstr(buf, "4 cpus"));
	nb_cpu_describe(&cpu, tiny, sizeof(tiny));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_runnable_backend_equals_scalar),
		cmocka_unit_test(test_scalar_reference_values),
		cmocka_unit_test(test_mm_layout),
		cmocka_unit_test(test_select_falls_back_to_scalar),
		cmocka_unit_test(test_select_prefers_best_supported),
		cmocka_unit_test(test_cpu_describe),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
