-- No write of rill's raises SIGPIPE: a host that keeps SIGPIPE at its
-- default (tests/c/sigpipe_host.c, rill on the host's own loop, nothing
-- blocked or ignored) lives on while clients leave in the middle of large
-- answers — reset by the client, cut by curl, over TLS, on a WebSocket,
-- and a child process that stops reading its stdin; and its log lines go
-- to a stderr whose reader has gone.
local rill = require "rill"
local helper = require "spec.helper"

local APP = [[
local rill = require "rill"
local app = rill.router()
local block = ("x"):rep(65536)
app:get("/", function(req, res) res:send("ok\n") end)
app:get("/boom", function() error("a handler error, logged") end)
-- 64 MiB, far more than any socket buffer holds, until the client goes
app:get("/big", function(req, res)
  res:header("Content-Length", tostring(1024 * 65536))
  for _ = 1, 1024 do
    if not res:write(block) then return end
  end
end)
app:get("/file", function(req, res) res:send_file(req.query.path) end)
app:websocket("/ws", function(ws)
  while ws:send(block, "binary") do end
end)
-- a child that reads 10 bytes of its stdin and exits: the writes after that
-- go to a pipe nobody reads
app:get("/child", function(req, res)
  local p = assert(rill.exec{"head", "-c", "10", stdin = "pipe", stdout = "null"})
  local ok, err
  for _ = 1, 1024 do
    ok, err = p.stdin:write(block)
    if not ok then break end
  end
  p:wait()
  res:send(tostring(err))
end)
return app
]]

-- A python3 client that, n times, asks for path, reads some of the answer,
-- and resets the connection (SO_LINGER 0): prints "done" when all went.
local RESET = [[
import socket, ssl, struct, sys, base64, os
port, path, n, tls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "tls"
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    if tls:
        s = ctx.wrap_socket(s)
    head = "GET %s HTTP/1.1\r\nHost: x\r\n" % path
    if path == "/ws":
        key = base64.b64encode(os.urandom(16)).decode()
        head += ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                 "Sec-WebSocket-Version: 13\r\n") % key
    s.sendall((head + "\r\n").encode())
    got = b""
    while len(got) < 200000:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the server closed first")
        got += chunk
    status = got.split(b"\r\n", 1)[0]
    if status not in (b"HTTP/1.1 200 OK", b"HTTP/1.1 101 Switching Protocols"):
        sys.exit("status: %r" % status)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
print("done")
]]

describe("no write raises SIGPIPE (a host with SIGPIPE at its default)", function()
  local host, port, tls_port, dir

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/app.lua", "w"))
    f:write(APP)
    f:close()
    f = assert(io.open(dir .. "/reset.py", "w"))
    f:write(RESET)
    f:close()
    f = assert(io.open(dir .. "/big.bin", "w"))
    f:write(("y"):rep(1048576):rep(32))
    f:close()
    local certs = helper.certs()
    local exe = helper.bin:match("^(.*)/[^/]+$") .. "/sigpipe_host"
    host = assert(rill.exec{exe, dir .. "/app.lua", certs .. "/a.test.crt",
      certs .. "/a.test.key", stdout = "pipe", stderr = "inherit"})
    host.stdout:settimeout(10000)
    local line = assert(host.stdout:read_until("\n"))
    port, tls_port = line:match("^ports (%d+) (%d+) pid %d+$")
    port, tls_port = tonumber(port), tonumber(tls_port)
    assert.is_truthy(port, line)
  end)

  teardown(function()
    if host then
      host:kill(9)
      host:wait(10000)
    end
    if dir then os.execute("rm -rf " .. dir) end
  end)

  -- The host answers, so it is alive (a SIGPIPE would have ended it).
  local function alive(scheme, p)
    local code, out, err = helper.curl("-k", ("%s://127.0.0.1:%d/"):format(scheme, p))
    assert.equal(0, code, err)
    assert.equal("ok\n", out)
  end

  local function resets(path, n, tls)
    local code, out, err = helper.run({"python3", dir .. "/reset.py",
      tostring(tls and tls_port or port), path, tostring(n), tls and "tls" or "plain"},
      {timeout = 120000})
    assert.equal(0, code, err)
    assert.equal("done\n", out)
  end

  it("lives on when clients reset the connection mid-body, plain and TLS", function()
    resets("/big", 30, false)
    alive("http", port)
    resets("/big", 30, true)
    alive("https", tls_port)
  end)

  it("lives on when curl is cut off mid-body, plain and TLS", function()
    for _ = 1, 10 do
      for _, u in ipairs{("http://127.0.0.1:%d/big"):format(port),
                         ("https://127.0.0.1:%d/big"):format(tls_port)} do
        helper.run({"sh", "-c", ("curl -sk %s | head -c 100000 >/dev/null"):format(u)})
      end
    end
    alive("http", port)
    alive("https", tls_port)
  end)

  it("lives on when WebSocket clients reset while messages stream, plain and TLS", function()
    resets("/ws", 30, false)
    resets("/ws", 30, true)
    alive("http", port)
  end)

  it("lives on when a file sent by sendfile is cut off", function()
    resets("/file?path=" .. dir .. "/big.bin", 30, false)
    alive("http", port)
  end)

  it("gives EPIPE to a write to a child that stopped reading its stdin", function()
    for _ = 1, 5 do
      local code, out, err = helper.curl(("http://127.0.0.1:%d/child"):format(port))
      assert.equal(0, code, err)
      assert.matches("^EPIPE", out)
    end
    alive("http", port)
  end)

  it("leaves SIGPIPE's disposition and the host's mask as they were", function()
    alive("http", port)
    host:kill(15)
    assert.equal(0, host:wait(30000))
    assert.equal("sigpipe: default, unblocked\n", host.stdout:read_all(4096))
    host = nil
  end)
end)

describe("no log line raises SIGPIPE", function()
  it("a host whose stderr is a pipe nobody reads logs, answers and stops", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    local f = assert(io.open(dir .. "/app.lua", "w"))
    f:write(APP)
    f:close()
    local exe = helper.bin:match("^(.*)/[^/]+$") .. "/sigpipe_host"
    -- stderr: a pipe(2) to `true`, which has exited; stdout: ours
    local sh = assert(rill.exec{"sh", "-c", 'exec 3>&1; "$@" 2>&1 1>&3 3>&- | true', "sh",
      exe, dir .. "/app.lua", stdout = "pipe", stderr = "inherit"})
    sh.stdout:settimeout(10000)
    -- rill_start logged "serving ..." to that pipe before this line came
    local line = assert(sh.stdout:read_until("\n"))
    local p, pid = line:match("^ports (%d+) 0 pid (%d+)$")
    assert.is_truthy(p, line)
    for _ = 1, 5 do
      local code, out = helper.curl("-o", "/dev/null", "-w", "%{http_code}",
        ("http://127.0.0.1:%s/boom"):format(p))
      assert.equal(0, code)
      assert.equal("500", out)
    end
    local code, out = helper.curl(("http://127.0.0.1:%s/"):format(p))
    assert.equal(0, code)
    assert.equal("ok\n", out)
    assert.equal(0, (helper.run({"kill", "-TERM", pid})))
    assert.equal(0, sh:wait(30000))
    assert.equal("sigpipe: default, unblocked\n", sh.stdout:read_all(4096))
    os.execute("rm -rf " .. dir)
  end)
end)

-- The transport's own write queue (what the kernel did not take waits for
-- the socket to be writable): its bytes all leave, in order, before the FIN.
describe("the write queue", function()
  local block = ("0123456789abcdef"):rep(4096) -- 64 KiB

  local function read_all(s)
    local parts, n = {}, 0
    while true do
      local data, err = s:read_some(65536)
      if not data then return table.concat(parts), n, err end
      parts[#parts + 1] = data
      n = n + #data
    end
  end

  it("sends every queued byte before the close's FIN, to a client that reads late", function()
    local handler_done = false
    local l = assert(rill.listen{port = 0, handler = function(s)
      for i = 1, 128 do -- 8 MiB, far past what the socket buffers hold
        assert(s:write(("%08d"):format(i), block))
      end
      handler_done = true
    end})
    local c = assert(rill.connect("127.0.0.1", l:port()))
    rill.sleep(100) -- the server's queue fills meanwhile
    local data, n, err = read_all(c)
    assert.is_nil(err)
    assert.equal(128 * (8 + 65536), n)
    assert.equal("00000128", data:sub(-65536 - 8, -65537))
    assert.is_true(handler_done)
    c:close()
    l:close()
  end)

  it("ends the write side after the queue (shutdown), and reads on", function()
    local got
    local l = assert(rill.listen{port = 0, handler = function(s)
      for _ = 1, 64 do assert(s:write(block)) end
      assert(s:shutdown())
      local ok, err = s:write("late")
      assert.is_nil(ok)
      assert.matches("closed", err)
      got = s:read(3)
    end})
    local c = assert(rill.connect("127.0.0.1", l:port()))
    rill.sleep(100)
    local _, n, err = read_all(c)
    assert.is_nil(err)
    assert.equal(64 * 65536, n)
    assert(c:write("bye"))
    assert.is_true(helper.eventually(function() return got == "bye" end))
    c:close()
    l:close()
  end)
end)
