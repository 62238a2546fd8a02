-- Workers and CPUs: the default worker count follows the process's affinity
-- mask (taskset, containers), and --pin puts worker i on the i-th CPU of it.
local helper = require "spec.helper"

-- "0-2,5" → {0, 1, 2, 5}
local function cpu_list(text)
  local cpus = {}
  for part in text:gmatch("[^,]+") do
    local a, b = part:match("^(%d+)%-(%d+)$")
    a, b = tonumber(a or part), tonumber(b or part)
    for c = a, b do cpus[#cpus + 1] = c end
  end
  return cpus
end

local function allowed(path)
  local f = assert(io.open(path))
  local text = f:read("*a")
  f:close()
  return text:match("Cpus_allowed_list:%s*(%S+)")
end

local function workers_logged(srv)
  local seen = {}
  for _, line in ipairs(srv.log) do
    local id = line:match("%[w(%d+)%] serving")
    if id then seen[tonumber(id)] = true end
  end
  local n = 0
  for _ in pairs(seen) do n = n + 1 end
  return n
end

-- Serves until a request was answered (every worker has booted by then:
-- worker 0 serves only once all have), then lets the log reader catch up.
local function started(argv, wrap)
  local srv = helper.start(argv, nil, wrap)
  local code = helper.curl("-o", "/dev/null", "http://127.0.0.1:" .. srv.port .. "/")
  assert.are.equal(0, code)
  require("rill").sleep(200)
  return srv
end

describe("workers", function()
  local mine = cpu_list(allowed("/proc/self/status"))

  it("default to one per CPU of the process's affinity mask", function()
    local srv = started({"serve", "examples/hello.lua", "--listen", "127.0.0.1:0"},
      {"taskset", "-c", tostring(mine[1])})
    local n = workers_logged(srv)
    assert.are.equal(0, srv.stop())
    assert.are.equal(1, n)
  end)

  it("are pinned one per CPU with --pin", function()
    local srv = started({"serve", "examples/hello.lua", "--listen", "127.0.0.1:0",
      "--workers", "2", "--pin"})
    -- Each worker's thread may run on one CPU only: the i-th of the mask.
    local single = {}
    local p = io.popen("ls /proc/" .. srv.pid .. "/task")
    for tid in p:lines() do
      local cpus = cpu_list(allowed("/proc/" .. srv.pid .. "/task/" .. tid .. "/status"))
      if #cpus == 1 then single[#single + 1] = cpus[1] end
    end
    p:close()
    assert.are.equal(0, srv.stop())
    table.sort(single)
    local want = {mine[1], mine[#mine >= 2 and 2 or 1]} -- round robin past the last
    table.sort(want)
    assert.are.same(want, single)
  end)
end)
