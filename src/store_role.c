/*
 * store_role.c: Kubernetes auth roles in the database.
 *
 * Typed create/get/list/update/delete over the roles table.  The bound
 * lists are stored as JSON arrays of strings; bound_pod_names is SQL NULL
 * when unset, token_ttl is SQL NULL when 0.  A role belongs to one
 * instance ((auth_instance_id, name) is unique) and references one token
 * restriction; a write naming an instance or restriction that does not
 * exist gives STORE_NOT_FOUND.
 *
 * Runs on the thread that owns the struct db; blocks only as db.c does.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Columns, in STORE_ROLE_COLUMNS order. */
enum {
	SR_ID = 0,
	SR_AUTH_INSTANCE_ID,
	SR_DOMAIN_ID,
	SR_NAME,
	SR_ENABLED,
	SR_SA_NAMES,
	SR_SA_NAMESPACES,
	SR_AUDIENCE,
	SR_POD_NAMES,
	SR_TOKEN_TTL,
	SR_RESTRICTION_ID,
	SR_CREATED_AT,
	SR_UPDATED_AT,
	SR_NS_SELECTOR
};

static int store_role_read(struct db *, struct db_stmt *, void **);
static void store_role_free(void *);

static const struct store_filter store_role_filters[] = { { "auth_instance_id",
							      0 },
	{ "domain_id", 0 }, { "name", 0 }, { "enabled", 1 }, { NULL, 0 } };

static const struct store_list_def store_role_list_def = { "role", "roles",
	STORE_ROLE_COLUMNS, store_role_filters, store_role_read,
	store_role_free };

/* Bind every column (?1..?14). */
static int
store_role_bind(struct db_stmt *st, const struct role *r)
{
	int bad = 0;

	bad |= store_bind_text(st, SR_ID + 1, r->id);
	bad |=
	    store_bind_text(st, SR_AUTH_INSTANCE_ID + 1, r->auth_instance_id);
	bad |= store_bind_text(st, SR_DOMAIN_ID + 1, r->domain_id);
	bad |= store_bind_text(st, SR_NAME + 1, r->name);
	bad |= db_bind_int(st, SR_ENABLED + 1, r->enabled != 0);
	bad |= store_bind_strlist(st, SR_SA_NAMES + 1, &r->bound_sa_names);
	bad |= store_bind_strlist(st, SR_SA_NAMESPACES + 1,
	    &r->bound_sa_namespaces);
	bad |= store_bind_text(st, SR_AUDIENCE + 1, r->bound_audience);
	bad |= store_bind_strlist(st, SR_POD_NAMES + 1, r->bound_pod_names);
	if (r->token_ttl != 0)
		bad |= db_bind_int(st, SR_TOKEN_TTL + 1, r->token_ttl);
	else
		bad |= db_bind_text(st, SR_TOKEN_TTL + 1, NULL);
	bad |=
	    store_bind_text(st, SR_RESTRICTION_ID + 1, r->token_restriction_id);
	bad |= store_bind_text(st, SR_CREATED_AT + 1, r->created_at);
	bad |= store_bind_text(st, SR_UPDATED_AT + 1, r->updated_at);
	bad |= store_bind_text(st, SR_NS_SELECTOR + 1,
	    r->bound_namespace_selector);
	return (bad == 0 ? 0 : -1);
}

/* Read the JSON list columns of the current row into r; 0 or -1. */
static int
store_role_read_lists(struct db_stmt *st, struct role *r)
{
	if (store_column_strlist(st, SR_SA_NAMES, &r->bound_sa_names) != 0 ||
	    store_column_strlist(st, SR_SA_NAMESPACES,
		&r->bound_sa_namespaces) != 0)
		return (-1);
	if (db_column_is_null(st, SR_POD_NAMES))
		return (0);
	r->bound_pod_names = xcalloc(1, sizeof *r->bound_pod_names);
	return (store_column_strlist(st, SR_POD_NAMES, r->bound_pod_names));
}

/* A new role from the current row. */
static int
store_role_read(struct db *db, struct db_stmt *st, void **out)
{
	struct role *r;

	*out = NULL;
	r = xcalloc(1, sizeof *r);
	store_column_fixed(st, SR_ID, r->id, sizeof r->id);
	store_column_fixed(st, SR_AUTH_INSTANCE_ID, r->auth_instance_id,
	    sizeof r->auth_instance_id);
	r->domain_id = store_column_text(st, SR_DOMAIN_ID);
	r->name = store_column_text(st, SR_NAME);
	r->enabled = (int)db_column_int(st, SR_ENABLED);
	r->bound_audience = store_column_text(st, SR_AUDIENCE);
	r->token_ttl = (long)db_column_int(st, SR_TOKEN_TTL);
	r->token_restriction_id = store_column_text(st, SR_RESTRICTION_ID);
	r->bound_namespace_selector = store_column_text(st, SR_NS_SELECTOR);
	store_column_fixed(st, SR_CREATED_AT, r->created_at,
	    sizeof r->created_at);
	store_column_fixed(st, SR_UPDATED_AT, r->updated_at,
	    sizeof r->updated_at);
	if (store_role_read_lists(st, r) != 0) {
		log_err("store: role %s: a bound list column is not a JSON "
			"array of strings",
		    r->id);
		role_free(r);
		return (STORE_ERROR);
	}
	*out = r;
	return (STORE_OK);
}

/* store_list's free callback. */
static void
store_role_free(void *p)
{
	role_free(p);
}

/* Write the whole role with statement id; STORE_* result. */
static int
store_role_put(struct db *db, enum db_stmt_id id, struct role *r)
{
	struct db_stmt *st;
	int result;

	if ((result = store_begin(db)) != STORE_OK)
		return (result);
	if ((st = db_stmt(db, id)) == NULL || store_role_bind(st, r) != 0) {
		db_stmt_done(db, st);
		result = STORE_ERROR;
	} else
		result = store_write(db, st, STORE_NOT_FOUND, "role");
	if (result == STORE_OK && id == DB_ROLE_UPDATE && db_changes(db) == 0)
		result = STORE_NOT_FOUND;
	return (store_finish(db, result));
}

/* Insert a new role (id generated when empty, timestamps set). */
int
store_role_create(struct db *db, struct role *r)
{
	if (r->id[0] == '\0')
		util_new_id(r->id);
	store_stamp(r->created_at, r->updated_at);
	return (store_role_put(db, DB_ROLE_INSERT, r));
}

/* Write every field of an existing role and bump updated_at. */
int
store_role_update(struct db *db, struct role *r)
{
	store_stamp(NULL, r->updated_at);
	return (store_role_put(db, DB_ROLE_UPDATE, r));
}

/*
 * Load a role by id or name within an instance (an id match wins), or by
 * id alone when instance_id is NULL.
 */
int
store_role_get(struct db *db, const char *instance_id, const char *key,
    struct role **out)
{
	struct db_stmt *st;
	void *p = NULL;
	int result;

	*out = NULL;
	st = db_stmt(db,
	    instance_id != NULL ? DB_ROLE_GET_IN_INSTANCE : DB_ROLE_GET);
	if (st == NULL)
		return (STORE_ERROR);
	if (instance_id != NULL) {
		store_bind_text(st, 1, instance_id);
		store_bind_text(st, 2, key);
	} else
		store_bind_text(st, 1, key);
	result = store_get_row(db, st, "role");
	if (result == STORE_OK)
		result = store_role_read(db, st, &p);
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	if (result != STORE_OK) {
		role_free(p);
		return (result);
	}
	*out = p;
	return (STORE_OK);
}

/* One page of roles matching the query's filters. */
int
store_role_list(struct db *db, const struct store_query *q, struct role ***out,
    size_t *count, int *more)
{
	void **arr;
	int result;

	result = store_list(db, &store_role_list_def, q, &arr, count, more);
	*out = (struct role **)arr;
	return (result);
}

/* Delete a role. */
int
store_role_delete(struct db *db, const char *id)
{
	return (
	    store_delete(db, DB_ROLE_DELETE, id, STORE_IN_USE, "role delete"));
}
