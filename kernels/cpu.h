/* CPU feature detection (cpuid + xgetbv on x86, HWCAP on aarch64). */
#ifndef NB_CPU_H
#define NB_CPU_H

#include <stddef.h>

enum nb_cpu_feature {
	NB_CPU_AVX2 = 1u << 0,    /* AVX2, and the OS saves YMM state */
	NB_CPU_FMA = 1u << 1,
	NB_CPU_F16C = 1u << 2,
	NB_CPU_AVX512VNNI = 1u << 3, /* AVX512F + VL + BW + VNNI, and the OS saves ZMM state */
	NB_CPU_NEON = 1u << 8,    /* ASIMD */
	NB_CPU_DOTPROD = 1u << 9, /* ASIMDDP: SDOT/UDOT */
	NB_CPU_I8MM = 1u << 10,   /* SMMLA */
};

struct nb_cpu {
	unsigned features; /* enum nb_cpu_feature bits */
	int ncpus;         /* online CPUs */
};

#if defined(__x86_64__)
#define NB_CPU_ARCH_NAME "x86_64"
#elif defined(__aarch64__)
#define NB_CPU_ARCH_NAME "aarch64"
#else
#define NB_CPU_ARCH_NAME "unknown"
#endif

void nb_cpu_detect(struct nb_cpu *cpu);
/* "x86_64: avx2 fma f16c, 2 cpus"; always NUL-terminated. */
void nb_cpu_describe(const struct nb_cpu *cpu, char *buf, size_t len);

#endif
