/*
 * test_secret.c: the credential key repository and reviewer-token sealing.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"
#include "testlib.h"

#define JWT "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJyZXZpZXdlciJ9.c2lnbmF0dXJl"

struct fixture {
	char	 base[64];
	char	*keys;		/* base/keys, not created */
};

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof *f);

	snprintf(f->base, sizeof f->base, "/tmp/k8sauth-secret-XXXXXX");
	assert_non_null(mkdtemp(f->base));
	xasprintf(&f->keys, "%s/keys", f->base);
	secret_clear();
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	secret_clear();
	testlib_rm_tree(f->keys);
	assert_int_equal(rmdir(f->base), 0);
	free(f->keys);
	free(f);
	return (0);
}

/* A fresh valid key text. */
static char *
new_key_text(void)
{
	unsigned char	 raw[32];
	char		*b64, *text;

	util_random_bytes(raw, sizeof raw);
	b64 = util_b64url_encode(raw, sizeof raw);
	xasprintf(&text, "%s=", b64);
	free(b64);
	return (text);
}

/* Number of entries in dir other than . and .. */
static int
count_files(const char *dir)
{
	DIR		*d;
	struct dirent	*de;
	int		 n = 0;

	assert_non_null(d = opendir(dir));
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return (n);
}

static void
test_not_loaded(void **state)
{
	char	*cause = NULL;

	assert_int_equal(secret_loaded(), 0);
	assert_null(secret_encrypt(JWT, &cause));
	assert_non_null(cause);
	free(cause);
}

static void
test_setup_idempotent(void **state)
{
	struct fixture	*f = *state;
	struct stat	 sb;
	char		*cause = NULL, *k1, *k2, *path;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_null(cause);
	assert_int_equal(stat(f->keys, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0700);
	xasprintf(&path, "%s/1", f->keys);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	free(path);
	k1 = testlib_read(f->keys, "1");
	assert_int_equal(strlen(k1), 44);
	assert_int_equal(count_files(f->keys), 1);

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	k2 = testlib_read(f->keys, "1");
	assert_string_equal(k1, k2);
	assert_int_equal(count_files(f->keys), 1);
	free(k1);
	free(k2);
}

static void
test_setup_keeps_existing_key(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *text, *back;

	assert_int_equal(util_mkdir_p(f->keys, 0700), 0);
	text = new_key_text();
	testlib_write(f->keys, "5", text, 0600);
	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(count_files(f->keys), 1);
	back = testlib_read(f->keys, "5");
	assert_string_equal(back, text);
	free(back);
	free(text);
}

static void
test_round_trip(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *a, *b, *pt;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	assert_null(cause);
	assert_int_equal(secret_loaded(), 1);
	a = secret_encrypt(JWT, &cause);
	assert_non_null(a);
	assert_int_equal(strncmp(a, "k8s1:1:", 7), 0);
	assert_null(strstr(a, JWT));
	b = secret_encrypt(JWT, &cause);
	assert_string_not_equal(a, b);	/* fresh IV each time */
	pt = secret_decrypt(a, &cause);
	assert_non_null(pt);
	assert_string_equal(pt, JWT);
	freezero_str(pt);
	pt = secret_decrypt(b, &cause);
	assert_string_equal(pt, JWT);
	freezero_str(pt);
	free(a);
	free(b);
	/* The empty string survives too. */
	a = secret_encrypt("", &cause);
	pt = secret_decrypt(a, &cause);
	assert_string_equal(pt, "");
	free(pt);
	free(a);
}

/* Decrypting text must fail with a cause. */
static void
expect_decrypt_error(const char *text, const char *want)
{
	char	*cause = NULL;

	assert_null(secret_decrypt(text, &cause));
	assert_non_null(cause);
	if (want != NULL && strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	free(cause);
}

static void
test_tamper(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *a, *t;
	size_t		 i, len;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	a = secret_encrypt(JWT, &cause);
	len = strlen(a);
	/* Flip every position of the sealed part, one at a time. */
	for (i = 7; i < len - 1; i++) {
		t = xstrdup(a);
		t[i] = t[i] == 'A' ? 'B' : 'A';
		expect_decrypt_error(t, NULL);
		free(t);
	}
	t = xstrndup(a, len - 4);
	expect_decrypt_error(t, NULL);
	free(t);
	expect_decrypt_error("k8s1:1:", "malformed");
	expect_decrypt_error("k8s1:1:AAAA", "malformed");
	expect_decrypt_error("k8s1:1:!!!!", "malformed");
	expect_decrypt_error("garbage", "not an encrypted");
	expect_decrypt_error("k8s2:1:AAAA", "not an encrypted");
	expect_decrypt_error("k8s1:x:AAAA", "not an encrypted");
	expect_decrypt_error("k8s1:01:AAAA", "not an encrypted");
	expect_decrypt_error("", "not an encrypted");
	free(a);
}

static void
test_unknown_key_id(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *a, *t;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	a = secret_encrypt(JWT, &cause);
	xasprintf(&t, "k8s1:9:%s", a + 7);
	expect_decrypt_error(t, "key 9");
	free(t);
	free(a);
}

static void
test_wrong_key(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *a, *text;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	a = secret_encrypt(JWT, &cause);
	/* Same id, different key material. */
	text = new_key_text();
	testlib_write(f->keys, "1", text, 0600);
	free(text);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	expect_decrypt_error(a, "authentication");
	free(a);
}

static void
test_rotation(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *old, *new, *pt, *text, *path;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	old = secret_encrypt(JWT, &cause);
	assert_int_equal(strncmp(old, "k8s1:1:", 7), 0);
	text = new_key_text();
	testlib_write(f->keys, "2", text, 0600);
	free(text);
	/* setup does nothing to a repository that has keys */
	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(count_files(f->keys), 2);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	new = secret_encrypt(JWT, &cause);
	assert_int_equal(strncmp(new, "k8s1:2:", 7), 0);
	pt = secret_decrypt(old, &cause);
	assert_non_null(pt);
	assert_string_equal(pt, JWT);
	free(pt);
	pt = secret_decrypt(new, &cause);
	assert_string_equal(pt, JWT);
	free(pt);
	/* Once key 1 is removed, its ciphertexts are unreadable. */
	xasprintf(&path, "%s/1", f->keys);
	unlink(path);
	free(path);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	expect_decrypt_error(old, "key 1");
	free(old);
	free(new);
}

static void
test_malformed_key(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *text;

	assert_int_equal(secret_setup(f->keys, &cause), 0);
	testlib_write(f->keys, "3", "tooshort", 0600);
	assert_int_equal(secret_load(f->keys, &cause), -1);
	assert_non_null(cause);
	assert_non_null(strstr(cause, "/keys/3"));
	assert_non_null(strstr(cause, "malformed"));
	free(cause);
	cause = NULL;
	assert_int_equal(secret_loaded(), 0);
	/* 44 characters but only 30 bytes of key. */
	text = xstrdup("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA====");
	testlib_write(f->keys, "3", text, 0600);
	free(text);
	assert_int_equal(secret_load(f->keys, &cause), -1);
	assert_non_null(strstr(cause, "/keys/3"));
	free(cause);
}

static void
test_load_errors_and_ignored_files(void **state)
{
	struct fixture	*f = *state;
	char		*cause = NULL, *a, *pt;

	assert_int_equal(secret_load(f->keys, &cause), -1);
	assert_non_null(strstr(cause, f->keys));
	free(cause);
	cause = NULL;
	assert_int_equal(util_mkdir_p(f->keys, 0700), 0);
	testlib_write(f->keys, "README", "not a key", 0600);
	testlib_write(f->keys, "1.bak", "not a key", 0600);
	assert_int_equal(secret_load(f->keys, &cause), -1);
	assert_non_null(strstr(cause, "no key"));
	free(cause);
	cause = NULL;
	/* A failed load keeps the previous keys. */
	assert_int_equal(secret_setup(f->keys, &cause), 0);
	assert_int_equal(secret_load(f->keys, &cause), 0);
	a = secret_encrypt(JWT, &cause);
	testlib_write(f->keys, "7", "bad", 0600);
	assert_int_equal(secret_load(f->keys, &cause), -1);
	free(cause);
	cause = NULL;
	assert_int_equal(secret_loaded(), 1);
	pt = secret_decrypt(a, &cause);
	assert_string_equal(pt, JWT);
	free(pt);
	free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_not_loaded),
		cmocka_unit_test_setup_teardown(test_setup_idempotent, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_setup_keeps_existing_key,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tamper, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_key_id, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_wrong_key, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rotation, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_malformed_key, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(
		    test_load_errors_and_ignored_files, setup, teardown),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
