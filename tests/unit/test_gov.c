/* Board support and the governor's controller: the controller against a
 * first-order thermal model of a Raspberry Pi 5 (the one of
 * tests/integration/governor/thermal.py, in ticks of one simulated second),
 * the power loop, modes; board detection, sensors and cpufreq on a fake
 * sysfs tree (missing, unreadable, garbage, jumping files); GPIO lines
 * through the recorder with failures; LED patterns; the pool's active cap. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "board/board.h"
#include "board/gov.h"
#include "board/gpio.h"
#include "board/sensor.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"
#include "runtime/model/pool.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the controller against the thermal model ---------------------------- */

struct plant {
	double t, amb, u;
	double gain; /* load per level: the same controller must hold whatever it is */
	double lag;  /* share of the way to the new load per tick */
};

#define P_IDLE 2.7
#define P_FULL 7.0
#define R_TH 6.5
#define TAU 70.0

static double plant_power(const struct plant *p)
{
	return P_IDLE + (P_FULL - P_IDLE) * p->u;
}

static void plant_step(struct plant *p, double level)
{
	double want = level * p->gain;

	p->u += ((want < 1 ? want : 1) - p->u) * p->lag;
	p->t += (p->amb + R_TH * plant_power(p) - p->t) / TAU;
}

/* The load that holds the target in the model: the thermal bound. */
static double u_star(double target, double amb)
{
	return ((target - amb) / R_TH - P_IDLE) / (P_FULL - P_IDLE);
}

struct run {
	double max_after, work, ticks;
};

static struct run simulate(struct nb_gov *g, struct plant *p, int ticks, double power_noise)
{
	struct run r = { -1e9, 0, 0 };
	bool crossed = false;

	for (int i = 0; i < ticks; i++) {
		struct nb_gov_in in = { .temp_c = p->t, .power_w = plant_power(p) + power_noise * (i % 2 ? 1 : -1),
					.busy = true, .queue_depth = 1 };
		const struct nb_gov_out *o = nb_gov_step(g, &in);
		assert_true(o->threads >= 1 && o->threads <= g->c.max_threads);
		assert_true(o->duty > 0 && o->duty <= 1);
		plant_step(p, o->level);
		crossed |= p->t >= g->target_c - 0.5;
		if (crossed) {
			r.max_after = p->t > r.max_after ? p->t : r.max_after;
			r.work += p->u;
			r.ticks++;
		}
	}
	return r;
}

static void test_holds_target_under_any_plant_gain(void **state)
{
	(void)state;
	for (double gain = 1; gain <= 3; gain += 0.5) {
		for (double lag = 0.2; lag <= 1; lag += 0.4) {
			struct nb_gov_cfg c;
			struct nb_gov g;
			struct plant p = { .t = 70, .amb = 45, .u = 0.9, .gain = gain, .lag = lag };
			struct run r;

			nb_gov_cfg_default(&c, 80, 85, 4, 4);
			nb_gov_init(&g, &c);
			assert_true(fabs(g.target_c - 77) < 1e-9); /* balanced: trip - 3 */
			r = simulate(&g, &p, 900, 0);
			if (!r.ticks || r.max_after > g.target_c + 1 ||
			    r.work / r.ticks < 0.9 * u_star(77, 45))
				print_message("gain %.1f lag %.1f: T %.2f, max %.2f, load %.3f\n", gain,
					      lag, p.t, r.max_after, r.ticks ? r.work / r.ticks : 0);
			assert_true(r.ticks > 0);
			assert_true(r.max_after <= g.target_c + 1);
			/* at least 90% of what the thermal budget allows */
			assert_true(r.work / r.ticks >= 0.9 * u_star(77, 45));
			assert_true(g.limiting);
			assert_true(g.transitions >= 1);
		}
	}
}

static void test_off_overshoots(void **state)
{
	struct nb_gov_cfg c;
	struct nb_gov g;
	struct plant p = { .t = 70, .amb = 45, .u = 0.9, .gain = 1, .lag = 0.5 };
	struct run r;

	(void)state;
	nb_gov_cfg_default(&c, 80, 85, 4, 4);
	c.mode = NB_GOV_OFF;
	nb_gov_init(&g, &c);
	r = simulate(&g, &p, 600, 0);
	assert_true(r.max_after > 85); /* the model without a governor: past the hard limit */
	assert_true(g.out.level == 1 && g.out.threads == 4 && g.out.duty == 1);
	assert_int_equal(g.transitions, 0);
}

static void test_ambient_step_recovers(void **state)
{
	struct nb_gov_cfg c;
	struct nb_gov g;
	struct plant p = { .t = 74, .amb = 40, .u = 0.9, .gain = 2, .lag = 0.5 };
	struct run r;

	(void)state;
	nb_gov_cfg_default(&c, 80, 85, 4, 4);
	nb_gov_init(&g, &c);
	simulate(&g, &p, 300, 0);
	p.amb = 50;
	r = simulate(&g, &p, 600, 0);
	assert_true(r.max_after <= 78.5);
	assert_true(p.t <= 77.5);
	/* and back: cooler air gives the throughput back */
	p.amb = 35;
	simulate(&g, &p, 900, 0);
	assert_true(p.u > 0.85);
}

static void test_power_budget(void **state)
{
	struct nb_gov_cfg c;
	struct nb_gov g;
	struct plant p = { .t = 40, .amb = 25, .u = 0.9, .gain = 1.5, .lag = 0.7 };
	double sum = 0;
	int n = 0;

	(void)state;
	nb_gov_cfg_default(&c, 99, 104, 6, 4);
	c.budget_w = 5;
	nb_gov_init(&g, &c);
	simulate(&g, &p, 100, 0.1);
	for (int i = 0; i < 300; i++) {
		struct run r = simulate(&g, &p, 1, 0.1);
		(void)r;
		sum += plant_power(&p);
		n++;
	}
	assert_true(sum / n <= 5.1 && sum / n >= 4.8);
	/* the budget raised at run time: the level follows */
	nb_gov_set(&g, NB_GOV_BALANCED, 6.5);
	simulate(&g, &p, 300, 0.1);
	assert_true(plant_power(&p) > 6);
	/* removed */
	nb_gov_set(&g, NB_GOV_BALANCED, 0);
	simulate(&g, &p, 100, 0);
	assert_true(g.out.level == 1);
}

static void test_modes_and_actuators(void **state)
{
	struct nb_gov_cfg c;
	struct nb_gov g;
	struct nb_gov_in in = { .temp_c = 50, .power_w = NAN, .busy = false };

	(void)state;
	assert_int_equal(nb_gov_mode_parse("quiet"), NB_GOV_QUIET);
	assert_int_equal(nb_gov_mode_parse("turbo"), -1);
	assert_string_equal(nb_gov_state_name(NB_GOV_THROTTLED), "throttled");
	nb_gov_cfg_default(&c, 80, 85, 4, 8);
	c.mode = NB_GOV_QUIET;
	nb_gov_init(&g, &c);
	assert_true(fabs(g.target_c - 65) < 1e-9);
	nb_gov_step(&g, &in);
	assert_int_equal(g.out.batch, 4); /* quiet: half the slots */
	assert_int_equal(g.out.state, NB_GOV_IDLE);
	assert_false(g.out.fan);
	nb_gov_set(&g, NB_GOV_PERFORMANCE, -1);
	assert_true(fabs(g.target_c - 78) < 1e-9);
	/* hot and blind */
	in.temp_c = 90;
	in.busy = true;
	in.queue_depth = 3;
	for (int i = 0; i < 200; i++)
		nb_gov_step(&g, &in);
	assert_true(g.out.level <= c.min_level + 1e-9);
	assert_int_equal(g.out.threads, 1);
	assert_true(g.out.freq_frac < 1);
	assert_true(g.out.fan);
	assert_true(g.out.spill);
	assert_int_equal(g.out.state, NB_GOV_THROTTLED);
	in.temp_c = NAN; /* no sensor: the fan goes on anyway, no loop */
	nb_gov_step(&g, &in);
	assert_true(g.out.fan);
	assert_true(g.out.level == 1);
}

/* ---- fake sysfs ------------------------------------------------------------ */

static char root[64];

static void put_bytes(const char *rel, const char *data, size_t len)
{
	char path[256], dir[300];
	FILE *f;

	snprintf(path, sizeof(path), "%s%s", root, rel);
	snprintf(dir, sizeof(dir), "mkdir -p '%s'", path);
	*strrchr(dir, '/') = '\0';
	strcat(dir, "'");
	assert_int_equal(system(dir), 0);
	f = fopen(path, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, len, f), len);
	fclose(f);
}

static void put(const char *rel, const char *text)
{
	put_bytes(rel, text, strlen(text));
}

static int make_root(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/nb-gov-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int remove_root(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd);
}

static void test_detect(void **state)
{
	const struct nb_board_desc *d;
	const char *how;

	(void)state;
	assert_int_equal(nb_board_detect(root, NULL, &d, &how), 0);
	assert_string_equal(d->name, "x86_64");
	assert_string_equal(how, "fallback");
	put_bytes("/proc/device-tree/compatible", "raspberrypi,4-model-b\0brcm,bcm2711", 35);
	assert_int_equal(nb_board_detect(root, NULL, &d, &how), 0);
	assert_string_equal(d->name, "rpi4");
	assert_string_equal(how, "device-tree");
	assert_int_equal(nb_board_detect(root, "jetson-orin-nano", &d, &how), 0);
	assert_string_equal(d->name, "jetson-orin-nano");
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_board_detect(root, "rpi9", &d, &how), -NB_EINVAL);
	nb_log_set_level(NB_LOG_WARN);
	/* the compatible string in second place, and garbage around it */
	put_bytes("/proc/device-tree/compatible", "vendor,thing\0nvidia,p3767-0005\0\xff\xfe", 33);
	assert_int_equal(nb_board_detect(root, NULL, &d, &how), 0);
	assert_string_equal(d->name, "jetson-orin-nano");
}

static void test_sensor_faults(void **state)
{
	const struct nb_board_desc *d = nb_board_find("rpi5");
	struct nb_sensor_set s;
	char zone[256];
	double t, p, f, now = 100;

	(void)state;
	put("/sys/class/thermal/thermal_zone0/type", "cpu-thermal\n");
	put("/sys/class/thermal/thermal_zone0/temp", "60000\n");
	put("/sys/class/thermal/thermal_zone1/type", "other-thermal\n"); /* not the board's */
	put("/sys/class/thermal/thermal_zone1/temp", "99000\n");
	assert_int_equal(nb_sensor_open(&s, root, d), 0);
	assert_int_equal(s.n_zones, 1);
	assert_int_equal(nb_sensor_sample(&s, now, &t, &p, &f), 0);
	assert_true(fabs(t - 60) < 1e-9);
	assert_true(isnan(p)); /* no rail on a Pi */
	nb_log_set_level(NB_LOG_SILENT);
	put("/sys/class/thermal/thermal_zone0/temp", "-ENODATA\n");
	assert_int_equal(nb_sensor_sample(&s, now += 1, &t, &p, &f), 1);
	assert_int_equal(s.zones[0].fault, NB_SENSOR_GARBAGE);
	assert_true(fabs(t - 60) < 1e-9); /* held */
	put("/sys/class/thermal/thermal_zone0/temp", "900000\n"); /* 900 C: no die */
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 1), NB_SENSOR_GARBAGE);
	snprintf(zone, sizeof(zone), "%s/sys/class/thermal/thermal_zone0/temp", root);
	unlink(zone);
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 1), NB_SENSOR_MISSING);
	assert_int_equal(mkdir(zone, 0755), 0);
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 1), NB_SENSOR_UNREADABLE);
	rmdir(zone);
	put("/sys/class/thermal/thermal_zone0/temp", "61000\n");
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 1), NB_SENSOR_OK);
	/* a one-read spike is not believed; a level that stays is */
	put("/sys/class/thermal/thermal_zone0/temp", "120000\n");
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 0.1), NB_SENSOR_JUMP);
	put("/sys/class/thermal/thermal_zone0/temp", "61100\n");
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 0.1), NB_SENSOR_OK);
	put("/sys/class/thermal/thermal_zone0/temp", "90000\n");
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 0.1), NB_SENSOR_JUMP);
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 0.1), NB_SENSOR_JUMP);
	assert_int_equal(nb_sensor_read(&s.zones[0], now += 0.1), NB_SENSOR_OK);
	assert_true(fabs(s.zones[0].value - 90) < 1e-9);
	assert_true(s.zones[0].n_faults >= 6);
	nb_log_set_level(NB_LOG_WARN);
	nb_sensor_close(&s);
}

static void test_power_rail_and_cpufreq(void **state)
{
	const struct nb_board_desc *d = nb_board_find("jetson-orin-nano");
	const char *pol = "/sys/devices/system/cpu/cpufreq/policy0";
	char path[256], buf[64];
	struct nb_sensor_set s;
	double t, p, f;

	(void)state;
	put("/sys/class/hwmon/hwmon3/name", "ina3221\n");
	put("/sys/class/hwmon/hwmon3/in1_label", "VDD_CPU_GPU_CV\n");
	put("/sys/class/hwmon/hwmon3/in2_label", "VDD_IN\n");
	put("/sys/class/hwmon/hwmon3/in2_input", "5080\n");
	put("/sys/class/hwmon/hwmon3/curr2_input", "1200\n");
	snprintf(path, sizeof(path), "%s/cpuinfo_max_freq", pol), put(path, "1500000\n");
	snprintf(path, sizeof(path), "%s/cpuinfo_min_freq", pol), put(path, "100000\n");
	snprintf(path, sizeof(path), "%s/scaling_max_freq", pol), put(path, "1400000\n");
	snprintf(path, sizeof(path), "%s/scaling_cur_freq", pol), put(path, "750000\n");
	assert_int_equal(nb_sensor_open(&s, root, d), 0);
	assert_true(s.has_power);
	assert_string_equal(s.power.name, "VDD_IN");
	nb_sensor_sample(&s, 10, &t, &p, &f);
	assert_true(fabs(p - 5.08 * 1.2) < 1e-9);
	assert_true(fabs(f - 0.5) < 1e-9);
	/* untouched until the governor limits; then written, then restored */
	assert_int_equal(nb_sensor_cap_freq(&s, 1), 0);
	assert_int_equal(nb_sensor_cap_freq(&s, 0.6), 0);
	snprintf(path, sizeof(path), "%s%s/scaling_max_freq", root, pol);
	assert_true(nb_board_read("", path, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "900000\n");
	nb_sensor_close(&s);
	assert_true(nb_board_read("", path, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "1400000\n");
	/* not writable: reported, once */
	unlink(path);
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(nb_sensor_open(&s, root, d), 0);
	nb_log_set_level(NB_LOG_SILENT);
	assert_int_equal(nb_sensor_cap_freq(&s, 0.6), -NB_EPERM);
	assert_int_equal(nb_sensor_cap_freq(&s, 0.5), -NB_EPERM);
	nb_log_set_level(NB_LOG_WARN);
	assert_false(s.pol[0].writable);
	nb_sensor_close(&s);
	rmdir(path);
}

/* ---- GPIO ------------------------------------------------------------------ */

static void test_gpio_recorder_and_failures(void **state)
{
	const struct nb_board_desc *d = nb_board_find("rpi4");
	struct nb_gpio_record rec;
	struct nb_gpio g;
	char fail[NB_BOARD_PATH_MAX + 8];

	(void)state;
	memset(&rec, 0, sizeof(rec));
	snprintf(rec.path, sizeof(rec.path), "%s/gpio.log", root);
	nb_gpio_open(&g, &nb_gpio_record_ops, &rec, root, d);
	assert_false(g.degraded);
	assert_true(g.line[NB_GPIO_FAN].ok);
	nb_gpio_set(&g, NB_GPIO_FAN, 1);
	nb_gpio_set(&g, NB_GPIO_FAN, 1); /* no change: not written */
	nb_gpio_set(&g, NB_GPIO_LED, 1);
	fflush(rec.f);
	{
		FILE *f = fopen(rec.path, "r");
		char line[128];
		int fan_on = 0, n = 0;
		assert_non_null(f);
		while (fgets(line, sizeof(line), f)) {
			n++;
			fan_on += strstr(line, "pinctrl-bcm2711:14 1") != NULL;
		}
		fclose(f);
		assert_int_equal(fan_on, 1);
		assert_int_equal(n, 3 + 2); /* three requests at 0, two changes */
	}
	snprintf(fail, sizeof(fail), "%s.fail", rec.path);
	put(fail + strlen(root), "");
	nb_log_set_level(NB_LOG_SILENT);
	nb_gpio_set(&g, NB_GPIO_FAN, 0);
	nb_log_set_level(NB_LOG_WARN);
	assert_true(g.degraded);
	assert_false(g.line[NB_GPIO_FAN].ok);
	nb_gpio_set(&g, NB_GPIO_FAN, 1); /* dropped: nothing happens */
	nb_gpio_close(&g);
	unlink(fail);
}

static void test_libgpiod_reports_no_chip(void **state)
{
	const struct nb_board_desc *d = nb_board_find("rpi5");
	struct nb_gpio g;

	(void)state;
	/* a /dev/gpiochip0 that is a plain file: libgpiod refuses it */
	put("/dev/gpiochip0", "");
	nb_log_set_level(NB_LOG_SILENT);
	nb_gpio_open(&g, &nb_gpio_libgpiod_ops, NULL, root, d);
	nb_log_set_level(NB_LOG_WARN);
	assert_true(g.degraded);
	assert_false(g.line[NB_GPIO_LED].ok);
	assert_false(g.line[NB_GPIO_FAN].present); /* the Pi 5's fan is no GPIO line */
	nb_gpio_set(&g, NB_GPIO_LED, 1);
	nb_gpio_close(&g);
}

static void test_led_patterns_distinct(void **state)
{
	unsigned bits[NB_GOV_ERROR + 1] = { 0 };

	(void)state;
	for (int s = 0; s <= NB_GOV_ERROR; s++)
		for (int slot = 0; slot < 8; slot++)
			bits[s] |= (unsigned)nb_gpio_led_pattern((enum nb_gov_state)s, slot / 8.0 + 0.01) << slot;
	for (int a = 0; a <= NB_GOV_ERROR; a++)
		for (int b = 0; b < a; b++)
			assert_true(bits[a] != bits[b]);
	assert_int_equal(bits[NB_GOV_BUSY], 0xff);
}

/* ---- the pool's active cap ------------------------------------------------- */

static atomic_uint seen_mask;

static void mark(void *arg, unsigned ith, unsigned nth)
{
	(void)arg;
	(void)nth;
	atomic_fetch_or(&seen_mask, 1u << ith);
	for (volatile int i = 0; i < 20000; i++)
		;
}

static void test_pool_active_cap(void **state)
{
	struct nb_pool p;

	(void)state;
	assert_int_equal(nb_pool_open(&p, 3, NULL), 0);
	nb_pool_set_active(&p, 1);
	assert_int_equal(nb_pool_active(&p), 1);
	usleep(20000);
	for (int i = 0; i < 200; i++) {
		atomic_store(&seen_mask, 0);
		nb_pool_share(&p, mark, NULL);
		assert_int_equal(atomic_load(&seen_mask), 1); /* the caller alone */
	}
	/* a run that needs everyone still gets everyone */
	atomic_store(&seen_mask, 0);
	nb_pool_run(&p, mark, NULL);
	assert_int_equal(atomic_load(&seen_mask), 7);
	nb_pool_set_active(&p, 99); /* capped at the pool's size */
	assert_int_equal(nb_pool_active(&p), 3);
	{
		unsigned any = 0;
		for (int i = 0; i < 2000 && !(any & 6); i++) {
			atomic_store(&seen_mask, 0);
			nb_pool_share(&p, mark, NULL);
			any |= atomic_load(&seen_mask);
		}
		assert_true(any & 6); /* workers join again */
	}
	nb_pool_close(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_holds_target_under_any_plant_gain),
		cmocka_unit_test(test_off_overshoots),
		cmocka_unit_test(test_ambient_step_recovers),
		cmocka_unit_test(test_power_budget),
		cmocka_unit_test(test_modes_and_actuators),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_sensor_faults),
		cmocka_unit_test(test_power_rail_and_cpufreq),
		cmocka_unit_test(test_gpio_recorder_and_failures),
		cmocka_unit_test(test_libgpiod_reports_no_chip),
		cmocka_unit_test(test_led_patterns_distinct),
		cmocka_unit_test(test_pool_active_cap),
	};

	nb_log_set_level(NB_LOG_WARN);
	return cmocka_run_group_tests(tests, make_root, remove_root);
}
