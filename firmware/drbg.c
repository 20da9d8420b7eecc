#include "firmware/drbg.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <string.h>

int nb_drbg_open(struct nb_drbg *d, const char *personal)
{
	int ret;

	mbedtls_entropy_init(&d->entropy);
	mbedtls_ctr_drbg_init(&d->ctr);
	ret = mbedtls_ctr_drbg_seed(&d->ctr, mbedtls_entropy_func, &d->entropy,
				    (const unsigned char *)personal, strlen(personal));
	if (ret) {
		nb_err("random generator: no entropy (mbedTLS -0x%04x)", (unsigned)-ret);
		nb_drbg_close(d);
		return -NB_EIO;
	}
	return 0;
}

void nb_drbg_close(struct nb_drbg *d)
{
	mbedtls_ctr_drbg_free(&d->ctr);
	mbedtls_entropy_free(&d->entropy);
}

int nb_drbg_random(void *p_rng, unsigned char *out, size_t len)
{
	struct nb_drbg *d = p_rng;
	return mbedtls_ctr_drbg_random(&d->ctr, out, len);
}
