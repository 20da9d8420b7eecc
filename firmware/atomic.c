#include "firmware/atomic.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void point(struct nb_fault *f, const char *label, const char *step)
{
	char name[96];

	snprintf(name, sizeof(name), "%s:%s", label, step);
	nb_fault_point(f, name);
}

int nb_atomic_sync_dir(const char *path)
{
	char dir[PATH_MAX];
	int fd, ret = 0;

	snprintf(dir, sizeof(dir), "%s", path);
	fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) != 0) {
		nb_err("%s: fsync of its directory: %s", path, strerror(errno));
		ret = -NB_EIO;
	}
	if (fd >= 0)
		close(fd);
	return ret;
}

int nb_atomic_open(struct nb_atomic_file *a, const char *path, unsigned mode)
{
	a->fd = -1;
	if (snprintf(a->path, sizeof(a->path), "%s", path) >= (int)sizeof(a->path) ||
	    snprintf(a->tmp, sizeof(a->tmp), "%s.tmp", path) >= (int)sizeof(a->tmp)) {
		nb_err("%s: path too long", path);
		return -NB_EINVAL;
	}
	/* A temporary file left by a killed run is simply replaced. */
	unlink(a->tmp);
	a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (a->fd < 0) {
		nb_err("%s: %s", a->tmp, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	/* The umask must not loosen or tighten what the caller asked for. */
	if (fchmod(a->fd, mode) != 0) {
		nb_err("%s: chmod: %s", a->tmp, strerror(errno));
		nb_atomic_abort(a);
		return -NB_EIO;
	}
	return 0;
}

int nb_atomic_write_all(struct nb_atomic_file *a, const void *buf, size_t len,
			struct nb_fault *f, const char *label)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(a->fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			nb_err("%s: write: %s", a->tmp, n < 0 ? strerror(errno) : "no progress");
			return -NB_EIO;
		}
		p += n;
		len -= (size_t)n;
	}
	point(f, label, "write");
	return 0;
}

int nb_atomic_sync(struct nb_atomic_file *a, struct nb_fault *f, const char *label)
{
	int fd = a->fd;

	a->fd = -1;
	if (fsync(fd) != 0) {
		nb_err("%s: fsync: %s", a->tmp, strerror(errno));
		close(fd);
		return -NB_EIO;
	}
	point(f, label, "fsync");
	if (close(fd) != 0) {
		nb_err("%s: close: %s", a->tmp, strerror(errno));
		return -NB_EIO;
	}
	return 0;
}

int nb_atomic_rename(struct nb_atomic_file *a, unsigned flags, struct nb_fault *f,
		     const char *label)
{
	if (flags & NB_ATOMIC_NOREPLACE) {
		/* link() fails if the target exists: no window where it is replaced. */
		if (link(a->tmp, a->path) != 0) {
			int e = errno;
			nb_err("%s: %s", a->path, e == EEXIST ? "exists (not replaced)" : strerror(e));
			unlink(a->tmp);
			return e == EEXIST ? -NB_EBUSY : -NB_EIO;
		}
		unlink(a->tmp);
	} else if (rename(a->tmp, a->path) != 0) {
		nb_err("%s: rename: %s", a->path, strerror(errno));
		unlink(a->tmp);
		return -NB_EIO;
	}
	point(f, label, "rename");
	if (nb_atomic_sync_dir(a->path))
		return -NB_EIO;
	point(f, label, "dirsync");
	return 0;
}

void nb_atomic_abort(struct nb_atomic_file *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	unlink(a->tmp);
}

int nb_atomic_write(const char *path, const void *buf, size_t len, unsigned mode, unsigned flags,
		    struct nb_fault *f, const char *label)
{
	struct nb_atomic_file a;
	int ret = nb_atomic_open(&a, path, mode);

	if (ret)
		return ret;
	ret = nb_atomic_write_all(&a, buf, len, f, label);
	if (!ret)
		ret = nb_atomic_sync(&a, f, label);
	if (ret) {
		nb_atomic_abort(&a);
		return ret;
	}
	return nb_atomic_rename(&a, flags, f, label);
}
