/*
 * fk_jwt.c: the fake cluster's service-account signing key and its JWTs.
 *
 * At startup a fresh RSA-2048 key is generated; its key id is the unpadded
 * base64url SHA-256 of the DER SubjectPublicKeyInfo, as kube-apiserver
 * computes it.  The key objects and one EVP_PKEY_CTX each for signing and
 * verifying are built once and reused, so a review costs one SHA-256 and
 * at most one RSA public-key operation and never parses a key.  A second
 * "foreign" key (made on first use) signs tokens the server must reject,
 * carrying the real key id.  Tokens are minted in the projected (TokenRequest)
 * layout or the legacy secret layout; JSON keys are written in sorted
 * order like the real server.  Single-threaded; never blocks.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

struct fk_jwt_key {
	EVP_PKEY	*pkey;
	EVP_PKEY_CTX	*sign;
	EVP_PKEY_CTX	*verify;
};

static struct fk_jwt_key	 fk_jwt_key;
static struct fk_jwt_key	 fk_jwt_foreign;
static EVP_MD			*fk_jwt_sha256;
static char			*fk_jwt_key_id;
static char			*fk_jwt_cache[FK_JWT_CACHE];

/* Generate an RSA-2048 key with ready signing and verifying contexts. */
static int
fk_jwt_key_new(struct fk_jwt_key *k)
{
	if ((k->pkey = EVP_RSA_gen(2048)) == NULL)
		return (-1);
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

/* Free one key and its contexts. */
static void
fk_jwt_key_free(struct fk_jwt_key *k)
{
	EVP_PKEY_CTX_free(k->sign);
	EVP_PKEY_CTX_free(k->verify);
	EVP_PKEY_free(k->pkey);
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

/* Make the signing key; 0, or -1 with *cause. */
int
fk_jwt_init(char **cause)
{
	fk_jwt_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (fk_jwt_sha256 == NULL || fk_jwt_key_new(&fk_jwt_key) != 0 ||
	    (fk_jwt_key_id = fk_jwt_make_kid(fk_jwt_key.pkey)) == NULL) {
		xasprintf(cause, "cannot generate RSA key: %s",
		    ERR_error_string(ERR_get_error(), NULL));
		return (-1);
	}
	return (0);
}

/* Free the keys (at exit). */
void
fk_jwt_free_keys(void)
{
	size_t	 i;

	fk_jwt_key_free(&fk_jwt_key);
	fk_jwt_key_free(&fk_jwt_foreign);
	EVP_MD_free(fk_jwt_sha256);
	fk_jwt_sha256 = NULL;
	free(fk_jwt_key_id);
	fk_jwt_key_id = NULL;
	for (i = 0; i < FK_JWT_CACHE; i++) {
		free(fk_jwt_cache[i]);
		fk_jwt_cache[i] = NULL;
	}
}

/* The key id written into every token header. */
const char *
fk_jwt_kid(void)
{
	return (fk_jwt_key_id);
}

/* SHA-256 of len bytes; 0 or -1. */
static int
fk_jwt_digest(const void *data, size_t len, unsigned char md[32])
{
	unsigned int	 mdlen = 0;

	return (EVP_Digest(data, len, md, &mdlen, fk_jwt_sha256, NULL) == 1 &&
	    mdlen == 32 ? 0 : -1);
}

/* RS256 signature of data as base64url, or NULL. */
static char *
fk_jwt_sign(struct fk_jwt_key *k, const char *data, size_t len)
{
	unsigned char	 md[32], sig[FK_JWT_MAX_SIG];
	size_t		 siglen = sizeof sig;

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

/* Sign a token for m; the JWT, or NULL with *cause. */
char *
fk_jwt_mint(const struct fk_mint *m, char **cause)
{
	cJSON			*hdr, *claims;
	char			*h, *p, *signing, *sig, *jwt = NULL;
	struct fk_jwt_key	*k = &fk_jwt_key;

	if (m->foreign_key) {
		if (fk_jwt_foreign.pkey == NULL &&
		    fk_jwt_key_new(&fk_jwt_foreign) != 0)
			fatalx("cannot generate the foreign RSA key");
		k = &fk_jwt_foreign;
	}
	hdr = cJSON_CreateObject();
	cJSON_AddStringToObject(hdr, "alg", "RS256");
	cJSON_AddStringToObject(hdr, "kid", fk_jwt_key_id);
	claims = m->legacy ? fk_jwt_legacy_claims(m) :
	    fk_jwt_projected_claims(m);
	h = fk_jwt_encode_part(hdr);
	p = fk_jwt_encode_part(claims);
	xasprintf(&signing, "%s.%s", h, p);
	if ((sig = fk_jwt_sign(k, signing, strlen(signing))) == NULL)
		*cause = xstrdup("RSA signing failed");
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

/*
 * Check the RS256 signature of a token with the server key; 0 or -1.
 * Tokens that verified are remembered by their exact bytes (the key never
 * changes, so the answer cannot), sparing the RSA operation when the same
 * reviewer or workload token comes back; every other check stays live.
 */
int
fk_jwt_verify(const char *token)
{
	const char	*dot = strrchr(token, '.');
	unsigned char	 md[32], *sig = NULL;
	size_t		 siglen;
	char		**slot = fk_jwt_cache_slot(token);
	int		 rc = -1;

	if (*slot != NULL && strcmp(*slot, token) == 0)
		return (0);
	if (dot == NULL || util_b64url_decode(dot + 1, strlen(dot + 1), &sig,
	    &siglen) != 0)
		return (-1);
	if (siglen > 0 && siglen <= FK_JWT_MAX_SIG &&
	    fk_jwt_digest(token, (size_t)(dot - token), md) == 0 &&
	    EVP_PKEY_verify(fk_jwt_key.verify, sig, siglen, md,
	    sizeof md) == 1) {
		free(*slot);
		*slot = xstrdup(token);
		rc = 0;
	} else
		ERR_clear_error();
	free(sig);
	return (rc);
}
