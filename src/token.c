/*
 * token.c: where the token is minted (and read back).
 *
 * Holds the Fernet key set in use (shared read-only by the workers behind a
 * rwlock), re-reads the key repository when another node rotates it
 * (checked at most once a second) and on SIGHUP, and mints and decodes
 * tokens with fernet.c.  The methods bitmask is computed once from [auth].
 *
 * A failed reload keeps the keys in use but does not stay quiet: it is
 * counted (token_key_status(): /metrics and /readyz show the errors and
 * for how long reloads have been failing), logged at once, then at most
 * once a minute while it goes on (TOKEN_FAIL_LOG_EVERY; the check runs
 * every second), and the recovery is logged.
 *
 * token_init() runs on the main thread (errors are fatal); token_mint()
 * and token_read() run on workers and take the read lock only for the
 * microseconds of one encryption.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define TOKEN_FAIL_LOG_EVERY 60.0 /* seconds between failure messages */

static pthread_rwlock_t token_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct fernet_keys *token_keys;
static char *token_repo;
static uint64_t token_methods;
static _Atomic double token_checked;

/* Reload health; token_fail_lock guards the log rate limit. */
static pthread_mutex_t token_fail_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic double token_primary_since;
static _Atomic double token_loaded_at;
static _Atomic unsigned long token_reload_errors;
static _Atomic double token_failing_since;
static double token_fail_logged;          /* token_fail_lock */
static unsigned long token_fail_unlogged; /* token_fail_lock */

/* A key set is now in use (lock held by the caller or not: atomics). */
static void
token_loaded(const struct fernet_keys *keys)
{
	double now = util_now(), since;

	token_primary_since = fernet_keys_primary_since(keys);
	token_loaded_at = now;
	pthread_mutex_lock(&token_fail_lock);
	since = token_failing_since;
	if (since != 0)
		log_info("fernet keys: reloading works again after %.0f s of failures",
		    now - since);
	token_failing_since = 0;
	token_fail_logged = 0;
	token_fail_unlogged = 0;
	pthread_mutex_unlock(&token_fail_lock);
}

/*
 * A reload failed (the old keys stay in use): count it, log the first
 * failure of a run at once and then at most once a minute.
 */
static void
token_reload_failed(const char *cause)
{
	double now = util_now(), since;

	atomic_fetch_add(&token_reload_errors, 1);
	pthread_mutex_lock(&token_fail_lock);
	if ((since = token_failing_since) == 0)
		token_failing_since = since = now;
	token_fail_unlogged++;
	if (token_fail_logged == 0 ||
	    now - token_fail_logged >= TOKEN_FAIL_LOG_EVERY) {
		log_err("fernet keys: reload failed (%lu time(s) since the last message, failing for %.0f s), old keys stay in use: %s",
		    token_fail_unlogged, now - since, cause);
		token_fail_logged = now;
		token_fail_unlogged = 0;
	}
	pthread_mutex_unlock(&token_fail_lock);
}

static void token_maybe_reload(void);

/*
 * The loaded key set and the reload health.  Checks the repository first
 * (at most once a second), so /readyz probes and scrapes notice a
 * rotation, or a repository that stopped loading, even without logins.
 */
void
token_key_status(struct token_key_status *st)
{
	token_maybe_reload();
	memset(st, 0, sizeof *st);
	pthread_rwlock_rdlock(&token_lock);
	if (token_keys != NULL) {
		st->nkeys = fernet_keys_count(token_keys);
		st->primary = fernet_keys_primary(token_keys);
	}
	pthread_rwlock_unlock(&token_lock);
	st->primary_since = token_primary_since;
	st->loaded_at = token_loaded_at;
	st->reload_errors = atomic_load(&token_reload_errors);
	st->failing_since = token_failing_since;
}

/* Load the key repository and the methods bitmask at startup. */
int
token_init(const struct config *cfg, char **cause)
{
	struct fernet_keys *keys;
	size_t n;

	if (fernet_methods_mask(cfg->auth_methods, cfg->auth_method,
		&token_methods, cause) != 0)
		return (-1);
	if ((keys = fernet_keys_load(cfg->fernet_key_repository, cause)) ==
	    NULL)
		return (-1);
	n = fernet_keys_count(keys); /* a reload may free keys once unlocked */
	pthread_rwlock_wrlock(&token_lock);
	fernet_keys_free(token_keys);
	token_keys = keys;
	token_loaded(keys);
	free(token_repo);
	token_repo = xstrdup(cfg->fernet_key_repository);
	pthread_rwlock_unlock(&token_lock);
	token_checked = util_now();
	log_info("fernet keys: %zu loaded from %s", n,
	    cfg->fernet_key_repository);
	return (0);
}

/*
 * Re-read the repository; a failure keeps the keys in use.  Workers and
 * the main thread (SIGHUP, which may also switch repositories in
 * token_init) call this concurrently: the path is copied under the lock,
 * and keys read from a repository no longer in use are dropped.
 */
int
token_reload(char **cause)
{
	struct fernet_keys *keys, *old;
	char *repo = NULL;
	size_t n;

	pthread_rwlock_rdlock(&token_lock);
	if (token_repo != NULL)
		repo = xstrdup(token_repo);
	pthread_rwlock_unlock(&token_lock);
	if (repo == NULL)
		return (0);
	if ((keys = fernet_keys_load(repo, cause)) == NULL) {
		token_reload_failed(*cause);
		free(repo);
		return (-1);
	}
	n = fernet_keys_count(keys);
	pthread_rwlock_wrlock(&token_lock);
	if (token_repo != NULL && strcmp(token_repo, repo) == 0) {
		old = token_keys;
		token_keys = keys;
		token_loaded(keys);
	} else
		old = keys; /* the repository changed meanwhile */
	pthread_rwlock_unlock(&token_lock);
	if (old != keys)
		log_info("fernet keys: %zu loaded from %s", n, repo);
	fernet_keys_free(old);
	free(repo);
	return (0);
}

/* Reload when the repository changed; checked at most once a second. */
static void
token_maybe_reload(void)
{
	double now = util_now(), last = token_checked;
	char *cause = NULL;
	int changed;

	if (now - last < 1.0 ||
	    !atomic_compare_exchange_strong(&token_checked, &last, now))
		return;
	pthread_rwlock_rdlock(&token_lock);
	changed =
	    token_keys != NULL && fernet_keys_changed(token_repo, token_keys);
	pthread_rwlock_unlock(&token_lock);
	if (changed && token_reload(&cause) != 0)
		free(cause); /* counted and logged by token_reload */
}

/* Are keys loaded (for /readyz)? */
int
token_ready(void)
{
	int ready;

	pthread_rwlock_rdlock(&token_lock);
	ready = token_keys != NULL && fernet_keys_count(token_keys) > 0;
	pthread_rwlock_unlock(&token_lock);
	return (ready);
}

/* The methods bitmask stamped into tokens. */
uint64_t
token_methods_mask(void)
{
	return (token_methods);
}

/* Encrypt a payload with the primary key (allocated token). */
char *
token_mint(struct fernet_payload *p, char **cause)
{
	char *t;

	token_maybe_reload();
	pthread_rwlock_rdlock(&token_lock);
	if (token_keys == NULL) {
		xasprintf(cause, "no fernet keys loaded");
		t = NULL;
	} else
		t = fernet_encode(token_keys, p, cause);
	pthread_rwlock_unlock(&token_lock);
	return (t);
}

/* Decrypt and decode a token with any key; 0 or -1. */
int
token_read(const char *token, struct fernet_payload *p, char **cause)
{
	int rc = -1;

	token_maybe_reload();
	pthread_rwlock_rdlock(&token_lock);
	if (token_keys == NULL)
		xasprintf(cause, "no fernet keys loaded");
	else
		rc = fernet_decode(token_keys, token, p, cause);
	pthread_rwlock_unlock(&token_lock);
	return (rc);
}

/* Free the key set at exit. */
void
token_shutdown(void)
{
	pthread_rwlock_wrlock(&token_lock);
	fernet_keys_free(token_keys);
	token_keys = NULL;
	free(token_repo);
	token_repo = NULL;
	pthread_rwlock_unlock(&token_lock);
}
