-- k8sauth_spec.lua: the helper library lua/k8sauth.lua.
package.path = "./lua/?.lua;./policy/?.lua;" .. package.path

local k8sauth = require "k8sauth"

describe("k8sauth.glob", function()
	local glob = k8sauth.glob

	it("matches literals exactly", function()
		assert.is_true(glob("web", "web"))
		assert.is_false(glob("web", "web2"))
		assert.is_false(glob("web", "we"))
		assert.is_true(glob("", ""))
		assert.is_false(glob("", "x"))
	end)

	it("matches * against any run, including empty", function()
		assert.is_true(glob("*", ""))
		assert.is_true(glob("*", "anything/at:all"))
		assert.is_true(glob("team-*", "team-a"))
		assert.is_true(glob("team-*", "team-"))
		assert.is_false(glob("team-*", "team"))
		assert.is_true(glob("*-prod", "a-b-prod"))
		assert.is_true(glob("a*b*c", "aXXbYYc"))
		assert.is_false(glob("a*b*c", "aXXbYY"))
		assert.is_true(glob("**x", "x"))
	end)

	it("matches ? against exactly one character", function()
		assert.is_true(glob("web-?", "web-1"))
		assert.is_false(glob("web-?", "web-"))
		assert.is_false(glob("web-?", "web-12"))
	end)

	it("matches classes, ranges and negation", function()
		assert.is_true(glob("ns-[abc]", "ns-b"))
		assert.is_false(glob("ns-[abc]", "ns-d"))
		assert.is_true(glob("ns-[a-c]", "ns-c"))
		assert.is_false(glob("ns-[a-c]", "ns-d"))
		assert.is_true(glob("ns-[!a-c]", "ns-d"))
		assert.is_false(glob("ns-[!a-c]", "ns-a"))
		assert.is_true(glob("ns-[^a-c]", "ns-z"))
		assert.is_true(glob("x[]]", "x]"))
		assert.is_true(glob("x[a-]", "x-"))
	end)

	it("treats an unclosed [ and \\-escapes literally", function()
		assert.is_true(glob("a[b", "a[b"))
		assert.is_false(glob("a[b", "ab"))
		assert.is_true(glob("a\\*", "a*"))
		assert.is_false(glob("a\\*", "ab"))
	end)

	it("does not treat Lua pattern characters specially", function()
		assert.is_true(glob("a.b%", "a.b%"))
		assert.is_false(glob("a.b", "aXb"))
	end)

	it("refuses non-strings and overlong input", function()
		assert.is_false(glob(nil, "x"))
		assert.is_false(glob("x", 1))
		assert.is_false(glob(string.rep("a", 2000), string.rep("a", 2000)))
	end)

	it("stays fast on a pathological pattern", function()
		local s = string.rep("a", 1000)
		local p = string.rep("*a", 20) .. "b"
		local t0 = os.clock()
		assert.is_false(glob(p, s))
		assert.is_true(os.clock() - t0 < 2)
	end)

	it("glob_any tries every pattern", function()
		assert.is_true(k8sauth.glob_any({ "x", "we*" }, "web"))
		assert.is_false(k8sauth.glob_any({ "x", "y" }, "web"))
		assert.is_false(k8sauth.glob_any(nil, "web"))
	end)
end)

describe("k8sauth roles and domains", function()
	it("has_role looks at cred.roles", function()
		local cred = { roles = { "reader", "manager" } }
		assert.is_true(k8sauth.has_role(cred, "manager"))
		assert.is_false(k8sauth.has_role(cred, "admin"))
		assert.is_false(k8sauth.has_role({}, "admin"))
		assert.is_false(k8sauth.has_role(nil, "admin"))
	end)

	it("is_admin: flag, or admin role on system scope only", function()
		assert.is_true(k8sauth.is_admin({ is_admin = true, roles = {} }))
		assert.is_true(k8sauth.is_admin({ system = true, roles = { "admin" } }))
		assert.is_false(k8sauth.is_admin({ project_id = "p",
		    roles = { "admin" } }))
		assert.is_false(k8sauth.is_admin({ domain_id = "d",
		    roles = { "admin" } }))
		assert.is_false(k8sauth.is_admin({ system = true,
		    roles = { "reader" } }))
		assert.is_false(k8sauth.is_admin(nil))
	end)

	it("same_domain needs a domain-scoped credential", function()
		assert.is_true(k8sauth.same_domain({ domain_id = "d1" },
		    { domain_id = "d1" }))
		assert.is_false(k8sauth.same_domain({ domain_id = "d1" },
		    { domain_id = "d2" }))
		assert.is_false(k8sauth.same_domain({ project_id = "p",
		    project_domain_id = "d1" }, { domain_id = "d1" }))
		assert.is_false(k8sauth.same_domain({ domain_id = "" },
		    { domain_id = "" }))
		assert.is_false(k8sauth.same_domain({ domain_id = "d1" }, {}))
	end)
end)

describe("k8sauth.cidr_match", function()
	local m = k8sauth.cidr_match

	it("matches IPv4 prefixes", function()
		assert.is_true(m("10.1.2.3", "10.0.0.0/8"))
		assert.is_false(m("11.1.2.3", "10.0.0.0/8"))
		assert.is_true(m("192.168.1.130", "192.168.1.128/25"))
		assert.is_false(m("192.168.1.127", "192.168.1.128/25"))
		assert.is_true(m("1.2.3.4", "0.0.0.0/0"))
		assert.is_true(m("1.2.3.4", "1.2.3.4"))
		assert.is_false(m("1.2.3.5", "1.2.3.4/32"))
	end)

	it("matches IPv6 prefixes, with :: and embedded IPv4", function()
		assert.is_true(m("fd00::1", "fd00::/8"))
		assert.is_false(m("fe80::1", "fd00::/8"))
		assert.is_true(m("2001:db8:0:1::5", "2001:db8::/32"))
		assert.is_false(m("2001:db9::5", "2001:db8::/32"))
		assert.is_true(m("::1", "::1/128"))
		assert.is_true(m("2001:db8::1", "2001:0db8:0000:0000:0000:0000:0000:0000/64"))
		assert.is_true(m("64:ff9b::192.0.2.1", "64:ff9b::/96"))
		assert.is_true(m("2001:db8::1", "2001:db8::/33"))
	end)

	it("treats IPv4-mapped IPv6 as IPv4, and never mixes families", function()
		assert.is_true(m("::ffff:10.0.0.1", "10.0.0.0/8"))
		assert.is_false(m("10.0.0.1", "::/0"))
		assert.is_false(m("fd00::1", "0.0.0.0/0"))
	end)

	it("refuses malformed input", function()
		assert.is_false(m("10.0.0.256", "10.0.0.0/8"))
		assert.is_false(m("10.0.0", "10.0.0.0/8"))
		assert.is_false(m("010.0.0.1", "10.0.0.0/8"))
		assert.is_false(m("10.0.0.1", "10.0.0.0/33"))
		assert.is_false(m("10.0.0.1", "10.0.0.0/"))
		assert.is_false(m("1::2::3", "::/0"))
		assert.is_false(m("1:2:3:4:5:6:7:8:9", "::/0"))
		assert.is_false(m("12345::", "::/0"))
		assert.is_false(m("fd00::1", "fd00::/129"))
		assert.is_false(m(nil, "10.0.0.0/8"))
		assert.is_false(m("10.0.0.1", {}))
	end)
end)

describe("k8sauth.log", function()
	it("passes level and message to the core", function()
		local got
		k8sauth.test_log = function(level, msg) got = { level, msg } end
		k8sauth.log("warn", "hello")
		k8sauth.test_log = nil
		assert.are.same({ "warn", "hello" }, got)
	end)

	it("refuses unknown levels", function()
		assert.has_error(function() k8sauth.log("loud", "x") end)
	end)
end)

describe("k8sauth.protected_roles", function()
	it("defaults to admin and follows the configured list", function()
		assert.are.same({ admin = true }, k8sauth.protected_roles())
		k8sauth.protected_role_list = { "admin", "superuser" }
		assert.are.same({ admin = true, superuser = true },
		    k8sauth.protected_roles())
		k8sauth.protected_role_list = nil
	end)
end)
