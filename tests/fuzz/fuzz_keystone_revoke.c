/*
 * fuzz_keystone_revoke.c: libFuzzer target for the reading of Keystone's
 * revocation events (keystone_revoke.c): keystone_revoke_matches, which
 * decides whether an event of GET /v3/OS-REVOKE/events drops a cached
 * validation, and keystone_parse_time (keystone.c) on its issued_before
 * and the token's issued_at.  The events come over the network from the
 * configured Keystone.
 *
 * The whole input is the answer body, parsed with json_parse as
 * keystone.c does.  Each member of its "events" list is matched against a
 * fixed cached token (the slim document keystone_token.c keeps) and
 * against the input's own "token" member when it has one (a cached
 * document is itself Keystone's answer).  Asserted: a match is 0 or 1 and
 * the same when asked twice; an event naming an audit_id other than the
 * fixed token's never matches it; an event that names none of the fields
 * compared always matches (a superset of Keystone's rule, never less);
 * keystone_parse_time of every string of the input is -1 or a finite
 * number.  Any crash, leak or sanitizer report is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_keystone_revoke); run: `sh
 * tests/run.sh fuzz`, or ./tests/fuzz/build/fuzz_keystone_revoke
 * -max_total_time=60 tests/tmp/fuzz-kr tests/fuzz/corpus/keystone_revoke
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static cJSON	*fuzz_tok;

static const char fuzz_tok_text[] =
    "{\"issued_at\": \"2026-11-28T13:00:00.000000Z\","
    " \"audit_ids\": [\"aud1\", \"chain1\"],"
    " \"user\": {\"id\": \"u1\", \"domain\": {\"id\": \"d1\"}},"
    " \"project\": {\"id\": \"p1\", \"domain\": {\"id\": \"d1\"}},"
    " \"roles\": [{\"id\": \"r1\", \"name\": \"admin\"}]}";

/* Log errors only; the fixed cached token. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_open(LOGL_ERR, 0);
	fuzz_tok = json_parse(fuzz_tok_text, sizeof fuzz_tok_text - 1, NULL);
	if (fuzz_tok == NULL)
		abort();
	return (0);
}

/* Match twice: 0 or 1, and the same answer. */
static int
fuzz_match(const cJSON *ev, const cJSON *tok)
{
	int	 m = keystone_revoke_matches(ev, tok);

	if ((m != 0 && m != 1) || keystone_revoke_matches(ev, tok) != m)
		abort();
	return (m);
}

/* Does ev name one of the compared fields (as a string)? */
static int
fuzz_names_field(const cJSON *ev)
{
	static const char *const f[] = { "issued_before", "audit_id",
		"audit_chain_id", "user_id", "project_id", "domain_id",
		"role_id" };
	size_t	 i;

	for (i = 0; i < sizeof f / sizeof f[0]; i++) {
		if (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(ev, f[i])))
			return (1);
	}
	return (0);
}

/* keystone_parse_time on every string below o. */
static void
fuzz_times(const cJSON *o, int depth)
{
	const cJSON	*c;
	double		 t;

	if (depth > 8)
		return;
	if (cJSON_IsString(o)) {
		t = keystone_parse_time(o->valuestring);
		if (t != -1 && !isfinite(t))
			abort();
	}
	cJSON_ArrayForEach(c, o)
		fuzz_times(c, depth + 1);
}

/* One input: one events answer. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const cJSON	*ev, *aid, *tok;
	cJSON		*doc;
	char		*copy;

	copy = xmalloc(size ? size : 1);
	memcpy(copy, data, size);
	doc = json_parse(copy, size, NULL);
	tok = cJSON_GetObjectItemCaseSensitive(doc, "token");
	cJSON_ArrayForEach(ev, cJSON_GetObjectItemCaseSensitive(doc, "events"))
	{
		aid = cJSON_GetObjectItemCaseSensitive(ev, "audit_id");
		if (fuzz_match(ev, fuzz_tok) && cJSON_IsString(aid) &&
		    strcmp(aid->valuestring, "aud1") != 0)
			abort();
		if (!fuzz_names_field(ev) && !fuzz_match(ev, fuzz_tok))
			abort();
		if (tok != NULL)
			fuzz_match(ev, tok);
	}
	fuzz_times(doc, 0);
	cJSON_Delete(doc);
	free(copy);
	return (0);
}
