-- login_annotations.lua: an example login.lua (docs/policy.md) that lets
-- a service account pick its token restriction with an annotation, from
-- a fixed allow-list of restrictions of the instance's own domain.
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

local M = {
	-- Read once, when the policy is loaded: every login asks the
	-- cluster for the service account (cached [k8s_auth]
	-- object_cache_ttl seconds).
	needs = { "service_account" },
}

M.settings = {
	annotation = "keystone.openstack.org/restriction",
	-- domain id -> { annotation value -> restriction id }: a value maps
	-- only within the domain of the instance the login comes through.
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
	local allowed = s.restrictions[ctx.instance.domain_id] or {}
	local rid = allowed[want]
	if type(rid) ~= "string" then
		return false, "annotation " .. s.annotation .. "=" .. want ..
		    " names no allowed restriction of domain " ..
		    ctx.instance.domain_id
	end
	return true, { restriction_id = rid,
	    audit = { restriction_from = s.annotation, restriction = want } }
end

return M
