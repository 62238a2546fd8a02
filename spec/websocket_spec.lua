-- WebSockets: echo with a client we did not write (Debian's python3-websockets),
-- RFC 6455 corner cases with raw frames, a 256 MiB streamed echo, the rill
-- client, and the same over TLS.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024
local PYTHON = "/usr/bin/python3" -- Debian's, with python3-websockets

-- Runs a Python asyncio client script with arguments; returns code, out, err.
local function python(script, ...)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local argv = {PYTHON, path, ...}
  local code, out, err = helper.run(argv, {timeout = 120000})
  os.remove(path)
  return code, out, err
end

local ECHO_CLIENT = [[
import asyncio, ssl, sys, websockets
async def main():
    url = sys.argv[1]
    ctx = None
    if url.startswith("wss"):
        ctx = ssl.create_default_context(cafile=sys.argv[2])
        ctx.check_hostname = False
    async with websockets.connect(url, max_size=None, ssl=ctx, open_timeout=10) as ws:
        sizes = [0, 125, 126, 65535, 65536, 16 * 1024 * 1024]
        for n in sizes:
            text = ("a" * (n // 3)) + ("é" * ((n - n // 3) // 2))
            await ws.send(text)
            assert (await ws.recv()) == text, "text %d" % n
            data = bytes(i % 251 for i in range(n)) if n < 70000 else b"\x7f" * n
            await ws.send(data)
            got = await ws.recv()
            assert got == data, "binary %d: %d bytes back" % (n, len(got))
            print("echo", n)
        latency = await ws.ping(b"are you there")
        await asyncio.wait_for(latency, 5)
        print("pong")
        await ws.close(4001, "bye")
        print("closed", ws.close_code)
asyncio.run(main())
]]

local CLOSE_CLIENT = [[
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        try:
            await ws.send(sys.argv[2])
            await asyncio.wait_for(ws.recv(), 5)
        except websockets.ConnectionClosed as e:
            print("closed", e.rcvd.code, e.rcvd.reason)
asyncio.run(main())
]]

-- ---- raw frames ----

local function frame(opcode, payload, opts)
  opts = opts or {}
  local b1 = (opts.fin == false and 0 or 0x80) + (opts.rsv or 0) + opcode
  local n = #payload
  local mask = opts.mask ~= false
  local head
  if n < 126 then
    head = string.char(b1, (mask and 0x80 or 0) + n)
  elseif n < 65536 then
    head = string.char(b1, (mask and 0x80 or 0) + 126, math.floor(n / 256), n % 256)
  else
    local bytes = {}
    for i = 7, 0, -1 do bytes[#bytes + 1] = math.floor(n / 2 ^ (8 * i)) % 256 end
    head = string.char(b1, (mask and 0x80 or 0) + 127, unpack(bytes))
  end
  if not mask then return head .. payload end
  local key = {0x12, 0x34, 0x56, 0x78}
  local out = {}
  for i = 1, n do out[i] = string.char(bit.bxor(payload:byte(i), key[(i - 1) % 4 + 1])) end
  return head .. string.char(unpack(key)) .. table.concat(out)
end

-- Opens a WebSocket by hand on port; returns the socket after the 101.
local function raw_ws(port, path)
  local s = helper.connect(port)
  s:write("GET " .. (path or "/") .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" ..
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    "Sec-WebSocket-Version: 13\r\n\r\n")
  local head = assert(s:read_until("\r\n\r\n"))
  assert(head:match("^HTTP/1.1 101"), head)
  assert(head:match("Sec%-WebSocket%-Accept: s3pPLMBiTxaQ9kYGzzhZRbK%+xOo="), head)
  return s
end

-- Reads one unmasked server frame: opcode, payload, fin.
local function read_frame(s)
  local h = s:read(2)
  if not h or #h < 2 then return nil end
  local b1, b2 = h:byte(1, 2)
  local n = b2 % 128
  if n == 126 then
    local e = s:read(2)
    n = e:byte(1) * 256 + e:byte(2)
  elseif n == 127 then
    local e = s:read(8)
    n = 0
    for i = 1, 8 do n = n * 256 + e:byte(i) end
  end
  return b1 % 16, s:read(n) or "", b1 >= 128
end

-- Reads frames until a close; returns its code and reason.
local function read_close(s)
  while true do
    local op, payload = read_frame(s)
    if op == nil then return nil end
    if op == 8 then
      if #payload < 2 then return 1005 end
      return payload:byte(1) * 256 + payload:byte(2), payload:sub(3)
    end
  end
end

local function close_payload(code, reason)
  return string.char(math.floor(code / 256), code % 256) .. (reason or "")
end

describe("websocket", function()
  local srv
  setup(function() srv = helper.serve("examples/ws_echo.lua") end)
  teardown(function() assert.equal(0, srv.stop()) end)

  it("echoes text and binary messages of every length class to python3-websockets", function()
    local code, out, err = python(ECHO_CLIENT, ("ws://127.0.0.1:%d/"):format(srv.port))
    assert.equal(0, code, err)
    for _, n in ipairs({0, 125, 126, 65535, 65536, 16777216}) do
      assert.matches("echo " .. n .. "\n", out, 1, true)
    end
    assert.matches("pong\n", out, 1, true)
    assert.matches("closed 4001\n", out, 1, true)
  end)

  describe("RFC 6455 corner cases, with raw frames:", function()
    it("answers pings between fragments and still echoes the message", function()
      local s = raw_ws(srv.port)
      s:write(frame(1, "Hel", {fin = false}))
      s:write(frame(9, "ping 1"))
      s:write(frame(0, "lo, ", {fin = false}))
      s:write(frame(9, "ping 2"))
      s:write(frame(0, "world"))
      local seen, text = {}, {}
      while #seen < 2 or table.concat(text) ~= "Hello, world" do
        local op, payload = read_frame(s)
        assert.is_truthy(op)
        if op == 10 then seen[#seen + 1] = payload else text[#text + 1] = payload end
      end
      assert.same({"ping 1", "ping 2"}, seen)
      s:write(frame(8, close_payload(1000)))
      assert.equal(1000, read_close(s))
      s:close()
    end)

    it("closes with 1007 on invalid UTF-8 split across fragments", function()
      local s = raw_ws(srv.port)
      -- U+20AC is E2 82 AC; here E2 82 is followed by a plain byte
      s:write(frame(1, "ok \xE2", {fin = false}))
      s:write(frame(0, "\x82(", {fin = true}))
      assert.equal(1007, read_close(s))
      s:close()
    end)

    it("accepts valid UTF-8 split across fragments", function()
      local s = raw_ws(srv.port)
      s:write(frame(1, "euro \xE2", {fin = false}))
      s:write(frame(0, "\x82\xAC!"))
      local got = {}
      repeat
        local op, payload, fin = read_frame(s)
        got[#got + 1] = payload
      until fin
      assert.equal("euro \xE2\x82\xAC!", table.concat(got))
      s:close()
    end)

    it("echoes a message that came in one frame in one frame, a ping's pong after it",
      function()
        local s = raw_ws(srv.port)
        local payload = string.rep("0123456789abcdef", 256 * 1024 / 16) -- 256 KiB
        local whole = frame(2, payload)
        local cut = 100 * 1024
        s:write(whole:sub(1, cut))
        s:flush()
        rill.sleep(50) -- the echo's frame has begun
        s:write(whole:sub(cut + 1) .. frame(9, "mid"))
        local op, got, fin = read_frame(s)
        assert.equal(2, op)
        assert.is_true(fin)
        assert.equal(#payload, #got)
        assert.equal(payload, got)
        op, got = read_frame(s)
        assert.same({10, "mid"}, {op, got})
        -- a message in fragments is echoed as it comes: more than one frame
        s:write(frame(1, "ab", {fin = false}) .. frame(0, "cd"))
        local texts = {}
        repeat
          op, got, fin = read_frame(s)
          texts[#texts + 1] = got
        until fin
        assert.equal("abcd", table.concat(texts))
        s:write(frame(8, close_payload(1000)))
        assert.equal(1000, read_close(s))
        s:close()
      end)

    it("closes with 1002 on an unknown opcode", function()
      local s = raw_ws(srv.port)
      s:write(frame(3, "x"))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("closes with 1002 on reserved bits without an extension", function()
      local s = raw_ws(srv.port)
      s:write(frame(1, "x", {rsv = 0x40}))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("closes with 1002 on an unmasked client frame", function()
      local s = raw_ws(srv.port)
      s:write(frame(1, "x", {mask = false}))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("closes with 1002 on a 126-byte ping", function()
      local s = raw_ws(srv.port)
      s:write(frame(9, string.rep("p", 126)))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("closes with 1002 on a fragmented ping", function()
      local s = raw_ws(srv.port)
      s:write(frame(9, "p", {fin = false}))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("closes with 1002 on a close with an invalid code", function()
      for _, bad in ipairs({999, 1005, 1006, 1016, 2999, 5000}) do
        local s = raw_ws(srv.port)
        s:write(frame(8, close_payload(bad)))
        assert.equal(1002, read_close(s), "code " .. bad)
        s:close()
      end
    end)

    it("closes with 1002 on a continuation without a message", function()
      local s = raw_ws(srv.port)
      s:write(frame(0, "orphan"))
      assert.equal(1002, read_close(s))
      s:close()
    end)

    it("answers a close with the same code, then ends the connection", function()
      local s = raw_ws(srv.port)
      s:write(frame(8, close_payload(4321, "done")))
      assert.equal(4321, read_close(s))
      assert.is_nil(s:read_some())
      s:close()
    end)

    -- An empty control frame is whole once its header is read: it is answered
    -- then, not when the next frame comes. The client sends nothing after it
    -- and waits 2 s for the answer (the close timeout is 5 s; the idle
    -- timeout 300 s), so an answer held for a next frame is a timeout here.
    it("answers an empty ping with an empty pong before any other frame is sent", function()
      local s = raw_ws(srv.port)
      s:write(frame(9, ""))
      s:settimeout(2000)
      local op, payload = read_frame(s)
      assert.equal(10, op, "no pong for an empty ping")
      assert.equal("", payload)
      s:settimeout(10000)
      s:write(frame(1, "after"))
      op, payload = read_frame(s)
      assert.equal(1, op)
      assert.equal("after", payload)
      s:close()
    end)

    it("answers an empty close (a browser's plain ws.close()) with a close at once", function()
      local s = raw_ws(srv.port)
      s:write(frame(8, ""))
      s:settimeout(2000)
      local op, payload = read_frame(s)
      assert.equal(8, op, "no close answered to an empty close")
      assert.equal("", payload) -- no status received: none sent back (RFC 6455 §5.5.1)
      assert.is_nil(s:read_some()) -- then the server ends the connection
      s:close()
    end)
  end)

  -- Automatic pongs obey the transport's high-water mark: while they are
  -- queued above it the WebSocket reads no more, so a peer that floods pings
  -- and never reads fills its own socket, not the server's memory. (A server
  -- of its own: its memory figures are this spec's alone.)
  it("answers a ping flood from a peer that never reads in bounded memory, " ..
    "holding the peer back, and serves another client meanwhile", function()
    local fsrv = helper.serve("examples/ws_echo.lua", {"--workers", "1"})
    finally(function() fsrv.stop() end)
    local s = raw_ws(fsrv.port)
    local before = helper.rss(fsrv.pid)
    local ping = frame(9, string.rep("p", 125))
    local batch = string.rep(ping, 512) -- 512 pings (67 KB) per write
    -- A write held 1.5 s means backpressure reached this client.
    s:settimeout(1500)
    local sent, blocked = 0, nil
    while sent < 250 * MB do
      local ok, err = s:write(batch)
      if not ok then
        blocked = err
        break
      end
      sent = sent + #batch
    end
    -- another client is served meanwhile
    local other = assert(helper.ws(("ws://127.0.0.1:%d/"):format(fsrv.port)))
    assert.is_true(other:send("still there?"))
    local msg = assert(other:receive())
    assert.equal("still there?", msg:read_all())
    other:close()
    local after = helper.rss(fsrv.pid)
    local figures = ("%.1f MB of pings sent; server RSS %.1f -> %.1f MB"):format(sent / MB,
      before / MB, after / MB)
    assert.equal("timeout", blocked, "the client was never held back: " .. figures)
    if not helper.sanitized then
      assert.is_true(after - before < 20 * MB, figures)
    end
    s:close()
    assert.equal(0, fsrv.stop())
  end)

  it("echoes a 256 MiB message sent in 64 KiB fragments in bounded memory, " ..
    "starting before the last fragment is sent", function()
    -- uncompressed: 256 MiB of one byte would deflate to so little that
    -- no write waits (spec/websocket_deflate_spec.lua has the compressed case)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(srv.port),
      {max_message = 1024 * MB, deflate = false}))
    local total = 256 * MB
    local sent, first_at = 0, nil
    local reader = rill.spawn(function()
      local msg = assert(ws:receive())
      local got = 0
      for chunk in msg:chunks() do
        if not first_at then first_at = sent end
        got = got + #chunk
      end
      return got
    end)
    local out = ws:send_stream("binary")
    local block = string.rep("\1", 64 * 1024)
    while sent < total do
      assert(out:write(block))
      sent = sent + #block
    end
    out:close()
    local ok, got = rill.wait(reader)
    assert.is_true(ok)
    assert.equal(total, got)
    assert.is_true(first_at < total, "the echo started only after everything was sent")
    if not helper.sanitized then
      local _, peak = helper.rss(srv.pid)
      assert.is_true(peak < 48 * MB, ("server peak RSS %.1f MB"):format(peak / MB))
    end
    ws:close()
  end)
end)

describe("websocket server API", function()
  local l, port
  local seen
  before_each(function()
    seen = {}
    local app = rill.router()
    app:websocket("/chat", function(ws, req)
      seen.protocol = ws:protocol()
      seen.origin = req.headers.origin
      seen.custom = req.headers["x-custom"]
      local msg = ws:receive()
      -- the request's fields stay readable after the upgrade, between messages
      seen.fields = {req.method, req.path, req.query_string, req.remote_addr,
        type(req.remote_port), req.scheme, req.version, req.raw_headers[1] ~= nil}
      if msg then ws:send("got " .. msg:read_all()) end
      ws:close(4000, "server done")
    end, {protocols = {"v2.chat", "v1.chat"}, origin = {"http://good.example"}})
    app:websocket("/idle", function(ws)
      local msg, err = ws:receive()
      seen.idle = err
    end, {idle_timeout = 200})
    app:websocket("/pieces", function(ws)
      -- each message names the writes to send for it, then whether the
      -- message before it can still be read
      local before
      while true do
        local msg = ws:receive()
        if not msg then return end
        if before then
          local ok, err = pcall(before.read_some, before)
          seen.stale = seen.stale or {}
          seen.stale[#seen.stale + 1] = ok and "read" or tostring(err)
        end
        local plan = msg:read_all()
        local out = ws:send_stream("text", 5)
        for piece in plan:gmatch("%S+") do assert(out:write(piece)) end
        assert(out:close())
        before = msg
      end
    end)
    app:websocket("/closing", function(ws)
      -- one task closes and waits for the peer's close while this one is
      -- reading a message whose last bytes and the peer's close come together
      local msg = ws:receive()
      seen.first = msg:read_some()
      local closer = rill.spawn(function() return ws:close(1000, "bye") end)
      rill.sleep(100) -- the rest of the message and the close arrive meanwhile
      seen.second = {msg:read_some()}
      seen.closed = {rill.wait(closer, 5000)}
    end)
    app:websocket("/declared", function(ws)
      -- each message says how to answer: "<length> <piece> <piece> ..."
      while true do
        local msg = ws:receive()
        if not msg then return end
        seen.lengths = seen.lengths or {}
        seen.lengths[#seen.lengths + 1] = msg.length or "none"
        local plan = msg:read_all()
        local length, rest = plan:match("^(%d+) ?(.*)$")
        local out = ws:send_stream("text", nil, tonumber(length))
        for piece in rest:gmatch("%S+") do
          local ok, err = pcall(out.write, out, piece)
          if not ok then seen.write_error = err end
        end
        seen.closed = {out:close()}
      end
    end)
    app:websocket("/held", function(ws)
      -- another task reads (and answers pings) while a frame of declared
      -- length is half sent
      local reader = rill.spawn(function() return ws:receive() end)
      local out = ws:send_stream("text", nil, 6)
      out:write("abc")
      rill.sleep(100)
      out:write("def")
      out:close()
      rill.wait(reader, 5000)
    end)
    app:websocket("/lines", function(ws)
      local s = ws:as_stream()
      for line in s:lines() do s:write(line:upper() .. "\n") end
    end)
    l, port = helper.listen(app)
  end)
  after_each(function() l:close() end)

  it("negotiates a subprotocol, checks Origin and passes headers with the rill client",
    function()
      local ws, h = helper.ws(("ws://127.0.0.1:%d/chat"):format(port), {
        protocols = {"v1.chat", "v2.chat"}, origin = "http://good.example",
        headers = {["X-Custom"] = "yes"}})
      assert.is_truthy(ws, h)
      assert.equal("v2.chat", ws:protocol())
      assert.is_true(ws:send("hi"))
      local msg = assert(ws:receive())
      assert.equal("text", msg.type)
      assert.equal("got hi", msg:read_all())
      local none, why, code, reason = ws:receive()
      assert.is_nil(none)
      assert.equal("closed", why)
      assert.equal(4000, code)
      assert.equal("server done", reason)
      assert.equal("v2.chat", seen.protocol)
      assert.equal("yes", seen.custom)
      assert.same({"GET", "/chat", "", "127.0.0.1", "number", "http", "1.1", true}, seen.fields)
    end)

  it("refuses a bad origin with 403, a plain GET with 426, a bad key with 400", function()
    local ws, err = helper.ws(("ws://127.0.0.1:%d/chat"):format(port),
      {origin = "http://evil.example"})
    assert.is_nil(ws)
    assert.matches("403", err)
    local code, out = helper.curl("-i", ("http://127.0.0.1:%d/chat"):format(port))
    assert.matches("^HTTP/1.1 426", out)
    assert.matches("\r\nUpgrade: websocket\r\n", out)
    local raw = helper.raw(port, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" ..
      "Connection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n" ..
      "Origin: http://good.example\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 400", raw)
    raw = helper.raw(port, "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" ..
      "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
      "Sec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n")
    assert.matches("^HTTP/1.1 426", raw)
    assert.matches("Sec%-WebSocket%-Version: 13", raw)
  end)

  it("refuses a path, subprotocol, origin or header the request head cannot carry, " ..
    "and sends nothing", function()
      local rec = helper.recorder()
      finally(rec.close)
      local base = ("ws://127.0.0.1:%d"):format(rec.port)
      local cases = {
        {"/a\r\nX-Injected: 1", {}, "^bad request target"},
        {"/a b", {}, "^bad request target"},
        {"/a\0", {}, "^bad request target"},
        {"/", {protocols = {"chat\r\nX-Injected: 1"}}, "^bad subprotocol"},
        {"/", {protocols = {"v1.chat", "a b"}}, "^bad subprotocol \"a b\""},
        {"/", {origin = "http://good.example\r\nX-Injected: 1"}, "^bad origin"},
        {"/", {headers = {["X-A"] = "1\r\nX-Injected: 1"}}, "^bad value for header X%-A"},
        {"/", {headers = {["X-A"] = "1\0"}}, "^bad value for header X%-A"},
        {"/", {headers = {["X A"] = "1"}}, "^bad header name \"X A\""},
        {"/", {headers = {["X-A\r\nX-Injected"] = "1"}}, "^bad header name"},
      }
      for _, case in ipairs(cases) do
        local ws, err = helper.ws(base .. case[1], case[2])
        assert.is_nil(ws, case[3])
        assert.matches(case[3], err)
        assert.not_matches("[\r\n]", err)
      end
      local ws, err = rill.websocket.connect(base .. "/?x=1", {protocols = {"v1.chat"},
        origin = "http://good.example", headers = {["X-Custom"] = "yes"}})
      assert.is_nil(ws)
      assert.equal("handshake: server answered 200", err)
      assert.equal(1, rec.accepted)
      assert.matches("^GET /%?x=1 HTTP/1.1\r\n", rec.heads[1])
      assert.matches("\r\nOrigin: http://good.example\r\n", rec.heads[1])
    end)

  it("wakes a receive waiting in another thread when the websocket is closed", function()
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/lines"):format(port)))
    local waiting = rill.spawn(function() return ws:receive() end)
    rill.sleep(50)
    assert.is_true(ws:close(1000))
    local ok, msg, why = rill.wait(waiting, 5000)
    assert.is_true(ok)
    assert.is_nil(msg)
    assert.equal("closed", why)
  end)

  -- A peer that does not read holds ws:ping() and ws:pong() as it holds
  -- ws:send(): they wait for the transport to drain (here until the
  -- websocket's timeout) instead of queueing without bound. The server's
  -- handler never receives, so nothing reads the client's frames; it only
  -- keeps the connection open until the spec is done.
  for _, method in ipairs({"ping", "pong"}) do
    it("holds ws:" .. method .. "() like a write while the peer does not read", function()
      local done = false
      local app = rill.router()
      app:websocket("/", function(ws)
        while not done do rill.sleep(20) end
      end)
      local fl, fport = helper.listen(app)
      finally(function()
        done = true
        fl:close()
      end)
      local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(fport), {close_timeout = 200}))
      ws:settimeout(1000)
      local payload = string.rep("c", 125)
      -- 500,000 frames are 65 MB: far more than the socket buffers hold
      local n, err = 0, nil
      while n < 500000 do
        local ok, e = ws[method](ws, payload)
        if not ok then
          err = e
          break
        end
        n = n + 1
      end
      assert.equal("timeout", err, ("ws:%s() never waited: %d frames sent"):format(method, n))
      ws:close()
    end)
  end

  it("ends an idle receive after idle_timeout", function()
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/idle"):format(port)))
    local none, why, code = ws:receive()
    assert.is_nil(none)
    assert.equal("closed", why)
    assert.equal(1000, code)
    assert.equal("timeout", seen.idle)
  end)

  it("sends a streamed message in fragments of fragment_size, the last with data, " ..
    "and an old message cannot read the next one", function()
    local s = raw_ws(port, "/pieces")
    local function frames_for(plan)
      s:write(frame(1, plan))
      local got = {}
      repeat
        local op, payload, fin = read_frame(s)
        assert.is_not_nil(op)
        got[#got + 1] = op .. ":" .. payload .. (fin and "!" or "")
      until fin
      return table.concat(got, " ")
    end
    -- one write: one frame, text, final
    assert.equal("1:hello!", frames_for("hello"))
    -- writes gathered below 5 bytes; the latest write is held back
    assert.equal("1:abcd 0:efgh!", frames_for("a b cd efgh"))
    assert.equal("1:abc 0:def 0:ghijkl 0:mn!", frames_for("abc def ghijkl mn"))
    s:write(frame(8, close_payload(1000)))
    assert.equal(1000, read_close(s))
    s:close()
    assert.same({"attempt to use a closed stream", "attempt to use a closed stream"},
      (function()
        local t = {}
        for i, e in ipairs(seen.stale) do t[i] = e:match("attempt to use a closed stream") end
        return t
      end)())
  end)

  it("ends a message being read in one task with 'closed' when another closes, and " ..
    "the close with the peer's", 
    function()
      local s = raw_ws(port, "/closing")
      s:write(frame(1, "abc", {fin = false}))
      local code, reason = read_close(s)
      assert.same({1000, "bye"}, {code, reason})
      s:write(frame(0, "def", {fin = false}) .. frame(8, close_payload(1000)))
      assert.is_nil(s:read_some()) -- the server ends the connection
      s:close()
      for _ = 1, 200 do
        if seen.closed then break end
        rill.sleep(10)
      end
      assert.equal("abc", seen.first)
      -- what comes after our close is not read (RFC 6455 §5.5.1: the peer's
      -- close is awaited, its data dropped)
      assert.same({nil, "closed"}, seen.second)
      assert.same({true, true}, seen.closed)
    end)

  it("sends a message of declared length as one frame, refuses more, fails on less",
    function()
      local s = raw_ws(port, "/declared")
      s:write(frame(1, "6 abc def"))
      local op, got, fin = read_frame(s)
      assert.same({1, "abcdef", true}, {op, got, fin})
      -- two of three bytes, then the writer closes: the frame cannot end,
      -- so the connection fails without another frame
      s:write(frame(1, "3 ab"))
      local h = s:read(2)
      assert.equal(0x81, h:byte(1)) -- the frame began, fin, text
      assert.equal(3, h:byte(2))
      assert.equal("ab", s:read(2))
      assert.is_nil(s:read(1))
      s:close()
      assert.same({nil, "message shorter than its declared length"}, seen.closed)
      assert.same({9, 4}, {seen.lengths[1], seen.lengths[2]})

      s = raw_ws(port, "/declared")
      -- more than declared: the write raises, nothing was sent, the
      -- connection goes on
      s:write(frame(1, "2 abc"))
      -- a fragmented message has no length before its end
      s:write(frame(1, "1 ", {fin = false}) .. frame(0, "x"))
      op, got = read_frame(s)
      assert.same({1, "x"}, {op, got})
      assert.equal("none", seen.lengths[#seen.lengths])
      assert.matches("more than the message's declared length", seen.write_error)
      s:write(frame(8, close_payload(1000)))
      assert.equal(1000, read_close(s))
      s:close()
    end)

  it("answers a ping that comes while a frame is half sent after that frame", function()
    local s = raw_ws(port, "/held")
    s:write(frame(9, "mid"))
    assert.same({1, "abcdef", true}, {read_frame(s)})
    assert.same({10, "mid", true}, {read_frame(s)})
    s:write(frame(8, close_payload(1000)))
    assert.equal(1000, read_close(s))
    s:close()
  end)

  it("shows binary messages as one byte stream with as_stream()", function()
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/lines"):format(port)))
    local s = ws:as_stream()
    -- a line split across messages, and two lines in one
    s:write("hel")
    s:write("lo\nwor")
    s:write("ld\n")
    assert.equal("HELLO", s:read_until("\n"))
    assert.equal("WORLD", s:read_until("\n"))
    ws:close()
  end)

  it("holds an as_stream() writer while the peer does not read, then lets it go on",
    function()
      local total = 32 * 1024 * 1024
      local app = rill.router()
      app:websocket("/flood", function(ws)
        local s = ws:as_stream()
        s:settimeout(5000)
        local block = string.rep("f", 65536)
        for _ = 1, total / #block do assert(s:write(block)) end
        s:read_some() -- until the client closes
      end)
      local fl, fport = helper.listen(app)
      local ws = assert(helper.ws(("ws://127.0.0.1:%d/flood"):format(fport)))
      rill.sleep(300) -- the server's writes back up and it waits
      local s = ws:as_stream()
      s:settimeout(5000)
      local got = 0
      while got < total do
        local chunk = assert(s:read_some(1024 * 1024))
        got = got + #chunk
        rill.sleep(1)
      end
      assert.equal(total, got)
      ws:close()
      fl:close()
    end)

  it("reports the close code the server sends to python3-websockets", function()
    local code, out, err = python(CLOSE_CLIENT, ("ws://127.0.0.1:%d/chat"):format(port), "x")
    -- no Origin header from this client: refused during the handshake
    assert.not_equal(0, code)
    l:close()
    local app = rill.router()
    app:websocket("/", function(ws) ws:close(4002, "policy says no") end)
    l, port = helper.listen(app)
    code, out, err = python(CLOSE_CLIENT, ("ws://127.0.0.1:%d/"):format(port), "x")
    assert.equal(0, code, err)
    assert.equal("closed 4002 policy says no\n", out)
  end)
end)

describe("websocket over TLS", function()
  it("passes the echo spec with python3-websockets over wss", function()
    local dir = helper.certs()
    local srv = helper.serve("examples/ws_echo.lua", {"--tls-cert", dir .. "/a.test.crt",
      "--tls-key", dir .. "/a.test.key"})
    local code, out, err = python(ECHO_CLIENT, ("wss://127.0.0.1:%d/"):format(srv.port),
      dir .. "/ca.crt")
    assert.equal(0, code, err)
    assert.matches("echo 16777216\n", out, 1, true)
    assert.matches("closed 4001\n", out, 1, true)
    -- and the rill client over wss, with verification
    local ws = assert(helper.ws(("wss://a.test:%d/"):format(srv.port),
      {address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}}))
    ws:send("over tls")
    assert.equal("over tls", ws:receive():read_all())
    ws:close()
    assert.equal(0, srv.stop())
  end)

  -- To the system CA bundle our test CA is unknown: a.test's certificate is
  -- as good as self-signed, as a man in the middle's would be.
  it("does not resume a session made with verify = false on a verifying connect", function()
    local dir = helper.certs()
    local app = rill.router()
    app:websocket("/", function(ws) ws:send("hello") end)
    local l = helper.listen(app, {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    finally(function() l:close() end)
    local url = ("wss://a.test:%d/"):format(l:port())
    local ws = assert(helper.ws(url, {address = "127.0.0.1", tls = {verify = false}}))
    assert.equal("hello", ws:receive():read_all())
    ws:close()
    local err
    ws, err = helper.ws(url, {address = "127.0.0.1"})
    assert.is_nil(ws)
    assert.matches("^certificate verify failed", err)
  end)
end)
