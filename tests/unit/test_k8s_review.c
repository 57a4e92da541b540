/*
 * test_k8s_review.c: TokenReview answers of real clusters mapped to the
 * statuses and reasons of API.md §3.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

static const char ok_body[] =
    "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\","
    "\"metadata\":{\"creationTimestamp\":null},\"spec\":{\"token\":\"x\","
    "\"audiences\":[\"keystone\"]},\"status\":{\"authenticated\":true,"
    "\"user\":{\"username\":\"system:serviceaccount:team-a:worker\","
    "\"uid\":\"f8b4161b\",\"groups\":[\"system:serviceaccounts\","
    "\"system:serviceaccounts:team-a\",\"system:authenticated\"],"
    "\"extra\":{\"authentication.kubernetes.io/pod-name\":[\"worker-1\"],"
    "\"authentication.kubernetes.io/pod-uid\":[\"p-uid\"],"
    "\"authentication.kubernetes.io/node-name\":[\"node-a\"],"
    "\"authentication.kubernetes.io/node-uid\":[\"n-uid\"]}},"
    "\"audiences\":[\"keystone\"]}}";

static void
parse(long status, const char *body, struct k8s_review_outcome *o)
{
	k8s_review_parse(status, body, body != NULL ? strlen(body) : 0, o);
}

static void
test_authenticated(void **state)
{
	struct k8s_review_outcome	 o;

	parse(201, ok_body, &o);
	assert_int_equal(reason_status(o.reason), 0);
	assert_string_equal(o.namespace, "team-a");
	assert_string_equal(o.name, "worker");
	assert_string_equal(o.uid, "f8b4161b");
	assert_string_equal(o.pod_name, "worker-1");
	assert_string_equal(o.node_name, "node-a");
	assert_int_equal(o.groups.n, 3);
	assert_int_equal(o.audiences.n, 1);
	assert_string_equal(o.audiences.v[0], "keystone");
	k8s_review_outcome_clear(&o);
	parse(200, ok_body, &o);
	assert_int_equal(reason_status(o.reason), 0);
	k8s_review_outcome_clear(&o);
}

static void
test_not_authenticated(void **state)
{
	struct k8s_review_outcome	 o;

	/* authenticated omitted, as kube-apiserver sends a rejection */
	parse(201, "{\"kind\":\"TokenReview\",\"status\":{\"user\":{},"
	    "\"error\":\"[invalid bearer token, service account token has "
	    "expired]\"}}", &o);
	assert_int_equal(reason_status(o.reason), 401);
	assert_string_equal(reason_name(o.reason), "token_invalid");
	k8s_review_outcome_clear(&o);
	parse(201, "{\"status\":{\"authenticated\":false,\"user\":{}}}", &o);
	assert_int_equal(reason_status(o.reason), 401);
	k8s_review_outcome_clear(&o);
}

static void
test_cluster_statuses(void **state)
{
	static const struct {
		long		 http;
		int		 status;
		const char	*reason;
	} cases[] = {
		{ 401, 502, "reviewer_unauthorized" },
		{ 403, 502, "reviewer_forbidden" },
		{ 429, 503, "cluster_unavailable" },
		{ 500, 503, "cluster_unavailable" },
		{ 503, 503, "cluster_unavailable" },
		{ 404, 502, "invalid_review" },
		{ 400, 502, "invalid_review" },
	};
	struct k8s_review_outcome	 o;
	size_t				 i;

	for (i = 0; i < sizeof cases / sizeof *cases; i++) {
		parse(cases[i].http, "{\"kind\":\"Status\"}", &o);
		assert_int_equal(reason_status(o.reason), cases[i].status);
		assert_string_equal(reason_name(o.reason), cases[i].reason);
		k8s_review_outcome_clear(&o);
	}
}

static void
test_bad_answers(void **state)
{
	static const char *const bodies[] = {
		"", "not json", "[]", "{\"status\":[]}",
		/* authenticated, but not a service account */
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"alice\"}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount:ns\"}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount:ns:a:b\"}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount::name\"}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount:ns:n\",\"groups\":\"x\"}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount:ns:n\",\"extra\":[]}}}",
		"{\"status\":{\"authenticated\":true,\"user\":{\"username\":"
		"\"system:serviceaccount:ns:n\"},\"audiences\":[1]}}",
	};
	struct k8s_review_outcome	 o;
	size_t				 i;

	for (i = 0; i < sizeof bodies / sizeof *bodies; i++) {
		parse(201, bodies[i], &o);
		assert_int_equal(reason_status(o.reason), 502);
		assert_string_equal(reason_name(o.reason), "invalid_review");
		k8s_review_outcome_clear(&o);
	}
}

/*
 * The request body (written without cJSON): the official TokenReview
 * shape, and the JWT and audience survive JSON's special characters.
 */
static void
test_request_body(void **state)
{
	static const char *const auds[] = { "keystone", NULL,
		"q\"uote \\ back\tslash\n\x01 caf\xc3\xa9", "" };
	struct config		 cfg;
	struct instance		 inst;
	struct k8s_review_req	*q;
	cJSON			*doc, *spec, *a;
	size_t			 i;

	memset(&cfg, 0, sizeof cfg);
	memset(&inst, 0, sizeof inst);
	inst.host = "https://cluster.example:6443/";
	inst.reviewer_jwt = "reviewer";
	for (i = 0; i < sizeof auds / sizeof *auds; i++) {
		q = k8s_review_prepare(&cfg, &inst, "aa.b\"b.c\\c", auds[i]);
		assert_string_equal(q->url, "https://cluster.example:6443"
		    "/apis/authentication.k8s.io/v1/tokenreviews");
		assert_non_null(doc = cJSON_Parse(q->body));
		assert_string_equal(cJSON_GetObjectItem(doc, "apiVersion")
		    ->valuestring, "authentication.k8s.io/v1");
		assert_string_equal(cJSON_GetObjectItem(doc, "kind")
		    ->valuestring, "TokenReview");
		spec = cJSON_GetObjectItem(doc, "spec");
		assert_string_equal(cJSON_GetObjectItem(spec, "token")
		    ->valuestring, "aa.b\"b.c\\c");
		a = cJSON_GetObjectItem(spec, "audiences");
		if (auds[i] == NULL)
			assert_null(a);
		else {
			assert_int_equal(cJSON_GetArraySize(a), 1);
			assert_string_equal(cJSON_GetArrayItem(a, 0)
			    ->valuestring, auds[i]);
		}
		assert_int_equal(cJSON_GetArraySize(doc), 3);
		assert_int_equal(cJSON_GetArraySize(spec), auds[i] ? 2 : 1);
		cJSON_Delete(doc);
		k8s_review_req_free(q);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_authenticated),
		cmocka_unit_test(test_not_authenticated),
		cmocka_unit_test(test_cluster_statuses),
		cmocka_unit_test(test_bad_answers),
		cmocka_unit_test(test_request_body),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
