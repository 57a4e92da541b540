-- tests/integration/policy/api.lua: the shipped API policy, recorded.
--
-- A test policy (test_api_policy.py): every rule of the shipped
-- policy/api.lua -- loaded with require "api", the server running with
-- [policy] lua_dir = the repository's policy/ -- decides as it ships, and
-- each call leaves the decision, the cred and the target the C handlers
-- built in the log, so a test can read exactly what the policy saw.
--
-- One stand-in, since the suite has no Keystone: a restricted token of
-- this server (cred.kind "restricted", roles = its restriction's role
-- names) is handed to the shipped rules as a token scoped to its
-- restriction's domain (cred.domain_id = cred.project_domain_id), the way
-- a Keystone domain-scoped token with those roles would arrive.  Nothing
-- else is changed: is_admin stays false.
--
-- Log format, one or more lines per call (a line carries at most 1024
-- bytes of policy text):
--   policy ACTION: record ID I/N HEX
-- ID: 8 hex digits per call; the HEX parts in order I = 1..N are the
-- lower-case hex of one JSON object
--   {"action", "allowed", "reason", "cred", "seen", "target"}
-- ("seen": the cred the shipped rule was given).

local k8sauth = require "k8sauth"
local shipped = require "api"

local CHUNK = 960

-- JSON text of a Lua value.  A table with keys 1..n (n > 0) is an array,
-- any other table an object; the policy inputs hold nothing else.
local function json(v)
	local t = type(v)
	if t == "nil" then
		return "null"
	elseif t == "boolean" or t == "number" then
		return tostring(v)
	elseif t == "string" then
		return '"' .. v:gsub('[%c"\\]', function(c)
			return string.format("\\u%04x", c:byte())
		end) .. '"'
	elseif t ~= "table" then
		return '"<' .. t .. '>"'
	end
	local n = #v
	local parts = {}
	if n > 0 then
		for i = 1, n do
			parts[i] = json(v[i])
		end
		return "[" .. table.concat(parts, ",") .. "]"
	end
	for k, x in pairs(v) do
		parts[#parts + 1] = json(tostring(k)) .. ":" .. json(x)
	end
	return "{" .. table.concat(parts, ",") .. "}"
end

local function hex(s)
	return (s:gsub(".", function(c)
		return string.format("%02x", c:byte())
	end))
end

local function record(doc)
	local h = hex(json(doc))
	local id = string.format("%08x", math.random(0, 0x7fffffff))
	local n = (#h + CHUNK - 1) // CHUNK
	for i = 1, n do
		k8sauth.log("info", string.format("record %s %d/%d %s", id, i, n,
		    h:sub((i - 1) * CHUNK + 1, i * CHUNK)))
	end
end

-- The cred the shipped rule sees (see the stand-in above).
local function as_scoped(cred)
	if type(cred) ~= "table" or cred.kind ~= "restricted" then
		return cred
	end
	local seen = {}
	for k, v in pairs(cred) do
		seen[k] = v
	end
	seen.domain_id = cred.project_domain_id
	return seen
end

local rules = {}
for action, rule in pairs(shipped) do
	rules[action] = function(cred, target)
		local seen = as_scoped(cred)
		local ok, why = rule(seen, target)
		record({ action = action, allowed = ok == true, reason = why,
		    cred = cred, seen = seen, target = target })
		return ok, why
	end
end

return rules
