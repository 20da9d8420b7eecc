/* Tokenizer core and SentencePiece BPE: ids against sentencepiece's own
 * output (tests/data/llama2-tokenizer/reference.json, the stories260K
 * prompts), both file formats against each other, decode round trips, the
 * image blob and its rejection of corrupt input. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"
#include "runtime/text/tokenizer.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tests/unit/testutil.h"

#define LLAMA2_MODEL "tests/data/llama2-tokenizer/tokenizer.model"
#define LLAMA2_BIN "tests/data/llama2-tokenizer/tokenizer.bin"
#define LLAMA2_REF "tests/data/llama2-tokenizer/reference.json"
#define TOK512_BIN "models/stories260K/tok512.bin"
#define TOK512_MODEL "tests/data/stories260K/hf/tokenizer.model"
#define STORIES_REF "tests/data/stories260K/reference.json"
#define EVAL_TEXT "tests/data/text/tinystories-valid-dev.txt"

static struct nb_tok *open_spec(const struct nb_tok_spec *s)
{
	struct nb_tok *t = NULL;

	assert_int_equal(nb_tok_open(&t, s), 0);
	assert_non_null(t);
	return t;
}

static struct nb_tok *open_file(const char *path, bool model)
{
	struct nb_tok_spec s;
	struct nb_tok *t;

	assert_int_equal(model ? nb_tok_import_spm_model(&s, path) : nb_tok_import_llama2c(&s, path),
			 0);
	t = open_spec(&s);
	nb_tok_spec_free(&s);
	return t;
}

/* Encodes into a fresh array of exactly the needed size. */
static int32_t *encode(const struct nb_tok *t, const char *text, size_t len, bool bos, size_t *n)
{
	int32_t *ids;
	size_t need = 0;
	int err = nb_tok_encode(t, text, len, bos, NULL, 0, &need);

	assert_true(err == 0 || err == -NB_ERANGE);
	ids = malloc((need ? need : 1) * sizeof(*ids));
	assert_non_null(ids);
	assert_int_equal(nb_tok_encode(t, text, len, bos, ids, need, n), 0);
	assert_int_equal(*n, need);
	return ids;
}

static void assert_ids(const int32_t *ids, size_t n, const cJSON *want, const char *what)
{
	size_t i = 0;
	const cJSON *v;

	if ((size_t)cJSON_GetArraySize(want) != n)
		fail_msg("%s: %zu ids, reference has %d", what, n, cJSON_GetArraySize(want));
	cJSON_ArrayForEach(v, want) {
		if (ids[i] != (int32_t)v->valuedouble)
			fail_msg("%s: id %zu is %d, reference %d", what, i, ids[i],
				 (int)v->valuedouble);
		i++;
	}
}

static void assert_round_trip(const struct nb_tok *t, const int32_t *ids, size_t n,
			      const char *text, size_t len)
{
	char *buf = malloc(len + 1);
	size_t got = 0;

	assert_non_null(buf);
	assert_int_equal(nb_tok_decode(t, ids, n, buf, len + 1, &got), 0);
	assert_int_equal(got, len);
	assert_memory_equal(buf, text, len);
	assert_int_equal(buf[len], '\0');
	free(buf);
}

/* Both importers of one tokenizer must produce the same spec. */
static void assert_same_spec(const struct nb_tok_spec *a, const struct nb_tok_spec *b)
{
	assert_int_equal(a->kind, b->kind);
	assert_int_equal(a->flags, b->flags);
	assert_int_equal(a->n_vocab, b->n_vocab);
	assert_int_equal(a->bos_id, b->bos_id);
	assert_int_equal(a->eos_id, b->eos_id);
	assert_int_equal(a->unk_id, b->unk_id);
	assert_int_equal(a->pad_id, b->pad_id);
	assert_memory_equal(a->offsets, b->offsets, (a->n_vocab + 1) * sizeof(uint32_t));
	assert_memory_equal(a->text, b->text, a->offsets[a->n_vocab]);
	assert_memory_equal(a->scores, b->scores, a->n_vocab * sizeof(float));
	assert_memory_equal(a->types, b->types, a->n_vocab);
}

/* ---- Llama 2 reference -------------------------------------------------- */

static void test_llama2_import_formats_agree(void **state)
{
	struct nb_tok_spec m, b;

	(void)state;
	assert_int_equal(nb_tok_import_spm_model(&m, LLAMA2_MODEL), 0);
	assert_int_equal(nb_tok_import_llama2c(&b, LLAMA2_BIN), 0);
	assert_int_equal(m.n_vocab, 32000);
	assert_int_equal(m.kind, NB_TOK_SPM);
	assert_int_equal(m.flags, NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX |
					  NB_TOK_FLAG_BYTE_FALLBACK);
	assert_int_equal(m.unk_id, 0);
	assert_int_equal(m.bos_id, 1);
	assert_int_equal(m.eos_id, 2);
	assert_int_equal(m.pad_id, -1);
	assert_int_equal(m.types[3], NB_PIECE_BYTE);
	assert_same_spec(&m, &b);
	nb_tok_spec_free(&m);
	nb_tok_spec_free(&b);
}

static void check_llama2_reference(const char *path, bool model)
{
	cJSON *ref = test_load_json(LLAMA2_REF), *item;
	struct nb_tok *t = open_file(path, model);
	int count = 0;

	cJSON_ArrayForEach(item, cJSON_GetObjectItem(ref, "items")) {
		const char *text = cJSON_GetObjectItem(item, "text")->valuestring;
		size_t len = strlen(text), n;
		int32_t *ids = encode(t, text, len, false, &n);

		assert_ids(ids, n, cJSON_GetObjectItem(item, "ids"), text);
		assert_round_trip(t, ids, n, text, len);
		free(ids);
		count++;
	}
	assert_int_equal(count, 46);
	nb_tok_close(t);
	cJSON_Delete(ref);
}

static void test_llama2_reference_model(void **state)
{
	(void)state;
	check_llama2_reference(LLAMA2_MODEL, true);
}

static void test_llama2_reference_bin(void **state)
{
	(void)state;
	check_llama2_reference(LLAMA2_BIN, false);
}

/* ---- stories260K --------------------------------------------------------- */

static void test_tok512_import_formats_agree(void **state)
{
	struct nb_tok_spec m, b;

	(void)state;
	assert_int_equal(nb_tok_import_spm_model(&m, TOK512_MODEL), 0);
	assert_int_equal(nb_tok_import_llama2c(&b, TOK512_BIN), 0);
	assert_int_equal(m.n_vocab, 512);
	assert_same_spec(&m, &b);
	nb_tok_spec_free(&m);
	nb_tok_spec_free(&b);
}

static void check_stories_prompts(const char *path, bool model)
{
	cJSON *ref = test_load_json(STORIES_REF), *p;
	struct nb_tok *t = open_file(path, model);
	int count = 0;

	assert_int_equal(nb_tok_vocab_size(t), 512);
	assert_int_equal(nb_tok_bos(t), 1);
	assert_int_equal(nb_tok_eos(t), 2);
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "prompts")) {
		const char *text = cJSON_GetObjectItem(p, "prompt")->valuestring;
		size_t len = strlen(text), n;
		int32_t *ids = encode(t, text, len, true, &n);

		assert_ids(ids, n, cJSON_GetObjectItem(p, "ids"), text);
		assert_int_equal(ids[0], 1);
		assert_round_trip(t, ids, n, text, len);
		free(ids);
		count++;
	}
	assert_true(count >= 6);
	nb_tok_close(t);
	cJSON_Delete(ref);
}

static void test_stories_prompts_bin(void **state)
{
	(void)state;
	check_stories_prompts(TOK512_BIN, false);
}

static void test_stories_prompts_model(void **state)
{
	(void)state;
	check_stories_prompts(TOK512_MODEL, true);
}

/* The whole evaluation text at once: both files of each tokenizer agree id
 * for id, and decoding gives the text back byte for byte. */
static void check_eval_text(const char *bin, const char *model)
{
	struct nb_tok *tb = open_file(bin, false), *tm = open_file(model, true);
	size_t len, nb, nm;
	char *text = test_slurp(EVAL_TEXT, &len);
	int32_t *ib, *im;
	double t0 = test_now();

	ib = encode(tb, text, len, true, &nb);
	print_message("# %s: %zu bytes -> %zu tokens in %.3f s\n", bin, len, nb, test_now() - t0);
	im = encode(tm, text, len, true, &nm);
	assert_int_equal(nb, nm);
	assert_memory_equal(ib, im, nb * sizeof(*ib));
	assert_true(nb > len / 8 && nb < len);
	assert_round_trip(tb, ib, nb, text, len);
	assert_round_trip(tm, im, nm, text, len);
	free(ib);
	free(im);
	free(text);
	nb_tok_close(tb);
	nb_tok_close(tm);
}

static void test_eval_text_tok512(void **state)
{
	(void)state;
	check_eval_text(TOK512_BIN, TOK512_MODEL);
}

static void test_eval_text_llama2(void **state)
{
	(void)state;
	check_eval_text(LLAMA2_BIN, LLAMA2_MODEL);
}

/* Stories encoded one by one (split on <|endoftext|>, stripped, BOS each)
 * give the same ids as the reference prompts where they overlap: the first
 * story of the evaluation text starts the "rhinoceros" prompt. */
static void test_eval_text_story_prefix(void **state)
{
	struct nb_tok *t = open_file(TOK512_BIN, false);
	cJSON *ref = test_load_json(STORIES_REF), *p, *ids_ref = NULL;
	size_t len, n;
	char *text = test_slurp(EVAL_TEXT, &len);
	const char *prompt = NULL, *story;
	int32_t *ids;

	(void)state;
	cJSON_ArrayForEach(p, cJSON_GetObjectItem(ref, "prompts")) {
		const char *s = cJSON_GetObjectItem(p, "prompt")->valuestring;
		if (strstr(s, "rhinoceros")) {
			prompt = s;
			ids_ref = cJSON_GetObjectItem(p, "ids");
		}
	}
	assert_non_null(prompt);
	story = strstr(text, prompt);
	assert_non_null(story);
	ids = encode(t, story, strlen(prompt), true, &n);
	assert_ids(ids, n, ids_ref, "story prefix");
	free(ids);
	free(text);
	nb_tok_close(t);
	cJSON_Delete(ref);
}

/* ---- blob ------------------------------------------------------------------ */

static void assert_same_encoding(const struct nb_tok *a, const struct nb_tok *b, const char *text)
{
	size_t na, nb;
	int32_t *ia = encode(a, text, strlen(text), true, &na);
	int32_t *ib = encode(b, text, strlen(text), true, &nb);

	assert_int_equal(na, nb);
	assert_memory_equal(ia, ib, na * sizeof(*ia));
	free(ia);
	free(ib);
}

static const char *const sample_texts[] = {
	"Once upon a time, there was a little girl named Lily.",
	"  leading spaces and\ttabs\nnewlines",
	"Ünïcödé — “quotes” 日本語 😀 \x01\x7f",
	"",
};

static void test_blob_round_trip(void **state)
{
	const char *files[] = { LLAMA2_MODEL, TOK512_BIN };
	struct nb_tok_spec s, p;
	struct nb_tok *a, *b;
	uint8_t *blob, *blob2;
	size_t len, len2;

	(void)state;
	for (size_t f = 0; f < 2; f++) {
		assert_int_equal(f == 0 ? nb_tok_import_spm_model(&s, files[f])
					: nb_tok_import_llama2c(&s, files[f]), 0);
		assert_int_equal(nb_tok_spec_write(&s, &blob, &len), 0);
		assert_int_equal(nb_tok_spec_parse(&p, blob, len), 0);
		assert_same_spec(&s, &p);
		assert_int_equal(nb_tok_spec_write(&p, &blob2, &len2), 0);
		assert_int_equal(len, len2);
		assert_memory_equal(blob, blob2, len);
		a = open_spec(&s);
		b = open_spec(&p);
		for (size_t i = 0; i < sizeof(sample_texts) / sizeof(sample_texts[0]); i++)
			assert_same_encoding(a, b, sample_texts[i]);
		nb_tok_close(a);
		nb_tok_close(b);
		free(blob);
		free(blob2);
		nb_tok_spec_free(&s);
		nb_tok_spec_free(&p);
		nb_tok_spec_free(&p); /* idempotent */
	}
}

/* A parsed blob must be usable: open it and encode something. */
static void try_blob(const uint8_t *blob, size_t len)
{
	struct nb_tok_spec s;
	struct nb_tok *t = NULL;
	int32_t ids[64];
	size_t n;
	char out[256];

	if (nb_tok_spec_parse(&s, blob, len) != 0) {
		assert_null(s.text);
		assert_int_equal(s.n_vocab, 0);
		return;
	}
	if (nb_tok_open(&t, &s) == 0) {
		for (size_t i = 0; i < sizeof(sample_texts) / sizeof(sample_texts[0]); i++) {
			int err = nb_tok_encode(t, sample_texts[i], strlen(sample_texts[i]), true, ids,
						64, &n);
			assert_true(err == 0 || err == -NB_ERANGE);
			if (err == 0)
				(void)nb_tok_decode(t, ids, n, out, sizeof(out), &n);
		}
		nb_tok_close(t);
	} else {
		assert_null(t);
	}
	nb_tok_spec_free(&s);
}

static void test_blob_corrupt(void **state)
{
	struct nb_tok_spec s, p;
	uint8_t *blob, *copy;
	size_t len, i;
	int saved;

	(void)state;
	assert_int_equal(nb_tok_import_llama2c(&s, TOK512_BIN), 0);
	assert_int_equal(nb_tok_spec_write(&s, &blob, &len), 0);
	saved = test_quiet();
	/* Every truncation is rejected (the sizes must add up exactly). */
	for (i = 0; i < len; i++) {
		copy = malloc(i ? i : 1);
		memcpy(copy, blob, i);
		assert_int_equal(nb_tok_spec_parse(&p, copy, i), -NB_EFORMAT);
		free(copy);
	}
	/* Every header byte, and a spread of the rest, flipped in every bit. */
	copy = malloc(len);
	for (i = 0; i < len; i += i < 64 ? 1 : 97) {
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, blob, len);
			copy[i] ^= (uint8_t)(1u << bit);
			try_blob(copy, len);
		}
	}
	/* Huge counts: n_vocab, n_merges, text length. */
	for (i = 20; i < 48; i += 4) {
		memcpy(copy, blob, len);
		memset(copy + i, 0xff, 4);
		if (i >= 24 && i < 40)
			continue; /* special ids: -1 is valid */
		assert_int_equal(nb_tok_spec_parse(&p, copy, len), -NB_EFORMAT);
	}
	memcpy(copy, blob, len);
	copy[24] = 0x00, copy[25] = 0x02; /* bos = 512 = n_vocab */
	assert_int_equal(nb_tok_spec_parse(&p, copy, len), -NB_EFORMAT);
	memcpy(copy, blob, len);
	copy[48 + 9 * 512 - 1] = 7; /* type of the last piece */
	assert_int_equal(nb_tok_spec_parse(&p, copy, len), -NB_EFORMAT);
	memcpy(copy, blob, len);
	memcpy(copy + 48 + 4 * 512, "\x00\x00\xc0\x7f", 4); /* NaN score */
	assert_int_equal(nb_tok_spec_parse(&p, copy, len), -NB_EFORMAT);
	memcpy(copy, blob, len);
	copy[48] ^= 1; /* a piece length: the sum no longer matches */
	assert_int_equal(nb_tok_spec_parse(&p, copy, len), -NB_EFORMAT);
	assert_int_equal(nb_tok_spec_parse(&p, NULL, 0), -NB_EFORMAT);
	test_loud(saved);
	free(copy);
	free(blob);
	nb_tok_spec_free(&s);
}

/* ---- encode / decode API ---------------------------------------------------- */

static void test_invalid_utf8(void **state)
{
	static const char *const bad[] = {
		"\xff", "a\x80", "\xc0\xaf", "\xc1\xbf", "\xe0\x80\xaf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "abc\xe2\x96", "\xf0\x9f\x98",
	};
	struct nb_tok *t = open_file(TOK512_BIN, false);
	int32_t ids[16];
	size_t n = 99;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(nb_tok_encode(t, bad[i], strlen(bad[i]), true, ids, 16, &n),
				 -NB_EFORMAT);
		assert_int_equal(n, 0);
	}
	/* Boundary code points are fine: U+0000, U+07FF, U+FFFF, U+10FFFF. */
	assert_int_equal(nb_tok_encode(t, "\0\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf", 10, false,
				       ids, 16, &n), 0);
	assert_int_equal(n, 1 + 2 + 3 + 4 + 1); /* ▁ then bytes: none is in tok512 */
	nb_tok_close(t);
}

static void test_small_buffers(void **state)
{
	struct nb_tok *t = open_file(TOK512_BIN, false);
	const char *text = "Once upon a time";
	int32_t ids[5] = { 0 }, want[5] = { 1, 403, 407, 261, 378 };
	char buf[32];
	size_t n = 0, len = 0;

	(void)state;
	for (size_t max = 0; max < 5; max++) {
		assert_int_equal(nb_tok_encode(t, text, strlen(text), true, max ? ids : NULL, max,
					       &n), -NB_ERANGE);
		assert_int_equal(n, 5);
	}
	assert_int_equal(nb_tok_encode(t, text, strlen(text), true, ids, 5, &n), 0);
	assert_memory_equal(ids, want, sizeof(want));
	assert_int_equal(nb_tok_decode(t, ids, 5, buf, 4, &len), -NB_ERANGE);
	assert_int_equal(len, strlen(text));
	assert_int_equal(nb_tok_decode(t, ids, 5, buf, strlen(text), &len), 0); /* no room for NUL */
	assert_int_equal(nb_tok_decode(t, ids, 5, buf, sizeof(buf), &len), 0);
	assert_string_equal(buf, text);
	assert_int_equal(nb_tok_piece(t, 1, 403, buf, 2, &len), -NB_ERANGE);
	assert_int_equal(len, 4); /* "Once" */
	assert_int_equal(nb_tok_piece(t, 403, 403, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(buf, " Once", 5);
	assert_int_equal(nb_tok_piece(t, 403, 1, buf, sizeof(buf), &len), 0);
	assert_int_equal(len, 0);                                         /* control */
	assert_int_equal(nb_tok_piece(t, 403, 3 + 0x0a, buf, sizeof(buf), &len), 0); /* <0x0A> */
	assert_int_equal(len, 1);
	assert_int_equal(buf[0], '\n');
	assert_int_equal(nb_tok_piece(t, 403, 512, buf, sizeof(buf), &len), -NB_EINVAL);
	assert_int_equal(nb_tok_piece(t, 403, -1, buf, sizeof(buf), &len), -NB_EINVAL);
	assert_int_equal(nb_tok_encode(t, "", 0, true, ids, 5, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(nb_tok_encode(t, "", 0, false, ids, 5, &n), 0);
	assert_int_equal(n, 0);
	nb_tok_close(t);
	nb_tok_close(NULL);
}

/* ---- hand-made models: rules the real models do not exercise ---------------- */

struct mini_piece {
	const char *text;
	float score;
	uint8_t type;
};

static void mini_spec(struct nb_tok_spec *s, const struct mini_piece *p, uint32_t n,
		      uint32_t flags)
{
	uint32_t i, o = 0;

	nb_tok_spec_init(s);
	s->kind = NB_TOK_SPM;
	s->flags = flags;
	s->n_vocab = n;
	s->unk_id = 0;
	s->bos_id = 1;
	s->eos_id = 2;
	s->offsets = calloc(n + 1, sizeof(uint32_t));
	s->scores = calloc(n, sizeof(float));
	s->types = calloc(n, 1);
	s->text = malloc(4096);
	for (i = 0; i < n; i++) {
		memcpy(s->text + o, p[i].text, strlen(p[i].text));
		o += (uint32_t)strlen(p[i].text);
		s->offsets[i + 1] = o;
		s->scores[i] = p[i].score;
		s->types[i] = p[i].type;
	}
}

static void expect(const struct nb_tok *t, const char *text, const int32_t *want, size_t n_want)
{
	size_t n;
	int32_t *ids = encode(t, text, strlen(text), false, &n);

	assert_int_equal(n, n_want);
	assert_memory_equal(ids, want, n * sizeof(*ids));
	free(ids);
}

#define EXPECT(t, text, ...)                                                       \
	do {                                                                       \
		static const int32_t w_[] = { __VA_ARGS__ };                       \
		expect(t, text, w_, sizeof(w_) / sizeof(w_[0]));                   \
	} while (0)

/* Highest score first, leftmost on ties; unknown characters collapse into
 * one <unk> per run without byte fallback; USER pieces are matched whole;
 * merges into UNUSED pieces are undone. */
static void test_merge_rules(void **state)
{
	static const struct mini_piece p[] = {
		{ "<unk>", 0, NB_PIECE_UNKNOWN }, /* 0 */
		{ "<s>", 0, NB_PIECE_CONTROL },    /* 1 */
		{ "</s>", 0, NB_PIECE_CONTROL },   /* 2 */
		{ "a", -1, NB_PIECE_NORMAL },      /* 3 */
		{ "b", -1, NB_PIECE_NORMAL },      /* 4 */
		{ "ab", -3, NB_PIECE_NORMAL },     /* 5 */
		{ "ba", -2, NB_PIECE_NORMAL },     /* 6 */
		{ "aa", -3, NB_PIECE_NORMAL },     /* 7 */
		{ "c", -1, NB_PIECE_NORMAL },      /* 8 */
		{ "cc", -1, NB_PIECE_UNUSED },     /* 9 */
		{ "ccc", -0.5f, NB_PIECE_NORMAL }, /* 10 */
		{ "ccd", -0.5f, NB_PIECE_NORMAL }, /* 11 */
		{ "d", -1, NB_PIECE_NORMAL },      /* 12 */
		{ "<x>", 0, NB_PIECE_USER },       /* 13 */
		{ "x", -1, NB_PIECE_NORMAL },      /* 14 */
		{ "<", -1, NB_PIECE_NORMAL },      /* 15 */
		{ "<x", -0.1f, NB_PIECE_NORMAL },  /* 16 */
	};
	struct nb_tok_spec s;
	struct nb_tok *t;

	(void)state;
	mini_spec(&s, p, sizeof(p) / sizeof(p[0]), 0);
	t = open_spec(&s);
	EXPECT(t, "aba", 3, 6);       /* "ba" (-2) beats "ab" (-3) */
	EXPECT(t, "aaaa", 7, 7);      /* ties: leftmost first */
	EXPECT(t, "aaa", 7, 3);
	EXPECT(t, "a??b", 3, 0, 4);   /* one <unk> for the run */
	EXPECT(t, "a?é?b", 3, 0, 4);
	EXPECT(t, "ccc", 10);         /* through the unused "cc" */
	EXPECT(t, "cc", 8, 8);        /* unused "cc" is undone */
	EXPECT(t, "ccd", 11);
	EXPECT(t, "<x>x", 13, 14);    /* USER piece whole, not "<x" */
	EXPECT(t, "<xx", 16, 14);
	nb_tok_close(t);
	nb_tok_spec_free(&s);
}

static void test_open_rejects(void **state)
{
	static const struct mini_piece dup[] = {
		{ "<unk>", 0, NB_PIECE_UNKNOWN }, { "<s>", 0, NB_PIECE_CONTROL },
		{ "</s>", 0, NB_PIECE_CONTROL },  { "a", 0, NB_PIECE_NORMAL },
		{ "a", 0, NB_PIECE_NORMAL },
	};
	struct nb_tok_spec s;
	struct nb_tok *t = (struct nb_tok *)&s;

	(void)state;
	mini_spec(&s, dup, 5, 0);
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT); /* duplicate piece */
	assert_null(t);
	s.text[13] = 'b';
	t = open_spec(&s);
	nb_tok_close(t);
	s.offsets[5] = 12; /* offsets going backwards */
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT);
	s.offsets[5] = 14;
	s.bos_id = 5; /* out of range */
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT);
	s.bos_id = 1;
	s.kind = 3;
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT);
	s.kind = NB_TOK_SPM;
	s.flags = NB_TOK_FLAG_BYTE_FALLBACK; /* without byte pieces */
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT);
	s.flags = 0;
	s.types[0] = NB_PIECE_NORMAL; /* no unknown piece */
	assert_int_equal(nb_tok_open(&t, &s), -NB_EFORMAT);
	nb_tok_spec_free(&s);
}

/* ---- importers on broken files ------------------------------------------------ */

static char tmp_path[64];

static void write_tmp(const void *data, size_t len)
{
	FILE *f;

	snprintf(tmp_path, sizeof(tmp_path), "/tmp/nb-tok-test-%d", (int)getpid());
	f = fopen(tmp_path, "wb");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void test_import_truncated(void **state)
{
	const char *files[] = { TOK512_MODEL, TOK512_BIN };
	struct nb_tok_spec s;
	size_t len, cut;
	char *data;
	int saved, err;

	(void)state;
	saved = test_quiet();
	for (int f = 0; f < 2; f++) {
		data = test_slurp(files[f], &len);
		/* A protobuf cut anywhere loses the specs after the pieces (or
		 * breaks a length); a tokenizer.bin cut between two entries is
		 * a valid shorter vocabulary. */
		for (cut = 0; cut < len; cut += cut < 64 ? 1 : 37) {
			write_tmp(data, cut);
			err = f == 0 ? nb_tok_import_spm_model(&s, tmp_path)
				     : nb_tok_import_llama2c(&s, tmp_path);
			if (f == 0 || err != 0) {
				assert_true(err < 0);
				assert_null(s.text);
			} else {
				assert_true(s.n_vocab < 512);
				nb_tok_spec_free(&s);
			}
		}
		/* Flipped bytes: any answer but a crash; a success must open. */
		for (cut = 0; cut < len; cut += 53) {
			char orig = data[cut];
			data[cut] ^= 0x5a;
			write_tmp(data, len);
			err = f == 0 ? nb_tok_import_spm_model(&s, tmp_path)
				     : nb_tok_import_llama2c(&s, tmp_path);
			if (err == 0) {
				struct nb_tok *t = NULL;
				if (nb_tok_open(&t, &s) == 0)
					nb_tok_close(t);
				nb_tok_spec_free(&s);
			}
			data[cut] = orig;
		}
		free(data);
	}
	assert_int_equal(nb_tok_import_llama2c(&s, "tests/data/no-such-file"), -NB_ENOENT);
	unlink(tmp_path);
	test_loud(saved);
}

/* A hand-written ModelProto: pieces, then trainer_spec and normalizer_spec
 * with the given model_type and remove_extra_whitespaces. */
static size_t mini_model(uint8_t *b, int model_type, int remove_ws)
{
	static const char *const pieces[] = { "<unk>", "<s>", "</s>", "\xe2\x96\x81\x61", "a" };
	static const uint8_t types[] = { 2, 3, 3, 1, 1 };
	size_t o = 0, l;

	for (size_t i = 0; i < 5; i++) {
		l = strlen(pieces[i]);
		b[o++] = 0x0a;                    /* field 1, LEN */
		b[o++] = (uint8_t)(2 + l + 5 + 2); /* piece, score, type */
		b[o++] = 0x0a;
		b[o++] = (uint8_t)l;
		memcpy(b + o, pieces[i], l);
		o += l;
		b[o++] = 0x15; /* field 2, I32: score -(i) */
		memcpy(b + o, &(float){ -(float)i }, 4);
		o += 4;
		b[o++] = 0x18; /* field 3, VARINT */
		b[o++] = types[i];
	}
	/* trainer_spec { model_type, pad_id = -1 (ten-byte varint) } */
	b[o++] = 0x12, b[o++] = 2 + 2 + 10;
	b[o++] = 0x18, b[o++] = (uint8_t)model_type;
	b[o++] = 0xd8, b[o++] = 0x02; /* field 43 */
	memset(b + o, 0xff, 9), o += 9;
	b[o++] = 0x01;
	/* normalizer_spec { name "identity", add_dummy_prefix 1, remove_extra_whitespaces } */
	b[o++] = 0x1a, b[o++] = 10 + 4;
	b[o++] = 0x0a, b[o++] = 8;
	memcpy(b + o, "identity", 8), o += 8;
	b[o++] = 0x18, b[o++] = 1;
	b[o++] = 0x20, b[o++] = (uint8_t)remove_ws;
	return o;
}

static void test_import_model_options(void **state)
{
	uint8_t b[256];
	size_t len;
	struct nb_tok_spec s;
	struct nb_tok *t;

	(void)state;
	write_tmp(b, mini_model(b, 2, 0));
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), 0);
	assert_int_equal(s.n_vocab, 5);
	assert_int_equal(s.pad_id, -1);
	assert_int_equal(s.flags, NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX);
	assert_true(s.scores[4] == -4.0f);
	t = open_spec(&s);
	EXPECT(t, "aa", 3, 4);
	EXPECT(t, "a?", 3, 0);
	nb_tok_close(t);
	nb_tok_spec_free(&s);
	write_tmp(b, mini_model(b, 1, 0));
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), -NB_ENOTSUP); /* unigram */
	write_tmp(b, mini_model(b, 2, 1));
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), -NB_ENOTSUP);
	/* A message field seen twice is merged: the later model_type wins. */
	len = mini_model(b, 1, 0);
	memcpy(b + len, "\x12\x02\x18\x02", 4);
	write_tmp(b, len + 4);
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), 0);
	nb_tok_spec_free(&s);
	len = mini_model(b, 2, 0);
	memcpy(b + len, "\x1a\x02\x20\x01", 4); /* remove_extra_whitespaces */
	write_tmp(b, len + 4);
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), -NB_ENOTSUP);
	b[len + 3] = 0;
	write_tmp(b, len + 4);
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), 0);
	nb_tok_spec_free(&s);
	write_tmp(b, len - 1); /* cut inside normalizer_spec */
	assert_int_equal(nb_tok_import_spm_model(&s, tmp_path), -NB_EFORMAT);
	unlink(tmp_path);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_llama2_import_formats_agree),
		cmocka_unit_test(test_llama2_reference_model),
		cmocka_unit_test(test_llama2_reference_bin),
		cmocka_unit_test(test_tok512_import_formats_agree),
		cmocka_unit_test(test_stories_prompts_bin),
		cmocka_unit_test(test_stories_prompts_model),
		cmocka_unit_test(test_eval_text_tok512),
		cmocka_unit_test(test_eval_text_llama2),
		cmocka_unit_test(test_eval_text_story_prefix),
		cmocka_unit_test(test_blob_round_trip),
		cmocka_unit_test(test_blob_corrupt),
		cmocka_unit_test(test_invalid_utf8),
		cmocka_unit_test(test_small_buffers),
		cmocka_unit_test(test_merge_rules),
		cmocka_unit_test(test_open_rejects),
		cmocka_unit_test(test_import_truncated),
		cmocka_unit_test(test_import_model_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
