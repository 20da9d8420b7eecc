/* The OpenAI-compatible API as data: request JSON -> struct nb_gen_request,
 * and the response, streaming (SSE) and error JSON. No I/O: the server
 * feeds bodies in and writes out what these functions build.
 * docs/api.md is the user's view (parameters, extensions, errors).
 *
 * Parsing never trusts the body: wrong types and out-of-range values are a
 * 400 with OpenAI's error object naming the parameter; unknown fields are
 * ignored (clients send extras). Everything produced is valid UTF-8 JSON:
 * text from the model that is not valid UTF-8 becomes U+FFFD. */
#ifndef NB_OPENAI_H
#define NB_OPENAI_H

#include "runtime/text/chat_template.h"
#include "runtime/model/sampler.h"
#include "runtime/model/stop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum nb_openai_endpoint {
	NB_OPENAI_CHAT = 1,       /* POST /v1/chat/completions */
	NB_OPENAI_COMPLETION = 2, /* POST /v1/completions */
};

/* "route" of a request (nibble's extension, docs/uplink.md). */
enum nb_openai_route { NB_OPENAI_ROUTE_AUTO = 0, NB_OPENAI_ROUTE_LOCAL, NB_OPENAI_ROUTE_CLOUD };

/* What the server allows; zero fields take the defaults below. */
struct nb_openai_limits {
	size_t max_prompt_bytes;     /* prompt after templating; 256 KiB */
	size_t max_messages;         /* chat messages; 1024 */
	uint32_t max_tokens;         /* larger max_tokens is a 400 (the context size); 0: no cap */
	uint32_t default_max_tokens; /* when absent; 0: until the context is full */
	const struct nb_chat_tmpl *tmpl; /* the model's chat template; NULL: default */
};
#define NB_OPENAI_MAX_PROMPT_BYTES (256u << 10)
#define NB_OPENAI_MAX_MESSAGES 1024u
#define NB_OPENAI_REPEAT_LAST_N 64u /* history of repetition_penalty when not given */

/* A parsed request. Owns every pointer but end_of_turn. */
struct nb_gen_request {
	int endpoint;   /* enum nb_openai_endpoint */
	char *model;    /* "model" as sent, NULL if absent */
	char *prompt;   /* valid UTF-8, NUL-terminated, templated for chat; no BOS */
	size_t prompt_len;
	struct nb_chat_span *specials; /* special-token spans of prompt, for nb_chat_encode */
	size_t n_specials;
	const char *end_of_turn; /* static: stop on this token too (nb_chat_token_id), or NULL */
	uint32_t max_tokens;     /* 0: until the context is full */
	struct nb_sampler_params sp;
	bool seed_set;           /* else the server picks sp.seed */
	char *stop[NB_STOP_MAX]; /* for nb_stop_add; each 1..NB_STOP_MAX_LEN bytes */
	size_t n_stop;
	bool stream, include_usage;
	bool local_only, local_only_set; /* "local_only": never leaves the device */
	int route;               /* "route": enum nb_openai_route */
};

/* Why a request was refused, as OpenAI's error object wants it. */
struct nb_openai_error {
	int status;        /* 400, or 500 when out of memory */
	char message[256];
	char param[64];    /* offending parameter ("messages[2].content"), "" if none */
	const char *code;  /* static, or NULL */
};

void nb_openai_limits_default(struct nb_openai_limits *lim);
void nb_gen_request_init(struct nb_gen_request *r);
/* NULL-safe, idempotent. */
void nb_gen_request_free(struct nb_gen_request *r);

/* 0, or -NB_EFORMAT / -NB_ENOTSUP / -NB_ERANGE (status 400) or -NB_ENOMEM
 * (500) with err filled in and req left empty. lim NULL: defaults. */
int nb_openai_parse_chat(const char *body, size_t len, const struct nb_openai_limits *lim,
			 struct nb_gen_request *req, struct nb_openai_error *err);
int nb_openai_parse_completion(const char *body, size_t len, const struct nb_openai_limits *lim,
			       struct nb_gen_request *req, struct nb_openai_error *err);

/* ---- output -------------------------------------------------------------------
 * Every builder appends to a caller-owned growable buffer (zero-initialize
 * it, or nb_openai_buf_init). On failure (-NB_ENOMEM) the text is as it
 * was and failed is set. The text is NUL-terminated; len excludes the NUL. */
struct nb_openai_buf {
	char *data;
	size_t len, cap;
	bool failed; /* an append ran out of memory since init: for builders that check once */
};
void nb_openai_buf_init(struct nb_openai_buf *b);
void nb_openai_buf_free(struct nb_openai_buf *b);
/* Appends n bytes (kept NUL-terminated); -NB_ENOMEM leaves b as it was. */
int nb_openai_buf_append(struct nb_openai_buf *b, const char *s, size_t n);

#include "runtime/model/finish.h" /* enum nb_finish, shared with the scheduler */

/* Identity of one response, shared by all its chunks. */
struct nb_openai_meta {
	int endpoint;       /* enum nb_openai_endpoint */
	uint64_t id;        /* "chatcmpl-%016x" / "cmpl-%016x" */
	int64_t created;    /* unix time */
	const char *model;  /* the model's name */
	bool include_usage; /* streaming: chunks carry "usage": null, then a usage chunk */
};

struct nb_openai_usage {
	uint32_t prompt_tokens, completion_tokens;
};

/* The whole non-streaming answer: chat.completion or text_completion. */
int nb_openai_response(struct nb_openai_buf *b, const struct nb_openai_meta *m,
		       const char *text, size_t len, int finish, const struct nb_openai_usage *u);

/* Streaming, each as one SSE event "data: {...}\n\n":
 *   nb_openai_chunk_role   first (chat: delta {role, content ""}; nothing for completions)
 *   nb_openai_chunk_text   each piece of text (skipped when len is 0)
 *   nb_openai_chunk_finish the last choice chunk, finish_reason set
 *   nb_openai_chunk_usage  if include_usage: choices [] and usage
 *   nb_openai_chunk_done   "data: [DONE]\n\n"
 * Text must be cut at character boundaries (nb_utf8_complete_len). */
int nb_openai_chunk_role(struct nb_openai_buf *b, const struct nb_openai_meta *m);
int nb_openai_chunk_text(struct nb_openai_buf *b, const struct nb_openai_meta *m,
			 const char *text, size_t len);
int nb_openai_chunk_finish(struct nb_openai_buf *b, const struct nb_openai_meta *m, int finish);
int nb_openai_chunk_usage(struct nb_openai_buf *b, const struct nb_openai_meta *m,
			  const struct nb_openai_usage *u);
int nb_openai_chunk_done(struct nb_openai_buf *b);

/* GET /v1/models: one model, owned_by "nibble". */
int nb_openai_models(struct nb_openai_buf *b, const char *name, int64_t created);

/* {"error": {"message", "type", "param", "code"}} with OpenAI's type for the
 * status: 429 "requests" (code "rate_limit_exceeded"), 5xx "server_error",
 * every other "invalid_request_error" (401: code "invalid_api_key"). code
 * NULL takes that default, param NULL is null. */
int nb_openai_error_json(struct nb_openai_buf *b, int status, const char *message,
			 const char *param, const char *code);
/* The same as an SSE event, for a failure after streaming began. */
int nb_openai_error_sse(struct nb_openai_buf *b, int status, const char *message);
/* err of a failed parse as the error JSON. */
int nb_openai_error_from(struct nb_openai_buf *b, const struct nb_openai_error *err);

/* Length of the longest prefix of s[0..n) that does not end inside a UTF-8
 * character that later bytes could complete: send that, keep the rest (at
 * most 3 bytes) until more text comes or the text ends. Bytes that can
 * never become valid are not held (they are sent, as U+FFFD). */
size_t nb_utf8_complete_len(const char *s, size_t n);

#endif
