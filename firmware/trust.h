/* What a device trusts: the public keys images must be signed with, and
 * whether unsigned images may load at all. Built by the caller and passed
 * down (nb_llm_open_trusted, nb_update_*); nb_trust_default gives the
 * device's policy:
 *   - keys built in (CONFIG_TRUSTED_KEYS: PEM files embedded at build time)
 *   - keys in CONFIG_TRUSTED_KEYS_DIR (or $NIBBLE_KEYS_DIR): every *.pub.pem,
 *     used only if the directory and the file belong to root and nobody
 *     else may write them
 *   - unsigned images refused if CONFIG_IMAGE_REQUIRE_SIGNATURE (or
 *     NIBBLE_REQUIRE_SIGNATURE=1, which can only make a build stricter)
 *   - per-boot verification records in CONFIG_VERIFY_RECORD_DIR (or
 *     $NIBBLE_VERIFY_RECORDS; "" turns them off), see firmware/verify.h */
#ifndef NB_TRUST_H
#define NB_TRUST_H

#include "firmware/sig.h"

#include <stdbool.h>
#include <stddef.h>

#define NB_TRUST_MAX_KEYS 16

struct nb_trust_key {
	uint8_t id[NB_SIG_ID_LEN];
	void *pk; /* mbedtls_pk_context */
	char origin[64];
};

struct nb_trust {
	struct nb_trust_key keys[NB_TRUST_MAX_KEYS];
	unsigned n_keys;
	bool require_signature; /* refuse unsigned images */
	const char *record_dir; /* per-boot verification records, or NULL */
	unsigned threads;       /* hashing threads */
};

void nb_trust_init(struct nb_trust *t);
void nb_trust_free(struct nb_trust *t);
/* Every "PUBLIC KEY" PEM block of pem (ECDSA P-256 only). 0, or
 * -NB_EFORMAT for a block that is not such a key, -NB_ERANGE when full. */
int nb_trust_add_pem(struct nb_trust *t, const char *pem, size_t len, const char *origin);
/* A public key file. With check_owner, only a regular file of root's that
 * no one else may write is accepted (-NB_EPERM otherwise). */
int nb_trust_add_file(struct nb_trust *t, const char *path, bool check_owner);
/* Every *.pub.pem of a root-owned directory nobody else may write; unsafe
 * or unreadable entries are skipped with a warning. -NB_ENOENT if the
 * directory does not exist, -NB_EPERM if it is unsafe. */
int nb_trust_add_dir(struct nb_trust *t, const char *dir);
/* The device's policy (see above). Never fails for lack of keys: an image
 * signed by an unknown key is refused later with that reason. */
int nb_trust_default(struct nb_trust *t);
const struct nb_trust_key *nb_trust_find(const struct nb_trust *t, const uint8_t id[NB_SIG_ID_LEN]);

#endif
