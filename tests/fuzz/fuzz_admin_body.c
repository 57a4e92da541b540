/*
 * fuzz_admin_body.c: libFuzzer target for the admin API's body parsers:
 * instance_apply (with the write-only reviewer token),
 * role_apply and restriction_apply (with its roles list), fed
 * the way a request feeds them: json_parse (json.c: raw control
 * characters and \u0000 refused, nesting bounded), a JSON object taken
 * out of its {"<entity>": {...}} wrapper when it has one (a bare object
 * is used as is, so the fuzzer need not find the wrapper), and on a
 * create the entity's required fields checked first, as the handlers do.
 *
 * The first byte chooses the entity (bits 0-1: instance, role,
 * restriction, restriction), create or update (bit 2: an update starts
 * from a stored object with every field set, so replacing and unsetting
 * values is exercised) and, for an instance, whether http hosts are
 * allowed (bit 3).  The rest is the body.
 *
 * Asserted for an accepted object: what the validators promise holds
 * (lengths and ranges within the field limits, host an http(s) URL with
 * no space, query or fragment and never link-local, ca_cert and role
 * globs valid, restriction role ids unique, booleans 0 or 1, the
 * reviewer-token flag matching the token), and its API representation
 * (what a GET shows) is accepted again as a body and shows the same.
 * For a refusal: a cause that starts with one of the entity's field
 * names (a restriction's refusal also carries a reason).  Any crash,
 * leak (old values of an update included) or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_admin_body); run: `sh
 * tests/run.sh fuzz`, or by hand:
 *
 *	./tests/fuzz/build/fuzz_admin_body -max_total_time=60 \
 *	    tests/tmp/fuzz-admin-body tests/fuzz/corpus/admin_body
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct config	*fuzz_cfg;

static const char *const fuzz_instance_fields[] = { "domain_id", "name",
	"host", "ca_cert", "token_reviewer_jwt", "disable_local_ca_jwt",
	"enabled", "service_account_annotations", "jwt_signature", "jwks",
	"issuer", "review_cache_ttl", NULL };
static const char *const fuzz_instance_required[] = { "domain_id", "host",
	NULL };
static const char *const fuzz_role_fields[] = { "name", "enabled",
	"bound_service_account_names", "bound_service_account_namespaces",
	"bound_audience", "bound_pod_names", "token_ttl",
	"token_restriction_id", "bound_namespace_selector", NULL };
/* ... and bound_service_account_namespaces or bound_namespace_selector */
static const char *const fuzz_role_required[] = { "name",
	"bound_service_account_names", "token_restriction_id", NULL };
static const char *const fuzz_restriction_fields[] = { "domain_id",
	"user_id", "project_id", "roles", "allow_renew", "allow_rescope",
	NULL };
static const char *const fuzz_restriction_required[] = { "domain_id",
	NULL };

/* Log errors only; the defaults of a fresh configuration. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	fuzz_cfg = config_new();
	return (0);
}

/*
 * A refusal names a field of the entity: "<field>" then ' ', '[' or '.',
 * or json_check_fields_at's "unknown field <field>[" for a roles item.
 */
static void
fuzz_check_cause(const char *cause, const char *const *fields)
{
	size_t n;

	if (cause == NULL)
		abort();
	if (strncmp(cause, "unknown field ", 14) == 0)
		cause += 14;
	else if (strncmp(cause, "duplicate field ", 16) == 0)
		cause += 16;
	for (; *fields != NULL; fields++) {
		n = strlen(*fields);
		if (strncmp(cause, *fields, n) == 0 && (cause[n] == ' ' ||
		    cause[n] == '[' || cause[n] == '.'))
			return;
	}
	abort();
}

/* s is NULL (when nullable) or a string of min..max bytes. */
static void
fuzz_check_len(const char *s, size_t min, size_t max, int nullable)
{
	if (s == NULL) {
		if (!nullable)
			abort();
		return;
	}
	if (strlen(s) < min || strlen(s) > max)
		abort();
}

/* A list of 1..100 strings of 1..255 bytes, valid globs for field. */
static void
fuzz_check_list(const char *field, const struct strlist *sl)
{
	char	*cause = NULL;
	size_t	 i;

	if (sl->n < 1 || sl->n > 100)
		abort();
	for (i = 0; i < sl->n; i++)
		fuzz_check_len(sl->v[i], 1, 255, 0);
	if (validate_globs(field, sl, &cause) != 0 || cause != NULL)
		abort();
}

static void
fuzz_check_bool(int b)
{
	if (b != 0 && b != 1)
		abort();
}

/* Has body every field of required (api_check_required)? */
static int
fuzz_has_required(const cJSON *body, const char *const *required)
{
	for (; *required != NULL; required++) {
		if (cJSON_GetObjectItemCaseSensitive(body, *required) == NULL)
			return (0);
	}
	return (1);
}

/* A stored instance, every field set, or a fresh one as a create makes. */
static struct instance *
fuzz_instance_new(int stored)
{
	struct instance	*in;

	in = xcalloc(1, sizeof *in);
	in->enabled = 1;
	if (!stored)
		return (in);
	in->domain_id = xstrdup("dA");
	in->name = xstrdup("cluster-a");
	in->host = xstrdup("https://k8s.example:6443");
	in->reviewer_jwt = xstrdup("eyJhbGciOiJSUzI1NiJ9.e30.c2ln");
	in->reviewer_jwt_set = 1;
	in->disable_local_ca_jwt = 1;
	return (in);
}

/* What instance_apply promises of an accepted instance. */
static void
fuzz_instance_check(const struct instance *in, int allow_http)
{
	char	*cause = NULL;

	fuzz_check_len(in->domain_id, 1, 64, 0);
	fuzz_check_len(in->name, 1, 255, 1);
	fuzz_check_len(in->host, 1, 1024, 0);
	if (strpbrk(in->host, " ?#\t\r\n") != NULL ||
	    strncasecmp(in->host, "http", 4) != 0 ||
	    validate_host(in->host, allow_http, &cause) != 0 ||
	    outbound_check_host(in->host, &cause) != 0)
		abort();
	fuzz_check_len(in->ca_cert, 1, VALIDATE_MAX_PEM, 1);
	if (in->reviewer_jwt_set != (in->reviewer_jwt != NULL))
		abort();
	fuzz_check_len(in->reviewer_jwt, 1, (size_t)fuzz_cfg->k8s_max_jwt_size,
	    1);
	fuzz_check_bool(in->enabled);
	fuzz_check_bool(in->disable_local_ca_jwt);
}

/* GET then PUT of an accepted instance: accepted, shows the same. */
static void
fuzz_instance_again(const struct instance *in)
{
	struct instance	*again;
	cJSON		*shown, *reshown;
	char		*cause = NULL;

	shown = instance_json(in);
	again = fuzz_instance_new(0);
	if (instance_apply(fuzz_cfg, shown, again, &cause) != 0)
		abort();
	reshown = instance_json(again);
	/* The token is write-only: the representation has only its flag. */
	cJSON_DeleteItemFromObjectCaseSensitive(shown,
	    "token_reviewer_jwt_set");
	cJSON_DeleteItemFromObjectCaseSensitive(reshown,
	    "token_reviewer_jwt_set");
	if (!cJSON_Compare(shown, reshown, 1))
		abort();
	cJSON_Delete(reshown);
	cJSON_Delete(shown);
	instance_free(again);
}

static void
fuzz_instance(const cJSON *body, int update, int allow_http)
{
	struct instance	*in;
	char		*cause = NULL;
	int		 saved;

	if (!update && !fuzz_has_required(body, fuzz_instance_required))
		return;
	in = fuzz_instance_new(update);
	saved = fuzz_cfg->k8s_allow_insecure_http;
	fuzz_cfg->k8s_allow_insecure_http = allow_http;
	if (instance_apply(fuzz_cfg, body, in, &cause) != 0) {
		fuzz_check_cause(cause, fuzz_instance_fields);
		free(cause);
	} else {
		if (cause != NULL)
			abort();
		fuzz_instance_check(in, allow_http);
		fuzz_instance_again(in);
	}
	fuzz_cfg->k8s_allow_insecure_http = saved;
	instance_free(in);
}

/* A one-item list of s. */
static void
fuzz_list1(struct strlist *sl, const char *s)
{
	sl->v = xcalloc(1, sizeof *sl->v);
	sl->v[0] = xstrdup(s);
	sl->n = 1;
}

/* A stored role, every field set, or a fresh one (api_role_new). */
static struct role *
fuzz_role_new(int stored)
{
	struct role	*ro;

	ro = xcalloc(1, sizeof *ro);
	ro->enabled = 1;
	ro->domain_id = xstrdup("dA");
	if (!stored)
		return (ro);
	ro->name = xstrdup("web");
	fuzz_list1(&ro->bound_sa_names, "default");
	fuzz_list1(&ro->bound_sa_namespaces, "*");
	ro->bound_audience = xstrdup("keystone");
	ro->bound_pod_names = xcalloc(1, sizeof *ro->bound_pod_names);
	fuzz_list1(ro->bound_pod_names, "web-*");
	ro->token_ttl = 3600;
	ro->token_restriction_id = xstrdup("0123456789abcdef0123456789abcdef");
	return (ro);
}

/* A stored selector is JSON that passes k8s_selector_check. */
static void
fuzz_check_selector(const char *text)
{
	cJSON	*sel;
	char	*cause = NULL;

	sel = json_parse(text, strlen(text), NULL);
	if (sel == NULL || k8s_selector_check(sel, &cause) != 0)
		abort();
	cJSON_Delete(sel);
}

/* What role_apply promises of an accepted role. */
static void
fuzz_role_check(const struct role *ro)
{
	char	*cause = NULL;

	if (validate_role_name(ro->name, &cause) != 0)
		abort();
	fuzz_check_len(ro->name, 1, 255, 0);
	fuzz_check_list("bound_service_account_names", &ro->bound_sa_names);
	if (ro->bound_sa_namespaces.n > 0 ||
	    ro->bound_namespace_selector == NULL)
		fuzz_check_list("bound_service_account_namespaces",
		    &ro->bound_sa_namespaces);
	if (ro->bound_namespace_selector != NULL)
		fuzz_check_selector(ro->bound_namespace_selector);
	if (ro->bound_pod_names != NULL)
		fuzz_check_list("bound_pod_names", ro->bound_pod_names);
	fuzz_check_len(ro->bound_audience, 1, 255, 1);
	if (ro->token_ttl != 0 && (ro->token_ttl < 60 ||
	    ro->token_ttl > fuzz_cfg->token_expiration))
		abort();
	fuzz_check_len(ro->token_restriction_id, 1, 64, 0);
	fuzz_check_bool(ro->enabled);
}

/* GET then PUT of an accepted role: accepted, shows the same. */
static void
fuzz_role_again(const struct role *ro)
{
	struct role	*again;
	cJSON		*shown, *reshown;
	char		*cause = NULL;

	shown = role_json(ro);
	again = fuzz_role_new(0);
	if (role_apply(fuzz_cfg, shown, again, &cause) != 0)
		abort();
	reshown = role_json(again);
	if (!cJSON_Compare(shown, reshown, 1))
		abort();
	cJSON_Delete(reshown);
	cJSON_Delete(shown);
	role_free(again);
}

static void
fuzz_role(const cJSON *body, int update)
{
	struct role	*ro;
	char		*cause = NULL;

	if (!update && (!fuzz_has_required(body, fuzz_role_required) ||
	    (cJSON_GetObjectItemCaseSensitive(body,
	    "bound_service_account_namespaces") == NULL &&
	    cJSON_GetObjectItemCaseSensitive(body,
	    "bound_namespace_selector") == NULL)))
		return;
	ro = fuzz_role_new(update);
	if (role_apply(fuzz_cfg, body, ro, &cause) != 0) {
		fuzz_check_cause(cause, fuzz_role_fields);
		free(cause);
	} else {
		if (cause != NULL)
			abort();
		fuzz_role_check(ro);
		fuzz_role_again(ro);
	}
	role_free(ro);
}

/* A stored restriction, every field set, or a fresh one. */
static struct restriction *
fuzz_restriction_new(int stored)
{
	struct restriction	*rs;

	rs = xcalloc(1, sizeof *rs);
	if (!stored)
		return (rs);
	rs->domain_id = xstrdup("dA");
	rs->user_id = xstrdup("u1");
	rs->project_id = xstrdup("p1");
	rs->roles = xcalloc(2, sizeof *rs->roles);
	rs->roles[0].id = xstrdup("r1");
	rs->roles[0].name = xstrdup("member");
	rs->roles[1].id = xstrdup("r2");
	rs->nroles = 2;
	rs->allow_renew = 1;
	return (rs);
}

/* What restriction_apply promises of an accepted restriction. */
static void
fuzz_restriction_check(const struct restriction *rs)
{
	size_t	i, j;

	fuzz_check_len(rs->domain_id, 1, 64, 0);
	fuzz_check_len(rs->user_id, 1, 64, 1);
	fuzz_check_len(rs->project_id, 1, 64, 1);
	if (rs->nroles > 100 || (rs->nroles > 0 && rs->roles == NULL))
		abort();
	for (i = 0; i < rs->nroles; i++) {
		fuzz_check_len(rs->roles[i].id, 1, 64, 0);
		fuzz_check_len(rs->roles[i].name, 1, 255, 1);
		for (j = 0; j < i; j++) {
			if (strcmp(rs->roles[i].id, rs->roles[j].id) == 0)
				abort();
		}
	}
	fuzz_check_bool(rs->allow_renew);
	fuzz_check_bool(rs->allow_rescope);
}

/* GET then PUT of an accepted restriction: accepted, shows the same. */
static void
fuzz_restriction_again(const struct restriction *rs)
{
	struct restriction	*again;
	struct restriction_err	 e = { REASON_NONE, NULL };
	cJSON			*shown, *reshown;

	shown = restriction_json(rs);
	again = fuzz_restriction_new(0);
	if (restriction_apply(shown, again, &e) != 0)
		abort();
	reshown = restriction_json(again);
	if (!cJSON_Compare(shown, reshown, 1))
		abort();
	cJSON_Delete(reshown);
	cJSON_Delete(shown);
	restriction_free(again);
}

static void
fuzz_restriction(const cJSON *body, int update)
{
	struct restriction	*rs;
	struct restriction_err	 e = { REASON_NONE, NULL };

	if (!update && !fuzz_has_required(body, fuzz_restriction_required))
		return;
	rs = fuzz_restriction_new(update);
	if (restriction_apply(body, rs, &e) != 0) {
		if (e.reason == REASON_NONE || reason_status(e.reason) != 400)
			abort();
		fuzz_check_cause(e.cause, fuzz_restriction_fields);
		free(e.cause);
	} else {
		if (e.cause != NULL || e.reason != REASON_NONE)
			abort();
		fuzz_restriction_check(rs);
		fuzz_restriction_again(rs);
	}
	restriction_free(rs);
}

/* The object a handler gets: out of its wrapper, or the bare object. */
static cJSON *
fuzz_body(cJSON *doc, const char *wrapper)
{
	cJSON	*inner;

	if (!cJSON_IsObject(doc))
		return (NULL);
	inner = cJSON_GetObjectItemCaseSensitive(doc, wrapper);
	if (inner == NULL || cJSON_GetArraySize(doc) != 1)
		return (doc);
	return (cJSON_IsObject(inner) ? inner : NULL);
}

/* One input: a selector byte and a request body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const wrappers[] = { "instance", "role",
		"restriction", "restriction" };
	cJSON	*doc, *body;
	char	*copy, *cause = NULL;
	int	 kind, update;

	if (size == 0 || size > 256 * 1024)
		return (0);
	kind = data[0] & 3;
	update = (data[0] & 4) != 0;
	/* A copy of exactly the body's bytes catches reads past it. */
	copy = xmalloc(size - 1 ? size - 1 : 1);
	memcpy(copy, data + 1, size - 1);
	if ((doc = json_parse(copy, size - 1, &cause)) == NULL) {
		if (cause == NULL)
			abort();
		free(cause);
		free(copy);
		return (0);
	}
	if ((body = fuzz_body(doc, wrappers[kind])) != NULL) {
		if (kind == 0)
			fuzz_instance(body, update, (data[0] & 8) != 0);
		else if (kind == 1)
			fuzz_role(body, update);
		else
			fuzz_restriction(body, update);
	}
	cJSON_Delete(doc);
	free(copy);
	return (0);
}
