/*
 * fuzz_db_url.c: libFuzzer target for db_url_parse and db_url_masked, the
 * [database] connection string (issue 13's MySQL URLs with credentials).
 *
 * The input is the URL.  Properties: a parse either succeeds or gives a
 * cause; a parsed MySQL URL has a user, a host (or a socket), a database
 * and utf8mb4 as its charset; when it has a password, the masked form
 * holds "***" and no longer holds "USER:PASSWORD@" as written; a failed
 * parse's cause never holds the masked-out part.  Any crash, leak or
 * sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_db_url); run: `sh tests/run.sh
 * fuzz`, or ./tests/fuzz/build/fuzz_db_url -max_total_time=60
 * tests/tmp/fuzz-db-url tests/fuzz/corpus/db_url
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* The text between the first ':' after "://" and the last '@', if any. */
static char *
fuzz_secret(const char *url)
{
	const char	*auth, *at, *colon;

	if ((auth = strstr(url, "://")) == NULL)
		return (NULL);
	auth += 3;
	if ((at = strrchr(auth, '@')) == NULL ||
	    (colon = memchr(auth, ':', (size_t)(at - auth))) == NULL ||
	    at - colon < 2)
		return (NULL);
	return (xstrndup(colon, (size_t)(at - colon) + 1));
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct db_url	 u;
	char		*url, *cause = NULL, *masked, *secret;

	if (size > 4096 || memchr(data, '\0', size) != NULL)
		return (0);
	url = xstrndup((const char *)data, size);
	masked = db_url_masked(url);
	secret = fuzz_secret(url);
	/* ":PASSWORD@" is gone from the masked form */
	if (secret != NULL && strstr(masked, ":***@") == NULL)
		abort();
	if (db_url_parse(url, &u, &cause) == 0) {
		if (u.kind == DB_MYSQL && (u.user == NULL ||
		    u.host == NULL || u.database == NULL ||
		    strcmp(u.charset, "utf8mb4") != 0 ||
		    (*u.host == '\0' && u.unix_socket == NULL)))
			abort();
		if (u.kind == DB_SQLITE && (u.path == NULL ||
		    u.path[0] != '/'))
			abort();
		db_url_free(&u);
	} else {
		if (cause == NULL)
			abort();
		if (secret != NULL && strstr(cause, secret) != NULL &&
		    strstr(masked, secret) == NULL)
			abort();
		free(cause);
	}
	free(secret);
	free(masked);
	free(url);
	return (0);
}
