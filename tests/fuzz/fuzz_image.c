/* Fuzz target: the model image parser, then what a board does next with an
 * image that passed (tokenizer blob, tensor binding, meta lookups). */
#include "firmware/image.h"
#include "runtime/base/log.h"
#include "runtime/model/model.h"
#include "runtime/text/tokenizer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = aligned_alloc(64, (size + 64) & ~(size_t)63);
	struct nb_tok_spec spec;
	struct nb_image img;
	struct nb_model m;
	const char *v;
	size_t len;

	nb_log_set_level(-1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	if (nb_image_open_mem(&img, buf, size) == 0) {
		nb_tok_spec_init(&spec);
		if (nb_tok_spec_parse(&spec, img.tok_blob, img.tok_size) == 0) {
			struct nb_tok *t = NULL;
			if (nb_tok_open(&t, &spec) == 0)
				nb_tok_close(t);
		}
		nb_tok_spec_free(&spec);
		nb_model_init(&m);
		if (nb_model_bind(&m, &img.hp, img.tensors, img.n_tensors) == 0)
			nb_model_free(&m);
		nb_image_meta(&img, "license", &v, &len);
		nb_image_close(&img);
	}
	free(buf);
	return 0;
}
