/* A/B slot state: round trip through the state file, a damaged file
 * refused (never taken for "nothing installed"), the start counter and the
 * crash-loop rollback, commit of a trial an update replaced, directory
 * permissions; https URL parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "firmware/https.h"
#include "firmware/slots.h"
#include "runtime/base/err.h"
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
	char dir[64];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/nb-slots-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(chmod(f->dir, 0755), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static void write_state(struct fixture *f, const char *text)
{
	char path[128];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/state", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* A trial of version v in slot b (a committed at version 1). */
static void install_trial(struct nb_slots *s, uint64_t v)
{
	assert_int_equal(nb_slots_lock(s), 0);
	s->st.committed = 0;
	s->st.committed_version = 1;
	memset(s->st.committed_digest, 0x11, NB_SIG_ID_LEN);
	s->st.trial = 1;
	s->st.trial_version = v;
	memset(s->st.trial_digest, (int)v, NB_SIG_ID_LEN);
	s->st.trial_boots = 0;
	assert_int_equal(nb_slots_save(s, "installed %llu", (unsigned long long)v), 0);
	nb_slots_unlock(s);
}

static void test_round_trip(void **state)
{
	struct fixture *f = *state;
	struct nb_slots s, t;

	assert_int_equal(nb_slots_open(&s, f->dir, true, NULL), 0);
	assert_int_equal(nb_slots_lock(&s), 0);
	assert_int_equal(s.st.committed, NB_SLOT_NONE); /* no state file: nothing installed */
	assert_int_equal(s.st.trial, NB_SLOT_NONE);
	s.st.committed = 1;
	s.st.committed_version = 12345678901ull;
	memset(s.st.committed_digest, 0xab, NB_SIG_ID_LEN);
	s.st.committed_ms = 12.5;
	s.st.trial = 0;
	s.st.trial_version = 12345678902ull;
	s.st.trial_digest[31] = 7;
	s.st.trial_boots = 2;
	assert_int_equal(nb_slots_save(&s, "event with\na newline %d", 5), 0);
	nb_slots_unlock(&s);
	assert_int_equal(nb_slots_open(&t, f->dir, false, NULL), 0);
	assert_int_equal(nb_slots_lock(&t), 0);
	assert_int_equal(t.st.committed, 1);
	assert_int_equal(t.st.committed_version, 12345678901ull);
	assert_memory_equal(t.st.committed_digest, s.st.committed_digest, NB_SIG_ID_LEN);
	assert_true(t.st.committed_ms == 12.5);
	assert_int_equal(t.st.trial, 0);
	assert_int_equal(t.st.trial_version, 12345678902ull);
	assert_memory_equal(t.st.trial_digest, s.st.trial_digest, NB_SIG_ID_LEN);
	assert_int_equal(t.st.trial_boots, 2);
	assert_string_equal(t.st.last, "event with a newline 5");
	nb_slots_unlock(&t);
	nb_slots_close(&t);
	nb_slots_close(&s);
}

static void test_damaged_state(void **state)
{
	static const char *const bad[] = {
		"",
		"garbage\n",
		"nibble-slots 2\ncommitted a\n",
		"nibble-slots 1\ncommitted c\n",
		"nibble-slots 1\ncommitted a\ntrial a\n",
		"nibble-slots 1\ncommitted-version 12x\n",
		"nibble-slots 1\ncommitted-digest abcd\n",
		"nibble-slots 1\nsurprise 1\n",
		"nibble-slots 1\ncommitted\n",
		"nibble-slots 1\ntrial-boots -1\n",
	};
	struct fixture *f = *state;
	struct nb_slots s;
	struct nb_boot b;

	assert_int_equal(nb_slots_open(&s, f->dir, true, NULL), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int saved = test_quiet();
		write_state(f, bad[i]);
		assert_int_equal(nb_slots_lock(&s), -NB_EFORMAT);
		assert_int_equal(nb_slots_boot(&s, 3, &b), -NB_EFORMAT);
		assert_int_equal(b.slot, NB_SLOT_NONE);
		test_loud(saved);
	}
	nb_slots_close(&s);
}

static void test_boot_counter_and_crash_loop(void **state)
{
	struct fixture *f = *state;
	struct nb_slots s;
	struct nb_boot b;

	assert_int_equal(nb_slots_open(&s, f->dir, true, NULL), 0);
	install_trial(&s, 5);
	for (unsigned i = 1; i <= 3; i++) {
		assert_int_equal(nb_slots_boot(&s, 3, &b), 0);
		assert_true(b.trial);
		assert_int_equal(b.slot, 1);
		assert_int_equal(b.version, 5);
		assert_int_equal(nb_slots_lock(&s), 0);
		assert_int_equal(s.st.trial_boots, i); /* counted before the health check */
		nb_slots_unlock(&s);
	}
	int saved = test_quiet();
	assert_int_equal(nb_slots_boot(&s, 3, &b), 0);
	test_loud(saved);
	assert_false(b.trial);
	assert_int_equal(b.slot, 0);
	assert_int_equal(b.version, 1);
	assert_int_equal(nb_slots_lock(&s), 0);
	assert_int_equal(s.st.trial, NB_SLOT_NONE);
	assert_non_null(strstr(s.st.last, "crash loop: 3 starts"));
	assert_int_equal(s.st.committed_version, 1);
	nb_slots_unlock(&s);
	nb_slots_close(&s);
}

static void test_commit_and_rollback(void **state)
{
	struct fixture *f = *state;
	struct nb_slots s;
	struct nb_boot b, old;

	assert_int_equal(nb_slots_open(&s, f->dir, true, NULL), 0);
	install_trial(&s, 6);
	assert_int_equal(nb_slots_boot(&s, 3, &old), 0);
	/* An update replaced the trial meanwhile: the old one must not commit. */
	install_trial(&s, 7);
	int saved = test_quiet();
	assert_int_equal(nb_slots_commit(&s, &old, 1.0), -NB_EBUSY);
	test_loud(saved);
	assert_int_equal(nb_slots_rollback(&s, &old, "stale"), 0); /* no effect */
	assert_int_equal(nb_slots_boot(&s, 3, &b), 0);
	assert_int_equal(b.version, 7);
	assert_int_equal(nb_slots_commit(&s, &b, 2.5), 0);
	assert_int_equal(nb_slots_lock(&s), 0);
	assert_int_equal(s.st.committed, 1);
	assert_int_equal(s.st.committed_version, 7);
	assert_int_equal(s.st.trial, NB_SLOT_NONE);
	assert_true(s.st.committed_ms == 2.5);
	nb_slots_unlock(&s);
	/* A rollback leaves the committed slot and the floor as they were. */
	install_trial(&s, 8);
	assert_int_equal(nb_slots_boot(&s, 3, &b), 0);
	assert_int_equal(nb_slots_rollback(&s, &b, "golden vector mismatch"), 0);
	assert_int_equal(nb_slots_lock(&s), 0);
	assert_int_equal(s.st.committed, 0); /* install_trial set a committed at 1 */
	assert_int_equal(s.st.trial, NB_SLOT_NONE);
	assert_non_null(strstr(s.st.last, "rolled back slot b (version 8): golden vector mismatch"));
	nb_slots_unlock(&s);
	nb_slots_close(&s);
}

static void test_nothing_installed(void **state)
{
	struct fixture *f = *state;
	struct nb_slots s;
	struct nb_boot b;
	int saved;

	assert_int_equal(nb_slots_open(&s, f->dir, true, NULL), 0);
	saved = test_quiet();
	assert_int_equal(nb_slots_boot(&s, 3, &b), -NB_ENOENT);
	test_loud(saved);
	nb_slots_close(&s);
}

static void test_directory_permissions(void **state)
{
	struct fixture *f = *state;
	struct nb_slots s;
	int saved;

	saved = test_quiet();
	assert_int_equal(chmod(f->dir, 0777), 0);
	assert_int_equal(nb_slots_open(&s, f->dir, false, NULL), -NB_EPERM);
	assert_int_equal(chmod(f->dir, 0755), 0);
	assert_int_equal(nb_slots_open(&s, "/nonexistent/slots", false, NULL), -NB_ENOENT);
	test_loud(saved);
}

static void test_url_parsing(void **state)
{
	char host[64], port[8];
	const char *path;

	(void)state;
	assert_int_equal(nb_https_parse_url("https://updates.example.com/m/q4.nib", host, sizeof(host),
					    port, sizeof(port), &path), 0);
	assert_string_equal(host, "updates.example.com");
	assert_string_equal(port, "443");
	assert_string_equal(path, "/m/q4.nib");
	assert_int_equal(nb_https_parse_url("https://localhost:8443/a?b=c", host, sizeof(host), port,
					    sizeof(port), &path), 0);
	assert_string_equal(host, "localhost");
	assert_string_equal(port, "8443");
	assert_string_equal(path, "/a?b=c");
	assert_int_equal(nb_https_parse_url("https://h", host, sizeof(host), port, sizeof(port), &path), 0);
	assert_string_equal(path, "/");
	static const char *const bad[] = { "http://h/x", "https://", "https:///x", "https://h:/x",
					   "https://h:99999/x", "https://h:8x/x", "https://us@er/x",
					   "https://h/a b", "https://h?x", "ftp://h/x",
					   "https://h/\x01" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (nb_https_parse_url(bad[i], host, sizeof(host), port, sizeof(port), &path) == 0)
			fail_msg("accepted '%s'", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_boot_counter_and_crash_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_and_rollback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nothing_installed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_directory_permissions, setup, teardown),
		cmocka_unit_test(test_url_parsing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
