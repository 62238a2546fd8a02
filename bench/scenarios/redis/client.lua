-- The rill side of the redis scenario: a Redis client load on one core.
--   rill run client.lua PORT MODE SECONDS
-- For SECONDS (after half a second of warm-up), MODE "single": 50
-- connections each with one command in flight (SET then GET, alternately);
-- "pipeline": 4 connections each sending batches of 100 commands (50 SET,
-- 50 GET) with r:pipeline. Prints RESULT with the commands done, the wall
-- seconds and this process's CPU seconds (os.clock) over them.
local rill = require "rill"
local redis = rill.redis

local port, mode, seconds = tonumber(arg[1]), arg[2], tonumber(arg[3]) or 3
local VALUE = string.rep("v", 16)
local KEYS = {}
for i = 1, 1000 do KEYS[i] = "key:" .. i end

local function single(r, stop)
  local n, i = 0, 0
  while rill.now() < stop do
    i = i % 1000 + 1
    assert(r:set(KEYS[i], VALUE))
    assert(r:get(KEYS[i]) == VALUE)
    n = n + 2
  end
  return n
end

local function pipeline(r, stop)
  local n, i = 0, 0
  local function batch(p)
    for _ = 1, 50 do
      i = i % 1000 + 1
      p:set(KEYS[i], VALUE)
      p:get(KEYS[i])
    end
  end
  while rill.now() < stop do
    local res = assert(r:pipeline(batch))
    assert(res[100] == VALUE)
    n = n + 100
  end
  return n
end

local function run(fn, conns, ms)
  local clients = {}
  for c = 1, conns do clients[c] = assert(redis.connect{port = port, pool = false}) end
  local cpu0, t0 = os.clock(), rill.now()
  local stop = t0 + ms
  local threads = {}
  for c = 1, conns do threads[c] = rill.spawn(fn, clients[c], stop) end
  local total = 0
  for c = 1, conns do
    local ok, n = rill.wait(threads[c])
    assert(ok, n)
    total = total + n
  end
  local cpu, wall = os.clock() - cpu0, (rill.now() - t0) / 1000
  for c = 1, conns do clients[c]:close() end
  return total, wall, cpu
end

local fn, conns = single, 50
if mode == "pipeline" then fn, conns = pipeline, 4 end
run(fn, conns, 500) -- warm-up: JIT, buffers
local n, wall, cpu = run(fn, conns, seconds * 1000)
print(("RESULT ops=%d wall=%.3f cpu=%.3f"):format(n, wall, cpu))
