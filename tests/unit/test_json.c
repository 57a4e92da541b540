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
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
