/*
 * keystone_revoke.c: Keystone's revocation events drop cached validations.
 *
 * A Keystone token validated for an admin caller is cached up to
 * [keystone] cache_ttl (keystone_token.c).  So that a token revoked in
 * Keystone (DELETE /v3/auth/tokens, a disabled user, a changed password, a
 * removed role assignment) stops working here sooner, one worker polls
 * GET /v3/OS-REVOKE/events?since=T every [keystone] revocation_interval
 * seconds and drops every cached validation an event matches.  The poller
 * starts on the first worker that caches a validation (nothing cached,
 * nothing to drop) and lives on that worker's event loop: the GET is
 * asynchronous like every Keystone call (keystone.c), a poll still in
 * flight makes the next tick a no-op.
 *
 * Matching is a superset of Keystone's own (keystone/models/revoke_model):
 * an event matches a token issued at or before its issued_before when
 * every field it names among audit_id, audit_chain_id, user_id,
 * project_id, domain_id and role_id matches the token; the fields it names
 * beyond those (trust, OAuth consumer, ...) are taken as matching.  A
 * token dropped by mistake is only validated by Keystone again.  Each
 * poll asks for the events since it last asked minus a margin
 * (KEYSTONE_REVOKE_MARGIN, at least twice the interval), so clock skew
 * and a validation answered while a poll was in flight cannot make an
 * event slip by; matching an event twice is harmless.
 *
 * A Keystone without the API (404) is said once in the log and no longer
 * polled: cache_ttl is then the only bound.  Other failures are counted
 * (k8sauth_keystone_errors_total) and logged when they start and end.
 * Runs on the poller's worker thread; the shared state is atomics.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "k8sauth.h"

#define KEYSTONE_REVOKE_MARGIN 60.0

struct keystone_revoke {
	struct worker *w;
	struct event *ev;
	struct keystone_op *op;
	double since;   /* the next poll asks for events after this */
	double started; /* the poll in flight was started */
	int failing;    /* the last poll failed (logged once) */
};

static _Atomic(struct keystone_revoke *) keystone_revoke_poller;
static _Atomic int keystone_revoke_claimed;

/* A string member, or NULL. */
static const char *
keystone_revoke_str(const cJSON *o, const char *name)
{
	return (
	    cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, name)));
}

/* Does the token's field equal the event's (absent in the event: yes)? */
static int
keystone_revoke_same(const char *want, const char *have)
{
	return (want == NULL || (have != NULL && strcmp(want, have) == 0));
}

/* Is id the id of one element of the array (roles, audit_ids)? */
static int
keystone_revoke_in(const cJSON *a, const char *id, int strings)
{
	const cJSON *e;
	const char *v;

	cJSON_ArrayForEach(e, a)
	{
		v = strings ? cJSON_GetStringValue(e)
			    : keystone_revoke_str(e, "id");
		if (v != NULL && strcmp(v, id) == 0)
			return (1);
	}
	return (0);
}

/*
 * Does revocation event ev match the cached token document tok (the slim
 * copy keystone_token.c keeps: issued_at, audit_ids, user, project,
 * domain, roles)?  A superset of Keystone's rule, see above.
 */
int
keystone_revoke_matches(const cJSON *ev, const cJSON *tok)
{
	const cJSON *user = cJSON_GetObjectItemCaseSensitive(tok, "user");
	const cJSON *proj = cJSON_GetObjectItemCaseSensitive(tok, "project");
	const cJSON *audit = cJSON_GetObjectItemCaseSensitive(tok, "audit_ids");
	const char *v, *first = NULL, *last = NULL;
	double before, issued;

	if ((v = keystone_revoke_str(ev, "issued_before")) != NULL) {
		before = keystone_parse_time(v);
		issued =
		    keystone_parse_time(keystone_revoke_str(tok, "issued_at"));
		if (before > 0 && issued > 0 && issued > before)
			return (0);
	}
	if (cJSON_GetArraySize(audit) > 0) {
		first = cJSON_GetStringValue(cJSON_GetArrayItem(audit, 0));
		last = cJSON_GetStringValue(
		    cJSON_GetArrayItem(audit, cJSON_GetArraySize(audit) - 1));
	}
	if (!keystone_revoke_same(keystone_revoke_str(ev, "audit_id"), first) ||
	    !keystone_revoke_same(keystone_revoke_str(ev, "audit_chain_id"),
		last) ||
	    !keystone_revoke_same(keystone_revoke_str(ev, "user_id"),
		keystone_revoke_str(user, "id")) ||
	    !keystone_revoke_same(keystone_revoke_str(ev, "project_id"),
		keystone_revoke_str(proj, "id")))
		return (0);
	if ((v = keystone_revoke_str(ev, "domain_id")) != NULL &&
	    !keystone_revoke_same(v,
		keystone_revoke_str(cJSON_GetObjectItemCaseSensitive(user,
					"domain"),
		    "id")) &&
	    !keystone_revoke_same(v,
		keystone_revoke_str(cJSON_GetObjectItemCaseSensitive(proj,
					"domain"),
		    "id")) &&
	    !keystone_revoke_same(v,
		keystone_revoke_str(cJSON_GetObjectItemCaseSensitive(tok,
					"domain"),
		    "id")))
		return (0);
	if ((v = keystone_revoke_str(ev, "role_id")) != NULL &&
	    !keystone_revoke_in(cJSON_GetObjectItemCaseSensitive(tok, "roles"),
		v, 0))
		return (0);
	return (1);
}

/* keystone_cache_drop_if's predicate. */
static int
keystone_revoke_pred(const cJSON *tok, void *arg)
{
	return (keystone_revoke_matches(arg, tok));
}

/* Apply a page of events to the token cache. */
static void
keystone_revoke_apply(const cJSON *doc)
{
	const cJSON *ev;
	size_t n = 0, events = 0;

	cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(doc, "events"))
	{
		events++;
		n += keystone_cache_drop_if(keystone_token_cache,
		    keystone_revoke_pred, (void *)ev);
	}
	if (n > 0)
		log_info("keystone: %zu cached validation(s) dropped by revocation events",
		    n);
	else
		log_debug("keystone: %zu revocation event(s), nothing cached matched",
		    events);
}

/* The poll answered. */
static void
keystone_revoke_cb(const struct keystone_result *res, void *arg)
{
	struct keystone_revoke *kr = arg;

	kr->op = NULL;
	if (!res->unavailable && res->status == 404) {
		log_warn(
		    "keystone: Keystone publishes no revocation events (GET /v3/OS-REVOKE/events: 404); a revoked token keeps working here up to [keystone] cache_ttl");
		event_del(kr->ev);
		return;
	}
	if (res->unavailable || res->status != 200) {
		if (!kr->failing)
			log_warn("keystone: revocation events unavailable (HTTP %ld); retrying every %ld s",
			    res->status, keystone_revoke_interval);
		kr->failing = 1;
		return;
	}
	if (kr->failing)
		log_info("keystone: revocation events available again");
	kr->failing = 0;
	keystone_revoke_apply(res->doc);
	kr->since = kr->started -
	    fmax(KEYSTONE_REVOKE_MARGIN, 2.0 * keystone_revoke_interval);
}

/* The timer: start a poll unless one is in flight. */
static void
keystone_revoke_tick(evutil_socket_t fd, short events, void *arg)
{
	struct keystone_revoke *kr = arg;
	char when[32], *path, *cause = NULL;
	time_t t;
	struct tm tm;

	if (kr->op != NULL)
		return;
	t = (time_t)floor(kr->since);
	gmtime_r(&t, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
	xasprintf(&path, "/v3/OS-REVOKE/events?since=%s", when);
	kr->started = util_now();
	kr->op =
	    keystone_get(kr->w, path, NULL, keystone_revoke_cb, kr, &cause);
	free(path);
	if (kr->op == NULL) {
		log_warn("keystone: revocation events: %s", cause);
		free(cause);
	}
}

/*
 * A validation was cached on w: make sure one worker polls the events
 * (the first to get here; no-op when [keystone] revocation_interval is 0).
 */
void
keystone_revoke_ensure(struct worker *w)
{
	struct keystone_revoke *kr;
	struct timeval tv;
	int expected = 0;

	if (keystone_revoke_interval <= 0 ||
	    !atomic_compare_exchange_strong(&keystone_revoke_claimed, &expected,
		1))
		return;
	kr = xcalloc(1, sizeof *kr);
	kr->w = w;
	kr->since = util_now() -
	    fmax(KEYSTONE_REVOKE_MARGIN, 2.0 * keystone_revoke_interval);
	kr->ev = event_new(w->base, -1, EV_PERSIST, keystone_revoke_tick, kr);
	if (kr->ev == NULL)
		fatalx("event_new failed");
	tv.tv_sec = keystone_revoke_interval;
	tv.tv_usec = 0;
	event_add(kr->ev, &tv);
	atomic_store(&keystone_revoke_poller, kr);
	log_info("keystone: polling revocation events every %ld s (worker %d)",
	    keystone_revoke_interval, w->id);
}

/* w stops: if it hosts the poller, end it (on w's thread, in its loop). */
void
keystone_revoke_worker_free(struct worker *w)
{
	struct keystone_revoke *kr = atomic_load(&keystone_revoke_poller);

	if (kr == NULL || kr->w != w)
		return;
	atomic_store(&keystone_revoke_poller, NULL);
	keystone_cancel(kr->op);
	event_free(kr->ev);
	free(kr);
}
