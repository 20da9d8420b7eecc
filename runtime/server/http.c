/* HTTP/1.1 request parsing and response writing; see http.h for the
 * accept/reject rules. Grammar references are RFC 9112 (message syntax)
 * and RFC 9110 (semantics). */
#include "runtime/server/http.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdint.h>
#include <string.h>

#define DEF_HEADER_BYTES (16u << 10)
#define DEF_HEADERS 64u
#define DEF_BODY_BYTES (1u << 20)
#define DEF_LINE (8u << 10)

void nb_http_limits_default(struct nb_http_limits *lim)
{
	lim->max_header_bytes = DEF_HEADER_BYTES;
	lim->max_headers = DEF_HEADERS;
	lim->max_body_bytes = DEF_BODY_BYTES;
	lim->max_line = DEF_LINE;
}

static struct nb_http_limits fill_limits(const struct nb_http_limits *in)
{
	struct nb_http_limits l;

	nb_http_limits_default(&l);
	if (in) {
		l.max_header_bytes = in->max_header_bytes ? in->max_header_bytes : l.max_header_bytes;
		l.max_headers = in->max_headers ? in->max_headers : l.max_headers;
		l.max_body_bytes = in->max_body_bytes ? in->max_body_bytes : l.max_body_bytes;
		l.max_line = in->max_line ? in->max_line : l.max_line;
	}
	if (l.max_headers > NB_HTTP_MAX_HEADERS)
		l.max_headers = NB_HTTP_MAX_HEADERS;
	return l;
}

static size_t add_sat(size_t a, size_t b)
{
	return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

size_t nb_http_bufsize(const struct nb_http_limits *lim)
{
	struct nb_http_limits l = fill_limits(lim);

	/* Head, decoded body, and at most one unfinished chunk line behind it. */
	return add_sat(add_sat(l.max_header_bytes, l.max_body_bytes), add_sat(l.max_line, 2));
}

void nb_http_parser_init(struct nb_http_parser *p, const struct nb_http_limits *lim, char *buf,
			 size_t cap)
{
	memset(p, 0, sizeof(*p));
	p->lim = fill_limits(lim);
	p->buf = buf;
	p->cap = buf ? cap : 0;
}

/* ---- character classes (ASCII only: no locale) ---- */

static bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool is_ws(unsigned char c) { return c == ' ' || c == '\t'; }
static unsigned char lower(unsigned char c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

static bool is_alnum(unsigned char c) { return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'z'); }

static bool is_tchar(unsigned char c)
{
	return is_alnum(c) || (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* field-vchar, SP, HTAB: everything but CTLs (NUL, CR and LF included) and DEL. */
static bool is_value_char(unsigned char c)
{
	return is_ws(c) || (c > 0x20 && c != 0x7f);
}

static int hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c = lower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static bool ieq(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n && lit[i]; i++)
		if (lower((unsigned char)s[i]) != lower((unsigned char)lit[i]))
			return false;
	return i == n && lit[i] == 0;
}

static bool all_tchar(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_tchar((unsigned char)s[i]))
			return false;
	return n > 0;
}

/* Next element of a comma-separated list in [*s, end), OWS trimmed; empty
 * elements are skipped as RFC 9110 5.6.1 asks. */
static bool next_elem(const char **s, const char *end, const char **e, size_t *n)
{
	while (*s < end) {
		const char *a = *s, *b = memchr(a, ',', (size_t)(end - a));
		if (!b)
			b = end;
		*s = b < end ? b + 1 : end;
		while (a < b && is_ws((unsigned char)*a))
			a++;
		while (b > a && is_ws((unsigned char)b[-1]))
			b--;
		if (b > a) {
			*e = a;
			*n = (size_t)(b - a);
			return true;
		}
	}
	return false;
}

/* ---- parser ---- */

static int error_code(int status)
{
	switch (status) {
	case 413: case 414: case 431:
		return -NB_ERANGE;
	case 501: case 505:
		return -NB_ENOTSUP;
	default:
		return -NB_EFORMAT;
	}
}

/* Client errors are the client's: logged at debug level only, the caller
 * has p->why for its access log. */
static int fail(struct nb_http_parser *p, int status, const char *why)
{
	p->state = NB_HTTP_S_ERROR;
	p->status = status;
	p->why = why;
	nb_dbg("http: %d: %s", status, why);
	return error_code(status);
}

/* Finds the LF ending the line at p->pos, scanning on from p->scan, and
 * rejects bare CR and bare LF. room: bytes the line may take with its
 * CRLF before its section is too large (431). Returns 1 with the length
 * without CRLF in *len, 0 to wait for more bytes, or an error. */
static int next_line(struct nb_http_parser *p, int long_status, size_t room, size_t *len)
{
	const char *b = p->buf;

	for (; p->scan < p->fill; p->scan++) {
		unsigned char c = (unsigned char)b[p->scan];
		size_t n = p->scan - p->pos;

		if (n >= room)
			return fail(p, 431, "header section too large");
		if (c == '\n') {
			if (n == 0 || b[p->scan - 1] != '\r')
				return fail(p, 400, "bare LF");
			*len = n - 1;
			p->scan++;
			return 1;
		}
		if (n > 0 && b[p->scan - 1] == '\r')
			return fail(p, 400, "bare CR");
		if (c != '\r' && n + 1 > p->lim.max_line)
			return fail(p, long_status, "line too long");
	}
	return 0;
}

static int parse_version(struct nb_http_parser *p, const char *v, size_t n)
{
	if (n != 8 || memcmp(v, "HTTP/", 5) != 0 || !is_digit((unsigned char)v[5]) || v[6] != '.' ||
	    !is_digit((unsigned char)v[7]))
		return fail(p, 400, "malformed HTTP version");
	if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
		return fail(p, 505, "HTTP version not 1.0 or 1.1");
	p->req.version = v[7] == '0' ? 10 : 11;
	return 0;
}

/* origin-form, absolute-form (http[s]://authority[/path][?query]), or "*"
 * for OPTIONS. The path is left percent-encoded: routing compares it raw. */
static int parse_target(struct nb_http_parser *p)
{
	struct nb_http_req *r = &p->req;
	const char *t = r->target, *end = t + r->target_len, *path = t, *q;

	for (const char *c = t; c < end; c++)
		if ((unsigned char)*c <= 0x20 || (unsigned char)*c >= 0x7f || *c == '#')
			return fail(p, 400, "invalid character in request target");
	if (r->target_len == 1 && *t == '*') {
		if (r->method_len != 7 || memcmp(r->method_raw, "OPTIONS", 7) != 0)
			return fail(p, 400, "asterisk-form outside OPTIONS");
	} else if (*t != '/') {
		size_t skip = r->target_len >= 7 && ieq(t, 7, "http://")    ? 7
			      : r->target_len >= 8 && ieq(t, 8, "https://") ? 8
									    : 0;
		if (skip == 0)
			return fail(p, 400, "request target not in origin or absolute form");
		path = t + skip;
		while (path < end && *path != '/' && *path != '?')
			path++;
		if (path == t + skip)
			return fail(p, 400, "absolute-form target without authority");
	}
	q = memchr(path, '?', (size_t)(end - path));
	r->path = path;
	r->path_len = (size_t)((q ? q : end) - path);
	if (r->path_len == 0) {
		r->path = "/"; /* absolute-form without a path means "/" (RFC 9112 3.2.1) */
		r->path_len = 1;
	}
	if (q) {
		r->query = q + 1;
		r->query_len = (size_t)(end - q - 1);
	}
	return 0;
}

static const struct {
	const char *name;
	enum nb_http_method m;
} methods[] = { { "GET", NB_HTTP_GET }, { "HEAD", NB_HTTP_HEAD }, { "POST", NB_HTTP_POST } };

/* method SP request-target SP HTTP-version, single spaces (RFC 9112 3). */
static int parse_request_line(struct nb_http_parser *p, const char *s, size_t n)
{
	struct nb_http_req *r = &p->req;
	const char *sp1 = memchr(s, ' ', n), *sp2;
	int err;

	if (!sp1 || !all_tchar(s, (size_t)(sp1 - s)))
		return fail(p, 400, "malformed method");
	r->method_raw = s;
	r->method_len = (size_t)(sp1 - s);
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
		if (strlen(methods[i].name) == r->method_len &&
		    memcmp(methods[i].name, s, r->method_len) == 0)
			r->method = methods[i].m;
	sp2 = memchr(sp1 + 1, ' ', (size_t)(s + n - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1)
		return fail(p, 400, "malformed request line");
	r->target = sp1 + 1;
	r->target_len = (size_t)(sp2 - sp1 - 1);
	err = parse_version(p, sp2 + 1, (size_t)(s + n - sp2 - 1));
	return err ? err : parse_target(p);
}

/* name ":" OWS value OWS; used for header and trailer fields. */
static int parse_field(struct nb_http_parser *p, const char *s, size_t n, struct nb_http_header *h)
{
	const char *colon = memchr(s, ':', n), *v, *end = s + n;

	if (is_ws((unsigned char)s[0]))
		return fail(p, 400, "obs-fold or whitespace before a field");
	if (!colon)
		return fail(p, 400, "field without colon");
	if (colon > s && is_ws((unsigned char)colon[-1]))
		return fail(p, 400, "whitespace before colon");
	if (!all_tchar(s, (size_t)(colon - s)))
		return fail(p, 400, "invalid field name");
	for (v = colon + 1; v < end; v++)
		if (!is_value_char((unsigned char)*v))
			return fail(p, 400, "invalid character in field value");
	for (v = colon + 1; v < end && is_ws((unsigned char)*v);)
		v++;
	while (end > v && is_ws((unsigned char)end[-1]))
		end--;
	h->name = s;
	h->name_len = (size_t)(colon - s);
	h->value = v;
	h->value_len = (size_t)(end - v);
	return 0;
}

/* What the framing fields said; checked together once the head is read. */
struct framing {
	int n_cl, n_te, n_host, n_auth;
	bool te_chunked, te_other, te_chunked_twice, conn_close, conn_keep;
	uint64_t cl;
};

static int parse_content_length(struct nb_http_parser *p, const struct nb_http_header *h,
				uint64_t *cl)
{
	uint64_t v = 0;

	if (h->value_len == 0)
		return fail(p, 400, "empty Content-Length");
	for (size_t i = 0; i < h->value_len; i++) {
		unsigned char c = (unsigned char)h->value[i];
		if (!is_digit(c))
			return fail(p, 400, "Content-Length not a number");
		v = v > (UINT64_MAX - 9) / 10 ? UINT64_MAX : v * 10 + (c - '0');
	}
	*cl = v; /* saturated: a huge value is a 413, not a 400 */
	return 0;
}

static int note_field(struct nb_http_parser *p, const struct nb_http_header *h, struct framing *f)
{
	const char *s = h->value, *end = s + h->value_len, *e;
	size_t n;

	if (ieq(h->name, h->name_len, "content-length")) {
		if (f->n_cl++)
			return fail(p, 400, "Content-Length given twice");
		return parse_content_length(p, h, &f->cl);
	}
	if (ieq(h->name, h->name_len, "transfer-encoding")) {
		f->n_te++;
		while (next_elem(&s, end, &e, &n)) {
			if (!ieq(e, n, "chunked"))
				f->te_other = true;
			else if (f->te_chunked)
				f->te_chunked_twice = true;
			else
				f->te_chunked = true;
		}
	} else if (ieq(h->name, h->name_len, "connection")) {
		while (next_elem(&s, end, &e, &n)) {
			f->conn_close |= ieq(e, n, "close");
			f->conn_keep |= ieq(e, n, "keep-alive");
		}
	} else if (ieq(h->name, h->name_len, "host")) {
		f->n_host++;
	} else if (ieq(h->name, h->name_len, "authorization")) {
		f->n_auth++;
	} else if (ieq(h->name, h->name_len, "expect")) {
		p->req.expect_continue = ieq(s, h->value_len, "100-continue");
	}
	return 0;
}

/* RFC 9112 6.1-6.3 and 3.2: decides how the body is framed. */
static int decide_framing(struct nb_http_parser *p, const struct framing *f)
{
	struct nb_http_req *r = &p->req;

	if (f->n_host > 1 || (r->version == 11 && f->n_host == 0))
		return fail(p, 400, "HTTP/1.1 needs exactly one Host");
	if (f->n_auth > 1)
		return fail(p, 400, "Authorization given twice");
	r->keep_alive = !f->conn_close && (r->version == 11 || f->conn_keep);
	if (f->n_te) {
		if (f->n_cl)
			return fail(p, 400, "both Transfer-Encoding and Content-Length");
		if (r->version == 10)
			return fail(p, 400, "Transfer-Encoding in HTTP/1.0");
		if (f->te_other)
			return fail(p, 501, "transfer coding other than chunked");
		if (!f->te_chunked || f->te_chunked_twice)
			return fail(p, 400, "malformed Transfer-Encoding");
		r->chunked = true;
		p->body_end = p->head_end;
		p->state = NB_HTTP_S_CHUNK_LINE;
		return 0;
	}
	if (f->n_cl) {
		if (f->cl > p->lim.max_body_bytes || f->cl > p->cap - p->head_end)
			return fail(p, 413, "body too large");
		r->content_length = f->cl;
		p->left = f->cl;
		p->state = NB_HTTP_S_BODY;
		return 0;
	}
	if (r->method == NB_HTTP_POST || (r->method_len == 3 && memcmp(r->method_raw, "PUT", 3) == 0))
		return fail(p, 411, "POST without Content-Length");
	p->state = NB_HTTP_S_BODY; /* with left == 0: no body */
	return 0;
}

/* The head [start, head_end) is complete and every line ends in CRLF. */
static int parse_head(struct nb_http_parser *p)
{
	const char *s = p->buf + p->start, *end = p->buf + p->head_end - 2;
	struct framing f = { 0 };
	bool first = true;
	int err;

	while (s < end) {
		const char *lf = memchr(s, '\n', (size_t)(end + 2 - s));
		size_t n = (size_t)(lf - 1 - s);

		if (first) {
			err = parse_request_line(p, s, n);
		} else {
			struct nb_http_header *h = &p->req.headers[p->req.n_headers++];
			err = parse_field(p, s, n, h);
			if (!err)
				err = note_field(p, h, &f);
		}
		if (err)
			return err;
		first = false;
		s = lf + 1;
	}
	p->pos = p->scan = p->head_end;
	return decide_framing(p, &f);
}

static int read_head(struct nb_http_parser *p)
{
	size_t len;
	int r;

	if (p->state == NB_HTTP_S_START) {
		/* RFC 9112 2.2: empty lines before the request line are ignored. */
		while (p->pos < p->fill && p->buf[p->pos] == '\r') {
			if (p->pos + 1 == p->fill)
				return NB_HTTP_NEED_MORE;
			if (p->buf[p->pos + 1] != '\n')
				return fail(p, 400, "bare CR");
			p->pos += 2;
			if (p->pos >= p->lim.max_header_bytes)
				return fail(p, 431, "header section too large");
		}
		if (p->pos == p->fill)
			return NB_HTTP_NEED_MORE;
		p->start = p->scan = p->pos;
		p->state = NB_HTTP_S_HEAD;
	}
	for (;;) {
		r = next_line(p, p->pos == p->start ? 414 : 431, p->lim.max_header_bytes - p->pos,
			      &len);
		if (r <= 0)
			return r;
		if (p->pos != p->start && len == 0)
			break;
		if (p->pos != p->start && ++p->n_lines > p->lim.max_headers)
			return fail(p, 431, "too many header fields");
		p->pos = p->scan;
	}
	p->head_end = p->scan;
	return parse_head(p);
}

/* chunk-size [ chunk-ext ]; extensions are checked and ignored. */
static int parse_chunk_line(struct nb_http_parser *p, const char *s, size_t n, uint64_t *size)
{
	size_t i = 0;
	uint64_t v = 0;

	for (; i < n && hexval((unsigned char)s[i]) >= 0; i++)
		v = v > (UINT64_MAX >> 4) ? UINT64_MAX : v << 4 | (uint64_t)hexval((unsigned char)s[i]);
	if (i == 0)
		return fail(p, 400, "malformed chunk size");
	while (i < n) { /* *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ) */
		size_t j;
		while (i < n && is_ws((unsigned char)s[i]))
			i++;
		if (i == n || s[i++] != ';')
			return fail(p, 400, "malformed chunk extension");
		while (i < n && is_ws((unsigned char)s[i]))
			i++;
		for (j = i; i < n && is_tchar((unsigned char)s[i]);)
			i++;
		if (i == j)
			return fail(p, 400, "malformed chunk extension");
		for (j = i; i < n && is_ws((unsigned char)s[i]);)
			i++;
		if (i == n || s[i] != '=') {
			i = j; /* BWS only before "=" */
			continue;
		}
		for (i++; i < n && is_ws((unsigned char)s[i]);)
			i++;
		if (i < n && s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < n)
					i++;
				if (!is_value_char((unsigned char)s[i]))
					return fail(p, 400, "malformed chunk extension");
			}
			if (i++ == n)
				return fail(p, 400, "unterminated quoted string");
		} else {
			for (j = i; i < n && is_tchar((unsigned char)s[i]);)
				i++;
			if (i == j)
				return fail(p, 400, "malformed chunk extension");
		}
	}
	*size = v;
	return 0;
}

static int chunk_step(struct nb_http_parser *p)
{
	size_t len, have = p->fill - p->pos;
	uint64_t size;
	struct nb_http_header h;
	int r;

	switch (p->state) {
	case NB_HTTP_S_CHUNK_LINE:
		if ((r = next_line(p, 400, SIZE_MAX, &len)) <= 0)
			return r;
		if ((r = parse_chunk_line(p, p->buf + p->pos, len, &size)) != 0)
			return r;
		p->pos = p->scan;
		if (size > p->lim.max_body_bytes - (p->body_end - p->head_end))
			return fail(p, 413, "body too large");
		p->left = size;
		p->n_lines = 0;
		p->n_trailer = 0;
		p->state = size ? NB_HTTP_S_CHUNK_DATA : NB_HTTP_S_TRAILER;
		return 1;
	case NB_HTTP_S_CHUNK_DATA:
		len = p->left < have ? (size_t)p->left : have;
		if (len == 0)
			return 0;
		if (p->pos != p->body_end) /* decode in place */
			memmove(p->buf + p->body_end, p->buf + p->pos, len);
		p->body_end += len;
		p->pos = p->scan = p->pos + len;
		p->left -= len;
		if (p->left == 0)
			p->state = NB_HTTP_S_CHUNK_CRLF;
		return 1;
	case NB_HTTP_S_CHUNK_CRLF:
		if (have >= 1 && p->buf[p->pos] != '\r')
			return fail(p, 400, "chunk data not followed by CRLF");
		if (have < 2)
			return 0;
		if (p->buf[p->pos + 1] != '\n')
			return fail(p, 400, "chunk data not followed by CRLF");
		p->pos = p->scan = p->pos + 2;
		p->state = NB_HTTP_S_CHUNK_LINE;
		return 1;
	default: /* trailer fields: checked, counted against the head limits, dropped */
		if ((r = next_line(p, 431, p->lim.max_header_bytes - p->n_trailer, &len)) <= 0)
			return r;
		if (len && (r = parse_field(p, p->buf + p->pos, len, &h)) != 0)
			return r;
		if (len && ++p->n_lines > p->lim.max_headers)
			return fail(p, 431, "too many trailer fields");
		p->n_trailer += p->scan - p->pos;
		p->pos = p->scan;
		if (len == 0) {
			p->req.content_length = p->body_end - p->head_end;
			p->state = NB_HTTP_S_DONE;
		}
		return 1;
	}
}

/* Drops the framing consumed behind the decoded body, making room. */
static void compact(struct nb_http_parser *p)
{
	size_t gap = p->pos - p->body_end;

	if (gap == 0)
		return;
	memmove(p->buf + p->body_end, p->buf + p->pos, p->fill - p->pos);
	p->fill -= gap;
	p->pos -= gap;
	p->scan -= gap;
}

static int read_chunked(struct nb_http_parser *p)
{
	int r;

	while ((r = chunk_step(p)) > 0 && p->state != NB_HTTP_S_DONE)
		;
	if (r >= 0)
		compact(p);
	return r < 0 ? r : p->state == NB_HTTP_S_DONE ? NB_HTTP_DONE : NB_HTTP_NEED_MORE;
}

static void finish(struct nb_http_parser *p)
{
	struct nb_http_req *r = &p->req;

	r->body = p->buf + p->head_end;
	r->body_len = r->chunked ? p->body_end - p->head_end : (size_t)r->content_length;
	if (!r->chunked)
		p->pos = p->head_end + r->body_len;
	p->state = NB_HTTP_S_DONE;
}

static int parse(struct nb_http_parser *p)
{
	int r = NB_HTTP_NEED_MORE;

	if (p->state == NB_HTTP_S_ERROR)
		return error_code(p->status);
	if (p->state == NB_HTTP_S_DONE)
		return NB_HTTP_DONE;
	if (p->state <= NB_HTTP_S_HEAD && (r = read_head(p)) != 0)
		return r;
	if (p->state == NB_HTTP_S_BODY) {
		if (p->fill - p->head_end < p->left)
			r = NB_HTTP_NEED_MORE;
		else
			r = NB_HTTP_DONE;
	} else if (p->state > NB_HTTP_S_BODY) {
		r = read_chunked(p);
	}
	if (r == NB_HTTP_DONE)
		finish(p);
	else if (r == NB_HTTP_NEED_MORE && p->fill == p->cap)
		return p->state <= NB_HTTP_S_HEAD ? fail(p, 431, "head does not fit the buffer")
						  : fail(p, 413, "body does not fit the buffer");
	return r;
}

int nb_http_feed(struct nb_http_parser *p, const void *data, size_t len, size_t *consumed)
{
	size_t done = 0, n;
	int r;

	for (;;) {
		r = parse(p);
		if (r != NB_HTTP_NEED_MORE || done == len)
			break;
		n = p->cap - p->fill < len - done ? p->cap - p->fill : len - done;
		if (n == 0)
			break;
		memcpy(p->buf + p->fill, (const char *)data + done, n);
		p->fill += n;
		p->n_in += n;
		done += n;
	}
	*consumed = done;
	return r;
}

char *nb_http_space(struct nb_http_parser *p, size_t *room)
{
	*room = p->cap - p->fill;
	return p->buf + p->fill;
}

int nb_http_commit(struct nb_http_parser *p, size_t n)
{
	if (n > p->cap - p->fill)
		return -NB_EINVAL;
	p->fill += n;
	p->n_in += n;
	return parse(p);
}

void nb_http_reset_keep(struct nb_http_parser *p)
{
	size_t keep = p->state == NB_HTTP_S_DONE ? p->fill - p->pos : 0;

	memmove(p->buf, p->buf + p->fill - keep, keep);
	nb_http_parser_init(p, &p->lim, p->buf, p->cap);
	p->fill = keep;
	p->n_in = keep;
}

int nb_http_status(const struct nb_http_parser *p)
{
	return p->state == NB_HTTP_S_ERROR ? p->status : 0;
}

bool nb_http_started(const struct nb_http_parser *p)
{
	return p->state != NB_HTTP_S_START || (p->pos < p->fill && p->buf[p->pos] != '\r');
}

uint64_t nb_http_received(const struct nb_http_parser *p)
{
	return p->n_in;
}

bool nb_http_head_done(const struct nb_http_parser *p)
{
	return p->state >= NB_HTTP_S_BODY && p->state != NB_HTTP_S_ERROR;
}

bool nb_http_take_continue(struct nb_http_parser *p)
{
	if (p->continue_sent || !p->req.expect_continue || p->req.version != 11 ||
	    p->state < NB_HTTP_S_BODY || p->state >= NB_HTTP_S_DONE ||
	    (p->state == NB_HTTP_S_BODY && p->left == 0))
		return false;
	p->continue_sent = true;
	return true;
}

const struct nb_http_header *nb_http_find(const struct nb_http_req *r, const char *name)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (ieq(r->headers[i].name, r->headers[i].name_len, name))
			return &r->headers[i];
	return NULL;
}

/* credentials = "Bearer" 1*SP token68 (RFC 6750 2.1). */
bool nb_http_bearer(const struct nb_http_req *r, const char **tok, size_t *len)
{
	const struct nb_http_header *h = nb_http_find(r, "authorization");
	const char *v = h ? h->value : NULL;
	size_t i = 6, j, n = h ? h->value_len : 0;

	if (n <= 7 || !ieq(v, 6, "bearer") || v[6] != ' ')
		return false;
	while (i < n && v[i] == ' ')
		i++;
	for (j = i; j < n && (is_alnum((unsigned char)v[j]) || (v[j] && strchr("-._~+/", v[j])));)
		j++;
	while (j < n && v[j] == '=')
		j++;
	if (j == i || j != n)
		return false;
	*tok = v + i;
	*len = n - i;
	return true;
}

/* ---- responses ---- */

static const struct {
	int status;
	const char *reason;
} reasons[] = {
	{ 100, "Continue" },		{ 200, "OK" },
	{ 204, "No Content" },		{ 400, "Bad Request" },
	{ 401, "Unauthorized" },	{ 403, "Forbidden" },
	{ 404, "Not Found" },		{ 405, "Method Not Allowed" },
	{ 408, "Request Timeout" },	{ 411, "Length Required" },
	{ 413, "Content Too Large" },	{ 414, "URI Too Long" },
	{ 429, "Too Many Requests" },	{ 431, "Request Header Fields Too Large" },
	{ 500, "Internal Server Error" }, { 501, "Not Implemented" },
	{ 503, "Service Unavailable" }, { 505, "HTTP Version Not Supported" },
};

const char *nb_http_reason(int status)
{
	for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
		if (reasons[i].status == status)
			return reasons[i].reason;
	return NULL;
}

/* A value that cannot end its line early: no CTL but HTAB. */
static bool safe_text(const char *s)
{
	for (; *s; s++)
		if (!is_value_char((unsigned char)*s))
			return false;
	return true;
}

/* Whole "name: value\r\n" lines and nothing else. */
static bool safe_lines(const char *s)
{
	while (*s) {
		const char *colon = strchr(s, ':'), *c;
		if (!colon || !all_tchar(s, (size_t)(colon - s)))
			return false;
		for (c = colon + 1; *c && *c != '\r'; c++)
			if (!is_value_char((unsigned char)*c))
				return false;
		if (c[0] != '\r' || c[1] != '\n')
			return false;
		s = c + 2;
	}
	return true;
}

/* Appends without a terminating NUL, so a head fits a buffer of exactly
 * its size; once something does not fit, nothing more is written. */
struct out {
	char *buf;
	size_t cap, n;
	bool over;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->over || n > o->cap - o->n) {
		o->over = true;
		return;
	}
	memcpy(o->buf + o->n, s, n);
	o->n += n;
}

static void put_str(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_num(struct out *o, uint64_t v, unsigned base)
{
	char t[24];
	size_t i = sizeof(t);

	do
		t[--i] = "0123456789abcdef"[v % base];
	while (v /= base);
	put(o, t + i, sizeof(t) - i);
}

int nb_http_write_head(char *buf, size_t cap, const struct nb_http_resp *r, size_t *len)
{
	const char *reason = r->reason ? r->reason : nb_http_reason(r->status);
	bool until_close = r->content_length == NB_HTTP_UNTIL_CLOSE;
	struct out o = { buf, cap, 0, false };

	if (r->status < 100 || r->status > 599 || !reason || !safe_text(reason) ||
	    (r->content_type && !safe_text(r->content_type)) || (r->extra && !safe_lines(r->extra)) ||
	    r->content_length < NB_HTTP_UNTIL_CLOSE ||
	    (r->http10 && r->content_length == NB_HTTP_CHUNKED))
		return -NB_EINVAL;
	put_str(&o, "HTTP/1.1 ");
	put_num(&o, (uint64_t)r->status, 10);
	put_str(&o, " ");
	put_str(&o, reason);
	if (r->content_type) {
		put_str(&o, "\r\nContent-Type: ");
		put_str(&o, r->content_type);
	}
	if (r->content_length >= 0) {
		put_str(&o, "\r\nContent-Length: ");
		put_num(&o, (uint64_t)r->content_length, 10);
	} else if (r->content_length == NB_HTTP_CHUNKED) {
		put_str(&o, "\r\nTransfer-Encoding: chunked");
	}
	if (r->close || until_close)
		put_str(&o, "\r\nConnection: close");
	else if (r->http10)
		put_str(&o, "\r\nConnection: keep-alive");
	put_str(&o, "\r\n");
	if (r->extra)
		put_str(&o, r->extra);
	put_str(&o, "\r\n");
	if (o.over)
		return -NB_ERANGE;
	*len = o.n;
	return 0;
}

int nb_http_chunk_head(char *buf, size_t cap, size_t len, size_t *out)
{
	struct out o = { buf, cap, 0, false };

	put_num(&o, len, 16);
	put_str(&o, "\r\n");
	if (o.over)
		return -NB_ERANGE;
	*out = o.n;
	return 0;
}

int nb_http_chunk(char *buf, size_t cap, const void *data, size_t len, size_t *out)
{
	size_t head;
	int err;

	*out = 0;
	if (len == 0)
		return 0;
	if ((err = nb_http_chunk_head(buf, cap, len, &head)) != 0)
		return err;
	if (len > cap - head || cap - head - len < 2)
		return -NB_ERANGE;
	memcpy(buf + head, data, len);
	memcpy(buf + head + len, "\r\n", 2);
	*out = head + len + 2;
	return 0;
}

int nb_http_chunk_end(char *buf, size_t cap, size_t *out)
{
	if (cap < 5)
		return -NB_ERANGE;
	memcpy(buf, "0\r\n\r\n", 5);
	*out = 5;
	return 0;
}
