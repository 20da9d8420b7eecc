/* `nibble update FILE|URL`: a signed image into the inactive A/B slot, on
 * trial until the service's health check commits it (docs/updates.md). */
#include "firmware/update.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <string.h>

static int status(const char *dir)
{
	struct nb_slots s;
	int ret = nb_slots_open(&s, dir, false, NULL);

	if (!ret)
		ret = nb_slots_lock(&s);
	if (!ret) {
		nb_slots_print(&s, CONFIG_UPDATE_MAX_BOOTS);
		nb_slots_unlock(&s);
	}
	nb_slots_close(&s);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

static int install(struct nb_update_opts *o)
{
	enum nb_update_outcome outcome;
	struct nb_verified v;
	struct nb_trust t;
	struct nb_fault f;
	char id[17];
	int ret;

	nb_fault_init(&f);
	ret = nb_trust_default(&t);
	if (ret)
		return NB_EXIT_FAIL;
	o->trust = &t;
	o->fault = &f;
	ret = nb_update_install(o, &outcome, &v);
	nb_trust_free(&t);
	if (ret)
		return NB_EXIT_FAIL;
	nb_sig_id_short(v.sig.st.key_id, id);
	if (outcome == NB_UPDATE_CURRENT)
		printf("%s: %s version %llu is already installed\n", o->source, v.name,
		       (unsigned long long)v.model_version);
	else
		printf("%s: %s version %llu (key %s) installed on trial; the service runs its "
		       "health check, then commits or rolls back\n",
		       o->source, v.name, (unsigned long long)v.model_version, id);
	return NB_EXIT_OK;
}

static int update_main(int argc, char **argv)
{
	enum { O_CA = 256, O_TIMEOUT, O_SWITCH, O_STATUS, O_CANCEL };
	static const struct option opts[] = {
		{ "slots-dir", required_argument, NULL, 'd' },
		{ "ca", required_argument, NULL, O_CA },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "switch-cmd", required_argument, NULL, O_SWITCH },
		{ "status", no_argument, NULL, O_STATUS },
		{ "cancel", no_argument, NULL, O_CANCEL },
		{ NULL, 0, NULL, 0 },
	};
	struct nb_update_opts o = { .slots_dir = CONFIG_UPDATE_SLOTS_DIR,
				    .ca_file = CONFIG_UPDATE_CA_FILE, .timeout = 30,
				    .board = CONFIG_BOARD_NAME,
				    .switch_cmd = CONFIG_UPDATE_SWITCH_CMD };
	bool show = false, cancel = false;
	int c;

	while ((c = nb_getopt("update", argc, argv, "d:", opts)) != -1) {
		switch (c) {
		case 'd': o.slots_dir = optarg; break;
		case O_CA: o.ca_file = optarg; break;
		case O_TIMEOUT:
			if (nb_arg_float("update", "--timeout", optarg, 0.1, 3600, &o.timeout))
				return NB_EXIT_USAGE;
			break;
		case O_SWITCH: o.switch_cmd = optarg; break;
		case O_STATUS: show = true; break;
		case O_CANCEL: cancel = true; break;
		default: return NB_EXIT_USAGE;
		}
	}
	if (show || cancel) {
		if (optind != argc || (show && cancel))
			return nb_usage_error("update", "--status and --cancel take no image");
		if (cancel)
			return nb_update_cancel(o.slots_dir) ? NB_EXIT_FAIL : NB_EXIT_OK;
		return status(o.slots_dir);
	}
	if (optind + 1 != argc)
		return nb_usage_error("update", "one image file or https:// URL");
	o.source = argv[optind];
	if (strncmp(o.source, "http://", 7) == 0)
		return nb_usage_error("update", "plain http:// is refused: use https://");
	return install(&o);
}

const struct nb_applet nb_applet_update = {
	.name = "update",
	.summary = "install a signed model into the inactive A/B slot",
	.usage = "usage: nibble update [options] FILE|https://HOST/PATH\n"
		 "       nibble update [-d DIR] --status | --cancel\n\n"
		 "Writes the image straight into the inactive slot (DIR/a or DIR/b), fsyncs,\n"
		 "verifies it (a good signature by a trusted key, compatible with this board,\n"
		 "a higher version than the committed one: no downgrades), marks the slot trial\n"
		 "and runs the switch command. `nibble serve --slots-dir DIR` then starts on the\n"
		 "trial slot, runs its health check (golden vector, latency) and commits it,\n"
		 "or rolls back to the previous slot on failure, a crash loop or a timeout.\n"
		 "Every change on disk is atomic; an interrupted update leaves the running\n"
		 "slot as it was and can simply be run again. See docs/updates.md.\n\n"
		 "  -d, --slots-dir DIR     slots (" CONFIG_UPDATE_SLOTS_DIR ")\n"
		 "      --ca FILE           CA certificates for https:// (" CONFIG_UPDATE_CA_FILE ")\n"
		 "      --timeout S         seconds the download may stall (30)\n"
		 "      --switch-cmd CMD    asks the service to switch (\"" CONFIG_UPDATE_SWITCH_CMD "\");\n"
		 "                          '' for none\n"
		 "      --status            both slots, versions, state, the last event\n"
		 "      --cancel            give up the slot on trial\n",
	.main = update_main,
};
