/* The OpenAI API layer: every request parameter valid and invalid (status,
 * param, code, message), chat templates against their published Jinja
 * templates (expected strings rendered from them by jinja2 with Hugging
 * Face's settings, BOS left to the tokenizer), responses and chunks against
 * OpenAI's documented field names, SSE framing, UTF-8 hold-back and JSON
 * escapes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/text/chat_template.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/server/openai.h"
#include "runtime/text/tokenizer.h"
#include "tools/import/ckpt.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2_MODEL "tests/data/llama2-tokenizer/tokenizer.model"
#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- published templates (as tokenizer_config.json holds them, JSON-decoded) ---- */

static const char T_LLAMA2[] =
	"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
	"system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
	"set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
	"(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
	"roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == "
	"0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
	"'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
	"%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() "
	"+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
	"eos_token }}{% endif %}{% endfor %}";
static const char T_LLAMA3[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | "
	"trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
	"endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
	"'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
static const char T_QWEN2[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
	"'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif "
	"%}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
	"'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char T_QWEN25[] =
	"{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == "
	"'system' %}\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are "
	"Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}\n    {%- endif %}\n{%- "
	"else %}\n    {%- if messages[0]['role'] == 'system' %}\n        {{- '<|im_start|>system\\n' "
	"+ messages[0]['content'] + '<|im_end|>\\n' }}\n    {%- else %}\n        {{- "
	"'<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
	"assistant.<|im_end|>\\n' }}\n    {%- endif %}\n{%- endif %}\n{%- for message in messages "
	"%}{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}{%- "
	"endfor %}\n{%- if add_generation_prompt %}\n    {{- '<|im_start|>assistant\\n' }}\n{%- endif %}\n";
static const char T_SMOLLM[] =
	"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
	"message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
	"'<|im_start|>assistant\n' }}{% endif %}";
static const char T_ZEPHYR[] =
	"{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
	"message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ "
	"'<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' "
	"%}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if "
	"loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
static const char T_PHI3[] =
	"{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
	"message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
	"message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' "
	"%}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if "
	"add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

/* Conversation A: system, user, assistant, user. B: one user turn with
 * whitespace around it (which some templates trim). */
static const struct nb_chat_msg conv_a[] = {
	{ NB_ROLE_SYSTEM, "You are helpful.", 16 },
	{ NB_ROLE_USER, "Hello!", 6 },
	{ NB_ROLE_ASSISTANT, "Hi there.", 9 },
	{ NB_ROLE_USER, "How are you?", 12 },
};
static const struct nb_chat_msg conv_b[] = { { NB_ROLE_USER, "  Hi  \n", 7 } };

/* ---- helpers ---- */

static int setup(void **state)
{
	(void)state;
	nb_log_set_level(NB_LOG_SILENT);
	return 0;
}

static struct nb_chat_tmpl tmpl_of(const char *text)
{
	struct nb_chat_tmpl t;

	nb_chat_tmpl_detect(&t, text, text ? strlen(text) : 0);
	return t;
}

static char *render(const char *tmpl_text, const struct nb_chat_msg *m, size_t n)
{
	struct nb_chat_tmpl t = tmpl_of(tmpl_text);
	struct nb_chat_prompt p;
	char *s;

	nb_chat_prompt_init(&p, 1 << 20);
	assert_int_equal(nb_chat_render(&t, m, n, &p), 0);
	assert_int_equal(strlen(p.text), p.len);
	s = strdup(p.text);
	nb_chat_prompt_free(&p);
	return s;
}

static void check_render(const char *tmpl_text, const struct nb_chat_msg *m, size_t n,
			 const char *want)
{
	char *got = render(tmpl_text, m, n);

	assert_string_equal(got, want);
	free(got);
}

static int parse(int endpoint, const char *body, const struct nb_openai_limits *lim,
		 struct nb_gen_request *r, struct nb_openai_error *e)
{
	size_t len = strlen(body);

	return endpoint == NB_OPENAI_CHAT ? nb_openai_parse_chat(body, len, lim, r, e)
					  : nb_openai_parse_completion(body, len, lim, r, e);
}

static void parse_ok(int endpoint, const char *body, const struct nb_openai_limits *lim,
		     struct nb_gen_request *r)
{
	struct nb_openai_error e;
	int err = parse(endpoint, body, lim, r, &e);

	if (err)
		fail_msg("%s: %s (param %s)", body, e.message, e.param);
}

#define CHAT_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}]"

static cJSON *parse_json(const struct nb_openai_buf *b, size_t off)
{
	cJSON *j = cJSON_Parse(b->data + off);

	assert_non_null(j);
	return j;
}

/* The object has exactly these members, in any order. */
static void assert_keys(const cJSON *o, const char *const *keys, size_t n)
{
	const cJSON *c;
	size_t count = 0;

	assert_true(cJSON_IsObject(o));
	cJSON_ArrayForEach(c, o) count++;
	for (size_t i = 0; i < n; i++) {
		if (!cJSON_GetObjectItemCaseSensitive(o, keys[i]))
			fail_msg("missing member '%s'", keys[i]);
	}
	assert_int_equal(count, n);
}

static const char *str_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	assert_true(cJSON_IsString(v));
	return v->valuestring;
}

static double num_of(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);

	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static bool null_at(const cJSON *o, const char *k)
{
	return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* ---- requests: valid ---- */

static void test_chat_minimal(void **state)
{
	struct nb_gen_request r;

	(void)state;
	parse_ok(NB_OPENAI_CHAT, "{" CHAT_MSGS "}", NULL, &r);
	assert_int_equal(r.endpoint, NB_OPENAI_CHAT);
	assert_null(r.model);
	assert_string_equal(r.prompt, "User: Hi\nAssistant:");
	assert_int_equal(r.prompt_len, strlen(r.prompt));
	assert_int_equal(r.max_tokens, 0);
	assert_false(r.stream);
	assert_false(r.include_usage);
	assert_false(r.seed_set);
	assert_true(r.sp.temperature == 1.0f && r.sp.top_p == 1.0f && r.sp.top_k == 0 &&
		    r.sp.min_p == 0.0f && r.sp.repeat_penalty == 1.0f);
	/* The default transcript stops where the user's next line would start. */
	assert_int_equal(r.n_stop, 1);
	assert_string_equal(r.stop[0], "\nUser:");
	assert_null(r.end_of_turn);
	nb_gen_request_free(&r);
	nb_gen_request_free(&r); /* idempotent */
}

static void test_chat_all_params(void **state)
{
	struct nb_gen_request r;
	struct nb_openai_limits lim;
	struct nb_chat_tmpl t = tmpl_of(T_LLAMA3);

	(void)state;
	nb_openai_limits_default(&lim);
	lim.tmpl = &t;
	lim.max_tokens = 512;
	parse_ok(NB_OPENAI_CHAT,
		 "{\"model\":\"stories260K\"," CHAT_MSGS ",\"max_tokens\":100,\"temperature\":0.5,"
		 "\"top_p\":0.9,\"top_k\":40,\"min_p\":0.05,\"seed\":42,\"stop\":[\"\\n\\n\",\"END\"],"
		 "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"n\":1,"
		 "\"presence_penalty\":0,\"frequency_penalty\":0.0,\"repetition_penalty\":1.1,"
		 "\"user\":\"u-1\",\"logprobs\":false,\"tools\":[],\"response_format\":{\"type\":\"text\"},"
		 "\"some_extension\":{\"x\":[1,2,{}]}}",
		 &lim, &r);
	assert_string_equal(r.model, "stories260K");
	assert_int_equal(r.max_tokens, 100);
	assert_true(r.sp.temperature == 0.5f);
	assert_true(r.sp.top_p == 0.9f);
	assert_int_equal(r.sp.top_k, 40);
	assert_true(r.sp.min_p == 0.05f);
	assert_true(r.seed_set);
	assert_int_equal(r.sp.seed, 42);
	assert_true(r.sp.repeat_penalty == 1.1f);
	assert_int_equal(r.sp.repeat_last_n, NB_OPENAI_REPEAT_LAST_N);
	assert_int_equal(r.n_stop, 2); /* no implicit stop with a real template */
	assert_string_equal(r.stop[0], "\n\n");
	assert_string_equal(r.stop[1], "END");
	assert_true(r.stream && r.include_usage);
	assert_string_equal(r.end_of_turn, "<|eot_id|>");
	nb_gen_request_free(&r);
}

static void test_params_edges(void **state)
{
	struct nb_gen_request r;
	struct nb_openai_limits lim;

	(void)state;
	nb_openai_limits_default(&lim);
	lim.max_tokens = 64;
	lim.default_max_tokens = 16;
	/* nulls are absent; the default max_tokens applies */
	parse_ok(NB_OPENAI_CHAT,
		 "{" CHAT_MSGS ",\"temperature\":null,\"stop\":null,\"seed\":null,\"max_tokens\":null,"
		 "\"stream_options\":null,\"n\":null,\"logprobs\":null}", &lim, &r);
	assert_int_equal(r.max_tokens, 16);
	assert_true(r.sp.temperature == 1.0f);
	assert_false(r.seed_set);
	nb_gen_request_free(&r);
	/* range ends, max_completion_tokens preferred over max_tokens */
	parse_ok(NB_OPENAI_CHAT,
		 "{" CHAT_MSGS ",\"temperature\":0,\"top_p\":1,\"min_p\":0,\"top_k\":0,"
		 "\"max_tokens\":3,\"max_completion_tokens\":64,\"seed\":-1,\"stop\":\"x\","
		 "\"repeat_last_n\":4096}", &lim, &r);
	assert_true(r.sp.temperature == 0.0f);
	assert_int_equal(r.max_tokens, 64);
	assert_int_equal(r.sp.seed, UINT64_MAX);
	assert_int_equal(r.sp.repeat_last_n, 4096);
	assert_int_equal(r.n_stop, 2);
	assert_string_equal(r.stop[0], "x");
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_CHAT, "{" CHAT_MSGS ",\"temperature\":2,\"seed\":18446744073709549568}",
		 &lim, &r);
	assert_true(r.sp.temperature == 2.0f);
	assert_int_equal(r.sp.seed, 18446744073709549568ull);
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_CHAT, "{" CHAT_MSGS ",\"seed\":18446744073709551615}", &lim, &r);
	assert_int_equal(r.sp.seed, UINT64_MAX);
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_CHAT, "{" CHAT_MSGS ",\"seed\":-9223372036854775808}", &lim, &r);
	assert_int_equal(r.sp.seed, 1ull << 63);
	nb_gen_request_free(&r);
	/* the client's own "\nUser:" is not doubled; eight stops leave no room */
	parse_ok(NB_OPENAI_CHAT, "{" CHAT_MSGS ",\"stop\":[\"\\nUser:\"]}", &lim, &r);
	assert_int_equal(r.n_stop, 1);
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_CHAT,
		 "{" CHAT_MSGS ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\"]}", &lim, &r);
	assert_int_equal(r.n_stop, NB_STOP_MAX);
	assert_string_equal(r.stop[7], "8");
	nb_gen_request_free(&r);
}

static void test_content_forms(void **state)
{
	struct nb_gen_request r;

	(void)state;
	parse_ok(NB_OPENAI_CHAT,
		 "{\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
		 "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Part one.\"},"
		 "{\"type\":\"text\",\"text\":\"Part \\u00e9 two.\"}]},"
		 "{\"role\":\"assistant\",\"content\":null},"
		 "{\"role\":\"user\",\"name\":\"bob\",\"content\":[]}]}",
		 NULL, &r);
	assert_string_equal(r.prompt, "Be brief.\n\nUser: Part one.\nPart \xc3\xa9 two.\n"
				      "Assistant: \nUser: \nAssistant:");
	nb_gen_request_free(&r);
}

static void test_completion(void **state)
{
	struct nb_gen_request r;

	(void)state;
	parse_ok(NB_OPENAI_COMPLETION,
		 "{\"model\":\"m\",\"prompt\":\"Once upon a time\",\"max_tokens\":8,\"echo\":false,"
		 "\"best_of\":1,\"suffix\":null,\"logprobs\":null,\"stop\":\"\\n\"}", NULL, &r);
	assert_int_equal(r.endpoint, NB_OPENAI_COMPLETION);
	assert_string_equal(r.prompt, "Once upon a time");
	assert_int_equal(r.prompt_len, 16);
	assert_int_equal(r.n_specials, 0);
	assert_int_equal(r.max_tokens, 8);
	assert_int_equal(r.n_stop, 1); /* no implicit stop: no template here */
	assert_null(r.end_of_turn);
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_COMPLETION, "{\"prompt\":[\"One string\"]}", NULL, &r);
	assert_string_equal(r.prompt, "One string");
	nb_gen_request_free(&r);
	parse_ok(NB_OPENAI_COMPLETION, " \r\n{\"prompt\":\"\"}\n ", NULL, &r);
	assert_string_equal(r.prompt, "");
	nb_gen_request_free(&r);
}

/* ---- requests: invalid ---- */

struct bad {
	int endpoint;
	const char *body;
	const char *param; /* "" for none */
	const char *code;  /* NULL for null */
	const char *msg;   /* substring of the message */
};

#define C NB_OPENAI_CHAT
#define P NB_OPENAI_COMPLETION
#define M1(x) "{\"messages\":[" x "]}"
#define CP(x) "{" CHAT_MSGS "," x "}"
static const struct bad bads[] = {
	{ C, "", "", NULL, "no body" },
	{ C, "{", "", NULL, "not valid JSON" },
	{ C, "{\"messages\":[}", "", NULL, "error at byte" },
	{ C, "[]", "", NULL, "must be a JSON object" },
	{ C, "{} x", "", NULL, "text after the value" },
	{ C, "{}", "messages", "invalid_value", "'messages' is required" },
	{ C, "{\"messages\":[]}", "messages", "invalid_value", "empty" },
	{ C, "{\"messages\":\"hi\"}", "messages", "invalid_type", "an array" },
	{ C, M1("1"), "messages[0]", "invalid_type", "an object" },
	{ C, M1("{\"content\":\"x\"}"), "messages[0].role", "invalid_value", "required" },
	{ C, M1("{\"role\":5,\"content\":\"x\"}"), "messages[0].role", "invalid_type", "a string" },
	{ C, M1("{\"role\":\"user\",\"content\":\"x\"},{\"role\":\"robot\",\"content\":\"x\"}"),
	  "messages[1].role", "invalid_value", "system, developer, user or assistant" },
	{ C, M1("{\"role\":\"tool\",\"content\":\"x\"}"), "messages[0].role", "unsupported_value",
	  "tool calling" },
	{ C, M1("{\"role\":\"user\"}"), "messages[0].content", "invalid_value", "required" },
	{ C, M1("{\"role\":\"user\",\"content\":5}"), "messages[0].content", "invalid_type", "" },
	{ C, M1("{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}"),
	  "messages[0].content", "unsupported_value", "only text content parts" },
	{ C, M1("{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}"), "messages[0].content",
	  "invalid_type", "'text'" },
	{ C, M1("{\"role\":\"user\",\"content\":[\"x\"]}"), "messages[0].content", "invalid_type",
	  "" },
	{ C, M1("{\"role\":\"user\",\"content\":\"\xff\"}"), "messages[0].content", "invalid_value",
	  "not valid UTF-8" },
	{ C, M1("{\"role\":\"user\",\"content\":\"\xed\xa0\x80\"}"), "messages[0].content",
	  "invalid_value", "not valid UTF-8" },
	{ C, M1("{\"role\":\"user\",\"content\":\"a\\u0000b\"}"), "", NULL, "NUL" },
	{ C, CP("\"model\":5"), "model", "invalid_type", "a string" },
	{ C, CP("\"max_tokens\":0"), "max_tokens", "invalid_value", "between 1 and" },
	{ C, CP("\"max_tokens\":\"8\""), "max_tokens", "invalid_type", "a number" },
	{ C, CP("\"max_tokens\":1.5"), "max_tokens", "invalid_type", "an integer" },
	{ C, CP("\"max_tokens\":1e300"), "max_tokens", "invalid_value", "between 1 and" },
	{ C, CP("\"max_completion_tokens\":-1"), "max_completion_tokens", "invalid_value", "" },
	{ C, CP("\"temperature\":2.5"), "temperature", "invalid_value", "in [0, 2]" },
	{ C, CP("\"temperature\":-0.1"), "temperature", "invalid_value", "in [0, 2]" },
	{ C, CP("\"temperature\":\"1\""), "temperature", "invalid_type", "a number" },
	{ C, CP("\"temperature\":1e999"), "temperature", "invalid_type", "a number" },
	{ C, CP("\"temperature\":1e300"), "temperature", "invalid_value", "in [0, 2]" },
	{ C, CP("\"repetition_penalty\":-1e300"), "repetition_penalty", "invalid_value", "" },
	{ C, CP("\"top_p\":0"), "top_p", "invalid_value", "in (0, 1]" },
	{ C, CP("\"top_p\":1e-60"), "top_p", "invalid_value", "in (0, 1]" },
	{ C, CP("\"top_p\":1.1"), "top_p", "invalid_value", "" },
	{ C, CP("\"top_k\":-1"), "top_k", "invalid_value", "" },
	{ C, CP("\"top_k\":2.5"), "top_k", "invalid_type", "an integer" },
	{ C, CP("\"min_p\":1"), "min_p", "invalid_value", "in [0, 1)" },
	{ C, CP("\"min_p\":-0.5"), "min_p", "invalid_value", "" },
	{ C, CP("\"repetition_penalty\":0"), "repetition_penalty", "invalid_value", "" },
	{ C, CP("\"repeat_last_n\":4097"), "repeat_last_n", "invalid_value", "" },
	{ C, CP("\"seed\":1.5"), "seed", "invalid_type", "an integer" },
	{ C, CP("\"seed\":\"1\""), "seed", "invalid_type", "" },
	{ C, CP("\"seed\":1e20"), "seed", "invalid_value", "" },
	{ C, CP("\"stop\":5"), "stop", "invalid_type", "" },
	{ C, CP("\"stop\":[1]"), "stop", "invalid_type", "" },
	{ C, CP("\"stop\":[\"a\",\"\"]"), "stop", "invalid_value", "1 to 256 bytes" },
	{ C, CP("\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"]"), "stop",
	  "invalid_value", "at most 8" },
	{ C, CP("\"stop\":\"\xc3\""), "stop", "invalid_value", "UTF-8" },
	{ C, CP("\"stream\":\"yes\""), "stream", "invalid_type", "a boolean" },
	{ C, CP("\"stream\":1"), "stream", "invalid_type", "a boolean" },
	{ C, CP("\"stream_options\":{\"include_usage\":true}"), "stream_options", "invalid_value",
	  "only allowed when 'stream' is true" },
	{ C, CP("\"stream\":true,\"stream_options\":[]"), "stream_options", "invalid_type", "" },
	{ C, CP("\"stream\":true,\"stream_options\":{\"include_usage\":1}"),
	  "stream_options.include_usage", "invalid_type", "" },
	{ C, CP("\"n\":2"), "n", "unsupported_value", "only 1" },
	{ C, CP("\"n\":0"), "n", "invalid_value", "" },
	{ C, CP("\"presence_penalty\":0.5"), "presence_penalty", "unsupported_value",
	  "repetition_penalty" },
	{ C, CP("\"frequency_penalty\":\"x\""), "frequency_penalty", "invalid_type", "" },
	{ C, CP("\"logprobs\":true"), "logprobs", "unsupported_value", "" },
	{ C, CP("\"logit_bias\":{\"1\":5}"), "logit_bias", "unsupported_value", "" },
	{ C, CP("\"tools\":[{\"type\":\"function\"}]"), "tools", "unsupported_value", "tool" },
	{ C, CP("\"response_format\":{\"type\":\"json_object\"}"), "response_format",
	  "unsupported_value", "" },
	{ C, CP("\"response_format\":\"text\""), "response_format", "invalid_type", "" },
	{ P, "{}", "prompt", "invalid_value", "'prompt' is required" },
	{ P, "{\"prompt\":5}", "prompt", "invalid_type", "" },
	{ P, "{\"prompt\":[]}", "prompt", "invalid_type", "" },
	{ P, "{\"prompt\":[1,2,3]}", "prompt", "unsupported_value", "token-id" },
	{ P, "{\"prompt\":[[1,2]]}", "prompt", "unsupported_value", "token-id" },
	{ P, "{\"prompt\":[\"a\",\"b\"]}", "prompt", "unsupported_value", "one prompt" },
	{ P, "{\"prompt\":[{}]}", "prompt", "invalid_type", "" },
	{ P, "{\"prompt\":\"\xe2\x82\"}", "prompt", "invalid_value", "UTF-8" },
	{ P, "{\"prompt\":\"x\",\"echo\":true}", "echo", "unsupported_value", "" },
	{ P, "{\"prompt\":\"x\",\"best_of\":2}", "best_of", "unsupported_value", "" },
	{ P, "{\"prompt\":\"x\",\"suffix\":\"y\"}", "suffix", "unsupported_value", "" },
	{ P, "{\"prompt\":\"x\",\"logprobs\":2}", "logprobs", "unsupported_value", "" },
	{ P, "{\"prompt\":\"x\",\"max_tokens\":-5}", "max_tokens", "invalid_value", "" },
	/* JSON cJSON refuses: a 400, never taken for memory running out */
	{ P, "{\"prompt\":\"\\udc00\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"\\ud800x\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"\\ud800\\u0041\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"\\u12\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"\\x\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"x}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":-}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":tru}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\" \"x\"}", "", NULL, "not valid JSON" },
	{ P, "{\"prompt\":\"x\",}", "", NULL, "not valid JSON" },
	{ P, "{prompt:\"x\"}", "", NULL, "not valid JSON" },
	{ P, "[1 2]", "", NULL, "not valid JSON" },
};
#undef C
#undef P

static void check_bad(const struct bad *b, const struct nb_openai_limits *lim)
{
	struct nb_gen_request r;
	struct nb_openai_error e;
	struct nb_openai_buf out = { 0 };
	cJSON *j, *err;
	int ret = parse(b->endpoint, b->body, lim, &r, &e);

	if (ret == 0)
		fail_msg("accepted: %s", b->body);
	assert_true(ret < 0 && ret != -NB_ENOMEM);
	assert_int_equal(e.status, 400);
	if (strcmp(e.param, b->param) != 0 || !strstr(e.message, b->msg) ||
	    (b->code ? !e.code || strcmp(e.code, b->code) : e.code != NULL))
		fail_msg("%s: got param '%s' code %s message '%s'", b->body, e.param,
			 e.code ? e.code : "null", e.message);
	assert_null(r.prompt); /* left empty */
	assert_null(r.model);
	assert_int_equal(r.n_stop, 0);
	/* ... and it turns into OpenAI's error object */
	assert_int_equal(nb_openai_error_from(&out, &e), 0);
	j = parse_json(&out, 0);
	err = cJSON_GetObjectItemCaseSensitive(j, "error");
	assert_keys(err, (const char *const[]){ "message", "type", "param", "code" }, 4);
	assert_string_equal(str_of(err, "type"), "invalid_request_error");
	assert_string_equal(str_of(err, "message"), e.message);
	if (b->param[0])
		assert_string_equal(str_of(err, "param"), b->param);
	else
		assert_true(null_at(err, "param"));
	cJSON_Delete(j);
	nb_openai_buf_free(&out);
}

static void test_bad_requests(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(bads); i++)
		check_bad(&bads[i], NULL);
}

/* cJSON nests at most 1000 deep: deeper is the client's error (400), not
 * memory running out. */
static void test_deep_nesting(void **state)
{
	static const struct bad deep = { NB_OPENAI_COMPLETION, NULL, "", NULL, "not valid JSON" };
	static const struct bad ok = { NB_OPENAI_COMPLETION, NULL, "prompt", "unsupported_value",
				       "token-id" };
	struct bad b;
	char body[2100 + 32];

	(void)state;
	for (int depth = 999; depth <= 1000; depth++) {
		int n = snprintf(body, sizeof(body), "{\"prompt\":");
		for (int i = 0; i < depth; i++)
			body[n++] = '[';
		for (int i = 0; i < depth; i++)
			body[n++] = ']';
		strcpy(body + n, "}");
		b = depth < 1000 ? ok : deep; /* with the outer object: 1000, 1001 deep */
		b.body = body;
		check_bad(&b, NULL);
	}
}

static void test_limits(void **state)
{
	struct nb_openai_limits lim;
	struct nb_gen_request r;
	static const struct bad too_many = {
		NB_OPENAI_CHAT,
		M1("{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":"
		   "\"b\"},{\"role\":\"user\",\"content\":\"c\"}"),
		"messages", "invalid_value", "more than 2 messages"
	};
	static const struct bad long_chat = { NB_OPENAI_CHAT, M1("{\"role\":\"user\",\"content\":"
								 "\"0123456789\"}"),
					       "messages", "context_length_exceeded",
					       "longer than 16 bytes" };
	static const struct bad long_prompt = { NB_OPENAI_COMPLETION,
						"{\"prompt\":\"01234567890123456\"}", "prompt",
						"context_length_exceeded", "longer than 16 bytes" };
	static const struct bad cap = { NB_OPENAI_CHAT, CP("\"max_tokens\":65"), "max_tokens",
					"invalid_value", "between 1 and 64" };

	(void)state;
	nb_openai_limits_default(&lim);
	lim.max_messages = 2;
	lim.max_prompt_bytes = 16;
	lim.max_tokens = 64;
	check_bad(&too_many, &lim);
	check_bad(&long_chat, &lim); /* "User: 0123456789\nAssistant:" is 28 */
	check_bad(&long_prompt, &lim);
	check_bad(&cap, &lim);
	/* exactly at the limits is fine */
	parse_ok(NB_OPENAI_COMPLETION, "{\"prompt\":\"0123456789012345\",\"max_tokens\":64}", &lim,
		 &r);
	nb_gen_request_free(&r);
}

static void test_nul_bytes(void **state)
{
	static const char body[] = "{\"prompt\":\"a\0b\"}";
	struct nb_gen_request r;
	struct nb_openai_error e;

	(void)state;
	assert_int_equal(nb_openai_parse_completion(body, sizeof(body) - 1, NULL, &r, &e),
			 -NB_EFORMAT);
	assert_non_null(strstr(e.message, "NUL"));
	/* an escaped backslash before u0000 is no NUL */
	parse_ok(NB_OPENAI_COMPLETION, "{\"prompt\":\"a\\\\u0000b\"}", NULL, &r);
	assert_string_equal(r.prompt, "a\\u0000b");
	nb_gen_request_free(&r);
	/* a body that is not NUL-terminated is read only within its length */
	assert_int_equal(nb_openai_parse_completion("{\"prompt\":\"x\"}garbage", 14, NULL, &r, &e),
			 0);
	assert_string_equal(r.prompt, "x");
	nb_gen_request_free(&r);
}

/* ---- chat templates ---- */

static void test_detect(void **state)
{
	static const struct {
		const char *text;
		int family;
		const char *default_system;
	} cases[] = {
		{ T_LLAMA2, NB_CHAT_LLAMA2, "" },
		{ T_LLAMA3, NB_CHAT_LLAMA3, "" },
		{ T_QWEN2, NB_CHAT_CHATML, "You are a helpful assistant." },
		{ T_QWEN25, NB_CHAT_CHATML,
		  "You are Qwen, created by Alibaba Cloud. You are a helpful assistant." },
		{ T_SMOLLM, NB_CHAT_CHATML, "" },
		{ T_ZEPHYR, NB_CHAT_ZEPHYR, "" },
		{ T_PHI3, NB_CHAT_PHI3, "" },
	};
	struct nb_chat_tmpl t;

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		assert_int_equal(nb_chat_tmpl_detect(&t, cases[i].text, strlen(cases[i].text)), 0);
		assert_int_equal(t.family, cases[i].family);
		assert_string_equal(t.default_system, cases[i].default_system);
	}
	assert_int_equal(nb_chat_tmpl_detect(&t, NULL, 0), 0);
	assert_int_equal(t.family, NB_CHAT_DEFAULT);
	assert_int_equal(nb_chat_tmpl_detect(&t, "{{ messages }}", 14), -NB_ENOTSUP);
	assert_int_equal(t.family, NB_CHAT_DEFAULT);
	/* <|end|> without <|user|> is no Phi-3 template */
	assert_int_equal(nb_chat_tmpl_detect(&t, "<|end|>", 7), -NB_ENOTSUP);
	/* detection reads only len bytes */
	assert_int_equal(nb_chat_tmpl_detect(&t, "<|im_start|>", 11), -NB_ENOTSUP);
	assert_string_equal(nb_chat_family_name(NB_CHAT_CHATML), "chatml");
	assert_string_equal(nb_chat_family_name(99), "?");
}

static void test_render_llama2(void **state)
{
	static const struct nb_chat_msg sys_only[] = { { NB_ROLE_SYSTEM, "Sys.", 4 } };
	static const struct nb_chat_msg two_sys[] = {
		{ NB_ROLE_SYSTEM, "A.", 2 },
		{ NB_ROLE_SYSTEM, "B.", 2 },
		{ NB_ROLE_USER, " u ", 3 },
	};

	(void)state;
	/* jinja2: "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHello! [/INST] Hi there.
	 * </s><s>[INST] How are you? [/INST]", the first <s> being the tokenizer's BOS */
	check_render(T_LLAMA2, conv_a, N(conv_a),
		     "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHello! [/INST] Hi there. "
		     "</s><s>[INST] How are you? [/INST]");
	check_render(T_LLAMA2, conv_b, 1, "[INST] Hi [/INST]");
	/* content.strip() of the whole block: an empty user turn loses the blank line */
	check_render(T_LLAMA2, sys_only, 1, "[INST] <<SYS>>\nSys.\n<</SYS>> [/INST]");
	check_render(T_LLAMA2, two_sys, 3, "[INST] <<SYS>>\nA.\n\nB.\n<</SYS>>\n\n u [/INST]");
}

static void test_render_families(void **state)
{
	(void)state;
	check_render(T_LLAMA3, conv_a, N(conv_a),
		     "<|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>"
		     "<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>"
		     "<|start_header_id|>assistant<|end_header_id|>\n\nHi there.<|eot_id|>"
		     "<|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|>"
		     "<|start_header_id|>assistant<|end_header_id|>\n\n");
	check_render(T_LLAMA3, conv_b, 1,
		     "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
		     "<|start_header_id|>assistant<|end_header_id|>\n\n");
	check_render(T_QWEN2, conv_a, N(conv_a),
		     "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHello!<|im_end|>\n"
		     "<|im_start|>assistant\nHi there.<|im_end|>\n<|im_start|>user\nHow are you?"
		     "<|im_end|>\n<|im_start|>assistant\n");
	check_render(T_QWEN2, conv_b, 1,
		     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
		     "<|im_start|>user\n  Hi  \n<|im_end|>\n<|im_start|>assistant\n");
	check_render(T_QWEN25, conv_b, 1,
		     "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
		     "assistant.<|im_end|>\n<|im_start|>user\n  Hi  \n<|im_end|>\n<|im_start|>assistant\n");
	check_render(T_SMOLLM, conv_b, 1,
		     "<|im_start|>user\n  Hi  \n<|im_end|>\n<|im_start|>assistant\n");
	check_render(T_ZEPHYR, conv_a, N(conv_a),
		     "<|system|>\nYou are helpful.</s>\n<|user|>\nHello!</s>\n<|assistant|>\nHi there."
		     "</s>\n<|user|>\nHow are you?</s>\n<|assistant|>\n");
	check_render(T_ZEPHYR, conv_b, 1, "<|user|>\n  Hi  \n</s>\n<|assistant|>\n");
	check_render(T_PHI3, conv_a, N(conv_a),
		     "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n"
		     "Hi there.<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\n");
	check_render(NULL, conv_a, N(conv_a),
		     "You are helpful.\n\nUser: Hello!\nAssistant: Hi there.\nUser: How are you?\n"
		     "Assistant:");
	check_render("{{ unknown }}", conv_b, 1, "User:   Hi  \n\nAssistant:");
}

/* The spans are exactly the special tokens the template inserted. */
static void test_render_spans(void **state)
{
	static const struct nb_chat_msg inject[] = { { NB_ROLE_USER, "<|im_end|></s>", 14 } };
	static const struct {
		const char *tmpl;
		const char *specials; /* the span texts, space-separated */
	} cases[] = {
		{ T_LLAMA2, "</s> <s>" },
		{ T_LLAMA3, "<|start_header_id|> <|end_header_id|> <|eot_id|> <|start_header_id|> "
			    "<|end_header_id|> <|eot_id|> <|start_header_id|> <|end_header_id|> "
			    "<|eot_id|> <|start_header_id|> <|end_header_id|> <|eot_id|> "
			    "<|start_header_id|> <|end_header_id|>" },
		{ T_SMOLLM, "<|im_start|> <|im_end|> <|im_start|> <|im_end|> <|im_start|> <|im_end|> "
			    "<|im_start|> <|im_end|> <|im_start|>" },
		{ T_ZEPHYR, "</s> </s> </s> </s>" },
		{ T_PHI3, "<|end|> <|end|> <|end|> <|end|>" },
		{ NULL, "" },
	};
	struct nb_chat_prompt p;
	char joined[1024];

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		struct nb_chat_tmpl t = tmpl_of(cases[i].tmpl);
		size_t n = 0;

		nb_chat_prompt_init(&p, 4096);
		assert_int_equal(nb_chat_render(&t, conv_a, N(conv_a), &p), 0);
		joined[0] = '\0';
		for (size_t k = 0; k < p.n_spans; k++) {
			assert_true(p.spans[k].off + p.spans[k].len <= p.len);
			n += (size_t)snprintf(joined + n, sizeof(joined) - n, "%s%.*s",
					      k ? " " : "", (int)p.spans[k].len,
					      p.text + p.spans[k].off);
		}
		assert_string_equal(joined, cases[i].specials);
		nb_chat_prompt_free(&p);
	}
	/* special text inside a message is not a span */
	{
		struct nb_chat_tmpl t = tmpl_of(T_SMOLLM);

		nb_chat_prompt_init(&p, 4096);
		assert_int_equal(nb_chat_render(&t, inject, 1, &p), 0);
		assert_int_equal(p.n_spans, 3);
		nb_chat_prompt_free(&p);
	}
}

static void test_render_limits(void **state)
{
	struct nb_chat_tmpl t = tmpl_of(T_LLAMA3);
	struct nb_chat_prompt p;
	const struct nb_chat_msg bad_role = { 7, "x", 1 };
	char *full = render(T_LLAMA3, conv_a, N(conv_a));
	size_t len = strlen(full);

	(void)state;
	/* every max_len below the full length fails cleanly, the exact one works */
	for (size_t max = 0; max <= len; max++) {
		nb_chat_prompt_init(&p, max);
		assert_int_equal(nb_chat_render(&t, conv_a, N(conv_a), &p),
				 max < len ? -NB_ERANGE : 0);
		if (max == len)
			assert_string_equal(p.text, full);
		nb_chat_prompt_free(&p);
	}
	free(full);
	nb_chat_prompt_init(&p, 100);
	assert_int_equal(nb_chat_render(&t, &bad_role, 1, &p), -NB_EINVAL);
	nb_chat_prompt_free(&p);
	assert_string_equal(nb_chat_end_of_turn(NB_CHAT_CHATML), "<|im_end|>");
	assert_string_equal(nb_chat_end_of_turn(NB_CHAT_PHI3), "<|end|>");
	assert_null(nb_chat_end_of_turn(NB_CHAT_DEFAULT));
}

/* The real Llama 2 tokenizer: SentencePiece never matches "<s>" in text, so
 * only the template's spans become BOS/EOS. */
static void test_chat_encode(void **state)
{
	static const struct nb_chat_msg conv[] = {
		{ NB_ROLE_USER, "Strike <s>this</s>", 18 },
		{ NB_ROLE_ASSISTANT, "Done.", 5 },
		{ NB_ROLE_USER, "Thanks", 6 },
	};
	struct nb_tok_spec spec;
	struct nb_tok *tok;
	struct nb_chat_tmpl t = tmpl_of(T_LLAMA2);
	struct nb_chat_prompt p;
	int32_t ids[128], seg[64];
	size_t n, m, k = 0;
	const char *a = "[INST] Strike <s>this</s> [/INST] Done. ";
	const char *b = "[INST] Thanks [/INST]";

	(void)state;
	assert_int_equal(nb_tok_import_spm_model(&spec, LLAMA2_MODEL), 0);
	assert_int_equal(nb_tok_open(&tok, &spec), 0);
	nb_tok_spec_free(&spec);
	nb_chat_prompt_init(&p, 4096);
	assert_int_equal(nb_chat_render(&t, conv, N(conv), &p), 0);
	assert_int_equal(nb_chat_encode(tok, p.text, p.len, p.spans, p.n_spans, ids, 128, &n), 0);
	/* BOS, the first turn as text, </s> <s>, the second turn as text */
	assert_int_equal(ids[k++], 1);
	assert_int_equal(nb_tok_encode(tok, a, strlen(a), false, seg, 64, &m), 0);
	assert_memory_equal(ids + k, seg, m * sizeof(*seg));
	for (size_t i = 0; i < m; i++) /* the message's own "<s>" stays text */
		assert_true(seg[i] > 2);
	k += m;
	assert_int_equal(ids[k++], 2);
	assert_int_equal(ids[k++], 1);
	assert_int_equal(nb_tok_encode(tok, b, strlen(b), false, seg, 64, &m), 0);
	assert_memory_equal(ids + k, seg, m * sizeof(*seg));
	k += m;
	assert_int_equal(n, k);
	/* too small: the count needed, -NB_ERANGE */
	assert_int_equal(nb_chat_encode(tok, p.text, p.len, p.spans, p.n_spans, ids, 5, &m),
			 -NB_ERANGE);
	assert_int_equal(m, n);
	assert_int_equal(nb_chat_encode(tok, p.text, p.len, p.spans, p.n_spans, NULL, 0, &m),
			 -NB_ERANGE);
	assert_int_equal(m, n);
	/* a span that is no single piece is encoded as text */
	{
		struct nb_chat_span sp = { 0, 6 };

		assert_int_equal(nb_chat_encode(tok, "<|im|>x", 7, &sp, 1, ids, 128, &n), 0);
		assert_int_equal(nb_tok_encode(tok, "<|im|>x", 7, true, seg, 64, &m), 0);
		assert_true(n > 2 && ids[0] == 1);
		sp.off = 5;
		assert_int_equal(nb_chat_encode(tok, "<|im|>x", 7, &sp, 1, ids, 128, &n),
				 -NB_EINVAL);
	}
	assert_int_equal(nb_chat_token_id(tok, "</s>"), 2);
	assert_int_equal(nb_chat_token_id(tok, "<|eot_id|>"), -1);
	assert_int_equal(nb_chat_token_id(tok, NULL), -1);
	nb_chat_prompt_free(&p);
	nb_tok_close(tok);
}

/* ---- responses ---- */

static const char *const RESP_KEYS[] = { "id", "object", "created", "model", "choices", "usage" };
static const char *const CHUNK_KEYS[] = { "id", "object", "created", "model", "choices" };
static const char *const CHAT_CHOICE[] = { "index", "message", "logprobs", "finish_reason" };
static const char *const DELTA_CHOICE[] = { "index", "delta", "logprobs", "finish_reason" };
static const char *const TEXT_CHOICE[] = { "text", "index", "logprobs", "finish_reason" };
static const char *const USAGE_KEYS[] = { "prompt_tokens", "completion_tokens", "total_tokens" };

static const cJSON *only_choice(const cJSON *o)
{
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "choices");

	assert_true(cJSON_IsArray(c));
	assert_int_equal(cJSON_GetArraySize(c), 1);
	return c->child;
}

static void test_chat_response(void **state)
{
	struct nb_openai_meta m = { NB_OPENAI_CHAT, 0x1234abcdull, 1700000000, "stories260K",
				    false };
	struct nb_openai_usage u = { 9, 12 };
	struct nb_openai_buf b = { 0 };
	const cJSON *c, *msg, *us;
	cJSON *j;

	(void)state;
	assert_int_equal(nb_openai_response(&b, &m, "Hello there", 11, NB_FINISH_STOP, &u), 0);
	assert_int_equal(strlen(b.data), b.len);
	j = parse_json(&b, 0);
	assert_keys(j, RESP_KEYS, N(RESP_KEYS));
	assert_string_equal(str_of(j, "id"), "chatcmpl-000000001234abcd");
	assert_string_equal(str_of(j, "object"), "chat.completion");
	assert_true(num_of(j, "created") == 1700000000.0);
	assert_string_equal(str_of(j, "model"), "stories260K");
	c = only_choice(j);
	assert_keys(c, CHAT_CHOICE, N(CHAT_CHOICE));
	assert_true(num_of(c, "index") == 0);
	assert_true(null_at(c, "logprobs"));
	assert_string_equal(str_of(c, "finish_reason"), "stop");
	msg = cJSON_GetObjectItemCaseSensitive(c, "message");
	assert_keys(msg, (const char *const[]){ "role", "content" }, 2);
	assert_string_equal(str_of(msg, "role"), "assistant");
	assert_string_equal(str_of(msg, "content"), "Hello there");
	us = cJSON_GetObjectItemCaseSensitive(j, "usage");
	assert_keys(us, USAGE_KEYS, N(USAGE_KEYS));
	assert_true(num_of(us, "prompt_tokens") == 9 && num_of(us, "completion_tokens") == 12 &&
		    num_of(us, "total_tokens") == 21);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

static void test_completion_response(void **state)
{
	struct nb_openai_meta m = { NB_OPENAI_COMPLETION, 1, 5, "m", false };
	struct nb_openai_usage u = { UINT32_MAX, UINT32_MAX };
	struct nb_openai_buf b = { 0 };
	const cJSON *c;
	cJSON *j;

	(void)state;
	assert_int_equal(nb_openai_response(&b, &m, "\n\nThis is", 9, NB_FINISH_LENGTH, &u), 0);
	j = parse_json(&b, 0);
	assert_keys(j, RESP_KEYS, N(RESP_KEYS));
	assert_string_equal(str_of(j, "id"), "cmpl-0000000000000001");
	assert_string_equal(str_of(j, "object"), "text_completion");
	c = only_choice(j);
	assert_keys(c, TEXT_CHOICE, N(TEXT_CHOICE));
	assert_string_equal(str_of(c, "text"), "\n\nThis is");
	assert_string_equal(str_of(c, "finish_reason"), "length");
	/* no 32-bit overflow in total_tokens */
	assert_true(num_of(cJSON_GetObjectItemCaseSensitive(j, "usage"), "total_tokens") ==
		    2.0 * UINT32_MAX);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

/* Splits an SSE stream into its events, checking the framing. */
static size_t sse_events(const char *s, char events[][1024], size_t max)
{
	size_t n = 0;

	while (*s) {
		const char *end = strstr(s, "\n\n");

		assert_non_null(end);
		assert_memory_equal(s, "data: ", 6);
		assert_true(n < max);
		assert_true((size_t)(end - s - 6) < 1024);
		memcpy(events[n], s + 6, (size_t)(end - s - 6));
		events[n][end - s - 6] = '\0';
		assert_null(strchr(events[n], '\n')); /* one line per event */
		n++;
		s = end + 2;
	}
	return n;
}

static void test_chat_stream(void **state)
{
	struct nb_openai_meta m = { NB_OPENAI_CHAT, 0xff, 7, "tiny", true };
	struct nb_openai_usage u = { 3, 2 };
	struct nb_openai_buf b = { 0 };
	char ev[8][1024];
	const cJSON *c, *d;
	cJSON *j;

	(void)state;
	assert_int_equal(nb_openai_chunk_role(&b, &m), 0);
	assert_int_equal(nb_openai_chunk_text(&b, &m, "Hel", 3), 0);
	assert_int_equal(nb_openai_chunk_text(&b, &m, "", 0), 0); /* nothing */
	assert_int_equal(nb_openai_chunk_text(&b, &m, "lo", 2), 0);
	assert_int_equal(nb_openai_chunk_finish(&b, &m, NB_FINISH_LENGTH), 0);
	assert_int_equal(nb_openai_chunk_usage(&b, &m, &u), 0);
	assert_int_equal(nb_openai_chunk_done(&b), 0);
	assert_int_equal(sse_events(b.data, ev, 8), 6);
	assert_string_equal(ev[5], "[DONE]");
	for (size_t i = 0; i < 4; i++) {
		static const char *const keys[] = { "id", "object", "created", "model", "choices",
						    "usage" };
		j = cJSON_Parse(ev[i]);
		assert_non_null(j);
		assert_keys(j, keys, N(keys)); /* "usage": null while include_usage */
		assert_true(null_at(j, "usage"));
		assert_string_equal(str_of(j, "id"), "chatcmpl-00000000000000ff");
		assert_string_equal(str_of(j, "object"), "chat.completion.chunk");
		c = only_choice(j);
		assert_keys(c, DELTA_CHOICE, N(DELTA_CHOICE));
		d = cJSON_GetObjectItemCaseSensitive(c, "delta");
		if (i == 0) {
			assert_keys(d, (const char *const[]){ "role", "content" }, 2);
			assert_string_equal(str_of(d, "role"), "assistant");
			assert_string_equal(str_of(d, "content"), "");
		} else if (i < 3) {
			assert_keys(d, (const char *const[]){ "content" }, 1);
			assert_string_equal(str_of(d, "content"), i == 1 ? "Hel" : "lo");
		} else {
			assert_keys(d, NULL, 0);
			assert_string_equal(str_of(c, "finish_reason"), "length");
		}
		if (i < 3)
			assert_true(null_at(c, "finish_reason"));
		cJSON_Delete(j);
	}
	j = cJSON_Parse(ev[4]);
	assert_keys(j, RESP_KEYS, N(RESP_KEYS)); /* the same members as a whole response */
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "choices")), 0);
	assert_true(num_of(cJSON_GetObjectItemCaseSensitive(j, "usage"), "total_tokens") == 5);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
	/* without include_usage the chunks have no usage member */
	m.include_usage = false;
	assert_int_equal(nb_openai_chunk_text(&b, &m, "x", 1), 0);
	assert_int_equal(sse_events(b.data, ev, 8), 1);
	j = cJSON_Parse(ev[0]);
	assert_keys(j, CHUNK_KEYS, N(CHUNK_KEYS));
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

static void test_completion_stream(void **state)
{
	struct nb_openai_meta m = { NB_OPENAI_COMPLETION, 2, 7, "tiny", false };
	struct nb_openai_buf b = { 0 };
	char ev[8][1024];
	const cJSON *c;
	cJSON *j;

	(void)state;
	assert_int_equal(nb_openai_chunk_role(&b, &m), 0); /* nothing for completions */
	assert_int_equal(b.len, 0);
	assert_int_equal(nb_openai_chunk_text(&b, &m, " upon", 5), 0);
	assert_int_equal(nb_openai_chunk_finish(&b, &m, NB_FINISH_STOP), 0);
	assert_int_equal(nb_openai_chunk_done(&b), 0);
	assert_int_equal(sse_events(b.data, ev, 8), 3);
	for (size_t i = 0; i < 2; i++) {
		j = cJSON_Parse(ev[i]);
		assert_keys(j, CHUNK_KEYS, N(CHUNK_KEYS));
		assert_string_equal(str_of(j, "object"), "text_completion");
		assert_string_equal(str_of(j, "id"), "cmpl-0000000000000002");
		c = only_choice(j);
		assert_keys(c, TEXT_CHOICE, N(TEXT_CHOICE));
		assert_string_equal(str_of(c, "text"), i == 0 ? " upon" : "");
		if (i == 0)
			assert_true(null_at(c, "finish_reason"));
		else
			assert_string_equal(str_of(c, "finish_reason"), "stop");
		cJSON_Delete(j);
	}
	assert_string_equal(ev[2], "[DONE]");
	nb_openai_buf_free(&b);
}

static void test_models(void **state)
{
	struct nb_openai_buf b = { 0 };
	const cJSON *data;
	cJSON *j;

	(void)state;
	assert_int_equal(nb_openai_models(&b, "stories260K", 1700000000), 0);
	j = parse_json(&b, 0);
	assert_keys(j, (const char *const[]){ "object", "data" }, 2);
	assert_string_equal(str_of(j, "object"), "list");
	data = cJSON_GetObjectItemCaseSensitive(j, "data");
	assert_int_equal(cJSON_GetArraySize(data), 1);
	assert_keys(data->child, (const char *const[]){ "id", "object", "created", "owned_by" }, 4);
	assert_string_equal(str_of(data->child, "id"), "stories260K");
	assert_string_equal(str_of(data->child, "object"), "model");
	assert_string_equal(str_of(data->child, "owned_by"), "nibble");
	assert_true(num_of(data->child, "created") == 1700000000.0);
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

static void test_errors(void **state)
{
	static const struct {
		int status;
		const char *code_in, *type, *code;
	} cases[] = {
		{ 400, NULL, "invalid_request_error", NULL },
		{ 401, NULL, "invalid_request_error", "invalid_api_key" },
		{ 404, "model_not_found", "invalid_request_error", "model_not_found" },
		{ 405, NULL, "invalid_request_error", NULL },
		{ 413, NULL, "invalid_request_error", NULL },
		{ 429, NULL, "requests", "rate_limit_exceeded" },
		{ 500, NULL, "server_error", NULL },
		{ 503, NULL, "server_error", NULL },
	};
	struct nb_openai_buf b = { 0 };
	char ev[2][1024];
	const cJSON *e;
	cJSON *j;

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		assert_int_equal(nb_openai_error_json(&b, cases[i].status, "went \"wrong\"",
						      i == 0 ? "messages[0].role" : NULL,
						      cases[i].code_in), 0);
		j = parse_json(&b, 0);
		assert_keys(j, (const char *const[]){ "error" }, 1);
		e = cJSON_GetObjectItemCaseSensitive(j, "error");
		assert_keys(e, (const char *const[]){ "message", "type", "param", "code" }, 4);
		assert_string_equal(str_of(e, "message"), "went \"wrong\"");
		assert_string_equal(str_of(e, "type"), cases[i].type);
		if (i == 0)
			assert_string_equal(str_of(e, "param"), "messages[0].role");
		else
			assert_true(null_at(e, "param"));
		if (cases[i].code)
			assert_string_equal(str_of(e, "code"), cases[i].code);
		else
			assert_true(null_at(e, "code"));
		cJSON_Delete(j);
		nb_openai_buf_free(&b);
	}
	assert_int_equal(nb_openai_error_sse(&b, 500, "generation failed"), 0);
	assert_int_equal(sse_events(b.data, ev, 2), 1);
	j = cJSON_Parse(ev[0]);
	assert_string_equal(str_of(cJSON_GetObjectItemCaseSensitive(j, "error"), "type"),
			    "server_error");
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

/* ---- UTF-8 and escapes ---- */

static void test_utf8_holdback(void **state)
{
	/* 2, 3 and 4 byte characters, the edges of the ranges the lead byte allows */
	static const char *const chars[] = {
		"\xc2\x80", "\xc3\xa9", "\xdf\xbf", "\xe0\xa0\x80", "\xe2\x82\xac", "\xed\x9f\xbf",
		"\xee\x80\x80", "\xef\xbf\xbd", "\xf0\x90\x80\x80", "\xf0\x9f\x98\x80",
		"\xf4\x8f\xbf\xbf",
	};
	/* prefixes that can never complete: not held back */
	static const char *const never[] = {
		"\xe0\x80", "\xed\xa0", "\xf0\x80", "\xf4\x90", "\xc0", "\xc1", "\xf5", "\xff",
		"\x80", "\xbf\xbf\xbf", "\xe2\x82\x41",
	};
	char buf[16];

	(void)state;
	for (size_t i = 0; i < N(chars); i++) {
		size_t len = strlen(chars[i]);

		/* "ab" + the first k bytes of the character */
		for (size_t k = 0; k <= len; k++) {
			memcpy(buf, "ab", 2);
			memcpy(buf + 2, chars[i], k);
			assert_int_equal(nb_utf8_complete_len(buf, 2 + k),
					 k == 0 || k == len ? 2 + k : 2);
			/* and at the very start of the text */
			assert_int_equal(nb_utf8_complete_len(chars[i], k), k == len ? k : 0);
		}
	}
	for (size_t i = 0; i < N(never); i++) {
		size_t len = strlen(never[i]);

		assert_int_equal(nb_utf8_complete_len(never[i], len), len);
	}
	assert_int_equal(nb_utf8_complete_len("", 0), 0);
	assert_int_equal(nb_utf8_complete_len("abc", 3), 3);
}

/* A model's text survives the trip through a chunk and cJSON, whatever is
 * in it; invalid bytes come back as U+FFFD. */
static void roundtrip(const char *in, size_t len, const char *want)
{
	struct nb_openai_meta m = { NB_OPENAI_CHAT, 1, 1, "m\xff", false };
	struct nb_openai_buf b = { 0 };
	const cJSON *c;
	cJSON *j;

	assert_int_equal(nb_openai_response(&b, &m, in, len, NB_FINISH_STOP, NULL), 0);
	j = parse_json(&b, 0);
	c = cJSON_GetObjectItemCaseSensitive(only_choice(j), "message");
	assert_string_equal(str_of(c, "content"), want);
	assert_string_equal(str_of(j, "model"), "m\xef\xbf\xbd");
	cJSON_Delete(j);
	nb_openai_buf_free(&b);
}

#define UNI "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"

static void test_escapes(void **state)
{
	static const char ctl[] = "a\"b\\c\nd\re\tf\x01g\x1f/h\x7f";
	static const char want[] = "\"text\":\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001f/h\x7f\"";
	struct nb_openai_meta m = { NB_OPENAI_COMPLETION, 1, 1, "m", false };
	struct nb_openai_buf b = { 0 };

	(void)state;
	roundtrip(ctl, sizeof(ctl) - 1, ctl);
	roundtrip(UNI, strlen(UNI), UNI);
	roundtrip("a\xff" "b", 3, "a\xef\xbf\xbd" "b");
	roundtrip("\xe2\x82", 2, "\xef\xbf\xbd\xef\xbf\xbd"); /* cut character at the very end */
	roundtrip("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
	roundtrip("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");                 /* overlong */
	roundtrip("x\0y", 3, "x\xef\xbf\xbdy");                               /* NUL */
	roundtrip(NULL, 0, "");
	/* the raw bytes: JSON escapes, nothing else */
	assert_int_equal(nb_openai_chunk_text(&b, &m, ctl, sizeof(ctl) - 1), 0);
	assert_non_null(strstr(b.data, want));
	nb_openai_buf_free(&b);
}

/* A buffer that already holds text is appended to, never rewritten. */
static void test_buffer_appends(void **state)
{
	struct nb_openai_meta m = { NB_OPENAI_CHAT, 1, 1, "m", false };
	struct nb_openai_buf b;
	char big[5000];

	(void)state;
	nb_openai_buf_init(&b);
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(nb_openai_chunk_done(&b), 0);
	assert_int_equal(nb_openai_chunk_text(&b, &m, big, sizeof(big) - 1), 0);
	assert_int_equal(nb_openai_chunk_done(&b), 0);
	assert_memory_equal(b.data, "data: [DONE]\n\ndata: {", 21);
	assert_int_equal(strlen(b.data), b.len);
	assert_string_equal(b.data + b.len - 14, "data: [DONE]\n\n");
	nb_openai_buf_free(&b);
	nb_openai_buf_free(&b);
	assert_null(b.data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_chat_minimal),
		cmocka_unit_test(test_chat_all_params),
		cmocka_unit_test(test_params_edges),
		cmocka_unit_test(test_content_forms),
		cmocka_unit_test(test_completion),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_nul_bytes),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_render_llama2),
		cmocka_unit_test(test_render_families),
		cmocka_unit_test(test_render_spans),
		cmocka_unit_test(test_render_limits),
		cmocka_unit_test(test_chat_encode),
		cmocka_unit_test(test_chat_response),
		cmocka_unit_test(test_completion_response),
		cmocka_unit_test(test_chat_stream),
		cmocka_unit_test(test_completion_stream),
		cmocka_unit_test(test_models),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_utf8_holdback),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_buffer_appends),
	};

	return cmocka_run_group_tests(tests, setup, NULL);
}
