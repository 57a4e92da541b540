/*
 * api_instance.c: the Kubernetes auth instance routes (one per cluster).
 *
 * POST /v4/k8s_auth/instances, GET (list), and GET | PATCH | PUT | DELETE
 * /v4/k8s_auth/instances/{id}.  Each handler loads (404), validates
 * (400), asks the API policy (403) and only then writes.  The reviewer
 * token is write-only: it is never put in a response, a policy target or
 * a log line; responses carry token_reviewer_jwt_set instead.
 *
 * Trust (API.md §7): a host is never link-local (400); a non-admin's
 * host must be in [k8s_auth] allowed_hosts (403 host_not_allowed) and
 * the instance remembers who set it (host_admin) for the connect-time
 * check.  Changing host or ca_cert without a new token_reviewer_jwt
 * clears the stored one: the credential follows the trust anchor.  An
 * update is decided with target.instance.protected (role_facts.c).
 * jwt_signature, jwks and issuer (API.md §8) decide which JWTs are even
 * reviewed, so the policy counts them with the trust anchor (admin only
 * on a protected instance); a jwks is parsed on write (strict: every key
 * usable, RSA >= 2048 bits, EC P-256) and the keys cached for an
 * instance are dropped whenever it is updated or deleted (jwks_forget).
 *
 * Runs on a worker thread; the only blocking calls are short SQLite
 * reads and writes through the store.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

static const char *const instance_writable[] = { "domain_id", "name", "host",
	"ca_cert", "token_reviewer_jwt", "disable_local_ca_jwt", "enabled",
	"service_account_annotations", "jwt_signature", "jwks", "issuer",
	"review_cache_ttl", NULL };
static const char *const instance_read_only[] = { "id", "created_at",
	"updated_at", "token_reviewer_jwt_set", NULL };
static const char *const instance_immutable[] = { "id", "domain_id", NULL };
static const char *const instance_required[] = { "domain_id", "host", NULL };
static const char *const instance_filters[] = { "domain_id", "name", "enabled",
	NULL };

/*
 * The names of the fields an update changes (target.changed): every
 * field whose value differs, and token_reviewer_jwt when one was sent.
 */
static cJSON *
api_instance_changes(const cJSON *body, const cJSON *stored,
    const struct instance *in)
{
	cJSON *now, *it, *out;

	out = cJSON_CreateArray();
	now = instance_json(in);
	cJSON_ArrayForEach(it, now)
	{
		if (!cJSON_Compare(it,
			cJSON_GetObjectItemCaseSensitive(stored, it->string),
			1))
			cJSON_AddItemToArray(out,
			    cJSON_CreateString(it->string));
	}
	cJSON_Delete(now);
	if (cJSON_GetObjectItemCaseSensitive(body, "token_reviewer_jwt") !=
	    NULL)
		cJSON_AddItemToArray(out,
		    cJSON_CreateString("token_reviewer_jwt"));
	return (out);
}

/* The patch as the policy sees it: the reviewer token only as a flag. */
static cJSON *
api_instance_patch_target(const cJSON *body, cJSON *stored)
{
	cJSON *patch, *jwt;

	patch = cJSON_Duplicate(body, 1);
	jwt = cJSON_DetachItemFromObjectCaseSensitive(patch,
	    "token_reviewer_jwt");
	if (jwt != NULL) {
		cJSON_AddBoolToObject(patch, "token_reviewer_jwt_set",
		    !cJSON_IsNull(jwt));
		cJSON_Delete(jwt);
	}
	return (api_target("instance", stored, "update", patch, NULL));
}

/* The instance as the policy sees it: with target.instance.protected. */
static cJSON *
api_instance_facts(const struct instance *in, int protected)
{
	cJSON *o;

	o = instance_json(in);
	cJSON_AddBoolToObject(o, "protected", protected);
	return (o);
}

/*
 * Who set the host decides the connect-time allowed_hosts check: an
 * admin's host is exempt; anyone else's must be in allowed_hosts now
 * (the host name) and when connecting (the address).  Replies 403
 * host_not_allowed and returns -1.
 */
static int
api_instance_host_allowed(struct request *r, struct instance *in)
{
	struct outbound_rules *rules;
	char *host, *cause = NULL;
	int rc;

	in->host_admin = r->caller.is_admin;
	if (r->caller.is_admin)
		return (0);
	if ((rules = outbound_rules_parse(r->cfg->k8s_allowed_hosts, &cause)) ==
	    NULL) {
		log_err("[k8s_auth] %s", cause);
		free(cause);
		http_reply_reason(r, REASON_internal_error,
		    "[k8s_auth] allowed_hosts does not parse");
		return (-1);
	}
	host = outbound_url_host(in->host);
	rc = host != NULL ? outbound_host_allowed(rules, host, &cause) : -1;
	outbound_rules_free(rules);
	free(host);
	if (rc == 0)
		return (0);
	http_reply_reason(r, REASON_host_not_allowed, "%s",
	    cause != NULL ? cause : "host has no host name");
	free(cause);
	return (-1);
}

/* Did the field change between the stored JSON and the instance? */
static int
api_instance_changed(const cJSON *stored, const char *field, const char *now)
{
	const char *was = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(stored, field));

	if (was == NULL || now == NULL)
		return (was != now);
	return (strcmp(was, now) != 0);
}

/*
 * The reviewer credential follows the trust anchor: a new host or
 * ca_cert without a token_reviewer_jwt in the same request clears the
 * stored reviewer token.
 */
static void
api_instance_follow_anchor(const cJSON *body, const cJSON *stored,
    struct instance *in)
{
	if (cJSON_GetObjectItemCaseSensitive(body, "token_reviewer_jwt") !=
	    NULL)
		return;
	if (!api_instance_changed(stored, "host", in->host) &&
	    !api_instance_changed(stored, "ca_cert", in->ca_cert))
		return;
	freezero_str(in->reviewer_jwt);
	in->reviewer_jwt = NULL;
	in->reviewer_jwt_set = 0;
}

/* The conflict message for a duplicate (domain_id, name). */
static char *
api_instance_conflict(const struct instance *in)
{
	char *msg;

	xasprintf(&msg, "an instance named '%s' already exists in domain '%s'",
	    in->name != NULL ? in->name : "", in->domain_id);
	return (msg);
}

/*
 * An instance write on the database thread; an update carries the guard
 * of the instance as the checks saw it (host_admin, protected).
 */
struct instance_save {
	struct instance *in;
	int create;
	struct api_guard *guard;
};

static int
api_instance_save_fn(struct db *db, void *arg)
{
	struct instance_save *s = arg;
	int rc;

	if ((rc = api_guard_check(db, s->guard)) != STORE_OK)
		return (rc);
	return (s->create ? store_instance_create(db, s->in)
			  : store_instance_update(db, s->in));
}

static void
api_instance_save_free(void *arg)
{
	struct instance_save *s = arg;

	instance_free(s->in);
	api_guard_free(s->guard);
	free(s);
}

/* The write is done: reply (201 or 200). */
static void
api_instance_saved(struct request *r, int rc, void *arg)
{
	struct instance_save *s = arg;
	struct instance *in = s->in;
	char *msg, *path;

	if (rc != STORE_OK) {
		msg = api_instance_conflict(in);
		api_store_fail(r, rc, "instance", in->id, msg);
		free(msg);
		return;
	}
	api_log_change(r,
	    s->create ? "k8s_auth:instance:create" : "k8s_auth:instance:update",
	    in->id);
	jwks_forget(in->id); /* keys follow host, CA, reviewer and jwks */
	if (!s->create) {
		/* Host, CA, reviewer or keys may have changed. */
		review_cache_forget(in->id);
		api_reply_object(r, "instance", instance_json(in));
		return;
	}
	xasprintf(&path, "/v4/k8s_auth/instances/%s", in->id);
	api_reply_created(r, path, "instance", instance_json(in));
	free(path);
}

/* Write a new or changed instance (taken over) and reply (201 or 200). */
static void
api_instance_save(struct request *r, struct instance *in, int create)
{
	struct instance_save *s;

	s = xcalloc(1, sizeof *s);
	s->in = in;
	s->create = create;
	if (!create) {
		s->guard = api_guard_new();
		api_guard_instance(s->guard, r, in->id);
	}
	api_write(r, api_instance_save_fn, s, api_instance_saved,
	    api_instance_save_free);
}

/* POST /v4/k8s_auth/instances (and the /v4/k8s_auth alias). */
void
api_instance_create(struct request *r)
{
	struct instance *in = NULL;
	cJSON *body = NULL, *target = NULL;
	char *cause = NULL;

	if (http_body_json(r, "instance", &body) != 0)
		return;
	if (api_check_body(r, body, NULL, instance_read_only,
		instance_writable) != 0 ||
	    api_check_required(r, body, instance_required) != 0)
		goto out;
	in = xcalloc(1, sizeof *in);
	in->enabled = 1;
	in->review_cache_ttl = REVIEW_CACHE_TTL_DEFAULT;
	if (instance_apply(r->cfg, body, in, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	target =
	    api_target("instance", api_instance_facts(in, 0), NULL, NULL, NULL);
	if (auth_require(r, "k8s_auth:instance:create", target) != 0 ||
	    api_instance_host_allowed(r, in) != 0)
		goto out;
	api_instance_save(r, in, 1);
	in = NULL;
out:
	cJSON_Delete(target);
	cJSON_Delete(body);
	if (in != NULL)
		instance_free(in);
}

/* Load the instance named by the path; replies 404/500 and NULL. */
struct instance *
api_instance_load(struct request *r, const char *id)
{
	struct instance *in = NULL;
	int rc;

	rc = snapshot_instance_get(r->snap, id, &in);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "instance", id, NULL);
		return (NULL);
	}
	return (in);
}

/* GET /v4/k8s_auth/instances/{id} */
void
api_instance_show(struct request *r)
{
	struct instance *in;
	cJSON *target;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	target = api_target("instance", instance_json(in), NULL, NULL, NULL);
	api_show(r, "k8s_auth:instance:show", "instance", target,
	    instance_json(in));
	cJSON_Delete(target);
	instance_free(in);
}

/* An instance update waiting for the role facts. */
struct instance_update {
	struct instance *in;
	cJSON *target;
	int host_changed;
};

/* Free an instance update. */
static void
api_instance_update_free(void *arg)
{
	struct instance_update *u = arg;

	instance_free(u->in);
	cJSON_Delete(u->target);
	free(u);
}

/*
 * The role facts are known: mark the target protected or not, ask the
 * policy, check the host, write.
 */
static void
api_instance_update_cb(struct request *r, const cJSON *inferences, void *arg)
{
	struct instance_update *u = arg;
	cJSON *obj;
	int protected, rc;

	rc = role_facts_protected(r, inferences, u->in->id, &protected);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "instance", u->in->id, NULL);
		return;
	}
	obj = cJSON_GetObjectItemCaseSensitive(u->target, "instance");
	cJSON_DeleteItemFromObjectCaseSensitive(obj, "protected");
	cJSON_AddBoolToObject(obj, "protected", protected);
	if (auth_require(r, "k8s_auth:instance:update", u->target) != 0)
		return;
	if (u->host_changed && api_instance_host_allowed(r, u->in) != 0)
		return;
	api_instance_save(r, u->in, 0);
	u->in = NULL;
}

/* PATCH | PUT /v4/k8s_auth/instances/{id} */
void
api_instance_update(struct request *r)
{
	struct instance_update *u;
	struct instance *in;
	cJSON *body = NULL, *stored = NULL, *changes;
	char *cause = NULL;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	if (http_body_json(r, "instance", &body) != 0 ||
	    api_check_body(r, body, instance_immutable, instance_read_only,
		instance_writable) != 0)
		goto out;
	stored = api_instance_facts(in, 0);
	if (instance_apply(r->cfg, body, in, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	api_instance_follow_anchor(body, stored, in);
	u = xcalloc(1, sizeof *u);
	u->host_changed = api_instance_changed(stored, "host", in->host);
	u->in = in;
	changes = api_instance_changes(body, stored, in);
	u->target = api_instance_patch_target(body, stored);
	cJSON_AddItemToObject(u->target, "changed", changes);
	in = NULL;
	stored = NULL;
	role_facts_run(r, api_instance_update_cb, u, api_instance_update_free);
out:
	cJSON_Delete(stored);
	cJSON_Delete(body);
	if (in != NULL)
		instance_free(in);
}

/* A deleted instance's cached keys and reviews go with it. */
static void
api_instance_forget(const char *id)
{
	jwks_forget(id);
	review_cache_forget(id);
}

/* DELETE /v4/k8s_auth/instances/{id} (its roles go with it). */
void
api_instance_delete(struct request *r)
{
	struct api_guard *g;
	struct instance *in;
	cJSON *target;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	target = api_target("instance", instance_json(in), NULL, NULL, NULL);
	g = api_guard_new();
	api_guard_instance(g, r, in->id);
	api_delete(r, "k8s_auth:instance:delete", "instance", in->id,
	    store_instance_delete, target, api_instance_forget, g);
	cJSON_Delete(target);
	instance_free(in);
}

/* GET /v4/k8s_auth/instances (domain_id, name, enabled filters) */
void
api_instance_list(struct request *r)
{
	struct store_query q;
	const struct instance **v = NULL;
	cJSON *target = NULL, *a;
	size_t n = 0, i;
	int more = 0, rc;

	if (api_list_query(r, instance_filters, &q, &target) != 0)
		return;
	if (auth_require(r, "k8s_auth:instance:list", target) != 0)
		goto out;
	rc = snapshot_instance_list(r->snap, &q, &v, &n, &more);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "instance", "list", NULL);
		goto out;
	}
	a = cJSON_CreateArray();
	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, instance_json(v[i]));
	api_reply_list(r, "instances", a, n > 0 ? v[n - 1]->id : NULL, more);
out:
	free(v);
	cJSON_Delete(target);
}
