/* `nibble board`: what the governor would see and use on this board. */
#include "runtime/applets/applet.h"
#include "runtime/base/err.h"
#include "runtime/base/sys.h"
#include "board/board.h"
#include "board/gov.h"
#include "board/gpio.h"
#include "board/sensor.h"

#include <math.h>
#include <string.h>

static void print_line(const char *role, const struct nb_board_line *l)
{
	if (l->chip)
		printf("  %-7s %s:%u%s\n", role, l->chip, l->offset, l->active_low ? " (active low)" : "");
	else
		printf("  %-7s none\n", role);
}

static void print_sensors(struct nb_sensor_set *s)
{
	double now = nb_sys_now();

	printf("thermal zones:\n");
	if (!s->n_zones)
		printf("  none\n");
	for (unsigned i = 0; i < s->n_zones; i++) {
		struct nb_sensor *z = &s->zones[i];
		if (nb_sensor_read(z, now) == NB_SENSOR_OK)
			printf("  %-14s %6.1f C  (%s)\n", z->name, z->value, z->path);
		else
			printf("  %-14s %s  (%s)\n", z->name, nb_sensor_fault_name(z->fault), z->path);
	}
	printf("power:\n");
	if (s->has_power && nb_sensor_read(&s->power, now) == NB_SENSOR_OK)
		printf("  %-14s %6.2f W  (%s)\n", s->power.name, s->power.value, s->power.path);
	else if (s->has_power)
		printf("  %-14s %s\n", s->power.name, nb_sensor_fault_name(s->power.fault));
	else
		printf("  no sensor: estimated from utilisation and frequency\n");
	printf("cpufreq:\n");
	if (!s->n_pol)
		printf("  none\n");
	for (unsigned i = 0; i < s->n_pol; i++) {
		struct nb_policy *p = &s->pol[i];
		nb_sensor_read(&p->cur, now);
		printf("  %-8s cur %.0f MHz, max %.0f MHz, limit %.0f MHz\n", p->cur.name,
		       p->cur.valid ? p->cur.value / 1000 : NAN, p->max_khz / 1000, p->orig_cap_khz / 1000);
	}
}

static int board_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sysfs-root", required_argument, NULL, 'r' },
		{ "board", required_argument, NULL, 'b' },
		{ NULL, 0, NULL, 0 },
	};
	const char *root = "/", *forced = NULL, *how;
	const struct nb_board_desc *d;
	struct nb_sensor_set s;
	struct nb_gov_cfg c;
	struct nb_gov g;
	int ch;

	while ((ch = nb_getopt("board", argc, argv, "r:b:", opts)) != -1) {
		if (ch == 'r')
			root = optarg;
		else if (ch == 'b')
			forced = optarg;
		else
			return NB_EXIT_USAGE;
	}
	if (optind != argc)
		return nb_usage_error("board", "unexpected argument '%s'", argv[optind]);
	if (forced && !nb_board_find(forced))
		return nb_usage_error("board", "--board: no board '%s' (rpi4, rpi5, jetson-orin-nano, "
				      "x86_64)", forced);
	if (nb_board_detect(root, forced, &d, &how) || nb_sensor_open(&s, root, d))
		return NB_EXIT_FAIL;
	printf("board: %s (%s), detected by %s, root %s\n", d->name, d->title, how, root);
	if (d->cores)
		printf("cores: %u alike, one cluster\n", d->cores);
	print_sensors(&s);
	printf("gpio chips:\n");
	nb_gpio_list(root, stdout);
	printf("gpio lines:\n");
	print_line("led", &d->led);
	print_line("fan", &d->fan);
	print_line("busy", &d->busy);
	print_line("button", &d->button);
	printf("budgets:\n");
	for (int m = 0; m < NB_GOV_OFF; m++) {
		nb_gov_cfg_default(&c, d->trip_c, d->hard_c, 1, 1);
		c.mode = (enum nb_gov_mode)m;
		nb_gov_init(&g, &c);
		printf("  %-12s target %.1f C%s\n", nb_gov_mode_name(c.mode), g.target_c,
		       m == NB_GOV_BALANCED ? " (default)" : "");
	}
	printf("  trip %.1f C, hard limit %.1f C, power budget %s%.1f W\n", d->trip_c, d->hard_c,
	       d->budget_w > 0 ? "" : "none ", d->budget_w);
	return NB_EXIT_OK;
}

const struct nb_applet nb_applet_board = {
	.name = "board",
	.summary = "the detected board, its sensors, GPIO, cpufreq and budgets",
	.usage = "usage: nibble board [--sysfs-root DIR] [--board NAME]\n\n"
		 "Prints the board (detected from the device tree or DMI, or forced), every\n"
		 "thermal zone and power sensor the governor reads with its value, the GPIO\n"
		 "chips and the board's lines, cpufreq state, and the governor's budgets\n"
		 "(docs/governor.md).\n\n"
		 "  -r, --sysfs-root DIR   read everything under DIR (/)\n"
		 "  -b, --board NAME       rpi4, rpi5, jetson-orin-nano or x86_64 (detected)\n",
	.main = board_main,
};
