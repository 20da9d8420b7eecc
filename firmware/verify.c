#include "firmware/verify.h"
#include "firmware/atomic.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

static void meta_copy(const struct nb_image *img, const char *key, char *out, size_t cap)
{
	const char *v;
	size_t len;

	if (nb_image_meta(img, key, &v, &len) != 0)
		len = 0;
	snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), len ? v : "");
}

int nb_verify_file(const char *path, const struct nb_trust *t, struct nb_verified *out)
{
	struct nb_sig_info *info = &out->sig;
	struct nb_image img;
	struct stat st;
	void *map = MAP_FAILED;
	int fd, ret;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		nb_err("%s: not a regular file", path);
		ret = -NB_EIO;
		goto out;
	}
	if (st.st_size < 2 * NB_IMAGE_TRAILER_SIZE) {
		nb_err("%s: %lld bytes is too short for a signed image", path, (long long)st.st_size);
		ret = -NB_ESIG;
		goto out;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		nb_err("%s: mmap: %s", path, strerror(errno));
		ret = -NB_EIO;
		goto out;
	}
	madvise(map, (size_t)st.st_size, MADV_SEQUENTIAL);
	ret = nb_sig_verify(map, (size_t)st.st_size, t, 0, path, info);
	if (ret && !info->is_signed)
		nb_err("%s: the image is not signed", path);
	if (ret)
		goto out;
	/* Signed by a trusted key, so the signer vouches for it; still, only a
	 * valid image is worth installing. */
	ret = nb_image_open_mem(&img, map, (size_t)st.st_size);
	if (ret) {
		nb_err("%s: signed, but not a valid model image (%s)", path, nb_strerror(ret));
		goto out;
	}
	out->model_version = img.hdr->model_version;
	meta_copy(&img, "name", out->name, sizeof(out->name));
	meta_copy(&img, NB_MANIFEST_COMPAT_KEY, out->compat, sizeof(out->compat));
	nb_image_close(&img);
out:
	if (map != MAP_FAILED)
		munmap(map, (size_t)st.st_size);
	close(fd);
	return ret;
}

/* ---- per-boot records --------------------------------------------------- */

struct identity {
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
	char boot_id[40];
	uint8_t digest[NB_SIG_ID_LEN];
};

static int read_boot_id(char out[40])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n;

	memset(out, 0, 40);
	if (fd < 0)
		return -NB_ENOENT;
	n = read(fd, out, 39);
	close(fd);
	return n >= 32 ? 0 : -NB_EIO;
}

/* Owned by us or root, and writable by no one else: a record there was
 * written by a process as trusted as this one. */
static bool safe_entry(const struct stat *st)
{
	return (st->st_uid == 0 || st->st_uid == geteuid()) && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

static int record_dir_ok(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return -NB_ENOENT;
	if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || !safe_entry(&st)) {
		nb_warn("%s: not used for verification records: it must be a directory of root's "
			"or ours that no one else may write", dir);
		return -NB_EPERM;
	}
	/* Another user's directory: readable records, but none of ours. */
	return access(dir, W_OK) == 0 ? 0 : -NB_EPERM;
}

/* File times come from the kernel's coarse clock: a change within the same
 * tick as the last one leaves ctime as it was. A file changed in the
 * current tick is therefore not recorded (git's "racily clean" problem). */
static bool settled(const struct stat *st)
{
	struct timespec now;

	if (clock_gettime(CLOCK_REALTIME_COARSE, &now) != 0)
		return false;
	return st->st_ctim.tv_sec < now.tv_sec ||
	       (st->st_ctim.tv_sec == now.tv_sec && st->st_ctim.tv_nsec < now.tv_nsec);
}

/* The record's path for this file as it is now (st); -NB_ENOENT without one. */
static int record_path(const struct stat *st, const struct nb_trust *t,
		       const uint8_t digest[NB_SIG_ID_LEN], char *path, size_t cap)
{
	struct identity id;
	uint8_t h[NB_SIG_ID_LEN];
	char hex[2 * NB_SIG_ID_LEN + 1];

	if (!t->record_dir)
		return -NB_ENOENT;
	memset(&id, 0, sizeof(id));
	if (read_boot_id(id.boot_id))
		return -NB_ENOENT;
	id.dev = st->st_dev;
	id.ino = st->st_ino;
	id.size = (uint64_t)st->st_size;
	id.mtime_s = st->st_mtim.tv_sec;
	id.mtime_ns = st->st_mtim.tv_nsec;
	id.ctime_s = st->st_ctim.tv_sec;
	id.ctime_ns = st->st_ctim.tv_nsec;
	memcpy(id.digest, digest, NB_SIG_ID_LEN);
	if (mbedtls_sha256_ret((const void *)&id, sizeof(id), h, 0))
		return -NB_EIO;
	for (unsigned i = 0; i < NB_SIG_ID_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", h[i]);
	return snprintf(path, cap, "%s/%s", t->record_dir, hex) < (int)cap ? 0 : -NB_ERANGE;
}

static bool record_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISREG(st.st_mode) && safe_entry(&st);
}

/* The statement's digest, as a lookup key, before any hashing: a file
 * whose trailer is not even well-formed has no record. */
static int statement_digest(const struct nb_image *img, uint8_t out[NB_SIG_ID_LEN])
{
	struct nb_sig_statement st;

	if (img->map_size < NB_IMAGE_TRAILER_SIZE)
		return -NB_ERANGE;
	memcpy(&st, img->map + img->map_size - NB_IMAGE_TRAILER_SIZE, sizeof(st));
	if (memcmp(st.magic, NB_TRAILER_MAGIC, 8) != 0)
		return -NB_ENOENT;
	return mbedtls_sha256_ret((const void *)&st, sizeof(st), out, 0) ? -NB_EIO : 0;
}

int nb_verify_image(const struct nb_image *img, const char *path, const struct nb_trust *t,
		    struct nb_sig_info *info)
{
	char rec[PATH_MAX];
	uint8_t digest[NB_SIG_ID_LEN];
	struct stat before, after;
	bool have_path, recorded;
	int ret;

	/* The record's name is taken before hashing: a write during the hash
	 * changes ctime, and the record then names a file that no longer is. */
	have_path = img->fd >= 0 && fstat(img->fd, &before) == 0 &&
		    statement_digest(img, digest) == 0 &&
		    record_path(&before, t, digest, rec, sizeof(rec)) == 0;
	recorded = have_path && record_exists(rec);
	ret = nb_sig_verify(img->map, img->map_size, t, recorded ? NB_SIG_RECORDED : 0, path, info);
	if (ret && !info->is_signed) {
		if (t->require_signature) {
			nb_err("%s: refusing an unsigned image (this build requires signed images)",
			       path);
			return -NB_ESIG;
		}
		if (IS_ENABLED(CONFIG_IMAGE_REQUIRE_SIGNATURE))
			nb_warn("UNSIGNED IMAGE ALLOWED for this run only: %s is not signed", path);
		else
			nb_warn("UNSIGNED IMAGES ALLOWED (development build): %s is not signed", path);
		ret = 0;
	}
	if (ret)
		return ret;
	ret = nb_manifest_check_compat(img, path, NULL, false);
	if (ret != -NB_ENOENT && ret != 0)
		return ret;
	if (!info->is_signed)
		return 0;
	if (recorded)
		nb_dbg("%s: tensor data verified earlier in this boot", path);
	else if (have_path && fstat(img->fd, &after) == 0 && settled(&after) &&
		 after.st_ctim.tv_sec == before.st_ctim.tv_sec &&
		 after.st_ctim.tv_nsec == before.st_ctim.tv_nsec && record_dir_ok(t->record_dir) == 0)
		nb_atomic_write(rec, "verified\n", 9, 0600, 0, NULL, "record");
	return 0;
}
