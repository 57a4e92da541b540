/*
 * metrics.c: counters for /metrics, in Prometheus text format.
 *
 * Logins by result and reason, TokenReview latency per instance (a
 * histogram), HTTP requests by route, method and status, reviews in
 * flight (the review cache, slot and breaker families come from
 * review_cache.c), policy errors, Keystone call errors by reason, the loaded Fernet
 * keys (the primary's age, reload errors, how long reloads have been
 * failing: token_key_status(), about the keys in use, never the files on
 * disk), the seconds left on the loaded TLS certificate, and the abuse
 * limits (throttled logins, open and refused connections, header
 * timeouts).  Counters are
 * process-wide atomics updated from any worker; the per-instance and
 * per-route tables are small, bounded and guarded by one mutex taken only
 * when a new label value first appears.  Rendering runs on a worker.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "k8sauth.h"

#define METRICS_MAX_INSTANCES 256
#define METRICS_MAX_ROUTES    64

/*
 * Login outcomes: one slot per reason (reason.h's metric column says which
 * are labels of their own), slot REASON_NONE for success, and two more:
 * body errors of every kind ("bad_request") and anything else ("other").
 */
#define METRICS_BAD_REQUEST REASON_COUNT
#define METRICS_OTHER       (REASON_COUNT + 1)
#define METRICS_NREASONS    (REASON_COUNT + 2)

/* Why a Keystone call gave no usable answer (keystone.c); last: other. */
static const char *const metrics_ks_reasons[] = { "connect", "timeout", "tls",
	"too_large", "rate_limited", "server_error", "service_token_refused",
	"credential_refused", "forbidden", "unexpected_status", "invalid_json",
	"other" };
#define METRICS_NKSREASONS \
	(sizeof metrics_ks_reasons / sizeof *metrics_ks_reasons)

static const int metrics_statuses[] = { 200, 201, 204, 400, 401, 403, 404, 405,
	409, 413, 415, 429, 500, 502, 503, 504, 0 };
#define METRICS_NSTATUSES (sizeof metrics_statuses / sizeof *metrics_statuses)

static const char *const metrics_methods[] = { "GET", "HEAD", "POST", "PUT",
	"PATCH", "DELETE" };
#define METRICS_NMETHODS (sizeof metrics_methods / sizeof *metrics_methods)

static const double metrics_buckets[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
	0.5, 1, 2.5, 5, 10 };
#define METRICS_NBUCKETS (sizeof metrics_buckets / sizeof *metrics_buckets)

struct metrics_instance {
	char id[ID_LEN + 1];
	_Atomic unsigned long buckets[METRICS_NBUCKETS + 1];
	_Atomic unsigned long count;
	_Atomic unsigned long sum_us;
};

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned long metrics_logins[METRICS_NREASONS];
static _Atomic long metrics_inflight;
static _Atomic unsigned long metrics_policy_errors;
static _Atomic unsigned long metrics_ks_errors[METRICS_NKSREASONS];
static _Atomic unsigned long metrics_throttled;
static _Atomic unsigned long metrics_conns_refused;
static _Atomic unsigned long metrics_header_timeouts;
static struct metrics_instance metrics_instances[METRICS_MAX_INSTANCES];
static _Atomic size_t metrics_ninstances;
static const char *metrics_routes[METRICS_MAX_ROUTES];
static _Atomic size_t metrics_nroutes;
static _Atomic unsigned long
    metrics_http_counts[METRICS_MAX_ROUTES][METRICS_NMETHODS][METRICS_NSTATUSES];

/* The slot of a login outcome (REASON_NONE: success). */
static size_t
metrics_reason_index(enum reason reason)
{
	if (reason == REASON_NONE)
		return (REASON_NONE);
	switch (reason_metric(reason)) {
	case REASON_M_LOGIN:
		return ((size_t)reason);
	case REASON_M_BODY:
		return (METRICS_BAD_REQUEST);
	default:
		return (METRICS_OTHER);
	}
}

/* The label of a login slot, or NULL for a slot that is never rendered. */
static const char *
metrics_reason_label(size_t i)
{
	if (i == REASON_NONE)
		return ("success");
	if (i == METRICS_BAD_REQUEST)
		return ("bad_request");
	if (i == METRICS_OTHER)
		return ("other");
	if (reason_metric((enum reason)i) != REASON_M_LOGIN)
		return (NULL);
	return (reason_name((enum reason)i));
}

/* Count one login outcome (REASON_NONE: success). */
void
metrics_login(enum reason reason)
{
	size_t i = metrics_reason_index(reason);

	atomic_fetch_add_explicit(&metrics_logins[i], 1, memory_order_relaxed);
}

/* A login was refused by the failed-login throttle (429). */
void
metrics_login_throttled(void)
{
	atomic_fetch_add_explicit(&metrics_throttled, 1, memory_order_relaxed);
}

/* A connection was closed at accept: max_connections reached. */
void
metrics_conn_refused(void)
{
	atomic_fetch_add_explicit(&metrics_conns_refused, 1,
	    memory_order_relaxed);
}

/* A connection was closed by header_timeout. */
void
metrics_header_timeout(void)
{
	atomic_fetch_add_explicit(&metrics_header_timeouts, 1,
	    memory_order_relaxed);
}

/* A TokenReview started. */
void
metrics_review_start(void)
{
	atomic_fetch_add_explicit(&metrics_inflight, 1, memory_order_relaxed);
}

/* The slot of an instance, created on first use; NULL when full. */
static struct metrics_instance *
metrics_instance(const char *id)
{
	struct metrics_instance *mi = NULL;
	size_t i, n;

	n = atomic_load(&metrics_ninstances);
	for (i = 0; i < n; i++) {
		if (strcmp(metrics_instances[i].id, id) == 0)
			return (&metrics_instances[i]);
	}
	pthread_mutex_lock(&metrics_lock);
	n = atomic_load(&metrics_ninstances);
	for (i = 0; i < n && mi == NULL; i++) {
		if (strcmp(metrics_instances[i].id, id) == 0)
			mi = &metrics_instances[i];
	}
	if (mi == NULL && n < METRICS_MAX_INSTANCES) {
		mi = &metrics_instances[n];
		snprintf(mi->id, sizeof mi->id, "%s", id);
		atomic_store(&metrics_ninstances, n + 1);
	}
	pthread_mutex_unlock(&metrics_lock);
	return (mi);
}

/* A TokenReview finished after seconds. */
void
metrics_review_done(const char *instance_id, double seconds)
{
	struct metrics_instance *mi;
	size_t b;

	atomic_fetch_sub_explicit(&metrics_inflight, 1, memory_order_relaxed);
	if ((mi = metrics_instance(instance_id)) == NULL)
		return;
	for (b = 0; b < METRICS_NBUCKETS; b++) {
		if (seconds <= metrics_buckets[b])
			break;
	}
	atomic_fetch_add_explicit(&mi->buckets[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mi->count, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&mi->sum_us, (unsigned long)(seconds * 1e6),
	    memory_order_relaxed);
}

/* A policy call failed (error or exhausted budget). */
void
metrics_policy_error(void)
{
	atomic_fetch_add_explicit(&metrics_policy_errors, 1,
	    memory_order_relaxed);
}

/* A Keystone call failed for reason (one of metrics_ks_reasons). */
void
metrics_keystone_error(const char *reason)
{
	size_t i;

	for (i = 0; i < METRICS_NKSREASONS - 1; i++) {
		if (strcmp(metrics_ks_reasons[i], reason) == 0)
			break;
	}
	atomic_fetch_add_explicit(&metrics_ks_errors[i], 1,
	    memory_order_relaxed);
}

/* The index of a route pattern (static string), registered on first use. */
static size_t
metrics_route(const char *route)
{
	size_t i, n;

	n = atomic_load(&metrics_nroutes);
	for (i = 0; i < n; i++) {
		if (metrics_routes[i] == route)
			return (i);
	}
	pthread_mutex_lock(&metrics_lock);
	n = atomic_load(&metrics_nroutes);
	for (i = 0; i < n; i++) {
		if (metrics_routes[i] == route)
			break;
	}
	if (i == n && n < METRICS_MAX_ROUTES) {
		metrics_routes[n] = route;
		atomic_store(&metrics_nroutes, n + 1);
	}
	pthread_mutex_unlock(&metrics_lock);
	return (i < METRICS_MAX_ROUTES ? i : METRICS_MAX_ROUTES - 1);
}

/* Count one answered HTTP request. */
void
metrics_http(const char *route, const char *method, int status)
{
	size_t r, m, s;

	if (route == NULL)
		route = "unmatched";
	r = metrics_route(route);
	for (m = 0; m < METRICS_NMETHODS - 1; m++) {
		if (strcmp(metrics_methods[m], method) == 0)
			break;
	}
	for (s = 0; s < METRICS_NSTATUSES - 1; s++) {
		if (metrics_statuses[s] == status)
			break;
	}
	atomic_fetch_add_explicit(&metrics_http_counts[r][m][s], 1,
	    memory_order_relaxed);
}

/* Write the login counters. */
static void
metrics_render_logins(struct evbuffer *b)
{
	const char *label;
	size_t i;

	evbuffer_add_printf(b,
	    "# HELP k8sauth_logins_total Logins by result and reason.\n# TYPE k8sauth_logins_total counter\n");
	for (i = 0; i < METRICS_NREASONS; i++) {
		if ((label = metrics_reason_label(i)) == NULL)
			continue;
		evbuffer_add_printf(b,
		    "k8sauth_logins_total{result=\"%s\",reason=\"%s\"} %lu\n",
		    i == REASON_NONE ? "success" : "failure", label,
		    atomic_load(&metrics_logins[i]));
	}
}

/* Write the TokenReview histograms. */
static void
metrics_render_reviews(struct evbuffer *b)
{
	struct metrics_instance *mi;
	unsigned long cum;
	size_t i, k, n = atomic_load(&metrics_ninstances);

	evbuffer_add_printf(b,
	    "# HELP k8sauth_tokenreview_duration_seconds TokenReview latency by instance.\n# TYPE k8sauth_tokenreview_duration_seconds histogram\n");
	for (i = 0; i < n; i++) {
		mi = &metrics_instances[i];
		cum = 0;
		for (k = 0; k < METRICS_NBUCKETS; k++) {
			cum += atomic_load(&mi->buckets[k]);
			evbuffer_add_printf(b,
			    "k8sauth_tokenreview_duration_seconds_bucket{instance=\"%s\",le=\"%g\"} %lu\n",
			    mi->id, metrics_buckets[k], cum);
		}
		cum += atomic_load(&mi->buckets[METRICS_NBUCKETS]);
		evbuffer_add_printf(b,
		    "k8sauth_tokenreview_duration_seconds_bucket{instance=\"%s\",le=\"+Inf\"} %lu\n",
		    mi->id, cum);
		evbuffer_add_printf(b,
		    "k8sauth_tokenreview_duration_seconds_sum{instance=\"%s\"} %.6f\n",
		    mi->id, (double)atomic_load(&mi->sum_us) / 1e6);
		evbuffer_add_printf(b,
		    "k8sauth_tokenreview_duration_seconds_count{instance=\"%s\"} %lu\n",
		    mi->id, atomic_load(&mi->count));
	}
	evbuffer_add_printf(b,
	    "# HELP k8sauth_tokenreviews_in_flight TokenReviews waiting for the cluster.\n# TYPE k8sauth_tokenreviews_in_flight gauge\nk8sauth_tokenreviews_in_flight %ld\n",
	    atomic_load(&metrics_inflight));
}

/* Write the HTTP request counters. */
static void
metrics_render_http(struct evbuffer *b)
{
	size_t r, m, s, n = atomic_load(&metrics_nroutes);
	unsigned long v;

	evbuffer_add_printf(b,
	    "# HELP k8sauth_http_requests_total HTTP requests by route, method and status.\n# TYPE k8sauth_http_requests_total counter\n");
	for (r = 0; r < n; r++) {
		for (m = 0; m < METRICS_NMETHODS; m++) {
			for (s = 0; s < METRICS_NSTATUSES; s++) {
				v = atomic_load(&metrics_http_counts[r][m][s]);
				if (v == 0)
					continue;
				evbuffer_add_printf(b,
				    "k8sauth_http_requests_total{route=\"%s\",method=\"%s\",code=\"%s%d\"} %lu\n",
				    metrics_routes[r], metrics_methods[m],
				    metrics_statuses[s] == 0 ? "other" : "",
				    metrics_statuses[s], v);
			}
		}
	}
}

/* Write the Keystone error counters (every reason, zeros included). */
static void
metrics_render_keystone(struct evbuffer *b)
{
	size_t i;

	evbuffer_add_printf(b,
	    "# HELP k8sauth_keystone_errors_total Keystone calls without a "
	    "usable answer, by reason.\n# TYPE k8sauth_keystone_errors_total "
	    "counter\n");
	for (i = 0; i < METRICS_NKSREASONS; i++)
		evbuffer_add_printf(b,
		    "k8sauth_keystone_errors_total{reason=\"%s\"} %lu\n",
		    metrics_ks_reasons[i], atomic_load(&metrics_ks_errors[i]));
}

/* One counter with its HELP and TYPE lines. */
static void
metrics_counter(struct evbuffer *b, const char *name, const char *help,
    unsigned long v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %lu\n",
	    name, help, name, name, v);
}

/* One gauge with its HELP and TYPE lines. */
static void
metrics_gauge(struct evbuffer *b, const char *name, const char *help, double v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.0f\n", name,
	    help, name, name, v);
}

/* Write the loaded Fernet keys' state and the TLS certificate's expiry. */
static void
metrics_render_keys(struct evbuffer *b)
{
	struct token_key_status st;
	double now = util_now(), not_after;

	token_key_status(&st);
	metrics_gauge(b, "k8sauth_fernet_keys_loaded",
	    "Fernet keys in use (primary, secondary and staged).",
	    (double)st.nkeys);
	if (st.nkeys > 0 && st.primary_since > 0)
		metrics_gauge(b, "k8sauth_fernet_primary_key_age_seconds",
		    "Seconds since the loaded primary key became primary "
		    "(the rotation that wrote the loaded staged key).",
		    now - st.primary_since);
	if (st.loaded_at > 0)
		metrics_gauge(b, "k8sauth_fernet_keys_loaded_timestamp_seconds",
		    "When the keys in use were loaded.", st.loaded_at);
	evbuffer_add_printf(b,
	    "# HELP k8sauth_fernet_key_reload_errors_total Key repository "
	    "reloads that failed (the old keys stayed in use).\n# TYPE "
	    "k8sauth_fernet_key_reload_errors_total counter\n"
	    "k8sauth_fernet_key_reload_errors_total %lu\n",
	    st.reload_errors);
	metrics_gauge(b, "k8sauth_fernet_key_reload_failing_seconds",
	    "Seconds the key repository has failed to reload; 0 when the "
	    "last reload worked.",
	    st.failing_since > 0 ? now - st.failing_since : 0);
	if ((not_after = server_tls_not_after()) > 0)
		metrics_gauge(b, "k8sauth_tls_certificate_expiry_seconds",
		    "Seconds until the loaded TLS certificate expires "
		    "(negative: expired).",
		    not_after - now);
}

/* Write the abuse limits: throttled logins, connections. */
static void
metrics_render_limits(struct evbuffer *b)
{
	metrics_counter(b, "k8sauth_logins_throttled_total",
	    "Logins refused 429 too_many_requests by the failed-login throttle.",
	    atomic_load(&metrics_throttled));
	metrics_gauge(b, "k8sauth_connections_open",
	    "Client connections open, counted from accept.",
	    server != NULL ? (double)atomic_load(&server->connections) : 0);
	metrics_counter(b, "k8sauth_connections_refused_total",
	    "Connections closed at accept because max_connections were open.",
	    atomic_load(&metrics_conns_refused));
	metrics_counter(b, "k8sauth_header_timeouts_total",
	    "Connections closed for not completing the TLS handshake and first request within header_timeout.",
	    atomic_load(&metrics_header_timeouts));
}

/* Gauges with decimals (seconds). */
static void
metrics_gauge_seconds(struct evbuffer *b, const char *name, const char *help,
    double v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %.3f\n", name,
	    help, name, name, v);
}

/* Write the database's and the snapshot's state (dbthread.c). */
static void
metrics_render_database(struct evbuffer *b)
{
	struct snapshot *s = snapshot_get();

	metrics_gauge(b, "k8sauth_database_up",
	    "1 when the database answered the last attempt, 0 during an outage (logins go on from the snapshot).",
	    dbthread_up() ? 1 : 0);
	metrics_counter(b, "k8sauth_database_reconnects_total",
	    "Times the database came back after an outage.",
	    (unsigned long)dbthread_reconnects());
	if (s != NULL) {
		metrics_gauge(b, "k8sauth_snapshot_revision",
		    "The database revision the in-memory snapshot was loaded at.",
		    (double)snapshot_revision(s));
		metrics_gauge_seconds(b, "k8sauth_snapshot_age_seconds",
		    "Seconds since the snapshot was last known current (grows during a database outage).",
		    snapshot_age(s));
		metrics_gauge_seconds(b, "k8sauth_snapshot_load_seconds",
		    "How long the last snapshot load took.",
		    snapshot_load_seconds(s));
	}
	snapshot_unref(s);
}

/* The Prometheus text of every metric (allocated). */
char *
metrics_render(const struct config *cfg, time_t started)
{
	struct evbuffer *b;

	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add_printf(b,
	    "# HELP k8sauth_build_info Version.\n# TYPE k8sauth_build_info gauge\nk8sauth_build_info{version=\"%s\"} 1\n",
	    K8SAUTH_VERSION);
	evbuffer_add_printf(b,
	    "# HELP process_start_time_seconds Start time.\n# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %lld\n",
	    (long long)started);
	metrics_render_logins(b);
	metrics_render_reviews(b);
	review_cache_render(b);
	metrics_render_http(b);
	evbuffer_add_printf(b,
	    "# HELP k8sauth_policy_errors_total Policy calls that failed (error or budget).\n# TYPE k8sauth_policy_errors_total counter\nk8sauth_policy_errors_total %lu\n",
	    atomic_load(&metrics_policy_errors));
	metrics_render_keystone(b);
	metrics_render_keys(b);
	metrics_render_limits(b);
	metrics_render_database(b);
	jwks_metrics_render(b);
	return (http_buffer_string(b));
}
