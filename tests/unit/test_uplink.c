/* The uplink's pure parts: the routing policy, the circuit breaker, the
 * cloud response parser (HTTP framing + SSE + chunk objects), model
 * mapping and pins. The network side is tests/integration/uplink.sh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "firmware/tls.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/server/openai.h"
#include "runtime/server/uplink.h"
#include "runtime/server/upresp.h"

#include <stdlib.h>
#include <string.h>

/* ---- routing ----------------------------------------------------------------- */

static struct nb_route_in base(void)
{
	return (struct nb_route_in){ .uplink = true, .cloud_ready = true, .model_local = true,
				     .wait_target = 2 };
}

static enum nb_route route(const struct nb_route_in *in)
{
	const char *why = NULL;
	enum nb_route r = nb_route_decide(in, &why);

	assert_non_null(why);
	return r;
}

static void test_route_idle_stays_local(void **state)
{
	struct nb_route_in in = base();

	(void)state;
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
	in.est_wait = 2; /* at the target, not over it */
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
}

static void test_route_spills(void **state)
{
	struct nb_route_in in = base();
	const char *why;

	(void)state;
	in.est_wait = 2.5;
	assert_int_equal(nb_route_decide(&in, &why), NB_ROUTE_CLOUD);
	assert_string_equal(why, "saturated");
	in = base();
	in.capacity_cut = true;
	assert_int_equal(nb_route_decide(&in, &why), NB_ROUTE_CLOUD);
	assert_string_equal(why, "capacity cut");
	in = base();
	in.too_long = true;
	assert_int_equal(nb_route_decide(&in, &why), NB_ROUTE_CLOUD);
	assert_string_equal(why, "context");
	in = base();
	in.ask = NB_OPENAI_ROUTE_CLOUD;
	assert_int_equal(nb_route_decide(&in, &why), NB_ROUTE_CLOUD);
	assert_string_equal(why, "asked");
}

static void test_route_local_only_never_leaves(void **state)
{
	struct nb_route_in in = base();

	(void)state;
	in.local_only = true;
	in.est_wait = 100;
	in.capacity_cut = in.too_long = true;
	in.ask = NB_OPENAI_ROUTE_CLOUD;
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
	in.model_local = false; /* a cloud-only model: refused, not sent */
	in.model_cloud = true;
	assert_int_equal(route(&in), NB_ROUTE_REFUSE);
}

static void test_route_ask_local_and_no_uplink(void **state)
{
	struct nb_route_in in = base();

	(void)state;
	in.est_wait = 100;
	in.ask = NB_OPENAI_ROUTE_LOCAL;
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
	in = base();
	in.uplink = false;
	in.ask = NB_OPENAI_ROUTE_CLOUD;
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
}

static void test_route_cloud_unavailable(void **state)
{
	struct nb_route_in in = base();

	(void)state;
	in.cloud_ready = false;
	in.est_wait = 100; /* saturated, but the cloud is down: wait here */
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
	in.model_local = false;
	in.model_cloud = true; /* only the cloud has it: a clear refusal */
	assert_int_equal(route(&in), NB_ROUTE_REFUSE);
	in.cloud_ready = true;
	assert_int_equal(route(&in), NB_ROUTE_CLOUD);
}

static void test_route_unknown_model_is_local(void **state)
{
	struct nb_route_in in = base();

	(void)state;
	in.model_local = false; /* neither here nor mapped: the local 404 */
	in.est_wait = 100;
	assert_int_equal(route(&in), NB_ROUTE_LOCAL);
}

/* ---- breaker ---------------------------------------------------------------------- */

static void test_breaker_opens_after_threshold(void **state)
{
	struct nb_breaker b;

	(void)state;
	nb_breaker_init(&b, 3, 5);
	assert_true(nb_breaker_allow(&b, 0));
	nb_breaker_result(&b, false, 0);
	nb_breaker_result(&b, false, 0);
	assert_int_equal(b.state, NB_BREAKER_CLOSED);
	nb_breaker_result(&b, true, 0); /* a success resets the count */
	nb_breaker_result(&b, false, 1);
	nb_breaker_result(&b, false, 1);
	assert_int_equal(b.state, NB_BREAKER_CLOSED);
	nb_breaker_result(&b, false, 1);
	assert_int_equal(b.state, NB_BREAKER_OPEN);
	assert_int_equal(b.opens, 1);
	assert_false(nb_breaker_allow(&b, 5.9));
	assert_false(nb_breaker_would_allow(&b, 5.9));
}

static void test_breaker_half_open_one_trial(void **state)
{
	struct nb_breaker b;

	(void)state;
	nb_breaker_init(&b, 1, 5);
	nb_breaker_result(&b, false, 0);
	assert_true(nb_breaker_would_allow(&b, 5));
	assert_int_equal(b.state, NB_BREAKER_OPEN); /* would_allow changes nothing */
	assert_true(nb_breaker_allow(&b, 5));
	assert_int_equal(b.state, NB_BREAKER_HALF_OPEN);
	assert_false(nb_breaker_allow(&b, 5)); /* one trial at a time */
	nb_breaker_result(&b, true, 6);
	assert_int_equal(b.state, NB_BREAKER_CLOSED);
	assert_true(nb_breaker_allow(&b, 6));
}

static void test_breaker_backoff_doubles_and_caps(void **state)
{
	struct nb_breaker b;
	double t = 0;

	(void)state;
	nb_breaker_init(&b, 1, 1);
	nb_breaker_result(&b, false, t);
	assert_true(b.open_until == 1);
	for (int i = 0; i < 8; i++) {
		t = b.open_until;
		assert_true(nb_breaker_allow(&b, t));
		nb_breaker_result(&b, false, t); /* the trial fails */
		assert_int_equal(b.state, NB_BREAKER_OPEN);
	}
	assert_true(b.backoff == 16); /* 2, 4, 8, 16, then capped */
	assert_true(b.open_until == t + 16);
	assert_true(nb_breaker_allow(&b, b.open_until));
	nb_breaker_result(&b, true, b.open_until);
	assert_true(b.backoff == 1); /* back to the first period */
}

/* ---- the response parser ------------------------------------------------------------- */

struct got {
	char all[4096];
	int n;
};

static int collect(void *arg, const char *data, size_t len)
{
	struct got *g = arg;

	assert_int_equal(strlen(data), len);
	strcat(g->all, data);
	strcat(g->all, "|");
	g->n++;
	return 0;
}

/* The response fed whole and byte by byte: the same events either way. */
static int parse(const char *resp, struct got *g, struct nb_upresp *out)
{
	struct nb_upresp p;
	struct got g1 = { 0 };
	int ret1 = 0, ret;

	nb_upresp_init(&p, collect, &g1);
	for (size_t i = 0; resp[i] && !ret1; i++)
		ret1 = nb_upresp_feed(&p, resp + i, 1);
	if (!ret1)
		ret1 = nb_upresp_eof(&p);
	nb_upresp_free(&p);
	memset(g, 0, sizeof(*g));
	nb_upresp_init(out, collect, g);
	ret = nb_upresp_feed(out, resp, strlen(resp));
	if (!ret)
		ret = nb_upresp_eof(out);
	nb_upresp_free(out);
	assert_int_equal(ret, ret1);
	assert_string_equal(g->all, g1.all);
	return ret;
}

static void test_upresp_chunked_sse(void **state)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
				"Transfer-Encoding: chunked\r\n\r\n"
				"f\r\ndata: {\"a\":1}\n\n\r\n"
				"6\r\ndata: \r\n"
				"8\r\n[DONE]\n\n\r\n"
				"0\r\n\r\n";
	struct nb_upresp p;
	struct got g;

	(void)state;
	assert_int_equal(parse(r, &g, &p), 0);
	assert_string_equal(g.all, "{\"a\":1}|[DONE]|");
	assert_int_equal(p.status, 200);
	assert_true(p.keep_alive && nb_upresp_done(&p));
}

static void test_upresp_multiline_comments_crlf(void **state)
{
	static const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 49\r\n\r\n"
				": a comment\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\n" "data: c";
	struct nb_upresp p;
	struct got g;

	(void)state;
	assert_int_equal(strlen(": a comment\r\nevent: x\r\ndata: a\r\ndata:b\r\n\r\n" "data: c"), 49);
	assert_int_equal(parse(r, &g, &p), 0);
	assert_string_equal(g.all, "a\nb|c|"); /* the last event, unterminated, still counts */
}

static void test_upresp_until_close_and_interim(void **state)
{
	static const char r[] = "HTTP/1.1 100 Continue\r\n\r\n"
				"HTTP/1.0 200 OK\r\n\r\ndata: x\n\n";
	struct nb_upresp p;
	struct got g;

	(void)state;
	assert_int_equal(parse(r, &g, &p), 0);
	assert_string_equal(g.all, "x|");
	assert_false(p.keep_alive);
}

static void test_upresp_cut_is_an_error(void **state)
{
	struct nb_upresp p;
	struct got g;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			       "f\r\ndata: {\"a\":1}\n\n\r\n", &g, &p), -NB_EIO);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ndata: x\n\n", &g, &p),
			 -NB_EIO);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Le", &g, &p), -NB_EIO);
}

static void test_upresp_malformed(void **state)
{
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", /* past the end */
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n",
	};
	struct nb_upresp p;
	struct got g;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int ret = parse(bad[i], &g, &p);
		if (ret != -NB_EFORMAT)
			fail_msg("case %zu: %d", i, ret);
	}
}

static void test_upresp_error_status_keeps_body(void **state)
{
	struct nb_upresp p;
	struct got g;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 429 Too Many\r\nContent-Length: 9\r\n\r\n{\"x\":\"y\"}", &g,
			       &p), 0);
	assert_int_equal(p.status, 429);
	assert_string_equal(p.err_body, "{\"x\":\"y\"}");
	assert_int_equal(g.n, 0); /* no events from an error body */
}

static void test_upresp_event_limit(void **state)
{
	size_t n = NB_UPRESP_MAX_EVENT + 100;
	char *body = malloc(n + 64);
	struct nb_upresp p;
	int ret;

	(void)state;
	assert_non_null(body);
	strcpy(body, "HTTP/1.0 200 OK\r\n\r\ndata: ");
	memset(body + strlen(body), 'a', n);
	body[strlen("HTTP/1.0 200 OK\r\n\r\ndata: ") + n] = '\0';
	nb_upresp_init(&p, NULL, NULL);
	ret = nb_upresp_feed(&p, body, strlen(body));
	nb_upresp_free(&p);
	free(body);
	assert_int_equal(ret, -NB_EFORMAT);
}

static void test_upresp_chunk_objects(void **state)
{
	struct nb_upresp_chunk c;
	const char *s;

	(void)state;
	s = "{\"choices\":[{\"delta\":{\"content\":\"Hi \\u00e9\"},\"finish_reason\":null}]}";
	assert_int_equal(nb_upresp_chunk(s, strlen(s), &c), 0);
	assert_string_equal(c.text, "Hi \xc3\xa9");
	assert_int_equal(c.finish, NB_FINISH_NONE);
	free(c.text);
	s = "{\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}";
	assert_int_equal(nb_upresp_chunk(s, strlen(s), &c), 0);
	assert_null(c.text);
	assert_int_equal(c.finish, NB_FINISH_LENGTH);
	s = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7}}";
	assert_int_equal(nb_upresp_chunk(s, strlen(s), &c), 0);
	assert_true(c.has_usage);
	assert_int_equal(c.prompt_tokens, 5);
	assert_int_equal(c.completion_tokens, 7);
	assert_int_equal(nb_upresp_chunk("[DONE]", 6, &c), 0);
	assert_true(c.done);
	s = "{\"error\":{\"message\":\"overloaded\"}}";
	assert_int_equal(nb_upresp_chunk(s, strlen(s), &c), 0);
	assert_true(c.error);
	assert_string_equal(c.text, "overloaded");
	free(c.text);
	assert_int_equal(nb_upresp_chunk("[1,2]", 5, &c), -NB_EFORMAT);
	assert_int_equal(nb_upresp_chunk("{\"a\"", 4, &c), -NB_EFORMAT);
	s = "{\"choices\":[{\"delta\":{\"content\":5}}],\"usage\":{\"prompt_tokens\":-3}}";
	assert_int_equal(nb_upresp_chunk(s, strlen(s), &c), 0); /* wrong types: ignored */
	assert_null(c.text);
	assert_int_equal(c.prompt_tokens, 0);
}

/* ---- model names, pins ---------------------------------------------------------------- */

static void test_cloud_model_map(void **state)
{
	static struct nb_uplink u; /* large: not on the stack */

	(void)state;
	u.o.map[0] = "big=gpt-4o-mini";
	u.o.map[1] = "llama-70b";
	u.o.map[2] = "stories=stories-cloud";
	u.o.n_map = 3;
	assert_string_equal(nb_uplink_cloud_model(&u, "big", "stories"), "gpt-4o-mini");
	assert_string_equal(nb_uplink_cloud_model(&u, "llama-70b", "stories"), "llama-70b");
	assert_string_equal(nb_uplink_cloud_model(&u, NULL, "stories"), "stories-cloud");
	assert_string_equal(nb_uplink_cloud_model(&u, "stories", "stories"), "stories-cloud");
	assert_null(nb_uplink_cloud_model(&u, "bi", "stories")); /* no prefix matches */
	assert_null(nb_uplink_cloud_model(&u, "other", "stories"));
	u.o.n_map = 0;
	assert_string_equal(nb_uplink_cloud_model(&u, NULL, "stories"), "stories");
}

static void test_pins(void **state)
{
	uint8_t pin[32];

	(void)state;
	assert_int_equal(nb_tls_parse_pin("00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF",
					  pin), 0);
	assert_int_equal(pin[0], 0x00);
	assert_int_equal(pin[31], 0xff);
	assert_int_equal(nb_tls_parse_pin("sha256//AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", pin), 0);
	assert_int_equal(pin[31], 31);
	assert_int_equal(nb_tls_parse_pin("0011", pin), -NB_EINVAL);
	assert_int_equal(nb_tls_parse_pin("zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
					  pin), -NB_EINVAL);
	assert_int_equal(nb_tls_parse_pin("AAECAw==", pin), -NB_EINVAL); /* 4 bytes */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_idle_stays_local),
		cmocka_unit_test(test_route_spills),
		cmocka_unit_test(test_route_local_only_never_leaves),
		cmocka_unit_test(test_route_ask_local_and_no_uplink),
		cmocka_unit_test(test_route_cloud_unavailable),
		cmocka_unit_test(test_route_unknown_model_is_local),
		cmocka_unit_test(test_breaker_opens_after_threshold),
		cmocka_unit_test(test_breaker_half_open_one_trial),
		cmocka_unit_test(test_breaker_backoff_doubles_and_caps),
		cmocka_unit_test(test_upresp_chunked_sse),
		cmocka_unit_test(test_upresp_multiline_comments_crlf),
		cmocka_unit_test(test_upresp_until_close_and_interim),
		cmocka_unit_test(test_upresp_cut_is_an_error),
		cmocka_unit_test(test_upresp_malformed),
		cmocka_unit_test(test_upresp_error_status_keeps_body),
		cmocka_unit_test(test_upresp_event_limit),
		cmocka_unit_test(test_upresp_chunk_objects),
		cmocka_unit_test(test_cloud_model_map),
		cmocka_unit_test(test_pins),
	};

	nb_log_set_level(NB_LOG_SILENT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
