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

int nb_arg_u32(const char *applet, const char *option, const char *s, uint32_t min, uint32_t max,
	       uint32_t *out)
{
	unsigned long long v;
	int ret = nb_arg_uint(applet, option, s, min, max, &v);

	if (!ret)
		*out = (uint32_t)v;
	return ret;
}

int nb_arg_interval(const char *applet, const char *option, const char *s, double min,
		    double max, unsigned open, double *out)
{
	const char *p = s[0] == '-' || s[0] == '+' ? s + 1 : s;
	char *end;
	double v = strtod(s, &end);

	/* Only plain decimals: strtod would also take "inf", "nan" and hex.
	 * No errno test: an underflow (1e-400) is a number near 0, an
	 * overflow is not finite. */
	if (!((*p >= '0' && *p <= '9') || (*p == '.' && p[1] >= '0' && p[1] <= '9')) ||
	    strpbrk(s, "xXpP") || *end != '\0' || !isfinite(v) || v < min || v > max ||
	    ((open & NB_ARG_ABOVE_MIN) && v == min) || ((open & NB_ARG_BELOW_MAX) && v == max)) {
		if (open)
			nb_err("%s: %s: '%s' is not a number in %c%g, %g%c", applet, option, s,
			       open & NB_ARG_ABOVE_MIN ? '(' : '[', min, max,
			       open & NB_ARG_BELOW_MAX ? ')' : ']');
		else
			nb_err("%s: %s: '%s' is not a number in %g..%g", applet, option, s, min, max);
		return -NB_EINVAL;
	}
	*out = v;
	return 0;
}

int nb_arg_float(const char *applet, const char *option, const char *s, double min, double max,
		 double *out)
{
	return nb_arg_interval(applet, option, s, min, max, 0, out);
}

int nb_arg_choice(const char *applet, const char *option, const char *s,
		  const char *const *names, size_t n, size_t *out)
{
	char list[256] = "";
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	for (size_t i = 0; i < n && len < sizeof(list); i++)
		len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "",
					names[i]);
	nb_err("%s: %s: '%s' is not one of %s", applet, option, s, list);
	return -NB_EINVAL;
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

/* "--t" matches --temp and --top-k: getopt_long calls that an error too,
 * without saying which. Lists up to 4 candidates into buf; how many. */
static int prefix_matches(const struct option *longopts, const char *word, char *buf, size_t cap)
{
	size_t len = strcspn(word + 2, "="), used = 0;
	int n = 0;

	buf[0] = '\0';
	for (const struct option *o = longopts; o && o->name; o++) {
		if (strncmp(o->name, word + 2, len) != 0)
			continue;
		if (n++ < 4 && used < cap)
			used += (size_t)snprintf(buf + used, cap - used, "%s--%s", n > 1 ? ", " : "",
						 o->name);
	}
	return n;
}

/* A short option that fails inside a cluster ("-xv") leaves optind on the
 * cluster; anywhere else optind has moved past the offending word. */
static const char *offending_word(int argc, char **argv, int c)
{
	const char *cur = optind < argc ? argv[optind] : NULL;

	if (c == '?' && optopt > 0 && optopt < 256 && cur && cur[0] == '-' && cur[1] &&
	    cur[1] != '-' && strchr(cur + 1, optopt))
		return cur;
	return optind > 0 && optind <= argc ? argv[optind - 1] : "";
}

int nb_getopt(const char *applet, int argc, char **argv, const char *shortopts,
	      const struct option *longopts)
{
	static const struct option none[] = { { NULL, 0, NULL, 0 } };
	char spec[128], cands[128];
	const char *word;
	int c;

	snprintf(spec, sizeof(spec), ":%s", shortopts);
	opterr = 0;
	/* Without long options getopt_long would read "--x" as short ones. */
	c = getopt_long(argc, argv, spec, longopts ? longopts : none, NULL);
	if (c != '?' && c != ':')
		return c;
	word = offending_word(argc, argv, c);
	if (strncmp(word, "--", 2) != 0) {
		nb_usage_error(applet, c == ':' ? "option '-%c' needs an argument"
						: "unknown option '-%c'", optopt);
	} else if (c == ':') {
		nb_usage_error(applet, "option '%s' needs an argument", word);
	} else if (optopt && long_option(longopts, optopt)) {
		nb_usage_error(applet, "option '%.*s' takes no argument",
			       (int)strcspn(word, "="), word);
	} else if (prefix_matches(longopts, word, cands, sizeof(cands)) > 1) {
		nb_usage_error(applet, "ambiguous option '%.*s' (%s)", (int)strcspn(word, "="),
			       word, cands);
	} else {
		nb_usage_error(applet, "unknown option '%.*s'", (int)strcspn(word, "="), word);
	}
	return '?';
}
