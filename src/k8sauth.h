/*
 * keystone-k8s-auth: the index header.
 *
 * Shared types and every cross-file prototype, grouped under one banner per
 * source file (tmux style).  A type used by a single file stays in that file.
 * Read this header top to bottom to find where things live:
 *
 *   main.c          argv, subcommands, startup order
 *   log.c, batch.c  log lines; access lines and audit records in batches
 *   server.c        process-wide state, signals, reload, worker start/stop
 *   worker.c        one thread: event_base, evhttp, its mailbox
 *   tls.c           SSL_CTX build/reload and the evhttp bufferevent callback
 *   http.c          routing table, limits, request context, replies
 *   auth.c          who is calling (X-Auth-Token) and the authorization gate
 *   api_*.c         handlers, one file per resource: HTTP handling only
 *   instance.c      the stored entities, one file each: the struct's
 *   role.c            lifetime, its JSON form and field rules (no I/O,
 *   restriction.c     no database); handlers and the login path use them
 *   store_*.c       typed data access over db.c
 *   snapshot.c      the immutable in-memory copy logins and admin reads use
 *   dbthread.c      the one thread owning the database: writes, refresh
 *   fernet.c        Keystone Fernet tokens (where a token is minted)
 *   k8s_review.c    the TokenReview call (login issue)
 *   k8s_object.c    namespaces and service accounts read at login
 *   k8s_selector.c  label selectors (a role's bound_namespace_selector)
 */
#ifndef K8SAUTH_H
#define K8SAUTH_H

#include <sys/types.h>

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <cjson/cJSON.h>

#ifndef __dead
#define __dead __attribute__((__noreturn__))
#endif
#define printflike(a, b) __attribute__((format(printf, a, b)))

#include "reason.h" /* reason.c: every reason code, its status */

#define K8SAUTH_NAME "keystone-k8s-auth"
#ifndef K8SAUTH_VERSION
#define K8SAUTH_VERSION "0.1.0"
#endif

#define ID_LEN        32 /* Keystone "simple" UUID: 32 lowercase hex */
#define TIMESTAMP_LEN 27 /* 2026-11-28T13:00:00.000000Z */

struct config;
struct worker;
struct server;
struct request;
struct db;
struct event_base;
struct evhttp;
struct evhttp_request;
struct evbuffer;

/* xmalloc.c */
void *xmalloc(size_t);
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xstrdup_or_null(const char *);
char *xstrndup(const char *, size_t);
int xasprintf(char **, const char *, ...) printflike(2, 3);
int xvasprintf(char **, const char *, va_list) printflike(2, 0);
void freezero_str(char *);

/* batch.c: lines written out in batches by a flusher thread */
struct batch {
	const char *name;
	int fd;
	int flush_ms;     /* longest a line waits; 0: written at once */
	size_t max_bytes; /* written at once from this size */
	void (*lost_cb)(const char *, size_t, int); /* name, bytes, errno */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	char *buf;
	size_t len, cap;
	int flusher; /* 0: not started, 1: running, -1: none */
	int registered;
	struct batch *next; /* flushed at exit */
};
#define BATCH_INITIALIZER(name, fd, ms, bytes, cb)                            \
	{                                                                     \
		(name), (fd), (ms), (bytes), (cb), PTHREAD_MUTEX_INITIALIZER, \
		    PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, 0, NULL          \
	}
#define BATCH_FLUSH_MS 50         /* [log] flush_interval's default */
#define BATCH_SIZE     (32 << 10) /* [log] buffer_size's default */
void batch_add(struct batch *, const char *, size_t);
void batch_write(struct batch *, const char *, size_t);
void batch_flush(struct batch *);
int batch_set_fd(struct batch *, int);
void batch_set_limits(struct batch *, int, size_t);
size_t batch_pending(struct batch *);

/* log.c */
void log_access(const char *, ...) printflike(1, 2);
void log_set_batching(int, size_t);
void log_queue_raw(const char *, size_t);
enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERR };
void log_open(enum log_level, int json);
void log_set_level(enum log_level);
enum log_level log_get_level(void);
int log_level_parse(const char *, enum log_level *);
void log_debug(const char *, ...) printflike(1, 2);
void log_info(const char *, ...) printflike(1, 2);
void log_warn(const char *, ...) printflike(1, 2);
void log_err(const char *, ...) printflike(1, 2);
void log_msg(enum log_level, const char *, ...) printflike(2, 3);
void log_vmsg(enum log_level, const char *, va_list) printflike(2, 0);
__dead void fatal(const char *, ...) printflike(1, 2);
__dead void fatalx(const char *, ...) printflike(1, 2);
char *log_escape(const char *, size_t);
void log_secret_id(const char *, char[9]);
int log_journal_match(const char *, int);
const char *log_prefix(enum log_level);
char *log_format(enum log_level, int, int, const char *, const char *);

/* notify.c -- the sd_notify protocol (systemd Type=notify) */
int notify_send(const char *);

/* embed.c -- generated from lua/ and policy/ by src/build/embed.sh */
struct embed_file {
	const char *name;
	const unsigned char *data;
	size_t len;
};
extern const struct embed_file embed_files[];
extern const size_t embed_nfiles;
const struct embed_file *embed_find(const char *);

/* util.c */
void util_random_bytes(void *, size_t);
void util_new_id(char[ID_LEN + 1]);
int util_is_id(const char *);
void util_timestamp(char[TIMESTAMP_LEN + 1]);
void util_format_time(double, char[TIMESTAMP_LEN + 1]);
double util_now(void);
uint64_t util_monotonic_us(void);
int util_ct_equal(const void *, size_t, const void *, size_t);
int util_parse_long(const char *, long, long, long *);
int util_read_file(const char *, size_t, char **, size_t *, char **);
int util_write_file_atomic(const char *, const void *, size_t, mode_t, char **);
int util_mkdir_p(const char *, mode_t);
char *util_b64url_encode(const void *, size_t);
int util_b64url_decode(const char *, size_t, unsigned char **, size_t *);
size_t util_b64url_span(const char *, size_t);
void util_sha256(const void *, size_t, unsigned char[32]);
void util_hex(const unsigned char *, size_t, char *);
void util_sha256_hex(const void *, size_t, char[65]);
struct evp_md_st; /* OpenSSL's EVP_MD */
const struct evp_md_st *util_sha256_md(void);
char *util_trim(char *);
/* A list of strings (bound names, groups, audiences, globs). */
struct strlist {
	char **v;
	size_t n;
};
void strlist_free(struct strlist *);
void strlist_copy(struct strlist *, const struct strlist *);

/*
 * instance.c, role.c, restriction.c -- the stored entities: each file owns
 * its struct's lifetime, its API form (_json) and its field rules (_apply);
 * no I/O, no database.  The store reads and writes them, the handlers and
 * the login path use them.
 */

/* instance.c -- an instance (one cluster): lifetime, JSON form, rules */
struct instance {
	char id[ID_LEN + 1];
	char *domain_id;
	char *name; /* NULL when unset */
	char *host;
	char *ca_cert;      /* NULL when unset */
	char *reviewer_jwt; /* plaintext, only from _get */
	int reviewer_jwt_set;
	int disable_local_ca_jwt;
	int enabled;
	char created_at[TIMESTAMP_LEN + 1];
	char updated_at[TIMESTAMP_LEN + 1];
	int host_admin; /* host set by an admin: no allowed_hosts check */
	int service_account_annotations; /* login policies may see them */
	int jwt_signature_skip; /* jwt_signature "skip" (default "verify") */
	char *jwks;             /* JWKS JSON text, NULL: discover */
	char *issuer;           /* expected iss, NULL: discovery's or any */
	long review_cache_ttl;  /* seconds; 0: no review cache */
};
void instance_free(struct instance *);
struct instance *instance_copy(const struct instance *);
cJSON *instance_json(const struct instance *);
int instance_apply(const struct config *, const cJSON *, struct instance *,
    char **);

/* role.c -- a role (bounds mapped to a restriction): lifetime, JSON, rules */
struct role {
	char id[ID_LEN + 1];
	char auth_instance_id[ID_LEN + 1];
	char *domain_id;
	char *name;
	int enabled;
	struct strlist bound_sa_names;
	struct strlist bound_sa_namespaces;
	char *bound_audience;            /* NULL when unset */
	struct strlist *bound_pod_names; /* NULL when unset */
	long token_ttl;                  /* 0 when unset */
	char *bound_namespace_selector;  /* checked JSON, NULL when unset */
	char *token_restriction_id;
	char created_at[TIMESTAMP_LEN + 1];
	char updated_at[TIMESTAMP_LEN + 1];
};
void role_free(struct role *);
struct role *role_copy(const struct role *);
cJSON *role_json(const struct role *);
int role_apply(const struct config *, const cJSON *, struct role *, char **);

/* restriction.c -- a token restriction: lifetime, JSON form, rules */
struct restriction_role {
	char *id;
	char *name; /* NULL when unknown */
};
struct restriction {
	char id[ID_LEN + 1];
	char *domain_id;
	char *user_id;    /* NULL when unset */
	char *project_id; /* NULL when unset */
	struct restriction_role *roles;
	size_t nroles;
	int allow_renew;
	int allow_rescope;
	char created_at[TIMESTAMP_LEN + 1];
	char updated_at[TIMESTAMP_LEN + 1];
};
/* A validation failure: the 400 reason and its message. */
struct restriction_err {
	enum reason reason;
	char *cause;
};
void restriction_free(struct restriction *);
struct restriction *restriction_copy(const struct restriction *);
cJSON *restriction_json(const struct restriction *);
int restriction_apply(const cJSON *, struct restriction *,
    struct restriction_err *);

/* config.c */
enum token_payload { TOKEN_PAYLOAD_RESTRICTED, TOKEN_PAYLOAD_PROJECT_SCOPED };
struct config {
	/* [server] */
	char *listen;
	char *tls_cert;
	char *tls_key;
	long workers;
	long max_body_size;
	long max_header_size;
	long max_connections;
	long request_timeout;
	long idle_timeout;
	long header_timeout;
	char *trusted_proxies;
	char *public_url;
	/* [login] */
	long login_failed_rate;
	long login_failed_burst;
	long login_throttle_entries;
	/* [database] */
	char *db_connection;
	long db_timeout;
	long db_refresh_interval; /* milliseconds */
	long db_max_queue;
	/* [fernet_tokens] */
	char *fernet_key_repository;
	long fernet_max_active_keys;
	long fernet_reload_failure_grace;
	/* [credential] */
	char *credential_key_repository;
	/* [token] */
	long token_expiration;
	char *token_payload_name;
	enum token_payload token_payload;
	int token_cap_to_jwt_expiry;
	/* [auth] */
	char *auth_methods;
	char *auth_method;
	/* [k8s_auth] */
	long k8s_connect_timeout;
	long k8s_review_timeout;
	long k8s_clock_skew;
	char *k8s_local_sa_dir;
	long k8s_max_jwt_size;
	long k8s_max_response_size;
	int k8s_allow_legacy_tokens;
	int k8s_allow_insecure_http;
	long k8s_max_concurrent_reviews;
	long k8s_jwks_refresh_interval;
	long k8s_jwks_max_age;
	long k8s_negative_cache_ttl;
	long k8s_review_cache_size;
	long k8s_max_reviews_per_instance;
	long k8s_review_queue_size;
	long k8s_breaker_failures;
	long k8s_breaker_cooldown;
	char *k8s_allowed_hosts;
	char *k8s_proxy;
	long k8s_object_cache_ttl;
	char *k8s_annotation_prefix;
	/* [policy] */
	char *policy_dir;
	char *policy_lua_dir;
	long policy_instruction_limit;
	long policy_memory_limit;
	char *policy_protected_roles;
	char *policy_delegable_roles;
	/* [keystone] */
	char *keystone_url;
	char *keystone_ca_file;
	char *keystone_app_cred_id;
	char *keystone_app_cred_secret_file;
	long keystone_cache_ttl;
	long keystone_revocation_interval;
	long keystone_timeout;
	long keystone_max_concurrent_calls;
	int keystone_verify_user_enabled;
	/* [bootstrap] */
	char *admin_token_file;
	/* [log] */
	char *log_level_name;
	enum log_level log_level;
	char *log_format;
	char *log_audit_file;
	long log_flush_interval; /* ms */
	long log_buffer_size;
	/* [metrics] */
	int metrics_enabled;
	char *metrics_token_file;
	/* derived by config_validate */
	int tls_missing;
	struct throttle_cidrs *trusted_proxy_list; /* [server] trusted_proxies */
	/* loaded by serve from [bootstrap] admin_token_file */
	char *admin_token;
	/* loaded by serve from [metrics] token_file (NULL: loopback only) */
	char *metrics_token;
	int references; /* config_ref / config_unref */
};
struct config *config_new(void);
void config_free(struct config *);
struct config *config_ref(struct config *);
void config_unref(struct config *);
void config_keep_static(struct config *, const struct config *);
int config_load(struct config *, const char *, char **);
int config_set(struct config *, const char *, const char *, const char *,
    char **);
int config_validate(struct config *, char **);
int config_validate_serve(const struct config *, char **);
void config_write_docs(FILE *);
void config_write_sample(FILE *);
void config_dump(const struct config *, FILE *);
char *config_db_path(const struct config *, char **);
const char *config_default_path(void);

/*
 * db.c, db_sqlite.c, db_mysql.c -- one database connection, owned by one
 * thread, behind an engine interface (DESIGN.md "Storage").  db_open takes
 * the [database] connection string: sqlite:///ABSOLUTE/PATH (or a bare
 * absolute path), mysql://USER:PASS@HOST[:PORT]/DB[?...] or
 * mysql+pymysql://... (keystone.conf's spelling).
 *
 * Failures come back as STORE_* classes.  STORE_UNAVAILABLE means the
 * server cannot be reached: the struct db is then dead (every later call
 * fails the same way, prepared statements do not survive a reconnect), and
 * the caller closes it and opens a new one with back-off.  STORE_RETRY (a
 * deadlock, a lock wait timeout or a Galera certification conflict) means
 * the transaction was rolled back and may be run again (store_run).
 */
#define DB_TIMEOUT_DEFAULT 5 /* seconds: connect, read and write */
enum db_kind { DB_SQLITE, DB_MYSQL };
struct db_url {
	enum db_kind kind;
	char *path; /* sqlite */
	char *user, *password, *host, *database;
	unsigned int port; /* 0: the default */
	char *unix_socket, *ssl_ca, *charset;
};
int db_url_parse(const char *, struct db_url *, char **);
void db_url_free(struct db_url *);
char *db_url_masked(const char *);
void db_url_wipe_password(char *);
void db_set_timeout(int);
struct db *db_open(const char *, char **);
void db_close(struct db *);
enum db_kind db_kind(struct db *);
const char *db_name(struct db *);
int db_dead(struct db *);
int db_migrate(struct db *, char **);
int db_schema_version(struct db *);
int db_schema_latest(void);
int db_exec(struct db *, const char *, char **);
int db_begin(struct db *);
int db_depth(struct db *);
int db_commit(struct db *);
void db_rollback(struct db *);
void *db_handle(struct db *); /* SQLite: its sqlite3 * (tests only) */
/*
 * The per-connection statement cache: (id, SQL) pairs, prepared lazily and
 * kept for the life of the connection.  Every use ends with db_stmt_done
 * (reset + clear bindings).  Column orders are fixed by STORE_*_COLUMNS.
 */
#define STORE_INSTANCE_COLUMNS                                          \
	"id, domain_id, name, host, ca_cert, "                          \
	"reviewer_jwt_enc, disable_local_ca_jwt, enabled, created_at, " \
	"updated_at, host_admin, service_account_annotations, jwt_signature, jwks, issuer, review_cache_ttl"
#define STORE_ROLE_COLUMNS                                               \
	"id, auth_instance_id, domain_id, name, "                        \
	"enabled, bound_sa_names, bound_sa_namespaces, bound_audience, " \
	"bound_pod_names, token_ttl, token_restriction_id, created_at, " \
	"updated_at, bound_namespace_selector"
#define STORE_RESTRICTION_COLUMNS              \
	"id, domain_id, user_id, project_id, " \
	"allow_renew, allow_rescope, created_at, updated_at"
#define DB_STATEMENTS(X)                                                               \
	X(DB_INSTANCE_INSERT,                                                          \
	    "INSERT INTO instances (" STORE_INSTANCE_COLUMNS ") VALUES "               \
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)") \
	X(DB_INSTANCE_GET,                                                             \
	    "SELECT " STORE_INSTANCE_COLUMNS " FROM instances WHERE id = ?1")          \
	X(DB_INSTANCE_UPDATE,                                                          \
	    "UPDATE instances SET domain_id = ?2, "                                    \
	    "name = ?3, host = ?4, ca_cert = ?5, reviewer_jwt_enc = ?6, "              \
	    "disable_local_ca_jwt = ?7, enabled = ?8, updated_at = ?10, "              \
	    "host_admin = ?11, service_account_annotations = ?12, "                    \
	    "jwt_signature = ?13, jwks = ?14, issuer = ?15, "                          \
	    "review_cache_ttl = ?16 "                                                  \
	    "WHERE id = ?1")                                                           \
	X(DB_INSTANCE_DELETE, "DELETE FROM instances WHERE id = ?1")                   \
	X(DB_ROLE_INSERT,                                                              \
	    "INSERT INTO roles (" STORE_ROLE_COLUMNS                                   \
	    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, "                 \
	    "?12, ?13, ?14)")                                                          \
	X(DB_ROLE_GET,                                                                 \
	    "SELECT " STORE_ROLE_COLUMNS " FROM roles WHERE id = ?1")                  \
	X(DB_ROLE_GET_IN_INSTANCE,                                                     \
	    "SELECT " STORE_ROLE_COLUMNS                                               \
	    " FROM roles WHERE auth_instance_id = ?1 AND "                             \
	    "(id = ?2 OR name = ?2) ORDER BY id = ?2 DESC LIMIT 1")                    \
	X(DB_ROLE_UPDATE,                                                              \
	    "UPDATE roles SET auth_instance_id = ?2, "                                 \
	    "domain_id = ?3, name = ?4, enabled = ?5, "                                \
	    "bound_sa_names = ?6, bound_sa_namespaces = ?7, "                          \
	    "bound_audience = ?8, bound_pod_names = ?9, "                              \
	    "token_ttl = ?10, token_restriction_id = ?11, "                            \
	    "updated_at = ?13, bound_namespace_selector = ?14 WHERE id = ?1")          \
	X(DB_ROLE_DELETE, "DELETE FROM roles WHERE id = ?1")                           \
	X(DB_RESTRICTION_INSERT,                                                       \
	    "INSERT INTO restrictions (" STORE_RESTRICTION_COLUMNS ") VALUES "         \
	    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")                                        \
	X(DB_RESTRICTION_GET,                                                          \
	    "SELECT " STORE_RESTRICTION_COLUMNS                                        \
	    " FROM restrictions WHERE id = ?1")                                        \
	X(DB_RESTRICTION_UPDATE,                                                       \
	    "UPDATE restrictions SET "                                                 \
	    "domain_id = ?2, user_id = ?3, project_id = ?4, "                          \
	    "allow_renew = ?5, allow_rescope = ?6, updated_at = ?8 "                   \
	    "WHERE id = ?1")                                                           \
	X(DB_RESTRICTION_DELETE, "DELETE FROM restrictions WHERE id = ?1")             \
	X(DB_RROLE_INSERT,                                                             \
	    "INSERT INTO restriction_roles "                                           \
	    "(restriction_id, position, role_id, role_name) "                          \
	    "VALUES (?1, ?2, ?3, ?4)")                                                 \
	X(DB_RROLE_LIST,                                                               \
	    "SELECT role_id, role_name FROM "                                          \
	    "restriction_roles WHERE restriction_id = ?1 ORDER BY position")           \
	X(DB_RROLE_DELETE,                                                             \
	    "DELETE FROM restriction_roles "                                           \
	    "WHERE restriction_id = ?1")
#define DB_STMT_ENUM(id, sql) id,
enum db_stmt_id { DB_STATEMENTS(DB_STMT_ENUM) DB_NSTMTS };
#undef DB_STMT_ENUM
/*
 * Statements: SQL text with SQLite's numbered ?N parameters (a number may
 * appear twice), bound by number; db_step gives DB_ROW, DB_DONE or a
 * failure class (STORE_CONFLICT, DB_FOREIGN_KEY, STORE_RETRY,
 * STORE_UNAVAILABLE, STORE_ERROR).  Column text is valid until the next
 * step or db_stmt_done.
 */
#define DB_DONE        0
#define DB_ROW         1
#define DB_FOREIGN_KEY (-100)
struct db_stmt;
struct db_stmt *db_stmt(struct db *, enum db_stmt_id);
struct db_stmt *db_stmt_sql(struct db *, const char *);
int db_bind_text(struct db_stmt *, int, const char *);
int db_bind_int(struct db_stmt *, int, int64_t);
int db_step(struct db_stmt *);
const char *db_column_text(struct db_stmt *, int);
int64_t db_column_int(struct db_stmt *, int);
int db_column_is_null(struct db_stmt *, int);
int db_stmt_done(struct db *, struct db_stmt *);
int64_t db_changes(struct db *);
const char *db_errmsg(struct db *);
const char *const *db_migrations(int *);
int db_migrate_list(struct db *, const char *const *, int, char **);
/* The engine interface (db*.c only). */
struct db_engine {
	const char *name;
	const char *begin_sql;
	int (*open)(struct db *, const struct db_url *, int, char **);
	void (*close)(struct db *);
	int (*exec)(struct db *, const char *, char **);
	void *(*prepare)(struct db *, const char *, int *);
	void (*finalize)(void *);
	int (*bind_null)(void *, int);
	int (*bind_text)(void *, int, const char *);
	int (*bind_int)(void *, int, int64_t);
	int (*step)(struct db *, void *);
	void (*reset)(void *);
	const char *(*column_text)(void *, int);
	int (*column_is_null)(void *, int);
	int64_t (*changes)(struct db *);
	int (*in_transaction)(struct db *);
	const char *(*errmsg)(struct db *);
	int (*schema_version)(struct db *, char **);
	int (*migrate)(struct db *, char **);
};
extern const struct db_engine db_sqlite_engine;
extern const struct db_engine db_mysql_engine;
void *db_engine_state(struct db *);
void db_set_engine_state(struct db *, void *);
void db_mark_dead(struct db *);

/* db_copy.c -- the db-copy subcommand */
int db_copy_main(int, char **);

/* secret.c -- at-rest encryption of reviewer tokens */
int secret_setup(const char *, char **);
int secret_load(const char *, char **);
int secret_loaded(void);
char *secret_encrypt(const char *, char **);
char *secret_decrypt(const char *, char **);
void secret_clear(void);

/* store.c, store_*.c -- typed data access; results are STORE_* codes */
enum store_result {
	STORE_OK = 0,
	STORE_NOT_FOUND = -1,
	STORE_CONFLICT = -2,
	STORE_IN_USE = -3,
	STORE_ERROR = -4,
	/*
	 * Transient: a deadlock (1213), a lock wait timeout (1205) or a
	 * Galera certification conflict; the caller may run the whole
	 * write again (store_run does, with jittered back-off).
	 */
	STORE_RETRY = -5,
	/* The database cannot be reached: 503 database_unavailable. */
	STORE_UNAVAILABLE = -6,
	/*
	 * A row the request's checks read from its snapshot was written
	 * since (another request, another replica): nothing was written,
	 * 409 conflict, read again and retry (store_unchanged).
	 */
	STORE_CHANGED = -7
};
/* A list query: exact-match filters, keyset pagination by id. */
struct store_query {
	const char *filter_names[8];
	const char *filter_values[8];
	size_t nfilters;
	const char *marker; /* NULL: from the start */
	long limit;         /* > 0 */
};
int store_instance_create(struct db *, struct instance *);
int store_instance_get(struct db *, const char *, struct instance **);
int store_instance_list(struct db *, const struct store_query *,
    struct instance ***, size_t *, int *);
int store_instance_update(struct db *, struct instance *);
int store_instance_delete(struct db *, const char *);
int store_role_create(struct db *, struct role *);
int store_role_get(struct db *, const char *, const char *, struct role **);
int store_role_list(struct db *, const struct store_query *, struct role ***,
    size_t *, int *);
int store_role_update(struct db *, struct role *);
int store_role_delete(struct db *, const char *);
int store_restriction_create(struct db *, struct restriction *);
int store_restriction_get(struct db *, const char *, struct restriction **);
int store_restriction_list(struct db *, const struct store_query *,
    struct restriction ***, size_t *, int *);
int store_restriction_update(struct db *, struct restriction *);
int store_restriction_delete(struct db *, const char *);
/* Helpers shared by store_*.c only (handlers never call these). */
struct store_filter {
	const char *name; /* query name and column name */
	int boolean;      /* value must be "1" or "0" */
};
struct store_list_def {
	const char *what; /* for log lines */
	const char *table;
	const char *columns;
	const struct store_filter *filters; /* ends with a NULL name */
	int (*read)(struct db *, struct db_stmt *, void **);
	void (*free)(void *);
};
int store_list(struct db *, const struct store_list_def *,
    const struct store_query *, void ***, size_t *, int *);
int store_bind_text(struct db_stmt *, int, const char *);
int store_bind_strlist(struct db_stmt *, int, const struct strlist *);
char *store_column_text(struct db_stmt *, int);
void store_column_fixed(struct db_stmt *, int, char *, size_t);
int store_column_strlist(struct db_stmt *, int, struct strlist *);
int store_error(struct db *, int, int, const char *);
int store_write(struct db *, struct db_stmt *, int, const char *);
int store_get_row(struct db *, struct db_stmt *, const char *);
int store_unchanged(struct db *, const char *, const char *, const char *);
char *store_print_join(char **, size_t);
char *store_print_line(const char *, const char *, const char *, const char *);
int store_instance_print(struct db *, const char *, char **);
int store_delete(struct db *, enum db_stmt_id, const char *, int, const char *);
int store_begin(struct db *);
int store_finish(struct db *, int);
/*
 * Writes and the revision (control plane).  store_begin/store_finish nest:
 * only the outermost pair opens and commits the transaction, and the
 * outermost commit of a write also bumps the revision row, so every
 * committed change is seen by the other replicas' refresh.  store_run runs
 * fn inside one transaction, again on STORE_RETRY (bounded, jittered).
 */
int store_run(struct db *, int (*)(struct db *, void *), void *);
int store_revision(struct db *, uint64_t *);
void store_stamp(char *, char *);

/* snapshot.c -- the data plane's immutable, shared copy of the store */
struct snapshot;
int snapshot_load(struct db *, struct snapshot **);
void snapshot_publish(struct snapshot *);
struct snapshot *snapshot_get(void); /* published one, referenced; or NULL */
struct snapshot *snapshot_ref(struct snapshot *);
void snapshot_unref(struct snapshot *);
void snapshot_clear(void);
uint64_t snapshot_revision(const struct snapshot *);
void snapshot_confirm(struct snapshot *);
double snapshot_age(const struct snapshot *);
double snapshot_load_seconds(const struct snapshot *);
void snapshot_counts(const struct snapshot *, size_t *, size_t *, size_t *);
/* Borrowed: valid while the snapshot is referenced. */
const struct instance *snapshot_instance(const struct snapshot *, const char *);
char *snapshot_instance_print(const struct snapshot *, const char *);
const struct role *snapshot_role(const struct snapshot *, const char *,
    const char *);
const struct restriction *snapshot_restriction(const struct snapshot *,
    const char *);
size_t snapshot_roles_of_restriction(const struct snapshot *, const char *,
    const struct role *const **);
int snapshot_instance_list(const struct snapshot *, const struct store_query *,
    const struct instance ***, size_t *, int *);
int snapshot_role_list(const struct snapshot *, const struct store_query *,
    const struct role ***, size_t *, int *);
int snapshot_restriction_list(const struct snapshot *,
    const struct store_query *, const struct restriction ***, size_t *, int *);
/* Copies (the caller's to change and free); STORE_* results. */
int snapshot_instance_get(const struct snapshot *, const char *,
    struct instance **);
int snapshot_role_get(const struct snapshot *, const char *, const char *,
    struct role **);
int snapshot_restriction_get(const struct snapshot *, const char *,
    struct restriction **);

/* dbthread.c -- the control plane: the process's one database connection */
typedef int (*dbthread_fn)(struct db *, void *);
typedef void (*dbthread_done)(int, void *); /* on the submitting worker */
int dbthread_start(const struct config *, char **);
void dbthread_stop(void);
int dbthread_submit(struct worker *, dbthread_fn, dbthread_done, void *);
int dbthread_up(void);
long dbthread_retry_after(void); /* seconds until the next reconnect */
uint64_t dbthread_reconnects(void);

/* json.c -- cJSON helpers: strict, bounded, typed */
cJSON *json_parse(const char *, size_t, char **);
char *json_print(const cJSON *);
int json_check_fields(const cJSON *, const char *const *, char **);
void json_add_string_or_null(cJSON *, const char *, const char *);
cJSON *json_strlist(const struct strlist *);
#define JSON_MAX_DEPTH  64 /* nesting accepted by json_parse */
#define JSON_MAX_FIELDS 32 /* longest allowed-field list */
#define JSON_ABSENT     0  /* typed getters: field not present */
#define JSON_SET        1  /* present with a valid value */
#define JSON_NULL       2  /* present as null (nullable fields) */
int json_check_fields_at(const cJSON *, const char *, const char *const *,
    char **);
const char *json_find_field(const cJSON *, const char *const *);
int json_get_string(const cJSON *, const char *, size_t, size_t, int, char **,
    char **);
int json_get_bool(const cJSON *, const char *, int *, char **);
int json_get_long(const cJSON *, const char *, long, long, int, long *,
    char **);
int json_get_strlist(const cJSON *, const char *, size_t, size_t, int,
    struct strlist *, char **);
void json_strlist_clear(struct strlist *);
const char *json_or_null(const char *);
/* A JSON text written directly into a (stack) buffer: replies on the hot path. */
struct json_out {
	char *buf; /* the caller's stack buffer, or the heap once outgrown */
	size_t len;
	size_t cap;
	int heap;
};
void json_out_init(struct json_out *, char *, size_t);
void json_out_free(struct json_out *);
void json_out_raw(struct json_out *, const char *, size_t);
void json_out_key(struct json_out *, const char *);
void json_out_open(struct json_out *, const char *, char);
void json_out_close(struct json_out *, char);
void json_out_string(struct json_out *, const char *, const char *);

/* validate.c -- field rules shared by the admin API handlers */
#define VALIDATE_MAX_PEM (64 * 1024)
int validate_host(const char *, int, char **);
int validate_pem(const char *, char **);
int validate_role_name(const char *, char **);
int validate_globs(const char *, const struct strlist *, char **);

/* server.c -- process-wide state, read-mostly, shared by workers */
struct server {
	struct config *cfg; /* current: use server_config_ref() */
	const char *config_path;
	void *ssl_ctx; /* SSL_CTX *, swapped on reload */
	struct worker **workers;
	int nworkers;
	struct server_listener *listeners;
	size_t nlisteners;
	volatile int stopping;
	time_t started;
	_Atomic long connections;  /* accepted and not yet closed */
	struct throttle *throttle; /* failed logins per client address */
};
struct server_listener {
	char *url;
	int fd;
	int tls;
};
extern struct server *server;
int server_run(struct config *, const char *);
void *server_ssl_ctx_ref(void); /* SSL_CTX *, up-ref'd */
double server_tls_not_after(void);
struct config *server_config_ref(void);

/* tls.c */
void *tls_ctx_new(const char *, const char *, char **);
void tls_ctx_free(void *);
double tls_ctx_not_after(void *);

/* worker.c -- one thread: event_base, evhttp listeners, mailbox, fetch */
struct worker {
	int id;
	struct server *srv;
	struct config *cfg; /* at start: static options */
	struct event_base *base;
	struct evhttp *https;              /* TLS listeners */
	struct evhttp *http;               /* plain listeners */
	struct worker_mailbox *mailbox;    /* worker_post's list */
	struct fetch *fetch;               /* outbound HTTPS */
	struct policy *policy;             /* this thread's Lua state */
	struct rc_mailbox *review_mailbox; /* review_cache.c's posts to it */
	struct event *reload_ev;
	void *thread;  /* pthread_t * */
	long inflight; /* requests not yet replied */
	long unsent;   /* replies queued, not yet written out */
	struct worker_accepted *accepted; /* bufferevents not yet attached */
	size_t naccepted;
	size_t accepted_cap;
	struct event *attach_ev;   /* attaches accepted connections */
	struct worker_conn **byfd; /* counted connections by socket */
	size_t nbyfd;
	uint64_t refused_log_us; /* last "max_connections reached" */
	struct event *stop_ev;
	struct event *drain_ev;
	uint64_t drain_deadline_us;
	void **bound; /* evhttp_bound_socket * */
	size_t nbound;
};
struct worker *worker_new(struct server *, int, char **);
int worker_start(struct worker *, char **);
void worker_stop(struct worker *);
void worker_reload(struct worker *);
void worker_join(struct worker *);
void worker_free(struct worker *);
void worker_conn_headed(struct worker *, struct evhttp_request *);
void worker_conn_replied(struct worker *, struct evhttp_request *);
void worker_mailbox_open(struct worker *);
void worker_mailbox_close(struct worker *);
int worker_post(struct worker *, void (*)(void *), void *);

/* http.c -- the request context and replies */
enum http_method {
	HM_GET = 1,
	HM_HEAD = 2,
	HM_POST = 4,
	HM_PUT = 8,
	HM_PATCH = 16,
	HM_DELETE = 32
};
enum caller_kind {
	CALLER_NONE,
	CALLER_BOOTSTRAP,
	CALLER_KEYSTONE,
	CALLER_RESTRICTED
};
struct caller {
	enum caller_kind kind;
	int is_admin;
	char *user_id;
	char *user_domain_id;
	char *project_id;
	char *project_domain_id;
	char *domain_id;
	int system;
	struct strlist roles;
};
#define HTTP_MAX_PARAMS 4
struct request {
	struct worker *worker;
	struct config *cfg;    /* snapshot for this request */
	struct snapshot *snap; /* stored data for this request (or NULL) */
	struct evhttp_request *req;
	enum http_method method;
	char *path;                    /* decoded path, no query */
	void *query;                   /* struct evkeyvalq * */
	char *params[HTTP_MAX_PARAMS]; /* path segments matched */
	const char *route;             /* route pattern, for metrics */
	int route_flags;
	enum reason reason;            /* of the error replied, if any */
	char client_ip[64];            /* the client: peer or X-Forwarded-For */
	unsigned char client_addr[16]; /* the same, v4-mapped IPv6 */
	int client_addr_ok;            /* client_addr is set */
	struct caller caller;
	uint64_t start_us;
	int status; /* once replied */
	int replied;
	int references;
	void *deadline;                   /* struct event * */
	void *data;                       /* handler's own state */
	void (*cancel)(struct request *); /* on deadline */
	void (*gone)(struct request *);   /* client went away */
	void *park;                       /* see http_park() */
	/*
	 * Keystone's role facts could not be had (role_facts.c): the policy
	 * decided on literal role names; a denial stands, an allow becomes
	 * this error (auth_require).
	 */
	enum reason facts_error;
	char *facts_message;
	char *facts_retry_after;
	char *log_note; /* appended to the access line (http_log_note) */
};
typedef void (*http_handler)(struct request *);
struct http_route {
	int methods;         /* enum http_method bits */
	const char *pattern; /* '*' matches one path segment */
	http_handler handler;
	int flags;
};
struct evkeyvalq;
int http_target_parse(const char *, char **, struct evkeyvalq *);
const struct http_route *http_route_lookup(const char *, enum http_method,
    char **, int *);
int http_list_parse(const struct evkeyvalq *, const char *const *,
    struct store_query *, char **);
void http_request_cb(struct evhttp_request *, void *);
const char *http_query(struct request *, const char *);
const char *http_header(struct request *, const char *);
void http_set_header(struct request *, const char *, const char *);
void http_log_note(struct request *, const char *, ...) printflike(2, 3);
int http_body_json(struct request *, const char *, cJSON **);
int http_body_object(struct request *, cJSON **);
void http_reply_json(struct request *, int, cJSON *);
void http_reply_empty(struct request *, int);
void http_reply_buffer(struct request *, int, struct evbuffer *);
char *http_buffer_string(struct evbuffer *);
void http_reply_reason(struct request *, enum reason, const char *, ...)
    printflike(3, 4);
void http_ref(struct request *);
void http_park(struct request *);
void http_unref(struct request *);
const char *http_status_title(int);
char *http_public_url(struct request *);
int http_list_query(struct request *, const char *const *,
    struct store_query *);
cJSON *http_list_links(struct request *, const char *, int);

/* auth.c -- who is calling, and may they do it */
int auth_caller(struct request *, http_handler);
void auth_reply_401(struct request *, enum reason, const char *);
int auth_authorize(struct request *, const char *, const cJSON *, char **);
int auth_require(struct request *, const char *, const cJSON *);
void caller_clear(struct caller *);
int auth_bootstrap(const char *, int, char **);
char *auth_load_admin_token(const char *, char **);
char *auth_load_metrics_token(const char *, char **);

/* api_service.c */
void api_version(struct request *);
void api_healthz(struct request *);
void api_readyz(struct request *);
void api_metrics(struct request *);

/* api_common.c -- plumbing shared by the admin API handlers */
void api_bad_request(struct request *, enum reason, char *);
int api_check_body(struct request *, const cJSON *, const char *const *,
    const char *const *, const char *const *);
int api_check_required(struct request *, const cJSON *, const char *const *);
void api_store_fail(struct request *, int, const char *, const char *,
    const char *);
void api_log_change(struct request *, const char *, const char *);
void api_reply_created(struct request *, const char *, const char *, cJSON *);
void api_reply_object(struct request *, const char *, cJSON *);
struct api_guard;
struct api_guard *api_guard_new(void);
void api_guard_row(struct api_guard *, const char *, const char *,
    const char *);
void api_guard_instance(struct api_guard *, const struct request *,
    const char *);
int api_guard_check(struct db *, const struct api_guard *);
void api_guard_free(struct api_guard *);
void api_delete(struct request *, const char *, const char *, const char *,
    int (*)(struct db *, const char *), const cJSON *, void (*)(const char *),
    struct api_guard *);
typedef void (*api_write_done)(struct request *, int, void *);
void api_write(struct request *, int (*)(struct db *, void *), void *,
    api_write_done, void (*)(void *));
void api_show(struct request *, const char *, const char *, const cJSON *,
    cJSON *);
void api_reply_list(struct request *, const char *, cJSON *, const char *, int);
int api_list_query(struct request *, const char *const *, struct store_query *,
    cJSON **);
void api_query_add(struct store_query *, const char *, const char *);
cJSON *api_target(const char *, cJSON *, const char *, cJSON *, const cJSON *);

/* role_facts.c -- what restriction roles grant: delegable, implied */
typedef void (*role_facts_next)(struct request *, const cJSON *, void *);
void role_facts_run(struct request *, role_facts_next, void *,
    void (*)(void *));
void role_facts_annotate(const struct config *, const cJSON *, cJSON *);
int role_facts_delegable(const struct config *, const cJSON *,
    const struct restriction *);
int role_facts_protected(struct request *, const cJSON *, const char *, int *);
int role_facts_restriction_protected(struct request *, const cJSON *,
    const char *, int *);

/* api_instance.c */
void api_instance_create(struct request *);
void api_instance_list(struct request *);
void api_instance_show(struct request *);
void api_instance_update(struct request *);
void api_instance_delete(struct request *);
struct instance *api_instance_load(struct request *, const char *);

/* api_role.c */
void api_role_create(struct request *);
void api_role_list(struct request *);
void api_role_list_all(struct request *);
void api_role_show(struct request *);
void api_role_update(struct request *);
void api_role_delete(struct request *);

/* api_restriction.c */
void api_restriction_create(struct request *);
void api_restriction_list(struct request *);
void api_restriction_show(struct request *);
void api_restriction_update(struct request *);
void api_restriction_delete(struct request *);

/* fernet.c -- Keystone Fernet tokens (login issue) */
struct fernet_payload {
	int version; /* 2, 9 or 11 */
	char *user_id;
	uint64_t methods;
	char *project_id;
	char *restriction_id; /* version 11 */
	char *app_cred_id;    /* version 9 */
	double expires_at;
	int allow_renew;
	int allow_rescope;
	char audit_id[23]; /* urlsafe b64, no padding */
	double issued_at;  /* Fernet timestamp */
};
#define FERNET_TOKEN_MAX 1024 /* longer input tokens are invalid */
struct fernet_keys;           /* immutable once loaded: share read-only */
struct fernet_keys *fernet_keys_load(const char *, char **);
void fernet_keys_free(struct fernet_keys *);
size_t fernet_keys_count(const struct fernet_keys *);
long fernet_keys_primary(const struct fernet_keys *);
double fernet_keys_primary_since(const struct fernet_keys *);
/* 1 when the repository differs from the set loaded; call <= once a second */
int fernet_keys_changed(const char *, const struct fernet_keys *);
/* fills in issued_at (0 = now) and audit_id ("" = fresh) */
char *fernet_encode(const struct fernet_keys *, struct fernet_payload *,
    char **);
/* fills the payload (issued_at = Fernet timestamp); expiry not checked */
int fernet_decode(const struct fernet_keys *, const char *,
    struct fernet_payload *, char **);
void fernet_payload_clear(struct fernet_payload *);
/* leaves a repository that already holds keys alone and returns 0 */
int fernet_setup(const char *, long, char **);
int fernet_rotate(const char *, long, char **);
int fernet_methods_mask(const char *, const char *, uint64_t *, char **);

/* jwt.c -- service-account JWTs: structure and claims, no signature trust */
struct jwt {
	char *alg;
	char *kid;          /* NULL when absent */
	size_t signing_len; /* header.claims: the token's first bytes */
	unsigned char *sig; /* the decoded signature */
	size_t siglen;
	int has_exp, has_nbf, has_iat;
	double exp, nbf, iat;
	struct strlist aud;
	char *iss;
	char *sub;
	int legacy; /* kubernetes.io/serviceaccount/... keys */
	char *namespace;
	char *sa_name;
	char *sa_uid;   /* NULL when absent */
	char *pod_name; /* NULL when absent */
	char *pod_uid;
	char *node_name;
	char *node_uid;
	cJSON *claims; /* every claim, unverified */
};
int jwt_parse(const char *, size_t, size_t, struct jwt **, char **);
void jwt_free(struct jwt *);
int jwt_has_audience(const struct jwt *, const char *);
int glob_match_any(const struct strlist *, const char *);

/* jwks.c -- JSON Web Key Sets, RS256/ES256 signature verification */
#define JWKS_RSA_MIN_BITS 2048
enum jwks_kty { JWKS_KTY_RSA, JWKS_KTY_EC };
enum jwks_verdict { JWKS_OK, JWKS_BAD, JWKS_NO_KEY };
struct jwks_set;
struct jwks_set *jwks_parse(const char *, size_t, int, char **);
struct jwks_set *jwks_set_ref(struct jwks_set *);
void jwks_set_unref(struct jwks_set *);
size_t jwks_set_count(const struct jwks_set *);
int jwks_set_has_kid(const struct jwks_set *, const char *);
enum jwks_verdict jwks_verify(const struct jwks_set *, const char *,
    const char *, const void *, size_t, const unsigned char *, size_t);

/* jwks_cache.c -- per-instance signing keys: discovery, cache, login step */
enum jwks_check_result {
	JWKS_CHECK_PASS,   /* go on to the TokenReview */
	JWKS_CHECK_REFUSE, /* *reason and *msg say why: no review */
	JWKS_CHECK_WAIT    /* keys being fetched: the callback goes on */
};
struct jwks_wait;
typedef void (*jwks_wait_cb)(void *);
enum jwks_check_result jwks_check(struct worker *, const struct config *,
    const struct instance *, const char *, const struct jwt *, jwks_wait_cb,
    void *, struct jwks_wait **, enum reason *, char **);
void jwks_wait_cancel(struct jwks_wait *);
void jwks_forget(const char *);
cJSON *jwks_status_json(const struct config *);
void jwks_metrics_render(struct evbuffer *);

/* outbound.c -- where the server may connect (API.md §7) */
struct outbound_rules;
struct sockaddr;
struct outbound_rules *outbound_rules_parse(const char *, char **);
void outbound_rules_free(struct outbound_rules *);
int outbound_rules_empty(const struct outbound_rules *);
char *outbound_url_host(const char *);
long outbound_url_port(const char *);
int outbound_link_local_host(const char *);
int outbound_link_local_addr(const struct sockaddr *);
int outbound_host_allowed(const struct outbound_rules *, const char *, char **);
int outbound_addr_allowed(const struct outbound_rules *, const char *,
    const struct sockaddr *, const char **);
int outbound_proxied_allowed(const struct outbound_rules *, const char *,
    const char **);
int outbound_check_host(const char *, char **);

/* fetch.c -- outbound HTTPS on a worker's event loop (libcurl multi) */
enum fetch_error {
	FETCH_OK,          /* a response arrived; see status */
	FETCH_CONNECT,     /* refused, reset, DNS: cluster unavailable */
	FETCH_TIMEOUT,     /* connect or total timeout */
	FETCH_TLS,         /* handshake or verification failed */
	FETCH_TOO_LARGE,   /* response above max_response */
	FETCH_DESTINATION, /* the address may not be contacted (API.md §7) */
	FETCH_OTHER
};
struct fetch_request {
	const char *method; /* "GET" or "POST" */
	const char *url;
	const char *body; /* POST body (JSON) or NULL */
	size_t bodylen;
	const char *bearer;        /* Authorization: Bearer, or NULL */
	const char *auth_token;    /* X-Auth-Token, or NULL */
	const char *subject_token; /* X-Subject-Token, or NULL */
	const char *ca_pem;        /* sole trust anchor when set */
	const char *ca_file;       /* CA bundle file when set */
	long connect_timeout_ms;
	long timeout_ms;
	size_t max_response;
	int allow_http; /* permit http:// (tests, dev) */
	/* [k8s_auth] allowed_hosts to enforce at connect time, or NULL */
	const char *allowed_hosts;
	const char *proxy; /* proxy URL, or NULL: never a proxy */
	int cluster; /* a cluster's slots (TokenReview), else Keystone's */
};
struct fetch_result {
	enum fetch_error error;
	long status;      /* HTTP status, 0 without response */
	const char *body; /* NUL-terminated, valid in callback */
	size_t bodylen;
	const char *retry_after;   /* Retry-After header or NULL */
	const char *subject_token; /* X-Subject-Token header or NULL */
	const char *errmsg;        /* curl's message, never secret */
	double seconds;            /* total time */
};
struct fetch;
struct fetch_transfer;
typedef void (*fetch_cb)(const struct fetch_result *, void *);
struct fetch *fetch_create(struct event_base *, long, long);
void fetch_destroy(struct fetch *);
struct fetch_transfer *fetch_start(struct fetch *, const struct fetch_request *,
    fetch_cb, void *, char **);
void fetch_cancel(struct fetch_transfer *);
long fetch_inflight(const struct fetch *);
long fetch_inflight_cluster(const struct fetch *);

/* k8s_review.c -- where the TokenReview is made */
struct k8s_review_outcome {
	enum reason reason; /* REASON_NONE: authenticated */
	char *message;
	char *retry_after; /* for 503, when the cluster said */
	char *username;
	char *uid;
	char *namespace;
	char *name;
	struct strlist groups;
	struct strlist audiences;
	cJSON *extra; /* status.user.extra, or NULL */
	char *pod_name;
	char *pod_uid;
	char *node_name;
	char *node_uid;
};
struct k8s_review;
/* A TokenReview ready to start: every string copied; body and bearer wiped. */
struct k8s_review_req {
	char instance_id[ID_LEN + 1];
	char *url;
	char *body;   /* holds the JWT */
	char *bearer; /* secret */
	char *ca;     /* PEM or NULL */
	long connect_timeout_ms;
	long timeout_ms;
	size_t max_response;
	int allow_http;
	char *allowed_hosts; /* NULL: unchecked */
	char *proxy;
};
typedef void (*k8s_review_cb)(struct k8s_review_outcome *, void *);
struct k8s_review_req *k8s_review_prepare(const struct config *,
    const struct instance *, const char *, const char *);
void k8s_review_req_free(struct k8s_review_req *);
struct k8s_review *k8s_review_launch(struct worker *,
    const struct k8s_review_req *, k8s_review_cb, void *,
    struct k8s_review_outcome *);
struct k8s_review *k8s_review_start(struct worker *, const struct config *,
    const struct instance *, const char *, const char *, k8s_review_cb, void *,
    struct k8s_review_outcome *);
void k8s_review_cancel(struct k8s_review *);
/* A GET or POST to an instance's API server as its reviewer. */
struct k8s_request {
	struct fetch_request req; /* points into the fields below */
	char *bearer;
	char *ca;
	char *url;
};
void k8s_review_request(const struct config *, const struct instance *,
    const char *, const char *, struct k8s_request *);
void k8s_review_request_clear(struct k8s_request *);
void k8s_review_parse(long, const char *, size_t, struct k8s_review_outcome *);
void k8s_review_outcome_clear(struct k8s_review_outcome *);
void k8s_review_credentials(const struct config *, const struct instance *,
    const char *, char **, char **);
void k8s_review_extras(struct k8s_review_outcome *);

/* review_cache.c -- TokenReview cache, single flight, slots, breaker */
#define REVIEW_CACHE_TTL_DEFAULT 10 /* an instance's review_cache_ttl */
struct review_wait;
struct evbuffer;
struct review_wait *review_cache_start(struct worker *, const struct config *,
    const struct instance *, const char *, const char *, double, k8s_review_cb,
    void *, struct k8s_review_outcome *);
int review_cache_lookup(const struct config *, const struct instance *,
    const uint8_t[32], const char *, struct k8s_review_outcome *);
void review_cache_cancel(struct review_wait *);
void review_cache_forget(const char *);
void review_cache_worker_free(struct worker *);
void review_cache_render(struct evbuffer *);
void review_cache_key(const char *, const char *, const char *, uint8_t[32]);
void review_cache_key_digest(const uint8_t[32], const char *, const char *,
    uint8_t[32]);
cJSON *review_cache_extra_dup(const struct k8s_review_outcome *);
int review_cache_get(const uint8_t *, const char *, double,
    struct k8s_review_outcome *);
void review_cache_put(const uint8_t *, const char *,
    const struct k8s_review_outcome *, double);
size_t review_cache_count(void);
void review_cache_reset(long);

/* k8s_name.c -- Kubernetes names (DNS-1123 label and subdomain) */
int k8s_name_label(const char *);
int k8s_name_subdomain(const char *);

/* k8s_object.c -- namespaces and service accounts read at login */
enum k8s_object_kind { K8S_OBJECT_NAMESPACE, K8S_OBJECT_SERVICE_ACCOUNT };
struct k8s_object_outcome {
	enum reason reason; /* REASON_NONE: read */
	char *message;
	char *retry_after;  /* for 503, when the cluster said */
	cJSON *labels;      /* a namespace's metadata.labels */
	cJSON *annotations; /* a service account's, under the prefix */
};
struct k8s_object;
typedef void (*k8s_object_cb)(struct k8s_object_outcome *, void *);
struct k8s_object *k8s_object_get(struct worker *, const struct config *,
    const struct instance *, const char *, enum k8s_object_kind, const char *,
    const char *, k8s_object_cb, void *, struct k8s_object_outcome *);
void k8s_object_cancel(struct k8s_object *);
void k8s_object_outcome_clear(struct k8s_object_outcome *);

/* k8s_selector.c -- label selectors (a role's bound_namespace_selector) */
#define K8S_SELECTOR_MAX_TERMS  32 /* matchLabels + matchExpressions */
#define K8S_SELECTOR_MAX_VALUES 64 /* values of one In / NotIn */
enum k8s_selector_op {
	K8S_SEL_BAD,
	K8S_SEL_IN,
	K8S_SEL_NOT_IN,
	K8S_SEL_EXISTS,
	K8S_SEL_DOES_NOT_EXIST
};
int k8s_selector_key_valid(const char *);
int k8s_selector_value_valid(const char *);
int k8s_selector_check(const cJSON *, char **);
int k8s_selector_match(const cJSON *, const cJSON *);

/* token.c -- where the token is minted: keys in use, mint, read */
int token_init(const struct config *, char **);
int token_reload(char **);
int token_ready(void);
/* The loaded key set, for /metrics and /readyz. */
struct token_key_status {
	size_t nkeys;                /* 0: none loaded */
	long primary;                /* number of the primary key */
	double primary_since;        /* it became primary (epoch s) */
	double loaded_at;            /* last successful (re)load */
	unsigned long reload_errors; /* failed reloads since start */
	double failing_since;        /* first failure of a run, 0: none */
};
void token_key_status(struct token_key_status *);
uint64_t token_methods_mask(void);
char *token_mint(struct fernet_payload *, char **);
int token_read(const char *, struct fernet_payload *, char **);
void token_shutdown(void);
int fernet_keys_changed(const char *, const struct fernet_keys *);

/* api_login.c -- POST /v4/k8s_auth/instances/{id}/auth */
void api_login(struct request *);

/* api_token.c -- the token document and GET/HEAD /v3/auth/tokens */
#define API_TOKEN_STACK 4096 /* a token document written without malloc */
void api_token_document(struct json_out *, const struct config *,
    const struct fernet_payload *, const struct restriction *);
void api_token_reply(struct request *, struct json_out *);
void api_token_validate(struct request *);

/* throttle.c -- failed logins per client address; trusted proxies */
struct throttle;
struct throttle_cidrs;
struct throttle_key {
	unsigned char b[16]; /* IPv4 (v4-mapped) address, or IPv6 /64 */
};
struct throttle *throttle_new(size_t);
void throttle_free(struct throttle *);
size_t throttle_capacity(const struct throttle *);
double throttle_tokens_at(double, double, double, double, double);
long throttle_retry_after(double, double);
long throttle_check(struct throttle *, const struct throttle_key *, double,
    double, double);
void throttle_fail(struct throttle *, const struct throttle_key *, double,
    double, double);
int throttle_addr_parse(const char *, unsigned char[16]);
void throttle_addr_format(const unsigned char[16], char *, size_t);
void throttle_key_of(const unsigned char[16], struct throttle_key *);
struct throttle_cidrs *throttle_cidrs_parse(const char *, char **);
void throttle_cidrs_free(struct throttle_cidrs *);
int throttle_cidrs_match(const struct throttle_cidrs *,
    const unsigned char[16]);
int throttle_forwarded_for(const struct throttle_cidrs *, const char *,
    unsigned char[16]);
long throttle_login_check(const struct request *);
void throttle_login_done(const struct request *);

/* metrics.c -- counters for /metrics (Prometheus text) */
void metrics_login_throttled(void);
void metrics_conn_refused(void);
void metrics_header_timeout(void);
void metrics_login(enum reason);
void metrics_review_start(void);
void metrics_review_done(const char *, double);
void metrics_policy_error(void);
void metrics_keystone_error(const char *);
void metrics_http(const char *, const char *, int);
char *metrics_render(const struct config *, time_t);

/* audit.c -- the audit trail: one JSON line per login and admin change */
struct audit_login {
	const char *instance_id;
	const char *role;
	const char *namespace; /* reviewed (by the cluster) */
	const char *service_account;
	const char *pod;
	const char *claimed_namespace; /* only the JWT says so */
	const char *claimed_service_account;
	const char *claimed_pod;
	const char *node;
	int status;
	const char *reason;
	const char *token_audit_id;
	const char *jwt_id;
	const char *client;
	double latency_ms;
	const cJSON *policy;      /* login.lua's audit fields, or NULL */
	const cJSON *annotations; /* service account's, when read */
};
int audit_open(const char *, char **);
void audit_set_batching(int, size_t);
void audit_login(const struct audit_login *);
char *audit_login_text(const struct audit_login *, const char *);
void audit_admin(const struct request *, const char *, const char *,
    const char *);

/* policy.c -- sandboxed Lua policies: one engine (Lua state) per worker */
struct policy;
struct lua_State;
struct policy_login_result {
	long expires_in;      /* seconds; 0: as the role says */
	char *restriction_id; /* NULL: the role's restriction */
	cJSON *audit;         /* NULL or an object of scalars */
};
struct policy_source {
	char *name;      /* "lua/k8sauth.lua" */
	char *chunkname; /* "@/etc/.../api.lua" */
	char *text;
	size_t len;
};
#define POLICY_NEED_NAMESPACE       0x1 /* login.lua: needs "namespace" */
#define POLICY_NEED_SERVICE_ACCOUNT 0x2 /* ... "service_account" */
#define POLICY_ALLOW                0
#define POLICY_DENY                 (-1)
#define POLICY_ERROR                (-2)
struct policy *policy_new(const struct config *, char **);
void policy_free(struct policy *);
int policy_validate(const struct config *, char **);
int policy_authorize(struct policy *, const char *, const struct caller *,
    const cJSON *, char **);
int policy_login(struct policy *, const cJSON *, struct policy_login_result *,
    char **);
void policy_login_result_clear(struct policy_login_result *);
int policy_login_needs(const struct policy *);
int policy_login_decides(const struct policy *);
size_t policy_memory(const struct policy *);
const char *policy_action(const struct policy *);
long long policy_generation(const struct policy *);
const struct strlist *policy_protected_roles(const struct policy *);
const struct policy_source *policy_source_module(struct policy *, const char *,
    char **);
void policy_charge(struct lua_State *, double);

/* policy_api.c -- the C functions policy scripts can reach */
void policy_api_sandbox(struct lua_State *, struct policy *);
void policy_api_env_new(struct lua_State *);
void policy_api_env_seal(struct lua_State *, int);

/* policy_check.c -- the policy-check subcommand */
int policy_check_main(const struct config *, int, char **);

/* agent.c -- the agent subcommand, the pod side (API.md §9) */
int agent_main(int, char **);

/* keystone.c, keystone_*.c -- the upstream Keystone ([keystone] section) */
struct keystone_result {
	int unavailable;         /* no usable answer: 503 */
	const char *refused;     /* the service credential was refused: why */
	long status;             /* HTTP status when answered */
	cJSON *doc;              /* parsed 2xx body, valid in callback */
	const char *retry_after; /* Keystone's Retry-After or NULL */
};
/* The callback may not cancel its own operation. */
typedef void (*keystone_cb)(const struct keystone_result *, void *);
struct keystone_op;
enum keystone_cred { /* the service's own credential, for /readyz */
	KEYSTONE_CRED_UNKNOWN,
	KEYSTONE_CRED_OK,
	KEYSTONE_CRED_REFUSED,
	KEYSTONE_CRED_UNREACHABLE,
	KEYSTONE_CRED_DISABLED,
};
enum keystone_cred keystone_credential_state(const char **);
const char *keystone_cred_name(enum keystone_cred);
void keystone_probe(struct worker *);
int keystone_init(const struct config *, char **);
int keystone_reload(const struct config *, char **);
void keystone_shutdown(void);
int keystone_enabled(void);
char *keystone_url_base(const char *);
double keystone_parse_time(const char *);
struct keystone_op *keystone_get(struct worker *, const char *, const char *,
    keystone_cb, void *, char **);
void keystone_cancel(struct keystone_op *);
void keystone_worker_free(struct worker *);
/* keystone_cache.c */
#define KEYSTONE_TOKEN_CACHE_MAX 4096
#define KEYSTONE_USER_CACHE_MAX  1024
struct keystone_cache;
extern struct keystone_cache *keystone_token_cache;
extern struct keystone_cache *keystone_user_cache;
extern long keystone_cache_ttl;
extern long keystone_revoke_interval;
size_t keystone_cache_drop_if(struct keystone_cache *,
    int (*)(const cJSON *, void *), void *);
/* keystone_revoke.c */
void keystone_revoke_ensure(struct worker *);
void keystone_revoke_worker_free(struct worker *);
int keystone_revoke_matches(const cJSON *, const cJSON *);
struct keystone_cache *keystone_cache_new(size_t);
void keystone_cache_free(struct keystone_cache *);
void keystone_cache_clear(struct keystone_cache *);
void keystone_cache_put(struct keystone_cache *, const char *, cJSON *, double,
    double);
int keystone_cache_get(struct keystone_cache *, const char *, double, cJSON **);
size_t keystone_cache_count(struct keystone_cache *);
void keystone_caches_init(const struct config *);
void keystone_caches_free(void);
/* keystone_token.c -- Keystone tokens as admin callers */
int keystone_token_parse(const cJSON *, struct caller *, double *, char **);
cJSON *keystone_token_slim(const cJSON *);
double keystone_token_cache_until(double, double, long);
int keystone_token_caller(struct request *, const char *, http_handler);
/* keystone_check.c -- restrictions and login users checked in Keystone */
struct keystone_outcome {
	enum reason reason; /* REASON_NONE: fine */
	char *message;
	char *retry_after;    /* for 503 */
	char *user_domain_id; /* resolved, when checked */
	char *project_domain_id;
};
struct keystone_check;
typedef void (*keystone_check_cb)(struct keystone_outcome *, void *);
struct keystone_check *keystone_check_restriction(struct worker *,
    struct restriction *, int, keystone_check_cb, void *,
    struct keystone_outcome *);
struct keystone_check *keystone_check_user(struct worker *, const char *,
    keystone_check_cb, void *, struct keystone_outcome *);
void keystone_check_cancel(struct keystone_check *);
void keystone_outcome_clear(struct keystone_outcome *);
char *keystone_path_escape(const char *);

#endif /* K8SAUTH_H */
