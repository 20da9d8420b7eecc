/* The HTTP/1.1 request parser and response writer: every accepted form
 * (also fed byte by byte and in random pieces, which must not change the
 * result), every rejection with its status, limits at and one past their
 * boundary, and the exact bytes of responses and chunks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/server/http.h"
#include "runtime/base/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct conn {
	struct nb_http_parser p;
	char *buf;
	size_t cap;
};

static void conn_open_cap(struct conn *c, const struct nb_http_limits *lim, size_t cap)
{
	c->cap = cap;
	c->buf = malloc(cap ? cap : 1);
	assert_non_null(c->buf);
	nb_http_parser_init(&c->p, lim, c->buf, cap);
}

static void conn_open(struct conn *c, const struct nb_http_limits *lim)
{
	conn_open_cap(c, lim, nb_http_bufsize(lim));
}

static void conn_close(struct conn *c)
{
	free(c->buf);
}

static uint32_t rnd(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

enum { WHOLE, BYTES, RANDOM };

/* Feeds s from *off in pieces (mode) until the parser stops needing more
 * or the input ends. Always calls nb_http_feed at least once, so pipelined
 * bytes already buffered are parsed. */
static int drive(struct conn *c, const char *s, size_t n, size_t *off, int mode, uint32_t *rng)
{
	int r;

	do {
		size_t k = mode == WHOLE ? n - *off : mode == BYTES ? 1 : 1 + rnd(rng) % 23, used = 0;
		if (k > n - *off)
			k = n - *off;
		r = nb_http_feed(&c->p, s + *off, k, &used);
		assert_true(used <= k);
		*off += used;
	} while (r == NB_HTTP_NEED_MORE && *off < n);
	return r;
}

static int parse_str(struct conn *c, const char *s)
{
	size_t off = 0;

	return drive(c, s, strlen(s), &off, WHOLE, NULL);
}

static void assert_slice(const char *p, size_t n, const char *want)
{
	assert_non_null(p);
	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

static void assert_same_slice(const char *a, size_t na, const char *b, size_t nb)
{
	assert_int_equal(na, nb);
	assert_true((a == NULL) == (b == NULL));
	if (na)
		assert_memory_equal(a, b, na);
}

static void assert_same_req(const struct nb_http_req *a, const struct nb_http_req *b)
{
	assert_int_equal(a->method, b->method);
	assert_same_slice(a->method_raw, a->method_len, b->method_raw, b->method_len);
	assert_same_slice(a->target, a->target_len, b->target, b->target_len);
	assert_same_slice(a->path, a->path_len, b->path, b->path_len);
	assert_same_slice(a->query, a->query_len, b->query, b->query_len);
	assert_int_equal(a->version, b->version);
	assert_int_equal(a->n_headers, b->n_headers);
	for (size_t i = 0; i < a->n_headers; i++) {
		assert_same_slice(a->headers[i].name, a->headers[i].name_len, b->headers[i].name,
				  b->headers[i].name_len);
		assert_same_slice(a->headers[i].value, a->headers[i].value_len, b->headers[i].value,
				  b->headers[i].value_len);
	}
	assert_int_equal(a->chunked, b->chunked);
	assert_int_equal(a->keep_alive, b->keep_alive);
	assert_int_equal(a->expect_continue, b->expect_continue);
	assert_int_equal(a->content_length, b->content_length);
	assert_same_slice(a->body, a->body_len, b->body, b->body_len);
}

static void assert_value(const struct nb_http_req *r, const char *name, const char *want)
{
	const struct nb_http_header *h = nb_http_find(r, name);

	assert_non_null(h);
	assert_slice(h->value, h->value_len, want);
}

/* ---- accepted forms ---- */

static const char CURL_POST[] =
	"POST /v1/chat/completions HTTP/1.1\r\n"
	"Host: localhost\r\n"
	"User-Agent: curl/8.5.0\r\n"
	"Accept: */*\r\n"
	"Authorization: Bearer sk-local-123\r\n"
	"Content-Type: application/json\r\n"
	"Content-Length: 61\r\n"
	"\r\n"
	"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n\n\n\n";

static void test_get_health(void **state)
{
	struct conn c;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(parse_str(&c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"), NB_HTTP_DONE);
	assert_int_equal(c.p.req.method, NB_HTTP_GET);
	assert_slice(c.p.req.method_raw, c.p.req.method_len, "GET");
	assert_slice(c.p.req.path, c.p.req.path_len, "/health");
	assert_null(c.p.req.query);
	assert_int_equal(c.p.req.version, 11);
	assert_true(c.p.req.keep_alive);
	assert_false(c.p.req.chunked);
	assert_int_equal(c.p.req.n_headers, 1);
	assert_value(&c.p.req, "host", "x");
	assert_int_equal(c.p.req.body_len, 0);
	assert_int_equal(nb_http_status(&c.p), 0);
	conn_close(&c);
}

static void test_curl_post(void **state)
{
	struct conn c;
	const char *tok;
	size_t n;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(parse_str(&c, CURL_POST), NB_HTTP_DONE);
	assert_int_equal(c.p.req.method, NB_HTTP_POST);
	assert_slice(c.p.req.path, c.p.req.path_len, "/v1/chat/completions");
	assert_int_equal(c.p.req.n_headers, 6);
	assert_value(&c.p.req, "CONTENT-TYPE", "application/json");
	assert_int_equal(c.p.req.content_length, 61);
	assert_slice(c.p.req.body, c.p.req.body_len,
		     "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}\n\n\n\n");
	assert_true(nb_http_bearer(&c.p.req, &tok, &n));
	assert_slice(tok, n, "sk-local-123");
	assert_int_equal(nb_http_received(&c.p), strlen(CURL_POST));
	conn_close(&c);
}

static void test_targets(void **state)
{
	static const struct {
		const char *line, *path, *query;
	} cases[] = {
		{ "GET /v1/models?x=1&y HTTP/1.1", "/v1/models", "x=1&y" },
		{ "GET /a%20b? HTTP/1.1", "/a%20b", "" },
		{ "GET /? HTTP/1.1", "/", "" },
		{ "GET http://localhost:8080/v1/models?a=b HTTP/1.1", "/v1/models", "a=b" },
		{ "GET HTTPS://h HTTP/1.1", "/", NULL },
		{ "GET http://h?q HTTP/1.1", "/", "q" },
		{ "OPTIONS * HTTP/1.1", "*", NULL },
	};
	char req[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conn c;
		conn_open(&c, NULL);
		snprintf(req, sizeof(req), "%s\r\nHost: h\r\n\r\n", cases[i].line);
		assert_int_equal(parse_str(&c, req), NB_HTTP_DONE);
		assert_slice(c.p.req.path, c.p.req.path_len, cases[i].path);
		if (cases[i].query)
			assert_slice(c.p.req.query, c.p.req.query_len, cases[i].query);
		else
			assert_null(c.p.req.query);
		conn_close(&c);
	}
}

static void test_methods(void **state)
{
	static const struct {
		const char *req;
		enum nb_http_method m;
	} cases[] = {
		{ "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", NB_HTTP_HEAD },
		{ "get / HTTP/1.1\r\nHost: h\r\n\r\n", NB_HTTP_OTHER }, /* methods are case-sensitive */
		{ "DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", NB_HTTP_OTHER },
		{ "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", NB_HTTP_POST },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conn c;
		conn_open(&c, NULL);
		assert_int_equal(parse_str(&c, cases[i].req), NB_HTTP_DONE);
		assert_int_equal(c.p.req.method, cases[i].m);
		assert_int_equal(c.p.req.body_len, 0);
		assert_non_null(c.p.req.body);
		conn_close(&c);
	}
}

static void test_keep_alive(void **state)
{
	static const struct {
		const char *req;
		bool keep;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: h\r\n\r\n", true },
		{ "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive, CLOSE\r\n\r\n", false },
		{ "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\n\r\n", false },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: ,, keep-alive ,\r\n\r\n", true },
		{ "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conn c;
		conn_open(&c, NULL);
		assert_int_equal(parse_str(&c, cases[i].req), NB_HTTP_DONE);
		assert_int_equal(c.p.req.keep_alive, cases[i].keep);
		conn_close(&c);
	}
}

static void test_field_values(void **state)
{
	const char *req = "GET / HTTP/1.1\r\n"
			  "hOsT:h\r\n"
			  "X-A: \t v a l \t \r\n"
			  "X-Empty:\r\n"
			  "X-Spaces:    \r\n"
			  "X-Obs: caf\xc3\xa9\xff\r\n"
			  "x-a: second\r\n"
			  "\r\n";
	struct conn c;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(parse_str(&c, req), NB_HTTP_DONE);
	assert_value(&c.p.req, "Host", "h");
	assert_value(&c.p.req, "X-A", "v a l"); /* the first of two */
	assert_value(&c.p.req, "x-empty", "");
	assert_value(&c.p.req, "X-SPACES", "");
	assert_value(&c.p.req, "x-obs", "caf\xc3\xa9\xff");
	assert_null(nb_http_find(&c.p.req, "X"));
	assert_null(nb_http_find(&c.p.req, "X-A-"));
	assert_slice(c.p.req.headers[0].name, c.p.req.headers[0].name_len, "hOsT");
	conn_close(&c);
}

static const char PIPELINE[] = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
			       "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
			       "GET /v1/models HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

static void test_pipelined(void **state)
{
	struct conn c;
	size_t used;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(nb_http_feed(&c.p, PIPELINE, strlen(PIPELINE), &used), NB_HTTP_DONE);
	assert_int_equal(used, strlen(PIPELINE));
	assert_slice(c.p.req.path, c.p.req.path_len, "/health");
	/* Nothing more is taken until the request is answered. */
	assert_int_equal(nb_http_feed(&c.p, "GET", 3, &used), NB_HTTP_DONE);
	assert_int_equal(used, 0);

	nb_http_reset_keep(&c.p);
	assert_true(nb_http_started(&c.p));
	assert_int_equal(nb_http_feed(&c.p, NULL, 0, &used), NB_HTTP_DONE);
	assert_slice(c.p.req.path, c.p.req.path_len, "/v1/completions");
	assert_slice(c.p.req.body, c.p.req.body_len, "hello");
	assert_true(c.p.req.keep_alive);

	nb_http_reset_keep(&c.p);
	assert_int_equal(nb_http_feed(&c.p, NULL, 0, &used), NB_HTTP_DONE);
	assert_slice(c.p.req.path, c.p.req.path_len, "/v1/models");
	assert_false(c.p.req.keep_alive);

	nb_http_reset_keep(&c.p);
	assert_false(nb_http_started(&c.p));
	assert_int_equal(nb_http_received(&c.p), 0);
	assert_int_equal(nb_http_feed(&c.p, NULL, 0, &used), NB_HTTP_NEED_MORE);
	assert_int_equal(c.p.fill, 0);
	conn_close(&c);
}

static const char CHUNKED[] = "POST /v1/chat/completions HTTP/1.1\r\n"
			      "Host: localhost\r\n"
			      "Transfer-Encoding: chunked\r\n"
			      "Content-Type: application/json\r\n"
			      "\r\n"
			      "5;name=val ; q=\"a b\\\"c\" ;flag\r\nhello\r\n"
			      "0006\r\n world\r\n"
			      "A\r\n0123456789\r\n"
			      "0\r\n"
			      "X-Trailer: 1\r\n"
			      "X-Other:  two \r\n"
			      "\r\n"
			      "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";

static void test_chunked(void **state)
{
	struct conn c;
	size_t used;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(nb_http_feed(&c.p, CHUNKED, strlen(CHUNKED), &used), NB_HTTP_DONE);
	assert_true(c.p.req.chunked);
	assert_slice(c.p.req.body, c.p.req.body_len, "hello world0123456789");
	assert_int_equal(c.p.req.content_length, 21);
	assert_int_equal(nb_http_received(&c.p), strlen(CHUNKED));
	/* Trailers are dropped: only the head's fields are visible. */
	assert_null(nb_http_find(&c.p.req, "X-Trailer"));
	assert_value(&c.p.req, "content-type", "application/json");
	nb_http_reset_keep(&c.p);
	assert_int_equal(nb_http_feed(&c.p, NULL, 0, &used), NB_HTTP_DONE);
	assert_slice(c.p.req.path, c.p.req.path_len, "/next");
	conn_close(&c);
}

/* Every valid stream gives the same requests, whole, byte by byte or in
 * random pieces. */
#define S(x) { x, sizeof(x) - 1 }
static const struct {
	const char *s;
	size_t n;
} VALID[] = {
	S(CURL_POST),
	S(PIPELINE),
	S(CHUNKED),
	S("\r\n\r\nGET / HTTP/1.0\r\n\r\n"),
	S("POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\n\0\r\n0\r\n\r\n"),
	S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\nHEAD / HTTP/1.1\r\nHost: b\r\n\r\n"),
	S("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n\0\r\n\r\nGET / HTTP/1.1\r\nHost: b\r\n\r\n"),
};

static void test_any_split(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(VALID) / sizeof(VALID[0]); i++) {
		for (int mode = BYTES; mode <= RANDOM; mode++) {
			for (uint32_t seed = 1; seed <= (mode == RANDOM ? 20u : 1u); seed++) {
				struct conn a, b;
				size_t oa = 0, ob = 0, n = VALID[i].n, reqs = 0;
				uint32_t rng = seed;
				conn_open(&a, NULL);
				conn_open(&b, NULL);
				for (;;) {
					int ra = drive(&a, VALID[i].s, n, &oa, WHOLE, NULL);
					int rb = drive(&b, VALID[i].s, n, &ob, mode, &rng);
					assert_int_equal(ra, rb);
					if (ra != NB_HTTP_DONE)
						break;
					assert_same_req(&a.p.req, &b.p.req);
					reqs++;
					nb_http_reset_keep(&a.p);
					nb_http_reset_keep(&b.p);
				}
				assert_true(reqs >= 1);
				assert_int_equal(oa, n);
				assert_int_equal(ob, n);
				conn_close(&a);
				conn_close(&b);
			}
		}
	}
}

static void test_body_in_pieces(void **state)
{
	enum { N = 100000 };
	char head[128], *body = malloc(N);
	struct conn c;
	size_t used, off = 0;
	uint32_t rng = 7;
	int r = NB_HTTP_NEED_MORE;

	(void)state;
	assert_non_null(body);
	for (size_t i = 0; i < N; i++) /* every byte value, invalid UTF-8 included */
		body[i] = (char)(rnd(&rng) & 0xff);
	conn_open(&c, NULL);
	snprintf(head, sizeof(head), "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n",
		 N);
	assert_int_equal(nb_http_feed(&c.p, head, strlen(head), &used), NB_HTTP_NEED_MORE);
	while (off < N) {
		size_t k = 1 + rnd(&rng) % 997;
		if (k > N - off)
			k = N - off;
		assert_int_equal(r, NB_HTTP_NEED_MORE);
		r = nb_http_feed(&c.p, body + off, k, &used);
		assert_int_equal(used, k);
		off += k;
	}
	assert_int_equal(r, NB_HTTP_DONE);
	assert_int_equal(c.p.req.body_len, N);
	assert_memory_equal(c.p.req.body, body, N);
	assert_int_equal(nb_http_received(&c.p), strlen(head) + N);
	conn_close(&c);
	free(body);
}

/* Our own chunk writer, in random chunk sizes and random feed splits,
 * round-trips binary data through the chunked decoder. */
static void test_chunk_roundtrip(void **state)
{
	enum { N = 50000 };
	char *body = malloc(N), *wire = malloc(3 * N + 1000);
	const char *head = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
	size_t w = strlen(head), out, off = 0;
	uint32_t rng = 99;
	struct conn c;

	(void)state;
	assert_non_null(body);
	assert_non_null(wire);
	memcpy(wire, head, w);
	for (size_t i = 0; i < N; i++)
		body[i] = (char)(rnd(&rng) & 0xff);
	for (size_t i = 0; i < N;) {
		size_t k = rnd(&rng) % 300;
		if (k > N - i)
			k = N - i;
		assert_int_equal(nb_http_chunk(wire + w, 3 * N + 1000 - w, body + i, k, &out), 0);
		w += out;
		i += k;
	}
	assert_int_equal(nb_http_chunk_end(wire + w, 5, &out), 0);
	w += out;
	conn_open(&c, NULL);
	assert_int_equal(drive(&c, wire, w, &off, RANDOM, &rng), NB_HTTP_DONE);
	assert_int_equal(off, w);
	assert_int_equal(c.p.req.body_len, N);
	assert_memory_equal(c.p.req.body, body, N);
	conn_close(&c);
	free(body);
	free(wire);
}

static void test_started_received(void **state)
{
	struct conn c;
	size_t used;

	(void)state;
	conn_open(&c, NULL);
	assert_false(nb_http_started(&c.p));
	assert_int_equal(nb_http_feed(&c.p, "\r\n\r", 3, &used), NB_HTTP_NEED_MORE);
	assert_false(nb_http_started(&c.p)); /* empty lines only */
	assert_int_equal(nb_http_received(&c.p), 3);
	assert_int_equal(nb_http_feed(&c.p, "\nP", 2, &used), NB_HTTP_NEED_MORE);
	assert_true(nb_http_started(&c.p));
	assert_int_equal(nb_http_received(&c.p), 5);
	conn_close(&c);
}

static void test_expect_continue(void **state)
{
	const char *head = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
			   "Expect: 100-Continue\r\n\r\n";
	struct conn c;
	size_t used;

	(void)state;
	conn_open(&c, NULL);
	assert_int_equal(nb_http_feed(&c.p, head, strlen(head) - 1, &used), NB_HTTP_NEED_MORE);
	assert_false(nb_http_take_continue(&c.p)); /* head not complete */
	assert_int_equal(nb_http_feed(&c.p, "\n", 1, &used), NB_HTTP_NEED_MORE);
	assert_true(nb_http_take_continue(&c.p));
	assert_false(nb_http_take_continue(&c.p)); /* once */
	assert_int_equal(nb_http_feed(&c.p, "{}", 2, &used), NB_HTTP_DONE);
	assert_true(c.p.req.expect_continue);
	conn_close(&c);

	conn_open(&c, NULL); /* whole body already there: no 100 */
	assert_int_equal(nb_http_feed(&c.p, head, strlen(head), &used), NB_HTTP_NEED_MORE);
	assert_int_equal(nb_http_feed(&c.p, "{}", 2, &used), NB_HTTP_DONE);
	assert_false(nb_http_take_continue(&c.p));
	conn_close(&c);
}

/* The server checks credentials once the head is in, before buffering a
 * body of up to max_body_bytes for a client that may not send it. */
static void test_head_done(void **state)
{
	const char *head = "POST /v1/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n"
			   "Authorization: Bearer abc\r\n\r\n";
	const char *bad = "GET / HTTP/1.1\nHost: a\r\n\r\n", *tok;
	struct conn c;
	size_t used, len;

	(void)state;
	conn_open(&c, NULL);
	assert_false(nb_http_head_done(&c.p));
	assert_int_equal(nb_http_feed(&c.p, head, strlen(head) - 1, &used), NB_HTTP_NEED_MORE);
	assert_false(nb_http_head_done(&c.p));
	assert_int_equal(nb_http_feed(&c.p, "\n", 1, &used), NB_HTTP_NEED_MORE);
	assert_true(nb_http_head_done(&c.p));
	assert_true(nb_http_bearer(&c.p.req, &tok, &len));
	assert_memory_equal(tok, "abc", 3);
	assert_int_equal(nb_http_feed(&c.p, "xy", 2, &used), NB_HTTP_NEED_MORE);
	assert_true(nb_http_head_done(&c.p)); /* and while the body arrives */
	conn_close(&c);

	conn_open(&c, NULL); /* a broken head is never done */
	assert_true(nb_http_feed(&c.p, bad, strlen(bad), &used) < 0);
	assert_false(nb_http_head_done(&c.p));
	conn_close(&c);
}

static void test_space_commit(void **state)
{
	struct conn c;
	size_t room, n = strlen(CURL_POST), off = 0;
	char *at;
	int r = NB_HTTP_NEED_MORE;

	(void)state;
	conn_open(&c, NULL);
	while (off < n) { /* as an event loop would: read() straight into the buffer */
		size_t k = n - off < 10 ? n - off : 10;
		at = nb_http_space(&c.p, &room);
		assert_true(room >= k);
		memcpy(at, CURL_POST + off, k);
		assert_int_equal(r, NB_HTTP_NEED_MORE);
		r = nb_http_commit(&c.p, k);
		off += k;
	}
	assert_int_equal(r, NB_HTTP_DONE);
	assert_int_equal(c.p.req.body_len, 61);
	nb_http_space(&c.p, &room);
	assert_int_equal(nb_http_commit(&c.p, room + 1), -NB_EINVAL);
	conn_close(&c);
}

static void test_bearer(void **state)
{
	static const struct {
		const char *value, *tok; /* tok NULL: no bearer token */
	} cases[] = {
		{ "Bearer abc.DEF-_~+/09==", "abc.DEF-_~+/09==" },
		{ "bearer    tok", "tok" },
		{ "BEARER x", "x" },
		{ "Basic dXNlcjpwYXNz", NULL },
		{ "Bearer", NULL },
		{ "Bearer ", NULL },
		{ "Bearer a b", NULL },
		{ "Bearer a=b", NULL },
		{ "Bearertok", NULL },
		{ "Bearer\ttok", NULL },
	};
	char req[256];
	const char *tok;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct conn c;
		conn_open(&c, NULL);
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: h\r\nAuthorization: %s\r\n\r\n",
			 cases[i].value);
		assert_int_equal(parse_str(&c, req), NB_HTTP_DONE);
		if (cases[i].tok) {
			assert_true(nb_http_bearer(&c.p.req, &tok, &n));
			assert_slice(tok, n, cases[i].tok);
		} else {
			assert_false(nb_http_bearer(&c.p.req, &tok, &n));
		}
		conn_close(&c);
	}
	{
		struct conn c;
		conn_open(&c, NULL);
		assert_int_equal(parse_str(&c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n"), NB_HTTP_DONE);
		assert_false(nb_http_bearer(&c.p.req, &tok, &n));
		conn_close(&c);
	}
}

/* ---- rejections ---- */

struct bad {
	const char *req; /* NULL-terminated; len given when it holds a NUL */
	size_t len;
	int status;
};

static int code_of(int status)
{
	return status == 413 || status == 414 || status == 431   ? -NB_ERANGE
	       : status == 501 || status == 505 ? -NB_ENOTSUP
						: -NB_EFORMAT;
}

/* Whole and byte by byte, the same status; the error then sticks. */
static void expect_status(const char *req, size_t len, const struct nb_http_limits *lim, int status)
{
	for (int mode = WHOLE; mode <= BYTES; mode++) {
		struct conn c;
		size_t off = 0, used;
		int r;
		conn_open(&c, lim);
		r = drive(&c, req, len, &off, mode, NULL);
		if (r != code_of(status) || nb_http_status(&c.p) != status)
			fail_msg("request %.60s... (mode %d): got %d status %d, want status %d", req, mode,
				 r, nb_http_status(&c.p), status);
		assert_non_null(c.p.why);
		assert_int_equal(nb_http_feed(&c.p, "GET / HTTP/1.1\r\n\r\n", 18, &used), r);
		assert_int_equal(used, 0);
		assert_false(nb_http_take_continue(&c.p));
		conn_close(&c);
	}
}

static void run_bad(const struct bad *cases, size_t n)
{
	for (size_t i = 0; i < n; i++)
		expect_status(cases[i].req, cases[i].len ? cases[i].len : strlen(cases[i].req), NULL,
			      cases[i].status);
}

#define H "Host: h\r\n"

static void test_bad_request_line(void **state)
{
	static const struct bad cases[] = {
		{ "GET /\r\n" H "\r\n", 0, 400 },
		{ "GET  / HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET / HTTP/1.1 \r\n" H "\r\n", 0, 400 },
		{ "GET /  HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ " GET / HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "G(T / HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET\t/ HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET / http/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET / HTTP/1.1x\r\n" H "\r\n", 0, 400 },
		{ "GET / HTTP/11\r\n" H "\r\n", 0, 400 },
		{ "GET / HTTP/1.10\r\n" H "\r\n", 0, 400 },
		{ "GET foo HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET /a#b HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET /caf\xc3\xa9 HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET /a\x7f HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET * HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET http:// HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "CONNECT h:443 HTTP/1.1\r\n" H "\r\n", 0, 400 },
		{ "GET / HTTP/1.1\n" H "\r\n", 0, 400 },     /* bare LF */
		{ "GET / HTTP/1.1\r\r\n" H "\r\n", 0, 400 }, /* bare CR */
		{ "GET / HTTP/1.1\r\nHost: h\n\n", 0, 400 },
		{ "\n", 0, 400 },
		{ "\rGET", 0, 400 },
		{ "GET / HTTP/2.0\r\n" H "\r\n", 0, 505 },
		{ "GET / HTTP/1.2\r\n" H "\r\n", 0, 505 },
		{ "GET / HTTP/0.9\r\n" H "\r\n", 0, 505 },
	};
	(void)state;
	run_bad(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bad_fields(void **state)
{
	static const struct bad cases[] = {
		{ "GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n", 0, 400 },     /* obs-fold */
		{ "GET / HTTP/1.1\r\n" H "X: a\r\n\tb\r\n\r\n", 0, 400 },    /* obs-fold */
		{ "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 0, 400 },            /* before first field */
		{ "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 0, 400 },            /* before colon */
		{ "GET / HTTP/1.1\r\nHost\t: h\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "Ho st: h\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "X-\"q\": h\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "Host h\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H ": h\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "X: a\0b\r\n\r\n", 35, 400 },
		{ "GET / HTTP/1.1\r\n" H "X: a\x01" "b\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "X: a\rb\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "X: a\nb\r\n\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n\r\n", 0, 400 },                        /* no Host */
		{ "GET / HTTP/1.1\r\n" H H "\r\n", 0, 400 },
		{ "GET / HTTP/1.1\r\n" H "Authorization: Bearer a\r\nauthorization: Bearer b\r\n\r\n", 0,
		  400 },
	};
	(void)state;
	run_bad(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_bad_framing(void **state)
{
	static const struct bad cases[] = {
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 1, 1\r\n\r\nx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: -1\r\n\r\n", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: +1\r\n\r\nx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 0x1\r\n\r\nx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 1 1\r\n\r\nx", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length:\r\n\r\n", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 99999999999999999999999\r\n\r\n", 0, 413 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 1048577\r\n\r\n", 0, 413 },
		{ "POST / HTTP/1.1\r\n" H "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
		  400 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0,
		  400 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip\r\n\r\n", 0, 501 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: gzip, chunked\r\n\r\n", 0, 501 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked;q=1\r\n\r\n", 0, 501 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		  0, 400 },
		{ "POST / HTTP/1.1\r\n" H "Transfer-Encoding:\r\n\r\n", 0, 400 },
		{ "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 0, 400 },
		{ "POST / HTTP/1.1\r\n" H "\r\n", 0, 411 },
		{ "PUT / HTTP/1.1\r\n" H "\r\n", 0, 411 },
	};
	(void)state;
	run_bad(cases, sizeof(cases) / sizeof(cases[0]));
}

#define TE "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"

static void test_bad_chunks(void **state)
{
	static const struct bad cases[] = {
		{ TE "zz\r\n", 0, 400 },
		{ TE "\r\n", 0, 400 },
		{ TE "0x5\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "-5\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5\r\nhelloX\r\n0\r\n\r\n", 0, 400 },
		{ TE "5\r\nhello\rX\n0\r\n\r\n", 0, 400 },
		{ TE "5\r\nhello\n0\r\n\r\n", 0, 400 },
		{ TE "5\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5\r\nhello\r\n0\n\r\n", 0, 400 },
		{ TE "5;\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a=\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a=\"x\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5 x\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5 \r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a \r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a=b \r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "5;a\x01\r\nhello\r\n0\r\n\r\n", 0, 400 },
		{ TE "0\r\nbad trailer\r\n\r\n", 0, 400 },
		{ TE "0\r\nX: 1\r\n folded\r\n\r\n", 0, 400 },
		{ TE "0\r\nX : 1\r\n\r\n", 0, 400 },
		{ TE "100001\r\n", 0, 413 },
		{ TE "fffffffffffffffffffff\r\n", 0, 413 },
	};
	(void)state;
	run_bad(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- limits, at the boundary and one past it ---- */

/* A GET whose head is exactly total bytes, with n_fields fields or more:
 * the padding goes in lines of at most 4000 bytes. */
static char *make_head(size_t total, size_t n_fields)
{
	char *s = malloc(total + 1);
	size_t w = 0, left;

	assert_non_null(s);
	w += (size_t)sprintf(s, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (size_t i = 1; i + 1 < n_fields; i++)
		w += (size_t)sprintf(s + w, "X%zu: v\r\n", i);
	for (;;) {
		left = total - 2 - w; /* before the empty line */
		assert_true(left >= 9);
		w += (size_t)sprintf(s + w, "X-Pad: ");
		if (left <= 4000)
			break;
		memset(s + w, 'p', 4000 - 9);
		w += 4000 - 9;
		w += (size_t)sprintf(s + w, "\r\n");
	}
	memset(s + w, 'p', total - w - 4);
	memcpy(s + total - 4, "\r\n\r\n", 5);
	return s;
}

static void expect_done(const char *req, size_t len, const struct nb_http_limits *lim)
{
	for (int mode = WHOLE; mode <= BYTES; mode++) {
		struct conn c;
		size_t off = 0;
		conn_open(&c, lim);
		if (drive(&c, req, len, &off, mode, NULL) != NB_HTTP_DONE)
			fail_msg("request %.60s... (mode %d): status %d (%s)", req, mode,
				 nb_http_status(&c.p), c.p.why);
		assert_int_equal(off, len);
		conn_close(&c);
	}
}

static void test_limit_header_bytes(void **state)
{
	struct nb_http_limits lim = { .max_header_bytes = 300 };
	char *s;

	(void)state;
	s = make_head(300, 2);
	expect_done(s, 300, &lim);
	free(s);
	s = make_head(301, 2);
	expect_status(s, 301, &lim, 431);
	free(s);
	/* Empty lines before the request line count. */
	s = make_head(300, 2);
	memcpy(s, "\r\n", 2); /* "\r\nT / HTTP/1.1 ..." is still a request, same size */
	expect_done(s, 300, &lim);
	free(s);
	/* The default limit. */
	s = make_head(16384, 2);
	expect_done(s, 16384, NULL);
	free(s);
	s = make_head(16385, 2);
	expect_status(s, 16385, NULL, 431);
	free(s);
}

static void test_limit_fields(void **state)
{
	struct nb_http_limits lim = { .max_headers = 4 };
	char *s;

	(void)state;
	s = make_head(200, 4);
	expect_done(s, 200, &lim);
	free(s);
	s = make_head(200, 5);
	expect_status(s, 200, &lim, 431);
	free(s);
	s = make_head(2000, 64);
	expect_done(s, 2000, NULL);
	free(s);
	s = make_head(2000, 65);
	expect_status(s, 2000, NULL, 431);
	free(s);
	/* Above the array's capacity a limit is capped. */
	lim.max_headers = 1000;
	s = make_head(2000, 65);
	expect_status(s, 2000, &lim, 431);
	free(s);
}

static void test_limit_line(void **state)
{
	struct nb_http_limits lim = { .max_line = 64 };
	char req[256], pad[128];

	(void)state;
	memset(pad, 'a', sizeof(pad));
	for (int over = 0; over <= 1; over++) {
		/* Request line, field line and chunk line of 64 bytes, then 65. */
		snprintf(req, sizeof(req), "GET /%.*s HTTP/1.1\r\nHost: h\r\n\r\n", 50 + over, pad);
		assert_int_equal(strchr(req, '\r') - req, 64 + over);
		if (over)
			expect_status(req, strlen(req), &lim, 414);
		else
			expect_done(req, strlen(req), &lim);
		snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %.*s\r\n\r\n", 58 + over, pad);
		if (over)
			expect_status(req, strlen(req), &lim, 431);
		else
			expect_done(req, strlen(req), &lim);
		snprintf(req, sizeof(req), TE "1;e=%.*s\r\nx\r\n0\r\n\r\n", 60 + over, pad);
		if (over)
			expect_status(req, strlen(req), &lim, 400);
		else
			expect_done(req, strlen(req), &lim);
	}
}

static void test_limit_body(void **state)
{
	struct nb_http_limits lim = { .max_body_bytes = 1000 };
	char *req = malloc(4096);
	size_t n;

	(void)state;
	assert_non_null(req);
	for (size_t len = 999; len <= 1001; len++) {
		n = (size_t)sprintf(req, "POST / HTTP/1.1\r\n" H "Content-Length: %zu\r\n\r\n", len);
		memset(req + n, 'b', len);
		if (len <= 1000)
			expect_done(req, n + len, &lim);
		else
			expect_status(req, n + len, &lim, 413);
		/* The same body chunked: 600 bytes, then the rest. */
		n = (size_t)sprintf(req, TE "258\r\n");
		memset(req + n, 'b', 600);
		n += 600;
		n += (size_t)sprintf(req + n, "\r\n%zx\r\n", len - 600);
		memset(req + n, 'c', len - 600);
		n += len - 600;
		n += (size_t)sprintf(req + n, "\r\n0\r\n\r\n");
		if (len <= 1000)
			expect_done(req, n, &lim);
		else
			expect_status(req, n, &lim, 413);
	}
	/* The default: 1 MiB exactly in one chunk, then one byte more in a second. */
	{
		size_t big = 1u << 20;
		char *s = malloc(big + 200);
		assert_non_null(s);
		n = (size_t)sprintf(s, TE "%zx\r\n", big);
		memset(s + n, 'x', big);
		n += big;
		expect_done(s, n + (size_t)sprintf(s + n, "\r\n0\r\n\r\n"), NULL);
		expect_status(s, n + (size_t)sprintf(s + n, "\r\n1\r\n"), NULL, 413);
		free(s);
	}
	free(req);
}

static void test_limit_trailer(void **state)
{
	struct nb_http_limits lim = { .max_header_bytes = 200, .max_headers = 3 };
	char req[1024];

	(void)state;
	/* Trailer section of exactly 200 bytes (its empty line included), then 201. */
	snprintf(req, sizeof(req), TE "0\r\nT: %0193d\r\n\r\n", 0);
	expect_done(req, strlen(req), &lim);
	snprintf(req, sizeof(req), TE "0\r\nT: %0194d\r\n\r\n", 0);
	expect_status(req, strlen(req), &lim, 431);
	expect_done(TE "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", strlen(TE "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"),
		    &lim);
	expect_status(TE "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
		      strlen(TE "0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n"), &lim, 431);
}

/* A buffer smaller than nb_http_bufsize(): what does not fit is refused. */
static void test_small_buffer(void **state)
{
	struct conn c;
	const char *post = "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100\r\n\r\n";
	size_t used;

	(void)state;
	conn_open_cap(&c, NULL, 60);
	assert_int_equal(nb_http_feed(&c.p, post, strlen(post), &used), -NB_ERANGE);
	assert_int_equal(nb_http_status(&c.p), 413);
	conn_close(&c);

	conn_open_cap(&c, NULL, 20);
	assert_int_equal(nb_http_feed(&c.p, post, strlen(post), &used), -NB_ERANGE);
	assert_int_equal(nb_http_status(&c.p), 431);
	assert_int_equal(used, 20);
	conn_close(&c);

	conn_open_cap(&c, NULL, 80);
	assert_int_equal(parse_str(&c, TE "20\r\n0123456789abcdef0123456789abcdef\r\n0\r\n\r\n"),
			 -NB_ERANGE);
	assert_int_equal(nb_http_status(&c.p), 413);
	conn_close(&c);

	conn_open_cap(&c, NULL, 0);
	assert_int_equal(nb_http_feed(&c.p, "GET", 3, &used), -NB_ERANGE);
	conn_close(&c);
}

/* ---- responses ---- */

static void write_head_ok(const struct nb_http_resp *r, const char *want)
{
	char buf[512];
	size_t len = 0, n = strlen(want);

	assert_int_equal(nb_http_write_head(buf, sizeof(buf), r, &len), 0);
	assert_int_equal(len, n);
	assert_memory_equal(buf, want, n);
	/* Every smaller buffer fails and nothing is written past its end. */
	for (size_t cap = 0; cap < n; cap++) {
		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(nb_http_write_head(buf, cap, r, &len), -NB_ERANGE);
		for (size_t i = cap; i < sizeof(buf); i++)
			assert_int_equal((unsigned char)buf[i], 0x5a);
	}
	assert_int_equal(nb_http_write_head(buf, n, r, &len), 0);
}

static void test_write_head(void **state)
{
	struct nb_http_resp r = { .status = 200, .content_type = "application/json",
				  .content_length = 2 };

	(void)state;
	write_head_ok(&r, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			  "Content-Length: 2\r\n\r\n");
	r = (struct nb_http_resp){ .status = 429, .content_type = "application/json",
				   .content_length = 10, .close = true,
				   .extra = "Retry-After: 3\r\n" };
	write_head_ok(&r, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
			  "Content-Length: 10\r\nConnection: close\r\nRetry-After: 3\r\n\r\n");
	r = (struct nb_http_resp){ .status = 200, .content_type = "text/event-stream",
				   .content_length = NB_HTTP_CHUNKED };
	write_head_ok(&r, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			  "Transfer-Encoding: chunked\r\n\r\n");
	r = (struct nb_http_resp){ .status = 200, .content_type = "text/plain",
				   .content_length = 0, .http10 = true };
	write_head_ok(&r, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
			  "Connection: keep-alive\r\n\r\n");
	r = (struct nb_http_resp){ .status = 200, .content_type = "text/event-stream",
				   .content_length = NB_HTTP_UNTIL_CLOSE, .http10 = true };
	write_head_ok(&r, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
			  "Connection: close\r\n\r\n");
	r = (struct nb_http_resp){ .status = 299, .reason = "Custom", .content_length = 0,
				   .extra = "A: 1\r\nB-2: x y\r\n" };
	write_head_ok(&r, "HTTP/1.1 299 Custom\r\nContent-Length: 0\r\nA: 1\r\nB-2: x y\r\n\r\n");
	r = (struct nb_http_resp){ .status = 503, .content_type = "application/json",
				   .content_length = 1234567890123LL };
	write_head_ok(&r, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
			  "Content-Length: 1234567890123\r\n\r\n");
}

static void test_write_head_rejects(void **state)
{
	static const struct nb_http_resp bad[] = {
		{ .status = 299, .content_length = 0 },                     /* no reason */
		{ .status = 99, .reason = "X", .content_length = 0 },
		{ .status = 600, .reason = "X", .content_length = 0 },
		{ .status = 200, .reason = "OK\r\nX: y", .content_length = 0 },
		{ .status = 200, .content_type = "text/plain\r\nX: y", .content_length = 0 },
		{ .status = 200, .content_type = "text/plain\n", .content_length = 0 },
		{ .status = 200, .content_length = 0, .extra = "Retry-After: 3" },
		{ .status = 200, .content_length = 0, .extra = "Retry-After: 3\n" },
		{ .status = 200, .content_length = 0, .extra = "A: 1\r\nB" },
		{ .status = 200, .content_length = 0, .extra = "\r\n" },
		{ .status = 200, .content_length = 0, .extra = "A: 1\r\n\r\nbody" },
		{ .status = 200, .content_length = 0, .extra = "A B: 1\r\n" },
		{ .status = 200, .content_length = 0, .extra = "A: 1\r\r\n" },
		{ .status = 200, .content_length = -3 },
		{ .status = 200, .content_length = NB_HTTP_CHUNKED, .http10 = true },
	};
	char buf[256];
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(nb_http_write_head(buf, sizeof(buf), &bad[i], &len), -NB_EINVAL);
}

static void test_reasons(void **state)
{
	static const struct {
		int status;
		const char *reason;
	} want[] = {
		{ 200, "OK" }, { 400, "Bad Request" }, { 401, "Unauthorized" }, { 404, "Not Found" },
		{ 405, "Method Not Allowed" }, { 408, "Request Timeout" }, { 411, "Length Required" },
		{ 413, "Content Too Large" }, { 429, "Too Many Requests" },
		{ 431, "Request Header Fields Too Large" }, { 500, "Internal Server Error" },
		{ 501, "Not Implemented" }, { 503, "Service Unavailable" },
		{ 505, "HTTP Version Not Supported" }, { 414, "URI Too Long" }, { 100, "Continue" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		assert_string_equal(nb_http_reason(want[i].status), want[i].reason);
	assert_null(nb_http_reason(299));
	assert_null(nb_http_reason(0));
}

static void test_chunk_writer(void **state)
{
	static const struct {
		size_t len;
		const char *head;
	} heads[] = { { 1, "1\r\n" },	  { 9, "9\r\n" },     { 10, "a\r\n" },	   { 15, "f\r\n" },
		      { 16, "10\r\n" },   { 255, "ff\r\n" },  { 256, "100\r\n" },  { 4096, "1000\r\n" },
		      { 65535, "ffff\r\n" } };
	static char data[65535], buf[65535 + 64];
	size_t out;

	(void)state;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7);
	assert_int_equal(nb_http_chunk(buf, sizeof(buf), data, 0, &out), 0);
	assert_int_equal(out, 0);
	for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
		size_t h = strlen(heads[i].head), len = heads[i].len;
		assert_int_equal(nb_http_chunk(buf, sizeof(buf), data, len, &out), 0);
		assert_int_equal(out, h + len + 2);
		assert_memory_equal(buf, heads[i].head, h);
		assert_memory_equal(buf + h, data, len);
		assert_memory_equal(buf + h + len, "\r\n", 2);
		assert_int_equal(nb_http_chunk_head(buf, sizeof(buf), len, &out), 0);
		assert_int_equal(out, h);
		assert_memory_equal(buf, heads[i].head, h);
		assert_int_equal(nb_http_chunk_head(buf, h, len, &out), 0);
		/* One byte short fails without writing past the end. */
		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(nb_http_chunk(buf, h + len + 1, data, len, &out), -NB_ERANGE);
		assert_int_equal((unsigned char)buf[h + len + 1], 0x5a);
		memset(buf, 0x5a, sizeof(buf));
		assert_int_equal(nb_http_chunk_head(buf, h - 1, len, &out), -NB_ERANGE);
		assert_int_equal((unsigned char)buf[h - 1], 0x5a);
	}
	/* Every size 1..600 with a tight buffer. */
	for (size_t len = 1; len <= 600; len++) {
		size_t h = len < 16 ? 3 : len < 256 ? 4 : 5;
		assert_int_equal(nb_http_chunk(buf, h + len + 2, data, len, &out), 0);
		assert_int_equal(out, h + len + 2);
		assert_int_equal(nb_http_chunk(buf, h + len + 1, data, len, &out), -NB_ERANGE);
	}
	assert_int_equal(nb_http_chunk_end(buf, 5, &out), 0);
	assert_int_equal(out, 5);
	assert_memory_equal(buf, "0\r\n\r\n", 5);
	assert_int_equal(nb_http_chunk_end(buf, 4, &out), -NB_ERANGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_health),
		cmocka_unit_test(test_curl_post),
		cmocka_unit_test(test_targets),
		cmocka_unit_test(test_methods),
		cmocka_unit_test(test_keep_alive),
		cmocka_unit_test(test_field_values),
		cmocka_unit_test(test_pipelined),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_any_split),
		cmocka_unit_test(test_body_in_pieces),
		cmocka_unit_test(test_chunk_roundtrip),
		cmocka_unit_test(test_started_received),
		cmocka_unit_test(test_expect_continue),
		cmocka_unit_test(test_head_done),
		cmocka_unit_test(test_space_commit),
		cmocka_unit_test(test_bearer),
		cmocka_unit_test(test_bad_request_line),
		cmocka_unit_test(test_bad_fields),
		cmocka_unit_test(test_bad_framing),
		cmocka_unit_test(test_bad_chunks),
		cmocka_unit_test(test_limit_header_bytes),
		cmocka_unit_test(test_limit_fields),
		cmocka_unit_test(test_limit_line),
		cmocka_unit_test(test_limit_body),
		cmocka_unit_test(test_limit_trailer),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_write_head),
		cmocka_unit_test(test_write_head_rejects),
		cmocka_unit_test(test_reasons),
		cmocka_unit_test(test_chunk_writer),
	};

	nb_log_set_level(NB_LOG_SILENT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
