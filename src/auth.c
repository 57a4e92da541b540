/*
 * auth.c: who is calling, and may they do it.
 *
 * auth_caller() turns X-Auth-Token into a struct caller: the bootstrap
 * admin token (compared in constant time), or, when [keystone] url is
 * set, a Keystone token or a restricted token of this server
 * (keystone_token.c, possibly asynchronous); anything else is 401 with
 * Keystone's WWW-Authenticate header.  auth_authorize() is the single
 * authorization gate every admin handler passes through with (action,
 * caller, target): it asks the Lua API policy (policy.c).
 *
 * Runs on worker threads (auth_caller, auth_authorize) and on the main
 * thread (auth_bootstrap, auth_load_admin_token).  Never logs a token.
 */
#include <sys/stat.h>

#include <errno.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

#define AUTH_TOKEN_MAX 1024

/* 401 with the header Keystone clients look for. */
void
auth_reply_401(struct request *r, enum reason reason, const char *msg)
{
	char *base, *hdr;

	base = http_public_url(r);
	xasprintf(&hdr, "Keystone uri=\"%s\"", base);
	http_set_header(r, "WWW-Authenticate", hdr);
	free(hdr);
	free(base);
	http_reply_reason(r, reason, "%s", msg);
}

/*
 * Identify the caller from X-Auth-Token.  Returns 0 with r->caller set
 * (the caller goes on), -1 after replying 401, or 1 when the answer needs
 * an asynchronous lookup: the request is then parked and, once the caller
 * is known, `next` runs (or an error has been replied).
 */
int
auth_caller(struct request *r, http_handler next)
{
	const char *token = http_header(r, "X-Auth-Token");
	const char *admin = r->cfg->admin_token;
	char id[9];

	if (token == NULL || *token == '\0') {
		auth_reply_401(r, REASON_missing_token,
		    "the request requires an X-Auth-Token header");
		return (-1);
	}
	if (admin != NULL &&
	    util_ct_equal(token, strlen(token), admin, strlen(admin))) {
		r->caller.kind = CALLER_BOOTSTRAP;
		r->caller.is_admin = 1;
		return (0);
	}
	if (keystone_enabled())
		return (keystone_token_caller(r, token, next));
	log_secret_id(token, id);
	log_info("%s: rejected X-Auth-Token sha256:%s", r->client_ip, id);
	auth_reply_401(r, REASON_invalid_token,
	    "the X-Auth-Token is not valid");
	return (-1);
}

/*
 * The authorization decision for (action, caller, target): the API policy
 * (policy/api.lua) decides.  Returns 0 to allow, -1 to deny with *reason
 * set; a policy that fails (error, budget) denies.
 */
int
auth_authorize(struct request *r, const char *action, const cJSON *target,
    char **reason)
{
	int rc;

	rc = policy_authorize(r->worker->policy, action, &r->caller, target,
	    reason);
	if (rc == POLICY_ALLOW)
		return (0);
	if (rc == POLICY_ERROR)
		metrics_policy_error();
	if (*reason == NULL)
		xasprintf(reason, "no policy allows %s", action);
	return (-1);
}

/*
 * The reason code a policy's denial selects: a reason starting with
 * "role_not_delegable: " or "instance_protected: " (API.md §7) is sent
 * with that code, its text after the prefix as the message; any other
 * reason is only logged (403 forbidden).  REASON_NONE: plain forbidden.
 */
static enum reason
auth_deny_code(const char *reason, const char **msg)
{
	static const enum reason codes[] = { REASON_role_not_delegable,
		REASON_instance_protected };
	const char *name;
	size_t i, n;

	for (i = 0; i < sizeof codes / sizeof *codes; i++) {
		name = reason_name(codes[i]);
		n = strlen(name);
		if (strncmp(reason, name, n) == 0 && reason[n] == ':' &&
		    reason[n + 1] == ' ') {
			*msg = reason + n + 2;
			return (codes[i]);
		}
	}
	return (REASON_NONE);
}

/*
 * Authorize or reply 403; returns 0 when allowed.  When Keystone's role
 * facts were missing (r->facts_error), only a denial is an answer: an
 * allow replies that error instead (502/503), so nothing is written;
 * the bootstrap token alone is decided on literal role names.
 */
int
auth_require(struct request *r, const char *action, const cJSON *target)
{
	const char *msg = NULL;
	char *reason = NULL, *esc;
	enum reason code;

	if (auth_authorize(r, action, target, &reason) == 0) {
		/*
		 * Allowed on literal names only: no decision without the facts,
		 * but for the bootstrap token, the break-glass credential that
		 * must work while Keystone does not.
		 */
		if (r->facts_error == REASON_NONE ||
		    r->caller.kind == CALLER_BOOTSTRAP)
			return (0);
		if (r->facts_retry_after != NULL)
			http_set_header(r, "Retry-After", r->facts_retry_after);
		http_reply_reason(r, r->facts_error, "%s", r->facts_message);
		return (-1);
	}
	/* A policy's reason may quote what the client sent. */
	esc = log_escape(reason, 1024);
	log_info("%s: %s denied: %s", r->client_ip, action, esc);
	free(esc);
	audit_admin(r, action, NULL, "denied");
	if ((code = auth_deny_code(reason, &msg)) != REASON_NONE)
		http_reply_reason(r, code, "%s", msg);
	else
		http_reply_reason(r, REASON_forbidden,
		    "you are not authorized to perform %s", action);
	free(reason);
	return (-1);
}

/* Write a fresh random admin token file (mode 0600). */
int
auth_bootstrap(const char *path, int force, char **cause)
{
	unsigned char raw[32];
	struct stat st;
	char *token, *dir, *copy;
	int rc;

	if (!force && stat(path, &st) == 0) {
		xasprintf(cause,
		    "%s already exists (use --force to replace it)", path);
		return (-1);
	}
	copy = xstrdup(path);
	dir = dirname(copy);
	if (util_mkdir_p(dir, 0750) != 0) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		free(copy);
		return (-1);
	}
	free(copy);
	util_random_bytes(raw, sizeof raw);
	token = util_b64url_encode(raw, sizeof raw);
	explicit_bzero(raw, sizeof raw);
	rc = util_write_file_atomic(path, token, strlen(token), 0600, cause);
	freezero_str(token);
	return (rc);
}

/*
 * Read a token file (what: "admin" or "metrics"; hint: how to create it);
 * NULL with *cause when unusable.
 */
static char *
auth_load_token_file(const char *path, const char *what, const char *hint,
    char **cause)
{
	struct stat st;
	char *buf = NULL, *t, *token;

	if (util_read_file(path, AUTH_TOKEN_MAX, &buf, NULL, cause) != 0) {
		char *c = *cause;

		xasprintf(cause, "%s (%s)", c, hint);
		free(c);
		return (NULL);
	}
	t = util_trim(buf);
	if (strlen(t) < 16) {
		xasprintf(cause,
		    "%s: the %s token is shorter than 16 characters", path,
		    what);
		freezero_str(buf);
		return (NULL);
	}
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("%s is readable by group or others (mode %04o); it should be 0600",
		    path, (unsigned)(st.st_mode & 07777));
	token = xstrdup(t);
	freezero_str(buf);
	return (token);
}

/* Read the admin token file; NULL with *cause when unusable. */
char *
auth_load_admin_token(const char *path, char **cause)
{
	char *hint, *token;

	if (path == NULL) {
		xasprintf(cause, "[bootstrap] admin_token_file is not set");
		return (NULL);
	}
	xasprintf(&hint, "create it with `%s bootstrap`", K8SAUTH_NAME);
	token = auth_load_token_file(path, "admin", hint, cause);
	free(hint);
	return (token);
}

/*
 * Read [metrics] token_file: NULL with *cause NULL when none is set (then
 * /metrics answers loopback clients only), NULL with *cause when unusable.
 */
char *
auth_load_metrics_token(const char *path, char **cause)
{
	*cause = NULL;
	if (path == NULL)
		return (NULL);
	return (auth_load_token_file(path, "metrics",
	    "write 16 random characters or more into it, mode 0600", cause));
}
