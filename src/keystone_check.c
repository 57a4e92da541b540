/*
 * keystone_check.c: token restrictions checked against Keystone.
 *
 * keystone_check_restriction() verifies, one GET after another with the
 * service token, that a restriction's user exists, is enabled and belongs
 * to the restriction's domain (GET /v3/users/{id}), that its project does
 * too (GET /v3/projects/{id}), and that every role id exists and is a
 * global role or one of that domain (GET /v3/roles/{id}); role names are
 * replaced by Keystone's, so a client cannot label the admin role
 * "member".  A failure is 400 invalid_restriction naming what is wrong;
 * Keystone unavailable is 503 keystone_unavailable.  With `assignments`
 * (the project_scoped payload, whose roles Keystone computes from its
 * role assignments) a last GET /v3/role_assignments?user.id=U&
 * scope.project.id=P&effective checks that the user really holds every
 * listed role on the project (directly, through a group, inherited or
 * implied): 400 role_not_assigned naming the first missing role; and
 * the reverse, since such a token carries every role the user holds there:
 * a role the user holds on the project (other than one implied by another)
 * that the restriction does not list is 400 role_not_listed.  The listed
 * roles then say everything the token carries, so the delegable-role and
 * protected-instance rules, which judge the listed roles, judge the token.
 *
 * keystone_check_user() is the login's check that the restriction's user
 * is still enabled (Keystone's own validator does not look at `enabled`):
 * 401 user_disabled for a disabled or deleted user.  Its lookups are
 * cached 30 s; restriction checks always ask and do not fill that cache
 * (a user disabled right after the write must not log in on our word).
 *
 * Runs on worker threads; every lookup is asynchronous (keystone.c).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define KEYSTONE_USER_TTL 30.0

enum keystone_step {
	KS_STEP_USER,
	KS_STEP_PROJECT,
	KS_STEP_ROLES /* then one step per role, then the assignments */
};

struct keystone_check {
	struct worker *w;
	struct restriction *rs; /* NULL: login user check */
	char *user_id;          /* login user check */
	size_t step;
	int assignments; /* check the role assignments last */
	struct keystone_op *op;
	keystone_check_cb cb;
	void *arg;
	struct keystone_outcome o;
};

/* Free what an outcome holds. */
void
keystone_outcome_clear(struct keystone_outcome *o)
{
	free(o->message);
	free(o->retry_after);
	free(o->user_domain_id);
	free(o->project_domain_id);
	memset(o, 0, sizeof *o);
}

static void keystone_check_fail(struct keystone_outcome *, enum reason,
    const char *, ...) printflike(3, 4);
/* Set an error outcome. */
static void
keystone_check_fail(struct keystone_outcome *o, enum reason reason,
    const char *fmt, ...)
{
	va_list ap;

	o->reason = reason;
	free(o->message);
	va_start(ap, fmt);
	xvasprintf(&o->message, fmt, ap);
	va_end(ap);
}

static void keystone_check_invalid(struct keystone_check *, const char *, ...)
    printflike(2, 3);
/* The restriction is wrong in Keystone's eyes: 400 invalid_restriction. */
static void
keystone_check_invalid(struct keystone_check *kc, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	keystone_check_fail(&kc->o, REASON_invalid_restriction, "%s", msg);
	free(msg);
}

/* Keystone could not answer: 503 with its Retry-After, if any. */
static void
keystone_check_unavailable(struct keystone_outcome *o, const char *retry_after)
{
	keystone_check_fail(o, REASON_keystone_unavailable,
	    "Keystone cannot be asked now; retry later");
	free(o->retry_after);
	o->retry_after = xstrdup(retry_after != NULL ? retry_after : "5");
}

/*
 * An id as one URL path segment: everything but letters, digits, '-' and
 * '_' percent-encoded (so "..", "/", "?" and "#" cannot steer the GET).
 */
char *
keystone_path_escape(const char *id)
{
	static const char hex[] = "0123456789ABCDEF";
	char *out, *p;

	p = out = xmalloc(strlen(id) * 3 + 1);
	for (; *id != '\0'; id++) {
		unsigned char ch = (unsigned char)*id;

		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '-' || ch == '_')
			*p++ = (char)ch;
		else {
			*p++ = '%';
			*p++ = hex[ch >> 4];
			*p++ = hex[ch & 0xf];
		}
	}
	*p = '\0';
	return (out);
}

/* Remember a user lookup (doc NULL: no such user) for the login check. */
static void
keystone_check_cache_user(const char *id, const cJSON *user)
{
	cJSON *v = NULL;
	char *key;
	double now = util_now();

	if (keystone_user_cache == NULL)
		return;
	if (user != NULL) {
		v = cJSON_CreateObject();
		json_add_string_or_null(v, "domain_id",
		    cJSON_GetStringValue(
			cJSON_GetObjectItemCaseSensitive(user, "domain_id")));
		cJSON_AddBoolToObject(v, "enabled",
		    cJSON_IsTrue(
			cJSON_GetObjectItemCaseSensitive(user, "enabled")));
	}
	xasprintf(&key, "user:%s", id);
	keystone_cache_put(keystone_user_cache, key, v, now + KEYSTONE_USER_TTL,
	    now);
	free(key);
}

/* The domain_id member of o, or "" (never NULL). */
static const char *
keystone_check_domain(const cJSON *o)
{
	const char *d;

	d = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(o, "domain_id"));
	return (d != NULL ? d : "");
}

/*
 * Judge a user or project object against the restriction's domain: 0 or
 * -1 with the outcome set.  what is "user" or "project".
 */
static int
keystone_check_member(struct keystone_check *kc, const char *what,
    const char *id, const cJSON *obj)
{
	const struct restriction *rs = kc->rs;

	if (strcmp(keystone_check_domain(obj), rs->domain_id) != 0) {
		keystone_check_invalid(kc,
		    "%s_id %s does not belong to domain %s", what, id,
		    rs->domain_id);
		return (-1);
	}
	if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "enabled"))) {
		keystone_check_invalid(kc, "%s %s is disabled", what, id);
		return (-1);
	}
	if (strcmp(what, "project") == 0 &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(obj, "is_domain"))) {
		keystone_check_invalid(kc,
		    "project_id %s is a domain, not a project", id);
		return (-1);
	}
	if (strcmp(what, "user") == 0)
		kc->o.user_domain_id = xstrdup(rs->domain_id);
	else
		kc->o.project_domain_id = xstrdup(rs->domain_id);
	return (0);
}

/*
 * Judge a role object: global or of the domain; take its name and its id
 * as Keystone spells it (a Keystone on MySQL finds "ABC" for "abc", and
 * the role facts follow Keystone's ids).
 */
static int
keystone_check_role(struct keystone_check *kc, struct restriction_role *rr,
    const cJSON *role)
{
	const char *d, *name, *id;

	d = keystone_check_domain(role);
	name = cJSON_GetStringValue(
	    cJSON_GetObjectItemCaseSensitive(role, "name"));
	id = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(role, "id"));
	if (*d != '\0' && strcmp(d, kc->rs->domain_id) != 0) {
		keystone_check_invalid(kc,
		    "role %s is a role of another domain", rr->id);
		return (-1);
	}
	if (name == NULL) {
		keystone_check_unavailable(&kc->o, NULL);
		return (-1);
	}
	free(rr->name);
	rr->name = xstrdup(name);
	if (id != NULL && *id != '\0' && strlen(id) <= 64) {
		free(rr->id);
		rr->id = xstrdup(id);
	}
	return (0);
}

/* What the current step looks up: "users", "projects" or "roles". */
static const char *
keystone_check_kind(const struct keystone_check *kc, const char **id)
{
	if (kc->step == KS_STEP_USER) {
		*id = kc->rs != NULL ? kc->rs->user_id : kc->user_id;
		return ("user");
	}
	if (kc->step == KS_STEP_PROJECT) {
		*id = kc->rs->project_id;
		return ("project");
	}
	if (kc->step == KS_STEP_ROLES + kc->rs->nroles) {
		*id = kc->rs->user_id;
		return ("role_assignment");
	}
	*id = kc->rs->roles[kc->step - KS_STEP_ROLES].id;
	return ("role");
}

/* Does a role_assignments list hold role_id? */
static int
keystone_check_assigned(const cJSON *list, const char *role_id)
{
	const cJSON *a, *role;
	const char *id;

	cJSON_ArrayForEach(a, list)
	{
		role = cJSON_GetObjectItemCaseSensitive(a, "role");
		id = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(role, "id"));
		if (id != NULL && strcmp(id, role_id) == 0)
			return (1);
	}
	return (0);
}

/* Is an effective assignment one of an implied role (links.prior_role)? */
static int
keystone_check_implied(const cJSON *a)
{
	const cJSON *links;

	links = cJSON_GetObjectItemCaseSensitive(a, "links");
	return (cJSON_GetObjectItemCaseSensitive(links, "prior_role") != NULL);
}

/* Does the restriction list the role id? */
static int
keystone_check_listed(const struct restriction *rs, const char *id)
{
	size_t i;

	for (i = 0; i < rs->nroles; i++) {
		if (rs->roles[i].id != NULL &&
		    strcasecmp(rs->roles[i].id, id) == 0)
			return (1);
	}
	return (0);
}

/*
 * A role the user holds on the project (not through an implication) that
 * the restriction does not list: a project-scoped token would carry it
 * unseen by every rule that judges the listed roles.  0, or -1 with the
 * outcome set (400 role_not_listed).
 */
static int
keystone_check_unlisted(struct keystone_check *kc, const cJSON *list)
{
	const struct restriction *rs = kc->rs;
	const cJSON *a, *role;
	const char *id, *name;

	cJSON_ArrayForEach(a, list)
	{
		role = cJSON_GetObjectItemCaseSensitive(a, "role");
		id = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(role, "id"));
		if (id == NULL || keystone_check_implied(a) ||
		    keystone_check_listed(rs, id))
			continue;
		name = cJSON_GetStringValue(
		    cJSON_GetObjectItemCaseSensitive(role, "name"));
		keystone_check_fail(&kc->o, REASON_role_not_listed,
		    "user %s also holds role %s on project %s, and a project-scoped token carries every role its user holds there: list it in the restriction (an admin's decision if it is not delegable) or use a user holding only the roles to grant",
		    rs->user_id, name != NULL ? name : id, rs->project_id);
		return (-1);
	}
	return (0);
}

/*
 * Judge the effective role assignments of the restriction's user on its
 * project: every listed role must be among them.  A list Keystone cut
 * short ([DEFAULT] list_limit, "truncated") cannot prove a role missing:
 * 500 (Keystone's configuration, not the request, is at fault).
 */
static int
keystone_check_assignments(struct keystone_check *kc,
    const struct keystone_result *res)
{
	const struct restriction *rs = kc->rs;
	const cJSON *list;
	size_t i;

	list = cJSON_GetObjectItemCaseSensitive(res->doc, "role_assignments");
	if (res->status != 200 || !cJSON_IsArray(list)) {
		log_err("keystone: GET role_assignments answered %ld",
		    res->status);
		keystone_check_unavailable(&kc->o, res->retry_after);
		return (-1);
	}
	for (i = 0; i < rs->nroles; i++) {
		if (keystone_check_assigned(list, rs->roles[i].id))
			continue;
		if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(res->doc,
			"truncated"))) {
			log_err(
			    "keystone: role assignments truncated (list_limit)");
			keystone_check_fail(&kc->o, REASON_internal_error,
			    "Keystone truncated the role assignment list");
			return (-1);
		}
		keystone_check_fail(&kc->o, REASON_role_not_assigned,
		    "role %s is not assigned to user %s on project %s",
		    rs->roles[i].name != NULL ? rs->roles[i].name
					      : rs->roles[i].id,
		    rs->user_id, rs->project_id);
		return (-1);
	}
	return (keystone_check_unlisted(kc, list));
}

/*
 * Keystone refused the service's own credential for a lookup of what:
 * 502 keystone_forbidden, saying what the credential lacks.  The caller
 * cannot fix this and a retry will not help.
 */
static void
keystone_check_refused(struct keystone_outcome *o, const char *what,
    const char *refused)
{
	keystone_check_fail(o, REASON_keystone_forbidden,
	    "cannot look up the %s in Keystone: %s", what, refused);
}

/*
 * Judge one restriction lookup: 0 (go on) or -1 (outcome set).  The
 * service credential refused: 502; any other status but 200 and 404 means
 * Keystone will not tell: 503.
 */
static int
keystone_check_judge(struct keystone_check *kc,
    const struct keystone_result *res)
{
	const char *id, *what = keystone_check_kind(kc, &id);
	const cJSON *obj;

	if (res->refused != NULL) {
		keystone_check_refused(&kc->o, what, res->refused);
		return (-1);
	}
	if (kc->step == KS_STEP_ROLES + kc->rs->nroles && !res->unavailable)
		return (keystone_check_assignments(kc, res));
	if (res->unavailable || (res->status != 200 && res->status != 404)) {
		if (!res->unavailable)
			log_err("keystone: GET %ss/%s answered %ld", what, id,
			    res->status);
		keystone_check_unavailable(&kc->o, res->retry_after);
		return (-1);
	}
	obj = res->status == 200
	    ? cJSON_GetObjectItemCaseSensitive(res->doc, what)
	    : NULL;
	if (obj == NULL) {
		keystone_check_invalid(kc, "%s%s %s does not exist in Keystone",
		    what, kc->step < KS_STEP_ROLES ? "_id" : "", id);
		return (-1);
	}
	if (kc->step < KS_STEP_ROLES)
		return (keystone_check_member(kc, what, id, obj));
	return (keystone_check_role(kc,
	    &kc->rs->roles[kc->step - KS_STEP_ROLES], obj));
}

static void keystone_check_step_cb(const struct keystone_result *, void *);

/* Skip the steps with nothing to look up; 1 when all are done. */
static int
keystone_check_skip(struct keystone_check *kc)
{
	if (kc->step == KS_STEP_USER && kc->rs->user_id == NULL)
		kc->step++;
	if (kc->step == KS_STEP_PROJECT && kc->rs->project_id == NULL)
		kc->step++;
	if (kc->step == KS_STEP_ROLES + kc->rs->nroles &&
	    (!kc->assignments || kc->rs->user_id == NULL ||
		kc->rs->project_id == NULL || kc->rs->nroles == 0))
		kc->step++;
	return (kc->step > KS_STEP_ROLES + kc->rs->nroles);
}

/* Start the current step's GET; -1 with the outcome set. */
static int
keystone_check_send(struct keystone_check *kc)
{
	const char *id, *what = keystone_check_kind(kc, &id);
	char *path, *esc, *cause = NULL;

	esc = keystone_path_escape(id);
	if (kc->step == KS_STEP_ROLES + kc->rs->nroles) {
		char *pesc = keystone_path_escape(kc->rs->project_id);

		xasprintf(&path,
		    "/v3/role_assignments?user.id=%s&scope.project.id=%s&effective&include_names",
		    esc, pesc);
		free(pesc);
	} else
		xasprintf(&path, "/v3/%ss/%s", what, esc);
	free(esc);
	kc->op =
	    keystone_get(kc->w, path, NULL, keystone_check_step_cb, kc, &cause);
	free(path);
	if (kc->op != NULL)
		return (0);
	log_warn("keystone: %s", cause);
	free(cause);
	keystone_check_unavailable(&kc->o, "1");
	return (-1);
}

/* Hand the outcome to the owner and free the check. */
static void
keystone_check_finish(struct keystone_check *kc)
{
	kc->cb(&kc->o, kc->arg);
	keystone_outcome_clear(&kc->o);
	free(kc->user_id);
	free(kc);
}

/* One restriction lookup answered: judge it, go on or finish. */
static void
keystone_check_step_cb(const struct keystone_result *res, void *arg)
{
	struct keystone_check *kc = arg;

	kc->op = NULL;
	if (keystone_check_judge(kc, res) == 0) {
		kc->step++;
		if (!keystone_check_skip(kc) && keystone_check_send(kc) == 0)
			return;
	}
	keystone_check_finish(kc);
}

/*
 * Check a restriction against Keystone; the role names of rs are replaced
 * by Keystone's (rs must outlive the check).  assignments: also require
 * the user's effective role assignments on the project to hold every
 * role.  Returns the check in flight, or NULL when it finished at once
 * with *o set (REASON_NONE: fine).
 */
struct keystone_check *
keystone_check_restriction(struct worker *w, struct restriction *rs,
    int assignments, keystone_check_cb cb, void *arg,
    struct keystone_outcome *o)
{
	struct keystone_check *kc;

	memset(o, 0, sizeof *o);
	kc = xcalloc(1, sizeof *kc);
	kc->w = w;
	kc->rs = rs;
	kc->assignments = assignments;
	kc->cb = cb;
	kc->arg = arg;
	if (!keystone_check_skip(kc) && keystone_check_send(kc) == 0)
		return (kc);
	*o = kc->o;
	free(kc);
	return (NULL);
}

/* The login verdict on a user object (NULL: no such user). */
static void
keystone_check_user_verdict(struct keystone_outcome *o, const char *id,
    const cJSON *user)
{
	char *esc;

	if (user != NULL &&
	    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(user, "enabled")))
		return;
	esc = log_escape(id, 64);
	log_info("login refused: restriction user %s is %s in Keystone", esc,
	    user != NULL ? "disabled" : "missing");
	free(esc);
	keystone_check_fail(o, REASON_user_disabled,
	    "the token restriction's user is disabled or deleted in Keystone");
}

/* The login's user lookup answered. */
static void
keystone_check_user_cb(const struct keystone_result *res, void *arg)
{
	struct keystone_check *kc = arg;
	const cJSON *user = NULL;

	kc->op = NULL;
	if (res->refused != NULL)
		keystone_check_refused(&kc->o, "restriction's user",
		    res->refused);
	else if (res->unavailable || (res->status != 200 && res->status != 404))
		keystone_check_unavailable(&kc->o, res->retry_after);
	else {
		if (res->status == 200)
			user =
			    cJSON_GetObjectItemCaseSensitive(res->doc, "user");
		keystone_check_cache_user(kc->user_id, user);
		keystone_check_user_verdict(&kc->o, kc->user_id, user);
	}
	keystone_check_finish(kc);
}

/*
 * Is user_id enabled in Keystone?  Answers from the 30 s cache when it
 * can: NULL with *o set (REASON_NONE: enabled; 401 user_disabled; 502
 * keystone_forbidden; 503).
 * Else the check in flight; cb gets the outcome.
 */
struct keystone_check *
keystone_check_user(struct worker *w, const char *user_id, keystone_check_cb cb,
    void *arg, struct keystone_outcome *o)
{
	struct keystone_check *kc;
	cJSON *user;
	char *key, *path, *esc, *cause = NULL;
	int hit;

	memset(o, 0, sizeof *o);
	xasprintf(&key, "user:%s", user_id);
	hit = keystone_cache_get(keystone_user_cache, key, util_now(), &user);
	free(key);
	if (hit) {
		keystone_check_user_verdict(o, user_id, user);
		cJSON_Delete(user);
		return (NULL);
	}
	kc = xcalloc(1, sizeof *kc);
	kc->w = w;
	kc->user_id = xstrdup(user_id);
	kc->cb = cb;
	kc->arg = arg;
	esc = keystone_path_escape(user_id);
	xasprintf(&path, "/v3/users/%s", esc);
	free(esc);
	kc->op =
	    keystone_get(w, path, NULL, keystone_check_user_cb, kc, &cause);
	free(path);
	if (kc->op != NULL)
		return (kc);
	log_warn("keystone: %s", cause);
	free(cause);
	keystone_check_unavailable(o, "1");
	free(kc->user_id);
	free(kc);
	return (NULL);
}

/* Cancel a check in flight: its callback never runs.  NULL: no-op. */
void
keystone_check_cancel(struct keystone_check *kc)
{
	if (kc == NULL)
		return;
	keystone_cancel(kc->op);
	keystone_outcome_clear(&kc->o);
	free(kc->user_id);
	free(kc);
}
