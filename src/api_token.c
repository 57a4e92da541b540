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

#include <event2/buffer.h>

#include "k8sauth.h"

/* One method name, len bytes at name, as an array element. */
static void
api_token_method(struct json_out *o, const char *name, size_t len)
{
	char stack[128], *copy = stack;

	if (len >= sizeof stack)
		copy = xmalloc(len + 1);
	memcpy(copy, name, len);
	copy[len] = '\0';
	json_out_string(o, NULL, copy);
	if (copy != stack)
		free(copy);
}

/*
 * "methods": the method names a bitmask stands for, in [auth] methods
 * order (each name trimmed of white space as util_trim does).
 */
static void
api_token_methods(struct json_out *o, const struct config *cfg, uint64_t mask)
{
	const char *p = cfg->auth_methods, *end;
	size_t len;
	int i = 0;

	json_out_open(o, "methods", '[');
	for (;;) {
		end = p + strcspn(p, ",");
		while (p < end && strchr(" \t\n\r", *p) != NULL)
			p++;
		len = (size_t)(end - p);
		while (len > 0 && strchr(" \t\n\r", p[len - 1]) != NULL)
			len--;
		if (len > 0) {
			if (i < 64 && (mask & ((uint64_t)1 << i)))
				api_token_method(o, p, len);
			i++;
		}
		if (*end == '\0')
			break;
		p = end + 1;
	}
	json_out_close(o, ']');
}

/* "key": {"id": id, "domain": {"id": domain}} */
static void
api_token_ref(struct json_out *o, const char *key, const char *id,
    const char *domain)
{
	json_out_open(o, key, '{');
	json_out_string(o, "id", id);
	if (domain != NULL) {
		json_out_open(o, "domain", '{');
		json_out_string(o, "id", domain);
		json_out_close(o, '}');
	}
	json_out_close(o, '}');
}

/*
 * The {"token": {...}} document of API.md §3 for a payload, written into o
 * with the token object left open for the caller to add to (the login adds
 * "k8s_auth") and close with api_token_reply.  rs (may be NULL) supplies
 * roles and the domain of user and project.  Written directly, not as a
 * cJSON tree: the same text (member order, escapes) with no allocation.
 */
void
api_token_document(struct json_out *o, const struct config *cfg,
    const struct fernet_payload *p, const struct restriction *rs)
{
	char ts[TIMESTAMP_LEN + 1];
	size_t i;

	json_out_open(o, NULL, '{');
	json_out_open(o, "token", '{');
	api_token_methods(o, cfg, p->methods);
	api_token_ref(o, "user", p->user_id, rs != NULL ? rs->domain_id : NULL);
	if (p->project_id != NULL)
		api_token_ref(o, "project", p->project_id,
		    rs != NULL ? rs->domain_id : NULL);
	if (rs != NULL) {
		json_out_open(o, "roles", '[');
		for (i = 0; i < rs->nroles; i++) {
			json_out_open(o, NULL, '{');
			json_out_string(o, "id", rs->roles[i].id);
			json_out_string(o, "name", rs->roles[i].name);
			json_out_close(o, '}');
		}
		json_out_close(o, ']');
		json_out_string(o, "token_restriction_id", rs->id);
	}
	util_format_time(p->issued_at, ts);
	json_out_string(o, "issued_at", ts);
	util_format_time(p->expires_at, ts);
	json_out_string(o, "expires_at", ts);
	json_out_open(o, "audit_ids", '[');
	json_out_string(o, NULL, p->audit_id);
	json_out_close(o, ']');
}

/* Close the document api_token_document began and answer 200 with it. */
void
api_token_reply(struct request *r, struct json_out *o)
{
	struct evbuffer *buf;

	json_out_close(o, '}');
	json_out_close(o, '}');
	if ((buf = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(buf, o->buf, o->len);
	http_set_header(r, "Content-Type", "application/json");
	http_reply_buffer(r, 200, buf);
	evbuffer_free(buf);
}

/* Validate X-Subject-Token for an authorized caller. */
static void
api_token_answer(struct request *r)
{
	struct fernet_payload p;
	const struct restriction *rs = NULL;
	const char *subject = http_header(r, "X-Subject-Token");
	struct json_out o;
	cJSON *target, *t;
	char stack[API_TOKEN_STACK], *cause = NULL;
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
		json_out_init(&o, stack, sizeof stack);
		api_token_document(&o, r->cfg, &p, rs);
		api_token_reply(r, &o);
		json_out_free(&o);
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
