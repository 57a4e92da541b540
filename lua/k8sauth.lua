-- k8sauth.lua: helpers for keystone-k8s-auth policies.
--
--   local k8sauth = require "k8sauth"
--
-- Pure Lua, so every helper runs under the policy engine's instruction
-- budget and can be tested with busted outside the server.  Inside the
-- server the C primitives come from the read-only table `k8sauth_core`
-- (src/policy_api.c); outside it (busted) a stand-in with the same
-- functions is used, writing log lines to stderr.

local M = {}

local core = k8sauth_core
if core == nil then
	-- Outside the server (busted, plain lua5.4): the same function list.
	local levels = { debug = true, info = true, warn = true, error = true }
	core = {
		protected_roles = { "admin" },
		log = function(level, msg)
			if not levels[level] then
				error("k8sauth.log: unknown level " .. tostring(level), 2)
			end
			if M.test_log then
				M.test_log(level, msg)
			end
		end,
	}
end

local type, tostring, ipairs, error = type, tostring, ipairs, error
local ssub, sfind, smatch = string.sub, string.find, string.match
local tonumber = tonumber

M.MAX_GLOB = 1024	-- longest pattern or subject glob() accepts

-- A character class "[...]" starting at p[i] (i indexes "[").  Returns
-- matched (boolean) and the index after "]", or nil when the class is not
-- closed (then "[" is an ordinary character, as fnmatch does).
local function glob_class(p, i, c)
	local n = #p
	local j = i + 1
	local negate = false
	local c1 = ssub(p, j, j)
	if c1 == "!" or c1 == "^" then
		negate = true
		j = j + 1
	end
	local matched = false
	local first = true
	while j <= n do
		local ch = ssub(p, j, j)
		if ch == "]" and not first then
			if negate then
				matched = not matched
			end
			return matched, j + 1
		end
		first = false
		local lo = ch
		local hi = ch
		if ssub(p, j + 1, j + 1) == "-" and j + 2 <= n and
		    ssub(p, j + 2, j + 2) ~= "]" then
			hi = ssub(p, j + 2, j + 2)
			j = j + 3
		else
			j = j + 1
		end
		if c >= lo and c <= hi then
			matched = true
		end
	end
	return nil
end

-- Match one pattern element at p[pi] against character c.  Returns the
-- next pattern index, or nil when it does not match.
local function glob_one(p, pi, c)
	local pc = ssub(p, pi, pi)
	if pc == "?" then
		return pi + 1
	end
	if pc == "[" then
		local ok, nexti = glob_class(p, pi, c)
		if ok == nil then
			return (c == "[") and pi + 1 or nil
		end
		return ok and nexti or nil
	end
	if pc == "\\" and pi < #p then
		pc = ssub(p, pi + 1, pi + 1)
		return (c == pc) and pi + 2 or nil
	end
	return (c == pc) and pi + 1 or nil
end

-- glob(pattern, s): fnmatch-like match of the whole string s.  `*` any run
-- (also "/"), `?` one character, `[abc]`, `[a-z]`, `[!x]` classes, `\` quotes
-- the next character.  Bytes, not UTF-8 characters.  Linear backtracking
-- (one saved star), so the cost is at most #pattern * #s steps.
function M.glob(pattern, s)
	if type(pattern) ~= "string" or type(s) ~= "string" then
		return false
	end
	if #pattern > M.MAX_GLOB or #s > M.MAX_GLOB then
		return false
	end
	local pi, si = 1, 1
	local np, ns = #pattern, #s
	local star_p, star_s = nil, nil
	while si <= ns do
		local pc = ssub(pattern, pi, pi)
		if pi <= np and pc == "*" then
			star_p = pi
			star_s = si
			pi = pi + 1
		else
			local nexti = nil
			if pi <= np then
				nexti = glob_one(pattern, pi, ssub(s, si, si))
			end
			if nexti then
				pi = nexti
				si = si + 1
			elseif star_p then
				star_s = star_s + 1
				si = star_s
				pi = star_p + 1
			else
				return false
			end
		end
	end
	while ssub(pattern, pi, pi) == "*" do
		pi = pi + 1
	end
	return pi > np
end

-- glob_any(list, s): true when any pattern of the list matches s.
function M.glob_any(list, s)
	if type(list) ~= "table" then
		return false
	end
	for _, p in ipairs(list) do
		if M.glob(p, s) then
			return true
		end
	end
	return false
end

-- has_role(cred, name): the credential carries the role name.
function M.has_role(cred, name)
	if type(cred) ~= "table" or type(cred.roles) ~= "table" then
		return false
	end
	for _, r in ipairs(cred.roles) do
		if r == name then
			return true
		end
	end
	return false
end

-- is_admin(cred): callers the server classified as admin (cred.is_admin:
-- the bootstrap token, and Keystone tokens with the "admin" role in any
-- scope, as Keystone's default policy treats role:admin), or the "admin"
-- role on a system-scoped credential.  See docs/policy.md for demanding
-- system scope instead.
function M.is_admin(cred)
	if type(cred) ~= "table" then
		return false
	end
	if cred.is_admin == true then
		return true
	end
	return cred.system == true and M.has_role(cred, "admin")
end

-- same_domain(cred, obj): a domain-scoped credential whose domain is the
-- object's (non-empty) domain_id.  Project-scoped tokens never match.
function M.same_domain(cred, obj)
	if type(cred) ~= "table" or type(obj) ~= "table" then
		return false
	end
	local d = cred.domain_id
	return type(d) == "string" and d ~= "" and obj.domain_id == d
end

-- Parse dotted IPv4 into a list of 4 bytes, or nil.
local function ip4_bytes(s)
	local a, b, c, d = smatch(s, "^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
	if not a then
		return nil
	end
	local out = {}
	for i, v in ipairs({ a, b, c, d }) do
		if #v > 3 or (#v > 1 and ssub(v, 1, 1) == "0") then
			return nil
		end
		local n = tonumber(v)
		if n > 255 then
			return nil
		end
		out[i] = n
	end
	return out
end

-- Parse a list of IPv6 hex groups "a:b:c" (possibly with a trailing dotted
-- IPv4) into 16-bit words appended to out.  Returns out or nil.
local function ip6_groups(s, out, allow_v4)
	if s == "" then
		return out
	end
	local parts = {}
	local start = 1
	while true do
		local j = sfind(s, ":", start, true)
		if not j then
			parts[#parts + 1] = ssub(s, start)
			break
		end
		parts[#parts + 1] = ssub(s, start, j - 1)
		start = j + 1
	end
	for i, g in ipairs(parts) do
		if allow_v4 and i == #parts and sfind(g, ".", 1, true) then
			local v4 = ip4_bytes(g)
			if not v4 then
				return nil
			end
			out[#out + 1] = v4[1] * 256 + v4[2]
			out[#out + 1] = v4[3] * 256 + v4[4]
		else
			if not smatch(g, "^%x%x?%x?%x?$") then
				return nil
			end
			out[#out + 1] = tonumber(g, 16)
		end
	end
	return out
end

-- Parse IPv6 text into a list of 16 bytes, or nil.
local function ip6_bytes(s)
	if #s > 45 or not sfind(s, ":", 1, true) then
		return nil
	end
	local words
	local dbl = sfind(s, "::", 1, true)
	if dbl then
		if sfind(s, "::", dbl + 1, true) then
			return nil
		end
		local head = ip6_groups(ssub(s, 1, dbl - 1), {}, false)
		local tail = ip6_groups(ssub(s, dbl + 2), {}, true)
		if not head or not tail or #head + #tail > 7 then
			return nil
		end
		words = head
		for _ = 1, 8 - #head - #tail do
			words[#words + 1] = 0
		end
		for _, w in ipairs(tail) do
			words[#words + 1] = w
		end
	else
		words = ip6_groups(s, {}, true)
		if not words or #words ~= 8 then
			return nil
		end
	end
	local out = {}
	for _, w in ipairs(words) do
		out[#out + 1] = w // 256
		out[#out + 1] = w % 256
	end
	return out
end

-- parse_ip(s): a list of 4 (IPv4) or 16 (IPv6) bytes, or nil.  An
-- IPv4-mapped IPv6 address (::ffff:a.b.c.d) is returned as IPv4.
function M.parse_ip(s)
	if type(s) ~= "string" or #s > 64 then
		return nil
	end
	local b = ip4_bytes(s)
	if b then
		return b
	end
	b = ip6_bytes(s)
	if not b then
		return nil
	end
	for i = 1, 10 do
		if b[i] ~= 0 then
			return b
		end
	end
	if b[11] == 255 and b[12] == 255 then
		return { b[13], b[14], b[15], b[16] }
	end
	return b
end

-- cidr_match(ip, cidr): ip lies within cidr ("10.0.0.0/8", "fd00::/8"; a
-- bare address means the full length).  Families never mix, except that
-- IPv4-mapped IPv6 addresses count as IPv4.  Malformed input: false.
function M.cidr_match(ip, cidr)
	if type(ip) ~= "string" or type(cidr) ~= "string" then
		return false
	end
	local addr, bits = smatch(cidr, "^([^/]+)/(%d+)$")
	if not addr then
		addr = cidr
	end
	local a = M.parse_ip(ip)
	local net = M.parse_ip(addr)
	if not a or not net or #a ~= #net then
		return false
	end
	local len = #net * 8
	if bits then
		if #bits > 3 then
			return false
		end
		len = tonumber(bits)
		if len > #net * 8 then
			return false
		end
	end
	local i = 1
	while len >= 8 do
		if a[i] ~= net[i] then
			return false
		end
		i = i + 1
		len = len - 8
	end
	if len > 0 then
		local mask = 256 - (1 << (8 - len))
		if (a[i] & mask) ~= (net[i] & mask) then
			return false
		end
	end
	return true
end

-- log(level, msg): a line in the server log ("debug", "info", "warn",
-- "error"); the server escapes it and prefixes the policy marker.
function M.log(level, msg)
	core.log(level, tostring(msg))
end

-- protected_roles(): the set {name = true} of role names only an admin may
-- put into a token restriction ([policy] protected_roles).
function M.protected_roles()
	local set = {}
	for _, r in ipairs(M.protected_role_list or core.protected_roles) do
		set[r] = true
	end
	return set
end

return M
