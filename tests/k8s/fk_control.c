/*
 * fk_control.c: the /_test/ control API (no authentication; loopback
 * test use only).
 *
 * Creates and deletes service accounts and pods, grants and revokes
 * create tokenreviews, mints tokens, sets faults and serves counters.
 * Bodies are JSON objects; errors are Status objects like the rest of the
 * server.  Names are checked against the Kubernetes rules (DNS-1123
 * labels for namespaces, subdomains for other names) so nothing a real
 * cluster would refuse is ever handed out.  Single-threaded; never blocks.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>

#include "k8sauth.h"
#include "fake_k8s.h"

/* Is s a DNS-1123 label (max 63) or subdomain (max 253)? */
static int
fk_control_valid_name(const char *s, int label)
{
	size_t	 i, n = strlen(s);

	if (n == 0 || n > (label ? 63u : 253u) ||
	    !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return (0);
	for (i = 0; i < n; i++) {
		if (!(islower((unsigned char)s[i]) ||
		    isdigit((unsigned char)s[i]) || s[i] == '-' ||
		    (!label && s[i] == '.')))
			return (0);
	}
	return (1);
}

/* Reply 400 BadRequest. */
static void
fk_control_bad(struct evhttp_request *req, const char *message)
{
	fk_http_reply_status(req, 400, "BadRequest", message, NULL, NULL);
}

/* Reply 404 '<kind> "<name>" not found'. */
static void
fk_control_missing(struct evhttp_request *req, const char *kind,
    const char *name)
{
	char	*msg;

	xasprintf(&msg, "%s \"%s\" not found", kind, name);
	fk_http_reply_status(req, 404, "NotFound", msg, NULL, NULL);
	free(msg);
}

/* Reply 409 '<kind> "<name>" already exists'. */
static void
fk_control_exists(struct evhttp_request *req, const char *kind,
    const char *name)
{
	char	*msg;

	xasprintf(&msg, "%s \"%s\" already exists", kind, name);
	fk_http_reply_status(req, 409, "AlreadyExists", msg, NULL, NULL);
	free(msg);
}

/* Reply 200 {}. */
static void
fk_control_empty(struct evhttp_request *req)
{
	fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

/*
 * Read the body as an object; NULL after a 400.  The object is the
 * caller's to free.
 */
static cJSON *
fk_control_body(struct evhttp_request *req)
{
	cJSON	*body = NULL;
	char	*cause = NULL, *msg;

	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    !cJSON_IsObject(body)) {
		xasprintf(&msg, "body must be a JSON object: %s",
		    cause != NULL ? cause : "wrong type");
		fk_control_bad(req, msg);
		free(msg);
		free(cause);
		cJSON_Delete(body);
		return (NULL);
	}
	return (body);
}

/*
 * A required (or, with dflt, optional) name member of body, checked
 * against the Kubernetes rules; NULL after a 400.
 */
static const char *
fk_control_name(struct evhttp_request *req, const cJSON *body,
    const char *key, int label, const char *dflt)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(body, key);
	char		*msg;

	if (v == NULL && dflt != NULL)
		return (dflt);
	if (cJSON_IsString(v) && fk_control_valid_name(v->valuestring, label))
		return (v->valuestring);
	xasprintf(&msg, "%s must be a %s", key, label ?
	    "DNS-1123 label (lower case alphanumerics and '-', max 63)" :
	    "DNS-1123 subdomain (lower case alphanumerics, '-' and '.', "
	    "max 253)");
	fk_control_bad(req, msg);
	free(msg);
	return (NULL);
}

/* Split "NS/NAME" into two names; 0 or -1. */
static int
fk_control_split(const char *rest, char **ns, char **name)
{
	const char	*slash = strchr(rest, '/');

	if (slash == NULL || strchr(slash + 1, '/') != NULL)
		return (-1);
	*ns = xstrndup(rest, (size_t)(slash - rest));
	*name = xstrdup(slash + 1);
	if (!fk_control_valid_name(*ns, 1) ||
	    !fk_control_valid_name(*name, 0)) {
		free(*ns);
		free(*name);
		return (-1);
	}
	return (0);
}

/* POST /_test/serviceaccounts {"namespace","name"} -> {"uid"}. */
static void
fk_control_sa_create(struct evhttp_request *req)
{
	cJSON			*body, *out;
	const char		*ns, *name;
	const struct fk_sa	*sa;

	if ((body = fk_control_body(req)) == NULL)
		return;
	if ((ns = fk_control_name(req, body, "namespace", 1, NULL)) != NULL &&
	    (name = fk_control_name(req, body, "name", 0, NULL)) != NULL) {
		if ((sa = fk_state_sa_add(ns, name)) == NULL)
			fk_control_exists(req, "serviceaccounts", name);
		else {
			out = cJSON_CreateObject();
			cJSON_AddStringToObject(out, "namespace", sa->ns);
			cJSON_AddStringToObject(out, "name", sa->name);
			cJSON_AddStringToObject(out, "uid", sa->uid);
			fk_http_reply_json(req, 201, out, NULL);
		}
	}
	cJSON_Delete(body);
}

/* POST /_test/pods {"namespace","name","service_account","node"}. */
static void
fk_control_pod_create(struct evhttp_request *req)
{
	cJSON			*body, *out;
	const char		*ns, *name, *san, *node;
	const struct fk_pod	*pod;

	if ((body = fk_control_body(req)) == NULL)
		return;
	if ((ns = fk_control_name(req, body, "namespace", 1, NULL)) == NULL ||
	    (name = fk_control_name(req, body, "name", 0, NULL)) == NULL ||
	    (san = fk_control_name(req, body, "service_account", 0,
	    "default")) == NULL ||
	    (node = fk_control_name(req, body, "node", 0, "node-1")) == NULL)
		goto out;
	if (fk_state_sa_get(ns, san) == NULL)
		fk_control_missing(req, "serviceaccounts", san);
	else if ((pod = fk_state_pod_add(ns, name, san, node)) == NULL)
		fk_control_exists(req, "pods", name);
	else {
		out = cJSON_CreateObject();
		cJSON_AddStringToObject(out, "uid", pod->uid);
		cJSON_AddStringToObject(out, "node", pod->node);
		cJSON_AddStringToObject(out, "node_uid", pod->node_uid);
		fk_http_reply_json(req, 201, out, NULL);
	}
out:
	cJSON_Delete(body);
}

/* POST /_test/reviewers {"namespace","name"}: bind auth-delegator. */
static void
fk_control_reviewer_grant(struct evhttp_request *req)
{
	cJSON		*body;
	const char	*ns, *name;

	if ((body = fk_control_body(req)) == NULL)
		return;
	if ((ns = fk_control_name(req, body, "namespace", 1, NULL)) != NULL &&
	    (name = fk_control_name(req, body, "name", 0, NULL)) != NULL) {
		fk_state_reviewer_set(ns, name, 1);
		fk_control_empty(req);
	}
	cJSON_Delete(body);
}

/* Read the optional token options; 0 or -1 after a 400. */
static int
fk_control_token_opts(struct evhttp_request *req, const cJSON *body,
    struct fk_mint *m)
{
	const cJSON	*v;

	v = cJSON_GetObjectItemCaseSensitive(body, "expires_in");
	if (v != NULL && cJSON_IsNumber(v))
		m->expires_in = (long)v->valuedouble;
	else if (v != NULL)
		goto bad;
	v = cJSON_GetObjectItemCaseSensitive(body, "not_before_offset");
	if (v != NULL && cJSON_IsNumber(v))
		m->nbf_offset = (long)v->valuedouble;
	else if (v != NULL)
		goto bad;
	v = cJSON_GetObjectItemCaseSensitive(body, "legacy");
	if (v != NULL && !cJSON_IsBool(v))
		goto bad;
	m->legacy = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(body, "bad_signature");
	if (v != NULL && !cJSON_IsBool(v))
		goto bad;
	m->foreign_key = cJSON_IsTrue(v);
	v = cJSON_GetObjectItemCaseSensitive(body, "issuer");
	if (v != NULL && !cJSON_IsString(v))
		goto bad;
	m->issuer = v != NULL ? v->valuestring : NULL;
	v = cJSON_GetObjectItemCaseSensitive(body, "alg");
	if (v != NULL && (!cJSON_IsString(v) || (strcmp(v->valuestring,
	    "RS256") != 0 && strcmp(v->valuestring, "ES256") != 0)))
		goto bad;
	m->es256 = v != NULL && strcmp(v->valuestring, "ES256") == 0;
	if (m->expires_in < -315360000 || m->expires_in > 315360000 ||
	    m->nbf_offset < -315360000 || m->nbf_offset > 315360000)
		goto bad;
	return (0);
bad:
	fk_control_bad(req, "expires_in and not_before_offset must be numbers "
	    "(|n| <= 10 years), legacy and bad_signature booleans, issuer a "
	    "string, alg RS256 or ES256");
	return (-1);
}

/* The audiences option: a non-empty list of strings, or the API's. */
static cJSON *
fk_control_token_auds(struct evhttp_request *req, const cJSON *body)
{
	const cJSON	*a = cJSON_GetObjectItemCaseSensitive(body,
			    "audiences"), *v;

	if (a == NULL || (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 0))
		return (cJSON_CreateStringArray((const char *const *)
		    fk_config.api_auds, (int)fk_config.napi_auds));
	if (!cJSON_IsArray(a))
		goto bad;
	cJSON_ArrayForEach(v, a) {
		if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
			goto bad;
	}
	return (cJSON_Duplicate(a, 1));
bad:
	fk_control_bad(req, "audiences must be a list of non-empty strings");
	return (NULL);
}

/* Resolve the bound pod, if any; 0 or -1 after an error reply. */
static int
fk_control_token_pod(struct evhttp_request *req, const cJSON *body,
    struct fk_mint *m)
{
	const char	*pod;

	if (cJSON_GetObjectItemCaseSensitive(body, "pod") == NULL)
		return (0);
	if ((pod = fk_control_name(req, body, "pod", 0, NULL)) == NULL)
		return (-1);
	if ((m->pod = fk_state_pod_get(m->ns, pod)) == NULL) {
		fk_control_missing(req, "pods", pod);
		return (-1);
	}
	if (strcmp(m->pod->sa, m->sa) != 0 || m->legacy) {
		fk_control_bad(req, m->legacy ? "a legacy token cannot be "
		    "bound to a pod" : "cannot bind token to a pod running as "
		    "a different service account");
		return (-1);
	}
	return (0);
}

/* POST /_test/tokens -> {"token"}. */
static void
fk_control_token(struct evhttp_request *req)
{
	struct fk_mint		 m;
	const struct fk_sa	*sa;
	cJSON			*body, *out;
	char			*jwt, *cause = NULL;

	memset(&m, 0, sizeof m);
	m.expires_in = 3600;
	if ((body = fk_control_body(req)) == NULL)
		return;
	if ((m.ns = fk_control_name(req, body, "namespace", 1, NULL)) ==
	    NULL || (m.sa = fk_control_name(req, body, "service_account", 0,
	    NULL)) == NULL || fk_control_token_opts(req, body, &m) != 0)
		goto out;
	if ((sa = fk_state_sa_get(m.ns, m.sa)) == NULL) {
		fk_control_missing(req, "serviceaccounts", m.sa);
		goto out;
	}
	m.sa_uid = sa->uid;
	if (fk_control_token_pod(req, body, &m) != 0 ||
	    (m.auds = fk_control_token_auds(req, body)) == NULL)
		goto out;
	if ((jwt = fk_jwt_mint(&m, &cause)) == NULL) {
		fk_http_reply_status(req, 500, "InternalError", cause, NULL,
		    NULL);
		free(cause);
		goto out;
	}
	fk_stats.tokens_issued++;
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "token", jwt);
	freezero_str(jwt);
	fk_http_reply_json(req, 201, out, NULL);
out:
	cJSON_Delete(m.auds);
	cJSON_Delete(body);
}

/* GET /_test/stats. */
static void
fk_control_stats(struct evhttp_request *req)
{
	cJSON	*o = cJSON_CreateObject();

#define FK_STAT(name) cJSON_AddNumberToObject(o, #name, \
	(double)fk_stats.name)
	FK_STAT(requests);
	FK_STAT(connections);
	FK_STAT(tokenreviews);
	FK_STAT(reviewed);
	FK_STAT(authenticated);
	FK_STAT(unauthenticated);
	FK_STAT(unauthorized);
	FK_STAT(forbidden);
	FK_STAT(bad_request);
	FK_STAT(faulted);
	FK_STAT(tokens_issued);
	FK_STAT(discovery);
	FK_STAT(jwks);
#undef FK_STAT
	cJSON_AddItemToObject(o, "fault", fk_fault_describe());
	fk_http_reply_json(req, 200, o, NULL);
}

/* GET or DELETE /_test/serviceaccounts/NS/NAME. */
static void
fk_control_sa_item(struct evhttp_request *req, const char *ns,
    const char *name)
{
	const struct fk_sa	*sa;
	cJSON			*out;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_DELETE) {
		if (fk_state_sa_del(ns, name) != 0)
			fk_control_missing(req, "serviceaccounts", name);
		else
			fk_control_empty(req);
		return;
	}
	if ((sa = fk_state_sa_get(ns, name)) == NULL) {
		fk_control_missing(req, "serviceaccounts", name);
		return;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "namespace", sa->ns);
	cJSON_AddStringToObject(out, "name", sa->name);
	cJSON_AddStringToObject(out, "uid", sa->uid);
	cJSON_AddBoolToObject(out, "reviewer",
	    fk_state_reviewer_get(ns, name));
	fk_http_reply_json(req, 200, out, NULL);
}

/* DELETE /_test/pods/NS/NAME and /_test/reviewers/NS/NAME. */
static void
fk_control_item(struct evhttp_request *req, const char *kind,
    const char *ns, const char *name)
{
	int	 rc;

	if (strcmp(kind, "serviceaccounts") == 0) {
		fk_control_sa_item(req, ns, name);
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_DELETE) {
		fk_http_reply_not_found(req);
		return;
	}
	if (strcmp(kind, "pods") == 0)
		rc = fk_state_pod_del(ns, name);
	else
		rc = fk_state_reviewer_set(ns, name, 0);
	if (rc != 0)
		fk_control_missing(req, kind, name);
	else
		fk_control_empty(req);
}

/* Routes on a collection: POST creates, /NS/NAME addresses one item. */
static int
fk_control_collection(struct evhttp_request *req, const char *path,
    const char *kind, void (*create)(struct evhttp_request *))
{
	size_t		 n = strlen(kind);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	char		*ns, *name;

	if (strncmp(path, kind, n) != 0)
		return (-1);
	if (path[n] == '\0') {
		if (cmd != EVHTTP_REQ_POST)
			return (-1);
		create(req);
		return (0);
	}
	if (path[n] != '/' || (cmd != EVHTTP_REQ_DELETE &&
	    cmd != EVHTTP_REQ_GET) || fk_control_split(path + n + 1, &ns,
	    &name) != 0)
		return (-1);
	fk_control_item(req, kind, ns, name);
	free(ns);
	free(name);
	return (0);
}

/*
 * Route a /_test/ request (path is what follows "/_test/").  0 when
 * answered, -1 when nothing matched (the caller sends the 404).
 */
int
fk_control_route(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);

	if (fk_control_collection(req, path, "serviceaccounts",
	    fk_control_sa_create) == 0 || fk_control_collection(req, path,
	    "pods", fk_control_pod_create) == 0 ||
	    fk_control_collection(req, path, "reviewers",
	    fk_control_reviewer_grant) == 0)
		return (0);
	if (strcmp(path, "tokens") == 0 && cmd == EVHTTP_REQ_POST)
		fk_control_token(req);
	else if (strcmp(path, "faults/review_as") == 0 &&
	    (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_DELETE))
		fk_fault_review_as_set(req);
	else if (strcmp(path, "faults/random") == 0 &&
	    (cmd == EVHTTP_REQ_POST || cmd == EVHTTP_REQ_DELETE))
		fk_fault_random_set(req);
	else if (strcmp(path, "faults") == 0 && cmd == EVHTTP_REQ_POST)
		fk_fault_set(req);
	else if (strcmp(path, "faults") == 0 && cmd == EVHTTP_REQ_DELETE)
		fk_fault_clear(req);
	else if (strcmp(path, "faults") == 0 && cmd == EVHTTP_REQ_GET)
		fk_http_reply_json(req, 200, fk_fault_describe(), NULL);
	else if (strcmp(path, "faults/release") == 0 &&
	    cmd == EVHTTP_REQ_POST)
		fk_fault_release(req);
	else if (fk_oidc_control(req, path) == 0)
		;
	else if (strcmp(path, "stats") == 0 && cmd == EVHTTP_REQ_GET)
		fk_control_stats(req);
	else if (strcmp(path, "stats/reset") == 0 && cmd == EVHTTP_REQ_POST) {
		memset(&fk_stats, 0, sizeof fk_stats);
		fk_control_empty(req);
	} else
		return (-1);
	return (0);
}
