/* GPIO lines through libgpiod v1, or through the recorder. */
#include "board/gpio.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/base/sys.h"

#include <dirent.h>
#include <errno.h>
#ifdef CONFIG_GPIO
#include <gpiod.h>
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *nb_gpio_role_name(enum nb_gpio_role r)
{
	static const char *const names[] = { "led", "fan", "busy" };

	return (unsigned)r < NB_GPIO_ROLES ? names[r] : "?";
}

/* ---- libgpiod ---------------------------------------------------------- */

#ifdef CONFIG_GPIO

struct gpiod_handle {
	struct gpiod_chip *chip;
	struct gpiod_line *line;
};

/* The chip labelled label among <root>/dev/gpiochip*, or NULL with why in
 * *err (no chip at all, or none of that label). */
static struct gpiod_chip *open_chip(const char *root, const char *label, int *err)
{
	char dir[NB_BOARD_PATH_MAX], path[NB_BOARD_PATH_MAX + 300];
	struct gpiod_chip *chip = NULL;
	struct dirent *e;
	DIR *dp;
	bool any = false;

	*err = -NB_ENOENT;
	if (nb_board_path(dir, root, "/dev") || !(dp = opendir(dir)))
		return NULL;
	while (!chip && (e = readdir(dp))) {
		if (strncmp(e->d_name, "gpiochip", 8) != 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		chip = gpiod_chip_open(path);
		if (!chip) {
			nb_dbg("board: %s: not a GPIO chip (%s)", path, strerror(errno));
			continue;
		}
		any = true;
		if (strcmp(gpiod_chip_label(chip), label) != 0) {
			gpiod_chip_close(chip);
			chip = NULL;
		}
	}
	closedir(dp);
	if (!chip && any)
		*err = -NB_ENOTSUP;
	return chip;
}

static int gpiod_request(void *ctx, const char *root, const struct nb_board_line *l,
			 const char *consumer, int value, void **handle)
{
	struct gpiod_handle *h = calloc(1, sizeof(*h));
	int err;

	(void)ctx;
	if (!h)
		return -NB_ENOMEM;
	h->chip = open_chip(root, l->chip, &err);
	if (!h->chip) {
		nb_warn("board: GPIO chip '%s' not found under %s/dev (%s)", l->chip,
			root, err == -NB_ENOENT ? "no GPIO chip at all" : "no chip of that label");
		free(h);
		return err;
	}
	h->line = gpiod_chip_get_line(h->chip, l->offset);
	if (!h->line || gpiod_line_request_output_flags(h->line, consumer,
							 l->active_low ? GPIOD_LINE_REQUEST_FLAG_ACTIVE_LOW : 0,
							 value) < 0) {
		nb_warn("board: GPIO %s:%u cannot be requested: %s", l->chip, l->offset,
			strerror(errno));
		gpiod_chip_close(h->chip);
		free(h);
		return -NB_EBUSY;
	}
	*handle = h;
	return 0;
}

static int gpiod_set(void *ctx, void *handle, int value)
{
	struct gpiod_handle *h = handle;

	(void)ctx;
	return gpiod_line_set_value(h->line, value) < 0 ? -NB_EIO : 0;
}

static void gpiod_release(void *ctx, void *handle)
{
	struct gpiod_handle *h = handle;

	(void)ctx;
	gpiod_line_release(h->line);
	gpiod_chip_close(h->chip);
	free(h);
}

const struct nb_gpio_ops nb_gpio_libgpiod_ops = { gpiod_request, gpiod_set, gpiod_release };

int nb_gpio_list(const char *root, FILE *out)
{
	char dir[NB_BOARD_PATH_MAX], path[NB_BOARD_PATH_MAX + 300];
	struct dirent *e;
	int n = 0, seen = 0;
	DIR *dp;

	if (nb_board_path(dir, root, "/dev") || !(dp = opendir(dir))) {
		fprintf(out, "  no %s\n", dir);
		return 0;
	}
	while ((e = readdir(dp))) {
		struct gpiod_chip *chip;
		if (strncmp(e->d_name, "gpiochip", 8) != 0)
			continue;
		seen++;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		chip = gpiod_chip_open(path);
		if (!chip) {
			fprintf(out, "  %s: not a GPIO chip (%s)\n", path, strerror(errno));
			continue;
		}
		fprintf(out, "  %s: %s, %u lines\n", path, gpiod_chip_label(chip),
			gpiod_chip_num_lines(chip));
		gpiod_chip_close(chip);
		n++;
	}
	closedir(dp);
	if (!seen)
		fprintf(out, "  no GPIO chip under %s\n", dir);
	return n;
}
#else
int nb_gpio_list(const char *root, FILE *out)
{
	(void)root;
	fprintf(out, "  built without CONFIG_GPIO\n");
	return 0;
}

static int no_request(void *ctx, const char *root, const struct nb_board_line *l,
		      const char *consumer, int value, void **handle)
{
	(void)ctx, (void)root, (void)l, (void)consumer, (void)value, (void)handle;
	nb_warn("board: built without CONFIG_GPIO: no GPIO lines");
	return -NB_ENOTSUP;
}

static int no_set(void *ctx, void *handle, int value)
{
	(void)ctx, (void)handle, (void)value;
	return -NB_ENOTSUP;
}

static void no_release(void *ctx, void *handle)
{
	(void)ctx, (void)handle;
}

const struct nb_gpio_ops nb_gpio_libgpiod_ops = { no_request, no_set, no_release };
#endif

/* ---- the recorder ------------------------------------------------------ */

static bool record_failing(const struct nb_gpio_record *r)
{
	char fail[NB_BOARD_PATH_MAX + 8];

	snprintf(fail, sizeof(fail), "%s.fail", r->path);
	return access(fail, F_OK) == 0;
}

static int record_line(struct nb_gpio_record *r, const struct nb_board_line *l, int value)
{
	if (!r->f || record_failing(r))
		return -NB_EIO;
	fprintf(r->f, "%.3f %s:%u %d\n", nb_sys_now(), l->chip, l->offset, value);
	fflush(r->f);
	return 0;
}

static int record_request(void *ctx, const char *root, const struct nb_board_line *l,
			  const char *consumer, int value, void **handle)
{
	struct nb_gpio_record *r = ctx;

	(void)root;
	(void)consumer;
	if (!r->f)
		r->f = fopen(r->path, "a");
	if (!r->f)
		nb_warn("board: GPIO record file %s: %s", r->path, strerror(errno));
	*handle = (void *)l;
	return record_line(r, l, value);
}

static int record_set(void *ctx, void *handle, int value)
{
	return record_line(ctx, handle, value);
}

static void record_release(void *ctx, void *handle)
{
	struct nb_gpio_record *r = ctx;

	(void)handle;
	if (r->f) {
		fclose(r->f);
		r->f = NULL;
	}
}

const struct nb_gpio_ops nb_gpio_record_ops = { record_request, record_set, record_release };

/* ---- lines ------------------------------------------------------------- */

void nb_gpio_open(struct nb_gpio *g, const struct nb_gpio_ops *ops, void *ctx, const char *root,
		  const struct nb_board_desc *d)
{
	const struct nb_board_line *lines[NB_GPIO_ROLES] = { &d->led, &d->fan, &d->busy };

	memset(g, 0, sizeof(*g));
	g->ops = ops;
	g->ctx = ctx;
	g->root = root;
	for (int r = 0; r < NB_GPIO_ROLES; r++) {
		struct nb_gpio_line *ln = &g->line[r];
		ln->desc = lines[r];
		ln->present = lines[r]->chip != NULL;
		if (!ln->present || !ops)
			continue;
		if (ops->request(ctx, root, lines[r], "nibble", 0, &ln->handle) == 0) {
			ln->ok = true;
		} else {
			nb_warn("board: GPIO %s line (%s:%u) unavailable: running without it",
				nb_gpio_role_name((enum nb_gpio_role)r), lines[r]->chip, lines[r]->offset);
			g->n_failures++;
			g->degraded = true;
		}
	}
}

void nb_gpio_close(struct nb_gpio *g)
{
	for (int r = 0; r < NB_GPIO_ROLES; r++) {
		struct nb_gpio_line *ln = &g->line[r];
		if (ln->ok) {
			g->ops->set(g->ctx, ln->handle, 0);
			g->ops->release(g->ctx, ln->handle);
		}
		ln->ok = false;
	}
}

void nb_gpio_set(struct nb_gpio *g, enum nb_gpio_role r, int value)
{
	struct nb_gpio_line *ln = &g->line[r];

	if (!ln->ok || ln->value == value)
		return;
	if (g->ops->set(g->ctx, ln->handle, value)) {
		nb_warn("board: GPIO %s line (%s:%u) failed: running without it",
			nb_gpio_role_name(r), ln->desc->chip, ln->desc->offset);
		g->ops->release(g->ctx, ln->handle);
		ln->ok = false;
		g->n_failures++;
		g->degraded = true;
		return;
	}
	ln->value = value;
}

int nb_gpio_led_pattern(enum nb_gov_state s, double now)
{
	/* one bit per 1/8 s, lowest first: a heartbeat blip when idle, steady
	 * when busy, 2 Hz when throttled, 4 Hz while updating, a long on and
	 * long off on error */
	static const unsigned char pattern[] = { 0x01, 0xff, 0x33, 0x55, 0x0f };
	unsigned slot = (unsigned)(now * 8) % 8;

	return (unsigned)s <= NB_GOV_ERROR ? (pattern[s] >> slot) & 1 : 0;
}
