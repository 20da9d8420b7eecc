/* Small facts about this process: a monotonic clock, the resident set, the
 * memory it may still take. */
#ifndef NB_SYS_H
#define NB_SYS_H

#include <stdint.h>

/* Seconds on CLOCK_MONOTONIC. */
double nb_sys_now(void);
/* VmRSS in KiB from /proc/self/status; 0 if unavailable. */
long nb_sys_resident_kib(void);
/* Bytes this process may still allocate and touch: the smaller of the
 * kernel's MemAvailable and what RLIMIT_AS (ulimit -v) leaves of the
 * address space; UINT64_MAX if neither is known. */
uint64_t nb_sys_mem_available(void);

#endif
