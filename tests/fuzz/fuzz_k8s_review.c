/*
 * fuzz_k8s_review.c: libFuzzer target for k8s_review_parse, which turns
 * the cluster's answer to a TokenReview (HTTP status and body) into a
 * login outcome.  The body comes from the Kubernetes API server of an
 * instance, which an admin configured but which may be hostile or broken.
 *
 * The first byte picks the HTTP status (mostly 200/201 so the body is
 * read); the rest is the body.  Asserted: an authenticated outcome has a
 * namespace and name that rebuild the username, a failed one has an HTTP
 * status, a reason and a message.  Any crash, leak or sanitizer report is
 * a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_k8s_review); run: `sh
 * tests/run.sh fuzz`, or ./tests/fuzz/build/fuzz_k8s_review
 * -max_total_time=60 tests/tmp/fuzz-k8s tests/fuzz/corpus/k8s_review
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Log errors only (a refused review is logged at info). */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	return (0);
}

/* One input: a status selector and a body. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 200, 201, 200, 201, 200, 201, 401,
		403, 429, 500, 503, 404, 302, 0, 199, 599 };
	struct k8s_review_outcome	 o;
	char				*body, *user;

	if (size == 0)
		return (0);
	/* Exactly the body's bytes, so a read past them is caught. */
	body = xmalloc(size - 1 ? size - 1 : 1);
	memcpy(body, data + 1, size - 1);
	k8s_review_parse(statuses[data[0] & 15], body, size - 1, &o);
	if (o.reason == REASON_NONE) {
		if (o.namespace == NULL || o.name == NULL || o.username == NULL)
			abort();
		xasprintf(&user, "system:serviceaccount:%s:%s", o.namespace,
		    o.name);
		if (strcmp(user, o.username) != 0)
			abort();
		free(user);
	} else if (reason_status(o.reason) < 400 ||
	    reason_status(o.reason) > 599 || o.message == NULL)
		abort();
	k8s_review_outcome_clear(&o);
	free(body);
	return (0);
}
