#include "runtime/server/uplink.h"
#include "firmware/https.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"
#include "runtime/server/openai.h"
#include "runtime/server/upresp.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#define RECV_STEP 0.25 /* seconds between looks at the job's cancel flag */
#define BUF_SIZE 16384
#define BACKOFF_MAX 16 /* times the first open period */

struct nb_upreq {
	struct nb_job *job;
	char *body; /* the request JSON to send, built by the loop */
	size_t len;
	bool chat;
	struct nb_upreq *next;
};

void nb_uplink_opts_default(struct nb_uplink_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->connect_timeout = 5;
	o->read_timeout = 30;
	o->max_concurrent = 4;
	o->wait_target = 2;
	o->breaker_failures = 3;
	o->breaker_backoff = 5;
}

/* ---- routing policy ------------------------------------------------------- */

enum nb_route nb_route_decide(const struct nb_route_in *in, const char **why)
{
	bool local_model = in->model_local || !in->model_cloud;

	if (!local_model) { /* only the cloud has it */
		if (in->local_only) {
			*why = "local-only request for a cloud model";
			return NB_ROUTE_REFUSE;
		}
		if (!in->uplink || !in->cloud_ready) {
			*why = "the cloud is unavailable";
			return NB_ROUTE_REFUSE;
		}
		*why = "cloud model";
		return NB_ROUTE_CLOUD;
	}
	*why = "local";
	if (!in->uplink || !in->model_local || in->local_only || in->ask == NB_OPENAI_ROUTE_LOCAL)
		return NB_ROUTE_LOCAL;
	if (in->ask == NB_OPENAI_ROUTE_CLOUD)
		*why = "asked";
	else if (in->too_long)
		*why = "context";
	else if (in->capacity_cut)
		*why = "capacity cut";
	else if (in->est_wait > in->wait_target)
		*why = "saturated";
	else
		return NB_ROUTE_LOCAL;
	if (in->cloud_ready)
		return NB_ROUTE_CLOUD;
	*why = "local (the cloud is unavailable)";
	return NB_ROUTE_LOCAL;
}

/* ---- circuit breaker -------------------------------------------------------- */

void nb_breaker_init(struct nb_breaker *b, uint32_t threshold, double base)
{
	memset(b, 0, sizeof(*b));
	b->threshold = threshold ? threshold : 1;
	b->base = b->backoff = base;
}

bool nb_breaker_would_allow(const struct nb_breaker *b, double now)
{
	switch (b->state) {
	case NB_BREAKER_CLOSED: return true;
	case NB_BREAKER_OPEN: return now >= b->open_until;
	default: return !b->probing;
	}
}

bool nb_breaker_allow(struct nb_breaker *b, double now)
{
	if (!nb_breaker_would_allow(b, now))
		return false;
	if (b->state != NB_BREAKER_CLOSED) {
		b->state = NB_BREAKER_HALF_OPEN;
		b->probing = true;
	}
	return true;
}

void nb_breaker_result(struct nb_breaker *b, bool ok, double now)
{
	if (ok) {
		b->state = NB_BREAKER_CLOSED;
		b->failures = 0;
		b->backoff = b->base;
		b->probing = false;
		return;
	}
	b->failures++;
	if (b->state == NB_BREAKER_HALF_OPEN) { /* the trial failed: wait longer */
		b->backoff = b->backoff * 2 < b->base * BACKOFF_MAX ? b->backoff * 2 : b->base * BACKOFF_MAX;
	} else if (b->state == NB_BREAKER_OPEN || b->failures < b->threshold) {
		return;
	}
	b->state = NB_BREAKER_OPEN;
	b->probing = false;
	b->open_until = now + b->backoff;
	b->opens++;
}

const char *nb_breaker_name(enum nb_breaker_state s)
{
	return s == NB_BREAKER_CLOSED ? "closed" : s == NB_BREAKER_OPEN ? "open" : "half-open";
}

/* ---- jobs with news ---------------------------------------------------------- */

static void mark_ready(struct nb_uplink *u, struct nb_job *j)
{
	const uint64_t one = 1;

	pthread_mutex_lock(&u->lock);
	if (!j->queued_ready) {
		j->queued_ready = true;
		j->next_news = u->ready;
		u->ready = j;
		nb_job_ref(j);
	}
	pthread_mutex_unlock(&u->lock);
	if (u->notify_fd >= 0 && write(u->notify_fd, &one, sizeof(one)) < 0)
		nb_dbg("uplink: eventfd write failed");
}

struct nb_job *nb_uplink_ready(struct nb_uplink *u)
{
	struct nb_job *list, *j;

	pthread_mutex_lock(&u->lock);
	list = u->ready;
	u->ready = NULL;
	for (j = list; j; j = j->next_news) {
		j->queued_ready = false;
		j->next_ready = j->next_news;
	}
	pthread_mutex_unlock(&u->lock);
	return list;
}

/* ---- one request -------------------------------------------------------------- */

struct run {
	struct nb_uplink *u;
	struct nb_job *job;
	bool got_text, got_done, cloud_error;
	enum nb_finish finish;
	uint32_t pieces, prompt_tokens, completion_tokens;
	bool has_usage;
	char message[160];
};

static int on_event(void *arg, const char *data, size_t len)
{
	struct run *r = arg;
	struct nb_upresp_chunk c;
	int ret = nb_upresp_chunk(data, len, &c);

	if (ret)
		return ret;
	if (c.error) {
		snprintf(r->message, sizeof(r->message), "the cloud reported: %.120s", c.text);
		r->cloud_error = true;
		free(c.text);
		return -NB_EIO;
	}
	if (c.done)
		r->got_done = true;
	if (c.finish)
		r->finish = c.finish;
	if (c.has_usage) {
		r->has_usage = true;
		r->prompt_tokens = c.prompt_tokens;
		r->completion_tokens = c.completion_tokens;
	}
	if (c.text_len) {
		if (!r->got_text) {
			double now = nb_sys_now();
			r->job->t_first = now;
			atomic_fetch_add(&r->u->stats.ttft_count, 1);
			atomic_fetch_add(&r->u->stats.ttft_sum_us,
					 (unsigned long long)((now - r->job->t_submit) * 1e6));
		}
		nb_job_append(r->job, c.text, c.text_len);
		r->got_text = true;
		r->pieces++;
		mark_ready(r->u, r->job);
	}
	free(c.text);
	return 0;
}

static int build_head(const struct nb_uplink *u, const struct nb_upreq *q, char *out, size_t cap)
{
	int n = snprintf(out, cap,
			 "POST %s%s HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: nibble-uplink\r\n"
			 "Content-Type: application/json\r\nAccept: text/event-stream\r\n"
			 "Content-Length: %zu\r\n%s%.*s%s\r\n",
			 u->base_path, q->chat ? "/chat/completions" : "/completions", u->host,
			 strcmp(u->port, "443") ? ":" : "", strcmp(u->port, "443") ? u->port : "", q->len,
			 u->key_len ? "Authorization: Bearer " : "", (int)u->key_len, u->key,
			 u->key_len ? "\r\n" : "");
	return n < 0 || (size_t)n >= cap ? -NB_EINVAL : n;
}

static struct nb_tls_conn *take_idle(struct nb_uplink *u)
{
	struct nb_tls_conn *c = NULL;

	pthread_mutex_lock(&u->lock);
	if (u->n_idle)
		c = u->idle[--u->n_idle];
	pthread_mutex_unlock(&u->lock);
	return c;
}

static void put_idle(struct nb_uplink *u, struct nb_tls_conn *c)
{
	pthread_mutex_lock(&u->lock);
	if (u->n_idle < NB_UPLINK_MAX_CONC && !atomic_load(&u->stopping)) {
		u->idle[u->n_idle++] = c;
		c = NULL;
	}
	pthread_mutex_unlock(&u->lock);
	if (c) {
		nb_tls_close(c);
		free(c);
	}
}

static enum nb_uplink_fail connect_failure(const struct nb_tls_conn *c, int err)
{
	if (err == -NB_ETIMEDOUT)
		return NB_UPF_TIMEOUT;
	if (err == -NB_EPERM)
		return NB_UPF_CERT;
	return c->tcp_up ? NB_UPF_TLS : NB_UPF_CONNECT;
}

/* The outcome of one attempt. */
enum attempt { A_OK, A_RETRY, A_FAIL, A_CANCEL };

/* A non-2xx answer in one log line: OpenAI's error message when the body
 * is its error object, else the body's start with its line breaks gone. */
static void status_message(struct run *r, const struct nb_upresp *p)
{
	cJSON *o = cJSON_Parse(p->err_body);
	const cJSON *m = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, "error"),
							  "message");
	int n = snprintf(r->message, sizeof(r->message), "the cloud answered %d: %.110s", p->status,
			 cJSON_IsString(m) ? m->valuestring : p->err_body);

	for (int i = 0; i < n && i < (int)sizeof(r->message); i++)
		if ((unsigned char)r->message[i] < ' ')
			r->message[i] = ' ';
	cJSON_Delete(o);
}

/* Reads the answer. A reused connection that the cloud closed while idle
 * gives nothing at all: that is worth one retry on a fresh one. */
static enum attempt read_answer(struct run *r, struct nb_tls_conn *c, bool reused,
				enum nb_uplink_fail *why, bool *keep)
{
	struct nb_uplink *u = r->u;
	struct nb_upresp p;
	char *buf = malloc(BUF_SIZE);
	double quiet = 0;
	size_t total = 0;
	enum attempt a = A_FAIL;
	int ret = 0;

	*keep = false;
	*why = NB_UPF_CUT;
	if (!buf)
		return A_FAIL;
	nb_upresp_init(&p, on_event, r);
	while (!nb_upresp_done(&p)) {
		int n;
		if (atomic_load(&r->job->cancel) || atomic_load(&u->stopping)) {
			a = A_CANCEL;
			goto out;
		}
		n = nb_tls_recv(c, buf, BUF_SIZE, RECV_STEP);
		if (n == -NB_ETIMEDOUT) {
			quiet += RECV_STEP;
			if (quiet < u->o.read_timeout)
				continue;
			snprintf(r->message, sizeof(r->message), "no answer for %.0f s", quiet);
			*why = NB_UPF_TIMEOUT;
			goto out;
		}
		quiet = 0;
		if (n <= 0) {
			if (reused && total == 0)
				a = A_RETRY;
			else if (n == 0 && nb_upresp_eof(&p) == 0)
				break;
			snprintf(r->message, sizeof(r->message), "the connection %s mid-answer",
				 n == 0 ? "closed" : "failed");
			goto out;
		}
		total += (size_t)n;
		ret = nb_upresp_feed(&p, buf, (size_t)n);
		if (p.state != NB_UPRESP_HEAD && p.status != 200) {
			while (!ret && !nb_upresp_done(&p) &&
			       (n = nb_tls_recv(c, buf, BUF_SIZE, 1)) > 0) /* the error's text */
				ret = nb_upresp_feed(&p, buf, (size_t)n);
			status_message(r, &p);
			*why = NB_UPF_STATUS;
			goto out;
		}
		if (ret) {
			if (!r->cloud_error)
				snprintf(r->message, sizeof(r->message), "malformed answer (%s)",
					 nb_strerror(ret));
			goto out;
		}
	}
	if (!r->got_done && !r->finish) {
		snprintf(r->message, sizeof(r->message), "the answer ended without a finish");
		goto out;
	}
	*keep = p.keep_alive && nb_upresp_done(&p);
	a = A_OK;
out:
	/* a 4xx other than 429 says nothing about the cloud's health */
	if (a == A_FAIL && *why == NB_UPF_STATUS && p.status != 429 && p.status < 500)
		r->cloud_error = true;
	nb_upresp_free(&p);
	free(buf);
	return a;
}

/* Head and body in one TLS record where they fit: one segment on the wire. */
static int send_request(struct nb_tls_conn *c, const char *head, size_t n, const struct nb_upreq *q)
{
	char *all = malloc(n + q->len);
	int ret;

	if (!all)
		return -NB_ENOMEM;
	memcpy(all, head, n);
	memcpy(all + n, q->body, q->len);
	ret = nb_tls_send(c, all, n + q->len);
	free(all);
	return ret;
}

/* One try on a connection from the pool or a new one. */
static enum attempt attempt(struct run *r, const struct nb_upreq *q, bool fresh,
			    enum nb_uplink_fail *why)
{
	struct nb_uplink *u = r->u;
	struct nb_tls_conn *c = fresh ? NULL : take_idle(u);
	bool reused = c != NULL, keep = false;
	char head[6144];
	enum attempt a;
	int n, ret;

	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return A_FAIL;
		ret = nb_tls_connect(c, &u->tls);
		if (ret) {
			*why = connect_failure(c, ret);
			snprintf(r->message, sizeof(r->message), "%s",
				 *why == NB_UPF_CERT ? "the certificate or pin was refused"
				 : *why == NB_UPF_TLS ? "the TLS handshake failed"
				 : *why == NB_UPF_TIMEOUT ? "connecting timed out" : "cannot connect");
			free(c);
			return A_FAIL;
		}
		atomic_fetch_add(&u->stats.connects, 1);
	} else {
		atomic_fetch_add(&u->stats.reuses, 1);
	}
	n = build_head(u, q, head, sizeof(head));
	ret = n < 0 ? n : send_request(c, head, (size_t)n, q);
	if (ret) {
		a = reused ? A_RETRY : A_FAIL;
		*why = NB_UPF_CUT;
		snprintf(r->message, sizeof(r->message), "sending the request failed");
	} else {
		a = read_answer(r, c, reused, why, &keep);
	}
	if (a == A_OK && keep) {
		put_idle(u, c);
	} else {
		nb_tls_close(c);
		free(c);
	}
	return a;
}

static void end_job(struct run *r, enum nb_finish f, int error)
{
	struct nb_job *j = r->job;

	pthread_mutex_lock(&j->lock);
	if (j->text_lost)
		f = NB_FINISH_ERROR;
	j->finish = f;
	j->error = error;
	j->n_prompt = r->prompt_tokens;
	j->n_gen = r->has_usage ? r->completion_tokens : r->pieces;
	j->t_done = nb_sys_now();
	pthread_mutex_unlock(&j->lock);
	mark_ready(r->u, j);
}

static void serve_one(struct nb_uplink *u, struct nb_upreq *q)
{
	struct run r = { .u = u, .job = q->job };
	enum nb_uplink_fail why = NB_UPF_CUT;
	enum attempt a = attempt(&r, q, false, &why);

	if (a == A_RETRY) /* the kept connection had gone stale */
		a = attempt(&r, q, true, &why);
	pthread_mutex_lock(&u->lock);
	if (a == A_OK || (a == A_FAIL && !r.cloud_error))
		nb_breaker_result(&u->breaker, a == A_OK, nb_sys_now());
	else
		u->breaker.probing = false; /* no verdict on the cloud */
	pthread_mutex_unlock(&u->lock);
	if (a == A_OK) {
		atomic_fetch_add(&u->stats.prompt_tokens, r.prompt_tokens);
		atomic_fetch_add(&u->stats.completion_tokens,
				 r.has_usage ? r.completion_tokens : r.pieces);
		end_job(&r, r.finish ? r.finish : NB_FINISH_STOP, 0);
		return;
	}
	if (a == A_CANCEL) {
		end_job(&r, NB_FINISH_CANCEL, 0);
		return;
	}
	atomic_fetch_add(&u->stats.failures[why], 1);
	nb_warn("serve: uplink: %s:%s: %s%s", u->host, u->port, r.message,
		r.got_text ? " (after the answer began)" : "");
	if (r.got_text)
		atomic_fetch_add(&u->stats.cloud_errors_after_start, 1);
	end_job(&r, NB_FINISH_ERROR, r.got_text ? 0 : NB_UPLINK_EFAILED);
}

static void *worker_main(void *arg)
{
	struct nb_uplink *u = arg;

	for (;;) {
		struct nb_upreq *q;

		pthread_mutex_lock(&u->lock);
		while (!u->head && !u->stopping)
			pthread_cond_wait(&u->wake, &u->lock);
		q = u->head;
		if (q) {
			u->head = q->next;
			if (!u->head)
				u->tail = NULL;
		}
		pthread_mutex_unlock(&u->lock);
		if (!q)
			return NULL; /* stopping, nothing left */
		if (atomic_load(&u->stopping)) {
			struct run r = { .u = u, .job = q->job };
			end_job(&r, NB_FINISH_CANCEL, 0);
		} else {
			serve_one(u, q);
		}
		pthread_mutex_lock(&u->lock);
		u->n_active--;
		pthread_mutex_unlock(&u->lock);
		atomic_fetch_sub(&u->stats.in_flight, 1);
		nb_job_unref(q->job);
		free(q->body);
		free(q);
	}
}

/* ---- the request body ----------------------------------------------------------- */

/* The client's JSON as the cloud gets it: the cloud's model name, always
 * streamed with usage (the loop turns it back into a whole answer when the
 * client did not stream), nibble's own fields left out. */
static char *cloud_body(const char *body, size_t len, const char *model, size_t *out_len)
{
	cJSON *o = cJSON_ParseWithLength(body, len), *so;
	char *s = NULL;

	if (!cJSON_IsObject(o))
		goto out;
	cJSON_DeleteItemFromObjectCaseSensitive(o, "route");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "local_only");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "stream");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "stream_options");
	cJSON_DeleteItemFromObjectCaseSensitive(o, "model");
	so = cJSON_CreateObject();
	if (!so || !cJSON_AddItemToObject(o, "stream_options", so) ||
	    !cJSON_AddTrueToObject(so, "include_usage") || !cJSON_AddTrueToObject(o, "stream") ||
	    (model && !cJSON_AddStringToObject(o, "model", model)))
		goto out;
	s = cJSON_PrintUnformatted(o);
	if (s)
		*out_len = strlen(s);
out:
	cJSON_Delete(o);
	return s;
}

int nb_uplink_submit(struct nb_uplink *u, struct nb_job *j, const char *body, size_t len,
		     bool chat, const char *cloud_model)
{
	struct nb_upreq *q = calloc(1, sizeof(*q));
	int ret = 0;

	if (!q || !(q->body = cloud_body(body, len, cloud_model, &q->len))) {
		free(q);
		return -NB_ENOMEM;
	}
	q->chat = chat;
	q->job = j;
	pthread_mutex_lock(&u->lock);
	if (atomic_load(&u->stopping))
		ret = -NB_ECANCELED;
	else if (u->n_active >= u->o.max_concurrent || !nb_breaker_allow(&u->breaker, nb_sys_now()))
		ret = -NB_EBUSY;
	if (!ret) {
		nb_job_ref(j);
		if (u->tail)
			u->tail->next = q;
		else
			u->head = q;
		u->tail = q;
		u->n_active++;
		atomic_fetch_add(&u->stats.in_flight, 1);
		pthread_cond_signal(&u->wake);
	}
	pthread_mutex_unlock(&u->lock);
	if (ret) {
		free(q->body);
		free(q);
	}
	return ret;
}

bool nb_uplink_ready_for(struct nb_uplink *u)
{
	bool ok;

	pthread_mutex_lock(&u->lock);
	ok = !atomic_load(&u->stopping) && u->n_active < u->o.max_concurrent &&
	     nb_breaker_would_allow(&u->breaker, nb_sys_now());
	pthread_mutex_unlock(&u->lock);
	return ok;
}

const char *nb_uplink_cloud_model(const struct nb_uplink *u, const char *name, const char *local)
{
	const char *want = name ? name : local;

	for (uint32_t i = 0; i < u->o.n_map; i++) {
		const char *m = u->o.map[i], *eq = strchr(m, '=');
		size_t n = eq ? (size_t)(eq - m) : strlen(m);
		if (strlen(want) == n && memcmp(m, want, n) == 0)
			return eq ? eq + 1 : m;
	}
	return name && strcmp(name, local) != 0 ? NULL : want;
}

/* ---- set-up --------------------------------------------------------------------- */

/* The key must be the owner's alone: a key others can read is refused,
 * not warned about, since it pays for the cloud. */
static int read_key(struct nb_uplink *u, const char *path)
{
	FILE *f = fopen(path, "r");
	struct stat st;
	size_t n;

	if (!f) {
		nb_err("serve: --uplink-key-file %s: %s", path, strerror(errno));
		return -NB_ENOENT;
	}
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & 077)) {
		nb_err("serve: --uplink-key-file %s can be read by others (mode %04o): chmod 600 it",
		       path, (unsigned)(st.st_mode & 07777));
		fclose(f);
		return -NB_EPERM;
	}
	n = fread(u->key, 1, sizeof(u->key) - 1, f);
	fclose(f);
	while (n && strchr("\n\r \t", u->key[n - 1]))
		n--;
	u->key[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)u->key[i] <= ' ' || u->key[i] == 0x7f) {
			nb_err("serve: --uplink-key-file %s: the key has a space or control character",
			       path);
			return -NB_EFORMAT;
		}
	if (!n) {
		nb_err("serve: --uplink-key-file %s is empty", path);
		return -NB_EFORMAT;
	}
	u->key_len = n;
	return 0;
}

static int parse_target(struct nb_uplink *u, const struct nb_uplink_opts *o)
{
	const char *path;
	size_t n;

	if (nb_https_parse_url(o->url, u->host, sizeof(u->host), u->port, sizeof(u->port), &path)) {
		nb_err("serve: --uplink '%s' is not an https://host[:port]/v1 URL", o->url);
		return -NB_EINVAL;
	}
	n = strlen(path);
	while (n && path[n - 1] == '/')
		n--;
	if (n >= sizeof(u->base_path))
		return -NB_EINVAL;
	memcpy(u->base_path, path, n);
	u->base_path[n] = '\0';
	return 0;
}

int nb_uplink_open(struct nb_uplink *u, const struct nb_uplink_opts *o, int notify_fd)
{
	uint8_t pin[32];
	int ret;

	memset(u, 0, sizeof(*u));
	u->o = *o;
	u->notify_fd = notify_fd;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->wake, NULL);
	nb_breaker_init(&u->breaker, o->breaker_failures, o->breaker_backoff);
	if (!o->ca_file) {
		nb_err("serve: --uplink needs --uplink-ca (the CA bundle the cloud's certificate "
		       "must chain to)");
		return -NB_EINVAL;
	}
	if (o->pin && nb_tls_parse_pin(o->pin, pin)) {
		nb_err("serve: --uplink-pin: '%s' is not a SHA-256 (64 hex digits or base64)", o->pin);
		return -NB_EINVAL;
	}
	ret = parse_target(u, o);
	if (!ret && o->key_file)
		ret = read_key(u, o->key_file);
	if (!ret)
		ret = nb_tls_ctx_open(&u->tls, &(struct nb_tls_opts){
			.who = "serve: uplink", .host = u->host, .port = u->port, .ca_file = o->ca_file,
			.pin = o->pin ? pin : NULL, .cert_file = o->cert_file,
			.key_file = o->cert_key_file, .connect_timeout = o->connect_timeout });
	if (ret)
		return ret;
	u->workers = calloc(o->max_concurrent, sizeof(*u->workers));
	if (!u->workers) {
		nb_tls_ctx_close(&u->tls);
		return -NB_ENOMEM;
	}
	for (; u->n_workers < o->max_concurrent; u->n_workers++)
		if (pthread_create(&u->workers[u->n_workers], NULL, worker_main, u) != 0)
			break;
	if (!u->n_workers) {
		nb_uplink_close(u);
		return -NB_ENOMEM;
	}
	u->o.max_concurrent = u->n_workers;
	nb_info("serve: uplink to %s:%s%s, %u at once", u->host, u->port, u->base_path,
		u->n_workers);
	return 0;
}

void nb_uplink_stop(struct nb_uplink *u)
{
	pthread_mutex_lock(&u->lock);
	atomic_store(&u->stopping, true);
	pthread_cond_broadcast(&u->wake);
	pthread_mutex_unlock(&u->lock);
	for (uint32_t i = 0; i < u->n_workers; i++)
		pthread_join(u->workers[i], NULL);
	u->n_workers = 0;
}

void nb_uplink_close(struct nb_uplink *u)
{
	struct nb_job *j, *next;

	nb_uplink_stop(u);
	free(u->workers);
	u->workers = NULL;
	while (u->n_idle) {
		nb_tls_close(u->idle[--u->n_idle]);
		free(u->idle[u->n_idle]);
	}
	for (j = nb_uplink_ready(u); j; j = next) {
		next = j->next_ready;
		nb_job_unref(j);
	}
	nb_tls_ctx_close(&u->tls);
	memset(u->key, 0, sizeof(u->key));
	pthread_cond_destroy(&u->wake);
	pthread_mutex_destroy(&u->lock);
}
