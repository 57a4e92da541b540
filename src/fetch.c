/*
 * fetch.c: outbound HTTPS on a worker's event loop (libcurl multi).
 *
 * One struct fetch per worker thread (per event_base).  It owns a CURLM
 * whose sockets and single timer are driven by libevent (the hiperfifo
 * pattern): curl announces sockets through fetch_socket_cb, each gets a
 * small context with its own struct event attached with curl_multi_assign;
 * curl's timer becomes one libevent timer.  libevent callbacks call
 * curl_multi_socket_action and then drain finished transfers with
 * curl_multi_info_read; a finished handle is removed from the multi BEFORE
 * the user's callback runs, so the callback is outside every curl callback
 * and may start or cancel transfers.  curl is never re-entered from its own
 * callbacks.  The multi keeps its connection cache across transfers.
 *
 * Owns: the multi, every socket context, every transfer (easy handle,
 * header list, body copy, response buffer).  Request headers, the POST
 * body and the response hold secrets (bearer tokens, a JWT, a Keystone
 * token): each is wiped before it is freed.  curl's own internal copies
 * are outside our reach.
 *
 * Rules for callers: fetch_cancel may be called from any libevent callback
 * and from a completion callback (even for another transfer; a transfer
 * cannot cancel itself from its own callback, it is finishing anyway).
 * fetch_destroy must not be called from a completion callback.
 *
 * Where it connects (API.md §7): every socket is opened by
 * fetch_opensocket_cb, which refuses link-local addresses and, for a
 * request carrying allowed_hosts, addresses outside them (outbound.c), so
 * the check sees the address actually connected to, after DNS.  Such a
 * transfer never reuses a cached connection nor leaves one behind.  TLS
 * is 1.2 or newer; a proxy is used only when the request names one (the
 * proxy environment variables are ignored).
 *
 * Finished transfers give their easy handle back, reset, to a small
 * per-fetch pool (FETCH_IDLE_EASY) that the next transfers take from.
 *
 * Slots: a fetch has two pools, one for the clusters' API servers
 * (TokenReviews, which unauthenticated clients set off) and one for
 * everything else (Keystone, which admin calls wait on), so that review
 * junk against a slow cluster can never starve Keystone-authenticated
 * admin calls (issue 12).  A transfer holds one slot of its pool from
 * fetch_start until it finishes or is cancelled.
 *
 * Thread: the worker's thread only; nothing here blocks (curl's threaded
 * resolver keeps DNS off the loop).
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "k8sauth.h"

#define FETCH_MAX_HEADER_BYTES 65536                 /* all response headers */
#define FETCH_MAX_HEADER_VALUE 8192                  /* one kept header value */
#define FETCH_MAX_RESPONSE     (1024L * 1024 * 1024) /* 1 GiB */
#define FETCH_IDLE_EASY        16 /* easy handles kept for reuse, per fetch */

/*
 * A socket curl asked us to watch.  When a transfer ends curl drops its
 * socket (CURL_POLL_REMOVE) while the connection waits in its cache for
 * the next one, which announces it again: the context is parked then,
 * its event left in the epoll set, so the next transfer on the
 * connection costs no epoll_ctl(2) at all (issue 12: one DEL and one ADD
 * per TokenReview before).  A parked event that fires (the idle
 * connection got data or was closed: curl's liveness check sees that on
 * reuse) is deleted then; a socket curl closes goes through
 * fetch_closesocket_cb, which forgets its context before the close, so
 * a parked event never outlives its socket nor meets a reused fd.  Only
 * sockets fetch_opensocket_cb opened (owned) are parked: curl closes
 * others (its threaded resolver's socketpair) with close(2) right after
 * their REMOVE, so their context is freed at the REMOVE as before; a
 * parked event on such an fd would outlive it, and whatever the process
 * opens next under that number would never be watched (libevent would
 * think the fd already in the epoll set).
 */
struct fetch_sock {
	struct fetch *f;
	curl_socket_t fd;
	struct event ev;
	int armed;  /* ev added */
	short kind; /* the events ev waits for, when armed */
	int parked; /* curl dropped it; the connection is idle */
	int owned; /* opened by fetch_opensocket_cb, closed by ..._closesocket_cb */
	LIST_ENTRY(fetch_sock) entry;
};

/* One transfer: an easy handle and what it reads and writes. */
struct fetch_transfer {
	struct fetch *f;
	CURL *easy;
	int setopt_failed;
	struct curl_slist *headers; /* secrets: wiped */
	char *post;                 /* body copy: wiped */
	size_t postlen;
	char *buf; /* response: wiped */
	size_t len;
	size_t cap;
	size_t max_response;
	int too_large;
	size_t header_bytes;
	char *retry_after;
	char *subject_token; /* secret: wiped */
	char errbuf[CURL_ERROR_SIZE];
	fetch_cb cb;
	void *arg;
	int attached; /* easy is in f->multi */
	int linked;   /* on f->transfers */
	int cluster;  /* holds a cluster slot, else a Keystone slot */
	int failing;  /* multi rebuilt: fail it */
	int in_callback;
	struct outbound_rules *rules; /* allowed_hosts, or NULL */
	char *host;                   /* the URL's host, for the globs */
	int proxied;                  /* sockets go to the proxy */
	const char *refused;          /* why a socket was refused */
	LIST_ENTRY(fetch_transfer) entry;
};

struct fetch {
	struct event_base *base;
	CURLM *multi;
	struct event *timer;
	long max_transfers; /* cluster slots */
	long max_other;     /* Keystone slots */
	long inflight;      /* every transfer */
	long inflight_cluster;
	LIST_HEAD(, fetch_transfer) transfers;
	LIST_HEAD(, fetch_sock) socks;
	CURL *idle[FETCH_IDLE_EASY]; /* reset easy handles kept for reuse */
	int nidle;
};

static void fetch_event_cb(evutil_socket_t, short, void *);

/* Stop watching a socket and free its context. */
static void
fetch_sock_free(struct fetch_sock *s)
{
	if (s->armed)
		event_del(&s->ev);
	LIST_REMOVE(s, entry);
	free(s);
}

/* The context of fd, or NULL. */
static struct fetch_sock *
fetch_sock_find(struct fetch *f, curl_socket_t fd)
{
	struct fetch_sock *s;

	LIST_FOREACH(s, &f->socks, entry)
	{
		if (s->fd == fd)
			return (s);
	}
	return (NULL);
}

/*
 * Open a socket for curl and note it as ours (owned, parked until curl
 * announces it), so that its context may outlive curl's REMOVE: it is
 * closed through fetch_closesocket_cb.
 */
static curl_socket_t
fetch_sock_open(struct fetch *f, const struct curl_sockaddr *addr)
{
	struct fetch_sock *s;
	curl_socket_t fd;

	if ((fd = socket(addr->family, addr->socktype, addr->protocol)) == -1)
		return (CURL_SOCKET_BAD);
	if ((s = fetch_sock_find(f, fd)) == NULL) {
		s = xcalloc(1, sizeof *s);
		s->f = f;
		s->fd = fd;
		LIST_INSERT_HEAD(&f->socks, s, entry);
	} else if (s->armed) {
		event_del(&s->ev); /* left from an earlier socket: stale */
		s->armed = 0;
	}
	s->owned = 1;
	s->parked = 1;
	return (fd);
}

/*
 * CURLOPT_CLOSESOCKETFUNCTION (every socket curl opens is ours: see
 * fetch_opensocket_cb): stop watching the socket while its fd is still
 * open, then close it.  curl sends the socket's REMOVE before calling
 * this, so its context is normally parked and is freed here; one curl
 * might still hold (no REMOVE seen) is only disarmed, and freed or
 * reused when curl lets go of it.
 */
static int
fetch_closesocket_cb(void *arg, curl_socket_t fd)
{
	struct fetch *f = arg;
	struct fetch_sock *s;

	if ((s = fetch_sock_find(f, fd)) != NULL) {
		if (s->armed)
			event_del(&s->ev);
		s->armed = 0;
		s->owned = 0; /* the fd number may come back as anything */
		if (s->parked)
			fetch_sock_free(s);
	}
	return (close(fd));
}

/*
 * CURLMOPT_SOCKETFUNCTION: (re)arm, or park, the event for one socket.
 * A REMOVE may come with socketp NULL (a socket never announced): ignore
 * it.  curl deletes its own entry after REMOVE, so no curl_multi_assign
 * then; a socket announced anew may find its parked context.
 * curl repeats the same wish for a socket (each transfer step announces
 * it again): an event already waiting for exactly those events is left
 * alone, since a del + add costs two epoll_ctl(2) calls.
 */
static int
fetch_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp,
    void *socketp)
{
	struct fetch *f = userp;
	struct fetch_sock *s = socketp;
	short kind = EV_PERSIST;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL && s->owned)
			s->parked = 1;
		else if (s != NULL)
			fetch_sock_free(s); /* curl closes it without us */
		return (0);
	}
	if (what & CURL_POLL_IN)
		kind |= EV_READ;
	if (what & CURL_POLL_OUT)
		kind |= EV_WRITE;
	if (s == NULL) {
		if ((s = fetch_sock_find(f, fd)) == NULL) {
			s = xcalloc(1, sizeof *s);
			s->f = f;
			s->fd = fd;
			LIST_INSERT_HEAD(&f->socks, s, entry);
		}
		s->parked = 0;
		curl_multi_assign(f->multi, fd, s);
	}
	if (s->armed && s->kind == kind)
		return (0);
	else if (s->armed) {
		event_del(&s->ev);
		s->armed = 0;
	}
	event_assign(&s->ev, f->base, fd, kind, fetch_event_cb, s);
	if (event_add(&s->ev, NULL) == 0) {
		s->armed = 1;
		s->kind = kind;
	} else
		log_warn("fetch: event_add failed for fd %d", (int)fd);
	return (0);
}

/*
 * CURLMOPT_TIMERFUNCTION: -1 deletes the timer, anything else (0 included)
 * re-arms it; the work happens later in fetch_timer_cb, never here.
 */
static int
fetch_timer_fn(CURLM *multi, long timeout_ms, void *userp)
{
	struct fetch *f = userp;
	struct timeval tv;

	if (timeout_ms < 0) {
		evtimer_del(f->timer);
		return (0);
	}
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (evtimer_add(f->timer, &tv) != 0)
		log_warn("fetch: evtimer_add failed");
	return (0);
}

/* A new multi handle with our callbacks and connection caps. */
static void
fetch_multi_new(struct fetch *f)
{
	CURLM *m;

	if ((m = curl_multi_init()) == NULL)
		fatalx("curl_multi_init failed");
	curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, fetch_socket_cb);
	curl_multi_setopt(m, CURLMOPT_SOCKETDATA, f);
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, fetch_timer_fn);
	curl_multi_setopt(m, CURLMOPT_TIMERDATA, f);
	/* Both pools: reviews must not take the connections Keystone needs. */
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS,
	    f->max_transfers + f->max_other);
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS,
	    f->max_transfers + f->max_other);
	f->multi = m;
}

/* Wipe a header list (it holds credentials) and free it. */
static void
fetch_slist_wipe(struct curl_slist *l)
{
	struct curl_slist *p;

	for (p = l; p != NULL; p = p->next)
		explicit_bzero(p->data, strlen(p->data));
	curl_slist_free_all(l);
}

/*
 * An easy handle for a new transfer: a reset one from the idle pool, else
 * a new one.  Reuse spares curl_easy_init/cleanup per transfer (a handle
 * and its 16 KiB receive buffer malloc'ed and freed for every TokenReview:
 * bench/README.md, the profile); curl_easy_reset restores every option to
 * its default, so nothing of the previous request is set on the next.
 */
static CURL *
fetch_easy_get(struct fetch *f)
{
	if (f->nidle > 0)
		return (f->idle[--f->nidle]);
	return (curl_easy_init());
}

/* Give a detached easy handle back: reset into the pool, or cleaned up. */
static void
fetch_easy_put(struct fetch *f, CURL *easy)
{
	if (f != NULL && f->nidle < FETCH_IDLE_EASY) {
		curl_easy_reset(easy);
		f->idle[f->nidle++] = easy;
	} else
		curl_easy_cleanup(easy);
}

/* Free a transfer that is neither attached nor linked any more. */
static void
fetch_transfer_free(struct fetch_transfer *t)
{
	if (t->easy != NULL)
		fetch_easy_put(t->f, t->easy);
	fetch_slist_wipe(t->headers);
	if (t->post != NULL) {
		explicit_bzero(t->post, t->postlen);
		free(t->post);
	}
	if (t->buf != NULL) {
		explicit_bzero(t->buf, t->cap);
		free(t->buf);
	}
	free(t->retry_after);
	freezero_str(t->subject_token);
	outbound_rules_free(t->rules);
	free(t->host);
	free(t);
}

/* Take a transfer off the fetch's list. */
static void
fetch_unlink(struct fetch_transfer *t)
{
	if (!t->linked)
		return;
	LIST_REMOVE(t, entry);
	t->linked = 0;
	t->f->inflight--;
	if (t->cluster)
		t->f->inflight_cluster--;
}

/* Map a curl result to the caller's error classes. */
static enum fetch_error
fetch_map_error(const struct fetch_transfer *t, CURLcode rc)
{
	switch (rc) {
	case CURLE_OK:
		return (FETCH_OK);
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
		return (FETCH_CONNECT);
	case CURLE_OPERATION_TIMEDOUT:
		return (FETCH_TIMEOUT);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		return (FETCH_TLS);
	case CURLE_FILESIZE_EXCEEDED:
		return (FETCH_TOO_LARGE);
	case CURLE_WRITE_ERROR:
		return (t->too_large ? FETCH_TOO_LARGE : FETCH_OTHER);
	default:
		return (FETCH_OTHER);
	}
}

/*
 * Report a finished transfer (already out of the multi) to its owner, then
 * free it.  Runs outside every curl callback.
 */
static void
fetch_finish(struct fetch_transfer *t, CURLcode rc)
{
	struct fetch_result res;
	double total = 0;

	memset(&res, 0, sizeof res);
	res.error = fetch_map_error(t, rc);
	if (rc != CURLE_OK && t->refused != NULL)
		res.error = FETCH_DESTINATION;
	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &res.status);
	curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME, &total);
	res.seconds = total;
	res.body = t->buf != NULL ? t->buf : "";
	res.bodylen = t->len;
	res.retry_after = t->retry_after;
	res.subject_token = t->subject_token;
	if (rc != CURLE_OK && t->refused != NULL)
		res.errmsg = t->refused;
	else if (rc != CURLE_OK)
		res.errmsg =
		    t->errbuf[0] != '\0' ? t->errbuf : curl_easy_strerror(rc);
	fetch_unlink(t);
	t->in_callback = 1;
	if (t->cb != NULL)
		t->cb(&res, t->arg);
	fetch_transfer_free(t);
}

/* Collect finished transfers after curl_multi_socket_action. */
static void
fetch_drain(struct fetch *f)
{
	CURLMsg *msg;
	struct fetch_transfer *t;
	CURLcode rc;
	char *p;
	int left;

	while ((msg = curl_multi_info_read(f->multi, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		rc = msg->data.result;
		p = NULL;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
		t = (struct fetch_transfer *)p;
		/* msg dies with the removal: read everything first. */
		curl_multi_remove_handle(f->multi, msg->easy_handle);
		if (t == NULL)
			continue;
		t->attached = 0;
		fetch_finish(t, rc);
	}
}

/* The first transfer marked as failing, or NULL. */
static struct fetch_transfer *
fetch_first_failing(struct fetch *f)
{
	struct fetch_transfer *t;

	LIST_FOREACH(t, &f->transfers, entry)
	{
		if (t->failing)
			return (t);
	}
	return (NULL);
}

/*
 * curl_multi_socket_action failed: every transfer is in an unknown state.
 * Throw the multi away, start a fresh one, and fail each transfer that was
 * in flight (callbacks may start new ones on the new multi, or cancel
 * others that are still waiting to be failed).
 */
static void
fetch_reset(struct fetch *f, CURLMcode mc)
{
	struct fetch_transfer *t;
	struct fetch_sock *s;

	log_err("fetch: curl_multi_socket_action: %s; failing %ld transfers",
	    curl_multi_strerror(mc), f->inflight);
	LIST_FOREACH(t, &f->transfers, entry)
	{
		if (t->attached)
			curl_multi_remove_handle(f->multi, t->easy);
		t->attached = 0;
		t->failing = 1;
	}
	curl_multi_cleanup(f->multi);
	while ((s = LIST_FIRST(&f->socks)) != NULL)
		fetch_sock_free(s);
	evtimer_del(f->timer);
	fetch_multi_new(f);
	while ((t = fetch_first_failing(f)) != NULL) {
		snprintf(t->errbuf, sizeof t->errbuf, "transfer aborted: %s",
		    curl_multi_strerror(mc));
		fetch_finish(t, CURLE_ABORTED_BY_CALLBACK);
	}
}

/* After socket_action: rebuild on failure, else report what finished. */
static void
fetch_after_action(struct fetch *f, CURLMcode mc)
{
	if (mc != CURLM_OK)
		fetch_reset(f, mc);
	else
		fetch_drain(f);
}

/*
 * libevent: activity on a socket curl watches, or on a parked one (an
 * idle connection got data or was closed: stop watching it; curl checks
 * it before reusing it).
 */
static void
fetch_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch_sock *s = arg;
	struct fetch *f = s->f;
	int mask = 0, running = 0;
	CURLMcode mc;

	if (s->parked) {
		event_del(&s->ev);
		s->armed = 0;
		return;
	}

	if (what & EV_READ)
		mask |= CURL_CSELECT_IN;
	if (what & EV_WRITE)
		mask |= CURL_CSELECT_OUT;
	mc = curl_multi_socket_action(f->multi, fd, mask, &running);
	fetch_after_action(f, mc);
}

/* libevent: curl's timer expired. */
static void
fetch_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fetch *f = arg;
	int running = 0;
	CURLMcode mc;

	mc = curl_multi_socket_action(f->multi, CURL_SOCKET_TIMEOUT, 0,
	    &running);
	fetch_after_action(f, mc);
}

/*
 * A fetch context on base allowing max_cluster transfers to clusters and
 * max_other to Keystone at once.
 */
struct fetch *
fetch_create(struct event_base *base, long max_cluster, long max_other)
{
	struct fetch *f;

	f = xcalloc(1, sizeof *f);
	f->base = base;
	f->max_transfers = max_cluster > 0 ? max_cluster : 1;
	f->max_other = max_other > 0 ? max_other : 1;
	LIST_INIT(&f->transfers);
	LIST_INIT(&f->socks);
	if ((f->timer = evtimer_new(base, fetch_timer_cb, f)) == NULL)
		fatalx("fetch: evtimer_new failed");
	fetch_multi_new(f);
	return (f);
}

/*
 * Cancel everything (no callbacks) and free.  The multi is cleaned up
 * before the socket contexts: curl_multi_cleanup may still call the socket
 * callback for cached connections.
 */
void
fetch_destroy(struct fetch *f)
{
	struct fetch_transfer *t;
	struct fetch_sock *s;

	if (f == NULL)
		return;
	while ((t = LIST_FIRST(&f->transfers)) != NULL) {
		if (t->attached)
			curl_multi_remove_handle(f->multi, t->easy);
		t->attached = 0;
		fetch_unlink(t);
		fetch_transfer_free(t);
	}
	curl_multi_cleanup(f->multi);
	while ((s = LIST_FIRST(&f->socks)) != NULL)
		fetch_sock_free(s);
	while (f->nidle > 0)
		curl_easy_cleanup(f->idle[--f->nidle]);
	event_free(f->timer);
	free(f);
}

/* Transfers started and not yet finished or cancelled. */
long
fetch_inflight(const struct fetch *f)
{
	return (f->inflight);
}

/* Transfers to clusters started and not yet finished or cancelled. */
long
fetch_inflight_cluster(const struct fetch *f)
{
	return (f->inflight_cluster);
}

/* CURLOPT_WRITEFUNCTION: append to the response, refuse past the cap. */
static size_t
fetch_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct fetch_transfer *t = arg;
	size_t n = size * nmemb, want;

	if (n > t->max_response - t->len) {
		t->too_large = 1;
		return (0);
	}
	if (t->len + n + 1 > t->cap) {
		want = t->cap < 1024 ? 1024 : t->cap * 2;
		if (want < t->len + n + 1)
			want = t->len + n + 1;
		if (want > t->max_response + 1)
			want = t->max_response + 1;
		t->buf = xreallocarray(t->buf, 1, want);
		t->cap = want;
	}
	memcpy(t->buf + t->len, ptr, n);
	t->len += n;
	t->buf[t->len] = '\0';
	return (n);
}

/* If line is "name: value", replace *out with the trimmed value. */
static void
fetch_header_keep(const char *line, size_t n, const char *name, char **out)
{
	size_t nl = strlen(name), start, end;

	if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
		return;
	start = nl + 1;
	end = n;
	while (start < end && (line[start] == ' ' || line[start] == '\t'))
		start++;
	while (end > start && strchr(" \t\r\n", line[end - 1]) != NULL)
		end--;
	freezero_str(*out);
	*out = NULL;
	if (end - start <= FETCH_MAX_HEADER_VALUE)
		*out = xstrndup(line + start, end - start);
}

/*
 * CURLOPT_HEADERFUNCTION: keep Retry-After and X-Subject-Token of the last
 * response (a status line starts a new one), all headers bounded.
 */
static size_t
fetch_header_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct fetch_transfer *t = arg;
	size_t n = size * nmemb;

	t->header_bytes += n;
	if (t->header_bytes > FETCH_MAX_HEADER_BYTES) {
		t->too_large = 1;
		return (0);
	}
	if (n >= 5 && strncmp(ptr, "HTTP/", 5) == 0) {
		free(t->retry_after);
		t->retry_after = NULL;
		freezero_str(t->subject_token);
		t->subject_token = NULL;
		return (n);
	}
	fetch_header_keep(ptr, n, "Retry-After", &t->retry_after);
	fetch_header_keep(ptr, n, "X-Subject-Token", &t->subject_token);
	return (n);
}

/* Does s hold a CR or LF (header injection)? */
static int
fetch_bad_header_value(const char *s)
{
	return (s != NULL && strpbrk(s, "\r\n") != NULL);
}

/* Refuse a request we will not send. */
static int
fetch_check_request(const struct fetch_request *req, char **cause)
{
	const char *why = NULL;
	int post;

	post = req->method != NULL && strcmp(req->method, "POST") == 0;
	if (req->method == NULL || (!post && strcmp(req->method, "GET") != 0))
		why = "method must be GET or POST";
	else if (req->url == NULL)
		why = "no URL";
	else if (strncasecmp(req->url, "https://", 8) != 0 &&
	    !(req->allow_http && strncasecmp(req->url, "http://", 7) == 0))
		why = req->allow_http ? "URL must be http:// or https://"
				      : "URL must be https://";
	else if (!post && req->body != NULL)
		why = "body with GET";
	else if (req->timeout_ms <= 0)
		why = "timeout_ms must be positive";
	else if (req->max_response == 0 ||
	    req->max_response > FETCH_MAX_RESPONSE)
		why = "max_response must be between 1 byte and 1 GiB";
	else if (fetch_bad_header_value(req->bearer) ||
	    fetch_bad_header_value(req->auth_token) ||
	    fetch_bad_header_value(req->subject_token))
		why = "header value holds a line break";
	if (why == NULL)
		return (0);
	if (cause != NULL)
		*cause = xstrdup(why);
	return (-1);
}

/* curl_easy_setopt with a long; remember failure. */
static void
fetch_opt_long(struct fetch_transfer *t, CURLoption opt, long v)
{
	if (curl_easy_setopt(t->easy, opt, v) != CURLE_OK)
		t->setopt_failed = 1;
}

/* curl_easy_setopt with a pointer; remember failure. */
static void
fetch_opt_ptr(struct fetch_transfer *t, CURLoption opt, const void *v)
{
	if (curl_easy_setopt(t->easy, opt, v) != CURLE_OK)
		t->setopt_failed = 1;
}

/* curl_easy_setopt with a curl_off_t; remember failure. */
static void
fetch_opt_off(struct fetch_transfer *t, CURLoption opt, curl_off_t v)
{
	if (curl_easy_setopt(t->easy, opt, v) != CURLE_OK)
		t->setopt_failed = 1;
}

/* Append "name: value" to the request headers when value is set. */
static void
fetch_add_header(struct fetch_transfer *t, const char *name, const char *value)
{
	struct curl_slist *l;
	char *h;

	if (value == NULL)
		return;
	xasprintf(&h, "%s: %s", name, value);
	if ((l = curl_slist_append(t->headers, h)) == NULL)
		fatalx("curl_slist_append failed");
	t->headers = l;
	freezero_str(h);
}

/* Request headers: JSON both ways, credentials, no Expect: 100. */
static void
fetch_setup_headers(struct fetch_transfer *t, const struct fetch_request *req)
{
	char *bearer = NULL;

	fetch_add_header(t, "Content-Type", "application/json");
	fetch_add_header(t, "Accept", "application/json");
	fetch_add_header(t, "Expect", "");
	if (req->bearer != NULL)
		xasprintf(&bearer, "Bearer %s", req->bearer);
	fetch_add_header(t, "Authorization", bearer);
	freezero_str(bearer);
	fetch_add_header(t, "X-Auth-Token", req->auth_token);
	fetch_add_header(t, "X-Subject-Token", req->subject_token);
	fetch_opt_ptr(t, CURLOPT_HTTPHEADER, t->headers);
}

/* Protocols, redirects and TLS verification: never relaxed. */
static void
fetch_setup_security(struct fetch_transfer *t, const struct fetch_request *req)
{
#if LIBCURL_VERSION_NUM >= 0x074d00
	struct curl_blob blob;
#endif

#if LIBCURL_VERSION_NUM >= 0x075500
	const char *protos;

	protos = req->allow_http ? "http,https" : "https";

	fetch_opt_ptr(t, CURLOPT_PROTOCOLS_STR, protos);
	fetch_opt_ptr(t, CURLOPT_REDIR_PROTOCOLS_STR, protos);
#else
	long protos = CURLPROTO_HTTPS | (req->allow_http ? CURLPROTO_HTTP : 0);

	fetch_opt_long(t, CURLOPT_PROTOCOLS, protos);
	fetch_opt_long(t, CURLOPT_REDIR_PROTOCOLS, protos);
#endif
	fetch_opt_long(t, CURLOPT_FOLLOWLOCATION, 0);
	fetch_opt_long(t, CURLOPT_SSL_VERIFYPEER, 1);
	fetch_opt_long(t, CURLOPT_SSL_VERIFYHOST, 2);
	if (req->ca_pem != NULL) {
#if LIBCURL_VERSION_NUM >= 0x074d00
		blob.data = (void *)(uintptr_t)req->ca_pem;
		blob.len = strlen(req->ca_pem);
		blob.flags = CURL_BLOB_COPY;
		fetch_opt_ptr(t, CURLOPT_CAINFO_BLOB, &blob);
		fetch_opt_ptr(t, CURLOPT_CAPATH, NULL);
#else
		t->setopt_failed = 1; /* no way to pin: refuse */
#endif
	} else if (req->ca_file != NULL) {
		fetch_opt_ptr(t, CURLOPT_CAINFO, req->ca_file);
		fetch_opt_ptr(t, CURLOPT_CAPATH, NULL);
	}
}

/*
 * CURLOPT_OPENSOCKETFUNCTION: open the socket only for an allowed
 * address (outbound.c); else CURL_SOCKET_BAD, which curl reports as a
 * failed connect, and t->refused says why.  Behind a proxy the address
 * is the proxy's (configured by the operator): only link-local is
 * refused for it, and the destination host must pass allowed_hosts by
 * its text (a name matching no glob cannot be judged by its address).
 */
static curl_socket_t
fetch_opensocket_cb(void *arg, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct fetch_transfer *t = arg;
	const char *why = NULL;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return (CURL_SOCKET_BAD);
	if (outbound_addr_allowed(t->proxied ? NULL : t->rules, t->host,
		&addr->addr, &why) != 0 ||
	    (t->proxied &&
		outbound_proxied_allowed(t->rules, t->host, &why) != 0)) {
		t->refused = why;
		return (CURL_SOCKET_BAD);
	}
	return (fetch_sock_open(t->f, addr));
}

/* Where the transfer may connect, TLS floor and proxy (API.md §7). */
static void
fetch_setup_destination(struct fetch_transfer *t,
    const struct fetch_request *req)
{
	if (curl_easy_setopt(t->easy, CURLOPT_OPENSOCKETFUNCTION,
		fetch_opensocket_cb) != CURLE_OK)
		t->setopt_failed = 1;
	fetch_opt_ptr(t, CURLOPT_OPENSOCKETDATA, t);
	if (curl_easy_setopt(t->easy, CURLOPT_CLOSESOCKETFUNCTION,
		fetch_closesocket_cb) != CURLE_OK)
		t->setopt_failed = 1;
	/* The fetch, not t: a connection outlives its first transfer. */
	fetch_opt_ptr(t, CURLOPT_CLOSESOCKETDATA, t->f);
	fetch_opt_long(t, CURLOPT_SSLVERSION, CURL_SSLVERSION_TLSv1_2);
	fetch_opt_ptr(t, CURLOPT_PROXY, req->proxy != NULL ? req->proxy : "");
	t->proxied = req->proxy != NULL && *req->proxy != '\0';
	if (!outbound_rules_empty(t->rules)) {
		fetch_opt_long(t, CURLOPT_FRESH_CONNECT, 1);
		fetch_opt_long(t, CURLOPT_FORBID_REUSE, 1);
	}
}

/* Everything an easy handle needs for req. */
static void
fetch_setup(struct fetch_transfer *t, const struct fetch_request *req)
{
	long cto;

	cto = req->connect_timeout_ms > 0 ? req->connect_timeout_ms
					  : req->timeout_ms;
	fetch_opt_ptr(t, CURLOPT_URL, req->url);
	fetch_opt_long(t, CURLOPT_NOSIGNAL, 1);
	fetch_opt_long(t, CURLOPT_CONNECTTIMEOUT_MS, cto);
	fetch_opt_long(t, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	fetch_setup_security(t, req);
	fetch_setup_destination(t, req);
	fetch_opt_off(t, CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)req->max_response);
	if (curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, fetch_write_cb) !=
		CURLE_OK ||
	    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION,
		fetch_header_cb) != CURLE_OK)
		t->setopt_failed = 1;
	fetch_opt_ptr(t, CURLOPT_WRITEDATA, t);
	fetch_opt_ptr(t, CURLOPT_HEADERDATA, t);
	fetch_opt_ptr(t, CURLOPT_ERRORBUFFER, t->errbuf);
	fetch_opt_ptr(t, CURLOPT_PRIVATE, t);
	fetch_opt_ptr(t, CURLOPT_USERAGENT, K8SAUTH_NAME "/" K8SAUTH_VERSION);
	fetch_setup_headers(t, req);
	if (strcmp(req->method, "POST") == 0) {
		/* Our own copy instead of COPYPOSTFIELDS: we can wipe it. */
		t->postlen = req->body != NULL ? req->bodylen : 0;
		t->post = xmalloc(t->postlen + 1);
		if (t->postlen > 0)
			memcpy(t->post, req->body, t->postlen);
		t->post[t->postlen] = '\0';
		fetch_opt_off(t, CURLOPT_POSTFIELDSIZE_LARGE,
		    (curl_off_t)t->postlen);
		fetch_opt_ptr(t, CURLOPT_POSTFIELDS, t->post);
	} else
		fetch_opt_long(t, CURLOPT_HTTPGET, 1);
}

/*
 * Start a transfer; cb runs once with the result unless the transfer is
 * cancelled.  NULL with *cause when the request is refused or the fetch is
 * at its max_transfers.
 */
struct fetch_transfer *
fetch_start(struct fetch *f, const struct fetch_request *req, fetch_cb cb,
    void *arg, char **cause)
{
	struct fetch_transfer *t;
	CURLMcode mc;
	const char *why;

	if (req->cluster ? f->inflight_cluster >= f->max_transfers
			 : f->inflight - f->inflight_cluster >= f->max_other) {
		if (cause != NULL)
			*cause = xstrdup(req->cluster
				? "too many TokenReviews in flight on this worker"
				: "too many Keystone calls in flight on this worker");
		return (NULL);
	}
	if (fetch_check_request(req, cause) != 0)
		return (NULL);
	t = xcalloc(1, sizeof *t);
	t->f = f;
	t->cb = cb;
	t->arg = arg;
	t->max_response = req->max_response;
	t->host = outbound_url_host(req->url);
	why = "[k8s_auth] allowed_hosts does not parse";
	if (req->allowed_hosts != NULL &&
	    (t->rules = outbound_rules_parse(req->allowed_hosts, NULL)) == NULL)
		goto fail;
	why = "curl_easy_init failed";
	if ((t->easy = fetch_easy_get(f)) == NULL)
		goto fail;
	fetch_setup(t, req);
	why = "curl refused an option";
	if (t->setopt_failed)
		goto fail;
	if ((mc = curl_multi_add_handle(f->multi, t->easy)) != CURLM_OK) {
		why = curl_multi_strerror(mc);
		goto fail;
	}
	t->attached = 1;
	t->linked = 1;
	LIST_INSERT_HEAD(&f->transfers, t, entry);
	f->inflight++;
	t->cluster = req->cluster != 0;
	if (t->cluster)
		f->inflight_cluster++;
	return (t);

fail:
	if (cause != NULL)
		*cause = xstrdup(why);
	fetch_transfer_free(t);
	return (NULL);
}

/*
 * Cancel a transfer: its callback never runs.  Safe from any libevent
 * callback and from another transfer's completion callback; a no-op for a
 * transfer whose own callback is running.
 */
void
fetch_cancel(struct fetch_transfer *t)
{
	if (t == NULL || t->in_callback)
		return;
	if (t->attached)
		curl_multi_remove_handle(t->f->multi, t->easy);
	t->attached = 0;
	fetch_unlink(t);
	fetch_transfer_free(t);
}
