/* SHA-256 of files and buffers (mbedTLS). Images and update bundles are
 * identified and signed by these digests. */
#ifndef NB_DIGEST_H
#define NB_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#define NB_DIGEST_LEN 32

int nb_digest_buf(const void *data, size_t len, uint8_t out[NB_DIGEST_LEN]);
/* Streams the file; 0, -NB_ENOENT, -NB_EIO. */
int nb_digest_file(const char *path, uint8_t out[NB_DIGEST_LEN]);
/* 65-byte buffer: lowercase hex + NUL. */
void nb_digest_hex(const uint8_t d[NB_DIGEST_LEN], char hex[2 * NB_DIGEST_LEN + 1]);

#endif
