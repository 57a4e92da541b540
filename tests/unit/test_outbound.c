/*
 * test_outbound.c: where the server may connect (API.md §7): link-local
 * in every spelling, allowed_hosts parsing, the write-time and the
 * connect-time checks, URL host and port.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

/* A sockaddr for an address literal (IPv4 or IPv6). */
static struct sockaddr_storage
sa_of(const char *addr)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof ss);
	if (inet_pton(AF_INET, addr, &s4->sin_addr) == 1)
		s4->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
		s6->sin6_family = AF_INET6;
	}
	return (ss);
}

static void
test_link_local_hosts(void **state)
{
	static const char *const bad[] = { "169.254.169.254", "169.254.0.0",
		"169.254.255.255", "fe80::1", "FE80::1", "febf:ffff::1",
		"::ffff:169.254.1.1", "2852039166", "0xa9.0xfe.0xa9.0xfe",
		"0251.0376.0251.0376", "169.254.43518", NULL };
	static const char *const good[] = { "169.253.255.255", "169.255.0.0",
		"fec0::1", "fe7f::1", "10.0.0.1", "::1", "127.0.0.1",
		"k8s.example.com", "169-254-1-1.example", NULL };
	size_t i;

	(void)state;
	for (i = 0; bad[i] != NULL; i++) {
		if (!outbound_link_local_host(bad[i]))
			fail_msg("%s is link-local", bad[i]);
	}
	for (i = 0; good[i] != NULL; i++) {
		if (outbound_link_local_host(good[i]))
			fail_msg("%s is not link-local", good[i]);
	}
}

static void
test_check_host_url(void **state)
{
	char *cause = NULL;

	(void)state;
	assert_int_equal(outbound_check_host("https://169.254.169.254", &cause),
	    -1);
	assert_non_null(strstr(cause, "link-local"));
	free(cause);
	cause = NULL;
	assert_int_equal(outbound_check_host("https://[fe80::1]:6443/", &cause),
	    -1);
	free(cause);
	cause = NULL;
	assert_int_equal(outbound_check_host("https://10.1.2.3:6443", &cause),
	    0);
	assert_null(cause);
}

static void
test_url_host_port(void **state)
{
	char *h;

	(void)state;
	h = outbound_url_host("https://K8S.Example.com:6443/");
	assert_string_equal(h, "k8s.example.com");
	free(h);
	h = outbound_url_host("https://[FD00::1]:6443");
	assert_string_equal(h, "fd00::1");
	free(h);
	assert_null(outbound_url_host("https://"));
	assert_int_equal(outbound_url_port("https://a.example:6443"), 6443);
	assert_int_equal(outbound_url_port("https://a.example/"), 443);
	assert_int_equal(outbound_url_port("http://a.example"), 80);
	assert_int_equal(outbound_url_port("https://[::1]:8443/"), 8443);
	assert_int_equal(outbound_url_port("https://[::1]"), 443);
	assert_int_equal(outbound_url_port("https://a.example:99999"), 0);
}

static void
test_rules_parse(void **state)
{
	static const char *const bad[] = { "10.0.0.0/33", "10.0.0.300",
		"fd00::/129", "1.2.3.4/x", "::gg", NULL };
	struct outbound_rules *or;
	char *cause = NULL;
	size_t i;

	(void)state;
	or = outbound_rules_parse(NULL, &cause);
	assert_non_null(or);
	assert_true(outbound_rules_empty(or));
	outbound_rules_free(or);
	or = outbound_rules_parse(" , ", &cause);
	assert_true(outbound_rules_empty(or));
	outbound_rules_free(or);
	for (i = 0; bad[i] != NULL; i++) {
		or = outbound_rules_parse(bad[i], &cause);
		if (or != NULL)
			fail_msg("\"%s\" parsed", bad[i]);
		assert_non_null(strstr(cause, "allowed_hosts"));
		free(cause);
		cause = NULL;
	}
	assert_null(outbound_rules_parse("a.example, 1.2.3.4/x", NULL));
}

static void
test_host_allowed(void **state)
{
	struct outbound_rules *or, *globs;
	char *cause = NULL;

	(void)state;
	or = outbound_rules_parse("*.K8S.example, 10.0.0.0/8, fd00::/8", NULL);
	assert_non_null(or);
	assert_int_equal(outbound_host_allowed(or, "api.k8s.example", &cause),
	    0);
	assert_int_equal(outbound_host_allowed(or, "10.1.2.3", &cause), 0);
	assert_int_equal(outbound_host_allowed(or, "fd00::5", &cause), 0);
	/* a name no glob covers: the CIDRs decide at connect time */
	assert_int_equal(outbound_host_allowed(or, "other.example", &cause),
	    0);
	assert_int_equal(outbound_host_allowed(or, "11.0.0.1", &cause), -1);
	assert_non_null(strstr(cause, "11.0.0.1"));
	free(cause);
	cause = NULL;
	globs = outbound_rules_parse("*.k8s.example", NULL);
	assert_int_equal(outbound_host_allowed(globs, "other.example", &cause),
	    -1);
	free(cause);
	cause = NULL;
	assert_int_equal(outbound_host_allowed(NULL, "anything", &cause), 0);
	outbound_rules_free(globs);
	outbound_rules_free(or);
}

/* Behind a proxy only the host's text can be judged. */
static void
test_proxied_allowed(void **state)
{
	struct outbound_rules *or;
	const char *why = NULL;

	(void)state;
	or = outbound_rules_parse("*.K8S.example, 10.0.0.0/8", NULL);
	assert_int_equal(outbound_proxied_allowed(or, "api.k8s.example", &why),
	    0);
	assert_int_equal(outbound_proxied_allowed(or, "10.1.2.3", &why), 0);
	assert_int_equal(outbound_proxied_allowed(or, "0x0a010203", &why), 0);
	/* a name no glob covers passes the write-time check, not this one */
	assert_int_equal(outbound_proxied_allowed(or, "other.example", &why),
	    -1);
	assert_non_null(strstr(why, "proxy"));
	assert_int_equal(outbound_proxied_allowed(or, "11.0.0.1", &why), -1);
	assert_int_equal(outbound_proxied_allowed(or, NULL, &why), -1);
	assert_int_equal(outbound_proxied_allowed(NULL, "anything", &why), 0);
	outbound_rules_free(or);
}

static void
test_addr_allowed(void **state)
{
	struct outbound_rules *or;
	struct sockaddr_storage ss;
	const char *why = NULL;

	(void)state;
	or = outbound_rules_parse("*.k8s.example, 10.0.0.0/8, 192.168.1.128/25",
	    NULL);
	ss = sa_of("10.9.9.9");
	assert_int_equal(outbound_addr_allowed(or, "x.other",
			     (struct sockaddr *)&ss, &why),
	    0);
	ss = sa_of("192.168.1.200");
	assert_int_equal(outbound_addr_allowed(or, "x.other",
			     (struct sockaddr *)&ss, &why),
	    0);
	ss = sa_of("192.168.1.100");
	assert_int_equal(outbound_addr_allowed(or, "x.other",
			     (struct sockaddr *)&ss, &why),
	    -1);
	assert_non_null(strstr(why, "allowed_hosts"));
	/* a glob-matched name may go anywhere but link-local */
	ss = sa_of("127.0.0.1");
	assert_int_equal(outbound_addr_allowed(or, "api.k8s.example",
			     (struct sockaddr *)&ss, &why),
	    0);
	ss = sa_of("::ffff:10.1.1.1");
	assert_int_equal(outbound_addr_allowed(or, NULL,
			     (struct sockaddr *)&ss, &why),
	    0);
	/* link-local: never, with or without rules */
	ss = sa_of("169.254.169.254");
	assert_int_equal(outbound_addr_allowed(or, "api.k8s.example",
			     (struct sockaddr *)&ss, &why),
	    -1);
	assert_non_null(strstr(why, "link-local"));
	assert_int_equal(outbound_addr_allowed(NULL, NULL,
			     (struct sockaddr *)&ss, &why),
	    -1);
	ss = sa_of("fe80::1");
	assert_int_equal(outbound_addr_allowed(NULL, NULL,
			     (struct sockaddr *)&ss, &why),
	    -1);
	ss = sa_of("::ffff:169.254.1.1");
	assert_int_equal(outbound_addr_allowed(NULL, NULL,
			     (struct sockaddr *)&ss, &why),
	    -1);
	ss = sa_of("8.8.8.8");
	assert_int_equal(outbound_addr_allowed(NULL, NULL,
			     (struct sockaddr *)&ss, &why),
	    0);
	outbound_rules_free(or);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_local_hosts),
		cmocka_unit_test(test_check_host_url),
		cmocka_unit_test(test_url_host_port),
		cmocka_unit_test(test_rules_parse),
		cmocka_unit_test(test_host_allowed),
		cmocka_unit_test(test_addr_allowed),
		cmocka_unit_test(test_proxied_allowed),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
