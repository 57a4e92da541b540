/*
 * fuzz_forwarded_for.c: libFuzzer target for the client address behind
 * trusted proxies (throttle.c): throttle_cidrs_parse ([server]
 * trusted_proxies), throttle_addr_parse (a peer or an X-Forwarded-For
 * entry) and throttle_forwarded_for (the walk from the right).
 *
 * The input is three parts separated by newlines: the trusted_proxies
 * text, the peer address, the X-Forwarded-For value (NULs cut a part
 * short, as a header would be).
 *
 * Asserted: a list parses or gives a cause, never both; an address that
 * parses formats back to text that parses to the same 16 bytes; the
 * walk leaves an untrusted peer alone, and a changed address is one that
 * parses from the header; an IPv6 bucket key has its interface half
 * zero.  Any crash, leak or sanitizer report is a bug.
 *
 * Build: `make fuzz`; run: `sh tests/run.sh fuzz`, or by hand:
 *
 *	./tests/fuzz/build/fuzz_forwarded_for -max_total_time=60 \
 *	    tests/tmp/fuzz-forwarded-for tests/fuzz/corpus/forwarded_for
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int LLVMFuzzerInitialize(int *, char ***);
int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Log errors only. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	return (0);
}

/* The next newline-terminated part of the input (allocated). */
static char *
fuzz_part(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = *p;
	char *s;

	while (nl < end && *nl != '\n')
		nl++;
	s = xstrndup((const char *)*p, (size_t)(nl - *p));
	*p = nl < end ? nl + 1 : end;
	return (s);
}

/* A parsed address formats back to itself. */
static void
fuzz_roundtrip(const unsigned char a[16])
{
	unsigned char b[16];
	char text[64];

	throttle_addr_format(a, text, sizeof text);
	if (throttle_addr_parse(text, b) != 0 || memcmp(a, b, 16) != 0)
		abort();
}

/* The walk: an untrusted peer stays, a changed address came from xff. */
static void
fuzz_walk(const struct throttle_cidrs *l, const char *peer, const char *xff)
{
	struct throttle_key key;
	static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0,
		0, 0xff, 0xff };
	static const unsigned char zero[8];
	unsigned char a[16], before[16];
	int changed;

	if (throttle_addr_parse(peer, a) != 0)
		return;
	fuzz_roundtrip(a);
	memcpy(before, a, 16);
	changed = throttle_forwarded_for(l, xff, a);
	if (!throttle_cidrs_match(l, before) && (changed ||
	    memcmp(a, before, 16) != 0))
		abort();
	if (changed) {
		fuzz_roundtrip(a);
		if (xff == NULL || *xff == '\0')
			abort();
	}
	throttle_key_of(a, &key);
	if (memcmp(a, key.b, 8) != 0)
		abort();
	if (memcmp(a, v4mapped, 12) == 0 ? memcmp(a, key.b, 16) != 0
					 : memcmp(key.b + 8, zero, 8) != 0)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	struct throttle_cidrs *l;
	char *list, *peer, *xff, *cause = NULL;

	list = fuzz_part(&p, end);
	peer = fuzz_part(&p, end);
	xff = fuzz_part(&p, end);
	l = throttle_cidrs_parse(list, &cause);
	if ((l == NULL) == (cause == NULL))
		abort();
	if (l != NULL)
		fuzz_walk(l, peer, xff);
	throttle_cidrs_free(l);
	free(cause);
	free(list);
	free(peer);
	free(xff);
	return (0);
}
