/* The scheduler: a fixed number of slots (each with its own KV cache and
 * sampler) served by one inference thread with continuous batching. New
 * jobs join between decode steps; prompts are processed in chunks so that
 * running streams keep flowing; every step runs all active rows -- decode
 * tokens and prompt chunks of different slots -- as one batched forward
 * pass. Rows never influence each other, so a job's tokens are the same
 * whatever else runs beside it.
 *
 * Jobs are shared by the submitter (the server's event loop) and the
 * scheduler, reference-counted. The scheduler appends generated text to a
 * job and signals an eventfd; the loop takes the text with nb_job_take.
 *
 * A job may bring its prompt as text (nb_job_new_text): a tokenizer thread
 * of the scheduler turns it into tokens before it queues for a slot, so
 * that a long prompt (hundreds of milliseconds on a board) stalls neither
 * the submitter's event loop nor the running streams.
 *
 * The scheduler runs at most one step ahead of the loop: before the next
 * step it waits until the loop has taken the list of jobs with news
 * (nb_sched_ready), so a token reaches its client within one step of being
 * generated instead of piling up in a burst when the loop is woken late. */
#ifndef NB_SCHED_H
#define NB_SCHED_H

#include "runtime/model/finish.h"
#include "runtime/model/forward.h"
#include "runtime/model/llm.h"
#include "runtime/model/pool.h"
#include "runtime/model/sampler.h"
#include "runtime/model/stop.h"
#include "runtime/text/chat_template.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>


struct nb_job {
	/* in: set before nb_sched_submit, then read-only */
	int32_t *prompt;       /* owned; of a text job, set by the scheduler (see error) */
	uint32_t n_prompt;     /* of a text job: its tokens, also when too many (-NB_ERANGE) */
	char *prompt_text;     /* owned: the prompt still to tokenize, or NULL */
	size_t prompt_len;
	struct nb_chat_span *prompt_spans; /* owned: special-token spans of prompt_text */
	size_t n_prompt_spans;
	uint32_t max_tokens;
	struct nb_sampler_params sp;
	char *stop_strs[NB_STOP_MAX]; /* owned */
	uint32_t n_stop;
	int32_t stop_token;    /* ends the answer like EOS (a chat end-of-turn), or -1 */
	void *owner;           /* the submitter's (the connection) */

	atomic_int refs;
	atomic_bool cancel;    /* set by the submitter: stop at the next step */

	pthread_mutex_t lock;  /* guards everything below */
	char *text;            /* generated text not yet taken */
	size_t text_len, text_cap;
	enum nb_finish finish;
	int error;             /* why a text job ended before it ran: -NB_ERANGE (longer
				* than the context), -NB_EINVAL (no tokens), -NB_ENOMEM,
				* -NB_ECANCELED (stopping); 0 otherwise */
	bool text_lost;        /* text could not be stored (no memory): the job ends with an error */
	uint32_t n_gen;        /* tokens generated */
	double t_submit, t_first, t_done; /* monotonic seconds */
	bool queued_ready;     /* on the scheduler's list of jobs with news */
	struct nb_job *next_news; /* the scheduler's: that list, under its lock */
	struct nb_job *next_ready; /* the list nb_sched_ready returned: the submitter's */
	struct nb_job *next_tok; /* the scheduler's: on its list of prompts to tokenize */
};

/* A new job with one reference, prompt copied. NULL on no memory. */
struct nb_job *nb_job_new(const int32_t *prompt, uint32_t n_prompt);
/* A new job whose prompt is text (and its special-token spans, for
 * nb_chat_encode), both copied, to be tokenized by the scheduler. */
struct nb_job *nb_job_new_text(const char *text, size_t len, const struct nb_chat_span *spans,
			       size_t n_spans);
void nb_job_ref(struct nb_job *j);
/* Appends generated text (arg: the job) under its lock; text that cannot
 * be stored sets text_lost, and the job must then end with an error. */
void nb_job_append(void *arg, const char *buf, size_t len);
void nb_job_unref(struct nb_job *j);
/* Moves the job's new text into buf (malloc'd, caller frees) and returns
 * its state. */
enum nb_finish nb_job_take(struct nb_job *j, char **buf, size_t *len, uint32_t *n_gen);

#define NB_SCHED_HIST 12 /* latency histogram buckets */

struct nb_sched_stats {
	atomic_ulong requests[NB_FINISH_ERROR + 1]; /* by outcome */
	atomic_ulong rejected;                      /* queue full */
	atomic_ulong prompt_tokens, gen_tokens;
	atomic_ulong ttft_hist[NB_SCHED_HIST + 1];  /* cumulative by bucket, +Inf last */
	atomic_ulong ttft_count;
	atomic_ullong ttft_sum_us;
	atomic_ulong tpot_hist[NB_SCHED_HIST + 1];  /* time per output token */
	atomic_ulong tpot_count;
	atomic_ullong tpot_sum_us;
	atomic_uint queue_depth, busy_slots;
	/* The governor's hook (board/): set while it has cut local capacity
	 * (thermal, power); the server's routing then spills new work to the
	 * cloud uplink. Nothing here sets it yet. */
	atomic_bool capacity_cut;
	_Atomic double tokens_per_s;                /* over the last window */
};

/* Bucket upper bounds (seconds) of both histograms. */
extern const double nb_sched_buckets[NB_SCHED_HIST];

struct nb_sched_opts {
	uint32_t slots;      /* concurrent sequences */
	uint32_t ctx;        /* KV positions per slot */
	uint32_t queue;      /* jobs waiting for a slot, at most */
	uint32_t chunk;      /* prompt tokens per slot per step */
	uint32_t threads;    /* worker threads of the forward pass */
	int notify_fd;       /* eventfd written when jobs have news */
};

struct nb_slot {
	struct nb_job *job;
	struct nb_kv kv;
	struct nb_sampler smp;
	struct nb_stop stop;
	uint32_t pos;        /* tokens in the cache */
	uint32_t prefilled;  /* prompt tokens processed */
	int32_t last;        /* last token, fed at the next decode step */
	double t_last;       /* time of the last token */
};

struct nb_sched {
	struct nb_sched_opts o;
	const struct nb_llm *llm;
	struct nb_pool pool;
	struct nb_fwd fwd;
	struct nb_slot *slots;
	pthread_t thread;
	pthread_mutex_t lock; /* guards queue, ready, stopping */
	pthread_cond_t wake;
	pthread_cond_t pace_wake; /* CLOCK_MONOTONIC: the pacing's idle */
	struct nb_job **queue;
	uint32_t q_head, q_len;
	struct nb_job *ready; /* jobs with news for the submitter */
	bool stopping, started;
	/* the tokenizer thread, guarded by lock too */
	pthread_t tok_thread;
	pthread_cond_t tok_wake;
	struct nb_job *tok_head, *tok_tail; /* text jobs to tokenize, oldest first */
	uint32_t n_tok;       /* text jobs not yet queued: they hold places of the queue */
	bool tok_started;
	struct nb_sched_stats stats;
	/* set by the governor between steps (nb_sched_throttle) */
	atomic_uint duty_ppm;   /* share of the time steps may take, in 1e-6 */
	atomic_uint batch_cap;  /* slots that may run at once */
	_Atomic double paced_s; /* idle time the pacing added, in total */
	/* batch scratch, [max rows] */
	int32_t *tokens;
	uint32_t *pos;
	struct nb_kv **kvs;
	uint8_t *want;
	uint32_t *row_slot;
};

int nb_sched_open(struct nb_sched *s, const struct nb_llm *llm, const struct nb_sched_opts *o);
/* Stops taking work, cancels every job (queued and running end with
 * NB_FINISH_CANCEL, announced on the ready list) and joins the thread. */
void nb_sched_stop(struct nb_sched *s);
/* nb_sched_stop, then drops unread news and frees everything. */
void nb_sched_close(struct nb_sched *s);
/* Queues a job (takes a reference). -NB_EBUSY if the queue is full,
 * -NB_ECANCELED while stopping, -NB_ERANGE if it can never fit a slot.
 * A text job is tokenized first: what can go wrong then (error) ends it
 * with NB_FINISH_ERROR, or NB_FINISH_CANCEL when stopping, as news. */
int nb_sched_submit(struct nb_sched *s, struct nb_job *j);
/* The jobs with news since the last call, as a list through next_ready
 * (one reference each, to drop with nb_job_unref). The list stays as it
 * is while the submitter walks it, though the scheduler may have news of
 * the same jobs meanwhile (for the next call). The scheduler waits for
 * this call between steps that had news: the submitter must make it soon
 * after every notification. */
struct nb_job *nb_sched_ready(struct nb_sched *s);
/* Throttles the scheduler from the next step on: after a step that took t,
 * it idles t * (1 - duty) / duty (duty in (0, 1], 1: no pacing), and at
 * most batch slots run at once (running ones finish; 0: all). */
void nb_sched_throttle(struct nb_sched *s, double duty, uint32_t batch);

#endif
