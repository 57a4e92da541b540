/*
 * policy.c: the Lua policy engine (one sandboxed Lua 5.4 state).
 *
 * A struct policy owns one lua_State with the two policy files loaded:
 * api.lua (action -> function(cred, target)) and login.lua (check(ctx)).
 * Each worker builds its own with policy_new() and uses it only from its
 * own thread; policy_new() is also the compile-and-smoke-test step, so a
 * reload validates once (policy_validate) and then has every worker build
 * a fresh engine and free the old one.  Nothing here is shared between
 * threads and nothing blocks except reading the policy files in
 * policy_new().
 *
 * The sandbox (built once per state, before any script runs):
 *   - lua_newstate() with a byte-counting allocator capped at [policy]
 *     memory_limit; never luaL_openlibs: base, string, table, math, utf8,
 *     coroutine and os are opened one by one, then policy_api_sandbox()
 *     (policy_api.c) builds a read-only base environment from the safe
 *     parts; each policy file and module runs in its own environment
 *     chained to it;
 *   - a count hook installed at state creation (so every coroutine
 *     inherits it) enforces [policy] instruction_limit per call; once
 *     tripped it re-arms itself to fire on every instruction, so pcall
 *     and coroutine.resume cannot swallow it.
 *
 * Every entry into the VM goes through policy_enter(): message handler,
 * lua_pcall, hook reset.  Every failure (runtime error, exhausted budget,
 * memory, a result of the wrong shape) fails closed: an admin action is
 * denied, a login errors; the log names the file, line and action.  After
 * a failure the state is collected, and rebuilt from the same sources if
 * memory stays high, so the next call works.
 */
#include <sys/stat.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "k8sauth.h"

#define POLICY_MAX_FILE      (1024 * 1024) /* a policy or module */
#define POLICY_MAX_DEPTH     16            /* JSON -> Lua nesting */
#define POLICY_MAX_NODES     10000         /* JSON -> Lua values */
#define POLICY_MAX_REASON    256
#define POLICY_MAX_AUDIT     16 /* audit override fields */
#define POLICY_MAX_ID        64 /* restriction_id override */
#define POLICY_HOOK_INTERVAL 1000
/*
 * The wall-clock safety net for work the count hook cannot see (a VM
 * concatenation copying megabytes is one instruction): a call may run
 * instruction_limit / 10 microseconds, at least 250 ms (a loaded machine must not trip it first).  Real policies run
 * far faster than 10 instructions per microsecond.
 */
#define POLICY_MIN_DEADLINE_US 250000

struct policy {
	lua_State *L;
	char *dir;     /* [policy] dir, or NULL */
	char *lua_dir; /* [policy] lua_dir, or NULL */
	long instruction_limit;
	size_t memory_limit;
	struct strlist protected_roles;

	size_t mem;           /* bytes allocated by L */
	long used;            /* instructions this call */
	uint64_t deadline_us; /* wall-clock safety net */
	int tripped;          /* budget exhausted */
	int building;         /* no recovery while set */
	long long generation; /* calls entered */
	const char *action;   /* what is running, for logs */
	char where[128];      /* where the error was */

	int api_ref;       /* registry: api.lua table */
	int login_ref;     /* registry: login.lua table */
	int login_needs;   /* POLICY_NEED_*: what login.lua declared */
	int login_decides; /* 0: check() is absent or the default's */
	const struct policy_source *api_src;
	const struct policy_source *login_src;

	struct policy_source **srcs; /* every file read, by name */
	size_t nsrcs;
};

/* What policy_load_cb loads. */
struct policy_load {
	const struct policy_source *src;
	int login; /* login.lua, else api.lua */
	int ref;
	int needs;     /* login.lua's POLICY_NEED_* */
	int has_check; /* login.lua defines check */
};

/* One policy_authorize call. */
struct policy_api_call {
	const char *action;
	const struct caller *caller;
	const cJSON *target;
	int decision;
	char *reason;
};

/* One policy_login call. */
struct policy_login_call {
	const cJSON *ctx;
	int decision;
	char *reason;
	struct policy_login_result *out;
};

/* The byte-counting allocator: refuses growth beyond memory_limit. */
static void *
policy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct policy *p = ud;
	void *np;

	if (ptr == NULL)
		osize = 0;
	if (nsize == 0) {
		free(ptr);
		p->mem -= osize;
		return (NULL);
	}
	if (nsize > osize && p->mem + (nsize - osize) > p->memory_limit)
		return (NULL);
	if ((np = realloc(ptr, nsize)) == NULL)
		return (NULL);
	p->mem = p->mem - osize + nsize;
	return (np);
}

/* An error outside any lua_pcall: a bug in this file; never returns. */
static int
policy_panic(lua_State *L)
{
	const char *msg = lua_tostring(L, -1);

	fatalx("policy: unprotected Lua error: %s", msg != NULL ? msg : "?");
}

/*
 * The count hook: charge the instructions since the last call and raise
 * once the budget is spent, re-armed to fire on every instruction.
 */
static void
policy_hook(lua_State *L, lua_Debug *ar)
{
	struct policy *p;
	void *ud;

	lua_getallocf(L, &ud);
	p = ud;
	if (!p->tripped) {
		p->used += lua_gethookcount(L);
		if (p->used < p->instruction_limit &&
		    util_monotonic_us() < p->deadline_us)
			return;
		p->tripped = 1;
	}
	lua_sethook(L, policy_hook, LUA_MASKCOUNT, 1);
	lua_getinfo(L, "Sl", ar);
	lua_pushfstring(L, "%s:%d: instruction budget (%d) exhausted",
	    ar->short_src, ar->currentline, (int)p->instruction_limit);
	lua_error(L);
}

/*
 * Charge work done inside a C function (pattern matching, string
 * building) to the call's instruction budget; raises once it is spent.
 * Called from policy_api.c's wrappers only.  [-0, +0, e]
 */
void
policy_charge(struct lua_State *L, double units)
{
	struct policy *p;
	void *ud;

	lua_getallocf(L, &ud);
	p = ud;
	if (!p->tripped) {
		if (units > (double)(p->instruction_limit - p->used))
			p->tripped = 1;
		else
			p->used += (long)units;
	}
	if (p->tripped) {
		lua_sethook(L, policy_hook, LUA_MASKCOUNT, 1);
		luaL_error(L, "instruction budget (%d) exhausted",
		    (int)p->instruction_limit);
	}
}

/* Message handler: note where the error happened; keep a string. */
static int
policy_msgh(lua_State *L)
{
	struct policy *p;
	lua_Debug ar;
	void *ud;
	int level;

	lua_getallocf(L, &ud);
	p = ud;
	for (level = 0; level < 64 && lua_getstack(L, level, &ar); level++) {
		if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) {
			snprintf(p->where, sizeof p->where, "%s:%d",
			    ar.short_src, ar.currentline);
			break;
		}
	}
	if (lua_type(L, 1) != LUA_TSTRING && lua_type(L, 1) != LUA_TNUMBER)
		lua_pushfstring(L, "(error object is a %s value)",
		    luaL_typename(L, 1));
	else
		lua_pushstring(L, lua_tostring(L, 1));
	return (1);
}

/*
 * The one entry into the VM: run fn(arg) protected, with a fresh budget,
 * the message handler and a new generation of per-call globals.  Returns 0,
 * or -1 with *cause saying why (and where, "FILE:LINE", when known).
 */
static int
policy_enter(struct policy *p, lua_CFunction fn, void *arg, const char *what,
    char **cause)
{
	lua_State *L = p->L;
	int base, rc;
	const char *msg;

	base = lua_gettop(L);
	p->used = 0;
	p->tripped = 0;
	p->deadline_us = util_monotonic_us() +
	    (uint64_t)(p->instruction_limit / 10 > POLICY_MIN_DEADLINE_US
		    ? p->instruction_limit / 10
		    : POLICY_MIN_DEADLINE_US);
	p->generation++;
	p->where[0] = '\0';
	p->action = what;
	lua_sethook(L, policy_hook, LUA_MASKCOUNT, POLICY_HOOK_INTERVAL);
	lua_pushcfunction(L, policy_msgh);
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, arg);
	rc = lua_pcall(L, 1, 0, base + 1);
	if (rc == LUA_OK && p->tripped)
		xasprintf(cause,
		    "instruction budget (%ld) exhausted; the policy caught the error",
		    p->instruction_limit);
	else if (rc == LUA_ERRMEM)
		xasprintf(cause, "memory limit (%zu bytes) exceeded",
		    p->memory_limit);
	else if (rc != LUA_OK) {
		if ((msg = lua_tostring(L, -1)) == NULL)
			msg = "error";
		if (p->where[0] != '\0' && strstr(msg, p->where) == NULL)
			xasprintf(cause, "%s (at %s)", msg, p->where);
		else
			xasprintf(cause, "%s", msg);
	}
	lua_settop(L, base);
	p->used = 0;
	p->tripped = 0;
	lua_sethook(L, policy_hook, LUA_MASKCOUNT, POLICY_HOOK_INTERVAL);
	p->action = NULL;
	return (rc == LUA_OK && *cause == NULL ? 0 : -1);
}

/* Open the libraries one by one and build the sandbox (protected). */
static int
policy_build_cb(lua_State *L)
{
	static const luaL_Reg libs[] = { { LUA_GNAME, luaopen_base },
		{ LUA_STRLIBNAME, luaopen_string },
		{ LUA_TABLIBNAME, luaopen_table },
		{ LUA_MATHLIBNAME, luaopen_math },
		{ LUA_UTF8LIBNAME, luaopen_utf8 },
		{ LUA_COLIBNAME, luaopen_coroutine },
		{ LUA_OSLIBNAME, luaopen_os }, /* only time/clock/date kept */
		{ NULL, NULL } };
	const luaL_Reg *l;

	for (l = libs; l->name != NULL; l++) {
		luaL_requiref(L, l->name, l->func, 0);
		lua_pop(L, 1);
	}
	policy_api_sandbox(L, lua_touserdata(L, 1));
	return (0);
}

/* Check that api.lua's table maps strings to functions.  [-0, +0, e] */
static void
policy_check_rules(lua_State *L, int t, const char *file)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		if (lua_type(L, -2) != LUA_TSTRING)
			luaL_error(L,
			    "%s: a rule key is a %s, not an action name", file,
			    luaL_typename(L, -2));
		if (lua_type(L, -1) != LUA_TFUNCTION)
			luaL_error(L,
			    "%s: the rule for \"%s\" is a %s, not a function",
			    file, lua_tostring(L, -2), luaL_typename(L, -1));
		lua_pop(L, 1);
	}
}

/*
 * login.lua's needs = {"namespace", "service_account"}: the cluster
 * objects its check() reads, known before any login runs so that logins
 * of policies that need nothing read nothing.  Anything else is a load
 * error.  [-0, +0, e]
 */
static int
policy_login_needs_read(lua_State *L, int t, const char *file)
{
	int needs = 0, i, n;
	const char *s;

	lua_pushliteral(L, "needs");
	lua_rawget(L, t);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		return (0);
	}
	if (lua_type(L, -1) != LUA_TTABLE)
		luaL_error(L, "%s: needs is a %s, not a list", file,
		    luaL_typename(L, -1));
	n = (int)lua_rawlen(L, -1);
	for (i = 1; i <= n; i++) {
		lua_rawgeti(L, -1, i);
		s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
		if (strcmp(s, "namespace") == 0)
			needs |= POLICY_NEED_NAMESPACE;
		else if (strcmp(s, "service_account") == 0)
			needs |= POLICY_NEED_SERVICE_ACCOUNT;
		else
			luaL_error(L,
			    "%s: needs[%d] must be \"namespace\" or \"service_account\"",
			    file, i);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	return (needs);
}

/* Load and run one policy file in its own environment (protected). */
static int
policy_load_cb(lua_State *L)
{
	struct policy_load *pl = lua_touserdata(L, 1);
	const char *file = pl->src->chunkname + 1;
	int t;

	if (luaL_loadbufferx(L, pl->src->text, pl->src->len, pl->src->chunkname,
		"t") != LUA_OK)
		return (lua_error(L));
	policy_api_env_new(L); /* chunk env */
	lua_pushvalue(L, -1);
	lua_setupvalue(L, -3, 1);
	lua_insert(L, -2); /* env chunk */
	lua_call(L, 0, 1); /* env result */
	policy_api_env_seal(L, -2);
	t = lua_gettop(L);
	if (lua_type(L, t) != LUA_TTABLE)
		return (luaL_error(L, "%s: must return a table, not a %s", file,
		    luaL_typename(L, t)));
	if (pl->login) {
		lua_pushliteral(L, "check");
		lua_rawget(L, t);
		if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TFUNCTION)
			return (
			    luaL_error(L, "%s: check is a %s, not a function",
				file, luaL_typename(L, -1)));
		pl->has_check = !lua_isnil(L, -1);
		lua_pop(L, 1);
		pl->needs = policy_login_needs_read(L, t, file);
	} else
		policy_check_rules(L, t, file);
	pl->ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return (0);
}

/* Run one build step; on failure make sure *cause names the file. */
static int
policy_build_step(struct policy *p, lua_CFunction fn, void *arg,
    const char *file, char **cause)
{
	char *c;

	if (policy_enter(p, fn, arg, file, cause) == 0)
		return (0);
	if (strncmp(*cause, file, strlen(file)) != 0) {
		c = *cause;
		xasprintf(cause, "%s: %s", file, c);
		free(c);
	}
	return (-1);
}

/*
 * Whether login.lua is the built-in default, byte for byte (built in, or
 * the copy `make install` puts in [policy] dir).  Its check() with its
 * empty settings returns a plain true for every ctx (tests/lua/login_spec.lua
 * "decides nothing"), and k8sauth.lua, the only module it requires, is always
 * the built-in one (policy_source_module): such a check decides nothing, so
 * policy_login skips the call and the login skips building its ctx.  Any
 * edit, even a comment, makes the policy run on every login again.
 */
static int
policy_login_is_default(const struct policy_source *src)
{
	const struct embed_file *e = embed_find("policy/login.lua");

	return (e != NULL && e->len == src->len &&
	    memcmp(e->data, src->text, src->len) == 0);
}

/* Build p->L from the cached sources.  Returns 0 or -1 with *cause. */
static int
policy_state_build(struct policy *p, char **cause)
{
	struct policy_load api = { p->api_src, 0, LUA_NOREF, 0, 0 };
	struct policy_load login = { p->login_src, 1, LUA_NOREF, 0, 0 };
	lua_State *L;

	p->mem = 0;
	if ((L = lua_newstate(policy_alloc, p)) == NULL) {
		xasprintf(cause, "cannot create a Lua state within %zu bytes",
		    p->memory_limit);
		return (-1);
	}
	lua_atpanic(L, policy_panic);
	/* Before any script runs, so that coroutines inherit it. */
	lua_sethook(L, policy_hook, LUA_MASKCOUNT, POLICY_HOOK_INTERVAL);
	p->L = L;
	p->building = 1;
	if (policy_build_step(p, policy_build_cb, p, "sandbox", cause) != 0 ||
	    policy_build_step(p, policy_load_cb, &api,
		p->api_src->chunkname + 1, cause) != 0 ||
	    policy_build_step(p, policy_load_cb, &login,
		p->login_src->chunkname + 1, cause) != 0) {
		p->building = 0;
		lua_close(L);
		p->L = NULL;
		return (-1);
	}
	p->building = 0;
	p->api_ref = api.ref;
	p->login_ref = login.ref;
	p->login_needs = login.needs;
	p->login_decides =
	    login.has_check && !policy_login_is_default(p->login_src);
	lua_gc(L, LUA_GCCOLLECT, 0);
	return (0);
}

/* After a failed call: collect, and rebuild when memory stays high. */
static void
policy_recover(struct policy *p)
{
	char *cause = NULL;

	if (p->building || p->L == NULL)
		return;
	lua_gc(p->L, LUA_GCCOLLECT, 0);
	if (p->mem <= p->memory_limit / 2)
		return;
	log_warn("policy: %zu of %zu bytes still in use after a failure; rebuilding the Lua state",
	    p->mem, p->memory_limit);
	lua_close(p->L);
	p->L = NULL;
	if (policy_state_build(p, &cause) != 0) {
		log_err("policy: rebuilding the Lua state failed: %s", cause);
		free(cause);
	}
}

/* The cached source called name, or NULL. */
static const struct policy_source *
policy_source_cached(struct policy *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nsrcs; i++) {
		if (strcmp(p->srcs[i]->name, name) == 0)
			return (p->srcs[i]);
	}
	return (NULL);
}

/* Keep text (taken over) as the source name. */
static const struct policy_source *
policy_source_add(struct policy *p, const char *name, const char *chunk,
    char *text, size_t len)
{
	struct policy_source *s;

	p->srcs = xreallocarray(p->srcs, p->nsrcs + 1, sizeof *p->srcs);
	s = p->srcs[p->nsrcs++] = xcalloc(1, sizeof *s);
	s->name = xstrdup(name);
	xasprintf(&s->chunkname, "@%s", chunk);
	s->text = text;
	s->len = len;
	return (s);
}

/*
 * Read dir/rel into the cache as name.  Returns the source, NULL with
 * *cause on a read error, or NULL with *cause unset when the file does not
 * exist.
 */
static const struct policy_source *
policy_source_file(struct policy *p, const char *name, const char *dir,
    const char *rel, char **cause)
{
	const struct policy_source *s;
	struct stat st;
	char *path, *text;
	size_t len;

	xasprintf(&path, "%s/%s", dir, rel);
	if (stat(path, &st) == -1) {
		if (errno != ENOENT && errno != ENOTDIR)
			xasprintf(cause, "%s: %s", path, strerror(errno));
		free(path);
		return (NULL);
	}
	if (util_read_file(path, POLICY_MAX_FILE, &text, &len, cause) != 0) {
		free(path);
		return (NULL);
	}
	if (memchr(text, '\0', len) != NULL || (len > 0 && text[0] == 0x1b)) {
		xasprintf(cause, "%s: not a text Lua file", path);
		free(text);
		free(path);
		return (NULL);
	}
	s = policy_source_add(p, name, path, text, len);
	free(path);
	return (s);
}

/* The embedded file called name into the cache, or NULL. */
static const struct policy_source *
policy_source_embedded(struct policy *p, const char *name)
{
	const struct embed_file *e;
	char *chunk;
	const struct policy_source *s;

	if ((e = embed_find(name)) == NULL)
		return (NULL);
	xasprintf(&chunk, "builtin:%s", name);
	s = policy_source_add(p, name, chunk,
	    xstrndup((const char *)e->data, e->len), e->len);
	free(chunk);
	return (s);
}

/*
 * A policy file (api.lua, login.lua): from [policy] dir when present
 * there, else the embedded default.  NULL with *cause on failure.
 */
static const struct policy_source *
policy_source_policy(struct policy *p, const char *file, char **cause)
{
	const struct policy_source *s = NULL;
	char *name;

	xasprintf(&name, "policy/%s", file);
	if (p->dir != NULL)
		s = policy_source_file(p, name, p->dir, file, cause);
	if (s == NULL && *cause == NULL &&
	    (s = policy_source_embedded(p, name)) == NULL)
		xasprintf(cause, "%s: not in %s and not built in", file,
		    p->dir != NULL ? p->dir : "(no [policy] dir)");
	free(name);
	return (s);
}

/*
 * The module require(name) loads: the embedded lua/NAME.lua, then
 * [policy] lua_dir, then [policy] dir ("a.b" is a/b.lua).  Cached, so a
 * rebuilt state runs the same text.  NULL with *cause when not found.
 */
const struct policy_source *
policy_source_module(struct policy *p, const char *module, char **cause)
{
	const struct policy_source *s;
	char *rel, *name, *c;

	rel = NULL;
	xasprintf(&rel, "%s.lua", module);
	for (c = rel; c < rel + strlen(module); c++) {
		if (*c == '.')
			*c = '/';
	}
	xasprintf(&name, "lua/%s", rel);
	if ((s = policy_source_cached(p, name)) == NULL)
		s = policy_source_embedded(p, name);
	if (s == NULL && p->lua_dir != NULL)
		s = policy_source_file(p, name, p->lua_dir, rel, cause);
	if (s == NULL && *cause == NULL && p->dir != NULL)
		s = policy_source_file(p, name, p->dir, rel, cause);
	if (s == NULL && *cause == NULL)
		xasprintf(cause,
		    "module \"%s\" not found (built-in lua/, [policy] lua_dir, [policy] dir)",
		    module);
	free(name);
	free(rel);
	return (s);
}

/* Parse [policy] protected_roles (comma-separated) into a list. */
static void
policy_parse_roles(struct strlist *out, const char *s)
{
	char *copy, *tok, *next, *t;

	copy = xstrdup(s != NULL ? s : "admin");
	for (tok = copy; tok != NULL; tok = next) {
		if ((next = strchr(tok, ',')) != NULL)
			*next++ = '\0';
		t = util_trim(tok);
		if (*t == '\0')
			continue;
		out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
		out->v[out->n++] = xstrdup(t);
	}
	free(copy);
}

/*
 * Build an engine from the configuration: read both policy files (or the
 * built-in defaults), build the sandboxed state, load and check them.
 * NULL with *cause ("FILE:LINE: message") when anything is wrong.
 */
struct policy *
policy_new(const struct config *cfg, char **cause)
{
	struct policy *p;

	*cause = NULL;
	p = xcalloc(1, sizeof *p);
	p->api_ref = p->login_ref = LUA_NOREF;
	if (cfg->policy_dir != NULL)
		p->dir = xstrdup(cfg->policy_dir);
	if (cfg->policy_lua_dir != NULL)
		p->lua_dir = xstrdup(cfg->policy_lua_dir);
	p->instruction_limit = cfg->policy_instruction_limit > 0
	    ? cfg->policy_instruction_limit
	    : 1000000;
	p->memory_limit = cfg->policy_memory_limit > 0
	    ? (size_t)cfg->policy_memory_limit
	    : 16 * 1024 * 1024;
	policy_parse_roles(&p->protected_roles, cfg->policy_protected_roles);
	if ((p->api_src = policy_source_policy(p, "api.lua", cause)) == NULL ||
	    (p->login_src = policy_source_policy(p, "login.lua", cause)) ==
		NULL ||
	    policy_state_build(p, cause) != 0) {
		policy_free(p);
		return (NULL);
	}
	log_debug("policy: %s and %s loaded (%zu bytes)", p->api_src->name,
	    p->login_src->name, p->mem);
	return (p);
}

/*
 * Whether login.lua's check() can decide anything: 0 when it has none or
 * is the built-in default (policy_login_is_default); policy_login then
 * allows without entering Lua, and the caller need not build a ctx.
 */
int
policy_login_decides(const struct policy *p)
{
	return (p != NULL && p->login_decides);
}

/* What login.lua declared it needs (POLICY_NEED_* bits). */
int
policy_login_needs(const struct policy *p)
{
	return (p != NULL ? p->login_needs : 0);
}

/* Close the state and free the engine. */
void
policy_free(struct policy *p)
{
	size_t i;

	if (p == NULL)
		return;
	if (p->L != NULL)
		lua_close(p->L);
	for (i = 0; i < p->nsrcs; i++) {
		free(p->srcs[i]->name);
		free(p->srcs[i]->chunkname);
		free(p->srcs[i]->text);
		free(p->srcs[i]);
	}
	free(p->srcs);
	strlist_free(&p->protected_roles);
	free(p->dir);
	free(p->lua_dir);
	free(p);
}

/* Compile and smoke-test the configured policies (reload, config-check). */
int
policy_validate(const struct config *cfg, char **cause)
{
	struct policy *p;

	if ((p = policy_new(cfg, cause)) == NULL)
		return (-1);
	policy_free(p);
	return (0);
}

/* Bytes the state holds now. */
size_t
policy_memory(const struct policy *p)
{
	return (p->mem);
}

/* What is running (an action, "login", a file), for log lines. */
const char *
policy_action(const struct policy *p)
{
	return (p->action != NULL ? p->action : "-");
}

/* The call counter; per-call globals belong to one generation. */
long long
policy_generation(const struct policy *p)
{
	return (p->generation);
}

/* [policy] protected_roles as a list. */
const struct strlist *
policy_protected_roles(const struct policy *p)
{
	return (&p->protected_roles);
}

/* Push a JSON value as Lua (null: nil), bounded.  [-0, +1, e] */
static void
policy_push_json(lua_State *L, const cJSON *j, int depth, int *nodes)
{
	const cJSON *c;
	lua_Integer i;
	double d;

	if (++*nodes > POLICY_MAX_NODES)
		luaL_error(L, "input has more than %d values",
		    POLICY_MAX_NODES);
	if (depth > POLICY_MAX_DEPTH)
		luaL_error(L, "input nested deeper than %d", POLICY_MAX_DEPTH);
	luaL_checkstack(L, 4, "input");
	if (cJSON_IsObject(j)) {
		lua_newtable(L);
		cJSON_ArrayForEach(c, j)
		{
			if (cJSON_IsNull(c) || c->string == NULL)
				continue;
			policy_push_json(L, c, depth + 1, nodes);
			lua_setfield(L, -2, c->string);
		}
	} else if (cJSON_IsArray(j)) {
		lua_newtable(L);
		i = 0;
		cJSON_ArrayForEach(c, j)
		{
			i++;
			if (cJSON_IsNull(c))
				continue;
			policy_push_json(L, c, depth + 1, nodes);
			lua_rawseti(L, -2, i);
		}
	} else if (cJSON_IsString(j))
		lua_pushstring(L, j->valuestring);
	else if (cJSON_IsBool(j))
		lua_pushboolean(L, cJSON_IsTrue(j));
	else if (cJSON_IsNumber(j)) {
		d = j->valuedouble;
		if (d == floor(d) && fabs(d) < 9007199254740992.0)
			lua_pushinteger(L, (lua_Integer)d);
		else
			lua_pushnumber(L, d);
	} else
		lua_pushnil(L);
}

/* Set t[k] = s when s is not NULL (t at the top).  [-0, +0, m] */
static void
policy_set_string(lua_State *L, const char *k, const char *s)
{
	if (s == NULL)
		return;
	lua_pushstring(L, s);
	lua_setfield(L, -2, k);
}

/* Push cred, built from the caller.  [-0, +1, m] */
static void
policy_push_caller(lua_State *L, const struct caller *c)
{
	static const char *const kinds[] = { "none", "bootstrap", "keystone",
		"restricted" };
	size_t i;

	lua_createtable(L, 0, 10);
	lua_pushstring(L, (unsigned)c->kind < 4 ? kinds[c->kind] : "none");
	lua_setfield(L, -2, "kind");
	lua_pushboolean(L, c->is_admin);
	lua_setfield(L, -2, "is_admin");
	policy_set_string(L, "user_id", c->user_id);
	policy_set_string(L, "user_domain_id", c->user_domain_id);
	policy_set_string(L, "project_id", c->project_id);
	policy_set_string(L, "project_domain_id", c->project_domain_id);
	policy_set_string(L, "domain_id", c->domain_id);
	lua_pushboolean(L, c->system);
	lua_setfield(L, -2, "system");
	lua_createtable(L, (int)c->roles.n, 0);
	for (i = 0; i < c->roles.n; i++) {
		lua_pushstring(L, c->roles.v[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, -2, "roles");
}

/* The reason at idx (a string or nil), copied and capped.  No Lua error. */
static char *
policy_reason(lua_State *L, int idx, const char *dflt)
{
	size_t len;
	const char *s;

	if (lua_type(L, idx) != LUA_TSTRING)
		return (xstrdup(dflt));
	s = lua_tolstring(L, idx, &len);
	return (xstrndup(s, len > POLICY_MAX_REASON ? POLICY_MAX_REASON : len));
}

/*
 * The log line of a policy that failed closed, its error escaped: a Lua
 * error may quote a target's or a review's text.
 */
static void
policy_log_failed(const char *reason)
{
	char *esc = log_escape(reason, 1024);

	log_warn("policy: failed closed: %s", esc);
	free(esc);
}

/* Evaluate one api.lua rule (protected). */
static int
policy_authorize_cb(lua_State *L)
{
	struct policy_api_call *c = lua_touserdata(L, 1);
	struct policy *p;
	int nodes = 0;
	void *ud;

	lua_getallocf(L, &ud);
	p = ud;
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->api_ref);
	lua_getfield(L, -1, c->action);
	if (lua_isnil(L, -1)) {
		c->decision = POLICY_DENY;
		xasprintf(&c->reason, "no rule for %s", c->action);
		return (0);
	}
	if (lua_type(L, -1) != LUA_TFUNCTION)
		return (luaL_error(L, "the rule is a %s, not a function",
		    luaL_typename(L, -1)));
	policy_push_caller(L, c->caller);
	if (c->target != NULL)
		policy_push_json(L, c->target, 0, &nodes);
	else
		lua_newtable(L);
	lua_call(L, 2, 2);
	if (lua_type(L, -2) != LUA_TBOOLEAN)
		return (luaL_error(L, "the rule returned a %s, not a boolean",
		    luaL_typename(L, -2)));
	if (lua_toboolean(L, -2)) {
		c->decision = POLICY_ALLOW;
		return (0);
	}
	if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
		return (luaL_error(L,
		    "the rule returned false and a %s, not a string reason",
		    luaL_typename(L, -1)));
	c->decision = POLICY_DENY;
	c->reason = policy_reason(L, -1, "denied by policy");
	return (0);
}

/*
 * Decide an admin action: 0 (POLICY_ALLOW), -1 (POLICY_DENY, *reason from
 * the policy) or -2 (POLICY_ERROR, *reason describes the failure, already
 * logged).  Callers treat -2 as a denial.
 */
int
policy_authorize(struct policy *p, const char *action,
    const struct caller *caller, const cJSON *target, char **reason)
{
	struct policy_api_call c;
	char *cause = NULL;

	*reason = NULL;
	if (p->L == NULL) {
		xasprintf(reason, "%s: the policy state is unavailable",
		    action);
		log_err("policy: %s failed closed: %s", action, *reason);
		return (POLICY_ERROR);
	}
	memset(&c, 0, sizeof c);
	c.action = action;
	c.caller = caller;
	c.target = target;
	if (policy_enter(p, policy_authorize_cb, &c, action, &cause) != 0) {
		free(c.reason);
		xasprintf(reason, "%s (%s): %s", action,
		    p->api_src->chunkname + 1, cause);
		free(cause);
		policy_log_failed(*reason);
		policy_recover(p);
		return (POLICY_ERROR);
	}
	if (c.decision == POLICY_DENY)
		*reason = c.reason;
	return (c.decision);
}

/* Clear a login result. */
void
policy_login_result_clear(struct policy_login_result *r)
{
	free(r->restriction_id);
	cJSON_Delete(r->audit);
	memset(r, 0, sizeof *r);
}

/* An identifier: 1..64 of [A-Za-z0-9_-]. */
static int
policy_is_ident(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > POLICY_MAX_ID)
		return (0);
	for (i = 0; i < len; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
			s[i] == '-'))
			return (0);
	}
	return (1);
}

/* Check the audit table at idx: string keys, scalar values.  [e] */
static void
policy_check_audit(lua_State *L, int idx)
{
	int n = 0;
	size_t len;

	if (lua_type(L, idx) != LUA_TTABLE)
		luaL_error(L, "audit must be a table, not a %s",
		    luaL_typename(L, idx));
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		if (++n > POLICY_MAX_AUDIT)
			luaL_error(L, "audit has more than %d fields",
			    POLICY_MAX_AUDIT);
		if (lua_type(L, -2) != LUA_TSTRING ||
		    !policy_is_ident(lua_tostring(L, -2), lua_rawlen(L, -2)))
			luaL_error(L, "audit keys must be identifiers");
		switch (lua_type(L, -1)) {
		case LUA_TSTRING:
			lua_tolstring(L, -1, &len);
			if (len > POLICY_MAX_REASON)
				luaL_error(L, "audit.%s is longer than %d",
				    lua_tostring(L, -2), POLICY_MAX_REASON);
			break;
		case LUA_TNUMBER:
		case LUA_TBOOLEAN:
			break;
		default:
			luaL_error(L,
			    "audit.%s is a %s, not a string, number or boolean",
			    lua_tostring(L, -2), luaL_typename(L, -1));
		}
		lua_pop(L, 1);
	}
}

/* The audit table at idx (already checked) as JSON.  No Lua error. */
static cJSON *
policy_audit_json(lua_State *L, int idx)
{
	cJSON *o = cJSON_CreateObject();
	size_t len;
	const char *s;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *k = lua_tostring(L, -2);

		if (lua_type(L, -1) == LUA_TSTRING) {
			s = lua_tolstring(L, -1, &len);
			cJSON_AddItemToObject(o, k, cJSON_CreateString(s));
		} else if (lua_type(L, -1) == LUA_TBOOLEAN)
			cJSON_AddBoolToObject(o, k, lua_toboolean(L, -1));
		else
			cJSON_AddNumberToObject(o, k, lua_tonumber(L, -1));
		lua_pop(L, 1);
	}
	return (o);
}

/*
 * Check the overrides table at idx and copy it into out: first a pass that
 * may raise (unknown key, wrong type), then one that cannot.  [e]
 */
static void
policy_login_overrides(lua_State *L, int idx, struct policy_login_result *out)
{
	lua_Integer ttl = 0;
	const char *rid = NULL, *k;
	size_t len;
	int audit = 0, isnum;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		if (k != NULL && strcmp(k, "expires_in") == 0) {
			ttl = lua_tointegerx(L, -1, &isnum);
			if (!isnum || lua_type(L, -1) != LUA_TNUMBER ||
			    ttl < 1 || ttl > 0x7fffffff)
				luaL_error(L,
				    "expires_in must be a positive integer (seconds)");
		} else if (k != NULL && strcmp(k, "restriction_id") == 0) {
			rid = lua_type(L, -1) == LUA_TSTRING
			    ? lua_tolstring(L, -1, &len)
			    : NULL;
			if (rid == NULL || !policy_is_ident(rid, len))
				luaL_error(L,
				    "restriction_id must be an id string");
		} else if (k != NULL && strcmp(k, "audit") == 0) {
			policy_check_audit(L, lua_gettop(L));
			audit = 1;
		} else
			luaL_error(L,
			    "unknown override \"%s\" (expires_in, restriction_id, audit)",
			    k != NULL ? k : luaL_typename(L, -2));
		lua_pop(L, 1);
	}
	/* From here on, nothing raises. */
	out->expires_in = (long)ttl;
	if (rid != NULL)
		out->restriction_id = xstrdup(rid);
	if (audit) {
		lua_getfield(L, idx, "audit"); /* checked: a plain read */
		out->audit = policy_audit_json(L, lua_gettop(L));
		lua_pop(L, 1);
	}
}

/* Run login.lua's check(ctx) (protected). */
static int
policy_login_cb(lua_State *L)
{
	struct policy_login_call *c = lua_touserdata(L, 1);
	struct policy *p;
	int nodes = 0;
	void *ud;

	lua_getallocf(L, &ud);
	p = ud;
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->login_ref);
	lua_pushliteral(L, "check");
	if (lua_rawget(L, -2) == LUA_TNIL) {
		c->decision = POLICY_ALLOW;
		return (0);
	}
	if (c->ctx != NULL)
		policy_push_json(L, c->ctx, 0, &nodes);
	else
		lua_newtable(L);
	lua_call(L, 1, 2);
	if (lua_type(L, -2) != LUA_TBOOLEAN)
		return (luaL_error(L, "check returned a %s, not a boolean",
		    luaL_typename(L, -2)));
	if (!lua_toboolean(L, -2)) {
		if (!lua_isnil(L, -1) && lua_type(L, -1) != LUA_TSTRING)
			return (luaL_error(L,
			    "check returned false and a %s, not a string reason",
			    luaL_typename(L, -1)));
		c->decision = POLICY_DENY;
		c->reason = policy_reason(L, -1, "denied by policy");
		return (0);
	}
	if (lua_isnil(L, -1)) {
		c->decision = POLICY_ALLOW;
		return (0);
	}
	if (lua_type(L, -1) != LUA_TTABLE || lua_getmetatable(L, -1))
		return (luaL_error(L,
		    "check returned true and a %s, not a plain overrides table",
		    luaL_typename(L, -1)));
	policy_login_overrides(L, lua_gettop(L), c->out);
	c->decision = POLICY_ALLOW;
	return (0);
}

/*
 * Run the login hook on ctx: 0 (allow; *out holds overrides, zero when
 * none), -1 (deny, *reason from the policy: log it, do not send it) or -2
 * (error, *reason describes it, already logged: answer 500).  ctx may
 * be NULL when policy_login_decides() is 0: no Lua runs then.
 */
int
policy_login(struct policy *p, const cJSON *ctx,
    struct policy_login_result *out, char **reason)
{
	struct policy_login_call c;
	char *cause = NULL;

	*reason = NULL;
	memset(out, 0, sizeof *out);
	if (p->L == NULL) {
		xasprintf(reason, "login: the policy state is unavailable");
		log_err("policy: failed closed: %s", *reason);
		return (POLICY_ERROR);
	}
	if (!p->login_decides)
		return (POLICY_ALLOW); /* what check() would answer */
	memset(&c, 0, sizeof c);
	c.ctx = ctx;
	c.out = out;
	if (policy_enter(p, policy_login_cb, &c, "login", &cause) != 0) {
		free(c.reason);
		policy_login_result_clear(out);
		xasprintf(reason, "login (%s): %s", p->login_src->chunkname + 1,
		    cause);
		free(cause);
		policy_log_failed(*reason);
		policy_recover(p);
		return (POLICY_ERROR);
	}
	if (c.decision == POLICY_DENY) {
		policy_login_result_clear(out);
		*reason = c.reason;
	}
	return (c.decision);
}
