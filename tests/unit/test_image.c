/* The model image: write -> open round trip, zero-copy views, golden
 * vector, and rejection of corrupted images (never a crash). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "firmware/image.h"
#include "kernels/check.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "tools/import/image_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DIM 8
#define HIDDEN 12
#define HEADS 2
#define KV_HEADS 1
#define HEAD_DIM 4
#define VOCAB 8
#define SEQ 32

struct fixture {
	char dir[64], path[128];
	struct nb_hparams hp;
	struct nb_tok_spec tok;
	struct nb_tensor tensors[16];
	float *data[16];
	size_t n;
	uint8_t *file; /* the written image, 64-byte aligned copy */
	size_t size;
};

static void add_tensor(struct fixture *f, const char *name, uint64_t rows, uint64_t cols,
		       struct nb_rng *rng)
{
	uint64_t n = rows * (cols ? cols : 1);
	float *d = malloc(n * sizeof(float));
	struct nb_tensor *t = &f->tensors[f->n];

	assert_non_null(d);
	for (uint64_t i = 0; i < n; i++)
		d[i] = (float)((int64_t)(nb_rng_next(rng) % 2001) - 1000) / 1000.0f;
	t->name = name;
	t->type = NB_DTYPE_F32;
	t->ndim = cols ? 2 : 1;
	t->shape[0] = rows;
	t->shape[1] = cols;
	t->data = d;
	t->size = n * sizeof(float);
	f->data[f->n++] = d;
}

/* A tiny SentencePiece-style vocabulary: enough to encode "ab ba". */
static void make_tokenizer(struct nb_tok_spec *s)
{
	static const char *const pieces[VOCAB] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81",
						   "a", "b", "\xe2\x96\x81" "a", "ab" };
	size_t total = 0;

	nb_tok_spec_init(s);
	for (int i = 0; i < VOCAB; i++)
		total += strlen(pieces[i]);
	s->kind = NB_TOK_SPM;
	s->flags = NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX;
	s->n_vocab = VOCAB;
	s->unk_id = 0;
	s->bos_id = 1;
	s->eos_id = 2;
	s->pad_id = -1;
	s->text = malloc(total);
	s->offsets = malloc((VOCAB + 1) * sizeof(uint32_t));
	s->scores = malloc(VOCAB * sizeof(float));
	s->types = malloc(VOCAB);
	assert_true(s->text && s->offsets && s->scores && s->types);
	s->offsets[0] = 0;
	for (int i = 0; i < VOCAB; i++) {
		memcpy(s->text + s->offsets[i], pieces[i], strlen(pieces[i]));
		s->offsets[i + 1] = s->offsets[i] + (uint32_t)strlen(pieces[i]);
		s->scores[i] = (float)-i;
		s->types[i] = i < 3 ? NB_PIECE_CONTROL : NB_PIECE_NORMAL;
	}
	s->types[0] = NB_PIECE_UNKNOWN;
}

static void make_model(struct fixture *f)
{
	struct nb_rng rng = { 42 };

	f->hp = (struct nb_hparams){ .arch = NB_ARCH_LLAMA, .dim = DIM, .hidden_dim = HIDDEN,
				     .n_layers = 1, .n_heads = HEADS, .n_kv_heads = KV_HEADS,
				     .head_dim = HEAD_DIM, .vocab_size = VOCAB, .seq_len = SEQ,
				     .tied_embeddings = 1, .norm_eps = 1e-5f, .rope_theta = 10000.0f };
	add_tensor(f, "token_embd.weight", VOCAB, DIM, &rng);
	add_tensor(f, "blk.0.attn_norm.weight", DIM, 0, &rng);
	add_tensor(f, "blk.0.attn_q.weight", HEADS * HEAD_DIM, DIM, &rng);
	add_tensor(f, "blk.0.attn_k.weight", KV_HEADS * HEAD_DIM, DIM, &rng);
	add_tensor(f, "blk.0.attn_v.weight", KV_HEADS * HEAD_DIM, DIM, &rng);
	add_tensor(f, "blk.0.attn_output.weight", DIM, HEADS * HEAD_DIM, &rng);
	add_tensor(f, "blk.0.ffn_norm.weight", DIM, 0, &rng);
	add_tensor(f, "blk.0.ffn_gate.weight", HIDDEN, DIM, &rng);
	add_tensor(f, "blk.0.ffn_up.weight", HIDDEN, DIM, &rng);
	add_tensor(f, "blk.0.ffn_down.weight", DIM, HIDDEN, &rng);
	add_tensor(f, "output_norm.weight", DIM, 0, &rng);
}

static int write_fixture(struct fixture *f, const int32_t *golden, uint32_t n_prompt,
			 uint32_t n_expected)
{
	static const struct nb_image_kv meta[] = { { "name", "tiny" },
						   { "license", "MIT\nsecond line" } };
	return nb_image_write(f->path, &(struct nb_image_spec){
		.hp = &f->hp, .tok = &f->tok, .model_version = 7, .meta = meta, .n_meta = 2,
		.tensors = f->tensors, .n_tensors = f->n, .golden_prompt = golden,
		.n_golden_prompt = n_prompt, .golden_expected = golden + n_prompt,
		.n_golden_expected = n_expected });
}

static void load_file(struct fixture *f)
{
	FILE *fp = fopen(f->path, "rb");

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	f->size = (size_t)ftell(fp);
	rewind(fp);
	free(f->file);
	f->file = aligned_alloc(64, (f->size + 63) & ~(size_t)63);
	assert_non_null(f->file);
	assert_int_equal(fread(f->file, 1, f->size, fp), f->size);
	fclose(fp);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int32_t golden[5];
	struct nb_model m;

	strcpy(f->dir, "/tmp/nb-image-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/tiny.nib", f->dir);
	make_model(f);
	make_tokenizer(&f->tok);
	/* The golden vector is this model's own greedy continuation. */
	golden[0] = 1;
	golden[1] = 6;
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &f->hp, f->tensors, f->n), 0);
	assert_int_equal(nb_llm_greedy(&m, golden, 2, 3, golden + 2), 0);
	nb_model_free(&m);
	assert_int_equal(write_fixture(f, golden, 2, 3), 0);
	load_file(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	const char *keep = getenv("NB_KEEP_IMAGE");

	/* NB_KEEP_IMAGE=path saves the fixture (the fuzz target's seed). */
	if (keep) {
		FILE *fp = fopen(keep, "wb");
		if (fp) {
			fwrite(f->file, 1, f->size, fp);
			fclose(fp);
		}
	}
	unlink(f->path);
	rmdir(f->dir);
	for (size_t i = 0; i < f->n; i++)
		free(f->data[i]);
	nb_tok_spec_free(&f->tok);
	free(f->file);
	free(f);
	return 0;
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct nb_image img;
	const char *v;
	size_t len;

	assert_int_equal(nb_image_open(&img, f->path, NB_IMAGE_POPULATE), 0);
	assert_memory_equal(&img.hp, &f->hp, sizeof(f->hp));
	assert_int_equal(img.hdr->model_version, 7);
	assert_int_equal(img.n_tensors, f->n);
	for (size_t i = 0; i < f->n; i++) {
		const struct nb_tensor *t = nb_image_tensor(&img, f->tensors[i].name);
		assert_non_null(t);
		assert_int_equal(t->size, f->tensors[i].size);
		assert_memory_equal(t->data, f->tensors[i].data, t->size);
		/* Used in place: inside the mapping, aligned for the widest load. */
		assert_true((const uint8_t *)t->data > img.map &&
			    (const uint8_t *)t->data + t->size <= img.map + img.map_size);
		assert_int_equal((uintptr_t)t->data % NB_IMAGE_TENSOR_ALIGN, 0);
	}
	assert_null(nb_image_tensor(&img, "output.weight"));
	assert_int_equal(nb_image_meta(&img, "license", &v, &len), 0);
	assert_int_equal(len, strlen("MIT\nsecond line"));
	assert_memory_equal(v, "MIT\nsecond line", len);
	assert_int_equal(nb_image_meta(&img, "nope", &v, &len), -NB_ENOENT);
	assert_int_equal(img.map_size % NB_IMAGE_PAGE, 0);
	for (size_t i = img.map_size - NB_IMAGE_TRAILER_SIZE; i < img.map_size; i++)
		assert_int_equal(img.map[i], 0);
	nb_image_close(&img);
	nb_image_close(&img); /* idempotent */
}

static void test_llm_open_and_golden(void **state)
{
	struct fixture *f = *state;
	int32_t ids[8];
	size_t n = 0;
	uint32_t diff = 99;
	struct nb_llm l;

	assert_int_equal(nb_llm_open(&l, f->path, 0), 0);
	assert_int_equal(nb_tok_encode(l.tok, "ab", 2, true, ids, 8, &n), 0);
	assert_true(n >= 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(nb_llm_check_golden(&l, &diff), 0);
	nb_llm_close(&l);

	/* An image whose golden continuation is wrong must fail the check. */
	{
		int32_t bad[5] = { 1, 6, 0, 0, 0 };
		int32_t good[3];
		struct nb_model m;
		nb_model_init(&m);
		assert_int_equal(nb_model_bind(&m, &f->hp, f->tensors, f->n), 0);
		assert_int_equal(nb_llm_greedy(&m, bad, 2, 3, good), 0);
		nb_model_free(&m);
		bad[3] = (good[1] + 1) % VOCAB;
		bad[2] = good[0];
		bad[4] = good[2];
		assert_int_equal(write_fixture(f, bad, 2, 3), 0);
		assert_int_equal(nb_llm_open(&l, f->path, 0), 0);
		assert_int_equal(nb_llm_check_golden(&l, &diff), -NB_ESELFTEST);
		assert_int_equal(diff, 1);
		nb_llm_close(&l);
	}
}

/* The layer's pieces are stored and read back, and the image's golden
 * vector (computed with them) is reproduced from the file. */
static void test_layer_fields_round_trip(void **state)
{
	static const char *const extra[] = { "blk.0.attn_q.bias", "blk.0.attn_k.bias",
					     "blk.0.attn_v.bias", "blk.0.attn_q_norm.weight",
					     "blk.0.attn_k_norm.weight" };
	static const uint64_t rows[] = { HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM,
					 HEAD_DIM, HEAD_DIM };
	struct fixture *f = *state;
	struct nb_hparams llama = f->hp;
	struct nb_rng rng = { 5 };
	size_t n0 = f->n;
	int32_t golden[5] = { 1, 6 };
	uint32_t diff = 99;
	struct nb_model m;
	struct nb_image img;
	struct nb_llm l;

	for (size_t i = 0; i < 5; i++)
		add_tensor(f, extra[i], rows[i], 0, &rng);
	f->hp.features = NB_FEAT_QKV_BIAS | NB_FEAT_QK_NORM;
	f->hp.activation = NB_ACT_GELU_TANH;
	f->hp.norm_offset = 1.0f;
	f->hp.embed_scale = 2.828427f;
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &f->hp, f->tensors, f->n), 0);
	assert_int_equal(nb_llm_greedy(&m, golden, 2, 3, golden + 2), 0);
	nb_model_free(&m);
	assert_int_equal(write_fixture(f, golden, 2, 3), 0);
	assert_int_equal(nb_image_open(&img, f->path, 0), 0);
	assert_memory_equal(&img.hp, &f->hp, sizeof(f->hp));
	assert_non_null(nb_image_tensor(&img, "blk.0.attn_k_norm.weight"));
	nb_image_close(&img);
	assert_int_equal(nb_llm_open(&l, f->path, 0), 0);
	assert_int_equal(nb_llm_check_golden(&l, &diff), 0);
	nb_llm_close(&l);

	/* the fixture again, for the tests after this one */
	for (size_t i = n0; i < f->n; i++)
		free(f->data[i]);
	f->n = n0;
	f->hp = llama;
	golden[2] = 0;
	nb_model_init(&m);
	assert_int_equal(nb_model_bind(&m, &f->hp, f->tensors, f->n), 0);
	assert_int_equal(nb_llm_greedy(&m, golden, 2, 3, golden + 2), 0);
	nb_model_free(&m);
	assert_int_equal(write_fixture(f, golden, 2, 3), 0);
}

static int open_copy(const struct fixture *f, size_t size, void (*mutate)(uint8_t *, size_t))
{
	uint8_t *buf = aligned_alloc(64, (f->size + 63) & ~(size_t)63);
	struct nb_image img;
	int ret;

	memcpy(buf, f->file, f->size);
	if (mutate)
		mutate(buf, size);
	ret = nb_image_open_mem(&img, buf, size);
	if (ret == 0)
		nb_image_close(&img);
	free(buf);
	return ret;
}

static struct nb_image_header *hdr(uint8_t *b)
{
	return (struct nb_image_header *)b;
}

static struct nb_image_section *sec(uint8_t *b, uint32_t kind)
{
	for (uint32_t i = 0; i < hdr(b)->n_sections; i++)
		if (hdr(b)->sections[i].kind == kind)
			return &hdr(b)->sections[i];
	fail();
	return NULL;
}

static struct nb_image_tensor *entry(uint8_t *b, uint32_t i)
{
	return (struct nb_image_tensor *)(b + sec(b, NB_SECTION_TENSORS)->offset) + i;
}

static void m_magic(uint8_t *b, size_t n) { (void)n; b[1] = 'X'; }
static void m_version(uint8_t *b, size_t n) { (void)n; hdr(b)->version = 2; }
static void m_flags(uint8_t *b, size_t n) { (void)n; hdr(b)->flags = 1; }
static void m_nsec(uint8_t *b, size_t n) { (void)n; hdr(b)->n_sections = 17; }
static void m_sec_past_eof(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_META)->size = 1ull << 62; }
static void m_sec_wrap(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_META)->offset = ~0ull & ~4095ull; }
static void m_sec_overlap(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_META)->offset = sec(b, NB_SECTION_HPARAMS)->offset; }
static void m_sec_unaligned(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_META)->offset += 8; }
static void m_sec_kind(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_GOLDEN)->kind = 99; }
static void m_sec_dup(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_GOLDEN)->kind = NB_SECTION_META; }
static void m_no_data(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_DATA)->kind = NB_SECTION_GOLDEN; sec(b, NB_SECTION_GOLDEN)->kind = 0; }
static void m_hp_heads(uint8_t *b, size_t n) { (void)n; ((struct nb_image_hparams *)(b + sec(b, NB_SECTION_HPARAMS)->offset))->n_kv_heads = 3; }
static void m_hp_dim0(uint8_t *b, size_t n) { (void)n; ((struct nb_image_hparams *)(b + sec(b, NB_SECTION_HPARAMS)->offset))->dim = 0; }
static void m_hp_huge(uint8_t *b, size_t n) { (void)n; ((struct nb_image_hparams *)(b + sec(b, NB_SECTION_HPARAMS)->offset))->vocab_size = 0xffffffffu; }
static void m_table_size(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_TENSORS)->size -= 1; }
static void m_t_type(uint8_t *b, size_t n) { (void)n; entry(b, 2)->type = 77; }
static void m_t_ndim0(uint8_t *b, size_t n) { (void)n; entry(b, 2)->ndim = 0; }
static void m_t_ndim5(uint8_t *b, size_t n) { (void)n; entry(b, 2)->ndim = 5; }
static void m_t_shape_ovf(uint8_t *b, size_t n) { (void)n; entry(b, 2)->shape[0] = 1ull << 32; entry(b, 2)->shape[1] = 1ull << 32; }
static void m_t_shape0(uint8_t *b, size_t n) { (void)n; entry(b, 2)->shape[1] = 0; }
static void m_t_size(uint8_t *b, size_t n) { (void)n; entry(b, 2)->size += 4; }
static void m_t_offset(uint8_t *b, size_t n) { (void)n; entry(b, 2)->offset = 1ull << 40; }
static void m_t_offset_wrap(uint8_t *b, size_t n) { (void)n; entry(b, 2)->offset = ~63ull; }
static void m_t_unaligned(uint8_t *b, size_t n) { (void)n; entry(b, 2)->offset += 4; }
static void m_t_name(uint8_t *b, size_t n) { (void)n; memset(entry(b, 2)->name, 'x', 64); }
static void m_t_dup(uint8_t *b, size_t n) { (void)n; strcpy(entry(b, 2)->name, entry(b, 3)->name); }
static void m_t_unused_dim(uint8_t *b, size_t n) { (void)n; entry(b, 1)->shape[2] = 5; }
static void m_meta(uint8_t *b, size_t n) { (void)n; ((uint32_t *)(b + sec(b, NB_SECTION_META)->offset))[1] = 0x7fffffff; }
static void m_meta_key0(uint8_t *b, size_t n) { (void)n; ((uint32_t *)(b + sec(b, NB_SECTION_META)->offset))[0] = 0; }
static void m_golden_id(uint8_t *b, size_t n) { (void)n; ((int32_t *)(b + sec(b, NB_SECTION_GOLDEN)->offset))[3] = VOCAB; }
static void m_golden_neg(uint8_t *b, size_t n) { (void)n; ((int32_t *)(b + sec(b, NB_SECTION_GOLDEN)->offset))[2] = -1; }
static void m_golden_count(uint8_t *b, size_t n) { (void)n; ((uint32_t *)(b + sec(b, NB_SECTION_GOLDEN)->offset))[1] = 0xffffffffu; }
static struct nb_image_hparams *ihp(uint8_t *b) { return (struct nb_image_hparams *)(b + sec(b, NB_SECTION_HPARAMS)->offset); }
static void m_hp_seq_flip(uint8_t *b, size_t n) { (void)n; ((uint8_t *)&ihp(b)->seq_len)[2] = 0xff; }
static void m_hp_layers(uint8_t *b, size_t n) { (void)n; ihp(b)->n_layers = 257; }
static void m_hp_eps(uint8_t *b, size_t n) { (void)n; ihp(b)->norm_eps = 3.0f; }
static void m_hp_reserved(uint8_t *b, size_t n) { (void)n; ihp(b)->reserved[10] = 1; }
static void m_hp_features(uint8_t *b, size_t n) { (void)n; ihp(b)->features = 1u << 9; }
static void m_hp_act(uint8_t *b, size_t n) { (void)n; ihp(b)->activation = 9; }
static void m_hp_norm_offset(uint8_t *b, size_t n) { (void)n; ihp(b)->norm_offset = 0.5f; }
static void m_hp_embed_scale(uint8_t *b, size_t n) { (void)n; ihp(b)->embed_scale = -2.0f; }
static void m_hdr_reserved(uint8_t *b, size_t n) { (void)n; hdr(b)->reserved[23] = 1; }
static void m_sec_unused(uint8_t *b, size_t n) { (void)n; hdr(b)->sections[NB_IMAGE_MAX_SECTIONS - 1].offset = 4096; }
static void m_sec_reserved(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_META)->reserved = 1; }
static void m_t_same_bytes(uint8_t *b, size_t n) { (void)n; entry(b, 3)->offset = entry(b, 2)->offset; }
static void m_t_overlap(uint8_t *b, size_t n) { (void)n; entry(b, 3)->offset = entry(b, 2)->offset + 64; }
static void m_t_inside(uint8_t *b, size_t n) { (void)n; entry(b, 10)->offset = entry(b, 0)->offset + 192; }
static void m_trailer(uint8_t *b, size_t n) { (void)n; sec(b, NB_SECTION_TRAILER)->size = 4096 * 2; sec(b, NB_SECTION_TRAILER)->offset -= 4096; }

static void test_corruptions_are_rejected(void **state)
{
	static void (*const mutations[])(uint8_t *, size_t) = {
		m_magic, m_version, m_flags, m_nsec, m_sec_past_eof, m_sec_wrap, m_sec_overlap,
		m_sec_unaligned, m_sec_kind, m_sec_dup, m_no_data, m_hp_heads, m_hp_dim0, m_hp_huge,
		m_table_size, m_t_type, m_t_ndim0, m_t_ndim5, m_t_shape_ovf, m_t_shape0, m_t_size,
		m_t_offset, m_t_offset_wrap, m_t_unaligned, m_t_name, m_t_dup, m_t_unused_dim,
		m_meta, m_meta_key0, m_golden_id, m_golden_neg, m_golden_count, m_trailer,
		m_hp_seq_flip, m_hp_layers, m_hp_eps, m_hp_reserved, m_hp_features, m_hp_act,
		m_hp_norm_offset, m_hp_embed_scale, m_hdr_reserved, m_sec_unused, m_sec_reserved,
		m_t_same_bytes, m_t_overlap, m_t_inside,
	};
	struct fixture *f = *state;

	assert_int_equal(open_copy(f, f->size, NULL), 0);
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
		int ret = open_copy(f, f->size, mutations[i]);
		if (ret >= 0)
			fail_msg("mutation %zu was accepted", i);
	}
}

static void test_truncated_images_are_rejected(void **state)
{
	struct fixture *f = *state;

	for (size_t n = 0; n < f->size; n += (n < 512 ? 7 : 509))
		assert_true(open_copy(f, n, NULL) < 0);
	assert_true(open_copy(f, f->size - 1, NULL) < 0);
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct nb_image img;
	char path[160];
	FILE *fp;

	assert_int_equal(nb_image_open(&img, "/nonexistent.nib", 0), -NB_ENOENT);
	assert_int_equal(nb_image_open(&img, f->dir, 0), -NB_EIO);
	snprintf(path, sizeof(path), "%s/short.nib", f->dir);
	fp = fopen(path, "wb");
	fwrite(f->file, 1, 100, fp);
	fclose(fp);
	assert_int_equal(nb_image_open(&img, path, 0), -NB_EFORMAT);
	unlink(path);
	/* A failed open leaves a closed, reusable struct. */
	assert_int_equal(img.fd, -1);
	assert_null(img.map);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_llm_open_and_golden),
		cmocka_unit_test(test_layer_fields_round_trip),
		cmocka_unit_test(test_corruptions_are_rejected),
		cmocka_unit_test(test_truncated_images_are_rejected),
		cmocka_unit_test(test_open_errors),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
