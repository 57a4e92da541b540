/*
 * throttle.c: the failed-login throttle and the client address behind it.
 *
 * A token bucket per client address ([login] failed_rate tokens a second,
 * at most [login] failed_burst): a refused login takes a token, and an
 * address whose bucket holds less than one token is answered 429
 * too_many_requests before any other work (API.md §8).  Only failures
 * take tokens, so an address that only logs in successfully never has an
 * entry at all.
 *
 * The table is process-wide (a worker thread serves whichever address
 * reaches it) and fixed in size ([login] throttle_entries, allocated at
 * start): a set-associative hash of THROTTLE_WAYS entries per set, sets
 * spread over THROTTLE_SHARDS mutexes.  The set of an address comes from
 * SipHash-2-4 under a key drawn at start, so a client cannot aim its
 * addresses at one set.  An entry whose bucket has refilled is worth
 * nothing (a full bucket is what an unknown address has) and is reused
 * at once; when a set is full of live entries the one with the most
 * tokens left goes: pushing out an address that is being throttled takes
 * THROTTLE_WAYS addresses that each failed more often than it did, in its
 * own set, which the keyed hash makes a matter of luck.  Memory never
 * grows: rotating source addresses only recycles entries.
 *
 * The bucket key is the address for IPv4 (and v4-mapped IPv6) and the /64
 * for IPv6: one host is normally given a whole /64, so per-address
 * buckets would hand an IPv6 attacker 2^64 fresh buckets.
 *
 * The client address is the peer's, unless the peer is in [server]
 * trusted_proxies: then X-Forwarded-For is read from the right, and the
 * first address that is not itself a trusted proxy is the client (an
 * entry that does not parse stops the walk at the proxy that added it).
 *
 * Runs on worker threads (lookups) and the main thread (parsing the
 * configuration); nothing blocks but the shard mutexes, held for a few
 * comparisons.
 */
#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define THROTTLE_WAYS      8
#define THROTTLE_SHARDS    64
#define THROTTLE_MAX_HOPS  32 /* X-Forwarded-For entries looked at */
#define THROTTLE_MAX_CIDRS 256

struct throttle_entry {
	struct throttle_key key;
	double tokens; /* at `at` */
	double at;     /* monotonic seconds of the last update */
	int used;
};

struct throttle {
	struct throttle_entry *entries;         /* nsets * THROTTLE_WAYS */
	size_t nsets;                           /* a power of two */
	uint64_t k0, k1;                        /* SipHash key */
	pthread_mutex_t locks[THROTTLE_SHARDS]; /* set i: locks[i % SHARDS] */
};

struct throttle_cidr {
	unsigned char net[16]; /* IPv6 or v4-mapped IPv4 */
	int bits;              /* of the 128 */
};

struct throttle_cidrs {
	struct throttle_cidr *v;
	size_t n;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                   \
	do {                       \
		v0 += v1;          \
		v1 = ROTL(v1, 13); \
		v1 ^= v0;          \
		v0 = ROTL(v0, 32); \
		v2 += v3;          \
		v3 = ROTL(v3, 16); \
		v3 ^= v2;          \
		v0 += v3;          \
		v3 = ROTL(v3, 21); \
		v3 ^= v0;          \
		v2 += v1;          \
		v1 = ROTL(v1, 17); \
		v1 ^= v2;          \
		v2 = ROTL(v2, 32); \
	} while (0)

/* SipHash-2-4 of a 16-byte key (two message words plus the length). */
static uint64_t
throttle_siphash(const struct throttle *t, const struct throttle_key *key)
{
	uint64_t v0 = t->k0 ^ 0x736f6d6570736575ULL;
	uint64_t v1 = t->k1 ^ 0x646f72616e646f6dULL;
	uint64_t v2 = t->k0 ^ 0x6c7967656e657261ULL;
	uint64_t v3 = t->k1 ^ 0x7465646279746573ULL;
	uint64_t m[3];
	size_t i;

	memcpy(&m[0], key->b, 8);
	memcpy(&m[1], key->b + 8, 8);
	m[2] = (uint64_t)16 << 56;
	for (i = 0; i < 3; i++) {
		v3 ^= m[i];
		SIPROUND;
		SIPROUND;
		v0 ^= m[i];
	}
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return (v0 ^ v1 ^ v2 ^ v3);
}

/* A table of about `entries` entries (at least one set). */
struct throttle *
throttle_new(size_t entries)
{
	struct throttle *t;
	size_t i;

	t = xcalloc(1, sizeof *t);
	t->nsets = 1;
	while (t->nsets * 2 * THROTTLE_WAYS <= entries)
		t->nsets *= 2;
	t->entries = xcalloc(t->nsets * THROTTLE_WAYS, sizeof *t->entries);
	util_random_bytes(&t->k0, sizeof t->k0);
	util_random_bytes(&t->k1, sizeof t->k1);
	for (i = 0; i < THROTTLE_SHARDS; i++)
		pthread_mutex_init(&t->locks[i], NULL);
	return (t);
}

/* Free a table. */
void
throttle_free(struct throttle *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < THROTTLE_SHARDS; i++)
		pthread_mutex_destroy(&t->locks[i]);
	free(t->entries);
	free(t);
}

/* The number of entries the table holds. */
size_t
throttle_capacity(const struct throttle *t)
{
	return (t->nsets * THROTTLE_WAYS);
}

/* Tokens in an entry's bucket at now (refilled, capped at burst). */
double
throttle_tokens_at(double tokens, double at, double rate, double burst,
    double now)
{
	if (now > at)
		tokens += (now - at) * rate;
	return (tokens > burst ? burst : tokens);
}

/*
 * Whole seconds until a bucket holding tokens has one token again (at
 * least 1: Retry-After 0 would invite an immediate retry).
 */
long
throttle_retry_after(double tokens, double rate)
{
	double s;

	if (rate <= 0)
		return (1);
	s = ceil((1.0 - tokens) / rate);
	return (s < 1 ? 1 : (long)s);
}

/* Lock the set of key; returns its first entry. */
static struct throttle_entry *
throttle_set_lock(struct throttle *t, const struct throttle_key *key,
    pthread_mutex_t **lock)
{
	size_t set = (size_t)throttle_siphash(t, key) & (t->nsets - 1);

	*lock = &t->locks[set % THROTTLE_SHARDS];
	pthread_mutex_lock(*lock);
	return (&t->entries[set * THROTTLE_WAYS]);
}

/* The live entry of key in a locked set, or NULL. */
static struct throttle_entry *
throttle_find(struct throttle_entry *set, const struct throttle_key *key)
{
	size_t i;

	for (i = 0; i < THROTTLE_WAYS; i++) {
		if (set[i].used &&
		    memcmp(set[i].key.b, key->b, sizeof key->b) == 0)
			return (&set[i]);
	}
	return (NULL);
}

/*
 * The entry to (re)use for a new key in a locked set: a free one, else
 * one whose bucket is full again, else the one with the most tokens.
 */
static struct throttle_entry *
throttle_victim(struct throttle_entry *set, double rate, double burst,
    double now)
{
	struct throttle_entry *best = NULL;
	double tokens, most = -1;
	size_t i;

	for (i = 0; i < THROTTLE_WAYS; i++) {
		if (!set[i].used)
			return (&set[i]);
		tokens = throttle_tokens_at(set[i].tokens, set[i].at, rate,
		    burst, now);
		if (tokens >= burst)
			return (&set[i]);
		if (tokens > most) {
			most = tokens;
			best = &set[i];
		}
	}
	return (best);
}

/*
 * May key try (again)?  0, or the seconds until it may (its bucket holds
 * less than one token).  Takes nothing and creates no entry.
 */
long
throttle_check(struct throttle *t, const struct throttle_key *key, double rate,
    double burst, double now)
{
	struct throttle_entry *set, *e;
	pthread_mutex_t *lock;
	double tokens;
	long wait = 0;

	if (t == NULL || rate <= 0)
		return (0);
	set = throttle_set_lock(t, key, &lock);
	if ((e = throttle_find(set, key)) != NULL) {
		tokens = throttle_tokens_at(e->tokens, e->at, rate, burst, now);
		if (tokens < 1.0)
			wait = throttle_retry_after(tokens, rate);
	}
	pthread_mutex_unlock(lock);
	return (wait);
}

/* key failed a login: take one token from its bucket. */
void
throttle_fail(struct throttle *t, const struct throttle_key *key, double rate,
    double burst, double now)
{
	struct throttle_entry *set, *e;
	pthread_mutex_t *lock;
	double tokens = burst;

	if (t == NULL || rate <= 0)
		return;
	set = throttle_set_lock(t, key, &lock);
	if ((e = throttle_find(set, key)) != NULL)
		tokens = throttle_tokens_at(e->tokens, e->at, rate, burst, now);
	else {
		e = throttle_victim(set, rate, burst, now);
		e->key = *key;
		e->used = 1;
	}
	e->tokens = tokens >= 1.0 ? tokens - 1.0 : 0.0;
	e->at = now;
	pthread_mutex_unlock(lock);
}

/*
 * Parse an address literal (IPv4, IPv6, or IPv6 in brackets; an IPv4
 * address may carry ":port", as some proxies write it) into 16 bytes,
 * IPv4 as v4-mapped IPv6.  0 or -1.
 */
int
throttle_addr_parse(const char *s, unsigned char out[16])
{
	char buf[INET6_ADDRSTRLEN + 8], *p;
	struct in_addr a4;
	size_t n = strlen(s);

	if (n == 0 || n >= sizeof buf)
		return (-1);
	memcpy(buf, s, n + 1);
	p = buf;
	if (*p == '[') {
		if ((p = strchr(buf, ']')) == NULL)
			return (-1);
		*p = '\0';
		p = buf + 1;
	} else if (strchr(p, ':') == strrchr(p, ':') && strchr(p, ':') != NULL)
		*strchr(p, ':') = '\0'; /* a.b.c.d:port */
	if (inet_pton(AF_INET, p, &a4) == 1) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, &a4, 4);
		return (0);
	}
	return (inet_pton(AF_INET6, p, out) == 1 ? 0 : -1);
}

/* Is a 16-byte address v4-mapped (::ffff:a.b.c.d)? */
static int
throttle_is_v4(const unsigned char a[16])
{
	static const unsigned char prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0xff, 0xff };

	return (memcmp(a, prefix, sizeof prefix) == 0);
}

/* The bucket of an address: itself for IPv4, its /64 for IPv6. */
void
throttle_key_of(const unsigned char addr[16], struct throttle_key *key)
{
	memcpy(key->b, addr, 16);
	if (!throttle_is_v4(addr))
		memset(key->b + 8, 0, 8);
}

/* Does addr lie in c? */
static int
throttle_cidr_match(const struct throttle_cidr *c, const unsigned char a[16])
{
	int full = c->bits / 8, rest = c->bits % 8;
	unsigned char mask;

	if (memcmp(c->net, a, (size_t)full) != 0)
		return (0);
	if (rest == 0)
		return (1);
	mask = (unsigned char)(0xff << (8 - rest));
	return ((c->net[full] & mask) == (a[full] & mask));
}

/* Is addr in any of the CIDRs (NULL: none)? */
int
throttle_cidrs_match(const struct throttle_cidrs *l, const unsigned char a[16])
{
	size_t i;

	for (i = 0; l != NULL && i < l->n; i++) {
		if (throttle_cidr_match(&l->v[i], a))
			return (1);
	}
	return (0);
}

/* Parse one "addr" or "addr/bits" into c; 0 or -1. */
static int
throttle_cidr_parse(const char *s, struct throttle_cidr *c)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash;
	struct in_addr a4;
	long bits, max = 128;
	int i;

	if (strlen(s) >= sizeof buf)
		return (-1);
	snprintf(buf, sizeof buf, "%s", s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		memset(c->net, 0, 10);
		c->net[10] = c->net[11] = 0xff;
		memcpy(c->net + 12, &a4, 4);
		max = 32;
	} else if (inet_pton(AF_INET6, buf, c->net) != 1)
		return (-1);
	if (slash == NULL)
		bits = max;
	else if (util_parse_long(slash, 0, max, &bits) != 0)
		return (-1);
	c->bits = (int)(max == 32 ? bits + 96 : bits);
	for (i = c->bits; i < 128; i++) { /* host bits must be zero */
		if (c->net[i / 8] & (0x80 >> (i % 8)))
			return (-1);
	}
	return (0);
}

/*
 * Parse [server] trusted_proxies: a comma list of addresses and CIDRs
 * (NULL or empty: none).  NULL with *cause on a bad entry.
 */
struct throttle_cidrs *
throttle_cidrs_parse(const char *text, char **cause)
{
	struct throttle_cidrs *l = xcalloc(1, sizeof *l);
	char *copy, *p, *e;

	copy = p = xstrdup(text != NULL ? text : "");
	while ((e = strsep(&p, ",")) != NULL) {
		e = util_trim(e);
		if (*e == '\0')
			continue;
		if (l->n == THROTTLE_MAX_CIDRS) {
			xasprintf(cause, "more than %d entries",
			    THROTTLE_MAX_CIDRS);
			goto fail;
		}
		l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
		if (throttle_cidr_parse(e, &l->v[l->n]) != 0) {
			xasprintf(cause,
			    "\"%.64s\" is not an address or a CIDR with its host bits zero",
			    e);
			goto fail;
		}
		l->n++;
	}
	free(copy);
	return (l);
fail:
	free(copy);
	throttle_cidrs_free(l);
	return (NULL);
}

/* Free a CIDR list. */
void
throttle_cidrs_free(struct throttle_cidrs *l)
{
	if (l == NULL)
		return;
	free(l->v);
	free(l);
}

/*
 * The client behind a trusted proxy: walk the X-Forwarded-For list (xff,
 * comma-separated, oldest first) from the right while the address in
 * hand is a trusted proxy.  addr holds the peer on entry and the client
 * on return; 1 when it changed, else 0.
 */
int
throttle_forwarded_for(const struct throttle_cidrs *trusted, const char *xff,
    unsigned char addr[16])
{
	unsigned char next[16];
	char *copy, *end, *e;
	int hops = 0, changed = 0;

	if (xff == NULL || trusted == NULL || trusted->n == 0)
		return (0);
	copy = xstrdup(xff);
	end = copy + strlen(copy);
	while (
	    hops++ < THROTTLE_MAX_HOPS && throttle_cidrs_match(trusted, addr)) {
		while (end > copy && end[-1] != ',')
			end--;
		e = util_trim(end);
		if (throttle_addr_parse(e, next) != 0)
			break;
		memcpy(addr, next, 16);
		changed = 1;
		if (end == copy)
			break;
		*--end = '\0';
	}
	free(copy);
	return (changed);
}

/* Format a 16-byte address (IPv4 for v4-mapped) into buf. */
void
throttle_addr_format(const unsigned char a[16], char *buf, size_t len)
{
	if (throttle_is_v4(a))
		inet_ntop(AF_INET, a + 12, buf, (socklen_t)len);
	else
		inet_ntop(AF_INET6, a, buf, (socklen_t)len);
}

/* The bucket of a request's client; 0, or -1 without a client address. */
static int
throttle_request_key(const struct request *r, struct throttle_key *key)
{
	if (!r->client_addr_ok || r->worker == NULL)
		return (-1);
	throttle_key_of(r->client_addr, key);
	return (0);
}

/*
 * Before a login does anything: 0 when its client may try, else the
 * seconds until it may (the caller answers 429 with Retry-After).
 */
long
throttle_login_check(const struct request *r)
{
	struct throttle_key key;

	if (throttle_request_key(r, &key) != 0)
		return (0);
	return (throttle_check(r->worker->srv->throttle, &key,
	    (double)r->cfg->login_failed_rate,
	    (double)r->cfg->login_failed_burst,
	    (double)util_monotonic_us() / 1e6));
}

/*
 * After a login was answered: a refusal that is the client's doing (any
 * 4xx but the throttle's own 429) takes a token.  A 5xx (the cluster,
 * Keystone or the server failed) and a success take none.
 */
void
throttle_login_done(const struct request *r)
{
	struct throttle_key key;

	if (r->status < 400 || r->status >= 500 || r->status == 429 ||
	    throttle_request_key(r, &key) != 0)
		return;
	throttle_fail(r->worker->srv->throttle, &key,
	    (double)r->cfg->login_failed_rate,
	    (double)r->cfg->login_failed_burst,
	    (double)util_monotonic_us() / 1e6);
}
