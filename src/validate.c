/*
 * validate.c: field rules shared by the admin API handlers.
 *
 * The API server URL of an instance (validate_host), its CA bundle
 * (validate_pem, every certificate parsed by OpenSSL), role names and the
 * glob lists that bind service accounts, namespaces and pods.  Each check
 * returns 0, or -1 with a cause that names the field, ready to be sent
 * back in a 400.
 *
 * Owns nothing; pure functions, safe from any thread (OpenSSL's error
 * queue is per thread and left empty).  Never blocks.
 */
#include <arpa/inet.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "k8sauth.h"

#define VALIDATE_MAX_URL 1024
#define PEM_BEGIN        "-----BEGIN CERTIFICATE-----"
#define PEM_END          "-----END CERTIFICATE-----"

/* Set cause to "host <why>" and return -1. */
static int
validate_host_fail(char **cause, const char *why)
{
	xasprintf(cause, "host %s", why);
	return (-1);
}

/* Is port (len bytes) a decimal number in 1..65535? */
static int
validate_port(const char *port, size_t len)
{
	long v = 0;
	size_t i;

	if (len == 0 || len > 5)
		return (0);
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)port[i]))
			return (0);
		v = v * 10 + (port[i] - '0');
	}
	return (v >= 1 && v <= 65535);
}

/* Is name (len bytes) a plausible DNS name or IPv4 address? */
static int
validate_hostname(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > 253 || name[0] == '.' || name[0] == '-')
		return (0);
	for (i = 0; i < len; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '-' &&
		    name[i] != '.' && name[i] != '_')
			return (0);
	}
	return (1);
}

/* Is the bracketed text (len bytes, brackets excluded) an IPv6 address? */
static int
validate_ipv6(const char *addr, size_t len)
{
	char buf[64];
	unsigned char out[16];

	if (len == 0 || len >= sizeof buf)
		return (0);
	memcpy(buf, addr, len);
	buf[len] = '\0';
	return (inet_pton(AF_INET6, buf, out) == 1);
}

/* Check the authority part (host[:port]) of a URL; len bytes. */
static int
validate_authority(const char *a, size_t len, char **cause)
{
	const char *close, *colon;
	size_t hostlen;

	if (memchr(a, '@', len) != NULL)
		return (validate_host_fail(cause, "must not contain userinfo"));
	if (len > 0 && a[0] == '[') {
		close = memchr(a, ']', len);
		if (close == NULL || !validate_ipv6(a + 1, close - a - 1))
			return (validate_host_fail(cause,
			    "has an invalid IPv6 address"));
		colon = close + 1 < a + len ? close + 1 : NULL;
		if (colon != NULL && *colon != ':')
			return (validate_host_fail(cause,
			    "has garbage after the IPv6 address"));
		hostlen = 1;
	} else {
		colon = memchr(a, ':', len);
		hostlen = colon != NULL ? (size_t)(colon - a) : len;
		if (!validate_hostname(a, hostlen))
			return (validate_host_fail(cause,
			    "must name a valid host"));
	}
	if (colon != NULL && !validate_port(colon + 1, a + len - colon - 1))
		return (validate_host_fail(cause,
		    "must have a port between 1 and 65535"));
	return (hostlen > 0 ? 0 : validate_host_fail(cause, "has no host"));
}

/* Strip a known scheme; the rest of the URL, or NULL with cause. */
static const char *
validate_scheme(const char *url, int allow_http, char **cause)
{
	if (strncasecmp(url, "https://", 8) == 0)
		return (url + 8);
	if (strncasecmp(url, "http://", 7) == 0) {
		if (allow_http)
			return (url + 7);
		validate_host_fail(cause,
		    "must use https:// (http:// needs [k8s_auth] allow_insecure_http)");
		return (NULL);
	}
	validate_host_fail(cause, "must be an absolute https:// URL");
	return (NULL);
}

/*
 * The API server URL of an instance: https:// (http:// only when
 * allow_http), a host or bracketed IPv6 address, an optional port, and no
 * userinfo, path (other than "/"), query or fragment.
 */
int
validate_host(const char *url, int allow_http, char **cause)
{
	const char *rest, *slash;
	size_t i, len;

	len = strlen(url);
	if (len == 0 || len > VALIDATE_MAX_URL)
		return (validate_host_fail(cause,
		    "must be 1 to 1024 characters long"));
	for (i = 0; i < len; i++) {
		if ((unsigned char)url[i] <= 0x20 ||
		    (unsigned char)url[i] >= 0x7f)
			return (validate_host_fail(cause,
			    "must not contain spaces, control or non-ASCII characters"));
	}
	if (strpbrk(url, "?#") != NULL)
		return (validate_host_fail(cause,
		    "must not have a query or fragment"));
	if ((rest = validate_scheme(url, allow_http, cause)) == NULL)
		return (-1);
	slash = strchr(rest, '/');
	if (slash != NULL && slash[1] != '\0')
		return (validate_host_fail(cause,
		    "must not have a path other than /"));
	len = slash != NULL ? (size_t)(slash - rest) : strlen(rest);
	return (validate_authority(rest, len, cause));
}

/* Parse one PEM certificate block of len bytes; 0 when it parses. */
static int
validate_pem_block(const char *block, size_t len)
{
	BIO *bio;
	X509 *x;

	bio = BIO_new_mem_buf(block, (int)len);
	if (bio == NULL)
		fatalx("BIO_new_mem_buf failed");
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	BIO_free(bio);
	ERR_clear_error();
	if (x == NULL)
		return (-1);
	X509_free(x);
	return (0);
}

/* Skip spaces, tabs and line breaks. */
static const char *
validate_skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
		p++;
	return (p);
}

/*
 * A CA bundle: one or more PEM certificates, each parsed by OpenSSL,
 * separated only by whitespace (anything else is refused, so a private
 * key or a truncated paste is caught at write time, not at login).
 */
int
validate_pem(const char *pem, char **cause)
{
	const char *p, *end;
	size_t n = 0;

	if (strlen(pem) > VALIDATE_MAX_PEM) {
		xasprintf(cause, "ca_cert must be at most %d bytes",
		    VALIDATE_MAX_PEM);
		return (-1);
	}
	for (p = validate_skip_space(pem); *p != '\0';
	     p = validate_skip_space(p)) {
		n++;
		if (strncmp(p, PEM_BEGIN, strlen(PEM_BEGIN)) != 0) {
			xasprintf(cause,
			    "ca_cert has data that is not a PEM certificate (before certificate %zu)",
			    n);
			return (-1);
		}
		end = strstr(p, PEM_END);
		if (end == NULL) {
			xasprintf(cause,
			    "ca_cert certificate %zu has no END line", n);
			return (-1);
		}
		end += strlen(PEM_END);
		if (validate_pem_block(p, (size_t)(end - p)) != 0) {
			xasprintf(cause,
			    "ca_cert certificate %zu does not parse", n);
			return (-1);
		}
		p = end;
	}
	if (n == 0) {
		*cause = xstrdup(
		    "ca_cert must contain at least one PEM certificate");
		return (-1);
	}
	return (0);
}

/* A role name: 1..255 of [A-Za-z0-9_.-]. */
int
validate_role_name(const char *name, char **cause)
{
	size_t i, n = strlen(name);

	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)name[i]) && name[i] != '_' &&
		    name[i] != '.' && name[i] != '-')
			break;
	}
	if (n == 0 || n > 255 || i != n) {
		*cause = xstrdup(
		    "name must be 1 to 255 characters of A-Z a-z 0-9 _ . -");
		return (-1);
	}
	return (0);
}

/* One glob: printable ASCII without spaces, every '[' closed. */
static int
validate_glob(const char *g)
{
	const char *p;

	for (p = g; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			return (-1);
	}
	for (p = g; *p != '\0'; p++) {
		if (*p == '[' && (p = strchr(p + 1, ']')) == NULL)
			return (-1);
	}
	return (0);
}

/* Every item of a bound list is a usable name or glob. */
int
validate_globs(const char *field, const struct strlist *sl, char **cause)
{
	size_t i;

	for (i = 0; i < sl->n; i++) {
		if (validate_glob(sl->v[i]) != 0) {
			xasprintf(cause,
			    "%s[%zu] must be a name or a glob (printable, no spaces, brackets closed)",
			    field, i);
			return (-1);
		}
	}
	return (0);
}
