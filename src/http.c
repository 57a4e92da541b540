/*
 * http.c: where a request enters.
 *
 * http_request_cb() is the one general callback of every worker's evhttp:
 * it builds the request context (the client address: the peer, or behind
 * a [server] trusted_proxies peer the X-Forwarded-For client), stops the
 * connection's header timer (worker.c), matches the route table below,
 * authenticates admin routes (auth.c), calls the handler and, when the
 * handler has not answered yet, sets the per-request deadline.  Handlers answer through
 * http_reply_json/_empty/_error, which write the access log line and drop
 * the HTTP side's reference.  A request context is reference-counted: an
 * asynchronous operation (a TokenReview) takes its own reference, so the
 * context lives until both the reply is sent and the operation is done.
 *
 * Runs on worker threads only; each request stays on the thread that
 * accepted it.  Nothing here blocks.
 */
#include <sys/types.h>
#include <sys/queue.h>

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "k8sauth.h"

#define HTTP_ADMIN        0x1 /* X-Auth-Token required */
#define HTTP_LOGIN        0x2 /* counted as a login in the metrics */
#define HTTP_LIST_DEFAULT 100
#define HTTP_LIST_MAX     1000
#define HTTP_COALESCE_MAX 16384 /* one TLS record's payload */
#define HTTP_JSON_STACK   4096  /* a JSON reply printed without malloc */

/* The route table: every URL the server answers. */
static const struct http_route http_routes[] = {
	{ HM_GET, "/", api_version, 0 },
	{ HM_GET, "/v4", api_version, 0 },
	{ HM_GET, "/healthz", api_healthz, 0 },
	{ HM_GET, "/readyz", api_readyz, 0 },

	{ HM_POST, "/v4/k8s_auth", api_instance_create, HTTP_ADMIN },
	{ HM_POST, "/v4/k8s_auth/instances", api_instance_create, HTTP_ADMIN },
	{ HM_GET, "/v4/k8s_auth/instances", api_instance_list, HTTP_ADMIN },
	{ HM_GET, "/v4/k8s_auth/instances/*", api_instance_show, HTTP_ADMIN },
	{ HM_PATCH | HM_PUT, "/v4/k8s_auth/instances/*", api_instance_update,
	    HTTP_ADMIN },
	{ HM_DELETE, "/v4/k8s_auth/instances/*", api_instance_delete,
	    HTTP_ADMIN },

	{ HM_POST, "/v4/k8s_auth/instances/*/roles", api_role_create,
	    HTTP_ADMIN },
	{ HM_GET, "/v4/k8s_auth/instances/*/roles", api_role_list, HTTP_ADMIN },
	{ HM_GET, "/v4/k8s_auth/instances/*/roles/*", api_role_show,
	    HTTP_ADMIN },
	{ HM_PATCH | HM_PUT, "/v4/k8s_auth/instances/*/roles/*",
	    api_role_update, HTTP_ADMIN },
	{ HM_DELETE, "/v4/k8s_auth/instances/*/roles/*", api_role_delete,
	    HTTP_ADMIN },
	{ HM_GET, "/v4/k8s_auth/roles", api_role_list_all, HTTP_ADMIN },

	{ HM_POST, "/v4/k8s_auth/instances/*/auth", api_login, HTTP_LOGIN },
	{ HM_GET, "/metrics", api_metrics, 0 },
	{ HM_GET, "/v3/auth/tokens", api_token_validate, 0 },

	{ HM_POST, "/v4/tokens/restrictions", api_restriction_create,
	    HTTP_ADMIN },
	{ HM_GET, "/v4/tokens/restrictions", api_restriction_list, HTTP_ADMIN },
	{ HM_GET, "/v4/tokens/restrictions/*", api_restriction_show,
	    HTTP_ADMIN },
	{ HM_PATCH | HM_PUT, "/v4/tokens/restrictions/*",
	    api_restriction_update, HTTP_ADMIN },
	{ HM_DELETE, "/v4/tokens/restrictions/*", api_restriction_delete,
	    HTTP_ADMIN },
};
#define HTTP_NROUTES (sizeof http_routes / sizeof *http_routes)

static const struct {
	int code;
	const char *title;
} http_titles[] = {
	{ 200, "OK" },
	{ 201, "Created" },
	{ 204, "No Content" },
	{ 400, "Bad Request" },
	{ 401, "Unauthorized" },
	{ 403, "Forbidden" },
	{ 404, "Not Found" },
	{ 405, "Method Not Allowed" },
	{ 409, "Conflict" },
	{ 413, "Request Entity Too Large" },
	{ 415, "Unsupported Media Type" },
	{ 429, "Too Many Requests" },
	{ 500, "Internal Server Error" },
	{ 502, "Bad Gateway" },
	{ 503, "Service Unavailable" },
	{ 504, "Gateway Timeout" },
};

static const struct {
	enum evhttp_cmd_type cmd;
	enum http_method method;
	const char *name;
} http_methods[] = {
	{ EVHTTP_REQ_GET, HM_GET, "GET" },
	{ EVHTTP_REQ_HEAD, HM_HEAD, "HEAD" },
	{ EVHTTP_REQ_POST, HM_POST, "POST" },
	{ EVHTTP_REQ_PUT, HM_PUT, "PUT" },
	{ EVHTTP_REQ_PATCH, HM_PATCH, "PATCH" },
	{ EVHTTP_REQ_DELETE, HM_DELETE, "DELETE" },
};

/* The reason phrase for a status code. */
const char *
http_status_title(int code)
{
	size_t i;

	for (i = 0; i < sizeof http_titles / sizeof *http_titles; i++) {
		if (http_titles[i].code == code)
			return (http_titles[i].title);
	}
	return (code < 500 ? "Bad Request" : "Internal Server Error");
}

/* The method's name, for logs. */
static const char *
http_method_name(enum http_method m)
{
	size_t i;

	for (i = 0; i < sizeof http_methods / sizeof *http_methods; i++) {
		if (http_methods[i].method == m)
			return (http_methods[i].name);
	}
	return ("?");
}

static void http_park_restore(struct request *);

/* Take a reference on a request context. */
void
http_ref(struct request *r)
{
	r->references++;
}

/* Drop a reference; the last one frees the context. */
void
http_unref(struct request *r)
{
	size_t i;

	if (--r->references > 0)
		return;
	if (r->deadline != NULL)
		event_free(r->deadline);
	if (r->query != NULL) {
		evhttp_clear_headers(r->query);
		free(r->query);
	}
	for (i = 0; i < HTTP_MAX_PARAMS; i++)
		free(r->params[i]);
	caller_clear(&r->caller);
	config_unref(r->cfg);
	snapshot_unref(r->snap);
	free(r->path);
	free(r->facts_message);
	free(r->facts_retry_after);
	free(r->log_note);
	free(r);
}

/*
 * Say what the request did on its access line instead of a line of its
 * own (a login's outcome: one write(2) per login, not two).  The text is
 * formatted now; network-supplied parts must be escaped by the caller.
 * A second note replaces the first.
 */
void
http_log_note(struct request *r, const char *fmt, ...)
{
	va_list ap;

	free(r->log_note);
	va_start(ap, fmt);
	xvasprintf(&r->log_note, fmt, ap);
	va_end(ap);
}

/* A query parameter's value, or NULL. */
const char *
http_query(struct request *r, const char *name)
{
	if (r->query == NULL)
		return (NULL);
	return (evhttp_find_header(r->query, name));
}

/* A request header's value, or NULL. */
const char *
http_header(struct request *r, const char *name)
{
	if (r->req == NULL)
		return (NULL);
	return (
	    evhttp_find_header(evhttp_request_get_input_headers(r->req), name));
}

/* Set a response header (before replying). */
void
http_set_header(struct request *r, const char *name, const char *value)
{
	struct evkeyvalq *h;

	if (r->req == NULL)
		return;
	h = evhttp_request_get_output_headers(r->req);
	evhttp_remove_header(h, name);
	evhttp_add_header(h, name, value);
}

/* Was this request received over TLS? */
static int
http_is_tls(struct request *r)
{
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	if (r->req == NULL ||
	    (evcon = evhttp_request_get_connection(r->req)) == NULL)
		return (0);
	bev = evhttp_connection_get_bufferevent(evcon);
	return (bev != NULL && bufferevent_openssl_get_ssl(bev) != NULL);
}

/* Is a Host header safe to echo into a URL? */
static int
http_host_ok(const char *host)
{
	const char *p;

	if (*host == '\0' || strlen(host) > 255)
		return (0);
	for (p = host; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') ||
			strchr(".-:[]", *p) != NULL))
			return (0);
	}
	return (1);
}

/* The base URL clients use, without a trailing slash (allocated). */
char *
http_public_url(struct request *r)
{
	const char *pub = r->cfg->public_url;
	const char *host;
	char *url;
	size_t n;

	if (pub != NULL) {
		n = strlen(pub);
		while (n > 0 && pub[n - 1] == '/')
			n--;
		return (xstrndup(pub, n));
	}
	host = http_header(r, "Host");
	if (host == NULL || !http_host_ok(host))
		host = "localhost";
	xasprintf(&url, "%s://%s", http_is_tls(r) ? "https" : "http", host);
	return (url);
}

/* Write the access log line and account for the finished request. */
static void
http_finish(struct request *r, int status)
{
	uint64_t tenths; /* of a millisecond, rounded */
	char *path;

	r->status = status;
	r->replied = 1;
	r->req = NULL; /* evhttp owns and frees it once sent */
	if (r->deadline != NULL)
		event_del(r->deadline);
	path = log_escape(r->path, 200);
	/* Integers, not %.1f: a double's printf was a tenth of the line. */
	tenths = (util_monotonic_us() - r->start_us + 50) / 100;
	log_access("access: %s %s %s %d %llu.%u ms%s%s", r->client_ip,
	    http_method_name(r->method), path, status,
	    (unsigned long long)(tenths / 10), (unsigned)(tenths % 10),
	    r->log_note != NULL ? " " : "",
	    r->log_note != NULL ? r->log_note : "");
	free(path);
	metrics_http(r->route, http_method_name(r->method), status);
	if (r->route_flags & HTTP_LOGIN)
		metrics_login(status == 200 ? REASON_NONE : r->reason);
	r->worker->inflight--;
	http_unref(r);
}

/* The request's TLS bufferevent, or NULL (plain HTTP, or gone). */
static struct bufferevent *
http_tls_bev(struct request *r)
{
	struct evhttp_connection *evcon;
	struct bufferevent *bev;

	if ((evcon = evhttp_request_get_connection(r->req)) == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    bufferevent_openssl_get_ssl(bev) == NULL)
		return (NULL);
	return (bev);
}

/*
 * Make a small TLS reply one TLS record and one write(2).  evhttp queues
 * the status line and headers and the body as separate buffer chains, and
 * bufferevent_openssl calls SSL_write once per chain: two or more records,
 * each its own write(2), per reply (a third of /healthz's CPU over HTTPS).
 * Nothing is written yet when evhttp_send_reply returns (the bufferevent
 * writes when the socket is writable), so joining the chains here makes
 * one SSL_write.  Replies over one record's payload are left as they are.
 */
static void
http_coalesce(struct bufferevent *bev)
{
	struct evbuffer *out = bufferevent_get_output(bev);

	if (evbuffer_get_length(out) <= HTTP_COALESCE_MAX)
		evbuffer_pullup(out, -1);
}

/* Send a reply with an optional body; the one exit of every request. */
static void
http_send(struct request *r, int status, struct evbuffer *body)
{
	struct bufferevent *bev;

	if (r->replied)
		fatalx("request replied twice (%s)", r->path);
	if (r->park != NULL)
		http_park_restore(r);
	if (r->req != NULL) {
		worker_conn_replied(r->worker, r->req);
		if (r->worker->srv->stopping)
			http_set_header(r, "Connection", "close");
		bev = http_tls_bev(r);
		evhttp_send_reply(r->req, status, http_status_title(status),
		    body);
		if (bev != NULL)
			http_coalesce(bev);
	}
	http_finish(r, status);
}

/* Reply with a JSON document (takes ownership of body). */
void
http_reply_json(struct request *r, int status, cJSON *body)
{
	struct evbuffer *buf;
	char stack[HTTP_JSON_STACK], *text = NULL;

	/*
	 * Printed into a stack buffer when it fits (a login's or a
	 * validation's answer, /healthz): cJSON's own print buffer grows by
	 * doubling from 256 bytes, four or five reallocations per reply.
	 */
	if (!cJSON_PrintPreallocated(body, stack, (int)sizeof stack, 0))
		text = json_print(body);
	cJSON_Delete(body);
	buf = evbuffer_new();
	if (buf == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(buf, text != NULL ? text : stack,
	    strlen(text != NULL ? text : stack));
	free(text);
	http_set_header(r, "Content-Type", "application/json");
	http_send(r, status, buf);
	evbuffer_free(buf);
}

/* Reply with a prepared body (Content-Type set by the caller). */
void
http_reply_buffer(struct request *r, int status, struct evbuffer *body)
{
	http_send(r, status, body);
}

/* Reply with no body (204, HEAD). */
void
http_reply_empty(struct request *r, int status)
{
	http_send(r, status, NULL);
}

/*
 * Reply with a Keystone-style error body plus our reason code; the status
 * and title are the reason's own (reason.h), so they cannot disagree.
 */
void
http_reply_reason(struct request *r, enum reason reason, const char *fmt, ...)
{
	cJSON *body, *err;
	va_list ap;
	char *msg, *path;
	int status = reason_status(reason);

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	if (status >= 500) {
		path = log_escape(r->path, 200);
		log_warn("%s %s: %d %s: %s", http_method_name(r->method), path,
		    status, reason_name(reason), msg);
		free(path);
	}
	r->reason = reason; /* read by http_finish */
	body = cJSON_CreateObject();
	err = cJSON_AddObjectToObject(body, "error");
	cJSON_AddNumberToObject(err, "code", status);
	cJSON_AddStringToObject(err, "title", http_status_title(status));
	cJSON_AddStringToObject(err, "message", msg);
	cJSON_AddStringToObject(err, "reason", reason_name(reason));
	free(msg);
	if (body == NULL || err == NULL)
		fatalx("cJSON: out of memory");
	http_reply_json(r, status, body);
}

/* Does the Content-Type say JSON? */
static int
http_is_json_type(const char *ct)
{
	size_t n = strlen("application/json");

	if (ct == NULL)
		return (0);
	while (*ct == ' ')
		ct++;
	if (strncasecmp(ct, "application/json", n) != 0)
		return (0);
	return (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/*
 * Parse the body as one JSON object (the caller frees it).  Replies and
 * returns -1 on a wrong media type, a body too large or malformed JSON.
 */
int
http_body_object(struct request *r, cJSON **out)
{
	struct evbuffer *in;
	cJSON *doc;
	char *cause = NULL;
	size_t len;
	const char *data;

	*out = NULL;
	if (!http_is_json_type(http_header(r, "Content-Type"))) {
		http_reply_reason(r, REASON_unsupported_media_type,
		    "the request body must be application/json");
		return (-1);
	}
	in = evhttp_request_get_input_buffer(r->req);
	len = evbuffer_get_length(in);
	if (len > (size_t)r->cfg->max_body_size) {
		http_reply_reason(r, REASON_body_too_large,
		    "the request body is larger than %ld bytes",
		    r->cfg->max_body_size);
		return (-1);
	}
	data = (const char *)evbuffer_pullup(in, -1);
	if ((doc = json_parse(data != NULL ? data : "", len, &cause)) == NULL) {
		http_reply_reason(r, REASON_malformed_json,
		    "the request body is not valid JSON: %s", cause);
		free(cause);
		return (-1);
	}
	if (!cJSON_IsObject(doc)) {
		cJSON_Delete(doc);
		http_reply_reason(r, REASON_malformed_json,
		    "the request body must be a JSON object");
		return (-1);
	}
	*out = doc;
	return (0);
}

/*
 * Parse the body as {"<wrapper>": {...}} and hand back the inner object
 * (detached; the caller frees it).  Replies and returns -1 on any error.
 */
int
http_body_json(struct request *r, const char *wrapper, cJSON **out)
{
	cJSON *doc, *inner;

	*out = NULL;
	if (http_body_object(r, &doc) != 0)
		return (-1);
	if (cJSON_GetArraySize(doc) != 1 ||
	    (inner = cJSON_GetObjectItemCaseSensitive(doc, wrapper)) == NULL) {
		cJSON_Delete(doc);
		http_reply_reason(r, REASON_invalid_wrapper,
		    "the request body must be an object with exactly one member \"%s\"",
		    wrapper);
		return (-1);
	}
	if (!cJSON_IsObject(inner)) {
		cJSON_Delete(doc);
		http_reply_reason(r, REASON_invalid_value,
		    "\"%s\" must be an object", wrapper);
		return (-1);
	}
	*out = cJSON_DetachItemViaPointer(doc, inner);
	cJSON_Delete(doc);
	return (0);
}

/* Is name in a NULL-terminated list? */
static int
http_name_in(const char *name, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++) {
		if (strcmp(name, *list) == 0)
			return (1);
	}
	return (0);
}

/*
 * Read limit, marker and the allowed exact-match filters of a list query
 * (query may be NULL).  Unknown or repeated parameters are refused so
 * that a typo never silently widens a listing: -1 with *cause then.
 */
int
http_list_parse(const struct evkeyvalq *query, const char *const *filters,
    struct store_query *q, char **cause)
{
	struct evkeyval *kv;

	memset(q, 0, sizeof *q);
	q->limit = HTTP_LIST_DEFAULT;
	if (query == NULL)
		return (0);
	TAILQ_FOREACH(kv, query, next)
	{
		if (evhttp_find_header(query, kv->key) != kv->value) {
			xasprintf(cause, "query parameter \"%s\" is repeated",
			    kv->key);
			return (-1);
		}
		if (strlen(kv->value) > 255) {
			xasprintf(cause, "query parameter \"%s\" is too long",
			    kv->key);
			return (-1);
		}
		if (strcmp(kv->key, "limit") == 0) {
			if (util_parse_long(kv->value, 1, HTTP_LIST_MAX,
				&q->limit) != 0) {
				xasprintf(cause,
				    "limit must be a whole number from 1 to %d",
				    HTTP_LIST_MAX);
				return (-1);
			}
		} else if (strcmp(kv->key, "marker") == 0)
			q->marker = kv->value;
		else if (http_name_in(kv->key, filters) &&
		    q->nfilters <
			sizeof q->filter_names / sizeof *q->filter_names) {
			q->filter_names[q->nfilters] = kv->key;
			q->filter_values[q->nfilters++] = kv->value;
		} else {
			xasprintf(cause, "unknown query parameter \"%s\"",
			    kv->key);
			return (-1);
		}
	}
	return (0);
}

/* http_list_parse on the request's query; replies and -1 on error. */
int
http_list_query(struct request *r, const char *const *filters,
    struct store_query *q)
{
	char *cause = NULL;

	if (http_list_parse(r->query, filters, q, &cause) == 0)
		return (0);
	http_reply_reason(r, REASON_invalid_query, "%s", cause);
	free(cause);
	return (-1);
}

/* Append the query without marker, plus an optional new marker. */
static void
http_links_query(struct request *r, struct evbuffer *b, const char *marker)
{
	struct evkeyval *kv;
	char sep = '?';
	char *k, *v;

	if (r->query != NULL) {
		TAILQ_FOREACH(kv, (struct evkeyvalq *)r->query, next)
		{
			if (strcmp(kv->key, "marker") == 0)
				continue;
			k = evhttp_encode_uri(kv->key);
			v = evhttp_encode_uri(kv->value);
			evbuffer_add_printf(b, "%c%s=%s", sep, k, v);
			free(k);
			free(v);
			sep = '&';
		}
	}
	if (marker != NULL) {
		v = evhttp_encode_uri(marker);
		evbuffer_add_printf(b, "%cmarker=%s", sep, v);
		free(v);
	}
}

/* A buffer's contents as a NUL-terminated string; frees the buffer. */
char *
http_buffer_string(struct evbuffer *b)
{
	size_t len = evbuffer_get_length(b);
	char *out;

	out = xmalloc(len + 1);
	evbuffer_remove(b, out, len);
	out[len] = '\0';
	evbuffer_free(b);
	return (out);
}

/* One link: public URL + path + query (allocated). */
static char *
http_link(struct request *r, const char *marker, int keep_marker)
{
	struct evbuffer *b;
	char *base;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	base = http_public_url(r);
	evbuffer_add_printf(b, "%s%s", base, r->path);
	free(base);
	if (keep_marker && http_query(r, "marker") != NULL)
		marker = http_query(r, "marker");
	http_links_query(r, b, marker);
	return (http_buffer_string(b));
}

/* {"self": ..., "next": ... or null} for a list response. */
cJSON *
http_list_links(struct request *r, const char *next_marker, int more)
{
	cJSON *links;
	char *self, *next;

	links = cJSON_CreateObject();
	self = http_link(r, NULL, 1);
	cJSON_AddStringToObject(links, "self", self);
	free(self);
	if (more && next_marker != NULL) {
		next = http_link(r, next_marker, 0);
		cJSON_AddStringToObject(links, "next", next);
		free(next);
	} else
		cJSON_AddNullToObject(links, "next");
	return (links);
}

/* Split a path into at most 16 segments; -1 when it has more. */
static int
http_split(char *path, char **seg, size_t max, size_t *n)
{
	char *p = path, *s;

	*n = 0;
	while ((s = strsep(&p, "/")) != NULL) {
		if (*s == '\0')
			continue;
		if (*n == max)
			return (-1);
		seg[(*n)++] = s;
	}
	return (0);
}

/*
 * The next non-empty segment of a route pattern from *p: its start (NULL
 * at the end) and length; *p moves past it.
 */
static const char *
http_pattern_next(const char **p, size_t *len)
{
	const char *s = *p;

	while (*s == '/')
		s++;
	*len = strcspn(s, "/");
	*p = s + *len;
	return (*len == 0 ? NULL : s);
}

/*
 * Does a route's pattern match the path segments?  Fills params on a
 * match.  The pattern is walked in place: no copy per route and request.
 */
static int
http_route_match(const struct http_route *rt, char **seg, size_t n,
    char **params)
{
	const char *p = rt->pattern, *ps;
	size_t i, len, np = 0;

	for (i = 0; (ps = http_pattern_next(&p, &len)) != NULL; i++) {
		if (i == n)
			return (0);
		if (len == 1 && *ps == '*')
			continue;
		if (strncmp(ps, seg[i], len) != 0 || seg[i][len] != '\0')
			return (0);
	}
	if (i != n)
		return (0);
	p = rt->pattern;
	for (i = 0;
	     params != NULL && (ps = http_pattern_next(&p, &len)) != NULL;
	     i++) {
		if (len == 1 && *ps == '*' && np < HTTP_MAX_PARAMS)
			params[np++] = xstrdup(seg[i]);
	}
	return (1);
}

/* Allow: the methods of a path's routes (GET brings HEAD). */
static void
http_allow_header(struct request *r, int allowed)
{
	static const enum http_method order[] = { HM_GET, HM_HEAD, HM_POST,
		HM_PATCH, HM_PUT, HM_DELETE };
	char allow[64] = "";
	size_t i, n = 0;

	if (allowed & HM_GET)
		allowed |= HM_HEAD;
	for (i = 0; i < sizeof order / sizeof *order; i++) {
		if ((allowed & (int)order[i]) == 0)
			continue;
		n += (size_t)snprintf(allow + n, sizeof allow - n, "%s%s",
		    n == 0 ? "" : ", ", http_method_name(order[i]));
	}
	http_set_header(r, "Allow", allow);
}

/*
 * The route for a decoded path and method (HEAD is GET), or NULL.  On a
 * match params (HTTP_MAX_PARAMS, all NULL) gets a copy of each segment
 * matched by a '*', in order.  *allowed gets the methods of the routes
 * whose pattern matches the path up to the one chosen (all of them when
 * none is): a NULL with *allowed != 0 is a 405, with 0 a 404.  Replies
 * nothing.
 */
const struct http_route *
http_route_lookup(const char *path, enum http_method method, char **params,
    int *allowed)
{
	const struct http_route *rt;
	char *copy, *seg[16];
	size_t n, i;
	int want;

	*allowed = 0;
	want = method == HM_HEAD ? HM_GET : (int)method;
	copy = xstrdup(path);
	if (http_split(copy, seg, 16, &n) != 0) {
		free(copy);
		return (NULL);
	}
	for (i = 0; i < HTTP_NROUTES; i++) {
		rt = &http_routes[i];
		if (!http_route_match(rt, seg, n, NULL))
			continue;
		*allowed |= rt->methods;
		if ((rt->methods & want) == 0)
			continue;
		http_route_match(rt, seg, n, params);
		free(copy);
		return (rt);
	}
	free(copy);
	return (NULL);
}

/* Find the route for a request: the route, or NULL (405 replied here). */
static const struct http_route *
http_route_find(struct request *r)
{
	const struct http_route *rt;
	int allowed;

	rt = http_route_lookup(r->path, r->method, r->params, &allowed);
	if (rt == NULL && allowed != 0) {
		r->route = "405";
		http_allow_header(r, allowed);
		http_reply_reason(r, REASON_method_not_allowed,
		    "%s is not allowed on %s", http_method_name(r->method),
		    r->path);
	}
	return (rt);
}

/* The per-request deadline passed: cancel outbound work, answer 503. */
static void
http_deadline_cb(evutil_socket_t fd, short events, void *arg)
{
	struct request *r = arg;
	char *path;

	if (r->replied)
		return;
	path = log_escape(r->path, 200);
	log_warn("request %s %s exceeded request_timeout",
	    http_method_name(r->method), path);
	free(path);
	http_ref(r); /* cancel may drop the handler's reference */
	if (r->cancel != NULL)
		r->cancel(r);
	if (!r->replied) {
		http_set_header(r, "Retry-After", "1");
		http_reply_reason(r, REASON_request_timeout,
		    "the request did not complete in time");
	}
	http_unref(r);
}

/*
 * Parse a request target as evhttp does (origin or absolute form): *path
 * gets its %-decoded path ("/" when empty), query its decoded parameters.
 * A %00 in the path or the query is refused: it would cut a path or a
 * filter value short.  0, or -1; *path, when not NULL, is the caller's to
 * free either way (the access log shows it), as is query's content.
 */
int
http_target_parse(const char *target, char **path, struct evkeyvalq *query)
{
	struct evhttp_uri *uri;
	const char *p, *q;
	size_t declen = 0;
	int rc = -1;

	*path = NULL;
	uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
	if (uri == NULL)
		return (-1);
	if ((p = evhttp_uri_get_path(uri)) == NULL || *p == '\0')
		p = "/";
	*path = evhttp_uridecode(p, 0, &declen);
	if (*path == NULL || strlen(*path) != declen)
		goto out;
	q = evhttp_uri_get_query(uri);
	if (q != NULL &&
	    (strstr(q, "%00") != NULL || evhttp_parse_query_str(q, query) != 0))
		goto out;
	rc = 0;
out:
	evhttp_uri_free(uri);
	return (rc);
}

/*
 * Every X-Forwarded-For header of a request joined with commas, in order
 * (allocated), or NULL when there is none.  Linear in the header block,
 * however many such headers a client sends.
 */
static char *
http_forwarded_for(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	struct evkeyval *kv;
	char *all;
	size_t len = 0, n, at = 0;

	TAILQ_FOREACH(kv, h, next)
	{
		if (strcasecmp(kv->key, "X-Forwarded-For") == 0)
			len += strlen(kv->value) + 1;
	}
	if (len == 0)
		return (NULL);
	all = xmalloc(len);
	TAILQ_FOREACH(kv, h, next)
	{
		if (strcasecmp(kv->key, "X-Forwarded-For") != 0)
			continue;
		if (at > 0)
			all[at++] = ',';
		n = strlen(kv->value);
		memcpy(all + at, kv->value, n);
		at += n;
	}
	all[at] = '\0';
	return (all);
}

/*
 * The client address: the peer's, or, when the peer is a trusted proxy,
 * the one its X-Forwarded-For names (throttle.c).  client_ip gets it as
 * text, IPv4 as a dotted quad even from a v4-mapped peer.
 */
static void
http_client_address(struct request *r, struct evhttp_request *req,
    const char *peer)
{
	unsigned char peer_addr[sizeof r->client_addr];
	char *xff;

	if (throttle_addr_parse(peer, r->client_addr) != 0)
		return;
	memcpy(peer_addr, r->client_addr, sizeof peer_addr);
	r->client_addr_ok = 1;
	if (r->cfg->trusted_proxy_list != NULL &&
	    throttle_cidrs_match(r->cfg->trusted_proxy_list, r->client_addr)) {
		xff = http_forwarded_for(req);
		throttle_forwarded_for(r->cfg->trusted_proxy_list, xff,
		    r->client_addr);
		free(xff);
	}
	/*
	 * One spelling: a v4-mapped peer is shown as its IPv4 address.  An
	 * IPv4 peer's own text (getnameinfo's dotted quad) is that spelling
	 * already, unless X-Forwarded-For named another client.
	 */
	if (strchr(peer, ':') == NULL &&
	    memcmp(r->client_addr, peer_addr, sizeof peer_addr) == 0)
		return;
	throttle_addr_format(r->client_addr, r->client_ip, sizeof r->client_ip);
}

/* Fill method, path, query and client address from evhttp's request. */
static int
http_request_parse(struct request *r, struct evhttp_request *req)
{
	struct evhttp_connection *evcon;
	const char *target;
	enum evhttp_cmd_type cmd;
	char *peer = NULL;
	ev_uint16_t port = 0;
	size_t i;

	cmd = evhttp_request_get_command(req);
	for (i = 0; i < sizeof http_methods / sizeof *http_methods; i++) {
		if (http_methods[i].cmd == cmd)
			r->method = http_methods[i].method;
	}
	if ((evcon = evhttp_request_get_connection(req)) != NULL) {
		evhttp_connection_get_peer(evcon, &peer, &port);
		if (peer != NULL) {
			snprintf(r->client_ip, sizeof r->client_ip, "%s", peer);
			http_client_address(r, req, peer);
		}
	}
	r->query = xcalloc(1, sizeof(struct evkeyvalq));
	TAILQ_INIT((struct evkeyvalq *)r->query);
	if ((target = evhttp_request_get_uri(req)) == NULL ||
	    http_target_parse(target, &r->path, r->query) != 0)
		return (-1);
	return (r->method == 0 ? -2 : 0);
}

/* Authenticate (admin routes) and run the handler. */
static void
http_dispatch(struct request *r)
{
	const struct http_route *rt;

	if ((rt = http_route_find(r)) == NULL) {
		if (!r->replied)
			http_reply_reason(r, REASON_not_found,
			    "no such resource");
		return;
	}
	r->route = rt->pattern;
	r->route_flags = rt->flags;
	if ((rt->flags & HTTP_ADMIN) == 0) {
		rt->handler(r);
		return;
	}
	/*
	 * Identifying the caller may need a round trip to Keystone: then
	 * auth_caller() parks the request and runs the handler later.
	 */
	if (auth_caller(r, rt->handler) == 0)
		rt->handler(r);
}

/*
 * Start the request's deadline: [server] request_timeout from its start.
 * Only a request its handler left unanswered (waiting for a review, a
 * Keystone call, the database) needs the timer; a handler that answers at
 * once (/healthz, a cached login) never had a chance to miss it, as the
 * timer could not fire while the handler ran, so those requests pay no
 * timer (evtimer_new/add/del/free: about 1,000 instructions each).
 */
static void
http_arm_deadline(struct request *r)
{
	struct timeval tv;
	uint64_t limit, spent;

	r->deadline = evtimer_new(r->worker->base, http_deadline_cb, r);
	if (r->deadline == NULL)
		fatalx("evtimer_new failed");
	limit = (uint64_t)r->worker->cfg->request_timeout * 1000000;
	spent = util_monotonic_us() - r->start_us;
	spent = spent < limit ? limit - spent : 0;
	tv.tv_sec = (time_t)(spent / 1000000);
	tv.tv_usec = (suseconds_t)(spent % 1000000);
	evtimer_add(r->deadline, &tv);
}

/* evhttp's general callback: every request enters here. */
void
http_request_cb(struct evhttp_request *req, void *arg)
{
	struct worker *w = arg;
	struct request *r;
	int rc;

	r = xcalloc(1, sizeof *r);
	r->worker = w;
	r->cfg = server_config_ref();
	r->snap = snapshot_get();
	r->req = req;
	r->references = 1;
	r->start_us = util_monotonic_us();
	w->inflight++;
	worker_conn_headed(w, req);
	rc = http_request_parse(r, req);
	if (r->path == NULL)
		r->path = xstrdup("?");
	if (rc != 0) {
		if (rc == -2)
			http_reply_reason(r, REASON_method_not_allowed,
			    "method not supported");
		else
			http_reply_reason(r, REASON_invalid_request,
			    "the request URL cannot be parsed");
		return;
	}
	http_ref(r); /* keep r alive while the handler runs */
	http_dispatch(r);
	if (!r->replied)
		http_arm_deadline(r);
	http_unref(r);
}

/* What a parked request saved of evhttp's bufferevent callbacks. */
struct http_park {
	struct bufferevent *bev;
	bufferevent_data_cb readcb;
	bufferevent_data_cb writecb;
	bufferevent_event_cb eventcb;
	void *cbarg;
};

/* Parked: data from the client waits in the buffer for evhttp. */
static void
http_park_read_cb(struct bufferevent *bev, void *arg)
{
	bufferevent_disable(bev, EV_READ);
}

/* Give the bufferevent back to evhttp. */
static void
http_park_restore(struct request *r)
{
	struct http_park *p = r->park;

	bufferevent_disable(p->bev, EV_READ);
	bufferevent_setcb(p->bev, p->readcb, p->writecb, p->eventcb, p->cbarg);
	free(p);
	r->park = NULL;
}

/*
 * The client closed its connection (or it failed) while its request was
 * parked: let evhttp fail the connection, which detaches the request, then
 * tell the handler, which cancels its work and answers into the void.
 */
static void
http_park_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct request *r = arg;
	bufferevent_event_cb eventcb = ((struct http_park *)r->park)->eventcb;
	void *cbarg = ((struct http_park *)r->park)->cbarg;
	char *path;

	if ((what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) == 0)
		return;
	http_park_restore(r);
	path = log_escape(r->path, 200);
	log_info("%s: client went away during %s %s", r->client_ip,
	    http_method_name(r->method), path);
	free(path);
	http_ref(r);
	if (eventcb != NULL)
		eventcb(bev, what, cbarg);
	if (!r->replied && r->gone != NULL)
		r->gone(r);
	http_unref(r);
}

/*
 * Park a request while asynchronous work runs: watch its connection so a
 * client that disconnects is noticed (evhttp stops reading meanwhile).
 */
void
http_park(struct request *r)
{
	struct evhttp_connection *evcon;
	struct http_park *p;

	if (r->req == NULL || r->park != NULL ||
	    (evcon = evhttp_request_get_connection(r->req)) == NULL)
		return;
	p = xcalloc(1, sizeof *p);
	p->bev = evhttp_connection_get_bufferevent(evcon);
	bufferevent_getcb(p->bev, &p->readcb, &p->writecb, &p->eventcb,
	    &p->cbarg);
	r->park = p;
	bufferevent_setcb(p->bev, http_park_read_cb, p->writecb,
	    http_park_event_cb, r);
	bufferevent_enable(p->bev, EV_READ);
}
