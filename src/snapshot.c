/*
 * snapshot.c: the data plane's only source of stored data.
 *
 * A snapshot is an immutable copy of every instance (reviewer token
 * decrypted, as store_instance_get gives it), role and restriction, with
 * the revision it was read at.  The database thread (dbthread.c) loads
 * one in a single read transaction and publishes it; a request takes one
 * reference when it starts (http.c) and keeps it for its whole life, async
 * steps included, so that the pointers it holds stay valid whatever is
 * published meanwhile.  The last reference frees the snapshot (reviewer
 * tokens wiped).
 *
 * Lookups allocate nothing: sorted arrays searched with bsearch (by id;
 * roles also by (instance, name) and by (restriction, id)).  Lists follow
 * store_list exactly: the same filter whitelists, id order, keyset
 * pagination (id > marker) and `more`, so that admin GETs are answered
 * from here too.
 *
 * Load time: a full reload of 10,000 roles is measured by test_snapshot
 * (tens of milliseconds on SQLite), small next to the refresh interval,
 * so every change reloads everything (no incremental path to get wrong).
 *
 * Thread safety: the published pointer is guarded by a mutex, references
 * are atomic; a snapshot is never written after snapshot_load returns.
 */
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

#define SNAPSHOT_PAGE 1000 /* rows per store_list call while loading */

struct snapshot {
	_Atomic long references;
	uint64_t revision;
	double loaded_at;              /* util_now() */
	_Atomic uint64_t confirmed_us; /* util_now() in us: still current */
	double load_seconds;           /* how long the load took */
	struct instance **instances;   /* by id */
	size_t ninstances;
	struct role **roles; /* by id */
	size_t nroles;
	struct role **roles_by_name;       /* by (auth_instance_id, name) */
	struct role **roles_by_rs;         /* by (token_restriction_id, id) */
	struct restriction **restrictions; /* by id */
	size_t nrestrictions;
};

static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static struct snapshot *snapshot_current; /* snapshot_lock */

/* Free a snapshot and everything in it. */
static void
snapshot_free(struct snapshot *s)
{
	size_t i;

	for (i = 0; i < s->ninstances; i++)
		instance_free(s->instances[i]);
	for (i = 0; i < s->nroles; i++)
		role_free(s->roles[i]);
	for (i = 0; i < s->nrestrictions; i++)
		restriction_free(s->restrictions[i]);
	free(s->instances);
	free(s->roles);
	free(s->roles_by_name);
	free(s->roles_by_rs);
	free(s->restrictions);
	free(s);
}

/* Drop a reference (NULL is fine); the last one frees the snapshot. */
void
snapshot_unref(struct snapshot *s)
{
	if (s != NULL && atomic_fetch_sub(&s->references, 1) == 1)
		snapshot_free(s);
}

/* Take another reference on a snapshot the caller holds. */
struct snapshot *
snapshot_ref(struct snapshot *s)
{
	if (s != NULL)
		atomic_fetch_add(&s->references, 1);
	return (s);
}

/* The published snapshot with a reference for the caller, or NULL. */
struct snapshot *
snapshot_get(void)
{
	struct snapshot *s;

	pthread_mutex_lock(&snapshot_lock);
	s = snapshot_ref(snapshot_current);
	pthread_mutex_unlock(&snapshot_lock);
	return (s);
}

/* Publish s (the caller's reference moves to the process); any thread. */
void
snapshot_publish(struct snapshot *s)
{
	struct snapshot *old;

	pthread_mutex_lock(&snapshot_lock);
	old = snapshot_current;
	snapshot_current = s;
	pthread_mutex_unlock(&snapshot_lock);
	snapshot_unref(old);
}

/* Withdraw the published snapshot (at exit). */
void
snapshot_clear(void)
{
	snapshot_publish(NULL);
}

uint64_t
snapshot_revision(const struct snapshot *s)
{
	return (s->revision);
}

/*
 * The database thread found the revision unchanged: s is still current
 * (the only field that changes after load; atomic).
 */
void
snapshot_confirm(struct snapshot *s)
{
	if (s != NULL)
		atomic_store(&s->confirmed_us, (uint64_t)(util_now() * 1e6));
}

/*
 * Seconds since the snapshot was last known current (loaded, or its
 * revision found unchanged): grows during a database outage.
 */
double
snapshot_age(const struct snapshot *s)
{
	double age;

	age = util_now() - (double)atomic_load(&s->confirmed_us) / 1e6;
	return (age > 0 ? age : 0);
}

double
snapshot_load_seconds(const struct snapshot *s)
{
	return (s->load_seconds);
}

/* strcmp with NULL ordered first. */
static int
snapshot_strcmp(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == NULL ? (b == NULL ? 0 : -1) : 1);
	return (strcmp(a, b));
}

/* qsort/bsearch: objects by id (id is every struct's first member). */
static int
snapshot_by_id_cmp(const void *a, const void *b)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;

	return (strcmp(x, y));
}

/* qsort: roles by (instance, name). */
static int
snapshot_by_name_cmp(const void *a, const void *b)
{
	const struct role *x = *(const struct role *const *)a;
	const struct role *y = *(const struct role *const *)b;
	int c;

	if ((c = strcmp(x->auth_instance_id, y->auth_instance_id)) != 0)
		return (c);
	return (snapshot_strcmp(x->name, y->name));
}

/* qsort: roles by (restriction, id). */
static int
snapshot_by_rs_cmp(const void *a, const void *b)
{
	const struct role *x = *(const struct role *const *)a;
	const struct role *y = *(const struct role *const *)b;
	int c;

	if ((c = snapshot_strcmp(x->token_restriction_id,
		 y->token_restriction_id)) != 0)
		return (c);
	return (strcmp(x->id, y->id));
}

/* The object with this id in an id-sorted array, or NULL. */
static void *
snapshot_find(void *const *v, size_t n, const char *id)
{
	void *const *p;

	if (id == NULL || n == 0)
		return (NULL);
	p = bsearch(&id, v, n, sizeof *v, snapshot_by_id_cmp);
	return (p != NULL ? *p : NULL);
}

/* The first index whose id is > marker ("" or NULL: 0). */
static size_t
snapshot_after(void *const *v, size_t n, const char *marker)
{
	size_t lo = 0, hi = n, mid;

	if (marker == NULL)
		return (0);
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (strcmp((const char *)v[mid], marker) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (lo);
}

/* An instance by id, or NULL; valid while s is. */
const struct instance *
snapshot_instance(const struct snapshot *s, const char *id)
{
	if (s == NULL)
		return (NULL);
	return (snapshot_find((void *const *)s->instances, s->ninstances, id));
}

/* A restriction by id, or NULL; valid while s is. */
const struct restriction *
snapshot_restriction(const struct snapshot *s, const char *id)
{
	if (s == NULL)
		return (NULL);
	return (snapshot_find((void *const *)s->restrictions, s->nrestrictions,
	    id));
}

/* The role of this instance named name, or NULL. */
static const struct role *
snapshot_role_named(const struct snapshot *s, const char *instance_id,
    const char *name)
{
	size_t lo = 0, hi = s->nroles, mid;
	const struct role *r;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		r = s->roles_by_name[mid];
		if ((c = strcmp(r->auth_instance_id, instance_id)) == 0)
			c = snapshot_strcmp(r->name, name);
		if (c == 0)
			return (r);
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (NULL);
}

/*
 * A role by id or name within an instance (an id match wins), or by id
 * alone when instance_id is NULL: store_role_get's semantics.
 */
const struct role *
snapshot_role(const struct snapshot *s, const char *instance_id,
    const char *key)
{
	const struct role *r;

	if (s == NULL || key == NULL)
		return (NULL);
	r = snapshot_find((void *const *)s->roles, s->nroles, key);
	if (instance_id == NULL)
		return (r);
	if (r != NULL && strcmp(r->auth_instance_id, instance_id) == 0)
		return (r);
	return (snapshot_role_named(s, instance_id, key));
}

/*
 * store_instance_print's text for instance_id as this snapshot has it:
 * its roles and their restrictions' versions (allocated).
 */
char *
snapshot_instance_print(const struct snapshot *s, const char *instance_id)
{
	const struct restriction *rs;
	const struct role *ro;
	char **lines = NULL;
	size_t n = 0, i;

	for (i = 0; s != NULL && i < s->nroles; i++) {
		ro = s->roles[i];
		if (strcmp(ro->auth_instance_id, instance_id) != 0)
			continue;
		rs = snapshot_restriction(s, ro->token_restriction_id);
		lines = xreallocarray(lines, n + 1, sizeof *lines);
		lines[n++] = store_print_line(ro->id, ro->updated_at,
		    ro->token_restriction_id,
		    rs != NULL ? rs->updated_at : NULL);
	}
	return (store_print_join(lines, n));
}

/*
 * The roles whose token restriction is rs_id, in id order: *out points
 * into the snapshot (no allocation); their number is returned.
 */
size_t
snapshot_roles_of_restriction(const struct snapshot *s, const char *rs_id,
    const struct role *const **out)
{
	size_t lo = 0, hi, mid, first;

	*out = NULL;
	if (s == NULL || rs_id == NULL || s->nroles == 0)
		return (0);
	hi = s->nroles;
	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (snapshot_strcmp(s->roles_by_rs[mid]->token_restriction_id,
			rs_id) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	while (lo < s->nroles &&
	    snapshot_strcmp(s->roles_by_rs[lo]->token_restriction_id, rs_id) ==
		0)
		lo++;
	*out = (const struct role *const *)s->roles_by_rs + first;
	return (lo - first);
}

/* Filter whitelists: store_instance.c's, store_role.c's, store_restriction.c's. */
static const char *const snapshot_instance_filters[] = { "domain_id", "name",
	"enabled", NULL };
static const char *const snapshot_role_filters[] = { "auth_instance_id",
	"domain_id", "name", "enabled", NULL };
static const char *const snapshot_restriction_filters[] = { "domain_id",
	"user_id", "project_id", NULL };

/*
 * Match the query's filters against a whitelist, as store_list does:
 * values[i] is the value for entry i or NULL.  STORE_OK or STORE_ERROR.
 */
static int
snapshot_list_filters(const char *what, const char *const *names,
    const struct store_query *q, const char **values)
{
	const char *v;
	char *esc;
	size_t j;
	int i;

	if (q->limit <= 0 || q->limit >= INT_MAX || q->nfilters > 8) {
		log_err("snapshot: %s list: bad limit or filters", what);
		return (STORE_ERROR);
	}
	for (j = 0; j < q->nfilters; j++) {
		for (i = 0; names[i] != NULL; i++) {
			if (strcmp(names[i], q->filter_names[j]) == 0)
				break;
		}
		v = q->filter_values[j];
		if (names[i] == NULL || values[i] != NULL || v == NULL ||
		    (strcmp(names[i], "enabled") == 0 && strcmp(v, "1") != 0 &&
			strcmp(v, "0") != 0)) {
			esc = log_escape(q->filter_names[j], 64);
			log_warn("snapshot: %s list: bad filter \"%s\"", what,
			    esc);
			free(esc);
			return (STORE_ERROR);
		}
		values[i] = v;
	}
	return (STORE_OK);
}

/* A text column's filter: SQL's `col = v` (NULL never matches). */
static int
snapshot_eq(const char *want, const char *have)
{
	return (want == NULL || (have != NULL && strcmp(want, have) == 0));
}

/* A boolean column's filter ("1"/"0"). */
static int
snapshot_eq_bool(const char *want, int have)
{
	return (want == NULL || (want[0] == '1') == (have != 0));
}

static int
snapshot_instance_match(const void *p, const char **v)
{
	const struct instance *in = p;

	return (snapshot_eq(v[0], in->domain_id) &&
	    snapshot_eq(v[1], in->name) && snapshot_eq_bool(v[2], in->enabled));
}

static int
snapshot_role_match(const void *p, const char **v)
{
	const struct role *r = p;

	return (snapshot_eq(v[0], r->auth_instance_id) &&
	    snapshot_eq(v[1], r->domain_id) && snapshot_eq(v[2], r->name) &&
	    snapshot_eq_bool(v[3], r->enabled));
}

static int
snapshot_restriction_match(const void *p, const char **v)
{
	const struct restriction *rs = p;

	return (snapshot_eq(v[0], rs->domain_id) &&
	    snapshot_eq(v[1], rs->user_id) &&
	    snapshot_eq(v[2], rs->project_id));
}

/*
 * The generic list over an id-sorted array: objects with id > marker
 * matching every filter, at most limit of them, *more when another
 * exists.  *out (malloc'd, NULL when empty) points into the snapshot: the
 * caller frees the array only.
 */
static int
snapshot_list(const char *what, const char *const *names,
    int (*match)(const void *, const char **), void *const *v, size_t n,
    const struct store_query *q, const void ***out, size_t *count, int *more)
{
	const char *values[8] = { NULL };
	size_t i;

	*out = NULL;
	*count = 0;
	*more = 0;
	if (snapshot_list_filters(what, names, q, values) != STORE_OK)
		return (STORE_ERROR);
	for (i = snapshot_after(v, n, q->marker); i < n; i++) {
		if (!match(v[i], values))
			continue;
		if ((long)*count == q->limit) {
			*more = 1;
			break;
		}
		*out = xreallocarray(*out, *count + 1, sizeof **out);
		(*out)[(*count)++] = v[i];
	}
	return (STORE_OK);
}

/* One page of instances (store_instance_list's semantics). */
int
snapshot_instance_list(const struct snapshot *s, const struct store_query *q,
    const struct instance ***out, size_t *count, int *more)
{
	*out = NULL;
	*count = 0;
	*more = 0;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	return (snapshot_list("instance", snapshot_instance_filters,
	    snapshot_instance_match, (void *const *)s->instances, s->ninstances,
	    q, (const void ***)out, count, more));
}

/* One page of roles (store_role_list's semantics). */
int
snapshot_role_list(const struct snapshot *s, const struct store_query *q,
    const struct role ***out, size_t *count, int *more)
{
	*out = NULL;
	*count = 0;
	*more = 0;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	return (snapshot_list("role", snapshot_role_filters,
	    snapshot_role_match, (void *const *)s->roles, s->nroles, q,
	    (const void ***)out, count, more));
}

/* One page of restrictions (store_restriction_list's semantics). */
int
snapshot_restriction_list(const struct snapshot *s, const struct store_query *q,
    const struct restriction ***out, size_t *count, int *more)
{
	*out = NULL;
	*count = 0;
	*more = 0;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	return (snapshot_list("restriction", snapshot_restriction_filters,
	    snapshot_restriction_match, (void *const *)s->restrictions,
	    s->nrestrictions, q, (const void ***)out, count, more));
}

/* A copy of the instance with this id: STORE_OK, _NOT_FOUND, _UNAVAILABLE. */
int
snapshot_instance_get(const struct snapshot *s, const char *id,
    struct instance **out)
{
	const struct instance *in;

	*out = NULL;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	if ((in = snapshot_instance(s, id)) == NULL)
		return (STORE_NOT_FOUND);
	*out = instance_copy(in);
	return (STORE_OK);
}

/* A copy of a role (snapshot_role's key rules); STORE_* result. */
int
snapshot_role_get(const struct snapshot *s, const char *instance_id,
    const char *key, struct role **out)
{
	const struct role *r;

	*out = NULL;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	if ((r = snapshot_role(s, instance_id, key)) == NULL)
		return (STORE_NOT_FOUND);
	*out = role_copy(r);
	return (STORE_OK);
}

/* A copy of the restriction with this id; STORE_* result. */
int
snapshot_restriction_get(const struct snapshot *s, const char *id,
    struct restriction **out)
{
	const struct restriction *rs;

	*out = NULL;
	if (s == NULL)
		return (STORE_UNAVAILABLE);
	if ((rs = snapshot_restriction(s, id)) == NULL)
		return (STORE_NOT_FOUND);
	*out = restriction_copy(rs);
	return (STORE_OK);
}

/* A page-by-page list call, as every store_*_list is. */
typedef int (*snapshot_lister)(struct db *, const struct store_query *,
    void ***, size_t *, int *);

/* Read every row of a table through its list function, in pages. */
static int
snapshot_load_all(struct db *db, snapshot_lister list, void ***all,
    size_t *nall)
{
	struct store_query q;
	char marker[ID_LEN + 1];
	void **v;
	size_t n;
	int more, rc;

	memset(&q, 0, sizeof q);
	q.limit = SNAPSHOT_PAGE;
	do {
		if ((rc = list(db, &q, &v, &n, &more)) != STORE_OK)
			return (rc);
		if (n > 0) {
			*all = xreallocarray(*all, *nall + n, sizeof **all);
			memcpy(*all + *nall, v, n * sizeof *v);
			*nall += n;
			/* id is each struct's first member */
			memcpy(marker, v[n - 1], sizeof marker);
			marker[ID_LEN] = '\0';
			q.marker = marker;
		}
		free(v);
	} while (more && n > 0);
	return (STORE_OK);
}

/* Replace each listed instance by its full form (reviewer token). */
static int
snapshot_load_tokens(struct db *db, struct snapshot *s)
{
	struct instance *in;
	size_t i;
	int rc;

	for (i = 0; i < s->ninstances; i++) {
		if (!s->instances[i]->reviewer_jwt_set)
			continue;
		if ((rc = store_instance_get(db, s->instances[i]->id, &in)) !=
		    STORE_OK)
			return (rc);
		instance_free(s->instances[i]);
		s->instances[i] = in;
	}
	return (STORE_OK);
}

/* Sort the arrays and build the role indexes. */
static void
snapshot_index(struct snapshot *s)
{
	size_t size = s->nroles * sizeof *s->roles;

	/* qsort's array may not be NULL, even with nothing to sort */
	if (s->ninstances > 0)
		qsort(s->instances, s->ninstances, sizeof *s->instances,
		    snapshot_by_id_cmp);
	if (s->nrestrictions > 0)
		qsort(s->restrictions, s->nrestrictions,
		    sizeof *s->restrictions, snapshot_by_id_cmp);
	if (s->nroles == 0)
		return;
	qsort(s->roles, s->nroles, sizeof *s->roles, snapshot_by_id_cmp);
	s->roles_by_name = xmalloc(size);
	s->roles_by_rs = xmalloc(size);
	memcpy(s->roles_by_name, s->roles, size);
	memcpy(s->roles_by_rs, s->roles, size);
	qsort(s->roles_by_name, s->nroles, sizeof *s->roles,
	    snapshot_by_name_cmp);
	qsort(s->roles_by_rs, s->nroles, sizeof *s->roles, snapshot_by_rs_cmp);
}

/* snapshot_lister adapters (no function pointer casts). */
static int
snapshot_list_instances(struct db *db, const struct store_query *q, void ***v,
    size_t *n, int *more)
{
	struct instance **a;
	int rc;

	rc = store_instance_list(db, q, &a, n, more);
	*v = (void **)a;
	return (rc);
}

static int
snapshot_list_roles(struct db *db, const struct store_query *q, void ***v,
    size_t *n, int *more)
{
	struct role **a;
	int rc;

	rc = store_role_list(db, q, &a, n, more);
	*v = (void **)a;
	return (rc);
}

static int
snapshot_list_restrictions(struct db *db, const struct store_query *q,
    void ***v, size_t *n, int *more)
{
	struct restriction **a;
	int rc;

	rc = store_restriction_list(db, q, &a, n, more);
	*v = (void **)a;
	return (rc);
}

/* Read everything inside the open transaction. */
static int
snapshot_read(struct db *db, struct snapshot *s)
{
	int rc;

	if ((rc = store_revision(db, &s->revision)) != STORE_OK)
		return (rc);
	rc = snapshot_load_all(db, snapshot_list_instances,
	    (void ***)&s->instances, &s->ninstances);
	if (rc == STORE_OK)
		rc = snapshot_load_tokens(db, s);
	if (rc == STORE_OK)
		rc = snapshot_load_all(db, snapshot_list_roles,
		    (void ***)&s->roles, &s->nroles);
	if (rc == STORE_OK)
		rc = snapshot_load_all(db, snapshot_list_restrictions,
		    (void ***)&s->restrictions, &s->nrestrictions);
	return (rc);
}

/*
 * Load a new snapshot (one reference, the caller's) from db in one
 * transaction, rolled back (a read commits nothing, so it bumps no
 * revision).  Runs on the thread that owns db; STORE_* result.
 */
int
snapshot_load(struct db *db, struct snapshot **out)
{
	struct snapshot *s;
	uint64_t t0 = util_monotonic_us();
	int rc;

	*out = NULL;
	s = xcalloc(1, sizeof *s);
	atomic_init(&s->references, 1);
	if ((rc = store_begin(db)) != STORE_OK) {
		snapshot_free(s);
		return (rc);
	}
	rc = snapshot_read(db, s);
	db_rollback(db);
	if (rc != STORE_OK) {
		snapshot_free(s);
		return (rc);
	}
	snapshot_index(s);
	s->loaded_at = util_now();
	snapshot_confirm(s);
	s->load_seconds = (double)(util_monotonic_us() - t0) / 1e6;
	*out = s;
	return (STORE_OK);
}

/* Counts, for logs and tests. */
void
snapshot_counts(const struct snapshot *s, size_t *ninstances, size_t *nroles,
    size_t *nrestrictions)
{
	*ninstances = s->ninstances;
	*nroles = s->nroles;
	*nrestrictions = s->nrestrictions;
}
