/*
 * fuzz_policy.c: libFuzzer target for the Lua policy engine's JSON -> Lua
 * conversion (policy.c): policy_authorize with a fuzzed target document,
 * under a fixed small api.lua written at start, and policy_login with a
 * fuzzed context under the built-in login.lua.  Targets and contexts are
 * request bodies and stored objects, so their shape is the client's.
 *
 * The first byte chooses the call:
 *   0: "walk"   visits every value of the target (type, length, keys) and
 *               allows when the count is even: both decisions happen;
 *   1: "reason" denies with target.reason as the reason (a non-string
 *               reason must be a contained POLICY_ERROR, not a crash);
 *   2: "domain" compares target fields with the caller's;
 *   3: policy_login on the body as the login context.
 * The rest is the JSON, parsed with json_parse as the handlers do.
 * Asserted: every call returns allow, deny or error; deny and error carry
 * a reason, allow none; the engine keeps working after an error (the
 * next input uses the same engine).  Any crash, leak or sanitizer report
 * is a bug.
 *
 * Build: `make fuzz` (tests/fuzz/build/fuzz_policy); run: `sh tests/run.sh
 * fuzz`, or ./tests/fuzz/build/fuzz_policy -max_total_time=60
 * tests/tmp/fuzz-policy tests/fuzz/corpus/policy
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "k8sauth.h"

int	LLVMFuzzerInitialize(int *, char ***);
int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static const char fuzz_api_lua[] =
    "local rules = {}\n"
    "local function walk(v, depth)\n"
    "  local n = 1\n"
    "  if type(v) == 'table' then\n"
    "    for k, x in pairs(v) do\n"
    "      if type(k) == 'string' then n = n + #k end\n"
    "      n = n + walk(x, depth + 1)\n"
    "    end\n"
    "  elseif type(v) == 'string' then n = n + #v\n"
    "  elseif type(v) == 'number' then n = n + (v == v and 1 or 2)\n"
    "  end\n"
    "  return n\n"
    "end\n"
    "rules.walk = function(cred, target)\n"
    "  local n = walk(target, 0)\n"
    "  if n % 2 == 0 then return true end\n"
    "  return false, 'odd ' .. n\n"
    "end\n"
    "rules.reason = function(cred, target)\n"
    "  return false, target.reason\n"
    "end\n"
    "rules.domain = function(cred, target)\n"
    "  local obj = target['k8s_auth:role'] or target\n"
    "  if type(obj) ~= 'table' then return false, 'no object' end\n"
    "  if obj.domain_id == cred.domain_id then return true end\n"
    "  return false, 'other domain'\n"
    "end\n"
    "return rules\n";

static struct policy	*fuzz_policy;
static struct caller	 fuzz_caller;

/* Write api.lua to a temporary [policy] dir, build the engine, remove it. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char		 dir[] = "/tmp/fuzz-policy-XXXXXX";
	char		*path, *cause = NULL;
	static char	*roles[] = { "manager", "reader" };
	struct config	*cfg;

	log_open(LOGL_ERR, 0);
	if (mkdtemp(dir) == NULL)
		fatal("mkdtemp");
	xasprintf(&path, "%s/api.lua", dir);
	if (util_write_file_atomic(path, fuzz_api_lua, strlen(fuzz_api_lua),
	    0644, &cause) != 0)
		fatalx("%s", cause);
	cfg = config_new();
	if (config_set(cfg, "policy", "dir", dir, &cause) != 0 ||
	    config_set(cfg, "policy", "instruction_limit", "200000",
	    &cause) != 0 ||
	    config_set(cfg, "policy", "memory_limit", "8388608", &cause) != 0)
		fatalx("%s", cause);
	if ((fuzz_policy = policy_new(cfg, &cause)) == NULL)
		fatalx("%s", cause);
	config_free(cfg);
	unlink(path);
	rmdir(dir);
	free(path);
	fuzz_caller.kind = CALLER_KEYSTONE;
	fuzz_caller.user_id = "0123456789abcdef0123456789abcdef";
	fuzz_caller.domain_id = "default";
	fuzz_caller.roles.v = roles;
	fuzz_caller.roles.n = 2;
	return (0);
}

/* A decision is one of three, with a reason exactly when not allowed. */
static void
fuzz_check(int rc, char *reason)
{
	if (rc == POLICY_ALLOW) {
		if (reason != NULL)
			abort();
	} else if (rc == POLICY_DENY || rc == POLICY_ERROR) {
		if (reason == NULL)
			abort();
		free(reason);
	} else
		abort();
}

/* One input: a selector byte and a JSON document. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const actions[] = { "walk", "reason", "domain" };
	struct policy_login_result	 out;
	cJSON				*doc;
	char				*copy, *reason = NULL;
	int				 rc;

	if (size < 2)
		return (0);
	copy = xmalloc(size - 1);
	memcpy(copy, data + 1, size - 1);
	if ((doc = json_parse(copy, size - 1, NULL)) == NULL) {
		free(copy);
		return (0);
	}
	if ((data[0] & 3) == 3) {
		rc = policy_login(fuzz_policy, doc, &out, &reason);
		fuzz_check(rc, reason);
		policy_login_result_clear(&out);
	} else {
		rc = policy_authorize(fuzz_policy, actions[data[0] & 3],
		    &fuzz_caller, doc, &reason);
		fuzz_check(rc, reason);
	}
	cJSON_Delete(doc);
	free(copy);
	return (0);
}
