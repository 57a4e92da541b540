-- wrk script: validate one token (minted at start) with the admin token.
local token = nil

function setup(thread)
	thread:set("unused", true)
end

function init(args)
	-- Mint a token once per thread through the login route.
	local body = '{"k8s_role": "web", "jwt": "' .. os.getenv("DEMO_JWT") .. '"}'
	local req = wrk.format("POST", "/v4/k8s_auth/instances/" ..
	    os.getenv("DEMO_INSTANCE") .. "/auth",
	    {["Content-Type"] = "application/json"}, body)
	minting = req
end

local first = true
function request()
	if token == nil then
		return minting
	end
	return wrk.format("GET", nil, {
		["X-Auth-Token"] = os.getenv("DEMO_ADMIN_TOKEN"),
		["X-Subject-Token"] = token })
end

function response(status, headers, body)
	if token == nil and status == 200 then
		token = headers["X-Subject-Token"] or headers["x-subject-token"]
	end
end
