/*
 * db.c: one SQLite connection and everything that is about SQL rather
 * than about the objects stored.
 *
 * A struct db owns one sqlite3 connection opened NOMUTEX, its cache of
 * prepared statements (the fixed DB_STATEMENTS table plus the few list
 * queries built by store.c from whitelisted column names) and nothing else.
 * It belongs to the thread that opened it (one per worker, or the main
 * thread for db-sync) and must never be used from another thread.
 *
 * What may block: every call does file I/O, and a write waits at most the
 * busy timeout (DB_BUSY_TIMEOUT_MS) for another connection's write lock.
 * Transactions are BEGIN IMMEDIATE so they never fail half-way with
 * SQLITE_BUSY_SNAPSHOT, and no caller may keep one open across anything
 * asynchronous.
 *
 * The schema is an ordered array of migrations compiled in; PRAGMA
 * user_version says how many have been applied, each one is applied in its
 * own transaction together with the new user_version, and a database newer
 * than this binary is refused.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "k8sauth.h"

#define DB_BUSY_TIMEOUT_MS 200
#define DB_APPLICATION_ID  0x6b386b61 /* "k8ka" */
#define DB_MAX_DYNAMIC     64

struct db_dynamic {
	char *sql;
	sqlite3_stmt *stmt;
};

struct db {
	sqlite3 *h;
	char *path;
	sqlite3_stmt *stmts[DB_NSTMTS];
	struct db_dynamic dynamic[DB_MAX_DYNAMIC];
	int ndynamic;
	int depth;  /* store_begin nesting; 0: no transaction */
	int failed; /* an inner level rolled back: the outer one must */
};

#define DB_STMT_SQL(id, sql) [id] = sql,
static const char *const db_stmt_sql_table[DB_NSTMTS] = { DB_STATEMENTS(
    DB_STMT_SQL) };
#undef DB_STMT_SQL

/* The migrations, in order: migration i brings user_version to i + 1. */
static const char *const db_migration_table[] = {
	/* 1: the initial schema. */
	"CREATE TABLE instances ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  domain_id TEXT NOT NULL,"
	"  name TEXT,"
	"  host TEXT NOT NULL,"
	"  ca_cert TEXT,"
	"  reviewer_jwt_enc TEXT,"
	"  disable_local_ca_jwt INTEGER NOT NULL DEFAULT 0,"
	"  enabled INTEGER NOT NULL DEFAULT 1,"
	"  created_at TEXT NOT NULL,"
	"  updated_at TEXT NOT NULL,"
	"  UNIQUE (domain_id, name));"
	"CREATE INDEX instances_name ON instances (name);"
	"CREATE INDEX instances_enabled ON instances (enabled);"
	"CREATE TABLE restrictions ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  domain_id TEXT NOT NULL,"
	"  user_id TEXT,"
	"  project_id TEXT,"
	"  allow_renew INTEGER NOT NULL DEFAULT 0,"
	"  allow_rescope INTEGER NOT NULL DEFAULT 0,"
	"  created_at TEXT NOT NULL,"
	"  updated_at TEXT NOT NULL);"
	"CREATE INDEX restrictions_domain_id ON restrictions (domain_id);"
	"CREATE INDEX restrictions_user_id ON restrictions (user_id);"
	"CREATE INDEX restrictions_project_id ON restrictions (project_id);"
	"CREATE TABLE restriction_roles ("
	"  restriction_id TEXT NOT NULL"
	"    REFERENCES restrictions (id) ON DELETE CASCADE,"
	"  position INTEGER NOT NULL,"
	"  role_id TEXT NOT NULL,"
	"  role_name TEXT,"
	"  PRIMARY KEY (restriction_id, position));"
	"CREATE TABLE roles ("
	"  id TEXT PRIMARY KEY NOT NULL,"
	"  auth_instance_id TEXT NOT NULL"
	"    REFERENCES instances (id) ON DELETE CASCADE,"
	"  domain_id TEXT NOT NULL,"
	"  name TEXT NOT NULL,"
	"  enabled INTEGER NOT NULL DEFAULT 1,"
	"  bound_sa_names TEXT NOT NULL,"
	"  bound_sa_namespaces TEXT NOT NULL,"
	"  bound_audience TEXT,"
	"  bound_pod_names TEXT,"
	"  token_ttl INTEGER,"
	"  token_restriction_id TEXT NOT NULL"
	"    REFERENCES restrictions (id) ON DELETE RESTRICT,"
	"  created_at TEXT NOT NULL,"
	"  updated_at TEXT NOT NULL,"
	"  UNIQUE (auth_instance_id, name));"
	"CREATE INDEX roles_domain_id ON roles (domain_id);"
	"CREATE INDEX roles_name ON roles (name);"
	"CREATE INDEX roles_enabled ON roles (enabled);"
	"CREATE INDEX roles_token_restriction_id ON roles"
	"  (token_restriction_id);",
	/*
	 * 2: whether an admin set the instance's host (API.md §7); hosts
	 * written before count as set by a non-admin (fail closed).
	 */
	"ALTER TABLE instances ADD COLUMN host_admin INTEGER NOT NULL "
	"DEFAULT 0;",
	/*
	 * 3: namespaces bound by label (a role's LabelSelector as JSON,
	 * NULL: none) and whether login policies may see service-account
	 * annotations (an instance's choice, off until set).
	 */
	"ALTER TABLE roles ADD COLUMN bound_namespace_selector TEXT;"
	"ALTER TABLE instances ADD COLUMN service_account_annotations "
	"INTEGER NOT NULL DEFAULT 0;",
	/*
	 * 4: local JWT signature verification (API.md §8): verify by
	 * default, keys from discovery unless a JWKS is given.
	 */
	"ALTER TABLE instances ADD COLUMN jwt_signature TEXT NOT NULL "
	"DEFAULT 'verify';"
	"ALTER TABLE instances ADD COLUMN jwks TEXT;"
	"ALTER TABLE instances ADD COLUMN issuer TEXT;",
	/* 5: seconds a TokenReview result is reused (API.md §8). */
	"ALTER TABLE instances ADD COLUMN review_cache_ttl INTEGER NOT NULL "
	"DEFAULT 10;",
	/*
	 * 6: the revision, bumped by every committed write, which replicas
	 * poll to know their snapshot is stale (DESIGN.md "Storage").
	 */
	"CREATE TABLE revision (id INTEGER PRIMARY KEY NOT NULL,"
	"  value INTEGER NOT NULL);"
	"INSERT INTO revision (id, value) VALUES (1, 1);",
};
#define DB_NMIGRATIONS \
	((int)(sizeof db_migration_table / sizeof db_migration_table[0]))

/* Run SQL that returns no rows; 0 or -1 with *cause (when not NULL). */
static int
db_exec(struct db *db, const char *sql, char **cause)
{
	char *msg = NULL;

	if (sqlite3_exec(db->h, sql, NULL, NULL, &msg) == SQLITE_OK)
		return (0);
	if (cause != NULL)
		xasprintf(cause, "%s: %s", db->path,
		    msg != NULL ? msg : sqlite3_errmsg(db->h));
	else
		log_err("db: %s: %s", db->path,
		    msg != NULL ? msg : sqlite3_errmsg(db->h));
	sqlite3_free(msg);
	return (-1);
}

/* Run a query returning one row of one column as an integer (or text). */
static int
db_query_one(struct db *db, const char *sql, int *ival, char *sval, size_t slen,
    char **cause)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *t;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_step(st) != SQLITE_ROW) {
		xasprintf(cause, "%s: %s: %s", db->path, sql,
		    sqlite3_errmsg(db->h));
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
db_prepare_path(const char *path, char **cause)
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
			    "database directory %s does not "
			    "exist (for %s)",
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
db_configure(struct db *db, char **cause)
{
	char mode[16];

	sqlite3_extended_result_codes(db->h, 1);
	sqlite3_busy_timeout(db->h, DB_BUSY_TIMEOUT_MS);
	if (sqlite3_db_config(db->h, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL) !=
	    SQLITE_OK) {
		xasprintf(cause, "%s: cannot enable defensive mode", db->path);
		return (-1);
	}
	if (db_query_one(db, "PRAGMA journal_mode=WAL", NULL, mode, sizeof mode,
		cause) != 0)
		return (-1);
	if (strcmp(mode, "wal") != 0) {
		xasprintf(cause, "%s: journal_mode is %s, not wal", db->path,
		    mode);
		return (-1);
	}
	return (db_exec(db,
	    "PRAGMA synchronous=NORMAL;"
	    "PRAGMA foreign_keys=ON;"
	    "PRAGMA trusted_schema=OFF;",
	    cause));
}

/* Open (creating if needed) the database at path; NULL with *cause. */
struct db *
db_open(const char *path, char **cause)
{
	struct db *db;
	int rc;

	if (db_prepare_path(path, cause) != 0)
		return (NULL);
	db = xcalloc(1, sizeof *db);
	db->path = xstrdup(path);
	rc = sqlite3_open_v2(path, &db->h,
	    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	    NULL);
	if (rc != SQLITE_OK) {
		xasprintf(cause, "%s: %s", path,
		    db->h != NULL ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc));
		goto fail;
	}
	if (db_configure(db, cause) != 0)
		goto fail;
	return (db);
fail:
	db_close(db);
	return (NULL);
}

/* Finalize every cached statement and close the connection. */
void
db_close(struct db *db)
{
	int i;

	if (db == NULL)
		return;
	for (i = 0; i < DB_NSTMTS; i++)
		sqlite3_finalize(db->stmts[i]);
	for (i = 0; i < db->ndynamic; i++) {
		sqlite3_finalize(db->dynamic[i].stmt);
		free(db->dynamic[i].sql);
	}
	if (db->h != NULL && sqlite3_close(db->h) != SQLITE_OK)
		log_err("db: %s: close: %s", db->path, sqlite3_errmsg(db->h));
	free(db->path);
	free(db);
}

/* The raw sqlite3 handle (tests and diagnostics only). */
void *
db_handle(struct db *db)
{
	return (db->h);
}

/* sqlite's message for the last error on this connection. */
const char *
db_errmsg(struct db *db)
{
	return (sqlite3_errmsg(db->h));
}

/* Prepare a statement for keeping; NULL (logged) on error. */
static sqlite3_stmt *
db_prepare_persistent(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st,
		NULL) != SQLITE_OK) {
		log_err("db: prepare failed: %s", sqlite3_errmsg(db->h));
		sqlite3_finalize(st);
		return (NULL);
	}
	return (st);
}

/* A cached statement from the fixed table, prepared on first use. */
struct sqlite3_stmt *
db_stmt(struct db *db, enum db_stmt_id id)
{
	if ((int)id < 0 || id >= DB_NSTMTS)
		fatalx("db_stmt: bad statement %d", (int)id);
	if (db->stmts[id] == NULL)
		db->stmts[id] =
		    db_prepare_persistent(db, db_stmt_sql_table[id]);
	return (db->stmts[id]);
}

/*
 * A cached statement for SQL built at run time by the caller from constant
 * fragments only (never from request data); the set of such texts is small
 * and bounded, so they are kept by text.
 */
struct sqlite3_stmt *
db_stmt_sql(struct db *db, const char *sql)
{
	sqlite3_stmt *st;
	int i;

	for (i = 0; i < db->ndynamic; i++) {
		if (strcmp(db->dynamic[i].sql, sql) == 0)
			return (db->dynamic[i].stmt);
	}
	if (db->ndynamic == DB_MAX_DYNAMIC) {
		log_err("db: statement cache full");
		return (NULL);
	}
	if ((st = db_prepare_persistent(db, sql)) == NULL)
		return (NULL);
	db->dynamic[db->ndynamic].sql = xstrdup(sql);
	db->dynamic[db->ndynamic].stmt = st;
	db->ndynamic++;
	return (st);
}

/* Reset a statement and clear its bindings; 0 or -1 (logged). */
int
db_stmt_done(struct db *db, struct sqlite3_stmt *st)
{
	int rc;

	if (st == NULL)
		return (0);
	rc = sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (rc != SQLITE_OK) {
		log_err("db: %s: %s", db->path, sqlite3_errmsg(db->h));
		return (-1);
	}
	return (0);
}

/*
 * Start a write transaction; 0 or -1 (logged).  Transactions nest: only
 * the outermost level talks to the database.
 */
int
db_begin(struct db *db)
{
	if (db->depth > 0) {
		db->depth++;
		return (0);
	}
	if (db_exec(db, "BEGIN IMMEDIATE", NULL) != 0)
		return (-1);
	db->depth = 1;
	db->failed = 0;
	return (0);
}

/* How many db_begin levels are open (0: none). */
int
db_depth(struct db *db)
{
	return (db->depth);
}

/*
 * Commit; on failure the transaction is rolled back and -1 returned.  An
 * inner level only closes itself; the outermost one commits, unless an
 * inner level rolled back, in which case everything is.
 */
int
db_commit(struct db *db)
{
	if (db->depth > 1) {
		db->depth--;
		return (0);
	}
	if (db->depth == 1 && db->failed) {
		db_rollback(db);
		return (-1);
	}
	db->depth = 0;
	if (db_exec(db, "COMMIT", NULL) == 0)
		return (0);
	db->depth = 1;
	db_rollback(db);
	return (-1);
}

/* Roll back the open transaction, if any (an inner level marks it). */
void
db_rollback(struct db *db)
{
	if (db->depth > 1) {
		db->depth--;
		db->failed = 1;
		return;
	}
	db->depth = 0;
	db->failed = 0;
	if (!sqlite3_get_autocommit(db->h))
		db_exec(db, "ROLLBACK", NULL);
}

/* PRAGMA user_version, or -1 on error. */
int
db_schema_version(struct db *db)
{
	char *cause = NULL;
	int v;

	if (db_query_one(db, "PRAGMA user_version", &v, NULL, 0, &cause) != 0) {
		log_err("db: %s", cause);
		free(cause);
		return (-1);
	}
	return (v);
}

/* The compiled-in migrations and their number. */
const char *const *
db_migrations(int *n)
{
	*n = DB_NMIGRATIONS;
	return (db_migration_table);
}

/* Check and, on a fresh file, set PRAGMA application_id. */
static int
db_check_application_id(struct db *db, char **cause)
{
	char sql[64];
	int id;

	if (db_query_one(db, "PRAGMA application_id", &id, NULL, 0, cause) != 0)
		return (-1);
	if (id == DB_APPLICATION_ID)
		return (0);
	if (id != 0) {
		xasprintf(cause,
		    "%s: not a %s database (application_id "
		    "%d)",
		    db->path, K8SAUTH_NAME, id);
		return (-1);
	}
	snprintf(sql, sizeof sql, "PRAGMA application_id = %d",
	    DB_APPLICATION_ID);
	return (db_exec(db, sql, cause));
}

/* Apply migration number n (1-based) in its own transaction. */
static int
db_apply_migration(struct db *db, const char *sql, int n, char **cause)
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
	log_info("db: %s: applied migration %d", db->path, n);
	return (0);
}

/*
 * Bring the schema up to date with the given migrations (a test seam;
 * db_migrate passes the compiled-in ones).  0 or -1 with *cause.
 */
int
db_migrate_list(struct db *db, const char *const *migrations, int n,
    char **cause)
{
	char *why;
	int v;

	if ((v = db_schema_version(db)) < 0) {
		xasprintf(cause, "%s: cannot read user_version: %s", db->path,
		    sqlite3_errmsg(db->h));
		return (-1);
	}
	if (v > n) {
		xasprintf(cause,
		    "%s: schema version %d is newer than this "
		    "binary knows (%d); refusing to use it",
		    db->path, v, n);
		return (-1);
	}
	if (db_check_application_id(db, cause) != 0)
		return (-1);
	for (; v < n; v++) {
		why = NULL;
		if (db_apply_migration(db, migrations[v], v + 1, &why) != 0) {
			xasprintf(cause, "migration %d failed: %s", v + 1, why);
			free(why);
			return (-1);
		}
	}
	return (0);
}

/* Bring the schema up to date; 0 or -1 with *cause. */
int
db_migrate(struct db *db, char **cause)
{
	return (db_migrate_list(db, db_migration_table, DB_NMIGRATIONS, cause));
}
