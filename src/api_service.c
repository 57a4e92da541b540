/*
 * api_service.c: the service routes: version documents, /healthz, /readyz.
 *
 * Unauthenticated (but /metrics: the metrics token or loopback); run on
 * worker threads.  /readyz checks that this worker's database answers and
 * that the credential and Fernet keys are loaded, and details the keys in
 * use (a repository that stopped reloading shows there, see below).
 */
#include <arpa/inet.h>
#include <netinet/in.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "k8sauth.h"

/* GET / and GET /v4: the version document. */
void
api_version(struct request *r)
{
	cJSON *doc, *v, *links, *link, *types, *t;
	char *base, *href;

	base = http_public_url(r);
	xasprintf(&href, "%s/v4/", base);
	free(base);
	doc = cJSON_CreateObject();
	v = cJSON_AddObjectToObject(doc, "version");
	cJSON_AddStringToObject(v, "id", "v4");
	cJSON_AddStringToObject(v, "status", "stable");
	cJSON_AddStringToObject(v, "updated", "2026-11-28T00:00:00Z");
	links = cJSON_AddArrayToObject(v, "links");
	link = cJSON_CreateObject();
	cJSON_AddStringToObject(link, "rel", "self");
	cJSON_AddStringToObject(link, "href", href);
	cJSON_AddItemToArray(links, link);
	types = cJSON_AddArrayToObject(v, "media-types");
	t = cJSON_CreateObject();
	cJSON_AddStringToObject(t, "base", "application/json");
	cJSON_AddStringToObject(t, "type",
	    "application/vnd.openstack.identity-v4+json");
	cJSON_AddItemToArray(types, t);
	free(href);
	http_reply_json(r, 200, doc);
}

/* GET /healthz: the process serves. */
void
api_healthz(struct request *r)
{
	cJSON *doc = cJSON_CreateObject();

	cJSON_AddStringToObject(doc, "status", "ok");
	http_reply_json(r, 200, doc);
}

/*
 * The state of the service's Keystone credential, added to the /readyz
 * document: {"credential": "ok" | "refused" | "unreachable" | "unknown",
 * "message": why}.  While unknown, a service authentication is started so
 * that the next look tells.  It never makes the process unready: every
 * replica shares the credential, and taking them all out of service would
 * stop the logins that do not need Keystone.
 */
static void
api_readyz_keystone(struct request *r, cJSON *doc)
{
	enum keystone_cred state;
	const char *message;
	cJSON *ks;

	state = keystone_credential_state(&message);
	if (state == KEYSTONE_CRED_DISABLED)
		return;
	if (state == KEYSTONE_CRED_UNKNOWN)
		keystone_probe(r->worker);
	ks = cJSON_AddObjectToObject(doc, "keystone");
	cJSON_AddStringToObject(ks, "credential", keystone_cred_name(state));
	if (message != NULL)
		cJSON_AddStringToObject(ks, "message", message);
}

/*
 * The "fernet_keys" detail of /readyz: the keys in use and whether the
 * repository still reloads.  status "ok", "reload_failing" (within
 * [fernet_tokens] reload_failure_grace) or "stale" (longer: the keys in
 * use no longer follow the repository; a warning says so).  Still 200:
 * every node shares the repository, so failing every readiness probe
 * would turn a degraded service (the old keys still work) into an outage.
 */
static cJSON *
api_readyz_keys(struct request *r, cJSON *doc)
{
	struct token_key_status st;
	cJSON *k;
	double now = util_now(), failing;
	char *warning;

	token_key_status(&st);
	failing = st.failing_since > 0 ? now - st.failing_since : 0;
	k = cJSON_AddObjectToObject(doc, "fernet_keys");
	cJSON_AddStringToObject(k, "status",
	    st.failing_since == 0 ? "ok"
		: failing > (double)r->cfg->fernet_reload_failure_grace
		? "stale"
		: "reload_failing");
	cJSON_AddNumberToObject(k, "loaded", (double)st.nkeys);
	cJSON_AddNumberToObject(k, "primary_key_age_seconds",
	    st.primary_since > 0 ? floor(now - st.primary_since) : 0);
	cJSON_AddNumberToObject(k, "reload_errors", (double)st.reload_errors);
	cJSON_AddNumberToObject(k, "reload_failing_seconds", floor(failing));
	if (st.failing_since > 0 &&
	    failing > (double)r->cfg->fernet_reload_failure_grace) {
		xasprintf(&warning,
		    "the fernet key repository has failed to reload for %.0f s; the keys loaded before stay in use",
		    failing);
		cJSON_AddItemToArray(cJSON_AddArrayToObject(doc, "warnings"),
		    cJSON_CreateString(warning));
		free(warning);
	}
	return (k);
}

/*
 * The stored data logins read: the request's snapshot.  A database
 * outage does not make the replica unready (a load balancer must not pull
 * every replica because the database blinked): "database" says it.
 */
static void
api_readyz_database(struct request *r, cJSON *doc)
{
	cJSON *d;

	d = cJSON_AddObjectToObject(doc, "snapshot");
	cJSON_AddNumberToObject(d, "revision",
	    (double)snapshot_revision(r->snap));
	cJSON_AddNumberToObject(d, "age_seconds",
	    floor(snapshot_age(r->snap) * 1000) / 1000);
	cJSON_AddStringToObject(doc, "database",
	    dbthread_up() ? "ok" : "unavailable");
}

/* GET /readyz: 200 only when everything a login needs is loaded. */
void
api_readyz(struct request *r)
{
	cJSON *doc;

	if (r->snap == NULL) {
		http_reply_reason(r, REASON_not_ready,
		    "the database is not available");
		return;
	}
	if (!secret_loaded()) {
		http_reply_reason(r, REASON_not_ready,
		    "the credential keys are not loaded");
		return;
	}
	if (r->worker->policy == NULL) {
		http_reply_reason(r, REASON_not_ready,
		    "the policy is not loaded");
		return;
	}
	if (!token_ready()) {
		http_reply_reason(r, REASON_not_ready,
		    "the fernet key repository is not loaded");
		return;
	}
	doc = cJSON_CreateObject();
	cJSON_AddStringToObject(doc, "status", "ready");
	api_readyz_database(r, doc);
	api_readyz_keystone(r, doc);
	api_readyz_keys(r, doc);
	cJSON_AddItemToObject(doc, "jwks", jwks_status_json(r->cfg));
	http_reply_json(r, 200, doc);
}

/* Is the peer address a loopback address (127/8, ::1, ::ffff:127/104)? */
static int
api_metrics_loopback(const char *ip)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (inet_pton(AF_INET, ip, &a4) == 1)
		return ((ntohl(a4.s_addr) >> 24) == 127);
	if (inet_pton(AF_INET6, ip, &a6) != 1)
		return (0);
	if (IN6_IS_ADDR_LOOPBACK(&a6))
		return (1);
	return (IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127);
}

/*
 * May this request read /metrics?  With [metrics] token_file: only with
 * "Authorization: Bearer TOKEN" (compared in constant time; a wrong or
 * missing one is 401).  Without: loopback clients only (403).  Never the
 * admin token: a scraper needs no power over the API.
 */
static int
api_metrics_allowed(struct request *r)
{
	const char *want = r->cfg->metrics_token;
	const char *h = http_header(r, "Authorization");

	if (want == NULL) {
		if (api_metrics_loopback(r->client_ip))
			return (1);
		http_reply_reason(r, REASON_forbidden,
		    "/metrics answers loopback clients only; set [metrics] token_file to let a scraper in");
		return (0);
	}
	if (h != NULL && strncasecmp(h, "Bearer ", 7) == 0 &&
	    util_ct_equal(h + 7, strlen(h + 7), want, strlen(want)))
		return (1);
	http_set_header(r, "WWW-Authenticate", "Bearer realm=\"metrics\"");
	http_reply_reason(r, REASON_invalid_token,
	    "/metrics needs Authorization: Bearer with the metrics token");
	return (0);
}

/* GET /metrics: Prometheus text, to the metrics token or loopback. */
void
api_metrics(struct request *r)
{
	struct evbuffer *b;
	char *text;

	if (!r->cfg->metrics_enabled) {
		http_reply_reason(r, REASON_not_found, "metrics are disabled");
		return;
	}
	if (!api_metrics_allowed(r))
		return;
	text = metrics_render(r->cfg, r->worker->srv->started);
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(b, text, strlen(text));
	free(text);
	http_set_header(r, "Content-Type", "text/plain; version=0.0.4");
	http_reply_buffer(r, 200, b);
	evbuffer_free(b);
}
