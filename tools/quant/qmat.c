/* The group quantizer shared by RTN, AWQ and GPTQ, and the calibration
 * statistics they are measured by. */
#include "runtime/base/err.h"
#include "tools/quant/quantize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Half away from zero, as kernels/quant.c rounds: the same levels as
 * nb_quantize_rtn. The clamp keeps the conversion defined whatever the
 * value (GPTQ's error feedback can push a weight past its group's range). */
static int32_t round_away(float x)
{
	if (!(x >= -1e6f && x <= 1e6f))
		x = x > 0 ? 1e6f : -1e6f;
	return x >= 0 ? (int32_t)(x + 0.5f) : -(int32_t)(-x + 0.5f);
}

static int32_t clamp_i(int32_t v, int32_t lo, int32_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

void nb_qgroup_params(const struct nb_qinfo *qi, const float *w, uint32_t n, float clip,
		      float *d, uint8_t *z)
{
	float lo = 0, hi = 0, m = 0;

	for (uint32_t j = 0; j < n; j++) {
		lo = w[j] < lo ? w[j] : lo;
		hi = w[j] > hi ? w[j] : hi;
		m = fabsf(w[j]) > fabsf(m) ? w[j] : m;
	}
	*z = 0;
	if (qi->zero_point) {
		lo *= clip;
		hi *= clip;
		*d = nb_f16_round((hi - lo) / 15.0f);
		if (*d > 0)
			*z = (uint8_t)clamp_i(round_away(-lo / *d), 0, 15);
	} else if (qi->bits == 4) {
		*d = nb_f16_round(m * clip / -8.0f);
	} else {
		*d = nb_f16_round(fabsf(m) * clip / 127.0f);
	}
}

int8_t nb_qgroup_level(const struct nb_qinfo *qi, float w, float d, uint8_t z)
{
	int32_t v = d != 0 ? round_away(w / d) + z : z;

	if (qi->zero_point)
		return (int8_t)clamp_i(v, 0, 15);
	if (qi->bits == 4)
		return (int8_t)clamp_i(v, -8, 7);
	return (int8_t)clamp_i(v, -127, 127);
}

int nb_qmat_alloc(struct nb_qmat *m, uint32_t type, uint64_t rows, uint64_t cols)
{
	uint64_t bytes;

	memset(m, 0, sizeof(*m));
	m->qi = nb_qinfo(type);
	if (!m->qi || nb_qtensor_bytes(type, rows, cols, &bytes) || rows * cols > SIZE_MAX / 4)
		return -NB_EINVAL;
	m->type = type;
	m->rows = rows;
	m->cols = cols;
	m->ng = (cols + m->qi->group - 1) / m->qi->group;
	m->q = malloc(rows * cols);
	m->d = malloc(rows * m->ng * sizeof(float));
	m->z = calloc(rows * m->ng, 1);
	if (!m->q || !m->d || !m->z) {
		nb_qmat_free(m);
		return -NB_ENOMEM;
	}
	return 0;
}

void nb_qmat_free(struct nb_qmat *m)
{
	if (!m)
		return;
	free(m->q);
	free(m->d);
	free(m->z);
	memset(m, 0, sizeof(*m));
}

void nb_qmat_rtn(struct nb_qmat *m, const float *w, float clip)
{
	const uint32_t G = m->qi->group;

	for (uint64_t r = 0; r < m->rows; r++) {
		for (uint64_t g = 0; g < m->ng; g++) {
			uint64_t c0 = g * G, k = r * m->ng + g;
			uint32_t n = (uint32_t)(m->cols - c0 < G ? m->cols - c0 : G);
			const float *wg = w + r * m->cols + c0;

			nb_qgroup_params(m->qi, wg, n, clip, &m->d[k], &m->z[k]);
			for (uint32_t j = 0; j < n; j++)
				m->q[r * m->cols + c0 + j] = nb_qgroup_level(m->qi, wg[j], m->d[k], m->z[k]);
		}
	}
}

void nb_qmat_dequant(const struct nb_qmat *m, float *w)
{
	const uint32_t G = m->qi->group;

	for (uint64_t r = 0; r < m->rows; r++)
		for (uint64_t c = 0; c < m->cols; c++) {
			uint64_t k = r * m->ng + c / G;
			w[r * m->cols + c] = nb_qgroup_value(m->q[r * m->cols + c], m->d[k], m->z[k]);
		}
}

int nb_qmat_pack(const struct nb_qmat *m, void **out, uint64_t *size)
{
	int ret;

	*out = NULL;
	ret = nb_qtensor_bytes(m->type, m->rows, m->cols, size);
	if (ret)
		return ret;
	if (*size > SIZE_MAX)
		return -NB_ENOMEM;
	/* 64-byte aligned like the image, so the kernels can run on it here */
	*out = aligned_alloc(64, (size_t)((*size + 63) & ~(uint64_t)63));
	if (!*out)
		return -NB_ENOMEM;
	ret = nb_quant_pack(m->type, m->rows, m->cols, m->q, m->d, m->z, *out);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	return ret;
}

/* ---- calibration statistics ------------------------------------------- */

int nb_calib_stat_alloc(struct nb_calib_stat *s, uint32_t cols)
{
	memset(s, 0, sizeof(*s));
	if (cols == 0 || (uint64_t)cols * cols > SIZE_MAX / sizeof(double))
		return -NB_EINVAL;
	s->h = calloc((size_t)cols * cols, sizeof(double));
	s->abs_sum = calloc(cols, sizeof(double));
	s->xs = malloc((size_t)NB_CALIB_SAMPLES * cols * sizeof(float));
	if (!s->h || !s->abs_sum || !s->xs) {
		nb_calib_stat_free(s);
		return -NB_ENOMEM;
	}
	s->cols = cols;
	s->rng = 0x2545f4914f6cdd1dull;
	return 0;
}

void nb_calib_stat_free(struct nb_calib_stat *s)
{
	if (!s)
		return;
	free(s->h);
	free(s->abs_sum);
	free(s->xs);
	memset(s, 0, sizeof(*s));
}

static uint64_t xorshift(uint64_t *state)
{
	*state ^= *state << 13;
	*state ^= *state >> 7;
	*state ^= *state << 17;
	return *state;
}

/* Reservoir sampling: after n inputs, each is in the sample with
 * probability NB_CALIB_SAMPLES / n. */
static void sample(struct nb_calib_stat *s, const float *x)
{
	uint64_t slot = s->n_xs < NB_CALIB_SAMPLES ? s->n_xs++ : xorshift(&s->rng) % (s->n + 1);

	if (slot < NB_CALIB_SAMPLES)
		memcpy(s->xs + slot * s->cols, x, s->cols * sizeof(float));
}

/* Hot spot of calibration: cols^2 / 2 per input vector. */
void nb_calib_stat_add(struct nb_calib_stat *s, const float *x)
{
	const uint32_t n = s->cols;

	for (uint32_t i = 0; i < n; i++) {
		double xi = x[i], *hi = s->h + (size_t)i * n;

		s->abs_sum[i] += fabs(xi);
		for (uint32_t j = 0; j <= i; j++)
			hi[j] += xi * x[j];
	}
	sample(s, x);
	s->n++;
}

void nb_calib_stat_finish(struct nb_calib_stat *s)
{
	const uint32_t n = s->cols;

	for (uint32_t i = 0; i < n; i++)
		for (uint32_t j = i + 1; j < n; j++)
			s->h[(size_t)i * n + j] = s->h[(size_t)j * n + i];
}

/* e H e^T of one row's error e. */
static double loss_h(const struct nb_calib_stat *s, const double *e)
{
	const uint32_t n = s->cols;
	double total = 0;

	for (uint32_t i = 0; i < n; i++) {
		const double *hi = s->h + (size_t)i * n;
		double acc = 0;

		if (e[i] == 0)
			continue;
		for (uint32_t j = 0; j < n; j++)
			acc += hi[j] * e[j];
		total += e[i] * acc;
	}
	return total / (double)s->n;
}

/* Mean of (e . x)^2 over the sample. */
static double loss_sample(const struct nb_calib_stat *s, const double *e)
{
	double total = 0;

	for (uint32_t t = 0; t < s->n_xs; t++) {
		const float *x = s->xs + (size_t)t * s->cols;
		double y = 0;

		for (uint32_t j = 0; j < s->cols; j++)
			y += e[j] * x[j];
		total += y * y;
	}
	return total / s->n_xs;
}

double nb_calib_loss(const struct nb_calib_stat *s, const float *w, const float *wq,
		     uint64_t rows)
{
	const uint32_t n = s->cols;
	double total = 0, *e = malloc(n * sizeof(double));
	bool sampled = s->n_xs < n;

	if (!e || s->n == 0) {
		free(e);
		return NAN;
	}
	for (uint64_t r = 0; r < rows; r++) {
		for (uint32_t j = 0; j < n; j++)
			e[j] = (double)w[r * n + j] - wq[r * n + j];
		total += sampled ? loss_sample(s, e) : loss_h(s, e);
	}
	free(e);
	return total;
}
