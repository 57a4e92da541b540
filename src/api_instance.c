/*
 * api_instance.c: the Kubernetes auth instance routes (one per cluster).
 *
 * POST /v4/k8s_auth/instances, GET (list), and GET | PATCH | PUT | DELETE
 * /v4/k8s_auth/instances/{id}.  Each handler loads (404), validates
 * (400), asks the API policy (403) and only then writes.  The reviewer
 * token is write-only: it is never put in a response, a policy target or
 * a log line; responses carry token_reviewer_jwt_set instead.
 *
 * Runs on a worker thread; the only blocking calls are short SQLite
 * reads and writes through the store.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

static const char *const instance_writable[] = { "domain_id", "name", "host",
	"ca_cert", "token_reviewer_jwt", "disable_local_ca_jwt", "enabled",
	NULL };
static const char *const instance_read_only[] = { "id", "created_at",
	"updated_at", "token_reviewer_jwt_set", NULL };
static const char *const instance_immutable[] = { "id", "domain_id", NULL };
static const char *const instance_required[] = { "domain_id", "host", NULL };
static const char *const instance_filters[] = { "domain_id", "name", "enabled",
	NULL };

/* The API representation of an instance (never the reviewer token). */
cJSON *
api_instance_json(const struct instance *in)
{
	cJSON *o;

	o = cJSON_CreateObject();
	json_add_string_or_null(o, "id", api_or_null(in->id));
	json_add_string_or_null(o, "domain_id", in->domain_id);
	json_add_string_or_null(o, "name", in->name);
	json_add_string_or_null(o, "host", in->host);
	json_add_string_or_null(o, "ca_cert", in->ca_cert);
	cJSON_AddBoolToObject(o, "token_reviewer_jwt_set",
	    in->reviewer_jwt_set);
	cJSON_AddBoolToObject(o, "disable_local_ca_jwt",
	    in->disable_local_ca_jwt);
	cJSON_AddBoolToObject(o, "enabled", in->enabled);
	json_add_string_or_null(o, "created_at", api_or_null(in->created_at));
	json_add_string_or_null(o, "updated_at", api_or_null(in->updated_at));
	return (o);
}

/* The reviewer token field: replace in->reviewer_jwt, wiping the old. */
static int
api_instance_jwt(const cJSON *body, size_t max, struct instance *in,
    char **cause)
{
	char *jwt = NULL;
	int rc;

	rc =
	    json_get_string(body, "token_reviewer_jwt", 1, max, 1, &jwt, cause);
	if (rc == JSON_SET || rc == JSON_NULL) {
		freezero_str(in->reviewer_jwt);
		in->reviewer_jwt = jwt;
		in->reviewer_jwt_set = jwt != NULL;
	}
	return (rc == -1 ? -1 : 0);
}

/* Copy the fields present in body onto in (types and lengths checked). */
static int
api_instance_apply(const struct config *cfg, const cJSON *body,
    struct instance *in, char **cause)
{
	if (json_get_string(body, "domain_id", 1, 64, 0, &in->domain_id,
		cause) == -1 ||
	    json_get_string(body, "name", 1, 255, 1, &in->name, cause) == -1 ||
	    json_get_string(body, "host", 1, 1024, 0, &in->host, cause) == -1 ||
	    json_get_string(body, "ca_cert", 1, VALIDATE_MAX_PEM, 1,
		&in->ca_cert, cause) == -1 ||
	    api_instance_jwt(body, (size_t)cfg->k8s_max_jwt_size, in, cause) ==
		-1 ||
	    json_get_bool(body, "disable_local_ca_jwt",
		&in->disable_local_ca_jwt, cause) == -1 ||
	    json_get_bool(body, "enabled", &in->enabled, cause) == -1)
		return (-1);
	if (in->host == NULL) {
		*cause = xstrdup("host is required");
		return (-1);
	}
	if (validate_host(in->host, cfg->k8s_allow_insecure_http, cause) != 0)
		return (-1);
	if (in->ca_cert != NULL && validate_pem(in->ca_cert, cause) != 0)
		return (-1);
	return (0);
}

/* The patch as the policy sees it: the reviewer token only as a flag. */
static cJSON *
api_instance_patch_target(const cJSON *body, const cJSON *stored)
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
	return (api_target("instance", cJSON_Duplicate(stored, 1), "update",
	    patch, NULL));
}

/* The conflict message for a duplicate (domain_id, name). */
static char *
api_instance_conflict(const struct instance *in)
{
	char *msg;

	xasprintf(&msg,
	    "an instance named '%s' already exists in domain "
	    "'%s'",
	    in->name != NULL ? in->name : "", in->domain_id);
	return (msg);
}

/* Write a new or changed instance and reply (201 or 200). */
static void
api_instance_save(struct request *r, struct instance *in, int create)
{
	char *msg, *path;
	int rc;

	rc = create ? store_instance_create(r->worker->db, in)
		    : store_instance_update(r->worker->db, in);
	if (rc != STORE_OK) {
		msg = api_instance_conflict(in);
		api_store_fail(r, rc, "instance", in->id, msg);
		free(msg);
		return;
	}
	api_log_change(r,
	    create ? "k8s_auth:instance:create" : "k8s_auth:instance:update",
	    in->id);
	if (!create) {
		api_reply_object(r, "instance", api_instance_json(in));
		return;
	}
	xasprintf(&path, "/v4/k8s_auth/instances/%s", in->id);
	api_reply_created(r, path, "instance", api_instance_json(in));
	free(path);
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
	if (api_instance_apply(r->cfg, body, in, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	target =
	    api_target("instance", api_instance_json(in), NULL, NULL, NULL);
	if (auth_require(r, "k8s_auth:instance:create", target) != 0)
		goto out;
	api_instance_save(r, in, 1);
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

	rc = store_instance_get(r->worker->db, id, &in);
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
	target =
	    api_target("instance", api_instance_json(in), NULL, NULL, NULL);
	api_show(r, "k8s_auth:instance:show", "instance", target,
	    api_instance_json(in));
	cJSON_Delete(target);
	instance_free(in);
}

/* PATCH | PUT /v4/k8s_auth/instances/{id} */
void
api_instance_update(struct request *r)
{
	struct instance *in;
	cJSON *body = NULL, *stored = NULL, *target = NULL;
	char *cause = NULL;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	if (http_body_json(r, "instance", &body) != 0 ||
	    api_check_body(r, body, instance_immutable, instance_read_only,
		instance_writable) != 0)
		goto out;
	stored = api_instance_json(in);
	if (api_instance_apply(r->cfg, body, in, &cause) != 0) {
		api_bad_request(r, REASON_invalid_value, cause);
		goto out;
	}
	target = api_instance_patch_target(body, stored);
	if (auth_require(r, "k8s_auth:instance:update", target) != 0)
		goto out;
	api_instance_save(r, in, 0);
out:
	cJSON_Delete(target);
	cJSON_Delete(stored);
	cJSON_Delete(body);
	instance_free(in);
}

/* DELETE /v4/k8s_auth/instances/{id} (its roles go with it). */
void
api_instance_delete(struct request *r)
{
	struct instance *in;
	cJSON *target;

	if ((in = api_instance_load(r, r->params[0])) == NULL)
		return;
	target =
	    api_target("instance", api_instance_json(in), NULL, NULL, NULL);
	api_delete(r, "k8s_auth:instance:delete", "instance", in->id,
	    store_instance_delete, target);
	cJSON_Delete(target);
	instance_free(in);
}

/* GET /v4/k8s_auth/instances (domain_id, name, enabled filters) */
void
api_instance_list(struct request *r)
{
	struct store_query q;
	struct instance **v = NULL;
	cJSON *target = NULL, *a;
	size_t n = 0, i;
	int more = 0, rc;

	if (api_list_query(r, instance_filters, &q, &target) != 0)
		return;
	if (auth_require(r, "k8s_auth:instance:list", target) != 0)
		goto out;
	rc = store_instance_list(r->worker->db, &q, &v, &n, &more);
	if (rc != STORE_OK) {
		api_store_fail(r, rc, "instance", "list", NULL);
		goto out;
	}
	a = cJSON_CreateArray();
	for (i = 0; i < n; i++)
		cJSON_AddItemToArray(a, api_instance_json(v[i]));
	api_reply_list(r, "instances", a, n > 0 ? v[n - 1]->id : NULL, more);
out:
	for (i = 0; i < n; i++)
		instance_free(v[i]);
	free(v);
	cJSON_Delete(target);
}
