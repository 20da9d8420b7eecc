/* `nibble serve`: options to struct nb_server_opts, then the event loop. */
#include "runtime/applets/applet.h"
#include "runtime/base/argfile.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"
#include "runtime/model/llm.h"
#include "runtime/server/server.h"
#include "runtime/server/trial.h"

#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

/* A whole-number option into a 32-bit field. */
static int arg_u32(const char *option, const char *s, unsigned long long min,
		   unsigned long long max, uint32_t *out)
{
	unsigned long long v;
	int ret = nb_arg_uint("serve", option, s, min, max, &v);

	if (!ret)
		*out = (uint32_t)v;
	return ret;
}

/* A user or group by name, else by number: 0..2^32-2, as (uid_t)-1 is no
 * id but the kernel's "unchanged". */
static int parse_id(const char *option, const char *s, bool user, uint32_t *out)
{
	const struct passwd *pw = user ? getpwnam(s) : NULL;
	const struct group *gr = user ? NULL : getgrnam(s);
	unsigned long long v;

	if (pw || gr) {
		*out = pw ? pw->pw_uid : gr->gr_gid;
		return 0;
	}
	if (*s < '0' || *s > '9') {
		nb_usage_error("serve", "%s: no %s named '%s'", option, user ? "user" : "group", s);
		return -NB_EINVAL;
	}
	if (nb_arg_uint("serve", option, s, 0, UINT32_MAX - 1, &v))
		return -NB_EINVAL;
	*out = (uint32_t)v;
	return 0;
}

static int add_uid(struct nb_server_opts *o, const char *s)
{
	uint32_t id;

	if (o->n_allow_uid == NB_SERVER_MAX_ALLOW) {
		nb_usage_error("serve", "--allow-uid: at most %d of them", NB_SERVER_MAX_ALLOW);
		return -NB_EINVAL;
	}
	if (parse_id("--allow-uid", s, true, &id))
		return -NB_EINVAL;
	o->allow_uid[o->n_allow_uid++] = (uid_t)id;
	return 0;
}

static int add_gid(struct nb_server_opts *o, const char *s)
{
	uint32_t id;

	if (o->n_allow_gid == NB_SERVER_MAX_ALLOW) {
		nb_usage_error("serve", "--allow-gid: at most %d of them", NB_SERVER_MAX_ALLOW);
		return -NB_EINVAL;
	}
	if (parse_id("--allow-gid", s, false, &id))
		return -NB_EINVAL;
	o->allow_gid[o->n_allow_gid++] = (gid_t)id;
	return 0;
}

enum { O_GROUP = 256, O_MODE, O_ALLOW_UID, O_ALLOW_GID, O_LISTEN, O_KEY, O_SLOTS, O_CTX,
       O_QUEUE, O_CHUNK, O_CONNS, O_IDLE, O_READ, O_GRACE, O_MAXBODY, O_MAXTOK,
       O_SLOTS_DIR, O_HEALTH_TIMEOUT, O_HEALTH_MAX_MS, O_UPLINK, O_UP_KEY, O_UP_CA, O_UP_PIN,
       O_UP_CERT, O_UP_CERT_KEY, O_UP_CONNECT, O_UP_TIMEOUT, O_UP_MAX, O_UP_WAIT, O_UP_MODEL,
       O_LOCAL_ONLY, O_UP_BREAKER, O_UP_BACKOFF, O_CONFIG };

/* The cloud uplink (runtime/server/uplink.h, docs/uplink.md). */
static int parse_uplink_opt(struct nb_uplink_opts *u, int c, const char *arg, bool *any)
{
	unsigned long long v;
	int ret = 0;

	*any = c > O_UPLINK && c <= O_UP_BACKOFF && c != O_LOCAL_ONLY;
	switch (c) {
	case O_UPLINK: u->url = arg; break;
	case O_UP_KEY: u->key_file = arg; break;
	case O_UP_CA: u->ca_file = arg; break;
	case O_UP_PIN: u->pin = arg; break;
	case O_UP_CERT: u->cert_file = arg; break;
	case O_UP_CERT_KEY: u->cert_key_file = arg; break;
	case O_UP_CONNECT:
		return nb_arg_float("serve", "--uplink-connect-timeout", arg, 0.05, 600, &u->connect_timeout);
	case O_UP_TIMEOUT:
		return nb_arg_float("serve", "--uplink-timeout", arg, 0.1, 3600, &u->read_timeout);
	case O_UP_WAIT:
		return nb_arg_float("serve", "--uplink-wait-target", arg, 0, 3600, &u->wait_target);
	case O_UP_BACKOFF:
		return nb_arg_float("serve", "--uplink-backoff", arg, 0.05, 3600, &u->breaker_backoff);
	case O_UP_MAX:
		ret = nb_arg_uint("serve", "--uplink-max", arg, 1, NB_UPLINK_MAX_CONC, &v);
		u->max_concurrent = ret ? u->max_concurrent : (uint32_t)v;
		break;
	case O_UP_BREAKER:
		ret = nb_arg_uint("serve", "--uplink-breaker", arg, 1, 1000, &v);
		u->breaker_failures = ret ? u->breaker_failures : (uint32_t)v;
		break;
	case O_UP_MODEL:
		if (u->n_map == NB_UPLINK_MAX_MAP) {
			nb_usage_error("serve", "--uplink-model: at most %d of them", NB_UPLINK_MAX_MAP);
			return -NB_EINVAL;
		}
		if (!*arg || *arg == '=' || (strchr(arg, '=') && !strchr(arg, '=')[1])) {
			nb_usage_error("serve", "--uplink-model: '%s' is not NAME or NAME=CLOUDNAME", arg);
			return -NB_EINVAL;
		}
		u->map[u->n_map++] = arg;
		break;
	case O_LOCAL_ONLY: u->local_only = true; break;
	default: return 1;
	}
	return ret;
}

/* A/B slots (runtime/server/trial.h): options of their own. */
static int parse_trial_opt(struct nb_trial_opts *t, int c, const char *arg)
{
	switch (c) {
	case O_SLOTS_DIR: t->slots_dir = arg; return 0;
	case O_HEALTH_TIMEOUT:
		return nb_arg_float("serve", "--health-timeout", arg, 0.001, 86400, &t->timeout);
	case O_HEALTH_MAX_MS:
		return nb_arg_float("serve", "--health-max-ms", arg, 0.001, 1e6, &t->max_ms);
	default: return 1;
	}
}

static int parse_opt(struct nb_server_opts *o, int c, const char *arg)
{
	unsigned long long v;
	int ret = 0;

	if (c >= NB_GOVERN_O_FIRST && c <= NB_GOVERN_O_LAST) {
		if (!IS_ENABLED(CONFIG_GOVERNOR)) {
			nb_usage_error("serve", "this build has no governor (CONFIG_GOVERNOR)");
			return -NB_EINVAL;
		}
		return nb_govern_parse_opt(&o->gov, &o->governor, "serve", c, arg);
	}
	switch (c) {
	case 'm': o->model = arg; break;
	case 's': o->socket_path = arg; break;
	case O_GROUP: o->group = arg; break;
	case O_MODE: ret = nb_arg_mode("serve", "--mode", arg, &o->mode); break;
	case O_ALLOW_UID: ret = add_uid(o, arg); break;
	case O_ALLOW_GID: ret = add_gid(o, arg); break;
	case O_LISTEN: o->listen = arg; break;
	case O_KEY: o->api_key_file = arg; break;
	case 't': ret = arg_u32("--threads", arg, 1, CONFIG_MAX_THREADS, &o->sched.threads); break;
	case O_SLOTS: ret = arg_u32("--slots", arg, 1, 256, &o->sched.slots); break;
	case O_CTX: ret = arg_u32("--ctx", arg, 1, 1 << 20, &o->sched.ctx); break;
	case O_QUEUE: ret = arg_u32("--queue", arg, 1, 4096, &o->sched.queue); break;
	case O_CHUNK: ret = arg_u32("--chunk", arg, 1, 4096, &o->sched.chunk); break;
	case O_CONNS: ret = arg_u32("--max-conns", arg, 1, 65536, &o->max_conns); break;
	case O_IDLE: ret = nb_arg_float("serve", "--idle-timeout", arg, 0.1, 86400, &o->idle_timeout); break;
	case O_READ: ret = nb_arg_float("serve", "--read-timeout", arg, 0.1, 3600, &o->read_timeout); break;
	case O_GRACE: ret = nb_arg_float("serve", "--grace", arg, 0, 3600, &o->grace); break;
	case O_MAXBODY:
		ret = nb_arg_uint("serve", "--max-body", arg, 1024, 1 << 30, &v);
		o->http.max_body_bytes = ret ? o->http.max_body_bytes : (size_t)v;
		break;
	case O_MAXTOK: ret = arg_u32("--max-tokens", arg, 1, 1 << 20, &o->max_tokens); break;
	default: ret = -NB_EINVAL;
	}
	return ret;
}

/* --listen HOST:PORT, numeric ([::1]:8080 for IPv6), and its key: checked
 * before the server starts, as a usage error. */
static int check_listen(const char *spec, const char *key_file)
{
	const struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	const char *colon = strrchr(spec, ':'), *host = spec;
	struct addrinfo *res = NULL;
	char buf[64];
	size_t len = colon ? (size_t)(colon - spec) : 0;

	if (len >= 2 && spec[0] == '[' && spec[len - 1] == ']') {
		host = spec + 1;
		len -= 2;
	}
	if (!colon || len == 0 || len >= sizeof(buf) || !colon[1]) {
		nb_err("serve: --listen: '%s' is not HOST:PORT (e.g. 127.0.0.1:8080)", spec);
		return -NB_EINVAL;
	}
	memcpy(buf, host, len);
	buf[len] = '\0';
	if (getaddrinfo(buf, colon + 1, &hints, &res) != 0) {
		nb_err("serve: --listen: '%s' is not a numeric address and port", spec);
		return -NB_EINVAL;
	}
	freeaddrinfo(res);
	if (!key_file) {
		nb_usage_error("serve", "--listen needs --api-key-file (TCP clients must authenticate)");
		return -NB_EINVAL;
	}
	return 0;
}

/* The model and its context, before any socket exists: a wrong path or
 * --ctx is reported as what it is and leaves nothing behind. Returns an
 * exit status. */
static int open_model(struct nb_server_opts *o, struct nb_llm *llm)
{
	int ret = nb_llm_open(llm, o->model, nb_image_default_flags());

	if (ret) /* the image's message names the path and the cause */
		return NB_EXIT_FAIL;
	ret = nb_llm_context(llm, "serve", o->sched.ctx, o->sched.slots, nb_sys_mem_available(),
			     &o->sched.ctx);
	if (ret) {
		nb_llm_close(llm);
		return ret == -NB_EINVAL ? NB_EXIT_USAGE : NB_EXIT_FAIL;
	}
	o->llm = llm;
	return NB_EXIT_OK;
}

static const struct option serve_opts[] = {
	{ "model", required_argument, NULL, 'm' },     { "socket", required_argument, NULL, 's' },
	{ "group", required_argument, NULL, O_GROUP }, { "mode", required_argument, NULL, O_MODE },
	{ "allow-uid", required_argument, NULL, O_ALLOW_UID },
	{ "allow-gid", required_argument, NULL, O_ALLOW_GID },
	{ "listen", required_argument, NULL, O_LISTEN },
	{ "api-key-file", required_argument, NULL, O_KEY },
	{ "threads", required_argument, NULL, 't' },   { "slots", required_argument, NULL, O_SLOTS },
	{ "ctx", required_argument, NULL, O_CTX },     { "queue", required_argument, NULL, O_QUEUE },
	{ "chunk", required_argument, NULL, O_CHUNK }, { "max-conns", required_argument, NULL, O_CONNS },
	{ "idle-timeout", required_argument, NULL, O_IDLE },
	{ "read-timeout", required_argument, NULL, O_READ },
	{ "grace", required_argument, NULL, O_GRACE },
	{ "max-body", required_argument, NULL, O_MAXBODY },
	{ "max-tokens", required_argument, NULL, O_MAXTOK },
	{ "slots-dir", required_argument, NULL, O_SLOTS_DIR },
	{ "health-timeout", required_argument, NULL, O_HEALTH_TIMEOUT },
	{ "health-max-ms", required_argument, NULL, O_HEALTH_MAX_MS },
	{ "uplink", required_argument, NULL, O_UPLINK },
	{ "uplink-key-file", required_argument, NULL, O_UP_KEY },
	{ "uplink-ca", required_argument, NULL, O_UP_CA },
	{ "uplink-pin", required_argument, NULL, O_UP_PIN },
	{ "uplink-cert", required_argument, NULL, O_UP_CERT },
	{ "uplink-cert-key", required_argument, NULL, O_UP_CERT_KEY },
	{ "uplink-connect-timeout", required_argument, NULL, O_UP_CONNECT },
	{ "uplink-timeout", required_argument, NULL, O_UP_TIMEOUT },
	{ "uplink-max", required_argument, NULL, O_UP_MAX },
	{ "uplink-wait-target", required_argument, NULL, O_UP_WAIT },
	{ "uplink-model", required_argument, NULL, O_UP_MODEL },
	{ "uplink-breaker", required_argument, NULL, O_UP_BREAKER },
	{ "uplink-backoff", required_argument, NULL, O_UP_BACKOFF },
	{ "local-only", no_argument, NULL, O_LOCAL_ONLY },
	{ "config", required_argument, NULL, O_CONFIG },
	NB_GOVERN_OPTIONS, { NULL, 0, NULL, 0 },
};

static int serve(int argc, char **argv)
{
	struct nb_server_opts o;
	struct nb_trial_opts trial;
	char slot_model[PATH_MAX];
	struct nb_llm llm;
	bool slots = false, uplink_opts = false;
	int c, r, ret;

	nb_server_opts_default(&o);
	nb_trial_opts_default(&trial);
	while ((c = nb_getopt("serve", argc, argv, "m:s:t:", serve_opts)) != -1) {
		bool up;
		if (c == O_CONFIG) /* read by serve_main */
			continue;
		if ((r = parse_uplink_opt(&o.uplink, c, optarg, &up)) <= 0) {
			uplink_opts |= up;
			if (r < 0)
				return NB_EXIT_USAGE;
		} else if ((r = parse_trial_opt(&trial, c, optarg)) <= 0) {
			slots |= c == O_SLOTS_DIR;
			if (r < 0)
				return NB_EXIT_USAGE;
		} else if (parse_opt(&o, c, optarg)) {
			return NB_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return nb_usage_error("serve", "unexpected argument '%s'", argv[optind]);
	if (!o.model && !slots)
		return nb_usage_error("serve", "no model (-m MODEL.nib or --slots-dir DIR)");
	if (o.model && slots)
		return nb_usage_error("serve", "-m and --slots-dir exclude each other");
	if (uplink_opts && !o.uplink.url)
		return nb_usage_error("serve", "the --uplink-* options need --uplink URL");
	if (o.uplink.url && !o.uplink.ca_file)
		return nb_usage_error("serve", "--uplink needs --uplink-ca FILE (the CA the cloud's "
				      "certificate must chain to)");
	if (!o.uplink.cert_file != !o.uplink.cert_key_file)
		return nb_usage_error("serve", "--uplink-cert and --uplink-cert-key go together");
	if (o.listen && check_listen(o.listen, o.api_key_file))
		return NB_EXIT_USAGE;
	if (slots) {
		trial.image_flags = nb_image_default_flags();
		if (nb_trial_start(&trial, slot_model, sizeof(slot_model)))
			return NB_EXIT_FAIL;
		o.model = slot_model;
	}
	ret = open_model(&o, &llm);
	if (ret)
		return ret;
	ret = nb_server_run(&o) ? NB_EXIT_FAIL : NB_EXIT_OK;
	nb_llm_close(&llm);
	return ret;
}

/* The options of --config FILE come before the command line's, and live
 * (optarg points into them) until the server ends. */
static int serve_main(int argc, char **argv)
{
	struct nb_argfile af;
	int ret;

	if (nb_argfile_open(&af, "serve", argc, argv, serve_opts))
		return NB_EXIT_USAGE;
	ret = serve(af.argc, af.argv);
	nb_argfile_close(&af);
	return ret;
}

const struct nb_applet nb_applet_serve = {
	.name = "serve",
	.summary = "OpenAI-compatible HTTP server on a local socket",
	.usage = "usage: nibble serve -m MODEL.nib [options]\n"
		 "       nibble serve --slots-dir DIR [options]\n\n"
		 "Serves POST /v1/chat/completions, POST /v1/completions (streaming with\n"
		 "\"stream\": true), GET /v1/models, GET /health and GET /metrics (Prometheus)\n"
		 "over HTTP/1.1 on an AF_UNIX socket, and optionally TCP with an API key.\n"
		 "Concurrent requests share the model through continuous batching. SIGTERM\n"
		 "stops accepting, lets running requests finish for --grace seconds, cancels\n"
		 "the rest with an error, and removes the socket.\n\n"
		 "  -m, --model FILE          model image\n"
		 "      --config FILE         options from FILE, one a line: 'name = value'\n"
		 "                            (long names; the command line's win)\n"
		 "      --slots-dir DIR       run the A/B slot of nibble update instead: a trial\n"
		 "                            slot is health-checked, then committed or rolled\n"
		 "                            back (docs/updates.md)\n"
		 "      --health-timeout S    seconds the health check may take ("
		 NB_KCONFIG_STR(CONFIG_UPDATE_HEALTH_TIMEOUT) ")\n"
		 "      --health-max-ms MS    slowest ms per token it accepts ("
		 NB_KCONFIG_STR(CONFIG_UPDATE_HEALTH_MAX_MS) ")\n"
		 "  -s, --socket PATH         AF_UNIX socket (" CONFIG_SERVER_SOCKET "); as root,\n"
		 "                            a missing directory of it is created\n"
		 "      --group NAME          group owning the socket (must exist)\n"
		 "      --mode OCTAL          socket permissions, 0..0777 (0660)\n"
		 "      --allow-uid U         only these users may connect (repeatable)\n"
		 "      --allow-gid G         only members of these groups, primary or\n"
		 "                            supplementary, may connect (repeatable)\n"
		 "      --listen HOST:PORT    also listen on TCP (requires --api-key-file)\n"
		 "      --api-key-file FILE   bearer key TCP clients must send: 16..4096 of\n"
		 "                            A-Z a-z 0-9 -._~+/ (= at the end)\n"
		 "  -t, --threads N           inference threads (the CPUs)\n"
		 "      --slots N             concurrent sequences\n"
		 "      --ctx N               context per sequence, at most the model's (the\n"
		 "                            model's, at most 2048 and what memory allows)\n"
		 "      --queue N             requests waiting for a slot; beyond: 429\n"
		 "      --chunk N             prompt tokens per batching step (32)\n"
		 "      --max-conns N         open connections, local and TCP each (256)\n"
		 "      --idle-timeout S      keep-alive idle seconds (60)\n"
		 "      --read-timeout S      seconds to receive a request (10), then 408\n"
		 "      --grace S             seconds to finish on SIGTERM (5)\n"
		 "      --max-body BYTES      request body limit (1 MiB), then 413\n"
		 "      --max-tokens N        cap of max_tokens (the context)\n\n"
		 "Cloud uplink (docs/uplink.md): overflow goes to an OpenAI-compatible endpoint\n"
		 "over verified TLS; the X-Nibble-Route header says where an answer came from.\n"
		 "      --uplink URL          https://host[:port]/v1\n"
		 "      --uplink-ca FILE      CA bundle its certificate must chain to (required)\n"
		 "      --uplink-pin SHA256   also require this public key (SPKI SHA-256, hex or\n"
		 "                            base64)\n"
		 "      --uplink-key-file F   its API key (the file must be mode 0600 or stricter)\n"
		 "      --uplink-cert F       client certificate for mutual TLS, with\n"
		 "      --uplink-cert-key F   its key\n"
		 "      --uplink-model N[=C]  N is served by the cloud (as C); for the local\n"
		 "                            model: the name the cloud gets (repeatable)\n"
		 "      --uplink-wait-target S  spill when the local wait would exceed S (2)\n"
		 "      --uplink-max N        cloud requests at once (4)\n"
		 "      --uplink-connect-timeout S  connect + handshake (5)\n"
		 "      --uplink-timeout S    seconds the cloud may stay silent (30)\n"
		 "      --uplink-breaker N    failures in a row that stop cloud use (3) for\n"
		 "      --uplink-backoff S    seconds, doubling while it stays down (5)\n"
		 "      --local-only          requests stay here unless they ask for\n"
		 "                            \"local_only\": false\n"
		 "\n"
		 NB_GOVERN_USAGE,
	.main = serve_main,
};
