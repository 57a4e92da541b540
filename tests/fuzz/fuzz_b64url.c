/*
 * fuzz_b64url.c: libFuzzer target for util_b64url_decode, the strict
 * base64url decoder used on JWT segments, Fernet tokens and keys.
 *
 * The first byte chooses the direction:
 *   even: the rest is text to decode; when it decodes, encoding the
 *         bytes again and decoding that must give the same bytes, and the
 *         re-encoding must equal the input without its '=' padding
 *         (the decoder is strict: no trailing bits, so one text per value);
 *   odd:  the rest is bytes; encode then decode must give them back.
 * Any crash, leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_b64url); run: `sh tests/run.sh
 * fuzz`, or ./tests/fuzz/build/fuzz_b64url -max_total_time=60
 * tests/tmp/fuzz-b64 tests/fuzz/corpus/b64url
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Decode s (len bytes) and compare with want. */
static void
fuzz_roundtrip(const char *s, const unsigned char *want, size_t wantlen)
{
	unsigned char	*out;
	size_t		 outlen;

	if (util_b64url_decode(s, strlen(s), &out, &outlen) != 0)
		abort();
	if (outlen != wantlen || (wantlen && memcmp(out, want, wantlen)))
		abort();
	free(out);
}

/* One input. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char	*out;
	size_t		 outlen, n;
	char		*text, *enc;

	if (size == 0)
		return (0);
	if (data[0] & 1) {
		enc = util_b64url_encode(data + 1, size - 1);
		fuzz_roundtrip(enc, data + 1, size - 1);
		free(enc);
		return (0);
	}
	/* Exactly size - 1 bytes: a read past them is caught. */
	text = xmalloc(size - 1 ? size - 1 : 1);
	memcpy(text, data + 1, size - 1);
	if (util_b64url_decode(text, size - 1, &out, &outlen) == 0) {
		enc = util_b64url_encode(out, outlen);
		fuzz_roundtrip(enc, out, outlen);
		for (n = size - 1; n > 0 && text[n - 1] == '='; n--)
			;
		if (strlen(enc) != n || memcmp(enc, text, n) != 0)
			abort();
		free(enc);
		free(out);
	}
	free(text);
	return (0);
}
