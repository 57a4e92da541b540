/*
 * fernet.c: Keystone Fernet tokens -- key repository, envelope, payloads.
 *
 * What it does: reads a Keystone key repository into an immutable key set,
 * mints tokens (msgpack payload, AES-128-CBC, HMAC-SHA256, urlsafe base64)
 * byte-compatible with Keystone, reads them back, and implements
 * keystone-manage's fernet_setup and fernet_rotate.  The byte layouts are in
 * shared/FERNET.md.
 *
 * What it owns: a struct fernet_keys and the key material in it (wiped when
 * freed).  A key set never changes after fernet_keys_load returns, so any
 * number of threads may use one at the same time for encode and decode; the
 * server swaps in a new set when fernet_keys_changed says the directory
 * changed (it checks at most once a second) or on SIGHUP.
 *
 * Threads and blocking: encode and decode are pure CPU work and run on the
 * worker threads.  Loading, change detection, setup and rotation touch the
 * file system (readdir, stat, a few small reads and writes): short, but not
 * for an event loop in a hurry; rotation and setup run from the command line.
 *
 * Errors never carry key material, plaintext or the token itself.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "k8sauth.h"

#define FERNET_VERSION_BYTE 0x80
#define FERNET_HEADER_LEN   (1 + 8 + 16) /* version, time, IV */
#define FERNET_MAC_LEN      32
#define FERNET_BLOCK        16
#define FERNET_MIN_RAW      (FERNET_HEADER_LEN + FERNET_BLOCK + FERNET_MAC_LEN)
#define FERNET_KEY_LEN      32
#define FERNET_KEY_B64_LEN  44
#define FERNET_KEY_FILE_MAX 64  /* bytes read from a key file */
#define FERNET_AUDIT_LEN    16  /* raw bytes of an audit id */
#define FERNET_ID_MAX       255 /* bytes of a non-UUID id */
/*
 * A packed payload: 3 ids of at most FERNET_ID_MAX bytes and a few
 * scalars fit; packed into a stack buffer, not msgpack's 8 KiB sbuffer (a
 * large malloc per mint that made glibc consolidate its fast bins).
 */
#define FERNET_PAYLOAD_MAX 1024
#define FERNET_ZONE_CHUNK  1024 /* msgpack zone chunk to unpack one payload */

/* The stack buffer a payload is packed into. */
struct fernet_wbuf {
	unsigned char data[FERNET_PAYLOAD_MAX];
	size_t size;
	int overflow;
};

/* One key: raw[0:16] signs, raw[16:32] encrypts. */
struct fernet_key {
	long number;
	unsigned char signing[16];
	unsigned char encryption[16];
};

/* What a key file looked like when it was read (change detection). */
struct fernet_stamp {
	long number;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

struct fernet_keys {
	struct fernet_key *keys; /* primary first, 0 last */
	size_t nkeys;
	struct fernet_stamp *stamps; /* every key file, by number */
	size_t nstamps;
	dev_t dir_dev;
	ino_t dir_ino;
	struct timespec dir_mtim;
};

/* Is name a key file name: decimal digits only, within a long? */
static int
fernet_key_name(const char *name, long *number)
{
	const char *p;

	if (*name == '\0')
		return (0);
	for (p = name; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return (0);
	}
	return (util_parse_long(name, 0, LONG_MAX - 1, number) == 0);
}

/* Order stamps by key number, ascending. */
static int
fernet_stamp_cmp(const void *a, const void *b)
{
	const struct fernet_stamp *sa = a, *sb = b;

	if (sa->number != sb->number)
		return (sa->number < sb->number ? -1 : 1);
	return (0);
}

/* Order keys by number, descending: the primary first, 0 last. */
static int
fernet_key_cmp(const void *a, const void *b)
{
	const struct fernet_key *ka = a, *kb = b;

	if (ka->number != kb->number)
		return (ka->number > kb->number ? -1 : 1);
	return (0);
}

/* Fill a stamp from a stat. */
static void
fernet_stamp_set(struct fernet_stamp *s, long number, const struct stat *st)
{
	memset(s, 0, sizeof *s);
	s->number = number;
	s->dev = st->st_dev;
	s->ino = st->st_ino;
	s->size = st->st_size;
	s->mtim = st->st_mtim;
}

/*
 * List the key files of dir (regular files named by a number), sorted by
 * number, with what stat says about each.  0 or -1 with *cause.
 */
static int
fernet_scan(const char *dir, struct fernet_stamp **out, size_t *nout,
    char **cause)
{
	DIR *d;
	struct dirent *de;
	struct stat st;
	struct fernet_stamp *v = NULL;
	size_t n = 0, i;
	char *path;
	long number;

	if ((d = opendir(dir)) == NULL) {
		xasprintf(cause, "key repository %s: %s", dir, strerror(errno));
		return (-1);
	}
	while ((de = readdir(d)) != NULL) {
		if (!fernet_key_name(de->d_name, &number))
			continue;
		xasprintf(&path, "%s/%s", dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
			v = xreallocarray(v, n + 1, sizeof *v);
			fernet_stamp_set(&v[n++], number, &st);
		}
		free(path);
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof *v, fernet_stamp_cmp);
	for (i = 1; i < n; i++) {
		if (v[i].number == v[i - 1].number) {
			xasprintf(cause,
			    "key repository %s: two files for key %ld", dir,
			    v[i].number);
			free(v);
			return (-1);
		}
	}
	*out = v;
	*nout = n;
	return (0);
}

/* Read at most FERNET_KEY_FILE_MAX bytes of an open file. */
static ssize_t
fernet_read_fd(int fd, char *buf, size_t size)
{
	size_t have = 0;
	ssize_t n;

	while (have < size) {
		n = read(fd, buf + have, size - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return (-1);
		if (n == 0)
			break;
		have += (size_t)n;
	}
	return ((ssize_t)have);
}

/* Decode one key file's text into a key: 0, or -1 when malformed. */
static int
fernet_key_parse(const char *text, size_t len, struct fernet_key *key)
{
	unsigned char *raw = NULL;
	size_t rawlen = 0;
	size_t i;

	if (len > 0 && text[len - 1] == '\n')
		len--;
	if (len != FERNET_KEY_B64_LEN && len != FERNET_KEY_B64_LEN - 1)
		return (-1);
	for (i = 0; i < len; i++) {
		if (text[i] == '\n' || text[i] == '\r' || text[i] == ' ')
			return (-1);
	}
	if (util_b64url_decode(text, len, &raw, &rawlen) != 0)
		return (-1);
	if (rawlen != FERNET_KEY_LEN) {
		OPENSSL_cleanse(raw, rawlen);
		free(raw);
		return (-1);
	}
	memcpy(key->signing, raw, 16);
	memcpy(key->encryption, raw + 16, 16);
	OPENSSL_cleanse(raw, rawlen);
	free(raw);
	return (0);
}

/*
 * Read key file number from dir into key, refreshing its stamp from the
 * open file.  Returns 0, 1 when the file is empty (skipped, as Keystone
 * does after a crash during rotation) or -1 with *cause.
 */
static int
fernet_key_read(const char *dir, struct fernet_stamp *stamp,
    struct fernet_key *key, char **cause)
{
	char buf[FERNET_KEY_FILE_MAX + 1];
	char *path;
	struct stat st;
	ssize_t n;
	int fd, rc = -1;

	xasprintf(&path, "%s/%ld", dir, stamp->number);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) == -1 ||
	    fstat(fd, &st) == -1) {
		xasprintf(cause, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		xasprintf(cause, "key file %s: not a regular file", path);
		goto out;
	}
	fernet_stamp_set(stamp, stamp->number, &st);
	if ((n = fernet_read_fd(fd, buf, sizeof buf)) == -1) {
		xasprintf(cause, "key file %s: %s", path, strerror(errno));
		goto out;
	}
	if (n == 0) {
		log_warn("fernet: ignoring empty key file %s", path);
		rc = 1;
		goto out;
	}
	key->number = stamp->number;
	if ((size_t)n > FERNET_KEY_FILE_MAX ||
	    fernet_key_parse(buf, (size_t)n, key) != 0) {
		xasprintf(cause,
		    "key file %s: not a Fernet key (44 characters of urlsafe base64 of 32 bytes)",
		    path);
		goto out;
	}
	rc = 0;
out:
	OPENSSL_cleanse(buf, sizeof buf);
	if (fd != -1)
		close(fd);
	free(path);
	return (rc);
}

/* Record the directory's identity and mtime. */
static int
fernet_dir_stat(const char *dir, struct stat *st, char **cause)
{
	if (stat(dir, st) == -1) {
		xasprintf(cause, "key repository %s: %s", dir, strerror(errno));
		return (-1);
	}
	if (!S_ISDIR(st->st_mode)) {
		xasprintf(cause, "key repository %s: not a directory", dir);
		return (-1);
	}
	return (0);
}

/* Load a key repository; NULL with *cause when it is unusable. */
struct fernet_keys *
fernet_keys_load(const char *dir, char **cause)
{
	struct fernet_keys *fk;
	struct stat st;
	size_t i;
	int rc;

	if (fernet_dir_stat(dir, &st, cause) != 0)
		return (NULL);
	fk = xcalloc(1, sizeof *fk);
	fk->dir_dev = st.st_dev;
	fk->dir_ino = st.st_ino;
	fk->dir_mtim = st.st_mtim;
	if (fernet_scan(dir, &fk->stamps, &fk->nstamps, cause) != 0)
		goto fail;
	fk->keys = xcalloc(fk->nstamps + 1, sizeof *fk->keys);
	for (i = 0; i < fk->nstamps; i++) {
		rc = fernet_key_read(dir, &fk->stamps[i], &fk->keys[fk->nkeys],
		    cause);
		if (rc == -1)
			goto fail;
		if (rc == 0)
			fk->nkeys++;
	}
	if (fk->nkeys == 0) {
		xasprintf(cause,
		    "key repository %s: no keys (run fernet-setup)", dir);
		goto fail;
	}
	qsort(fk->keys, fk->nkeys, sizeof *fk->keys, fernet_key_cmp);
	return (fk);
fail:
	fernet_keys_free(fk);
	return (NULL);
}

/* Free a key set, wiping the keys. */
void
fernet_keys_free(struct fernet_keys *fk)
{
	if (fk == NULL)
		return;
	if (fk->keys != NULL) {
		OPENSSL_cleanse(fk->keys, (fk->nstamps + 1) * sizeof *fk->keys);
		free(fk->keys);
	}
	free(fk->stamps);
	free(fk);
}

/* How many keys the set holds. */
size_t
fernet_keys_count(const struct fernet_keys *fk)
{
	return (fk == NULL ? 0 : fk->nkeys);
}

/* The number of the primary (encrypting) key. */
long
fernet_keys_primary(const struct fernet_keys *fk)
{
	return (fk->keys[0].number);
}

/*
 * Since when the loaded primary key has been the primary: the mtime of the
 * staged key 0 loaded with it (written by the rotation that promoted the
 * primary; a rename keeps the promoted file's own, older mtime), else the
 * primary's own mtime.  Seconds since the epoch.
 */
double
fernet_keys_primary_since(const struct fernet_keys *fk)
{
	const struct fernet_stamp *s, *primary = NULL;
	size_t i;

	for (i = 0; i < fk->nstamps; i++) {
		s = &fk->stamps[i];
		if (s->number == 0)
			return ((double)s->mtim.tv_sec + s->mtim.tv_nsec / 1e9);
		if (s->number == fk->keys[0].number)
			primary = s;
	}
	if (primary == NULL)
		return (0);
	return ((double)primary->mtim.tv_sec + primary->mtim.tv_nsec / 1e9);
}

/* Do two stamps describe the same file contents? */
static int
fernet_stamp_same(const struct fernet_stamp *a, const struct fernet_stamp *b)
{
	return (a->number == b->number && a->dev == b->dev &&
	    a->ino == b->ino && a->size == b->size &&
	    a->mtim.tv_sec == b->mtim.tv_sec &&
	    a->mtim.tv_nsec == b->mtim.tv_nsec);
}

/*
 * Has the repository changed since fk was loaded from it?  Returns 1 when
 * the directory's inode or mtime differ, or when the set of key files or
 * any key file's inode, size or mtime differ (also when anything cannot be
 * read: let the reload report why), else 0.  Costs a stat of the directory,
 * a readdir and a stat per key file; call it at most once a second.
 */
int
fernet_keys_changed(const char *dir, const struct fernet_keys *fk)
{
	struct stat st;
	struct fernet_stamp *v = NULL;
	size_t n = 0, i;
	char *cause = NULL;
	int changed = 0;

	if (fk == NULL || fernet_dir_stat(dir, &st, &cause) != 0) {
		free(cause);
		return (1);
	}
	if (st.st_dev != fk->dir_dev || st.st_ino != fk->dir_ino ||
	    st.st_mtim.tv_sec != fk->dir_mtim.tv_sec ||
	    st.st_mtim.tv_nsec != fk->dir_mtim.tv_nsec)
		return (1);
	if (fernet_scan(dir, &v, &n, &cause) != 0) {
		free(cause);
		return (1);
	}
	if (n != fk->nstamps)
		changed = 1;
	for (i = 0; !changed && i < n; i++) {
		if (!fernet_stamp_same(&v[i], &fk->stamps[i]))
			changed = 1;
	}
	free(v);
	return (changed);
}

/* Free the strings of a payload and zero it. */
void
fernet_payload_clear(struct fernet_payload *p)
{
	free(p->user_id);
	free(p->project_id);
	free(p->restriction_id);
	free(p->app_cred_id);
	memset(p, 0, sizeof *p);
}

/* Value of a hex digit, or -1 (lowercase only). */
static int
fernet_hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return (c - '0');
	if (c >= 'a' && c <= 'f')
		return (c - 'a' + 10);
	return (-1);
}

/*
 * Pack an ID pair: [true, bin(16)] for 32 lowercase hex digits, else
 * [false, str].  Keystone also packs uppercase or hyphenated UUIDs as bytes
 * and reads them back as lowercase hex; packing those as strings keeps them
 * exactly as given, which Keystone reads back the same.
 */
static void
fernet_pack_id(msgpack_packer *pk, const char *id)
{
	unsigned char raw[16];
	size_t i, len;

	msgpack_pack_array(pk, 2);
	if (util_is_id(id)) {
		for (i = 0; i < sizeof raw; i++) {
			raw[i] =
			    (unsigned char)(fernet_hex_value(id[i * 2]) << 4 |
				fernet_hex_value(id[i * 2 + 1]));
		}
		msgpack_pack_true(pk);
		msgpack_pack_bin(pk, sizeof raw);
		msgpack_pack_bin_body(pk, raw, sizeof raw);
		return;
	}
	len = strlen(id);
	msgpack_pack_false(pk);
	msgpack_pack_str(pk, len);
	msgpack_pack_str_body(pk, id, len);
}

/* Is an ID acceptable to pack? */
static int
fernet_id_ok(const char *id)
{
	return (id != NULL && *id != '\0' && strlen(id) <= FERNET_ID_MAX);
}

/* Check the fields a payload version needs; 0 or -1 with *cause. */
static int
fernet_payload_check(const struct fernet_payload *p, char **cause)
{
	if (p->version != 2 && p->version != 11) {
		xasprintf(cause, "cannot mint payload version %d", p->version);
		return (-1);
	}
	if (!fernet_id_ok(p->user_id) || !fernet_id_ok(p->project_id) ||
	    (p->version == 11 && !fernet_id_ok(p->restriction_id))) {
		xasprintf(cause, "payload version %d: missing or oversized id",
		    p->version);
		return (-1);
	}
	if (p->methods == 0) {
		xasprintf(cause, "payload: no auth method bit set");
		return (-1);
	}
	if (!isfinite(p->expires_at) || p->expires_at < 1 ||
	    p->expires_at > 1e15) {
		xasprintf(cause, "payload: bad expires_at");
		return (-1);
	}
	if (!isfinite(p->issued_at) || p->issued_at < 0 ||
	    p->issued_at > 1e15) {
		xasprintf(cause, "payload: bad issued_at");
		return (-1);
	}
	return (0);
}

/*
 * Make sure the payload has an audit id: mint one from the 16 random bytes
 * in fresh when audit_id is empty, else check the given one is 16 bytes of
 * urlsafe base64.  Writes the raw bytes to raw.  0 or -1 with *cause.
 */
static int
fernet_audit_id(struct fernet_payload *p, const unsigned char fresh[16],
    unsigned char raw[16], char **cause)
{
	unsigned char *dec = NULL;
	size_t declen = 0, len;
	char *text;

	if (p->audit_id[0] == '\0') {
		memcpy(raw, fresh, FERNET_AUDIT_LEN);
		text = util_b64url_encode(raw, FERNET_AUDIT_LEN);
		memcpy(p->audit_id, text, strlen(text) + 1);
		free(text);
		return (0);
	}
	len = strnlen(p->audit_id, sizeof p->audit_id);
	if (len != 22 ||
	    util_b64url_decode(p->audit_id, len, &dec, &declen) != 0 ||
	    declen != FERNET_AUDIT_LEN) {
		free(dec);
		xasprintf(cause,
		    "payload: audit id is not 16 bytes of urlsafe base64");
		return (-1);
	}
	memcpy(raw, dec, FERNET_AUDIT_LEN);
	free(dec);
	return (0);
}

/* msgpack's write callback into a struct fernet_wbuf: refuses overflow. */
static int
fernet_wbuf_write(void *data, const char *buf, size_t len)
{
	struct fernet_wbuf *w = data;

	if (len > sizeof w->data - w->size) {
		w->overflow = 1;
		return (-1);
	}
	memcpy(w->data + w->size, buf, len);
	w->size += len;
	return (0);
}

/* Pack a payload the way Keystone does into w. */
static void
fernet_pack_payload(struct fernet_wbuf *w, const struct fernet_payload *p,
    const unsigned char audit[16])
{
	msgpack_packer pk;

	msgpack_packer_init(&pk, w, fernet_wbuf_write);
	msgpack_pack_array(&pk, p->version == 11 ? 9 : 6);
	msgpack_pack_uint64(&pk, (uint64_t)p->version);
	fernet_pack_id(&pk, p->user_id);
	msgpack_pack_uint64(&pk, p->methods);
	if (p->version == 11)
		fernet_pack_id(&pk, p->restriction_id);
	else
		fernet_pack_id(&pk, p->project_id);
	msgpack_pack_double(&pk, floor(p->expires_at));
	if (p->version == 11) {
		fernet_pack_id(&pk, p->project_id);
		if (p->allow_renew)
			msgpack_pack_true(&pk);
		else
			msgpack_pack_false(&pk);
		if (p->allow_rescope)
			msgpack_pack_true(&pk);
		else
			msgpack_pack_false(&pk);
	}
	msgpack_pack_array(&pk, 1);
	msgpack_pack_bin(&pk, FERNET_AUDIT_LEN);
	msgpack_pack_bin_body(&pk, audit, FERNET_AUDIT_LEN);
}

/*
 * The algorithms and contexts of the per-token work.  HMAC(EVP_sha256(),
 * ...) and EVP_CipherInit_ex(ctx, EVP_aes_128_cbc(), ...) fetch their
 * algorithm from OpenSSL 3's provider store on every call (a lock and a
 * hash-table walk) and allocate a context each time: per token, that was a
 * good part of a cached login's and a validation's crypto.  The algorithms
 * are fetched once per process (fetched objects are shareable between
 * threads) and each thread keeps one MAC and one cipher context, re-keyed
 * per call (contexts are not shareable); a thread's contexts are freed when
 * it ends.  The contexts hold the state of the last key used between calls,
 * as the key set itself does.
 */
struct fernet_thread {
	EVP_MAC_CTX *mac;
	EVP_CIPHER_CTX *cipher;
	int cipher_set; /* the cipher was given once: later inits re-key only */
};

static pthread_once_t fernet_once = PTHREAD_ONCE_INIT;
static pthread_key_t fernet_thread_key;
static EVP_MAC *fernet_hmac;
static EVP_CIPHER *fernet_aes;

/* A thread ends: free its contexts. */
static void
fernet_thread_end(void *arg)
{
	struct fernet_thread *t = arg;

	EVP_MAC_CTX_free(t->mac);
	EVP_CIPHER_CTX_free(t->cipher);
	free(t);
}

/* Fetch HMAC and AES-128-CBC once; make the per-thread key. */
static void
fernet_crypto_init(void)
{
	if ((fernet_hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (fernet_aes = EVP_CIPHER_fetch(NULL, "AES-128-CBC", NULL)) == NULL)
		fatalx("fernet: HMAC or AES-128-CBC is not available");
	if (pthread_key_create(&fernet_thread_key, fernet_thread_end) != 0)
		fatalx("fernet: pthread_key_create failed");
}

/* This thread's contexts, made on first use. */
static struct fernet_thread *
fernet_thread(void)
{
	OSSL_PARAM params[2];
	struct fernet_thread *t;

	pthread_once(&fernet_once, fernet_crypto_init);
	if ((t = pthread_getspecific(fernet_thread_key)) != NULL)
		return (t);
	t = xcalloc(1, sizeof *t);
	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	if ((t->mac = EVP_MAC_CTX_new(fernet_hmac)) == NULL ||
	    EVP_MAC_CTX_set_params(t->mac, params) != 1 ||
	    (t->cipher = EVP_CIPHER_CTX_new()) == NULL)
		fatalx("fernet: cannot create the HMAC or AES contexts");
	if (pthread_setspecific(fernet_thread_key, t) != 0)
		fatalx("fernet: pthread_setspecific failed");
	return (t);
}

/* HMAC-SHA256 of data with a 16-byte signing key. */
static void
fernet_mac(const unsigned char key[16], const unsigned char *data, size_t len,
    unsigned char out[FERNET_MAC_LEN])
{
	EVP_MAC_CTX *ctx = fernet_thread()->mac;
	size_t outlen = 0;

	if (EVP_MAC_init(ctx, key, 16, NULL) != 1 ||
	    EVP_MAC_update(ctx, data, len) != 1 ||
	    EVP_MAC_final(ctx, out, &outlen, FERNET_MAC_LEN) != 1 ||
	    outlen != FERNET_MAC_LEN)
		fatalx("fernet: HMAC-SHA256 failed");
}

/*
 * AES-128-CBC with PKCS#7 padding, encrypting (enc 1) or decrypting (0)
 * in into out (room for inlen + 16).  Returns the output length or -1
 * (bad padding when decrypting).  The thread's context is re-keyed with
 * key and iv on every call, which also resets what a failed call left.
 */
static int
fernet_cipher(int enc, const unsigned char key[16], const unsigned char iv[16],
    const unsigned char *in, size_t inlen, unsigned char *out)
{
	struct fernet_thread *t = fernet_thread();
	int n = 0, fin = 0;

	if (inlen > INT_MAX - FERNET_BLOCK)
		return (-1);
	if (EVP_CipherInit_ex2(t->cipher, t->cipher_set ? NULL : fernet_aes,
		key, iv, enc, NULL) != 1)
		fatalx("fernet: AES-128-CBC set-up failed");
	t->cipher_set = 1;
	if (EVP_CipherUpdate(t->cipher, out, &n, in, (int)inlen) != 1 ||
	    EVP_CipherFinal_ex(t->cipher, out + n, &fin) != 1)
		return (-1);
	return (n + fin);
}

/* Store v big-endian in 8 bytes. */
static void
fernet_put_u64(unsigned char *p, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		p[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/* Read 8 big-endian bytes. */
static uint64_t
fernet_get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return (v);
}

/* Seal a plaintext with the primary key and a fresh random IV. */
static char *
fernet_seal(const struct fernet_key *key, uint64_t ts,
    const unsigned char iv[16], const unsigned char *plain, size_t plainlen,
    char **cause)
{
	unsigned char *raw;
	size_t rawmax, len;
	char *token;
	int n;

	rawmax = FERNET_HEADER_LEN + plainlen + FERNET_BLOCK + FERNET_MAC_LEN;
	raw = xmalloc(rawmax);
	raw[0] = FERNET_VERSION_BYTE;
	fernet_put_u64(raw + 1, ts);
	memcpy(raw + 9, iv, 16);
	n = fernet_cipher(1, key->encryption, raw + 9, plain, plainlen,
	    raw + FERNET_HEADER_LEN);
	if (n < 0)
		fatalx("fernet: AES-128-CBC encryption failed");
	len = FERNET_HEADER_LEN + (size_t)n;
	fernet_mac(key->signing, raw, len, raw + len);
	len += FERNET_MAC_LEN;
	token = util_b64url_encode(raw, len);
	free(raw);
	if (strlen(token) > FERNET_TOKEN_MAX) {
		xasprintf(cause, "token would be longer than %d characters",
		    FERNET_TOKEN_MAX);
		free(token);
		return (NULL);
	}
	return (token);
}

/*
 * Mint a token with the primary key.  Fills in what the caller left empty:
 * issued_at (0 means now, in whole seconds; it becomes the Fernet
 * timestamp) and audit_id (empty means a fresh random one).  Returns the
 * token or NULL with *cause.
 */
char *
fernet_encode(const struct fernet_keys *fk, struct fernet_payload *p,
    char **cause)
{
	struct fernet_wbuf w;
	unsigned char audit[FERNET_AUDIT_LEN];
	unsigned char rnd[16 + FERNET_AUDIT_LEN]; /* the IV, a new audit id */
	char *token;

	if (fk == NULL || fk->nkeys == 0) {
		xasprintf(cause, "no Fernet keys loaded");
		return (NULL);
	}
	if (fernet_payload_check(p, cause) != 0)
		return (NULL);
	/* One draw for both: RAND_bytes twice was 4 % of a cached login. */
	util_random_bytes(rnd, sizeof rnd);
	if (fernet_audit_id(p, rnd + 16, audit, cause) != 0)
		return (NULL);
	if (p->issued_at == 0)
		p->issued_at = (double)time(NULL);
	p->issued_at = floor(p->issued_at);
	w.size = 0;
	w.overflow = 0;
	fernet_pack_payload(&w, p, audit);
	if (w.overflow) {
		OPENSSL_cleanse(w.data, w.size);
		xasprintf(cause, "fernet: payload longer than %d bytes",
		    FERNET_PAYLOAD_MAX);
		return (NULL);
	}
	token = fernet_seal(&fk->keys[0], (uint64_t)p->issued_at, rnd, w.data,
	    w.size, cause);
	OPENSSL_cleanse(w.data, w.size);
	return (token);
}

/* Find the key whose MAC matches; NULL when none does. */
static const struct fernet_key *
fernet_find_key(const struct fernet_keys *fk, const unsigned char *raw,
    size_t len)
{
	unsigned char mac[FERNET_MAC_LEN];
	size_t i;

	for (i = 0; i < fk->nkeys; i++) {
		fernet_mac(fk->keys[i].signing, raw, len - FERNET_MAC_LEN, mac);
		if (CRYPTO_memcmp(mac, raw + len - FERNET_MAC_LEN,
			FERNET_MAC_LEN) == 0)
			return (&fk->keys[i]);
	}
	return (NULL);
}

/*
 * Open a token: base64, envelope, MAC, decryption.  On success *plain (to
 * free) holds the payload bytes and *ts the Fernet timestamp.
 */
static int
fernet_open(const struct fernet_keys *fk, const char *token,
    unsigned char **plain, size_t *plainlen, uint64_t *ts, char **cause)
{
	const struct fernet_key *key;
	unsigned char *raw = NULL, *out = NULL;
	size_t len, rawlen = 0, clen;
	int n;

	len = strnlen(token, FERNET_TOKEN_MAX + 1);
	if (len > FERNET_TOKEN_MAX) {
		xasprintf(cause, "invalid token: longer than %d characters",
		    FERNET_TOKEN_MAX);
		return (-1);
	}
	if (util_b64url_decode(token, len, &raw, &rawlen) != 0) {
		xasprintf(cause, "invalid token: not urlsafe base64");
		return (-1);
	}
	if (rawlen < FERNET_MIN_RAW || raw[0] != FERNET_VERSION_BYTE ||
	    (rawlen - FERNET_HEADER_LEN - FERNET_MAC_LEN) % FERNET_BLOCK != 0) {
		xasprintf(cause, "invalid token: not a Fernet token");
		goto fail;
	}
	if ((key = fernet_find_key(fk, raw, rawlen)) == NULL) {
		xasprintf(cause,
		    "invalid token: signature does not match any key");
		goto fail;
	}
	clen = rawlen - FERNET_HEADER_LEN - FERNET_MAC_LEN;
	out = xmalloc(clen + FERNET_BLOCK);
	n = fernet_cipher(0, key->encryption, raw + 9, raw + FERNET_HEADER_LEN,
	    clen, out);
	if (n < 0) {
		xasprintf(cause, "invalid token: bad padding");
		goto fail;
	}
	*ts = fernet_get_u64(raw + 1);
	*plain = out;
	*plainlen = (size_t)n;
	free(raw);
	return (0);
fail:
	if (out != NULL) {
		OPENSSL_cleanse(out, clen + FERNET_BLOCK);
		free(out);
	}
	free(raw);
	return (-1);
}

/* Read an ID pair into *out (a new string).  0 or -1. */
static int
fernet_read_id(const msgpack_object *o, char **out)
{
	static const char hex[] = "0123456789abcdef";
	const msgpack_object *flag, *v;
	const unsigned char *b;
	char *s;
	size_t i;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 2)
		return (-1);
	flag = &o->via.array.ptr[0];
	v = &o->via.array.ptr[1];
	if (flag->type != MSGPACK_OBJECT_BOOLEAN)
		return (-1);
	if (flag->via.boolean) {
		if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != 16)
			return (-1);
		b = (const unsigned char *)v->via.bin.ptr;
		s = xmalloc(ID_LEN + 1);
		for (i = 0; i < 16; i++) {
			s[i * 2] = hex[b[i] >> 4];
			s[i * 2 + 1] = hex[b[i] & 0xf];
		}
		s[ID_LEN] = '\0';
		*out = s;
		return (0);
	}
	/* Keystone writes str; keystone-ng writes bin: take either. */
	if (v->type == MSGPACK_OBJECT_STR) {
		if (v->via.str.size == 0 || v->via.str.size > FERNET_ID_MAX ||
		    memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
			return (-1);
		*out = xstrndup(v->via.str.ptr, v->via.str.size);
		return (0);
	}
	if (v->type == MSGPACK_OBJECT_BIN) {
		if (v->via.bin.size == 0 || v->via.bin.size > FERNET_ID_MAX ||
		    memchr(v->via.bin.ptr, '\0', v->via.bin.size) != NULL)
			return (-1);
		*out = xstrndup(v->via.bin.ptr, v->via.bin.size);
		return (0);
	}
	return (-1);
}

/* Read a non-negative integer.  0 or -1. */
static int
fernet_read_uint(const msgpack_object *o, uint64_t *out)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return (-1);
	*out = o->via.u64;
	return (0);
}

/* Read a time: float64, float32 or a non-negative integer.  0 or -1. */
static int
fernet_read_time(const msgpack_object *o, double *out)
{
	double d;

	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
		d = (double)o->via.u64;
	else if (o->type == MSGPACK_OBJECT_FLOAT64 ||
	    o->type == MSGPACK_OBJECT_FLOAT32)
		d = o->via.f64;
	else
		return (-1);
	if (!isfinite(d) || d < 0)
		return (-1);
	*out = d;
	return (0);
}

/* Read a boolean.  0 or -1. */
static int
fernet_read_bool(const msgpack_object *o, int *out)
{
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return (-1);
	*out = o->via.boolean ? 1 : 0;
	return (0);
}

/*
 * Read audit_ids: a non-empty array of bin, the first (this token's own
 * id) 16 bytes; keep the first as text.  0 or -1.
 */
static int
fernet_read_audit(const msgpack_object *o, char out[23])
{
	const msgpack_object *v;
	char *text;
	uint32_t i;

	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0)
		return (-1);
	for (i = 0; i < o->via.array.size; i++) {
		if (o->via.array.ptr[i].type != MSGPACK_OBJECT_BIN)
			return (-1);
	}
	v = &o->via.array.ptr[0];
	if (v->via.bin.size != FERNET_AUDIT_LEN)
		return (-1);
	text = util_b64url_encode(v->via.bin.ptr, FERNET_AUDIT_LEN);
	memcpy(out, text, strlen(text) + 1);
	free(text);
	return (0);
}

/* Elements after the version: v2 and v9 share the first five. */
static int
fernet_read_v2(const msgpack_object *e, struct fernet_payload *p)
{
	return (fernet_read_id(&e[1], &p->user_id) == 0 &&
		    fernet_read_uint(&e[2], &p->methods) == 0 &&
		    fernet_read_id(&e[3], &p->project_id) == 0 &&
		    fernet_read_time(&e[4], &p->expires_at) == 0 &&
		    fernet_read_audit(&e[5], p->audit_id) == 0
		? 0
		: -1);
}

/* Version 11, restricted (keystone-ng). */
static int
fernet_read_v11(const msgpack_object *e, struct fernet_payload *p)
{
	return (fernet_read_id(&e[1], &p->user_id) == 0 &&
		    fernet_read_uint(&e[2], &p->methods) == 0 &&
		    fernet_read_id(&e[3], &p->restriction_id) == 0 &&
		    fernet_read_time(&e[4], &p->expires_at) == 0 &&
		    fernet_read_id(&e[5], &p->project_id) == 0 &&
		    fernet_read_bool(&e[6], &p->allow_renew) == 0 &&
		    fernet_read_bool(&e[7], &p->allow_rescope) == 0 &&
		    fernet_read_audit(&e[8], p->audit_id) == 0
		? 0
		: -1);
}

/* Dispatch on the payload version.  0 or -1. */
static int
fernet_read_payload(const msgpack_object *root, struct fernet_payload *p)
{
	const msgpack_object *e;
	uint64_t version;
	uint32_t n;

	if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size == 0)
		return (-1);
	e = root->via.array.ptr;
	n = root->via.array.size;
	if (fernet_read_uint(&e[0], &version) != 0)
		return (-1);
	p->version = (int)(version > 100 ? 0 : version);
	switch (version) {
	case 2:
		return (n == 6 ? fernet_read_v2(e, p) : -1);
	case 9:
		if (n != 7 || fernet_read_v2(e, p) != 0)
			return (-1);
		return (fernet_read_id(&e[6], &p->app_cred_id));
	case 11:
		return (n == 9 ? fernet_read_v11(e, p) : -1);
	}
	return (-1);
}

/* Read an n-byte big-endian length at b. */
static size_t
fernet_mp_len(const unsigned char *b, size_t n)
{
	size_t v = 0, i;

	for (i = 0; i < n; i++)
		v = v << 8 | b[i];
	return (v);
}

/*
 * Skip one msgpack value at *off, checking it fits in len.  msgpack-c
 * allocates a container's elements from the count in its header before
 * reading them, so a count larger than the bytes left (every element takes
 * at least one) is refused here first, as is nesting deeper than 4.
 */
static int
fernet_mp_skip(const unsigned char *b, size_t len, size_t *off, int depth)
{
	static const unsigned char lenbytes[] = { 1, 2, 4 };
	size_t n = 0, items = 0, fixed, i;
	unsigned char c;

	if (*off >= len || depth > 4)
		return (-1);
	c = b[(*off)++];
	if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3)
		return (0);
	if (c >= 0x80 && c <= 0x9f) {
		items = (size_t)(c & 0x0f) * (c < 0x90 ? 2 : 1);
		goto items;
	}
	if (c >= 0xa0 && c <= 0xbf) {
		n = c & 0x1f;
		goto bytes;
	}
	switch (c) {
	case 0xc4:
	case 0xc5:
	case 0xc6: /* bin 8, 16, 32 */
	case 0xd9:
	case 0xda:
	case 0xdb: /* str 8, 16, 32 */
		fixed = lenbytes[c >= 0xd9 ? c - 0xd9 : c - 0xc4];
		if (len - *off < fixed)
			return (-1);
		n = fernet_mp_len(b + *off, fixed);
		*off += fixed;
		goto bytes;
	case 0xc7:
	case 0xc8:
	case 0xc9: /* ext 8, 16, 32 */
		fixed = lenbytes[c - 0xc7];
		if (len - *off < fixed)
			return (-1);
		n = fernet_mp_len(b + *off, fixed) + 1;
		*off += fixed;
		goto bytes;
	case 0xca:
	case 0xcb: /* float 32, 64 */
		n = c == 0xca ? 4 : 8;
		goto bytes;
	case 0xcc:
	case 0xcd:
	case 0xce:
	case 0xcf: /* uint */
	case 0xd0:
	case 0xd1:
	case 0xd2:
	case 0xd3: /* int */
		n = (size_t)1 << (c & 0x03);
		goto bytes;
	case 0xd4:
	case 0xd5:
	case 0xd6:
	case 0xd7:
	case 0xd8: /* fixext */
		n = ((size_t)1 << (c - 0xd4)) + 1;
		goto bytes;
	case 0xdc:
	case 0xdd:
	case 0xde:
	case 0xdf: /* array, map */
		fixed = (c & 1) ? 4 : 2;
		if (len - *off < fixed)
			return (-1);
		items = fernet_mp_len(b + *off, fixed);
		*off += fixed;
		if (c >= 0xde) {
			if (items > (len - *off) / 2)
				return (-1);
			items *= 2;
		}
		goto items;
	}
	return (-1); /* 0xc1: never used */
bytes:
	if (n > len - *off)
		return (-1);
	*off += n;
	return (0);
items:
	if (items > len - *off)
		return (-1);
	for (i = 0; i < items; i++) {
		if (fernet_mp_skip(b, len, off, depth + 1) != 0)
			return (-1);
	}
	return (0);
}

/* Unpack the payload bytes (one msgpack value, nothing after it). */
static int
fernet_unpack(const unsigned char *buf, size_t len, struct fernet_payload *p)
{
	msgpack_zone zone;
	msgpack_object obj;
	size_t off = 0;
	int rc = -1;

	if (fernet_mp_skip(buf, len, &off, 0) != 0 || off != len)
		return (-1);
	off = 0;
	/*
	 * A zone of FERNET_ZONE_CHUNK, not msgpack_unpack_next's 8 KiB one:
	 * a payload's objects fit (and the zone grows if they ever do not).
	 */
	if (!msgpack_zone_init(&zone, FERNET_ZONE_CHUNK))
		fatalx("fernet: out of memory");
	if (msgpack_unpack((const char *)buf, len, &off, &zone, &obj) ==
		MSGPACK_UNPACK_SUCCESS &&
	    off == len)
		rc = fernet_read_payload(&obj, p);
	msgpack_zone_destroy(&zone);
	return (rc);
}

/*
 * Read a token: fills p (issued_at from the Fernet timestamp) and returns
 * 0, or -1 with *cause.  Expiry is not checked here: that is the caller's
 * policy (expires_at is in p).
 */
int
fernet_decode(const struct fernet_keys *fk, const char *token,
    struct fernet_payload *p, char **cause)
{
	unsigned char *plain = NULL;
	size_t plainlen = 0;
	uint64_t ts = 0;

	memset(p, 0, sizeof *p);
	if (fk == NULL || fk->nkeys == 0) {
		xasprintf(cause, "no Fernet keys loaded");
		return (-1);
	}
	if (fernet_open(fk, token, &plain, &plainlen, &ts, cause) != 0)
		return (-1);
	if (fernet_unpack(plain, plainlen, p) != 0) {
		fernet_payload_clear(p);
		xasprintf(cause, "invalid token: bad or unknown payload");
		OPENSSL_cleanse(plain, plainlen);
		free(plain);
		return (-1);
	}
	p->issued_at = (double)ts;
	OPENSSL_cleanse(plain, plainlen);
	free(plain);
	return (0);
}

/* Write a fresh random key to dir/name via name.tmp; 0 or -1. */
static int
fernet_write_key(const char *dir, const char *name, char **cause)
{
	unsigned char raw[FERNET_KEY_LEN];
	char *text, *b64, *path;
	int rc;

	util_random_bytes(raw, sizeof raw);
	b64 = util_b64url_encode(raw, sizeof raw);
	OPENSSL_cleanse(raw, sizeof raw);
	xasprintf(&text, "%s=", b64); /* 43 + padding = 44 */
	freezero_str(b64);
	xasprintf(&path, "%s/%s", dir, name);
	rc = util_write_file_atomic(path, text, strlen(text), 0600, cause);
	free(path);
	freezero_str(text);
	return (rc);
}

/* Remove key number from dir; 0 or -1. */
static int
fernet_remove_key(const char *dir, long number, char **cause)
{
	char *path;
	int rc = 0;

	xasprintf(&path, "%s/%ld", dir, number);
	if (unlink(path) == -1 && errno != ENOENT) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		rc = -1;
	}
	free(path);
	return (rc);
}

/*
 * Rotate as keystone-manage fernet_rotate does: 0 becomes max+1 (the new
 * primary), a fresh 0 is written (0.tmp, then rename) and the lowest
 * non-zero keys are removed while more than max_active keys remain.  A
 * max_active below 2 would remove the key just promoted (Keystone does
 * that); it is treated as 2 so a primary always survives.
 */
int
fernet_rotate(const char *dir, long max_active, char **cause)
{
	struct fernet_stamp *v = NULL;
	size_t n = 0, i, left;
	char *from = NULL, *to = NULL;
	long next;
	int rc = -1;

	if (max_active < 2) {
		log_warn("fernet: max_active_keys %ld is below 2; keeping 2",
		    max_active);
		max_active = 2;
	}
	if (fernet_scan(dir, &v, &n, cause) != 0)
		return (-1);
	if (n == 0 || v[0].number != 0) {
		xasprintf(cause,
		    "key repository %s: no staged key 0 (run fernet-setup)",
		    dir);
		goto out;
	}
	next = v[n - 1].number + 1;
	xasprintf(&from, "%s/0", dir);
	xasprintf(&to, "%s/%ld", dir, next);
	if (rename(from, to) == -1) {
		xasprintf(cause, "rename %s to %s: %s", from, to,
		    strerror(errno));
		goto out;
	}
	if (fernet_write_key(dir, "0", cause) != 0)
		goto out;
	/* Keys now: 0, v[1..n-1] and next. */
	left = n + 1;
	for (i = 1; i < n && left > (size_t)max_active; i++, left--) {
		if (fernet_remove_key(dir, v[i].number, cause) != 0)
			goto out;
	}
	log_info("fernet: rotated %s: primary key %ld, %zu keys", dir, next,
	    left);
	rc = 0;
out:
	free(from);
	free(to);
	free(v);
	return (rc);
}

/*
 * Create a key repository as keystone-manage fernet_setup does: the
 * directory (0700) if needed, key 0, then one rotation (0 staged, 1
 * primary).  A repository that already holds keys is left alone and 0 is
 * returned, as keystone-manage does ("already initialized").
 */
int
fernet_setup(const char *dir, long max_active, char **cause)
{
	struct fernet_stamp *v = NULL;
	size_t n = 0;

	if (util_mkdir_p(dir, 0700) != 0) {
		xasprintf(cause, "mkdir %s: %s", dir, strerror(errno));
		return (-1);
	}
	if (fernet_scan(dir, &v, &n, cause) != 0)
		return (-1);
	free(v);
	if (n != 0) {
		log_info("fernet: key repository %s already holds %zu keys; left unchanged",
		    dir, n);
		return (0);
	}
	if (fernet_write_key(dir, "0", cause) != 0)
		return (-1);
	return (fernet_rotate(dir, max_active, cause));
}

/*
 * The methods bit of method in the comma-separated list methods (Keystone's
 * [auth] methods, same order): 1 << its index.  0 or -1 with *cause.
 */
int
fernet_methods_mask(const char *methods, const char *method, uint64_t *mask,
    char **cause)
{
	const char *p = methods, *end;
	size_t len, index = 0, mlen;

	if (methods == NULL || method == NULL || *method == '\0') {
		xasprintf(cause, "no auth method given");
		return (-1);
	}
	mlen = strlen(method);
	for (;;) {
		while (*p == ' ' || *p == '\t')
			p++;
		end = p + strcspn(p, ",");
		len = (size_t)(end - p);
		while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len == mlen && memcmp(p, method, len) == 0 && index < 64) {
			*mask = (uint64_t)1 << index;
			return (0);
		}
		if (*end == '\0')
			break;
		p = end + 1;
		index++;
	}
	xasprintf(cause, "auth method %s is not in [auth] methods", method);
	return (-1);
}
