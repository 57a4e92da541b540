/*
 * role.c: the Kubernetes auth role, service account bounds mapped to a
 * token restriction.
 *
 * Owns struct role's lifetime (role_free), its API form (role_json, also
 * the "role" of login.lua's ctx) and its field rules (role_apply: the
 * bound lists, never empty but for bound_service_account_namespaces when
 * a bound_namespace_selector binds namespaces instead, the selector
 * itself, bound_pod_names, token_ttl up to [token] expiration).  Used by
 * the admin handler (api_role.c), the login path (api_login.c) and the
 * fuzz target tests/fuzz/fuzz_admin_body.c.
 *
 * Never does I/O, never touches the database, never answers a request;
 * what spans entities (the restriction a role points at, the policy) is
 * the handler's.  Pure functions on the struct, safe from any thread.
 */
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define ROLE_MAX_ITEMS    100
#define ROLE_MAX_ITEM_LEN 255

/* Free a role. */
void
role_free(struct role *r)
{
	if (r == NULL)
		return;
	free(r->domain_id);
	free(r->name);
	strlist_free(&r->bound_sa_names);
	strlist_free(&r->bound_sa_namespaces);
	free(r->bound_audience);
	if (r->bound_pod_names != NULL) {
		strlist_free(r->bound_pod_names);
		free(r->bound_pod_names);
	}
	free(r->token_restriction_id);
	free(r->bound_namespace_selector);
	free(r);
}

/* The API representation of a role. */
cJSON *
role_json(const struct role *ro)
{
	cJSON *o;

	o = cJSON_CreateObject();
	json_add_string_or_null(o, "id", json_or_null(ro->id));
	json_add_string_or_null(o, "auth_instance_id",
	    json_or_null(ro->auth_instance_id));
	json_add_string_or_null(o, "domain_id", ro->domain_id);
	json_add_string_or_null(o, "name", ro->name);
	cJSON_AddBoolToObject(o, "enabled", ro->enabled);
	cJSON_AddItemToObject(o, "bound_service_account_names",
	    json_strlist(&ro->bound_sa_names));
	cJSON_AddItemToObject(o, "bound_service_account_namespaces",
	    json_strlist(&ro->bound_sa_namespaces));
	json_add_string_or_null(o, "bound_audience", ro->bound_audience);
	if (ro->bound_pod_names == NULL)
		cJSON_AddNullToObject(o, "bound_pod_names");
	else
		cJSON_AddItemToObject(o, "bound_pod_names",
		    json_strlist(ro->bound_pod_names));
	if (ro->bound_namespace_selector != NULL)
		cJSON_AddItemToObject(o, "bound_namespace_selector",
		    json_parse(ro->bound_namespace_selector,
			strlen(ro->bound_namespace_selector), NULL));
	else
		cJSON_AddNullToObject(o, "bound_namespace_selector");
	if (ro->token_ttl > 0)
		cJSON_AddNumberToObject(o, "token_ttl", (double)ro->token_ttl);
	else
		cJSON_AddNullToObject(o, "token_ttl");
	json_add_string_or_null(o, "token_restriction_id",
	    ro->token_restriction_id);
	json_add_string_or_null(o, "created_at", json_or_null(ro->created_at));
	json_add_string_or_null(o, "updated_at", json_or_null(ro->updated_at));
	return (o);
}

/* bound_pod_names: a list, or null to unset (ro->bound_pod_names NULL). */
static int
role_pods(const cJSON *body, struct role *ro, char **cause)
{
	struct strlist sl = { NULL, 0 };
	int rc;

	rc = json_get_strlist(body, "bound_pod_names", ROLE_MAX_ITEMS,
	    ROLE_MAX_ITEM_LEN, 1, &sl, cause);
	if (rc != JSON_SET && rc != JSON_NULL)
		return (rc);
	if (ro->bound_pod_names != NULL) {
		json_strlist_clear(ro->bound_pod_names);
		free(ro->bound_pod_names);
		ro->bound_pod_names = NULL;
	}
	if (rc == JSON_SET) {
		ro->bound_pod_names = xmalloc(sizeof *ro->bound_pod_names);
		*ro->bound_pod_names = sl;
	}
	return (0);
}

/*
 * bound_service_account_namespaces: a list as json_get_strlist reads it,
 * or [] (allowed only with a selector: role_validate checks that).
 */
static int
role_namespaces(const cJSON *body, struct role *ro, char **cause)
{
	const cJSON *a;

	a = cJSON_GetObjectItemCaseSensitive(body,
	    "bound_service_account_namespaces");
	if (cJSON_IsArray(a) && cJSON_GetArraySize(a) == 0) {
		json_strlist_clear(&ro->bound_sa_namespaces);
		return (0);
	}
	return (json_get_strlist(body, "bound_service_account_namespaces",
	    ROLE_MAX_ITEMS, ROLE_MAX_ITEM_LEN, 0, &ro->bound_sa_namespaces,
	    cause));
}

/* bound_namespace_selector: a LabelSelector (stored as JSON) or null. */
static int
role_selector(const cJSON *body, struct role *ro, char **cause)
{
	const cJSON *sel;

	sel =
	    cJSON_GetObjectItemCaseSensitive(body, "bound_namespace_selector");
	if (sel == NULL)
		return (0);
	free(ro->bound_namespace_selector);
	ro->bound_namespace_selector = NULL;
	if (cJSON_IsNull(sel))
		return (0);
	if (k8s_selector_check(sel, cause) != 0)
		return (-1);
	ro->bound_namespace_selector = json_print(sel);
	return (0);
}

/* token_ttl: 60..[token] expiration, or null to unset (0). */
static int
role_ttl(const struct config *cfg, const cJSON *body, struct role *ro,
    char **cause)
{
	long ttl = 0;
	int rc;

	rc = json_get_long(body, "token_ttl", 60, cfg->token_expiration, 1,
	    &ttl, cause);
	if (rc == JSON_SET || rc == JSON_NULL)
		ro->token_ttl = rc == JSON_SET ? ttl : 0;
	return (rc == -1 ? -1 : 0);
}

/* The rules that span fields, checked on the merged role. */
static int
role_validate(const struct role *ro, char **cause)
{
	if (validate_role_name(ro->name, cause) != 0 ||
	    validate_globs("bound_service_account_names", &ro->bound_sa_names,
		cause) != 0 ||
	    validate_globs("bound_service_account_namespaces",
		&ro->bound_sa_namespaces, cause) != 0)
		return (-1);
	if (ro->bound_sa_namespaces.n == 0 &&
	    ro->bound_namespace_selector == NULL) {
		xasprintf(cause,
		    "bound_service_account_namespaces must have 1 to %d items unless bound_namespace_selector is set",
		    ROLE_MAX_ITEMS);
		return (-1);
	}
	if (ro->bound_pod_names != NULL &&
	    validate_globs("bound_pod_names", ro->bound_pod_names, cause) != 0)
		return (-1);
	return (0);
}

/*
 * Copy the fields present in body onto ro, then check the whole role.  0,
 * or -1 with a cause naming the field (tests/fuzz/fuzz_admin_body.c).
 */
int
role_apply(const struct config *cfg, const cJSON *body, struct role *ro,
    char **cause)
{
	if (json_get_string(body, "name", 1, 255, 0, &ro->name, cause) == -1 ||
	    json_get_bool(body, "enabled", &ro->enabled, cause) == -1 ||
	    json_get_strlist(body, "bound_service_account_names",
		ROLE_MAX_ITEMS, ROLE_MAX_ITEM_LEN, 0, &ro->bound_sa_names,
		cause) == -1 ||
	    role_namespaces(body, ro, cause) == -1 ||
	    role_selector(body, ro, cause) == -1 ||
	    json_get_string(body, "bound_audience", 1, 255, 1,
		&ro->bound_audience, cause) == -1 ||
	    role_pods(body, ro, cause) == -1 ||
	    role_ttl(cfg, body, ro, cause) == -1 ||
	    json_get_string(body, "token_restriction_id", 1, 64, 0,
		&ro->token_restriction_id, cause) == -1)
		return (-1);
	return (role_validate(ro, cause));
}

/* A deep copy of a role: the caller's. */
struct role *
role_copy(const struct role *src)
{
	struct role *r;

	r = xmalloc(sizeof *r);
	*r = *src;
	r->domain_id = xstrdup_or_null(src->domain_id);
	r->name = xstrdup_or_null(src->name);
	strlist_copy(&r->bound_sa_names, &src->bound_sa_names);
	strlist_copy(&r->bound_sa_namespaces, &src->bound_sa_namespaces);
	r->bound_audience = xstrdup_or_null(src->bound_audience);
	if (src->bound_pod_names != NULL) {
		r->bound_pod_names = xcalloc(1, sizeof *r->bound_pod_names);
		strlist_copy(r->bound_pod_names, src->bound_pod_names);
	}
	r->bound_namespace_selector =
	    xstrdup_or_null(src->bound_namespace_selector);
	r->token_restriction_id = xstrdup_or_null(src->token_restriction_id);
	return (r);
}
