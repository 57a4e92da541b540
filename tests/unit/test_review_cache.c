/*
 * test_review_cache.c: the TokenReview result cache on its own (no
 * workers, no cluster): an outcome survives packing field for field, a
 * result lives until its expiry and not a moment longer, the least
 * recently used result goes first when the cache is full, a refusal comes
 * back as a refusal, forgetting an instance drops only its results, the
 * key separates JWT, instance and audience, and a typical result costs
 * well under 1 KiB.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <malloc.h>

#include <cmocka.h>

#include "k8sauth.h"

#define INST_A "0123456789abcdef0123456789abcdef"
#define INST_B "fedcba9876543210fedcba9876543210"

/* A typical pod-bound review outcome. */
static void
outcome_fill(struct k8s_review_outcome *o, const char *name)
{
	static const char *const extra =
	    "{\"authentication.kubernetes.io/credential-id\":[\"JTI=8a1f9e2c-4b7d-4e0a-9c3b-2f6d8e1a7b5c\"],"
	    "\"authentication.kubernetes.io/node-name\":[\"node-1\"],"
	    "\"authentication.kubernetes.io/node-uid\":[\"3c2b1a09-8f7e-4d6c-b5a4-392817160504\"],"
	    "\"authentication.kubernetes.io/pod-name\":[\"api-0\"],"
	    "\"authentication.kubernetes.io/pod-uid\":[\"5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716\"]}";

	memset(o, 0, sizeof *o);
	xasprintf(&o->username, "system:serviceaccount:team-a:%s", name);
	o->uid = xstrdup("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a");
	o->namespace = xstrdup("team-a");
	o->name = xstrdup(name);
	o->pod_name = xstrdup("api-0");
	o->pod_uid = xstrdup("5e4d3c2b-1a09-4f8e-9d7c-6b5a49382716");
	o->node_name = xstrdup("node-1");
	o->node_uid = xstrdup("3c2b1a09-8f7e-4d6c-b5a4-392817160504");
	o->groups.v = xcalloc(3, sizeof *o->groups.v);
	o->groups.v[0] = xstrdup("system:serviceaccounts");
	o->groups.v[1] = xstrdup("system:serviceaccounts:team-a");
	o->groups.v[2] = xstrdup("system:authenticated");
	o->groups.n = 3;
	o->audiences.v = xcalloc(1, sizeof *o->audiences.v);
	o->audiences.v[0] = xstrdup("https://kubernetes.default.svc");
	o->audiences.n = 1;
	o->extra = cJSON_Parse(extra);
}

/* A key for (jwt, instance) without an audience. */
static void
key_of(const char *jwt, const char *inst, uint8_t key[32])
{
	review_cache_key(jwt, inst, NULL, key);
}

static int
setup(void **state)
{
	review_cache_reset(8);
	return (0);
}

static void
test_round_trip(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t key[32];
	size_t i;
	cJSON *x;

	outcome_fill(&in, "web");
	key_of("jwt-1", INST_A, key);
	review_cache_put(key, INST_A, &in, 1000.0);
	assert_int_equal(review_cache_get(key, INST_A, 999.0, &out), 1);
	assert_int_equal(out.reason, REASON_NONE);
	assert_string_equal(out.username, in.username);
	assert_string_equal(out.uid, in.uid);
	assert_string_equal(out.namespace, "team-a");
	assert_string_equal(out.name, "web");
	assert_string_equal(out.pod_name, "api-0");
	assert_string_equal(out.pod_uid, in.pod_uid);
	assert_string_equal(out.node_name, "node-1");
	assert_string_equal(out.node_uid, in.node_uid);
	assert_int_equal(out.groups.n, 3);
	for (i = 0; i < 3; i++)
		assert_string_equal(out.groups.v[i], in.groups.v[i]);
	assert_int_equal(out.audiences.n, 1);
	assert_string_equal(out.audiences.v[0], in.audiences.v[0]);
	x = review_cache_extra_dup(&out);
	assert_true(cJSON_Compare(x, in.extra, 1));
	cJSON_Delete(x);
	k8s_review_outcome_clear(&out);
	k8s_review_outcome_clear(&in);
}

/* Absent optional fields stay absent (NULL, not ""). */
static void
test_round_trip_minimal(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t key[32];

	memset(&in, 0, sizeof in);
	in.username = xstrdup("system:serviceaccount:ns:sa");
	in.namespace = xstrdup("ns");
	in.name = xstrdup("sa");
	key_of("jwt-min", INST_A, key);
	review_cache_put(key, INST_A, &in, 10.0);
	assert_int_equal(review_cache_get(key, INST_A, 1.0, &out), 1);
	assert_null(out.uid);
	assert_null(out.pod_name);
	assert_null(out.extra);
	assert_int_equal(out.groups.n, 0);
	assert_int_equal(out.audiences.n, 0);
	k8s_review_outcome_clear(&out);
	k8s_review_outcome_clear(&in);
}

static void
test_ttl(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t key[32];

	outcome_fill(&in, "web");
	key_of("jwt-ttl", INST_A, key);
	review_cache_put(key, INST_A, &in, 100.0);
	assert_int_equal(review_cache_count(), 1);
	assert_int_equal(review_cache_get(key, INST_A, 99.999, &out), 1);
	k8s_review_outcome_clear(&out);
	/* At the expiry it is gone, and dropped. */
	assert_int_equal(review_cache_get(key, INST_A, 100.0, &out), 0);
	assert_int_equal(review_cache_count(), 0);
	assert_int_equal(review_cache_get(key, INST_A, 50.0, &out), 0);
	k8s_review_outcome_clear(&in);
}

static void
test_negative(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t key[32];

	memset(&in, 0, sizeof in);
	in.reason = REASON_token_invalid;
	key_of("jwt-refused", INST_A, key);
	review_cache_put(key, INST_A, &in, 2.0);
	assert_int_equal(review_cache_get(key, INST_A, 1.0, &out), 1);
	assert_int_equal(out.reason, REASON_token_invalid);
	assert_non_null(out.message);
	assert_null(out.username);
	k8s_review_outcome_clear(&out);
	assert_int_equal(review_cache_get(key, INST_A, 2.5, &out), 0);
}

/* Full: the least recently used result goes, a result just read stays. */
static void
test_lru(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t k[5][32];
	char jwt[16];
	int i;

	review_cache_reset(4);
	outcome_fill(&in, "web");
	for (i = 0; i < 5; i++) {
		snprintf(jwt, sizeof jwt, "jwt-%d", i);
		key_of(jwt, INST_A, k[i]);
	}
	for (i = 0; i < 4; i++)
		review_cache_put(k[i], INST_A, &in, 100.0);
	assert_int_equal(review_cache_count(), 4);
	/* Read 0: 1 is now the least recently used. */
	assert_int_equal(review_cache_get(k[0], INST_A, 1.0, &out), 1);
	k8s_review_outcome_clear(&out);
	review_cache_put(k[4], INST_A, &in, 100.0);
	assert_int_equal(review_cache_count(), 4);
	assert_int_equal(review_cache_get(k[1], INST_A, 1.0, &out), 0);
	for (i = 0; i < 5; i++) {
		if (i == 1)
			continue;
		assert_int_equal(review_cache_get(k[i], INST_A, 1.0, &out), 1);
		k8s_review_outcome_clear(&out);
	}
	/* A cache of size 0 keeps nothing. */
	review_cache_reset(0);
	review_cache_put(k[0], INST_A, &in, 100.0);
	assert_int_equal(review_cache_count(), 0);
	assert_int_equal(review_cache_get(k[0], INST_A, 1.0, &out), 0);
	k8s_review_outcome_clear(&in);
}

static void
test_forget(void **state)
{
	struct k8s_review_outcome in, out;
	uint8_t ka[32], kb[32];

	outcome_fill(&in, "web");
	key_of("jwt", INST_A, ka);
	key_of("jwt", INST_B, kb);
	review_cache_put(ka, INST_A, &in, 100.0);
	review_cache_put(kb, INST_B, &in, 100.0);
	review_cache_forget(INST_A);
	assert_int_equal(review_cache_count(), 1);
	assert_int_equal(review_cache_get(ka, INST_A, 1.0, &out), 0);
	assert_int_equal(review_cache_get(kb, INST_B, 1.0, &out), 1);
	k8s_review_outcome_clear(&out);
	/* Results stored after the forget are live again. */
	review_cache_put(ka, INST_A, &in, 100.0);
	assert_int_equal(review_cache_get(ka, INST_A, 1.0, &out), 1);
	k8s_review_outcome_clear(&out);
	k8s_review_outcome_clear(&in);
}

static void
test_key(void **state)
{
	uint8_t base[32], k[32], sha[32];

	review_cache_key("jwt", INST_A, NULL, base);
	review_cache_key("jwt", INST_A, NULL, k);
	assert_memory_equal(base, k, 32);
	review_cache_key("jwu", INST_A, NULL, k);
	assert_memory_not_equal(base, k, 32);
	review_cache_key("jwt", INST_B, NULL, k);
	assert_memory_not_equal(base, k, 32);
	review_cache_key("jwt", INST_A, "", k);
	assert_memory_not_equal(base, k, 32);
	review_cache_key("jwt", INST_A, "keystone", k);
	assert_memory_not_equal(base, k, 32);
	/* No ambiguity between the JWT and the instance id. */
	review_cache_key("jwt0", "123456789abcdef0123456789abcdef", NULL, k);
	assert_memory_not_equal(base, k, 32);
	/* The login's lookup keys by the digest it hashed once: the same key. */
	util_sha256("jwt", 3, sha);
	review_cache_key_digest(sha, INST_A, NULL, k);
	assert_memory_equal(base, k, 32);
	review_cache_key("jwt", INST_A, "keystone", base);
	review_cache_key_digest(sha, INST_A, "keystone", k);
	assert_memory_equal(base, k, 32);
}

/* A typical pod-bound result costs under 1 KiB of heap, all told. */
static void
test_memory_per_entry(void **state)
{
	struct k8s_review_outcome in;
	struct mallinfo2 before, after;
	uint8_t key[32];
	char jwt[32];
	int i, n = 20000;
	double per;

	review_cache_reset(n);
	outcome_fill(&in, "web-frontend-service-account");
	before = mallinfo2();
	for (i = 0; i < n; i++) {
		snprintf(jwt, sizeof jwt, "jwt-%d", i);
		key_of(jwt, INST_A, key);
		review_cache_put(key, INST_A, &in, 100.0);
	}
	after = mallinfo2();
	assert_int_equal(review_cache_count(), (size_t)n);
	per = ((double)after.uordblks + (double)after.hblkhd -
		  (double)before.uordblks - (double)before.hblkhd) /
	    n;
	print_message("review cache: %.0f bytes of heap per result\n", per);
	assert_true(per <= 1024.0);
	k8s_review_outcome_clear(&in);
	review_cache_reset(8);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_round_trip, setup),
		cmocka_unit_test_setup(test_round_trip_minimal, setup),
		cmocka_unit_test_setup(test_ttl, setup),
		cmocka_unit_test_setup(test_negative, setup),
		cmocka_unit_test_setup(test_lru, setup),
		cmocka_unit_test_setup(test_forget, setup),
		cmocka_unit_test_setup(test_key, setup),
		cmocka_unit_test_setup(test_memory_per_entry, setup),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
