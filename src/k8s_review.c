/*
 * k8s_review.c: where the TokenReview is made.
 *
 * k8s_review_start() picks the reviewer bearer and the trust anchor of an
 * instance (API.md §1: stored reviewer token, else this server's own
 * service-account token, else the client's JWT; stored ca_cert, else the
 * local ca.crt, else the system store), builds the official
 * authentication.k8s.io/v1 TokenReview and starts it on the worker's
 * fetch machinery.  When it completes, k8s_review_parse() turns the answer
 * into a review_outcome: an error (status + reason, as API.md §3 maps
 * them) or the reviewed identity.
 *
 * The server's own service-account token goes only to the API server of
 * the cluster the server runs in (https://kubernetes.default.svc[.
 * cluster.local] or KUBERNETES_SERVICE_HOST:PORT): an instance pointing
 * anywhere else reviews with its stored reviewer token or the client's
 * JWT (API.md §7).  An instance whose host a non-admin set is held to
 * [k8s_auth] allowed_hosts when the socket opens (fetch.c).
 *
 * The local service-account files are cached process-wide and re-read when
 * the kubelet swaps them (checked at most once a second: a stat(2) of a
 * tmpfs file).  Runs on worker threads; never blocks on the network.
 */
#include <sys/stat.h>

#include <pthread.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define K8S_LOCAL_MAX       (64 * 1024)
#define K8S_SA_PREFIX       "system:serviceaccount:"
#define K8S_EXTRA_POD_NAME  "authentication.kubernetes.io/pod-name"
#define K8S_EXTRA_POD_UID   "authentication.kubernetes.io/pod-uid"
#define K8S_EXTRA_NODE_NAME "authentication.kubernetes.io/node-name"
#define K8S_EXTRA_NODE_UID  "authentication.kubernetes.io/node-uid"

/* One cached local file: contents and the identity it was read from. */
struct k8s_local_file {
	char *data;
	dev_t dev;
	ino_t ino;
	struct timespec mtim;
	off_t size;
	double checked;
};

struct k8s_review {
	struct fetch_transfer *transfer;
	char instance_id[ID_LEN + 1];
	k8s_review_cb cb;
	void *arg;
};

static pthread_mutex_t k8s_local_lock = PTHREAD_MUTEX_INITIALIZER;
static struct k8s_local_file k8s_local_token;
static struct k8s_local_file k8s_local_ca;

/* Refresh one cached file if it changed; caller holds the lock. */
static void
k8s_local_refresh(struct k8s_local_file *f, const char *dir, const char *name)
{
	struct stat st;
	char *path, *data = NULL, *cause = NULL;
	double now = util_now();

	if (f->checked != 0 && now - f->checked < 1.0)
		return;
	f->checked = now;
	xasprintf(&path, "%s/%s", dir, name);
	if (stat(path, &st) == -1) {
		freezero_str(f->data);
		f->data = NULL;
		free(path);
		return;
	}
	if (f->data != NULL && st.st_dev == f->dev && st.st_ino == f->ino &&
	    st.st_size == f->size && st.st_mtim.tv_sec == f->mtim.tv_sec &&
	    st.st_mtim.tv_nsec == f->mtim.tv_nsec) {
		free(path);
		return;
	}
	if (util_read_file(path, K8S_LOCAL_MAX, &data, NULL, &cause) != 0) {
		log_warn("local service account: %s", cause);
		free(cause);
	} else
		log_info("local service account: loaded %s", path);
	freezero_str(f->data);
	f->data = data != NULL ? xstrdup(util_trim(data)) : NULL;
	freezero_str(data);
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->size = st.st_size;
	f->mtim = st.st_mtim;
	free(path);
}

/* A copy of a local file's contents, or NULL (the caller frees it). */
static char *
k8s_local_get(struct k8s_local_file *f, const char *dir, const char *name)
{
	char *copy = NULL;

	pthread_mutex_lock(&k8s_local_lock);
	k8s_local_refresh(f, dir, name);
	if (f->data != NULL && *f->data != '\0')
		copy = xstrdup(f->data);
	pthread_mutex_unlock(&k8s_local_lock);
	return (copy);
}

/* Free what an outcome holds. */
void
k8s_review_outcome_clear(struct k8s_review_outcome *o)
{
	free(o->message);
	free(o->retry_after);
	free(o->username);
	free(o->uid);
	free(o->namespace);
	free(o->name);
	free(o->pod_name);
	free(o->pod_uid);
	free(o->node_name);
	free(o->node_uid);
	strlist_free(&o->groups);
	strlist_free(&o->audiences);
	cJSON_Delete(o->extra);
	memset(o, 0, sizeof *o);
}

static void k8s_review_fail(struct k8s_review_outcome *o, enum reason reason,
    const char *fmt, ...) printflike(3, 4);
/* Set an error outcome. */
static void
k8s_review_fail(struct k8s_review_outcome *o, enum reason reason,
    const char *fmt, ...)
{
	va_list ap;

	o->reason = reason;
	va_start(ap, fmt);
	xvasprintf(&o->message, fmt, ap);
	va_end(ap);
}

/* Read a JSON array of strings into a list; -1 on a wrong type. */
static int
k8s_review_strings(const cJSON *a, struct strlist *out)
{
	const cJSON *it;

	if (a == NULL || cJSON_IsNull(a))
		return (0);
	if (!cJSON_IsArray(a))
		return (-1);
	cJSON_ArrayForEach(it, a)
	{
		if (!cJSON_IsString(it))
			return (-1);
		out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
		out->v[out->n++] = xstrdup(it->valuestring);
	}
	return (0);
}

/* The first string of extra[key], copied, or NULL. */
static char *
k8s_review_extra(const cJSON *extra, const char *key)
{
	const cJSON *a, *first;

	a = cJSON_GetObjectItemCaseSensitive(extra, key);
	if (!cJSON_IsArray(a) || (first = cJSON_GetArrayItem(a, 0)) == NULL ||
	    !cJSON_IsString(first))
		return (NULL);
	return (xstrdup(first->valuestring));
}

/* Split system:serviceaccount:NS:NAME; -1 when it is not that form. */
static int
k8s_review_username(const char *u, char **ns, char **name)
{
	const char *rest, *colon;

	if (strncmp(u, K8S_SA_PREFIX, strlen(K8S_SA_PREFIX)) != 0)
		return (-1);
	rest = u + strlen(K8S_SA_PREFIX);
	if ((colon = strchr(rest, ':')) == NULL || colon == rest ||
	    colon[1] == '\0' || strchr(colon + 1, ':') != NULL)
		return (-1);
	*ns = xstrndup(rest, (size_t)(colon - rest));
	*name = xstrdup(colon + 1);
	return (0);
}

/* Parse an authenticated status.user into the outcome. */
static void
k8s_review_user(cJSON *status, struct k8s_review_outcome *o)
{
	cJSON *user, *username, *uid, *extra;

	user = cJSON_GetObjectItemCaseSensitive(status, "user");
	username = cJSON_GetObjectItemCaseSensitive(user, "username");
	uid = cJSON_GetObjectItemCaseSensitive(user, "uid");
	extra = cJSON_GetObjectItemCaseSensitive(user, "extra");
	if (!cJSON_IsString(username) ||
	    k8s_review_username(username->valuestring, &o->namespace,
		&o->name) != 0) {
		k8s_review_fail(o, REASON_invalid_review,
		    "the TokenReview did not name a service account");
		return;
	}
	o->username = xstrdup(username->valuestring);
	if (cJSON_IsString(uid))
		o->uid = xstrdup(uid->valuestring);
	if (k8s_review_strings(cJSON_GetObjectItemCaseSensitive(user, "groups"),
		&o->groups) != 0 ||
	    k8s_review_strings(cJSON_GetObjectItemCaseSensitive(status,
				   "audiences"),
		&o->audiences) != 0 ||
	    (extra != NULL && !cJSON_IsObject(extra))) {
		k8s_review_fail(o, REASON_invalid_review,
		    "the TokenReview status has fields of the wrong type");
		return;
	}
	if (extra != NULL) {
		/* Taken out of the answer's tree, not copied: it dies anyway. */
		o->extra = cJSON_DetachItemViaPointer(user, extra);
		k8s_review_extras(o);
	}
}

/*
 * Read the pod and node out of o->extra (also for an outcome unpacked
 * from the review cache, which keeps them only there).
 */
void
k8s_review_extras(struct k8s_review_outcome *o)
{
	if (o->extra == NULL)
		return;
	o->pod_name = k8s_review_extra(o->extra, K8S_EXTRA_POD_NAME);
	o->pod_uid = k8s_review_extra(o->extra, K8S_EXTRA_POD_UID);
	o->node_name = k8s_review_extra(o->extra, K8S_EXTRA_NODE_NAME);
	o->node_uid = k8s_review_extra(o->extra, K8S_EXTRA_NODE_UID);
}

/*
 * Turn a TokenReview answer (HTTP status and body) into an outcome.  On
 * return o->reason is REASON_NONE for an authenticated service account,
 * else the reason to answer with.  Pure: unit-tested on its own.
 */
void
k8s_review_parse(long http_status, const char *body, size_t len,
    struct k8s_review_outcome *o)
{
	cJSON *doc = NULL, *status;
	const cJSON *auth, *err;
	char *cause = NULL, *esc;

	memset(o, 0, sizeof *o);
	if (http_status == 401) {
		k8s_review_fail(o, REASON_reviewer_unauthorized,
		    "the cluster did not accept the reviewer credential");
		return;
	}
	if (http_status == 403) {
		k8s_review_fail(o, REASON_reviewer_forbidden,
		    "the reviewer may not create tokenreviews in the cluster");
		return;
	}
	if (http_status == 429 || http_status >= 500) {
		k8s_review_fail(o, REASON_cluster_unavailable,
		    "the cluster answered %ld", http_status);
		return;
	}
	if (http_status != 200 && http_status != 201) {
		k8s_review_fail(o, REASON_invalid_review,
		    "the cluster answered the TokenReview with %ld",
		    http_status);
		return;
	}
	if ((doc = json_parse(body, len, &cause)) == NULL ||
	    !cJSON_IsObject(doc) ||
	    !cJSON_IsObject(
		status = cJSON_GetObjectItemCaseSensitive(doc, "status"))) {
		k8s_review_fail(o, REASON_invalid_review,
		    "the TokenReview answer is not a TokenReview");
		goto out;
	}
	auth = cJSON_GetObjectItemCaseSensitive(status, "authenticated");
	if (!cJSON_IsTrue(auth)) {
		err = cJSON_GetObjectItemCaseSensitive(status, "error");
		esc = log_escape(cJSON_IsString(err) ? err->valuestring
						     : "(no error given)",
		    300);
		log_info("TokenReview: not authenticated: %s", esc);
		free(esc);
		k8s_review_fail(o, REASON_token_invalid,
		    "the cluster did not authenticate the token");
		goto out;
	}
	k8s_review_user(status, o);
out:
	free(cause);
	cJSON_Delete(doc);
}

/* Is host:port KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT? */
static int
k8s_review_service_env(const char *host, long port)
{
	const char *eh = getenv("KUBERNETES_SERVICE_HOST");
	const char *ep = getenv("KUBERNETES_SERVICE_PORT");
	long p = 443;

	if (eh == NULL || *eh == '\0' || strcasecmp(eh, host) != 0)
		return (0);
	if (ep != NULL && util_parse_long(ep, 1, 65535, &p) != 0)
		return (0);
	return (port == p);
}

/*
 * Is url the API server of the cluster this server runs in, the only
 * place its own service-account token may go?
 */
static int
k8s_review_in_cluster(const char *url)
{
	char *host;
	long port;
	int in;

	if (strncasecmp(url, "https://", 8) != 0 ||
	    (host = outbound_url_host(url)) == NULL)
		return (0);
	port = outbound_url_port(url);
	in = ((strcmp(host, "kubernetes.default.svc") == 0 ||
		  strcmp(host, "kubernetes.default.svc.cluster.local") == 0) &&
		 port == 443) ||
	    k8s_review_service_env(host, port);
	free(host);
	return (in);
}

/*
 * The reviewer bearer: the stored reviewer token, else this server's own
 * token (only towards its own cluster), else the client's JWT.
 */
static char *
k8s_review_bearer(const struct config *cfg, const struct instance *inst,
    const char *jwt)
{
	char *bearer = NULL;

	if (inst->reviewer_jwt != NULL)
		return (xstrdup(inst->reviewer_jwt));
	if (!inst->disable_local_ca_jwt && k8s_review_in_cluster(inst->host))
		bearer = k8s_local_get(&k8s_local_token, cfg->k8s_local_sa_dir,
		    "token");
	return (bearer != NULL ? bearer : xstrdup(jwt));
}

/* The bytes JSON escapes inside a string: quote, backslash, controls. */
static const char k8s_json_special[] =
    "\"\\\001\002\003\004\005\006\007\010\011\012\013\014\015\016\017\020"
    "\021\022\023\024\025\026\027\030\031\032\033\034\035\036\037";

/*
 * Append s to out as the inside of a JSON string (out has room for
 * k8s_review_json_len(s) bytes); returns the new end.  Escapes what JSON
 * requires (quote, backslash, control bytes) and passes every other byte
 * through, as cJSON's printer does; runs without any (a JWT is all
 * base64url and dots) are copied whole.
 */
static char *
k8s_review_json_string(char *out, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char c;
	size_t n;

	for (;;) {
		n = strcspn(s, k8s_json_special);
		memcpy(out, s, n);
		out += n;
		s += n;
		if ((c = (unsigned char)*s++) == '\0')
			return (out);
		if (c == '"' || c == '\\') {
			*out++ = '\\';
			*out++ = (char)c;
		} else {
			memcpy(out, "\\u00", 4);
			out[4] = hex[c >> 4];
			out[5] = hex[c & 0xf];
			out += 6;
		}
	}
}

/* The length of s escaped by k8s_review_json_string. */
static size_t
k8s_review_json_len(const char *s)
{
	size_t len = 0, n;
	unsigned char c;

	for (;;) {
		n = strcspn(s, k8s_json_special);
		len += n;
		s += n;
		if ((c = (unsigned char)*s++) == '\0')
			return (len);
		len += c == '"' || c == '\\' ? 2 : 6;
	}
}

/*
 * The TokenReview request body (allocated; holds the JWT), written
 * straight into one buffer: a cJSON tree of six nodes built, printed and
 * freed per review cost more than the rest of the request set-up
 * (issue 12, bench/README.md).
 */
static char *
k8s_review_body(const char *jwt, const char *audience)
{
	static const char head[] =
	    "{\"apiVersion\":\"authentication.k8s.io/v1\","
	    "\"kind\":\"TokenReview\",\"spec\":{\"token\":\"";
	static const char auds[] = "\",\"audiences\":[\"";
	size_t cap;
	char *out, *p;

	cap = sizeof head + k8s_review_json_len(jwt) + sizeof auds +
	    (audience != NULL ? k8s_review_json_len(audience) : 0) +
	    sizeof "\"]}}";
	p = out = xmalloc(cap);
	memcpy(p, head, sizeof head - 1);
	p = k8s_review_json_string(p + sizeof head - 1, jwt);
	if (audience != NULL) {
		memcpy(p, auds, sizeof auds - 1);
		p = k8s_review_json_string(p + sizeof auds - 1, audience);
		memcpy(p, "\"]}}", sizeof "\"]}}");
	} else
		memcpy(p, "\"}}", sizeof "\"}}");
	return (out);
}

/* The transfer finished: map the result and call the owner. */
static void
k8s_review_done_cb(const struct fetch_result *res, void *arg)
{
	struct k8s_review *rv = arg;
	struct k8s_review_outcome o;

	memset(&o, 0, sizeof o);
	switch (res->error) {
	case FETCH_OK:
		k8s_review_parse(res->status, res->body, res->bodylen, &o);
		if (reason_status(o.reason) == 503 && res->retry_after != NULL)
			o.retry_after = xstrdup(res->retry_after);
		break;
	case FETCH_TIMEOUT:
		k8s_review_fail(&o, REASON_cluster_timeout,
		    "the cluster did not answer the TokenReview in time");
		break;
	case FETCH_TLS:
		k8s_review_fail(&o, REASON_cluster_tls_error,
		    "the cluster's TLS certificate could not be verified");
		break;
	case FETCH_TOO_LARGE:
		k8s_review_fail(&o, REASON_invalid_review,
		    "the TokenReview answer is too large");
		break;
	case FETCH_DESTINATION:
		k8s_review_fail(&o, REASON_destination_forbidden,
		    "the instance's host resolves to an address the server may not contact: %s",
		    res->errmsg != NULL ? res->errmsg : "refused");
		break;
	default:
		k8s_review_fail(&o, REASON_cluster_unavailable,
		    "the cluster cannot be reached");
		break;
	}
	if (res->error != FETCH_OK)
		log_warn("TokenReview failed: %s",
		    res->errmsg != NULL ? res->errmsg : "unknown error");
	rv->transfer = NULL;
	metrics_review_done(rv->instance_id, res->seconds);
	rv->cb(&o, rv->arg);
	k8s_review_outcome_clear(&o);
	free(rv);
}

/*
 * A request to an instance's API server (host + path) as the reviewer:
 * the bearer and trust anchor of API.md §1 and §7 (k8s_review_bearer,
 * the stored ca_cert or the local ca.crt), the [k8s_auth] timeouts, size
 * limit, proxy and allowed_hosts.  The TokenReview and the object reads
 * of k8s_object.c both go through here, so they cannot drift apart.
 * Free with k8s_review_request_clear (the bearer is wiped).
 */
void
k8s_review_request(const struct config *cfg, const struct instance *inst,
    const char *jwt, const char *path, struct k8s_request *kr)
{
	struct fetch_request *req = &kr->req;
	size_t hlen;

	memset(kr, 0, sizeof *kr);
	k8s_review_credentials(cfg, inst, jwt, &kr->bearer, &kr->ca);
	hlen = strlen(inst->host);
	while (hlen > 0 && inst->host[hlen - 1] == '/')
		hlen--;
	xasprintf(&kr->url, "%.*s%s", (int)hlen, inst->host, path);
	req->method = "GET";
	req->url = kr->url;
	req->bearer = kr->bearer;
	req->ca_pem = kr->ca;
	req->connect_timeout_ms = cfg->k8s_connect_timeout * 1000;
	req->timeout_ms = cfg->k8s_review_timeout * 1000;
	req->max_response = (size_t)cfg->k8s_max_response_size;
	req->allow_http = cfg->k8s_allow_insecure_http;
	req->allowed_hosts = inst->host_admin ? NULL : cfg->k8s_allowed_hosts;
	req->proxy = cfg->k8s_proxy;
	req->cluster = 1; /* the clusters' slots, not Keystone's */
}

/* Free what k8s_review_request allocated. */
void
k8s_review_request_clear(struct k8s_request *kr)
{
	freezero_str(kr->bearer);
	free(kr->ca);
	free(kr->url);
	memset(kr, 0, sizeof *kr);
}

/* Free a prepared TokenReview request, wiping its secrets. */
void
k8s_review_req_free(struct k8s_review_req *q)
{
	if (q == NULL)
		return;
	free(q->url);
	freezero_str(q->body);
	freezero_str(q->bearer);
	free(q->ca);
	free(q->allowed_hosts);
	free(q->proxy);
	free(q);
}

/*
 * Prepare the TokenReview of jwt against an instance: everything the
 * transfer needs, copied, so that it may start later (review_cache.c
 * queues it) without the instance or the configuration at hand.
 */
struct k8s_review_req *
k8s_review_prepare(const struct config *cfg, const struct instance *inst,
    const char *jwt, const char *audience)
{
	struct k8s_review_req *q;
	size_t hlen;

	q = xcalloc(1, sizeof *q);
	k8s_review_credentials(cfg, inst, jwt, &q->bearer, &q->ca);
	hlen = strlen(inst->host);
	while (hlen > 0 && inst->host[hlen - 1] == '/')
		hlen--;
	xasprintf(&q->url, "%.*s/apis/authentication.k8s.io/v1/tokenreviews",
	    (int)hlen, inst->host);
	q->body = k8s_review_body(jwt, audience);
	q->connect_timeout_ms = cfg->k8s_connect_timeout * 1000;
	q->timeout_ms = cfg->k8s_review_timeout * 1000;
	q->max_response = (size_t)cfg->k8s_max_response_size;
	q->allow_http = cfg->k8s_allow_insecure_http;
	if (!inst->host_admin && cfg->k8s_allowed_hosts != NULL)
		q->allowed_hosts = xstrdup(cfg->k8s_allowed_hosts);
	if (cfg->k8s_proxy != NULL)
		q->proxy = xstrdup(cfg->k8s_proxy);
	snprintf(q->instance_id, sizeof q->instance_id, "%s", inst->id);
	return (q);
}

/*
 * Start a prepared TokenReview on the worker's fetch machinery (q stays
 * the caller's).  Returns the review (cancel with k8s_review_cancel) or
 * NULL with *o holding the error.
 */
struct k8s_review *
k8s_review_launch(struct worker *w, const struct k8s_review_req *q,
    k8s_review_cb cb, void *arg, struct k8s_review_outcome *o)
{
	struct fetch_request req;
	struct k8s_review *rv;
	char *cause = NULL;

	memset(o, 0, sizeof *o);
	memset(&req, 0, sizeof req);
	req.method = "POST";
	req.url = q->url;
	req.body = q->body;
	req.bodylen = strlen(q->body);
	req.bearer = q->bearer;
	req.ca_pem = q->ca;
	req.connect_timeout_ms = q->connect_timeout_ms;
	req.timeout_ms = q->timeout_ms;
	req.max_response = q->max_response;
	req.allow_http = q->allow_http;
	req.allowed_hosts = q->allowed_hosts;
	req.proxy = q->proxy;
	req.cluster = 1;
	rv = xcalloc(1, sizeof *rv);
	snprintf(rv->instance_id, sizeof rv->instance_id, "%s", q->instance_id);
	rv->cb = cb;
	rv->arg = arg;
	rv->transfer =
	    fetch_start(w->fetch, &req, k8s_review_done_cb, rv, &cause);
	if (rv->transfer == NULL) {
		k8s_review_fail(o, REASON_cluster_unavailable, "%s", cause);
		o->retry_after = xstrdup("1");
		free(cause);
		free(rv);
		return (NULL);
	}
	metrics_review_start();
	return (rv);
}

/*
 * Start a TokenReview of jwt against an instance, uncached.  Returns the
 * review (cancel with k8s_review_cancel) or NULL with *o holding the error.
 */
struct k8s_review *
k8s_review_start(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, const char *audience,
    k8s_review_cb cb, void *arg, struct k8s_review_outcome *o)
{
	struct k8s_review_req *q;
	struct k8s_review *rv;

	q = k8s_review_prepare(cfg, inst, jwt, audience);
	rv = k8s_review_launch(w, q, cb, arg, o);
	k8s_review_req_free(q);
	return (rv);
}

/* Cancel a review in flight: its callback is never called. */
void
k8s_review_cancel(struct k8s_review *rv)
{
	if (rv == NULL)
		return;
	if (rv->transfer != NULL) {
		fetch_cancel(rv->transfer);
		metrics_review_done(rv->instance_id,
		    0.0 /* cancelled: counted in the lowest bucket */);
	}
	free(rv);
}

/*
 * The bearer and CA a request to an instance's API server other than the
 * TokenReview uses (jwks_cache.c's OIDC discovery): the same choice as
 * k8s_review_start's, so the same credential goes to the same place.
 * Both are allocated (*ca may be NULL: the system store).
 */
void
k8s_review_credentials(const struct config *cfg, const struct instance *inst,
    const char *jwt, char **bearer, char **ca)
{
	*bearer = k8s_review_bearer(cfg, inst, jwt);
	*ca = NULL;
	if (inst->ca_cert != NULL)
		*ca = xstrdup(inst->ca_cert);
	else if (!inst->disable_local_ca_jwt)
		*ca = k8s_local_get(&k8s_local_ca, cfg->k8s_local_sa_dir,
		    "ca.crt");
}
