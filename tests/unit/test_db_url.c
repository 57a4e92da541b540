/*
 * test_db_url.c: the [database] connection string: the accepted forms,
 * percent-decoding, the refused ones (each with a reason naming what is
 * wrong) and the masked form, the only one ever logged.
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

static void
test_sqlite_forms(void **state)
{
	struct db_url	 u;
	char		*cause = NULL;

	(void)state;
	assert_int_equal(db_url_parse("sqlite:///var/lib/k/k.db", &u, &cause),
	    0);
	assert_int_equal(u.kind, DB_SQLITE);
	assert_string_equal(u.path, "/var/lib/k/k.db");
	db_url_free(&u);
	assert_int_equal(db_url_parse("sqlite:////var/k.db", &u, &cause), 0);
	assert_string_equal(u.path, "/var/k.db");
	db_url_free(&u);
	assert_int_equal(db_url_parse("/tmp/x.db", &u, &cause), 0);
	assert_string_equal(u.path, "/tmp/x.db");
	db_url_free(&u);
	assert_int_equal(db_url_parse("sqlite://relative.db", &u, &cause), -1);
	assert_non_null(strstr(cause, "sqlite:///ABSOLUTE/PATH"));
	free(cause);
}

static void
test_mysql_full(void **state)
{
	struct db_url	 u;
	char		*cause = NULL;

	(void)state;
	assert_int_equal(db_url_parse("mysql+pymysql://key%3Astone:p%40ss%2Fw:"
	    "rd@db.example:3307/keystone_k8s_auth?charset=utf8&ssl_ca=%2Fetc%2F"
	    "ca.pem", &u, &cause), 0);
	assert_int_equal(u.kind, DB_MYSQL);
	assert_string_equal(u.user, "key:stone");
	assert_string_equal(u.password, "p@ss/w:rd");
	assert_string_equal(u.host, "db.example");
	assert_int_equal(u.port, 3307);
	assert_string_equal(u.database, "keystone_k8s_auth");
	assert_string_equal(u.ssl_ca, "/etc/ca.pem");
	assert_string_equal(u.charset, "utf8mb4");
	assert_null(u.unix_socket);
	db_url_free(&u);
}

static void
test_mysql_other_forms(void **state)
{
	struct db_url	 u;
	char		*cause = NULL;

	(void)state;
	assert_int_equal(db_url_parse("mysql://k@[::1]:3306/db", &u, &cause),
	    0);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 3306);
	assert_null(u.password);
	assert_string_equal(u.charset, "utf8mb4");
	db_url_free(&u);
	assert_int_equal(db_url_parse("mysql://k:a/b?c:d@h/db", &u, &cause),
	    0);
	assert_string_equal(u.password, "a/b?c:d");
	assert_string_equal(u.host, "h");
	assert_string_equal(u.database, "db");
	db_url_free(&u);
	assert_int_equal(db_url_parse("mysql://k:p@/db?unix_socket=/run/m.sock",
	    &u, &cause), 0);
	assert_string_equal(u.host, "");
	assert_int_equal(u.port, 0);
	assert_string_equal(u.unix_socket, "/run/m.sock");
	db_url_free(&u);
}

/* Each refused URL, and a word its reason must contain. */
static void
test_refused(void **state)
{
	static const char *const bad[][2] = {
		{ "postgresql://k:p@h/db", "must be" },
		{ "mysql://k:p@h/db?sslmode=require", "\"sslmode\"" },
		{ "mysql://k:p@h/db?ssl_ca=", "ssl_ca" },
		{ "mysql://k:p@h/db?charset=latin1", "charset" },
		{ "mysql://k:p@h/db?charset=utf8&charset=utf8", "twice" },
		{ "mysql://k:p@h:0/db", "port" },
		{ "mysql://k:p@h:99999/db", "port" },
		{ "mysql://k:p@h:33x/db", "port" },
		{ "mysql://k:p@h", "database name" },
		{ "mysql://k:p@h/", "database name" },
		{ "mysql://h/db", "user name" },
		{ "mysql://:p@h/db", "user name" },
		{ "mysql://k:p%zz@h/db", "password" },
		{ "mysql://k:p%00@h/db", "password" },
		{ "mysql://k:p@/db", "host" },
		{ "", "required" },
		{ "mysql://k:pa/ss@h", "database name" },
	};
	struct db_url	 u;
	char		*cause;
	size_t		 i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cause = NULL;
		if (db_url_parse(bad[i][0], &u, &cause) != -1)
			fail_msg("accepted: %s", bad[i][0]);
		if (strstr(cause, bad[i][1]) == NULL)
			fail_msg("%s: cause \"%s\" lacks \"%s\"", bad[i][0],
			    cause, bad[i][1]);
		/* The password "p" never shows: only "k:***@". */
		if (strstr(bad[i][0], "k:p") != NULL &&
		    strstr(cause, "k:p") != NULL)
			fail_msg("%s: cause shows the password: %s", bad[i][0],
			    cause);
		free(cause);
	}
}

static void
test_masked(void **state)
{
	static const char *const cases[][2] = {
		{ "mysql+pymysql://keystone:s3cret@db/keystone_k8s_auth",
		    "mysql+pymysql://keystone:***@db/keystone_k8s_auth" },
		{ "mysql://k:p@ss@h:1/d?unix_socket=/s",
		    "mysql://k:***@h:1/d?unix_socket=/s" },
		{ "mysql://k@h/d", "mysql://k@h/d" },
		{ "mysql://k:pa/ss?x@h/d", "mysql://k:***@h/d" },
		{ "mysql://k:a:b@h", "mysql://k:***@h" },
		{ "sqlite:///var/k.db", "sqlite:///var/k.db" },
		{ "/var/k.db", "/var/k.db" },
	};
	char	*m;
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		m = db_url_masked(cases[i][0]);
		assert_string_equal(m, cases[i][1]);
		free(m);
	}
}

/* db-copy's argv: the password overwritten in place, nothing else. */
static void
test_wipe_password(void **state)
{
	static const char *const cases[][2] = {
		{ "mysql+pymysql://keystone:s3cret@db/keystone_k8s_auth",
		    "mysql+pymysql://keystone:xxxxxx@db/keystone_k8s_auth" },
		{ "mysql://k:p@ss@h:1/d?unix_socket=/s",
		    "mysql://k:xxxx@h:1/d?unix_socket=/s" },
		{ "mysql://k:pa/ss?x@h/d", "mysql://k:xxxxxxx@h/d" },
		{ "mysql://k:%40b@h/d", "mysql://k:xxxx@h/d" },
		{ "mysql://k@h/d", "mysql://k@h/d" },
		{ "sqlite:///var/k.db", "sqlite:///var/k.db" },
		{ "/var/k.db", "/var/k.db" },
	};
	char	*u;
	size_t	 i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		u = xstrdup(cases[i][0]);
		db_url_wipe_password(u);
		assert_string_equal(u, cases[i][1]);
		free(u);
	}
	db_url_wipe_password(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sqlite_forms),
		cmocka_unit_test(test_mysql_full),
		cmocka_unit_test(test_mysql_other_forms),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_masked),
		cmocka_unit_test(test_wipe_password),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
