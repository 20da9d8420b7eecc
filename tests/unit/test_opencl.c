/* The OpenCL device layer (kernels/opencl.c) on whatever device the ICD
 * loader finds (pocl's CPU device in make test): a program that does not
 * build and a device that is not there are errors with a reason, a failed
 * enqueue is an error that leaves the output alone, and products of odd
 * shapes, split at any quad, equal the scalar reference bit for bit. Built
 * only in the OpenCL variant (x86_64_opencl_defconfig). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/check.h"
#include "runtime/base/err.h"

#if IS_ENABLED(CONFIG_BACKEND_OPENCL)
#include "kernels/opencl.h"

#include <stdlib.h>
#include <string.h>

static struct nb_ocl dev;
static int dev_ret;

static int open_device(void **state)
{
	(void)state;
	dev_ret = nb_ocl_open(&dev, 0, nb_ocl_source);
	return 0;
}

static int close_device(void **state)
{
	(void)state;
	if (dev_ret == 0)
		nb_ocl_close(&dev);
	return 0;
}

/* pocl is installed with the tests (tools/build/deps.sh): no device here is
 * a failure, not a skip. */
static void need_device(void)
{
	assert_int_equal(dev_ret, 0);
}

static void test_a_program_that_does_not_build_is_an_error(void **state)
{
	struct nb_ocl o;
	(void)state;

	need_device();
	assert_int_equal(nb_ocl_open(&o, 0, "__kernel void nb_mm_q(void) { not OpenCL C; }"), -NB_EFORMAT);
	assert_int_equal(nb_ocl_open(&o, 0, "__kernel void other(void) { }"), -NB_EFORMAT);
}

static void test_a_missing_device_is_an_error(void **state)
{
	struct nb_ocl o;
	(void)state;

	need_device();
	assert_int_equal(nb_ocl_open(&o, 4096, nb_ocl_source), -NB_ENOENT);
}

/* A kernel of the right name that takes other arguments: setting them
 * fails, the product reports it and has written nothing. */
static void test_a_failed_enqueue_is_an_error_and_writes_nothing(void **state)
{
	struct nb_ocl o;
	struct nb_qact a;
	const uint32_t rows = 8, cols = 32, type = NB_QTYPE_Q4_G32;
	uint64_t bytes = 0;
	uint8_t *w;
	float out[8];
	(void)state;

	need_device();
	assert_int_equal(nb_ocl_open(&o, 0, "__kernel void nb_mm_q(__global float *o) { o[0] = 1; }"), 0);
	assert_int_equal(nb_qtensor_bytes(type, rows, cols, &bytes), 0);
	w = calloc(1, bytes);
	assert_non_null(w);
	assert_int_equal(nb_qact_alloc(&a, 1, cols, 32, 0), 0);
	float x[32] = { 1.0f };
	nb_quant_act(&a, x, 1, cols);
	memset(out, 0x5a, sizeof(out));
	assert_int_equal(nb_ocl_mm_q(&o, out, rows, &a, type, w, rows, 0, rows), -NB_EIO);
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(((uint8_t *)out)[i], 0x5a);
	nb_qact_free(&a);
	free(w);
	nb_ocl_close(&o);
}

/* One product of type on the device, in two calls split at quad mid,
 * into rows of ldo > rows, against nb_mm_q_ref. */
static void check_product(uint32_t type, uint32_t rows, uint32_t cols, uint32_t m, uint64_t mid,
			  struct nb_rng *rng)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const uint32_t ng = (cols + qi->group - 1) / qi->group, ldo = rows + 3;
	const int lo = qi->bits == 8 ? -127 : qi->zero_point ? 0 : -8;
	const int span = qi->bits == 8 ? 255 : 16;
	int8_t *q = malloc((size_t)rows * cols);
	uint8_t *z = malloc((size_t)rows * ng);
	float *d = malloc((size_t)rows * ng * sizeof(float)), *x = malloc((size_t)m * cols * 4);
	float *want = calloc((size_t)m * ldo, 4), *got = calloc((size_t)m * ldo, 4);
	uint64_t bytes = 0;
	void *w;
	struct nb_qact a;

	assert_int_equal(nb_qtensor_bytes(type, rows, cols, &bytes), 0);
	w = malloc(bytes);
	assert_true(q && z && d && x && want && got && w);
	for (size_t i = 0; i < (size_t)rows * cols; i++)
		q[i] = (int8_t)(lo + (int)(nb_rng_next(rng) % (uint64_t)span));
	for (size_t i = 0; i < (size_t)rows * ng; i++) {
		z[i] = (uint8_t)(nb_rng_next(rng) % 16);
		d[i] = (float)(nb_rng_next(rng) % 1000 + 1) * 1e-4f;
	}
	for (size_t i = 0; i < (size_t)m * cols; i++)
		x[i] = (float)((int64_t)(nb_rng_next(rng) % 20001) - 10000) * 1e-3f;
	assert_int_equal(nb_quant_pack(type, rows, cols, q, d, z, w), 0);
	assert_int_equal(nb_qact_alloc(&a, m, cols, qi->group, 0), 0);
	nb_quant_act(&a, x, m, cols);
	nb_mm_q_ref(want, ldo, &a, type, w, rows, 0, rows);
	assert_int_equal(nb_ocl_mm_q(&dev, got, ldo, &a, type, w, rows, 0, mid), 0);
	assert_int_equal(nb_ocl_mm_q(&dev, got, ldo, &a, type, w, rows, mid, rows), 0);
	assert_memory_equal(got, want, (size_t)m * ldo * sizeof(float));
	nb_qact_free(&a);
	free(q);
	free(z);
	free(d);
	free(x);
	free(want);
	free(got);
	free(w);
}

static void test_odd_shapes_equal_the_reference(void **state)
{
	static const uint32_t shapes[][4] = { /* rows, cols, m, split */
		{ 1, 32, 1, 0 }, { 3, 33, 2, 0 }, { 7, 200, 3, 4 }, { 13, 300, 17, 8 }, { 64, 1000, 5, 36 },
	};
	struct nb_rng rng = { 16 };
	(void)state;

	need_device();
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++)
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
			check_product(t, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], &rng);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_program_that_does_not_build_is_an_error),
		cmocka_unit_test(test_a_missing_device_is_an_error),
		cmocka_unit_test(test_a_failed_enqueue_is_an_error_and_writes_nothing),
		cmocka_unit_test(test_odd_shapes_equal_the_reference),
	};
	return cmocka_run_group_tests(tests, open_device, close_device);
}

#else
#error "test_opencl is built only with CONFIG_BACKEND_OPENCL (the Makefile leaves it out)"
#endif
