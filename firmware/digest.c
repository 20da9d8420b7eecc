#include "firmware/digest.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <mbedtls/sha256.h>

int nb_digest_buf(const void *data, size_t len, uint8_t out[NB_DIGEST_LEN])
{
	return mbedtls_sha256_ret(data, len, out, 0) ? -NB_EIO : 0;
}

int nb_digest_file(const char *path, uint8_t out[NB_DIGEST_LEN])
{
	mbedtls_sha256_context ctx;
	unsigned char buf[65536];
	ssize_t n;
	int fd, ret = -NB_EIO;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		nb_err("%s: %s", path, strerror(errno));
		return errno == ENOENT ? -NB_ENOENT : -NB_EIO;
	}
	mbedtls_sha256_init(&ctx);
	if (mbedtls_sha256_starts_ret(&ctx, 0))
		goto fail_ctx;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			nb_err("%s: read: %s", path, strerror(errno));
			goto fail_ctx;
		}
		if (mbedtls_sha256_update_ret(&ctx, buf, (size_t)n))
			goto fail_ctx;
	}
	if (mbedtls_sha256_finish_ret(&ctx, out))
		goto fail_ctx;
	ret = 0;
fail_ctx:
	mbedtls_sha256_free(&ctx);
	close(fd);
	return ret;
}

void nb_digest_hex(const uint8_t d[NB_DIGEST_LEN], char hex[2 * NB_DIGEST_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	for (int i = 0; i < NB_DIGEST_LEN; i++) {
		hex[2 * i] = digits[d[i] >> 4];
		hex[2 * i + 1] = digits[d[i] & 15];
	}
	hex[2 * NB_DIGEST_LEN] = '\0';
}
