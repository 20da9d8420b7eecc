/* Fault injection for crash-safety tests. Code that changes on-disk state
 * passes a named point between every write, fsync and rename; with
 * NIBBLE_FAULT set, the process SIGKILLs itself at one of them:
 *     NIBBLE_FAULT=7            at the 7th point reached
 *     NIBBLE_FAULT=state:rename at the first point of that name
 *     NIBBLE_FAULT=hang:NAME    hangs there instead (a stuck process)
 *     NIBBLE_FAULT=list         never; names each point on stderr
 * Unset (production), a point costs one comparison. */
#ifndef NB_FAULT_H
#define NB_FAULT_H

#include <stdbool.h>

struct nb_fault {
	const char *target; /* NIBBLE_FAULT, or NULL */
	unsigned step;      /* points reached so far */
};

void nb_fault_init(struct nb_fault *f);
/* f may be NULL (no injection). */
void nb_fault_point(struct nb_fault *f, const char *name);

#endif
