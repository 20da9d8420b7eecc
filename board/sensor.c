/* Reading sysfs as it is: files that vanish (a hot-unplugged hwmon), hold
 * "-ENODATA" style garbage or a spike from a flaky I2C read, and a cpufreq
 * limit only root may write. */
#include "board/sensor.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const char *nb_sensor_fault_name(enum nb_sensor_fault f)
{
	static const char *const names[] = { "ok", "missing", "unreadable", "garbage", "jump" };

	return (unsigned)f < sizeof(names) / sizeof(names[0]) ? names[f] : "?";
}

/* One number from a small file at an absolute path. */
static enum nb_sensor_fault read_number(const char *path, double *out)
{
	char buf[64], *end;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);

	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? NB_SENSOR_MISSING : NB_SENSOR_UNREADABLE;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	close(fd);
	if (n < 0)
		return NB_SENSOR_UNREADABLE;
	buf[n] = '\0';
	errno = 0;
	*out = strtod(buf, &end);
	while (*end == ' ' || *end == '\n' || *end == '\t')
		end++;
	if (end == buf || *end || errno || !isfinite(*out))
		return NB_SENSOR_GARBAGE;
	return NB_SENSOR_OK;
}

static void note_fault(struct nb_sensor *s, enum nb_sensor_fault f)
{
	s->n_faults++;
	if (f != s->fault)
		nb_warn("board: sensor %s (%s): %s; %s", s->name, s->path, nb_sensor_fault_name(f),
			s->valid ? "holding its last value" : "no value yet");
	s->fault = f;
}

/* A jump is believed once the new level has repeated NB_SENSOR_CONFIRM
 * times (within the believable rate of each other). */
static bool jump_confirmed(struct nb_sensor *s, double v, double dt)
{
	double slack = s->max_rate * (dt > 0 ? dt : 1) + (s->hi - s->lo) * 0.01;

	if (s->n_pending && fabs(v - s->pending) <= slack)
		s->n_pending++;
	else
		s->n_pending = 1;
	s->pending = v;
	return s->n_pending >= NB_SENSOR_CONFIRM;
}

enum nb_sensor_fault nb_sensor_read(struct nb_sensor *s, double now)
{
	double raw, raw2 = 1, v, dt = now - s->t_value;
	enum nb_sensor_fault f = read_number(s->path, &raw);

	if (f == NB_SENSOR_OK && s->path2[0])
		f = read_number(s->path2, &raw2);
	v = raw * raw2 * s->scale;
	if (f == NB_SENSOR_OK && (v < s->lo || v > s->hi))
		f = NB_SENSOR_GARBAGE;
	if (f == NB_SENSOR_OK && s->valid &&
	    fabs(v - s->value) > s->max_rate * (dt > 0 ? dt : 1) + (s->hi - s->lo) * 0.01 &&
	    !jump_confirmed(s, v, dt))
		f = NB_SENSOR_JUMP;
	if (f != NB_SENSOR_OK) {
		note_fault(s, f);
		return f;
	}
	if (s->fault != NB_SENSOR_OK)
		nb_info("board: sensor %s reads again (%.1f)", s->name, v);
	s->fault = NB_SENSOR_OK;
	s->n_pending = 0;
	s->value = v;
	s->valid = true;
	s->t_value = now;
	return NB_SENSOR_OK;
}

static bool listed(const struct nb_board_desc *d, const char *type)
{
	if (!d->zones[0])
		return true;
	for (unsigned i = 0; i < NB_BOARD_MAX_ZONES && d->zones[i]; i++)
		if (strcmp(d->zones[i], type) == 0)
			return true;
	return false;
}

static void chomp(char *s)
{
	size_t n = strlen(s);

	while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
		s[--n] = '\0';
}

/* Thermal zones: millidegrees; a die changes by at most ~20 C/s under a
 * step of full load, so a faster change is a bad read. */
static void find_zones(struct nb_sensor_set *s, const struct nb_board_desc *d)
{
	char dir[NB_BOARD_PATH_MAX], rel[96], type[48];
	struct dirent *e;
	DIR *dp;

	if (nb_board_path(dir, s->root, "/sys/class/thermal") || !(dp = opendir(dir)))
		return;
	while ((e = readdir(dp)) && s->n_zones < NB_SENSOR_MAX_ZONES) {
		struct nb_sensor *z = &s->zones[s->n_zones];
		if (strncmp(e->d_name, "thermal_zone", 12) != 0)
			continue;
		snprintf(rel, sizeof(rel), "/sys/class/thermal/%.40s/type", e->d_name);
		if (nb_board_read(s->root, rel, type, sizeof(type)) <= 0)
			continue;
		chomp(type);
		if (!listed(d, type))
			continue;
		snprintf(rel, sizeof(rel), "/sys/class/thermal/%.40s/temp", e->d_name);
		if (nb_board_path(z->path, s->root, rel))
			continue;
		snprintf(z->name, sizeof(z->name), "%s", type);
		z->scale = 0.001;
		z->lo = -40;
		z->hi = 150;
		z->max_rate = 20;
		s->n_zones++;
	}
	closedir(dp);
}

/* An INA3221 channel labelled rail: inN_input (mV) times currN_input (mA). */
static void find_power(struct nb_sensor_set *s, const struct nb_board_desc *d)
{
	char dir[NB_BOARD_PATH_MAX], rel[128], buf[48];
	struct dirent *e;
	DIR *dp;

	if (!d->power_rail || nb_board_path(dir, s->root, "/sys/class/hwmon") || !(dp = opendir(dir)))
		return;
	while ((e = readdir(dp)) && !s->has_power) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(rel, sizeof(rel), "/sys/class/hwmon/%.40s/name", e->d_name);
		if (nb_board_read(s->root, rel, buf, sizeof(buf)) <= 0)
			continue;
		chomp(buf);
		if (strcmp(buf, "ina3221") != 0)
			continue;
		for (int ch = 1; ch <= 3 && !s->has_power; ch++) {
			snprintf(rel, sizeof(rel), "/sys/class/hwmon/%.40s/in%d_label", e->d_name, ch);
			if (nb_board_read(s->root, rel, buf, sizeof(buf)) <= 0)
				continue;
			chomp(buf);
			if (strcmp(buf, d->power_rail) != 0)
				continue;
			snprintf(rel, sizeof(rel), "/sys/class/hwmon/%.40s/in%d_input", e->d_name, ch);
			nb_board_path(s->power.path, s->root, rel);
			snprintf(rel, sizeof(rel), "/sys/class/hwmon/%.40s/curr%d_input", e->d_name, ch);
			nb_board_path(s->power.path2, s->root, rel);
			snprintf(s->power.name, sizeof(s->power.name), "%s", d->power_rail);
			s->power.scale = 1e-6;
			s->power.lo = 0;
			s->power.hi = 200;
			s->power.max_rate = 1000; /* power follows load at once */
			s->has_power = true;
		}
	}
	closedir(dp);
}

static double read_khz(const char *dir, const char *file)
{
	char path[NB_BOARD_PATH_MAX + 32];
	double v;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	return read_number(path, &v) == NB_SENSOR_OK && v > 0 ? v : 0;
}

static void find_policies(struct nb_sensor_set *s)
{
	char base[NB_BOARD_PATH_MAX], dir[NB_BOARD_PATH_MAX];
	struct dirent *e;
	DIR *dp;

	if (nb_board_path(base, s->root, "/sys/devices/system/cpu/cpufreq") || !(dp = opendir(base)))
		return;
	while ((e = readdir(dp)) && s->n_pol < NB_SENSOR_MAX_POLICIES) {
		struct nb_policy *p = &s->pol[s->n_pol];
		if (strncmp(e->d_name, "policy", 6) != 0 ||
		    snprintf(p->dir, sizeof(p->dir), "%s/%.20s", base, e->d_name) >= (int)sizeof(p->dir) - 32)
			continue;
		p->max_khz = read_khz(p->dir, "cpuinfo_max_freq");
		p->min_khz = read_khz(p->dir, "cpuinfo_min_freq");
		p->orig_cap_khz = read_khz(p->dir, "scaling_max_freq");
		if (p->max_khz <= 0)
			continue;
		snprintf(p->cur.name, sizeof(p->cur.name), "%.20s", e->d_name);
		snprintf(dir, sizeof(dir), "%s/scaling_cur_freq", p->dir);
		memcpy(p->cur.path, dir, sizeof(dir));
		p->cur.scale = 1;
		p->cur.lo = 0;
		p->cur.hi = p->max_khz * 1.5;
		p->cur.max_rate = 1e12; /* frequencies do step */
		p->writable = true;       /* until a write says otherwise */
		s->n_pol++;
	}
	closedir(dp);
}

int nb_sensor_open(struct nb_sensor_set *s, const char *root, const struct nb_board_desc *d)
{
	memset(s, 0, sizeof(*s));
	if (snprintf(s->root, sizeof(s->root), "%s", root ? root : "/") >= (int)sizeof(s->root) - 64) {
		nb_err("board: --sysfs-root too long");
		return -NB_ERANGE;
	}
	find_zones(s, d);
	find_power(s, d);
	find_policies(s);
	if (!s->n_zones)
		nb_warn("board: no thermal zone of %s under %s: the governor holds no temperature",
			d->name, s->root);
	return 0;
}

static int write_khz(struct nb_policy *p, double khz)
{
	char path[NB_BOARD_PATH_MAX + 32], buf[32];
	int fd, n, ok;

	snprintf(path, sizeof(path), "%s/scaling_max_freq", p->dir);
	fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC);
	if (fd < 0)
		return -NB_EPERM;
	n = snprintf(buf, sizeof(buf), "%.0f\n", khz);
	ok = write(fd, buf, (size_t)n) == n;
	return close(fd) == 0 && ok ? 0 : -NB_EPERM;
}

void nb_sensor_close(struct nb_sensor_set *s)
{
	for (unsigned i = 0; i < s->n_pol; i++)
		if (s->pol[i].cap_khz > 0 && s->pol[i].writable && s->pol[i].orig_cap_khz > 0)
			write_khz(&s->pol[i], s->pol[i].orig_cap_khz);
}

unsigned nb_sensor_sample(struct nb_sensor_set *s, double now, double *hottest, double *power_w,
			  double *freq_frac)
{
	unsigned faults = 0, n_freq = 0;
	double sum = 0;

	*hottest = NAN;
	for (unsigned i = 0; i < s->n_zones; i++) {
		faults += nb_sensor_read(&s->zones[i], now) != NB_SENSOR_OK;
		if (s->zones[i].valid && (isnan(*hottest) || s->zones[i].value > *hottest))
			*hottest = s->zones[i].value;
	}
	*power_w = NAN;
	if (s->has_power) {
		faults += nb_sensor_read(&s->power, now) != NB_SENSOR_OK;
		if (s->power.valid)
			*power_w = s->power.value;
	}
	for (unsigned i = 0; i < s->n_pol; i++) {
		if (nb_sensor_read(&s->pol[i].cur, now) == NB_SENSOR_OK || s->pol[i].cur.valid) {
			sum += s->pol[i].cur.value / s->pol[i].max_khz;
			n_freq++;
		}
	}
	*freq_frac = n_freq ? sum / n_freq : 1;
	return faults;
}

int nb_sensor_cap_freq(struct nb_sensor_set *s, double frac)
{
	int ret = 0;

	for (unsigned i = 0; i < s->n_pol; i++) {
		struct nb_policy *p = &s->pol[i];
		double khz = frac < 1 ? p->max_khz * frac : p->orig_cap_khz > 0 ? p->orig_cap_khz : p->max_khz;
		if (frac >= 1 && p->cap_khz == 0)
			continue; /* never touched: leave it as it was */
		if (khz < p->min_khz)
			khz = p->min_khz;
		khz = floor(khz / 1000) * 1000;
		if (!p->writable)
			ret = -NB_EPERM;
		if (!p->writable || fabs(khz - p->cap_khz) < 1)
			continue;
		if (write_khz(p, khz)) {
			p->writable = false;
			nb_warn("board: %s/scaling_max_freq is not writable: no frequency cap "
				"(threads and pacing still act)", p->dir);
			ret = -NB_EPERM;
			continue;
		}
		p->cap_khz = khz;
	}
	return ret;
}
