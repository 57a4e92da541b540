/*
 * secret.c: at-rest encryption of reviewer tokens.
 *
 * The [credential] key_repository is a directory (0700) of key files named
 * by non-negative integers, each holding 44 characters of urlsafe base64
 * (32 random bytes), like a Fernet repository.  The highest number is the
 * primary key and encrypts; every key decrypts, so adding a higher key
 * rotates without re-encrypting.  Ciphertexts are
 *
 *	k8s1:<key id>:<base64url(iv[12] || ciphertext || tag[16])>
 *
 * sealed with AES-256-GCM and a fixed associated-data string.
 *
 * Owns a process-global, read-only table of keys.  secret_load fills it on
 * the main thread before workers start (a later call replaces it, for
 * tests and tools); secret_encrypt/secret_decrypt only read it and are safe
 * from any thread.  Only secret_setup and secret_load touch the disk.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "k8sauth.h"

#define SECRET_PREFIX       "k8s1:"
#define SECRET_AAD          "keystone-k8s-auth reviewer token v1"
#define SECRET_KEY_LEN      32
#define SECRET_KEY_TEXT_LEN 44
#define SECRET_IV_LEN       12
#define SECRET_TAG_LEN      16
#define SECRET_MAX_KEY_FILE 256
#define SECRET_MAX_TEXT     (1024 * 1024)

struct secret_key {
	long id;
	unsigned char key[SECRET_KEY_LEN];
};

struct secret_table {
	struct secret_key *keys;
	size_t n;
	size_t primary; /* index of the highest id */
};

static struct secret_table secret_table;

/* Is name a key file name (canonical decimal)?  Sets *id. */
static int
secret_key_name(const char *name, long *id)
{
	if (name[0] == '\0' || (name[0] == '0' && name[1] != '\0'))
		return (0);
	if (strspn(name, "0123456789") != strlen(name))
		return (0);
	return (util_parse_long(name, 0, INT_MAX, id) == 0);
}

/* Wipe and free a key table. */
static void
secret_table_clear(struct secret_table *t)
{
	if (t->keys != NULL) {
		explicit_bzero(t->keys, t->n * sizeof *t->keys);
		free(t->keys);
	}
	memset(t, 0, sizeof *t);
}

/* Decode a key file's text into 32 bytes; 0 or -1. */
static int
secret_decode_key(char *text, unsigned char key[SECRET_KEY_LEN])
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	char *s = util_trim(text);

	if (strlen(s) != SECRET_KEY_TEXT_LEN ||
	    s[SECRET_KEY_TEXT_LEN - 1] != '=' || strchr(s, '+') != NULL ||
	    strchr(s, '/') != NULL)
		return (-1);
	if (util_b64url_decode(s, strlen(s), &raw, &rawlen) != 0)
		return (-1);
	if (rawlen != SECRET_KEY_LEN) {
		explicit_bzero(raw, rawlen);
		free(raw);
		return (-1);
	}
	memcpy(key, raw, SECRET_KEY_LEN);
	explicit_bzero(raw, rawlen);
	free(raw);
	return (0);
}

/* Read one key file into *k; 0 or -1 with *cause naming the file. */
static int
secret_read_key(const char *dir, const char *name, long id,
    struct secret_key *k, char **cause)
{
	struct stat st;
	char *path, *text = NULL;
	int rc = -1;

	xasprintf(&path, "%s/%s", dir, name);
	if (util_read_file(path, SECRET_MAX_KEY_FILE, &text, NULL, cause) != 0)
		goto out;
	if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("credential key %s is accessible by group or others (mode %04o); it should be 0600",
		    path, (unsigned)(st.st_mode & 07777));
	if (secret_decode_key(text, k->key) != 0) {
		xasprintf(cause,
		    "credential key %s is malformed (expected 44 characters of urlsafe base64 of 32 bytes)",
		    path);
		goto out;
	}
	k->id = id;
	rc = 0;
out:
	freezero_str(text);
	free(path);
	return (rc);
}

/* Load every key of dir into t; 0 or -1 with *cause. */
static int
secret_read_dir(const char *dir, struct secret_table *t, char **cause)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	long id;

	if ((d = opendir(dir)) == NULL) {
		xasprintf(cause, "credential key repository %s: %s", dir,
		    strerror(errno));
		return (-1);
	}
	if (fstat(dirfd(d), &st) == 0 && (st.st_mode & 077) != 0)
		log_warn("credential key repository %s is accessible by group or others (mode %04o); it should be 0700",
		    dir, (unsigned)(st.st_mode & 07777));
	while ((de = readdir(d)) != NULL) {
		if (!secret_key_name(de->d_name, &id))
			continue;
		t->keys = xreallocarray(t->keys, t->n + 1, sizeof *t->keys);
		if (secret_read_key(dir, de->d_name, id, &t->keys[t->n],
			cause) != 0) {
			closedir(d);
			return (-1);
		}
		if (t->n == 0 || id > t->keys[t->primary].id)
			t->primary = t->n;
		t->n++;
	}
	closedir(d);
	if (t->n == 0) {
		xasprintf(cause,
		    "credential key repository %s holds no key (run credential-setup)",
		    dir);
		return (-1);
	}
	return (0);
}

/* Load the key repository, replacing any loaded keys; 0 or -1. */
int
secret_load(const char *dir, char **cause)
{
	struct secret_table t;

	memset(&t, 0, sizeof t);
	if (secret_read_dir(dir, &t, cause) != 0) {
		secret_table_clear(&t);
		return (-1);
	}
	secret_table_clear(&secret_table);
	secret_table = t;
	log_info("credential keys loaded from %s: %zu key(s), primary %ld", dir,
	    t.n, t.keys[t.primary].id);
	return (0);
}

/* Forget (and wipe) the loaded keys, at exit or in tests. */
void
secret_clear(void)
{
	secret_table_clear(&secret_table);
}

/* Are credential keys loaded? */
int
secret_loaded(void)
{
	return (secret_table.n > 0);
}

/* Does dir already hold a key file?  -1 with *cause if unreadable. */
static int
secret_dir_has_key(const char *dir, char **cause)
{
	DIR *d;
	struct dirent *de;
	long id;
	int found = 0;

	if ((d = opendir(dir)) == NULL) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	while (!found && (de = readdir(d)) != NULL)
		found = secret_key_name(de->d_name, &id);
	closedir(d);
	return (found);
}

/* Write a fresh key file dir/1 without ever replacing an existing one. */
static int
secret_write_first_key(const char *dir, char **cause)
{
	unsigned char raw[SECRET_KEY_LEN];
	char *b64, *text, *tmp, *path;
	int rc = -1;

	util_random_bytes(raw, sizeof raw);
	b64 = util_b64url_encode(raw, sizeof raw);
	explicit_bzero(raw, sizeof raw);
	xasprintf(&text, "%s=", b64);
	freezero_str(b64);
	xasprintf(&tmp, "%s/.new-key", dir);
	xasprintf(&path, "%s/1", dir);
	if (util_write_file_atomic(tmp, text, strlen(text), 0600, cause) != 0)
		goto out;
	/* link(2) fails with EEXIST rather than replacing a key. */
	if (link(tmp, path) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	unlink(tmp);
	log_info("created credential key %s", path);
	rc = 0;
out:
	freezero_str(text);
	free(tmp);
	free(path);
	return (rc);
}

/* Create the repository and its first key if it has none; idempotent. */
int
secret_setup(const char *dir, char **cause)
{
	int has;

	if (util_mkdir_p(dir, 0700) != 0) {
		xasprintf(cause, "%s: %s", dir, strerror(errno));
		return (-1);
	}
	if ((has = secret_dir_has_key(dir, cause)) < 0)
		return (-1);
	if (has)
		return (0);
	return (secret_write_first_key(dir, cause));
}

/* The loaded key with this id, or NULL. */
static const struct secret_key *
secret_find(long id)
{
	size_t i;

	for (i = 0; i < secret_table.n; i++) {
		if (secret_table.keys[i].id == id)
			return (&secret_table.keys[i]);
	}
	return (NULL);
}

/* AES-256-GCM in either direction; out has room for len bytes.  0/-1. */
static int
secret_gcm(int enc, const unsigned char *key, const unsigned char *iv,
    const unsigned char *in, size_t len, unsigned char *out,
    unsigned char tag[SECRET_TAG_LEN])
{
	EVP_CIPHER_CTX *ctx;
	int n, fin, ok;

	if (len > INT_MAX || (ctx = EVP_CIPHER_CTX_new()) == NULL)
		return (-1);
	ok = EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) ==
		1 &&
	    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SECRET_IV_LEN,
		NULL) == 1 &&
	    EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc) == 1 &&
	    EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)SECRET_AAD,
		(int)strlen(SECRET_AAD)) == 1 &&
	    EVP_CipherUpdate(ctx, out, &n, in, (int)len) == 1 &&
	    (enc ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SECRET_TAG_LEN,
		    tag) == 1) &&
	    EVP_CipherFinal_ex(ctx, out + n, &fin) == 1 &&
	    (!enc ||
		EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SECRET_TAG_LEN,
		    tag) == 1);
	EVP_CIPHER_CTX_free(ctx);
	return (ok ? 0 : -1);
}

/* Encrypt with the primary key; allocated "k8s1:..." or NULL + *cause. */
char *
secret_encrypt(const char *plaintext, char **cause)
{
	const struct secret_key *k;
	unsigned char *buf;
	char *b64, *out = NULL;
	size_t len = strlen(plaintext), total;

	if (!secret_loaded()) {
		xasprintf(cause, "credential keys are not loaded");
		return (NULL);
	}
	if (len > SECRET_MAX_TEXT) {
		xasprintf(cause, "secret longer than %d bytes",
		    SECRET_MAX_TEXT);
		return (NULL);
	}
	k = &secret_table.keys[secret_table.primary];
	total = SECRET_IV_LEN + len + SECRET_TAG_LEN;
	buf = xmalloc(total);
	util_random_bytes(buf, SECRET_IV_LEN);
	if (secret_gcm(1, k->key, buf, (const unsigned char *)plaintext, len,
		buf + SECRET_IV_LEN, buf + SECRET_IV_LEN + len) != 0) {
		xasprintf(cause, "AES-GCM encryption failed");
		goto out;
	}
	b64 = util_b64url_encode(buf, total);
	xasprintf(&out, SECRET_PREFIX "%ld:%s", k->id, b64);
	free(b64);
out:
	explicit_bzero(buf, total);
	free(buf);
	return (out);
}

/* Split "k8s1:<id>:<b64>" into key and raw bytes; 0 or -1 + *cause. */
static int
secret_parse(const char *text, const struct secret_key **k, unsigned char **raw,
    size_t *rawlen, char **cause)
{
	const char *p, *colon;
	char idbuf[16];
	long id;

	if (strncmp(text, SECRET_PREFIX, strlen(SECRET_PREFIX)) != 0 ||
	    (colon = strchr(p = text + strlen(SECRET_PREFIX), ':')) == NULL ||
	    (size_t)(colon - p) >= sizeof idbuf) {
		xasprintf(cause, "not an encrypted secret");
		return (-1);
	}
	memcpy(idbuf, p, (size_t)(colon - p));
	idbuf[colon - p] = '\0';
	if (!secret_key_name(idbuf, &id)) {
		xasprintf(cause, "not an encrypted secret");
		return (-1);
	}
	if ((*k = secret_find(id)) == NULL) {
		xasprintf(cause, "credential key %ld is not loaded", id);
		return (-1);
	}
	if (strlen(colon + 1) > SECRET_MAX_TEXT * 2 ||
	    util_b64url_decode(colon + 1, strlen(colon + 1), raw, rawlen) !=
		0 ||
	    *rawlen < SECRET_IV_LEN + SECRET_TAG_LEN) {
		if (*raw != NULL)
			free(*raw);
		xasprintf(cause, "encrypted secret is malformed");
		return (-1);
	}
	return (0);
}

/* Decrypt a secret_encrypt result; allocated plaintext or NULL + *cause. */
char *
secret_decrypt(const char *text, char **cause)
{
	const struct secret_key *k;
	unsigned char *raw = NULL, *tag;
	char *out;
	size_t rawlen = 0, len;

	if (!secret_loaded()) {
		xasprintf(cause, "credential keys are not loaded");
		return (NULL);
	}
	if (secret_parse(text, &k, &raw, &rawlen, cause) != 0)
		return (NULL);
	len = rawlen - SECRET_IV_LEN - SECRET_TAG_LEN;
	tag = raw + SECRET_IV_LEN + len;
	out = xmalloc(len + 1);
	if (secret_gcm(0, k->key, raw, raw + SECRET_IV_LEN, len,
		(unsigned char *)out, tag) != 0) {
		xasprintf(cause,
		    "encrypted secret failed authentication (wrong key or tampered)");
		explicit_bzero(out, len + 1);
		free(out);
		out = NULL;
	} else
		out[len] = '\0';
	free(raw);
	return (out);
}
