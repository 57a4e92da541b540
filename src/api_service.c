/*
 * api_service.c: the service routes: version documents, /healthz, /readyz.
 *
 * Unauthenticated; run on worker threads.  /readyz checks that this
 * worker's database answers and that the credential and Fernet keys are
 * loaded.
 */
#include <stdlib.h>
#include <string.h>

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

/* GET /readyz: 200 only when everything a login needs is loaded. */
void
api_readyz(struct request *r)
{
	cJSON *doc;

	if (db_schema_version(r->worker->db) <= 0) {
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
	api_readyz_keystone(r, doc);
	http_reply_json(r, 200, doc);
}

/* GET /metrics: Prometheus text; admin only with [metrics] require_auth. */
static void
api_metrics_answer(struct request *r)
{
	struct evbuffer *b;
	char *text;

	if (r->caller.kind != CALLER_NONE && !r->caller.is_admin) {
		http_reply_reason(r, REASON_forbidden, "metrics need an admin");
		return;
	}
	text = metrics_render(r->cfg, r->worker->srv->started);
	if ((b = evbuffer_new()) == NULL)
		fatalx("evbuffer_new failed");
	evbuffer_add(b, text, strlen(text));
	free(text);
	http_set_header(r, "Content-Type", "text/plain; version=0.0.4");
	http_reply_buffer(r, 200, b);
	evbuffer_free(b);
}

/* GET /metrics */
void
api_metrics(struct request *r)
{
	const struct config *cfg = r->cfg;

	if (!cfg->metrics_enabled) {
		http_reply_reason(r, REASON_not_found, "metrics are disabled");
		return;
	}
	if (cfg->metrics_require_auth) {
		if (auth_caller(r, api_metrics_answer) == 0)
			api_metrics_answer(r);
		return;
	}
	api_metrics_answer(r);
}
