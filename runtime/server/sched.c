#include "runtime/base/sys.h"
#include "runtime/server/sched.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>


const double nb_sched_buckets[NB_SCHED_HIST] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
						 0.5,   1,    2.5,   5,    10,  30 };

/* ---- jobs ---------------------------------------------------------------- */

static struct nb_job *job_alloc(void)
{
	struct nb_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->stop_token = -1;
	atomic_init(&j->refs, 1);
	atomic_init(&j->cancel, false);
	pthread_mutex_init(&j->lock, NULL);
	j->t_submit = nb_sys_now();
	return j;
}

struct nb_job *nb_job_new(const int32_t *prompt, uint32_t n_prompt)
{
	struct nb_job *j = job_alloc();

	if (!j)
		return NULL;
	j->prompt = malloc((n_prompt ? n_prompt : 1) * sizeof(int32_t));
	if (!j->prompt) {
		nb_job_unref(j);
		return NULL;
	}
	memcpy(j->prompt, prompt, n_prompt * sizeof(int32_t));
	j->n_prompt = n_prompt;
	return j;
}

struct nb_job *nb_job_new_text(const char *text, size_t len, const struct nb_chat_span *spans,
			       size_t n_spans)
{
	struct nb_job *j = job_alloc();

	if (!j)
		return NULL;
	j->prompt_text = malloc(len + 1);
	j->prompt_spans = malloc((n_spans ? n_spans : 1) * sizeof(*spans));
	if (!j->prompt_text || !j->prompt_spans) {
		nb_job_unref(j);
		return NULL;
	}
	memcpy(j->prompt_text, text, len);
	j->prompt_text[len] = '\0';
	j->prompt_len = len;
	if (n_spans)
		memcpy(j->prompt_spans, spans, n_spans * sizeof(*spans));
	j->n_prompt_spans = n_spans;
	return j;
}

void nb_job_ref(struct nb_job *j)
{
	atomic_fetch_add_explicit(&j->refs, 1, memory_order_relaxed);
}

void nb_job_unref(struct nb_job *j)
{
	if (!j || atomic_fetch_sub_explicit(&j->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (uint32_t i = 0; i < j->n_stop; i++)
		free(j->stop_strs[i]);
	pthread_mutex_destroy(&j->lock);
	free(j->prompt);
	free(j->prompt_text);
	free(j->prompt_spans);
	free(j->text);
	free(j);
}

enum nb_finish nb_job_take(struct nb_job *j, char **buf, size_t *len, uint32_t *n_gen)
{
	enum nb_finish f;

	pthread_mutex_lock(&j->lock);
	*buf = j->text;
	*len = j->text_len;
	j->text = NULL;
	j->text_len = j->text_cap = 0;
	f = j->finish;
	*n_gen = j->n_gen;
	pthread_mutex_unlock(&j->lock);
	return f;
}

/* Room for len more bytes of text, under the job's lock; doubling, so
 * rarely an allocation. */
static bool job_reserve(struct nb_job *j, size_t len)
{
	size_t cap = j->text_cap ? j->text_cap * 2 : 256;
	char *p;

	if (j->text_len + len <= j->text_cap)
		return true;
	while (cap < j->text_len + len)
		cap *= 2;
	p = realloc(j->text, cap);
	if (!p)
		return false;
	j->text = p;
	j->text_cap = cap;
	return true;
}

/* Text that cannot be stored marks the job: it must end with an error,
 * never with an answer that silently misses a piece. */
void nb_job_append(void *arg, const char *buf, size_t len)
{
	struct nb_job *j = arg;

	pthread_mutex_lock(&j->lock);
	if (j->text_lost || !job_reserve(j, len)) {
		j->text_lost = true;
	} else {
		memcpy(j->text + j->text_len, buf, len);
		j->text_len += len;
	}
	pthread_mutex_unlock(&j->lock);
}

/* ---- statistics ---------------------------------------------------------- */

static void observe(atomic_ulong *hist, atomic_ulong *count, atomic_ullong *sum, double secs)
{
	for (int b = 0; b <= NB_SCHED_HIST; b++)
		if (b == NB_SCHED_HIST || secs <= nb_sched_buckets[b])
			atomic_fetch_add_explicit(&hist[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(sum, (unsigned long long)(secs * 1e6), memory_order_relaxed);
}

/* ---- the scheduler thread ------------------------------------------------- */

/* Jobs waiting for a slot, those still to tokenize included. Called with
 * s->lock held. */
static void set_depth(struct nb_sched *s)
{
	atomic_store_explicit(&s->stats.queue_depth, s->q_len + s->n_tok, memory_order_relaxed);
}

/* Puts a job on the ready list (one reference for the submitter). */
static void mark_ready(struct nb_sched *s, struct nb_job *j)
{
	pthread_mutex_lock(&s->lock);
	if (!j->queued_ready) {
		j->queued_ready = true;
		j->next_news = s->ready;
		s->ready = j;
		nb_job_ref(j);
	}
	pthread_mutex_unlock(&s->lock);
}

static void notify(struct nb_sched *s)
{
	uint64_t one = 1;

	if (s->o.notify_fd >= 0 && write(s->o.notify_fd, &one, sizeof(one)) < 0)
		nb_dbg("sched: eventfd write failed");
}

static void finish_job(struct nb_sched *s, struct nb_job *j, enum nb_finish f)
{
	pthread_mutex_lock(&j->lock);
	j->finish = f;
	j->t_done = nb_sys_now();
	pthread_mutex_unlock(&j->lock);
	atomic_fetch_add_explicit(&s->stats.requests[f], 1, memory_order_relaxed);
	mark_ready(s, j);
}

static void finish_slot(struct nb_sched *s, struct nb_slot *sl, enum nb_finish f)
{
	if (f == NB_FINISH_STOP || f == NB_FINISH_LENGTH)
		nb_stop_flush(&sl->stop, nb_job_append, sl->job);
	if (sl->job->text_lost) { /* also when the last piece or the flush was lost */
		nb_warn("sched: out of memory for a job's text: it ends with an error");
		f = NB_FINISH_ERROR;
	}
	finish_job(s, sl->job, f);
	nb_job_unref(sl->job);
	nb_sampler_close(&sl->smp);
	sl->job = NULL;
	atomic_fetch_sub_explicit(&s->stats.busy_slots, 1, memory_order_relaxed);
}

static int start_slot(struct nb_sched *s, struct nb_slot *sl, struct nb_job *j)
{
	int ret = nb_sampler_open(&sl->smp, s->llm->model.hp.vocab_size, &j->sp);

	if (ret)
		return ret;
	nb_stop_init(&sl->stop);
	for (uint32_t i = 0; i < j->n_stop; i++)
		nb_stop_add(&sl->stop, j->stop_strs[i]);
	for (uint32_t i = 0; i < j->n_prompt; i++)
		nb_sampler_accept(&sl->smp, j->prompt[i]);
	sl->job = j;
	sl->pos = 0;
	sl->prefilled = 0;
	sl->last = j->prompt[j->n_prompt - 1];
	atomic_fetch_add_explicit(&s->stats.busy_slots, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&s->stats.prompt_tokens, j->n_prompt, memory_order_relaxed);
	return 0;
}

/* Slots with a job. */
static uint32_t running(const struct nb_sched *s)
{
	uint32_t n = 0;

	for (uint32_t i = 0; i < s->o.slots; i++)
		n += s->slots[i].job != NULL;
	return n;
}

/* Moves queued jobs into free slots, as many as the governor's batch cap
 * lets run. Called with s->lock held. */
static void admit(struct nb_sched *s)
{
	uint32_t cap = atomic_load_explicit(&s->batch_cap, memory_order_relaxed), n = running(s);

	for (uint32_t i = 0; i < s->o.slots && s->q_len > 0 && (!cap || n < cap); i++) {
		struct nb_slot *sl = &s->slots[i];
		struct nb_job *j;

		if (sl->job)
			continue;
		n++;
		j = s->queue[s->q_head];
		s->q_head = (s->q_head + 1) % s->o.queue;
		s->q_len--;
		set_depth(s);
		pthread_mutex_unlock(&s->lock);
		if (start_slot(s, sl, j)) {
			finish_job(s, j, NB_FINISH_ERROR);
			nb_job_unref(j);
		}
		pthread_mutex_lock(&s->lock);
	}
}

static bool any_active(const struct nb_sched *s)
{
	for (uint32_t i = 0; i < s->o.slots; i++)
		if (s->slots[i].job)
			return true;
	return false;
}

/* A sampled token: text to the job, or the end of it. */
static void accept_token(struct nb_sched *s, struct nb_slot *sl, const float *logits, double now)
{
	struct nb_job *j = sl->job;
	char piece[256];
	size_t len = 0;
	int32_t tok;

	if (nb_sampler_sample(&sl->smp, logits, &tok)) {
		finish_slot(s, sl, NB_FINISH_ERROR);
		return;
	}
	if (tok == nb_tok_eos(s->llm->tok) || tok == j->stop_token) {
		finish_slot(s, sl, NB_FINISH_STOP);
		return;
	}
	nb_sampler_accept(&sl->smp, tok);
	if (j->n_gen == 0) {
		j->t_first = now;
		observe(s->stats.ttft_hist, &s->stats.ttft_count, &s->stats.ttft_sum_us, now - j->t_submit);
	} else {
		observe(s->stats.tpot_hist, &s->stats.tpot_count, &s->stats.tpot_sum_us, now - sl->t_last);
	}
	sl->t_last = now;
	pthread_mutex_lock(&j->lock);
	j->n_gen++;
	pthread_mutex_unlock(&j->lock);
	atomic_fetch_add_explicit(&s->stats.gen_tokens, 1, memory_order_relaxed);
	nb_tok_piece(s->llm->tok, sl->last, tok, piece, sizeof(piece), &len);
	sl->last = tok;
	if (nb_stop_feed(&sl->stop, piece, len, nb_job_append, j))
		finish_slot(s, sl, NB_FINISH_STOP);
	else if (j->text_lost)
		finish_slot(s, sl, NB_FINISH_ERROR);
	else if (j->n_gen >= j->max_tokens || sl->pos + 1 >= s->o.ctx)
		finish_slot(s, sl, NB_FINISH_LENGTH);
	else
		mark_ready(s, j);
}

/* Rows of one step: every decoding slot, then prompt chunks. */
static uint32_t plan_step(struct nb_sched *s)
{
	uint32_t n = 0, budget = s->o.chunk;

	for (uint32_t i = 0; i < s->o.slots; i++) {
		struct nb_slot *sl = &s->slots[i];
		if (!sl->job || sl->prefilled < sl->job->n_prompt)
			continue;
		s->tokens[n] = sl->last;
		s->pos[n] = sl->pos;
		s->kvs[n] = &sl->kv;
		s->want[n] = 1;
		s->row_slot[n++] = i;
	}
	for (uint32_t i = 0; i < s->o.slots && budget > 0; i++) {
		struct nb_slot *sl = &s->slots[i];
		uint32_t left, take;
		if (!sl->job || sl->prefilled >= sl->job->n_prompt)
			continue;
		left = sl->job->n_prompt - sl->prefilled;
		take = left < budget ? left : budget;
		for (uint32_t k = 0; k < take; k++) {
			s->tokens[n] = sl->job->prompt[sl->prefilled + k];
			s->pos[n] = sl->prefilled + k;
			s->kvs[n] = &sl->kv;
			s->want[n] = k + 1 == left; /* logits of the last prompt token */
			s->row_slot[n++] = i;
		}
		budget -= take;
	}
	return n;
}

static void step(struct nb_sched *s)
{
	const uint32_t vocab = s->llm->model.hp.vocab_size;
	uint32_t n = plan_step(s), k = 0;
	float *logits;
	double now;

	if (n && nb_fwd_batch(&s->fwd, n, s->tokens, s->pos, s->kvs, s->want, &logits) != 0) {
		for (uint32_t i = 0; i < s->o.slots; i++)
			if (s->slots[i].job)
				finish_slot(s, &s->slots[i], NB_FINISH_ERROR);
		return;
	}
	now = nb_sys_now();
	for (uint32_t r = 0; r < n; r++) {
		struct nb_slot *sl = &s->slots[s->row_slot[r]];
		bool decode = sl->prefilled == sl->job->n_prompt;

		sl->pos++;
		if (!decode)
			sl->prefilled++;
		if (s->want[r] && sl->job)
			accept_token(s, sl, logits + (size_t)(k++) * vocab, now);
	}
	for (uint32_t i = 0; i < s->o.slots; i++) {
		struct nb_slot *sl = &s->slots[i];
		if (sl->job && atomic_load_explicit(&sl->job->cancel, memory_order_relaxed))
			finish_slot(s, sl, NB_FINISH_CANCEL);
	}
}

static void update_rate(struct nb_sched *s, double *w_start, unsigned long *w_tokens)
{
	double now = nb_sys_now();
	unsigned long tokens = atomic_load_explicit(&s->stats.gen_tokens, memory_order_relaxed);

	if (now - *w_start >= 1.0) {
		atomic_store(&s->stats.tokens_per_s, (tokens - *w_tokens) / (now - *w_start));
		*w_start = now;
		*w_tokens = tokens;
	}
}

static void drain(struct nb_sched *s)
{
	for (uint32_t i = 0; i < s->o.slots; i++)
		if (s->slots[i].job)
			finish_slot(s, &s->slots[i], NB_FINISH_CANCEL);
	pthread_mutex_lock(&s->lock);
	while (s->q_len > 0) {
		struct nb_job *j = s->queue[s->q_head];
		s->q_head = (s->q_head + 1) % s->o.queue;
		s->q_len--;
		pthread_mutex_unlock(&s->lock);
		finish_job(s, j, NB_FINISH_CANCEL);
		nb_job_unref(j);
		pthread_mutex_lock(&s->lock);
	}
	pthread_mutex_unlock(&s->lock);
	notify(s);
}

/* One step ahead of the loop at most: a late loop then gets each job's
 * text of one step (two at worst, if a step ends between its taking the
 * list and the text), not a burst of many. Prompt chunks without a token
 * bring no news and do not wait. */
static void wait_news_taken(struct nb_sched *s)
{
	pthread_mutex_lock(&s->lock);
	while (s->ready && !s->stopping)
		pthread_cond_wait(&s->wake, &s->lock);
	pthread_mutex_unlock(&s->lock);
}

void nb_sched_throttle(struct nb_sched *s, double duty, uint32_t batch)
{
	unsigned ppm = duty >= 1 || !(duty > 0) ? 1000000u : (unsigned)(duty * 1e6) + 1;

	atomic_store_explicit(&s->duty_ppm, ppm, memory_order_relaxed);
	atomic_store_explicit(&s->batch_cap, batch, memory_order_relaxed);
}

/* The governor's pacing: idles in proportion to the steps taken, so that
 * steps take duty of the time whatever their length. The idle time owed is
 * paid in sleeps of at least PACE_MIN_S: a sleep per step of a small model
 * (tens of microseconds) would cost more in wake-ups and timer slack than
 * it saves. A stop ends it. */
#define PACE_MIN_S 0.002
#define PACE_MAX_S 0.25

static void pace(struct nb_sched *s, double step_s, double *owed)
{
	unsigned ppm = atomic_load_explicit(&s->duty_ppm, memory_order_relaxed);
	double until, left, slept;
	struct timespec ts;

	if (ppm >= 1000000u || ppm == 0) {
		*owed = 0;
		return;
	}
	*owed += step_s * (1e6 - ppm) / ppm;
	if (*owed < PACE_MIN_S)
		return;
	if (*owed > PACE_MAX_S)
		*owed = PACE_MAX_S;
	slept = nb_sys_now();
	until = slept + *owed;
	pthread_mutex_lock(&s->lock);
	while (!s->stopping && (left = until - nb_sys_now()) > 0) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_sec += (time_t)left;
		ts.tv_nsec += (long)((left - (double)(time_t)left) * 1e9);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->pace_wake, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	slept = nb_sys_now() - slept;
	*owed -= slept; /* an oversleep is credited to the next steps */
	atomic_store(&s->paced_s, atomic_load(&s->paced_s) + slept);
}

static void *sched_main(void *arg)
{
	struct nb_sched *s = arg;
	double w_start = nb_sys_now(), t0, owed = 0;
	unsigned long w_tokens = 0;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (!s->stopping && s->q_len == 0 && !any_active(s)) {
			atomic_store(&s->stats.tokens_per_s, 0.0);
			pthread_cond_wait(&s->wake, &s->lock);
		}
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			break;
		}
		admit(s);
		pthread_mutex_unlock(&s->lock);
		t0 = nb_sys_now();
		step(s);
		t0 = nb_sys_now() - t0;
		notify(s);
		update_rate(s, &w_start, &w_tokens);
		wait_news_taken(s);
		pace(s, t0, &owed);
	}
	drain(s);
	return NULL;
}

/* ---- the tokenizer thread ------------------------------------------------- */

/* The oldest text job, NULL once stopping with none left; *stop: the
 * scheduler is stopping (the job is to be cancelled, not tokenized). */
static struct nb_job *next_text_job(struct nb_sched *s, bool *stop)
{
	struct nb_job *j;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping && !s->tok_head)
		pthread_cond_wait(&s->tok_wake, &s->lock);
	j = s->tok_head;
	if (j) {
		s->tok_head = j->next_tok;
		if (!s->tok_head)
			s->tok_tail = NULL;
	}
	*stop = s->stopping;
	pthread_mutex_unlock(&s->lock);
	return j;
}

/* Prompt text -> token ids. The output can be 3 ids a byte (byte
 * fallback: a space becomes U+2581, three byte tokens) plus BOS and the
 * space prefix; the buffer is cut to size after. */
static int tokenize(const struct nb_sched *s, struct nb_job *j)
{
	size_t max = 3 * j->prompt_len + 8, n = 0;
	int32_t *ids, *fit;
	int ret;

	if (j->prompt_len > (SIZE_MAX / sizeof(int32_t) - 8) / 3)
		return -NB_ERANGE;
	ids = malloc(max * sizeof(int32_t));
	if (!ids)
		return -NB_ENOMEM;
	ret = nb_chat_encode(s->llm->tok, j->prompt_text, j->prompt_len, j->prompt_spans,
			     j->n_prompt_spans, ids, max, &n);
	if (!ret && n == 0)
		ret = -NB_EINVAL;
	if (!ret)
		j->n_prompt = n < UINT32_MAX ? (uint32_t)n : UINT32_MAX;
	if (!ret && n + 1 > s->o.ctx)
		ret = -NB_ERANGE;
	free(j->prompt_text); /* the submitter reads neither again */
	free(j->prompt_spans);
	j->prompt_text = NULL;
	j->prompt_spans = NULL;
	if (ret) {
		free(ids);
		return ret;
	}
	fit = realloc(ids, n * sizeof(int32_t));
	free(j->prompt);
	j->prompt = fit ? fit : ids;
	return 0;
}

/* A tokenized job joins the queue (its place was held since submit); one
 * that failed ends as news with its error. */
static void queue_text_job(struct nb_sched *s, struct nb_job *j, int ret)
{
	pthread_mutex_lock(&s->lock);
	s->n_tok--;
	if (!ret && s->stopping)
		ret = -NB_ECANCELED;
	if (!ret) {
		s->queue[(s->q_head + s->q_len) % s->o.queue] = j; /* the list's reference */
		s->q_len++;
		pthread_cond_signal(&s->wake);
	}
	set_depth(s);
	pthread_mutex_unlock(&s->lock);
	if (!ret)
		return;
	j->error = ret;
	if (ret == -NB_ECANCELED) {
		finish_job(s, j, NB_FINISH_CANCEL);
	} else { /* a request that never ran: no generation outcome */
		pthread_mutex_lock(&j->lock);
		j->finish = NB_FINISH_ERROR;
		j->t_done = nb_sys_now();
		pthread_mutex_unlock(&j->lock);
		mark_ready(s, j);
	}
	nb_job_unref(j);
	notify(s);
}

static void *tok_main(void *arg)
{
	struct nb_sched *s = arg;
	struct nb_job *j;
	bool stop;

	while ((j = next_text_job(s, &stop)) != NULL) {
		bool cancel = stop || atomic_load_explicit(&j->cancel, memory_order_relaxed);
		queue_text_job(s, j, cancel ? -NB_ECANCELED : tokenize(s, j));
	}
	return NULL;
}

/* ---- public -------------------------------------------------------------- */

int nb_sched_submit(struct nb_sched *s, struct nb_job *j)
{
	int ret = 0;

	if (!j->prompt_text && (j->n_prompt == 0 || j->n_prompt + 1 > s->o.ctx))
		return -NB_ERANGE;
	pthread_mutex_lock(&s->lock);
	if (s->stopping) {
		ret = -NB_ECANCELED;
	} else if (s->q_len + s->n_tok >= s->o.queue) {
		ret = -NB_EBUSY;
		atomic_fetch_add_explicit(&s->stats.rejected, 1, memory_order_relaxed);
	} else if (j->prompt_text) {
		nb_job_ref(j);
		j->next_tok = NULL;
		if (s->tok_tail)
			s->tok_tail->next_tok = j;
		else
			s->tok_head = j;
		s->tok_tail = j;
		s->n_tok++;
		pthread_cond_signal(&s->tok_wake);
	} else {
		nb_job_ref(j);
		s->queue[(s->q_head + s->q_len) % s->o.queue] = j;
		s->q_len++;
		pthread_cond_signal(&s->wake);
	}
	set_depth(s);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

struct nb_job *nb_sched_ready(struct nb_sched *s)
{
	struct nb_job *list, *j;

	pthread_mutex_lock(&s->lock);
	list = s->ready;
	s->ready = NULL;
	/* Once off the list, a job may be put on it again by the next step
	 * while the submitter still walks this one: that walk has a link of
	 * its own, which the scheduler never writes. */
	for (j = list; j; j = j->next_news) {
		j->queued_ready = false;
		j->next_ready = j->next_news;
	}
	if (list) /* the scheduler may wait for this in wait_news_taken */
		pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	return list;
}

static int alloc_scratch(struct nb_sched *s, uint32_t rows)
{
	s->tokens = calloc(rows, sizeof(*s->tokens));
	s->pos = calloc(rows, sizeof(*s->pos));
	s->kvs = calloc(rows, sizeof(*s->kvs));
	s->want = calloc(rows, sizeof(*s->want));
	s->row_slot = calloc(rows, sizeof(*s->row_slot));
	s->queue = calloc(s->o.queue, sizeof(*s->queue));
	s->slots = calloc(s->o.slots, sizeof(*s->slots));
	return s->tokens && s->pos && s->kvs && s->want && s->row_slot && s->queue && s->slots
		       ? 0 : -NB_ENOMEM;
}

static void init_monotonic_cond(pthread_cond_t *c)
{
	pthread_condattr_t ca;

	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

int nb_sched_open(struct nb_sched *s, const struct nb_llm *llm, const struct nb_sched_opts *o)
{
	const uint32_t rows = o->slots + o->chunk;
	struct nb_fwd_opts fo = { .max_ctx = o->ctx, .max_batch = rows, .no_kv0 = true };
	int ret;

	memset(s, 0, sizeof(*s));
	s->o = *o;
	s->llm = llm;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	init_monotonic_cond(&s->pace_wake);
	atomic_init(&s->duty_ppm, 1000000u);
	atomic_init(&s->batch_cap, 0);
	atomic_init(&s->paced_s, 0.0);
	pthread_cond_init(&s->tok_wake, NULL);
	if (o->slots == 0 || o->queue == 0 || o->chunk == 0 || o->ctx == 0 ||
	    o->ctx > llm->model.hp.seq_len) {
		nb_err("sched: slots, queue and chunk must be > 0 and ctx in 1..%u",
		       llm->model.hp.seq_len);
		return -NB_EINVAL;
	}
	ret = alloc_scratch(s, rows);
	for (uint32_t i = 0; !ret && i < o->slots; i++)
		ret = nb_kv_open(&s->slots[i].kv, &llm->model, o->ctx);
	/* Workers pinned as by default, thread 0 (the scheduler's own, which
	 * does not exist yet) left to the kernel. */
	if (!ret) {
		int cpus[CONFIG_MAX_THREADS];
		nb_pool_default_cpus(cpus, o->threads < CONFIG_MAX_THREADS ? o->threads
						 : CONFIG_MAX_THREADS);
		cpus[0] = -1;
		ret = nb_pool_open(&s->pool, o->threads, cpus);
	}
	fo.pool = &s->pool;
	if (!ret)
		ret = nb_fwd_open_opts(&s->fwd, &llm->model, &fo);
	if (!ret && pthread_create(&s->thread, NULL, sched_main, s) != 0)
		ret = -NB_ENOMEM;
	s->started = !ret;
	if (!ret && pthread_create(&s->tok_thread, NULL, tok_main, s) != 0)
		ret = -NB_ENOMEM;
	s->tok_started = !ret;
	if (ret) {
		nb_sched_close(s);
		return ret;
	}
	return 0;
}

void nb_sched_stop(struct nb_sched *s)
{
	if (!s->started)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	pthread_cond_signal(&s->wake);
	pthread_cond_signal(&s->tok_wake);
	pthread_cond_signal(&s->pace_wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	if (s->tok_started) /* cancels the prompts it has not tokenized */
		pthread_join(s->tok_thread, NULL);
	s->started = s->tok_started = false;
}

void nb_sched_close(struct nb_sched *s)
{
	struct nb_job *j;

	nb_sched_stop(s);
	while ((j = nb_sched_ready(s)) != NULL) {
		while (j) {
			struct nb_job *next = j->next_ready;
			nb_job_unref(j);
			j = next;
		}
	}
	for (uint32_t i = 0; s->slots && i < s->o.slots; i++)
		nb_kv_close(&s->slots[i].kv);
	nb_fwd_close(&s->fwd);
	nb_pool_close(&s->pool);
	free(s->tokens);
	free(s->pos);
	free(s->kvs);
	free(s->want);
	free(s->row_slot);
	free(s->queue);
	free(s->slots);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->wake);
	pthread_cond_destroy(&s->pace_wake);
	pthread_cond_destroy(&s->tok_wake);
	/* Closed and zeroed: closing again is harmless. */
	memset(s, 0, sizeof(*s));
}
