/*
 * server.c: the process.
 *
 * server_run() performs the startup order (admin token, credential keys,
 * database migration, TLS context, listening sockets, the database thread
 * and its first snapshot, workers) with every
 * failure fatal and explained, then runs the main thread's event loop,
 * which only handles signals: SIGTERM/SIGINT stop (workers stop accepting
 * and drain in-flight requests, then the process exits 0), SIGHUP reloads
 * the configuration's reloadable options, the admin token, the TLS
 * certificate and key, the Fernet keys, the Lua policies (compiled and
 * smoke-tested here, then rebuilt by each worker) and the audit file (each failed
 * step keeps what was in use).  Requests hold a reference on the
 * configuration they started with, so a reload never changes an option
 * under a request in flight.  Under systemd (Type=notify) it tells
 * systemd READY=1 once serving, RELOADING=1 ... READY=1 around a reload and
 * STOPPING=1 at a stop (notify.c).
 *
 * Owns the process-wide state in `server`: read-mostly after startup; the
 * TLS context pointer is swapped under a mutex; the connection count is
 * atomic (worker.c) and the failed-login throttle locks its own shards
 * (throttle.c).
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <netdb.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>

#include <openssl/ssl.h>

#include "k8sauth.h"

#define SERVER_BACKLOG 511

struct server *server;
/* Guards the pointers a reload swaps: ssl_ctx and cfg. */
static pthread_mutex_t server_tls_lock = PTHREAD_MUTEX_INITIALIZER;

/* A reference to the current TLS context (the caller frees it). */
void *
server_ssl_ctx_ref(void)
{
	SSL_CTX *ctx;

	pthread_mutex_lock(&server_tls_lock);
	ctx = server->ssl_ctx;
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	pthread_mutex_unlock(&server_tls_lock);
	if (ctx == NULL)
		fatalx("no TLS context");
	return (ctx);
}

/* The loaded certificate's notAfter (epoch seconds); 0 without TLS. */
double
server_tls_not_after(void)
{
	double t = 0;

	pthread_mutex_lock(&server_tls_lock);
	if (server != NULL && server->ssl_ctx != NULL)
		t = tls_ctx_not_after(server->ssl_ctx);
	pthread_mutex_unlock(&server_tls_lock);
	return (t);
}

/* Swap in a new TLS context; live connections keep the old one. */
static void
server_set_ssl_ctx(void *ctx)
{
	void *old;

	pthread_mutex_lock(&server_tls_lock);
	old = server->ssl_ctx;
	server->ssl_ctx = ctx;
	pthread_mutex_unlock(&server_tls_lock);
	if (old != NULL)
		tls_ctx_free(old);
}

/* Split "scheme://host:port" into its parts; 0 or -1. */
static int
server_parse_listen(const char *url, int *tls, char **host, char **port)
{
	const char *rest, *colon;

	if (strncmp(url, "https://", 8) == 0) {
		*tls = 1;
		rest = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		*tls = 0;
		rest = url + 7;
	} else
		return (-1);
	if ((colon = strrchr(rest, ':')) == NULL)
		return (-1);
	if (*rest == '[') {
		if (colon[-1] != ']')
			return (-1);
		*host = xstrndup(rest + 1, (size_t)(colon - rest - 2));
	} else
		*host = xstrndup(rest, (size_t)(colon - rest));
	*port = xstrdup(colon + 1);
	while ((*port)[0] != '\0' && (*port)[strlen(*port) - 1] == '/')
		(*port)[strlen(*port) - 1] = '\0';
	return (0);
}

/* Create, bind and listen on one socket for a listen URL. */
static int
server_open_listener(const char *url, struct server_listener *l, char **cause)
{
	struct addrinfo hints, *ai = NULL;
	char *host = NULL, *port = NULL;
	int fd = -1, on = 1, rc;

	if (server_parse_listen(url, &l->tls, &host, &port) != 0) {
		xasprintf(cause, "[server] listen: bad URL \"%s\"", url);
		goto fail;
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if ((rc = getaddrinfo(*host == '\0' ? NULL : host, port, &hints,
		 &ai)) != 0) {
		xasprintf(cause, "[server] listen %s: %s", url,
		    gai_strerror(rc));
		goto fail;
	}
	fd = socket(ai->ai_family,
	    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	/*
	 * TCP_NODELAY on the listener is inherited by accepted sockets: an
	 * answer written as several TLS records must not wait for the
	 * client's delayed ACK (Nagle), which capped keep-alive clients at
	 * one request per 40 ms per connection.
	 */
	if (fd == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) == -1 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
	    listen(fd, SERVER_BACKLOG) == -1) {
		xasprintf(cause, "[server] listen %s: %s", url,
		    strerror(errno));
		goto fail;
	}
	l->fd = fd;
	l->url = xstrdup(url);
	freeaddrinfo(ai);
	free(host);
	free(port);
	return (0);
fail:
	if (fd != -1)
		close(fd);
	if (ai != NULL)
		freeaddrinfo(ai);
	free(host);
	free(port);
	return (-1);
}

/* Open every [server] listen URL. */
static int
server_open_listeners(struct server *srv, char **cause)
{
	char *copy, *p, *url;

	copy = xstrdup(srv->cfg->listen);
	p = copy;
	while ((url = strsep(&p, ",")) != NULL) {
		url = util_trim(url);
		if (*url == '\0')
			continue;
		srv->listeners = xreallocarray(srv->listeners,
		    srv->nlisteners + 1, sizeof *srv->listeners);
		if (server_open_listener(url, &srv->listeners[srv->nlisteners],
			cause) != 0) {
			free(copy);
			return (-1);
		}
		srv->nlisteners++;
	}
	free(copy);
	return (0);
}

/* Does any listener speak TLS? */
static int
server_has_tls(const struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		if (srv->listeners[i].tls)
			return (1);
	}
	return (0);
}

/* Log a failed reload step and free its cause. */
static void
server_reload_failed(const char *what, char *cause)
{
	log_err("reload: %s not reloaded, the old one stays in use: %s", what,
	    cause);
	free(cause);
}

/*
 * Read the configuration file again: NULL (old configuration kept) when
 * it is broken.  Options that need a restart keep their running values.
 * The admin token file is break-glass: whatever it holds now is the
 * bootstrap token (a new `bootstrap --force` plus SIGHUP rotates it), and
 * when it is gone or unusable the bootstrap token is disabled, never kept
 * (fail closed: an operator who removed the file wants the token dead).
 */
static struct config *
server_reload_config(struct server *srv, const struct config *old)
{
	struct config *cfg;
	char *cause = NULL;

	cfg = config_new();
	if (srv->config_path != NULL &&
	    (config_load(cfg, srv->config_path, &cause) != 0 ||
		config_validate_serve(cfg, &cause) != 0)) {
		server_reload_failed("configuration", cause);
		config_free(cfg);
		return (NULL);
	}
	if (srv->config_path == NULL) {
		config_free(cfg);
		return (NULL);
	}
	config_keep_static(cfg, old);
	cfg->admin_token = auth_load_admin_token(cfg->admin_token_file, &cause);
	if (cfg->admin_token == NULL) {
		log_warn("reload: the bootstrap admin token is disabled: %s",
		    cause);
		free(cause);
	} else if (old->admin_token == NULL ||
	    strcmp(old->admin_token, cfg->admin_token) != 0)
		log_info("reload: a new bootstrap admin token is in use");
	cfg->metrics_token =
	    auth_load_metrics_token(cfg->metrics_token_file, &cause);
	if (cfg->metrics_token == NULL && cause != NULL) {
		server_reload_failed("metrics token", cause);
		if (old->metrics_token != NULL)
			cfg->metrics_token = xstrdup(old->metrics_token);
	}
	return (cfg);
}

/* Tell every worker to rebuild its policy state. */
static void
server_reload_workers(struct server *srv)
{
	int i;

	for (i = 0; i < srv->nworkers; i++)
		worker_reload(srv->workers[i]);
}

/* Swap in a new current configuration; requests keep their snapshot. */
static void
server_set_config(struct server *srv, struct config *cfg)
{
	struct config *old;

	pthread_mutex_lock(&server_tls_lock);
	old = srv->cfg;
	srv->cfg = cfg;
	pthread_mutex_unlock(&server_tls_lock);
	config_unref(old);
}

/*
 * Serving (after the start, or a reload): READY=1 and a status line for
 * `systemctl status`.
 */
static void
server_notify_ready(struct server *srv)
{
	char *msg;

	xasprintf(&msg, "READY=1\nSTATUS=serving with %d workers",
	    srv->nworkers);
	notify_send(msg);
	free(msg);
}

/*
 * A reload begins: RELOADING=1 with the monotonic time in microseconds
 * (systemd.service(5), Type=notify-reload, asks for it; older systemd
 * ignores it).  READY=1 ends it.
 */
static void
server_notify_reloading(void)
{
	char *msg;

	xasprintf(&msg, "RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%llu",
	    (unsigned long long)util_monotonic_us());
	notify_send(msg);
	free(msg);
}

/* How long access lines and audit records wait in memory ([log]). */
static void
server_set_batching(const struct config *cfg)
{
	log_set_batching((int)cfg->log_flush_interval,
	    (size_t)cfg->log_buffer_size);
	audit_set_batching((int)cfg->log_flush_interval,
	    (size_t)cfg->log_buffer_size);
}

/*
 * SIGHUP: the configuration file (reloadable options), the admin token,
 * the TLS certificate and key, the Fernet keys and the audit file.  Each
 * step that fails is logged and keeps what was in use.
 */
static void
server_reload(struct server *srv)
{
	struct config *old = srv->cfg, *cfg;
	void *ctx;
	char *cause = NULL;
	int rc;

	log_info("SIGHUP: reloading");
	server_notify_reloading();
	if ((cfg = server_reload_config(srv, old)) == NULL)
		cfg = config_ref(old);
	log_set_level(cfg->log_level);
	server_set_batching(cfg);
	if (audit_open(cfg->log_audit_file, &cause) != 0)
		server_reload_failed("audit file", cause);
	cause = NULL;
	if (strcmp(cfg->fernet_key_repository, old->fernet_key_repository) != 0)
		rc = token_init(cfg, &cause);
	else
		rc = token_reload(&cause);
	if (rc != 0)
		server_reload_failed("Fernet key repository", cause);
	cause = NULL;
	if (keystone_reload(cfg, &cause) != 0)
		server_reload_failed("Keystone application credential secret",
		    cause);
	cause = NULL;
	if (server_has_tls(srv)) {
		ctx = tls_ctx_new(cfg->tls_cert, cfg->tls_key, &cause);
		if (ctx == NULL)
			server_reload_failed("TLS certificate", cause);
		else {
			server_set_ssl_ctx(ctx);
			log_info("reload: TLS certificate and key reloaded");
		}
	}
	if ((rc = policy_validate(cfg, &cause)) != 0)
		server_reload_failed("policy", cause);
	cause = NULL;
	server_set_config(srv, cfg);
	if (rc == 0)
		server_reload_workers(srv);
	log_info("reload: done");
	server_notify_ready(srv);
}

/* A reference to the current configuration (any thread). */
struct config *
server_config_ref(void)
{
	struct config *cfg;

	pthread_mutex_lock(&server_tls_lock);
	cfg = config_ref(server->cfg);
	pthread_mutex_unlock(&server_tls_lock);
	return (cfg);
}

/* Main-thread signal callback. */
static void
server_signal_cb(evutil_socket_t sig, short events, void *arg)
{
	struct event_base *base = arg;

	switch (sig) {
	case SIGHUP:
		server_reload(server);
		break;
	case SIGTERM:
	case SIGINT:
		if (!server->stopping) {
			log_info("signal %d: stopping; draining requests",
			    (int)sig);
			notify_send(
			    "STOPPING=1\nSTATUS=stopping: draining requests");
			server->stopping = 1;
			event_base_loopbreak(base);
		}
		break;
	}
}

/* Startup steps that need no threads; every failure is fatal. */
static int
server_prepare(struct server *srv, char **cause)
{
	srv->cfg->admin_token =
	    auth_load_admin_token(srv->cfg->admin_token_file, cause);
	if (srv->cfg->admin_token == NULL)
		return (-1);
	srv->cfg->metrics_token =
	    auth_load_metrics_token(srv->cfg->metrics_token_file, cause);
	if (srv->cfg->metrics_token == NULL && *cause != NULL)
		return (-1);
	if (secret_load(srv->cfg->credential_key_repository, cause) != 0)
		return (-1);
	if (token_init(srv->cfg, cause) != 0)
		return (-1);
	if (keystone_init(srv->cfg, cause) != 0)
		return (-1);
	server_set_batching(srv->cfg);
	if (audit_open(srv->cfg->log_audit_file, cause) != 0)
		return (-1);
	if (policy_validate(srv->cfg, cause) != 0)
		return (-1);
	srv->throttle = throttle_new((size_t)srv->cfg->login_throttle_entries);
	if (server_open_listeners(srv, cause) != 0)
		return (-1);
	if (server_has_tls(srv)) {
		srv->ssl_ctx =
		    tls_ctx_new(srv->cfg->tls_cert, srv->cfg->tls_key, cause);
		if (srv->ssl_ctx == NULL)
			return (-1);
	}
	return (0);
}

/* Create and start the workers with the stop signals blocked. */
static int
server_start_workers(struct server *srv, char **cause)
{
	sigset_t set, old;
	long n;
	int i, rc = 0;

	n = srv->cfg->workers;
	if (n == 0 && (n = sysconf(_SC_NPROCESSORS_ONLN)) < 1)
		n = 1;
	srv->nworkers = (int)n;
	srv->workers = xcalloc((size_t)n, sizeof *srv->workers);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	for (i = 0; i < srv->nworkers && rc == 0; i++) {
		srv->workers[i] = worker_new(srv, i, cause);
		if (srv->workers[i] == NULL ||
		    worker_start(srv->workers[i], cause) != 0)
			rc = -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return (rc);
}

/* Stop and join every worker, stop the database thread, free them. */
static void
server_stop_workers(struct server *srv)
{
	int i;

	for (i = 0; i < srv->nworkers; i++) {
		if (srv->workers[i] != NULL && srv->workers[i]->thread != NULL)
			worker_stop(srv->workers[i]);
	}
	for (i = 0; i < srv->nworkers; i++) {
		if (srv->workers[i] != NULL)
			worker_join(srv->workers[i]);
	}
	/* After the drain (parked writes answered), before the mailboxes go. */
	dbthread_stop();
	for (i = 0; i < srv->nworkers; i++)
		worker_free(srv->workers[i]);
	free(srv->workers);
	srv->workers = NULL;
}

/* Release what server_prepare acquired. */
static void
server_free(struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisteners; i++) {
		close(srv->listeners[i].fd);
		free(srv->listeners[i].url);
	}
	free(srv->listeners);
	throttle_free(srv->throttle);
	if (srv->ssl_ctx != NULL)
		tls_ctx_free(srv->ssl_ctx);
	token_shutdown();
	keystone_shutdown();
	free(srv);
}

/* serve: run until SIGTERM; returns 0 after a clean stop. */
int
server_run(struct config *cfg, const char *path)
{
	struct event_base *base;
	struct event *sigs[3];
	static const int signos[3] = { SIGTERM, SIGINT, SIGHUP };
	char *cause = NULL;
	size_t i;

	if (evthread_use_pthreads() != 0)
		fatalx("evthread_use_pthreads failed");
	server = xcalloc(1, sizeof *server);
	server->cfg = config_ref(cfg); /* main.c keeps its own reference */
	server->config_path = path;
	server->started = time(NULL);
	if (server_prepare(server, &cause) != 0)
		fatalx("cannot start: %s", cause);
	if ((base = event_base_new()) == NULL)
		fatalx("event_base_new failed");
	for (i = 0; i < 3; i++) {
		sigs[i] = evsignal_new(base, signos[i], server_signal_cb, base);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) != 0)
			fatalx("cannot install signal handlers");
	}
	/* The first snapshot is loaded before any request (and READY=1). */
	if (dbthread_start(server->cfg, &cause) != 0)
		fatalx("cannot start: %s", cause);
	if (server_start_workers(server, &cause) != 0)
		fatalx("cannot start: %s", cause);
	for (i = 0; i < server->nlisteners; i++)
		log_info("listening on %s", server->listeners[i].url);
	log_info("%s %s serving with %d workers (config %s)", K8SAUTH_NAME,
	    K8SAUTH_VERSION, server->nworkers,
	    path != NULL ? path : "embedded defaults");
	server_notify_ready(server);
	event_base_dispatch(base);
	server_stop_workers(server);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	event_base_free(base);
	config_unref(server->cfg);
	server_free(server);
	server = NULL;
	log_info("stopped");
	return (0);
}
