/*
 * test_util.c: util_ct_equal, the constant-time compare that guards the
 * admin token (auth.c) and the subject-token check (api_token.c).  What it
 * must answer: equal for the same bytes only, never for a prefix or a
 * different length, the whole length compared (a NUL is a byte like any
 * other, not an end), and empty equals only empty.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "k8sauth.h"

#define ADMIN "0123456789abcdef0123456789abcdef"

/* Equal: the same bytes, also from different buffers. */
static void
test_ct_equal_same(void **state)
{
	char	copy[sizeof ADMIN];

	memcpy(copy, ADMIN, sizeof ADMIN);
	assert_true(util_ct_equal(ADMIN, strlen(ADMIN), copy, strlen(copy)));
	assert_true(util_ct_equal("x", 1, "x", 1));
}

/* Different bytes of the same length, wherever they differ. */
static void
test_ct_equal_different(void **state)
{
	char	 other[sizeof ADMIN];
	size_t	 len = strlen(ADMIN), i;

	for (i = 0; i < len; i++) {
		memcpy(other, ADMIN, sizeof ADMIN);
		other[i] ^= 0x01;
		assert_false(util_ct_equal(ADMIN, len, other, len));
		assert_false(util_ct_equal(other, len, ADMIN, len));
	}
	assert_false(util_ct_equal("a", 1, "b", 1));
}

/* Different lengths: a prefix, an extension, never equal. */
static void
test_ct_equal_lengths(void **state)
{
	size_t	len = strlen(ADMIN);

	assert_false(util_ct_equal(ADMIN, len, ADMIN, len - 1));
	assert_false(util_ct_equal(ADMIN, len - 1, ADMIN, len));
	assert_false(util_ct_equal(ADMIN, len, ADMIN "0", len + 1));
	assert_false(util_ct_equal("a", 1, "a", 0));
	/* Past the secret's end the presented bytes meet b[0]: still no. */
	assert_false(util_ct_equal("aaaa", 4, "a", 1));
	assert_false(util_ct_equal("a", 1, "aaaa", 4));
	assert_false(util_ct_equal(ADMIN "0", len + 1, ADMIN, len));
	/* Only the given lengths count, not what follows. */
	assert_true(util_ct_equal("ab", 1, "ax", 1));
}

/* Empty equals empty and nothing else. */
static void
test_ct_equal_empty(void **state)
{
	assert_true(util_ct_equal("", 0, "", 0));
	assert_true(util_ct_equal("abc", 0, "xyz", 0));
	assert_false(util_ct_equal("", 0, "a", 1));
	assert_false(util_ct_equal("a", 1, "", 0));
	assert_false(util_ct_equal("", 0, "\0", 1));
}

/* A NUL does not end the comparison: bytes after it still count. */
static void
test_ct_equal_past_nul(void **state)
{
	static const char a[] = "secret\0tail-A";
	static const char b[] = "secret\0tail-B";
	static const char c[] = "secret\0tail-A";

	assert_false(util_ct_equal(a, sizeof a - 1, b, sizeof b - 1));
	assert_true(util_ct_equal(a, sizeof a - 1, c, sizeof c - 1));
	assert_false(util_ct_equal("\0a", 2, "\0b", 2));
	assert_false(util_ct_equal("secret", 6, a, sizeof a - 1));
}

/* The value of a base64url character by its place in the alphabet. */
static int
b64_ref(int c)
{
	static const char alphabet[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const char *p;

	if (c == 0 || (p = strchr(alphabet, c)) == NULL)
		return (-1);
	return ((int)(p - alphabet));
}

/* Every byte value, in every place of a group: only the alphabet decodes. */
static void
test_b64url_every_byte(void **state)
{
	unsigned char *out;
	size_t outlen, pos;
	char in[5];
	int c, v;

	for (c = 0; c < 256; c++) {
		for (pos = 0; pos < 4; pos++) {
			memcpy(in, "AAAA", 5);
			in[pos] = (char)c;
			out = NULL;
			v = b64_ref(c);
			if (c == '=' && pos == 3)
				continue; /* padding: the round trip's */
			if (v < 0) {
				assert_int_equal(util_b64url_decode(in, 4,
				    &out, &outlen), -1);
				continue;
			}
			assert_int_equal(util_b64url_decode(in, 4, &out,
			    &outlen), 0);
			assert_int_equal(outlen, 3);
			/* the 24 bits of the group, v at its 6 */
			assert_int_equal((unsigned)out[0] << 16 |
			    (unsigned)out[1] << 8 | out[2],
			    (unsigned)v << (6 * (3 - pos)));
			free(out);
		}
	}
}

/* Encode then decode; stray bits, bad lengths and padding are refused. */
static void
test_b64url_round_trip(void **state)
{
	unsigned char data[64], *out;
	size_t len, outlen;
	char *text;

	for (len = 0; len < sizeof data; len++) {
		util_random_bytes(data, len);
		text = util_b64url_encode(data, len);
		assert_int_equal(util_b64url_decode(text, strlen(text), &out,
		    &outlen), 0);
		assert_int_equal(outlen, len);
		assert_memory_equal(out, data, len);
		free(out);
		free(text);
	}
	assert_int_equal(util_b64url_decode("AB", 2, &out, &outlen), -1);
	assert_int_equal(util_b64url_decode("AQ", 2, &out, &outlen), 0);
	free(out);
	assert_int_equal(util_b64url_decode("AQ==", 4, &out, &outlen), 0);
	free(out);
	assert_int_equal(util_b64url_decode("AQ=", 3, &out, &outlen), -1);
	assert_int_equal(util_b64url_decode("AQ===", 5, &out, &outlen), -1);
	assert_int_equal(util_b64url_decode("AAAAA", 5, &out, &outlen), -1);
	assert_int_equal(util_b64url_decode("AA+A", 4, &out, &outlen), -1);
	assert_int_equal(util_b64url_decode("AA/A", 4, &out, &outlen), -1);
}

/* SHA-256 through the fetched digest: the FIPS 180-2 "abc" vector. */
static void
test_sha256_hex(void **state)
{
	unsigned char md[32];
	char hex[65], id[9], logid[9];

	util_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
	    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	/* The login's JWT id: the first 4 bytes of the digest, as log.c's. */
	util_sha256("abc", 3, md);
	util_hex(md, 4, id);
	log_secret_id("abc", logid);
	assert_string_equal(id, "ba7816bf");
	assert_string_equal(id, logid);
}

/* util_format_time against gmtime_r and snprintf over years 1970-9999. */
static void
test_format_time(void **state)
{
	char got[TIMESTAMP_LEN + 1], want[96];
	struct tm tm;
	time_t sec;
	double t;
	long usec;
	int i;

	for (i = 0; i < 20000; i++) {
		if (i == 0)
			t = 0;
		else if (i == 1)
			t = 253402300799.9999996; /* rounds to 999999 us */
		else if (i == 2)
			t = 1764334800.5;
		else
			t = (double)((uint64_t)random() * 7919 % 253402300800ULL) +
			    (double)(random() % 1000000) / 1e6;
		util_format_time(t, got);
		sec = (time_t)t;
		usec = (long)((t - (double)sec) * 1e6 + 0.5);
		if (usec >= 1000000)
			usec = 999999;
		gmtime_r(&sec, &tm);
		snprintf(want, sizeof want,
		    "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
		    tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
		    usec);
		want[TIMESTAMP_LEN] = '\0';
		assert_string_equal(got, want);
	}
	util_format_time(1764334800.25, got);
	assert_string_equal(got, "2025-11-28T13:00:00.250000Z");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ct_equal_same),
		cmocka_unit_test(test_ct_equal_different),
		cmocka_unit_test(test_ct_equal_lengths),
		cmocka_unit_test(test_ct_equal_empty),
		cmocka_unit_test(test_ct_equal_past_nul),
		cmocka_unit_test(test_b64url_every_byte),
		cmocka_unit_test(test_b64url_round_trip),
		cmocka_unit_test(test_sha256_hex),
		cmocka_unit_test(test_format_time),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
