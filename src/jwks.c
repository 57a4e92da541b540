/*
 * jwks.c: JSON Web Key Sets and JWS signature verification (RS256, ES256).
 *
 * jwks_parse() turns a JWKS document ({"keys": [...]}) into an immutable,
 * reference-counted struct jwks_set of OpenSSL 3 EVP_PKEYs built with
 * EVP_PKEY_fromdata: RSA from n/e (at least JWKS_RSA_MIN_BITS), EC P-256
 * from x/y (the point is checked to be on the curve).  Any other key type
 * or curve, a key marked for another use than "sig" or for another alg than
 * RS256/ES256, is unusable.  In strict mode (a jwks written through the
 * admin API) any unusable key refuses the whole document, so an operator
 * learns at once that a key would never be used; in lenient mode (a set
 * fetched from a cluster) unusable keys are skipped and logged.
 *
 * jwks_verify() checks a JWS: the header's alg picks the algorithm and it
 * must match the key's type (RS256 only with an RSA key, ES256 only with a
 * P-256 key); HS256, "none" or any other alg is refused, so a public key is
 * never used as an HMAC secret (alg confusion).  ES256 signatures are the
 * JOSE form r||s (64 bytes), converted to DER for EVP_DigestVerify.  A kid
 * in the header must name a key of the set; without a kid every key of the
 * right type is tried.
 *
 * Each thread remembers the last signatures that verified (jwks_memo:
 * set serial, key index, SHA-256 of the signing input and of the
 * signature), so a pod's repeated logins with one projected token pay
 * the RSA or ECDSA operation once per worker; see jwks_verify_memo.
 *
 * Owns: the sets it returns (jwks_set_unref frees the last reference; the
 * count is atomic, so a set may be shared between worker threads, which
 * only read it).  Error causes are fixed strings or name a key's index and
 * kid, never key material.  Pure computation on the caller's thread.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include "k8sauth.h"

#define JWKS_MAX_KEYS 64
#define JWKS_EC_COORD 32   /* P-256 coordinate bytes */
#define JWKS_RSA_MAX  2048 /* bytes of a modulus: 16384 bits */
#define JWKS_MEMO     64   /* verified signatures remembered, per thread */

struct jwks_key {
	char *kid; /* NULL when the JWK has none */
	enum jwks_kty kty;
	EVP_PKEY *pkey;
};

struct jwks_set {
	atomic_int refs;
	uint64_t serial; /* unique per set, never reused: the memo's key */
	size_t n;
	struct jwks_key v[JWKS_MAX_KEYS];
};

/*
 * A signature that verified: the set (by serial) and key that verified
 * it, and SHA-256 of the signing input and of the signature.
 */
struct jwks_memo {
	uint64_t serial; /* 0: empty */
	size_t key;
	unsigned char input_md[32];
	unsigned char sig_md[32];
};

/* Serials of the sets; 0 marks an empty memo slot. */
static atomic_uint_fast64_t jwks_serials = 1;

/*
 * Per thread (no lock), direct-mapped: the signatures this thread
 * verified last (jwks_verify).
 */
static _Thread_local struct jwks_memo jwks_memo[JWKS_MEMO];

/* Set *cause (when wanted) to a formatted message; returns -1. */
static int jwks_fail(char **cause, const char *fmt, ...) printflike(2, 3);
static int
jwks_fail(char **cause, const char *fmt, ...)
{
	va_list ap;

	if (cause == NULL)
		return (-1);
	va_start(ap, fmt);
	xvasprintf(cause, fmt, ap);
	va_end(ap);
	return (-1);
}

/* Decode a base64url member of a JWK; 0 or -1 (absent, wrong, empty). */
static int
jwks_b64_member(const cJSON *jwk, const char *name, unsigned char **out,
    size_t *len)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(jwk, name);

	*out = NULL;
	if (!cJSON_IsString(v) || v->valuestring[0] == '\0')
		return (-1);
	if (util_b64url_decode(v->valuestring, strlen(v->valuestring), out,
		len) != 0 ||
	    *len == 0) {
		free(*out);
		*out = NULL;
		return (-1);
	}
	return (0);
}

/* Build a public key of type name from params; NULL on failure. */
static EVP_PKEY *
jwks_fromdata(const char *name, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL, *check = NULL;
	EVP_PKEY *pkey = NULL;

	if ((params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, name, NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		goto out;
	/* The key must be sound: an EC point on its curve, sane RSA e. */
	if ((check = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL ||
	    EVP_PKEY_public_check(check) != 1) {
		EVP_PKEY_free(pkey);
		pkey = NULL;
	}
out:
	EVP_PKEY_CTX_free(check);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	ERR_clear_error();
	return (pkey);
}

/* An RSA public key from n and e; NULL with *cause. */
static EVP_PKEY *
jwks_rsa(const cJSON *jwk, char **cause)
{
	unsigned char *n = NULL, *e = NULL;
	size_t nlen = 0, elen = 0, bits;
	BIGNUM *bn = NULL, *be = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (jwks_b64_member(jwk, "n", &n, &nlen) != 0 ||
	    jwks_b64_member(jwk, "e", &e, &elen) != 0) {
		jwks_fail(cause, "an RSA key needs n and e in base64url");
		goto out;
	}
	while (nlen > 0 && n[0] == 0) { /* leading zero octets: not bits */
		memmove(n, n + 1, --nlen);
	}
	bits = nlen * 8;
	if (nlen > 0)
		for (unsigned char top = n[0]; (top & 0x80) == 0; top <<= 1)
			bits--;
	if (bits < JWKS_RSA_MIN_BITS || nlen > JWKS_RSA_MAX || elen > 8) {
		jwks_fail(cause,
		    "an RSA key has %zu bits; at least %d and at most %d are allowed",
		    bits, JWKS_RSA_MIN_BITS, JWKS_RSA_MAX * 8);
		goto out;
	}
	bn = BN_bin2bn(n, (int)nlen, NULL);
	be = BN_bin2bn(e, (int)elen, NULL);
	if (bn == NULL || be == NULL || (bld = OSSL_PARAM_BLD_new()) == NULL)
		fatalx("jwks: out of memory");
	if (OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) != 1 ||
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be) != 1 ||
	    (pkey = jwks_fromdata("RSA", bld)) == NULL)
		jwks_fail(cause, "an RSA key is not a valid public key");
out:
	OSSL_PARAM_BLD_free(bld);
	BN_free(bn);
	BN_free(be);
	free(n);
	free(e);
	return (pkey);
}

/* An EC P-256 public key from x and y; NULL with *cause. */
static EVP_PKEY *
jwks_ec(const cJSON *jwk, char **cause)
{
	const cJSON *crv = cJSON_GetObjectItemCaseSensitive(jwk, "crv");
	unsigned char *x = NULL, *y = NULL, pt[1 + 2 * JWKS_EC_COORD];
	size_t xlen = 0, ylen = 0;
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (!cJSON_IsString(crv) || strcmp(crv->valuestring, "P-256") != 0) {
		jwks_fail(cause, "an EC key must be on curve P-256");
		return (NULL);
	}
	if (jwks_b64_member(jwk, "x", &x, &xlen) != 0 ||
	    jwks_b64_member(jwk, "y", &y, &ylen) != 0 ||
	    xlen != JWKS_EC_COORD || ylen != JWKS_EC_COORD) {
		jwks_fail(cause, "an EC key needs x and y of 32 bytes each");
		goto out;
	}
	pt[0] = 0x04; /* uncompressed point */
	memcpy(pt + 1, x, JWKS_EC_COORD);
	memcpy(pt + 1 + JWKS_EC_COORD, y, JWKS_EC_COORD);
	if ((bld = OSSL_PARAM_BLD_new()) == NULL)
		fatalx("jwks: out of memory");
	if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
		"prime256v1", 0) != 1 ||
	    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
		sizeof pt) != 1 ||
	    (pkey = jwks_fromdata("EC", bld)) == NULL)
		jwks_fail(cause, "an EC key is not a point on P-256");
out:
	OSSL_PARAM_BLD_free(bld);
	free(x);
	free(y);
	return (pkey);
}

/* Are use and alg, when present, compatible with signing as kty? */
static int
jwks_key_purpose(const cJSON *jwk, enum jwks_kty kty, char **cause)
{
	const cJSON *use = cJSON_GetObjectItemCaseSensitive(jwk, "use");
	const cJSON *alg = cJSON_GetObjectItemCaseSensitive(jwk, "alg");
	const char *want = kty == JWKS_KTY_RSA ? "RS256" : "ES256";

	if (use != NULL &&
	    (!cJSON_IsString(use) || strcmp(use->valuestring, "sig") != 0))
		return (jwks_fail(cause, "a key's use is not \"sig\""));
	if (alg != NULL &&
	    (!cJSON_IsString(alg) || strcmp(alg->valuestring, want) != 0))
		return (jwks_fail(cause, "a key's alg is not %s", want));
	return (0);
}

/* One JWK into k; 0 or -1 with *cause. */
static int
jwks_key_parse(const cJSON *jwk, struct jwks_key *k, char **cause)
{
	const cJSON *kty, *kid;

	if (!cJSON_IsObject(jwk))
		return (jwks_fail(cause, "a key is not a JSON object"));
	kty = cJSON_GetObjectItemCaseSensitive(jwk, "kty");
	kid = cJSON_GetObjectItemCaseSensitive(jwk, "kid");
	if (kid != NULL && !cJSON_IsString(kid))
		return (jwks_fail(cause, "a key's kid is not a string"));
	if (!cJSON_IsString(kty))
		return (jwks_fail(cause, "a key has no kty"));
	if (strcmp(kty->valuestring, "RSA") == 0)
		k->kty = JWKS_KTY_RSA;
	else if (strcmp(kty->valuestring, "EC") == 0)
		k->kty = JWKS_KTY_EC;
	else
		return (jwks_fail(cause, "a key's kty is neither RSA nor EC"));
	if (jwks_key_purpose(jwk, k->kty, cause) != 0)
		return (-1);
	k->pkey =
	    k->kty == JWKS_KTY_RSA ? jwks_rsa(jwk, cause) : jwks_ec(jwk, cause);
	if (k->pkey == NULL)
		return (-1);
	k->kid = kid != NULL ? xstrdup(kid->valuestring) : NULL;
	return (0);
}

/* Add the usable keys of the array to set; 0 or -1 with *cause. */
static int
jwks_add_keys(struct jwks_set *set, const cJSON *keys, int strict, char **cause)
{
	const cJSON *jwk;
	char *why = NULL;
	int i = 0;

	cJSON_ArrayForEach(jwk, keys)
	{
		if (set->n == JWKS_MAX_KEYS)
			return (jwks_fail(cause,
			    "the JWKS has more than %d keys", JWKS_MAX_KEYS));
		if (jwks_key_parse(jwk, &set->v[set->n], &why) == 0)
			set->n++;
		else if (strict) {
			jwks_fail(cause, "JWKS key %d: %s", i, why);
			free(why);
			return (-1);
		} else {
			log_info("jwks: key %d skipped: %s", i, why);
			free(why);
		}
		why = NULL;
		i++;
	}
	return (0);
}

/*
 * Parse a JWKS document of len bytes.  Returns a set with one reference
 * and at least one usable key, or NULL with *cause.
 */
struct jwks_set *
jwks_parse(const char *text, size_t len, int strict, char **cause)
{
	struct jwks_set *set = NULL;
	const cJSON *keys;
	cJSON *doc;
	char *why = NULL;

	if ((doc = json_parse(text, len, &why)) == NULL) {
		jwks_fail(cause, "the JWKS is not valid JSON: %s", why);
		free(why);
		return (NULL);
	}
	keys = cJSON_GetObjectItemCaseSensitive(doc, "keys");
	if (!cJSON_IsObject(doc) || !cJSON_IsArray(keys)) {
		jwks_fail(cause, "the JWKS is not an object with a keys list");
		goto out;
	}
	set = xcalloc(1, sizeof *set);
	atomic_init(&set->refs, 1);
	set->serial = atomic_fetch_add(&jwks_serials, 1);
	if (jwks_add_keys(set, keys, strict, cause) != 0)
		goto fail;
	if (set->n == 0) {
		jwks_fail(cause,
		    "the JWKS has no usable key (RSA of 2048 bits or more, or EC P-256)");
		goto fail;
	}
	goto out;
fail:
	jwks_set_unref(set);
	set = NULL;
out:
	cJSON_Delete(doc);
	return (set);
}

/* Take a reference on a set. */
struct jwks_set *
jwks_set_ref(struct jwks_set *set)
{
	if (set != NULL)
		atomic_fetch_add(&set->refs, 1);
	return (set);
}

/* Drop a reference; the last one frees the set. */
void
jwks_set_unref(struct jwks_set *set)
{
	size_t i;

	if (set == NULL || atomic_fetch_sub(&set->refs, 1) != 1)
		return;
	for (i = 0; i < set->n; i++) {
		free(set->v[i].kid);
		EVP_PKEY_free(set->v[i].pkey);
	}
	free(set);
}

/* The number of keys in a set. */
size_t
jwks_set_count(const struct jwks_set *set)
{
	return (set != NULL ? set->n : 0);
}

/* Does the set hold a key with this kid? */
int
jwks_set_has_kid(const struct jwks_set *set, const char *kid)
{
	size_t i;

	for (i = 0; set != NULL && kid != NULL && i < set->n; i++) {
		if (set->v[i].kid != NULL && strcmp(set->v[i].kid, kid) == 0)
			return (1);
	}
	return (0);
}

/* JOSE r||s (64 bytes) as a DER ECDSA-Sig-Value; NULL when invalid. */
static unsigned char *
jwks_ecdsa_der(const unsigned char *sig, size_t siglen, size_t *derlen)
{
	ECDSA_SIG *es;
	BIGNUM *r, *s;
	unsigned char *der = NULL;
	int n;

	if (siglen != 2 * JWKS_EC_COORD)
		return (NULL);
	r = BN_bin2bn(sig, JWKS_EC_COORD, NULL);
	s = BN_bin2bn(sig + JWKS_EC_COORD, JWKS_EC_COORD, NULL);
	if (r == NULL || s == NULL || (es = ECDSA_SIG_new()) == NULL)
		fatalx("jwks: out of memory");
	ECDSA_SIG_set0(es, r, s);
	if ((n = i2d_ECDSA_SIG(es, &der)) <= 0)
		der = NULL;
	ECDSA_SIG_free(es);
	*derlen = n > 0 ? (size_t)n : 0;
	return (der);
}

static pthread_once_t jwks_md_once = PTHREAD_ONCE_INIT;
static EVP_MD *jwks_md_sha256;

/* Fetch SHA-256 once: a fetch by name per verification costs a lookup. */
static void
jwks_md_init(void)
{
	if ((jwks_md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("jwks: SHA256 is not available");
}

/* Verify sig over input with one key; 1 when it holds. */
static int
jwks_verify_key(const struct jwks_key *k, const void *input, size_t inlen,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX *md;
	unsigned char *der = NULL;
	size_t derlen = 0;
	int ok = 0;

	if (k->kty == JWKS_KTY_EC) {
		if ((der = jwks_ecdsa_der(sig, siglen, &derlen)) == NULL)
			return (0);
		sig = der;
		siglen = derlen;
	} else if (siglen != (size_t)EVP_PKEY_get_size(k->pkey))
		return (0);
	pthread_once(&jwks_md_once, jwks_md_init);
	if ((md = EVP_MD_CTX_new()) == NULL)
		fatalx("jwks: out of memory");
	if (EVP_DigestVerifyInit(md, NULL, jwks_md_sha256, NULL, k->pkey) ==
		1 &&
	    EVP_DigestVerify(md, sig, siglen, input, inlen) == 1)
		ok = 1;
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	ERR_clear_error();
	return (ok);
}

/* SHA-256 of the signing input and of the signature, for the memo. */
static void
jwks_memo_digest(const void *input, size_t inlen, const unsigned char *sig,
    size_t siglen, struct jwks_memo *m)
{
	pthread_once(&jwks_md_once, jwks_md_init);
	if (EVP_Digest(input, inlen, m->input_md, NULL, jwks_md_sha256, NULL) !=
		1 ||
	    EVP_Digest(sig, siglen, m->sig_md, NULL, jwks_md_sha256, NULL) != 1)
		fatalx("jwks: SHA-256 failed");
}

/* The memo slot of a digest. */
static struct jwks_memo *
jwks_memo_slot(const struct jwks_memo *m)
{
	return (&jwks_memo[(m->input_md[0] ^ m->sig_md[0]) % JWKS_MEMO]);
}

/*
 * Verify with key i of set, or find that this thread verified the same
 * signature over the same input with the same key before: an RSA
 * verification costs ~300,000 instructions, a quarter of an uncached
 * login (issue 12), and a pod logs in with the same projected token
 * until the kubelet rotates it.  Sound because a set is immutable and
 * its serial is never reused (a rotated key is a new set), and the
 * digests are SHA-256 of exactly what the verification read; only
 * signatures that verified are remembered, so a forged one pays the
 * full check every time.
 */
static int
jwks_verify_memo(const struct jwks_set *set, size_t i, const void *input,
    size_t inlen, const unsigned char *sig, size_t siglen)
{
	struct jwks_memo m, *slot;

	m.serial = set->serial;
	m.key = i;
	jwks_memo_digest(input, inlen, sig, siglen, &m);
	slot = jwks_memo_slot(&m);
	if (slot->serial == m.serial && slot->key == m.key &&
	    memcmp(slot->input_md, m.input_md, sizeof m.input_md) == 0 &&
	    memcmp(slot->sig_md, m.sig_md, sizeof m.sig_md) == 0)
		return (1);
	if (!jwks_verify_key(&set->v[i], input, inlen, sig, siglen))
		return (0);
	*slot = m;
	return (1);
}

/*
 * Verify a JWS signature: alg from its header, kid (or NULL), the signing
 * input (header.claims) and the decoded signature.  JWKS_OK, JWKS_BAD (bad
 * signature or an alg the key cannot have) or JWKS_NO_KEY (no key named
 * kid, or none of the alg's type).
 */
enum jwks_verdict
jwks_verify(const struct jwks_set *set, const char *alg, const char *kid,
    const void *input, size_t inlen, const unsigned char *sig, size_t siglen)
{
	enum jwks_kty want;
	size_t i;
	int tried = 0;

	if (alg == NULL || set == NULL)
		return (JWKS_BAD);
	if (strcmp(alg, "RS256") == 0)
		want = JWKS_KTY_RSA;
	else if (strcmp(alg, "ES256") == 0)
		want = JWKS_KTY_EC;
	else
		return (JWKS_BAD); /* HS256, none, PS256, ...: never */
	for (i = 0; i < set->n; i++) {
		const struct jwks_key *k = &set->v[i];

		if (kid != NULL && (k->kid == NULL || strcmp(k->kid, kid) != 0))
			continue;
		if (k->kty != want) {
			if (kid != NULL)
				return (JWKS_BAD); /* alg confusion */
			continue;
		}
		tried = 1;
		if (jwks_verify_memo(set, i, input, inlen, sig, siglen))
			return (JWKS_OK);
		if (kid != NULL)
			return (JWKS_BAD);
	}
	return (tried ? JWKS_BAD : JWKS_NO_KEY);
}
