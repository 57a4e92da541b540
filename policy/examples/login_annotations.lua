-- login_annotations.lua: an example login.lua (docs/policy.md) that lets
-- a service account pick its token restriction with an annotation, from
-- a fixed allow-list per instance (cluster).
--
-- The platform team annotates a service account:
--   kubectl annotate serviceaccount web -n payments \
--       keystone.openstack.org/restriction=readonly
-- and the login issues the token of the restriction that name maps to
-- below, instead of the role's.  A name not in the list is refused; no
-- annotation keeps the role's restriction.  Needs an instance with
-- service_account_annotations = true and a reviewer allowed to get
-- serviceaccounts (README, deployment); [k8s_auth] annotation_prefix
-- must cover the key (its default, keystone.openstack.org/, does).
--
-- The allow-list is per instance, not per domain: whoever controls an
-- instance's cluster (its host, CA and reviewer) mints service accounts
-- with any annotation, and a domain manager may point an instance of
-- the domain at a cluster of their own.  So list a restriction granting
-- a role a manager could not delegate only under an instance that is
-- protected (a role of it is bound to such a restriction: then only an
-- admin may change its host, CA or reviewer; docs/api.md, Trust
-- boundaries), and remember that whoever may annotate a service account
-- picks any entry of its instance's list.

local M = {
	-- Read once, when the policy is loaded: every login asks the
	-- cluster for the service account (cached [k8s_auth]
	-- object_cache_ttl seconds).
	needs = { "service_account" },
}

M.settings = {
	annotation = "keystone.openstack.org/restriction",
	-- instance id -> { annotation value -> restriction id }: a value
	-- maps only for logins through that instance (and the server keeps
	-- the restriction in the instance's domain).
	restrictions = {
		-- ["0123456789abcdef0123456789abcdef"] = {
		--	readonly = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		--	deployer = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
		-- },
	},
}

function M.check(ctx)
	local s = M.settings
	local ann = ctx.service_account.annotations
	local want = ann and ann[s.annotation]
	if want == nil then
		return true -- no annotation (or not exposed): the role decides
	end
	local allowed = s.restrictions[ctx.instance.id] or {}
	local rid = allowed[want]
	if type(rid) ~= "string" then
		return false, "annotation " .. s.annotation .. "=" .. want ..
		    " names no allowed restriction of instance " ..
		    ctx.instance.id
	end
	return true, { restriction_id = rid,
	    audit = { restriction_from = s.annotation, restriction = want } }
end

return M
