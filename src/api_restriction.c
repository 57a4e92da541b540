/*
 * api_restriction.c: the token restriction routes.
 *
 * POST and GET /v4/tokens/restrictions, GET | PATCH | PUT | DELETE
 * /v4/tokens/restrictions/{id}.  A restriction fixes the user, project
 * and roles of the tokens issued through a Kubernetes auth role.  A
 * restriction a role still uses cannot be deleted, nor updated so that
 * it loses its user, project or last role (409 restriction_in_use): a
 * login must never find it unusable.
 *
 * When [keystone] url is set, a create or update is first checked against
 * Keystone (keystone_check.c: user and project of the restriction's
 * domain and enabled, roles existing, role names from Keystone, and
 * with the project_scoped payload the user's role assignments on the
 * project holding every role); the request is parked meanwhile.  The
 * policy then sees the resolved names and target.restriction.user_domain_id
 * / project_domain_id.  Before that, Keystone's role inferences are
 * fetched (role_facts.c), so that every role object of the target carries
 * "delegable" and "implies" (API.md §7): a role given by id alone is
 * judged by Keystone's name.
 *
 * Runs on a worker thread; the only blocking calls are short SQLite
 * reads and writes through the store.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

static const char *const restriction_writable[] = { "domain_id", "user_id",
	"project_id", "roles", "allow_renew", "allow_rescope", NULL };
static const char *const restriction_read_only[] = { "id", "created_at",
	"updated_at", NULL };
static const char *const restriction_immutable[] = { "id", "domain_id", NULL };
static const char *const restriction_required[] = { "domain_id", NULL };
static const char *const restriction_filters[] = { "domain_id", "user_id",
	"project_id", NULL };

/* A create or update waiting for Keystone's verdict. */
struct restriction_pending {
	struct request *r;
	struct restriction *rs;
	cJSON *target;
	int create;
	cJSON *inferences; /* Keystone's role inferences, or NULL */
	struct keystone_check *check;
};

static void api_restriction_start(struct request *, struct restriction *,
    cJSON *, int);

/*
 * A restriction write on the database thread; an update carries the
 * guard of the restriction as the checks and the policy saw it.
 */
struct restriction_save {
	struct restriction *rs;
	int create;
	struct api_guard *guard;
};

/*
 * An update leaving the restriction without a user, a project or a role
 * while a role of its domain uses it, as the database has it now (the
 * worker looked at its snapshot; a role may have been bound since):
 * STORE_IN_USE.  Roles bind the restriction with its row locked, which
 * the guard also locks first.
 */
static int
api_restriction_recheck_used(struct db *db, const struct restriction *rs)
{
	struct db_stmt *st;
	int result;

	if (rs->user_id != NULL && rs->project_id != NULL && rs->nroles > 0)
		return (STORE_OK);
	st = db_stmt_sql(db,
	    "SELECT id FROM roles WHERE token_restriction_id = ?1 "
	    "AND domain_id = ?2 LIMIT 1");
	if (st == NULL)
		return (STORE_ERROR);
	store_bind_text(st, 1, rs->id);
	store_bind_text(st, 2, rs->domain_id);
	result = store_get_row(db, st, "restriction use");
	if (db_stmt_done(db, st) != 0 && result == STORE_OK)
		result = STORE_ERROR;
	if (result == STORE_OK)
		return (STORE_IN_USE);
	return (result == STORE_NOT_FOUND ? STORE_OK : result);
}

static int
api_restriction_save_fn(struct db *db, void *arg)
{
	struct restriction_save *s = arg;
	int rc;

	if (!s->create &&
	    ((rc = api_guard_check(db, s->guard)) != STORE_OK ||
		(rc = api_restriction_recheck_used(db, s->rs)) != STORE_OK))
		return (rc);
	return (s->create ? store_restriction_create(db, s->rs)
			  : store_restriction_update(db, s->rs));
}

static void
api_restriction_save_free(void *arg)
{
	struct restriction_save *s = arg;

	restriction_free(s->rs);
	api_guard_free(s->guard);
	free(s);
}

/* The write is done: reply (201 or 200). */
static void
api_restriction_saved(struct request *r, int rc, void *arg)
{
	struct restriction_save *s = arg;
	struct restriction *rs = s->rs;
	char *path;

	if (rc != STORE_OK) {
		api_store_fail(r, rc, "restriction", rs->id, NULL);
		return;
	}
	api_log_change(r,
	    s->create ? "token_restriction:create" : "token_restriction:update",
	    rs->id);
	if (!s->create) {
		api_reply_object(r, "restriction", restriction_json(rs));
		return;
	}
	xasprintf(&path, "/v4/tokens/restrictions/%s", rs->id);
	api_reply_created(r, path, "restriction", restriction_json(rs));
	free(path);
}

/* Write (a copy of) a new or changed restriction and reply (201 or 200). */
static void
api_restriction_save(struct request *r, const struct restriction *rs,
    int create)
{
	struct restriction_save *s;

	s = xcalloc(1, sizeof *s);
	s->rs = restriction_copy(rs);
	s->create = create;
	if (!create) {
		s->guard = api_guard_new();
		api_guard_row(s->guard, "restrictions", rs->id, rs->updated_at);
	}
	api_write(r, api_restriction_save_fn, s, api_restriction_saved,
	    api_restriction_save_free);
}

/* POST /v4/tokens/restrictions */
void
api_restriction_create(struct request *r)
{
	struct restriction *rs = NULL;
	struct restriction_err e = { REASON_NONE, NULL };
	cJSON *body = NULL, *target = NULL;

	if (http_body_json(r, "restriction", &body) != 0)
		return;
	if (api_check_body(r, body, NULL, restriction_read_only,
		restriction_writable) != 0 ||
	    api_check_required(r, body, restriction_required) != 0)
		goto out;
	rs = xcalloc(1, sizeof *rs);
	if (restriction_apply(body, rs, &e) != 0) {
		api_bad_request(r, e.reason, e.cause);
		goto out;
	}
	target =
	    api_target("restriction", restriction_json(rs), NULL, NULL, NULL);
	api_restriction_start(r, rs, target, 1);
	rs = NULL; /* handed over */
	target = NULL;
out:
	cJSON_Delete(target);
	cJSON_Delete(body);
	if (rs != NULL)
		restriction_free(rs);
}

/* Load the restriction named by the path; replies 404/500 and NULL. */
static struct restriction *
api_restriction_load(struct request *r)
{
	struct restriction *rs = NULL;
	int rc;

	rc = snapshot_restriction_get(r->snap, r->params[0], &rs);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "restriction", r->params[0], NULL);
		return (NULL);
	}
	return (rs);
}

/* GET /v4/tokens/restrictions/{id} */
void
api_restriction_show(struct request *r)
{
	struct restriction *rs;
	cJSON *target;

	if ((rs = api_restriction_load(r)) == NULL)
		return;
	target =
	    api_target("restriction", restriction_json(rs), NULL, NULL, NULL);
	api_show(r, "token_restriction:show", "restriction", target,
	    restriction_json(rs));
	cJSON_Delete(target);
	restriction_free(rs);
}

/*
 * Does any role use restriction rs?  Roles may only use restrictions of
 * their own domain, so only the roles of rs's domain count.  A STORE_*
 * code; *used set on STORE_OK.
 */
static int
api_restriction_used(struct request *r, const struct restriction *rs, int *used)
{
	const struct role *const *v;
	size_t n, i;

	*used = 0;
	if (r->snap == NULL)
		return (STORE_UNAVAILABLE);
	n = snapshot_roles_of_restriction(r->snap, rs->id, &v);
	for (i = 0; i < n && !*used; i++)
		*used = strcmp(v[i]->domain_id, rs->domain_id) == 0;
	return (STORE_OK);
}

/*
 * An update may not leave a restriction that a role uses without a user,
 * a project or a role: 409 restriction_in_use.
 */
static int
api_restriction_check_used(struct request *r, const struct restriction *rs)
{
	int used, rc;

	if (rs->user_id != NULL && rs->project_id != NULL && rs->nroles > 0)
		return (0);
	if ((rc = api_restriction_used(r, rs, &used)) != STORE_OK) {
		api_store_fail(r, rc, "restriction", rs->id, NULL);
		return (-1);
	}
	if (!used)
		return (0);
	http_reply_reason(r, REASON_restriction_in_use,
	    "token restriction %s is used by a role and must keep a user_id, a project_id and at least one role",
	    rs->id);
	return (-1);
}

/*
 * Put the role facts into the target: every role of target.restriction
 * (the new restriction, or the stored one on update) and of
 * target.update gets "delegable" and "implies".
 */
static void
api_restriction_facts(struct request *r, cJSON *target, const cJSON *inferences)
{
	cJSON *obj;

	obj = cJSON_GetObjectItemCaseSensitive(target, "restriction");
	role_facts_annotate(r->cfg, inferences,
	    cJSON_GetObjectItemCaseSensitive(obj, "roles"));
	obj = cJSON_GetObjectItemCaseSensitive(target, "update");
	role_facts_annotate(r->cfg, inferences,
	    cJSON_GetObjectItemCaseSensitive(obj, "roles"));
}

/* Authorize, check that no role is left broken, write and reply. */
static void
api_restriction_write(struct request *r, struct restriction *rs, cJSON *target,
    int create, const cJSON *inferences)
{
	api_restriction_facts(r, target, inferences);
	if (auth_require(r,
		create ? "token_restriction:create"
		       : "token_restriction:update",
		target) != 0)
		return;
	if (!create && api_restriction_check_used(r, rs) != 0)
		return;
	api_restriction_save(r, rs, create);
}

/*
 * Put what Keystone resolved into the policy target: the restriction's
 * user_domain_id and project_domain_id, and Keystone's role names (the
 * new object on create, the patch's roles on update).
 */
static void
api_restriction_resolved(struct restriction_pending *p,
    const struct keystone_outcome *ko)
{
	cJSON *obj, *update, *resolved;

	resolved = restriction_json(p->rs);
	if (p->create)
		cJSON_ReplaceItemInObjectCaseSensitive(p->target, "restriction",
		    restriction_json(p->rs));
	else if ((update = cJSON_GetObjectItemCaseSensitive(p->target,
		      "update")) != NULL &&
	    cJSON_GetObjectItemCaseSensitive(update, "roles") != NULL)
		cJSON_ReplaceItemInObjectCaseSensitive(update, "roles",
		    cJSON_DetachItemFromObjectCaseSensitive(resolved, "roles"));
	cJSON_Delete(resolved);
	obj = cJSON_GetObjectItemCaseSensitive(p->target, "restriction");
	json_add_string_or_null(obj, "user_domain_id", ko->user_domain_id);
	json_add_string_or_null(obj, "project_domain_id",
	    ko->project_domain_id);
}

/*
 * Keystone's verdict: write (fine), 400 invalid_restriction (only to a
 * caller the policy lets write this restriction at all, so the answer
 * tells nothing to anyone else), 502 keystone_forbidden (the service's
 * own credential was refused) or 503.
 */
static void
api_restriction_checked(struct restriction_pending *p,
    struct keystone_outcome *ko)
{
	struct request *r = p->r;

	if (ko->reason == REASON_NONE) {
		api_restriction_resolved(p, ko);
		api_restriction_write(r, p->rs, p->target, p->create,
		    p->inferences);
		return;
	}
	if (reason_status(ko->reason) >= 500) {
		if (reason_status(ko->reason) == 503)
			http_set_header(r, "Retry-After",
			    ko->retry_after != NULL ? ko->retry_after : "1");
		http_reply_reason(r, ko->reason, "%s", ko->message);
		return;
	}
	api_restriction_facts(r, p->target, p->inferences);
	if (auth_require(r,
		p->create ? "token_restriction:create"
			  : "token_restriction:update",
		p->target) == 0)
		http_reply_reason(r, ko->reason, "%s", ko->message);
}

/* Free a pending write and drop its request reference. */
static void
api_restriction_pending_free(struct restriction_pending *p)
{
	struct request *r = p->r;

	if (r->data == p) { /* else a write (api_write) parked it since */
		r->data = NULL;
		r->cancel = NULL;
		r->gone = NULL;
	}
	restriction_free(p->rs);
	cJSON_Delete(p->target);
	cJSON_Delete(p->inferences);
	free(p);
	http_unref(r);
}

/* The Keystone check finished. */
static void
api_restriction_check_cb(struct keystone_outcome *ko, void *arg)
{
	struct restriction_pending *p = arg;

	p->check = NULL; /* keystone_check.c frees it after this call */
	api_restriction_checked(p, ko);
	api_restriction_pending_free(p);
}

/* The request deadline passed during the check (http.c answers 503). */
static void
api_restriction_check_cancel(struct request *r)
{
	struct restriction_pending *p = r->data;

	keystone_check_cancel(p->check);
	api_restriction_pending_free(p);
}

/* The client went away during the check. */
static void
api_restriction_check_gone(struct request *r)
{
	struct restriction_pending *p = r->data;

	keystone_check_cancel(p->check);
	p->check = NULL;
	http_reply_reason(r, REASON_client_gone, "the client disconnected");
	api_restriction_pending_free(p);
}

/*
 * Go on with a create or update once the role inferences are known:
 * straight to the write without Keystone, else after Keystone's check
 * (the request stays parked; the check owns rs and target).
 */
static void
api_restriction_proceed(struct request *r, struct restriction *rs,
    cJSON *target, int create, const cJSON *inferences)
{
	struct restriction_pending *p;
	struct keystone_outcome ko;

	if (!keystone_enabled()) {
		api_restriction_write(r, rs, target, create, inferences);
		restriction_free(rs);
		cJSON_Delete(target);
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->r = r;
	p->rs = rs;
	p->target = target;
	p->create = create;
	p->inferences =
	    inferences != NULL ? cJSON_Duplicate(inferences, 1) : NULL;
	http_ref(r); /* dropped by api_restriction_pending_free */
	p->check = keystone_check_restriction(r->worker, rs,
	    r->cfg->token_payload == TOKEN_PAYLOAD_PROJECT_SCOPED,
	    api_restriction_check_cb, p, &ko);
	if (p->check == NULL) {
		api_restriction_checked(p, &ko);
		keystone_outcome_clear(&ko);
		api_restriction_pending_free(p);
		return;
	}
	r->data = p;
	r->cancel = api_restriction_check_cancel;
	r->gone = api_restriction_check_gone;
	http_park(r);
}

/* A create or update waiting for the role inferences. */
struct restriction_start {
	struct restriction *rs;
	cJSON *target;
	int create;
};

/* Free a waiting create or update (what it still owns). */
static void
api_restriction_start_free(void *arg)
{
	struct restriction_start *st = arg;

	if (st->rs != NULL)
		restriction_free(st->rs);
	cJSON_Delete(st->target);
	free(st);
}

/* The role inferences are known: go on (rs and target handed over). */
static void
api_restriction_start_cb(struct request *r, const cJSON *inferences, void *arg)
{
	struct restriction_start *st = arg;

	api_restriction_proceed(r, st->rs, st->target, st->create, inferences);
	st->rs = NULL;
	st->target = NULL;
}

/* Fetch the role inferences, then proceed; takes rs and target. */
static void
api_restriction_start(struct request *r, struct restriction *rs, cJSON *target,
    int create)
{
	struct restriction_start *st;

	st = xcalloc(1, sizeof *st);
	st->rs = rs;
	st->target = target;
	st->create = create;
	role_facts_run(r, api_restriction_start_cb, st,
	    api_restriction_start_free);
}

/* PATCH | PUT /v4/tokens/restrictions/{id} */
void
api_restriction_update(struct request *r)
{
	struct restriction *rs;
	struct restriction_err e = { REASON_NONE, NULL };
	cJSON *body = NULL, *target = NULL;

	if ((rs = api_restriction_load(r)) == NULL)
		return;
	if (http_body_json(r, "restriction", &body) != 0 ||
	    api_check_body(r, body, restriction_immutable,
		restriction_read_only, restriction_writable) != 0)
		goto out;
	target =
	    api_target("restriction", restriction_json(rs), NULL, NULL, body);
	if (restriction_apply(body, rs, &e) != 0) {
		api_bad_request(r, e.reason, e.cause);
		goto out;
	}
	api_restriction_start(r, rs, target, 0);
	rs = NULL; /* handed over */
	target = NULL;
out:
	cJSON_Delete(target);
	cJSON_Delete(body);
	if (rs != NULL)
		restriction_free(rs);
}

/* DELETE /v4/tokens/restrictions/{id} (409 while a role uses it) */
void
api_restriction_delete(struct request *r)
{
	struct api_guard *g;
	struct restriction *rs;
	cJSON *target;

	if ((rs = api_restriction_load(r)) == NULL)
		return;
	target =
	    api_target("restriction", restriction_json(rs), NULL, NULL, NULL);
	g = api_guard_new();
	api_guard_row(g, "restrictions", rs->id, rs->updated_at);
	api_delete(r, "token_restriction:delete", "restriction", rs->id,
	    store_restriction_delete, target, NULL, g);
	cJSON_Delete(target);
	restriction_free(rs);
}

/* GET /v4/tokens/restrictions (domain_id, user_id, project_id filters) */
void
api_restriction_list(struct request *r)
{
	struct store_query q;
	const struct restriction **v = NULL;
	cJSON *target, *a;
	size_t n = 0, i;
	int more = 0, rc;

	if (api_list_query(r, restriction_filters, &q, &target) != 0)
		return;
	if (auth_require(r, "token_restriction:list", target) != 0)
		goto out;
	rc = snapshot_restriction_list(r->snap, &q, &v, &n, &more);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "restriction", "list", NULL);
		goto out;
	}
	a = cJSON_CreateArray();
	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, restriction_json(v[i]));
	api_reply_list(r, "restrictions", a, n > 0 ? v[n - 1]->id : NULL, more);
out:
	free(v);
	cJSON_Delete(target);
}
