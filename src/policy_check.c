/*
 * policy_check.c: the policy-check subcommand.
 *
 *   policy-check --config FILE --action NAME --credentials FILE
 *       [--target FILE]
 *   policy-check --config FILE --login CTXFILE
 *
 * Builds the same engine a worker builds (policy_new) from the loaded
 * configuration, evaluates one decision from JSON files, prints "allow"
 * (and, for a login that narrows the token, an "overrides: {...}" line)
 * or "deny: <reason>", and returns the exit status: 0 allow, 1 deny,
 * 2 error.  main.c has already loaded the configuration; --config is
 * accepted and skipped here.  Main thread only; reads files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define POLICY_CHECK_MAX_FILE (1024 * 1024)

struct policy_check_args {
	const char *action;
	const char *credentials;
	const char *target;
	const char *login;
};

/* Read and parse a JSON file.  NULL with *cause. */
static cJSON *
policy_check_json(const char *path, char **cause)
{
	cJSON *j;
	char *buf;
	size_t len;

	if (util_read_file(path, POLICY_CHECK_MAX_FILE, &buf, &len, cause) != 0)
		return (NULL);
	j = cJSON_ParseWithLength(buf, len);
	free(buf);
	if (j == NULL)
		xasprintf(cause, "%s: not valid JSON", path);
	return (j);
}

/* Copy an optional string field into *out; -1 on a wrong type. */
static int
policy_check_string(const cJSON *j, char **out)
{
	if (cJSON_IsNull(j))
		return (0);
	if (!cJSON_IsString(j))
		return (-1);
	*out = xstrdup(j->valuestring);
	return (0);
}

/* Fill c->roles from a JSON array of strings; -1 on a wrong type. */
static int
policy_check_roles(const cJSON *j, struct caller *c)
{
	const cJSON *r;

	if (!cJSON_IsArray(j))
		return (-1);
	cJSON_ArrayForEach(r, j)
	{
		if (!cJSON_IsString(r))
			return (-1);
		c->roles.v = xreallocarray(c->roles.v, c->roles.n + 1,
		    sizeof *c->roles.v);
		c->roles.v[c->roles.n++] = xstrdup(r->valuestring);
	}
	return (0);
}

/* Set the caller kind from its name; -1 when unknown. */
static int
policy_check_kind(const cJSON *j, struct caller *c)
{
	static const char *const kinds[] = { "none", "bootstrap", "keystone",
		"restricted" };
	size_t i;

	if (!cJSON_IsString(j))
		return (-1);
	for (i = 0; i < sizeof kinds / sizeof *kinds; i++) {
		if (strcmp(j->valuestring, kinds[i]) == 0) {
			c->kind = (enum caller_kind)i;
			return (0);
		}
	}
	return (-1);
}

/* One field of a credentials file into c; -1 when unknown or mistyped. */
static int
policy_check_field(const cJSON *f, struct caller *c)
{
	const char *k = f->string;

	if (strcmp(k, "kind") == 0)
		return (policy_check_kind(f, c));
	if (strcmp(k, "is_admin") == 0 || strcmp(k, "system") == 0) {
		if (!cJSON_IsBool(f))
			return (-1);
		*(k[0] == 'i' ? &c->is_admin : &c->system) = cJSON_IsTrue(f);
		return (0);
	}
	if (strcmp(k, "user_id") == 0)
		return (policy_check_string(f, &c->user_id));
	if (strcmp(k, "user_domain_id") == 0)
		return (policy_check_string(f, &c->user_domain_id));
	if (strcmp(k, "project_id") == 0)
		return (policy_check_string(f, &c->project_id));
	if (strcmp(k, "project_domain_id") == 0)
		return (policy_check_string(f, &c->project_domain_id));
	if (strcmp(k, "domain_id") == 0)
		return (policy_check_string(f, &c->domain_id));
	if (strcmp(k, "roles") == 0)
		return (policy_check_roles(f, c));
	return (-1);
}

/* A credentials file (cred as policies see it) into a caller. */
static int
policy_check_caller(const char *path, struct caller *c, char **cause)
{
	cJSON *j;
	const cJSON *f;

	memset(c, 0, sizeof *c);
	c->kind = CALLER_KEYSTONE;
	if ((j = policy_check_json(path, cause)) == NULL)
		return (-1);
	if (!cJSON_IsObject(j)) {
		xasprintf(cause, "%s: credentials must be a JSON object", path);
		cJSON_Delete(j);
		return (-1);
	}
	cJSON_ArrayForEach(f, j)
	{
		if (policy_check_field(f, c) != 0) {
			xasprintf(cause, "%s: unknown or mistyped field \"%s\"",
			    path, f->string);
			cJSON_Delete(j);
			caller_clear(c);
			return (-1);
		}
	}
	cJSON_Delete(j);
	return (0);
}

/* Parse argv (argv[0] is the subcommand).  -1 with *cause on misuse. */
static int
policy_check_args(int argc, char **argv, struct policy_check_args *a,
    char **cause)
{
	const char **slot;
	int i;

	memset(a, 0, sizeof *a);
	for (i = 1; i < argc; i++) {
		slot = NULL;
		if (strcmp(argv[i], "--action") == 0)
			slot = &a->action;
		else if (strcmp(argv[i], "--credentials") == 0)
			slot = &a->credentials;
		else if (strcmp(argv[i], "--target") == 0)
			slot = &a->target;
		else if (strcmp(argv[i], "--login") == 0)
			slot = &a->login;
		else if (strcmp(argv[i], "--config") != 0 &&
		    strcmp(argv[i], "-c") != 0) {
			xasprintf(cause, "unknown argument \"%s\"", argv[i]);
			return (-1);
		}
		if (i + 1 >= argc) {
			xasprintf(cause, "%s needs a value", argv[i]);
			return (-1);
		}
		if (slot != NULL)
			*slot = argv[i + 1];
		i++;
	}
	if ((a->login != NULL) == (a->action != NULL) ||
	    (a->action != NULL && a->credentials == NULL)) {
		xasprintf(cause,
		    "usage: policy-check --config FILE --action NAME --credentials FILE [--target FILE] | --login FILE");
		return (-1);
	}
	return (0);
}

/* Evaluate an admin action; returns the exit status. */
static int
policy_check_action(struct policy *p, const struct policy_check_args *a,
    char **cause)
{
	struct caller c;
	cJSON *target = NULL;
	char *reason = NULL;
	int rc;

	if (policy_check_caller(a->credentials, &c, cause) != 0)
		return (2);
	if (a->target != NULL &&
	    (target = policy_check_json(a->target, cause)) == NULL) {
		caller_clear(&c);
		return (2);
	}
	rc = policy_authorize(p, a->action, &c, target, &reason);
	if (rc == POLICY_ALLOW)
		printf("allow\n");
	else if (rc == POLICY_DENY)
		printf("deny: %s\n", reason);
	else {
		*cause = reason;
		reason = NULL;
	}
	free(reason);
	cJSON_Delete(target);
	caller_clear(&c);
	return (rc == POLICY_ALLOW ? 0 : rc == POLICY_DENY ? 1 : 2);
}

/* Print a login's overrides as one JSON line. */
static void
policy_check_overrides(const struct policy_login_result *r)
{
	cJSON *o;
	char *s;

	if (r->expires_in == 0 && r->restriction_id == NULL && r->audit == NULL)
		return;
	o = cJSON_CreateObject();
	if (r->expires_in != 0)
		cJSON_AddNumberToObject(o, "expires_in", (double)r->expires_in);
	if (r->restriction_id != NULL)
		cJSON_AddStringToObject(o, "restriction_id", r->restriction_id);
	if (r->audit != NULL)
		cJSON_AddItemReferenceToObject(o, "audit", r->audit);
	s = cJSON_PrintUnformatted(o);
	printf("overrides: %s\n", s);
	free(s);
	cJSON_Delete(o);
}

/*
 * A policy that declares needs sees ctx.namespace and
 * ctx.service_account.annotations at a real login (when the instance
 * exposes annotations); say so when the input lacks them.
 */
static void
policy_check_needs(const struct policy *p, const cJSON *ctx)
{
	int needs = policy_login_needs(p);
	const cJSON *sa;

	sa = cJSON_GetObjectItemCaseSensitive(ctx, "service_account");
	if ((needs & POLICY_NEED_NAMESPACE) &&
	    !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ctx, "namespace")))
		fprintf(stderr,
		    "note: login.lua needs \"namespace\" but the input has no ctx.namespace = {name = ..., labels = {...}}\n");
	if ((needs & POLICY_NEED_SERVICE_ACCOUNT) &&
	    !cJSON_IsObject(
		cJSON_GetObjectItemCaseSensitive(sa, "annotations")))
		fprintf(stderr,
		    "note: login.lua needs \"service_account\" but the input has no ctx.service_account.annotations (a login has them only on instances with service_account_annotations)\n");
}

/* Evaluate the login hook; returns the exit status. */
static int
policy_check_login(struct policy *p, const struct policy_check_args *a,
    char **cause)
{
	struct policy_login_result r;
	cJSON *ctx;
	char *reason = NULL;
	int rc;

	if ((ctx = policy_check_json(a->login, cause)) == NULL)
		return (2);
	policy_check_needs(p, ctx);
	rc = policy_login(p, ctx, &r, &reason);
	if (rc == POLICY_ALLOW) {
		printf("allow\n");
		policy_check_overrides(&r);
	} else if (rc == POLICY_DENY)
		printf("deny: %s\n", reason);
	else {
		*cause = reason;
		reason = NULL;
	}
	free(reason);
	policy_login_result_clear(&r);
	cJSON_Delete(ctx);
	return (rc == POLICY_ALLOW ? 0 : rc == POLICY_DENY ? 1 : 2);
}

/*
 * The subcommand: argv[0] is "policy-check", options follow.  Returns the
 * exit status (0 allow, 1 deny, 2 error; errors on stderr).
 */
int
policy_check_main(const struct config *cfg, int argc, char **argv)
{
	struct policy_check_args a;
	struct policy *p = NULL;
	char *cause = NULL;
	int rc = 2;

	if (policy_check_args(argc, argv, &a, &cause) != 0)
		goto out;
	if ((p = policy_new(cfg, &cause)) == NULL)
		goto out;
	if (a.login != NULL)
		rc = policy_check_login(p, &a, &cause);
	else
		rc = policy_check_action(p, &a, &cause);
out:
	if (cause != NULL)
		fprintf(stderr, "%s: policy-check: error: %s\n", K8SAUTH_NAME,
		    cause);
	free(cause);
	policy_free(p);
	fflush(stdout);
	return (rc);
}
