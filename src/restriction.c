/*
 * restriction.c: the token restriction, the user, project and roles of
 * the tokens issued through a role.
 *
 * Owns struct restriction's lifetime (restriction_free), its API form
 * (restriction_json, also the "restriction" of login.lua's ctx) and its
 * field rules (restriction_apply: ids and flags, the roles list of
 * {"id", "name"} objects, at most 100, no id twice), whose failures carry
 * their 400 reason in a struct restriction_err.  Used by the admin
 * handlers (api_restriction.c, api_role.c), the login path (api_login.c)
 * and the fuzz target tests/fuzz/fuzz_admin_body.c.
 *
 * Never does I/O, never touches the database or Keystone, never answers a
 * request: whether a role still uses it and what Keystone says of it are
 * the handler's.  Pure functions on the struct, safe from any thread.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define RESTRICTION_MAX_ROLES 100

static const char *const restriction_role_fields[] = { "id", "name", NULL };

/* Free a restriction and its roles. */
void
restriction_free(struct restriction *rs)
{
	size_t i;

	if (rs == NULL)
		return;
	free(rs->domain_id);
	free(rs->user_id);
	free(rs->project_id);
	for (i = 0; i < rs->nroles; i++) {
		free(rs->roles[i].id);
		free(rs->roles[i].name);
	}
	free(rs->roles);
	free(rs);
}

/* The API representation of a restriction. */
cJSON *
restriction_json(const struct restriction *rs)
{
	cJSON *o, *roles, *ro;
	size_t i;

	o = cJSON_CreateObject();
	json_add_string_or_null(o, "id", json_or_null(rs->id));
	json_add_string_or_null(o, "domain_id", rs->domain_id);
	json_add_string_or_null(o, "user_id", rs->user_id);
	json_add_string_or_null(o, "project_id", rs->project_id);
	roles = cJSON_AddArrayToObject(o, "roles");
	for (i = 0; i < rs->nroles; i++) {
		ro = cJSON_CreateObject();
		cJSON_AddStringToObject(ro, "id", rs->roles[i].id);
		if (rs->roles[i].name != NULL)
			cJSON_AddStringToObject(ro, "name", rs->roles[i].name);
		cJSON_AddItemToArray(roles, ro);
	}
	cJSON_AddBoolToObject(o, "allow_renew", rs->allow_renew);
	cJSON_AddBoolToObject(o, "allow_rescope", rs->allow_rescope);
	json_add_string_or_null(o, "created_at", json_or_null(rs->created_at));
	json_add_string_or_null(o, "updated_at", json_or_null(rs->updated_at));
	return (o);
}

/* Free n role references and the array. */
static void
restriction_roles_free(struct restriction_role *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(v[i].id);
		free(v[i].name);
	}
	free(v);
}

/* Record a failure with reason; the message is cause (taken). */
static int
restriction_fail(struct restriction_err *e, enum reason reason, char *cause)
{
	e->reason = reason;
	e->cause = cause;
	return (-1);
}

/* Parse roles[i]: {"id": 1..64, "name": 1..255 or null}. */
static int
restriction_role_apply(const cJSON *item, size_t i, struct restriction_role *rr,
    struct restriction_err *e)
{
	char prefix[32], *cause = NULL, *msg;

	snprintf(prefix, sizeof prefix, "roles[%zu].", i);
	if (!cJSON_IsObject(item)) {
		xasprintf(&msg, "roles[%zu] must be an object", i);
		return (restriction_fail(e, REASON_invalid_value, msg));
	}
	if (json_check_fields_at(item, prefix, restriction_role_fields,
		&cause) != 0)
		return (restriction_fail(e, REASON_unknown_field, cause));
	if (json_get_string(item, "id", 1, 64, 0, &rr->id, &cause) == -1 ||
	    json_get_string(item, "name", 1, 255, 1, &rr->name, &cause) == -1) {
		xasprintf(&msg, "%s%s", prefix, cause);
		free(cause);
		return (restriction_fail(e, REASON_invalid_value, msg));
	}
	if (rr->id == NULL) {
		xasprintf(&msg, "%sid is required", prefix);
		return (restriction_fail(e, REASON_missing_field, msg));
	}
	return (0);
}

/* No role id may appear twice. */
static int
restriction_roles_unique(const struct restriction_role *v, size_t n,
    struct restriction_err *e)
{
	char *msg;
	size_t i, j;

	for (i = 1; i < n; i++) {
		for (j = 0; j < i; j++) {
			if (strcmp(v[i].id, v[j].id) != 0)
				continue;
			xasprintf(&msg,
			    "roles[%zu].id duplicates roles[%zu].id", i, j);
			return (restriction_fail(e, REASON_invalid_value, msg));
		}
	}
	return (0);
}

/* The roles field, when present, replaces the restriction's roles. */
static int
restriction_roles_apply(const cJSON *body, struct restriction *rs,
    struct restriction_err *e)
{
	struct restriction_role *v;
	const cJSON *list, *item;
	size_t n, i = 0;

	if ((list = cJSON_GetObjectItemCaseSensitive(body, "roles")) == NULL)
		return (0);
	if (!cJSON_IsArray(list))
		return (restriction_fail(e, REASON_invalid_value,
		    xstrdup("roles must be a list of objects")));
	n = (size_t)cJSON_GetArraySize(list);
	if (n > RESTRICTION_MAX_ROLES)
		return (restriction_fail(e, REASON_invalid_value,
		    xstrdup("roles must have at most 100 items")));
	v = xcalloc(n + 1, sizeof *v);
	cJSON_ArrayForEach(item, list)
	{
		if (restriction_role_apply(item, i, &v[i], e) != 0)
			goto fail;
		i++;
	}
	if (restriction_roles_unique(v, n, e) != 0)
		goto fail;
	restriction_roles_free(rs->roles, rs->nroles);
	rs->roles = v;
	rs->nroles = n;
	return (0);
fail:
	restriction_roles_free(v, n);
	return (-1);
}

/*
 * Copy the fields present in body onto rs.  0, or -1 with e's reason and
 * cause filled (tests/fuzz/fuzz_admin_body.c).
 */
int
restriction_apply(const cJSON *body, struct restriction *rs,
    struct restriction_err *e)
{
	char *cause = NULL;

	if (json_get_string(body, "domain_id", 1, 64, 0, &rs->domain_id,
		&cause) == -1 ||
	    json_get_string(body, "user_id", 1, 64, 1, &rs->user_id, &cause) ==
		-1 ||
	    json_get_string(body, "project_id", 1, 64, 1, &rs->project_id,
		&cause) == -1 ||
	    json_get_bool(body, "allow_renew", &rs->allow_renew, &cause) ==
		-1 ||
	    json_get_bool(body, "allow_rescope", &rs->allow_rescope, &cause) ==
		-1)
		return (restriction_fail(e, REASON_invalid_value, cause));
	return (restriction_roles_apply(body, rs, e));
}

/* A deep copy of a restriction and its roles: the caller's. */
struct restriction *
restriction_copy(const struct restriction *src)
{
	struct restriction *rs;
	size_t i;

	rs = xmalloc(sizeof *rs);
	*rs = *src;
	rs->domain_id = xstrdup_or_null(src->domain_id);
	rs->user_id = xstrdup_or_null(src->user_id);
	rs->project_id = xstrdup_or_null(src->project_id);
	rs->roles = NULL;
	if (src->nroles > 0)
		rs->roles = xcalloc(src->nroles, sizeof *rs->roles);
	for (i = 0; i < src->nroles; i++) {
		rs->roles[i].id = xstrdup(src->roles[i].id);
		rs->roles[i].name = xstrdup_or_null(src->roles[i].name);
	}
	return (rs);
}
