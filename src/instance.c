/*
 * instance.c: the instance, one Kubernetes cluster a domain trusts.
 *
 * Owns struct instance's lifetime (instance_free wipes the reviewer
 * token), its API form (instance_json: never the reviewer token, only
 * token_reviewer_jwt_set) and its field rules (instance_apply: types and
 * lengths, jwt_signature/jwks/issuer with the JWKS parsed strictly, host
 * and ca_cert checked, API.md §7 and §8).  Both are used by the admin
 * handlers (api_instance.c, api_role.c) and the fuzz target
 * tests/fuzz/fuzz_admin_body.c.
 *
 * Never does I/O, never touches the database, never answers a request:
 * the store (store_instance.c) and the handlers do.  Pure functions on
 * the struct, safe from any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define INSTANCE_MAX_JWKS (64 * 1024)

/* Free an instance; the reviewer token is wiped first. */
void
instance_free(struct instance *in)
{
	if (in == NULL)
		return;
	free(in->domain_id);
	free(in->name);
	free(in->host);
	free(in->ca_cert);
	freezero_str(in->reviewer_jwt);
	free(in->jwks);
	free(in->issuer);
	free(in);
}

/* The API representation of an instance (never the reviewer token). */
cJSON *
instance_json(const struct instance *in)
{
	cJSON *o;

	o = cJSON_CreateObject();
	json_add_string_or_null(o, "id", json_or_null(in->id));
	json_add_string_or_null(o, "domain_id", in->domain_id);
	json_add_string_or_null(o, "name", in->name);
	json_add_string_or_null(o, "host", in->host);
	json_add_string_or_null(o, "ca_cert", in->ca_cert);
	cJSON_AddBoolToObject(o, "token_reviewer_jwt_set",
	    in->reviewer_jwt_set);
	cJSON_AddBoolToObject(o, "disable_local_ca_jwt",
	    in->disable_local_ca_jwt);
	cJSON_AddBoolToObject(o, "enabled", in->enabled);
	cJSON_AddBoolToObject(o, "service_account_annotations",
	    in->service_account_annotations);
	cJSON_AddStringToObject(o, "jwt_signature",
	    in->jwt_signature_skip ? "skip" : "verify");
	json_add_string_or_null(o, "jwks", in->jwks);
	json_add_string_or_null(o, "issuer", in->issuer);
	cJSON_AddNumberToObject(o, "review_cache_ttl",
	    (double)in->review_cache_ttl);
	json_add_string_or_null(o, "created_at", json_or_null(in->created_at));
	json_add_string_or_null(o, "updated_at", json_or_null(in->updated_at));
	return (o);
}

/* The reviewer token field: replace in->reviewer_jwt, wiping the old. */
static int
instance_jwt(const cJSON *body, size_t max, struct instance *in, char **cause)
{
	char *jwt = NULL;
	int rc;

	rc =
	    json_get_string(body, "token_reviewer_jwt", 1, max, 1, &jwt, cause);
	if (rc == JSON_SET || rc == JSON_NULL) {
		freezero_str(in->reviewer_jwt);
		in->reviewer_jwt = jwt;
		in->reviewer_jwt_set = jwt != NULL;
	}
	return (rc == -1 ? -1 : 0);
}

/*
 * The signature fields: jwt_signature "verify" | "skip", jwks (parsed,
 * strict) and issuer.  0, or -1 with a cause naming the field.
 */
static int
instance_signature(const cJSON *body, struct instance *in, char **cause)
{
	struct jwks_set *keys;
	char *mode = NULL, *why = NULL;
	int rc;

	rc = json_get_string(body, "jwt_signature", 1, 16, 0, &mode, cause);
	if (rc == -1)
		return (-1);
	if (rc == JSON_SET && strcmp(mode, "verify") != 0 &&
	    strcmp(mode, "skip") != 0) {
		*cause =
		    xstrdup("jwt_signature must be \"verify\" or \"skip\"");
		free(mode);
		return (-1);
	}
	if (rc == JSON_SET)
		in->jwt_signature_skip = strcmp(mode, "skip") == 0;
	free(mode);
	if (json_get_string(body, "jwks", 2, INSTANCE_MAX_JWKS, 1, &in->jwks,
		cause) == -1 ||
	    json_get_string(body, "issuer", 1, 1024, 1, &in->issuer, cause) ==
		-1)
		return (-1);
	if (in->jwks == NULL)
		return (0);
	if ((keys = jwks_parse(in->jwks, strlen(in->jwks), 1, &why)) == NULL) {
		xasprintf(cause, "jwks is not a usable JWKS: %s", why);
		free(why);
		return (-1);
	}
	jwks_set_unref(keys);
	return (0);
}

/*
 * Copy the fields present in body onto in (types and lengths checked),
 * then check host and ca_cert.  0, or -1 with a cause naming the field
 * (fuzzed by tests/fuzz/fuzz_admin_body.c).
 */
int
instance_apply(const struct config *cfg, const cJSON *body, struct instance *in,
    char **cause)
{
	if (json_get_string(body, "domain_id", 1, 64, 0, &in->domain_id,
		cause) == -1 ||
	    json_get_string(body, "name", 1, 255, 1, &in->name, cause) == -1 ||
	    json_get_string(body, "host", 1, 1024, 0, &in->host, cause) == -1 ||
	    json_get_string(body, "ca_cert", 1, VALIDATE_MAX_PEM, 1,
		&in->ca_cert, cause) == -1 ||
	    instance_jwt(body, (size_t)cfg->k8s_max_jwt_size, in, cause) ==
		-1 ||
	    json_get_bool(body, "disable_local_ca_jwt",
		&in->disable_local_ca_jwt, cause) == -1 ||
	    json_get_bool(body, "enabled", &in->enabled, cause) == -1 ||
	    json_get_bool(body, "service_account_annotations",
		&in->service_account_annotations, cause) == -1 ||
	    instance_signature(body, in, cause) == -1 ||
	    json_get_long(body, "review_cache_ttl", 0, 300, 0,
		&in->review_cache_ttl, cause) == -1)
		return (-1);
	if (in->host == NULL) {
		*cause = xstrdup("host is required");
		return (-1);
	}
	if (validate_host(in->host, cfg->k8s_allow_insecure_http, cause) != 0 ||
	    outbound_check_host(in->host, cause) != 0)
		return (-1);
	if (in->ca_cert != NULL && validate_pem(in->ca_cert, cause) != 0)
		return (-1);
	return (0);
}

/* A deep copy of an instance (reviewer token included): the caller's. */
struct instance *
instance_copy(const struct instance *src)
{
	struct instance *in;

	in = xmalloc(sizeof *in);
	*in = *src;
	in->domain_id = xstrdup_or_null(src->domain_id);
	in->name = xstrdup_or_null(src->name);
	in->host = xstrdup_or_null(src->host);
	in->ca_cert = xstrdup_or_null(src->ca_cert);
	in->reviewer_jwt = xstrdup_or_null(src->reviewer_jwt);
	in->jwks = xstrdup_or_null(src->jwks);
	in->issuer = xstrdup_or_null(src->issuer);
	return (in);
}
