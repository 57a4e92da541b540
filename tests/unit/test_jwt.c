/*
 * test_jwt.c: JWT structure checks, claim extraction (projected and legacy
 * layouts), audiences and glob matching.  Tokens are built here from JSON
 * with util_b64url_encode; the signature part is arbitrary base64url since
 * jwt.c never trusts it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "k8sauth.h"

#define HDR_RS256 "{\"alg\":\"RS256\",\"kid\":\"abc\"}"
#define MAXJWT 16384

static const char projected[] =
    "{\"aud\":[\"https://kubernetes.default.svc\",\"vault\"],"
    "\"exp\":1731613413,\"iat\":1700077413,\"nbf\":1700077413,"
    "\"iss\":\"https://kubernetes.default.svc.cluster.local\","
    "\"jti\":\"ea28ed49\","
    "\"kubernetes.io\":{\"namespace\":\"kube-system\","
    "\"node\":{\"name\":\"node-1\",\"uid\":\"n-uid\"},"
    "\"pod\":{\"name\":\"coredns-69cb\",\"uid\":\"p-uid\"},"
    "\"serviceaccount\":{\"name\":\"coredns\",\"uid\":\"sa-uid\"},"
    "\"warnafter\":1700081020},"
    "\"sub\":\"system:serviceaccount:kube-system:coredns\"}";

static const char legacy[] =
    "{\"iss\":\"kubernetes/serviceaccount\","
    "\"kubernetes.io/serviceaccount/namespace\":\"team-a\","
    "\"kubernetes.io/serviceaccount/secret.name\":\"worker-token-8s7fk\","
    "\"kubernetes.io/serviceaccount/service-account.name\":\"worker\","
    "\"kubernetes.io/serviceaccount/service-account.uid\":\"671cc280\","
    "\"sub\":\"system:serviceaccount:team-a:worker\"}";

/* Build "b64(hdr).b64(claims).sig" from raw parts. */
static char *
make_token(const char *hdr, const char *claims, const char *sig)
{
	char	*h, *c, *out;

	h = util_b64url_encode(hdr, strlen(hdr));
	c = util_b64url_encode(claims, strlen(claims));
	xasprintf(&out, "%s.%s.%s", h, c, sig);
	free(h);
	free(c);
	return (out);
}

/* Parse a token expecting failure; returns the cause (caller frees). */
static char *
parse_fails(const char *token, size_t max)
{
	struct jwt	*jwt = (struct jwt *)1;
	char		*cause = NULL;

	assert_int_equal(jwt_parse(token, strlen(token), max, &jwt, &cause),
	    -1);
	assert_null(jwt);
	assert_non_null(cause);
	return (cause);
}

/* Build with the given header/claims and expect a failure whose cause
 * contains want and no part of the token. */
static void
expect_bad(const char *hdr, const char *claims, const char *want)
{
	char	*tok = make_token(hdr, claims, "c2ln");
	char	*cause = parse_fails(tok, MAXJWT);
	char	*dot;

	if (strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	dot = strchr(tok, '.');
	*dot = '\0';
	assert_null(strstr(cause, tok));
	free(cause);
	free(tok);
}

static void
test_projected(void **state)
{
	char		*tok = make_token(HDR_RS256, projected, "c2lnbmF0");
	struct jwt	*jwt = NULL;
	char		*cause = NULL;

	assert_int_equal(jwt_parse(tok, strlen(tok), MAXJWT, &jwt, &cause), 0);
	assert_null(cause);
	assert_string_equal(jwt->alg, "RS256");
	assert_int_equal(jwt->legacy, 0);
	assert_true(jwt->has_exp && jwt->has_iat && jwt->has_nbf);
	assert_true(jwt->exp == 1731613413.0);
	assert_true(jwt->iat == 1700077413.0);
	assert_true(jwt->nbf == 1700077413.0);
	assert_int_equal(jwt->aud.n, 2);
	assert_string_equal(jwt->aud.v[1], "vault");
	assert_string_equal(jwt->iss,
	    "https://kubernetes.default.svc.cluster.local");
	assert_string_equal(jwt->sub,
	    "system:serviceaccount:kube-system:coredns");
	assert_string_equal(jwt->namespace, "kube-system");
	assert_string_equal(jwt->sa_name, "coredns");
	assert_string_equal(jwt->sa_uid, "sa-uid");
	assert_string_equal(jwt->pod_name, "coredns-69cb");
	assert_string_equal(jwt->pod_uid, "p-uid");
	assert_string_equal(jwt->node_name, "node-1");
	assert_string_equal(jwt->node_uid, "n-uid");
	assert_string_equal(
	    cJSON_GetObjectItem(jwt->claims, "jti")->valuestring, "ea28ed49");
	assert_true(jwt_has_audience(jwt, "vault"));
	assert_true(jwt_has_audience(jwt, "https://kubernetes.default.svc"));
	assert_false(jwt_has_audience(jwt, "vaul"));
	assert_false(jwt_has_audience(jwt, "VAULT"));
	jwt_free(jwt);
	free(tok);
}

static void
test_legacy(void **state)
{
	char		*tok = make_token(HDR_RS256, legacy, "c2ln");
	struct jwt	*jwt = NULL;
	char		*cause = NULL;

	assert_int_equal(jwt_parse(tok, strlen(tok), MAXJWT, &jwt, &cause), 0);
	assert_int_equal(jwt->legacy, 1);
	assert_false(jwt->has_exp || jwt->has_nbf || jwt->has_iat);
	assert_int_equal(jwt->aud.n, 0);
	assert_false(jwt_has_audience(jwt, "vault"));
	assert_string_equal(jwt->namespace, "team-a");
	assert_string_equal(jwt->sa_name, "worker");
	assert_string_equal(jwt->sa_uid, "671cc280");
	assert_null(jwt->pod_name);
	assert_null(jwt->node_name);
	assert_string_equal(jwt->iss, "kubernetes/serviceaccount");
	jwt_free(jwt);
	free(tok);
}

static void
test_minimal_and_aud_string(void **state)
{
	const char	*claims = "{\"aud\":\"vault\",\"exp\":1.5,"
	    "\"kubernetes.io\":{\"namespace\":\"ns\","
	    "\"serviceaccount\":{\"name\":\"sa\"}}}";
	char		*tok;
	struct jwt	*jwt = NULL;
	char		*cause = NULL;

	tok = make_token("{\"alg\":\"ES256\"}", claims, "AA");
	assert_int_equal(jwt_parse(tok, strlen(tok), MAXJWT, &jwt, &cause), 0);
	assert_int_equal(jwt->aud.n, 1);
	assert_true(jwt_has_audience(jwt, "vault"));
	assert_true(jwt->exp == 1.5);
	assert_null(jwt->sa_uid);
	assert_null(jwt->pod_name);
	assert_null(jwt->iss);
	jwt_free(jwt);
	free(tok);
}

static void
test_padding_tolerated(void **state)
{
	/* {"alg": "RS256"} is 16 bytes: its base64 takes "==" padding. */
	const char	*claims = "{\"kubernetes.io\":{\"namespace\":\"n\","
	    "\"serviceaccount\":{\"name\":\"s\"}}}";
	char		*h = util_b64url_encode("{\"alg\": \"RS256\"}", 16);
	char		*c = util_b64url_encode(claims, strlen(claims));
	char		*tok;
	struct jwt	*jwt = NULL;
	char		*cause = NULL;

	xasprintf(&tok, "%s==.%s.AA==", h, c);
	assert_int_equal(jwt_parse(tok, strlen(tok), MAXJWT, &jwt, &cause), 0);
	jwt_free(jwt);
	free(tok);
	/* Three '=' or '=' in the middle is not padding. */
	xasprintf(&tok, "%s===.%s.AA", h, c);

	free(parse_fails(tok, MAXJWT));
	free(tok);
	xasprintf(&tok, "%s.%s.A=A", h, c);
	free(parse_fails(tok, MAXJWT));
	free(tok);
	/* Padding alone is an empty part. */
	xasprintf(&tok, "%s.%s.==", h, c);
	free(parse_fails(tok, MAXJWT));
	free(tok);
	free(h);
	free(c);
}

static void
test_structure(void **state)
{
	char	*tok = make_token(HDR_RS256, projected, "c2ln");
	char	*t2;
	char	*cause;

	/* Two parts. */
	t2 = xstrdup(tok);
	*strrchr(t2, '.') = '\0';
	cause = parse_fails(t2, MAXJWT);
	assert_non_null(strstr(cause, "three parts"));
	free(cause);
	free(t2);
	/* Four parts. */
	xasprintf(&t2, "%s.c2ln", tok);
	cause = parse_fails(t2, MAXJWT);
	assert_non_null(strstr(cause, "more than three"));
	free(cause);
	free(t2);
	/* Empty signature, empty header, lone dots. */
	t2 = xstrdup(tok);
	*(strrchr(t2, '.') + 1) = '\0';
	free(parse_fails(t2, MAXJWT));
	free(t2);
	xasprintf(&t2, "%s", strchr(tok, '.'));
	free(parse_fails(t2, MAXJWT));
	free(t2);
	free(parse_fails("..", MAXJWT));
	/* Bad base64url: '+' '/' ' ' and non-ASCII. */
	xasprintf(&t2, "%s+", tok);
	cause = parse_fails(t2, MAXJWT);
	assert_non_null(strstr(cause, "base64url"));
	free(cause);
	free(t2);
	xasprintf(&t2, "a/b%s", tok);
	free(parse_fails(t2, MAXJWT));
	free(t2);
	xasprintf(&t2, " %s", tok);
	free(parse_fails(t2, MAXJWT));
	free(t2);
	/* Header part of length 4k+1 cannot decode. */
	xasprintf(&t2, "AAAAA%s", strchr(tok, '.'));
	cause = parse_fails(t2, MAXJWT);
	assert_non_null(strstr(cause, "header"));
	free(cause);
	free(t2);
	free(tok);
}

static void
test_size_limits(void **state)
{
	char		*tok = make_token(HDR_RS256, projected, "c2ln");
	size_t		 len = strlen(tok);
	struct jwt	*jwt = NULL;
	char		*cause = NULL;

	assert_int_equal(jwt_parse(tok, len, len - 1, &jwt, &cause), -1);
	assert_non_null(strstr(cause, "too large"));
	assert_null(jwt);
	free(cause);
	cause = NULL;
	assert_int_equal(jwt_parse(tok, 0, MAXJWT, &jwt, &cause), -1);
	assert_non_null(strstr(cause, "empty"));
	free(cause);
	cause = NULL;
	assert_int_equal(jwt_parse(tok, len, len, &jwt, &cause), 0);
	jwt_free(jwt);
	/* The length bounds the parse: a prefix is not the token. */
	assert_int_equal(jwt_parse(tok, len - 2, MAXJWT, &jwt, NULL), 0);
	jwt_free(jwt);
	assert_int_equal(jwt_parse(tok, len - 5, MAXJWT, &jwt, NULL), -1);
	assert_int_equal(jwt_parse(tok, strchr(tok, '.') - tok + 3, MAXJWT,
	    &jwt, &cause), -1);
	free(cause);
	/* An embedded NUL is not base64url. */
	tok[3] = '\0';
	assert_int_equal(jwt_parse(tok, len, MAXJWT, &jwt, &cause), -1);
	free(cause);
	free(tok);
}

static void
test_header(void **state)
{
	expect_bad("not json", projected, "header is not valid JSON");
	expect_bad("[\"alg\",\"RS256\"]", projected, "header is not a JSON "
	    "object");
	expect_bad("{\"alg\":\"none\"}", projected, "alg none");
	expect_bad("{\"alg\":\"NONE\"}", projected, "alg none");
	expect_bad("{\"alg\":\"nOnE\"}", projected, "alg none");
	expect_bad("{\"alg\":\"\"}", projected, "no alg");
	expect_bad("{\"alg\":1}", projected, "no alg");
	expect_bad("{\"typ\":\"JWT\"}", projected, "no alg");
	expect_bad("{\"alg\":\"RS256\"} x", projected, "trailing");
	expect_bad("{\"alg\":\"RS256\",\"alg\":\"none\"}", projected,
	    "repeats");
}

static void
test_claims(void **state)
{
	const char	*ok_id = "\"kubernetes.io\":{\"namespace\":\"n\","
	    "\"serviceaccount\":{\"name\":\"s\"}}";
	char		*c;

	expect_bad(HDR_RS256, "[1,2,3]", "claims is not a JSON object");
	expect_bad(HDR_RS256, "\"str\"", "claims is not a JSON object");
	expect_bad(HDR_RS256, "{\"a\":1", "claims is not valid JSON");
	expect_bad(HDR_RS256, "{\"a\":1}{}", "claims has trailing data");
	xasprintf(&c, "{\"exp\":\"1731613413\",%s}", ok_id);
	expect_bad(HDR_RS256, c, "not a number");
	free(c);
	xasprintf(&c, "{\"nbf\":null,%s}", ok_id);
	expect_bad(HDR_RS256, c, "not a number");
	free(c);
	xasprintf(&c, "{\"iat\":true,%s}", ok_id);
	expect_bad(HDR_RS256, c, "not a number");
	free(c);
	xasprintf(&c, "{\"aud\":42,%s}", ok_id);
	expect_bad(HDR_RS256, c, "aud");
	free(c);
	xasprintf(&c, "{\"aud\":[\"a\",1],%s}", ok_id);
	expect_bad(HDR_RS256, c, "aud");
	free(c);
	xasprintf(&c, "{\"aud\":{},%s}", ok_id);
	expect_bad(HDR_RS256, c, "aud");
	free(c);
	xasprintf(&c, "{\"sub\":7,%s}", ok_id);
	expect_bad(HDR_RS256, c, "iss or sub");
	free(c);
	xasprintf(&c, "{\"exp\":1,\"exp\":2,%s}", ok_id);
	expect_bad(HDR_RS256, c, "repeats");
	free(c);
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"a\\u0000b\","
	    "\"serviceaccount\":{\"name\":\"s\"}}}", "not valid JSON");
}

static void
test_identity(void **state)
{
	expect_bad(HDR_RS256, "{\"exp\":1}", "namespace");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"serviceaccount\":"
	    "{\"name\":\"s\"}}}", "namespace");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"n\"}}",
	    "service account name");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"\","
	    "\"serviceaccount\":{\"name\":\"s\"}}}", "namespace");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":\"ns\"}", "not an object");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":5,"
	    "\"serviceaccount\":{\"name\":\"s\"}}}", "bad type");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"n\","
	    "\"serviceaccount\":\"s\"}}", "bad type");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"n\","
	    "\"serviceaccount\":{\"name\":\"s\"},\"pod\":{\"name\":1}}}",
	    "bad type");
	expect_bad(HDR_RS256,
	    "{\"kubernetes.io/serviceaccount/namespace\":\"n\"}",
	    "service account name");
	expect_bad(HDR_RS256,
	    "{\"kubernetes.io/serviceaccount/namespace\":[\"n\"],"
	    "\"kubernetes.io/serviceaccount/service-account.name\":\"s\"}",
	    "bad type");
	expect_bad(HDR_RS256, "{\"kubernetes.io\":{\"namespace\":\"n\","
	    "\"serviceaccount\":{\"name\":\"s\"}},"
	    "\"kubernetes.io/serviceaccount/namespace\":\"other\"}", "mixes");
}

static void
test_glob(void **state)
{
	char		*pats[] = { "web-*", "db-?", "cache-[0-9]", "ex" };
	struct strlist	 l = { pats, 4 };
	struct strlist	 empty = { NULL, 0 };

	assert_true(glob_match_any(&l, "web-frontend"));
	assert_true(glob_match_any(&l, "web-"));
	assert_true(glob_match_any(&l, "db-1"));
	assert_false(glob_match_any(&l, "db-12"));
	assert_true(glob_match_any(&l, "cache-7"));
	assert_false(glob_match_any(&l, "cache-x"));
	assert_true(glob_match_any(&l, "ex"));
	assert_false(glob_match_any(&l, "exa"));
	assert_false(glob_match_any(&l, "Web-frontend"));
	assert_false(glob_match_any(&l, "api"));
	assert_false(glob_match_any(&empty, "anything"));
	assert_false(glob_match_any(NULL, "anything"));
	/* flags 0: '*' crosses '/' and a leading '.' */
	pats[0] = "*";
	assert_true(glob_match_any(&l, "a/b"));
	assert_true(glob_match_any(&l, ".hidden"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_projected),
		cmocka_unit_test(test_legacy),
		cmocka_unit_test(test_minimal_and_aud_string),
		cmocka_unit_test(test_padding_tolerated),
		cmocka_unit_test(test_structure),
		cmocka_unit_test(test_size_limits),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_claims),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_glob),
	};

	return (cmocka_run_group_tests(tests, NULL, NULL));
}
