/* Worker thread pool: dispatch and joining through one state word,
 * completion by a count of finished workers, each waited on by spinning and
 * then sleeping on a futex; workers that find their core busy with other
 * work rest.
 *
 * The state word is gen << 9 | OPEN | joined. A run sets it to the next
 * generation, open, none joined. A worker that sees a new generation joins
 * by a CAS that adds one to joined while the word is still open and of
 * that generation, and gets joined + 1 as its ith; the caller ends an
 * nb_pool_share offer by clearing OPEN with a fetch_and, which returns how
 * many joined, and waits for that many to finish. The CAS and the fetch_and
 * act on one word, so a worker either joined before the offer ended (and
 * is waited for) or cannot join at all. nb_pool_run waits for all
 * n_threads - 1 instead. The generation has 23 bits: a worker compares it
 * only with the last one it saw, and a worker that had missed exactly 2^23
 * runs (hours of decode without once getting a CPU) and so took the new
 * one for the old would skip one run -- fatal only to an nb_pool_run.
 *
 * Resting. A shared run never waits for a worker that has not joined, but
 * it must wait for one that joined and was then preempted holding work,
 * until the kernel runs it again: with another process busy on its core,
 * at the end of each of its time slices (scheduler ticks: 4 ms at HZ 250).
 * That costs the caller more than the worker's half of a core brings, so
 * each worker measures what its core gives it, over windows of ASSESS_NS
 * (PROBE_NS for the first one and after a rest):
 * - lost: the time it was awake but not running (wall time minus its
 *   sleeps minus its CPU time); above 2/5 of the time awake, its core is
 *   busy with something else (another process, or the caller itself when
 *   the kernel has put them on one core);
 * - late: how long the caller waited for it after ending each run's
 *   offer; above 1/6 of the window, its preemptions cost more than it
 *   does (a free core: about 1%; a shared one: 30 to 50%).
 * Either makes it rest: sleep, joining nothing, for REST_MIN_NS, twice as
 * long as the last rest if that ended less than REST_AGAIN_NS ago, up to
 * REST_MAX_NS. A resting worker leaves its core to the other process and
 * the pool runs as if opened with fewer threads, which is what the cores
 * give; a free core ends the rests at the next probe. The caller cannot
 * rest, but when its own core is busy (the kernel's count of the time it
 * waited to run: schedstat) the workers on the other cores keep the
 * kernel from moving it there, so they rest too (caller_busy), and the
 * kernel moves it as it would a single thread. nb_pool_run wakes resting
 * workers: it needs every one.
 *
 * Memory ordering, in one place:
 * - Dispatch: the caller writes fn, arg and done with plain/relaxed
 *   stores, then stores the state word with release. A worker's joining
 *   CAS is an acquire that reads that store or a later CAS of another
 *   worker (RMWs continue the release sequence), so it sees fn, arg and
 *   done of this run.
 * - Completion: each worker's fetch_add on done is a release; they form
 *   one release sequence, so the caller's acquire load that reads the
 *   count it waits for makes every joined worker's writes (and its reads
 *   of fn/arg, which must finish before the next run rewrites them) happen
 *   before the run returns. A worker that did not join reads nothing of
 *   the run. (Acquire loads rather than acquire fences: the same cost, and
 *   ThreadSanitizer understands them.)
 * - Sleeping (the only seq_cst): a sleeper increments its "asleep" counter,
 *   a seq_cst fence, then re-reads the word it waits on; a waker changes
 *   the word, a seq_cst fence, then reads the counter. The two fences are
 *   totally ordered, so either the sleeper sees the new word and does not
 *   sleep, or the waker sees the counter and calls FUTEX_WAKE. A sleeper
 *   that read the old word but has not yet entered the kernel is covered by
 *   FUTEX_WAIT itself, which re-checks the word atomically against the
 *   wake. So the dispatcher skips the syscall when nobody sleeps. Resting
 *   workers sleep the same way on the gate word, which nb_pool_run bumps
 *   after its dispatch (release): a rester that reads the new gate (acquire)
 *   also sees the run and the everyone flag, and one that read the old gate
 *   is woken.
 */
#include "runtime/model/pool.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

/* Kernel ABI values; musl's headers have no futex.h. */
#define NB_FUTEX_WAIT_PRIVATE (0 | 128)
#define NB_FUTEX_WAKE_PRIVATE (1 | 128)

/* musl's default thread stack is 128 KiB, glibc's 8 MiB: one size for both,
 * with room for kernels' tiles and the sanitizers' redzones. */
#define NB_POOL_STACK (1u << 20)

/* The caller's spin while joined workers finish: ~60 us, several chunks
 * of work; a worker later than that was most likely preempted, and the
 * caller's core is better left to the kernel (it may run that worker). */
#define TAIL_SPIN 4096u

/* Resting (see the top): the windows (a long one of 16 ticks at HZ 250, a
 * probe of 2), the lost and late shares that make a worker rest, the
 * rests, and how often the caller looks at its clock (shared runs). */
#define ASSESS_NS 64000000ull
#define PROBE_NS 8000000ull
#define LOST_SHARE 2u /* of LOST_OF */
#define LOST_OF 5u
#define LATE_OF 6u
#define REST_MIN_NS 32000000ull
#define REST_MAX_NS 2048000000ull
#define REST_AGAIN_NS (2 * ASSESS_NS)
#define WATCH_RUNS 64u

#define ST_JOINED 0xffu /* workers joined: at most CONFIG_MAX_THREADS - 1 */
#define ST_OPEN (1u << 8)
#define ST_GEN_SHIFT 9

_Static_assert(sizeof(atomic_uint) == 4, "a futex word is 32 bits");
_Static_assert(CONFIG_MAX_THREADS - 1 <= ST_JOINED, "joined workers fit the state word");

static unsigned gen_of(unsigned state)
{
	return state >> ST_GEN_SHIFT;
}

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- waiting ------------------------------------------------------------ */

/* A spin-wait hint: it lets the sibling hyperthread run and saves power.
 * On aarch64 "yield" is a no-op on most Cortex-A cores; "isb" really stalls
 * for a few dozen cycles, which is what a spin loop wants. */
static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	_mm_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("isb" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

/* Errors (EAGAIN: the word already changed, EINTR, ETIMEDOUT) need no
 * handling: every caller re-checks its condition in a loop. timeout_ns 0:
 * none. */
static void futex_wait(atomic_uint *word, unsigned val, uint64_t timeout_ns)
{
	struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };

	syscall(SYS_futex, (void *)word, NB_FUTEX_WAIT_PRIVATE, val, timeout_ns ? &ts : NULL, NULL,
		0);
}

static void futex_wake(struct nb_pool *p, atomic_uint *word, int n)
{
	atomic_fetch_add_explicit(&p->n_wakes, 1, memory_order_relaxed);
	syscall(SYS_futex, (void *)word, NB_FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Returns once a relaxed load saw *word != val (the caller re-reads it with
 * an acquire load), with the time it slept, 0 if it did not. Spins for the
 * budget, then advertises itself in *asleep and sleeps (see the top of the
 * file for why no wake-up can be lost). */
static uint64_t wait_while(struct nb_pool *p, atomic_uint *word, unsigned val,
			   atomic_uint *asleep, unsigned spin)
{
	uint64_t t0;

	for (unsigned i = 0; i < spin; i++) {
		if (atomic_load_explicit(word, memory_order_relaxed) != val)
			return 0;
		cpu_relax();
	}
	t0 = clock_ns(CLOCK_MONOTONIC);
	atomic_fetch_add_explicit(asleep, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	while (atomic_load_explicit(word, memory_order_relaxed) == val) {
		atomic_fetch_add_explicit(&p->n_sleeps, 1, memory_order_relaxed);
		futex_wait(word, val, 0);
	}
	/* relaxed: a dispatcher that still sees us asleep only wakes in vain */
	atomic_fetch_sub_explicit(asleep, 1, memory_order_relaxed);
	return clock_ns(CLOCK_MONOTONIC) - t0 + 1;
}

/* Changes *word (already done by the caller), then wakes sleepers if any. */
static void wake_sleepers(struct nb_pool *p, atomic_uint *word, atomic_uint *asleep)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(asleep, memory_order_relaxed))
		futex_wake(p, word, INT_MAX);
}

/* ---- the caller's watch on its core ----------------------------------- */

/* Nanoseconds the calling thread has waited on a run queue (runnable, not
 * running) since it started, from the kernel's schedstat; false if the
 * kernel has none (CONFIG_SCHED_INFO). The file is the thread's own, so it
 * is opened again when another thread makes the runs. */
static bool run_delay(struct nb_pool *p, uint64_t *delay)
{
	char buf[96];
	unsigned long long run, wait;
	ssize_t n;

	if (p->watch.fd == -2 || !pthread_equal(p->watch.thread, pthread_self())) {
		if (p->watch.fd >= 0)
			close(p->watch.fd);
		p->watch.thread = pthread_self();
		p->watch.fd = open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
	}
	if (p->watch.fd < 0)
		return false;
	n = pread(p->watch.fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return false;
	buf[n] = 0;
	if (sscanf(buf, "%llu %llu", &run, &wait) != 2)
		return false;
	*delay = wait;
	return true;
}

/* Moves the calling thread off its busy core: for a moment it may run
 * anywhere it could but there (the kernel migrates it at once, to a core
 * whose worker now rests), then anywhere it could before; a pin of ours it
 * loses for good, as workers do. Left to itself, the kernel took a fifth
 * of a second to move it. */
static void move_caller(struct nb_pool *p)
{
	const pthread_t self = pthread_self();
	const bool ours = p->caller_pinned && pthread_equal(p->caller, self);
	cpu_set_t mask, away;
	int cpu = sched_getcpu();

	if (ours)
		mask = p->caller_mask;
	else if (pthread_getaffinity_np(self, sizeof(mask), &mask))
		return;
	away = mask;
	if (cpu >= 0 && cpu < CPU_SETSIZE)
		CPU_CLR(cpu, &away);
	if (CPU_COUNT(&away) == 0)
		return;
	pthread_setaffinity_np(self, sizeof(away), &away);
	if (pthread_setaffinity_np(self, sizeof(mask), &mask) == 0 && ours)
		p->caller_pinned = 0;
}

/* Every WATCH_RUNS shared runs, and at most once per ASSESS_NS, sets
 * caller_busy from the time the caller waited to run (see the top): the
 * caller's CPU time would not do, as it also sleeps outside the pool
 * (waiting for requests). Without schedstat, never set. */
static void watch_caller(struct nb_pool *p)
{
	uint64_t now, delay, wall;

	p->watch.shared++;
	if (++p->watch.runs < WATCH_RUNS)
		return;
	p->watch.runs = 0;
	now = clock_ns(CLOCK_MONOTONIC);
	wall = now - p->watch.wall0;
	if (wall < ASSESS_NS)
		return;
	if (run_delay(p, &delay)) {
		bool busy = p->watch.wall0 && delay > p->watch.delay0 &&
			    (delay - p->watch.delay0) * LOST_OF > wall * LOST_SHARE;
		atomic_store_explicit(&p->caller_busy, busy, memory_order_relaxed);
		p->watch.delay0 = delay;
		/* with workers about, they may be what keeps it waiting: they
		 * rest first, and a window (nearly) without them decides */
		if (busy && p->watch.joined * 8 < p->watch.shared)
			move_caller(p);
	}
	p->watch.wall0 = now;
	p->watch.joined = p->watch.shared = 0;
}

/* ---- workers ------------------------------------------------------------ */

/* Joins the run of generation gen if it is still open: ith, or 0 if not. */
static unsigned join(struct nb_pool *p, unsigned s, unsigned gen)
{
	while (gen_of(s) == gen && (s & ST_OPEN)) {
		if (atomic_compare_exchange_weak_explicit(&p->state, &s, s + 1,
							 memory_order_acquire, memory_order_relaxed))
			return (s & ST_JOINED) + 1;
	}
	return 0;
}

/* Counts this worker out of the run; the caller may be asleep on done. */
static void finish(struct nb_pool *p)
{
	atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	wake_sleepers(p, &p->done, &p->caller_asleep);
}

static void start_window(struct nb_pool_worker *w, bool probe)
{
	w->probing = probe;
	w->late_ns = w->slept_ns = 0;
	w->wall0 = clock_ns(CLOCK_MONOTONIC);
	w->cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

/* True when the window is over and the worker lost too much of it or
 * made the caller wait too long (see the top). */
static bool core_busy(struct nb_pool_worker *w)
{
	uint64_t wall = clock_ns(CLOCK_MONOTONIC) - w->wall0, used, lost, awake, late_ns = w->late_ns;

	if (wall < (w->probing ? PROBE_NS : ASSESS_NS))
		return false;
	used = clock_ns(CLOCK_THREAD_CPUTIME_ID) - w->cpu0;
	awake = wall > w->slept_ns ? wall - w->slept_ns : 0;
	lost = awake > used ? awake - used : 0;
	/* asleep most of it (the pool idle), a window tells little: the next
	 * one is no longer */
	start_window(w, w->probing && awake * 4 <= wall);
	return (awake * 4 > wall && lost * LOST_OF > awake * LOST_SHARE) || late_ns * LATE_OF > wall;
}

/* How long the caller has waited for us since it ended this run's offer
 * (0 while it has not). */
static uint64_t kept_waiting(struct nb_pool *p)
{
	uint64_t at = atomic_load_explicit(&p->closed_at, memory_order_relaxed), now;

	if (!at)
		return 0;
	now = clock_ns(CLOCK_MONOTONIC);
	return now > at ? now - at : 0;
}

/* A pinned worker that finds its core busy drops its pin for good: the
 * kernel may then run it on any CPU the pool may use. */
static void let_go(struct nb_pool *p, struct nb_pool_worker *w)
{
	if (w->pinned && CPU_COUNT(&p->allowed) &&
	    pthread_setaffinity_np(pthread_self(), sizeof(p->allowed), &p->allowed) == 0)
		w->pinned = false;
}

/* Sleeps for the worker's rest, or until a run that needs every worker
 * (any generation after seen, with everyone set) or the pool's close. A
 * rest that comes soon after the last one is twice as long. */
static void rest(struct nb_pool *p, struct nb_pool_worker *w, unsigned seen)
{
	uint64_t now = clock_ns(CLOCK_MONOTONIC), end;
	unsigned g;

	if (w->rest_end && now - w->rest_end < REST_AGAIN_NS)
		w->rest_ns = w->rest_ns * 2 < REST_MAX_NS ? w->rest_ns * 2 : REST_MAX_NS;
	else
		w->rest_ns = REST_MIN_NS;
	end = now + w->rest_ns;
	let_go(p, w);
	atomic_fetch_add_explicit(&p->n_rests, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->resting, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	for (;;) {
		g = atomic_load_explicit(&p->gate, memory_order_acquire);
		if (atomic_load_explicit(&p->stop, memory_order_relaxed) ||
		    (atomic_load_explicit(&p->everyone, memory_order_relaxed) &&
		     gen_of(atomic_load_explicit(&p->state, memory_order_relaxed)) != seen))
			break;
		now = clock_ns(CLOCK_MONOTONIC);
		if (now >= end)
			break;
		futex_wait(&p->gate, g, end - now);
	}
	atomic_fetch_sub_explicit(&p->resting, 1, memory_order_relaxed);
	w->rest_end = clock_ns(CLOCK_MONOTONIC);
	start_window(w, true);
}

/* A worker over the active cap sleeps on the gate until the cap takes it
 * again, a run needs everyone (any generation after seen), or the close. */
static void park(struct nb_pool *p, struct nb_pool_worker *w, unsigned seen)
{
	unsigned g;

	atomic_fetch_add_explicit(&p->resting, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	for (;;) {
		g = atomic_load_explicit(&p->gate, memory_order_acquire);
		if (atomic_load_explicit(&p->stop, memory_order_relaxed) ||
		    w->index < atomic_load_explicit(&p->active, memory_order_relaxed) ||
		    (atomic_load_explicit(&p->everyone, memory_order_relaxed) &&
		     gen_of(atomic_load_explicit(&p->state, memory_order_relaxed)) != seen))
			break;
		futex_wait(&p->gate, g, 0);
	}
	atomic_fetch_sub_explicit(&p->resting, 1, memory_order_relaxed);
	start_window(w, true);
}

static void *worker_main(void *v)
{
	struct nb_pool_worker *w = v;
	struct nb_pool *p = w->pool;
	unsigned seen = 0, s, ith; /* state at creation: no run before open returns */
	bool shared;

	start_window(w, true);
	for (;;) {
		while (gen_of(s = atomic_load_explicit(&p->state, memory_order_acquire)) == seen)
			w->slept_ns += wait_while(p, &p->state, s, &p->workers_asleep,
						  atomic_load_explicit(&p->spin, memory_order_relaxed));
		seen = gen_of(s);
		if (atomic_load_explicit(&p->stop, memory_order_relaxed))
			return NULL;
		if (w->index >= atomic_load_explicit(&p->active, memory_order_relaxed) &&
		    !atomic_load_explicit(&p->everyone, memory_order_relaxed)) {
			park(p, w, seen);
			continue;
		}
		ith = join(p, s, seen);
		if (!ith)
			continue; /* the caller got there first: nothing of it is ours */
		/* resting is for shared runs: nb_pool_run needs everyone anyway */
		shared = !atomic_load_explicit(&p->everyone, memory_order_relaxed);
		p->fn(p->arg, ith, p->n_threads);
		w->late_ns += kept_waiting(p);
		finish(p);
		if (shared && (core_busy(w) ||
			       atomic_load_explicit(&p->caller_busy, memory_order_relaxed)))
			rest(p, w, seen);
	}
}

static int pin(pthread_t t, int cpu, unsigned ith)
{
	cpu_set_t set;
	int rc;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	rc = pthread_setaffinity_np(t, sizeof(set), &set);
	if (rc)
		nb_warn("pool: cannot pin thread %u to CPU %d (%s); it runs unpinned", ith, cpu,
			strerror(rc));
	return rc == 0;
}

static int check_args(unsigned *n_threads, const int *cpus)
{
	if (*n_threads == 0) {
		nb_err("pool: 0 threads; need at least the calling thread");
		return -NB_EINVAL;
	}
	if (*n_threads > CONFIG_MAX_THREADS) {
		nb_warn("pool: %u threads capped at CONFIG_MAX_THREADS=%d", *n_threads,
			CONFIG_MAX_THREADS);
		*n_threads = CONFIG_MAX_THREADS;
	}
	for (unsigned i = 0; cpus && i < *n_threads; i++) {
		if (cpus[i] < -1 || cpus[i] >= CPU_SETSIZE) {
			nb_err("pool: cpus[%u] = %d outside -1..%d", i, cpus[i], CPU_SETSIZE - 1);
			return -NB_EINVAL;
		}
	}
	return 0;
}

/* More threads than CPUs we may run on: a spinning thread would only burn
 * the time slice that the thread it waits for needs, so sleep at once. */
static bool oversubscribed(const struct nb_pool *p)
{
	return p->n_threads > (unsigned)CPU_COUNT(&p->allowed);
}

static void pin_caller(struct nb_pool *p, int cpu)
{
	p->caller = pthread_self();
	if (cpu < 0)
		return;
	if (pthread_getaffinity_np(p->caller, sizeof(p->caller_mask), &p->caller_mask)) {
		nb_warn("pool: cannot read the calling thread's affinity; leaving it unpinned");
		return;
	}
	p->caller_pinned = pin(p->caller, cpu, 0);
}

void nb_pool_default_cpus(int *cpus, unsigned n_threads)
{
	cpu_set_t allowed;
	unsigned i = 0;

	/* one thread gains nothing from a pin and would lose the kernel's
	 * moving it off a busy core */
	if (n_threads > 1 && sched_getaffinity(0, sizeof(allowed), &allowed) == 0 &&
	    n_threads <= (unsigned)CPU_COUNT(&allowed))
		for (int c = 0; c < CPU_SETSIZE && i < n_threads; c++)
			if (CPU_ISSET(c, &allowed))
				cpus[i++] = c;
	for (; i < n_threads; i++)
		cpus[i] = -1;
}

/* Workers inherit the creator's signal mask: creating them with every
 * signal blocked leaves no window in which one could take a signal. */
static int start_workers(struct nb_pool *p, const int *cpus)
{
	pthread_attr_t attr;
	sigset_t all, old;
	int rc, err = 0;

	if (pthread_attr_init(&attr)) {
		nb_err("pool: pthread_attr_init failed");
		return -NB_ENOMEM;
	}
	pthread_attr_setstacksize(&attr, NB_POOL_STACK);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	for (unsigned i = 1; i < p->n_threads; i++) {
		struct nb_pool_worker *w = &p->workers[i];

		w->pool = p;
		w->index = i;
		rc = pthread_create(&w->thread, &attr, worker_main, w);
		if (rc) {
			nb_err("pool: cannot start worker %u of %u: %s", i, p->n_threads - 1,
			       strerror(rc));
			err = -NB_ENOMEM;
			break;
		}
		p->n_started++;
		/* read by the worker only in a run: after open returns */
		w->pinned = cpus[i] >= 0 && pin(w->thread, cpus[i], i);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return err;
}

/* ---- public ------------------------------------------------------------- */

int nb_pool_open(struct nb_pool *p, unsigned n_threads, const int *cpus)
{
	int defaults[CONFIG_MAX_THREADS];
	int err;

	memset(p, 0, sizeof(*p));
	err = check_args(&n_threads, cpus);
	if (err)
		return err;
	atomic_init(&p->state, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->everyone, false);
	atomic_init(&p->gate, 0);
	atomic_init(&p->done, 0);
	atomic_init(&p->caller_asleep, 0);
	atomic_init(&p->workers_asleep, 0);
	atomic_init(&p->resting, 0);
	atomic_init(&p->spin, NB_POOL_SPIN_DEFAULT);
	atomic_init(&p->n_sleeps, 0);
	atomic_init(&p->n_wakes, 0);
	atomic_init(&p->n_rests, 0);
	atomic_init(&p->closed_at, 0);
	atomic_init(&p->caller_busy, false);
	atomic_init(&p->active, CONFIG_MAX_THREADS);
	p->watch.fd = -2;
	p->n_threads = n_threads;
	if (sched_getaffinity(0, sizeof(p->allowed), &p->allowed))
		CPU_ZERO(&p->allowed); /* unknown: never oversubscribed, nothing to let go to */
	if (oversubscribed(p))
		atomic_init(&p->spin, 0);
	if (!cpus) {
		nb_pool_default_cpus(defaults, n_threads);
		cpus = defaults;
	}
	pin_caller(p, cpus[0]);
	err = start_workers(p, cpus);
	if (err)
		nb_pool_close(p);
	return err;
}

/* Bumps the gate (release: see the top) and wakes the resting workers. */
static void open_gate(struct nb_pool *p)
{
	atomic_fetch_add_explicit(&p->gate, 1, memory_order_release);
	wake_sleepers(p, &p->gate, &p->resting);
}

void nb_pool_close(struct nb_pool *p)
{
	if (!p || p->n_threads == 0)
		return;
	if (p->n_started) {
		unsigned s = atomic_load_explicit(&p->state, memory_order_relaxed);

		atomic_store_explicit(&p->stop, true, memory_order_relaxed);
		atomic_store_explicit(&p->state, (gen_of(s) + 1) << ST_GEN_SHIFT,
				      memory_order_release);
		wake_sleepers(p, &p->state, &p->workers_asleep);
		open_gate(p);
		for (unsigned i = 1; i <= p->n_started; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
	if (p->watch.fd >= 0)
		close(p->watch.fd);
	/* another thread's pthread_t may be stale: restore only our own */
	if (p->caller_pinned && pthread_equal(p->caller, pthread_self()))
		pthread_setaffinity_np(p->caller, sizeof(p->caller_mask), &p->caller_mask);
	memset(p, 0, sizeof(*p));
}

/* Opens the next generation to the workers. Between runs the state word is
 * still: the last run's offer ended, or every worker joined it. */
static void dispatch(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned s = atomic_load_explicit(&p->state, memory_order_relaxed);

	p->fn = fn;
	p->arg = arg;
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	atomic_store_explicit(&p->state, (gen_of(s) + 1) << ST_GEN_SHIFT | ST_OPEN,
			      memory_order_release);
	wake_sleepers(p, &p->state, &p->workers_asleep);
}

static void wait_done(struct nb_pool *p, unsigned n, unsigned spin)
{
	unsigned d;

	while ((d = atomic_load_explicit(&p->done, memory_order_acquire)) != n)
		wait_while(p, &p->done, d, &p->caller_asleep, spin);
}

void nb_pool_share(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned nth = p->n_threads, joined, spin;

	if (nth <= 1) {
		fn(arg, 0, 1);
		return;
	}
	watch_caller(p);
	spin = atomic_load_explicit(&p->spin, memory_order_relaxed);
	atomic_store_explicit(&p->closed_at, 0, memory_order_relaxed);
	dispatch(p, fn, arg);
	fn(arg, 0, nth);
	/* every piece is claimed: a worker joining now would find nothing */
	joined = atomic_fetch_and_explicit(&p->state, ~ST_OPEN, memory_order_relaxed) & ST_JOINED;
	p->watch.joined += joined;
	if (joined) {
		atomic_store_explicit(&p->closed_at, clock_ns(CLOCK_MONOTONIC), memory_order_relaxed);
		wait_done(p, joined, spin < TAIL_SPIN ? spin : TAIL_SPIN);
	}
}

void nb_pool_run(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned nth = p->n_threads;

	if (nth <= 1) {
		fn(arg, 0, 1);
		return;
	}
	atomic_store_explicit(&p->everyone, true, memory_order_relaxed);
	atomic_store_explicit(&p->closed_at, 0, memory_order_relaxed);
	dispatch(p, fn, arg);
	open_gate(p);
	fn(arg, 0, nth);
	wait_done(p, nth - 1, atomic_load_explicit(&p->spin, memory_order_relaxed));
	atomic_fetch_and_explicit(&p->state, ~ST_OPEN, memory_order_relaxed);
	atomic_store_explicit(&p->everyone, false, memory_order_relaxed);
}

void nb_pool_set_spin(struct nb_pool *p, unsigned iterations)
{
	atomic_store_explicit(&p->spin, iterations, memory_order_relaxed);
}

void nb_pool_set_active(struct nb_pool *p, unsigned n)
{
	unsigned old;

	if (p->n_threads == 0)
		return;
	n = n < 1 ? 1 : n > p->n_threads ? p->n_threads : n;
	old = atomic_exchange_explicit(&p->active, n, memory_order_relaxed);
	if (n > old)
		open_gate(p);
}

unsigned nb_pool_active(struct nb_pool *p)
{
	unsigned n = atomic_load_explicit(&p->active, memory_order_relaxed);

	return n < p->n_threads ? n : p->n_threads;
}

unsigned nb_pool_size(const struct nb_pool *p)
{
	return p->n_threads;
}

void nb_pool_stats(struct nb_pool *p, unsigned long *sleeps, unsigned long *wakes)
{
	*sleeps = atomic_load_explicit(&p->n_sleeps, memory_order_relaxed);
	*wakes = atomic_load_explicit(&p->n_wakes, memory_order_relaxed);
}

unsigned long nb_pool_rests(struct nb_pool *p)
{
	return atomic_load_explicit(&p->n_rests, memory_order_relaxed);
}
