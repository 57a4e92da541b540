/*
 * test_k8s_name.c: DNS-1123 labels (namespaces) and subdomains (service
 * accounts, pods), as apimachinery validates them.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

static void
test_label(void **state)
{
	static const char *const good[] = { "a", "default", "kube-system",
		"team-a1", "0", "9lives", NULL };
	static const char *const bad[] = { "", "-a", "a-", "A", "team_a",
		"a.b", "a b", "a\nb", "a\033[2J", "\xc3\xa9t\xc3\xa9", "a:b",
		NULL };
	char long_ok[64], too_long[65];
	size_t i;

	for (i = 0; good[i] != NULL; i++)
		if (!k8s_name_label(good[i]))
			fail_msg("label %s refused", good[i]);
	for (i = 0; bad[i] != NULL; i++)
		if (k8s_name_label(bad[i]))
			fail_msg("label \"%s\" accepted", bad[i]);
	assert_false(k8s_name_label(NULL));
	memset(long_ok, 'a', 63);
	long_ok[63] = '\0';
	assert_true(k8s_name_label(long_ok));
	memset(too_long, 'a', 64);
	too_long[64] = '\0';
	assert_false(k8s_name_label(too_long));
}

static void
test_subdomain(void **state)
{
	static const char *const good[] = { "a", "worker", "worker-1",
		"my.service.account", "a.b-c.d0", NULL };
	static const char *const bad[] = { "", ".a", "a.", "a..b", "-a.b",
		"a.-b", "a-.b", "Worker", "a_b", "a/b", "a b", "w\r\nINFO x",
		"a:b", NULL };
	char buf[300];
	size_t i;

	for (i = 0; good[i] != NULL; i++)
		if (!k8s_name_subdomain(good[i]))
			fail_msg("subdomain %s refused", good[i]);
	for (i = 0; bad[i] != NULL; i++)
		if (k8s_name_subdomain(bad[i]))
			fail_msg("subdomain \"%s\" accepted", bad[i]);
	assert_false(k8s_name_subdomain(NULL));
	/* 253 characters in labels longer than 63: fine, as in Kubernetes. */
	memset(buf, 'a', 253);
	buf[100] = '.';
	buf[253] = '\0';
	assert_true(k8s_name_subdomain(buf));
	buf[253] = 'a';
	buf[254] = '\0';
	assert_false(k8s_name_subdomain(buf));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_label),
		cmocka_unit_test(test_subdomain),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
