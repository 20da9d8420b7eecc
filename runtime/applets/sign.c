/* `nibble sign -k key.pem model.nib`: fills the image's signature trailer. */
#include "firmware/manifest.h"
#include "firmware/sign.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdint.h>
#include <unistd.h>

static int sign_main(int argc, char **argv)
{
	enum { O_VERSION = 256, O_COMPAT };
	static const struct option opts[] = { { "key", required_argument, NULL, 'k' },
					      { "threads", required_argument, NULL, 't' },
					      { "model-version", required_argument, NULL, O_VERSION },
					      { "compatible", required_argument, NULL, O_COMPAT },
					      { NULL, 0, NULL, 0 } };
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned long long threads = ncpu > 0 ? (unsigned long long)ncpu : 1;
	unsigned long long version = 0;
	const char *key = NULL, *compat = NULL;
	struct nb_sig_info info;
	char id[17];
	int c;

	while ((c = nb_getopt("sign", argc, argv, "k:t:", opts)) != -1) {
		switch (c) {
		case 'k': key = optarg; break;
		case 't':
			if (nb_arg_uint("sign", "--threads", optarg, 1, 64, &threads))
				return NB_EXIT_USAGE;
			break;
		case O_VERSION:
			if (nb_arg_uint("sign", "--model-version", optarg, 1, UINT64_MAX, &version))
				return NB_EXIT_USAGE;
			break;
		case O_COMPAT:
			if (!nb_manifest_compat_valid(optarg))
				return nb_usage_error("sign", "--compatible: '%s' is not a list of "
							      "BOARD/ABI entries such as 'rpi5/%u'",
						      optarg, NB_RUNTIME_ABI);
			compat = optarg;
			break;
		default: return NB_EXIT_USAGE;
		}
	}
	if (!key)
		return nb_usage_error("sign", "-k KEY.pem is required");
	if (optind + 1 != argc)
		return nb_usage_error("sign", "one image to sign");
	if ((version || compat) && nb_sign_stamp(argv[optind], version, compat))
		return NB_EXIT_FAIL;
	if (nb_sign_file(argv[optind], key, (unsigned)threads, &info))
		return NB_EXIT_FAIL;
	nb_sig_id_short(info.st.key_id, id);
	printf("%s: signed by key %s, %.1f MB in %.3f s (%.0f MB/s)\n", argv[optind], id,
	       (double)info.st.file_size / 1e6, info.seconds,
	       (double)info.st.file_size / 1e6 / (info.seconds > 0 ? info.seconds : 1e-9));
	return NB_EXIT_OK;
}

const struct nb_applet nb_applet_sign = {
	.name = "sign",
	.summary = "sign a model image (ECDSA P-256)",
	.usage = "usage: nibble sign -k KEY.pem [options] MODEL.nib\n\n"
		 "Signs the image in place: hashes everything before the trailer (the tensor\n"
		 "data in 1 MiB chunks, on several threads) and writes the signed statement\n"
		 "and its ECDSA P-256 signature into the 4096-byte trailer, then fsyncs. A\n"
		 "previous signature is replaced. --model-version and --compatible first\n"
		 "rewrite the manifest (atomically). See docs/signing.md and docs/updates.md.\n\n"
		 "  -k, --key FILE          private key (from nibble keygen)\n"
		 "  -t, --threads N         hashing threads (the CPUs)\n"
		 "      --model-version N   set the monotonic model version (devices install\n"
		 "                          only versions above the one they run)\n"
		 "      --compatible LIST   set the compatibility string: BOARD/ABI entries,\n"
		 "                          e.g. \"rpi4/1 rpi5/1\" or \"*/1\" (this build: " CONFIG_BOARD_NAME ")\n",
	.main = sign_main,
};
