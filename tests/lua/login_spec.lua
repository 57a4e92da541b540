-- login_spec.lua: the default login policy, policy/login.lua, and its
-- examples switched on one by one.
package.path = "./lua/?.lua;./policy/?.lua;" .. package.path

local function fresh()
	return dofile("policy/login.lua")
end

local function ctx(over)
	local c = {
		instance = { id = "i1", name = "prod", domain_id = "d1" },
		role = { id = "r1", name = "web", domain_id = "d1" },
		restriction = { id = "x1", domain_id = "d1", project_id = "p1" },
		service_account = { namespace = "team-a", name = "web", uid = "u-1" },
		pod = { name = "web-5d9c", uid = "pod-1" },
		node = { name = "pool-a-1", uid = "node-1" },
		review = { username = "system:serviceaccount:team-a:web",
		    uid = "u-1", groups = {}, extra = {}, audiences = {} },
		claims = {},
		client_ip = "10.0.0.5",
	}
	for k, v in pairs(over or {}) do
		c[k] = v
	end
	return c
end

describe("login.lua", function()
	it("returns a table with a check function", function()
		local m = fresh()
		assert.is_table(m)
		assert.is_function(m.check)
	end)

	it("allows by default, without overrides", function()
		local ok, out = fresh().check(ctx())
		assert.is_true(ok)
		assert.is_nil(out)
	end)

	-- src/policy.c skips the call (and building its ctx) when login.lua
	-- is this file byte for byte: that is only right while check()
	-- answers a plain true, nothing else, for every ctx.
	it("decides nothing with its empty settings: a plain true", function()
		local m = fresh()
		local odd = {
			ctx(),
			ctx({ pod = false, node = false }),
			ctx({ service_account = { namespace = "kube-system", name = "x" } }),
			ctx({ service_account = { namespace = "", name = "" } }),
			ctx({ instance = { id = "i9", domain_id = "d9" } }),
			ctx({ instance = { id = "test-cluster", name = "test-cluster" } }),
			ctx({ claims = { sub = "system:serviceaccount:a:b", aud = { "x" } } }),
		}
		for _, c in ipairs(odd) do
			if c.pod == false then
				c.pod = nil
				c.node = nil
			end
			local n = select("#", m.check(c))
			assert.are.equal(1, n)
			assert.are.equal(true, (m.check(c)))
		end
	end)

	it("allows a token without a pod or node by default", function()
		local c = ctx()
		c.pod = nil
		c.node = nil
		assert.is_true((fresh().check(c)))
	end)

	it("example 1: maps a namespace to a restriction", function()
		local m = fresh()
		m.settings.namespace_restrictions = {
			{ "team-a", "0123456789abcdef0123456789abcdef" },
			{ "team-*", "fedcba9876543210fedcba9876543210" },
		}
		local ok, out = m.check(ctx())
		assert.is_true(ok)
		assert.are.equal("0123456789abcdef0123456789abcdef", out.restriction_id)
		assert.are.equal("team-a", out.audit.namespace)
		ok, out = m.check(ctx({ service_account = { namespace = "team-z", name = "w" } }))
		assert.are.equal("fedcba9876543210fedcba9876543210", out.restriction_id)
		ok, out = m.check(ctx({ service_account = { namespace = "other", name = "w" } }))
		assert.is_true(ok)
		assert.is_nil(out)
	end)

	it("example 2: pod-name prefix", function()
		local m = fresh()
		m.settings.pod_prefixes = { "web-", "worker-" }
		assert.is_true((m.check(ctx())))
		local ok, why = m.check(ctx({ pod = { name = "debug-1", uid = "x" } }))
		assert.is_false(ok)
		assert.matches("prefix", why)
		local c = ctx()
		c.pod = nil
		assert.is_false((m.check(c)))
	end)

	it("example 3: node pool deny", function()
		local m = fresh()
		m.settings.denied_nodes = { "pool-untrusted-*" }
		assert.is_true((m.check(ctx())))
		local ok, why = m.check(ctx({ node = { name = "pool-untrusted-3" } }))
		assert.is_false(ok)
		assert.matches("pool%-untrusted%-3", why)
		local c = ctx()
		c.node = nil
		assert.is_false((m.check(c)))
	end)

	it("example 4: shorter tokens for a namespace", function()
		local m = fresh()
		m.settings.short_namespaces = { { "ci-*", 600 } }
		local ok, out = m.check(ctx({ service_account = { namespace = "ci-42", name = "b" } }))
		assert.is_true(ok)
		assert.are.equal(600, out.expires_in)
		assert.is_nil(out.restriction_id)
		ok, out = m.check(ctx())
		assert.is_nil(out)
	end)

	it("example 5: deny by namespace", function()
		local m = fresh()
		m.settings.denied_namespaces = { "kube-*", "default" }
		assert.is_true((m.check(ctx())))
		local ok, why = m.check(ctx({ service_account = { namespace = "kube-system", name = "x" } }))
		assert.is_false(ok)
		assert.matches("namespace kube%-system", why)
		ok = m.check(ctx({ service_account = { namespace = "default", name = "x" } }))
		assert.is_false(ok)
		-- The deny wins over a mapping of the same namespace.
		m.settings.namespace_restrictions = { { "*", "0123456789abcdef0123456789abcdef" } }
		ok = m.check(ctx({ service_account = { namespace = "kube-public", name = "x" } }))
		assert.is_false(ok)
	end)

	it("example 6: per-cluster namespace mapping", function()
		local m = fresh()
		m.settings.namespace_restrictions = {
			{ "team-a", "11111111111111111111111111111111" },
		}
		m.settings.instance_namespace_restrictions = {
			i1 = { { "team-a", "22222222222222222222222222222222" } },
			["test-cluster"] = { { "*", "33333333333333333333333333333333" } },
		}
		-- Cluster i1 (by id): its own mapping, not example 1's.
		local ok, out = m.check(ctx())
		assert.is_true(ok)
		assert.are.equal("22222222222222222222222222222222", out.restriction_id)
		-- On i1 an unmapped namespace is refused.
		local why
		ok, why = m.check(ctx({ service_account = { namespace = "team-b", name = "w" } }))
		assert.is_false(ok)
		assert.matches("no mapping on instance i1", why)
		-- A cluster listed by name.
		ok, out = m.check(ctx({ instance = { id = "i9", name = "test-cluster", domain_id = "d1" } }))
		assert.is_true(ok)
		assert.are.equal("33333333333333333333333333333333", out.restriction_id)
		-- An unlisted cluster falls through to example 1.
		ok, out = m.check(ctx({ instance = { id = "i2", name = "other", domain_id = "d1" } }))
		assert.is_true(ok)
		assert.are.equal("11111111111111111111111111111111", out.restriction_id)
	end)
end)
