/* Byte-level BPE: the GPT-2 tokenizer.json against HF tokenizers' ids
 * (tests/data/bpe/reference.json, llama.cpp's GPT-2 vectors), the evaluation
 * text round trip, the four pre-tokenizer regexes split by hand from their
 * definitions, the Unicode tables and NFC against the UCD's own examples,
 * tokenizer.json variants (Llama 3, Qwen2, SmolLM pre-tokenizers) against
 * HF's ids (tests/data/bpe/variants_reference.json) and malformed
 * tokenizer.json files. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/text/tok_internal.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "tests/unit/testutil.h"

#define GPT2_JSON "tests/data/bpe/tokenizer.json"
#define GPT2_REF "tests/data/bpe/reference.json"
#define GPT2_VECTORS "tests/data/bpe/gpt2_llamacpp_vectors.json"
#define VARIANTS_REF "tests/data/bpe/variants_reference.json"
#define EVAL_TEXT "tests/data/text/tinystories-valid-dev.txt"
#define EOT "<|endoftext|>"
#define EOT_ID 50256

struct fixture {
	struct nb_tok *gpt2;
	cJSON *json; /* GPT-2 tokenizer.json, for vocab lookups and variants */
};

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");

	assert_non_null(f);
	assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
	assert_int_equal(fclose(f), 0);
}

static char *temp_path(void)
{
	static const char tmpl[] = "/tmp/nb_test_tok_bpe_XXXXXX";
	char *p = malloc(sizeof(tmpl));
	int fd;

	assert_non_null(p);
	memcpy(p, tmpl, sizeof(tmpl));
	fd = mkstemp(p);
	assert_true(fd >= 0);
	close(fd);
	return p;
}

/* Imports tokenizer.json text through a temporary file. */
static int import_text(struct nb_tok_spec *s, const char *text)
{
	char *path = temp_path();
	int err;

	write_file(path, text);
	err = nb_tok_import_json(s, path);
	unlink(path);
	free(path);
	return err;
}

static int open_text(struct nb_tok **t, const char *text)
{
	struct nb_tok_spec s;
	int err = import_text(&s, text);

	if (err)
		return err;
	err = nb_tok_open(t, &s);
	nb_tok_spec_free(&s);
	return err;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct nb_tok_spec s;
	double t0 = test_now(), t1;

	assert_non_null(f);
	assert_int_equal(nb_tok_import_json(&s, GPT2_JSON), 0);
	assert_int_equal(nb_tok_open(&f->gpt2, &s), 0);
	t1 = test_now();
	print_message("GPT-2 tokenizer.json: import + open %.3f s\n", t1 - t0);
	nb_tok_spec_free(&s);
	f->json = test_load_json(GPT2_JSON);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nb_tok_close(f->gpt2);
	cJSON_Delete(f->json);
	free(f);
	return 0;
}

/* Id of a GPT-2 vocab entry straight from the JSON (independent of the
 * tokenizer under test). */
static int32_t vocab_id(const struct fixture *f, const char *piece)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(f->json, "model"), "vocab");
	const cJSON *id = cJSON_GetObjectItemCaseSensitive(v, piece);

	assert_true(cJSON_IsNumber(id));
	return (int32_t)id->valuedouble;
}

static int32_t *encode(const struct nb_tok *t, const char *text, size_t len, bool bos, size_t *n)
{
	size_t max = 3 * len + 8; /* NFC may triple the bytes */
	int32_t *ids = malloc(max * sizeof(*ids));

	assert_non_null(ids);
	assert_int_equal(nb_tok_encode(t, text, len, bos, ids, max, n), 0);
	return ids;
}

static void expect_ids(const struct nb_tok *t, const char *text, bool bos, const int32_t *want,
		       size_t n_want)
{
	size_t n;
	int32_t *ids = encode(t, text, strlen(text), bos, &n);

	if (n != n_want || memcmp(ids, want, n * sizeof(*ids)) != 0) {
		print_error("text \"%s\": got %zu ids:", text, n);
		for (size_t i = 0; i < n; i++)
			print_error(" %d", ids[i]);
		print_error("\n");
	}
	assert_int_equal(n, n_want);
	assert_memory_equal(ids, want, n * sizeof(*ids));
	free(ids);
}

/* Text with every <|endoftext|> removed: decoding drops control tokens. */
static char *without_eot(const char *text, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t i = 0, o = 0, k = strlen(EOT);

	assert_non_null(out);
	while (i < len) {
		if (len - i >= k && memcmp(text + i, EOT, k) == 0) {
			i += k;
			continue;
		}
		out[o++] = text[i++];
	}
	out[o] = '\0';
	*out_len = o;
	return out;
}

static void check_decode(const struct nb_tok *t, const int32_t *ids, size_t n, const char *text,
			 size_t len)
{
	size_t want_len, got_len, cap = 4 * len + 16;
	char *want = without_eot(text, len, &want_len), *got = malloc(cap);

	assert_non_null(got);
	assert_int_equal(nb_tok_decode(t, ids, n, got, cap, &got_len), 0);
	assert_int_equal(got_len, want_len);
	assert_memory_equal(got, want, want_len);
	free(want);
	free(got);
}

/* Every item of a reference file: the ids, and decode gives the text back. */
static void check_reference(const struct nb_tok *t, const char *path, size_t n_items)
{
	cJSON *ref = test_load_json(path), *item;
	size_t count = 0;

	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(ref, "items")) {
		const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
		const cJSON *jids = cJSON_GetObjectItemCaseSensitive(item, "ids"), *e;
		size_t n_want = (size_t)cJSON_GetArraySize(jids), k = 0, n;
		int32_t *want = malloc((n_want + 1) * sizeof(*want)), *ids;

		assert_non_null(want);
		cJSON_ArrayForEach(e, jids)
			want[k++] = (int32_t)e->valuedouble;
		expect_ids(t, text, false, want, n_want);
		ids = encode(t, text, strlen(text), false, &n);
		check_decode(t, ids, n, text, strlen(text));
		free(ids);
		free(want);
		count++;
	}
	assert_int_equal(count, n_items);
	cJSON_Delete(ref);
}

static void test_gpt2_reference(void **state)
{
	struct fixture *f = *state;

	check_reference(f->gpt2, GPT2_REF, 48);
}

static void test_gpt2_llamacpp_vectors(void **state)
{
	struct fixture *f = *state;

	check_reference(f->gpt2, GPT2_VECTORS, 46);
}

/* The whole evaluation text (with its <|endoftext|> separators) round-trips;
 * the separators come out as exactly that many special ids. */
static void test_gpt2_eval_text(void **state)
{
	struct fixture *f = *state;
	size_t len, n, eot = 0, want_eot = 0;
	char *text = test_slurp(EVAL_TEXT, &len);
	double t0 = test_now();
	int32_t *ids = encode(f->gpt2, text, len, false, &n);
	char buf[32];
	size_t blen;

	print_message("encode %zu bytes -> %zu ids: %.3f s\n", len, n, test_now() - t0);
	for (size_t i = 0; i < n; i++)
		eot += ids[i] == EOT_ID;
	for (const char *p = text; (p = strstr(p, EOT)); p += strlen(EOT))
		want_eot++;
	assert_int_equal(eot, want_eot);
	check_decode(f->gpt2, ids, n, text, len);
	/* The piece itself is still the raw text. */
	assert_int_equal(nb_tok_bpe_piece_bytes(f->gpt2, EOT_ID, buf, sizeof(buf), &blen), 0);
	assert_int_equal(blen, strlen(EOT));
	assert_memory_equal(buf, EOT, blen);
	free(ids);
	free(text);
}

static void test_gpt2_spec(void **state)
{
	struct nb_tok_spec s;

	(void)state;
	assert_int_equal(nb_tok_import_json(&s, GPT2_JSON), 0);
	assert_int_equal(s.kind, NB_TOK_BPE);
	assert_int_equal(s.pretok, NB_PRETOK_GPT2);
	assert_int_equal(s.n_vocab, 50257);
	assert_int_equal(s.n_merges, 50000);
	assert_int_equal(s.flags, 0);
	assert_int_equal(s.eos_id, EOT_ID);
	assert_int_equal(s.bos_id, -1);
	assert_int_equal(s.types[EOT_ID], NB_PIECE_CONTROL);
	assert_int_equal(s.types[0], NB_PIECE_NORMAL);
	/* merges[0] is "Ġ t" */
	assert_int_equal(s.merges[0], 220);
	assert_int_equal(s.merges[1], 83);
	nb_tok_spec_free(&s);
}

/* The ids/max/n contract: too small a buffer gives -NB_ERANGE and the count. */
static void test_gpt2_small_buffer(void **state)
{
	struct fixture *f = *state;
	int32_t ids[2];
	size_t n;
	char buf[4];
	size_t len;

	assert_int_equal(nb_tok_encode(f->gpt2, " Hello World!", 13, false, ids, 2, &n), -NB_ERANGE);
	assert_int_equal(n, 3);
	assert_int_equal(ids[0], 18435);
	assert_int_equal(ids[1], 2159);
	assert_int_equal(nb_tok_encode(f->gpt2, "Hello", 5, false, NULL, 0, &n), -NB_ERANGE);
	assert_int_equal(n, 1);
	assert_int_equal(nb_tok_bpe_piece_bytes(f->gpt2, 18435, buf, sizeof(buf), &len), -NB_ERANGE);
	assert_int_equal(len, 6);
	assert_int_equal(nb_tok_bpe_piece_bytes(f->gpt2, 50257, buf, sizeof(buf), &len), -NB_EINVAL);
	assert_int_equal(nb_tok_bpe_piece_bytes(f->gpt2, -1, buf, sizeof(buf), &len), -NB_EINVAL);
}

/* Every byte alone is its alphabet character's piece, and decodes back. */
static void test_gpt2_bytes(void **state)
{
	struct fixture *f = *state;

	for (int b = 0; b < 256; b++) {
		char c = (char)b, out[8];
		int32_t id, *ids;
		size_t n, len;

		if (b >= 0x80)
			continue; /* not UTF-8 alone; the encoder refuses it */
		ids = encode(f->gpt2, &c, 1, false, &n);
		assert_int_equal(n, 1);
		id = ids[0];
		/* GPT-2 numbers the 256 byte pieces first, in the alphabet's order:
		 * printable bytes 33..126 are ids 0..93, the others follow. */
		if (b >= 33 && b <= 126)
			assert_int_equal(id, b - 33);
		else
			assert_true(id >= 188 && id < 256);
		assert_int_equal(nb_tok_piece(f->gpt2, -1, id, out, sizeof(out), &len), 0);
		assert_int_equal(len, 1);
		assert_int_equal((uint8_t)out[0], b);
		free(ids);
	}
}

/* ---- pre-tokenizers --------------------------------------------------------- */

/* Splits the concatenation of want[] and expects exactly those pieces. */
static void expect_split(uint32_t pretok, const char *const *want, size_t n_want)
{
	char text[256] = { 0 };
	size_t ends[64], n, pos = 0, i;

	for (i = 0; i < n_want; i++) {
		size_t l = strlen(want[i]);

		assert_true(pos + l < sizeof(text));
		memcpy(text + pos, want[i], l);
		pos += l;
	}
	assert_int_equal(nb_tok_bpe_split(pretok, text, pos, ends, 64, &n), 0);
	for (i = 0, pos = 0; i < n && i < n_want; i++) {
		size_t l = strlen(want[i]);

		if (ends[i] != pos + l)
			print_error("pretok %u piece %zu: want \"%s\", got %zu bytes\n", pretok, i,
				    want[i], ends[i] - pos);
		assert_int_equal(ends[i], pos + l);
		pos += l;
	}
	assert_int_equal(n, n_want);
}

#define SPLIT(pretok, ...)                                                      \
	do {                                                                    \
		static const char *const w_[] = { __VA_ARGS__ };                \
		expect_split(pretok, w_, sizeof(w_) / sizeof(w_[0]));           \
	} while (0)

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void test_split_gpt2(void **state)
{
	const uint32_t p = NB_PRETOK_GPT2;

	(void)state;
	SPLIT(p, "Hello", " world");
	SPLIT(p, "Hello", ",", " world", "!");
	/* A white-space run before a word leaves its last space to the word. */
	SPLIT(p, " ", " double", " ", " spaces", "\t", "and");
	SPLIT(p, "a", "\n\n", " b");
	SPLIT(p, "end", "   ");
	SPLIT(p, "a", " ", " 1");
	SPLIT(p, "abc", " 12345", " x");
	SPLIT(p, "x", " ?!", "y");
	/* Contractions are case-sensitive here. */
	SPLIT(p, "I", "'m", " you", "'re", " it", "'s", " we", "'ve", " they", "'ll", " I", "'d");
	SPLIT(p, "I", "'", "M");
	SPLIT(p, "'s", "un");
	SPLIT(p, "!'", "s");
	/* \s is White_Space: \x85, \xa0, U+3000 are; \x1c, U+200B are not. */
	SPLIT(p, "a", "\xc2\xa0", "b");
	SPLIT(p, "a", " ", "\xc2\xa0", "b");
	SPLIT(p, "x", "\xc2\x85", "\xc2\x85", "y");
	SPLIT(p, "\xe6\x97\xa5\xe6\x9c\xac", "\xe3\x80\x80", "\xe8\xaa\x9e");
	SPLIT(p, "a", "\x1c\x1d", "b");
	SPLIT(p, "a", "\xe2\x80\x8b", "b");
	SPLIT(p, "\xe2\x80\xa8\xe2\x80\xa8");
	/* Numbers of every kind: Nd, No (½), Nl (Ⅻ). */
	SPLIT(p, "ied", " 4", " \xc2\xbd", " months");
	SPLIT(p, "\xe2\x85\xab", "x");
	/* Combining marks are not \p{L}. */
	SPLIT(p, "e", "\xcc\x81", "x");
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void test_split_llama3(void **state)
{
	const uint32_t p = NB_PRETOK_LLAMA3;

	(void)state;
	SPLIT(p, "Hello", " world");
	SPLIT(p, "123", "45", " ", "678");
	SPLIT(p, "123", "456", "7");
	SPLIT(p, "1", "a");
	SPLIT(p, "a", "1", "b");
	SPLIT(p, "$", "1", ",", "000");
	/* Contractions ignore case, and U+017F LONG S folds to s. */
	SPLIT(p, "I", "'M", " HE", "'LL", " it", "'S", " we", "'Ve");
	SPLIT(p, "it", "'\xc5\xbf");
	SPLIT(p, "'s", "un");
	SPLIT(p, "'hello");
	SPLIT(p, "(hello", ")");
	/* One leading non-letter (not \r \n) joins a word. */
	SPLIT(p, "\tword");
	SPLIT(p, "\xe3\x80\x80word");
	SPLIT(p, "\xc2\xa0word");
	SPLIT(p, "\n", "word");
	/* Line breaks: a white-space run ends after its last \r or \n. */
	SPLIT(p, "a", "\n\n", "b");
	SPLIT(p, "a", "  \n", " ", " b");
	SPLIT(p, "a", " \r\n \n", "  ");
	SPLIT(p, "foo", ".\n\n", "bar");
	SPLIT(p, " ?!\r\n", "x");
	SPLIT(p, "x", "  ");
	SPLIT(p, "x", " ", " ", "1");
	SPLIT(p, "x", "\xc2\x85", "\xc2\x85", "1");
}

static void test_split_qwen2(void **state)
{
	const uint32_t p = NB_PRETOK_QWEN2;

	(void)state;
	SPLIT(p, "1", "2", "3", "4", "5");
	SPLIT(p, "ab", "1", "2", " c");
	SPLIT(p, "I", "'LL", " go");
	SPLIT(p, "\xd9\xa1", "\xd9\xa2");
	SPLIT(p, "a", "\n", " ", " b");
}

/* Digits(individual_digits) isolates every \p{N}; GPT-2's regex then runs
 * on each stretch between them as a text of its own. */
static void test_split_smollm(void **state)
{
	const uint32_t p = NB_PRETOK_SMOLLM;

	(void)state;
	SPLIT(p, "abc", "1", "2", "3", " def");
	SPLIT(p, "a", " ", "1");
	SPLIT(p, "x", " ", " y", "7");
	SPLIT(p, "a", "\xc2\xbd", "b");
	SPLIT(p, "it", "'s", " ", "9", "am");
	SPLIT(p, "1", "2");
	/* U+11DE0 is a digit for Digits (Unicode 17.0), "other" for the regex. */
	SPLIT(p, "a", "\xf0\x91\xb7\xa0", "b");
	SPLIT(NB_PRETOK_GPT2, "a", "\xf0\x91\xb7\xa0", "b");
}

static void test_split_none_and_errors(void **state)
{
	size_t ends[2], n;

	(void)state;
	SPLIT(NB_PRETOK_NONE, "one piece  ");
	assert_int_equal(nb_tok_bpe_split(NB_PRETOK_GPT2, "a b c", 5, ends, 2, &n), -NB_ERANGE);
	assert_int_equal(n, 3);
	assert_int_equal(ends[1], 3);
	assert_int_equal(nb_tok_bpe_split(99, "a", 1, ends, 2, &n), -NB_EINVAL);
	assert_int_equal(nb_tok_bpe_split(NB_PRETOK_GPT2, "", 0, ends, 2, &n), 0);
	assert_int_equal(n, 0);
}

/* ---- Unicode ---------------------------------------------------------------- */

static void test_unicode_classes(void **state)
{
	static const struct {
		uint32_t cp;
		int cls;
	} c[] = {
		{ 'a', NB_UC_LETTER },	   { 'Z', NB_UC_LETTER },     { '5', NB_UC_NUMBER },
		{ '_', NB_UC_OTHER },	   { 0xE9, NB_UC_LETTER },    { 0xDF, NB_UC_LETTER },
		{ 0xAA, NB_UC_LETTER },	   { 0xB2, NB_UC_NUMBER },    { 0xBD, NB_UC_NUMBER },
		{ 0x660, NB_UC_NUMBER },   { 0x2160, NB_UC_NUMBER },  { 0x3007, NB_UC_NUMBER },
		{ 0x65E5, NB_UC_LETTER },  { 0xAC00, NB_UC_LETTER },  { 0xD7A3, NB_UC_LETTER },
		{ 0x2F800, NB_UC_LETTER }, { 0x0E01, NB_UC_LETTER },  { 0x02B0, NB_UC_LETTER },
		{ 0x3000, NB_UC_SPACE },   { 0x85, NB_UC_SPACE },     { 0xA0, NB_UC_SPACE },
		{ 0x2028, NB_UC_SPACE },   { 0x1680, NB_UC_SPACE },   { 0x200A, NB_UC_SPACE },
		{ '\v', NB_UC_SPACE },	   { 0x200B, NB_UC_OTHER },   { 0x1C, NB_UC_OTHER },
		{ 0x180E, NB_UC_OTHER },   { 0x301, NB_UC_OTHER },    { 0x1F600, NB_UC_OTHER },
		{ 0xE000, NB_UC_OTHER },   { 0x10FFFF, NB_UC_OTHER }, { 0x110000, NB_UC_OTHER },
		{ 0x31350, NB_UC_LETTER }, { 0x378, NB_UC_OTHER },    { 0x1D7CE, NB_UC_NUMBER },
		/* The reference's regexes know Unicode 16.0: U+1C89 (16.0) is a
		 * letter, U+11DE0 (a digit of 17.0) is not yet a number. */
		{ 0x1C89, NB_UC_LETTER },  { 0x2EBF0, NB_UC_LETTER }, { 0x11DE0, NB_UC_OTHER },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		if (nb_unicode_class(c[i].cp) != c[i].cls)
			print_error("U+%04X: class %d, want %d\n", c[i].cp, nb_unicode_class(c[i].cp),
				    c[i].cls);
		assert_int_equal(nb_unicode_class(c[i].cp), c[i].cls);
	}
	assert_int_equal(nb_unicode_ccc(0x301), 230);
	assert_int_equal(nb_unicode_ccc(0x323), 220);
	assert_int_equal(nb_unicode_ccc(0x41), 0);
	assert_int_equal(nb_unicode_ccc(0x1D165), 216);
	/* NFC is pinned to Unicode 9.0: a mark of 10.0 has class 0 there. */
	assert_int_equal(nb_unicode_ccc(0x0D3B), 0);
	/* Digits (Rust's is_numeric) knows Unicode 17.0. */
	assert_true(nb_unicode_is_numeric(0x11DE0));
	assert_true(nb_unicode_is_numeric(0x16FF6));
	assert_true(nb_unicode_is_numeric('7'));
	assert_false(nb_unicode_is_numeric(0x16FF7));
	assert_false(nb_unicode_is_numeric('x'));
}

static void test_unicode_utf8(void **state)
{
	static const struct {
		const char *s;
		size_t n, len;
		uint32_t cp;
	} c[] = {
		{ "A", 1, 1, 'A' },
		{ "\xc3\xa9", 2, 2, 0xE9 },
		{ "\xe2\x82\xac", 3, 3, 0x20AC },
		{ "\xf0\x9f\x98\x80", 4, 4, 0x1F600 },
		{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10FFFF },
		{ "\xc0\x80", 2, 1, NB_UC_REPLACEMENT },	 /* overlong */
		{ "\xe0\x80\x80", 3, 1, NB_UC_REPLACEMENT }, /* overlong */
		{ "\xed\xa0\x80", 3, 1, NB_UC_REPLACEMENT }, /* surrogate */
		{ "\xf4\x90\x80\x80", 4, 1, NB_UC_REPLACEMENT },
		{ "\xe2\x82", 2, 1, NB_UC_REPLACEMENT },	 /* truncated */
		{ "\xe2\x82\xac", 2, 1, NB_UC_REPLACEMENT }, /* cut by n */
		{ "\x80", 1, 1, NB_UC_REPLACEMENT },
		{ "\xff", 1, 1, NB_UC_REPLACEMENT },
	};
	char out[4];

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		uint32_t cp;

		assert_int_equal(nb_unicode_decode(c[i].s, c[i].n, &cp), c[i].len);
		assert_int_equal(cp, c[i].cp);
		if (c[i].cp != NB_UC_REPLACEMENT) {
			assert_int_equal(nb_unicode_encode(cp, out), c[i].len);
			assert_memory_equal(out, c[i].s, c[i].len);
		}
	}
}

static void expect_nfc(const char *in, const char *want)
{
	char *out;
	size_t len;

	assert_int_equal(nb_unicode_nfc(in, strlen(in), &out, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
	free(out);
}

/* Examples of UAX #15 and lines of the UCD's NormalizationTest.txt. */
static void test_unicode_nfc(void **state)
{
	(void)state;
	expect_nfc("", "");
	expect_nfc("abc", "abc");
	expect_nfc("e\xcc\x81", "\xc3\xa9");                         /* e + acute */
	expect_nfc("A\xcc\x8a", "\xc3\x85");                         /* A + ring */
	expect_nfc("\xe2\x84\xab", "\xc3\x85");                      /* U+212B ANGSTROM SIGN */
	expect_nfc("\xe2\x84\xa6", "\xce\xa9");                      /* U+2126 OHM SIGN */
	expect_nfc("\xe1\xb8\x8b\xcc\xa3", "\xe1\xb8\x8d\xcc\x87"); /* ḋ + dot below */
	expect_nfc("q\xcc\x87\xcc\xa3", "q\xcc\xa3\xcc\x87");        /* reordered, no composite */
	expect_nfc("\xe0\xa5\x98", "\xe0\xa4\x95\xe0\xa4\xbc");      /* U+0958 excluded */
	expect_nfc("\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"); /* L V T -> 각 */
	expect_nfc("\xea\xb0\x80\xe1\x86\xa8", "\xea\xb0\x81");              /* LV + T */
	expect_nfc("\xcc\x81" "e", "\xcc\x81" "e");                  /* leading mark */
	expect_nfc("\xcd\x84", "\xcc\x88\xcc\x81");                  /* U+0344: two marks */
	/* NormalizationTest.txt: 1E0A 0323 -> 1E0C 0307; 0044 0307 0323 -> 1E0C 0307 */
	expect_nfc("D\xcc\x87\xcc\xa3", "\xe1\xb8\x8c\xcc\x87");
	/* 00C5 0301 -> 01FA (Ǻ) */
	expect_nfc("\xc3\x85\xcc\x81", "\xc7\xba");
	/* a starter between (ZWJ, class 0) blocks the composition */
	expect_nfc("a\xe2\x80\x8d\xcc\x81", "a\xe2\x80\x8d\xcc\x81");
	/* U+1D160 musical symbol: three code points, composition excluded */
	expect_nfc("\xf0\x9d\x85\xa0", "\xf0\x9d\x85\x98\xf0\x9d\x85\xa5\xf0\x9d\x85\xae");
	/* U+08CF (Unicode 14.0, class 220 today) is unassigned for the
	 * reference, so it is not reordered before U+0614 (230). */
	expect_nfc("\xd8\x94\xe0\xa3\x8f", "\xd8\x94\xe0\xa3\x8f");
	assert_true(nb_unicode_nfc_trivial("h\xc3\xa9llo", 6));
	assert_false(nb_unicode_nfc_trivial("e\xcc\x81", 3));
}

/* A long run of marks in reverse class order is sorted stably. */
static void test_unicode_nfc_long_run(void **state)
{
	size_t n = 3000, len;
	char *in = malloc(1 + 4 * n), *out;

	(void)state;
	assert_non_null(in);
	in[0] = 'a';
	for (size_t i = 0; i < n; i++) {
		/* alternate U+0301 (230) and U+0323 (220) */
		memcpy(in + 1 + 2 * i, i % 2 ? "\xcc\xa3" : "\xcc\x81", 2);
	}
	assert_int_equal(nb_unicode_nfc(in, 1 + 2 * n, &out, &len), 0);
	/* a + dot below composes to U+1EA1, then 1499 dots below, then 1500 acutes */
	assert_int_equal(len, 3 + 2 * (n - 1));
	assert_memory_equal(out, "\xe1\xba\xa1", 3);
	for (size_t i = 0; i < n - 1; i++)
		assert_memory_equal(out + 3 + 2 * i, i < n / 2 - 1 ? "\xcc\xa3" : "\xcc\x81", 2);
	free(in);
	free(out);
}

/* ---- tokenizer.json variants ------------------------------------------------ */

static const char llama3_re[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char qwen2_re[] =
	"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
	"?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static cJSON *byte_level(bool use_regex)
{
	cJSON *b = cJSON_CreateObject();

	cJSON_AddStringToObject(b, "type", "ByteLevel");
	cJSON_AddBoolToObject(b, "add_prefix_space", false);
	cJSON_AddBoolToObject(b, "trim_offsets", true);
	cJSON_AddBoolToObject(b, "use_regex", use_regex);
	return b;
}

static cJSON *split_then_byte_level(const char *re)
{
	cJSON *seq = cJSON_CreateObject(), *list = cJSON_CreateArray(), *split = cJSON_CreateObject();

	cJSON_AddStringToObject(split, "type", "Split");
	cJSON_AddStringToObject(cJSON_AddObjectToObject(split, "pattern"), "Regex", re);
	cJSON_AddStringToObject(split, "behavior", "Isolated");
	cJSON_AddBoolToObject(split, "invert", false);
	cJSON_AddItemToArray(list, split);
	cJSON_AddItemToArray(list, byte_level(false));
	cJSON_AddStringToObject(seq, "type", "Sequence");
	cJSON_AddItemToObject(seq, "pretokenizers", list);
	return seq;
}

/* The GPT-2 tokenizer.json with its pre_tokenizer (and more) replaced. */
static struct nb_tok *open_variant(const struct fixture *f, cJSON *pretok, cJSON *normalizer,
				   bool ignore_merges, bool template_bos)
{
	cJSON *j = cJSON_Duplicate(f->json, true);
	struct nb_tok *t;
	char *text;

	assert_non_null(j);
	cJSON_ReplaceItemInObjectCaseSensitive(j, "pre_tokenizer", pretok);
	if (normalizer)
		cJSON_ReplaceItemInObjectCaseSensitive(j, "normalizer", normalizer);
	if (ignore_merges)
		cJSON_AddBoolToObject(cJSON_GetObjectItemCaseSensitive(j, "model"), "ignore_merges",
				      true);
	if (template_bos) {
		cJSON *pp = cJSON_Parse(
			"{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|endoftext|>\",\"type_id\":0}},"
			"{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<|endoftext|>\":"
			"{\"id\":\"<|endoftext|>\",\"ids\":[50256],\"tokens\":[\"<|endoftext|>\"]}}}");

		assert_non_null(pp);
		cJSON_ReplaceItemInObjectCaseSensitive(j, "post_processor", pp);
	}
	text = cJSON_PrintUnformatted(j);
	assert_non_null(text);
	assert_int_equal(open_text(&t, text), 0);
	free(text);
	cJSON_Delete(j);
	return t;
}

static void test_variant_llama3(void **state)
{
	struct fixture *f = *state;
	struct nb_tok *t = open_variant(f, split_then_byte_level(llama3_re), NULL, true, true);
	/* With ignore_merges every pre-token that is a vocab entry is that id. */
	int32_t want[] = { EOT_ID,
			   vocab_id(f, "Hello"),
			   vocab_id(f, "\xc4\xa0world"),
			   vocab_id(f, "\xc4\xa0"),
			   vocab_id(f, "123"),
			   vocab_id(f, "45"),
			   vocab_id(f, "'s"),
			   vocab_id(f, "'"), /* "'S" is no piece: BPE gives ' S */
			   vocab_id(f, "S"),
			   vocab_id(f, "\xc4\x8a\xc4\x8a") };

	assert_int_equal(nb_tok_bos(t), EOT_ID);
	expect_ids(t, "Hello world 12345's'S\n\n", true, want, 10);
	expect_ids(t, "Hello world 12345's'S\n\n", false, want + 1, 9);
	/* Added tokens are cut out first: the regex never sees across them. */
	{
		int32_t w2[] = { vocab_id(f, "a"), EOT_ID, vocab_id(f, "b") };

		expect_ids(t, "a" EOT "b", false, w2, 3);
	}
	nb_tok_close(t);
}

static void test_variant_qwen2(void **state)
{
	struct fixture *f = *state;
	cJSON *nfc = cJSON_Parse("{\"type\":\"NFC\"}");
	struct nb_tok *t = open_variant(f, split_then_byte_level(qwen2_re), nfc, false, false);
	/* "é" is C3 A9, "Ã©" in the byte alphabet; NFC makes e + U+0301 that. */
	int32_t want[] = { vocab_id(f, "\xc3\x83\xc2\xa9"), vocab_id(f, "1"), vocab_id(f, "2") };
	char out[16];
	size_t n, len;
	int32_t *ids;

	expect_ids(t, "e\xcc\x81" "12", false, want, 3);
	ids = encode(t, "e\xcc\x81", 3, false, &n);
	assert_int_equal(nb_tok_decode(t, ids, n, out, sizeof(out), &len), 0);
	assert_int_equal(len, 2);
	assert_memory_equal(out, "\xc3\xa9", 2);
	free(ids);
	nb_tok_close(t);
}

static void test_variant_smollm(void **state)
{
	struct fixture *f = *state;
	cJSON *seq = cJSON_Parse("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
				 "\"individual_digits\":true}]}");
	struct nb_tok *t;
	int32_t want[] = { 15496, 220, vocab_id(f, "1"), vocab_id(f, "2") };

	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(seq, "pretokenizers"),
			     byte_level(true));
	t = open_variant(f, seq, NULL, false, false);
	expect_ids(t, "Hello 12", false, want, 4);
	nb_tok_close(t);
}

static void expect_item_ids(const struct nb_tok *t, const cJSON *item, const char *variant,
			    const char *decoded)
{
	const cJSON *jids = cJSON_GetObjectItemCaseSensitive(item, variant), *e;
	size_t n_want = (size_t)cJSON_GetArraySize(jids), k = 0, n;
	int32_t *want = malloc((n_want + 1) * sizeof(*want)), *ids;
	const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;

	assert_non_null(want);
	cJSON_ArrayForEach(e, jids)
		want[k++] = (int32_t)e->valuedouble;
	expect_ids(t, text, false, want, n_want);
	ids = encode(t, text, strlen(text), false, &n);
	check_decode(t, ids, n, decoded, strlen(decoded));
	free(ids);
	free(want);
}

/* HF tokenizers' ids for the same variants (tests/data/bpe/variants_reference.json). */
static void test_variants_reference(void **state)
{
	struct fixture *f = *state;
	struct nb_tok *llama3 = open_variant(f, split_then_byte_level(llama3_re), NULL, true, false);
	struct nb_tok *qwen2 = open_variant(f, split_then_byte_level(qwen2_re),
					    cJSON_Parse("{\"type\":\"NFC\"}"), false, false);
	cJSON *seq = cJSON_Parse("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Digits\","
				 "\"individual_digits\":true}]}");
	cJSON *ref = test_load_json(VARIANTS_REF), *item;
	struct nb_tok *smollm;
	size_t count = 0;

	cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(seq, "pretokenizers"),
			     byte_level(true));
	smollm = open_variant(f, seq, NULL, false, false);
	cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(ref, "items")) {
		const char *text = cJSON_GetObjectItemCaseSensitive(item, "text")->valuestring;
		const char *nfc = cJSON_GetObjectItemCaseSensitive(item, "nfc")->valuestring;

		expect_item_ids(llama3, item, "llama3", text);
		expect_item_ids(qwen2, item, "qwen2", nfc);
		expect_item_ids(smollm, item, "smollm", text);
		count++;
	}
	assert_int_equal(count, 160);
	cJSON_Delete(ref);
	nb_tok_close(llama3);
	nb_tok_close(qwen2);
	nb_tok_close(smollm);
}

/* ---- small and malformed tokenizer.json files ------------------------------- */

#define MINI_HEAD "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"\xc4\xa0\":3},"
#define MINI_PRE "\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"

static void test_mini(void **state)
{
	struct nb_tok *t;
	static const int32_t ab[] = { 2 }, ba[] = { 1, 0 }, abc[] = { 2 }, sp[] = { 3, 2 },
			     cab[] = { 2 }, tok[] = { 4, 2 };

	(void)state;
	assert_int_equal(open_text(&t, MINI_HEAD "\"merges\":[[\"a\",\"b\"]]}," MINI_PRE ","
						 "\"added_tokens\":[{\"id\":4,\"content\":\"<x>\",\"special\":false}]}"),
			 0);
	expect_ids(t, "ab", false, ab, 1);
	expect_ids(t, "ba", false, ba, 2);
	/* No piece for "c" and no unk_token: HF drops the character, and the
	 * symbols around it become neighbours. */
	expect_ids(t, "abc", false, abc, 1);
	expect_ids(t, "acb", false, cab, 1);
	expect_ids(t, " ab", false, sp, 2);
	expect_ids(t, "<x>ab", false, tok, 2);
	nb_tok_close(t);
}

static void test_malformed(void **state)
{
	static const struct {
		const char *text;
		int err;
	} c[] = {
		{ "not json", -NB_EFORMAT },
		{ "{}", -NB_EFORMAT },
		{ "[1,2]", -NB_EFORMAT },
		{ "{\"model\":[]}", -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"WordPiece\",\"vocab\":{\"a\":0}}," MINI_PRE "}", -NB_ENOTSUP },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":[\"a\"],\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}," MINI_PRE "}", -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"0\"},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0.5},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":1e300},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"a\":1},\"merges\":[]}," MINI_PRE "}",
		  -NB_EFORMAT },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":2},\"merges\":[]}," MINI_PRE "}",
		  -NB_ENOTSUP },
		{ "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":4000000},\"merges\":[]}," MINI_PRE "}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[\"a c\"]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[\"b a\"]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[\"ab\"]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[[\"a\"]]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[[\"a\",1]]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[7]}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":{}}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[],\"dropout\":0.1}," MINI_PRE "}", -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[],\"continuing_subword_prefix\":\"##\"}," MINI_PRE "}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[],\"byte_fallback\":true}," MINI_PRE "}", -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[],\"ignore_merges\":1}," MINI_PRE "}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]}}", -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":7}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Whitespace\"}}", -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":true}}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":"
			    "[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\"},"
			    "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":7}}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]},\"pre_tokenizer\":{\"type\":\"Sequence\",\"pretokenizers\":[{},{}]}}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"normalizer\":{\"type\":\"Lowercase\"}}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"normalizer\":{\"type\":\"NFC\"}}", -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"normalizer\":[]}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"added_tokens\":{}}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"added_tokens\":[7]}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"added_tokens\":[{\"id\":4}]}", -NB_EFORMAT },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"added_tokens\":[{\"id\":0,\"content\":\"x\"}]}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE ",\"added_tokens\":[{\"id\":5,\"content\":\"a\"}]}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE
			    ",\"added_tokens\":[{\"id\":4,\"content\":\"x\",\"lstrip\":true}]}",
		  -NB_ENOTSUP },
		{ MINI_HEAD "\"merges\":[]}," MINI_PRE
			    ",\"added_tokens\":[{\"id\":4,\"content\":\"x\"},{\"id\":4,\"content\":\"x\"}]}",
		  -NB_EFORMAT },
	};
	struct nb_tok_spec s;
	int q = test_quiet();

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		int err = import_text(&s, c[i].text);

		if (err != c[i].err) {
			test_loud(q);
			print_error("case %zu: got %d, want %d: %s\n", i, err, c[i].err, c[i].text);
			q = test_quiet();
		}
		assert_int_equal(err, c[i].err);
		assert_null(s.text);
		assert_null(s.merges);
	}
	assert_int_equal(nb_tok_import_json(&s, "tests/data/bpe/no-such-file.json"), -NB_ENOENT);
	assert_int_equal(nb_tok_import_json(&s, "tests/data/bpe"), -NB_EIO);
	test_loud(q);
}

/* Every prefix of a valid file is rejected cleanly (cut mid-JSON). */
static void test_truncated(void **state)
{
	static const char full[] = MINI_HEAD "\"merges\":[\"a b\"]}," MINI_PRE "}";
	struct nb_tok_spec s;
	char buf[sizeof(full)];
	int q = test_quiet();

	(void)state;
	for (size_t n = 1; n + 1 < sizeof(full); n++) {
		memcpy(buf, full, n);
		buf[n] = '\0';
		assert_true(import_text(&s, buf) < 0);
	}
	test_loud(q);
	assert_int_equal(import_text(&s, full), 0);
	nb_tok_spec_free(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unicode_classes),
		cmocka_unit_test(test_unicode_utf8),
		cmocka_unit_test(test_unicode_nfc),
		cmocka_unit_test(test_unicode_nfc_long_run),
		cmocka_unit_test(test_split_gpt2),
		cmocka_unit_test(test_split_llama3),
		cmocka_unit_test(test_split_qwen2),
		cmocka_unit_test(test_split_smollm),
		cmocka_unit_test(test_split_none_and_errors),
		cmocka_unit_test(test_gpt2_spec),
		cmocka_unit_test(test_gpt2_reference),
		cmocka_unit_test(test_gpt2_llamacpp_vectors),
		cmocka_unit_test(test_gpt2_eval_text),
		cmocka_unit_test(test_gpt2_small_buffer),
		cmocka_unit_test(test_gpt2_bytes),
		cmocka_unit_test(test_variant_llama3),
		cmocka_unit_test(test_variant_qwen2),
		cmocka_unit_test(test_variant_smollm),
		cmocka_unit_test(test_variants_reference),
		cmocka_unit_test(test_mini),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_truncated),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
