/*
 * token.c: where the token is minted (and read back).
 *
 * Holds the Fernet key set in use (shared read-only by the workers behind a
 * rwlock), re-reads the key repository when another node rotates it
 * (checked at most once a second) and on SIGHUP, and mints and decodes
 * tokens with fernet.c.  The methods bitmask is computed once from [auth].
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

static pthread_rwlock_t token_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct fernet_keys *token_keys;
static char *token_repo;
static uint64_t token_methods;
static _Atomic double token_checked;

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
		free(repo);
		return (-1);
	}
	n = fernet_keys_count(keys);
	pthread_rwlock_wrlock(&token_lock);
	if (token_repo != NULL && strcmp(token_repo, repo) == 0) {
		old = token_keys;
		token_keys = keys;
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
	if (changed && token_reload(&cause) != 0) {
		log_err("fernet keys: reload failed, old keys stay in use: %s",
		    cause);
		free(cause);
	}
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
