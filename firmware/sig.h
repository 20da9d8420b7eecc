/* Image signatures: the trailer format, the image digests it signs, and
 * ECDSA P-256 signing and verification (mbedTLS).
 *
 * A signed image carries in its last 4096 bytes a statement (the digests
 * below, the signer's key id, the file size and the DATA range) and an
 * ECDSA signature over the SHA-256 of that statement. The head digest
 * covers every byte before the trailer outside DATA (header, hparams,
 * manifest, tokenizer, tensor table, golden vector, padding); the data
 * digest is the SHA-256 of the SHA-256s of DATA's 1 MiB chunks, which
 * threads compute side by side. So a change of any byte of the file is
 * caught: in the trailer by the signature, elsewhere by a digest. */
#ifndef NB_SIG_H
#define NB_SIG_H

#include "firmware/image_format.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NB_SIG_VERSION 1u
#define NB_SIG_ALG_ECDSA_P256_SHA256 1u
#define NB_SIG_CHUNK (1u << 20)
#define NB_SIG_MAX_LEN 72u /* DER ECDSA-Sig-Value of P-256 */
#define NB_SIG_ID_LEN 32u

/* The signed statement: trailer bytes [0, 144). */
struct nb_sig_statement {
	uint8_t magic[8];   /* NB_TRAILER_MAGIC */
	uint32_t version;   /* NB_SIG_VERSION */
	uint32_t algorithm; /* NB_SIG_ALG_ECDSA_P256_SHA256 */
	uint32_t chunk_size; /* NB_SIG_CHUNK */
	uint32_t reserved;  /* zero */
	uint64_t file_size; /* the whole file, trailer included */
	uint64_t data_offset; /* the DATA section, hashed in chunks */
	uint64_t data_size;
	uint8_t key_id[NB_SIG_ID_LEN];      /* SHA-256 of the public key (DER) */
	uint8_t head_digest[NB_SIG_ID_LEN]; /* every byte outside DATA and the trailer */
	uint8_t data_digest[NB_SIG_ID_LEN]; /* SHA-256 of the chunk SHA-256s */
};
static_assert(sizeof(struct nb_sig_statement) == 144, "signed statement layout");

/* The trailer: the statement, then the signature; zero to 4096 bytes. */
struct nb_sig_trailer {
	struct nb_sig_statement st;
	uint32_t sig_len;
	uint8_t sig[NB_SIG_MAX_LEN]; /* sig_len bytes, then zero */
	uint8_t zero[4];
};
static_assert(sizeof(struct nb_sig_trailer) == 224, "trailer layout");

struct nb_trust;

/* What verification found out about an image. */
struct nb_sig_info {
	bool is_signed; /* false only for an intact image whose trailer is all zero */
	struct nb_sig_statement st;
	uint8_t digest[NB_SIG_ID_LEN]; /* SHA-256 of the statement: the image's identity */
	const char *key_name;          /* the trusted key's origin (file name) */
	bool recorded;                 /* hashing skipped: verified before (NB_SIG_RECORDED) */
	double seconds;                /* time spent verifying */
};

/* The file was verified in full earlier in this boot and has not changed
 * since (firmware/verify.h): check the trailer and that its key is still
 * trusted, skip the ECDSA check and the hashing. */
#define NB_SIG_RECORDED 1u

/* Digests of [0, size - 4096) split at DATA = [data_off, data_off + data_size),
 * the data digest on up to `threads` threads. */
int nb_sig_digests(const uint8_t *map, size_t size, uint64_t data_off, uint64_t data_size,
		   unsigned threads, uint8_t head[NB_SIG_ID_LEN], uint8_t data[NB_SIG_ID_LEN]);

/* Verifies an image's bytes against the trusted keys (flags 0: in full,
 * or NB_SIG_RECORDED). 0: a good signature
 * by a trusted key. -NB_ESIG: unsigned (info->is_signed false), or signed
 * but not verifiable (malformed trailer, truncated, untrusted key, bad
 * signature, altered bytes), each logged as "<what>: <reason>". */
int nb_sig_verify(const uint8_t *map, size_t size, const struct nb_trust *t, unsigned flags,
		  const char *what, struct nb_sig_info *info);

/* The id of a public key (SHA-256 of its DER SubjectPublicKeyInfo); pk is
 * an mbedtls_pk_context. */
int nb_sig_key_id(void *pk, uint8_t id[NB_SIG_ID_LEN]);
/* First 8 bytes of an id in hex (17 bytes with the NUL), for messages. */
void nb_sig_id_short(const uint8_t id[NB_SIG_ID_LEN], char out[17]);

#endif
