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
#include <time.h>
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

/* The login audit record as cJSON builds and prints it (the old way). */
static char *
audit_by_cjson(const struct audit_login *a, const char *ts)
{
	cJSON	*o = cJSON_CreateObject();
	char	*s;

#define ADD(k, v) do { if ((v) != NULL) cJSON_AddStringToObject(o, k, v); } while (0)
	ADD("time", ts);
	ADD("type", "login");
	ADD("instance", a->instance_id);
	ADD("role", a->role);
	ADD("namespace", a->namespace);
	ADD("service_account", a->service_account);
	ADD("pod", a->pod);
	ADD("claimed_namespace", a->claimed_namespace);
	ADD("claimed_service_account", a->claimed_service_account);
	ADD("claimed_pod", a->claimed_pod);
	ADD("node", a->node);
	ADD("result", a->status == 200 ? "success" : "failure");
	cJSON_AddNumberToObject(o, "status", a->status);
	ADD("reason", a->reason);
	ADD("token_audit_id", a->token_audit_id);
	ADD("jwt_sha256", a->jwt_id);
	ADD("client", a->client);
	cJSON_AddNumberToObject(o, "latency_ms", a->latency_ms);
#undef ADD
	if (a->policy != NULL)
		cJSON_AddItemToObject(o, "policy",
		    cJSON_Duplicate(a->policy, 1));
	if (a->annotations != NULL)
		cJSON_AddItemToObject(o, "service_account_annotations",
		    cJSON_Duplicate(a->annotations, 1));
	s = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return (s);
}

/*
 * audit_login_text writes the record directly: byte for byte what cJSON
 * printed, for plain, escaped and odd values and numbers.
 */
static void
test_audit_login_text(void **state)
{
	static const double	 lat[] = { 0, 7.2, 0.1, 1e-7, 12345.678901234567,
	    1.0 / 3, 2147483648.5, -1, 1e300 };
	struct audit_login	 a;
	cJSON			*pol, *ann;
	char			*want, *got;
	size_t			 i;

	(void)state;
	pol = cJSON_Parse("{\"generation\":\"two\",\"n\":3,\"ok\":true}");
	ann = cJSON_Parse("{\"team\":\"a\\\"b\\u0001\"}");
	for (i = 0; i < sizeof lat / sizeof *lat; i++) {
		memset(&a, 0, sizeof a);
		a.instance_id = "0123456789abcdef0123456789abcdef";
		a.role = i % 2 ? "web" : "we\"b\\\n\t\r\b\f\x01\x1f\x7f é";
		if (i % 3 == 0) {
			a.claimed_namespace = "demo";
			a.claimed_service_account = "web";
			a.claimed_pod = "";
			a.status = 401;
			a.reason = "signature_invalid";
		} else {
			a.namespace = "demo";
			a.service_account = "web";
			a.pod = "web-0";
			a.node = "node-1";
			a.status = 200;
			a.token_audit_id = "mrJJHregZUXWZOEBJIJ-7A";
			a.policy = i % 2 ? pol : NULL;
			a.annotations = i % 4 == 1 ? ann : NULL;
		}
		a.jwt_id = "af893602";
		a.client = "10.0.0.7";
		a.latency_ms = lat[i];
		want = audit_by_cjson(&a, "2026-12-05T17:00:00.000000Z");
		got = audit_login_text(&a, "2026-12-05T17:00:00.000000Z");
		assert_string_equal(got, want);
		free(want);
		free(got);
	}
	cJSON_Delete(pol);
	cJSON_Delete(ann);
}

/* Check one line of f: a timestamp, " info: ", msg, a newline. */
static void
check_info_line(FILE *f, const char *msg)
{
	char	*line = NULL;
	size_t	 cap = 0;
	ssize_t	 n;

	n = getline(&line, &cap, f);
	assert_true(n == (ssize_t)(TIMESTAMP_LEN + strlen(" info: ") +
	    strlen(msg) + 1));
	assert_memory_equal(line + TIMESTAMP_LEN, " info: ", 7);
	assert_memory_equal(line + TIMESTAMP_LEN + 7, msg, strlen(msg));
	assert_int_equal(line[n - 1], '\n');
	free(line);
}

/*
 * log_msg writes short text lines from a stack buffer and long ones
 * through log_format: the same line either way, whole, one per call.
 */
static void
test_stack_and_heap_lines(void **state)
{
	char	 path[] = "/tmp/k8sauth-log-XXXXXX", big[3000];
	int	 fd, saved;
	FILE	*f;
	size_t	 len;
	static const size_t lens[] = { 0, 1, 900, 990, 991, 992, 993, 994,
	    995, 1000, 1023, 1024, 2999 };
	size_t	 i;

	(void)state;
	memset(big, 'x', sizeof big);
	assert_true((fd = mkstemp(path)) != -1);
	saved = dup(STDERR_FILENO);
	assert_true(dup2(fd, STDERR_FILENO) != -1);
	for (i = 0; i < sizeof lens / sizeof *lens; i++)
		log_info("%.*s", (int)lens[i], big);
	assert_true(dup2(saved, STDERR_FILENO) != -1);
	close(saved);
	assert_non_null(f = fdopen(fd, "r"));
	rewind(f);
	for (i = 0; i < sizeof lens / sizeof *lens; i++) {
		len = lens[i];
		big[len] = '\0';
		check_info_line(f, big);
		big[len] = 'x';
	}
	assert_int_equal(fgetc(f), EOF);
	fclose(f);
	unlink(path);
}

/*
 * A line's timestamp (its date and seconds formatted once a second, the
 * microseconds per line) is the time it was logged, as util_timestamp()
 * writes it: between a stamp taken before and one after, across a change
 * of second.
 */
static void
test_timestamp(void **state)
{
	char path[] = "/tmp/k8sauth-log-XXXXXX", before[TIMESTAMP_LEN + 1],
	    after[TIMESTAMP_LEN + 1], *line = NULL;
	struct timespec pause = { 0, 300 * 1000 * 1000 };
	int fd, saved, i;
	size_t cap = 0;
	FILE *f;

	assert_true((fd = mkstemp(path)) != -1);
	assert_true((saved = dup(STDERR_FILENO)) != -1);
	assert_true(dup2(fd, STDERR_FILENO) != -1);
	for (i = 0; i < 5; i++) {
		util_timestamp(before);
		log_info("stamp");
		util_timestamp(after);
		assert_true(lseek(fd, 0, SEEK_SET) == 0);
		assert_non_null(f = fdopen(dup(fd), "r"));
		assert_true(getline(&line, &cap, f) > TIMESTAMP_LEN);
		fclose(f);
		line[TIMESTAMP_LEN] = '\0';
		assert_true(strcmp(before, line) <= 0);
		assert_true(strcmp(line, after) <= 0);
		assert_int_equal(line[TIMESTAMP_LEN - 1], 'Z');
		assert_true(ftruncate(fd, 0) == 0);
		assert_true(lseek(fd, 0, SEEK_SET) == 0);
		nanosleep(&pause, NULL);
	}
	assert_true(dup2(saved, STDERR_FILENO) != -1);
	close(saved);
	close(fd);
	free(line);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_journal_match),
		cmocka_unit_test(test_audit_login_text),
		cmocka_unit_test(test_stack_and_heap_lines),
		cmocka_unit_test(test_timestamp),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
