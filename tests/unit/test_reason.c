/*
 * test_reason.c: the reason table (src/reason.h) and docs/api.md.
 *
 * Every reason has one name and an error status; the reasons table of
 * docs/api.md lists exactly the reasons of the table, each with its status.
 * Run from the top of the tree (tests/run.sh does).
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

#define DOCS_API "docs/api.md"

/* Every name is unique, looks like a reason and maps back to itself. */
static void
test_names(void **state)
{
	const char *name;
	int i, j;

	for (i = 1; i < REASON_COUNT; i++) {
		name = reason_name((enum reason)i);
		assert_true(strlen(name) > 0);
		assert_int_equal(strspn(name, "abcdefghijklmnopqrstuvwxyz_"),
		    strlen(name));
		assert_int_equal(reason_lookup(name), i);
		for (j = 1; j < i; j++)
			assert_string_not_equal(name,
			    reason_name((enum reason)j));
	}
	assert_int_equal(reason_lookup("no_such_reason"), REASON_NONE);
	assert_int_equal(reason_status(REASON_NONE), 0);
}

/* Every reason is an error status the server can send. */
static void
test_statuses(void **state)
{
	static const int ok[] = { 400, 401, 403, 404, 405, 409, 413, 415, 429,
		500, 502, 503, 504 };
	size_t k;
	int i, s, found;

	for (i = 1; i < REASON_COUNT; i++) {
		s = reason_status((enum reason)i);
		found = 0;
		for (k = 0; k < sizeof ok / sizeof *ok; k++)
			found |= ok[k] == s;
		if (!found)
			fail_msg("%s has status %d", reason_name(i), s);
	}
	/* The ones the issues name, pinned. */
	assert_int_equal(reason_status(REASON_keystone_unavailable), 503);
	assert_int_equal(reason_status(REASON_too_many_requests), 429);
	assert_int_equal(reason_status(REASON_keystone_forbidden), 502);
	assert_int_equal(reason_status(REASON_role_not_delegable), 403);
	assert_int_equal(reason_status(REASON_instance_protected), 403);
	assert_int_equal(reason_status(REASON_invalid_restriction), 400);
	assert_int_equal(reason_status(REASON_invalid_review), 502);
	/* Out of range reads as internal_error, never as a crash. */
	assert_int_equal(reason_status((enum reason)(REASON_COUNT + 5)), 500);
}

/* Login reasons have labels of their own, Keystone's included. */
static void
test_metric_classes(void **state)
{
	assert_int_equal(reason_metric(REASON_keystone_unavailable),
	    REASON_M_LOGIN);
	assert_int_equal(reason_metric(REASON_keystone_forbidden),
	    REASON_M_LOGIN);
	assert_int_equal(reason_metric(REASON_token_invalid), REASON_M_LOGIN);
	assert_int_equal(reason_metric(REASON_missing_field), REASON_M_BODY);
	assert_int_equal(reason_metric(REASON_forbidden), REASON_M_NONE);
}

/*
 * Read the rows "| `name` | status | ..." of the section "## Reasons" of
 * docs/api.md into names/statuses; returns the count.
 */
static int
docs_reasons(char names[][64], int *statuses, int max)
{
	FILE *f;
	char line[4096], *end;
	int n = 0, in = 0;
	size_t len;

	if ((f = fopen(DOCS_API, "r")) == NULL)
		fail_msg("%s: cannot open (run from the top of the tree)",
		    DOCS_API);
	while (fgets(line, sizeof line, f) != NULL) {
		if (strncmp(line, "## ", 3) == 0) {
			in = strcmp(line, "## Reasons\n") == 0;
			continue;
		}
		if (!in || strncmp(line, "| `", 3) != 0)
			continue;
		if ((end = strstr(line + 3, "` | ")) == NULL)
			fail_msg("docs/api.md: bad reasons row: %s", line);
		len = (size_t)(end - (line + 3));
		if (n == max || len >= 64)
			fail_msg("docs/api.md: too many or too long rows");
		memcpy(names[n], line + 3, len);
		names[n][len] = '\0';
		statuses[n] = (int)strtol(end + 4, NULL, 10);
		n++;
	}
	fclose(f);
	return (n);
}

/* docs/api.md lists every reason with its status, and no other. */
static void
test_docs(void **state)
{
	static char names[256][64];
	static int statuses[256];
	enum reason r;
	int n, i, seen[REASON_COUNT] = { 0 };

	n = docs_reasons(names, statuses, 256);
	for (i = 0; i < n; i++) {
		r = reason_lookup(names[i]);
		if (r == REASON_NONE)
			fail_msg("docs/api.md lists %s, which is no reason",
			    names[i]);
		if (seen[r]++)
			fail_msg("docs/api.md lists %s twice", names[i]);
		if (statuses[i] != reason_status(r))
			fail_msg("docs/api.md gives %s status %d, the code %d",
			    names[i], statuses[i], reason_status(r));
	}
	for (i = 1; i < REASON_COUNT; i++) {
		if (!seen[i])
			fail_msg("docs/api.md does not list the reason %s",
			    reason_name((enum reason)i));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_statuses),
		cmocka_unit_test(test_metric_classes),
		cmocka_unit_test(test_docs),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
