#include "firmware/trust.h"
#include "generated/trusted_keys.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>

#define PEM_BEGIN "-----BEGIN PUBLIC KEY-----"
#define PEM_END "-----END PUBLIC KEY-----"
#define MAX_KEY_FILE 16384

void nb_trust_init(struct nb_trust *t)
{
	memset(t, 0, sizeof(*t));
	t->threads = 1;
}

void nb_trust_free(struct nb_trust *t)
{
	for (unsigned i = 0; i < t->n_keys; i++) {
		mbedtls_pk_free(t->keys[i].pk);
		free(t->keys[i].pk);
	}
	nb_trust_init(t);
}

static bool is_p256(const mbedtls_pk_context *pk)
{
	return mbedtls_pk_get_type(pk) == MBEDTLS_PK_ECKEY &&
	       mbedtls_pk_ec(*pk)->grp.id == MBEDTLS_ECP_DP_SECP256R1;
}

/* One PEM block (NUL-terminated, as mbedTLS wants it). */
static int add_block(struct nb_trust *t, const char *pem, const char *origin)
{
	struct nb_trust_key *k = &t->keys[t->n_keys];
	mbedtls_pk_context *pk;

	if (t->n_keys == NB_TRUST_MAX_KEYS) {
		nb_err("trusted keys: more than %u (%s)", NB_TRUST_MAX_KEYS, origin);
		return -NB_ERANGE;
	}
	pk = malloc(sizeof(*pk));
	if (!pk)
		return -NB_ENOMEM;
	mbedtls_pk_init(pk);
	if (mbedtls_pk_parse_public_key(pk, (const unsigned char *)pem, strlen(pem) + 1) != 0 ||
	    !is_p256(pk) || nb_sig_key_id(pk, k->id) != 0) {
		nb_err("%s: not an ECDSA P-256 public key", origin);
		mbedtls_pk_free(pk);
		free(pk);
		return -NB_EFORMAT;
	}
	/* The same key twice (built in and in the directory) counts once. */
	if (nb_trust_find(t, k->id)) {
		mbedtls_pk_free(pk);
		free(pk);
		return 0;
	}
	k->pk = pk;
	snprintf(k->origin, sizeof(k->origin), "%s", origin);
	t->n_keys++;
	return 0;
}

int nb_trust_add_pem(struct nb_trust *t, const char *pem, size_t len, const char *origin)
{
	const char *p = pem, *end = pem + len;
	int n = 0;

	while (p < end) {
		const char *b = memmem(p, (size_t)(end - p), PEM_BEGIN, strlen(PEM_BEGIN));
		const char *e = b ? memmem(b, (size_t)(end - b), PEM_END, strlen(PEM_END)) : NULL;
		char *block;
		int ret;

		if (!b)
			break;
		if (!e) {
			nb_err("%s: unterminated PEM block", origin);
			return -NB_EFORMAT;
		}
		e += strlen(PEM_END);
		block = strndup(b, (size_t)(e - b));
		if (!block)
			return -NB_ENOMEM;
		ret = add_block(t, block, origin);
		free(block);
		if (ret)
			return ret;
		n++;
		p = e;
	}
	if (n == 0) {
		nb_err("%s: no \"PUBLIC KEY\" PEM block", origin);
		return -NB_EFORMAT;
	}
	return 0;
}

/* Root's, and writable by no one else: what a trust anchor must be. */
static bool safe_owner(const struct stat *st)
{
	return st->st_uid == 0 && !(st->st_mode & (S_IWGRP | S_IWOTH));
}

int nb_trust_add_file(struct nb_trust *t, const char *path, bool check_owner)
{
	char buf[MAX_KEY_FILE + 1];
	const char *base = strrchr(path, '/');
	struct stat st;
	ssize_t n;
	int fd, ret;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (check_owner && !safe_owner(&st))) {
		nb_warn("%s: ignored: a trusted key must be a regular file of root's that "
			"no one else may write", path);
		close(fd);
		return -NB_EPERM;
	}
	n = read(fd, buf, MAX_KEY_FILE);
	close(fd);
	if (n < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return -NB_EIO;
	}
	buf[n] = '\0';
	ret = nb_trust_add_pem(t, buf, (size_t)n, base ? base + 1 : path);
	return ret;
}

static bool is_key_name(const char *name)
{
	size_t n = strlen(name), s = strlen(".pub.pem");
	return name[0] != '.' && n > s && strcmp(name + n - s, ".pub.pem") == 0;
}

int nb_trust_add_dir(struct nb_trust *t, const char *dir)
{
	struct dirent *e;
	struct stat st;
	DIR *d;
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	if (fstat(fd, &st) != 0 || !safe_owner(&st)) {
		nb_warn("%s: ignored: the trusted key directory must belong to root and be "
			"writable by no one else", dir);
		close(fd);
		return -NB_EPERM;
	}
	d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -NB_EIO;
	}
	while ((e = readdir(d)) != NULL) {
		char path[PATH_MAX];

		if (!is_key_name(e->d_name))
			continue;
		if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
			continue;
		/* A bad key file costs that key, not the others. */
		if (nb_trust_add_file(t, path, true) == -NB_ERANGE)
			break;
	}
	closedir(d);
	return 0;
}

const struct nb_trust_key *nb_trust_find(const struct nb_trust *t, const uint8_t id[NB_SIG_ID_LEN])
{
	for (unsigned i = 0; i < t->n_keys; i++)
		if (memcmp(t->keys[i].id, id, NB_SIG_ID_LEN) == 0)
			return &t->keys[i];
	return NULL;
}

static const char *env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v ? v : fallback;
}

int nb_trust_default(struct nb_trust *t)
{
	const char *dir = env_or("NIBBLE_KEYS_DIR", CONFIG_TRUSTED_KEYS_DIR);
	const char *req = getenv("NIBBLE_REQUIRE_SIGNATURE");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int ret;

	nb_trust_init(t);
	t->require_signature = IS_ENABLED(CONFIG_IMAGE_REQUIRE_SIGNATURE) || (req && strcmp(req, "1") == 0);
	t->record_dir = env_or("NIBBLE_VERIFY_RECORDS", CONFIG_VERIFY_RECORD_DIR);
	if (!t->record_dir[0])
		t->record_dir = NULL;
	t->threads = ncpu < 1 ? 1 : ncpu > CONFIG_MAX_THREADS ? CONFIG_MAX_THREADS : (unsigned)ncpu;
	if (sizeof(nb_trusted_keys_pem) > 1) {
		ret = nb_trust_add_pem(t, nb_trusted_keys_pem, sizeof(nb_trusted_keys_pem) - 1,
				       "built-in");
		if (ret) {
			nb_trust_free(t);
			return ret;
		}
	}
	if (dir[0]) {
		ret = nb_trust_add_dir(t, dir);
		if (ret == -NB_ENOENT)
			nb_dbg("trusted keys: no directory %s", dir);
	}
	return 0;
}
