/*
 * tls.c: the server's TLS context.
 *
 * Builds one SSL_CTX from [server] tls_cert and tls_key: TLS 1.2 or newer,
 * no renegotiation, HTTP/1.1 as the only ALPN protocol (evhttp speaks no
 * HTTP/2), cipher suites from the system's OpenSSL defaults (crypto
 * policies on Fedora/RHEL).  Called on the main thread at startup (errors
 * are fatal) and on SIGHUP (errors keep the old context).  The context is
 * shared read-only by every worker; see server_ssl_ctx_ref().
 */
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "k8sauth.h"

/* Append OpenSSL's error queue to a message (allocated). */
static char *
tls_errors(const char *what, const char *path)
{
	char buf[256], *out, *tmp;
	unsigned long e;

	xasprintf(&out, "%s%s%s", what, path != NULL ? " " : "",
	    path != NULL ? path : "");
	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof buf);
		xasprintf(&tmp, "%s: %s", out, buf);
		free(out);
		out = tmp;
	}
	return (out);
}

/* ALPN: pick http/1.1 when offered, never h2. */
static int
tls_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
    const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char h11[] = "\x08http/1.1";
	unsigned char *sel;

	if (SSL_select_next_proto(&sel, outlen, h11, sizeof h11 - 1, in,
		inlen) != OPENSSL_NPN_NEGOTIATED)
		return (SSL_TLSEXT_ERR_NOACK);
	*out = sel;
	return (SSL_TLSEXT_ERR_OK);
}

/* Build a server context from PEM files; NULL with *cause on error. */
void *
tls_ctx_new(const char *cert, const char *key, char **cause)
{
	SSL_CTX *ctx;

	ERR_clear_error();
	if (cert == NULL || key == NULL) {
		xasprintf(cause,
		    "[server] tls_cert and tls_key are required for https:// listeners");
		return (NULL);
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		*cause = tls_errors("SSL_CTX_new failed", NULL);
		return (NULL);
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
		SSL_OP_NO_COMPRESSION
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
		| SSL_OP_IGNORE_UNEXPECTED_EOF
#endif
	);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_alpn_select_cb(ctx, tls_alpn_cb, NULL);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		*cause = tls_errors("cannot load certificate", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		*cause = tls_errors("cannot load private key", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		*cause =
		    tls_errors("private key does not match certificate", key);
		goto fail;
	}
	return (ctx);
fail:
	SSL_CTX_free(ctx);
	return (NULL);
}

/* The notAfter of a context's certificate (epoch seconds), 0 if none. */
double
tls_ctx_not_after(void *vctx)
{
	SSL_CTX *ctx = vctx;
	const ASN1_TIME *na;
	X509 *x;
	struct tm tm;

	if (ctx == NULL || (x = SSL_CTX_get0_certificate(ctx)) == NULL ||
	    (na = X509_get0_notAfter(x)) == NULL ||
	    ASN1_TIME_to_tm(na, &tm) != 1)
		return (0);
	return ((double)timegm(&tm));
}

/* Drop the caller's reference to a context. */
void
tls_ctx_free(void *ctx)
{
	SSL_CTX_free(ctx);
}
