/*
 * config.c: the table-driven configuration.
 *
 * One table (config_options) defines every option: section, name, type,
 * default, bounds, whether SIGHUP reloads it, and its help text.  The same
 * table drives parsing (inih), validation, `config-check`, `--dump` and
 * docs/configuration.md.  A missing file means "embedded defaults only" only
 * when no --config was given; an explicit file that is missing is an error.
 * Runs on the main thread at startup and on reload; never on a worker.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "k8sauth.h"

#ifndef SYSCONFDIR
#define SYSCONFDIR "/etc"
#endif
#ifndef LOCALSTATEDIR
#define LOCALSTATEDIR "/var"
#endif

enum config_type { CT_STRING, CT_INT, CT_BOOL };

struct config_option {
	const char *section;
	const char *name;
	enum config_type type;
	size_t offset;
	const char *def; /* NULL: unset */
	long min;
	long max;
	int reloadable;
	const char *help;
};

#define O(f) offsetof(struct config, f)
static const struct config_option config_options[] = {
	{ "server", "listen", CT_STRING, O(listen), "https://0.0.0.0:5088", 0,
	    0, 0,
	    "Comma-separated listen URLs (https://HOST:PORT or http://HOST:PORT); IPv6 hosts in brackets." },
	{ "server", "tls_cert", CT_STRING, O(tls_cert), NULL, 0, 0, 1,
	    "PEM certificate chain for https:// listeners." },
	{ "server", "tls_key", CT_STRING, O(tls_key), NULL, 0, 0, 1,
	    "PEM private key for https:// listeners." },
	{ "server", "workers", CT_INT, O(workers), "0", 0, 256, 0,
	    "Worker threads; 0 means one per CPU." },
	{ "server", "max_body_size", CT_INT, O(max_body_size), "65536", 1024,
	    16777216, 0, "Largest request body in bytes (413 above)." },
	{ "server", "max_header_size", CT_INT, O(max_header_size), "16384",
	    1024, 1048576, 0, "Largest request header block in bytes." },
	{ "server", "max_connections", CT_INT, O(max_connections), "1024", 1,
	    1000000, 0,
	    "Open client connections per process, counted from accept (TLS handshakes and connections that never send a request included) until they close; a connection accepted above it is closed at once." },
	{ "server", "request_timeout", CT_INT, O(request_timeout), "30", 1,
	    3600, 0, "Seconds a request may take in total before 503." },
	{ "server", "idle_timeout", CT_INT, O(idle_timeout), "60", 1, 3600, 0,
	    "Seconds a connection may be idle (reading or writing)." },
	{ "server", "header_timeout", CT_INT, O(header_timeout), "10", 1, 3600,
	    0,
	    "Seconds from accept within which a connection must complete its TLS handshake and deliver its first request (head and body), else it is closed; a kept-alive connection's later requests get idle_timeout + header_timeout from the previous answer." },
	{ "server", "trusted_proxies", CT_STRING, O(trusted_proxies), NULL, 0,
	    0, 1,
	    "Comma-separated addresses and CIDRs of reverse proxies and load balancers: only a peer in this list has its X-Forwarded-For believed (the right-most address that is not itself a trusted proxy is the client); empty: the peer is the client." },
	{ "server", "public_url", CT_STRING, O(public_url), NULL, 0, 0, 1,
	    "The URL clients use, for links and WWW-Authenticate; default from the Host header." },
	{ "database", "connection", CT_STRING, O(db_connection),
	    "sqlite://" LOCALSTATEDIR
	    "/lib/keystone-k8s-auth/keystone-k8s-auth.db",
	    0, 0, 0,
	    "Database URL: sqlite:///ABSOLUTE/PATH (one machine), or mysql+pymysql://USER:PASS@HOST[:PORT]/DB (also mysql://) for MySQL/MariaDB or Galera shared by several replicas, with optional ?unix_socket=PATH, ?ssl_ca=PATH (TLS, server certificate verified) and ?charset=utf8mb4; USER and PASS are percent-decoded, any other parameter is refused, and the password is only ever logged masked." },
	{ "database", "timeout", CT_INT, O(db_timeout), "5", 1, 300, 0,
	    "Seconds a MySQL/MariaDB connect, read or write may take before the call fails (the connection is then reopened); SQLite ignores it." },
	{ "database", "refresh_interval", CT_INT, O(db_refresh_interval),
	    "1000", 50, 60000, 0,
	    "Milliseconds between two checks of the database's revision: when another replica has written, the in-memory snapshot that logins and token validations read is reloaded; also the pace of reconnection attempts' first back-off." },
	{ "database", "max_queue", CT_INT, O(db_max_queue), "256", 1, 100000, 0,
	    "Admin writes waiting for the database thread; a write beyond it is answered 503 database_unavailable at once." },
	{ "fernet_tokens", "key_repository", CT_STRING,
	    O(fernet_key_repository), "/etc/keystone/fernet-keys/", 0, 0, 1,
	    "Keystone's Fernet key repository (shared with Keystone)." },
	{ "fernet_tokens", "max_active_keys", CT_INT, O(fernet_max_active_keys),
	    "3", 2, 100, 1,
	    "Keys kept by fernet-rotate, as in keystone.conf." },
	{ "fernet_tokens", "reload_failure_grace", CT_INT,
	    O(fernet_reload_failure_grace), "60", 0, 86400, 1,
	    "Seconds the key repository may fail to reload (old keys in use) "
	    "before /readyz reports it as stale." },
	{ "credential", "key_repository", CT_STRING,
	    O(credential_key_repository),
	    SYSCONFDIR "/keystone-k8s-auth/credential-keys/", 0, 0, 0,
	    "Keys encrypting reviewer tokens at rest (credential-setup)." },
	{ "token", "expiration", CT_INT, O(token_expiration), "3600", 60,
	    604800, 1, "Longest lifetime of an issued token in seconds." },
	{ "token", "payload", CT_STRING, O(token_payload_name),
	    "project_scoped", 0, 0, 1,
	    "project_scoped (version 2: any Keystone validates it, roles from Keystone's role assignments, checked when a restriction is written) or restricted (version 11: only keystone-ng validates it, roles from the restriction)." },
	{ "token", "cap_to_jwt_expiry", CT_BOOL, O(token_cap_to_jwt_expiry),
	    "true", 0, 0, 1,
	    "Never let a token outlive the JWT it came from." },
	{ "auth", "methods", CT_STRING, O(auth_methods),
	    "external,password,token,oauth1,mapped,application_credential", 0,
	    0, 0, "Keystone's [auth] methods list, same order (bitmask)." },
	{ "auth", "method", CT_STRING, O(auth_method), "mapped", 0, 0, 0,
	    "Method stamped into issued tokens; must be in methods." },
	{ "k8s_auth", "connect_timeout", CT_INT, O(k8s_connect_timeout), "2", 1,
	    60, 1, "Seconds to connect to a cluster's API server." },
	{ "k8s_auth", "review_timeout", CT_INT, O(k8s_review_timeout), "5", 1,
	    120, 1, "Seconds a TokenReview may take in total (504 above)." },
	{ "k8s_auth", "clock_skew", CT_INT, O(k8s_clock_skew), "60", 0, 600, 1,
	    "Seconds of clock skew tolerated on exp, nbf and iat." },
	{ "k8s_auth", "local_sa_dir", CT_STRING, O(k8s_local_sa_dir),
	    "/var/run/secrets/kubernetes.io/serviceaccount", 0, 0, 1,
	    "Directory of this server's own service-account token and ca.crt." },
	{ "k8s_auth", "max_jwt_size", CT_INT, O(k8s_max_jwt_size), "16384", 256,
	    1048576, 1, "Largest accepted JWT in bytes." },
	{ "k8s_auth", "max_response_size", CT_INT, O(k8s_max_response_size),
	    "1048576", 4096, 67108864, 1,
	    "Largest TokenReview response body in bytes." },
	{ "k8s_auth", "max_concurrent_reviews", CT_INT,
	    O(k8s_max_concurrent_reviews), "256", 1, 100000, 0,
	    "TokenReviews in flight per worker (503 above); Keystone calls have their own [keystone] max_concurrent_calls." },
	{ "k8s_auth", "negative_cache_ttl", CT_INT, O(k8s_negative_cache_ttl),
	    "2", 0, 60, 1,
	    "Seconds a refused TokenReview (authenticated false) is remembered for the same JWT; 0: never." },
	{ "k8s_auth", "review_cache_size", CT_INT, O(k8s_review_cache_size),
	    "65536", 0, 10000000, 0,
	    "TokenReview results kept at most, process-wide (the least recently used goes first; under 1 KiB each); 0: no cache." },
	{ "k8s_auth", "max_reviews_per_instance", CT_INT,
	    O(k8s_max_reviews_per_instance), "64", 1, 100000, 1,
	    "TokenReviews in flight per instance, process-wide; more wait in a queue." },
	{ "k8s_auth", "review_queue_size", CT_INT, O(k8s_review_queue_size),
	    "1024", 0, 1000000, 1,
	    "TokenReviews waiting for a slot per instance; beyond it 503 cluster_unavailable with Retry-After." },
	{ "k8s_auth", "breaker_failures", CT_INT, O(k8s_breaker_failures), "5",
	    0, 1000, 1,
	    "Consecutive cluster errors (5xx, 429, timeout, connection) that open an instance's circuit breaker; 0: never opens." },
	{ "k8s_auth", "breaker_cooldown", CT_INT, O(k8s_breaker_cooldown), "10",
	    1, 3600, 1,
	    "Seconds an open breaker fails logins that need a review fast (503 with Retry-After) before one probe decides." },
	{ "k8s_auth", "jwks_refresh_interval", CT_INT,
	    O(k8s_jwks_refresh_interval), "10", 1, 3600, 1,
	    "Least seconds between two fetches of an instance's signing keys (an unknown kid or a failed fetch waits this long)." },
	{ "k8s_auth", "jwks_max_age", CT_INT, O(k8s_jwks_max_age), "3600", 10,
	    86400, 1,
	    "Seconds after which an instance's fetched signing keys are fetched again." },
	{ "k8s_auth", "allow_legacy_tokens", CT_BOOL,
	    O(k8s_allow_legacy_tokens), "false", 0, 0, 1,
	    "Accept JWTs without exp (legacy secret-based tokens)." },
	{ "k8s_auth", "allow_insecure_http", CT_BOOL,
	    O(k8s_allow_insecure_http), "false", 0, 0, 1,
	    "Allow http:// instance hosts (development only)." },
	{ "k8s_auth", "allowed_hosts", CT_STRING, O(k8s_allowed_hosts), NULL, 0,
	    0, 1,
	    "Comma-separated host globs and CIDRs a non-admin may point an instance at (checked on the host name when written and on the address connected to; behind [k8s_auth] proxy the host must match a glob or be an address in a CIDR); empty: any host but link-local." },
	{ "k8s_auth", "proxy", CT_STRING, O(k8s_proxy), NULL, 0, 0, 1,
	    "HTTP(S) proxy URL for TokenReviews; unset: no proxy (the proxy environment variables are ignored)." },
	{ "k8s_auth", "object_cache_ttl", CT_INT, O(k8s_object_cache_ttl), "30",
	    0, 3600, 1,
	    "Seconds a namespace (labels) or service account (annotations) read from a cluster at login is reused, per instance; 0: read it at every login that needs it." },
	{ "k8s_auth", "annotation_prefix", CT_STRING, O(k8s_annotation_prefix),
	    "keystone.openstack.org/", 0, 0, 1,
	    "Only service-account annotations whose key starts with this prefix reach login policies and the audit record (instances with service_account_annotations)." },
	{ "login", "failed_rate", CT_INT, O(login_failed_rate), "10", 0,
	    1000000, 1,
	    "Failed logins a client address earns back per second (token bucket); 0 turns the failed-login throttle off." },
	{ "login", "failed_burst", CT_INT, O(login_failed_burst), "50", 1,
	    1000000, 1,
	    "Failed logins a client address may make in a row before 429 too_many_requests (the bucket's size); IPv6 addresses count per /64." },
	{ "login", "throttle_entries", CT_INT, O(login_throttle_entries),
	    "16384", 64, 16777216, 0,
	    "Client addresses the failed-login throttle tracks at once (fixed memory, 40 bytes each); addresses with a full bucket take no room." },
	{ "policy", "dir", CT_STRING, O(policy_dir),
	    SYSCONFDIR "/keystone-k8s-auth/policy", 0, 0, 1,
	    "Directory of api.lua and login.lua; missing files fall back to the built-in defaults." },
	{ "policy", "lua_dir", CT_STRING, O(policy_lua_dir), NULL, 0, 0, 1,
	    "Extra directory searched by require (after the built-in lua/)." },
	{ "policy", "instruction_limit", CT_INT, O(policy_instruction_limit),
	    "1000000", 1000, 1000000000, 1,
	    "Lua VM instructions one policy call may run." },
	{ "policy", "memory_limit", CT_INT, O(policy_memory_limit), "16777216",
	    1048576, 1073741824, 1,
	    "Bytes one worker's Lua state may allocate." },
	{ "policy", "protected_roles", CT_STRING, O(policy_protected_roles),
	    "admin", 0, 0, 1,
	    "Comma-separated role names only an admin may put into a token restriction (deprecated: delegable_roles decides; kept as an extra denylist for one release)." },
	{ "policy", "delegable_roles", CT_STRING, O(policy_delegable_roles),
	    "member,reader,manager", 0, 0, 1,
	    "Comma-separated role names (compared case-insensitively) a non-admin may put into a token restriction; a role implying any other role is not delegable." },
	{ "keystone", "url", CT_STRING, O(keystone_url), NULL, 0, 0, 0,
	    "Keystone identity endpoint for validating admin callers." },
	{ "keystone", "ca_file", CT_STRING, O(keystone_ca_file), NULL, 0, 0, 0,
	    "CA bundle for Keystone; default the system store." },
	{ "keystone", "application_credential_id", CT_STRING,
	    O(keystone_app_cred_id), NULL, 0, 0, 1,
	    "This service's application credential id." },
	{ "keystone", "application_credential_secret_file", CT_STRING,
	    O(keystone_app_cred_secret_file), NULL, 0, 0, 1,
	    "File holding the application credential secret." },
	{ "keystone", "cache_ttl", CT_INT, O(keystone_cache_ttl), "30", 0,
	    86400, 0,
	    "Seconds a validated admin token is cached at most: a token "
	    "revoked in Keystone keeps working here this long." },
	{ "keystone", "revocation_interval", CT_INT,
	    O(keystone_revocation_interval), "10", 0, 3600, 0,
	    "Seconds between polls of Keystone's revocation events "
	    "(GET /v3/OS-REVOKE/events), which drop cached validations of "
	    "revoked tokens and users; 0: do not poll." },
	{ "keystone", "timeout", CT_INT, O(keystone_timeout), "10", 1, 300, 0,
	    "Seconds one call to Keystone may take in all (validating a caller's token, a restriction or user lookup); connecting is bounded by [k8s_auth] connect_timeout. Past it the caller gets 503 keystone_unavailable." },
	{ "keystone", "max_concurrent_calls", CT_INT,
	    O(keystone_max_concurrent_calls), "64", 1, 100000, 0,
	    "Keystone calls in flight per worker, in slots of their own (TokenReviews never take them)." },
	{ "keystone", "verify_user_enabled", CT_BOOL,
	    O(keystone_verify_user_enabled), "true", 0, 0, 1,
	    "Refuse logins whose restriction user is disabled in Keystone." },
	{ "bootstrap", "admin_token_file", CT_STRING, O(admin_token_file),
	    SYSCONFDIR "/keystone-k8s-auth/admin-token", 0, 0, 1,
	    "File holding the bootstrap admin token (mode 0600)." },
	{ "log", "level", CT_STRING, O(log_level_name), "info", 0, 0, 1,
	    "debug, info, warning or error." },
	{ "log", "format", CT_STRING, O(log_format), "text", 0, 0, 0,
	    "text or json (one JSON object per line)." },
	{ "log", "audit_file", CT_STRING, O(log_audit_file), NULL, 0, 0, 1,
	    "File for the JSON audit trail; default stderr." },
	{ "log", "flush_interval", CT_INT, O(log_flush_interval), "50", 0,
	    60000, 1,
	    "Milliseconds an access line or audit record waits in memory at most before it is written out with the others of that interval; 0 writes each at once (a write(2) per request). Warnings and errors are always written at once, after the lines queued before them. A SIGKILL or a crash loses what was queued in the last interval." },
	{ "log", "buffer_size", CT_INT, O(log_buffer_size), "32768", 1024,
	    16777216, 1,
	    "Bytes of queued access lines (and, apart, of audit records) written at once, before the flush interval is over." },
	{ "metrics", "enabled", CT_BOOL, O(metrics_enabled), "true", 0, 0, 1,
	    "Serve /metrics." },
	{ "metrics", "token_file", CT_STRING, O(metrics_token_file), NULL, 0, 0,
	    1,
	    "File holding the token a scraper sends as Authorization: Bearer "
	    "(mode 0600, 16 characters or more); unset: /metrics answers "
	    "loopback clients only." },
};
#undef O
#define CONFIG_NOPTIONS (sizeof config_options / sizeof *config_options)

/* State while inih walks one file: collects every error. */
struct config_parse {
	struct config *cfg;
	char *errors;
};

/* The default configuration file path. */
const char *
config_default_path(void)
{
	return (SYSCONFDIR "/keystone-k8s-auth/keystone-k8s-auth.conf");
}

static void config_add_error(char **errors, const char *fmt, ...)
    printflike(2, 3);
/* Append one line to an error list. */
static void
config_add_error(char **errors, const char *fmt, ...)
{
	va_list ap;
	char *line, *joined;

	va_start(ap, fmt);
	xvasprintf(&line, fmt, ap);
	va_end(ap);
	if (*errors == NULL) {
		*errors = line;
		return;
	}
	xasprintf(&joined, "%s\n%s", *errors, line);
	free(*errors);
	free(line);
	*errors = joined;
}

/* Find an option by section and name. */
static const struct config_option *
config_find(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		if (strcmp(config_options[i].section, section) == 0 &&
		    strcmp(config_options[i].name, name) == 0)
			return (&config_options[i]);
	}
	return (NULL);
}

/* Parse a boolean the way oslo.config does. */
static int
config_parse_bool(const char *v, int *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return (0);
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return (0);
		}
	}
	return (-1);
}

/* Store one value into the structure, checking its type and bounds. */
static int
config_store(struct config *cfg, const struct config_option *o,
    const char *value, char **cause)
{
	char *p = (char *)cfg + o->offset;
	long l;
	int b;

	switch (o->type) {
	case CT_STRING:
		free(*(char **)p);
		*(char **)p =
		    (value == NULL || *value == '\0') ? NULL : xstrdup(value);
		return (0);
	case CT_INT:
		if (util_parse_long(value, o->min, o->max, &l) != 0) {
			xasprintf(cause,
			    "[%s] %s: \"%s\" is not a whole number from %ld to %ld",
			    o->section, o->name, value, o->min, o->max);
			return (-1);
		}
		*(long *)p = l;
		return (0);
	case CT_BOOL:
		if (config_parse_bool(value, &b) != 0) {
			xasprintf(cause,
			    "[%s] %s: \"%s\" is not a boolean (true/false)",
			    o->section, o->name, value);
			return (-1);
		}
		*(int *)p = b;
		return (0);
	}
	return (-1);
}

/* Set one option by section and name; used by the parser and tests. */
int
config_set(struct config *cfg, const char *section, const char *name,
    const char *value, char **cause)
{
	const struct config_option *o;

	if (strcmp(section, "metrics") == 0 &&
	    strcmp(name, "require_auth") == 0) {
		xasprintf(cause,
		    "[metrics] require_auth: removed; /metrics takes a dedicated token ([metrics] token_file) or answers loopback clients only");
		return (-1);
	}
	if ((o = config_find(section, name)) == NULL) {
		xasprintf(cause, "[%s] %s: unknown option", section, name);
		return (-1);
	}
	return (config_store(cfg, o, value, cause));
}

/* A new configuration holding every default. */
struct config *
config_new(void)
{
	struct config *cfg;
	size_t i;
	char *cause = NULL;

	cfg = xcalloc(1, sizeof *cfg);
	cfg->references = 1;
	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		if (config_options[i].def == NULL)
			continue;
		if (config_store(cfg, &config_options[i], config_options[i].def,
			&cause) != 0)
			fatalx("bad built-in default: %s", cause);
	}
	/* Sets the enums; https without a certificate is caught at load. */
	config_validate(cfg, &cause);
	free(cause);
	return (cfg);
}

/* Take a reference on a configuration (any thread). */
struct config *
config_ref(struct config *cfg)
{
	__atomic_add_fetch(&cfg->references, 1, __ATOMIC_RELAXED);
	return (cfg);
}

/* Drop a reference; the last one frees it (any thread). */
void
config_unref(struct config *cfg)
{
	if (cfg != NULL &&
	    __atomic_sub_fetch(&cfg->references, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(cfg);
}

/*
 * Options that SIGHUP does not reload keep their running values in a
 * freshly loaded configuration; a changed one is logged.
 */
void
config_keep_static(struct config *cfg, const struct config *old)
{
	size_t i;

	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];
		char *np = (char *)cfg + o->offset;
		const char *op = (const char *)old + o->offset;
		int same;

		if (o->reloadable)
			continue;
		if (o->type == CT_STRING) {
			const char *a = *(char **)np, *b = *(char *const *)op;

			same = (a == NULL && b == NULL) ||
			    (a != NULL && b != NULL && strcmp(a, b) == 0);
			if (!same) {
				free(*(char **)np);
				*(char **)np = b != NULL ? xstrdup(b) : NULL;
			}
		} else if (o->type == CT_INT) {
			same = *(long *)np == *(const long *)op;
			*(long *)np = *(const long *)op;
		} else {
			same = *(int *)np == *(const int *)op;
			*(int *)np = *(const int *)op;
		}
		if (!same)
			log_warn("reload: [%s] %s changed; it takes effect after a restart",
			    o->section, o->name);
	}
}

/* Free a configuration and every string it owns. */
void
config_free(struct config *cfg)
{
	size_t i;

	if (cfg == NULL)
		return;
	freezero_str(cfg->admin_token);
	freezero_str(cfg->metrics_token);
	throttle_cidrs_free(cfg->trusted_proxy_list);
	/* wiped: [database] connection holds the database password */
	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		if (config_options[i].type == CT_STRING)
			freezero_str(
			    *(char **)((char *)cfg + config_options[i].offset));
	}
	free(cfg);
}

/* inih callback: one name = value line. */
static int
config_ini_cb(void *arg, const char *section, const char *name,
    const char *value)
{
	struct config_parse *cp = arg;
	char *cause = NULL;

	if (*section == '\0') {
		config_add_error(&cp->errors, "%s: option outside any section",
		    name);
		return (1);
	}
	if (config_set(cp->cfg, section, name, value, &cause) != 0) {
		config_add_error(&cp->errors, "%s", cause);
		free(cause);
	}
	return (1);
}

/* Does a comma-separated list contain an item? */
static int
config_list_has(const char *list, const char *item)
{
	const char *p = list, *end;
	size_t n = strlen(item);

	while (*p != '\0') {
		while (*p == ' ' || *p == ',')
			p++;
		end = p;
		while (*end != '\0' && *end != ',')
			end++;
		while (end > p && end[-1] == ' ')
			end--;
		if ((size_t)(end - p) == n && strncmp(p, item, n) == 0)
			return (1);
		p = end;
		while (*p != '\0' && *p != ',')
			p++;
	}
	return (0);
}

/* Check one listen URL's form: scheme://host:port. */
static int
config_check_listen_url(const char *url)
{
	const char *rest, *colon;
	long port;

	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	else
		return (-1);
	if ((colon = strrchr(rest, ':')) == NULL || colon == rest)
		return (-1);
	if (*rest == '[' && colon[-1] != ']')
		return (-1);
	return (util_parse_long(colon + 1, 1, 65535, &port));
}

/* Check the listen list; reports the first bad URL. */
static void
config_check_listen(struct config *cfg, char **errors)
{
	char *copy, *p, *url;
	int https = 0;

	cfg->tls_missing = 0;
	copy = xstrdup(cfg->listen);
	p = copy;
	while ((url = strsep(&p, ",")) != NULL) {
		url = util_trim(url);
		if (*url == '\0')
			continue;
		if (config_check_listen_url(url) != 0)
			config_add_error(errors,
			    "[server] listen: \"%s\" is not http(s)://HOST:PORT",
			    url);
		if (strncmp(url, "https://", 8) == 0)
			https = 1;
	}
	free(copy);
	if (https && (cfg->tls_cert == NULL || cfg->tls_key == NULL))
		cfg->tls_missing = 1;
}

/*
 * What only `serve` (and config-check) need: an https:// listener needs a
 * certificate and key.  Other subcommands work without them.
 */
int
config_validate_serve(const struct config *cfg, char **cause)
{
	if (cfg->tls_missing) {
		xasprintf(cause,
		    "[server] tls_cert and tls_key: required by an https:// listen URL");
		return (-1);
	}
	return (0);
}

/* [k8s_auth] allowed_hosts must parse (outbound.c). */
static void
config_check_allowed_hosts(const struct config *cfg, char **errors)
{
	struct outbound_rules *rules;
	char *why = NULL;

	if ((rules = outbound_rules_parse(cfg->k8s_allowed_hosts, &why)) !=
	    NULL) {
		outbound_rules_free(rules);
		return;
	}
	config_add_error(errors, "[k8s_auth] %s", why);
	free(why);
}

/* [server] trusted_proxies must parse; keep the parsed list. */
static void
config_check_trusted_proxies(struct config *cfg, char **errors)
{
	char *why = NULL;

	throttle_cidrs_free(cfg->trusted_proxy_list);
	cfg->trusted_proxy_list =
	    throttle_cidrs_parse(cfg->trusted_proxies, &why);
	if (cfg->trusted_proxy_list != NULL)
		return;
	config_add_error(errors, "[server] trusted_proxies: %s", why);
	free(why);
}

/*
 * [database] connection must parse (db_url.c says why not, with the
 * password masked) and be a URL, not a bare path; the timeout is applied
 * to every connection this process opens.
 */
static void
config_check_db(struct config *cfg, char **errors)
{
	struct db_url u;
	char *why = NULL;

	if (cfg->db_connection == NULL ||
	    strstr(cfg->db_connection, "://") == NULL) {
		config_add_error(errors,
		    "[database] connection: must be sqlite:///ABSOLUTE/PATH or mysql+pymysql://USER:PASS@HOST[:PORT]/DB");
		return;
	}
	if (db_url_parse(cfg->db_connection, &u, &why) != 0) {
		config_add_error(errors, "%s", why);
		free(why);
		return;
	}
	db_url_free(&u);
	db_set_timeout((int)cfg->db_timeout);
}

/* Cross-option checks that one table row cannot express. */
int
config_validate(struct config *cfg, char **cause)
{
	char *errors = NULL;

	if (cfg->listen == NULL)
		config_add_error(&errors, "[server] listen: required");
	else
		config_check_listen(cfg, &errors);
	if (cfg->token_payload_name == NULL)
		config_add_error(&errors, "[token] payload: required");
	else if (strcmp(cfg->token_payload_name, "restricted") == 0)
		cfg->token_payload = TOKEN_PAYLOAD_RESTRICTED;
	else if (strcmp(cfg->token_payload_name, "project_scoped") == 0)
		cfg->token_payload = TOKEN_PAYLOAD_PROJECT_SCOPED;
	else
		config_add_error(&errors,
		    "[token] payload: \"%s\" is not restricted or project_scoped",
		    cfg->token_payload_name);
	if (cfg->auth_methods == NULL || cfg->auth_method == NULL)
		config_add_error(&errors,
		    "[auth] methods and method: required");
	else if (!config_list_has(cfg->auth_methods, cfg->auth_method))
		config_add_error(&errors,
		    "[auth] method: \"%s\" is not in [auth] methods",
		    cfg->auth_method);
	if (cfg->log_level_name == NULL ||
	    log_level_parse(cfg->log_level_name, &cfg->log_level) != 0)
		config_add_error(&errors,
		    "[log] level: must be debug, info, warning or error");
	if (cfg->log_format == NULL ||
	    (strcmp(cfg->log_format, "text") != 0 &&
		strcmp(cfg->log_format, "json") != 0))
		config_add_error(&errors, "[log] format: must be text or json");
	config_check_db(cfg, &errors);
	if (cfg->public_url != NULL &&
	    strncmp(cfg->public_url, "https://", 8) != 0 &&
	    strncmp(cfg->public_url, "http://", 7) != 0)
		config_add_error(&errors,
		    "[server] public_url: must be an http(s):// URL");
	if (cfg->keystone_url != NULL &&
	    strncmp(cfg->keystone_url, "https://", 8) != 0 &&
	    strncmp(cfg->keystone_url, "http://", 7) != 0)
		config_add_error(&errors,
		    "[keystone] url: must be an http(s):// URL");
	config_check_allowed_hosts(cfg, &errors);
	config_check_trusted_proxies(cfg, &errors);
	if (errors != NULL) {
		*cause = errors;
		return (-1);
	}
	return (0);
}

/*
 * Load a file over the defaults already in cfg.  Every problem is
 * reported (one per line in *cause), not just the first.
 */
int
config_load(struct config *cfg, const char *path, char **cause)
{
	struct config_parse cp = { cfg, NULL };
	char *text = NULL, *vcause = NULL, *readcause = NULL;
	int line;

	if (util_read_file(path, 1024 * 1024, &text, NULL, &readcause) != 0) {
		*cause = readcause;
		return (-1);
	}
	line = ini_parse_string(text, config_ini_cb, &cp);
	free(text);
	if (line > 0)
		config_add_error(&cp.errors, "%s:%d: syntax error", path, line);
	if (config_validate(cfg, &vcause) != 0) {
		config_add_error(&cp.errors, "%s", vcause);
		free(vcause);
	}
	/* A file that is wrong anyway gets the serve-only problems too. */
	if (cp.errors != NULL && config_validate_serve(cfg, &vcause) != 0) {
		config_add_error(&cp.errors, "%s", vcause);
		free(vcause);
	}
	if (cp.errors != NULL) {
		*cause = cp.errors;
		return (-1);
	}
	return (0);
}

/* One string option; the database password is shown masked. */
static void
config_dump_string(FILE *out, const struct config_option *o, const char *v)
{
	char *masked;

	if (o->offset != offsetof(struct config, db_connection)) {
		fprintf(out, "%s = %s\n", o->name, v);
		return;
	}
	masked = db_url_masked(v);
	fprintf(out, "%s = %s\n", o->name, masked);
	free(masked);
}

/* Print the effective configuration (no secrets live in it). */
void
config_dump(const struct config *cfg, FILE *out)
{
	const char *last = "";
	const char *p;
	size_t i;

	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];

		p = (const char *)cfg + o->offset;
		if (strcmp(last, o->section) != 0)
			fprintf(out, "%s[%s]\n", i == 0 ? "" : "\n",
			    o->section);
		last = o->section;
		switch (o->type) {
		case CT_STRING:
			if (*(char *const *)p != NULL)
				config_dump_string(out, o, *(char *const *)p);
			else
				fprintf(out, "# %s =\n", o->name);
			break;
		case CT_INT:
			fprintf(out, "%s = %ld\n", o->name, *(const long *)p);
			break;
		case CT_BOOL:
			fprintf(out, "%s = %s\n", o->name,
			    *(const int *)p ? "true" : "false");
			break;
		}
	}
}

/*
 * A default as the docs show it: the configured directories become
 * ${sysconfdir} and ${localstatedir}, so the docs do not depend on how
 * this binary was configured.  NULL for no default.
 */
static char *
config_doc_default(const char *def)
{
	static const char *const dirs[][2] = {
		{ SYSCONFDIR "/", "${sysconfdir}/" },
		{ LOCALSTATEDIR "/", "${localstatedir}/" },
	};
	const char *at;
	char *out;
	size_t i;

	if (def == NULL)
		return (NULL);
	for (i = 0; i < sizeof dirs / sizeof *dirs; i++) {
		if ((at = strstr(def, dirs[i][0])) != NULL) {
			xasprintf(&out, "%.*s%s%s", (int)(at - def), def,
			    dirs[i][1], at + strlen(dirs[i][0]));
			return (out);
		}
	}
	return (xstrdup(def));
}

/* Write the options table as Markdown (docs/configuration.md). */
void
config_write_docs(FILE *out)
{
	static const char *const types[] = { "string", "integer", "boolean" };
	const char *last = "";
	char *def;
	size_t i;

	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];

		if (strcmp(last, o->section) != 0) {
			fprintf(out, "\n### [%s]\n\n", o->section);
			fprintf(out,
			    "| option | type | default | range | reload | meaning |\n|---|---|---|---|---|---|\n");
		}
		last = o->section;
		def = config_doc_default(o->def);
		fprintf(out, "| `%s` | %s | %s%s%s | ", o->name, types[o->type],
		    def ? "`" : "", def ? def : "(unset)", def ? "`" : "");
		free(def);
		if (o->type == CT_INT)
			fprintf(out, "%ld..%ld", o->min, o->max);
		fprintf(out, " | %s | %s |\n", o->reloadable ? "yes" : "no",
		    o->help);
	}
}

/*
 * Write text as "# " comment lines of at most 78 columns, broken at
 * spaces (a word longer than a line stands alone).  Short lines also keep
 * every line of the file within what an INI parser reads as one line
 * (inih: 200 bytes; the rest of a longer comment would be parsed as an
 * option).
 */
static void
config_write_comment(FILE *out, const char *text)
{
	const char *p = text, *sp;
	size_t col = 0, w;

	while (*p != '\0') {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		sp = strchr(p, ' ');
		w = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (col > 0 && col + 1 + w > 76) {
			fputc('\n', out);
			col = 0;
		}
		fprintf(out, "%s%.*s", col == 0 ? "# " : " ", (int)w, p);
		col += w + 1;
		p += w;
	}
	fputc('\n', out);
}

/* Write a commented configuration file holding every default. */
void
config_write_sample(FILE *out)
{
	const char *last = "";
	char *text, range[64];
	size_t i;

	fprintf(out,
	    "# %s configuration (keystone.conf style).\n# Every option is shown with its default, commented out.\n# Check a file with: %s config-check --config FILE\n",
	    K8SAUTH_NAME, K8SAUTH_NAME);
	for (i = 0; i < CONFIG_NOPTIONS; i++) {
		const struct config_option *o = &config_options[i];

		if (strcmp(last, o->section) != 0)
			fprintf(out, "\n[%s]\n", o->section);
		last = o->section;
		range[0] = '\0';
		if (o->type == CT_INT)
			snprintf(range, sizeof range, " (%ld..%ld)", o->min,
			    o->max);
		xasprintf(&text, "%s%s%s", o->help, range,
		    o->reloadable ? " Reloaded by SIGHUP." : "");
		fputc('\n', out);
		config_write_comment(out, text);
		free(text);
		fprintf(out, "#%s =%s%s\n", o->name, o->def != NULL ? " " : "",
		    o->def != NULL ? o->def : "");
	}
}

/*
 * The [database] connection string for db_open (allocated), once checked;
 * kept so that callers need not know which engine it names.
 */
char *
config_db_path(const struct config *cfg, char **cause)
{
	struct db_url u;

	if (db_url_parse(cfg->db_connection, &u, cause) != 0)
		return (NULL);
	db_url_free(&u);
	return (xstrdup(cfg->db_connection));
}
