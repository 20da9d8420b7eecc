/* nb_llm_context: the one rule for the context of `run` and `serve`. Only
 * the shape of the model and the size of its image matter to it, so a
 * model of any size is a few fields here. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/model/kv.h"
#include "runtime/model/llm.h"
#include "testutil.h"

#include <stdio.h>
#include <string.h>

/* TinyLlama's shape: 22 layers, 4 KV heads of 64, 44 KiB of cache a
 * position; 600 MB of weights. */
static struct nb_llm tinyllama(uint32_t seq_len)
{
	struct nb_llm l;

	memset(&l, 0, sizeof(l));
	l.model.hp.n_layers = 22;
	l.model.hp.n_kv_heads = 4;
	l.model.hp.head_dim = 64;
	l.model.hp.seq_len = seq_len;
	l.img.map_size = 600000000;
	return l;
}

/* What the call logged (stderr), NUL-terminated, in buf. */
struct capture {
	FILE *f;
	int saved;
};

static void capture_begin(struct capture *c)
{
	c->f = tmpfile();
	assert_non_null(c->f);
	fflush(stderr);
	c->saved = dup(2);
	dup2(fileno(c->f), 2);
}

static void capture_end(struct capture *c, char *buf, size_t cap)
{
	size_t n;

	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	rewind(c->f);
	n = fread(buf, 1, cap - 1, c->f);
	buf[n] = '\0';
	fclose(c->f);
}

static void test_explicit_ctx_beyond_the_model(void **state)
{
	struct nb_llm l = tinyllama(512);
	struct capture cap;
	char log[1024];
	uint32_t ctx = 7;

	(void)state;
	capture_begin(&cap);
	assert_int_equal(nb_llm_context(&l, "serve", 100000, 4, UINT64_MAX, &ctx), -NB_EINVAL);
	capture_end(&cap, log, sizeof(log));
	assert_int_equal(ctx, 7);
	/* a usage error naming the option and the model's limit, not the model */
	assert_non_null(strstr(log, "serve: --ctx 100000: this model's context is at most 512"));
	assert_non_null(strstr(log, "see nibble serve --help"));

	assert_int_equal(nb_llm_context(&l, "run", 512, 1, UINT64_MAX, &ctx), 0);
	assert_int_equal(ctx, 512);
	assert_int_equal(nb_llm_context(&l, "run", 1, 1, UINT64_MAX, &ctx), 0);
	assert_int_equal(ctx, 1);
}

static void test_explicit_ctx_beyond_memory(void **state)
{
	struct nb_llm l = tinyllama(2048);
	const uint64_t one = nb_kv_bytes(&l.model.hp, 2048); /* 92 MB */
	struct capture cap;
	char log[1024];
	uint32_t ctx = 0;

	(void)state;
	assert_int_equal(one, 2ull * 22 * 2048 * 4 * 64 * 4);
	capture_begin(&cap);
	assert_int_equal(nb_llm_context(&l, "serve", 2048, 4, 3 * one, &ctx), -NB_ENOMEM);
	capture_end(&cap, log, sizeof(log));
	assert_non_null(strstr(log, "--ctx 2048: 4 KV caches of 92.3 MB do not fit"));
	assert_int_equal(nb_llm_context(&l, "serve", 2048, 4, 4 * one, &ctx), 0);
	assert_int_equal(ctx, 2048);
}

static void test_default_ctx(void **state)
{
	struct nb_llm small = tinyllama(512), big = tinyllama(131072);
	const uint64_t per_pos = nb_kv_bytes(&big.model.hp, 1);
	uint32_t ctx = 0;

	(void)state;
	/* the model's own, when short */
	assert_int_equal(nb_llm_context(&small, "serve", 0, 4, UINT64_MAX, &ctx), 0);
	assert_int_equal(ctx, 512);
	/* at most NB_LLM_CTX_DEFAULT_MAX */
	assert_int_equal(nb_llm_context(&big, "run", 0, 1, UINT64_MAX, &ctx), 0);
	assert_int_equal(ctx, NB_LLM_CTX_DEFAULT_MAX);
	/* what fits half the memory beside the weights: 4 caches of 1000 */
	assert_int_equal(nb_llm_context(&big, "serve", 0, 4,
					 big.img.map_size + 2 * 4 * per_pos * 1000 + 1, &ctx), 0);
	assert_int_equal(ctx, 1000);
	/* not one position */
	assert_int_equal(nb_llm_context(&big, "serve", 0, 4, big.img.map_size, &ctx),
			 -NB_ENOMEM);
	assert_int_equal(nb_llm_context(&big, "serve", 0, 4, 1000, &ctx), -NB_ENOMEM);
	assert_int_equal(ctx, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_explicit_ctx_beyond_the_model),
		cmocka_unit_test(test_explicit_ctx_beyond_memory),
		cmocka_unit_test(test_default_ctx),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
