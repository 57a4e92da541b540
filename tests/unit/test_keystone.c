/*
 * test_keystone.c: the parts of the Keystone client that need no network:
 * token documents (as Keystone 22 writes them) into callers, the caches
 * (expiry, negative entries, eviction), URL building and path escaping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "k8sauth.h"

/* GET /v3/auth/tokens?nocatalog of a project-scoped password token. */
static const char project_doc[] =
    "{\"token\": {\"methods\": [\"password\"], \"user\": {\"domain\": "
    "{\"id\": \"dA\", \"name\": \"k8s-interop-a\"}, \"id\": \"u1\", "
    "\"name\": \"k8s-member\", \"password_expires_at\": null}, "
    "\"audit_ids\": [\"3T2dc1CGQxyJsHdDu1xkcw\"], "
    "\"expires_at\": \"2026-11-28T15:00:00.000000Z\", "
    "\"issued_at\": \"2026-11-28T14:00:00.000000Z\", "
    "\"project\": {\"domain\": {\"id\": \"dA\", \"name\": \"k8s-interop-a\"},"
    " \"id\": \"p1\", \"name\": \"k8s-proj\"}, \"is_domain\": false, "
    "\"roles\": [{\"id\": \"r1\", \"name\": \"member\"}, "
    "{\"id\": \"r2\", \"name\": \"reader\"}], \"catalog\": []}}";

static const char domain_doc[] =
    "{\"token\": {\"methods\": [\"password\"], \"user\": {\"domain\": "
    "{\"id\": \"dA\"}, \"id\": \"u2\", \"name\": \"k8s-manager\"}, "
    "\"expires_at\": \"2026-11-28T15:00:00Z\", "
    "\"domain\": {\"id\": \"dA\", \"name\": \"k8s-interop-a\"}, "
    "\"roles\": [{\"id\": \"r3\", \"name\": \"manager\"}, "
    "{\"id\": \"r1\", \"name\": \"member\"}]}}";

static const char system_doc[] =
    "{\"token\": {\"methods\": [\"password\"], \"user\": {\"domain\": "
    "{\"id\": \"default\"}, \"id\": \"u3\", \"name\": \"admin\"}, "
    "\"expires_at\": \"2026-11-28T15:00:00.5Z\", "
    "\"system\": {\"all\": true}, "
    "\"roles\": [{\"id\": \"r0\", \"name\": \"admin\"}]}}";

/* Parse doc's token member; returns parse's result. */
static int
parse(const char *doc, struct caller *c, double *expires)
{
	cJSON	*d;
	char	*cause = NULL;
	int	 rc;

	d = cJSON_Parse(doc);
	assert_non_null(d);
	rc = keystone_token_parse(cJSON_GetObjectItem(d, "token"), c,
	    expires, &cause);
	free(cause);
	cJSON_Delete(d);
	return (rc);
}

static double
at(int y, int mo, int d, int h, int mi, int s)
{
	struct tm	 tm;

	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = s;
	return ((double)timegm(&tm));
}

static void
test_project_scoped(void **state)
{
	struct caller	 c;
	double		 exp = 0;

	assert_int_equal(parse(project_doc, &c, &exp), 0);
	assert_int_equal(c.kind, CALLER_KEYSTONE);
	assert_string_equal(c.user_id, "u1");
	assert_string_equal(c.user_domain_id, "dA");
	assert_string_equal(c.project_id, "p1");
	assert_string_equal(c.project_domain_id, "dA");
	assert_null(c.domain_id);
	assert_int_equal(c.system, 0);
	assert_int_equal(c.roles.n, 2);
	assert_string_equal(c.roles.v[0], "member");
	assert_string_equal(c.roles.v[1], "reader");
	assert_int_equal(c.is_admin, 0);
	assert_true(exp == at(2026, 11, 28, 15, 0, 0));
	caller_clear(&c);
}

static void
test_domain_scoped(void **state)
{
	struct caller	 c;
	double		 exp = 0;

	assert_int_equal(parse(domain_doc, &c, &exp), 0);
	assert_string_equal(c.user_id, "u2");
	assert_string_equal(c.domain_id, "dA");
	assert_null(c.project_id);
	assert_null(c.project_domain_id);
	assert_int_equal(c.roles.n, 2);
	assert_string_equal(c.roles.v[0], "manager");
	assert_int_equal(c.is_admin, 0);
	caller_clear(&c);
}

static void
test_system_scoped_admin(void **state)
{
	struct caller	 c;
	double		 exp = 0;

	assert_int_equal(parse(system_doc, &c, &exp), 0);
	assert_int_equal(c.system, 1);
	assert_int_equal(c.is_admin, 1);
	assert_null(c.domain_id);
	assert_null(c.project_id);
	assert_true(exp == at(2026, 11, 28, 15, 0, 0) + 0.5);
	caller_clear(&c);
}

/* The documented choice: admin on a project scope is admin too. */
static void
test_project_admin_is_admin(void **state)
{
	struct caller	 c;
	double		 exp;
	static const char doc[] =
	    "{\"token\": {\"user\": {\"domain\": {\"id\": \"default\"}, "
	    "\"id\": \"u4\"}, \"expires_at\": \"2026-11-28T15:00:00Z\", "
	    "\"project\": {\"domain\": {\"id\": \"default\"}, \"id\": "
	    "\"p0\"}, \"roles\": [{\"id\": \"r1\", \"name\": \"member\"}, "
	    "{\"id\": \"r0\", \"name\": \"admin\"}]}}";

	assert_int_equal(parse(doc, &c, &exp), 0);
	assert_string_equal(c.project_id, "p0");
	assert_string_equal(c.roles.v[1], "admin");
	assert_int_equal(c.is_admin, 1);
	caller_clear(&c);
}

static void
test_malformed(void **state)
{
	struct caller	 c;
	double		 exp;

	/* no user */
	assert_int_equal(parse("{\"token\": {\"expires_at\": "
	    "\"2026-11-28T15:00:00Z\"}}", &c, &exp), -1);
	assert_null(c.user_id);
	/* no expiry */
	assert_int_equal(parse("{\"token\": {\"user\": {\"id\": \"u\"}}}", &c,
	    &exp), -1);
	/* roles not a list, role without a name */
	assert_int_equal(parse("{\"token\": {\"user\": {\"id\": \"u\"}, "
	    "\"expires_at\": \"2026-11-28T15:00:00Z\", \"roles\": {}}}", &c,
	    &exp), -1);
	assert_int_equal(parse("{\"token\": {\"user\": {\"id\": \"u\"}, "
	    "\"expires_at\": \"2026-11-28T15:00:00Z\", \"roles\": "
	    "[{\"id\": \"x\"}]}}", &c, &exp), -1);
	assert_int_equal(c.roles.n, 0);
	/* project without id */
	assert_int_equal(parse("{\"token\": {\"user\": {\"id\": \"u\"}, "
	    "\"expires_at\": \"2026-11-28T15:00:00Z\", \"project\": {}}}", &c,
	    &exp), -1);
	/* not an object */
	assert_int_equal(parse("{\"token\": 3}", &c, &exp), -1);
	/* unscoped is fine: no project, domain or system */
	assert_int_equal(parse("{\"token\": {\"user\": {\"id\": \"u\"}, "
	    "\"expires_at\": \"2026-11-28T15:00:00Z\"}}", &c, &exp), 0);
	assert_null(c.project_id);
	assert_int_equal(c.roles.n, 0);
	caller_clear(&c);
}

/* What the cache keeps parses to the same caller, without the rest. */
static void
test_slim(void **state)
{
	cJSON		*d, *slim;
	struct caller	 a, b;
	double		 ea, eb;

	d = cJSON_Parse(project_doc);
	slim = keystone_token_slim(cJSON_GetObjectItem(d, "token"));
	assert_null(cJSON_GetObjectItem(slim, "catalog"));
	assert_null(cJSON_GetObjectItem(slim, "methods"));
	assert_int_equal(keystone_token_parse(slim, &a, &ea, NULL), 0);
	assert_int_equal(keystone_token_parse(cJSON_GetObjectItem(d, "token"),
	    &b, &eb, NULL), 0);
	assert_string_equal(a.user_id, b.user_id);
	assert_string_equal(a.project_domain_id, b.project_domain_id);
	assert_int_equal(a.roles.n, b.roles.n);
	assert_true(ea == eb);
	caller_clear(&a);
	caller_clear(&b);
	cJSON_Delete(slim);
	cJSON_Delete(d);
}

/* Does the revocation event (JSON text) match the project token? */
static int
revoked(const char *event)
{
	cJSON	*d, *slim, *ev;
	int	 m;

	d = cJSON_Parse(project_doc);
	slim = keystone_token_slim(cJSON_GetObjectItem(d, "token"));
	ev = cJSON_Parse(event);
	assert_non_null(ev);
	m = keystone_revoke_matches(ev, slim);
	cJSON_Delete(ev);
	cJSON_Delete(slim);
	cJSON_Delete(d);
	return (m);
}

static void
test_revoke_matches(void **state)
{
	/* DELETE /v3/auth/tokens: the token's audit id. */
	assert_true(revoked("{\"audit_id\": \"3T2dc1CGQxyJsHdDu1xkcw\", "
	    "\"issued_before\": \"2026-11-28T14:00:00.000000Z\"}"));
	assert_false(revoked("{\"audit_id\": \"otherAuditId0000000000\"}"));
	/* A disabled user or changed password: every token issued before. */
	assert_true(revoked("{\"user_id\": \"u1\", \"issued_before\": "
	    "\"2026-11-28T14:30:00Z\"}"));
	assert_false(revoked("{\"user_id\": \"u1\", \"issued_before\": "
	    "\"2026-11-28T13:59:59Z\"}"));
	assert_false(revoked("{\"user_id\": \"u9\"}"));
	/* A role assignment removed: user, project and role all match. */
	assert_true(revoked("{\"user_id\": \"u1\", \"project_id\": \"p1\", "
	    "\"role_id\": \"r2\"}"));
	assert_false(revoked("{\"user_id\": \"u1\", \"project_id\": \"p1\", "
	    "\"role_id\": \"r9\"}"));
	assert_false(revoked("{\"user_id\": \"u1\", \"project_id\": \"p2\"}"));
	/* A domain disabled: the user's or the project's domain. */
	assert_true(revoked("{\"domain_id\": \"dA\"}"));
	assert_false(revoked("{\"domain_id\": \"dB\"}"));
	/* Fields not modelled (trust, consumer) count as matching. */
	assert_true(revoked("{\"trust_id\": \"t1\", \"user_id\": \"u1\"}"));
}

static void
test_parse_time(void **state)
{
	double	 t = at(2026, 11, 28, 13, 0, 0);

	assert_true(keystone_parse_time("2026-11-28T13:00:00.000000Z") == t);
	assert_true(keystone_parse_time("2026-11-28T13:00:00Z") == t);
	assert_true(keystone_parse_time("2026-11-28T13:00:00") == t);
	assert_true(keystone_parse_time("2026-11-28T13:00:00.250000Z") ==
	    t + 0.25);
	assert_true(keystone_parse_time("2026-11-28T13:00:00+00:00") == t);
	assert_true(keystone_parse_time("2026-11-28T13:00:00+02:00") < 0);
	assert_true(keystone_parse_time("yesterday") < 0);
	assert_true(keystone_parse_time(NULL) < 0);
}

static void
test_url_base(void **state)
{
	static const char *const cases[][2] = {
		{ "http://127.0.0.1:5000/v3", "http://127.0.0.1:5000" },
		{ "http://127.0.0.1:5000/v3/", "http://127.0.0.1:5000" },
		{ "http://127.0.0.1:5000", "http://127.0.0.1:5000" },
		{ "http://127.0.0.1:5000/", "http://127.0.0.1:5000" },
		{ "https://cloud/identity/v3", "https://cloud/identity" },
		{ "https://cloud/identity/", "https://cloud/identity" },
		{ "https://cloud/identity/V3", "https://cloud/identity" },
		{ "https://cloud/v3x", "https://cloud/v3x" },
	};
	size_t	 i;
	char	*b;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		b = keystone_url_base(cases[i][0]);
		assert_string_equal(b, cases[i][1]);
		free(b);
	}
}

static void
test_path_escape(void **state)
{
	char	*e;

	e = keystone_path_escape("0123abcdefABC-_");
	assert_string_equal(e, "0123abcdefABC-_");
	free(e);
	e = keystone_path_escape("../roles?x#y");
	assert_string_equal(e, "%2E%2E%2Froles%3Fx%23y");
	free(e);
	e = keystone_path_escape("a b\xc3\xa9");
	assert_string_equal(e, "a%20b%C3%A9");
	free(e);
}

/* A valid token is cached until the earlier of its expiry and the ttl. */
static void
test_cache_until(void **state)
{
	assert_true(keystone_token_cache_until(1000, 5000, 300) == 1300);
	assert_true(keystone_token_cache_until(1000, 1100, 300) == 1100);
	assert_true(keystone_token_cache_until(1000, 900, 300) == 900);
}

static cJSON *
val(const char *s)
{
	return (cJSON_CreateString(s));
}

static void
test_cache_hit_miss_expiry(void **state)
{
	struct keystone_cache	*c = keystone_cache_new(8);
	cJSON			*v;

	assert_int_equal(keystone_cache_get(c, "k", 100, &v), 0);
	keystone_cache_put(c, "k", val("one"), 200, 100);
	assert_int_equal(keystone_cache_get(c, "k", 150, &v), 1);
	assert_string_equal(v->valuestring, "one");
	cJSON_Delete(v);	/* a copy: the cache keeps its own */
	assert_int_equal(keystone_cache_get(c, "k", 199.9, &v), 1);
	cJSON_Delete(v);
	/* expired at exactly its expiry, and dropped */
	assert_int_equal(keystone_cache_get(c, "k", 200, &v), 0);
	assert_null(v);
	assert_int_equal(keystone_cache_count(c), 0);
	/* already expired: not stored */
	keystone_cache_put(c, "old", val("x"), 100, 100);
	assert_int_equal(keystone_cache_count(c), 0);
	/* replacing a key */
	keystone_cache_put(c, "k", val("one"), 300, 100);
	keystone_cache_put(c, "k", val("two"), 300, 100);
	assert_int_equal(keystone_cache_count(c), 1);
	assert_int_equal(keystone_cache_get(c, "k", 150, &v), 1);
	assert_string_equal(v->valuestring, "two");
	cJSON_Delete(v);
	keystone_cache_clear(c);
	assert_int_equal(keystone_cache_get(c, "k", 150, &v), 0);
	keystone_cache_free(c);
}

static void
test_cache_negative(void **state)
{
	struct keystone_cache	*c = keystone_cache_new(8);
	cJSON			*v = (cJSON *)1;

	keystone_cache_put(c, "bad", NULL, 110, 100);
	assert_int_equal(keystone_cache_get(c, "bad", 105, &v), 1);
	assert_null(v);
	assert_int_equal(keystone_cache_get(c, "bad", 110, &v), 0);
	keystone_cache_free(c);
}

static void
test_cache_eviction(void **state)
{
	struct keystone_cache	*c = keystone_cache_new(3);
	cJSON			*v;

	keystone_cache_put(c, "a", val("a"), 500, 100);
	keystone_cache_put(c, "b", val("b"), 300, 100);
	keystone_cache_put(c, "c", val("c"), 400, 100);
	/* full, nothing expired: the soonest to expire (b) goes */
	keystone_cache_put(c, "d", val("d"), 600, 100);
	assert_int_equal(keystone_cache_count(c), 3);
	assert_int_equal(keystone_cache_get(c, "b", 150, &v), 0);
	assert_int_equal(keystone_cache_get(c, "a", 150, &v), 1);
	cJSON_Delete(v);
	assert_int_equal(keystone_cache_get(c, "c", 150, &v), 1);
	cJSON_Delete(v);
	/* at 450 c has expired: it makes room, a and d stay */
	keystone_cache_put(c, "e", val("e"), 900, 450);
	assert_int_equal(keystone_cache_count(c), 3);
	assert_int_equal(keystone_cache_get(c, "c", 450, &v), 0);
	assert_int_equal(keystone_cache_get(c, "a", 450, &v), 1);
	cJSON_Delete(v);
	assert_int_equal(keystone_cache_get(c, "d", 450, &v), 1);
	cJSON_Delete(v);
	assert_int_equal(keystone_cache_get(c, "e", 450, &v), 1);
	cJSON_Delete(v);
	keystone_cache_free(c);
}

/* Many keys through a small table: chains and counts stay right. */
static void
test_cache_many(void **state)
{
	struct keystone_cache	*c = keystone_cache_new(64);
	cJSON			*v;
	char			 key[16];
	int			 i, hits = 0;

	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		keystone_cache_put(c, key, val(key), 1000 + i, 0);
	}
	assert_int_equal(keystone_cache_count(c), 64);
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof key, "k%d", i);
		if (keystone_cache_get(c, key, 1, &v)) {
			assert_string_equal(v->valuestring, key);
			cJSON_Delete(v);
			hits++;
			assert_true(i >= 1000 - 64);	/* the latest kept */
		}
	}
	assert_int_equal(hits, 64);
	keystone_cache_free(c);
}

/* Without [keystone] url the client refuses to start anything. */
static void
test_not_configured(void **state)
{
	struct config	*cfg = config_new();
	char		*cause = NULL;

	assert_int_equal(keystone_init(cfg, &cause), 0);
	assert_int_equal(keystone_enabled(), 0);
	assert_null(keystone_get(NULL, "/v3/users/x", NULL, NULL, NULL,
	    &cause));
	assert_non_null(cause);
	free(cause);
	cause = NULL;
	cfg->keystone_url = xstrdup("http://127.0.0.1:1/v3");
	assert_int_equal(keystone_init(cfg, &cause), -1);
	assert_non_null(strstr(cause, "application_credential_id"));
	assert_int_equal(keystone_enabled(), 0);
	free(cause);
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_project_scoped),
		cmocka_unit_test(test_domain_scoped),
		cmocka_unit_test(test_system_scoped_admin),
		cmocka_unit_test(test_project_admin_is_admin),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_slim),
		cmocka_unit_test(test_revoke_matches),
		cmocka_unit_test(test_parse_time),
		cmocka_unit_test(test_url_base),
		cmocka_unit_test(test_path_escape),
		cmocka_unit_test(test_cache_until),
		cmocka_unit_test(test_cache_hit_miss_expiry),
		cmocka_unit_test(test_cache_negative),
		cmocka_unit_test(test_cache_eviction),
		cmocka_unit_test(test_cache_many),
		cmocka_unit_test(test_not_configured),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
