/*
 * fuzz_fernet.c: libFuzzer target for fernet_decode.
 *
 * Two kinds of input, chosen by the first byte:
 *   even: the rest is a token string, passed to fernet_decode as it is
 *         (base64, envelope and MAC checks);
 *   odd:  the rest is a payload, sealed here with the primary key so that
 *         it passes the MAC and reaches the msgpack payload reader.
 * The key repository is made by fernet_setup in a temporary directory at
 * start and removed once loaded.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_fernet, clang with the
 * sources rebuilt in tests/fuzz/build/); run every target from its seeds
 * with `sh tests/run.sh fuzz`, or this one by hand:
 *
 *   ./tests/fuzz/build/fuzz_fernet -max_len=1200 -max_total_time=300 \
 *       tests/tmp/fuzz-fernet tests/fuzz/corpus/fernet
 *
 * Seeds (tests/fuzz/corpus/fernet): the tokens of
 * tests/data/fernet/vectors.json behind an even byte, and their
 * decrypted msgpack payloads behind an odd byte.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static struct fernet_keys	*fuzz_keys;
static unsigned char		 fuzz_key1[32];

/* Read key 1 of dir as raw bytes. */
static void
fuzz_read_key(const char *dir)
{
	char		*path, *text, *cause = NULL;
	unsigned char	*raw;
	size_t		 len, rawlen;

	xasprintf(&path, "%s/1", dir);
	if (util_read_file(path, 128, &text, &len, &cause) != 0)
		fatalx("%s", cause);
	if (util_b64url_decode(text, len, &raw, &rawlen) != 0 || rawlen != 32)
		fatalx("bad key %s", path);
	memcpy(fuzz_key1, raw, 32);
	free(raw);
	free(text);
	free(path);
}

/* Make and load a key repository once. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char	 dir[] = "/tmp/fuzz-fernet-XXXXXX";
	char	*cause = NULL, *path;
	int	 i;

	log_open(LOGL_ERR, 0);
	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	if (fernet_setup(dir, 3, &cause) != 0)
		fatalx("%s", cause);
	if ((fuzz_keys = fernet_keys_load(dir, &cause)) == NULL)
		fatalx("%s", cause);
	fuzz_read_key(dir);
	for (i = 0; i < 2; i++) {
		xasprintf(&path, "%s/%d", dir, i);
		unlink(path);
		free(path);
	}
	rmdir(dir);
	return (0);
}

/* Seal a payload with key 1 the way Fernet does. */
static char *
fuzz_seal(const uint8_t *data, size_t len)
{
	unsigned char	*raw;
	unsigned int	 maclen = 32;
	int		 n = 0, fin = 0;
	size_t		 total;
	EVP_CIPHER_CTX	*ctx;
	char		*token;

	raw = xmalloc(25 + len + 16 + 32);
	memset(raw, 0, 25);
	raw[0] = 0x80;
	ctx = EVP_CIPHER_CTX_new();
	if (ctx == NULL ||
	    EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, fuzz_key1 + 16,
	    raw + 9) != 1 ||
	    EVP_EncryptUpdate(ctx, raw + 25, &n, data, (int)len) != 1 ||
	    EVP_EncryptFinal_ex(ctx, raw + 25 + n, &fin) != 1)
		fatalx("encrypt failed");
	EVP_CIPHER_CTX_free(ctx);
	total = 25 + (size_t)(n + fin);
	HMAC(EVP_sha256(), fuzz_key1, 16, raw, total, raw + total, &maclen);
	token = util_b64url_encode(raw, total + 32);
	free(raw);
	return (token);
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fernet_payload	 p;
	char			*token, *cause = NULL;

	if (size == 0 || size > 2048)
		return (0);
	if (data[0] & 1)
		token = fuzz_seal(data + 1, size - 1);
	else
		token = xstrndup((const char *)data + 1, size - 1);
	if (fernet_decode(fuzz_keys, token, &p, &cause) == 0) {
		if (p.user_id == NULL || p.project_id == NULL ||
		    strlen(p.audit_id) != 22)
			abort();
		fernet_payload_clear(&p);
	} else {
		if (cause == NULL)
			abort();
		free(cause);
	}
	free(token);
	return (0);
}
