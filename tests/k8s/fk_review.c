/*
 * fk_review.c: POST /apis/authentication.k8s.io/v1/tokenreviews.
 *
 * Behaves like kube-apiserver with the service-account authenticator:
 * the caller's bearer token is authenticated first (401), then authorized
 * for create tokenreviews (403), then the body is decoded (415, 400), and
 * the reviewed token is checked in the real order: issuer, RS256
 * signature, audiences, time (with leeway), service account (name and
 * UID), bound pod (name and UID).  The verdict is a 201 TokenReview whose
 * status has the exact shape and error strings of a real cluster (see
 * shared/research/k8s-tokenreview.md).  Nothing is cached: deleting an
 * object takes effect on the next review.  Single-threaded; never blocks.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "k8sauth.h"
#include "fake_k8s.h"

#define FK_REVIEW_INVALID "invalid bearer token"
#define FK_REVIEW_API_VERSION "authentication.k8s.io/v1"
#define FK_REVIEW_EXTRA "authentication.kubernetes.io/"

static int fk_review_fail(char **error, const char *fmt, ...) printflike(2, 3);
/* Set *error to "[invalid bearer token, MSG]"; returns -1. */
static int
fk_review_fail(char **error, const char *fmt, ...)
{
	va_list	 ap;
	char	*msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	xasprintf(error, "[%s, %s]", FK_REVIEW_INVALID, msg);
	free(msg);
	return (-1);
}

/* Free what an identity holds. */
void
fk_review_ident_clear(struct fk_ident *id)
{
	free(id->ns);
	free(id->name);
	free(id->uid);
	free(id->jti);
	free(id->pod_name);
	free(id->pod_uid);
	free(id->node_name);
	free(id->node_uid);
	cJSON_Delete(id->auds);
	memset(id, 0, sizeof *id);
}

/* A string member of obj duplicated, or NULL. */
static char *
fk_review_str(const cJSON *obj, const char *key)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return (cJSON_IsString(v) && v->valuestring[0] != '\0' ?
	    xstrdup(v->valuestring) : NULL);
}

/* Read the identity from legacy claims; 0 or -1 with *error. */
static int
fk_review_legacy_ident(const cJSON *c, struct fk_ident *id, char **error)
{
	id->legacy = 1;
	id->ns = fk_review_str(c, "kubernetes.io/serviceaccount/namespace");
	id->name = fk_review_str(c,
	    "kubernetes.io/serviceaccount/service-account.name");
	id->uid = fk_review_str(c,
	    "kubernetes.io/serviceaccount/service-account.uid");
	if (id->ns == NULL || id->name == NULL || id->uid == NULL)
		return (fk_review_fail(error, "namespace, service account "
		    "name or uid claim is missing"));
	return (0);
}

/* Read a {"name","uid"} reference; 0 when present and complete. */
static int
fk_review_ref(const cJSON *k, const char *key, char **name, char **uid)
{
	const cJSON	*r = cJSON_GetObjectItemCaseSensitive(k, key);

	if (!cJSON_IsObject(r))
		return (-1);
	*name = fk_review_str(r, "name");
	*uid = fk_review_str(r, "uid");
	return (*name != NULL && *uid != NULL ? 0 : -1);
}

/* Read the identity from the private "kubernetes.io" claim. */
static int
fk_review_projected_ident(const cJSON *c, struct fk_ident *id, char **error)
{
	const cJSON	*k = cJSON_GetObjectItemCaseSensitive(c,
			    "kubernetes.io");

	if (!cJSON_IsObject(k) || (id->ns = fk_review_str(k,
	    "namespace")) == NULL || fk_review_ref(k, "serviceaccount",
	    &id->name, &id->uid) != 0)
		return (fk_review_fail(error, "service account token claims "
		    "could not be validated due to unexpected private claim"));
	if (cJSON_GetObjectItemCaseSensitive(k, "pod") != NULL &&
	    fk_review_ref(k, "pod", &id->pod_name, &id->pod_uid) != 0)
		return (fk_review_fail(error, "service account token claims "
		    "could not be validated due to unexpected private claim"));
	if (cJSON_GetObjectItemCaseSensitive(k, "node") != NULL)
		fk_review_ref(k, "node", &id->node_name, &id->node_uid);
	id->jti = fk_review_str(c, "jti");
	return (0);
}

/* Is s in the array of strings a? */
static int
fk_review_has(const cJSON *a, const char *s)
{
	const cJSON	*v;

	cJSON_ArrayForEach(v, a) {
		if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0)
			return (1);
	}
	return (0);
}

/* The API server's own audiences as a JSON array. */
static cJSON *
fk_review_api_auds(void)
{
	return (cJSON_CreateStringArray((const char *const *)
	    fk_config.api_auds, (int)fk_config.napi_auds));
}

/* Go's %q of a []string: ["a" "b"]. */
static char *
fk_review_go_list(const cJSON *a)
{
	const cJSON	*v;
	char		*out = xstrdup("["), *next, *q;

	cJSON_ArrayForEach(v, a) {
		q = cJSON_PrintUnformatted(v);
		xasprintf(&next, "%s%s%s", out, out[1] != '\0' ? " " : "",
		    q != NULL ? q : "\"\"");
		cJSON_free(q);
		free(out);
		out = next;
	}
	xasprintf(&next, "%s]", out);
	free(out);
	return (next);
}

/*
 * The token's audiences (aud as a string or a list; the API audiences for
 * a token without aud), or NULL when aud has a wrong type.
 */
static cJSON *
fk_review_token_auds(const cJSON *claims)
{
	const cJSON	*aud, *v;
	cJSON		*out;

	aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
	if (aud == NULL || (cJSON_IsArray(aud) && cJSON_GetArraySize(aud) ==
	    0))
		return (fk_review_api_auds());
	if (cJSON_IsString(aud)) {
		out = cJSON_CreateArray();
		cJSON_AddItemToArray(out, cJSON_CreateString(aud->valuestring));
		return (out);
	}
	if (!cJSON_IsArray(aud))
		return (NULL);
	cJSON_ArrayForEach(v, aud) {
		if (!cJSON_IsString(v))
			return (NULL);
	}
	return (cJSON_Duplicate(aud, 1));
}

/*
 * Intersect the token audiences with the requested ones (NULL or empty:
 * the API audiences), in token order, like authenticator.Audiences.
 */
static int
fk_review_audiences(const cJSON *claims, const cJSON *requested,
    struct fk_ident *id, char **error)
{
	cJSON		*tok, *req, *out;
	const cJSON	*v;
	char		*tl, *rl;
	int		 rc = 0;

	if ((tok = fk_review_token_auds(claims)) == NULL)
		return (fk_review_fail(error, "json: cannot unmarshal aud"));
	req = requested != NULL && cJSON_GetArraySize(requested) > 0 ?
	    cJSON_Duplicate(requested, 1) : fk_review_api_auds();
	out = cJSON_CreateArray();
	cJSON_ArrayForEach(v, tok) {
		if (fk_review_has(req, v->valuestring))
			cJSON_AddItemToArray(out,
			    cJSON_CreateString(v->valuestring));
	}
	if (cJSON_GetArraySize(out) == 0) {
		tl = fk_review_go_list(tok);
		rl = fk_review_go_list(req);
		rc = fk_review_fail(error, "token audiences %s is invalid for "
		    "the target audiences %s", tl, rl);
		free(tl);
		free(rl);
		cJSON_Delete(out);
	} else
		id->auds = out;
	cJSON_Delete(tok);
	cJSON_Delete(req);
	return (rc);
}

/* A NumericDate claim: 1 present (in *out), 0 absent, -1 wrong type. */
static int
fk_review_time_claim(const cJSON *c, const char *key, double *out)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(c, key);

	if (v == NULL || cJSON_IsNull(v))
		return (0);
	if (!cJSON_IsNumber(v))
		return (-1);
	*out = v->valuedouble;
	return (1);
}

/* go-jose's ValidateWithLeeway: nbf, then exp, then iat. */
static int
fk_review_times(const cJSON *c, char **error)
{
	double	 now = (double)time(NULL), t;
	double	 lw = (double)fk_config.leeway;
	int	 rc;

	if ((rc = fk_review_time_claim(c, "nbf", &t)) == -1)
		return (fk_review_fail(error, "json: cannot unmarshal nbf"));
	if (rc == 1 && now + lw < t)
		return (fk_review_fail(error,
		    "service account token is not valid yet"));
	if ((rc = fk_review_time_claim(c, "exp", &t)) == -1)
		return (fk_review_fail(error, "json: cannot unmarshal exp"));
	if (rc == 1 && now - lw > t)
		return (fk_review_fail(error,
		    "service account token has expired"));
	if ((rc = fk_review_time_claim(c, "iat", &t)) == -1)
		return (fk_review_fail(error, "json: cannot unmarshal iat"));
	if (rc == 1 && now + lw < t)
		return (fk_review_fail(error,
		    "service account token is issued in the future"));
	return (0);
}

/* The service account and bound pod still exist with the same UIDs. */
static int
fk_review_objects(const struct fk_ident *id, char **error)
{
	const struct fk_sa	*sa = fk_state_sa_get(id->ns, id->name);
	const struct fk_pod	*pod;

	if (id->legacy) {
		if (sa == NULL || strcmp(sa->uid, id->uid) != 0)
			return (fk_review_fail(error,
			    "Token has been invalidated"));
		return (0);
	}
	if (sa == NULL)
		return (fk_review_fail(error,
		    "serviceaccounts \"%s\" not found", id->name));
	if (strcmp(sa->uid, id->uid) != 0)
		return (fk_review_fail(error, "service account UID (%s) does "
		    "not match claim (%s)", sa->uid, id->uid));
	if (id->pod_name == NULL)
		return (0);
	if ((pod = fk_state_pod_get(id->ns, id->pod_name)) == NULL)
		return (fk_review_fail(error,
		    "service account token has been invalidated"));
	if (strcmp(pod->uid, id->pod_uid) != 0)
		return (fk_review_fail(error, "pod UID (%s) does not match "
		    "service account pod ref claim (%s)", pod->uid,
		    id->pod_uid));
	return (0);
}

/* Parse, check issuer and alg, verify; the claims or NULL with *error. */
static cJSON *
fk_review_decode(const char *token, int *legacy, char **error)
{
	struct fk_jwt	 jwt;
	const cJSON	*alg, *iss;
	cJSON		*claims;

	if (fk_jwt_parse(token, &jwt) != 0) {
		*error = xstrdup(FK_REVIEW_INVALID);
		return (NULL);
	}
	alg = cJSON_GetObjectItemCaseSensitive(jwt.header, "alg");
	iss = cJSON_GetObjectItemCaseSensitive(jwt.claims, "iss");
	if (!cJSON_IsString(alg) || (strcmp(alg->valuestring, "RS256") != 0 &&
	    strcmp(alg->valuestring, "ES256") != 0) ||
	    !cJSON_IsString(iss) || (strcmp(iss->valuestring,
	    fk_config.issuer) != 0 && strcmp(iss->valuestring,
	    FK_LEGACY_ISSUER) != 0)) {
		fk_jwt_clear(&jwt);
		*error = xstrdup(FK_REVIEW_INVALID);
		return (NULL);
	}
	*legacy = strcmp(iss->valuestring, FK_LEGACY_ISSUER) == 0;
	if (fk_jwt_verify(token, jwt.header) != 0) {
		fk_jwt_clear(&jwt);
		fk_review_fail(error,
		    "go-jose/go-jose: error in cryptographic primitive");
		return (NULL);
	}
	claims = jwt.claims;
	jwt.claims = NULL;
	fk_jwt_clear(&jwt);
	return (claims);
}

/*
 * Authenticate a service-account token for the requested audiences (NULL
 * or empty: the API audiences).  0 with *id filled, or -1 with *error set
 * to the status.error a real cluster gives.
 */
int
fk_review_authenticate(const char *token, const cJSON *requested,
    struct fk_ident *id, char **error)
{
	cJSON	*claims;
	int	 legacy = 0, rc = -1;

	memset(id, 0, sizeof *id);
	*error = NULL;
	if ((claims = fk_review_decode(token, &legacy, error)) == NULL)
		return (-1);
	if (legacy) {
		if (fk_review_legacy_ident(claims, id, error) != 0)
			goto out;
	} else if (fk_review_projected_ident(claims, id, error) != 0)
		goto out;
	if (fk_review_audiences(claims, requested, id, error) != 0 ||
	    (!legacy && fk_review_times(claims, error) != 0) ||
	    fk_review_objects(id, error) != 0)
		goto out;
	rc = 0;
out:
	cJSON_Delete(claims);
	if (rc != 0)
		fk_review_ident_clear(id);
	return (rc);
}

/* Add extra[FK_REVIEW_EXTRA key] = [value] when value is set. */
static void
fk_review_extra(cJSON *extra, const char *key, const char *value)
{
	char	*k;

	if (value == NULL)
		return;
	xasprintf(&k, "%s%s", FK_REVIEW_EXTRA, key);
	cJSON_AddItemToObject(extra, k, cJSON_CreateStringArray(&value, 1));
	free(k);
}

/* status.user for an authenticated service account. */
static cJSON *
fk_review_user(const struct fk_ident *id)
{
	cJSON	*u = cJSON_CreateObject(), *groups, *extra;
	char	*s, *jti = NULL;

	xasprintf(&s, "system:serviceaccount:%s:%s", id->ns, id->name);
	cJSON_AddStringToObject(u, "username", s);
	free(s);
	cJSON_AddStringToObject(u, "uid", id->uid);
	groups = cJSON_AddArrayToObject(u, "groups");
	cJSON_AddItemToArray(groups,
	    cJSON_CreateString("system:serviceaccounts"));
	xasprintf(&s, "system:serviceaccounts:%s", id->ns);
	cJSON_AddItemToArray(groups, cJSON_CreateString(s));
	free(s);
	cJSON_AddItemToArray(groups,
	    cJSON_CreateString("system:authenticated"));
	extra = cJSON_CreateObject();
	if (id->jti != NULL)
		xasprintf(&jti, "JTI=%s", id->jti);
	fk_review_extra(extra, "credential-id", jti);
	fk_review_extra(extra, "node-name", id->node_name);
	fk_review_extra(extra, "node-uid", id->node_uid);
	fk_review_extra(extra, "pod-name", id->pod_name);
	fk_review_extra(extra, "pod-uid", id->pod_uid);
	free(jti);
	if (cJSON_GetArraySize(extra) > 0)
		cJSON_AddItemToObject(u, "extra", extra);
	else
		cJSON_Delete(extra);
	return (u);
}

/* Write a Go-style type error for a spec field; 400 reply. */
static void
fk_review_type_error(struct evhttp_request *req, const char *found,
    const char *field, const char *type)
{
	char	*msg;

	xasprintf(&msg, "TokenReview in version \"v1\" cannot be handled as "
	    "a TokenReview: json: cannot unmarshal %s into Go struct field "
	    "TokenReviewSpec.spec.%s of type %s", found, field, type);
	fk_stats.bad_request++;
	fk_http_reply_status(req, 400, "BadRequest", msg, NULL, NULL);
	free(msg);
}

/* The JSON type name Go's decoder reports. */
static const char *
fk_review_json_type(const cJSON *v)
{
	if (cJSON_IsNumber(v))
		return ("number");
	if (cJSON_IsBool(v))
		return ("bool");
	if (cJSON_IsArray(v))
		return ("array");
	if (cJSON_IsObject(v))
		return ("object");
	return ("string");
}

/* Reply 400 with message. */
static void
fk_review_bad_request(struct evhttp_request *req, const char *message)
{
	fk_stats.bad_request++;
	fk_http_reply_status(req, 400, "BadRequest", message, NULL, NULL);
}

/* Check apiVersion/kind (either may be absent); 0 or -1 after a 400. */
static int
fk_review_check_kind(struct evhttp_request *req, const cJSON *body)
{
	const cJSON	*kind, *ver;
	char		*msg;

	kind = cJSON_GetObjectItemCaseSensitive(body, "kind");
	ver = cJSON_GetObjectItemCaseSensitive(body, "apiVersion");
	if (ver != NULL && (!cJSON_IsString(ver) ||
	    strcmp(ver->valuestring, FK_REVIEW_API_VERSION) != 0)) {
		xasprintf(&msg, "the API version in the data (%s) does not "
		    "match the expected API version (%s)", cJSON_IsString(ver) ?
		    ver->valuestring : "?", FK_REVIEW_API_VERSION);
		goto fail;
	}
	if (kind != NULL && (!cJSON_IsString(kind) ||
	    strcmp(kind->valuestring, "TokenReview") != 0)) {
		xasprintf(&msg, "the object provided is unrecognized (must be "
		    "of type TokenReview): no kind \"%s\" is registered for "
		    "version \"%s\"", cJSON_IsString(kind) ? kind->valuestring :
		    "?", FK_REVIEW_API_VERSION);
		goto fail;
	}
	return (0);
fail:
	fk_review_bad_request(req, msg);
	free(msg);
	return (-1);
}

/*
 * Validate spec: token a non-empty string, audiences a list of strings.
 * 0 with *token and *auds pointing into body, or -1 after a 400.
 */
static int
fk_review_check_spec(struct evhttp_request *req, const cJSON *body,
    const char **token, const cJSON **auds)
{
	const cJSON	*spec, *tok, *a, *v;

	spec = cJSON_GetObjectItemCaseSensitive(body, "spec");
	if (spec != NULL && !cJSON_IsNull(spec) && !cJSON_IsObject(spec)) {
		fk_review_type_error(req, fk_review_json_type(spec), "spec",
		    "v1.TokenReviewSpec");
		return (-1);
	}
	tok = cJSON_GetObjectItemCaseSensitive(spec, "token");
	a = cJSON_GetObjectItemCaseSensitive(spec, "audiences");
	if (tok != NULL && !cJSON_IsNull(tok) && !cJSON_IsString(tok)) {
		fk_review_type_error(req, fk_review_json_type(tok), "token",
		    "string");
		return (-1);
	}
	if (a != NULL && !cJSON_IsNull(a) && !cJSON_IsArray(a)) {
		fk_review_type_error(req, fk_review_json_type(a), "audiences",
		    "[]string");
		return (-1);
	}
	cJSON_ArrayForEach(v, a) {
		if (!cJSON_IsString(v)) {
			fk_review_type_error(req, fk_review_json_type(v),
			    "audiences", "string");
			return (-1);
		}
	}
	if (!cJSON_IsString(tok) || tok->valuestring[0] == '\0') {
		fk_review_bad_request(req,
		    "token is required for TokenReview in authentication");
		return (-1);
	}
	*token = tok->valuestring;
	*auds = cJSON_IsArray(a) ? a : NULL;
	return (0);
}

/* The bearer token of the Authorization header, or NULL (anonymous). */
static const char *
fk_review_bearer(struct evhttp_request *req)
{
	const char	*h;

	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "bearer", 6) != 0 ||
	    (h[6] != ' ' && h[6] != '\t'))
		return (NULL);
	h += 6;
	while (*h == ' ' || *h == '\t')
		h++;
	return (*h != '\0' ? h : NULL);
}

/* Reply 403 Forbidden for user. */
static void
fk_review_forbidden(struct evhttp_request *req, const char *user)
{
	cJSON	*details;
	char	*msg, *note;

	xasprintf(&msg, "tokenreviews.authentication.k8s.io is forbidden: "
	    "User \"%s\" cannot create resource \"tokenreviews\" in API group "
	    "\"authentication.k8s.io\" at the cluster scope", user);
	details = cJSON_CreateObject();
	cJSON_AddStringToObject(details, "group", "authentication.k8s.io");
	cJSON_AddStringToObject(details, "kind", "tokenreviews");
	xasprintf(&note, "Forbidden caller=%s", user);
	fk_stats.forbidden++;
	fk_http_reply_status(req, 403, "Forbidden", msg, details, note);
	free(note);
	free(msg);
}

/* Reply 401 Unauthorized; note says why (the body never does). */
static void
fk_review_unauthorized(struct evhttp_request *req, const char *why)
{
	char	*note;

	xasprintf(&note, "Unauthorized (%s)", why);
	fk_stats.unauthorized++;
	fk_http_reply_status(req, 401, "Unauthorized", "Unauthorized", NULL,
	    note);
	free(note);
}

/*
 * Authenticate and authorize the caller.  0 when it may create
 * tokenreviews, or -1 after a 401 or 403 reply.
 */
static int
fk_review_caller(struct evhttp_request *req, char **caller)
{
	const char	*bearer = fk_review_bearer(req);
	struct fk_ident	 id;
	char		*error = NULL, *user;
	int		 ok;

	if (bearer == NULL) {
		if (!fk_config.anonymous_auth) {
			fk_review_unauthorized(req, "no bearer token");
			return (-1);
		}
		fk_review_forbidden(req, "system:anonymous");
		return (-1);
	}
	if (fk_review_authenticate(bearer, NULL, &id, &error) != 0) {
		fk_review_unauthorized(req, error);
		free(error);
		return (-1);
	}
	xasprintf(&user, "system:serviceaccount:%s:%s", id.ns, id.name);
	ok = fk_state_reviewer_get(id.ns, id.name);
	fk_review_ident_clear(&id);
	if (!ok) {
		fk_review_forbidden(req, user);
		free(user);
		return (-1);
	}
	*caller = user;
	return (0);
}

/* Does the Content-Type decode as JSON (absent counts as JSON)? */
static int
fk_review_is_json(struct evhttp_request *req)
{
	const char	*ct;
	size_t		 n = strlen("application/json");

	ct = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Content-Type");
	if (ct == NULL)
		return (1);
	while (isspace((unsigned char)*ct))
		ct++;
	return (strncasecmp(ct, "application/json", n) == 0 &&
	    (ct[n] == '\0' || ct[n] == ';' || isspace((unsigned char)ct[n])));
}

/* Decode the body; the object, or NULL after a 400 or 415. */
static cJSON *
fk_review_body(struct evhttp_request *req)
{
	cJSON	*body;
	char	*cause = NULL, *msg;

	if (!fk_review_is_json(req)) {
		fk_stats.bad_request++;
		fk_http_reply_status(req, 415, "UnsupportedMediaType",
		    "the body of the request was in an unknown format - "
		    "accepted media types include: application/json, "
		    "application/yaml, application/vnd.kubernetes.protobuf",
		    NULL, NULL);
		return (NULL);
	}
	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    !cJSON_IsObject(body)) {
		xasprintf(&msg, "the object provided is unrecognized (must be "
		    "of type TokenReview): couldn't get version/kind; json "
		    "parse error: %s", cause != NULL ? cause :
		    "cannot unmarshal into Go value of type struct");
		fk_review_bad_request(req, msg);
		free(msg);
		free(cause);
		cJSON_Delete(body);
		return (NULL);
	}
	return (body);
}

/* Echo metadata with creationTimestamp: null. */
static cJSON *
fk_review_metadata(const cJSON *body)
{
	const cJSON	*md = cJSON_GetObjectItemCaseSensitive(body,
			    "metadata");
	cJSON		*out;

	out = cJSON_IsObject(md) ? cJSON_Duplicate(md, 1) :
	    cJSON_CreateObject();
	cJSON_DeleteItemFromObjectCaseSensitive(out, "creationTimestamp");
	cJSON_AddNullToObject(out, "creationTimestamp");
	return (out);
}

/* The 201 TokenReview: the request echoed plus status. */
static cJSON *
fk_review_answer(const cJSON *body, const char *token, const cJSON *auds,
    cJSON *status)
{
	cJSON	*tr = cJSON_CreateObject(), *spec;

	cJSON_AddStringToObject(tr, "kind", "TokenReview");
	cJSON_AddStringToObject(tr, "apiVersion", FK_REVIEW_API_VERSION);
	cJSON_AddItemToObject(tr, "metadata", fk_review_metadata(body));
	spec = cJSON_AddObjectToObject(tr, "spec");
	cJSON_AddStringToObject(spec, "token", token);
	if (auds != NULL && cJSON_GetArraySize(auds) > 0)
		cJSON_AddItemToObject(spec, "audiences",
		    cJSON_Duplicate(auds, 1));
	cJSON_AddItemToObject(tr, "status", status);
	return (tr);
}

/* Replace *s with a copy of s followed by "-impostor". */
static void
fk_review_impostor(char **s)
{
	char	*t;

	xasprintf(&t, "%s-impostor", *s);
	free(*s);
	*s = t;
}

/*
 * A tamper fault: alter an authenticated identity before it is answered
 * (fk_fault.c).  Returns the name of the change for the log, or "".
 */
static const char *
fk_review_tamper(struct fk_ident *id, enum fk_tamper tamper)
{
	switch (tamper) {
	case FK_TAMPER_OTHER_NAME:
		fk_review_impostor(&id->name);
		return (" fault=other_name");
	case FK_TAMPER_OTHER_NAMESPACE:
		fk_review_impostor(&id->ns);
		return (" fault=other_namespace");
	case FK_TAMPER_OTHER_UID:
		free(id->uid);
		id->uid = xmalloc(FK_UID_LEN + 1);
		fk_state_new_uid(id->uid);
		return (" fault=other_uid");
	case FK_TAMPER_NO_AUDIENCES:
		cJSON_Delete(id->auds);
		id->auds = NULL;
		return (" fault=no_audiences");
	case FK_TAMPER_NO_POD:
		free(id->pod_name);
		free(id->pod_uid);
		free(id->node_name);
		free(id->node_uid);
		id->pod_name = id->pod_uid = NULL;
		id->node_name = id->node_uid = NULL;
		return (" fault=no_pod");
	default:
		return ("");
	}
}

/* Review spec.token and reply 201, altered by tamper when authenticated. */
static void
fk_review_verdict(struct evhttp_request *req, const cJSON *body,
    const char *token, const cJSON *auds, const char *caller,
    enum fk_tamper tamper)
{
	struct fk_ident	 id;
	cJSON		*status = cJSON_CreateObject();
	const char	*how;
	char		*error = NULL, *note, tid[9];

	log_secret_id(token, tid);
	if (fk_review_authenticate(token, auds, &id, &error) == 0) {
		how = fk_review_tamper(&id, tamper);
		cJSON_AddTrueToObject(status, "authenticated");
		cJSON_AddItemToObject(status, "user", fk_review_user(&id));
		if (id.auds != NULL)
			cJSON_AddItemToObject(status, "audiences", id.auds);
		id.auds = NULL;
		fk_stats.authenticated++;
		xasprintf(&note, "caller=%s token=%s authenticated as "
		    "%s/%s%s", caller, tid, id.ns, id.name, how);
		fk_review_ident_clear(&id);
	} else {
		cJSON_AddItemToObject(status, "user", cJSON_CreateObject());
		cJSON_AddStringToObject(status, "error", error);
		fk_stats.unauthenticated++;
		xasprintf(&note, "caller=%s token=%s rejected: %s", caller, tid,
		    error);
		free(error);
	}
	fk_stats.reviewed++;
	fk_http_reply_json(req, 201, fk_review_answer(body, token, auds,
	    status), note);
	free(note);
}

/* Serve one TokenReview (after any injected fault, tamper aside). */
void
fk_review_handle(struct evhttp_request *req, enum fk_tamper tamper)
{
	cJSON		*body = NULL;
	const cJSON	*auds = NULL;
	const char	*token = NULL;
	char		*caller = NULL;

	if (fk_review_caller(req, &caller) != 0)
		return;
	if ((body = fk_review_body(req)) != NULL &&
	    fk_review_check_kind(req, body) == 0 &&
	    fk_review_check_spec(req, body, &token, &auds) == 0)
		fk_review_verdict(req, body, token, auds, caller, tamper);
	cJSON_Delete(body);
	free(caller);
}

/* Entry from the router: method check, faults, then the review. */
void
fk_review_cb(struct evhttp_request *req)
{
	enum fk_tamper	 tamper;

	fk_stats.tokenreviews++;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		fk_stats.bad_request++;
		fk_http_reply_status(req, 405, "MethodNotAllowed",
		    "the server does not allow this method on the requested "
		    "resource", cJSON_CreateObject(), NULL);
		return;
	}
	if (fk_fault_review_as(req) || fk_fault_apply(req, &tamper))
		return;
	fk_review_handle(req, tamper);
}
