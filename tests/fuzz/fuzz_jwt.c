/*
 * fuzz_jwt.c: libFuzzer target for jwt_parse() (and the accessors on what it
 * returns).  Not built by the Makefile.
 *
 * Build (clang, from the top of the tree after ./configure; util.c needs
 * the generated src/embed.c, so run `make src/embed.c` first):
 *
 *	clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -I. \
 *	    -include config.h -I/usr/include/cjson -D_GNU_SOURCE \
 *	    -o fuzz_jwt tests/fuzz/fuzz_jwt.c src/jwt.c src/util.c \
 *	    src/xmalloc.c src/log.c src/embed.c -lcjson -lcrypto -lm
 *
 * Run (a corpus directory is optional; -max_len above the 16 KiB default
 * limit also exercises the size check):
 *
 *	mkdir -p tests/fuzz/corpus_jwt
 *	./fuzz_jwt -max_len=20000 -timeout=5 tests/fuzz/corpus_jwt
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
