/*
 * db_sqlite.c: the SQLite engine behind db.c (the embedded default).
 *
 * One sqlite3 connection opened NOMUTEX in WAL mode with foreign keys on,
 * defensive and untrusted-schema settings, and a short busy timeout
 * (DB_SQLITE_BUSY_TIMEOUT_MS) as the only wait for another connection's
 * write lock.  Transactions are BEGIN IMMEDIATE so they never fail half-way
 * with SQLITE_BUSY_SNAPSHOT.  Extended result codes map to STORE_* classes:
 * unique and primary key violations are conflicts, foreign key violations
 * (ON DELETE RESTRICT is a built-in trigger) DB_FOREIGN_KEY, busy and
 * locked STORE_RETRY.
 *
 * The schema is db.c's ordered array of migrations; PRAGMA user_version
 * says how many have been applied, each is applied in its own transaction
 * together with the new user_version, and a database newer than this
 * binary is refused.  A file is marked with PRAGMA application_id.
 *
 * Runs on the thread that owns the struct db; blocks on file I/O only.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "k8sauth.h"

#define DB_SQLITE_BUSY_TIMEOUT_MS 200
#define DB_SQLITE_APPLICATION_ID  0x6b386b61 /* "k8ka" */

/* The connection of db. */
static sqlite3 *
db_sqlite_h(struct db *db)
{
	return (db_engine_state(db));
}

/* Map an (extended) SQLite result code to DB_ROW/DB_DONE or a class. */
static int
db_sqlite_class(int rc)
{
	switch (rc) {
	case SQLITE_ROW:
		return (DB_ROW);
	case SQLITE_DONE:
	case SQLITE_OK:
		return (DB_DONE);
	case SQLITE_CONSTRAINT_UNIQUE:
	case SQLITE_CONSTRAINT_PRIMARYKEY:
		return (STORE_CONFLICT);
	case SQLITE_CONSTRAINT_FOREIGNKEY:
	/* ON DELETE RESTRICT is a built-in trigger: RAISE(ABORT) */
	case SQLITE_CONSTRAINT_TRIGGER:
		return (DB_FOREIGN_KEY);
	}
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return (STORE_RETRY);
	/* The file cannot be used now (merge of snapshot's store_unreachable) */
	case SQLITE_IOERR:
	case SQLITE_CANTOPEN:
	case SQLITE_READONLY:
		return (STORE_UNAVAILABLE);
	default:
		return (STORE_ERROR);
	}
}

/* Run SQL that returns no rows: 0 or a class with *cause. */
static int
db_sqlite_exec(struct db *db, const char *sql, char **cause)
{
	char *msg = NULL;
	int rc;

	if ((rc = sqlite3_exec(db_sqlite_h(db), sql, NULL, NULL, &msg)) ==
	    SQLITE_OK)
		return (0);
	*cause = xstrdup(msg != NULL ? msg : sqlite3_errmsg(db_sqlite_h(db)));
	sqlite3_free(msg);
	rc = db_sqlite_class(rc);
	return (rc < 0 ? rc : STORE_ERROR);
}

/* Run a query returning one row of one column as an integer (or text). */
static int
db_sqlite_query_one(struct db *db, const char *sql, int *ival, char *sval,
    size_t slen, char **cause)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *t;

	if (sqlite3_prepare_v2(db_sqlite_h(db), sql, -1, &st, NULL) !=
		SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		xasprintf(cause, "%s: %s: %s", db_name(db), sql,
		    sqlite3_errmsg(db_sqlite_h(db)));
		sqlite3_finalize(st);
		return (-1);
	}
	if (ival != NULL)
		*ival = sqlite3_column_int(st, 0);
	if (sval != NULL) {
		t = sqlite3_column_text(st, 0);
		snprintf(sval, slen, "%s", t != NULL ? (const char *)t : "");
	}
	sqlite3_finalize(st);
	return (0);
}

/* Refuse a path whose directory is missing; create a new file 0600. */
static int
db_sqlite_prepare_path(const char *path, char **cause)
{
	struct stat st;
	char *dir, *slash;
	int fd, rc = 0;

	dir = xstrdup(path);
	if ((slash = strrchr(dir, '/')) != NULL) {
		*slash = '\0';
		if (*dir != '\0' &&
		    (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode))) {
			xasprintf(cause,
			    "database directory %s does not exist (for %s)",
			    dir, path);
			rc = -1;
		}
	}
	free(dir);
	if (rc != 0)
		return (-1);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd != -1)
		close(fd);
	else if (errno != EEXIST) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	return (0);
}

/* Apply the per-connection settings; WAL must really be on. */
static int
db_sqlite_configure(struct db *db, char **cause)
{
	sqlite3 *h = db_sqlite_h(db);
	char mode[16], *why = NULL;

	sqlite3_extended_result_codes(h, 1);
	sqlite3_busy_timeout(h, DB_SQLITE_BUSY_TIMEOUT_MS);
	if (sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) !=
	    SQLITE_OK) {
		xasprintf(cause, "%s: cannot enable defensive mode",
		    db_name(db));
		return (-1);
	}
	if (db_sqlite_query_one(db, "PRAGMA journal_mode=WAL", NULL, mode,
		sizeof mode, cause) != 0)
		return (-1);
	if (strcmp(mode, "wal") != 0) {
		xasprintf(cause, "%s: journal_mode is %s, not wal", db_name(db),
		    mode);
		return (-1);
	}
	if (db_sqlite_exec(db,
		"PRAGMA synchronous=NORMAL;"
		"PRAGMA foreign_keys=ON;"
		"PRAGMA trusted_schema=OFF;",
		&why) != 0) {
		xasprintf(cause, "%s: %s", db_name(db), why);
		free(why);
		return (-1);
	}
	return (0);
}

/* Open (creating if needed) the file; -1 with *cause. */
static int
db_sqlite_open(struct db *db, const struct db_url *u, int timeout, char **cause)
{
	sqlite3 *h = NULL;
	int rc;

	(void)timeout;
	if (db_sqlite_prepare_path(u->path, cause) != 0)
		return (-1);
	rc = sqlite3_open_v2(u->path, &h,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	    NULL);
	db_set_engine_state(db, h);
	if (rc != SQLITE_OK) {
		xasprintf(cause, "%s: %s", u->path,
		    h != NULL ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
		return (-1);
	}
	return (db_sqlite_configure(db, cause));
}

/* Close the connection (every statement is finalized by then). */
static void
db_sqlite_close(struct db *db)
{
	if (sqlite3_close(db_sqlite_h(db)) != SQLITE_OK)
		log_err("db: %s: close: %s", db_name(db),
		    sqlite3_errmsg(db_sqlite_h(db)));
	db_set_engine_state(db, NULL);
}

/* Prepare for keeping; NULL (class in *rc) on error. */
static void *
db_sqlite_prepare(struct db *db, const char *sql, int *rc)
{
	sqlite3_stmt *st = NULL;
	int r;

	r = sqlite3_prepare_v3(db_sqlite_h(db), sql, -1,
	    SQLITE_PREPARE_PERSISTENT, &st, NULL);
	if (r != SQLITE_OK) {
		sqlite3_finalize(st);
		*rc = STORE_ERROR;
		return (NULL);
	}
	return (st);
}

static void
db_sqlite_finalize(void *st)
{
	sqlite3_finalize(st);
}

static int
db_sqlite_bind_null(void *st, int i)
{
	return (sqlite3_bind_null(st, i) == SQLITE_OK ? 0 : -1);
}

static int
db_sqlite_bind_text(void *st, int i, const char *s)
{
	return (sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) == SQLITE_OK
		? 0
		: -1);
}

static int
db_sqlite_bind_int(void *st, int i, int64_t v)
{
	return (
	    sqlite3_bind_int64(st, i, (sqlite3_int64)v) == SQLITE_OK ? 0 : -1);
}

static int
db_sqlite_step(struct db *db, void *st)
{
	(void)db;
	return (db_sqlite_class(sqlite3_step(st)));
}

/* Reset and clear bindings; a failed step's error is not repeated. */
static void
db_sqlite_reset(void *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static const char *
db_sqlite_column_text(void *st, int i)
{
	return ((const char *)sqlite3_column_text(st, i));
}

static int
db_sqlite_column_is_null(void *st, int i)
{
	return (sqlite3_column_type(st, i) == SQLITE_NULL);
}

static int64_t
db_sqlite_changes(struct db *db)
{
	return (sqlite3_changes(db_sqlite_h(db)));
}

static int
db_sqlite_in_transaction(struct db *db)
{
	return (!sqlite3_get_autocommit(db_sqlite_h(db)));
}

static const char *
db_sqlite_errmsg(struct db *db)
{
	return (sqlite3_errmsg(db_sqlite_h(db)));
}

/* PRAGMA user_version, or -1 with *cause. */
static int
db_sqlite_schema_version(struct db *db, char **cause)
{
	int v;

	if (db_sqlite_query_one(db, "PRAGMA user_version", &v, NULL, 0,
		cause) != 0)
		return (-1);
	return (v);
}

/* Check and, on a fresh file, set PRAGMA application_id. */
static int
db_sqlite_check_application_id(struct db *db, char **cause)
{
	char sql[64];
	int id;

	if (db_sqlite_query_one(db, "PRAGMA application_id", &id, NULL, 0,
		cause) != 0)
		return (-1);
	if (id == DB_SQLITE_APPLICATION_ID)
		return (0);
	if (id != 0) {
		xasprintf(cause, "%s: not a %s database (application_id %d)",
		    db_name(db), K8SAUTH_NAME, id);
		return (-1);
	}
	snprintf(sql, sizeof sql, "PRAGMA application_id = %d",
	    DB_SQLITE_APPLICATION_ID);
	return (db_exec(db, sql, cause) == 0 ? 0 : -1);
}

/* Apply migration number n (1-based) in its own transaction. */
static int
db_sqlite_apply_migration(struct db *db, const char *sql, int n, char **cause)
{
	char pragma[64];

	if (db_exec(db, "BEGIN IMMEDIATE", cause) != 0)
		return (-1);
	snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", n);
	if (db_exec(db, sql, cause) != 0 || db_exec(db, pragma, cause) != 0 ||
	    db_exec(db, "COMMIT", cause) != 0) {
		db_rollback(db);
		return (-1);
	}
	log_info("db: %s: applied migration %d", db_name(db), n);
	return (0);
}

/*
 * Bring a SQLite schema up to date with the given migrations (a test seam;
 * db_migrate passes the compiled-in ones).  0 or -1 with *cause.
 */
int
db_migrate_list(struct db *db, const char *const *migrations, int n,
    char **cause)
{
	char *why = NULL;
	int v;

	if (db_kind(db) != DB_SQLITE) {
		xasprintf(cause, "%s: not a SQLite database", db_name(db));
		return (-1);
	}
	if ((v = db_sqlite_schema_version(db, &why)) < 0) {
		xasprintf(cause, "cannot read user_version: %s", why);
		free(why);
		return (-1);
	}
	if (v > n) {
		xasprintf(cause,
		    "%s: schema version %d is newer than this binary knows (%d); refusing to use it",
		    db_name(db), v, n);
		return (-1);
	}
	if (db_sqlite_check_application_id(db, cause) != 0)
		return (-1);
	for (; v < n; v++) {
		why = NULL;
		if (db_sqlite_apply_migration(db, migrations[v], v + 1, &why) !=
		    0) {
			xasprintf(cause, "migration %d failed: %s", v + 1, why);
			free(why);
			return (-1);
		}
	}
	return (0);
}

/* Bring the schema up to date with db.c's migrations. */
static int
db_sqlite_migrate(struct db *db, char **cause)
{
	const char *const *m;
	int n;

	m = db_migrations(&n);
	return (db_migrate_list(db, m, n, cause));
}

const struct db_engine db_sqlite_engine = {
	.name = "sqlite",
	.begin_sql = "BEGIN IMMEDIATE",
	.open = db_sqlite_open,
	.close = db_sqlite_close,
	.exec = db_sqlite_exec,
	.prepare = db_sqlite_prepare,
	.finalize = db_sqlite_finalize,
	.bind_null = db_sqlite_bind_null,
	.bind_text = db_sqlite_bind_text,
	.bind_int = db_sqlite_bind_int,
	.step = db_sqlite_step,
	.reset = db_sqlite_reset,
	.column_text = db_sqlite_column_text,
	.column_is_null = db_sqlite_column_is_null,
	.changes = db_sqlite_changes,
	.in_transaction = db_sqlite_in_transaction,
	.errmsg = db_sqlite_errmsg,
	.schema_version = db_sqlite_schema_version,
	.migrate = db_sqlite_migrate,
};
