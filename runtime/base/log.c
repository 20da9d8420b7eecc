#include "runtime/base/log.h"
#include "runtime/base/err.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* The one process-wide setting kept outside a context: every module logs,
 * and threading a logger through kernels and parsers would buy nothing.
 * Atomic because worker threads read it. */
static _Atomic int nb_log_level = CONFIG_LOG_LEVEL < NB_LOG_INFO ? CONFIG_LOG_LEVEL : NB_LOG_INFO;

static const char *const nb_log_names[] = { "error", "warn", "info", "debug" };

void nb_log_set_level(int level)
{
	if (level < NB_LOG_SILENT)
		level = NB_LOG_SILENT;
	if (level > NB_LOG_DEBUG)
		level = NB_LOG_DEBUG;
	atomic_store_explicit(&nb_log_level, level, memory_order_relaxed);
}

int nb_log_get_level(void)
{
	return atomic_load_explicit(&nb_log_level, memory_order_relaxed);
}

int nb_log_parse_level(const char *s)
{
	if (s == NULL)
		return -NB_EINVAL;
	for (int i = 0; i <= NB_LOG_DEBUG; i++)
		if (strcmp(s, nb_log_names[i]) == 0)
			return i;
	if (s[0] >= '0' && s[0] <= '3' && s[1] == '\0')
		return s[0] - '0';
	return -NB_EINVAL;
}

void nb_log_write(int level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (level > nb_log_get_level())
		return;
	n = snprintf(line, sizeof(line), "nibble: %s: ",
		     nb_log_names[level < 0 ? 0 : level > 3 ? 3 : level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* One write per line so lines from threads do not interleave. */
	n = (int)strlen(line);
	line[n++] = '\n';
	fwrite(line, 1, (size_t)n, stderr);
}
