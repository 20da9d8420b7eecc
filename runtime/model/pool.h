/* Worker thread pool for the kernels: the calling thread plus n_threads - 1
 * workers. The decode loop dispatches ~150 parallel sections per token, so
 * a run is built for latency: idle workers spin on one state word, then
 * fall back to a futex; the dispatcher makes a syscall only when some
 * worker is asleep. A run takes no lock, makes no allocation and, while the
 * workers are spinning, no syscall.
 *
 * Two kinds of runs:
 * - nb_pool_share(): fn runs on the caller and on each worker that comes
 *   to it before the caller's fn has returned; workers that come later skip
 *   it. fn must take its work by claiming it (nb_pool_claim, or stealing
 *   as the matrix products do), never by its thread number, so that
 *   whoever runs does all of it. The run then waits only for the workers
 *   that took part: a worker the kernel has descheduled (another process
 *   busy on its core) costs nothing unless it was preempted holding work,
 *   and workers that find their core busy (or the caller's) rest for a
 *   while, so the pool uses the cores it is given (pool.c). Only the
 *   caller's fn returning ends the offer, so it must return only once
 *   every piece of work is claimed.
 * - nb_pool_run(): fn runs on every thread once, for static splits
 *   (nb_pool_split); the run waits for the slowest thread.
 * In both, fn(arg, ith, nth) gets nth = n_threads and an ith unique in the
 * run: 0 for the caller, then 1, 2, ... in the order workers joined (not a
 * fixed thread: scratch indexed by ith is safe, a static split over ith
 * only in nb_pool_run).
 *
 * Rules for callers:
 * - the pool is not movable: workers hold its address from open to close;
 * - runs are started by one thread at a time, never from inside fn, and
 *   never concurrently with nb_pool_close();
 * - whatever fn writes is visible to the caller when the run returns, and
 *   whatever the caller wrote before the run is visible to fn.
 */
#ifndef NB_POOL_H
#define NB_POOL_H

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Pause iterations before sleeping: ~0.3 ms at the 15 ns per pause measured
 * on the x86 dev VM (a pause costs 10-140 cycles depending on the core). */
#define NB_POOL_SPIN_DEFAULT 20000u

typedef void (*nb_pool_fn)(void *arg, unsigned ith, unsigned nth);

struct nb_pool;

/* Each on its own cache lines: a worker writes its window after each run. */
struct nb_pool_worker {
	_Alignas(64) struct nb_pool *pool;
	pthread_t thread;
	unsigned index; /* 1..n_threads-1: which thread (and CPU, if pinned) */
	bool pinned;    /* until it finds its core busy */
	/* its own measure of the CPU its core gives it (see pool.c) */
	uint64_t wall0, cpu0; /* start of the window: clock, thread CPU time */
	uint64_t late_ns;     /* the caller's waits for it in the window */
	uint64_t slept_ns;    /* its own sleeps in the window */
	bool probing;         /* a short window: the first, or after a rest */
	uint64_t rest_ns;     /* length of its last rest */
	uint64_t rest_end;    /* when it ended (0: none yet) */
};

/* Fields written in the hot path sit on separate cache lines: workers spin
 * on the line holding state, and every worker's completion writes done. */
struct nb_pool {
	/* futex word: generation (bumped once per run) << 9 | open << 8 |
	 * workers joined; written by the dispatcher and by joining workers */
	_Alignas(64) atomic_uint state;
	nb_pool_fn fn;
	void *arg;
	unsigned n_threads;           /* including the caller; 0 when closed */
	atomic_bool stop;             /* tells the workers to exit */
	atomic_bool everyone;         /* this run is an nb_pool_run */
	atomic_uint gate;             /* futex word of resting workers */

	_Alignas(64) atomic_uint done; /* futex word: workers finished with fn */
	_Atomic uint64_t closed_at;    /* when the offer ended (0: open) */
	atomic_uint caller_asleep;     /* 1 while the caller sleeps on done */

	_Alignas(64) atomic_uint workers_asleep; /* workers sleeping on state */
	atomic_uint spin;                        /* spin budget, iterations */
	atomic_ulong n_sleeps;                   /* futex waits, all threads */
	atomic_ulong n_wakes;                    /* futex wakes issued */
	atomic_uint resting;                     /* workers resting (on gate) */
	atomic_ulong n_rests;                    /* rests taken, all workers */
	atomic_bool caller_busy; /* the caller's core is busy: workers rest */
	atomic_uint active;      /* threads shared runs may use (nb_pool_set_active) */

	/* the caller's own watch on its core (see pool.c) */
	struct {
		pthread_t thread; /* the thread fd is of */
		int fd;           /* its /proc schedstat, -1: none, -2: not open */
		unsigned runs;    /* shared runs since the last look at the clock */
		unsigned shared, joined; /* shared runs in this window, workers that joined them */
		uint64_t wall0, delay0;
	} watch;

	unsigned n_started; /* workers created (for cleanup after a failure) */
	int caller_pinned;  /* 1 if open changed the caller's affinity */
	pthread_t caller;
	cpu_set_t caller_mask; /* the caller's affinity before open */
	cpu_set_t allowed;     /* the CPUs the opener may run on: a pin let go */
	struct nb_pool_worker workers[CONFIG_MAX_THREADS];
};

/* Starts n_threads - 1 workers (n_threads 1: none, fn runs inline). More
 * than CONFIG_MAX_THREADS is capped, with a warning. cpus[i] is the CPU of
 * thread i (cpus[0] pins the calling thread, until nb_pool_close or until
 * it lets go), -1 leaves it to the kernel; cpus NULL means
 * nb_pool_default_cpus. A failure to pin is a warning. Pins are soft: a
 * thread that finds its core busy with other work drops its pin for good,
 * so that the kernel may move it to a free one (see nb_pool_share); on
 * cores reserved to nibble that never happens. Workers block every signal.
 * The spin budget starts at NB_POOL_SPIN_DEFAULT, or 0 when n_threads
 * exceeds the CPUs the caller may run on. p need not be initialized; after
 * a failure it is closed. */
int nb_pool_open(struct nb_pool *p, unsigned n_threads, const int *cpus);
/* Thread i on the i-th CPU the calling thread may run on; all -1 (none
 * pinned) for one thread, or when there are fewer such CPUs than threads. */
void nb_pool_default_cpus(int *cpus, unsigned n_threads);

/* Joins the workers. NULL-safe, idempotent (also on a zeroed pool). */
void nb_pool_close(struct nb_pool *p);

/* Runs fn(arg, ith, nth) on the caller and the workers free to join, and
 * returns when all of them are done (see the top of the file). */
void nb_pool_share(struct nb_pool *p, nb_pool_fn fn, void *arg);

/* Runs fn(arg, ith, nth) on every thread and returns when all are done. */
void nb_pool_run(struct nb_pool *p, nb_pool_fn fn, void *arg);

/* How long an idle thread spins (pause iterations) before it sleeps on a
 * futex: lower saves power, higher saves wake-up latency. 0 sleeps at
 * once. Takes effect at each thread's next wait. */
void nb_pool_set_spin(struct nb_pool *p, unsigned iterations);

/* Lets shared runs use only the first n threads (the caller included; 1..
 * n_threads): the others park, off their cores, until the cap is raised
 * (the power governor's actuator). nb_pool_run still uses every thread. */
void nb_pool_set_active(struct nb_pool *p, unsigned n);
unsigned nb_pool_active(struct nb_pool *p);

/* Threads of a run (the caller included), 0 when closed. */
unsigned nb_pool_size(const struct nb_pool *p);

/* Futex waits and wakes so far: how often the spin budget ran out. */
void nb_pool_stats(struct nb_pool *p, unsigned long *sleeps, unsigned long *wakes);

/* Rests taken so far by workers that found their core, or the caller's,
 * busy with other work (see nb_pool_share). */
unsigned long nb_pool_rests(struct nb_pool *p);

/* Work of an nb_pool_share run handed out front to back in chunks: items
 * [0, n), chunk at a time, to whichever thread asks next. Set up by the
 * caller before the run (nb_pool_work_init), claimed inside fn. */
struct nb_pool_work {
	_Alignas(64) _Atomic uint64_t next;
	uint64_t n, chunk;
};

static inline void nb_pool_work_init(struct nb_pool_work *w, uint64_t n, uint64_t chunk)
{
	atomic_init(&w->next, 0);
	w->n = n;
	w->chunk = chunk ? chunk : 1;
}

/* The next chunk [*begin, *end), or false when all is claimed. Relaxed:
 * the run's start and end order everything around it. */
static inline bool nb_pool_claim(struct nb_pool_work *w, uint64_t *begin, uint64_t *end)
{
	uint64_t b;

	if (atomic_load_explicit(&w->next, memory_order_relaxed) >= w->n)
		return false;
	b = atomic_fetch_add_explicit(&w->next, w->chunk, memory_order_relaxed);
	if (b >= w->n)
		return false;
	*begin = b;
	*end = w->n - b > w->chunk ? b + w->chunk : w->n;
	return true;
}

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
