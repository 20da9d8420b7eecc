/* `nibble verify [-p pub.pem] model.nib`: checks an image's signature. */
#include "firmware/trust.h"
#include "firmware/verify.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <string.h>

static void report(const char *path, const struct nb_verified *v)
{
	const struct nb_sig_info *info = &v->sig;
	double mb = (double)info->st.file_size / 1e6;
	char id[17];

	nb_sig_id_short(info->st.key_id, id);
	printf("%s: good signature by key %s (%s), %.1f MB verified in %.3f s (%.0f MB/s)\n", path,
	       id, info->key_name, mb, info->seconds,
	       mb / (info->seconds > 0 ? info->seconds : 1e-9));
	printf("%s: %s, model version %llu, compatible \"%s\"%s\n", path,
	       v->name[0] ? v->name : "(no name)", (unsigned long long)v->model_version, v->compat,
	       !v->compat[0] ? " (none: updates refuse it)"
	       : nb_manifest_compat_matches(v->compat, strlen(v->compat), CONFIG_BOARD_NAME,
					    NB_RUNTIME_ABI) ? "" : " (not this device)");
}

static int verify_main(int argc, char **argv)
{
	static const struct option opts[] = { { "pubkey", required_argument, NULL, 'p' },
					      { "threads", required_argument, NULL, 't' },
					      { NULL, 0, NULL, 0 } };
	unsigned long long threads = 0;
	struct nb_trust t, given;
	int c, status = NB_EXIT_OK;

	nb_trust_init(&given);
	while ((c = nb_getopt("verify", argc, argv, "p:t:", opts)) != -1) {
		switch (c) {
		case 'p':
			if (nb_trust_add_file(&given, optarg, false)) {
				nb_trust_free(&given);
				return NB_EXIT_FAIL;
			}
			break;
		case 't':
			if (nb_arg_uint("verify", "--threads", optarg, 1, 64, &threads)) {
				nb_trust_free(&given);
				return NB_EXIT_USAGE;
			}
			break;
		default: nb_trust_free(&given); return NB_EXIT_USAGE;
		}
	}
	if (optind == argc) {
		nb_trust_free(&given);
		return nb_usage_error("verify", "no image given");
	}
	/* Keys given on the command line replace the device's. */
	nb_trust_default(&t);
	if (given.n_keys) {
		given.threads = t.threads;
		nb_trust_free(&t);
		t = given;
	} else {
		nb_trust_free(&given);
	}
	if (threads)
		t.threads = (unsigned)threads;
	for (int i = optind; i < argc; i++) {
		struct nb_verified v;

		if (nb_verify_file(argv[i], &t, &v) == 0)
			report(argv[i], &v);
		else
			status = NB_EXIT_FAIL;
	}
	nb_trust_free(&t);
	return status;
}

const struct nb_applet nb_applet_verify = {
	.name = "verify",
	.summary = "check a model image's signature",
	.usage = "usage: nibble verify [-p KEY.pub.pem]... [-t N] MODEL.nib...\n\n"
		 "Checks that each image carries a good signature by a trusted key and that\n"
		 "not one byte of it changed since it was signed (the whole file is hashed).\n"
		 "The trusted keys are the ones given with -p, else the device's (built in,\n"
		 "and /etc/nibble/keys/*.pub.pem). Exits 1 if any image fails.\n\n"
		 "  -p, --pubkey FILE     trust this public key (repeatable)\n"
		 "  -t, --threads N       hashing threads (the CPUs)\n",
	.main = verify_main,
};
