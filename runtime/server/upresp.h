/* The cloud's answer, as the uplink reads it: an HTTP/1.1 response head,
 * a body chunked, Content-Length-delimited or ended by the close, and in
 * it an OpenAI stream of server-sent events whose data are chunk objects.
 * Incremental (fed what TLS hands over, any split), bounded in memory,
 * never trusting the peer: anything malformed is an error, not a guess.
 * No I/O (tests/fuzz/fuzz_upresp.c feeds it arbitrary bytes). */
#ifndef NB_UPRESP_H
#define NB_UPRESP_H

#include "runtime/model/finish.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NB_UPRESP_MAX_HEAD 16384
#define NB_UPRESP_MAX_EVENT (1u << 20) /* bytes of one event's data */
#define NB_UPRESP_ERR_BODY 512         /* bytes of a non-2xx body kept for the message */

/* One event's data (its "data:" lines joined by \n), NUL-terminated.
 * A non-zero return stops the parse with that error. */
typedef int (*nb_upresp_event_fn)(void *arg, const char *data, size_t len);

enum nb_upresp_state {
	NB_UPRESP_HEAD, NB_UPRESP_CHUNK_SIZE, NB_UPRESP_CHUNK_DATA, NB_UPRESP_CHUNK_END,
	NB_UPRESP_TRAILER, NB_UPRESP_LENGTH, NB_UPRESP_UNTIL_CLOSE, NB_UPRESP_DONE,
};

struct nb_upresp {
	enum nb_upresp_state state;
	int status;            /* once the head is in */
	bool chunked, keep_alive;
	uint64_t left;         /* of the chunk or the Content-Length body */
	char head[NB_UPRESP_MAX_HEAD];
	size_t head_len;
	char size_line[32];    /* a chunk-size line (or CRLF / trailer line) being read */
	size_t size_len;
	char *line;            /* the SSE line being read */
	size_t line_len, line_cap;
	char *data;            /* the event being read */
	size_t data_len, data_cap;
	bool have_data;
	char err_body[NB_UPRESP_ERR_BODY + 1]; /* a non-2xx body's start */
	size_t err_len;
	nb_upresp_event_fn on_event;
	void *arg;
};

void nb_upresp_init(struct nb_upresp *p, nb_upresp_event_fn on_event, void *arg);
/* Drops buffers; p may be initialized again for the next response. */
void nb_upresp_free(struct nb_upresp *p);
/* 0, -NB_EFORMAT (not HTTP, bad chunking, too long), -NB_ENOMEM or the
 * callback's error. Bytes past the end of the response are an error too. */
int nb_upresp_feed(struct nb_upresp *p, const char *buf, size_t len);
/* The connection ended: 0 if that ends the response (close-delimited, or
 * already complete), else -NB_EIO (cut short). */
int nb_upresp_eof(struct nb_upresp *p);
static inline bool nb_upresp_done(const struct nb_upresp *p) { return p->state == NB_UPRESP_DONE; }

/* One chunk object of the stream, as the uplink needs it. */
struct nb_upresp_chunk {
	bool done;             /* "[DONE]" */
	bool error;            /* an error object: message in text */
	char *text;            /* malloc'd: the content of choices[0] (delta.content or text), or NULL */
	size_t text_len;
	enum nb_finish finish; /* NB_FINISH_NONE unless finish_reason is set */
	bool has_usage;
	uint32_t prompt_tokens, completion_tokens;
};

/* 0, or -NB_EFORMAT (not JSON, or no object). c->text is the caller's to free. */
int nb_upresp_chunk(const char *data, size_t len, struct nb_upresp_chunk *c);

#endif
