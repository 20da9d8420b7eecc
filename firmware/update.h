/* nibble update: a signed image from a file or an https:// URL straight
 * into the inactive slot, then marked trial (firmware/slots.h).
 *
 *   1. the image is written to <slot>/model.nib.tmp (downloaded over TLS
 *      with the CA file given, hostname checked), fsynced;
 *   2. verified in full: a good signature by a trusted key, a valid image,
 *      compatible with this board and runtime ABI, newer than the committed
 *      version (anti-rollback) - else it is deleted and nothing changes;
 *   3. renamed to <slot>/model.nib, the directory fsynced;
 *   4. the state marks the slot trial (atomically);
 *   5. the switch command asks the service to restart on it.
 * A kill at any point leaves the committed slot and the state as they were
 * or the new trial complete; running the update again finishes it. */
#ifndef NB_UPDATE_H
#define NB_UPDATE_H

#include "firmware/fault.h"
#include "firmware/slots.h"
#include "firmware/trust.h"
#include "firmware/verify.h"

struct nb_update_opts {
	const char *slots_dir;
	const char *source;     /* a file, or an https:// URL */
	const char *ca_file;    /* CA certificates (PEM) the server must chain to */
	double timeout;         /* seconds the network may stall */
	const char *board;      /* this device's board family */
	const char *switch_cmd; /* asks the service to switch (sh -c), NULL or "": none */
	const struct nb_trust *trust;
	struct nb_fault *fault;
};

enum nb_update_outcome {
	NB_UPDATE_INSTALLED, /* on trial; the service was asked to switch */
	NB_UPDATE_CURRENT,   /* the same image is already committed or on trial */
};

int nb_update_install(const struct nb_update_opts *o, enum nb_update_outcome *outcome,
		      struct nb_verified *v);
/* Cancels a trial by hand (it never passed or failed its health check). */
int nb_update_cancel(const char *slots_dir);

#endif
