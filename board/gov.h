/* The governor's policy: a pure controller on numbers. Each tick it takes
 * the hottest temperature, the power and the load, and sets one level in
 * [min_level, 1], the share of the board's full compute nibble may use;
 * the caller turns the level into actuators (nb_gov_out: active threads, a
 * duty cycle the scheduler paces by, a batch cap, a frequency cap, the fan,
 * the spill signal).
 *
 * Two PI loops, one holding the temperature at target, one the power under
 * the budget; the lower level wins and the other loop's integrator tracks it
 * (back-calculation), so that neither winds up while it is not in charge.
 * The temperature loop acts on a prediction lead_ticks ahead (the present
 * slope), which keeps it from overshooting a thermal mass that lags its
 * power. Gains are per tick: a faster tick (a simulation running faster
 * than wall time) scales the controller with it. */
#ifndef NB_GOV_H
#define NB_GOV_H

#include <stdbool.h>

enum nb_gov_mode { NB_GOV_PERFORMANCE, NB_GOV_BALANCED, NB_GOV_QUIET, NB_GOV_OFF, NB_GOV_MODES };

/* What the LED shows and /health says. */
enum nb_gov_state { NB_GOV_IDLE, NB_GOV_BUSY, NB_GOV_THROTTLED, NB_GOV_UPDATING, NB_GOV_ERROR };

struct nb_gov_cfg {
	enum nb_gov_mode mode;
	double trip_c, hard_c;  /* the board's */
	double target_c;        /* 0: from the mode (trip - 2, - 4, - 15) */
	double budget_w;        /* 0: none */
	unsigned max_threads;   /* threads of the pool */
	unsigned max_batch;     /* slots */
	double min_level;       /* the level never goes below */
	double kp, ki;          /* per degree (per watt x 4), per tick */
	double lead_ticks;      /* prediction horizon of the temperature loop */
	double fan_on_c, fan_off_c; /* fan hysteresis (0: derived from target) */
	double spill_level;     /* below this level (and work queued): spill */
};

struct nb_gov_in {
	double temp_c;          /* hottest zone; NAN: none */
	double power_w;         /* measured or estimated; NAN: none */
	unsigned queue_depth;   /* requests waiting */
	bool busy;              /* generating */
	bool degraded;          /* a sensor or actuator is in a fault */
};

struct nb_gov_out {
	double level;
	unsigned threads;       /* active worker threads, 1..max_threads */
	double duty;            /* share of time the scheduler computes, (0, 1] */
	unsigned batch;         /* slots that may run */
	double freq_frac;       /* scaling_max_freq as a share of the maximum */
	bool fan;
	bool spill;
	enum nb_gov_state state;
};

struct nb_gov {
	struct nb_gov_cfg c;
	double target_c;
	double level, i_temp, i_power;
	double last_temp, slope; /* slope: smoothed, per tick */
	bool have_last;
	bool fan;
	bool limiting;          /* a loop holds the level below 1 */
	unsigned long ticks, transitions, ticks_over;
	bool crossed;           /* the temperature reached the target once */
	struct nb_gov_out out;
};

void nb_gov_cfg_default(struct nb_gov_cfg *c, double trip_c, double hard_c, unsigned max_threads,
			unsigned max_batch);
void nb_gov_init(struct nb_gov *g, const struct nb_gov_cfg *c);
/* Changes mode and budget at run time (the admin endpoint), keeping the
 * loops' state. budget_w < 0 keeps the budget. */
void nb_gov_set(struct nb_gov *g, enum nb_gov_mode mode, double budget_w);
/* One tick: the actuators for in. */
const struct nb_gov_out *nb_gov_step(struct nb_gov *g, const struct nb_gov_in *in);

const char *nb_gov_mode_name(enum nb_gov_mode m);
/* The mode named s, or -1. */
int nb_gov_mode_parse(const char *s);
const char *nb_gov_state_name(enum nb_gov_state s);

#endif
