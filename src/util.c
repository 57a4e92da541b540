/*
 * util.c: small helpers shared by every module.
 *
 * Random ids, Keystone-style timestamps, constant-time compare, number
 * parsing with bounds, whole-file read and atomic write, base64url and
 * SHA-256.  Pure functions or short file I/O; safe from any thread.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "k8sauth.h"

/* Fill buf with cryptographically strong random bytes or die. */
void
util_random_bytes(void *buf, size_t len)
{
	if (len > INT_MAX || RAND_bytes(buf, (int)len) != 1)
		fatalx("RAND_bytes failed");
}

/* A new UUIDv4 in Keystone's simple form: 32 lowercase hex digits. */
void
util_new_id(char out[ID_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char b[16];
	size_t i;

	util_random_bytes(b, sizeof b);
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (i = 0; i < sizeof b; i++) {
		out[i * 2] = hex[b[i] >> 4];
		out[i * 2 + 1] = hex[b[i] & 0xf];
	}
	out[ID_LEN] = '\0';
}

/* Is s exactly 32 lowercase hex digits? */
int
util_is_id(const char *s)
{
	size_t i;

	for (i = 0; i < ID_LEN; i++) {
		if (!((s[i] >= '0' && s[i] <= '9') ||
			(s[i] >= 'a' && s[i] <= 'f')))
			return (0);
	}
	return (s[ID_LEN] == '\0');
}

/* Wall-clock time in seconds with microseconds. */
double
util_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

/* Monotonic microseconds, for durations. */
uint64_t
util_monotonic_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ((uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000);
}

/* v as n decimal digits at p, leading zeros included. */
static void
util_digits(char *p, long v, int n)
{
	while (n-- > 0) {
		p[n] = (char)('0' + v % 10);
		v /= 10;
	}
}

/*
 * Format a broken-down UTC time and microseconds, Keystone style.  Written
 * digit by digit (snprintf was 7 % of a validation's instructions: two
 * timestamps in the document, one on the access line); what that does not
 * cover (a year outside 0-9999) goes through snprintf as before.
 */
static void
util_format_tm(const struct tm *tm, long usec, char out[TIMESTAMP_LEN + 1])
{
	char buf[96];
	long year = (long)tm->tm_year + 1900;

	if (year < 0 || year > 9999 || usec < 0 || usec > 999999) {
		snprintf(buf, sizeof buf,
		    "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm->tm_year + 1900,
		    tm->tm_mon + 1, tm->tm_mday, tm->tm_hour, tm->tm_min,
		    tm->tm_sec, usec);
		memcpy(out, buf, TIMESTAMP_LEN);
		out[TIMESTAMP_LEN] = '\0';
		return;
	}
	memcpy(out, "0000-00-00T00:00:00.000000Z", TIMESTAMP_LEN + 1);
	util_digits(out, year, 4);
	util_digits(out + 5, tm->tm_mon + 1, 2);
	util_digits(out + 8, tm->tm_mday, 2);
	util_digits(out + 11, tm->tm_hour, 2);
	util_digits(out + 14, tm->tm_min, 2);
	util_digits(out + 17, tm->tm_sec, 2);
	util_digits(out + 20, usec, 6);
}

/* Format Unix seconds as 2026-11-28T13:00:00.000000Z. */
void
util_format_time(double t, char out[TIMESTAMP_LEN + 1])
{
	struct tm tm;
	time_t sec = (time_t)t;
	long usec = (long)((t - (double)sec) * 1e6 + 0.5);

	if (usec >= 1000000)
		usec = 999999;
	if (usec < 0)
		usec = 0;
	gmtime_r(&sec, &tm);
	util_format_tm(&tm, usec, out);
}

/* The current time as a Keystone timestamp. */
void
util_timestamp(char out[TIMESTAMP_LEN + 1])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	util_format_tm(&tm, ts.tv_nsec / 1000, out);
}

static pthread_once_t util_sha256_once = PTHREAD_ONCE_INIT;
static EVP_MD *util_sha256_fetched;

/* Fetch SHA-256 once for the process. */
static void
util_sha256_init(void)
{
	if ((util_sha256_fetched = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL)
		fatalx("SHA256 is not available");
}

/*
 * SHA-256, fetched once: EVP_sha256() given to EVP_Digest* makes OpenSSL 3
 * look the algorithm up in its provider store (a lock and a hash-table
 * walk) on every call, which cost as much as hashing a JWT.  A fetched
 * EVP_MD is shareable between threads.
 */
const EVP_MD *
util_sha256_md(void)
{
	pthread_once(&util_sha256_once, util_sha256_init);
	return (util_sha256_fetched);
}

/*
 * Compare the presented bytes a[0..alen) with the stored secret b[0..blen)
 * in time that depends on alen only: neither where they differ nor the
 * secret's length shows.  Every presented byte is compared with the
 * secret's byte at the same place, or with b[0] past the secret's end (the
 * lengths differ then, so the answer is no); the index is masked, not
 * branched on.  It hashed both sides with SHA-256 before, four digests per
 * validation (admin token and subject token) and ~12 % of its instructions.
 */
int
util_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	const unsigned char *pa = a, *pb = b;
	unsigned char acc = 0;
	size_t i, in;

	if (blen == 0)
		return (alen == 0);
	for (i = 0; i < alen; i++) {
		/* All ones while i < blen (the top bit of i - blen), else 0. */
		in =
		    (size_t)0 - ((i - blen) >> (sizeof(size_t) * CHAR_BIT - 1));
		acc |= pa[i] ^ pb[i & in];
	}
	return ((acc | (unsigned char)(alen != blen)) == 0);
}

/* Parse a decimal integer within [min, max]; 0 or -1. */
int
util_parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (s == NULL || *s == '\0')
		return (-1);
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return (-1);
	*out = v;
	return (0);
}

/*
 * Read a whole regular file of at most max bytes, NUL-terminated.
 * Returns 0, or -1 with *cause set.
 */
int
util_read_file(const char *path, size_t max, char **out, size_t *outlen,
    char **cause)
{
	struct stat st;
	char *buf = NULL;
	size_t have = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		return (-1);
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		xasprintf(cause, "%s: not a regular file", path);
		goto fail;
	}
	if ((size_t)st.st_size > max) {
		xasprintf(cause, "%s: larger than %zu bytes", path, max);
		goto fail;
	}
	buf = xmalloc(max + 1);
	for (;;) {
		n = read(fd, buf + have, max + 1 - have);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			xasprintf(cause, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		have += (size_t)n;
		if (have > max) {
			xasprintf(cause, "%s: larger than %zu bytes", path,
			    max);
			goto fail;
		}
	}
	close(fd);
	buf[have] = '\0';
	*out = buf;
	if (outlen != NULL)
		*outlen = have;
	return (0);
fail:
	if (buf != NULL) {
		explicit_bzero(buf, max + 1);
		free(buf);
	}
	close(fd);
	return (-1);
}

/* fsync the directory holding path, so a rename in it is durable. */
static int
util_fsync_dir(const char *path)
{
	char *copy, *slash;
	int fd, rc;

	copy = xstrdup(path);
	if ((slash = strrchr(copy, '/')) == NULL) {
		free(copy);
		copy = xstrdup(".");
	} else if (slash == copy)
		slash[1] = '\0';
	else
		*slash = '\0';
	fd = open(copy, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(copy);
	if (fd == -1)
		return (-1);
	rc = fsync(fd);
	close(fd);
	return (rc);
}

/*
 * Write a file atomically: a private temporary file beside it, fsync,
 * rename, fsync of the directory.
 */
int
util_write_file_atomic(const char *path, const void *data, size_t len,
    mode_t mode, char **cause)
{
	char *tmp;
	const char *p = data;
	ssize_t n;
	int fd;

	xasprintf(&tmp, "%s.tmp.XXXXXX", path);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		free(tmp);
		return (-1);
	}
	if (fchmod(fd, mode) == -1) {
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			xasprintf(cause, "%s: %s", tmp, strerror(errno));
			goto fail;
		}
		p += n;
		len -= (size_t)n;
	}
	if (fsync(fd) == -1 || close(fd) == -1) {
		fd = -1;
		xasprintf(cause, "%s: %s", tmp, strerror(errno));
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) == -1) {
		xasprintf(cause, "%s: %s", path, strerror(errno));
		goto fail;
	}
	if (util_fsync_dir(path) == -1)
		log_warn("fsync of the directory of %s: %s", path,
		    strerror(errno));
	free(tmp);
	return (0);
fail:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	free(tmp);
	return (-1);
}

/* mkdir -p with a mode for the directories it creates. */
int
util_mkdir_p(const char *path, mode_t mode)
{
	char *copy, *p;
	int rc = 0;

	copy = xstrdup(path);
	for (p = copy + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, mode) == -1 && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	if (rc == 0 && mkdir(copy, mode) == -1 && errno != EEXIST)
		rc = -1;
	free(copy);
	return (rc);
}

/* urlsafe base64 without padding. */
char *
util_b64url_encode(const void *data, size_t len)
{
	static const char tab[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	const unsigned char *in = data;
	char *out, *o;
	size_t i;
	uint32_t v;

	o = out = xmalloc((len + 2) / 3 * 4 + 1);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 |
		    in[i + 2];
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
		*o++ = tab[v & 63];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		*o++ = tab[(v >> 18) & 63];
		*o++ = tab[(v >> 12) & 63];
		*o++ = tab[(v >> 6) & 63];
	}
	*o = '\0';
	return (out);
}

/*
 * Value + 1 of each base64url character, 0 for any other byte: one load per
 * character instead of five range tests (util_b64url_decode ran ~3 % of a
 * cached login's CPU: JWT parts and Fernet tokens).
 */
static const unsigned char util_b64_table[256] = {
	['A'] = 1,
	['B'] = 2,
	['C'] = 3,
	['D'] = 4,
	['E'] = 5,
	['F'] = 6,
	['G'] = 7,
	['H'] = 8,
	['I'] = 9,
	['J'] = 10,
	['K'] = 11,
	['L'] = 12,
	['M'] = 13,
	['N'] = 14,
	['O'] = 15,
	['P'] = 16,
	['Q'] = 17,
	['R'] = 18,
	['S'] = 19,
	['T'] = 20,
	['U'] = 21,
	['V'] = 22,
	['W'] = 23,
	['X'] = 24,
	['Y'] = 25,
	['Z'] = 26,
	['a'] = 27,
	['b'] = 28,
	['c'] = 29,
	['d'] = 30,
	['e'] = 31,
	['f'] = 32,
	['g'] = 33,
	['h'] = 34,
	['i'] = 35,
	['j'] = 36,
	['k'] = 37,
	['l'] = 38,
	['m'] = 39,
	['n'] = 40,
	['o'] = 41,
	['p'] = 42,
	['q'] = 43,
	['r'] = 44,
	['s'] = 45,
	['t'] = 46,
	['u'] = 47,
	['v'] = 48,
	['w'] = 49,
	['x'] = 50,
	['y'] = 51,
	['z'] = 52,
	['0'] = 53,
	['1'] = 54,
	['2'] = 55,
	['3'] = 56,
	['4'] = 57,
	['5'] = 58,
	['6'] = 59,
	['7'] = 60,
	['8'] = 61,
	['9'] = 62,
	['-'] = 63,
	['_'] = 64,
};

/* How many of the first len bytes of s are base64url characters. */
size_t
util_b64url_span(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len && util_b64_table[(unsigned char)s[i]] != 0; i++)
		;
	return (i);
}

/*
 * Decode base64url, padded or not.  Strict: only the urlsafe alphabet, at
 * most the padding the length needs, and no stray bits in the last
 * character.  Returns 0, or -1 on any invalid input.
 */
int
util_b64url_decode(const char *s, size_t len, unsigned char **out,
    size_t *outlen)
{
	const unsigned char *u = (const unsigned char *)s;
	const unsigned char *t = util_b64_table;
	unsigned char *buf;
	uint32_t acc = 0;
	size_t i, n = 0, bits = 0, pad = 0;

	while (len > 0 && s[len - 1] == '=') {
		len--;
		pad++;
	}
	if (len % 4 == 1 || pad > 2 || (pad > 0 && (len + pad) % 4 != 0))
		return (-1);
	buf = xmalloc(len / 4 * 3 + 3);
	/* Whole groups: four characters, three bytes. */
	for (i = 0; i + 4 <= len; i += 4) {
		if (t[u[i]] == 0 || t[u[i + 1]] == 0 || t[u[i + 2]] == 0 ||
		    t[u[i + 3]] == 0)
			goto fail;
		acc = (uint32_t)(t[u[i]] - 1) << 18 |
		    (uint32_t)(t[u[i + 1]] - 1) << 12 |
		    (uint32_t)(t[u[i + 2]] - 1) << 6 |
		    (uint32_t)(t[u[i + 3]] - 1);
		buf[n++] = (unsigned char)(acc >> 16);
		buf[n++] = (unsigned char)(acc >> 8);
		buf[n++] = (unsigned char)acc;
	}
	/* The last 2 or 3 characters, bit by bit. */
	for (acc = 0; i < len; i++) {
		if (t[u[i]] == 0)
			goto fail;
		acc = (acc << 6) | (uint32_t)(t[u[i]] - 1);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (unsigned char)(acc >> bits);
		}
	}
	if ((acc & ((1U << bits) - 1)) != 0)
		goto fail;
	*out = buf;
	*outlen = n;
	return (0);
fail:
	free(buf);
	return (-1);
}

/* SHA-256 of data into out, with the digest fetched once. */
void
util_sha256(const void *data, size_t len, unsigned char out[32])
{
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, out, &mdlen, util_sha256_md(), NULL) != 1 ||
	    mdlen != 32)
		fatalx("EVP_Digest failed");
}

/* n bytes as 2n lowercase hex digits and a NUL. */
void
util_hex(const unsigned char *b, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[i * 2] = hex[b[i] >> 4];
		out[i * 2 + 1] = hex[b[i] & 0xf];
	}
	out[n * 2] = '\0';
}

/* SHA-256 as 64 lowercase hex digits. */
void
util_sha256_hex(const void *data, size_t len, char out[65])
{
	unsigned char md[32];

	util_sha256(data, len, md);
	util_hex(md, sizeof md, out);
}

/* Strip leading and trailing white space in place. */
char *
util_trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	end = s + strlen(s);
	while (end > s &&
	    (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' ||
		end[-1] == '\r'))
		end--;
	*end = '\0';
	return (s);
}

/* Free the strings of a list and empty it. */
void
strlist_free(struct strlist *l)
{
	size_t i;

	if (l == NULL)
		return;
	for (i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* Deep-copy src into dst (dst's old contents are not freed). */
void
strlist_copy(struct strlist *dst, const struct strlist *src)
{
	size_t i;

	dst->n = src->n;
	dst->v = NULL;
	if (src->n == 0)
		return;
	dst->v = xcalloc(src->n, sizeof *dst->v);
	for (i = 0; i < src->n; i++)
		dst->v[i] = xstrdup(src->v[i]);
}
