/*
 * test_snapshot.c: the in-memory snapshot (lookups, lists equal to
 * store_list's on the same data, references) and worker_post.
 *
 * test_load_10000_roles prints the full-reload time of 10,000 roles
 * (the figure behind "full reload, no incremental path" in snapshot.c).
 */
#include <sys/types.h>

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <event2/thread.h>

#include "k8sauth.h"
#include "testlib.h"

#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZpZXdlciJ9.c2VjcmV0"

struct fixture {
	char		 dir[64];
	char		*keys;
	char		*path;
	struct db	*db;
};

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof *f);
	char		*cause = NULL;

	snprintf(f->dir, sizeof f->dir, "/tmp/k8sauth-snap-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	xasprintf(&f->keys, "%s/keys", f->dir);
	xasprintf(&f->path, "%s/store.db", f->dir);
	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	f->db = db_open(f->path, &cause);
	assert_non_null(f->db);
	assert_int_equal(db_migrate(f->db, &cause), 0);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	db_close(f->db);
	secret_clear();
	snapshot_clear();
	testlib_rm_tree(f->dir);
	free(f->keys);
	free(f->path);
	free(f);
	return (0);
}

/* Store an instance; its id into id. */
static void
add_instance(struct db *db, const char *domain, const char *name,
    int enabled, const char *jwt, char id[ID_LEN + 1])
{
	struct instance	*in = xcalloc(1, sizeof *in);

	in->domain_id = xstrdup(domain);
	in->name = name != NULL ? xstrdup(name) : NULL;
	in->host = xstrdup("https://k8s.example:6443");
	in->enabled = enabled;
	in->reviewer_jwt = jwt != NULL ? xstrdup(jwt) : NULL;
	assert_int_equal(store_instance_create(db, in), STORE_OK);
	memcpy(id, in->id, ID_LEN + 1);
	instance_free(in);
}

/* Store a restriction; its id into id. */
static void
add_restriction(struct db *db, const char *domain, const char *user,
    char id[ID_LEN + 1])
{
	struct restriction	*rs = xcalloc(1, sizeof *rs);

	rs->domain_id = xstrdup(domain);
	rs->user_id = user != NULL ? xstrdup(user) : NULL;
	rs->project_id = xstrdup("p1");
	rs->nroles = 1;
	rs->roles = xcalloc(1, sizeof *rs->roles);
	rs->roles[0].id = xstrdup("r-member");
	rs->roles[0].name = xstrdup("member");
	assert_int_equal(store_restriction_create(db, rs), STORE_OK);
	memcpy(id, rs->id, ID_LEN + 1);
	restriction_free(rs);
}

/* Store a role; its id into id (may be NULL). */
static void
add_role(struct db *db, const char *iid, const char *domain,
    const char *name, int enabled, const char *rid, char *id)
{
	struct role	*r = xcalloc(1, sizeof *r);

	memcpy(r->auth_instance_id, iid, ID_LEN + 1);
	r->domain_id = xstrdup(domain);
	r->name = xstrdup(name);
	r->enabled = enabled;
	r->bound_sa_names.v = xcalloc(1, sizeof *r->bound_sa_names.v);
	r->bound_sa_names.v[0] = xstrdup("web");
	r->bound_sa_names.n = 1;
	r->token_restriction_id = xstrdup(rid);
	assert_int_equal(store_role_create(db, r), STORE_OK);
	if (id != NULL)
		memcpy(id, r->id, ID_LEN + 1);
	role_free(r);
}

static struct snapshot *
load(struct db *db)
{
	struct snapshot	*s = NULL;

	assert_int_equal(snapshot_load(db, &s), STORE_OK);
	assert_non_null(s);
	return (s);
}

static void
test_lookups(void **state)
{
	struct fixture		*f = *state;
	char			 i1[ID_LEN + 1], i2[ID_LEN + 1], rs1[ID_LEN + 1];
	char			 ro1[ID_LEN + 1], ro2[ID_LEN + 1];
	const struct role	*const *v;
	const struct instance	*in;
	const struct role	*ro;
	struct role		*got;
	struct snapshot		*s;
	uint64_t		 rev;

	add_instance(f->db, "d1", "one", 1, JWT, i1);
	add_instance(f->db, "d1", "two", 1, NULL, i2);
	add_restriction(f->db, "d1", "u1", rs1);
	add_role(f->db, i1, "d1", "web", 1, rs1, ro1);
	/* a role named like another role's id: the id match wins */
	add_role(f->db, i1, "d1", ro1, 1, rs1, ro2);
	s = load(f->db);
	assert_int_equal(store_revision(f->db, &rev), STORE_OK);
	assert_int_equal(snapshot_revision(s), rev);
	in = snapshot_instance(s, i1);
	assert_non_null(in);
	assert_string_equal(in->reviewer_jwt, JWT);
	assert_int_equal(in->reviewer_jwt_set, 1);
	assert_null(snapshot_instance(s, i2)->reviewer_jwt);
	assert_null(snapshot_instance(s, "0123456789abcdef0123456789abcdef"));
	ro = snapshot_role(s, i1, ro1);
	assert_non_null(ro);
	assert_string_equal(ro->id, ro1);
	assert_int_equal(store_role_get(f->db, i1, ro1, &got), STORE_OK);
	assert_string_equal(got->id, ro->id);
	role_free(got);
	assert_string_equal(snapshot_role(s, i1, "web")->id, ro1);
	assert_string_equal(snapshot_role(s, NULL, ro2)->id, ro2);
	assert_null(snapshot_role(s, i2, "web"));  /* another instance */
	assert_null(snapshot_role(s, i2, ro1));    /* id of another's role */
	assert_null(snapshot_role(s, NULL, "web")); /* no instance: id only */
	assert_string_equal(snapshot_restriction(s, rs1)->roles[0].name,
	    "member");
	assert_int_equal(snapshot_roles_of_restriction(s, rs1, &v), 2);
	assert_int_equal(snapshot_roles_of_restriction(s, i1, &v), 0);
	snapshot_unref(s);
}

/* The ids of a store_role_list page and of a snapshot_role_list page. */
static void
compare_role_page(struct fixture *f, const struct snapshot *s,
    const struct store_query *q)
{
	struct role		**a = NULL;
	const struct role	**b = NULL;
	size_t			 na, nb, i;
	int			 ma, mb, ra, rb;

	ra = store_role_list(f->db, q, &a, &na, &ma);
	rb = snapshot_role_list(s, q, &b, &nb, &mb);
	assert_int_equal(ra, rb);
	assert_int_equal(na, nb);
	assert_int_equal(ma, mb);
	for (i = 0; i < na; i++) {
		assert_string_equal(a[i]->id, b[i]->id);
		role_free(a[i]);
	}
	free(a);
	free(b);
}

static void
test_lists_equal_store_list(void **state)
{
	struct fixture		*f = *state;
	char			 i1[ID_LEN + 1], i2[ID_LEN + 1], rs1[ID_LEN + 1];
	char			 ids[40][ID_LEN + 1], name[16];
	struct store_query	 q;
	struct snapshot		*s;
	const char		*markers[4];
	long			 limits[] = { 1, 3, 7, 100 };
	size_t			 i, j, k;

	add_instance(f->db, "d1", "one", 1, NULL, i1);
	add_instance(f->db, "d2", "two", 0, NULL, i2);
	add_restriction(f->db, "d1", "u1", rs1);
	for (i = 0; i < 40; i++) {
		if (i < 13)
			snprintf(name, sizeof name, "r%zu", i);
		else
			snprintf(name, sizeof name, "s%zu", i);
		add_role(f->db, i % 2 ? i1 : i2, i % 3 ? "d1" : "d2", name,
		    (int)(i % 4 != 0), rs1, ids[i]);
	}
	s = load(f->db);
	markers[0] = NULL;
	markers[1] = ids[5];
	markers[2] = ids[30];
	markers[3] = "ffffffffffffffffffffffffffffffff";
	for (i = 0; i < 4; i++) {
		for (j = 0; j < 4; j++) {
			for (k = 0; k < 6; k++) {
				memset(&q, 0, sizeof q);
				q.limit = limits[i];
				q.marker = markers[j];
				if (k == 1)
					api_query_add(&q, "auth_instance_id",
					    i1);
				if (k == 2)
					api_query_add(&q, "enabled", "0");
				if (k == 3) {
					api_query_add(&q, "domain_id", "d1");
					api_query_add(&q, "enabled", "1");
				}
				if (k == 4)
					api_query_add(&q, "name", "r3");
				if (k == 5)
					api_query_add(&q, "bogus", "x");
				compare_role_page(f, s, &q);
			}
		}
	}
	/* a bad boolean is refused by both */
	memset(&q, 0, sizeof q);
	q.limit = 5;
	api_query_add(&q, "enabled", "yes");
	compare_role_page(f, s, &q);
	snapshot_unref(s);
}

static void
test_instance_and_restriction_lists(void **state)
{
	struct fixture			 *f = *state;
	char				  id[ID_LEN + 1];
	struct store_query		  q;
	struct snapshot			 *s;
	const struct instance		**vi;
	const struct restriction	**vr;
	size_t				  n;
	int				  more;

	add_instance(f->db, "d1", "one", 1, JWT, id);
	add_instance(f->db, "d1", NULL, 0, NULL, id);
	add_instance(f->db, "d2", "three", 1, NULL, id);
	add_restriction(f->db, "d1", "u1", id);
	add_restriction(f->db, "d1", NULL, id);
	s = load(f->db);
	memset(&q, 0, sizeof q);
	q.limit = 2;
	api_query_add(&q, "domain_id", "d1");
	assert_int_equal(snapshot_instance_list(s, &q, &vi, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(more, 0);
	free(vi);
	memset(&q, 0, sizeof q);
	q.limit = 10;
	api_query_add(&q, "name", "three");
	assert_int_equal(snapshot_instance_list(s, &q, &vi, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(vi[0]->domain_id, "d2");
	free(vi);
	memset(&q, 0, sizeof q);
	q.limit = 10;
	api_query_add(&q, "user_id", "u1");
	assert_int_equal(snapshot_restriction_list(s, &q, &vr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 1);
	free(vr);
	assert_int_equal(snapshot_restriction_list(NULL, &q, &vr, &n, &more),
	    STORE_UNAVAILABLE);
	snapshot_unref(s);
}

static void
test_references(void **state)
{
	struct fixture		*f = *state;
	char			 i1[ID_LEN + 1];
	const struct instance	*in;
	struct snapshot		*s1, *held, *s2, *now;

	add_instance(f->db, "d1", "one", 1, JWT, i1);
	s1 = load(f->db);
	assert_null(snapshot_get());
	snapshot_publish(s1);
	held = snapshot_get(); /* a request's reference */
	assert_ptr_equal(held, s1);
	in = snapshot_instance(held, i1);
	assert_int_equal(store_instance_delete(f->db, i1), STORE_OK);
	s2 = load(f->db);
	assert_true(snapshot_revision(s2) > snapshot_revision(held));
	snapshot_publish(s2); /* s1 is no longer published... */
	now = snapshot_get();
	assert_ptr_equal(now, s2);
	assert_null(snapshot_instance(now, i1));
	/* ...but stays whole while referenced */
	assert_string_equal(in->reviewer_jwt, JWT);
	assert_string_equal(snapshot_instance(held, i1)->name, "one");
	snapshot_unref(held);
	snapshot_unref(now);
}

/* Insert n roles in one transaction. */
static int
insert_roles(struct db *db, void *arg)
{
	char		 iid[ID_LEN + 1], rid[ID_LEN + 1], name[32];
	int		 i, n = *(int *)arg;

	add_instance(db, "d1", "bench", 1, JWT, iid);
	add_restriction(db, "d1", "u1", rid);
	for (i = 0; i < n; i++) {
		snprintf(name, sizeof name, "role-%05d", i);
		add_role(db, iid, "d1", name, 1, rid, NULL);
	}
	return (STORE_OK);
}

static void
test_load_10000_roles(void **state)
{
	struct fixture		*f = *state;
	struct snapshot		*s;
	const struct role	**v;
	struct store_query	 q;
	size_t			 ni, nr, nx, nv;
	int			 n = 10000, more;
	double			 best = 1e9;

	assert_int_equal(store_run(f->db, insert_roles, &n), STORE_OK);
	for (int i = 0; i < 3; i++) {
		s = load(f->db);
		if (snapshot_load_seconds(s) < best)
			best = snapshot_load_seconds(s);
		snapshot_counts(s, &ni, &nr, &nx);
		assert_int_equal(nr, 10000);
		memset(&q, 0, sizeof q);
		q.limit = 10;
		api_query_add(&q, "name", "role-09999");
		assert_int_equal(snapshot_role_list(s, &q, &v, &nv, &more),
		    STORE_OK);
		assert_int_equal(nv, 1);
		assert_ptr_equal(snapshot_role(s, v[0]->auth_instance_id,
		    "role-09999"), v[0]);
		free(v);
		snapshot_unref(s);
	}
	printf("snapshot: full load of 10000 roles: %.1f ms (best of 3)\n",
	    best * 1000);
	/* far below the default refresh interval (1 s) */
	assert_true(best < 1.0);
}

/* worker_post from another thread: every callback runs, in order. */
struct post_state {
	struct worker	*w;
	int		 seen;
	int		 ordered;
};

static struct post_state	post;

static void
post_cb(void *arg)
{
	int	 i = (int)(intptr_t)arg;

	if (i != post.seen)
		post.ordered = 0;
	post.seen++;
}

static void *
post_thread(void *arg)
{
	for (int i = 0; i < 100; i++)
		assert_int_equal(worker_post(post.w, post_cb,
		    (void *)(intptr_t)i), 0);
	return (NULL);
}

static void
test_worker_post(void **state)
{
	struct worker	 w;
	pthread_t	 t;

	memset(&w, 0, sizeof w);
	evthread_use_pthreads();
	w.base = event_base_new();
	assert_non_null(w.base);
	worker_mailbox_open(&w);
	post.w = &w;
	post.seen = 0;
	post.ordered = 1;
	pthread_create(&t, NULL, post_thread, NULL);
	while (post.seen < 100)
		event_base_loop(w.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
	pthread_join(t, NULL);
	assert_int_equal(post.seen, 100);
	assert_true(post.ordered);
	worker_mailbox_close(&w);
	/* closed: refused, the argument stays the caller's */
	assert_int_equal(worker_post(&w, post_cb, NULL), -1);
	event_base_free(w.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
		T(test_lookups),
		T(test_lists_equal_store_list),
		T(test_instance_and_restriction_lists),
		T(test_references),
		T(test_load_10000_roles),
		cmocka_unit_test(test_worker_post),
#undef T
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
