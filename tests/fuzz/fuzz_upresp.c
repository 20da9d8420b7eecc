/* The uplink's cloud response parser (runtime/server/upresp.h): whatever a
 * peer sends. Two parsers in lockstep, one fed everything at once, one in
 * pieces whose sizes derive from the data; checked: the same result and
 * the same events, every event NUL-terminated at its length and within
 * NB_UPRESP_MAX_EVENT, the error body bounded, and every event's data
 * read as a chunk object without harm. Seeds: tests/fuzz/corpus/fuzz_upresp/. */
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/server/upresp.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                                     \
	do {                                                                         \
		if (!(x)) {                                                          \
			fprintf(stderr, "fuzz_upresp: %s:%d: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                     \
		}                                                                    \
	} while (0)

struct trace {
	uint64_t hash; /* of every event's bytes, in order */
	size_t n;
};

static int on_event(void *arg, const char *d, size_t len)
{
	struct trace *t = arg;
	struct nb_upresp_chunk c;
	int ret;

	CHECK(d[len] == '\0' && len <= NB_UPRESP_MAX_EVENT + 1);
	for (size_t i = 0; i < len; i++)
		t->hash = (t->hash ^ (uint8_t)d[i]) * 0x100000001b3ull;
	t->hash = (t->hash ^ 0xff) * 0x100000001b3ull;
	t->n++;
	ret = nb_upresp_chunk(d, len, &c);
	CHECK(ret == 0 || ret == -NB_EFORMAT || ret == -NB_ENOMEM);
	if (!ret && c.text)
		CHECK(strlen(c.text) == c.text_len);
	CHECK(!(c.done && c.text));
	free(c.text);
	return 0;
}

static int run(const uint8_t *data, size_t size, bool pieces, struct trace *t, int *status)
{
	static struct nb_upresp p; /* 16 KiB of head: not on the fuzzer's stack */
	uint64_t rng = 0x9e3779b97f4a7c15ull ^ size;
	size_t off = 0;
	int ret = 0;

	nb_upresp_init(&p, on_event, t);
	while (!ret && off < size) {
		size_t k = size - off;
		if (pieces) {
			rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
			k = 1 + (size_t)(rng % 9);
			if (k > size - off)
				k = size - off;
		}
		ret = nb_upresp_feed(&p, (const char *)data + off, k);
		off += k;
	}
	if (!ret)
		ret = nb_upresp_eof(&p);
	CHECK(p.err_len <= NB_UPRESP_ERR_BODY && p.err_body[p.err_len] == '\0');
	CHECK(p.head_len < NB_UPRESP_MAX_HEAD);
	*status = p.status;
	nb_upresp_free(&p);
	return ret;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace a = { 0 }, b = { 0 };
	int sa, sb, ra, rb;

	nb_log_set_level(NB_LOG_SILENT);
	ra = run(data, size, false, &a, &sa);
	rb = run(data, size, true, &b, &sb);
	CHECK(ra == 0 || ra == -NB_EFORMAT || ra == -NB_EIO || ra == -NB_ENOMEM);
	CHECK(ra == rb && sa == sb);
	CHECK(a.n == b.n && a.hash == b.hash);
	return 0;
}
