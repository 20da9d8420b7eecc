/* `nibble perplexity`'s core (tools/quant/perplexity.h): window plans against the
 * counts of tests/data/stories260K/reference.json, document splitting,
 * NLL and KL against hand computations, the scoring loop against a plain
 * loop over nb_fwd_token, and the real model on the evaluation text against
 * the counts of the reference runs (tests/integration/perplexity.sh checks
 * the reference perplexity itself with the release binary). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "tools/import/ckpt.h"
#include "tools/import/image_write.h"
#include "tools/quant/perplexity.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/unit/testutil.h"

#define REF "tests/data/stories260K/reference.json"
#define EVAL_TEXT "tests/data/text/tinystories-valid-dev.txt"

/* ---- fixtures -------------------------------------------------------------- */

/* cmocka's assert_float_equal compares in float: too coarse here. */
#define assert_near(a, b, eps) check_near((a), (b), (eps), #a, __LINE__)

static void check_near(double a, double b, double eps, const char *what, int line)
{
	if (!(fabs(a - b) <= eps))
		fail_msg("line %d: %s = %.17g, want %.17g within %g", line, what, a, b, eps);
}

static cJSON *ref_perplexity(void)
{
	size_t len;
	char *buf = test_slurp(REF, &len);
	cJSON *j = cJSON_Parse(buf);

	free(buf);
	assert_non_null(j);
	return j;
}

static double ref_number(const cJSON *ref, const char *entry, const char *key)
{
	const cJSON *e = cJSON_GetObjectItem(cJSON_GetObjectItem(ref, "perplexity"), entry);
	const cJSON *v = cJSON_GetObjectItem(e, key);

	assert_non_null(v);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

/* The bundled model as an image on disk, the way `nibble convert` makes it. */
static void open_model(struct nb_llm *l, char *path)
{
	static const struct nb_image_kv meta[] = { { "name", "stories260K" } };
	struct nb_ckpt c;
	struct nb_tensor *v;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, "models/stories260K/stories260K.bin",
					   "models/stories260K/tok512.bin"),
			 0);
	v = calloc(c.n_tensors, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < c.n_tensors; i++) {
		uint64_t n = 1;
		for (uint32_t d = 0; d < c.tensors[i].ndim; d++)
			n *= c.tensors[i].shape[d];
		v[i] = (struct nb_tensor){ .name = c.tensors[i].name, .type = NB_DTYPE_F32,
					   .ndim = c.tensors[i].ndim, .data = c.tensors[i].data,
					   .size = n * sizeof(float) };
		memcpy(v[i].shape, c.tensors[i].shape, sizeof(v[i].shape));
	}
	assert_int_equal(nb_image_write(path, &(struct nb_image_spec){
				 .hp = &c.hp, .tok = &c.tok, .model_version = 1, .meta = meta,
				 .n_meta = 1, .tensors = v, .n_tensors = c.n_tensors }),
			 0);
	free(v);
	nb_ckpt_free(&c);
	assert_int_equal(nb_llm_open(l, path, 0), 0);
}

/* ---- window plans ---------------------------------------------------------- */

static void test_plan_docs(void **state)
{
	cJSON *ref = ref_perplexity();
	struct nb_ppl_plan p;

	(void)state;
	/* The counts of the reference's own runs. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 51492, 256), 0);
	assert_int_equal(p.n_windows, ref_number(ref, "full_text_base_llama2c_ref_f32", "windows"));
	assert_int_equal(p.n_scored,
			 ref_number(ref, "full_text_base_llama2c_ref_f32", "predicted_positions"));
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 20000, 256), 0);
	assert_int_equal(p.n_windows, 78);
	assert_int_equal(p.n_scored, 19890);
	assert_int_equal(p.first, 0);
	assert_false(p.bos_first);
	/* A partial window is dropped; exact multiples are not. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 255, 256), 0);
	assert_int_equal(p.n_windows, 0);
	assert_int_equal(p.n_scored, 0);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 512, 256), 0);
	assert_int_equal(p.n_windows, 2);
	assert_int_equal(p.n_scored, 510);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 7, 2), 0);
	assert_int_equal(p.n_windows, 3);
	assert_int_equal(p.n_scored, 3);
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 100, 1), -NB_EINVAL);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 100, 0), -NB_EINVAL);
	nb_log_set_level(NB_LOG_INFO);
	cJSON_Delete(ref);
}

static void test_plan_llama(void **state)
{
	cJSON *ref = ref_perplexity();
	const char *e = "llama_perplexity_emulation_c256_base_f32";
	struct nb_ppl_plan p;

	(void)state;
	/* llama-perplexity -c 256 on the reference's text: 53663 tokens. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_LLAMA, (uint64_t)ref_number(ref, e, "file_tokens"),
				     256),
			 0);
	assert_int_equal(p.n_windows, ref_number(ref, e, "chunks"));
	assert_int_equal(p.n_scored, ref_number(ref, e, "scored"));
	assert_int_equal(p.first, 128);
	assert_true(p.bos_first);
	/* Odd ctx: first = ctx/2 rounds down, ctx - 1 - first scored. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_LLAMA, 20, 5), 0);
	assert_int_equal(p.first, 2);
	assert_int_equal(p.n_windows, 4);
	assert_int_equal(p.n_scored, 8);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_LLAMA, 9, 3), 0);
	assert_int_equal(p.first, 1);
	assert_int_equal(p.n_scored, 3);
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_LLAMA, 100, 2), -NB_EINVAL);
	nb_log_set_level(NB_LOG_INFO);
	cJSON_Delete(ref);
}

/* ---- documents and UTF-8 ---------------------------------------------------- */

static void expect_doc(const char *text, size_t *pos, const char *sep, const char *want)
{
	const char *doc;
	size_t len;

	assert_true(nb_ppl_next_doc(text, strlen(text), sep, pos, &doc, &len));
	assert_int_equal(len, strlen(want));
	assert_memory_equal(doc, want, len);
}

static void test_next_doc(void **state)
{
	const char *sep = "<|endoftext|>", *doc;
	const char *t = "  one\ntwo \n<|endoftext|>\n\nthree\n \t<|endoftext|>\r\n<|endoftext|>\n"
			"a <|endoftext|> inside\n<|endoftext|>";
	const char *blank = "p1 l1\np1 l2\n\n  \np2\n";
	size_t pos = 0, len;

	(void)state;
	expect_doc(t, &pos, sep, "one\ntwo");
	expect_doc(t, &pos, sep, "three");
	expect_doc(t, &pos, sep, ""); /* two separator lines in a row */
	/* Only a whole line is a separator. */
	expect_doc(t, &pos, sep, "a <|endoftext|> inside");
	assert_int_equal(pos, strlen(t));
	assert_false(nb_ppl_next_doc(t, strlen(t), sep, &pos, &doc, &len));

	/* No separator: one document; trailing newline and spaces stripped. */
	pos = 0;
	expect_doc("just text \n\n", &pos, sep, "just text");
	assert_false(nb_ppl_next_doc("just text \n\n", 12, sep, &pos, &doc, &len));

	/* A separator first gives an empty first document. */
	pos = 0;
	expect_doc("<|endoftext|>\nx", &pos, sep, "");
	expect_doc("<|endoftext|>\nx", &pos, sep, "x");

	/* An empty separator splits at blank lines. */
	pos = 0;
	expect_doc(blank, &pos, "", "p1 l1\np1 l2");
	expect_doc(blank, &pos, "", "");
	expect_doc(blank, &pos, "", "p2");
	assert_false(nb_ppl_next_doc(blank, strlen(blank), "", &pos, &doc, &len));

	pos = 0;
	assert_false(nb_ppl_next_doc("", 0, sep, &pos, &doc, &len));
}

static void test_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t bad;
	} cases[] = {
		{ "plain ascii", 11 },
		{ "caf\xc3\xa9 \xe2\x96\x81 \xef\xbf\xbd \xf0\x9f\x98\x80", 18 }, /* incl. U+FFFD */
		{ "ab\xff", 2 },
		{ "a\xc0\x80", 1 },         /* overlong NUL */
		{ "\xed\xa0\x80xyz", 0 },   /* surrogate */
		{ "xy\xe2\x82", 2 },        /* truncated at the end */
		{ "\xf4\x90\x80\x80", 0 },  /* above U+10FFFF */
		{ "ok\x80", 2 },            /* lone continuation byte */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (nb_ppl_utf8_invalid_at(cases[i].s, strlen(cases[i].s)) != cases[i].bad)
			fail_msg("case %zu: invalid at %zu, want %zu", i,
				 nb_ppl_utf8_invalid_at(cases[i].s, strlen(cases[i].s)),
				 cases[i].bad);
}

/* ---- NLL, KL, argmax -------------------------------------------------------- */

static void test_nll(void **state)
{
	static const float l3[] = { 1.0f, 2.0f, 3.0f };
	static const float big[] = { 1000.0f, 0.0f, -1000.0f };
	float uni[512];

	(void)state;
	/* log(e^1 + e^2 + e^3) - 1, by hand. */
	assert_near(nb_ppl_nll(l3, 3, 0), 2.40760596444438, 1e-12);
	assert_near(nb_ppl_nll(l3, 3, 2), 2.40760596444438 - 2.0, 1e-12);
	for (int i = 0; i < 512; i++)
		uni[i] = 7.25f;
	assert_near(nb_ppl_nll(uni, 512, 300), log(512.0), 1e-12);
	/* No overflow with large logits: the maximum is subtracted first. */
	assert_near(nb_ppl_nll(big, 3, 0), 0.0, 1e-12);
	assert_near(nb_ppl_nll(big, 3, 1), 1000.0, 1e-9);
	assert_true(isfinite(nb_ppl_nll(big, 3, 2)));
}

static void test_kl(void **state)
{
	float p[3], q[3], a[512], b[512];
	uint64_t x = 88172645463325252ull;

	(void)state;
	for (int i = 0; i < 512; i++) {
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		a[i] = (float)(x % 20000) / 1000.0f - 10.0f;
		b[i] = a[i] + 3.5f; /* softmax is shift-invariant */
	}
	/* Identical distributions: exactly 0. */
	assert_true(nb_ppl_kl(a, a, 512) == 0.0);
	assert_near(nb_ppl_kl(a, b, 512), 0.0, 1e-12);

	/* P = (1/2, 1/4, 1/4), Q uniform: 1/2 ln 1.5 + 1/2 ln 0.75. */
	p[0] = logf(0.5f), p[1] = logf(0.25f), p[2] = logf(0.25f);
	q[0] = q[1] = q[2] = 0.0f;
	assert_near(nb_ppl_kl(p, q, 3), 0.05889151782819174, 1e-7);
	/* P = (.7 .2 .1), Q = (.1 .3 .6): sum p ln(p/q); KL is not symmetric. */
	p[0] = logf(0.7f), p[1] = logf(0.2f), p[2] = logf(0.1f);
	q[0] = logf(0.1f), q[1] = logf(0.3f), q[2] = logf(0.6f);
	assert_near(nb_ppl_kl(p, q, 3), 1.1018681357942808, 1e-6);
	assert_near(nb_ppl_kl(q, p, 3), 1.0021041990637507, 1e-6);
	/* A token P rules out costs nothing, even where Q rules it out too. */
	p[2] = -INFINITY, q[2] = -INFINITY;
	p[0] = q[1] = logf(0.5f), p[1] = q[0] = logf(0.5f);
	assert_near(nb_ppl_kl(p, q, 3), 0.0, 1e-9);
}

static void test_argmax(void **state)
{
	static const float v[] = { 1.0f, 3.0f, -2.0f, 3.0f, 2.9f };

	(void)state;
	assert_int_equal(nb_llm_argmax(v, 5), 1); /* lowest id on ties */
	assert_int_equal(nb_llm_argmax(v, 1), 0);
	assert_int_equal(nb_llm_argmax(v + 2, 3), 1);
}

/* ---- tokenizer checks -------------------------------------------------------- */

static void test_check_vocab(void **state)
{
	struct nb_tok_spec a, b;

	(void)state;
	nb_tok_spec_init(&a);
	nb_tok_spec_init(&b);
	assert_int_equal(nb_tok_import_llama2c(&a, "models/stories260K/tok512.bin"), 0);
	assert_int_equal(nb_tok_import_llama2c(&b, "models/stories260K/tok512.bin"), 0);
	assert_int_equal(nb_ppl_check_vocab(&a, &b), 0);
	nb_log_set_level(NB_LOG_SILENT);
	/* One piece changed in place (same length). */
	b.text[b.offsets[300]] ^= 0x20;
	assert_int_equal(nb_ppl_check_vocab(&a, &b), -NB_EINVAL);
	b.text[b.offsets[300]] ^= 0x20;
	b.bos_id = 2;
	assert_int_equal(nb_ppl_check_vocab(&a, &b), -NB_EINVAL);
	b.bos_id = a.bos_id;
	b.n_vocab--;
	assert_int_equal(nb_ppl_check_vocab(&a, &b), -NB_EINVAL);
	b.n_vocab++;
	nb_log_set_level(NB_LOG_INFO);
	nb_tok_spec_free(&a);
	nb_tok_spec_free(&b);
}

static void encode(const struct nb_tok *t, const char *s, int32_t *ids, size_t *n)
{
	size_t got = 0;

	assert_int_equal(nb_tok_encode(t, s, strlen(s), true, ids + *n, 256 - *n, &got), 0);
	*n += got;
}

static void test_tokenize(void **state)
{
	const char *text = "Once upon a time.\n<|endoftext|>\n  Tom ran home.  \n\n<|endoftext|>\n\n";
	struct nb_tok_spec spec;
	struct nb_tok *t;
	struct nb_ppl_stream s;
	int32_t want[256];
	size_t n = 0, n1;

	(void)state;
	nb_tok_spec_init(&spec);
	assert_int_equal(nb_tok_import_llama2c(&spec, "models/stories260K/tok512.bin"), 0);
	assert_int_equal(nb_tok_open(&t, &spec), 0);

	/* Per document: each stripped document with its BOS, empty ones skipped. */
	encode(t, "Once upon a time.", want, &n);
	n1 = n;
	encode(t, "Tom ran home.", want, &n);
	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_DOCS, text, strlen(text), "<|endoftext|>", 0, &s),
			 0);
	assert_int_equal(s.n, n);
	assert_int_equal(s.n_docs, 2);
	assert_false(s.truncated);
	assert_memory_equal(s.ids, want, n * sizeof(int32_t));
	assert_int_equal(s.ids[0], nb_tok_bos(t));
	nb_ppl_stream_free(&s);

	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_DOCS, text, strlen(text), "<|endoftext|>", 5, &s),
			 0);
	assert_int_equal(s.n, 5);
	assert_true(s.truncated);
	assert_int_equal(s.n_docs, 1); /* stops reading once it has enough */
	assert_memory_equal(s.ids, want, 5 * sizeof(int32_t));
	nb_ppl_stream_free(&s);
	/* Cut exactly at a document's end: more text left out, or none. */
	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_DOCS, text, strlen(text), NULL, n1, &s), 0);
	assert_int_equal(s.n, n1);
	assert_int_equal(s.n_docs, 1);
	assert_true(s.truncated);
	nb_ppl_stream_free(&s);
	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_DOCS, text, strlen(text), NULL, n, &s), 0);
	assert_int_equal(s.n, n);
	assert_false(s.truncated);
	nb_ppl_stream_free(&s);

	/* llama-perplexity: the whole text, one trailing newline dropped. */
	n = 0;
	encode(t, "Once upon a time.\n<|endoftext|>\n  Tom ran home.  \n\n<|endoftext|>\n", want, &n);
	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_LLAMA, text, strlen(text), NULL, 0, &s), 0);
	assert_int_equal(s.n, n);
	assert_memory_equal(s.ids, want, n * sizeof(int32_t));
	nb_ppl_stream_free(&s);

	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_ppl_tokenize(t, NB_PPL_DOCS, "a\xff", 2, "x", 0, &s), -NB_EFORMAT);
	assert_null(s.ids);
	nb_log_set_level(NB_LOG_INFO);
	nb_tok_close(t);
	nb_tok_spec_free(&spec);
}

/* ---- scoring with the real model --------------------------------------------- */

/* The plan by hand: every window from position 0, BOS first if asked,
 * logits of position pos scored against the token at pos + 1. */
static double plain_nll(const struct nb_model *m, const int32_t *ids, uint32_t ctx,
			uint64_t n_windows, uint32_t first, int32_t bos, uint64_t *count)
{
	struct nb_fwd f;
	float *logits;
	double sum = 0.0;

	*count = 0;
	for (uint64_t w = 0; w < n_windows; w++) {
		const int32_t *win = ids + w * ctx;

		assert_int_equal(nb_fwd_open(&f, m, ctx), 0);
		for (uint32_t pos = 0; pos + 1 < ctx; pos++) {
			assert_int_equal(nb_fwd_token(&f, pos == 0 && bos >= 0 ? bos : win[pos], pos,
						      &logits),
					 0);
			if (pos < first)
				continue;
			sum += nb_ppl_nll(logits, m->hp.vocab_size, win[pos + 1]);
			(*count)++;
		}
		nb_fwd_close(&f);
	}
	return sum;
}

static void test_score_windows(void **state)
{
	char path[] = "/tmp/nb-ppl-XXXXXX";
	struct nb_llm l;
	struct nb_ppl_stream s;
	struct nb_ppl_plan p;
	struct nb_ppl_stats st;
	struct nb_ppl_eval e;
	size_t len;
	char *text = test_slurp(EVAL_TEXT, &len);
	uint64_t count;
	int32_t *long_win;
	double want;

	(void)state;
	open_model(&l, path);
	e = (struct nb_ppl_eval){ .model = &l.model, .bos = nb_tok_bos(l.tok) };
	assert_int_equal(nb_ppl_tokenize(l.tok, NB_PPL_DOCS, text, len, "<|endoftext|>", 100, &s),
			 0);
	assert_int_equal(s.n, 100);

	/* Per document, ctx 24: 4 windows (4 tokens dropped), 23 positions each. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, s.n, 24), 0);
	assert_int_equal(nb_ppl_score(&e, &p, s.ids, s.n, &st), 0);
	want = plain_nll(&l.model, s.ids, 24, 4, 0, -1, &count);
	assert_int_equal(st.n_scored, 92);
	assert_int_equal(count, 92);
	assert_near(st.nll, want, 1e-9);

	/* llama-perplexity, ctx 25: 4 chunks with BOS first, positions 12..23 scored. */
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_LLAMA, s.n, 25), 0);
	s.ids[25] = 7; /* not BOS: the replacement must show */
	assert_int_equal(nb_ppl_score(&e, &p, s.ids, s.n, &st), 0);
	want = plain_nll(&l.model, s.ids, 25, 4, 12, nb_tok_bos(l.tok), &count);
	assert_int_equal(st.n_scored, 48);
	assert_int_equal(count, 48);
	assert_near(st.nll, want, 1e-9);

	/* The model against itself: KL 0, same argmax everywhere. */
	e.base = &l.model;
	assert_int_equal(nb_ppl_score(&e, &p, s.ids, s.n, &st), 0);
	assert_true(st.kl == 0.0);
	assert_int_equal(st.top1_same, st.n_scored);
	assert_true(st.base_nll == st.nll);

	/* Fewer tokens than the plan needs; a window longer than the context. */
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_ppl_score(&e, &p, s.ids, 99, &st), -NB_EINVAL);
	s.ids[24] = 512; /* a target only, never an input: checked all the same */
	assert_int_equal(nb_ppl_score(&e, &p, s.ids, s.n, &st), -NB_EINVAL);
	long_win = calloc(1024, sizeof(int32_t));
	assert_non_null(long_win);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, 1024, 1024), 0);
	assert_int_equal(nb_ppl_score(&e, &p, long_win, 1024, &st), -NB_ERANGE);
	free(long_win);
	nb_log_set_level(NB_LOG_INFO);

	nb_ppl_stream_free(&s);
	nb_llm_close(&l);
	unlink(path);
	free(text);
}

/* The reference's "first20000_tokens_base_llama2c_ref_f32" run: our
 * stream of the evaluation text cut to 20000 tokens gives its windows and
 * positions. Its mean NLL (1.2856956827) needs 19890 forward positions,
 * about 35 s of CPU under ASan, so tests/integration/perplexity.sh checks
 * that value with the release binary; here the counts and the scoring of
 * the first two windows against a plain loop. */
static void test_reference_20000_counts(void **state)
{
	const char *e_name = "first20000_tokens_base_llama2c_ref_f32";
	char path[] = "/tmp/nb-ppl-XXXXXX";
	cJSON *ref = ref_perplexity();
	struct nb_llm l;
	struct nb_ppl_stream s;
	struct nb_ppl_plan p;
	struct nb_ppl_stats st;
	size_t len;
	char *text = test_slurp(EVAL_TEXT, &len);
	uint64_t count;
	double want;

	(void)state;
	open_model(&l, path);
	assert_int_equal(nb_ppl_tokenize(l.tok, NB_PPL_DOCS, text, len, "<|endoftext|>", 20000, &s),
			 0);
	assert_int_equal(s.n, ref_number(ref, e_name, "stream_tokens"));
	assert_true(s.truncated);
	assert_int_equal(nb_ppl_plan(&p, NB_PPL_DOCS, s.n, 256), 0);
	assert_int_equal(p.n_windows, ref_number(ref, e_name, "windows"));
	assert_int_equal(p.n_scored, ref_number(ref, e_name, "predicted_positions"));

	p.n_windows = 2;
	assert_int_equal(nb_ppl_score(&(struct nb_ppl_eval){ .model = &l.model, .bos = -1 }, &p,
				      s.ids, s.n, &st),
			 0);
	want = plain_nll(&l.model, s.ids, 256, 2, 0, -1, &count);
	assert_int_equal(st.n_scored, 510);
	assert_int_equal(count, 510);
	assert_near(st.nll, want, 1e-9);

	nb_ppl_stream_free(&s);
	nb_llm_close(&l);
	unlink(path);
	free(text);
	cJSON_Delete(ref);
}

/* Both methods on (the first 2560 tokens of) the evaluation text: a
 * finite perplexity in the range the reference reports for this model
 * (3.58 per document, 6.60 by llama-perplexity on the whole slice). */
static void test_eval_text_both_methods(void **state)
{
	static const enum nb_ppl_method methods[] = { NB_PPL_DOCS, NB_PPL_LLAMA };
	char path[] = "/tmp/nb-ppl-XXXXXX";
	struct nb_llm l;
	struct nb_ppl_stream s;
	struct nb_ppl_plan p;
	struct nb_ppl_stats st;
	size_t len;
	char *text = test_slurp(EVAL_TEXT, &len);
	double ppl;

	(void)state;
	open_model(&l, path);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(nb_ppl_tokenize(l.tok, methods[i], text, len, "<|endoftext|>", 2560,
						 &s),
				 0);
		assert_int_equal(s.n, 2560);
		assert_int_equal(s.ids[0], nb_tok_bos(l.tok));
		assert_int_equal(nb_ppl_plan(&p, methods[i], s.n, 256), 0);
		assert_int_equal(p.n_windows, 10);
		assert_int_equal(nb_ppl_score(&(struct nb_ppl_eval){ .model = &l.model,
								     .bos = nb_tok_bos(l.tok) },
					      &p, s.ids, s.n, &st),
				 0);
		assert_int_equal(st.n_scored, methods[i] == NB_PPL_DOCS ? 2550 : 1270);
		ppl = exp(st.nll / (double)st.n_scored);
		printf("# %s, first 2560 tokens: PPL %.6f\n",
		       methods[i] == NB_PPL_DOCS ? "per document" : "llama-perplexity", ppl);
		assert_true(isfinite(ppl) && ppl > 2.0 && ppl < 10.0);
		nb_ppl_stream_free(&s);
	}
	nb_llm_close(&l);
	unlink(path);
	free(text);
}

/* The applet's own paths (options, file reading, error exits) under the
 * sanitizers: statuses as documented, no leak on any path. */
static int run_applet(const char *const *args)
{
	char *argv[16];
	int argc = 0;

	while (args[argc]) {
		assert_true(argc < 15);
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	optind = 0; /* glibc: a full getopt reset */
	return nb_applet_perplexity.main(argc, argv);
}

static void test_applet(void **state)
{
	char path[] = "/tmp/nb-ppl-XXXXXX", bad[] = "/tmp/nb-ppl-bad-XXXXXX";
	struct nb_llm l;
	int fd = mkstemp(bad);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "ok\n\xc3(\n", 6), 6);
	close(fd);
	open_model(&l, path);
	nb_llm_close(&l);

	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", EVAL_TEXT,
						      "--ctx", "16", "--max-tokens", "40",
						      "--kl-base", path, NULL }),
			 0);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", EVAL_TEXT,
						      "--ctx", "16", "--max-tokens", "40",
						      "--llama-compat", NULL }),
			 0);
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", bad, NULL }),
			 1);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f",
						      "/nonexistent/text", NULL }),
			 1);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", "/nonexistent/m.nib", "-f",
						      EVAL_TEXT, NULL }),
			 1);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", EVAL_TEXT,
						      "--ctx", "513", NULL }),
			 1);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", EVAL_TEXT,
						      "--max-tokens", "100", NULL }),
			 1); /* fewer tokens than one window */
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "-f", EVAL_TEXT,
						      "--kl-base", "/nonexistent/b.nib", NULL }),
			 1);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, "--ctx", "0", "-f",
						      EVAL_TEXT, NULL }),
			 2);
	assert_int_equal(run_applet((const char *[]){ "perplexity", "-m", path, NULL }), 2);
	nb_log_set_level(NB_LOG_INFO);
	unlink(path);
	unlink(bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plan_docs),     cmocka_unit_test(test_plan_llama),
		cmocka_unit_test(test_next_doc),      cmocka_unit_test(test_utf8),
		cmocka_unit_test(test_nll),           cmocka_unit_test(test_kl),
		cmocka_unit_test(test_argmax),        cmocka_unit_test(test_check_vocab),
		cmocka_unit_test(test_tokenize),      cmocka_unit_test(test_score_windows),
		cmocka_unit_test(test_reference_20000_counts),
		cmocka_unit_test(test_eval_text_both_methods),
		cmocka_unit_test(test_applet),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
