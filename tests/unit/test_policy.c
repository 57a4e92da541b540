/*
 * test_policy.c: the Lua policy engine (policy.c, policy_api.c,
 * policy_check.c) against the default policies and hostile ones written
 * to a temporary [policy] dir.  Every hostile case must be contained,
 * fail closed, and leave the engine working for the next call.
 */
#include <sys/stat.h>

#include <dirent.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "k8sauth.h"
#include "testlib.h"

struct fixture {
	char		 dir[64];	/* policy dir */
	char		 lua_dir[80];	/* extra module dir */
	struct config	*cfg;
	struct policy	*p;
};

/* A policy whose rules each try to escape or exhaust the sandbox. */
static const char hostile_api[] =
    "local rules = {}\n"						/* 1 */
    "rules.ok = function(cred, target) return true end\n"
    "rules.os_execute = function() os.execute('touch /tmp/pwned') "
    "return true end\n"
    "rules.io_open = function() io.open('/etc/passwd') return true end\n"
    "rules.require_os = function() local os2 = require 'os' "		/* 5 */
    "return os2.execute ~= nil end\n"
    "rules.loadlib = function() package.loadlib('libc.so.6', 'system') "
    "return true end\n"
    "rules.debug = function() debug.getinfo(1) return true end\n"
    "rules.dump = function() string.dump(function() end) "
    "return true end\n"
    "rules.bytecode = function()\n"
    "  local f, err = load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n')\n"	/* 10 */
    "  if f then return true end\n"
    "  return false, err\n"
    "end\n"
    "rules.bytecode_mode = function() load('return 1', 'x', 'b') "
    "return true end\n"
    "rules.loop = function()\n"					/* 15 */
    "  while true do end\n"
    "end\n"
    "rules.pcall_loop = function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end\n"								/* 20 */
    "rules.swallow = function()\n"
    "  pcall(function() while true do end end)\n"
    "  return true\n"
    "end\n"
    "rules.memory = function()\n"					/* 25 */
    "  local t = {}\n"
    "  while true do t[#t + 1] = string.rep('x', 100000) .. #t end\n"
    "end\n"
    "rules.recurse = function()\n"
    "  local function f(n) return 1 + f(n + 1) end\n"		/* 30 */
    "  return f(1) == 0\n"
    "end\n"
    "rules.coroutine = function()\n"
    "  local co = coroutine.create(function() while true do end end)\n"
    "  coroutine.resume(co)\n"					/* 35 */
    "  return true\n"
    "end\n"
    "rules.wrap = function()\n"
    "  coroutine.wrap(function() while true do end end)()\n"
    "end\n"								/* 40 */
    "rules.rep = function() local s = string.rep('x', 1 << 40) "
    "return true end\n"
    "rules.find = function()\n"
    "  local s = string.rep('a', 200)\n"
    "  return s:find('a-a-a-a-a-b') ~= nil\n"
    "end\n"								/* 45 */
    "rules.strmeta = function()\n"
    "  getmetatable('').__index.upper = function() return 'pwned' end\n"
    "  return true\n"
    "end\n"
    "rules.strlib = function() string.upper = function() return 'x' end "
    "return true end\n"						/* 50 */
    "rules.rawset_lib = function() rawset(string, 'upper', "
    "function() return 'x' end) return true end\n"
    "rules.upper = function() if ('a'):upper() ~= 'A' or "
    "string.upper('b') ~= 'B' then return false, 'string tampered' end "
    "return true end\n"
    "rules.set_global = function() leaked = 'yes'; _G.leaked2 = 'yes'; "
    "return leaked == 'yes' and leaked2 == 'yes' end\n"
    "rules.get_global = function() if leaked ~= nil or leaked2 ~= nil "
    "then return false, 'global leaked' end return true end\n"
    "rules.rawset_env = function() rawset(_ENV, 'leaked3', 1) "	/* 55 */
    "return true end\n"
    "rules.overwrite = function() counter = counter + 1; "
    "return counter == 1 end\n"
    "rules.gc = function() setmetatable({}, {__gc = function() "
    "while true do end end}) return true end\n"
    "rules.collect = function() collectgarbage('collect') return true end\n"
    "rules.count = function() return type(collectgarbage('count')) == "
    "'number' end\n"
    "rules.ret_number = function() return 1 end\n"			/* 60 */
    "rules.ret_nil = function() end\n"
    "rules.ret_table_reason = function() return false, {} end\n"
    "rules.boom = function() error('boom') end\n"
    "rules.deny = function(cred, target) return false, 'no: ' .. "
    "tostring(target.instance and target.instance.name) end\n"
    "rules.cred = function(cred) return cred.kind == 'keystone' and "	/* 65 */
    "cred.domain_id == 'd1' and cred.roles[2] == 'reader' and "
    "cred.is_admin == false and cred.system == false and "
    "cred.project_id == nil end\n"
    "rules.target = function(c, t) return t.instance.n == 3 and "
    "math.type(t.instance.n) == 'integer' and t.instance.list[2] == 'b' "
    "and t.instance.flag == true and t.instance.gone == nil end\n"
    "rules.envmeta = function() setmetatable(_ENV, {}) return true end\n"
    "rules.os_fields = function() return os.time() > 0 and "
    "os.exit == nil and os.getenv == nil and os.remove == nil end\n"
    "rules.print = function() print('hello\\n', 1) return true end\n"
    "rules.helpers = function() local k = require 'k8sauth' "		/* 70 */
    "return k.glob('a*', 'abc') and k.protected_roles().superuser end\n"
    "rules.mymod = function() return require('mymod').answer == 42 end\n"
    "rules.traverse = function() require('..x') return true end\n"
    "rules.gsub = function() local s = string.rep('a', 100000) "
    "return s:gsub('.-.-b', 'x') ~= nil end\n"
    "rules.sort = function() table.sort(setmetatable({}, {__len = "
    "function() return 1e6 end})) return true end\n"
    "rules.findloop = function() local s = string.rep('a', 3000) "	/* 75 */
    "while true do s:find('.-b') end end\n"
    "rules.catloop = function() local s = string.rep('x', 1 << 20) "
    "while true do local t = s .. s end end\n"
    "counter = 0\n"
    "return rules\n";

static const char ok_login[] =
    "return { check = function(ctx)\n"
    "  local ns = ctx.service_account.namespace\n"
    "  if ns == 'denied' then return false, 'namespace ' .. ns end\n"
    "  if ns == 'boom' then error('login boom') end\n"
    "  if ns == 'loop' then while true do end end\n"
    "  if ns == 'number' then return 1 end\n"
    "  if ns == 'unknown' then return true, {expires_in = 5, bogus = 1} "
    "end\n"
    "  if ns == 'badttl' then return true, {expires_in = '60'} end\n"
    "  if ns == 'negttl' then return true, {expires_in = -1} end\n"
    "  if ns == 'floatttl' then return true, {expires_in = 1.5} end\n"
    "  if ns == 'badrid' then return true, {restriction_id = 'a/../b'} "
    "end\n"
    "  if ns == 'badaudit' then return true, {audit = {x = {}}} end\n"
    "  if ns == 'override' then return true, {expires_in = 300, "
    "restriction_id = 'abcdef0123456789abcdef0123456789', "
    "audit = {team = 'a', n = 2, pod = ctx.pod and ctx.pod.name}} end\n"
    "  return true\n"
    "end }\n";

static int
setup(void **state)
{
	struct fixture	*f = xcalloc(1, sizeof *f);
	char		*cause = NULL;

	snprintf(f->dir, sizeof f->dir, "/tmp/k8sauth-policy-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->lua_dir, sizeof f->lua_dir, "%s/lib", f->dir);
	assert_int_equal(mkdir(f->lua_dir, 0755), 0);
	f->cfg = config_new();
	assert_int_equal(config_set(f->cfg, "policy", "dir", f->dir,
	    &cause), 0);
	assert_int_equal(config_set(f->cfg, "policy", "lua_dir", f->lua_dir,
	    &cause), 0);
	assert_int_equal(config_set(f->cfg, "policy", "protected_roles",
	    "admin, superuser", &cause), 0);
	assert_int_equal(config_set(f->cfg, "policy", "instruction_limit",
	    "200000", &cause), 0);
	assert_int_equal(config_set(f->cfg, "policy", "memory_limit",
	    "4194304", &cause), 0);
	*state = f;
	return (0);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;

	policy_free(f->p);
	config_free(f->cfg);
	testlib_rm_tree(f->lua_dir);
	testlib_rm_tree(f->dir);
	free(f);
	return (0);
}

/* Build the engine from the fixture's directory; fail the test if not. */
static struct policy *
load(struct fixture *f)
{
	char	*cause = NULL;

	f->p = policy_new(f->cfg, &cause);
	if (f->p == NULL)
		fail_msg("policy_new: %s", cause);
	return (f->p);
}

/* Load the hostile api.lua and the test login.lua. */
static struct policy *
load_hostile(struct fixture *f)
{
	testlib_write(f->dir, "api.lua", hostile_api, 0644);
	testlib_write(f->dir, "login.lua", ok_login, 0644);
	testlib_write(f->lua_dir, "mymod.lua", "return { answer = 42 }\n", 0644);
	return (load(f));
}

/* Decide action as a domain reader with no target. */
static int
decide(struct policy *p, const char *action, char **reason)
{
	struct caller	 c;
	char		*roles[] = { "member", "reader" };
	int		 rc;

	memset(&c, 0, sizeof c);
	c.kind = CALLER_KEYSTONE;
	c.domain_id = "d1";
	c.roles.v = roles;
	c.roles.n = 2;
	*reason = NULL;
	rc = policy_authorize(p, action, &c, NULL, reason);
	return (rc);
}

/* The action fails closed (error), and "ok" still works afterwards. */
static void
assert_contained(struct policy *p, const char *action, const char *want)
{
	char	*reason = NULL;
	int	 rc;

	rc = decide(p, action, &reason);
	if (rc != POLICY_ERROR)
		fail_msg("%s: expected an error, got %d (%s)", action, rc,
		    reason != NULL ? reason : "-");
	assert_non_null(reason);
	if (want != NULL && strstr(reason, want) == NULL)
		fail_msg("%s: reason \"%s\" lacks \"%s\"", action, reason,
		    want);
	free(reason);
	rc = decide(p, "ok", &reason);
	if (rc != POLICY_ALLOW)
		fail_msg("after %s: ok gave %d (%s)", action, rc,
		    reason != NULL ? reason : "-");
	free(reason);
	rc = decide(p, "upper", &reason);
	if (rc != POLICY_ALLOW)
		fail_msg("after %s: upper gave %d (%s)", action, rc,
		    reason != NULL ? reason : "-");
	free(reason);
}

/* The built-in defaults run when the dir has no policy files. */
static void
test_embedded_defaults(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load(f);
	struct caller	 c;
	cJSON		*t;
	char		*reason = NULL;
	char		*roles[] = { "manager", "reader" };

	memset(&c, 0, sizeof c);
	c.kind = CALLER_BOOTSTRAP;
	c.is_admin = 1;
	assert_int_equal(policy_authorize(p, "k8s_auth:instance:create", &c,
	    NULL, &reason), POLICY_ALLOW);
	assert_null(reason);

	c.kind = CALLER_KEYSTONE;
	c.is_admin = 0;
	c.domain_id = "d1";
	c.roles.v = roles;
	c.roles.n = 2;
	t = cJSON_Parse("{\"instance\": {\"domain_id\": \"d1\"}}");
	assert_int_equal(policy_authorize(p, "k8s_auth:instance:create", &c,
	    t, &reason), POLICY_ALLOW);
	cJSON_Delete(t);
	t = cJSON_Parse("{\"instance\": {\"domain_id\": \"d2\"}}");
	assert_int_equal(policy_authorize(p, "k8s_auth:instance:delete", &c,
	    t, &reason), POLICY_DENY);
	assert_non_null(strstr(reason, "another domain"));
	free(reason);
	cJSON_Delete(t);

	/* Protected roles come from the config: superuser too. */
	t = cJSON_Parse("{\"restriction\": {\"domain_id\": \"d1\", \"roles\": "
	    "[{\"id\": \"x\", \"name\": \"superuser\"}]}}");
	assert_int_equal(policy_authorize(p, "token_restriction:create", &c,
	    t, &reason), POLICY_DENY);
	assert_non_null(strstr(reason, "superuser"));
	free(reason);
	cJSON_Delete(t);

	/* A list without a domain filter is admin-only. */
	t = cJSON_Parse("{\"instance\": {\"name\": \"x\"}}");
	assert_int_equal(policy_authorize(p, "k8s_auth:instance:list", &c,
	    t, &reason), POLICY_DENY);
	free(reason);
	cJSON_Delete(t);

	assert_int_equal(policy_authorize(p, "k8s_auth:nothing:create", &c,
	    NULL, &reason), POLICY_DENY);
	assert_non_null(strstr(reason, "no rule"));
	free(reason);
}

/* A dir with only login.lua: api.lua falls back to the built-in. */
static void
test_fallback_per_file(void **state)
{
	struct fixture			*f = *state;
	struct policy			*p;
	struct policy_login_result	 r;
	cJSON				*ctx;
	char				*reason = NULL;

	testlib_write(f->dir, "login.lua", ok_login, 0644);
	p = load(f);
	assert_int_equal(decide(p, "k8s_auth:instance:create", &reason),
	    POLICY_DENY);
	free(reason);
	ctx = cJSON_Parse("{\"service_account\": {\"namespace\": "
	    "\"denied\"}}");
	assert_int_equal(policy_login(p, ctx, &r, &reason), POLICY_DENY);
	assert_string_equal(reason, "namespace denied");
	free(reason);
	cJSON_Delete(ctx);
}

/* Escapes: no os, io, package, debug, bytecode. */
static void
test_hostile_escapes(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);
	char		*reason = NULL;

	assert_contained(p, "os_execute", "os_execute");
	assert_contained(p, "io_open", "io");
	assert_contained(p, "require_os", "module \"os\" not found");
	assert_contained(p, "loadlib", "package");
	assert_contained(p, "debug", "debug");
	assert_contained(p, "dump", "dump");
	assert_contained(p, "bytecode_mode", "only text chunks");
	assert_contained(p, "traverse", "bad module name");
	assert_contained(p, "envmeta", "protected metatable");
	assert_contained(p, "gc", "__gc");
	assert_contained(p, "collect", "count");
	assert_int_equal(access("/tmp/pwned", F_OK), -1);
	/* A binary chunk is refused even through text-mode load. */
	assert_int_equal(decide(p, "bytecode", &reason), POLICY_DENY);
	assert_non_null(strstr(reason, "binary"));
	free(reason);
	assert_int_equal(decide(p, "count", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "os_fields", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "print", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "helpers", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "mymod", &reason), POLICY_ALLOW);
}

/* Budgets: loops (also in pcall and coroutines), memory, recursion. */
static void
test_hostile_budgets(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);
	time_t		 t0 = time(NULL);

	assert_contained(p, "loop", "api.lua:16: instruction budget");
	assert_contained(p, "pcall_loop", "instruction budget");
	assert_contained(p, "swallow", "instruction budget");
	assert_contained(p, "coroutine", "instruction budget");
	assert_contained(p, "wrap", "instruction budget");
	assert_contained(p, "memory", "memory limit");
	assert_contained(p, "recurse", NULL);
	assert_true(time(NULL) - t0 < 20);
	assert_true(policy_memory(p) < 4194304 / 2);
}

/*
 * How long the six contained calls below may take in all: each ends by a
 * budget or the 250 ms wall-clock net; AddressSanitizer makes the work
 * before the net several times slower.
 */
#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_SECONDS 20
#else
#define HOSTILE_SECONDS 5
#endif

/* C functions with super-linear cost are capped before they run. */
static void
test_hostile_c_functions(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);
	time_t		 t0 = time(NULL);

	assert_contained(p, "rep", "1 MiB");
	assert_contained(p, "find", "too complex");
	assert_contained(p, "gsub", "too complex");
	assert_contained(p, "sort", "more than 100000");
	/* Allowed calls are charged, so a loop of them ends too. */
	assert_contained(p, "findloop", "instruction budget");
	/* Work the hook cannot count ends at the wall-clock net. */
	assert_contained(p, "catloop", "instruction budget");
	assert_true(time(NULL) - t0 < HOSTILE_SECONDS);
}

/* Shared state: the string library and globals do not leak. */
static void
test_hostile_isolation(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);
	char		*reason = NULL;

	assert_contained(p, "strmeta", "index");
	assert_contained(p, "strlib", "read-only");
	assert_contained(p, "rawset_lib", "read-only");
	assert_contained(p, "rawset_env", "read-only");
	assert_int_equal(decide(p, "set_global", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "get_global", &reason), POLICY_ALLOW);
	/* A load-time global reads the same in every call. */
	assert_int_equal(decide(p, "overwrite", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p, "overwrite", &reason), POLICY_ALLOW);
}

/* Results of the wrong shape and runtime errors fail closed. */
static void
test_bad_results(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);

	assert_contained(p, "ret_number", "returned a number");
	assert_contained(p, "ret_nil", "returned a nil");
	assert_contained(p, "ret_table_reason", "string reason");
	assert_contained(p, "boom", "api.lua:63: boom");
}

/* cred and target reach the rule as documented. */
static void
test_inputs(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p = load_hostile(f);
	struct caller	 c;
	cJSON		*t;
	char		*reason = NULL;
	char		*roles[] = { "member", "reader" };
	char		 deep[200];
	size_t		 i;

	assert_int_equal(decide(p, "cred", &reason), POLICY_ALLOW);
	memset(&c, 0, sizeof c);
	c.roles.v = roles;
	c.roles.n = 2;
	t = cJSON_Parse("{\"instance\": {\"n\": 3, \"list\": [\"a\", \"b\"], "
	    "\"flag\": true, \"gone\": null}}");
	assert_int_equal(policy_authorize(p, "target", &c, t, &reason),
	    POLICY_ALLOW);
	cJSON_Delete(t);
	t = cJSON_Parse("{\"instance\": {\"name\": \"web\"}}");
	assert_int_equal(policy_authorize(p, "deny", &c, t, &reason),
	    POLICY_DENY);
	assert_string_equal(reason, "no: web");
	free(reason);
	cJSON_Delete(t);
	/* Nesting beyond the bound is refused, not converted. */
	for (i = 0; i < 40; i++)
		deep[i] = '[';
	for (i = 40; i < 80; i++)
		deep[i] = ']';
	deep[80] = '\0';
	t = cJSON_Parse(deep);
	assert_non_null(t);
	assert_int_equal(policy_authorize(p, "ok", &c, t, &reason),
	    POLICY_ERROR);
	assert_non_null(strstr(reason, "nested deeper"));
	free(reason);
	cJSON_Delete(t);
}

/* Run the login hook for a namespace. */
static int
login_ns(struct policy *p, const char *ns, struct policy_login_result *r,
    char **reason)
{
	cJSON	*ctx;
	int	 rc;

	ctx = cJSON_CreateObject();
	cJSON_AddStringToObject(cJSON_AddObjectToObject(ctx,
	    "service_account"), "namespace", ns);
	cJSON_AddStringToObject(cJSON_AddObjectToObject(ctx, "pod"), "name",
	    "web-1");
	*reason = NULL;
	rc = policy_login(p, ctx, r, reason);
	cJSON_Delete(ctx);
	return (rc);
}

/* The login hook: allow, deny, overrides validated, errors. */
static void
test_login(void **state)
{
	struct fixture			*f = *state;
	struct policy			*p = load_hostile(f);
	struct policy_login_result	 r;
	char				*reason, *s;
	size_t				 i;
	static const char *const errors[] = { "boom", "loop", "number",
	    "unknown", "badttl", "negttl", "floatttl", "badrid", "badaudit" };

	assert_int_equal(login_ns(p, "plain", &r, &reason), POLICY_ALLOW);
	assert_int_equal(r.expires_in, 0);
	assert_null(r.restriction_id);
	assert_null(r.audit);

	assert_int_equal(login_ns(p, "denied", &r, &reason), POLICY_DENY);
	assert_string_equal(reason, "namespace denied");
	free(reason);

	assert_int_equal(login_ns(p, "override", &r, &reason), POLICY_ALLOW);
	assert_int_equal(r.expires_in, 300);
	assert_string_equal(r.restriction_id,
	    "abcdef0123456789abcdef0123456789");
	s = cJSON_PrintUnformatted(r.audit);
	assert_non_null(strstr(s, "\"team\":\"a\""));
	assert_non_null(strstr(s, "\"pod\":\"web-1\""));
	assert_non_null(strstr(s, "\"n\":2"));
	free(s);
	policy_login_result_clear(&r);

	for (i = 0; i < sizeof errors / sizeof *errors; i++) {
		if (login_ns(p, errors[i], &r, &reason) != POLICY_ERROR)
			fail_msg("login %s did not fail", errors[i]);
		assert_non_null(reason);
		assert_int_equal(r.expires_in, 0);
		assert_null(r.restriction_id);
		free(reason);
		assert_int_equal(login_ns(p, "plain", &r, &reason),
		    POLICY_ALLOW);
	}
	assert_int_equal(login_ns(p, "unknown", &r, &reason), POLICY_ERROR);
	assert_non_null(strstr(reason, "bogus"));
	free(reason);
}

/* A login.lua without check allows. */
static void
test_login_no_check(void **state)
{
	struct fixture			*f = *state;
	struct policy			*p;
	struct policy_login_result	 r;
	char				*reason;

	testlib_write(f->dir, "login.lua", "return {}\n", 0644);
	p = load(f);
	assert_int_equal(login_ns(p, "x", &r, &reason), POLICY_ALLOW);
	assert_null(reason);
}

/* needs = {...}: read at load, checked, none by default. */
static void
test_login_needs(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p;
	char		*cause;

	testlib_write(f->dir, "login.lua", "return {}\n", 0644);
	p = load(f);
	assert_int_equal(policy_login_needs(p), 0);
	policy_free(p);
	f->p = NULL;
	testlib_write(f->dir, "login.lua", "return { needs = "
	    "{\"service_account\", \"namespace\"} }\n", 0644);
	p = load(f);
	assert_int_equal(policy_login_needs(p),
	    POLICY_NEED_NAMESPACE | POLICY_NEED_SERVICE_ACCOUNT);
	policy_free(p);
	f->p = NULL;
	testlib_write(f->dir, "login.lua", "return { needs = "
	    "{\"namespace\"} }\n", 0644);
	p = load(f);
	assert_int_equal(policy_login_needs(p), POLICY_NEED_NAMESPACE);
	policy_free(p);
	f->p = NULL;
	testlib_write(f->dir, "login.lua", "return { needs = "
	    "{\"pods\"} }\n", 0644);
	assert_null(policy_new(f->cfg, &cause));
	assert_non_null(strstr(cause, "needs[1] must be \"namespace\""));
	free(cause);
	testlib_write(f->dir, "login.lua", "return { needs = \"namespace\" "
	    "}\n", 0644);
	assert_null(policy_new(f->cfg, &cause));
	assert_non_null(strstr(cause, "needs is a string, not a list"));
	free(cause);
}

/* Load login.lua = text (NUL-terminated) from the fixture's dir. */
static struct policy *
load_login(struct fixture *f, const char *text)
{
	policy_free(f->p);
	f->p = NULL;
	testlib_write(f->dir, "login.lua", text, 0644);
	return (load(f));
}

/*
 * A login policy that decides nothing (no check(), or the built-in default
 * byte for byte) is not run: no VM entry, no ctx needed, a plain allow.
 * Any edit runs it again, and a policy that decides keeps deciding.
 */
static void
test_login_skipped(void **state)
{
	struct fixture			*f = *state;
	const struct embed_file		*e = embed_find("policy/login.lua");
	struct policy			*p;
	struct policy_login_result	 r;
	char				*reason, *copy, *text, *at;
	long long			 gen;

	assert_non_null(e);
	copy = xstrndup((const char *)e->data, e->len);
	/* The built-in default (an empty dir), then a byte-identical copy. */
	p = load(f);
	assert_int_equal(policy_login_decides(p), 0);
	gen = policy_generation(p);
	memset(&r, 0xa5, sizeof r);
	assert_int_equal(policy_login(p, NULL, &r, &reason), POLICY_ALLOW);
	assert_null(reason);
	assert_int_equal(r.expires_in, 0);
	assert_null(r.restriction_id);
	assert_null(r.audit);
	assert_true(policy_generation(p) == gen);
	p = load_login(f, copy);
	assert_int_equal(policy_login_decides(p), 0);
	p = load_login(f, "return {}\n");
	assert_int_equal(policy_login_decides(p), 0);
	/* One comment more: it runs, and allows as before. */
	xasprintf(&text, "%s-- edited\n", copy);
	p = load_login(f, text);
	free(text);
	assert_int_equal(policy_login_decides(p), 1);
	gen = policy_generation(p);
	assert_int_equal(login_ns(p, "team-a", &r, &reason), POLICY_ALLOW);
	assert_null(r.restriction_id);
	assert_true(policy_generation(p) == gen + 1);
	/* Example 5 switched on: it decides. */
	assert_non_null(at = strstr(copy, "\tdenied_namespaces = {},"));
	xasprintf(&text, "%.*s\tdenied_namespaces = { \"kube-*\" },%s",
	    (int)(at - copy), copy, at + strlen("\tdenied_namespaces = {},"));
	p = load_login(f, text);
	free(text);
	assert_int_equal(policy_login_decides(p), 1);
	assert_int_equal(login_ns(p, "kube-system", &r, &reason), POLICY_DENY);
	assert_non_null(strstr(reason, "kube-system"));
	free(reason);
	assert_int_equal(login_ns(p, "team-a", &r, &reason), POLICY_ALLOW);
	free(copy);
}

/* Build with one file's text and return the cause (caller frees). */
static char *
broken(struct fixture *f, const char *file, const char *text)
{
	struct policy	*p;
	char		*cause = NULL;

	testlib_write(f->dir, file, text, 0644);
	p = policy_new(f->cfg, &cause);
	assert_null(p);
	assert_non_null(cause);
	unlink(file);
	return (cause);
}

/* Broken files: NULL with "FILE:LINE: message". */
static void
test_broken_files(void **state)
{
	struct fixture	*f = *state;
	char		*cause, *want;

	cause = broken(f, "api.lua", "local x = 1\n\nreturn {,}\n");
	xasprintf(&want, "%s/api.lua:3:", f->dir);
	if (strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	free(want);
	free(cause);

	cause = broken(f, "api.lua", "local t = nil\nreturn t.x\n");
	xasprintf(&want, "%s/api.lua:2:", f->dir);
	if (strstr(cause, want) == NULL)
		fail_msg("cause \"%s\" lacks \"%s\"", cause, want);
	free(want);
	free(cause);

	cause = broken(f, "api.lua", "return 42\n");
	assert_non_null(strstr(cause, "must return a table"));
	free(cause);
	cause = broken(f, "api.lua", "return { ['a:b'] = 'x' }\n");
	assert_non_null(strstr(cause, "a:b"));
	free(cause);
	cause = broken(f, "api.lua", "while true do end\n");
	assert_non_null(strstr(cause, "instruction budget"));
	free(cause);
	cause = broken(f, "api.lua", "\x1bLua");
	assert_non_null(strstr(cause, "not a text"));
	free(cause);
	testlib_write(f->dir, "api.lua", "return {}\n", 0644);
	cause = broken(f, "login.lua", "return { check = 1 }\n");
	assert_non_null(strstr(cause, "check is a number"));
	free(cause);
	cause = broken(f, "login.lua", "require 'nosuchmodule'\n");
	assert_non_null(strstr(cause, "nosuchmodule"));
	free(cause);
}

/* A state filled through a persistent upvalue is rebuilt. */
static void
test_rebuild(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p;
	char		*reason = NULL;

	testlib_write(f->dir, "api.lua",
	    "local keep = {}\n"
	    "return {\n"
	    "  fill = function() while true do keep[#keep + 1] = "
	    "string.rep('x', 1000) .. #keep end end,\n"
	    "  ok = function() return #keep == 0, 'kept ' .. #keep end,\n"
	    "}\n", 0644);
	/*
	 * Budget time generously: this test is about memory, and a loaded
	 * machine (or a sanitizer build) must not hit the time limit first.
	 */
	assert_int_equal(config_set(f->cfg, "policy", "instruction_limit",
	    "1000000000", NULL), 0);
	p = load(f);
	assert_int_equal(decide(p, "fill", &reason), POLICY_ERROR);
	assert_non_null(strstr(reason, "memory limit"));
	free(reason);
	assert_true(policy_memory(p) < 4194304 / 2);
	assert_int_equal(decide(p, "ok", &reason), POLICY_ALLOW);
}

/* Run policy_check_main with a NULL-terminated argument list. */
static int
check_main(struct fixture *f, ...)
{
	char	*argv[16];
	int	 argc = 0;
	va_list	 ap;

	argv[argc++] = (char *)"policy-check";
	va_start(ap, f);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	return (policy_check_main(f->cfg, argc, argv));
}

/* policy-check: exit 0 allow, 1 deny, 2 error. */
static void
test_policy_check_main(void **state)
{
	struct fixture	*f = *state;
	char		*cred, *admin, *target, *ctx, *bad;

	xasprintf(&cred, "%s/cred.json", f->lua_dir);
	xasprintf(&admin, "%s/admin.json", f->lua_dir);
	xasprintf(&target, "%s/target.json", f->lua_dir);
	xasprintf(&ctx, "%s/ctx.json", f->lua_dir);
	xasprintf(&bad, "%s/bad.json", f->lua_dir);
	testlib_write(f->lua_dir, "cred.json", "{\"kind\": \"keystone\", "
	    "\"domain_id\": \"d1\", \"roles\": [\"reader\"], "
	    "\"is_admin\": false, \"project_id\": null}", 0644);
	testlib_write(f->lua_dir, "admin.json", "{\"kind\": \"bootstrap\", "
	    "\"is_admin\": true}", 0644);
	testlib_write(f->lua_dir, "target.json",
	    "{\"instance\": {\"domain_id\": \"d1\"}}", 0644);
	testlib_write(f->lua_dir, "ctx.json", "{\"service_account\": "
	    "{\"namespace\": \"denied\", \"name\": \"x\"}}", 0644);
	testlib_write(f->lua_dir, "bad.json", "{\"kind\": \"keystone\", "
	    "\"rolez\": []}", 0644);

	assert_int_equal(check_main(f, "--config", "x", "--action",
	    "k8s_auth:instance:show", "--credentials", cred, "--target",
	    target, NULL), 0);
	assert_int_equal(check_main(f, "--action", "k8s_auth:instance:delete",
	    "--credentials", cred, "--target", target, NULL), 1);
	assert_int_equal(check_main(f, "--action", "k8s_auth:instance:delete",
	    "--credentials", admin, NULL), 0);
	assert_int_equal(check_main(f, "--action", "k8s_auth:instance:show",
	    "--credentials", bad, NULL), 2);
	assert_int_equal(check_main(f, "--action", "x", NULL), 2);
	assert_int_equal(check_main(f, "--bogus", NULL), 2);
	assert_int_equal(check_main(f, "--login", ctx, NULL), 0);
	testlib_write(f->dir, "login.lua", ok_login, 0644);
	assert_int_equal(check_main(f, "--login", ctx, NULL), 1);
	testlib_write(f->lua_dir, "ctx.json", "{\"service_account\": "
	    "{\"namespace\": \"boom\"}}", 0644);
	assert_int_equal(check_main(f, "--login", ctx, NULL), 2);
	testlib_write(f->lua_dir, "ctx.json", "{\"service_account\": "
	    "{\"namespace\": \"override\"}}", 0644);
	assert_int_equal(check_main(f, "--login", ctx, NULL), 0);
	testlib_write(f->dir, "login.lua", "return {", 0644);
	assert_int_equal(check_main(f, "--login", ctx, NULL), 2);
	unlink(cred);
	unlink(admin);
	unlink(target);
	unlink(ctx);
	unlink(bad);
	free(cred);
	free(admin);
	free(target);
	free(ctx);
	free(bad);
}

/* Two engines (two workers) do not share anything. */
static void
test_independent_engines(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p1, *p2;
	char		*cause = NULL, *reason = NULL;

	testlib_write(f->dir, "api.lua", "local n = 0\nreturn { inc = "
	    "function() n = n + 1 return n == 1, 'n=' .. n end }\n", 0644);
	p1 = policy_new(f->cfg, &cause);
	p2 = policy_new(f->cfg, &cause);
	assert_non_null(p1);
	assert_non_null(p2);
	assert_int_equal(decide(p1, "inc", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p2, "inc", &reason), POLICY_ALLOW);
	assert_int_equal(decide(p1, "inc", &reason), POLICY_DENY);
	assert_string_equal(reason, "n=2");
	free(reason);
	policy_free(p1);
	policy_free(p2);
	assert_int_equal(policy_validate(f->cfg, &cause), 0);
}

/* pairs() on a library proxy must not hand out the real, writable table. */
static const char pairs_api[] =
    "return {\n"
    "  tamper = function()\n"
    "    local _, t = pairs(k8sauth_core.protected_roles)\n"
    "    if type(t) == 'table' then rawset(t, 1, nil) end\n"
    "    local _, s = pairs(string)\n"
    "    if type(s) == 'table' then rawset(s, 'upper', function() "
    "return 'x' end) end\n"
    "    return true\n"
    "  end,\n"
    "  check = function()\n"
    "    local n = 0\n"
    "    for k, v in pairs(k8sauth_core.protected_roles) do n = n + 1 end\n"
    "    if n ~= 2 or k8sauth_core.protected_roles[1] ~= 'admin' then\n"
    "      return false, 'protected roles changed: ' .. n\n"
    "    end\n"
    "    if ('a'):upper() ~= 'A' then return false, 'string changed' end\n"
    "    local seen = {}\n"
    "    for k in pairs(string) do seen[k] = true end\n"
    "    if not seen.upper or not seen.find then\n"
    "      return false, 'pairs misses fields'\n"
    "    end\n"
    "    return true\n"
    "  end,\n"
    "}\n";

static void
test_pairs_proxy(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p;
	char		*reason = NULL;
	int		 rc;

	testlib_write(f->dir, "api.lua", pairs_api, 0644);
	p = load(f);
	/* Whatever tamper gets to do, check must still see the originals. */
	(void)decide(p, "tamper", &reason);
	free(reason);
	reason = NULL;
	rc = decide(p, "check", &reason);
	if (rc != POLICY_ALLOW)
		fail_msg("library tables changed through pairs(): %s",
		    reason != NULL ? reason : "-");
	free(reason);
}

/* C loops the count hook cannot see (table.move, insert, remove). */
static const char cloop_api[] =
    "local big = setmetatable({}, {__len = function() "
    "return math.maxinteger - 2 end})\n"
    "return {\n"
    "  ok = function() return true end,\n"
    "  upper = function() return true end,\n"
    "  move = function() table.move({}, 1, math.maxinteger - 1, 1) "
    "return true end,\n"
    "  insert = function() table.insert(big, 1, 'x') return true end,\n"
    "  remove = function() table.remove(big, 1) return true end,\n"
    "  small = function() local t = table.move({1, 2, 3}, 1, 3, 2) "
    "table.insert(t, 1, 0) table.remove(t, 1) "
    "return #t == 4 and t[4] == 3 end,\n"
    "}\n";

static void
test_hostile_c_loops(void **state)
{
	struct fixture	*f = *state;
	struct policy	*p;
	char		*reason = NULL;
	time_t		 t0 = time(NULL);

	testlib_write(f->dir, "api.lua", cloop_api, 0644);
	p = load(f);
	assert_int_equal(decide(p, "small", &reason), POLICY_ALLOW);
	assert_contained(p, "move", "instruction budget");
	assert_contained(p, "insert", "instruction budget");
	assert_contained(p, "remove", "instruction budget");
	assert_true(time(NULL) - t0 < HOSTILE_SECONDS);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_embedded_defaults, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_fallback_per_file, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_escapes, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_budgets, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_c_functions,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile_isolation, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_bad_results, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_inputs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login, setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_no_check, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_broken_files, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rebuild, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_check_main, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_independent_engines,
		    setup, teardown),
		cmocka_unit_test_setup_teardown(test_login_needs, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_login_skipped, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_pairs_proxy, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_hostile_c_loops, setup,
		    teardown),
	};

	log_open(LOGL_ERR, 0);
	return (cmocka_run_group_tests(tests, NULL, NULL));
}
