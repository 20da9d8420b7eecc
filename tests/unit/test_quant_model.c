/* The quantized model end to end on the real stories260K weights: the
 * logits are bit-identical whatever the kernel backend, the thread count
 * or the batch a token runs in, and close to the float model's. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "kernels/kernels.h"
#include "runtime/base/err.h"
#include "runtime/model/forward.h"
#include "runtime/model/pool.h"
#include "tools/import/ckpt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct qmodel {
	struct nb_ckpt c;
	struct nb_tensor t[64];
	void *data[64];
	size_t n;
	struct nb_model m;
};

/* Every matrix of the checkpoint in `type` (norms stay float), but the
 * query matrices in q_type (0: type too); with dequant, stored back as
 * float32 after quantization. */
static void quantize_mixed(struct qmodel *q, uint32_t type, uint32_t q_type, int dequant)
{
	nb_ckpt_init(&q->c);
	assert_int_equal(nb_import_llama2c(&q->c, "models/stories260K/stories260K.bin",
					   "models/stories260K/tok512.bin"), 0);
	q->n = q->c.n_tensors;
	for (size_t i = 0; i < q->n; i++) {
		const struct nb_ckpt_tensor *ct = &q->c.tensors[i];
		struct nb_tensor *t = &q->t[i];
		uint64_t bytes;

		const uint32_t tt = q_type && strstr(ct->name, "attn_q") ? q_type : type;

		t->name = ct->name;
		t->ndim = ct->ndim;
		memcpy(t->shape, ct->shape, sizeof(t->shape));
		if (ct->ndim == 2 && tt != NB_DTYPE_F32) {
			assert_int_equal(nb_qtensor_bytes(tt, ct->shape[0], ct->shape[1], &bytes), 0);
			q->data[i] = malloc(bytes);
			assert_int_equal(nb_quantize_rtn(tt, ct->data, ct->shape[0], ct->shape[1],
							 q->data[i]), 0);
			t->type = tt;
			t->data = q->data[i];
			t->size = bytes;
			if (dequant) {
				for (uint64_t r = 0; r < ct->shape[0]; r++)
					nb_quant_dequant_row(tt, q->data[i], ct->shape[1], r,
							     ct->data + r * ct->shape[1]);
				t->type = NB_DTYPE_F32;
				t->data = ct->data;
				t->size = ct->shape[0] * ct->shape[1] * 4;
			}
		} else {
			q->data[i] = NULL;
			t->type = NB_DTYPE_F32;
			t->data = ct->data;
			t->size = ct->ndim == 2 ? ct->shape[0] * ct->shape[1] * 4 : ct->shape[0] * 4;
		}
	}
	nb_model_init(&q->m);
	assert_int_equal(nb_model_bind(&q->m, &q->c.hp, q->t, q->n), 0);
}

static void quantize_model_to(struct qmodel *q, uint32_t type, int dequant)
{
	quantize_mixed(q, type, 0, dequant);
}

static void quantize_model(struct qmodel *q, uint32_t type)
{
	quantize_model_to(q, type, 0);
}

static void free_model(struct qmodel *q)
{
	nb_model_free(&q->m);
	for (size_t i = 0; i < q->n; i++)
		free(q->data[i]);
	nb_ckpt_free(&q->c);
}

static const int32_t prompt[] = { 1, 403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315 };
#define NP (sizeof(prompt) / sizeof(prompt[0]))

/* Logits after every prompt position, one token at a time. */
static void run_seq(const struct nb_model *m, const struct nb_kernels *k, struct nb_pool *pool,
		    float *out)
{
	const struct nb_fwd_opts o = { .max_ctx = 64, .max_batch = 8, .pool = pool, .kernels = k };
	struct nb_fwd f;
	float *lg;

	assert_int_equal(nb_fwd_open_opts(&f, m, &o), 0);
	for (uint32_t p = 0; p < NP; p++) {
		assert_int_equal(nb_fwd_token(&f, prompt[p], p, &lg), 0);
		memcpy(out + p * 512, lg, 512 * sizeof(float));
	}
	nb_fwd_close(&f);
}

/* The same positions as one batched prompt (logits of every row), with an
 * unrelated second sequence interleaved in the same batches. */
static void run_batched(const struct nb_model *m, const struct nb_kernels *k, float *out)
{
	const struct nb_fwd_opts o = { .max_ctx = 64, .max_batch = 8, .kernels = k };
	struct nb_fwd f;
	struct nb_kv other;
	float *lg;

	assert_int_equal(nb_fwd_open_opts(&f, m, &o), 0);
	assert_int_equal(nb_kv_open(&other, m, 64), 0);
	for (uint32_t p0 = 0; p0 < NP; p0 += 4) {
		int32_t tok[8];
		uint32_t pos[8];
		struct nb_kv *kv[8];
		uint8_t want[8];
		uint32_t n = 0, mine = 0;
		for (uint32_t p = p0; p < p0 + 4 && p < NP; p++) {
			tok[n] = prompt[p]; pos[n] = p; kv[n] = NULL; want[n++] = 1;
			tok[n] = prompt[NP - 1 - p]; pos[n] = p; kv[n] = &other; want[n++] = 0;
		}
		assert_int_equal(nb_fwd_batch(&f, n, tok, pos, kv, want, &lg), 0);
		for (uint32_t p = p0; p < p0 + 4 && p < NP; p++)
			memcpy(out + p * 512, lg + (mine++) * 512, 512 * sizeof(float));
	}
	nb_kv_close(&other);
	nb_fwd_close(&f);
}

/* type for every matrix, q_type (0: type) for the query matrices: an image
 * may mix group sizes, and one matrix product can then span both. */
static void check_mixed(uint32_t type, uint32_t q_type)
{
	float *ref = malloc(NP * 512 * 4), *got = malloc(NP * 512 * 4), *fl = malloc(NP * 512 * 4);
	struct qmodel q, fq;
	struct nb_cpu cpu;
	struct nb_pool pool;
	double max_diff = 0;

	nb_cpu_detect(&cpu);
	quantize_mixed(&q, type, q_type, 0);
	run_seq(&q.m, &nb_kernels_scalar, NULL, ref);
	for (size_t i = 0; i < nb_kernels_count(); i++) {
		const struct nb_kernels *k = nb_kernels_at(i);
		if (!nb_kernels_runs_on(k, &cpu))
			continue;
		run_seq(&q.m, k, NULL, got);
		if (memcmp(ref, got, NP * 512 * 4) != 0)
			fail_msg("%s: %s logits differ from scalar", nb_qinfo(type)->name, k->name);
		/* 5 threads on this 2-CPU machine: preempted threads, so the
		 * matrix products' work stealing takes its every path */
		for (unsigned nth = 2; nth <= 5; nth += 3) {
			assert_int_equal(nb_pool_open(&pool, nth, NULL), 0);
			run_seq(&q.m, k, &pool, got);
			nb_pool_close(&pool);
			if (memcmp(ref, got, NP * 512 * 4) != 0)
				fail_msg("%s: %s on %u threads differs", nb_qinfo(type)->name,
					 k->name, nth);
		}
		run_batched(&q.m, k, got);
		if (memcmp(ref, got, NP * 512 * 4) != 0)
			fail_msg("%s: %s batched differs", nb_qinfo(type)->name, k->name);
	}
	/* The integer path computes what the dequantized weights compute in
	 * float, up to the int8 rounding of the activations. */
	quantize_mixed(&fq, type, q_type, 1);
	run_seq(&fq.m, &nb_kernels_scalar, NULL, fl);
	for (size_t i = 0; i < NP * 512; i++)
		max_diff = fmax(max_diff, fabs((double)ref[i] - fl[i]));
	printf("# %s: max |logit - dequantized float| %.4f over %zu positions\n",
	       nb_qinfo(type)->name, max_diff, NP);
	assert_true(max_diff < 0.5);
	free_model(&fq);
	free_model(&q);
	free(ref);
	free(got);
	free(fl);
}

static void check_type(uint32_t type)
{
	check_mixed(type, 0);
}

static void test_q4_g32(void **s) { (void)s; check_type(NB_QTYPE_Q4_G32); }
static void test_q4_g64(void **s) { (void)s; check_type(NB_QTYPE_Q4_G64); }
static void test_q4_g128(void **s) { (void)s; check_type(NB_QTYPE_Q4_G128); }
static void test_q4z_g32(void **s) { (void)s; check_type(NB_QTYPE_Q4Z_G32); }
static void test_q4z_g128(void **s) { (void)s; check_type(NB_QTYPE_Q4Z_G128); }
static void test_q8_g32(void **s) { (void)s; check_type(NB_QTYPE_Q8_G32); }
/* q/k/v in one product with group 32 and group 128 weights. */
static void test_mixed_groups(void **s) { (void)s; check_mixed(NB_QTYPE_Q4_G128, NB_QTYPE_Q8_G32); }
/* The same with group 64 and group 128 (no group size is special). */
static void test_mixed_groups_64(void **s) { (void)s; check_mixed(NB_QTYPE_Q4_G64, NB_QTYPE_Q4_G128); }

/* The float path is batch- and thread-invariant too. */
static void test_f32_batched(void **s)
{
	float *a = malloc(NP * 512 * 4), *b = malloc(NP * 512 * 4);
	struct qmodel q;
	struct nb_pool pool;
	(void)s;

	quantize_model(&q, NB_DTYPE_F32);
	run_seq(&q.m, &nb_kernels_scalar, NULL, a);
	run_batched(&q.m, &nb_kernels_scalar, b);
	assert_memory_equal(a, b, NP * 512 * 4);
	assert_int_equal(nb_pool_open(&pool, 2, NULL), 0);
	run_seq(&q.m, &nb_kernels_scalar, &pool, b);
	nb_pool_close(&pool);
	assert_memory_equal(a, b, NP * 512 * 4);
	free_model(&q);
	free(a);
	free(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_q4_g32),   cmocka_unit_test(test_q4_g64),
		cmocka_unit_test(test_q4_g128),  cmocka_unit_test(test_mixed_groups_64),
		cmocka_unit_test(test_q4z_g32),  cmocka_unit_test(test_q4z_g128),
		cmocka_unit_test(test_q8_g32),   cmocka_unit_test(test_mixed_groups),
		cmocka_unit_test(test_f32_batched),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
