/* `nibble serve`: the OpenAI-compatible HTTP/1.1 server on a local socket.
 * One epoll event loop owns every socket; inference runs on the
 * scheduler's thread (runtime/server/sched.h) and never blocks on I/O. */
#ifndef NB_SERVER_H
#define NB_SERVER_H

#include "runtime/server/http.h"
#include "runtime/server/governor.h"
#include "runtime/server/sched.h"
#include "runtime/server/uplink.h"

#include <sys/types.h>

#define NB_SERVER_MAX_ALLOW 16

struct nb_server_opts {
	const char *model;         /* its path, for messages */
	const struct nb_llm *llm;  /* the model, opened by the caller, outliving the server */
	const char *socket_path;   /* AF_UNIX listener */
	const char *group;         /* group of the socket, or NULL */
	unsigned mode;             /* permissions of the socket (0660) */
	uid_t allow_uid[NB_SERVER_MAX_ALLOW]; /* SO_PEERCRED allowlist; empty: everyone */
	uint32_t n_allow_uid;
	gid_t allow_gid[NB_SERVER_MAX_ALLOW];
	uint32_t n_allow_gid;
	const char *listen;        /* "127.0.0.1:8080" TCP listener, or NULL */
	const char *api_key_file;  /* bearer key, required with listen */
	uint32_t max_conns;
	double idle_timeout;       /* seconds a keep-alive connection may idle */
	double read_timeout;       /* seconds to receive one whole request */
	double grace;              /* on SIGTERM: seconds in-flight requests may finish */
	size_t max_out;            /* bytes queued for a slow reader before it is dropped */
	uint32_t max_tokens;       /* cap of max_tokens (0: the context) */
	bool governor;              /* run the power/thermal governor, with gov */
	struct nb_govern_opts gov;
	struct nb_sched_opts sched; /* ctx: nb_llm_context's */
	struct nb_http_limits http;
	struct nb_uplink_opts uplink; /* url NULL: every request is served here */
};

void nb_server_opts_default(struct nb_server_opts *o);
/* Runs until SIGTERM/SIGINT (then 0) or a start-up failure (negative). */
int nb_server_run(const struct nb_server_opts *o);

#endif
