/*
 * test_db.c: opening, pragmas, the statement cache and migrations on
 * SQLite; on MySQL (the database tests/run.sh unit gives this binary on
 * its private mariadbd, K8SAUTH_TEST_MYSQL_URL) the ?N rewriting, found
 * rows, error classes (deadlock, lost connection), concurrent db-sync,
 * and what must never show the password.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "k8sauth.h"
#include "testlib.h"

struct fixture {
	char		 dir[64];
	char		*path;
	struct db	*db;
};

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof *f);
	char		*cause = NULL;

	snprintf(f->dir, sizeof f->dir, "/tmp/k8sauth-db-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	xasprintf(&f->path, "%s/test.db", f->dir);
	f->db = db_open(f->path, &cause);
	assert_null(cause);
	assert_non_null(f->db);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;
	const char	*sfx[] = { "", "-wal", "-shm" };
	char		*p;
	size_t		 i;

	db_close(f->db);
	for (i = 0; i < 3; i++) {
		xasprintf(&p, "%s%s", f->path, sfx[i]);
		unlink(p);
		free(p);
	}
	assert_int_equal(rmdir(f->dir), 0);
	free(f->path);
	free(f);
	return (0);
}

/* One integer from a query on the raw handle. */
static int
query_int(struct db *db, const char *sql)
{
	sqlite3_stmt	*st;
	int		 v;

	assert_int_equal(sqlite3_prepare_v2(db_handle(db), sql, -1, &st,
	    NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return (v);
}

/* The schema as one string (every object's SQL, sorted by name). */
static char *
schema_text(struct db *db)
{
	sqlite3_stmt	*st;
	char		*out = xstrdup(""), *n;

	assert_int_equal(sqlite3_prepare_v2(db_handle(db),
	    "SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM "
	    "sqlite_master ORDER BY name", -1, &st, NULL), SQLITE_OK);
	while (sqlite3_step(st) == SQLITE_ROW) {
		xasprintf(&n, "%s%s\n", out, sqlite3_column_text(st, 0));
		free(out);
		out = n;
	}
	sqlite3_finalize(st);
	return (out);
}

static void
test_open_pragmas(void **state)
{
	struct fixture	*f = *state;
	sqlite3_stmt	*st;
	struct stat	 sb;

	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	assert_int_equal(sqlite3_prepare_v2(db_handle(f->db),
	    "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
	sqlite3_finalize(st);
	assert_int_equal(query_int(f->db, "PRAGMA foreign_keys"), 1);
	assert_int_equal(query_int(f->db, "PRAGMA synchronous"), 1);
	assert_int_equal(query_int(f->db, "PRAGMA trusted_schema"), 0);
	assert_int_equal(db_schema_version(f->db), 0);
}

static void
test_migrate_from_empty(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int		 n;

	db_migrations(&n);
	assert_true(n >= 1);
	assert_int_equal(db_migrate(f->db, &cause), 0);
	assert_null(cause);
	assert_int_equal(db_schema_version(f->db), n);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sqlite_master"
	    " WHERE type = 'table' AND name IN ('instances', 'roles', "
	    "'restrictions', 'restriction_roles')"), 4);
	assert_int_not_equal(query_int(f->db, "PRAGMA application_id"), 0);
}

static void
test_migrate_again_is_noop(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *before, *after;
	int		 n;

	db_migrations(&n);
	assert_int_equal(db_migrate(f->db, &cause), 0);
	assert_int_equal(sqlite3_exec(db_handle(f->db), "INSERT INTO "
	    "restrictions (id, domain_id, created_at, updated_at) VALUES "
	    "('r', 'd', 'c', 'u')", NULL, NULL, NULL), SQLITE_OK);
	before = schema_text(f->db);
	assert_int_equal(db_migrate(f->db, &cause), 0);
	assert_null(cause);
	after = schema_text(f->db);
	assert_string_equal(before, after);
	assert_int_equal(db_schema_version(f->db), n);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "restrictions"), 1);
	free(before);
	free(after);
}

static void
test_refuse_newer(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;
	int		 n;

	db_migrations(&n);
	assert_int_equal(sqlite3_exec(db_handle(f->db),
	    "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_migrate(f->db, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "newer"));
	assert_non_null(strstr(cause, "99"));
	free(cause);
	assert_int_equal(db_schema_version(f->db), 99);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "sqlite_master"), 0);
}

static void
test_refuse_foreign_application(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;

	assert_int_equal(sqlite3_exec(db_handle(f->db),
	    "PRAGMA application_id = 12345", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_migrate(f->db, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "application_id"));
	free(cause);
	assert_int_equal(db_schema_version(f->db), 0);
}

static void
test_failed_migration_rolls_back(void **state)
{
	struct fixture		*f = *state;
	const char *const	*real;
	const char		*list[2];
	char			*cause = NULL;
	int			 n;

	real = db_migrations(&n);
	list[0] = real[0];
	list[1] = "CREATE TABLE extra (x INTEGER);"
	    "INSERT INTO extra VALUES (1);"
	    "SELECT no_such_function();";
	assert_int_equal(db_migrate_list(f->db, list, 2, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "migration 2"));
	free(cause);
	assert_int_equal(db_schema_version(f->db), 1);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sqlite_master"
	    " WHERE name = 'extra'"), 0);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM sqlite_master"
	    " WHERE name = 'instances'"), 1);
	/* No transaction is left open. */
	assert_int_not_equal(sqlite3_get_autocommit(db_handle(f->db)), 0);
}

static void
test_from_every_older_version(void **state)
{
	struct fixture		*f = *state;
	const char *const	*migs;
	struct db		*db;
	char			*cause = NULL, *path, *fresh, *up;
	int			 n, v;

	migs = db_migrations(&n);
	assert_int_equal(db_migrate(f->db, &cause), 0);
	fresh = schema_text(f->db);
	for (v = 0; v < n; v++) {
		xasprintf(&path, "%s/old-%d.db", f->dir, v);
		db = db_open(path, &cause);
		assert_non_null(db);
		assert_int_equal(db_migrate_list(db, migs, v, &cause), 0);
		assert_int_equal(db_schema_version(db), v);
		assert_int_equal(db_migrate(db, &cause), 0);
		assert_int_equal(db_schema_version(db), n);
		up = schema_text(db);
		assert_string_equal(up, fresh);
		free(up);
		db_close(db);
		unlink(path);
		free(path);
		xasprintf(&path, "%s/old-%d.db-wal", f->dir, v);
		unlink(path);
		free(path);
		xasprintf(&path, "%s/old-%d.db-shm", f->dir, v);
		unlink(path);
		free(path);
	}
	free(fresh);
}

static void
test_missing_directory(void **state)
{
	char	*cause = NULL;

	assert_null(db_open("/tmp/k8sauth-no-such-dir-xyz/sub/test.db",
	    &cause));
	assert_non_null(cause);
	assert_non_null(strstr(cause, "/tmp/k8sauth-no-such-dir-xyz/sub"));
	assert_non_null(strstr(cause, "does not exist"));
	free(cause);
}

static void
test_statement_cache(void **state)
{
	struct fixture		*f = *state;
	struct db_stmt		*a, *b;
	char			*cause = NULL;

	assert_int_equal(db_migrate(f->db, &cause), 0);
	a = db_stmt(f->db, DB_INSTANCE_GET);
	assert_non_null(a);
	b = db_stmt(f->db, DB_INSTANCE_GET);
	assert_ptr_equal(a, b);
	assert_int_equal(db_stmt_done(f->db, a), 0);
	/* Reset and cleared: a second run sees NULL for the parameter. */
	a = db_stmt_sql(f->db, "SELECT ?1");
	assert_non_null(a);
	assert_ptr_equal(db_stmt_sql(f->db, "SELECT ?1"), a);
	assert_int_equal(db_bind_text(a, 1, "x"), 0);
	assert_int_equal(db_step(a), DB_ROW);
	assert_string_equal(db_column_text(a, 0), "x");
	assert_int_equal(db_stmt_done(f->db, a), 0);
	assert_int_equal(db_step(a), DB_ROW);
	assert_true(db_column_is_null(a, 0));
	assert_null(db_column_text(a, 0));
	assert_int_equal(db_stmt_done(f->db, a), 0);
	assert_null(db_stmt_sql(f->db, "SELECT FROM nonsense"));
}

static void
test_transactions(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL;

	assert_int_equal(db_migrate(f->db, &cause), 0);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(sqlite3_exec(db_handle(f->db), "INSERT INTO "
	    "restrictions (id, domain_id, created_at, updated_at) VALUES "
	    "('r1', 'd', 'c', 'u')", NULL, NULL, NULL), SQLITE_OK);
	db_rollback(f->db);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "restrictions"), 0);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(sqlite3_exec(db_handle(f->db), "INSERT INTO "
	    "restrictions (id, domain_id, created_at, updated_at) VALUES "
	    "('r1', 'd', 'c', 'u')", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "restrictions"), 1);
	/*
	 * Levels nest: an inner commit only closes its level, an inner
	 * rollback makes the outer commit roll everything back.
	 */
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(db_depth(f->db), 2);
	assert_int_equal(sqlite3_exec(db_handle(f->db), "INSERT INTO "
	    "restrictions (id, domain_id, created_at, updated_at) VALUES "
	    "('r2', 'd', 'c', 'u')", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(db_depth(f->db), 1);
	assert_int_equal(db_commit(f->db), 0);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "restrictions"), 2);
	assert_int_equal(db_begin(f->db), 0);
	assert_int_equal(sqlite3_exec(db_handle(f->db), "INSERT INTO "
	    "restrictions (id, domain_id, created_at, updated_at) VALUES "
	    "('r3', 'd', 'c', 'u')", NULL, NULL, NULL), SQLITE_OK);
	assert_int_equal(db_begin(f->db), 0);
	db_rollback(f->db);
	assert_int_equal(db_commit(f->db), STORE_ERROR);
	assert_int_equal(db_depth(f->db), 0);
	assert_int_equal(query_int(f->db, "SELECT count(*) FROM "
	    "restrictions"), 2);
}

/* A MySQL connection to the test database, migrated. */
static struct db *
mysql_open(void)
{
	struct db	*db;
	char		*cause = NULL;

	if ((db = db_open(testlib_mysql_url(), &cause)) == NULL)
		fail_msg("db_open: %s", cause);
	if (db_migrate(db, &cause) != 0)
		fail_msg("db_migrate: %s", cause);
	return (db);
}

/* One integer through the engine-neutral statement API. */
static int64_t
stmt_int(struct db *db, const char *sql)
{
	struct db_stmt	*st;
	int64_t		 v;

	assert_non_null(st = db_stmt_sql(db, sql));
	assert_int_equal(db_step(st), DB_ROW);
	v = db_column_int(st, 0);
	db_stmt_done(db, st);
	return (v);
}

/* ?N numbers are bound by number, the same one at two places. */
static void
test_mysql_numbered_params(void **state)
{
	struct db	*db = mysql_open();
	struct db_stmt	*st;

	(void)state;
	assert_non_null(st = db_stmt_sql(db, "SELECT ?2, ?1, ?2, 'a?3'"));
	assert_int_equal(db_bind_text(st, 1, "one"), 0);
	assert_int_equal(db_bind_int(st, 2, 7), 0);
	assert_int_equal(db_step(st), DB_ROW);
	assert_string_equal(db_column_text(st, 0), "7");
	assert_string_equal(db_column_text(st, 1), "one");
	assert_int_equal(db_column_int(st, 2), 7);
	assert_string_equal(db_column_text(st, 3), "a?3");
	assert_int_equal(db_step(st), DB_DONE);
	db_stmt_done(db, st);
	/* Reset clears the values: an unbound parameter is NULL. */
	assert_int_equal(db_step(st), DB_ROW);
	assert_true(db_column_is_null(st, 0));
	db_stmt_done(db, st);
	/* A long value grows its column buffer. */
	assert_non_null(st = db_stmt_sql(db, "SELECT REPEAT('x', ?1)"));
	assert_int_equal(db_bind_int(st, 1, 100000), 0);
	assert_int_equal(db_step(st), DB_ROW);
	assert_int_equal(strlen(db_column_text(st, 0)), 100000);
	db_stmt_done(db, st);
	/* Rows after a grown one: short, then longer than the grown size. */
	assert_non_null(st = db_stmt_sql(db,
	    "SELECT REPEAT('a', 1000) UNION ALL SELECT 'b' "
	    "UNION ALL SELECT REPEAT('c', 3000)"));
	assert_int_equal(db_step(st), DB_ROW);
	assert_int_equal(strlen(db_column_text(st, 0)), 1000);
	assert_int_equal(db_step(st), DB_ROW);
	assert_string_equal(db_column_text(st, 0), "b");
	assert_int_equal(db_step(st), DB_ROW);
	assert_int_equal(strlen(db_column_text(st, 0)), 3000);
	assert_int_equal(db_column_text(st, 0)[2999], 'c');
	assert_int_equal(db_step(st), DB_DONE);
	db_stmt_done(db, st);
	db_close(db);
}

/* An update that changes nothing still counts the row it matched. */
static void
test_mysql_found_rows(void **state)
{
	struct db	*db = mysql_open();
	struct db_stmt	*st;

	(void)state;
	assert_non_null(st = db_stmt_sql(db,
	    "UPDATE revision SET value = value WHERE id = ?1"));
	assert_int_equal(db_bind_int(st, 1, 1), 0);
	assert_int_equal(db_step(st), DB_DONE);
	assert_int_equal(db_changes(db), 1);
	db_stmt_done(db, st);
	db_close(db);
}

struct deadlock_arg {
	struct db	*db;
	const char	*sql;
	int		 result;
};

/* Take the other row's lock in a second thread (it blocks). */
static void *
deadlock_thread(void *p)
{
	struct deadlock_arg	*a = p;

	a->result = db_exec(a->db, a->sql, NULL);
	if (a->result == 0)
		a->result = db_commit(a->db);
	return (NULL);
}

/*
 * Two connections lock two rows in opposite orders: InnoDB kills one
 * transaction with 1213, which must come back as STORE_RETRY (and the
 * other commits).
 */
static void
test_mysql_deadlock_is_retry(void **state)
{
	struct db		*a = mysql_open(), *b = mysql_open();
	struct deadlock_arg	 arg;
	pthread_t		 t;
	int			 rb;

	(void)state;
	assert_int_equal(db_exec(a, "INSERT IGNORE INTO revision (id, value) "
	    "VALUES (2, 0)", NULL), 0);
	assert_int_equal(db_begin(a), 0);
	assert_int_equal(db_begin(b), 0);
	assert_int_equal(db_exec(a, "UPDATE revision SET value = value + 1 "
	    "WHERE id = 1", NULL), 0);
	assert_int_equal(db_exec(b, "UPDATE revision SET value = value + 1 "
	    "WHERE id = 2", NULL), 0);
	arg.db = a;
	arg.sql = "UPDATE revision SET value = value + 1 WHERE id = 2";
	arg.result = 99;
	assert_int_equal(pthread_create(&t, NULL, deadlock_thread, &arg), 0);
	usleep(300000); /* a waits for b's row lock */
	rb = db_exec(b, "UPDATE revision SET value = value + 1 WHERE id = 1",
	    NULL);
	if (rb == 0)
		rb = db_commit(b);
	else
		db_rollback(b);
	assert_int_equal(pthread_join(t, NULL), 0);
	if (arg.result != 0)
		db_rollback(a);
	/* Exactly one lost, as STORE_RETRY. */
	assert_true((rb == STORE_RETRY && arg.result == 0) ||
	    (rb == 0 && arg.result == STORE_RETRY));
	assert_int_equal(db_exec(a, "DELETE FROM revision WHERE id = 2", NULL),
	    0);
	db_close(a);
	db_close(b);
}

/*
 * The server drops the connection: STORE_UNAVAILABLE, the struct db is
 * dead and says so at once from then on.
 */
static void
test_mysql_lost_connection(void **state)
{
	struct db	*a = mysql_open(), *b = mysql_open();
	uint64_t	 rev;
	char		 sql[64];

	(void)state;
	assert_int_equal(store_revision(a, &rev), STORE_OK);
	snprintf(sql, sizeof sql, "KILL CONNECTION %lld",
	    (long long)stmt_int(a, "SELECT CONNECTION_ID()"));
	assert_int_equal(db_exec(b, sql, NULL), 0);
	assert_int_equal(store_revision(a, &rev), STORE_UNAVAILABLE);
	assert_true(db_dead(a));
	assert_int_equal(store_revision(a, &rev), STORE_UNAVAILABLE);
	assert_int_equal(store_begin(a), STORE_UNAVAILABLE);
	assert_int_equal(db_exec(a, "SELECT 1", NULL), STORE_UNAVAILABLE);
	db_close(a);
	db_close(b);
}

/*
 * Nothing listens: db_open fails at once (no hang), and neither the
 * cause nor anything else shows the password.
 */
static void
test_mysql_refused_masks_password(void **state)
{
	char	*cause = NULL;

	(void)state;
	assert_null(db_open("mysql+pymysql://k8s:Sup3r%40Secret@127.0.0.1:1/x",
	    &cause));
	assert_non_null(cause);
	assert_non_null(strstr(cause, "cannot connect"));
	assert_non_null(strstr(cause, "k8s:***@127.0.0.1:1/x"));
	assert_null(strstr(cause, "Sup3r"));
	assert_null(strstr(cause, "Secret"));
	free(cause);
}

/* Drop every table of the test database (the order of the FKs). */
static void
mysql_drop_all(struct db *db)
{
	assert_int_equal(db_exec(db, "DROP TABLE IF EXISTS roles, "
	    "restriction_roles, restrictions, instances, revision, "
	    "schema_version", NULL), 0);
}

/*
 * db-sync on two replicas at once, from an empty database: both succeed
 * (the named lock, idempotent steps) and the schema is complete.
 */
static void
test_mysql_concurrent_db_sync(void **state)
{
	struct db	*db = mysql_open();
	char		*cause = NULL;
	pid_t		 pid[2];
	int		 i, status;

	(void)state;
	mysql_drop_all(db);
	db_close(db);
	for (i = 0; i < 2; i++) {
		pid[i] = fork();
		assert_true(pid[i] >= 0);
		if (pid[i] == 0) {
			db = db_open(testlib_mysql_url(), &cause);
			_exit(db != NULL && db_migrate(db, &cause) == 0 ? 0 :
			    1);
		}
	}
	for (i = 0; i < 2; i++) {
		assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	db = mysql_open();
	assert_int_equal(db_schema_version(db), db_schema_latest());
	assert_int_equal(stmt_int(db, "SELECT COUNT(*) FROM schema_version"),
	    1);
	assert_int_equal(stmt_int(db, "SELECT value FROM revision"), 1);
	assert_int_equal(stmt_int(db, "SELECT COUNT(*) FROM "
	    "information_schema.tables WHERE table_schema = DATABASE() AND "
	    "(engine <> 'InnoDB' OR table_collation <> 'utf8mb4_bin')"), 0);
	/* Every table has a primary key (Galera needs one). */
	assert_int_equal(stmt_int(db, "SELECT COUNT(*) FROM "
	    "information_schema.tables t WHERE t.table_schema = DATABASE() "
	    "AND NOT EXISTS (SELECT 1 FROM information_schema.table_constraints"
	    " c WHERE c.table_schema = t.table_schema AND c.table_name = "
	    "t.table_name AND c.constraint_type = 'PRIMARY KEY')"), 0);
	db_close(db);
}

/* A schema newer than the binary is refused, as on SQLite. */
static void
test_mysql_refuse_newer(void **state)
{
	struct db	*db = mysql_open();
	char		*cause = NULL;

	(void)state;
	assert_int_equal(db_exec(db, "UPDATE schema_version SET version = "
	    "version + 1", NULL), 0);
	assert_int_equal(db_migrate(db, &cause), -1);
	assert_non_null(strstr(cause, "newer than this binary"));
	free(cause);
	assert_int_equal(db_exec(db, "UPDATE schema_version SET version = "
	    "version - 1", NULL), 0);
	db_close(db);
}

/*
 * ssl_ca asks for TLS with a verified server: the private mariadbd has
 * no TLS, so the connection is refused rather than made in clear text.
 */
static void
test_mysql_ssl_ca_never_falls_back(void **state)
{
	struct db	*db;
	char		*url, *cause = NULL;

	(void)state;
	xasprintf(&url, "%s?ssl_ca=/etc/ssl/certs/ca-certificates.crt",
	    testlib_mysql_url());
	db = db_open(url, &cause);
	if (db != NULL)
		fail_msg("connected without TLS despite ssl_ca");
	assert_non_null(strstr(cause, "cannot connect"));
	assert_non_null(strstr(cause, "SSL"));
	free(cause);
	free(url);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_open_pragmas, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_migrate_from_empty, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_migrate_again_is_noop,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuse_newer, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_refuse_foreign_application, setup, teardown),
		cmocka_unit_test_setup_teardown(
		    test_failed_migration_rolls_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_from_every_older_version,
		    setup, teardown),
		cmocka_unit_test(test_missing_directory),
		cmocka_unit_test_setup_teardown(test_statement_cache, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_transactions, setup,
		    teardown),
		cmocka_unit_test(test_mysql_numbered_params),
		cmocka_unit_test(test_mysql_found_rows),
		cmocka_unit_test(test_mysql_deadlock_is_retry),
		cmocka_unit_test(test_mysql_lost_connection),
		cmocka_unit_test(test_mysql_refused_masks_password),
		cmocka_unit_test(test_mysql_concurrent_db_sync),
		cmocka_unit_test(test_mysql_refuse_newer),
		cmocka_unit_test(test_mysql_ssl_ca_never_falls_back),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
