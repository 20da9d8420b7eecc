#include "kernels/cpu.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void)
{
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return ((unsigned long long)hi << 32) | lo;
}

static unsigned detect_features(void)
{
	unsigned a, b, c, d, f = 0;
	int os_ymm;

	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	/* AVX needs OSXSAVE and the OS saving XMM+YMM (XCR0 bits 1,2), or
	 * the first YMM instruction faults on a CPU that has it. */
	os_ymm = (c & bit_OSXSAVE) && (xgetbv0() & 6) == 6;
	if (os_ymm && (c & bit_FMA))
		f |= NB_CPU_FMA;
	if (os_ymm && (c & bit_F16C))
		f |= NB_CPU_F16C;
	if (os_ymm && __get_cpuid_count(7, 0, &a, &b, &c, &d)) {
		/* EVEX encodings need the opmask and ZMM state saved too (XCR0 bits 5-7). */
		int os_zmm = (xgetbv0() & 0xe6) == 0xe6;
		if (b & bit_AVX2)
			f |= NB_CPU_AVX2;
		if (os_zmm && (b & bit_AVX512F) && (b & bit_AVX512VL) && (b & bit_AVX512BW) &&
		    (c & bit_AVX512VNNI))
			f |= NB_CPU_AVX512VNNI;
	}
	return f;
}

#elif defined(__aarch64__)
#include <sys/auxv.h>

/* Kernel ABI values, for C libraries whose headers predate them. */
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1ul << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1ul << 20)
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1ul << 13)
#endif

static unsigned detect_features(void)
{
	unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
	unsigned f = 0;

	if (hw & HWCAP_ASIMD)
		f |= NB_CPU_NEON;
	if (hw & HWCAP_ASIMDDP)
		f |= NB_CPU_DOTPROD;
	if (hw2 & HWCAP2_I8MM)
		f |= NB_CPU_I8MM;
	return f;
}

#else
static unsigned detect_features(void)
{
	return 0;
}
#endif

void nb_cpu_detect(struct nb_cpu *cpu)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	cpu->features = detect_features();
	cpu->ncpus = n > 0 ? (int)n : 1;
}

void nb_cpu_describe(const struct nb_cpu *cpu, char *buf, size_t len)
{
	static const struct {
		unsigned bit;
		const char *name;
	} names[] = {
		{ NB_CPU_AVX2, "avx2" },   { NB_CPU_FMA, "fma" },
		{ NB_CPU_F16C, "f16c" },   { NB_CPU_AVX512VNNI, "avx512vnni" },
		{ NB_CPU_NEON, "neon" },
		{ NB_CPU_DOTPROD, "dotprod" }, { NB_CPU_I8MM, "i8mm" },
	};
	size_t used;

	if (len == 0)
		return;
	snprintf(buf, len, "%s:", NB_CPU_ARCH_NAME);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!(cpu->features & names[i].bit))
			continue;
		used = strlen(buf);
		snprintf(buf + used, len - used, " %s", names[i].name);
	}
	if (!(cpu->features)) {
		used = strlen(buf);
		snprintf(buf + used, len - used, " baseline");
	}
	used = strlen(buf);
	snprintf(buf + used, len - used, ", %d cpus", cpu->ncpus);
}
