/* Fuzz target: the GGUF parser on raw bytes, then the whole import mapping
 * (metadata -> hyper-parameters and tokenizer, tensors dequantized, the
 * checkpoint validated), and the tokenizer spec through what the image
 * writer and a board do with it. Seeds: tests/fuzz/corpus/fuzz_gguf/. */
#include "runtime/text/tokenizer.h"
#include "tools/import/ckpt.h"
#include "tools/import/gguf.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void use_tokenizer(const struct nb_tok_spec *spec)
{
	struct nb_tok_spec back;
	struct nb_tok *t = NULL;
	uint8_t *blob;
	size_t len;

	if (nb_tok_spec_write(spec, &blob, &len) != 0)
		return;
	nb_tok_spec_init(&back);
	if (nb_tok_spec_parse(&back, blob, len) == 0 && nb_tok_open(&t, &back) == 0)
		nb_tok_close(t);
	nb_tok_spec_free(&back);
	free(blob);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy: ASan sees any read past the end */
	uint8_t *buf = malloc(size ? size : 1);
	struct nb_gguf g;
	struct nb_ckpt c;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	nb_gguf_init(&g);
	nb_ckpt_init(&c);
	if (nb_gguf_parse(&g, buf, size, "fuzz") == 0 && nb_gguf_to_ckpt(&c, &g, "fuzz") == 0)
		use_tokenizer(&c.tok);
	nb_ckpt_free(&c);
	nb_gguf_free(&g);
	free(buf);
	return 0;
}
