-- WebSockets over HTTP/2 by Extended CONNECT (RFC 8441, issue 18): the
-- same app:websocket handler serves them. The client is Python's h2
-- (python3-h2) with WebSocket frames made by spec/h2/ws.py.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024

-- A python3 that has h2, or false.
local python
local function find_python()
  if python == nil then
    python = false
    for _, py in ipairs({"python3", "/usr/bin/python3"}) do
      if helper.run({py, "-c", "import h2"}) == 0 then python = py break end
    end
  end
  return python
end

local function ws_py(case, port, ...)
  if not find_python() then return nil end
  local argv = {python, "spec/h2/ws.py", case, tostring(port)}
  for _, a in ipairs({...}) do argv[#argv + 1] = tostring(a) end
  local code, out, err = helper.run(argv, {timeout = 120000})
  assert(code == 0, "ws.py " .. case .. ": " .. err .. out)
  return out
end

-- The echo app, as the HTTP/1.1 websocket specs have it: each message
-- relayed fragment by fragment.
local function echo_app(seen)
  local app = rill.router()
  app:websocket("/echo", function(ws, req)
    seen.opened = (seen.opened or 0) + 1
    seen.req = {method = req.method, protocol = req.protocol, version = req.version,
      path = req.path, query = req.query_string, origin = req.headers.origin,
      subprotocol = ws:protocol()}
    while true do
      local msg, err = ws:receive()
      if not msg then
        seen.ended = err
        return
      end
      local out = ws:send_stream(msg.type)
      for chunk in msg:chunks() do assert(out:write(chunk)) end
      out:close()
    end
  end, {protocols = {"chat"}})
  app:websocket("/sink", function(ws)
    seen.sink = true
    rill.sleep(2000) -- never reads
  end)
  app:websocket("/idle", function(ws)
    local msg, err = ws:receive()
    seen.idle = {msg = msg, err = err}
  end, {idle_timeout = 200})
  app:get("/detached", function(req)
    local ws = assert(req:upgrade_websocket())
    rill.spawn(function()
      rill.sleep(100) -- the handler has ended
      local msg = assert(ws:receive())
      assert(ws:send("late " .. msg:read_all(100)))
      seen.detached = ws:close(1000)
    end)
  end)
  app:get("/hello", function(req, res) res:send("hello " .. req.version) end)
  app:get("/silent", function(req, res) end)
  return app
end

describe("websockets over HTTP/2 (RFC 8441)", function()
  local l, port, seen
  setup(function()
    seen = {}
    l, port = helper.listen(echo_app(seen), {http2 = true})
  end)
  teardown(function() l:close() end)

  it("advertises SETTINGS_ENABLE_CONNECT_PROTOCOL and echoes text, binary, " ..
    "fragmented messages and pings, then closes with the handshake", function()
    local out = ws_py("echo", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("enable_connect_protocol 1\n", 1, true), out)
    assert.truthy(out:find("status 200\n", 1, true), out)
    assert.truthy(out:find("protocol chat\n", 1, true), out)
    assert.truthy(out:find("accept None\n", 1, true), out) -- no Sec-WebSocket-Accept over h2
    assert.truthy(out:find("text 1 héllo\n", 1, true), out)
    assert.truthy(out:find("binary 2 10240 True\n", 1, true), out)
    -- a ping between the fragments of a message is answered at once
    assert.truthy(out:find("pong 10 mid\nfragmented 1 fragmented\n", 1, true), out)
    assert.truthy(out:find("pong 10 p1\n", 1, true), out)
    assert.truthy(out:find("close 8 1000\n", 1, true), out)
    assert.truthy(out:find("ended True", 1, true), out)
    assert.truthy(out:find("get 200 hello 2\n", 1, true), out) -- the connection goes on
    assert.same({method = "CONNECT", protocol = "websocket", version = "2", path = "/echo",
      query = "x=1", origin = "http://localhost", subprotocol = "chat"}, seen.req)
    assert.is_true(helper.eventually(function() return seen.ended == "closed" end))
  end)

  it("serves Node's http2 client", function()
    if helper.run({"sh", "-c", "command -v node"}) ~= 0 then
      pending("node is not installed")
      return
    end
    local code, out, err = helper.run({"node", "spec/h2/ws_node.js", tostring(port)},
      {timeout = 30000})
    assert.equal(0, code, err)
    assert.equal("enableConnectProtocol true\nstatus 200\ntext hello node\nclose 1000\nclosed 0\n",
      out)
  end)

  it("serves Node's http2 client over TLS (h2 by ALPN)", function()
    if helper.run({"sh", "-c", "command -v node"}) ~= 0 then
      pending("node is not installed")
      return
    end
    local dir = helper.certs()
    local tl, tport = helper.listen(echo_app({}),
      {http2 = true, tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    local code, out, err = helper.run({"node", "spec/h2/ws_node.js", tostring(tport),
      dir .. "/ca.crt"}, {timeout = 30000})
    tl:close()
    assert.equal(0, code, err)
    assert.equal("enableConnectProtocol true\nstatus 200\ntext hello node\nclose 1000\nclosed 0\n",
      out)
  end)

  it("multiplexes two websockets and a GET on one connection", function()
    local out = ws_py("mux", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("status 200 200\n", 1, true), out)
    assert.truthy(out:find("get 200 hello 2\n", 1, true), out)
    assert.truthy(out:find("messages a0 b0 a1 b1 a2 b2 a3 b3 a4 b4\n", 1, true), out)
    assert.truthy(out:find("close 8\nclose 8\n", 1, true), out)
  end)

  it("a websocket that never reads stalls only its own stream", function()
    local out = ws_py("noread", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.is_true(seen.sink)
    -- the stream's window (64 KiB), no more, went into the unread websocket
    assert.truthy(out:find("posted 65535\n", 1, true), out)
    assert.truthy(out:find("get 200 hello 2\n", 1, true), out)
    assert.truthy(out:find("echo still here\n", 1, true), out)
  end)

  it("a client that does not read the echo holds the handler's writes " ..
    "(flow control is backpressure both ways)", function()
    local out = ws_py("stall", port)
    if not out then pending("python3-h2 is not installed") return end
    local sent = tonumber(out:match("sent (%d+) of"))
    assert.truthy(sent, out)
    -- the handler waits to write, so it stops reading: the client's window
    -- shuts long before its 16 MiB went
    assert.is_true(sent < 4 * MB, out)
    assert.is_true(sent >= 65535, out)
  end)

  it("a handler's receive ends when the connection drops", function()
    seen.ended = nil
    local out = ws_py("gone", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("echo one\n", 1, true), out)
    assert.is_true(helper.eventually(function() return seen.ended ~= nil end))
  end)

  it("the websocket's idle timeout applies", function()
    if not find_python() then pending("python3-h2 is not installed") return end
    seen.idle = nil
    -- opens /idle and waits for the server's close
    local py = [[
import sys; sys.path.insert(0, 'spec/h2'); import ws
c = ws.Client(int(sys.argv[1])); s = c.open('/idle'); print('status', c.answered(s))
op, p, _ = c.message(s); print('close', op, int.from_bytes(p[:2], 'big'))
]]
    local c2, o2, e2 = helper.run({python, "-c", py, tostring(port)}, {timeout = 30000})
    assert.equal(0, c2, e2)
    assert.truthy(o2:find("status 200\nclose 8", 1, true), o2)
    assert.is_true(helper.eventually(function() return seen.idle ~= nil end))
    assert.is_nil(seen.idle.msg)
    assert.equal("timeout", seen.idle.err)
  end)

  it("negotiates permessage-deflate", function()
    local out = ws_py("deflate", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("extensions permessage-deflate\n", 1, true), out)
    assert.truthy(out:find("echo 1 compressed True True True", 1, true), out)
  end)

  it("a websocket outlives the handler that upgraded it", function()
    if not find_python() then pending("python3-h2 is not installed") return end
    -- (on a listener whose send_timeout, 50 ms, is shorter than the
    -- websocket's wait after its handler ended: an open tunnel is not an
    -- answer waiting for the peer's window)
    local dl, port = helper.listen(echo_app(seen), {http2 = true, send_timeout = 50})
    local py = [[
import sys; sys.path.insert(0, 'spec/h2'); import ws
c = ws.Client(int(sys.argv[1])); s = c.open('/detached'); print('status', c.answered(s))
c.send(s, ws.frame(1, b'x')); print('got', c.message(s)[1].decode())
c.send(s, ws.frame(8, b'\x03\xe8')); op, p, _ = c.message(s); print('close', op)
st = c.streams[s]; c.until(lambda: st['ended'], 'the end'); print('ended')
]]
    local code, out, err = helper.run({python, "-c", py, tostring(port)}, {timeout = 30000})
    dl:close()
    assert.equal(0, code, err)
    assert.equal("status 200\ngot late x\nclose 8\nended\n", out)
    assert.is_true(helper.eventually(function() return seen.detached ~= nil end))
  end)

  it("app:proxy joins a websocket over HTTP/2 to one over HTTP/1.1 upstream", function()
    local useen = {}
    local ul, uport = helper.listen(echo_app(useen)) -- HTTP/1.1 only
    local app = rill.router()
    app:proxy("/up", "http://127.0.0.1:" .. uport, {strip_prefix = "/up"})
    local pl, pport = helper.listen(app, {http2 = true})
    local py = [[
import sys; sys.path.insert(0, 'spec/h2'); import ws
c = ws.Client(int(sys.argv[1])); s = c.open('/up/echo'); print('status', c.answered(s))
c.send(s, ws.frame(1, b'through')); print('got', c.message(s)[1].decode())
c.send(s, ws.frame(8, b'\x03\xe8')); op, p, _ = c.message(s); print('close', op)
]]
    local code, out, err
    if find_python() then
      code, out, err = helper.run({python, "-c", py, tostring(pport)}, {timeout = 30000})
    end
    pl:close()
    ul:close()
    if not find_python() then pending("python3-h2 is not installed") return end
    assert.equal(0, code, err)
    assert.equal("status 200\ngot through\nclose 8\n", out)
    assert.equal("1.1", useen.req.version) -- the upstream's websocket is HTTP/1.1's
    assert.equal("GET", useen.req.method)
  end)

  it("refuses a plain CONNECT, another :protocol, a GET and a missing version", function()
    local out = ws_py("refused", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("plain 404\n", 1, true), out) -- as before: no tunnel
    assert.truthy(out:find("other protocol 400\n", 1, true), out)
    assert.truthy(out:find("get 426\n", 1, true), out)
    assert.truthy(out:find("ok 200\n", 1, true), out)
    assert.truthy(out:find("no version 426\n", 1, true), out)
  end)

  it("never answers an Extended CONNECT 2xx without a tunnel", function()
    -- A 200 would tell the client its websocket is open: a plain GET route
    -- that sends one raises (500), one that sends nothing gets 501.
    local out = ws_py("untunneled", port)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("plain route 500\n", 1, true), out)
    assert.truthy(out:find("silent route 501\n", 1, true), out)
    assert.truthy(out:find("get 200 hello 2\n", 1, true), out)
  end)

  it("a listener without http2 answers the HTTP/2 preface with 400", function()
    local l1, port1 = helper.listen(echo_app({}))
    local out = ws_py("h1", port1)
    l1:close()
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("answer HTTP/1.1 400", 1, true), out)
  end)

  -- A server of its own, as rill serve runs it: SIGTERM, then exit.
  local function serve_app(body)
    local app = os.tmpname() .. ".lua"
    local f = assert(io.open(app, "w"))
    f:write(body)
    f:close()
    local srv = helper.serve(app, {"--workers", "1", "--grace", "5"})
    os.remove(app)
    return srv, tonumber(srv.wait_log("h2 port (%d+)"))
  end

  it("on SIGTERM closes an open websocket with 1001 and GOAWAY, then exits", function()
    if not find_python() then pending("python3-h2 is not installed") return end
    local srv, h2port = serve_app([[
local rill = require "rill"
local app = rill.router()
app:websocket("/echo", function(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end
    ws:send(msg:read_all(1024), msg.type)
    -- (after the first echo: the client sends nothing more, so the stop
    -- cannot meet its frames)
    rill.log("info", "ws open")
  end
end)
local l = assert(rill.http.listen{host = "127.0.0.1", port = 0, http2 = true, handler = app})
rill.log("info", "h2 port " .. l:port())
return function(req, res) res:send("h1") end
]])
    local client = rill.spawn(function() return ws_py("stop", h2port) end)
    srv.wait_log("(ws open)")
    srv.proc:kill(15)
    local ok, out = rill.wait(client, 30000)
    local exit = srv.stop()
    assert.is_true(ok, tostring(out))
    assert.truthy(out:find("echo open\n", 1, true), out)
    assert.truthy(out:find("close 8 1001 going away\n", 1, true), out)
    assert.truthy(out:find("goaway 0\n", 1, true), out)
    assert.equal(0, exit)
  end)

  it("streams a 64 MiB message through in bounded memory, the echo starting " ..
    "before the message ends", function()
    if not find_python() then pending("python3-h2 is not installed") return end
    local srv, h2port = serve_app([[
local rill = require "rill"
local app = rill.router()
app:websocket("/echo", function(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end
    local out = ws:send_stream(msg.type)
    for chunk in msg:chunks() do assert(out:write(chunk)) end
    out:close()
  end
end, {max_message = 1024 * 1024 * 1024})
local l = assert(rill.http.listen{host = "127.0.0.1", port = 0, http2 = true, handler = app})
rill.log("info", "h2 port " .. l:port())
return function(req, res) res:send("h1") end
]])
    local out = ws_py("big", h2port, 64)
    local _, peak = helper.rss(srv.pid)
    assert.equal(0, srv.stop())
    assert.truthy(out:find("echoed 67108864 same True frames True\n", 1, true), out)
    local first_at, total = out:match("first_at (%d+) total (%d+)")
    assert.is_true(tonumber(first_at) < tonumber(total), out)
    assert.truthy(out:find("close 8\n", 1, true), out)
    if not helper.sanitized then
      assert.is_true(peak < 48 * MB, ("server peak RSS %.1f MB"):format(peak / MB))
    end
  end)
end)
