/* Every kernel backend against the scalar reference, and the dispatch. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/check.h"
#include "kernels/kernels.h"
#include "runtime/base/err.h"

#include <stdlib.h>
#include <math.h>
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
			assert_true(r.cases > 2500);
		}
	}
}

/* A quantized product through the dispatcher, against the reference. */
static void mm_q_case(const struct nb_kernels *k, uint32_t type, uint32_t rows, uint32_t cols,
		      uint32_t m, uint64_t seed)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	struct nb_rng rng = { seed };
	float *w = malloc((size_t)rows * cols * sizeof(float));
	float *x = malloc((size_t)m * cols * sizeof(float));
	float *want = malloc((size_t)m * rows * sizeof(float));
	float *got = malloc((size_t)m * rows * sizeof(float));
	uint64_t bytes;
	void *packed;
	struct nb_qact a;

	assert_int_equal(nb_qtensor_bytes(type, rows, cols, &bytes), 0);
	packed = malloc(bytes);
	assert_true(w && x && want && got && packed);
	for (size_t i = 0; i < (size_t)rows * cols; i++)
		w[i] = (float)((int64_t)(nb_rng_next(&rng) % 20001) - 10000) / 7000.0f;
	for (size_t i = 0; i < (size_t)m * cols; i++)
		x[i] = (float)((int64_t)(nb_rng_next(&rng) % 20001) - 10000) / 3000.0f;
	assert_int_equal(nb_quantize_rtn(type, w, rows, cols, packed), 0);
	assert_int_equal(nb_qact_alloc(&a, m, cols, qi->group, k->act_flags), 0);
	nb_quant_act(&a, x, m, cols);
	nb_mm_q_ref(want, rows, &a, type, packed, rows, 0, rows);
	memset(got, 0x7f, (size_t)m * rows * sizeof(float));
	nb_kernels_mm_q(k, got, rows, &a, type, packed, rows, 0, rows);
	if (memcmp(got, want, (size_t)m * rows * sizeof(float)) != 0)
		fail_msg("%s %s: differs from the reference", k->name, qi->name);
	nb_qact_free(&a);
	free(w);
	free(x);
	free(want);
	free(got);
	free(packed);
}

/* A backend without a kernel of its own for a type (a NULL entry) runs the
 * scalar reference for it: the scalar backend has none at all, and a copy
 * of the best backend with every other entry cleared passes the whole
 * check, its remaining kernels and the fallbacks side by side. */
static void test_null_entry_falls_back_to_reference(void **state)
{
	struct nb_kernels partial = *nb_kernels_at(0);
	struct nb_check_result r;
	(void)state;

	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++) {
		assert_null(nb_kernels_scalar.mm_q[t - NB_QTYPE_MIN]);
		mm_q_case(&nb_kernels_scalar, t, 9, 300, 3, t);
	}
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t += 2)
		partial.mm_q[t - NB_QTYPE_MIN] = NULL;
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++)
		mm_q_case(&partial, t, 17, 172, 5, t);
	if (nb_check_backend(&partial, 4, &r) != 0)
		fail_msg("%s with NULL entries: %s", partial.name, r.first);
}

/* Every SIMD backend built in has a kernel of its own for every type: a
 * type added to kernels/quant.h's list is not silently left to the
 * scalar reference. */
static void test_simd_backends_cover_every_type(void **state)
{
	(void)state;
	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		if (k == &nb_kernels_scalar)
			continue;
		for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++)
			if (!k->mm_q[t - NB_QTYPE_MIN])
				fail_msg("%s has no %s kernel", k->name, nb_qinfo(t)->name);
	}
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

/* The reference quantized matmul computes sum_k w[r][k] a[i][k] of the
 * dequantized weights and activations: checked against double precision. */
static void test_mm_q_semantics(void **state)
{
	enum { ROWS = 9, COLS = 300, M = 3 };
	struct nb_rng rng = { 7 };
	float w[ROWS * COLS], x[M * COLS], wr[COLS], out[M * ROWS];
	uint8_t packed[ROWS * COLS * 2];
	struct nb_qact a;
	(void)state;

	for (size_t i = 0; i < ROWS * COLS; i++)
		w[i] = (float)((int64_t)(nb_rng_next(&rng) % 20001) - 10000) / 7000.0f;
	for (size_t i = 0; i < M * COLS; i++)
		x[i] = (float)((int64_t)(nb_rng_next(&rng) % 20001) - 10000) / 3000.0f;
	for (uint32_t t = NB_QTYPE_MIN; t <= NB_QTYPE_MAX; t++) {
		const struct nb_qinfo *qi = nb_qinfo(t);
		uint64_t bytes;
		assert_int_equal(nb_qtensor_bytes(t, ROWS, COLS, &bytes), 0);
		assert_true(bytes <= sizeof(packed));
		assert_int_equal(nb_quantize_rtn(t, w, ROWS, COLS, packed), 0);
		assert_int_equal(nb_qact_alloc(&a, M, COLS, qi->group, NB_QACT_INTERLEAVED), 0);
		nb_quant_act(&a, x, M, COLS);
		nb_mm_q_ref(out, ROWS, &a, t, packed, ROWS, 0, ROWS);
		for (uint32_t r = 0; r < ROWS; r++) {
			nb_quant_dequant_row(t, packed, COLS, r, wr);
			for (uint32_t i = 0; i < M; i++) {
				double want = 0, mag = 0;
				for (uint32_t k = 0; k < COLS; k++) {
					double av = (double)a.d[i * (a.kp / qi->group) + k / qi->group] *
						    a.q[i * a.kp + k];
					want += (double)wr[k] * av;
					mag += fabs((double)wr[k] * av);
				}
				if (fabs(out[i * ROWS + r] - want) > 1e-5 * mag + 1e-6)
					fail_msg("%s r=%u i=%u: %g vs %g", qi->name, r, i,
						 (double)out[i * ROWS + r], want);
			}
		}
		nb_qact_free(&a);
	}
}

/* Activation quantization: per block scale max|x|/127, levels within
 * -127..127, zero blocks stay zero, and the block sums are right. */
static void test_quant_act(void **state)
{
	const float x[40] = { 1.0f, -2.0f, 0.5f, 127.0f, -127.0f, 3.3f, [32] = 0.0f };
	struct nb_qact a;
	int32_t sum = 0;
	(void)state;

	assert_int_equal(nb_qact_alloc(&a, 1, 40, 32, 0), 0);
	nb_quant_act(&a, x, 1, 40);
	assert_int_equal(a.kp, 64);
	assert_true(a.d[0] == 127.0f / 127.0f);
	assert_int_equal(a.q[3], 127);
	assert_int_equal(a.q[4], -127);
	assert_int_equal(a.q[1], -2);
	assert_int_equal(a.q[2], 1); /* 0.5 rounds half away from zero */
	for (int j = 0; j < 32; j++)
		sum += a.q[j];
	assert_int_equal(a.sum[0], sum);
	assert_true(a.d[1] == 0.0f);
	for (int j = 32; j < 64; j++)
		assert_int_equal(a.q[j], 0);
	nb_qact_free(&a);
}

/* The specification of activation quantization, one element at a time:
 * d = max|x| / 127, q = x / d rounded half away from zero as (int)(|y| +
 * 0.5f) with the sign of y, clamped to -127..127. */
static void quant_block_spec(const float *x, uint32_t n, uint32_t G, int8_t *q, float *d,
			     int32_t *sum)
{
	float amax = 0;

	*sum = 0;
	for (uint32_t j = 0; j < n; j++)
		amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
	*d = amax / 127.0f;
	for (uint32_t j = 0; j < G; j++) {
		int32_t v = 0;
		if (j < n && *d > 0) {
			float y = x[j] / *d;
			v = y >= 0 ? (int32_t)(y + 0.5f) : -(int32_t)(-y + 0.5f);
			v = v > 127 ? 127 : v < -127 ? -127 : v;
		}
		q[j] = (int8_t)v;
		*sum += v;
	}
}

/* Every block of random rows, with ties, near-ties, zeros, -0 and huge and
 * tiny magnitudes, whole and tail blocks, equals the element-wise spec
 * (the whole blocks run four lanes at a time). */
static void test_quant_act_equals_spec(void **state)
{
	enum { M = 3, K = 300, G = 32 };
	static float x[M * K];
	const float specials[] = { 0.5f, -0.5f, 0.49999997f, -0.49999997f, 1.5f, -2.5f, 0.0f,
				   -0.0f, 126.5f, -126.5f, 1e-30f, 3e38f, -3e38f };
	uint64_t rng = 12345;
	struct nb_qact a;
	(void)state;

	for (size_t i = 0; i < M * K; i++) {
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		float r = (float)((int64_t)(rng >> 33) - (1ll << 30)) / (1ll << 30);
		x[i] = (rng >> 20) % 7 == 0 ? specials[(rng >> 8) % 13] : r * (float)(1u << ((rng >> 40) % 12));
	}
	for (int j = 0; j < G; j++) /* a block whose scale is exactly 1: ties land on .5 */
		x[K + j] = (float)(j * 4 - 63) + (j % 2 ? 0.5f : 0.0f);
	x[K] = 127.0f;
	assert_int_equal(nb_qact_alloc(&a, M, K, G, NB_QACT_INTERLEAVED), 0);
	nb_quant_act(&a, x, M, K);
	for (uint32_t i = 0; i < M; i++)
		for (uint32_t g = 0; g < a.kp / G; g++) {
			int8_t q[G];
			float d;
			int32_t sum;
			uint32_t n = K - g * G < G ? K - g * G : G;
			size_t b = (size_t)i * (a.kp / G) + g;

			quant_block_spec(x + (size_t)i * K + g * G, n, G, q, &d, &sum);
			assert_memory_equal(&a.d[b], &d, sizeof(d));
			assert_int_equal(a.sum[b], sum);
			assert_memory_equal(a.q + (size_t)i * a.kp + g * G, q, G);
		}
	/* the interleaved copy holds the same levels, where quant.h says */
	assert_non_null(a.qx);
	for (uint32_t i = 0; i < M; i++)
		for (uint32_t j = 0; j < a.kp / G / 4 * 4 * G; j++)
			assert_int_equal(a.qx[(size_t)i * a.kp + nb_qact_x_offset(j)],
					 a.q[(size_t)i * a.kp + j]);
	nb_qact_free(&a);
}

/* f16 conversion: exact round trips, round-to-nearest-even, subnormals. */
/* Attention in double precision: what the kernel approximates. */
static void attend_double(double *out, const float *q, const float *k, const float *v, uint32_t hd,
			  uint32_t n, double scale)
{
	double s[64], m = -INFINITY, sum = 0;

	for (uint32_t t = 0; t < n; t++) {
		s[t] = 0;
		for (uint32_t i = 0; i < hd; i++)
			s[t] += (double)q[i] * k[t * hd + i];
		s[t] *= scale;
		m = s[t] > m ? s[t] : m;
	}
	for (uint32_t t = 0; t < n; t++)
		sum += (s[t] = exp(s[t] - m));
	for (uint32_t i = 0; i < hd; i++) {
		out[i] = 0;
		for (uint32_t t = 0; t < n; t++)
			out[i] += s[t] / sum * v[t * hd + i];
	}
}

/* The scalar attend is attention (against double precision), and its two
 * paths agree bit for bit: four heads at once as four single heads, for
 * the head sizes of the models (8: stories260K, 64: TinyLlama, 128). */
static void test_attend_spec(void **state)
{
	static const uint32_t hds[] = { 8, 64, 128 }, ns[] = { 1, 5, 17, 64 };
	float q[4 * 128], kv[2 * 64 * 128], scratch[4 * (64 + 128)], four[4 * 128], one[128];
	double ref[128];
	struct nb_rng rng = { 7 };

	(void)state;
	for (size_t h = 0; h < 3; h++) {
		for (size_t j = 0; j < 4; j++) {
			const uint32_t hd = hds[h], n = ns[j];
			const float *k = kv, *v = kv + n * hd;
			for (size_t i = 0; i < 4 * hd; i++)
				q[i] = (float)((int64_t)(nb_rng_next(&rng) % 2001) - 1000) / 250.0f;
			for (size_t i = 0; i < 2 * n * hd; i++)
				kv[i] = (float)((int64_t)(nb_rng_next(&rng) % 2001) - 1000) / 250.0f;
			nb_kernels_scalar.attend(four, scratch, q, k, v, hd, 4, n, 0.125f);
			for (uint32_t hh = 0; hh < 4; hh++) {
				nb_kernels_scalar.attend(one, scratch, q + hh * hd, k, v, hd, 1, n, 0.125f);
				assert_memory_equal(one, four + hh * hd, hd * sizeof(float));
				attend_double(ref, q + hh * hd, k, v, hd, n, 0.125);
				for (uint32_t i = 0; i < hd; i++)
					assert_true(fabs(one[i] - ref[i]) <= 1e-5 * (1 + fabs(ref[i])));
			}
		}
	}
}

static void test_f16(void **state)
{
	(void)state;
	for (uint32_t h = 0; h < 0x7c00; h++)
		assert_int_equal(nb_f32_to_f16(nb_f16_to_f32((nb_f16)h)), h);
	assert_true(nb_f16_to_f32(0x3c00) == 1.0f);
	assert_true(nb_f16_to_f32(0x0001) == 5.9604644775390625e-8f);
	assert_int_equal(nb_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00);      /* tie to even */
	assert_int_equal(nb_f32_to_f16(1.0f + 3.0f / 2048), 0x3c02);      /* tie to even */
	assert_int_equal(nb_f32_to_f16(65520.0f), 0x7c00);               /* overflow: inf */
	assert_int_equal(nb_f32_to_f16(-0.0f), 0x8000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_runnable_backend_equals_scalar),
		cmocka_unit_test(test_null_entry_falls_back_to_reference),
		cmocka_unit_test(test_simd_backends_cover_every_type),
		cmocka_unit_test(test_select_falls_back_to_scalar),
		cmocka_unit_test(test_select_prefers_best_supported),
		cmocka_unit_test(test_cpu_describe),
		cmocka_unit_test(test_mm_q_semantics),
		cmocka_unit_test(test_quant_act),
		cmocka_unit_test(test_quant_act_equals_spec),
		cmocka_unit_test(test_attend_spec),
		cmocka_unit_test(test_f16),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
