/*
 * test_throttle.c: the failed-login token bucket (arithmetic, expiry,
 * eviction under address rotation), address parsing, the bucket of an
 * IPv6 address (/64), CIDR matching (IPv4, IPv6, v4-mapped IPv6) and the
 * X-Forwarded-For walk behind trusted proxies.
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

/* The bucket key of an address literal (which must parse). */
static struct throttle_key
key_of(const char *s)
{
	unsigned char a[16];
	struct throttle_key k;

	if (throttle_addr_parse(s, a) != 0)
		fail_msg("%s does not parse", s);
	throttle_key_of(a, &k);
	return (k);
}

static void
test_bucket_arithmetic(void **state)
{
	/* Refill at rate per second, capped at burst. */
	assert_true(throttle_tokens_at(0, 100, 10, 50, 100.5) == 5.0);
	assert_true(throttle_tokens_at(3, 100, 10, 50, 1000) == 50.0);
	assert_true(throttle_tokens_at(2, 100, 10, 50, 99) == 2.0);
	/* Seconds until one token is back, at least 1. */
	assert_int_equal(throttle_retry_after(0, 10), 1);
	assert_int_equal(throttle_retry_after(0, 1), 1);
	assert_int_equal(throttle_retry_after(0.5, 0.25), 2);
	assert_int_equal(throttle_retry_after(0, 0.1), 10);
	assert_int_equal(throttle_retry_after(0.99, 1), 1);
}

static void
test_burst_then_refused_then_refill(void **state)
{
	struct throttle *t = throttle_new(1024);
	struct throttle_key k = key_of("192.0.2.7");
	double now = 1000;
	int i;

	for (i = 0; i < 5; i++) {
		assert_int_equal(throttle_check(t, &k, 1, 5, now), 0);
		throttle_fail(t, &k, 1, 5, now);
	}
	/* Five failures in a row empty a bucket of five. */
	assert_int_equal(throttle_check(t, &k, 1, 5, now), 1);
	assert_int_equal(throttle_check(t, &k, 0.5, 5, now), 2);
	/* Another address is not affected. */
	k = key_of("192.0.2.8");
	assert_int_equal(throttle_check(t, &k, 1, 5, now), 0);
	k = key_of("192.0.2.7");
	/* One second later one token is back: one more try. */
	assert_int_equal(throttle_check(t, &k, 1, 5, now + 1), 0);
	throttle_fail(t, &k, 1, 5, now + 1);
	assert_int_equal(throttle_check(t, &k, 1, 5, now + 1), 1);
	/* Rate 0 is the throttle turned off. */
	assert_int_equal(throttle_check(t, &k, 0, 5, now + 1), 0);
	throttle_free(t);
}

static void
test_ipv6_by_64(void **state)
{
	struct throttle *t = throttle_new(1024);
	struct throttle_key a = key_of("2001:db8:1:2::1");
	struct throttle_key b = key_of("2001:db8:1:2:ffff::9");
	struct throttle_key c = key_of("2001:db8:1:3::1");
	struct throttle_key m = key_of("::ffff:192.0.2.1");
	struct throttle_key v4 = key_of("192.0.2.1");

	assert_memory_equal(a.b, b.b, 16);
	assert_memory_not_equal(a.b, c.b, 16);
	/* A v4-mapped address is its IPv4 address, not a /64. */
	assert_memory_equal(m.b, v4.b, 16);
	assert_memory_not_equal(key_of("192.0.2.2").b, v4.b, 16);
	throttle_fail(t, &a, 1, 1, 10);
	assert_int_not_equal(throttle_check(t, &b, 1, 1, 10), 0);
	assert_int_equal(throttle_check(t, &c, 1, 1, 10), 0);
	throttle_free(t);
}

/*
 * An attacker rotating addresses recycles entries but cannot push out a
 * throttled address that failed more often than each of its addresses.
 */
static void
test_rotation_keeps_throttled(void **state)
{
	struct throttle *t = throttle_new(64);
	struct throttle_key victim = key_of("198.51.100.1"), k;
	char addr[64];
	int i;

	assert_int_equal(throttle_capacity(t), 64);
	for (i = 0; i < 10; i++)
		throttle_fail(t, &victim, 1, 10, 50);
	assert_int_not_equal(throttle_check(t, &victim, 1, 10, 50), 0);
	for (i = 0; i < 100000; i++) {
		snprintf(addr, sizeof addr, "10.%d.%d.%d", (i >> 16) & 0xff,
		    (i >> 8) & 0xff, i & 0xff);
		k = key_of(addr);
		throttle_fail(t, &k, 1, 10, 50);
	}
	assert_int_not_equal(throttle_check(t, &victim, 1, 10, 50), 0);
	/* Once its bucket has refilled the entry is worth nothing. */
	assert_int_equal(throttle_check(t, &victim, 1, 10, 61), 0);
	throttle_free(t);
}

static void
test_addr_parse(void **state)
{
	static const char *const good[] = { "192.0.2.1", "192.0.2.1:8080",
		"::1", "[2001:db8::1]", "[2001:db8::1]:443", "::ffff:10.0.0.1",
		NULL };
	static const char *const bad[] = { "", "unknown", "192.0.2", "1.2.3.4/8",
		"[::1", "999.1.1.1", "::1::2", "1.2.3.4 ", "_hidden", NULL };
	unsigned char a[16];
	char buf[64];
	size_t i;

	for (i = 0; good[i] != NULL; i++) {
		if (throttle_addr_parse(good[i], a) != 0)
			fail_msg("%s refused", good[i]);
	}
	for (i = 0; bad[i] != NULL; i++) {
		if (throttle_addr_parse(bad[i], a) == 0)
			fail_msg("\"%s\" accepted", bad[i]);
	}
	assert_int_equal(throttle_addr_parse("::ffff:10.0.0.1", a), 0);
	throttle_addr_format(a, buf, sizeof buf);
	assert_string_equal(buf, "10.0.0.1");
	assert_int_equal(throttle_addr_parse("[2001:db8::1]:443", a), 0);
	throttle_addr_format(a, buf, sizeof buf);
	assert_string_equal(buf, "2001:db8::1");
}

/* Does s match the list? */
static int
in(const struct throttle_cidrs *l, const char *s)
{
	unsigned char a[16];

	if (throttle_addr_parse(s, a) != 0)
		fail_msg("%s does not parse", s);
	return (throttle_cidrs_match(l, a));
}

static void
test_cidrs(void **state)
{
	struct throttle_cidrs *l;
	char *cause = NULL;

	l = throttle_cidrs_parse(
	    "10.0.0.0/8, 192.0.2.7 ,2001:db8:a::/48,fe80::1", &cause);
	assert_non_null(l);
	assert_true(in(l, "10.1.2.3"));
	assert_true(in(l, "::ffff:10.1.2.3")); /* v4-mapped */
	assert_false(in(l, "11.0.0.1"));
	assert_true(in(l, "192.0.2.7"));
	assert_false(in(l, "192.0.2.8"));
	assert_true(in(l, "2001:db8:a:ffff::1"));
	assert_false(in(l, "2001:db8:b::1"));
	assert_true(in(l, "fe80::1"));
	assert_false(in(l, "fe80::2"));
	assert_false(in(l, "::a00:1")); /* 10.0.0.1's bits, not v4-mapped */
	throttle_cidrs_free(l);

	l = throttle_cidrs_parse("192.0.2.0/25", &cause);
	assert_true(in(l, "192.0.2.127"));
	assert_false(in(l, "192.0.2.128"));
	throttle_cidrs_free(l);

	l = throttle_cidrs_parse("0.0.0.0/0", &cause);
	assert_true(in(l, "203.0.113.9"));
	assert_false(in(l, "2001:db8::1"));
	throttle_cidrs_free(l);

	l = throttle_cidrs_parse("", &cause);
	assert_non_null(l);
	assert_false(in(l, "127.0.0.1"));
	throttle_cidrs_free(l);
	l = throttle_cidrs_parse(NULL, &cause);
	assert_non_null(l);
	throttle_cidrs_free(l);

	assert_null(throttle_cidrs_parse("10.0.0.1/8", &cause));
	assert_non_null(strstr(cause, "10.0.0.1/8"));
	free(cause);
	cause = NULL;
	assert_null(throttle_cidrs_parse("10.0.0.0/33", &cause));
	free(cause);
	cause = NULL;
	assert_null(throttle_cidrs_parse("proxy.example", &cause));
	free(cause);
	cause = NULL;
	assert_null(throttle_cidrs_parse("2001:db8::/129", &cause));
	free(cause);
}

/* The client of peer with xff behind trusted, formatted. */
static const char *
client(const struct throttle_cidrs *trusted, const char *peer,
    const char *xff)
{
	static char buf[64];
	unsigned char a[16];

	if (throttle_addr_parse(peer, a) != 0)
		fail_msg("%s does not parse", peer);
	throttle_forwarded_for(trusted, xff, a);
	throttle_addr_format(a, buf, sizeof buf);
	return (buf);
}

static void
test_forwarded_for(void **state)
{
	struct throttle_cidrs *t;
	char *cause = NULL;

	t = throttle_cidrs_parse("10.0.0.0/8", &cause);
	/* An untrusted peer's header is ignored. */
	assert_string_equal(client(t, "192.0.2.1", "198.51.100.1"),
	    "192.0.2.1");
	/* A trusted peer: the right-most address that is not a proxy. */
	assert_string_equal(client(t, "10.0.0.1", "198.51.100.1"),
	    "198.51.100.1");
	assert_string_equal(client(t, "10.0.0.1",
				"203.0.113.5, 198.51.100.1, 10.0.0.2"),
	    "198.51.100.1");
	/* A spoofed left part is never reached. */
	assert_string_equal(client(t, "10.0.0.1", "10.9.9.9,198.51.100.1"),
	    "198.51.100.1");
	/* Garbage stops the walk at the proxy that wrote it. */
	assert_string_equal(client(t, "10.0.0.1", "198.51.100.1, unknown"),
	    "10.0.0.1");
	assert_string_equal(client(t, "10.0.0.1", ""), "10.0.0.1");
	assert_string_equal(client(t, "10.0.0.1", NULL), "10.0.0.1");
	/* Every hop a proxy: the left-most one. */
	assert_string_equal(client(t, "10.0.0.1", "10.0.0.3,10.0.0.2"),
	    "10.0.0.3");
	/* Ports and brackets as some proxies write them. */
	assert_string_equal(client(t, "10.0.0.1", "[2001:db8::7]:5555"),
	    "2001:db8::7");
	assert_string_equal(client(t, "::ffff:10.0.0.1", "192.0.2.9:1234"),
	    "192.0.2.9");
	throttle_cidrs_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bucket_arithmetic),
		cmocka_unit_test(test_burst_then_refused_then_refill),
		cmocka_unit_test(test_ipv6_by_64),
		cmocka_unit_test(test_rotation_keeps_throttled),
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_cidrs),
		cmocka_unit_test(test_forwarded_for),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
