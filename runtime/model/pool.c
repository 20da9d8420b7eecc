/* Worker thread pool: dispatch by generation counter, completion by
 * countdown, each waited on by spinning and then sleeping on a futex.
 *
 * Memory ordering, in one place:
 * - Dispatch: the caller writes fn, arg and pending with plain/relaxed
 *   stores, then bumps gen with a release store. A worker spins on gen with
 *   relaxed loads; the load that ends its wait is an acquire, so it sees
 *   fn, arg and pending of this run.
 * - Completion: each worker's fetch_sub on pending is a release; they form
 *   one release sequence, so the caller's acquire load that reads 0 makes
 *   every worker's writes (and its reads of fn/arg, which must finish
 *   before the next run rewrites them) happen before nb_pool_run returns.
 *   (Acquire loads rather than acquire fences: the same cost, and
 *   ThreadSanitizer understands them.)
 * - Sleeping (the only seq_cst): a sleeper increments its "asleep" counter,
 *   a seq_cst fence, then re-reads the word it waits on; a waker changes
 *   the word, a seq_cst fence, then reads the counter. The two fences are
 *   totally ordered, so either the sleeper sees the new word and does not
 *   sleep, or the waker sees the counter and calls FUTEX_WAKE. A sleeper
 *   that read the old word but has not yet entered the kernel is covered by
 *   FUTEX_WAIT itself, which re-checks the word atomically against the
 *   wake. So the dispatcher skips the syscall when nobody sleeps.
 * gen wraps after 2^32 runs harmlessly: a worker never falls more than one
 * generation behind, because each run waits for every worker.
 */
#include "runtime/model/pool.h"

#include "runtime/base/err.h"
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

_Static_assert(sizeof(atomic_uint) == 4, "a futex word is 32 bits");

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
	/* relaxed: reaches the next dispatcher through the release on pending */
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

static void *worker_main(void *v)
{
	struct nb_pool_worker *w = v;
	struct nb_pool *p = w->pool;
	unsigned seen = 0; /* gen at creation: run() cannot start before open returns */
	nb_pool_fn fn;

	for (;;) {
		while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen)
			wait_while(p, &p->gen, seen, &p->workers_asleep);
		seen++;
		fn = p->fn;
		if (!fn)
			return NULL;
		fn(p->arg, w->ith, p->n_threads);
		if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release) == 1)
			wake_sleepers(p, &p->pending, &p->caller_asleep);
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
		int cpu = cpus ? cpus[i] : (int)i;

		w->pool = p;
		w->ith = i;
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
	atomic_init(&p->gen, 0);
	atomic_init(&p->pending, 0);
	atomic_init(&p->caller_asleep, 0);
	atomic_init(&p->workers_asleep, 0);
	atomic_init(&p->spin, NB_POOL_SPIN_DEFAULT);
	atomic_init(&p->n_sleeps, 0);
	atomic_init(&p->n_wakes, 0);
	p->n_threads = n_threads;
	if (oversubscribed(n_threads))
		atomic_init(&p->spin, 0);
	pin_caller(p, cpus ? cpus[0] : 0);
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
		unsigned g = atomic_load_explicit(&p->gen, memory_order_relaxed);

		p->fn = NULL;
		atomic_store_explicit(&p->gen, g + 1, memory_order_release);
		wake_sleepers(p, &p->gen, &p->workers_asleep);
		for (unsigned i = 1; i <= p->n_started; i++)
			pthread_join(p->workers[i].thread, NULL);
	}
	/* another thread's pthread_t may be stale: restore only our own */
	if (p->caller_pinned && pthread_equal(p->caller, pthread_self()))
		pthread_setaffinity_np(p->caller, sizeof(p->caller_mask), &p->caller_mask);
	memset(p, 0, sizeof(*p));
}

void nb_pool_run(struct nb_pool *p, nb_pool_fn fn, void *arg)
{
	unsigned nth = p->n_threads;
	unsigned g, left;

	if (nth <= 1) {
		fn(arg, 0, 1);
		return;
	}
	p->fn = fn;
	p->arg = arg;
	atomic_store_explicit(&p->pending, nth - 1, memory_order_relaxed);
	g = atomic_load_explicit(&p->gen, memory_order_relaxed); /* only we write it */
	atomic_store_explicit(&p->gen, g + 1, memory_order_release);
	wake_sleepers(p, &p->gen, &p->workers_asleep);

	fn(arg, 0, nth);

	while ((left = atomic_load_explicit(&p->pending, memory_order_acquire)) != 0)
		wait_while(p, &p->pending, left, &p->caller_asleep);
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
