/* The server in-process on the real stories260K model, with allocation
 * failures injected: the n-th allocation of the server's threads fails, for
 * every n a request makes. Each request must still end in exactly one
 * complete answer (the same text as without failures) or one clear error
 * (500; 503 with Retry-After when the prompt cannot be taken or tokenized
 * for lack of memory; an error event; or a connection closed before the
 * stream's last chunk); never a corrupt chunk, never a cut answer that
 * looks whole. The server's threads are the event loop, the scheduler's
 * inference thread and its tokenizer thread: all of them fail.
 *
 * Linked with -Wl,--wrap for malloc, calloc, realloc and strdup (Makefile:
 * LDFLAGS_test_server); cJSON allocates through cJSON_InitHooks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"
#include "runtime/model/llm.h"
#include "runtime/server/server.h"
#include "tools/import/ckpt.h"
#include "tools/import/image_write.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* ---- allocation failures ------------------------------------------------- */

static pthread_t test_thread;   /* the client: never fails */
static atomic_long fail_at;     /* 0: off; else the allocation that fails */
static atomic_long n_allocs;
static atomic_bool failed_one;

static bool inject(void)
{
	if (!atomic_load(&fail_at) || pthread_equal(pthread_self(), test_thread))
		return false;
	if (atomic_fetch_add(&n_allocs, 1) + 1 != atomic_load(&fail_at))
		return false;
	atomic_store(&failed_one, true);
	return true;
}

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);

void *__wrap_malloc(size_t n)
{
	return inject() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return inject() ? NULL : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
	return inject() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
	return inject() ? NULL : __real_strdup(s);
}

/* ---- the server ------------------------------------------------------------ */

struct fx {
	char model[64];
	char sock[64];
	struct nb_llm llm;          /* opened here, as serve does before the socket */
	struct nb_server_opts o;
	pthread_t thread;
	int ret;
};

static void write_model(const char *path)
{
	struct nb_ckpt c;
	struct nb_tensor *v;

	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, "models/stories260K/stories260K.bin",
					   "models/stories260K/tok512.bin"), 0);
	v = calloc(c.n_tensors, sizeof(*v));
	for (size_t i = 0; i < c.n_tensors; i++) {
		uint64_t n = c.tensors[i].shape[0] * (c.tensors[i].ndim > 1 ? c.tensors[i].shape[1] : 1);
		v[i] = (struct nb_tensor){ .name = c.tensors[i].name, .type = NB_DTYPE_F32,
					   .ndim = c.tensors[i].ndim, .data = c.tensors[i].data,
					   .size = n * 4 };
		memcpy(v[i].shape, c.tensors[i].shape, sizeof(v[i].shape));
	}
	assert_int_equal(nb_image_write(path, &(struct nb_image_spec){
				 .hp = &c.hp, .tok = &c.tok, .model_version = 1,
				 .tensors = v, .n_tensors = c.n_tensors }), 0);
	free(v);
	nb_ckpt_free(&c);
}

static void *server_main(void *arg)
{
	struct fx *f = arg;

	f->ret = nb_server_run(&f->o);
	return NULL;
}

/* Sends req on a new connection and reads until the server closes it. */
static size_t exchange(const struct fx *f, const char *req, char *out, size_t cap)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct timeval tv = { .tv_sec = 20 };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	size_t n = 0;
	ssize_t r = -1;

	assert_true(fd >= 0);
	strcpy(a.sun_path, f->sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	while (n < cap - 1 && (r = recv(fd, out + n, cap - 1 - n, 0)) > 0)
		n += (size_t)r;
	/* Closed by the server (a reset if it closed without reading the
	 * request), not a timeout. */
	if (r != 0 && errno != ECONNRESET)
		print_error("recv: %s after %zu bytes\n", strerror(errno), n);
	assert_true(r == 0 || errno == ECONNRESET);
	out[n] = '\0';
	close(fd);
	return n;
}

static const char health_req[] = "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

static bool idle(const struct fx *f)
{
	char buf[1024];

	exchange(f, health_req, buf, sizeof(buf));
	return strstr(buf, "\"status\":\"ready\"") && strstr(buf, "\"busy_slots\":0");
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	sigset_t mask;
	int fd;

	test_thread = pthread_self();
	strcpy(f->model, "/tmp/nb-server-XXXXXX");
	fd = mkstemp(f->model);
	close(fd);
	write_model(f->model);
	nb_llm_init(&f->llm);
	assert_int_equal(nb_llm_open(&f->llm, f->model, nb_image_default_flags()), 0);
	snprintf(f->sock, sizeof(f->sock), "/tmp/nb-server-%d.sock", (int)getpid());
	nb_server_opts_default(&f->o);
	f->o.model = f->model;
	f->o.llm = &f->llm;
	f->o.socket_path = f->sock;
	f->o.grace = 0;
	f->o.sched.slots = 1;
	f->o.sched.threads = 1;
	assert_int_equal(nb_llm_context(&f->llm, "serve", 0, f->o.sched.slots,
					nb_sys_mem_available(), &f->o.sched.ctx), 0);
	/* The server takes SIGTERM through a signalfd: blocked here first, so
	 * that it never reaches this thread. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	assert_int_equal(pthread_create(&f->thread, NULL, server_main, f), 0);
	for (int i = 0; i < 500 && access(f->sock, F_OK) != 0; i++)
		usleep(10000);
	for (int i = 0; i < 500 && !idle(f); i++)
		usleep(10000);
	assert_true(idle(f));
	cJSON_InitHooks(&(cJSON_Hooks){ .malloc_fn = __wrap_malloc, .free_fn = free });
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	cJSON_InitHooks(NULL);
	kill(getpid(), SIGTERM);
	pthread_join(f->thread, NULL);
	assert_int_equal(f->ret, 0);
	nb_llm_close(&f->llm);
	unlink(f->model);
	free(f);
	return 0;
}

/* ---- answers ---------------------------------------------------------------- */

enum outcome { WHOLE, ERROR_STATUS, ERROR_EVENT, CUT, NOTHING, N_OUTCOMES };

struct answer {
	int status;
	bool stream;
	char body[65536];
	size_t len;
	bool complete; /* the body's framing ended properly */
};

/* Parses one response strictly: false if the framing is broken. */
static bool parse_answer(const char *d, size_t n, struct answer *a)
{
	const char *he = strstr(d, "\r\n\r\n"), *p;
	char *end;

	memset(a, 0, sizeof(*a));
	if (!he || sscanf(d, "HTTP/1.1 %d ", &a->status) != 1)
		return false;
	p = he + 4;
	a->stream = strstr(d, "Transfer-Encoding: chunked\r\n") && strstr(d, "Transfer-Encoding") < he;
	if (!a->stream) {
		const char *cl = strstr(d, "Content-Length: ");
		size_t want;
		if (!cl || cl > he)
			return false;
		want = strtoul(cl + 16, NULL, 10);
		if ((size_t)(d + n - p) != want || want >= sizeof(a->body))
			return false; /* a whole answer is never cut */
		memcpy(a->body, p, want);
		a->len = want;
		a->complete = true;
		return true;
	}
	for (;;) {
		const char *eol = strstr(p, "\r\n");
		size_t size;

		if (!eol) /* closed before the last chunk: only ever between two chunks */
			return p == d + n;
		size = strtoul(p, &end, 16);
		if (end != eol || end == p)
			return false;
		p = eol + 2;
		if (size == 0) {
			a->complete = d + n - p == 2 && memcmp(p, "\r\n", 2) == 0;
			return a->complete;
		}
		if ((size_t)(d + n - p) < size + 2)
			return false; /* a chunk header without its data */
		if (memcmp(p + size, "\r\n", 2) != 0 || a->len + size >= sizeof(a->body))
			return false;
		memcpy(a->body + a->len, p, size);
		a->len += size;
		p += size + 2;
	}
}

/* The text of a whole answer, or NULL. */
static char *whole_text(const char *body, bool chat)
{
	cJSON *j = cJSON_Parse(body), *c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
	cJSON *t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c, "message"), "content")
			: cJSON_GetObjectItem(c, "text");
	char *s = cJSON_IsString(t) ? strdup(t->valuestring) : NULL;

	cJSON_Delete(j);
	return s;
}

/* Walks the SSE events of a stream: the text, whether it ended with a
 * finish chunk or an error event, and [DONE]. */
static void stream_events(char *body, bool chat, char *text, size_t cap, int *finishes,
			  int *errors, int *done)
{
	char *ev = body, *next;

	*text = '\0';
	*finishes = *errors = *done = 0;
	for (; (next = strstr(ev, "\n\n")); ev = next + 2) {
		cJSON *j, *c, *t, *fr;

		*next = '\0';
		assert_memory_equal(ev, "data: ", 6);
		if (strcmp(ev + 6, "[DONE]") == 0) {
			(*done)++;
			continue;
		}
		j = cJSON_Parse(ev + 6);
		assert_non_null(j);
		*errors += cJSON_GetObjectItem(j, "error") != NULL;
		c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
		t = chat ? cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content")
			 : cJSON_GetObjectItem(c, "text");
		if (cJSON_IsString(t))
			strncat(text, t->valuestring, cap - strlen(text) - 1);
		fr = cJSON_GetObjectItem(c, "finish_reason");
		*finishes += cJSON_IsString(fr);
		cJSON_Delete(j);
	}
}

/* Which allowed outcome a response is; fails the test if none. */
static enum outcome judge(const char *d, size_t n, bool chat, const char *ref)
{
	static struct answer a;
	char text[4096];
	int finishes, errors, done;
	char *t;

	if (n == 0)
		return NOTHING; /* refused at accept: the client sees the close */
	assert_true(parse_answer(d, n, &a));
	if (a.status != 200) {
		const char *retry = strstr(d, "\r\nRetry-After: 1\r\n");

		if (a.status != 500 && a.status != 503)
			print_error("%s\n", d);
		assert_true(a.status == 500 || a.status == 503);
		if (a.status == 503) /* out of memory for the prompt now: try again */
			assert_true(retry && retry < strstr(d, "\r\n\r\n"));
		assert_non_null(strstr(a.body, "\"type\":\"server_error\""));
		return ERROR_STATUS;
	}
	if (!a.stream) {
		t = whole_text(a.body, chat);
		assert_non_null(t);
		assert_string_equal(t, ref);
		free(t);
		return WHOLE;
	}
	stream_events(a.body, chat, text, sizeof(text), &finishes, &errors, &done);
	assert_true(strncmp(text, ref, strlen(text)) == 0); /* no piece missing */
	if (!a.complete)
		return CUT;
	assert_int_equal(done, 1);
	if (errors) {
		assert_int_equal(finishes, 0);
		return ERROR_EVENT;
	}
	assert_int_equal(finishes, 1);
	assert_string_equal(text, ref);
	return WHOLE;
}

static char *reference(const struct fx *f, const char *req, bool chat)
{
	static char buf[1 << 17];
	static struct answer a;
	char text[4096];
	int finishes, errors, done;
	size_t n = exchange(f, req, buf, sizeof(buf));

	assert_true(parse_answer(buf, n, &a));
	assert_int_equal(a.status, 200);
	if (!a.stream)
		return whole_text(a.body, chat);
	stream_events(a.body, chat, text, sizeof(text), &finishes, &errors, &done);
	assert_int_equal(finishes, 1);
	return strdup(text);
}

/* Fails allocation 1, 2, ... of the server until a request runs without
 * reaching the failing one: every allocation it makes has failed once. */
static void sweep(const struct fx *f, const char *path, const char *body, bool chat)
{
	static char buf[1 << 17];
	char req[1024], *ref;
	unsigned count[N_OUTCOMES] = { 0 };
	long at;
	int level = nb_log_get_level();

	snprintf(req, sizeof(req),
		 "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
		 path, strlen(body), body);
	ref = reference(f, req, chat);
	nb_log_set_level(NB_LOG_SILENT); /* a warning per failure otherwise */

	assert_non_null(ref);
	assert_true(strlen(ref) > 0);
	for (at = 1;; at++) {
		size_t n;

		atomic_store(&n_allocs, 0);
		atomic_store(&failed_one, false);
		atomic_store(&fail_at, at);
		n = exchange(f, req, buf, sizeof(buf));
		atomic_store(&fail_at, 0);
		count[judge(buf, n, chat, ref)]++;
		/* the cancelled job may still be in its slot */
		for (int i = 0; i < 200 && !idle(f); i++)
			usleep(5000);
		if (!atomic_load(&failed_one))
			break;
	}
	nb_log_set_level(level);
	printf("# %ld allocations: %u whole, %u error status, %u error event, %u cut, %u closed\n",
	       at - 1, count[WHOLE], count[ERROR_STATUS], count[ERROR_EVENT], count[CUT],
	       count[NOTHING]);
	assert_true(at > 20);
	assert_true(count[ERROR_STATUS] > 0);
	free(ref);
}

static void test_whole_completion_under_failures(void **state)
{
	sweep(*state, "/v1/completions",
	      "{\"prompt\":\"Once upon a time\",\"max_tokens\":6,\"temperature\":0}", false);
}

static void test_streamed_chat_under_failures(void **state)
{
	sweep(*state, "/v1/chat/completions",
	      "{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":6,"
	      "\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
	      true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole_completion_under_failures),
		cmocka_unit_test(test_streamed_chat_under_failures),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
