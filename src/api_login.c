/*
 * api_login.c: POST /v4/k8s_auth/instances/{id}/auth, the exchange of a
 * service-account JWT for a Keystone token (API.md §3), step by step:
 *
 *   0. the client address is not throttled              (throttle.c)
 *   1. instance and role exist and are enabled          (login_start)
 *   2. cheap local JWT checks: structure, time, audience, bounds
 *   2b. the JWT's signature and issuer, with the cluster's keys; waits
 *      while they are fetched                          (jwks_cache.c)
 *   3. TokenReview, asynchronous, or its cached outcome (review_cache.c)
 *   4. the review's identity re-checked against JWT and bounds
 *   4b. when the role's bound_namespace_selector or the login policy's
 *      needs ask for them, the namespace's labels and the service
 *      account's annotations, read from the cluster as the reviewer,
 *      asynchronous (login_objects, k8s_object.c); the selector decides
 *      for namespaces the role does not list
 *   6. the token restriction re-read and complete       (login_finish)
 *   5. the operator's login policy (login.lua) may deny, shorten or map
 *      to another restriction; it sees the restriction, so 6 runs first
 *   6a. with [keystone] verify_user_enabled, the user of the restriction
 *      to issue must still be enabled in Keystone, asynchronous
 *      (login_verify_user)
 *   7. a Fernet token minted                            (token.c)
 *
 * Every refusal answers with the status and reason API.md gives and
 * issues nothing.  The JWT itself is never logged: log lines carry the
 * first 8 hex digits of its SHA-256.  Runs on a worker thread; the
 * request is parked while the review is in flight (the worker serves
 * other requests), and a client that disconnects cancels its review.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

struct login {
	struct request *r;
	const struct instance *inst; /* in r->snap */
	const struct role *role;     /* in r->snap */
	struct jwt *jwt;
	struct review_wait *review;        /* step 3 (review_cache.c) */
	struct jwks_wait *keys_wait;       /* step 2b waiting for keys */
	char *token;                       /* the JWT (secret: wiped) */
	struct keystone_check *check;      /* step 6a in flight */
	struct k8s_review_outcome outcome; /* kept during step 6a */
	struct restriction *rs;            /* kept during step 6a */
	long cap;                          /* kept during step 6a */
	char jwt_id[9];
	uint8_t jwt_sha[32]; /* SHA-256 of the JWT: the log id, the cache key */
	char *role_name;
	char *pod; /* from the review, once checked */
	char *node;
	int reviewed; /* the review confirmed the JWT's identity (step 4) */
	char audit_id[23];   /* of the token issued */
	cJSON *policy_audit; /* login.lua's audit fields */
	/* step 4b: what to read, the JWT for the bearer, what was read */
	int policy_needs; /* POLICY_NEED_* of login.lua at the start */
	int need_ns, need_sa;
	struct k8s_object *object;
	cJSON *ns_labels;
	cJSON *sa_annotations;
};

/* Write the login's audit record (after the reply). */
static void
login_audit(const struct login *l)
{
	struct audit_login a;
	const struct request *r = l->r;

	memset(&a, 0, sizeof a);
	a.instance_id = r->params[0];
	a.role = l->role_name;
	/* What only the JWT says is claimed; the review makes it reviewed. */
	if (l->jwt != NULL && l->reviewed) {
		a.namespace = l->jwt->namespace;
		a.service_account = l->jwt->sa_name;
	} else if (l->jwt != NULL) {
		a.claimed_namespace = l->jwt->namespace;
		a.claimed_service_account = l->jwt->sa_name;
	}
	a.pod = l->pod;
	if (l->pod == NULL && l->jwt != NULL)
		a.claimed_pod = l->jwt->pod_name;
	a.node = l->node;
	a.status = r->status;
	a.reason = r->status == 200 ? NULL : reason_name(r->reason);
	a.token_audit_id = l->audit_id[0] != '\0' ? l->audit_id : NULL;
	a.jwt_id = l->jwt_id[0] != '\0' ? l->jwt_id : NULL;
	a.client = r->client_ip;
	a.latency_ms = (double)(util_monotonic_us() - r->start_us) / 1000.0;
	a.policy = l->policy_audit;
	a.annotations = l->sa_annotations;
	audit_login(&a);
}

/* Free a login and drop its reference on the request. */
static void
login_done(struct login *l)
{
	struct request *r = l->r;

	login_audit(l);
	throttle_login_done(r);
	r->data = NULL;
	r->cancel = NULL;
	r->gone = NULL;
	jwt_free(l->jwt);
	freezero_str(l->token);
	free(l->role_name);
	k8s_review_outcome_clear(&l->outcome);
	if (l->rs != NULL)
		restriction_free(l->rs);
	free(l->pod);
	free(l->node);
	cJSON_Delete(l->policy_audit);
	cJSON_Delete(l->ns_labels);
	cJSON_Delete(l->sa_annotations);
	free(l);
	http_unref(r);
}

/*
 * Refuse a login: log why (with the JWT's fingerprint, on the access line
 * of the answer) and answer.
 */
static void login_refuse(struct login *l, enum reason reason, const char *fmt,
    ...) printflike(3, 4);
static void
login_refuse(struct login *l, enum reason reason, const char *fmt, ...)
{
	va_list ap;
	char *msg, *inst, *role;

	va_start(ap, fmt);
	xvasprintf(&msg, fmt, ap);
	va_end(ap);
	/* The instance id and role name are the client's: escape them. */
	inst = log_escape(l->r->params[0], 100);
	role = log_escape(l->role_name != NULL ? l->role_name : "-", 100);
	http_log_note(l->r,
	    "login refused: %s (%s) instance=%s role=%s jwt=sha256:%s",
	    reason_name(reason), msg, inst, role,
	    l->jwt_id[0] != '\0' ? l->jwt_id : "-");
	free(inst);
	free(role);
	http_reply_reason(l->r, reason, "%s", msg);
	free(msg);
}

/*
 * Check a service account against the role's bounds; 0 or -1 (replied).
 * A namespace the role does not list may still be bound by its labels:
 * with a bound_namespace_selector that is decided in step 4b.
 */
static int
login_check_bounds(struct login *l, const char *ns, const char *name)
{
	if (!glob_match_any(&l->role->bound_sa_namespaces, ns) &&
	    l->role->bound_namespace_selector == NULL) {
		login_refuse(l, REASON_namespace_not_bound,
		    "the namespace is not bound to the role");
		return (-1);
	}
	if (!glob_match_any(&l->role->bound_sa_names, name)) {
		login_refuse(l, REASON_service_account_not_bound,
		    "the service account is not bound to the role");
		return (-1);
	}
	return (0);
}

/* Step 2: every check that costs no TokenReview; 0 or -1 (replied). */
static int
login_check_jwt(struct login *l)
{
	const struct config *cfg = l->r->cfg;
	const struct jwt *j = l->jwt;
	double now = util_now(), skew = (double)cfg->k8s_clock_skew;

	if (!j->has_exp && !cfg->k8s_allow_legacy_tokens) {
		login_refuse(l, REASON_legacy_token_refused,
		    "tokens without an expiry (legacy service-account secrets) are refused");
		return (-1);
	}
	if (j->has_exp && j->exp + skew < now) {
		login_refuse(l, REASON_token_expired, "the JWT has expired");
		return (-1);
	}
	/* Within the skew, but too late to give a token any lifetime. */
	if (j->has_exp && cfg->token_cap_to_jwt_expiry && j->exp - now < 1.0) {
		login_refuse(l, REASON_token_expired,
		    "the JWT expires before a token could be used");
		return (-1);
	}
	if ((j->has_nbf && j->nbf - skew > now) ||
	    (j->has_iat && j->iat - skew > now)) {
		login_refuse(l, REASON_token_not_yet_valid,
		    "the JWT is not valid yet");
		return (-1);
	}
	if (l->role->bound_audience != NULL &&
	    !jwt_has_audience(j, l->role->bound_audience)) {
		login_refuse(l, REASON_audience_mismatch,
		    "the JWT is not issued for the role's audience");
		return (-1);
	}
	if (login_check_bounds(l, j->namespace, j->sa_name) != 0)
		return (-1);
	if (l->role->bound_pod_names != NULL && j->pod_name != NULL &&
	    !glob_match_any(l->role->bound_pod_names, j->pod_name)) {
		login_refuse(l, REASON_pod_not_bound,
		    "the pod is not bound to the role");
		return (-1);
	}
	return (0);
}

/*
 * Step 4a: the names a review reports must be Kubernetes names (namespace
 * a DNS-1123 label, service account and pod DNS-1123 subdomains): any
 * other answer does not come from a real API server.  0 or -1 (replied
 * 502 invalid_review; the names are logged escaped).
 */
static int
login_check_names(struct login *l, const struct k8s_review_outcome *o)
{
	char *ns, *sa, *pod;

	if (k8s_name_label(o->namespace) && k8s_name_subdomain(o->name) &&
	    (o->pod_name == NULL || k8s_name_subdomain(o->pod_name)))
		return (0);
	ns = log_escape(o->namespace, 100);
	sa = log_escape(o->name, 100);
	pod = log_escape(o->pod_name != NULL ? o->pod_name : "-", 100);
	log_warn("login: instance %s: the TokenReview names %s/%s pod=%s, not Kubernetes names",
	    l->inst->id, ns, sa, pod);
	free(ns);
	free(sa);
	free(pod);
	login_refuse(l, REASON_invalid_review,
	    "the TokenReview names a namespace, service account or pod that is not a valid Kubernetes name");
	return (-1);
}

/* Step 4: the reviewed identity must be the JWT's and within bounds. */
static int
login_check_review(struct login *l, const struct k8s_review_outcome *o)
{
	const struct jwt *j = l->jwt;
	const struct role *role = l->role;
	size_t i;
	int found = 0;

	if (login_check_names(l, o) != 0)
		return (-1);
	if (strcmp(o->namespace, j->namespace) != 0 ||
	    strcmp(o->name, j->sa_name) != 0 ||
	    (j->sa_uid != NULL &&
		(o->uid == NULL || strcmp(o->uid, j->sa_uid) != 0))) {
		login_refuse(l, REASON_invalid_review,
		    "the TokenReview names another service account than the JWT");
		return (-1);
	}
	l->reviewed = 1;
	if (o->pod_name != NULL)
		l->pod = xstrdup(o->pod_name);
	if (o->node_name != NULL)
		l->node = xstrdup(o->node_name);
	if (login_check_bounds(l, o->namespace, o->name) != 0)
		return (-1);
	if (role->bound_audience != NULL) {
		for (i = 0; i < o->audiences.n; i++) {
			if (strcmp(o->audiences.v[i], role->bound_audience) ==
			    0)
				found = 1;
		}
		if (!found) {
			login_refuse(l, REASON_audience_mismatch,
			    "the cluster did not confirm the role's audience");
			return (-1);
		}
	}
	if (role->bound_pod_names != NULL &&
	    (o->pod_name == NULL ||
		!glob_match_any(role->bound_pod_names, o->pod_name))) {
		login_refuse(l, REASON_pod_not_bound,
		    "the token is not bound to a pod the role allows");
		return (-1);
	}
	return (0);
}

/* Seconds the token may live: API.md §3 step 7; <= 0 when none. */
static long
login_lifetime(const struct login *l, double now)
{
	const struct config *cfg = l->r->cfg;
	long life = cfg->token_expiration;
	double left;

	if (l->role->token_ttl > 0 && l->role->token_ttl < life)
		life = l->role->token_ttl;
	if (cfg->token_cap_to_jwt_expiry && l->jwt->has_exp) {
		left = floor(l->jwt->exp - now);
		if (left < (double)life)
			life = (long)left;
	}
	return (life);
}

/* The k8s_auth member of the login answer, added to the token object. */
static void
login_k8s_json(struct json_out *j, const struct login *l,
    const struct k8s_review_outcome *o)
{
	json_out_open(j, "k8s_auth", '{');
	json_out_string(j, "instance_id", l->inst->id);
	json_out_string(j, "role", l->role->name);
	json_out_string(j, "namespace", o->namespace);
	json_out_string(j, "service_account", o->name);
	json_out_string(j, "service_account_uid", o->uid);
	json_out_string(j, "pod_name", o->pod_name);
	json_out_string(j, "node_name", o->node_name);
	json_out_close(j, '}');
}

/*
 * The login's outcome on its access line (one line per login).  The
 * reviewed names are checked (step 4a) and escaped all the same: they
 * come from the cluster.
 */
static void
login_log_success(const struct login *l, const struct k8s_review_outcome *o,
    const char *audit_id, long life)
{
	char *ns, *sa, *pod;

	ns = log_escape(o->namespace, 100);
	sa = log_escape(o->name, 260);
	pod = log_escape(o->pod_name != NULL ? o->pod_name : "-", 260);
	http_log_note(l->r,
	    "login: instance=%s role=%s sa=%s/%s pod=%s audit=%s expires_in=%ld jwt=sha256:%s",
	    l->inst->id, l->role->name, ns, sa, pod, audit_id, life, l->jwt_id);
	free(ns);
	free(sa);
	free(pod);
}

/* Step 7: mint a token of restriction rs living at most cap seconds. */
static void
login_issue(struct login *l, const struct k8s_review_outcome *o,
    struct restriction *rs, long cap)
{
	struct request *r = l->r;
	const struct config *cfg = r->cfg;
	struct fernet_payload p;
	struct json_out doc;
	char stack[API_TOKEN_STACK], *token = NULL, *cause = NULL;
	double now = floor(util_now());
	long life;

	life = login_lifetime(l, now);
	if (cap > 0 && cap < life)
		life = cap;
	if (life <= 0) {
		login_refuse(l, REASON_token_expired,
		    "the JWT expires before a token could be used");
		goto out;
	}
	memset(&p, 0, sizeof p);
	p.version = cfg->token_payload == TOKEN_PAYLOAD_RESTRICTED ? 11 : 2;
	p.user_id = rs->user_id;
	p.project_id = rs->project_id;
	p.restriction_id = rs->id;
	p.methods = token_methods_mask();
	p.expires_at = now + (double)life;
	p.issued_at = now;
	p.allow_renew = rs->allow_renew;
	p.allow_rescope = rs->allow_rescope;
	if ((token = token_mint(&p, &cause)) == NULL) {
		log_err("login: cannot mint a token: %s", cause);
		http_reply_reason(r, REASON_internal_error,
		    "the token could not be issued");
		goto out;
	}
	json_out_init(&doc, stack, sizeof stack);
	api_token_document(&doc, cfg, &p, rs);
	login_k8s_json(&doc, l, o);
	login_log_success(l, o, p.audit_id, life);
	memcpy(l->audit_id, p.audit_id, sizeof l->audit_id);
	http_set_header(r, "X-Subject-Token", token);
	api_token_reply(r, &doc);
	json_out_free(&doc);
out:
	freezero_str(token);
	free(cause);
}

/*
 * Step 6: a restriction a login would use must exist, be in the role's
 * domain and name a user, a project and a role.  NULL after replying 500.
 */
static struct restriction *
login_restriction(struct login *l, const char *id, const char *why)
{
	struct restriction *rs = NULL;

	if (snapshot_restriction_get(l->r->snap, id, &rs) != STORE_OK ||
	    strcmp(rs->domain_id, l->role->domain_id) != 0 ||
	    rs->user_id == NULL || rs->project_id == NULL || rs->nroles == 0) {
		log_err("login: role %s (%s): %s token restriction %.64s is missing, in another domain or incomplete: no token issued",
		    l->role->id, l->role->name, why, id);
		http_reply_reason(l->r, REASON_restriction_invalid,
		    "the token restriction is missing or incomplete");
		restriction_free(rs);
		return (NULL);
	}
	return (rs);
}

/* {"name": ..., "uid": ...} or NULL when there is no name. */
static cJSON *
login_ctx_ref(const char *name, const char *uid)
{
	cJSON *o;

	if (name == NULL)
		return (NULL);
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "name", name);
	json_add_string_or_null(o, "uid", uid);
	return (o);
}

/*
 * An object of the login's (the JWT's claims, labels, annotations) in the
 * ctx without a deep copy: a cJSON reference to its members, which the
 * ctx's cJSON_Delete leaves alone (anything but an object is copied).  The
 * ctx lives only for the policy call.
 */
static cJSON *
login_ctx_view(const cJSON *obj)
{
	cJSON *ref;

	if (!cJSON_IsObject(obj))
		return (cJSON_Duplicate(obj, 1));
	if ((ref = cJSON_CreateObjectReference(obj->child)) == NULL)
		fatalx("cJSON_CreateObjectReference failed");
	return (ref);
}

/* The ctx handed to login.lua's check() (see docs/policy.md). */
static cJSON *
login_ctx(const struct login *l, const struct k8s_review_outcome *o,
    const struct restriction *rs)
{
	cJSON *ctx = cJSON_CreateObject(), *it, *review, *pod, *node;

	it = cJSON_AddObjectToObject(ctx, "instance");
	cJSON_AddStringToObject(it, "id", l->inst->id);
	json_add_string_or_null(it, "name", l->inst->name);
	cJSON_AddStringToObject(it, "domain_id", l->inst->domain_id);
	cJSON_AddItemToObject(ctx, "role", role_json(l->role));
	cJSON_AddItemToObject(ctx, "restriction", restriction_json(rs));
	it = cJSON_AddObjectToObject(ctx, "service_account");
	cJSON_AddStringToObject(it, "namespace", o->namespace);
	cJSON_AddStringToObject(it, "name", o->name);
	json_add_string_or_null(it, "uid", o->uid);
	if (l->sa_annotations != NULL)
		cJSON_AddItemToObject(it, "annotations",
		    login_ctx_view(l->sa_annotations));
	if (l->ns_labels != NULL) {
		it = cJSON_AddObjectToObject(ctx, "namespace");
		cJSON_AddStringToObject(it, "name", o->namespace);
		cJSON_AddItemToObject(it, "labels",
		    login_ctx_view(l->ns_labels));
	}
	if ((pod = login_ctx_ref(o->pod_name, o->pod_uid)) != NULL)
		cJSON_AddItemToObject(ctx, "pod", pod);
	if ((node = login_ctx_ref(o->node_name, o->node_uid)) != NULL)
		cJSON_AddItemToObject(ctx, "node", node);
	review = cJSON_AddObjectToObject(ctx, "review");
	cJSON_AddStringToObject(review, "username", o->username);
	json_add_string_or_null(review, "uid", o->uid);
	cJSON_AddItemToObject(review, "groups", json_strlist(&o->groups));
	cJSON_AddItemToObject(review, "extra", review_cache_extra_dup(o));
	cJSON_AddItemToObject(review, "audiences", json_strlist(&o->audiences));
	cJSON_AddItemToObject(ctx, "claims", login_ctx_view(l->jwt->claims));
	cJSON_AddStringToObject(ctx, "client_ip", l->r->client_ip);
	return (ctx);
}

/*
 * Step 5: the operator's login policy.  Returns the restriction to issue
 * (the role's, or the one the policy mapped to) with *cap the lifetime
 * the policy allows (0: no limit), or NULL after replying.
 */
static struct restriction *
login_policy(struct login *l, const struct k8s_review_outcome *o,
    struct restriction *rs, long *cap)
{
	struct policy_login_result res;
	struct restriction *mapped;
	cJSON *ctx;
	char *reason = NULL, *esc;
	int rc;

	*cap = 0;
	memset(&res, 0, sizeof res);
	/* A policy that decides nothing allows without a ctx or a Lua call. */
	ctx = policy_login_decides(l->r->worker->policy) ? login_ctx(l, o, rs)
							 : NULL;
	rc = policy_login(l->r->worker->policy, ctx, &res, &reason);
	cJSON_Delete(ctx);
	if (rc != POLICY_ALLOW) {
		if (rc == POLICY_DENY)
			login_refuse(l, REASON_policy_denied,
			    "the login policy refused the login");
		else {
			metrics_policy_error();
			login_refuse(l, REASON_policy_error,
			    "the login policy failed");
		}
		esc = log_escape(reason != NULL ? reason : "-", 1024);
		log_info("login policy: %s", esc); /* may quote the review */
		free(esc);
		free(reason);
		restriction_free(rs);
		return (NULL);
	}
	*cap = res.expires_in;
	l->policy_audit = res.audit;
	res.audit = NULL;
	if (res.restriction_id != NULL &&
	    strcmp(res.restriction_id, rs->id) != 0) {
		mapped = login_restriction(l, res.restriction_id,
		    "the login policy's");
		restriction_free(rs);
		rs = mapped;
	}
	policy_login_result_clear(&res);
	return (rs);
}

/* Refuse with a Keystone check's outcome (503 with Retry-After). */
static void
login_refuse_keystone(struct login *l, const struct keystone_outcome *ko)
{
	if (reason_status(ko->reason) == 503)
		http_set_header(l->r, "Retry-After",
		    ko->retry_after != NULL ? ko->retry_after : "1");
	login_refuse(l, ko->reason, "%s", ko->message);
}

/* Step 6a answered: refuse, or go on to steps 6 and 7. */
static void
login_user_cb(struct keystone_outcome *ko, void *arg)
{
	struct login *l = arg;

	l->check = NULL; /* keystone_check.c frees it after this call */
	if (ko->reason != REASON_NONE)
		login_refuse_keystone(l, ko);
	else
		login_issue(l, &l->outcome, l->rs, l->cap);
	login_done(l);
}

/*
 * Step 6a: the user of the restriction rs about to be issued must still
 * be enabled in Keystone ([keystone] verify_user_enabled).  Returns 0 (go
 * on), -1 (replied) or 1 (asynchronous: the review outcome, rs and cap
 * move into l and login_user_cb goes on).
 */
static int
login_verify_user(struct login *l, struct k8s_review_outcome *o,
    struct restriction *rs, long cap)
{
	struct request *r = l->r;
	struct keystone_outcome ko;

	if (!keystone_enabled() || !r->cfg->keystone_verify_user_enabled)
		return (0);
	l->check =
	    keystone_check_user(r->worker, rs->user_id, login_user_cb, l, &ko);
	if (l->check != NULL) {
		if (o != &l->outcome) {
			l->outcome = *o;
			memset(o, 0, sizeof *o);
		}
		l->rs = rs;
		l->cap = cap;
		return (1);
	}
	if (ko.reason != REASON_NONE) {
		login_refuse_keystone(l, &ko);
		keystone_outcome_clear(&ko);
		return (-1);
	}
	return (0);
}

/* Steps 6, 5, 6a and 7; 1 when step 6a went asynchronous, else 0. */
static int
login_finish(struct login *l, struct k8s_review_outcome *o)
{
	struct restriction *rs;
	long cap;
	int rc;

	if ((rs = login_restriction(l, l->role->token_restriction_id, "its")) ==
		NULL ||
	    (rs = login_policy(l, o, rs, &cap)) == NULL)
		return (0);
	if ((rc = login_verify_user(l, o, rs, cap)) == 1)
		return (1); /* login_user_cb goes on */
	if (rc == 0)
		login_issue(l, o, rs, cap);
	restriction_free(rs);
	return (0);
}

/*
 * Step 4b, the namespace: bound when the role lists it, else when its
 * labels match the role's selector.  0 or -1 (replied).
 */
static int
login_check_selector(struct login *l, const char *ns)
{
	const struct role *role = l->role;
	cJSON *sel;
	int ok;

	if (role->bound_namespace_selector == NULL ||
	    glob_match_any(&role->bound_sa_namespaces, ns))
		return (0);
	sel = json_parse(role->bound_namespace_selector,
	    strlen(role->bound_namespace_selector), NULL);
	ok = sel != NULL && k8s_selector_match(sel, l->ns_labels);
	cJSON_Delete(sel);
	if (ok)
		return (0);
	login_refuse(l, REASON_namespace_not_bound,
	    "the namespace is not bound to the role (not listed, and its labels do not match bound_namespace_selector)");
	return (-1);
}

/* Keep what a read brought; 0, or -1 after refusing with its error. */
static int
login_object_take(struct login *l, struct k8s_object_outcome *oo)
{
	if (oo->reason != REASON_NONE) {
		if (reason_status(oo->reason) == 503)
			http_set_header(l->r, "Retry-After",
			    oo->retry_after != NULL ? oo->retry_after : "1");
		login_refuse(l, oo->reason, "%s", oo->message);
		return (-1);
	}
	if (oo->labels != NULL) {
		l->ns_labels = oo->labels;
		oo->labels = NULL;
	}
	if (oo->annotations != NULL) {
		l->sa_annotations = oo->annotations;
		oo->annotations = NULL;
	}
	return (0);
}

static void login_object_cb(struct k8s_object_outcome *, void *);

/*
 * Step 4b and on, from the parked review outcome (l->outcome): read what
 * is still needed (the namespace, then the service account), one read at
 * a time; then the selector, then steps 6 to 7.  1 while a read or step
 * 6a is in flight (its callback goes on), else 0 (replied).
 */
static int
login_objects(struct login *l)
{
	struct k8s_review_outcome *o = &l->outcome;
	struct k8s_object_outcome oo;
	enum k8s_object_kind kind;

	while ((l->need_ns && l->ns_labels == NULL) ||
	    (l->need_sa && l->sa_annotations == NULL)) {
		kind = l->need_ns && l->ns_labels == NULL
		    ? K8S_OBJECT_NAMESPACE
		    : K8S_OBJECT_SERVICE_ACCOUNT;
		l->object =
		    k8s_object_get(l->r->worker, l->r->cfg, l->inst, l->token,
			kind, o->namespace, o->name, login_object_cb, l, &oo);
		if (l->object != NULL)
			return (1); /* login_object_cb goes on */
		if (login_object_take(l, &oo) != 0) {
			k8s_object_outcome_clear(&oo);
			return (0);
		}
		k8s_object_outcome_clear(&oo);
	}
	if (login_check_selector(l, o->namespace) == 0 &&
	    login_finish(l, o) == 1)
		return (1);
	return (0);
}

/* A read of step 4b answered (k8s_object.c). */
static void
login_object_cb(struct k8s_object_outcome *oo, void *arg)
{
	struct login *l = arg;

	l->object = NULL; /* k8s_object.c frees it after this call */
	if (login_object_take(l, oo) != 0 || login_objects(l) == 0)
		login_done(l);
}

/*
 * Steps 4 to 7 on a review's outcome, fresh or cached alike: 1 when a read
 * of step 4b or step 6a goes on asynchronously (its callback ends the
 * login), else 0 (replied; the caller ends the login).
 */
static int
login_reviewed(struct login *l, struct k8s_review_outcome *o)
{
	if (o->reason != REASON_NONE) {
		if (reason_status(o->reason) == 503)
			http_set_header(l->r, "Retry-After",
			    o->retry_after != NULL ? o->retry_after : "1");
		login_refuse(l, o->reason, "%s", o->message);
		return (0);
	}
	if (login_check_review(l, o) != 0)
		return (0);
	l->outcome = *o; /* parked for steps 4b to 7 */
	memset(o, 0, sizeof *o);
	/* A namespace the role lists needs no labels to be bound. */
	l->need_ns = (l->policy_needs & POLICY_NEED_NAMESPACE) != 0 ||
	    (l->role->bound_namespace_selector != NULL &&
		!glob_match_any(&l->role->bound_sa_namespaces,
		    l->outcome.namespace));
	l->need_sa = l->inst->service_account_annotations &&
	    (l->policy_needs & POLICY_NEED_SERVICE_ACCOUNT) != 0;
	return (login_objects(l));
}

/* The TokenReview finished (review_cache.c): steps 4 to 7. */
static void
login_review_cb(struct k8s_review_outcome *o, void *arg)
{
	struct login *l = arg;

	l->review = NULL; /* review_cache.c frees it after this call */
	if (login_reviewed(l, o) == 0)
		login_done(l);
}

/* The request deadline passed while the review was in flight. */
static void
login_cancel(struct request *r)
{
	struct login *l = r->data;

	review_cache_cancel(l->review);
	l->review = NULL;
	k8s_object_cancel(l->object);
	l->object = NULL;
	jwks_wait_cancel(l->keys_wait);
	l->keys_wait = NULL;
	keystone_check_cancel(l->check);
	l->check = NULL;
	http_reply_reason(r, REASON_cluster_timeout,
	    "the login did not complete in time");
	login_done(l);
}

/* The client disconnected: cancel the review, answer into the void. */
static void
login_gone(struct request *r)
{
	struct login *l = r->data;

	review_cache_cancel(l->review);
	l->review = NULL;
	k8s_object_cancel(l->object);
	l->object = NULL;
	jwks_wait_cancel(l->keys_wait);
	l->keys_wait = NULL;
	keystone_check_cancel(l->check);
	l->check = NULL;
	http_reply_reason(r, REASON_client_gone, "the client disconnected");
	login_done(l);
}

/* Read {"k8s_role" | "role_name", "jwt"}; 0 or -1 (replied). */
static int
login_parse_body(struct request *r, char **role, char **jwt)
{
	static const char *const fields[] = { "k8s_role", "role_name", "jwt",
		NULL };
	const cJSON *k8s_role, *role_name, *token;
	cJSON *body;
	char *cause = NULL;

	if (http_body_object(r, &body) != 0)
		return (-1);
	if (json_check_fields(body, fields, &cause) != 0) {
		http_reply_reason(r, REASON_unknown_field, "%s", cause);
		goto fail;
	}
	k8s_role = cJSON_GetObjectItemCaseSensitive(body, "k8s_role");
	role_name = cJSON_GetObjectItemCaseSensitive(body, "role_name");
	token = cJSON_GetObjectItemCaseSensitive(body, "jwt");
	if ((k8s_role != NULL && !cJSON_IsString(k8s_role)) ||
	    (role_name != NULL && !cJSON_IsString(role_name))) {
		http_reply_reason(r, REASON_invalid_value,
		    "k8s_role and role_name must be strings");
		goto fail;
	}
	if (k8s_role == NULL && role_name == NULL) {
		http_reply_reason(r, REASON_missing_field,
		    "k8s_role is required");
		goto fail;
	}
	if (k8s_role != NULL && role_name != NULL &&
	    strcmp(k8s_role->valuestring, role_name->valuestring) != 0) {
		http_reply_reason(r, REASON_invalid_value,
		    "k8s_role and role_name differ");
		goto fail;
	}
	if (token == NULL || !cJSON_IsString(token)) {
		http_reply_reason(r,
		    token == NULL ? REASON_missing_field : REASON_invalid_value,
		    "jwt is required and must be a string");
		goto fail;
	}
	*role = xstrdup(
	    k8s_role != NULL ? k8s_role->valuestring : role_name->valuestring);
	*jwt = xstrdup(token->valuestring);
	cJSON_Delete(body);
	return (0);
fail:
	free(cause);
	cJSON_Delete(body);
	return (-1);
}

/* Step 1: instance and role, both enabled; 0 or -1 (replied). */
static int
login_lookup(struct login *l)
{
	struct request *r = l->r;

	if (r->snap == NULL) { /* a network database not loaded yet */
		http_set_header(r, "Retry-After", "1");
		http_reply_reason(r, REASON_database_unavailable,
		    "the stored data is not loaded yet; retry later");
		return (-1);
	}
	if ((l->inst = snapshot_instance(r->snap, r->params[0])) == NULL) {
		login_refuse(l, REASON_instance_not_found, "no such instance");
		return (-1);
	}
	if (!l->inst->enabled) {
		login_refuse(l, REASON_instance_disabled,
		    "the instance is disabled");
		return (-1);
	}
	l->role = snapshot_role(r->snap, l->inst->id, l->role_name);
	if (l->role == NULL) {
		login_refuse(l, REASON_role_not_found,
		    "no such role in this instance");
		return (-1);
	}
	if (!l->role->enabled) {
		login_refuse(l, REASON_role_disabled, "the role is disabled");
		return (-1);
	}
	return (0);
}

/*
 * Step 4b may read the namespace (the role has a selector, or the login
 * policy needs "namespace") or the service account (the instance exposes
 * annotations and the policy needs "service_account").  The JWT (kept in
 * l->token for the whole login) may be the bearer of those reads (API.md §1).
 */
static void
login_needs(struct login *l)
{
	l->policy_needs = policy_login_needs(l->r->worker->policy);
}

/*
 * Step 0: a client address that failed too often (throttle.c) is refused
 * before any other work; 0 or -1 (replied 429 with Retry-After).
 */
static int
login_throttled(struct login *l)
{
	char retry[24];
	long wait;

	if ((wait = throttle_login_check(l->r)) == 0)
		return (0);
	snprintf(retry, sizeof retry, "%ld", wait);
	http_set_header(l->r, "Retry-After", retry);
	metrics_login_throttled();
	login_refuse(l, REASON_too_many_requests,
	    "too many failed logins from %s; retry after %ld s",
	    l->r->client_ip, wait);
	return (-1);
}

/*
 * Step 3: the TokenReview (review_cache.c: a cached outcome, a review in
 * flight to join, or a new one); 0 while something is in flight, -1 after
 * replying.
 */
static int
login_start_review(struct login *l)
{
	struct request *r = l->r;
	struct k8s_review_outcome o;
	int rc;

	l->review = review_cache_start(r->worker, r->cfg, l->inst, l->token,
	    l->role->bound_audience, l->jwt->has_exp ? l->jwt->exp : 0,
	    login_review_cb, l, &o);
	if (l->review != NULL)
		return (0);
	rc = login_reviewed(l, &o); /* cached, or refused at once */
	k8s_review_outcome_clear(&o);
	return (rc == 1 ? 0 : -1);
}

static void login_keys_cb(void *);

/*
 * Steps 2b and 3: the signature (jwks_cache.c), then the review.  0 when
 * something is in flight (keys or review), -1 after replying.
 */
static int
login_continue(struct login *l)
{
	struct request *r = l->r;
	enum reason reason = REASON_NONE;
	struct k8s_review_outcome o;
	char *msg = NULL;
	int rc;

	/* A JWT the cluster already judged needs no signature check. */
	if (review_cache_lookup(r->cfg, l->inst, l->jwt_sha,
		l->role->bound_audience, &o)) {
		rc = login_reviewed(l, &o);
		k8s_review_outcome_clear(&o);
		return (rc == 1 ? 0 : -1);
	}
	switch (jwks_check(r->worker, r->cfg, l->inst, l->token, l->jwt,
	    login_keys_cb, l, &l->keys_wait, &reason, &msg)) {
	case JWKS_CHECK_WAIT:
		return (0);
	case JWKS_CHECK_REFUSE:
		login_refuse(l, reason, "%s", msg);
		free(msg);
		return (-1);
	default:
		return (login_start_review(l));
	}
}

/* The keys step 2b waited for are in (or not): look again. */
static void
login_keys_cb(void *arg)
{
	struct login *l = arg;

	l->keys_wait = NULL; /* jwks_cache.c frees it after this call */
	if (login_continue(l) != 0)
		login_done(l);
}

/* POST /v4/k8s_auth/instances/{id}/auth */
void
api_login(struct request *r)
{
	const struct config *cfg = r->cfg;
	struct login *l;
	char *cause = NULL;

	l = xcalloc(1, sizeof *l);
	l->r = r;
	http_ref(r); /* dropped by login_done */
	if (login_throttled(l) != 0)
		goto done;
	if (login_parse_body(r, &l->role_name, &l->token) != 0)
		goto done;
	/* Hashed once: log_secret_id's 8 hex digits and the review cache key. */
	util_sha256(l->token, strlen(l->token), l->jwt_sha);
	util_hex(l->jwt_sha, 4, l->jwt_id);
	if (login_lookup(l) != 0)
		goto done;
	if (jwt_parse(l->token, strlen(l->token), (size_t)cfg->k8s_max_jwt_size,
		&l->jwt, &cause) != 0) {
		login_refuse(l, REASON_malformed_jwt, "%s", cause);
		goto done;
	}
	if (login_check_jwt(l) != 0)
		goto done;
	login_needs(l);
	if (login_continue(l) != 0)
		goto done;
	r->data = l;
	r->cancel = login_cancel;
	r->gone = login_gone;
	http_park(r);
	return;
done:
	free(cause);
	login_done(l);
}
