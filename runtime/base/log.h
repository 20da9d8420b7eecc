/* Logger: one line per message on stderr, "nibble: <level>: <text>".
 * Messages more verbose than CONFIG_LOG_LEVEL are compiled out; the
 * run-time threshold (nb_log_set_level) moves within that. */
#ifndef NB_LOG_H
#define NB_LOG_H

enum nb_log_level {
	NB_LOG_SILENT = -1, /* nothing at all: fuzzers, tests of rejected input */
	NB_LOG_ERROR = 0,
	NB_LOG_WARN = 1,
	NB_LOG_INFO = 2,
	NB_LOG_DEBUG = 3,
};

void nb_log_set_level(int level);
int nb_log_get_level(void);
/* Parses "error|warn|info|debug" or a digit; returns the level or -NB_EINVAL. */
int nb_log_parse_level(const char *s);
void nb_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define NB_LOG(level, ...)                                        \
	do {                                                      \
		if ((level) <= CONFIG_LOG_LEVEL)                  \
			nb_log_write((level), __VA_ARGS__);       \
	} while (0)

#define nb_err(...) NB_LOG(NB_LOG_ERROR, __VA_ARGS__)
#define nb_warn(...) NB_LOG(NB_LOG_WARN, __VA_ARGS__)
#define nb_info(...) NB_LOG(NB_LOG_INFO, __VA_ARGS__)
#define nb_dbg(...) NB_LOG(NB_LOG_DEBUG, __VA_ARGS__)

#endif
