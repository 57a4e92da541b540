/*
 * keystone.c: the client of the upstream Keystone ([keystone] section).
 *
 * keystone_get() sends one GET to Keystone's identity API with this
 * service's own token (X-Auth-Token) and hands the answer to a callback.
 * The service token is obtained with the application credential
 * (POST /v3/auth/tokens, method application_credential; the secret is read
 * from its file at startup and on SIGHUP and never logged), kept
 * process-wide and renewed before it expires: a request that finds no
 * usable token waits on its worker's queue while that worker
 * authenticates.  A 401 for the service token makes the request
 * re-authenticate once and retry.  Keystone unreachable, timing out or
 * answering 5xx/429 is reported as "unavailable" (callers answer 503 with
 * Retry-After); Keystone refusing the service's own credential (401 to the
 * authentication, 403 to a lookup, 401 to a fresh token) as "refused"
 * with what the credential lacks (callers answer 502 keystone_forbidden:
 * retrying cannot help).  The last verdict on the credential is kept for
 * /readyz (keystone_credential_state).
 *
 * Owns: the base URL, the application credential, the service token
 * (under ks_lock), and one struct keystone_worker per worker thread (the
 * waiting queue and the authentication in flight), reached through a
 * list under ks_lock.  keystone_init/_reload/_shutdown run on the main
 * thread; everything else on worker threads, through the worker's fetch
 * machinery: nothing blocks.
 */
#include <sys/queue.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "k8sauth.h"

#define KEYSTONE_SECRET_MAX   4096
#define KEYSTONE_RESPONSE_MAX (1024 * 1024)
#define KEYSTONE_RENEW_BEFORE 300.0 /* renew this long before expiry */

struct keystone_op {
	struct keystone_worker *kw;
	char *path;    /* "/v3/..." with query */
	char *subject; /* X-Subject-Token: secret */
	keystone_cb cb;
	void *arg;
	struct fetch_transfer *transfer;
	long generation;     /* service token used */
	unsigned long epoch; /* authentication awaited */
	int retried;
	int waiting;
	TAILQ_ENTRY(keystone_op) entry;
};

struct keystone_worker {
	struct worker *w;
	struct fetch_transfer *auth; /* service token in flight */
	unsigned long epoch;         /* authentications started */
	TAILQ_HEAD(, keystone_op) waiting;
	LIST_ENTRY(keystone_worker) entry;
};

static pthread_mutex_t ks_lock = PTHREAD_MUTEX_INITIALIZER;
static char *ks_base; /* NULL: Keystone not configured */
static char *ks_ca_file;
static char *ks_app_id; /* ks_lock */
static char *ks_secret; /* secret; ks_lock */
static long ks_connect_ms, ks_timeout_ms;
static int ks_allow_http;
static char *ks_token;              /* service token; ks_lock */
static double ks_renew_at;          /* ks_lock */
static long ks_generation;          /* ks_lock */
static enum keystone_cred ks_cred;  /* last verdict; ks_lock */
static const char *ks_cred_message; /* static string; ks_lock */
static LIST_HEAD(, keystone_worker) ks_workers = LIST_HEAD_INITIALIZER(
    ks_workers);

static int keystone_op_start(struct keystone_op *, char **);

/* What Keystone's refusals of the service's own credential mean. */
static const char keystone_refused_auth[] =
    "Keystone refused the service's application credential ([keystone] application_credential_id and its secret file): the id or secret is wrong, the credential expired or was deleted, or its user is disabled";
static const char keystone_refused_lookup[] =
    "Keystone refused a lookup made with the service's credential (403): the service user lacks the role assignment this lookup needs (reading users, projects and roles, validating tokens; the OpenStack convention is admin on the service project, see keystone_forbidden in docs/operations.md)";
static const char keystone_refused_token[] =
    "Keystone refused a fresh service token (401): the service user or its application credential is no longer valid";
static const char keystone_unreachable[] =
    "Keystone cannot be reached or fails (transport error, 5xx or 429)";

/* Record the last verdict on the service credential (any thread). */
static void
keystone_cred_set(enum keystone_cred state, const char *message)
{
	pthread_mutex_lock(&ks_lock);
	ks_cred = state;
	ks_cred_message = message;
	pthread_mutex_unlock(&ks_lock);
}

/*
 * The last verdict on the service's Keystone credential, for /readyz:
 * KEYSTONE_CRED_DISABLED without [keystone], _UNKNOWN before the first
 * use, else _OK, _REFUSED or _UNREACHABLE with *message (static) saying
 * why.
 */
enum keystone_cred
keystone_credential_state(const char **message)
{
	enum keystone_cred state;

	if (ks_base == NULL) {
		*message = NULL;
		return (KEYSTONE_CRED_DISABLED);
	}
	pthread_mutex_lock(&ks_lock);
	state = ks_cred;
	*message = ks_cred_message;
	pthread_mutex_unlock(&ks_lock);
	return (state);
}

/* The name of a credential state, as /readyz shows it. */
const char *
keystone_cred_name(enum keystone_cred state)
{
	switch (state) {
	case KEYSTONE_CRED_OK:
		return ("ok");
	case KEYSTONE_CRED_REFUSED:
		return ("refused");
	case KEYSTONE_CRED_UNREACHABLE:
		return ("unreachable");
	case KEYSTONE_CRED_DISABLED:
		return ("disabled");
	default:
		return ("unknown");
	}
}

/*
 * The base URL from [keystone] url: trailing slashes and a trailing
 * "/v3" removed, so that "/v3/..." paths can be appended.
 */
char *
keystone_url_base(const char *url)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		n--;
	if (n >= 3 && strncasecmp(url + n - 3, "/v3", 3) == 0)
		n -= 3;
	while (n > 0 && url[n - 1] == '/')
		n--;
	return (xstrndup(url, n));
}

/* Parse Keystone's "2026-11-28T13:00:00.000000Z"; -1 when invalid. */
double
keystone_parse_time(const char *s)
{
	struct tm tm;
	const char *p;
	double frac = 0, scale = 0.1;

	if (s == NULL)
		return (-1);
	memset(&tm, 0, sizeof tm);
	if ((p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return (-1);
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0 && *p != '\0')
		return (-1);
	return ((double)timegm(&tm) + frac);
}

/* Is an upstream Keystone configured? */
int
keystone_enabled(void)
{
	return (ks_base != NULL);
}

/* Read the application credential secret file (allocated). */
static char *
keystone_read_secret(const char *path, char **cause)
{
	char *buf = NULL, *secret;

	if (util_read_file(path, KEYSTONE_SECRET_MAX, &buf, NULL, cause) != 0)
		return (NULL);
	if (*util_trim(buf) == '\0') {
		xasprintf(cause, "%s is empty", path);
		freezero_str(buf);
		return (NULL);
	}
	secret = xstrdup(util_trim(buf));
	freezero_str(buf);
	return (secret);
}

/* Set up the client from [keystone] (main thread; errors are fatal). */
int
keystone_init(const struct config *cfg, char **cause)
{
	char *secret;

	if (cfg->keystone_url == NULL)
		return (0);
	if (cfg->keystone_app_cred_id == NULL ||
	    cfg->keystone_app_cred_secret_file == NULL) {
		xasprintf(cause,
		    "[keystone] url is set: application_credential_id and application_credential_secret_file are required");
		return (-1);
	}
	if ((secret = keystone_read_secret(cfg->keystone_app_cred_secret_file,
		 cause)) == NULL)
		return (-1);
	keystone_shutdown();
	ks_base = keystone_url_base(cfg->keystone_url);
	ks_ca_file = cfg->keystone_ca_file != NULL
	    ? xstrdup(cfg->keystone_ca_file)
	    : NULL;
	ks_app_id = xstrdup(cfg->keystone_app_cred_id);
	ks_secret = secret;
	ks_connect_ms = cfg->k8s_connect_timeout * 1000;
	ks_timeout_ms = cfg->keystone_timeout * 1000;
	ks_allow_http = strncasecmp(ks_base, "http://", 7) == 0;
	if (ks_allow_http)
		log_warn(
		    "[keystone] url is plain http: tokens cross the network unencrypted");
	keystone_caches_init(cfg);
	log_info("keystone: admin callers validated by %s", ks_base);
	return (0);
}

/*
 * SIGHUP: take the application credential (id and secret file) of the
 * reloaded configuration; a failure keeps the one in use.  The next
 * service authentication uses it; the service token in hand stays valid.
 * url, ca_file and cache_ttl are read at startup only.
 */
int
keystone_reload(const struct config *cfg, char **cause)
{
	char *secret, *old, *old_id;

	if (ks_base == NULL)
		return (0);
	if (cfg->keystone_app_cred_id == NULL ||
	    cfg->keystone_app_cred_secret_file == NULL) {
		xasprintf(cause,
		    "[keystone] application_credential_id and application_credential_secret_file are required");
		return (-1);
	}
	if ((secret = keystone_read_secret(cfg->keystone_app_cred_secret_file,
		 cause)) == NULL)
		return (-1);
	pthread_mutex_lock(&ks_lock);
	old = ks_secret;
	ks_secret = secret;
	old_id = ks_app_id;
	ks_app_id = xstrdup(cfg->keystone_app_cred_id);
	if (ks_cred == KEYSTONE_CRED_REFUSED) {
		/* A new credential may be the fix: /readyz asks again. */
		ks_cred = KEYSTONE_CRED_UNKNOWN;
		ks_cred_message = NULL;
	}
	pthread_mutex_unlock(&ks_lock);
	freezero_str(old);
	free(old_id);
	return (0);
}

/* Forget the configuration and the service token (main thread). */
void
keystone_shutdown(void)
{
	pthread_mutex_lock(&ks_lock);
	freezero_str(ks_secret);
	freezero_str(ks_token);
	ks_secret = ks_token = NULL;
	ks_renew_at = 0;
	pthread_mutex_unlock(&ks_lock);
	free(ks_base);
	free(ks_ca_file);
	free(ks_app_id);
	ks_base = ks_ca_file = ks_app_id = NULL;
	keystone_caches_free();
}

/* This worker's state, created on first use. */
static struct keystone_worker *
keystone_worker_get(struct worker *w)
{
	struct keystone_worker *kw;

	pthread_mutex_lock(&ks_lock);
	LIST_FOREACH(kw, &ks_workers, entry)
	{
		if (kw->w == w)
			break;
	}
	if (kw == NULL) {
		kw = xcalloc(1, sizeof *kw);
		kw->w = w;
		TAILQ_INIT(&kw->waiting);
		LIST_INSERT_HEAD(&ks_workers, kw, entry);
	}
	pthread_mutex_unlock(&ks_lock);
	return (kw);
}

/* Free an operation (not in flight, not queued). */
static void
keystone_op_free(struct keystone_op *op)
{
	free(op->path);
	freezero_str(op->subject);
	free(op);
}

/*
 * A worker is being freed (after its thread ended): cancel what it has in
 * flight, without callbacks.  Call before fetch_destroy.
 */
void
keystone_worker_free(struct worker *w)
{
	struct keystone_worker *kw;
	struct keystone_op *op;

	pthread_mutex_lock(&ks_lock);
	LIST_FOREACH(kw, &ks_workers, entry)
	{
		if (kw->w == w)
			break;
	}
	if (kw != NULL)
		LIST_REMOVE(kw, entry);
	pthread_mutex_unlock(&ks_lock);
	keystone_revoke_worker_free(w); /* its poll is one of kw's ops */
	if (kw == NULL)
		return;
	fetch_cancel(kw->auth);
	while ((op = TAILQ_FIRST(&kw->waiting)) != NULL) {
		TAILQ_REMOVE(&kw->waiting, op, entry);
		keystone_op_free(op);
	}
	free(kw);
}

/* A copy of the service token when usable now, else NULL. */
static char *
keystone_token_copy(long *generation)
{
	char *t = NULL;

	pthread_mutex_lock(&ks_lock);
	if (ks_token != NULL && util_now() < ks_renew_at) {
		t = xstrdup(ks_token);
		*generation = ks_generation;
	}
	pthread_mutex_unlock(&ks_lock);
	return (t);
}

/* Keystone refused token generation: drop it so the next use renews. */
static void
keystone_token_invalidate(long generation)
{
	pthread_mutex_lock(&ks_lock);
	if (ks_generation == generation) {
		freezero_str(ks_token);
		ks_token = NULL;
		ks_renew_at = 0;
	}
	pthread_mutex_unlock(&ks_lock);
}

/* Store a new service token expiring at expires. */
static void
keystone_token_set(const char *token, double expires)
{
	double now = util_now(), before = KEYSTONE_RENEW_BEFORE;

	if ((expires - now) / 2 < before)
		before = (expires - now) / 2;
	pthread_mutex_lock(&ks_lock);
	freezero_str(ks_token);
	ks_token = xstrdup(token);
	ks_renew_at = expires - before;
	ks_generation++;
	pthread_mutex_unlock(&ks_lock);
}

/* The application-credential authentication body (secret inside). */
static char *
keystone_auth_body(void)
{
	cJSON *doc, *id;
	char *out;

	doc = cJSON_CreateObject();
	id = cJSON_AddObjectToObject(cJSON_AddObjectToObject(doc, "auth"),
	    "identity");
	cJSON_AddItemToObject(id, "methods",
	    cJSON_CreateStringArray((const char *[]){ "application_credential" },
		1));
	id = cJSON_AddObjectToObject(id, "application_credential");
	pthread_mutex_lock(&ks_lock);
	cJSON_AddStringToObject(id, "id", ks_app_id);
	cJSON_AddStringToObject(id, "secret", ks_secret);
	pthread_mutex_unlock(&ks_lock);
	out = json_print(doc);
	id = cJSON_GetObjectItem(id, "secret");
	explicit_bzero(id->valuestring, strlen(id->valuestring));
	cJSON_Delete(doc);
	return (out);
}

/* Fill the parts of a fetch request every Keystone call shares. */
static void
keystone_request_init(struct fetch_request *req, const char *method,
    const char *url)
{
	memset(req, 0, sizeof *req);
	req->method = method;
	req->url = url;
	req->ca_file = ks_ca_file;
	req->connect_timeout_ms = ks_connect_ms;
	req->timeout_ms = ks_timeout_ms;
	req->max_response = KEYSTONE_RESPONSE_MAX;
	req->allow_http = ks_allow_http;
}

/*
 * Count a Keystone call that gave no usable answer, by reason (the
 * k8sauth_keystone_errors_total metric).  auth: the service
 * authentication, whose refusal is the application credential's.
 */
static void
keystone_count_error(const struct fetch_result *res, int auth)
{
	static const char *const by_error[] = { [FETCH_CONNECT] = "connect",
		[FETCH_TIMEOUT] = "timeout",
		[FETCH_TLS] = "tls",
		[FETCH_TOO_LARGE] = "too_large",
		[FETCH_OTHER] = "other" };

	if (res->error != FETCH_OK)
		metrics_keystone_error(by_error[res->error] != NULL
			? by_error[res->error]
			: "other");
	else if (res->status == 429)
		metrics_keystone_error("rate_limited");
	else if (res->status >= 500)
		metrics_keystone_error("server_error");
	else if (auth)
		metrics_keystone_error("credential_refused");
	else if (res->status == 401)
		metrics_keystone_error("service_token_refused");
	else if (res->status == 403)
		metrics_keystone_error("forbidden");
	else
		metrics_keystone_error("unexpected_status");
}

/*
 * Fail an operation: refused (the service credential, with why) or else
 * unavailable, with an optional Retry-After.
 */
static void
keystone_op_fail(struct keystone_op *op, const char *retry_after,
    const char *refused)
{
	struct keystone_result res;

	memset(&res, 0, sizeof res);
	res.unavailable = refused == NULL;
	res.refused = refused;
	res.retry_after = retry_after;
	op->cb(&res, op->arg);
	keystone_op_free(op);
}

/* Expiry of a service token from its document; now + 60 s if absent. */
static double
keystone_auth_expiry(const struct fetch_result *res)
{
	cJSON *doc;
	const cJSON *exp;
	double t = -1;

	if ((doc = json_parse(res->body, res->bodylen, NULL)) != NULL) {
		exp = cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "token"),
		    "expires_at");
		if (cJSON_IsString(exp))
			t = keystone_parse_time(exp->valuestring);
	}
	cJSON_Delete(doc);
	return (t > 0 ? t : util_now() + 60);
}

/*
 * Did the authentication give us a token?  1, or 0 with *refused set when
 * Keystone refused the credential itself (401, 403); logs why not.
 */
static int
keystone_auth_ok(const struct fetch_result *res, const char **refused)
{
	*refused = NULL;
	if (res->error != FETCH_OK) {
		keystone_count_error(res, 1);
		log_warn("keystone: service authentication failed: %s",
		    res->errmsg != NULL ? res->errmsg : "transfer error");
		keystone_cred_set(KEYSTONE_CRED_UNREACHABLE,
		    keystone_unreachable);
		return (0);
	}
	if (res->status == 401 || res->status == 403) {
		keystone_count_error(res, 1);
		log_err("keystone: the application credential was refused (HTTP %ld): %s",
		    res->status, keystone_refused_auth);
		*refused = keystone_refused_auth;
		keystone_cred_set(KEYSTONE_CRED_REFUSED, keystone_refused_auth);
		return (0);
	}
	if (res->status != 201 || res->subject_token == NULL) {
		keystone_count_error(res, 1);
		log_err("keystone: the service authentication failed (HTTP %ld)",
		    res->status);
		keystone_cred_set(KEYSTONE_CRED_UNREACHABLE,
		    keystone_unreachable);
		return (0);
	}
	keystone_cred_set(KEYSTONE_CRED_OK, NULL);
	return (1);
}

/* The service authentication finished: start or fail the waiters. */
static void
keystone_auth_done_cb(const struct fetch_result *res, void *arg)
{
	struct keystone_worker *kw = arg;
	struct keystone_op *op;
	unsigned long epoch = kw->epoch;
	const char *refused;
	int ok;
	char *cause = NULL;

	kw->auth = NULL;
	if ((ok = keystone_auth_ok(res, &refused)) != 0) {
		keystone_token_set(res->subject_token,
		    keystone_auth_expiry(res));
		log_info("keystone: service token obtained");
	}
	while ((op = TAILQ_FIRST(&kw->waiting)) != NULL && op->epoch <= epoch) {
		TAILQ_REMOVE(&kw->waiting, op, entry);
		op->waiting = 0;
		if (!ok)
			keystone_op_fail(op, res->retry_after, refused);
		else if (keystone_op_start(op, &cause) != 0) {
			log_warn("keystone: %s", cause);
			free(cause);
			cause = NULL;
			keystone_op_fail(op, NULL, NULL);
		}
	}
}

/* Start this worker's service authentication unless one is running. */
static int
keystone_auth_start(struct keystone_worker *kw, char **cause)
{
	struct fetch_request req;
	char *url, *body;

	if (kw->auth != NULL)
		return (0);
	xasprintf(&url, "%s/v3/auth/tokens", ks_base);
	body = keystone_auth_body();
	keystone_request_init(&req, "POST", url);
	req.body = body;
	req.bodylen = strlen(body);
	kw->auth =
	    fetch_start(kw->w->fetch, &req, keystone_auth_done_cb, kw, cause);
	freezero_str(body);
	free(url);
	if (kw->auth == NULL)
		return (-1);
	kw->epoch++;
	return (0);
}

/*
 * Check the service credential before any lookup needs it (/readyz while
 * the state is unknown): start this worker's service authentication unless
 * a usable token is in hand.  The verdict lands in the credential state.
 */
void
keystone_probe(struct worker *w)
{
	long generation;
	char *token, *cause = NULL;

	if (ks_base == NULL)
		return;
	if ((token = keystone_token_copy(&generation)) != NULL) {
		freezero_str(token);
		return;
	}
	if (keystone_auth_start(keystone_worker_get(w), &cause) != 0) {
		log_warn("keystone: %s", cause);
		free(cause);
	}
}

/*
 * Map a finished GET to a result for the owner: refused (403, or 401 to a
 * token just obtained), unavailable (no answer, 5xx, 429, not JSON) or
 * Keystone's answer.
 */
static void
keystone_op_result(struct keystone_op *op, const struct fetch_result *res)
{
	struct keystone_result r;
	char *cause = NULL;

	memset(&r, 0, sizeof r);
	r.status = res->status;
	r.retry_after = res->retry_after;
	if (res->error == FETCH_OK &&
	    (res->status == 403 || res->status == 401)) {
		keystone_count_error(res, 0);
		r.refused = res->status == 403 ? keystone_refused_lookup
					       : keystone_refused_token;
		log_err("keystone: GET %s: %s", op->path, r.refused);
		keystone_cred_set(KEYSTONE_CRED_REFUSED, r.refused);
	} else if (res->error != FETCH_OK || res->status == 429 ||
	    res->status >= 500) {
		keystone_count_error(res, 0);
		keystone_cred_set(KEYSTONE_CRED_UNREACHABLE,
		    keystone_unreachable);
		log_warn("keystone: GET %s: %s", op->path,
		    res->error != FETCH_OK
			? (res->errmsg != NULL ? res->errmsg : "transfer error")
			: "refused or failed");
		r.unavailable = 1;
	} else if (res->status >= 200 && res->status < 300 &&
	    (r.doc = json_parse(res->body, res->bodylen, &cause)) == NULL) {
		log_warn("keystone: GET %s: answer is not JSON: %s", op->path,
		    cause);
		free(cause);
		metrics_keystone_error("invalid_json");
		r.unavailable = 1;
	} else {
		if (res->status >= 300 && res->status != 404)
			keystone_count_error(res, 0); /* the caller decides */
		keystone_cred_set(KEYSTONE_CRED_OK, NULL);
	}
	op->cb(&r, op->arg);
	cJSON_Delete(r.doc);
}

/* A GET finished; a 401 for our token renews it and retries once. */
static void
keystone_op_done_cb(const struct fetch_result *res, void *arg)
{
	struct keystone_op *op = arg;
	char *cause = NULL;

	op->transfer = NULL;
	if (res->error == FETCH_OK && res->status == 401 && !op->retried) {
		log_info("keystone: service token refused; re-authenticating");
		keystone_token_invalidate(op->generation);
		op->retried = 1;
		if (keystone_op_start(op, &cause) == 0)
			return;
		log_warn("keystone: %s", cause);
		free(cause);
		keystone_op_fail(op, NULL, NULL);
		return;
	}
	keystone_op_result(op, res);
	keystone_op_free(op);
}

/* Send the GET now, or queue it behind the service authentication. */
static int
keystone_op_start(struct keystone_op *op, char **cause)
{
	struct fetch_request req;
	char *token, *url;

	if ((token = keystone_token_copy(&op->generation)) == NULL) {
		if (keystone_auth_start(op->kw, cause) != 0)
			return (-1);
		op->epoch = op->kw->epoch;
		op->waiting = 1;
		TAILQ_INSERT_TAIL(&op->kw->waiting, op, entry);
		return (0);
	}
	xasprintf(&url, "%s%s", ks_base, op->path);
	keystone_request_init(&req, "GET", url);
	req.auth_token = token;
	req.subject_token = op->subject;
	op->transfer =
	    fetch_start(op->kw->w->fetch, &req, keystone_op_done_cb, op, cause);
	freezero_str(token);
	free(url);
	return (op->transfer != NULL ? 0 : -1);
}

/*
 * GET path ("/v3/...") from Keystone with the service token, and with
 * X-Subject-Token: subject when set.  cb runs once, later, unless the
 * operation is cancelled.  NULL with *cause when it cannot start.
 */
struct keystone_op *
keystone_get(struct worker *w, const char *path, const char *subject,
    keystone_cb cb, void *arg, char **cause)
{
	struct keystone_op *op;

	if (ks_base == NULL) {
		*cause = xstrdup("[keystone] url is not configured");
		return (NULL);
	}
	op = xcalloc(1, sizeof *op);
	op->kw = keystone_worker_get(w);
	op->path = xstrdup(path);
	op->subject = subject != NULL ? xstrdup(subject) : NULL;
	op->cb = cb;
	op->arg = arg;
	if (keystone_op_start(op, cause) != 0) {
		keystone_op_free(op);
		return (NULL);
	}
	return (op);
}

/* Cancel an operation: its callback never runs.  NULL is a no-op. */
void
keystone_cancel(struct keystone_op *op)
{
	if (op == NULL)
		return;
	if (op->waiting)
		TAILQ_REMOVE(&op->kw->waiting, op, entry);
	fetch_cancel(op->transfer);
	keystone_op_free(op);
}
