/* The board's GPIO lines (status LED, fan enable, busy output) through a
 * small ops table: libgpiod (v1 API, character device) on a board, or a
 * recorder that writes every line change to a file and fails on demand
 * (tests, and machines without a GPIO chip). A line that cannot be
 * requested or set is reported once and dropped; the rest carry on. */
#ifndef NB_GPIO_H
#define NB_GPIO_H

#include "board/board.h"
#include "board/gov.h"

#include <stdbool.h>
#include <stdio.h>

enum nb_gpio_role { NB_GPIO_LED, NB_GPIO_FAN, NB_GPIO_BUSY, NB_GPIO_ROLES };

struct nb_gpio_ops {
	/* an output line, initially value; *handle for set/release */
	int (*request)(void *ctx, const char *root, const struct nb_board_line *l,
		       const char *consumer, int value, void **handle);
	int (*set)(void *ctx, void *handle, int value);
	void (*release)(void *ctx, void *handle);
};

/* libgpiod: chips are /dev/gpiochip* under the root, found by label. */
extern const struct nb_gpio_ops nb_gpio_libgpiod_ops;

/* The recorder: ctx is a struct nb_gpio_record. Each change appends
 * "<seconds> <role> <chip>:<offset> <value>" to path; while the file
 * path + ".fail" exists, every request and set fails. */
struct nb_gpio_record {
	char path[NB_BOARD_PATH_MAX];
	FILE *f;
};
extern const struct nb_gpio_ops nb_gpio_record_ops;

struct nb_gpio_line {
	const struct nb_board_line *desc;
	void *handle;
	int value;
	bool present;   /* the board has it */
	bool ok;        /* requested and not failed since */
};

struct nb_gpio {
	const struct nb_gpio_ops *ops;
	void *ctx;
	const char *root;
	struct nb_gpio_line line[NB_GPIO_ROLES];
	unsigned long n_failures;
	bool degraded;  /* a present line failed */
};

/* Requests the board's lines (a failure is logged and leaves that line
 * out: degraded, not an error). */
void nb_gpio_open(struct nb_gpio *g, const struct nb_gpio_ops *ops, void *ctx, const char *root,
		  const struct nb_board_desc *d);
void nb_gpio_close(struct nb_gpio *g);
/* Sets a line if it changes; a failure marks it failed (logged once). */
void nb_gpio_set(struct nb_gpio *g, enum nb_gpio_role r, int value);

/* The LED's value at time now (seconds) for a state: 8 slots of 1/8 s. */
int nb_gpio_led_pattern(enum nb_gov_state s, double now);

const char *nb_gpio_role_name(enum nb_gpio_role r);

/* Prints the GPIO chips under root/dev (label, lines) through libgpiod, or
 * why there are none; the number of chips found. */
int nb_gpio_list(const char *root, FILE *out);

#endif
