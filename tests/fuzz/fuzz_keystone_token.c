/*
 * fuzz_keystone_token.c: libFuzzer target for keystone_token_parse, which
 * turns the "token" object of Keystone's GET /v3/auth/tokens answer into
 * an admin caller (user, scope, roles, expiry), and keystone_token_slim,
 * which keeps what the cache stores.  The answer comes over the network
 * from the configured Keystone.
 *
 * The whole input is the answer body, parsed with json_parse as
 * keystone.c does; its "token" member goes to the parser.  Asserted: a
 * parsed caller has a user id, is a Keystone caller, and is_admin exactly
 * when a role is named "admin"; a refusal comes with a cause and leaves
 * nothing allocated; the slim copy parses to the same caller.  Any crash,
 * leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_keystone_token); run: `sh
 * tests/run.sh fuzz`, or ./tests/fuzz/build/fuzz_keystone_token
 * -max_total_time=60 tests/tmp/fuzz-ks tests/fuzz/corpus/keystone_token
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* Log errors only. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	return (0);
}

/* Same string or both NULL. */
static int
fuzz_same(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a == b);
	return (strcmp(a, b) == 0);
}

/* The caller parsed from the slim copy must equal the first one. */
static void
fuzz_check_slim(const cJSON *tok, const struct caller *c, double expires)
{
	struct caller	 c2;
	cJSON		*slim;
	double		 e2;
	char		*cause = NULL;
	size_t		 i;

	slim = keystone_token_slim(tok);
	if (keystone_token_parse(slim, &c2, &e2, &cause) != 0)
		abort();
	if (e2 != expires || c2.is_admin != c->is_admin ||
	    c2.system != c->system || c2.roles.n != c->roles.n ||
	    !fuzz_same(c2.user_id, c->user_id) ||
	    !fuzz_same(c2.user_domain_id, c->user_domain_id) ||
	    !fuzz_same(c2.project_id, c->project_id) ||
	    !fuzz_same(c2.project_domain_id, c->project_domain_id) ||
	    !fuzz_same(c2.domain_id, c->domain_id))
		abort();
	for (i = 0; i < c->roles.n; i++) {
		if (strcmp(c->roles.v[i], c2.roles.v[i]) != 0)
			abort();
	}
	caller_clear(&c2);
	cJSON_Delete(slim);
}

/* One input: one validation answer. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct caller	 c;
	cJSON		*doc;
	const cJSON	*tok;
	char		*copy, *cause = NULL;
	double		 expires = -1;
	int		 admin = 0;
	size_t		 i;

	copy = xmalloc(size ? size : 1);
	memcpy(copy, data, size);
	doc = json_parse(copy, size, NULL);
	tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
	if (keystone_token_parse(tok, &c, &expires, &cause) == 0) {
		if (cause != NULL || c.kind != CALLER_KEYSTONE ||
		    c.user_id == NULL || expires < 0)
			abort();
		for (i = 0; i < c.roles.n; i++) {
			if (c.roles.v[i] == NULL)
				abort();
			if (strcmp(c.roles.v[i], "admin") == 0)
				admin = 1;
		}
		if (admin != c.is_admin)
			abort();
		fuzz_check_slim(tok, &c, expires);
		caller_clear(&c);
	} else {
		if (cause == NULL || c.user_id != NULL || c.roles.v != NULL)
			abort();
		free(cause);
	}
	cJSON_Delete(doc);
	free(copy);
	return (0);
}
