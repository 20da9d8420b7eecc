#include "firmware/slots.h"
#include "firmware/atomic.h"
#include "firmware/image.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

#define STATE_MAGIC "nibble-slots 1"
#define MAX_STATE 4096

char nb_slots_name(int slot)
{
	return slot == 0 ? 'a' : slot == 1 ? 'b' : '-';
}

static int slot_of(const char *v)
{
	return strcmp(v, "a") == 0 ? 0 : strcmp(v, "b") == 0 ? 1 : strcmp(v, "-") == 0 ? NB_SLOT_NONE : -2;
}

void nb_slots_image_path(const struct nb_slots *s, int slot, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/%c/%s", s->dir, nb_slots_name(slot), NB_SLOTS_IMAGE);

	if (n < 0 || (size_t)n >= cap) /* nb_slots_open keeps dir short enough */
		out[0] = '\0';
}

static void empty_state(struct nb_slots_state *st)
{
	memset(st, 0, sizeof(*st));
	st->committed = st->trial = NB_SLOT_NONE;
}

/* Root's or ours, writable by no one else; root may use any such directory. */
static int check_dir(const char *dir)
{
	struct stat st;

	if (lstat(dir, &st) != 0) {
		nb_err("slots: %s: %s", dir, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (!S_ISDIR(st.st_mode) || (st.st_mode & (S_IWGRP | S_IWOTH)) ||
	    (st.st_uid != 0 && st.st_uid != geteuid() && geteuid() != 0)) {
		nb_err("slots: %s must be a directory of root's or ours that no one else may write",
		       dir);
		return -NB_EPERM;
	}
	return 0;
}

int nb_slots_open(struct nb_slots *s, const char *dir, bool create, struct nb_fault *fault)
{
	char path[PATH_MAX + 8];
	int ret;

	memset(s, 0, sizeof(*s));
	s->lock_fd = -1;
	s->fault = fault;
	empty_state(&s->st);
	if (strlen(dir) > sizeof(s->dir) - 64) {
		nb_err("slots: %s: path too long", dir);
		return -NB_EINVAL;
	}
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	if (create && mkdir(dir, 0755) != 0 && errno != EEXIST) {
		nb_err("slots: %s: %s", dir, strerror(errno));
		return -NB_EIO;
	}
	ret = check_dir(dir);
	if (ret)
		return ret;
	for (int i = 0; create && i < NB_SLOTS_N; i++) {
		snprintf(path, sizeof(path), "%s/%c", dir, nb_slots_name(i));
		if (mkdir(path, 0755) != 0 && errno != EEXIST) {
			nb_err("slots: %s: %s", path, strerror(errno));
			return -NB_EIO;
		}
	}
	snprintf(path, sizeof(path), "%s/lock", dir);
	/* Read-only is enough for flock, and lets a service user lock a file root created. */
	s->lock_fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (s->lock_fd < 0) {
		nb_err("slots: %s: %s", path, strerror(errno));
		return -NB_EIO;
	}
	return 0;
}

void nb_slots_close(struct nb_slots *s)
{
	nb_slots_unlock(s);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	s->lock_fd = -1;
}

static int hex_digest(const char *v, uint8_t out[NB_SIG_ID_LEN])
{
	if (strlen(v) != 2 * NB_SIG_ID_LEN)
		return -NB_EFORMAT;
	for (unsigned i = 0; i < NB_SIG_ID_LEN; i++) {
		unsigned b;
		if (sscanf(v + 2 * i, "%2x", &b) != 1)
			return -NB_EFORMAT;
		out[i] = (uint8_t)b;
	}
	return 0;
}

static void digest_hex(const uint8_t d[NB_SIG_ID_LEN], char out[2 * NB_SIG_ID_LEN + 1])
{
	for (unsigned i = 0; i < NB_SIG_ID_LEN; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int parse_u64(const char *v, uint64_t *out)
{
	char *end;

	if (*v < '0' || *v > '9')
		return -NB_EFORMAT;
	errno = 0;
	*out = strtoull(v, &end, 10);
	return *end || errno ? -NB_EFORMAT : 0;
}

static int parse_line(struct nb_slots_state *st, const char *key, const char *v)
{
	uint64_t n;
	char *end;

	if (strcmp(key, "committed") == 0)
		return (st->committed = slot_of(v)) == -2 ? -NB_EFORMAT : 0;
	if (strcmp(key, "trial") == 0)
		return (st->trial = slot_of(v)) == -2 ? -NB_EFORMAT : 0;
	if (strcmp(key, "committed-version") == 0)
		return parse_u64(v, &st->committed_version);
	if (strcmp(key, "trial-version") == 0)
		return parse_u64(v, &st->trial_version);
	if (strcmp(key, "committed-digest") == 0)
		return hex_digest(v, st->committed_digest);
	if (strcmp(key, "trial-digest") == 0)
		return hex_digest(v, st->trial_digest);
	if (strcmp(key, "trial-boots") == 0) {
		if (parse_u64(v, &n) || n > 1000000)
			return -NB_EFORMAT;
		st->trial_boots = (unsigned)n;
		return 0;
	}
	if (strcmp(key, "committed-ms-per-token") == 0) {
		st->committed_ms = strtod(v, &end);
		return *end || !(st->committed_ms >= 0) ? -NB_EFORMAT : 0;
	}
	if (strcmp(key, "last-time") == 0)
		return parse_u64(v, &n) ? -NB_EFORMAT : (st->last_time = (int64_t)n, 0);
	if (strcmp(key, "last") == 0) {
		snprintf(st->last, sizeof(st->last), "%s", v);
		return 0;
	}
	return -NB_EFORMAT;
}

static int parse_state(struct nb_slots_state *st, char *text)
{
	char *line, *save = NULL;
	bool first = true;

	empty_state(st);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *sp = strchr(line, ' ');

		if (first) {
			if (strcmp(line, STATE_MAGIC) != 0)
				return -NB_EFORMAT;
			first = false;
			continue;
		}
		if (!sp)
			return -NB_EFORMAT;
		*sp = '\0';
		if (parse_line(st, line, sp + 1))
			return -NB_EFORMAT;
	}
	if (first || (st->committed != NB_SLOT_NONE && st->committed == st->trial))
		return -NB_EFORMAT;
	return 0;
}

static int read_state(struct nb_slots *s)
{
	char path[PATH_MAX + 8], text[MAX_STATE + 1];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/state", s->dir);
	empty_state(&s->st);
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0) {
		nb_err("slots: %s: %s", path, strerror(errno));
		return -NB_EIO;
	}
	n = read(fd, text, MAX_STATE);
	close(fd);
	if (n < 0 || n == MAX_STATE) {
		nb_err("slots: %s: cannot read it", path);
		return -NB_EIO;
	}
	text[n] = '\0';
	if (parse_state(&s->st, text)) {
		nb_err("slots: %s is damaged; refusing to guess which slot is good", path);
		return -NB_EFORMAT;
	}
	return 0;
}

int nb_slots_lock(struct nb_slots *s)
{
	int ret;

	while (flock(s->lock_fd, LOCK_EX) != 0) {
		if (errno != EINTR) {
			nb_err("slots: lock: %s", strerror(errno));
			return -NB_EIO;
		}
	}
	s->locked = true;
	ret = read_state(s);
	if (ret)
		nb_slots_unlock(s);
	return ret;
}

void nb_slots_unlock(struct nb_slots *s)
{
	if (s->locked)
		flock(s->lock_fd, LOCK_UN);
	s->locked = false;
}

static int format_state(const struct nb_slots_state *st, char *out, size_t cap)
{
	char cd[2 * NB_SIG_ID_LEN + 1], td[2 * NB_SIG_ID_LEN + 1];

	digest_hex(st->committed_digest, cd);
	digest_hex(st->trial_digest, td);
	return snprintf(out, cap,
			STATE_MAGIC "\n"
			"committed %c\ncommitted-version %llu\ncommitted-digest %s\n"
			"committed-ms-per-token %.3f\n"
			"trial %c\ntrial-version %llu\ntrial-digest %s\ntrial-boots %u\n"
			"last-time %lld\nlast %s\n",
			nb_slots_name(st->committed), (unsigned long long)st->committed_version, cd,
			st->committed_ms, nb_slots_name(st->trial),
			(unsigned long long)st->trial_version, td, st->trial_boots,
			(long long)st->last_time, st->last);
}

int nb_slots_save(struct nb_slots *s, const char *event, ...)
{
	char path[PATH_MAX + 8], text[MAX_STATE];
	va_list ap;
	int n;

	if (!s->locked)
		return -NB_EINVAL;
	va_start(ap, event);
	vsnprintf(s->st.last, sizeof(s->st.last), event, ap);
	va_end(ap);
	for (char *p = s->st.last; *p; p++)
		if (*p == '\n')
			*p = ' ';
	s->st.last_time = (int64_t)time(NULL);
	n = format_state(&s->st, text, sizeof(text));
	if (n < 0 || (size_t)n >= sizeof(text))
		return -NB_ERANGE;
	snprintf(path, sizeof(path), "%s/state", s->dir);
	return nb_atomic_write(path, text, (size_t)n, 0644, 0, s->fault, "state");
}

static void boot_of(const struct nb_slots *s, int slot, bool trial, struct nb_boot *b)
{
	b->slot = slot;
	b->trial = trial;
	b->version = trial ? s->st.trial_version : s->st.committed_version;
	memcpy(b->digest, trial ? s->st.trial_digest : s->st.committed_digest, NB_SIG_ID_LEN);
	nb_slots_image_path(s, slot, b->path, sizeof(b->path));
}

static int clear_trial(struct nb_slots *s, const char *reason)
{
	int slot = s->st.trial;
	uint64_t v = s->st.trial_version;

	s->st.trial = NB_SLOT_NONE;
	s->st.trial_version = 0;
	s->st.trial_boots = 0;
	memset(s->st.trial_digest, 0, NB_SIG_ID_LEN);
	return nb_slots_save(s, "rolled back slot %c (version %llu): %s", nb_slots_name(slot),
			     (unsigned long long)v, reason);
}

int nb_slots_boot(struct nb_slots *s, unsigned max_boots, struct nb_boot *b)
{
	char reason[96];
	int ret = nb_slots_lock(s);

	memset(b, 0, sizeof(*b));
	b->slot = NB_SLOT_NONE;
	if (ret)
		return ret;
	if (s->st.trial != NB_SLOT_NONE && s->st.trial_boots >= max_boots) {
		snprintf(reason, sizeof(reason), "crash loop: %u starts without a passing health check",
			 s->st.trial_boots);
		nb_err("slots: rolling back slot %c (version %llu): %s", nb_slots_name(s->st.trial),
		       (unsigned long long)s->st.trial_version, reason);
		ret = clear_trial(s, reason);
	}
	if (!ret && s->st.trial != NB_SLOT_NONE) {
		s->st.trial_boots++;
		ret = nb_slots_save(s, "slot %c (version %llu) on trial: start %u of %u",
				    nb_slots_name(s->st.trial), (unsigned long long)s->st.trial_version,
				    s->st.trial_boots, max_boots);
		if (!ret)
			boot_of(s, s->st.trial, true, b);
	} else if (!ret && s->st.committed != NB_SLOT_NONE) {
		boot_of(s, s->st.committed, false, b);
	} else if (!ret) {
		nb_err("slots: %s holds no committed model (install one with nibble update)", s->dir);
		ret = -NB_ENOENT;
	}
	nb_slots_unlock(s);
	return ret;
}

static bool still_on_trial(const struct nb_slots *s, const struct nb_boot *b)
{
	return s->st.trial == b->slot && s->st.trial_version == b->version &&
	       memcmp(s->st.trial_digest, b->digest, NB_SIG_ID_LEN) == 0;
}

int nb_slots_commit(struct nb_slots *s, const struct nb_boot *b, double ms)
{
	int ret = nb_slots_lock(s);

	if (ret)
		return ret;
	if (!still_on_trial(s, b)) {
		nb_err("slots: slot %c is no longer on trial (replaced by an update?): not committed",
		       nb_slots_name(b->slot));
		nb_slots_unlock(s);
		return -NB_EBUSY;
	}
	s->st.committed = b->slot;
	if (b->version > s->st.committed_version)
		s->st.committed_version = b->version;
	memcpy(s->st.committed_digest, b->digest, NB_SIG_ID_LEN);
	s->st.committed_ms = ms;
	s->st.trial = NB_SLOT_NONE;
	s->st.trial_version = 0;
	s->st.trial_boots = 0;
	memset(s->st.trial_digest, 0, NB_SIG_ID_LEN);
	ret = nb_slots_save(s, "committed slot %c (version %llu): health check passed, %.2f ms per token",
			    nb_slots_name(b->slot), (unsigned long long)b->version, ms);
	nb_slots_unlock(s);
	return ret;
}

int nb_slots_rollback(struct nb_slots *s, const struct nb_boot *b, const char *reason)
{
	int ret = nb_slots_lock(s);

	if (ret)
		return ret;
	if (still_on_trial(s, b))
		ret = clear_trial(s, reason);
	nb_slots_unlock(s);
	return ret;
}

int nb_slots_check_image(const struct nb_boot *b)
{
	struct nb_sig_statement st;
	uint8_t d[NB_SIG_ID_LEN];
	struct stat sb;
	int fd = open(b->path, O_RDONLY | O_CLOEXEC), ok = 0;

	if (fd >= 0 && fstat(fd, &sb) == 0 && sb.st_size >= NB_IMAGE_TRAILER_SIZE &&
	    pread(fd, &st, sizeof(st), sb.st_size - NB_IMAGE_TRAILER_SIZE) == (ssize_t)sizeof(st))
		ok = mbedtls_sha256_ret((const void *)&st, sizeof(st), d, 0) == 0 &&
		     memcmp(d, b->digest, NB_SIG_ID_LEN) == 0;
	if (fd >= 0)
		close(fd);
	if (!ok) {
		nb_err("slots: %s is not the image committed to slot %c (version %llu): refusing it",
		       b->path, nb_slots_name(b->slot), (unsigned long long)b->version);
		return -NB_ESIG;
	}
	return 0;
}

/* ---- status -------------------------------------------------------------- */

static void print_slot(const struct nb_slots *s, int slot, unsigned max_boots)
{
	char path[PATH_MAX], id[17] = "unsigned", role[48] = "inactive";
	const struct nb_slots_state *st = &s->st;
	struct nb_image img;
	const char *name;
	size_t len;
	int saved = nb_log_get_level();

	if (st->committed == slot)
		snprintf(role, sizeof(role), "committed");
	else if (st->trial == slot)
		snprintf(role, sizeof(role), "trial (%u of %u starts)", st->trial_boots, max_boots);
	nb_slots_image_path(s, slot, path, sizeof(path));
	if (access(path, F_OK) != 0) {
		printf("  %c  %-22s empty\n", nb_slots_name(slot), role);
		return;
	}
	nb_log_set_level(NB_LOG_SILENT);
	if (nb_image_open(&img, path, 0) != 0) {
		nb_log_set_level(saved);
		printf("  %c  %-22s %s: not a valid image\n", nb_slots_name(slot), role, path);
		return;
	}
	nb_log_set_level(saved);
	if (nb_image_meta(&img, "name", &name, &len) != 0)
		name = "?", len = 1;
	{
		struct nb_sig_statement sst;
		memcpy(&sst, img.trailer, sizeof(sst));
		if (memcmp(sst.magic, NB_TRAILER_MAGIC, 8) == 0)
			nb_sig_id_short(sst.key_id, id);
	}
	printf("  %c  %-22s version %-6llu %-20.*s key %s\n", nb_slots_name(slot), role,
	       (unsigned long long)img.hdr->model_version, (int)(len < 20 ? len : 20), name, id);
	nb_image_close(&img);
}

void nb_slots_print(struct nb_slots *s, unsigned max_boots)
{
	char when[32] = "";
	time_t t = (time_t)s->st.last_time;
	struct tm tm;

	printf("slots %s\n", s->dir);
	for (int i = 0; i < NB_SLOTS_N; i++)
		print_slot(s, i, max_boots);
	printf("anti-rollback: only versions above %llu install\n",
	       (unsigned long long)s->st.committed_version);
	if (s->st.committed != NB_SLOT_NONE && s->st.committed_ms > 0)
		printf("health: %.2f ms per token (committed image)\n", s->st.committed_ms);
	if (s->st.last[0]) {
		if (localtime_r(&t, &tm))
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		printf("last: %s  %s\n", when, s->st.last);
	}
}
