-- api.lua: who may do what on the admin API (the default policy).
--
-- Returns a table: action name -> function(cred, target) returning true,
-- or false and a reason.  An action without a rule is denied, and so is
-- anything a rule cannot decide.  docs/policy.md describes cred and target.
--
-- Rules (keystone-ng's, without its holes):
--   * admin (k8sauth.is_admin: the bootstrap token, a caller the server
--     classified as admin, or "admin" on a system-scoped token) may do
--     everything;
--   * "manager" on a domain-scoped token may create, list, show, update
--     and delete instances, roles and token restrictions of that domain;
--   * "reader" (and "manager") may list and show within that domain; a
--     list must be filtered to the caller's domain (a list without a
--     domain_id filter is admin-only);
--   * nobody but admin may put a role that is not delegable into a token
--     restriction (create and update), change a restriction that grants
--     one, or bind a k8s role to such a restriction (API.md §7).  The
--     server marks every role of the target: `delegable` (its name is in
--     [policy] delegable_roles, case-insensitively, and so is every role
--     it implies in Keystone) and `implies` (those names); a role without
--     a name, without the mark, or named in [policy] protected_roles (the
--     older denylist, kept for one release) is not delegable.  Denials
--     start with "role_not_delegable: ", which the server sends as that
--     reason code;
--   * a k8s role bound to such a restriction (target.role.protected)
--     is an admin's: nobody else may update or delete it, else the
--     instance could be unprotected, repointed and bound again;
--   * on a protected instance (target.instance.protected: one of its
--     roles binds a restriction granting a non-delegable role) nobody but
--     admin may change host, ca_cert, token_reviewer_jwt,
--     disable_local_ca_jwt, jwks, issuer or jwt_signature (the last
--     three decide which JWTs are reviewed at all; target.changed lists
--     what an update changes); denials start with "instance_protected: ";
--   * an update must not move an object to another domain (or a role to
--     another instance).
--   * token:validate: admin, the "service" role, or the token's own user.

local k8sauth = require "k8sauth"

local OPS = { "create", "list", "show", "update", "delete" }
local KINDS = {
	["k8s_auth:instance"] = "instance",
	["k8s_auth:role"] = "role",
	["token_restriction"] = "restriction",
}

-- The object a target names for kind: the stored object (show, update,
-- delete), the new one (create) or the filters (list).  For a list the
-- filters may also be the target itself: {domain_id = "..."}.
local function target_object(kind, op, target)
	if type(target) ~= "table" then
		return nil
	end
	local obj = target[kind]
	if obj == nil and op == "list" then
		obj = target
	end
	if type(obj) ~= "table" then
		return nil
	end
	return obj
end

-- The domain a request is about, or nil with a reason.  For roles the
-- parent instance (target.instance), when given, must agree.
local function target_domain(kind, op, target)
	local obj = target_object(kind, op, target)
	if obj == nil then
		return nil, "no " .. kind .. " in the target"
	end
	local d = obj.domain_id
	if kind == "role" and type(target.instance) == "table" then
		local pd = target.instance.domain_id
		if d == nil then
			d = pd
		elseif pd ~= nil and pd ~= d then
			return nil, "the role and its instance are in different domains"
		end
	end
	if type(d) ~= "string" or d == "" then
		if op == "list" then
			return nil, "a list must be filtered by domain_id"
		end
		return nil, "the " .. kind .. " has no domain_id"
	end
	return d
end

-- The caller's own domain, or nil: manager/reader rules need a
-- domain-scoped token.
local function caller_domain(cred)
	local d = cred.domain_id
	if type(d) == "string" and d ~= "" then
		return d
	end
	return nil
end

-- The fields of an instance that make its trust anchor: who controls
-- them decides which identities the cluster vouches for.
local ANCHOR_FIELDS = { "host", "ca_cert", "token_reviewer_jwt",
	"token_reviewer_jwt_set", "disable_local_ca_jwt", "jwks", "issuer",
	"jwt_signature" }

-- Is one role of a restriction something a non-admin may grant?  True,
-- or false and the reason (naming the role).
local function role_delegable(r, protected)
	if type(r) ~= "table" then
		return false, "role_not_delegable: a role is not an object"
	end
	local name = r.name
	if type(name) ~= "string" then
		return false, "role_not_delegable: only an admin may add the " ..
		    "role " .. tostring(r.id) .. " without a name Keystone " ..
		    "resolved"
	end
	if protected[name] or r.delegable ~= true then
		local why = "role_not_delegable: only an admin may grant " ..
		    "the role " .. name
		if type(r.implies) == "table" and #r.implies > 0 then
			why = why .. " (it implies " ..
			    table.concat(r.implies, ", ") .. ")"
		end
		return false, why
	end
	if type(r.implies) == "table" then
		for _, n in ipairs(r.implies) do
			if protected[n] then
				return false, "role_not_delegable: only an " ..
				    "admin may grant the role " .. name ..
				    " (it implies " .. n .. ")"
			end
		end
	end
	return true
end

-- Every role of a restriction body is one a non-admin may grant.
local function roles_allowed(roles)
	if roles == nil then
		return true
	end
	if type(roles) ~= "table" then
		return false, "roles is not a list"
	end
	local protected = k8sauth.protected_roles()
	for _, r in ipairs(roles) do
		local ok, why = role_delegable(r, protected)
		if not ok then
			return false, why
		end
	end
	return true
end

-- An update of a protected instance must leave its trust anchor alone.
local function anchor_kept(target)
	local inst = target.instance
	if type(inst) ~= "table" or inst.protected ~= true then
		return true
	end
	local changed = target.changed
	if type(changed) ~= "table" then
		return false, "instance_protected: the update's changes are " ..
		    "unknown"
	end
	for _, f in ipairs(changed) do
		for _, a in ipairs(ANCHOR_FIELDS) do
			if f == a then
				return false, "instance_protected: a role of " ..
				    "this instance grants a role only an " ..
				    "admin may delegate, so only an admin " ..
				    "may change its " .. a
			end
		end
	end
	return true
end

-- A role bound to a restriction that is not delegable (target.role.
-- protected: the stored role's restriction) is an admin's: moving it to
-- another restriction or deleting it would unprotect its instance, whose
-- trust anchor could then be repointed before an admin binds it again.
local function binding_kept(target)
	local ro = target.role
	if type(ro) ~= "table" or type(ro.protected) ~= "boolean" then
		return false, "the role's binding is unknown"
	end
	if ro.protected then
		return false, "role_not_delegable: the role is bound to a " ..
		    "token restriction granting a role only an admin may " ..
		    "delegate, so only an admin may change or delete it"
	end
	return true
end

-- An update body keeps the object in its domain (and a role in its
-- instance).
local function update_stays(kind, obj, update)
	if type(update) ~= "table" then
		return true
	end
	if update.domain_id ~= nil and update.domain_id ~= obj.domain_id then
		return false, "an update must not move the " .. kind ..
		    " to another domain"
	end
	if kind == "role" and update.auth_instance_id ~= nil and
	    update.auth_instance_id ~= obj.auth_instance_id then
		return false, "an update must not move the role to another instance"
	end
	return true
end

-- Checks that bind everyone but admin, whatever the role.  A restriction
-- that grants a role that is not delegable (or a role without a name) is
-- an admin's, and so is the trust anchor of an instance binding one:
-- nobody else may bind a k8s role to it or change it, since either would
-- hand its roles to service accounts of their choosing.
local function content_allowed(kind, op, target)
	if kind == "role" and (op == "create" or op == "update") and
	    type(target.restriction) == "table" then
		local ok, why = roles_allowed(target.restriction.roles)
		if not ok then
			return false, "role_not_delegable: the role's token " ..
			    "restriction: " .. string.gsub(why,
			    "^role_not_delegable: ", "")
		end
	end
	if kind == "restriction" and op == "update" and
	    type(target.restriction) == "table" then
		local ok, why = roles_allowed(target.restriction.roles)
		if not ok then
			return false, "role_not_delegable: only an admin may " ..
			    "change a token restriction that grants a role " ..
			    "only an admin may delegate (" ..
			    string.gsub(why, "^role_not_delegable: ", "") .. ")"
		end
	end
	if kind == "role" and (op == "update" or op == "delete") then
		local ok, why = binding_kept(target)
		if not ok then
			return false, why
		end
	end
	if kind == "instance" and op == "update" then
		local ok, why = anchor_kept(target)
		if not ok then
			return false, why
		end
	end
	if kind == "restriction" and op == "create" then
		local ok, why = roles_allowed(target.restriction.roles)
		if not ok then
			return false, why
		end
	end
	if op == "update" then
		local obj = target_object(kind, op, target)
		local ok, why = update_stays(kind, obj, target.update)
		if not ok then
			return false, why
		end
		if kind == "restriction" and type(target.update) == "table" then
			ok, why = roles_allowed(target.update.roles)
			if not ok then
				return false, why
			end
		end
	end
	return true
end

-- The rule for one (kind, op).
local function make_rule(kind, op)
	local writer = op == "create" or op == "update" or op == "delete"
	return function(cred, target)
		if type(cred) ~= "table" then
			return false, "no credentials"
		end
		if k8sauth.is_admin(cred) then
			return true
		end
		local mine = caller_domain(cred)
		if mine == nil then
			return false, "a domain-scoped token is required"
		end
		local d, why = target_domain(kind, op, target)
		if d == nil then
			return false, why
		end
		if d ~= mine then
			return false, "the " .. kind .. " is in another domain"
		end
		if writer then
			if not k8sauth.has_role(cred, "manager") then
				return false, "the manager role is required"
			end
		elseif not (k8sauth.has_role(cred, "reader") or
		    k8sauth.has_role(cred, "manager")) then
			return false, "the reader role is required"
		end
		return content_allowed(kind, op, target)
	end
end

local rules = {}
for prefix, kind in pairs(KINDS) do
	for _, op in ipairs(OPS) do
		rules[prefix .. ":" .. op] = make_rule(kind, op)
	end
end

-- GET/HEAD /v3/auth/tokens: admin, a service, or the token's own user.
rules["token:validate"] = function(cred, target)
	if type(cred) ~= "table" then
		return false, "no credentials"
	end
	if k8sauth.is_admin(cred) or k8sauth.has_role(cred, "service") then
		return true
	end
	local tok = type(target) == "table" and target.token or nil
	if type(tok) == "table" and type(cred.user_id) == "string" and
	    cred.user_id ~= "" and cred.user_id == tok.user_id then
		return true
	end
	return false, "only an admin, a service or the token's user may validate"
end

return rules
