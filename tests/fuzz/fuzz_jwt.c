/*
 * fuzz_jwt.c: libFuzzer target for jwt_parse() (and the accessors on what it
 * returns).
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_jwt, clang with the sources
 * rebuilt in tests/fuzz/build/); run every target from its seeds with
 * `sh tests/run.sh fuzz`, or this one by hand (-max_len above the 16 KiB
 * limit also exercises the size check):
 *
 *	./tests/fuzz/build/fuzz_jwt -max_len=20000 -timeout=5 \
 *	    tests/tmp/fuzz-jwt tests/fuzz/corpus/jwt
 *
 * The first bytes of the input choose nothing: the whole input is the token,
 * parsed with the production limit of 16384 bytes.  Any crash, leak or
 * sanitizer report is a bug.  A successful parse must yield a namespace and a
 * service-account name, which the target asserts.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jwt	*jwt = NULL;
	char		*cause = NULL;
	char		*copy;
	struct strlist	 pats;
	char		*v[1] = { "*" };

	/* jwt_parse is length-bounded; a copy catches reads past size. */
	copy = malloc(size ? size : 1);
	if (copy == NULL)
		return (0);
	memcpy(copy, data, size);
	if (jwt_parse(copy, size, 16384, &jwt, &cause) == 0) {
		if (jwt->namespace == NULL || jwt->sa_name == NULL ||
		    cause != NULL)
			abort();
		(void)jwt_has_audience(jwt, "vault");
		pats.v = v;
		pats.n = 1;
		if (!glob_match_any(&pats, jwt->sa_name))
			abort();
		jwt_free(jwt);
	} else if (cause == NULL || jwt != NULL)
		abort();
	free(cause);
	free(copy);
	return (0);
}
