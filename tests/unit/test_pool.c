/* The worker pool: every thread id once per run, exact parallel results,
 * back-to-back dispatch latency, oversubscription on the futex path,
 * pinning and signal masks, lifetime, and the static split; shared runs:
 * all work done once by whoever came, and done without a worker that
 * cannot run (stopped by a tracer, as a descheduled one would be). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/pool.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_MALLOC_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_MALLOC_HOOKS 1
#endif
#endif

#ifdef HAVE_MALLOC_HOOKS
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
					      void (*free_hook)(const volatile void *));
static atomic_size_t n_mallocs;
static void count_malloc(const volatile void *p, size_t size)
{
	(void)p;
	(void)size;
	atomic_fetch_add(&n_mallocs, 1);
}
static void ignore_free(const volatile void *p) { (void)p; }
#endif

static int unpinned[CONFIG_MAX_THREADS]; /* all -1, set by main */

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* ---- every thread id exactly once per run ------------------------------- */

struct count_ctx {
	struct {
		_Alignas(64) atomic_uint n; /* a line each: no false sharing in timings */
	} runs[CONFIG_MAX_THREADS];
	atomic_uint bad_nth;
	unsigned want_nth;
};

static void count_fn(void *arg, unsigned ith, unsigned nth)
{
	struct count_ctx *c = arg;

	if (nth != c->want_nth || ith >= nth)
		atomic_fetch_add(&c->bad_nth, 1);
	else
		atomic_fetch_add_explicit(&c->runs[ith].n, 1, memory_order_relaxed);
}

/* Runs count_fn `runs` times and checks after each run that every id ran
 * once more: a run returning early, or an id run twice, fails here. */
static void check_counts(struct nb_pool *p, unsigned runs)
{
	static struct count_ctx c; /* zeroed per call below */
	unsigned nth = nb_pool_size(p);

	memset(&c, 0, sizeof(c));
	c.want_nth = nth;
	for (unsigned r = 1; r <= runs; r++) {
		nb_pool_run(p, count_fn, &c);
		for (unsigned i = 0; i < nth; i++)
			if (atomic_load_explicit(&c.runs[i].n, memory_order_relaxed) != r)
				fail_msg("run %u: thread %u of %u ran %u times", r, i, nth,
					 atomic_load(&c.runs[i].n));
	}
	assert_int_equal(atomic_load(&c.bad_nth), 0);
}

static void test_each_id_once(void **state)
{
	static const unsigned sizes[] = { 1, 2, 3, 8 };
	struct nb_pool p;
	(void)state;

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		assert_int_equal(nb_pool_open(&p, sizes[k], unpinned), 0);
		assert_int_equal(nb_pool_size(&p), sizes[k]);
		check_counts(&p, 2000);
		nb_pool_close(&p);
	}
}

/* ---- exact results over disjoint slices --------------------------------- */

struct sum_ctx {
	const uint64_t *x;
	uint64_t n;
	uint64_t partial[CONFIG_MAX_THREADS];
};

static void sum_fn(void *arg, unsigned ith, unsigned nth)
{
	struct sum_ctx *c = arg;
	uint64_t b, e, s = 0;

	nb_pool_split(c->n, ith, nth, &b, &e);
	for (uint64_t i = b; i < e; i++)
		s += c->x[i];
	c->partial[ith] = s;
}

/* Float dot products, each output row in one thread: the result must be
 * bit for bit the serial one for any thread count. */
struct rows_ctx {
	const float *w, *x;
	float *y;
	unsigned rows, cols;
};

static void rows_fn(void *arg, unsigned ith, unsigned nth)
{
	struct rows_ctx *c = arg;
	uint64_t b, e;

	nb_pool_split_aligned(c->rows, 4, ith, nth, &b, &e);
	for (uint64_t r = b; r < e; r++) {
		float s = 0.0f;

		for (unsigned j = 0; j < c->cols; j++)
			s += c->w[r * c->cols + j] * c->x[j];
		c->y[r] = s;
	}
}

static void test_parallel_results_exact(void **state)
{
	enum { N = (1 << 20) + 7, ROWS = 1001, COLS = 257 };
	static const unsigned sizes[] = { 1, 2, 3, 8 };
	uint64_t *x = malloc(N * sizeof(*x));
	float *w = malloc((size_t)ROWS * COLS * sizeof(*w));
	float *v = malloc(COLS * sizeof(*v));
	float *y_ref = malloc(ROWS * sizeof(*y_ref)), *y = malloc(ROWS * sizeof(*y));
	uint64_t want = 0, lcg = 12345;
	struct nb_pool p;
	(void)state;

	assert_true(x && w && v && y_ref && y);
	for (size_t i = 0; i < N; i++) {
		lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
		x[i] = lcg >> 3; /* sums wrap mod 2^64: still exact and order-free */
		want += x[i];
	}
	for (size_t i = 0; i < (size_t)ROWS * COLS; i++)
		w[i] = (float)((int)(i * 2654435761u % 2001) - 1000) / 997.0f;
	for (size_t j = 0; j < COLS; j++)
		v[j] = (float)((int)(j * 40503u % 301) - 150) / 31.0f;
	struct rows_ctx rc = { .w = w, .x = v, .y = y_ref, .rows = ROWS, .cols = COLS };
	rows_fn(&rc, 0, 1);

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct sum_ctx sc = { .x = x, .n = N };
		uint64_t got = 0;

		assert_int_equal(nb_pool_open(&p, sizes[k], unpinned), 0);
		nb_pool_run(&p, sum_fn, &sc);
		for (unsigned i = 0; i < sizes[k]; i++)
			got += sc.partial[i];
		assert_true(got == want);

		memset(y, 0xff, ROWS * sizeof(*y));
		rc.y = y;
		nb_pool_run(&p, rows_fn, &rc);
		assert_memory_equal(y, y_ref, ROWS * sizeof(*y));
		nb_pool_close(&p);
	}
	free(x);
	free(w);
	free(v);
	free(y_ref);
	free(y);
}

/* ---- latency and the syscall-free hot path ------------------------------ */

/* Mean time of nb_pool_run() with a near-empty fn on 2 threads; returns the
 * futex calls made meanwhile. */
static void time_runs(unsigned runs, unsigned spin, unsigned long *sleeps, unsigned long *wakes)
{
	static struct count_ctx c;
	struct nb_pool p;
	double t;

	memset(&c, 0, sizeof(c));
	c.want_nth = 2;
	assert_int_equal(nb_pool_open(&p, 2, unpinned), 0);
	nb_pool_set_spin(&p, spin);
	nb_pool_run(&p, count_fn, &c); /* warm: the worker has started */
	t = now_ns();
	for (unsigned r = 0; r < runs; r++)
		nb_pool_run(&p, count_fn, &c);
	t = now_ns() - t;
	nb_pool_stats(&p, sleeps, wakes);
	nb_pool_close(&p);
	assert_int_equal(atomic_load(&c.runs[0].n), runs + 1);
	assert_int_equal(atomic_load(&c.runs[1].n), runs + 1);
	assert_int_equal(atomic_load(&c.bad_nth), 0);
	printf("# pool: %u dispatch+join, 2 threads, spin %u: mean %.0f ns; "
	       "futex waits %lu, wakes %lu\n", runs, spin, t / runs, *sleeps, *wakes);
}

static void test_dispatch_latency(void **state)
{
	unsigned long sleeps, wakes;
	(void)state;

	/* the default budget: on a busy machine a preempted thread may make
	 * the other exhaust it and sleep, so only the mean is reported */
	time_runs(20000, NB_POOL_SPIN_DEFAULT, &sleeps, &wakes);
	/* a budget that never runs out: the hot path makes no syscall at all,
	 * the dispatcher wakes only threads that sleep */
	time_runs(20000, 1u << 30, &sleeps, &wakes);
	assert_int_equal(sleeps, 0);
	assert_int_equal(wakes, 0);
}

static void test_run_does_not_allocate(void **state)
{
	struct count_ctx *c = calloc(1, sizeof(*c));
	struct nb_pool p;
	(void)state;

	assert_non_null(c);
	assert_int_equal(nb_pool_open(&p, 3, unpinned), 0);
	c->want_nth = 3;
	nb_pool_run(&p, count_fn, c);
#ifdef HAVE_MALLOC_HOOKS
	assert_int_not_equal(__sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free),
			     0);
	size_t before = atomic_load(&n_mallocs);
#endif
	nb_pool_set_spin(&p, 0); /* the futex path too */
	for (int i = 0; i < 200; i++)
		nb_pool_run(&p, count_fn, c);
	nb_pool_set_spin(&p, NB_POOL_SPIN_DEFAULT);
	for (int i = 0; i < 200; i++)
		nb_pool_run(&p, count_fn, c);
#ifdef HAVE_MALLOC_HOOKS
	assert_int_equal(atomic_load(&n_mallocs), before);
#endif
	nb_pool_close(&p);
	assert_int_equal(atomic_load(&c->runs[2].n), 401);
	free(c);
}

/* ---- oversubscription and the futex path -------------------------------- */

static void test_oversubscribed(void **state)
{
	static const int two_cpus[8] = { 0, 1, 0, 1, 0, 1, 0, 1 };
	unsigned long sleeps, wakes;
	struct nb_pool p;
	double t;
	(void)state;

	/* 8 threads on 2 cores: spinning ones delay the rest until their
	 * budget runs out and they sleep; this must finish, not deadlock */
	nb_log_set_level(NB_LOG_SILENT); /* CPU 1 may be outside our set */
	assert_int_equal(nb_pool_open(&p, 8, two_cpus), 0);
	nb_log_set_level(NB_LOG_WARN);
	t = now_ns();
	check_counts(&p, 2000);
	t = now_ns() - t;
	printf("# pool: 8 threads pinned to 2 cpus, default spin: mean %.0f us per run\n",
	       t / 2000 / 1e3);
	/* spinning anyway: slow, as each spinner holds a core, but it ends */
	nb_pool_set_spin(&p, NB_POOL_SPIN_DEFAULT);
	t = now_ns();
	check_counts(&p, 50);
	t = now_ns() - t;
	printf("# pool: 8 threads pinned to 2 cpus, spin %u: mean %.0f us per run\n",
	       NB_POOL_SPIN_DEFAULT, t / 50 / 1e3);
	nb_pool_close(&p);

	assert_int_equal(nb_pool_open(&p, 8, unpinned), 0);
	nb_pool_set_spin(&p, 0);
	t = now_ns();
	check_counts(&p, 2000);
	t = now_ns() - t;
	nb_pool_stats(&p, &sleeps, &wakes);
	printf("# pool: 8 threads, spin 0: mean %.0f us per run; futex waits %lu, wakes %lu\n",
	       t / 2000 / 1e3, sleeps, wakes);
	assert_true(sleeps > 0 && wakes > 0);
	nb_pool_close(&p);
}

/* Workers that have slept long are woken by the next run. */
static void test_wake_after_idle(void **state)
{
	struct timespec ms20 = { 0, 20 * 1000 * 1000 };
	unsigned long sleeps, wakes;
	struct nb_pool p;
	(void)state;

	assert_int_equal(nb_pool_open(&p, 3, unpinned), 0);
	nb_pool_set_spin(&p, 100);
	for (int i = 0; i < 5; i++) {
		nanosleep(&ms20, NULL);
		check_counts(&p, 3);
	}
	nb_pool_stats(&p, &sleeps, &wakes);
	assert_true(wakes >= 5); /* each idle period ended with a wake */
	nb_pool_close(&p);
}

/* ---- shared runs ----------------------------------------------------------- */

enum { SHARE_ITEMS = 4099, SHARE_CHUNK = 7 };

struct share_ctx {
	struct nb_pool_work work;
	uint16_t hits[SHARE_ITEMS];      /* per item: how often it was done */
	atomic_uint in_run[CONFIG_MAX_THREADS]; /* per ith: calls this run */
	atomic_uint bad;                  /* ith out of range or repeated, caller not ith 0 */
	pthread_t caller;
	atomic_uint workers_seen;         /* calls with ith != 0, all runs */
};

static void share_fn(void *arg, unsigned ith, unsigned nth)
{
	struct share_ctx *c = arg;
	uint64_t b, e;

	if (ith >= nth || atomic_fetch_add(&c->in_run[ith], 1) != 0 ||
	    (ith == 0) != (pthread_equal(pthread_self(), c->caller) != 0))
		atomic_fetch_add(&c->bad, 1);
	if (ith)
		atomic_fetch_add(&c->workers_seen, 1);
	while (nb_pool_claim(&c->work, &b, &e))
		for (uint64_t i = b; i < e; i++)
			c->hits[i]++; /* the claim makes it ours alone */
}

/* runs nb_pool_share `runs` times; after each, every item was done once
 * more and each ith ran at most once, the caller as ith 0 */
static void check_share(struct nb_pool *p, struct share_ctx *c, unsigned runs)
{
	c->caller = pthread_self();
	for (unsigned r = 0; r < runs; r++) {
		memset(c->hits, 0, sizeof(c->hits));
		for (unsigned i = 0; i < CONFIG_MAX_THREADS; i++)
			atomic_store(&c->in_run[i], 0);
		nb_pool_work_init(&c->work, SHARE_ITEMS, SHARE_CHUNK);
		nb_pool_share(p, share_fn, c);
		assert_int_equal(atomic_load(&c->in_run[0]), 1);
		for (unsigned i = 0; i < SHARE_ITEMS; i++)
			if (c->hits[i] != 1)
				fail_msg("run %u: item %u done %u times", r, i, c->hits[i]);
	}
	assert_int_equal(atomic_load(&c->bad), 0);
}

static void test_share_work_once(void **state)
{
	static const unsigned sizes[] = { 1, 2, 3, 8 };
	struct share_ctx *c = calloc(1, sizeof(*c));
	struct nb_pool p;
	(void)state;

	assert_non_null(c);
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		assert_int_equal(nb_pool_open(&p, sizes[k], unpinned), 0);
		check_share(&p, c, 2000);
		nb_pool_set_spin(&p, 0); /* the futex path too */
		check_share(&p, c, 300);
		/* shared and every-thread runs interleave */
		check_counts(&p, 3);
		check_share(&p, c, 3);
		nb_pool_close(&p);
	}
	/* the claim itself: chunks in order, the last one short, then none */
	uint64_t b, e;
	nb_pool_work_init(&c->work, 10, 4);
	assert_true(nb_pool_claim(&c->work, &b, &e) && b == 0 && e == 4);
	assert_true(nb_pool_claim(&c->work, &b, &e) && b == 4 && e == 8);
	assert_true(nb_pool_claim(&c->work, &b, &e) && b == 8 && e == 10);
	assert_false(nb_pool_claim(&c->work, &b, &e));
	nb_pool_work_init(&c->work, 0, 4);
	assert_false(nb_pool_claim(&c->work, &b, &e));
	free(c);
}

/* The tid of the pool's worker (2 threads): it reports it from a run. */
struct tid_ctx {
	atomic_int tid;
};

static void tid_fn(void *arg, unsigned ith, unsigned nth)
{
	struct tid_ctx *c = arg;
	(void)nth;

	if (ith)
		atomic_store(&c->tid, (int)syscall(SYS_gettid));
}

/* A child process that stops thread tid of this process with ptrace (the
 * thread stays stopped, as one the kernel never schedules; the others run
 * on) for hold_ms, or, with hold_ms 0, until a byte arrives on *release.
 * Returns the child's pid once the thread is stopped, or -1 when this
 * system forbids it. */
static pid_t stop_thread(int tid, unsigned hold_ms, int *release)
{
	int ready[2], go[2], status;
	char ok = 0;
	pid_t child;

	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0); /* Yama; else ignored */
	if (pipe(ready) || pipe(go))
		return -1;
	child = fork();
	if (child == 0) {
		struct timespec hold = { hold_ms / 1000, (long)(hold_ms % 1000) * 1000000 };
		char c = 0;
		/* if the test dies (the alarm), so does the tracer, which frees
		 * the thread; and EOF on go if the test closes it */
		prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
		close(ready[0]);
		close(go[1]);
		if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) == 0 &&
		    ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) == 0 &&
		    waitpid(tid, &status, __WALL) == tid && WIFSTOPPED(status))
			c = 1;
		if (write(ready[1], &c, 1) != 1 || !c)
			_exit(1);
		if (hold_ms)
			nanosleep(&hold, NULL);
		else if (read(go[0], &c, 1) < 0)
			_exit(1);
		ptrace(PTRACE_DETACH, tid, NULL, NULL);
		_exit(0);
	}
	close(ready[1]);
	close(go[0]);
	if (child < 0 || read(ready[0], &ok, 1) != 1 || !ok) {
		close(ready[0]);
		close(go[1]);
		if (child > 0)
			waitpid(child, &status, 0);
		return -1;
	}
	close(ready[0]);
	if (release)
		*release = go[1];
	else
		close(go[1]);
	return child;
}

/* The defect: a run waited for every worker, so a worker the kernel did
 * not schedule (its core busy with another process) held up each of the
 * ~150 runs of a token. A shared run must complete on the caller alone
 * while the worker cannot run at all; before, this hung (the alarm fails
 * the test). Once the worker runs again, it takes part again. */
static void test_share_without_a_stopped_worker(void **state)
{
	struct share_ctx *c = calloc(1, sizeof(*c));
	struct tid_ctx tc = { 0 };
	struct nb_pool p;
	int release, status;
	pid_t tracer;
	(void)state;

	assert_non_null(c);
	assert_int_equal(nb_pool_open(&p, 2, unpinned), 0);
	nb_pool_run(&p, tid_fn, &tc);
	assert_true(atomic_load(&tc.tid) > 0);
	tracer = stop_thread(atomic_load(&tc.tid), 0, &release);
	if (tracer < 0) {
		nb_pool_close(&p);
		free(c);
		printf("# ptrace not permitted here: skipped\n");
		skip();
	}
	alarm(60);
	check_share(&p, c, 1000);
	alarm(0);
	assert_int_equal(atomic_load(&c->workers_seen), 0); /* it never ran */
	assert_int_equal(write(release, "", 1), 1);
	close(release);
	assert_int_equal(waitpid(tracer, &status, 0), tracer);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	check_counts(&p, 10); /* every thread again: the worker is back */
	nb_pool_close(&p);
	free(c);
}

/* The worker joins, then is stopped holding the run for 100 ms: the
 * caller has to wait for it (it holds work), but then the worker rests:
 * it made the caller wait and lost its core. */
struct hold_ctx {
	atomic_int tid, inside, go;
	pid_t tracer;
};

static void hold_fn(void *arg, unsigned ith, unsigned nth)
{
	struct hold_ctx *c = arg;
	(void)nth;

	if (ith) {
		atomic_store(&c->tid, (int)syscall(SYS_gettid));
		atomic_store(&c->inside, 1);
		while (!atomic_load(&c->go))
			; /* the run's work, as far as the caller knows */
		return;
	}
	for (int i = 0; i < 5000 && !atomic_load(&c->inside); i++)
		usleep(1000);
	c->tracer = atomic_load(&c->inside) ? stop_thread(atomic_load(&c->tid), 100, NULL) : -1;
	atomic_store(&c->go, 1); /* seen once the tracer lets it run */
}

/* The affinity of the worker of a 2-thread pool. */
struct mask_ctx {
	cpu_set_t worker;
};

static void mask_fn(void *arg, unsigned ith, unsigned nth)
{
	struct mask_ctx *c = arg;
	(void)nth;

	if (ith)
		pthread_getaffinity_np(pthread_self(), sizeof(c->worker), &c->worker);
}

static void test_worker_late_rests(void **state)
{
	struct share_ctx *c = calloc(1, sizeof(*c));
	struct hold_ctx hc = { 0 };
	struct mask_ctx mc;
	cpu_set_t allowed;
	struct nb_pool p;
	int status;
	(void)state;

	assert_non_null(c);
	assert_int_equal(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
	assert_int_equal(nb_pool_open(&p, 2, NULL), 0); /* pinned, if 2 CPUs */
	nb_pool_set_spin(&p, 1u << 30); /* the worker spins: it joins */
	alarm(60);
	nb_pool_share(&p, hold_fn, &hc);
	alarm(0);
	if (hc.tracer < 0) {
		nb_pool_close(&p);
		free(c);
		printf("# worker did not join, or ptrace not permitted here: skipped\n");
		skip();
	}
	assert_int_equal(waitpid(hc.tracer, &status, 0), hc.tracer);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	for (int i = 0; i < 5000 && nb_pool_rests(&p) == 0; i++)
		usleep(1000);
	assert_true(nb_pool_rests(&p) >= 1);
	/* resting, it takes part in no shared run, and nb_pool_run wakes it */
	check_share(&p, c, 100);
	check_counts(&p, 10);
	/* and it let go of its CPU: it may run wherever the process may */
	nb_pool_run(&p, mask_fn, &mc);
	assert_true(CPU_EQUAL(&mc.worker, &allowed));
	nb_pool_close(&p);
	free(c);
}

/* Two threads spinning on the caller's CPU: the kernel's schedstat shows
 * the caller waiting to run most of the time, and the worker (on another
 * CPU) rests so that the kernel may move the caller to its core. */
struct spinner {
	pthread_t t;
	atomic_bool *stop;
};

static void *spin_main(void *arg)
{
	struct spinner *sp = arg;

	while (!atomic_load_explicit(sp->stop, memory_order_relaxed))
		;
	return NULL;
}

static void test_busy_caller_core_rests_workers(void **state)
{
	struct share_ctx *c = calloc(1, sizeof(*c));
	struct spinner sp[2];
	atomic_bool stop = false;
	cpu_set_t allowed, one, now;
	bool busy;
	int cpus[2] = { -1, -1 }, found = 0;
	struct nb_pool p;
	double t0;
	(void)state;

	assert_non_null(c);
	assert_int_equal(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
	for (int i = 0; i < CPU_SETSIZE && found < 2; i++)
		if (CPU_ISSET(i, &allowed))
			cpus[found++] = i;
	if (found < 2 || access("/proc/thread-self/schedstat", R_OK) != 0) {
		free(c);
		printf("# needs 2 CPUs and schedstat: skipped\n");
		skip();
	}
	CPU_ZERO(&one);
	CPU_SET(cpus[0], &one);
	for (int i = 0; i < 2; i++) {
		sp[i].stop = &stop;
		assert_int_equal(pthread_create(&sp[i].t, NULL, spin_main, &sp[i]), 0);
		assert_int_equal(pthread_setaffinity_np(sp[i].t, sizeof(one), &one), 0);
	}
	assert_int_equal(nb_pool_open(&p, 2, cpus), 0); /* the caller joins them, pinned */
	t0 = now_ns();
	while (!atomic_load(&p.caller_busy) && now_ns() - t0 < 10e9)
		check_share(&p, c, 1);
	busy = atomic_load(&p.caller_busy);
	CPU_ZERO(&now);
	/* the workers rest, and then the caller moves off (and lets go of
	 * its pin: the kernel may move it again) */
	while ((nb_pool_rests(&p) == 0 || !CPU_EQUAL(&now, &allowed)) && now_ns() - t0 < 10e9) {
		check_share(&p, c, 1);
		assert_int_equal(sched_getaffinity(0, sizeof(now), &now), 0);
	}
	atomic_store(&stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(sp[i].t, NULL);
	assert_true(busy);
	assert_true(nb_pool_rests(&p) > 0);
	assert_true(CPU_EQUAL(&now, &allowed));
	check_counts(&p, 10);
	nb_pool_close(&p);
	free(c);
}

/* ---- pinning, signals, lifetime ------------------------------------------ */

struct env_ctx {
	atomic_uint blocked_ok, pinned_to_1;
};

static void env_fn(void *arg, unsigned ith, unsigned nth)
{
	struct env_ctx *c = arg;
	sigset_t set;
	cpu_set_t cpus;
	(void)nth;

	if (ith == 0)
		return;
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	if (sigismember(&set, SIGINT) && sigismember(&set, SIGTERM) &&
	    sigismember(&set, SIGUSR1) && sigismember(&set, SIGCHLD))
		atomic_fetch_add(&c->blocked_ok, 1);
	/* ith is the order of joining, not the thread: any one worker */
	if (pthread_getaffinity_np(pthread_self(), sizeof(cpus), &cpus) == 0 &&
	    CPU_COUNT(&cpus) == 1 && CPU_ISSET(1, &cpus))
		atomic_fetch_add(&c->pinned_to_1, 1);
}

static void test_pinning_and_signals(void **state)
{
	const int cpus[3] = { -1, 1, 100000 % CPU_SETSIZE };
	cpu_set_t before, after;
	struct env_ctx c = { 0 };
	sigset_t mask_before, mask_after;
	struct nb_pool p;
	(void)state;

	assert_int_equal(sched_getaffinity(0, sizeof(before), &before), 0);
	pthread_sigmask(SIG_BLOCK, NULL, &mask_before);
	nb_log_set_level(NB_LOG_SILENT); /* the last CPU does not exist: a warning */
	assert_int_equal(nb_pool_open(&p, 3, cpus), 0);
	nb_log_set_level(NB_LOG_WARN);
	nb_pool_run(&p, env_fn, &c);
	assert_int_equal(atomic_load(&c.blocked_ok), 2);
	if (CPU_ISSET(1, &before))
		assert_int_equal(atomic_load(&c.pinned_to_1), 1);
	pthread_sigmask(SIG_BLOCK, NULL, &mask_after);
	assert_int_equal(sigismember(&mask_after, SIGINT), sigismember(&mask_before, SIGINT));
	nb_pool_close(&p);

	/* cpus NULL pins the caller to the first CPU it may use until close */
	if (CPU_COUNT(&before) >= 2) {
		int first = 0;
		while (!CPU_ISSET(first, &before))
			first++;
		assert_int_equal(nb_pool_open(&p, 2, NULL), 0);
		assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
		assert_int_equal(CPU_COUNT(&after), 1);
		assert_true(CPU_ISSET(first, &after));
		check_counts(&p, 10);
		nb_pool_close(&p);
	}
	assert_int_equal(sched_getaffinity(0, sizeof(after), &after), 0);
	assert_true(CPU_EQUAL(&before, &after));
}

static void test_lifetime(void **state)
{
	struct nb_pool p, zero;
	(void)state;

	nb_pool_close(NULL);
	memset(&zero, 0, sizeof(zero));
	nb_pool_close(&zero);

	/* close while idle, twice */
	assert_int_equal(nb_pool_open(&p, 3, unpinned), 0);
	nb_pool_close(&p);
	nb_pool_close(&p);
	assert_int_equal(nb_pool_size(&p), 0);

	/* close right after a run, and a run right after open (workers may
	 * not have started yet), many times to shake out start-up races */
	for (int i = 0; i < 300; i++) {
		assert_int_equal(nb_pool_open(&p, 1 + i % 4, unpinned), 0);
		if (i % 2)
			nb_pool_set_spin(&p, 0);
		check_counts(&p, 1 + i % 3);
		nb_pool_close(&p);
	}
}

static void test_bad_args(void **state)
{
	int cpus[3] = { -1, -2, -1 };
	struct nb_pool p;
	(void)state;

	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_pool_open(&p, 0, NULL), -NB_EINVAL);
	assert_int_equal(nb_pool_size(&p), 0);
	assert_int_equal(nb_pool_open(&p, 3, cpus), -NB_EINVAL);
	cpus[1] = CPU_SETSIZE;
	assert_int_equal(nb_pool_open(&p, 3, cpus), -NB_EINVAL);
	nb_pool_close(&p);
	/* too many threads are capped, not refused */
	assert_int_equal(nb_pool_open(&p, CONFIG_MAX_THREADS + 5, unpinned), 0);
	nb_log_set_level(NB_LOG_WARN);
	assert_int_equal(nb_pool_size(&p), CONFIG_MAX_THREADS);
	check_counts(&p, 20);
	nb_pool_close(&p);
}

/* ---- the static split ---------------------------------------------------- */

/* Checks the slices of [0, n) for nth threads against the definition:
 * contiguous in thread order, covering [0, n) exactly, aligned starts, and
 * sizes (in units of align) differing by at most one, larger ones first. */
static void check_split(uint64_t n, uint64_t align, unsigned nth)
{
	uint64_t a = align ? align : 1, prev_end = 0, min_u = UINT64_MAX, max_u = 0;

	for (unsigned i = 0; i < nth; i++) {
		uint64_t b, e, units;

		nb_pool_split_aligned(n, align, i, nth, &b, &e);
		if (b != prev_end || e < b || e > n)
			fail_msg("n %llu align %llu nth %u: thread %u got [%llu, %llu) after %llu",
				 (unsigned long long)n, (unsigned long long)align, nth, i,
				 (unsigned long long)b, (unsigned long long)e,
				 (unsigned long long)prev_end);
		if ((b % a != 0 && b != n) || (e % a != 0 && e != n))
			fail_msg("n %llu align %llu nth %u: thread %u [%llu, %llu) unaligned",
				 (unsigned long long)n, (unsigned long long)align, nth, i,
				 (unsigned long long)b, (unsigned long long)e);
		units = (e - b) / a + ((e - b) % a != 0);
		if (i > 0 && units > max_u)
			fail_msg("n %llu nth %u: slice %u larger than an earlier one",
				 (unsigned long long)n, nth, i);
		min_u = units < min_u ? units : min_u;
		max_u = units > max_u ? units : max_u;
		prev_end = e;
	}
	assert_true(prev_end == n);
	assert_true(max_u - min_u <= 1);
	/* beyond nth: empty */
	uint64_t b, e;
	nb_pool_split_aligned(n, align, nth, nth, &b, &e);
	assert_true(b == e);
}

static void test_split(void **state)
{
	static const uint64_t aligns[] = { 0, 1, 2, 3, 4, 16, 64 };
	static const uint64_t big[] = { UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 63,
					(1ull << 40) + 3, 4096 * 4096 + 5 };
	uint64_t b, e;
	(void)state;

	/* reference values, worked by hand */
	nb_pool_split(10, 0, 3, &b, &e);
	assert_true(b == 0 && e == 4);
	nb_pool_split(10, 1, 3, &b, &e);
	assert_true(b == 4 && e == 7);
	nb_pool_split(10, 2, 3, &b, &e);
	assert_true(b == 7 && e == 10);
	nb_pool_split(2, 1, 5, &b, &e); /* n < nth: one each, then empty */
	assert_true(b == 1 && e == 2);
	nb_pool_split(2, 4, 5, &b, &e);
	assert_true(b == 2 && e == 2);
	nb_pool_split_aligned(10, 4, 0, 2, &b, &e); /* 3 units of 4: 2 + 1 */
	assert_true(b == 0 && e == 8);
	nb_pool_split_aligned(10, 4, 1, 2, &b, &e);
	assert_true(b == 8 && e == 10);
	nb_pool_split_aligned(3, 4, 1, 2, &b, &e); /* one partial unit */
	assert_true(b == 3 && e == 3);
	nb_pool_split(5, 0, 0, &b, &e); /* nth 0: nothing, no division */
	assert_true(b == e);
	nb_pool_split_aligned(UINT64_MAX, 64, 1, 2, &b, &e);
	assert_true(e == UINT64_MAX && b % 64 == 0);

	for (uint64_t n = 0; n <= 300; n++)
		for (size_t k = 0; k < sizeof(aligns) / sizeof(aligns[0]); k++)
			for (unsigned nth = 1; nth <= 20; nth++)
				check_split(n, aligns[k], nth);
	for (size_t i = 0; i < sizeof(big) / sizeof(big[0]); i++)
		for (size_t k = 0; k < sizeof(aligns) / sizeof(aligns[0]); k++) {
			check_split(big[i], aligns[k], 1);
			check_split(big[i], aligns[k], 7);
			check_split(big[i], aligns[k], 256);
		}
}

int main(void)
{
	for (int i = 0; i < CONFIG_MAX_THREADS; i++)
		unpinned[i] = -1;
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split),
		cmocka_unit_test(test_bad_args),
		cmocka_unit_test(test_each_id_once),
		cmocka_unit_test(test_parallel_results_exact),
		cmocka_unit_test(test_dispatch_latency),
		cmocka_unit_test(test_run_does_not_allocate),
		cmocka_unit_test(test_oversubscribed),
		cmocka_unit_test(test_wake_after_idle),
		cmocka_unit_test(test_share_work_once),
		cmocka_unit_test(test_share_without_a_stopped_worker),
		cmocka_unit_test(test_worker_late_rests),
		cmocka_unit_test(test_busy_caller_core_rests_workers),
		cmocka_unit_test(test_pinning_and_signals),
		cmocka_unit_test(test_lifetime),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
