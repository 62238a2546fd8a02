-- The rill side of the client scenario: keep-alive GETs with rill.http.request.
--   rill run client.lua PORT REQUESTS
-- REQUESTS GETs of / (after a warm-up of 2,000), 50 in flight: 50 threads
-- taking the next number until all are taken, each reading the whole body.
-- Prints RESULT with the requests done, the wall seconds and this process's
-- CPU seconds (os.clock) over them.
local rill = require "rill"

local port, total = tonumber(arg[1]), tonumber(arg[2])
local url = ("http://127.0.0.1:%d/"):format(port)

local function run(n)
  local next_i = 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local res = assert(rill.http.request{url = url})
      assert(res.body:read_all() == "Hello, world!")
    end
  end
  local cpu0, t0 = os.clock(), rill.now()
  local threads = {}
  for i = 1, 50 do threads[i] = rill.spawn(worker) end
  for i = 1, 50 do assert(rill.wait(threads[i])) end
  return (rill.now() - t0) / 1000, os.clock() - cpu0
end

run(2000)
local wall, cpu = run(total)
print(("RESULT ops=%d wall=%.3f cpu=%.3f"):format(total, wall, cpu))
