/* Small facts about this process, for reporting: a monotonic clock, the
 * resident set and the memory the system has left. */
#ifndef NB_SYS_H
#define NB_SYS_H

#include <stdint.h>

/* Seconds on CLOCK_MONOTONIC. */
double nb_sys_now(void);
/* VmRSS in KiB from /proc/self/status; 0 if unavailable. */
long nb_sys_resident_kib(void);
/* MemAvailable of /proc/meminfo in bytes; UINT64_MAX if unknown. */
uint64_t nb_sys_mem_available(void);

#endif
