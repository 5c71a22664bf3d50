-- wrk -t2 -c16 -d4s -s create.lua http://127.0.0.1:PORT
-- POST /people with an email that no other request of the run uses.
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end

counter = 0

request = function()
   counter = counter + 1
   local body = string.format(
      '{"email": "wrk%d.%d@bench.example", "firstName": "Bench"}',
      tid, counter)
   return wrk.format("POST", "/api/v1/people",
      { ["Content-Type"] = "application/json",
        ["X-Klipy-Api-Key"] = "klipy_api_demo" }, body)
end
