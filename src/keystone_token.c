/*
 * keystone_token.c: admin callers with Keystone tokens.
 *
 * keystone_token_caller() turns an X-Auth-Token that is not the bootstrap
 * token into r->caller:
 *   - a restricted token this server issued (Fernet payload version 11)
 *     is decoded locally: kind "restricted", the user and project of the
 *     payload, the roles of the restriction as it is now, user and project
 *     domain = the restriction's domain (a restriction written while
 *     Keystone is configured holds a user and project of its own domain);
 *     never is_admin;
 *   - anything else is validated by Keystone (GET /v3/auth/tokens?nocatalog
 *     with the service token, keystone.c).  A valid answer is cached,
 *     keyed by the token's SHA-256, until min(expires_at, now +
 *     [keystone] cache_ttl); an invalid one (404) for 10 s.  Keystone
 *     unavailable is 503 keystone_unavailable with Retry-After, never 401;
 *     Keystone refusing the service's credential 502 keystone_forbidden.
 *
 * is_admin: the token carries the role "admin", whatever its scope
 * (project, domain or system).  That is what Keystone's own default policy
 * does (`admin_required: role:admin`, scope not enforced by default), so a
 * cloud operator's ordinary project-scoped admin token works here as it
 * does against Keystone.  The policy sees the scope (system, domain_id,
 * project_id) and may demand more.
 *
 * Runs on worker threads; the request is parked while Keystone answers.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define KEYSTONE_TOKEN_MAX    8192 /* longer X-Auth-Token: invalid */
#define KEYSTONE_NEGATIVE_TTL 10.0

/* An asynchronous validation of a request's X-Auth-Token. */
struct keystone_auth {
	struct request *r;
	http_handler next;
	struct keystone_op *op;
	char key[65];
};

/* A string member of an object, or NULL. */
static const char *
keystone_token_str(const cJSON *o, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

/* The "id" of o and of o.domain, copied; -1 when o has no id. */
static int
keystone_token_ids(const cJSON *o, char **id, char **domain_id)
{
	const char *s;

	if ((s = keystone_token_str(o, "id")) == NULL)
		return (-1);
	*id = xstrdup(s);
	s = keystone_token_str(cJSON_GetObjectItemCaseSensitive(o, "domain"),
	    "id");
	if (s != NULL && domain_id != NULL)
		*domain_id = xstrdup(s);
	return (0);
}

/* Role names of the token into c->roles; admin sets is_admin. */
static int
keystone_token_roles(const cJSON *roles, struct caller *c)
{
	const cJSON *it;
	const char *name;

	if (roles == NULL)
		return (0);
	if (!cJSON_IsArray(roles))
		return (-1);
	cJSON_ArrayForEach(it, roles)
	{
		if ((name = keystone_token_str(it, "name")) == NULL)
			return (-1);
		c->roles.v = xreallocarray(c->roles.v, c->roles.n + 1,
		    sizeof *c->roles.v);
		c->roles.v[c->roles.n++] = xstrdup(name);
		if (strcmp(name, "admin") == 0)
			c->is_admin = 1;
	}
	return (0);
}

/* The scope of the token: project, domain or system (or none). */
static int
keystone_token_scope(const cJSON *tok, struct caller *c)
{
	const cJSON *project, *domain, *sys;

	project = cJSON_GetObjectItemCaseSensitive(tok, "project");
	domain = cJSON_GetObjectItemCaseSensitive(tok, "domain");
	sys = cJSON_GetObjectItemCaseSensitive(tok, "system");
	if (project != NULL &&
	    keystone_token_ids(project, &c->project_id,
		&c->project_domain_id) != 0)
		return (-1);
	if (domain != NULL &&
	    keystone_token_ids(domain, &c->domain_id, NULL) != 0)
		return (-1);
	if (sys != NULL &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sys, "all")))
		c->system = 1;
	return (0);
}

/*
 * Parse Keystone's token object (the "token" member of a validation
 * answer) into c, with the token's expiry.  0, or -1 with *cause.
 */
int
keystone_token_parse(const cJSON *tok, struct caller *c, double *expires,
    char **cause)
{
	const char *why = NULL;

	memset(c, 0, sizeof *c);
	c->kind = CALLER_KEYSTONE;
	if (!cJSON_IsObject(tok))
		why = "no token object";
	else if ((*expires = keystone_parse_time(
		      keystone_token_str(tok, "expires_at"))) < 0)
		why = "no valid expires_at";
	else if (keystone_token_ids(cJSON_GetObjectItemCaseSensitive(tok,
					"user"),
		     &c->user_id, &c->user_domain_id) != 0)
		why = "no user id";
	else if (keystone_token_scope(tok, c) != 0)
		why = "malformed scope";
	else if (keystone_token_roles(cJSON_GetObjectItemCaseSensitive(tok,
					  "roles"),
		     c) != 0)
		why = "malformed roles";
	if (why == NULL)
		return (0);
	caller_clear(c);
	if (cause != NULL)
		*cause = xstrdup(why);
	return (-1);
}

/* What the cache keeps of a token object: what the caller is made of. */
cJSON *
keystone_token_slim(const cJSON *tok)
{
	static const char *const keep[] = { "expires_at", "issued_at",
		"audit_ids", "user", "project", "domain", "system", "roles",
		NULL };
	const cJSON *v;
	cJSON *out;
	size_t i;

	out = cJSON_CreateObject();
	for (i = 0; keep[i] != NULL; i++) {
		if ((v = cJSON_GetObjectItemCaseSensitive(tok, keep[i])) !=
		    NULL)
			cJSON_AddItemToObject(out, keep[i],
			    cJSON_Duplicate(v, 1));
	}
	return (out);
}

/* How long a valid token may be cached: min(expiry, now + ttl). */
double
keystone_token_cache_until(double now, double expires, long ttl)
{
	return (fmin(expires, now + (double)ttl));
}

/* 503: Keystone could not say whether the token is valid. */
static void
keystone_token_503(struct request *r, const char *retry_after)
{
	http_set_header(r, "Retry-After",
	    retry_after != NULL ? retry_after : "5");
	http_reply_reason(r, REASON_keystone_unavailable,
	    "Keystone cannot validate the X-Auth-Token now; retry later");
}

/* The restriction's role names as the caller's roles. */
static void
keystone_token_restriction_roles(const struct restriction *rs, struct caller *c)
{
	size_t i;

	for (i = 0; i < rs->nroles; i++) {
		if (rs->roles[i].name == NULL)
			continue;
		c->roles.v = xreallocarray(c->roles.v, c->roles.n + 1,
		    sizeof *c->roles.v);
		c->roles.v[c->roles.n++] = xstrdup(rs->roles[i].name);
	}
}

/*
 * A restricted token of this server: 0 with r->caller set, -1 when it is
 * ours but expired or its restriction is gone, 1 when it is not ours.
 */
static int
keystone_token_local(struct request *r, const char *token)
{
	struct fernet_payload p;
	const struct restriction *rs;
	char *cause = NULL;
	int rc = -1;

	memset(&p, 0, sizeof p);
	if (token_read(token, &p, &cause) != 0 || p.version != 11) {
		free(cause);
		fernet_payload_clear(&p);
		return (1);
	}
	if (p.expires_at > util_now() && p.restriction_id != NULL &&
	    (rs = snapshot_restriction(r->snap, p.restriction_id)) != NULL) {
		r->caller.kind = CALLER_RESTRICTED;
		r->caller.user_id = xstrdup(p.user_id);
		r->caller.user_domain_id = xstrdup(rs->domain_id);
		if (p.project_id != NULL) {
			r->caller.project_id = xstrdup(p.project_id);
			r->caller.project_domain_id = xstrdup(rs->domain_id);
		}
		keystone_token_restriction_roles(rs, &r->caller);
		rc = 0;
	}
	fernet_payload_clear(&p);
	return (rc);
}

/*
 * Free an asynchronous validation and drop its request reference.  The
 * request's data/cancel/gone were cleared before `next` ran (which may
 * have set its own).
 */
static void
keystone_auth_done(struct keystone_auth *ka)
{
	struct request *r = ka->r;

	free(ka);
	http_unref(r);
}

/* Detach a validation from its request (before replying or `next`). */
static void
keystone_auth_detach(struct request *r)
{
	r->data = NULL;
	r->cancel = NULL;
	r->gone = NULL;
}

/* A 200 from Keystone: cache the token, set the caller; 0 or -1. */
static int
keystone_auth_valid(struct keystone_auth *ka, const cJSON *doc)
{
	const cJSON *tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
	double expires, now = util_now();
	char *cause = NULL;

	if (keystone_token_parse(tok, &ka->r->caller, &expires, &cause) != 0) {
		log_warn("keystone: unusable token document: %s", cause);
		free(cause);
		return (-1);
	}
	keystone_cache_put(keystone_token_cache, ka->key,
	    keystone_token_slim(tok),
	    keystone_token_cache_until(now, expires, keystone_cache_ttl), now);
	keystone_revoke_ensure(ka->r->worker);
	return (0);
}

/* Keystone answered the validation (or could not). */
static void
keystone_auth_cb(const struct keystone_result *res, void *arg)
{
	struct keystone_auth *ka = arg;
	struct request *r = ka->r;
	http_handler next = ka->next;
	double now = util_now();

	ka->op = NULL;
	keystone_auth_detach(r);
	if (res->refused != NULL)
		http_reply_reason(r, REASON_keystone_forbidden,
		    "Keystone cannot validate the X-Auth-Token for this service: %s",
		    res->refused);
	else if (res->unavailable ||
	    (res->status == 200 && keystone_auth_valid(ka, res->doc) != 0))
		keystone_token_503(r, res->retry_after);
	else if (res->status == 200) {
		log_debug("keystone: validated X-Auth-Token of user %s",
		    r->caller.user_id);
		next(r);
	} else {
		keystone_cache_put(keystone_token_cache, ka->key, NULL,
		    now + KEYSTONE_NEGATIVE_TTL, now);
		log_info("%s: Keystone rejected X-Auth-Token sha256:%.8s (%ld)",
		    r->client_ip, ka->key, res->status);
		auth_reply_401(r, REASON_invalid_token,
		    "the X-Auth-Token is not valid");
	}
	keystone_auth_done(ka);
}

/* The request deadline passed: stop waiting (http.c answers 503). */
static void
keystone_auth_cancel(struct request *r)
{
	struct keystone_auth *ka = r->data;

	keystone_cancel(ka->op);
	keystone_auth_detach(r);
	keystone_auth_done(ka);
}

/* The client went away while Keystone was asked. */
static void
keystone_auth_gone(struct request *r)
{
	struct keystone_auth *ka = r->data;

	keystone_cancel(ka->op);
	keystone_auth_detach(r);
	http_reply_reason(r, REASON_client_gone, "the client disconnected");
	keystone_auth_done(ka);
}

/* A cached answer: 0 (caller set), -1 (replied), 1 (not cached). */
static int
keystone_token_cached(struct request *r, const char *key)
{
	cJSON *tok;
	double expires;
	int rc;

	if (!keystone_cache_get(keystone_token_cache, key, util_now(), &tok))
		return (1);
	if (tok == NULL) {
		auth_reply_401(r, REASON_invalid_token,
		    "the X-Auth-Token is not valid");
		return (-1);
	}
	rc = keystone_token_parse(tok, &r->caller, &expires, NULL);
	cJSON_Delete(tok);
	return (rc == 0 ? 0 : 1);
}

/* Ask Keystone about token; 1 (parked) or -1 (replied 503). */
static int
keystone_token_ask(struct request *r, const char *token, const char *key,
    http_handler next)
{
	struct keystone_auth *ka;
	char *cause = NULL;

	ka = xcalloc(1, sizeof *ka);
	ka->r = r;
	ka->next = next;
	memcpy(ka->key, key, sizeof ka->key);
	ka->op = keystone_get(r->worker, "/v3/auth/tokens?nocatalog", token,
	    keystone_auth_cb, ka, &cause);
	if (ka->op == NULL) {
		log_warn("keystone: cannot validate a token: %s", cause);
		free(cause);
		free(ka);
		keystone_token_503(r, "1");
		return (-1);
	}
	http_ref(r); /* dropped by keystone_auth_done */
	r->data = ka;
	r->cancel = keystone_auth_cancel;
	r->gone = keystone_auth_gone;
	http_park(r);
	return (1);
}

/*
 * Identify a caller whose X-Auth-Token is not the bootstrap token, as
 * auth_caller() does: 0 (r->caller set), -1 (replied), 1 (parked; next
 * runs once Keystone has answered, or an error has been replied).
 */
int
keystone_token_caller(struct request *r, const char *token, http_handler next)
{
	char key[65];
	int rc;

	if (strlen(token) > KEYSTONE_TOKEN_MAX ||
	    strpbrk(token, "\r\n") != NULL) {
		auth_reply_401(r, REASON_invalid_token,
		    "the X-Auth-Token is not valid");
		return (-1);
	}
	if ((rc = keystone_token_local(r, token)) <= 0) {
		if (rc < 0)
			auth_reply_401(r, REASON_invalid_token,
			    "the token has expired or its restriction is gone");
		return (rc);
	}
	util_sha256_hex(token, strlen(token), key);
	if ((rc = keystone_token_cached(r, key)) <= 0)
		return (rc);
	return (keystone_token_ask(r, token, key, next));
}
