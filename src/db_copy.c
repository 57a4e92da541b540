/*
 * db_copy.c: `keystone-k8s-auth db-copy --from URL --to URL [--force]`,
 * moving a deployment from one database to another (SQLite to MariaDB
 * when a second replica is added, issue 13).
 *
 * Copies every row of instances, restrictions, restriction_roles and roles
 * (in that order: foreign keys) column by column, so reviewer tokens stay
 * encrypted as they are and no credential key is needed; the target's
 * schema is brought up to date first, and the source must already be at
 * this binary's schema version (run db-sync on it).  The whole copy is one
 * target transaction (retried on a deadlock or certification conflict), a
 * non-empty target is refused unless --force (its rows are then
 * replaced), and the target's revision is bumped so that running replicas
 * reload.  Prints the rows copied per table.
 *
 * Runs on the main thread, blocking; the URLs are only shown masked, and
 * their passwords are wiped from argv as soon as they are read.
 */
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define DB_COPY_NTABLES 4

struct db_copy_table {
	const char *name;
	const char *columns;
	int ncolumns;
	const char *order;
};

/* In foreign key order; columns as the store reads and writes them. */
static const struct db_copy_table db_copy_tables[DB_COPY_NTABLES] = {
	{ "instances", STORE_INSTANCE_COLUMNS, 16, "id" },
	{ "restrictions", STORE_RESTRICTION_COLUMNS, 8, "id" },
	{ "restriction_roles", "restriction_id, position, role_id, role_name",
	    4, "restriction_id, position" },
	{ "roles", STORE_ROLE_COLUMNS, 14, "id" },
};

struct db_copy {
	struct db *src;
	struct db *dst;
	int force;
	long counts[DB_COPY_NTABLES];
	const char *late; /* a table written to while the copy began */
};

/* Rows in a table (-1 on error, logged). */
static long
db_copy_count(struct db *db, const char *table)
{
	struct db_stmt *st;
	char sql[128];
	long n = -1;

	snprintf(sql, sizeof sql, "SELECT COUNT(*) FROM %s", table);
	if ((st = db_stmt_sql(db, sql)) == NULL)
		return (-1);
	if (store_get_row(db, st, table) == STORE_OK)
		n = (long)db_column_int(st, 0);
	db_stmt_done(db, st);
	return (n);
}

/* The insert for a table: INSERT INTO t (cols) VALUES (?1, ..., ?n). */
static char *
db_copy_insert_sql(const struct db_copy_table *t)
{
	char *sql, *next;
	int i;

	xasprintf(&sql, "INSERT INTO %s (%s) VALUES (", t->name, t->columns);
	for (i = 1; i <= t->ncolumns; i++) {
		xasprintf(&next, "%s?%d%s", sql, i,
		    i == t->ncolumns ? ")" : ", ");
		free(sql);
		sql = next;
	}
	return (sql);
}

/* Copy one row from the source statement into the bound insert. */
static int
db_copy_row(struct db_copy *c, const struct db_copy_table *t,
    struct db_stmt *from, struct db_stmt *to)
{
	int i, bad = 0;

	for (i = 0; i < t->ncolumns; i++)
		bad |= db_bind_text(to, i + 1,
		    db_column_is_null(from, i) ? NULL
					       : db_column_text(from, i));
	if (bad != 0) {
		db_stmt_done(c->dst, to);
		return (STORE_ERROR);
	}
	return (store_write(c->dst, to, STORE_ERROR, t->name));
}

/* Copy every row of one table; STORE_* result. */
static int
db_copy_table(struct db_copy *c, int k)
{
	const struct db_copy_table *t = &db_copy_tables[k];
	struct db_stmt *from, *to;
	char *sql;
	int rc, result = STORE_OK;

	xasprintf(&sql, "SELECT %s FROM %s ORDER BY %s", t->columns, t->name,
	    t->order);
	from = db_stmt_sql(c->src, sql);
	free(sql);
	sql = db_copy_insert_sql(t);
	to = db_stmt_sql(c->dst, sql);
	free(sql);
	if (from == NULL || to == NULL)
		return (STORE_ERROR);
	c->counts[k] = 0;
	while (result == STORE_OK && (rc = db_step(from)) == DB_ROW) {
		if ((result = db_copy_row(c, t, from, to)) == STORE_OK)
			c->counts[k]++;
	}
	if (result == STORE_OK && rc != DB_DONE)
		result = store_error(c->src, rc, STORE_ERROR, t->name);
	db_stmt_done(c->src, from);
	return (result);
}

/*
 * Without --force, the target is empty inside the copy's transaction
 * too: the check before it ran outside, and a replica already serving on
 * the target may have written since; the copy would then mix the two
 * deployments' rows.  STORE_OK, STORE_CONFLICT (c->late set) or a failure.
 */
static int
db_copy_still_empty(struct db_copy *c, struct db *dst)
{
	long n;
	int k;

	for (k = 0; k < DB_COPY_NTABLES; k++) {
		if ((n = db_copy_count(dst, db_copy_tables[k].name)) < 0)
			return (STORE_ERROR);
		if (n > 0) {
			c->late = db_copy_tables[k].name;
			return (STORE_CONFLICT);
		}
	}
	return (STORE_OK);
}

/* store_run's body: empty the target when forced, copy every table. */
static int
db_copy_run(struct db *dst, void *arg)
{
	struct db_copy *c = arg;
	char sql[64];
	int k, result;

	c->late = NULL;
	if (!c->force && (result = db_copy_still_empty(c, dst)) != STORE_OK)
		return (result);
	for (k = DB_COPY_NTABLES - 1; c->force && k >= 0; k--) {
		snprintf(sql, sizeof sql, "DELETE FROM %s",
		    db_copy_tables[k].name);
		if ((result = db_exec(dst, sql, NULL)) != 0)
			return (result);
	}
	for (k = 0; k < DB_COPY_NTABLES; k++) {
		if ((result = db_copy_table(c, k)) != STORE_OK)
			return (result);
	}
	return (STORE_OK);
}

/* Refuse a missing SQLite source file (db_open would create it). */
static struct db *
db_copy_open_source(const char *url, char **cause)
{
	struct db_url u;
	struct stat st;
	struct db *db;
	int v;

	if (db_url_parse(url, &u, cause) != 0)
		return (NULL);
	if (u.kind == DB_SQLITE && stat(u.path, &st) == -1) {
		xasprintf(cause, "--from %s: %s", u.path, strerror(errno));
		db_url_free(&u);
		return (NULL);
	}
	db_url_free(&u);
	if ((db = db_open(url, cause)) == NULL)
		return (NULL);
	if ((v = db_schema_version(db)) != db_schema_latest()) {
		xasprintf(cause,
		    "--from %s: schema version %d, this binary's is %d: run db-sync on it first",
		    db_name(db), v, db_schema_latest());
		db_close(db);
		return (NULL);
	}
	return (db);
}

/* Refuse a target holding rows unless forced; 0 or -1 with *cause. */
static int
db_copy_check_target(struct db_copy *c, char **cause)
{
	long n, total = 0;
	int k;

	for (k = 0; k < DB_COPY_NTABLES; k++) {
		if ((n = db_copy_count(c->dst, db_copy_tables[k].name)) < 0) {
			xasprintf(cause, "--to %s: cannot count %s",
			    db_name(c->dst), db_copy_tables[k].name);
			return (-1);
		}
		total += n;
	}
	if (total > 0 && !c->force) {
		xasprintf(cause,
		    "--to %s: the target holds %ld rows; --force replaces them",
		    db_name(c->dst), total);
		return (-1);
	}
	return (0);
}

/* Open both ends and copy; 0 or -1 with *cause. */
static int
db_copy_do(const char *from, const char *to, int force, char **cause)
{
	struct db_copy c;
	int k, result, rc = -1;

	memset(&c, 0, sizeof c);
	c.force = force;
	if ((c.src = db_copy_open_source(from, cause)) == NULL)
		return (-1);
	if ((c.dst = db_open(to, cause)) == NULL)
		goto out;
	if (db_migrate(c.dst, cause) != 0 ||
	    db_copy_check_target(&c, cause) != 0)
		goto out;
	if ((result = store_run(c.dst, db_copy_run, &c)) != STORE_OK &&
	    c.late != NULL) {
		xasprintf(cause,
		    "--to %s: rows appeared in %s while the copy began (a replica serving on it?); nothing copied, --force replaces them",
		    db_name(c.dst), c.late);
		goto out;
	}
	if (result != STORE_OK) {
		xasprintf(cause,
		    "copy to %s failed (%s); the target's rows are unchanged",
		    db_name(c.dst), db_errmsg(c.dst));
		goto out;
	}
	for (k = 0; k < DB_COPY_NTABLES; k++)
		printf("%s: %ld\n", db_copy_tables[k].name, c.counts[k]);
	rc = 0;
out:
	db_close(c.src);
	db_close(c.dst);
	return (rc);
}

/*
 * A URL from the command line: a copy for us, and the password wiped
 * from argv at once (what ps and /proc/PID/cmdline show any local user).
 */
static char *
db_copy_take_url(char *arg)
{
	char *url = xstrdup(arg);

	db_url_wipe_password(arg);
	return (url);
}

/* db-copy's argv (after the subcommand name); the exit status. */
int
db_copy_main(int argc, char **argv)
{
	static const struct option longopts[] = { { "from", required_argument,
						      NULL, 'F' },
		{ "to", required_argument, NULL, 'T' },
		{ "force", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' }, { NULL, 0, NULL, 0 } };
	char *from = NULL, *to = NULL, *cause = NULL;
	int ch, force = 0, rc;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "fh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'F':
			freezero_str(from);
			from = db_copy_take_url(optarg);
			break;
		case 'T':
			freezero_str(to);
			to = db_copy_take_url(optarg);
			break;
		case 'f':
			force = 1;
			break;
		default:
			fprintf(stderr,
			    "usage: %s db-copy --from URL --to URL [--force]\n",
			    K8SAUTH_NAME);
			rc = ch == 'h' ? 0 : 1;
			goto out;
		}
	}
	rc = 1;
	if (from == NULL || to == NULL || optind != argc) {
		fprintf(stderr,
		    "usage: %s db-copy --from URL --to URL [--force]\n",
		    K8SAUTH_NAME);
		goto out;
	}
	log_open(LOGL_WARN, 0);
	if (strcmp(from, to) == 0) {
		fprintf(stderr,
		    "%s%s: db-copy: --from and --to are the same database\n",
		    log_prefix(LOGL_ERR), K8SAUTH_NAME);
		goto out;
	}
	if ((rc = db_copy_do(from, to, force, &cause)) != 0 && cause != NULL)
		fprintf(stderr, "%s%s: db-copy: %s\n", log_prefix(LOGL_ERR),
		    K8SAUTH_NAME, cause);
	free(cause);
	rc = rc == 0 ? 0 : 1;
out:
	if (from != NULL)
		freezero_str(from);
	if (to != NULL)
		freezero_str(to);
	return (rc);
}
