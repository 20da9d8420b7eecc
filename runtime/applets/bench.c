/* `nibble bench`: load time, time to first token, generation speed and
 * resident memory of a model image, each the median of several runs made
 * in this one process. */
#include "runtime/base/sys.h"
#include "kernels/kernels.h"
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/model/llm.h"
#include "runtime/base/log.h"
#include "runtime/model/pool.h"
#include "tools/import/image_write.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>


#define MAX_REPS 101

struct bench_opts {
	const char *model;
	const char *synthetic; /* shape name, or NULL */
	const char *out;       /* where the synthetic image goes */
	uint32_t qtype;
	uint32_t reps, n_prompt, n_gen, max_threads;
};

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
	t0 = (nb_sys_now() * 1e3);
	ret = nb_fwd_prompt(&f, prompt, o->n_prompt, 0, &logits);
	tok = nb_llm_argmax(logits, hp->vocab_size);
	t1 = (nb_sys_now() * 1e3);
	*ttft = t1 - t0;
	for (uint32_t i = 0; !ret && i < o->n_gen; i++) {
		ret = nb_fwd_token(&f, tok, o->n_prompt + i, &logits);
		tok = nb_llm_argmax(logits, hp->vocab_size);
	}
	*tok_s = o->n_gen / (((nb_sys_now() * 1e3) - t1) / 1e3);
	nb_fwd_close(&f);
out:
	free(prompt);
	return ret;
}

/* An image this run just wrote (--synthetic) is unsigned: a board build,
 * which refuses unsigned images, still benchmarks its own. */
static int bench_open(struct nb_llm *l, const struct bench_opts *o)
{
	struct nb_trust t;
	int ret = nb_trust_default(&t);

	if (ret)
		return ret;
	if (o->synthetic)
		t.require_signature = false;
	ret = nb_llm_open_trusted(l, o->model, nb_image_default_flags(), &t);
	nb_trust_free(&t);
	return ret;
}

static int bench_model(const struct bench_opts *o)
{
	double load[MAX_REPS], ttft[MAX_REPS], speed[MAX_REPS];
	long rss0 = nb_sys_resident_kib(), rss_loaded = 0, rss_gen = 0;
	const struct nb_hparams *hp;
	struct nb_llm l;
	uint64_t kv = 0;
	size_t image_kib = 0;
	int ret = 0;

	for (uint32_t r = 0; !ret && r < o->reps; r++) {
		double t0 = (nb_sys_now() * 1e3);
		ret = bench_open(&l, o);
		if (ret)
			return ret;
		load[r] = (nb_sys_now() * 1e3) - t0;
		if (r == 0)
			rss_loaded = nb_sys_resident_kib();
		if (o->n_prompt + o->n_gen > l.model.hp.seq_len) {
			nb_err("bench: %u + %u tokens exceed the context of %u", o->n_prompt, o->n_gen,
			       l.model.hp.seq_len);
			ret = -NB_ERANGE;
		}
		if (!ret)
			ret = time_generation(&l, o, &ttft[r], &speed[r]);
		if (r == 0)
			rss_gen = nb_sys_resident_kib();
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

/* ---- synthetic models ------------------------------------------------- */

struct shape {
	const char *name;
	uint32_t dim, hidden, layers, heads, kv_heads, vocab, seq;
};

static const struct shape shapes[] = {
	{ "tinyllama", 2048, 5632, 22, 32, 4, 32000, 2048 },   /* TinyLlama-1.1B */
	{ "smollm-135m", 576, 1536, 30, 9, 3, 49152, 2048 },   /* SmolLM-135M */
	{ "stories260k", 64, 172, 5, 8, 4, 512, 512 },         /* the bundled model */
	{ "llama-3.2-1b", 2048, 8192, 16, 32, 8, 128256, 4096 }, /* Llama-3.2-1B */
};

static const struct shape *find_shape(const char *name)
{
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		if (strcmp(shapes[i].name, name) == 0)
			return &shapes[i];
	return NULL;
}

/* A SentencePiece-like vocabulary: 3 specials, 256 bytes, then "t<i>". */
static int synthetic_tokenizer(struct nb_tok_spec *s, uint32_t vocab)
{
	char piece[16];
	size_t used = 0;

	nb_tok_spec_init(s);
	s->kind = NB_TOK_SPM;
	s->flags = NB_TOK_FLAG_ADD_BOS | NB_TOK_FLAG_ADD_SPACE_PREFIX | NB_TOK_FLAG_BYTE_FALLBACK;
	s->n_vocab = vocab;
	s->unk_id = 0;
	s->bos_id = 1;
	s->eos_id = 2;
	s->pad_id = -1;
	s->text = malloc((size_t)vocab * 12);
	s->offsets = malloc(((size_t)vocab + 1) * sizeof(uint32_t));
	s->scores = malloc((size_t)vocab * sizeof(float));
	s->types = malloc(vocab);
	if (!s->text || !s->offsets || !s->scores || !s->types)
		return -NB_ENOMEM;
	for (uint32_t i = 0; i < vocab; i++) {
		int n = i == 0 ? snprintf(piece, sizeof(piece), "<unk>")
			: i == 1 ? snprintf(piece, sizeof(piece), "<s>")
			: i == 2 ? snprintf(piece, sizeof(piece), "</s>")
			: i < 259 ? snprintf(piece, sizeof(piece), "<0x%02X>", i - 3)
			: snprintf(piece, sizeof(piece), "t%u", i);
		s->offsets[i] = (uint32_t)used;
		memcpy(s->text + used, piece, (size_t)n);
		used += (size_t)n;
		s->scores[i] = -(float)i;
		s->types[i] = i == 0 ? NB_PIECE_UNKNOWN : i < 3 ? NB_PIECE_CONTROL
			      : i < 259 ? NB_PIECE_BYTE : NB_PIECE_NORMAL;
	}
	s->offsets[vocab] = (uint32_t)used;
	return 0;
}

/* Random levels and small scales: activations stay finite through every
 * layer (RMSNorm renormalizes), so the run takes the ordinary path. */
static void fill_random(uint8_t *p, uint64_t n, uint64_t *state)
{
	uint64_t x = *state;

	for (uint64_t i = 0; i + 8 <= n; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
	*state = x;
}

static void fix_scales(uint32_t type, uint8_t *data, uint64_t bytes, uint32_t cols)
{
	const struct nb_qinfo *qi = nb_qinfo(type);
	const nb_f16 d = nb_f32_to_f16(0.25f / (float)cols);
	(void)cols;

	for (uint64_t off = 0; off + qi->block_size <= bytes; off += qi->block_size)
		for (uint32_t r = 0; r < NB_QROWS; r++)
			nb_qblock_put_scale(data + off, r, d);
}

struct synth {
	struct nb_hparams hp;
	struct nb_tok_spec tok;
	struct nb_tensor t[4 + 9 * 128];
	char names[4 + 9 * 128][NB_TENSOR_NAME_MAX];
	size_t n;
};

static int add_synth_tensor(struct synth *sy, const char *name, uint32_t type, uint64_t rows,
			    uint64_t cols, uint64_t *rng)
{
	struct nb_tensor *t = &sy->t[sy->n];
	uint64_t bytes;
	void *data;

	if (cols == 0) { /* a norm vector: ones */
		float *v = malloc(rows * sizeof(float));
		if (!v)
			return -NB_ENOMEM;
		for (uint64_t i = 0; i < rows; i++)
			v[i] = 1.0f;
		data = v;
		bytes = rows * sizeof(float);
		type = NB_DTYPE_F32;
	} else {
		if (nb_qtensor_bytes(type, rows, cols, &bytes) || !(data = malloc(bytes + 8)))
			return -NB_ENOMEM;
		fill_random(data, bytes + 8 - (bytes + 8) % 8, rng);
		fix_scales(type, data, bytes, (uint32_t)cols);
	}
	snprintf(sy->names[sy->n], NB_TENSOR_NAME_MAX, "%s", name);
	*t = (struct nb_tensor){ .name = sy->names[sy->n], .type = type, .ndim = cols ? 2 : 1,
				 .shape = { rows, cols }, .data = data, .size = bytes };
	sy->n++;
	return 0;
}

static int build_synth(struct synth *sy, const struct shape *sh, uint32_t type)
{
	const uint32_t hd = sh->dim / sh->heads;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	char name[NB_TENSOR_NAME_MAX];
	int ret;

	sy->hp = (struct nb_hparams){ .arch = NB_ARCH_LLAMA, .dim = sh->dim, .hidden_dim = sh->hidden,
				      .n_layers = sh->layers, .n_heads = sh->heads,
				      .n_kv_heads = sh->kv_heads, .head_dim = hd,
				      .vocab_size = sh->vocab, .seq_len = sh->seq,
				      .norm_eps = 1e-5f, .rope_theta = 10000.0f };
	ret = synthetic_tokenizer(&sy->tok, sh->vocab);
	if (!ret)
		ret = add_synth_tensor(sy, "token_embd.weight", type, sh->vocab, sh->dim, &rng);
	for (uint32_t l = 0; !ret && l < sh->layers; l++) {
		static const char *const kinds[] = { "attn_norm", "attn_q", "attn_k", "attn_v",
						     "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
						     "ffn_down" };
		const uint64_t rows[] = { sh->dim, (uint64_t)sh->heads * hd, (uint64_t)sh->kv_heads * hd,
					  (uint64_t)sh->kv_heads * hd, sh->dim, sh->dim, sh->hidden,
					  sh->hidden, sh->dim };
		const uint64_t cols[] = { 0, sh->dim, sh->dim, sh->dim, (uint64_t)sh->heads * hd, 0,
					  sh->dim, sh->dim, sh->hidden };
		for (int k = 0; !ret && k < 9; k++) {
			snprintf(name, sizeof(name), "blk.%u.%s.weight", l, kinds[k]);
			ret = add_synth_tensor(sy, name, type, rows[k], cols[k], &rng);
		}
	}
	if (!ret)
		ret = add_synth_tensor(sy, "output_norm.weight", type, sh->dim, 0, &rng);
	if (!ret)
		ret = add_synth_tensor(sy, "output.weight", type, sh->vocab, sh->dim, &rng);
	return ret;
}

static void free_synth(struct synth *sy)
{
	for (size_t i = 0; i < sy->n; i++)
		free((void *)sy->t[i].data);
	nb_tok_spec_free(&sy->tok);
}

static int write_synthetic(const struct bench_opts *o, const struct shape *sh)
{
	struct synth *sy = calloc(1, sizeof(*sy));
	const struct nb_image_kv meta[] = { { "name", sh->name },
					    { "source", "nibble bench --synthetic (random weights)" },
					    { "quantization", nb_qinfo(o->qtype)->name },
					    { "license", "none: random weights" } };
	double t0 = (nb_sys_now() * 1e3);
	int ret;

	if (!sy)
		return -NB_ENOMEM;
	ret = build_synth(sy, sh, o->qtype);
	if (!ret)
		ret = nb_image_write(o->out, &(struct nb_image_spec){
			.hp = &sy->hp, .tok = &sy->tok, .model_version = 1, .meta = meta, .n_meta = 4,
			.tensors = sy->t, .n_tensors = sy->n });
	free_synth(sy);
	free(sy);
	if (!ret)
		printf("synthetic:   %s, %s, random weights, written in %.1f s\n", sh->name,
		       nb_qinfo(o->qtype)->name, ((nb_sys_now() * 1e3) - t0) / 1e3);
	return ret;
}

#define SPEED_REPS 7

/* ---- memory bandwidth ---------------------------------------------------- */

/* Wide loads, four independent sums: what a streaming read can reach on
 * this machine, the bound the kernels are measured against. Anything that
 * holds the probe back would flatter the ratio, and what does differs by
 * core. The widest loads the CPU has matter: on an Intel core 128-bit
 * loads reached 25 GB/s where 256- and 512-bit ones reached 32, and a
 * scalar loop 26. So the loop is compiled once per x86 vector width (GCC
 * vector extension: the same source becomes SSE2, AVX2 or AVX-512 code,
 * NEON on aarch64) and run at the widest. Software prefetch helped that
 * core and cost an AMD Zen 5 core a sixth (30 against 36 GB/s) at 4 KiB
 * ahead into L1: the loop runs with and without it, and the faster
 * counts; and it prefetches as the AVX-512 kernels do (8 KiB ahead, into
 * L2: kernels/x86_mmq.h), else the kernels could outrun their bound --
 * at 4 KiB into L1 one Zen 5 core generated at 101% of the probe's
 * roofline. */
typedef uint64_t bw_vec __attribute__((vector_size(64)));
#define BW_PREFETCH 8192 /* bytes ahead */

#define BW_SUM_FN(name, attr, prefetch)                                            \
	static attr uint64_t name(const bw_vec *v, uint64_t lo, uint64_t hi)      \
	{                                                                         \
		bw_vec s0 = { 0 }, s1 = { 0 }, s2 = { 0 }, s3 = { 0 };            \
		for (uint64_t i = lo; i + 4 <= hi; i += 4) {                      \
			for (int c = 0; prefetch && c < 4; c++)                   \
				__builtin_prefetch((const char *)(v + i + c) + BW_PREFETCH, 0, 2); \
			s0 += v[i];                                               \
			s1 += v[i + 1];                                           \
			s2 += v[i + 2];                                           \
			s3 += v[i + 3];                                           \
		}                                                                 \
		s0 += s1 + s2 + s3;                                               \
		return s0[0] + s0[1] + s0[2] + s0[3] + s0[4] + s0[5] + s0[6] + s0[7]; \
	}
typedef uint64_t (*bw_sum_fn)(const bw_vec *v, uint64_t lo, uint64_t hi);
BW_SUM_FN(bw_sum_pf, , 1)
BW_SUM_FN(bw_sum, , 0)
#if defined(__x86_64__)
BW_SUM_FN(bw_sum_avx2_pf, __attribute__((target("avx2"))), 1)
BW_SUM_FN(bw_sum_avx2, __attribute__((target("avx2"))), 0)
BW_SUM_FN(bw_sum_avx512_pf, __attribute__((target("avx512f"))), 1)
BW_SUM_FN(bw_sum_avx512, __attribute__((target("avx512f"))), 0)
#endif

struct bw {
	const bw_vec *buf;
	uint64_t n; /* vectors */
	bw_sum_fn sum[2]; /* with, without software prefetch */
	bw_sum_fn run;    /* the one this pass runs */
	uint64_t sums[CONFIG_MAX_THREADS];
};

static void bw_worker(void *arg, unsigned ith, unsigned nth)
{
	struct bw *b = arg;
	uint64_t lo, hi;

	nb_pool_split_aligned(b->n, 4, ith, nth, &lo, &hi);
	b->sums[ith] = b->run(b->buf, lo, hi);
}

/* A 1 GiB buffer, read whole by each pass: far beyond the caches. In huge
 * pages where the kernel has them, as the image's mapping (the TLB misses
 * of small pages would hold the probe back, not the kernels). */
static int bw_open(struct bw *b, const struct nb_cpu *cpu)
{
	const uint64_t bytes = 1ull << 30;
	bw_vec *buf = aligned_alloc(2u << 20, bytes);

	*b = (struct bw){ .n = bytes / sizeof(bw_vec), .sum = { bw_sum_pf, bw_sum }, .buf = buf };
	if (!buf) {
		nb_err("bench: cannot allocate 1 GiB for the bandwidth probe");
		return -NB_ENOMEM;
	}
	madvise(buf, bytes, MADV_HUGEPAGE); /* advice: without it, small pages */
#if defined(__x86_64__)
	if (cpu->features & NB_CPU_AVX512VNNI) { /* implies AVX512F with the OS saving ZMM */
		b->sum[0] = bw_sum_avx512_pf;
		b->sum[1] = bw_sum_avx512;
	} else if (cpu->features & NB_CPU_AVX2) {
		b->sum[0] = bw_sum_avx2_pf;
		b->sum[1] = bw_sum_avx2;
	}
#else
	(void)cpu;
#endif
	memset(buf, 1, bytes);
	return 0;
}

static void bw_close(struct bw *b)
{
	free((void *)b->buf);
}

/* The bandwidth over a window of at least the given seconds (whole
 * passes over the buffer with the pool's threads), for each loop (with and
 * without prefetch): the faster, in bytes/s. */
static double bw_sample(struct bw *b, struct nb_pool *pool, double seconds)
{
	double best = 0;

	for (int i = 0; i < 2; i++) {
		double t0 = nb_sys_now(), t, r;
		uint64_t passes = 0;
		b->run = b->sum[i];
		do {
			nb_pool_run(pool, bw_worker, b);
			passes++;
			t = nb_sys_now() - t0;
		} while (t < seconds);
		r = passes * b->n * sizeof(bw_vec) / t;
		best = r > best ? r : best;
	}
	return best;
}

/* Bytes a decode step streams: every matrix but the embedding table (one
 * row of it), plus the norm vectors. */
static uint64_t bytes_per_token(const struct nb_llm *l)
{
	uint64_t sum = 0;

	for (uint32_t i = 0; i < l->img.n_tensors; i++) {
		const struct nb_tensor *t = &l->img.tensors[i];
		sum += t == l->model.token_embd && t != l->model.output ? t->size / t->shape[0] : t->size;
	}
	return sum;
}

/* Bytes of KV cache a decode step reads, averaged over the generated
 * positions: the keys and values of every position up to its own. */
static uint64_t kv_bytes_per_token(const struct nb_hparams *hp, const struct bench_opts *o)
{
	uint64_t per_pos = nb_kv_bytes(hp, 1);

	return per_pos * (2ull * o->n_prompt + o->n_gen + 1) / 2;
}

/* What speed() measured: medians over the reps, and generation against
 * the roofline pair by pair. */
struct speed_result {
	double pp, gen;   /* tok/s */
	double bw;        /* bytes/s; 0 without a probe */
	double ratio, ratio_lo, ratio_hi; /* gen / (bw / bytes per token): median, min, max */
};

static double spread_of(const double *v, uint32_t n, double *lo, double *hi)
{
	double s[MAX_REPS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmp_double);
	*lo = s[0];
	*hi = s[n - 1];
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* Prompt processing and generation speed with these kernels and threads,
 * over reps runs. With a probe, the bandwidth is sampled after each
 * generation, over a window as long as it took, so that generations and
 * probes alternate (G0 P0 G1 P1 ...), and each generation is paired with
 * the mean of the probes on either side of it (P0 alone for G0): its
 * roofline ratio is taken against the bandwidth of the same seconds, and
 * a drift of the machine's bandwidth during the pair cancels to first
 * order. The ratios' median and spread are reported: a best generation
 * and a best bandwidth, each from other seconds, drift apart on a machine
 * whose bandwidth moves by a fifth from minute to minute, and put the
 * ratio above 100%. */
static int speed(const struct nb_llm *l, const struct nb_kernels *k, struct nb_pool *pool,
		 const struct bench_opts *o, int reps, struct bw *probe, uint64_t per_tok,
		 struct speed_result *res)
{
	const uint32_t vocab = l->model.hp.vocab_size, ctx = o->n_prompt + o->n_gen;
	const struct nb_fwd_opts fo = { .max_ctx = ctx, .max_batch = 64, .pool = pool, .kernels = k };
	int32_t *prompt = malloc(o->n_prompt * sizeof(int32_t)), tok;
	double pp[MAX_REPS], gen[MAX_REPS], bw[MAX_REPS], ratio[MAX_REPS], after = 0, lo, hi;
	struct nb_fwd f;
	float *lg;
	double t0;
	int ret, n = 0;

	if (!prompt)
		return -NB_ENOMEM;
	for (uint32_t i = 0; i < o->n_prompt; i++)
		prompt[i] = (int32_t)((i * 7919u + 3) % vocab);
	ret = nb_fwd_open_opts(&f, &l->model, &fo);
	if (ret)
		goto out;
	for (int rep = 0; !ret && rep < reps && rep < MAX_REPS; rep++) {
		t0 = nb_sys_now();
		ret = nb_fwd_prompt(&f, prompt, o->n_prompt, 0, &lg);
		pp[rep] = o->n_prompt / (nb_sys_now() - t0);
		tok = nb_llm_argmax(lg, vocab);
		t0 = nb_sys_now();
		for (uint32_t i = 0; !ret && i < o->n_gen; i++) {
			ret = nb_fwd_token(&f, tok, o->n_prompt + i, &lg);
			tok = nb_llm_argmax(lg, vocab);
		}
		t0 = nb_sys_now() - t0;
		gen[rep] = o->n_gen / t0;
		if (probe) {
			double before = after;
			after = bw_sample(probe, pool, t0);
			bw[rep] = rep ? (before + after) / 2 : after;
			ratio[rep] = gen[rep] * (double)per_tok / bw[rep];
		}
		n++;
	}
	nb_fwd_close(&f);
	if (!ret && n) {
		*res = (struct speed_result){ .pp = spread_of(pp, n, &lo, &hi),
					      .gen = spread_of(gen, n, &lo, &hi) };
		if (probe) {
			res->bw = spread_of(bw, n, &lo, &hi);
			res->ratio = spread_of(ratio, n, &res->ratio_lo, &res->ratio_hi);
		}
	}
out:
	free(prompt);
	return ret;
}

static int bench_speed(const struct bench_opts *o)
{
	const struct nb_kernels *best;
	struct nb_cpu cpu;
	struct nb_llm l;
	struct nb_pool pool;
	struct bw probe;
	struct speed_result r, sc;
	uint64_t per_tok, kv_tok;
	double gen1 = 0, over = 0;
	uint32_t over_t = 0;
	long rss;
	int ret;

	nb_cpu_detect(&cpu);
	best = nb_kernels_select(&cpu, NULL);
	ret = bench_open(&l, o);
	if (ret)
		return ret;
	per_tok = bytes_per_token(&l);
	kv_tok = kv_bytes_per_token(&l.model.hp, o);
	printf("model:       %s: dim %u, hidden %u, %u layers, %u/%u heads, vocab %u\n", o->model,
	       l.model.hp.dim, l.model.hp.hidden_dim, l.model.hp.n_layers, l.model.hp.n_heads,
	       l.model.hp.n_kv_heads, l.model.hp.vocab_size);
	printf("image:       %.1f MB; read per generated token: %.1f MB of weights + %.1f MB of KV cache (mean)\n",
	       l.img.map_size / 1e6, per_tok / 1e6, kv_tok / 1e6);
	per_tok += kv_tok;
	ret = bw_open(&probe, &cpu);
	if (ret)
		goto out;
	printf("kernels:     %s; %u-token prompt, %u generated tokens; medians of %d runs, each\n"
	       "             generation paired with the bandwidth read around it\n",
	       best->name, o->n_prompt, o->n_gen, SPEED_REPS);
	printf("threads  read GB/s  pp tok/s  gen tok/s  roofline tok/s  gen/roofline (min-max)  pp/gen\n");
	for (uint32_t t = 1; !ret && t <= o->max_threads; t++) {
		ret = nb_pool_open(&pool, t, NULL);
		if (ret)
			break;
		ret = speed(&l, best, &pool, o, SPEED_REPS, &probe, per_tok, &r);
		if (t == 1)
			gen1 = r.gen;
		nb_pool_close(&pool);
		if (ret)
			break;
		printf("%7u  %9.1f  %8.1f  %9.2f  %14.2f  %11.0f%% (%.0f-%.0f%%)  %6.1fx\n", t,
		       r.bw / 1e9, r.pp, r.gen, r.bw / per_tok, 100 * r.ratio, 100 * r.ratio_lo,
		       100 * r.ratio_hi, r.pp / r.gen);
		if (r.ratio_hi > 1.005 && r.ratio_hi > over) {
			over = r.ratio_hi;
			over_t = t;
		}
	}
	/* a ratio above 100% is a measurement error, never a result */
	if (!ret && over > 0)
		printf("note:        a ratio above 100%% (up to %.0f%% at %u threads) means the bandwidth\n"
		       "             probe read slower than the model streamed its weights in the same\n"
		       "             seconds: the probe under-reads on this machine, and the roofline\n"
		       "             is a lower bound here, not the model's speed limit\n",
		       100 * over, over_t);
	bw_close(&probe); /* before reading the resident set: it is 1 GiB */
	rss = nb_sys_resident_kib();
	if (!ret && best != &nb_kernels_scalar) {
		struct bench_opts short_run = *o;
		short_run.n_prompt = 8;
		short_run.n_gen = 4;
		ret = speed(&l, &nb_kernels_scalar, NULL, &short_run, 1, NULL, per_tok, &sc);
		if (!ret)
			printf("scalar reference, 1 thread: gen %.2f tok/s -> %s is %.1fx the scalar reference\n",
			       sc.gen, best->name, gen1 / sc.gen);
	}
	if (!ret)
		printf("resident:    %.1f MB while generating = %.2f x (image %.1f MB + KV cache %.1f MB)\n",
		       rss / 1024.0, rss * 1024.0 / (l.img.map_size + nb_kv_bytes(&l.model.hp, o->n_prompt + o->n_gen)),
		       l.img.map_size / 1e6, nb_kv_bytes(&l.model.hp, o->n_prompt + o->n_gen) / 1e6);
out:
	nb_llm_close(&l);
	return ret;
}

static int bench_synthetic(struct bench_opts *o)
{
	const struct shape *sh = find_shape(o->synthetic);
	char path[256];
	int ret;

	if (!sh) {
		nb_err("bench: unknown shape '%s' (tinyllama, smollm-135m, stories260k, llama-3.2-1b)",
		       o->synthetic);
		return -NB_EINVAL;
	}
	if (!o->out) {
		const char *dir = getenv("TMPDIR");
		snprintf(path, sizeof(path), "%s/nibble-synthetic-%s.nib", dir ? dir : "/tmp", sh->name);
		o->out = path;
	}
	ret = write_synthetic(o, sh);
	o->model = o->out;
	if (!ret)
		ret = bench_speed(o);
	if (o->out == path)
		unlink(path);
	return ret;
}

/* --reps, --prompt-tokens, --gen-tokens, --threads: whole numbers in range. */
static int bench_count(int opt, const char *arg, struct bench_opts *o)
{
	unsigned long long v;
	int ret;

	switch (opt) {
	case 'r':
		ret = nb_arg_uint("bench", "--reps", arg, 1, MAX_REPS, &v);
		o->reps = (uint32_t)v;
		break;
	case 'p':
		ret = nb_arg_uint("bench", "--prompt-tokens", arg, 1, 1u << 20, &v);
		o->n_prompt = (uint32_t)v;
		break;
	case 'n':
		ret = nb_arg_uint("bench", "--gen-tokens", arg, 1, 1u << 20, &v);
		o->n_gen = (uint32_t)v;
		break;
	default:
		ret = nb_arg_uint("bench", "--threads", arg, 1, CONFIG_MAX_THREADS, &v);
		o->max_threads = (uint32_t)v;
		break;
	}
	return ret;
}

static int bench_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' }, { "reps", required_argument, NULL, 'r' },
		{ "prompt-tokens", required_argument, NULL, 'p' },
		{ "gen-tokens", required_argument, NULL, 'n' },
		{ "synthetic", required_argument, NULL, 's' }, { "type", required_argument, NULL, 'T' },
		{ "threads", required_argument, NULL, 't' }, { "out", required_argument, NULL, 'o' },
		{ "speed", no_argument, NULL, 'S' }, { "write-only", no_argument, NULL, 'W' },
		{ NULL, 0, NULL, 0 },
	};
	struct bench_opts o = { .reps = 5, .n_prompt = 0, .n_gen = 0, .qtype = NB_QTYPE_Q4_G32 };
	struct nb_cpu cpu;
	int c, speed_only = 0, write_only = 0;

	nb_cpu_detect(&cpu);
	o.max_threads = (uint32_t)(cpu.ncpus < CONFIG_MAX_THREADS ? cpu.ncpus : CONFIG_MAX_THREADS);
	while ((c = nb_getopt("bench", argc, argv, "m:r:p:n:s:t:o:", opts)) != -1) {
		switch (c) {
		case 'm': o.model = optarg; break;
		case 'r':
		case 'p':
		case 'n':
		case 't':
			if (bench_count(c, optarg, &o))
				return NB_EXIT_USAGE;
			break;
		case 's':
			o.synthetic = optarg;
			if (!find_shape(optarg)) {
				nb_err("bench: --synthetic: '%s' is not one of tinyllama, smollm-135m, "
				       "stories260k, llama-3.2-1b", optarg);
				return NB_EXIT_USAGE;
			}
			break;
		case 'o': o.out = optarg; break;
		case 'S': speed_only = 1; break;
		case 'W': write_only = 1; break;
		case 'T':
			o.qtype = nb_qtype_by_name(optarg);
			if (!o.qtype) {
				nb_err("bench: --type: '%s' is not one of %s", optarg, nb_qtype_names());
				return NB_EXIT_USAGE;
			}
			break;
		default: return NB_EXIT_USAGE;
		}
	}
	if (optind != argc)
		return nb_usage_error("bench", "unexpected argument '%s'", argv[optind]);
	if (!o.model && !o.synthetic)
		return nb_usage_error("bench", "no model (-m MODEL.nib or --synthetic SHAPE)");
	if (write_only && !(o.synthetic && o.out))
		return nb_usage_error("bench", "--write-only needs --synthetic and --out");
	if (write_only)
		return write_synthetic(&o, find_shape(o.synthetic)) ? NB_EXIT_FAIL : NB_EXIT_OK;
	if (o.synthetic || speed_only) {
		o.n_prompt = o.n_prompt ? o.n_prompt : 128;
		o.n_gen = o.n_gen ? o.n_gen : 32;
		return (o.synthetic ? bench_synthetic(&o) : bench_speed(&o)) ? NB_EXIT_FAIL : NB_EXIT_OK;
	}
	o.n_prompt = o.n_prompt ? o.n_prompt : 32;
	o.n_gen = o.n_gen ? o.n_gen : 128;
	return bench_model(&o) ? NB_EXIT_FAIL : NB_EXIT_OK;
}

const struct nb_applet nb_applet_bench = {
	.name = "bench",
	.summary = "measure load time, time to first token, speed and memory",
	.usage = "usage: nibble bench -m MODEL.nib [--reps N] [--prompt-tokens N] [--gen-tokens N]\n"
		 "       nibble bench -m MODEL.nib --speed [--threads N]\n"
		 "       nibble bench --synthetic SHAPE [--type T] [--threads N] [--out FILE]\n\n"
		 "Default: opens the image N times (5) in this process and reports the median\n"
		 "load time, the time to the first token of a prompt (32 tokens), the greedy\n"
		 "generation speed (128 tokens) and the resident memory before load, after load\n"
		 "and while generating, against image size + KV cache.\n\n"
		 "--speed: prompt processing (128 tokens) and generation (32 tokens) speed at\n"
		 "1..N threads (default: the CPUs), medians of 7 runs, with the memory read\n"
		 "bandwidth measured in the same run (passes over 1 GiB in huge pages with the\n"
		 "widest loads the CPU has, with and without software prefetch, after each\n"
		 "generation run and for as long as it took; the faster), and generation as a\n"
		 "fraction of the roofline (bandwidth / bytes read per token: weights and the\n"
		 "mean KV cache) taken per run against the bandwidth read just before and\n"
		 "after it: median and spread; above 100% is flagged as the probe reading\n"
		 "slower than the model. And the scalar reference's speed.\n\n"
		 "--synthetic SHAPE: the same on random weights of a real model's shape,\n"
		 "written as an image first (FILE, default $TMPDIR, removed after): tinyllama\n"
		 "(TinyLlama-1.1B), smollm-135m, stories260k, llama-3.2-1b. --type: q4_g32\n"
		 "(default), q4_g64, q4_g128, q4z_g32, q4z_g128, q8_g32. --write-only: just\n"
		 "write the image to --out.\n",
	.main = bench_main,
};
