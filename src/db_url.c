/*
 * db_url.c: the [database] connection string, parsed and masked.
 *
 * Accepted, in keystone.conf's spelling (SQLAlchemy URLs):
 *   sqlite:///ABSOLUTE/PATH (sqlite:////ABS too), or a bare /ABSOLUTE/PATH
 *   mysql://USER[:PASS]@HOST[:PORT]/DB[?PARAMS]
 *   mysql+pymysql://... (the same)
 * USER, PASS, DB and parameter values are percent-decoded; HOST may be an
 * [IPv6] literal, and may be empty when unix_socket is given.  PARAMS are
 * unix_socket=PATH, ssl_ca=PATH (TLS with the server certificate verified
 * against it) and charset=utf8mb4|utf8 (utf8 is taken as utf8mb4: the
 * schema is utf8mb4).  Anything else is refused with its name: a setting
 * silently ignored could mean a connection in clear text.
 *
 * The password must never reach a log line or an error message:
 * db_url_masked gives the URL with it replaced by "***", and every
 * message here names the URL only through it.  Pure functions, any thread.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define DB_URL_MASK "***"

/* Value of one hex digit, or -1. */
static int
db_url_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/* Percent-decode s[0..len); NULL on a bad escape or a NUL byte. */
static char *
db_url_decode(const char *s, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;
	size_t i;
	int hi, lo;

	for (i = 0; i < len; i++) {
		if (s[i] != '%') {
			*o++ = s[i];
			continue;
		}
		if (i + 2 >= len)
			goto fail;
		if ((hi = db_url_hex(s[i + 1])) < 0 ||
		    (lo = db_url_hex(s[i + 2])) < 0 || (hi == 0 && lo == 0))
			goto fail;
		*o++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*o = '\0';
	return (out);
fail:
	explicit_bzero(out, len + 1); /* a password's first bytes */
	free(out);
	return (NULL);
}

/* Free every string of u (u itself is the caller's). */
void
db_url_free(struct db_url *u)
{
	free(u->path);
	if (u->password != NULL)
		freezero_str(u->password);
	free(u->user);
	free(u->host);
	free(u->database);
	free(u->unix_socket);
	free(u->ssl_ca);
	free(u->charset);
	memset(u, 0, sizeof *u);
}

/*
 * A copy of the connection string with any password replaced by "***":
 * the only form in which a MySQL URL may be logged or shown.
 */
char *
db_url_masked(const char *url)
{
	const char *auth, *at, *colon;
	char *out;

	if (url == NULL)
		return (xstrdup("(none)"));
	if ((auth = strstr(url, "://")) == NULL)
		return (xstrdup(url));
	auth += 3;
	/* the last '@': a password may hold '@', '/', '?' or ':' */
	if ((at = strrchr(auth, '@')) == NULL)
		return (xstrdup(url));
	if ((colon = memchr(auth, ':', (size_t)(at - auth))) == NULL)
		return (xstrdup(url));
	xasprintf(&out, "%.*s" DB_URL_MASK "%s", (int)(colon + 1 - url), url,
	    at);
	return (out);
}

/*
 * Overwrite, in place, the password of a connection string with 'x's
 * (same length; the bytes db_url_masked hides): for a URL given on a
 * command line, whose argv any local user reads in /proc/PID/cmdline.
 */
void
db_url_wipe_password(char *url)
{
	char *auth, *at, *colon;

	if (url == NULL || (auth = strstr(url, "://")) == NULL)
		return;
	auth += 3;
	if ((at = strrchr(auth, '@')) == NULL ||
	    (colon = memchr(auth, ':', (size_t)(at - auth))) == NULL)
		return;
	memset(colon + 1, 'x', (size_t)(at - colon - 1));
}

/* The SQLite forms; 0 or -1 with *cause. */
static int
db_url_sqlite(const char *p, struct db_url *u, char **cause)
{
	u->kind = DB_SQLITE;
	/* sqlite:////abs (SQLAlchemy's spelling) means the same file. */
	while (p[0] == '/' && p[1] == '/')
		p++;
	if (p[0] != '/' || p[1] == '\0') {
		xasprintf(cause,
		    "[database] connection: must be sqlite:///ABSOLUTE/PATH");
		return (-1);
	}
	u->path = xstrdup(p);
	return (0);
}

/* One query parameter name=value into u; 0 or -1 with *why. */
static int
db_url_param(const char *kv, size_t len, struct db_url *u, char **why)
{
	static const char *const names[] = { "unix_socket", "ssl_ca",
		"charset" };
	char **slots[] = { &u->unix_socket, &u->ssl_ca, &u->charset };
	const char *eq = memchr(kv, '=', len);
	size_t nlen = eq != NULL ? (size_t)(eq - kv) : len;
	char *value;
	size_t i;

	for (i = 0; i < 3; i++) {
		if (strlen(names[i]) == nlen && memcmp(names[i], kv, nlen) == 0)
			break;
	}
	if (i == 3) {
		xasprintf(why,
		    "unsupported parameter \"%.*s\" (known: unix_socket, ssl_ca, charset)",
		    (int)(nlen > 64 ? 64 : nlen), kv);
		return (-1);
	}
	if (eq == NULL || eq + 1 == kv + len ||
	    (value = db_url_decode(eq + 1, (size_t)(kv + len - eq - 1))) ==
		NULL) {
		xasprintf(why, "parameter %s: bad or empty value", names[i]);
		return (-1);
	}
	if (*slots[i] != NULL) {
		free(value);
		xasprintf(why, "parameter %s given twice", names[i]);
		return (-1);
	}
	*slots[i] = value;
	return (0);
}

/* The query string (after '?'); 0 or -1 with *why. */
static int
db_url_params(const char *q, struct db_url *u, char **why)
{
	size_t len;

	while (*q != '\0') {
		len = strcspn(q, "&");
		if (len > 0 && db_url_param(q, len, u, why) != 0)
			return (-1);
		q += len;
		if (*q == '&')
			q++;
	}
	if (u->charset == NULL)
		u->charset = xstrdup("utf8mb4");
	else if (strcmp(u->charset, "utf8") == 0) {
		free(u->charset);
		u->charset = xstrdup("utf8mb4");
	} else if (strcmp(u->charset, "utf8mb4") != 0) {
		xasprintf(why, "charset must be utf8mb4 or utf8");
		return (-1);
	}
	return (0);
}

/* USER[:PASS] (percent-decoded); 0 or -1 with *why. */
static int
db_url_userinfo(const char *s, size_t len, struct db_url *u, char **why)
{
	const char *colon = memchr(s, ':', len);
	size_t ulen = colon != NULL ? (size_t)(colon - s) : len;

	if (ulen == 0 || (u->user = db_url_decode(s, ulen)) == NULL) {
		xasprintf(why, "a user name is required (USER:PASS@HOST)");
		return (-1);
	}
	if (colon != NULL &&
	    (u->password = db_url_decode(colon + 1,
		 (size_t)(s + len - colon - 1))) == NULL) {
		xasprintf(why, "bad percent-escape in the password");
		return (-1);
	}
	return (0);
}

/* HOST[:PORT] or [V6][:PORT]; 0 or -1 with *why. */
static int
db_url_hostport(const char *s, size_t len, struct db_url *u, char **why)
{
	const char *end = s + len, *port = NULL, *h = s, *he;
	char *ep;
	long n;

	if (len > 0 && *s == '[') {
		if ((he = memchr(s, ']', len)) == NULL) {
			xasprintf(why, "unterminated [IPv6] host");
			return (-1);
		}
		h = s + 1;
		if (he + 1 < end) {
			if (he[1] != ':') {
				xasprintf(why, "bad host");
				return (-1);
			}
			port = he + 2;
		}
	} else {
		he = memchr(s, ':', len);
		if (he != NULL)
			port = he + 1;
		else
			he = end;
	}
	u->host = xstrndup(h, (size_t)(he - h));
	if (port == NULL)
		return (0);
	n = strtol(port, &ep, 10);
	if (port == end || ep != end || n < 1 || n > 65535 ||
	    !isdigit((unsigned char)*port)) {
		xasprintf(why, "bad port");
		return (-1);
	}
	u->port = (unsigned int)n;
	return (0);
}

/* The MySQL forms after "scheme://"; 0 or -1 with *why. */
static int
db_url_mysql(const char *p, struct db_url *u, char **why)
{
	const char *slash, *at, *q;
	size_t alen;

	u->kind = DB_MYSQL;
	/* the last '@', as db_url_masked does: the password may hold any */
	if ((at = strrchr(p, '@')) == NULL) {
		xasprintf(why, "a user name is required (USER:PASS@HOST)");
		return (-1);
	}
	if ((slash = strchr(at, '/')) == NULL) {
		xasprintf(why, "a database name is required (HOST/DB)");
		return (-1);
	}
	alen = (size_t)(slash - p);
	if (db_url_userinfo(p, (size_t)(at - p), u, why) != 0 ||
	    db_url_hostport(at + 1, alen - (size_t)(at + 1 - p), u, why) != 0)
		return (-1);
	q = slash + 1 + strcspn(slash + 1, "?");
	if (q == slash + 1 || memchr(slash + 1, '/', (size_t)(q - slash - 1)) ||
	    (u->database = db_url_decode(slash + 1, (size_t)(q - slash - 1))) ==
		NULL) {
		xasprintf(why, "a database name is required (HOST/DB)");
		return (-1);
	}
	if (db_url_params(*q == '?' ? q + 1 : q, u, why) != 0)
		return (-1);
	if (*u->host == '\0' && u->unix_socket == NULL) {
		xasprintf(why, "a host (or ?unix_socket=) is required");
		return (-1);
	}
	return (0);
}

/*
 * Parse a connection string into u (freed with db_url_free); 0, or -1
 * with *cause naming the URL with its password masked.
 */
int
db_url_parse(const char *url, struct db_url *u, char **cause)
{
	char *why = NULL, *masked;
	int rc;

	memset(u, 0, sizeof *u);
	if (url == NULL || *url == '\0') {
		xasprintf(cause, "[database] connection: required");
		return (-1);
	}
	if (url[0] == '/')
		return (db_url_sqlite(url, u, cause));
	if (strncmp(url, "sqlite://", 9) == 0) {
		if ((rc = db_url_sqlite(url + 9, u, cause)) != 0)
			db_url_free(u);
		return (rc);
	}
	if (strncmp(url, "mysql://", 8) == 0)
		rc = db_url_mysql(url + 8, u, &why);
	else if (strncmp(url, "mysql+pymysql://", 16) == 0)
		rc = db_url_mysql(url + 16, u, &why);
	else {
		rc = -1;
		why = xstrdup(
		    "must be sqlite:///ABSOLUTE/PATH, mysql+pymysql://USER:PASS@HOST[:PORT]/DB or mysql://...");
	}
	if (rc == 0)
		return (0);
	masked = db_url_masked(url);
	xasprintf(cause, "[database] connection %s: %s", masked, why);
	free(masked);
	free(why);
	db_url_free(u);
	return (-1);
}
