/*
 * test_fetch.c: fetch.c against real servers on loopback, on one event_base.
 *
 * The group setup makes two throwaway CAs and a server certificate for
 * IP 127.0.0.1 signed by the first, with the OpenSSL API.  Each test gets a
 * fresh event_base carrying:
 *   - an HTTPS evhttp (bufferevent_openssl) with handlers /echo, /big,
 *     /bigchunked, /bigheader, /slow (answers after 200 ms), /redirect;
 *   - the same handlers over plain HTTP (for allow_http);
 *   - a TLS "sink" that completes the handshake, reads the request and
 *     never answers, counting the connections that go away.
 * fetch.c runs on the same loop, so every test is a single thread.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "k8sauth.h"

#define BIG_BODY	(100 * 1024)
#define MAX_SINK	8
#define NCONC		50

/* Certificates shared by the group. */
static char	*ca1_pem, *ca2_pem;
static X509	*srv_cert;
static EVP_PKEY	*srv_key;

struct env {
	struct event_base	*base;
	SSL_CTX			*sctx;
	struct evhttp		*https;
	int			 https_port;
	struct evhttp		*http;
	int			 http_port;
	struct evconnlistener	*sink;
	int			 sink_port;
	struct bufferevent	*sink_bev[MAX_SINK];
	int			 sink_accepts;
	int			 sink_closes;
	size_t			 sink_bytes;
	struct fetch		*f;
	/* What /echo saw, last request. */
	char			*seen_method;
	char			*seen_auth;
	char			*seen_xauth;
	char			*seen_xsubject;
	char			*seen_ctype;
	char			*seen_expect;
	char			*seen_body;
	int			 seen_port;
	int			 echo_count;
	int			 ndone;
};

/* One transfer's outcome, copied out of the callback. */
struct got {
	struct env		*env;
	int			 called;
	enum fetch_error	 error;
	long			 status;
	char			*body;
	size_t			 bodylen;
	char			*retry_after;
	char			*subject_token;
	char			*errmsg;
	double			 seconds;
	uint64_t		 at_us;
	/* Actions to take inside the callback. */
	struct fetch_transfer	*cancel_other;
	struct fetch_request	*start_next;
	struct got		*next_got;
	struct fetch_transfer	*started;
};

/* ---- certificates ---- */

static void
add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX	 ctx;
	X509_EXTENSION	*ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* A certificate for key, signed by ikey (self-signed when issuer NULL). */
static X509 *
make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *ikey, const char *cn,
    int ca)
{
	static long	 serial = 1;
	X509		*c = X509_new();
	X509_NAME	*n;

	assert_non_null(c);
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial++);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400);
	X509_set_pubkey(c, key);
	n = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
	    (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer != NULL ?
	    X509_get_subject_name(issuer) : n);
	if (ca) {
		add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(c, issuer, NID_key_usage, "critical,digitalSignature");
		add_ext(c, issuer, NID_ext_key_usage, "serverAuth");
		add_ext(c, issuer, NID_subject_alt_name, "IP:127.0.0.1");
	}
	assert_true(X509_sign(c, ikey != NULL ? ikey : key, EVP_sha256()) > 0);
	return (c);
}

static char *
cert_pem(X509 *c)
{
	BIO	*b = BIO_new(BIO_s_mem());
	char	*data, *out;
	long	 n;

	assert_int_equal(PEM_write_bio_X509(b, c), 1);
	n = BIO_get_mem_data(b, &data);
	out = xstrndup(data, (size_t)n);
	BIO_free(b);
	return (out);
}

static int
group_setup(void **state)
{
	EVP_PKEY	*k1, *k2;
	X509		*c1, *c2;

	signal(SIGPIPE, SIG_IGN);
	log_open(LOGL_WARN, 0);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return (-1);
	k1 = EVP_EC_gen("P-256");
	k2 = EVP_EC_gen("P-256");
	srv_key = EVP_EC_gen("P-256");
	if (k1 == NULL || k2 == NULL || srv_key == NULL)
		return (-1);
	c1 = make_cert(k1, NULL, NULL, "Test CA 1", 1);
	c2 = make_cert(k2, NULL, NULL, "Test CA 2", 1);
	srv_cert = make_cert(srv_key, c1, k1, "127.0.0.1", 0);
	ca1_pem = cert_pem(c1);
	ca2_pem = cert_pem(c2);
	X509_free(c1);
	X509_free(c2);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	return (0);
}

static int
group_teardown(void **state)
{
	free(ca1_pem);
	free(ca2_pem);
	X509_free(srv_cert);
	EVP_PKEY_free(srv_key);
	curl_global_cleanup();
	return (0);
}

/* ---- the servers ---- */

static char *
header_dup(struct evhttp_request *req, const char *name)
{
	const char	*v;

	v = evhttp_find_header(evhttp_request_get_input_headers(req), name);
	return (v != NULL ? xstrdup(v) : NULL);
}

static void
env_clear_seen(struct env *e)
{
	free(e->seen_method);
	free(e->seen_auth);
	free(e->seen_xauth);
	free(e->seen_xsubject);
	free(e->seen_ctype);
	free(e->seen_expect);
	free(e->seen_body);
	e->seen_method = e->seen_auth = e->seen_xauth = NULL;
	e->seen_xsubject = e->seen_ctype = e->seen_expect = NULL;
	e->seen_body = NULL;
}

static void
serve_echo(struct env *e, struct evhttp_request *req)
{
	struct evbuffer	*in = evhttp_request_get_input_buffer(req);
	struct evbuffer	*out = evbuffer_new();
	struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
	size_t		 n = evbuffer_get_length(in);
	char		*addr;
	ev_uint16_t	 port;

	env_clear_seen(e);
	e->seen_method = xstrdup(evhttp_request_get_command(req) ==
	    EVHTTP_REQ_POST ? "POST" : "other");
	e->seen_auth = header_dup(req, "Authorization");
	e->seen_xauth = header_dup(req, "X-Auth-Token");
	e->seen_xsubject = header_dup(req, "X-Subject-Token");
	e->seen_ctype = header_dup(req, "Content-Type");
	e->seen_expect = header_dup(req, "Expect");
	e->seen_body = xcalloc(1, n + 1);
	evbuffer_remove(in, e->seen_body, n);
	evhttp_connection_get_peer(evhttp_request_get_connection(req), &addr,
	    &port);
	e->seen_port = port;
	e->echo_count++;
	evhttp_add_header(oh, "Content-Type", "application/json");
	evhttp_add_header(oh, "Retry-After", "7");
	evhttp_add_header(oh, "X-Subject-Token", "gAAAAAsubject");
	evbuffer_add_printf(out, "{\"ok\":true}");
	evhttp_send_reply(req, 201, "Created", out);
	evbuffer_free(out);
}

static void
serve_big(struct evhttp_request *req, int chunked)
{
	struct evbuffer	*out = evbuffer_new();
	char		 chunk[4096];
	int		 i;

	memset(chunk, 'x', sizeof chunk);
	if (!chunked) {
		for (i = 0; i < BIG_BODY / 4096; i++)
			evbuffer_add(out, chunk, sizeof chunk);
		evhttp_send_reply(req, 200, "OK", out);
		evbuffer_free(out);
		return;
	}
	evhttp_send_reply_start(req, 200, "OK");
	for (i = 0; i < BIG_BODY / 4096; i++) {
		evbuffer_add(out, chunk, sizeof chunk);
		evhttp_send_reply_chunk(req, out);
	}
	evhttp_send_reply_end(req);
	evbuffer_free(out);
}

static void
serve_bigheader(struct evhttp_request *req)
{
	char	*v = xmalloc(70000);

	memset(v, 'h', 69999);
	v[69999] = '\0';
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Big", v);
	free(v);
	evhttp_send_reply(req, 200, "OK", NULL);
}

static void
slow_reply_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request	*req = arg;
	struct evbuffer		*out = evbuffer_new();

	evbuffer_add_printf(out, "slow");
	evhttp_send_reply(req, 200, "OK", out);
	evbuffer_free(out);
}

static void
serve_cb(struct evhttp_request *req, void *arg)
{
	struct env	*e = arg;
	const char	*uri = evhttp_request_get_uri(req);
	struct timeval	 tv = { 0, 200000 };

	if (strcmp(uri, "/echo") == 0)
		serve_echo(e, req);
	else if (strcmp(uri, "/big") == 0)
		serve_big(req, 0);
	else if (strcmp(uri, "/bigchunked") == 0)
		serve_big(req, 1);
	else if (strcmp(uri, "/bigheader") == 0)
		serve_bigheader(req);
	else if (strcmp(uri, "/slow") == 0)
		event_base_once(e->base, -1, EV_TIMEOUT, slow_reply_cb, req,
		    &tv);
	else if (strcmp(uri, "/redirect") == 0) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		    "Location", "/echo");
		evhttp_send_reply(req, 302, "Found", NULL);
	} else
		evhttp_send_error(req, 404, NULL);
}

static struct bufferevent *
https_bevcb(struct event_base *base, void *arg)
{
	SSL	*ssl = SSL_new(arg);

	return (bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE));
}

static int
bound_port(evutil_socket_t fd)
{
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof sin;

	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	return (ntohs(sin.sin_port));
}

static struct evhttp *
start_http(struct env *e, int tls, int *port)
{
	struct evhttp			*h = evhttp_new(e->base);
	struct evhttp_bound_socket	*bs;

	assert_non_null(h);
	if (tls)
		evhttp_set_bevcb(h, https_bevcb, e->sctx);
	evhttp_set_gencb(h, serve_cb, e);
	bs = evhttp_bind_socket_with_handle(h, "127.0.0.1", 0);
	assert_non_null(bs);
	*port = bound_port(evhttp_bound_socket_get_fd(bs));
	return (h);
}

static void
sink_read_cb(struct bufferevent *bev, void *arg)
{
	struct env	*e = arg;
	struct evbuffer	*in = bufferevent_get_input(bev);

	e->sink_bytes += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
}

static void
sink_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct env	*e = arg;
	int		 i;

	if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
		return;
	e->sink_closes++;
	for (i = 0; i < MAX_SINK; i++) {
		if (e->sink_bev[i] == bev)
			e->sink_bev[i] = NULL;
	}
	bufferevent_free(bev);
}

static void
sink_accept_cb(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	struct env		*e = arg;
	struct bufferevent	*bev;

	bev = bufferevent_openssl_socket_new(e->base, fd, SSL_new(e->sctx),
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(bev);
	assert_true(e->sink_accepts < MAX_SINK);
	e->sink_bev[e->sink_accepts++] = bev;
	bufferevent_setcb(bev, sink_read_cb, NULL, sink_event_cb, e);
	bufferevent_enable(bev, EV_READ);
}

static int
env_setup(void **state)
{
	struct env		*e = xcalloc(1, sizeof *e);
	struct sockaddr_in	 sin;

	e->base = event_base_new();
	e->sctx = SSL_CTX_new(TLS_server_method());
	if (e->base == NULL || e->sctx == NULL ||
	    SSL_CTX_use_certificate(e->sctx, srv_cert) != 1 ||
	    SSL_CTX_use_PrivateKey(e->sctx, srv_key) != 1)
		return (-1);
	e->https = start_http(e, 1, &e->https_port);
	e->http = start_http(e, 0, &e->http_port);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	e->sink = evconnlistener_new_bind(e->base, sink_accept_cb, e,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
	    (struct sockaddr *)&sin, sizeof sin);
	if (e->sink == NULL)
		return (-1);
	e->sink_port = bound_port(evconnlistener_get_fd(e->sink));
	e->f = fetch_create(e->base, 64, 64);
	*state = e;
	return (0);
}

static int
env_teardown(void **state)
{
	struct env	*e = *state;
	int		 i;

	fetch_destroy(e->f);
	for (i = 0; i < MAX_SINK; i++) {
		if (e->sink_bev[i] != NULL)
			bufferevent_free(e->sink_bev[i]);
	}
	evconnlistener_free(e->sink);
	evhttp_free(e->https);
	evhttp_free(e->http);
	SSL_CTX_free(e->sctx);
	event_base_free(e->base);
	env_clear_seen(e);
	free(e);
	return (0);
}

/* ---- driving the loop ---- */

struct waiter {
	struct env	*e;
	int		(*done)(struct env *, void *);
	void		*arg;
	uint64_t	 deadline;
	int		 timed_out;
};

static void
waiter_cb(evutil_socket_t fd, short what, void *arg)
{
	struct waiter	*w = arg;

	if (w->done != NULL && w->done(w->e, w->arg))
		event_base_loopbreak(w->e->base);
	else if (util_monotonic_us() >= w->deadline) {
		w->timed_out = w->done != NULL;
		event_base_loopbreak(w->e->base);
	}
}

/* Run the loop until done(e, arg) or max_ms; returns 0 when done. */
static int
run_until(struct env *e, int (*done)(struct env *, void *), void *arg,
    long max_ms)
{
	struct waiter	 w = { e, done, arg, 0, 0 };
	struct timeval	 tv = { 0, 2000 };
	struct event	*ev;

	w.deadline = util_monotonic_us() + (uint64_t)max_ms * 1000;
	ev = event_new(e->base, -1, EV_PERSIST, waiter_cb, &w);
	event_add(ev, &tv);
	event_base_dispatch(e->base);
	event_free(ev);
	return (w.timed_out ? -1 : 0);
}

static int
ndone_reached(struct env *e, void *arg)
{
	return (e->ndone >= *(int *)arg);
}

static int
int_reached(struct env *e, void *arg)
{
	return (*(int *)arg > 0);
}

static int
sink_got_request(struct env *e, void *arg)
{
	return (e->sink_bytes > 0);
}

static int
sink_closed(struct env *e, void *arg)
{
	return (e->sink_closes >= *(int *)arg);
}

/* Run until n callbacks in total have run. */
static void
run_done(struct env *e, int n, long max_ms)
{
	assert_int_equal(run_until(e, ndone_reached, &n, max_ms), 0);
}

static void
got_cb(const struct fetch_result *r, void *arg)
{
	struct got	*g = arg;
	char		*cause = NULL;

	g->called++;
	g->at_us = util_monotonic_us();
	g->error = r->error;
	g->status = r->status;
	g->body = xstrndup(r->body, r->bodylen);
	g->bodylen = r->bodylen;
	g->retry_after = r->retry_after ? xstrdup(r->retry_after) : NULL;
	g->subject_token = r->subject_token ? xstrdup(r->subject_token) : NULL;
	g->errmsg = r->errmsg ? xstrdup(r->errmsg) : NULL;
	g->seconds = r->seconds;
	g->env->ndone++;
	if (g->cancel_other != NULL)
		fetch_cancel(g->cancel_other);
	if (g->start_next != NULL) {
		g->started = fetch_start(g->env->f, g->start_next, got_cb,
		    g->next_got, &cause);
		assert_non_null(g->started);
	}
}

static void
got_clear(struct got *g)
{
	free(g->body);
	free(g->retry_after);
	free(g->subject_token);
	free(g->errmsg);
}

static char *
url(struct env *e, int port, const char *path)
{
	char	*u;

	xasprintf(&u, "https://127.0.0.1:%d%s", port, path);
	return (u);
}

/* A POST to path on the HTTPS server, pinned to CA 1. */
static void
req_init(struct fetch_request *r, const char *u)
{
	memset(r, 0, sizeof *r);
	r->method = "POST";
	r->url = u;
	r->body = "{\"spec\":{\"token\":\"aaa.bbb.ccc\"}}";
	r->bodylen = strlen(r->body);
	r->ca_pem = ca1_pem;
	r->connect_timeout_ms = 5000;
	r->timeout_ms = 5000;
	r->max_response = 65536;
}

/* Start r, run until it completes, fill g. */
static void
fetch_one(struct env *e, struct fetch_request *r, struct got *g)
{
	struct fetch_transfer	*t;
	char			*cause = NULL;
	int			 want = e->ndone + 1;

	memset(g, 0, sizeof *g);
	g->env = e;
	t = fetch_start(e->f, r, got_cb, g, &cause);
	if (t == NULL)
		fail_msg("fetch_start: %s", cause);
	assert_int_equal(fetch_inflight(e->f), 1);
	run_done(e, want, 10000);
	assert_int_equal(g->called, 1);
	assert_int_equal(fetch_inflight(e->f), 0);
}

static void
pipe_read_cb(evutil_socket_t fd, short what, void *arg)
{
	char	c;

	if (read(fd, &c, 1) == 1)
		(*(int *)arg)++;
}

static int
eight_reached(struct env *e, void *arg)
{
	return (*(int *)arg >= 8);
}

/*
 * curl's threaded resolver announces its socketpair and closes it with
 * close(2), not through CURLOPT_CLOSESOCKETFUNCTION: a lookup that fails
 * (or a transfer cancelled during one) must leave no event behind for that
 * fd number, or whatever the server opens next under the number (a
 * client's connection, a pipe) is never put in the epoll set: libevent
 * believes the fd is already watched for reading.
 */
static void
test_resolver_fd_reused(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	struct event		*ev[8];
	int			 fds[8][2], fired = 0, i;

	req_init(&r, "https://no-such-host.invalid:1/echo");
	r.connect_timeout_ms = r.timeout_ms = 2000; /* no DNS server: a timeout */
	fetch_one(e, &r, &g);
	assert_true(g.error == FETCH_CONNECT || g.error == FETCH_TIMEOUT);
	got_clear(&g);
	/* The lowest free fd numbers: the resolver's among them. */
	for (i = 0; i < 8; i++) {
		assert_int_equal(pipe(fds[i]), 0);
		ev[i] = event_new(e->base, fds[i][0], EV_READ | EV_PERSIST,
		    pipe_read_cb, &fired);
		assert_int_equal(event_add(ev[i], NULL), 0);
		assert_int_equal(write(fds[i][1], "x", 1), 1);
	}
	run_until(e, eight_reached, &fired, 2000);
	for (i = 0; i < 8; i++) {
		event_free(ev[i]);
		close(fds[i][0]);
		close(fds[i][1]);
	}
	assert_int_equal(fired, 8);
}

/* ---- tests ---- */

static void
test_post_echo(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->https_port, "/echo");

	req_init(&r, u);
	r.bearer = "reviewer-secret";
	r.auth_token = "admin-token";
	r.subject_token = "subject-in";
	fetch_one(e, &r, &g);
	if (g.error != FETCH_OK)
		fail_msg("error %d: %s", g.error, g.errmsg);
	assert_int_equal(g.status, 201);
	assert_string_equal(g.body, "{\"ok\":true}");
	assert_int_equal(g.bodylen, 11);
	assert_string_equal(g.retry_after, "7");
	assert_string_equal(g.subject_token, "gAAAAAsubject");
	assert_null(g.errmsg);
	assert_true(g.seconds > 0 && g.seconds < 5);
	assert_string_equal(e->seen_method, "POST");
	assert_string_equal(e->seen_auth, "Bearer reviewer-secret");
	assert_string_equal(e->seen_xauth, "admin-token");
	assert_string_equal(e->seen_xsubject, "subject-in");
	assert_string_equal(e->seen_ctype, "application/json");
	assert_null(e->seen_expect);
	assert_string_equal(e->seen_body, r.body);
	got_clear(&g);

	/* GET without credentials: none of those headers are sent. */
	r.method = "GET";
	r.body = NULL;
	r.bodylen = 0;
	r.bearer = r.auth_token = r.subject_token = NULL;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	assert_int_equal(g.status, 201);
	assert_string_equal(e->seen_method, "other");
	assert_null(e->seen_auth);
	assert_null(e->seen_xauth);
	assert_null(e->seen_xsubject);
	assert_string_equal(e->seen_body, "");
	got_clear(&g);
	free(u);
}

static void
test_connection_reuse(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->https_port, "/echo");
	int			 port1;

	req_init(&r, u);
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	got_clear(&g);
	port1 = e->seen_port;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	got_clear(&g);
	assert_int_equal(e->echo_count, 2);
	assert_int_equal(e->seen_port, port1);
	free(u);
}

/* CPU time (user + system) of the process so far, in ms. */
static long
cpu_ms(void)
{
	struct rusage	 ru;

	assert_int_equal(getrusage(RUSAGE_SELF, &ru), 0);
	return ((ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000L +
	    (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000);
}

/*
 * The server drops an idle kept-alive connection, whose socket fetch.c
 * keeps watching (parked) between transfers: no busy loop on the dead
 * socket while idle, and the next transfer goes out on a new connection
 * (whose fd may well be the old one's number) instead of hanging.
 */
static void
test_idle_connection_dropped(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->https_port, "/echo");
	long			 before;
	int			 port1, i;

	evhttp_set_timeout(e->https, 1);
	req_init(&r, u);
	for (i = 0; i < 3; i++) {
		fetch_one(e, &r, &g);
		assert_int_equal(g.error, FETCH_OK);
		got_clear(&g);
		port1 = e->seen_port;
		before = cpu_ms();
		run_until(e, NULL, NULL, 1600); /* the server's 1 s idle close */
		assert_true(cpu_ms() - before < 600);
		fetch_one(e, &r, &g);
		if (g.error != FETCH_OK)
			fail_msg("error %d: %s", g.error, g.errmsg);
		assert_int_equal(g.status, 201);
		assert_int_not_equal(e->seen_port, port1);
		got_clear(&g);
	}
	free(u);
}

static void
test_trust(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->https_port, "/echo");
	char			 path[] = "/tmp/k8sauth-ca-XXXXXX";
	char			*lu;
	int			 fd;

	req_init(&r, u);
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	got_clear(&g);
	/* Another CA: refused, even with a verified connection cached. */
	r.ca_pem = ca2_pem;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TLS);
	assert_int_equal(g.status, 0);
	assert_non_null(g.errmsg);
	got_clear(&g);
	/* The system store does not know our CA. */
	r.ca_pem = NULL;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TLS);
	got_clear(&g);
	/* ca_file. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, ca1_pem, strlen(ca1_pem)),
	    (ssize_t)strlen(ca1_pem));
	close(fd);
	r.ca_file = path;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	got_clear(&g);
	/* ca_pem wins over ca_file. */
	r.ca_pem = ca2_pem;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TLS);
	got_clear(&g);
	unlink(path);
	/* Right CA, wrong name: the certificate is for 127.0.0.1 only. */
	r.ca_pem = ca1_pem;
	r.ca_file = NULL;
	xasprintf(&lu, "https://localhost:%d/echo", e->https_port);
	r.url = lu;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TLS);
	got_clear(&g);
	free(lu);
	free(u);
}

static void
test_http_policy(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u, *cause = NULL;

	xasprintf(&u, "http://127.0.0.1:%d/echo", e->http_port);
	req_init(&r, u);
	assert_null(fetch_start(e->f, &r, got_cb, &g, &cause));
	assert_non_null(strstr(cause, "https://"));
	free(cause);
	cause = NULL;
	assert_int_equal(fetch_inflight(e->f), 0);
	r.allow_http = 1;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	assert_int_equal(g.status, 201);
	got_clear(&g);
	free(u);
	r.url = "ftp://127.0.0.1/x";
	assert_null(fetch_start(e->f, &r, got_cb, &g, &cause));
	free(cause);
	cause = NULL;
	r.url = "HTTPS://127.0.0.1:1/";
	r.allow_http = 0;
	r.method = "PUT";
	assert_null(fetch_start(e->f, &r, got_cb, &g, &cause));
	assert_non_null(strstr(cause, "method"));
	free(cause);
	cause = NULL;
	/* Redirects are returned, never followed. */
	u = url(e, e->https_port, "/redirect");
	req_init(&r, u);
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	assert_int_equal(g.status, 302);
	assert_int_equal(e->echo_count, 1);	/* only the http one */
	got_clear(&g);
	free(u);
}

static void
test_invalid_requests(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	char			*cause = NULL;

	req_init(&r, "https://127.0.0.1:1/");
	r.bearer = "abc\r\nX-Evil: 1";
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	assert_non_null(strstr(cause, "line break"));
	assert_null(strstr(cause, "abc"));
	free(cause);
	req_init(&r, "https://127.0.0.1:1/");
	r.timeout_ms = 0;
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	free(cause);
	req_init(&r, "https://127.0.0.1:1/");
	r.max_response = 0;
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	free(cause);
	r.max_response = (size_t)-1;
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	free(cause);
	req_init(&r, "https://127.0.0.1:1/");
	r.method = "GET";
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	assert_non_null(strstr(cause, "GET"));
	free(cause);
	req_init(&r, NULL);
	assert_null(fetch_start(e->f, &r, got_cb, NULL, &cause));
	free(cause);
	assert_int_equal(fetch_inflight(e->f), 0);
}

static void
test_timeout(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->sink_port, "/echo");
	uint64_t		 t0 = util_monotonic_us();
	double			 ms;

	req_init(&r, u);
	r.timeout_ms = 300;
	fetch_one(e, &r, &g);
	ms = (double)(g.at_us - t0) / 1000.0;
	assert_int_equal(g.error, FETCH_TIMEOUT);
	assert_int_equal(g.status, 0);
	assert_true(e->sink_bytes > 0);		/* it did send */
	if (ms < 250 || ms > 1500)
		fail_msg("timeout after %.0f ms", ms);
	got_clear(&g);
	free(u);
}

static void
test_refused(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	struct sockaddr_in	 sin;
	socklen_t		 len = sizeof sin;
	int			 fd, port;
	char			*u;

	/* A port that was just free: bind, read it back, close. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	u = url(e, port, "/");
	req_init(&r, u);
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_CONNECT);
	assert_non_null(g.errmsg);
	got_clear(&g);
	free(u);
}

/*
 * Behind [k8s_auth] proxy only the proxy's address is seen: with
 * allowed_hosts a host must pass by its text (a glob, or an address
 * literal in a CIDR), else the proxy would reach any name (API.md §7).
 * The plain HTTP server plays the proxy.
 */
static void
test_proxy_allowed_hosts(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*proxy, *u;

	xasprintf(&proxy, "http://127.0.0.1:%d", e->http_port);
	/* a name no glob matches: refused before the proxy is asked */
	req_init(&r, "https://k8s.example.invalid/echo");
	r.proxy = proxy;
	r.allowed_hosts = "10.0.0.0/8, *.k8s.example.com";
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_DESTINATION);
	assert_non_null(g.errmsg);
	assert_non_null(strstr(g.errmsg, "proxy"));
	got_clear(&g);
	/* a literal outside the CIDRs: refused too */
	req_init(&r, "https://192.0.2.1/echo");
	r.proxy = proxy;
	r.allowed_hosts = "10.0.0.0/8";
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_DESTINATION);
	got_clear(&g);
	/* a glob match, or a literal in a CIDR: the proxy is asked */
	req_init(&r, "https://a.k8s.example.com/echo");
	r.proxy = proxy;
	r.allowed_hosts = "10.0.0.0/8, *.k8s.example.com";
	fetch_one(e, &r, &g);
	assert_int_not_equal(g.error, FETCH_DESTINATION);
	got_clear(&g);
	u = url(e, e->https_port, "/echo");
	req_init(&r, u);
	r.proxy = proxy;
	r.allowed_hosts = "127.0.0.0/8";
	fetch_one(e, &r, &g);
	assert_int_not_equal(g.error, FETCH_DESTINATION);
	got_clear(&g);
	free(u);
	free(proxy);
}

static void
test_too_large(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u;

	u = url(e, e->https_port, "/big");
	req_init(&r, u);
	r.max_response = 1024;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TOO_LARGE);
	assert_true(g.bodylen <= 1024);
	got_clear(&g);
	r.max_response = BIG_BODY;	/* exactly fits */
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_OK);
	assert_int_equal(g.bodylen, BIG_BODY);
	assert_int_equal(strlen(g.body), BIG_BODY);
	got_clear(&g);
	free(u);
	/* No Content-Length: the write callback enforces the cap. */
	u = url(e, e->https_port, "/bigchunked");
	r.url = u;
	r.max_response = 10000;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TOO_LARGE);
	assert_true(g.bodylen <= 10000);
	got_clear(&g);
	free(u);
	/* Unbounded headers are refused too. */
	u = url(e, e->https_port, "/bigheader");
	r.url = u;
	fetch_one(e, &r, &g);
	assert_int_equal(g.error, FETCH_TOO_LARGE);
	got_clear(&g);
	free(u);
}

static void
test_concurrent(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g[NCONC];
	char			*u = url(e, e->https_port, "/slow");
	char			*cause = NULL;
	uint64_t		 t0;
	double			 ms;
	int			 i;

	req_init(&r, u);
	t0 = util_monotonic_us();
	for (i = 0; i < NCONC; i++) {
		memset(&g[i], 0, sizeof g[i]);
		g[i].env = e;
		assert_non_null(fetch_start(e->f, &r, got_cb, &g[i], &cause));
	}
	assert_int_equal(fetch_inflight(e->f), NCONC);
	run_done(e, NCONC, 10000);
	ms = (double)(util_monotonic_us() - t0) / 1000.0;
	for (i = 0; i < NCONC; i++) {
		assert_int_equal(g[i].called, 1);
		assert_int_equal(g[i].error, FETCH_OK);
		assert_int_equal(g[i].status, 200);
		assert_string_equal(g[i].body, "slow");
		got_clear(&g[i]);
	}
	print_message("%d transfers of 200 ms each took %.0f ms\n", NCONC,
	    ms);
	assert_true(ms >= 200);
	assert_true(ms < 2000);
	assert_int_equal(fetch_inflight(e->f), 0);
	free(u);
}

static void
test_cancel(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	struct fetch_transfer	*t;
	char			*u = url(e, e->sink_port, "/x");
	int			 one = 1;

	memset(&g, 0, sizeof g);
	g.env = e;
	req_init(&r, u);
	t = fetch_start(e->f, &r, got_cb, &g, NULL);
	assert_non_null(t);
	assert_int_equal(run_until(e, sink_got_request, NULL, 5000), 0);
	fetch_cancel(t);
	assert_int_equal(fetch_inflight(e->f), 0);
	assert_int_equal(run_until(e, sink_closed, &one, 3000), 0);
	run_until(e, NULL, NULL, 300);
	assert_int_equal(g.called, 0);
	assert_int_equal(e->ndone, 0);
	free(u);
}

static void
test_cancel_from_callback(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 ra, rb, rc;
	struct got		 ga, gb, gc;
	struct fetch_transfer	*tb;
	char			*ua = url(e, e->https_port, "/echo");
	char			*ub = url(e, e->sink_port, "/x");
	int			 one = 1;

	memset(&ga, 0, sizeof ga);
	memset(&gb, 0, sizeof gb);
	memset(&gc, 0, sizeof gc);
	ga.env = gb.env = gc.env = e;
	req_init(&ra, ua);
	req_init(&rb, ub);
	req_init(&rc, ua);
	tb = fetch_start(e->f, &rb, got_cb, &gb, NULL);
	assert_non_null(tb);
	assert_int_equal(run_until(e, sink_got_request, NULL, 5000), 0);
	/* A's callback cancels B and starts C. */
	ga.cancel_other = tb;
	ga.start_next = &rc;
	ga.next_got = &gc;
	assert_non_null(fetch_start(e->f, &ra, got_cb, &ga, NULL));
	assert_int_equal(fetch_inflight(e->f), 2);
	run_done(e, 2, 5000);
	assert_int_equal(ga.called, 1);
	assert_int_equal(ga.error, FETCH_OK);
	assert_int_equal(gc.called, 1);
	assert_int_equal(gc.error, FETCH_OK);
	assert_int_equal(e->echo_count, 2);
	assert_int_equal(run_until(e, sink_closed, &one, 3000), 0);
	run_until(e, NULL, NULL, 200);
	assert_int_equal(gb.called, 0);
	assert_int_equal(fetch_inflight(e->f), 0);
	got_clear(&ga);
	got_clear(&gc);
	free(ua);
	free(ub);
}

static void
test_max_transfers(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g[3];
	struct fetch_transfer	*t1, *t2;
	char			*u = url(e, e->sink_port, "/x");
	char			*cause = NULL;
	int			 two = 2;

	fetch_destroy(e->f);
	e->f = fetch_create(e->base, 2, 2);
	memset(g, 0, sizeof g);
	g[0].env = g[1].env = g[2].env = e;
	req_init(&r, u);
	t1 = fetch_start(e->f, &r, got_cb, &g[0], &cause);
	t2 = fetch_start(e->f, &r, got_cb, &g[1], &cause);
	assert_non_null(t1);
	assert_non_null(t2);
	assert_null(fetch_start(e->f, &r, got_cb, &g[2], &cause));
	assert_non_null(strstr(cause, "too many"));
	free(cause);
	cause = NULL;
	assert_int_equal(fetch_inflight(e->f), 2);
	fetch_cancel(t1);
	assert_int_equal(fetch_inflight(e->f), 1);
	t1 = fetch_start(e->f, &r, got_cb, &g[2], &cause);
	assert_non_null(t1);
	assert_int_equal(run_until(e, sink_got_request, NULL, 5000), 0);
	/* Destroy with transfers in flight: no callbacks, sockets closed. */
	fetch_destroy(e->f);
	e->f = NULL;
	assert_int_equal(run_until(e, sink_closed, &two, 3000), 0);
	assert_int_equal(g[0].called + g[1].called + g[2].called, 0);
	free(u);
}

/*
 * TokenReviews and Keystone calls have separate slots: reviews filling
 * theirs leave Keystone's free, and the other way round.
 */
static void
test_slot_pools(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g[4];
	char			*u = url(e, e->sink_port, "/x");
	char			*cause = NULL;

	fetch_destroy(e->f);
	e->f = fetch_create(e->base, 1, 1);
	memset(g, 0, sizeof g);
	g[0].env = g[1].env = g[2].env = g[3].env = e;
	req_init(&r, u);
	r.cluster = 1;
	assert_non_null(fetch_start(e->f, &r, got_cb, &g[0], &cause));
	assert_null(fetch_start(e->f, &r, got_cb, &g[1], &cause));
	assert_non_null(strstr(cause, "too many TokenReviews"));
	free(cause);
	cause = NULL;
	r.cluster = 0;
	assert_non_null(fetch_start(e->f, &r, got_cb, &g[2], &cause));
	assert_null(fetch_start(e->f, &r, got_cb, &g[3], &cause));
	assert_non_null(strstr(cause, "too many Keystone calls"));
	free(cause);
	assert_int_equal(fetch_inflight(e->f), 2);
	assert_int_equal(fetch_inflight_cluster(e->f), 1);
	fetch_destroy(e->f);
	e->f = NULL;
	free(u);
}

static void
test_sequential_from_callback(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g1, g2;
	char			*u = url(e, e->https_port, "/echo");

	memset(&g1, 0, sizeof g1);
	memset(&g2, 0, sizeof g2);
	g1.env = g2.env = e;
	req_init(&r, u);
	g1.start_next = &r;
	g1.next_got = &g2;
	assert_non_null(fetch_start(e->f, &r, got_cb, &g1, NULL));
	assert_int_equal(run_until(e, int_reached, &g2.called, 5000), 0);
	assert_int_equal(g1.error, FETCH_OK);
	assert_int_equal(g2.error, FETCH_OK);
	assert_int_equal(e->echo_count, 2);
	got_clear(&g1);
	got_clear(&g2);
	free(u);
}

static void
test_cancel_self_in_callback(void **state)
{
	struct env		*e = *state;
	struct fetch_request	 r;
	struct got		 g;
	char			*u = url(e, e->https_port, "/echo");

	memset(&g, 0, sizeof g);
	g.env = e;
	req_init(&r, u);
	g.cancel_other = fetch_start(e->f, &r, got_cb, &g, NULL);
	assert_non_null(g.cancel_other);
	fetch_cancel(NULL);
	run_done(e, 1, 5000);
	assert_int_equal(g.called, 1);
	assert_int_equal(g.error, FETCH_OK);
	assert_int_equal(fetch_inflight(e->f), 0);
	got_clear(&g);
	free(u);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_post_echo, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_connection_reuse,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_idle_connection_dropped,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_trust, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_http_policy, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_invalid_requests,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_timeout, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_refused, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_too_large, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_proxy_allowed_hosts,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_concurrent, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_cancel, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_from_callback,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_slot_pools, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_max_transfers, env_setup,
		    env_teardown),
		cmocka_unit_test_setup_teardown(test_sequential_from_callback,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_self_in_callback,
		    env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_resolver_fd_reused,
		    env_setup, env_teardown),
	};

	return (cmocka_run_group_tests(tests, group_setup, group_teardown));
}
