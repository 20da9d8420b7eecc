#include "runtime/server/trial.h"
#include "firmware/manifest.h"
#include "firmware/slots.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"
#include "runtime/model/llm.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void nb_trial_opts_default(struct nb_trial_opts *o)
{
	o->slots_dir = CONFIG_UPDATE_SLOTS_DIR;
	o->timeout = CONFIG_UPDATE_HEALTH_TIMEOUT;
	o->max_ms = CONFIG_UPDATE_HEALTH_MAX_MS;
	o->max_boots = CONFIG_UPDATE_MAX_BOOTS;
	o->image_flags = 0;
}

/* The golden vector and its speed: the test the trial must pass. */
static int run_golden(const struct nb_llm *l, double max_ms, double *ms, char *why, size_t cap)
{
	const struct nb_image_golden *g = l->img.golden;
	double t0 = nb_sys_now();
	uint32_t diff = 0;
	int ret;

	if (!g) {
		snprintf(why, cap, "the image has no golden test vector");
		return -NB_ESELFTEST;
	}
	ret = nb_llm_check_golden(l, &diff);
	*ms = (nb_sys_now() - t0) * 1e3 / (g->n_prompt + g->n_expected);
	if (ret == -NB_ESELFTEST)
		snprintf(why, cap, "golden vector mismatch: token %u of %u differs", diff, g->n_expected);
	else if (ret)
		snprintf(why, cap, "the golden vector did not run (%s)", nb_strerror(ret));
	else if (*ms > max_ms) {
		snprintf(why, cap, "too slow: %.1f ms per token, the limit is %.0f", *ms, max_ms);
		ret = -NB_ETIMEDOUT;
	}
	return ret;
}

static int health(const struct nb_trial_opts *o, const struct nb_boot *b, double *ms, char *why,
		  size_t cap)
{
	struct nb_trust t;
	struct nb_llm l;
	int ret = nb_trust_default(&t);

	if (ret) {
		snprintf(why, cap, "no trust policy (%s)", nb_strerror(ret));
		return ret;
	}
	t.require_signature = true; /* whatever the build: slots hold signed images only */
	ret = nb_llm_open_trusted(&l, b->path, o->image_flags, &t);
	nb_trust_free(&t);
	if (ret) {
		snprintf(why, cap, "the image does not load (%s)", nb_strerror(ret));
		return ret;
	}
	if (memcmp(l.sig.digest, b->digest, NB_SIG_ID_LEN) != 0 ||
	    l.img.hdr->model_version != b->version) {
		snprintf(why, cap, "the slot does not hold the image that was installed");
		ret = -NB_ESIG;
	} else if (nb_manifest_check_compat(&l.img, b->path, CONFIG_BOARD_NAME, true) != 0) {
		snprintf(why, cap, "not compatible with this device (%s)", nb_manifest_device());
		ret = -NB_ENOTSUP;
	} else {
		ret = run_golden(&l, o->max_ms, ms, why, cap);
	}
	nb_llm_close(&l);
	return ret;
}

/* Rolls back and exits if the health check outlives its time: a hung
 * check must not keep the server (and the board) on a bad model. */
struct watchdog {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done, fired;
	double timeout;
	struct nb_slots *s;
	const struct nb_boot *b;
};

static void *watch(void *arg)
{
	struct watchdog *w = arg;
	struct timespec until;
	char why[96];

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)w->timeout;
	until.tv_nsec += (long)((w->timeout - (double)(time_t)w->timeout) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->mu);
	while (!w->done && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0)
		;
	if (w->done) {
		pthread_mutex_unlock(&w->mu);
		return NULL;
	}
	w->fired = true;
	pthread_mutex_unlock(&w->mu);
	snprintf(why, sizeof(why), "health check timed out after %g s", w->timeout);
	nb_err("serve: slot %c (version %llu): %s: rolling back", nb_slots_name(w->b->slot),
	       (unsigned long long)w->b->version, why);
	nb_slots_rollback(w->s, w->b, why);
	_exit(1);
}

static int start_watchdog(struct watchdog *w, pthread_t *tid)
{
	pthread_condattr_t ca;

	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cv, &ca);
	pthread_condattr_destroy(&ca);
	return pthread_create(tid, NULL, watch, w) == 0 ? 0 : -NB_ENOMEM;
}

/* false if the watchdog fired first (it is exiting the process). */
static bool stop_watchdog(struct watchdog *w, pthread_t tid)
{
	pthread_mutex_lock(&w->mu);
	if (w->fired) {
		pthread_mutex_unlock(&w->mu);
		return false;
	}
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(tid, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	return true;
}

static int check_trial(const struct nb_trial_opts *o, struct nb_slots *s, const struct nb_boot *b,
		       struct nb_fault *f)
{
	struct watchdog w = { .timeout = o->timeout, .s = s, .b = b };
	char why[192] = "";
	double ms = 0;
	pthread_t tid;
	int ret;

	nb_info("serve: slot %c (version %llu) is on trial: health check", nb_slots_name(b->slot),
		(unsigned long long)b->version);
	ret = start_watchdog(&w, &tid);
	if (ret)
		return ret;
	/* A crash here (or anywhere before commit) is counted by the start counter. */
	nb_fault_point(f, "trial:load");
	ret = health(o, b, &ms, why, sizeof(why));
	if (!stop_watchdog(&w, tid))
		for (;;)
			pause();
	if (ret == 0) {
		ret = nb_slots_commit(s, b, ms);
		if (!ret)
			nb_info("serve: slot %c (version %llu) committed: golden vector reproduced, "
				"%.2f ms per token", nb_slots_name(b->slot),
				(unsigned long long)b->version, ms);
		return ret;
	}
	nb_err("serve: slot %c (version %llu) failed its health check: %s: rolling back",
	       nb_slots_name(b->slot), (unsigned long long)b->version, why);
	return nb_slots_rollback(s, b, why);
}

int nb_trial_start(const struct nb_trial_opts *o, char *path, size_t cap)
{
	struct nb_slots s;
	struct nb_fault f;
	struct nb_boot b;
	int ret;

	nb_fault_init(&f);
	ret = nb_slots_open(&s, o->slots_dir, false, &f);
	/* Each round commits or rolls back one trial; another one appears only
	 * if an update installed it meanwhile, and is checked in turn. */
	while (!ret) {
		ret = nb_slots_boot(&s, o->max_boots, &b);
		if (ret || !b.trial)
			break;
		ret = check_trial(o, &s, &b, &f);
	}
	nb_slots_close(&s);
	if (!ret)
		ret = nb_slots_check_image(&b);
	if (ret)
		return ret;
	nb_info("serve: running slot %c (version %llu)", nb_slots_name(b.slot),
		(unsigned long long)b.version);
	return snprintf(path, cap, "%s", b.path) < (int)cap ? 0 : -NB_ERANGE;
}
