/*
 * agent.c: the `agent` subcommand, the pod side of the exchange (API.md §9).
 *
 * keystone-k8s-auth agent --url URL --instance ID --role NAME
 *     --token-file FILE [--jwt-file FILE] [--ca-file FILE]
 *     [--clouds-yaml FILE --auth-url URL [--cloud-name NAME]]
 *     [--once] [--health-file FILE]
 *
 * A small client, one request at a time, so blocking libcurl easy calls on
 * the main thread; it does not read the server's configuration file.  The
 * loop:
 *
 *   1. read the JWT file (a projected service-account token), POST it to
 *      {url}/v4/k8s_auth/instances/{id}/auth with the role;
 *   2. 200: write the token file (and the clouds.yaml) atomically, touch the
 *      health file, and sleep until 2/3 of the token's lifetime (measured
 *      as expires_at - issued_at, so a skewed local clock does not matter);
 *      `--once` exits 0 here;
 *   3. 429, 5xx, a network or TLS error, a malformed answer: jittered
 *      exponential back-off (1 s doubling to 5 min), at least the server's
 *      Retry-After (capped at 5 min);
 *   4. any other 4xx: the server refused for good; exit 2 and print the
 *      reason code.
 *
 * The sleep ends early when the JWT file changes: inotify on its directory
 * (the kubelet swaps the `..data` symlink of a projected volume: IN_CREATE
 * / IN_MOVED_TO), with a stat() of the resolved file every few seconds as
 * the fallback; only a JWT whose content differs from the last one sent
 * triggers an exchange.  SIGTERM and SIGINT end it at once with status 0,
 * also during a request (the progress callback aborts the transfer) or a
 * sleep (self-pipe); SIGHUP asks for a refresh now.
 *
 * Transport: https only, verified against --ca-file or the system store,
 * never switched off; plain http only to a loopback address (127.0.0.0/8,
 * ::1, localhost), where the JWT never leaves the host, and then never
 * through a proxy.  No redirects are followed.
 *
 * Secrets: the JWT and the token never reach a log line; the log shows the
 * first 8 hex digits of their SHA-256 for correlation.  Files holding the
 * token are created 0600 with O_EXCL (mkostemp) beside their final name,
 * written, fsynced, renamed over it, and the directory fsynced: a reader
 * sees the old file or the new one, never half of one.
 *
 * Exit status: 0 (--once done, or a signal), 1 (bad options, unusable
 * files), 2 (permanent refusal by the server).
 */
#include <sys/inotify.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "k8sauth.h"

#define AGENT_DEFAULT_JWT_FILE "/var/run/secrets/tokens/keystone"
#define AGENT_DEFAULT_CLOUD    "k8s-auth"
#define AGENT_MAX_JWT          (64 * 1024)
#define AGENT_MAX_BODY         (1024 * 1024)
#define AGENT_MAX_TOKEN        (8 * 1024)
#define AGENT_BACKOFF_MIN      1.0   /* first retry after ~1 s */
#define AGENT_BACKOFF_MAX      300.0 /* and never more than 5 min */
#define AGENT_RETRY_AFTER_MAX  300L  /* cap on the server's Retry-After */
#define AGENT_POLL_INTERVAL    5.0   /* stat() of the JWT file, fallback */
#define AGENT_MIN_REFRESH      1.0   /* floor of the refresh delay */
#define AGENT_CONNECT_TIMEOUT  10L
#define AGENT_REQUEST_TIMEOUT  30L

#define AGENT_EXIT_OK      0
#define AGENT_EXIT_USAGE   1
#define AGENT_EXIT_REFUSED 2

struct agent_opts {
	const char *url;
	const char *instance;
	const char *role;
	const char *jwt_file;
	const char *ca_file;
	const char *token_file;
	const char *clouds_yaml;
	const char *cloud_name;
	const char *auth_url;
	const char *health_file;
	int once;
	int plain_http; /* http:// to loopback: no proxy */
};

/* One login's outcome. */
enum agent_result { AGENT_OK, AGENT_RETRY, AGENT_REFUSED, AGENT_STOPPED };

struct agent_login {
	char *token;      /* X-Subject-Token */
	char *project_id; /* token.project.id, when the token has one */
	char *project_domain_id;
	double lifetime;  /* expires_at - issued_at, seconds */
	char *expires_at; /* as the server wrote it */
	long retry_after; /* seconds, -1 when absent */
	long status;      /* HTTP status, 0 on a transport error */
	char *reason;     /* error.reason of a refusal */
	char *message;    /* error.message of a refusal */
};

struct agent_buf {
	char *data;
	size_t len;
	int overflow;
};

/* JWT file identity: a rotation changes at least one of these. */
struct agent_stamp {
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	int ok;
};

static volatile sig_atomic_t agent_stop_sig;
static volatile sig_atomic_t agent_hup;
static int agent_pipe[2] = { -1, -1 };

/* Signal handler: remember, and wake the poll() through the self-pipe. */
static void
agent_on_signal(int sig)
{
	int saved = errno;
	char c = 0;

	if (sig == SIGHUP)
		agent_hup = 1;
	else
		agent_stop_sig = sig;
	if (write(agent_pipe[1], &c, 1) == -1) {
		/* full pipe: a wake-up is already pending */
	}
	errno = saved;
}

/* Self-pipe and handlers for SIGTERM, SIGINT (stop) and SIGHUP (refresh). */
static int
agent_signals(void)
{
	struct sigaction sa;
	int i;

	if (pipe2(agent_pipe, O_CLOEXEC | O_NONBLOCK) == -1)
		return (-1);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = agent_on_signal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < 3; i++) {
		int sig = i == 0 ? SIGTERM : i == 1 ? SIGINT : SIGHUP;

		if (sigaction(sig, &sa, NULL) == -1)
			return (-1);
	}
	signal(SIGPIPE, SIG_IGN);
	return (0);
}

/* The name of a stopping signal, for the log. */
static const char *
agent_signame(int sig)
{
	return (sig == SIGINT ? "SIGINT" : "SIGTERM");
}

/* -- options ---------------------------------------------------------------- */

/* Print the agent's usage and exit. */
static __dead void
agent_usage(int status)
{
	FILE *f = status == 0 ? stdout : stderr;

	fprintf(f,
	    "usage: %s agent --url URL --instance ID --role NAME --token-file FILE\n"
	    "    [--jwt-file FILE] [--ca-file FILE] [--clouds-yaml FILE --auth-url URL\n"
	    "    [--cloud-name NAME]] [--once] [--health-file FILE]\n"
	    "Every option may also come from the environment (flags win):\n"
	    "K8S_AUTH_URL, K8S_AUTH_INSTANCE, K8S_AUTH_ROLE, K8S_AUTH_TOKEN_FILE,\n"
	    "K8S_AUTH_JWT_FILE (default %s), K8S_AUTH_CA_FILE,\n"
	    "K8S_AUTH_CLOUDS_YAML, K8S_AUTH_AUTH_URL, K8S_AUTH_CLOUD_NAME (default %s),\n"
	    "K8S_AUTH_ONCE (1/true), K8S_AUTH_HEALTH_FILE.\n",
	    K8SAUTH_NAME, AGENT_DEFAULT_JWT_FILE, AGENT_DEFAULT_CLOUD);
	exit(status);
}

/* The environment's value of name, or NULL when unset or empty. */
static const char *
agent_env(const char *name)
{
	const char *v = getenv(name);

	return (v != NULL && *v != '\0' ? v : NULL);
}

/* Defaults from the environment; the flags parsed later override them. */
static int
agent_opts_from_env(struct agent_opts *o)
{
	const char *once;

	o->url = agent_env("K8S_AUTH_URL");
	o->instance = agent_env("K8S_AUTH_INSTANCE");
	o->role = agent_env("K8S_AUTH_ROLE");
	o->jwt_file = agent_env("K8S_AUTH_JWT_FILE");
	o->ca_file = agent_env("K8S_AUTH_CA_FILE");
	o->token_file = agent_env("K8S_AUTH_TOKEN_FILE");
	o->clouds_yaml = agent_env("K8S_AUTH_CLOUDS_YAML");
	o->cloud_name = agent_env("K8S_AUTH_CLOUD_NAME");
	o->auth_url = agent_env("K8S_AUTH_AUTH_URL");
	o->health_file = agent_env("K8S_AUTH_HEALTH_FILE");
	if ((once = agent_env("K8S_AUTH_ONCE")) != NULL) {
		if (strcmp(once, "1") == 0 || strcmp(once, "true") == 0)
			o->once = 1;
		else if (strcmp(once, "0") != 0 && strcmp(once, "false") != 0) {
			fprintf(stderr,
			    "%s: agent: K8S_AUTH_ONCE must be 1, true, 0 or false\n",
			    K8SAUTH_NAME);
			return (-1);
		}
	}
	return (0);
}

/* Parse the flags over the environment's defaults. */
static void
agent_opts_parse(struct agent_opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "url", required_argument, NULL, 'u' },
		{ "instance", required_argument, NULL, 'i' },
		{ "role", required_argument, NULL, 'r' },
		{ "jwt-file", required_argument, NULL, 'j' },
		{ "ca-file", required_argument, NULL, 'C' },
		{ "token-file", required_argument, NULL, 't' },
		{ "clouds-yaml", required_argument, NULL, 'y' },
		{ "cloud-name", required_argument, NULL, 'n' },
		{ "auth-url", required_argument, NULL, 'a' },
		{ "once", no_argument, NULL, '1' },
		{ "health-file", required_argument, NULL, 'H' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'u':
			o->url = optarg;
			break;
		case 'i':
			o->instance = optarg;
			break;
		case 'r':
			o->role = optarg;
			break;
		case 'j':
			o->jwt_file = optarg;
			break;
		case 'C':
			o->ca_file = optarg;
			break;
		case 't':
			o->token_file = optarg;
			break;
		case 'y':
			o->clouds_yaml = optarg;
			break;
		case 'n':
			o->cloud_name = optarg;
			break;
		case 'a':
			o->auth_url = optarg;
			break;
		case '1':
			o->once = 1;
			break;
		case 'H':
			o->health_file = optarg;
			break;
		case 'h':
			agent_usage(0);
		default:
			agent_usage(AGENT_EXIT_USAGE);
		}
	}
	if (optind != argc)
		agent_usage(AGENT_EXIT_USAGE);
}

/* Is host (as curl_url gives it: brackets stripped) a loopback address? */
static int
agent_is_loopback(const char *host)
{
	struct in6_addr a6;
	struct in_addr a4;
	const char *h = host;
	char buf[INET6_ADDRSTRLEN + 1];
	size_t n;

	if (strcasecmp(host, "localhost") == 0)
		return (1);
	if (inet_pton(AF_INET, h, &a4) == 1)
		return ((ntohl(a4.s_addr) >> 24) == 127);
	n = strlen(h);
	if (n > 2 && h[0] == '[' && h[n - 1] == ']' && n - 2 < sizeof buf) {
		memcpy(buf, h + 1, n - 2);
		buf[n - 2] = '\0';
		h = buf;
	}
	if (inet_pton(AF_INET6, h, &a6) == 1)
		return (IN6_IS_ADDR_LOOPBACK(&a6));
	return (0);
}

/*
 * Check a URL: absolute, no user info, query or fragment; https, or http
 * to a loopback address (allow_http 1) or to any host (allow_http 2).
 * Returns 0, or -1 with *cause set.
 */
static int
agent_check_url(const char *what, const char *url, int allow_http,
    int *plain_http, char **cause)
{
	CURLU *u;
	char *scheme = NULL, *host = NULL, *user = NULL, *query = NULL;
	char *frag = NULL;
	int rc = -1;

	if ((u = curl_url()) == NULL)
		fatalx("curl_url: out of memory");
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
		xasprintf(cause, "%s \"%s\" is not an absolute URL", what, url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
		xasprintf(cause,
		    "%s must not carry user info, a query or a fragment", what);
		goto out;
	}
	if (plain_http != NULL)
		*plain_http = 0;
	if (strcmp(scheme, "https") == 0)
		rc = 0;
	else if (strcmp(scheme, "http") == 0 &&
	    (allow_http == 2 || (allow_http == 1 && agent_is_loopback(host)))) {
		if (plain_http != NULL)
			*plain_http = 1;
		rc = 0;
	} else if (strcmp(scheme, "http") == 0 && allow_http)
		xasprintf(cause,
		    "%s: http:// only to a loopback address (the JWT would cross the network in clear); use https://",
		    what);
	else
		xasprintf(cause, "%s: the scheme must be https://", what);
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(query);
	curl_free(frag);
	curl_url_cleanup(u);
	return (rc);
}

/* Characters allowed in an instance id, a cloud name. */
static int
agent_is_name(const char *s, size_t max)
{
	size_t n = strlen(s), i;

	if (n == 0 || n > max)
		return (0);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') &&
		    !(c >= '0' && c <= '9') && c != '-' && c != '_' && c != '.')
			return (0);
	}
	return (1);
}

/* Every option present and sane; returns 0 or -1 with *cause set. */
static int
agent_opts_check(struct agent_opts *o, char **cause)
{
	size_t i;

	if (o->jwt_file == NULL)
		o->jwt_file = AGENT_DEFAULT_JWT_FILE;
	if (o->cloud_name == NULL)
		o->cloud_name = AGENT_DEFAULT_CLOUD;
	if (o->url == NULL || o->instance == NULL || o->role == NULL ||
	    o->token_file == NULL) {
		xasprintf(cause,
		    "--url, --instance, --role and --token-file are required (or K8S_AUTH_URL, K8S_AUTH_INSTANCE, K8S_AUTH_ROLE, K8S_AUTH_TOKEN_FILE)");
		return (-1);
	}
	if (agent_check_url("--url", o->url, 1, &o->plain_http, cause) != 0)
		return (-1);
	if (!agent_is_name(o->instance, 64)) {
		xasprintf(cause, "--instance: not an instance id");
		return (-1);
	}
	for (i = 0; o->role[i] != '\0'; i++) {
		if ((unsigned char)o->role[i] < 0x20 || i >= 255) {
			xasprintf(cause, "--role: not a role name");
			return (-1);
		}
	}
	if (i == 0) {
		xasprintf(cause, "--role: not a role name");
		return (-1);
	}
	if (o->clouds_yaml != NULL && o->auth_url == NULL) {
		xasprintf(cause,
		    "--clouds-yaml needs --auth-url (Keystone's URL, e.g. https://keystone.example:5000/v3)");
		return (-1);
	}
	if (o->auth_url != NULL && o->clouds_yaml == NULL) {
		xasprintf(cause, "--auth-url is only used with --clouds-yaml");
		return (-1);
	}
	/* Keystone's URL holds no secret: http is the operator's choice. */
	if (o->auth_url != NULL &&
	    agent_check_url("--auth-url", o->auth_url, 2, NULL, cause) != 0)
		return (-1);
	if (!agent_is_name(o->cloud_name, 64)) {
		xasprintf(cause,
		    "--cloud-name: letters, digits, '-', '_' and '.' only");
		return (-1);
	}
	return (0);
}

/* -- files ------------------------------------------------------------------ */

/*
 * Touch the health file: create it if needed, set its mtime to now.  A
 * symbolic link there is refused (O_NOFOLLOW): whoever can write the
 * directory (a shared volume) must not make the agent create or touch a
 * file elsewhere.
 */
static int
agent_touch(const char *path, char **cause)
{
	int fd;

	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW,
	    0644);
	if (fd == -1 || futimens(fd, NULL) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return (-1);
	}
	close(fd);
	return (0);
}

/* A YAML double-quoted scalar of s (s was checked free of controls). */
static void
agent_yaml_quote(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

/*
 * The clouds.yaml for openstackclient and openstacksdk: auth_type v3token
 * (keystoneauth's token plugin) with the token and its project, so the
 * client re-scopes it to the same project and gets the service catalog.
 */
static char *
agent_clouds_yaml(const struct agent_opts *o, const struct agent_login *l,
    size_t *len)
{
	char *out = NULL;
	size_t n = 0;
	FILE *f;

	if ((f = open_memstream(&out, &n)) == NULL)
		fatal("open_memstream");
	fprintf(f,
	    "# Written by %s agent at every refresh; edits are lost.\n"
	    "# The token expires at %s.\n"
	    "clouds:\n  %s:\n    auth_type: v3token\n    auth:\n"
	    "      auth_url: ",
	    K8SAUTH_NAME, l->expires_at, o->cloud_name);
	agent_yaml_quote(f, o->auth_url);
	fputs("\n      token: ", f);
	agent_yaml_quote(f, l->token);
	if (l->project_id != NULL) {
		fputs("\n      project_id: ", f);
		agent_yaml_quote(f, l->project_id);
	}
	if (l->project_domain_id != NULL) {
		fputs("\n      project_domain_id: ", f);
		agent_yaml_quote(f, l->project_domain_id);
	}
	fputs("\n    identity_api_version: 3\n", f);
	if (fclose(f) != 0)
		fatal("open_memstream");
	*len = n;
	return (out);
}

/* Write the token file, the clouds.yaml, then touch the health file. */
static int
agent_write_outputs(const struct agent_opts *o, const struct agent_login *l,
    char **cause)
{
	char *yaml;
	size_t len;
	int rc;

	if (util_write_file_atomic(o->token_file, l->token, strlen(l->token),
		0600, cause) != 0)
		return (-1);
	if (o->clouds_yaml != NULL) {
		yaml = agent_clouds_yaml(o, l, &len);
		rc = util_write_file_atomic(o->clouds_yaml, yaml, len, 0600,
		    cause);
		explicit_bzero(yaml, len);
		free(yaml);
		if (rc != 0)
			return (-1);
	}
	if (o->health_file != NULL && agent_touch(o->health_file, cause) != 0)
		return (-1);
	return (0);
}

/* Read the JWT, trimmed; NULL with *cause set when unusable. */
static char *
agent_read_jwt(const char *path, char **cause)
{
	char *buf, *t, *jwt;
	size_t i;

	if (util_read_file(path, AGENT_MAX_JWT, &buf, NULL, cause) != 0)
		return (NULL);
	t = util_trim(buf);
	for (i = 0; t[i] != '\0'; i++) {
		if ((unsigned char)t[i] <= 0x20 || (unsigned char)t[i] >= 0x7f)
			break;
	}
	if (i == 0 || t[i] != '\0') {
		xasprintf(cause, "%s: not a JWT (empty, or blanks inside)",
		    path);
		freezero_str(buf);
		return (NULL);
	}
	jwt = xstrdup(t);
	freezero_str(buf);
	return (jwt);
}

/* The JWT file's identity, following the symlinks. */
static void
agent_stamp(const char *path, struct agent_stamp *s)
{
	struct stat st;

	memset(s, 0, sizeof *s);
	if (stat(path, &st) == -1)
		return;
	s->dev = st.st_dev;
	s->ino = st.st_ino;
	s->mtime = st.st_mtim;
	s->size = st.st_size;
	s->ok = 1;
}

/* Same file, same content as far as stat() can tell? */
static int
agent_stamp_equal(const struct agent_stamp *a, const struct agent_stamp *b)
{
	return (a->ok == b->ok && a->dev == b->dev && a->ino == b->ino &&
	    a->mtime.tv_sec == b->mtime.tv_sec &&
	    a->mtime.tv_nsec == b->mtime.tv_nsec && a->size == b->size);
}

/* inotify on the JWT file's directory; -1 (then polling alone) on error. */
static int
agent_watch(const char *jwt_file)
{
	char *dir, *slash;
	int fd;

	if ((fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) == -1) {
		log_warn("agent: inotify: %s; polling the JWT file every %.0f s",
		    strerror(errno), AGENT_POLL_INTERVAL);
		return (-1);
	}
	dir = xstrdup(jwt_file);
	if ((slash = strrchr(dir, '/')) == NULL) {
		free(dir);
		dir = xstrdup(".");
	} else if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (inotify_add_watch(fd, dir,
		IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB |
		    IN_DELETE) == -1) {
		log_warn("agent: inotify on %s: %s; polling the JWT file every %.0f s",
		    dir, strerror(errno), AGENT_POLL_INTERVAL);
		close(fd);
		fd = -1;
	}
	free(dir);
	return (fd);
}

/* -- the exchange ----------------------------------------------------------- */

/* Body callback: collect up to AGENT_MAX_BODY bytes, else fail. */
static size_t
agent_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct agent_buf *b = arg;
	size_t n = size * nmemb;

	if (b->len + n > AGENT_MAX_BODY) {
		b->overflow = 1;
		return (0);
	}
	b->data = xreallocarray(b->data, 1, b->len + n + 1);
	memcpy(b->data + b->len, ptr, n);
	b->len += n;
	b->data[b->len] = '\0';
	return (n);
}

/* Header callback: X-Subject-Token and Retry-After (delta-seconds). */
static size_t
agent_on_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct agent_login *l = arg;
	size_t n = size * nmemb, vlen;
	const char *v;
	char *val;
	long secs;

	if (n > 15 && strncasecmp(ptr, "X-Subject-Token:", 16) == 0)
		v = ptr + 16;
	else if (n > 11 && strncasecmp(ptr, "Retry-After:", 12) == 0)
		v = ptr + 12;
	else
		return (n);
	vlen = n - (size_t)(v - ptr);
	if (vlen > AGENT_MAX_TOKEN)
		return (n);
	val = xstrndup(v, vlen);
	if (ptr[0] == 'X' || ptr[0] == 'x') {
		if (l->token != NULL)
			freezero_str(l->token);
		l->token = xstrdup(util_trim(val));
	} else if (util_parse_long(util_trim(val), 0, LONG_MAX, &secs) == 0)
		l->retry_after = secs;
	freezero_str(val);
	return (n);
}

/* Progress callback: abort the transfer when asked to stop. */
static int
agent_on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut,
    curl_off_t un)
{
	return (agent_stop_sig != 0);
}

/* "2026-11-28T13:00:00.000000Z" to POSIX seconds; -1 when malformed. */
static double
agent_parse_time(const char *s)
{
	struct tm tm;
	const char *end;
	double frac = 0;

	if (s == NULL)
		return (-1);
	memset(&tm, 0, sizeof tm);
	if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
		return (-1);
	if (*end == '.') {
		frac = strtod(end, (char **)&end);
	}
	if (strcmp(end, "Z") != 0)
		return (-1);
	return ((double)timegm(&tm) + frac);
}

/* The error body's reason and message, if it has the API's shape. */
static void
agent_parse_error(struct agent_login *l, const struct agent_buf *b)
{
	cJSON *root, *err, *r, *m;

	if (b->data == NULL || (root = cJSON_Parse(b->data)) == NULL)
		return;
	err = cJSON_GetObjectItemCaseSensitive(root, "error");
	r = cJSON_GetObjectItemCaseSensitive(err, "reason");
	m = cJSON_GetObjectItemCaseSensitive(err, "message");
	if (cJSON_IsString(r))
		l->reason = log_escape(r->valuestring, 64);
	if (cJSON_IsString(m))
		l->message = log_escape(m->valuestring, 256);
	cJSON_Delete(root);
}

/* A string member of the object at path a.b, or NULL. */
static const char *
agent_json_str(const cJSON *o, const char *a, const char *b)
{
	const cJSON *v;

	v = cJSON_GetObjectItemCaseSensitive(o, a);
	if (b != NULL)
		v = cJSON_GetObjectItemCaseSensitive(v, b);
	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

/* A 200's body: expires_at, issued_at, project.  0, or -1 with *cause. */
static int
agent_parse_success(struct agent_login *l, const struct agent_buf *b,
    char **cause)
{
	cJSON *root, *tok, *proj;
	const char *exp, *pid, *pdom;
	double e, i, now = util_now();
	size_t k;

	if (l->token == NULL || *l->token == '\0') {
		xasprintf(cause, "200 without X-Subject-Token");
		return (-1);
	}
	for (k = 0; l->token[k] != '\0'; k++) {
		if ((unsigned char)l->token[k] <= 0x20 ||
		    (unsigned char)l->token[k] >= 0x7f || l->token[k] == '"' ||
		    l->token[k] == '\\') {
			xasprintf(cause, "X-Subject-Token is not a token");
			return (-1);
		}
	}
	if (b->data == NULL || (root = cJSON_Parse(b->data)) == NULL) {
		xasprintf(cause, "200 with a body that is not JSON");
		return (-1);
	}
	tok = cJSON_GetObjectItemCaseSensitive(root, "token");
	exp = agent_json_str(tok, "expires_at", NULL);
	e = agent_parse_time(exp);
	i = agent_parse_time(agent_json_str(tok, "issued_at", NULL));
	if (e < 0) {
		cJSON_Delete(root);
		xasprintf(cause, "200 without a valid token.expires_at");
		return (-1);
	}
	l->expires_at = log_escape(exp, 40);
	/* The lifetime by the server's clock; the local clock if odd. */
	l->lifetime = i > 0 && e > i ? e - i : e - now;
	proj = cJSON_GetObjectItemCaseSensitive(tok, "project");
	pid = agent_json_str(proj, "id", NULL);
	pdom = agent_json_str(proj, "domain", "id");
	if (pid != NULL && agent_is_name(pid, 64))
		l->project_id = xstrdup(pid);
	if (pdom != NULL && agent_is_name(pdom, 64))
		l->project_domain_id = xstrdup(pdom);
	cJSON_Delete(root);
	return (0);
}

/* Free a login's results, zeroing the token. */
static void
agent_login_clear(struct agent_login *l)
{
	if (l->token != NULL)
		freezero_str(l->token);
	free(l->project_id);
	free(l->project_domain_id);
	free(l->expires_at);
	free(l->reason);
	free(l->message);
	memset(l, 0, sizeof *l);
	l->retry_after = -1;
}

/* The login URL: {url}/v4/k8s_auth/instances/{id}/auth. */
static char *
agent_login_url(const struct agent_opts *o)
{
	size_t n = strlen(o->url);
	char *u;

	while (n > 0 && o->url[n - 1] == '/')
		n--;
	xasprintf(&u, "%.*s/v4/k8s_auth/instances/%s/auth", (int)n, o->url,
	    o->instance);
	return (u);
}

/* Set the transport options: TLS verified, no redirects, timeouts. */
static void
agent_curl_setup(CURL *c, const struct agent_opts *o)
{
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR,
	    o->plain_http ? "http" : "https");
#else
	curl_easy_setopt(c, CURLOPT_PROTOCOLS,
	    o->plain_http ? CURLPROTO_HTTP : CURLPROTO_HTTPS);
#endif
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (o->ca_file != NULL)
		curl_easy_setopt(c, CURLOPT_CAINFO, o->ca_file);
	if (o->plain_http)
		curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, AGENT_CONNECT_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, AGENT_REQUEST_TIMEOUT);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, agent_on_progress);
	curl_easy_setopt(c, CURLOPT_USERAGENT,
	    K8SAUTH_NAME "-agent/" K8SAUTH_VERSION);
}

/*
 * One login: POST the JWT, classify the answer.  AGENT_OK fills l;
 * AGENT_REFUSED has l->status and l->reason; AGENT_RETRY has *cause and
 * maybe l->retry_after; AGENT_STOPPED: a signal cut the request.
 */
static enum agent_result
agent_exchange(const struct agent_opts *o, const char *jwt,
    struct agent_login *l, char **cause)
{
	struct curl_slist *hdrs = NULL;
	struct agent_buf b = { NULL, 0, 0 };
	char errbuf[CURL_ERROR_SIZE] = "", *url, *body;
	enum agent_result rc;
	cJSON *req;
	CURL *c;
	CURLcode cc;

	if ((c = curl_easy_init()) == NULL)
		fatalx("curl_easy_init failed");
	req = cJSON_CreateObject();
	cJSON_AddStringToObject(req, "k8s_role", o->role);
	cJSON_AddStringToObject(req, "jwt", jwt);
	if ((body = cJSON_PrintUnformatted(req)) == NULL)
		fatalx("agent: out of memory");
	cJSON_Delete(req);
	url = agent_login_url(o);
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	/* A JWT body is over 1 KiB: no 100-continue round trip (and wait). */
	hdrs = curl_slist_append(hdrs, "Expect:");
	agent_curl_setup(c, o);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, agent_on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, agent_on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, l);
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK)
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &l->status);
	if (agent_stop_sig != 0)
		rc = AGENT_STOPPED;
	else if (cc != CURLE_OK) {
		xasprintf(cause, "%s: %s", curl_easy_strerror(cc),
		    errbuf[0] != '\0' ? errbuf : "no detail");
		rc = AGENT_RETRY;
	} else if (b.overflow) {
		xasprintf(cause, "answer larger than %d bytes", AGENT_MAX_BODY);
		rc = AGENT_RETRY;
	} else if (l->status == 200)
		rc = agent_parse_success(l, &b, cause) == 0 ? AGENT_OK
							    : AGENT_RETRY;
	else if (l->status == 429 || l->status >= 500) {
		agent_parse_error(l, &b);
		xasprintf(cause, "HTTP %ld %s", l->status,
		    l->reason != NULL ? l->reason : "(no reason)");
		rc = AGENT_RETRY;
	} else {
		agent_parse_error(l, &b);
		rc = AGENT_REFUSED;
	}
	freezero_str(body);
	free(b.data);
	free(url);
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(c);
	return (rc);
}

/* -- the loop --------------------------------------------------------------- */

struct agent_state {
	struct agent_opts *o;
	int inotify_fd;
	struct agent_stamp stamp; /* of the JWT last sent */
	char jwt_hash[65];        /* SHA-256 of the JWT last sent */
	double backoff;           /* the next back-off's base, seconds */
	int have_token;
};

/* Drain the inotify queue; return 1 when there was anything. */
static int
agent_drain(int fd)
{
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	int any = 0;

	if (fd == -1)
		return (0);
	while (read(fd, buf, sizeof buf) > 0)
		any = 1;
	return (any);
}

/* Has the JWT file's content changed since the last exchange? */
static int
agent_jwt_changed(struct agent_state *s)
{
	struct agent_stamp now;
	char *jwt, *cause = NULL, hex[65];

	agent_stamp(s->o->jwt_file, &now);
	if (agent_stamp_equal(&now, &s->stamp))
		return (0);
	if ((jwt = agent_read_jwt(s->o->jwt_file, &cause)) == NULL) {
		free(cause); /* mid-rotation or gone: look again later */
		return (0);
	}
	util_sha256_hex(jwt, strlen(jwt), hex);
	freezero_str(jwt);
	s->stamp = now;
	if (strcmp(hex, s->jwt_hash) == 0)
		return (0);
	log_info("agent: the JWT file changed (rotation, sha256 %.8s)", hex);
	return (1);
}

/*
 * Sleep up to delay seconds; wake early on a signal (returns -1), a
 * SIGHUP or a changed JWT (returns 1).  Returns 0 when the time is up.
 */
static int
agent_sleep(struct agent_state *s, double delay)
{
	struct pollfd pfd[2];
	uint64_t end = util_monotonic_us() + (uint64_t)(delay * 1e6);
	uint64_t now;
	double left;
	char c[64];
	int n;

	for (;;) {
		if (agent_stop_sig != 0)
			return (-1);
		if (agent_hup) {
			agent_hup = 0;
			log_info("agent: SIGHUP, refreshing now");
			return (1);
		}
		if ((now = util_monotonic_us()) >= end)
			return (0);
		left = (double)(end - now) / 1e6;
		if (left > AGENT_POLL_INTERVAL)
			left = AGENT_POLL_INTERVAL;
		pfd[0].fd = agent_pipe[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = s->inotify_fd;
		pfd[1].events = POLLIN;
		n = poll(pfd, s->inotify_fd != -1 ? 2 : 1,
		    (int)(left * 1000) + 1);
		if (n == -1 && errno != EINTR)
			fatal("poll");
		while (read(agent_pipe[0], c, sizeof c) > 0)
			continue;
		agent_drain(s->inotify_fd);
		if (agent_stop_sig == 0 && agent_jwt_changed(s))
			return (1);
	}
}

/* The next back-off: base/2 plus up to base/2 of jitter, then doubled. */
static double
agent_next_backoff(struct agent_state *s, long retry_after)
{
	uint32_t r;
	double d;

	util_random_bytes(&r, sizeof r);
	d = s->backoff / 2 + (s->backoff / 2) * ((double)r / UINT32_MAX);
	s->backoff *= 2;
	if (s->backoff > AGENT_BACKOFF_MAX)
		s->backoff = AGENT_BACKOFF_MAX;
	if (retry_after > AGENT_RETRY_AFTER_MAX)
		retry_after = AGENT_RETRY_AFTER_MAX;
	if (retry_after >= 0 && (double)retry_after > d)
		d = (double)retry_after;
	return (d);
}

/*
 * One round: read the JWT, exchange it, write the files.  Returns the
 * delay before the next round, or -1 with *status set when the agent
 * must exit.
 */
static double
agent_round(struct agent_state *s, int *status)
{
	struct agent_login l;
	char *jwt, *cause = NULL, jid[9], tid[9];
	enum agent_result r;
	double delay;

	memset(&l, 0, sizeof l);
	l.retry_after = -1;
	agent_stamp(s->o->jwt_file, &s->stamp);
	if ((jwt = agent_read_jwt(s->o->jwt_file, &cause)) == NULL) {
		if (!s->have_token) {
			log_err("agent: cannot read the JWT: %s", cause);
			free(cause);
			*status = AGENT_EXIT_USAGE;
			return (-1);
		}
		delay = agent_next_backoff(s, -1);
		log_warn("agent: cannot read the JWT: %s; retry in %.1f s",
		    cause, delay);
		free(cause);
		return (delay);
	}
	util_sha256_hex(jwt, strlen(jwt), s->jwt_hash);
	log_secret_id(jwt, jid);
	r = agent_exchange(s->o, jwt, &l, &cause);
	freezero_str(jwt);
	switch (r) {
	case AGENT_STOPPED:
		*status = AGENT_EXIT_OK;
		delay = -1;
		break;
	case AGENT_REFUSED:
		log_err("agent: login refused: HTTP %ld %s: %s (jwt sha256 %s)",
		    l.status, l.reason != NULL ? l.reason : "(no reason)",
		    l.message != NULL ? l.message : "(no message)", jid);
		*status = AGENT_EXIT_REFUSED;
		delay = -1;
		break;
	case AGENT_RETRY:
		delay = agent_next_backoff(s, l.retry_after);
		log_warn("agent: login failed: %s; retry in %.1f s (jwt sha256 %s)",
		    cause, delay, jid);
		break;
	case AGENT_OK:
	default:
		if (agent_write_outputs(s->o, &l, &cause) != 0) {
			if (!s->have_token) {
				/* Never written: a wrong path, not a fault. */
				log_err("agent: cannot write the token: %s",
				    cause);
				*status = AGENT_EXIT_USAGE;
				delay = -1;
				break;
			}
			delay = agent_next_backoff(s, -1);
			log_err("agent: cannot write the token: %s; retry in %.1f s",
			    cause, delay);
			break;
		}
		s->have_token = 1;
		s->backoff = AGENT_BACKOFF_MIN;
		delay = l.lifetime * 2 / 3;
		if (delay < AGENT_MIN_REFRESH)
			delay = AGENT_MIN_REFRESH;
		log_secret_id(l.token, tid);
		log_info("agent: token written to %s (sha256 %s, project %s, expires %s, jwt sha256 %s); next refresh in %.0f s",
		    s->o->token_file, tid,
		    l.project_id != NULL ? l.project_id : "(none)",
		    l.expires_at, jid, delay);
		if (s->o->once) {
			*status = AGENT_EXIT_OK;
			delay = -1;
		}
		break;
	}
	free(cause);
	agent_login_clear(&l);
	return (delay);
}

/* Run rounds until --once is done, a refusal or a signal. */
static int
agent_run(struct agent_opts *o)
{
	struct agent_state s;
	double delay;
	int status = AGENT_EXIT_OK, w;

	memset(&s, 0, sizeof s);
	s.o = o;
	s.backoff = AGENT_BACKOFF_MIN;
	s.inotify_fd = o->once ? -1 : agent_watch(o->jwt_file);
	log_info("agent: started: %s instance %s role %s, jwt %s, token %s%s%s",
	    o->url, o->instance, o->role, o->jwt_file, o->token_file,
	    o->clouds_yaml != NULL ? ", clouds.yaml " : "",
	    o->clouds_yaml != NULL ? o->clouds_yaml : "");
	for (;;) {
		if (agent_stop_sig != 0)
			break;
		if ((delay = agent_round(&s, &status)) < 0)
			break;
		if ((w = agent_sleep(&s, delay)) < 0)
			break;
	}
	if (agent_stop_sig != 0) {
		log_info("agent: %s, exiting", agent_signame(agent_stop_sig));
		status = AGENT_EXIT_OK;
	}
	if (s.inotify_fd != -1)
		close(s.inotify_fd);
	return (status);
}

/*
 * The agent subcommand (argv[0] is "agent").  Returns the exit status.
 */
int
agent_main(int argc, char **argv)
{
	struct agent_opts o;
	char *cause = NULL;
	int status;

	memset(&o, 0, sizeof o);
	log_open(LOGL_INFO, 0);
	if (agent_opts_from_env(&o) != 0)
		return (AGENT_EXIT_USAGE);
	agent_opts_parse(&o, argc, argv);
	if (agent_opts_check(&o, &cause) != 0) {
		fprintf(stderr, "%s: agent: %s\n", K8SAUTH_NAME, cause);
		free(cause);
		return (AGENT_EXIT_USAGE);
	}
	if (o.ca_file != NULL && access(o.ca_file, R_OK) == -1) {
		fprintf(stderr, "%s: agent: --ca-file %s: %s\n", K8SAUTH_NAME,
		    o.ca_file, strerror(errno));
		return (AGENT_EXIT_USAGE);
	}
	if (agent_signals() == -1) {
		fprintf(stderr, "%s: agent: signals: %s\n", K8SAUTH_NAME,
		    strerror(errno));
		return (AGENT_EXIT_USAGE);
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: agent: curl_global_init failed\n",
		    K8SAUTH_NAME);
		return (AGENT_EXIT_USAGE);
	}
	status = agent_run(&o);
	curl_global_cleanup();
	return (status);
}
