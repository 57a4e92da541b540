/*
 * test_fernet.c: the Fernet codec against tokens issued by a real Keystone
 * (tests/data/fernet, see its README.md), round trips, tampering, the key
 * repository (setup, rotate, load, change detection) and the methods
 * bitmask.
 *
 * The test data is found through $FERNET_TESTDATA, else tests/data/fernet
 * relative to the working directory (tests/run.sh runs from the repository
 * root), else ../../data/fernet beside this binary (tests/unit/).  It is
 * part of the repository: nothing outside it is read.
 *
 * The envelope is also implemented here, independently, with OpenSSL, so
 * that tests can read the plaintext of a token and sign crafted payloads.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "k8sauth.h"
#include "testlib.h"

#define DEFAULT_METHODS \
	"external,password,token,oauth1,mapped,application_credential"
#define UUID_A "e727bd54cbc943969397833c885bb0d5"
#define UUID_B "3812bf1c6dcc4b4e979d2ae7d2327dce"
#define UUID_C "5b3f8a2c9d1e4f60a7b8c9d0e1f2a3b4"

static const char *testdata;

/* Where the test data lives: the environment, the working directory, then
 * the directory of this binary. */
static const char *
td_dir(void)
{
	static char	 beside[PATH_MAX + 32];
	char		 exe[PATH_MAX], path[PATH_MAX + 64], *slash;
	ssize_t		 n;

	if (testdata != NULL)
		return (testdata);
	if ((testdata = getenv("FERNET_TESTDATA")) != NULL)
		return (testdata);
	if (access("tests/data/fernet/vectors.json", R_OK) == 0)
		return (testdata = "tests/data/fernet");
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL)
			*slash = '\0';
		snprintf(beside, sizeof beside, "%s/../data/fernet", exe);
		snprintf(path, sizeof path, "%s/vectors.json", beside);
		if (access(path, R_OK) == 0)
			return (testdata = beside);
	}
	fail_msg("fernet test data not found (tests/data/fernet); set FERNET_TESTDATA");
	return (NULL);
}

/* Parse one JSON file of the test data. */
static cJSON *
td_json(const char *name)
{
	char	*path, *text, *cause = NULL;
	cJSON	*j;

	xasprintf(&path, "%s/%s", td_dir(), name);
	if (util_read_file(path, 1 << 20, &text, NULL, &cause) != 0)
		fail_msg("%s", cause);
	j = cJSON_Parse(text);
	assert_non_null(j);
	free(text);
	free(path);
	return (j);
}

/* The raw 32 bytes of a key file. */
static void
key_raw(const char *dir, long number, unsigned char raw[32])
{
	char		*path, *text, *cause = NULL;
	unsigned char	*dec;
	size_t		 len, declen;

	xasprintf(&path, "%s/%ld", dir, number);
	if (util_read_file(path, 128, &text, &len, &cause) != 0)
		fail_msg("%s", cause);
	while (len > 0 && text[len - 1] == '\n')
		len--;
	assert_int_equal(util_b64url_decode(text, len, &dec, &declen), 0);
	assert_int_equal(declen, 32);
	memcpy(raw, dec, 32);
	free(dec);
	free(text);
	free(path);
}

/* Copy a file. */
static void
copy_file(const char *from, const char *to)
{
	char	*text, *cause = NULL;
	size_t	 len;

	if (util_read_file(from, 4096, &text, &len, &cause) != 0)
		fail_msg("%s", cause);
	if (util_write_file_atomic(to, text, len, 0600, &cause) != 0)
		fail_msg("%s", cause);
	free(text);
}

/* A fresh temporary directory. */
static char *
tmp_dir(void)
{
	char	 path[] = "/tmp/k8sauth-fernet-XXXXXX";

	assert_non_null(mkdtemp(path));
	return (xstrdup(path));
}

/* A temporary repository holding copies of the given test keys. */
static char *
repo_with(const long *numbers, size_t n)
{
	char	*dir = tmp_dir(), *from, *to;
	size_t	 i;

	for (i = 0; i < n; i++) {
		xasprintf(&from, "%s/keys/%ld", td_dir(), numbers[i]);
		xasprintf(&to, "%s/%ld", dir, numbers[i]);
		copy_file(from, to);
		free(from);
		free(to);
	}
	return (dir);
}

/* Load the test key repository. */
static struct fernet_keys *
td_keys(void)
{
	struct fernet_keys	*fk;
	char			*dir, *cause = NULL;

	xasprintf(&dir, "%s/keys", td_dir());
	fk = fernet_keys_load(dir, &cause);
	if (fk == NULL)
		fail_msg("%s", cause);
	free(dir);
	return (fk);
}

/* Independent Fernet: open a token with raw key bytes; 0 or -1. */
static int
ref_open(const unsigned char key[32], const char *token, unsigned char **out,
    size_t *outlen, uint64_t *ts)
{
	unsigned char	*raw, mac[32], *pt;
	unsigned int	 maclen = 32;
	size_t		 len, i;
	int		 n = 0, fin = 0, ok;
	EVP_CIPHER_CTX	*ctx;

	if (util_b64url_decode(token, strlen(token), &raw, &len) != 0)
		return (-1);
	if (len < 73 || raw[0] != 0x80) {
		free(raw);
		return (-1);
	}
	HMAC(EVP_sha256(), key, 16, raw, len - 32, mac, &maclen);
	if (memcmp(mac, raw + len - 32, 32) != 0) {
		free(raw);
		return (-1);
	}
	*ts = 0;
	for (i = 1; i < 9; i++)
		*ts = *ts << 8 | raw[i];
	pt = xmalloc(len);
	ctx = EVP_CIPHER_CTX_new();
	ok = EVP_DecryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key + 16,
	    raw + 9) == 1 && EVP_DecryptUpdate(ctx, pt, &n, raw + 25,
	    (int)(len - 25 - 32)) == 1 &&
	    EVP_DecryptFinal_ex(ctx, pt + n, &fin) == 1;
	EVP_CIPHER_CTX_free(ctx);
	free(raw);
	if (!ok) {
		free(pt);
		return (-1);
	}
	*out = pt;
	*outlen = (size_t)(n + fin);
	return (0);
}

/* Independent Fernet: seal plaintext with raw key bytes. */
static char *
ref_seal(const unsigned char key[32], uint64_t ts, const void *plain,
    size_t len)
{
	unsigned char	*raw;
	unsigned int	 maclen = 32;
	size_t		 i, total;
	int		 n = 0, fin = 0;
	EVP_CIPHER_CTX	*ctx;
	char		*token;

	raw = xmalloc(25 + len + 16 + 32);
	raw[0] = 0x80;
	for (i = 0; i < 8; i++)
		raw[1 + i] = (unsigned char)(ts >> (56 - 8 * i));
	util_random_bytes(raw + 9, 16);
	ctx = EVP_CIPHER_CTX_new();
	assert_true(EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key + 16,
	    raw + 9) == 1);
	assert_true(EVP_EncryptUpdate(ctx, raw + 25, &n, plain,
	    (int)len) == 1);
	assert_true(EVP_EncryptFinal_ex(ctx, raw + 25 + n, &fin) == 1);
	EVP_CIPHER_CTX_free(ctx);
	total = 25 + (size_t)(n + fin);
	HMAC(EVP_sha256(), key, 16, raw, total, raw + total, &maclen);
	token = util_b64url_encode(raw, total + 32);
	free(raw);
	return (token);
}

/* The methods mask of a JSON array of method names. */
static uint64_t
methods_of(const cJSON *names)
{
	const cJSON	*m;
	uint64_t	 mask = 0, bit;
	char		*cause = NULL;

	cJSON_ArrayForEach(m, names) {
		assert_true(cJSON_IsString(m));
		if (fernet_methods_mask(DEFAULT_METHODS, m->valuestring, &bit,
		    &cause) != 0)
			fail_msg("%s", cause);
		mask |= bit;
	}
	return (mask);
}

/* A string member or NULL. */
static const char *
jstr(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	return (cJSON_IsString(v) ? v->valuestring : NULL);
}

/* A number member (must exist). */
static double
jnum(const cJSON *o, const char *name)
{
	const cJSON	*v = cJSON_GetObjectItemCaseSensitive(o, name);

	assert_true(cJSON_IsNumber(v));
	return (v->valuedouble);
}

/* Compare a string field with an optional expected value. */
static void
check_str(const char *got, const char *want)
{
	if (want == NULL)
		assert_null(got);
	else {
		assert_non_null(got);
		assert_string_equal(got, want);
	}
}

/* Compare a decoded payload with a vector's expected payload. */
static void
check_vector_payload(const struct fernet_payload *p, const cJSON *want)
{
	const cJSON	*audits, *b;

	assert_int_equal(p->version, (int)jnum(want, "version"));
	assert_true(p->issued_at == jnum(want, "issued_at"));
	check_str(p->user_id, jstr(want, "user_id"));
	assert_int_equal(p->methods, (uint64_t)jnum(want, "methods"));
	check_str(p->project_id, jstr(want, "project_id"));
	check_str(p->restriction_id, jstr(want, "token_restriction_id"));
	check_str(p->app_cred_id, jstr(want, "app_cred_id"));
	assert_true(p->expires_at == jnum(want, "expires_at"));
	audits = cJSON_GetObjectItemCaseSensitive(want, "audit_ids");
	assert_int_equal(cJSON_GetArraySize(audits), 1);
	assert_string_equal(p->audit_id,
	    cJSON_GetArrayItem(audits, 0)->valuestring);
	b = cJSON_GetObjectItemCaseSensitive(want, "allow_renew");
	assert_int_equal(p->allow_renew, b != NULL && cJSON_IsTrue(b));
	b = cJSON_GetObjectItemCaseSensitive(want, "allow_rescope");
	assert_int_equal(p->allow_rescope, b != NULL && cJSON_IsTrue(b));
}

/* Decode must succeed with only key, and fail with only the other one. */
static void
check_key_index(const char *token, long key, long other)
{
	struct fernet_keys	*fk;
	struct fernet_payload	 p;
	char			*dir, *cause = NULL;

	dir = repo_with(&key, 1);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_decode(fk, token, &p, &cause), 0);
	fernet_payload_clear(&p);
	fernet_keys_free(fk);
	testlib_rm_tree(dir);
	free(dir);
	dir = repo_with(&other, 1);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_decode(fk, token, &p, &cause), -1);
	assert_non_null(cause);
	free(cause);
	fernet_keys_free(fk);
	testlib_rm_tree(dir);
	free(dir);
}

/* Every vector decodes to its listed payload, with its listed key. */
static void
test_vectors_decode(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	cJSON			*j = td_json("vectors.json"), *v, *want;
	char			*cause = NULL;
	int			 n = 0;
	long			 key;

	cJSON_ArrayForEach(v, cJSON_GetObjectItem(j, "vectors")) {
		want = cJSON_GetObjectItem(v, "payload");
		if (fernet_decode(fk, jstr(v, "token"), &p, &cause) != 0)
			fail_msg("%s: %s", jstr(v, "name"), cause);
		check_vector_payload(&p, want);
		assert_int_equal(p.methods,
		    methods_of(cJSON_GetObjectItem(v, "methods")));
		fernet_payload_clear(&p);
		key = (long)jnum(want, "key_index");
		check_key_index(jstr(v, "token"), key, key == 0 ? 1 : 0);
		n++;
	}
	assert_int_equal(n, 3);
	cJSON_Delete(j);
	fernet_keys_free(fk);
}

/* Compare a decoded token with what Keystone's validation answered. */
static void
check_validated(const struct fernet_payload *p, const cJSON *t)
{
	char		 ts[TIMESTAMP_LEN + 1];
	const cJSON	*ac, *audits;

	check_str(p->user_id, jstr(cJSON_GetObjectItem(t, "user"), "id"));
	check_str(p->project_id,
	    jstr(cJSON_GetObjectItem(t, "project"), "id"));
	assert_int_equal(p->methods,
	    methods_of(cJSON_GetObjectItem(t, "methods")));
	audits = cJSON_GetObjectItem(t, "audit_ids");
	assert_string_equal(p->audit_id,
	    cJSON_GetArrayItem(audits, 0)->valuestring);
	util_format_time(p->expires_at, ts);
	assert_string_equal(ts, jstr(t, "expires_at"));
	util_format_time(p->issued_at, ts);
	assert_string_equal(ts, jstr(t, "issued_at"));
	ac = cJSON_GetObjectItem(t, "application_credential");
	check_str(p->app_cred_id, ac == NULL ? NULL : jstr(ac, "id"));
	assert_int_equal(p->version, ac == NULL ? 2 : 9);
}

/* Tokens issued by Keystone 22 decode to what it validated them as. */
static void
test_keystone_issued(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	cJSON			*j = td_json("keystone-issued.json"), *v, *t;
	char			*cause = NULL;
	int			 n = 0;

	cJSON_ArrayForEach(v, j) {
		if (!cJSON_IsObject(v))
			continue;
		t = cJSON_GetObjectItem(cJSON_GetObjectItem(v, "validated"),
		    "token");
		assert_non_null(t);
		if (fernet_decode(fk, jstr(v, "token"), &p, &cause) != 0)
			fail_msg("%s: %s", v->string, cause);
		check_validated(&p, t);
		fernet_payload_clear(&p);
		n++;
	}
	assert_int_equal(n, 2);
	cJSON_Delete(j);
	fernet_keys_free(fk);
}

/*
 * Re-encoding a vector's payload gives Keystone's plaintext bytes exactly
 * (versions 2 and 11; 9 is read-only).
 */
static void
test_vectors_reencode_bytes(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	unsigned char		 key1[32], *orig, *mine;
	size_t			 origlen, minelen;
	uint64_t		 ts, ts2;
	cJSON			*j = td_json("vectors.json"), *v;
	char			*cause = NULL, *dir, *token;
	int			 n = 0;

	xasprintf(&dir, "%s/keys", td_dir());
	key_raw(dir, 1, key1);
	cJSON_ArrayForEach(v, cJSON_GetObjectItem(j, "vectors")) {
		assert_int_equal(ref_open(key1, jstr(v, "token"), &orig,
		    &origlen, &ts), 0);
		assert_int_equal(fernet_decode(fk, jstr(v, "token"), &p,
		    &cause), 0);
		if (p.version == 9) {
			assert_null(fernet_encode(fk, &p, &cause));
			free(cause);
			cause = NULL;
		} else {
			assert_non_null(token = fernet_encode(fk, &p, &cause));
			assert_int_equal(ref_open(key1, token, &mine, &minelen,
			    &ts2), 0);
			assert_int_equal(ts2, ts);
			assert_int_equal(minelen, origlen);
			assert_memory_equal(mine, orig, origlen);
			free(mine);
			free(token);
			n++;
		}
		fernet_payload_clear(&p);
		free(orig);
	}
	assert_int_equal(n, 2);
	free(dir);
	cJSON_Delete(j);
	fernet_keys_free(fk);
}

/* Encode then decode; the result must equal the input. */
static void
round_trip(const struct fernet_keys *fk, struct fernet_payload *in)
{
	struct fernet_payload	 out;
	char			*token, *cause = NULL;
	double			 before = floor(util_now());

	token = fernet_encode(fk, in, &cause);
	if (token == NULL)
		fail_msg("%s", cause);
	assert_true(strlen(token) <= FERNET_TOKEN_MAX);
	assert_null(strchr(token, '='));
	assert_int_equal(strlen(in->audit_id), 22);
	assert_true(in->issued_at >= before && in->issued_at <= before + 2);
	assert_int_equal(fernet_decode(fk, token, &out, &cause), 0);
	assert_int_equal(out.version, in->version);
	assert_string_equal(out.user_id, in->user_id);
	assert_int_equal(out.methods, in->methods);
	assert_string_equal(out.project_id, in->project_id);
	check_str(out.restriction_id, in->restriction_id);
	assert_null(out.app_cred_id);
	assert_true(out.expires_at == floor(in->expires_at));
	/* Version 2 has no flags: they read back as 0. */
	assert_int_equal(out.allow_renew,
	    in->version == 11 ? in->allow_renew : 0);
	assert_int_equal(out.allow_rescope,
	    in->version == 11 ? in->allow_rescope : 0);
	assert_string_equal(out.audit_id, in->audit_id);
	assert_true(out.issued_at == in->issued_at);
	fernet_payload_clear(&out);
	free(token);
}

/*
 * A token signed with the primary test key whose one block of plaintext
 * ends in 0x00: a valid MAC over bad PKCS#7 padding.
 */
static char *
bad_padding_token(void)
{
	unsigned char	 key1[32], raw[25 + 16 + 32], block[16];
	unsigned int	 maclen = 32;
	int		 n = 0;
	EVP_CIPHER_CTX	*ctx;
	char		*dir;

	xasprintf(&dir, "%s/keys", td_dir());
	key_raw(dir, 1, key1);
	free(dir);
	memset(block, 0x41, sizeof block);
	block[15] = 0;
	raw[0] = 0x80;
	memset(raw + 1, 0, 8);
	util_random_bytes(raw + 9, 16);
	ctx = EVP_CIPHER_CTX_new();
	assert_true(EVP_EncryptInit_ex(ctx, EVP_aes_128_cbc(), NULL, key1 + 16,
	    raw + 9) == 1);
	EVP_CIPHER_CTX_set_padding(ctx, 0);
	assert_true(EVP_EncryptUpdate(ctx, raw + 25, &n, block, 16) == 1);
	assert_int_equal(n, 16);
	EVP_CIPHER_CTX_free(ctx);
	HMAC(EVP_sha256(), key1, 16, raw, 41, raw + 41, &maclen);
	return (util_b64url_encode(raw, sizeof raw));
}

/* A v2 payload to mint, with a numbered user. */
static void
numbered_payload(struct fernet_payload *p, char *user, size_t size, int i)
{
	memset(p, 0, sizeof *p);
	snprintf(user, size, "user-%d", i);
	p->version = 2;
	p->user_id = user;
	p->project_id = (char *)UUID_A;
	p->methods = 16;
	p->expires_at = 2000000000;
}

/*
 * fernet.c keeps one HMAC and one AES context per thread and re-keys them
 * per call: a failed decryption (bad padding under a valid MAC) must leave
 * nothing behind for the next encode or decode.
 */
static void
test_context_reuse(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	char			*bad = bad_padding_token(), *cause = NULL;
	char			 user[32];
	int			 i;

	for (i = 0; i < 20; i++) {
		assert_int_equal(fernet_decode(fk, bad, &p, &cause), -1);
		assert_non_null(strstr(cause, "bad padding"));
		free(cause);
		cause = NULL;
		numbered_payload(&p, user, sizeof user, i);
		round_trip(fk, &p);
	}
	free(bad);
	fernet_keys_free(fk);
}

struct fernet_worker_arg {
	const struct fernet_keys	*fk;
	int				 id;
	int				 failures;
};

/* Mint and read back tokens on one thread; count what went wrong. */
static void *
fernet_worker(void *arg)
{
	struct fernet_worker_arg	*a = arg;
	struct fernet_payload		 p, q;
	char				 user[32], *t, *cause = NULL;
	int				 i;

	for (i = 0; i < 300; i++) {
		numbered_payload(&p, user, sizeof user, a->id * 1000 + i);
		if ((t = fernet_encode(a->fk, &p, &cause)) == NULL ||
		    fernet_decode(a->fk, t, &q, &cause) != 0 ||
		    strcmp(q.user_id, user) != 0)
			a->failures++;
		else
			fernet_payload_clear(&q);
		free(t);
		free(cause);
		cause = NULL;
	}
	return (NULL);
}

/* Threads minting and reading at once each use their own contexts. */
static void
test_threads(void **state)
{
	struct fernet_keys		*fk = td_keys();
	struct fernet_worker_arg	 a[4];
	pthread_t			 t[4];
	int				 i;

	for (i = 0; i < 4; i++) {
		a[i].fk = fk;
		a[i].id = i;
		a[i].failures = 0;
		assert_int_equal(pthread_create(&t[i], NULL, fernet_worker,
		    &a[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		assert_int_equal(a[i].failures, 0);
	}
	fernet_keys_free(fk);
}

/* Versions 2 and 11 round-trip with UUID and non-UUID ids. */
static void
test_round_trip(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	char			 longid[201];
	const char		*ids[] = {
		UUID_A, "admin", "E727BD54CBC943969397833C885BB0D5",
		"e727bd54-cbc9-4396-9397-833c885bb0d5", longid
	};
	size_t			 i;
	int			 v;

	memset(longid, 'x', sizeof longid - 1);
	longid[sizeof longid - 1] = '\0';
	for (v = 0; v < 2; v++) {
		for (i = 0; i < sizeof ids / sizeof *ids; i++) {
			memset(&p, 0, sizeof p);
			p.version = v == 0 ? 2 : 11;
			p.user_id = (char *)ids[i];
			p.project_id = (char *)ids[(i + 1) % 5];
			if (p.version == 11)
				p.restriction_id = (char *)ids[(i + 2) % 5];
			p.methods = 16 + (uint64_t)i * 1000;
			p.expires_at = 2000000000.75;
			p.allow_renew = (int)(i & 1);
			p.allow_rescope = (int)((i >> 1) & 1);
			round_trip(fk, &p);
		}
	}
	fernet_keys_free(fk);
}

/* The raw bytes of a token (the caller frees). */
static unsigned char *
token_bytes(const char *token, size_t *len)
{
	unsigned char	*raw;

	assert_int_equal(util_b64url_decode(token, strlen(token), &raw, len),
	    0);
	assert_true(*len > 25);
	return (raw);
}

/* memcmp of the IVs (bytes 9..25) of two tokens. */
static int
token_iv_cmp(const char *a, const char *b)
{
	unsigned char	*ra, *rb;
	size_t		 la, lb;
	int		 c;

	ra = token_bytes(a, &la);
	rb = token_bytes(b, &lb);
	c = memcmp(ra + 9, rb + 9, 16);
	free(ra);
	free(rb);
	return (c);
}

/*
 * A token's IV and its freshly minted audit id come from one random draw:
 * they must be different bytes, not the same 16 used twice.
 */
static void
iv_and_audit_apart(const char *token, const char *audit_id)
{
	unsigned char	*raw, *audit;
	size_t		 len, alen;

	raw = token_bytes(token, &len);
	assert_int_equal(util_b64url_decode(audit_id, strlen(audit_id),
	    &audit, &alen), 0);
	assert_int_equal(alen, 16);
	assert_memory_not_equal(raw + 9, audit, 16);
	free(audit);
	free(raw);
}

/* Given issued_at and audit id are kept; fresh audit ids differ. */
static void
test_encode_fields(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p, q;
	char			*t1, *t2, *cause = NULL, first[23];

	memset(&p, 0, sizeof p);
	p.version = 2;
	p.user_id = UUID_A;
	p.project_id = UUID_B;
	p.methods = 16;
	p.expires_at = 1795876724.0;
	p.issued_at = 1795873124.9;
	assert_non_null(t1 = fernet_encode(fk, &p, &cause));
	assert_true(p.issued_at == 1795873124.0);
	memcpy(first, p.audit_id, sizeof first);
	p.audit_id[0] = '\0';
	assert_non_null(t2 = fernet_encode(fk, &p, &cause));
	assert_string_not_equal(first, p.audit_id);
	iv_and_audit_apart(t1, first);
	iv_and_audit_apart(t2, p.audit_id);
	assert_int_not_equal(token_iv_cmp(t1, t2), 0);
	free(t2);
	memcpy(p.audit_id, "xu9cwZ73Slq4Y7iS2h42oQ", 23);
	assert_non_null(t2 = fernet_encode(fk, &p, &cause));
	assert_int_equal(fernet_decode(fk, t2, &q, &cause), 0);
	assert_string_equal(q.audit_id, "xu9cwZ73Slq4Y7iS2h42oQ");
	assert_true(q.issued_at == 1795873124.0);
	fernet_payload_clear(&q);
	free(t1);
	free(t2);
	/* Invalid inputs. */
	memcpy(p.audit_id, "not-an-audit-id", 16);
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	p.audit_id[0] = '\0';
	p.version = 9;
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	p.version = 11;			/* no restriction id */
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	p.version = 2;
	p.user_id = "";
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	p.user_id = UUID_A;
	p.methods = 0;
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	p.methods = 16;
	p.expires_at = NAN;
	assert_null(fernet_encode(fk, &p, &cause));
	free(cause);
	fernet_keys_free(fk);
}

/* A token from the test keys, for tampering. */
static char *
good_token(const struct fernet_keys *fk)
{
	struct fernet_payload	 p;
	char			*cause = NULL, *t;

	memset(&p, 0, sizeof p);
	p.version = 11;
	p.user_id = UUID_A;
	p.project_id = UUID_B;
	p.restriction_id = UUID_C;
	p.methods = 16;
	p.expires_at = 2111233140.0;
	assert_non_null(t = fernet_encode(fk, &p, &cause));
	return (t);
}

/* Flip one bit at byte off of the token's raw bytes; re-encode. */
static char *
flip(const char *token, size_t off)
{
	unsigned char	*raw;
	size_t		 len;
	char		*t;

	assert_int_equal(util_b64url_decode(token, strlen(token), &raw, &len),
	    0);
	assert_true(off < len);
	raw[off] ^= 0x01;
	t = util_b64url_encode(raw, len);
	free(raw);
	return (t);
}

/* decode must fail, with a cause that does not leak key or token. */
static void
must_fail(const struct fernet_keys *fk, const char *token)
{
	struct fernet_payload	 p;
	char			*cause = NULL;

	assert_int_equal(fernet_decode(fk, token, &p, &cause), -1);
	assert_non_null(cause);
	if (strlen(token) > 8)
		assert_null(strstr(cause, token));
	assert_null(strstr(cause, "ewFo5sLI"));	/* key 0 */
	assert_null(strstr(cause, "MM8hzRUB"));	/* key 1 */
	assert_null(p.user_id);
	free(cause);
}

/* Tampered, truncated, malformed tokens and wrong keys all fail. */
static void
test_tampered(void **state)
{
	struct fernet_keys	*fk = td_keys(), *other;
	char			*t = good_token(fk), *bad, *dir, *cause = NULL;
	size_t			 len = strlen(t), rawlen = len * 3 / 4, off;

	for (off = 0; off < rawlen; off++) {	/* every byte */
		bad = flip(t, off);
		must_fail(fk, bad);
		free(bad);
	}
	bad = xstrndup(t, len - 1);		/* truncated */
	must_fail(fk, bad);
	bad[len - 4] = '\0';
	must_fail(fk, bad);
	bad[len / 2] = '\0';
	must_fail(fk, bad);
	bad[10] = '\0';
	must_fail(fk, bad);
	free(bad);
	must_fail(fk, "");
	must_fail(fk, "!!!!");
	bad = xstrdup(t);			/* bad base64 */
	bad[20] = '+';
	must_fail(fk, bad);
	bad[20] = '=';
	must_fail(fk, bad);
	bad[20] = '.';
	must_fail(fk, bad);
	free(bad);
	xasprintf(&bad, "%s===", t);		/* too much padding */
	must_fail(fk, bad);
	free(bad);
	bad = xmalloc(FERNET_TOKEN_MAX + 2);	/* too long */
	memset(bad, 'A', FERNET_TOKEN_MAX + 1);
	bad[FERNET_TOKEN_MAX + 1] = '\0';
	must_fail(fk, bad);
	free(bad);
	dir = tmp_dir();			/* wrong key */
	assert_int_equal(fernet_setup(dir, 3, &cause), 0);
	assert_non_null(other = fernet_keys_load(dir, &cause));
	must_fail(other, t);
	fernet_keys_free(other);
	testlib_rm_tree(dir);
	free(dir);
	free(t);
	fernet_keys_free(fk);
}

/* A version 2 token whose user id is n characters long. */
static char *
sized_token(const struct fernet_keys *fk, size_t n)
{
	struct fernet_payload	 p;
	char			 id[64], *t, *cause = NULL;

	assert_true(n > 0 && n < sizeof id);
	memset(id, 'u', n);
	id[n] = '\0';
	memset(&p, 0, sizeof p);
	p.version = 2;
	p.user_id = id;
	p.project_id = UUID_B;
	p.methods = 16;
	p.expires_at = 2e9;
	assert_non_null(t = fernet_encode(fk, &p, &cause));
	return (t);
}

/* Padded input is accepted as well as unpadded; wrong padding is not. */
static void
test_padded_input(void **state)
{
	struct fernet_keys	*fk = td_keys();
	struct fernet_payload	 p;
	char			*t, *padded, *cause = NULL;
	size_t			 n, pad, seen[4] = { 0 };

	for (n = 1; n <= 48; n++) {
		t = sized_token(fk, n);
		pad = (4 - strlen(t) % 4) % 4;
		seen[pad]++;
		xasprintf(&padded, "%s%.*s", t, (int)pad, "==");
		assert_int_equal(strlen(padded) % 4, 0);
		assert_int_equal(fernet_decode(fk, padded, &p, &cause), 0);
		assert_int_equal(strlen(p.user_id), n);
		fernet_payload_clear(&p);
		free(padded);
		xasprintf(&padded, "%s%.*s", t, (int)pad + 1, "===");
		must_fail(fk, padded);		/* one '=' too many */
		free(padded);
		if (pad == 2) {			/* one '=' too few */
			xasprintf(&padded, "%s=", t);
			must_fail(fk, padded);
			free(padded);
		}
		free(t);
	}
	assert_true(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
	fernet_keys_free(fk);
}

/* Sign a crafted msgpack payload with the primary test key. */
static char *
craft(msgpack_sbuffer *sb)
{
	unsigned char	 key1[32];
	char		*dir, *t;

	xasprintf(&dir, "%s/keys", td_dir());
	key_raw(dir, 1, key1);
	free(dir);
	t = ref_seal(key1, (uint64_t)time(NULL), sb->data, sb->size);
	msgpack_sbuffer_clear(sb);
	return (t);
}

/* Pack [true, bin16] or [false, str]. */
static void
pk_id(msgpack_packer *pk, const char *s)
{
	static const unsigned char	 raw[16] = { 1, 2, 3, 4, 5, 6, 7, 8,
					     9, 10, 11, 12, 13, 14, 15, 16 };

	msgpack_pack_array(pk, 2);
	if (s == NULL) {
		msgpack_pack_true(pk);
		msgpack_pack_bin(pk, 16);
		msgpack_pack_bin_body(pk, raw, 16);
	} else {
		msgpack_pack_false(pk);
		msgpack_pack_str(pk, strlen(s));
		msgpack_pack_str_body(pk, s, strlen(s));
	}
}

/* Pack audit ids: n of them, the first of size len. */
static void
pk_audit(msgpack_packer *pk, uint32_t n, size_t len)
{
	static const unsigned char	 raw[32];
	uint32_t			 i;

	msgpack_pack_array(pk, n);
	for (i = 0; i < n; i++) {
		msgpack_pack_bin(pk, i == 0 ? len : 16);
		msgpack_pack_bin_body(pk, raw, i == 0 ? len : 16);
	}
}

/* A version 2 payload with a chosen version number and audit list. */
static void
pk_v2(msgpack_sbuffer *sb, uint64_t version, uint32_t naudit,
    size_t auditlen)
{
	msgpack_packer	 pk;

	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint64(&pk, version);
	pk_id(&pk, NULL);
	msgpack_pack_uint64(&pk, 16);
	pk_id(&pk, "demo");
	msgpack_pack_double(&pk, 2e9);
	pk_audit(&pk, naudit, auditlen);
}

/* Decode a crafted token: expect rc; returns the payload if 0. */
static void
crafted(const struct fernet_keys *fk, msgpack_sbuffer *sb, int rc)
{
	struct fernet_payload	 p;
	char			*t = craft(sb), *cause = NULL;

	if (rc == 0) {
		if (fernet_decode(fk, t, &p, &cause) != 0)
			fail_msg("%s", cause);
		fernet_payload_clear(&p);
	} else
		must_fail(fk, t);
	free(t);
}

/* Correctly signed but unacceptable payloads are refused. */
static void
test_bad_payloads(void **state)
{
	struct fernet_keys	*fk = td_keys();
	msgpack_sbuffer		 sb;
	msgpack_packer		 pk;
	struct fernet_payload	 p;
	char			*t, *cause = NULL;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pk_v2(&sb, 2, 1, 16);			/* control: accepted */
	t = craft(&sb);
	assert_int_equal(fernet_decode(fk, t, &p, &cause), 0);
	assert_string_equal(p.user_id, "0102030405060708090a0b0c0d0e0f10");
	assert_string_equal(p.project_id, "demo");
	assert_true(p.expires_at == 2e9);
	fernet_payload_clear(&p);
	free(t);
	pk_v2(&sb, 2, 2, 16);			/* parent audit id too */
	crafted(fk, &sb, 0);
	pk_v2(&sb, 3, 1, 16);			/* unknown version */
	crafted(fk, &sb, -1);
	pk_v2(&sb, 0, 1, 16);
	crafted(fk, &sb, -1);
	pk_v2(&sb, 11, 1, 16);			/* 11 needs 9 elements */
	crafted(fk, &sb, -1);
	pk_v2(&sb, 2, 0, 16);			/* empty audit list */
	crafted(fk, &sb, -1);
	pk_v2(&sb, 2, 1, 15);			/* short audit id */
	crafted(fk, &sb, -1);
	pk_v2(&sb, 2, 1, 16);			/* trailing garbage */
	msgpack_pack_nil(&pk);
	crafted(fk, &sb, -1);
	msgpack_pack_array(&pk, 6);		/* methods as a string */
	msgpack_pack_uint64(&pk, 2);
	pk_id(&pk, NULL);
	msgpack_pack_str_with_body(&pk, "16", 2);
	pk_id(&pk, NULL);
	msgpack_pack_double(&pk, 2e9);
	pk_audit(&pk, 1, 16);
	crafted(fk, &sb, -1);
	msgpack_pack_array(&pk, 6);		/* bare string id, int time */
	msgpack_pack_uint64(&pk, 2);
	msgpack_pack_str_with_body(&pk, "demo", 4);
	msgpack_pack_uint64(&pk, 16);
	pk_id(&pk, NULL);
	msgpack_pack_uint64(&pk, 2000000000);
	pk_audit(&pk, 1, 16);
	crafted(fk, &sb, -1);
	msgpack_pack_array(&pk, 6);		/* [true, bin(15)] */
	msgpack_pack_uint64(&pk, 2);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_true(&pk);
	msgpack_pack_bin_with_body(&pk, "0123456789abcde", 15);
	msgpack_pack_uint64(&pk, 16);
	pk_id(&pk, NULL);
	msgpack_pack_uint64(&pk, 2000000000);	/* int time: accepted */
	pk_audit(&pk, 1, 16);
	crafted(fk, &sb, -1);
	msgpack_sbuffer_write(&sb,		/* huge counts: no OOM */
	    "\x96\x02\xdd\xff\xff\xff\xff\x10", 8);
	crafted(fk, &sb, -1);
	msgpack_sbuffer_write(&sb, "\xdf\x7f\xff\xff\xff\x01\x02", 7);
	crafted(fk, &sb, -1);
	msgpack_sbuffer_write(&sb, "\x91\xc6\xff\xff\xff\xf0", 6);
	crafted(fk, &sb, -1);
	msgpack_sbuffer_write(&sb, "\x91\x91\x91\x91\x91\x91\x02", 7);
	crafted(fk, &sb, -1);			/* too deep */
	msgpack_pack_map(&pk, 0);		/* not an array */
	crafted(fk, &sb, -1);
	msgpack_pack_array(&pk, 9);		/* v11, bools as ints */
	msgpack_pack_uint64(&pk, 11);
	pk_id(&pk, NULL);
	msgpack_pack_uint64(&pk, 16);
	pk_id(&pk, NULL);
	msgpack_pack_double(&pk, 2e9);
	pk_id(&pk, NULL);
	msgpack_pack_uint64(&pk, 0);
	msgpack_pack_uint64(&pk, 0);
	pk_audit(&pk, 1, 16);
	crafted(fk, &sb, -1);
	msgpack_pack_array(&pk, 6);		/* keystone-ng: [false, bin] */
	msgpack_pack_uint64(&pk, 2);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_false(&pk);
	msgpack_pack_bin_with_body(&pk, "admin", 5);
	msgpack_pack_uint64(&pk, 16);
	pk_id(&pk, NULL);
	msgpack_pack_float(&pk, 2e9f);		/* float32 time */
	pk_audit(&pk, 1, 16);
	t = craft(&sb);
	assert_int_equal(fernet_decode(fk, t, &p, &cause), 0);
	assert_string_equal(p.user_id, "admin");
	assert_true(p.expires_at == 2e9);
	fernet_payload_clear(&p);
	free(t);
	msgpack_sbuffer_destroy(&sb);
	fernet_keys_free(fk);
}

/* Only the primary encrypts; any key decrypts. */
static void
test_primary_encrypts(void **state)
{
	struct fernet_keys	*fk = td_keys(), *one, *zero;
	long			 k1 = 1, k0 = 0;
	char			*d1, *d0, *t, *t0, *cause = NULL;
	struct fernet_payload	 p;

	d1 = repo_with(&k1, 1);
	d0 = repo_with(&k0, 1);

	assert_int_equal(fernet_keys_count(fk), 2);
	assert_int_equal(fernet_keys_primary(fk), 1);
	assert_non_null(one = fernet_keys_load(d1, &cause));
	assert_non_null(zero = fernet_keys_load(d0, &cause));
	assert_int_equal(fernet_keys_primary(zero), 0);	/* 0 alone */
	t = good_token(fk);
	assert_int_equal(fernet_decode(one, t, &p, &cause), 0);
	fernet_payload_clear(&p);
	must_fail(zero, t);
	t0 = good_token(zero);		/* staged key decrypts too */
	assert_int_equal(fernet_decode(fk, t0, &p, &cause), 0);
	fernet_payload_clear(&p);
	must_fail(one, t0);
	free(t);
	free(t0);
	fernet_keys_free(one);
	fernet_keys_free(zero);
	fernet_keys_free(fk);
	testlib_rm_tree(d1);
	testlib_rm_tree(d0);
	free(d1);
	free(d0);
}

/* Check the mode of a path. */
static void
check_mode(const char *dir, const char *name, mode_t mode)
{
	struct stat	 st;
	char		*path;

	xasprintf(&path, "%s/%s", dir, name);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, mode);
	free(path);
}

/* Does dir/name exist? */
static int
exists(const char *dir, const char *name)
{
	char	*path;
	int	 rc;

	xasprintf(&path, "%s/%s", dir, name);
	rc = access(path, F_OK) == 0;
	free(path);
	return (rc);
}

/* A key file's text. */
static char *
key_text(const char *dir, long number)
{
	char	*path, *text, *cause = NULL;

	xasprintf(&path, "%s/%ld", dir, number);
	if (util_read_file(path, 128, &text, NULL, &cause) != 0)
		fail_msg("%s", cause);
	free(path);
	return (text);
}

/* fernet_setup creates 0 and 1 (0600, directory 0700), once. */
static void
test_setup(void **state)
{
	struct fernet_keys	*fk;
	char			*top = tmp_dir(), *dir, *cause = NULL;
	char			*k0, *k1, *again;

	xasprintf(&dir, "%s/a/fernet-keys", top);
	assert_int_equal(fernet_setup(dir, 3, &cause), 0);
	check_mode(top, "a/fernet-keys", 0700);
	check_mode(dir, "0", 0600);
	check_mode(dir, "1", 0600);
	assert_false(exists(dir, "2"));
	assert_false(exists(dir, "0.tmp"));
	k0 = key_text(dir, 0);
	k1 = key_text(dir, 1);
	assert_int_equal(strlen(k0), 44);
	assert_int_equal(k0[43], '=');
	assert_string_not_equal(k0, k1);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk), 2);
	assert_int_equal(fernet_keys_primary(fk), 1);
	fernet_keys_free(fk);
	assert_int_equal(fernet_setup(dir, 3, &cause), 0);	/* no change */
	assert_false(exists(dir, "2"));
	again = key_text(dir, 0);
	assert_string_equal(again, k0);
	free(again);
	again = key_text(dir, 1);
	assert_string_equal(again, k1);
	free(again);
	free(k0);
	free(k1);
	testlib_rm_tree(top);
	free(top);
	free(dir);
}

/* Rotation promotes 0 and keeps max_active_keys. */
static void
test_rotate(void **state)
{
	struct fernet_keys	*fk, *fk2;
	struct fernet_payload	 p;
	char			*dir = tmp_dir(), *cause = NULL, *staged, *t;
	char			*promoted;

	assert_int_equal(fernet_rotate(dir, 3, &cause), -1);	/* empty */
	assert_non_null(cause);
	free(cause);
	cause = NULL;
	assert_int_equal(fernet_setup(dir, 3, &cause), 0);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	t = good_token(fk);			/* minted with key 1 */
	staged = key_text(dir, 0);
	assert_int_equal(fernet_rotate(dir, 3, &cause), 0);
	promoted = key_text(dir, 2);
	assert_string_equal(promoted, staged);	/* 0 became 2 */
	free(promoted);
	free(staged);
	assert_true(exists(dir, "0") && exists(dir, "1") && exists(dir, "2"));
	check_mode(dir, "0", 0600);
	assert_int_equal(fernet_rotate(dir, 3, &cause), 0);
	assert_true(exists(dir, "0") && exists(dir, "2") && exists(dir, "3"));
	assert_false(exists(dir, "1"));
	assert_false(exists(dir, "0.tmp"));
	assert_non_null(fk2 = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk2), 3);
	assert_int_equal(fernet_keys_primary(fk2), 3);
	must_fail(fk2, t);			/* key 1 is gone */
	free(t);
	t = good_token(fk);	/* key 1 again: still valid with old set */
	assert_int_equal(fernet_decode(fk, t, &p, &cause), 0);
	fernet_payload_clear(&p);
	free(t);
	fernet_keys_free(fk2);
	assert_int_equal(fernet_rotate(dir, 5, &cause), 0);
	assert_int_equal(fernet_rotate(dir, 5, &cause), 0);
	assert_non_null(fk2 = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk2), 5);	/* 0 2 3 4 5 */
	assert_int_equal(fernet_keys_primary(fk2), 5);
	fernet_keys_free(fk2);
	assert_int_equal(fernet_rotate(dir, 1, &cause), 0);	/* as 2 */
	assert_non_null(fk2 = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk2), 2);
	assert_int_equal(fernet_keys_primary(fk2), 6);
	assert_true(exists(dir, "0") && exists(dir, "6"));
	fernet_keys_free(fk2);
	fernet_keys_free(fk);
	testlib_rm_tree(dir);
	free(dir);
}

/* Write a file in dir. */
static void
put(const char *dir, const char *name, const char *text)
{
	char	*path, *cause = NULL;

	xasprintf(&path, "%s/%s", dir, name);
	if (util_write_file_atomic(path, text, strlen(text), 0600,
	    &cause) != 0)
		fail_msg("%s", cause);
	free(path);
}

/* Loading: what is a key, what is ignored, what is an error. */
static void
test_load(void **state)
{
	struct fernet_keys	*fk;
	char			*dir = tmp_dir(), *cause = NULL, *path;

	assert_null(fernet_keys_load("/nonexistent/fernet", &cause));
	assert_non_null(strstr(cause, "/nonexistent/fernet"));
	free(cause);
	cause = NULL;
	put(dir, "0.tmp", "garbage");
	put(dir, ".hidden", "garbage");
	put(dir, "abc", "garbage");
	put(dir, "-1", "garbage");
	assert_null(fernet_keys_load(dir, &cause));	/* no keys */
	assert_non_null(strstr(cause, "no keys"));
	free(cause);
	cause = NULL;
	put(dir, "0", "ewFo5sLIc15rqr2lD9whprMgtH1lNLuoe-lYQusXVuQ=\n");
	put(dir, "1", "MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqUw2M=");
	put(dir, "7", "");				/* empty: skipped */
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk), 2);
	assert_int_equal(fernet_keys_primary(fk), 1);
	fernet_keys_free(fk);
	put(dir, "12", "short");
	assert_null(fernet_keys_load(dir, &cause));
	xasprintf(&path, "%s/12", dir);
	assert_non_null(strstr(cause, path));
	free(path);
	free(cause);
	cause = NULL;
	put(dir, "12", "MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqUw2M=\n\n");
	assert_null(fernet_keys_load(dir, &cause));
	free(cause);
	cause = NULL;
	put(dir, "12", "MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqU.2M=");
	assert_null(fernet_keys_load(dir, &cause));
	free(cause);
	cause = NULL;
	put(dir, "12", "TU04aHpSVUJuYllhWVlBbmJMRDZ0dVZtUEVvYkt=");
	assert_null(fernet_keys_load(dir, &cause));	/* not 32 bytes */
	free(cause);
	cause = NULL;
	put(dir, "012", "MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqUw2M=");
	put(dir, "12", "MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqUw2M=");
	assert_null(fernet_keys_load(dir, &cause));	/* 12 twice */
	free(cause);
	cause = NULL;
	xasprintf(&path, "%s/012", dir);
	unlink(path);
	free(path);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_count(fk), 3);
	assert_int_equal(fernet_keys_primary(fk), 12);
	fernet_keys_free(fk);
	testlib_rm_tree(dir);
	free(dir);
}

/* fernet_keys_changed notices rotation and rewritten keys. */
static void
test_changed(void **state)
{
	struct fernet_keys	*fk;
	char			*dir = tmp_dir(), *cause = NULL, *path;
	struct timespec		 times[2];
	struct stat		 st;
	FILE			*f;

	assert_int_equal(fernet_setup(dir, 3, &cause), 0);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_changed(dir, fk), 0);
	assert_int_equal(fernet_keys_changed(dir, fk), 0);
	assert_int_equal(fernet_rotate(dir, 3, &cause), 0);
	assert_int_equal(fernet_keys_changed(dir, fk), 1);
	fernet_keys_free(fk);
	assert_non_null(fk = fernet_keys_load(dir, &cause));
	assert_int_equal(fernet_keys_changed(dir, fk), 0);
	/* Rewritten in place, directory mtime put back: still noticed. */
	xasprintf(&path, "%s/1", dir);
	assert_int_equal(stat(dir, &st), 0);
	times[0] = st.st_atim;
	times[1] = st.st_mtim;
	assert_non_null(f = fopen(path, "w"));
	fputs("MM8hzRUBnbYaYYAnbLD6tuVmPEobKrNGtCV9CIqUw2M=", f);
	fclose(f);
	assert_int_equal(utimensat(AT_FDCWD, dir, times, 0), 0);
	assert_int_equal(fernet_keys_changed(dir, fk), 1);
	free(path);
	fernet_keys_free(fk);
	assert_int_equal(fernet_keys_changed("/nonexistent/fernet", NULL), 1);
	testlib_rm_tree(dir);
	assert_int_equal(fernet_keys_changed(dir, NULL), 1);
	free(dir);
}

/* The methods bitmask follows the order of [auth] methods. */
static void
test_methods_mask(void **state)
{
	uint64_t	 mask = 0;
	char		*cause = NULL;

	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS, "mapped", &mask,
	    &cause), 0);
	assert_int_equal(mask, 16);
	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS, "external",
	    &mask, &cause), 0);
	assert_int_equal(mask, 1);
	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS,
	    "application_credential", &mask, &cause), 0);
	assert_int_equal(mask, 32);
	assert_int_equal(fernet_methods_mask("password, token , mapped",
	    "mapped", &mask, &cause), 0);
	assert_int_equal(mask, 4);
	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS, "map", &mask,
	    &cause), -1);
	assert_non_null(strstr(cause, "map"));
	free(cause);
	cause = NULL;
	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS, "k8s", &mask,
	    &cause), -1);
	free(cause);
	cause = NULL;
	assert_int_equal(fernet_methods_mask(DEFAULT_METHODS, "", &mask,
	    &cause), -1);
	free(cause);
	cause = NULL;
	assert_int_equal(fernet_methods_mask("", "mapped", &mask, &cause), -1);
	free(cause);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors_decode),
		cmocka_unit_test(test_keystone_issued),
		cmocka_unit_test(test_vectors_reencode_bytes),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_context_reuse),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_encode_fields),
		cmocka_unit_test(test_tampered),
		cmocka_unit_test(test_padded_input),
		cmocka_unit_test(test_bad_payloads),
		cmocka_unit_test(test_primary_encrypts),
		cmocka_unit_test(test_setup),
		cmocka_unit_test(test_rotate),
		cmocka_unit_test(test_load),
		cmocka_unit_test(test_changed),
		cmocka_unit_test(test_methods_mask),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
