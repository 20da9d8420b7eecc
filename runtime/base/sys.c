#include "runtime/base/sys.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

double nb_sys_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* N of the line "name: N kB" of a /proc file, or -1. */
static long long proc_kib(const char *path, const char *name)
{
	char line[128];
	long long kib = -1;
	size_t n = strlen(name);
	FILE *f = fopen(path, "r");

	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, name, n) == 0 && line[n] == ':') {
			kib = strtoll(line + n + 1, NULL, 10);
			break;
		}
	}
	if (f)
		fclose(f);
	return kib;
}

long nb_sys_resident_kib(void)
{
	long long kib = proc_kib("/proc/self/status", "VmRSS");

	return kib > 0 ? (long)kib : 0;
}

uint64_t nb_sys_mem_available(void)
{
	long long avail = proc_kib("/proc/meminfo", "MemAvailable");
	long long mapped = proc_kib("/proc/self/status", "VmSize");
	uint64_t bytes = avail >= 0 ? (uint64_t)avail * 1024 : UINT64_MAX;
	struct rlimit rl;

	if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && mapped >= 0) {
		uint64_t used = (uint64_t)mapped * 1024, left = 0;

		if ((uint64_t)rl.rlim_cur > used)
			left = (uint64_t)rl.rlim_cur - used;
		bytes = left < bytes ? left : bytes;
	}
	return bytes;
}
