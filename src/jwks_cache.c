/*
 * jwks_cache.c: an instance's service-account signing keys, and the
 * signature step of a login (API.md §8).
 *
 * Key source per instance: its `jwks` field when set (parsed once, kept
 * while the text is unchanged); else OIDC discovery, GET
 * {host}/.well-known/openid-configuration, then its jwks_uri (https only),
 * both through the worker's libcurl multi (fetch.c) with the outbound
 * rules of a TokenReview: the same bearer and CA as the review
 * (k8s_review_credentials) and, when a non-admin set the host, [k8s_auth]
 * allowed_hosts.  A jwks_uri on another scheme, host or port than the
 * instance's host gets no credential, the system CA store, and is held to
 * allowed_hosts whoever set the host: the discovery document is the
 * cluster's word, not the operator's.  A jwks_uri with user info (or a
 * byte no host name has) in its authority is refused outright: libcurl
 * would connect to the host after the "@".
 *
 * The cache is process-wide: one entry per instance (a small list under
 * jwks_lock) holding a reference-counted, immutable key set (jwks.c), so a
 * worker verifies without the lock after taking a reference.  Keys are
 * fetched again after [k8s_auth] jwks_max_age, and when a JWT names an
 * unknown kid, at most once per jwks_refresh_interval (which also spaces
 * the retries after a failed fetch).  A failed refresh keeps the keys
 * already held.  jwks_forget() drops an instance's entry (the admin API
 * calls it on every update, so host, ca_cert, reviewer, jwks, issuer and
 * jwt_signature changes all count, and on delete); a fetch that started
 * before is recognised by the entry's generation and its result dropped.
 * At most JWKS_MAX_ENTRIES instances are cached; beyond, logins go on
 * with the TokenReview alone (no_keys).
 *
 * Waiting: a login that needs keys the cache does not hold waits for the
 * fetch (bounded by two fetch timeouts, discovery then JWKS, and by the
 * request's own deadline) rather than going review-only: a forged JWT is
 * then refused without a TokenReview from the very first login, and the
 * outcome does not depend on timing.  Fetches in flight are per worker
 * thread (a thread-local list: all waiters of a fetch live on the thread
 * that runs it, so no cross-thread wake-up exists); two workers needing
 * the same keys at once may each fetch them once.
 *
 * Keys unobtainable (discovery 401/403/404, unreachable, no `jwks`): the
 * login goes on with the TokenReview alone, counted as no_keys in
 * k8sauth_jwt_signature_checks_total, logged at each failed fetch and
 * shown per instance in /readyz's "jwks" detail.  Never a silent pass.
 *
 * Runs on worker threads; never blocks on the network.
 */
#include <sys/queue.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "k8sauth.h"

#define JWKS_DISCOVERY     "/.well-known/openid-configuration"
#define JWKS_LEGACY_ISSUER "kubernetes/serviceaccount"
#define JWKS_MAX_ENTRIES   4096
#define JWKS_MAX_URL       2048

/* Signature outcomes and fetch outcomes, for /metrics. */
enum jwks_sig_outcome {
	JWKS_SIG_OK,
	JWKS_SIG_INVALID,
	JWKS_SIG_ISSUER_MISMATCH,
	JWKS_SIG_NO_KEYS,
	JWKS_SIG_SKIPPED,
	JWKS_SIG_COUNT
};
static const char *const jwks_sig_labels[] = { "ok", "invalid",
	"issuer_mismatch", "no_keys", "skipped" };
enum jwks_fetch_outcome {
	JWKS_FETCH_OK,
	JWKS_FETCH_UNAUTHORIZED, /* 401 or 403 */
	JWKS_FETCH_NOT_FOUND,    /* 404 */
	JWKS_FETCH_HTTP_ERROR,   /* any other status */
	JWKS_FETCH_UNREACHABLE,  /* connect, timeout, TLS, destination */
	JWKS_FETCH_INVALID,      /* a document that does not parse */
	JWKS_FETCH_COUNT
};
static const char *const jwks_fetch_labels[] = { "ok", "unauthorized",
	"not_found", "http_error", "unreachable", "invalid" };

static _Atomic unsigned long jwks_sig_counts[JWKS_SIG_COUNT];
static _Atomic unsigned long jwks_fetch_counts[JWKS_FETCH_COUNT];

/* What the process knows of one instance's keys. */
struct jwks_entry {
	char id[ID_LEN + 1];
	uint64_t gen;          /* bumped by jwks_forget */
	struct jwks_set *keys; /* NULL: none */
	char *source;          /* inline: the jwks text the keys came from */
	char *issuer;          /* discovery's, or NULL */
	double fetched_at;     /* keys obtained (0: never) */
	double attempt_at;     /* last fetch finished (0: never) */
	char *error;           /* why the last fetch failed, or NULL */
	LIST_ENTRY(jwks_entry) link;
};

/* A login waiting for a fetch (same thread). */
struct jwks_wait {
	struct jwks_fetch *f;
	jwks_wait_cb cb;
	void *arg;
	TAILQ_ENTRY(jwks_wait) link;
};

/* A discovery + JWKS fetch in flight on this thread. */
struct jwks_fetch {
	char id[ID_LEN + 1];
	uint64_t gen;
	struct worker *w;
	const struct config *cfg;
	struct instance origin; /* host, host_admin: copied strings */
	char *bearer;           /* secret: wiped */
	char *ca;
	char *issuer;
	struct fetch_transfer *t;
	TAILQ_HEAD(, jwks_wait) waiters;
	LIST_ENTRY(jwks_fetch) link;
};

static pthread_mutex_t jwks_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, jwks_entry) jwks_entries = LIST_HEAD_INITIALIZER(
    jwks_entries);
static size_t jwks_nentries;
static uint64_t jwks_generation;
static __thread LIST_HEAD(, jwks_fetch) jwks_inflight;

/* Count a signature outcome. */
static void
jwks_count_sig(enum jwks_sig_outcome o)
{
	atomic_fetch_add_explicit(&jwks_sig_counts[o], 1, memory_order_relaxed);
}

/* The entry of an instance, or NULL; jwks_lock held. */
static struct jwks_entry *
jwks_entry_find(const char *id)
{
	struct jwks_entry *e;

	LIST_FOREACH(e, &jwks_entries, link)
	{
		if (strcmp(e->id, id) == 0)
			return (e);
	}
	return (NULL);
}

/*
 * The entry of an instance, created when absent (NULL when the table is
 * full); jwks_lock held.  Generations are process-wide, so a fetch that
 * started for a forgotten entry never matches its successor.
 */
static struct jwks_entry *
jwks_entry_get(const char *id)
{
	struct jwks_entry *e;

	if ((e = jwks_entry_find(id)) != NULL)
		return (e);
	if (jwks_nentries >= JWKS_MAX_ENTRIES)
		return (NULL);
	e = xcalloc(1, sizeof *e);
	snprintf(e->id, sizeof e->id, "%s", id);
	e->gen = ++jwks_generation;
	LIST_INSERT_HEAD(&jwks_entries, e, link);
	jwks_nentries++;
	return (e);
}

/*
 * Drop what is cached for an instance (it was updated or deleted).  A
 * fetch in flight for it will not store its result.
 */
void
jwks_forget(const char *id)
{
	struct jwks_entry *e;

	pthread_mutex_lock(&jwks_lock);
	if ((e = jwks_entry_find(id)) != NULL) {
		LIST_REMOVE(e, link);
		jwks_nentries--;
		jwks_set_unref(e->keys);
		free(e->source);
		free(e->issuer);
		free(e->error);
		free(e);
	}
	pthread_mutex_unlock(&jwks_lock);
}

/* Store a fetch's result (keys NULL: it failed with error). */
static void
jwks_store(struct jwks_fetch *f, struct jwks_set *keys, const char *error)
{
	struct jwks_entry *e;
	double now = util_now();

	pthread_mutex_lock(&jwks_lock);
	e = jwks_entry_find(f->id);
	if (e != NULL && e->gen == f->gen) {
		e->attempt_at = now;
		free(e->error);
		e->error = error != NULL ? xstrdup(error) : NULL;
		if (keys != NULL) {
			jwks_set_unref(e->keys);
			e->keys = jwks_set_ref(keys);
			free(e->issuer);
			e->issuer =
			    f->issuer != NULL ? xstrdup(f->issuer) : NULL;
			e->fetched_at = now;
		}
	}
	pthread_mutex_unlock(&jwks_lock);
}

/* Free a fetch, off the in-flight list (its waiters are gone). */
static void
jwks_fetch_free(struct jwks_fetch *f)
{
	config_unref((struct config *)f->cfg);
	freezero_str(f->bearer);
	free(f->ca);
	free(f->issuer);
	free(f->origin.host);
	free(f);
}

/* The fetch ended: store the result, wake every waiter, free it. */
static void
jwks_fetch_end(struct jwks_fetch *f, enum jwks_fetch_outcome o,
    struct jwks_set *keys, const char *error)
{
	struct jwks_wait *wt;

	atomic_fetch_add_explicit(&jwks_fetch_counts[o], 1,
	    memory_order_relaxed);
	if (error != NULL)
		log_warn("jwks: instance %s: %s; logins go on with the TokenReview alone until the keys can be had",
		    f->id, error);
	else
		log_info("jwks: instance %s: %zu signing key(s) loaded", f->id,
		    jwks_set_count(keys));
	f->t = NULL;
	LIST_REMOVE(f, link); /* a waiter that looks again starts afresh */
	jwks_store(f, keys, error);
	jwks_set_unref(keys);
	while ((wt = TAILQ_FIRST(&f->waiters)) != NULL) {
		TAILQ_REMOVE(&f->waiters, wt, link);
		wt->cb(wt->arg);
		free(wt);
	}
	jwks_fetch_free(f);
}

/* Map a transfer that gave no usable answer to an outcome and message. */
static enum jwks_fetch_outcome
jwks_fetch_error(const struct fetch_result *res, const char *what, char **msg)
{
	if (res->error != FETCH_OK) {
		xasprintf(msg, "%s: %s", what,
		    res->errmsg != NULL ? res->errmsg : "cannot be reached");
		return (JWKS_FETCH_UNREACHABLE);
	}
	xasprintf(msg, "%s answered %ld", what, res->status);
	if (res->status == 401 || res->status == 403)
		return (JWKS_FETCH_UNAUTHORIZED);
	return (
	    res->status == 404 ? JWKS_FETCH_NOT_FOUND : JWKS_FETCH_HTTP_ERROR);
}

/* The JWKS document arrived (or not). */
static void
jwks_keys_cb(const struct fetch_result *res, void *arg)
{
	struct jwks_fetch *f = arg;
	struct jwks_set *keys;
	char *msg = NULL, *why = NULL;
	enum jwks_fetch_outcome o;

	if (res->error != FETCH_OK || res->status != 200) {
		o = jwks_fetch_error(res, "the JWKS", &msg);
		jwks_fetch_end(f, o, NULL, msg);
	} else if ((keys = jwks_parse(res->body, res->bodylen, 0, &why)) ==
	    NULL) {
		xasprintf(&msg, "the fetched JWKS: %s", why);
		jwks_fetch_end(f, JWKS_FETCH_INVALID, NULL, msg);
	} else
		jwks_fetch_end(f, JWKS_FETCH_OK, keys, NULL);
	free(msg);
	free(why);
}

/*
 * Is the authority of url (between "://" and the path) plain host[:port]?
 * User info ("https://host:port@elsewhere/") reads as host and port to
 * outbound_url_host but makes libcurl connect to "elsewhere", and a
 * backslash, space or control byte is read differently by other URL
 * parsers: any of them would send an instance's credential to another
 * host than the one compared.
 */
static int
jwks_plain_authority(const char *url)
{
	const char *a = strstr(url, "://");
	size_t n, i;

	if (a == NULL)
		return (0);
	a += 3;
	n = strcspn(a, "/?#");
	for (i = 0; i < n; i++) {
		if (a[i] == '@' || a[i] == '\\' ||
		    (unsigned char)a[i] <= 0x20 || a[i] == 0x7f)
			return (0);
	}
	return (1);
}

/* Does url have the same scheme, host and port as the instance's host? */
static int
jwks_same_origin(const char *url, const char *host)
{
	char *a, *b;
	int same;

	if (!jwks_plain_authority(url) ||
	    strncasecmp(url, "https://", 8) != 0 ||
	    strncasecmp(host, "https://", 8) != 0)
		return (0);
	a = outbound_url_host(url);
	b = outbound_url_host(host);
	same = a != NULL && b != NULL && strcasecmp(a, b) == 0 &&
	    outbound_url_port(url) == outbound_url_port(host);
	free(a);
	free(b);
	return (same);
}

/* Start one GET of url for f; 0 or -1 with *cause. */
static int
jwks_get(struct jwks_fetch *f, const char *url, int origin, fetch_cb cb,
    char **cause)
{
	const struct config *cfg = f->cfg;
	struct fetch_request req;

	memset(&req, 0, sizeof req);
	req.method = "GET";
	req.url = url;
	req.bearer = origin ? f->bearer : NULL;
	req.ca_pem = origin ? f->ca : NULL;
	req.connect_timeout_ms = cfg->k8s_connect_timeout * 1000;
	req.timeout_ms = cfg->k8s_review_timeout * 1000;
	req.max_response = (size_t)cfg->k8s_max_response_size;
	req.allow_http = origin && cfg->k8s_allow_insecure_http;
	req.allowed_hosts =
	    origin && f->origin.host_admin ? NULL : cfg->k8s_allowed_hosts;
	req.proxy = cfg->k8s_proxy;
	req.cluster = 1; /* the clusters' slots, not Keystone's */
	f->t = fetch_start(f->w->fetch, &req, cb, f, cause);
	return (f->t != NULL ? 0 : -1);
}

/* Read issuer and jwks_uri from a discovery document; 0 or -1. */
static int
jwks_discovery_parse(struct jwks_fetch *f, const char *body, size_t len,
    char **uri, char **msg)
{
	const cJSON *iss, *ju;
	cJSON *doc;
	char *why = NULL;
	int rc = -1;

	if ((doc = json_parse(body, len, &why)) == NULL) {
		xasprintf(msg, "the discovery document is not JSON: %s", why);
		free(why);
		return (-1);
	}
	iss = cJSON_GetObjectItemCaseSensitive(doc, "issuer");
	ju = cJSON_GetObjectItemCaseSensitive(doc, "jwks_uri");
	if (!cJSON_IsString(iss) || iss->valuestring[0] == '\0' ||
	    !cJSON_IsString(ju) || strlen(ju->valuestring) > JWKS_MAX_URL)
		*msg = xstrdup(
		    "the discovery document has no issuer or jwks_uri string");
	else if (!jwks_plain_authority(ju->valuestring))
		*msg = xstrdup(
		    "the discovery document's jwks_uri carries user info or a byte not allowed in a host name");
	else if (strncasecmp(ju->valuestring, "https://", 8) != 0 &&
	    !jwks_same_origin(ju->valuestring, f->origin.host))
		*msg =
		    xstrdup("the discovery document's jwks_uri is not https");
	else if (outbound_check_host(ju->valuestring, &why) != 0) {
		xasprintf(msg, "the discovery document's jwks_uri: %s", why);
		free(why);
	} else {
		f->issuer = xstrdup(iss->valuestring);
		*uri = xstrdup(ju->valuestring);
		rc = 0;
	}
	cJSON_Delete(doc);
	return (rc);
}

/* The discovery document arrived (or not): go on to jwks_uri. */
static void
jwks_discovery_cb(const struct fetch_result *res, void *arg)
{
	struct jwks_fetch *f = arg;
	char *msg = NULL, *uri = NULL, *cause = NULL;
	enum jwks_fetch_outcome o;

	f->t = NULL;
	if (res->error != FETCH_OK || res->status != 200) {
		o = jwks_fetch_error(res, "OIDC discovery", &msg);
		jwks_fetch_end(f, o, NULL, msg);
	} else if (jwks_discovery_parse(f, res->body, res->bodylen, &uri,
		       &msg) != 0)
		jwks_fetch_end(f, JWKS_FETCH_INVALID, NULL, msg);
	else if (jwks_get(f, uri, jwks_same_origin(uri, f->origin.host),
		     jwks_keys_cb, &cause) != 0) {
		xasprintf(&msg, "the JWKS: %s", cause);
		jwks_fetch_end(f, JWKS_FETCH_UNREACHABLE, NULL, msg);
	}
	free(uri);
	free(msg);
	free(cause);
}

static pthread_once_t jwks_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t jwks_thread_key;

/*
 * A worker thread ends: free the fetches it still had in flight that no
 * login waits for (their transfers are freed, without callbacks, by
 * fetch_destroy).  One with waiters is left alone: a login may still
 * cancel its wait while the worker is torn down.
 */
static void
jwks_thread_end(void *unused)
{
	struct jwks_fetch *f, *next;

	(void)unused;
	for (f = LIST_FIRST(&jwks_inflight); f != NULL; f = next) {
		next = LIST_NEXT(f, link);
		if (TAILQ_EMPTY(&f->waiters)) {
			LIST_REMOVE(f, link);
			jwks_fetch_free(f);
		}
	}
}

/* Create the key whose destructor is jwks_thread_end. */
static void
jwks_key_init(void)
{
	if (pthread_key_create(&jwks_thread_key, jwks_thread_end) != 0)
		fatalx("jwks: pthread_key_create failed");
}

/* The fetch of this thread for an instance, or NULL. */
static struct jwks_fetch *
jwks_fetch_find(const char *id)
{
	struct jwks_fetch *f;

	LIST_FOREACH(f, &jwks_inflight, link)
	{
		if (strcmp(f->id, id) == 0)
			return (f);
	}
	return (NULL);
}

/* Start discovery for an instance; the fetch, or NULL (logged). */
static struct jwks_fetch *
jwks_fetch_start(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, uint64_t gen)
{
	struct jwks_fetch *f;
	char *url, *cause = NULL;
	size_t hlen = strlen(inst->host);

	f = xcalloc(1, sizeof *f);
	snprintf(f->id, sizeof f->id, "%s", inst->id);
	f->gen = gen;
	f->w = w;
	f->cfg = config_ref((struct config *)cfg);
	f->origin.host = xstrdup(inst->host);
	f->origin.host_admin = inst->host_admin;
	TAILQ_INIT(&f->waiters);
	LIST_INSERT_HEAD(&jwks_inflight, f, link);
	pthread_once(&jwks_key_once, jwks_key_init);
	pthread_setspecific(jwks_thread_key, f); /* non-NULL: destructor runs */
	k8s_review_credentials(cfg, inst, jwt, &f->bearer, &f->ca);
	while (hlen > 0 && inst->host[hlen - 1] == '/')
		hlen--;
	xasprintf(&url, "%.*s" JWKS_DISCOVERY, (int)hlen, inst->host);
	if (jwks_get(f, url, 1, jwks_discovery_cb, &cause) != 0) {
		log_warn("jwks: instance %s: cannot start OIDC discovery: %s",
		    inst->id, cause);
		free(cause);
		LIST_REMOVE(f, link);
		jwks_fetch_free(f);
		f = NULL;
	}
	free(url);
	return (f);
}

/* Park a login on a fetch of this thread (started when needed). */
static struct jwks_wait *
jwks_wait_on(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, uint64_t gen, jwks_wait_cb cb,
    void *arg)
{
	struct jwks_fetch *f;
	struct jwks_wait *wt;

	if ((f = jwks_fetch_find(inst->id)) == NULL &&
	    (f = jwks_fetch_start(w, cfg, inst, jwt, gen)) == NULL)
		return (NULL);
	wt = xcalloc(1, sizeof *wt);
	wt->f = f;
	wt->cb = cb;
	wt->arg = arg;
	TAILQ_INSERT_TAIL(&f->waiters, wt, link);
	return (wt);
}

/* The waiting login went away (deadline, client gone): forget it. */
void
jwks_wait_cancel(struct jwks_wait *wt)
{
	if (wt == NULL)
		return;
	TAILQ_REMOVE(&wt->f->waiters, wt, link);
	free(wt);
}

/* The keys of an inline jwks (parsed once per text); NULL on error. */
static struct jwks_set *
jwks_inline_keys(struct jwks_entry *e, const char *text, char **cause)
{
	struct jwks_set *keys;

	if (e->keys != NULL && e->source != NULL &&
	    strcmp(e->source, text) == 0)
		return (jwks_set_ref(e->keys));
	if ((keys = jwks_parse(text, strlen(text), 0, cause)) == NULL)
		return (NULL);
	jwks_set_unref(e->keys);
	free(e->source);
	e->keys = jwks_set_ref(keys);
	e->source = xstrdup(text);
	e->fetched_at = util_now();
	return (keys);
}

/* What the cache lets a login do; filled under jwks_lock. */
struct jwks_view {
	struct jwks_set *keys; /* a reference, or NULL */
	char *issuer;          /* discovery's, copied */
	int fetch;             /* a fetch is due: wait for it */
	int fresh;             /* keys fetched within refresh_interval */
	uint64_t gen;
};

/* Look at the cache for an instance: keys, and whether to fetch. */
static void
jwks_view(const struct config *cfg, const struct instance *inst, int kid_known,
    struct jwks_view *v)
{
	struct jwks_entry *e;
	double now = util_now();
	int tried, stale;
	char *why = NULL;

	memset(v, 0, sizeof *v);
	pthread_mutex_lock(&jwks_lock);
	if ((e = jwks_entry_get(inst->id)) == NULL)
		goto out;
	v->gen = e->gen;
	if (inst->jwks != NULL) {
		if ((v->keys = jwks_inline_keys(e, inst->jwks, &why)) == NULL) {
			log_warn("jwks: instance %s: its jwks: %s", inst->id,
			    why);
			free(why);
		}
		v->fresh = 1;
		goto out;
	}
	tried = e->attempt_at != 0 &&
	    now - e->attempt_at < (double)cfg->k8s_jwks_refresh_interval;
	stale = e->keys == NULL ||
	    now - e->fetched_at >= (double)cfg->k8s_jwks_max_age;
	v->keys = jwks_set_ref(e->keys);
	v->issuer = e->issuer != NULL ? xstrdup(e->issuer) : NULL;
	v->fresh = tried;
	v->fetch = !tried && (stale || !kid_known);
out:
	pthread_mutex_unlock(&jwks_lock);
}

/* The iss a JWT must carry, or NULL: any. */
static const char *
jwks_expected_issuer(const struct instance *inst, const struct jwt *j,
    const char *discovered)
{
	if (j->legacy)
		return (JWKS_LEGACY_ISSUER); /* secret tokens: always this */
	return (inst->issuer != NULL ? inst->issuer : discovered);
}

/* Refuse with reason and a message; counts the outcome. */
static enum jwks_check_result
jwks_refuse(enum jwks_sig_outcome o, enum reason reason, const char *text,
    enum reason *out, char **msg)
{
	jwks_count_sig(o);
	*out = reason;
	*msg = xstrdup(text);
	return (JWKS_CHECK_REFUSE);
}

/* Verify with keys in hand; the check's result. */
static enum jwks_check_result
jwks_decide(const struct instance *inst, const char *token, const struct jwt *j,
    const struct jwks_view *v, enum reason *reason, char **msg)
{
	const char *want;
	enum jwks_verdict vd;

	vd = jwks_verify(v->keys, j->alg, j->kid, token, j->signing_len, j->sig,
	    j->siglen);
	if (vd == JWKS_BAD)
		return (jwks_refuse(JWKS_SIG_INVALID, REASON_signature_invalid,
		    "the JWT's signature does not verify with the cluster's keys (or its alg is not RS256 or ES256)",
		    reason, msg));
	if (vd == JWKS_NO_KEY)
		return (jwks_refuse(JWKS_SIG_INVALID, REASON_signature_invalid,
		    "the JWT is signed with a key the cluster does not publish",
		    reason, msg));
	want = jwks_expected_issuer(inst, j, v->issuer);
	if (want != NULL && (j->iss == NULL || strcmp(j->iss, want) != 0))
		return (jwks_refuse(JWKS_SIG_ISSUER_MISMATCH,
		    REASON_issuer_mismatch,
		    "the JWT's issuer is not the cluster's", reason, msg));
	jwks_count_sig(JWKS_SIG_OK);
	return (JWKS_CHECK_PASS);
}

/*
 * Without keys: only a configured issuer can be checked; the login goes
 * on with the TokenReview alone (counted as no_keys, or skipped).
 */
static enum jwks_check_result
jwks_no_keys(const struct instance *inst, const struct jwt *j,
    enum jwks_sig_outcome o, enum reason *reason, char **msg)
{
	const char *want = jwks_expected_issuer(inst, j, NULL);

	if (inst->issuer != NULL &&
	    (j->iss == NULL || strcmp(j->iss, want) != 0))
		return (jwks_refuse(JWKS_SIG_ISSUER_MISMATCH,
		    REASON_issuer_mismatch,
		    "the JWT's issuer is not the cluster's", reason, msg));
	jwks_count_sig(o);
	return (JWKS_CHECK_PASS);
}

/*
 * The signature step of a login (between the cheap JWT checks and the
 * TokenReview).  PASS: go on; REFUSE: *reason and *msg (no review);
 * WAIT: keys are being fetched, *wait is set and cb(arg) is called on this
 * thread when they are (call jwks_check again then), unless
 * jwks_wait_cancel(*wait) is called first.
 */
enum jwks_check_result
jwks_check(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *token, const struct jwt *j,
    jwks_wait_cb cb, void *arg, struct jwks_wait **wait, enum reason *reason,
    char **msg)
{
	struct jwks_view v;
	enum jwks_check_result rc;
	int kid_known = 1;

	*wait = NULL;
	if (inst->jwt_signature_skip)
		return (jwks_no_keys(inst, j, JWKS_SIG_SKIPPED, reason, msg));
	jwks_view(cfg, inst, 1, &v);
	if (v.keys != NULL && j->kid != NULL &&
	    !jwks_set_has_kid(v.keys, j->kid)) {
		kid_known = 0; /* rotated? look again */
		jwks_set_unref(v.keys);
		free(v.issuer);
		jwks_view(cfg, inst, 0, &v);
	}
	if (v.fetch &&
	    (*wait = jwks_wait_on(w, cfg, inst, token, v.gen, cb, arg)) != NULL)
		rc = JWKS_CHECK_WAIT;
	else if (v.keys == NULL)
		rc = jwks_no_keys(inst, j, JWKS_SIG_NO_KEYS, reason, msg);
	else if (!kid_known && !v.fresh && inst->jwks == NULL)
		rc = jwks_no_keys(inst, j, JWKS_SIG_NO_KEYS, reason, msg);
	else
		rc = jwks_decide(inst, token, j, &v, reason, msg);
	jwks_set_unref(v.keys);
	free(v.issuer);
	return (rc);
}

/* One instance's state for /readyz. */
static cJSON *
jwks_entry_json(const struct jwks_entry *e, double now)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "instance_id", e->id);
	cJSON_AddStringToObject(o, "source",
	    e->source != NULL ? "jwks" : "discovery");
	cJSON_AddNumberToObject(o, "keys", (double)jwks_set_count(e->keys));
	if (e->fetched_at != 0)
		cJSON_AddNumberToObject(o, "age_seconds",
		    (double)(long)(now - e->fetched_at));
	cJSON_AddStringToObject(o, "state",
	    e->keys == NULL        ? "review_only"
		: e->error != NULL ? "stale"
				   : "ok");
	if (e->error != NULL)
		cJSON_AddStringToObject(o, "error", e->error);
	return (o);
}

/*
 * The "jwks" detail of /readyz: every instance the process has looked up
 * keys for, with its state ("ok", "stale": a refresh failed and older
 * keys are used, "review_only": no keys, logins rely on the TokenReview
 * alone).  Informational: it does not make /readyz fail, a cluster's
 * discovery endpoint is not the server's readiness.
 */
cJSON *
jwks_status_json(const struct config *cfg)
{
	struct jwks_entry *e;
	cJSON *a = cJSON_CreateArray();
	double now = util_now();

	(void)cfg;
	pthread_mutex_lock(&jwks_lock);
	LIST_FOREACH(e, &jwks_entries, link)
	{
		if (e->attempt_at != 0 || e->keys != NULL)
			cJSON_AddItemToArray(a, jwks_entry_json(e, now));
	}
	pthread_mutex_unlock(&jwks_lock);
	return (a);
}

/* The signature and JWKS fetch counters, Prometheus text. */
void
jwks_metrics_render(struct evbuffer *b)
{
	size_t i;

	evbuffer_add_printf(b,
	    "# HELP k8sauth_jwt_signature_checks_total Local JWT signature checks by outcome.\n"
	    "# TYPE k8sauth_jwt_signature_checks_total counter\n");
	for (i = 0; i < JWKS_SIG_COUNT; i++)
		evbuffer_add_printf(b,
		    "k8sauth_jwt_signature_checks_total{outcome=\"%s\"} %lu\n",
		    jwks_sig_labels[i], atomic_load(&jwks_sig_counts[i]));
	evbuffer_add_printf(b,
	    "# HELP k8sauth_jwks_fetches_total Fetches of clusters' signing keys (OIDC discovery and JWKS) by outcome.\n"
	    "# TYPE k8sauth_jwks_fetches_total counter\n");
	for (i = 0; i < JWKS_FETCH_COUNT; i++)
		evbuffer_add_printf(b,
		    "k8sauth_jwks_fetches_total{outcome=\"%s\"} %lu\n",
		    jwks_fetch_labels[i], atomic_load(&jwks_fetch_counts[i]));
}
