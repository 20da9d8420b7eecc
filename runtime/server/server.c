/* The server's event loop: every socket, timer and scheduler notification
 * on one epoll. A request is read and parsed (runtime/server/http.c), mapped to a
 * generation job (runtime/server/openai.c), queued on the scheduler, and its text
 * streamed back as the scheduler's eventfd announces it. */
#include "runtime/base/sys.h"
#include "runtime/server/server.h"
#include "kernels/cpu.h"
#include "runtime/text/chat_template.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"
#include "runtime/server/openai.h"

#include <cjson/cJSON.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>


enum conn_state { C_READ, C_JOB, C_DRAIN };

#define API_KEY_MAX 4096 /* bytes of the --api-key-file key */
#define LINGER_S 2.0     /* seconds C_DRAIN reads what a refused client still sends */

struct conn {
	int fd;
	bool tcp;
	enum conn_state state;
	struct nb_http_parser http;
	char *inbuf;
	struct nb_openai_buf out; /* bytes not yet written */
	size_t out_off;
	bool close_after;         /* close once out is written (C_DRAIN: only the sending side) */
	uint32_t events;          /* the epoll interest armed */
	bool eof;                 /* the peer sent all it will (close or shutdown(SHUT_WR)) */
	bool head_only;           /* a HEAD request: its answer has no body */
	double t_active;          /* last byte in or out */
	double t_request;         /* first byte of the current request */
	/* the running job */
	struct nb_job *job;
	struct nb_openai_meta meta;
	bool stream, head_sent, keep_alive, http10;
	bool chunked;             /* the stream is chunked; else (HTTP/1.0) it ends at the close */
	char hold[4];             /* an incomplete UTF-8 character */
	size_t n_hold;
	struct nb_openai_buf text; /* whole answer (not streaming) */
	uint32_t n_prompt;
	/* the uplink (runtime/server/uplink.h) */
	bool cloud;               /* the running job is the cloud's */
	bool tried_cloud;         /* a cloud attempt failed or was refused: no second one */
	bool local_only, chat;
	char *body;               /* the request's JSON, kept for a change of route */
	size_t body_len;
	char cloud_model[128];
	bool dead;                /* closed: freed at the end of the loop iteration */
	struct conn *prev, *next;
};

struct server {
	const struct nb_server_opts *o;
	int ep, sfd, efd, unix_fd, tcp_fd;
	char api_key[API_KEY_MAX + 1];
	size_t api_key_len;
	const struct nb_llm *llm; /* the caller's (o->llm) */
	struct nb_sched sched;
	struct nb_chat_tmpl tmpl;
	struct nb_openai_limits lim;
	const char *model_name;
	char name_buf[128];
	struct conn *conns;
	struct conn *graveyard;   /* closed during this iteration */
	uint32_t n_conns, n_tcp;  /* open connections; each listener has max_conns */
	bool stopping;
	double stop_deadline;
	/* The slots' KV caches are set up on a thread of their own while the
	 * loop already answers /health with "loading" and generation requests
	 * with 503 (the model itself is open before the socket exists). */
	pthread_t loader;
	bool loader_running, loaded;
	int load_fd, load_ret;
	struct nb_sched_opts so;
	uint64_t next_id;
	int64_t created;
	atomic_ulong http_by_status[6]; /* 1xx..5xx, index status / 100 */
	atomic_ulong conns_total, conns_refused;
	struct nb_govern gov; /* open once loaded, if o->governor */
	bool gov_on;
	struct nb_uplink uplink;
	bool have_uplink;
	uint32_t max_tokens_cap;  /* a larger max_tokens is a 400 when served here */
};

/* The governor's code is linked only with CONFIG_GOVERNOR: a constant
 * false lets the compiler drop every call. */
#define GOV_ON(s) (IS_ENABLED(CONFIG_GOVERNOR) && (s)->gov_on)

/* epoll tags for the non-connection descriptors */
static char tag_signal, tag_event, tag_unix, tag_tcp, tag_load;

void nb_server_opts_default(struct nb_server_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->socket_path = CONFIG_SERVER_SOCKET;
	o->mode = 0660;
	o->max_conns = 256;
	o->idle_timeout = 60;
	o->read_timeout = 10;
	o->grace = 5;
	o->max_out = 4u << 20;
	o->sched = (struct nb_sched_opts){ .slots = CONFIG_SERVER_SLOTS, .ctx = 0,
					   .queue = CONFIG_SERVER_QUEUE, .chunk = 32, .threads = 0 };
	nb_http_limits_default(&o->http);
	nb_uplink_opts_default(&o->uplink);
}

/* ---- output --------------------------------------------------------------- */

/* Input is read only while a request can be taken (a running job lets
 * the next one wait, and a peer at EOF would make EPOLLIN fire forever)
 * or dropped (C_DRAIN, which closes at the peer's EOF); EPOLLHUP and
 * EPOLLERR come regardless. */
static int arm(struct server *s, struct conn *c, bool out)
{
	bool in = (c->state == C_READ && !c->eof) || c->state == C_DRAIN;
	uint32_t want = (in ? EPOLLIN : 0) | (out ? EPOLLOUT : 0);
	struct epoll_event ev = { .events = want, .data.ptr = c };

	if (c->events == want)
		return 0;
	c->events = want;
	return epoll_ctl(s->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void close_conn(struct server *s, struct conn *c);

/* Writes what the socket takes now; the rest waits for EPOLLOUT. */
static void flush(struct server *s, struct conn *c)
{
	while (c->out_off < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n <= 0) {
			close_conn(s, c);
			return;
		}
		c->out_off += (size_t)n;
		c->t_active = nb_sys_now();
	}
	if (c->out_off == c->out.len) {
		c->out.len = c->out_off = 0;
		if (c->close_after && c->state == C_DRAIN) {
			shutdown(c->fd, SHUT_WR);
			arm(s, c, false);
			return;
		}
		if (c->close_after) {
			close_conn(s, c);
			return;
		}
	} else if (c->out.len - c->out_off > s->o->max_out) {
		nb_warn("serve: dropping a client that does not read its answer");
		close_conn(s, c);
		return;
	}
	arm(s, c, c->out_off < c->out.len);
}

static void count_status(struct server *s, int status)
{
	if (status >= 100 && status < 600)
		atomic_fetch_add_explicit(&s->http_by_status[status / 100], 1, memory_order_relaxed);
}

/* Drops what was appended to out past len: a response or chunk that
 * could not be queued whole is not queued at all. */
static void out_truncate(struct conn *c, size_t len)
{
	if (c->out.data) {
		c->out.len = len;
		c->out.data[len] = '\0';
	}
}

/* The last resort when an answer cannot be built (out of memory): a fixed
 * 500; if even that cannot be queued, the connection closes after what is
 * queued, which a client sees as an error too. */
static void respond_failed(struct server *s, struct conn *c)
{
#define OOM_BODY "{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\",\"param\":null,\"code\":null}}"
	_Static_assert(sizeof(OOM_BODY) - 1 == 84, "Content-Length below");
	static const char r500[] =
		"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
		"Content-Length: 84\r\nConnection: close\r\n\r\n" OOM_BODY;
#undef OOM_BODY

	nb_warn("serve: out of memory: a request ends with an error");
	c->keep_alive = false;
	c->close_after = true;
	if (nb_openai_buf_append(&c->out, r500, sizeof(r500) - 1) == 0)
		count_status(s, 500);
}

/* A whole response with a body (left out for HEAD). Queued whole, or
 * respond_failed() instead. */
static void respond(struct server *s, struct conn *c, int status, const char *type,
		    const char *body, size_t len, const char *extra)
{
	const struct nb_http_resp r = { .status = status, .content_type = type,
					.content_length = (int64_t)len, .close = !c->keep_alive,
					.http10 = c->http10, .extra = extra };
	const size_t old = c->out.len;
	const bool with_body = !c->head_only;
	char head[1024];
	size_t n;

	c->head_only = false; /* this request is answered */
	if (nb_http_write_head(head, sizeof(head), &r, &n) ||
	    nb_openai_buf_append(&c->out, head, n) ||
	    (with_body && nb_openai_buf_append(&c->out, body, len))) {
		out_truncate(c, old);
		respond_failed(s, c);
		return;
	}
	count_status(s, status);
	c->close_after = !c->keep_alive;
}

/* OpenAI's error object; param and code NULL are null (code: the status's default). */
static void respond_error_code(struct server *s, struct conn *c, int status, const char *msg,
			       const char *param, const char *code, const char *extra)
{
	struct nb_openai_buf b;

	nb_openai_buf_init(&b);
	if (nb_openai_error_json(&b, status, msg, param, code) == 0)
		respond(s, c, status, "application/json", b.data, b.len, extra);
	else
		respond_failed(s, c);
	nb_openai_buf_free(&b);
}

static void respond_error(struct server *s, struct conn *c, int status, const char *msg,
			  const char *extra)
{
	respond_error_code(s, c, status, msg, NULL, NULL, extra);
}

/* One SSE event: one HTTP chunk, or as is when the stream ends at the
 * close (HTTP/1.0). Queued whole or not at all. */
static int put_chunk(struct conn *c, const struct nb_openai_buf *ev)
{
	const size_t old = c->out.len;
	char head[32];
	size_t n;
	int ret;

	if (!ev->len)
		return 0;
	if (!c->chunked)
		return nb_openai_buf_append(&c->out, ev->data, ev->len);
	ret = nb_http_chunk_head(head, sizeof(head), ev->len, &n);
	if (!ret)
		ret = nb_openai_buf_append(&c->out, head, n);
	if (!ret)
		ret = nb_openai_buf_append(&c->out, ev->data, ev->len);
	if (!ret)
		ret = nb_openai_buf_append(&c->out, "\r\n", 2);
	if (ret)
		out_truncate(c, old);
	return ret;
}

/* put_chunk, then ev is emptied for the next event. */
static int put_event(struct conn *c, struct nb_openai_buf *ev)
{
	int ret = put_chunk(c, ev);

	ev->len = 0;
	return ret;
}

/* ---- connections ---------------------------------------------------------- */

static void end_job(struct conn *c)
{
	if (c->job) {
		atomic_store(&c->job->cancel, true);
		c->job->owner = NULL;
		nb_job_unref(c->job);
		c->job = NULL;
	}
}

/* Other events of this epoll batch may still name c: it is freed at the
 * end of the iteration (bury), not here. */
static void close_conn(struct server *s, struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	end_job(c);
	epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->n_conns--;
	s->n_tcp -= c->tcp;
	c->next = s->graveyard;
	s->graveyard = c;
}

static void bury(struct server *s)
{
	while (s->graveyard) {
		struct conn *c = s->graveyard;
		s->graveyard = c->next;
		nb_openai_buf_free(&c->out);
		nb_openai_buf_free(&c->text);
		free(c->inbuf);
		free(c->body);
		free(c);
	}
}

static bool gid_allowed(const struct nb_server_opts *o, gid_t gid)
{
	for (uint32_t i = 0; i < o->n_allow_gid; i++)
		if (o->allow_gid[i] == gid)
			return true;
	return false;
}

/* The peer's supplementary groups as they were at connect()
 * (SO_PEERGROUPS, Linux 4.13): --allow-gid admits a group's members, not
 * only the processes whose primary group it is. */
static bool peer_groups_allowed(const struct server *s, int fd)
{
	gid_t few[64], *g = few;
	socklen_t len = sizeof(few);
	bool ok = false;

	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0) {
		if (errno != ERANGE || !(g = malloc(len)))
			return false; /* an older kernel: primary groups only */
		if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, g, &len) != 0)
			len = 0;
	}
	for (size_t i = 0; !ok && i < len / sizeof(gid_t); i++)
		ok = gid_allowed(s->o, g[i]);
	if (g != few)
		free(g);
	return ok;
}

static bool peer_allowed(const struct server *s, int fd)
{
	const struct nb_server_opts *o = s->o;
	struct ucred cr;
	socklen_t len = sizeof(cr);

	if (!o->n_allow_uid && !o->n_allow_gid)
		return true;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
		return false;
	for (uint32_t i = 0; i < o->n_allow_uid; i++)
		if (o->allow_uid[i] == cr.uid)
			return true;
	if (gid_allowed(o, cr.gid) || (o->n_allow_gid && peer_groups_allowed(s, fd)))
		return true;
	nb_warn("serve: refused a client with uid %u gid %u (not in the allowlist)",
		(unsigned)cr.uid, (unsigned)cr.gid);
	return false;
}

/* Local clients always get in: TCP clients, even unauthenticated ones,
 * fill only their own max_conns. */
static bool room_for(const struct server *s, bool tcp)
{
	return (tcp ? s->n_tcp : s->n_conns - s->n_tcp) < s->o->max_conns;
}

/* The request buffer (up to --max-body) exists while a request arrives:
 * idle connections hold none (free_idle_buffers). */
static int want_inbuf(struct server *s, struct conn *c)
{
	size_t cap = nb_http_bufsize(&s->o->http);

	if (c->inbuf)
		return 0;
	c->inbuf = malloc(cap);
	if (!c->inbuf)
		return -NB_ENOMEM;
	nb_http_parser_init(&c->http, &s->o->http, c->inbuf, cap);
	return 0;
}

static void free_inbuf(struct server *s, struct conn *c)
{
	free(c->inbuf);
	c->inbuf = NULL;
	nb_http_parser_init(&c->http, &s->o->http, NULL, 0);
}

static void accept_conns(struct server *s, int lfd, bool tcp)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct conn *c = NULL;
		struct epoll_event ev;

		if (fd < 0)
			return; /* EAGAIN, or a client that left already */
		if (s->stopping || !room_for(s, tcp) || (!tcp && !peer_allowed(s, fd)) ||
		    !(c = calloc(1, sizeof(*c)))) {
			atomic_fetch_add_explicit(&s->conns_refused, 1, memory_order_relaxed);
			close(fd);
			continue;
		}
		if (tcp)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->fd = fd;
		c->tcp = tcp;
		c->t_active = nb_sys_now();
		nb_http_parser_init(&c->http, &s->o->http, NULL, 0);
		c->events = EPOLLIN;
		ev = (struct epoll_event){ .events = c->events, .data.ptr = c };
		if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
			continue;
		}
		c->next = s->conns;
		if (s->conns)
			s->conns->prev = c;
		s->conns = c;
		s->n_conns++;
		s->n_tcp += tcp;
		atomic_fetch_add_explicit(&s->conns_total, 1, memory_order_relaxed);
	}
}

/* ---- requests ------------------------------------------------------------- */

static bool path_is(const struct nb_http_req *r, const char *p)
{
	return r->path_len == strlen(p) && memcmp(r->path, p, r->path_len) == 0;
}

static bool authorized(const struct server *s, const struct conn *c, const struct nb_http_req *r)
{
	const char *tok;
	size_t len;
	unsigned char diff = 0;

	if (!c->tcp)
		return true;
	if (!nb_http_bearer(r, &tok, &len) || len != s->api_key_len)
		return false;
	for (size_t i = 0; i < len; i++) /* constant time */
		diff |= (unsigned char)(tok[i] ^ s->api_key[i]);
	return diff == 0;
}

static void send_metrics(struct server *s, struct conn *c);

static void send_health(struct server *s, struct conn *c)
{
	const char *st = !s->loaded ? "loading" : s->stopping ? "stopping"
			 : atomic_load(&s->sched.stats.queue_depth) >= s->sched.o.queue ? "degraded"
			 : GOV_ON(s) && s->gov.degraded ? "degraded"
			 : "ready";
	char body[1280], gov[768] = "null", up[160] = "";
	int n;

	if (GOV_ON(s) && nb_govern_json(&s->gov, gov, sizeof(gov)) < 0)
		snprintf(gov, sizeof(gov), "null");
	if (s->have_uplink) {
		pthread_mutex_lock(&s->uplink.lock);
		snprintf(up, sizeof(up), ",\"uplink\":{\"breaker\":\"%s\",\"retry_in\":%.1f,"
			 "\"in_flight\":%u}", nb_breaker_name(s->uplink.breaker.state),
			 s->uplink.breaker.state == NB_BREAKER_OPEN
				 ? fmax(0, s->uplink.breaker.open_until - nb_sys_now()) : 0.0,
			 s->uplink.n_active);
		pthread_mutex_unlock(&s->uplink.lock);
	}
	n = snprintf(body, sizeof(body),
		     "{\"status\":\"%s\",\"slots\":%u,\"busy_slots\":%u,\"queue_depth\":%u,"
		     "\"governor\":%s%s}\n", st, s->sched.o.slots,
		     atomic_load(&s->sched.stats.busy_slots), atomic_load(&s->sched.stats.queue_depth),
		     gov, up);
	respond(s, c, strcmp(st, "ready") && strcmp(st, "degraded") ? 503 : 200,
		"application/json", body, (size_t)n, NULL);
}

/* GET /admin/governor: the governor's state; POST: {"mode": "quiet",
 * "budget_w": 5} changes mode and budget at run time (either may be left
 * out; budget_w 0 removes the budget). Authorized like every request: a
 * peer the socket lets in, or a TCP client with the API key. */
static void admin_governor(struct server *s, struct conn *c, const struct nb_http_req *r)
{
	const cJSON *mode, *budget;
	cJSON *root = NULL;
	char body[768];
	int n;

	if (!GOV_ON(s)) {
		respond_error(s, c, 404, "the governor is off (nibble serve --governor)", NULL);
		return;
	}
	if (r->method == NB_HTTP_POST) {
		root = cJSON_ParseWithLength(r->body, r->body_len);
		mode = root ? cJSON_GetObjectItemCaseSensitive(root, "mode") : NULL;
		budget = root ? cJSON_GetObjectItemCaseSensitive(root, "budget_w") : NULL;
		if (!cJSON_IsObject(root) || (mode && !cJSON_IsString(mode)) ||
		    (budget && (!cJSON_IsNumber(budget) || budget->valuedouble < 0 ||
				budget->valuedouble > 1000)) ||
		    nb_govern_set(&s->gov, mode ? mode->valuestring : NULL,
				  budget ? budget->valuedouble : -1)) {
			cJSON_Delete(root);
			respond_error(s, c, 400, "expected {\"mode\": \"performance|balanced|quiet|off\", "
				      "\"budget_w\": 0..1000}", NULL);
			return;
		}
		cJSON_Delete(root);
	} else if (r->method != NB_HTTP_GET && r->method != NB_HTTP_HEAD) {
		respond_error(s, c, 405, "use GET or POST", "Allow: GET, POST\r\n");
		return;
	}
	n = nb_govern_json(&s->gov, body, sizeof(body) - 1);
	if (n < 0) {
		respond_error(s, c, 500, "governor state too long", NULL);
		return;
	}
	body[n++] = '\n';
	respond(s, c, 200, "application/json", body, (size_t)n, NULL);
}

static void send_models(struct server *s, struct conn *c)
{
	struct nb_openai_buf b;

	nb_openai_buf_init(&b);
	if (nb_openai_models(&b, s->model_name, s->created) == 0)
		respond(s, c, 200, "application/json", b.data, b.len, NULL);
	else
		respond_error(s, c, 500, "out of memory", NULL);
	nb_openai_buf_free(&b);
}

/* The prompt and at least one generated token must fit a slot's context
 * (OpenAI's message and code, with the token counts). */
static void refuse_long_prompt(struct server *s, struct conn *c, uint32_t n_prompt, bool chat)
{
	char msg[256];

	snprintf(msg, sizeof(msg),
		 "This model's maximum context length is %u tokens; the prompt has %u tokens "
		 "and leaves no room for an answer",
		 s->sched.o.ctx, n_prompt);
	respond_error_code(s, c, 400, msg, chat ? "messages" : "prompt",
			   "context_length_exceeded", NULL);
}

/* A job that could not start (an error of nb_sched_submit, or the job's
 * error from the tokenizer thread) as the HTTP error the client gets. */
static void refuse_job(struct server *s, struct conn *c, int err, uint32_t n_prompt, bool chat)
{
	char msg[192];

	switch (err) {
	case -NB_EBUSY:
		respond_error(s, c, 429, "the server is busy: every slot is taken and the queue is full",
			      "Retry-After: 1\r\n");
		break;
	case -NB_ECANCELED:
		respond_error(s, c, 503, "the server is shutting down", "Retry-After: 5\r\n");
		break;
	case -NB_ENOMEM:
		respond_error(s, c, 503, "the server is out of memory for this prompt now: "
			      "try again later, or send a shorter prompt", "Retry-After: 1\r\n");
		break;
	case -NB_ERANGE:
		refuse_long_prompt(s, c, n_prompt, chat);
		break;
	case -NB_EINVAL:
		respond_error(s, c, 400, "the prompt cannot be tokenized", NULL);
		break;
	default:
		snprintf(msg, sizeof(msg), "the prompt could not be prepared: %s", nb_strerror(err));
		respond_error(s, c, 500, msg, NULL);
	}
}

/* The prompt text becomes a job; the scheduler tokenizes it on a thread of
 * its own (a long prompt would stall this loop), and the job's first news
 * says whether that worked (on_job_news). */
static int start_job(struct server *s, struct conn *c, struct nb_gen_request *g)
{
	struct nb_job *j = nb_job_new_text(g->prompt, g->prompt_len, g->specials, g->n_specials);
	int ret;

	if (!j)
		return -NB_ENOMEM;
	j->max_tokens = g->max_tokens ? g->max_tokens : s->sched.o.ctx;
	j->sp = g->sp;
	if (!g->seed_set)
		j->sp.seed = s->next_id * 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < g->n_stop && i < NB_STOP_MAX; i++) {
		j->stop_strs[i] = g->stop[i];
		g->stop[i] = NULL;
		j->n_stop++;
	}
	if (g->end_of_turn)
		j->stop_token = nb_chat_token_id(s->llm->tok, g->end_of_turn);
	j->owner = c;
	ret = nb_sched_submit(&s->sched, j);
	if (ret) {
		nb_job_unref(j);
		return ret;
	}
	c->job = j;
	c->n_prompt = 0; /* known once tokenized (on_job_news) */
	return 0;
}

/* The names a request's "model" may take: the one GET /v1/models lists.
 * A request without "model" gets this model too. */
static bool model_known(const struct server *s, const char *name)
{
	return strcmp(name, s->model_name) == 0;
}

/* OpenAI's answer to a model it does not have. */
static void refuse_model(struct server *s, struct conn *c, const char *name)
{
	char msg[256];

	snprintf(msg, sizeof(msg), "The model '%.100s' does not exist; this server has '%.100s'",
		 name, s->model_name);
	respond_error_code(s, c, 404, msg, "model", "model_not_found", NULL);
}

/* The parse limits: with an uplink, a max_tokens beyond the local context
 * may go to the cloud, so only serve_local holds it to the cap. */
static struct nb_openai_limits parse_limits(const struct server *s)
{
	struct nb_openai_limits lim = s->lim;

	if (s->have_uplink)
		lim.max_tokens = 0;
	return lim;
}

static int parse_request(struct server *s, const char *body, size_t len, bool chat,
			 struct nb_gen_request *g, struct nb_openai_error *err)
{
	const struct nb_openai_limits lim = parse_limits(s);

	return chat ? nb_openai_parse_chat(body, len, &lim, g, err)
		    : nb_openai_parse_completion(body, len, &lim, g, err);
}

static void begin_answer(struct server *s, struct conn *c, const struct nb_gen_request *g,
			 bool cloud)
{
	c->state = C_JOB;
	c->stream = g->stream;
	c->cloud = cloud;
	c->meta = (struct nb_openai_meta){ .endpoint = g->endpoint, .id = ++s->next_id,
					   .created = (int64_t)time(NULL),
					   .model = cloud ? c->cloud_model : s->model_name,
					   .include_usage = g->include_usage };
	c->head_sent = false;
	c->n_hold = 0;
	c->text.len = 0;
	if (s->have_uplink)
		atomic_fetch_add(&s->uplink.stats.routed[cloud], 1);
}

/* Served here: the model must be this one, max_tokens within the cap. */
static void serve_local(struct server *s, struct conn *c, struct nb_gen_request *g)
{
	char msg[160];
	int ret;

	if (g->model && !model_known(s, g->model)) {
		refuse_model(s, c, g->model);
		return;
	}
	if (s->max_tokens_cap && g->max_tokens > s->max_tokens_cap) {
		snprintf(msg, sizeof(msg), "'max_tokens' must be at most %u here (got %u)",
			 s->max_tokens_cap, g->max_tokens);
		respond_error_code(s, c, 400, msg, "max_tokens", "invalid_value", NULL);
		return;
	}
	ret = start_job(s, c, g);
	if (ret)
		refuse_job(s, c, ret, 0, c->chat);
	else
		begin_answer(s, c, g, false);
}

/* To the cloud (runtime/server/uplink.h): its job's text streams back
 * like a local job's. */
static int start_cloud(struct server *s, struct conn *c, const struct nb_gen_request *g,
		       const char *cloud_model)
{
	struct nb_job *j = nb_job_new_text("", 0, NULL, 0);
	int ret;

	if (!j)
		return -NB_ENOMEM;
	j->owner = c;
	ret = nb_uplink_submit(&s->uplink, j, c->body, c->body_len, c->chat, cloud_model);
	if (ret) {
		nb_job_unref(j);
		return ret;
	}
	c->job = j;
	c->n_prompt = 0;
	snprintf(c->cloud_model, sizeof(c->cloud_model), "%s", cloud_model);
	begin_answer(s, c, g, true);
	return 0;
}

/* The estimated seconds before a new job would get a slot: none while a
 * slot is free, else the jobs ahead of it, per slot, times what one job
 * has taken (time to first token plus its tokens; 1 s before any ran). */
static double est_wait(const struct server *s, uint32_t max_tokens)
{
	const struct nb_sched_stats *st = &s->sched.stats;
	const uint32_t slots = s->sched.o.slots, busy = atomic_load(&st->busy_slots);
	const uint32_t queued = atomic_load(&st->queue_depth);
	const unsigned long n_ttft = atomic_load(&st->ttft_count), n_tpot = atomic_load(&st->tpot_count);
	double job = 1;

	if (busy + queued < slots)
		return 0;
	if (n_ttft && n_tpot)
		job = atomic_load(&st->ttft_sum_us) / 1e6 / (double)n_ttft +
		      atomic_load(&st->tpot_sum_us) / 1e6 / (double)n_tpot *
			      (max_tokens ? max_tokens : 128);
	return ((double)queued / slots + 0.5) * job;
}

static void refuse_route(struct server *s, struct conn *c, const struct nb_gen_request *g)
{
	char msg[256];

	if (c->local_only) {
		snprintf(msg, sizeof(msg), "The model '%.100s' is only served by the cloud, and this "
			 "request is local-only", g->model);
		respond_error_code(s, c, 400, msg, "model", "model_not_found", NULL);
	} else {
		snprintf(msg, sizeof(msg), "The model '%.100s' is served by the cloud, which cannot "
			 "be reached now", g->model);
		respond_error(s, c, 503, msg, "Retry-After: 5\r\n");
	}
}

static void route_request(struct server *s, struct conn *c, struct nb_gen_request *g)
{
	const char *cloud_model, *why;
	struct nb_route_in in;
	enum nb_route rt;

	if (!s->have_uplink) {
		serve_local(s, c, g);
		return;
	}
	cloud_model = nb_uplink_cloud_model(&s->uplink, g->model, s->model_name);
	in = (struct nb_route_in){
		.uplink = true, .cloud_ready = !c->tried_cloud && nb_uplink_ready_for(&s->uplink),
		.local_only = c->local_only, .ask = g->route,
		.model_local = !g->model || model_known(s, g->model), .model_cloud = cloud_model,
		.too_long = g->max_tokens && g->max_tokens + g->prompt_len / 4 > s->sched.o.ctx,
		.capacity_cut = atomic_load(&s->sched.stats.capacity_cut),
		.est_wait = est_wait(s, g->max_tokens), .wait_target = s->o->uplink.wait_target };
	rt = nb_route_decide(&in, &why);
	if (rt == NB_ROUTE_CLOUD && start_cloud(s, c, g, cloud_model) == 0) {
		nb_dbg("serve: request %llu to the cloud (%s)", (unsigned long long)s->next_id, why);
		return;
	}
	if (rt == NB_ROUTE_CLOUD) /* the last worker or the breaker's trial was just taken */
		c->tried_cloud = true;
	if (rt == NB_ROUTE_REFUSE || (!in.model_local && in.model_cloud))
		refuse_route(s, c, g);
	else
		serve_local(s, c, g);
}

static void handle_generate(struct server *s, struct conn *c, const struct nb_http_req *r,
			    bool chat)
{
	struct nb_gen_request g;
	struct nb_openai_error err;
	struct nb_openai_buf b;
	int ret;

	nb_gen_request_init(&g);
	nb_openai_buf_init(&b);
	ret = parse_request(s, r->body, r->body_len, chat, &g, &err);
	if (ret) {
		if (nb_openai_error_from(&b, &err) == 0)
			respond(s, c, err.status, "application/json", b.data, b.len, NULL);
		goto out;
	}
	c->chat = chat;
	c->tried_cloud = false;
	c->local_only = g.local_only_set ? g.local_only : s->o->uplink.local_only;
	free(c->body);
	c->body = NULL;
	if (s->have_uplink) {
		c->body = malloc(r->body_len + 1);
		if (!c->body) {
			respond_failed(s, c);
			goto out;
		}
		memcpy(c->body, r->body, r->body_len);
		c->body_len = r->body_len;
	}
	route_request(s, c, &g);
out:
	nb_openai_buf_free(&b);
	nb_gen_request_free(&g);
}

static void handle_request(struct server *s, struct conn *c)
{
	const struct nb_http_req *r = &c->http.req;
	bool get = r->method == NB_HTTP_GET || r->method == NB_HTTP_HEAD;

	c->keep_alive = r->keep_alive && !s->stopping;
	c->http10 = r->version == 10;
	c->head_only = r->method == NB_HTTP_HEAD;
	if (!authorized(s, c, r)) {
		c->keep_alive = false;
		respond_error(s, c, 401, "missing or wrong API key (Authorization: Bearer ...)",
			      "WWW-Authenticate: Bearer\r\n");
	} else if (path_is(r, "/health")) {
		get ? send_health(s, c) : respond_error(s, c, 405, "use GET", "Allow: GET\r\n");
	} else if (path_is(r, "/metrics")) {
		get ? send_metrics(s, c) : respond_error(s, c, 405, "use GET", "Allow: GET\r\n");
	} else if (path_is(r, "/admin/governor")) {
		admin_governor(s, c, r);
	} else if (!s->loaded && (path_is(r, "/v1/models") || path_is(r, "/v1/completions") ||
				  path_is(r, "/v1/chat/completions"))) {
		respond_error(s, c, 503, "the model is still loading", "Retry-After: 1\r\n");
	} else if (path_is(r, "/v1/models")) {
		get ? send_models(s, c) : respond_error(s, c, 405, "use GET", "Allow: GET\r\n");
	} else if (path_is(r, "/v1/chat/completions") || path_is(r, "/v1/completions")) {
		if (r->method != NB_HTTP_POST)
			respond_error(s, c, 405, "use POST", "Allow: POST\r\n");
		else if (s->stopping)
			respond_error(s, c, 503, "the server is shutting down", "Retry-After: 5\r\n");
		else
			handle_generate(s, c, r, path_is(r, "/v1/chat/completions"));
	} else {
		respond_error(s, c, 404, "no such endpoint", NULL);
	}
}

/* An answer that ends the connection while the client may still be
 * sending (a body after a 401): closing at once would reset the
 * connection, which can destroy the answer before the client reads it.
 * So input is read and dropped, the sending side closed once the answer
 * is out (flush), and the connection closed at the client's end or after
 * LINGER_S. */
static void start_drain(struct server *s, struct conn *c)
{
	c->state = C_DRAIN;
	c->close_after = true;
	c->t_active = nb_sys_now();
	free_inbuf(s, c);
}

/* The key is checked as soon as the head is there, before a body is
 * buffered; a refused client is answered and then disconnected, so that
 * it holds neither memory nor one of the connections. */
static bool refused_early(struct server *s, struct conn *c, int parsed)
{
	if (!c->tcp || !nb_http_head_done(&c->http) || authorized(s, c, &c->http.req))
		return false;
	c->keep_alive = false;
	c->http10 = c->http.req.version == 10;
	c->head_only = c->http.req.method == NB_HTTP_HEAD;
	respond_error(s, c, 401, "missing or wrong API key (Authorization: Bearer ...)",
		      "WWW-Authenticate: Bearer\r\n");
	if (parsed != NB_HTTP_DONE) /* a body is on its way */
		start_drain(s, c);
	flush(s, c);
	return true;
}

static void drain_input(struct server *s, struct conn *c)
{
	char sink[4096];

	for (int i = 0; i < 16; i++) { /* then the next epoll round */
		ssize_t n = recv(c->fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			close_conn(s, c);
			return;
		}
	}
}

/* Parses what arrived; answers complete requests (several if pipelined). */
static void on_readable(struct server *s, struct conn *c)
{
	if (c->state == C_DRAIN) {
		drain_input(s, c);
		return;
	}
	if (want_inbuf(s, c)) {
		close_conn(s, c);
		return;
	}
	for (;;) {
		size_t room;
		char *space = nb_http_space(&c->http, &room);
		ssize_t n = 0;
		int ret;

		if (c->state != C_READ)
			return; /* a job runs: the rest waits (pipelining) */
		if (space && room && !c->eof) {
			n = recv(c->fd, space, room, MSG_DONTWAIT);
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
				n = 0;
			} else if (n == 0) {
				c->eof = true; /* a half-close still gets its answers */
			} else if (n < 0) {
				close_conn(s, c);
				return;
			}
		}
		if (n > 0) {
			c->t_active = nb_sys_now();
			if (!c->t_request)
				c->t_request = c->t_active;
		}
		ret = nb_http_commit(&c->http, (size_t)n);
		if (ret >= 0 && refused_early(s, c, ret))
			return;
		if (nb_http_take_continue(&c->http) &&
		    nb_openai_buf_append(&c->out, NB_HTTP_CONTINUE, strlen(NB_HTTP_CONTINUE))) {
			respond_failed(s, c);
			flush(s, c);
			return;
		}
		if (ret < 0) {
			c->keep_alive = false;
			respond_error(s, c, nb_http_status(&c->http), "malformed request", NULL);
			flush(s, c);
			return;
		}
		if (ret == NB_HTTP_DONE) {
			handle_request(s, c);
			if (c->state == C_READ) {
				c->t_request = 0;
				if (!c->close_after)
					nb_http_reset_keep(&c->http);
			}
			flush(s, c);
			if (c->close_after || c->state != C_READ)
				return;
			continue; /* pipelined bytes may hold the next request */
		}
		if (n == 0) {
			if (c->eof) /* no request can complete any more */
				c->close_after = true;
			flush(s, c);
			return;
		}
	}
}

/* Pipelined requests wait while the answer before them is running or
 * still being written; they go on once both are done. After the peer's
 * EOF that is also where the connection learns it has nothing left to do. */
static void resume_pipeline(struct server *s, struct conn *c)
{
	if (!c->dead && c->state == C_READ && !c->close_after &&
	    (c->http.fill > 0 || c->eof) && c->out.len == 0)
		on_readable(s, c);
}

/* ---- job output -------------------------------------------------------- */

/* The status line, fields and (chat) the role chunk of a stream, queued
 * whole or not at all. HTTP/1.0 has no chunked coding: the stream is then
 * sent as is and ends when the connection closes (nginx talks 1.0 to its
 * upstreams by default; X-Accel-Buffering tells it to pass events on as
 * they come). */
static int stream_head(struct server *s, struct conn *c)
{
	struct nb_http_resp r = { .status = 200, .content_type = "text/event-stream",
				  .content_length = NB_HTTP_CHUNKED, .http10 = c->http10,
				  .extra = c->cloud ? "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
						      "X-Nibble-Route: cloud\r\n"
						    : "Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
						      "X-Nibble-Route: local\r\n" };
	const size_t old = c->out.len;
	struct nb_openai_buf ev;
	char head[512];
	size_t n;
	int ret;

	c->chunked = !c->http10;
	if (!c->chunked) {
		r.content_length = NB_HTTP_UNTIL_CLOSE;
		c->keep_alive = false;
	}
	r.close = !c->keep_alive;
	nb_openai_buf_init(&ev);
	ret = nb_http_write_head(head, sizeof(head), &r, &n);
	if (!ret)
		ret = nb_openai_buf_append(&c->out, head, n);
	if (!ret && c->meta.endpoint != NB_OPENAI_COMPLETION)
		ret = nb_openai_chunk_role(&ev, &c->meta);
	if (!ret)
		ret = put_chunk(c, &ev);
	nb_openai_buf_free(&ev);
	if (ret) {
		out_truncate(c, old);
		return ret;
	}
	c->head_sent = true;
	count_status(s, 200);
	return 0;
}

/* The new text of a job, with an incomplete trailing UTF-8 character held
 * back for the next piece (every chunk must be valid UTF-8 JSON): into
 * (streaming) or c->text (the whole answer). */
static int job_text(struct conn *c, const char *text, size_t len, bool last,
		    struct nb_openai_buf *into)
{
	char *joined = malloc(c->n_hold + len + 1);
	size_t n, keep;
	int ret = 0;

	if (!joined)
		return -NB_ENOMEM;
	memcpy(joined, c->hold, c->n_hold);
	memcpy(joined + c->n_hold, text, len);
	n = c->n_hold + len;
	keep = last ? n : nb_utf8_complete_len(joined, n);
	c->n_hold = n - keep;
	memcpy(c->hold, joined + keep, c->n_hold);
	into->len = 0;
	if (keep && c->stream) {
		ret = nb_openai_chunk_text(into, &c->meta, joined, keep);
	} else if (keep) {
		ret = nb_openai_buf_append(&c->text, joined, keep);
	}
	free(joined);
	return ret;
}

static bool finish_ok(enum nb_finish f)
{
	return f == NB_FINISH_STOP || f == NB_FINISH_LENGTH;
}

/* A job's text (and, streaming, the head before the first of it). A stream
 * whose job ends before any text with an error or a cancel has no head yet:
 * it gets a plain error status instead (finish_whole). */
static int job_output(struct server *s, struct conn *c, const char *text, size_t len,
		      enum nb_finish f)
{
	struct nb_openai_buf ev;
	int ret = 0;

	if (c->stream && !c->head_sent && (len || finish_ok(f)))
		ret = stream_head(s, c);
	if (ret || !(len || (f && c->n_hold)))
		return ret;
	nb_openai_buf_init(&ev);
	ret = job_text(c, text ? text : "", len, f != NB_FINISH_NONE, &ev);
	if (!ret && c->stream)
		ret = put_chunk(c, &ev);
	nb_openai_buf_free(&ev);
	return ret;
}

/* The end of a stream: the finish (or an error) event, usage if asked,
 * [DONE] and the last chunk; queued whole or not at all. */
static int finish_stream(struct conn *c, enum nb_finish f, uint32_t n_gen)
{
	const struct nb_openai_usage u = { c->n_prompt, n_gen };
	const size_t old = c->out.len;
	struct nb_openai_buf ev;
	int ret;

	nb_openai_buf_init(&ev);
	if (!finish_ok(f))
		ret = nb_openai_error_sse(&ev, f == NB_FINISH_CANCEL ? 503 : c->cloud ? 502 : 500,
					  f == NB_FINISH_CANCEL ? "cancelled: the server is shutting down"
					  : c->cloud ? "the cloud's answer broke off"
						     : "generation failed");
	else
		ret = nb_openai_chunk_finish(&ev, &c->meta, f);
	if (!ret)
		ret = put_event(c, &ev);
	if (!ret && finish_ok(f) && c->meta.include_usage) {
		ret = nb_openai_chunk_usage(&ev, &c->meta, &u);
		if (!ret)
			ret = put_event(c, &ev);
	}
	if (!ret)
		ret = nb_openai_chunk_done(&ev);
	if (!ret)
		ret = put_event(c, &ev);
	if (!ret && c->chunked)
		ret = nb_openai_buf_append(&c->out, "0\r\n\r\n", 5);
	nb_openai_buf_free(&ev);
	if (ret)
		out_truncate(c, old);
	return ret;
}

static void finish_whole(struct server *s, struct conn *c, enum nb_finish f, uint32_t n_gen)
{
	const struct nb_openai_usage u = { c->n_prompt, n_gen };
	struct nb_openai_buf b;

	if (!finish_ok(f)) {
		respond_error(s, c, f == NB_FINISH_CANCEL ? 503 : 500,
			      f == NB_FINISH_CANCEL ? "cancelled: the server is shutting down"
						    : "generation failed",
			      f == NB_FINISH_CANCEL ? "Retry-After: 5\r\n" : NULL);
		return;
	}
	nb_openai_buf_init(&b);
	if (nb_openai_response(&b, &c->meta, c->text.data ? c->text.data : "", c->text.len, f,
			       &u) == 0)
		respond(s, c, 200, "application/json", b.data, b.len,
			c->cloud ? "X-Nibble-Route: cloud\r\n" : "X-Nibble-Route: local\r\n");
	else
		respond_failed(s, c);
	nb_openai_buf_free(&b);
}

/* The request is over: the connection may take the next one. */
static void end_request(struct conn *c)
{
	free(c->body);
	c->body = NULL;
	c->state = C_READ;
	c->t_request = 0;
	c->close_after = c->close_after || !c->keep_alive;
	if (!c->close_after)
		nb_http_reset_keep(&c->http);
}

/* Out of memory mid-answer: the job is cancelled and the client told, by
 * an error event (the stream began) or a 500; the connection then closes.
 * If even that cannot be queued, closing before the stream's last chunk
 * is the error a client sees: never a cut answer that looks whole. */
static void fail_job(struct server *s, struct conn *c)
{
	end_job(c);
	c->keep_alive = false;
	if (c->head_sent) {
		nb_warn("serve: out of memory: a stream ends with an error");
		finish_stream(c, NB_FINISH_ERROR, 0);
	} else {
		respond_failed(s, c);
	}
	c->close_after = true;
	end_request(c);
}

/* A request whose route changes once its first answer failed to start:
 * its body parsed again, the old job let go. */
static int reparse(struct server *s, struct conn *c, struct nb_gen_request *g)
{
	struct nb_openai_error err;

	end_job(c);
	c->state = C_READ;
	c->tried_cloud = true;
	nb_gen_request_init(g);
	return parse_request(s, c->body, c->body_len, c->chat, g, &err);
}

/* After a re-route: an answer given at once (an error) ends the request. */
static void rerouted(struct conn *c)
{
	if (c->state == C_READ)
		end_request(c);
}

/* The cloud failed before any of its answer reached the client: served
 * here after all, or, for a model only the cloud has, a 503. */
static void fall_back(struct server *s, struct conn *c)
{
	struct nb_gen_request g;

	atomic_fetch_add(&s->uplink.stats.fallbacks, 1);
	atomic_fetch_sub(&s->uplink.stats.routed[1], 1); /* counted where it ends */
	if (reparse(s, c, &g))
		respond_error(s, c, 500, "the request could not be parsed again", NULL);
	else if (g.model && !model_known(s, g.model))
		respond_error(s, c, 503, "the cloud failed and this model is not served here; "
			      "try again later", "Retry-After: 5\r\n");
	else
		serve_local(s, c, &g);
	nb_gen_request_free(&g);
	rerouted(c);
}

/* A prompt too long for a local slot goes to the cloud when it may. */
static bool spill_long(struct server *s, struct conn *c)
{
	struct nb_gen_request g;
	const char *model;

	if (!s->have_uplink || c->cloud || c->local_only || c->tried_cloud ||
	    !nb_uplink_ready_for(&s->uplink))
		return false;
	model = nb_uplink_cloud_model(&s->uplink, NULL, s->model_name);
	atomic_fetch_sub(&s->uplink.stats.routed[0], 1); /* counted where it ends */
	if (reparse(s, c, &g) || start_cloud(s, c, &g, model)) {
		respond_error(s, c, 503, "the prompt is too long for this device and the cloud "
			      "cannot take it now", "Retry-After: 5\r\n");
	}
	nb_gen_request_free(&g);
	rerouted(c);
	return true;
}

static void on_job_news(struct server *s, struct conn *c)
{
	enum nb_finish f;
	uint32_t n_gen;
	char *text;
	size_t len;
	int ret;

	f = nb_job_take(c->job, &text, &len, &n_gen);
	c->n_prompt = c->job->n_prompt; /* tokenized by now */
	if (c->cloud && f == NB_FINISH_ERROR && !c->head_sent) {
		/* nothing of the cloud's answer reached the client */
		free(text);
		fall_back(s, c);
		flush(s, c);
		return;
	}
	if (f && c->job->error == -NB_ERANGE && !c->head_sent && spill_long(s, c)) {
		free(text);
		flush(s, c);
		return;
	}
	if (f && c->job->error && !c->head_sent) {
		/* the prompt never ran (tokenizer thread): a plain error status */
		free(text);
		refuse_job(s, c, c->job->error, c->job->n_prompt,
			   c->meta.endpoint != NB_OPENAI_COMPLETION);
		end_job(c);
		end_request(c);
		flush(s, c);
		return;
	}
	ret = job_output(s, c, text, len, f);
	free(text);
	if (!ret && f && c->head_sent)
		ret = finish_stream(c, f, n_gen);
	else if (!ret && f)
		finish_whole(s, c, f, n_gen);
	if (ret) {
		fail_job(s, c);
	} else if (f) {
		end_job(c); /* the job may be on the ready list once more: no owner then */
		end_request(c);
	}
	flush(s, c);
}

static void on_sched_event(struct server *s)
{
	uint64_t v;
	struct nb_job *j, *next;

	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		nb_dbg("serve: eventfd read failed");
	for (int src = 0; src < 2; src++) {
		j = src == 0 ? nb_sched_ready(&s->sched)
		    : s->have_uplink ? nb_uplink_ready(&s->uplink) : NULL;
		for (; j; j = next) {
			struct conn *c = j->owner;
			next = j->next_ready;
			if (c && !c->dead && c->job == j)
				on_job_news(s, c);
			nb_job_unref(j);
		}
	}
	/* Pipelined requests that waited for a job. */
	for (struct conn *c = s->conns, *n; c; c = n) {
		n = c->next;
		resume_pipeline(s, c);
	}
}

static void handle_conn_event(struct server *s, struct conn *c, uint32_t events)
{
	if (c->dead)
		return;
	if (events & (EPOLLERR | EPOLLHUP)) {
		close_conn(s, c);
		return;
	}
	if (events & EPOLLOUT)
		flush(s, c);
	if (c->dead)
		return;
	if (events & EPOLLIN)
		on_readable(s, c);
	else if (events & EPOLLOUT)
		resume_pipeline(s, c);
}

/* ---- timers and shutdown ------------------------------------------------ */

/* A connection between requests keeps no buffers: a body of up to
 * --max-body, an answer, a whole text. */
static void free_idle_buffers(struct server *s, struct conn *c)
{
	if (c->inbuf && c->http.fill == 0)
		free_inbuf(s, c);
	if (c->out.len == 0)
		nb_openai_buf_free(&c->out);
	nb_openai_buf_free(&c->text);
}

static void check_timeouts(struct server *s)
{
	double t = nb_sys_now();

	for (struct conn *c = s->conns, *n; c; c = n) {
		n = c->next;
		if (c->state == C_DRAIN && t - c->t_active > LINGER_S)
			close_conn(s, c);
		if (c->state != C_READ)
			continue;
		if (!c->t_request && !c->close_after)
			free_idle_buffers(s, c);
		if (c->t_request && t - c->t_request > s->o->read_timeout) {
			/* a client too slow to send one request: 408 and close */
			c->keep_alive = false;
			respond_error(s, c, 408, "the request took too long to arrive", NULL);
			flush(s, c);
		} else if (!c->t_request && t - c->t_active > s->o->idle_timeout) {
			close_conn(s, c);
		}
	}
}

static void begin_shutdown(struct server *s)
{
	if (s->stopping)
		return;
	nb_info("serve: shutting down: no new requests, %.0f s for the running ones", s->o->grace);
	s->stopping = true;
	s->stop_deadline = nb_sys_now() + s->o->grace;
	if (s->unix_fd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, s->unix_fd, NULL);
		close(s->unix_fd);
		s->unix_fd = -1;
		unlink(s->o->socket_path);
	}
	if (s->tcp_fd >= 0) {
		epoll_ctl(s->ep, EPOLL_CTL_DEL, s->tcp_fd, NULL);
		close(s->tcp_fd);
		s->tcp_fd = -1;
	}
}

static bool jobs_running(const struct server *s)
{
	for (const struct conn *c = s->conns; c; c = c->next)
		if (c->job)
			return true;
	return false;
}

/* ---- metrics (Prometheus text format) ------------------------------------ */

static void buf_str(struct nb_openai_buf *b, const char *s)
{
	nb_openai_buf_append(b, s, strlen(s));
}

static void metric_hist(struct nb_openai_buf *b, const char *name, const char *help,
			atomic_ulong *hist, atomic_ulong *count, atomic_ullong *sum_us)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);

	nb_openai_buf_append(b, line, (size_t)n);
	for (int i = 0; i <= NB_SCHED_HIST; i++) {
		if (i < NB_SCHED_HIST)
			n = snprintf(line, sizeof(line), "%s_bucket{le=\"%g\"} %lu\n", name,
				     nb_sched_buckets[i], atomic_load(&hist[i]));
		else
			n = snprintf(line, sizeof(line), "%s_bucket{le=\"+Inf\"} %lu\n", name,
				     atomic_load(&hist[i]));
		nb_openai_buf_append(b, line, (size_t)n);
	}
	n = snprintf(line, sizeof(line), "%s_sum %.6f\n%s_count %lu\n", name,
		     atomic_load(sum_us) / 1e6, name, atomic_load(count));
	nb_openai_buf_append(b, line, (size_t)n);
}

static void metric(struct nb_openai_buf *b, const char *name, const char *type, const char *help,
		   const char *labels, double v)
{
	char line[320];
	int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s%s %.17g\n", name, help,
			 name, type, name, labels, v);
	nb_openai_buf_append(b, line, (size_t)n);
}

static void metric_governor(struct server *s, struct nb_openai_buf *b)
{
	char page[4096];
	int n = nb_govern_metrics(&s->gov, page, sizeof(page));

	if (n < 0)
		b->failed = true;
	else
		nb_openai_buf_append(b, page, (size_t)n);
}

static void uplink_metrics(struct server *s, struct nb_openai_buf *b)
{
	static const char *const kind[NB_UPF_N] = { "connect", "tls", "certificate", "status",
						    "cut", "timeout" };
	struct nb_uplink_stats *st = &s->uplink.stats;
	enum nb_breaker_state bs;
	unsigned long opens;
	char line[160];

	pthread_mutex_lock(&s->uplink.lock);
	bs = s->uplink.breaker.state;
	opens = s->uplink.breaker.opens;
	pthread_mutex_unlock(&s->uplink.lock);
	buf_str(b, "# HELP nibble_route_total Generation requests by where they were served.\n"
		   "# TYPE nibble_route_total counter\n");
	for (int i = 0; i < 2; i++) {
		int n = snprintf(line, sizeof(line), "nibble_route_total{route=\"%s\"} %lu\n",
				 i ? "cloud" : "local", atomic_load(&st->routed[i]));
		nb_openai_buf_append(b, line, (size_t)n);
	}
	buf_str(b, "# HELP nibble_uplink_failures_total Failed cloud attempts by cause.\n"
		   "# TYPE nibble_uplink_failures_total counter\n");
	for (int i = 0; i < NB_UPF_N; i++) {
		int n = snprintf(line, sizeof(line), "nibble_uplink_failures_total{cause=\"%s\"} %lu\n",
				 kind[i], atomic_load(&st->failures[i]));
		nb_openai_buf_append(b, line, (size_t)n);
	}
	metric(b, "nibble_uplink_fallbacks_total", "counter",
	       "Cloud attempts that failed before the answer began, then served here.", "",
	       (double)atomic_load(&st->fallbacks));
	metric(b, "nibble_uplink_broken_streams_total", "counter",
	       "Cloud answers cut after they began (the client got an error event).", "",
	       (double)atomic_load(&st->cloud_errors_after_start));
	metric(b, "nibble_uplink_breaker_open", "gauge",
	       "Circuit breaker: 0 closed, 1 open, 2 half-open (one trial request).", "", bs);
	metric(b, "nibble_uplink_breaker_opens_total", "counter", "Times the breaker opened.", "",
	       (double)opens);
	metric(b, "nibble_uplink_in_flight", "gauge", "Cloud requests queued or running.", "",
	       atomic_load(&st->in_flight));
	metric(b, "nibble_uplink_prompt_tokens_total", "counter", "Prompt tokens the cloud reported.",
	       "", (double)atomic_load(&st->prompt_tokens));
	metric(b, "nibble_uplink_completion_tokens_total", "counter",
	       "Completion tokens the cloud reported.", "", (double)atomic_load(&st->completion_tokens));
	metric(b, "nibble_uplink_connections_total", "counter", "TLS connections made.", "",
	       (double)atomic_load(&st->connects));
	metric(b, "nibble_uplink_reused_total", "counter", "Requests on a kept-alive connection.", "",
	       (double)atomic_load(&st->reuses));
	metric(b, "nibble_uplink_ttft_seconds_sum", "counter",
	       "Sum of request-to-first-cloud-token times.", "",
	       atomic_load(&st->ttft_sum_us) / 1e6);
	metric(b, "nibble_uplink_ttft_seconds_count", "counter", "Cloud answers with a first token.",
	       "", (double)atomic_load(&st->ttft_count));
}

static void send_metrics(struct server *s, struct conn *c)
{
	static const char *const outcome[] = { "running", "stop", "length", "cancelled", "error" };
	struct nb_sched_stats *st = &s->sched.stats;
	struct nb_openai_buf b;
	char line[160];

	nb_openai_buf_init(&b);
	buf_str(&b, "# HELP nibble_requests_total Generation requests by outcome.\n"
		    "# TYPE nibble_requests_total counter\n");
	for (int i = NB_FINISH_STOP; i <= NB_FINISH_ERROR; i++) {
		int n = snprintf(line, sizeof(line), "nibble_requests_total{outcome=\"%s\"} %lu\n",
				 outcome[i], atomic_load(&st->requests[i]));
		nb_openai_buf_append(&b, line, (size_t)n);
	}
	{
		int n = snprintf(line, sizeof(line), "nibble_requests_total{outcome=\"rejected\"} %lu\n",
				 atomic_load(&st->rejected));
		nb_openai_buf_append(&b, line, (size_t)n);
	}
	buf_str(&b, "# HELP nibble_http_responses_total HTTP responses by status class.\n"
		    "# TYPE nibble_http_responses_total counter\n");
	for (int i = 1; i <= 5; i++) {
		int n = snprintf(line, sizeof(line), "nibble_http_responses_total{code=\"%dxx\"} %lu\n", i,
				 atomic_load(&s->http_by_status[i]));
		nb_openai_buf_append(&b, line, (size_t)n);
	}
	metric(&b, "nibble_prompt_tokens_total", "counter", "Prompt tokens processed.", "",
	       (double)atomic_load(&st->prompt_tokens));
	metric(&b, "nibble_generated_tokens_total", "counter", "Tokens generated.", "",
	       (double)atomic_load(&st->gen_tokens));
	metric_hist(&b, "nibble_time_to_first_token_seconds", "From request to first token.",
		    st->ttft_hist, &st->ttft_count, &st->ttft_sum_us);
	metric_hist(&b, "nibble_time_per_output_token_seconds", "Between tokens of one stream.",
		    st->tpot_hist, &st->tpot_count, &st->tpot_sum_us);
	metric(&b, "nibble_queue_depth", "gauge", "Requests waiting for a slot.", "",
	       atomic_load(&st->queue_depth));
	metric(&b, "nibble_busy_slots", "gauge", "Slots generating.", "", atomic_load(&st->busy_slots));
	metric(&b, "nibble_slots", "gauge", "Slots configured.", "", s->sched.o.slots);
	metric(&b, "nibble_tokens_per_second", "gauge", "Tokens generated per second, last second.",
	       "", atomic_load(&st->tokens_per_s));
	metric(&b, "nibble_connections", "gauge", "Open client connections.", "", s->n_conns);
	metric(&b, "nibble_connections_total", "counter", "Connections accepted.", "",
	       (double)atomic_load(&s->conns_total));
	metric(&b, "nibble_connections_refused_total", "counter",
	       "Connections refused (limit, allowlist, shutdown).", "",
	       (double)atomic_load(&s->conns_refused));
	if (GOV_ON(s))
		metric_governor(s, &b);
	if (s->have_uplink)
		uplink_metrics(s, &b);
	if (b.failed) /* never a page with lines missing */
		respond_failed(s, c);
	else
		respond(s, c, 200, "text/plain; version=0.0.4", b.data, b.len, NULL);
	nb_openai_buf_free(&b);
}

/* ---- set-up --------------------------------------------------------------- */

/* --group's id, (gid_t)-1 without one. */
static int socket_group(const struct nb_server_opts *o, gid_t *gid)
{
	const struct group *g;

	*gid = (gid_t)-1;
	if (!o->group)
		return 0;
	errno = 0;
	g = getgrnam(o->group);
	if (!g) {
		if (errno)
			nb_err("serve: --group %s: %s", o->group, strerror(errno));
		else
			nb_err("serve: --group %s: there is no such group (groupadd --system %s "
			       "creates it)", o->group, o->group);
		return -NB_ENOENT;
	}
	*gid = g->gr_gid;
	return 0;
}

/* The socket's directory must exist. Run as root, nibble creates a
 * missing one (its parent must exist), as systemd's RuntimeDirectory=
 * does for the service: 0750 with the socket's group when only that group
 * may connect, else 0755. */
static int socket_dir(const struct nb_server_opts *o, gid_t gid)
{
	const char *slash = strrchr(o->socket_path, '/');
	mode_t mode = gid != (gid_t)-1 && !(o->mode & 0007) ? 0750 : 0755;
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;

	if (!slash || slash == o->socket_path)
		return 0;
	snprintf(dir, sizeof(dir), "%.*s", (int)(slash - o->socket_path), o->socket_path);
	if (stat(dir, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return 0;
		nb_err("serve: %s, the socket's directory, is not a directory", dir);
		return -NB_EINVAL;
	}
	if (errno != ENOENT) {
		nb_err("serve: the socket's directory %s: %s", dir, strerror(errno));
		return -NB_EIO;
	}
	if (geteuid() != 0) {
		nb_err("serve: the socket's directory %s does not exist: create it first (run as "
		       "root, nibble serve creates it)", dir);
		return -NB_ENOENT;
	}
	if (mkdir(dir, mode) != 0 || chmod(dir, mode) != 0 ||
	    (gid != (gid_t)-1 && chown(dir, (uid_t)-1, gid) != 0)) {
		nb_err("serve: cannot create the socket's directory %s: %s", dir, strerror(errno));
		return -NB_EIO;
	}
	nb_info("serve: created %s (mode %04o%s%s)", dir, (unsigned)mode,
		gid != (gid_t)-1 ? ", group " : "", gid != (gid_t)-1 ? o->group : "");
	return 0;
}

static int listen_unix(struct server *s)
{
	const struct nb_server_opts *o = s->o;
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct stat st;
	gid_t gid;
	int fd, ret;

	if (strlen(o->socket_path) >= sizeof(a.sun_path)) {
		nb_err("serve: socket path too long: %s", o->socket_path);
		return -NB_EINVAL;
	}
	strcpy(a.sun_path, o->socket_path);
	ret = socket_group(o, &gid);
	if (!ret)
		ret = socket_dir(o, gid);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -NB_EIO;
	/* A socket file left by a dead server is replaced; a live one is not. */
	if (lstat(o->socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&a, sizeof(a)) == 0) {
			nb_err("serve: %s: another server is listening there", o->socket_path);
			close(probe);
			close(fd);
			return -NB_EBUSY;
		}
		if (probe >= 0)
			close(probe);
		unlink(o->socket_path);
	}
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 128) != 0) {
		nb_err("serve: cannot create the socket %s: %s", o->socket_path, strerror(errno));
		close(fd);
		return -NB_EIO;
	}
	if (chmod(o->socket_path, o->mode & 0777) != 0)
		nb_warn("serve: chmod %s: %s", o->socket_path, strerror(errno));
	if (gid != (gid_t)-1 && chown(o->socket_path, (uid_t)-1, gid) != 0) {
		nb_err("serve: cannot give %s to group %s: %s", o->socket_path, o->group,
		       strerror(errno));
		close(fd);
		unlink(o->socket_path);
		return -NB_EPERM;
	}
	s->unix_fd = fd;
	return 0;
}

static int listen_tcp(struct server *s)
{
	const char *spec = s->o->listen, *colon = strrchr(spec, ':');
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[64];
	int fd = -1, one = 1;

	if (!colon || colon == spec || (size_t)(colon - spec) >= sizeof(host)) {
		nb_err("serve: --listen wants HOST:PORT, e.g. 127.0.0.1:8080");
		return -NB_EINVAL;
	}
	memcpy(host, spec[0] == '[' ? spec + 1 : spec, (size_t)(colon - spec));
	host[colon - spec - (spec[0] == '[' ? 2 : 0)] = '\0';
	if (getaddrinfo(host, colon + 1, &hints, &res) != 0) {
		nb_err("serve: --listen %s: not a numeric address and port", spec);
		return -NB_EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd >= 0)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0) {
		nb_err("serve: --listen %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -NB_EIO;
	}
	freeaddrinfo(res);
	s->tcp_fd = fd;
	return 0;
}

/* The characters of a Bearer token (RFC 6750 token68): a key with any
 * other could never be sent, so it is refused here. */
static size_t bad_key_char(const char *k, size_t n)
{
	size_t i = 0;

	while (i < n && (((k[i] | 32) >= 'a' && (k[i] | 32) <= 'z') || (k[i] >= '0' && k[i] <= '9') ||
			 (k[i] && strchr("-._~+/", k[i]))))
		i++;
	while (i < n && k[i] == '=')
		i++;
	return i;
}

static int read_api_key(struct server *s)
{
	const char *path = s->o->api_key_file;
	FILE *f = fopen(path, "r");
	struct stat st;
	size_t n, bad;
	bool more;

	if (!f) {
		nb_err("serve: --api-key-file %s: %s", path, strerror(errno));
		return -NB_ENOENT;
	}
	if (fstat(fileno(f), &st) == 0 && (st.st_mode & S_IROTH))
		nb_warn("serve: %s can be read by every user of this machine (chmod 600 it)", path);
	n = fread(s->api_key, 1, sizeof(s->api_key), f);
	more = fgetc(f) != EOF;
	fclose(f);
	while (n && s->api_key[n - 1] && strchr("\n\r \t", s->api_key[n - 1]))
		n--;
	if (n > API_KEY_MAX || more) {
		nb_err("serve: the API key in %s is longer than %d bytes", path, API_KEY_MAX);
		return -NB_EFORMAT;
	}
	s->api_key[n] = '\0';
	bad = bad_key_char(s->api_key, n);
	if (bad < n) {
		nb_err("serve: the API key in %s has a character a Bearer token cannot carry "
		       "(byte %zu, 0x%02x): use letters, digits and -._~+/ (= at the end)", path,
		       bad + 1, (unsigned char)s->api_key[bad]);
		return -NB_EFORMAT;
	}
	if (n < 16) {
		nb_err("serve: the API key in %s is shorter than 16 characters", path);
		return -NB_EINVAL;
	}
	s->api_key_len = n;
	return 0;
}

static int add_fd(struct server *s, int fd, void *tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = tag };
	return epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) == 0 ? 0 : -NB_EIO;
}

static void setup_template(struct server *s)
{
	const char *v, *name;
	size_t len;

	s->lim.tmpl = NULL;
	if (nb_image_meta(&s->llm->img, "chat_template", &v, &len) == 0 &&
	    nb_chat_tmpl_detect(&s->tmpl, v, len) == 0)
		s->lim.tmpl = &s->tmpl;
	name = nb_image_meta(&s->llm->img, "name", &v, &len) == 0 ? v : "model";
	snprintf(s->name_buf, sizeof(s->name_buf), "%.*s", name == v ? (int)len : 5, name);
	s->model_name = s->name_buf;
}

/* The loader thread: the slots' KV caches (faulted in whole, which takes
 * a while for large ones) and the threads; then a word on load_fd. */
static void *load_main(void *arg)
{
	struct server *s = arg;
	struct nb_sched_opts *so = &s->so;
	const uint64_t one = 1;
	struct nb_cpu cpu;
	int ret;

	nb_openai_limits_default(&s->lim);
	setup_template(s);
	nb_cpu_detect(&cpu);
	so->threads = so->threads ? so->threads
				  : (uint32_t)(cpu.ncpus < CONFIG_MAX_THREADS ? cpu.ncpus
									      : CONFIG_MAX_THREADS);
	s->lim.max_tokens = s->o->max_tokens ? s->o->max_tokens : so->ctx;
	s->max_tokens_cap = s->lim.max_tokens;
	ret = nb_sched_open(&s->sched, s->llm, so);
	s->load_ret = ret;
	if (write(s->load_fd, &one, sizeof(one)) < 0)
		nb_err("serve: cannot signal the end of loading");
	return NULL;
}

/* The governor's actuators that are the server's: threads, pacing, batch,
 * and the spill signal the uplink's routing reads. */
static void apply_governor(void *arg, const struct nb_gov_out *o)
{
	struct server *s = arg;

	nb_pool_set_active(&s->sched.pool, o->threads);
	nb_sched_throttle(&s->sched, o->duty, o->batch);
	atomic_store(&s->sched.stats.capacity_cut, o->spill);
}

/* Called on load_fd: the model is ready, or the server gives up. */
static int loaded(struct server *s)
{
	uint64_t v;

	if (read(s->load_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		nb_dbg("serve: load eventfd read failed");
	pthread_join(s->loader, NULL);
	s->loader_running = false;
	if (s->load_ret) {
		nb_err("serve: cannot set up %u slots of %u positions: %s", s->so.slots, s->so.ctx,
		       nb_strerror(s->load_ret));
		return s->load_ret;
	}
	if (s->o->governor && IS_ENABLED(CONFIG_GOVERNOR)) {
		int ret = nb_govern_open(&s->gov, &s->o->gov, nb_pool_size(&s->sched.pool),
					 s->sched.o.slots);
		if (ret)
			return ret;
		nb_govern_set_apply(&s->gov, apply_governor, s);
		s->gov_on = true;
	}
	s->loaded = true;
	nb_info("serve: ready: %s, %u slots x %u positions, queue %u, %u threads", s->model_name,
		s->so.slots, s->so.ctx, s->so.queue, s->so.threads);
	return 0;
}

static int setup(struct server *s, const struct nb_server_opts *o)
{
	sigset_t mask;
	int ret;

	s->o = o;
	s->so = o->sched;
	s->ep = s->sfd = s->efd = s->load_fd = s->unix_fd = s->tcp_fd = -1;
	s->created = (int64_t)time(NULL);
	s->llm = o->llm;
	if (o->listen && !o->api_key_file) {
		nb_err("serve: --listen needs --api-key-file (TCP clients must authenticate)");
		return -NB_EINVAL;
	}
	if (o->api_key_file && (ret = read_api_key(s)))
		return ret;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd >= 0 && o->uplink.url) {
		ret = nb_uplink_open(&s->uplink, &o->uplink, s->efd);
		if (ret)
			return ret;
		s->have_uplink = true;
	}
	s->load_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	s->so.notify_fd = s->efd;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGPIPE);
	/* Block before any thread starts, so every thread inherits the mask. */
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	s->sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	s->ep = epoll_create1(EPOLL_CLOEXEC);
	if (s->efd < 0 || s->load_fd < 0 || s->sfd < 0 || s->ep < 0)
		return -NB_EIO;
	ret = listen_unix(s);
	if (!ret && o->listen)
		ret = listen_tcp(s);
	if (!ret)
		ret = add_fd(s, s->sfd, &tag_signal);
	if (!ret)
		ret = add_fd(s, s->efd, &tag_event);
	if (!ret)
		ret = add_fd(s, s->unix_fd, &tag_unix);
	if (!ret && s->tcp_fd >= 0)
		ret = add_fd(s, s->tcp_fd, &tag_tcp);
	if (!ret)
		ret = add_fd(s, s->load_fd, &tag_load);
	if (!ret && pthread_create(&s->loader, NULL, load_main, s) != 0)
		ret = -NB_ENOMEM;
	if (!ret) {
		s->loader_running = true;
		nb_info("serve: listening on %s%s%s, loading %s", o->socket_path,
			o->listen ? " and " : "", o->listen ? o->listen : "", o->model);
	}
	return ret;
}

static void teardown(struct server *s)
{
	bool running;

	if (s->loader_running) /* stopped while loading: let it finish first */
		pthread_join(s->loader, NULL);
	/* Cancel what still runs: each job ends with an error its client gets
	 * (nb_sched_stop clears started). */
	running = s->sched.started;
	if (s->have_uplink)
		nb_uplink_stop(&s->uplink);
	if (running)
		nb_sched_stop(&s->sched);
	if (running || s->have_uplink)
		on_sched_event(s);
	for (struct conn *c = s->conns, *n; c; c = n) {
		n = c->next;
		flush(s, c);
		if (!c->dead)
			close_conn(s, c);
	}
	bury(s);
	if (s->unix_fd >= 0) {
		close(s->unix_fd);
		unlink(s->o->socket_path);
	}
	if (s->tcp_fd >= 0)
		close(s->tcp_fd);
	if (s->ep >= 0)
		close(s->ep);
	if (s->sfd >= 0)
		close(s->sfd);
	if (GOV_ON(s))
		nb_govern_close(&s->gov);
	nb_sched_close(&s->sched);
	if (s->have_uplink)
		nb_uplink_close(&s->uplink);
	if (s->efd >= 0)
		close(s->efd);
	if (s->load_fd >= 0)
		close(s->load_fd);
}

int nb_server_run(const struct nb_server_opts *o)
{
	struct server *s = calloc(1, sizeof(*s));
	struct epoll_event evs[64];
	double last_tick = nb_sys_now();
	int ret;

	if (!s)
		return -NB_ENOMEM;
	ret = setup(s, o);
	while (!ret) {
		/* the governor's LED patterns change every 1/8 s */
		int n = epoll_wait(s->ep, evs, 64, GOV_ON(s) ? 40 : 250);
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &tag_signal) {
				struct signalfd_siginfo si;
				if (read(s->sfd, &si, sizeof(si)) > 0)
					begin_shutdown(s);
			} else if (p == &tag_event) {
				on_sched_event(s);
			} else if (p == &tag_load) {
				ret = loaded(s);
			} else if (p == &tag_unix) {
				accept_conns(s, s->unix_fd, false);
			} else if (p == &tag_tcp) {
				accept_conns(s, s->tcp_fd, true);
			} else {
				handle_conn_event(s, p, evs[i].events);
			}
		}
		bury(s);
		if (GOV_ON(s))
			nb_govern_poll(&s->gov, nb_sys_now(), atomic_load(&s->sched.stats.queue_depth),
				       atomic_load(&s->sched.stats.busy_slots) > 0);
		if (nb_sys_now() - last_tick >= 0.25) {
			check_timeouts(s);
			last_tick = nb_sys_now();
		}
		if (s->stopping && !s->loader_running &&
		    (!jobs_running(s) || nb_sys_now() > s->stop_deadline))
			break;
	}
	teardown(s);
	free(s);
	return ret;
}
