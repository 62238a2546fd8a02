-- permessage-deflate (RFC 7692): python3-websockets (which negotiates it by
-- default) as client of rill's server and as server of rill's client, in
-- every parameter combination it offers; raw frames for the RSV1 rules, the
-- RFC's examples, a ping inside a compressed message and a deflate bomb; the
-- negotiation (declines, malformed offers, a server answer the client must
-- refuse); the proxy and as_stream over compressed connections; and a
-- 256 MiB compressible message echoed in flat memory.
local rill = require "rill"
local core = require "rill.core"
local helper = require "spec.helper"

local MB = 1024 * 1024
local PYTHON = "/usr/bin/python3" -- Debian's, with python3-websockets

local function python(script, ...)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(script)
  f:close()
  local code, out, err = helper.run({PYTHON, path, ...}, {timeout = 120000})
  os.remove(path)
  return code, out, err
end

-- The server under test: echo routes with different deflate options.
local APP = [[
local rill = require "rill"
local app = rill.router()
local function echo(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end
    local out = ws:send_stream(msg.type)
    for chunk in msg:chunks() do out:write(chunk) end
    out:close()
  end
end
-- first message: what was negotiated; then an echo
local function info(ws)
  ws:send(ws:extensions() or "none")
  echo(ws)
end
app:websocket("/", info, {max_message = 1024 * 1024 * 1024})
app:websocket("/ctx", info, {deflate = {no_context_takeover = true,
  peer_no_context_takeover = true, window_bits = 10, peer_window_bits = 9, level = 9,
  mem_level = 1}})
app:websocket("/off", info, {deflate = false})
-- replies uncompressed (min_size past any reply): raw clients read them plainly
app:websocket("/raw", echo, {deflate = {min_size = 2 ^ 53}})
app:websocket("/small", echo, {max_message = 1024 * 1024})
app:websocket("/bytes", function(ws)
  local s = ws:as_stream()
  while true do
    local chunk = s:read_some(65536)
    if not chunk or not s:write(chunk) then return end
  end
end)
return app
]]

-- ---- raw frames ----

local function frame(b1, payload)
  local n = #payload
  local head
  if n < 126 then
    head = string.char(b1, 0x80 + n)
  elseif n < 65536 then
    head = string.char(b1, 0x80 + 126, math.floor(n / 256), n % 256)
  else
    local bytes = {}
    for i = 7, 0, -1 do bytes[#bytes + 1] = math.floor(n / 2 ^ (8 * i)) % 256 end
    head = string.char(b1, 0x80 + 127, unpack(bytes))
  end
  return head .. "\0\0\0\0" .. payload -- mask 0: the payload as it is
end

-- Opens a WebSocket by hand with ext as Sec-WebSocket-Extensions; returns the
-- socket and the response head.
local function raw_ws(port, path, ext)
  local s = helper.connect(port)
  s:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" ..
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" ..
    "Sec-WebSocket-Version: 13\r\n" ..
    (ext and "Sec-WebSocket-Extensions: " .. ext .. "\r\n" or "") .. "\r\n")
  local head = assert(s:read_until("\r\n\r\n"))
  assert(head:match("^HTTP/1.1 101"), head)
  return s, head
end

local function extension_of(head)
  return head:match("\r\nSec%-WebSocket%-Extensions: ([^\r\n]*)")
end

-- Reads one server frame: first byte, payload.
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
  return b1, s:read(n) or ""
end

local function read_close(s)
  while true do
    local b1, payload = read_frame(s)
    if b1 == nil then return nil end
    if b1 % 16 == 8 then
      if #payload < 2 then return 1005 end
      return payload:byte(1) * 256 + payload:byte(2), payload:sub(3)
    end
  end
end

-- "Hello" compressed, as RFC 7692 §7.2.3.1 has it.
local HELLO = "\xf2\x48\xcd\xc9\xc9\x07\x00"

-- n bytes of zeros deflated (raw, sync flush, tail dropped), by Python's zlib.
local function deflated_zeros(n)
  local code, out, err = helper.run({PYTHON, "-c", ([[
import sys, zlib
c = zlib.compressobj(9, zlib.DEFLATED, -15)
sys.stdout.buffer.write((c.compress(bytes(%d)) + c.flush(zlib.Z_SYNC_FLUSH))[:-4])]]):format(n)})
  assert(code == 0, err)
  return out
end

-- ---- python3-websockets ----

local CLIENT = [==[
import asyncio, os, sys, json, websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
async def main():
    kw = json.loads(sys.argv[2])
    ext = [ClientPerMessageDeflateFactory(**kw)] if kw is not None else None
    async with websockets.connect(sys.argv[1], max_size=None, compression=None if ext else "deflate",
                                  extensions=ext, open_timeout=10) as ws:
        print("response:", ws.response_headers.get("Sec-WebSocket-Extensions"))
        print("server:", await ws.recv())
        block = bytes(range(256)) * 8
        for n in [0, 1, 2, 100, 5000, 70000, 300000]:
            for data in ["héllo wörld "[:n] * (n // 12 + 1), (os.urandom(n // 2) + block * (n // 2048 + 1))[:n]]:
                if isinstance(data, str): data = data[:n]
                await ws.send(data)
                back = await ws.recv()
                assert back == data, (n, type(data), len(back))
        # fragmented, text and binary
        await ws.send(iter(["abc" * 10000, "déf" * 10000, "", "g"]))
        assert await ws.recv() == "abc" * 10000 + "déf" * 10000 + "g"
        await ws.send(iter([b"\0" * 100000, os.urandom(50), b"z"]))
        back = await ws.recv()
        assert len(back) == 100051 and back[:100000] == b"\0" * 100000
        print("ok")
asyncio.run(main())
]==]

local SERVER = [==[
import asyncio, sys, json, websockets
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
async def echo(ws, path=None):
    async for msg in ws:
        await ws.send(msg)
async def main():
    kw = json.loads(sys.argv[1])
    async with websockets.serve(echo, "127.0.0.1", 0, max_size=None, compression=None,
                                extensions=[ServerPerMessageDeflateFactory(**kw)]) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
asyncio.run(main())
]==]

-- Starts the Python server with its factory's keyword arguments (JSON);
-- returns the port and a stop function.
local function python_server(kw)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(SERVER)
  f:close()
  local p = assert(rill.exec{PYTHON, path, kw, stdin = "pipe", stdout = "pipe", stderr = "pipe"})
  p.stdout:settimeout(20000)
  local line = p.stdout:read_until("\n")
  local function stop()
    p.stdin:close()
    if not p:wait(5000) then
      p:kill(9)
      p:wait()
    end
    os.remove(path)
  end
  if not line then
    stop()
    error("the python server did not start: " .. tostring(p.stderr:read_all(65536)))
  end
  return tonumber(line), stop
end

-- Sends messages of every shape through rill's client ws and checks the echo.
local function exchange(ws)
  local block = core.random(4096)
  for _, n in ipairs({0, 1, 100, 5000, 70000, 300000}) do
    local text = ("héllo wörld "):rep(math.floor(n / 12) + 1):sub(1, n)
    text = text:gsub("[\128-\255]+$", "") -- whole characters
    local bin = (block:rep(math.floor(n / 4096) + 1)):sub(1, n)
    for _, m in ipairs({{text, "text"}, {bin, "binary"}}) do
      assert(ws:send(m[1], m[2]))
      local msg = assert(ws:receive())
      assert.equal(m[2], msg.type)
      assert.equal(#m[1], #msg:read_all(MB))
    end
  end
  -- a message streamed in fragments, with a ping between them
  local out = ws:send_stream("text", 1000)
  local lines = {}
  for i = 1, 100 do
    lines[i] = ("line %d\n"):format(i):rep(30)
    assert(out:write(lines[i]))
    if i == 50 then assert(ws:ping("p")) end
  end
  assert(out:close())
  local msg = assert(ws:receive())
  assert.equal(table.concat(lines), msg:read_all(MB))
end

describe("websocket permessage-deflate", function()
  local srv, app_path
  setup(function()
    app_path = os.tmpname() .. ".lua"
    local f = assert(io.open(app_path, "w"))
    f:write(APP)
    f:close()
    srv = helper.serve(app_path, {"--workers", "1"})
  end)
  teardown(function()
    assert.equal(0, srv.stop())
    os.remove(app_path)
  end)

  local function url(path) return ("ws://127.0.0.1:%d%s"):format(srv.port, path) end

  it("is negotiated by python3-websockets' default offer, and echoes text and binary, " ..
    "whole and fragmented", function()
    local code, out, err = python(CLIENT, url("/"), "null")
    assert.equal(0, code, err)
    assert.truthy(out:find("response: permessage-deflate\n", 1, true), out)
    assert.truthy(out:find("server: permessage-deflate\n", 1, true), out)
    assert.truthy(out:find("ok\n", 1, true), out)
  end)

  it("honours python3-websockets' offers: no context takeover and window bits, " ..
    "both ways", function()
    local offers = {
      {'{"server_no_context_takeover": true, "client_no_context_takeover": true}', "/",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      {'{"server_max_window_bits": 9, "client_max_window_bits": 10}', "/",
        "permessage-deflate; server_max_window_bits=9"},
      {'{"server_max_window_bits": 8}', "/",
        "permessage-deflate; server_max_window_bits=8"},
      -- the server asks for its own limits
      {'{"client_max_window_bits": true}', "/ctx", "permessage-deflate; " ..
        "server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; " ..
        "client_max_window_bits=9"},
      {'{"client_max_window_bits": 12, "server_max_window_bits": 12}', "/ctx",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
        "server_max_window_bits=10; client_max_window_bits=9"},
    }
    for _, o in ipairs(offers) do
      local code, out, err = python(CLIENT, url(o[2]), o[1])
      assert.equal(0, code, o[1] .. ": " .. err)
      assert.truthy(out:find("response: " .. o[3] .. "\n", 1, true), o[1] .. ": " .. out)
      assert.truthy(out:find("ok\n", 1, true), out)
    end
    -- a server that must limit the client's window declines an offer that
    -- cannot say so (client_max_window_bits absent), and still talks
    local code, out, err = python(CLIENT, url("/ctx"), '{"client_max_window_bits": null}')
    assert.equal(0, code, err)
    assert.truthy(out:find("response: None\n", 1, true), out)
    assert.truthy(out:find("ok\n", 1, true), out)
    -- off
    code, out, err = python(CLIENT, url("/off"), "null")
    assert.equal(0, code, err)
    assert.truthy(out:find("response: None\nserver: none\n", 1, true), out)
  end)

  it("connects as a client to python3-websockets' server in every mode", function()
    local modes = {
      {"{}", {}, "permessage-deflate"},
      {'{"server_no_context_takeover": true, "client_no_context_takeover": true}', {},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
      {'{"server_max_window_bits": 10, "client_max_window_bits": 9}', {},
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9"},
      {"{}", {no_context_takeover = true, peer_no_context_takeover = true,
        window_bits = 11, peer_window_bits = 12},
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; " ..
        "server_max_window_bits=12; client_max_window_bits=11"},
      {"{}", false, nil}, -- not offered
    }
    for _, m in ipairs(modes) do
      local port, stop = python_server(m[1])
      local ok, err = pcall(function()
        local ws, headers = assert(helper.ws(("ws://127.0.0.1:%d/"):format(port),
          {deflate = m[2]}))
        assert.are.equal(m[3], headers["sec-websocket-extensions"])
        assert.are.equal(m[3], (ws:extensions()))
        exchange(ws)
        ws:close()
      end)
      stop()
      assert(ok, m[1] .. ": " .. tostring(err))
    end
  end)

  it("reads the RFC 7692 examples, one frame, fragments, a stored block, a final block " ..
    "and a shared window, and answers a ping inside a compressed message", function()
    local s, head = raw_ws(srv.port, "/raw", "permessage-deflate")
    assert.equal("permessage-deflate", extension_of(head))
    s:write(frame(0xc1, HELLO))
    s:write(frame(0x41, "\xf2\x48\xcd"), frame(0x89, "ping!"), frame(0x80, "\xc9\xc9\x07\x00"))
    s:write(frame(0xc1, "\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00"))
    s:write(frame(0xc1, "\xf2\x00\x11\x00\x00")) -- "Hello" again, from the window
    s:write(frame(0xc1, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00")) -- BFINAL set
    local want = {{0x81, "Hello"}, {0x8a, "ping!"}, {0x81, "Hello"}, {0x81, "Hello"},
      {0x81, "Hello"}, {0x81, "Hello"}}
    for i, w in ipairs(want) do
      local b1, payload = read_frame(s)
      assert.same(w, {b1, payload}, "frame " .. i)
    end
    s:write(frame(0x88, "\3\232"))
    assert.equal(1000, read_close(s))
    s:close()
  end)

  it("fails with 1002 on RSV1 where RFC 7692 forbids it, and 1007 on bad deflate data " ..
    "or bad UTF-8 once inflated", function()
    local cases = {
      {"/off", frame(0xc1, HELLO), 1002}, -- not negotiated
      {"/raw", frame(0xc9, ""), 1002}, -- on a ping
      {"/raw", frame(0x41, "\xf2\x48\xcd") .. frame(0xc0, "\xc9\xc9\x07\x00"), 1002},
      {"/raw", frame(0xc1, "\xff\xff\xff"), 1007}, -- block type 3
      {"/raw", frame(0xc1, "\x00\x02\x00\xfd\xff\xff\xfe"), 1007}, -- not UTF-8
    }
    for i, c in ipairs(cases) do
      local s = raw_ws(srv.port, c[1], "permessage-deflate")
      s:write(c[2])
      assert.equal(c[3], read_close(s), "case " .. i)
      s:close()
    end
    -- and the server goes on
    local code, out, err = python(CLIENT, url("/"), "null")
    assert.equal(0, code, err .. out)
  end)

  it("closes a deflate bomb with 1009 in flat memory", function()
    local bomb = deflated_zeros(64 * MB) -- 64 KB that inflate to 64 MiB
    assert.is_true(#bomb < 80 * 1024, #bomb)
    local small = deflated_zeros(8 * MB) -- 8 KB past /small's 1 MiB
    local before = helper.rss(srv.pid)
    for i = 1, 4 do
      local s = raw_ws(srv.port, "/small", "permessage-deflate")
      s:write(frame(0xc2, i % 2 == 1 and small or bomb))
      assert.equal(1009, read_close(s), "bomb " .. i)
      s:close()
    end
    local after, peak = helper.rss(srv.pid)
    if not helper.sanitized then
      assert.is_true(after - before < 8 * MB, ("RSS %.1f -> %.1f MB"):format(before / MB, after / MB))
      assert.is_true(peak < 48 * MB, ("peak RSS %.1f MB"):format(peak / MB))
    end
  end)

  it("compresses what it sends: RSV1 on a long message's first frame, none on short ones " ..
    "or with deflate off", function()
    local s = raw_ws(srv.port, "/", "permessage-deflate")
    local b1 = read_frame(s) -- the extensions line: 18 bytes, under min_size
    assert.equal(0x81, b1)
    s:write(frame(0x81, ("abc"):rep(1000)))
    local b, payload = read_frame(s)
    assert.equal(0xc1, b)
    assert.is_true(#payload < 100, #payload)
    s:close()
    local head
    s, head = raw_ws(srv.port, "/off", "permessage-deflate")
    assert.is_nil(extension_of(head))
    read_frame(s)
    s:write(frame(0x81, ("abc"):rep(1000)))
    b, payload = read_frame(s)
    assert.equal(0x81, b)
    assert.equal(3000, #payload)
    s:close()
  end)

  it("takes the first acceptable offer and declines malformed ones", function()
    local cases = {
      {"x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
        "permessage-deflate"},
      {"permessage-deflate; foo, permessage-deflate; server_max_window_bits=11",
        "permessage-deflate; server_max_window_bits=11"},
      {"permessage-deflate; server_no_context_takeover; server_no_context_takeover", nil},
      {"permessage-deflate; server_max_window_bits=7", nil},
      {"permessage-deflate; server_max_window_bits=16", nil},
      {"permessage-deflate; server_max_window_bits=08", nil},
      {"permessage-deflate; server_max_window_bits", nil},
      {"permessage-deflate; client_max_window_bits=\"10\"", "permessage-deflate"},
      {"permessage-deflate; client_no_context_takeover=1", nil},
      {"permessage-deflate; ;", nil}, -- malformed: nothing accepted
      {"PerMessage-Deflate; Server_No_Context_Takeover",
        "permessage-deflate; server_no_context_takeover"},
    }
    for _, c in ipairs(cases) do
      local s, head = raw_ws(srv.port, "/", c[1])
      assert.equal(c[2], extension_of(head), c[1])
      s:close()
    end
  end)

  it("fails a client connect whose server answers with what was not offered", function()
    local answer
    local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      sock:settimeout(5000)
      local head = sock:read_until("\r\n\r\n", 65536)
      if not head then return sock:close() end
      local key = head:match("Sec%-WebSocket%-Key: ([^\r\n]+)")
      sock:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
        "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. core.ws_accept(key) .. "\r\n" ..
        (answer and "Sec-WebSocket-Extensions: " .. answer .. "\r\n" or "") .. "\r\n")
      sock:read_some()
      sock:close()
    end})
    local u = ("ws://127.0.0.1:%d/"):format(l:port())
    local bad = {
      {"x-webkit-deflate-frame"},
      {"permessage-deflate, permessage-deflate"},
      {"permessage-deflate; foo"},
      {"permessage-deflate; server_max_window_bits=16"},
      {"permessage-deflate; client_max_window_bits"},
      {"permessage-deflate; server_max_window_bits=12", {peer_window_bits = 10}},
      {"permessage-deflate; client_max_window_bits=12", {window_bits = 11}},
      {"permessage-deflate", {peer_no_context_takeover = true}},
      {"permessage-deflate", false},
    }
    for _, c in ipairs(bad) do
      answer = c[1]
      local ws, err = rill.websocket.connect(u, {deflate = c[2]})
      assert.is_nil(ws, c[1])
      assert.truthy(tostring(err):find("^handshake: "), err)
    end
    answer = "permessage-deflate; server_max_window_bits=9; client_max_window_bits=8"
    local ws = assert(rill.websocket.connect(u))
    assert.equal(answer, ws:extensions())
    ws:close(1000)
    answer = nil
    ws = assert(rill.websocket.connect(u))
    assert.is_nil(ws:extensions())
    ws:close(1000)
    l:close()
  end)

  it("raises for bad deflate options at the caller's line", function()
    local ok, err = pcall(rill.websocket.connect, "ws://127.0.0.1:1/", {deflate = {level = 10}})
    assert.is_false(ok)
    assert.truthy(err:find("deflate.level must be an integer in 0..9", 1, true), err)
    ok, err = pcall(rill.websocket.connect, "ws://127.0.0.1:1/", {deflate = {windw_bits = 10}})
    assert.truthy(err:find("unknown deflate option windw_bits", 1, true), err)
    local app = rill.router()
    ok, err = pcall(function() app:websocket("/", function() end, {deflate = "yes"}) end)
    assert.truthy(err:find("websocket_deflate_spec.lua:%d+: app:websocket: deflate must be"), err)
  end)

  it("proxies compressed WebSockets, negotiating each side on its own", function()
    local l, port = helper.listen(function(req, res)
      return rill.proxy.websocket(req, res, url("/"))
    end)
    local code, out, err = python(CLIENT, ("ws://127.0.0.1:%d/"):format(port), "null")
    l:close()
    assert.equal(0, code, err)
    assert.truthy(out:find("response: permessage-deflate\n", 1, true), out)
    -- the upstream saw rill's client offer, and accepted it
    assert.truthy(out:find("server: permessage-deflate\n", 1, true), out)
    assert.truthy(out:find("ok\n", 1, true), out)
  end)

  it("serves ws:as_stream() over compressed binary messages", function()
    local ws = assert(helper.ws(url("/bytes")))
    assert.equal("permessage-deflate", ws:extensions())
    local s = ws:as_stream()
    local sent = {}
    for i = 1, 50 do
      local piece = ("%05d"):format(i):rep(i * 40)
      sent[#sent + 1] = piece
      assert(s:write(piece))
    end
    local want = table.concat(sent)
    local got = assert(s:read(#want))
    assert.equal(want, got)
    s:close()
  end)

  it("bridges compressed binary messages to a TCP connection (rill.proxy.ws_to_tcp)", function()
    local tcp = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
      while true do -- a TCP echo
        local chunk = s:read_some(65536)
        if not chunk or not s:write(chunk) then break end
      end
      s:close()
    end})
    local l, port = helper.listen(function(req)
      local ws = req:upgrade_websocket()
      if ws then rill.proxy.ws_to_tcp(ws, "127.0.0.1", tcp:port()) end
    end)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(port)))
    assert.equal("permessage-deflate", ws:extensions())
    local sent = {}
    for i = 1, 20 do
      sent[i] = ("%04d;"):format(i):rep(i * 100)
      assert(ws:send(sent[i], "binary"))
    end
    local want, got = table.concat(sent), {}
    local n = 0
    while n < #want do
      local msg = assert(ws:receive())
      local data = msg:read_all(MB)
      got[#got + 1] = data
      n = n + #data
    end
    assert.equal(want, table.concat(got))
    ws:close()
    l:close()
    tcp:close()
  end)

  it("echoes a 256 MiB compressible message in flat memory, streamed both ways", function()
    local ws = assert(helper.ws(url("/"), {max_message = 1024 * MB}))
    assert.equal("permessage-deflate", assert(ws:receive()):read_all())
    local total = 256 * MB
    -- hex of random bytes: it deflates to about half, so writes wait on the
    -- reader (a 64 KiB block repeats past deflate's 32 KiB window)
    local block = core.random(32768):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
    local twice = block .. block
    local sent, first_at = 0, nil
    local reader = rill.spawn(function()
      local msg = assert(ws:receive())
      local got, same = 0, true
      for chunk in msg:chunks() do
        if not first_at then first_at = sent end
        local off = got % #block
        if #chunk <= #block and twice:sub(off + 1, off + #chunk) ~= chunk then same = false end
        got = got + #chunk
      end
      return got, same
    end)
    local out = ws:send_stream("binary")
    while sent < total do
      assert(out:write(block))
      sent = sent + #block
    end
    assert(out:close())
    local ok, got, same = rill.wait(reader)
    assert.is_true(ok)
    assert.equal(total, got)
    assert.is_true(same, "the echo differs")
    assert.is_true(first_at < total, "the echo started only after everything was sent")
    if not helper.sanitized then
      local _, peak = helper.rss(srv.pid)
      assert.is_true(peak < 48 * MB, ("server peak RSS %.1f MB"):format(peak / MB))
    end
    ws:close()
  end)
end)
