/* `nibble chat`: talk to a running `nibble serve` from the board's shell.
 * One POST /v1/chat/completions per turn over the AF_UNIX socket, streamed
 * (SSE over chunked HTTP); the conversation is kept for the next turn. */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct chat_opts {
	const char *socket, *system;
	uint32_t max_tokens; /* 0: the server's default */
	double temperature;
	int have_temp;
};

static int dial(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(a.sun_path))
		return -NB_EINVAL;
	strcpy(a.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
		nb_err("chat: %s: %s (is `nibble serve` running?)", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -NB_EIO;
	}
	return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -NB_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The SSE stream, de-chunked: prints every delta, collects the answer. */
struct reader {
	char buf[65536];
	size_t len;
	char *answer;
	size_t alen;
	int done, failed;
};

static void on_event(struct reader *r, const char *data)
{
	cJSON *j, *c;
	const char *s;

	if (strcmp(data, "[DONE]") == 0) {
		r->done = 1;
		return;
	}
	j = cJSON_Parse(data);
	if (!j)
		return;
	if ((c = cJSON_GetObjectItem(j, "error")) != NULL) {
		s = cJSON_GetStringValue(cJSON_GetObjectItem(c, "message"));
		if (r->alen) { /* end the partial answer's line first */
			fputc('\n', stdout);
			fflush(stdout);
		}
		nb_err("chat: server error: %s", s ? s : "?");
		r->failed = 1;
	}
	c = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "choices"), 0);
	s = cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(c, "delta"), "content"));
	if (s && *s) {
		size_t n = strlen(s);
		char *p = realloc(r->answer, r->alen + n + 1);
		fputs(s, stdout);
		fflush(stdout);
		if (p) {
			memcpy(p + r->alen, s, n + 1);
			r->answer = p;
			r->alen += n;
		}
	}
	cJSON_Delete(j);
}

/* Consumes whole SSE lines from the de-chunked text. */
static void on_text(struct reader *r, const char *p, size_t n)
{
	if (r->len + n >= sizeof(r->buf))
		n = sizeof(r->buf) - r->len - 1;
	memcpy(r->buf + r->len, p, n);
	r->len += n;
	for (;;) {
		char *nl = memchr(r->buf, '\n', r->len);
		size_t line;
		if (!nl)
			return;
		*nl = '\0';
		line = (size_t)(nl - r->buf) + 1;
		if (strncmp(r->buf, "data: ", 6) == 0)
			on_event(r, r->buf + 6);
		memmove(r->buf, r->buf + line, r->len - line);
		r->len -= line;
	}
}

/* The response as it arrives: status and headers first, then each HTTP
 * chunk as soon as it is complete, so the answer prints while the model
 * writes it. */
struct dechunk {
	char in[1 << 16];
	size_t len;
	int status; /* 0 until the head is in */
};

/* Consumes what is complete in d->in; 1 at the terminating chunk. */
static int dechunk_step(struct dechunk *d, struct reader *r)
{
	for (;;) {
		char *end, *data;
		unsigned long size;

		if (!d->status) {
			char *body = memmem(d->in, d->len, "\r\n\r\n", 4);
			if (!body)
				return 0;
			if (sscanf(d->in, "HTTP/1.%*d %d", &d->status) != 1)
				d->status = -1;
			if (d->status != 200)
				return 0; /* the error body is read to the end */
			body += 4;
			d->len -= (size_t)(body - d->in);
			memmove(d->in, body, d->len);
		}
		data = memmem(d->in, d->len, "\r\n", 2);
		if (!data)
			return 0;
		size = strtoul(d->in, &end, 16);
		if (end == d->in)
			return -1;
		data += 2;
		if (size == 0)
			return 1;
		if ((size_t)(data - d->in) + size + 2 > d->len)
			return 0;
		on_text(r, data, size);
		d->len -= (size_t)(data - d->in) + size + 2;
		memmove(d->in, data + size + 2, d->len);
	}
}

/* An answer other than 200: the server's error message (an OpenAI error
 * object), else the body as it came. */
static void report_refusal(int status, const char *head_end)
{
	const char *body = head_end ? head_end + 4 : "";
	cJSON *j = cJSON_Parse(body);
	const char *msg = cJSON_GetStringValue(
		cJSON_GetObjectItem(cJSON_GetObjectItem(j, "error"), "message"));

	if (msg)
		nb_err("chat: the server refused the request (HTTP %d): %s", status, msg);
	else
		nb_err("chat: HTTP %d from the server: %.200s", status, body);
	cJSON_Delete(j);
}

static int read_response(int fd, struct reader *r)
{
	static struct dechunk d;
	ssize_t n;
	int done = 0;

	d.len = 0;
	d.status = 0;
	while (!done && d.len < sizeof(d.in) - 1 &&
	       (n = recv(fd, d.in + d.len, sizeof(d.in) - 1 - d.len, 0)) > 0) {
		d.len += (size_t)n;
		if (d.status <= 200)
			done = dechunk_step(&d, r);
	}
	d.in[d.len] = '\0';
	if (d.status != 200) {
		if (d.status <= 0)
			nb_err("chat: not an HTTP response");
		else
			report_refusal(d.status, strstr(d.in, "\r\n\r\n"));
		return d.status <= 0 ? -NB_EFORMAT : -NB_EIO;
	}
	if (done < 0) {
		nb_err("chat: malformed chunked response");
		return -NB_EFORMAT;
	}
	return r->failed ? -NB_EIO : 0;
}

static int turn(const struct chat_opts *o, cJSON *messages, struct reader *r)
{
	cJSON *req = cJSON_CreateObject();
	char head[256], *body;
	int fd, ret;

	cJSON_AddItemReferenceToObject(req, "messages", messages);
	cJSON_AddBoolToObject(req, "stream", 1);
	if (o->max_tokens)
		cJSON_AddNumberToObject(req, "max_tokens", o->max_tokens);
	if (o->have_temp)
		cJSON_AddNumberToObject(req, "temperature", o->temperature);
	body = cJSON_PrintUnformatted(req);
	cJSON_Delete(req);
	if (!body)
		return -NB_ENOMEM;
	fd = dial(o->socket);
	if (fd < 0) {
		free(body);
		return fd;
	}
	snprintf(head, sizeof(head),
		 "POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
		 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", strlen(body));
	ret = send_all(fd, head, strlen(head));
	if (!ret)
		ret = send_all(fd, body, strlen(body));
	if (!ret)
		ret = read_response(fd, r);
	printf("\n");
	close(fd);
	free(body);
	return ret;
}

static void add_message(cJSON *messages, const char *role, const char *text)
{
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "role", role);
	cJSON_AddStringToObject(m, "content", text);
	cJSON_AddItemToArray(messages, m);
}

/* Everything is checked before the first connection. The ranges are the
 * server's: max_tokens 1..its --max-tokens (at most 2^20, the server
 * names its own cap), temperature 0..2. */
static int parse_opts(struct chat_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' }, { "system", required_argument, NULL, 'S' },
		{ "max-tokens", required_argument, NULL, 'n' }, { "temp", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	int c, ret = 0;

	while (!ret && (c = nb_getopt("chat", argc, argv, "s:n:", opts)) != -1) {
		switch (c) {
		case 's': o->socket = optarg; break;
		case 'S': o->system = optarg; break;
		case 'n':
			ret = nb_arg_u32("chat", "--max-tokens", optarg, 1, 1u << 20, &o->max_tokens);
			break;
		case 'T':
			ret = nb_arg_float("chat", "--temp", optarg, 0, 2, &o->temperature);
			o->have_temp = 1;
			break;
		default: return -NB_EINVAL;
		}
	}
	if (!ret && strlen(o->socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		nb_err("chat: --socket: '%s' is longer than a socket path may be", o->socket);
		ret = -NB_EINVAL;
	}
	return ret;
}

static int chat_main(int argc, char **argv)
{
	struct chat_opts o = { .socket = CONFIG_SERVER_SOCKET };
	cJSON *messages;
	char line[4096];
	int ret = 0;

	if (parse_opts(&o, argc, argv))
		return NB_EXIT_USAGE;
	messages = cJSON_CreateArray();
	if (!messages)
		return NB_EXIT_FAIL;
	if (o.system)
		add_message(messages, "system", o.system);
	if (optind < argc) { /* one turn: the words after the options */
		struct reader *r = calloc(1, sizeof(*r));
		line[0] = '\0';
		for (int i = optind; i < argc; i++)
			snprintf(line + strlen(line), sizeof(line) - strlen(line), "%s%s", i > optind ? " " : "", argv[i]);
		add_message(messages, "user", line);
		ret = r ? turn(&o, messages, r) : -NB_ENOMEM;
		if (r)
			free(r->answer);
		free(r);
	} else { /* a conversation: one user turn per line of stdin */
		while (!ret && fgets(line, sizeof(line), stdin)) {
			struct reader *r = calloc(1, sizeof(*r));
			line[strcspn(line, "\n")] = '\0';
			if (!line[0] || !r) {
				free(r);
				continue;
			}
			add_message(messages, "user", line);
			ret = turn(&o, messages, r);
			if (!ret)
				add_message(messages, "assistant", r->answer ? r->answer : "");
			free(r->answer);
			free(r);
		}
	}
	cJSON_Delete(messages);
	return ret ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_chat = {
	.name = "chat",
	.summary = "talk to a running nibble serve from the shell",
	.usage = "usage: nibble chat [options] [MESSAGE...]\n\n"
		 "With a MESSAGE: one turn, the answer streamed to stdout. Without: a\n"
		 "conversation, one user turn per line of stdin, the history kept.\n\n"
		 "  -s, --socket PATH       the server's socket (" CONFIG_SERVER_SOCKET ")\n"
		 "      --system TEXT       system message at the start of the conversation\n"
		 "  -n, --max-tokens N      at most N tokens per answer, 1 or more (the\n"
		 "                          server's default: until its context is full)\n"
		 "      --temp T            temperature 0..2; 0 = greedy (the server's: 1)\n\n"
		 "The server samples (see docs/api.md); its default repetition penalty is\n"
		 "off, so --temp 0 is plain greedy decoding.\n",
	.main = chat_main,
};
