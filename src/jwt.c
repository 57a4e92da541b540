/*
 * jwt.c: service-account JWTs, structure and claims only.
 *
 * Splits a compact JWS into its three base64url parts, decodes the header
 * and the claims as strict JSON objects and extracts the claims the login
 * needs: exp/nbf/iat, aud, iss, sub and the service-account identity in
 * either the projected layout ("kubernetes.io": {...}) or the legacy flat
 * "kubernetes.io/serviceaccount/..." keys.  The signature is NOT checked
 * here: the parse keeps what jwks.c needs to check it (the length of the
 * signing input, the decoded signature, alg and kid), and the TokenReview
 * stays the authority; the cheap local checks refuse junk before a review
 * is spent on it.
 *
 * Owns: the struct jwt it returns (every string copied, plus the parsed
 * claims object); the raw token is never kept.  Error causes are fixed
 * strings and never quote the token or anything decoded from it.
 * Also glob_match_any(), the fnmatch(3) matcher used for role bounds.
 *
 * Pure computation on the caller's thread; never blocks.
 */
#include <sys/types.h>

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8sauth.h"

#define JWT_LEGACY_NS   "kubernetes.io/serviceaccount/namespace"
#define JWT_LEGACY_NAME "kubernetes.io/serviceaccount/service-account.name"
#define JWT_LEGACY_UID  "kubernetes.io/serviceaccount/service-account.uid"

/* Set *cause to a copy of a fixed message (never token content). */
static int
jwt_fail(char **cause, const char *msg)
{
	if (cause != NULL)
		*cause = xstrdup(msg);
	return (-1);
}

/*
 * Check one part: base64url characters, optionally followed by up to two
 * '=' of padding, and at least one data character.
 */
static int
jwt_part_valid(const char *p, size_t len)
{
	size_t i, data;

	data = util_b64url_span(p, len); /* a table lookup per character */
	if (data == 0)
		return (0);
	for (i = data; i < len; i++) {
		if (p[i] != '=')
			return (0);
	}
	return (len - data <= 2);
}

/*
 * Split the token into exactly three valid parts.  off[i]/plen[i] give each
 * part's offset and length.
 */
static int
jwt_split(const char *token, size_t len, size_t off[3], size_t plen[3],
    char **cause)
{
	const char *dot;
	size_t i, n = 0, start = 0;

	for (i = 0; i <= len; i++) {
		/* the next '.' or the end: memchr, not a test per character */
		dot = memchr(token + i, '.', len - i);
		i = dot != NULL ? (size_t)(dot - token) : len;
		if (n == 3)
			return (
			    jwt_fail(cause, "JWT has more than three parts"));
		off[n] = start;
		plen[n] = i - start;
		n++;
		start = i + 1;
	}
	if (n != 3)
		return (jwt_fail(cause, "JWT does not have three parts"));
	for (i = 0; i < 3; i++) {
		if (plen[i] == 0)
			return (jwt_fail(cause, "JWT has an empty part"));
		if (!jwt_part_valid(token + off[i], plen[i]))
			return (jwt_fail(cause, "JWT part is not base64url"));
	}
	return (0);
}

/*
 * Does decoded JSON text hold a NUL, raw or as a \u0000 escape?  cJSON would
 * silently truncate such a string, so refuse it outright.
 */
static int
jwt_json_has_nul(const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\0')
			return (1);
		if (s[i] != '\\')
			continue;
		if (i + 5 < len && s[i + 1] == 'u' &&
		    memcmp(s + i + 2, "0000", 4) == 0)
			return (1);
		i++; /* skip the escaped character */
	}
	return (0);
}

/* Does any object in the tree repeat a member name? */
static int
jwt_json_has_dup(const cJSON *node, int depth)
{
	const cJSON *a, *b;

	if (depth > 64)
		return (1);
	for (a = node->child; a != NULL; a = a->next) {
		if (cJSON_IsObject(node) && a->string != NULL) {
			for (b = a->next; b != NULL; b = b->next) {
				if (b->string != NULL &&
				    strcmp(a->string, b->string) == 0)
					return (1);
			}
		}
		if (jwt_json_has_dup(a, depth + 1))
			return (1);
	}
	return (0);
}

/*
 * Decode one base64url part and parse it as a JSON object with nothing but
 * whitespace after it.  Returns the object or NULL with *cause.
 */
static cJSON *
jwt_decode_object(const char *p, size_t len, const char *what, char **cause)
{
	unsigned char *buf = NULL;
	size_t n = 0, i;
	const char *end = NULL;
	cJSON *obj = NULL;
	char *msg;

	if (util_b64url_decode(p, len, &buf, &n) != 0) {
		xasprintf(&msg, "JWT %s is not base64url", what);
		goto fail;
	}
	if (n == 0 || jwt_json_has_nul(buf, n)) {
		xasprintf(&msg, "JWT %s is not valid JSON", what);
		goto fail;
	}
	obj = cJSON_ParseWithLengthOpts((const char *)buf, n, &end, 0);
	if (obj == NULL || end == NULL) {
		xasprintf(&msg, "JWT %s is not valid JSON", what);
		goto fail;
	}
	for (i = (size_t)(end - (const char *)buf); i < n; i++) {
		if (strchr(" \t\r\n", buf[i]) == NULL || buf[i] == '\0') {
			xasprintf(&msg, "JWT %s has trailing data", what);
			goto fail;
		}
	}
	if (!cJSON_IsObject(obj)) {
		xasprintf(&msg, "JWT %s is not a JSON object", what);
		goto fail;
	}
	if (jwt_json_has_dup(obj, 0)) {
		xasprintf(&msg, "JWT %s repeats a member or nests too deep",
		    what);
		goto fail;
	}
	explicit_bzero(buf, n);
	free(buf);
	return (obj);

fail:
	if (buf != NULL) {
		explicit_bzero(buf, n);
		free(buf);
	}
	cJSON_Delete(obj);
	if (cause != NULL)
		*cause = msg;
	else
		free(msg);
	return (NULL);
}

/* Check the header: a string alg that is not "none", an optional kid. */
static int
jwt_check_header(struct jwt *jwt, const cJSON *hdr, char **cause)
{
	const cJSON *alg, *kid;

	alg = cJSON_GetObjectItemCaseSensitive(hdr, "alg");
	if (!cJSON_IsString(alg) || alg->valuestring[0] == '\0')
		return (jwt_fail(cause, "JWT header has no alg"));
	if (strcasecmp(alg->valuestring, "none") == 0)
		return (jwt_fail(cause, "JWT alg none is refused"));
	kid = cJSON_GetObjectItemCaseSensitive(hdr, "kid");
	if (kid != NULL && !cJSON_IsString(kid))
		return (jwt_fail(cause, "JWT header kid is not a string"));
	jwt->alg = xstrdup(alg->valuestring);
	if (kid != NULL)
		jwt->kid = xstrdup(kid->valuestring);
	return (0);
}

/*
 * Optional string member: absent leaves *out NULL; any other type than a
 * string (null included) is an error.
 */
static int
jwt_opt_string(const cJSON *obj, const char *name, char **out)
{
	const cJSON *v;

	*out = NULL;
	v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (v == NULL)
		return (0);
	if (!cJSON_IsString(v))
		return (-1);
	*out = xstrdup(v->valuestring);
	return (0);
}

/* Optional numeric date claim; wrong type or non-finite is an error. */
static int
jwt_opt_number(const cJSON *claims, const char *name, int *has, double *out)
{
	const cJSON *v;

	*has = 0;
	v = cJSON_GetObjectItemCaseSensitive(claims, name);
	if (v == NULL)
		return (0);
	if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
		return (-1);
	*has = 1;
	*out = v->valuedouble;
	return (0);
}

/* aud: a string or an array of strings, copied into jwt->aud. */
static int
jwt_audience(struct jwt *jwt, const cJSON *claims)
{
	const cJSON *aud, *e;
	size_t n;

	aud = cJSON_GetObjectItemCaseSensitive(claims, "aud");
	if (aud == NULL)
		return (0);
	if (cJSON_IsString(aud)) {
		jwt->aud.v = xcalloc(1, sizeof *jwt->aud.v);
		jwt->aud.v[0] = xstrdup(aud->valuestring);
		jwt->aud.n = 1;
		return (0);
	}
	if (!cJSON_IsArray(aud))
		return (-1);
	n = (size_t)cJSON_GetArraySize(aud);
	jwt->aud.v = xcalloc(n + 1, sizeof *jwt->aud.v);
	cJSON_ArrayForEach(e, aud)
	{
		if (!cJSON_IsString(e))
			return (-1);
		jwt->aud.v[jwt->aud.n++] = xstrdup(e->valuestring);
	}
	return (0);
}

/* {"name": ..., "uid": ...} under the projected claim; both optional. */
static int
jwt_name_uid(const cJSON *k8s, const char *key, char **name, char **uid)
{
	const cJSON *o;

	o = cJSON_GetObjectItemCaseSensitive(k8s, key);
	if (o == NULL)
		return (0);
	if (!cJSON_IsObject(o))
		return (-1);
	if (jwt_opt_string(o, "name", name) != 0 ||
	    jwt_opt_string(o, "uid", uid) != 0)
		return (-1);
	return (0);
}

/* The projected layout: "kubernetes.io": {namespace, serviceaccount, ...}. */
static int
jwt_projected(struct jwt *jwt, const cJSON *k8s, char **cause)
{
	if (!cJSON_IsObject(k8s))
		return (
		    jwt_fail(cause, "JWT kubernetes.io claim not an object"));
	if (jwt_opt_string(k8s, "namespace", &jwt->namespace) != 0 ||
	    jwt_name_uid(k8s, "serviceaccount", &jwt->sa_name, &jwt->sa_uid) !=
		0 ||
	    jwt_name_uid(k8s, "pod", &jwt->pod_name, &jwt->pod_uid) != 0 ||
	    jwt_name_uid(k8s, "node", &jwt->node_name, &jwt->node_uid) != 0)
		return (
		    jwt_fail(cause, "JWT kubernetes.io claim has a bad type"));
	return (0);
}

/* The legacy layout: flat kubernetes.io/serviceaccount/... keys. */
static int
jwt_legacy(struct jwt *jwt, const cJSON *claims, char **cause)
{
	jwt->legacy = 1;
	if (jwt_opt_string(claims, JWT_LEGACY_NS, &jwt->namespace) != 0 ||
	    jwt_opt_string(claims, JWT_LEGACY_NAME, &jwt->sa_name) != 0 ||
	    jwt_opt_string(claims, JWT_LEGACY_UID, &jwt->sa_uid) != 0)
		return (jwt_fail(cause,
		    "JWT service account claim has a bad type"));
	return (0);
}

/* Namespace and service account from whichever layout the token has. */
static int
jwt_identity(struct jwt *jwt, const cJSON *claims, char **cause)
{
	const cJSON *k8s;
	int has_legacy;

	k8s = cJSON_GetObjectItemCaseSensitive(claims, "kubernetes.io");
	has_legacy =
	    cJSON_GetObjectItemCaseSensitive(claims, JWT_LEGACY_NS) != NULL ||
	    cJSON_GetObjectItemCaseSensitive(claims, JWT_LEGACY_NAME) != NULL;
	if (k8s != NULL && has_legacy)
		return (
		    jwt_fail(cause, "JWT mixes projected and legacy claims"));
	if (k8s != NULL) {
		if (jwt_projected(jwt, k8s, cause) != 0)
			return (-1);
	} else if (jwt_legacy(jwt, claims, cause) != 0)
		return (-1);
	if (jwt->namespace == NULL || jwt->namespace[0] == '\0')
		return (
		    jwt_fail(cause, "JWT has no service account namespace"));
	if (jwt->sa_name == NULL || jwt->sa_name[0] == '\0')
		return (jwt_fail(cause, "JWT has no service account name"));
	return (0);
}

/* Extract the registered claims and the identity from the claims object. */
static int
jwt_check_claims(struct jwt *jwt, const cJSON *claims, char **cause)
{
	if (jwt_opt_number(claims, "exp", &jwt->has_exp, &jwt->exp) != 0 ||
	    jwt_opt_number(claims, "nbf", &jwt->has_nbf, &jwt->nbf) != 0 ||
	    jwt_opt_number(claims, "iat", &jwt->has_iat, &jwt->iat) != 0)
		return (jwt_fail(cause, "JWT exp, nbf or iat is not a number"));
	if (jwt_audience(jwt, claims) != 0)
		return (jwt_fail(cause,
		    "JWT aud is not a string or a list of strings"));
	if (jwt_opt_string(claims, "iss", &jwt->iss) != 0 ||
	    jwt_opt_string(claims, "sub", &jwt->sub) != 0)
		return (jwt_fail(cause, "JWT iss or sub is not a string"));
	return (jwt_identity(jwt, claims, cause));
}

/*
 * Parse a compact JWT of len bytes (at most max_size).  On success *out is
 * a new struct jwt (free with jwt_free); on failure -1 and *cause.
 */
int
jwt_parse(const char *token, size_t len, size_t max_size, struct jwt **out,
    char **cause)
{
	struct jwt *jwt = NULL;
	cJSON *hdr = NULL;
	size_t off[3], plen[3];

	*out = NULL;
	if (token == NULL || len == 0)
		return (jwt_fail(cause, "JWT is empty"));
	if (len > max_size)
		return (jwt_fail(cause, "JWT is too large"));
	if (jwt_split(token, len, off, plen, cause) != 0)
		return (-1);
	if ((hdr = jwt_decode_object(token + off[0], plen[0], "header",
		 cause)) == NULL)
		goto fail;
	jwt = xcalloc(1, sizeof *jwt);
	if (jwt_check_header(jwt, hdr, cause) != 0)
		goto fail;
	if ((jwt->claims = jwt_decode_object(token + off[1], plen[1], "claims",
		 cause)) == NULL)
		goto fail;
	if (jwt_check_claims(jwt, jwt->claims, cause) != 0)
		goto fail;
	/* A signature that does not decode stays empty: it cannot verify. */
	if (util_b64url_decode(token + off[2], plen[2], &jwt->sig,
		&jwt->siglen) != 0) {
		jwt->sig = NULL;
		jwt->siglen = 0;
	}
	jwt->signing_len = off[2] - 1;
	cJSON_Delete(hdr);
	*out = jwt;
	return (0);

fail:
	cJSON_Delete(hdr);
	jwt_free(jwt);
	return (-1);
}

/* Free a parsed JWT and everything it owns. */
void
jwt_free(struct jwt *jwt)
{
	size_t i;

	if (jwt == NULL)
		return;
	for (i = 0; i < jwt->aud.n; i++)
		free(jwt->aud.v[i]);
	free(jwt->aud.v);
	free(jwt->alg);
	free(jwt->kid);
	free(jwt->sig);
	free(jwt->iss);
	free(jwt->sub);
	free(jwt->namespace);
	free(jwt->sa_name);
	free(jwt->sa_uid);
	free(jwt->pod_name);
	free(jwt->pod_uid);
	free(jwt->node_name);
	free(jwt->node_uid);
	cJSON_Delete(jwt->claims);
	free(jwt);
}

/* Is aud exactly one of the token's audiences? */
int
jwt_has_audience(const struct jwt *jwt, const char *aud)
{
	size_t i;

	if (jwt == NULL || aud == NULL)
		return (0);
	for (i = 0; i < jwt->aud.n; i++) {
		if (strcmp(jwt->aud.v[i], aud) == 0)
			return (1);
	}
	return (0);
}

/*
 * Does s match any of the fnmatch(3) patterns in list (flags 0: `*`, `?`,
 * `[...]`)?  An empty or NULL list matches nothing.
 */
int
glob_match_any(const struct strlist *list, const char *s)
{
	size_t i;

	if (list == NULL || s == NULL)
		return (0);
	for (i = 0; i < list->n; i++) {
		if (list->v[i] != NULL && fnmatch(list->v[i], s, 0) == 0)
			return (1);
	}
	return (0);
}
