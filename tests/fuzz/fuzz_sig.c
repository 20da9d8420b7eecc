/* Fuzz target: the signature trailer and the manifest, as a board meets
 * them: any bytes as an image, verified in full and as recorded against a
 * trusted key (the seed corpus's signed.nib is signed by its private half),
 * then the compatibility string of an image that parses; the same bytes as
 * a compatibility string and as an update URL. */
#include "firmware/https.h"
#include "firmware/image.h"
#include "firmware/manifest.h"
#include "firmware/sig.h"
#include "firmware/trust.h"
#include "runtime/base/log.h"

#include <stdlib.h>
#include <string.h>

static const char fuzz_key[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE1/NnfJcC3Oq537xDNRtIqhWvRzAk\n"
	"YHBCZQGHnKoszE1XiketP6tnG6U+J5lDTmsOFSZs8j/UHQlO7himq4Drlw==\n"
	"-----END PUBLIC KEY-----\n";

static void text_parsers(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), host[256], port[8];
	const char *path;

	if (!s)
		return;
	memcpy(s, data, size);
	s[size] = '\0';
	nb_manifest_compat_valid(s);
	nb_manifest_compat_matches(s, size, "rpi5", NB_RUNTIME_ABI);
	nb_manifest_compat_matches(s, size, NULL, NB_RUNTIME_ABI);
	nb_https_parse_url(s, host, sizeof(host), port, sizeof(port), &path);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *buf = aligned_alloc(64, (size + 64) & ~(size_t)63);
	struct nb_sig_info info;
	struct nb_trust t;
	struct nb_image img;

	nb_log_set_level(-1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	nb_trust_init(&t);
	if (nb_trust_add_pem(&t, fuzz_key, sizeof(fuzz_key) - 1, "fuzz") != 0)
		abort();
	nb_sig_verify(buf, size, &t, NB_SIG_RECORDED, "fuzz", &info);
	nb_sig_verify(buf, size, &t, 0, "fuzz", &info);
	if (nb_image_open_mem(&img, buf, size) == 0) {
		nb_manifest_check_compat(&img, "fuzz", "rpi5", true);
		nb_manifest_check_compat(&img, "fuzz", NULL, false);
		nb_image_close(&img);
	}
	nb_trust_free(&t);
	free(buf);
	text_parsers(data, size);
	return 0;
}
