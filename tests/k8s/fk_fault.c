/*
 * fk_fault.c: faults injected into TokenReview requests.
 *
 * One fault is active at a time (POST /_test/faults), optionally for only
 * the next N TokenReview requests; DELETE /_test/faults clears it.  Modes:
 *   latency  the real answer, after a timer (the loop never blocks);
 *   status   an error Status with the given code (and Retry-After);
 *   reset    the connection is closed with SO_LINGER 0 (an RST), no answer;
 *   hang     no answer at all, until the client gives up or the fault is
 *            cleared (then the connection is dropped);
 * random faults (status, reset, latency with given probabilities, for
 * soak tests) apply to the requests no fault above takes;
 * and "tamper" modes, where the real review runs and, when it
 * authenticates, fk_review.c alters the status it answers (a cluster
 * that is wrong or hostile, for the server's post-review checks):
 *   other_name, other_namespace, other_uid   status.user names another
 *            service account, namespace or UID than the token's;
 *   no_audiences  status.audiences is left out (an audience-unaware
 *            authenticator);
 *   no_pod   status.user.extra has no pod or node (a token bound to a pod
 *            reviewed as if it were not).
 * A delayed, reset or hung request is "parked": this file owns the park
 * entry and learns through the connection's close callback if evhttp frees
 * the connection first, so no pointer dangles.  Single-threaded.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "k8sauth.h"
#include "fake_k8s.h"

static void fk_fault_review_as_clear(void);

enum fk_fault_mode {
	FK_FAULT_NONE,
	FK_FAULT_LATENCY,
	FK_FAULT_STATUS,
	FK_FAULT_RESET,
	FK_FAULT_HANG,
	FK_FAULT_OTHER_NAME,	/* the tamper modes: enum fk_tamper + 4 */
	FK_FAULT_OTHER_NAMESPACE,
	FK_FAULT_OTHER_UID,
	FK_FAULT_NO_AUDIENCES,
	FK_FAULT_NO_POD,
	FK_FAULT_NMODES
};

static const char *const fk_fault_names[] = {
	"none", "latency", "status", "reset", "hang", "other_name",
	"other_namespace", "other_uid", "no_audiences", "no_pod"
};

struct fk_fault {
	enum fk_fault_mode	 mode;
	long			 latency_ms;
	long			 status;
	long			 retry_after;
	long			 count;	/* -1: until cleared */
};

struct fk_fault_park {
	TAILQ_ENTRY(fk_fault_park)	 entry;
	enum fk_fault_mode		 mode;
	struct evhttp_request		*req;
	struct evhttp_connection	*evcon;
	struct event			*timer;
};
TAILQ_HEAD(fk_fault_parks, fk_fault_park);

static struct fk_fault	 fk_fault = { FK_FAULT_NONE, 0, 0, 0, -1 };
static struct fk_fault_parks	 fk_fault_parked =
    TAILQ_HEAD_INITIALIZER(fk_fault_parked);

/* Forget a park entry: stop its timer, unhook the close callback. */
static void
fk_fault_unpark(struct fk_fault_park *p)
{
	TAILQ_REMOVE(&fk_fault_parked, p, entry);
	if (p->timer != NULL)
		event_free(p->timer);
	evhttp_connection_set_closecb(p->evcon, NULL, NULL);
	free(p);
}

/*
 * evhttp is freeing a parked request's connection (client gone, shutdown).
 * A request already detached from it will never be freed by evhttp, so
 * free it here.
 */
static void
fk_fault_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct fk_fault_park	*p = arg;
	struct evhttp_request	*req = p->req;

	fk_fault_unpark(p);
	if (evhttp_request_get_connection(req) == NULL)
		evhttp_request_free(req);
}

/* The latency timer: give the real answer now. */
static void
fk_fault_latency_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fk_fault_park	*p = arg;
	struct evhttp_request	*req = p->req;

	fk_fault_unpark(p);
	fk_review_handle(req, FK_TAMPER_NONE);
}

/*
 * Reset the connection: SO_LINGER 0, then close the socket so the peer
 * sees an RST and nothing else.  evhttp_connection_free() would first
 * shutdown(SHUT_WR) (a FIN, read by clients as an empty reply), so the
 * socket is closed by dup2()ing /dev/null over its descriptor; evhttp
 * then shuts down and closes that harmless stand-in.
 */
static void
fk_fault_reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fk_fault_park	*p = arg;
	struct evhttp_connection *evcon = p->evcon;
	struct bufferevent	*bev;
	struct linger		 lg = { 1, 0 };
	evutil_socket_t		 s;
	int			 null;

	fk_fault_unpark(p);
	bev = evhttp_connection_get_bufferevent(evcon);
	if (bev != NULL && (s = bufferevent_getfd(bev)) != -1) {
		bufferevent_disable(bev, EV_READ | EV_WRITE);
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
		if ((null = open("/dev/null", O_RDWR | O_CLOEXEC)) != -1) {
			if (dup2(null, s) == -1)
				log_warn("reset: dup2 failed");
			close(null);
		}
	}
	evhttp_connection_free(evcon);
}

/* Park req; with a timer of ms milliseconds calling cb when cb is set. */
static void
fk_fault_park(struct evhttp_request *req, enum fk_fault_mode mode, long ms,
    event_callback_fn cb)
{
	struct fk_fault_park	*p;
	struct timeval		 tv;

	p = xcalloc(1, sizeof *p);
	p->mode = mode;
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	TAILQ_INSERT_TAIL(&fk_fault_parked, p, entry);
	evhttp_connection_set_closecb(p->evcon, fk_fault_close_cb, p);
	if (cb == NULL)
		return;
	if ((p->timer = evtimer_new(fk_main_base(), cb, p)) == NULL)
		fatalx("evtimer_new failed");
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(p->timer, &tv);
}

/* The Status reason kube-apiserver uses for an HTTP code. */
static const char *
fk_fault_reason(long code, const char **message)
{
	switch (code) {
	case 429:
		*message = "Too many requests, please try again later.";
		return ("TooManyRequests");
	case 503:
		*message = "The server is currently unable to handle the "
		    "request (injected fault)";
		return ("ServiceUnavailable");
	case 504:
		*message = "The server was unable to return a response in the "
		    "time allotted, but may still be processing the request";
		return ("Timeout");
	case 401:
		*message = "Unauthorized";
		return ("Unauthorized");
	case 403:
		*message = "forbidden (injected fault)";
		return ("Forbidden");
	default:
		*message = "Internal error occurred: injected fault";
		return (code >= 500 ? "InternalError" : "BadRequest");
	}
}

/* Answer with an injected error Status code (Retry-After when > 0). */
static void
fk_fault_status(struct evhttp_request *req, long code, long retry_after,
    const char *note)
{
	const char	*reason, *message;
	cJSON		*details = NULL;
	char		 ra[32];

	reason = fk_fault_reason(code, &message);
	if (retry_after > 0) {
		snprintf(ra, sizeof ra, "%ld", retry_after);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Retry-After", ra);
		details = cJSON_CreateObject();
		cJSON_AddNumberToObject(details, "retryAfterSeconds",
		    (double)retry_after);
	}
	fk_http_reply_status(req, (int)code, reason, message, details, note);
}

/*
 * Random faults (POST /_test/faults/random), for soak tests: each
 * TokenReview, when no fault above is set, is answered with an error
 * Status with probability status_rate, reset with reset_rate, or delayed
 * by latency_ms with latency_rate (independent draws, in that order).
 * The log line names the fault and the reviewed token's id
 * ("fault=random-status token=ID"), so a client's failures can be
 * matched to the faults that caused them.
 */
struct fk_fault_random {
	double	 status_rate, reset_rate, latency_rate;
	long	 status, latency_ms;
};
static struct fk_fault_random	 fk_fault_rnd;

/* A uniform draw in [0, 1). */
static double
fk_fault_draw(void)
{
	uint32_t	 u;

	util_random_bytes(&u, sizeof u);
	return ((double)u / 4294967296.0);
}

/* The log note of a random fault: its name and the token's id. */
static char *
fk_fault_random_note(struct evhttp_request *req, const char *what)
{
	cJSON		*body = NULL;
	const cJSON	*tok;
	char		*cause = NULL, *note, tid[9] = "none";

	if (fk_http_body_json(req, &body, &cause) == 0) {
		tok = cJSON_GetObjectItem(cJSON_GetObjectItem(body, "spec"),
		    "token");
		if (cJSON_IsString(tok))
			log_secret_id(tok->valuestring, tid);
	}
	free(cause);
	cJSON_Delete(body);
	xasprintf(&note, "fault=random-%s token=%s", what, tid);
	return (note);
}

/* Apply a random fault to req: 1 when it took the request over, else 0. */
static int
fk_fault_random_apply(struct evhttp_request *req)
{
	struct fk_fault_random	*f = &fk_fault_rnd;
	char			*note;

	if (f->status_rate > 0 && fk_fault_draw() < f->status_rate) {
		note = fk_fault_random_note(req, "status");
		fk_fault_status(req, f->status, 0, note);
	} else if (f->reset_rate > 0 && fk_fault_draw() < f->reset_rate) {
		note = fk_fault_random_note(req, "reset");
		fk_http_log(req, 0, note);
		fk_fault_park(req, FK_FAULT_RESET, 0, fk_fault_reset_cb);
	} else if (f->latency_rate > 0 && fk_fault_draw() < f->latency_rate) {
		note = fk_fault_random_note(req, "latency");
		fk_http_log(req, 0, note);
		fk_fault_park(req, FK_FAULT_LATENCY, f->latency_ms,
		    fk_fault_latency_cb);
	} else
		return (0);
	free(note);
	fk_stats.faulted++;
	return (1);
}

/*
 * Apply the active fault to a TokenReview request.  Returns 1 when the
 * fault took the request over (answered, parked or dropped), 0 when the
 * request is to be served normally, with *tamper the change to make to
 * an authenticated status (FK_TAMPER_NONE: none).
 */
int
fk_fault_apply(struct evhttp_request *req, enum fk_tamper *tamper)
{
	enum fk_fault_mode	 mode = fk_fault.mode;

	*tamper = FK_TAMPER_NONE;
	if (mode == FK_FAULT_NONE)
		return (fk_fault_random_apply(req));
	if (fk_fault.count > 0 && --fk_fault.count == 0)
		fk_fault.mode = FK_FAULT_NONE;
	fk_stats.faulted++;
	switch (mode) {
	case FK_FAULT_LATENCY:
		fk_fault_park(req, mode, fk_fault.latency_ms,
		    fk_fault_latency_cb);
		break;
	case FK_FAULT_STATUS:
		fk_fault_status(req, fk_fault.status, fk_fault.retry_after,
		    "fault=status");
		break;
	case FK_FAULT_RESET:
		fk_http_log(req, 0, "fault=reset");
		fk_fault_park(req, mode, 0, fk_fault_reset_cb);
		break;
	case FK_FAULT_HANG:
		fk_http_log(req, 0, "fault=hang");
		fk_fault_park(req, mode, 0, NULL);
		break;
	default:
		*tamper = (enum fk_tamper)(mode - FK_FAULT_OTHER_NAME + 1);
		return (0);
	}
	return (1);
}

/* Read an optional integer member within [min, max]; 0 or -1. */
static int
fk_fault_long(const cJSON *body, const char *key, long min, long max,
    long *out)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(body, key);

	if (v == NULL)
		return (0);
	if (!cJSON_IsNumber(v) || v->valuedouble < (double)min ||
	    v->valuedouble > (double)max ||
	    v->valuedouble != (double)(long)v->valuedouble)
		return (-1);
	*out = (long)v->valuedouble;
	return (0);
}

/* Parse a fault description; 0, or -1 with *cause. */
static int
fk_fault_parse(const cJSON *body, struct fk_fault *f, char **cause)
{
	const cJSON	*m = cJSON_GetObjectItemCaseSensitive(body, "mode");
	size_t		 i;

	memset(f, 0, sizeof *f);
	f->count = -1;
	f->status = 503;
	for (i = 1; cJSON_IsString(m) && i < FK_FAULT_NMODES; i++) {
		if (strcmp(m->valuestring, fk_fault_names[i]) == 0)
			f->mode = (enum fk_fault_mode)i;
	}
	if (f->mode == FK_FAULT_NONE) {
		*cause = xstrdup("mode must be latency, status, reset, hang, "
		    "other_name, other_namespace, other_uid, no_audiences or "
		    "no_pod");
		return (-1);
	}
	if (fk_fault_long(body, "latency_ms", 0, 3600000, &f->latency_ms) ||
	    fk_fault_long(body, "status", 100, 599, &f->status) ||
	    fk_fault_long(body, "retry_after", 0, 86400, &f->retry_after) ||
	    fk_fault_long(body, "count", 1, 1000000000, &f->count)) {
		*cause = xstrdup("latency_ms, status, retry_after and count "
		    "must be integers in range");
		return (-1);
	}
	return (0);
}

/* The active fault as JSON. */
cJSON *
fk_fault_describe(void)
{
	cJSON			*o = cJSON_CreateObject();
	struct fk_fault_park	*p;
	int			 parked = 0;

	TAILQ_FOREACH(p, &fk_fault_parked, entry)
		parked++;
	cJSON_AddStringToObject(o, "mode", fk_fault_names[fk_fault.mode]);
	if (fk_fault.mode == FK_FAULT_LATENCY)
		cJSON_AddNumberToObject(o, "latency_ms",
		    (double)fk_fault.latency_ms);
	if (fk_fault.mode == FK_FAULT_STATUS) {
		cJSON_AddNumberToObject(o, "status", (double)fk_fault.status);
		cJSON_AddNumberToObject(o, "retry_after",
		    (double)fk_fault.retry_after);
	}
	if (fk_fault.mode != FK_FAULT_NONE)
		cJSON_AddNumberToObject(o, "count", (double)fk_fault.count);
	cJSON_AddNumberToObject(o, "parked", parked);
	return (o);
}

/* POST /_test/faults. */
void
fk_fault_set(struct evhttp_request *req)
{
	struct fk_fault	 f;
	cJSON		*body = NULL;
	char		*cause = NULL;

	if (fk_http_body_json(req, &body, &cause) != 0 ||
	    fk_fault_parse(body, &f, &cause) != 0) {
		fk_http_reply_status(req, 400, "BadRequest", cause, NULL,
		    NULL);
		free(cause);
		cJSON_Delete(body);
		return;
	}
	cJSON_Delete(body);
	fk_fault = f;
	fk_http_reply_json(req, 200, fk_fault_describe(), NULL);
}

/* Read an optional rate member within [0, 1]; 0 or -1. */
static int
fk_fault_rate(const cJSON *body, const char *key, double *out)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(body, key);

	if (v == NULL)
		return (0);
	if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 &&
	    v->valuedouble <= 1))
		return (-1);
	*out = v->valuedouble;
	return (0);
}

/*
 * POST /_test/faults/random {"status_rate", "status"=503, "reset_rate",
 * "latency_rate", "latency_ms"=1000}: set the random faults (rates in
 * [0, 1]; all zero turns them off).  DELETE /_test/faults/random or
 * /_test/faults clears them.
 */
void
fk_fault_random_set(struct evhttp_request *req)
{
	struct fk_fault_random	 f = { 0, 0, 0, 503, 1000 };
	cJSON			*body = NULL, *o;
	char			*cause = NULL;

	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST &&
	    (fk_http_body_json(req, &body, &cause) != 0 ||
	    fk_fault_rate(body, "status_rate", &f.status_rate) ||
	    fk_fault_rate(body, "reset_rate", &f.reset_rate) ||
	    fk_fault_rate(body, "latency_rate", &f.latency_rate) ||
	    fk_fault_long(body, "status", 100, 599, &f.status) ||
	    fk_fault_long(body, "latency_ms", 0, 3600000, &f.latency_ms))) {
		fk_http_reply_status(req, 400, "BadRequest", cause != NULL ?
		    cause : "status_rate, reset_rate and latency_rate must be "
		    "numbers in [0, 1]; status and latency_ms integers in "
		    "range", NULL, NULL);
		free(cause);
		cJSON_Delete(body);
		return;
	}
	cJSON_Delete(body);
	fk_fault_rnd = f;
	o = cJSON_CreateObject();
	cJSON_AddNumberToObject(o, "status_rate", f.status_rate);
	cJSON_AddNumberToObject(o, "status", (double)f.status);
	cJSON_AddNumberToObject(o, "reset_rate", f.reset_rate);
	cJSON_AddNumberToObject(o, "latency_rate", f.latency_rate);
	cJSON_AddNumberToObject(o, "latency_ms", (double)f.latency_ms);
	fk_http_reply_json(req, 200, o, NULL);
}

/* Drop every hung request's connection (latency ones are left to run). */
static void
fk_fault_drop_hung(void)
{
	struct fk_fault_park	*p, *next;
	struct evhttp_connection *evcon;

	for (p = TAILQ_FIRST(&fk_fault_parked); p != NULL; p = next) {
		next = TAILQ_NEXT(p, entry);
		if (p->mode != FK_FAULT_HANG)
			continue;
		evcon = p->evcon;
		fk_fault_unpark(p);
		evhttp_connection_free(evcon);
	}
}

/* DELETE /_test/faults: clear the fault and drop hung connections. */
void
fk_fault_clear(struct evhttp_request *req)
{
	fk_fault.mode = FK_FAULT_NONE;
	fk_fault.count = -1;
	memset(&fk_fault_rnd, 0, sizeof fk_fault_rnd);
	fk_fault_review_as_clear();
	fk_fault_drop_hung();
	fk_http_reply_json(req, 200, fk_fault_describe(), NULL);
}

/*
 * POST /_test/faults/release: answer every delayed (latency) request now,
 * so a test can hold requests in flight for exactly as long as it needs.
 */
void
fk_fault_release(struct evhttp_request *req)
{
	struct fk_fault_park	*p;
	cJSON			*o = cJSON_CreateObject();
	int			 n = 0;

	TAILQ_FOREACH(p, &fk_fault_parked, entry) {
		if (p->mode != FK_FAULT_LATENCY)
			continue;
		event_active(p->timer, EV_TIMEOUT, 0);
		n++;
	}
	cJSON_AddNumberToObject(o, "released", n);
	fk_http_reply_json(req, 200, o, NULL);
}

/* At exit: drop every parked connection. */
void
fk_fault_shutdown(void)
{
	struct fk_fault_park	*p;
	struct evhttp_connection *evcon;

	while ((p = TAILQ_FIRST(&fk_fault_parked)) != NULL) {
		evcon = p->evcon;
		fk_fault_unpark(p);
		evhttp_connection_free(evcon);
	}
}

/*
 * The review_as fault (POST /_test/faults/review_as): a rogue cluster.
 * The next `count` TokenReviews (default: until cleared) are answered 201
 * authenticated:true as `username` (with `uid` and, in user.extra,
 * `pod_name` when given) and spec.audiences echoed, whatever the token:
 * the client's checks
 * of the reviewed identity (valid Kubernetes names, escaping in its logs)
 * get names no real API server would send.  Independent of the modes
 * above; DELETE /_test/faults/review_as or /_test/faults clears it.
 */
static char	*fk_review_as_user;	/* NULL: off */
static char	*fk_review_as_pod;
static char	*fk_review_as_uid;
static long	 fk_review_as_count = -1;

/* Forget the review_as fault. */
static void
fk_fault_review_as_clear(void)
{
	free(fk_review_as_user);
	free(fk_review_as_pod);
	free(fk_review_as_uid);
	fk_review_as_user = fk_review_as_pod = fk_review_as_uid = NULL;
	fk_review_as_count = -1;
}

/* POST (set) or DELETE (clear) /_test/faults/review_as. */
void
fk_fault_review_as_set(struct evhttp_request *req)
{
	cJSON		*body = NULL, *o;
	const cJSON	*u, *p, *id;
	char		*cause = NULL;
	long		 count = -1;

	fk_fault_review_as_clear();
	if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
		if (fk_http_body_json(req, &body, &cause) != 0 ||
		    !cJSON_IsString(u = cJSON_GetObjectItem(body,
		    "username")) || ((p = cJSON_GetObjectItem(body,
		    "pod_name")) != NULL && !cJSON_IsString(p)) ||
		    ((id = cJSON_GetObjectItem(body, "uid")) != NULL &&
		    !cJSON_IsString(id)) ||
		    fk_fault_long(body, "count", 1, 1000000000, &count)) {
			fk_http_reply_status(req, 400, "BadRequest", cause !=
			    NULL ? cause : "username (string) is required; "
			    "pod_name and uid strings, count an integer", NULL,
			    NULL);
			free(cause);
			cJSON_Delete(body);
			return;
		}
		fk_review_as_user = xstrdup(u->valuestring);
		if (p != NULL)
			fk_review_as_pod = xstrdup(p->valuestring);
		if (id != NULL)
			fk_review_as_uid = xstrdup(id->valuestring);
		fk_review_as_count = count;
		cJSON_Delete(body);
	}
	o = cJSON_CreateObject();
	cJSON_AddStringToObject(o, "review_as", fk_review_as_user != NULL ?
	    fk_review_as_user : "");
	fk_http_reply_json(req, 200, o, NULL);
}

/*
 * Answer req as the review_as fault when it is set: 1 (answered) or 0.
 */
int
fk_fault_review_as(struct evhttp_request *req)
{
	cJSON		*body = NULL, *tr, *status, *user, *extra;
	const cJSON	*auds;
	char		*cause = NULL;

	if (fk_review_as_user == NULL)
		return (0);
	fk_http_body_json(req, &body, &cause);
	free(cause);
	tr = cJSON_CreateObject();
	cJSON_AddStringToObject(tr, "kind", "TokenReview");
	cJSON_AddStringToObject(tr, "apiVersion", "authentication.k8s.io/v1");
	status = cJSON_AddObjectToObject(tr, "status");
	cJSON_AddTrueToObject(status, "authenticated");
	user = cJSON_AddObjectToObject(status, "user");
	cJSON_AddStringToObject(user, "username", fk_review_as_user);
	if (fk_review_as_uid != NULL)
		cJSON_AddStringToObject(user, "uid", fk_review_as_uid);
	if (fk_review_as_pod != NULL) {
		extra = cJSON_AddObjectToObject(user, "extra");
		cJSON_AddItemToObject(extra,
		    "authentication.kubernetes.io/pod-name",
		    cJSON_CreateStringArray((const char *[]){ fk_review_as_pod },
		    1));
	}
	auds = cJSON_GetObjectItem(cJSON_GetObjectItem(body, "spec"),
	    "audiences");
	if (cJSON_IsArray(auds))
		cJSON_AddItemToObject(status, "audiences",
		    cJSON_Duplicate(auds, 1));
	cJSON_Delete(body);
	fk_stats.faulted++;
	fk_stats.reviewed++;
	fk_http_reply_json(req, 201, tr, "fault=review_as");
	if (fk_review_as_count > 0 && --fk_review_as_count == 0)
		fk_fault_review_as_clear();
	return (1);
}
