/* Tokenizer fuzzing. Every input is used twice:
 *  - as an image tokenizer blob: parse it, and if it parses, open it and
 *    encode and decode a few strings with whatever vocabulary it describes;
 *  - as text for the real Llama 2 tokenizer: encode, decode, and check the
 *    decode gives the text back (it must, byte fallback covers every
 *    character; only a literal U+2581 decodes to a space, as in
 *    sentencepiece).
 * Seeds: tests/fuzz/corpus/fuzz_tokenizer/. */
#include "runtime/base/err.h"
#include "runtime/text/tokenizer.h"
#include "tools/import/ckpt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2_BIN "tests/data/llama2-tokenizer/tokenizer.bin"

/* Loaded once: the harness has no other place to keep it. */
static struct nb_tok *llama2;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct nb_tok_spec s;

	(void)argc;
	(void)argv;
	if (nb_tok_import_llama2c(&s, LLAMA2_BIN) != 0 || nb_tok_open(&llama2, &s) != 0) {
		fprintf(stderr, "fuzz_tokenizer: cannot load %s (run from the repo root)\n",
			LLAMA2_BIN);
		abort();
	}
	nb_tok_spec_free(&s);
	return 0;
}

static const char *const samples[] = {
	"Once upon a time, there was a little girl named Lily.",
	"  aaaa bbbb\tcc\n<x>x <s></s><unk> <0x41>",
	"\xc3\x9cn\xc3\xaf\x63\xc3\xb6\x64\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80",
	"\xe2\x96\x81\xe2\x96\x81 x",
	"",
};

static void try_blob(const uint8_t *data, size_t size)
{
	struct nb_tok_spec s;
	struct nb_tok *t;
	int32_t ids[256];
	char out[1024];
	size_t n, len;

	if (nb_tok_spec_parse(&s, data, size) != 0)
		return;
	if (nb_tok_open(&t, &s) == 0) {
		for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
			if (nb_tok_encode(t, samples[i], strlen(samples[i]), true, ids, 256, &n) == 0)
				(void)nb_tok_decode(t, ids, n, out, sizeof(out), &len);
		}
		for (uint32_t id = 0; id < nb_tok_vocab_size(t) && id < 300; id++)
			(void)nb_tok_piece(t, (int32_t)id - 1, (int32_t)id, out, sizeof(out), &len);
		nb_tok_close(t);
	}
	nb_tok_spec_free(&s);
}

static void try_text(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	size_t n = 0, len = 0;
	int32_t *ids;
	char *out;

	if (nb_tok_encode(llama2, text, size, true, NULL, 0, &n) != -NB_ERANGE)
		return; /* invalid UTF-8 (BOS alone never fits in 0) */
	ids = malloc(n * sizeof(*ids));
	out = malloc(size + 1);
	if (!ids || !out)
		abort();
	if (nb_tok_encode(llama2, text, size, true, ids, n, &n) != 0 ||
	    nb_tok_decode(llama2, ids, n, out, size + 1, &len) != 0)
		abort();
	if (!memmem(data, size, "\xe2\x96\x81", 3) && (len != size || memcmp(out, data, size)))
		abort();
	free(ids);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	try_blob(data, size);
	try_text(data, size);
	return 0;
}
