/* The controller (see gov.h). Tuned in tests/unit/test_gov.c against a
 * first-order thermal model of a Raspberry Pi 5 (docs/governor.md). */
#include "board/gov.h"

#include <math.h>
#include <string.h>

/* Weight of the newest reading in the slope (an exponential average over
 * about five ticks): the lead multiplies the slope, and an unsmoothed one
 * turns a reading's noise, or the load's own ripple, into a swing of the
 * level each tick. */
#define SLOPE_SMOOTHING 0.2

/* The most headroom (degrees) the temperature loop integrates a tick. */
#define INTEGRATE_BAND_C 0.5

/* Above the target the integrator runs this much faster: heat that builds
 * up (a step of ambient temperature) must come down before the hard limit,
 * while headroom is taken back slowly. */
#define COOL_BOOST 3

/* Below the trip point: performance, balanced, quiet. */
static const double target_below_trip[] = { 2, 3, 15 };

const char *nb_gov_mode_name(enum nb_gov_mode m)
{
	static const char *const names[] = { "performance", "balanced", "quiet", "off" };

	return (unsigned)m < NB_GOV_MODES ? names[m] : "?";
}

int nb_gov_mode_parse(const char *s)
{
	for (int m = 0; m < NB_GOV_MODES; m++)
		if (strcmp(s, nb_gov_mode_name((enum nb_gov_mode)m)) == 0)
			return m;
	return -1;
}

const char *nb_gov_state_name(enum nb_gov_state s)
{
	static const char *const names[] = { "idle", "busy", "throttled", "updating", "error" };

	return (unsigned)s <= NB_GOV_ERROR ? names[s] : "?";
}

void nb_gov_cfg_default(struct nb_gov_cfg *c, double trip_c, double hard_c, unsigned max_threads,
			unsigned max_batch)
{
	memset(c, 0, sizeof(*c));
	c->mode = NB_GOV_BALANCED;
	c->trip_c = trip_c;
	c->hard_c = hard_c;
	c->max_threads = max_threads ? max_threads : 1;
	c->max_batch = max_batch ? max_batch : 1;
	c->min_level = 0.05;
	c->kp = 0.1;
	c->ki = 0.005;
	c->lead_ticks = 20;
	c->spill_level = 0.5;
}

static double target_of(const struct nb_gov_cfg *c)
{
	if (c->target_c > 0)
		return c->target_c;
	if (c->mode < NB_GOV_OFF)
		return c->trip_c - target_below_trip[c->mode];
	return c->hard_c;
}

void nb_gov_init(struct nb_gov *g, const struct nb_gov_cfg *c)
{
	memset(g, 0, sizeof(*g));
	g->c = *c;
	g->target_c = target_of(c);
	g->level = g->i_temp = g->i_power = 1;
}

void nb_gov_set(struct nb_gov *g, enum nb_gov_mode mode, double budget_w)
{
	g->c.mode = mode;
	if (budget_w >= 0)
		g->c.budget_w = budget_w;
	g->target_c = target_of(&g->c);
}

static double clamp(double v, double lo, double hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* The temperature loop's wish, NAN without a temperature. The slope is
 * smoothed: one noisy reading must not swing the level. */
static double temp_loop(struct nb_gov *g, double t)
{
	double slope, pred, e;

	if (isnan(t))
		return NAN;
	if (g->have_last)
		g->slope += (t - g->last_temp - g->slope) * SLOPE_SMOOTHING;
	g->last_temp = t;
	g->have_last = true;
	slope = g->slope;
	pred = t + g->c.lead_ticks * (slope > 0 ? slope : 0.5 * slope);
	/* Below the target the integrator takes at most INTEGRATE_BAND_C of
	 * headroom a tick: far below, it would wind up on the way there and
	 * overshoot after (P does that part); above the target it runs
	 * COOL_BOOST times faster, as heat must come down. */
	e = g->target_c - pred;
	e = e > INTEGRATE_BAND_C ? INTEGRATE_BAND_C : e < 0 ? e * COOL_BOOST : e;
	g->i_temp = clamp(g->i_temp + g->c.ki * e, 0, 1);
	return g->i_temp + g->c.kp * (g->target_c - pred);
}

/* The power loop: a watt over budget counts like four degrees over target. */
static double power_loop(struct nb_gov *g, double p)
{
	double e;

	if (isnan(p) || g->c.budget_w <= 0)
		return NAN;
	e = 4 * (g->c.budget_w - p);
	g->i_power = clamp(g->i_power + g->c.ki * e, 0, 1);
	return g->i_power + g->c.kp * e;
}

static void actuate(struct nb_gov *g, const struct nb_gov_in *in)
{
	struct nb_gov_out *o = &g->out;
	const struct nb_gov_cfg *c = &g->c;
	unsigned n = c->max_threads;
	double on = c->fan_on_c > 0 ? c->fan_on_c : g->target_c - 10;
	double off = c->fan_off_c > 0 ? c->fan_off_c : g->target_c - 15;

	o->level = g->level;
	o->threads = (unsigned)ceil(g->level * n - 1e-9);
	o->threads = o->threads < 1 ? 1 : o->threads > n ? n : o->threads;
	o->duty = clamp(g->level * n / o->threads, 0.01, 1);
	o->batch = c->mode == NB_GOV_QUIET ? (c->max_batch + 1) / 2 : c->max_batch;
	o->freq_frac = g->limiting ? clamp(0.5 + 0.5 * g->level, 0.5, 1) : 1;
	if (!isnan(in->temp_c))
		g->fan = in->temp_c >= on || (g->fan && in->temp_c > off);
	else
		g->fan = true; /* blind: cool anyway */
	o->fan = g->fan;
	o->spill = g->level < c->spill_level && in->queue_depth > 0;
	o->state = g->limiting ? NB_GOV_THROTTLED : in->busy ? NB_GOV_BUSY : NB_GOV_IDLE;
}

const struct nb_gov_out *nb_gov_step(struct nb_gov *g, const struct nb_gov_in *in)
{
	double lt = temp_loop(g, in->temp_c), lp = power_loop(g, in->power_w), want = 1;
	bool limiting;

	g->ticks++;
	if (!isnan(in->temp_c) && in->temp_c >= g->target_c)
		g->crossed = true;
	if (!isnan(in->temp_c) && in->temp_c > g->target_c)
		g->ticks_over++;
	if (g->c.mode != NB_GOV_OFF) {
		if (!isnan(lt))
			want = lt;
		if (!isnan(lp) && lp < want)
			want = lp;
	}
	g->level = clamp(want, g->c.min_level, 1);
	/* back-calculation: the loop not in charge follows the level */
	if (!isnan(lt) && lt > g->level)
		g->i_temp = clamp(g->level - g->c.kp * (g->target_c - g->last_temp), 0, 1);
	if (!isnan(lp) && lp > g->level)
		g->i_power = clamp(g->level - g->c.kp * 4 * (g->c.budget_w - in->power_w), 0, 1);
	limiting = g->level < 0.98;
	if (limiting != g->limiting)
		g->transitions++;
	g->limiting = limiting;
	actuate(g, in);
	return &g->out;
}
