/*
 * store.c: what the three store_*.c files share.
 *
 * The mapping from SQLite result codes to STORE_* results, write and
 * transaction helpers, optional-text and JSON-list columns, and the one
 * generic list query (exact-match filters from a per-entity whitelist,
 * keyset pagination by id).  Handlers use the typed functions in
 * store_*.c and never see SQL.
 *
 * Runs on the thread that owns the struct db; blocks only as db.c does.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

#define STORE_LIST_SQL_MAX 1024
#define STORE_RETRIES      5 /* store_run: runs after the first */

/* Set updated (and created, when not NULL) to now. */
void
store_stamp(char *created, char *updated)
{
	util_timestamp(updated);
	if (created != NULL)
		memcpy(created, updated, TIMESTAMP_LEN + 1);
}

/* Bind text or, for NULL, SQL NULL; 0 or -1. */
int
store_bind_text(struct db_stmt *st, int i, const char *s)
{
	return (db_bind_text(st, i, s));
}

/* Bind a list as a JSON array of strings, NULL as SQL NULL; 0 or -1. */
int
store_bind_strlist(struct db_stmt *st, int i, const struct strlist *l)
{
	cJSON *a;
	char *s;
	size_t j;
	int rc;

	if (l == NULL)
		return (db_bind_text(st, i, NULL));
	a = cJSON_CreateArray();
	for (j = 0; j < l->n; j++) {
		if (a == NULL ||
		    !cJSON_AddItemToArray(a, cJSON_CreateString(l->v[j])))
			fatalx("store: out of memory building a JSON list");
	}
	if (a == NULL || (s = cJSON_PrintUnformatted(a)) == NULL)
		fatalx("store: out of memory printing a JSON list");
	cJSON_Delete(a);
	rc = db_bind_text(st, i, s);
	cJSON_free(s);
	return (rc);
}

/* A copy of a text column, or NULL when it is SQL NULL. */
char *
store_column_text(struct db_stmt *st, int i)
{
	const char *t;

	if (db_column_is_null(st, i) || (t = db_column_text(st, i)) == NULL)
		return (NULL);
	return (xstrdup(t));
}

/* Copy a text column into a fixed buffer, truncating; NULL gives "". */
void
store_column_fixed(struct db_stmt *st, int i, char *buf, size_t size)
{
	const char *t = db_column_text(st, i);
	size_t n;

	n = t != NULL ? strnlen(t, size - 1) : 0;
	if (n > 0)
		memcpy(buf, t, n);
	buf[n] = '\0';
}

/* Parse a JSON array of strings column into l; 0 or -1. */
int
store_column_strlist(struct db_stmt *st, int i, struct strlist *l)
{
	const char *t = db_column_text(st, i);
	const cJSON *e;
	cJSON *a;
	int n;

	memset(l, 0, sizeof *l);
	if (t == NULL || (a = cJSON_Parse(t)) == NULL)
		return (-1);
	if (!cJSON_IsArray(a) || (n = cJSON_GetArraySize(a)) < 0)
		goto fail;
	if (n > 0)
		l->v = xcalloc((size_t)n, sizeof *l->v);
	cJSON_ArrayForEach(e, a)
	{
		if (!cJSON_IsString(e))
			goto fail;
		l->v[l->n++] = xstrdup(e->valuestring);
	}
	cJSON_Delete(a);
	return (0);
fail:
	cJSON_Delete(a);
	strlist_free(l);
	return (-1);
}

/*
 * Map a failure class from db_step to a STORE_* result: conflicts stay
 * conflicts, a foreign key violation is what the caller says (fk_result),
 * retry and unavailable pass through, anything else is an error logged
 * with the engine's message (which names columns or keys, never values).
 */
int
store_error(struct db *db, int cls, int fk_result, const char *what)
{
	switch (cls) {
	case STORE_CONFLICT:
		log_debug("store: %s: conflict: %s", what, db_errmsg(db));
		return (STORE_CONFLICT);
	case DB_FOREIGN_KEY:
		log_debug("store: %s: foreign key: %s", what, db_errmsg(db));
		return (fk_result);
	case STORE_RETRY:
		log_info("store: %s: transient, may be retried: %s", what,
		    db_errmsg(db));
		return (STORE_RETRY);
	case STORE_UNAVAILABLE:
		log_warn("store: %s: database unavailable: %s", what,
		    db_errmsg(db));
		return (STORE_UNAVAILABLE);
	default:
		log_err("store: %s: %s", what, db_errmsg(db));
		return (STORE_ERROR);
	}
}

/* Run a bound write statement to completion and reset it. */
int
store_write(struct db *db, struct db_stmt *st, int fk_result, const char *what)
{
	int rc, result = STORE_OK;

	if (st == NULL)
		return (STORE_ERROR);
	if ((rc = db_step(st)) < 0)
		result = store_error(db, rc, fk_result, what);
	db_stmt_done(db, st);
	return (result);
}

/*
 * Step a bound query once: STORE_OK with a row to read, STORE_NOT_FOUND,
 * or a failure.  The caller reads the row and then calls db_stmt_done.
 */
int
store_get_row(struct db *db, struct db_stmt *st, const char *what)
{
	int rc;

	if (st == NULL)
		return (STORE_ERROR);
	rc = db_step(st);
	if (rc == DB_ROW)
		return (STORE_OK);
	if (rc == DB_DONE)
		return (STORE_NOT_FOUND);
	return (store_error(db, rc, STORE_ERROR, what));
}

/*
 * Inside the open write transaction, is row id of table (a constant of
 * the caller's, never request data) still the one a decision was taken
 * on, the version stamped updated_at?  A handler checks a write against
 * its snapshot on a worker and the write runs later here: another
 * request or replica may have written in between (an admin protecting a
 * restriction, setting an instance's host, repointing a role).  The row
 * is read locked (FOR UPDATE on MySQL/MariaDB, so a concurrent writer of
 * it waits for this commit; SQLite's BEGIN IMMEDIATE already serializes
 * every writer).  Galera does not certify a locking read: a write of the
 * row on another node in the same instant is not seen.  STORE_OK,
 * STORE_CHANGED (also when the row is gone) or a failure.
 */
int
store_unchanged(struct db *db, const char *table, const char *id,
    const char *updated_at)
{
	struct db_stmt *st;
	const char *have;
	char sql[128];
	int result;

	snprintf(sql, sizeof sql, "SELECT updated_at FROM %s WHERE id = ?1%s",
	    table, db_kind(db) == DB_MYSQL ? " FOR UPDATE" : "");
	if ((st = db_stmt_sql(db, sql)) == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, id);
	result = store_get_row(db, st, table);
	if (result == STORE_OK) {
		have = db_column_text(st, 0);
		if (have == NULL || strcmp(have, updated_at) != 0)
			result = STORE_CHANGED;
	} else if (result == STORE_NOT_FOUND)
		result = STORE_CHANGED;
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	if (result == STORE_CHANGED)
		log_info("store: %s %.64s changed since it was checked; nothing written",
		    table, id);
	return (result);
}

/* qsort: lines. */
static int
store_print_cmp(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

/*
 * The lines (taken over, freed) sorted and joined: the same text for the
 * same rows whichever order a database or a snapshot gave them in.
 */
char *
store_print_join(char **lines, size_t n)
{
	size_t len = 1, off = 0, i, l;
	char *out;

	if (n > 0)
		qsort(lines, n, sizeof *lines, store_print_cmp);
	for (i = 0; i < n; i++)
		len += strlen(lines[i]);
	out = xmalloc(len);
	for (i = 0; i < n; i++) {
		l = strlen(lines[i]);
		memcpy(out + off, lines[i], l);
		off += l;
		free(lines[i]);
	}
	out[off] = '\0';
	free(lines);
	return (out);
}

/* One line of an instance's print: a role and its restriction's version. */
char *
store_print_line(const char *role_id, const char *role_at, const char *rs_id,
    const char *rs_at)
{
	char *line;

	xasprintf(&line, "%s %s %s %s\n", role_id != NULL ? role_id : "-",
	    role_at != NULL ? role_at : "-", rs_id != NULL ? rs_id : "-",
	    rs_at != NULL && *rs_at != '\0' ? rs_at : "-");
	return (line);
}

/* Start a write transaction (or a nested level): STORE_OK or a failure. */
int
store_begin(struct db *db)
{
	int rc;

	if ((rc = db_begin(db)) == 0)
		return (STORE_OK);
	return (
	    rc == STORE_RETRY || rc == STORE_UNAVAILABLE ? rc : STORE_ERROR);
}

/* Bump the revision row inside the open transaction. */
static int
store_bump_revision(struct db *db)
{
	struct db_stmt *st;

	st = db_stmt_sql(db,
	    "UPDATE revision SET value = value + 1 "
	    "WHERE id = 1");
	return (store_write(db, st, STORE_ERROR, "revision"));
}

/*
 * Commit when result is STORE_OK, else roll back; the final result.  The
 * outermost commit bumps the revision first, in the same transaction.
 */
int
store_finish(struct db *db, int result)
{
	if (result == STORE_OK && db_depth(db) == 1)
		result = store_bump_revision(db);
	if (result != STORE_OK) {
		db_rollback(db);
		return (result);
	}
	result = db_commit(db);
	if (result == STORE_RETRY || result == STORE_UNAVAILABLE ||
	    result == STORE_OK)
		return (result);
	return (STORE_ERROR);
}

/*
 * Run fn(db, arg) inside one transaction and commit it; on STORE_RETRY
 * (a deadlock or certification conflict) run it again after a jittered
 * back-off, at most STORE_RETRIES times.  Blocks: the database thread's
 * and the command line's only.
 */
int
store_run(struct db *db, int (*fn)(struct db *, void *), void *arg)
{
	unsigned int jitter;
	int attempt, result;

	for (attempt = 0;; attempt++) {
		if ((result = store_begin(db)) == STORE_OK)
			result = store_finish(db, fn(db, arg));
		if (result != STORE_RETRY || attempt == STORE_RETRIES)
			return (result);
		util_random_bytes(&jitter, sizeof jitter);
		usleep((useconds_t)((10000U << attempt) +
		    jitter % (10000U << attempt)));
	}
}

/* The revision: bumped by every committed write (STORE_* result). */
int
store_revision(struct db *db, uint64_t *out)
{
	struct db_stmt *st;
	int result;

	*out = 0;
	st = db_stmt_sql(db, "SELECT value FROM revision WHERE id = 1");
	if ((result = store_get_row(db, st, "revision")) == STORE_OK)
		*out = (uint64_t)db_column_int(st, 0);
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	return (result);
}

/*
 * Delete the row with this id using statement sid, in a transaction:
 * STORE_NOT_FOUND when absent, fk_result when a foreign key forbids it.
 */
int
store_delete(struct db *db, enum db_stmt_id sid, const char *id, int fk_result,
    const char *what)
{
	struct db_stmt *st;
	int result;

	if ((result = store_begin(db)) != STORE_OK)
		return (result);
	if ((st = db_stmt(db, sid)) == NULL)
		return (store_finish(db, STORE_ERROR));
	store_bind_text(st, 1, id);
	result = store_write(db, st, fk_result, what);
	if (result == STORE_OK && db_changes(db) == 0)
		result = STORE_NOT_FOUND;
	return (store_finish(db, result));
}

/* Index of a filter name in the whitelist, or -1. */
static int
store_filter_index(const struct store_filter *f, const char *name)
{
	int i;

	for (i = 0; f[i].name != NULL; i++) {
		if (strcmp(f[i].name, name) == 0)
			return (i);
	}
	return (-1);
}

/*
 * Match the query's filters against the whitelist: values[i] is the value
 * for whitelist entry i or NULL.  STORE_OK or STORE_ERROR (logged).
 */
static int
store_list_filters(const struct store_list_def *def,
    const struct store_query *q, const char **values)
{
	const char *v;
	char *esc;
	size_t j;
	int i;

	for (j = 0; j < q->nfilters && j < 8; j++) {
		i = store_filter_index(def->filters, q->filter_names[j]);
		v = q->filter_values[j];
		if (i < 0 || i >= 8 || values[i] != NULL || v == NULL ||
		    (def->filters[i].boolean && strcmp(v, "1") != 0 &&
			strcmp(v, "0") != 0)) {
			esc = log_escape(q->filter_names[j], 64);
			log_warn("store: %s list: bad filter \"%s\"", def->what,
			    esc);
			free(esc);
			return (STORE_ERROR);
		}
		values[i] = v;
	}
	return (STORE_OK);
}

/* Build and bind the list statement; NULL on error (logged). */
static struct db_stmt *
store_list_prepare(struct db *db, const struct store_list_def *def,
    const struct store_query *q, const char **values)
{
	struct db_stmt *st;
	char sql[STORE_LIST_SQL_MAX];
	size_t len;
	int i, k = 2, bad = 0;

	len = (size_t)snprintf(sql, sizeof sql,
	    "SELECT %s FROM %s WHERE "
	    "id > ?1",
	    def->columns, def->table);
	for (i = 0; def->filters[i].name != NULL && len < sizeof sql; i++) {
		if (values[i] != NULL)
			len += (size_t)snprintf(sql + len, sizeof sql - len,
			    " AND %s = ?%d", def->filters[i].name, k++);
	}
	if (len < sizeof sql)
		len += (size_t)snprintf(sql + len, sizeof sql - len,
		    " ORDER BY id LIMIT ?%d", k);
	if (len >= sizeof sql)
		fatalx("store: list query too long");
	if ((st = db_stmt_sql(db, sql)) == NULL)
		return (NULL);
	bad |= store_bind_text(st, 1, q->marker != NULL ? q->marker : "");
	for (i = 0, k = 2; def->filters[i].name != NULL; i++) {
		if (values[i] == NULL)
			continue;
		if (def->filters[i].boolean)
			bad |= db_bind_int(st, k++, values[i][0] == '1');
		else
			bad |= store_bind_text(st, k++, values[i]);
	}
	bad |= db_bind_int(st, k, q->limit + 1);
	if (bad != 0) {
		log_err("store: %s list: bind: %s", def->what, db_errmsg(db));
		db_stmt_done(db, st);
		return (NULL);
	}
	return (st);
}

/* Step the list statement, reading at most limit rows. */
static int
store_list_rows(struct db *db, const struct store_list_def *def,
    struct db_stmt *st, long limit, void ***out, size_t *count, int *more)
{
	void *obj;
	int rc;

	for (;;) {
		rc = db_step(st);
		if (rc == DB_DONE)
			return (STORE_OK);
		if (rc != DB_ROW)
			return (store_error(db, rc, STORE_ERROR, def->what));
		if ((long)*count == limit) {
			*more = 1;
			return (STORE_OK);
		}
		if ((rc = def->read(db, st, &obj)) != STORE_OK)
			return (rc);
		*out = xreallocarray(*out, *count + 1, sizeof **out);
		(*out)[(*count)++] = obj;
	}
}

/*
 * The generic list: rows with id > marker matching every filter, in id
 * order, at most limit of them; *more says whether another page exists.
 * On success *out is a malloc'd array (NULL when empty) of objects the
 * caller frees one by one and then the array.
 */
int
store_list(struct db *db, const struct store_list_def *def,
    const struct store_query *q, void ***out, size_t *count, int *more)
{
	struct db_stmt *st;
	const char *values[8] = { NULL };
	size_t i;
	int result;

	*out = NULL;
	*count = 0;
	*more = 0;
	if (q->limit <= 0 || q->limit >= INT_MAX || q->nfilters > 8) {
		log_err("store: %s list: bad limit or filters", def->what);
		return (STORE_ERROR);
	}
	if (store_list_filters(def, q, values) != STORE_OK)
		return (STORE_ERROR);
	if ((st = store_list_prepare(db, def, q, values)) == NULL)
		return (STORE_ERROR);
	result = store_list_rows(db, def, st, q->limit, out, count, more);
	db_stmt_done(db, st);
	if (result != STORE_OK) {
		for (i = 0; i < *count; i++)
			def->free((*out)[i]);
		free(*out);
		*out = NULL;
		*count = 0;
		*more = 0;
	}
	return (result);
}
