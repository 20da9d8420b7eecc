/* GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization
 * for Generative Pre-trained Transformers").
 *
 * With H = X^T X over the calibration inputs, quantizing column i of W
 * leaves an error whose effect on the output is best compensated by the
 * columns after it: w_j -= (w_i - q_i) / U_ii * U_ij, where U is the upper
 * Cholesky factor of H^-1 (in quantization order). Rows are independent
 * (the same U serves all), so each row runs on its own: one contiguous
 * work row, O(cols^2 / 2) per row, and no lazy block updates to get right.
 *
 * Differences from the reference implementation, on purpose:
 * - group scales are computed at the start of each group from the row as
 *   it is then (every earlier column's feedback applied); the reference
 *   reads stale values of the current 128-column block when G < 128;
 * - dead inputs (H_ii = 0: never non-zero in the calibration text) keep
 *   their weights, quantized without feedback, instead of being zeroed:
 *   other text may well use them;
 * - with act-order the groups are static (computed from the original
 *   weights up front), so the stored layout stays column-contiguous;
 * - if H + damping is not positive definite the damping grows tenfold
 *   (up to four times) instead of failing. */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "tools/quant/quantize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Lower Cholesky factor of a [n][n] in place (upper triangle left as is).
 * -NB_ERANGE if a is not positive definite. */
static int cholesky(double *a, uint32_t n)
{
	for (uint32_t j = 0; j < n; j++) {
		double *aj = a + (size_t)j * n, s = aj[j];

		for (uint32_t k = 0; k < j; k++)
			s -= aj[k] * aj[k];
		if (!(s > 0))
			return -NB_ERANGE;
		aj[j] = sqrt(s);
		for (uint32_t i = j + 1; i < n; i++) {
			double *ai = a + (size_t)i * n, t = ai[j];

			for (uint32_t k = 0; k < j; k++)
				t -= ai[k] * aj[k];
			ai[j] = t / aj[j];
		}
	}
	return 0;
}

/* Inverse of the lower-triangular l, into inv (lower; upper zeroed). */
static void tri_inverse(const double *l, double *inv, uint32_t n)
{
	memset(inv, 0, (size_t)n * n * sizeof(double));
	for (uint32_t j = 0; j < n; j++) {
		inv[(size_t)j * n + j] = 1.0 / l[(size_t)j * n + j];
		for (uint32_t i = j + 1; i < n; i++) {
			double s = 0;

			for (uint32_t k = j; k < i; k++)
				s += l[(size_t)i * n + k] * inv[(size_t)k * n + j];
			inv[(size_t)i * n + j] = -s / l[(size_t)i * n + i];
		}
	}
}

/* u = the upper Cholesky factor of (a + damp I)^-1, in place of a. tmp
 * is [n][n]. -NB_ERANGE if a + damp I is not positive definite. */
static int inverse_factor(double *a, double *tmp, uint32_t n, double damp)
{
	int ret;

	for (uint32_t i = 0; i < n; i++)
		a[(size_t)i * n + i] += damp;
	ret = cholesky(a, n);
	if (ret)
		return ret;
	/* H^-1 = L^-T L^-1, into a (its lower triangle is enough) */
	tri_inverse(a, tmp, n);
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j <= i; j++) {
			double s = 0;

			for (uint32_t k = i; k < n; k++)
				s += tmp[(size_t)k * n + i] * tmp[(size_t)k * n + j];
			a[(size_t)i * n + j] = s;
		}
	ret = cholesky(a, n);
	if (ret)
		return ret;
	/* U = L2^T: row i of U is column i of L2 */
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++)
			tmp[(size_t)i * n + j] = j >= i ? a[(size_t)j * n + i] : 0;
	memcpy(a, tmp, (size_t)n * n * sizeof(double));
	return 0;
}

struct order {
	uint32_t i;
	double h;
};

static int by_h_desc(const void *a, const void *b)
{
	const struct order *x = a, *y = b;

	if (x->h != y->h)
		return x->h > y->h ? -1 : 1;
	return x->i < y->i ? -1 : x->i > y->i;
}

/* perm[k] = the column quantized k-th. Returns the mean diagonal of H
 * over the live inputs. */
static double order(const struct nb_calib_stat *st, bool act_order, uint32_t *perm)
{
	const uint32_t n = st->cols;
	struct order *o = malloc(n * sizeof(*o));
	double sum = 0;
	uint32_t live = 0;

	for (uint32_t i = 0; i < n; i++) {
		double h = st->h[(size_t)i * n + i];

		perm[i] = i;
		if (o)
			o[i] = (struct order){ i, h };
		if (h > 0) {
			sum += h;
			live++;
		}
	}
	if (act_order && o) {
		qsort(o, n, sizeof(*o), by_h_desc);
		for (uint32_t i = 0; i < n; i++)
			perm[i] = o[i].i;
	}
	free(o);
	return live ? sum / live : 1;
}

/* a = H in quantization order, dead inputs' diagonal set to 1 (their rows
 * and columns are zero: they stay out of everyone's feedback). */
static void permuted(const struct nb_calib_stat *st, const uint32_t *perm, double *a)
{
	const uint32_t n = st->cols;

	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < n; j++)
			a[(size_t)i * n + j] = st->h[(size_t)perm[i] * n + perm[j]];
	for (uint32_t i = 0; i < n; i++)
		if (!(a[(size_t)i * n + i] > 0))
			a[(size_t)i * n + i] = 1;
}

/* One row: work = the row in quantization order; group parameters of
 * static groups are already in m. */
static void quantize_row(struct nb_qmat *m, uint64_t r, double *work, const double *u,
			 const uint32_t *perm, bool static_groups, float *tmp)
{
	const uint32_t n = (uint32_t)m->cols, G = m->qi->group;

	for (uint32_t i = 0; i < n; i++) {
		uint32_t c = perm[i], g = c / G;
		uint64_t k = r * m->ng + g;
		const double *ui = u + (size_t)i * n;
		double err;
		int8_t q;

		if (!static_groups && c % G == 0) {
			/* without act-order perm is the identity: the group is work[i..] */
			uint32_t len = n - c < G ? n - c : G;

			for (uint32_t j = 0; j < len; j++)
				tmp[j] = (float)work[i + j];
			nb_qgroup_params(m->qi, tmp, len, 1.0f, &m->d[k], &m->z[k]);
		}
		q = nb_qgroup_level(m->qi, (float)work[i], m->d[k], m->z[k]);
		m->q[r * n + c] = q;
		err = (work[i] - nb_qgroup_value(q, m->d[k], m->z[k])) / ui[i];
		for (uint32_t j = i + 1; j < n; j++)
			work[j] -= err * ui[j];
	}
}

int nb_gptq_quantize(struct nb_qmat *m, const float *w, const struct nb_calib_stat *st,
		     const struct nb_gptq_opts *o)
{
	const uint32_t n = st->cols;
	uint32_t *perm = NULL;
	double *a = NULL, *tmp = NULL, *work = NULL, damp;
	float *gbuf = NULL;
	int ret;

	if (n != m->cols || st->n == 0)
		return -NB_EINVAL;
	perm = malloc(n * sizeof(*perm));
	a = malloc((size_t)n * n * sizeof(double));
	tmp = malloc((size_t)n * n * sizeof(double));
	work = malloc(n * sizeof(double));
	gbuf = malloc(m->qi->group * sizeof(float));
	ret = perm && a && tmp && work && gbuf ? 0 : -NB_ENOMEM;
	if (ret)
		goto out;
	damp = (double)o->damp * order(st, o->act_order, perm);
	ret = -NB_ERANGE;
	for (int attempt = 0; attempt < 5 && ret; attempt++, damp *= 10) {
		permuted(st, perm, a);
		ret = inverse_factor(a, tmp, n, damp);
		if (!ret && attempt > 0)
			nb_warn("gptq: inputs nearly degenerate: damping raised to %g", damp);
	}
	if (ret) {
		nb_err("gptq: the calibration inputs give no invertible Hessian");
		goto out;
	}
	if (o->act_order)
		nb_qmat_rtn(m, w, 1.0f); /* static groups: parameters of the original rows */
	for (uint64_t r = 0; r < m->rows; r++) {
		for (uint32_t i = 0; i < n; i++)
			work[i] = w[r * n + perm[i]];
		quantize_row(m, r, work, a, perm, o->act_order, gbuf);
	}
out:
	free(perm);
	free(a);
	free(tmp);
	free(work);
	free(gbuf);
	return ret;
}
