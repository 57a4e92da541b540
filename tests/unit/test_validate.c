/*
 * test_validate.c: host URLs, PEM bundles, role names and glob lists.
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

static const char cert_a[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBfjCCASOgAwIBAgIUAuEYwL1MQw/HyShMUNyuYjGwKCAwCgYIKoZIzj0EAwIw\n"
	"FDESMBAGA1UEAwwJdGVzdC1jYS1hMB4XDTI2MTEyODE0MDEwNloXDTM2MTEyNTE0\n"
	"MDEwNlowFDESMBAGA1UEAwwJdGVzdC1jYS1hMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
	"AQcDQgAEbUL82uj3kbEdTcpZzafuQtH3j6yXNdr2ROJj1huGqU8/pmoP/figlN8T\n"
	"/0jnWbqLOs8DBYVOX74ZDlyMKP58CKNTMFEwHQYDVR0OBBYEFKPJ7U8mBH/W90av\n"
	"1KMwBZIkvBYPMB8GA1UdIwQYMBaAFKPJ7U8mBH/W90av1KMwBZIkvBYPMA8GA1Ud\n"
	"EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAJIQgLdmDE4BX/KScRU9f/05\n"
	"/mR3CaUslh6bi35tV0jtAiEA7Ze53h30T1czDOuH9GCJ7cyN2SKuhTz3DPhu0P/r\n"
	"bu8=\n"
	"-----END CERTIFICATE-----\n";
static const char cert_b[] =
	"-----BEGIN CERTIFICATE-----\n"
	"MIIBfTCCASOgAwIBAgIUQIJUB0OK0UUF6CIiNOfUj+POVu4wCgYIKoZIzj0EAwIw\n"
	"FDESMBAGA1UEAwwJdGVzdC1jYS1iMB4XDTI2MTEyODE0MDEwNloXDTM2MTEyNTE0\n"
	"MDEwNlowFDESMBAGA1UEAwwJdGVzdC1jYS1iMFkwEwYHKoZIzj0CAQYIKoZIzj0D\n"
	"AQcDQgAEgIGe/Yq/xIbIJlFhLvx/F5OozidoOwNuPnrhp+U/lVM2TiamIHURHcgP\n"
	"3u1mCBdkAPfQhdmNBzHklpLQmim9xKNTMFEwHQYDVR0OBBYEFO2jP1x4eWEbxbKj\n"
	"D2kg8xak/stnMB8GA1UdIwQYMBaAFO2jP1x4eWEbxbKjD2kg8xak/stnMA8GA1Ud\n"
	"EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgTtppBbeMfuHcNzxTl5mJKOek\n"
	"84RYsrBgRd/UEKhsL7cCIQDhPQROdLWd+t14+iSK2Rjq0+bLrZELh7HYjj7S6Xor\n"
	"KQ==\n"
	"-----END CERTIFICATE-----\n";

/* validate_host with the cause checked to name the field. */
static int
host(const char *url, int allow_http)
{
	char	*cause = NULL;
	int	 rc;

	rc = validate_host(url, allow_http, &cause);
	if (rc == 0)
		assert_null(cause);
	else {
		assert_non_null(cause);
		assert_int_equal(strncmp(cause, "host ", 5), 0);
		free(cause);
	}
	return (rc);
}

static void
test_host_good(void **state)
{
	static const char *const good[] = {
		"https://k8s.example.com",
		"https://k8s.example.com/",
		"https://k8s.example.com:6443",
		"https://k8s.example.com:6443/",
		"https://10.0.0.1",
		"https://10.0.0.1:1",
		"https://10.0.0.1:65535/",
		"https://[::1]",
		"https://[::1]:6443",
		"https://[fd00::1:2]:443/",
		"HTTPS://K8S.EXAMPLE.COM",
		"https://kubernetes.default.svc",
		"https://localhost",
		NULL
	};
	size_t	 i;

	for (i = 0; good[i] != NULL; i++) {
		if (host(good[i], 0) != 0)
			fail_msg("rejected %s", good[i]);
	}
}

static void
test_host_bad(void **state)
{
	static const char *const bad[] = {
		"",
		"k8s.example.com",
		"k8s.example.com:6443",
		"//k8s.example.com",
		"ftp://k8s.example.com",
		"https://",
		"https:///",
		"https://:6443",
		"https://k8s.example.com:",
		"https://k8s.example.com:0",
		"https://k8s.example.com:65536",
		"https://k8s.example.com:99999999",
		"https://k8s.example.com:-1",
		"https://k8s.example.com:+443",
		"https://k8s.example.com:https",
		"https://user@k8s.example.com",
		"https://user:pw@k8s.example.com",
		"https://k8s.example.com/api",
		"https://k8s.example.com//",
		"https://k8s.example.com/?a=b",
		"https://k8s.example.com?a=b",
		"https://k8s.example.com#frag",
		"https://k8s.example.com/#",
		"https://k8s example.com",
		"https://k8s.example.com\n",
		"https://k\xc3\xa9.example.com",
		"https://[::1",
		"https://[::1]x",
		"https://[::1]:",
		"https://[not-ipv6]",
		"https://[]",
		"https://::1",
		"https://.example.com",
		"https://-example.com",
		"https://exa%mple.com",
		"http://k8s.example.com",
		NULL
	};
	size_t	 i;

	for (i = 0; bad[i] != NULL; i++) {
		if (host(bad[i], 0) == 0)
			fail_msg("accepted %s", bad[i]);
	}
}

static void
test_host_http(void **state)
{
	assert_int_equal(host("http://127.0.0.1:8080", 0), -1);
	assert_int_equal(host("http://127.0.0.1:8080", 1), 0);
	assert_int_equal(host("http://127.0.0.1:8080/x", 1), -1);
	assert_int_equal(host("https://127.0.0.1:8080", 1), 0);
}

static void
test_host_length(void **state)
{
	char	 url[1100];

	memset(url, 'a', sizeof url - 1);
	url[sizeof url - 1] = '\0';
	memcpy(url, "https://", 8);
	assert_int_equal(host(url, 0), -1);
}

/* validate_pem; returns rc and keeps the cause for inspection. */
static int
pem(const char *text, char **cause)
{
	*cause = NULL;
	return (validate_pem(text, cause));
}

static void
test_pem_good(void **state)
{
	char	*cause, *two;

	assert_int_equal(pem(cert_a, &cause), 0);
	assert_null(cause);
	xasprintf(&two, "\n%s\r\n\n%s  \n", cert_a, cert_b);
	assert_int_equal(pem(two, &cause), 0);
	free(two);
	/* No newline between the blocks is still two whole blocks. */
	xasprintf(&two, "%s%s", cert_a, cert_b);
	assert_int_equal(pem(two, &cause), 0);
	free(two);
}

static void
test_pem_bad(void **state)
{
	char	*cause, *s, *broken;

	assert_int_equal(pem("", &cause), -1);
	assert_non_null(strstr(cause, "at least one"));
	free(cause);
	assert_int_equal(pem("  \n", &cause), -1);
	free(cause);
	assert_int_equal(pem("not a certificate", &cause), -1);
	assert_non_null(strstr(cause, "ca_cert"));
	free(cause);
	/* Trailing garbage after a good certificate. */
	xasprintf(&s, "%sgarbage\n", cert_a);
	assert_int_equal(pem(s, &cause), -1);
	assert_non_null(strstr(cause, "certificate 2"));
	free(cause);
	free(s);
	/* Text before the first certificate. */
	xasprintf(&s, "subject=CN = x\n%s", cert_a);
	assert_int_equal(pem(s, &cause), -1);
	free(cause);
	free(s);
	/* The second block is corrupt. */
	broken = xstrdup(cert_b);
	broken[80] = broken[80] == 'A' ? 'B' : 'A';
	broken[81] = '!';
	xasprintf(&s, "%s%s", cert_a, broken);
	assert_int_equal(pem(s, &cause), -1);
	assert_non_null(strstr(cause, "certificate 2 does not parse"));
	free(cause);
	free(s);
	/* Truncated: no END line. */
	broken[200] = '\0';
	assert_int_equal(pem(broken, &cause), -1);
	assert_non_null(strstr(cause, "no END"));
	free(cause);
	free(broken);
	/* A private key is not a certificate. */
	assert_int_equal(pem("-----BEGIN PRIVATE KEY-----\nMIGH\n"
	    "-----END PRIVATE KEY-----\n", &cause), -1);
	free(cause);
	/* An empty certificate block. */
	assert_int_equal(pem("-----BEGIN CERTIFICATE-----\n"
	    "-----END CERTIFICATE-----\n", &cause), -1);
	free(cause);
}

static void
test_pem_size(void **state)
{
	char	*s, *cause;
	size_t	 n = VALIDATE_MAX_PEM + 2;

	s = xmalloc(n);
	memset(s, '\n', n - 1);
	s[n - 1] = '\0';
	memcpy(s, cert_a, strlen(cert_a));
	assert_int_equal(pem(s, &cause), -1);
	assert_non_null(strstr(cause, "at most"));
	free(cause);
	free(s);
}

static void
test_role_name(void **state)
{
	char	*cause = NULL, big[300];

	assert_int_equal(validate_role_name("web-servers.role_1", &cause), 0);
	assert_int_equal(validate_role_name("A", &cause), 0);
	assert_int_equal(validate_role_name("", &cause), -1);
	assert_non_null(strstr(cause, "name"));
	free(cause);
	assert_int_equal(validate_role_name("with space", &cause), -1);
	free(cause);
	assert_int_equal(validate_role_name("slash/x", &cause), -1);
	free(cause);
	assert_int_equal(validate_role_name("caf\xc3\xa9", &cause), -1);
	free(cause);
	memset(big, 'a', 255);
	big[255] = '\0';
	assert_int_equal(validate_role_name(big, &cause), 0);
	big[255] = 'a';
	big[256] = '\0';
	assert_int_equal(validate_role_name(big, &cause), -1);
	free(cause);
}

static void
test_globs(void **state)
{
	char		*good[] = { "*", "web-?", "ns-[a-c]", "default" };
	char		*bad1[] = { "ok", "has space" };
	char		*bad2[] = { "ns-[abc" };
	char		*bad3[] = { "tab\there" };
	struct strlist	 sl;
	char		*cause = NULL;

	sl.v = good;
	sl.n = 4;
	assert_int_equal(validate_globs("names", &sl, &cause), 0);
	sl.v = bad1;
	sl.n = 2;
	assert_int_equal(validate_globs("names", &sl, &cause), -1);
	assert_non_null(strstr(cause, "names[1]"));
	free(cause);
	sl.v = bad2;
	sl.n = 1;
	assert_int_equal(validate_globs("names", &sl, &cause), -1);
	assert_non_null(strstr(cause, "names[0]"));
	free(cause);
	sl.v = bad3;
	assert_int_equal(validate_globs("names", &sl, &cause), -1);
	free(cause);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_good),
		cmocka_unit_test(test_host_bad),
		cmocka_unit_test(test_host_http),
		cmocka_unit_test(test_host_length),
		cmocka_unit_test(test_pem_good),
		cmocka_unit_test(test_pem_bad),
		cmocka_unit_test(test_pem_size),
		cmocka_unit_test(test_role_name),
		cmocka_unit_test(test_globs),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
