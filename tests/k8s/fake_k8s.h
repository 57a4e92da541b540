/*
 * fake_k8s.h: the index header of the test Kubernetes API server.
 *
 * fake-k8s is a small, single-threaded HTTPS server (libevent evhttp over
 * bufferevent_openssl) that answers TokenReview exactly as kube-apiserver
 * does, plus a loopback-only control API under /_test/ that the tests use
 * to create service accounts, pods, reviewers, tokens and faults.  It is a
 * test tool: it is linked with the project's xmalloc, log and util objects
 * but is not part of the shipped server.  One banner per source file:
 *
 *   fk_main.c       argv, TLS context, listener, signals, shutdown
 *   fk_http.c       routing, request bodies, JSON and Status replies
 *   fk_state.c      service accounts, pods, nodes, reviewers, counters
 *   fk_jwt.c        the signing key, minting and verifying JWTs
 *   fk_review.c     POST /apis/authentication.k8s.io/v1/tokenreviews
 *   fk_control.c    the /_test/ control API
 *   fk_objects.c    GET namespaces and service accounts (labels,
 *                   annotations, get permissions, faults, counters)
 *   fk_oidc.c       service-account issuer discovery and its JWKS,
 *                   key rotation and JWKS faults (/_test/keys)
 *   fk_fault.c      injected faults: latency, status, reset, hang, and
 *                   tampered reviews (another identity, no audiences,
 *                   no pod)
 */
#ifndef FAKE_K8S_H
#define FAKE_K8S_H

#include <stddef.h>

#include <cjson/cJSON.h>

struct event_base;
struct evhttp;
struct evhttp_request;

#define FK_UID_LEN 36		/* 8-4-4-4-12 Kubernetes UID */
#define FK_DEFAULT_ISSUER "https://kubernetes.default.svc.cluster.local"
#define FK_LEGACY_ISSUER "kubernetes/serviceaccount"
#define FK_MAX_BODY (1024 * 1024)

/* fk_main.c */
struct fk_config {
	char		 *issuer;
	char		**api_auds;	/* the API server's audiences */
	size_t		  napi_auds;
	long		  leeway;	/* seconds of exp/nbf/iat slack */
	int		  anonymous_auth; /* no bearer: system:anonymous */
};
extern struct fk_config fk_config;
struct event_base	*fk_main_base(void);

/* fk_http.c */
struct evhttp		*fk_http_new(struct event_base *);
void			 fk_http_reply_json(struct evhttp_request *, int,
			     cJSON *, const char *);
void			 fk_http_reply_status(struct evhttp_request *, int,
			     const char *, const char *, cJSON *,
			     const char *);
void			 fk_http_reply_not_found(struct evhttp_request *);
int			 fk_http_body_json(struct evhttp_request *, cJSON **,
			     char **);
void			 fk_http_log(struct evhttp_request *, int,
			     const char *);

/* fk_state.c */
struct fk_sa {
	char		*ns;
	char		*name;
	char		 uid[FK_UID_LEN + 1];
};
struct fk_pod {
	char		*ns;
	char		*name;
	char		*sa;
	char		*node;
	char		 uid[FK_UID_LEN + 1];
	char		 node_uid[FK_UID_LEN + 1];
};
struct fk_stats {
	unsigned long	 requests;
	unsigned long	 connections;
	unsigned long	 tokenreviews;
	unsigned long	 reviewed;	/* answered 201 */
	unsigned long	 authenticated;
	unsigned long	 unauthenticated;
	unsigned long	 unauthorized;	/* 401 to the caller */
	unsigned long	 forbidden;	/* 403 to the caller */
	unsigned long	 bad_request;	/* 400, 405, 415 */
	unsigned long	 faulted;
	unsigned long	 tokens_issued;
	unsigned long	 discovery;	/* GET openid-configuration */
	unsigned long	 jwks;		/* GET /openid/v1/jwks */
};
extern struct fk_stats fk_stats;
void			 fk_state_new_uid(char [FK_UID_LEN + 1]);
const struct fk_sa	*fk_state_sa_get(const char *, const char *);
const struct fk_sa	*fk_state_sa_add(const char *, const char *);
int			 fk_state_sa_del(const char *, const char *);
const struct fk_pod	*fk_state_pod_get(const char *, const char *);
const struct fk_pod	*fk_state_pod_add(const char *, const char *,
			     const char *, const char *);
int			 fk_state_pod_del(const char *, const char *);
int			 fk_state_reviewer_get(const char *, const char *);
int			 fk_state_reviewer_set(const char *, const char *,
			     int);
void			 fk_state_free(void);

/* fk_jwt.c */
struct fk_mint {
	const char	*ns;
	const char	*sa;
	const char	*sa_uid;
	const struct fk_pod *pod;	/* NULL: not pod-bound */
	cJSON		*auds;		/* array of strings */
	long		 expires_in;
	long		 nbf_offset;
	int		 legacy;
	int		 foreign_key;	/* sign with an unknown key */
	int		 es256;		/* sign with the EC P-256 key */
	const char	*issuer;	/* NULL: the configured issuer */
};
struct fk_jwt {
	cJSON		*header;
	cJSON		*claims;
};
int			 fk_jwt_init(char **);
void			 fk_jwt_free_keys(void);
const char		*fk_jwt_kid(void);
const char		*fk_jwt_rotate(int, char **);
cJSON			*fk_jwt_jwks(void);
char			*fk_jwt_mint(const struct fk_mint *, char **);
int			 fk_jwt_parse(const char *, struct fk_jwt *);
int			 fk_jwt_verify(const char *, const cJSON *);
void			 fk_jwt_clear(struct fk_jwt *);

/* fk_review.c */
enum fk_tamper {		/* what a tamper fault changes in a review */
	FK_TAMPER_NONE,
	FK_TAMPER_OTHER_NAME,	/* status.user.username: another SA name */
	FK_TAMPER_OTHER_NAMESPACE, /* ... another namespace */
	FK_TAMPER_OTHER_UID,	/* status.user.uid: another UID */
	FK_TAMPER_NO_AUDIENCES,	/* status.audiences left out */
	FK_TAMPER_NO_POD	/* no pod-* or node-* in user.extra */
};
struct fk_ident {
	char		*ns;
	char		*name;
	char		*uid;
	char		*jti;
	char		*pod_name;
	char		*pod_uid;
	char		*node_name;
	char		*node_uid;
	cJSON		*auds;		/* chosen audiences */
	int		 legacy;
};
int			 fk_review_authenticate(const char *, const cJSON *,
			     struct fk_ident *, char **);
void			 fk_review_ident_clear(struct fk_ident *);
void			 fk_review_handle(struct evhttp_request *,
			     enum fk_tamper);
void			 fk_review_cb(struct evhttp_request *);

/* fk_control.c */
int			 fk_control_route(struct evhttp_request *,
			     const char *);

/* fk_objects.c */
void			 fk_objects_cb(struct evhttp_request *, const char *);
int			 fk_objects_control(struct evhttp_request *,
			     const char *);

/* fk_oidc.c */
void			 fk_oidc_cb(struct evhttp_request *, int);
int			 fk_oidc_control(struct evhttp_request *,
			     const char *);

/* fk_fault.c */
int			 fk_fault_apply(struct evhttp_request *,
			     enum fk_tamper *);
void			 fk_fault_set(struct evhttp_request *);
void			 fk_fault_clear(struct evhttp_request *);
void			 fk_fault_release(struct evhttp_request *);
cJSON			*fk_fault_describe(void);
void			 fk_fault_shutdown(void);
void			 fk_fault_review_as_set(struct evhttp_request *);
void			 fk_fault_random_set(struct evhttp_request *);
int			 fk_fault_review_as(struct evhttp_request *);

#endif /* FAKE_K8S_H */
