/* The weight quantizers of `nibble quantize` (host side): the group
 * quantizer every method shares, calibration statistics, AWQ scaling
 * (tools/quant/awq.c), GPTQ (tools/quant/gptq.c), the plan of which tensor
 * gets which type and the whole job (tools/quant/quantize.c); the applet
 * (runtime/applets/quantize.c) only parses options.
 *
 * Every method ends in the same place: levels, binary16 scales and zero
 * points per (row, group), packed by nb_quant_pack into the block layout of
 * kernels/quant.h. Levels are always computed against the binary16-rounded
 * scale, so the error a method measures is the error the image holds. */
#ifndef NB_QUANTIZE_H
#define NB_QUANTIZE_H

#include "kernels/quant.h"
#include "runtime/model/model.h"
#include "tools/import/convert.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- group quantizer (tools/quant/qmat.c) ------------------------------------ */

/* Scale d (binary16-rounded) and zero point z of one group w[0..n), with
 * its range shrunk by clip (1: none; < 1 clips the extremes), by the rules
 * of nb_quantize_rtn: symmetric 4-bit maps the value of largest magnitude
 * to -8, zero-point 4-bit spans [min(w, 0), max(w, 0)], 8-bit max|w| / 127. */
void nb_qgroup_params(const struct nb_qinfo *qi, const float *w, uint32_t n, float clip,
		      float *d, uint8_t *z);
/* The level of w: round half away from zero of w / d, plus z, clamped. */
int8_t nb_qgroup_level(const struct nb_qinfo *qi, float w, float d, uint8_t z);
/* What the kernels compute from a level: d * (q - z) (z = 0 without zero points). */
static inline float nb_qgroup_value(int8_t q, float d, uint8_t z)
{
	return d * (float)((int32_t)q - (int32_t)z);
}

/* A quantized matrix before packing. */
struct nb_qmat {
	const struct nb_qinfo *qi;
	uint32_t type;
	uint64_t rows, cols, ng; /* ng = groups per row */
	int8_t *q;               /* [rows][cols] levels */
	float *d;                /* [rows][ng] scales, binary16-rounded */
	uint8_t *z;              /* [rows][ng] zero points (0 when the type has none) */
};

int nb_qmat_alloc(struct nb_qmat *m, uint32_t type, uint64_t rows, uint64_t cols);
/* NULL-safe, idempotent. */
void nb_qmat_free(struct nb_qmat *m);
/* Round to nearest of w [rows][cols], every group clipped by clip (1: none). */
void nb_qmat_rtn(struct nb_qmat *m, const float *w, float clip);
/* w [rows][cols] = what the kernels see. */
void nb_qmat_dequant(const struct nb_qmat *m, float *w);
/* Packs into a new buffer of nb_qtensor_bytes() bytes (caller frees). */
int nb_qmat_pack(const struct nb_qmat *m, void **out, uint64_t *size);

/* ---- calibration statistics (tools/quant/qmat.c) ---------------------------- */

/* What the quantizers need of the inputs X [n][cols] of a linear layer:
 * H = X^T X, the mean magnitude of each input channel, and a uniform
 * random sample of the inputs (reservoir, fixed seed: reproducible). H
 * gives the output error of any weight change E exactly, ||X E^T||^2 =
 * tr(E H E^T), at rows * cols^2; wide layers (cols > the sample) use the
 * sample instead, at rows * cols * NB_CALIB_SAMPLES. */
#define NB_CALIB_SAMPLES 256

struct nb_calib_stat {
	uint32_t cols;
	uint64_t n;       /* input vectors seen */
	double *h;        /* [cols][cols]; lower triangle until nb_calib_stat_finish */
	double *abs_sum;  /* [cols] sum of |x| */
	float *xs;        /* [NB_CALIB_SAMPLES][cols] */
	uint32_t n_xs;
	uint64_t rng;
};

int nb_calib_stat_alloc(struct nb_calib_stat *s, uint32_t cols);
void nb_calib_stat_free(struct nb_calib_stat *s);
void nb_calib_stat_add(struct nb_calib_stat *s, const float *x);
/* Mirrors H into a full symmetric matrix; call once after the last add. */
void nb_calib_stat_finish(struct nb_calib_stat *s);
/* Mean squared output error per input vector of replacing w by wq (both
 * [rows][cols]): exactly sum over rows of e H e^T / n (e = w - wq) when
 * the sample holds at least cols inputs, else its estimate on the sample. */
double nb_calib_loss(const struct nb_calib_stat *s, const float *w, const float *wq,
		     uint64_t rows);

/* ---- AWQ (tools/quant/awq.c) ------------------------------------------------- */

/* One linear layer of a group sharing an input. type 0 (float32): it is
 * scaled with the others but adds no quantization error. */
struct nb_awq_linear {
	float *w; /* [rows][cols], scaled in place */
	uint64_t rows;
	uint32_t type;
};

#define NB_AWQ_GRID 20 /* alpha = 0, 1/20, ..., 1 */

/* Activation-aware scaling: s_c = mean|x_c|^alpha (normalized), alpha on
 * the grid minimizing the summed output error of the group quantized
 * round-to-nearest with its columns multiplied by s. Multiplies the
 * columns of every w by the chosen s and returns s [cols]: the caller
 * divides the output channels of the operation feeding the input by it,
 * so the float function is unchanged. alpha 0 (s = 1) is plain RTN, so the
 * error never exceeds RTN's on the calibration inputs. */
int nb_awq_scale(struct nb_awq_linear *lin, size_t n, const struct nb_calib_stat *st, float *s,
		 float *alpha, double *loss_rtn, double *loss_awq);

/* Clipping search: per (row, group), the clip ratio in 1, 0.95, ..., 0.5
 * minimizing that group's output error (through its diagonal block of H),
 * then RTN with it into m. */
int nb_awq_clip_quantize(struct nb_qmat *m, const float *w, const struct nb_calib_stat *st);

/* ---- GPTQ (tools/quant/gptq.c) ----------------------------------------------- */

struct nb_gptq_opts {
	float damp;     /* added to the diagonal of H, times its mean (0.01) */
	bool act_order; /* columns by decreasing H_ii, groups fixed up front */
};

/* Quantizes w [rows][cols] column by column, feeding each column's error
 * back into the columns not yet quantized through the inverse Hessian of
 * the calibration inputs st (Frantar et al. 2022). m is allocated. */
int nb_gptq_quantize(struct nb_qmat *m, const float *w, const struct nb_calib_stat *st,
		     const struct nb_gptq_opts *o);

/* ---- the plan: which tensor gets which type (tools/quant/quantize.c) -------- */

#define NB_QPLAN_MAX_KEEP 64

struct nb_qkeep {
	uint32_t type; /* NB_DTYPE_F32 or a quantized type */
	char name[NB_TENSOR_NAME_MAX];
};

struct nb_qplan {
	uint32_t type; /* of every matrix not kept */
	size_t n_keep;
	struct nb_qkeep keep[NB_QPLAN_MAX_KEEP];
};

/* "q4_g32" ... "q8_g32" (or "q8"); with allow_f32 also "f32". */
int nb_qplan_parse_type(const char *s, bool allow_f32, uint32_t *type);
/* --keep TYPE:NAME[,NAME...]: NAME is embed, output, attn_q, attn_k,
 * attn_v, attn_output, ffn_gate, ffn_up, ffn_down (every layer's) or a
 * tensor name (blk.3.ffn_down[.weight]). A later --keep wins. */
int nb_qplan_add_keep(struct nb_qplan *p, const char *arg);
/* The type of a tensor of a model whose output matrix is (tied) or is not
 * the embedding: vectors stay float32. */
uint32_t nb_qplan_type_of(const struct nb_qplan *p, const char *name, uint32_t ndim, bool tied);
/* -NB_EINVAL naming a keep name that matches none of names[0..n). */
int nb_qplan_check(const struct nb_qplan *p, const char *const *names, size_t n, bool tied);

/* ---- the whole job (tools/quant/quantize.c) ----------------------------- */

enum nb_qmethod { NB_QMETHOD_RTN, NB_QMETHOD_AWQ, NB_QMETHOD_GPTQ, NB_QMETHOD_COUNT };
extern const char *const nb_qmethod_names[NB_QMETHOD_COUNT]; /* "rtn", "awq", "gptq" */

#define NB_QUANTIZE_MAX_CALIB_TOKENS (1u << 20)
#define NB_GPTQ_DAMP 0.01f /* default of nb_gptq_opts.damp */

struct nb_quantize_opts {
	const char *src, *out;
	struct nb_src_opts src_opts;
	struct nb_qplan plan;
	enum nb_qmethod method;
	const char *calib;        /* calibration text: needed by awq and gptq */
	uint32_t calib_tokens;    /* 1..NB_QUANTIZE_MAX_CALIB_TOKENS of it */
	bool act_order;           /* gptq */
	float damp;               /* gptq, (0, 1] */
	bool no_clip;             /* awq */
	const char *name;         /* NULL: the source's */
	const char *golden_prompt;
	uint32_t golden_steps;
	uint64_t model_version;   /* 0: the source's, else 1 */
	const char *creator;      /* manifest "created_by" */
};

/* -NB_EINVAL, logged, for options that cannot work together: no
 * calibration text for awq/gptq, values out of range. */
int nb_quantize_check(const struct nb_quantize_opts *o);
/* Loads o->src, quantizes it by o->method as o->plan says, and writes
 * o->out (atomically: nothing on failure). Details through the logger. */
int nb_quantize_image(const struct nb_quantize_opts *o);

#endif
