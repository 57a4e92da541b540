/*
 * db_mysql.c: the MySQL/MariaDB (and Galera) engine behind db.c, through
 * MariaDB Connector/C.
 *
 * One MYSQL connection, opened with connect/read/write timeouts ([database]
 * timeout) so that no call can hang, CLIENT_FOUND_ROWS (an UPDATE that
 * changes nothing still counts the row it matched, as SQLite does), TLS with
 * the server certificate verified when ssl_ca is given, and per session:
 * READ COMMITTED, a strict sql_mode, autocommit outside transactions, an
 * InnoDB lock wait no longer than the timeout.  Transactions are START
 * TRANSACTION: row locks only, never a table lock (Galera replicates
 * neither LOCK TABLES nor GET_LOCK).
 *
 * Statements: the shared SQL uses SQLite's ?N; prepare rewrites each ?N to
 * ? and remembers the number of every position, so that a number used
 * twice is bound twice.  Results are stored client-side at execution
 * (mysql_stmt_store_result), so another statement may run while a result
 * is read (a restriction's roles while listing restrictions); every column
 * is fetched as text into a buffer grown on truncation.
 *
 * Errors map to STORE_* classes by number: duplicate key 1062 conflict,
 * foreign key 1451/1452 DB_FOREIGN_KEY, deadlock 1213 (also how Galera
 * reports a certification conflict) and lock wait timeout 1205 retry, lost
 * or refused connections (2002, 2003, 2006, 2013, 2055, and 1047 "WSREP
 * has not yet prepared node") unavailable: db.c then marks the struct db
 * dead.
 *
 * The schema: one "create everything" step to the version SQLite reaches
 * with its first migrations (DB_MYSQL_BASE_VERSION), then later migrations
 * appended one per SQLite migration.  db-sync may run on two replicas at
 * once: it holds a named lock (GET_LOCK, per server) and every step is
 * idempotent anyway (CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT EXISTS,
 * INSERT IGNORE, and the version moved by UPDATE ... WHERE version = N-1),
 * since on Galera each node has its own locks and DDL is not transactional.
 *
 * Runs on the thread that owns the struct db; every call may block on the
 * network for at most the timeout.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysql.h>

#include "k8sauth.h"

#define DB_MYSQL_LOCK         "keystone_k8s_auth_db_sync"
#define DB_MYSQL_LOCK_WAIT    30 /* seconds db-sync waits for another */
#define DB_MYSQL_STR1(x)      #x
#define DB_MYSQL_STR(x)       DB_MYSQL_STR1(x)
#define DB_MYSQL_BASE_VERSION 6 /* the SQLite version of the first step */
#define DB_MYSQL_COL_INIT     256
#define DB_MYSQL_TABLE \
	" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"

struct db_mysql {
	MYSQL *h;
	int64_t changes;
	char err[512];
};

struct db_mysql_param {
	enum { DB_MYSQL_NULL, DB_MYSQL_TEXT, DB_MYSQL_INT } type;
	char *text;
	long long i;
};

struct db_mysql_stmt {
	struct db_mysql *c;
	MYSQL_STMT *h;
	int rebind; /* grown result buffers to bind before the next fetch */
	int *pos;   /* the ?N number of each ? position */
	int npos;
	int nparams;                   /* the largest N */
	struct db_mysql_param *params; /* [1..nparams] */
	MYSQL_BIND *in;
	int executed; /* and, for a query, stored */
	unsigned int ncols;
	MYSQL_BIND *out;
	unsigned long *out_len;
	my_bool *out_null;
	char **out_buf;
	size_t *out_cap;
};

/* The migration steps after the first; each brings version to N. */
struct db_mysql_step {
	int version;
	const char *const *sql; /* NULL-terminated, each idempotent */
};

static const char *const db_mysql_create[] = {
	"CREATE TABLE IF NOT EXISTS instances ("
	"  id VARCHAR(64) NOT NULL,"
	"  domain_id VARCHAR(64) NOT NULL,"
	"  name VARCHAR(255) NULL,"
	"  host VARCHAR(1024) NOT NULL,"
	"  ca_cert MEDIUMTEXT NULL,"
	"  reviewer_jwt_enc MEDIUMTEXT NULL,"
	"  disable_local_ca_jwt TINYINT NOT NULL DEFAULT 0,"
	"  enabled TINYINT NOT NULL DEFAULT 1,"
	"  created_at VARCHAR(32) NOT NULL,"
	"  updated_at VARCHAR(32) NOT NULL,"
	"  host_admin TINYINT NOT NULL DEFAULT 0,"
	"  service_account_annotations TINYINT NOT NULL DEFAULT 0,"
	"  jwt_signature VARCHAR(16) NOT NULL DEFAULT 'verify',"
	"  jwks MEDIUMTEXT NULL,"
	"  issuer TEXT NULL,"
	"  review_cache_ttl BIGINT NOT NULL DEFAULT 10,"
	"  PRIMARY KEY (id),"
	"  UNIQUE KEY instances_domain_name (domain_id, name),"
	"  KEY instances_name (name),"
	"  KEY instances_enabled (enabled))" DB_MYSQL_TABLE,
	"CREATE TABLE IF NOT EXISTS restrictions ("
	"  id VARCHAR(64) NOT NULL,"
	"  domain_id VARCHAR(64) NOT NULL,"
	"  user_id VARCHAR(64) NULL,"
	"  project_id VARCHAR(64) NULL,"
	"  allow_renew TINYINT NOT NULL DEFAULT 0,"
	"  allow_rescope TINYINT NOT NULL DEFAULT 0,"
	"  created_at VARCHAR(32) NOT NULL,"
	"  updated_at VARCHAR(32) NOT NULL,"
	"  PRIMARY KEY (id),"
	"  KEY restrictions_domain_id (domain_id),"
	"  KEY restrictions_user_id (user_id),"
	"  KEY restrictions_project_id (project_id))" DB_MYSQL_TABLE,
	"CREATE TABLE IF NOT EXISTS restriction_roles ("
	"  restriction_id VARCHAR(64) NOT NULL,"
	"  position INT NOT NULL,"
	"  role_id VARCHAR(64) NOT NULL,"
	"  role_name VARCHAR(255) NULL,"
	"  PRIMARY KEY (restriction_id, position),"
	"  CONSTRAINT restriction_roles_restriction FOREIGN KEY"
	"    (restriction_id) REFERENCES restrictions (id)"
	"    ON DELETE CASCADE)" DB_MYSQL_TABLE,
	"CREATE TABLE IF NOT EXISTS roles ("
	"  id VARCHAR(64) NOT NULL,"
	"  auth_instance_id VARCHAR(64) NOT NULL,"
	"  domain_id VARCHAR(64) NOT NULL,"
	"  name VARCHAR(255) NOT NULL,"
	"  enabled TINYINT NOT NULL DEFAULT 1,"
	"  bound_sa_names MEDIUMTEXT NOT NULL,"
	"  bound_sa_namespaces MEDIUMTEXT NOT NULL,"
	"  bound_audience VARCHAR(255) NULL,"
	"  bound_pod_names MEDIUMTEXT NULL,"
	"  token_ttl BIGINT NULL,"
	"  token_restriction_id VARCHAR(64) NOT NULL,"
	"  created_at VARCHAR(32) NOT NULL,"
	"  updated_at VARCHAR(32) NOT NULL,"
	"  bound_namespace_selector MEDIUMTEXT NULL,"
	"  PRIMARY KEY (id),"
	"  UNIQUE KEY roles_instance_name (auth_instance_id, name),"
	"  KEY roles_domain_id (domain_id),"
	"  KEY roles_name (name),"
	"  KEY roles_enabled (enabled),"
	"  KEY roles_token_restriction_id (token_restriction_id),"
	"  CONSTRAINT roles_instance FOREIGN KEY (auth_instance_id)"
	"    REFERENCES instances (id) ON DELETE CASCADE,"
	"  CONSTRAINT roles_restriction FOREIGN KEY (token_restriction_id)"
	"    REFERENCES restrictions (id) ON DELETE RESTRICT)" DB_MYSQL_TABLE,
	"CREATE TABLE IF NOT EXISTS revision ("
	"  id INT NOT NULL,"
	"  value BIGINT NOT NULL,"
	"  PRIMARY KEY (id))" DB_MYSQL_TABLE,
	"INSERT IGNORE INTO revision (id, value) VALUES (1, 1)", NULL
};

/*
 * Later migrations, one per SQLite migration after DB_MYSQL_BASE_VERSION,
 * in the same order (db_migrate refuses a binary where the two disagree).
 */
static const struct db_mysql_step db_mysql_steps[] = {
	{ DB_MYSQL_BASE_VERSION, db_mysql_create },
};
#define DB_MYSQL_NSTEPS \
	((int)(sizeof db_mysql_steps / sizeof db_mysql_steps[0]))

/* The connection state of db. */
static struct db_mysql *
db_mysql_c(struct db *db)
{
	return (db_engine_state(db));
}

/* Map a server or client error number to a STORE_* class. */
static int
db_mysql_class(unsigned int n)
{
	switch (n) {
	case 1062: /* ER_DUP_ENTRY */
	case 1586: /* ER_DUP_ENTRY_WITH_KEY_NAME */
		return (STORE_CONFLICT);
	case 1451: /* ER_ROW_IS_REFERENCED_2 */
	case 1452: /* ER_NO_REFERENCED_ROW_2 */
	case 1216:
	case 1217:
		return (DB_FOREIGN_KEY);
	case 1213: /* ER_LOCK_DEADLOCK, Galera certification too */
	case 1205: /* ER_LOCK_WAIT_TIMEOUT */
		return (STORE_RETRY);
	case CR_CONNECTION_ERROR:  /* 2002 */
	case CR_CONN_HOST_ERROR:   /* 2003 */
	case CR_SERVER_GONE_ERROR: /* 2006 */
	case CR_SERVER_LOST:       /* 2013 */
	case 2055:                 /* CR_SERVER_LOST_EXTENDED */
	case 1047:                 /* WSREP has not yet prepared node */
	case 1053:                 /* ER_SERVER_SHUTDOWN */
	case 1927:                 /* ER_CONNECTION_KILLED */
	case 4031:                 /* idle client disconnected */
		return (STORE_UNAVAILABLE);
	default:
		return (STORE_ERROR);
	}
}

/* Keep the last error's text and give its class. */
static int
db_mysql_fail(struct db_mysql *c, unsigned int n, const char *msg)
{
	snprintf(c->err, sizeof c->err, "%s (%u)", msg, n);
	return (db_mysql_class(n));
}

/* Run one statement without rows: 0 or a class with *cause. */
static int
db_mysql_exec(struct db *db, const char *sql, char **cause)
{
	struct db_mysql *c = db_mysql_c(db);
	MYSQL_RES *res;
	int rc;

	if (mysql_real_query(c->h, sql, strlen(sql)) != 0) {
		rc = db_mysql_fail(c, mysql_errno(c->h), mysql_error(c->h));
		*cause = xstrdup(c->err);
		return (rc);
	}
	if ((res = mysql_store_result(c->h)) != NULL)
		mysql_free_result(res);
	c->changes = (int64_t)mysql_affected_rows(c->h);
	return (0);
}

/* A query of one integer (NULL gives -1): 0 or a class with *cause. */
static int
db_mysql_query_int(struct db *db, const char *sql, long long *out, char **cause)
{
	struct db_mysql *c = db_mysql_c(db);
	MYSQL_RES *res;
	MYSQL_ROW row;
	int rc;

	*out = -1;
	if (mysql_real_query(c->h, sql, strlen(sql)) != 0 ||
	    (res = mysql_store_result(c->h)) == NULL) {
		rc = db_mysql_fail(c, mysql_errno(c->h), mysql_error(c->h));
		xasprintf(cause, "%s: %s", db_name(db), c->err);
		return (rc);
	}
	if ((row = mysql_fetch_row(res)) != NULL && row[0] != NULL)
		*out = strtoll(row[0], NULL, 10);
	mysql_free_result(res);
	return (0);
}

/* Set the connection options from u; -1 with *cause. */
static int
db_mysql_options(MYSQL *h, const struct db_url *u, int timeout, char **cause)
{
	unsigned int t = (unsigned int)timeout;
	unsigned int proto =
	    u->unix_socket != NULL ? MYSQL_PROTOCOL_SOCKET : MYSQL_PROTOCOL_TCP;
	my_bool on = 1, off = 0;
	int bad = 0;

	bad |= mysql_optionsv(h, MYSQL_OPT_CONNECT_TIMEOUT, &t);
	bad |= mysql_optionsv(h, MYSQL_OPT_READ_TIMEOUT, &t);
	bad |= mysql_optionsv(h, MYSQL_OPT_WRITE_TIMEOUT, &t);
	bad |= mysql_optionsv(h, MYSQL_OPT_PROTOCOL, &proto);
	bad |= mysql_optionsv(h, MYSQL_OPT_RECONNECT, &off);
	bad |= mysql_optionsv(h, MYSQL_SET_CHARSET_NAME, u->charset);
	if (u->ssl_ca != NULL) {
		bad |= mysql_optionsv(h, MYSQL_OPT_SSL_CA, u->ssl_ca);
		bad |= mysql_optionsv(h, MYSQL_OPT_SSL_ENFORCE, &on);
		bad |= mysql_optionsv(h, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on);
	}
	if (bad != 0) {
		xasprintf(cause, "cannot set the MySQL connection options");
		return (-1);
	}
	return (0);
}

/* The per-session settings; -1 with *cause. */
static int
db_mysql_session(struct db *db, int timeout, char **cause)
{
	char sql[128], *why = NULL;
	static const char *const fixed[] = {
		"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
		"SET SESSION sql_mode = 'STRICT_ALL_TABLES,"
		"ERROR_FOR_DIVISION_BY_ZERO,NO_ZERO_DATE,NO_ZERO_IN_DATE,"
		"NO_ENGINE_SUBSTITUTION'",
		"SET SESSION autocommit = 1", NULL
	};
	int i;

	/* half the read timeout: a lock wait ends as 1205 (retry), not as a
	 * client read timeout (a lost connection) */
	snprintf(sql, sizeof sql, "SET SESSION innodb_lock_wait_timeout = %d",
	    timeout / 2 > 0 ? timeout / 2 : 1);
	for (i = 0; fixed[i] != NULL; i++) {
		if (db_mysql_exec(db, fixed[i], &why) != 0)
			goto fail;
	}
	if (db_mysql_exec(db, sql, &why) == 0)
		return (0);
fail:
	xasprintf(cause, "%s: session set-up: %s", db_name(db), why);
	free(why);
	return (-1);
}

/* The library's global set-up, which is not thread-safe by itself. */
static void
db_mysql_library_init(void)
{
	if (mysql_library_init(0, NULL, NULL) != 0)
		fatalx("db: mysql_library_init failed");
}

/* Connect; -1 with *cause (naming the URL masked, never the password). */
static int
db_mysql_open(struct db *db, const struct db_url *u, int timeout, char **cause)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	struct db_mysql *c = xcalloc(1, sizeof *c);

	/* workers open their connections at the same time */
	pthread_once(&once, db_mysql_library_init);
	db_set_engine_state(db, c);
	if ((c->h = mysql_init(NULL)) == NULL)
		fatalx("db: mysql_init: out of memory");
	if (db_mysql_options(c->h, u, timeout, cause) != 0)
		return (-1);
	if (mysql_real_connect(c->h, *u->host != '\0' ? u->host : NULL, u->user,
		u->password != NULL ? u->password : "", u->database, u->port,
		u->unix_socket, CLIENT_FOUND_ROWS) == NULL) {
		xasprintf(cause, "%s: cannot connect: %s (%u)", db_name(db),
		    mysql_error(c->h), mysql_errno(c->h));
		return (-1);
	}
	return (db_mysql_session(db, timeout, cause));
}

/* Close the connection (every statement is finalized by then). */
static void
db_mysql_close(struct db *db)
{
	struct db_mysql *c = db_mysql_c(db);

	if (c->h != NULL)
		mysql_close(c->h);
	free(c);
	db_set_engine_state(db, NULL);
}

/*
 * Rewrite ?N to ? (outside quotes), recording each position's N in
 * st->pos; the new SQL, or NULL on a bare ? or ?0.
 */
static char *
db_mysql_rewrite(struct db_mysql_stmt *st, const char *sql)
{
	char *out = xmalloc(strlen(sql) + 1), *o = out, quote = 0;
	const char *p = sql;
	long n;

	while (*p != '\0') {
		if (quote != 0 || *p == '\'' || *p == '"') {
			quote = *p == quote ? 0 : (quote == 0 ? *p : quote);
			*o++ = *p++;
			continue;
		}
		if (*p != '?') {
			*o++ = *p++;
			continue;
		}
		n = strtol(p + 1, (char **)&p, 10);
		if (n < 1 || n > 999) {
			free(out);
			return (NULL);
		}
		*o++ = '?';
		st->pos = xreallocarray(st->pos, (size_t)st->npos + 1,
		    sizeof *st->pos);
		st->pos[st->npos++] = (int)n;
		if (n > st->nparams)
			st->nparams = (int)n;
	}
	*o = '\0';
	return (out);
}

static void db_mysql_finalize(void *);

/* Prepare for keeping; NULL (class in *rc) on error. */
static void *
db_mysql_prepare(struct db *db, const char *sql, int *rc)
{
	struct db_mysql_stmt *st = xcalloc(1, sizeof *st);
	char *text;

	st->c = db_mysql_c(db);
	if ((text = db_mysql_rewrite(st, sql)) == NULL) {
		snprintf(st->c->err, sizeof st->c->err,
		    "bad ?N parameter in SQL");
		*rc = STORE_ERROR;
		goto fail;
	}
	if ((st->h = mysql_stmt_init(st->c->h)) == NULL ||
	    mysql_stmt_prepare(st->h, text, strlen(text)) != 0) {
		*rc = st->h != NULL
		    ? db_mysql_fail(st->c, mysql_stmt_errno(st->h),
			  mysql_stmt_error(st->h))
		    : db_mysql_fail(st->c, mysql_errno(st->c->h),
			  mysql_error(st->c->h));
		free(text);
		goto fail;
	}
	free(text);
	st->params = xcalloc((size_t)st->nparams + 1, sizeof *st->params);
	st->in = xcalloc((size_t)st->npos + 1, sizeof *st->in);
	return (st);
fail:
	db_mysql_finalize(st);
	return (NULL);
}

/* Forget the bound values. */
static void
db_mysql_clear_params(struct db_mysql_stmt *st)
{
	int i;

	for (i = 1; st->params != NULL && i <= st->nparams; i++) {
		free(st->params[i].text);
		st->params[i].text = NULL;
		st->params[i].type = DB_MYSQL_NULL;
	}
}

/* Free the result buffers. */
static void
db_mysql_free_out(struct db_mysql_stmt *st)
{
	unsigned int i;

	for (i = 0; st->out_buf != NULL && i < st->ncols; i++)
		free(st->out_buf[i]);
	free(st->out_buf);
	free(st->out);
	free(st->out_len);
	free(st->out_null);
	free(st->out_cap);
	st->out_buf = NULL;
	st->out = NULL;
	st->out_len = NULL;
	st->out_null = NULL;
	st->out_cap = NULL;
	st->ncols = 0;
}

static void
db_mysql_finalize(void *p)
{
	struct db_mysql_stmt *st = p;

	if (st == NULL)
		return;
	db_mysql_clear_params(st);
	db_mysql_free_out(st);
	if (st->h != NULL)
		mysql_stmt_close(st->h);
	free(st->params);
	free(st->in);
	free(st->pos);
	free(st);
}

/* The parameter slot ?i, or NULL when the SQL has none. */
static struct db_mysql_param *
db_mysql_param(struct db_mysql_stmt *st, int i)
{
	if (i < 1 || i > st->nparams)
		return (NULL);
	free(st->params[i].text);
	st->params[i].text = NULL;
	return (&st->params[i]);
}

static int
db_mysql_bind_null(void *p, int i)
{
	struct db_mysql_param *pa = db_mysql_param(p, i);

	if (pa == NULL)
		return (-1);
	pa->type = DB_MYSQL_NULL;
	return (0);
}

static int
db_mysql_bind_text(void *p, int i, const char *s)
{
	struct db_mysql_param *pa = db_mysql_param(p, i);

	if (pa == NULL)
		return (-1);
	pa->type = DB_MYSQL_TEXT;
	pa->text = xstrdup(s);
	return (0);
}

static int
db_mysql_bind_int(void *p, int i, int64_t v)
{
	struct db_mysql_param *pa = db_mysql_param(p, i);

	if (pa == NULL)
		return (-1);
	pa->type = DB_MYSQL_INT;
	pa->i = (long long)v;
	return (0);
}

/* Point the input binds at the values, position by position. */
static void
db_mysql_bind_in(struct db_mysql_stmt *st)
{
	struct db_mysql_param *pa;
	MYSQL_BIND *b;
	int k;

	memset(st->in, 0, sizeof *st->in * ((size_t)st->npos + 1));
	for (k = 0; k < st->npos; k++) {
		pa = &st->params[st->pos[k]];
		b = &st->in[k];
		switch (pa->type) {
		case DB_MYSQL_TEXT:
			b->buffer_type = MYSQL_TYPE_STRING;
			b->buffer = pa->text;
			b->buffer_length = strlen(pa->text);
			break;
		case DB_MYSQL_INT:
			b->buffer_type = MYSQL_TYPE_LONGLONG;
			b->buffer = &pa->i;
			break;
		default:
			b->buffer_type = MYSQL_TYPE_NULL;
			break;
		}
	}
}

/* Bind every result column as text into its buffer. */
static void
db_mysql_bind_out(struct db_mysql_stmt *st)
{
	unsigned int i, n = st->ncols;

	st->out = xcalloc(n, sizeof *st->out);
	st->out_len = xcalloc(n, sizeof *st->out_len);
	st->out_null = xcalloc(n, sizeof *st->out_null);
	st->out_buf = xcalloc(n, sizeof *st->out_buf);
	st->out_cap = xcalloc(n, sizeof *st->out_cap);
	for (i = 0; i < n; i++) {
		st->out_cap[i] = DB_MYSQL_COL_INIT;
		st->out_buf[i] = xmalloc(st->out_cap[i]);
		st->out[i].buffer_type = MYSQL_TYPE_STRING;
		st->out[i].buffer = st->out_buf[i];
		st->out[i].buffer_length = st->out_cap[i] - 1;
		st->out[i].length = &st->out_len[i];
		st->out[i].is_null = &st->out_null[i];
	}
}

/* Execute (and store the result of) a statement: 0 or a class. */
static int
db_mysql_execute(struct db_mysql_stmt *st)
{
	db_mysql_bind_in(st);
	if ((st->npos > 0 && mysql_stmt_bind_param(st->h, st->in) != 0) ||
	    mysql_stmt_execute(st->h) != 0)
		goto fail;
	st->executed = 1;
	if ((st->ncols = mysql_stmt_field_count(st->h)) == 0) {
		st->c->changes = (int64_t)mysql_stmt_affected_rows(st->h);
		return (0);
	}
	if (mysql_stmt_store_result(st->h) != 0)
		goto fail;
	db_mysql_bind_out(st);
	if (mysql_stmt_bind_result(st->h, st->out) != 0)
		goto fail;
	return (0);
fail:
	return (db_mysql_fail(st->c, mysql_stmt_errno(st->h),
	    mysql_stmt_error(st->h)));
}

/* Fetch the columns that did not fit, into grown buffers. */
static int
db_mysql_refetch(struct db_mysql_stmt *st)
{
	unsigned int i;

	for (i = 0; i < st->ncols; i++) {
		if (st->out_null[i] || st->out_len[i] < st->out_cap[i])
			continue;
		st->out_cap[i] = st->out_len[i] + 1;
		st->out_buf[i] =
		    xreallocarray(st->out_buf[i], st->out_cap[i], 1);
		st->out[i].buffer = st->out_buf[i];
		st->out[i].buffer_length = st->out_cap[i] - 1;
		if (mysql_stmt_fetch_column(st->h, &st->out[i], i, 0) != 0)
			return (db_mysql_fail(st->c, mysql_stmt_errno(st->h),
			    mysql_stmt_error(st->h)));
	}
	/*
	 * The grown buffers are bound before the next fetch, not now:
	 * some Connector/C versions (3.3 in MariaDB 10.11.18) reset the
	 * current row's lengths in mysql_stmt_bind_result, which made a
	 * long column read as "".
	 */
	st->rebind = 1;
	return (0);
}

/* Execute on the first call, then DB_ROW per row and DB_DONE. */
static int
db_mysql_step(struct db *db, void *p)
{
	struct db_mysql_stmt *st = p;
	unsigned int i;
	int rc;

	(void)db;
	if (!st->executed && (rc = db_mysql_execute(st)) != 0)
		return (rc);
	if (st->ncols == 0)
		return (DB_DONE);
	if (st->rebind) {
		if (mysql_stmt_bind_result(st->h, st->out) != 0)
			return (db_mysql_fail(st->c, mysql_stmt_errno(st->h),
			    mysql_stmt_error(st->h)));
		st->rebind = 0;
	}
	rc = mysql_stmt_fetch(st->h);
	if (rc == MYSQL_NO_DATA)
		return (DB_DONE);
	if (rc == MYSQL_DATA_TRUNCATED && (rc = db_mysql_refetch(st)) != 0)
		return (rc);
	if (rc == 1)
		return (db_mysql_fail(st->c, mysql_stmt_errno(st->h),
		    mysql_stmt_error(st->h)));
	for (i = 0; i < st->ncols; i++)
		st->out_buf[i][st->out_null[i] ? 0 : st->out_len[i]] = '\0';
	return (DB_ROW);
}

/* Free the stored result and the bound values, ready to run again. */
static void
db_mysql_reset(void *p)
{
	struct db_mysql_stmt *st = p;

	if (st->executed && st->ncols > 0)
		mysql_stmt_free_result(st->h);
	db_mysql_free_out(st);
	db_mysql_clear_params(st);
	st->executed = 0;
	st->rebind = 0;
}

static const char *
db_mysql_column_text(void *p, int i)
{
	struct db_mysql_stmt *st = p;

	if (i < 0 || (unsigned int)i >= st->ncols || st->out_null[i])
		return (NULL);
	return (st->out_buf[i]);
}

static int
db_mysql_column_is_null(void *p, int i)
{
	struct db_mysql_stmt *st = p;

	return (i < 0 || (unsigned int)i >= st->ncols || st->out_null[i]);
}

static int64_t
db_mysql_changes(struct db *db)
{
	return (db_mysql_c(db)->changes);
}

/* ROLLBACK outside a transaction is harmless on MySQL. */
static int
db_mysql_in_transaction(struct db *db)
{
	(void)db;
	return (1);
}

static const char *
db_mysql_errmsg(struct db *db)
{
	return (db_mysql_c(db)->err);
}

/* schema_version's one row (0 when the table is missing). */
static int
db_mysql_schema_version(struct db *db, char **cause)
{
	long long v;

	if (db_mysql_query_int(db,
		"SELECT COUNT(*) FROM information_schema.tables "
		"WHERE table_schema = DATABASE() AND "
		"table_name = 'schema_version'",
		&v, cause) != 0)
		return (-1);
	if (v == 0)
		return (0);
	if (db_mysql_query_int(db,
		"SELECT version FROM schema_version WHERE id = 1", &v,
		cause) != 0)
		return (-1);
	return (v < 0 ? 0 : (int)v);
}

/* Run one step's statements and move the version from -> to. */
static int
db_mysql_apply(struct db *db, int from, const struct db_mysql_step *s,
    char **cause)
{
	char sql[128], *why = NULL;
	int i;

	for (i = 0; s->sql[i] != NULL; i++) {
		if (db_exec(db, s->sql[i], &why) != 0)
			goto fail;
	}
	snprintf(sql, sizeof sql,
	    "UPDATE schema_version SET version = %d "
	    "WHERE id = 1 AND version = %d",
	    s->version, from);
	if (db_exec(db, sql, &why) != 0)
		goto fail;
	log_info("db: %s: schema at version %d", db_name(db), s->version);
	return (0);
fail:
	xasprintf(cause, "migration to version %d failed: %s", s->version, why);
	free(why);
	return (-1);
}

/* Apply every step the database lacks (the named lock held). */
static int
db_mysql_steps_run(struct db *db, char **cause)
{
	int i, v;

	if (db_exec(db,
		"CREATE TABLE IF NOT EXISTS schema_version ("
		"  id INT NOT NULL, version INT NOT NULL,"
		"  PRIMARY KEY (id))" DB_MYSQL_TABLE,
		cause) != 0 ||
	    db_exec(db,
		"INSERT IGNORE INTO schema_version (id, version) "
		"VALUES (1, 0)",
		cause) != 0)
		return (-1);
	if ((v = db_mysql_schema_version(db, cause)) < 0)
		return (-1);
	if (v > db_schema_latest()) {
		xasprintf(cause,
		    "%s: schema version %d is newer than this binary knows (%d); refusing to use it",
		    db_name(db), v, db_schema_latest());
		return (-1);
	}
	for (i = 0; i < DB_MYSQL_NSTEPS; i++) {
		if (db_mysql_steps[i].version <= v)
			continue;
		if (db_mysql_apply(db, v, &db_mysql_steps[i], cause) != 0)
			return (-1);
		v = db_mysql_steps[i].version;
	}
	return (0);
}

/*
 * db-sync: under GET_LOCK (a second replica waits for the first, then
 * finds nothing to do), apply what is missing.  0 or -1 with *cause.
 */
static int
db_mysql_migrate(struct db *db, char **cause)
{
	long long got;
	char *why = NULL;
	int rc;

	if (db_mysql_steps[DB_MYSQL_NSTEPS - 1].version != db_schema_latest()) {
		xasprintf(cause,
		    "this binary's MySQL schema stops at version %d but SQLite's at %d: a migration lacks its MySQL counterpart in db_mysql.c",
		    db_mysql_steps[DB_MYSQL_NSTEPS - 1].version,
		    db_schema_latest());
		return (-1);
	}
	if (db_mysql_query_int(db,
		"SELECT GET_LOCK('" DB_MYSQL_LOCK
		"', " DB_MYSQL_STR(DB_MYSQL_LOCK_WAIT) ")",
		&got, cause) != 0)
		return (-1);
	if (got != 1) {
		xasprintf(cause,
		    "%s: another db-sync has held the lock %s for %d seconds",
		    db_name(db), DB_MYSQL_LOCK, DB_MYSQL_LOCK_WAIT);
		return (-1);
	}
	rc = db_mysql_steps_run(db, cause);
	if (db_mysql_query_int(db, "SELECT RELEASE_LOCK('" DB_MYSQL_LOCK "')",
		&got, &why) != 0) {
		log_warn("db: %s", why);
		free(why);
	}
	return (rc);
}

const struct db_engine db_mysql_engine = {
	.name = "mysql",
	.begin_sql = "START TRANSACTION",
	.open = db_mysql_open,
	.close = db_mysql_close,
	.exec = db_mysql_exec,
	.prepare = db_mysql_prepare,
	.finalize = db_mysql_finalize,
	.bind_null = db_mysql_bind_null,
	.bind_text = db_mysql_bind_text,
	.bind_int = db_mysql_bind_int,
	.step = db_mysql_step,
	.reset = db_mysql_reset,
	.column_text = db_mysql_column_text,
	.column_is_null = db_mysql_column_is_null,
	.changes = db_mysql_changes,
	.in_transaction = db_mysql_in_transaction,
	.errmsg = db_mysql_errmsg,
	.schema_version = db_mysql_schema_version,
	.migrate = db_mysql_migrate,
};
