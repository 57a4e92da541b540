/*
 * k8s_object.c: the cluster objects a login may read after its
 * TokenReview: GET /api/v1/namespaces/{ns} (metadata.labels, for a role's
 * bound_namespace_selector and login policies that need "namespace") and
 * GET /api/v1/namespaces/{ns}/serviceaccounts/{name} (the annotations
 * under [k8s_auth] annotation_prefix, for instances with
 * service_account_annotations and policies that need "service_account").
 *
 * Both go out as the instance's reviewer, through k8s_review_request():
 * the same bearer, trust anchor and outbound rules as the TokenReview.
 * Answers are mapped as for reviews (API.md §3): 401 reviewer_unauthorized,
 * 403 reviewer_forbidden naming the permission the reviewer lacks, 404
 * namespace_not_bound / service_account_not_bound, 429 and 5xx
 * cluster_unavailable, a timeout cluster_timeout.
 *
 * The cache: what a 200 or a 404 said is kept process-wide for [k8s_auth]
 * object_cache_ttl seconds, keyed by instance (id and updated_at, so an
 * edited instance starts afresh), kind, names and, for service accounts,
 * the annotation prefix; at most K8S_OBJECT_CACHE_MAX entries, the oldest
 * dropped first.  Values are kept as JSON text so that no cJSON is shared
 * between threads.  Single flight: a read already in flight on the same
 * worker for the same key gets the new caller as a waiter instead of a
 * second GET (workers do not wait on each other's transfers: their
 * callbacks run on their own event loops).  Errors are never cached.
 *
 * Runs on worker threads; the cache and the flight list are under
 * k8s_object_lock (held only for list work, never across a callback).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define K8S_OBJECT_CACHE_MAX 4096

/* A remembered answer. */
struct k8s_object_entry {
	char *key;
	double expires; /* util_now() seconds */
	int found;      /* 200 (else 404) */
	char *value;    /* labels or annotations as JSON text */
	struct k8s_object_entry *next;
};

/* One GET in flight, and who waits for it (all on worker w). */
struct k8s_object_flight {
	char *key;
	struct worker *w;
	enum k8s_object_kind kind;
	char *prefix; /* annotation prefix (service accounts) */
	long ttl;
	struct fetch_transfer *transfer;
	struct k8s_object *waiters;
	struct k8s_object_flight *next;
};

/* One caller's wait. */
struct k8s_object {
	struct k8s_object_flight *flight;
	k8s_object_cb cb;
	void *arg;
	struct k8s_object *next;
};

static pthread_mutex_t k8s_object_lock = PTHREAD_MUTEX_INITIALIZER;
static struct k8s_object_entry *k8s_object_cache;    /* k8s_object_lock */
static size_t k8s_object_ncache;                     /* k8s_object_lock */
static struct k8s_object_flight *k8s_object_flights; /* k8s_object_lock */

static const char *const k8s_object_kind_names[] = { "namespaces",
	"serviceaccounts" };

/* Free what an outcome holds. */
void
k8s_object_outcome_clear(struct k8s_object_outcome *o)
{
	free(o->message);
	free(o->retry_after);
	cJSON_Delete(o->labels);
	cJSON_Delete(o->annotations);
	memset(o, 0, sizeof *o);
}

static void k8s_object_fail(struct k8s_object_outcome *, enum reason,
    const char *, ...) printflike(3, 4);
/* Set an error outcome. */
static void
k8s_object_fail(struct k8s_object_outcome *o, enum reason reason,
    const char *fmt, ...)
{
	va_list ap;

	o->reason = reason;
	va_start(ap, fmt);
	xvasprintf(&o->message, fmt, ap);
	va_end(ap);
}

/* Free a cache entry. */
static void
k8s_object_entry_free(struct k8s_object_entry *e)
{
	free(e->key);
	free(e->value);
	free(e);
}

/* Drop expired entries, then the oldest while full; lock held. */
static void
k8s_object_cache_trim(double now)
{
	struct k8s_object_entry **pp = &k8s_object_cache, *e;

	while ((e = *pp) != NULL) {
		if (e->expires <= now ||
		    (k8s_object_ncache >= K8S_OBJECT_CACHE_MAX &&
			e->next == NULL)) {
			*pp = e->next;
			k8s_object_entry_free(e);
			k8s_object_ncache--;
		} else
			pp = &e->next;
	}
}

/*
 * Fill o from a cached answer: 1 (found: o holds the value), -1 (cached
 * 404), 0 (nothing cached).  Lock held.
 */
static int
k8s_object_cache_get(const char *key, enum k8s_object_kind kind,
    struct k8s_object_outcome *o)
{
	struct k8s_object_entry *e;
	double now = util_now();
	cJSON *v;

	for (e = k8s_object_cache; e != NULL; e = e->next) {
		if (e->expires > now && strcmp(e->key, key) == 0)
			break;
	}
	if (e == NULL)
		return (0);
	if (!e->found)
		return (-1);
	v = json_parse(e->value, strlen(e->value), NULL);
	if (kind == K8S_OBJECT_NAMESPACE)
		o->labels = v;
	else
		o->annotations = v;
	return (1);
}

/* Remember an answer for ttl seconds (newest first).  Lock held. */
static void
k8s_object_cache_put(const char *key, long ttl, int found, const cJSON *v)
{
	struct k8s_object_entry *e;
	double now = util_now();

	if (ttl <= 0)
		return;
	k8s_object_cache_trim(now);
	e = xcalloc(1, sizeof *e);
	e->key = xstrdup(key);
	e->expires = now + (double)ttl;
	e->found = found;
	e->value = v != NULL ? json_print(v) : NULL;
	e->next = k8s_object_cache;
	k8s_object_cache = e;
	k8s_object_ncache++;
}

/* A copy of the string members of obj (keys starting with prefix). */
static cJSON *
k8s_object_strings(const cJSON *obj, const char *prefix)
{
	cJSON *out = cJSON_CreateObject();
	const cJSON *it;

	cJSON_ArrayForEach(it, obj)
	{
		if (cJSON_IsString(it) && it->string != NULL &&
		    (prefix == NULL ||
			strncmp(it->string, prefix, strlen(prefix)) == 0))
			cJSON_AddStringToObject(out, it->string,
			    it->valuestring);
	}
	return (out);
}

/*
 * Read a 200 answer: a Namespace's metadata.labels, or a
 * ServiceAccount's metadata.annotations under the prefix.  0, or -1 when
 * the body is not such an object.
 */
static int
k8s_object_parse(const struct k8s_object_flight *f, const char *body,
    size_t len, cJSON **value)
{
	cJSON *doc;
	const cJSON *meta, *m;
	int rc = -1;

	if ((doc = json_parse(body, len, NULL)) == NULL)
		return (-1);
	meta = cJSON_GetObjectItemCaseSensitive(doc, "metadata");
	m = cJSON_GetObjectItemCaseSensitive(meta,
	    f->kind == K8S_OBJECT_NAMESPACE ? "labels" : "annotations");
	if (cJSON_IsObject(meta) && (m == NULL || cJSON_IsObject(m))) {
		*value = k8s_object_strings(m,
		    f->kind == K8S_OBJECT_NAMESPACE ? NULL : f->prefix);
		rc = 0;
	}
	cJSON_Delete(doc);
	return (rc);
}

/* Map an HTTP answer other than 200 into o. */
static void
k8s_object_status(const struct k8s_object_flight *f, long status,
    struct k8s_object_outcome *o)
{
	const char *what = k8s_object_kind_names[f->kind];

	if (status == 401)
		k8s_object_fail(o, REASON_reviewer_unauthorized,
		    "the cluster did not accept the reviewer credential");
	else if (status == 403)
		k8s_object_fail(o, REASON_reviewer_forbidden,
		    "the reviewer may not get %s in the cluster (grant it get on %s: see the deployment guide)",
		    what, what);
	else if (status == 404 && f->kind == K8S_OBJECT_NAMESPACE)
		k8s_object_fail(o, REASON_namespace_not_bound,
		    "the namespace does not exist in the cluster");
	else if (status == 404)
		k8s_object_fail(o, REASON_service_account_not_bound,
		    "the service account does not exist in the cluster");
	else if (status == 429 || status >= 500)
		k8s_object_fail(o, REASON_cluster_unavailable,
		    "the cluster answered %ld to the %s read", status, what);
	else
		k8s_object_fail(o, REASON_invalid_review,
		    "the cluster answered the %s read with %ld", what, status);
}

/* Map a transfer's result into o; cache what may be cached. */
static void
k8s_object_result(struct k8s_object_flight *f, const struct fetch_result *res,
    struct k8s_object_outcome *o)
{
	cJSON *v = NULL;

	memset(o, 0, sizeof *o);
	if (res->error == FETCH_OK && res->status == 200) {
		if (k8s_object_parse(f, res->body, res->bodylen, &v) != 0) {
			k8s_object_fail(o, REASON_invalid_review,
			    "the cluster's answer to the %s read is not such an object",
			    k8s_object_kind_names[f->kind]);
			return;
		}
		pthread_mutex_lock(&k8s_object_lock);
		k8s_object_cache_put(f->key, f->ttl, 1, v);
		pthread_mutex_unlock(&k8s_object_lock);
		if (f->kind == K8S_OBJECT_NAMESPACE)
			o->labels = v;
		else
			o->annotations = v;
		return;
	}
	if (res->error == FETCH_OK) {
		if (res->status == 404) {
			pthread_mutex_lock(&k8s_object_lock);
			k8s_object_cache_put(f->key, f->ttl, 0, NULL);
			pthread_mutex_unlock(&k8s_object_lock);
		}
		k8s_object_status(f, res->status, o);
		if (reason_status(o->reason) == 503 && res->retry_after != NULL)
			o->retry_after = xstrdup(res->retry_after);
		return;
	}
	log_warn("cluster %s read failed: %s", k8s_object_kind_names[f->kind],
	    res->errmsg != NULL ? res->errmsg : "unknown error");
	if (res->error == FETCH_TIMEOUT)
		k8s_object_fail(o, REASON_cluster_timeout,
		    "the cluster did not answer the %s read in time",
		    k8s_object_kind_names[f->kind]);
	else if (res->error == FETCH_TLS)
		k8s_object_fail(o, REASON_cluster_tls_error,
		    "the cluster's TLS certificate could not be verified");
	else if (res->error == FETCH_DESTINATION)
		k8s_object_fail(o, REASON_destination_forbidden,
		    "the instance's host resolves to an address the server may not contact");
	else if (res->error == FETCH_TOO_LARGE)
		k8s_object_fail(o, REASON_invalid_review,
		    "the cluster's answer to the %s read is too large",
		    k8s_object_kind_names[f->kind]);
	else
		k8s_object_fail(o, REASON_cluster_unavailable,
		    "the cluster cannot be reached");
}

/* Unlink a flight from the list; lock held. */
static void
k8s_object_flight_unlink(struct k8s_object_flight *f)
{
	struct k8s_object_flight **pp;

	for (pp = &k8s_object_flights; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == f) {
			*pp = f->next;
			return;
		}
	}
}

/* Free a flight (unlinked, no waiters left). */
static void
k8s_object_flight_free(struct k8s_object_flight *f)
{
	free(f->key);
	free(f->prefix);
	free(f);
}

/* A copy of an outcome, for the second and later waiters. */
static void
k8s_object_outcome_copy(struct k8s_object_outcome *to,
    const struct k8s_object_outcome *from)
{
	memset(to, 0, sizeof *to);
	to->reason = from->reason;
	if (from->message != NULL)
		to->message = xstrdup(from->message);
	if (from->retry_after != NULL)
		to->retry_after = xstrdup(from->retry_after);
	to->labels = cJSON_Duplicate(from->labels, 1);
	to->annotations = cJSON_Duplicate(from->annotations, 1);
}

/* The GET finished: answer every waiter, each with its own outcome. */
static void
k8s_object_done_cb(const struct fetch_result *res, void *arg)
{
	struct k8s_object_flight *f = arg;
	struct k8s_object_outcome o, each;
	struct k8s_object *wt, *next;

	f->transfer = NULL;
	k8s_object_result(f, res, &o);
	pthread_mutex_lock(&k8s_object_lock);
	k8s_object_flight_unlink(f);
	wt = f->waiters;
	f->waiters = NULL;
	pthread_mutex_unlock(&k8s_object_lock);
	for (; wt != NULL; wt = next) {
		next = wt->next;
		k8s_object_outcome_copy(&each, &o);
		wt->cb(&each, wt->arg);
		k8s_object_outcome_clear(&each);
		free(wt);
	}
	k8s_object_outcome_clear(&o);
	k8s_object_flight_free(f);
}

/* The cache key: instance, its version, kind, names, prefix. */
static char *
k8s_object_key(const struct config *cfg, const struct instance *inst,
    enum k8s_object_kind kind, const char *ns, const char *name)
{
	char *key;

	xasprintf(&key, "%s\n%s\n%d\n%s\n%s\n%s", inst->id, inst->updated_at,
	    (int)kind, ns, kind == K8S_OBJECT_NAMESPACE ? "" : name,
	    kind == K8S_OBJECT_NAMESPACE ? "" : cfg->k8s_annotation_prefix);
	return (key);
}

/* Start the GET of a new flight; 0, or -1 with *o holding the error. */
static int
k8s_object_flight_start(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, const char *ns,
    const char *name, struct k8s_object_flight *f, struct k8s_object_outcome *o)
{
	struct k8s_request kr;
	char *path, *cause = NULL;

	if (f->kind == K8S_OBJECT_NAMESPACE)
		xasprintf(&path, "/api/v1/namespaces/%s", ns);
	else
		xasprintf(&path, "/api/v1/namespaces/%s/serviceaccounts/%s", ns,
		    name);
	k8s_review_request(cfg, inst, jwt, path, &kr);
	f->transfer =
	    fetch_start(w->fetch, &kr.req, k8s_object_done_cb, f, &cause);
	k8s_review_request_clear(&kr);
	free(path);
	if (f->transfer != NULL)
		return (0);
	k8s_object_fail(o, REASON_cluster_unavailable, "%s", cause);
	o->retry_after = xstrdup("1");
	free(cause);
	return (-1);
}

/*
 * Read a namespace (labels) or a service account (annotations under the
 * prefix) of the reviewed identity: ns and name come from the
 * TokenReview, never from the JWT alone, and are Kubernetes names
 * (api_login.c checked them).  Returns a wait (cb is called later; cancel
 * with k8s_object_cancel), or NULL with *o holding the answer: from the
 * cache, or an error.
 */
struct k8s_object *
k8s_object_get(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, enum k8s_object_kind kind,
    const char *ns, const char *name, k8s_object_cb cb, void *arg,
    struct k8s_object_outcome *o)
{
	struct k8s_object_flight *f;
	struct k8s_object *wt;
	char *key;
	int hit;

	memset(o, 0, sizeof *o);
	key = k8s_object_key(cfg, inst, kind, ns, name);
	wt = xcalloc(1, sizeof *wt);
	wt->cb = cb;
	wt->arg = arg;
	pthread_mutex_lock(&k8s_object_lock);
	if ((hit = k8s_object_cache_get(key, kind, o)) == 0) {
		for (f = k8s_object_flights; f != NULL; f = f->next) {
			if (f->w == w && strcmp(f->key, key) == 0)
				break;
		}
		if (f != NULL) {
			wt->flight = f;
			wt->next = f->waiters;
			f->waiters = wt;
		}
	}
	pthread_mutex_unlock(&k8s_object_lock);
	if (hit != 0 || wt->flight != NULL) {
		if (hit == -1) {
			f = &(struct k8s_object_flight){ .kind = kind };
			k8s_object_status(f, 404, o);
		}
		free(key);
		if (hit != 0)
			free(wt);
		return (hit != 0 ? NULL : wt);
	}
	f = xcalloc(1, sizeof *f);
	f->key = key;
	f->w = w;
	f->kind = kind;
	f->prefix = xstrdup(cfg->k8s_annotation_prefix);
	f->ttl = cfg->k8s_object_cache_ttl;
	if (k8s_object_flight_start(w, cfg, inst, jwt, ns, name, f, o) != 0) {
		k8s_object_flight_free(f);
		free(wt);
		return (NULL);
	}
	wt->flight = f;
	f->waiters = wt;
	pthread_mutex_lock(&k8s_object_lock);
	f->next = k8s_object_flights;
	k8s_object_flights = f;
	pthread_mutex_unlock(&k8s_object_lock);
	return (wt);
}

/*
 * Stop waiting: the callback is never called.  The last waiter to leave
 * cancels the GET itself.
 */
void
k8s_object_cancel(struct k8s_object *wt)
{
	struct k8s_object_flight *f;
	struct k8s_object **pp;
	int last;

	if (wt == NULL)
		return;
	f = wt->flight;
	pthread_mutex_lock(&k8s_object_lock);
	for (pp = &f->waiters; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == wt) {
			*pp = wt->next;
			break;
		}
	}
	if ((last = f->waiters == NULL))
		k8s_object_flight_unlink(f);
	pthread_mutex_unlock(&k8s_object_lock);
	free(wt);
	if (last) {
		fetch_cancel(f->transfer);
		k8s_object_flight_free(f);
	}
}
