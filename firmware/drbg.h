/* A seeded random generator for keys, ECDSA blinding and TLS (mbedTLS
 * CTR_DRBG over the system entropy source). */
#ifndef NB_DRBG_H
#define NB_DRBG_H

#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>

struct nb_drbg {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context ctr;
};

/* 0 or -NB_EIO (no entropy). personal names the use (a few bytes). */
int nb_drbg_open(struct nb_drbg *d, const char *personal);
void nb_drbg_close(struct nb_drbg *d);
/* The f_rng of mbedTLS calls; p_rng is the struct nb_drbg. */
int nb_drbg_random(void *p_rng, unsigned char *out, size_t len);

#endif
