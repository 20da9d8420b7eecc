/* Worker thread pool: dispatch and joining through one state word,
 * completion by a count of finished workers, each waited on by spinning and
 * then sleeping on a futex.
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
 *   wake. So the dispatcher skips the syscall when nobody sleeps.
 */
#include "runtime/model/pool.h"

#include "runtime/base/err.h"
#include "runtime/base/kconfig.h"
#include "runtime/base/log.h"

#include <limits.h>
#include <stdbool.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
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

#define ST_JOINED 0xffu /* workers joined: at most CONFIG_MAX_THREADS - 1 */
#define ST_OPEN (1u << 8)
#define ST_GEN_SHIFT 9

_Static_assert(sizeof(atomic_uint) == 4, "a futex word is 32 bits");
_Static_assert(CONFIG_MAX_THREADS - 1 <= ST_JOINED, "joined workers fit the state word");

static unsigned gen_of(unsigned state)
{
	return state >> ST_GEN_SHIFT;
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

/* Errors (EAGAIN: the word already changed, EINTR) need no handling: every
 * caller re-checks its condition in a loop. */
static void futex_wait(atomic_uint *word, unsigned val)
{
	syscall(SYS_futex, (void *)word, NB_FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(struct nb_pool *p, atomic_uint *word, int n)
{
	atomic_fetch_add_explicit(&p->n_wakes, 1, memory_order_relaxed);
	syscall(SYS_futex, (void *)word, NB_FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Returns once a relaxed load saw *word != val; the caller re-reads it with
 * an acquire load. Spins for the budget, then advertises itself in *asleep
 * and sleeps (see the top of the file for why no wake-up can be lost). */
static void wait_while(struct nb_pool *p, atomic_uint *word, unsigned val, atomic_uint *asleep)
{
	unsigned spin = atomic_load_explicit(&p->spin, memory_order_relaxed);

	for (unsigned i = 0; i < spin; i++) {
		if (atomic_load_explicit(word, memory_order_relaxed) != val)
			return;
		cpu_relax();
	}
	atomic_fetch_add_explicit(asleep, 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_seq_cst);
	while (atomic_load_explicit(word, memory_order_relaxed) == val) {
		atomic_fetch_add_explicit(&p->n_sleeps, 1, memory_order_relaxed);
		futex_wait(word, val);
	}
	/* relaxed: a dispatcher that still sees us asleep only wakes in vain */
	atomic_fetch_sub_explicit(asleep, 1, memory_order_relaxed);
}

/* Changes *word (already done by the caller), then wakes sleepers if any. */
static void wake_sleepers(struct nb_pool *p, atomic_uint *word, atomic_uint *asleep)
{
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(asleep, memory_order_relaxed))
		futex_wake(p, word, INT_MAX);
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

static void *worker_main(void *v)
{
	struct nb_pool_worker *w = v;
	struct nb_pool *p = w->pool;
	unsigned seen = 0, s, ith; /* state at creation: no run before open returns */

	for (;;) {
		while (gen_of(s = atomic_load_explicit(&p->state, memory_order_acquire)) == seen)
			wait_while(p, &p->state, s, &p->workers_asleep);
		seen = gen_of(s);
		if (atomic_load_explicit(&p->stop, memory_order_relaxed))
			return NULL;
		ith = join(p, s, seen);
		if (!ith)
			continue; /* the caller got there first: nothing of it is ours */
		p->fn(p->arg, ith, p->n_threads);
		finish(p);
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
static bool oversubscribed(unsigned n_threads)
{
	cpu_set_t allowed;

	return sched_getaffinity(0, sizeof(allowed), &allowed) == 0 &&
	       n_threads > (unsigned)CPU_COUNT(&allowed);
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

/* The CPU of thread i: cpus[i], or by default i when the build pins
 * (CONFIG_POOL_PIN), else none. */
static int cpu_of(const int *cpus, unsigned i)
{
	if (cpus)
		return cpus[i];
	return IS_ENABLED(CONFIG_POOL_PIN) ? (int)i : -1;
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
		int cpu = cpu_of(cpus, i);

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
		if (cpu >= 0)
			pin(w->thread, cpu, i);
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	return err;
}

/* ---- public ------------------------------------------------------------- */

int nb_pool_open(struct nb_pool *p, unsigned n_threads, const int *cpus)
{
	int err;

	memset(p, 0, sizeof(*p));
	err = check_args(&n_threads, cpus);
	if (err)
		return err;
	atomic_init(&p->state, 0);
	atomic_init(&p->stop, false);
	atomic_init(&p->done, 0);
	atomic_init(&p->caller_asleep, 0);
	atomic_init(&p->workers_asleep, 0);
	atomic_init(&p->spin, NB_POOL_SPIN_DEFAULT);
	atomic_init(&p->n_sleeps, 0);
	atomic_init(&p->n_wakes, 0);
	p->n_threads = n_threads;
	if (oversubscribed(n_threads))
		atomic_init(&p->spin, 0);
	pin_caller(p, cpu_of(cpus, 0));
	err = start_workers(p, cpus);
	if (err)
		nb_pool_close(p);
	return err;
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
		for (unsigned i = 1; i <= p->n_started; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
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

static void wait_done(struct nb_pool *p, unsigned n)
{
	unsigned d;

	while ((d = atomic_load_explicit(&p->done, memory_order_acquire)) != n)
		wait_while(p, &p->done, d, &p->caller_asleep);
}

void nb_pool_share(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned nth = p->n_threads, joined;

	if (nth <= 1) {
		fn(arg, 0, 1);
		return;
	}
	dispatch(p, fn, arg);
	fn(arg, 0, nth);
	/* every piece is claimed: a worker joining now would find nothing */
	joined = atomic_fetch_and_explicit(&p->state, ~ST_OPEN, memory_order_relaxed) & ST_JOINED;
	wait_done(p, joined);
}

void nb_pool_run(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned nth = p->n_threads;

	if (nth <= 1) {
		fn(arg, 0, 1);
		return;
	}
	dispatch(p, fn, arg);
	fn(arg, 0, nth);
	wait_done(p, nth - 1);
	atomic_fetch_and_explicit(&p->state, ~ST_OPEN, memory_order_relaxed);
}

void nb_pool_set_spin(struct nb_pool *p, unsigned iterations)
{
	atomic_store_explicit(&p->spin, iterations, memory_order_relaxed);
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
