/*
 * db.c: one database connection and everything that is about SQL rather
 * than about the objects stored, whatever the engine.
 *
 * A struct db owns one connection of one engine (db_sqlite.c or
 * db_mysql.c, chosen by the [database] connection URL, parsed by
 * db_url.c), its cache of prepared statements (the fixed DB_STATEMENTS
 * table plus the few list queries built by store.c from whitelisted column
 * names) and the nesting of its transaction.  It belongs to the thread that
 * opened it and must never be used from another thread.
 *
 * The SQL text is shared by the engines: SQLite's numbered ?N parameters,
 * which the MySQL engine rewrites at prepare time.  Errors come back from
 * the engines as STORE_* classes (DB_FOREIGN_KEY for a foreign key); a
 * STORE_UNAVAILABLE marks the struct db dead, after which every statement
 * fails the same way without touching the network until the owner closes
 * it and opens a new one (prepared statements do not survive a reconnect).
 *
 * What may block: every call does file or network I/O, bounded by the
 * SQLite busy timeout or the MySQL connect/read/write timeout
 * ([database] timeout).  No caller may keep a transaction open across
 * anything asynchronous.
 *
 * The SQLite schema is the ordered array of migrations below (PRAGMA
 * user_version counts those applied); the MySQL schema is db_mysql.c's,
 * which reaches the same version numbers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define DB_MAX_DYNAMIC 64

struct db_stmt {
	struct db *db;
	void *e;    /* the engine's statement; NULL: the dead statement */
	int failed; /* the last step failed (already reported) */
};

struct db_dynamic {
	char *sql;
	struct db_stmt *stmt;
};

struct db {
	const struct db_engine *engine;
	void *state; /* the engine's connection */
	enum db_kind kind;
	char *name; /* the URL with its password masked, for messages */
	struct db_stmt *stmts[DB_NSTMTS];
	struct db_dynamic dynamic[DB_MAX_DYNAMIC];
	int ndynamic;
	struct db_stmt dead_stmt; /* handed out once the connection died */
	int dead;                 /* STORE_UNAVAILABLE seen: close me */
	int depth;                /* store_begin nesting; 0: no transaction */
	int failed; /* an inner level rolled back: the outer one must */
};

static int db_timeout = DB_TIMEOUT_DEFAULT;

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

/* The compiled-in SQLite migrations and their number. */
const char *const *
db_migrations(int *n)
{
	*n = DB_NMIGRATIONS;
	return (db_migration_table);
}

/* The schema version this binary brings a database to. */
int
db_schema_latest(void)
{
	return (DB_NMIGRATIONS);
}

/* Seconds any MySQL connect, read or write may take ([database] timeout). */
void
db_set_timeout(int seconds)
{
	if (seconds > 0)
		db_timeout = seconds;
}

/*
 * Open the database named by connection (a URL, or a bare absolute SQLite
 * path); NULL with *cause, which never holds the password.
 */
struct db *
db_open(const char *connection, char **cause)
{
	struct db_url u;
	struct db *db;

	if (db_url_parse(connection, &u, cause) != 0)
		return (NULL);
	db = xcalloc(1, sizeof *db);
	db->kind = u.kind;
	db->engine = u.kind == DB_MYSQL ? &db_mysql_engine : &db_sqlite_engine;
	db->name =
	    u.kind == DB_MYSQL ? db_url_masked(connection) : xstrdup(u.path);
	db->dead_stmt.db = db;
	if (db->engine->open(db, &u, db_timeout, cause) != 0) {
		db_url_free(&u);
		db_close(db);
		return (NULL);
	}
	db_url_free(&u);
	return (db);
}

/* Free a cached statement. */
static void
db_stmt_free(struct db *db, struct db_stmt *st)
{
	if (st == NULL)
		return;
	if (st->e != NULL && db->state != NULL)
		db->engine->finalize(st->e);
	free(st);
}

/* Finalize every cached statement and close the connection. */
void
db_close(struct db *db)
{
	int i;

	if (db == NULL)
		return;
	for (i = 0; i < DB_NSTMTS; i++)
		db_stmt_free(db, db->stmts[i]);
	for (i = 0; i < db->ndynamic; i++) {
		db_stmt_free(db, db->dynamic[i].stmt);
		free(db->dynamic[i].sql);
	}
	if (db->state != NULL)
		db->engine->close(db);
	free(db->name);
	free(db);
}

/* The engine's connection: SQLite's sqlite3 * (tests only). */
void *
db_handle(struct db *db)
{
	return (db->state);
}

/* db_sqlite.c and db_mysql.c keep their connection here. */
void *
db_engine_state(struct db *db)
{
	return (db->state);
}

/* Set by the engine's open. */
void
db_set_engine_state(struct db *db, void *state)
{
	db->state = state;
}

/* Which engine this connection is. */
enum db_kind
db_kind(struct db *db)
{
	return (db->kind);
}

/* The SQLite path or the masked URL, for messages. */
const char *
db_name(struct db *db)
{
	return (db->name);
}

/* Whether the connection died (STORE_UNAVAILABLE): close and reopen. */
int
db_dead(struct db *db)
{
	return (db->dead);
}

/* The server went away: every later call fails STORE_UNAVAILABLE. */
void
db_mark_dead(struct db *db)
{
	if (!db->dead)
		log_warn("db: %s: connection lost; it must be reopened",
		    db->name);
	db->dead = 1;
	db->depth = 0;
	db->failed = 0;
}

/* The engine's message for the last error on this connection. */
const char *
db_errmsg(struct db *db)
{
	if (db->dead)
		return ("the database connection was lost");
	return (db->engine->errmsg(db));
}

/*
 * Run SQL that returns no rows: 0, or a STORE_* class with *cause (logged
 * when cause is NULL).
 */
int
db_exec(struct db *db, const char *sql, char **cause)
{
	char *why = NULL;
	int rc;

	if (db->dead)
		rc = STORE_UNAVAILABLE;
	else if ((rc = db->engine->exec(db, sql, &why)) == STORE_UNAVAILABLE)
		db_mark_dead(db);
	if (rc == 0)
		return (0);
	if (why == NULL)
		why = xstrdup(db_errmsg(db));
	if (cause != NULL)
		xasprintf(cause, "%s: %s", db->name, why);
	else
		log_err("db: %s: %s", db->name, why);
	free(why);
	return (rc);
}

/* Prepare a statement for keeping; the dead statement when it died. */
static struct db_stmt *
db_prepare(struct db *db, const char *sql)
{
	struct db_stmt *st;
	void *e;
	int rc = STORE_ERROR;

	if (db->dead)
		return (&db->dead_stmt);
	if ((e = db->engine->prepare(db, sql, &rc)) == NULL) {
		if (rc == STORE_UNAVAILABLE) {
			db_mark_dead(db);
			return (&db->dead_stmt);
		}
		log_err("db: %s: prepare failed: %s", db->name,
		    db->engine->errmsg(db));
		return (NULL);
	}
	st = xcalloc(1, sizeof *st);
	st->db = db;
	st->e = e;
	return (st);
}

/* A cached statement from the fixed table, prepared on first use. */
struct db_stmt *
db_stmt(struct db *db, enum db_stmt_id id)
{
	if ((int)id < 0 || id >= DB_NSTMTS)
		fatalx("db_stmt: bad statement %d", (int)id);
	if (db->dead)
		return (&db->dead_stmt);
	if (db->stmts[id] == NULL)
		db->stmts[id] = db_prepare(db, db_stmt_sql_table[id]);
	if (db->stmts[id] == &db->dead_stmt) {
		db->stmts[id] = NULL;
		return (&db->dead_stmt);
	}
	return (db->stmts[id]);
}

/*
 * A cached statement for SQL built at run time by the caller from constant
 * fragments only (never from request data); the set of such texts is small
 * and bounded, so they are kept by text.
 */
struct db_stmt *
db_stmt_sql(struct db *db, const char *sql)
{
	struct db_stmt *st;
	int i;

	if (db->dead)
		return (&db->dead_stmt);
	for (i = 0; i < db->ndynamic; i++) {
		if (strcmp(db->dynamic[i].sql, sql) == 0)
			return (db->dynamic[i].stmt);
	}
	if (db->ndynamic == DB_MAX_DYNAMIC) {
		log_err("db: statement cache full");
		return (NULL);
	}
	if ((st = db_prepare(db, sql)) == NULL || st == &db->dead_stmt)
		return (st);
	db->dynamic[db->ndynamic].sql = xstrdup(sql);
	db->dynamic[db->ndynamic].stmt = st;
	db->ndynamic++;
	return (st);
}

/* Bind text to parameter ?i, or SQL NULL when s is NULL; 0 or -1. */
int
db_bind_text(struct db_stmt *st, int i, const char *s)
{
	if (st->e == NULL)
		return (0);
	if (s == NULL)
		return (st->db->engine->bind_null(st->e, i));
	return (st->db->engine->bind_text(st->e, i, s));
}

/* Bind an integer to parameter ?i; 0 or -1. */
int
db_bind_int(struct db_stmt *st, int i, int64_t v)
{
	if (st->e == NULL)
		return (0);
	return (st->db->engine->bind_int(st->e, i, v));
}

/*
 * Run the statement or fetch its next row: DB_ROW, DB_DONE or a failure
 * class (the engine's message is in db_errmsg until the next call).
 */
int
db_step(struct db_stmt *st)
{
	int rc;

	if (st->e == NULL || st->db->dead)
		return (STORE_UNAVAILABLE);
	rc = st->db->engine->step(st->db, st->e);
	if (rc < 0) {
		st->failed = 1;
		if (rc == STORE_UNAVAILABLE)
			db_mark_dead(st->db);
	}
	return (rc);
}

/* Column i of the current row as text; NULL for SQL NULL. */
const char *
db_column_text(struct db_stmt *st, int i)
{
	if (st->e == NULL)
		return (NULL);
	return (st->db->engine->column_text(st->e, i));
}

/* Column i of the current row as an integer (0 for SQL NULL). */
int64_t
db_column_int(struct db_stmt *st, int i)
{
	const char *t = db_column_text(st, i);

	return (t != NULL ? strtoll(t, NULL, 10) : 0);
}

/* Whether column i of the current row is SQL NULL. */
int
db_column_is_null(struct db_stmt *st, int i)
{
	if (st->e == NULL)
		return (1);
	return (st->db->engine->column_is_null(st->e, i));
}

/*
 * Reset a statement and clear its bindings, ready for the next use.
 * Always 0: a failed step was reported by whoever saw it.
 */
int
db_stmt_done(struct db *db, struct db_stmt *st)
{
	if (st == NULL || st->e == NULL || db->dead)
		return (0);
	db->engine->reset(st->e);
	st->failed = 0;
	return (0);
}

/* Rows changed (MySQL: matched) by the last write statement. */
int64_t
db_changes(struct db *db)
{
	if (db->dead)
		return (0);
	return (db->engine->changes(db));
}

/*
 * Start a write transaction: 0 or a STORE_* class (logged).  Transactions
 * nest: only the outermost level talks to the database.
 */
int
db_begin(struct db *db)
{
	int rc;

	if (db->depth > 0) {
		db->depth++;
		return (0);
	}
	if ((rc = db_exec(db, db->engine->begin_sql, NULL)) != 0)
		return (rc);
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
 * Commit: 0, or a STORE_* class after which the transaction is rolled
 * back (STORE_RETRY: Galera refused it at commit).  An inner level only
 * closes itself; the outermost one commits, unless an inner level rolled
 * back, in which case everything is.
 */
int
db_commit(struct db *db)
{
	int rc;

	if (db->depth > 1) {
		db->depth--;
		return (0);
	}
	if (db->depth == 1 && db->failed) {
		db_rollback(db);
		return (STORE_ERROR);
	}
	db->depth = 0;
	if ((rc = db_exec(db, "COMMIT", NULL)) == 0)
		return (0);
	db->depth = 1;
	db_rollback(db);
	return (rc);
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
	if (!db->dead && db->engine->in_transaction(db))
		db_exec(db, "ROLLBACK", NULL);
}

/* The schema version, or -1 on error (logged). */
int
db_schema_version(struct db *db)
{
	char *cause = NULL;
	int v;

	if ((v = db->engine->schema_version(db, &cause)) < 0) {
		log_err("db: %s", cause != NULL ? cause : db->name);
		free(cause);
	}
	return (v);
}

/* Bring the schema up to date; 0 or -1 with *cause. */
int
db_migrate(struct db *db, char **cause)
{
	if (db->dead) {
		xasprintf(cause, "%s: the database connection was lost",
		    db->name);
		return (-1);
	}
	return (db->engine->migrate(db, cause));
}
