/* The acceptance path of a model: each source format (llama2.c, HF
 * safetensors, GGUF F32) -> nb_ckpt -> .nib image on disk -> nb_llm_open
 * (mmap) -> the tokenizer and forward pass reproduce the independent
 * reference: prompt ids, 48 greedy tokens, final logits within 1e-4. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "tools/import/ckpt.h"
#include "tools/import/image_write.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/testutil.h"

#define REF "tests/data/stories260K/reference.json"

static size_t json_ids(const cJSON *arr, int32_t *out, size_t max)
{
	size_t n = 0;
	const cJSON *it;

	cJSON_ArrayForEach(it, arr)
	{
		assert_true(n < max);
		out[n++] = (int32_t)it->valuedouble;
	}
	return n;
}

/* Writes the checkpoint as an image the way `nibble convert` does. */
static void write_image(const struct nb_ckpt *c, const char *path)
{
	struct nb_tensor *v = calloc(c->n_tensors, sizeof(*v));
	static const struct nb_image_kv meta[] = { { "name", "stories260K" } };

	assert_non_null(v);
	for (size_t i = 0; i < c->n_tensors; i++) {
		uint64_t n = 1;
		for (uint32_t d = 0; d < c->tensors[i].ndim; d++)
			n *= c->tensors[i].shape[d];
		v[i] = (struct nb_tensor){ .name = c->tensors[i].name, .type = NB_DTYPE_F32,
					   .ndim = c->tensors[i].ndim, .data = c->tensors[i].data,
					   .size = n * sizeof(float) };
		memcpy(v[i].shape, c->tensors[i].shape, sizeof(v[i].shape));
	}
	assert_int_equal(nb_image_write(path, &(struct nb_image_spec){
				 .hp = &c->hp, .tok = &c->tok, .model_version = 1, .meta = meta,
				 .n_meta = 1, .tensors = v, .n_tensors = c->n_tensors }),
			 0);
	free(v);
}

static void check_prompt(const struct nb_llm *l, const cJSON *p, double *max_diff)
{
	const cJSON *text = cJSON_GetObjectItem(p, "prompt");
	const cJSON *ref_logits = cJSON_GetObjectItem(p, "base_final_logits");
	int32_t want_ids[512], ids[512], want[512], got[512];
	size_t n_want_ids = json_ids(cJSON_GetObjectItem(p, "ids"), want_ids, 512), n_ids = 0;
	size_t n_want = json_ids(cJSON_GetObjectItem(cJSON_GetObjectItem(p, "base"), "greedy_ids"),
				 want, 512);
	struct nb_fwd f;
	float *logits;
	int i = 0;
	const cJSON *it;

	/* The image's tokenizer gives the reference prompt ids (BOS first). */
	assert_int_equal(nb_tok_encode(l->tok, text->valuestring, strlen(text->valuestring), true,
				       ids, 512, &n_ids),
			 0);
	assert_int_equal(n_ids, n_want_ids);
	assert_memory_equal(ids, want_ids, n_ids * sizeof(int32_t));

	assert_int_equal(nb_fwd_open(&f, &l->model, 512), 0);
	assert_int_equal(nb_fwd_prompt(&f, ids, n_ids, 0, &logits), 0);
	cJSON_ArrayForEach(it, ref_logits)
	{
		double d = fabs((double)logits[i++] - it->valuedouble);
		*max_diff = d > *max_diff ? d : *max_diff;
		if (d > 1e-4)
			fail_msg("%s: logit %d differs by %g", text->valuestring, i - 1, d);
	}
	assert_int_equal(i, 512);
	nb_fwd_close(&f);

	assert_int_equal(nb_llm_greedy(&l->model, ids, (uint32_t)n_ids, (uint32_t)n_want, got), 0);
	for (size_t k = 0; k < n_want; k++)
		if (got[k] != want[k])
			fail_msg("%s: greedy token %zu is %d, reference %d", text->valuestring, k,
				 got[k], want[k]);
}

static void run_source(int (*import)(struct nb_ckpt *), const char *label)
{
	char path[] = "/tmp/nb-pipeline-XXXXXX";
	int fd = mkstemp(path);
	cJSON *ref = test_load_json(REF), *p;
	struct nb_ckpt c;
	struct nb_llm l;
	double max_diff = 0;

	assert_true(fd >= 0);
	close(fd);
	nb_ckpt_init(&c);
	assert_int_equal(import(&c), 0);
	assert_int_equal(nb_ckpt_validate(&c), 0);
	write_image(&c, path);
	nb_ckpt_free(&c);

	assert_int_equal(nb_llm_open(&l, path, 0), 0);
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "prompts"))
		check_prompt(&l, p, &max_diff);
	nb_llm_close(&l);
	printf("# %s: 6 prompts x 48 greedy tokens equal; max |logit diff| %.3g\n", label, max_diff);
	unlink(path);
	cJSON_Delete(ref);
}

static int import_llama2c(struct nb_ckpt *c)
{
	return nb_import_llama2c(c, "models/stories260K/stories260K.bin",
				 "models/stories260K/tok512.bin");
}

static int import_hf(struct nb_ckpt *c)
{
	return nb_import_hf(c, "tests/data/stories260K/hf");
}

static int import_gguf(struct nb_ckpt *c)
{
	return nb_import_gguf(c, "tests/data/stories260K/gguf/stories260K-f32.gguf");
}

static void test_llama2c_image(void **state)
{
	(void)state;
	run_source(import_llama2c, "llama2.c");
}

static void test_hf_image(void **state)
{
	(void)state;
	run_source(import_hf, "HF safetensors");
}

static void test_gguf_image(void **state)
{
	(void)state;
	run_source(import_gguf, "GGUF F32");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama2c_image),
		cmocka_unit_test(test_hf_image),
		cmocka_unit_test(test_gguf_image),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
