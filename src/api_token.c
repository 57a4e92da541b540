/*
 * api_token.c: the token document, and GET/HEAD /v3/auth/tokens (API.md
 * §5) for tokens this server can decode.
 *
 * A restricted token (version 11) is valid while it has not expired and
 * its token restriction still exists and still names the token's user and
 * project; its roles are the restriction's roles as they are now, so
 * deleting a restriction revokes every token issued from it.  Tokens of
 * Keystone's own layouts (versions 2 and 9) are reported without roles:
 * Keystone computes those from its role assignments.
 *
 * Runs on worker threads; one SQLite read per validation.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* The method names a bitmask stands for, in [auth] methods order. */
static cJSON *
api_token_methods(const struct config *cfg, uint64_t mask)
{
	cJSON *a = cJSON_CreateArray();
	char *copy, *p, *m;
	int i = 0;

	copy = xstrdup(cfg->auth_methods);
	p = copy;
	while ((m = strsep(&p, ",")) != NULL) {
		m = util_trim(m);
		if (*m == '\0')
			continue;
		if (i < 64 && (mask & ((uint64_t)1 << i)))
			cJSON_AddItemToArray(a, cJSON_CreateString(m));
		i++;
	}
	free(copy);
	return (a);
}

/* {"id": id, "domain": {"id": domain}} */
static cJSON *
api_token_ref(const char *id, const char *domain)
{
	cJSON *o = cJSON_CreateObject(), *d;

	cJSON_AddStringToObject(o, "id", id);
	if (domain != NULL) {
		d = cJSON_AddObjectToObject(o, "domain");
		cJSON_AddStringToObject(d, "id", domain);
	}
	return (o);
}

/*
 * The {"token": {...}} document of API.md §3 for a payload; rs (may be
 * NULL) supplies roles and the domain of user and project.
 */
cJSON *
api_token_document(const struct config *cfg, const struct fernet_payload *p,
    const struct restriction *rs)
{
	cJSON *doc, *t, *roles, *role, *audits;
	char ts[TIMESTAMP_LEN + 1];
	size_t i;

	doc = cJSON_CreateObject();
	t = cJSON_AddObjectToObject(doc, "token");
	cJSON_AddItemToObject(t, "methods", api_token_methods(cfg, p->methods));
	cJSON_AddItemToObject(t, "user",
	    api_token_ref(p->user_id, rs != NULL ? rs->domain_id : NULL));
	if (p->project_id != NULL)
		cJSON_AddItemToObject(t, "project",
		    api_token_ref(p->project_id,
			rs != NULL ? rs->domain_id : NULL));
	if (rs != NULL) {
		roles = cJSON_AddArrayToObject(t, "roles");
		for (i = 0; i < rs->nroles; i++) {
			role = cJSON_CreateObject();
			cJSON_AddStringToObject(role, "id", rs->roles[i].id);
			if (rs->roles[i].name != NULL)
				cJSON_AddStringToObject(role, "name",
				    rs->roles[i].name);
			cJSON_AddItemToArray(roles, role);
		}
		cJSON_AddStringToObject(t, "token_restriction_id", rs->id);
	}
	util_format_time(p->issued_at, ts);
	cJSON_AddStringToObject(t, "issued_at", ts);
	util_format_time(p->expires_at, ts);
	cJSON_AddStringToObject(t, "expires_at", ts);
	audits = cJSON_AddArrayToObject(t, "audit_ids");
	cJSON_AddItemToArray(audits, cJSON_CreateString(p->audit_id));
	return (doc);
}

/* Validate X-Subject-Token for an authorized caller. */
static void
api_token_answer(struct request *r)
{
	struct fernet_payload p;
	const struct restriction *rs = NULL;
	const char *subject = http_header(r, "X-Subject-Token");
	cJSON *target, *t;
	char *cause = NULL;
	int ok = 0, denied;

	memset(&p, 0, sizeof p);
	if (token_read(subject, &p, &cause) != 0)
		log_debug("token validation: %s", cause);
	else if (p.expires_at <= util_now())
		log_debug("token validation: expired");
	else if (p.version != 11)
		ok = 1;
	else if ((rs = snapshot_restriction(r->snap, p.restriction_id)) !=
		NULL &&
	    rs->user_id != NULL && strcmp(rs->user_id, p.user_id) == 0 &&
	    rs->project_id != NULL && p.project_id != NULL &&
	    strcmp(rs->project_id, p.project_id) == 0)
		ok = 1;
	else
		log_debug("token validation: restriction %s gone or changed",
		    p.restriction_id);
	/*
	 * The policy sees the token ({token = {user_id, project_id, ...}});
	 * an invalid one shows it nothing, so an unauthorized caller cannot
	 * tell valid from invalid tokens.
	 */
	if (r->caller.kind != CALLER_NONE) {
		target = cJSON_CreateObject();
		t = cJSON_AddObjectToObject(target, "token");
		if (ok) {
			cJSON_AddStringToObject(t, "user_id", p.user_id);
			json_add_string_or_null(t, "project_id", p.project_id);
			json_add_string_or_null(t, "token_restriction_id",
			    p.restriction_id);
		}
		denied = auth_require(r, "token:validate", target) != 0;
		cJSON_Delete(target);
		if (denied)
			goto out;
	}
	if (!ok)
		http_reply_reason(r, REASON_token_not_found,
		    "the token is not valid");
	else {
		http_set_header(r, "X-Subject-Token", subject);
		http_reply_json(r, 200, api_token_document(r->cfg, &p, rs));
	}
out:
	free(cause);
	fernet_payload_clear(&p);
}

/*
 * GET and HEAD /v3/auth/tokens: the caller is an admin credential or the
 * token itself (self-validation needs no authorization).
 */
void
api_token_validate(struct request *r)
{
	const char *subject = http_header(r, "X-Subject-Token");
	const char *auth = http_header(r, "X-Auth-Token");

	if (subject == NULL || *subject == '\0') {
		http_reply_reason(r, REASON_missing_subject_token,
		    "the X-Subject-Token header is required");
		return;
	}
	if (auth != NULL &&
	    util_ct_equal(auth, strlen(auth), subject, strlen(subject))) {
		api_token_answer(r);
		return;
	}
	if (auth_caller(r, api_token_answer) == 0)
		api_token_answer(r);
}
