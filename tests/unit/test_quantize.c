/* The quantizers of `nibble quantize`: the group quantizer and packing
 * against the kernels' dequantization, RTN error bounds, calibration
 * statistics, GPTQ and AWQ against RTN on synthetic layers whose inputs
 * make them matter, and the --type / --keep plan. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/quant.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "tools/import/ckpt.h"
#include "tools/import/convert.h"
#include "tools/import/image_write.h"
#include "tools/quant/quantize.h"

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- deterministic random numbers -------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rnd_u32(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 32);
}

static float rnd_uniform(void) /* [0, 1) */
{
	return (float)(rnd_u32() >> 8) / 16777216.0f;
}

static float rnd_gauss(void)
{
	float u = rnd_uniform() + 1e-7f, v = rnd_uniform();

	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const uint32_t all_types[] = { NB_QTYPE_Q4_G32, NB_QTYPE_Q4_G64, NB_QTYPE_Q4_G128,
				      NB_QTYPE_Q4Z_G32, NB_QTYPE_Q4Z_G128, NB_QTYPE_Q8_G32 };
#define N_TYPES (sizeof(all_types) / sizeof(all_types[0]))

/* ---- packing ------------------------------------------------------------- */

/* Random levels and binary16 scales of every type packed and read back by
 * the kernels' dequantizer: exactly d * (q - z), tails included. */
static void test_pack_roundtrip_random_levels(void **state)
{
	static const uint64_t shapes[][2] = { { 7, 172 }, { 5, 32 }, { 1, 1 }, { 9, 129 }, { 4, 256 } };

	(void)state;
	for (size_t t = 0; t < N_TYPES; t++) {
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			uint64_t rows = shapes[s][0], cols = shapes[s][1], size;
			struct nb_qmat m;
			void *packed;
			float *row = malloc(cols * sizeof(float));

			assert_int_equal(nb_qmat_alloc(&m, all_types[t], rows, cols), 0);
			for (uint64_t k = 0; k < rows * m.ng; k++) {
				m.d[k] = nb_f16_round(rnd_gauss() * 0.05f);
				m.z[k] = m.qi->zero_point ? (uint8_t)(rnd_u32() % 16) : 0;
			}
			for (uint64_t k = 0; k < rows * cols; k++) {
				uint32_t r = rnd_u32();
				m.q[k] = m.qi->zero_point ? (int8_t)(r % 16)
					 : m.qi->bits == 4 ? (int8_t)((int)(r % 16) - 8)
							   : (int8_t)((int)(r % 255) - 127);
			}
			assert_int_equal(nb_qmat_pack(&m, &packed, &size), 0);
			for (uint64_t r = 0; r < rows; r++) {
				nb_quant_dequant_row(all_types[t], packed, cols, r, row);
				for (uint64_t c = 0; c < cols; c++) {
					uint64_t k = r * m.ng + c / m.qi->group;
					float want = m.d[k] * (float)((int)m.q[r * cols + c] - m.z[k]);
					if (row[c] != want)
						fail_msg("%s %llux%llu: (%llu,%llu) = %g, want %g",
							 m.qi->name, (unsigned long long)rows,
							 (unsigned long long)cols, (unsigned long long)r,
							 (unsigned long long)c, row[c], want);
				}
			}
			free(packed);
			free(row);
			nb_qmat_free(&m);
		}
	}
}

/* Matrices of awkward content: zeros, +-60000 (near the binary16 limit),
 * subnormal-sized values, one outlier, constant and one-signed rows. */
static void fill_extreme(float *w, uint64_t rows, uint64_t cols)
{
	for (uint64_t r = 0; r < rows; r++) {
		for (uint64_t c = 0; c < cols; c++) {
			float *x = &w[r * cols + c];
			switch (r % 7) {
			case 0: *x = 0; break;
			case 1: *x = (c % 2 ? 1 : -1) * 60000.0f * rnd_uniform(); break;
			case 2: *x = rnd_gauss() * 1e-6f; break;
			case 3: *x = c == 37 ? 50.0f : rnd_gauss() * 0.01f; break;
			case 4: *x = 0.3f; break;
			case 5: *x = -fabsf(rnd_gauss()); break;
			default: *x = rnd_gauss(); break;
			}
		}
	}
}

/* RTN through nb_qmat and nb_quantize_rtn give the same bytes; what
 * nb_qmat_dequant says is what the kernels read. */
static void test_rtn_matches_kernel_rtn(void **state)
{
	static const uint64_t shapes[][2] = { { 7, 172 }, { 14, 172 }, { 3, 300 }, { 5, 64 } };

	(void)state;
	for (size_t t = 0; t < N_TYPES; t++) {
		for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
			uint64_t rows = shapes[s][0], cols = shapes[s][1], size, ref_size;
			float *w = malloc(rows * cols * sizeof(float));
			float *deq = malloc(rows * cols * sizeof(float)), *row = malloc(cols * sizeof(float));
			struct nb_qmat m;
			void *packed, *ref;

			if (s % 2)
				fill_extreme(w, rows, cols);
			else
				for (uint64_t k = 0; k < rows * cols; k++)
					w[k] = rnd_gauss();
			assert_int_equal(nb_qmat_alloc(&m, all_types[t], rows, cols), 0);
			nb_qmat_rtn(&m, w, 1.0f);
			assert_int_equal(nb_qmat_pack(&m, &packed, &size), 0);
			assert_int_equal(nb_qtensor_bytes(all_types[t], rows, cols, &ref_size), 0);
			assert_int_equal(size, ref_size);
			ref = malloc(ref_size);
			assert_int_equal(nb_quantize_rtn(all_types[t], w, rows, cols, ref), 0);
			assert_memory_equal(packed, ref, size);
			nb_qmat_dequant(&m, deq);
			for (uint64_t r = 0; r < rows; r++) {
				nb_quant_dequant_row(all_types[t], packed, cols, r, row);
				assert_memory_equal(row, deq + r * cols, cols * sizeof(float));
			}
			free(ref);
			free(packed);
			free(w);
			free(deq);
			free(row);
			nb_qmat_free(&m);
		}
	}
}

/* Per group: no element off by more than one step d; elements inside the
 * representable range off by at most half a step (plus the binary16
 * rounding of d); the scale is the rule's, rounded. */
static void test_rtn_error_bounds(void **state)
{
	const uint64_t rows = 13, cols = 172;
	float *w = malloc(rows * cols * sizeof(float)), *deq = malloc(rows * cols * sizeof(float));

	(void)state;
	fill_extreme(w, rows, cols);
	for (size_t t = 0; t < N_TYPES; t++) {
		struct nb_qmat m;
		const struct nb_qinfo *qi = nb_qinfo(all_types[t]);

		assert_int_equal(nb_qmat_alloc(&m, all_types[t], rows, cols), 0);
		nb_qmat_rtn(&m, w, 1.0f);
		nb_qmat_dequant(&m, deq);
		for (uint64_t r = 0; r < rows; r++) {
			for (uint64_t g = 0; g < m.ng; g++) {
				float d = m.d[r * m.ng + g], amax = 0, lo = 0, hi = 0;
				uint64_t c0 = g * qi->group, c1 = c0 + qi->group < cols ? c0 + qi->group : cols;

				for (uint64_t c = c0; c < c1; c++) {
					amax = fmaxf(amax, fabsf(w[r * cols + c]));
					lo = fminf(lo, w[r * cols + c]);
					hi = fmaxf(hi, w[r * cols + c]);
				}
				if (qi->zero_point)
					assert_true(fabsf(d - (hi - lo) / 15) <= (hi - lo) / 15 * 1e-3f + 1e-7f);
				else
					assert_true(fabsf(fabsf(d) - amax / (qi->bits == 4 ? 8 : 127)) <=
						    amax * 1e-3f + 1e-7f);
				for (uint64_t c = c0; c < c1; c++) {
					float e = fabsf(w[r * cols + c] - deq[r * cols + c]);
					float step = fabsf(d);
					/* the symmetric 4-bit grid reaches -8 d but only +7 d */
					bool inside = qi->zero_point || qi->bits == 8 ||
						      w[r * cols + c] * (d < 0 ? -1 : 1) < 7.5f * step;
					if (d == 0) /* below binary16's range: all zero */
						assert_true(deq[r * cols + c] == 0 && e <= amax);
					else if (amax < 1e-4f) /* subnormal d: off by up to 3e-8, 15 times */
						assert_true(e <= 0.5f * step + 15 * 3e-8f);
					else if (inside)
						assert_true(e <= 0.5f * step * 1.002f + amax * 1e-3f);
					else
						assert_true(e <= step * 1.002f);
				}
			}
		}
		nb_qmat_free(&m);
	}
	free(w);
	free(deq);
}

/* ---- calibration statistics -------------------------------------------- */

static void make_stat(struct nb_calib_stat *st, const float *x, uint64_t n, uint32_t cols)
{
	assert_int_equal(nb_calib_stat_alloc(st, cols), 0);
	for (uint64_t t = 0; t < n; t++)
		nb_calib_stat_add(st, x + t * cols);
	nb_calib_stat_finish(st);
}

/* Direct mean ||(w - wq) x||^2 over the inputs. */
static double direct_loss(const float *x, uint64_t n, const float *w, const float *wq,
			  uint64_t rows, uint32_t cols)
{
	double total = 0;

	for (uint64_t t = 0; t < n; t++)
		for (uint64_t r = 0; r < rows; r++) {
			double y = 0;
			for (uint32_t c = 0; c < cols; c++)
				y += ((double)w[r * cols + c] - wq[r * cols + c]) * x[t * cols + c];
			total += y * y;
		}
	return total / (double)n;
}

static void test_calib_loss_is_output_mse(void **state)
{
	const uint32_t cols = 40, n = 200;
	const uint64_t rows = 6;
	float *x = malloc((size_t)n * cols * sizeof(float));
	float w[6 * 40], wq[6 * 40];
	struct nb_calib_stat st;
	double a, b;

	(void)state;
	for (size_t k = 0; k < (size_t)n * cols; k++)
		x[k] = rnd_gauss() * (k % cols < 3 ? 10.0f : 1.0f);
	for (size_t k = 0; k < rows * cols; k++) {
		w[k] = rnd_gauss();
		wq[k] = w[k] + rnd_gauss() * 0.1f;
	}
	make_stat(&st, x, n, cols);
	assert_int_equal(st.n, n);
	a = nb_calib_loss(&st, w, wq, rows);
	b = direct_loss(x, n, w, wq, rows, cols);
	assert_true(fabs(a - b) <= 1e-9 * b);
	assert_true(fabs(st.abs_sum[0] / n - 10 * sqrt(2 / M_PI)) < 2.0);
	nb_calib_stat_free(&st);
	free(x);
}

/* Wider than the sample: exact while every input is in it, an unbiased
 * estimate once the sample is a fraction of them. */
static void test_calib_loss_wide_layers(void **state)
{
	const uint32_t cols = 300;
	const uint64_t rows = 3;
	float *w = malloc(rows * cols * sizeof(float)), *wq = malloc(rows * cols * sizeof(float));

	(void)state;
	for (size_t k = 0; k < rows * cols; k++) {
		w[k] = rnd_gauss();
		wq[k] = w[k] + rnd_gauss() * 0.1f;
	}
	for (int big = 0; big < 2; big++) {
		uint64_t n = big ? 2000 : 100;
		float *x = malloc(n * cols * sizeof(float));
		struct nb_calib_stat st;
		double a, b;

		for (size_t k = 0; k < n * cols; k++)
			x[k] = rnd_gauss();
		make_stat(&st, x, n, cols);
		assert_int_equal(st.n_xs, big ? NB_CALIB_SAMPLES : n);
		a = nb_calib_loss(&st, w, wq, rows);
		b = direct_loss(x, n, w, wq, rows, cols);
		if (big)
			assert_true(fabs(a - b) <= 0.3 * b);
		else
			assert_true(fabs(a - b) <= 1e-9 * b);
		nb_calib_stat_free(&st);
		free(x);
	}
	free(w);
	free(wq);
}

/* ---- GPTQ ---------------------------------------------------------------- */

/* X = Z A + noise: strongly correlated inputs, where GPTQ's feedback pays. */
static float *correlated_inputs(uint64_t n, uint32_t cols, uint32_t rank)
{
	float *a = malloc((size_t)rank * cols * sizeof(float));
	float *x = malloc((size_t)n * cols * sizeof(float));

	for (size_t k = 0; k < (size_t)rank * cols; k++)
		a[k] = rnd_gauss();
	for (uint64_t t = 0; t < n; t++) {
		float z[16];
		for (uint32_t i = 0; i < rank; i++)
			z[i] = rnd_gauss();
		for (uint32_t c = 0; c < cols; c++) {
			float v = 0.1f * rnd_gauss();
			for (uint32_t i = 0; i < rank; i++)
				v += z[i] * a[i * cols + c];
			x[t * cols + c] = v;
		}
	}
	free(a);
	return x;
}

static double quant_loss(const struct nb_qmat *m, const struct nb_calib_stat *st, const float *w)
{
	float *wq = malloc(m->rows * m->cols * sizeof(float));
	double loss;

	nb_qmat_dequant(m, wq);
	loss = nb_calib_loss(st, w, wq, m->rows);
	free(wq);
	return loss;
}

static void test_gptq_beats_rtn_on_correlated_inputs(void **state)
{
	const uint32_t cols = 172, n = 600;
	const uint64_t rows = 30; /* not a multiple of 4 */
	float *x = correlated_inputs(n, cols, 12), *w = malloc(rows * cols * sizeof(float));
	struct nb_calib_stat st;

	(void)state;
	for (size_t k = 0; k < rows * cols; k++)
		w[k] = rnd_gauss() * 0.05f;
	make_stat(&st, x, n, cols);
	for (size_t t = 0; t < N_TYPES; t++) {
		for (int act = 0; act < 2; act++) {
			const struct nb_gptq_opts o = { 0.01f, act != 0 };
			struct nb_qmat rtn, gq;
			double l_rtn, l_gptq, l_direct;
			float *wq = malloc(rows * cols * sizeof(float));

			assert_int_equal(nb_qmat_alloc(&rtn, all_types[t], rows, cols), 0);
			assert_int_equal(nb_qmat_alloc(&gq, all_types[t], rows, cols), 0);
			nb_qmat_rtn(&rtn, w, 1.0f);
			assert_int_equal(nb_gptq_quantize(&gq, w, &st, &o), 0);
			l_rtn = quant_loss(&rtn, &st, w);
			l_gptq = quant_loss(&gq, &st, w);
			nb_qmat_dequant(&gq, wq);
			l_direct = direct_loss(x, n, w, wq, rows, cols);
			print_message("# gptq %s%s: output mse %.4g vs rtn %.4g (%.0f%%)\n",
				      gq.qi->name, act ? " act-order" : "", l_gptq, l_rtn,
				      100 * l_gptq / l_rtn);
			assert_true(fabs(l_direct - l_gptq) <= 1e-6 * l_gptq);
			/* with 12 dominant directions, far better: measured 5-20% of RTN */
			assert_true(l_gptq < 0.5 * l_rtn);
			free(wq);
			nb_qmat_free(&rtn);
			nb_qmat_free(&gq);
		}
	}
	nb_calib_stat_free(&st);
	free(x);
	free(w);
}

/* With H a multiple of the identity no column can compensate another:
 * GPTQ is RTN, level for level. */
static void test_gptq_uncorrelated_is_rtn(void **state)
{
	const uint32_t cols = 96;
	const uint64_t rows = 5;
	float *w = malloc(rows * cols * sizeof(float)), *x = calloc((size_t)cols * cols, sizeof(float));
	struct nb_calib_stat st;

	(void)state;
	for (uint32_t c = 0; c < cols; c++)
		x[(size_t)c * cols + c] = 2.0f; /* X = 2 I: H = 4 I */
	make_stat(&st, x, cols, cols);
	for (size_t k = 0; k < rows * cols; k++)
		w[k] = rnd_gauss();
	for (size_t t = 0; t < N_TYPES; t++) {
		const struct nb_gptq_opts o = { 0.01f, false };
		struct nb_qmat rtn, gq;

		assert_int_equal(nb_qmat_alloc(&rtn, all_types[t], rows, cols), 0);
		assert_int_equal(nb_qmat_alloc(&gq, all_types[t], rows, cols), 0);
		nb_qmat_rtn(&rtn, w, 1.0f);
		assert_int_equal(nb_gptq_quantize(&gq, w, &st, &o), 0);
		assert_memory_equal(rtn.q, gq.q, rows * cols);
		assert_memory_equal(rtn.d, gq.d, rows * rtn.ng * sizeof(float));
		assert_memory_equal(rtn.z, gq.z, rows * rtn.ng);
		nb_qmat_free(&rtn);
		nb_qmat_free(&gq);
	}
	nb_calib_stat_free(&st);
	free(w);
	free(x);
}

/* Inputs that are never active (H_ii = 0) and a rank-deficient H: no
 * failure, finite scales, and still no worse than RTN. */
static void test_gptq_dead_inputs(void **state)
{
	const uint32_t cols = 64, n = 20; /* n < cols: H is singular */
	const uint64_t rows = 8;
	float *x = correlated_inputs(n, cols, 4), *w = malloc(rows * cols * sizeof(float));
	struct nb_calib_stat st;

	(void)state;
	for (uint64_t t = 0; t < n; t++)
		for (uint32_t c = 10; c < 20; c++)
			x[t * cols + c] = 0;
	for (size_t k = 0; k < rows * cols; k++)
		w[k] = rnd_gauss();
	make_stat(&st, x, n, cols);
	for (int act = 0; act < 2; act++) {
		const struct nb_gptq_opts o = { 0.01f, act != 0 };
		struct nb_qmat rtn, gq;

		assert_int_equal(nb_qmat_alloc(&rtn, NB_QTYPE_Q4_G32, rows, cols), 0);
		assert_int_equal(nb_qmat_alloc(&gq, NB_QTYPE_Q4_G32, rows, cols), 0);
		nb_qmat_rtn(&rtn, w, 1.0f);
		assert_int_equal(nb_gptq_quantize(&gq, w, &st, &o), 0);
		for (uint64_t k = 0; k < rows * gq.ng; k++)
			assert_true(isfinite(gq.d[k]));
		assert_true(quant_loss(&gq, &st, w) <= quant_loss(&rtn, &st, w));
		nb_qmat_free(&rtn);
		nb_qmat_free(&gq);
	}
	nb_calib_stat_free(&st);
	free(x);
	free(w);
}

/* ---- AWQ ------------------------------------------------------------------ */

/* A layer whose inputs have a few channels 30x louder than the rest: AWQ
 * finds alpha > 0 and lowers the output error of the group it scales,
 * measured against the unscaled weights. */
static void test_awq_beats_rtn_on_salient_channels(void **state)
{
	const uint32_t cols = 128, n = 400;
	const uint64_t rows[2] = { 24, 10 };
	float *x = malloc((size_t)n * cols * sizeof(float)), *w[2], *w0[2], s[128];
	struct nb_calib_stat st;

	(void)state;
	for (uint64_t t = 0; t < n; t++)
		for (uint32_t c = 0; c < cols; c++)
			x[t * cols + c] = rnd_gauss() * (c % 41 == 5 ? 30.0f : 1.0f);
	make_stat(&st, x, n, cols);
	for (size_t t = 0; t < N_TYPES; t++) {
		struct nb_awq_linear lin[2];
		double l_rtn = 0, l_awq = 0, rep_rtn, rep_awq;
		float alpha;

		for (int i = 0; i < 2; i++) {
			w[i] = malloc(rows[i] * cols * sizeof(float));
			w0[i] = malloc(rows[i] * cols * sizeof(float));
			for (size_t k = 0; k < rows[i] * cols; k++)
				w[i][k] = w0[i][k] = rnd_gauss();
			lin[i] = (struct nb_awq_linear){ w[i], rows[i], all_types[t] };
		}
		assert_int_equal(nb_awq_scale(lin, 2, &st, s, &alpha, &rep_rtn, &rep_awq), 0);
		for (int i = 0; i < 2; i++) {
			struct nb_qmat m;
			float *wq = malloc(rows[i] * cols * sizeof(float));

			/* RTN of the original */
			assert_int_equal(nb_qmat_alloc(&m, all_types[t], rows[i], cols), 0);
			nb_qmat_rtn(&m, w0[i], 1.0f);
			l_rtn += quant_loss(&m, &st, w0[i]);
			/* AWQ: the scaled weights quantized, seen through the input / s */
			nb_qmat_rtn(&m, w[i], 1.0f);
			nb_qmat_dequant(&m, wq);
			for (size_t k = 0; k < rows[i] * cols; k++) {
				assert_true(fabsf(w[i][k] - w0[i][k] * s[k % cols]) <=
					    1e-6f * fabsf(w[i][k]));
				wq[k] /= s[k % cols];
			}
			l_awq += direct_loss(x, n, w0[i], wq, rows[i], cols);
			nb_qmat_free(&m);
			free(wq);
			free(w[i]);
			free(w0[i]);
		}
		print_message("# awq %s: alpha %.2f, output mse %.4g vs rtn %.4g (%.0f%%)\n",
			      nb_qinfo(all_types[t])->name, (double)alpha, l_awq, l_rtn,
			      100 * l_awq / l_rtn);
		assert_true(fabs(rep_rtn - l_rtn) <= 1e-6 * l_rtn);
		assert_true(fabs(rep_awq - l_awq) <= 1e-4 * l_awq);
		assert_true(alpha > 0);
		assert_true(l_awq < (all_types[t] == NB_QTYPE_Q8_G32 ? 0.9 : 0.7) * l_rtn);
	}
	nb_calib_stat_free(&st);
	free(x);
}

/* The clipping search never does worse than no clipping, group by group. */
static void test_awq_clip_no_worse(void **state)
{
	const uint32_t cols = 172, n = 300;
	const uint64_t rows = 9;
	float *x = correlated_inputs(n, cols, 8), *w = malloc(rows * cols * sizeof(float));
	struct nb_calib_stat st;

	(void)state;
	for (size_t k = 0; k < rows * cols; k++)
		w[k] = rnd_gauss() * (k % 53 == 0 ? 6.0f : 1.0f);
	make_stat(&st, x, n, cols);
	for (size_t t = 0; t < N_TYPES; t++) {
		struct nb_qmat rtn, cl;
		float *a = malloc(rows * cols * sizeof(float)), *b = malloc(rows * cols * sizeof(float));

		assert_int_equal(nb_qmat_alloc(&rtn, all_types[t], rows, cols), 0);
		assert_int_equal(nb_qmat_alloc(&cl, all_types[t], rows, cols), 0);
		nb_qmat_rtn(&rtn, w, 1.0f);
		assert_int_equal(nb_awq_clip_quantize(&cl, w, &st), 0);
		nb_qmat_dequant(&rtn, a);
		nb_qmat_dequant(&cl, b);
		/* per (row, group), on the group's own block of H */
		for (uint64_t r = 0; r < rows; r++)
			for (uint64_t g = 0; g < rtn.ng; g++) {
				uint32_t G = rtn.qi->group, c0 = (uint32_t)g * G;
				uint32_t len = cols - c0 < G ? cols - c0 : G;
				double la = 0, lb = 0;

				for (uint32_t i = 0; i < len; i++)
					for (uint32_t j = 0; j < len; j++) {
						double h = st.h[(size_t)(c0 + i) * cols + c0 + j];
						size_t ki = r * cols + c0 + i, kj = r * cols + c0 + j;
						la += (w[ki] - a[ki]) * h * (w[kj] - a[kj]);
						lb += (w[ki] - b[ki]) * h * (w[kj] - b[kj]);
					}
				assert_true(lb <= la * (1 + 1e-9) + 1e-12);
			}
		free(a);
		free(b);
		nb_qmat_free(&rtn);
		nb_qmat_free(&cl);
	}
	nb_calib_stat_free(&st);
	free(x);
	free(w);
}

/* ---- the plan ----------------------------------------------------------- */

static void test_plan_types_and_keep(void **state)
{
	struct nb_qplan p = { 0 };
	uint32_t t;

	(void)state;
	assert_int_equal(nb_qplan_parse_type("q4_g32", false, &p.type), 0);
	assert_int_equal(p.type, NB_QTYPE_Q4_G32);
	assert_int_equal(nb_qplan_parse_type("q4z_g128", false, &t), 0);
	assert_int_equal(t, NB_QTYPE_Q4Z_G128);
	assert_int_equal(nb_qplan_parse_type("q4_g64", false, &t), 0);
	assert_int_equal(t, NB_QTYPE_Q4_G64);
	assert_int_equal(nb_qplan_parse_type("q8", false, &t), 0);
	assert_int_equal(t, NB_QTYPE_Q8_G32);
	assert_int_equal(nb_qplan_parse_type("f32", true, &t), 0);
	assert_int_equal(t, NB_DTYPE_F32);

	assert_int_equal(nb_qplan_add_keep(&p, "q8:output,embed"), 0);
	assert_int_equal(nb_qplan_add_keep(&p, "f32:ffn_down,blk.1.attn_q.weight"), 0);
	assert_int_equal(nb_qplan_add_keep(&p, "q4_g128:blk.3.ffn_down"), 0);
	assert_int_equal(p.n_keep, 5);

	/* tied: output is the embedding */
	assert_int_equal(nb_qplan_type_of(&p, "token_embd.weight", 2, true), NB_QTYPE_Q8_G32);
	assert_int_equal(nb_qplan_type_of(&p, "token_embd.weight", 2, false), NB_QTYPE_Q8_G32);
	assert_int_equal(nb_qplan_type_of(&p, "output.weight", 2, false), NB_QTYPE_Q8_G32);
	assert_int_equal(nb_qplan_type_of(&p, "blk.0.ffn_down.weight", 2, true), NB_DTYPE_F32);
	assert_int_equal(nb_qplan_type_of(&p, "blk.4.ffn_down.weight", 2, true), NB_DTYPE_F32);
	/* a later --keep wins */
	assert_int_equal(nb_qplan_type_of(&p, "blk.3.ffn_down.weight", 2, true), NB_QTYPE_Q4_G128);
	assert_int_equal(nb_qplan_type_of(&p, "blk.1.attn_q.weight", 2, true), NB_DTYPE_F32);
	assert_int_equal(nb_qplan_type_of(&p, "blk.2.attn_q.weight", 2, true), NB_QTYPE_Q4_G32);
	assert_int_equal(nb_qplan_type_of(&p, "blk.11.attn_q.weight", 2, true), NB_QTYPE_Q4_G32);
	/* norms stay float32 whatever is asked */
	assert_int_equal(nb_qplan_type_of(&p, "blk.0.attn_norm.weight", 1, true), NB_DTYPE_F32);

	{
		const char *names[] = { "token_embd.weight", "blk.0.ffn_down.weight",
					"blk.1.attn_q.weight", "blk.3.ffn_down.weight" };
		struct nb_qplan bad = { 0 };

		assert_int_equal(nb_qplan_check(&p, names, 4, true), 0);
		/* untied and no output.weight among the names */
		nb_log_set_level(NB_LOG_SILENT);
		assert_int_equal(nb_qplan_check(&p, names, 4, false), -NB_EINVAL);
		assert_int_equal(nb_qplan_add_keep(&bad, "f32:attn_qq"), 0);
		assert_int_equal(nb_qplan_check(&bad, names, 4, true), -NB_EINVAL);
		nb_log_set_level(NB_LOG_INFO);
	}
}

static void test_plan_rejects_malformed(void **state)
{
	static const char *const bad_types[] = { "q4", "q4_g48", "", "Q4_G32", "f16", "q8_g32 " };
	static const char *const bad_keeps[] = {
		"q8", "q8:", ":embed", "q9:embed", "q8:embed,,output", "q8:embed,", "q8:a b",
		"f32:blk.0.ffn_down;rm", "q4_g32_and_more:x",
		"q8:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	};
	struct nb_qplan p = { 0 };
	uint32_t t;
	char many[400] = "q8:x";

	(void)state;
	nb_log_set_level(NB_LOG_SILENT);
	for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++)
		assert_int_equal(nb_qplan_parse_type(bad_types[i], true, &t), -NB_EINVAL);
	assert_int_equal(nb_qplan_parse_type("f32", false, &t), -NB_EINVAL);
	for (size_t i = 0; i < sizeof(bad_keeps) / sizeof(bad_keeps[0]); i++) {
		memset(&p, 0, sizeof(p));
		if (nb_qplan_add_keep(&p, bad_keeps[i]) != -NB_EINVAL)
			fail_msg("--keep '%s' accepted", bad_keeps[i]);
	}
	/* more names than the plan holds */
	memset(&p, 0, sizeof(p));
	for (int i = 0; i < NB_QPLAN_MAX_KEEP; i++)
		strcat(many, ",x");
	assert_int_equal(nb_qplan_add_keep(&p, many), -NB_EINVAL);
	nb_log_set_level(NB_LOG_INFO);
}

/* The applet turns bad options into a usage error before touching files. */
static void test_applet_usage_errors(void **state)
{
	static const char *const cases[][8] = {
		{ "quantize", "x.bin", "-o", "y.nib", "--type", "q5_g32", NULL },
		{ "quantize", "x.bin", "-o", "y.nib", "--type", "q4_g32", "--keep", "q8" },
		{ "quantize", "x.bin", "-o", "y.nib", "--type", "q4_g32", "--method", "gptq" },
		{ "quantize", "x.bin", "-o", "y.nib", "--type", "q4_g32", "--act-order", NULL },
		{ "quantize", "x.bin", "-o", "y.nib", NULL },
		{ "quantize", "x.bin", "--type", "q4_g32", NULL },
		{ "quantize", "x.bin", "-o", "y.nib", "--type", "q4_g32", "--method", "xyz" },
	};
	const struct nb_applet *a = nb_applet_find("quantize");

	(void)state;
	assert_non_null(a);
	nb_log_set_level(NB_LOG_SILENT);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *argv[9] = { 0 };
		int argc = 0;
		FILE *saved = stderr;

		while (argc < 8 && cases[i][argc]) {
			argv[argc] = (char *)cases[i][argc];
			argc++;
		}
		optind = 0; /* getopt_long restarts */
		stderr = fopen("/dev/null", "w");
		assert_int_equal(a->main(argc, argv), NB_EXIT_USAGE);
		fclose(stderr);
		stderr = saved;
	}
	nb_log_set_level(NB_LOG_INFO);
}

/* ---- end to end: AWQ's folds keep the float function -------------------- */

/* stories260K with every KV head duplicated (n_kv_heads = n_heads): the
 * same function, and a model where AWQ also scales o, folding into v. */
static void widen_kv(struct nb_ckpt *c)
{
	const uint32_t hd = c->hp.head_dim, group = c->hp.n_heads / c->hp.n_kv_heads;

	for (size_t i = 0; i < c->n_tensors; i++) {
		struct nb_ckpt_tensor *t = &c->tensors[i];
		uint64_t rows = (uint64_t)c->hp.n_heads * hd, cols = t->shape[1];
		float *w;

		if (!strstr(t->name, ".attn_k.") && !strstr(t->name, ".attn_v."))
			continue;
		w = malloc(rows * cols * sizeof(float));
		assert_non_null(w);
		for (uint64_t r = 0; r < rows; r++)
			memcpy(w + r * cols, t->data + ((r / hd) / group * hd + r % hd) * cols,
			       cols * sizeof(float));
		free(t->data);
		t->data = w;
		t->shape[0] = rows;
	}
	c->hp.n_kv_heads = c->hp.n_heads;
}

/* The logits of every position of ids under the image at path. */
static float *all_logits(const char *path, const int32_t *ids, size_t n)
{
	float *out = malloc(n * 512 * sizeof(float)), *logits;
	struct nb_llm l;
	struct nb_fwd f;

	assert_non_null(out);
	assert_int_equal(nb_llm_open(&l, path, 0), 0);
	assert_int_equal(l.model.hp.vocab_size, 512);
	assert_int_equal(nb_fwd_open(&f, &l.model, (uint32_t)n), 0);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(nb_fwd_token(&f, ids[i], (uint32_t)i, &logits), 0);
		memcpy(out + i * 512, logits, 512 * sizeof(float));
	}
	nb_fwd_close(&f);
	nb_llm_close(&l);
	return out;
}

/* Mean KL(p || q) over n positions of 512 logits. */
static double mean_kl(const float *p, const float *q, size_t n)
{
	double total = 0;

	for (size_t i = 0; i < n; i++) {
		const float *a = p + i * 512, *b = q + i * 512;
		double ma = a[0], mb = b[0], za = 0, zb = 0, kl = 0;

		for (int k = 1; k < 512; k++) {
			ma = a[k] > ma ? a[k] : ma;
			mb = b[k] > mb ? b[k] : mb;
		}
		for (int k = 0; k < 512; k++) {
			za += exp(a[k] - ma);
			zb += exp(b[k] - mb);
		}
		for (int k = 0; k < 512; k++) {
			double la = a[k] - ma - log(za), lb = b[k] - mb - log(zb);
			kl += exp(la) * (la - lb);
		}
		total += kl;
	}
	return total / (double)n;
}

/* The first tokens of the dev text's last story (calibration reads the first). */
static size_t held_out_ids(const struct nb_ckpt *c, int32_t *ids, size_t max)
{
	FILE *f = fopen("tests/data/text/tinystories-valid-dev.txt", "rb");
	char *text = malloc(1 << 17), *last;
	struct nb_tok *tok;
	size_t len, n = 0;
	int ret;

	assert_non_null(f);
	assert_non_null(text);
	len = fread(text, 1, (1 << 17) - 1, f);
	text[len] = '\0';
	fclose(f);
	last = strrchr(text, '>') + 2; /* after the last "<|endoftext|>\n" */
	assert_int_equal(nb_tok_open(&tok, &c->tok), 0);
	ret = nb_tok_encode(tok, last, strlen(last), true, ids, 4096, &n);
	assert_int_equal(ret, 0);
	nb_tok_close(tok);
	free(text);
	return n < max ? n : max;
}

static int run_quantize(const char *src, const char *out, const char *method)
{
	char *argv[] = { "quantize", (char *)src,	  "-o",		 (char *)out, "--type",
			 "q4_g32",   "--method",	  (char *)method, "--calib",
			 "tests/data/text/tinystories-valid-dev.txt", "--calib-tokens", "300", NULL };
	int argc = (int)(sizeof(argv) / sizeof(argv[0])) - 1;

	if (strcmp(method, "rtn") == 0)
		argc -= 4;
	optind = 0;
	return nb_applet_find("quantize")->main(argc, argv);
}

static double rms_diff(const float *a, const float *b, size_t n)
{
	double s = 0;

	for (size_t i = 0; i < n; i++)
		s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
	return sqrt(s / (double)n);
}

static void test_awq_folds_keep_the_model(void **state)
{
	char dir[] = "/tmp/nb-quantize-XXXXXX", f32[64], awq[64], rtn[64];
	int32_t ids[4096];
	float *base, *wide, *l_awq, *l_rtn;
	struct nb_tensor *views;
	struct nb_ckpt c;
	double e_awq, e_rtn;
	size_t n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(f32, sizeof(f32), "%s/f32.nib", dir);
	snprintf(awq, sizeof(awq), "%s/awq.nib", dir);
	snprintf(rtn, sizeof(rtn), "%s/rtn.nib", dir);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, "models/stories260K/stories260K.bin",
					   "models/stories260K/tok512.bin"), 0);
	n = held_out_ids(&c, ids, 96);
	assert_true(n >= 64);
	assert_int_equal(nb_ckpt_views(&c, &views), 0);
	assert_int_equal(nb_image_write(f32, &(struct nb_image_spec){
				 .hp = &c.hp, .tok = &c.tok, .model_version = 1,
				 .tensors = views, .n_tensors = c.n_tensors }), 0);
	base = all_logits(f32, ids, n);
	free(views);
	widen_kv(&c);
	assert_int_equal(nb_ckpt_validate(&c), 0);
	assert_int_equal(nb_ckpt_views(&c, &views), 0);
	assert_int_equal(nb_image_write(f32, &(struct nb_image_spec){
				 .hp = &c.hp, .tok = &c.tok, .model_version = 1,
				 .tensors = views, .n_tensors = c.n_tensors }), 0);
	free(views);
	nb_ckpt_free(&c);
	wide = all_logits(f32, ids, n);
	assert_true(rms_diff(base, wide, n * 512) < 1e-5);

	assert_int_equal(run_quantize(f32, awq, "awq"), 0);
	assert_int_equal(run_quantize(f32, rtn, "rtn"), 0);
	l_awq = all_logits(awq, ids, n);
	l_rtn = all_logits(rtn, ids, n);
	e_awq = mean_kl(wide, l_awq, n);
	e_rtn = mean_kl(wide, l_rtn, n);
	print_message("# q4_g32 without GQA, %zu held-out tokens: KL from float awq %.4g, rtn %.4g\n",
		      n, e_awq, e_rtn);
	/* a fold on the wrong side would cost far more than quantization */
	assert_true(e_awq < e_rtn);
	free(base);
	free(wide);
	free(l_awq);
	free(l_rtn);
	unlink(f32);
	unlink(awq);
	unlink(rtn);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_roundtrip_random_levels),
		cmocka_unit_test(test_rtn_matches_kernel_rtn),
		cmocka_unit_test(test_rtn_error_bounds),
		cmocka_unit_test(test_calib_loss_is_output_mse),
		cmocka_unit_test(test_calib_loss_wide_layers),
		cmocka_unit_test(test_gptq_beats_rtn_on_correlated_inputs),
		cmocka_unit_test(test_gptq_uncorrelated_is_rtn),
		cmocka_unit_test(test_gptq_dead_inputs),
		cmocka_unit_test(test_awq_beats_rtn_on_salient_channels),
		cmocka_unit_test(test_awq_clip_no_worse),
		cmocka_unit_test(test_awq_folds_keep_the_model),
		cmocka_unit_test(test_plan_types_and_keep),
		cmocka_unit_test(test_plan_rejects_malformed),
		cmocka_unit_test(test_applet_usage_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
