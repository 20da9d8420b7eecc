/* Writing a .nib model image on the host (convert, quantize). The file
 * appears atomically: written to a temporary name, fsynced, renamed. */
#ifndef NB_IMAGE_WRITE_H
#define NB_IMAGE_WRITE_H

#include "runtime/model/model.h"
#include "runtime/text/tokenizer.h"

struct nb_image_kv {
	const char *key;
	const char *value; /* UTF-8 */
};

struct nb_image_spec {
	const struct nb_hparams *hp;
	const struct nb_tok_spec *tok;
	uint64_t model_version;
	const struct nb_image_kv *meta;
	size_t n_meta;
	const struct nb_tensor *tensors; /* name, type, ndim, shape, data, size */
	size_t n_tensors;
	const int32_t *golden_prompt; /* NULL: no golden vector */
	uint32_t n_golden_prompt;
	const int32_t *golden_expected;
	uint32_t n_golden_expected;
};

int nb_image_write(const char *path, const struct nb_image_spec *spec);

#endif
