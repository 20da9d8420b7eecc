/* The governor at run time: the board (board/board.h), its sensors, the
 * controller (board/gov.h) and GPIO lines, ticked from an event loop (the
 * server's, or `nibble run`'s token loop). Each tick samples the sensors,
 * estimates power where the board measures none, steps the controller and
 * hands its actuators to the caller (apply: active threads, pacing, batch)
 * after setting those it owns itself (scaling_max_freq, fan, LED, busy
 * line). State for /health and /metrics. Single-threaded: the loop that
 * polls it is the only one touching it. */
#ifndef NB_GOVERNOR_H
#define NB_GOVERNOR_H

#include "board/board.h"
#include "board/gov.h"
#include "board/gpio.h"
#include "board/sensor.h"

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>

struct nb_govern_opts {
	const char *root;     /* sysfs root ("/") */
	const char *board;    /* forced board name, NULL: detect */
	int mode;             /* enum nb_gov_mode, -1: balanced */
	double budget_w;      /* < 0: the board's default; 0: none */
	double target_c;      /* 0: from the mode */
	double interval_s;    /* 0: CONFIG_GOVERNOR_INTERVAL_MS */
	const char *gpio;     /* NULL: libgpiod, "none", "record:FILE" */
};

typedef void (*nb_govern_apply_fn)(void *arg, const struct nb_gov_out *o);

struct nb_govern {
	struct nb_govern_opts o;
	const struct nb_board_desc *desc;
	const char *how;                /* how the board was found */
	struct nb_sensor_set sens;
	struct nb_gov gov;
	struct nb_gpio gpio;
	struct nb_gpio_record rec;
	nb_govern_apply_fn apply;
	void *apply_arg;
	double interval, t_next, t_last;
	double cpu_last;                /* this process's CPU seconds at the last tick */
	double busy_cores;
	double temp_c, power_w, freq_frac;
	bool power_estimated;
	unsigned sensor_faults;         /* in a fault at the last tick */
	bool freq_failed;
	bool degraded;
	char why[160];                  /* what is degraded */
	double over_s;                  /* seconds above target */
	bool open;
};

void nb_govern_opts_default(struct nb_govern_opts *o);

/* The command-line options of the governor, shared by serve and run: keys
 * NB_GOVERN_O_FIRST.. for getopt_long, NB_GOVERN_OPTIONS in the option
 * table, NB_GOVERN_USAGE in the usage text. */
enum { NB_GOVERN_O_FIRST = 1000, NB_GOVERN_O_MODE = NB_GOVERN_O_FIRST, NB_GOVERN_O_BUDGET,
       NB_GOVERN_O_TARGET, NB_GOVERN_O_TICK, NB_GOVERN_O_BOARD, NB_GOVERN_O_ROOT,
       NB_GOVERN_O_GPIO, NB_GOVERN_O_LAST = NB_GOVERN_O_GPIO };
#define NB_GOVERN_OPTIONS                                                                 \
	{ "governor", required_argument, NULL, NB_GOVERN_O_MODE },                        \
	{ "power-budget", required_argument, NULL, NB_GOVERN_O_BUDGET },                  \
	{ "target-temp", required_argument, NULL, NB_GOVERN_O_TARGET },                   \
	{ "governor-interval", required_argument, NULL, NB_GOVERN_O_TICK },               \
	{ "board", required_argument, NULL, NB_GOVERN_O_BOARD },                          \
	{ "sysfs-root", required_argument, NULL, NB_GOVERN_O_ROOT },                       \
	{ "gpio", required_argument, NULL, NB_GOVERN_O_GPIO }
#define NB_GOVERN_USAGE                                                                   \
	"Power/thermal governor (docs/governor.md; any of these turns it on):\n"          \
	"      --governor MODE       performance, balanced, quiet or off (watch only)\n"   \
	"      --power-budget W      hold board power under W watts (0: none)\n"           \
	"      --target-temp C       hold the hottest zone at C (from the mode)\n"         \
	"      --governor-interval S seconds between governor ticks (1)\n"                 \
	"      --board NAME          rpi4, rpi5, jetson-orin-nano, x86_64 (detected)\n"    \
	"      --sysfs-root DIR      read sensors and write cpufreq under DIR (/)\n"       \
	"      --gpio gpiod|none|record:FILE\n"                                            \
	"                            GPIO lines through libgpiod (default), none,\n"       \
	"                            or recorded to FILE\n"
/* One of those options into *o (initialised by the first); a usage error
 * is logged for applet and returns -NB_EINVAL. */
int nb_govern_parse_opt(struct nb_govern_opts *o, bool *on, const char *applet, int key,
			const char *arg);
/* Detects the board and opens sensors and lines; a missing sensor or line
 * is degraded mode, not an error. -NB_EINVAL for an unknown forced board. */
int nb_govern_open(struct nb_govern *g, const struct nb_govern_opts *o, unsigned max_threads,
		   unsigned max_batch);
void nb_govern_set_apply(struct nb_govern *g, nb_govern_apply_fn fn, void *arg);
/* Call often (at least every 1/8 s for the LED's patterns): ticks the
 * controller every interval. True when it ticked. */
bool nb_govern_poll(struct nb_govern *g, double now, unsigned queue_depth, bool busy);
/* Mode (NULL: keep) and budget (< 0: keep) at run time. */
int nb_govern_set(struct nb_govern *g, const char *mode, double budget_w);
/* Restores cpufreq limits, turns lines off. NULL-safe, idempotent. */
void nb_govern_close(struct nb_govern *g);

/* The state as a JSON object ("{...}"), NUL-terminated; its length, or
 * -NB_ERANGE if cap is too small. */
int nb_govern_json(const struct nb_govern *g, char *buf, size_t cap);
/* The Prometheus lines (nibble_temperature_celsius{zone=...}, ...). */
int nb_govern_metrics(const struct nb_govern *g, char *buf, size_t cap);

#endif
