/* HTTP request parser fuzzing. The input is a byte stream from a client,
 * parsed as pipelined requests by two parsers in lockstep: one fed
 * everything at once, one in pieces whose sizes (and the choice between
 * nb_http_feed and nb_http_space/commit) derive from the data. Checked:
 *  - both give the same requests and the same final status;
 *  - consumed <= len, every slice lies inside the buffer, limits hold;
 *  - an error is one of the documented statuses with its return code;
 *  - a DONE request re-serialised (its head as received, its body with
 *    Content-Length or as one chunk) parses to the same request.
 * The limits (default, small, tiny) also derive from the data, so the
 * boundaries are reached. Seeds: tests/fuzz/corpus/fuzz_http/. */
#include "runtime/base/err.h"
#include "runtime/server/http.h"
#include "runtime/base/log.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                   \
	do {                                                                       \
		if (!(x)) {                                                        \
			fprintf(stderr, "fuzz_http: %s:%d: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                   \
		}                                                                  \
	} while (0)

#define BUF_MAX ((16u << 10) + (1u << 20) + (8u << 10) + 2)

/* The harness has no other place for the three connection buffers. */
static char buf_a[BUF_MAX], buf_b[BUF_MAX], buf_c[BUF_MAX], wire[BUF_MAX + 64];

static const struct nb_http_limits limit_sets[] = {
	{ 0, 0, 0, 0 },
	{ .max_header_bytes = 256, .max_headers = 8, .max_body_bytes = 512, .max_line = 128 },
	{ .max_header_bytes = 64, .max_headers = 2, .max_body_bytes = 16, .max_line = 32 },
};

static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static int feed_whole(struct nb_http_parser *p, const uint8_t *d, size_t n, size_t *off)
{
	size_t used;
	int r = nb_http_feed(p, d + *off, n - *off, &used);

	CHECK(used <= n - *off);
	*off += used;
	return r;
}

static int feed_pieces(struct nb_http_parser *p, const uint8_t *d, size_t n, size_t *off,
		       uint64_t *rng)
{
	int r;

	do {
		uint64_t x = rng_next(rng);
		size_t k = 1 + (size_t)(x % ((x >> 8) % 4 == 0 ? 300 : 8)), used = 0, room;
		if (k > n - *off)
			k = n - *off;
		if (x & 0x10000) {
			char *at = nb_http_space(p, &room);
			if (k > room)
				k = room;
			memcpy(at, d + *off, k);
			r = nb_http_commit(p, k);
			used = k;
		} else {
			r = nb_http_feed(p, d + *off, k, &used);
			CHECK(used <= k);
		}
		*off += used;
	} while (r == NB_HTTP_NEED_MORE && *off < n);
	return r;
}

static bool inside(const struct nb_http_parser *p, const char *s, size_t n, size_t lo, size_t hi)
{
	return s >= p->buf + lo && n <= hi - lo && (size_t)(s - p->buf) <= hi - n;
}

static void check_slices(const struct nb_http_parser *p)
{
	const struct nb_http_req *r = &p->req;
	size_t h0 = p->start, h1 = p->head_end;

	CHECK(p->pos <= p->fill && p->fill <= p->cap && h1 <= p->pos);
	CHECK(h1 <= p->lim.max_header_bytes);
	CHECK(r->n_headers <= p->lim.max_headers);
	CHECK(r->body_len <= p->lim.max_body_bytes && r->body_len == r->content_length);
	CHECK(r->version == 10 || r->version == 11);
	CHECK(inside(p, r->method_raw, r->method_len, h0, h1) && r->method_len > 0);
	CHECK(inside(p, r->target, r->target_len, h0, h1) && r->target_len > 0);
	CHECK(inside(p, r->path, r->path_len, h0, h1) || (r->path_len == 1 && r->path[0] == '/'));
	CHECK(!r->query || inside(p, r->query, r->query_len, h0, h1));
	for (size_t i = 0; i < r->n_headers; i++) {
		CHECK(inside(p, r->headers[i].name, r->headers[i].name_len, h0, h1));
		CHECK(inside(p, r->headers[i].value, r->headers[i].value_len, h0, h1));
	}
	CHECK(inside(p, r->body, r->body_len, h1, p->pos));
}

static bool same(const char *a, size_t na, const char *b, size_t nb)
{
	return na == nb && (a == NULL) == (b == NULL) && (na == 0 || memcmp(a, b, na) == 0);
}

static void check_same(const struct nb_http_req *a, const struct nb_http_req *b)
{
	CHECK(a->method == b->method && a->version == b->version);
	CHECK(same(a->method_raw, a->method_len, b->method_raw, b->method_len));
	CHECK(same(a->target, a->target_len, b->target, b->target_len));
	CHECK(same(a->path, a->path_len, b->path, b->path_len));
	CHECK(same(a->query, a->query_len, b->query, b->query_len));
	CHECK(a->n_headers == b->n_headers);
	for (size_t i = 0; i < a->n_headers; i++) {
		CHECK(same(a->headers[i].name, a->headers[i].name_len, b->headers[i].name,
			   b->headers[i].name_len));
		CHECK(same(a->headers[i].value, a->headers[i].value_len, b->headers[i].value,
			   b->headers[i].value_len));
	}
	CHECK(a->chunked == b->chunked && a->keep_alive == b->keep_alive);
	CHECK(a->expect_continue == b->expect_continue && a->content_length == b->content_length);
	CHECK(same(a->body, a->body_len, b->body, b->body_len));
}

/* Head as received, body with its own framing again; must parse the same. */
static void check_reparse(const struct nb_http_parser *p)
{
	const struct nb_http_req *r = &p->req;
	size_t n = p->head_end - p->start, used, k;
	struct nb_http_parser q;

	memcpy(wire, p->buf + p->start, n);
	if (r->chunked && r->body_len) {
		CHECK(nb_http_chunk(wire + n, sizeof(wire) - n, r->body, r->body_len, &k) == 0);
		n += k;
	} else if (!r->chunked) {
		memcpy(wire + n, r->body, r->body_len);
		n += r->body_len;
	}
	if (r->chunked) {
		CHECK(nb_http_chunk_end(wire + n, sizeof(wire) - n, &k) == 0);
		n += k;
	}
	nb_http_parser_init(&q, &p->lim, buf_c, nb_http_bufsize(&p->lim));
	CHECK(nb_http_feed(&q, wire, n, &used) == NB_HTTP_DONE);
	CHECK(used == n && q.pos == q.fill);
	check_same(r, &q.req);
}

/* The response writer with values taken from the request. */
static void check_writer(const struct nb_http_parser *p)
{
	const struct nb_http_req *r = &p->req;
	char ctype[64], head[256];
	size_t len, n;
	int err;
	struct nb_http_resp resp = { .status = 200, .content_type = ctype,
				     .content_length = r->chunked ? NB_HTTP_CHUNKED : (int64_t)r->body_len,
				     .close = !r->keep_alive, .http10 = r->version == 10 };

	if (r->n_headers == 0)
		return;
	n = r->headers[0].value_len < sizeof(ctype) - 1 ? r->headers[0].value_len : sizeof(ctype) - 1;
	memcpy(ctype, r->headers[0].value, n);
	ctype[n] = 0;
	err = nb_http_write_head(head, sizeof(head), &resp, &len);
	CHECK(err == 0 || err == -NB_EINVAL || err == -NB_ERANGE);
	if (err == 0)
		CHECK(len <= sizeof(head) && len >= 4 && memcmp(head + len - 4, "\r\n\r\n", 4) == 0);
}

static void check_error(const struct nb_http_parser *p, int r)
{
	int st = nb_http_status(p);

	switch (st) {
	case 400: case 411:
		CHECK(r == -NB_EFORMAT);
		break;
	case 413: case 414: case 431:
		CHECK(r == -NB_ERANGE);
		break;
	case 501: case 505:
		CHECK(r == -NB_ENOTSUP);
		break;
	default:
		CHECK(!"unexpected status");
	}
	CHECK(p->why != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct nb_http_limits *lim = &limit_sets[size % 3];
	size_t cap = nb_http_bufsize(lim), oa = 0, ob = 0;
	struct nb_http_parser a, b;
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	nb_log_set_level(NB_LOG_SILENT);
	for (size_t i = 0; i < size; i++)
		rng = (rng ^ data[i]) * 0x100000001b3ull;
	rng |= 1;
	CHECK(cap <= BUF_MAX);
	nb_http_parser_init(&a, lim, buf_a, cap);
	nb_http_parser_init(&b, lim, buf_b, cap);
	for (;;) {
		int ra = feed_whole(&a, data, size, &oa);
		int rb = feed_pieces(&b, data, size, &ob, &rng);

		CHECK(ra == rb);
		if (ra < 0) {
			check_error(&a, ra);
			CHECK(nb_http_status(&a) == nb_http_status(&b));
			break;
		}
		if (ra == NB_HTTP_NEED_MORE) {
			CHECK(oa == size && ob == size);
			CHECK(nb_http_started(&a) == nb_http_started(&b));
			CHECK(nb_http_received(&a) == nb_http_received(&b));
			break;
		}
		check_slices(&a);
		check_slices(&b);
		check_same(&a.req, &b.req);
		check_reparse(&a);
		check_writer(&a);
		nb_http_reset_keep(&a);
		nb_http_reset_keep(&b);
	}
	return 0;
}
