/*
 * fk_http.c: the evhttp front of the fake API server.
 *
 * Owns the evhttp object: its limits, the one general callback that routes
 * a request to the TokenReview handler, the control API or a 404 Status,
 * and the reply helpers.  Every reply carries the headers kube-apiserver
 * sends (Content-Type, Cache-Control: no-cache, private, Audit-Id) and
 * writes one log line (method, path, status, a short note; never a token).
 * Single-threaded (the event loop); never blocks.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "k8sauth.h"
#include "fake_k8s.h"

#define FK_HTTP_TOKENREVIEWS "/apis/authentication.k8s.io/v1/tokenreviews"

static const char	fk_http_json_type[] = "application/json";

/* The request method as text. */
static const char *
fk_http_method(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_GET:
		return ("GET");
	case EVHTTP_REQ_POST:
		return ("POST");
	case EVHTTP_REQ_PUT:
		return ("PUT");
	case EVHTTP_REQ_DELETE:
		return ("DELETE");
	case EVHTTP_REQ_PATCH:
		return ("PATCH");
	case EVHTTP_REQ_HEAD:
		return ("HEAD");
	default:
		return ("OTHER");
	}
}

/* Log one line for a request: method, escaped path, status, note. */
void
fk_http_log(struct evhttp_request *req, int code, const char *note)
{
	char	*path, *esc;

	path = log_escape(evhttp_request_get_uri(req), 200);
	esc = log_escape(note != NULL ? note : "", 512);
	log_info("%s %s %d%s%s", fk_http_method(req), path, code,
	    *esc != '\0' ? " " : "", esc);
	free(esc);
	free(path);
}

/* The Kubernetes reply headers. */
static void
fk_http_headers(struct evhttp_request *req, const char *type)
{
	struct evkeyvalq	*h = evhttp_request_get_output_headers(req);
	char			 audit[FK_UID_LEN + 1];

	fk_state_new_uid(audit);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-cache, private");
	evhttp_add_header(h, "Audit-Id", audit);
}

/* Reply with a JSON document and log; obj is consumed. */
static void
fk_http_send(struct evhttp_request *req, int code, cJSON *obj,
    const char *note)
{
	struct evbuffer	*b;
	char		*text;

	if ((text = cJSON_PrintUnformatted(obj)) == NULL)
		fatalx("cJSON_PrintUnformatted: out of memory");
	cJSON_Delete(obj);
	fk_http_headers(req, fk_http_json_type);
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(b, text, strlen(text));
	evbuffer_add(b, "\n", 1);
	cJSON_free(text);
	fk_http_log(req, code, note);
	evhttp_send_reply(req, code, code == 201 ? "Created" : NULL, b);
	evbuffer_free(b);
}

/* Reply with a JSON document; obj is consumed. */
void
fk_http_reply_json(struct evhttp_request *req, int code, cJSON *obj,
    const char *note)
{
	fk_http_send(req, code, obj, note);
}

/*
 * Reply with a meta.k8s.io/v1 Status in the field order kube-apiserver
 * writes: kind, apiVersion, metadata, status, message, reason, details,
 * code.  details (may be NULL) is consumed.
 */
void
fk_http_reply_status(struct evhttp_request *req, int code,
    const char *reason, const char *message, cJSON *details,
    const char *note)
{
	cJSON	*st = cJSON_CreateObject();

	cJSON_AddStringToObject(st, "kind", "Status");
	cJSON_AddStringToObject(st, "apiVersion", "v1");
	cJSON_AddItemToObject(st, "metadata", cJSON_CreateObject());
	cJSON_AddStringToObject(st, "status", "Failure");
	cJSON_AddStringToObject(st, "message", message);
	cJSON_AddStringToObject(st, "reason", reason);
	if (details != NULL)
		cJSON_AddItemToObject(st, "details", details);
	cJSON_AddNumberToObject(st, "code", code);
	fk_http_send(req, code, st, note != NULL ? note : reason);
}

/* The 404 kube-apiserver gives for a path it does not serve. */
void
fk_http_reply_not_found(struct evhttp_request *req)
{
	fk_http_reply_status(req, 404, "NotFound",
	    "the server could not find the requested resource",
	    cJSON_CreateObject(), NULL);
}

/* Reply with plain text. */
static void
fk_http_reply_text(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer	*b;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(b, text, strlen(text));
	fk_http_headers(req, "text/plain; charset=utf-8");
	fk_http_log(req, code, NULL);
	evhttp_send_reply(req, code, NULL, b);
	evbuffer_free(b);
}

/*
 * Parse the request body as JSON.  0 with *out (the caller frees), or -1
 * with *cause when it is empty or not JSON.
 */
int
fk_http_body_json(struct evhttp_request *req, cJSON **out, char **cause)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	size_t		 len = evbuffer_get_length(in);
	const char	*data, *err;

	*out = NULL;
	if (len == 0) {
		*cause = xstrdup("unexpected end of JSON input");
		return (-1);
	}
	if ((data = (const char *)evbuffer_pullup(in, -1)) == NULL)
		fatalx("evbuffer_pullup failed");
	if ((*out = cJSON_ParseWithLength(data, len)) == NULL) {
		err = cJSON_GetErrorPtr();
		xasprintf(cause, "invalid character at offset %zu",
		    err != NULL && err >= data && err <= data + len ?
		    (size_t)(err - data) : (size_t)0);
		return (-1);
	}
	return (0);
}

/* The request path without the query, or "" when unparsable. */
static const char *
fk_http_path(struct evhttp_request *req)
{
	const struct evhttp_uri	*uri;
	const char		*path = NULL;

	if ((uri = evhttp_request_get_evhttp_uri(req)) != NULL)
		path = evhttp_uri_get_path(uri);
	return (path != NULL ? path : "");
}

/* The general callback: route one request. */
static void
fk_http_route_cb(struct evhttp_request *req, void *arg)
{
	const char	*path = fk_http_path(req);

	fk_stats.requests++;
	if (strcmp(path, FK_HTTP_TOKENREVIEWS) == 0) {
		fk_review_cb(req);
		return;
	}
	if (strcmp(path, "/.well-known/openid-configuration") == 0 ||
	    strcmp(path, "/openid/v1/jwks") == 0) {
		fk_oidc_cb(req, path[1] == 'o');
		return;
	}
	if (strcmp(path, "/healthz") == 0 &&
	    evhttp_request_get_command(req) == EVHTTP_REQ_GET) {
		fk_http_reply_text(req, 200, "ok");
		return;
	}
	if (strncmp(path, "/api/v1/namespaces/", 19) == 0) {
		fk_objects_cb(req, path);
		return;
	}
	if (strncmp(path, "/_test/", 7) == 0 && (fk_objects_control(req,
	    path + 7) == 0 || fk_control_route(req, path + 7) == 0))
		return;
	fk_http_reply_not_found(req);
}

/* Create the evhttp object with its limits and router. */
struct evhttp *
fk_http_new(struct event_base *base)
{
	struct evhttp	*http;

	if ((http = evhttp_new(base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_set_max_headers_size(http, 64 * 1024);
	evhttp_set_max_body_size(http, FK_MAX_BODY);
	evhttp_set_timeout(http, 120);
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH |
	    EVHTTP_REQ_HEAD);
	evhttp_set_default_content_type(http, fk_http_json_type);
	evhttp_set_gencb(http, fk_http_route_cb, NULL);
	return (http);
}
