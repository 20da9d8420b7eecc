/* A/B model slots: two directories (DIR/a, DIR/b) each holding one image
 * (model.nib), and one state file (DIR/state) saying which slot is
 * committed, which one is on trial, how often the trial was started, and
 * the anti-rollback floor (the highest version ever committed; an update
 * must be newer). The state file is replaced atomically (firmware/atomic.h),
 * read and changed only under flock(DIR/lock). See docs/updates.md.
 *
 * Life of an update: nibble update writes the inactive slot and marks it
 * trial (nb_update_install, firmware/update.h); the service starts, and
 * nb_slots_boot hands it the trial slot after counting one more start;
 * the health check passes (nb_slots_commit) or fails (nb_slots_rollback);
 * a trial started max_boots times without either is rolled back at the
 * next start (a crash loop). */
#ifndef NB_SLOTS_H
#define NB_SLOTS_H

#include "firmware/fault.h"
#include "firmware/sig.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#define NB_SLOT_NONE (-1)
#define NB_SLOTS_N 2
#define NB_SLOTS_IMAGE "model.nib"

struct nb_slots_state {
	int committed;                    /* slot index, or NB_SLOT_NONE */
	uint64_t committed_version;       /* anti-rollback floor */
	uint8_t committed_digest[NB_SIG_ID_LEN];
	double committed_ms;              /* its health check: ms per token */
	int trial;                        /* slot index, or NB_SLOT_NONE */
	uint64_t trial_version;
	uint8_t trial_digest[NB_SIG_ID_LEN];
	unsigned trial_boots;             /* starts on the trial so far */
	int64_t last_time;                /* unix time of the last event */
	char last[256];                   /* the last event, one line */
};

struct nb_slots {
	char dir[PATH_MAX];
	int lock_fd;
	bool locked;
	struct nb_fault *fault; /* fault points of state writes, or NULL */
	struct nb_slots_state st;
};

/* What the service should run. */
struct nb_boot {
	int slot; /* NB_SLOT_NONE: nothing installed */
	bool trial;
	uint64_t version;
	uint8_t digest[NB_SIG_ID_LEN];
	char path[PATH_MAX];
};

/* Opens DIR (which must belong to root or to us and be writable by no one
 * else; with create, DIR/a and DIR/b are made). Nothing is locked yet. */
int nb_slots_open(struct nb_slots *s, const char *dir, bool create, struct nb_fault *fault);
void nb_slots_close(struct nb_slots *s);
/* flock(DIR/lock) + read the state (absent: nothing installed). A damaged
 * state file is an error, never taken for an empty one. */
int nb_slots_lock(struct nb_slots *s);
void nb_slots_unlock(struct nb_slots *s);
/* Writes the state (under the lock), atomically, fault points "state:*". */
int nb_slots_save(struct nb_slots *s, const char *event, ...) __attribute__((format(printf, 2, 3)));

char nb_slots_name(int slot); /* 'a', 'b' or '-' */
void nb_slots_image_path(const struct nb_slots *s, int slot, char *out, size_t cap);

/* At service start: the trial (counting this start) or the committed slot;
 * a trial already started max_boots times is rolled back first. */
int nb_slots_boot(struct nb_slots *s, unsigned max_boots, struct nb_boot *b);
/* The trial b passed its health check (ms per token): it becomes the
 * committed slot and its version the anti-rollback floor. -NB_EBUSY if the
 * state no longer has b on trial (an update replaced it). */
int nb_slots_commit(struct nb_slots *s, const struct nb_boot *b, double ms);
/* The trial b failed: back to the committed slot, reason recorded. */
int nb_slots_rollback(struct nb_slots *s, const struct nb_boot *b, const char *reason);

/* Whether b.path still holds the image the state recorded (the SHA-256 of
 * its signed statement equals b.digest): a committed slot whose file was
 * replaced, even by another validly signed image (an older one: a
 * downgrade), is refused with -NB_ESIG. Cheap: reads the trailer only; the
 * loader then checks the signature. */
int nb_slots_check_image(const struct nb_boot *b);

/* nibble update --status. */
void nb_slots_print(struct nb_slots *s, unsigned max_boots);

#endif
