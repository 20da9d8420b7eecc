/* Model families. A family is Llama's layer plus the pieces its
 * descriptor names (features, gate activation, norm offset, embedding
 * scale); the importers copy them into the hyper-parameters, the image
 * stores them, and binding and the forward pass read them from there.
 * Adding a family made of known pieces is one entry here plus its tensor
 * names in tools/import/family.c. */
#ifndef NB_ARCH_H
#define NB_ARCH_H

#include "firmware/tensor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nb_arch_desc {
	uint32_t arch;             /* enum nb_arch */
	const char *name;          /* GGUF's general.architecture, and its key prefix */
	uint32_t features;         /* enum nb_feature bits */
	uint32_t activation;       /* enum nb_act */
	float norm_offset;         /* of the norm weights as the family's HF checkpoints store them */
	bool embed_scale_sqrt_dim; /* embeddings multiplied by sqrt(dim) */
};

/* The family of an enum nb_arch value, or NULL. */
const struct nb_arch_desc *nb_arch_get(uint32_t arch);
/* The family called name (len bytes, need not be NUL-terminated), or NULL. */
const struct nb_arch_desc *nb_arch_find(const char *name, size_t len);
/* The names of every family, ", "-separated, for messages. */
void nb_arch_list(char *buf, size_t cap);
/* Sets hp's arch and layer fields to the family's; hp->dim must be set. */
void nb_arch_apply(const struct nb_arch_desc *d, struct nb_hparams *hp);

#endif
