-- api_spec.lua: the default admin API policy, policy/api.lua.
package.path = "./lua/?.lua;./policy/?.lua;" .. package.path

local k8sauth = require "k8sauth"
local rules = dofile("policy/api.lua")

local D1, D2 = "d1", "d2"

local function cred(t)
	t.kind = t.kind or "keystone"
	t.roles = t.roles or {}
	t.is_admin = t.is_admin or false
	t.system = t.system or false
	return t
end

local bootstrap = cred({ kind = "bootstrap", is_admin = true })
local sysadmin = cred({ system = true, roles = { "admin" } })
local projadmin = cred({ project_id = "p1", project_domain_id = D1,
    roles = { "admin", "member", "reader" } })
local manager = cred({ domain_id = D1, roles = { "manager", "member", "reader" } })
local reader = cred({ domain_id = D1, roles = { "reader" } })
local member = cred({ domain_id = D1, roles = { "member" } })
local projmanager = cred({ project_id = "p1", project_domain_id = D1,
    roles = { "manager", "reader" } })

local function decide(action, c, target)
	local rule = rules[action]
	if rule == nil then
		return false, "no rule"
	end
	return rule(c, target)
end

local function allowed(action, c, target)
	local ok = decide(action, c, target)
	return ok == true
end

local KINDS = {
	{ prefix = "k8s_auth:instance", key = "instance" },
	{ prefix = "k8s_auth:role", key = "role" },
	{ prefix = "token_restriction", key = "restriction" },
}
local OPS = { "create", "list", "show", "update", "delete" }

local function target_for(key, op, domain)
	if op == "list" then
		return { [key] = { domain_id = domain } }
	end
	local t = { [key] = { domain_id = domain,
	    roles = { { id = "r1", name = "member", delegable = true, implies = { "reader" } } } } }
	if op == "update" then
		t.update = { name = "x" }
	end
	if key == "role" then
		t.role.protected = false
	end
	return t
end

describe("api.lua", function()
	it("has a rule for every documented action and nothing else", function()
		local n = 0
		for _, k in ipairs(KINDS) do
			for _, op in ipairs(OPS) do
				assert.is_function(rules[k.prefix .. ":" .. op])
				n = n + 1
			end
		end
		assert.is_function(rules["token:validate"])
		local count = 0
		for _ in pairs(rules) do count = count + 1 end
		assert.are.equal(n + 1, count)
	end)

	it("denies an unknown action (no rule)", function()
		assert.is_nil(rules["k8s_auth:instance:explode"])
		assert.is_false(allowed("k8s_auth:instance:explode", bootstrap, {}))
	end)

	for _, k in ipairs(KINDS) do
		for _, op in ipairs(OPS) do
			local action = k.prefix .. ":" .. op
			local own = target_for(k.key, op, D1)
			local other = target_for(k.key, op, D2)
			local writer = op ~= "list" and op ~= "show"

			it(action .. ": admin may, in any domain", function()
				assert.is_true(allowed(action, bootstrap, other))
				assert.is_true(allowed(action, sysadmin, other))
				assert.is_true(allowed(action, bootstrap, {}))
			end)

			it(action .. ": admin role on a project scope is not admin", function()
				assert.is_false(allowed(action, projadmin, own))
			end)

			it(action .. ": manager in own domain only", function()
				assert.is_true(allowed(action, manager, own))
				local ok, why = decide(action, manager, other)
				assert.is_false(ok)
				assert.is_string(why)
			end)

			it(action .. ": manager needs a domain-scoped token", function()
				local ok, why = decide(action, projmanager, own)
				assert.is_false(ok)
				assert.matches("domain%-scoped", why)
			end)

			it(action .. ": reader " .. (writer and "denied" or "own domain only"), function()
				assert.are.equal(not writer, allowed(action, reader, own))
				assert.is_false(allowed(action, reader, other))
			end)

			it(action .. ": member denied", function()
				assert.is_false(allowed(action, member, own))
			end)

			it(action .. ": no credentials or no target denied", function()
				assert.is_false(allowed(action, nil, own))
				assert.is_false(allowed(action, manager, nil))
				assert.is_false(allowed(action, manager, {}))
			end)
		end
	end

	describe("lists", function()
		it("without a domain_id filter are admin-only", function()
			for _, k in ipairs(KINDS) do
				local action = k.prefix .. ":list"
				assert.is_true(allowed(action, bootstrap, { [k.key] = {} }))
				local ok, why = decide(action, reader, { [k.key] = { name = "x" } })
				assert.is_false(ok)
				assert.matches("filtered by domain_id", why)
				assert.is_false(allowed(action, manager, {}))
			end
		end)

		it("accept the filter table as the target itself", function()
			assert.is_true(allowed("k8s_auth:instance:list", reader, { domain_id = D1 }))
			assert.is_false(allowed("k8s_auth:instance:list", reader, { domain_id = D2 }))
		end)

		it("nested role list uses the parent instance's domain", function()
			local t = { instance = { id = "i1", domain_id = D1 }, role = { name = "web" } }
			assert.is_true(allowed("k8s_auth:role:list", reader, t))
			t.instance.domain_id = D2
			assert.is_false(allowed("k8s_auth:role:list", reader, t))
		end)
	end)

	describe("roles", function()
		it("create: the parent instance must be in the caller's domain too", function()
			local t = { instance = { domain_id = D2 }, role = { domain_id = D1 } }
			local ok, why = decide("k8s_auth:role:create", manager, t)
			assert.is_false(ok)
			assert.matches("different domains", why)
			t.instance.domain_id = D1
			assert.is_true(allowed("k8s_auth:role:create", manager, t))
		end)

		it("update must not move a role to another instance", function()
			local t = { role = { domain_id = D1, auth_instance_id = "i1",
			    protected = false },
			    update = { auth_instance_id = "i2" } }
			assert.is_false(allowed("k8s_auth:role:update", manager, t))
			t.update.auth_instance_id = "i1"
			assert.is_true(allowed("k8s_auth:role:update", manager, t))
		end)
	end)

	describe("domain moves", function()
		for _, k in ipairs(KINDS) do
			it(k.prefix .. ":update refuses a domain move", function()
				local t = { [k.key] = { domain_id = D1 }, update = { domain_id = D2 } }
				if k.key == "role" then
					t.role.protected = false
				end
				local ok, why = decide(k.prefix .. ":update", manager, t)
				assert.is_false(ok)
				assert.matches("another domain", why)
				t.update.domain_id = D1
				assert.is_true(allowed(k.prefix .. ":update", manager, t))
			end)
		end
	end)

	-- Role objects as the server marks them (role_facts.c).
	local MEMBER = { id = "m", name = "member", delegable = true, implies = { "reader" } }
	local READER = { id = "r", name = "reader", delegable = true, implies = {} }
	local ADMIN = { id = "a", name = "admin", delegable = false,
	    implies = { "member", "reader" } }

	describe("delegable roles in restrictions", function()
		local function with_roles(roles)
			return { restriction = { domain_id = D1, roles = roles } }
		end

		it("create: a manager may grant delegable roles", function()
			assert.is_true(allowed("token_restriction:create", manager,
			    with_roles({ MEMBER, READER })))
		end)

		it("create: a manager may not grant admin, and the reason names it", function()
			local ok, why = decide("token_restriction:create", manager,
			    with_roles({ MEMBER, ADMIN }))
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			assert.matches("admin", why)
		end)

		it("create: a role the server did not mark delegable is refused", function()
			for _, r in ipairs({
				{ id = "s", name = "service", delegable = false },
				{ id = "A", name = "Admin", delegable = false },
				{ id = "x", name = "member" }, -- no mark at all
				{ id = "y", name = "member", delegable = "yes" },
			}) do
				local ok, why = decide("token_restriction:create", manager,
				    with_roles({ r }))
				assert.is_false(ok)
				assert.matches("^role_not_delegable: ", why)
				assert.matches(r.name, why, 1, true)
			end
		end)

		it("create: a role implying a non-delegable role names what it implies", function()
			local ok, why = decide("token_restriction:create", manager,
			    with_roles({ { id = "i", name = "member", delegable = false,
			        implies = { "admin" } } }))
			assert.is_false(ok)
			assert.matches("implies admin", why)
		end)

		it("create: a manager may not add a role without a name", function()
			local ok, why = decide("token_restriction:create", manager,
			    with_roles({ { id = "a", delegable = true } }))
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			assert.matches("without a name", why)
		end)

		it("create: an admin may grant anything", function()
			for _, c in ipairs({ bootstrap, sysadmin }) do
				assert.is_true(allowed("token_restriction:create", c,
				    with_roles({ ADMIN, { id = "s", name = "service",
				        delegable = false }, { id = "n" } })))
			end
		end)

		it("update: checks the patch's roles", function()
			local t = with_roles({ MEMBER })
			t.update = { roles = { ADMIN } }
			local ok, why = decide("token_restriction:update", manager, t)
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			t.update.roles = { READER }
			assert.is_true(allowed("token_restriction:update", manager, t))
			t.update.roles = { ADMIN }
			assert.is_true(allowed("token_restriction:update", sysadmin, t))
		end)

		it("update: a restriction granting a non-delegable role is an admin's", function()
			local t = with_roles({ ADMIN })
			t.update = { user_id = "someone-else" }
			local ok, why = decide("token_restriction:update", manager, t)
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			assert.matches("admin", why)
			assert.is_true(allowed("token_restriction:update", bootstrap, t))
			-- deleting it takes nothing from anyone
			assert.is_true(allowed("token_restriction:delete", manager,
			    with_roles({ ADMIN })))
		end)

		it("role create/update: not bound to a restriction granting a non-delegable role",
		    function()
			local function role_target(roles)
				return { instance = { id = "i1", domain_id = D1 },
				    role = { domain_id = D1, auth_instance_id = "i1",
				        token_restriction_id = "r1" },
				    restriction = { id = "r1", domain_id = D1,
				        roles = roles } }
			end
			local t = role_target({ ADMIN })
			local ok, why = decide("k8s_auth:role:create", manager, t)
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			assert.matches("admin", why)
			assert.is_false(allowed("k8s_auth:role:update", manager, t))
			assert.is_true(allowed("k8s_auth:role:create", bootstrap, t))
			assert.is_true(allowed("k8s_auth:role:create", manager,
			    role_target({ MEMBER })))
		end)

		it("role update/delete: a role bound to a non-delegable restriction is an admin's",
		    function()
			-- Moving it to a plain restriction (or deleting it) would
			-- unprotect the instance: repoint it, wait for a re-bind.
			local t = { instance = { id = "i1", domain_id = D1 },
			    role = { domain_id = D1, auth_instance_id = "i1",
			        token_restriction_id = "radmin", protected = true },
			    restriction = { id = "rplain", domain_id = D1,
			        roles = { MEMBER } },
			    update = { token_restriction_id = "rplain" } }
			local ok, why = decide("k8s_auth:role:update", manager, t)
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			ok, why = decide("k8s_auth:role:delete", manager, t)
			assert.is_false(ok)
			assert.matches("^role_not_delegable: ", why)
			assert.is_true(allowed("k8s_auth:role:update", bootstrap, t))
			assert.is_true(allowed("k8s_auth:role:delete", bootstrap, t))
			t.role.protected = false
			assert.is_true(allowed("k8s_auth:role:update", manager, t))
			assert.is_true(allowed("k8s_auth:role:delete", manager, t))
			-- without the fact: denied
			t.role.protected = nil
			assert.is_false(allowed("k8s_auth:role:update", manager, t))
			assert.is_false(allowed("k8s_auth:role:delete", manager, t))
		end)

		it("still follows [policy] protected_roles (deprecated denylist)", function()
			k8sauth.protected_role_list = { "admin", "superuser" }
			local t = with_roles({ { id = "s", name = "superuser", delegable = true } })
			assert.is_false(allowed("token_restriction:create", manager, t))
			-- a delegable role implying a protected one
			t = with_roles({ { id = "m", name = "member", delegable = true,
			    implies = { "superuser" } } })
			local ok, why = decide("token_restriction:create", manager, t)
			assert.is_false(ok)
			assert.matches("implies superuser", why)
			k8sauth.protected_role_list = { "superuser" }
			assert.is_true(allowed("token_restriction:create", manager,
			    with_roles({ MEMBER })))
			k8sauth.protected_role_list = nil
		end)
	end)

	describe("protected instances", function()
		local function inst_target(protected, changed, update)
			return { instance = { id = "i1", domain_id = D1,
			    host = "https://a.example:6443", protected = protected },
			    update = update or {}, changed = changed }
		end
		local ANCHOR = { "host", "ca_cert", "token_reviewer_jwt",
		    "disable_local_ca_jwt", "jwks", "issuer", "jwt_signature" }

		for _, f in ipairs(ANCHOR) do
			it("a manager may not change " .. f .. " of a protected instance", function()
				local ok, why = decide("k8s_auth:instance:update", manager,
				    inst_target(true, { f }))
				assert.is_false(ok)
				assert.matches("^instance_protected: ", why)
				assert.matches(f, why, 1, true)
			end)

			it("an admin may change " .. f .. " of a protected instance", function()
				assert.is_true(allowed("k8s_auth:instance:update", bootstrap,
				    inst_target(true, { f })))
				assert.is_true(allowed("k8s_auth:instance:update", sysadmin,
				    inst_target(true, { f })))
			end)

			it("a manager may change " .. f .. " of an unprotected instance", function()
				assert.is_true(allowed("k8s_auth:instance:update", manager,
				    inst_target(false, { f })))
			end)
		end

		it("a manager may change other fields of a protected instance", function()
			assert.is_true(allowed("k8s_auth:instance:update", manager,
			    inst_target(true, { "name", "enabled" })))
			assert.is_true(allowed("k8s_auth:instance:update", manager,
			    inst_target(true, {})))
		end)

		it("a protected instance without the list of changes is refused", function()
			local ok, why = decide("k8s_auth:instance:update", manager,
			    inst_target(true, nil))
			assert.is_false(ok)
			assert.matches("^instance_protected: ", why)
		end)

		it("a reader may not change an unprotected instance either", function()
			assert.is_false(allowed("k8s_auth:instance:update", reader,
			    inst_target(false, { "host" })))
		end)
	end)

	describe("token:validate", function()
		local t = { token = { user_id = "u1", project_id = "p1" } }

		it("allows admin and the service role", function()
			assert.is_true(allowed("token:validate", bootstrap, t))
			assert.is_true(allowed("token:validate", cred({ project_id = "svc",
			    roles = { "service" } }), t))
		end)

		it("allows the token's own user only", function()
			assert.is_true(allowed("token:validate", cred({ kind = "restricted",
			    user_id = "u1", roles = { "member" } }), t))
			assert.is_false(allowed("token:validate", cred({ user_id = "u2",
			    roles = { "member" } }), t))
			assert.is_false(allowed("token:validate", cred({ roles = {} }), t))
			assert.is_false(allowed("token:validate", cred({ user_id = "u1" }), {}))
		end)
	end)
end)
