-- login_annotations_spec.lua: the annotation -> restriction example of
-- docs/policy.md (policy/examples/login_annotations.lua).
local FILE = "policy/examples/login_annotations.lua"
local D1 = "d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1d1"
local D2 = "d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2d2"
local RO = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
local DEP = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

local function fresh()
	local m = dofile(FILE)
	m.settings.restrictions = { [D1] = { readonly = RO, deployer = DEP } }
	return m
end

local function ctx(domain, annotations)
	return {
		instance = { id = "i1", name = "prod", domain_id = domain },
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

	it("never maps across domains", function()
		local ok = fresh().check(ctx(D2,
		    { ["keystone.openstack.org/restriction"] = "readonly" }))
		assert.is_false(ok)
	end)

	it("is a restriction id, never a value the pod chose", function()
		local m = fresh()
		m.settings.restrictions[D1]["0123"] = true -- not a string
		local ok = m.check(ctx(D1,
		    { ["keystone.openstack.org/restriction"] = "0123" }))
		assert.is_false(ok)
	end)
end)
