/* The governor's run-time glue (see governor.h). */
#include "runtime/server/governor.h"

#include "runtime/base/args.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void nb_govern_opts_default(struct nb_govern_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->root = "/";
	o->mode = -1;
	o->budget_w = -1;
}

int nb_govern_parse_opt(struct nb_govern_opts *o, bool *on, const char *applet, int key,
			const char *arg)
{
	static const char *const modes[] = { "performance", "balanced", "quiet", "off" };
	size_t m;
	int ret = 0;

	if (!*on) {
		nb_govern_opts_default(o);
		*on = true;
	}
	switch (key) {
	case NB_GOVERN_O_MODE:
		ret = nb_arg_choice(applet, "--governor", arg, modes, 4, &m);
		o->mode = (int)m;
		break;
	case NB_GOVERN_O_BUDGET:
		ret = nb_arg_float(applet, "--power-budget", arg, 0, 1000, &o->budget_w);
		break;
	case NB_GOVERN_O_TARGET:
		ret = nb_arg_float(applet, "--target-temp", arg, 20, 120, &o->target_c);
		break;
	case NB_GOVERN_O_TICK:
		ret = nb_arg_float(applet, "--governor-interval", arg, 0.01, 10, &o->interval_s);
		break;
	case NB_GOVERN_O_BOARD:
		if (!nb_board_find(arg)) {
			nb_usage_error(applet, "--board: no board '%s' (rpi4, rpi5, jetson-orin-nano, "
				       "x86_64)", arg);
			return -NB_EINVAL;
		}
		o->board = arg;
		break;
	case NB_GOVERN_O_ROOT:
		o->root = arg;
		break;
	case NB_GOVERN_O_GPIO:
		if (strcmp(arg, "gpiod") && strcmp(arg, "none") && strncmp(arg, "record:", 7)) {
			nb_usage_error(applet, "--gpio: '%s' is not gpiod, none or record:FILE", arg);
			return -NB_EINVAL;
		}
		o->gpio = strcmp(arg, "gpiod") ? arg : NULL;
		break;
	default:
		return -NB_EINVAL;
	}
	return ret;
}

static double process_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void open_gpio(struct nb_govern *g)
{
	const char *spec = g->o.gpio;

	if (spec && strcmp(spec, "none") == 0)
		return;
	if (spec && strncmp(spec, "record:", 7) == 0) {
		snprintf(g->rec.path, sizeof(g->rec.path), "%s", spec + 7);
		nb_gpio_open(&g->gpio, &nb_gpio_record_ops, &g->rec, g->o.root, g->desc);
	} else {
		nb_gpio_open(&g->gpio, &nb_gpio_libgpiod_ops, NULL, g->o.root, g->desc);
	}
}

int nb_govern_open(struct nb_govern *g, const struct nb_govern_opts *o, unsigned max_threads,
		   unsigned max_batch)
{
	struct nb_gov_cfg c;
	int ret;

	memset(g, 0, sizeof(*g));
	g->o = *o;
	if (!g->o.root)
		g->o.root = "/";
	ret = nb_board_detect(g->o.root, o->board, &g->desc, &g->how);
	if (ret)
		return ret;
	ret = nb_sensor_open(&g->sens, g->o.root, g->desc);
	if (ret)
		return ret;
	nb_gov_cfg_default(&c, g->desc->trip_c, g->desc->hard_c, max_threads, max_batch);
	if (o->mode >= 0)
		c.mode = (enum nb_gov_mode)o->mode;
	c.budget_w = o->budget_w >= 0 ? o->budget_w : g->desc->budget_w;
	c.target_c = o->target_c;
	nb_gov_init(&g->gov, &c);
	open_gpio(g);
	g->interval = o->interval_s > 0 ? o->interval_s : CONFIG_GOVERNOR_INTERVAL_MS / 1000.0;
	g->temp_c = g->power_w = NAN;
	g->freq_frac = 1;
	g->open = true;
	nb_info("governor: board %s (%s), %u thermal zone(s), power %s, mode %s, target %.1f C, "
		"budget %s%.1f W, tick %.2f s", g->desc->name, g->how, g->sens.n_zones,
		g->sens.has_power ? g->sens.power.name : "estimated", nb_gov_mode_name(c.mode),
		g->gov.target_c, c.budget_w > 0 ? "" : "none ", c.budget_w, g->interval);
	return 0;
}

void nb_govern_set_apply(struct nb_govern *g, nb_govern_apply_fn fn, void *arg)
{
	g->apply = fn;
	g->apply_arg = arg;
}

static void add_why(struct nb_govern *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_why(struct nb_govern *g, const char *fmt, ...)
{
	size_t len = strlen(g->why);
	va_list ap;

	if (len + 3 >= sizeof(g->why))
		return;
	if (len)
		g->why[len++] = ',', g->why[len++] = ' ', g->why[len] = '\0';
	va_start(ap, fmt);
	vsnprintf(g->why + len, sizeof(g->why) - len, fmt, ap);
	va_end(ap);
}

static void assess(struct nb_govern *g)
{
	g->why[0] = '\0';
	if (!g->sens.n_zones)
		add_why(g, "no thermal zone");
	for (unsigned i = 0; i < g->sens.n_zones; i++)
		if (g->sens.zones[i].fault)
			add_why(g, "%s %s", g->sens.zones[i].name,
				nb_sensor_fault_name(g->sens.zones[i].fault));
	if (g->sens.has_power && g->sens.power.fault)
		add_why(g, "power %s", nb_sensor_fault_name(g->sens.power.fault));
	if (g->freq_failed)
		add_why(g, "cpufreq not writable");
	for (int r = 0; r < NB_GPIO_ROLES; r++)
		if (g->gpio.line[r].present && !g->gpio.line[r].ok)
			add_why(g, "gpio %s failed", nb_gpio_role_name((enum nb_gpio_role)r));
	g->degraded = g->why[0] != '\0';
}

static void tick(struct nb_govern *g, double now, unsigned queue_depth, bool busy)
{
	double cpu = process_cpu_s(), dt = g->t_last > 0 ? now - g->t_last : 0, power;
	const struct nb_gov_out *out;
	struct nb_gov_in in;

	if (dt > 0)
		g->busy_cores = (cpu - g->cpu_last) / dt;
	g->cpu_last = cpu;
	g->sensor_faults = nb_sensor_sample(&g->sens, now, &g->temp_c, &power, &g->freq_frac);
	g->power_estimated = isnan(power);
	g->power_w = g->power_estimated ? g->desc->idle_w + g->desc->core_w * g->busy_cores * g->freq_frac
					: power;
	if (!isnan(g->temp_c) && g->temp_c > g->gov.target_c && dt > 0)
		g->over_s += dt;
	g->t_last = now;
	in = (struct nb_gov_in){ .temp_c = g->temp_c, .power_w = g->power_w,
				 .queue_depth = queue_depth, .busy = busy, .degraded = g->degraded };
	out = nb_gov_step(&g->gov, &in);
	if (g->gov.c.mode != NB_GOV_OFF && nb_sensor_cap_freq(&g->sens, out->freq_frac))
		g->freq_failed = true;
	nb_gpio_set(&g->gpio, NB_GPIO_FAN, out->fan);
	nb_gpio_set(&g->gpio, NB_GPIO_BUSY, busy);
	assess(g);
	if (g->apply)
		g->apply(g->apply_arg, out);
}

bool nb_govern_poll(struct nb_govern *g, double now, unsigned queue_depth, bool busy)
{
	bool ticked = false;
	enum nb_gov_state st;

	if (!g->open)
		return false;
	if (now >= g->t_next) {
		tick(g, now, queue_depth, busy);
		g->t_next = now + g->interval;
		ticked = true;
	}
	st = g->degraded ? NB_GOV_ERROR : g->gov.out.state;
	nb_gpio_set(&g->gpio, NB_GPIO_LED, nb_gpio_led_pattern(st, now));
	return ticked;
}

int nb_govern_set(struct nb_govern *g, const char *mode, double budget_w)
{
	int m = mode ? nb_gov_mode_parse(mode) : (int)g->gov.c.mode;

	if (m < 0)
		return -NB_EINVAL;
	nb_gov_set(&g->gov, (enum nb_gov_mode)m, budget_w);
	nb_info("governor: mode %s, target %.1f C, budget %.1f W", nb_gov_mode_name(g->gov.c.mode),
		g->gov.target_c, g->gov.c.budget_w);
	return 0;
}

void nb_govern_close(struct nb_govern *g)
{
	if (!g || !g->open)
		return;
	nb_gpio_close(&g->gpio);
	nb_sensor_close(&g->sens);
	g->open = false;
}

/* Appends to buf at *len; false once it does not fit. */
static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*len >= cap)
		return false;
	va_start(ap, fmt);
	n = vsnprintf(buf + *len, cap - *len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= cap - *len) {
		*len = cap;
		return false;
	}
	*len += (size_t)n;
	return true;
}

/* JSON has no NaN: null. */
static void put_num(char *buf, size_t cap, size_t *len, const char *key, double v)
{
	if (isnan(v))
		put(buf, cap, len, "\"%s\":null,", key);
	else
		put(buf, cap, len, "\"%s\":%.2f,", key, v);
}

int nb_govern_json(const struct nb_govern *g, char *buf, size_t cap)
{
	const struct nb_gov_out *o = &g->gov.out;
	size_t len = 0;

	put(buf, cap, &len, "{\"board\":\"%s\",\"mode\":\"%s\",\"state\":\"%s\",", g->desc->name,
	    nb_gov_mode_name(g->gov.c.mode), nb_gov_state_name(g->degraded ? NB_GOV_ERROR : o->state));
	put_num(buf, cap, &len, "temperature_c", g->temp_c);
	put_num(buf, cap, &len, "target_c", g->gov.target_c);
	put_num(buf, cap, &len, "power_w", g->power_w);
	put(buf, cap, &len, "\"power_source\":\"%s\",", g->power_estimated ? "estimate" : "sensor");
	put_num(buf, cap, &len, "budget_w", g->gov.c.budget_w);
	put(buf, cap, &len, "\"level\":%.3f,\"threads\":%u,\"duty\":%.3f,\"batch\":%u,"
	    "\"fan\":%s,\"spill\":%s,\"transitions\":%lu,\"seconds_over_target\":%.1f,"
	    "\"degraded\":%s,\"why\":\"%s\"}", o->level, o->threads, o->duty, o->batch,
	    o->fan ? "true" : "false", o->spill ? "true" : "false", g->gov.transitions, g->over_s,
	    g->degraded ? "true" : "false", g->why);
	return len < cap ? (int)len : -NB_ERANGE;
}

static unsigned long sensor_faults(const struct nb_govern *g)
{
	unsigned long n = g->sens.power.n_faults;

	for (unsigned i = 0; i < g->sens.n_zones; i++)
		n += g->sens.zones[i].n_faults;
	return n;
}

int nb_govern_metrics(const struct nb_govern *g, char *buf, size_t cap)
{
	const struct nb_gov_out *o = &g->gov.out;
	size_t len = 0;

	put(buf, cap, &len, "# HELP nibble_temperature_celsius Thermal zones the governor reads.\n"
	    "# TYPE nibble_temperature_celsius gauge\n");
	for (unsigned i = 0; i < g->sens.n_zones; i++)
		if (g->sens.zones[i].valid)
			put(buf, cap, &len, "nibble_temperature_celsius{zone=\"%s\"} %.2f\n",
			    g->sens.zones[i].name, g->sens.zones[i].value);
	put(buf, cap, &len, "# HELP nibble_governor_target_celsius Temperature the governor holds.\n"
	    "# TYPE nibble_governor_target_celsius gauge\nnibble_governor_target_celsius %.2f\n",
	    g->gov.target_c);
	if (!isnan(g->power_w))
		put(buf, cap, &len, "# HELP nibble_power_watts Board power, measured or estimated.\n"
		    "# TYPE nibble_power_watts gauge\nnibble_power_watts{source=\"%s\"} %.3f\n",
		    g->power_estimated ? "estimate" : "sensor", g->power_w);
	put(buf, cap, &len, "# HELP nibble_governor_budget_watts Power budget (0: none).\n"
	    "# TYPE nibble_governor_budget_watts gauge\nnibble_governor_budget_watts %.2f\n"
	    "# HELP nibble_governor_level Share of full compute allowed.\n"
	    "# TYPE nibble_governor_level gauge\nnibble_governor_level %.3f\n"
	    "# HELP nibble_governor_active_threads Worker threads allowed.\n"
	    "# TYPE nibble_governor_active_threads gauge\nnibble_governor_active_threads %u\n"
	    "# HELP nibble_governor_duty Share of time decode steps may take (pacing).\n"
	    "# TYPE nibble_governor_duty gauge\nnibble_governor_duty %.3f\n"
	    "# HELP nibble_governor_batch_cap Slots allowed to run at once.\n"
	    "# TYPE nibble_governor_batch_cap gauge\nnibble_governor_batch_cap %u\n",
	    g->gov.c.budget_w, o->level, o->threads, o->duty, o->batch);
	put(buf, cap, &len, "# HELP nibble_governor_mode Active mode (1 for the mode in force).\n"
	    "# TYPE nibble_governor_mode gauge\n");
	for (int m = 0; m < NB_GOV_MODES; m++)
		put(buf, cap, &len, "nibble_governor_mode{mode=\"%s\"} %d\n",
		    nb_gov_mode_name((enum nb_gov_mode)m), (int)g->gov.c.mode == m);
	put(buf, cap, &len, "# HELP nibble_governor_transitions_total Changes between limiting and not.\n"
	    "# TYPE nibble_governor_transitions_total counter\nnibble_governor_transitions_total %lu\n"
	    "# HELP nibble_governor_over_target_seconds_total Time above the target temperature.\n"
	    "# TYPE nibble_governor_over_target_seconds_total counter\n"
	    "nibble_governor_over_target_seconds_total %.1f\n"
	    "# HELP nibble_governor_spill Work should go elsewhere (1) or not (0).\n"
	    "# TYPE nibble_governor_spill gauge\nnibble_governor_spill %d\n"
	    "# HELP nibble_governor_fan Fan line on (1) or off (0).\n"
	    "# TYPE nibble_governor_fan gauge\nnibble_governor_fan %d\n"
	    "# HELP nibble_governor_degraded A sensor or actuator is in a fault.\n"
	    "# TYPE nibble_governor_degraded gauge\nnibble_governor_degraded %d\n"
	    "# HELP nibble_governor_sensor_faults_total Sensor reads that failed.\n"
	    "# TYPE nibble_governor_sensor_faults_total counter\n",
	    g->gov.transitions, g->over_s, o->spill, o->fan, g->degraded);
	put(buf, cap, &len, "nibble_governor_sensor_faults_total %lu\n", sensor_faults(g));
	return len < cap ? (int)len : -NB_ERANGE;
}
