/*
 * store_restriction.c: token restrictions in the database.
 *
 * A restriction is one row of restrictions plus its ordered Keystone roles
 * in restriction_roles (position, id, optional name); both are written in
 * one transaction, and read while the restriction's row is still being
 * stepped so the two come from one snapshot.  A restriction that a role
 * still references cannot be deleted (STORE_IN_USE, nothing removed).
 *
 * Runs on the thread that owns the struct db; blocks only as db.c does.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Columns, in STORE_RESTRICTION_COLUMNS order. */
enum {
	SX_ID = 0,
	SX_DOMAIN_ID,
	SX_USER_ID,
	SX_PROJECT_ID,
	SX_ALLOW_RENEW,
	SX_ALLOW_RESCOPE,
	SX_CREATED_AT,
	SX_UPDATED_AT
};

static int store_restriction_read(struct db *, struct db_stmt *, void **);
static void store_restriction_free(void *);

static const struct store_filter store_restriction_filters[] = {
	{ "domain_id", 0 }, { "user_id", 0 }, { "project_id", 0 }, { NULL, 0 }
};

static const struct store_list_def store_restriction_list_def = { "restriction",
	"restrictions", STORE_RESTRICTION_COLUMNS, store_restriction_filters,
	store_restriction_read, store_restriction_free };

/* Bind every column (?1..?8). */
static int
store_restriction_bind(struct db_stmt *st, const struct restriction *rs)
{
	int bad = 0;

	bad |= store_bind_text(st, SX_ID + 1, rs->id);
	bad |= store_bind_text(st, SX_DOMAIN_ID + 1, rs->domain_id);
	bad |= store_bind_text(st, SX_USER_ID + 1, rs->user_id);
	bad |= store_bind_text(st, SX_PROJECT_ID + 1, rs->project_id);
	bad |= db_bind_int(st, SX_ALLOW_RENEW + 1, rs->allow_renew != 0);
	bad |= db_bind_int(st, SX_ALLOW_RESCOPE + 1, rs->allow_rescope != 0);
	bad |= store_bind_text(st, SX_CREATED_AT + 1, rs->created_at);
	bad |= store_bind_text(st, SX_UPDATED_AT + 1, rs->updated_at);
	return (bad == 0 ? 0 : -1);
}

/* Load the ordered roles of restriction rs; STORE_OK or STORE_ERROR. */
static int
store_restriction_read_roles(struct db *db, struct restriction *rs)
{
	struct db_stmt *st;
	struct restriction_role *rr;
	int rc;

	if ((st = db_stmt(db, DB_RROLE_LIST)) == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, rs->id);
	while ((rc = db_step(st)) == DB_ROW) {
		rs->roles =
		    xreallocarray(rs->roles, rs->nroles + 1, sizeof *rs->roles);
		rr = &rs->roles[rs->nroles++];
		rr->id = store_column_text(st, 0);
		rr->name = store_column_text(st, 1);
		if (rr->id == NULL)
			rr->id = xstrdup("");
	}
	if (rc != DB_DONE) {
		rc = store_error(db, rc, STORE_ERROR, "restriction roles");
		db_stmt_done(db, st);
		return (rc);
	}
	return (db_stmt_done(db, st) == 0 ? STORE_OK : STORE_ERROR);
}

/* A new restriction (with its roles) from the current row. */
static int
store_restriction_read(struct db *db, struct db_stmt *st, void **out)
{
	struct restriction *rs;

	*out = NULL;
	rs = xcalloc(1, sizeof *rs);
	store_column_fixed(st, SX_ID, rs->id, sizeof rs->id);
	rs->domain_id = store_column_text(st, SX_DOMAIN_ID);
	rs->user_id = store_column_text(st, SX_USER_ID);
	rs->project_id = store_column_text(st, SX_PROJECT_ID);
	rs->allow_renew = (int)db_column_int(st, SX_ALLOW_RENEW);
	rs->allow_rescope = (int)db_column_int(st, SX_ALLOW_RESCOPE);
	store_column_fixed(st, SX_CREATED_AT, rs->created_at,
	    sizeof rs->created_at);
	store_column_fixed(st, SX_UPDATED_AT, rs->updated_at,
	    sizeof rs->updated_at);
	if (store_restriction_read_roles(db, rs) != STORE_OK) {
		restriction_free(rs);
		return (STORE_ERROR);
	}
	*out = rs;
	return (STORE_OK);
}

/* store_list's free callback. */
static void
store_restriction_free(void *p)
{
	restriction_free(p);
}

/* Insert the restriction's roles in order (inside a transaction). */
static int
store_restriction_write_roles(struct db *db, const struct restriction *rs)
{
	struct db_stmt *st;
	size_t i;
	int result = STORE_OK, bad;

	for (i = 0; i < rs->nroles && result == STORE_OK; i++) {
		if ((st = db_stmt(db, DB_RROLE_INSERT)) == NULL)
			return (STORE_ERROR);
		bad = store_bind_text(st, 1, rs->id);
		bad |= db_bind_int(st, 2, i);
		bad |= store_bind_text(st, 3, rs->roles[i].id);
		bad |= store_bind_text(st, 4, rs->roles[i].name);
		if (bad != 0) {
			db_stmt_done(db, st);
			return (STORE_ERROR);
		}
		result = store_write(db, st, STORE_ERROR, "restriction role");
	}
	return (result);
}

/* Write the row with statement id, then replace its roles. */
static int
store_restriction_put(struct db *db, enum db_stmt_id id, struct restriction *rs)
{
	struct db_stmt *st;
	int result;

	if ((result = store_begin(db)) != STORE_OK)
		return (result);
	if ((st = db_stmt(db, id)) == NULL ||
	    store_restriction_bind(st, rs) != 0) {
		db_stmt_done(db, st);
		return (store_finish(db, STORE_ERROR));
	}
	result = store_write(db, st, STORE_ERROR, "restriction");
	if (result == STORE_OK && id == DB_RESTRICTION_UPDATE) {
		if (db_changes(db) == 0)
			result = STORE_NOT_FOUND;
		else if ((st = db_stmt(db, DB_RROLE_DELETE)) == NULL)
			result = STORE_ERROR;
		else {
			store_bind_text(st, 1, rs->id);
			result = store_write(db, st, STORE_ERROR,
			    "restriction roles");
		}
	}
	if (result == STORE_OK)
		result = store_restriction_write_roles(db, rs);
	return (store_finish(db, result));
}

/* Insert a new restriction and its roles. */
int
store_restriction_create(struct db *db, struct restriction *rs)
{
	if (rs->id[0] == '\0')
		util_new_id(rs->id);
	store_stamp(rs->created_at, rs->updated_at);
	return (store_restriction_put(db, DB_RESTRICTION_INSERT, rs));
}

/* Write every field and the role list of an existing restriction. */
int
store_restriction_update(struct db *db, struct restriction *rs)
{
	store_stamp(NULL, rs->updated_at);
	return (store_restriction_put(db, DB_RESTRICTION_UPDATE, rs));
}

/* Load one restriction with its roles. */
int
store_restriction_get(struct db *db, const char *id, struct restriction **out)
{
	struct db_stmt *st;
	void *p = NULL;
	int result;

	*out = NULL;
	if ((st = db_stmt(db, DB_RESTRICTION_GET)) == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, id);
	result = store_get_row(db, st, "restriction");
	if (result == STORE_OK)
		result = store_restriction_read(db, st, &p);
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	if (result != STORE_OK) {
		restriction_free(p);
		return (result);
	}
	*out = p;
	return (STORE_OK);
}

/* One page of restrictions matching the query's filters. */
int
store_restriction_list(struct db *db, const struct store_query *q,
    struct restriction ***out, size_t *count, int *more)
{
	void **arr;
	int result;

	result =
	    store_list(db, &store_restriction_list_def, q, &arr, count, more);
	*out = (struct restriction **)arr;
	return (result);
}

/* Delete a restriction and its roles, unless a role references it. */
int
store_restriction_delete(struct db *db, const char *id)
{
	return (store_delete(db, DB_RESTRICTION_DELETE, id, STORE_IN_USE,
	    "restriction delete"));
}
