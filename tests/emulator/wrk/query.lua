-- wrk -t2 -c16 -d8s -s query.lua http://127.0.0.1:PORT/api/v1/people/query
-- (or .../interactions/query); LIMIT and FILTER come from the environment:
-- LIMIT=100 FILTER='{"companyId": "cmp_xxxxxx"}' wrk ...
local limit = os.getenv("LIMIT") or "20"
local filter = os.getenv("FILTER")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Klipy-Api-Key"] = "klipy_api_demo"
if filter then
   wrk.body = string.format('{"limit": %s, "filter": %s}', limit, filter)
else
   wrk.body = string.format('{"limit": %s}', limit)
end
