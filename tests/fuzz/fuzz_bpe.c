/* Byte-level BPE under fuzzing. The first byte picks what the rest is:
 *   0-4  text for the GPT-2 tokenizer under pre-tokenizer GPT2, LLAMA3 (with
 *        ignore_merges), QWEN2, SMOLLM, NONE: encode, then decode must give
 *        the text back (NFC'd for QWEN2, without <|endoftext|>, which decodes
 *        to nothing); invalid UTF-8 goes to the BPE encoder directly, which
 *        must cope without the public API's validation
 *   5    raw bytes for the splitters and NFC: pre-tokens tile the input,
 *        NFC is idempotent
 *   6-7  a tokenizer.json text for the importer; what imports must open and
 *        encode. */
#include "runtime/base/err.h"
#include "runtime/text/tok_internal.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"
#include "tools/import/ckpt.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define N_STYLES 5
#define EOT "<|endoftext|>"

static struct nb_tok *tok[N_STYLES];

static const uint32_t styles[N_STYLES] = { NB_PRETOK_GPT2, NB_PRETOK_LLAMA3, NB_PRETOK_QWEN2,
					   NB_PRETOK_SMOLLM, NB_PRETOK_NONE };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct nb_tok_spec s;

	(void)argc;
	(void)argv;
	if (nb_tok_import_json(&s, "tests/data/bpe/tokenizer.json") != 0) {
		fprintf(stderr, "fuzz_bpe: run from the repository root\n");
		abort();
	}
	for (int i = 0; i < N_STYLES; i++) {
		s.pretok = styles[i];
		s.flags = styles[i] == NB_PRETOK_LLAMA3 ? NB_TOK_FLAG_IGNORE_MERGES : 0;
		if (nb_tok_open(&tok[i], &s) != 0)
			abort();
	}
	nb_tok_spec_free(&s);
	return 0;
}

static bool valid_utf8(const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = nb_unicode_decode(s + i, n - i, &cp);

		if (cp == NB_UC_REPLACEMENT && (l != 3 || memcmp(s + i, "\xef\xbf\xbd", 3) != 0))
			return false;
		i += l;
	}
	return true;
}

/* What decoding should give: the text without <|endoftext|>, each piece
 * between them NFC'd for QWEN2. */
static char *expected_text(const char *s, size_t n, bool nfc, size_t *len)
{
	char *out = malloc(4 * n + 1), *norm;
	size_t o = 0, i = 0, k = strlen(EOT), nlen;

	if (!out)
		abort();
	while (i <= n) {
		const char *hit = memmem(s + i, n - i, EOT, k);
		size_t end = hit ? (size_t)(hit - s) : n;

		if (nfc) {
			if (nb_unicode_nfc(s + i, end - i, &norm, &nlen) != 0)
				abort();
			memcpy(out + o, norm, nlen);
			o += nlen;
			free(norm);
		} else {
			memcpy(out + o, s + i, end - i);
			o += end - i;
		}
		if (!hit)
			break;
		i = end + k;
	}
	*len = o;
	return out;
}

static void round_trip(int style, const char *s, size_t n)
{
	const struct nb_tok *t = tok[style];
	/* A byte gives at most one id; NFC (QWEN2) triples the bytes at most. */
	size_t max = 3 * n + 1, cnt, len, want_len, cap;
	int32_t *ids = malloc(max * sizeof(*ids));
	char *out, *want;
	int err;

	if (!ids)
		abort();
	if (!valid_utf8(s, n)) {
		err = nb_tok_bpe_encode(t, s, n, ids, max, &cnt);
		if (err != 0 && err != -NB_ERANGE)
			abort();
		free(ids);
		return;
	}
	err = nb_tok_encode(t, s, n, false, ids, max, &cnt);
	if (err != 0)
		abort();
	want = expected_text(s, n, styles[style] == NB_PRETOK_QWEN2, &want_len);
	cap = want_len + 1;
	out = malloc(cap);
	if (!out)
		abort();
	if (nb_tok_decode(t, ids, cnt, out, cap, &len) != 0 || len != want_len ||
	    memcmp(out, want, len) != 0)
		abort();
	free(out);
	free(want);
	free(ids);
}

static void split_and_nfc(const char *s, size_t n)
{
	size_t *ends = malloc((n + 1) * sizeof(*ends)), cnt, prev;
	char *a, *b;
	size_t alen, blen;

	if (!ends)
		abort();
	for (int i = 0; i < N_STYLES; i++) {
		if (nb_tok_bpe_split(styles[i], s, n, ends, n + 1, &cnt) != 0)
			abort();
		prev = 0;
		for (size_t k = 0; k < cnt; k++) {
			if (ends[k] <= prev || ends[k] > n)
				abort();
			prev = ends[k];
		}
		if (prev != n)
			abort();
	}
	free(ends);
	if (nb_unicode_nfc(s, n, &a, &alen) != 0 || nb_unicode_nfc(a, alen, &b, &blen) != 0)
		abort();
	if (alen != blen || memcmp(a, b, alen) != 0)
		abort();
	free(a);
	free(b);
}

static void import(const uint8_t *data, size_t n)
{
	struct nb_tok_spec s;
	struct nb_tok *t;
	char path[64];
	int fd = memfd_create("tokenizer.json", 0), saved, null;
	int32_t ids[64];
	size_t cnt;

	if (fd < 0)
		abort();
	if (n && write(fd, data, n) != (ssize_t)n)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	/* Rejections log a line each; keep the fuzzer's output readable. */
	saved = dup(2);
	null = open("/dev/null", O_WRONLY);
	dup2(null, 2);
	if (nb_tok_import_json(&s, path) == 0) {
		if (nb_tok_open(&t, &s) == 0) {
			nb_tok_encode(t, "Hello world 123 <|endoftext|> a'S\n\n", 35, true, ids, 64,
				      &cnt);
			nb_tok_close(t);
		}
		nb_tok_spec_free(&s);
	}
	dup2(saved, 2);
	close(saved);
	close(null);
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned mode;

	if (size == 0)
		return 0;
	mode = data[0] % 8;
	data++;
	size--;
	if (mode < N_STYLES)
		round_trip((int)mode, (const char *)data, size);
	else if (mode == 5)
		split_and_nfc((const char *)data, size);
	else
		import(data, size);
	return 0;
}
