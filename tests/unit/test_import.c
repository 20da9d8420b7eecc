/* Checkpoint importers: llama2.c, HF safetensors and GGUF give the same
 * model (bit for bit where the source is float32), quantized GGUF stays
 * within its quantization error, and malformed files fail cleanly. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "tools/import/ckpt.h"
#include "tools/import/gguf.h"
#include "tools/import/safetensors.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include "tests/unit/testutil.h"

#define L2C_BIN "models/stories260K/stories260K.bin"
#define L2C_TOK "models/stories260K/tok512.bin"
#define HF_DIR "tests/data/stories260K/hf"
#define GGUF_F32 "tests/data/stories260K/gguf/stories260K-f32.gguf"
#define GGUF_Q8 "tests/data/stories260K/gguf/stories260K-q8_0.gguf"
#define GGUF_Q4 "tests/data/stories260K/gguf/stories260K-q4_0.gguf"

/* ---- helpers ------------------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void b_put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		assert_non_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void b_u32(struct buf *b, uint32_t v)
{
	b_put(b, &v, 4);
}

static void b_u64(struct buf *b, uint64_t v)
{
	b_put(b, &v, 8);
}

static void b_str(struct buf *b, const char *s)
{
	b_u64(b, strlen(s));
	b_put(b, s, strlen(s));
}

static void write_all(const char *path, const void *p, size_t n)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(p, 1, n, f), n);
	assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *from, const char *to)
{
	size_t n;
	uint8_t *p = (uint8_t *)test_slurp(from, &n);

	write_all(to, p, n);
	free(p);
}

static void rm_tree(const char *path)
{
	char sub[4096];
	struct dirent *e;
	DIR *d = opendir(path);

	if (d == NULL) {
		unlink(path);
		return;
	}
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
		rm_tree(sub);
	}
	closedir(d);
	rmdir(path);
}

struct tmp {
	char dir[64];
};

static int tmp_setup(void **state)
{
	struct tmp *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	strcpy(t->dir, "/tmp/nb_import_XXXXXX");
	if (mkdtemp(t->dir) == NULL) {
		free(t);
		return -1;
	}
	*state = t;
	return 0;
}

static int tmp_teardown(void **state)
{
	struct tmp *t = *state;

	rm_tree(t->dir);
	free(t);
	return 0;
}

static void tmp_path(const struct tmp *t, char *out, size_t cap, const char *name)
{
	snprintf(out, cap, "%s/%s", t->dir, name);
}

/* A copy of the stories260K HF directory in the temp dir (subdir name). */
static void make_hf_copy(const struct tmp *t, const char *name, char *dir, size_t cap)
{
	static const char *const files[] = { "config.json", "tokenizer.model",
					     "tokenizer_config.json", "model.safetensors" };
	char from[512], to[512];

	tmp_path(t, dir, cap, name);
	rm_tree(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(from, sizeof(from), "%s/%s", HF_DIR, files[i]);
		snprintf(to, sizeof(to), "%s/%s", dir, files[i]);
		copy_file(from, to);
	}
}

static void hf_write(const char *dir, const char *file, const void *p, size_t n)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	write_all(path, p, n);
}

static void hf_unlink(const char *dir, const char *file)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	unlink(path);
}

static void import_l2c(struct nb_ckpt *c)
{
	nb_ckpt_init(c);
	assert_int_equal(nb_import_llama2c(c, L2C_BIN, L2C_TOK), 0);
}

static void assert_same_hparams(const struct nb_hparams *a, const struct nb_hparams *b,
				bool same_tie)
{
	assert_int_equal(a->arch, b->arch);
	assert_int_equal(a->dim, b->dim);
	assert_int_equal(a->hidden_dim, b->hidden_dim);
	assert_int_equal(a->n_layers, b->n_layers);
	assert_int_equal(a->n_heads, b->n_heads);
	assert_int_equal(a->n_kv_heads, b->n_kv_heads);
	assert_int_equal(a->head_dim, b->head_dim);
	assert_int_equal(a->vocab_size, b->vocab_size);
	assert_int_equal(a->seq_len, b->seq_len);
	if (same_tie)
		assert_int_equal(a->tied_embeddings, b->tied_embeddings);
	assert_true(a->norm_eps == b->norm_eps);
	assert_true(a->rope_theta == b->rope_theta);
	assert_int_equal(a->rope_scaling, b->rope_scaling);
	assert_int_equal(a->features, b->features);
	assert_int_equal(a->activation, b->activation);
	assert_true(a->norm_offset == b->norm_offset);
	assert_true(a->embed_scale == b->embed_scale);
}

static size_t tensor_elems(const struct nb_ckpt_tensor *t)
{
	size_t n = 1;

	for (uint32_t i = 0; i < t->ndim; i++)
		n *= (size_t)t->shape[i];
	return n;
}

static void assert_same_tensor(const struct nb_ckpt_tensor *a, const struct nb_ckpt_tensor *b)
{
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(a->ndim, b->ndim);
	for (uint32_t i = 0; i < a->ndim; i++)
		assert_int_equal(a->shape[i], b->shape[i]);
	if (memcmp(a->data, b->data, tensor_elems(a) * sizeof(float)) != 0)
		fail_msg("tensor %s differs from %s", a->name, b->name);
}

/* Every tensor of a is in b, bit-identical (and b has no others). */
static void assert_same_tensors(const struct nb_ckpt *a, const struct nb_ckpt *b)
{
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (size_t i = 0; i < a->n_tensors; i++)
		assert_same_tensor(&a->tensors[i], nb_ckpt_find(b, a->tensors[i].name));
}

static void assert_stories_hparams(const struct nb_hparams *hp)
{
	assert_int_equal(hp->arch, NB_ARCH_LLAMA);
	assert_int_equal(hp->dim, 64);
	assert_int_equal(hp->hidden_dim, 172);
	assert_int_equal(hp->n_layers, 5);
	assert_int_equal(hp->n_heads, 8);
	assert_int_equal(hp->n_kv_heads, 4);
	assert_int_equal(hp->head_dim, 8);
	assert_int_equal(hp->vocab_size, 512);
	assert_int_equal(hp->seq_len, 512);
	assert_true(fabsf(hp->norm_eps - 1e-5f) < 1e-10f);
	assert_true(hp->rope_theta == 10000.0f);
	assert_int_equal(hp->rope_scaling, NB_ROPE_SCALING_NONE);
	/* Llama's layer: nothing added */
	assert_int_equal(hp->features, 0);
	assert_int_equal(hp->activation, NB_ACT_SILU);
	assert_true(hp->norm_offset == 0.0f && hp->embed_scale == 0.0f);
}

static void assert_piece(const struct nb_tok_spec *s, uint32_t id, const char *want)
{
	assert_true(id < s->n_vocab);
	assert_int_equal(s->offsets[id + 1] - s->offsets[id], strlen(want));
	assert_memory_equal(s->text + s->offsets[id], want, strlen(want));
}

static void assert_stories_tok(const struct nb_tok_spec *s)
{
	assert_int_equal(s->kind, NB_TOK_SPM);
	assert_int_equal(s->n_vocab, 512);
	assert_int_equal(s->bos_id, 1);
	assert_int_equal(s->eos_id, 2);
	assert_non_null(s->offsets);
	assert_piece(s, 3, "<0x00>");
	assert_piece(s, 258, "<0xFF>");
}

/* ---- components ---------------------------------------------------------- */

static uint16_t f16_bits(float x)
{
#ifdef __FLT16_MAX__
	_Float16 h = (_Float16)x;
	uint16_t u;
	memcpy(&u, &h, 2);
	return u;
#else
	(void)x;
	return 0;
#endif
}

static void test_half_conversions(void **state)
{
	static const struct {
		uint16_t h;
		float f;
	} v[] = {
		{ 0x3c00, 1.0f },	    { 0xc000, -2.0f },	     { 0x7bff, 65504.0f },
		{ 0x0001, 0x1p-24f },	    { 0x03ff, 1023 * 0x1p-24f }, { 0x0400, 0x1p-14f },
		{ 0x8001, -0x1p-24f },	    { 0x3555, 0.333251953125f }, { 0x0000, 0.0f },
	};
	uint32_t bits;
	float f;
	(void)state;

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		assert_true(nb_st_f16_to_f32(v[i].h) == v[i].f);
	f = nb_st_f16_to_f32(0x8000);
	memcpy(&bits, &f, 4);
	assert_int_equal(bits, 0x80000000u); /* -0 keeps its sign */
	assert_true(isinf(nb_st_f16_to_f32(0x7c00)) && nb_st_f16_to_f32(0x7c00) > 0);
	assert_true(isinf(nb_st_f16_to_f32(0xfc00)) && nb_st_f16_to_f32(0xfc00) < 0);
	f = nb_st_f16_to_f32(0x7e01);
	memcpy(&bits, &f, 4);
	assert_true(isnan(f));
	assert_int_equal(bits, 0x7fc02000u); /* quiet NaN, payload kept */
	assert_true(nb_st_bf16_to_f32(0x3f80) == 1.0f);
	assert_true(nb_st_bf16_to_f32(0xc0a0) == -5.0f);
	assert_true(isnan(nb_st_bf16_to_f32(0x7fc0)));
#ifdef __FLT16_MAX__
	/* every half against the compiler's own conversion */
	for (uint32_t h = 0; h < 65536; h++) {
		_Float16 x;
		float want, got = nb_st_f16_to_f32((uint16_t)h);
		uint16_t hh = (uint16_t)h;
		memcpy(&x, &hh, 2);
		want = (float)x;
		if (isnan(want)) {
			assert_true(isnan(got));
			continue;
		}
		assert_memory_equal(&got, &want, 4);
	}
#endif
}

static void test_gguf_dequant_blocks(void **state)
{
	uint8_t q8[34], q4[18];
	struct nb_gguf_tensor t = { .name = "x", .ndim = 1, .ne = { 32 }, .n_elems = 32 };
	float *out;
	(void)state;

	/* Q8_0: d = 0.5 (fp16 0x3800), q = -16..15 */
	q8[0] = 0x00;
	q8[1] = 0x38;
	for (int j = 0; j < 32; j++)
		q8[2 + j] = (uint8_t)(int8_t)(j - 16);
	t.type = NB_GGML_Q8_0;
	t.data = q8;
	t.size = sizeof(q8);
	assert_int_equal(nb_gguf_to_f32(&t, &out), 0);
	for (int j = 0; j < 32; j++)
		assert_true(out[j] == 0.5f * (float)(j - 16));
	free(out);

	/* Q4_0: d = -2 (0xc000); byte j holds element j (low) and j + 16 (high) */
	q4[0] = 0x00;
	q4[1] = 0xc0;
	for (int j = 0; j < 16; j++)
		q4[2 + j] = (uint8_t)(j | (15 - j) << 4);
	t.type = NB_GGML_Q4_0;
	t.data = q4;
	t.size = sizeof(q4);
	assert_int_equal(nb_gguf_to_f32(&t, &out), 0);
	for (int j = 0; j < 16; j++) {
		assert_true(out[j] == -2.0f * (float)(j - 8));
		assert_true(out[j + 16] == -2.0f * (float)(15 - j - 8));
	}
	free(out);

	t.type = NB_GGML_Q4_K;
	assert_int_equal(nb_gguf_to_f32(&t, &out), -NB_ENOTSUP);
	assert_null(out);
}

static void test_ckpt_add_find(void **state)
{
	struct nb_ckpt c;
	uint64_t shape[2] = { 2, 3 }, zero[2] = { 2, 0 }, huge[2] = { 1ull << 21, 1ull << 20 };
	(void)state;

	nb_ckpt_init(&c);
	for (int i = 0; i < 40; i++) {
		char name[32];
		float *d = calloc(6, sizeof(float));
		assert_non_null(d);
		d[0] = (float)i;
		snprintf(name, sizeof(name), "t%d", i);
		assert_int_equal(nb_ckpt_add(&c, name, 2, shape, d), 0);
	}
	assert_int_equal(c.n_tensors, 40);
	assert_true(nb_ckpt_find(&c, "t33")->data[0] == 33.0f);
	assert_null(nb_ckpt_find(&c, "t40"));
	/* failures free the data they were handed (ASan would see a leak) */
	assert_int_equal(nb_ckpt_add(&c, "t5", 2, shape, calloc(6, 4)), -NB_EINVAL);
	assert_int_equal(nb_ckpt_add(&c, "z", 2, zero, calloc(1, 4)), -NB_EINVAL);
	assert_int_equal(nb_ckpt_add(&c, "h", 2, huge, calloc(1, 4)), -NB_EINVAL);
	assert_int_equal(nb_ckpt_add(&c, "a-name-of-64-bytes-0123456789012345678901234567890123456789012345",
				     2, shape, calloc(6, 4)),
			 -NB_EINVAL);
	assert_int_equal(nb_ckpt_add(&c, "five", 5, shape, calloc(6, 4)), -NB_EINVAL);
	assert_int_equal(c.n_tensors, 40);
	nb_ckpt_free(&c);
	nb_ckpt_free(&c); /* idempotent */
	nb_ckpt_free(NULL);
}

/* ---- the three formats agree --------------------------------------------- */

static float raw_f32(const uint8_t *file, size_t idx)
{
	float f;

	memcpy(&f, file + 28 + 4 * idx, 4);
	return f;
}

static void test_llama2c(void **state)
{
	const struct nb_ckpt_tensor *t;
	struct nb_ckpt c;
	size_t len;
	uint8_t *raw = (uint8_t *)test_slurp(L2C_BIN, &len);
	/* legacy layout offsets, in floats after the 28-byte header */
	size_t emb = 512 * 64, att = emb, wq = att + 5 * 64, wk = wq + 5 * 64 * 64,
	       wv = wk + 5 * 32 * 64, wo = wv + 5 * 32 * 64, ffn = wo + 5 * 64 * 64,
	       w1 = ffn + 5 * 64, w2 = w1 + 5 * 172 * 64, w3 = w2 + 5 * 64 * 172,
	       fin = w3 + 5 * 172 * 64;
	(void)state;

	import_l2c(&c);
	assert_stories_hparams(&c.hp);
	assert_int_equal(c.hp.tied_embeddings, 1);
	assert_string_equal(c.name, "stories260K");
	assert_int_equal(c.n_tensors, 9 * 5 + 2);
	assert_null(nb_ckpt_find(&c, "output.weight"));
	t = nb_ckpt_find(&c, "token_embd.weight");
	assert_int_equal(t->shape[0], 512);
	assert_int_equal(t->shape[1], 64);
	assert_true(t->data[0] == raw_f32(raw, 0) && t->data[emb - 1] == raw_f32(raw, emb - 1));
	t = nb_ckpt_find(&c, "blk.1.attn_norm.weight");
	assert_true(t->data[0] == raw_f32(raw, att + 64));
	t = nb_ckpt_find(&c, "blk.2.attn_k.weight");
	assert_int_equal(t->shape[0], 32);
	assert_true(t->data[5] == raw_f32(raw, wk + 2 * 32 * 64 + 5));
	t = nb_ckpt_find(&c, "blk.4.attn_v.weight");
	assert_true(t->data[32 * 64 - 1] == raw_f32(raw, wv + 5 * 32 * 64 - 1));
	t = nb_ckpt_find(&c, "blk.0.attn_output.weight");
	assert_true(t->data[7] == raw_f32(raw, wo + 7));
	t = nb_ckpt_find(&c, "blk.3.ffn_norm.weight");
	assert_true(t->data[63] == raw_f32(raw, ffn + 3 * 64 + 63));
	t = nb_ckpt_find(&c, "blk.4.ffn_gate.weight");
	assert_true(t->data[1] == raw_f32(raw, w1 + 4 * 172 * 64 + 1));
	t = nb_ckpt_find(&c, "blk.1.ffn_down.weight");
	assert_int_equal(t->shape[0], 64);
	assert_int_equal(t->shape[1], 172);
	assert_true(t->data[100] == raw_f32(raw, w2 + 64 * 172 + 100));
	t = nb_ckpt_find(&c, "blk.4.ffn_up.weight");
	assert_true(t->data[172 * 64 - 1] == raw_f32(raw, fin - 1));
	t = nb_ckpt_find(&c, "output_norm.weight");
	assert_true(t->data[0] == raw_f32(raw, fin));
	/* the RoPE tables and nothing else follow */
	assert_int_equal(len, 28 + 4 * (fin + 64 + 2 * 512 * 4));
	assert_stories_tok(&c.tok);
	nb_ckpt_free(&c);

	/* weights only */
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, L2C_BIN, NULL), 0);
	assert_int_equal(c.tok.n_vocab, 0);
	assert_int_equal(c.n_tensors, 47);
	nb_ckpt_free(&c);
	free(raw);
}

/* The same model rewritten as a version-1 file (export.py's order), and as
 * a legacy file with a separate classifier. */
static void test_llama2c_v1_and_unshared(void **state)
{
	static const char *const v1_order[] = { "attn_norm", "ffn_norm", "@output_norm.weight",
						"@token_embd.weight", "attn_q", "attn_k",
						"attn_v", "attn_output", "ffn_gate", "ffn_down",
						"ffn_up" };
	struct tmp *tmp = *state;
	struct nb_ckpt ref, c;
	struct buf b = { 0 };
	char path[512], name[64];
	int32_t hdr[7] = { 64, 172, 5, 8, 4, 512, 512 };
	size_t len;
	uint8_t *raw;

	import_l2c(&ref);
	b_u32(&b, 0x616b3432);
	b_u32(&b, 1);
	b_put(&b, hdr, sizeof(hdr));
	b_put(&b, "\1", 1);
	while (b.len < 256)
		b_put(&b, "", 1);
	for (size_t k = 0; k < sizeof(v1_order) / sizeof(v1_order[0]); k++) {
		for (int l = 0; l < (v1_order[k][0] == '@' ? 1 : 5); l++) {
			const struct nb_ckpt_tensor *t;
			if (v1_order[k][0] == '@')
				snprintf(name, sizeof(name), "%s", v1_order[k] + 1);
			else
				snprintf(name, sizeof(name), "blk.%d.%s.weight", l, v1_order[k]);
			t = nb_ckpt_find(&ref, name);
			assert_non_null(t);
			b_put(&b, t->data, tensor_elems(t) * 4);
		}
	}
	tmp_path(tmp, path, sizeof(path), "v1.bin");
	write_all(path, b.p, b.len);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, path, NULL), 0);
	assert_same_hparams(&ref.hp, &c.hp, true);
	assert_same_tensors(&ref, &c);
	assert_string_equal(c.name, "v1");
	nb_ckpt_free(&c);

	/* version 2 (Q8_0) is not supported */
	b.p[4] = 2;
	write_all(path, b.p, b.len);
	assert_int_equal(nb_import_llama2c(&c, path, NULL), -NB_ENOTSUP);
	/* shared flag must be 0 or 1 */
	b.p[4] = 1;
	b.p[36] = 7;
	write_all(path, b.p, b.len);
	assert_true(nb_import_llama2c(&c, path, NULL) < 0);
	free(b.p);

	/* legacy with negative vocab: the classifier follows the RoPE tables */
	raw = (uint8_t *)test_slurp(L2C_BIN, &len);
	raw = realloc(raw, len + 512 * 64 * 4);
	assert_non_null(raw);
	memcpy(raw + len, raw + 28, 512 * 64 * 4);
	raw[len] ^= 1; /* a different classifier, to tell it apart */
	hdr[5] = -512;
	memcpy(raw, hdr, sizeof(hdr));
	tmp_path(tmp, path, sizeof(path), "unshared.bin");
	write_all(path, raw, len + 512 * 64 * 4);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, path, NULL), 0);
	assert_int_equal(c.hp.tied_embeddings, 0);
	assert_int_equal(c.n_tensors, 48);
	assert_memory_equal(nb_ckpt_find(&c, "output.weight")->data, raw + len, 512 * 64 * 4);
	assert_same_tensor(nb_ckpt_find(&ref, "token_embd.weight"),
			   nb_ckpt_find(&c, "token_embd.weight"));
	nb_ckpt_free(&c);
	/* ... and without it the size is wrong */
	write_all(path, raw, len);
	assert_int_equal(nb_import_llama2c(&c, path, NULL), -NB_EFORMAT);
	free(raw);
	nb_ckpt_free(&ref);
}

static void test_hf_matches_llama2c(void **state)
{
	struct nb_ckpt ref, c;
	(void)state;

	import_l2c(&ref);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_hf(&c, HF_DIR), 0);
	assert_stories_hparams(&c.hp);
	assert_same_hparams(&ref.hp, &c.hp, true);
	/* q and k un-permuted from rotate-half back to interleaved pairs */
	assert_same_tensors(&ref, &c);
	assert_string_equal(c.name, "hf");
	assert_stories_tok(&c.tok);
	assert_true(c.tok.flags & NB_TOK_FLAG_ADD_BOS);
	assert_null(c.chat_template);
	nb_ckpt_free(&c);
	nb_ckpt_free(&ref);
}

static void test_gguf_f32_matches_llama2c(void **state)
{
	struct nb_ckpt ref, c;
	(void)state;

	import_l2c(&ref);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_gguf(&c, GGUF_F32), 0);
	assert_stories_hparams(&c.hp);
	assert_same_hparams(&ref.hp, &c.hp, false);
	/* the F32 file carries the classifier as a separate copy */
	assert_int_equal(c.hp.tied_embeddings, 0);
	assert_int_equal(c.n_tensors, ref.n_tensors + 1);
	for (size_t i = 0; i < ref.n_tensors; i++)
		assert_same_tensor(&ref.tensors[i], nb_ckpt_find(&c, ref.tensors[i].name));
	assert_same_tensor(nb_ckpt_find(&ref, "token_embd.weight"),
			   nb_ckpt_find(&c, "output.weight"));
	assert_stories_tok(&c.tok);
	assert_int_equal(c.tok.unk_id, 0);
	assert_int_equal(c.tok.pad_id, -1);
	assert_int_equal(c.tok.types[0], NB_PIECE_UNKNOWN);
	assert_int_equal(c.tok.types[1], NB_PIECE_CONTROL);
	assert_int_equal(c.tok.types[3], NB_PIECE_BYTE);
	assert_int_equal(c.tok.flags & (NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX |
					NB_TOK_FLAG_BYTE_FALLBACK),
			 NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX |
				 NB_TOK_FLAG_BYTE_FALLBACK);
	assert_piece(&c.tok, 0, "<unk>");
	nb_ckpt_free(&c);
	nb_ckpt_free(&ref);
}

/* The same pieces from tokenizer.model (HF) and from GGUF metadata. */
static void test_tokenizers_agree(void **state)
{
	struct nb_ckpt hf, gg;
	(void)state;

	nb_ckpt_init(&hf);
	nb_ckpt_init(&gg);
	assert_int_equal(nb_import_hf(&hf, HF_DIR), 0);
	assert_int_equal(nb_import_gguf(&gg, GGUF_F32), 0);
	assert_int_equal(hf.tok.n_vocab, gg.tok.n_vocab);
	for (uint32_t i = 3; i < gg.tok.n_vocab; i++) {
		uint32_t n = gg.tok.offsets[i + 1] - gg.tok.offsets[i];
		assert_int_equal(hf.tok.offsets[i + 1] - hf.tok.offsets[i], n);
		assert_memory_equal(hf.tok.text + hf.tok.offsets[i], gg.tok.text + gg.tok.offsets[i],
				    n);
		assert_int_equal(hf.tok.types[i], gg.tok.types[i]);
	}
	nb_ckpt_free(&hf);
	nb_ckpt_free(&gg);
}

/* Q8_0 (d = amax/127, q = round(x/d)): |x - x'| <= d/2 plus the fp16
 * rounding of d (|q| <= 127, relative 2^-11): under 0.57 d.
 * Q4_0 (d = -max/8, q = min(15, trunc(x/d + 8.5))): rounding gives d/2;
 * the clamp at 15 can cost a whole d for values at the far end; the fp16
 * scale adds 8 * 2^-11 d. Tensors left in F32 are exact. */
static void check_quantized(const char *path)
{
	struct nb_ckpt ref, c;
	struct nb_gguf g;
	size_t quantized = 0, over_half = 0, total = 0;

	nb_ckpt_init(&ref);
	assert_int_equal(nb_import_gguf(&ref, GGUF_F32), 0);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_gguf(&c, path), 0);
	nb_gguf_init(&g);
	assert_int_equal(nb_gguf_open(&g, path), 0);
	assert_same_hparams(&ref.hp, &c.hp, true);
	assert_int_equal(ref.n_tensors, c.n_tensors);
	for (size_t i = 0; i < ref.n_tensors; i++) {
		const struct nb_ckpt_tensor *a = &ref.tensors[i], *b = nb_ckpt_find(&c, a->name);
		const struct nb_gguf_tensor *gt = nb_gguf_find_tensor(&g, a->name);
		size_t n = tensor_elems(a);
		double err_sum = 0;
		assert_non_null(b);
		assert_non_null(gt);
		if (gt->type == NB_GGML_F32) {
			assert_same_tensor(a, b);
			continue;
		}
		assert_true(gt->type == NB_GGML_Q8_0 || gt->type == NB_GGML_Q4_0);
		quantized++;
		for (size_t blk = 0; blk < n / 32; blk++) {
			const float *x = a->data + 32 * blk, *y = b->data + 32 * blk;
			float amax = 0;
			for (int j = 0; j < 32; j++)
				amax = fmaxf(amax, fabsf(x[j]));
			float d = gt->type == NB_GGML_Q8_0 ? amax / 127 : amax / 8;
			float bound = gt->type == NB_GGML_Q8_0 ? 0.57f * d : 1.004f * d;
			for (int j = 0; j < 32; j++) {
				float e = fabsf(x[j] - y[j]);
				if (e > bound + 1e-12f)
					fail_msg("%s: %s[%zu] = %g, dequantized %g, bound %g", path,
						 a->name, 32 * blk + (size_t)j, (double)x[j],
						 (double)y[j], (double)bound);
				over_half += gt->type == NB_GGML_Q4_0 && e > 0.502f * d;
				err_sum += e;
			}
			total += gt->type == NB_GGML_Q4_0 ? 32 : 0;
		}
		/* it was really quantized, not copied */
		assert_true(err_sum > 0);
	}
	/* the clamp only hits the few values opposite a block's extreme */
	assert_true(over_half <= total / 50);
	/* q, k, v, o, gate, up of 5 layers, embeddings, output; ffn_down stays F32 */
	assert_int_equal(quantized, 5 * 6 + 2);
	assert_stories_tok(&c.tok);
	nb_gguf_free(&g);
	nb_ckpt_free(&c);
	nb_ckpt_free(&ref);
}

static void test_gguf_q8_0(void **state)
{
	(void)state;
	check_quantized(GGUF_Q8);
}

static void test_gguf_q4_0(void **state)
{
	(void)state;
	check_quantized(GGUF_Q4);
}

/* ---- HF variations -------------------------------------------------------- */

/* Writes the tensors of st as a safetensors file; conv (optional) rewrites
 * each F32 tensor's data into another dtype. */
typedef size_t (*conv_fn)(const float *src, size_t n, uint8_t *dst);

static size_t conv_bf16(const float *src, size_t n, uint8_t *dst)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u;
		memcpy(&u, &src[i], 4);
		dst[2 * i] = (uint8_t)(u >> 16);
		dst[2 * i + 1] = (uint8_t)(u >> 24);
	}
	return 2 * n;
}

static size_t conv_f16(const float *src, size_t n, uint8_t *dst)
{
	for (size_t i = 0; i < n; i++) {
		uint16_t h = f16_bits(src[i]);
		memcpy(dst + 2 * i, &h, 2);
	}
	return 2 * n;
}

static void write_st(const char *path, const struct nb_st_tensor *const *ts, size_t n,
		     const char *dtype, conv_fn conv)
{
	cJSON *root = cJSON_CreateObject(), *meta = cJSON_AddObjectToObject(root, "__metadata__");
	struct buf data = { 0 }, file = { 0 };
	char *hdr;
	uint8_t *tmp;

	cJSON_AddStringToObject(meta, "format", "pt");
	for (size_t i = 0; i < n; i++) {
		const struct nb_st_tensor *t = ts[i];
		cJSON *e = cJSON_AddObjectToObject(root, t->name), *sh, *off;
		size_t begin = data.len, bytes = (size_t)t->size;
		cJSON_AddStringToObject(e, "dtype", conv ? dtype : nb_st_dtype_name(t->dtype));
		sh = cJSON_AddArrayToObject(e, "shape");
		for (uint32_t d = 0; d < t->ndim; d++)
			cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
		if (conv) {
			tmp = malloc(bytes);
			bytes = conv((const float *)(const void *)t->data, (size_t)t->n_elems, tmp);
			b_put(&data, tmp, bytes);
			free(tmp);
		} else {
			b_put(&data, t->data, bytes);
		}
		off = cJSON_AddArrayToObject(e, "data_offsets");
		cJSON_AddItemToArray(off, cJSON_CreateNumber((double)begin));
		cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(begin + bytes)));
	}
	hdr = cJSON_PrintUnformatted(root);
	b_u64(&file, strlen(hdr));
	b_put(&file, hdr, strlen(hdr));
	b_put(&file, data.p, data.len);
	write_all(path, file.p, file.len);
	free(hdr);
	cJSON_Delete(root);
	free(data.p);
	free(file.p);
}

static void test_hf_sharded(void **state)
{
	struct tmp *tmp = *state;
	const struct nb_st_tensor *half[2][64];
	size_t nh[2] = { 0, 0 };
	struct nb_ckpt ref, c;
	struct nb_st st;
	char dir[256], path[600];
	cJSON *idx, *map;
	char *text;

	make_hf_copy(tmp, "sharded", dir, sizeof(dir));
	hf_unlink(dir, "model.safetensors");
	nb_st_init(&st);
	assert_int_equal(nb_st_open(&st, HF_DIR "/model.safetensors"), 0);
	assert_int_equal(st.n_tensors, 47);
	idx = cJSON_CreateObject();
	map = cJSON_AddObjectToObject(idx, "weight_map");
	for (size_t i = 0; i < st.n_tensors; i++) {
		int s = i % 3 == 0;
		half[s][nh[s]++] = &st.tensors[i];
		cJSON_AddStringToObject(map, st.tensors[i].name,
					s ? "model-00002-of-00002.safetensors"
					  : "model-00001-of-00002.safetensors");
	}
	snprintf(path, sizeof(path), "%s/model-00001-of-00002.safetensors", dir);
	write_st(path, half[0], nh[0], NULL, NULL);
	snprintf(path, sizeof(path), "%s/model-00002-of-00002.safetensors", dir);
	write_st(path, half[1], nh[1], NULL, NULL);
	text = cJSON_Print(idx);
	hf_write(dir, "model.safetensors.index.json", text, strlen(text));
	free(text);

	nb_ckpt_init(&ref);
	assert_int_equal(nb_import_hf(&ref, HF_DIR), 0);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_hf(&c, dir), 0);
	assert_same_tensors(&ref, &c);
	assert_string_equal(c.name, "sharded");
	nb_ckpt_free(&c);

	/* the index names a tensor its shard does not hold */
	cJSON_AddStringToObject(map, "model.layers.0.mlp.extra", "model-00001-of-00002.safetensors");
	text = cJSON_Print(idx);
	hf_write(dir, "model.safetensors.index.json", text, strlen(text));
	free(text);
	assert_int_equal(nb_import_hf(&c, dir), -NB_EFORMAT);
	/* a shard outside the directory */
	cJSON_DeleteItemFromObject(map, "model.layers.0.mlp.extra");
	cJSON_ReplaceItemInObject(map, "model.norm.weight", cJSON_CreateString("../x.safetensors"));
	text = cJSON_Print(idx);
	hf_write(dir, "model.safetensors.index.json", text, strlen(text));
	free(text);
	assert_int_equal(nb_import_hf(&c, dir), -NB_EFORMAT);
	cJSON_Delete(idx);
	nb_st_free(&st);
	nb_ckpt_free(&ref);
}

static void check_hf_converted(const struct tmp *tmp, const char *dtype, conv_fn conv)
{
	const struct nb_st_tensor *all[64];
	struct nb_ckpt ref, c;
	struct nb_st st;
	char dir[256], path[600];

	make_hf_copy(tmp, dtype, dir, sizeof(dir));
	nb_st_init(&st);
	assert_int_equal(nb_st_open(&st, HF_DIR "/model.safetensors"), 0);
	for (size_t i = 0; i < st.n_tensors; i++)
		all[i] = &st.tensors[i];
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	write_st(path, all, st.n_tensors, dtype, conv);
	nb_st_free(&st);

	import_l2c(&ref);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_hf(&c, dir), 0);
	assert_int_equal(c.n_tensors, ref.n_tensors);
	/* the un-permutation moves whole rows, so elementwise rounding commutes */
	for (size_t i = 0; i < ref.n_tensors; i++) {
		const struct nb_ckpt_tensor *a = &ref.tensors[i], *b = nb_ckpt_find(&c, a->name);
		size_t n = tensor_elems(a);
		uint8_t *h = malloc(2 * n);
		assert_non_null(b);
		conv(a->data, n, h);
		for (size_t j = 0; j < n; j++) {
			uint16_t u = (uint16_t)(h[2 * j] | h[2 * j + 1] << 8);
			float want = conv == conv_bf16 ? nb_st_bf16_to_f32(u) : nb_st_f16_to_f32(u);
			if (b->data[j] != want)
				fail_msg("%s %s[%zu]: %g != %g", dtype, a->name, j,
					 (double)b->data[j], (double)want);
		}
		free(h);
	}
	nb_ckpt_free(&c);
	nb_ckpt_free(&ref);
}

static void test_hf_bf16_f16(void **state)
{
	check_hf_converted(*state, "BF16", conv_bf16);
#ifdef __FLT16_MAX__
	check_hf_converted(*state, "F16", conv_f16);
#endif
}

/* config.json = the real one with some keys replaced (cJSON looks up the
 * first of duplicate keys, so they are replaced, not appended). */
static void write_config(const char *dir, const char *overrides)
{
	size_t len;
	char path[512], *text = test_slurp(HF_DIR "/config.json", &len);
	cJSON *cfg, *ov, *e;

	text[len] = '\0';
	cfg = cJSON_Parse(text);
	ov = cJSON_Parse(overrides);
	assert_non_null(cfg);
	assert_non_null(ov);
	free(text);
	cJSON_ArrayForEach(e, ov) {
		cJSON_DeleteItemFromObjectCaseSensitive(cfg, e->string);
		cJSON_AddItemToObject(cfg, e->string, cJSON_Duplicate(e, true));
	}
	text = cJSON_Print(cfg);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	write_all(path, text, strlen(text));
	free(text);
	cJSON_Delete(cfg);
	cJSON_Delete(ov);
}

static void test_hf_config_variants(void **state)
{
	static const struct {
		const char *overrides;
		int want;
	} cases[] = {
		{ "{}", 0 },
		{ "{\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8.0,\"low_freq_factor\":1.0,"
		  "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":128}}", 0 },
		{ "{\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0}}", -NB_ENOTSUP },
		{ "{\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2.0}}", -NB_ENOTSUP },
		{ "{\"rope_scaling\":{\"rope_type\":\"llama3\"}}", -NB_EFORMAT },
		{ "{\"rope_scaling\":7}", -NB_EFORMAT },
		{ "{\"head_dim\":16}", -NB_EFORMAT }, /* q_proj no longer fits */
		{ "{\"hidden_act\":\"gelu\"}", -NB_ENOTSUP },
		{ "{\"attention_bias\":true}", -NB_ENOTSUP },
		{ "{\"eos_token_id\":[5,2,7]}", 0 },
		{ "{\"eos_token_id\":[9999]}", -NB_EFORMAT },
		{ "{\"bos_token_id\":-1}", -NB_EFORMAT },
		{ "{\"bos_token_id\":\"1\"}", -NB_EFORMAT },
		{ "{\"vocab_size\":1e300}", -NB_EFORMAT },
		{ "{\"vocab_size\":1000}", -NB_EFORMAT },
		{ "{\"num_key_value_heads\":3}", -NB_EFORMAT },
		{ "{\"num_hidden_layers\":4}", -NB_EFORMAT }, /* layer 4's tensors */
		{ "{\"tie_word_embeddings\":false}", -NB_EFORMAT }, /* no lm_head.weight */
		{ "{\"architectures\":null}", 0 },		    /* model_type decides */
		{ "{\"architectures\":[\"GPTNeoXForCausalLM\"]}", -NB_ENOTSUP },
		/* families the runtime could compute but the importers do not take yet */
		{ "{\"architectures\":[\"Qwen2ForCausalLM\"],\"model_type\":\"qwen2\"}", -NB_ENOTSUP },
		{ "{\"architectures\":null,\"model_type\":\"gemma\"}", -NB_ENOTSUP },
		{ "{\"hidden_activation\":\"gelu_pytorch_tanh\"}", -NB_ENOTSUP },
		{ "{\"hidden_act\":null}", 0 },
	};
	struct tmp *tmp = *state;
	struct nb_ckpt c;
	char dir[256];
	int got;

	make_hf_copy(tmp, "cfg", dir, sizeof(dir));
	nb_ckpt_init(&c);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		write_config(dir, cases[i].overrides);
		got = nb_import_hf(&c, dir);
		if (got != cases[i].want)
			fail_msg("config case %zu (%s): got %d, want %d", i, cases[i].overrides, got,
				 cases[i].want);
		if (i == 1) {
			assert_int_equal(c.hp.rope_scaling, NB_ROPE_SCALING_LLAMA3);
			assert_true(c.hp.rope_factor == 8.0f);
			assert_true(c.hp.rope_low_freq_factor == 1.0f);
			assert_true(c.hp.rope_high_freq_factor == 4.0f);
			assert_int_equal(c.hp.rope_orig_ctx, 128);
		}
		if (i == 9)
			assert_int_equal(c.tok.eos_id, 2); /* the tokenizer's is in the list */
		nb_ckpt_free(&c);
	}
}

static void test_hf_tokenizer_config(void **state)
{
	static const char tc[] =
		"{\"add_bos_token\":false,\"chat_template\":[{\"name\":\"tool_use\",\"template\":\"T\"},"
		"{\"name\":\"default\",\"template\":\"{{ messages }}\"}]}";
	struct tmp *tmp = *state;
	struct nb_ckpt c;
	char dir[256];

	make_hf_copy(tmp, "tc", dir, sizeof(dir));
	hf_write(dir, "tokenizer_config.json", tc, strlen(tc));
	hf_write(dir, "LICENSE", "MIT\n", 4);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_hf(&c, dir), 0);
	assert_string_equal(c.chat_template, "{{ messages }}");
	assert_string_equal(c.license, "MIT\n");
	assert_false(c.tok.flags & NB_TOK_FLAG_ADD_BOS);
	nb_ckpt_free(&c);
	hf_write(dir, "tokenizer_config.json", "{\"chat_template\":\"x\"", 20);
	assert_int_equal(nb_import_hf(&c, dir), -NB_EFORMAT);
	hf_unlink(dir, "tokenizer_config.json");
	hf_unlink(dir, "tokenizer.model");
	assert_int_equal(nb_import_hf(&c, dir), -NB_ENOENT);
}

/* tokenizer.json (byte-level BPE) when there is no tokenizer.model; the
 * embeddings grown to GPT-2's 50257 rows so the vocabulary fits. */
static void test_hf_tokenizer_json(void **state)
{
	const struct nb_st_tensor *all[64];
	struct nb_st_tensor emb = { .name = "model.embed_tokens.weight", .dtype = NB_ST_F32,
				    .ndim = 2, .shape = { 50257, 64 }, .n_elems = 50257 * 64,
				    .size = 50257 * 64 * 4 };
	struct tmp *tmp = *state;
	struct nb_ckpt c;
	struct nb_st st;
	char dir[256], path[600];
	size_t n = 0;
	float *zeros = calloc(50257 * 64, sizeof(float));

	assert_non_null(zeros);
	make_hf_copy(tmp, "bpe", dir, sizeof(dir));
	hf_unlink(dir, "tokenizer.model");
	snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
	copy_file("tests/data/bpe/tokenizer.json", path);
	nb_ckpt_init(&c);
	/* 50257 pieces do not fit 512 embeddings */
	assert_int_equal(nb_import_hf(&c, dir), -NB_EFORMAT);

	nb_st_init(&st);
	assert_int_equal(nb_st_open(&st, HF_DIR "/model.safetensors"), 0);
	emb.data = (const uint8_t *)zeros;
	for (size_t i = 0; i < st.n_tensors; i++)
		all[n++] = strcmp(st.tensors[i].name, emb.name) ? &st.tensors[i] : &emb;
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	write_st(path, all, n, NULL, NULL);
	nb_st_free(&st);
	free(zeros);
	write_config(dir, "{\"vocab_size\":50257,\"bos_token_id\":50256,\"eos_token_id\":50256}");
	assert_int_equal(nb_import_hf(&c, dir), 0);
	assert_int_equal(c.hp.vocab_size, 50257);
	assert_int_equal(c.tok.kind, NB_TOK_BPE);
	assert_int_equal(c.tok.n_vocab, 50257);
	assert_int_equal(c.tok.n_merges, 50000);
	assert_int_equal(c.tok.eos_id, 50256);
	assert_int_equal(c.tok.bos_id, 50256);
	nb_ckpt_free(&c);
}

/* ---- malformed inputs ----------------------------------------------------- */

/* config.json is one JSON object: what follows it (a second object, junk)
 * is damage, not something to ignore; trailing white space is fine. */
static void test_hf_config_trailing(void **state)
{
	static const struct {
		const char *tail;
		size_t len;
		int want;
	} cases[] = {
		{ "", 0, 0 },		 { "\n\t \r\n", 5, 0 },   { "x", 1, -NB_EFORMAT },
		{ "{}", 2, -NB_EFORMAT }, { " ,", 2, -NB_EFORMAT }, { "\n\0", 2, -NB_EFORMAT },
	};
	struct tmp *tmp = *state;
	struct nb_ckpt c;
	char dir[256], *text, *buf;
	size_t len;
	int got;

	make_hf_copy(tmp, "trail", dir, sizeof(dir));
	text = test_slurp(HF_DIR "/config.json", &len);
	while (len > 0 && strchr(" \t\r\n", text[len - 1]))
		len--;
	buf = malloc(len + 8);
	assert_non_null(buf);
	memcpy(buf, text, len);
	nb_ckpt_init(&c);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memcpy(buf + len, cases[i].tail, cases[i].len);
		hf_write(dir, "config.json", buf, len + cases[i].len);
		got = nb_import_hf(&c, dir);
		if (got != cases[i].want)
			fail_msg("config.json + tail %zu: got %d, want %d", i, got, cases[i].want);
		nb_ckpt_free(&c);
	}
	free(buf);
	free(text);
}

static void test_bad_config(void **state)
{
	static const char *const bad[] = {
		"{",
		"",
		"[1,2]",
		"{\"architectures\":[\"MistralForCausalLM\"],\"model_type\":\"mistral\"}",
		"{\"model_type\":\"gpt2\"}",
		"{\"architectures\":[\"LlamaForCausalLM\"]}",
		"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":64.5}",
	};
	static const int want[] = { -NB_EFORMAT, -NB_EFORMAT, -NB_EFORMAT, -NB_ENOTSUP,
				    -NB_ENOTSUP, -NB_EFORMAT, -NB_EFORMAT };
	struct tmp *tmp = *state;
	struct nb_ckpt c;
	char dir[256];

	make_hf_copy(tmp, "badcfg", dir, sizeof(dir));
	nb_ckpt_init(&c);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		hf_write(dir, "config.json", bad[i], strlen(bad[i]));
		assert_int_equal(nb_import_hf(&c, dir), want[i]);
	}
	hf_unlink(dir, "config.json");
	assert_int_equal(nb_import_hf(&c, dir), -NB_ENOENT);
	assert_int_equal(nb_import_hf(&c, "/nonexistent/dir"), -NB_ENOENT);
	nb_ckpt_free(&c);
}

/* A safetensors file from a header string and data bytes. */
static int st_parse_text(const char *hdr, size_t data_len)
{
	struct buf b = { 0 };
	struct nb_st st;
	uint8_t *exact;
	int ret;

	b_u64(&b, strlen(hdr));
	b_put(&b, hdr, strlen(hdr));
	for (size_t i = 0; i < data_len; i++)
		b_put(&b, "\x3c", 1);
	/* an exact-size copy, so ASan sees any read past the end */
	exact = malloc(b.len);
	memcpy(exact, b.p, b.len);
	nb_st_init(&st);
	ret = nb_st_parse(&st, exact, b.len, "test");
	nb_st_free(&st);
	free(exact);
	free(b.p);
	return ret;
}

static void test_safetensors_parser(void **state)
{
	static const struct {
		const char *hdr;
		size_t data;
		int want;
	} cases[] = {
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, 0 },
		{ "{\"__metadata__\":{\"x\":\"y\"},\"a\":{\"dtype\":\"F32\",\"shape\":[],"
		  "\"data_offsets\":[0,4]}}", 4, 0 },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}  ", 8, 0 },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}\n\t", 8, 0 },
		/* junk after the header's object */
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}x", 8,
		  -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}} {}", 8,
		  -NB_EFORMAT },
		/* tensors back to back, an empty one anywhere; none sharing a byte */
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
		  "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
		  "\"e\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[2,2]}}", 8, 0 },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
		  "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[2,6]},"
		  "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]},"
		  "\"b\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,9]}}", 8, -NB_ERANGE },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,6]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[8,0]}}", 8, -NB_ERANGE },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,1099511627776]}}", 8,
		  -NB_ERANGE },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[-8,0]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0.5,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, -NB_ENOTSUP },
		{ "{\"a\":{\"dtype\":3,\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[4294967296,4294967296,4294967296],"
		  "\"data_offsets\":[0,8]}}", 8, -NB_ERANGE },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[1,1,1,1,1,1,1,1,4],\"data_offsets\":[0,8]}}", 8,
		  -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2]}}", 8, -NB_EFORMAT },
		{ "{\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
		  "\"a\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", 8, -NB_EFORMAT },
		{ "{\"a\":[1]}", 0, -NB_EFORMAT },
		{ "{\"a\":", 0, -NB_EFORMAT },
		{ "[]", 0, -NB_EFORMAT },
		{ "", 0, -NB_EFORMAT },
	};
	struct nb_st st;
	uint8_t hdr_only[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f };
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (st_parse_text(cases[i].hdr, cases[i].data) != cases[i].want)
			fail_msg("safetensors case %zu: got %d, want %d", i,
				 st_parse_text(cases[i].hdr, cases[i].data), cases[i].want);
	/* header length past EOF */
	nb_st_init(&st);
	assert_int_equal(nb_st_parse(&st, hdr_only, 8, "x"), -NB_EFORMAT);
	assert_int_equal(nb_st_parse(&st, hdr_only, 5, "x"), -NB_EFORMAT);
	nb_st_free(&st);
}

static void test_safetensors_values(void **state)
{
	static const char hdr[] =
		"{\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[0,6]},"
		"\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[6,10]},"
		"\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[10,14]}}";
	static const uint8_t data[] = { 0x00, 0x3c, 0x01, 0x00, 0x00, 0xfc, 0x80, 0x3f,
					0xa0, 0xc0, 1,	  2,	3,    4 };
	struct buf b = { 0 };
	struct nb_st st;
	float *f;
	(void)state;

	b_u64(&b, strlen(hdr));
	b_put(&b, hdr, strlen(hdr));
	b_put(&b, data, sizeof(data));
	nb_st_init(&st);
	assert_int_equal(nb_st_parse(&st, b.p, b.len, "values"), 0);
	assert_int_equal(st.n_tensors, 3);
	assert_null(nb_st_find(&st, "x"));
	assert_int_equal(nb_st_to_f32(nb_st_find(&st, "h"), &f), 0);
	assert_true(f[0] == 1.0f && f[1] == 0x1p-24f && isinf(f[2]) && f[2] < 0);
	free(f);
	assert_int_equal(nb_st_to_f32(nb_st_find(&st, "b"), &f), 0);
	assert_true(f[0] == 1.0f && f[1] == -5.0f);
	free(f);
	assert_int_equal(nb_st_to_f32(nb_st_find(&st, "i"), &f), -NB_ENOTSUP);
	assert_null(f);
	nb_st_free(&st);
	free(b.p);
}

/* Every prefix shorter than the file fails; ASan checks the reads. */
/* slack: trailing bytes that may be alignment padding after the last tensor */
static void check_truncations(const struct tmp *tmp, const char *src, const char *name,
			      size_t slack, int (*import)(struct nb_ckpt *, const char *))
{
	size_t len, cuts[80], n = 0;
	uint8_t *raw = (uint8_t *)test_slurp(src, &len);
	struct nb_ckpt c;
	char path[512];

	for (size_t i = 0; i < 33; i++)
		cuts[n++] = i;
	for (size_t i = 1; i < 40; i++)
		cuts[n++] = (len - slack) / 40 * i + i;
	cuts[n++] = len - 1 - slack;
	tmp_path(tmp, path, sizeof(path), name);
	nb_ckpt_init(&c);
	for (size_t i = 0; i < n; i++) {
		write_all(path, raw, cuts[i]);
		if (import(&c, path) >= 0)
			fail_msg("%s truncated to %zu bytes was accepted", src, cuts[i]);
	}
	nb_ckpt_free(&c);
	free(raw);
}

static int import_l2c_path(struct nb_ckpt *c, const char *path)
{
	return nb_import_llama2c(c, path, NULL);
}

static const struct tmp *hf_trunc_tmp;

static int import_hf_trunc(struct nb_ckpt *c, const char *path)
{
	char dir[256];

	(void)path;
	snprintf(dir, sizeof(dir), "%s/trunc", hf_trunc_tmp->dir);
	return nb_import_hf(c, dir);
}

static void test_truncated_files(void **state)
{
	struct tmp *tmp = *state;
	char dir[256];

	check_truncations(tmp, L2C_BIN, "l2c.bin", 0, import_l2c_path);
	check_truncations(tmp, GGUF_F32, "f32.gguf", 31, nb_import_gguf);
	check_truncations(tmp, GGUF_Q4, "q4.gguf", 31, nb_import_gguf);
	make_hf_copy(tmp, "trunc", dir, sizeof(dir));
	hf_trunc_tmp = tmp;
	check_truncations(tmp, HF_DIR "/model.safetensors", "trunc/model.safetensors", 0,
			  import_hf_trunc);
}

/* Parsers on exact-size prefixes of the real files, at many more lengths. */
static void test_truncated_buffers(void **state)
{
	size_t len;
	uint8_t *raw;
	(void)state;

	/* the last 31 bytes may be padding */
	raw = (uint8_t *)test_slurp(GGUF_Q8, &len);
	for (size_t cut = 0; cut < len - 31; cut += cut < 20000 ? 7 : 4099) {
		uint8_t *p = malloc(cut ? cut : 1);
		struct nb_gguf g;
		memcpy(p, raw, cut);
		nb_gguf_init(&g);
		assert_true(nb_gguf_parse(&g, p, cut, "prefix") < 0);
		nb_gguf_free(&g);
		free(p);
	}
	free(raw);
	raw = (uint8_t *)test_slurp(HF_DIR "/model.safetensors", &len);
	for (size_t cut = 0; cut < len; cut += cut < 6000 ? 5 : 4099) {
		uint8_t *p = malloc(cut ? cut : 1);
		struct nb_st st;
		memcpy(p, raw, cut);
		nb_st_init(&st);
		assert_true(nb_st_parse(&st, p, cut, "prefix") < 0);
		nb_st_free(&st);
		free(p);
	}
	free(raw);
}

/* ---- a tiny GGUF built here, then damaged -------------------------------- */

struct tiny_opts {
	const char *arch;
	const char *tok_model;
	const char *pre;
	const char *const *merges;
	size_t n_merges;
	uint32_t extra_kv; /* 1: a nested array, 2: an absurd string length */
};

static const char *const tiny_tokens[] = { "a", "b", "ab", "\xc4\xa0" };

static void kv_hdr(struct buf *b, const char *key, uint32_t type)
{
	b_str(b, key);
	b_u32(b, type);
}

static void kv_u32(struct buf *b, const char *key, uint32_t v)
{
	kv_hdr(b, key, NB_GGUF_U32);
	b_u32(b, v);
}

static void kv_s(struct buf *b, const char *key, const char *v)
{
	kv_hdr(b, key, NB_GGUF_STRING);
	b_str(b, v);
}

static void kv_strs(struct buf *b, const char *key, const char *const *v, size_t n)
{
	kv_hdr(b, key, NB_GGUF_ARRAY);
	b_u32(b, NB_GGUF_STRING);
	b_u64(b, n);
	for (size_t i = 0; i < n; i++)
		b_str(b, v[i]);
}

/* dim 4, hidden 6, 1 layer, 2 heads of 2, 1 kv head, vocab 4, all F32. */
static const struct {
	const char *name;
	uint32_t ndim;
	uint64_t ne[2];
} tiny_tensors[] = {
	{ "token_embd.weight", 2, { 4, 4 } },	   { "output_norm.weight", 1, { 4 } },
	{ "blk.0.attn_norm.weight", 1, { 4 } },	   { "blk.0.attn_q.weight", 2, { 4, 4 } },
	{ "blk.0.attn_k.weight", 2, { 4, 2 } },	   { "blk.0.attn_v.weight", 2, { 4, 2 } },
	{ "blk.0.attn_output.weight", 2, { 4, 4 } }, { "blk.0.ffn_norm.weight", 1, { 4 } },
	{ "blk.0.ffn_gate.weight", 2, { 4, 6 } },  { "blk.0.ffn_up.weight", 2, { 4, 6 } },
	{ "blk.0.ffn_down.weight", 2, { 6, 4 } },
};

#define N_TINY (sizeof(tiny_tensors) / sizeof(tiny_tensors[0]))

static void build_tiny(struct buf *b, const struct tiny_opts *o)
{
	uint64_t off = 0, n_kv = 12 + (o->pre != NULL) + (o->merges != NULL) + (o->extra_kv != 0);
	float eps = 1e-5f;

	b->len = 0;
	b_put(b, "GGUF", 4);
	b_u32(b, 3);
	b_u64(b, N_TINY);
	b_u64(b, n_kv);
	kv_s(b, "general.architecture", o->arch ? o->arch : "llama");
	kv_u32(b, "llama.embedding_length", 4);
	kv_u32(b, "llama.feed_forward_length", 6);
	kv_u32(b, "llama.block_count", 1);
	kv_u32(b, "llama.attention.head_count", 2);
	kv_u32(b, "llama.attention.head_count_kv", 1);
	kv_u32(b, "llama.context_length", 16);
	kv_hdr(b, "llama.attention.layer_norm_rms_epsilon", NB_GGUF_F32);
	b_put(b, &eps, 4);
	kv_s(b, "tokenizer.ggml.model", o->tok_model ? o->tok_model : "llama");
	kv_strs(b, "tokenizer.ggml.tokens", tiny_tokens, 4);
	kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
	kv_u32(b, "tokenizer.ggml.eos_token_id", 0xffffffffu);
	if (o->pre)
		kv_s(b, "tokenizer.ggml.pre", o->pre);
	if (o->merges)
		kv_strs(b, "tokenizer.ggml.merges", o->merges, o->n_merges);
	if (o->extra_kv == 1) {
		/* [[1, 2], []] of u8 */
		kv_hdr(b, "x.nested", NB_GGUF_ARRAY);
		b_u32(b, NB_GGUF_ARRAY);
		b_u64(b, 2);
		b_u32(b, NB_GGUF_U8);
		b_u64(b, 2);
		b_put(b, "\1\2", 2);
		b_u32(b, NB_GGUF_U8);
		b_u64(b, 0);
	} else if (o->extra_kv == 2) {
		kv_hdr(b, "x.str", NB_GGUF_STRING);
		b_u64(b, 1ull << 62);
	}
	for (size_t i = 0; i < N_TINY; i++) {
		uint64_t n = tiny_tensors[i].ne[0] * (tiny_tensors[i].ndim > 1 ? tiny_tensors[i].ne[1] : 1);
		b_str(b, tiny_tensors[i].name);
		b_u32(b, tiny_tensors[i].ndim);
		for (uint32_t d = 0; d < tiny_tensors[i].ndim; d++)
			b_u64(b, tiny_tensors[i].ne[d]);
		b_u32(b, NB_GGML_F32);
		b_u64(b, off);
		off += (n * 4 + 31) / 32 * 32;
	}
	while (b->len % 32)
		b_put(b, "", 1);
	for (size_t i = 0; i < N_TINY; i++) {
		uint64_t n = tiny_tensors[i].ne[0] * (tiny_tensors[i].ndim > 1 ? tiny_tensors[i].ne[1] : 1);
		for (uint64_t j = 0; j < n; j++) {
			float v = (float)i + (float)j / 64.0f;
			b_put(b, &v, 4);
		}
		while (b->len % 32)
			b_put(b, "", 1);
	}
}

static int tiny_import(const struct buf *b, struct nb_ckpt *c)
{
	uint8_t *exact = malloc(b->len);
	struct nb_gguf g;
	int ret;

	memcpy(exact, b->p, b->len);
	nb_gguf_init(&g);
	nb_ckpt_init(c);
	ret = nb_gguf_parse(&g, exact, b->len, "tiny");
	if (ret == 0)
		ret = nb_gguf_to_ckpt(c, &g, "tiny");
	nb_gguf_free(&g);
	free(exact);
	return ret;
}

static uint8_t *find_bytes(const struct buf *b, const char *s)
{
	uint8_t *p = memmem(b->p, b->len, s, strlen(s));

	assert_non_null(p);
	return p;
}

static void test_gguf_tiny(void **state)
{
	static const char *const merges[] = { "a b", "\xc4\xa0 a" };
	struct tiny_opts o = { 0 };
	struct buf b = { 0 };
	struct nb_ckpt c;
	const struct nb_ckpt_tensor *t;
	(void)state;

	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), 0);
	assert_int_equal(c.hp.dim, 4);
	assert_int_equal(c.hp.head_dim, 2);
	assert_int_equal(c.hp.n_kv_heads, 1);
	assert_int_equal(c.hp.tied_embeddings, 1);
	assert_true(c.hp.rope_theta == 10000.0f);
	t = nb_ckpt_find(&c, "blk.0.ffn_down.weight");
	assert_int_equal(t->shape[0], 4); /* ne reversed */
	assert_int_equal(t->shape[1], 6);
	assert_true(t->data[23] == 10.0f + 23.0f / 64.0f);
	assert_int_equal(c.tok.kind, NB_TOK_SPM);
	assert_int_equal(c.tok.n_vocab, 4);
	assert_int_equal(c.tok.bos_id, 1);
	assert_int_equal(c.tok.eos_id, -1);
	assert_piece(&c.tok, 2, "ab");
	assert_string_equal(c.name, "tiny");
	nb_ckpt_free(&c);

	/* a nested array is skipped */
	o.extra_kv = 1;
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), 0);
	nb_ckpt_free(&c);
	/* a string longer than the file */
	o.extra_kv = 2;
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_EFORMAT);
	o.extra_kv = 0;

	/* byte-level BPE with merges */
	o.tok_model = "gpt2";
	o.pre = "gpt2";
	o.merges = merges;
	o.n_merges = 2;
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), 0);
	assert_int_equal(c.tok.kind, NB_TOK_BPE);
	assert_int_equal(c.tok.pretok, NB_PRETOK_GPT2);
	assert_int_equal(c.tok.n_merges, 2);
	assert_int_equal(c.tok.merges[0], 0);
	assert_int_equal(c.tok.merges[1], 1);
	assert_int_equal(c.tok.merges[2], 3);
	assert_int_equal(c.tok.merges[3], 0);
	assert_false(c.tok.flags & NB_TOK_FLAG_ADD_BOS);
	nb_ckpt_free(&c);
	o.pre = "llama-bpe";
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), 0);
	assert_int_equal(c.tok.pretok, NB_PRETOK_LLAMA3);
	assert_true(c.tok.flags & NB_TOK_FLAG_IGNORE_MERGES);
	nb_ckpt_free(&c);
	o.pre = "deepseek-coder";
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_ENOTSUP);
	o.pre = "gpt2";
	o.merges = (const char *const[]){ "a zz" };
	o.n_merges = 1;
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_EFORMAT);
	o = (struct tiny_opts){ .tok_model = "bert" };
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_ENOTSUP);
	o = (struct tiny_opts){ .arch = "mamba" };
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_ENOTSUP);
	o = (struct tiny_opts){ .arch = "qwen2" };
	build_tiny(&b, &o);
	assert_int_equal(tiny_import(&b, &c), -NB_ENOTSUP);
	free(b.p);
}

static void test_gguf_damaged(void **state)
{
	struct tiny_opts o = { 0 };
	struct buf b = { 0 };
	struct nb_ckpt c;
	uint8_t *p;
	uint64_t v;
	(void)state;

	build_tiny(&b, &o);
#define EXPECT(want)                                                    \
	do {                                                            \
		assert_int_equal(tiny_import(&b, &c), (want));          \
		build_tiny(&b, &o);                                     \
	} while (0)
	b.p[0] = 'X';
	EXPECT(-NB_EFORMAT);
	b.p[4] = 1; /* version 1 */
	EXPECT(-NB_ENOTSUP);
	b.p[4] = 0;
	b.p[7] = 3; /* big-endian version 3 */
	EXPECT(-NB_ENOTSUP);
	v = 1ull << 60; /* n_tensors */
	memcpy(b.p + 8, &v, 8);
	EXPECT(-NB_EFORMAT);
	memcpy(b.p + 16, &v, 8); /* n_kv */
	EXPECT(-NB_EFORMAT);
	v = 10; /* one tensor fewer than listed: its info is read as data */
	memcpy(b.p + 8, &v, 8);
	EXPECT(-NB_EFORMAT);
	/* array count 2^60 */
	p = find_bytes(&b, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens") + 8;
	v = 1ull << 60;
	memcpy(p, &v, 8);
	EXPECT(-NB_EFORMAT);
	/* array element type unknown */
	p = find_bytes(&b, "tokenizer.ggml.tokens") + strlen("tokenizer.ggml.tokens") + 4;
	p[0] = 99;
	EXPECT(-NB_EFORMAT);
	/* a tensor type without a block layout, one known but not converted */
	p = find_bytes(&b, "blk.0.ffn_norm.weight") + strlen("blk.0.ffn_norm.weight") + 4 + 8;
	p[0] = 16;
	EXPECT(-NB_ENOTSUP);
	p = find_bytes(&b, "blk.0.ffn_norm.weight") + strlen("blk.0.ffn_norm.weight") + 4 + 8;
	p[0] = NB_GGML_I32;
	EXPECT(-NB_ENOTSUP);
	/* 5 dimensions */
	p = find_bytes(&b, "blk.0.ffn_norm.weight") + strlen("blk.0.ffn_norm.weight");
	p[0] = 5;
	EXPECT(-NB_EFORMAT);
	/* data offset past the end, and misaligned */
	p = find_bytes(&b, "blk.0.ffn_norm.weight") + strlen("blk.0.ffn_norm.weight") + 4 + 8 + 4;
	v = 1ull << 40;
	memcpy(p, &v, 8);
	EXPECT(-NB_EFORMAT);
	p = find_bytes(&b, "blk.0.ffn_norm.weight") + strlen("blk.0.ffn_norm.weight") + 4 + 8 + 4;
	p[0] += 4;
	EXPECT(-NB_EFORMAT);
	/* ne of 2^62 * 2^62 */
	p = find_bytes(&b, "blk.0.ffn_up.weight") + strlen("blk.0.ffn_up.weight") + 4;
	v = 1ull << 62;
	memcpy(p, &v, 8);
	memcpy(p + 8, &v, 8);
	EXPECT(-NB_ERANGE);
	/* a shape the hyper-parameters do not imply */
	p = find_bytes(&b, "blk.0.ffn_up.weight") + strlen("blk.0.ffn_up.weight") + 4;
	p[0] = 2;
	p[8] = 12;
	EXPECT(-NB_EFORMAT);
	/* duplicate tensor name, unknown tensor name */
	memcpy(find_bytes(&b, "blk.0.ffn_up.weight"), "blk.0.attn_q.weight", 19);
	EXPECT(-NB_EFORMAT);
	memcpy(find_bytes(&b, "blk.0.ffn_up.weight"), "blk.0.ffn_xx", 12);
	EXPECT(-NB_EFORMAT);
	/* duplicate key; a required key renamed away */
	memcpy(find_bytes(&b, "tokenizer.ggml.eos_token_id"), "tokenizer.ggml.bos", 18);
	EXPECT(-NB_EFORMAT);
	memcpy(find_bytes(&b, "llama.attention.head_count\x04"), "llama.attention.head_xxxxx", 26);
	EXPECT(-NB_EFORMAT);
	/* alignment not a power of two would need another key: wrong type instead */
	p = find_bytes(&b, "llama.embedding_length") + strlen("llama.embedding_length");
	p[0] = NB_GGUF_F32;
	EXPECT(-NB_EFORMAT);
	/* token id out of range */
	p = find_bytes(&b, "tokenizer.ggml.bos_token_id") + strlen("tokenizer.ggml.bos_token_id") + 4;
	p[0] = 9;
	EXPECT(-NB_EFORMAT);
#undef EXPECT
	/* every prefix */
	for (size_t cut = 0; cut < b.len; cut++) {
		struct buf t = { .p = b.p, .len = cut };
		if (tiny_import(&t, &c) == 0)
			fail_msg("tiny GGUF cut to %zu bytes accepted", cut);
	}
	free(b.p);
}

static void test_validate(void **state)
{
	struct nb_ckpt c;
	uint64_t wrong[2] = { 32, 63 };
	(void)state;

	import_l2c(&c);
	assert_int_equal(nb_ckpt_validate(&c), 0);
	/* an extra tensor, a missing one, a wrong shape */
	assert_int_equal(nb_ckpt_add(&c, "output.weight", 2, (uint64_t[]){ 512, 64 },
				     calloc(512 * 64, 4)), 0);
	assert_int_equal(nb_ckpt_validate(&c), -NB_EFORMAT);
	c.hp.tied_embeddings = 0;
	assert_int_equal(nb_ckpt_validate(&c), 0);
	c.hp.n_layers = 6;
	assert_int_equal(nb_ckpt_validate(&c), -NB_EFORMAT);
	c.hp.n_layers = 5;
	memcpy(c.tensors[3].shape, wrong, sizeof(wrong));
	assert_int_equal(nb_ckpt_validate(&c), -NB_EFORMAT);
	nb_ckpt_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_half_conversions),
		cmocka_unit_test(test_gguf_dequant_blocks),
		cmocka_unit_test(test_ckpt_add_find),
		cmocka_unit_test(test_safetensors_parser),
		cmocka_unit_test(test_safetensors_values),
		cmocka_unit_test(test_gguf_tiny),
		cmocka_unit_test(test_gguf_damaged),
		cmocka_unit_test(test_llama2c),
		cmocka_unit_test_setup_teardown(test_llama2c_v1_and_unshared, tmp_setup, tmp_teardown),
		cmocka_unit_test(test_hf_matches_llama2c),
		cmocka_unit_test(test_gguf_f32_matches_llama2c),
		cmocka_unit_test(test_tokenizers_agree),
		cmocka_unit_test(test_gguf_q8_0),
		cmocka_unit_test(test_gguf_q4_0),
		cmocka_unit_test(test_validate),
		cmocka_unit_test_setup_teardown(test_hf_sharded, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_hf_bf16_f16, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_hf_config_variants, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_hf_tokenizer_config, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_hf_tokenizer_json, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_hf_config_trailing, tmp_setup, tmp_teardown),
		cmocka_unit_test_setup_teardown(test_truncated_files, tmp_setup, tmp_teardown),
		cmocka_unit_test(test_truncated_buffers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
