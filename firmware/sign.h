/* The publisher's side of signed images (firmware/sig.h): key pairs, the
 * signature trailer, and the manifest fields an update needs stamped in
 * before signing (firmware/manifest.h). Host tools only: built for the
 * keygen and sign applets (HOST_SIGN in runtime/applets/Kconfig), not for
 * the boards, which only verify. */
#ifndef NB_SIGN_H
#define NB_SIGN_H

#include "firmware/sig.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Signs the image at path with the private key in key_path (PEM, P-256):
 * computes both digests and writes the trailer in place (then fsync). An
 * existing signature is replaced. */
int nb_sign_file(const char *path, const char *key_path, unsigned threads,
		 struct nb_sig_info *info);

/* A new P-256 key pair: the private key to key_path (mode 0600), the public
 * key beside it (key.pem -> key.pub.pem, mode 0644); both written to a
 * temporary name, fsynced and renamed. Existing files are not replaced
 * unless force. pub_path receives the public key's path. */
int nb_sign_keygen(const char *key_path, bool force, char *pub_path, size_t pub_cap);

/* Rewrites the image at path (atomically: temporary file, fsync, rename)
 * with model_version set (if version != 0) and "compatible" set (if compat
 * != NULL), removing any signature. The sections after META move if the new
 * META outgrows its pages. */
int nb_sign_stamp(const char *path, uint64_t version, const char *compat);

#endif
