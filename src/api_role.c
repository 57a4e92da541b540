/*
 * api_role.c: the Kubernetes auth role routes (service account bounds
 * mapped to a token restriction).
 *
 * POST and GET /v4/k8s_auth/instances/{iid}/roles, GET | PATCH | PUT |
 * DELETE /v4/k8s_auth/instances/{iid}/roles/{role} ({role} is a name or
 * an id, and must belong to that instance), and the flat listing
 * GET /v4/k8s_auth/roles.  A role takes its domain from its instance and
 * may only point at a restriction of the same domain that names a user,
 * a project and at least one role; bound lists are never empty (["*"]
 * must be written out), except bound_service_account_namespaces when
 * bound_namespace_selector (a label selector, k8s_selector.c) binds
 * namespaces instead: the two are ORed at login.  The policy decides with the facts of the
 * restriction the role will point at (every role of it "delegable" or
 * not, role_facts.c), target.role.protected (the stored role binds a
 * restriction that is not delegable: update and delete are an admin's)
 * and target.instance.protected (API.md §7).
 *
 * Runs on a worker thread: reads come from the request's snapshot, and
 * the write runs on the database thread (api_write), which first checks
 * that the rows the decision read have not moved since (store_unchanged)
 * and re-checks the restriction's domain and completeness there.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

static const char *const role_writable[] = { "name", "enabled",
	"bound_service_account_names", "bound_service_account_namespaces",
	"bound_audience", "bound_pod_names", "token_ttl",
	"token_restriction_id", "bound_namespace_selector", NULL };
static const char *const role_read_only[] = { "id", "auth_instance_id",
	"domain_id", "created_at", "updated_at", NULL };
static const char *const role_immutable[] = { "id", "auth_instance_id",
	"domain_id", NULL };
static const char *const role_required[] = { "name",
	"bound_service_account_names", "token_restriction_id", NULL };
static const char *const role_filters[] = { "name", "enabled", NULL };
static const char *const role_all_filters[] = { "auth_instance_id", "domain_id",
	"name", NULL };

/* Why a restriction cannot back a role of domain_id, or NULL. */
static const char *
api_role_restriction_flaw(const struct restriction *rs, const char *domain_id)
{
	if (strcmp(rs->domain_id, domain_id) != 0)
		return ("belongs to another domain");
	if (rs->user_id == NULL)
		return ("has no user_id");
	if (rs->project_id == NULL)
		return ("has no project_id");
	if (rs->nroles == 0)
		return ("has no roles");
	return (NULL);
}

/* Reply 400 invalid_restriction: the restriction id and what is wrong. */
static void
api_role_bad_restriction(struct request *r, const char *id, const char *flaw)
{
	http_reply_reason(r, REASON_invalid_restriction,
	    "token_restriction_id: token restriction %.64s %s", id, flaw);
}

/*
 * The role's token restriction must exist, be in the role's domain and
 * name a user, a project and a role.  Replies 400 invalid_restriction.
 */
static int
api_role_check_restriction(struct request *r, const struct role *ro)
{
	struct restriction *rs = NULL;
	const char *flaw;
	int rc;

	rc = snapshot_restriction_get(r->snap, ro->token_restriction_id, &rs);
	/*
	 * Only an admin learns that the id is another domain's restriction;
	 * anyone else gets the answer for an id that does not exist, so
	 * other domains' ids cannot be probed through a role write.
	 */
	if (rc == STORE_OK && !r->caller.is_admin &&
	    strcmp(rs->domain_id, ro->domain_id) != 0) {
		restriction_free(rs);
		rs = NULL;
		rc = STORE_NOT_FOUND;
	}
	if (rc == STORE_NOT_FOUND) {
		api_role_bad_restriction(r, ro->token_restriction_id,
		    "does not exist");
		return (-1);
	}
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "restriction", ro->token_restriction_id,
		    NULL);
		return (-1);
	}
	flaw = api_role_restriction_flaw(rs, ro->domain_id);
	if (flaw != NULL)
		api_role_bad_restriction(r, rs->id, flaw);
	restriction_free(rs);
	return (flaw != NULL ? -1 : 0);
}

/*
 * A role write on the database thread, with the guard of the rows the
 * worker's checks and the policy read from its snapshot.
 */
struct role_save {
	struct role *ro;
	int create;
	struct api_guard *guard;
	const char *flaw; /* the restriction as re-read cannot back it */
};

/*
 * In the write's transaction: the restriction the role will point at,
 * re-read (its row locked by the guard), still backs a role of the role's
 * domain.  The worker checked it on its snapshot; this holds even when a
 * write behind the server's back left updated_at alone.  The answer is
 * s->flaw.  STORE_OK, STORE_CHANGED or a failure.
 */
static int
api_role_recheck_restriction(struct db *db, struct role_save *s)
{
	struct restriction *rs = NULL;
	int rc;

	rc = store_restriction_get(db, s->ro->token_restriction_id, &rs);
	if (rc == STORE_NOT_FOUND)
		s->flaw = "does not exist";
	else if (rc != STORE_OK)
		return (rc);
	else
		s->flaw = api_role_restriction_flaw(rs, s->ro->domain_id);
	restriction_free(rs);
	return (s->flaw != NULL ? STORE_CHANGED : STORE_OK);
}

/*
 * The write itself, only when none of the rows the decision was taken on
 * moved since (api_guard_check): the instance (its domain, whether it is
 * protected, which covers the stored role on update) and the restriction
 * the role will point at (its domain, its roles' delegability).
 */
static int
api_role_save_fn(struct db *db, void *arg)
{
	struct role_save *s = arg;
	int rc;

	s->flaw = NULL;
	if ((rc = api_guard_check(db, s->guard)) != STORE_OK ||
	    (rc = api_role_recheck_restriction(db, s)) != STORE_OK)
		return (rc);
	return (s->create ? store_role_create(db, s->ro)
			  : store_role_update(db, s->ro));
}

static void
api_role_save_free(void *arg)
{
	struct role_save *s = arg;

	role_free(s->ro);
	api_guard_free(s->guard);
	free(s);
}

/* The write is done: reply (201 or 200). */
static void
api_role_saved(struct request *r, int rc, void *arg)
{
	struct role_save *s = arg;
	struct role *ro = s->ro;
	char *msg, *path;

	if (rc == STORE_CHANGED && s->flaw != NULL) {
		/* as on the worker: another domain's id is only an admin's */
		api_role_bad_restriction(r, ro->token_restriction_id,
		    !r->caller.is_admin &&
			    strcmp(s->flaw, "belongs to another domain") == 0
			? "does not exist"
			: s->flaw);
		return;
	}
	if (rc != STORE_OK) {
		xasprintf(&msg,
		    "a role named '%s' already exists in instance '%s'",
		    ro->name, ro->auth_instance_id);
		api_store_fail(r, rc, "role", ro->id, msg);
		free(msg);
		return;
	}
	api_log_change(r,
	    s->create ? "k8s_auth:role:create" : "k8s_auth:role:update",
	    ro->id);
	if (!s->create) {
		api_reply_object(r, "role", role_json(ro));
		return;
	}
	xasprintf(&path, "/v4/k8s_auth/instances/%s/roles/%s",
	    ro->auth_instance_id, ro->id);
	api_reply_created(r, path, "role", role_json(ro));
	free(path);
}

/* Write a new or changed role (taken over) and reply (201 or 200). */
static void
api_role_save(struct request *r, struct role *ro, int create)
{
	struct role_save *s;
	const struct restriction *rs;

	s = xcalloc(1, sizeof *s);
	s->ro = ro;
	s->create = create;
	s->guard = api_guard_new();
	api_guard_instance(s->guard, r, ro->auth_instance_id);
	/* found in r->snap by api_role_check_restriction */
	rs = snapshot_restriction(r->snap, ro->token_restriction_id);
	api_guard_row(s->guard, "restrictions", ro->token_restriction_id,
	    rs != NULL ? rs->updated_at : NULL);
	api_write(r, api_role_save_fn, s, api_role_saved, api_role_save_free);
}

/* A role create or update waiting for the role facts. */
struct role_commit {
	const char *action;
	cJSON *target;
	struct role *ro;
	int create;
};

/* Free a role commit. */
static void
api_role_commit_free(void *arg)
{
	struct role_commit *c = arg;

	cJSON_Delete(c->target);
	role_free(c->ro);
	free(c);
}

/*
 * target.role.protected: does the role as the target shows it (the stored
 * one on update and delete) bind a restriction granting a role that is
 * not delegable?  Such a binding is an admin's: whoever may move it away
 * or delete it can unprotect the instance, repoint it, and wait for the
 * admin (or the admin's automation) to bind it again.  Replies and -1 on
 * a store error.
 */
static int
api_role_mark_protected(struct request *r, const cJSON *inferences,
    cJSON *target)
{
	cJSON *role = cJSON_GetObjectItemCaseSensitive(target, "role");
	int protected = 0, rc;

	rc = role_facts_restriction_protected(r, inferences,
	    cJSON_GetStringValue(
		cJSON_GetObjectItemCaseSensitive(role, "token_restriction_id")),
	    &protected);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "role", "restriction", NULL);
		return (-1);
	}
	cJSON_DeleteItemFromObjectCaseSensitive(role, "protected");
	cJSON_AddBoolToObject(role, "protected", protected);
	return (0);
}

/*
 * The policy sees the restriction the role will point at (when it is in
 * the role's domain) with the facts of its roles, whether the role as
 * stored binds a restriction that is not delegable (target.role.protected)
 * and whether the instance is protected, so it can refuse binding a role
 * to, or unbinding it from, a restriction that grants a role the caller
 * could not delegate.
 */
static int
api_role_facts(struct request *r, const cJSON *inferences, cJSON *target,
    const struct role *ro)
{
	const struct restriction *rs;
	cJSON *rj, *inst;
	int protected, rc;

	if (api_role_mark_protected(r, inferences, target) != 0)
		return (-1);

	rs = snapshot_restriction(r->snap, ro->token_restriction_id);
	if (rs != NULL && strcmp(rs->domain_id, ro->domain_id) == 0) {
		rj = restriction_json(rs);
		role_facts_annotate(r->cfg, inferences,
		    cJSON_GetObjectItemCaseSensitive(rj, "roles"));
		cJSON_AddItemToObject(target, "restriction", rj);
	}
	rc = role_facts_protected(r, inferences, ro->auth_instance_id,
	    &protected);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "instance", ro->auth_instance_id, NULL);
		return (-1);
	}
	inst = cJSON_GetObjectItemCaseSensitive(target, "instance");
	cJSON_DeleteItemFromObjectCaseSensitive(inst, "protected");
	cJSON_AddBoolToObject(inst, "protected", protected);
	return (0);
}

/* The facts are known: authorize, check the restriction, write. */
static void
api_role_commit_cb(struct request *r, const cJSON *inferences, void *arg)
{
	struct role_commit *c = arg;

	if (api_role_facts(r, inferences, c->target, c->ro) != 0)
		return;
	if (auth_require(r, c->action, c->target) != 0)
		return;
	if (api_role_check_restriction(r, c->ro) != 0)
		return;
	api_role_save(r, c->ro, c->create);
	c->ro = NULL;
}

/* Authorize, check the restriction, then write; takes target and ro. */
static void
api_role_commit(struct request *r, const char *action, cJSON *target,
    struct role *ro, int create)
{
	struct role_commit *c;

	c = xcalloc(1, sizeof *c);
	c->action = action;
	c->target = target;
	c->ro = ro;
	c->create = create;
	role_facts_run(r, api_role_commit_cb, c, api_role_commit_free);
}

/* A new role of instance in: defaults and the instance's ids. */
static struct role *
api_role_new(const struct instance *in)
{
	struct role *ro;

	ro = xcalloc(1, sizeof *ro);
	ro->enabled = 1;
	memcpy(ro->auth_instance_id, in->id, sizeof ro->auth_instance_id);
	ro->domain_id = xstrdup(in->domain_id);
	return (ro);
}

/* POST /v4/k8s_auth/instances/{iid}/roles */
void
api_role_create(struct request *r)
{
	struct instance *in;
	struct role *ro = NULL;
	cJSON *body = NULL, *target = NULL;
	char *cause = NULL;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	if (http_body_json(r, "role", &body) != 0 ||
	    api_check_body(r, body, NULL, role_read_only, role_writable) != 0 ||
	    api_check_required(r, body, role_required) != 0)
		goto out;
	if (cJSON_GetObjectItemCaseSensitive(body,
		"bound_service_account_namespaces") == NULL &&
	    cJSON_GetObjectItemCaseSensitive(body,
		"bound_namespace_selector") == NULL) {
		http_reply_reason(r, REASON_missing_field,
		    "bound_service_account_namespaces is required (or bound_namespace_selector)");
		goto out;
	}
	ro = api_role_new(in);
	if (role_apply(r->cfg, body, ro, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	target = api_target("role", role_json(ro), "instance",
	    instance_json(in), NULL);
	api_role_commit(r, "k8s_auth:role:create", target, ro, 1);
	target = NULL; /* handed over */
	ro = NULL;
out:
	cJSON_Delete(target);
	cJSON_Delete(body);
	if (ro != NULL)
		role_free(ro);
	instance_free(in);
}

/* Load the instance and its role named by the path; replies on failure. */
static int
api_role_load(struct request *r, struct instance **in, struct role **ro)
{
	int rc;

	*ro = NULL;
	if ((*in = api_instance_load(r, r->params[0])) == NULL)
		return (-1);
	rc = snapshot_role_get(r->snap, (*in)->id, r->params[1], ro);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "role", r->params[1], NULL);
		instance_free(*in);
		*in = NULL;
		return (-1);
	}
	return (0);
}

/* GET /v4/k8s_auth/instances/{iid}/roles/{role} */
void
api_role_show(struct request *r)
{
	struct instance *in;
	struct role *ro;
	cJSON *target;

	if (api_role_load(r, &in, &ro) != 0)
		return;
	target = api_target("role", role_json(ro), "instance",
	    instance_json(in), NULL);
	api_show(r, "k8s_auth:role:show", "role", target, role_json(ro));
	cJSON_Delete(target);
	role_free(ro);
	instance_free(in);
}

/* PATCH | PUT /v4/k8s_auth/instances/{iid}/roles/{role} */
void
api_role_update(struct request *r)
{
	struct instance *in;
	struct role *ro;
	cJSON *body = NULL, *target = NULL;
	char *cause = NULL;

	if (api_role_load(r, &in, &ro) != 0)
		return;
	if (http_body_json(r, "role", &body) != 0 ||
	    api_check_body(r, body, role_immutable, role_read_only,
		role_writable) != 0)
		goto out;
	target = api_target("role", role_json(ro), "instance",
	    instance_json(in), body);
	if (role_apply(r->cfg, body, ro, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	api_role_commit(r, "k8s_auth:role:update", target, ro, 0);
	target = NULL; /* handed over */
	ro = NULL;
out:
	cJSON_Delete(target);
	cJSON_Delete(body);
	if (ro != NULL)
		role_free(ro);
	instance_free(in);
}

/* The facts are known: authorize the delete (target.role.protected). */
static void
api_role_delete_cb(struct request *r, const cJSON *inferences, void *arg)
{
	struct role_commit *c = arg;
	struct api_guard *g;

	if (api_role_mark_protected(r, inferences, c->target) != 0)
		return;
	/* the instance's print covers the role and its restriction */
	g = api_guard_new();
	api_guard_instance(g, r, c->ro->auth_instance_id);
	api_delete(r, c->action, "role", c->ro->id, store_role_delete,
	    c->target, NULL, g);
}

/* DELETE /v4/k8s_auth/instances/{iid}/roles/{role} */
void
api_role_delete(struct request *r)
{
	struct instance *in;
	struct role_commit *c;
	struct role *ro;

	if (api_role_load(r, &in, &ro) != 0)
		return;
	c = xcalloc(1, sizeof *c);
	c->action = "k8s_auth:role:delete";
	c->target = api_target("role", role_json(ro), "instance",
	    instance_json(in), NULL);
	c->ro = ro;
	instance_free(in);
	role_facts_run(r, api_role_delete_cb, c, api_role_commit_free);
}

/* Authorize a role listing with target, run it and reply. */
static void
api_role_list_run(struct request *r, const struct store_query *q,
    const cJSON *target)
{
	const struct role **v = NULL;
	cJSON *a;
	size_t n = 0, i;
	int more = 0, rc;

	if (auth_require(r, "k8s_auth:role:list", target) != 0)
		return;
	rc = snapshot_role_list(r->snap, q, &v, &n, &more);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "role", "list", NULL);
		return;
	}
	a = cJSON_CreateArray();
	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, role_json(v[i]));
	api_reply_list(r, "roles", a, n > 0 ? v[n - 1]->id : NULL, more);
	free(v);
}

/* GET /v4/k8s_auth/instances/{iid}/roles (name, enabled filters) */
void
api_role_list(struct request *r)
{
	struct instance *in;
	struct store_query q;
	cJSON *target;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	if (api_list_query(r, role_filters, &q, &target) == 0) {
		api_query_add(&q, "auth_instance_id", in->id);
		cJSON_AddStringToObject(target, "auth_instance_id", in->id);
		cJSON_AddStringToObject(target, "domain_id", in->domain_id);
		cJSON_AddItemToObject(target, "instance", instance_json(in));
		api_role_list_run(r, &q, target);
		cJSON_Delete(target);
	}
	instance_free(in);
}

/* GET /v4/k8s_auth/roles (auth_instance_id, domain_id, name filters) */
void
api_role_list_all(struct request *r)
{
	struct store_query q;
	cJSON *target;

	if (api_list_query(r, role_all_filters, &q, &target) != 0)
		return;
	api_role_list_run(r, &q, target);
	cJSON_Delete(target);
}
