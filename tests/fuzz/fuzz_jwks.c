/*
 * fuzz_jwks.c: libFuzzer target for jwks_parse() and jwks_verify().
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_jwks); run every target from
 * its seeds with `sh tests/run.sh fuzz`, or this one by hand:
 *
 *	./tests/fuzz/build/fuzz_jwks -max_len=8192 -timeout=5 \
 *	    tests/tmp/fuzz-jwks tests/fuzz/corpus/jwks
 *
 * The input is a JWKS document, parsed strictly and leniently (the two
 * must agree that a strict success is a lenient success).  Every parsed
 * set is then asked to verify a fixed, wrong signature under RS256,
 * ES256 and HS256 with and without a kid: none may verify.  Any crash,
 * leak or sanitizer report is a bug.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* No signature below may verify with any key. */
static void
fuzz_jwks_verify(const struct jwks_set *set)
{
	static const char *const algs[] = { "RS256", "ES256", "HS256" };
	static const char input[] = "eyJhbGciOiJSUzI1NiJ9.e30";
	unsigned char sig[256];
	size_t i, n;

	memset(sig, 0x5a, sizeof sig);
	for (i = 0; i < 3; i++) {
		for (n = 0; n <= sizeof sig; n += 64) {
			if (jwks_verify(set, algs[i], NULL, input,
			    sizeof input - 1, sig, n) == JWKS_OK ||
			    jwks_verify(set, algs[i], "k", input,
			    sizeof input - 1, sig, n) == JWKS_OK)
				abort();
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwks_set	*strict, *lenient;
	char		*copy, *cause = NULL;

	/* jwks_parse is length-bounded; a copy catches reads past size. */
	if ((copy = malloc(size ? size : 1)) == NULL)
		return (0);
	memcpy(copy, data, size);
	strict = jwks_parse(copy, size, 1, &cause);
	free(cause);
	cause = NULL;
	lenient = jwks_parse(copy, size, 0, &cause);
	free(cause);
	if (strict != NULL && lenient == NULL)
		abort();
	if (lenient != NULL) {
		if (jwks_set_count(lenient) == 0)
			abort();
		fuzz_jwks_verify(lenient);
	}
	jwks_set_unref(strict);
	jwks_set_unref(lenient);
	free(copy);
	return (0);
}
