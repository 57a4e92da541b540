/*
 * fuzz_selector.c: libFuzzer target for k8s_selector.c, the parser and
 * matcher of a role's bound_namespace_selector (a Kubernetes
 * LabelSelector as JSON).
 *
 * The input is split at the first NUL: before it the selector, after it
 * a namespace's metadata.labels, both JSON as a role write and a cluster
 * would hand them over.  Asserted: k8s_selector_check returns 0 with no
 * cause or -1 with a cause naming bound_namespace_selector (or a member
 * of it); a selector
 * that fails the check never matches; a checked selector's match is
 * deterministic and every key and value it accepted is valid.  Any crash,
 * leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_selector); run: `sh
 * tests/run.sh fuzz`, or ./tests/fuzz/build/fuzz_selector
 * -max_total_time=60 tests/tmp/fuzz-selector tests/fuzz/corpus/selector
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Every matchLabels key and value of a checked selector is valid. */
static void
fuzz_labels_valid(const cJSON *sel)
{
	const cJSON *it;

	cJSON_ArrayForEach(it,
	    cJSON_GetObjectItemCaseSensitive(sel, "matchLabels"))
	{
		if (!k8s_selector_key_valid(it->string) ||
		    !cJSON_IsString(it) ||
		    !k8s_selector_value_valid(it->valuestring))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t slen = nul != NULL ? (size_t)(nul - data) : size;
	cJSON *sel, *labels = NULL;
	char *cause = NULL;
	int rc, m;

	if ((sel = json_parse((const char *)data, slen, &cause)) == NULL) {
		free(cause);
		return (0);
	}
	if (nul != NULL)
		labels =
		    json_parse((const char *)nul + 1, size - slen - 1, NULL);
	rc = k8s_selector_check(sel, &cause);
	if (rc == 0 && cause != NULL)
		abort();
	if (rc != 0 &&
	    (rc != -1 || cause == NULL ||
		strstr(cause, "bound_namespace_selector") == NULL))
		abort();
	free(cause);
	m = k8s_selector_match(sel, labels);
	if (rc != 0 && m)
		abort();
	if (rc == 0) {
		fuzz_labels_valid(sel);
		if (k8s_selector_match(sel, labels) != m)
			abort();
	}
	cJSON_Delete(labels);
	cJSON_Delete(sel);
	return (0);
}
