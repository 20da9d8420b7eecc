/* Model binding and the float32 forward pass, against the independent
 * PyTorch reference outputs of stories260K (tests/data/stories260K/reference.json). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/model/forward.h"
#include "runtime/model/model.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_BIN "models/stories260K/stories260K.bin"
#define REFERENCE_JSON "tests/data/stories260K/reference.json"

/* ---- allocation counting (ASan builds only) ----------------------------- */

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_MALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_MALLOC_HOOKS 1
#endif
#endif

#ifdef HAVE_MALLOC_HOOKS
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));
static volatile size_t n_mallocs;
static void count_malloc(const volatile void *p, size_t size)
{
	(void)p;
	(void)size;
	n_mallocs++;
}
static void ignore_free(const volatile void *p) { (void)p; }
#endif

/* ---- a test-local reader of the llama2.c legacy checkpoint -------------- */

#define MAX_LAYERS 8
#define N_TENSORS (3 + 9 * MAX_LAYERS)

struct legacy {
	struct nb_hparams hp;
	float *buf;
	struct nb_tensor t[N_TENSORS];
	char names[N_TENSORS][NB_TENSOR_NAME_MAX];
	size_t n;
};

static void add_tensor(struct legacy *lg, const char *name, uint32_t ndim, uint64_t d0,
		       uint64_t d1, const float *data)
{
	struct nb_tensor *t = &lg->t[lg->n];

	assert_true(lg->n < N_TENSORS);
	snprintf(lg->names[lg->n], NB_TENSOR_NAME_MAX, "%s", name);
	t->name = lg->names[lg->n];
	t->type = NB_DTYPE_F32;
	t->ndim = ndim;
	t->shape[0] = d0;
	t->shape[1] = ndim > 1 ? d1 : 0;
	t->data = data;
	t->size = d0 * (ndim > 1 ? d1 : 1) * sizeof(float);
	lg->n++;
}

/* One tensor per layer out of a stacked [L, d0, d1] array; returns the end. */
static const float *add_stacked(struct legacy *lg, const char *suffix, uint32_t ndim, uint64_t d0,
				uint64_t d1, const float *p)
{
	char name[NB_TENSOR_NAME_MAX];
	uint64_t per = d0 * (ndim > 1 ? d1 : 1);

	for (uint32_t l = 0; l < lg->hp.n_layers; l++) {
		snprintf(name, sizeof(name), "blk.%u.%s", l, suffix);
		add_tensor(lg, name, ndim, d0, d1, p + l * per);
	}
	return p + lg->hp.n_layers * per;
}

static void legacy_load(struct legacy *lg, const char *path)
{
	FILE *fp = fopen(path, "rb");
	int32_t h[7];
	long size;

	memset(lg, 0, sizeof(*lg));
	assert_non_null(fp);
	assert_int_equal(fread(h, sizeof(h), 1, fp), 1);
	assert_int_equal(fseek(fp, 0, SEEK_END), 0);
	size = ftell(fp);
	assert_true(size > (long)sizeof(h));
	lg->buf = malloc((size_t)size - sizeof(h));
	assert_non_null(lg->buf);
	assert_int_equal(fseek(fp, (long)sizeof(h), SEEK_SET), 0);
	assert_int_equal(fread(lg->buf, (size_t)size - sizeof(h), 1, fp), 1);
	fclose(fp);

	assert_true(h[2] > 0 && h[2] <= MAX_LAYERS && h[3] > 0);
	lg->hp = (struct nb_hparams){
		.arch = NB_ARCH_LLAMA, .dim = (uint32_t)h[0], .hidden_dim = (uint32_t)h[1],
		.n_layers = (uint32_t)h[2], .n_heads = (uint32_t)h[3], .n_kv_heads = (uint32_t)h[4],
		.head_dim = (uint32_t)(h[0] / h[3]), .vocab_size = (uint32_t)abs(h[5]),
		.seq_len = (uint32_t)h[6], .tied_embeddings = h[5] > 0, .norm_eps = 1e-5f,
		.rope_theta = 10000.0f,
	};
}

/* The tensors in file order, checking that they exactly fill the file. */
static void legacy_bind_tensors(struct legacy *lg, long payload_floats)
{
	const struct nb_hparams *hp = &lg->hp;
	uint64_t dim = hp->dim, hid = hp->hidden_dim, kv = (uint64_t)hp->n_kv_heads * hp->head_dim;
	const float *p = lg->buf;

	add_tensor(lg, "token_embd.weight", 2, hp->vocab_size, dim, p);
	p += hp->vocab_size * dim;
	p = add_stacked(lg, "attn_norm.weight", 1, dim, 0, p);
	p = add_stacked(lg, "attn_q.weight", 2, dim, dim, p);
	p = add_stacked(lg, "attn_k.weight", 2, kv, dim, p);
	p = add_stacked(lg, "attn_v.weight", 2, kv, dim, p);
	p = add_stacked(lg, "attn_output.weight", 2, dim, dim, p);
	p = add_stacked(lg, "ffn_norm.weight", 1, dim, 0, p);
	p = add_stacked(lg, "ffn_gate.weight", 2, hid, dim, p);
	p = add_stacked(lg, "ffn_down.weight", 2, dim, hid, p);
	p = add_stacked(lg, "ffn_up.weight", 2, hid, dim, p);
	add_tensor(lg, "output_norm.weight", 1, dim, 0, p);
	p += dim;
	p += (uint64_t)hp->seq_len * hp->head_dim; /* freq_cis_real, freq_cis_imag */
	if (!hp->tied_embeddings) {
		add_tensor(lg, "output.weight", 2, hp->vocab_size, dim, p);
		p += hp->vocab_size * dim;
	}
	assert_int_equal(p - lg->buf, payload_floats);
}

struct fixture {
	struct legacy lg;
	struct nb_model m;
	cJSON *ref;
};

static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *s;
	long n;

	if (!fp)
		return NULL;
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	s = malloc((size_t)n + 1);
	if (s && fread(s, 1, (size_t)n, fp) != (size_t)n) {
		free(s);
		s = NULL;
	}
	if (s)
		s[n] = '\0';
	fclose(fp);
	return s;
}

static int setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	FILE *fp;
	long size;
	char *text;

	assert_non_null(fx);
	legacy_load(&fx->lg, MODEL_BIN);
	fp = fopen(MODEL_BIN, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	size = ftell(fp);
	fclose(fp);
	legacy_bind_tensors(&fx->lg, (size - 28) / 4);
	nb_model_init(&fx->m);
	assert_int_equal(nb_model_bind(&fx->m, &fx->lg.hp, fx->lg.t, fx->lg.n), 0);
	text = read_text(REFERENCE_JSON);
	assert_non_null(text);
	fx->ref = cJSON_Parse(text);
	free(text);
	assert_non_null(fx->ref);
	*state = fx;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *fx = *state;

	nb_model_free(&fx->m);
	nb_model_free(&fx->m); /* idempotent */
	cJSON_Delete(fx->ref);
	free(fx->lg.buf);
	free(fx);
	return 0;
}

static const struct nb_hparams stories_hp = {
	.arch = NB_ARCH_LLAMA, .dim = 64, .hidden_dim = 172, .n_layers = 5, .n_heads = 8,
	.n_kv_heads = 4, .head_dim = 8, .vocab_size = 512, .seq_len = 512, .tied_embeddings = 1,
	.norm_eps = 1e-5f, .rope_theta = 10000.0f,
};

/* ---- hyper-parameters and tensor shapes --------------------------------- */

static void test_hparams_check(void **state)
{
	struct nb_hparams hp;
	(void)state;

	assert_int_equal(nb_hparams_check(&stories_hp), 0);
#define CHECK(field, value, err)                                \
	do {                                                    \
		hp = stories_hp;                                \
		hp.field = value;                               \
		assert_int_equal(nb_hparams_check(&hp), err);   \
	} while (0)
#define BAD(field, value) CHECK(field, value, -NB_EFORMAT)
	/* what this build does not know, from a newer writer */
	CHECK(arch, 0, -NB_ENOTSUP);
	CHECK(arch, 2, -NB_ENOTSUP);
	CHECK(features, 1u << 5, -NB_ENOTSUP);
	CHECK(activation, NB_ACT_COUNT, -NB_ENOTSUP);
	/* the layer's pieces */
	CHECK(features, NB_FEAT_QKV_BIAS | NB_FEAT_QK_NORM, 0);
	CHECK(activation, NB_ACT_GELU_TANH, 0);
	CHECK(norm_offset, 1.0f, 0);
	CHECK(embed_scale, 8.0f, 0);
	BAD(norm_offset, 0.5f);
	BAD(norm_offset, NAN);
	BAD(embed_scale, -1.0f);
	BAD(embed_scale, NAN);
	BAD(embed_scale, INFINITY);
	BAD(embed_scale, 1e6f);
	/* bounds a little above the largest models: a flipped byte fails here */
	CHECK(seq_len, 131072, 0);
	CHECK(seq_len, 1u << 20, 0);
	BAD(seq_len, 16712192); /* 512 with its third byte flipped to 0xff */
	BAD(seq_len, (1u << 20) + 1);
	CHECK(dim, 16384, 0);
	BAD(dim, 16385);
	CHECK(hidden_dim, 65536, 0);
	BAD(hidden_dim, 65537);
	CHECK(n_layers, 256, 0);
	BAD(n_layers, 257);
	CHECK(vocab_size, 262144, 0);
	BAD(vocab_size, (1u << 20) + 1);
	BAD(head_dim, 514);
	BAD(norm_eps, 0.5f);
	BAD(rope_theta, 1.0f);
	BAD(rope_theta, 1e11f);
	BAD(dim, 0);
	BAD(dim, 1u << 20);
	BAD(hidden_dim, 0);
	BAD(n_layers, 100000);
	BAD(n_heads, 0);
	BAD(n_kv_heads, 0);
	BAD(n_kv_heads, 3);  /* 8 % 3 != 0 */
	BAD(n_kv_heads, 16); /* more KV heads than heads */
	BAD(head_dim, 7);
	BAD(head_dim, 1u << 30);
	BAD(vocab_size, 0);
	BAD(vocab_size, 0xffffffffu);
	BAD(seq_len, 0);
	BAD(tied_embeddings, 2);
	BAD(norm_eps, 0.0f);
	BAD(norm_eps, NAN);
	BAD(rope_theta, -1.0f);
	BAD(rope_theta, INFINITY);
	BAD(rope_scaling, 7);
	BAD(rope_scaling, NB_ROPE_SCALING_LLAMA3); /* factors left at 0 */
#undef BAD
#undef CHECK
	/* n_heads * head_dim is the k of the output projection */
	hp = stories_hp;
	hp.n_heads = 1024;
	hp.n_kv_heads = 1;
	hp.head_dim = 1024;
	assert_int_equal(nb_hparams_check(&hp), -NB_EFORMAT);

	hp = stories_hp;
	hp.rope_scaling = NB_ROPE_SCALING_LLAMA3;
	hp.rope_factor = 8.0f;
	hp.rope_low_freq_factor = 1.0f;
	hp.rope_high_freq_factor = 4.0f;
	hp.rope_orig_ctx = 8192;
	assert_int_equal(nb_hparams_check(&hp), 0);
	hp.rope_high_freq_factor = 1.0f; /* the blend divides by high - low */
	assert_int_equal(nb_hparams_check(&hp), -NB_EFORMAT);
	hp.rope_high_freq_factor = 4.0f;
	hp.rope_factor = 1e6f;
	assert_int_equal(nb_hparams_check(&hp), -NB_EFORMAT);
}

static void expect_shape(const struct nb_hparams *hp, const char *name, uint32_t ndim, uint64_t d0,
			 uint64_t d1)
{
	uint64_t shape[4];
	uint32_t nd;

	assert_int_equal(nb_model_tensor_shape(hp, name, &nd, shape), 0);
	assert_int_equal(nd, ndim);
	assert_int_equal(shape[0], d0);
	if (ndim > 1)
		assert_int_equal(shape[1], d1);
}

static void test_tensor_shapes(void **state)
{
	static const char *const not_ours[] = {
		"output.weight", "blk.5.attn_q.weight", "blk.01.attn_q.weight", "blk.-1.attn_q.weight",
		"blk..attn_q.weight", "blk.0", "blk.0.", "blk.0.attn_q", "blk.0.attn_q.weightx",
		"blk.99999999999999999999999.attn_q.weight", "token_embd", "", "rope_freqs.weight",
	};
	struct nb_hparams hp = stories_hp;
	uint64_t shape[4];
	uint32_t nd;
	(void)state;

	expect_shape(&hp, "token_embd.weight", 2, 512, 64);
	expect_shape(&hp, "output_norm.weight", 1, 64, 0);
	expect_shape(&hp, "blk.0.attn_norm.weight", 1, 64, 0);
	expect_shape(&hp, "blk.0.attn_q.weight", 2, 64, 64);
	expect_shape(&hp, "blk.4.attn_k.weight", 2, 32, 64);
	expect_shape(&hp, "blk.3.attn_v.weight", 2, 32, 64);
	expect_shape(&hp, "blk.2.attn_output.weight", 2, 64, 64);
	expect_shape(&hp, "blk.1.ffn_norm.weight", 1, 64, 0);
	expect_shape(&hp, "blk.1.ffn_gate.weight", 2, 172, 64);
	expect_shape(&hp, "blk.1.ffn_up.weight", 2, 172, 64);
	expect_shape(&hp, "blk.1.ffn_down.weight", 2, 64, 172);
	for (size_t i = 0; i < sizeof(not_ours) / sizeof(not_ours[0]); i++)
		assert_int_equal(nb_model_tensor_shape(&hp, not_ours[i], &nd, shape), -NB_ENOENT);

	hp.tied_embeddings = 0;
	expect_shape(&hp, "output.weight", 2, 512, 64);
	/* a head_dim that is not dim / n_heads: q_dim differs from dim */
	hp.head_dim = 16;
	expect_shape(&hp, "blk.0.attn_q.weight", 2, 128, 64);
	expect_shape(&hp, "blk.0.attn_output.weight", 2, 64, 128);
	expect_shape(&hp, "blk.0.attn_k.weight", 2, 64, 64);
	hp.n_layers = 12;
	expect_shape(&hp, "blk.11.ffn_down.weight", 2, 64, 172);
	assert_int_equal(nb_model_tensor_shape(&hp, "blk.12.ffn_down.weight", &nd, shape),
			 -NB_ENOENT);

	/* a feature's tensors are the model's exactly when it has the feature */
	assert_int_equal(nb_model_tensor_shape(&hp, "blk.0.attn_q.bias", &nd, shape), -NB_ENOENT);
	assert_int_equal(nb_model_tensor_shape(&hp, "blk.0.attn_k_norm.weight", &nd, shape),
			 -NB_ENOENT);
	hp.features = NB_FEAT_QKV_BIAS;
	expect_shape(&hp, "blk.0.attn_q.bias", 1, 128, 0);
	expect_shape(&hp, "blk.3.attn_k.bias", 1, 64, 0);
	expect_shape(&hp, "blk.11.attn_v.bias", 1, 64, 0);
	assert_int_equal(nb_model_tensor_shape(&hp, "blk.0.attn_q_norm.weight", &nd, shape),
			 -NB_ENOENT);
	hp.features = NB_FEAT_QK_NORM;
	expect_shape(&hp, "blk.0.attn_q_norm.weight", 1, 16, 0);
	expect_shape(&hp, "blk.5.attn_k_norm.weight", 1, 16, 0);
	assert_int_equal(nb_model_tensor_shape(&hp, "blk.0.attn_v.bias", &nd, shape), -NB_ENOENT);
}

static int count_name(void *arg, const char *name)
{
	size_t *n = arg;

	(*n)++;
	return strcmp(name, "blk.1.attn_k_norm.weight") == 0 ? 7 : 0;
}

/* The canonical list follows the features; a callback's non-zero stops it. */
static void test_each_tensor(void **state)
{
	struct nb_hparams hp = stories_hp;
	size_t n = 0;
	(void)state;

	assert_int_equal(nb_model_each_tensor(&hp, count_name, &n), 0);
	assert_int_equal(n, 2 + 5 * 9); /* tied: no output.weight */
	hp.tied_embeddings = 0;
	hp.features = NB_FEAT_QKV_BIAS;
	n = 0;
	assert_int_equal(nb_model_each_tensor(&hp, count_name, &n), 0);
	assert_int_equal(n, 3 + 5 * 12);
	hp.features = NB_FEAT_QKV_BIAS | NB_FEAT_QK_NORM;
	n = 0;
	assert_int_equal(nb_model_each_tensor(&hp, count_name, &n), 7);
	assert_int_equal(n, 3 + 14 + 9); /* stopped at layer 1's k norm, its 9th */
}

static struct nb_tensor *find(struct nb_tensor *t, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(t[i].name, name) == 0)
			return &t[i];
	fail_msg("no tensor %s", name);
	return NULL;
}

static void test_bind(void **state)
{
	struct fixture *fx = *state;
	struct nb_tensor t[N_TENSORS + 1], *x;
	struct nb_hparams hp = fx->lg.hp;
	struct nb_model m;
	size_t n = fx->lg.n;

	assert_ptr_equal(fx->m.output, fx->m.token_embd);
	assert_string_equal(fx->m.layers[4].w_down->name, "blk.4.ffn_down.weight");
	assert_string_equal(fx->m.layers[0].wk->name, "blk.0.attn_k.weight");

	nb_model_init(&m);
#define EXPECT(err)                                                             \
	do {                                                                    \
		assert_int_equal(nb_model_bind(&m, &hp, t, n), err);            \
		assert_null(m.layers);                                          \
		memcpy(t, fx->lg.t, sizeof(fx->lg.t));                          \
		hp = fx->lg.hp;                                                 \
		n = fx->lg.n;                                                   \
	} while (0)
	memcpy(t, fx->lg.t, sizeof(fx->lg.t));
	n = fx->lg.n - 1; /* output_norm is last */
	EXPECT(-NB_ENOENT);
	find(t, n, "blk.2.ffn_up.weight")->name = "blk.2.ffn_upp.weight";
	EXPECT(-NB_ENOENT);
	find(t, n, "blk.2.attn_k.weight")->shape[0] = 64;
	EXPECT(-NB_EFORMAT);
	find(t, n, "blk.2.attn_norm.weight")->ndim = 2;
	EXPECT(-NB_EFORMAT);
	find(t, n, "blk.0.attn_q.weight")->size -= 4;
	EXPECT(-NB_EFORMAT);
	find(t, n, "blk.0.attn_q.weight")->data = NULL;
	EXPECT(-NB_EFORMAT);
	x = find(t, n, "blk.0.attn_q.weight");
	x->data = (const char *)x->data + 2;
	EXPECT(-NB_EFORMAT);
	find(t, n, "blk.0.attn_v.weight")->type = NB_DTYPE_F16;
	EXPECT(-NB_ENOTSUP);
	find(t, n, "blk.0.attn_v.weight")->type = 40;
	EXPECT(-NB_ENOTSUP);
	find(t, n, "blk.1.ffn_norm.weight")->type = 40; /* norms stay float32 */
	EXPECT(-NB_ENOTSUP);
	t[n] = *find(t, n, "blk.3.ffn_gate.weight"); /* twice */
	n++;
	EXPECT(-NB_EFORMAT);
	hp.tied_embeddings = 0; /* output.weight now required */
	EXPECT(-NB_ENOENT);
	hp.n_kv_heads = 3;
	EXPECT(-NB_EFORMAT);
#undef EXPECT

	/* untied: output.weight is bound; unknown names are ignored */
	hp.tied_embeddings = 0;
	t[n] = *find(t, n, "token_embd.weight");
	t[n].name = "output.weight";
	n++;
	t[n] = *find(t, n, "output_norm.weight");
	t[n].name = "rope_freqs.weight";
	n++;
	assert_int_equal(nb_model_bind(&m, &hp, t, n), 0);
	assert_ptr_equal(m.output, &t[n - 2]);
	assert_ptr_not_equal(m.output, m.token_embd);
	nb_model_free(&m);
	assert_null(m.layers);
}

/* ---- the forward pass against the reference ----------------------------- */

static size_t json_ids(const cJSON *arr, int32_t *ids, size_t max)
{
	size_t n = 0;
	const cJSON *it;

	assert_true(cJSON_IsArray(arr));
	cJSON_ArrayForEach(it, arr) {
		assert_true(n < max && cJSON_IsNumber(it));
		ids[n++] = (int32_t)it->valueint;
	}
	return n;
}

static int32_t argmax(const float *x, size_t n)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (int32_t)best;
}

/* Every prompt of the reference: its final logits (returns the largest
 * difference) and 48 greedy tokens, which must be the reference's. */
static float check_reference(const struct nb_model *m, const cJSON *ref, const char *label)
{
	const cJSON *prompts = cJSON_GetObjectItem(ref, "prompts"), *p;
	int steps = cJSON_GetObjectItem(ref, "greedy_steps")->valueint;
	int32_t ids[512], want[512];
	struct nb_fwd f;
	float *logits, max_diff = 0.0f;
	int n_prompts = 0;

	assert_int_equal(steps, 48);
	assert_int_equal(nb_fwd_open(&f, m, m->hp.seq_len), 0);
	cJSON_ArrayForEach(p, prompts) {
		const cJSON *base = cJSON_GetObjectItem(p, "base");
		const cJSON *ref_logits = cJSON_GetObjectItem(base, "base_final_logits");
		size_t n = json_ids(cJSON_GetObjectItem(p, "ids"), ids, 512);
		size_t n_want = json_ids(cJSON_GetObjectItem(base, "greedy_ids"), want, 512);
		const cJSON *v;
		size_t i = 0;

		if (!ref_logits) /* stored beside "base" in the reference file */
			ref_logits = cJSON_GetObjectItem(p, "base_final_logits");
		assert_int_equal(n_want, (size_t)steps);
		assert_int_equal(ids[0], 1); /* BOS */
		assert_int_equal(nb_fwd_prompt(&f, ids, n, 0, &logits), 0);
		assert_int_equal(cJSON_GetArraySize(ref_logits), 512);
		cJSON_ArrayForEach(v, ref_logits) {
			float d = fabsf(logits[i++] - (float)v->valuedouble);

			if (d > max_diff)
				max_diff = d;
		}
		for (int s = 0; s < steps; s++) {
			int32_t tok = argmax(logits, m->hp.vocab_size);

			if (tok != want[s])
				fail_msg("%s: prompt %s step %d: %d, reference %d", label,
					 cJSON_GetObjectItem(p, "name")->valuestring, s, tok, want[s]);
			assert_int_equal(nb_fwd_token(&f, tok, (uint32_t)(n + (size_t)s), &logits), 0);
		}
		n_prompts++;
	}
	nb_fwd_close(&f);
	printf("    %s: final logits max |diff| vs reference %.3g over %d prompts, greedy equal\n",
	       label, (double)max_diff, n_prompts);
	assert_int_equal(n_prompts, 6);
	return max_diff;
}

static void test_reference_outputs(void **state)
{
	struct fixture *fx = *state;

	assert_true(check_reference(&fx->m, fx->ref, "legacy reader") < 1e-4f);
}

/* The same through the importers (tools/import/ckpt.h), whose tensors are views. */
static void check_ckpt(const struct nb_ckpt *c, const cJSON *ref, const char *label)
{
	struct nb_tensor t[64];
	struct nb_model m;

	assert_true(c->n_tensors <= 64);
	for (size_t i = 0; i < c->n_tensors; i++) {
		const struct nb_ckpt_tensor *ct = &c->tensors[i];
		uint64_t n = 1;

		for (uint32_t d = 0; d < ct->ndim; d++)
			n *= ct->shape[d];
		t[i] = (struct nb_tensor){ .name = ct->name, .type = NB_DTYPE_F32, .ndim = ct->ndim,
					   .data = ct->data, .size = n * sizeof(float) };
		memcpy(t[i].shape, ct->shape, sizeof(t[i].shape));
	}
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &c->hp, t, c->n_tensors), 0);
	assert_true(check_reference(&m, ref, label) < 1e-4f);
	nb_model_free(&m);
}

static void test_reference_via_importers(void **state)
{
	struct fixture *fx = *state;
	struct nb_ckpt c;

	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, MODEL_BIN, NULL), 0);
	check_ckpt(&c, fx->ref, "nb_import_llama2c");
	nb_ckpt_free(&c);

	assert_int_equal(nb_import_hf(&c, "tests/data/stories260K/hf"), 0);
	check_ckpt(&c, fx->ref, "nb_import_hf");
	nb_ckpt_free(&c);

	assert_int_equal(nb_import_gguf(&c, "tests/data/stories260K/gguf/stories260K-f32.gguf"), 0);
	check_ckpt(&c, fx->ref, "nb_import_gguf f32");
	nb_ckpt_free(&c);
}

/* The KV cache is indexed by position: the prompt path, token by token,
 * a second context, and a rewritten-then-restored suffix all agree bit for bit. */
static void test_kv_positions(void **state)
{
	struct fixture *fx = *state;
	static const int32_t seq[] = { 1, 403, 407, 261, 378, 30, 322, 3, 279, 300 };
	const size_t n = sizeof(seq) / sizeof(seq[0]);
	float ref[512], *logits;
	struct nb_fwd a, b;

	assert_int_equal(nb_fwd_open(&a, &fx->m, 16), 0);
	assert_int_equal(nb_fwd_open(&b, &fx->m, 32), 0);
	assert_int_equal(nb_fwd_prompt(&a, seq, n, 0, &logits), 0);
	memcpy(ref, logits, sizeof(ref));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(nb_fwd_token(&b, seq[i], (uint32_t)i, &logits), 0);
	assert_memory_equal(ref, logits, sizeof(ref));

	/* overwrite positions 4.. with other tokens, then restore them */
	assert_int_equal(nb_fwd_prompt(&a, seq, 5, 4, &logits), 0);
	assert_true(memcmp(ref, logits, sizeof(ref)) != 0);
	assert_int_equal(nb_fwd_prompt(&a, seq + 4, n - 4, 4, &logits), 0);
	assert_memory_equal(ref, logits, sizeof(ref));

	/* the last position of the context is usable */
	assert_int_equal(nb_fwd_token(&a, 1, 15, &logits), 0);
	nb_fwd_close(&a);
	nb_fwd_close(&b);
}

static void test_range_errors(void **state)
{
	struct fixture *fx = *state;
	const int32_t good[] = { 1, 2, 3 }, bad[] = { 1, 512, 3 };
	struct nb_fwd f;
	struct nb_model unbound;
	float *logits = NULL;

	nb_model_init(&unbound);
	assert_int_equal(nb_fwd_open(&f, &unbound, 8), -NB_EINVAL);
	assert_int_equal(nb_fwd_open(&f, &fx->m, 0), -NB_ERANGE);
	assert_int_equal(nb_fwd_open(&f, &fx->m, 513), -NB_ERANGE);
	assert_int_equal(nb_fwd_token(&f, 1, 0, &logits), -NB_EINVAL); /* closed */
	nb_fwd_close(&f);

	assert_int_equal(nb_fwd_open(&f, &fx->m, 8), 0);
	assert_int_equal(nb_fwd_token(&f, -1, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_token(&f, 512, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_token(&f, INT32_MIN, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_token(&f, 1, 8, &logits), -NB_ERANGE);
	assert_int_equal(nb_fwd_token(&f, 1, UINT32_MAX, &logits), -NB_ERANGE);
	assert_null(logits);
	assert_int_equal(nb_fwd_prompt(&f, good, 0, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_prompt(&f, bad, 3, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_prompt(&f, good, 3, 6, &logits), -NB_ERANGE);
	assert_int_equal(nb_fwd_prompt(&f, good, 3, UINT32_MAX - 1, &logits), -NB_ERANGE);
	assert_null(logits);
	assert_int_equal(nb_fwd_prompt(&f, good, 3, 5, &logits), 0);
	assert_non_null(logits);
	nb_fwd_close(&f);
	nb_fwd_close(&f); /* idempotent */
	nb_fwd_close(NULL);
}

/* A cache beyond the memory available is refused at open, with an error,
 * not faulted in (the kernel would kill the process) or left to fail in
 * the middle of an answer. */
static void test_kv_too_large(void **state)
{
	struct fixture *fx = *state;
	struct nb_model big = fx->m;
	struct nb_kv kv;

	big.hp.n_layers = 4096;
	big.hp.n_kv_heads = 64;
	big.hp.head_dim = 128;
	big.hp.seq_len = 1u << 20; /* 2^61 bytes of cache */
	assert_int_equal(nb_kv_open(&kv, &big, 1u << 20), -NB_ENOMEM);
	assert_null(kv.k);
	nb_kv_close(&kv);
	assert_int_equal(nb_kv_open(&kv, &fx->m, 64), 0);
	assert_non_null(kv.k);
	assert_true(kv.k[0] == 0.0f && kv.v[64 * 0] == 0.0f);
	nb_kv_close(&kv);
}

/* A context opened with no_kv0 (the scheduler's: each slot brings its own
 * cache) maps no cache of its own; the calls that would use one refuse
 * with an error, and rows with their own caches run as usual. */
static void test_no_kv0(void **state)
{
	struct fixture *fx = *state;
	const struct nb_fwd_opts o = { .max_ctx = 512, .no_kv0 = true };
	const int32_t toks[] = { 1, 403 };
	const uint32_t pos[] = { 0, 1 };
	struct nb_kv own, *kvs[] = { &own, &own };
	float ref[512], *logits = NULL;
	struct nb_fwd f, g;

	assert_int_equal(nb_fwd_open(&g, &fx->m, 512), 0);
	assert_int_equal(nb_fwd_prompt(&g, toks, 2, 0, &logits), 0);
	memcpy(ref, logits, sizeof(ref));
	nb_fwd_close(&g);

	assert_int_equal(nb_fwd_open_opts(&f, &fx->m, &o), 0);
	assert_null(f.kv0.map);
	assert_null(f.kv0.k);
	logits = NULL;
	assert_int_equal(nb_fwd_token(&f, 1, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_prompt(&f, toks, 2, 0, &logits), -NB_EINVAL);
	assert_int_equal(nb_fwd_batch(&f, 2, toks, pos, NULL, NULL, &logits), -NB_EINVAL);
	assert_null(logits);
	assert_int_equal(nb_kv_open(&own, &fx->m, 512), 0);
	assert_int_equal(nb_fwd_batch(&f, 2, toks, pos, kvs, NULL, &logits), 0);
	assert_memory_equal(ref, logits, sizeof(ref));
	nb_kv_close(&own);
	nb_fwd_close(&f);
	assert_int_equal(nb_fwd_open_opts(&f, &fx->m, &(struct nb_fwd_opts){ .max_ctx = 513,
									 .no_kv0 = true }),
			 -NB_ERANGE);
}

static void test_no_allocation_per_token(void **state)
{
#ifdef HAVE_MALLOC_HOOKS
	struct fixture *fx = *state;
	struct nb_fwd f;
	float *logits;
	size_t before, after;
	int32_t tok = 1;
	int err = 0;

	assert_int_equal(nb_fwd_open(&f, &fx->m, 256), 0);
	assert_int_not_equal(__sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free),
			     0);
	before = n_mallocs;
	{
		void *volatile probe = malloc(8); /* the hook sees allocations */

		free(probe);
	}
	assert_int_equal(n_mallocs, before + 1);
	before = n_mallocs;
	for (uint32_t pos = 0; pos < 256 && !err; pos++) {
		err = nb_fwd_token(&f, tok, pos, &logits);
		tok = err ? 0 : argmax(logits, 512);
	}
	after = n_mallocs;
	__sanitizer_install_malloc_and_free_hooks(NULL, NULL);
	nb_fwd_close(&f);
	assert_int_equal(err, 0);
	assert_int_equal(after - before, 0);
#else
	(void)state;
	skip();
#endif
}

/* ---- a synthetic model: wide heads (q_dim > dim), untied output, Llama 3.1 RoPE */

struct synth {
	struct nb_hparams hp;
	struct nb_tensor t[12];
	float *buf;
};

static void synth_build(struct synth *sy)
{
	static const struct {
		const char *name;
		uint32_t ndim;
		uint64_t d0, d1;
	} spec[] = {
		{ "token_embd.weight", 2, 8, 64 },	  { "blk.0.attn_norm.weight", 1, 64, 0 },
		{ "blk.0.attn_q.weight", 2, 256, 64 },	  { "blk.0.attn_k.weight", 2, 128, 64 },
		{ "blk.0.attn_v.weight", 2, 128, 64 },	  { "blk.0.attn_output.weight", 2, 64, 256 },
		{ "blk.0.ffn_norm.weight", 1, 64, 0 },	  { "blk.0.ffn_gate.weight", 2, 16, 64 },
		{ "blk.0.ffn_up.weight", 2, 16, 64 },	  { "blk.0.ffn_down.weight", 2, 64, 16 },
		{ "output_norm.weight", 1, 64, 0 },	  { "output.weight", 2, 8, 64 },
	};
	size_t total = 0, off = 0;
	uint32_t seed = 7;

	sy->hp = (struct nb_hparams){
		.arch = NB_ARCH_LLAMA, .dim = 64, .hidden_dim = 16, .n_layers = 1, .n_heads = 2,
		.n_kv_heads = 1, .head_dim = 128, .vocab_size = 8, .seq_len = 64,
		.tied_embeddings = 0, .norm_eps = 1e-5f, .rope_theta = 500000.0f,
		.rope_scaling = NB_ROPE_SCALING_LLAMA3, .rope_factor = 8.0f,
		.rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f, .rope_orig_ctx = 8192,
	};
	for (size_t i = 0; i < 12; i++)
		total += spec[i].d0 * (spec[i].ndim > 1 ? spec[i].d1 : 1);
	sy->buf = malloc(total * sizeof(float));
	assert_non_null(sy->buf);
	for (size_t i = 0; i < total; i++) {
		seed = seed * 1664525u + 1013904223u;
		sy->buf[i] = (float)(seed >> 8) / 16777216.0f - 0.5f;
	}
	for (size_t i = 0; i < 12; i++) {
		uint64_t n = spec[i].d0 * (spec[i].ndim > 1 ? spec[i].d1 : 1);

		sy->t[i] = (struct nb_tensor){ .name = spec[i].name, .type = NB_DTYPE_F32,
					       .ndim = spec[i].ndim,
					       .shape = { spec[i].d0, spec[i].d1 },
					       .data = sy->buf + off, .size = n * sizeof(float) };
		off += n;
	}
}

/* Llama 3.1's rope scaling as HF writes it (vectorized: divide the long
 * wavelengths, then blend the medium band), in double. */
static double llama3_inv_freq(const struct nb_hparams *hp, uint32_t i)
{
	double inv = 1.0 / pow(hp->rope_theta, (double)(2 * i) / hp->head_dim);
	double wavelen = 2.0 * M_PI / inv;
	double low_wl = hp->rope_orig_ctx / hp->rope_low_freq_factor;
	double high_wl = hp->rope_orig_ctx / hp->rope_high_freq_factor;
	double scaled = wavelen > low_wl ? inv / hp->rope_factor : inv;
	double smooth = (hp->rope_orig_ctx / wavelen - hp->rope_low_freq_factor) /
			(hp->rope_high_freq_factor - hp->rope_low_freq_factor);

	if (!(wavelen < high_wl) && !(wavelen > low_wl))
		return (1.0 - smooth) * scaled / hp->rope_factor + smooth * scaled;
	return scaled;
}

static void test_llama3_rope_wide_heads(void **state)
{
	struct synth sy;
	struct nb_model m;
	struct nb_fwd f;
	float *logits;
	int bands[3] = { 0 };
	(void)state;

	synth_build(&sy);
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &sy.hp, sy.t, 12), 0);
	assert_ptr_equal(m.output, &sy.t[11]);
	assert_int_equal(nb_fwd_open(&f, &m, 64), 0);
	for (uint32_t i = 0; i < 64; i++) {
		double base = 1.0 / pow(500000.0, (double)(2 * i) / 128);
		double want = llama3_inv_freq(&sy.hp, i);

		assert_true(fabs(f.inv_freq[i] - want) <= 1e-12 * want);
		bands[f.inv_freq[i] == base ? 0 : fabs(f.inv_freq[i] - base / 8) < 1e-15 ? 2 : 1]++;
	}
	/* all three bands occur: kept, blended, divided by the factor */
	assert_true(bands[0] > 0 && bands[1] > 0 && bands[2] > 0);
	for (uint32_t pos = 0; pos < 64; pos++) {
		assert_int_equal(nb_fwd_token(&f, (int32_t)(pos % 8), pos, &logits), 0);
		for (size_t i = 0; i < 8; i++)
			assert_true(isfinite(logits[i]));
	}
	nb_fwd_close(&f);

	/* without scaling: plain theta^(-2i / head_dim) */
	sy.hp.rope_scaling = NB_ROPE_SCALING_NONE;
	assert_int_equal(nb_model_bind(&m, &sy.hp, sy.t, 12), 0);
	assert_int_equal(nb_fwd_open(&f, &m, 8), 0);
	for (uint32_t i = 0; i < 64; i++) {
		double want = 1.0 / pow(500000.0, (double)(2 * i) / 128);

		assert_true(fabs(f.inv_freq[i] - want) <= 1e-12 * want);
	}
	nb_fwd_close(&f);
	nb_model_free(&m);
	free(sy.buf);
}

/* ---- the layer pieces of other families, on a tiny synthetic model ------- */

/* dim 16, wide heads (4 x 8 > dim) over 2 KV heads, hidden 22 (not a
 * multiple of 4: vector tails), 2 layers, untied output. */
#define FT_DIM 16
#define FT_HIDDEN 22
#define FT_LAYERS 2
#define FT_HEADS 4
#define FT_KV_HEADS 2
#define FT_HD 8
#define FT_VOCAB 11
#define FT_SEQ 12
#define FT_Q (FT_HEADS * FT_HD)
#define FT_KV (FT_KV_HEADS * FT_HD)
#define FT_MAX_TENSORS (3 + 14 * FT_LAYERS)

struct feat_model {
	struct nb_hparams hp;
	struct nb_tensor t[FT_MAX_TENSORS];
	char names[FT_MAX_TENSORS][NB_TENSOR_NAME_MAX];
	float *data[FT_MAX_TENSORS];
	size_t n;
	uint32_t seed;
};

static void ft_add(struct feat_model *fm, const char *name, uint64_t rows, uint64_t cols)
{
	uint64_t n = rows * (cols ? cols : 1);
	float *d = malloc(n * sizeof(float));

	assert_non_null(d);
	assert_true(fm->n < FT_MAX_TENSORS);
	for (uint64_t i = 0; i < n; i++) {
		fm->seed = fm->seed * 1664525u + 1013904223u;
		d[i] = (float)(fm->seed >> 8) / 16777216.0f - 0.5f;
	}
	snprintf(fm->names[fm->n], NB_TENSOR_NAME_MAX, "%s", name);
	fm->data[fm->n] = d;
	fm->t[fm->n] = (struct nb_tensor){ .name = fm->names[fm->n], .type = NB_DTYPE_F32,
					   .ndim = cols ? 2 : 1, .shape = { rows, cols },
					   .data = d, .size = n * sizeof(float) };
	fm->n++;
}

/* Every tensor of every feature: binding ignores those of features off. */
static void ft_build(struct feat_model *fm)
{
	static const struct {
		const char *suffix;
		uint64_t rows, cols;
	} layer[] = {
		{ "attn_norm.weight", FT_DIM, 0 },    { "attn_q.weight", FT_Q, FT_DIM },
		{ "attn_k.weight", FT_KV, FT_DIM },   { "attn_v.weight", FT_KV, FT_DIM },
		{ "attn_q.bias", FT_Q, 0 },	      { "attn_k.bias", FT_KV, 0 },
		{ "attn_v.bias", FT_KV, 0 },	      { "attn_q_norm.weight", FT_HD, 0 },
		{ "attn_k_norm.weight", FT_HD, 0 },   { "attn_output.weight", FT_DIM, FT_Q },
		{ "ffn_norm.weight", FT_DIM, 0 },     { "ffn_gate.weight", FT_HIDDEN, FT_DIM },
		{ "ffn_up.weight", FT_HIDDEN, FT_DIM }, { "ffn_down.weight", FT_DIM, FT_HIDDEN },
	};
	char name[NB_TENSOR_NAME_MAX];

	memset(fm, 0, sizeof(*fm));
	fm->seed = 99;
	fm->hp = (struct nb_hparams){
		.arch = NB_ARCH_LLAMA, .dim = FT_DIM, .hidden_dim = FT_HIDDEN, .n_layers = FT_LAYERS,
		.n_heads = FT_HEADS, .n_kv_heads = FT_KV_HEADS, .head_dim = FT_HD,
		.vocab_size = FT_VOCAB, .seq_len = FT_SEQ, .norm_eps = 1e-5f, .rope_theta = 10000.0f,
	};
	ft_add(fm, "token_embd.weight", FT_VOCAB, FT_DIM);
	ft_add(fm, "output_norm.weight", FT_DIM, 0);
	ft_add(fm, "output.weight", FT_VOCAB, FT_DIM);
	for (uint32_t l = 0; l < FT_LAYERS; l++) {
		for (size_t k = 0; k < sizeof(layer) / sizeof(layer[0]); k++) {
			snprintf(name, sizeof(name), "blk.%u.%s", l, layer[k].suffix);
			ft_add(fm, name, layer[k].rows, layer[k].cols);
		}
	}
}

static void ft_free(struct feat_model *fm)
{
	for (size_t i = 0; i < fm->n; i++)
		free(fm->data[i]);
}

static const float *ft_w(const struct feat_model *fm, int layer, const char *suffix)
{
	char name[NB_TENSOR_NAME_MAX];

	if (layer < 0)
		snprintf(name, sizeof(name), "%s", suffix);
	else
		snprintf(name, sizeof(name), "blk.%d.%s", layer, suffix);
	for (size_t i = 0; i < fm->n; i++)
		if (strcmp(fm->names[i], name) == 0)
			return fm->data[i];
	fail_msg("no tensor %s", name);
	return NULL;
}

/* The straightforward reference, in double, as HF's modeling code reads. */
static void ref_norm(double *out, const double *x, const float *w, int n,
		     const struct nb_hparams *hp)
{
	double ss = 0;

	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	ss = 1.0 / sqrt(ss / n + hp->norm_eps);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * ss * (hp->norm_offset + w[i]);
}

static void ref_matvec(double *out, const float *w, const double *x, int rows, int cols)
{
	for (int r = 0; r < rows; r++) {
		out[r] = 0;
		for (int c = 0; c < cols; c++)
			out[r] += (double)w[r * cols + c] * x[c];
	}
}

static void ref_rope(double *x, int n_heads, int pos, double theta)
{
	for (int h = 0; h < n_heads; h++) {
		for (int i = 0; i < FT_HD / 2; i++) {
			double a = pos * pow(theta, -2.0 * i / FT_HD);
			double *v = x + h * FT_HD + 2 * i, v0 = v[0], v1 = v[1];

			v[0] = v0 * cos(a) - v1 * sin(a);
			v[1] = v0 * sin(a) + v1 * cos(a);
		}
	}
}

static double ref_act(double g, uint32_t act)
{
	if (act == NB_ACT_GELU_TANH)
		return 0.5 * g * (1.0 + tanh(sqrt(2.0 / M_PI) * (g + 0.044715 * g * g * g)));
	return g / (1.0 + exp(-g));
}

/* logits [n][vocab] of tokens at positions 0..n-1 */
static void ref_forward(const struct feat_model *fm, const struct nb_hparams *hp,
			const int32_t *tok, int n, double logits[][FT_VOCAB])
{
	static double K[FT_LAYERS][FT_SEQ][FT_KV], V[FT_LAYERS][FT_SEQ][FT_KV];
	const bool bias = hp->features & NB_FEAT_QKV_BIAS, qk_norm = hp->features & NB_FEAT_QK_NORM;

	for (int t = 0; t < n; t++) {
		double x[FT_DIM], xb[FT_DIM], q[FT_Q], att[FT_Q], o[FT_DIM], g[FT_HIDDEN], u[FT_HIDDEN];

		for (int i = 0; i < FT_DIM; i++)
			x[i] = ft_w(fm, -1, "token_embd.weight")[tok[t] * FT_DIM + i] *
			       (hp->embed_scale != 0.0f ? (double)hp->embed_scale : 1.0);
		for (int l = 0; l < FT_LAYERS; l++) {
			double *k = K[l][t], *v = V[l][t];

			ref_norm(xb, x, ft_w(fm, l, "attn_norm.weight"), FT_DIM, hp);
			ref_matvec(q, ft_w(fm, l, "attn_q.weight"), xb, FT_Q, FT_DIM);
			ref_matvec(k, ft_w(fm, l, "attn_k.weight"), xb, FT_KV, FT_DIM);
			ref_matvec(v, ft_w(fm, l, "attn_v.weight"), xb, FT_KV, FT_DIM);
			for (int i = 0; bias && i < FT_Q; i++)
				q[i] += ft_w(fm, l, "attn_q.bias")[i];
			for (int i = 0; bias && i < FT_KV; i++) {
				k[i] += ft_w(fm, l, "attn_k.bias")[i];
				v[i] += ft_w(fm, l, "attn_v.bias")[i];
			}
			for (int h = 0; qk_norm && h < FT_HEADS; h++)
				ref_norm(q + h * FT_HD, q + h * FT_HD, ft_w(fm, l, "attn_q_norm.weight"),
					 FT_HD, hp);
			for (int h = 0; qk_norm && h < FT_KV_HEADS; h++)
				ref_norm(k + h * FT_HD, k + h * FT_HD, ft_w(fm, l, "attn_k_norm.weight"),
					 FT_HD, hp);
			ref_rope(q, FT_HEADS, t, hp->rope_theta);
			ref_rope(k, FT_KV_HEADS, t, hp->rope_theta);
			for (int h = 0; h < FT_HEADS; h++) {
				int kvh = h / (FT_HEADS / FT_KV_HEADS);
				double sc[FT_SEQ], mx = -INFINITY, sum = 0;

				for (int j = 0; j <= t; j++) {
					sc[j] = 0;
					for (int i = 0; i < FT_HD; i++)
						sc[j] += q[h * FT_HD + i] * K[l][j][kvh * FT_HD + i];
					sc[j] /= sqrt(FT_HD);
					mx = sc[j] > mx ? sc[j] : mx;
				}
				for (int j = 0; j <= t; j++)
					sum += sc[j] = exp(sc[j] - mx);
				for (int i = 0; i < FT_HD; i++) {
					att[h * FT_HD + i] = 0;
					for (int j = 0; j <= t; j++)
						att[h * FT_HD + i] += sc[j] / sum * V[l][j][kvh * FT_HD + i];
				}
			}
			ref_matvec(o, ft_w(fm, l, "attn_output.weight"), att, FT_DIM, FT_Q);
			for (int i = 0; i < FT_DIM; i++)
				x[i] += o[i];
			ref_norm(xb, x, ft_w(fm, l, "ffn_norm.weight"), FT_DIM, hp);
			ref_matvec(g, ft_w(fm, l, "ffn_gate.weight"), xb, FT_HIDDEN, FT_DIM);
			ref_matvec(u, ft_w(fm, l, "ffn_up.weight"), xb, FT_HIDDEN, FT_DIM);
			for (int i = 0; i < FT_HIDDEN; i++)
				g[i] = ref_act(g[i], hp->activation) * u[i];
			ref_matvec(o, ft_w(fm, l, "ffn_down.weight"), g, FT_DIM, FT_HIDDEN);
			for (int i = 0; i < FT_DIM; i++)
				x[i] += o[i];
		}
		ref_norm(xb, x, ft_w(fm, -1, "output_norm.weight"), FT_DIM, hp);
		ref_matvec(logits[t], ft_w(fm, -1, "output.weight"), xb, FT_VOCAB, FT_DIM);
	}
}

/* Every combination of the pieces: the runtime's logits at every position
 * (one batch) are the reference's; each piece changes them; the prompt in
 * one batch and token by token give the same bits. */
static void test_layer_pieces(void **state)
{
	static const int32_t tok[FT_SEQ] = { 1, 7, 3, 10, 0, 5, 5, 2, 9, 4, 8, 6 };
	static double want[FT_SEQ][FT_VOCAB], llama[FT_SEQ][FT_VOCAB];
	uint8_t all[FT_SEQ];
	uint32_t pos[FT_SEQ];
	struct feat_model fm;
	(void)state;

	ft_build(&fm);
	memset(all, 1, sizeof(all));
	for (uint32_t i = 0; i < FT_SEQ; i++)
		pos[i] = i;
	ref_forward(&fm, &fm.hp, tok, FT_SEQ, llama);
	for (unsigned combo = 0; combo < 32; combo++) {
		struct nb_hparams hp = fm.hp;
		struct nb_model m;
		struct nb_fwd f;
		float *logits, got[FT_VOCAB];
		double err = 0, moved = 0;

		hp.features = (combo & 1 ? NB_FEAT_QKV_BIAS : 0) | (combo & 2 ? NB_FEAT_QK_NORM : 0);
		hp.activation = combo & 4 ? NB_ACT_GELU_TANH : NB_ACT_SILU;
		hp.norm_offset = combo & 8 ? 1.0f : 0.0f;
		hp.embed_scale = combo & 16 ? 4.0f : 0.0f; /* sqrt(dim) */
		ref_forward(&fm, &hp, tok, FT_SEQ, want);
		nb_model_init(&m);
		assert_int_equal(nb_model_bind(&m, &hp, fm.t, fm.n), 0);
		assert_true((m.layers[1].bq != NULL) == !!(combo & 1));
		assert_true((m.layers[1].k_norm != NULL) == !!(combo & 2));
		assert_int_equal(nb_fwd_open(&f, &m, FT_SEQ), 0);
		assert_int_equal(nb_fwd_batch(&f, FT_SEQ, tok, pos, NULL, all, &logits), 0);
		for (int t = 0; t < FT_SEQ; t++) {
			for (int v = 0; v < FT_VOCAB; v++) {
				double d = fabs(logits[t * FT_VOCAB + v] - want[t][v]);

				err = d > err ? d : err;
				d = fabs(want[t][v] - llama[t][v]);
				moved = d > moved ? d : moved;
			}
		}
		memcpy(got, logits + (FT_SEQ - 1) * FT_VOCAB, sizeof(got));
		for (uint32_t i = 0; i < FT_SEQ; i++)
			assert_int_equal(nb_fwd_token(&f, tok[i], i, &logits), 0);
		if (memcmp(got, logits, sizeof(got)) != 0)
			fail_msg("pieces %#x: batch and token by token differ", combo);
		if (err > 5e-6)
			fail_msg("pieces %#x: logits differ from the reference by %g", combo, err);
		if (combo && moved < 1e-2)
			fail_msg("pieces %#x: the logits are Llama's (moved %g)", combo, moved);
		nb_fwd_close(&f);
		nb_model_free(&m);
	}
	ft_free(&fm);
}

/* A feature's tensors are required with it, and checked like any other. */
static void test_layer_pieces_bind(void **state)
{
	struct feat_model fm;
	struct nb_hparams hp;
	struct nb_model m;
	struct nb_tensor *t;
	(void)state;

	ft_build(&fm);
	hp = fm.hp;
	hp.features = NB_FEAT_QKV_BIAS | NB_FEAT_QK_NORM;
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &hp, fm.t, fm.n), 0);
	assert_string_equal(m.layers[1].bv->name, "blk.1.attn_v.bias");
	assert_string_equal(m.layers[0].q_norm->name, "blk.0.attn_q_norm.weight");
	t = find(fm.t, fm.n, "blk.1.attn_k.bias");
	t->name = "blk.1.attn_k.bias_";
	assert_int_equal(nb_model_bind(&m, &hp, fm.t, fm.n), -NB_ENOENT);
	t->name = "blk.1.attn_k.bias";
	t = find(fm.t, fm.n, "blk.0.attn_q_norm.weight");
	t->shape[0] = FT_DIM;
	t->size = FT_DIM * sizeof(float);
	assert_int_equal(nb_model_bind(&m, &hp, fm.t, fm.n), -NB_EFORMAT);
	hp.features = NB_FEAT_QKV_BIAS; /* the bad q norm is not the model's now */
	assert_int_equal(nb_model_bind(&m, &hp, fm.t, fm.n), 0);
	assert_null(m.layers[0].q_norm);
	nb_model_free(&m);
	ft_free(&fm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hparams_check),
		cmocka_unit_test(test_tensor_shapes),
		cmocka_unit_test(test_each_tensor),
		cmocka_unit_test(test_bind),
		cmocka_unit_test(test_reference_outputs),
		cmocka_unit_test(test_reference_via_importers),
		cmocka_unit_test(test_kv_positions),
		cmocka_unit_test(test_range_errors),
		cmocka_unit_test(test_kv_too_large),
		cmocka_unit_test(test_no_kv0),
		cmocka_unit_test(test_no_allocation_per_token),
		cmocka_unit_test(test_llama3_rope_wide_heads),
		cmocka_unit_test(test_layer_pieces),
		cmocka_unit_test(test_layer_pieces_bind),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
