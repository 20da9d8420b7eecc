/* Sensors and the cpufreq limit, read and written under the board's root:
 * thermal zones, an INA3221 power rail, cpufreq policies.
 *
 * A sensor that is missing, unreadable, holds garbage or jumps further than
 * it physically can between two reads is in a fault: its last good value is
 * held (for a jump, until the new level repeats NB_SENSOR_CONFIRM times, so
 * that a real step is believed and a glitch is not), the fault is logged
 * once when it starts and once when it ends, and the caller reports
 * degraded mode. Nothing here crashes on what a file holds. */
#ifndef NB_SENSOR_H
#define NB_SENSOR_H

#include "board/board.h"

#include <stdbool.h>
#include <stdint.h>

#define NB_SENSOR_MAX_ZONES 8
#define NB_SENSOR_MAX_POLICIES 4
#define NB_SENSOR_CONFIRM 3

enum nb_sensor_fault {
	NB_SENSOR_OK,
	NB_SENSOR_MISSING,    /* no such file (any more) */
	NB_SENSOR_UNREADABLE, /* permissions or an I/O error */
	NB_SENSOR_GARBAGE,    /* not a number, or outside what the quantity can be */
	NB_SENSOR_JUMP,       /* a change faster than physics allows */
};

struct nb_sensor {
	char name[48];                /* zone type, rail label, "policy0" */
	char path[NB_BOARD_PATH_MAX]; /* the value (thermal: millidegrees) */
	char path2[NB_BOARD_PATH_MAX];/* power: the current (mA) beside path's voltage (mV) */
	double scale;                 /* value = raw * scale (* raw2 for power) */
	double lo, hi;                /* believable values */
	double max_rate;              /* believable change per second */
	double value;                 /* last good value */
	bool valid;                   /* value holds one */
	double t_value;               /* when it was read (seconds) */
	enum nb_sensor_fault fault;
	double pending;               /* a jump's new level, while unconfirmed */
	unsigned n_pending;
	unsigned long n_faults;       /* reads that failed */
};

struct nb_policy {
	char dir[NB_BOARD_PATH_MAX];  /* .../cpufreq/policyN */
	struct nb_sensor cur;         /* scaling_cur_freq, kHz */
	double max_khz, min_khz;      /* cpuinfo_max_freq, cpuinfo_min_freq */
	double orig_cap_khz;          /* scaling_max_freq at open, restored at close */
	double cap_khz;               /* what we last wrote, 0: nothing */
	bool writable;                /* scaling_max_freq took a write */
	bool write_failed;            /* logged once */
};

struct nb_sensor_set {
	char root[NB_BOARD_PATH_MAX];
	struct nb_sensor zones[NB_SENSOR_MAX_ZONES];
	unsigned n_zones;
	struct nb_sensor power;
	bool has_power;
	struct nb_policy pol[NB_SENSOR_MAX_POLICIES];
	unsigned n_pol;
};

/* Finds the board's sensors under root. Finding none is no error (the
 * governor then runs degraded); only a root too long is. */
int nb_sensor_open(struct nb_sensor_set *s, const char *root, const struct nb_board_desc *d);
/* Puts back the cpufreq limits it changed. */
void nb_sensor_close(struct nb_sensor_set *s);

/* Reads one sensor at time now (seconds); 0 with s->value fresh, or the
 * fault (s->value then holds the last good value, if valid). */
enum nb_sensor_fault nb_sensor_read(struct nb_sensor *s, double now);

/* Reads every sensor. *hottest: the highest valid zone temperature (NAN if
 * none), *power_w: the rail's power (NAN if none), *freq_frac: current over
 * maximum frequency, averaged over the policies (1 if unknown). Returns the
 * number of sensors in a fault. */
unsigned nb_sensor_sample(struct nb_sensor_set *s, double now, double *hottest, double *power_w,
			  double *freq_frac);

/* Limits every policy's scaling_max_freq to frac of its maximum (1: none);
 * written only when it changes. Returns 0, or -NB_EPERM once a policy
 * refuses (logged once; the other actuators carry on). */
int nb_sensor_cap_freq(struct nb_sensor_set *s, double frac);

const char *nb_sensor_fault_name(enum nb_sensor_fault f);

#endif
