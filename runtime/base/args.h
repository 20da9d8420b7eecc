/* Command-line arguments: one parser per kind of value and one format for
 * usage errors, shared by every applet:
 *     nibble: error: run: --temp: 'abc' is not a number in 0..100
 *     nibble: error: run: unknown option '--bogus' (see nibble run --help)
 * A usage error exits with status 2 (NB_EXIT_USAGE in runtime/applets). */
#ifndef NB_ARGS_H
#define NB_ARGS_H

#include <getopt.h>
#include <stdbool.h>

/* An option's whole decimal argument s in min..max, or -NB_EINVAL with
 * "<applet>: <option>: '<s>' is not a whole number in min..max" logged. */
int nb_arg_uint(const char *applet, const char *option, const char *s, unsigned long long min,
		unsigned long long max, unsigned long long *out);
/* The same for a signed whole number (a leading '-' allowed). */
int nb_arg_int(const char *applet, const char *option, const char *s, long long min,
	       long long max, long long *out);
/* A finite decimal number in min..max (strtod syntax, no hex, no inf/nan). */
int nb_arg_float(const char *applet, const char *option, const char *s, double min, double max,
		 double *out);
/* Permission bits in octal, 0..0777 (setuid, setgid and sticky refused). */
int nb_arg_mode(const char *applet, const char *option, const char *s, unsigned *out);

/* getopt_long() that reports an unknown option, a missing argument or an
 * argument given to an option that takes none in the one format above and
 * returns '?' for them; the caller returns NB_EXIT_USAGE. shortopts must
 * not start with ':' (added here). */
int nb_getopt(const char *applet, int argc, char **argv, const char *shortopts,
	      const struct option *longopts);

/* Logs "<applet>: <message> (see nibble <applet> --help)" at error level;
 * returns 2 (the usage exit status) so that callers can return it. */
int nb_usage_error(const char *applet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
