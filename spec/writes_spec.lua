-- Gathered writes: the writes a task makes while it runs leave together when
-- it stops running (or once 64 KiB are gathered), on every write path; a
-- lone write followed by a wait still leaves at once. The clients are
-- python3 (sockets, ssl, websockets) and curl; the syscalls are counted with
-- strace.
local rill = require "rill"
local helper = require "spec.helper"

local PYTHON = "/usr/bin/python3"

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end

-- A path for a flag file the python client creates once it has what it
-- waited for.
local function new_flag()
  local flag = os.tmpname()
  os.remove(flag)
  return flag
end

-- Runs on without yielding (so no wait can flush what the task wrote) until
-- the flag exists, or 10 s; returns whether it came.
local function wait_flag(flag)
  local deadline = os.time() + 10
  while os.time() < deadline and not exists(flag) do end
  return exists(flag)
end

-- A python3 client: connect (with TLS, not verified, if asked), then the
-- steps of the script given as its body. until(b) reads until b was seen.
local PY_PRELUDE = [[
import socket, ssl, sys, os, asyncio
port = int(sys.argv[1]); tls = sys.argv[2] == "tls"; flag = sys.argv[3]
def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s)
    return s
buf = b""
def until(s, want):
    global buf
    while want not in buf:
        d = s.recv(65536)
        if not d:
            sys.exit("closed before %r; got %r" % (want, buf[-200:]))
        buf += d
def at_least(s, n):
    global buf
    while len(buf) < n:
        d = s.recv(65536)
        if not d:
            sys.exit("closed after %d bytes" % len(buf))
        buf += d
]]

local function python(body, port, tls, flag)
  local script = tmpfile(PY_PRELUDE .. body)
  local code, out, err = helper.run({PYTHON, script, tostring(port), tls and "tls" or "plain",
    flag or "-"}, {timeout = 30000})
  os.remove(script)
  return code, out, err
end

-- A raw listener (TCP, or TLS with the test certificates) running handler.
local function raw_listener(handler, tls)
  local o = {host = "127.0.0.1", port = 0, handler = handler}
  if tls then
    local dir = helper.certs()
    o.tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}
  end
  local l = assert(rill.listen(o))
  return l, l:port()
end

describe("gathered writes", function()
  for _, tls in ipairs({false, true}) do
    local over = tls and "TLS" or "TCP"

    it("send a lone write before the task waits to read, over " .. over, function()
      local l, port = raw_listener(function(s)
        s:settimeout(5000)
        assert(s:write("hello\n"))
        local line = s:read_until("\n")
        s:write("echo ", tostring(line), "\n")
      end, tls)
      local code, out, err = python([[
s = connect()
until(s, b"hello\n")
s.sendall(b"x\n")
until(s, b"echo x\n")
print("ok")
]], port, tls)
      l:close()
      assert.are.equal(0, code, err)
      assert.are.equal("ok\n", out)
    end)

    it("send 64 KiB gathered before the task stops running, over " .. over, function()
      local flag = new_flag()
      local saw_flag
      local l, port = raw_listener(function(s)
        s:settimeout(5000)
        local piece = string.rep("x", 99) .. "\n"
        for _ = 1, 700 do assert(s:write(piece)) end -- 70,000 bytes
        saw_flag = wait_flag(flag) -- the client says it has 64 KiB
        s:write("end\n")
      end, tls)
      local code, out, err = python([[
s = connect()
at_least(s, 65536)
open(flag, "w").close()
until(s, b"end\n")
print(len(buf))
]], port, tls, flag)
      l:close()
      os.remove(flag)
      assert.are.equal(0, code, err)
      assert.are.equal("70004\n", out)
      assert.is_true(saw_flag)
    end)
  end

  it("send at flush(), before the task waits, on a raw stream and a response", function()
    local flag = new_flag()
    local saw = {}
    local function spin(which)
      saw[which] = wait_flag(flag)
      os.remove(flag)
    end
    local l, port = raw_listener(function(s)
      assert(s:write("hello\n"))
      assert(s:flush())
      spin("raw") -- no wait, so only flush() can have sent it
      s:write("end\n")
    end)
    local code, out, err = python([[
s = connect()
until(s, b"hello\n")
open(flag, "w").close()
until(s, b"end\n")
print("ok")
]], port, false, flag)
    l:close()
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", out)
    local hl, hport = helper.listen(function(req, res)
      res:header("X-Early", "yes")
      assert(res:flush()) -- the head goes, the body is streamed
      spin("http")
      res:write("end\n")
    end)
    code, out, err = python([[
s = connect()
s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
until(s, b"X-Early: yes\r\n")
assert b"Transfer-Encoding: chunked" in buf, buf
open(flag, "w").close()
until(s, b"end\n")
print("ok")
]], hport, false, flag)
    hl:close()
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", out)
    assert.is_true(saw.raw)
    assert.is_true(saw.http)
  end)

  it("send a response's first write before the handler waits for its body", function()
    local l, port = helper.listen(function(req, res)
      assert(res:write("ready\n"))
      local line = req.body:read_until("\n")
      res:write("got ", tostring(line), "\n")
    end)
    local code, out, err = python([[
s = connect()
s.sendall(b"POST /ping HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
until(s, b"ready\n")
s.sendall(b"2\r\nx\n\r\n0\r\n\r\n")
until(s, b"got x\n")
print("ok")
]], port, false)
    l:close()
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", out)
  end)

  it("send 64 KiB of a response gathered before the handler stops running", function()
    local flag = new_flag()
    local saw_flag
    local l, port = helper.listen(function(req, res)
      res:header("Content-Length", "70004")
      local piece = string.rep("x", 99) .. "\n"
      for _ = 1, 700 do assert(res:write(piece)) end
      saw_flag = wait_flag(flag)
      res:write("end\n")
    end)
    local code, out, err = python([[
s = connect()
s.sendall(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
at_least(s, 65536)
open(flag, "w").close()
until(s, b"end\n")
print("ok")
]], port, false, flag)
    l:close()
    os.remove(flag)
    assert.are.equal(0, code, err)
    assert.are.equal("ok\n", out)
    assert.is_true(saw_flag)
  end)

  for _, tls in ipairs({false, true}) do
    it("send a lone WebSocket message before the handler waits, over "
      .. (tls and "wss" or "ws"), function()
      local app = rill.router()
      app:websocket("/", function(ws)
        assert(ws:send("hello"))
        local msg = ws:receive()
        if msg then ws:send("echo " .. msg:read_all()) end
      end)
      local o
      if tls then
        local dir = helper.certs()
        o = {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}}
      end
      local l, port = helper.listen(app, o)
      local code, out, err = python([[
import websockets
async def main():
    ctx = None
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    url = ("wss" if tls else "ws") + "://127.0.0.1:%d/" % port
    async with websockets.connect(url, ssl=ctx) as ws:
        m = await asyncio.wait_for(ws.recv(), 5)
        assert m == "hello", m
        await ws.send("x")
        m = await asyncio.wait_for(ws.recv(), 5)
        assert m == "echo x", m
asyncio.run(main())
print("ok")
]], port, tls)
      l:close()
      assert.are.equal(0, code, err)
      assert.are.equal("ok\n", out)
    end)
  end
end)

-- Counts the write syscalls (write, writev, sendmsg, sendto) a child rill
-- made on sockets and pipes other than stdio, from an strace log.
local function count_writes(log)
  local n = 0
  for line in io.lines(log) do
    local fd = line:match("^%d+%s+write[v]?%((%d+),") or line:match("^%d+%s+send[mt][so]g?%((%d+),")
    if fd and tonumber(fd) > 2 then n = n + 1 end
  end
  return n
end

-- Runs `rill run script` under strace; returns the port it logs, a stop
-- function, and the strace log's path. The script logs "port N" once it
-- listens; its pid is told too, since stopping strace would only detach it.
local function traced(script_text)
  local script = tmpfile([[
local rill = require "rill"
local f = io.open("/proc/self/stat")
local pid = f:read("*l"):match("^%d+")
f:close()
local log = rill.log
function rill.log(level, msg, ...) return log(level, msg .. " pid " .. pid, ...) end
]] .. script_text)
  local log = os.tmpname()
  local p = assert(rill.exec{"strace", "-f", "-qq", "-o", log,
    "-e", "trace=write,writev,sendmsg,sendto", helper.bin, "run", script,
    stdout = "null", stderr = "pipe"})
  p.stderr:settimeout(20000)
  local port, pid
  local lines = {}
  while not port do
    local line, err = p.stderr:read_until("\n")
    if not line then
      p:kill(9)
      p:wait()
      error("rill did not start under strace (" .. tostring(err) .. "): "
        .. table.concat(lines, "\n"))
    end
    lines[#lines + 1] = line
    port, pid = line:match("port (%d+) pid (%d+)")
    port = tonumber(port)
  end
  -- strace ends when the traced rill does.
  local function stop()
    helper.run({"kill", "-TERM", pid})
    local code = p:wait(10000)
    if code == nil then
      helper.run({"kill", "-KILL", pid})
      p:kill(9)
      p:wait()
    end
    os.remove(script)
  end
  return port, stop, log
end

local has_strace = helper.run({"strace", "-f", "-qq", "-o", "/dev/null", "true"}) == 0

describe("gathered writes, counted", function()
  if not has_strace then
    pending("strace is not installed or may not trace here")
    return
  end

  it("send 100,000 writes of ~12 bytes to a response in one syscall per 16 KiB", function()
    local port, stop, log = traced([[
local rill = require "rill"
local l = rill.http.listen{host = "127.0.0.1", port = 0, handler = function(req, res)
  for i = 1, 100000 do res:write(("line %06d\n"):format(i)) end
end}
rill.log("info", "port " .. l:port())
]])
    local code, out = helper.curl("-o", "/dev/null", "-w", "%{size_download}",
      "http://127.0.0.1:" .. port .. "/")
    stop()
    local writes = count_writes(log)
    os.remove(log)
    assert.are.equal(0, code)
    assert.are.equal(1200000, tonumber(out))
    -- 1.2 MB of lines and 0.5 MB of chunk framing.
    assert.is_true(writes <= 1700000 / 16384 + 5, writes .. " write syscalls")
  end)

  it("send 100,000 writes of 12 bytes to a raw stream in one syscall per 16 KiB", function()
    local port, stop, log = traced([[
local rill = require "rill"
local l = rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
  for i = 1, 100000 do s:write(("line %06d\n"):format(i)) end
end}
rill.log("info", "port " .. l:port())
]])
    local s = helper.connect(port)
    local data = s:read_all(2e6)
    s:close()
    stop()
    local writes = count_writes(log)
    os.remove(log)
    assert.are.equal(1200000, #data)
    assert.is_true(writes <= 1200000 / 16384 + 5, writes .. " write syscalls")
  end)

  it("send the answers to the streams of one HTTP/2 read together", function()
    if helper.run({"sh", "-c", "command -v h2load"}) ~= 0 then
      return pending("h2load (nghttp2-client) is not installed")
    end
    local port, stop, log = traced([[
local rill = require "rill"
local l = rill.http.listen{host = "127.0.0.1", port = 0, http2 = true,
  handler = function(req, res) res:send("hello " .. req.path) end}
rill.log("info", "port " .. l:port())
]])
    -- 2,000 requests, 100 in flight on one connection: h2load sends them
    -- 100 at a time, so each read brings up to 100 requests.
    local code, out = helper.run({"h2load", "-c1", "-m100", "-n2000",
      "http://127.0.0.1:" .. port .. "/x"})
    stop()
    local writes = count_writes(log)
    os.remove(log)
    assert.are.equal(0, code, out)
    assert.truthy(out:find("2000 succeeded", 1, true), out)
    -- One write per request was what each handler's own flush made.
    assert.is_true(writes <= 100, writes .. " write syscalls")
  end)

  it("send 100,000 small WSS messages in one syscall per 16 KiB", function()
    local dir = helper.certs()
    local port, stop, log = traced(([[
local rill = require "rill"
local app = rill.router()
app:websocket("/", function(ws)
  for i = 1, 100000 do ws:send(("line %%06d"):format(i)) end
  ws:close()
end)
local l = rill.http.listen{host = "127.0.0.1", port = 0, handler = app,
  tls = {cert = %q, key = %q}}
rill.log("info", "port " .. l:port())
]]):format(dir .. "/a.test.crt", dir .. "/a.test.key"))
    local ws = assert(helper.ws("wss://127.0.0.1:" .. port .. "/",
      {tls = {ca = dir .. "/ca.crt", server_name = "a.test"}}))
    local n, bytes = 0, 0
    while true do
      local msg = ws:receive()
      if not msg then break end
      bytes = bytes + #msg:read_all()
      n = n + 1
    end
    stop()
    local writes = count_writes(log)
    os.remove(log)
    assert.are.equal(100000, n)
    assert.are.equal(1100000, bytes)
    -- 100,000 frames of 13 bytes, sealed into records of 16 KiB.
    assert.is_true(writes <= 1300000 / 16384 + 10, writes .. " write syscalls")
  end)
end)
