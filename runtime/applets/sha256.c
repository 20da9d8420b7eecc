/* `nibble sha256 FILE...`: the digest images are signed by, on the board. */
#include "firmware/digest.h"
#include "runtime/applets/applet.h"

static int sha256_main(int argc, char **argv)
{
	uint8_t d[NB_DIGEST_LEN];
	char hex[2 * NB_DIGEST_LEN + 1];
	int status = NB_EXIT_OK;

	/* No options: this rejects -x and --x, and takes -- before a name
	 * that starts with a dash. */
	if (nb_getopt("sha256", argc, argv, "", NULL) != -1)
		return NB_EXIT_USAGE;
	if (optind == argc)
		return nb_usage_error("sha256", "no FILE");
	for (int i = optind; i < argc; i++) {
		if (nb_digest_file(argv[i], d) != 0) {
			status = NB_EXIT_FAIL;
			continue;
		}
		nb_digest_hex(d, hex);
		printf("%s  %s\n", hex, argv[i]);
	}
	return status;
}

const struct nb_applet nb_applet_sha256 = {
	.name = "sha256",
	.summary = "print SHA-256 digests of files (as sha256sum does)",
	.usage = "usage: nibble sha256 FILE...\n\n"
		 "Prints the SHA-256 digest of each file in sha256sum's format (-- before a\n"
		 "name that starts with '-').\n"
		 "Exits 1 if any file cannot be read.\n",
	.main = sha256_main,
};
