#include "firmware/update.h"
#include "firmware/atomic.h"
#include "firmware/https.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#define COPY_CHUNK (1u << 20)

extern char **environ;

struct sink {
	struct nb_atomic_file *file;
	struct nb_fault *fault;
	uint64_t written;
};

/* Bytes of the image as they arrive (file or network), into the slot. A
 * fault point after the first chunk: a kill mid-download. */
static int sink_write(void *arg, const void *buf, size_t len)
{
	struct sink *k = arg;
	int ret = nb_atomic_write_all(k->file, buf, len, NULL, "image");

	if (!ret && k->written == 0)
		nb_fault_point(k->fault, "image:partial");
	k->written += len;
	return ret;
}

static int copy_file(const char *src, struct sink *k)
{
	uint8_t *buf = malloc(COPY_CHUNK);
	int fd = open(src, O_RDONLY | O_CLOEXEC), ret = 0;
	ssize_t n;

	if (fd < 0 || !buf) {
		nb_err("update: %s: %s", src, fd < 0 ? strerror(errno) : "out of memory");
		ret = fd < 0 && errno == ENOENT ? -NB_ENOENT : -NB_EIO;
		goto out;
	}
	while (!ret && (n = read(fd, buf, COPY_CHUNK)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			nb_err("update: %s: read: %s", src, strerror(errno));
			ret = -NB_EIO;
			break;
		}
		ret = sink_write(k, buf, (size_t)n);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return ret;
}

static bool is_url(const char *s)
{
	return strncmp(s, "https://", 8) == 0;
}

/* Everything an installed image must be, beyond its signature. */
static int check_image(const struct nb_update_opts *o, const char *what,
		       const struct nb_verified *v)
{
	if (!v->compat[0]) {
		nb_err("%s: the manifest has no compatibility string (nibble sign --compatible)", what);
		return -NB_ENOTSUP;
	}
	if (!nb_manifest_compat_matches(v->compat, strlen(v->compat), o->board, NB_RUNTIME_ABI)) {
		nb_err("%s: made for \"%s\", not for this device (%s/%d)", what, v->compat, o->board,
		       NB_RUNTIME_ABI);
		return -NB_ENOTSUP;
	}
	return 0;
}

/* The slot an update writes: never the committed one. A trial nobody has
 * started yet is given up for the new image; one that is being tried
 * decides first. */
static int pick_slot(struct nb_slots *s, int *slot)
{
	int ret = nb_slots_lock(s);

	if (ret)
		return ret;
	*slot = s->st.committed == 0 ? 1 : 0;
	if (s->st.trial != NB_SLOT_NONE && s->st.trial_boots > 0) {
		nb_err("update: slot %c (version %llu) is on trial (%u starts): its health check "
		       "decides first (or: nibble update --cancel)",
		       nb_slots_name(s->st.trial), (unsigned long long)s->st.trial_version,
		       s->st.trial_boots);
		ret = -NB_EBUSY;
	} else if (s->st.trial != NB_SLOT_NONE) {
		s->st.trial = NB_SLOT_NONE;
		s->st.trial_boots = 0;
		memset(s->st.trial_digest, 0, NB_SIG_ID_LEN);
		ret = nb_slots_save(s, "trial of slot %c (version %llu) given up for a new update",
				    nb_slots_name(*slot), (unsigned long long)s->st.trial_version);
	}
	nb_slots_unlock(s);
	return ret;
}

static int fetch(const struct nb_update_opts *o, const char *dest, struct nb_atomic_file *a)
{
	struct sink k = { .file = a, .fault = o->fault };
	int ret = nb_atomic_open(a, dest, 0644);

	if (ret)
		return ret;
	if (is_url(o->source))
		ret = nb_https_get(&(struct nb_https_opts){ .url = o->source, .ca_file = o->ca_file,
							    .timeout = o->timeout },
				   sink_write, &k);
	else
		ret = copy_file(o->source, &k);
	if (!ret) {
		nb_fault_point(o->fault, "image:written");
		ret = nb_atomic_sync(a, o->fault, "image");
	}
	if (ret)
		nb_atomic_abort(a);
	return ret;
}

/* Under the state lock: the last checks against the state as it is now,
 * then the image into place and the slot on trial. */
static int install(const struct nb_update_opts *o, struct nb_slots *s, int slot,
		   struct nb_atomic_file *a, const struct nb_verified *v,
		   enum nb_update_outcome *outcome)
{
	const uint8_t *d = v->sig.digest;
	int ret = nb_slots_lock(s);

	if (ret)
		return ret;
	if (memcmp(d, s->st.committed_digest, NB_SIG_ID_LEN) == 0 ||
	    (s->st.trial != NB_SLOT_NONE && memcmp(d, s->st.trial_digest, NB_SIG_ID_LEN) == 0)) {
		nb_info("update: version %llu is already %s", (unsigned long long)v->model_version,
			s->st.trial != NB_SLOT_NONE ? "on trial" : "installed and committed");
		*outcome = NB_UPDATE_CURRENT;
		ret = 1;
	} else if (v->model_version <= s->st.committed_version) {
		nb_err("update: version %llu is not newer than the committed version %llu "
		       "(no downgrades)", (unsigned long long)v->model_version,
		       (unsigned long long)s->st.committed_version);
		ret = -NB_EPERM;
	} else if (s->st.committed == slot || s->st.trial != NB_SLOT_NONE) {
		nb_err("update: the slots changed during the download; run the update again");
		ret = -NB_EBUSY;
	}
	if (ret) {
		nb_slots_unlock(s);
		nb_atomic_abort(a);
		return ret > 0 ? 0 : ret;
	}
	ret = nb_atomic_rename(a, 0, o->fault, "image");
	if (!ret) {
		s->st.trial = slot;
		s->st.trial_version = v->model_version;
		memcpy(s->st.trial_digest, d, NB_SIG_ID_LEN);
		s->st.trial_boots = 0;
		ret = nb_slots_save(s, "installed version %llu in slot %c: on trial",
				    (unsigned long long)v->model_version, nb_slots_name(slot));
	}
	nb_slots_unlock(s);
	*outcome = NB_UPDATE_INSTALLED;
	return ret;
}

static int run_switch(const struct nb_update_opts *o)
{
	char *argv[] = { "/bin/sh", "-c", (char *)o->switch_cmd, NULL };
	pid_t pid;
	int status;

	nb_fault_point(o->fault, "switch");
	if (!o->switch_cmd || !o->switch_cmd[0]) {
		nb_info("update: no switch command: the new slot runs at the next service start");
		return 0;
	}
	if (posix_spawn(&pid, argv[0], NULL, NULL, argv, environ) != 0) {
		nb_err("update: cannot run the switch command: %s", strerror(errno));
		return -NB_EIO;
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -NB_EIO;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		/* The trial stays: the next start of the service tries it. */
		nb_err("update: the switch command '%s' failed (status %d); the new slot runs at "
		       "the next service start", o->switch_cmd, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		return -NB_EIO;
	}
	return 0;
}

static int lock_updates(const char *dir)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/update.lock", dir);
	fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0) {
		nb_err("update: %s: %s", path, strerror(errno));
		return -NB_EIO;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		nb_err("update: another update is running (%s)", path);
		close(fd);
		return -NB_EBUSY;
	}
	return fd;
}

int nb_update_install(const struct nb_update_opts *o, enum nb_update_outcome *outcome,
		      struct nb_verified *v)
{
	struct nb_atomic_file a;
	struct nb_slots s;
	char dest[PATH_MAX];
	int slot, lock_fd, ret;

	*outcome = NB_UPDATE_INSTALLED;
	ret = nb_slots_open(&s, o->slots_dir, true, o->fault);
	if (ret)
		return ret;
	lock_fd = lock_updates(o->slots_dir);
	if (lock_fd < 0) {
		nb_slots_close(&s);
		return lock_fd;
	}
	ret = pick_slot(&s, &slot);
	if (ret)
		goto out;
	nb_slots_image_path(&s, slot, dest, sizeof(dest));
	nb_info("update: %s -> slot %c", o->source, nb_slots_name(slot));
	ret = fetch(o, dest, &a);
	if (ret)
		goto out;
	ret = nb_verify_file(a.tmp, o->trust, v);
	if (!ret)
		ret = check_image(o, o->source, v);
	if (ret) {
		nb_atomic_abort(&a);
		goto out;
	}
	nb_fault_point(o->fault, "image:verified");
	ret = install(o, &s, slot, &a, v, outcome);
	if (!ret && *outcome == NB_UPDATE_INSTALLED)
		ret = run_switch(o);
out:
	if (ret)
		nb_err("update: %s: not installed (%s)", o->source, nb_strerror(ret));
	close(lock_fd);
	nb_slots_close(&s);
	return ret;
}

int nb_update_cancel(const char *slots_dir)
{
	struct nb_slots s;
	struct nb_boot b;
	int ret = nb_slots_open(&s, slots_dir, false, NULL);

	if (!ret)
		ret = nb_slots_lock(&s);
	if (ret) {
		nb_slots_close(&s);
		return ret;
	}
	if (s.st.trial == NB_SLOT_NONE) {
		nb_err("update: no slot is on trial");
		nb_slots_close(&s);
		return -NB_ENOENT;
	}
	b.slot = s.st.trial;
	b.version = s.st.trial_version;
	memcpy(b.digest, s.st.trial_digest, NB_SIG_ID_LEN);
	nb_slots_unlock(&s);
	ret = nb_slots_rollback(&s, &b, "cancelled by hand (nibble update --cancel)");
	nb_slots_close(&s);
	return ret;
}
