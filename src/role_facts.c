/*
 * role_facts.c: what the roles of a token restriction grant, as facts
 * for the API policy (API.md §7, delegable roles and protected
 * instances).
 *
 * A role is delegable (a non-admin may put it into a token restriction)
 * when its name is in [policy] delegable_roles, is not in [policy]
 * protected_roles (the older denylist, kept for one release), and every
 * role it implies, transitively, is delegable by name as well; names are
 * compared case-insensitively, and a role without a name is not
 * delegable.  Role ids are matched case-insensitively too: a Keystone on
 * MySQL finds a role by its id in any case, so a restriction may hold an
 * id whose case differs from the inferences' (and following only exact
 * ids would miss what it implies).  What a role implies comes from Keystone's
 * GET /v3/role_inferences, cached process-wide for
 * ROLE_FACTS_TTL seconds.  Without [keystone] nothing is known to be
 * implied: only names count (every caller is then the bootstrap admin).
 *
 * role_facts_run() runs a handler's continuation once the inferences are
 * known (at once without [keystone] or from the cache, else after the
 * GET, the request parked meanwhile); role_facts_annotate() writes
 * "delegable" and "implies" into the role objects of a policy target;
 * role_facts_protected() says whether an instance binds a restriction
 * granting a non-delegable role, role_facts_restriction_protected()
 * whether one restriction grants one.
 *
 * Runs on worker threads; the cache is keystone_cache.c's (locked).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8sauth.h"

#define ROLE_FACTS_TTL       30.0 /* seconds the inferences are cached */
#define ROLE_FACTS_MAX_NODES 1000 /* implied roles followed per role */
#define ROLE_FACTS_KEY       "role_inferences"

/* A continuation waiting for Keystone's inferences. */
struct role_facts_pending {
	struct request *r;
	struct keystone_op *op;
	role_facts_next next;
	void *arg;
	void (*arg_free)(void *);
};

/* Is name in the comma list csv (trimmed, case-insensitive)? */
static int
role_facts_listed(const char *csv, const char *name)
{
	const char *p = csv, *e;
	size_t n, len = strlen(name);

	while (p != NULL && *p != '\0') {
		e = strchr(p, ',');
		n = e != NULL ? (size_t)(e - p) : strlen(p);
		while (n > 0 && (*p == ' ' || *p == '\t')) {
			p++;
			n--;
		}
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if (n == len && strncasecmp(p, name, n) == 0)
			return (1);
		p = e != NULL ? e + 1 : NULL;
	}
	return (0);
}

/* May a non-admin delegate the role named name, by its name alone? */
static int
role_facts_name_ok(const struct config *cfg, const char *name)
{
	return (name != NULL &&
	    role_facts_listed(cfg->policy_delegable_roles, name) &&
	    !role_facts_listed(cfg->policy_protected_roles, name));
}

/* Append the roles id implies directly (from the inferences) to queue. */
static void
role_facts_direct(const cJSON *inferences, const char *id, cJSON *queue)
{
	const cJSON *list, *inf, *prior, *it;

	list = cJSON_GetObjectItemCaseSensitive(inferences, "role_inferences");
	cJSON_ArrayForEach(inf, list)
	{
		prior = cJSON_GetObjectItemCaseSensitive(inf, "prior_role");
		if (!cJSON_IsString(
			cJSON_GetObjectItemCaseSensitive(prior, "id")) ||
		    strcasecmp(cJSON_GetObjectItemCaseSensitive(prior, "id")
				   ->valuestring,
			id) != 0)
			continue;
		cJSON_ArrayForEach(it,
		    cJSON_GetObjectItemCaseSensitive(inf, "implies"))
		    cJSON_AddItemToArray(queue, cJSON_Duplicate(it, 1));
	}
}

/* Has a role with this id been collected already? */
static int
role_facts_seen(const cJSON *out, const char *id)
{
	const cJSON *it;

	cJSON_ArrayForEach(it, out)
	{
		if (strcasecmp(cJSON_GetStringValue(
				   cJSON_GetObjectItemCaseSensitive(it, "id")),
			id) == 0)
			return (1);
	}
	return (0);
}

/*
 * Every role the role id implies, transitively: an array of {id, name}
 * (a name may be missing).  Cycles end; at most ROLE_FACTS_MAX_NODES,
 * and *cut is set when more were left out (the role cannot be judged).
 */
static cJSON *
role_facts_implied(const cJSON *inferences, const char *id, int *cut)
{
	cJSON *out, *queue, *it;
	const char *iid;

	*cut = 0;
	out = cJSON_CreateArray();
	queue = cJSON_CreateArray();
	if (inferences != NULL && id != NULL)
		role_facts_direct(inferences, id, queue);
	while ((it = cJSON_DetachItemFromArray(queue, 0)) != NULL) {
		iid = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(it, "id"));
		if (iid == NULL || strcasecmp(iid, id) == 0 ||
		    role_facts_seen(out, iid)) {
			cJSON_Delete(it);
			continue;
		}
		if (cJSON_GetArraySize(out) >= ROLE_FACTS_MAX_NODES) {
			*cut = 1;
			cJSON_Delete(it);
			break;
		}
		role_facts_direct(inferences, iid, queue);
		cJSON_AddItemToArray(out, it);
	}
	cJSON_Delete(queue);
	return (out);
}

/*
 * Judge one role (id, name): delegable or not, and the names it implies
 * (added to names when not NULL).  A role implying more than
 * ROLE_FACTS_MAX_NODES roles is not delegable: what was not followed
 * might be admin.
 */
static int
role_facts_judge(const struct config *cfg, const cJSON *inferences,
    const char *id, const char *name, cJSON *names)
{
	cJSON *implied, *it;
	const char *iname;
	int ok, cut;

	ok = role_facts_name_ok(cfg, name);
	implied = role_facts_implied(inferences, id, &cut);
	if (cut)
		ok = 0;
	cJSON_ArrayForEach(it, implied)
	{
		iname = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(it, "name"));
		if (!role_facts_name_ok(cfg, iname))
			ok = 0;
		if (names != NULL && iname != NULL)
			cJSON_AddItemToArray(names, cJSON_CreateString(iname));
	}
	cJSON_Delete(implied);
	return (ok);
}

/*
 * Write the facts into every role object {id, name} of the array roles
 * (a policy target's): "delegable" (true/false) and "implies" (the names
 * of the roles it implies, transitively).  NULL roles: no-op.
 */
void
role_facts_annotate(const struct config *cfg, const cJSON *inferences,
    cJSON *roles)
{
	cJSON *ro, *names;
	int ok;

	cJSON_ArrayForEach(ro, roles)
	{
		if (!cJSON_IsObject(ro))
			continue;
		cJSON_DeleteItemFromObjectCaseSensitive(ro, "delegable");
		cJSON_DeleteItemFromObjectCaseSensitive(ro, "implies");
		names = cJSON_CreateArray();
		ok = role_facts_judge(cfg, inferences,
		    cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(ro, "id")),
		    cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(ro, "name")),
		    names);
		cJSON_AddBoolToObject(ro, "delegable", ok);
		cJSON_AddItemToObject(ro, "implies", names);
	}
}

/* Does every role of the restriction pass as delegable? */
int
role_facts_delegable(const struct config *cfg, const cJSON *inferences,
    const struct restriction *rs)
{
	size_t i;

	for (i = 0; i < rs->nroles; i++) {
		if (!role_facts_judge(cfg, inferences, rs->roles[i].id,
			rs->roles[i].name, NULL))
			return (0);
	}
	return (1);
}

/*
 * Is the restriction id one a non-admin could not create (a role bound to
 * it is an admin's)?  A STORE_* code; *protected set (never cleared) on
 * STORE_OK.  A restriction that does not exist protects nothing.
 */
int
role_facts_restriction_protected(struct request *r, const cJSON *inferences,
    const char *id, int *protected)
{
	const struct restriction *rs;

	if (id == NULL)
		return (STORE_OK);
	if (r->snap == NULL)
		return (STORE_UNAVAILABLE);
	if ((rs = snapshot_restriction(r->snap, id)) == NULL)
		return (STORE_OK);
	if (!role_facts_delegable(r->cfg, inferences, rs))
		*protected = 1;
	return (STORE_OK);
}

/*
 * Is the instance protected: does any of its roles bind a restriction
 * granting a non-delegable role?  A STORE_* code; *protected set on
 * STORE_OK.  Reads the instance's roles from the request's snapshot.
 */
int
role_facts_protected(struct request *r, const cJSON *inferences,
    const char *instance_id, int *protected)
{
	struct store_query q;
	const struct role **v;
	size_t n, i;
	int more, rc;

	memset(&q, 0, sizeof q);
	q.limit =
	    INT_MAX - 1; /* the snapshot: one page, no allocation per row */
	api_query_add(&q, "auth_instance_id", instance_id);
	*protected = 0;
	if ((rc = snapshot_role_list(r->snap, &q, &v, &n, &more)) != STORE_OK)
		return (rc);
	for (i = 0; i < n && rc == STORE_OK && !*protected; i++)
		rc = role_facts_restriction_protected(r, inferences,
		    v[i]->token_restriction_id, protected);
	free(v);
	return (rc);
}

/* Free a pending continuation and drop its request reference. */
static void
role_facts_pending_free(struct role_facts_pending *p)
{
	struct request *r = p->r;

	if (p->arg_free != NULL && p->arg != NULL)
		p->arg_free(p->arg);
	free(p);
	http_unref(r);
}

/* Detach the pending state from its request. */
static void
role_facts_detach(struct request *r)
{
	r->data = NULL;
	r->cancel = NULL;
	r->gone = NULL;
}

/*
 * Keystone refused or failed the lookup: remember why on the request.
 * The handler then runs on literal role names (what a caller could only
 * gain from), so that a policy denial is still a clean 403, and
 * auth_require() turns an allow into this error: no write is ever made
 * without the facts.  401/403: the service credential lacks a role (502,
 * not a retry); anything else: 503.
 */
static void
role_facts_unknown(struct request *r, const struct keystone_result *res)
{
	free(r->facts_message);
	free(r->facts_retry_after);
	r->facts_retry_after = NULL;
	if (res->refused != NULL ||
	    (!res->unavailable && (res->status == 401 || res->status == 403))) {
		r->facts_error = REASON_keystone_forbidden;
		xasprintf(&r->facts_message,
		    "Keystone refused GET /v3/role_inferences (%s): the service credential may not list role inferences",
		    res->refused != NULL ? res->refused : "403");
		return;
	}
	if (!res->unavailable)
		log_err("keystone: GET /v3/role_inferences answered %ld",
		    res->status);
	r->facts_error = REASON_keystone_unavailable;
	r->facts_message = xstrdup(
	    "Keystone cannot be asked for role inferences now; retry later");
	r->facts_retry_after =
	    xstrdup(res->retry_after != NULL ? res->retry_after : "5");
}

/* The inferences arrived (or did not). */
static void
role_facts_cb(const struct keystone_result *res, void *arg)
{
	struct role_facts_pending *p = arg;
	struct request *r = p->r;
	double now = util_now();

	p->op = NULL;
	role_facts_detach(r);
	if (res->unavailable || res->status != 200 || res->doc == NULL) {
		role_facts_unknown(r, res);
		p->next(r, NULL, p->arg);
	} else {
		if (keystone_user_cache != NULL)
			keystone_cache_put(keystone_user_cache, ROLE_FACTS_KEY,
			    cJSON_Duplicate(res->doc, 1), now + ROLE_FACTS_TTL,
			    now);
		p->next(r, res->doc, p->arg);
	}
	role_facts_pending_free(p);
}

/* The request deadline passed (http.c answers 503). */
static void
role_facts_cancel(struct request *r)
{
	struct role_facts_pending *p = r->data;

	keystone_cancel(p->op);
	role_facts_detach(r);
	role_facts_pending_free(p);
}

/* The client went away. */
static void
role_facts_gone(struct request *r)
{
	struct role_facts_pending *p = r->data;

	keystone_cancel(p->op);
	role_facts_detach(r);
	http_reply_reason(r, REASON_client_gone, "the client disconnected");
	role_facts_pending_free(p);
}

/*
 * Run next(r, inferences, arg) once Keystone's role inferences are known
 * (NULL without [keystone]); arg_free(arg) afterwards.  At once when
 * they need no lookup, else later with the request parked.  A failed
 * lookup runs next with NULL (literal names) and r->facts_error set, so
 * that a denial is still answered and auth_require() refuses an allow.
 */
void
role_facts_run(struct request *r, role_facts_next next, void *arg,
    void (*arg_free)(void *))
{
	struct role_facts_pending *p;
	cJSON *doc = NULL;
	char *cause = NULL;

	if (!keystone_enabled() ||
	    (keystone_user_cache != NULL &&
		keystone_cache_get(keystone_user_cache, ROLE_FACTS_KEY,
		    util_now(), &doc) &&
		doc != NULL)) {
		next(r, doc, arg);
		cJSON_Delete(doc);
		if (arg_free != NULL && arg != NULL)
			arg_free(arg);
		return;
	}
	p = xcalloc(1, sizeof *p);
	p->r = r;
	p->next = next;
	p->arg = arg;
	p->arg_free = arg_free;
	http_ref(r); /* dropped by role_facts_pending_free */
	p->op = keystone_get(r->worker, "/v3/role_inferences", NULL,
	    role_facts_cb, p, &cause);
	if (p->op == NULL) {
		struct keystone_result res = { .unavailable = 1,
			.retry_after = "1" };

		log_warn("keystone: %s", cause);
		free(cause);
		role_facts_unknown(r, &res);
		p->next(r, NULL, p->arg);
		role_facts_pending_free(p);
		return;
	}
	r->data = p;
	r->cancel = role_facts_cancel;
	r->gone = role_facts_gone;
	http_park(r);
}
