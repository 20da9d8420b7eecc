/* The kernel dispatch table. The scalar backend (ref.c) is the
 * specification: every other backend must return exactly what it returns,
 * for every input, so results never depend on the board. */
#ifndef NB_KERNELS_H
#define NB_KERNELS_H

#include "kernels/cpu.h"
#include "kernels/quant.h"
#include "runtime/base/kconfig.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest k a kernel accepts: 65536 * 128 * 128 = 2^30, so no int32 sum
 * (total or partial, in any order) can overflow. Callers split longer rows. */
#define NB_KERNEL_MAX_K 65536u

/* Quantized matrix product of one type: out[i * ldo + r] = sum_k a[i][k]
 * w[r][k] for activation rows i < a->m and weight rows r0 <= r < r1 (r0 a
 * multiple of NB_QROWS). w is a {rows, a->k} matrix of the type, whose
 * group is a->group. Each output is computed wholly by one call, in the
 * order kernels/quant.h defines, so splitting rows across threads or
 * batching activations never changes a result. */
typedef void (*nb_mm_q_fn)(float *out, size_t ldo, const struct nb_qact *a, const void *w,
			   uint64_t rows, uint64_t r0, uint64_t r1);

struct nb_kernels {
	const char *name;
	unsigned requires; /* NB_CPU_* bits the backend executes */
	unsigned act_flags; /* NB_QACT_* the activations it is given should have */
	/* Optional (NULL: the CPU features alone decide): whether the device
	 * the backend drives is there and ready. The first call may set it up
	 * (OpenCL builds its kernels); a false answer has logged why. */
	bool (*available)(void);

	/* The backend's kernel of each quantized type, at type - NB_QTYPE_MIN;
	 * NULL: the scalar reference's (nb_kernels_mm_q calls the one that
	 * applies). */
	nb_mm_q_fn mm_q[NB_QTYPE_COUNT];

	/* Attention of n_q (1..4) query heads that share one key/value head,
	 * over the positions t < n: out [n_q][hd] = softmax_t(q . k_t * scale)
	 * weighting v_t, for q [n_q][hd] and k, v [n][hd]; scratch holds
	 * 4 (n + hd) floats. Float, in the order kernels/attn.h defines. */
	void (*attend)(float *out, float *scratch, const float *q, const float *k, const float *v,
		       uint32_t hd, uint32_t n_q, uint32_t n, float scale);

	/* gate[i] = silu(gate[i]) * up[i], i < n, in kernels/vec.h's
	 * arithmetic (v4_silu_mul). */
	void (*silu_mul)(float *gate, const float *up, size_t n);

	/* Optional (NULL: kernels/quant.c's own): one whole block of G floats
	 * (G % 16 == 0) quantized as nb_quant_act defines, the same bits. */
	void (*quant_block)(const float *x, uint32_t G, int8_t *q, float *d, int32_t *sum);
};

/* The specification (ref.c); the other backends are listed in kernels.c. */
extern const struct nb_kernels nb_kernels_scalar;

/* Backends built into this binary, best first, the scalar one last. */
size_t nb_kernels_count(void);
const struct nb_kernels *nb_kernels_at(size_t i);

/* The CPU has what k requires and k's device, if any, is available. */
bool nb_kernels_runs_on(const struct nb_kernels *k, const struct nb_cpu *cpu);

/* The best backend this CPU runs, or the one named (NULL if that one is
 * not built in or not supported here). name NULL = best. */
const struct nb_kernels *nb_kernels_select(const struct nb_cpu *cpu, const char *name);

/* The scalar quantized matmul of any type: the specification. */
void nb_mm_q_ref(float *out, size_t ldo, const struct nb_qact *a, uint32_t type, const void *w,
		 uint64_t rows, uint64_t r0, uint64_t r1);

/* The quantized matrix product of a type (nb_qinfo(type) != NULL) on
 * backend k: its kernel of the type, or the scalar reference where it has
 * none. Every product of the runtime and of the checks comes through here. */
static inline void nb_kernels_mm_q(const struct nb_kernels *k, float *out, size_t ldo,
				   const struct nb_qact *a, uint32_t type, const void *w,
				   uint64_t rows, uint64_t r0, uint64_t r1)
{
	const nb_mm_q_fn f = k->mm_q[type - NB_QTYPE_MIN];

	if (f)
		f(out, ldo, a, w, rows, r0, r1);
	else
		nb_mm_q_ref(out, ldo, a, type, w, rows, r0, r1);
}

#endif
