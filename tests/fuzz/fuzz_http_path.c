/*
 * fuzz_http_path.c: libFuzzer target for where a request's URL is
 * understood (http.c): http_target_parse (evhttp's URI parser with its
 * own flags, %-decoding of the path, the %00 refusal, the query
 * parameters), http_route_lookup (the route table, its '*' parameters
 * and the methods allowed on a path) and http_list_parse (limit, marker
 * and the exact-match filters of a list request).
 *
 * The first byte picks the method (bits 0-2) and the filters a list
 * accepts (bit 3: an instance listing's or a role listing's); the rest,
 * cut at a NUL as evhttp's request line is, is the request target.
 *
 * Asserted: a target evhttp cannot parse, or whose path or query holds
 * %00, is refused; an accepted path is the raw path decoded by the
 * fuzzer's own %XX decoder, and holds no NUL; a matched route allows the
 * method, its pattern has as many '*' as the route gave parameters,
 * each non-empty and without '/', and the pattern with the parameters
 * put back is the path without empty segments; with no route, the
 * methods reported allowed (the Allow header of a 405) do not include
 * the one asked, and each of them finds a route on that path; a list
 * query accepted has a limit of 1..1000, at most 8 distinct known
 * filters and values of at most 255 bytes, a refused one a cause.  Any
 * crash, leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_http_path); run: `sh
 * tests/run.sh fuzz`, or by hand:
 *
 *	./tests/fuzz/build/fuzz_http_path -max_total_time=60 \
 *	    tests/tmp/fuzz-http-path tests/fuzz/corpus/http_path
 */
#include <sys/types.h>
#include <sys/queue.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const enum http_method fuzz_methods[] = { HM_GET, HM_HEAD, HM_POST,
	HM_PUT, HM_PATCH, HM_DELETE, HM_GET, HM_POST };
static const char *const fuzz_filters_instance[] = { "domain_id", "name",
	"enabled", NULL };
static const char *const fuzz_filters_role[] = { "auth_instance_id",
	"domain_id", "name", NULL };

/* Log errors only. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	return (0);
}

static int
fuzz_hex(int c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	if (c >= 'A' && c <= 'F')
		return (c - 'A' + 10);
	return (-1);
}

/* %XX decoding, '+' kept; *len gets the length (NULs included). */
static char *
fuzz_decode(const char *s, size_t *len)
{
	char	*out;
	size_t	 n = 0;

	out = xmalloc(strlen(s) + 1);
	while (*s != '\0') {
		if (s[0] == '%' && fuzz_hex(s[1]) >= 0 && fuzz_hex(s[2]) >= 0) {
			out[n++] = (char)(fuzz_hex(s[1]) * 16 + fuzz_hex(s[2]));
			s += 3;
		} else
			out[n++] = *s++;
	}
	out[n] = '\0';
	*len = n;
	return (out);
}

/*
 * Check the parse of target against evhttp's own view of it: refused
 * when evhttp refuses it or its path or query holds %00, and an accepted
 * path is the raw path decoded.
 */
static void
fuzz_check_target(const char *target, int rc, const char *path)
{
	struct evhttp_uri	*uri;
	const char		*p, *q;
	char			*dec;
	size_t			 len;

	uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
	if (uri == NULL) {
		if (rc != -1)
			abort();
		return;
	}
	if ((p = evhttp_uri_get_path(uri)) == NULL || *p == '\0')
		p = "/";
	q = evhttp_uri_get_query(uri);
	if ((strstr(p, "%00") != NULL ||
	    (q != NULL && strstr(q, "%00") != NULL)) && rc != -1)
		abort();
	if (rc == 0) {
		dec = fuzz_decode(p, &len);
		if (path == NULL || len == 0 || strlen(path) != len ||
		    memcmp(dec, path, len) != 0)
			abort();
		free(dec);
	}
	evhttp_uri_free(uri);
}

/* The path without empty segments, as "/a/b" ("/" when none). */
static char *
fuzz_normal(const char *path)
{
	char		*out;
	size_t		 n = 0;
	const char	*s;

	out = xmalloc(strlen(path) + 2);
	for (s = path; *s != '\0'; s++) {
		if (*s == '/')
			continue;
		if (s == path || s[-1] == '/')
			out[n++] = '/';
		out[n++] = *s;
	}
	if (n == 0)
		out[n++] = '/';
	out[n] = '\0';
	return (out);
}

/* The pattern with its '*' replaced by params, in order. */
static char *
fuzz_fill(const char *pattern, char **params)
{
	char	*out = xstrdup(""), *next;
	size_t	 np = 0;

	for (; *pattern != '\0'; pattern++) {
		if (*pattern == '*') {
			if (np == HTTP_MAX_PARAMS || params[np] == NULL)
				abort();
			xasprintf(&next, "%s%s", out, params[np++]);
		} else
			xasprintf(&next, "%s%c", out, *pattern);
		free(out);
		out = next;
	}
	if (np < HTTP_MAX_PARAMS && params[np] != NULL)
		abort();
	return (out);
}

static void
fuzz_params_free(char **params)
{
	size_t	i;

	for (i = 0; i < HTTP_MAX_PARAMS; i++) {
		free(params[i]);
		params[i] = NULL;
	}
}

/* Route lookup of path for method, checked. */
static void
fuzz_route(const char *path, enum http_method method)
{
	const struct http_route	*rt, *other;
	char			*params[HTTP_MAX_PARAMS] = { NULL };
	char			*filled, *normal;
	int			 want, allowed, again;
	size_t			 i;

	want = method == HM_HEAD ? HM_GET : (int)method;
	rt = http_route_lookup(path, method, params, &allowed);
	if (rt == NULL) {
		for (i = 0; i < HTTP_MAX_PARAMS; i++) {
			if (params[i] != NULL)
				abort();
		}
		if ((allowed & want) != 0)
			abort();
		/* Every method of the Allow header finds a route here. */
		for (i = 0; i < 6; i++) {
			if ((allowed & fuzz_methods[i]) == 0)
				continue;
			other = http_route_lookup(path, fuzz_methods[i],
			    params, &again);
			if (other == NULL)
				abort();
			fuzz_params_free(params);
		}
		return;
	}
	if ((rt->methods & want) == 0 || (allowed & rt->methods) == 0)
		abort();
	for (i = 0; i < HTTP_MAX_PARAMS && params[i] != NULL; i++) {
		if (params[i][0] == '\0' || strchr(params[i], '/') != NULL)
			abort();
	}
	filled = fuzz_fill(rt->pattern, params);
	normal = fuzz_normal(path);
	if (strcmp(filled, normal) != 0)
		abort();
	free(normal);
	free(filled);
	fuzz_params_free(params);
}

/* A list query's filters, checked. */
static void
fuzz_list(const struct evkeyvalq *query, const char *const *filters)
{
	struct store_query	 q;
	char			*cause = NULL;
	size_t			 i, j;
	int			 known;

	if (http_list_parse(query, filters, &q, &cause) != 0) {
		if (cause == NULL || (strncmp(cause, "query parameter \"",
		    17) != 0 && strncmp(cause, "unknown query parameter \"",
		    25) != 0 && strncmp(cause, "limit ", 6) != 0))
			abort();
		free(cause);
		return;
	}
	if (cause != NULL || q.limit < 1 || q.limit > 1000 ||
	    q.nfilters > 8 || (q.marker != NULL && strlen(q.marker) > 255))
		abort();
	for (i = 0; i < q.nfilters; i++) {
		known = 0;
		for (j = 0; filters[j] != NULL; j++)
			known |= strcmp(filters[j], q.filter_names[i]) == 0;
		if (!known || strlen(q.filter_values[i]) > 255)
			abort();
		for (j = 0; j < i; j++) {
			if (strcmp(q.filter_names[i], q.filter_names[j]) == 0)
				abort();
		}
	}
}

/* One input: a selector byte and a request target. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evkeyvalq	 query;
	char			*target, *path = NULL;
	int			 rc;

	if (size == 0 || size > 64 * 1024)
		return (0);
	target = xstrndup((const char *)data + 1, size - 1);
	TAILQ_INIT(&query);
	rc = http_target_parse(target, &path, &query);
	if (rc != 0 && rc != -1)
		abort();
	fuzz_check_target(target, rc, path);
	if (rc == 0) {
		fuzz_route(path, fuzz_methods[data[0] & 7]);
		fuzz_list(&query, (data[0] & 8) != 0 ? fuzz_filters_role :
		    fuzz_filters_instance);
	}
	evhttp_clear_headers(&query);
	free(path);
	free(target);
	return (0);
}
