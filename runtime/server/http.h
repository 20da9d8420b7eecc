/* HTTP/1.1 request parser and response writer for the local server.
 *
 * No I/O here: the event loop reads into the parser's buffer (or feeds
 * bytes), the parser says when a whole request, body included, is there.
 * One caller-owned buffer per connection holds the head, the body (chunked
 * bodies are decoded in place) and any pipelined bytes that follow; every
 * slice in struct nb_http_req points into it and stays valid until
 * nb_http_reset_keep().
 *
 * Strict where RFC 9112 says MUST (request smuggling defences):
 *  - every line ends in CRLF: a bare LF or bare CR anywhere in the head or
 *    the chunk framing is a 400 (clients we serve all send CRLF);
 *  - obs-fold, whitespace before the colon or before the first field, CTLs
 *    (NUL included) in values, non-token names or methods: 400;
 *  - Content-Length must be digits, at most once; Content-Length together
 *    with Transfer-Encoding, Transfer-Encoding in HTTP/1.0, or chunked
 *    applied twice: 400; a coding other than chunked: 501;
 *  - HTTP/1.1 without Host, or Host, Authorization or Content-Length given
 *    twice: 400;
 *  - POST (or PUT) with neither Content-Length nor Transfer-Encoding: 411.
 * Lenient where harmless: empty lines before the request line are skipped,
 * the absolute-form target (http://host/path) is accepted, chunk extensions
 * and trailers are checked for syntax and dropped.
 *
 * After an error the connection must be closed (send the status, then
 * Connection: close): the parser stays in the error state. */
#ifndef NB_HTTP_H
#define NB_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NB_HTTP_MAX_HEADERS 64 /* capacity of nb_http_req.headers */

struct nb_http_limits {
	size_t max_header_bytes; /* request line + fields + empty line (431; 16 KiB) */
	size_t max_headers;      /* field lines, also per trailer section (431; 64) */
	size_t max_body_bytes;   /* decoded body (413; 1 MiB) */
	size_t max_line;         /* request line (414), field line (431), chunk line (400); 8 KiB */
};

enum nb_http_method { NB_HTTP_OTHER, NB_HTTP_GET, NB_HTTP_HEAD, NB_HTTP_POST };

struct nb_http_header {
	const char *name; /* not NUL-terminated */
	size_t name_len;
	const char *value; /* leading and trailing whitespace removed */
	size_t value_len;
};

struct nb_http_req {
	enum nb_http_method method;
	const char *method_raw; /* as sent, case-sensitive ("get" is OTHER) */
	size_t method_len;
	const char *target; /* request-target as sent */
	size_t target_len;
	const char *path; /* target without scheme/authority and query, not decoded */
	size_t path_len;
	const char *query; /* after '?', NULL if there is no '?' */
	size_t query_len;
	int version; /* 10 or 11 */
	struct nb_http_header headers[NB_HTTP_MAX_HEADERS];
	size_t n_headers;
	bool chunked;            /* the body came with Transfer-Encoding: chunked */
	bool keep_alive;         /* 1.1 unless "Connection: close"; 1.0 only with "keep-alive" */
	bool expect_continue;    /* "Expect: 100-continue" */
	uint64_t content_length; /* Content-Length, or decoded size once chunked is DONE */
	const char *body;        /* content_length bytes, valid when DONE */
	size_t body_len;
};

enum nb_http_state {
	NB_HTTP_S_START, NB_HTTP_S_HEAD, NB_HTTP_S_BODY, NB_HTTP_S_CHUNK_LINE,
	NB_HTTP_S_CHUNK_DATA, NB_HTTP_S_CHUNK_CRLF, NB_HTTP_S_TRAILER, NB_HTTP_S_DONE,
	NB_HTTP_S_ERROR
};

/* Per connection. Fields are read-only for the caller except through the
 * functions below; req is valid once nb_http_feed() returned NB_HTTP_DONE. */
struct nb_http_parser {
	struct nb_http_limits lim;
	char *buf;
	size_t cap;
	size_t fill;     /* bytes in buf */
	size_t pos;      /* parsed up to here: start of the line being scanned */
	size_t scan;     /* the scan for that line's LF has reached here */
	size_t start;    /* request line starts here (empty lines skipped) */
	size_t head_end; /* just past the empty line ending the head */
	size_t body_end; /* end of the (decoded) body so far */
	size_t n_lines;  /* field lines seen in this head or trailer section */
	size_t n_trailer; /* bytes of the trailer section so far */
	uint64_t left;   /* body or chunk bytes still to come */
	uint64_t n_in;   /* bytes of this request received, for 408 decisions */
	enum nb_http_state state;
	int status;      /* HTTP status to answer after an error */
	const char *why; /* what was wrong, for the log */
	bool continue_sent;
	struct nb_http_req req;
};

enum { NB_HTTP_NEED_MORE = 0, NB_HTTP_DONE = 1 };

void nb_http_limits_default(struct nb_http_limits *lim);
/* Buffer size that never makes a request within lim fail for lack of room. */
size_t nb_http_bufsize(const struct nb_http_limits *lim);

/* lim NULL: defaults; zero fields take their default, max_headers is capped
 * at NB_HTTP_MAX_HEADERS. buf (cap bytes, nb_http_bufsize() is enough) is
 * the caller's and must outlive p. A smaller buffer is allowed: requests
 * that do not fit get 413/431. */
void nb_http_parser_init(struct nb_http_parser *p, const struct nb_http_limits *lim, char *buf,
			 size_t cap);

/* Copies what fits of data into the buffer and parses. *consumed is how
 * much was taken; once DONE nothing more is taken. Returns NB_HTTP_NEED_MORE,
 * NB_HTTP_DONE, or -NB_EFORMAT (400, 411), -NB_ERANGE (413, 414, 431) or
 * -NB_ENOTSUP (501, 505) with the status in nb_http_status(). len 0 parses
 * what is buffered (pipelined bytes after nb_http_reset_keep()). */
int nb_http_feed(struct nb_http_parser *p, const void *data, size_t len, size_t *consumed);
/* Zero-copy variant: read() into nb_http_space(), then nb_http_commit(). */
char *nb_http_space(struct nb_http_parser *p, size_t *room);
int nb_http_commit(struct nb_http_parser *p, size_t n);

/* After a DONE request is answered: moves the bytes that follow it to the
 * front and starts on the next request (call nb_http_feed(p, NULL, 0, ..)). */
void nb_http_reset_keep(struct nb_http_parser *p);

/* 400, 411, 413, 414, 431, 501, 505 after an error, else 0. */
int nb_http_status(const struct nb_http_parser *p);
/* Some byte of a request (not just empty lines) has arrived: an idle
 * timeout now deserves a 408 instead of a silent close. */
bool nb_http_started(const struct nb_http_parser *p);
uint64_t nb_http_received(const struct nb_http_parser *p);
/* The head is parsed (req's method, target and headers are valid) while the
 * body may still be on its way: credentials can be checked before it is
 * buffered. */
bool nb_http_head_done(const struct nb_http_parser *p);
/* True once per request when the head asked for 100-continue and the body
 * is still to come: the caller then sends NB_HTTP_CONTINUE. */
bool nb_http_take_continue(struct nb_http_parser *p);
#define NB_HTTP_CONTINUE "HTTP/1.1 100 Continue\r\n\r\n"

/* First field named name (case-insensitive), or NULL. */
const struct nb_http_header *nb_http_find(const struct nb_http_req *r, const char *name);
/* "Authorization: Bearer <token68>" (scheme case-insensitive). */
bool nb_http_bearer(const struct nb_http_req *r, const char **tok, size_t *len);

/* ---- responses ---- */
#define NB_HTTP_CHUNKED (-1)     /* content_length: Transfer-Encoding: chunked */
#define NB_HTTP_UNTIL_CLOSE (-2) /* content_length: body ends when the connection closes */

struct nb_http_resp {
	int status;               /* 100..599 */
	const char *reason;       /* NULL: nb_http_reason(status) */
	const char *content_type; /* NULL: no Content-Type */
	int64_t content_length;   /* >= 0, NB_HTTP_CHUNKED or NB_HTTP_UNTIL_CLOSE */
	bool close;               /* send "Connection: close" (the caller then closes) */
	bool http10;              /* the request was HTTP/1.0: keep-alive must be explicit */
	const char *extra;        /* NULL or whole lines, "Retry-After: 5\r\n" */
};

/* Standard reason phrase, or NULL for a status without one here. */
const char *nb_http_reason(int status);
/* Writes the status line and fields into buf. -NB_ERANGE if cap is too
 * small (nothing usable written), -NB_EINVAL for a value that would break
 * the framing (CR/LF in reason or content type, malformed extra, chunked
 * for HTTP/1.0). */
int nb_http_write_head(char *buf, size_t cap, const struct nb_http_resp *r, size_t *len);

#define NB_HTTP_CHUNK_OVERHEAD 20 /* 16 hex digits + 2 CRLF */
/* One chunk: hex size, CRLF, data, CRLF. len 0 writes nothing (a zero
 * chunk would end the body). -NB_ERANGE if cap is too small. */
int nb_http_chunk(char *buf, size_t cap, const void *data, size_t len, size_t *out);
/* Only the "<hex>\r\n" line, for writev() of large data (then send CRLF). */
int nb_http_chunk_head(char *buf, size_t cap, size_t len, size_t *out);
/* The last chunk and the end of the (empty) trailer: "0\r\n\r\n". */
int nb_http_chunk_end(char *buf, size_t cap, size_t *out);

#endif
