/*
 * test_k8s_selector.c: label selectors (a role's bound_namespace_selector)
 * checked on write and matched against a namespace's labels.
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

/* Check the selector text; the cause (or NULL) is returned. */
static char *
check(const char *text)
{
	cJSON *sel = cJSON_Parse(text);
	char *cause = NULL;
	int rc;

	assert_non_null(sel);
	rc = k8s_selector_check(sel, &cause);
	cJSON_Delete(sel);
	assert_true((rc == 0) == (cause == NULL));
	return (cause);
}

/* Match the selector text against the labels text (NULL: no labels). */
static int
match(const char *sel_text, const char *labels_text)
{
	cJSON *sel = cJSON_Parse(sel_text), *labels = NULL;
	int m;

	assert_non_null(sel);
	if (labels_text != NULL)
		assert_non_null(labels = cJSON_Parse(labels_text));
	m = k8s_selector_match(sel, labels);
	cJSON_Delete(sel);
	cJSON_Delete(labels);
	return (m);
}

static void
test_keys_values(void **state)
{
	static const char *const good_keys[] = { "team", "a", "A.b_c-9",
		"example.com/team", "kubernetes.io/metadata.name", NULL };
	static const char *const bad_keys[] = { "", "-a", "a-", "_a", "a b",
		"/a", "a/", "Example.com/a", "a/b/c", "a..b/c", "a=b", NULL };
	char buf[400];
	size_t i;

	for (i = 0; good_keys[i] != NULL; i++)
		if (!k8s_selector_key_valid(good_keys[i]))
			fail_msg("key %s refused", good_keys[i]);
	for (i = 0; bad_keys[i] != NULL; i++)
		if (k8s_selector_key_valid(bad_keys[i]))
			fail_msg("key \"%s\" accepted", bad_keys[i]);
	memset(buf, 'a', 63);
	buf[63] = '\0';
	assert_true(k8s_selector_key_valid(buf));
	assert_true(k8s_selector_value_valid(buf));
	buf[63] = 'a';
	buf[64] = '\0';
	assert_false(k8s_selector_key_valid(buf));
	assert_false(k8s_selector_value_valid(buf));
	/* A 253-character prefix is the limit. */
	memset(buf, 'a', 253);
	memcpy(buf + 253, "/n", 3);
	assert_true(k8s_selector_key_valid(buf));
	memset(buf, 'a', 254);
	memcpy(buf + 254, "/n", 3);
	assert_false(k8s_selector_key_valid(buf));
	assert_true(k8s_selector_value_valid(""));
	assert_false(k8s_selector_value_valid("a/b"));
}

static void
test_check_errors(void **state)
{
	static const struct {
		const char *sel;
		const char *want;
	} bad[] = {
		{ "[]", "bound_namespace_selector must be an object" },
		{ "{}", "bound_namespace_selector must have at least one" },
		{ "{\"matchLabels\":{}}", "must have at least one" },
		{ "{\"labels\":{}}",
		    "unknown field bound_namespace_selector.labels" },
		{ "{\"matchLabels\":[]}", "matchLabels must be an object" },
		{ "{\"matchLabels\":{\"a\":1}}", "matchLabels.a must be" },
		{ "{\"matchLabels\":{\"a b\":\"x\"}}", "'a b' is not a valid" },
		{ "{\"matchLabels\":{\"a\":\"x\",\"a\":\"y\"}}",
		    "appears twice" },
		{ "{\"matchExpressions\":{}}",
		    "matchExpressions must be a list" },
		{ "{\"matchExpressions\":[1]}", "[0] must be an object" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Gt\","
		  "\"values\":[\"1\"]}]}",
		    "[0].operator must be one of In, NotIn, Exists" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"in\","
		  "\"values\":[\"1\"]}]}",
		    "operator must be one of" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
		  "\"Exists\",\"values\":[\"x\"]}]}",
		    "values must be empty with Exists and DoesNotExist" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
		  "\"DoesNotExist\",\"values\":[\"x\"]}]}",
		    "values must be empty" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\"}]}",
		    "values must have 1 to 64 items with In and NotIn" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
		  "\"NotIn\",\"values\":[]}]}",
		    "values must have 1 to 64" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
		  "\"values\":[\"-x\"]}]}",
		    "values: each must be a valid label value" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"In\","
		  "\"values\":\"x\"}]}",
		    "values must be a list of strings" },
		{ "{\"matchExpressions\":[{\"key\":\"/a\",\"operator\":"
		  "\"Exists\"}]}",
		    "[0].key must be a valid label key" },
		{ "{\"matchExpressions\":[{\"key\":\"a\",\"operator\":"
		  "\"Exists\",\"value\":[]}]}",
		    "unknown field bound_namespace_selector.matchExpressions[0]."
		    "value" },
	};
	size_t i;
	char *cause;

	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = check(bad[i].sel);
		if (cause == NULL || strstr(cause, bad[i].want) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].sel,
			    cause != NULL ? cause : "(accepted)", bad[i].want);
		free(cause);
	}
}

static void
test_check_limits(void **state)
{
	cJSON *sel = cJSON_CreateObject(), *ml, *me, *e, *v;
	char key[16], *cause = NULL;
	int i;

	ml = cJSON_AddObjectToObject(sel, "matchLabels");
	for (i = 0; i < K8S_SELECTOR_MAX_TERMS; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cJSON_AddStringToObject(ml, key, "v");
	}
	assert_int_equal(k8s_selector_check(sel, &cause), 0);
	me = cJSON_AddArrayToObject(sel, "matchExpressions");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "key", "x");
	cJSON_AddStringToObject(e, "operator", "Exists");
	cJSON_AddItemToArray(me, e);
	assert_int_equal(k8s_selector_check(sel, &cause), -1);
	assert_non_null(strstr(cause, "at most 32 requirements"));
	free(cause);
	cJSON_Delete(sel);

	sel = cJSON_CreateObject();
	me = cJSON_AddArrayToObject(sel, "matchExpressions");
	e = cJSON_CreateObject();
	cJSON_AddStringToObject(e, "key", "x");
	cJSON_AddStringToObject(e, "operator", "In");
	v = cJSON_AddArrayToObject(e, "values");
	for (i = 0; i <= K8S_SELECTOR_MAX_VALUES; i++)
		cJSON_AddItemToArray(v, cJSON_CreateString("v"));
	cJSON_AddItemToArray(me, e);
	cause = NULL;
	assert_int_equal(k8s_selector_check(sel, &cause), -1);
	assert_non_null(strstr(cause, "1 to 64 items"));
	free(cause);
	cJSON_Delete(sel);
}

static void
test_match_labels(void **state)
{
	const char *s = "{\"matchLabels\":{\"team\":\"payments\","
			"\"example.com/env\":\"prod\"}}";

	assert_true(match(s,
	    "{\"team\":\"payments\",\"example.com/env\":"
	    "\"prod\",\"other\":\"x\"}"));
	assert_false(match(s, "{\"team\":\"payments\"}"));
	assert_false(match(s,
	    "{\"team\":\"billing\",\"example.com/env\":"
	    "\"prod\"}"));
	assert_false(match(s, NULL));
	/* An empty value must be set to match, not merely absent. */
	assert_true(match("{\"matchLabels\":{\"a\":\"\"}}", "{\"a\":\"\"}"));
	assert_false(match("{\"matchLabels\":{\"a\":\"\"}}", "{}"));
}

static void
test_match_expressions(void **state)
{
	const char *in = "{\"matchExpressions\":[{\"key\":\"env\","
			 "\"operator\":\"In\",\"values\":[\"prod\",\"stg\"]}]}";
	const char *notin = "{\"matchExpressions\":[{\"key\":\"env\","
			    "\"operator\":\"NotIn\",\"values\":[\"dev\"]}]}";
	const char *exists = "{\"matchExpressions\":[{\"key\":\"env\","
			     "\"operator\":\"Exists\"}]}";
	const char *dne = "{\"matchExpressions\":[{\"key\":\"env\","
			  "\"operator\":\"DoesNotExist\",\"values\":[]}]}";

	assert_true(match(in, "{\"env\":\"stg\"}"));
	assert_false(match(in, "{\"env\":\"dev\"}"));
	assert_false(match(in, "{}"));
	assert_true(match(notin, "{\"env\":\"prod\"}"));
	assert_true(match(notin, "{}")); /* unset counts as not in */
	assert_false(match(notin, "{\"env\":\"dev\"}"));
	assert_true(match(exists, "{\"env\":\"\"}"));
	assert_false(match(exists, "{\"envx\":\"a\"}"));
	assert_true(match(dne, "{\"other\":\"a\"}"));
	assert_true(match(dne, NULL));
	assert_false(match(dne, "{\"env\":\"a\"}"));
	/* Labels and expressions are ANDed. */
	assert_true(match("{\"matchLabels\":{\"t\":\"a\"},\"matchExpressions\":"
			  "[{\"key\":\"env\",\"operator\":\"Exists\"}]}",
	    "{\"t\":\"a\",\"env\":\"x\"}"));
	assert_false(match("{\"matchLabels\":{\"t\":\"a\"},\"matchExpressions"
			   "\":[{\"key\":\"env\",\"operator\":\"Exists\"}]}",
	    "{\"t\":\"a\"}"));
	/* A selector that fails the check matches nothing. */
	assert_false(match("{}", "{}"));
	assert_false(match("{\"matchExpressions\":[{\"key\":\"env\","
			   "\"operator\":\"Gt\",\"values\":[\"1\"]}]}",
	    "{\"env\":\"2\"}"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_values),
		cmocka_unit_test(test_check_errors),
		cmocka_unit_test(test_check_limits),
		cmocka_unit_test(test_match_labels),
		cmocka_unit_test(test_match_expressions),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
