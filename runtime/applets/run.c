/* `nibble run`: generate text from a model image, streaming it to stdout. */
#include "runtime/base/sys.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/model/kv.h"
#include "runtime/model/llm.h"
#include "kernels/cpu.h"
#include "runtime/base/log.h"
#include "runtime/model/pool.h"
#include "runtime/model/sampler.h"
#include "runtime/model/stop.h"
#include "runtime/server/governor.h"

#include <getopt.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


#define MAX_PROMPT_BYTES (1u << 20)
#define RUN_MAX_REPEAT_LAST_N 4096u /* as the server's repeat_last_n */

enum { O_TEMP = 256, O_TOPK, O_TOPP, O_MINP, O_REP, O_REPN, O_SEED, O_STOP, O_CTX,
       O_NOECHO, O_NOBOS };

struct run_opts {
	bool governor;             /* run the power/thermal governor, with gov */
	struct nb_govern_opts gov;
	const char *model;
	const char *prompt;
	uint32_t n_predict;
	uint32_t ctx;
	uint32_t threads;
	int echo, add_bos, verbose;
	struct nb_sampler_params sp;
	struct nb_stop stop;
};

static void emit_stdout(void *arg, const char *buf, size_t len)
{
	(void)arg;
	fwrite(buf, 1, len, stdout);
	fflush(stdout);
}

/* The whole of stdin, NUL-terminated, at most MAX_PROMPT_BYTES. */
static char *read_stdin(void)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap), *grown;
	size_t n;

	while (buf && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0) {
		len += n;
		if (len + 1 < cap)
			continue;
		if (cap >= MAX_PROMPT_BYTES) {
			nb_err("run: prompt on stdin is longer than %u bytes", MAX_PROMPT_BYTES);
			free(buf);
			return NULL;
		}
		grown = realloc(buf, cap * 2);
		if (!grown)
			free(buf);
		buf = grown;
		cap *= 2;
	}
	if (buf)
		buf[len] = '\0';
	return buf;
}

/* Every sampling option is checked here, before the model loads, against
 * the ranges nb_sampler_open accepts (and the server's, where it has one). */
static int parse_sampling(struct nb_sampler_params *sp, int c, const char *arg)
{
	unsigned long long seed;
	double v;
	int ret;

	switch (c) {
	case O_TEMP:
		ret = nb_arg_float("run", "--temp", arg, 0, 100, &v);
		sp->temperature = (float)v;
		return ret;
	case O_TOPK: return nb_arg_u32("run", "--top-k", arg, 0, UINT32_MAX, &sp->top_k);
	case O_TOPP:
		ret = nb_arg_interval("run", "--top-p", arg, 0, 1, NB_ARG_ABOVE_MIN, &v);
		sp->top_p = (float)v;
		return ret;
	case O_MINP:
		ret = nb_arg_interval("run", "--min-p", arg, 0, 1, NB_ARG_BELOW_MAX, &v);
		sp->min_p = (float)v;
		return ret;
	case O_REP:
		ret = nb_arg_interval("run", "--repeat-penalty", arg, 0, 100, NB_ARG_ABOVE_MIN, &v);
		sp->repeat_penalty = (float)v;
		return ret;
	case O_REPN:
		return nb_arg_u32("run", "--repeat-last-n", arg, 0, RUN_MAX_REPEAT_LAST_N,
				  &sp->repeat_last_n);
	case O_SEED:
		ret = nb_arg_uint("run", "--seed", arg, 0, UINT64_MAX, &seed);
		sp->seed = seed;
		return ret;
	default: return -NB_EINVAL;
	}
}

static int parse_opts(struct run_opts *o, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },   { "prompt", required_argument, NULL, 'p' },
		{ "n-predict", required_argument, NULL, 'n' }, { "verbose", no_argument, NULL, 'v' },
		{ "temp", required_argument, NULL, O_TEMP }, { "top-k", required_argument, NULL, O_TOPK },
		{ "top-p", required_argument, NULL, O_TOPP }, { "min-p", required_argument, NULL, O_MINP },
		{ "repeat-penalty", required_argument, NULL, O_REP },
		{ "repeat-last-n", required_argument, NULL, O_REPN },
		{ "seed", required_argument, NULL, O_SEED }, { "stop", required_argument, NULL, O_STOP },
		{ "ctx", required_argument, NULL, O_CTX }, { "no-echo", no_argument, NULL, O_NOECHO },
		{ "no-bos", no_argument, NULL, O_NOBOS },    { "threads", required_argument, NULL, 't' },
		NB_GOVERN_OPTIONS,
		{ NULL, 0, NULL, 0 },
	};
	int c, ret = 0;

	while (!ret && (c = nb_getopt("run", argc, argv, "m:p:n:vt:", opts)) != -1) {
		switch (c) {
		case 'm': o->model = optarg; break;
		case 'p': o->prompt = optarg; break;
		case 'n':
			ret = nb_arg_u32("run", "--n-predict", optarg, 1, UINT32_MAX, &o->n_predict);
			break;
		case 'v': o->verbose = 1; break;
		case 't':
			ret = nb_arg_u32("run", "--threads", optarg, 1, CONFIG_MAX_THREADS, &o->threads);
			break;
		case O_CTX: ret = nb_arg_u32("run", "--ctx", optarg, 1, UINT32_MAX, &o->ctx); break;
		case O_NOECHO: o->echo = 0; break;
		case O_NOBOS: o->add_bos = 0; break;
		case O_STOP:
			ret = nb_stop_add(&o->stop, optarg);
			if (ret)
				nb_err("run: --stop: empty, longer than %d bytes, or more than %d of them",
				       NB_STOP_MAX_LEN, NB_STOP_MAX);
			break;
		case '?': return -NB_EINVAL;
		default:
			if (c < NB_GOVERN_O_FIRST || c > NB_GOVERN_O_LAST) {
				ret = parse_sampling(&o->sp, c, optarg);
			} else if (!IS_ENABLED(CONFIG_GOVERNOR)) {
				nb_usage_error("run", "this build has no governor (CONFIG_GOVERNOR)");
				ret = -NB_EINVAL;
			} else {
				ret = nb_govern_parse_opt(&o->gov, &o->governor, "run", c, optarg);
			}
			break;
		}
	}
	if (!ret && optind != argc) {
		nb_usage_error("run", "unexpected argument '%s'", argv[optind]);
		ret = -NB_EINVAL;
	} else if (!ret && !o->model) {
		nb_usage_error("run", "no model (-m MODEL.nib)");
		ret = -NB_EINVAL;
	}
	return ret;
}

struct gen_stats {
	double t_load, t_prompt, t_first, t_gen;
	size_t n_prompt, n_gen;
};

/* The governor of a run: ticked between tokens; its actuators are the
 * pool's active threads and a pause after each token (pacing). */
struct run_gov {
	struct nb_govern g;
	struct nb_pool *pool;
	double duty, owed;
	bool on;
};

static void run_apply(void *arg, const struct nb_gov_out *o)
{
	struct run_gov *rg = arg;

	nb_pool_set_active(rg->pool, o->threads);
	rg->duty = o->duty;
}

/* After a token that took step_s: the governor's tick, then the pause its
 * duty asks for, paid in sleeps of at least 2 ms (as the server's). */
static void run_govern(struct run_gov *rg, double step_s)
{
	struct timespec ts;
	double t;

	if (!IS_ENABLED(CONFIG_GOVERNOR) || !rg->on)
		return;
	nb_govern_poll(&rg->g, nb_sys_now(), 0, true);
	if (rg->duty >= 1) {
		rg->owed = 0;
		return;
	}
	rg->owed += step_s * (1 - rg->duty) / rg->duty;
	if (rg->owed < 0.002)
		return;
	if (rg->owed > 0.25)
		rg->owed = 0.25;
	t = nb_sys_now();
	ts.tv_sec = (time_t)rg->owed;
	ts.tv_nsec = (long)((rg->owed - (double)ts.tv_sec) * 1e9);
	nanosleep(&ts, NULL);
	rg->owed -= nb_sys_now() - t;
}

/* Prompt, then sample until n_predict, EOS, a stop string or a full context. */
static int generate(struct nb_llm *l, struct run_opts *o, struct nb_pool *pool,
		    struct run_gov *rg, const int32_t *ids, size_t n_ids, struct gen_stats *st)
{
	double t_step;
	const uint32_t ctx = o->ctx;
	const struct nb_fwd_opts fo = { .max_ctx = ctx, .pool = pool };
	struct nb_sampler smp;
	struct nb_fwd f;
	float *logits;
	char piece[256];
	int32_t prev = ids[n_ids - 1], tok;
	double t0 = (nb_sys_now() * 1e3);
	int ret;

	ret = nb_fwd_open_opts(&f, &l->model, &fo);
	if (ret)
		return ret;
	ret = nb_sampler_open(&smp, l->img.hp.vocab_size, &o->sp);
	if (ret)
		goto out_fwd;
	for (size_t i = 0; i < n_ids; i++)
		nb_sampler_accept(&smp, ids[i]);
	ret = nb_fwd_prompt(&f, ids, n_ids, 0, &logits);
	st->t_prompt = (nb_sys_now() * 1e3) - t0;
	for (uint32_t pos = (uint32_t)n_ids; !ret && st->n_gen < o->n_predict; pos++) {
		size_t len;

		ret = nb_sampler_sample(&smp, logits, &tok);
		if (ret || tok == nb_tok_eos(l->tok))
			break;
		if (st->n_gen++ == 0)
			st->t_first = (nb_sys_now() * 1e3) - t0;
		nb_sampler_accept(&smp, tok);
		ret = nb_tok_piece(l->tok, prev, tok, piece, sizeof(piece), &len);
		if (ret || nb_stop_feed(&o->stop, piece, len, emit_stdout, NULL))
			break;
		prev = tok;
		if (pos + 1 >= ctx) {
			nb_info("run: context of %u tokens is full", ctx);
			break;
		}
		t_step = nb_sys_now();
		ret = nb_fwd_token(&f, tok, pos, &logits);
		run_govern(rg, nb_sys_now() - t_step);
	}
	nb_stop_flush(&o->stop, emit_stdout, NULL);
	st->t_gen = (nb_sys_now() * 1e3) - t0 - st->t_prompt;
	nb_sampler_close(&smp);
out_fwd:
	nb_fwd_close(&f);
	return ret;
}

static void print_memory(const struct nb_llm *l, uint32_t ctx)
{
	const struct nb_hparams *hp = &l->img.hp;
	uint64_t kv = 2ull * hp->n_layers * ctx * hp->n_kv_heads * hp->head_dim * sizeof(float);
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	fprintf(stderr, "memory: resident %ld KiB (peak %ld KiB); image %zu KiB, KV cache %llu KiB\n",
		nb_sys_resident_kib(), ru.ru_maxrss, l->img.map_size / 1024, (unsigned long long)kv / 1024);
}

static void print_stats(const struct gen_stats *st)
{
	double gen_s = (st->t_gen - (st->t_first - st->t_prompt)) / 1e3;

	fprintf(stderr, "\nload: %.1f ms\n", st->t_load);
	fprintf(stderr, "prompt: %zu tokens in %.1f ms (%.1f tok/s)\n", st->n_prompt, st->t_prompt,
		st->t_prompt > 0 ? st->n_prompt / (st->t_prompt / 1e3) : 0.0);
	fprintf(stderr, "first token: %.1f ms after the prompt was submitted\n", st->t_first);
	fprintf(stderr, "generated: %zu tokens, %.1f tok/s after the first\n", st->n_gen,
		st->n_gen > 1 && gen_s > 0 ? (st->n_gen - 1) / gen_s : 0.0);
}

static int encode_prompt(struct nb_llm *l, const struct run_opts *o, int32_t **ids, size_t *n)
{
	int ret = nb_tok_encode_alloc(l->tok, o->prompt, strlen(o->prompt), o->add_bos, 0, ids, n);

	if (ret == -NB_EFORMAT)
		nb_err("run: the prompt is not valid UTF-8");
	else if (ret)
		nb_err("run: cannot tokenize the prompt: %s", nb_strerror(ret));
	else if (*n == 0) {
		nb_err("run: empty prompt and no BOS token to start from");
		ret = -NB_EINVAL;
	}
	return ret;
}

/* llama.cpp's defaults, which suit small story models too: temperature,
 * top-k, top-p and min-p on; the repetition penalty off (1), so that
 * --temp 0 is the plain argmax, as in the server and llama.cpp. A fresh
 * seed each run unless --seed. */
static void set_default_sampling(struct nb_sampler_params *p)
{
	struct timespec ts;

	nb_sampler_params_default(p);
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->min_p = 0.05f;
	p->repeat_last_n = 64; /* what --repeat-penalty looks at */
	clock_gettime(CLOCK_REALTIME, &ts);
	p->seed = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
}

/* What -v (NIBBLE_LOG=debug) adds: the settings this run really used. */
static void log_settings(const struct nb_llm *l, const struct run_opts *o)
{
	const struct nb_hparams *hp = &l->img.hp;
	const struct nb_sampler_params *sp = &o->sp;

	nb_dbg("run: %s: %u layers, dim %u, vocab %u; context %u, %u threads", o->model,
	       hp->n_layers, hp->dim, hp->vocab_size, o->ctx, o->threads);
	nb_dbg("run: sampling: repeat-penalty %g over %u tokens, temp %g, top-k %u, top-p %g, "
	       "min-p %g, seed %llu", (double)sp->repeat_penalty, sp->repeat_last_n,
	       (double)sp->temperature, sp->top_k, (double)sp->top_p, (double)sp->min_p,
	       (unsigned long long)sp->seed);
}

static int run_main(int argc, char **argv)
{
	struct run_opts o = { .n_predict = 256, .echo = 1, .add_bos = 1 };
	struct gen_stats st = { 0 };
	struct run_gov rg = { 0 };
	struct nb_pool pool;
	struct nb_cpu cpu;
	struct nb_llm l;
	char *stdin_prompt = NULL;
	int32_t *ids = NULL;
	double t0;
	bool usage = false;
	int ret;

	set_default_sampling(&o.sp);
	nb_stop_init(&o.stop);
	nb_cpu_detect(&cpu);
	o.threads = (uint32_t)(cpu.ncpus < CONFIG_MAX_THREADS ? cpu.ncpus : CONFIG_MAX_THREADS);
	if (parse_opts(&o, argc, argv))
		return NB_EXIT_USAGE;
	if (!o.prompt || strcmp(o.prompt, "-") == 0) {
		if (!o.prompt && isatty(STDIN_FILENO))
			o.prompt = "";
		else if (!(o.prompt = stdin_prompt = read_stdin()))
			return NB_EXIT_FAIL;
	}
	t0 = (nb_sys_now() * 1e3);
	if (nb_llm_open(&l, o.model, nb_image_default_flags()))
		goto out_free;
	st.t_load = (nb_sys_now() * 1e3) - t0;
	ret = encode_prompt(&l, &o, &ids, &st.n_prompt);
	if (ret)
		goto out;
	ret = nb_llm_context(&l, "run", o.ctx, 1, nb_sys_mem_available(), &o.ctx);
	usage = ret == -NB_EINVAL; /* --ctx beyond the model's context */
	if (ret)
		goto out;
	if (st.n_prompt >= o.ctx) {
		nb_err("run: the prompt is %zu tokens, the context holds %u", st.n_prompt, o.ctx);
		ret = -NB_ERANGE;
		goto out;
	}
	log_settings(&l, &o);
	ret = nb_pool_open(&pool, o.threads, NULL);
	if (ret)
		goto out;
	rg.pool = &pool;
	rg.duty = 1;
	if (IS_ENABLED(CONFIG_GOVERNOR) && o.governor) {
		ret = nb_govern_open(&rg.g, &o.gov, o.threads, 1);
		if (ret) {
			nb_pool_close(&pool);
			goto out;
		}
		nb_govern_set_apply(&rg.g, run_apply, &rg);
		rg.on = true;
	}
	if (o.echo)
		emit_stdout(NULL, o.prompt, strlen(o.prompt));
	ret = generate(&l, &o, &pool, &rg, ids, st.n_prompt, &st);
	if (IS_ENABLED(CONFIG_GOVERNOR) && rg.on)
		nb_govern_close(&rg.g);
	nb_pool_close(&pool);
	printf("\n");
	if (ret)
		nb_err("run: generation failed: %s", nb_strerror(ret));
	else if (o.verbose) {
		print_stats(&st);
		print_memory(&l, o.ctx);
		fprintf(stderr, "seed: %llu, threads: %u\n", (unsigned long long)o.sp.seed, o.threads);
	}
out:
	nb_llm_close(&l);
	free(ids);
	free(stdin_prompt);
	return usage ? NB_EXIT_USAGE : ret ? NB_EXIT_FAIL : NB_EXIT_OK;
out_free:
	free(stdin_prompt);
	return NB_EXIT_FAIL;
}

const struct nb_applet nb_applet_run = {
	.name = "run",
	.summary = "generate text from a model image",
	.usage = "usage: nibble run -m MODEL.nib [-p PROMPT | -p - | < prompt.txt] [options]\n\n"
		 "Streams the continuation of the prompt to stdout (the prompt is echoed\n"
		 "first unless --no-echo). Without -p, the prompt is read from stdin when\n"
		 "it is not a terminal. Stops at -n tokens, the end-of-sequence token, a stop\n"
		 "string, or a full context.\n\n"
		 "  -m, --model FILE        model image (.nib)\n"
		 "  -p, --prompt TEXT       prompt; '-' reads stdin\n"
		 "  -n, --n-predict N       tokens to generate, 1 or more (256)\n"
		 "      --temp T            temperature 0..100; 0 = greedy (0.8)\n"
		 "      --top-k K           keep the K most likely tokens; 0 = off (40)\n"
		 "      --top-p P           nucleus sampling mass in (0, 1]; 1 = off (0.95)\n"
		 "      --min-p P           drop tokens below P x the most likely, P in [0, 1);\n"
		 "                          0 = off (0.05)\n"
		 "      --repeat-penalty R  penalize recent tokens, R in (0, 100]; 1 = off (1)\n"
		 "      --repeat-last-n N   how many recent tokens, 0..4096; 0 = off (64)\n"
		 "      --seed N            0..2^64-1; the same seed gives the same text (random)\n"
		 "      --stop STR          stop before STR (repeatable, up to 8)\n"
		 "      --ctx N             context length (the model's, at most 2048 and what\n"
		 "                          memory holds); its KV cache is allocated whole at start\n"
		 "      --no-echo           do not print the prompt\n"
		 "      --no-bos            do not start with the BOS token\n"
		 "  -t, --threads N         worker threads (the CPUs, at most "
		 NB_KCONFIG_STR(CONFIG_MAX_THREADS) ")\n"
		 "  -v, --verbose           print load time, time to first token, tokens/s\n\n"
		 NB_GOVERN_USAGE "\n"
		 "Sampling applies, in this order: the repetition penalty (a recent token's\n"
		 "positive logit divided by R, a negative one multiplied), then --temp 0 takes\n"
		 "the most likely token (the lowest id on ties); else temperature, top-k,\n"
		 "softmax, top-p, min-p, and a draw. With the defaults, --temp 0 is plain\n"
		 "greedy decoding. `nibble -v run` also logs the settings used.\n",
	.main = run_main,
};
