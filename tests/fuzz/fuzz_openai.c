/* OpenAI API fuzzing. Every input is:
 *  - a body for POST /v1/chat/completions (under every template family) and
 *    POST /v1/completions; an accepted request must hold valid UTF-8 without
 *    NUL, spans inside the prompt, stop strings nb_stop takes and sampler
 *    parameters nb_sampler_open takes; its prompt goes out as a response and
 *    as stream chunks cut where nb_utf8_complete_len says, and must come
 *    back from the JSON unchanged; the prompt is tokenized with the Llama 2
 *    tokenizer through its spans. A refused one must give an error JSON.
 *  - model output: raw bytes in a response, which must still be valid UTF-8
 *    JSON;
 *  - chat template text: detected, then used to render a conversation.
 * Seeds: tests/fuzz/corpus/fuzz_openai/. */
#include "runtime/text/chat_template.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/server/openai.h"
#include "runtime/model/sampler.h"
#include "runtime/model/stop.h"
#include "runtime/text/tokenizer.h"
#include "runtime/text/unicode.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2_MODEL "tests/data/llama2-tokenizer/tokenizer.model"
#define MAX_ENCODE 4096 /* prompt bytes worth tokenizing per run */

/* Loaded once: the harness has no other place to keep it. */
static struct nb_tok *llama2;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct nb_tok_spec s;

	(void)argc;
	(void)argv;
	nb_log_set_level(NB_LOG_SILENT);
	if (nb_tok_import_spm_model(&s, LLAMA2_MODEL) != 0 || nb_tok_open(&llama2, &s) != 0) {
		fprintf(stderr, "fuzz_openai: cannot load %s (run from the repo root)\n",
			LLAMA2_MODEL);
		abort();
	}
	nb_tok_spec_free(&s);
	return 0;
}

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_openai: %s\n", what);
		abort();
	}
}

static bool valid_utf8(const char *s, size_t n)
{
	uint32_t cp;

	for (size_t i = 0, k; i < n; i += k) {
		k = nb_unicode_decode(s + i, n - i, &cp);
		if (cp == 0 || (cp == NB_UC_REPLACEMENT && k == 1))
			return false;
	}
	return true;
}

/* The buffer from off on is valid UTF-8 JSON; returns it parsed. */
static cJSON *json_at(const struct nb_openai_buf *b, size_t off, size_t len)
{
	cJSON *j;

	check(b->data && off + len <= b->len && valid_utf8(b->data + off, len), "output not UTF-8");
	j = cJSON_ParseWithLength(b->data + off, len);
	check(j != NULL, "output is not JSON");
	return j;
}

/* Appends s to a growable string (the harness's own). */
static void append(char **acc, size_t *len, const char *s)
{
	size_t n = strlen(s);
	char *grown = realloc(*acc, *len + n + 1);

	check(grown != NULL, "no memory");
	memcpy(grown + *len, s, n + 1);
	*acc = grown;
	*len += n;
}

/* Each SSE event of b is "data: <JSON>\n\n" or "data: [DONE]\n\n"; the
 * text of their "content"/"text" members is appended to acc. */
static void check_sse(const struct nb_openai_buf *b, char **acc, size_t *acc_len)
{
	size_t pos = 0;

	while (pos < b->len) {
		const char *ev = b->data + pos, *end = strstr(ev, "\n\n");
		const cJSON *c, *t;
		cJSON *j;

		check(end && strncmp(ev, "data: ", 6) == 0, "bad SSE framing");
		pos = (size_t)(end - b->data) + 2;
		if (strncmp(ev + 6, "[DONE]\n\n", 8) == 0)
			continue;
		check(!memchr(ev, '\n', (size_t)(end - ev)), "newline inside an event");
		j = json_at(b, (size_t)(ev + 6 - b->data), (size_t)(end - ev - 6));
		c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
		t = cJSON_GetObjectItemCaseSensitive(c, "text");
		if (!t)
			t = cJSON_GetObjectItemCaseSensitive(
				cJSON_GetObjectItemCaseSensitive(c, "delta"), "content");
		if (cJSON_IsString(t))
			append(acc, acc_len, t->valuestring);
		cJSON_Delete(j);
	}
}

/* What the server does with an accepted request's text: answer it whole
 * and streamed in pieces cut at character boundaries. Both must give the
 * text back exactly (it is valid UTF-8 without NUL). */
static void respond(const struct nb_gen_request *r, const char *text, size_t len)
{
	struct nb_openai_meta m = { r->endpoint, 0xabc, 1700000000, r->model, r->include_usage };
	struct nb_openai_usage u = { (uint32_t)len, 7 };
	struct nb_openai_buf b = { 0 };
	char *acc = NULL;
	size_t acc_len = 0, pos = 0, step = 1;
	const cJSON *c, *t;
	cJSON *j;

	check(nb_openai_response(&b, &m, text, len, NB_FINISH_STOP, &u) == 0, "response");
	j = json_at(&b, 0, b.len);
	c = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "choices"), 0);
	t = cJSON_GetObjectItemCaseSensitive(c, r->endpoint == NB_OPENAI_CHAT ? "message" : "text");
	if (r->endpoint == NB_OPENAI_CHAT)
		t = cJSON_GetObjectItemCaseSensitive(t, "content");
	check(cJSON_IsString(t) && strlen(t->valuestring) == len &&
	      memcmp(t->valuestring, text, len) == 0, "response text differs");
	cJSON_Delete(j);
	nb_openai_buf_free(&b);

	check(nb_openai_chunk_role(&b, &m) == 0, "role chunk");
	while (pos < len) {
		size_t n = len - pos < step ? len - pos : step;
		size_t ok = nb_utf8_complete_len(text + pos, n);

		if (ok == 0 && n < len - pos) { /* a character longer than the step */
			step++;
			continue;
		}
		ok = ok ? ok : n;
		check(nb_openai_chunk_text(&b, &m, text + pos, ok) == 0, "text chunk");
		pos += ok;
		step = step % 13 + 1;
	}
	check(nb_openai_chunk_finish(&b, &m, NB_FINISH_LENGTH) == 0 &&
	      (!r->include_usage || nb_openai_chunk_usage(&b, &m, &u) == 0) &&
	      nb_openai_chunk_done(&b) == 0, "final chunks");
	check_sse(&b, &acc, &acc_len);
	check(acc_len == len && (len == 0 || memcmp(acc, text, len) == 0), "stream text differs");
	free(acc);
	nb_openai_buf_free(&b);
}

/* An accepted request is one the rest of the server can run. */
static void check_request(const struct nb_gen_request *r)
{
	struct nb_sampler s;
	struct nb_stop st;
	int32_t ids[MAX_ENCODE + 8];
	size_t n;
	int err;

	check(r->prompt && strlen(r->prompt) == r->prompt_len &&
	      valid_utf8(r->prompt, r->prompt_len), "prompt not clean UTF-8");
	for (size_t i = 0; i < r->n_specials; i++)
		check(r->specials[i].off <= r->prompt_len &&
		      r->specials[i].len <= r->prompt_len - r->specials[i].off, "span outside");
	nb_stop_init(&st);
	for (size_t i = 0; i < r->n_stop; i++)
		check(nb_stop_add(&st, r->stop[i]) == 0, "nb_stop refuses a stop string");
	check(nb_sampler_open(&s, 32, &r->sp) == 0, "nb_sampler refuses the parameters");
	nb_sampler_close(&s);
	if (r->prompt_len <= MAX_ENCODE) {
		err = nb_chat_encode(llama2, r->prompt, r->prompt_len, r->specials, r->n_specials,
				     ids, MAX_ENCODE + 8, &n);
		check(err == 0 && n >= 1 && ids[0] == nb_tok_bos(llama2), "prompt does not encode");
	}
}

static void refused(const struct nb_openai_error *e)
{
	struct nb_openai_buf b = { 0 };
	cJSON *j;

	check(e->status == 400 || e->status == 500, "status");
	check(nb_openai_error_from(&b, e) == 0, "error json");
	j = json_at(&b, 0, b.len);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

static void try_body(const char *body, size_t len, const struct nb_chat_tmpl *t, int endpoint)
{
	struct nb_openai_limits lim;
	struct nb_gen_request r;
	struct nb_openai_error e;
	int err;

	nb_openai_limits_default(&lim);
	lim.tmpl = t;
	lim.max_prompt_bytes = 64 << 10;
	err = endpoint == NB_OPENAI_CHAT ? nb_openai_parse_chat(body, len, &lim, &r, &e)
					 : nb_openai_parse_completion(body, len, &lim, &r, &e);
	if (err) {
		check(r.prompt == NULL && r.model == NULL && r.n_stop == 0, "request not emptied");
		refused(&e);
		return;
	}
	check_request(&r);
	respond(&r, r.prompt, r.prompt_len);
	nb_gen_request_free(&r);
}

/* Raw bytes as model output: whatever they are, the JSON stays valid. */
static void try_output(const char *data, size_t size)
{
	struct nb_openai_meta m = { NB_OPENAI_CHAT, 1, 1, NULL, true };
	struct nb_openai_buf b = { 0 };
	char *model = strndup(data, size < 64 ? size : 64);
	cJSON *j;

	check(model != NULL, "no memory");
	m.model = model;
	check(nb_openai_response(&b, &m, data, size, NB_FINISH_NONE, NULL) == 0, "response");
	j = json_at(&b, 0, b.len);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
	check(nb_openai_chunk_text(&b, &m, data, size) == 0 &&
	      nb_openai_models(&b, model, 0) == 0 && nb_openai_error_sse(&b, 503, model) == 0,
	      "chunks");
	free(model);
	check(nb_utf8_complete_len(data, size) + 3 >= size, "held back more than 3 bytes");
	nb_openai_buf_free(&b);
}

/* The input as a chat template: whatever it says, rendering works. */
static void try_template(const char *data, size_t size)
{
	static const struct nb_chat_msg conv[] = {
		{ NB_ROLE_SYSTEM, "S", 1 },
		{ NB_ROLE_USER, " u ", 3 },
		{ NB_ROLE_ASSISTANT, "a", 1 },
		{ NB_ROLE_USER, "v", 1 },
	};
	struct nb_chat_tmpl t;
	struct nb_chat_prompt p;

	nb_chat_tmpl_detect(&t, data, size);
	check(t.family >= 0 && t.family < NB_CHAT_FAMILY_COUNT &&
	      strlen(t.default_system) < sizeof(t.default_system) &&
	      valid_utf8(t.default_system, strlen(t.default_system)), "detect");
	nb_chat_prompt_init(&p, 1 << 16);
	check(nb_chat_render(&t, conv, sizeof(conv) / sizeof(conv[0]), &p) == 0 &&
	      valid_utf8(p.text, p.len), "render");
	nb_chat_prompt_free(&p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct nb_chat_tmpl t;
	static const char *const templates[] = {
		NULL, "[INST]", "<|start_header_id|>", "<|user|>", "<|user|><|end|>",
		"<|im_start|>system\\nDefault system.<|im_end|>",
	};

	for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++) {
		nb_chat_tmpl_detect(&t, templates[i], templates[i] ? strlen(templates[i]) : 0);
		try_body(s, size, &t, NB_OPENAI_CHAT);
	}
	try_body(s, size, NULL, NB_OPENAI_COMPLETION);
	try_output(s, size);
	try_template(s, size);
	return 0;
}
