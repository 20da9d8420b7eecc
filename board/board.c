/* The board descriptions and run-time detection. The figures and their
 * sources are in docs/governor.md; the per-board folders board/<name>/ hold
 * the build configuration (defconfig) of the same boards. */
#include "board/board.h"

#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Raspberry Pi 5: the firmware throttles the Cortex-A76 cluster from 80 C
 * and clamps it at 85 C. No power sensor the kernel exposes: estimate. The
 * Active Cooler is a PWM fan on its own header (thermal cooling device, not
 * GPIO); GPIO 17/27/22 of the 40-pin header (RP1) for LED, busy, button. */
static const struct nb_board_desc rpi5 = {
	.name = "rpi5", .title = "Raspberry Pi 5",
	.compatible = "raspberrypi,5-model-b",
	.zones = { "cpu-thermal" },
	.trip_c = 80, .hard_c = 85,
	.idle_w = 2.7, .core_w = 1.075, .cores = 4,
	.led = { "pinctrl-rp1", 17, false },
	.busy = { "pinctrl-rp1", 27, false },
	.button = { "pinctrl-rp1", 22, true },
};

/* Raspberry Pi 4: same firmware limits; the official Case Fan is switched
 * by GPIO 14 (the gpio-fan overlay's default). */
static const struct nb_board_desc rpi4 = {
	.name = "rpi4", .title = "Raspberry Pi 4 Model B",
	.compatible = "raspberrypi,4-model-b",
	.zones = { "cpu-thermal" },
	.trip_c = 80, .hard_c = 85,
	.idle_w = 2.7, .core_w = 0.93, .cores = 4,
	.led = { "pinctrl-bcm2711", 17, false },
	.fan = { "pinctrl-bcm2711", 14, false },
	.busy = { "pinctrl-bcm2711", 27, false },
	.button = { "pinctrl-bcm2711", 22, true },
};

/* Jetson Orin Nano: the module's INA3221 measures the whole input (VDD_IN);
 * software throttling starts at 99 C (junction). Default budget: its 15 W
 * power mode. */
static const struct nb_board_desc orin_nano = {
	.name = "jetson-orin-nano", .title = "NVIDIA Jetson Orin Nano",
	.compatible = "nvidia,p3767-0005",
	.zones = { "cpu-thermal", "gpu-thermal", "tj-thermal" },
	.trip_c = 99, .hard_c = 104,
	.power_rail = "VDD_IN",
	.idle_w = 4.5, .core_w = 1.5, .cores = 6,
	.budget_w = 15,
};

/* Anything else: every thermal zone, conservative limits. */
static const struct nb_board_desc generic = {
	.name = "x86_64", .title = "generic (x86_64 or unknown board)",
	.trip_c = 90, .hard_c = 100,
	.idle_w = 10, .core_w = 6, .cores = 0,
};

const struct nb_board_desc *const nb_board_all[] = { &rpi4, &rpi5, &orin_nano, &generic, NULL };

const struct nb_board_desc *nb_board_find(const char *name)
{
	for (size_t i = 0; nb_board_all[i]; i++)
		if (strcmp(nb_board_all[i]->name, name) == 0)
			return nb_board_all[i];
	return NULL;
}

int nb_board_path(char *out, const char *root, const char *path)
{
	size_t rl = root ? strlen(root) : 0;
	int n;

	while (rl > 0 && root[rl - 1] == '/')
		rl--;
	n = snprintf(out, NB_BOARD_PATH_MAX, "%.*s%s", (int)rl, rl ? root : "", path);
	return n < 0 || n >= NB_BOARD_PATH_MAX ? -NB_ERANGE : 0;
}

long nb_board_read(const char *root, const char *path, char *buf, size_t cap)
{
	char full[NB_BOARD_PATH_MAX];
	ssize_t n;
	size_t len = 0;
	int fd;

	if (cap == 0 || nb_board_path(full, root, path))
		return -NB_ERANGE;
	fd = open(full, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? -NB_ENOENT : errno == EACCES ? -NB_EPERM : -NB_EIO;
	while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			close(fd);
			return -NB_EIO;
		}
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	return (long)len;
}

/* The device tree's compatible list (NUL-separated) names the board. */
static const struct nb_board_desc *from_device_tree(const char *root)
{
	static const char *const where[] = { "/proc/device-tree/compatible",
					     "/sys/firmware/devicetree/base/compatible" };
	char buf[1024];

	for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
		long n = nb_board_read(root, where[w], buf, sizeof(buf));
		for (long off = 0; n > 0 && off < n; off += (long)strlen(buf + off) + 1)
			for (size_t i = 0; nb_board_all[i]; i++)
				if (nb_board_all[i]->compatible &&
				    strcmp(buf + off, nb_board_all[i]->compatible) == 0)
					return nb_board_all[i];
	}
	return NULL;
}

static const struct nb_board_desc *from_dmi(const char *root)
{
	char buf[256];

	if (nb_board_read(root, "/sys/class/dmi/id/product_name", buf, sizeof(buf)) <= 0)
		return NULL;
	for (size_t i = 0; nb_board_all[i]; i++)
		if (nb_board_all[i]->dmi && strstr(buf, nb_board_all[i]->dmi))
			return nb_board_all[i];
	return NULL;
}

int nb_board_detect(const char *root, const char *forced, const struct nb_board_desc **out,
		    const char **how)
{
	const struct nb_board_desc *d;

	if (forced) {
		d = nb_board_find(forced);
		if (!d) {
			nb_err("board: no board '%s' (rpi4, rpi5, jetson-orin-nano, x86_64)", forced);
			return -NB_EINVAL;
		}
		*out = d;
		*how = "forced";
		return 0;
	}
	if ((d = from_device_tree(root)) != NULL)
		*how = "device-tree";
	else if ((d = from_dmi(root)) != NULL)
		*how = "dmi";
	else
		*how = "fallback";
	*out = d ? d : &generic;
	return 0;
}
