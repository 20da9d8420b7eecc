/* `nibble keygen -o key.pem`: an ECDSA P-256 key pair for signing images. */
#include "firmware/sign.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <limits.h>

static int keygen_main(int argc, char **argv)
{
	static const struct option opts[] = { { "output", required_argument, NULL, 'o' },
					      { "force", no_argument, NULL, 'f' },
					      { NULL, 0, NULL, 0 } };
	const char *out = NULL;
	char pub[PATH_MAX];
	bool force = false;
	int c;

	while ((c = nb_getopt("keygen", argc, argv, "o:f", opts)) != -1) {
		switch (c) {
		case 'o': out = optarg; break;
		case 'f': force = true; break;
		default: return NB_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return nb_usage_error("keygen", "unexpected argument '%s'", argv[optind]);
	if (!out)
		return nb_usage_error("keygen", "-o KEY.pem is required");
	if (nb_sign_keygen(out, force, pub, sizeof(pub)))
		return NB_EXIT_FAIL;
	printf("private key: %s (keep it secret; mode 0600)\n", out);
	printf("public key:  %s (install on devices as /etc/nibble/keys/NAME.pub.pem)\n", pub);
	return NB_EXIT_OK;
}

const struct nb_applet nb_applet_keygen = {
	.name = "keygen",
	.summary = "make an ECDSA P-256 key pair for signing model images",
	.usage = "usage: nibble keygen -o KEY.pem [--force]\n\n"
		 "Generates an ECDSA P-256 key pair: the private key goes to KEY.pem (mode\n"
		 "0600), the public key beside it as KEY.pub.pem. Devices trust images signed\n"
		 "with the private key when the public key is built into the binary or\n"
		 "installed in /etc/nibble/keys/ (see docs/signing.md).\n\n"
		 "  -o, --output FILE   where the private key goes\n"
		 "  -f, --force         replace existing key files\n",
	.main = keygen_main,
};
