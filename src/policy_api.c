/*
 * policy_api.c: every C function a policy script can reach, and the
 * sandbox environment built from them.
 *
 * policy.c opens the standard libraries one by one (never luaL_openlibs)
 * and calls policy_api_sandbox() once per Lua state; from then on scripts
 * see only what this file puts in the base environment:
 *
 *   base	assert error ipairs next pairs pcall xpcall rawequal rawget
 *		rawlen select tonumber tostring type getmetatable _VERSION,
 *		plus wrapped print (to the log), collectgarbage ("count"
 *		only), setmetatable (no __gc), rawset (not on read-only
 *		tables), load (text only, sandboxed env), require (embedded
 *		lua/, [policy] lua_dir, [policy] dir; text only)
 *   string	without dump; find/match/gmatch/gsub/rep wrapped: sizes
 *		capped, estimated cost charged to the instruction budget
 *   table	sort capped; sort, concat, move, insert and remove
 *		charged; math, utf8, coroutine as they are
 *   os		time, clock, date only
 *   k8sauth_core	log(level, msg), protected_roles (read-only list)
 *
 * Library tables are read-only proxies (__newindex raises, __metatable
 * hides the real table) and the string metatable is protected, so one
 * script cannot change what another sees.  Each policy file and module
 * gets its own environment chained to the base: globals assigned while
 * the file loads persist, globals assigned during a call live for that
 * call only (see policy_api_env_index).  Stack effects are noted as
 * [-pop, +push] in the Lua manual's notation.  Errors raised here always
 * run under policy.c's lua_pcall.  Runs on the owning worker's thread.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "k8sauth.h"

#define POLICY_API_MAX_SUBJECT    (1024 * 1024) /* pattern functions */
#define POLICY_API_MAX_PATTERN    256
#define POLICY_API_PATTERN_COST   1e7           /* estimated steps */
#define POLICY_API_STEPS_PER_INSN 4             /* pattern steps charged */
#define POLICY_API_BYTES_PER_INSN 64            /* bytes built, charged */
#define POLICY_API_MAX_REP        (1024 * 1024) /* string.rep result */
#define POLICY_API_MAX_SORT       100000        /* table.sort elements */
#define POLICY_API_MAX_LOAD       (64 * 1024)   /* load() chunk */
#define POLICY_API_MAX_LOG        1024          /* log line from a policy */
#define POLICY_API_MAX_MODULE     64            /* module name */

/* Registry keys (their addresses are the keys). */
static const char policy_api_key_base = 'B';
static const char policy_api_key_baseproxy = 'P';

static const char *const policy_api_base_copy[] = { "assert", "error", "ipairs",
	"next", "pairs", "pcall", "xpcall", "rawequal", "rawget", "rawlen",
	"select", "tonumber", "tostring", "type", "getmetatable", "_VERSION",
	NULL };

/* The engine that owns L (the allocator's user data). */
static struct policy *
policy_api_policy(lua_State *L)
{
	void *ud;

	lua_getallocf(L, &ud);
	return (ud);
}

/* Is the value at idx a table marked read-only?  [-0, +0] */
static int
policy_api_is_ro(lua_State *L, int idx)
{
	int ro;

	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return (0);
	lua_pushliteral(L, "__ro");
	lua_rawget(L, -2);
	ro = lua_toboolean(L, -1);
	lua_pop(L, 2);
	return (ro);
}

/* __newindex of read-only tables: always raises.  [-0, +0, e] */
static int
policy_api_ro_newindex(lua_State *L)
{
	return (luaL_error(L, "attempt to modify a read-only table"));
}

/*
 * The iterator __pairs hands out: next over the real table (upvalue 1),
 * which itself is never given to the script.  [-2, +1|2, e]
 */
static int
policy_api_ro_next(lua_State *L)
{
	lua_settop(L, 2);
	if (lua_next(L, lua_upvalueindex(1)) != 0)
		return (2);
	lua_pushnil(L);
	return (1);
}

/* __pairs of a read-only proxy: iterate the real table.  [-0, +3] */
static int
policy_api_ro_pairs(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1)); /* policy_api_ro_next */
	lua_pushvalue(L, 1);
	lua_pushnil(L);
	return (3);
}

/* __len of a read-only proxy.  [-0, +1] */
static int
policy_api_ro_len(lua_State *L)
{
	lua_pushinteger(L, (lua_Integer)lua_rawlen(L, lua_upvalueindex(1)));
	return (1);
}

/*
 * Replace the table at the top with a read-only proxy of it.  [-1, +1, m]
 */
static void
policy_api_readonly(lua_State *L)
{
	lua_newtable(L);          /* real proxy */
	lua_createtable(L, 0, 6); /* real proxy mt */
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, policy_api_ro_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, policy_api_ro_next, 1);
	lua_pushcclosure(L, policy_api_ro_pairs, 1);
	lua_setfield(L, -2, "__pairs");
	lua_pushvalue(L, -3);
	lua_pushcclosure(L, policy_api_ro_len, 1);
	lua_setfield(L, -2, "__len");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "__ro");
	lua_setmetatable(L, -2); /* real proxy */
	lua_remove(L, -2);       /* proxy */
}

/* print(...): one info line in the server log, escaped.  [-n, +0, m] */
static int
policy_api_print(lua_State *L)
{
	struct policy *p = policy_api_policy(L);
	luaL_Buffer b;
	char *esc;
	int i, n = lua_gettop(L);

	luaL_buffinit(L, &b);
	for (i = 1; i <= n; i++) {
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	esc = log_escape(lua_tostring(L, -1), POLICY_API_MAX_LOG);
	log_info("policy %s: print: %s", policy_action(p), esc);
	free(esc);
	return (0);
}

/* k8sauth_core.log(level, msg): a log line at level.  [-2, +0, e] */
static int
policy_api_log(lua_State *L)
{
	static const char *const names[] = { "debug", "info", "warn", "error",
		NULL };
	static const enum log_level levels[] = { LOGL_DEBUG, LOGL_INFO,
		LOGL_WARN, LOGL_ERR };
	struct policy *p = policy_api_policy(L);
	int lvl = luaL_checkoption(L, 1, NULL, names);
	const char *msg = luaL_checkstring(L, 2);
	char *esc;

	esc = log_escape(msg, POLICY_API_MAX_LOG);
	log_msg(levels[lvl], "policy %s: %s", policy_action(p), esc);
	free(esc);
	return (0);
}

/* collectgarbage(["count"]): memory in use (KiB); nothing else.  [-1, +1] */
static int
policy_api_collectgarbage(lua_State *L)
{
	const char *opt = luaL_optstring(L, 1, "count");
	int kb, b;

	if (strcmp(opt, "count") != 0)
		return (
		    luaL_error(L, "collectgarbage: only \"count\" is allowed"));
	kb = lua_gc(L, LUA_GCCOUNT, 0);
	b = lua_gc(L, LUA_GCCOUNTB, 0);
	lua_pushnumber(L, (lua_Number)kb + ((lua_Number)b / 1024));
	return (1);
}

/* setmetatable(t, mt): as base, but no finalizers (__gc).  [-2, +1, e] */
static int
policy_api_setmetatable(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		if (lua_getfield(L, 2, "__gc") != LUA_TNIL)
			return (
			    luaL_error(L, "setmetatable: __gc is not allowed"));
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return (luaL_error(L, "cannot change a protected metatable"));
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return (1);
}

/* rawset(t, k, v): as base, but never on read-only tables.  [-3, +1, e] */
static int
policy_api_rawset(lua_State *L)
{
	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_checkany(L, 2);
	luaL_checkany(L, 3);
	if (policy_api_is_ro(L, 1))
		return (luaL_error(L, "attempt to modify a read-only table"));
	lua_settop(L, 3);
	lua_rawset(L, 1);
	return (1);
}

/*
 * load(chunk [, chunkname [, mode [, env]]]): text chunks only, never
 * bytecode; env defaults to a fresh table reading the base environment.
 * Returns the function, or nil and a message.  [-4, +1|2, e]
 */
static int
policy_api_load(lua_State *L)
{
	size_t len;
	const char *s = luaL_checklstring(L, 1, &len);
	const char *name = luaL_optstring(L, 2, "=(load)");
	const char *mode = luaL_optstring(L, 3, "t");

	if (strcmp(mode, "t") != 0)
		return (luaL_error(L, "load: only text chunks (mode \"t\")"));
	if (len > POLICY_API_MAX_LOAD)
		return (luaL_error(L, "load: chunk longer than %d bytes",
		    POLICY_API_MAX_LOAD));
	if (!lua_isnoneornil(L, 4))
		luaL_checktype(L, 4, LUA_TTABLE);
	if (luaL_loadbufferx(L, s, len, name, "t") != LUA_OK) {
		lua_pushnil(L);
		lua_insert(L, -2);
		return (2);
	}
	if (!lua_isnoneornil(L, 4))
		lua_pushvalue(L, 4);
	else {
		lua_newtable(L);
		lua_createtable(L, 0, 2);
		lua_rawgetp(L, LUA_REGISTRYINDEX, &policy_api_key_baseproxy);
		lua_setfield(L, -2, "__index");
		lua_pushboolean(L, 0);
		lua_setfield(L, -2, "__metatable");
		lua_setmetatable(L, -2);
	}
	lua_setupvalue(L, -2, 1);
	return (1);
}

/* A module name: [A-Za-z0-9_.], not starting or ending with ".". */
static int
policy_api_module_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > POLICY_API_MAX_MODULE || s[0] == '.' ||
	    s[len - 1] == '.' || strstr(s, "..") != NULL)
		return (0);
	for (i = 0; i < len; i++) {
		if (!((s[i] >= 'a' && s[i] <= 'z') ||
			(s[i] >= 'A' && s[i] <= 'Z') ||
			(s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
			s[i] == '.'))
			return (0);
	}
	return (1);
}

/*
 * require(name): the module from the embedded lua/, [policy] lua_dir or
 * [policy] dir, loaded as text in its own environment, cached per
 * requiring policy (upvalue 1).  [-1, +1, e]
 */
static int
policy_api_require(lua_State *L)
{
	struct policy *p = policy_api_policy(L);
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	const struct policy_source *src;
	char *cause = NULL;

	if (!policy_api_module_ok(name, len))
		return (luaL_error(L, "require: bad module name \"%s\"", name));
	lua_settop(L, 1);
	lua_pushvalue(L, 1);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) {
		if (lua_type(L, -1) == LUA_TLIGHTUSERDATA)
			return (luaL_error(L, "require: loop loading \"%s\"",
			    name));
		return (1);
	}
	lua_pop(L, 1);
	if ((src = policy_source_module(p, name, &cause)) == NULL) {
		lua_pushstring(L, cause);
		free(cause);
		return (lua_error(L));
	}
	lua_pushvalue(L, 1);
	lua_pushlightuserdata(L, (void *)&policy_api_key_base);
	lua_rawset(L, lua_upvalueindex(1)); /* mark "loading" */
	if (luaL_loadbufferx(L, src->text, src->len, src->chunkname, "t") !=
	    LUA_OK)
		return (lua_error(L));
	policy_api_env_new(L); /* chunk env */
	lua_pushvalue(L, -1);
	lua_setupvalue(L, -3, 1); /* chunk's _ENV */
	lua_insert(L, -2);        /* env chunk */
	lua_call(L, 0, 1);        /* env result */
	policy_api_env_seal(L, -2);
	lua_remove(L, -2);
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, 1);
	lua_pushvalue(L, -2);
	lua_rawset(L, lua_upvalueindex(1));
	return (1);
}

/*
 * Estimate the worst-case steps of matching pattern against n bytes: each
 * backtracking quantifier (* + - %b) multiplies by n+1, each ? by 2, and
 * an unanchored search by n+1 more.  Returns 0 with *costp when within
 * the cap.
 */
static int
policy_api_pattern_cost(const char *pat, size_t plen, size_t n, int anchor_ok,
    double *costp, const char **why)
{
	size_t i = 0;
	int q = 0, opt = 0, anchored = 0;
	double cost;

	if (plen > POLICY_API_MAX_PATTERN) {
		*why = "pattern longer than 256 bytes";
		return (-1);
	}
	if (n > POLICY_API_MAX_SUBJECT) {
		*why = "subject longer than 1 MiB";
		return (-1);
	}
	if (anchor_ok && plen > 0 && pat[0] == '^') {
		anchored = 1;
		i = 1;
	}
	for (; i < plen; i++) {
		switch (pat[i]) {
		case '%':
			if (i + 1 < plen && pat[i + 1] == 'b') {
				q++;
				i += 3;
			} else
				i++;
			break;
		case '[':
			i++;
			if (i < plen && pat[i] == '^')
				i++;
			if (i < plen && pat[i] == ']')
				i++;
			while (i < plen && pat[i] != ']') {
				if (pat[i] == '%')
					i++;
				i++;
			}
			break;
		case '*':
		case '+':
		case '-':
			q++;
			break;
		case '?':
			opt++;
			break;
		}
	}
	cost = anchored ? 1 : (double)n + 1;
	while (q-- > 0 && cost <= POLICY_API_PATTERN_COST)
		cost *= (double)n + 1;
	while (opt-- > 0 && cost <= POLICY_API_PATTERN_COST)
		cost *= 2;
	if (cost > POLICY_API_PATTERN_COST) {
		*why = "pattern too complex for the subject length";
		return (-1);
	}
	*costp = cost;
	return (0);
}

/*
 * The pattern functions: check subject and pattern, then call the real
 * function (upvalue 1) with the same arguments.  Upvalue 2 is the name,
 * upvalue 3 true when a leading "^" anchors the match.  [-n, +r, e]
 */
static int
policy_api_pattern(lua_State *L)
{
	const char *name = lua_tostring(L, lua_upvalueindex(2));
	int anchor_ok = lua_toboolean(L, lua_upvalueindex(3));
	size_t n, plen;
	const char *why;
	const char *pat;
	double cost;

	luaL_checklstring(L, 1, &n);
	pat = luaL_checklstring(L, 2, &plen);
	if (strcmp(name, "find") == 0 && lua_toboolean(L, 4)) {
		if (n > POLICY_API_MAX_SUBJECT || plen > POLICY_API_MAX_SUBJECT)
			return (luaL_error(L,
			    "string.find: subject longer than 1 MiB"));
		cost = (double)n;
	} else if (policy_api_pattern_cost(pat, plen, n, anchor_ok, &cost,
		       &why) != 0)
		return (luaL_error(L, "string.%s: %s", name, why));
	policy_charge(L, cost / POLICY_API_STEPS_PER_INSN);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return (lua_gettop(L));
}

/* string.rep(s, n [, sep]) with the result capped.  [-3, +1, e] */
static int
policy_api_rep(lua_State *L)
{
	size_t l, lsep = 0;
	lua_Integer n;

	luaL_checklstring(L, 1, &l);
	n = luaL_checkinteger(L, 2);
	luaL_optlstring(L, 3, "", &lsep);
	if (n > 0 &&
	    (l + lsep == 0 ? 0
			   : (lua_Unsigned)n > POLICY_API_MAX_REP / (l + lsep)))
		return (luaL_error(L, "string.rep: result longer than 1 MiB"));
	if (n > 0)
		policy_charge(L,
		    (double)n * (double)(l + lsep) / POLICY_API_BYTES_PER_INSN);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return (1);
}

/* table.sort(t [, comp]) with the length capped and charged.  [-2, +0, e] */
static int
policy_api_sort(lua_State *L)
{
	lua_Integer n;

	luaL_checktype(L, 1, LUA_TTABLE);
	if ((n = luaL_len(L, 1)) > POLICY_API_MAX_SORT)
		return (luaL_error(L, "table.sort: more than %d elements",
		    POLICY_API_MAX_SORT));
	if (n > 1)
		policy_charge(L, (double)n * log2((double)n));
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 0);
	return (0);
}

/*
 * table.move(a1, f, e, t [, a2]): the elements copied are charged before
 * the copy, a C loop the count hook never sees.  [-5, +1, e]
 */
static int
policy_api_move(lua_State *L)
{
	lua_Integer f, e;

	f = luaL_checkinteger(L, 2);
	e = luaL_checkinteger(L, 3);
	if (e >= f)
		policy_charge(L, (double)e - (double)f + 1);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return (1);
}

/*
 * table.insert and table.remove: the elements they may shift (the
 * length, which __len can make as large as it likes) are charged before
 * the C loop runs.  [-n, +r, e]
 */
static int
policy_api_shift(lua_State *L)
{
	lua_Integer n;

	luaL_checktype(L, 1, LUA_TTABLE);
	if ((n = luaL_len(L, 1)) > 0)
		policy_charge(L, (double)n);
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return (lua_gettop(L));
}

/* table.concat(...), its result charged by length.  [-4, +1, e] */
static int
policy_api_concat(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	policy_charge(L, (double)lua_rawlen(L, -1) / POLICY_API_BYTES_PER_INSN);
	return (1);
}

/* Replace field name of the table at idx with f(original).  [-0, +0, m] */
static void
policy_api_wrap(lua_State *L, int idx, const char *name, lua_CFunction f,
    int anchor_ok)
{
	idx = lua_absindex(L, idx);
	lua_getfield(L, idx, name);
	if (f == policy_api_pattern) {
		lua_pushstring(L, name);
		lua_pushboolean(L, anchor_ok);
		lua_pushcclosure(L, f, 3);
	} else
		lua_pushcclosure(L, f, 1);
	lua_setfield(L, idx, name);
}

/*
 * The string library: wrap the C functions with super-linear cost, drop
 * dump, protect the string metatable.  The library table (and metatable
 * __index) is the real one, reachable only through the proxy.  [-0, +0]
 */
static void
policy_api_string(lua_State *L, int lib)
{
	policy_api_wrap(L, lib, "find", policy_api_pattern, 1);
	policy_api_wrap(L, lib, "match", policy_api_pattern, 1);
	policy_api_wrap(L, lib, "gmatch", policy_api_pattern, 0);
	policy_api_wrap(L, lib, "gsub", policy_api_pattern, 0);
	policy_api_wrap(L, lib, "rep", policy_api_rep, 0);
	lua_pushnil(L);
	lua_setfield(L, lib, "dump");
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pushvalue(L, lib);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 2);
}

/* Copy the named fields of the table at src into a new table.  [-0, +1] */
static void
policy_api_pick(lua_State *L, int src, const char *const *names)
{
	src = lua_absindex(L, src);
	lua_newtable(L);
	for (; *names != NULL; names++) {
		lua_getfield(L, src, *names);
		lua_setfield(L, -2, *names);
	}
}

/* Set base[name] to a read-only proxy of LOADED[lib].  [-0, +0, m] */
static void
policy_api_library(lua_State *L, int base, const char *lib, const char *name)
{
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_getfield(L, -1, lib);
	lua_remove(L, -2);
	luaL_checktype(L, -1, LUA_TTABLE);
	policy_api_readonly(L);
	lua_setfield(L, base, name);
}

/* k8sauth_core: log and the protected role list.  [-0, +1, m] */
static void
policy_api_core(lua_State *L, struct policy *p)
{
	const struct strlist *roles = policy_protected_roles(p);
	size_t i;

	lua_createtable(L, 0, 2);
	lua_pushcfunction(L, policy_api_log);
	lua_setfield(L, -2, "log");
	lua_createtable(L, (int)roles->n, 0);
	for (i = 0; i < roles->n; i++) {
		lua_pushstring(L, roles->v[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	policy_api_readonly(L);
	lua_setfield(L, -2, "protected_roles");
	policy_api_readonly(L);
}

/*
 * Build the base environment from the libraries policy.c opened (base,
 * string, table, math, utf8, coroutine, os in LOADED and the real global
 * table) and keep it in the registry.  The real global table is never
 * given to a script.  [-0, +0, m]
 */
void
policy_api_sandbox(lua_State *L, struct policy *p)
{
	static const char *const os_names[] = { "time", "clock", "date", NULL };
	static const luaL_Reg wrapped[] = { { "print", policy_api_print },
		{ "collectgarbage", policy_api_collectgarbage },
		{ "setmetatable", policy_api_setmetatable },
		{ "rawset", policy_api_rawset }, { "load", policy_api_load },
		{ NULL, NULL } };
	int base;

	lua_pushglobaltable(L);
	policy_api_pick(L, -1, policy_api_base_copy);
	lua_remove(L, -2);
	base = lua_gettop(L);
	luaL_setfuncs(L, wrapped, 0);

	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_getfield(L, -1, LUA_STRLIBNAME);
	policy_api_string(L, lua_gettop(L));
	lua_pop(L, 1);
	lua_getfield(L, -1, LUA_TABLIBNAME);
	policy_api_wrap(L, -1, "sort", policy_api_sort, 0);
	policy_api_wrap(L, -1, "concat", policy_api_concat, 0);
	policy_api_wrap(L, -1, "move", policy_api_move, 0);
	policy_api_wrap(L, -1, "insert", policy_api_shift, 0);
	policy_api_wrap(L, -1, "remove", policy_api_shift, 0);
	lua_pop(L, 1);
	lua_getfield(L, -1, LUA_OSLIBNAME);
	policy_api_pick(L, -1, os_names);
	policy_api_readonly(L);
	lua_setfield(L, base, "os");
	lua_pop(L, 2);

	policy_api_library(L, base, LUA_STRLIBNAME, "string");
	policy_api_library(L, base, LUA_TABLIBNAME, "table");
	policy_api_library(L, base, LUA_MATHLIBNAME, "math");
	policy_api_library(L, base, LUA_UTF8LIBNAME, "utf8");
	policy_api_library(L, base, LUA_COLIBNAME, "coroutine");
	policy_api_core(L, p);
	lua_setfield(L, base, "k8sauth_core");

	lua_pushvalue(L, base);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &policy_api_key_base);
	policy_api_readonly(L);
	lua_rawsetp(L, LUA_REGISTRYINDEX, &policy_api_key_baseproxy);
}

/*
 * The per-call scratch table of an environment (metatable at upvalue 1),
 * replaced by an empty one when a new call started.  Pushes it, or nil
 * when it is stale and create is 0.  [-0, +1, m]
 */
static void
policy_api_env_scratch(lua_State *L, int create)
{
	struct policy *p = policy_api_policy(L);
	int mt = lua_upvalueindex(1);
	lua_Integer gen;

	lua_getfield(L, mt, "gen");
	gen = lua_tointeger(L, -1);
	lua_pop(L, 1);
	if (gen == policy_generation(p)) {
		lua_getfield(L, mt, "scratch");
		return;
	}
	if (!create) {
		lua_pushnil(L);
		return;
	}
	lua_newtable(L);
	lua_pushvalue(L, -1);
	lua_setfield(L, mt, "scratch");
	lua_pushinteger(L, policy_generation(p));
	lua_setfield(L, mt, "gen");
}

/*
 * __index of a policy environment: this call's globals, then the ones
 * set while the file loaded, then the base environment.  [-2, +1]
 */
static int
policy_api_env_index(lua_State *L)
{
	int mt = lua_upvalueindex(1);

	policy_api_env_scratch(L, 0);
	if (!lua_isnil(L, -1)) {
		lua_pushvalue(L, 2);
		if (lua_rawget(L, -2) != LUA_TNIL)
			return (1);
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
	lua_getfield(L, mt, "frozen");
	lua_pushvalue(L, 2);
	if (lua_rawget(L, -2) != LUA_TNIL)
		return (1);
	lua_rawgetp(L, LUA_REGISTRYINDEX, &policy_api_key_base);
	lua_pushvalue(L, 2);
	lua_rawget(L, -2);
	return (1);
}

/*
 * __newindex of a policy environment: while the file loads, into its
 * lasting globals; once sealed, into this call's scratch.  [-3, +0, m]
 */
static int
policy_api_env_newindex(lua_State *L)
{
	int mt = lua_upvalueindex(1);

	lua_getfield(L, mt, "sealed");
	if (lua_toboolean(L, -1))
		policy_api_env_scratch(L, 1);
	else
		lua_getfield(L, mt, "frozen");
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_rawset(L, -3);
	return (0);
}

/*
 * Push a new, empty policy environment: reads go through
 * policy_api_env_index, writes through policy_api_env_newindex; its own
 * require (with its own module cache) and _G live in its lasting
 * globals.  [-0, +1, m]
 */
void
policy_api_env_new(lua_State *L)
{
	int mt, frozen;

	lua_newtable(L);          /* env */
	lua_createtable(L, 0, 8); /* env mt */
	mt = lua_gettop(L);
	lua_newtable(L);
	frozen = lua_gettop(L);
	lua_pushvalue(L, mt - 1);
	lua_setfield(L, frozen, "_G");
	lua_newtable(L); /* module cache */
	lua_pushcclosure(L, policy_api_require, 1);
	lua_setfield(L, frozen, "require");
	lua_setfield(L, mt, "frozen");
	lua_pushvalue(L, mt);
	lua_pushcclosure(L, policy_api_env_index, 1);
	lua_setfield(L, mt, "__index");
	lua_pushvalue(L, mt);
	lua_pushcclosure(L, policy_api_env_newindex, 1);
	lua_setfield(L, mt, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, mt, "__metatable");
	lua_pushboolean(L, 1);
	lua_setfield(L, mt, "__ro");
	lua_setmetatable(L, -2); /* env */
}

/*
 * Seal the environment at idx: from now on globals assigned during a call
 * last for that call only.  Other values are left alone.  [-0, +0]
 */
void
policy_api_env_seal(lua_State *L, int idx)
{
	idx = lua_absindex(L, idx);
	if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx))
		return;
	lua_pushliteral(L, "frozen");
	if (lua_rawget(L, -2) == LUA_TTABLE) {
		lua_pushliteral(L, "sealed");
		lua_pushboolean(L, 1);
		lua_rawset(L, -4);
	}
	lua_pop(L, 2);
}
