/* Error codes, logger levels, SHA-256 digests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "firmware/digest.h"
#include "runtime/base/err.h"
#include "runtime/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void test_strerror_covers_every_code(void **state)
{
	(void)state;
	for (int i = 0; i < NB_ERR_COUNT; i++) {
		assert_non_null(nb_strerror(i));
		assert_string_equal(nb_strerror(i), nb_strerror(-i));
		assert_string_not_equal(nb_strerror(i), "unknown error");
		for (int j = 0; j < i; j++)
			assert_string_not_equal(nb_strerror(i), nb_strerror(j));
	}
	assert_string_equal(nb_strerror(NB_ERR_COUNT), "unknown error");
	assert_string_equal(nb_strerror(-100000), "unknown error");
}

static void test_log_levels(void **state)
{
	(void)state;
	assert_int_equal(nb_log_parse_level("error"), NB_LOG_ERROR);
	assert_int_equal(nb_log_parse_level("debug"), NB_LOG_DEBUG);
	assert_int_equal(nb_log_parse_level("2"), NB_LOG_INFO);
	assert_int_equal(nb_log_parse_level("4"), -NB_EINVAL);
	assert_int_equal(nb_log_parse_level("verbose"), -NB_EINVAL);
	assert_int_equal(nb_log_parse_level(NULL), -NB_EINVAL);
	nb_log_set_level(99);
	assert_int_equal(nb_log_get_level(), NB_LOG_DEBUG);
	nb_log_set_level(-5);
	assert_int_equal(nb_log_get_level(), NB_LOG_SILENT);
	nb_log_set_level(NB_LOG_INFO);
}

static void hex_of(const void *data, size_t len, char *hex)
{
	uint8_t d[NB_DIGEST_LEN];
	assert_int_equal(nb_digest_buf(data, len, d), 0);
	nb_digest_hex(d, hex);
}

/* FIPS 180-2 / NIST vectors. */
static void test_sha256_vectors(void **state)
{
	char hex[2 * NB_DIGEST_LEN + 1];
	(void)state;

	hex_of("", 0, hex);
	assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	hex_of("abc", 3, hex);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	hex_of("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56, hex);
	assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

/* One million 'a' through the streaming file path (crosses read chunks). */
static void test_sha256_file(void **state)
{
	char path[] = "/tmp/nb-digest-XXXXXX", hex[2 * NB_DIGEST_LEN + 1];
	uint8_t d[NB_DIGEST_LEN];
	char *buf = malloc(1000000);
	int fd = mkstemp(path);
	(void)state;

	assert_non_null(buf);
	assert_true(fd >= 0);
	memset(buf, 'a', 1000000);
	assert_int_equal(write(fd, buf, 1000000), 1000000);
	close(fd);
	assert_int_equal(nb_digest_file(path, d), 0);
	nb_digest_hex(d, hex);
	assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	unlink(path);
	free(buf);
	assert_int_equal(nb_digest_file("/nonexistent/nibble", d), -NB_ENOENT);
	assert_int_equal(nb_digest_file("/", d), -NB_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strerror_covers_every_code),
		cmocka_unit_test(test_log_levels),
		cmocka_unit_test(test_sha256_vectors),
		cmocka_unit_test(test_sha256_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
