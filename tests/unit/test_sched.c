/* The scheduler on the real stories260K model: continuous batching gives
 * every job exactly the tokens it gets alone; queue limits, cancellation,
 * stop strings, max_tokens and shutdown. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/base/sys.h"
#include "runtime/server/sched.h"
#include "tools/import/ckpt.h"
#include "tools/import/image_write.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct fx {
	char path[64];
	struct nb_llm llm;
	int efd;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct nb_ckpt c;
	struct nb_tensor *v;
	int fd;

	strcpy(f->path, "/tmp/nb-sched-XXXXXX");
	fd = mkstemp(f->path);
	close(fd);
	nb_ckpt_init(&c);
	assert_int_equal(nb_import_llama2c(&c, "models/stories260K/stories260K.bin",
					   "models/stories260K/tok512.bin"), 0);
	v = calloc(c.n_tensors, sizeof(*v));
	for (size_t i = 0; i < c.n_tensors; i++) {
		uint64_t n = c.tensors[i].shape[0] * (c.tensors[i].ndim > 1 ? c.tensors[i].shape[1] : 1);
		v[i] = (struct nb_tensor){ .name = c.tensors[i].name, .type = NB_DTYPE_F32,
					   .ndim = c.tensors[i].ndim, .data = c.tensors[i].data,
					   .size = n * 4 };
		memcpy(v[i].shape, c.tensors[i].shape, sizeof(v[i].shape));
	}
	assert_int_equal(nb_image_write(f->path, &(struct nb_image_spec){
				 .hp = &c.hp, .tok = &c.tok, .model_version = 1,
				 .tensors = v, .n_tensors = c.n_tensors }), 0);
	free(v);
	nb_ckpt_free(&c);
	assert_int_equal(nb_llm_open(&f->llm, f->path, 0), 0);
	f->efd = eventfd(0, EFD_CLOEXEC);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	nb_llm_close(&f->llm);
	unlink(f->path);
	close(f->efd);
	free(f);
	return 0;
}

static struct nb_job *make_job(struct fx *f, const char *prompt, uint32_t max_tokens,
			       float temp, uint64_t seed)
{
	int32_t ids[256];
	size_t n = 0;
	struct nb_job *j;

	assert_int_equal(nb_tok_encode(f->llm.tok, prompt, strlen(prompt), true, ids, 256, &n), 0);
	j = nb_job_new(ids, (uint32_t)n);
	assert_non_null(j);
	j->max_tokens = max_tokens;
	nb_sampler_params_default(&j->sp);
	j->sp.temperature = temp;
	j->sp.seed = seed;
	return j;
}

struct result {
	char text[4096];
	size_t len;
	enum nb_finish finish;
	uint32_t n_gen;
};

/* Collects news until every job of jobs[] has finished. */
static void collect(struct fx *f, struct nb_sched *s, struct nb_job **jobs, struct result *res,
		    size_t n)
{
	size_t done = 0;

	while (done < n) {
		uint64_t v;
		struct nb_job *j;
		assert_int_equal(read(f->efd, &v, sizeof(v)), sizeof(v));
		for (j = nb_sched_ready(s); j;) {
			struct nb_job *next = j->next_ready;
			for (size_t i = 0; i < n; i++) {
				char *buf;
				size_t len;
				enum nb_finish fin;
				if (jobs[i] != j || res[i].finish)
					continue;
				fin = nb_job_take(j, &buf, &len, &res[i].n_gen);
				assert_true(res[i].len + len < sizeof(res[i].text));
				if (len) /* news without text: buf is NULL */
					memcpy(res[i].text + res[i].len, buf, len);
				res[i].len += len;
				free(buf);
				if (fin) {
					res[i].finish = fin;
					done++;
				}
			}
			nb_job_unref(j);
			j = next;
		}
	}
}

static const char *const prompts[16] = {
	"Once upon a time", "The little dog", "Lily and Tom went", "One day, a bird",
	"The sun was", "Tim had a red ball", "There was a big tree", "Sue wanted to",
	"The cat sat", "Ben liked to play", "Mom said", "A little girl named",
	"The frog jumped", "In the park", "Max was sad because", "They all",
};

static struct nb_sched_opts opts(struct fx *f, uint32_t slots, uint32_t queue, uint32_t chunk)
{
	return (struct nb_sched_opts){ .slots = slots, .ctx = 256, .queue = queue, .chunk = chunk,
				       .threads = 2, .notify_fd = f->efd };
}

static void test_batching_never_changes_results(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[16];
	static struct result alone[16], together[16];
	struct nb_sched_opts o = opts(f, 4, 16, 3); /* chunks of 3: prompts interleave */

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 16; i++) {
		jobs[i] = make_job(f, prompts[i], 24, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
		collect(f, &s, &jobs[i], &alone[i], 1);
		nb_job_unref(jobs[i]);
	}
	for (int i = 0; i < 16; i++) {
		jobs[i] = make_job(f, prompts[i], 24, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	collect(f, &s, jobs, together, 16);
	for (int i = 0; i < 16; i++) {
		assert_int_equal(together[i].n_gen, alone[i].n_gen);
		assert_int_equal(together[i].len, alone[i].len);
		assert_memory_equal(together[i].text, alone[i].text, alone[i].len);
		assert_true(alone[i].finish == NB_FINISH_LENGTH || alone[i].finish == NB_FINISH_STOP);
		nb_job_unref(jobs[i]);
	}
	/* The first story is the reference continuation. */
	assert_memory_equal(alone[0].text, ", there was a little girl named Lily.", 37);
	assert_true(atomic_load(&s.stats.gen_tokens) > 16 * 20);
	nb_sched_close(&s);
}

/* The governor's pacing idles the steps to duty of the time (here with a
 * batch cap too); neither changes a token. */
static void test_throttle_paces(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[4];
	static struct result free_run[4], paced[4];
	struct nb_sched_opts o = opts(f, 4, 8, 8);
	double t0, took;

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 4; i++) {
		jobs[i] = make_job(f, prompts[i], 120, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	collect(f, &s, jobs, free_run, 4);
	for (int i = 0; i < 4; i++)
		nb_job_unref(jobs[i]);
	assert_true(atomic_load(&s.paced_s) == 0);
	nb_sched_throttle(&s, 0.25, 2);
	t0 = nb_sys_now();
	for (int i = 0; i < 4; i++) {
		jobs[i] = make_job(f, prompts[i], 120, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	collect(f, &s, jobs, paced, 4);
	took = nb_sys_now() - t0;
	for (int i = 0; i < 4; i++) {
		assert_int_equal(paced[i].len, free_run[i].len);
		assert_memory_equal(paced[i].text, free_run[i].text, free_run[i].len);
		nb_job_unref(jobs[i]);
	}
	/* three quarters of the time idle, less what waking up costs */
	assert_true(atomic_load(&s.paced_s) >= 0.5 * took);
	nb_sched_close(&s);
}

/* The batch cap: with 2, never more than 2 slots busy. */
static void test_batch_cap(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[4];
	static struct result r[4];
	struct nb_sched_opts o = opts(f, 4, 8, 8);
	unsigned most = 0;
	size_t done = 0;

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	nb_sched_throttle(&s, 1, 2);
	for (int i = 0; i < 4; i++) {
		jobs[i] = make_job(f, prompts[i], 40, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	while (done < 4) {
		uint64_t v;
		assert_int_equal(read(f->efd, &v, sizeof(v)), sizeof(v));
		for (struct nb_job *j = nb_sched_ready(&s), *next; j; j = next) {
			unsigned busy = atomic_load(&s.stats.busy_slots);
			char *buf;
			size_t len;
			next = j->next_ready;
			most = busy > most ? busy : most;
			for (int i = 0; i < 4; i++) {
				enum nb_finish fin;
				if (jobs[i] != j || r[i].finish)
					continue;
				fin = nb_job_take(j, &buf, &len, &r[i].n_gen);
				free(buf);
				if (fin) {
					r[i].finish = fin;
					done++;
				}
			}
			nb_job_unref(j);
		}
	}
	assert_true(most >= 1 && most <= 2);
	for (int i = 0; i < 4; i++)
		nb_job_unref(jobs[i]);
	nb_sched_close(&s);
}

static void test_sampled_jobs_are_reproducible(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[3];
	static struct result r[3];
	struct nb_sched_opts o = opts(f, 2, 4, 8);

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	jobs[0] = make_job(f, "Once upon a time", 32, 0.9f, 7);
	jobs[1] = make_job(f, "Once upon a time", 32, 0.9f, 7);
	jobs[2] = make_job(f, "Once upon a time", 32, 0.9f, 8);
	for (int i = 0; i < 3; i++)
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	collect(f, &s, jobs, r, 3);
	assert_int_equal(r[0].len, r[1].len);
	assert_memory_equal(r[0].text, r[1].text, r[0].len);
	assert_true(r[0].len != r[2].len || memcmp(r[0].text, r[2].text, r[0].len) != 0);
	for (int i = 0; i < 3; i++)
		nb_job_unref(jobs[i]);
	nb_sched_close(&s);
}

static void test_queue_full_and_too_long(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[4], *big;
	static struct result r[3];
	struct nb_sched_opts o = opts(f, 1, 2, 8);
	int32_t ids[300] = { 1 };

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 4; i++)
		jobs[i] = make_job(f, prompts[i], 64, 0.0f, 0);
	/* one running (maybe), two queued: the fourth may not fit */
	int accepted = 0, busy = 0;
	for (int i = 0; i < 4; i++) {
		int ret = nb_sched_submit(&s, jobs[i]);
		accepted += ret == 0;
		busy += ret == -NB_EBUSY;
	}
	assert_true(accepted >= 2 && accepted <= 3);
	assert_int_equal(accepted + busy, 4);
	assert_true(atomic_load(&s.stats.rejected) >= 1);
	big = nb_job_new(ids, 300); /* longer than the 256-position context */
	assert_int_equal(nb_sched_submit(&s, big), -NB_ERANGE);
	nb_job_unref(big);
	collect(f, &s, jobs, r, (size_t)accepted);
	for (int i = 0; i < 4; i++)
		nb_job_unref(jobs[i]);
	nb_sched_close(&s);
}

static void test_cancel_frees_the_slot(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *j;
	static struct result r;
	struct nb_sched_opts o = opts(f, 1, 2, 8);

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	j = make_job(f, "Once upon a time", 200, 0.0f, 0);
	assert_int_equal(nb_sched_submit(&s, j), 0);
	atomic_store(&j->cancel, true);
	collect(f, &s, &j, &r, 1);
	assert_int_equal(r.finish, NB_FINISH_CANCEL);
	assert_true(r.n_gen < 200);
	assert_int_equal(atomic_load(&s.stats.busy_slots), 0);
	nb_job_unref(j);
	nb_sched_close(&s);
}

static void test_stop_string_and_length(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[2];
	static struct result r[2];
	struct nb_sched_opts o = opts(f, 2, 2, 8);

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	jobs[0] = make_job(f, "Once upon a time", 40, 0.0f, 0);
	jobs[0]->stop_strs[0] = strdup("Lily");
	jobs[0]->n_stop = 1;
	jobs[1] = make_job(f, "Once upon a time", 5, 0.0f, 0);
	assert_int_equal(nb_sched_submit(&s, jobs[0]), 0);
	assert_int_equal(nb_sched_submit(&s, jobs[1]), 0);
	collect(f, &s, jobs, r, 2);
	assert_int_equal(r[0].finish, NB_FINISH_STOP);
	assert_int_equal(r[0].len, strlen(", there was a little girl named "));
	assert_memory_equal(r[0].text, ", there was a little girl named ", r[0].len);
	assert_int_equal(r[1].finish, NB_FINISH_LENGTH);
	assert_int_equal(r[1].n_gen, 5);
	nb_job_unref(jobs[0]);
	nb_job_unref(jobs[1]);
	nb_sched_close(&s);
}

static void test_close_cancels_everything(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[3];
	struct nb_sched_opts o = opts(f, 1, 4, 8);

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 3; i++) {
		jobs[i] = make_job(f, prompts[i], 200, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	nb_sched_close(&s);
	for (int i = 0; i < 3; i++) {
		assert_true(jobs[i]->finish != NB_FINISH_NONE);
		nb_job_unref(jobs[i]);
	}
}

/* The slots' caches are the only ones: the forward context of the
 * scheduler maps no cache of its own (it was 92 MB of TinyLlama at 2048). */
static void test_no_cache_beside_the_slots(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_sched_opts o = opts(f, 2, 4, 8);
	bool own_cache, slot_caches;

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	own_cache = s.fwd.kv0.map != NULL;
	slot_caches = s.slots[0].kv.map && s.slots[1].kv.map;
	nb_sched_close(&s); /* before asserting: its threads must not outlive the test */
	assert_false(own_cache);
	assert_true(slot_caches);
}

static struct nb_job *text_job(const char *prompt, uint32_t max_tokens)
{
	struct nb_job *j = nb_job_new_text(prompt, strlen(prompt), NULL, 0);

	assert_non_null(j);
	j->max_tokens = max_tokens;
	nb_sampler_params_default(&j->sp);
	j->sp.temperature = 0.0f;
	return j;
}

/* A prompt given as text is tokenized by the scheduler: the same answer as
 * its token ids, and what cannot run ends as news with its reason. */
static void test_text_jobs(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[4];
	static struct result r[4];
	struct nb_sched_opts o = opts(f, 2, 4, 8);
	char *long_prompt = malloc(4001);

	memset(long_prompt, 'a', 4000);
	long_prompt[4000] = '\0';
	memset(r, 0, sizeof(r));
	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	jobs[0] = make_job(f, "Once upon a time", 12, 0.0f, 0);
	jobs[1] = text_job("Once upon a time", 12);
	jobs[2] = text_job(long_prompt, 4);  /* more tokens than the 256 positions */
	jobs[3] = text_job("The little dog", 4);
	atomic_store(&jobs[3]->cancel, true); /* its client left before it was tokenized */
	for (int i = 0; i < 4; i++)
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	collect(f, &s, jobs, r, 4);
	assert_int_equal(r[1].finish, r[0].finish);
	assert_int_equal(r[1].len, r[0].len);
	assert_memory_equal(r[1].text, r[0].text, r[0].len);
	assert_int_equal(jobs[1]->n_prompt, jobs[0]->n_prompt);
	assert_int_equal(jobs[1]->error, 0);
	assert_int_equal(r[2].finish, NB_FINISH_ERROR);
	assert_int_equal(jobs[2]->error, -NB_ERANGE);
	assert_true(jobs[2]->n_prompt > 256);
	assert_int_equal(r[3].finish, NB_FINISH_CANCEL);
	assert_int_equal(jobs[3]->error, -NB_ECANCELED);
	assert_int_equal(atomic_load(&s.stats.queue_depth), 0);
	/* client errors are no generation outcome */
	assert_int_equal(atomic_load(&s.stats.requests[NB_FINISH_ERROR]), 0);
	for (int i = 0; i < 4; i++)
		nb_job_unref(jobs[i]);
	free(long_prompt);
	nb_sched_close(&s);
}

/* Prompts waiting to be tokenized hold places of the queue, and closing
 * cancels them like queued jobs. */
static void test_text_jobs_queue_and_close(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_job *jobs[8];
	struct nb_sched_opts o = opts(f, 1, 2, 8);
	int accepted = 0, busy = 0;

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 8; i++) {
		int ret;
		jobs[i] = text_job(prompts[i], 200);
		ret = nb_sched_submit(&s, jobs[i]);
		accepted += ret == 0;
		busy += ret == -NB_EBUSY;
	}
	/* one may have reached the slot already; the queue holds two */
	assert_true(accepted >= 2 && accepted <= 3);
	assert_int_equal(accepted + busy, 8);
	nb_sched_close(&s);
	for (int i = 0; i < accepted; i++) {
		assert_int_not_equal(jobs[i]->finish, NB_FINISH_NONE);
		nb_job_unref(jobs[i]);
	}
	for (int i = accepted; i < 8; i++) {
		assert_int_equal(jobs[i]->finish, NB_FINISH_NONE);
		nb_job_unref(jobs[i]);
	}
}

/* An event loop woken late (here: 10 ms after each notification, far
 * longer than a step of this model) still gets each token within one step:
 * the scheduler waits for it between steps, so no take holds more than the
 * tokens of two steps. Without that wait each take held a burst. */
static void test_a_late_reader_gets_no_bursts(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_sched_opts o = opts(f, 1, 2, 8);
	struct nb_job *j;
	enum nb_finish fin = NB_FINISH_NONE;
	uint32_t seen = 0, most = 0, takes = 0;

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	j = make_job(f, "Once upon a time", 40, 0.0f, 0);
	assert_int_equal(nb_sched_submit(&s, j), 0);
	while (!fin) {
		uint64_t v;
		struct nb_job *r, *next;

		assert_int_equal(read(f->efd, &v, sizeof(v)), sizeof(v));
		usleep(10000);
		for (r = nb_sched_ready(&s); r; r = next) {
			char *buf;
			size_t len;
			uint32_t n;

			next = r->next_ready;
			fin = nb_job_take(r, &buf, &len, &n);
			free(buf);
			most = n - seen > most ? n - seen : most;
			seen = n;
			takes++;
			nb_job_unref(r);
		}
	}
	assert_int_equal(fin, NB_FINISH_LENGTH);
	assert_int_equal(seen, 40);
	assert_true(most <= 2);
	assert_true(takes >= 20);
	nb_job_unref(j);
	nb_sched_close(&s);
}

/* True once the scheduler has news again, or nothing runs or waits. */
static bool news_or_idle(struct nb_sched *s)
{
	bool news;

	pthread_mutex_lock(&s->lock);
	news = s->ready != NULL;
	pthread_mutex_unlock(&s->lock);
	return news || (atomic_load(&s->stats.busy_slots) == 0 &&
			atomic_load(&s->stats.queue_depth) == 0);
}

/* A reader slow to walk the list it took (the server writes to sockets
 * meanwhile): the scheduler, no longer waiting, runs its next step and
 * puts the running jobs on its list again before the walk. That must not
 * change the list taken: jobs finished in a lower slot were cut from it,
 * their news never came and their references leaked. */
static void test_a_slow_reader_walks_the_list_it_took(void **state)
{
	struct fx *f = *state;
	struct nb_sched s;
	struct nb_sched_opts o = opts(f, 4, 4, 8);
	struct nb_job *jobs[4];
	enum nb_finish fin[4] = { NB_FINISH_NONE };

	assert_int_equal(nb_sched_open(&s, &f->llm, &o), 0);
	for (int i = 0; i < 4; i++) { /* slot i; the lower the slot, the sooner it ends */
		jobs[i] = make_job(f, prompts[i], 4 + 6 * (uint32_t)i, 0.0f, 0);
		assert_int_equal(nb_sched_submit(&s, jobs[i]), 0);
	}
	for (;;) {
		struct nb_job *list, *next;

		while (!news_or_idle(&s))
			usleep(1000);
		list = nb_sched_ready(&s);
		if (!list)
			break; /* idle, and every piece of news taken */
		while (!news_or_idle(&s)) /* the next step is done before the walk */
			usleep(1000);
		for (struct nb_job *j = list; j; j = next) {
			char *buf = NULL;
			size_t len;
			uint32_t n;

			next = j->next_ready;
			for (int i = 0; i < 4; i++)
				if (jobs[i] == j)
					fin[i] = nb_job_take(j, &buf, &len, &n);
			free(buf);
			nb_job_unref(j);
		}
	}
	nb_sched_close(&s);
	for (int i = 0; i < 4; i++) {
		assert_int_not_equal(fin[i], NB_FINISH_NONE); /* its end was news */
		assert_int_equal(atomic_load(&jobs[i]->refs), 1); /* only ours is left */
		nb_job_unref(jobs[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_batching_never_changes_results),
		cmocka_unit_test(test_sampled_jobs_are_reproducible),
		cmocka_unit_test(test_throttle_paces),
		cmocka_unit_test(test_batch_cap),
		cmocka_unit_test(test_queue_full_and_too_long),
		cmocka_unit_test(test_cancel_frees_the_slot),
		cmocka_unit_test(test_stop_string_and_length),
		cmocka_unit_test(test_close_cancels_everything),
		cmocka_unit_test(test_no_cache_beside_the_slots),
		cmocka_unit_test(test_text_jobs),
		cmocka_unit_test(test_text_jobs_queue_and_close),
		cmocka_unit_test(test_a_late_reader_gets_no_bursts),
		cmocka_unit_test(test_a_slow_reader_walks_the_list_it_took),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
