/* Board support: what each board nibble knows has (thermal zones and trip
 * points, power sensors or a power estimate, cpufreq policies, its cores,
 * GPIO lines, default budgets) and which board this is,
 * detected at run time from the device tree's compatible or DMI.
 *
 * Every path is read under a root directory (--sysfs-root, "/" on a real
 * board), so that tests drive the same code against a fake tree. */
#ifndef NB_BOARD_H
#define NB_BOARD_H

#include <stdbool.h>
#include <stddef.h>

#define NB_BOARD_MAX_ZONES 4
#define NB_BOARD_PATH_MAX 512

/* A GPIO line: a chip by its label (gpiochip label, as gpioinfo shows it)
 * and the offset on it; chip NULL: the board has no such line. */
struct nb_board_line {
	const char *chip;
	unsigned offset;
	bool active_low;
};

struct nb_board_desc {
	const char *name;        /* as in board/<name>/ and CONFIG_BOARD_NAME */
	const char *title;       /* for people */
	const char *compatible;  /* a device-tree compatible string that means this board */
	const char *dmi;         /* a substring of DMI product_name that does, or NULL */
	/* thermal zones by their type; none listed: every zone there is */
	const char *zones[NB_BOARD_MAX_ZONES];
	double trip_c;           /* first trip point: the firmware starts throttling */
	double hard_c;           /* hard limit: the firmware clamps the clocks */
	/* power: an INA3221 rail by its label (hwmon), else the estimate
	 * idle_w + core_w * busy cores * (freq / max freq) */
	const char *power_rail;
	double idle_w, core_w;
	unsigned cores;          /* one cluster of alike cores (0: as many as online) */
	double budget_w;         /* default power budget, 0: none */
	struct nb_board_line led, fan, busy, button;
};

/* The boards nibble knows, NULL-terminated; the last is the generic one. */
extern const struct nb_board_desc *const nb_board_all[];

/* The board named name, or NULL. */
const struct nb_board_desc *nb_board_find(const char *name);

/* The board at root: forced (a name, or NULL to detect), else the one whose
 * compatible the device tree lists or whose DMI product matches, else the
 * generic board. *how says which ("forced", "device-tree", "dmi",
 * "fallback"). -NB_EINVAL for a forced name nibble does not know. */
int nb_board_detect(const char *root, const char *forced, const struct nb_board_desc **out,
		    const char **how);

/* root joined with an absolute path into out (NB_BOARD_PATH_MAX);
 * -NB_ERANGE if it does not fit. */
int nb_board_path(char *out, const char *root, const char *path);

/* The whole of a small file under root, NUL-terminated (at most cap - 1
 * bytes); its length, or a negative error. */
long nb_board_read(const char *root, const char *path, char *buf, size_t cap);

#endif
