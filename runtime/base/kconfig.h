/* IS_ENABLED(CONFIG_X): 1 if the Kconfig bool is y, else 0, usable in plain
 * C conditions so both branches are compiled and checked on every build.
 * autoconf.h defines an enabled bool as 1 and leaves a disabled one out. */
#ifndef NB_KCONFIG_H
#define NB_KCONFIG_H

#define NB__ARG_PLACEHOLDER_1 0,
#define NB__TAKE_SECOND(ignored, val, ...) val
#define NB__IS_DEFINED3(junk_or_placeholder) NB__TAKE_SECOND(junk_or_placeholder 1, 0, 0)
#define NB__IS_DEFINED2(val) NB__IS_DEFINED3(NB__ARG_PLACEHOLDER_##val)
#define IS_ENABLED(option) NB__IS_DEFINED2(option)

/* A numeric option as a string literal, for usage texts: "at most "
 * NB_KCONFIG_STR(CONFIG_MAX_THREADS). */
#define NB__STR(x) #x
#define NB_KCONFIG_STR(option) NB__STR(option)

/* NB_IF_ENABLED(CONFIG_X, tokens...): the tokens if X is y, else nothing;
 * for lists (initializers) that have no place for a condition. */
#define NB__IF_1(...) __VA_ARGS__
#define NB__IF_0(...)
#define NB__IF_CAT2(a, b) a##b
#define NB__IF_CAT(a, b) NB__IF_CAT2(a, b)
#define NB_IF_ENABLED(option, ...) NB__IF_CAT(NB__IF_, IS_ENABLED(option))(__VA_ARGS__)

#endif
