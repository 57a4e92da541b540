/*
 * test_token.c: token.c's key set under concurrent reloads.
 *
 * A SIGHUP that changes [fernet_tokens] key_repository runs token_init() on
 * the main thread while workers may be re-reading the repository
 * (token_reload() from token_maybe_reload()).  Neither may see the other's
 * freed repository path or key set, and a reload must never fail while
 * both repositories are intact.
 */
#include <sys/stat.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"
#include "testlib.h"

#define KEY_A "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
#define KEY_B "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="

static _Atomic int stop;
static _Atomic long reload_failures;
static _Atomic long reloads;

/* A repository with keys 0 and 1 in a fresh temporary directory. */
static char *
make_repo(const char *tmpl)
{
	char *dir = xstrdup(tmpl);

	assert_non_null(mkdtemp(dir));
	testlib_write(dir, "0", KEY_A "\n", 0600);
	testlib_write(dir, "1", KEY_B "\n", 0600);
	return (dir);
}

/* A worker re-reading the repository as fast as it can. */
static void *
reloader(void *arg)
{
	char *cause;

	while (!stop) {
		cause = NULL;
		if (token_reload(&cause) != 0) {
			reload_failures++;
			free(cause);
		}
		reloads++;
	}
	return (NULL);
}

/* token_init (SIGHUP, path changed) against token_reload (workers). */
static void
test_init_races_reload(void **state)
{
	struct config *a, *b;
	pthread_t t[2];
	char *dir_a, *dir_b, *cause = NULL;
	uint64_t end;
	int i;

	dir_a = make_repo("/tmp/k8sauth-token-a-XXXXXX");
	dir_b = make_repo("/tmp/k8sauth-token-b-long-name-XXXXXX");
	a = config_new();
	b = config_new();
	free(a->fernet_key_repository);
	a->fernet_key_repository = xstrdup(dir_a);
	free(b->fernet_key_repository);
	b->fernet_key_repository = xstrdup(dir_b);
	assert_int_equal(token_init(a, &cause), 0);
	for (i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reloader, NULL),
		    0);
	end = util_monotonic_us() + 1500 * 1000;
	for (i = 0; util_monotonic_us() < end; i++) {
		if (token_init(i % 2 ? a : b, &cause) != 0)
			fail_msg("token_init: %s", cause);
	}
	stop = 1;
	for (i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	print_message("%ld reloads, %ld failed\n", (long)reloads,
	    (long)reload_failures);
	assert_true(reloads > 0);
	assert_int_equal(reload_failures, 0);
	assert_int_equal(token_ready(), 1);
	token_shutdown();
	config_free(a);
	config_free(b);
	testlib_rm_tree(dir_a);
	testlib_rm_tree(dir_b);
	free(dir_a);
	free(dir_b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_init_races_reload),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
