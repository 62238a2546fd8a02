-- Stopping with long-lived connections open (issue 11, item 4): SIGTERM while
-- a CONNECT tunnel, a raw rill.pipe tunnel, a WebSocket and a never-ending
-- streaming response are open. Every one of them must be closed by the
-- server within --grace (plus a margin), the process must exit 0 by then, and
-- it must not abort (the linger timer of the tunnel's socket was closed twice:
-- `uv_close: Assertion '!uv__is_closing(handle)' failed`).
local rill = require "rill"
local helper = require "spec.helper"

local RUNS = 20
local GRACE = 1         -- seconds, as given to --grace
local MARGIN = 1500     -- ms past the grace period that a close may take
local GRACE_MS = GRACE * 1000

-- One of each long-lived thing. The raw tunnel's listener logs its port as
-- "pipe listener port N" (not "127.0.0.1:N", which helper.start takes for the
-- HTTP port).
local APP = [[
local rill = require "rill"
local UP = tonumber(os.getenv("UPSTREAM_PORT"))

local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(client)
  local up = assert(rill.connect("127.0.0.1", UP, 5000))
  rill.pipe(client, up, {idle_timeout = 300000})
end})
rill.log("info", "pipe listener port " .. l:port())

local app = rill.router()
app:websocket("/ws", function(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end
    local data = msg:read_all()
    if not data or not ws:send(data, msg.type) then return end
  end
end)
app:get("/slow", function(req, res)
  while true do
    if not res:write("tick\n") then return end
    rill.sleep(100)
  end
end)

return function(req, res)
  if req.method == "CONNECT" then
    return rill.proxy.connect(req, res, {allow = function() return true end,
      idle_timeout = 300000})
  end
  return app(req, res)
end
]]

-- A masked client frame (RFC 6455 §5.3) with a payload under 126 bytes.
local function ws_frame(opcode, payload)
  local mask = {0x12, 0x34, 0x56, 0x78}
  local out = {}
  for i = 1, #payload do
    out[i] = string.char(bit.bxor(payload:byte(i), mask[(i - 1) % 4 + 1]))
  end
  return string.char(0x80 + opcode, 0x80 + #payload, unpack(mask)) .. table.concat(out)
end

-- Opens the four connections, each proven to work end to end; returns them
-- by name.
local function open_all(srv, pipe_port, up_port)
  local conns = {}

  local s = helper.connect(srv.port)
  assert(s:write(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n")
    :format(up_port, up_port)))
  assert.equal(200, (helper.read_response_head(s)))
  assert(s:write("ping"))
  assert.equal("ping", s:read(4))
  conns.connect = s

  s = helper.connect(pipe_port)
  assert(s:write("pong"))
  assert.equal("pong", s:read(4))
  conns.pipe = s

  s = helper.connect(srv.port)
  assert(s:write("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
  assert.equal(101, (helper.read_response_head(s)))
  assert(s:write(ws_frame(2, "hello")))
  assert.equal("\130\5hello", s:read(7))
  conns.websocket = s

  s = helper.connect(srv.port)
  assert(s:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"))
  assert.equal(200, (helper.read_response_head(s)))
  assert(s:read_until("tick\n"))
  conns.slow = s
  return conns
end

-- Reads s until the server ends it (nil) or the deadline passes; returns how
-- it ended ("closed", an error such as "ECONNRESET: ...", or "timeout") and
-- when, in ms after t0.
local function read_to_end(s, t0, deadline)
  while true do
    s:settimeout(math.max(1, deadline - rill.now()))
    local chunk, err = s:read_some(65536)
    if not chunk then return err or "closed", rill.now() - t0 end
  end
end

describe("SIGTERM with long-lived connections open", function()
  local dir, app, upstream

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    app = dir .. "/stop_app.lua"
    local f = assert(io.open(app, "w"))
    f:write(APP)
    f:close()
    -- The far end of both tunnels: an echo server in this process.
    upstream = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
      while true do
        local chunk = s:read_some(65536)
        if not chunk or not s:write(chunk) then break end
      end
      s:close()
    end})
  end)

  teardown(function()
    upstream:close()
    os.execute("rm -rf " .. dir)
  end)

  it(("closes a CONNECT tunnel, a rill.pipe tunnel, a WebSocket and a slow response " ..
    "within --grace %g and exits 0, %d times in a row (1 and 2 workers)"):format(GRACE, RUNS),
    function()
      local UPSTREAM_PORT = tostring(upstream:port())
      for run = 1, RUNS do
        local workers = run % 2 == 1 and "1" or "2"
        local srv = helper.start({"serve", app, "--listen", "127.0.0.1:0", "--grace",
          tostring(GRACE), "--workers", workers}, {UPSTREAM_PORT = UPSTREAM_PORT})
        local pipe_port = tonumber(srv.wait_log("pipe listener port (%d+)"))
        local ok, conns = pcall(open_all, srv, pipe_port, upstream:port())
        if not ok then
          srv.proc:kill(9)
          srv.stop()
          error(("run %d: %s"):format(run, tostring(conns)), 0)
        end

        local t0 = rill.now()
        local deadline = t0 + GRACE_MS + MARGIN
        srv.proc:kill(15)
        local readers = {}
        for name, s in pairs(conns) do
          readers[name] = rill.spawn(read_to_end, s, t0, deadline)
        end
        local problems = {}
        for _, name in ipairs({"connect", "pipe", "websocket", "slow"}) do
          local _, how, ms = rill.wait(readers[name])
          conns[name]:close()
          if how == "timeout" then
            problems[#problems + 1] = ("the %s connection was still open %d ms after SIGTERM")
              :format(name, ms)
          end
        end
        local code, sig = srv.proc:wait(math.max(1, deadline - rill.now()))
        if code == nil and sig == "timeout" then
          problems[#problems + 1] = ("the server was still running %d ms after SIGTERM")
            :format(rill.now() - t0)
          -- Our ends are closed now: see how it ends then, for the record.
          code, sig = srv.proc:wait(2000)
          if code == nil and sig == "timeout" then
            srv.proc:kill(9)
            code, sig = srv.proc:wait()
          end
        end
        if code ~= 0 then
          problems[#problems + 1] = ("exit status %s, signal %s"):format(tostring(code),
            tostring(sig))
        end
        srv.stop() -- collects the rest of its log (and prints it if the exit was not 0)
        local log = srv.logtext()
        if log:find("Assertion", 1, true) or log:find("AddressSanitizer", 1, true) then
          problems[#problems + 1] = "its log has: " ..
            (log:match("[^\n]*Assertion[^\n]*") or log:match("[^\n]*AddressSanitizer[^\n]*"))
        end
        assert(#problems == 0, ("run %d of %d (--workers %s): %s"):format(run, RUNS, workers,
          table.concat(problems, "; ")))
      end
    end)
end)
