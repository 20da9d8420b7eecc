/* Command-line arguments: one parser per kind of value and one format for
 * usage errors, shared by every applet:
 *     nibble: error: run: --temp: 'abc' is not a number in 0..100
 *     nibble: error: run: unknown option '--bogus' (see nibble run --help)
 * A usage error exits with status 2 (NB_EXIT_USAGE in runtime/applets). */
#ifndef NB_ARGS_H
#define NB_ARGS_H

#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An option's whole decimal argument s in min..max, or -NB_EINVAL with
 * "<applet>: <option>: '<s>' is not a whole number in min..max" logged. */
int nb_arg_uint(const char *applet, const char *option, const char *s, unsigned long long min,
		unsigned long long max, unsigned long long *out);
/* The same for a signed whole number (a leading '-' allowed). */
int nb_arg_int(const char *applet, const char *option, const char *s, long long min,
	       long long max, long long *out);
/* nb_arg_uint for a uint32_t. */
int nb_arg_u32(const char *applet, const char *option, const char *s, uint32_t min, uint32_t max,
	       uint32_t *out);
/* A finite decimal number in min..max (strtod syntax, no hex, no inf/nan). */
int nb_arg_float(const char *applet, const char *option, const char *s, double min, double max,
		 double *out);

/* Ends of an interval that are excluded: NB_ARG_ABOVE_MIN, v > min;
 * NB_ARG_BELOW_MAX, v < max. */
#define NB_ARG_ABOVE_MIN 1u
#define NB_ARG_BELOW_MAX 2u
/* nb_arg_float on an interval with open ends; the message writes it
 * "(0, 1]", "[0, 1)". */
int nb_arg_interval(const char *applet, const char *option, const char *s, double min,
		    double max, unsigned open, double *out);
/* One of names[0..n): its index, or -NB_EINVAL with
 * "<applet>: <option>: '<s>' is not one of <names, comma-separated>". */
int nb_arg_choice(const char *applet, const char *option, const char *s,
		  const char *const *names, size_t n, size_t *out);
/* Permission bits in octal, 0..0777 (setuid, setgid and sticky refused). */
int nb_arg_mode(const char *applet, const char *option, const char *s, unsigned *out);

/* getopt_long() that reports an unknown option, a missing argument or an
 * argument given to an option that takes none in the one format above and
 * returns '?' for them; the caller returns NB_EXIT_USAGE. shortopts must
 * not start with ':' (added here). */
int nb_getopt(const char *applet, int argc, char **argv, const char *shortopts,
	      const struct option *longopts);

/* Logs "<applet>: <message> (see nibble <applet> --help)" at error level:
 * for what no single option is to blame for (a missing -m, an extra word);
 * returns 2 (the usage exit status) so that callers can return it. */
int nb_usage_error(const char *applet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
