/* Opening a .nib model image: open + mmap (read-only) + validation. The
 * weights are used where they lie; nothing is copied or repacked. */
#ifndef NB_IMAGE_H
#define NB_IMAGE_H

#include "firmware/image_format.h"
#include "firmware/tensor.h"

#include <stdbool.h>
#include <stddef.h>

#define NB_IMAGE_POPULATE 1u /* MAP_POPULATE: fault every page in at open */
#define NB_IMAGE_MLOCK 2u    /* mlock: never page the weights out */
#define NB_IMAGE_HUGEPAGE 4u /* madvise(MADV_HUGEPAGE) */

struct nb_image {
	int fd;
	const uint8_t *map;
	size_t map_size;
	const struct nb_image_header *hdr;
	struct nb_hparams hp;
	const struct nb_image_tensor *entries;
	struct nb_tensor *tensors; /* views into the map, one per entry */
	uint32_t n_tensors;
	const uint8_t *meta;
	size_t meta_size;
	const void *tok_blob;
	size_t tok_size;
	const struct nb_image_golden *golden; /* NULL if absent */
	const uint8_t *trailer;
};

/* Flags for nb_image_open from Kconfig (IMAGE_POPULATE, IMAGE_MLOCK, ...). */
unsigned nb_image_default_flags(void);

void nb_image_init(struct nb_image *img);
/* 0, or -NB_ENOENT/-NB_EIO/-NB_EFORMAT/-NB_ERANGE/-NB_ENOTSUP naming the
 * problem. On failure nothing stays open. */
int nb_image_open(struct nb_image *img, const char *path, unsigned flags);
/* Same checks on bytes already in memory (fuzzing, update bundles). The
 * buffer must outlive the image and be 64-byte aligned for kernels. */
int nb_image_open_mem(struct nb_image *img, const void *buf, size_t size);
void nb_image_close(struct nb_image *img);

/* Value of a META key (not NUL-terminated). -NB_ENOENT if absent. */
int nb_image_meta(const struct nb_image *img, const char *key, const char **value,
		  size_t *len);
const struct nb_tensor *nb_image_tensor(const struct nb_image *img, const char *name);
/* Bytes a tensor of this type and shape occupies; -NB_ENOTSUP for an
 * unknown type, -NB_ERANGE on overflow. */
int nb_tensor_bytes(uint32_t type, uint32_t ndim, const uint64_t *shape, uint64_t *bytes);
const char *nb_dtype_name(uint32_t type);

#endif
