/* How each model family's checkpoints are spelled, for the importers: the
 * config.json names that select it, and its HF tensor names mapped onto
 * the canonical ones (runtime/model/model.h). What the family computes is
 * its firmware/arch.h descriptor. GGUF needs no table: its tensors carry
 * the canonical names and its keys the descriptor's name as prefix. Where
 * a family's GGUF files store a tensor differently from its HF checkpoints
 * (llama.cpp's Gemma conversion adds the 1 to the norm weights), that
 * difference belongs in struct nb_family. */
#ifndef NB_FAMILY_H
#define NB_FAMILY_H

#include "firmware/arch.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the HF importer does to a tensor on the way. */
enum nb_hf_transform {
	NB_HF_AS_IS,
	/* rows that are heads of head_dim rows in rotate-half order, back to the
	 * interleaved pairs the runtime rotates: q and k weights, their biases,
	 * the q/k norm weights (one head) */
	NB_HF_ROTATE_HALF,
};

struct nb_hf_name {
	const char *hf;        /* HF's name, after "model.layers.N." when per_layer */
	const char *canonical; /* the runtime's, after "blk.N." when per_layer; NULL: dropped */
	bool per_layer;
	enum nb_hf_transform how;
};

struct nb_family {
	uint32_t arch;            /* enum nb_arch: the descriptor */
	const char *hf_class;     /* config.json "architectures"[0] */
	const char *hf_type;      /* config.json "model_type" */
	const char *hf_act;       /* config.json "hidden_act" of the descriptor's activation */
	bool hf_tied;             /* tie_word_embeddings when config.json does not say */
	const struct nb_hf_name *hf_names; /* ends with a NULL hf */
};

/* The family of a config.json: by its architecture class if it names one,
 * else by its model_type; NULL if none matches. */
const struct nb_family *nb_family_hf(const char *hf_class, const char *hf_type);
/* The family of an enum nb_arch value, or NULL. */
const struct nb_family *nb_family_of(uint32_t arch);
/* The HF classes (or model types) of every family, ", "-separated. */
void nb_family_hf_list(char *buf, size_t cap, bool types);

#endif
