/*
 * test_log.c: log lines and journald priorities (src/log.c).
 *
 * A line for the journal starts with its sd-daemon priority ("<3>" error,
 * "<4>" warning, "<6>" info, "<7>" debug), text or JSON alike; a line for
 * anything else has none.  JOURNAL_STREAM matches only the stream whose
 * device and inode it names, never a file stderr was redirected to.
 */
#include <sys/types.h>
#include <sys/stat.h>

#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"

#define TS "2026-12-05T14:00:00.000000Z"

/* Text lines: the prefix for the journal, none otherwise. */
static void
test_text(void **state)
{
	static const struct {
		enum log_level level;
		const char *want;
	} cases[] = {
		{ LOGL_ERR, "<3>" TS " error: boom\n" },
		{ LOGL_WARN, "<4>" TS " warning: boom\n" },
		{ LOGL_INFO, "<6>" TS " info: boom\n" },
		{ LOGL_DEBUG, "<7>" TS " debug: boom\n" },
	};
	char *line;
	size_t i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		line = log_format(cases[i].level, 0, 1, TS, "boom");
		assert_string_equal(line, cases[i].want);
		free(line);
		line = log_format(cases[i].level, 0, 0, TS, "boom");
		assert_string_equal(line, cases[i].want + 3);
		free(line);
	}
}

/* JSON lines: the prefix goes before the object. */
static void
test_json(void **state)
{
	char *line;

	line = log_format(LOGL_ERR, 1, 1, TS, "a \"b\"");
	assert_string_equal(line,
	    "<3>{\"time\":\"" TS "\",\"level\":\"error\",\"msg\":\"a \\\"b\\\"\"}\n");
	free(line);
	line = log_format(LOGL_WARN, 1, 0, TS, "x");
	assert_string_equal(line,
	    "{\"time\":\"" TS "\",\"level\":\"warning\",\"msg\":\"x\"}\n");
	free(line);
}

/* JOURNAL_STREAM names DEV:INODE of one stream; anything else is no. */
static void
test_journal_match(void **state)
{
	char tmpl[] = "/tmp/test_log.XXXXXX", env[128], other[] =
	    "/tmp/test_log.XXXXXX";
	struct stat st;
	int fd, fd2;

	assert_true((fd = mkstemp(tmpl)) != -1);
	assert_true((fd2 = mkstemp(other)) != -1);
	unlink(tmpl);
	unlink(other);
	assert_int_equal(fstat(fd, &st), 0);
	snprintf(env, sizeof env, "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	assert_true(log_journal_match(env, fd));
	assert_false(log_journal_match(env, fd2)); /* stderr redirected */
	assert_false(log_journal_match(NULL, fd));
	assert_false(log_journal_match("", fd));
	snprintf(env, sizeof env, "%llu:%llux", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	assert_false(log_journal_match(env, fd));
	snprintf(env, sizeof env, "%llu", (unsigned long long)st.st_dev);
	assert_false(log_journal_match(env, fd));
	snprintf(env, sizeof env, "%llu:", (unsigned long long)st.st_dev);
	assert_false(log_journal_match(env, fd));
	snprintf(env, sizeof env, "-%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	assert_false(log_journal_match(env, fd));
	assert_false(log_journal_match("1:99999999999999999999999", fd));
	assert_false(log_journal_match(env, -1));
	close(fd);
	close(fd2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_journal_match),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
