#include "runtime/server/openai.h"
#include "runtime/base/err.h"
#include "runtime/text/unicode.h"

#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_REPEAT_LAST_N 4096u /* history the sampler keeps per request */

/* ---- UTF-8 ------------------------------------------------------------------- */

static bool utf8_valid(const char *s, size_t n)
{
	uint32_t cp;

	for (size_t i = 0, k; i < n; i += k) {
		k = nb_unicode_decode(s + i, n - i, &cp);
		if (cp == NB_UC_REPLACEMENT && k == 1)
			return false;
	}
	return true;
}

/* Copy of s[0..n) as valid UTF-8 without NUL (cJSON strings end at one):
 * malformed bytes and NUL become U+FFFD. */
static char *utf8_clean(const char *s, size_t n)
{
	char *out, *o;
	uint32_t cp;

	if (n > (SIZE_MAX - 1) / 3)
		return NULL;
	out = o = malloc(3 * n + 1);
	if (!out)
		return NULL;
	for (size_t i = 0, k; i < n; i += k) {
		k = nb_unicode_decode(s + i, n - i, &cp);
		if (cp == 0 || (cp == NB_UC_REPLACEMENT && k == 1)) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
		} else {
			memcpy(o, s + i, k);
			o += k;
		}
	}
	*o = '\0';
	return out;
}

/* Bytes a character with this lead byte has, 0 if it cannot lead. */
static size_t utf8_need(unsigned char c)
{
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	return c >= 0xf0 && c <= 0xf4 ? 4 : 0;
}

/* The second byte's range depends on the lead (no overlongs, surrogates or
 * code points past U+10FFFF); the others are 80..BF. */
static bool utf8_cont_ok(unsigned char lead, size_t pos, unsigned char c)
{
	unsigned char lo = 0x80, hi = 0xbf;

	if (pos == 1) {
		if (lead == 0xe0)
			lo = 0xa0;
		else if (lead == 0xed)
			hi = 0x9f;
		else if (lead == 0xf0)
			lo = 0x90;
		else if (lead == 0xf4)
			hi = 0x8f;
	}
	return c >= lo && c <= hi;
}

size_t nb_utf8_complete_len(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;

	for (size_t k = 1; k <= 3 && k <= n; k++) {
		size_t i = n - k, need;

		if ((u[i] & 0xc0) == 0x80)
			continue; /* a continuation byte: its lead is further back */
		need = utf8_need(u[i]);
		if (need <= k)
			return n; /* ASCII, complete, or a byte that never leads */
		for (size_t j = 1; j < k; j++) {
			if (!utf8_cont_ok(u[i], j, u[i + j]))
				return n;
		}
		return i;
	}
	return n;
}

/* ---- requests: errors and fields ---------------------------------------------------- */

__attribute__((format(printf, 5, 6)))
static int fail(struct nb_openai_error *e, int ret, const char *param, const char *code,
		const char *fmt, ...)
{
	va_list ap;

	e->status = ret == -NB_ENOMEM ? 500 : 400;
	snprintf(e->param, sizeof(e->param), "%s", param ? param : "");
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
	return ret;
}

static int fail_type(struct nb_openai_error *e, const char *param, const char *want)
{
	return fail(e, -NB_EFORMAT, param, "invalid_type", "'%s' must be %s", param, want);
}

static int fail_unsup(struct nb_openai_error *e, const char *param, const char *what)
{
	return fail(e, -NB_ENOTSUP, param, "unsupported_value", "'%s': %s", param, what);
}

static int fail_nomem(struct nb_openai_error *e)
{
	return fail(e, -NB_ENOMEM, NULL, NULL, "out of memory");
}

/* A member; NULL if absent or null (OpenAI treats null as absent). */
static const cJSON *get(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return cJSON_IsNull(v) ? NULL : v;
}

static int get_number(const cJSON *o, const char *name, double *out, bool *set,
		      struct nb_openai_error *e)
{
	const cJSON *v = get(o, name);

	*set = v != NULL;
	if (!v)
		return 0;
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return fail_type(e, name, "a number");
	*out = v->valuedouble;
	return 0;
}

/* An integer within [lo, hi]. */
static int get_int(const cJSON *o, const char *name, double lo, double hi, double *out,
		   bool *set, struct nb_openai_error *e)
{
	int err = get_number(o, name, out, set, e);

	if (err || !*set)
		return err;
	if (*out != floor(*out))
		return fail_type(e, name, "an integer");
	if (*out < lo || *out > hi)
		return fail(e, -NB_ERANGE, name, "invalid_value",
			    "'%s' must be between %.0f and %.0f", name, lo, hi);
	return 0;
}

/* A float parameter of the sampler in [lo, hi], an open end where asked.
 * Checked after rounding to float: 1e-60 is 0 to the sampler. */
static int get_float(const cJSON *o, const char *name, double lo, double hi, bool lo_open,
		     bool hi_open, float *out, struct nb_openai_error *e)
{
	double v = 0;
	bool set;
	int err = get_number(o, name, &v, &set, e);
	float f;

	if (err || !set)
		return err;
	/* In range as a double first: converting one out of float's range is UB. */
	f = v >= lo && v <= hi ? (float)v : (float)lo;
	if (v < lo || v > hi || (lo_open && f <= lo) || (hi_open && f >= hi))
		return fail(e, -NB_ERANGE, name, "invalid_value", "'%s' must be %s%g, %g%s",
			    name, lo_open ? "in (" : "in [", lo, hi, hi_open ? ")" : "]");
	*out = f;
	return 0;
}

/* param: how the error names it, when not just name. */
static int get_bool(const cJSON *o, const char *name, const char *param, bool *out,
		    struct nb_openai_error *e)
{
	const cJSON *v = get(o, name);

	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return fail_type(e, param ? param : name, "a boolean");
	*out = cJSON_IsTrue(v);
	return 0;
}

/* ---- requests: parameters ---------------------------------------------------------- */

static int parse_max_tokens(const cJSON *o, const struct nb_openai_limits *lim,
			    struct nb_gen_request *r, struct nb_openai_error *e)
{
	static const char *const names[] = { "max_completion_tokens", "max_tokens" };
	double hi = lim->max_tokens ? lim->max_tokens : UINT32_MAX, v;
	bool set;

	r->max_tokens = lim->default_max_tokens;
	for (size_t i = 0; i < 2; i++) {
		int err = get_int(o, names[i], 1, hi, &v, &set, e);

		if (err)
			return err;
		if (set) {
			r->max_tokens = (uint32_t)v;
			return 0;
		}
	}
	return 0;
}

static int parse_sampling(const cJSON *o, struct nb_gen_request *r, struct nb_openai_error *e)
{
	struct nb_sampler_params *sp = &r->sp;
	double v;
	bool set;
	int err;

	if ((err = get_float(o, "temperature", 0, 2, false, false, &sp->temperature, e)) ||
	    (err = get_float(o, "top_p", 0, 1, true, false, &sp->top_p, e)) ||
	    (err = get_float(o, "min_p", 0, 1, false, true, &sp->min_p, e)) ||
	    (err = get_float(o, "repetition_penalty", 0, 100, true, false, &sp->repeat_penalty, e)))
		return err;
	if (get(o, "repetition_penalty"))
		sp->repeat_last_n = NB_OPENAI_REPEAT_LAST_N;
	if ((err = get_int(o, "repeat_last_n", 0, MAX_REPEAT_LAST_N, &v, &set, e)))
		return err;
	if (set)
		sp->repeat_last_n = (uint32_t)v;
	if ((err = get_int(o, "top_k", 0, INT32_MAX, &v, &set, e)))
		return err;
	if (set)
		sp->top_k = (uint32_t)v;
	/* Any 64-bit integer; negative ones wrap as int64. UINT64_MAX reads as
	 * 2^64 in a double. */
	if ((err = get_int(o, "seed", -9223372036854775808.0, 18446744073709551616.0, &v,
			   &r->seed_set, e)))
		return err;
	if (r->seed_set)
		sp->seed = v < 0 ? (uint64_t)(int64_t)v
		       : v >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)v;
	return 0;
}

static int add_stop(const cJSON *s, const char *param, struct nb_gen_request *r,
		    struct nb_openai_error *e)
{
	size_t len;

	if (!cJSON_IsString(s))
		return fail_type(e, param, "a string or an array of strings");
	len = strlen(s->valuestring);
	if (len == 0 || len > NB_STOP_MAX_LEN || !utf8_valid(s->valuestring, len))
		return fail(e, -NB_ERANGE, param, "invalid_value",
			    "stop strings must be valid UTF-8 of 1 to %d bytes", NB_STOP_MAX_LEN);
	r->stop[r->n_stop] = strdup(s->valuestring);
	if (!r->stop[r->n_stop])
		return fail_nomem(e);
	r->n_stop++;
	return 0;
}

static int parse_stop(const cJSON *o, struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *v = get(o, "stop"), *s;
	int err;

	if (!v)
		return 0;
	if (!cJSON_IsArray(v))
		return add_stop(v, "stop", r, e);
	if (cJSON_GetArraySize(v) > NB_STOP_MAX)
		return fail(e, -NB_ERANGE, "stop", "invalid_value",
			    "'stop' takes at most %d strings", NB_STOP_MAX);
	cJSON_ArrayForEach(s, v) {
		if ((err = add_stop(s, "stop", r, e)))
			return err;
	}
	return 0;
}

static int parse_stream(const cJSON *o, struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *so = get(o, "stream_options");
	int err = get_bool(o, "stream", NULL, &r->stream, e);

	if (err || !so)
		return err;
	if (!cJSON_IsObject(so))
		return fail_type(e, "stream_options", "an object");
	if (!r->stream)
		return fail(e, -NB_EFORMAT, "stream_options", "invalid_value",
			    "'stream_options' is only allowed when 'stream' is true");
	return get_bool(so, "include_usage", "stream_options.include_usage", &r->include_usage, e);
}

/* Parameters that change what OpenAI would answer and that nibble cannot
 * honour: refused unless at their neutral value, never silently dropped. */
static int check_unsupported(const cJSON *o, struct nb_openai_error *e)
{
	static const char *const penalties[] = { "presence_penalty", "frequency_penalty" };
	static const char *const lists[] = { "tools", "functions" };
	const cJSON *v;
	double d;
	bool set;
	int err;

	if ((err = get_int(o, "n", 1, 1e9, &d, &set, e)))
		return err;
	if (set && d != 1)
		return fail_unsup(e, "n", "only 1 choice per request is supported");
	for (size_t i = 0; i < 2; i++) {
		if ((err = get_number(o, penalties[i], &d, &set, e)))
			return err;
		if (set && d != 0)
			return fail_unsup(e, penalties[i],
					  "only 0 is supported; use repetition_penalty");
	}
	v = get(o, "logprobs");
	if (v && !cJSON_IsFalse(v))
		return fail_unsup(e, "logprobs", "log probabilities are not supported");
	v = get(o, "logit_bias");
	if (v && (!cJSON_IsObject(v) || v->child))
		return fail_unsup(e, "logit_bias", "logit_bias is not supported");
	for (size_t i = 0; i < 2; i++) {
		v = get(o, lists[i]);
		if (v && (!cJSON_IsArray(v) || v->child))
			return fail_unsup(e, lists[i], "tool calling is not supported");
	}
	v = get(o, "response_format");
	if (v && !cJSON_IsObject(v))
		return fail_type(e, "response_format", "an object");
	v = v ? get(v, "type") : NULL;
	if (v && !(cJSON_IsString(v) && strcmp(v->valuestring, "text") == 0))
		return fail_unsup(e, "response_format", "only {\"type\": \"text\"} is supported");
	return 0;
}

/* nibble's routing extensions (docs/uplink.md): "local_only" and "route". */
static int parse_route(const cJSON *o, struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *route = get(o, "route");
	int err = get_bool(o, "local_only", NULL, &r->local_only, e);

	if (err)
		return err;
	r->local_only_set = get(o, "local_only") != NULL;
	if (!route)
		return 0;
	if (cJSON_IsString(route) && strcmp(route->valuestring, "auto") == 0)
		r->route = NB_OPENAI_ROUTE_AUTO;
	else if (cJSON_IsString(route) && strcmp(route->valuestring, "local") == 0)
		r->route = NB_OPENAI_ROUTE_LOCAL;
	else if (cJSON_IsString(route) && strcmp(route->valuestring, "cloud") == 0)
		r->route = NB_OPENAI_ROUTE_CLOUD;
	else
		return fail(e, -NB_EFORMAT, "route", "invalid_value",
			    "'route' is one of \"auto\", \"local\", \"cloud\"");
	return 0;
}

static int parse_common(const cJSON *o, const struct nb_openai_limits *lim,
			struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *model = get(o, "model");
	int err;

	if ((err = parse_route(o, r, e)))
		return err;

	if (model && !cJSON_IsString(model))
		return fail_type(e, "model", "a string");
	if (model && !(r->model = strdup(model->valuestring)))
		return fail_nomem(e);
	if ((err = parse_max_tokens(o, lim, r, e)) || (err = parse_sampling(o, r, e)) ||
	    (err = parse_stop(o, r, e)) || (err = parse_stream(o, r, e)))
		return err;
	return check_unsupported(o, e);
}

/* ---- requests: the body ------------------------------------------------------------ */

/* A \u0000 escape (cJSON would cut the string there, silently). */
static bool has_nul_escape(const char *s, size_t n)
{
	for (size_t i = 0; i + 1 < n; i++) {
		if (s[i] != '\\')
			continue;
		if (s[i + 1] == 'u' && n - i >= 6 && memcmp(s + i + 2, "0000", 4) == 0)
			return true;
		i++; /* the escaped character */
	}
	return false;
}

/* ---- requests: is it JSON at all? ----------------------------------------------------
 * cJSON returns NULL both for a syntax error and when an allocation fails.
 * Text these functions accept cJSON parses (NULs and \u0000 are refused
 * before) unless memory runs out: a NULL for it is a 500, not the
 * client's fault. */

#define JSON_MAX_DEPTH 1000 /* cJSON's CJSON_NESTING_LIMIT */

struct json_scan {
	const unsigned char *p, *end;
};

static void json_ws(struct json_scan *j)
{
	while (j->p < j->end && *j->p <= ' ') /* cJSON skips every byte up to space */
		j->p++;
}

static bool json_lit(struct json_scan *j, const char *lit)
{
	size_t n = strlen(lit);

	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
		return false;
	j->p += n;
	return true;
}

static bool json_digits(struct json_scan *j)
{
	const unsigned char *s = j->p;

	while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
		j->p++;
	return j->p > s;
}

static bool json_number(struct json_scan *j)
{
	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p < j->end && *j->p == '0')
		j->p++;
	else if (!json_digits(j))
		return false;
	if (j->p < j->end && *j->p == '.' && (j->p++, !json_digits(j)))
		return false;
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		return json_digits(j);
	}
	return true;
}

/* \uXXXX after the backslash and u; -1 if malformed. */
static long json_hex4(struct json_scan *j)
{
	long v = 0;

	for (int i = 0; i < 4; i++, j->p++) {
		int c = j->p < j->end ? *j->p : -1;
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

/* A string from its opening quote; UTF-16 surrogates must pair up. */
static bool json_string(struct json_scan *j)
{
	for (j->p++; j->p < j->end; j->p++) {
		long u;

		if (*j->p == '"') {
			j->p++;
			return true;
		}
		if (*j->p != '\\')
			continue;
		if (++j->p == j->end)
			return false;
		if (*j->p && strchr("\"\\/bfnrt", *j->p))
			continue;
		if (*j->p != 'u')
			return false;
		j->p++;
		u = json_hex4(j);
		if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
			return false;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (!json_lit(j, "\\u"))
				return false;
			u = json_hex4(j);
			if (u < 0xdc00 || u > 0xdfff)
				return false;
		}
		j->p--; /* the loop steps past the last hex digit */
	}
	return false;
}

static bool json_value(struct json_scan *j, int depth);

/* An array or an object from its opening bracket. */
static bool json_container(struct json_scan *j, int depth, bool object)
{
	const unsigned char close = object ? '}' : ']';

	if (depth >= JSON_MAX_DEPTH)
		return false;
	j->p++;
	json_ws(j);
	if (j->p < j->end && *j->p == close) {
		j->p++;
		return true;
	}
	for (;;) {
		if (object) {
			if (j->p == j->end || *j->p != '"' || !json_string(j))
				return false;
			json_ws(j);
			if (!json_lit(j, ":"))
				return false;
		}
		if (!json_value(j, depth + 1))
			return false;
		if (j->p < j->end && *j->p == close) {
			j->p++;
			return true;
		}
		if (!json_lit(j, ","))
			return false;
		json_ws(j);
	}
}

/* A value with the whitespace around it. */
static bool json_value(struct json_scan *j, int depth)
{
	bool ok;

	json_ws(j);
	if (j->p == j->end)
		return false;
	switch (*j->p) {
	case '{': ok = json_container(j, depth, true); break;
	case '[': ok = json_container(j, depth, false); break;
	case '"': ok = json_string(j); break;
	case 't': ok = json_lit(j, "true"); break;
	case 'f': ok = json_lit(j, "false"); break;
	case 'n': ok = json_lit(j, "null"); break;
	default: ok = json_number(j);
	}
	json_ws(j);
	return ok;
}

static bool json_well_formed(const char *s, size_t n)
{
	struct json_scan j = { (const unsigned char *)s, (const unsigned char *)s + n };

	json_lit(&j, "\xef\xbb\xbf"); /* a UTF-8 BOM, which cJSON skips */
	return json_value(&j, 0) && j.p == j.end;
}

static int parse_body(const char *body, size_t len, cJSON **root, struct nb_openai_error *e)
{
	const char *end = NULL;

	*root = NULL;
	if (!body || len == 0)
		return fail(e, -NB_EFORMAT, NULL, NULL, "the request has no body");
	if (memchr(body, '\0', len) || has_nul_escape(body, len))
		return fail(e, -NB_EFORMAT, NULL, NULL, "the body must not contain NUL characters");
	*root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	if (!*root && json_well_formed(body, len))
		return fail_nomem(e);
	if (!*root) {
		if (end && end >= body && end <= body + len)
			return fail(e, -NB_EFORMAT, NULL, NULL,
				    "the body is not valid JSON (error at byte %zu)",
				    (size_t)(end - body));
		return fail(e, -NB_EFORMAT, NULL, NULL, "the body is not valid JSON");
	}
	for (; end && end < body + len; end++) {
		if (!strchr(" \t\r\n", *end))
			return fail(e, -NB_EFORMAT, NULL, NULL,
				    "the body is not valid JSON (text after the value at byte %zu)",
				    (size_t)(end - body));
	}
	if (!cJSON_IsObject(*root))
		return fail(e, -NB_EFORMAT, NULL, NULL, "the body must be a JSON object");
	return 0;
}

static void limits_or_default(const struct nb_openai_limits *in, struct nb_openai_limits *out)
{
	nb_openai_limits_default(out);
	if (!in)
		return;
	*out = *in;
	if (!out->max_prompt_bytes)
		out->max_prompt_bytes = NB_OPENAI_MAX_PROMPT_BYTES;
	if (!out->max_messages)
		out->max_messages = NB_OPENAI_MAX_MESSAGES;
}

void nb_openai_limits_default(struct nb_openai_limits *lim)
{
	*lim = (struct nb_openai_limits){
		.max_prompt_bytes = NB_OPENAI_MAX_PROMPT_BYTES,
		.max_messages = NB_OPENAI_MAX_MESSAGES,
	};
}

void nb_gen_request_init(struct nb_gen_request *r)
{
	memset(r, 0, sizeof(*r));
	nb_sampler_params_default(&r->sp);
}

void nb_gen_request_free(struct nb_gen_request *r)
{
	if (!r)
		return;
	free(r->model);
	free(r->prompt);
	free(r->specials);
	for (size_t i = 0; i < r->n_stop && i < NB_STOP_MAX; i++)
		free(r->stop[i]);
	nb_gen_request_init(r);
}

/* ---- chat messages -------------------------------------------------------------- */

static int parse_role(const cJSON *m, const char *param, int *role, struct nb_openai_error *e)
{
	static const struct {
		const char *name;
		int role;
	} roles[] = {
		{ "system", NB_ROLE_SYSTEM },
		{ "developer", NB_ROLE_SYSTEM }, /* OpenAI's newer name for system */
		{ "user", NB_ROLE_USER },
		{ "assistant", NB_ROLE_ASSISTANT },
	};
	const cJSON *v = get(m, "role");

	if (!v)
		return fail(e, -NB_EFORMAT, param, "invalid_value", "'%s' is required", param);
	if (!cJSON_IsString(v))
		return fail_type(e, param, "a string");
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
		if (strcmp(v->valuestring, roles[i].name) == 0) {
			*role = roles[i].role;
			return 0;
		}
	}
	if (strcmp(v->valuestring, "tool") == 0 || strcmp(v->valuestring, "function") == 0)
		return fail_unsup(e, param, "tool calling is not supported");
	return fail(e, -NB_EFORMAT, param, "invalid_value",
		    "'%s' must be system, developer, user or assistant", param);
}

/* Text parts joined by newlines, into a malloc'd *joined. */
static int join_parts(const cJSON *parts, const char *param, char **joined, size_t *len,
		      struct nb_openai_error *e)
{
	const cJSON *p, *type, *text;
	size_t total = 0, n = 0;
	char *out;

	cJSON_ArrayForEach(p, parts) {
		type = get(p, "type");
		text = get(p, "text");
		if (!cJSON_IsObject(p) || !cJSON_IsString(type))
			return fail_type(e, param, "a string or an array of {\"type\", ...} parts");
		if (strcmp(type->valuestring, "text") != 0)
			return fail_unsup(e, param, "only text content parts are supported");
		if (!cJSON_IsString(text))
			return fail_type(e, param, "made of parts with a string 'text'");
		total += strlen(text->valuestring) + 1; /* bounded by the body size */
	}
	out = malloc(total + 1);
	if (!out)
		return fail_nomem(e);
	cJSON_ArrayForEach(p, parts) {
		size_t l = strlen((text = get(p, "text"))->valuestring);

		if (n)
			out[n++] = '\n';
		memcpy(out + n, text->valuestring, l);
		n += l;
	}
	out[n] = '\0';
	*joined = out;
	*len = n;
	return 0;
}

/* msgs[i].content points into the JSON tree or into owned[i] (freed by the caller). */
static int parse_message(const cJSON *m, size_t i, struct nb_chat_msg *msg, char **owned,
			 struct nb_openai_error *e)
{
	char param[48];
	const cJSON *c;
	int err;

	if (!cJSON_IsObject(m)) {
		snprintf(param, sizeof(param), "messages[%zu]", i);
		return fail_type(e, param, "an object");
	}
	snprintf(param, sizeof(param), "messages[%zu].role", i);
	if ((err = parse_role(m, param, &msg->role, e)))
		return err;
	snprintf(param, sizeof(param), "messages[%zu].content", i);
	c = get(m, "content");
	if (!c && msg->role != NB_ROLE_ASSISTANT)
		return fail(e, -NB_EFORMAT, param, "invalid_value", "'%s' is required", param);
	if (!c) {
		msg->content = "";
		msg->len = 0;
	} else if (cJSON_IsString(c)) {
		msg->content = c->valuestring;
		msg->len = strlen(c->valuestring);
	} else if (cJSON_IsArray(c)) {
		if ((err = join_parts(c, param, owned, &msg->len, e)))
			return err;
		msg->content = *owned;
	} else {
		return fail_type(e, param, "a string or an array of content parts");
	}
	if (!utf8_valid(msg->content, msg->len))
		return fail(e, -NB_EFORMAT, param, "invalid_value", "'%s' is not valid UTF-8",
			    param);
	return 0;
}

/* Takes the rendered prompt into the request. */
static void take_prompt(struct nb_gen_request *r, struct nb_chat_prompt *p)
{
	r->prompt = p->text;
	r->prompt_len = p->len;
	r->specials = p->spans;
	r->n_specials = p->n_spans;
	nb_chat_prompt_init(p, 0);
}

static int render_messages(const cJSON *msgs, const struct nb_openai_limits *lim,
			   struct nb_gen_request *r, struct nb_openai_error *e)
{
	size_t n = (size_t)cJSON_GetArraySize(msgs), i = 0;
	struct nb_chat_msg *m = calloc(n, sizeof(*m));
	char **owned = calloc(n, sizeof(*owned));
	struct nb_chat_prompt p;
	const cJSON *it;
	int err = 0;

	nb_chat_prompt_init(&p, lim->max_prompt_bytes);
	if (!m || !owned) {
		err = fail_nomem(e);
		goto out_free;
	}
	cJSON_ArrayForEach(it, msgs) {
		if ((err = parse_message(it, i, &m[i], &owned[i], e)))
			goto out_free;
		i++;
	}
	err = nb_chat_render(lim->tmpl, m, n, &p);
	if (err == -NB_ERANGE)
		err = fail(e, err, "messages", "context_length_exceeded",
			   "the prompt is longer than %zu bytes", lim->max_prompt_bytes);
	else if (err)
		err = fail_nomem(e);
	else
		take_prompt(r, &p);
out_free:
	nb_chat_prompt_free(&p);
	for (size_t k = 0; owned && k < n; k++)
		free(owned[k]);
	free(owned);
	free(m);
	return err;
}

/* The default transcript has no end-of-turn token: stop where the model
 * starts writing the user's next line, if the client left room. */
static int default_stop(struct nb_gen_request *r, struct nb_openai_error *e)
{
	static const char stop[] = "\nUser:";

	for (size_t i = 0; i < r->n_stop; i++) {
		if (strcmp(r->stop[i], stop) == 0)
			return 0;
	}
	if (r->n_stop == NB_STOP_MAX)
		return 0;
	if (!(r->stop[r->n_stop] = strdup(stop)))
		return fail_nomem(e);
	r->n_stop++;
	return 0;
}

static int parse_chat(const cJSON *o, const struct nb_openai_limits *lim,
		      struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *msgs = get(o, "messages");
	int family = lim->tmpl ? lim->tmpl->family : NB_CHAT_DEFAULT;
	int n, err;

	if (!msgs)
		return fail(e, -NB_EFORMAT, "messages", "invalid_value", "'messages' is required");
	if (!cJSON_IsArray(msgs))
		return fail_type(e, "messages", "an array");
	n = cJSON_GetArraySize(msgs);
	if (n == 0)
		return fail(e, -NB_EFORMAT, "messages", "invalid_value", "'messages' is empty");
	if ((size_t)n > lim->max_messages)
		return fail(e, -NB_ERANGE, "messages", "invalid_value",
			    "'messages' has more than %zu messages", lim->max_messages);
	if ((err = parse_common(o, lim, r, e)) || (err = render_messages(msgs, lim, r, e)))
		return err;
	r->end_of_turn = nb_chat_end_of_turn(family);
	return family == NB_CHAT_DEFAULT ? default_stop(r, e) : 0;
}

static int parse_completion(const cJSON *o, const struct nb_openai_limits *lim,
			    struct nb_gen_request *r, struct nb_openai_error *e)
{
	const cJSON *p = get(o, "prompt"), *v;
	double d;
	bool set, echo = false;
	size_t len;
	int err;

	if (!p)
		return fail(e, -NB_EFORMAT, "prompt", "invalid_value", "'prompt' is required");
	if (cJSON_IsArray(p)) {
		if (!p->child || (!cJSON_IsString(p->child) && !cJSON_IsArray(p->child) &&
				  !cJSON_IsNumber(p->child)))
			return fail_type(e, "prompt", "a string or an array of one string");
		if (!cJSON_IsString(p->child))
			return fail_unsup(e, "prompt", "token-id prompts are not supported");
		if (p->child->next)
			return fail_unsup(e, "prompt", "only one prompt per request is supported");
		p = p->child;
	} else if (!cJSON_IsString(p)) {
		return fail_type(e, "prompt", "a string or an array of one string");
	}
	len = strlen(p->valuestring);
	if (len > lim->max_prompt_bytes)
		return fail(e, -NB_ERANGE, "prompt", "context_length_exceeded",
			    "the prompt is longer than %zu bytes", lim->max_prompt_bytes);
	if (!utf8_valid(p->valuestring, len))
		return fail(e, -NB_EFORMAT, "prompt", "invalid_value",
			    "'prompt' is not valid UTF-8");
	if ((err = parse_common(o, lim, r, e)) || (err = get_bool(o, "echo", NULL, &echo, e)) ||
	    (err = get_int(o, "best_of", 1, 1e9, &d, &set, e)))
		return err;
	if (echo)
		return fail_unsup(e, "echo", "echo is not supported");
	if (set && d != 1)
		return fail_unsup(e, "best_of", "only 1 is supported");
	v = get(o, "suffix");
	if (v && !(cJSON_IsString(v) && v->valuestring[0] == '\0'))
		return fail_unsup(e, "suffix", "suffix is not supported");
	if (!(r->prompt = strdup(p->valuestring)))
		return fail_nomem(e);
	r->prompt_len = len;
	return 0;
}

static int parse(int endpoint, const char *body, size_t len, const struct nb_openai_limits *lim,
		 struct nb_gen_request *r, struct nb_openai_error *e)
{
	struct nb_openai_limits l;
	cJSON *root;
	int err;

	nb_gen_request_init(r);
	memset(e, 0, sizeof(*e));
	limits_or_default(lim, &l);
	r->endpoint = endpoint;
	err = parse_body(body, len, &root, e);
	if (!err)
		err = endpoint == NB_OPENAI_CHAT ? parse_chat(root, &l, r, e)
						 : parse_completion(root, &l, r, e);
	cJSON_Delete(root);
	if (err)
		nb_gen_request_free(r);
	return err;
}

int nb_openai_parse_chat(const char *body, size_t len, const struct nb_openai_limits *lim,
			 struct nb_gen_request *req, struct nb_openai_error *err)
{
	return parse(NB_OPENAI_CHAT, body, len, lim, req, err);
}

int nb_openai_parse_completion(const char *body, size_t len, const struct nb_openai_limits *lim,
			       struct nb_gen_request *req, struct nb_openai_error *err)
{
	return parse(NB_OPENAI_COMPLETION, body, len, lim, req, err);
}

/* ---- output: the buffer -------------------------------------------------------------- */

void nb_openai_buf_init(struct nb_openai_buf *b)
{
	memset(b, 0, sizeof(*b));
}

void nb_openai_buf_free(struct nb_openai_buf *b)
{
	if (!b)
		return;
	free(b->data);
	nb_openai_buf_init(b);
}

int nb_openai_buf_append(struct nb_openai_buf *b, const char *s, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len) {
		b->failed = true;
		return -NB_ENOMEM;
	}
	if (!b->data || b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown) {
			b->failed = true;
			return -NB_ENOMEM;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

/* Prints and deletes j; as an SSE event if sse. j NULL means a build failed. */
static int emit(struct nb_openai_buf *b, cJSON *j, bool sse)
{
	size_t old = b->len;
	char *s = j ? cJSON_PrintUnformatted(j) : NULL;
	int err = -NB_ENOMEM;

	cJSON_Delete(j);
	if (s && !(err = sse ? nb_openai_buf_append(b, "data: ", 6) : 0) && !(err = nb_openai_buf_append(b, s, strlen(s))))
		err = sse ? nb_openai_buf_append(b, "\n\n", 2) : 0;
	free(s);
	if (err)
		b->failed = true;
	if (err && b->data) {
		b->len = old;
		b->data[old] = '\0';
	}
	return err;
}

/* ---- output: JSON objects -------------------------------------------------------------
 * cJSON's Add* return NULL on failure and accept a NULL parent, so a build
 * runs to the end and one check of the collected results decides. */

static cJSON *add_text(cJSON *o, const char *name, const char *s, size_t n)
{
	char *clean = utf8_clean(s ? s : "", s ? n : 0);
	cJSON *v = clean ? cJSON_AddStringToObject(o, name, clean) : NULL;

	free(clean);
	return v;
}

static const char *finish_name(int finish)
{
	return finish == NB_FINISH_STOP ? "stop" : finish == NB_FINISH_LENGTH ? "length" : NULL;
}

static bool add_finish(cJSON *o, int finish)
{
	const char *f = finish_name(finish);

	return (f ? cJSON_AddStringToObject(o, "finish_reason", f)
		  : cJSON_AddNullToObject(o, "finish_reason")) != NULL;
}

static bool add_usage(cJSON *o, const struct nb_openai_usage *u)
{
	cJSON *j = cJSON_AddObjectToObject(o, "usage");
	struct nb_openai_usage zero = { 0, 0 };

	u = u ? u : &zero;
	return cJSON_AddNumberToObject(j, "prompt_tokens", u->prompt_tokens) &&
	       cJSON_AddNumberToObject(j, "completion_tokens", u->completion_tokens) &&
	       cJSON_AddNumberToObject(j, "total_tokens",
				       (double)u->prompt_tokens + u->completion_tokens);
}

/* id, object, created, model: the head of every response and chunk. */
static cJSON *head(const struct nb_openai_meta *m, bool chunk)
{
	bool chat = m->endpoint == NB_OPENAI_CHAT;
	cJSON *o = cJSON_CreateObject();
	char id[40];
	bool ok;

	snprintf(id, sizeof(id), "%s-%016" PRIx64, chat ? "chatcmpl" : "cmpl", m->id);
	ok = cJSON_AddStringToObject(o, "id", id) &&
	     cJSON_AddStringToObject(o, "object", !chat ? "text_completion"
						  : chunk ? "chat.completion.chunk"
							  : "chat.completion") &&
	     cJSON_AddNumberToObject(o, "created", (double)m->created) &&
	     add_text(o, "model", m->model, m->model ? strlen(m->model) : 0);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

/* choices[0] of o, with index and logprobs; chat gets message or delta. */
static cJSON *choice(cJSON *o, const struct nb_openai_meta *m, const char *text, size_t len,
		     int finish, const char *message_key, bool role)
{
	cJSON *arr = cJSON_AddArrayToObject(o, "choices"), *c = cJSON_CreateObject(), *msg;
	bool ok;

	if (!arr || !c || !cJSON_AddItemToArray(arr, c)) {
		cJSON_Delete(c);
		return NULL;
	}
	if (m->endpoint == NB_OPENAI_CHAT) {
		msg = cJSON_AddObjectToObject(c, message_key);
		ok = cJSON_AddNumberToObject(c, "index", 0) && msg &&
		     (!role || cJSON_AddStringToObject(msg, "role", "assistant")) &&
		     (!text || add_text(msg, "content", text, len));
	} else {
		ok = add_text(c, "text", text ? text : "", text ? len : 0) &&
		     cJSON_AddNumberToObject(c, "index", 0);
	}
	ok = ok && cJSON_AddNullToObject(c, "logprobs") && add_finish(c, finish);
	return ok ? c : NULL;
}

int nb_openai_response(struct nb_openai_buf *b, const struct nb_openai_meta *m,
		       const char *text, size_t len, int finish, const struct nb_openai_usage *u)
{
	cJSON *o = head(m, false);
	bool ok = o && choice(o, m, text ? text : "", text ? len : 0, finish, "message", true) &&
		  add_usage(o, u);

	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	return emit(b, o, false);
}

/* One streaming chunk: text NULL and !role gives an empty delta. */
static int chunk(struct nb_openai_buf *b, const struct nb_openai_meta *m, const char *text,
		 size_t len, int finish, bool role)
{
	cJSON *o = head(m, true);
	bool ok = o && choice(o, m, text, len, finish, "delta", role) &&
		  (!m->include_usage || cJSON_AddNullToObject(o, "usage"));

	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	return emit(b, o, true);
}

int nb_openai_chunk_role(struct nb_openai_buf *b, const struct nb_openai_meta *m)
{
	return m->endpoint == NB_OPENAI_CHAT ? chunk(b, m, "", 0, NB_FINISH_NONE, true) : 0;
}

int nb_openai_chunk_text(struct nb_openai_buf *b, const struct nb_openai_meta *m,
			 const char *text, size_t len)
{
	return len ? chunk(b, m, text, len, NB_FINISH_NONE, false) : 0;
}

int nb_openai_chunk_finish(struct nb_openai_buf *b, const struct nb_openai_meta *m, int finish)
{
	return chunk(b, m, NULL, 0, finish, false);
}

int nb_openai_chunk_usage(struct nb_openai_buf *b, const struct nb_openai_meta *m,
			  const struct nb_openai_usage *u)
{
	cJSON *o = head(m, true);
	bool ok = o && cJSON_AddArrayToObject(o, "choices") && add_usage(o, u);

	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	return emit(b, o, true);
}

int nb_openai_chunk_done(struct nb_openai_buf *b)
{
	return nb_openai_buf_append(b, "data: [DONE]\n\n", 14);
}

int nb_openai_models(struct nb_openai_buf *b, const char *name, int64_t created)
{
	cJSON *o = cJSON_CreateObject(), *arr = NULL, *mo = cJSON_CreateObject();
	bool ok;

	ok = cJSON_AddStringToObject(o, "object", "list") &&
	     (arr = cJSON_AddArrayToObject(o, "data")) && mo && cJSON_AddItemToArray(arr, mo);
	if (!ok)
		cJSON_Delete(mo);
	ok = ok && add_text(mo, "id", name, name ? strlen(name) : 0) &&
	     cJSON_AddStringToObject(mo, "object", "model") &&
	     cJSON_AddNumberToObject(mo, "created", (double)created) &&
	     cJSON_AddStringToObject(mo, "owned_by", "nibble");
	if (!ok) {
		cJSON_Delete(o);
		o = NULL;
	}
	return emit(b, o, false);
}

/* ---- output: errors ----------------------------------------------------------------- */

static cJSON *error_object(int status, const char *message, const char *param, const char *code)
{
	cJSON *o = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(o, "error");
	const char *type = status == 429 ? "requests" : status >= 500 ? "server_error"
							      : "invalid_request_error";
	bool ok;

	if (!code && status == 429)
		code = "rate_limit_exceeded";
	else if (!code && status == 401)
		code = "invalid_api_key";
	message = message ? message : "error";
	ok = e && add_text(e, "message", message, strlen(message)) &&
	     cJSON_AddStringToObject(e, "type", type) &&
	     (param ? add_text(e, "param", param, strlen(param)) != NULL
		    : cJSON_AddNullToObject(e, "param") != NULL) &&
	     (code ? add_text(e, "code", code, strlen(code)) != NULL
		   : cJSON_AddNullToObject(e, "code") != NULL);
	if (!ok) {
		cJSON_Delete(o);
		return NULL;
	}
	return o;
}

int nb_openai_error_json(struct nb_openai_buf *b, int status, const char *message,
			 const char *param, const char *code)
{
	return emit(b, error_object(status, message, param, code), false);
}

int nb_openai_error_sse(struct nb_openai_buf *b, int status, const char *message)
{
	return emit(b, error_object(status, message, NULL, NULL), true);
}

int nb_openai_error_from(struct nb_openai_buf *b, const struct nb_openai_error *err)
{
	return nb_openai_error_json(b, err->status ? err->status : 400, err->message,
				    err->param[0] ? err->param : NULL, err->code);
}
