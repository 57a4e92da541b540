/*
 * test_json.c: strict parsing, field checks and the typed getters.
 */
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

/* Parse a NUL-terminated text; the cause is freed and must match want. */
static cJSON *
parse(const char *text, const char *want)
{
	char	*cause = NULL;
	cJSON	*j;

	j = json_parse(text, strlen(text), &cause);
	if (want == NULL) {
		if (j == NULL)
			fail_msg("%s: %s", text, cause);
		assert_null(cause);
	} else {
		assert_null(j);
		assert_non_null(cause);
		if (strstr(cause, want) == NULL)
			fail_msg("%s: cause \"%s\" lacks \"%s\"", text, cause,
			    want);
		free(cause);
	}
	return (j);
}

static void
test_parse_good(void **state)
{
	cJSON	*j;

	j = parse("{\"a\": [1, 2, {\"b\": null}]}  \r\n\t", NULL);
	assert_true(cJSON_IsObject(j));
	cJSON_Delete(j);
	j = parse("\"x\\\\u0000\"", NULL);	/* escaped backslash, no NUL */
	cJSON_Delete(j);
	j = parse("[\"]\", \"{{{{\"]", NULL);	/* brackets in strings */
	cJSON_Delete(j);
}

static void
test_parse_bad(void **state)
{
	char	*cause = NULL;

	parse("", "empty");
	parse("{", "malformed");
	parse("{\"a\": }", "malformed");
	parse("{\"a\": 1} x", "trailing");
	parse("{\"a\": 1}{}", "trailing");
	parse("{\"a\": \"x\\u0000y\"}", "NUL");
	parse("[1, 2", "malformed");
	assert_null(json_parse("{}\0{}", 5, &cause));
	assert_non_null(strstr(cause, "control character 0x00"));
	free(cause);
}

/* Raw control bytes: never in a string, outside only as whitespace. */
static void
test_parse_control_characters(void **state)
{
	static const char nul_in_value[] = "{\"domain_id\": \"dA\0dB\"}";
	char	 buf[32], *cause = NULL;
	cJSON	*j;
	int	 c;

	/* The case: cJSON alone would store "dA". */
	assert_null(json_parse(nul_in_value, sizeof nul_in_value - 1,
	    &cause));
	assert_non_null(strstr(cause, "raw control character 0x00 in a "
	    "string at offset 17"));
	free(cause);
	for (c = 0x01; c < 0x20; c++) {
		snprintf(buf, sizeof buf, "{\"a\": \"x%cy\"}", c);
		parse(buf, "in a string");
		snprintf(buf, sizeof buf, "[\"%c\"]", c);
		parse(buf, "raw control character");
		if (c == '\t' || c == '\n' || c == '\r')
			continue;
		snprintf(buf, sizeof buf, "{\"a\":%c1}", c);
		parse(buf, "outside a string");
	}
	/* Escaped, they are fine; so is JSON's own whitespace. */
	j = parse("{\"a\": \"x\\u0001\\n\\t\\u001f\"}\r\n\t ", NULL);
	assert_string_equal(cJSON_GetObjectItem(j, "a")->valuestring,
	    "x\001\n\t\037");
	cJSON_Delete(j);
	/* Without a cause pointer it still refuses. */
	assert_null(json_parse("\"a\001\"", 4, NULL));
	/* DEL and UTF-8 are not control characters here. */
	j = parse("\"\177\303\251\"", NULL);
	cJSON_Delete(j);
}

static void
test_parse_depth(void **state)
{
	char	 buf[2 * (JSON_MAX_DEPTH + 1) + 1];
	cJSON	*j;
	int	 i;

	for (i = 0; i < JSON_MAX_DEPTH; i++) {
		buf[i] = '[';
		buf[JSON_MAX_DEPTH + i] = ']';
	}
	buf[2 * JSON_MAX_DEPTH] = '\0';
	j = parse(buf, NULL);
	cJSON_Delete(j);
	for (i = 0; i <= JSON_MAX_DEPTH; i++) {
		buf[i] = '[';
		buf[JSON_MAX_DEPTH + 1 + i] = ']';
	}
	buf[2 * (JSON_MAX_DEPTH + 1)] = '\0';
	parse(buf, "deeper");
}

/* Without a cause pointer (keystone.c's service token) it still refuses. */
static void
test_parse_no_cause(void **state)
{
	char	 buf[2 * (JSON_MAX_DEPTH + 1)];
	int	 i;

	for (i = 0; i <= JSON_MAX_DEPTH; i++) {
		buf[i] = '[';
		buf[JSON_MAX_DEPTH + 1 + i] = ']';
	}
	assert_null(json_parse(buf, sizeof buf, NULL));
	assert_null(json_parse("\"\\u0000\"", 8, NULL));
	assert_null(json_parse("{", 1, NULL));
	assert_null(json_parse("", 0, NULL));
}

static void
test_print(void **state)
{
	cJSON		*o = cJSON_CreateObject();
	char		*s, *items[] = { "a", "b\"c" };
	struct strlist	 sl = { items, 2 };

	json_add_string_or_null(o, "x", NULL);
	json_add_string_or_null(o, "y", "v");
	cJSON_AddItemToObject(o, "l", json_strlist(&sl));
	cJSON_AddItemToObject(o, "e", json_strlist(NULL));
	s = json_print(o);
	assert_string_equal(s,
	    "{\"x\":null,\"y\":\"v\",\"l\":[\"a\",\"b\\\"c\"],\"e\":[]}");
	free(s);
	cJSON_Delete(o);
}

static void
test_check_fields(void **state)
{
	static const char *const allowed[] = { "a", "b", NULL };
	static const char *const ro[] = { "id", "created_at", NULL };
	cJSON	*j;
	char	*cause = NULL;

	j = parse("{\"a\": 1, \"b\": 2}", NULL);
	assert_int_equal(json_check_fields(j, allowed, &cause), 0);
	assert_null(json_find_field(j, ro));
	cJSON_Delete(j);
	j = parse("{\"a\": 1, \"B\": 2}", NULL);
	assert_int_equal(json_check_fields(j, allowed, &cause), -1);
	assert_string_equal(cause, "unknown field B");
	free(cause);
	assert_int_equal(json_check_fields_at(j, "roles[2].", allowed,
	    &cause), -1);
	assert_string_equal(cause, "unknown field roles[2].B");
	free(cause);
	cJSON_Delete(j);
	j = parse("{\"a\": 1, \"a\": 2}", NULL);
	assert_int_equal(json_check_fields(j, allowed, &cause), -1);
	assert_string_equal(cause, "duplicate field a");
	free(cause);
	cJSON_Delete(j);
	j = parse("{\"b\": 1, \"created_at\": 2, \"id\": 3}", NULL);
	assert_string_equal(json_find_field(j, ro), "created_at");
	cJSON_Delete(j);
}

/* Expect a getter to fail with exactly this cause. */
static void
expect_cause(int rc, char **cause, const char *want)
{
	assert_int_equal(rc, -1);
	assert_non_null(*cause);
	assert_string_equal(*cause, want);
	free(*cause);
	*cause = NULL;
}

static void
test_get_string(void **state)
{
	cJSON	*j;
	char	*out = NULL, *cause = NULL;

	j = parse("{\"s\": \"abc\", \"n\": null, \"i\": 1, \"b\": true, "
	    "\"a\": [\"x\"], \"o\": {}, \"e\": \"\"}", NULL);
	assert_int_equal(json_get_string(j, "s", 1, 3, 0, &out, &cause),
	    JSON_SET);
	assert_string_equal(out, "abc");
	assert_int_equal(json_get_string(j, "missing", 1, 3, 0, &out, &cause),
	    JSON_ABSENT);
	assert_string_equal(out, "abc");
	assert_int_equal(json_get_string(j, "n", 1, 3, 1, &out, &cause),
	    JSON_NULL);
	assert_null(out);
	expect_cause(json_get_string(j, "n", 1, 3, 0, &out, &cause), &cause,
	    "n must be a string");
	expect_cause(json_get_string(j, "i", 1, 3, 1, &out, &cause), &cause,
	    "i must be a string or null");
	expect_cause(json_get_string(j, "b", 1, 3, 0, &out, &cause), &cause,
	    "b must be a string");
	expect_cause(json_get_string(j, "a", 1, 3, 0, &out, &cause), &cause,
	    "a must be a string");
	expect_cause(json_get_string(j, "o", 1, 3, 0, &out, &cause), &cause,
	    "o must be a string");
	expect_cause(json_get_string(j, "e", 1, 64, 0, &out, &cause), &cause,
	    "e must be 1 to 64 characters long");
	expect_cause(json_get_string(j, "s", 1, 2, 0, &out, &cause), &cause,
	    "s must be 1 to 2 characters long");
	assert_null(out);
	cJSON_Delete(j);
}

static void
test_get_bool(void **state)
{
	cJSON	*j;
	char	*cause = NULL;
	int	 v = -1;

	j = parse("{\"t\": true, \"f\": false, \"n\": null, \"i\": 1, "
	    "\"s\": \"true\"}", NULL);
	assert_int_equal(json_get_bool(j, "t", &v, &cause), JSON_SET);
	assert_int_equal(v, 1);
	assert_int_equal(json_get_bool(j, "f", &v, &cause), JSON_SET);
	assert_int_equal(v, 0);
	assert_int_equal(json_get_bool(j, "x", &v, &cause), JSON_ABSENT);
	assert_int_equal(v, 0);
	expect_cause(json_get_bool(j, "n", &v, &cause), &cause,
	    "n must be a boolean");
	expect_cause(json_get_bool(j, "i", &v, &cause), &cause,
	    "i must be a boolean");
	expect_cause(json_get_bool(j, "s", &v, &cause), &cause,
	    "s must be a boolean");
	cJSON_Delete(j);
}

static void
test_get_long(void **state)
{
	cJSON	*j;
	char	*cause = NULL;
	long	 v = 7;

	j = parse("{\"a\": 60, \"b\": 3600, \"c\": 59, \"d\": 3601, "
	    "\"e\": 60.5, \"f\": \"60\", \"g\": null, \"h\": true, "
	    "\"i\": 1e2, \"k\": -1e400}", NULL);
	assert_int_equal(json_get_long(j, "a", 60, 3600, 1, &v, &cause),
	    JSON_SET);
	assert_int_equal(v, 60);
	assert_int_equal(json_get_long(j, "b", 60, 3600, 1, &v, &cause),
	    JSON_SET);
	assert_int_equal(v, 3600);
	assert_int_equal(json_get_long(j, "i", 60, 3600, 1, &v, &cause),
	    JSON_SET);
	assert_int_equal(v, 100);
	assert_int_equal(json_get_long(j, "g", 60, 3600, 1, &v, &cause),
	    JSON_NULL);
	assert_int_equal(json_get_long(j, "z", 60, 3600, 1, &v, &cause),
	    JSON_ABSENT);
	expect_cause(json_get_long(j, "c", 60, 3600, 1, &v, &cause), &cause,
	    "c must be between 60 and 3600");
	expect_cause(json_get_long(j, "d", 60, 3600, 1, &v, &cause), &cause,
	    "d must be between 60 and 3600");
	expect_cause(json_get_long(j, "e", 60, 3600, 1, &v, &cause), &cause,
	    "e must be an integer or null");
	expect_cause(json_get_long(j, "f", 60, 3600, 0, &v, &cause), &cause,
	    "f must be an integer");
	expect_cause(json_get_long(j, "g", 60, 3600, 0, &v, &cause), &cause,
	    "g must be an integer");
	expect_cause(json_get_long(j, "h", 60, 3600, 0, &v, &cause), &cause,
	    "h must be an integer");
	assert_int_equal(json_get_long(j, "k", 60, 3600, 0, &v, &cause), -1);
	free(cause);
	assert_int_equal(v, 100);
	cJSON_Delete(j);
}

/* The full long range: 2^63 (what LONG_MAX rounds to) is out of it. */
static void
test_get_long_limits(void **state)
{
	cJSON	*j;
	char	*cause = NULL;
	long	 v = 7;

	j = parse("{\"max\": 9223372036854775807, \"two63\": 9.3e18, "
	    "\"min\": -9223372036854775808, \"below\": -9.3e18, "
	    "\"big\": 9223372036854774784}", NULL);
	expect_cause(json_get_long(j, "max", LONG_MIN, LONG_MAX, 0, &v,
	    &cause), &cause, "max must be between "
	    "-9223372036854775808 and 9223372036854775807");
	expect_cause(json_get_long(j, "two63", LONG_MIN, LONG_MAX, 0, &v,
	    &cause), &cause, "two63 must be between "
	    "-9223372036854775808 and 9223372036854775807");
	expect_cause(json_get_long(j, "below", LONG_MIN, LONG_MAX, 0, &v,
	    &cause), &cause, "below must be between "
	    "-9223372036854775808 and 9223372036854775807");
	assert_int_equal(v, 7);
	assert_int_equal(json_get_long(j, "min", LONG_MIN, LONG_MAX, 0, &v,
	    &cause), JSON_SET);
	assert_true(v == LONG_MIN);
	assert_int_equal(json_get_long(j, "big", LONG_MIN, LONG_MAX, 0, &v,
	    &cause), JSON_SET);
	assert_true(v == 9223372036854774784L);
	cJSON_Delete(j);
}

static void
test_get_strlist(void **state)
{
	cJSON		*j;
	char		*cause = NULL;
	struct strlist	 sl = { NULL, 0 };

	j = parse("{\"a\": [\"x\", \"y\"], \"e\": [], \"n\": null, "
	    "\"s\": \"x\", \"m\": [\"x\", 1], \"z\": [\"x\", \"\"], "
	    "\"l\": [\"abcd\"], \"c\": [\"a\", \"b\", \"c\"]}", NULL);
	assert_int_equal(json_get_strlist(j, "a", 2, 3, 0, &sl, &cause),
	    JSON_SET);
	assert_int_equal(sl.n, 2);
	assert_string_equal(sl.v[1], "y");
	assert_int_equal(json_get_strlist(j, "q", 2, 3, 0, &sl, &cause),
	    JSON_ABSENT);
	assert_int_equal(sl.n, 2);
	expect_cause(json_get_strlist(j, "e", 2, 3, 0, &sl, &cause), &cause,
	    "e must have 1 to 2 items");
	expect_cause(json_get_strlist(j, "c", 2, 3, 0, &sl, &cause), &cause,
	    "c must have 1 to 2 items");
	expect_cause(json_get_strlist(j, "s", 2, 3, 1, &sl, &cause), &cause,
	    "s must be a list of strings or null");
	expect_cause(json_get_strlist(j, "m", 2, 3, 0, &sl, &cause), &cause,
	    "m[1] must be a string");
	expect_cause(json_get_strlist(j, "z", 2, 3, 0, &sl, &cause), &cause,
	    "z[1] must be 1 to 3 characters long");
	expect_cause(json_get_strlist(j, "l", 2, 3, 0, &sl, &cause), &cause,
	    "l[0] must be 1 to 3 characters long");
	expect_cause(json_get_strlist(j, "n", 2, 3, 0, &sl, &cause), &cause,
	    "n must be a list of strings");
	assert_int_equal(sl.n, 2);	/* failures leave the list alone */
	assert_int_equal(json_get_strlist(j, "n", 2, 3, 1, &sl, &cause),
	    JSON_NULL);
	assert_int_equal(sl.n, 0);
	assert_null(sl.v);
	cJSON_Delete(j);
}

/* The text json_out wrote, as a new string; frees o. */
static char *
out_text(struct json_out *o)
{
	char *s = xstrndup(o->buf, o->len);

	json_out_free(o);
	return (s);
}

/*
 * json_out escapes every byte as cJSON prints it: quotes, backslashes,
 * each control character, DEL, UTF-8 and bytes that are not UTF-8.
 */
static void
test_out_escapes(void **state)
{
	const char *fixed[] = { "", "plain", "a \"quoted\" name",
		"back\\slash\\", "\"\\\"\\", "caf\303\251 \342\202\254 \360\237\230\200",
		"\377\376 not UTF-8", "tab\there\nnew\rline\b\f", "\177" };
	struct json_out o;
	char stack[64], str[4], *want, *got;
	cJSON *obj;
	size_t i;
	int c;

	for (c = 1; c < 256 + (int)(sizeof fixed / sizeof *fixed); c++) {
		if (c < 256) {
			str[0] = 'a';
			str[1] = (char)c;
			str[2] = 'b';
			str[3] = '\0';
		}
		i = c < 256 ? 0 : (size_t)(c - 256);
		obj = cJSON_CreateObject();
		cJSON_AddStringToObject(obj, c < 256 ? str : "k",
		    c < 256 ? str : fixed[i]);
		want = json_print(obj);
		cJSON_Delete(obj);
		json_out_init(&o, stack, sizeof stack);
		json_out_open(&o, NULL, '{');
		json_out_string(&o, c < 256 ? str : "k",
		    c < 256 ? str : fixed[i]);
		json_out_close(&o, '}');
		got = out_text(&o);
		assert_string_equal(got, want);
		free(want);
		free(got);
	}
}

/* Nesting, implied commas, NULL values left out, growth past the stack. */
static void
test_out_document(void **state)
{
	struct json_out o;
	char stack[16], name[32], *want, *got;
	cJSON *doc, *t, *a, *e;
	int i;

	doc = cJSON_CreateObject();
	t = cJSON_AddObjectToObject(doc, "token");
	a = cJSON_AddArrayToObject(t, "methods");
	cJSON_AddItemToArray(a, cJSON_CreateString("password"));
	cJSON_AddItemToArray(a, cJSON_CreateString("token"));
	cJSON_AddArrayToObject(t, "empty");
	cJSON_AddObjectToObject(t, "none");
	a = cJSON_AddArrayToObject(t, "roles");
	for (i = 0; i < 300; i++) {
		e = cJSON_CreateObject();
		snprintf(name, sizeof name, "role \"%d\"", i);
		cJSON_AddStringToObject(e, "id", name);
		if (i % 2)
			cJSON_AddStringToObject(e, "name", name);
		cJSON_AddItemToArray(a, e);
	}
	cJSON_AddStringToObject(t, "last", "x");
	want = json_print(doc);
	cJSON_Delete(doc);

	json_out_init(&o, stack, sizeof stack);
	json_out_open(&o, NULL, '{');
	json_out_open(&o, "token", '{');
	json_out_open(&o, "methods", '[');
	json_out_string(&o, NULL, "password");
	json_out_string(&o, NULL, "token");
	json_out_close(&o, ']');
	json_out_open(&o, "empty", '[');
	json_out_close(&o, ']');
	json_out_open(&o, "none", '{');
	json_out_string(&o, "absent", NULL);
	json_out_close(&o, '}');
	json_out_open(&o, "roles", '[');
	for (i = 0; i < 300; i++) {
		snprintf(name, sizeof name, "role \"%d\"", i);
		json_out_open(&o, NULL, '{');
		json_out_string(&o, "id", name);
		json_out_string(&o, "name", i % 2 ? name : NULL);
		json_out_close(&o, '}');
	}
	json_out_close(&o, ']');
	json_out_string(&o, "last", "x");
	json_out_close(&o, '}');
	json_out_close(&o, '}');
	assert_true(o.heap);
	got = out_text(&o);
	assert_true(strlen(want) > 4096);
	assert_string_equal(got, want);
	free(want);
	free(got);
}

/*
 * api_token_document writes what the cJSON tree it replaced printed
 * (reference below): methods picked from [auth] methods, user and project
 * with the restriction's domain, roles, restriction id, times, audit id.
 */
static char *
token_document_reference(const struct config *cfg,
    const struct fernet_payload *p, const struct restriction *rs)
{
	cJSON *doc, *t, *a, *o, *d, *role;
	char ts[TIMESTAMP_LEN + 1], *copy, *q, *m, *text;
	const char *ids[2] = { p->user_id, p->project_id };
	const char *keys[2] = { "user", "project" };
	size_t i;
	int n = 0;

	doc = cJSON_CreateObject();
	t = cJSON_AddObjectToObject(doc, "token");
	a = cJSON_AddArrayToObject(t, "methods");
	copy = xstrdup(cfg->auth_methods);
	q = copy;
	while ((m = strsep(&q, ",")) != NULL) {
		m = util_trim(m);
		if (*m == '\0')
			continue;
		if (n < 64 && (p->methods & ((uint64_t)1 << n)))
			cJSON_AddItemToArray(a, cJSON_CreateString(m));
		n++;
	}
	free(copy);
	for (i = 0; i < 2; i++) {
		if (ids[i] == NULL)
			continue;
		o = cJSON_AddObjectToObject(t, keys[i]);
		cJSON_AddStringToObject(o, "id", ids[i]);
		if (rs != NULL) {
			d = cJSON_AddObjectToObject(o, "domain");
			cJSON_AddStringToObject(d, "id", rs->domain_id);
		}
	}
	if (rs != NULL) {
		a = cJSON_AddArrayToObject(t, "roles");
		for (i = 0; i < rs->nroles; i++) {
			role = cJSON_CreateObject();
			cJSON_AddStringToObject(role, "id", rs->roles[i].id);
			if (rs->roles[i].name != NULL)
				cJSON_AddStringToObject(role, "name",
				    rs->roles[i].name);
			cJSON_AddItemToArray(a, role);
		}
		cJSON_AddStringToObject(t, "token_restriction_id", rs->id);
	}
	util_format_time(p->issued_at, ts);
	cJSON_AddStringToObject(t, "issued_at", ts);
	util_format_time(p->expires_at, ts);
	cJSON_AddStringToObject(t, "expires_at", ts);
	a = cJSON_AddArrayToObject(t, "audit_ids");
	cJSON_AddItemToArray(a, cJSON_CreateString(p->audit_id));
	text = json_print(doc);
	cJSON_Delete(doc);
	return (text);
}

static void
test_token_document(void **state)
{
	struct config *cfg = config_new();
	struct restriction rs;
	struct restriction_role roles[3] = { { "r1", "member" },
		{ "r\"2\\", NULL }, { "r3", "caf\303\251\n" } };
	struct fernet_payload p;
	struct json_out o;
	const char *methods[] = { "password,token", " external , , password,\ttoken\t,mapped,application_credential ", "token", "\r\npassword\n,\ntoken\r" };
	char stack[API_TOKEN_STACK], *want, *got;
	size_t m;
	int withrs;

	memset(&rs, 0, sizeof rs);
	snprintf(rs.id, sizeof rs.id, "%s", "4f0a0e2b5c6d47e8a9b0c1d2e3f40516");
	rs.domain_id = (char *)"default";
	rs.roles = roles;
	rs.nroles = 3;
	memset(&p, 0, sizeof p);
	p.version = 11;
	p.user_id = (char *)"0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b";
	p.project_id = (char *)"demo \"project\"";
	p.methods = 1 | 2 | 8;
	p.issued_at = 1765000000;
	p.expires_at = 1765003600.5;
	snprintf(p.audit_id, sizeof p.audit_id, "%s", "oD04P4pYXdV6nZVWJyOqyA");
	for (m = 0; m < sizeof methods / sizeof *methods; m++) {
		free(cfg->auth_methods);
		cfg->auth_methods = xstrdup(methods[m]);
		for (withrs = 0; withrs < 2; withrs++) {
			p.project_id = withrs ? (char *)"demo \"project\"" : NULL;
			want = token_document_reference(cfg, &p,
			    withrs ? &rs : NULL);
			json_out_init(&o, stack, sizeof stack);
			api_token_document(&o, cfg, &p, withrs ? &rs : NULL);
			json_out_close(&o, '}');
			json_out_close(&o, '}');
			got = out_text(&o);
			assert_string_equal(got, want);
			free(want);
			free(got);
		}
	}
	config_free(cfg);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_bad),
		cmocka_unit_test(test_parse_control_characters),
		cmocka_unit_test(test_parse_depth),
		cmocka_unit_test(test_parse_no_cause),
		cmocka_unit_test(test_print),
		cmocka_unit_test(test_check_fields),
		cmocka_unit_test(test_get_string),
		cmocka_unit_test(test_get_bool),
		cmocka_unit_test(test_get_long),
		cmocka_unit_test(test_get_long_limits),
		cmocka_unit_test(test_get_strlist),
		cmocka_unit_test(test_out_escapes),
		cmocka_unit_test(test_out_document),
		cmocka_unit_test(test_token_document),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
