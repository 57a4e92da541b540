/*
 * review_cache.c: TokenReview results shared by every worker, one review
 * per JWT at a time, per-instance review slots with a bounded queue, and
 * a per-instance circuit breaker (API.md §8).
 *
 * The cache.  Key: SHA-256 of (JWT, instance id, requested audience).  An
 * authenticated review is reused until min(the instance's
 * review_cache_ttl, the JWT's exp); a refused one (authenticated false)
 * for [k8s_auth] negative_cache_ttl; errors are never kept.  Entries hold
 * the parsed outcome packed into one small buffer (tagged NUL-terminated
 * strings, status.user.extra as compact JSON: a few hundred bytes, never
 * the raw answer; the pod and node are read back out of extra).  At most [k8s_auth] review_cache_size results, least
 * recently used first out.  Each instance has a generation: an admin
 * write to the instance (host, CA, reviewer, keys: any update) or its
 * deletion bumps it (review_cache_forget), which drops its results and
 * detaches its reviews in flight so they are not kept.  The login still
 * runs every local check (exp, audience, bounds) and step 4 on a cached
 * outcome exactly as on a fresh one.
 *
 * Single flight.  A login whose key has a review in flight does not start
 * another one: it waits on that flight (review_wait, state WAITING)
 * whatever worker it runs on.  The owner's worker finishes the flight and
 * posts a copy of the outcome to each waiter's worker mailbox (a list and
 * an event activated across threads); the waiter's callback always runs
 * on its own worker thread.  An error wakes the waiters with the error and
 * is not cached.  A login whose client goes away cancels its wait
 * (review_cache_cancel, on its own thread): a waiter is unlinked, a
 * posted result is dropped unread, an owner is orphaned: its review goes
 * on for the waiters and the cache, it only calls nobody back.
 *
 * Slots.  At most [k8s_auth] max_reviews_per_instance reviews of one
 * instance are in flight process-wide; an owner beyond it waits in the
 * instance's queue (at most review_queue_size; beyond it 503
 * cluster_unavailable with Retry-After).  A finishing review hands its
 * slot to the head of the queue by posting a START to that owner's
 * worker, which launches the transfer on its own fetch machinery.
 *
 * Breaker.  [k8s_auth] breaker_failures consecutive cluster errors (5xx,
 * 429, timeout, connection: cluster_unavailable and cluster_timeout; a
 * refusal, a 401/403 or a TLS error is no sign of an overloaded cluster)
 * open it: logins that need a review get 503 cluster_unavailable with
 * Retry-After for breaker_cooldown seconds, queued owners included;
 * cached results keep working.  Then it is half-open: the next review is
 * the one probe, and others fail fast until it answers; an answer closes
 * the breaker, a cluster error opens it again.
 *
 * Locks: rc_lock guards everything below marked so (one process-wide
 * mutex, held for hash and list work only, never across a call into curl
 * or a callback); each mailbox has its own lock, never taken with rc_lock
 * held, and held across event_active() so that closing the mailbox
 * (event_free under the same lock) cannot race a post.  Runs on worker threads; never blocks on the network.
 */
#include <sys/queue.h>

#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "k8sauth.h"

#define RC_KEY_LEN 32

enum rc_breaker { RC_CLOSED = 0, RC_OPEN = 1, RC_HALF = 2 };
enum rc_wstate {
	RC_W_NEW,
	RC_W_RUNNING,
	RC_W_QUEUED,
	RC_W_WAITING,
	RC_W_POSTED
};
enum rc_post { RC_POST_START, RC_POST_RESULT };

struct rc_entry;

/* A login waiting for a review: owner of a flight, waiter, or uncached. */
struct review_wait {
	struct worker *w;
	k8s_review_cb cb; /* NULL: orphaned (the client went away) */
	void *arg;
	int state;    /* enum rc_wstate; rc_lock */
	int post;     /* enum rc_post, while posted */
	int probe;    /* the half-open breaker's probe */
	int slot;     /* holds one of the instance's slots */
	uint64_t gen; /* the instance's generation when started */
	struct rc_inst *ri;
	struct rc_entry *e;         /* flight owned or waited on, or NULL */
	struct k8s_review_req *req; /* owner, until launched */
	struct k8s_review *review;  /* owner, while the transfer runs */
	double jwt_exp;             /* 0: none */
	long ttl;                   /* the instance's review_cache_ttl */
	long neg_ttl;
	/* A posted result. */
	enum reason reason;
	char *message;
	char *retry_after;
	char *blob;
	size_t bloblen;
	TAILQ_ENTRY(review_wait) link; /* waiters, queue or mailbox */
};
TAILQ_HEAD(rc_waits, review_wait);

/* One cached result or one flight (rc_lock). */
struct rc_entry {
	uint8_t key[RC_KEY_LEN];
	struct rc_inst *ri;
	uint64_t gen;
	int done;           /* a result, else a flight */
	int hashed;         /* findable in rc_table */
	enum reason reason; /* REASON_NONE or REASON_token_invalid */
	double expires;
	char *blob; /* the packed outcome */
	size_t bloblen;
	struct rc_entry *hnext;
	int owner_worker;          /* flights: the owner's worker id */
	TAILQ_ENTRY(rc_entry) lru; /* results only */
	struct rc_waits waiters;   /* flights only */
};
TAILQ_HEAD(rc_lru, rc_entry);

/* Per-instance slots, queue, breaker and counters (rc_lock). */
struct rc_inst {
	char id[ID_LEN + 1];
	uint64_t gen;
	long inflight;
	long max_inflight;
	struct rc_waits queue;
	long queued;
	int breaker;
	long failures;
	long max_failures; /* [k8s_auth] breaker_failures, as of the last login */
	long cooldown;     /* [k8s_auth] breaker_cooldown, likewise */
	double open_until;
	int probing;
	unsigned long performed, hits, negative_hits, merged, rejected,
	    fast_failed, opens;
	struct rc_inst *next;
};

/* A worker's inbox of posted results and starts. */
struct rc_mailbox {
	pthread_mutex_t lock;
	struct rc_waits items; /* lock */
	struct event *ev;
	int closed;              /* lock */
	struct rc_mailbox *next; /* rc_mailboxes; rc_lock */
};

static pthread_mutex_t rc_lock = PTHREAD_MUTEX_INITIALIZER;
static struct rc_entry **rc_table; /* rc_lock */
static size_t rc_nbuckets;         /* rc_lock; a power of two */
static long rc_max;                /* rc_lock: results kept at most */
static size_t rc_count;            /* rc_lock: results kept */
static size_t rc_flights;          /* rc_lock */
static unsigned long rc_evictions; /* rc_lock */
static struct rc_lru rc_lru = TAILQ_HEAD_INITIALIZER(rc_lru); /* rc_lock */
static struct rc_inst *rc_insts;                              /* rc_lock */
static struct rc_mailbox *rc_mailboxes;                       /* rc_lock */

static void rc_launch(struct review_wait *);
static void rc_abandon_locked(struct review_wait *, struct rc_waits *);

/* A growable buffer for packing an outcome. */
struct rc_buf {
	char *p;
	size_t len;
	size_t cap;
};

/* Append one tagged string (NULL: nothing). */
static void
rc_buf_add(struct rc_buf *b, char tag, const char *s)
{
	size_t n;

	if (s == NULL)
		return;
	n = strlen(s) + 2;
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = xreallocarray(b->p, b->cap, 1);
	}
	b->p[b->len] = tag;
	memcpy(b->p + b->len + 1, s, n - 1);
	b->len += n;
}

/* Pack an authenticated outcome (*len set; the caller frees). */
static char *
rc_pack(const struct k8s_review_outcome *o, size_t *len)
{
	struct rc_buf b = { NULL, 0, 0 };
	char *extra;
	size_t i;

	rc_buf_add(&b, 'u', o->username);
	rc_buf_add(&b, 'i', o->uid);
	rc_buf_add(&b, 'n', o->namespace);
	rc_buf_add(&b, 'm', o->name);
	for (i = 0; i < o->groups.n; i++)
		rc_buf_add(&b, 'g', o->groups.v[i]);
	for (i = 0; i < o->audiences.n; i++)
		rc_buf_add(&b, 'a', o->audiences.v[i]);
	rc_buf_add(&b, 'P', o->pod_name);
	rc_buf_add(&b, 'Q', o->pod_uid);
	rc_buf_add(&b, 'N', o->node_name);
	rc_buf_add(&b, 'O', o->node_uid);
	if (o->extra != NULL) {
		extra = cJSON_PrintUnformatted(o->extra);
		if (extra == NULL)
			fatalx("review cache: cannot print extra");
		rc_buf_add(&b, 'x', extra);
		cJSON_free(extra);
	}
	rc_buf_add(&b, '.', ""); /* never empty */
	b.p = xreallocarray(b.p, b.len, 1);
	*len = b.len;
	return (b.p);
}

/* Add one string to a list. */
static void
rc_strlist_add(struct strlist *l, const char *s)
{
	l->v = xreallocarray(l->v, l->n + 1, sizeof *l->v);
	l->v[l->n++] = xstrdup(s);
}

/*
 * Unpack a packed outcome into o (cleared first).  The pod and node come
 * from their own fields; extra stays text, as a cJSON raw item, until the
 * login policy needs it (api_login.c parses it then): re-parsing it on
 * every hit was 5.6 % of a cached login, for a field only login.lua reads.
 */
static void
rc_unpack(const char *p, size_t len, struct k8s_review_outcome *o)
{
	const char *end = p + len, *s;
	char **dst;

	memset(o, 0, sizeof *o);
	while (p < end) {
		s = p + 1;
		dst = NULL;
		switch (*p) {
		case 'u':
			dst = &o->username;
			break;
		case 'i':
			dst = &o->uid;
			break;
		case 'n':
			dst = &o->namespace;
			break;
		case 'm':
			dst = &o->name;
			break;
		case 'g':
			rc_strlist_add(&o->groups, s);
			break;
		case 'a':
			rc_strlist_add(&o->audiences, s);
			break;
		case 'P':
			dst = &o->pod_name;
			break;
		case 'Q':
			dst = &o->pod_uid;
			break;
		case 'N':
			dst = &o->node_name;
			break;
		case 'O':
			dst = &o->node_uid;
			break;
		case 'x':
			if ((o->extra = cJSON_CreateRaw(s)) == NULL)
				fatalx("review cache: cannot keep extra");
			break;
		default:
			break;
		}
		if (dst != NULL)
			*dst = xstrdup(s);
		p = s + strlen(s) + 1;
	}
}

/*
 * A copy of o's extra as a cJSON object the caller owns (an empty object
 * when there is none): parsed from the text an outcome off the cache
 * keeps (a raw item), else duplicated.  Our own compact print parses
 * back, so a failure here is memory, and fatal.
 */
cJSON *
review_cache_extra_dup(const struct k8s_review_outcome *o)
{
	cJSON *x;

	if (o->extra == NULL)
		x = cJSON_CreateObject();
	else if (cJSON_IsRaw(o->extra))
		x = cJSON_Parse(o->extra->valuestring);
	else
		x = cJSON_Duplicate(o->extra, 1);
	if (x == NULL)
		fatalx("review cache: cannot copy extra");
	return (x);
}

/*
 * The cache key of a review from the JWT's SHA-256 (the login hashes its
 * JWT once, for this and for its log id): SHA-256 over that digest, the
 * instance id and its NUL, and the audience when there is one ("1" and
 * the audience, else "0").  Every field has a fixed length or an end, so
 * two different (JWT, instance, audience) never share a key short of a
 * SHA-256 collision.
 */
void
review_cache_key_digest(const uint8_t jwt_sha[32], const char *instance_id,
    const char *audience, uint8_t key[RC_KEY_LEN])
{
	EVP_MD_CTX *ctx;
	unsigned int n = RC_KEY_LEN;

	if ((ctx = EVP_MD_CTX_new()) == NULL ||
	    EVP_DigestInit_ex(ctx, util_sha256_md(), NULL) != 1 ||
	    EVP_DigestUpdate(ctx, jwt_sha, 32) != 1 ||
	    EVP_DigestUpdate(ctx, instance_id, strlen(instance_id) + 1) != 1 ||
	    EVP_DigestUpdate(ctx, audience != NULL ? "1" : "0", 1) != 1 ||
	    (audience != NULL &&
		EVP_DigestUpdate(ctx, audience, strlen(audience)) != 1) ||
	    EVP_DigestFinal_ex(ctx, key, &n) != 1)
		fatalx("review cache: SHA-256 failed");
	EVP_MD_CTX_free(ctx);
}

/* The cache key of a review, from the JWT itself. */
void
review_cache_key(const char *jwt, const char *instance_id, const char *audience,
    uint8_t key[RC_KEY_LEN])
{
	uint8_t sha[32];

	util_sha256(jwt, strlen(jwt), sha);
	review_cache_key_digest(sha, instance_id, audience, key);
}

/* Make the table on first use; rc_lock held. */
static void
rc_init(long max)
{
	if (rc_table != NULL)
		return;
	rc_max = max;
	rc_nbuckets = 1024;
	while ((long)rc_nbuckets < max && rc_nbuckets < (1u << 24))
		rc_nbuckets <<= 1;
	rc_table = xcalloc(rc_nbuckets, sizeof *rc_table);
}

/* The bucket of a key. */
static struct rc_entry **
rc_bucket(const uint8_t *key)
{
	uint64_t h;

	memcpy(&h, key, sizeof h);
	return (&rc_table[h & (rc_nbuckets - 1)]);
}

/* Find a hashed entry; rc_lock held. */
static struct rc_entry *
rc_find(const uint8_t *key)
{
	struct rc_entry *e;

	for (e = *rc_bucket(key); e != NULL; e = e->hnext) {
		if (memcmp(e->key, key, RC_KEY_LEN) == 0)
			return (e);
	}
	return (NULL);
}

/* Take an entry out of the table (it stays allocated); rc_lock held. */
static void
rc_unhash(struct rc_entry *e)
{
	struct rc_entry **pp;

	if (!e->hashed)
		return;
	for (pp = rc_bucket(e->key); *pp != NULL; pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	e->hashed = 0;
	e->hnext = NULL;
}

/* Drop a result entirely; rc_lock held. */
static void
rc_drop(struct rc_entry *e)
{
	rc_unhash(e);
	TAILQ_REMOVE(&rc_lru, e, lru);
	rc_count--;
	free(e->blob);
	free(e);
}

/* A new hashed entry; rc_lock held. */
static struct rc_entry *
rc_entry_new(const uint8_t *key, struct rc_inst *ri)
{
	struct rc_entry *e, **b;

	e = xcalloc(1, sizeof *e);
	memcpy(e->key, key, RC_KEY_LEN);
	e->ri = ri;
	e->gen = ri->gen;
	TAILQ_INIT(&e->waiters);
	b = rc_bucket(key);
	e->hnext = *b;
	*b = e;
	e->hashed = 1;
	return (e);
}

/*
 * Turn a hashed entry into a result (reason REASON_NONE with o, or
 * REASON_token_invalid) until expires, and evict down to the bound;
 * rc_lock held.
 */
static void
rc_keep(struct rc_entry *e, enum reason reason,
    const struct k8s_review_outcome *o, double expires)
{
	e->done = 1;
	e->reason = reason;
	e->expires = expires;
	if (reason == REASON_NONE)
		e->blob = rc_pack(o, &e->bloblen);
	TAILQ_INSERT_HEAD(&rc_lru, e, lru);
	rc_count++;
	while ((long)rc_count > rc_max) {
		rc_drop(TAILQ_LAST(&rc_lru, rc_lru));
		rc_evictions++;
	}
}

/* The state of an instance, made on first use; rc_lock held. */
static struct rc_inst *
rc_inst_get(const char *id)
{
	struct rc_inst *ri;

	for (ri = rc_insts; ri != NULL; ri = ri->next) {
		if (strcmp(ri->id, id) == 0)
			return (ri);
	}
	ri = xcalloc(1, sizeof *ri);
	snprintf(ri->id, sizeof ri->id, "%s", id);
	TAILQ_INIT(&ri->queue);
	ri->next = rc_insts;
	rc_insts = ri;
	return (ri);
}

/* Fill o from a result entry; rc_lock held. */
static void
rc_hit(const struct rc_entry *e, struct k8s_review_outcome *o)
{
	if (e->reason == REASON_NONE) {
		rc_unpack(e->blob, e->bloblen, o);
		return;
	}
	memset(o, 0, sizeof *o);
	o->reason = e->reason;
	o->message = xstrdup("the cluster did not authenticate the token");
}

/*
 * Look key up at time now: 1 and o filled for a live result of the
 * instance's current generation, else 0 (a stale result is dropped);
 * rc_lock held.  *flight is set to a live flight of that key.
 */
static int
rc_lookup(const uint8_t *key, struct rc_inst *ri, double now,
    struct k8s_review_outcome *o, struct rc_entry **flight)
{
	struct rc_entry *e;

	*flight = NULL;
	if ((e = rc_find(key)) == NULL)
		return (0);
	if (!e->done) {
		if (e->gen == ri->gen && e->ri == ri)
			*flight = e;
		else
			rc_unhash(e); /* finishes without being kept */
		return (0);
	}
	if (e->gen != ri->gen || e->ri != ri || now >= e->expires) {
		rc_drop(e);
		return (0);
	}
	TAILQ_REMOVE(&rc_lru, e, lru);
	TAILQ_INSERT_HEAD(&rc_lru, e, lru);
	rc_hit(e, o);
	if (e->reason == REASON_NONE)
		ri->hits++;
	else
		ri->negative_hits++;
	return (1);
}

/* Set an error outcome. */
static void
rc_fail(struct k8s_review_outcome *o, enum reason reason, long retry,
    const char *msg)
{
	memset(o, 0, sizeof *o);
	o->reason = reason;
	o->message = xstrdup(msg);
	if (retry > 0)
		xasprintf(&o->retry_after, "%ld", retry);
}

/* Seconds until an open breaker lets a probe through (at least 1). */
static long
rc_retry(const struct rc_inst *ri, double now)
{
	double left = ceil(ri->open_until - now);

	return (left >= 1 ? (long)left : 1);
}

/*
 * The breaker before a review: 0 (go on; rv may become the probe) or -1
 * with o failed fast; rc_lock held.
 */
static int
rc_breaker_admit(struct rc_inst *ri, struct review_wait *rv, double now,
    struct k8s_review_outcome *o)
{
	if (ri->breaker == RC_OPEN && now < ri->open_until) {
		ri->fast_failed++;
		rc_fail(o, REASON_cluster_unavailable, rc_retry(ri, now),
		    "the cluster failed repeatedly: logins that need a TokenReview are refused until it recovers");
		return (-1);
	}
	if (ri->breaker == RC_OPEN)
		ri->breaker = RC_HALF;
	if (ri->breaker == RC_HALF && ri->probing) {
		ri->fast_failed++;
		rc_fail(o, REASON_cluster_unavailable, 1,
		    "the cluster failed repeatedly: one TokenReview is probing it");
		return (-1);
	}
	if (ri->breaker == RC_HALF) {
		ri->probing = 1;
		rv->probe = 1;
	}
	return (0);
}

/* Open an instance's breaker; rc_lock held. */
static void
rc_breaker_open(struct rc_inst *ri, double now)
{
	ri->breaker = RC_OPEN;
	ri->open_until = now + (double)ri->cooldown;
	ri->opens++;
	log_warn("review: instance %s: circuit breaker open for %ld s after %ld cluster errors",
	    ri->id, ri->cooldown, ri->failures);
}

/*
 * Count a finished review in the breaker: failed (a cluster error),
 * answered (the cluster answered), or neither; rc_lock held.
 */
static void
rc_breaker_note(struct review_wait *rv, int failed, int answered, double now)
{
	struct rc_inst *ri = rv->ri;

	if (rv->gen != ri->gen)
		return; /* the instance changed meanwhile */
	if (failed)
		ri->failures++;
	else if (answered)
		ri->failures = 0;
	if (rv->probe) {
		ri->probing = 0;
		if (failed)
			rc_breaker_open(ri, now);
		else if (answered) {
			ri->breaker = RC_CLOSED;
			log_info("review: instance %s: circuit breaker closed",
			    ri->id);
		}
		return;
	}
	if (failed && ri->breaker == RC_CLOSED && ri->max_failures > 0 &&
	    ri->failures >= ri->max_failures)
		rc_breaker_open(ri, now);
}

/* Copy an outcome into a wait as its posted result. */
static void
rc_set_result(struct review_wait *rv, const struct k8s_review_outcome *o,
    const char *blob, size_t bloblen)
{
	rv->reason = o->reason;
	rv->message = o->message != NULL ? xstrdup(o->message) : NULL;
	rv->retry_after =
	    o->retry_after != NULL ? xstrdup(o->retry_after) : NULL;
	if (blob != NULL) {
		rv->blob = xmalloc(bloblen);
		memcpy(rv->blob, blob, bloblen);
		rv->bloblen = bloblen;
	}
	rv->state = RC_W_POSTED;
	rv->post = RC_POST_RESULT;
}

/*
 * A flight ended with o: post it to every waiter (onto out), then keep
 * the entry as a result when it may be kept, else free it; rc_lock held.
 */
static void
rc_flight_end(struct rc_entry *e, const struct review_wait *owner,
    const struct k8s_review_outcome *o, double now, struct rc_waits *out)
{
	struct review_wait *w;
	char *blob = NULL;
	size_t bloblen = 0;
	double until = 0;

	if (o->reason == REASON_NONE)
		blob = rc_pack(o, &bloblen);
	while ((w = TAILQ_FIRST(&e->waiters)) != NULL) {
		TAILQ_REMOVE(&e->waiters, w, link);
		w->e = NULL;
		rc_set_result(w, o, blob, bloblen);
		TAILQ_INSERT_TAIL(out, w, link);
	}
	free(blob);
	if (o->reason == REASON_NONE) {
		until = now + (double)owner->ttl;
		if (owner->jwt_exp > 0 && owner->jwt_exp < until)
			until = owner->jwt_exp;
	} else if (o->reason == REASON_token_invalid)
		until = now + (double)owner->neg_ttl;
	rc_flights--;
	if (e->hashed && e->gen == e->ri->gen && until > now && rc_max > 0) {
		rc_keep(e, o->reason, o, until);
		return;
	}
	rc_unhash(e);
	free(e);
}

/*
 * An owner leaves the queue without a slot (breaker open): it and its
 * waiters get o; rc_lock held.
 */
static void
rc_queue_fail(struct review_wait *rv, const struct k8s_review_outcome *o,
    double now, struct rc_waits *out)
{
	if (rv->e != NULL)
		rc_flight_end(rv->e, rv, o, now, out);
	rv->e = NULL;
	rc_set_result(rv, o, NULL, 0); /* rv->req is freed with rv */
	TAILQ_INSERT_TAIL(out, rv, link);
}

/*
 * Hand free slots to queued owners (a START to their workers), or fail
 * them fast while the breaker is open; rc_lock held.
 */
static void
rc_dequeue(struct rc_inst *ri, double now, struct rc_waits *out)
{
	struct review_wait *rv;
	struct k8s_review_outcome o;

	while ((rv = TAILQ_FIRST(&ri->queue)) != NULL) {
		if (ri->breaker != RC_OPEN && ri->inflight >= ri->max_inflight)
			break;
		TAILQ_REMOVE(&ri->queue, rv, link);
		ri->queued--;
		if (ri->breaker == RC_OPEN) {
			rc_fail(&o, REASON_cluster_unavailable,
			    rc_retry(ri, now),
			    "the cluster failed repeatedly: logins that need a TokenReview are refused until it recovers");
			ri->fast_failed++;
			rc_queue_fail(rv, &o, now, out);
			k8s_review_outcome_clear(&o);
			continue;
		}
		ri->inflight++;
		rv->slot = 1;
		rv->state = RC_W_POSTED;
		rv->post = RC_POST_START;
		TAILQ_INSERT_TAIL(out, rv, link);
	}
}

/* Post waits to their workers' mailboxes (rc_lock not held). */
static void
rc_post_all(struct rc_waits *out)
{
	struct review_wait *rv;
	struct rc_mailbox *mb;

	while ((rv = TAILQ_FIRST(out)) != NULL) {
		TAILQ_REMOVE(out, rv, link);
		mb = rv->w->review_mailbox;
		pthread_mutex_lock(&mb->lock);
		if (mb->closed) {
			/* The worker is gone (shutdown): nobody to tell. */
			pthread_mutex_unlock(&mb->lock);
			continue;
		}
		TAILQ_INSERT_TAIL(&mb->items, rv, link);
		/* Under mb->lock: the event is freed under it too. */
		event_active(mb->ev, EV_READ, 0);
		pthread_mutex_unlock(&mb->lock);
	}
}

/* Free a wait and what it holds. */
static void
rc_wait_free(struct review_wait *rv)
{
	k8s_review_req_free(rv->req);
	free(rv->message);
	free(rv->retry_after);
	free(rv->blob);
	free(rv);
}

/*
 * The owner rv's review ended with o (counted: a transfer ran): free its
 * slot, tell the breaker, end its flight, hand the slot on.  The owner's
 * own callback is the caller's business.
 */
static void
rc_finish(struct review_wait *rv, const struct k8s_review_outcome *o,
    int counted)
{
	struct rc_waits out = TAILQ_HEAD_INITIALIZER(out);
	struct rc_inst *ri = rv->ri;
	double now = util_now();
	int failed, answered;

	failed = counted &&
	    (o->reason == REASON_cluster_unavailable ||
		o->reason == REASON_cluster_timeout);
	answered = counted && !failed &&
	    (o->reason == REASON_NONE || o->reason == REASON_token_invalid ||
		o->reason == REASON_invalid_review ||
		o->reason == REASON_reviewer_unauthorized ||
		o->reason == REASON_reviewer_forbidden);
	pthread_mutex_lock(&rc_lock);
	if (rv->slot)
		ri->inflight--;
	rv->slot = 0;
	if (counted)
		ri->performed++;
	if (rv->probe && !counted && rv->gen == ri->gen)
		ri->probing = 0; /* never launched: the next one probes */
	else
		rc_breaker_note(rv, failed, answered, now);
	if (rv->e != NULL)
		rc_flight_end(rv->e, rv, o, now, &out);
	rv->e = NULL;
	rc_dequeue(ri, now, &out);
	pthread_mutex_unlock(&rc_lock);
	rc_post_all(&out);
}

/* The owner's transfer finished (k8s_review.c), on its own worker. */
static void
rc_done_cb(struct k8s_review_outcome *o, void *arg)
{
	struct review_wait *rv = arg;

	rv->review = NULL;
	rc_finish(rv, o, 1);
	pthread_mutex_lock(&rc_lock);
	rv->state = RC_W_NEW;
	pthread_mutex_unlock(&rc_lock);
	if (rv->cb != NULL)
		rv->cb(o, rv->arg);
	rc_wait_free(rv);
}

/* Start the owner's transfer on its own worker; it holds a slot. */
static void
rc_launch(struct review_wait *rv)
{
	struct k8s_review_outcome o;
	struct rc_waits out = TAILQ_HEAD_INITIALIZER(out);
	int abandon;

	pthread_mutex_lock(&rc_lock);
	rv->state = RC_W_RUNNING;
	abandon =
	    rv->cb == NULL && (rv->e == NULL || TAILQ_EMPTY(&rv->e->waiters));
	if (abandon)
		rc_abandon_locked(rv, &out);
	pthread_mutex_unlock(&rc_lock);
	if (abandon) {
		rc_post_all(&out);
		rc_wait_free(rv);
		return;
	}
	rv->review = k8s_review_launch(rv->w, rv->req, rc_done_cb, rv, &o);
	k8s_review_req_free(rv->req);
	rv->req = NULL;
	if (rv->review != NULL)
		return;
	rc_finish(rv, &o, 0);
	if (rv->cb != NULL)
		rv->cb(&o, rv->arg);
	k8s_review_outcome_clear(&o);
	rc_wait_free(rv);
}

/* Deliver a posted result on the waiter's own worker. */
static void
rc_deliver(struct review_wait *rv)
{
	struct k8s_review_outcome o;

	if (rv->cb != NULL) {
		if (rv->reason == REASON_NONE && rv->blob != NULL)
			rc_unpack(rv->blob, rv->bloblen, &o);
		else
			memset(&o, 0, sizeof o);
		o.reason = rv->reason;
		o.message = rv->message;
		o.retry_after = rv->retry_after;
		rv->message = rv->retry_after = NULL;
		rv->cb(&o, rv->arg);
		k8s_review_outcome_clear(&o);
	}
	rc_wait_free(rv);
}

/* libevent: the worker's mailbox has posts. */
static void
rc_mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rc_mailbox *mb = arg;
	struct rc_waits items = TAILQ_HEAD_INITIALIZER(items);
	struct review_wait *rv;

	pthread_mutex_lock(&mb->lock);
	TAILQ_CONCAT(&items, &mb->items, link);
	pthread_mutex_unlock(&mb->lock);
	while ((rv = TAILQ_FIRST(&items)) != NULL) {
		TAILQ_REMOVE(&items, rv, link);
		if (rv->post == RC_POST_START)
			rc_launch(rv);
		else
			rc_deliver(rv);
	}
}

/* The worker's mailbox, made on its own thread on first use. */
static void
rc_mailbox_ensure(struct worker *w)
{
	struct rc_mailbox *mb;

	if (w->review_mailbox != NULL)
		return;
	mb = xcalloc(1, sizeof *mb);
	pthread_mutex_init(&mb->lock, NULL);
	TAILQ_INIT(&mb->items);
	if ((mb->ev = event_new(w->base, -1, 0, rc_mailbox_cb, mb)) == NULL)
		fatalx("review cache: event_new failed");
	pthread_mutex_lock(&rc_lock);
	mb->next = rc_mailboxes; /* kept reachable until exit */
	rc_mailboxes = mb;
	pthread_mutex_unlock(&rc_lock);
	w->review_mailbox = mb;
}

/*
 * Close a worker's mailbox before its event base goes (worker_free):
 * later posts to it are dropped.  The struct stays (a finishing review
 * on another worker may still look at it).
 */
void
review_cache_worker_free(struct worker *w)
{
	struct rc_mailbox *mb = w->review_mailbox;

	if (mb == NULL)
		return;
	pthread_mutex_lock(&mb->lock);
	mb->closed = 1;
	TAILQ_INIT(&mb->items);
	event_free(mb->ev);
	mb->ev = NULL;
	pthread_mutex_unlock(&mb->lock);
	w->review_mailbox = NULL;
}

/*
 * Take a slot, a queue place, or refuse (o set, -1); rc_lock held.  On 0
 * rv is RUNNING (launch it) or QUEUED.
 */
static int
rc_admit(struct rc_inst *ri, struct review_wait *rv, const struct config *cfg,
    struct k8s_review_outcome *o)
{
	ri->max_inflight = cfg->k8s_max_reviews_per_instance;
	if (ri->inflight < ri->max_inflight) {
		ri->inflight++;
		rv->slot = 1;
		rv->state = RC_W_RUNNING;
		return (0);
	}
	if (ri->queued < cfg->k8s_review_queue_size) {
		TAILQ_INSERT_TAIL(&ri->queue, rv, link);
		ri->queued++;
		rv->state = RC_W_QUEUED;
		return (0);
	}
	ri->rejected++;
	if (rv->probe)
		ri->probing = 0;
	rc_fail(o, REASON_cluster_unavailable, 1,
	    "too many TokenReviews of this instance are waiting");
	return (-1);
}

/*
 * Under rc_lock: a cached result (1, o filled), a flight to wait on (2),
 * a refusal (-1, o filled), a new owner holding a slot (0) or queued (3).
 * The caller must go by this answer, not by rv->state: once rc_lock is
 * released another worker may already move a queued owner on.
 */
static int
rc_start_locked(struct review_wait *rv, const struct config *cfg,
    const struct instance *inst, const uint8_t *key,
    struct k8s_review_outcome *o)
{
	struct rc_entry *flight = NULL;
	double now = util_now();

	rc_init(cfg->k8s_review_cache_size);
	rv->ri = rc_inst_get(inst->id);
	rv->gen = rv->ri->gen;
	rv->ri->max_failures = cfg->k8s_breaker_failures;
	rv->ri->cooldown = cfg->k8s_breaker_cooldown;
	if (key != NULL && rc_lookup(key, rv->ri, now, o, &flight))
		return (1);
	if (flight != NULL) {
		TAILQ_INSERT_TAIL(&flight->waiters, rv, link);
		rv->e = flight;
		rv->state = RC_W_WAITING;
		rv->ri->merged++;
		if (flight->owner_worker != rv->w->id)
			log_debug("review: instance %s: a login on worker %d waits for the review in flight on worker %d",
			    rv->ri->id, rv->w->id, flight->owner_worker);
		return (2);
	}
	if (rc_breaker_admit(rv->ri, rv, now, o) != 0 ||
	    rc_admit(rv->ri, rv, cfg, o) != 0)
		return (-1);
	if (key != NULL) {
		rv->e = rc_entry_new(key, rv->ri);
		rv->e->owner_worker = rv->w->id;
		rc_flights++;
	}
	return (rv->state == RC_W_QUEUED ? 3 : 0);
}

/*
 * Review jwt for a login: from the cache, by joining a review in flight,
 * or by starting one (now or when a slot frees).  Returns a wait (cancel
 * with review_cache_cancel; cb runs once on this worker) or NULL with *o
 * the answer: REASON_NONE (a cached review: go on with o), or a refusal
 * (a cached token_invalid, or 503 with o->retry_after).  exp is the JWT's
 * (0: none).
 */
struct review_wait *
review_cache_start(struct worker *w, const struct config *cfg,
    const struct instance *inst, const char *jwt, const char *audience,
    double exp, k8s_review_cb cb, void *arg, struct k8s_review_outcome *o)
{
	struct review_wait *rv;
	uint8_t key[RC_KEY_LEN];
	int cached = inst->review_cache_ttl > 0, rc;

	memset(o, 0, sizeof *o);
	rc_mailbox_ensure(w);
	if (cached)
		review_cache_key(jwt, inst->id, audience, key);
	rv = xcalloc(1, sizeof *rv);
	rv->w = w;
	rv->cb = cb;
	rv->arg = arg;
	rv->jwt_exp = exp;
	rv->ttl = inst->review_cache_ttl;
	rv->neg_ttl = cfg->k8s_negative_cache_ttl;
	pthread_mutex_lock(&rc_lock);
	rc = rc_start_locked(rv, cfg, inst, cached ? key : NULL, o);
	pthread_mutex_unlock(&rc_lock);
	if (rc == 1 || rc == -1) {
		rc_wait_free(rv);
		return (NULL);
	}
	if (rc == 2)
		return (rv);
	/* Queued: a START may be posted meanwhile, read on this thread later. */
	rv->req = k8s_review_prepare(cfg, inst, jwt, audience);
	if (rc == 3)
		return (rv);
	rv->review = k8s_review_launch(w, rv->req, rc_done_cb, rv, o);
	k8s_review_req_free(rv->req);
	rv->req = NULL;
	if (rv->review != NULL)
		return (rv);
	rc_finish(rv, o, 0);
	rc_wait_free(rv);
	return (NULL);
}

/*
 * An owner nobody waits for gives up its slot and its flight (the caller
 * cancels its transfer); rc_lock held.  The flight leaves the table in
 * the same critical section that saw it without waiters, so no login can
 * join it any more.
 */
static void
rc_abandon_locked(struct review_wait *rv, struct rc_waits *out)
{
	struct rc_inst *ri = rv->ri;

	if (rv->state == RC_W_QUEUED) {
		TAILQ_REMOVE(&ri->queue, rv, link);
		ri->queued--;
	}
	if (rv->slot)
		ri->inflight--;
	rv->slot = 0;
	if (rv->probe && rv->gen == ri->gen)
		ri->probing = 0;
	if (rv->e != NULL) {
		rc_unhash(rv->e);
		free(rv->e);
		rc_flights--;
		rv->e = NULL;
	}
	rc_dequeue(ri, util_now(), out);
}

/*
 * The login gave up (client gone, deadline), on its own worker: its
 * callback never runs.  A waiter leaves its flight; an owner nobody else
 * waits for cancels its transfer (or leaves the queue) and frees its
 * slot; an owner with waiters goes on orphaned for them; a posted wait is
 * freed when its post is read.
 */
void
review_cache_cancel(struct review_wait *rv)
{
	struct rc_waits out = TAILQ_HEAD_INITIALIZER(out);
	int free_it = 0;

	if (rv == NULL)
		return;
	pthread_mutex_lock(&rc_lock);
	rv->cb = NULL;
	if (rv->state == RC_W_WAITING) {
		TAILQ_REMOVE(&rv->e->waiters, rv, link);
		free_it = 1;
	} else if ((rv->state == RC_W_QUEUED || rv->state == RC_W_RUNNING) &&
	    (rv->e == NULL || TAILQ_EMPTY(&rv->e->waiters))) {
		rc_abandon_locked(rv, &out);
		free_it = 1;
	}
	pthread_mutex_unlock(&rc_lock);
	rc_post_all(&out);
	if (free_it) {
		k8s_review_cancel(rv->review);
		rv->review = NULL;
		rc_wait_free(rv);
	}
}

/*
 * Drop an instance's results and reset its breaker: its host, CA,
 * reviewer or keys changed, or it was deleted (api_instance.c).  Reviews
 * in flight finish for their logins but are not kept.
 */
void
review_cache_forget(const char *instance_id)
{
	struct rc_inst *ri;
	struct rc_entry *e, *next;

	pthread_mutex_lock(&rc_lock);
	for (ri = rc_insts; ri != NULL; ri = ri->next) {
		if (strcmp(ri->id, instance_id) == 0)
			break;
	}
	if (ri != NULL) {
		ri->gen++;
		ri->breaker = RC_CLOSED;
		ri->failures = 0;
		ri->probing = 0;
		for (e = TAILQ_FIRST(&rc_lru); e != NULL; e = next) {
			next = TAILQ_NEXT(e, lru);
			if (e->ri == ri)
				rc_drop(e);
		}
	}
	pthread_mutex_unlock(&rc_lock);
}

/*
 * Unit-test seams: a cached result of key for an instance at time now
 * (1, o filled; 0: none), store one until expires, count them, and start
 * afresh with room for max results.
 */
int
review_cache_get(const uint8_t *key, const char *instance_id, double now,
    struct k8s_review_outcome *o)
{
	struct rc_entry *flight;
	int rc;

	pthread_mutex_lock(&rc_lock);
	rc = rc_table != NULL &&
	    rc_lookup(key, rc_inst_get(instance_id), now, o, &flight);
	pthread_mutex_unlock(&rc_lock);
	return (rc);
}

/*
 * A finished review of jwt in the cache, without joining a flight or
 * starting anything: 1 with *o its outcome (REASON_NONE, or a cached
 * refusal), else 0.  The login asks before its signature check: the key
 * is the whole JWT, so bytes the cluster already judged need no second
 * verification (API.md §8).
 */
int
review_cache_lookup(const struct config *cfg, const struct instance *inst,
    const uint8_t jwt_sha[32], const char *audience,
    struct k8s_review_outcome *o)
{
	struct rc_entry *flight;
	uint8_t key[RC_KEY_LEN];
	int rc;

	memset(o, 0, sizeof *o);
	if (inst->review_cache_ttl <= 0)
		return (0);
	review_cache_key_digest(jwt_sha, inst->id, audience, key);
	pthread_mutex_lock(&rc_lock);
	rc_init(cfg->k8s_review_cache_size);
	rc = rc_lookup(key, rc_inst_get(inst->id), util_now(), o, &flight);
	pthread_mutex_unlock(&rc_lock);
	return (rc);
}

void
review_cache_put(const uint8_t *key, const char *instance_id,
    const struct k8s_review_outcome *o, double expires)
{
	struct rc_entry *e;

	pthread_mutex_lock(&rc_lock);
	if ((e = rc_find(key)) != NULL && e->done)
		rc_drop(e);
	e = rc_entry_new(key, rc_inst_get(instance_id));
	rc_keep(e, o->reason, o, expires);
	pthread_mutex_unlock(&rc_lock);
}

size_t
review_cache_count(void)
{
	size_t n;

	pthread_mutex_lock(&rc_lock);
	n = rc_count;
	pthread_mutex_unlock(&rc_lock);
	return (n);
}

void
review_cache_reset(long max)
{
	struct rc_inst *ri;

	pthread_mutex_lock(&rc_lock);
	while (!TAILQ_EMPTY(&rc_lru))
		rc_drop(TAILQ_FIRST(&rc_lru));
	while ((ri = rc_insts) != NULL) {
		rc_insts = ri->next;
		free(ri);
	}
	free(rc_table);
	rc_table = NULL;
	rc_evictions = 0;
	rc_init(max);
	pthread_mutex_unlock(&rc_lock);
}

/* One labelled line per instance; rc_lock held. */
static void
rc_render_family(struct evbuffer *b, const char *name, const char *type,
    const char *help, size_t field)
{
	struct rc_inst *ri;

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name,
	    type);
	for (ri = rc_insts; ri != NULL; ri = ri->next)
		evbuffer_add_printf(b, "%s{instance=\"%s\"} %lu\n", name,
		    ri->id, *(const unsigned long *)((const char *)ri + field));
}

/* The review cache, slot and breaker metrics (metrics.c). */
void
review_cache_render(struct evbuffer *b)
{
	struct rc_inst *ri;

	pthread_mutex_lock(&rc_lock);
#define RC_F(f) offsetof(struct rc_inst, f)
	rc_render_family(b, "k8sauth_tokenreviews_performed_total", "counter",
	    "TokenReviews sent to the cluster, by instance.", RC_F(performed));
	rc_render_family(b, "k8sauth_review_cache_hits_total", "counter",
	    "Logins answered by a cached authenticated review.", RC_F(hits));
	rc_render_family(b, "k8sauth_review_cache_negative_hits_total",
	    "counter", "Logins answered by a cached refused review.",
	    RC_F(negative_hits));
	rc_render_family(b, "k8sauth_review_merged_total", "counter",
	    "Logins that waited for the same JWT's review in flight.",
	    RC_F(merged));
	rc_render_family(b, "k8sauth_review_queue_rejected_total", "counter",
	    "Logins refused because the instance's review queue was full.",
	    RC_F(rejected));
	rc_render_family(b, "k8sauth_review_breaker_rejected_total", "counter",
	    "Logins failed fast by an open circuit breaker.",
	    RC_F(fast_failed));
	rc_render_family(b, "k8sauth_review_breaker_opens_total", "counter",
	    "Times the instance's circuit breaker opened.", RC_F(opens));
#undef RC_F
	evbuffer_add_printf(b,
	    "# HELP k8sauth_review_queue_depth TokenReviews waiting for a slot.\n# TYPE k8sauth_review_queue_depth gauge\n");
	for (ri = rc_insts; ri != NULL; ri = ri->next)
		evbuffer_add_printf(b,
		    "k8sauth_review_queue_depth{instance=\"%s\"} %ld\n", ri->id,
		    ri->queued);
	evbuffer_add_printf(b,
	    "# HELP k8sauth_review_breaker_state Circuit breaker: 0 closed, 1 open, 2 half-open.\n# TYPE k8sauth_review_breaker_state gauge\n");
	for (ri = rc_insts; ri != NULL; ri = ri->next)
		evbuffer_add_printf(b,
		    "k8sauth_review_breaker_state{instance=\"%s\"} %d\n",
		    ri->id,
		    ri->breaker == RC_OPEN && util_now() >= ri->open_until
			? RC_HALF
			: ri->breaker);
	evbuffer_add_printf(b,
	    "# HELP k8sauth_review_cache_entries Reviews cached.\n# TYPE k8sauth_review_cache_entries gauge\nk8sauth_review_cache_entries %zu\n"
	    "# HELP k8sauth_review_cache_evictions_total Cached reviews evicted to stay within review_cache_size.\n# TYPE k8sauth_review_cache_evictions_total counter\nk8sauth_review_cache_evictions_total %lu\n",
	    rc_count, rc_evictions);
	pthread_mutex_unlock(&rc_lock);
}
