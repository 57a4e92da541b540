-- login.lua: the operator's say on each login (the default policy).
--
-- check(ctx) runs after the built-in checks passed (instance and role
-- enabled, JWT bounds, TokenReview, bound names/namespaces/pods).  Return
--   true                        to issue the token as the role says;
--   false, "reason"             to refuse (401 policy_denied; the reason is
--                               logged, never sent to the client);
--   true, {expires_in = N,      to shorten the token's lifetime (seconds;
--          restriction_id = ID, never lengthens it), to issue it from
--          audit = {k = v}}     another restriction of the same domain,
--                               and to add fields to the audit log line.
-- A runtime error or an exhausted budget is 500 policy_error: never a
-- token.  docs/policy.md lists every ctx field.
--
-- The default allows everything.  The examples below are real code,
-- switched off by empty settings: fill a table to turn one on.

local k8sauth = require "k8sauth"

local M = {}

M.settings = {
	-- Example 1: namespace -> restriction, so each team's pods get tokens
	-- for the team's own project (a restriction of the same domain that
	-- names that project).  Keys are globs, tried in order.
	--   { {"team-a", "0123456789abcdef0123456789abcdef"},
	--     {"team-b-*", "fedcba9876543210fedcba9876543210"} }
	namespace_restrictions = {},

	-- Example 2: only pods whose name starts with one of these prefixes may
	-- log in (needs projected tokens: ctx.pod is nil for other tokens, and
	-- is then refused while the list is not empty).
	--   { "web-", "worker-" }
	pod_prefixes = {},

	-- Example 3: deny pods on these nodes (globs), e.g. a shared pool.
	--   { "pool-untrusted-*" }
	denied_nodes = {},

	-- Example 4: shorter tokens for some namespaces (glob -> seconds).
	--   { {"ci-*", 600} }
	short_namespaces = {},

	-- Example 5: deny by namespace (globs): no token for these namespaces
	-- on any cluster, whatever a role binds (system namespaces, a
	-- namespace being decommissioned).
	--   { "kube-*", "default", "team-old" }
	denied_namespaces = {},

	-- Example 6: per-cluster namespace -> restriction.  Example 1 ignores
	-- which cluster the pod runs in, so "team-a" on a test cluster would
	-- get the same project as "team-a" in production.  Keys are instance
	-- ids (ctx.instance.id; the name, ctx.instance.name, is accepted too,
	-- but names can be reused); the value is a list like example 1's.
	-- On a listed cluster a namespace that matches no entry is refused
	-- (fail closed); clusters not listed fall through to example 1.
	--   { ["0123456789abcdef0123456789abcdef"] = {
	--         {"team-a", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} },
	--     ["test-cluster"] = {
	--         {"*", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"} } }
	instance_namespace_restrictions = {},
}

-- The first {glob, value} pair whose glob matches s, or nil.
local function lookup(pairs_list, s)
	for _, kv in ipairs(pairs_list) do
		if k8sauth.glob(kv[1], s) then
			return kv[2]
		end
	end
	return nil
end

-- True when name starts with one of prefixes.
local function has_prefix(prefixes, name)
	for _, p in ipairs(prefixes) do
		if name:sub(1, #p) == p then
			return true
		end
	end
	return false
end

-- Example 6's list for the login's instance (by id, then name), or nil.
local function instance_mapping(map, instance)
	if instance == nil then
		return nil
	end
	return map[instance.id] or map[instance.name]
end

function M.check(ctx)
	local s = M.settings
	local ns = ctx.service_account.namespace

	-- Example 5: namespace deny.
	if k8sauth.glob_any(s.denied_namespaces, ns) then
		return false, "logins from namespace " .. ns .. " are refused"
	end

	-- Example 3: node pool deny.
	if #s.denied_nodes > 0 then
		local node = ctx.node and ctx.node.name
		if node == nil then
			return false, "the token does not name a node"
		end
		if k8sauth.glob_any(s.denied_nodes, node) then
			return false, "logins from node " .. node .. " are refused"
		end
	end

	-- Example 2: pod-name prefix.
	if #s.pod_prefixes > 0 then
		local pod = ctx.pod and ctx.pod.name
		if pod == nil or not has_prefix(s.pod_prefixes, pod) then
			return false, "pod " .. tostring(pod) ..
			    " has no allowed name prefix"
		end
	end

	local out = {}
	local changed = false

	-- Example 6, then example 1: namespace -> project, through a
	-- restriction, per cluster first.
	local rid
	local per_cluster = instance_mapping(s.instance_namespace_restrictions,
	    ctx.instance)
	if per_cluster ~= nil then
		rid = lookup(per_cluster, ns)
		if rid == nil then
			return false, "namespace " .. ns ..
			    " has no mapping on instance " .. ctx.instance.id
		end
	else
		rid = lookup(s.namespace_restrictions, ns)
	end
	if rid ~= nil then
		out.restriction_id = rid
		changed = true
	end

	-- Example 4: shorter tokens for some namespaces.
	local ttl = lookup(s.short_namespaces, ns)
	if ttl ~= nil then
		out.expires_in = ttl
		changed = true
	end

	if changed then
		out.audit = { policy = "login.lua", namespace = ns }
		return true, out
	end
	return true
end

return M
