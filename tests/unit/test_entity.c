/*
 * test_entity.c: the stored entities' JSON form and field rules
 * (instance.c, role.c, restriction.c) and the strlist helpers.
 *
 * For each entity: a full body applied gives the struct it describes; its
 * API form (what a GET shows) applied to a fresh struct shows the same
 * again; null unsets what may be unset; every refusal names its field (a
 * restriction's also carries the 400 reason); a refused update leaves
 * what it did not reach.  The reviewer token is write-only: its text
 * never appears in an instance's JSON.  Leaks show under ASan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

#define JWT  "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZpZXdlciJ9.c2VjcmV0"
#define JWKS                                                                  \
	"{\\\"keys\\\":[{\\\"kty\\\":\\\"EC\\\",\\\"kid\\\":\\\"ec1\\\","     \
	"\\\"crv\\\":\\\"P-256\\\","                                          \
	"\\\"x\\\":\\\"dUC0UreHtcNHObJNeQlEURP8mIWGG0vOnVQ9jE15BsQ\\\","      \
	"\\\"y\\\":\\\"0fyEzDHoPfaK2VdqdrDM3YKIBtTrfyJqnZAdn0uyv6Y\\\"}]}"

#define CERT \
	"-----BEGIN CERTIFICATE-----\\n" \
	"MIIBfjCCASOgAwIBAgIUAuEYwL1MQw/HyShMUNyuYjGwKCAwCgYIKoZIzj0EAwIw\\n" \
	"FDESMBAGA1UEAwwJdGVzdC1jYS1hMB4XDTI2MTEyODE0MDEwNloXDTM2MTEyNTE0\\n" \
	"MDEwNlowFDESMBAGA1UEAwwJdGVzdC1jYS1hMFkwEwYHKoZIzj0CAQYIKoZIzj0D\\n" \
	"AQcDQgAEbUL82uj3kbEdTcpZzafuQtH3j6yXNdr2ROJj1huGqU8/pmoP/figlN8T\\n" \
	"/0jnWbqLOs8DBYVOX74ZDlyMKP58CKNTMFEwHQYDVR0OBBYEFKPJ7U8mBH/W90av\\n" \
	"1KMwBZIkvBYPMB8GA1UdIwQYMBaAFKPJ7U8mBH/W90av1KMwBZIkvBYPMA8GA1Ud\\n" \
	"EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAJIQgLdmDE4BX/KScRU9f/05\\n" \
	"/mR3CaUslh6bi35tV0jtAiEA7Ze53h30T1czDOuH9GCJ7cyN2SKuhTz3DPhu0P/r\\n" \
	"bu8=\\n" \
	"-----END CERTIFICATE-----\\n"

static struct config *cfg;

static int
group_setup(void **state)
{
	log_open(LOGL_ERR, 0);
	cfg = config_new();
	return (0);
}

static int
group_teardown(void **state)
{
	config_free(cfg);
	return (0);
}

/* Parse a test body (which must be valid JSON). */
static cJSON *
body(const char *text)
{
	cJSON	*b;

	b = json_parse(text, strlen(text), NULL);
	assert_non_null(b);
	return (b);
}

/* Two JSON values are equal, or the test fails showing both. */
static void
assert_json_equal(const cJSON *a, const cJSON *b)
{
	char	*sa, *sb;

	if (cJSON_Compare(a, b, 1))
		return;
	sa = cJSON_PrintUnformatted(a);
	sb = cJSON_PrintUnformatted(b);
	fail_msg("%s != %s", sa, sb);
}

/* Every field of body but skip shows in shown with the same value. */
static void
assert_json_shows(const cJSON *body, const cJSON *shown, const char *skip)
{
	const cJSON	*f;

	cJSON_ArrayForEach(f, body)
	{
		if (skip != NULL && strcmp(f->string, skip) == 0)
			continue;
		if (!cJSON_HasObjectItem(shown, f->string))
			fail_msg("%s is not shown", f->string);
		assert_json_equal(f,
		    cJSON_GetObjectItemCaseSensitive(shown, f->string));
	}
}

/* A refusal's cause starts with prefix (the field it names). */
static void
assert_cause(char *cause, const char *prefix)
{
	assert_non_null(cause);
	if (strncmp(cause, prefix, strlen(prefix)) != 0)
		fail_msg("cause \"%s\" does not start with \"%s\"", cause,
		    prefix);
	free(cause);
}

static struct instance *
instance_new(void)
{
	struct instance	*in = xcalloc(1, sizeof *in);

	in->enabled = 1;
	return (in);
}

static const char instance_full[] = "{\"domain_id\": \"dA\", "
	"\"name\": \"cluster-a\", \"host\": \"https://k8s.example:6443\", "
	"\"ca_cert\": \"" CERT "\", \"token_reviewer_jwt\": \"" JWT "\", "
	"\"disable_local_ca_jwt\": true, \"enabled\": false, "
	"\"service_account_annotations\": true, \"jwt_signature\": \"verify\", "
	"\"jwks\": \"" JWKS "\", \"issuer\": \"https://issuer.example\", "
	"\"review_cache_ttl\": 30}";

/* A full body: every field lands; the JSON form shows it, never the JWT. */
static void
test_instance_apply_json(void **state)
{
	struct instance	*in = instance_new();
	cJSON		*b, *o;
	char		*s;

	b = body(instance_full);
	s = NULL;
	assert_int_equal(instance_apply(cfg, b, in, &s), 0);
	assert_null(s);
	assert_string_equal(in->domain_id, "dA");
	assert_string_equal(in->name, "cluster-a");
	assert_string_equal(in->host, "https://k8s.example:6443");
	assert_non_null(strstr(in->ca_cert, "BEGIN CERTIFICATE"));
	assert_string_equal(in->reviewer_jwt, JWT);
	assert_int_equal(in->reviewer_jwt_set, 1);
	assert_int_equal(in->disable_local_ca_jwt, 1);
	assert_int_equal(in->enabled, 0);
	assert_int_equal(in->service_account_annotations, 1);
	assert_int_equal(in->jwt_signature_skip, 0);
	assert_non_null(strstr(in->jwks, "\"kid\":\"ec1\""));
	assert_string_equal(in->issuer, "https://issuer.example");
	assert_int_equal(in->review_cache_ttl, 30);

	o = instance_json(in);
	s = cJSON_PrintUnformatted(o);
	assert_json_shows(b, o, "token_reviewer_jwt");
	assert_null(strstr(s, JWT));
	assert_null(cJSON_GetObjectItemCaseSensitive(o, "token_reviewer_jwt"));
	assert_true(cJSON_IsTrue(
	    cJSON_GetObjectItemCaseSensitive(o, "token_reviewer_jwt_set")));
	/* Not stored yet: no id, no timestamps (json_or_null). */
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "id")));
	assert_true(
	    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "created_at")));
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(o, "jwt_signature")->valuestring,
	    "verify");
	free(s);
	cJSON_Delete(o);
	cJSON_Delete(b);
	instance_free(in);
}

/* What a GET shows is accepted again as a body and shows the same. */
static void
test_instance_round_trip(void **state)
{
	struct instance	*in = instance_new(), *again = instance_new();
	cJSON		*b, *shown, *reshown;
	char		*cause = NULL;

	b = body(instance_full);
	assert_int_equal(instance_apply(cfg, b, in, &cause), 0);
	memcpy(in->id, "0123456789abcdef0123456789abcdef", ID_LEN + 1);
	shown = instance_json(in);
	assert_int_equal(instance_apply(cfg, shown, again, &cause), 0);
	/* The token is write-only: the copy has none, the rest is equal. */
	assert_int_equal(again->reviewer_jwt_set, 0);
	memcpy(again->id, in->id, ID_LEN + 1);
	reshown = instance_json(again);
	cJSON_DeleteItemFromObjectCaseSensitive(shown,
	    "token_reviewer_jwt_set");
	cJSON_DeleteItemFromObjectCaseSensitive(reshown,
	    "token_reviewer_jwt_set");
	assert_json_equal(shown, reshown);
	cJSON_Delete(b);
	cJSON_Delete(shown);
	cJSON_Delete(reshown);
	instance_free(in);
	instance_free(again);
}

/* Null unsets the optional fields, the reviewer token included. */
static void
test_instance_unset(void **state)
{
	struct instance	*in = instance_new();
	cJSON		*b, *o;
	char		*cause = NULL;

	b = body(instance_full);
	assert_int_equal(instance_apply(cfg, b, in, &cause), 0);
	cJSON_Delete(b);
	b = body("{\"name\": null, \"ca_cert\": null, "
		 "\"token_reviewer_jwt\": null, \"jwks\": null, "
		 "\"issuer\": null, \"jwt_signature\": \"skip\"}");
	assert_int_equal(instance_apply(cfg, b, in, &cause), 0);
	assert_null(in->name);
	assert_null(in->ca_cert);
	assert_null(in->reviewer_jwt);
	assert_int_equal(in->reviewer_jwt_set, 0);
	assert_null(in->jwks);
	assert_null(in->issuer);
	assert_int_equal(in->jwt_signature_skip, 1);
	/* Fields the body does not name stay. */
	assert_string_equal(in->host, "https://k8s.example:6443");
	assert_int_equal(in->review_cache_ttl, 30);
	o = instance_json(in);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "name")));
	assert_true(cJSON_IsFalse(
	    cJSON_GetObjectItemCaseSensitive(o, "token_reviewer_jwt_set")));
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(o, "jwt_signature")->valuestring,
	    "skip");
	cJSON_Delete(o);
	cJSON_Delete(b);
	instance_free(in);
}

/* Every refusal names its field. */
static void
test_instance_bad(void **state)
{
	static const struct {
		const char	*body;
		const char	*cause;
	} bad[] = {
		{ "{\"domain_id\": \"dA\"}", "host is required" },
		{ "{\"host\": \"https://169.254.169.254\"}",
		    "host is a link-local address" },
		{ "{\"host\": \"http://k8s.example\"}", "host" },
		{ "{\"host\": \"https://k8s.example\", \"ca_cert\": \"x\"}",
		    "ca_cert" },
		{ "{\"host\": \"https://k8s.example\", "
		  "\"jwt_signature\": \"maybe\"}",
		    "jwt_signature must be \"verify\" or \"skip\"" },
		{ "{\"host\": \"https://k8s.example\", \"jwks\": \"{}\"}",
		    "jwks is not a usable JWKS" },
		{ "{\"host\": \"https://k8s.example\", "
		  "\"review_cache_ttl\": 301}",
		    "review_cache_ttl" },
		{ "{\"host\": \"https://k8s.example\", \"enabled\": 1}",
		    "enabled" },
		{ "{\"host\": \"https://k8s.example\", "
		  "\"token_reviewer_jwt\": \"\"}",
		    "token_reviewer_jwt" },
		{ "{\"domain_id\": 7, \"host\": \"https://k8s.example\"}",
		    "domain_id" },
	};
	struct instance	*in;
	cJSON		*b;
	char		*cause;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		in = instance_new();
		b = body(bad[i].body);
		cause = NULL;
		assert_int_equal(instance_apply(cfg, b, in, &cause), -1);
		assert_cause(cause, bad[i].cause);
		cJSON_Delete(b);
		instance_free(in);
	}
}

static const char role_full[] = "{\"name\": \"web\", \"enabled\": false, "
	"\"bound_service_account_names\": [\"default\", \"web-*\"], "
	"\"bound_service_account_namespaces\": [\"team-a\"], "
	"\"bound_audience\": \"keystone\", "
	"\"bound_pod_names\": [\"web-*\"], \"token_ttl\": 600, "
	"\"token_restriction_id\": \"0123456789abcdef0123456789abcdef\", "
	"\"bound_namespace_selector\": {\"matchLabels\": {\"team\": \"a\"}}}";

static struct role *
role_new(void)
{
	struct role	*ro = xcalloc(1, sizeof *ro);

	ro->enabled = 1;
	ro->domain_id = xstrdup("dA");
	return (ro);
}

/* A full body: every field lands and the JSON form shows it. */
static void
test_role_apply_json(void **state)
{
	struct role	*ro = role_new();
	const cJSON	*sel;
	cJSON		*b, *o;
	char		*cause = NULL;

	b = body(role_full);
	assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
	assert_string_equal(ro->name, "web");
	assert_int_equal(ro->enabled, 0);
	assert_int_equal(ro->bound_sa_names.n, 2);
	assert_string_equal(ro->bound_sa_names.v[1], "web-*");
	assert_int_equal(ro->bound_sa_namespaces.n, 1);
	assert_string_equal(ro->bound_audience, "keystone");
	assert_non_null(ro->bound_pod_names);
	assert_string_equal(ro->bound_pod_names->v[0], "web-*");
	assert_int_equal(ro->token_ttl, 600);
	assert_string_equal(ro->token_restriction_id,
	    "0123456789abcdef0123456789abcdef");
	assert_non_null(ro->bound_namespace_selector);

	o = role_json(ro);
	sel = cJSON_GetObjectItemCaseSensitive(o, "bound_namespace_selector");
	assert_json_shows(b, o, NULL);
	assert_json_equal(sel, cJSON_GetObjectItemCaseSensitive(b,
	    "bound_namespace_selector"));
	assert_string_equal(
	    cJSON_GetObjectItemCaseSensitive(o, "domain_id")->valuestring, "dA");
	assert_true(cJSON_IsNull(
	    cJSON_GetObjectItemCaseSensitive(o, "auth_instance_id")));
	assert_int_equal(
	    cJSON_GetObjectItemCaseSensitive(o, "token_ttl")->valueint, 600);
	cJSON_Delete(o);
	cJSON_Delete(b);
	role_free(ro);
}

/* What a GET shows is accepted again as a body and shows the same. */
static void
test_role_round_trip(void **state)
{
	struct role	*ro = role_new(), *again = role_new();
	cJSON		*b, *shown, *reshown;
	char		*cause = NULL;

	b = body(role_full);
	assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
	memcpy(ro->id, "0123456789abcdef0123456789abcdef", ID_LEN + 1);
	memcpy(ro->auth_instance_id, "fedcba9876543210fedcba9876543210",
	    ID_LEN + 1);
	shown = role_json(ro);
	assert_int_equal(role_apply(cfg, shown, again, &cause), 0);
	memcpy(again->id, ro->id, ID_LEN + 1);
	memcpy(again->auth_instance_id, ro->auth_instance_id, ID_LEN + 1);
	reshown = role_json(again);
	assert_json_equal(shown, reshown);
	cJSON_Delete(b);
	cJSON_Delete(shown);
	cJSON_Delete(reshown);
	role_free(ro);
	role_free(again);
}

/* Null unsets audience, pod names, ttl and selector; [] needs a selector. */
static void
test_role_unset(void **state)
{
	struct role	*ro = role_new();
	cJSON		*b, *o;
	char		*cause = NULL;

	b = body(role_full);
	assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
	cJSON_Delete(b);
	b = body("{\"bound_service_account_namespaces\": []}");
	assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
	assert_int_equal(ro->bound_sa_namespaces.n, 0);
	cJSON_Delete(b);
	b = body("{\"bound_audience\": null, \"bound_pod_names\": null, "
		 "\"token_ttl\": null, \"bound_namespace_selector\": null}");
	assert_int_equal(role_apply(cfg, b, ro, &cause), -1);
	assert_cause(cause,
	    "bound_service_account_namespaces must have 1 to 100 items unless bound_namespace_selector is set");
	cJSON_Delete(b);
	b = body("{\"bound_audience\": null, \"bound_pod_names\": null, "
		 "\"token_ttl\": null, \"bound_namespace_selector\": null, "
		 "\"bound_service_account_namespaces\": [\"*\"]}");
	cause = NULL;
	assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
	assert_null(ro->bound_audience);
	assert_null(ro->bound_pod_names);
	assert_int_equal(ro->token_ttl, 0);
	assert_null(ro->bound_namespace_selector);
	o = role_json(ro);
	assert_true(cJSON_IsNull(
	    cJSON_GetObjectItemCaseSensitive(o, "bound_pod_names")));
	assert_true(
	    cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "token_ttl")));
	assert_true(cJSON_IsNull(
	    cJSON_GetObjectItemCaseSensitive(o, "bound_namespace_selector")));
	cJSON_Delete(o);
	cJSON_Delete(b);
	role_free(ro);
}

/* Every refusal names its field. */
static void
test_role_bad(void **state)
{
	static const struct {
		const char	*body;
		const char	*cause;
	} bad[] = {
		{ "{\"token_ttl\": 59}", "token_ttl" },
		{ "{\"token_ttl\": 1000000000}", "token_ttl" },
		{ "{\"bound_service_account_names\": []}",
		    "bound_service_account_names" },
		{ "{\"bound_service_account_names\": [\"ns-[abc\"]}",
		    "bound_service_account_names" },
		{ "{\"bound_pod_names\": \"web\"}", "bound_pod_names" },
		{ "{\"bound_namespace_selector\": {\"matchLabels\": 1}}",
		    "bound_namespace_selector" },
		{ "{\"name\": \"\"}", "name" },
		{ "{\"token_restriction_id\": null}", "token_restriction_id" },
	};
	struct role	*ro;
	cJSON		*b;
	char		*cause;
	size_t		 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ro = role_new();
		b = body(role_full);
		cause = NULL;
		assert_int_equal(role_apply(cfg, b, ro, &cause), 0);
		cJSON_Delete(b);
		b = body(bad[i].body);
		if (role_apply(cfg, b, ro, &cause) != -1)
			fail_msg("accepted: %s", bad[i].body);
		assert_cause(cause, bad[i].cause);
		cJSON_Delete(b);
		role_free(ro);
	}
}

static const char restriction_full[] = "{\"domain_id\": \"dA\", "
	"\"user_id\": \"u1\", \"project_id\": \"p1\", "
	"\"roles\": [{\"id\": \"r1\", \"name\": \"member\"}, {\"id\": \"r2\"}], "
	"\"allow_renew\": true, \"allow_rescope\": true}";

/* A full body: every field lands and the JSON form shows it. */
static void
test_restriction_apply_json(void **state)
{
	struct restriction	*rs = xcalloc(1, sizeof *rs);
	struct restriction_err	 e = { REASON_NONE, NULL };
	const cJSON		*roles;
	cJSON			*b, *o;

	b = body(restriction_full);
	assert_int_equal(restriction_apply(b, rs, &e), 0);
	assert_null(e.cause);
	assert_string_equal(rs->domain_id, "dA");
	assert_string_equal(rs->user_id, "u1");
	assert_string_equal(rs->project_id, "p1");
	assert_int_equal(rs->nroles, 2);
	assert_string_equal(rs->roles[0].name, "member");
	assert_null(rs->roles[1].name);
	assert_int_equal(rs->allow_renew, 1);
	assert_int_equal(rs->allow_rescope, 1);
	o = restriction_json(rs);
	roles = cJSON_GetObjectItemCaseSensitive(o, "roles");
	assert_json_shows(b, o, NULL);
	assert_json_equal(roles, cJSON_GetObjectItemCaseSensitive(b, "roles"));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, "id")));
	cJSON_Delete(o);
	cJSON_Delete(b);
	restriction_free(rs);
}

/* What a GET shows is accepted again as a body and shows the same. */
static void
test_restriction_round_trip(void **state)
{
	struct restriction	*rs = xcalloc(1, sizeof *rs);
	struct restriction	*again = xcalloc(1, sizeof *again);
	struct restriction_err	 e = { REASON_NONE, NULL };
	cJSON			*b, *shown, *reshown;

	b = body(restriction_full);
	assert_int_equal(restriction_apply(b, rs, &e), 0);
	memcpy(rs->id, "0123456789abcdef0123456789abcdef", ID_LEN + 1);
	util_timestamp(rs->created_at);
	memcpy(rs->updated_at, rs->created_at, TIMESTAMP_LEN + 1);
	shown = restriction_json(rs);
	assert_int_equal(restriction_apply(shown, again, &e), 0);
	memcpy(again->id, rs->id, ID_LEN + 1);
	memcpy(again->created_at, rs->created_at, TIMESTAMP_LEN + 1);
	memcpy(again->updated_at, rs->updated_at, TIMESTAMP_LEN + 1);
	reshown = restriction_json(again);
	assert_json_equal(shown, reshown);
	cJSON_Delete(b);
	cJSON_Delete(shown);
	cJSON_Delete(reshown);
	restriction_free(rs);
	restriction_free(again);
}

/* A refusal carries its reason; a bad roles list keeps the old roles. */
static void
test_restriction_bad(void **state)
{
	static const struct {
		const char	*body;
		enum reason	 reason;
		const char	*cause;
	} bad[] = {
		{ "{\"roles\": [{\"id\": \"r1\"}, {\"id\": \"r1\"}]}",
		    REASON_invalid_value, "roles[1].id duplicates roles[0].id" },
		{ "{\"roles\": [{\"id\": \"r1\", \"x\": 1}]}",
		    REASON_unknown_field, "unknown field roles[0].x" },
		{ "{\"roles\": [{\"name\": \"member\"}]}", REASON_missing_field,
		    "roles[0].id is required" },
		{ "{\"roles\": [\"r1\"]}", REASON_invalid_value,
		    "roles[0] must be an object" },
		{ "{\"roles\": {}}", REASON_invalid_value,
		    "roles must be a list of objects" },
		{ "{\"roles\": [{\"id\": \"\"}]}", REASON_invalid_value,
		    "roles[0].id" },
		{ "{\"user_id\": 1}", REASON_invalid_value, "user_id" },
		{ "{\"allow_renew\": \"yes\"}", REASON_invalid_value,
		    "allow_renew" },
	};
	struct restriction	*rs;
	struct restriction_err	 e;
	cJSON			*b;
	size_t			 i;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		rs = xcalloc(1, sizeof *rs);
		b = body(restriction_full);
		e.reason = REASON_NONE;
		e.cause = NULL;
		assert_int_equal(restriction_apply(b, rs, &e), 0);
		cJSON_Delete(b);
		b = body(bad[i].body);
		assert_int_equal(restriction_apply(b, rs, &e), -1);
		assert_int_equal(e.reason, bad[i].reason);
		assert_cause(e.cause, bad[i].cause);
		assert_int_equal(rs->nroles, 2);
		assert_string_equal(rs->roles[0].id, "r1");
		cJSON_Delete(b);
		restriction_free(rs);
	}
}

/* At most 100 roles. */
static void
test_restriction_max_roles(void **state)
{
	struct restriction	*rs = xcalloc(1, sizeof *rs);
	struct restriction_err	 e = { REASON_NONE, NULL };
	cJSON			*b, *roles, *item;
	char			 id[16];
	int			 i;

	b = cJSON_CreateObject();
	roles = cJSON_AddArrayToObject(b, "roles");
	for (i = 0; i < 100; i++) {
		snprintf(id, sizeof id, "r%d", i);
		item = cJSON_CreateObject();
		cJSON_AddStringToObject(item, "id", id);
		cJSON_AddItemToArray(roles, item);
	}
	assert_int_equal(restriction_apply(b, rs, &e), 0);
	assert_int_equal(rs->nroles, 100);
	item = cJSON_CreateObject();
	cJSON_AddStringToObject(item, "id", "r100");
	cJSON_AddItemToArray(roles, item);
	assert_int_equal(restriction_apply(b, rs, &e), -1);
	assert_int_equal(e.reason, REASON_invalid_value);
	assert_cause(e.cause, "roles must have at most 100 items");
	assert_int_equal(rs->nroles, 100);
	cJSON_Delete(b);
	restriction_free(rs);
}

/* strlist_copy is deep, strlist_free empties; NULL entities are no-ops. */
static void
test_strlist_and_free(void **state)
{
	char		*v[] = { "a", "b" };
	struct strlist	 src = { v, 2 }, dst;

	strlist_copy(&dst, &src);
	assert_int_equal(dst.n, 2);
	assert_ptr_not_equal(dst.v[0], v[0]);
	assert_string_equal(dst.v[1], "b");
	strlist_free(&dst);
	assert_null(dst.v);
	assert_int_equal(dst.n, 0);
	src.n = 0;
	strlist_copy(&dst, &src);
	assert_null(dst.v);
	strlist_free(NULL);
	instance_free(NULL);
	role_free(NULL);
	restriction_free(NULL);
	assert_null(json_or_null(""));
	assert_string_equal(json_or_null("x"), "x");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_instance_apply_json),
		cmocka_unit_test(test_instance_round_trip),
		cmocka_unit_test(test_instance_unset),
		cmocka_unit_test(test_instance_bad),
		cmocka_unit_test(test_role_apply_json),
		cmocka_unit_test(test_role_round_trip),
		cmocka_unit_test(test_role_unset),
		cmocka_unit_test(test_role_bad),
		cmocka_unit_test(test_restriction_apply_json),
		cmocka_unit_test(test_restriction_round_trip),
		cmocka_unit_test(test_restriction_bad),
		cmocka_unit_test(test_restriction_max_roles),
		cmocka_unit_test(test_strlist_and_free),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
