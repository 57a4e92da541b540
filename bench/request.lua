-- bench/request.lua: the one wrk script of bench/measure.sh.  Every row
-- sends the same precomputed request on every keep-alive connection, so
-- wrk's Lua never runs per request and the load generator costs the same
-- for every row, the bare responder included.  From the environment:
--   BENCH_METHOD     GET or POST (default GET)
--   BENCH_BODY_FILE  file whose content is the body (POST)
--   BENCH_AUTH       X-Auth-Token value
--   BENCH_SUBJECT    X-Subject-Token value
--   BENCH_BEARER     Authorization: Bearer value
wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY_FILE")
if body_file ~= nil and body_file ~= "" then
	local f = assert(io.open(body_file, "rb"))
	wrk.body = f:read("a")
	f:close()
	wrk.headers["Content-Type"] = "application/json"
end
local function header(name, value)
	if value ~= nil and value ~= "" then
		wrk.headers[name] = value
	end
end
header("X-Auth-Token", os.getenv("BENCH_AUTH"))
header("X-Subject-Token", os.getenv("BENCH_SUBJECT"))
local bearer = os.getenv("BENCH_BEARER")
if bearer ~= nil and bearer ~= "" then
	wrk.headers["Authorization"] = "Bearer " .. bearer
end
