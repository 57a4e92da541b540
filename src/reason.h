/*
 * reason.h: every reason code the server answers with, in one table.
 *
 * REASON(name, status, metric): the machine-readable `reason` of an error
 * body, the HTTP status it always goes with, and how a login that ends
 * with it is counted in k8sauth_logins_total (REASON_M_LOGIN: a label of
 * its own; REASON_M_BODY: folded into "bad_request"; REASON_M_NONE: not a
 * login outcome, "other" should it ever end one).  The error body's title
 * follows from the status.  The table drives enum reason, the replies
 * (http_reply_reason takes a reason, never a status), the metrics labels
 * and tests/unit/test_reason.c, which checks that the reasons table of
 * docs/api.md lists exactly these names.  To add a reason: one line here,
 * one row in docs/api.md.
 */
#ifndef REASON_H
#define REASON_H

#define REASONS(X)                                                          \
	/* request plumbing (http.c, api_common.c) */                       \
	X(invalid_request, 400, REASON_M_NONE)                              \
	X(invalid_query, 400, REASON_M_NONE)                                \
	X(malformed_json, 400, REASON_M_BODY)                               \
	X(invalid_wrapper, 400, REASON_M_BODY)                              \
	X(missing_field, 400, REASON_M_BODY)                                \
	X(unknown_field, 400, REASON_M_BODY)                                \
	X(invalid_value, 400, REASON_M_BODY)                                \
	X(immutable_field, 400, REASON_M_NONE)                              \
	X(read_only_field, 400, REASON_M_NONE)                              \
	X(body_too_large, 413, REASON_M_BODY)                               \
	X(unsupported_media_type, 415, REASON_M_BODY)                       \
	X(not_found, 404, REASON_M_NONE)                                    \
	X(method_not_allowed, 405, REASON_M_NONE)                           \
	X(request_timeout, 503, REASON_M_NONE)                              \
	X(not_ready, 503, REASON_M_NONE)                                    \
	X(database_unavailable, 503, REASON_M_NONE)                         \
	X(internal_error, 500, REASON_M_LOGIN)                              \
	X(client_gone, 400, REASON_M_LOGIN)                                 \
	/* admin callers (auth.c, keystone_token.c) */                      \
	X(missing_token, 401, REASON_M_NONE)                                \
	X(invalid_token, 401, REASON_M_NONE)                                \
	X(forbidden, 403, REASON_M_NONE)                                    \
	/* admin objects (api_instance.c, api_role.c, api_restriction.c) */ \
	X(instance_not_found, 404, REASON_M_LOGIN)                          \
	X(role_not_found, 404, REASON_M_LOGIN)                              \
	X(restriction_not_found, 404, REASON_M_NONE)                        \
	X(conflict, 409, REASON_M_NONE)                                     \
	X(restriction_in_use, 409, REASON_M_NONE)                           \
	X(invalid_restriction, 400, REASON_M_NONE)                          \
	X(role_not_assigned, 400, REASON_M_NONE)                            \
	X(role_not_listed, 400, REASON_M_NONE)                              \
	X(role_not_delegable, 403, REASON_M_NONE)                           \
	X(instance_protected, 403, REASON_M_NONE)                           \
	X(host_not_allowed, 403, REASON_M_NONE)                             \
	/* login (api_login.c, k8s_review.c) */                             \
	X(too_many_requests, 429, REASON_M_LOGIN)                           \
	X(instance_disabled, 403, REASON_M_LOGIN)                           \
	X(role_disabled, 403, REASON_M_LOGIN)                               \
	X(malformed_jwt, 400, REASON_M_LOGIN)                               \
	X(legacy_token_refused, 401, REASON_M_LOGIN)                        \
	X(token_expired, 401, REASON_M_LOGIN)                               \
	X(token_not_yet_valid, 401, REASON_M_LOGIN)                         \
	X(audience_mismatch, 401, REASON_M_LOGIN)                           \
	X(namespace_not_bound, 401, REASON_M_LOGIN)                         \
	X(service_account_not_bound, 401, REASON_M_LOGIN)                   \
	X(pod_not_bound, 401, REASON_M_LOGIN)                               \
	X(token_invalid, 401, REASON_M_LOGIN)                               \
	X(signature_invalid, 401, REASON_M_LOGIN)                           \
	X(issuer_mismatch, 401, REASON_M_LOGIN)                             \
	X(reviewer_unauthorized, 502, REASON_M_LOGIN)                       \
	X(reviewer_forbidden, 502, REASON_M_LOGIN)                          \
	X(cluster_unavailable, 503, REASON_M_LOGIN)                         \
	X(cluster_timeout, 504, REASON_M_LOGIN)                             \
	X(cluster_tls_error, 502, REASON_M_LOGIN)                           \
	X(destination_forbidden, 502, REASON_M_LOGIN)                       \
	X(invalid_review, 502, REASON_M_LOGIN)                              \
	X(policy_denied, 401, REASON_M_LOGIN)                               \
	X(policy_error, 500, REASON_M_LOGIN)                                \
	X(restriction_invalid, 500, REASON_M_LOGIN)                         \
	/* Keystone (keystone_check.c, keystone_token.c) */                 \
	X(user_disabled, 401, REASON_M_LOGIN)                               \
	X(keystone_unavailable, 503, REASON_M_LOGIN)                        \
	X(keystone_forbidden, 502, REASON_M_LOGIN)                          \
	/* token validation (api_token.c) */                                \
	X(missing_subject_token, 400, REASON_M_BODY)                        \
	X(token_not_found, 404, REASON_M_NONE)

enum reason_metric {
	REASON_M_NONE,
	REASON_M_LOGIN,
	REASON_M_BODY,
};

#define REASON_ENUM(name, status, metric) REASON_##name,
enum reason {
	REASON_NONE = 0, /* no error */
	REASONS(REASON_ENUM) REASON_COUNT
};
#undef REASON_ENUM

const char *reason_name(enum reason);
int reason_status(enum reason);
enum reason_metric reason_metric(enum reason);
enum reason reason_lookup(const char *);

#endif
