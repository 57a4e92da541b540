/*
 * bench/bare.c: the yardstick of bench/run.sh -- a bare libevent evhttp
 * responder that does nothing but answer.
 *
 *   bench/bare [-t THREADS] [--cert PEM --key PEM] [--port-file FILE] HOST:PORT
 *
 * Built like the server's front end so that the ratio to it measures the
 * server's own work and nothing else: one event base and one evhttp per
 * thread (THREADS = the server's workers), every thread accepting on a
 * dup() of one shared listening socket (TCP_NODELAY, as src/server.c
 * sets it), and in HTTPS mode the same kind of TLS context as src/tls.c
 * (TLS 1.2+, server cipher preference, released buffers, a server-side
 * session cache) with one SSL per connection through
 * bufferevent_openssl as src/worker.c does.  Every request gets the same
 * ~500-byte JSON body with an X-Subject-Token header, the shape of a
 * login answer.  Runs until killed.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <arpa/inet.h>
#include <err.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define BARE_MAX_THREADS 64

static SSL_CTX *bare_ctx;
static char bare_body[640];
static size_t bare_body_len;

static const char bare_token[] =
    "gAAAAABnq3bEa1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9"
    "f0a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2c3"
    "d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4a5b6c7d8e9f0";

/* The fixed answer: about 500 bytes of JSON shaped like a login reply. */
static void
bare_body_init(void)
{
	int n;

	n = snprintf(bare_body, sizeof bare_body,
	    "{\"token\": {\"methods\": [\"k8s_auth\"], "
	    "\"expires_at\": \"2026-12-31T23:59:59.000000Z\", "
	    "\"issued_at\": \"2026-12-31T22:59:59.000000Z\", "
	    "\"user\": {\"id\": \"0d3a7e5d9c2b4f6e8a1b2c3d4e5f6a7b\", "
	    "\"name\": \"system:serviceaccount:demo:web\", "
	    "\"domain\": {\"id\": \"default\", \"name\": \"Default\"}}, "
	    "\"project\": {\"id\": \"9f8e7d6c5b4a39281706f5e4d3c2b1a0\", "
	    "\"name\": \"demo\", "
	    "\"domain\": {\"id\": \"default\", \"name\": \"Default\"}}, "
	    "\"roles\": [{\"id\": \"8c6f2a4e1b3d5f7a9c0e2b4d6f8a1c3e\", "
	    "\"name\": \"member\"}], "
	    "\"audit_ids\": [\"Wm9vbV9iZW5jaF9iYXJl\"]}}");
	if (n < 0 || (size_t)n >= sizeof bare_body)
		errx(1, "bare: reply body does not fit");
	bare_body_len = (size_t)n;
}

/* Every request: the same headers and body. */
static void
bare_request_cb(struct evhttp_request *req, void *arg)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "X-Subject-Token", bare_token);
	evbuffer_add_reference(out, bare_body, bare_body_len, NULL, NULL);
	evhttp_send_reply(req, 201, "Created", NULL);
}

/* HTTPS: one SSL per connection, as src/worker.c's worker_tls_bev_cb. */
static struct bufferevent *
bare_tls_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent *bev;
	SSL *ssl;

	if ((ssl = SSL_new(bare_ctx)) == NULL)
		errx(1, "bare: SSL_new failed");
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		errx(1, "bare: bufferevent_openssl_socket_new failed");
	return (bev);
}

/* The TLS context of src/tls.c, without ALPN (HTTP/1.1 only either way). */
static SSL_CTX *
bare_tls_ctx(const char *cert, const char *key)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		errx(1, "bare: SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		SSL_OP_NO_COMPRESSION
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
		| SSL_OP_IGNORE_UNEXPECTED_EOF
#endif
	);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_print_errors_fp(stderr);
		errx(1, "bare: cannot load %s / %s", cert, key);
	}
	return (ctx);
}

/*
 * The shared listening socket: HOST:PORT (IPv4), non-blocking (the threads
 * race for each connection), TCP_NODELAY inherited by accepted sockets.
 */
static int
bare_listen(const char *hostport, int *port)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	char host[64];
	const char *colon;
	int fd, on = 1;

	if ((colon = strrchr(hostport, ':')) == NULL ||
	    (size_t)(colon - hostport) >= sizeof host)
		errx(1, "bare: \"%s\" is not HOST:PORT", hostport);
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((unsigned short)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		errx(1, "bare: \"%s\" is not an IPv4 address", host);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		 0)) == -1)
		err(1, "bare: socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1 ||
	    bind(fd, (struct sockaddr *)&sin, sizeof sin) == -1 ||
	    listen(fd, 1024) == -1)
		err(1, "bare: cannot listen on %s", hostport);
	if (getsockname(fd, (struct sockaddr *)&sin, &len) == -1)
		err(1, "bare: getsockname");
	*port = ntohs(sin.sin_port);
	return (fd);
}

/* One thread: its own base and evhttp on a dup() of the listener. */
static void *
bare_thread(void *arg)
{
	int lfd = (int)(intptr_t)arg, fd;
	struct event_base *base;
	struct evhttp *http;

	if ((base = event_base_new()) == NULL ||
	    (http = evhttp_new(base)) == NULL)
		errx(1, "bare: event_base_new/evhttp_new failed");
	evhttp_set_gencb(http, bare_request_cb, NULL);
	evhttp_set_allowed_methods(http,
	    EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST);
	if (bare_ctx != NULL)
		evhttp_set_bevcb(http, bare_tls_bev_cb, NULL);
	if ((fd = fcntl(lfd, F_DUPFD_CLOEXEC, 0)) == -1)
		err(1, "bare: dup");
	if (evhttp_accept_socket_with_handle(http, fd) == NULL)
		errx(1, "bare: cannot accept");
	event_base_dispatch(base);
	return (NULL);
}

static void
bare_usage(void)
{
	fprintf(stderr,
	    "usage: bare [-t THREADS] [--cert PEM --key PEM] "
	    "[--port-file FILE] HOST:PORT\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	pthread_t threads[BARE_MAX_THREADS];
	const char *cert = NULL, *key = NULL, *port_file = NULL;
	int i, nthreads = 2, lfd, port;
	FILE *f;

	for (i = 1; i < argc - 1; i++) {
		if (strcmp(argv[i], "-t") == 0)
			nthreads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--cert") == 0)
			cert = argv[++i];
		else if (strcmp(argv[i], "--key") == 0)
			key = argv[++i];
		else if (strcmp(argv[i], "--port-file") == 0)
			port_file = argv[++i];
		else
			bare_usage();
	}
	if (i != argc - 1 || nthreads < 1 || nthreads > BARE_MAX_THREADS ||
	    (cert == NULL) != (key == NULL))
		bare_usage();
	signal(SIGPIPE, SIG_IGN);
	bare_body_init();
	if (cert != NULL)
		bare_ctx = bare_tls_ctx(cert, key);
	lfd = bare_listen(argv[argc - 1], &port);
	for (i = 0; i < nthreads; i++) {
		if (pthread_create(&threads[i], NULL, bare_thread,
			(void *)(intptr_t)lfd) != 0)
			errx(1, "bare: pthread_create failed");
	}
	if (port_file != NULL) {
		if ((f = fopen(port_file, "w")) == NULL)
			err(1, "bare: %s", port_file);
		fprintf(f, "%d\n", port);
		fclose(f);
	}
	for (i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	return (0);
}
