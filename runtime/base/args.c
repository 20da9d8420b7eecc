/* Command-line arguments: one parser per kind of value, one message format. */
#include "runtime/base/args.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nb_arg_uint(const char *applet, const char *option, const char *s, unsigned long long min,
		unsigned long long max, unsigned long long *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno || v < min || v > max) {
		nb_err("%s: %s: '%s' is not a whole number in %llu..%llu", applet, option, s, min, max);
		return -NB_EINVAL;
	}
	*out = v;
	return 0;
}

int nb_arg_int(const char *applet, const char *option, const char *s, long long min,
	       long long max, long long *out)
{
	const char *digits = s[0] == '-' ? s + 1 : s;
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (*digits < '0' || *digits > '9' || *end != '\0' || errno || v < min || v > max) {
		nb_err("%s: %s: '%s' is not a whole number in %lld..%lld", applet, option, s, min, max);
		return -NB_EINVAL;
	}
	*out = v;
	return 0;
}

int nb_arg_float(const char *applet, const char *option, const char *s, double min, double max,
		 double *out)
{
	const char *p = s[0] == '-' || s[0] == '+' ? s + 1 : s;
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	/* Only plain decimals: strtod would also take "inf", "nan" and hex. */
	if (!((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9')) ||
	    strpbrk(s, "xXpP") || *end != '\0' || errno || !isfinite(v) || v < min || v > max) {
		nb_err("%s: %s: '%s' is not a number in %g..%g", applet, option, s, min, max);
		return -NB_EINVAL;
	}
	*out = v;
	return 0;
}

int nb_arg_mode(const char *applet, const char *option, const char *s, unsigned *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 8);
	if (*s < '0' || *s > '7' || *end != '\0' || errno || v > 0777) {
		nb_err("%s: %s: '%s' is not an octal permission mode in 0..0777", applet, option, s);
		return -NB_EINVAL;
	}
	*out = (unsigned)v;
	return 0;
}

int nb_usage_error(const char *applet, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	nb_err("%s: %s (see nibble %s --help)", applet, msg, applet);
	return 2;
}

static const struct option *long_option(const struct option *longopts, int val)
{
	for (const struct option *o = longopts; o && o->name; o++)
		if (o->val == val && !o->flag)
			return o;
	return NULL;
}

int nb_getopt(const char *applet, int argc, char **argv, const char *shortopts,
	      const struct option *longopts)
{
	char spec[128];
	int c;

	snprintf(spec, sizeof(spec), ":%s", shortopts);
	opterr = 0;
	c = getopt_long(argc, argv, spec, longopts, NULL);
	if (c != '?' && c != ':')
		return c;
	/* optind has moved past the offending word (or its missing argument). */
	const char *word = optind > 0 && optind <= argc ? argv[optind - 1] : "";
	if (c == ':') {
		if (strncmp(word, "--", 2) == 0)
			nb_usage_error(applet, "option '%s' needs an argument", word);
		else
			nb_usage_error(applet, "option '-%c' needs an argument", optopt);
	} else if (strncmp(word, "--", 2) == 0 && optopt && long_option(longopts, optopt)) {
		nb_usage_error(applet, "option '%.*s' takes no argument",
			       (int)strcspn(word, "="), word);
	} else if (strncmp(word, "--", 2) == 0 || !optopt) {
		nb_usage_error(applet, "unknown option '%.*s'", (int)strcspn(word, "="), word);
	} else {
		nb_usage_error(applet, "unknown option '-%c'", optopt);
	}
	return '?';
}
