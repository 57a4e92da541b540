/*
 * fk_jwt.c: the fake cluster's service-account signing keys and its JWTs.
 *
 * At startup a fresh RSA-2048 key is generated; its key id is the unpadded
 * base64url SHA-256 of the DER SubjectPublicKeyInfo, as kube-apiserver
 * computes it.  More keys are added by rotation (fk_jwt_rotate, the
 * /_test/keys control): an RSA-2048 or an EC P-256 key that becomes the
 * signer of its alg (RS256 or ES256) while every earlier key stays
 * published (fk_jwt_jwks, served at /openid/v1/jwks) and valid, like a
 * kube-apiserver given several --service-account-key-file.  An ES256
 * token asked for before any EC key exists adds one.  The RSA key objects
 * and one EVP_PKEY_CTX each for signing and verifying are built once and
 * reused, so a review costs one SHA-256 and at most one public-key
 * operation and never parses a key.  A second "foreign" key (made on
 * first use) signs tokens the server must reject, carrying the real key
 * id.  Tokens are minted in the projected (TokenRequest) layout or the
 * legacy secret layout; JSON keys are written in sorted order like the
 * real server.  Single-threaded; never blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "k8sauth.h"
#include "fake_k8s.h"

#define FK_JWT_MAX_SIG 512
#define FK_JWT_YEAR (365L * 24 * 3600)
#define FK_JWT_WARN_MARKER 3607	/* the kubelet's extended-token marker */
#define FK_JWT_CACHE 1024	/* verified-signature cache slots */
#define FK_JWT_MAX_KEYS 16	/* published keys */
#define FK_JWT_EC_COORD 32

struct fk_jwt_key {
	EVP_PKEY	*pkey;
	int		 ec;		/* EC P-256 (ES256), else RSA */
	char		*kid;
	EVP_PKEY_CTX	*sign;		/* RSA only */
	EVP_PKEY_CTX	*verify;	/* RSA only */
};

static struct fk_jwt_key	 fk_jwt_keys[FK_JWT_MAX_KEYS];
static size_t			 fk_jwt_nkeys;
static struct fk_jwt_key	*fk_jwt_rs_signer;
static struct fk_jwt_key	*fk_jwt_es_signer;
static struct fk_jwt_key	 fk_jwt_foreign;
static EVP_MD			*fk_jwt_sha256;
static char			*fk_jwt_cache[FK_JWT_CACHE];

/* Ready-made PKCS#1 v1.5 SHA-256 contexts for an RSA key. */
static int
fk_jwt_rsa_ctx(struct fk_jwt_key *k)
{
	k->sign = EVP_PKEY_CTX_new(k->pkey, NULL);
	k->verify = EVP_PKEY_CTX_new(k->pkey, NULL);
	if (k->sign == NULL || k->verify == NULL)
		return (-1);
	if (EVP_PKEY_sign_init(k->sign) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(k->sign, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(k->sign, fk_jwt_sha256) != 1)
		return (-1);
	if (EVP_PKEY_verify_init(k->verify) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(k->verify, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(k->verify, fk_jwt_sha256) != 1)
		return (-1);
	return (0);
}

/* Generate an RSA-2048 or EC P-256 key, ready to sign and verify. */
static int
fk_jwt_key_new(struct fk_jwt_key *k, int ec)
{
	k->ec = ec;
	if (ec)
		return ((k->pkey = EVP_EC_gen("P-256")) == NULL ? -1 : 0);
	if ((k->pkey = EVP_RSA_gen(2048)) == NULL)
		return (-1);
	return (fk_jwt_rsa_ctx(k));
}

/* Free one key and its contexts. */
static void
fk_jwt_key_free(struct fk_jwt_key *k)
{
	EVP_PKEY_CTX_free(k->sign);
	EVP_PKEY_CTX_free(k->verify);
	EVP_PKEY_free(k->pkey);
	free(k->kid);
	memset(k, 0, sizeof *k);
}

/* Key id: base64url(SHA-256(DER SubjectPublicKeyInfo)). */
static char *
fk_jwt_make_kid(EVP_PKEY *pkey)
{
	unsigned char	*der = NULL, md[32];
	unsigned int	 mdlen = 0;
	int		 len;
	char		*kid;

	if ((len = i2d_PUBKEY(pkey, &der)) <= 0)
		return (NULL);
	if (EVP_Digest(der, (size_t)len, md, &mdlen, fk_jwt_sha256,
	    NULL) != 1) {
		OPENSSL_free(der);
		return (NULL);
	}
	OPENSSL_free(der);
	kid = util_b64url_encode(md, mdlen);
	return (kid);
}

/*
 * Add a published key (RSA or EC) and make it the signer of its alg.
 * Its kid, or NULL with *cause (too many keys, OpenSSL failed).
 */
const char *
fk_jwt_rotate(int ec, char **cause)
{
	struct fk_jwt_key	*k;

	if (fk_jwt_nkeys == FK_JWT_MAX_KEYS) {
		xasprintf(cause, "at most %d keys", FK_JWT_MAX_KEYS);
		return (NULL);
	}
	k = &fk_jwt_keys[fk_jwt_nkeys];
	if (fk_jwt_key_new(k, ec) != 0 ||
	    (k->kid = fk_jwt_make_kid(k->pkey)) == NULL) {
		fk_jwt_key_free(k);
		xasprintf(cause, "cannot generate %s key: %s", ec ? "EC" :
		    "RSA", ERR_error_string(ERR_get_error(), NULL));
		return (NULL);
	}
	fk_jwt_nkeys++;
	if (ec)
		fk_jwt_es_signer = k;
	else
		fk_jwt_rs_signer = k;
	return (k->kid);
}

/* Make the signing key; 0, or -1 with *cause. */
int
fk_jwt_init(char **cause)
{
	fk_jwt_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (fk_jwt_sha256 == NULL) {
		*cause = xstrdup("cannot fetch SHA256");
		return (-1);
	}
	return (fk_jwt_rotate(0, cause) != NULL ? 0 : -1);
}

/* Free the keys (at exit). */
void
fk_jwt_free_keys(void)
{
	size_t	 i;

	for (i = 0; i < fk_jwt_nkeys; i++)
		fk_jwt_key_free(&fk_jwt_keys[i]);
	fk_jwt_nkeys = 0;
	fk_jwt_rs_signer = fk_jwt_es_signer = NULL;
	fk_jwt_key_free(&fk_jwt_foreign);
	EVP_MD_free(fk_jwt_sha256);
	fk_jwt_sha256 = NULL;
	for (i = 0; i < FK_JWT_CACHE; i++) {
		free(fk_jwt_cache[i]);
		fk_jwt_cache[i] = NULL;
	}
}

/* The key id of the current RS256 signer. */
const char *
fk_jwt_kid(void)
{
	return (fk_jwt_rs_signer->kid);
}

/* A bignum parameter as unpadded (pad 0) or padded base64url. */
static char *
fk_jwt_bn_b64(EVP_PKEY *pkey, const char *param, int pad)
{
	BIGNUM		*bn = NULL;
	unsigned char	 buf[1024];
	int		 n;
	char		*out;

	if (EVP_PKEY_get_bn_param(pkey, param, &bn) != 1)
		fatalx("EVP_PKEY_get_bn_param %s failed", param);
	n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
	if (n <= 0 || (size_t)n > sizeof buf)
		fatalx("bignum %s does not fit", param);
	out = util_b64url_encode(buf, (size_t)n);
	BN_free(bn);
	return (out);
}

/* One key as a JWK, in kube-apiserver's member order. */
static cJSON *
fk_jwt_jwk(const struct fk_jwt_key *k)
{
	cJSON	*o = cJSON_CreateObject();
	char	*a, *b;

	cJSON_AddStringToObject(o, "use", "sig");
	cJSON_AddStringToObject(o, "kty", k->ec ? "EC" : "RSA");
	cJSON_AddStringToObject(o, "kid", k->kid);
	if (k->ec) {
		cJSON_AddStringToObject(o, "crv", "P-256");
		cJSON_AddStringToObject(o, "alg", "ES256");
		a = fk_jwt_bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X,
		    FK_JWT_EC_COORD);
		b = fk_jwt_bn_b64(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y,
		    FK_JWT_EC_COORD);
		cJSON_AddStringToObject(o, "x", a);
		cJSON_AddStringToObject(o, "y", b);
	} else {
		cJSON_AddStringToObject(o, "alg", "RS256");
		a = fk_jwt_bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_N, 0);
		b = fk_jwt_bn_b64(k->pkey, OSSL_PKEY_PARAM_RSA_E, 0);
		cJSON_AddStringToObject(o, "n", a);
		cJSON_AddStringToObject(o, "e", b);
	}
	free(a);
	free(b);
	return (o);
}

/* The JWKS of every published key ({"keys": [...]}). */
cJSON *
fk_jwt_jwks(void)
{
	cJSON	*doc = cJSON_CreateObject(), *keys;
	size_t	 i;

	keys = cJSON_AddArrayToObject(doc, "keys");
	for (i = 0; i < fk_jwt_nkeys; i++)
		cJSON_AddItemToArray(keys, fk_jwt_jwk(&fk_jwt_keys[i]));
	return (doc);
}

/* The published key named kid, or NULL. */
static struct fk_jwt_key *
fk_jwt_key_find(const char *kid)
{
	size_t	 i;

	for (i = 0; i < fk_jwt_nkeys; i++) {
		if (strcmp(fk_jwt_keys[i].kid, kid) == 0)
			return (&fk_jwt_keys[i]);
	}
	return (NULL);
}

/* SHA-256 of len bytes; 0 or -1. */
static int
fk_jwt_digest(const void *data, size_t len, unsigned char md[32])
{
	unsigned int	 mdlen = 0;

	return (EVP_Digest(data, len, md, &mdlen, fk_jwt_sha256, NULL) == 1 &&
	    mdlen == 32 ? 0 : -1);
}

/* ES256 signature (JOSE r||s) of data as base64url, or NULL. */
static char *
fk_jwt_sign_ec(struct fk_jwt_key *k, const char *data, size_t len)
{
	EVP_MD_CTX	*md = EVP_MD_CTX_new();
	unsigned char	 der[FK_JWT_MAX_SIG], raw[2 * FK_JWT_EC_COORD];
	const unsigned char *p = der;
	size_t		 derlen = sizeof der;
	ECDSA_SIG	*es = NULL;
	char		*out = NULL;

	if (md != NULL && EVP_DigestSignInit(md, NULL, fk_jwt_sha256, NULL,
	    k->pkey) == 1 && EVP_DigestSign(md, der, &derlen,
	    (const unsigned char *)data, len) == 1 &&
	    (es = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) != NULL &&
	    BN_bn2binpad(ECDSA_SIG_get0_r(es), raw, FK_JWT_EC_COORD) ==
	    FK_JWT_EC_COORD && BN_bn2binpad(ECDSA_SIG_get0_s(es),
	    raw + FK_JWT_EC_COORD, FK_JWT_EC_COORD) == FK_JWT_EC_COORD)
		out = util_b64url_encode(raw, sizeof raw);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	return (out);
}

/* The signature of data with k (RS256 or ES256) as base64url, or NULL. */
static char *
fk_jwt_sign(struct fk_jwt_key *k, const char *data, size_t len)
{
	unsigned char	 md[32], sig[FK_JWT_MAX_SIG];
	size_t		 siglen = sizeof sig;

	if (k->ec)
		return (fk_jwt_sign_ec(k, data, len));
	if (fk_jwt_digest(data, len, md) != 0 ||
	    EVP_PKEY_sign(k->sign, sig, &siglen, md, sizeof md) != 1)
		return (NULL);
	return (util_b64url_encode(sig, siglen));
}

/* Encode a JSON object as base64url of its compact text. */
static char *
fk_jwt_encode_part(const cJSON *obj)
{
	char	*text, *enc;

	if ((text = cJSON_PrintUnformatted(obj)) == NULL)
		fatalx("cJSON_PrintUnformatted: out of memory");
	enc = util_b64url_encode(text, strlen(text));
	cJSON_free(text);
	return (enc);
}

/* A random five-character suffix like the token controller's. */
static void
fk_jwt_suffix(char out[6])
{
	static const char	 alnum[] = "bcdfghjklmnpqrstvwxz2456789";
	unsigned char		 b[5];
	size_t			 i;

	util_random_bytes(b, sizeof b);
	for (i = 0; i < sizeof b; i++)
		out[i] = alnum[b[i] % (sizeof alnum - 1)];
	out[5] = '\0';
}

/* Claims of a legacy secret-based token (no aud, exp, iat, nbf, jti). */
static cJSON *
fk_jwt_legacy_claims(const struct fk_mint *m)
{
	cJSON	*c;
	char	*secret, *sub, sfx[6];

	fk_jwt_suffix(sfx);
	xasprintf(&secret, "%s-token-%s", m->sa, sfx);
	xasprintf(&sub, "system:serviceaccount:%s:%s", m->ns, m->sa);
	c = cJSON_CreateObject();
	cJSON_AddStringToObject(c, "iss",
	    m->issuer != NULL ? m->issuer : FK_LEGACY_ISSUER);
	cJSON_AddStringToObject(c, "kubernetes.io/serviceaccount/namespace",
	    m->ns);
	cJSON_AddStringToObject(c, "kubernetes.io/serviceaccount/secret.name",
	    secret);
	cJSON_AddStringToObject(c,
	    "kubernetes.io/serviceaccount/service-account.name", m->sa);
	cJSON_AddStringToObject(c,
	    "kubernetes.io/serviceaccount/service-account.uid", m->sa_uid);
	cJSON_AddStringToObject(c, "sub", sub);
	free(secret);
	free(sub);
	return (c);
}

/* A {"name","uid"} reference object. */
static cJSON *
fk_jwt_ref(const char *name, const char *uid)
{
	cJSON	*r = cJSON_CreateObject();

	cJSON_AddStringToObject(r, "name", name);
	cJSON_AddStringToObject(r, "uid", uid);
	return (r);
}

/*
 * The private "kubernetes.io" claim.  warnafter is set only for the
 * kubelet's extended default token (see fk_jwt_projected_claims).
 */
static cJSON *
fk_jwt_k8s_claim(const struct fk_mint *m, long long warnafter)
{
	cJSON	*k = cJSON_CreateObject();

	cJSON_AddStringToObject(k, "namespace", m->ns);
	if (m->pod != NULL) {
		cJSON_AddItemToObject(k, "node",
		    fk_jwt_ref(m->pod->node, m->pod->node_uid));
		cJSON_AddItemToObject(k, "pod",
		    fk_jwt_ref(m->pod->name, m->pod->uid));
	}
	cJSON_AddItemToObject(k, "serviceaccount", fk_jwt_ref(m->sa,
	    m->sa_uid));
	if (warnafter != 0)
		cJSON_AddNumberToObject(k, "warnafter", (double)warnafter);
	return (k);
}

/*
 * Is this the kubelet's default token request (pod-bound, API audiences,
 * 3607 s)?  kube-apiserver then signs it for a year and sets warnafter.
 */
static int
fk_jwt_is_extended(const struct fk_mint *m)
{
	size_t	 i;
	int	 n = cJSON_GetArraySize(m->auds);

	if (m->pod == NULL || m->expires_in != FK_JWT_WARN_MARKER ||
	    (size_t)n != fk_config.napi_auds)
		return (0);
	for (i = 0; i < fk_config.napi_auds; i++) {
		cJSON	*a = cJSON_GetArrayItem(m->auds, (int)i);

		if (strcmp(a->valuestring, fk_config.api_auds[i]) != 0)
			return (0);
	}
	return (1);
}

/* Claims of a projected (TokenRequest) token. */
static cJSON *
fk_jwt_projected_claims(const struct fk_mint *m)
{
	cJSON		*c;
	char		*sub, jti[FK_UID_LEN + 1];
	long long	 now = (long long)time(NULL), exp, warn = 0;

	exp = now + m->expires_in;
	if (fk_jwt_is_extended(m)) {
		warn = exp;
		exp = now + FK_JWT_YEAR;
	}
	fk_state_new_uid(jti);
	xasprintf(&sub, "system:serviceaccount:%s:%s", m->ns, m->sa);
	c = cJSON_CreateObject();
	cJSON_AddItemToObject(c, "aud", cJSON_Duplicate(m->auds, 1));
	cJSON_AddNumberToObject(c, "exp", (double)exp);
	cJSON_AddNumberToObject(c, "iat", (double)now);
	cJSON_AddStringToObject(c, "iss",
	    m->issuer != NULL ? m->issuer : fk_config.issuer);
	cJSON_AddStringToObject(c, "jti", jti);
	cJSON_AddItemToObject(c, "kubernetes.io", fk_jwt_k8s_claim(m, warn));
	cJSON_AddNumberToObject(c, "nbf", (double)(now + m->nbf_offset));
	cJSON_AddStringToObject(c, "sub", sub);
	free(sub);
	return (c);
}

/*
 * The key that signs a token for m: the foreign key (with the real kid)
 * for bad_signature, the ES256 signer (made on first use) for alg ES256,
 * else the RS256 signer.
 */
static struct fk_jwt_key *
fk_jwt_signer(const struct fk_mint *m, const char **kid)
{
	char	*cause = NULL;

	*kid = fk_jwt_rs_signer->kid;
	if (m->foreign_key) {
		if (fk_jwt_foreign.pkey == NULL &&
		    fk_jwt_key_new(&fk_jwt_foreign, 0) != 0)
			fatalx("cannot generate the foreign RSA key");
		return (&fk_jwt_foreign);
	}
	if (!m->es256)
		return (fk_jwt_rs_signer);
	if (fk_jwt_es_signer == NULL && fk_jwt_rotate(1, &cause) == NULL)
		fatalx("%s", cause);
	*kid = fk_jwt_es_signer->kid;
	return (fk_jwt_es_signer);
}

/* Sign a token for m; the JWT, or NULL with *cause. */
char *
fk_jwt_mint(const struct fk_mint *m, char **cause)
{
	cJSON			*hdr, *claims;
	char			*h, *p, *signing, *sig, *jwt = NULL;
	const char		*kid;
	struct fk_jwt_key	*k = fk_jwt_signer(m, &kid);

	hdr = cJSON_CreateObject();
	cJSON_AddStringToObject(hdr, "alg", m->es256 ? "ES256" : "RS256");
	cJSON_AddStringToObject(hdr, "kid", kid);
	claims = m->legacy ? fk_jwt_legacy_claims(m) :
	    fk_jwt_projected_claims(m);
	h = fk_jwt_encode_part(hdr);
	p = fk_jwt_encode_part(claims);
	xasprintf(&signing, "%s.%s", h, p);
	if ((sig = fk_jwt_sign(k, signing, strlen(signing))) == NULL)
		*cause = xstrdup("signing failed");
	else
		xasprintf(&jwt, "%s.%s", signing, sig);
	free(sig);
	free(signing);
	free(h);
	free(p);
	cJSON_Delete(hdr);
	cJSON_Delete(claims);
	return (jwt);
}

/* Decode one base64url JSON object part; NULL if it is not one. */
static cJSON *
fk_jwt_decode_part(const char *s, size_t len)
{
	unsigned char	*raw;
	size_t		 rawlen;
	cJSON		*obj;

	if (len == 0 || util_b64url_decode(s, len, &raw, &rawlen) != 0)
		return (NULL);
	obj = cJSON_ParseWithLength((const char *)raw, rawlen);
	free(raw);
	if (obj != NULL && !cJSON_IsObject(obj)) {
		cJSON_Delete(obj);
		obj = NULL;
	}
	return (obj);
}

/*
 * Split a compact JWS and decode its header and claims (unverified).
 * 0, or -1 when the string is not a JWT at all.
 */
int
fk_jwt_parse(const char *token, struct fk_jwt *jwt)
{
	const char	*d1, *d2;

	memset(jwt, 0, sizeof *jwt);
	if ((d1 = strchr(token, '.')) == NULL ||
	    (d2 = strchr(d1 + 1, '.')) == NULL || strchr(d2 + 1, '.') != NULL)
		return (-1);
	jwt->header = fk_jwt_decode_part(token, (size_t)(d1 - token));
	jwt->claims = fk_jwt_decode_part(d1 + 1, (size_t)(d2 - d1 - 1));
	if (jwt->header == NULL || jwt->claims == NULL) {
		fk_jwt_clear(jwt);
		return (-1);
	}
	return (0);
}

/* Free what fk_jwt_parse decoded. */
void
fk_jwt_clear(struct fk_jwt *jwt)
{
	cJSON_Delete(jwt->header);
	cJSON_Delete(jwt->claims);
	jwt->header = jwt->claims = NULL;
}

/* The verified-token cache slot for a token (FNV-1a of its bytes). */
static char **
fk_jwt_cache_slot(const char *token)
{
	uint32_t	 h = 2166136261u;
	const char	*p;

	for (p = token; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return (&fk_jwt_cache[h % FK_JWT_CACHE]);
}

/* Verify an ES256 (JOSE r||s) signature with an EC key; 1 when valid. */
static int
fk_jwt_verify_ec(struct fk_jwt_key *k, const char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	EVP_MD_CTX	*md;
	ECDSA_SIG	*es;
	unsigned char	*der = NULL;
	int		 n, ok = 0;

	if (siglen != 2 * FK_JWT_EC_COORD || (es = ECDSA_SIG_new()) == NULL)
		return (0);
	ECDSA_SIG_set0(es, BN_bin2bn(sig, FK_JWT_EC_COORD, NULL),
	    BN_bin2bn(sig + FK_JWT_EC_COORD, FK_JWT_EC_COORD, NULL));
	n = i2d_ECDSA_SIG(es, &der);
	ECDSA_SIG_free(es);
	if (n > 0 && (md = EVP_MD_CTX_new()) != NULL) {
		ok = EVP_DigestVerifyInit(md, NULL, fk_jwt_sha256, NULL,
		    k->pkey) == 1 && EVP_DigestVerify(md, der, (size_t)n,
		    (const unsigned char *)data, len) == 1;
		EVP_MD_CTX_free(md);
	}
	OPENSSL_free(der);
	return (ok);
}

/* Verify sig over data with key k; 1 when valid. */
static int
fk_jwt_verify_key(struct fk_jwt_key *k, const char *data, size_t len,
    const unsigned char *sig, size_t siglen)
{
	unsigned char	 md[32];

	if (k->ec)
		return (fk_jwt_verify_ec(k, data, len, sig, siglen));
	return (siglen > 0 && siglen <= FK_JWT_MAX_SIG &&
	    fk_jwt_digest(data, len, md) == 0 &&
	    EVP_PKEY_verify(k->verify, sig, siglen, md, sizeof md) == 1);
}

/*
 * Check the signature of a token with the published key its header names
 * (kid; none: the RS256 signer) and the alg of that key's type; 0 or -1.
 * Tokens that verified are remembered by their exact bytes (keys are
 * never withdrawn, so the answer cannot change), sparing the public-key
 * operation when the same reviewer or workload token comes back; every
 * other check stays live.
 */
int
fk_jwt_verify(const char *token, const cJSON *header)
{
	const char	*dot = strrchr(token, '.');
	const cJSON	*kid = cJSON_GetObjectItemCaseSensitive(header, "kid");
	const cJSON	*alg = cJSON_GetObjectItemCaseSensitive(header, "alg");
	struct fk_jwt_key *k;
	unsigned char	*sig = NULL;
	size_t		 siglen;
	char		**slot = fk_jwt_cache_slot(token);
	int		 rc = -1;

	if (*slot != NULL && strcmp(*slot, token) == 0)
		return (0);
	k = cJSON_IsString(kid) ? fk_jwt_key_find(kid->valuestring) :
	    fk_jwt_rs_signer;
	if (k == NULL || !cJSON_IsString(alg) || strcmp(alg->valuestring,
	    k->ec ? "ES256" : "RS256") != 0)
		return (-1);
	if (dot == NULL || util_b64url_decode(dot + 1, strlen(dot + 1), &sig,
	    &siglen) != 0)
		return (-1);
	if (fk_jwt_verify_key(k, token, (size_t)(dot - token), sig, siglen)) {
		free(*slot);
		*slot = xstrdup(token);
		rc = 0;
	} else
		ERR_clear_error();
	free(sig);
	return (rc);
}
