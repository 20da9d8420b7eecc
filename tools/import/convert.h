/* The path every image-making applet shares (convert, quantize): load a
 * source into a float32 checkpoint, then write an image of tensor views
 * with its manifest and a golden vector computed by the runtime on exactly
 * those views. */
#ifndef NB_CONVERT_H
#define NB_CONVERT_H

#include "tools/import/ckpt.h"

#include <stddef.h>
#include <stdint.h>

struct nb_src_opts {
	const char *applet;       /* names the messages: "convert" */
	const char *format;       /* "llama2c" | "hf" | "gguf" | "nib", NULL: detected */
	const char *tokenizer;    /* llama2.c tokenizer.bin, NULL: beside the source */
	const char *license_file; /* NULL: LICENSE beside (or inside) the source */
};

/* What nb_src_load found besides the tensors. */
struct nb_src_info {
	char desc[4200];        /* "path (llama2.c)", the manifest's "source" */
	uint64_t model_version; /* of a source image, 0 for checkpoints */
};

/* Loads path (a llama2.c checkpoint, an HF directory, a GGUF file or a
 * float32 .nib image) into c (initialized) and validates it. A license
 * file found beside the source replaces the one the source carries. */
int nb_src_load(struct nb_ckpt *c, const char *path, const struct nb_src_opts *o,
		struct nb_src_info *info);

/* Float32 views of every checkpoint tensor (caller frees the array). */
int nb_ckpt_views(const struct nb_ckpt *c, struct nb_tensor **out);

struct nb_out_spec {
	const char *path;               /* the image to write (atomically) */
	const char *applet;             /* "convert": names the messages */
	const char *creator;            /* manifest "created_by": "nibble 0.1.0 convert" */
	const struct nb_ckpt *c;        /* hp, tokenizer, name, license, chat template */
	const struct nb_tensor *tensors; /* what the image holds, in order */
	size_t n_tensors;
	const char *src_path;     /* the name falls back to its base name */
	const char *name;         /* NULL: the checkpoint's, else from src_path */
	const char *source;       /* manifest "source" */
	const char *quantization; /* manifest "quantization" */
	const char *golden_prompt;
	uint32_t golden_steps;
	uint64_t model_version;
};

/* Whether path can be written, before the work that makes it: its
 * directory exists and is writable, path is not a directory. Logs
 * "<applet>: <path>: cannot write in <dir>: <cause>". */
int nb_out_check(const char *applet, const char *path);

/* Computes the golden vector on o->tensors (bound as a model: so every
 * board reproduces it exactly) and writes the image. */
int nb_out_write(const struct nb_out_spec *o);

#endif
