/* Small facts about this process, for reporting: a monotonic clock and the
 * resident set. */
#ifndef NB_SYS_H
#define NB_SYS_H

/* Seconds on CLOCK_MONOTONIC. */
double nb_sys_now(void);
/* VmRSS in KiB from /proc/self/status; 0 if unavailable. */
long nb_sys_resident_kib(void);

#endif
