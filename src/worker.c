/*
 * worker.c: one worker thread (a shard).
 *
 * Each worker owns its event_base, an evhttp for TLS listeners and one for
 * plain listeners (both accept on dup()s of the server's listening
 * sockets, so idle workers win the accept race), its outbound fetch
 * machinery and its Lua policy state.  It has no database connection:
 * stored data comes from the snapshot (snapshot.c), writes go to the
 * database thread (dbthread.c), whose completions come back through the
 * worker's mailbox (worker_post).  Nothing mutable is shared with other
 * workers except the process-wide connection count (atomic).  The main
 * thread talks to a worker only through worker_stop(), which activates an
 * event on the worker's base.
 *
 * Connections are counted from accept ([server] max_connections): evhttp
 * asks worker_*_bev_cb for each accepted socket's bufferevent, which
 * counts it; right after evhttp has wrapped it in a connection (still in
 * the same turn of the loop) worker_attach_cb finds that connection as
 * the bufferevent's callback argument, closes it when the count is over
 * the cap, else sets the close callback that uncounts it and the
 * [server] header_timeout timer, which closes the connection unless its
 * TLS handshake and first request are done in time (worker_conn_headed).
 * After each reply the timer runs again for idle_timeout + header_timeout
 * (worker_conn_replied), so a connection cannot be held by trickling the
 * head of a later request either.  Connections are found by their socket
 * (w->byfd), in constant time.
 *
 * Runs on its own thread; never blocks on the database.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include <openssl/ssl.h>

#include "k8sauth.h"

#define WORKER_DRAIN_POLL_MS 20

/* A bufferevent made at accept, waiting for worker_attach_cb. */
struct worker_accepted {
	struct bufferevent *bev; /* with a reference of ours */
	uint64_t at_us;          /* accepted, monotonic */
	int over;                /* accepted beyond max_connections */
};

/* One callback posted to a worker (worker_post). */
struct worker_post {
	void (*fn)(void *);
	void *arg;
	struct worker_post *next;
};

/*
 * A worker's mailbox: posts from other threads, run in order on the
 * worker's loop.  The lock is held across event_active() so that a post
 * never races the mailbox's close.
 */
struct worker_mailbox {
	pthread_mutex_t lock;
	struct worker_post *head; /* lock */
	struct worker_post **tail;
	int closed; /* lock */
	struct event *ev;
};

/* A counted connection, from accept to close. */
struct worker_conn {
	struct worker *w;
	struct evhttp_connection *evcon;
	evutil_socket_t fd;      /* its socket: w->byfd[fd] is this */
	struct event *header_ev; /* pending while a request is awaited */
	long unsent;             /* replies queued, not yet written out */
};

static void worker_accept_error_cb(struct evconnlistener *, void *);

/*
 * Count a socket evhttp just accepted and queue its bufferevent for
 * worker_attach_cb (which runs before the loop polls again, so before any
 * byte of the connection is read).  Our reference keeps the bufferevent
 * valid should evhttp free the connection first.
 */
static void
worker_accepted(struct worker *w, struct bufferevent *bev)
{
	struct worker_accepted *a;
	long n;

	n = atomic_fetch_add(&w->srv->connections, 1) + 1;
	if (w->naccepted == w->accepted_cap) {
		w->accepted_cap =
		    w->accepted_cap == 0 ? 16 : w->accepted_cap * 2;
		w->accepted = xreallocarray(w->accepted, w->accepted_cap,
		    sizeof *w->accepted);
	}
	a = &w->accepted[w->naccepted++];
	a->bev = bev;
	a->at_us = util_monotonic_us();
	a->over = n > w->cfg->max_connections;
	bufferevent_incref(bev);
	if (w->naccepted == 1)
		event_active(w->attach_ev, EV_READ, 0);
}

/* evhttp's bufferevent callback for plain listeners. */
static struct bufferevent *
worker_plain_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent *bev;

	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("bufferevent_socket_new failed");
	worker_accepted(arg, bev);
	return (bev);
}

/* evhttp's bufferevent callback for TLS listeners: never returns NULL. */
static struct bufferevent *
worker_tls_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent *bev;
	SSL_CTX *ctx;
	SSL *ssl;

	/*
	 * Returning NULL here would make evhttp serve plain HTTP on the TLS
	 * port, so any failure is fatal (it can only be out of memory).
	 */
	ctx = server_ssl_ctx_ref();
	ssl = SSL_new(ctx);
	SSL_CTX_free(ctx);
	if (ssl == NULL)
		fatalx("SSL_new failed");
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("bufferevent_openssl_socket_new failed");
	worker_accepted(arg, bev);
	return (bev);
}

/* Apply the configured limits to one evhttp. */
static struct evhttp *
worker_evhttp_new(struct worker *w, int tls)
{
	const struct config *cfg = w->cfg;
	struct evhttp *h;
	struct timeval tv;

	if ((h = evhttp_new(w->base)) == NULL)
		fatalx("evhttp_new failed");
	evhttp_set_max_headers_size(h, (ev_ssize_t)cfg->max_header_size);
	/*
	 * evhttp answers a body over its own limit with an HTML page before
	 * any handler runs, so it gets twice the configured size: bodies up
	 * to that reach http_body_object(), which answers the JSON 413.
	 */
	evhttp_set_max_body_size(h, (ev_ssize_t)cfg->max_body_size * 2);
	evhttp_set_flags(h, EVHTTP_SERVER_LINGERING_CLOSE);
	tv.tv_sec = cfg->idle_timeout;
	tv.tv_usec = 0;
	evhttp_set_timeout_tv(h, &tv);
	evhttp_set_allowed_methods(h,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
		EVHTTP_REQ_PUT | EVHTTP_REQ_PATCH | EVHTTP_REQ_DELETE);
	evhttp_set_default_content_type(h, "application/json");
	evhttp_set_gencb(h, http_request_cb, w);
	evhttp_set_bevcb(h, tls ? worker_tls_bev_cb : worker_plain_bev_cb, w);
	return (h);
}

/* Start accepting on a dup() of one of the server's listening sockets. */
static int
worker_listen(struct worker *w, const struct server_listener *l, char **cause)
{
	struct evhttp_bound_socket *bound;
	struct evconnlistener *lev;
	int fd;

	if ((fd = fcntl(l->fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		xasprintf(cause, "dup: %s", strerror(errno));
		return (-1);
	}
	bound =
	    evhttp_accept_socket_with_handle(l->tls ? w->https : w->http, fd);
	if (bound == NULL) {
		close(fd);
		xasprintf(cause, "cannot accept on %s", l->url);
		return (-1);
	}
	lev = evhttp_bound_socket_get_listener(bound);
	evconnlistener_set_error_cb(lev, worker_accept_error_cb);
	w->bound = xreallocarray(w->bound, w->nbound + 1, sizeof *w->bound);
	w->bound[w->nbound++] = bound;
	return (0);
}

/* Re-enable a listener that was paused after an accept error. */
static void
worker_accept_resume_cb(evutil_socket_t fd, short events, void *arg)
{
	struct evconnlistener *lev = arg;

	if (server->stopping)
		return;
	evconnlistener_enable(lev);
}

/*
 * accept(2) failed (EMFILE, ENFILE, ENOBUFS): the listening socket stays
 * readable, so pause this listener for a moment instead of spinning.
 */
static void
worker_accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct timeval tv = { 0, 100 * 1000 };
	int err = EVUTIL_SOCKET_ERROR();

	log_warn("accept failed: %s; pausing the listener for 100 ms",
	    evutil_socket_error_to_string(err));
	evconnlistener_disable(lev);
	event_base_once(evconnlistener_get_base(lev), -1, EV_TIMEOUT,
	    worker_accept_resume_cb, lev, &tv);
}

/* The counted connection of evcon, or NULL (O(1): by its socket). */
static struct worker_conn *
worker_conn_find(struct worker *w, struct evhttp_connection *evcon)
{
	struct bufferevent *bev;
	evutil_socket_t fd;

	if (evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL ||
	    (fd = bufferevent_getfd(bev)) < 0 || (size_t)fd >= w->nbyfd ||
	    w->byfd[fd] == NULL || w->byfd[fd]->evcon != evcon)
		return (NULL);
	return (w->byfd[fd]);
}

/* Index a connection by its socket. */
static void
worker_conn_index(struct worker *w, struct worker_conn *c)
{
	size_t n = w->nbyfd;

	if ((size_t)c->fd >= n) {
		while ((size_t)c->fd >= n)
			n = n == 0 ? 256 : n * 2;
		w->byfd = xreallocarray(w->byfd, n, sizeof *w->byfd);
		memset(w->byfd + w->nbyfd, 0, (n - w->nbyfd) * sizeof *w->byfd);
		w->nbyfd = n;
	}
	w->byfd[c->fd] = c;
}

/* A counted connection closed: uncount and forget it. */
static void
worker_conn_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct worker_conn *c = arg;
	struct worker *w = c->w;

	evhttp_connection_set_closecb(evcon, NULL, NULL);
	atomic_fetch_sub(&w->srv->connections, 1);
	w->unsent -= c->unsent; /* lost with the connection: never sent */
	if (c->fd >= 0 && (size_t)c->fd < w->nbyfd && w->byfd[c->fd] == c)
		w->byfd[c->fd] = NULL;
	if (c->header_ev != NULL)
		event_free(c->header_ev);
	free(c);
}

/* The peer of a connection, for a log line. */
static const char *
worker_conn_peer(struct evhttp_connection *evcon)
{
	char *peer = NULL;
	ev_uint16_t port;

	evhttp_connection_get_peer(evcon, &peer, &port);
	return (peer != NULL ? peer : "?");
}

/* The header timer ran out before a complete request: close. */
static void
worker_header_timeout_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker_conn *c = arg;

	metrics_header_timeout();
	log_info("closing the connection from %s: no complete request within [server] header_timeout (%ld s)",
	    worker_conn_peer(c->evcon), c->w->cfg->header_timeout);
	evhttp_connection_free(c->evcon); /* frees c */
}

/* Log a refused connection, at most once a second per worker. */
static void
worker_log_refused(struct worker *w, struct evhttp_connection *evcon)
{
	uint64_t now = util_monotonic_us();

	if (now - w->refused_log_us < 1000000 && w->refused_log_us != 0)
		return;
	w->refused_log_us = now;
	log_warn("closing the connection from %s: [server] max_connections (%ld) reached (logged at most once a second)",
	    worker_conn_peer(evcon), w->cfg->max_connections);
}

/* (Re)start a connection's header timer: us microseconds from now. */
static void
worker_conn_arm(struct worker_conn *c, uint64_t us)
{
	struct timeval tv;

	tv.tv_sec = (time_t)(us / 1000000);
	tv.tv_usec = (suseconds_t)(us % 1000000);
	evtimer_add(c->header_ev, &tv);
}

/*
 * Attach the counting to one accepted connection: its close callback,
 * and either an immediate close (over the cap) or the header timer.
 */
static void
worker_attach(struct worker *w, const struct worker_accepted *a)
{
	struct worker_conn *c;
	bufferevent_data_cb readcb;
	void *evcon = NULL;
	uint64_t limit, spent;

	bufferevent_getcb(a->bev, &readcb, NULL, NULL, &evcon);
	if (readcb == NULL || evcon == NULL) { /* evhttp freed it already */
		atomic_fetch_sub(&w->srv->connections, 1);
		return;
	}
	c = xcalloc(1, sizeof *c);
	c->w = w;
	c->evcon = evcon;
	c->fd = bufferevent_getfd(a->bev);
	evhttp_connection_set_closecb(evcon, worker_conn_close_cb, c);
	if (a->over) {
		metrics_conn_refused();
		worker_log_refused(w, evcon);
		evhttp_connection_free(evcon); /* frees c */
		return;
	}
	if ((c->header_ev =
		    evtimer_new(w->base, worker_header_timeout_cb, c)) == NULL)
		fatalx("evtimer_new failed");
	if (c->fd >= 0)
		worker_conn_index(w, c);
	limit = (uint64_t)w->cfg->header_timeout * 1000000;
	spent = util_monotonic_us() - a->at_us;
	worker_conn_arm(c, spent < limit ? limit - spent : 0);
}

/* Attach every connection accepted since the last run. */
static void
worker_attach_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	size_t i;

	for (i = 0; i < w->naccepted; i++) {
		worker_attach(w, &w->accepted[i]);
		bufferevent_decref(w->accepted[i].bev);
	}
	w->naccepted = 0;
}

/* A request arrived complete on its connection: stop the header timer. */
void
worker_conn_headed(struct worker *w, struct evhttp_request *req)
{
	struct worker_conn *c;

	c = worker_conn_find(w, evhttp_request_get_connection(req));
	if (c != NULL && c->header_ev != NULL)
		evtimer_del(c->header_ev);
}

/*
 * evhttp wrote a reply out to the socket (called before it frees the
 * request, with the connection still alive, so c is valid).
 */
static void
worker_reply_sent_cb(struct evhttp_request *req, void *arg)
{
	struct worker_conn *c = arg;

	c->unsent--;
	c->w->unsent--;
}

/*
 * A request is being answered: a kept-alive connection's next request
 * must be complete within idle_timeout + header_timeout of now (an idle
 * connection is closed by idle_timeout before that; this closes one
 * that trickles its next request head to stay alive).  The reply counts
 * as unsent until evhttp has written it out (worker_reply_sent_cb) or
 * the connection closes, so that a drain does not free the connection
 * with the reply still in its output buffer.
 */
void
worker_conn_replied(struct worker *w, struct evhttp_request *req)
{
	struct worker_conn *c;

	c = worker_conn_find(w, evhttp_request_get_connection(req));
	if (c == NULL)
		return;
	if (c->header_ev != NULL)
		worker_conn_arm(c,
		    (uint64_t)(w->cfg->idle_timeout + w->cfg->header_timeout) *
			1000000);
	c->unsent++;
	w->unsent++;
	evhttp_request_set_on_complete_cb(req, worker_reply_sent_cb, c);
}

/* libevent: run every post in the mailbox, in order. */
static void
worker_mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker_mailbox *mb = arg;
	struct worker_post *p, *next;

	pthread_mutex_lock(&mb->lock);
	p = mb->head;
	mb->head = NULL;
	mb->tail = &mb->head;
	pthread_mutex_unlock(&mb->lock);
	for (; p != NULL; p = next) {
		next = p->next;
		p->fn(p->arg);
		free(p);
	}
}

/* Give the worker its mailbox (on its base, before the thread starts). */
void
worker_mailbox_open(struct worker *w)
{
	struct worker_mailbox *mb;

	mb = xcalloc(1, sizeof *mb);
	pthread_mutex_init(&mb->lock, NULL);
	mb->tail = &mb->head;
	if ((mb->ev = event_new(w->base, -1, 0, worker_mailbox_cb, mb)) == NULL)
		fatalx("event_new failed");
	w->mailbox = mb;
}

/*
 * Close and free the mailbox once the worker's loop has ended and nothing
 * posts any more (the database thread is stopped before workers are
 * freed).  Posts still queued are dropped unrun: their requests were
 * abandoned with the loop.
 */
void
worker_mailbox_close(struct worker *w)
{
	struct worker_mailbox *mb = w->mailbox;
	struct worker_post *p, *next;

	if (mb == NULL)
		return;
	pthread_mutex_lock(&mb->lock);
	mb->closed = 1;
	p = mb->head;
	mb->head = NULL;
	pthread_mutex_unlock(&mb->lock);
	for (; p != NULL; p = next) {
		next = p->next;
		free(p);
	}
	event_free(mb->ev);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
	w->mailbox = NULL;
}

/*
 * Run fn(arg) on worker w's loop, soon (any thread).  0, or -1 when the
 * mailbox is closed (fn will not run: arg stays the caller's).
 */
int
worker_post(struct worker *w, void (*fn)(void *), void *arg)
{
	struct worker_mailbox *mb = w->mailbox;
	struct worker_post *p;

	if (mb == NULL)
		return (-1);
	p = xcalloc(1, sizeof *p);
	p->fn = fn;
	p->arg = arg;
	pthread_mutex_lock(&mb->lock);
	if (mb->closed) {
		pthread_mutex_unlock(&mb->lock);
		free(p);
		return (-1);
	}
	*mb->tail = p;
	mb->tail = &p->next;
	event_active(mb->ev, EV_READ, 0);
	pthread_mutex_unlock(&mb->lock);
	return (0);
}

/* Create a worker: its base, evhttps, mailbox, fetch. */
struct worker *
worker_new(struct server *srv, int id, char **cause)
{
	struct worker *w;
	size_t i;

	w = xcalloc(1, sizeof *w);
	w->id = id;
	w->srv = srv;
	w->cfg = server_config_ref();
	if ((w->base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	w->attach_ev = event_new(w->base, -1, 0, worker_attach_cb, w);
	if (w->attach_ev == NULL)
		fatalx("event_new failed");
	w->https = worker_evhttp_new(w, 1);
	w->http = worker_evhttp_new(w, 0);
	worker_mailbox_open(w);
	w->fetch = fetch_create(w->base, w->cfg->k8s_max_concurrent_reviews,
	    w->cfg->keystone_max_concurrent_calls);
	if ((w->policy = policy_new(w->cfg, cause)) == NULL)
		goto fail;
	for (i = 0; i < srv->nlisteners; i++) {
		if (worker_listen(w, &srv->listeners[i], cause) != 0)
			goto fail;
	}
	return (w);
fail:
	worker_free(w);
	return (NULL);
}

/*
 * Free what serves and fetches: Keystone lookups, transfers, evhttp (which
 * closes the remaining idle connections).  Safe to call twice.
 */
static void
worker_close_http(struct worker *w)
{
	if (w->attach_ev != NULL)
		worker_attach_cb(-1, 0, w); /* evhttp_free then uncounts */
	keystone_worker_free(w);            /* before its fetch */
	if (w->fetch != NULL)
		fetch_destroy(w->fetch); /* before the base */
	w->fetch = NULL;
	if (w->https != NULL)
		evhttp_free(w->https);
	w->https = NULL;
	if (w->http != NULL)
		evhttp_free(w->http);
	w->http = NULL;
}

/*
 * Poll until in-flight requests are answered and their replies written
 * out (a reply is queued in the connection's output buffer first; freeing
 * the connection then would drop an answer the server has logged and
 * audited), or until the drain deadline passes.  Finished: free the HTTP
 * side (which closes idle keep-alive connections) inside the loop and let the loop run dry,
 * so that libevent finalizes every connection's bufferevent (a loopbreak
 * here left a TLS bufferevent, its SSL and so the SSL_CTX unfreed when a
 * connection was closing at that moment).  Deadline passed: break out
 * (the stuck requests are abandoned with the process).
 */
static void
worker_drain_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	struct timeval tv = { 0, WORKER_DRAIN_POLL_MS * 1000 };

	if (w->inflight <= 0 && w->unsent <= 0) {
		worker_close_http(w);
		return;
	}
	if (util_monotonic_us() >= w->drain_deadline_us) {
		log_warn("worker %d: stopping with %ld requests still in flight and %ld replies not yet sent",
		    w->id, w->inflight, w->unsent);
		event_base_loopbreak(w->base);
		return;
	}
	evtimer_add(w->drain_ev, &tv);
}

/* Stop requested: close the listeners, then drain. */
static void
worker_stop_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	size_t i;

	/* bound[i] was made from srv->listeners[i] (worker_new). */
	for (i = 0; i < w->nbound; i++) {
		evhttp_del_accept_socket(w->srv->listeners[i].tls ? w->https
								  : w->http,
		    w->bound[i]);
	}
	w->nbound = 0;
	w->drain_deadline_us =
	    util_monotonic_us() + (uint64_t)w->cfg->request_timeout * 1000000;
	worker_drain_cb(-1, 0, w);
}

/*
 * SIGHUP: rebuild this worker's policy from the current configuration
 * (the main thread has already compiled and smoke-tested it).  No policy
 * call is running: calls are synchronous inside one event callback.
 */
static void
worker_reload_cb(evutil_socket_t fd, short events, void *arg)
{
	struct worker *w = arg;
	struct config *cfg = server_config_ref();
	struct policy *p;
	char *cause = NULL;

	if ((p = policy_new(cfg, &cause)) == NULL) {
		log_err("worker %d: policy not reloaded, the old one stays in force: %s",
		    w->id, cause);
		free(cause);
	} else {
		policy_free(w->policy);
		w->policy = p;
	}
	config_unref(cfg);
}

/* Ask a worker to reload its policy (any thread). */
void
worker_reload(struct worker *w)
{
	event_active(w->reload_ev, EV_READ, 0);
}

/* The thread's body: run the loop until stopped. */
static void *
worker_main(void *arg)
{
	struct worker *w = arg;

	log_debug("worker %d: running", w->id);
	event_base_dispatch(w->base);
	log_debug("worker %d: stopped", w->id);
	return (NULL);
}

/* Start the worker's thread. */
int
worker_start(struct worker *w, char **cause)
{
	pthread_t *t;
	int rc;

	w->stop_ev = event_new(w->base, -1, 0, worker_stop_cb, w);
	w->drain_ev = evtimer_new(w->base, worker_drain_cb, w);
	w->reload_ev = event_new(w->base, -1, 0, worker_reload_cb, w);
	if (w->stop_ev == NULL || w->drain_ev == NULL || w->reload_ev == NULL)
		fatalx("event_new failed");
	t = xcalloc(1, sizeof *t);
	if ((rc = pthread_create(t, NULL, worker_main, w)) != 0) {
		free(t);
		xasprintf(cause, "pthread_create: %s", strerror(rc));
		return (-1);
	}
	w->thread = t;
	return (0);
}

/* Ask a worker to stop (any thread). */
void
worker_stop(struct worker *w)
{
	event_active(w->stop_ev, EV_READ, 0);
}

/*
 * Wait for a worker's thread to end.  Its loop ends on its own once its
 * connections are finalized; should anything keep it alive beyond the
 * drain deadline and a few seconds, its loop is broken from here.
 */
void
worker_join(struct worker *w)
{
	struct timespec ts;

	if (w->thread == NULL)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += w->cfg->request_timeout + 5;
	if (pthread_timedjoin_np(*(pthread_t *)w->thread, NULL, &ts) != 0) {
		log_warn("worker %d: did not stop in time; breaking its loop",
		    w->id);
		event_base_loopbreak(w->base);
		pthread_join(*(pthread_t *)w->thread, NULL);
	}
	free(w->thread);
	w->thread = NULL;
}

/* Free a stopped worker and everything it owns. */
void
worker_free(struct worker *w)
{
	if (w == NULL)
		return;
	worker_close_http(w);
	review_cache_worker_free(w); /* before the base */
	if (w->stop_ev != NULL)
		event_free(w->stop_ev);
	if (w->drain_ev != NULL)
		event_free(w->drain_ev);
	if (w->reload_ev != NULL)
		event_free(w->reload_ev);
	if (w->attach_ev != NULL)
		event_free(w->attach_ev);
	policy_free(w->policy);
	worker_mailbox_close(w); /* before the base */
	if (w->base != NULL)
		event_base_free(w->base);
	config_unref(w->cfg);
	free(w->accepted);
	free(w->byfd);
	free(w->bound);
	free(w);
}
