/* AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization").
 *
 * Input channels that carry large activations matter most; multiplying
 * their weight columns by s > 1 before round-to-nearest (and dividing the
 * input by s, folded into the operation before) shrinks their relative
 * quantization error at the expense of the quiet channels. s = mean|x|^alpha
 * with alpha searched on a grid against the output error of the quantized
 * layers on the calibration inputs, measured exactly through H = X^T X.
 *
 * Then, per (row, group), a clipping search: shrinking the range by a
 * ratio in 1 .. 0.5 trades the error of a few outliers for finer steps
 * everywhere else; the ratio with the least output error of that group wins. */
#include "runtime/base/err.h"
#include "tools/quant/quantize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* s[c] = mean|x_c|^alpha, normalized to a geometric mean of max and min of
 * 1 (as AutoAWQ does), within [1e-4, 1e4]. Channels never active in the
 * calibration text keep s = 1: nothing says how to scale them. */
static void grid_scales(const struct nb_calib_stat *st, float alpha, float *s)
{
	double lo = INFINITY, hi = 0, norm;

	for (uint32_t c = 0; c < st->cols; c++) {
		double m = st->abs_sum[c] / (double)st->n;

		s[c] = m > 0 ? (float)pow(m, alpha) : 0;
		if (s[c] > 0) {
			lo = s[c] < lo ? s[c] : lo;
			hi = s[c] > hi ? s[c] : hi;
		}
	}
	norm = hi > 0 ? sqrt(hi * lo) : 1;
	for (uint32_t c = 0; c < st->cols; c++) {
		double v = s[c] > 0 ? s[c] / norm : 1;

		s[c] = (float)(v < 1e-4 ? 1e-4 : v > 1e4 ? 1e4 : v);
	}
}

/* Output error of linear l quantized with its columns scaled by s. ws and
 * wq are [rows][cols] scratch. */
static int scaled_loss(const struct nb_awq_linear *l, const struct nb_calib_stat *st,
		       const float *s, float *ws, float *wq, double *loss)
{
	const uint32_t n = st->cols;
	struct nb_qmat m;
	int ret;

	*loss = 0;
	if (!nb_qinfo(l->type))
		return 0;
	ret = nb_qmat_alloc(&m, l->type, l->rows, n);
	if (ret)
		return ret;
	for (uint64_t r = 0; r < l->rows; r++)
		for (uint32_t c = 0; c < n; c++)
			ws[r * n + c] = l->w[r * n + c] * s[c];
	nb_qmat_rtn(&m, ws, 1.0f);
	nb_qmat_dequant(&m, wq);
	for (uint64_t r = 0; r < l->rows; r++)
		for (uint32_t c = 0; c < n; c++)
			wq[r * n + c] /= s[c];
	nb_qmat_free(&m);
	*loss = nb_calib_loss(st, l->w, wq, l->rows);
	return isnan(*loss) ? -NB_ENOMEM : 0;
}

static int group_loss(const struct nb_awq_linear *lin, size_t n_lin,
		      const struct nb_calib_stat *st, const float *s, float *ws, float *wq,
		      double *loss)
{
	*loss = 0;
	for (size_t i = 0; i < n_lin; i++) {
		double one;
		int ret = scaled_loss(&lin[i], st, s, ws, wq, &one);

		if (ret)
			return ret;
		*loss += one;
	}
	return 0;
}

int nb_awq_scale(struct nb_awq_linear *lin, size_t n, const struct nb_calib_stat *st, float *s,
		 float *alpha, double *loss_rtn, double *loss_awq)
{
	const uint32_t cols = st->cols;
	uint64_t max_rows = 0;
	float *ws = NULL, *wq = NULL, *cand = malloc(cols * sizeof(float));
	double best = INFINITY;
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		max_rows = lin[i].rows > max_rows ? lin[i].rows : max_rows;
	if (cand && max_rows) {
		ws = malloc(max_rows * cols * sizeof(float));
		wq = malloc(max_rows * cols * sizeof(float));
	}
	if (!cand || !ws || !wq || st->n == 0) {
		ret = st->n == 0 ? -NB_EINVAL : -NB_ENOMEM;
		goto out;
	}
	*alpha = 0;
	for (uint32_t k = 0; k <= NB_AWQ_GRID; k++) {
		float a = (float)k / NB_AWQ_GRID;
		double loss;

		grid_scales(st, a, cand);
		ret = group_loss(lin, n, st, cand, ws, wq, &loss);
		if (ret)
			goto out;
		if (k == 0)
			*loss_rtn = loss;
		if (loss < best) { /* strictly: ties keep the smaller alpha */
			best = loss;
			*alpha = a;
			memcpy(s, cand, cols * sizeof(float));
		}
	}
	*loss_awq = best;
	for (size_t i = 0; i < n; i++)
		for (uint64_t r = 0; r < lin[i].rows; r++)
			for (uint32_t c = 0; c < cols; c++)
				lin[i].w[r * cols + c] *= s[c];
out:
	free(cand);
	free(ws);
	free(wq);
	return ret;
}

/* e^T H_gg e over the group's columns [c0, c0 + len). */
static double block_loss(const struct nb_calib_stat *st, const double *e, uint32_t c0,
			 uint32_t len)
{
	double total = 0;

	for (uint32_t i = 0; i < len; i++) {
		const double *hi = st->h + (size_t)(c0 + i) * st->cols + c0;
		double acc = 0;

		for (uint32_t j = 0; j < len; j++)
			acc += hi[j] * e[j];
		total += e[i] * acc;
	}
	return total;
}

/* Best clip of one group w[0..len) at columns c0..: parameters into d, z. */
static void clip_group(const struct nb_qinfo *qi, const struct nb_calib_stat *st, const float *w,
		       uint32_t c0, uint32_t len, double *e, float *d, uint8_t *z)
{
	double best = INFINITY;

	for (uint32_t k = 0; k <= NB_AWQ_GRID / 2; k++) {
		float clip = 1.0f - (float)k / NB_AWQ_GRID, cd;
		uint8_t cz;
		double loss;

		nb_qgroup_params(qi, w, len, clip, &cd, &cz);
		for (uint32_t j = 0; j < len; j++)
			e[j] = (double)w[j] -
			       nb_qgroup_value(nb_qgroup_level(qi, w[j], cd, cz), cd, cz);
		loss = block_loss(st, e, c0, len);
		if (loss < best) {
			best = loss;
			*d = cd;
			*z = cz;
		}
	}
}

int nb_awq_clip_quantize(struct nb_qmat *m, const float *w, const struct nb_calib_stat *st)
{
	const uint32_t G = m->qi->group;
	double *e = malloc(G * sizeof(double));

	if (!e)
		return -NB_ENOMEM;
	if (st->cols != m->cols) {
		free(e);
		return -NB_EINVAL;
	}
	for (uint64_t r = 0; r < m->rows; r++) {
		for (uint64_t g = 0; g < m->ng; g++) {
			uint32_t c0 = (uint32_t)(g * G), len = (uint32_t)(m->cols - c0 < G ? m->cols - c0 : G);
			const float *wg = w + r * m->cols + c0;
			uint64_t k = r * m->ng + g;

			clip_group(m->qi, st, wg, c0, len, e, &m->d[k], &m->z[k]);
			for (uint32_t j = 0; j < len; j++)
				m->q[r * m->cols + c0 + j] = nb_qgroup_level(m->qi, wg[j], m->d[k], m->z[k]);
		}
	}
	free(e);
	return 0;
}
