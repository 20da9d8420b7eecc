/* Worker thread pool for the kernels: the calling thread plus n_threads - 1
 * workers pinned to cores. The decode loop dispatches ~150 parallel
 * sections per token, so nb_pool_run() is built for latency: workers spin
 * on a generation counter, then fall back to a futex; the dispatcher makes
 * a syscall only when some worker is asleep. nb_pool_run() takes no lock,
 * makes no allocation and, while the workers are spinning, no syscall.
 *
 * Rules for callers:
 * - the pool is not movable: workers hold its address from open to close;
 * - nb_pool_run() is called by one thread at a time, never from inside fn,
 *   and never concurrently with nb_pool_close();
 * - fn runs on every thread (ith = 0..nth-1, the caller is ith 0) and
 *   decides its share with nb_pool_split(); whatever fn writes is visible to
 *   the caller when nb_pool_run() returns, and whatever the caller wrote
 *   before nb_pool_run() is visible to fn.
 */
#ifndef NB_POOL_H
#define NB_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

/* Pause iterations before sleeping: ~0.3 ms at the 15 ns per pause measured
 * on the x86 dev VM (a pause costs 10-140 cycles depending on the core). */
#define NB_POOL_SPIN_DEFAULT 20000u

typedef void (*nb_pool_fn)(void *arg, unsigned ith, unsigned nth);

struct nb_pool;

struct nb_pool_worker {
	struct nb_pool *pool;
	pthread_t thread;
	unsigned ith;
};

/* Fields written in the hot path sit on separate cache lines: workers spin
 * on the line holding gen, and every worker's completion writes pending. */
struct nb_pool {
	/* written by the dispatcher once per run, read by every worker */
	_Alignas(64) atomic_uint gen; /* futex word: bumped once per run */
	nb_pool_fn fn;                /* NULL tells the workers to exit */
	void *arg;
	unsigned n_threads;           /* including the caller; 0 when closed */

	_Alignas(64) atomic_uint pending; /* futex word: workers still running fn */
	atomic_uint caller_asleep;        /* 1 while the caller sleeps on pending */

	_Alignas(64) atomic_uint workers_asleep; /* workers sleeping on gen */
	atomic_uint spin;                        /* spin budget, iterations */
	atomic_ulong n_sleeps;                   /* futex waits, all threads */
	atomic_ulong n_wakes;                    /* futex wakes issued */

	unsigned n_started; /* workers created (for cleanup after a failure) */
	int caller_pinned;  /* 1 if open changed the caller's affinity */
	pthread_t caller;
	cpu_set_t caller_mask; /* the caller's affinity before open */
	struct nb_pool_worker workers[CONFIG_MAX_THREADS];
};

/* Starts n_threads - 1 workers (n_threads 1: none, fn runs inline). More
 * than CONFIG_MAX_THREADS is capped, with a warning. cpus[i] is the CPU of
 * thread i (cpus[0] pins the calling thread, until nb_pool_close), -1
 * leaves it unpinned; cpus NULL means 0..n_threads-1. A failure to pin is a
 * warning. Workers block every signal. The spin budget starts at
 * NB_POOL_SPIN_DEFAULT, or 0 when n_threads exceeds the CPUs the caller may
 * run on. p need not be initialized; after a failure it is closed. */
int nb_pool_open(struct nb_pool *p, unsigned n_threads, const int *cpus);
/* Joins the workers. NULL-safe, idempotent (also on a zeroed pool). */
void nb_pool_close(struct nb_pool *p);

/* Runs fn(arg, ith, nth) on every thread and returns when all are done. */
void nb_pool_run(struct nb_pool *p, nb_pool_fn fn, void *arg);

/* How long an idle thread spins (pause iterations) before it sleeps on a
 * futex: lower saves power, higher saves wake-up latency. 0 sleeps at
 * once. Takes effect at each thread's next wait. */
void nb_pool_set_spin(struct nb_pool *p, unsigned iterations);

/* Threads of a run (the caller included), 0 when closed. */
unsigned nb_pool_size(const struct nb_pool *p);

/* Futex waits and wakes so far: how often the spin budget ran out. */
void nb_pool_stats(struct nb_pool *p, unsigned long *sleeps, unsigned long *wakes);

/* The static split every kernel uses: thread ith of nth gets [*begin, *end)
 * of [0, n), contiguous, in thread order, sizes differing by at most one
 * unit (the first n % nth threads get the extra one). Pure arithmetic, so
 * the same (n, nth) always gives the same slices.
 *
 * Splitting must never change results: a kernel computes each output
 * element entirely within one thread (a dot product is never split across
 * threads and summed later), so the output is bit for bit the same for any
 * nth. ith >= nth (or nth 0) gets an empty slice. */
static inline void nb_pool_split(uint64_t n, unsigned ith, unsigned nth,
				 uint64_t *begin, uint64_t *end)
{
	uint64_t q, r;

	if (ith >= nth) {
		*begin = *end = n;
		return;
	}
	q = n / nth;
	r = n % nth;
	*begin = ith * q + (ith < r ? ith : r);
	*end = *begin + q + (ith < r);
}

/* The same in units of align elements (e.g. 4 rows for a 4-row kernel, or
 * a cache line of outputs so threads never write the same line); only the
 * last slice may end on a partial unit. align 0 counts as 1. */
static inline void nb_pool_split_aligned(uint64_t n, uint64_t align, unsigned ith,
					 unsigned nth, uint64_t *begin, uint64_t *end)
{
	uint64_t units, ub, ue;

	if (align <= 1) {
		nb_pool_split(n, ith, nth, begin, end);
		return;
	}
	units = n / align + (n % align != 0);
	nb_pool_split(units, ith, nth, &ub, &ue);
	/* ub < units means ub * align < n: no overflow even near UINT64_MAX */
	*begin = ub < units ? ub * align : n;
	*end = ue < units ? ue * align : n;
}

#endif
