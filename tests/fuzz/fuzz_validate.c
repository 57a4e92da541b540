/*
 * fuzz_validate.c: libFuzzer target for the admin object validators of
 * validate.c: validate_host (an instance's API server URL), validate_pem
 * (its CA bundle, parsed by OpenSSL), validate_role_name and
 * validate_globs (bound service accounts, namespaces, pods).
 *
 * The first byte chooses the validator (and, for the host, whether http
 * is allowed); the rest is the field's text, NUL-terminated here as cJSON
 * would hand it over.  For globs the text is split on newlines into a
 * list.  Asserted: -1 always comes with a cause naming the field, 0 never
 * leaves one; an accepted host has no space, query or fragment and
 * starts with http (any case: schemes are case-insensitive); an
 * accepted role name is 1..255 bytes.  Any crash, leak or sanitizer
 * report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_validate); run: `sh
 * tests/run.sh fuzz`, or ./tests/fuzz/build/fuzz_validate
 * -max_total_time=60 tests/tmp/fuzz-validate tests/fuzz/corpus/validate
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "k8sauth.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* -1 must carry a cause that starts with want; 0 must carry none. */
static void
fuzz_check(int rc, char *cause, const char *want)
{
	if (rc == 0) {
		if (cause != NULL)
			abort();
		return;
	}
	if (rc != -1 || cause == NULL || strncmp(cause, want,
	    strlen(want)) != 0)
		abort();
	free(cause);
}

/* Split text on newlines into a list and validate it as globs. */
static void
fuzz_globs(char *text)
{
	struct strlist	 sl = { NULL, 0 };
	char		*p, *nl, *cause = NULL;

	for (p = text;; p = nl + 1) {
		sl.v = xreallocarray(sl.v, sl.n + 1, sizeof *sl.v);
		sl.v[sl.n++] = p;
		if ((nl = strchr(p, '\n')) == NULL)
			break;
		*nl = '\0';
	}
	fuzz_check(validate_globs("bound_pods", &sl, &cause), cause,
	    "bound_pods[");
	free(sl.v);
}

/* One input: a selector byte and a field value. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	*text, *cause = NULL;
	int	 rc;

	if (size == 0 || size > 128 * 1024)
		return (0);
	text = xstrndup((const char *)data + 1, size - 1);
	switch (data[0] & 7) {
	case 0:
	case 1:
		rc = validate_host(text, data[0] & 1, &cause);
		fuzz_check(rc, cause, "host ");
		if (rc == 0 && (strpbrk(text, " ?#\t\r\n") != NULL ||
		    strncasecmp(text, "http", 4) != 0))
			abort();
		break;
	case 2:
	case 3:
		fuzz_check(validate_pem(text, &cause), cause, "ca_cert ");
		break;
	case 4:
	case 5:
		rc = validate_role_name(text, &cause);
		fuzz_check(rc, cause, "name ");
		if (rc == 0 && (strlen(text) == 0 || strlen(text) > 255))
			abort();
		break;
	default:
		fuzz_globs(text);
		break;
	}
	free(text);
	return (0);
}
