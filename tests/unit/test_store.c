/*
 * test_store.c: typed data access for instances, roles and restrictions,
 * every test on both engines: SQLite on a temporary file, and MySQL on the
 * fresh database tests/run.sh unit gives this binary on its private
 * mariadbd (K8SAUTH_TEST_MYSQL_URL; the tables are emptied before each
 * test).  The MySQL runs carry a "mysql_" prefix.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"
#include "testlib.h"

#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZpZXdlciJ9.c2VjcmV0"

struct fixture {
	char		 dir[64];
	char		*keys;
	char		*path;	/* what db_open takes: a file or a URL */
	struct db	*db;
	enum db_kind	 kind;
};

static const enum db_kind	engine_sqlite = DB_SQLITE;
static const enum db_kind	engine_mysql = DB_MYSQL;

/* Empty every table of a MySQL test database (the order of the FKs). */
static void
mysql_empty(struct db *db)
{
	static const char *const sql[] = { "DELETE FROM roles",
	    "DELETE FROM restriction_roles", "DELETE FROM restrictions",
	    "DELETE FROM instances", "UPDATE revision SET value = 1", NULL };
	char	*cause = NULL;
	int	 i;

	for (i = 0; sql[i] != NULL; i++) {
		if (db_exec(db, sql[i], &cause) != 0)
			fail_msg("%s", cause);
	}
}

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof *f);
	char		*cause = NULL;

	f->kind = *state != NULL ? *(const enum db_kind *)*state : DB_SQLITE;
	snprintf(f->dir, sizeof f->dir, "/tmp/k8sauth-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	*state = f;
	xasprintf(&f->keys, "%s/keys", f->dir);
	if (f->kind == DB_MYSQL)
		f->path = xstrdup(testlib_mysql_url());
	else
		xasprintf(&f->path, "%s/store.db", f->dir);
	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	f->db = db_open(f->path, &cause);
	if (f->db == NULL)
		fail_msg("db_open: %s", cause);
	if (db_migrate(f->db, &cause) != 0)
		fail_msg("db_migrate: %s", cause);
	if (f->kind == DB_MYSQL)
		mysql_empty(f->db);
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	db_close(f->db);
	secret_clear();
	testlib_rm_tree(f->dir);
	free(f->keys);
	free(f->path);
	free(f);
	return (0);
}

/* A heap instance with the required fields. */
static struct instance *
mk_instance(const char *domain, const char *name)
{
	struct instance	*in = xcalloc(1, sizeof *in);

	in->domain_id = xstrdup(domain);
	in->name = name != NULL ? xstrdup(name) : NULL;
	in->host = xstrdup("https://k8s.example:6443");
	in->enabled = 1;
	return (in);
}

/* A strlist from a NULL-terminated array. */
static void
mk_list(struct strlist *l, const char *const *v)
{
	memset(l, 0, sizeof *l);
	while (v != NULL && v[l->n] != NULL)
		l->n++;
	if (l->n > 0)
		l->v = xcalloc(l->n, sizeof *l->v);
	for (size_t i = 0; i < l->n; i++)
		l->v[i] = xstrdup(v[i]);
}

/* A restriction with roles ids[] (names[] may hold NULLs). */
static struct restriction *
mk_restriction(const char *domain, const char *user, const char *project,
    size_t n, const char *const *ids, const char *const *names)
{
	struct restriction	*rs = xcalloc(1, sizeof *rs);
	size_t			 i;

	rs->domain_id = xstrdup(domain);
	rs->user_id = user != NULL ? xstrdup(user) : NULL;
	rs->project_id = project != NULL ? xstrdup(project) : NULL;
	rs->nroles = n;
	rs->roles = n > 0 ? xcalloc(n, sizeof *rs->roles) : NULL;
	for (i = 0; i < n; i++) {
		rs->roles[i].id = xstrdup(ids[i]);
		rs->roles[i].name = names != NULL && names[i] != NULL ?
		    xstrdup(names[i]) : NULL;
	}
	return (rs);
}

/* A stored restriction usable by roles; returns its id (static). */
static const char *
add_restriction(struct db *db, char id[ID_LEN + 1])
{
	static const char *const ids[] = { "r-member" };
	struct restriction	*rs;

	rs = mk_restriction("d1", "u1", "p1", 1, ids, NULL);
	assert_int_equal(store_restriction_create(db, rs), STORE_OK);
	memcpy(id, rs->id, ID_LEN + 1);
	restriction_free(rs);
	return (id);
}

/* A heap role with the required fields. */
static struct role *
mk_role(const char *instance_id, const char *name, const char *rid)
{
	static const char *const sa[] = { "web-*", NULL };
	static const char *const ns[] = { "prod", "stage", NULL };
	struct role	*r = xcalloc(1, sizeof *r);

	snprintf(r->auth_instance_id, sizeof r->auth_instance_id, "%s",
	    instance_id);
	r->domain_id = xstrdup("d1");
	r->name = xstrdup(name);
	r->enabled = 1;
	mk_list(&r->bound_sa_names, sa);
	mk_list(&r->bound_sa_namespaces, ns);
	r->token_restriction_id = xstrdup(rid);
	return (r);
}

/* Text of one column of one row, past the store (NULL: SQL NULL). */
static char *
raw_text(struct db *db, const char *sql, const char *arg)
{
	struct db_stmt	*st;
	char		*out = NULL;

	assert_non_null(st = db_stmt_sql(db, sql));
	assert_int_equal(db_bind_text(st, 1, arg), 0);
	assert_int_equal(db_step(st), DB_ROW);
	if (!db_column_is_null(st, 0))
		out = xstrdup(db_column_text(st, 0));
	db_stmt_done(db, st);
	return (out);
}

static void
test_instance_minimal_round_trip(void **state)
{
	struct fixture	*f = *state;
	struct instance	*in, *got;

	in = mk_instance("d1", NULL);
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	assert_true(util_is_id(in->id));
	assert_int_equal(strlen(in->created_at), TIMESTAMP_LEN);
	assert_string_equal(in->created_at, in->updated_at);
	assert_int_equal(in->reviewer_jwt_set, 0);
	assert_int_equal(store_instance_get(f->db, in->id, &got), STORE_OK);
	assert_string_equal(got->id, in->id);
	assert_string_equal(got->domain_id, "d1");
	assert_null(got->name);
	assert_string_equal(got->host, "https://k8s.example:6443");
	assert_null(got->ca_cert);
	assert_null(got->reviewer_jwt);
	assert_int_equal(got->reviewer_jwt_set, 0);
	assert_int_equal(got->disable_local_ca_jwt, 0);
	assert_int_equal(got->enabled, 1);
	assert_string_equal(got->created_at, in->created_at);
	assert_string_equal(got->updated_at, in->updated_at);
	instance_free(got);
	instance_free(in);
	assert_int_equal(store_instance_get(f->db, "0123456789abcdef0123456789"
	    "abcdef", &got), STORE_NOT_FOUND);
	assert_null(got);
}

static void
test_instance_full_round_trip_and_encryption(void **state)
{
	struct fixture		*f = *state;
	struct instance		*in, *got, **arr;
	struct store_query	 q = { .limit = 10 };
	size_t			 n;
	int			 more;
	char			*raw, *pt, *cause = NULL;

	in = mk_instance("d1", "cluster-a");
	in->ca_cert = xstrdup("-----BEGIN CERTIFICATE-----\nMII\n");
	in->reviewer_jwt = xstrdup(JWT);
	in->disable_local_ca_jwt = 1;
	in->enabled = 0;
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	assert_int_equal(in->reviewer_jwt_set, 1);

	raw = raw_text(f->db, "SELECT reviewer_jwt_enc FROM instances "
	    "WHERE id = ?1", in->id);
	assert_non_null(raw);
	assert_null(strstr(raw, JWT));
	assert_null(strstr(raw, "eyJ"));
	assert_int_equal(strncmp(raw, "k8s1:1:", 7), 0);
	pt = secret_decrypt(raw, &cause);
	assert_string_equal(pt, JWT);
	freezero_str(pt);
	free(raw);

	assert_int_equal(store_instance_get(f->db, in->id, &got), STORE_OK);
	assert_string_equal(got->name, "cluster-a");
	assert_string_equal(got->ca_cert, in->ca_cert);
	assert_string_equal(got->reviewer_jwt, JWT);
	assert_int_equal(got->reviewer_jwt_set, 1);
	assert_int_equal(got->disable_local_ca_jwt, 1);
	assert_int_equal(got->enabled, 0);
	instance_free(got);

	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(more, 0);
	assert_null(arr[0]->reviewer_jwt);
	assert_int_equal(arr[0]->reviewer_jwt_set, 1);
	assert_string_equal(arr[0]->ca_cert, in->ca_cert);
	instance_free(arr[0]);
	free(arr);
	instance_free(in);
}

/* A row count from the raw handle. */
static int
raw_count(struct db *db, const char *sql, const char *arg)
{
	char	*t = raw_text(db, sql, arg);
	int	 n = (int)strtol(t, NULL, 10);

	free(t);
	return (n);
}

static void
test_instance_update(void **state)
{
	struct fixture	*f = *state;
	struct instance	*in, *got;
	char		 created[TIMESTAMP_LEN + 1], id[ID_LEN + 1];

	in = mk_instance("d1", "a");
	in->reviewer_jwt = xstrdup(JWT);
	in->ca_cert = xstrdup("pem");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	memcpy(created, in->created_at, sizeof created);
	memcpy(id, in->id, sizeof id);
	instance_free(in);

	assert_int_equal(store_instance_get(f->db, id, &got), STORE_OK);
	free(got->name);
	got->name = NULL;
	free(got->ca_cert);
	got->ca_cert = NULL;
	freezero_str(got->reviewer_jwt);
	got->reviewer_jwt = NULL;
	free(got->host);
	got->host = xstrdup("https://other:443");
	got->enabled = 0;
	got->disable_local_ca_jwt = 1;
	usleep(2000);
	assert_int_equal(store_instance_update(f->db, got), STORE_OK);
	assert_int_equal(got->reviewer_jwt_set, 0);
	assert_true(strcmp(got->updated_at, created) > 0);
	instance_free(got);

	assert_int_equal(store_instance_get(f->db, id, &got), STORE_OK);
	assert_null(got->name);
	assert_null(got->ca_cert);
	assert_null(got->reviewer_jwt);
	assert_int_equal(got->reviewer_jwt_set, 0);
	assert_string_equal(got->host, "https://other:443");
	assert_int_equal(got->enabled, 0);
	assert_int_equal(got->disable_local_ca_jwt, 1);
	assert_string_equal(got->created_at, created);
	assert_true(strcmp(got->updated_at, created) > 0);
	assert_null(raw_text(f->db, "SELECT reviewer_jwt_enc FROM instances "
	    "WHERE id = ?1", id));
	/* Set a token again. */
	got->reviewer_jwt = xstrdup("second.reviewer.token");
	assert_int_equal(store_instance_update(f->db, got), STORE_OK);
	instance_free(got);
	assert_int_equal(store_instance_get(f->db, id, &got), STORE_OK);
	assert_string_equal(got->reviewer_jwt, "second.reviewer.token");
	/* A row that is gone. */
	memcpy(got->id, "ffffffffffffffffffffffffffffffff", ID_LEN + 1);
	assert_int_equal(store_instance_update(f->db, got), STORE_NOT_FOUND);
	instance_free(got);
}

static void
test_instance_conflict(void **state)
{
	struct fixture	*f = *state;
	struct instance	*a, *b;

	a = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, a), STORE_OK);
	b = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, b), STORE_CONFLICT);
	instance_free(b);
	b = mk_instance("d2", "a");
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	instance_free(b);
	/* Unnamed instances never collide. */
	b = mk_instance("d1", NULL);
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	instance_free(b);
	b = mk_instance("d1", NULL);
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	instance_free(b);
	/* Renaming onto an existing name. */
	b = mk_instance("d1", "b");
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	free(b->name);
	b->name = xstrdup("a");
	assert_int_equal(store_instance_update(f->db, b), STORE_CONFLICT);
	instance_free(b);
	/* A caller-chosen id that exists. */
	b = mk_instance("d3", "c");
	memcpy(b->id, a->id, ID_LEN + 1);
	assert_int_equal(store_instance_create(f->db, b), STORE_CONFLICT);
	instance_free(b);
	instance_free(a);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM instances "
	    "WHERE ?1 IS NULL", NULL), 5);
}

static void
test_instance_delete_cascades(void **state)
{
	struct fixture	*f = *state;
	struct instance	*a, *b, *gone;
	struct role	*r1, *r2, *r3, *got;
	struct restriction *rs;
	char		 rid[ID_LEN + 1];

	add_restriction(f->db, rid);
	a = mk_instance("d1", "a");
	b = mk_instance("d1", "b");
	assert_int_equal(store_instance_create(f->db, a), STORE_OK);
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	r1 = mk_role(a->id, "one", rid);
	r2 = mk_role(a->id, "two", rid);
	r3 = mk_role(b->id, "one", rid);
	assert_int_equal(store_role_create(f->db, r1), STORE_OK);
	assert_int_equal(store_role_create(f->db, r2), STORE_OK);
	assert_int_equal(store_role_create(f->db, r3), STORE_OK);

	assert_int_equal(store_instance_delete(f->db, a->id), STORE_OK);
	assert_int_equal(store_instance_get(f->db, a->id, &gone),
	    STORE_NOT_FOUND);
	assert_null(gone);
	assert_int_equal(store_role_get(f->db, NULL, r1->id, &got),
	    STORE_NOT_FOUND);
	assert_int_equal(store_role_get(f->db, NULL, r2->id, &got),
	    STORE_NOT_FOUND);
	assert_int_equal(store_role_get(f->db, NULL, r3->id, &got), STORE_OK);
	role_free(got);
	assert_int_equal(store_restriction_get(f->db, rid, &rs), STORE_OK);
	restriction_free(rs);
	assert_int_equal(store_instance_delete(f->db, r1->auth_instance_id),
	    STORE_NOT_FOUND);
	role_free(r1);
	role_free(r2);
	role_free(r3);
	instance_free(a);
	instance_free(b);
}

static void
test_keys_missing(void **state)
{
	struct fixture		*f = *state;
	struct instance		*in, *got, **arr;
	struct store_query	 q = { .limit = 5 };
	size_t			 n;
	int			 more;
	char			*cause = NULL;

	secret_clear();
	in = mk_instance("d1", "a");
	in->reviewer_jwt = xstrdup(JWT);
	assert_int_equal(store_instance_create(f->db, in), STORE_ERROR);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM instances "
	    "WHERE ?1 IS NULL", NULL), 0);
	/* Without a token, no key is needed. */
	freezero_str(in->reviewer_jwt);
	in->reviewer_jwt = NULL;
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	instance_free(in);

	assert_int_equal(secret_load(f->keys, &cause), 0);
	in = mk_instance("d1", "b");
	in->reviewer_jwt = xstrdup(JWT);
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	secret_clear();
	assert_int_equal(store_instance_get(f->db, in->id, &got), STORE_ERROR);
	assert_null(got);
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(arr[0]->reviewer_jwt_set + arr[1]->reviewer_jwt_set,
	    1);
	instance_free(arr[0]);
	instance_free(arr[1]);
	free(arr);
	instance_free(in);
}

static void
test_role_round_trip(void **state)
{
	struct fixture	*f = *state;
	static const char *const pods[] = { "web-0", "web-*", NULL };
	struct instance	*in;
	struct role	*r, *got;
	char		 rid[ID_LEN + 1];

	add_restriction(f->db, rid);
	in = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);

	/* Every optional field unset. */
	r = mk_role(in->id, "minimal", rid);
	assert_int_equal(store_role_create(f->db, r), STORE_OK);
	assert_true(util_is_id(r->id));
	assert_string_equal(r->created_at, r->updated_at);
	assert_int_equal(store_role_get(f->db, in->id, r->id, &got), STORE_OK);
	assert_string_equal(got->id, r->id);
	assert_string_equal(got->auth_instance_id, in->id);
	assert_string_equal(got->domain_id, "d1");
	assert_string_equal(got->name, "minimal");
	assert_int_equal(got->enabled, 1);
	assert_int_equal(got->bound_sa_names.n, 1);
	assert_string_equal(got->bound_sa_names.v[0], "web-*");
	assert_int_equal(got->bound_sa_namespaces.n, 2);
	assert_string_equal(got->bound_sa_namespaces.v[0], "prod");
	assert_string_equal(got->bound_sa_namespaces.v[1], "stage");
	assert_null(got->bound_audience);
	assert_null(got->bound_pod_names);
	assert_int_equal(got->token_ttl, 0);
	assert_string_equal(got->token_restriction_id, rid);
	assert_string_equal(got->created_at, r->created_at);
	assert_null(raw_text(f->db, "SELECT token_ttl FROM roles WHERE id = ?1",
	    r->id));
	assert_null(raw_text(f->db, "SELECT bound_pod_names FROM roles WHERE "
	    "id = ?1", r->id));
	role_free(got);
	role_free(r);

	/* Every optional field set; strings needing JSON escapes. */
	r = mk_role(in->id, "full", rid);
	r->enabled = 0;
	r->bound_audience = xstrdup("vault");
	r->bound_pod_names = xcalloc(1, sizeof *r->bound_pod_names);
	mk_list(r->bound_pod_names, pods);
	free(r->bound_sa_names.v[0]);
	r->bound_sa_names.v[0] = xstrdup("quote\"back\\slash\u00e9");
	r->token_ttl = 600;
	assert_int_equal(store_role_create(f->db, r), STORE_OK);
	assert_int_equal(store_role_get(f->db, in->id, "full", &got),
	    STORE_OK);
	assert_int_equal(got->enabled, 0);
	assert_string_equal(got->bound_audience, "vault");
	assert_non_null(got->bound_pod_names);
	assert_int_equal(got->bound_pod_names->n, 2);
	assert_string_equal(got->bound_pod_names->v[0], "web-0");
	assert_string_equal(got->bound_pod_names->v[1], "web-*");
	assert_string_equal(got->bound_sa_names.v[0],
	    "quote\"back\\slash\u00e9");
	assert_int_equal(got->token_ttl, 600);
	role_free(got);

	/* An empty pod list is not the same as none. */
	strlist_free(r->bound_pod_names);
	assert_int_equal(store_role_update(f->db, r), STORE_OK);
	assert_int_equal(store_role_get(f->db, NULL, r->id, &got), STORE_OK);
	assert_non_null(got->bound_pod_names);
	assert_int_equal(got->bound_pod_names->n, 0);
	role_free(got);
	role_free(r);
	instance_free(in);
}

static void
test_role_lookup(void **state)
{
	struct fixture	*f = *state;
	struct instance	*a, *b;
	struct role	*ra, *rb, *tricky, *got;
	char		 rid[ID_LEN + 1];

	add_restriction(f->db, rid);
	a = mk_instance("d1", "a");
	b = mk_instance("d1", "b");
	assert_int_equal(store_instance_create(f->db, a), STORE_OK);
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	ra = mk_role(a->id, "web", rid);
	rb = mk_role(b->id, "web", rid);
	assert_int_equal(store_role_create(f->db, ra), STORE_OK);
	assert_int_equal(store_role_create(f->db, rb), STORE_OK);

	assert_int_equal(store_role_get(f->db, a->id, "web", &got), STORE_OK);
	assert_string_equal(got->id, ra->id);
	role_free(got);
	assert_int_equal(store_role_get(f->db, b->id, "web", &got), STORE_OK);
	assert_string_equal(got->id, rb->id);
	role_free(got);
	assert_int_equal(store_role_get(f->db, b->id, ra->id, &got),
	    STORE_NOT_FOUND);
	assert_null(got);
	assert_int_equal(store_role_get(f->db, NULL, "web", &got),
	    STORE_NOT_FOUND);
	assert_int_equal(store_role_get(f->db, NULL, ra->id, &got), STORE_OK);
	role_free(got);
	assert_int_equal(store_role_get(f->db, a->id, "nope", &got),
	    STORE_NOT_FOUND);

	/* A role named like another role's id: the id match wins. */
	tricky = mk_role(a->id, ra->id, rid);
	assert_int_equal(store_role_create(f->db, tricky), STORE_OK);
	assert_int_equal(store_role_get(f->db, a->id, ra->id, &got),
	    STORE_OK);
	assert_string_equal(got->id, ra->id);
	role_free(got);
	assert_int_equal(store_role_get(f->db, a->id, tricky->id, &got),
	    STORE_OK);
	assert_string_equal(got->id, tricky->id);
	role_free(got);
	role_free(tricky);
	role_free(ra);
	role_free(rb);
	instance_free(a);
	instance_free(b);
}

static void
test_role_conflicts_and_references(void **state)
{
	struct fixture	*f = *state;
	struct instance	*in;
	struct role	*r, *s, *got;
	char		 rid[ID_LEN + 1];

	add_restriction(f->db, rid);
	in = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	r = mk_role(in->id, "web", rid);
	assert_int_equal(store_role_create(f->db, r), STORE_OK);
	s = mk_role(in->id, "web", rid);
	assert_int_equal(store_role_create(f->db, s), STORE_CONFLICT);
	role_free(s);

	/* Missing referenced rows. */
	s = mk_role(in->id, "x", "ffffffffffffffffffffffffffffffff");
	assert_int_equal(store_role_create(f->db, s), STORE_NOT_FOUND);
	role_free(s);
	s = mk_role("eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee", "x", rid);
	assert_int_equal(store_role_create(f->db, s), STORE_NOT_FOUND);
	role_free(s);

	/* Update: rename onto a taken name, then a real change. */
	s = mk_role(in->id, "api", rid);
	assert_int_equal(store_role_create(f->db, s), STORE_OK);
	free(s->name);
	s->name = xstrdup("web");
	assert_int_equal(store_role_update(f->db, s), STORE_CONFLICT);
	free(s->name);
	s->name = xstrdup("api2");
	s->token_ttl = 120;
	strlist_free(&s->bound_sa_names);
	assert_int_equal(store_role_update(f->db, s), STORE_OK);
	assert_int_equal(store_role_get(f->db, in->id, "api2", &got),
	    STORE_OK);
	assert_int_equal(got->token_ttl, 120);
	assert_int_equal(got->bound_sa_names.n, 0);
	assert_string_equal(got->created_at, s->created_at);
	role_free(got);
	assert_int_equal(store_role_get(f->db, in->id, "api", &got),
	    STORE_NOT_FOUND);

	assert_int_equal(store_role_delete(f->db, s->id), STORE_OK);
	assert_int_equal(store_role_delete(f->db, s->id), STORE_NOT_FOUND);
	assert_int_equal(store_role_update(f->db, s), STORE_NOT_FOUND);
	role_free(s);
	role_free(r);
	instance_free(in);
}

static void
test_restriction_round_trip(void **state)
{
	struct fixture		*f = *state;
	static const char *const ids[] = { "z-role", "a-role", "m-role" };
	static const char *const names[] = { "member", NULL, "reader" };
	static const char *const one[] = { "only" };
	struct restriction	*rs, *got;
	char			 created[TIMESTAMP_LEN + 1];

	rs = mk_restriction("d1", NULL, NULL, 0, NULL, NULL);
	assert_int_equal(store_restriction_create(f->db, rs), STORE_OK);
	assert_true(util_is_id(rs->id));
	assert_int_equal(store_restriction_get(f->db, rs->id, &got),
	    STORE_OK);
	assert_string_equal(got->domain_id, "d1");
	assert_null(got->user_id);
	assert_null(got->project_id);
	assert_int_equal(got->nroles, 0);
	assert_int_equal(got->allow_renew, 0);
	assert_int_equal(got->allow_rescope, 0);
	assert_string_equal(got->created_at, rs->created_at);
	restriction_free(got);
	restriction_free(rs);

	rs = mk_restriction("d1", "u1", "p1", 3, ids, names);
	rs->allow_renew = 1;
	rs->allow_rescope = 1;
	assert_int_equal(store_restriction_create(f->db, rs), STORE_OK);
	assert_int_equal(store_restriction_get(f->db, rs->id, &got),
	    STORE_OK);
	assert_string_equal(got->user_id, "u1");
	assert_string_equal(got->project_id, "p1");
	assert_int_equal(got->allow_renew, 1);
	assert_int_equal(got->allow_rescope, 1);
	assert_int_equal(got->nroles, 3);
	assert_string_equal(got->roles[0].id, "z-role");
	assert_string_equal(got->roles[0].name, "member");
	assert_string_equal(got->roles[1].id, "a-role");
	assert_null(got->roles[1].name);
	assert_string_equal(got->roles[2].id, "m-role");
	assert_string_equal(got->roles[2].name, "reader");
	memcpy(created, got->created_at, sizeof created);
	restriction_free(got);
	restriction_free(rs);

	assert_int_equal(store_restriction_get(f->db,
	    "ffffffffffffffffffffffffffffffff", &got), STORE_NOT_FOUND);
	assert_null(got);

	/* A list carries each restriction's roles, in order. */
	rs = NULL;
	{
		struct store_query	 q = { .limit = 10 };
		struct restriction	**arr;
		size_t			 n, i;
		int			 more;

		assert_int_equal(store_restriction_list(f->db, &q, &arr, &n,
		    &more), STORE_OK);
		assert_int_equal(n, 2);
		for (i = 0; i < n; i++) {
			if (arr[i]->nroles == 3)
				rs = arr[i];
			else
				restriction_free(arr[i]);
		}
		free(arr);
	}
	assert_non_null(rs);
	assert_string_equal(rs->roles[1].id, "a-role");
	assert_null(rs->roles[1].name);
	assert_string_equal(rs->created_at, created);
	restriction_free(rs);

	/* Update replaces the role list and clears fields. */
	rs = mk_restriction("d1", NULL, "p2", 1, one, NULL);
	assert_int_equal(store_restriction_create(f->db, rs), STORE_OK);
	free(rs->project_id);
	rs->project_id = xstrdup("p3");
	rs->allow_renew = 1;
	for (size_t i = 0; i < rs->nroles; i++) {
		free(rs->roles[i].id);
		free(rs->roles[i].name);
	}
	free(rs->roles);
	rs->roles = xcalloc(2, sizeof *rs->roles);
	rs->nroles = 2;
	rs->roles[0].id = xstrdup("r2");
	rs->roles[1].id = xstrdup("r1");
	rs->roles[1].name = xstrdup("one");
	assert_int_equal(store_restriction_update(f->db, rs), STORE_OK);
	assert_int_equal(store_restriction_get(f->db, rs->id, &got),
	    STORE_OK);
	assert_string_equal(got->project_id, "p3");
	assert_int_equal(got->allow_renew, 1);
	assert_int_equal(got->nroles, 2);
	assert_string_equal(got->roles[0].id, "r2");
	assert_string_equal(got->roles[1].id, "r1");
	assert_string_equal(got->roles[1].name, "one");
	restriction_free(got);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM "
	    "restriction_roles WHERE restriction_id = ?1", rs->id), 2);

	/* Updating a missing restriction writes nothing at all. */
	memcpy(rs->id, "ffffffffffffffffffffffffffffffff", ID_LEN + 1);
	assert_int_equal(store_restriction_update(f->db, rs), STORE_NOT_FOUND);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM "
	    "restriction_roles WHERE restriction_id = ?1", rs->id), 0);
	restriction_free(rs);
}

static void
test_restriction_in_use(void **state)
{
	struct fixture		*f = *state;
	static const char *const ids[] = { "r-a", "r-b" };
	struct restriction	*rs, *got;
	struct instance		*in;
	struct role		*r;

	rs = mk_restriction("d1", "u", "p", 2, ids, NULL);
	assert_int_equal(store_restriction_create(f->db, rs), STORE_OK);
	in = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	r = mk_role(in->id, "web", rs->id);
	assert_int_equal(store_role_create(f->db, r), STORE_OK);

	assert_int_equal(store_restriction_delete(f->db, rs->id),
	    STORE_IN_USE);
	assert_int_equal(store_restriction_get(f->db, rs->id, &got),
	    STORE_OK);
	assert_int_equal(got->nroles, 2);
	restriction_free(got);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM "
	    "restriction_roles WHERE restriction_id = ?1", rs->id), 2);

	assert_int_equal(store_role_delete(f->db, r->id), STORE_OK);
	assert_int_equal(store_restriction_delete(f->db, rs->id), STORE_OK);
	assert_int_equal(raw_count(f->db, "SELECT count(*) FROM "
	    "restriction_roles WHERE restriction_id = ?1", rs->id), 0);
	assert_int_equal(store_restriction_delete(f->db, rs->id),
	    STORE_NOT_FOUND);
	assert_int_equal(store_restriction_get(f->db, rs->id, &got),
	    STORE_NOT_FOUND);
	role_free(r);
	instance_free(in);
	restriction_free(rs);
}

/* Run an instance list with up to two filters; returns count or -1. */
static int
count_instances(struct db *db, const char *n1, const char *v1,
    const char *n2, const char *v2)
{
	struct store_query	 q = { .limit = 100 };
	struct instance		**arr;
	size_t			 n, i;
	int			 more;

	if (n1 != NULL) {
		q.filter_names[q.nfilters] = n1;
		q.filter_values[q.nfilters++] = v1;
	}
	if (n2 != NULL) {
		q.filter_names[q.nfilters] = n2;
		q.filter_values[q.nfilters++] = v2;
	}
	if (store_instance_list(db, &q, &arr, &n, &more) != STORE_OK)
		return (-1);
	for (i = 0; i < n; i++)
		instance_free(arr[i]);
	free(arr);
	return ((int)n);
}

/* The same for roles. */
static int
count_roles(struct db *db, const char *n1, const char *v1)
{
	struct store_query	 q = { .limit = 100 };
	struct role		**arr;
	size_t			 n, i;
	int			 more;

	q.filter_names[0] = n1;
	q.filter_values[0] = v1;
	q.nfilters = 1;
	if (store_role_list(db, &q, &arr, &n, &more) != STORE_OK)
		return (-1);
	for (i = 0; i < n; i++)
		role_free(arr[i]);
	free(arr);
	return ((int)n);
}

/* The same for restrictions. */
static int
count_restrictions(struct db *db, const char *n1, const char *v1)
{
	struct store_query	 q = { .limit = 100 };
	struct restriction	**arr;
	size_t			 n, i;
	int			 more;

	q.filter_names[0] = n1;
	q.filter_values[0] = v1;
	q.nfilters = 1;
	if (store_restriction_list(db, &q, &arr, &n, &more) != STORE_OK)
		return (-1);
	for (i = 0; i < n; i++)
		restriction_free(arr[i]);
	free(arr);
	return ((int)n);
}

static void
test_filters(void **state)
{
	struct fixture		*f = *state;
	static const char *const ids[] = { "r" };
	struct instance		*a, *b, *c;
	struct role		*r1, *r2, *r3;
	struct restriction	*x1, *x2;

	a = mk_instance("d1", "a");
	b = mk_instance("d1", "b");
	b->enabled = 0;
	c = mk_instance("d2", "a");
	assert_int_equal(store_instance_create(f->db, a), STORE_OK);
	assert_int_equal(store_instance_create(f->db, b), STORE_OK);
	assert_int_equal(store_instance_create(f->db, c), STORE_OK);
	assert_int_equal(count_instances(f->db, NULL, NULL, NULL, NULL), 3);
	assert_int_equal(count_instances(f->db, "domain_id", "d1", NULL,
	    NULL), 2);
	assert_int_equal(count_instances(f->db, "name", "a", NULL, NULL), 2);
	assert_int_equal(count_instances(f->db, "enabled", "0", NULL, NULL),
	    1);
	assert_int_equal(count_instances(f->db, "enabled", "1", NULL, NULL),
	    2);
	assert_int_equal(count_instances(f->db, "domain_id", "d2", "name",
	    "a"), 1);
	assert_int_equal(count_instances(f->db, "enabled", "1", "domain_id",
	    "d1"), 1);
	assert_int_equal(count_instances(f->db, "name", "zzz", NULL, NULL),
	    0);
	/* Anything outside the whitelist is refused, never put into SQL. */
	assert_int_equal(count_instances(f->db, "host", "x", NULL, NULL), -1);
	assert_int_equal(count_instances(f->db, "id", "x", NULL, NULL), -1);
	assert_int_equal(count_instances(f->db, "name = name OR 1 = 1 --",
	    "x", NULL, NULL), -1);
	assert_int_equal(count_instances(f->db, "enabled", "true", NULL,
	    NULL), -1);
	assert_int_equal(count_instances(f->db, "name", "a", "name", "b"),
	    -1);
	assert_int_equal(count_instances(f->db, "name", NULL, NULL, NULL),
	    -1);

	x1 = mk_restriction("d1", "u1", "p1", 1, ids, NULL);
	x2 = mk_restriction("d2", "u2", "p1", 1, ids, NULL);
	assert_int_equal(store_restriction_create(f->db, x1), STORE_OK);
	assert_int_equal(store_restriction_create(f->db, x2), STORE_OK);
	assert_int_equal(count_restrictions(f->db, "domain_id", "d2"), 1);
	assert_int_equal(count_restrictions(f->db, "user_id", "u1"), 1);
	assert_int_equal(count_restrictions(f->db, "project_id", "p1"), 2);
	assert_int_equal(count_restrictions(f->db, "allow_renew", "0"), -1);

	r1 = mk_role(a->id, "web", x1->id);
	r2 = mk_role(a->id, "api", x1->id);
	r2->enabled = 0;
	r3 = mk_role(b->id, "web", x1->id);
	free(r3->domain_id);
	r3->domain_id = xstrdup("d9");
	assert_int_equal(store_role_create(f->db, r1), STORE_OK);
	assert_int_equal(store_role_create(f->db, r2), STORE_OK);
	assert_int_equal(store_role_create(f->db, r3), STORE_OK);
	assert_int_equal(count_roles(f->db, "auth_instance_id", a->id), 2);
	assert_int_equal(count_roles(f->db, "name", "web"), 2);
	assert_int_equal(count_roles(f->db, "enabled", "0"), 1);
	assert_int_equal(count_roles(f->db, "domain_id", "d9"), 1);
	assert_int_equal(count_roles(f->db, "bound_audience", "x"), -1);
	assert_int_equal(count_roles(f->db, "enabled", ""), -1);

	role_free(r1);
	role_free(r2);
	role_free(r3);
	restriction_free(x1);
	restriction_free(x2);
	instance_free(a);
	instance_free(b);
	instance_free(c);
}

/* Compare strings for qsort. */
static int
cmp_str(const void *a, const void *b)
{
	return (strcmp(*(char *const *)a, *(char *const *)b));
}

static void
test_pagination(void **state)
{
	struct fixture		*f = *state;
	struct store_query	 q = { .limit = 3 };
	struct instance		*in, **arr;
	char			*ids[7], marker[ID_LEN + 1];
	size_t			 n, i, seen = 0;
	int			 more, page;

	for (i = 0; i < 7; i++) {
		in = mk_instance("d1", NULL);
		assert_int_equal(store_instance_create(f->db, in), STORE_OK);
		ids[i] = xstrdup(in->id);
		instance_free(in);
	}
	qsort(ids, 7, sizeof *ids, cmp_str);
	for (page = 0; page < 3; page++) {
		assert_int_equal(store_instance_list(f->db, &q, &arr, &n,
		    &more), STORE_OK);
		assert_int_equal(n, page < 2 ? 3 : 1);
		assert_int_equal(more, page < 2);
		for (i = 0; i < n; i++) {
			assert_string_equal(arr[i]->id, ids[seen++]);
		}
		memcpy(marker, arr[n - 1]->id, sizeof marker);
		q.marker = marker;
		for (i = 0; i < n; i++)
			instance_free(arr[i]);
		free(arr);
	}
	assert_int_equal(seen, 7);

	/* Exactly a full page: no further page. */
	q.marker = NULL;
	q.limit = 7;
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 7);
	assert_int_equal(more, 0);
	for (i = 0; i < n; i++)
		instance_free(arr[i]);
	free(arr);
	q.limit = 6;
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 6);
	assert_int_equal(more, 1);
	for (i = 0; i < n; i++)
		instance_free(arr[i]);
	free(arr);
	/* Past the end, and a bad limit. */
	q.marker = ids[6];
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 0);
	assert_int_equal(more, 0);
	free(arr);
	q.limit = 0;
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_ERROR);
	for (i = 0; i < 7; i++)
		free(ids[i]);
}

static void
test_durable_after_sigkill(void **state)
{
	struct fixture		*f = *state;
	struct restriction	*rs, *got;
	struct db		*db;
	char			 id[ID_LEN + 1], *cause = NULL;
	int			 fds[2], status;
	pid_t			 pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		if ((db = db_open(f->path, &cause)) == NULL)
			_exit(1);
		rs = mk_restriction("d1", "u", "p", 0, NULL, NULL);
		if (store_restriction_create(db, rs) != STORE_OK)
			_exit(1);
		if (write(fds[1], rs->id, ID_LEN) != ID_LEN)
			_exit(1);
		for (;;)
			pause();
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], id, ID_LEN), ID_LEN);
	id[ID_LEN] = '\0';
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	close(fds[0]);
	/* A fresh connection, as after a restart. */
	db = db_open(f->path, &cause);
	assert_non_null(db);
	assert_int_equal(store_restriction_get(db, id, &got), STORE_OK);
	assert_string_equal(got->user_id, "u");
	restriction_free(got);
	db_close(db);
}

/*
 * Names compare case-sensitively and lists are in bytewise id order on
 * both engines (MySQL: utf8mb4_bin; a _ci collation would make "Admin"
 * collide with "admin" and sort "a1" next to "A1").
 */
static void
test_case_and_byte_order(void **state)
{
	static const char *const ids[] = { "b1", "a1", "B2", "A1", "_x" };
	static const char *const want[] = { "A1", "B2", "_x", "a1", "b1" };
	struct fixture		*f = *state;
	struct store_query	 q = { .limit = 10 };
	struct instance		*in, **arr;
	struct role		*r1, *r2, *got;
	char			 rid[ID_LEN + 1];
	size_t			 n, i;
	int			 more;

	add_restriction(f->db, rid);
	for (i = 0; i < 5; i++) {
		in = mk_instance("d1", ids[i]);
		snprintf(in->id, sizeof in->id, "%s", ids[i]);
		assert_int_equal(store_instance_create(f->db, in), STORE_OK);
		instance_free(in);
	}
	assert_int_equal(store_instance_list(f->db, &q, &arr, &n, &more),
	    STORE_OK);
	assert_int_equal(n, 5);
	for (i = 0; i < n; i++) {
		assert_string_equal(arr[i]->id, want[i]);
		instance_free(arr[i]);
	}
	free(arr);
	r1 = mk_role("a1", "Admin", rid);
	r2 = mk_role("a1", "admin", rid);
	assert_int_equal(store_role_create(f->db, r1), STORE_OK);
	assert_int_equal(store_role_create(f->db, r2), STORE_OK);
	assert_int_equal(store_role_get(f->db, "a1", "admin", &got), STORE_OK);
	assert_string_equal(got->id, r2->id);
	role_free(got);
	assert_int_equal(store_role_get(f->db, "a1", "ADMIN", &got),
	    STORE_NOT_FOUND);
	/* A name may equal another role's id: the id match wins (?2 twice). */
	free(r2->name);
	r2->name = xstrdup(r1->id);
	assert_int_equal(store_role_update(f->db, r2), STORE_OK);
	assert_int_equal(store_role_get(f->db, "a1", r1->id, &got), STORE_OK);
	assert_string_equal(got->id, r1->id);
	role_free(got);
	role_free(r1);
	role_free(r2);
}

/* Every committed write bumps the revision once; a failed one does not. */
static void
test_revision_per_write(void **state)
{
	struct fixture	*f = *state;
	struct instance	*in, *dup;
	uint64_t	 r0, r1;

	assert_int_equal(store_revision(f->db, &r0), STORE_OK);
	in = mk_instance("d1", "rev");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	assert_int_equal(store_revision(f->db, &r1), STORE_OK);
	assert_int_equal(r1, r0 + 1);
	dup = mk_instance("d1", "rev");
	assert_int_equal(store_instance_create(f->db, dup), STORE_CONFLICT);
	assert_int_equal(store_revision(f->db, &r1), STORE_OK);
	assert_int_equal(r1, r0 + 1);
	assert_int_equal(store_instance_update(f->db, in), STORE_OK);
	assert_int_equal(store_instance_delete(f->db, in->id), STORE_OK);
	assert_int_equal(store_instance_delete(f->db, in->id),
	    STORE_NOT_FOUND);
	assert_int_equal(store_revision(f->db, &r1), STORE_OK);
	assert_int_equal(r1, r0 + 3);
	instance_free(in);
	instance_free(dup);
}

/*
 * Run db-copy with these arguments; its exit status.  On copies: db-copy
 * wipes the passwords from its argv, as a real command line's must be.
 */
static int
run_db_copy(const char *from, const char *to, int force)
{
	char	*f = xstrdup(from), *t = xstrdup(to);
	char	*argv[] = { (char *)"db-copy", (char *)"--from", f,
	    (char *)"--to", t, (char *)"--force", NULL };
	int	 rc;

	rc = db_copy_main(force ? 6 : 5, argv);
	free(f);
	free(t);
	return (rc);
}

/*
 * db-copy from a populated SQLite file to the MySQL test database: every
 * row, the reviewer token still sealed with the same keys, a non-empty
 * target refused without --force and replaced with it, the revision
 * bumped, and a source at another schema version refused.
 */
static void
test_db_copy_sqlite_to_mysql(void **state)
{
	static const char *const rids[] = { "r-a", "r-b" };
	static const char *const rnames[] = { "member", NULL };
	struct fixture		*f = *state;
	struct instance		*in, *got;
	struct restriction	*rs, *grs;
	struct role		*r, *gr;
	struct db		*my;
	const char		*url = testlib_mysql_url();
	char			*cause = NULL;
	uint64_t		 rev0, rev1;

	in = mk_instance("d1", "prod");
	in->reviewer_jwt = xstrdup(JWT);
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	rs = mk_restriction("d1", "u1", NULL, 2, rids, rnames);
	assert_int_equal(store_restriction_create(f->db, rs), STORE_OK);
	r = mk_role(in->id, "web", rs->id);
	r->token_ttl = 300;
	assert_int_equal(store_role_create(f->db, r), STORE_OK);

	if ((my = db_open(url, &cause)) == NULL ||
	    db_migrate(my, &cause) != 0)
		fail_msg("%s", cause);
	mysql_empty(my);
	assert_int_equal(store_revision(my, &rev0), STORE_OK);
	assert_int_equal(run_db_copy(f->path, url, 0), 0);
	assert_int_equal(store_revision(my, &rev1), STORE_OK);
	assert_int_equal(rev1, rev0 + 1);
	assert_int_equal(store_instance_get(my, in->id, &got), STORE_OK);
	assert_string_equal(got->reviewer_jwt, JWT);
	assert_string_equal(got->name, "prod");
	instance_free(got);
	assert_int_equal(store_restriction_get(my, rs->id, &grs), STORE_OK);
	assert_int_equal(grs->nroles, 2);
	assert_string_equal(grs->roles[0].name, "member");
	assert_null(grs->roles[1].name);
	assert_null(grs->project_id);
	restriction_free(grs);
	assert_int_equal(store_role_get(my, in->id, "web", &gr), STORE_OK);
	assert_int_equal(gr->token_ttl, 300);
	assert_null(gr->bound_pod_names);
	role_free(gr);

	/* Not empty: refused (nothing changes), then replaced. */
	assert_int_equal(run_db_copy(f->path, url, 0), 1);
	assert_int_equal(store_revision(my, &rev0), STORE_OK);
	assert_int_equal(rev0, rev1);
	assert_int_equal(store_role_delete(f->db, r->id), STORE_OK);
	assert_int_equal(run_db_copy(f->path, url, 1), 0);
	assert_int_equal(store_role_get(my, in->id, "web", &gr),
	    STORE_NOT_FOUND);

	/* A source behind this binary's schema: run db-sync first. */
	assert_int_equal(db_exec(f->db, "PRAGMA user_version = 5", NULL), 0);
	assert_int_equal(run_db_copy(f->path, url, 1), 1);
	assert_int_equal(store_instance_get(my, in->id, &got), STORE_OK);
	instance_free(got);
	db_close(my);
	instance_free(in);
	restriction_free(rs);
	role_free(r);
}

/*
 * The write guard's database side: store_unchanged compares a row's
 * version inside the write transaction (FOR UPDATE on MySQL), and
 * store_instance_print gives, for the rows as stored, the very text
 * snapshot_instance_print gives for a snapshot of them; any role or
 * restriction write that bears on the instance changes it.
 */
static void
test_write_guard(void **state)
{
	struct fixture		*f = *state;
	struct snapshot		*snap = NULL;
	struct instance		*in;
	struct restriction	*rs;
	struct role		*r1, *r2;
	char			 rid[ID_LEN + 1], *p1, *p2, *ps;

	add_restriction(f->db, rid);
	in = mk_instance("d1", "a");
	assert_int_equal(store_instance_create(f->db, in), STORE_OK);
	r1 = mk_role(in->id, "one", rid);
	r2 = mk_role(in->id, "two", rid);
	assert_int_equal(store_role_create(f->db, r1), STORE_OK);
	assert_int_equal(store_role_create(f->db, r2), STORE_OK);

	assert_int_equal(store_begin(f->db), STORE_OK);
	assert_int_equal(store_unchanged(f->db, "instances", in->id,
	    in->updated_at), STORE_OK);
	assert_int_equal(store_unchanged(f->db, "roles", r1->id,
	    r1->updated_at), STORE_OK);
	assert_int_equal(store_unchanged(f->db, "roles", r1->id,
	    "2000-01-01T00:00:00.000000Z"), STORE_CHANGED);
	assert_int_equal(store_unchanged(f->db, "roles", "no-such-role",
	    r1->updated_at), STORE_CHANGED);
	assert_int_equal(store_instance_print(f->db, in->id, &p1), STORE_OK);
	assert_int_equal(store_finish(f->db, STORE_OK), STORE_OK);

	assert_int_equal(snapshot_load(f->db, &snap), STORE_OK);
	ps = snapshot_instance_print(snap, in->id);
	assert_string_equal(p1, ps);
	assert_non_null(strstr(p1, r1->id));
	assert_non_null(strstr(p1, r2->id));
	assert_non_null(strstr(p1, rid));
	free(ps);
	snapshot_unref(snap);

	/* A write to a restriction the instance's roles bind moves it. */
	assert_int_equal(store_restriction_get(f->db, rid, &rs), STORE_OK);
	rs->allow_renew = !rs->allow_renew;
	usleep(2);
	assert_int_equal(store_restriction_update(f->db, rs), STORE_OK);
	restriction_free(rs);
	assert_int_equal(store_instance_print(f->db, in->id, &p2), STORE_OK);
	assert_string_not_equal(p1, p2);
	free(p2);
	/* So does deleting one of its roles; another instance's is empty. */
	assert_int_equal(store_role_delete(f->db, r2->id), STORE_OK);
	assert_int_equal(store_instance_print(f->db, in->id, &p2), STORE_OK);
	assert_null(strstr(p2, r2->id));
	free(p2);
	assert_int_equal(store_instance_print(f->db, "no-such-instance", &p2),
	    STORE_OK);
	assert_string_equal(p2, "");
	free(p2);
	free(p1);
	role_free(r1);
	role_free(r2);
	instance_free(in);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
#define T(name)                                                        \
	{ #name, name, setup, teardown, (void *)&engine_sqlite },      \
	{ "mysql_" #name, name, setup, teardown, (void *)&engine_mysql }
		T(test_instance_minimal_round_trip),
		T(test_instance_full_round_trip_and_encryption),
		T(test_instance_update),
		T(test_instance_conflict),
		T(test_instance_delete_cascades),
		T(test_keys_missing),
		T(test_role_round_trip),
		T(test_role_lookup),
		T(test_role_conflicts_and_references),
		T(test_restriction_round_trip),
		T(test_restriction_in_use),
		T(test_filters),
		T(test_pagination),
		T(test_durable_after_sigkill),
		T(test_case_and_byte_order),
		T(test_revision_per_write),
		T(test_write_guard),
#undef T
		cmocka_unit_test_setup_teardown(test_db_copy_sqlite_to_mysql,
		    setup, teardown),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
