/*
 * api_common.c: plumbing shared by the admin API handlers.
 *
 * The steps every admin handler repeats, written once: the strict checks
 * of a create or update body (read-only, immutable, unknown and missing
 * fields, each with its own 400 reason), the mapping of store results to
 * HTTP errors, list queries (the `enabled` filter, the policy target),
 * list and 201 replies, the one info line logged per admin change, and
 * api_write: a write run on the database thread (dbthread.c) with the
 * request parked, answered from the completion on this worker.
 *
 * Runs on a worker thread inside a handler; each reply helper replies
 * exactly once.  Never blocks: reads come from the request's snapshot.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

/* Reply 400 with reason and cause (freed). */
void
api_bad_request(struct request *r, enum reason reason, char *cause)
{
	http_reply_reason(r, reason, "%s",
	    cause != NULL ? cause : "invalid request");
	free(cause);
}

/*
 * Strict body checks before any field is read: server-maintained fields
 * (read_only_field), fields an update may not change (immutable_field),
 * then unknown fields.  Replies and returns -1 on the first violation.
 */
int
api_check_body(struct request *r, const cJSON *body,
    const char *const *immutable, const char *const *read_only,
    const char *const *writable)
{
	const char *f;
	char *cause = NULL;

	if (immutable != NULL &&
	    (f = json_find_field(body, immutable)) != NULL) {
		http_reply_reason(r, REASON_immutable_field,
		    "%s cannot be changed", f);
		return (-1);
	}
	if ((f = json_find_field(body, read_only)) != NULL) {
		http_reply_reason(r, REASON_read_only_field,
		    "%s is set by the server and cannot be written", f);
		return (-1);
	}
	if (json_check_fields(body, writable, &cause) != 0) {
		api_bad_request(r, REASON_unknown_field, cause);
		return (-1);
	}
	return (0);
}

/* Every field in required must be present; else 400 missing_field. */
int
api_check_required(struct request *r, const cJSON *body,
    const char *const *required)
{
	size_t i;

	for (i = 0; required[i] != NULL; i++) {
		if (cJSON_GetObjectItemCaseSensitive(body, required[i]) ==
		    NULL) {
			http_reply_reason(r, REASON_missing_field,
			    "%s is required", required[i]);
			return (-1);
		}
	}
	return (0);
}

/* The 404 reason for a kind of object. */
static enum reason
api_not_found_reason(const char *kind)
{
	if (strcmp(kind, "instance") == 0)
		return (REASON_instance_not_found);
	if (strcmp(kind, "role") == 0)
		return (REASON_role_not_found);
	return (REASON_restriction_not_found);
}

/* 503 database_unavailable with Retry-After: the reconnect's next try. */
static void
api_reply_unavailable(struct request *r)
{
	char ra[24];

	snprintf(ra, sizeof ra, "%ld", dbthread_retry_after());
	http_set_header(r, "Retry-After", ra);
	http_reply_reason(r, REASON_database_unavailable,
	    "the database cannot be reached now, nothing was written; retry later");
}

/*
 * Reply for a failed store call: 404 <kind>_not_found, 409 conflict with
 * the caller's message (STORE_CHANGED: a row the checks read moved), 409
 * restriction_in_use, 503 database_unavailable, else 500.
 */
void
api_store_fail(struct request *r, int rc, const char *kind, const char *id,
    const char *conflict)
{
	switch (rc) {
	case STORE_NOT_FOUND:
		/*
		 * Only an admin learns that an object does not exist; anyone
		 * else gets the answer they get for another domain's object,
		 * so ids cannot be probed (keystone-ng's existence oracle).
		 */
		if (!r->caller.is_admin && r->caller.kind != CALLER_NONE) {
			http_reply_reason(r, REASON_forbidden,
			    "you are not authorized to access %s %.64s", kind,
			    id);
			break;
		}
		http_reply_reason(r, api_not_found_reason(kind),
		    "could not find %s %.64s", kind, id);
		break;
	case STORE_CHANGED:
		http_reply_reason(r, REASON_conflict,
		    "%s %.64s, or an object it depends on, was changed by another request while this one was checked; nothing was written, read it again and retry",
		    kind, id);
		break;
	case STORE_CONFLICT:
		http_reply_reason(r, REASON_conflict, "%s",
		    conflict != NULL ? conflict
				     : "conflict, resource already exists");
		break;
	case STORE_IN_USE:
		http_reply_reason(r, REASON_restriction_in_use,
		    "%s %.64s is still referenced by a role", kind, id);
		break;
	case STORE_UNAVAILABLE:
	/* still conflicting after store_run's retries: a busy moment */
	case STORE_RETRY:
		api_reply_unavailable(r);
		break;
	default:
		log_err("store error on %s %.64s", kind, id);
		http_reply_reason(r, REASON_internal_error, "database error");
		break;
	}
}

/* The caller's kind as a word, for logs. */
static const char *
api_caller_kind(const struct caller *c)
{
	switch (c->kind) {
	case CALLER_BOOTSTRAP:
		return ("bootstrap");
	case CALLER_KEYSTONE:
		return ("keystone");
	case CALLER_RESTRICTED:
		return ("restricted");
	default:
		return ("none");
	}
}

/* One info line per admin change: who, what, which object. */
void
api_log_change(struct request *r, const char *action, const char *id)
{
	char *user;

	user = log_escape(r->caller.user_id, 64);
	log_info("admin change: caller=%s user=%s action=%s id=%s",
	    api_caller_kind(&r->caller), r->caller.user_id != NULL ? user : "-",
	    action, id);
	free(user);
	audit_admin(r, action, id, "success");
}

/* 201 with Location <public url><path> and {wrapper: obj} (owned). */
void
api_reply_created(struct request *r, const char *path, const char *wrapper,
    cJSON *obj)
{
	cJSON *body;
	char *base, *url;

	base = http_public_url(r);
	xasprintf(&url, "%s%s", base, path);
	http_set_header(r, "Location", url);
	free(url);
	free(base);
	body = cJSON_CreateObject();
	cJSON_AddItemToObject(body, wrapper, obj);
	http_reply_json(r, 201, body);
}

/* 200 with {wrapper: obj} (owned). */
void
api_reply_object(struct request *r, const char *wrapper, cJSON *obj)
{
	cJSON *body;

	body = cJSON_CreateObject();
	cJSON_AddItemToObject(body, wrapper, obj);
	http_reply_json(r, 200, body);
}

/* An admin write waiting for the database thread. */
struct api_write {
	struct request *r;
	int waiting;           /* the request still waits for done */
	_Atomic int abandoned; /* answered without it: do not start it */
	dbthread_fn fn;
	api_write_done done;
	void *arg;
	void (*arg_free)(void *);
};

/*
 * On the database thread: the handler's write, unless its request was
 * answered before the write started (503 request_timeout while queued
 * behind a slow database, or the client left).  A 503 says "retry", so
 * the write must not land afterwards: a retried create would then exist
 * twice.  A write already running when the answer goes out may still
 * land; the request_timeout message does not promise otherwise.
 */
static int
api_write_fn(struct db *db, void *arg)
{
	struct api_write *w = arg;

	if (atomic_load(&w->abandoned)) {
		log_info(
		    "database: a queued write was dropped unrun: its request had already been answered (request_timeout or the client left)");
		return (STORE_CHANGED); /* rolled back; nobody to answer */
	}
	return (w->fn(db, w->arg));
}

/* The request stops waiting (answered elsewhere, or now). */
static void
api_write_detach(struct api_write *w)
{
	atomic_store(&w->abandoned, 1);
	w->waiting = 0;
	w->r->data = NULL;
	w->r->cancel = NULL;
	w->r->gone = NULL;
}

/* The database thread's answer, on this worker. */
static void
api_write_cb(int result, void *arg)
{
	struct api_write *w = arg;
	struct request *r = w->r;

	if (w->waiting) {
		api_write_detach(w);
		if (!r->replied)
			w->done(r, result, w->arg);
	}
	if (w->arg_free != NULL)
		w->arg_free(w->arg);
	free(w);
	http_unref(r);
}

/* The deadline passed (http.c answers 503); the write may still land. */
static void
api_write_cancel(struct request *r)
{
	api_write_detach(r->data);
}

/* The client went away; the write may still land. */
static void
api_write_gone(struct request *r)
{
	api_write_detach(r->data);
	http_reply_reason(r, REASON_client_gone, "the client disconnected");
}

/*
 * Run fn(db, arg) on the database thread in one transaction, with the
 * request parked; done(r, result, arg) replies on this worker once the
 * write is committed and this replica's snapshot shows it; then
 * arg_free(arg).  Database down or queue full: done runs at once with
 * STORE_UNAVAILABLE.
 */
void
api_write(struct request *r, dbthread_fn fn, void *arg, api_write_done done,
    void (*arg_free)(void *))
{
	struct api_write *w;

	w = xcalloc(1, sizeof *w);
	w->r = r;
	w->waiting = 1;
	w->fn = fn;
	w->done = done;
	w->arg = arg;
	w->arg_free = arg_free;
	if (dbthread_submit(r->worker, api_write_fn, api_write_cb, w) != 0) {
		done(r, STORE_UNAVAILABLE, arg);
		if (arg_free != NULL)
			arg_free(arg);
		free(w);
		return;
	}
	http_ref(r); /* dropped by api_write_cb */
	r->data = w;
	r->cancel = api_write_cancel;
	r->gone = api_write_gone;
	http_park(r);
}

/*
 * A write's guard: the versions of the rows its checks and its policy
 * decision read from the request's snapshot, checked again on the
 * database thread inside the write's transaction (api_guard_check), so
 * that a write decided on an old snapshot is refused (409, read again
 * and retry) instead of undoing or bypassing what another request or
 * replica wrote in between: an admin protecting a restriction, binding
 * a role of an instance to it, setting the instance's host.
 */
#define API_GUARD_ROWS 2
struct api_guard {
	char *instance_id; /* its row and its roles' print, or NULL */
	char instance_at[TIMESTAMP_LEN + 1];
	char *instance_print;
	struct {
		const char *table;
		char *id;
		char at[TIMESTAMP_LEN + 1];
	} row[API_GUARD_ROWS];
	int nrows;
};

struct api_guard *
api_guard_new(void)
{
	return (xcalloc(1, sizeof(struct api_guard)));
}

/* Guard the row id of table (a constant) at version at. */
void
api_guard_row(struct api_guard *g, const char *table, const char *id,
    const char *at)
{
	if (g->nrows == API_GUARD_ROWS)
		fatalx("api_guard_row: more than %d rows", API_GUARD_ROWS);
	g->row[g->nrows].table = table;
	g->row[g->nrows].id = xstrdup(id);
	snprintf(g->row[g->nrows].at, sizeof g->row[g->nrows].at, "%s",
	    at != NULL ? at : "");
	g->nrows++;
}

/*
 * Guard an instance as r's snapshot has it: its row (domain, host,
 * host_admin) and what makes it protected (its roles and the versions of
 * the restrictions they bind).
 */
void
api_guard_instance(struct api_guard *g, const struct request *r,
    const char *instance_id)
{
	const struct instance *in;

	in = snapshot_instance(r->snap, instance_id);
	g->instance_id = xstrdup(instance_id);
	if (in != NULL)
		memcpy(g->instance_at, in->updated_at, sizeof g->instance_at);
	g->instance_print = snapshot_instance_print(r->snap, instance_id);
}

/*
 * On the database thread, inside the write's transaction: every guarded
 * row still as it was.  The instance first: every write that depends on
 * it locks its row first, which orders them.  STORE_OK, STORE_CHANGED or
 * a failure.
 */
int
api_guard_check(struct db *db, const struct api_guard *g)
{
	char *print = NULL;
	int i, rc = STORE_OK;

	if (g == NULL)
		return (STORE_OK);
	if (g->instance_id != NULL) {
		rc = store_unchanged(db, "instances", g->instance_id,
		    g->instance_at);
		if (rc == STORE_OK)
			rc = store_instance_print(db, g->instance_id, &print);
		if (rc == STORE_OK && strcmp(print, g->instance_print) != 0) {
			log_info("store: the roles of instance %s changed since they were checked; nothing written",
			    g->instance_id);
			rc = STORE_CHANGED;
		}
		free(print);
	}
	for (i = 0; i < g->nrows && rc == STORE_OK; i++)
		rc = store_unchanged(db, g->row[i].table, g->row[i].id,
		    g->row[i].at);
	return (rc);
}

void
api_guard_free(struct api_guard *g)
{
	int i;

	if (g == NULL)
		return;
	free(g->instance_id);
	free(g->instance_print);
	for (i = 0; i < g->nrows; i++)
		free(g->row[i].id);
	free(g);
}

/* A delete on the database thread. */
struct api_delete_job {
	int (*del)(struct db *, const char *);
	struct api_guard *guard;
	char *action;
	char *kind;
	char *id;
	void (*after)(const char *);
};

static int
api_delete_fn(struct db *db, void *arg)
{
	struct api_delete_job *d = arg;
	int rc;

	if ((rc = api_guard_check(db, d->guard)) != STORE_OK)
		return (rc);
	return (d->del(db, d->id));
}

static void
api_delete_done(struct request *r, int rc, void *arg)
{
	struct api_delete_job *d = arg;

	if (rc != STORE_OK) {
		api_store_fail(r, rc, d->kind, d->id, NULL);
		return;
	}
	if (d->after != NULL)
		d->after(d->id);
	api_log_change(r, d->action, d->id);
	http_reply_empty(r, 204);
}

static void
api_delete_free(void *arg)
{
	struct api_delete_job *d = arg;

	free(d->action);
	free(d->kind);
	free(d->id);
	api_guard_free(d->guard);
	free(d);
}

/*
 * Authorize a delete with target, then delete id on the database thread
 * and reply 204, unless a row guard (taken over, may be NULL) protects
 * moved since; after(id), when not NULL, runs once it is gone.
 */
void
api_delete(struct request *r, const char *action, const char *kind,
    const char *id, int (*del)(struct db *, const char *), const cJSON *target,
    void (*after)(const char *), struct api_guard *guard)
{
	struct api_delete_job *d;

	if (auth_require(r, action, target) != 0) {
		api_guard_free(guard);
		return;
	}
	d = xcalloc(1, sizeof *d);
	d->guard = guard;
	d->del = del;
	d->action = xstrdup(action);
	d->kind = xstrdup(kind);
	d->id = xstrdup(id);
	d->after = after;
	api_write(r, api_delete_fn, d, api_delete_done, api_delete_free);
}

/* Authorize a show with target, then reply 200 {wrapper: obj} (owned). */
void
api_show(struct request *r, const char *action, const char *wrapper,
    const cJSON *target, cJSON *obj)
{
	if (auth_require(r, action, target) == 0)
		api_reply_object(r, wrapper, obj);
	else
		cJSON_Delete(obj);
}

/* 200 with {plural: array, links: {...}}; next marker is last_id. */
void
api_reply_list(struct request *r, const char *plural, cJSON *array,
    const char *last_id, int more)
{
	cJSON *body;

	body = cJSON_CreateObject();
	cJSON_AddItemToObject(body, plural, array);
	cJSON_AddItemToObject(body, "links",
	    http_list_links(r, more ? last_id : NULL, more && last_id != NULL));
	http_reply_json(r, 200, body);
}

/* Turn the `enabled` filter into the store's "1"/"0"; -1 when invalid. */
static int
api_enabled_filter(struct store_query *q, size_t i, cJSON *target)
{
	if (strcmp(q->filter_values[i], "true") == 0) {
		q->filter_values[i] = "1";
		cJSON_AddTrueToObject(target, "enabled");
	} else if (strcmp(q->filter_values[i], "false") == 0) {
		q->filter_values[i] = "0";
		cJSON_AddFalseToObject(target, "enabled");
	} else
		return (-1);
	return (0);
}

/*
 * Parse a list query (limit, marker, the allowed filters) into q, and
 * build the policy target: the filters as an object.  Replies and
 * returns -1 on a bad query.
 */
int
api_list_query(struct request *r, const char *const *filters,
    struct store_query *q, cJSON **target)
{
	size_t i;

	memset(q, 0, sizeof *q);
	*target = NULL;
	if (http_list_query(r, filters, q) != 0)
		return (-1);
	*target = cJSON_CreateObject();
	for (i = 0; i < q->nfilters; i++) {
		if (strcmp(q->filter_names[i], "enabled") != 0) {
			cJSON_AddStringToObject(*target, q->filter_names[i],
			    q->filter_values[i]);
		} else if (api_enabled_filter(q, i, *target) != 0) {
			http_reply_reason(r, REASON_invalid_query,
			    "enabled must be true or false");
			cJSON_Delete(*target);
			*target = NULL;
			return (-1);
		}
	}
	return (0);
}

/* Add an exact-match filter to q (bounded by the filter arrays). */
void
api_query_add(struct store_query *q, const char *name, const char *value)
{
	size_t i;

	for (i = 0; i < q->nfilters; i++) {
		if (strcmp(q->filter_names[i], name) == 0) {
			q->filter_values[i] = value;
			return;
		}
	}
	if (q->nfilters >= sizeof q->filter_names / sizeof q->filter_names[0])
		fatalx("%s: too many filters", __func__);
	q->filter_names[q->nfilters] = name;
	q->filter_values[q->nfilters++] = value;
}

/* A policy target {k1: v1[, k2: v2][, "update": patch copy]}; v owned. */
cJSON *
api_target(const char *k1, cJSON *v1, const char *k2, cJSON *v2,
    const cJSON *patch)
{
	cJSON *t;

	t = cJSON_CreateObject();
	cJSON_AddItemToObject(t, k1, v1);
	if (k2 != NULL)
		cJSON_AddItemToObject(t, k2, v2);
	if (patch != NULL)
		cJSON_AddItemToObject(t, "update", cJSON_Duplicate(patch, 1));
	return (t);
}
