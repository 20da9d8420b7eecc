/* nibble serve --slots-dir: which A/B slot the server runs, and the health
 * check that commits a trial slot or rolls it back (firmware/slots.h).
 *
 * At start: a trial slot counts one more start (persistently, before its
 * image is even opened), then must load, carry a good signature by a
 * trusted key and the digest the update recorded, be compatible with this
 * board, reproduce its golden test vector exactly (deterministic kernels:
 * every board gets the same tokens) and run it fast enough, all within the
 * health timeout. Pass: the slot is committed. Fail: rolled back, and this
 * same start goes on with the committed slot. A crash or a hang never
 * reaches either: a watchdog rolls back on timeout and exits, and after
 * max_boots starts the next start rolls back (the service manager restarts
 * the server after a crash; see board/systemd/nibble.service). */
#ifndef NB_TRIAL_H
#define NB_TRIAL_H

#include <stddef.h>

struct nb_trial_opts {
	const char *slots_dir;
	double timeout;       /* seconds the health check may take */
	double max_ms;        /* slowest acceptable ms per token of the golden run */
	unsigned max_boots;   /* starts of a trial before it is a crash loop */
	unsigned image_flags; /* nb_image_open flags */
};

void nb_trial_opts_default(struct nb_trial_opts *o);
/* The image the server should load (path, cap bytes), after the health
 * check of a trial. 0, or negative when no slot can run. */
int nb_trial_start(const struct nb_trial_opts *o, char *path, size_t cap);

#endif
