/*
 * keystone_cache.c: bounded, expiring caches of Keystone answers.
 *
 * A cache maps a key (a SHA-256 hex of a token, or "user:<id>") to a JSON
 * value, or to nothing (a negative entry: "Keystone said no"), until an
 * absolute expiry time.  Lookups copy the value out under the cache's
 * mutex, so the caches are process-wide and shared by every worker.  The
 * table is a chained hash with a fixed bucket count; when it holds its
 * maximum, an insert first drops every expired entry and, if still full,
 * the entry that expires first.
 *
 * Owns its entries and their JSON values.  Any thread; never blocks
 * beyond the mutex (held for one lookup or one insert).
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

struct keystone_cache_entry {
	char *key;
	cJSON *value; /* NULL: negative */
	double expires;
	struct keystone_cache_entry *next;
};

struct keystone_cache {
	pthread_mutex_t lock;
	struct keystone_cache_entry **buckets;
	size_t nbuckets;
	size_t count;
	size_t max;
};

/* FNV-1a of a key. */
static size_t
keystone_cache_hash(const char *key)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *key != '\0'; key++) {
		h ^= (unsigned char)*key;
		h *= 1099511628211ULL;
	}
	return ((size_t)h);
}

/* A cache holding at most max entries (at least 1). */
struct keystone_cache *
keystone_cache_new(size_t max)
{
	struct keystone_cache *c;

	c = xcalloc(1, sizeof *c);
	c->max = max > 0 ? max : 1;
	c->nbuckets = 16;
	while (c->nbuckets < c->max)
		c->nbuckets *= 2;
	c->buckets = xcalloc(c->nbuckets, sizeof *c->buckets);
	pthread_mutex_init(&c->lock, NULL);
	return (c);
}

/* Free one entry. */
static void
keystone_cache_entry_free(struct keystone_cache_entry *e)
{
	free(e->key);
	cJSON_Delete(e->value);
	free(e);
}

/* Drop every entry; the caller holds the lock. */
static void
keystone_cache_empty(struct keystone_cache *c)
{
	struct keystone_cache_entry *e, *next;
	size_t i;

	for (i = 0; i < c->nbuckets; i++) {
		for (e = c->buckets[i]; e != NULL; e = next) {
			next = e->next;
			keystone_cache_entry_free(e);
		}
		c->buckets[i] = NULL;
	}
	c->count = 0;
}

/* Free a cache and everything in it. */
void
keystone_cache_free(struct keystone_cache *c)
{
	if (c == NULL)
		return;
	keystone_cache_empty(c);
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c);
}

/* Forget everything (reload, tests). */
void
keystone_cache_clear(struct keystone_cache *c)
{
	pthread_mutex_lock(&c->lock);
	keystone_cache_empty(c);
	pthread_mutex_unlock(&c->lock);
}

/* The link that points at key's entry (or at the chain's end). */
static struct keystone_cache_entry **
keystone_cache_find(struct keystone_cache *c, const char *key)
{
	struct keystone_cache_entry **ep;

	ep = &c->buckets[keystone_cache_hash(key) & (c->nbuckets - 1)];
	while (*ep != NULL && strcmp((*ep)->key, key) != 0)
		ep = &(*ep)->next;
	return (ep);
}

/* Unlink and free the entry *ep points at; the caller holds the lock. */
static void
keystone_cache_unlink(struct keystone_cache *c,
    struct keystone_cache_entry **ep)
{
	struct keystone_cache_entry *e = *ep;

	*ep = e->next;
	keystone_cache_entry_free(e);
	c->count--;
}

/* Drop expired entries, then the soonest to expire while full. */
static void
keystone_cache_make_room(struct keystone_cache *c, double now)
{
	struct keystone_cache_entry **ep, **soonest;
	size_t i;

	for (i = 0; i < c->nbuckets; i++) {
		ep = &c->buckets[i];
		while (*ep != NULL) {
			if ((*ep)->expires <= now)
				keystone_cache_unlink(c, ep);
			else
				ep = &(*ep)->next;
		}
	}
	while (c->count >= c->max) {
		soonest = NULL;
		for (i = 0; i < c->nbuckets; i++) {
			for (ep = &c->buckets[i]; *ep != NULL;
			     ep = &(*ep)->next) {
				if (soonest == NULL ||
				    (*ep)->expires < (*soonest)->expires)
					soonest = ep;
			}
		}
		keystone_cache_unlink(c, soonest);
	}
}

/*
 * Remember key until expires (absolute, util_now() seconds); value is
 * taken (NULL makes a negative entry).  An existing entry is replaced.
 */
void
keystone_cache_put(struct keystone_cache *c, const char *key, cJSON *value,
    double expires, double now)
{
	struct keystone_cache_entry **ep, *e;

	if (expires <= now) {
		cJSON_Delete(value);
		return;
	}
	pthread_mutex_lock(&c->lock);
	ep = keystone_cache_find(c, key);
	if (*ep != NULL)
		keystone_cache_unlink(c, ep);
	if (c->count >= c->max)
		keystone_cache_make_room(c, now);
	e = xcalloc(1, sizeof *e);
	e->key = xstrdup(key);
	e->value = value;
	e->expires = expires;
	ep = &c->buckets[keystone_cache_hash(key) & (c->nbuckets - 1)];
	e->next = *ep;
	*ep = e;
	c->count++;
	pthread_mutex_unlock(&c->lock);
}

/*
 * Look key up at time now.  Returns 0 on a miss (or an expired entry,
 * which is dropped), 1 on a hit with *value a copy of the value (NULL for
 * a negative entry; the caller frees it).
 */
int
keystone_cache_get(struct keystone_cache *c, const char *key, double now,
    cJSON **value)
{
	struct keystone_cache_entry **ep;
	int hit = 0;

	*value = NULL;
	pthread_mutex_lock(&c->lock);
	ep = keystone_cache_find(c, key);
	if (*ep != NULL && (*ep)->expires <= now)
		keystone_cache_unlink(c, ep);
	else if (*ep != NULL) {
		hit = 1;
		if ((*ep)->value != NULL)
			*value = cJSON_Duplicate((*ep)->value, 1);
	}
	pthread_mutex_unlock(&c->lock);
	return (hit);
}

/*
 * Drop every positive entry whose value pred(value, arg) matches (the
 * revocation events of keystone_revoke.c).  Returns how many were dropped.
 */
size_t
keystone_cache_drop_if(struct keystone_cache *c,
    int (*pred)(const cJSON *, void *), void *arg)
{
	struct keystone_cache_entry **ep;
	size_t i, n = 0;

	pthread_mutex_lock(&c->lock);
	for (i = 0; i < c->nbuckets; i++) {
		ep = &c->buckets[i];
		while (*ep != NULL) {
			if ((*ep)->value != NULL && pred((*ep)->value, arg)) {
				keystone_cache_unlink(c, ep);
				n++;
			} else
				ep = &(*ep)->next;
		}
	}
	pthread_mutex_unlock(&c->lock);
	return (n);
}

/* Entries held (expired ones included until they are noticed). */
size_t
keystone_cache_count(struct keystone_cache *c)
{
	size_t n;

	pthread_mutex_lock(&c->lock);
	n = c->count;
	pthread_mutex_unlock(&c->lock);
	return (n);
}

/*
 * The process-wide caches, the positive TTL ([keystone] cache_ttl) and the
 * revocation event poll interval ([keystone] revocation_interval).
 */
struct keystone_cache *keystone_token_cache;
struct keystone_cache *keystone_user_cache;
long keystone_cache_ttl = 30;
long keystone_revoke_interval = 10;

/* Create the process-wide caches (main thread, before the workers). */
void
keystone_caches_init(const struct config *cfg)
{
	keystone_caches_free();
	keystone_token_cache = keystone_cache_new(KEYSTONE_TOKEN_CACHE_MAX);
	keystone_user_cache = keystone_cache_new(KEYSTONE_USER_CACHE_MAX);
	keystone_cache_ttl = cfg->keystone_cache_ttl;
	keystone_revoke_interval = cfg->keystone_revocation_interval;
}

/* Free the process-wide caches (main thread, after the workers). */
void
keystone_caches_free(void)
{
	keystone_cache_free(keystone_token_cache);
	keystone_cache_free(keystone_user_cache);
	keystone_token_cache = keystone_user_cache = NULL;
}
