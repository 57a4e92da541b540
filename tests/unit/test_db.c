/*
 * test_db.c: opening, pragmas, the statement cache and migrations.
 */
#include <sys/stat.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "k8sauth.h"

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
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
