/* `nibble bench`: load time, time to first token, generation speed and
 * resident memory of a model image, each the median of several runs made
 * in this one process. */
#include "runtime/applet.h"
#include "runtime/err.h"
#include "runtime/llm.h"
#include "runtime/log.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_REPS 101

struct bench_opts {
	const char *model;
	uint32_t reps, n_prompt, n_gen;
};

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static long resident_kib(void)
{
	char line[128];
	long kib = 0;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	if (f)
		fclose(f);
	return kib;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, uint32_t n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int32_t argmax(const float *v, uint32_t n)
{
	int32_t best = 0;
	for (uint32_t i = 1; i < n; i++)
		if (v[i] > v[best])
			best = (int32_t)i;
	return best;
}

/* One prompt + greedy generation; times the first token and the rest. */
static int time_generation(const struct nb_llm *l, const struct bench_opts *o, double *ttft,
			   double *tok_s)
{
	const struct nb_hparams *hp = &l->model.hp;
	int32_t *prompt = malloc(o->n_prompt * sizeof(int32_t)), tok;
	struct nb_fwd f;
	float *logits;
	double t0, t1;
	int ret;

	if (!prompt)
		return -NB_ENOMEM;
	/* A fixed, valid prompt: BOS then ids spread over the vocabulary. */
	prompt[0] = nb_tok_bos(l->tok) >= 0 ? nb_tok_bos(l->tok) : 0;
	for (uint32_t i = 1; i < o->n_prompt; i++)
		prompt[i] = (int32_t)((i * 7919u) % hp->vocab_size);
	ret = nb_fwd_open(&f, &l->model, o->n_prompt + o->n_gen);
	if (ret)
		goto out;
	t0 = now_ms();
	ret = nb_fwd_prompt(&f, prompt, o->n_prompt, 0, &logits);
	tok = argmax(logits, hp->vocab_size);
	t1 = now_ms();
	*ttft = t1 - t0;
	for (uint32_t i = 0; !ret && i < o->n_gen; i++) {
		ret = nb_fwd_token(&f, tok, o->n_prompt + i, &logits);
		tok = argmax(logits, hp->vocab_size);
	}
	*tok_s = o->n_gen / ((now_ms() - t1) / 1e3);
	nb_fwd_close(&f);
out:
	free(prompt);
	return ret;
}

static int bench_model(const struct bench_opts *o)
{
	double load[MAX_REPS], ttft[MAX_REPS], speed[MAX_REPS];
	long rss0 = resident_kib(), rss_loaded = 0, rss_gen = 0;
	const struct nb_hparams *hp;
	struct nb_llm l;
	uint64_t kv = 0;
	size_t image_kib = 0;
	int ret = 0;

	for (uint32_t r = 0; !ret && r < o->reps; r++) {
		double t0 = now_ms();
		ret = nb_llm_open(&l, o->model, nb_image_default_flags());
		if (ret)
			return ret;
		load[r] = now_ms() - t0;
		if (r == 0)
			rss_loaded = resident_kib();
		if (o->n_prompt + o->n_gen > l.model.hp.seq_len) {
			nb_err("bench: %u + %u tokens exceed the context of %u", o->n_prompt, o->n_gen,
			       l.model.hp.seq_len);
			ret = -NB_ERANGE;
		}
		if (!ret)
			ret = time_generation(&l, o, &ttft[r], &speed[r]);
		if (r == 0)
			rss_gen = resident_kib();
		image_kib = l.img.map_size / 1024;
		hp = &l.model.hp;
		kv = 2ull * hp->n_layers * (o->n_prompt + o->n_gen) * hp->n_kv_heads * hp->head_dim * 4;
		nb_llm_close(&l);
	}
	if (ret)
		return ret;
	printf("model:       %s (%zu KiB image)\n", o->model, image_kib);
	printf("load:        %.3f ms median of %u (open + mmap + validate + tokenizer + bind, warm cache)\n",
	       median(load, o->reps), o->reps);
	printf("first token: %.2f ms median (%u-token prompt)\n", median(ttft, o->reps), o->n_prompt);
	printf("generation:  %.1f tok/s median (%u tokens, greedy)\n", median(speed, o->reps), o->n_gen);
	printf("resident:    %ld KiB before load, %ld KiB after load, %ld KiB while generating\n",
	       rss0, rss_loaded, rss_gen);
	printf("             growth %ld KiB = %.2f x (image %zu KiB + KV cache %llu KiB)\n",
	       rss_gen - rss0, (double)(rss_gen - rss0) / (double)(image_kib + kv / 1024),
	       image_kib, (unsigned long long)kv / 1024);
	return 0;
}

static int bench_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "reps", required_argument, NULL, 'r' },
		{ "prompt-tokens", required_argument, NULL, 'p' },
		{ "gen-tokens", required_argument, NULL, 'n' }, { NULL, 0, NULL, 0 },
	};
	struct bench_opts o = { .reps = 5, .n_prompt = 32, .n_gen = 128 };
	int c;

	while ((c = getopt_long(argc, argv, "m:r:p:n:", opts, NULL)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'r': o.reps = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'p': o.n_prompt = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'n': o.n_gen = (uint32_t)strtoul(optarg, NULL, 10); break;
		default: return NB_EXIT_USAGE;
		}
	}
	if (!o.model || optind != argc || o.reps < 1 || o.reps > MAX_REPS || o.n_prompt < 1) {
		fprintf(stderr, "%s", nb_applet_bench.usage);
		return NB_EXIT_USAGE;
	}
	return bench_model(&o) ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_bench = {
	.name = "bench",
	.summary = "measure load time, time to first token, speed and memory",
	.usage = "usage: nibble bench -m MODEL.nib [--reps N] [--prompt-tokens N] [--gen-tokens N]\n\n"
		 "Opens the image N times (5) in this process and reports the median load\n"
		 "time, the time to the first token of a prompt (32 tokens), the greedy\n"
		 "generation speed (128 tokens) and the resident memory before load, after\n"
		 "load and while generating, against image size + KV cache.\n",
	.main = bench_main,
};
