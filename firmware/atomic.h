/* Files replaced atomically: written beside the target under the name
 * "<path>.tmp", fsynced, renamed over the target, and the directory
 * fsynced, so a power cut at any moment leaves the old file or the new
 * one, never a mix. Every step passes a fault point (firmware/fault.h)
 * named "<label>:<step>". */
#ifndef NB_ATOMIC_H
#define NB_ATOMIC_H

#include "firmware/fault.h"

#include <limits.h>
#include <stddef.h>

#define NB_ATOMIC_NOREPLACE 1u /* fail with -NB_EBUSY if the target exists */

struct nb_atomic_file {
	int fd;
	char path[PATH_MAX];
	char tmp[PATH_MAX];
};

/* Opens (truncating) the temporary file of path, mode bits as given. */
int nb_atomic_open(struct nb_atomic_file *a, const char *path, unsigned mode);
/* write() all of buf to the temporary file; then the point "<label>:write". */
int nb_atomic_write_all(struct nb_atomic_file *a, const void *buf, size_t len,
			struct nb_fault *f, const char *label);
/* fsync + close the temporary file: its bytes are on disk. */
int nb_atomic_sync(struct nb_atomic_file *a, struct nb_fault *f, const char *label);
/* rename over the target (or link, with NB_ATOMIC_NOREPLACE) + fsync the directory. */
int nb_atomic_rename(struct nb_atomic_file *a, unsigned flags, struct nb_fault *f,
		     const char *label);
/* Closes and removes the temporary file (after a failure). */
void nb_atomic_abort(struct nb_atomic_file *a);

/* The whole sequence for a buffer. */
int nb_atomic_write(const char *path, const void *buf, size_t len, unsigned mode, unsigned flags,
		    struct nb_fault *f, const char *label);
/* fsync of the directory that holds path. */
int nb_atomic_sync_dir(const char *path);

#endif
