/*
 * fk_oidc.c: service-account issuer discovery, as kube-apiserver serves it.
 *
 * GET /.well-known/openid-configuration answers the discovery document
 * ("issuer": the configured issuer, "jwks_uri": this server's own
 * /openid/v1/jwks, built from the request's Host like a server started
 * with --service-account-jwks-uri pointing at itself) and GET
 * /openid/v1/jwks the published signing keys (fk_jwt_jwks).  Both need an
 * authenticated caller, as on a cluster with the default
 * system:service-account-issuer-discovery binding (every service account,
 * no anonymous access): a bearer that authenticates, else 401.
 *
 * Control (/_test/, loopback): POST keys {"alg": "RS256"|"ES256"} adds a
 * key that becomes the signer of its alg (rotation: earlier keys stay
 * published and valid), GET keys shows the JWKS without a bearer, POST
 * faults/oidc {"status": N} makes both endpoints answer N until DELETE
 * faults/oidc.  Counted in fk_stats.discovery and fk_stats.jwks.
 * Single-threaded; never blocks.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>

#include "k8sauth.h"
#include "fake_k8s.h"

static int fk_oidc_fault_status;	/* 0: none */

/* The bearer token of the Authorization header, or NULL. */
static const char *
fk_oidc_bearer(struct evhttp_request *req)
{
	const char	*h;

	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "bearer ", 7) != 0)
		return (NULL);
	h += 7;
	while (*h == ' ')
		h++;
	return (*h != '\0' ? h : NULL);
}

/* Is the caller an authenticated service account?  Else reply 401. */
static int
fk_oidc_authorized(struct evhttp_request *req)
{
	const char	*bearer = fk_oidc_bearer(req);
	struct fk_ident	 id;
	char		*error = NULL;

	if (bearer != NULL && fk_review_authenticate(bearer, NULL, &id,
	    &error) == 0) {
		fk_review_ident_clear(&id);
		return (1);
	}
	free(error);
	fk_http_reply_status(req, 401, "Unauthorized", "Unauthorized", NULL,
	    bearer == NULL ? "Unauthorized (no bearer token)" :
	    "Unauthorized (invalid bearer token)");
	return (0);
}

/* The discovery document, jwks_uri on the Host the caller used. */
static cJSON *
fk_oidc_discovery(struct evhttp_request *req)
{
	const char	*host;
	cJSON		*doc = cJSON_CreateObject();
	char		*uri;

	host = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Host");
	xasprintf(&uri, "https://%s/openid/v1/jwks", host != NULL ? host :
	    "localhost");
	cJSON_AddStringToObject(doc, "issuer", fk_config.issuer);
	cJSON_AddStringToObject(doc, "jwks_uri", uri);
	cJSON_AddItemToObject(doc, "response_types_supported",
	    cJSON_CreateStringArray((const char *[]){ "id_token" }, 1));
	cJSON_AddItemToObject(doc, "subject_types_supported",
	    cJSON_CreateStringArray((const char *[]){ "public" }, 1));
	cJSON_AddItemToObject(doc, "id_token_signing_alg_values_supported",
	    cJSON_CreateStringArray((const char *[]){ "RS256", "ES256" }, 2));
	free(uri);
	return (doc);
}

/* GET discovery (jwks 0) or the JWKS (jwks 1). */
void
fk_oidc_cb(struct evhttp_request *req, int jwks)
{
	if (jwks)
		fk_stats.jwks++;
	else
		fk_stats.discovery++;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
		fk_http_reply_status(req, 405, "MethodNotAllowed",
		    "the server does not allow this method on the requested "
		    "resource", cJSON_CreateObject(), NULL);
		return;
	}
	if (fk_oidc_fault_status != 0) {
		fk_http_reply_status(req, fk_oidc_fault_status, "Fault",
		    "injected fault", NULL, "fault=oidc");
		return;
	}
	if (!fk_oidc_authorized(req))
		return;
	fk_http_reply_json(req, 200, jwks ? fk_jwt_jwks() :
	    fk_oidc_discovery(req), NULL);
}

/* POST /_test/keys {"alg": "RS256" | "ES256"}: rotate. */
static void
fk_oidc_rotate(struct evhttp_request *req)
{
	cJSON		*body = NULL, *out;
	const cJSON	*alg;
	const char	*kid;
	char		*cause = NULL;

	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    !cJSON_IsString(alg = cJSON_GetObjectItemCaseSensitive(body,
	    "alg")) || (strcmp(alg->valuestring, "RS256") != 0 &&
	    strcmp(alg->valuestring, "ES256") != 0)) {
		fk_http_reply_status(req, 400, "BadRequest",
		    "body must be {\"alg\": \"RS256\" or \"ES256\"}", NULL,
		    NULL);
		goto out;
	}
	if ((kid = fk_jwt_rotate(strcmp(alg->valuestring, "ES256") == 0,
	    &cause)) == NULL) {
		fk_http_reply_status(req, 500, "InternalError", cause, NULL,
		    NULL);
		goto out;
	}
	log_info("key rotation: %s key %s signs from now on",
	    alg->valuestring, kid);
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "kid", kid);
	fk_http_reply_json(req, 201, out, NULL);
out:
	free(cause);
	cJSON_Delete(body);
}

/* POST /_test/faults/oidc {"status": N}: fail discovery and JWKS. */
static void
fk_oidc_fault_set(struct evhttp_request *req)
{
	cJSON		*body = NULL;
	const cJSON	*st;
	char		*cause = NULL;

	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    !cJSON_IsNumber(st = cJSON_GetObjectItemCaseSensitive(body,
	    "status")) || st->valuedouble < 400 || st->valuedouble > 599)
		fk_http_reply_status(req, 400, "BadRequest",
		    "body must be {\"status\": 400..599}", NULL, NULL);
	else {
		fk_oidc_fault_status = (int)st->valuedouble;
		fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
	}
	free(cause);
	cJSON_Delete(body);
}

/* Route /_test/keys and /_test/faults/oidc; 0 when answered, else -1. */
int
fk_oidc_control(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);

	if (strcmp(path, "keys") == 0 && cmd == EVHTTP_REQ_POST)
		fk_oidc_rotate(req);
	else if (strcmp(path, "keys") == 0 && cmd == EVHTTP_REQ_GET)
		fk_http_reply_json(req, 200, fk_jwt_jwks(), NULL);
	else if (strcmp(path, "faults/oidc") == 0 && cmd == EVHTTP_REQ_POST)
		fk_oidc_fault_set(req);
	else if (strcmp(path, "faults/oidc") == 0 &&
	    cmd == EVHTTP_REQ_DELETE) {
		fk_oidc_fault_status = 0;
		fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
	} else
		return (-1);
	return (0);
}
