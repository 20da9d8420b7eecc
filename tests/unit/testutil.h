/* Helpers the unit tests share. Include after <cmocka.h> (and after
 * <cjson/cJSON.h> for test_load_json). Not a module: static inline, each
 * test file takes what it uses. */
#ifndef NB_TESTUTIL_H
#define NB_TESTUTIL_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* A whole file, NUL-terminated (*len excludes the NUL); fails the test if
 * it cannot be read. */
static inline char *test_slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	assert_true(n >= 0);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

#ifdef cJSON__h
static inline cJSON *test_load_json(const char *path)
{
	size_t len;
	char *s = test_slurp(path, &len);
	cJSON *j = cJSON_ParseWithLength(s, len);

	free(s);
	assert_non_null(j);
	return j;
}
#endif

/* Expected rejections each log an error line; thousands of them would bury
 * the test output, and the logger cannot go below "error". */
static inline int test_quiet(void)
{
	int saved = dup(2), null = open("/dev/null", O_WRONLY);

	assert_true(saved >= 0 && null >= 0);
	fflush(stderr);
	dup2(null, 2);
	close(null);
	return saved;
}

static inline void test_loud(int saved)
{
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
}

static inline double test_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

#endif
