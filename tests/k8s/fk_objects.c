/*
 * fk_objects.c: namespaces and service accounts as objects, for logins
 * that read a namespace's labels or a service account's annotations.
 *
 * Serves GET /api/v1/namespaces/NS (metadata.labels, with the
 * kubernetes.io/metadata.name label kube-apiserver adds) and GET
 * /api/v1/namespaces/NS/serviceaccounts/NAME (metadata.annotations) with
 * kube-apiserver's authorization model: the bearer must be a service
 * account token (else 401), granted "get namespaces" or "get
 * serviceaccounts" (a ClusterRole binding; else 403 with the message
 * kube-apiserver writes).  A namespace exists once created through the
 * control API; a service account is the one fk_state.c holds.
 *
 * Control (under /_test/, no authentication):
 *   POST   /_test/namespaces {"name", "labels"}   create or relabel
 *   DELETE /_test/namespaces/NAME
 *   POST   /_test/annotations {"namespace", "name", "annotations"}
 *   POST   /_test/object_grants {"namespace", "name", "resource",
 *          "allow"}   resource "namespaces" or "serviceaccounts"
 *   POST   /_test/object_faults {"resource", "status", "latency_ms",
 *          "count"};  DELETE /_test/object_faults
 *   GET    /_test/object_stats;  POST /_test/object_stats/reset
 *
 * Single-threaded; a latency fault parks the request on a timer.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>
#include <event2/http.h>

#include "k8sauth.h"
#include "fake_k8s.h"

#define FK_OBJ_NS   0
#define FK_OBJ_SA   1
#define FK_OBJ_N    2
#define FK_OBJ_PATH "/api/v1/namespaces/"

static const char *const fk_obj_resources[FK_OBJ_N] = { "namespaces",
	"serviceaccounts" };

/* A namespace or a service account's annotations: "ns" or "ns/name". */
struct fk_obj {
	char			*key;
	char			 uid[FK_UID_LEN + 1];
	cJSON			*meta;	/* labels or annotations */
	struct fk_obj		*next;
};

/* An injected fault on one resource. */
struct fk_obj_fault {
	int			 status;	/* 0: none */
	long			 latency_ms;
	long			 count;		/* -1: until cleared */
};

/* A request held by a latency fault. */
struct fk_obj_park {
	struct evhttp_request	*req;
	struct evhttp_connection *evcon;
	struct event		*timer;
	int			 kind;
	char			*ns;
	char			*name;
};

static struct fk_obj		*fk_obj_namespaces;
static struct fk_obj		*fk_obj_annotations;
static struct fk_obj		*fk_obj_grants;	/* key "ns/name/resource" */
static struct fk_obj_fault	 fk_obj_faults[FK_OBJ_N];
static unsigned long		 fk_obj_gets[FK_OBJ_N];

static void	fk_obj_answer(struct evhttp_request *, int, const char *,
		    const char *);

/* The entry called key in list, or NULL. */
static struct fk_obj *
fk_obj_find(struct fk_obj *list, const char *key)
{
	for (; list != NULL; list = list->next)
		if (strcmp(list->key, key) == 0)
			return (list);
	return (NULL);
}

/* The entry called key, created (empty) when missing. */
static struct fk_obj *
fk_obj_get(struct fk_obj **list, const char *key)
{
	struct fk_obj	*o;

	if ((o = fk_obj_find(*list, key)) != NULL)
		return (o);
	o = xcalloc(1, sizeof *o);
	o->key = xstrdup(key);
	fk_state_new_uid(o->uid);
	o->meta = cJSON_CreateObject();
	o->next = *list;
	*list = o;
	return (o);
}

/* Remove key from list; 0, or -1 when it was not there. */
static int
fk_obj_del(struct fk_obj **list, const char *key)
{
	struct fk_obj	*o;

	for (; (o = *list) != NULL; list = &o->next) {
		if (strcmp(o->key, key) == 0) {
			*list = o->next;
			cJSON_Delete(o->meta);
			free(o->key);
			free(o);
			return (0);
		}
	}
	return (-1);
}

/* The bearer of the Authorization header, or NULL. */
static const char *
fk_obj_bearer(struct evhttp_request *req)
{
	const char	*h;

	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	if (h == NULL || strncasecmp(h, "bearer ", 7) != 0)
		return (NULL);
	h += 7;
	while (*h == ' ')
		h++;
	return (*h != '\0' ? h : NULL);
}

/*
 * Authenticate and authorize "get <resource>"; 0, or -1 after a 401 or
 * 403 as kube-apiserver words them.
 */
static int
fk_obj_authorize(struct evhttp_request *req, int kind, const char *ns,
    const char *name)
{
	const char	*bearer = fk_obj_bearer(req);
	struct fk_ident	 id;
	cJSON		*details;
	char		*error = NULL, *key, *msg;
	int		 ok;

	if (bearer == NULL || fk_review_authenticate(bearer, NULL, &id,
	    &error) != 0) {
		free(error);
		fk_http_reply_status(req, 401, "Unauthorized", "Unauthorized",
		    NULL, NULL);
		return (-1);
	}
	xasprintf(&key, "%s/%s/%s", id.ns, id.name, fk_obj_resources[kind]);
	ok = fk_obj_find(fk_obj_grants, key) != NULL;
	free(key);
	if (!ok) {
		xasprintf(&msg, "%s \"%s\" is forbidden: User "
		    "\"system:serviceaccount:%s:%s\" cannot get resource "
		    "\"%s\" in API group \"\" %s%s", fk_obj_resources[kind],
		    kind == FK_OBJ_NS ? ns : name, id.ns, id.name,
		    fk_obj_resources[kind], kind == FK_OBJ_NS ?
		    "at the cluster scope" : "in the namespace ",
		    kind == FK_OBJ_NS ? "" : ns);
		details = cJSON_CreateObject();
		cJSON_AddStringToObject(details, "name",
		    kind == FK_OBJ_NS ? ns : name);
		cJSON_AddStringToObject(details, "kind",
		    fk_obj_resources[kind]);
		fk_http_reply_status(req, 403, "Forbidden", msg, details,
		    NULL);
		free(msg);
	}
	fk_review_ident_clear(&id);
	return (ok ? 0 : -1);
}

/* Reply 404 '<resource> "<name>" not found'. */
static void
fk_obj_not_found(struct evhttp_request *req, int kind, const char *name)
{
	cJSON	*details = cJSON_CreateObject();
	char	*msg;

	xasprintf(&msg, "%s \"%s\" not found", fk_obj_resources[kind], name);
	cJSON_AddStringToObject(details, "name", name);
	cJSON_AddStringToObject(details, "kind", fk_obj_resources[kind]);
	fk_http_reply_status(req, 404, "NotFound", msg, details, NULL);
	free(msg);
}

/* The Namespace object NS. */
static void
fk_obj_namespace(struct evhttp_request *req, const char *ns)
{
	struct fk_obj	*o = fk_obj_find(fk_obj_namespaces, ns);
	cJSON		*out, *meta, *labels;

	if (o == NULL) {
		fk_obj_not_found(req, FK_OBJ_NS, ns);
		return;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "kind", "Namespace");
	cJSON_AddStringToObject(out, "apiVersion", "v1");
	meta = cJSON_AddObjectToObject(out, "metadata");
	cJSON_AddStringToObject(meta, "name", ns);
	cJSON_AddStringToObject(meta, "uid", o->uid);
	labels = cJSON_Duplicate(o->meta, 1);
	cJSON_DeleteItemFromObjectCaseSensitive(labels,
	    "kubernetes.io/metadata.name");
	cJSON_AddStringToObject(labels, "kubernetes.io/metadata.name", ns);
	cJSON_AddItemToObject(meta, "labels", labels);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(out, "status"),
	    "phase", "Active");
	fk_http_reply_json(req, 200, out, NULL);
}

/* The ServiceAccount object NS/NAME. */
static void
fk_obj_service_account(struct evhttp_request *req, const char *ns,
    const char *name)
{
	const struct fk_sa	*sa = fk_state_sa_get(ns, name);
	struct fk_obj		*o;
	cJSON			*out, *meta;
	char			*key;

	if (sa == NULL) {
		fk_obj_not_found(req, FK_OBJ_SA, name);
		return;
	}
	xasprintf(&key, "%s/%s", ns, name);
	o = fk_obj_find(fk_obj_annotations, key);
	free(key);
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, "kind", "ServiceAccount");
	cJSON_AddStringToObject(out, "apiVersion", "v1");
	meta = cJSON_AddObjectToObject(out, "metadata");
	cJSON_AddStringToObject(meta, "name", name);
	cJSON_AddStringToObject(meta, "namespace", ns);
	cJSON_AddStringToObject(meta, "uid", sa->uid);
	if (o != NULL && cJSON_GetArraySize(o->meta) > 0)
		cJSON_AddItemToObject(meta, "annotations",
		    cJSON_Duplicate(o->meta, 1));
	fk_http_reply_json(req, 200, out, NULL);
}

/* Answer a GET once faults are past. */
static void
fk_obj_answer(struct evhttp_request *req, int kind, const char *ns,
    const char *name)
{
	if (fk_obj_authorize(req, kind, ns, name) != 0)
		return;
	if (kind == FK_OBJ_NS)
		fk_obj_namespace(req, ns);
	else
		fk_obj_service_account(req, ns, name);
}

/* Free a park entry and unhook it from its connection. */
static void
fk_obj_unpark(struct fk_obj_park *p)
{
	if (p->timer != NULL)
		event_free(p->timer);
	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	free(p->ns);
	free(p->name);
	free(p);
}

/* The client of a parked request went away. */
static void
fk_obj_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct fk_obj_park	*p = arg;
	struct evhttp_request	*req = p->req;

	fk_obj_unpark(p);
	if (evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

/* The latency passed: answer. */
static void
fk_obj_latency_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fk_obj_park	*p = arg;
	struct evhttp_request	*req = p->req;
	int			 kind = p->kind;
	char			*ns = p->ns, *name = p->name;

	p->ns = p->name = NULL;
	fk_obj_unpark(p);
	fk_obj_answer(req, kind, ns, name);
	free(ns);
	free(name);
}

/* Apply the resource's fault; 1 when it answered (or parked), else 0. */
static int
fk_obj_fault(struct evhttp_request *req, int kind, const char *ns,
    const char *name)
{
	struct fk_obj_fault	*f = &fk_obj_faults[kind];
	struct fk_obj_park	*p;
	struct timeval		 tv;
	int			 status = f->status;
	long			 latency_ms = f->latency_ms;

	if (status == 0 && latency_ms == 0)
		return (0);
	if (f->count > 0 && --f->count == 0)
		memset(f, 0, sizeof *f);
	if (status != 0) {
		fk_http_reply_status(req, status, "ServiceUnavailable",
		    "injected fault", NULL, "fault=status");
		return (1);
	}
	p = xcalloc(1, sizeof *p);
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	p->kind = kind;
	p->ns = xstrdup(ns);
	p->name = name != NULL ? xstrdup(name) : NULL;
	evhttp_connection_set_closecb(p->evcon, fk_obj_close_cb, p);
	p->timer = evtimer_new(fk_main_base(), fk_obj_latency_cb, p);
	tv.tv_sec = latency_ms / 1000;
	tv.tv_usec = (latency_ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
	return (1);
}

/*
 * Route GET /api/v1/namespaces/NS[/serviceaccounts/NAME]; anything else
 * under the prefix is the generic 404.
 */
void
fk_objects_cb(struct evhttp_request *req, const char *path)
{
	const char	*rest = path + strlen(FK_OBJ_PATH), *slash;
	char		*ns = NULL, *name = NULL;
	int		 kind;

	slash = strchr(rest, '/');
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || *rest == '\0')
		goto notfound;
	if (slash == NULL) {
		kind = FK_OBJ_NS;
		ns = xstrdup(rest);
	} else if (strncmp(slash, "/serviceaccounts/", 17) == 0 &&
	    slash[17] != '\0' && strchr(slash + 17, '/') == NULL) {
		kind = FK_OBJ_SA;
		ns = xstrndup(rest, (size_t)(slash - rest));
		name = xstrdup(slash + 17);
	} else
		goto notfound;
	fk_obj_gets[kind]++;
	if (fk_obj_fault(req, kind, ns, name) == 0)
		fk_obj_answer(req, kind, ns, name);
	free(ns);
	free(name);
	return;
notfound:
	fk_http_reply_not_found(req);
}

/* A string member of body, or NULL after a 400. */
static const char *
fk_obj_string(struct evhttp_request *req, const cJSON *body, const char *k)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(body, k);
	char		*msg;

	if (cJSON_IsString(v) && v->valuestring[0] != '\0' &&
	    strchr(v->valuestring, '/') == NULL)
		return (v->valuestring);
	xasprintf(&msg, "%s must be a non-empty string without '/'", k);
	fk_http_reply_status(req, 400, "BadRequest", msg, NULL, NULL);
	free(msg);
	return (NULL);
}

/* Replace o's labels or annotations with the object body[k] of strings. */
static int
fk_obj_set_meta(struct evhttp_request *req, struct fk_obj *o,
    const cJSON *body, const char *k)
{
	const cJSON	*m = cJSON_GetObjectItemCaseSensitive(body, k), *it;

	if (m != NULL && !cJSON_IsObject(m))
		goto bad;
	cJSON_ArrayForEach(it, m) {
		if (!cJSON_IsString(it))
			goto bad;
	}
	cJSON_Delete(o->meta);
	o->meta = m != NULL ? cJSON_Duplicate(m, 1) : cJSON_CreateObject();
	return (0);
bad:
	fk_http_reply_status(req, 400, "BadRequest",
	    "labels and annotations must be objects of strings", NULL, NULL);
	return (-1);
}

/* The resource index named by body.resource, or -1 after a 400. */
static int
fk_obj_resource(struct evhttp_request *req, const cJSON *body)
{
	const char	*r;
	int		 i;

	r = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(body,
	    "resource"));
	for (i = 0; r != NULL && i < FK_OBJ_N; i++)
		if (strcmp(r, fk_obj_resources[i]) == 0)
			return (i);
	fk_http_reply_status(req, 400, "BadRequest",
	    "resource must be \"namespaces\" or \"serviceaccounts\"", NULL,
	    NULL);
	return (-1);
}

/* POST /_test/namespaces, /_test/annotations, /_test/object_grants. */
static void
fk_obj_control_post(struct evhttp_request *req, const char *what,
    const cJSON *body)
{
	const char	*ns, *name = NULL;
	char		*key;
	int		 r;

	if (strcmp(what, "namespaces") == 0) {
		if ((ns = fk_obj_string(req, body, "name")) != NULL &&
		    fk_obj_set_meta(req, fk_obj_get(&fk_obj_namespaces, ns),
		    body, "labels") == 0)
			fk_http_reply_json(req, 200, cJSON_CreateObject(),
			    NULL);
		return;
	}
	if ((ns = fk_obj_string(req, body, "namespace")) == NULL ||
	    (name = fk_obj_string(req, body, "name")) == NULL)
		return;
	if (strcmp(what, "annotations") == 0) {
		xasprintf(&key, "%s/%s", ns, name);
		if (fk_obj_set_meta(req, fk_obj_get(&fk_obj_annotations, key),
		    body, "annotations") == 0)
			fk_http_reply_json(req, 200, cJSON_CreateObject(),
			    NULL);
		free(key);
		return;
	}
	if ((r = fk_obj_resource(req, body)) == -1)
		return;
	xasprintf(&key, "%s/%s/%s", ns, name, fk_obj_resources[r]);
	if (cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(body, "allow")))
		fk_obj_del(&fk_obj_grants, key);
	else
		fk_obj_get(&fk_obj_grants, key);
	free(key);
	fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

/* POST /_test/object_faults {"resource", "status", "latency_ms", "count"}. */
static void
fk_obj_fault_set(struct evhttp_request *req, const cJSON *body)
{
	struct fk_obj_fault	 f;
	const cJSON		*v;
	int			 r;

	if ((r = fk_obj_resource(req, body)) == -1)
		return;
	memset(&f, 0, sizeof f);
	f.count = -1;
	if ((v = cJSON_GetObjectItemCaseSensitive(body, "status")) != NULL)
		f.status = (int)cJSON_GetNumberValue(v);
	if ((v = cJSON_GetObjectItemCaseSensitive(body, "latency_ms")) !=
	    NULL)
		f.latency_ms = (long)cJSON_GetNumberValue(v);
	if ((v = cJSON_GetObjectItemCaseSensitive(body, "count")) != NULL)
		f.count = (long)cJSON_GetNumberValue(v);
	if ((f.status != 0 && (f.status < 400 || f.status > 599)) ||
	    f.latency_ms < 0 || f.latency_ms > 600000 || f.count == 0 ||
	    (f.status == 0 && f.latency_ms == 0)) {
		fk_http_reply_status(req, 400, "BadRequest", "status must be "
		    "400..599, latency_ms 0..600000 (one of them set), count "
		    "positive", NULL, NULL);
		return;
	}
	fk_obj_faults[r] = f;
	fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
}

/* GET /_test/object_stats. */
static void
fk_obj_stats(struct evhttp_request *req)
{
	cJSON	*o = cJSON_CreateObject();
	int	 i;

	for (i = 0; i < FK_OBJ_N; i++)
		cJSON_AddNumberToObject(o, fk_obj_resources[i],
		    (double)fk_obj_gets[i]);
	fk_http_reply_json(req, 200, o, NULL);
}

/*
 * Route the object control API (path follows "/_test/"); 0 when
 * answered, -1 when it is not ours.
 */
int
fk_objects_control(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type	 cmd = evhttp_request_get_command(req);
	cJSON			*body = NULL;
	char			*cause = NULL;

	if (strncmp(path, "namespaces/", 11) == 0 &&
	    cmd == EVHTTP_REQ_DELETE) {
		if (fk_obj_del(&fk_obj_namespaces, path + 11) != 0)
			fk_obj_not_found(req, FK_OBJ_NS, path + 11);
		else
			fk_http_reply_json(req, 200, cJSON_CreateObject(),
			    NULL);
		return (0);
	}
	if (strcmp(path, "object_stats") == 0 && cmd == EVHTTP_REQ_GET) {
		fk_obj_stats(req);
		return (0);
	}
	if (strcmp(path, "object_stats/reset") == 0 &&
	    cmd == EVHTTP_REQ_POST) {
		memset(fk_obj_gets, 0, sizeof fk_obj_gets);
		fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
		return (0);
	}
	if (strcmp(path, "object_faults") == 0 && cmd == EVHTTP_REQ_DELETE) {
		memset(fk_obj_faults, 0, sizeof fk_obj_faults);
		fk_http_reply_json(req, 200, cJSON_CreateObject(), NULL);
		return (0);
	}
	if (cmd != EVHTTP_REQ_POST || (strcmp(path, "namespaces") != 0 &&
	    strcmp(path, "annotations") != 0 &&
	    strcmp(path, "object_grants") != 0 &&
	    strcmp(path, "object_faults") != 0))
		return (-1);
	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    !cJSON_IsObject(body)) {
		fk_http_reply_status(req, 400, "BadRequest",
		    "body must be a JSON object", NULL, NULL);
		free(cause);
		cJSON_Delete(body);
		return (0);
	}
	if (strcmp(path, "object_faults") == 0)
		fk_obj_fault_set(req, body);
	else
		fk_obj_control_post(req, path, body);
	cJSON_Delete(body);
	return (0);
}
