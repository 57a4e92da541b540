-- login_annotations_spec.lua: the annotation -> restriction example of
-- docs/policy.md (policy/examples/login_annotations.lua).
local FILE = "policy/examples/login_annotations.lua"
local D1 = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"
local I1 = "i1i1i1i1i1i1i1i1i1i1i1i1i1i1i1i1" -- listed
local I2 = "i2i2i2i2i2i2i2i2i2i2i2i2i2i2i2i2" -- same domain, not listed
local RO = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
local DEP = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

local function fresh()
	local m = dofile(FILE)
	m.settings.restrictions = { [I1] = { readonly = RO, deployer = DEP } }
	return m
end

local function ctx(domain, annotations, instance)
	return {
		instance = { id = instance or I1, name = "prod",
		    domain_id = domain },
		role = { id = "r1", name = "web", domain_id = domain },
		restriction = { id = "x1", domain_id = domain },
		service_account = { namespace = "payments", name = "web",
		    uid = "u-1", annotations = annotations },
		review = {}, claims = {}, client_ip = "10.0.0.5",
	}
end

describe("login_annotations.lua", function()
	it("declares that it needs the service account", function()
		assert.are.same({ "service_account" }, dofile(FILE).needs)
	end)

	it("maps an allowed annotation to its restriction", function()
		local ok, out = fresh().check(ctx(D1,
		    { ["keystone.openstack.org/restriction"] = "deployer" }))
		assert.is_true(ok)
		assert.are.equal(DEP, out.restriction_id)
		assert.are.equal("deployer", out.audit.restriction)
	end)

	it("keeps the role's restriction without the annotation", function()
		local ok, out = fresh().check(ctx(D1, {}))
		assert.is_true(ok)
		assert.is_nil(out)
		ok, out = fresh().check(ctx(D1, nil)) -- instance not exposing them
		assert.is_true(ok)
		assert.is_nil(out)
	end)

	it("refuses a value outside the allow-list", function()
		local ok, why = fresh().check(ctx(D1,
		    { ["keystone.openstack.org/restriction"] = "admin" }))
		assert.is_false(ok)
		assert.matches("names no allowed restriction", why)
	end)

	it("never maps through another instance of the same domain", function()
		-- A domain manager may point an instance of the domain at a
		-- cluster of their own, which annotates as it likes: the list
		-- of an instance an admin protects must not apply there.
		local ok, why = fresh().check(ctx(D1,
		    { ["keystone.openstack.org/restriction"] = "deployer" }, I2))
		assert.is_false(ok)
		assert.matches("instance " .. I2, why)
	end)

	it("is a restriction id, never a value the pod chose", function()
		local m = fresh()
		m.settings.restrictions[I1]["0123"] = true -- not a string
		local ok = m.check(ctx(D1,
		    { ["keystone.openstack.org/restriction"] = "0123" }))
		assert.is_false(ok)
	end)
end)
