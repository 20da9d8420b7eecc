/* `nibble serve`: options to struct nb_server_opts, then the event loop. */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/server/server.h"
#include "runtime/server/trial.h"

#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>

#define NB_STR2(x) #x
#define NB_STR(x) NB_STR2(x)

static int parse_num(const char *s, const char *what, double min, double max, double *out)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v >= min && v <= max)) {
		nb_err("serve: %s: '%s' is not a number in %g..%g", what, s, min, max);
		return -NB_EINVAL;
	}
	*out = v;
	return 0;
}

static int add_uid(struct nb_server_opts *o, const char *s)
{
	struct passwd *pw = getpwnam(s);
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (o->n_allow_uid == NB_SERVER_MAX_ALLOW)
		return -NB_EINVAL;
	if (pw)
		o->allow_uid[o->n_allow_uid++] = pw->pw_uid;
	else if (*s && !*end)
		o->allow_uid[o->n_allow_uid++] = (uid_t)v;
	else
		return -NB_EINVAL;
	return 0;
}

static int add_gid(struct nb_server_opts *o, const char *s)
{
	struct group *gr = getgrnam(s);
	char *end;
	unsigned long v = strtoul(s, &end, 10);

	if (o->n_allow_gid == NB_SERVER_MAX_ALLOW)
		return -NB_EINVAL;
	if (gr)
		o->allow_gid[o->n_allow_gid++] = gr->gr_gid;
	else if (*s && !*end)
		o->allow_gid[o->n_allow_gid++] = (gid_t)v;
	else
		return -NB_EINVAL;
	return 0;
}

enum { O_GROUP = 256, O_MODE, O_ALLOW_UID, O_ALLOW_GID, O_LISTEN, O_KEY, O_SLOTS, O_CTX,
       O_QUEUE, O_CHUNK, O_CONNS, O_IDLE, O_READ, O_GRACE, O_MAXBODY, O_MAXTOK,
       O_SLOTS_DIR, O_HEALTH_TIMEOUT, O_HEALTH_MAX_MS };

/* A/B slots (runtime/server/trial.h): options of their own. */
static int parse_trial_opt(struct nb_trial_opts *t, int c, const char *arg)
{
	switch (c) {
	case O_SLOTS_DIR: t->slots_dir = arg; return 0;
	case O_HEALTH_TIMEOUT: return parse_num(arg, "--health-timeout", 0.001, 86400, &t->timeout);
	case O_HEALTH_MAX_MS: return parse_num(arg, "--health-max-ms", 0.001, 1e6, &t->max_ms);
	default: return 1;
	}
}

static int parse_opt(struct nb_server_opts *o, int c, const char *arg)
{
	double v;
	int ret = 0;

	switch (c) {
	case 'm': o->model = arg; break;
	case 's': o->socket_path = arg; break;
	case O_GROUP: o->group = arg; break;
	case O_MODE: o->mode = (unsigned)strtoul(arg, NULL, 8); break;
	case O_ALLOW_UID: ret = add_uid(o, arg); break;
	case O_ALLOW_GID: ret = add_gid(o, arg); break;
	case O_LISTEN: o->listen = arg; break;
	case O_KEY: o->api_key_file = arg; break;
	case 't': ret = parse_num(arg, "--threads", 1, CONFIG_MAX_THREADS, &v); o->sched.threads = (uint32_t)v; break;
	case O_SLOTS: ret = parse_num(arg, "--slots", 1, 256, &v); o->sched.slots = (uint32_t)v; break;
	case O_CTX: ret = parse_num(arg, "--ctx", 1, 1 << 20, &v); o->sched.ctx = (uint32_t)v; break;
	case O_QUEUE: ret = parse_num(arg, "--queue", 1, 4096, &v); o->sched.queue = (uint32_t)v; break;
	case O_CHUNK: ret = parse_num(arg, "--chunk", 1, 4096, &v); o->sched.chunk = (uint32_t)v; break;
	case O_CONNS: ret = parse_num(arg, "--max-conns", 1, 65536, &v); o->max_conns = (uint32_t)v; break;
	case O_IDLE: ret = parse_num(arg, "--idle-timeout", 0.1, 86400, &o->idle_timeout); break;
	case O_READ: ret = parse_num(arg, "--read-timeout", 0.1, 3600, &o->read_timeout); break;
	case O_GRACE: ret = parse_num(arg, "--grace", 0, 3600, &o->grace); break;
	case O_MAXBODY: ret = parse_num(arg, "--max-body", 1024, 1 << 30, &v); o->http.max_body_bytes = (size_t)v; break;
	case O_MAXTOK: ret = parse_num(arg, "--max-tokens", 1, 1 << 20, &v); o->max_tokens = (uint32_t)v; break;
	default: ret = -NB_EINVAL;
	}
	return ret;
}

static int serve_main(int argc, char **argv)
{
	static const struct option opts[] = {
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
		{ "health-max-ms", required_argument, NULL, O_HEALTH_MAX_MS }, { NULL, 0, NULL, 0 },
	};
	struct nb_server_opts o;
	struct nb_trial_opts trial;
	char slot_model[PATH_MAX];
	bool slots = false;
	int c, r;

	nb_server_opts_default(&o);
	nb_trial_opts_default(&trial);
	while ((c = getopt_long(argc, argv, "m:s:t:", opts, NULL)) != -1) {
		if ((r = parse_trial_opt(&trial, c, optarg)) <= 0) {
			slots |= c == O_SLOTS_DIR;
			if (r < 0)
				return NB_EXIT_USAGE;
		} else if (parse_opt(&o, c, optarg)) {
			return NB_EXIT_USAGE;
		}
	}
	if (optind != argc || !o.model == !slots) {
		fprintf(stderr, "%s", nb_applet_serve.usage);
		return NB_EXIT_USAGE;
	}
	if (slots) {
		trial.image_flags = nb_image_default_flags();
		if (nb_trial_start(&trial, slot_model, sizeof(slot_model)))
			return NB_EXIT_FAIL;
		o.model = slot_model;
	}
	return nb_server_run(&o) ? NB_EXIT_FAIL : NB_EXIT_OK;
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
		 "      --slots-dir DIR       run the A/B slot of nibble update instead: a trial\n"
		 "                            slot is health-checked, then committed or rolled\n"
		 "                            back (docs/updates.md)\n"
		 "      --health-timeout S    seconds the health check may take (" NB_STR(CONFIG_UPDATE_HEALTH_TIMEOUT) ")\n"
		 "      --health-max-ms MS    slowest ms per token it accepts (" NB_STR(CONFIG_UPDATE_HEALTH_MAX_MS) ")\n"
		 "  -s, --socket PATH         AF_UNIX socket (" CONFIG_SERVER_SOCKET ")\n"
		 "      --group NAME          group owning the socket\n"
		 "      --mode OCTAL          socket permissions (0660)\n"
		 "      --allow-uid U         only these users may connect (repeatable)\n"
		 "      --allow-gid G         only these groups may connect (repeatable)\n"
		 "      --listen HOST:PORT    also listen on TCP (requires --api-key-file)\n"
		 "      --api-key-file FILE   bearer key TCP clients must send (16+ chars)\n"
		 "  -t, --threads N           inference threads (the CPUs)\n"
		 "      --slots N             concurrent sequences\n"
		 "      --ctx N               context per sequence (model's, at most 2048)\n"
		 "      --queue N             requests waiting for a slot; beyond: 429\n"
		 "      --chunk N             prompt tokens per batching step (32)\n"
		 "      --max-conns N         open connections (256)\n"
		 "      --idle-timeout S      keep-alive idle seconds (60)\n"
		 "      --read-timeout S      seconds to receive a request (10), then 408\n"
		 "      --grace S             seconds to finish on SIGTERM (5)\n"
		 "      --max-body BYTES      request body limit (1 MiB), then 413\n"
		 "      --max-tokens N        cap of max_tokens (the context)\n",
	.main = serve_main,
};
