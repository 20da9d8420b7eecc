/* The cloud uplink: requests the board should not serve itself (slots
 * saturated, capacity cut, too long for the context, a model only the
 * cloud has, or asked for) go to an OpenAI-compatible endpoint over
 * verified TLS (firmware/tls.h), and the answer comes back as the text of
 * an ordinary job (runtime/server/sched.h), so the event loop streams it
 * exactly as it streams local text. docs/uplink.md is the user's view.
 *
 * Each cloud request runs on one of max_concurrent worker threads with
 * blocking TLS I/O: the event loop never touches a TLS socket. A worker
 * appends text to the job and announces it on the server's eventfd; the
 * loop takes the jobs with news from nb_uplink_ready as it takes the
 * scheduler's. A job that fails before any text has error set
 * (nb_uplink_failed): the loop then serves the request locally. */
#ifndef NB_UPLINK_H
#define NB_UPLINK_H

#include "firmware/tls.h"
#include "runtime/server/sched.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define NB_UPLINK_MAX_MAP 16
#define NB_UPLINK_MAX_CONC 64

struct nb_uplink_opts {
	const char *url;           /* https://host[:port]/v1; NULL: no uplink */
	const char *key_file;      /* bearer key (not group/world readable), or NULL */
	const char *ca_file;       /* PEM CA bundle (required) */
	const char *pin;           /* SHA-256 of the server's SPKI (hex or base64), or NULL */
	const char *cert_file, *cert_key_file; /* client certificate (mutual TLS) */
	double connect_timeout;    /* TCP + TLS handshake, seconds (5) */
	double read_timeout;       /* seconds without a byte from the cloud (30) */
	uint32_t max_concurrent;   /* cloud requests at once (4) */
	double wait_target;        /* spill when the estimated queue wait exceeds it (2 s) */
	bool local_only;           /* the device default: nothing leaves unless asked */
	const char *map[NB_UPLINK_MAX_MAP]; /* "NAME=CLOUDNAME" or "NAME" (cloud-only, same name) */
	uint32_t n_map;
	uint32_t breaker_failures; /* consecutive failures that open the breaker (3) */
	double breaker_backoff;    /* first open period, doubling to 16x (5 s) */
};

void nb_uplink_opts_default(struct nb_uplink_opts *o);

/* ---- routing policy (pure, tests/unit/test_uplink.c) ---------------------- */

enum nb_route { NB_ROUTE_LOCAL, NB_ROUTE_CLOUD, NB_ROUTE_REFUSE };

struct nb_route_in {
	bool uplink;        /* configured */
	bool cloud_ready;   /* breaker allows and a worker is free */
	bool local_only;    /* the request's, else the device default */
	int ask;            /* enum nb_openai_route */
	bool model_local;   /* no model named, or the local one */
	bool model_cloud;   /* the name maps to a cloud model */
	bool too_long;      /* prompt (estimated) + max_tokens exceed the local context */
	bool capacity_cut;  /* the governor has cut local capacity */
	double est_wait;    /* estimated seconds before a local slot starts it */
	double wait_target;
};

/* The route, and why (static text for logs and metrics). REFUSE: the
 * request can be served neither locally nor by the cloud now. */
enum nb_route nb_route_decide(const struct nb_route_in *in, const char **why);

/* ---- circuit breaker (pure: the caller passes the time and holds a lock) -- */

enum nb_breaker_state { NB_BREAKER_CLOSED, NB_BREAKER_OPEN, NB_BREAKER_HALF_OPEN };

struct nb_breaker {
	enum nb_breaker_state state;
	uint32_t failures, threshold;
	double base, backoff, open_until;
	bool probing;       /* half-open: the one trial request is out */
	unsigned long opens;
};

void nb_breaker_init(struct nb_breaker *b, uint32_t threshold, double base);
/* May a request go now? Open turns half-open once the backoff is over and
 * lets one trial through (which must report nb_breaker_result). */
bool nb_breaker_allow(struct nb_breaker *b, double now);
/* Would nb_breaker_allow say yes (no side effects)? */
bool nb_breaker_would_allow(const struct nb_breaker *b, double now);
void nb_breaker_result(struct nb_breaker *b, bool ok, double now);
const char *nb_breaker_name(enum nb_breaker_state s);

/* ---- the uplink --------------------------------------------------------------- */

enum nb_uplink_fail { NB_UPF_CONNECT, NB_UPF_TLS, NB_UPF_CERT, NB_UPF_STATUS, NB_UPF_CUT,
		      NB_UPF_TIMEOUT, NB_UPF_N };

struct nb_uplink_stats {
	atomic_ulong routed[2];              /* local, cloud */
	atomic_ulong fallbacks;              /* cloud attempts served locally after all */
	atomic_ulong failures[NB_UPF_N];
	atomic_ulong cloud_errors_after_start; /* streams cut after text reached the client */
	atomic_ulong prompt_tokens, completion_tokens;
	atomic_ulong connects, reuses;
	atomic_ulong ttft_count;
	atomic_ullong ttft_sum_us;
	atomic_uint in_flight;
};

struct nb_upreq;

struct nb_uplink {
	struct nb_uplink_opts o;
	char host[256], port[8], base_path[512];
	char key[4097];
	size_t key_len;
	struct nb_tls_ctx tls;
	int notify_fd;
	pthread_mutex_t lock;   /* guards everything below */
	pthread_cond_t wake;
	struct nb_upreq *head, *tail; /* waiting for a worker */
	struct nb_tls_conn *idle[NB_UPLINK_MAX_CONC]; /* keep-alive connections */
	uint32_t n_idle;
	uint32_t n_active;      /* queued + running */
	struct nb_job *ready;   /* jobs with news for the loop */
	struct nb_breaker breaker;
	atomic_bool stopping;
	pthread_t *workers;
	uint32_t n_workers;
	struct nb_uplink_stats stats;
};

/* Reads the key, loads the TLS material, starts the workers. notify_fd:
 * the eventfd written when jobs have news. 0, or a negative error with a
 * message (the server does not start). */
int nb_uplink_open(struct nb_uplink *u, const struct nb_uplink_opts *o, int notify_fd);
/* Takes no more requests, cancels what waits or runs (each job ends with
 * NB_FINISH_CANCEL, announced as news) and joins the workers. */
void nb_uplink_stop(struct nb_uplink *u);
/* nb_uplink_stop, then drops unread news and frees everything. */
void nb_uplink_close(struct nb_uplink *u);

/* Breaker closed (or due for a trial) and a worker free. */
bool nb_uplink_ready_for(struct nb_uplink *u);
/* The model name the cloud gets for a request naming name (NULL: none
 * named); NULL if the map has no cloud model for it. local: the board's. */
const char *nb_uplink_cloud_model(const struct nb_uplink *u, const char *name, const char *local);

/* Sends the request body (the client's JSON) to the cloud as a stream:
 * chat selects /chat/completions, else /completions. The job (one
 * reference taken) gets the answer's text; it finishes with the cloud's
 * finish reason, or NB_FINISH_ERROR with error set. -NB_EBUSY when no
 * worker is free or the breaker is open. */
int nb_uplink_submit(struct nb_uplink *u, struct nb_job *j, const char *body, size_t len,
		     bool chat, const char *cloud_model);
/* As nb_sched_ready, for the uplink's jobs. */
struct nb_job *nb_uplink_ready(struct nb_uplink *u);

/* The job's error when the cloud failed before the answer began: the
 * request may still be served locally. */
#define NB_UPLINK_EFAILED (-NB_EIO)

#endif
