/*
 * fk_main.c: fake-k8s entry point.
 *
 * fake-k8s --listen HOST:PORT --cert FILE --key FILE [--issuer URL]
 *     [--api-audience AUD ...] [--port-file FILE] [--leeway SECONDS]
 *     [--anonymous-auth] [--quiet]
 *
 * Parses the command line, builds the TLS context (TLS 1.2+, the given
 * PEM certificate chain and key), the signing key, the event base, evhttp
 * and its listener, writes the chosen port, and runs the loop until
 * SIGTERM or SIGINT; then frees everything and exits 0.  Startup errors
 * are fatal.  One thread; the only blocking work is at startup.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <netdb.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "k8sauth.h"
#include "fake_k8s.h"

struct fk_config fk_config;

static struct event_base	*fk_main_evbase;
static SSL_CTX			*fk_main_ssl;
static struct evconnlistener	*fk_main_listener;
static struct event		*fk_main_resume;

struct fk_main_args {
	const char	*listen;
	const char	*cert;
	const char	*key;
	const char	*port_file;
};

/* The one event base. */
struct event_base *
fk_main_base(void)
{
	return (fk_main_evbase);
}

/* Print usage and exit 2. */
static __dead void
fk_main_usage(void)
{
	fprintf(stderr, "usage: fake-k8s --listen HOST:PORT --cert FILE "
	    "--key FILE [--issuer URL]\n"
	    "       [--api-audience AUD ...] [--port-file FILE] "
	    "[--leeway SECONDS]\n"
	    "       [--anonymous-auth] [--quiet]\n");
	exit(2);
}

/* Append an API audience. */
static void
fk_main_add_aud(const char *aud)
{
	fk_config.api_auds = xreallocarray(fk_config.api_auds,
	    fk_config.napi_auds + 1, sizeof *fk_config.api_auds);
	fk_config.api_auds[fk_config.napi_auds++] = xstrdup(aud);
}

/* The value of option argv[*i], advancing *i; usage error if missing. */
static const char *
fk_main_value(int argc, char **argv, int *i)
{
	if (*i + 1 >= argc)
		fk_main_usage();
	return (argv[++*i]);
}

/* Parse the command line into args and fk_config. */
static void
fk_main_parse(int argc, char **argv, struct fk_main_args *a)
{
	const char	*issuer = FK_DEFAULT_ISSUER;
	int		 i;

	fk_config.leeway = 60;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--listen") == 0)
			a->listen = fk_main_value(argc, argv, &i);
		else if (strcmp(argv[i], "--cert") == 0)
			a->cert = fk_main_value(argc, argv, &i);
		else if (strcmp(argv[i], "--key") == 0)
			a->key = fk_main_value(argc, argv, &i);
		else if (strcmp(argv[i], "--port-file") == 0)
			a->port_file = fk_main_value(argc, argv, &i);
		else if (strcmp(argv[i], "--issuer") == 0)
			issuer = fk_main_value(argc, argv, &i);
		else if (strcmp(argv[i], "--api-audience") == 0)
			fk_main_add_aud(fk_main_value(argc, argv, &i));
		else if (strcmp(argv[i], "--leeway") == 0) {
			if (util_parse_long(fk_main_value(argc, argv, &i), 0,
			    86400, &fk_config.leeway) != 0)
				fk_main_usage();
		} else if (strcmp(argv[i], "--anonymous-auth") == 0)
			fk_config.anonymous_auth = 1;
		else if (strcmp(argv[i], "--quiet") == 0)
			log_set_level(LOGL_WARN);
		else
			fk_main_usage();
	}
	if (a->listen == NULL || a->cert == NULL || a->key == NULL)
		fk_main_usage();
	fk_config.issuer = xstrdup(issuer);
	if (fk_config.napi_auds == 0)
		fk_main_add_aud(issuer);
}

/* Die with the OpenSSL error queue. */
static __dead void
fk_main_ssl_fatal(const char *what, const char *file)
{
	unsigned long	 e = ERR_get_error();

	fatalx("%s %s: %s", what, file, e != 0 ?
	    ERR_error_string(e, NULL) : "failed");
}

/* The server TLS context: TLS 1.2+, no renegotiation, cert and key. */
static SSL_CTX *
fk_main_tls(const char *cert, const char *key)
{
	SSL_CTX	*ctx;

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		fk_main_ssl_fatal("SSL_CTX_new", "");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
		fk_main_ssl_fatal("cannot load certificate", cert);
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
		fk_main_ssl_fatal("cannot load key", key);
	if (SSL_CTX_check_private_key(ctx) != 1)
		fk_main_ssl_fatal("key does not match certificate", cert);
	return (ctx);
}

/* evhttp's per-connection bufferevent: always TLS, never NULL. */
static struct bufferevent *
fk_main_bev_cb(struct event_base *base, void *arg)
{
	struct bufferevent	*bev;
	SSL			*ssl;

	if ((ssl = SSL_new(fk_main_ssl)) == NULL)
		fatalx("SSL_new failed");
	bev = bufferevent_openssl_socket_new(base, -1, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		fatalx("bufferevent_openssl_socket_new failed");
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	fk_stats.connections++;
	return (bev);
}

/* Re-enable accepting after an accept error pause. */
static void
fk_main_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	evconnlistener_enable(fk_main_listener);
}

/* accept() failed (EMFILE...): pause 100 ms rather than spin. */
static void
fk_main_accept_error_cb(struct evconnlistener *l, void *arg)
{
	struct timeval	 tv = { 0, 100000 };

	log_warn("accept: %s", evutil_socket_error_to_string(
	    EVUTIL_SOCKET_ERROR()));
	evconnlistener_disable(l);
	evtimer_add(fk_main_resume, &tv);
}

/* Split HOST:PORT ([v6]:PORT too); host and port are allocated. */
static void
fk_main_split_hostport(const char *s, char **host, char **port)
{
	const char	*colon = strrchr(s, ':');
	const char	*h = s;
	size_t		 hlen;

	if (colon == NULL || colon[1] == '\0')
		fatalx("--listen %s: expected HOST:PORT", s);
	hlen = (size_t)(colon - s);
	if (hlen >= 2 && s[0] == '[' && s[hlen - 1] == ']') {
		h++;
		hlen -= 2;
	}
	*host = xstrndup(h, hlen);
	*port = xstrdup(colon + 1);
}

/* Bind the listener and hand it to evhttp; returns the bound port. */
static int
fk_main_listen(struct evhttp *http, const char *hostport)
{
	struct addrinfo		 hints, *res = NULL;
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof ss;
	char			*host, *port, sport[NI_MAXSERV];
	int			 rc, one = 1;

	fk_main_split_hostport(hostport, &host, &port);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	if ((rc = getaddrinfo(*host != '\0' ? host : NULL, port, &hints,
	    &res)) != 0)
		fatalx("--listen %s: %s", hostport, gai_strerror(rc));
	fk_main_listener = evconnlistener_new_bind(fk_main_evbase, NULL, NULL,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    1024, res->ai_addr, (int)res->ai_addrlen);
	freeaddrinfo(res);
	if (fk_main_listener == NULL)
		fatal("cannot listen on %s", hostport);
	free(host);
	free(port);
	/* Accepted sockets inherit TCP_NODELAY (Linux): no Nagle stalls
	 * between the TLS records of one answer. */
	if (setsockopt(evconnlistener_get_fd(fk_main_listener), IPPROTO_TCP,
	    TCP_NODELAY, &one, sizeof one) != 0)
		log_warn("TCP_NODELAY: cannot set on the listener");
	evconnlistener_set_error_cb(fk_main_listener, fk_main_accept_error_cb);
	if (evhttp_bind_listener(http, fk_main_listener) == NULL)
		fatalx("evhttp_bind_listener failed");
	if (getsockname(evconnlistener_get_fd(fk_main_listener),
	    (struct sockaddr *)&ss, &sl) != 0 || getnameinfo(
	    (struct sockaddr *)&ss, sl, NULL, 0, sport, sizeof sport,
	    NI_NUMERICSERV) != 0)
		fatal("getsockname");
	return ((int)strtol(sport, NULL, 10));
}

/* Write the port to the port file (atomically) and to stdout. */
static void
fk_main_publish_port(const char *port_file, int port)
{
	char	 buf[32], *cause = NULL;
	int	 n;

	n = snprintf(buf, sizeof buf, "%d\n", port);
	if (port_file != NULL && util_write_file_atomic(port_file, buf,
	    (size_t)n, 0644, &cause) != 0)
		fatalx("--port-file %s: %s", port_file, cause);
	fputs(buf, stdout);
	fflush(stdout);
}

/* SIGTERM/SIGINT: leave the loop. */
static void
fk_main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
	log_info("signal %d: exiting", (int)sig);
	event_base_loopbreak(fk_main_evbase);
}

/* Free the configuration. */
static void
fk_main_free_config(void)
{
	size_t	 i;

	for (i = 0; i < fk_config.napi_auds; i++)
		free(fk_config.api_auds[i]);
	free(fk_config.api_auds);
	free(fk_config.issuer);
}

int
main(int argc, char **argv)
{
	struct fk_main_args	 args;
	struct evhttp		*http;
	struct event		*sigterm, *sigint;
	char			*cause = NULL;
	int			 port;

	memset(&args, 0, sizeof args);
	signal(SIGPIPE, SIG_IGN);
	log_open(LOGL_INFO, 0);
	fk_main_parse(argc, argv, &args);
	fk_main_ssl = fk_main_tls(args.cert, args.key);
	if (fk_jwt_init(&cause) != 0)
		fatalx("%s", cause);
	if ((fk_main_evbase = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	http = fk_http_new(fk_main_evbase);
	evhttp_set_bevcb(http, fk_main_bev_cb, NULL);
	fk_main_resume = evtimer_new(fk_main_evbase, fk_main_resume_cb, NULL);
	port = fk_main_listen(http, args.listen);
	sigterm = evsignal_new(fk_main_evbase, SIGTERM, fk_main_signal_cb,
	    NULL);
	sigint = evsignal_new(fk_main_evbase, SIGINT, fk_main_signal_cb, NULL);
	if (fk_main_resume == NULL || sigterm == NULL || sigint == NULL ||
	    evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0)
		fatalx("cannot set up events");
	log_info("fake-k8s listening on %s port %d (issuer %s, kid %s)",
	    args.listen, port, fk_config.issuer, fk_jwt_kid());
	fk_main_publish_port(args.port_file, port);
	event_base_dispatch(fk_main_evbase);

	fk_fault_shutdown();
	evhttp_free(http);
	event_free(sigterm);
	event_free(sigint);
	event_free(fk_main_resume);
	event_base_free(fk_main_evbase);
	SSL_CTX_free(fk_main_ssl);
	fk_jwt_free_keys();
	fk_state_free();
	fk_main_free_config();
	return (0);
}
