/* Fuzz target: the safetensors header parser on raw bytes, then the float
 * conversion of every tensor it accepts. Seeds: tests/fuzz/corpus/fuzz_safetensors/. */
#include "tools/import/safetensors.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy: ASan sees any read past the end */
	uint8_t *buf = malloc(size ? size : 1);
	struct nb_st st;
	float *f;

	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);
	nb_st_init(&st);
	if (nb_st_parse(&st, buf, size, "fuzz") == 0) {
		for (size_t i = 0; i < st.n_tensors; i++) {
			if (nb_st_find(&st, st.tensors[i].name) != &st.tensors[i])
				abort();
			if (nb_st_to_f32(&st.tensors[i], &f) == 0)
				free(f);
		}
	}
	nb_st_free(&st);
	free(buf);
	return 0;
}
