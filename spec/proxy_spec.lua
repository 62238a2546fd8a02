-- Proxying: the HTTP client, the streaming reverse proxy (bodies, slow
-- readers, 502/504), WebSocket proxying, the WebSocket ↔ TCP bridge (with
-- psql when Postgres is at hand) and raw tunnels.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024
local PYTHON = "/usr/bin/python3"

describe("http client", function()
  local l, base
  setup(function()
    local app = rill.router()
    app:get("/hi", function(req, res) res:send("hello " .. tostring(req.headers["x-a"])) end)
    app:post("/echo", function(req, res)
      for c in req.body:chunks() do res:write(c) end
    end)
    app:get("/chunked", function(req, res)
      res:write("a")
      res:write("bc")
    end)
    app:get("/redirect", function(req, res)
      res:status(302):header("Location", "/hi"):send("")
    end)
    app:get("/slow", function(req, res)
      rill.sleep(2000)
      res:send("late")
    end)
    local port
    l, port = helper.listen(app)
    base = "http://127.0.0.1:" .. port
  end)
  teardown(function() l:close() end)

  it("sends headers and reads Content-Length and chunked bodies", function()
    local res = assert(rill.http.request{url = base .. "/hi", headers = {["X-A"] = "b"}})
    assert.equal(200, res.status)
    assert.equal("7", res.headers["Content-Length"])
    assert.equal("hello b", res.body:read_all())
    res = assert(rill.http.request{url = base .. "/chunked"})
    assert.equal("chunked", res.headers["transfer-encoding"])
    assert.equal("abc", res.body:read_all())
  end)

  it("streams a request body from a function or a stream, chunked", function()
    local parts, i = {"x", "yy", "zzz"}, 0
    local res = assert(rill.http.request{url = base .. "/echo", method = "POST",
      body = function()
        i = i + 1
        return parts[i]
      end})
    assert.equal("xyyzzz", res.body:read_all())
  end)

  it("reuses a pooled keep-alive connection", function()
    local key = base
    local res = assert(rill.http.request{url = base .. "/hi"})
    res.body:read_all()
    local pooled = require("rill.client").pooled(key)
    assert.is_true(pooled >= 1)
    res = assert(rill.http.request{url = base .. "/hi"})
    assert.equal(pooled - 1, require("rill.client").pooled(key))
    res.body:read_all()
    assert.equal(pooled, require("rill.client").pooled(key))
  end)

  -- An upstream that sends more than its framing says (a response longer
  -- than its Content-Length, a body after a 204): the connection holds
  -- bytes nobody asked for, so it is not one to pool. Reused, it would hand
  -- them to the next request, perhaps another client's, as its response.
  for _, shape in ipairs({"a response longer than its Content-Length", "a 204 with a body"}) do
    it("does not pool a connection that holds bytes past the response: " .. shape, function()
      local conns = 0
      local extra = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nPOISONED"
      local ul = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
        conns = conns + 1
        local first = conns == 1
        sock:settimeout(10000)
        while sock:read_until("\r\n\r\n") do
          if first then
            first = false
            if shape:match("204") then
              sock:write("HTTP/1.1 204 No Content\r\n\r\n" .. extra)
            else
              sock:write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello" .. extra)
            end
          else
            sock:write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nreal")
          end
        end
        sock:close()
      end})
      finally(function() ul:close() end)
      local url = ("http://127.0.0.1:%d/"):format(ul:port())
      local res = assert(rill.http.request{url = url .. "first"})
      local first = res.body:read_all()
      rill.sleep(50) -- the extra bytes have arrived
      res = assert(rill.http.request{url = url .. "second"})
      assert.equal(200, res.status)
      assert.equal("real", res.body:read_all(), "the second request got the first one's leftovers")
      assert.equal(shape:match("204") and "" or "hello", first)
    end)
  end

  -- An upstream closes an idle keep-alive connection when its own timeout
  -- passes (Node's is 5 s, the pool keeps them 30 s). The pool must not hand
  -- out a connection whose end has already arrived: a request with a
  -- streamed body cannot be retried, so it would fail (through
  -- examples/proxy.lua, any upload answered 502).
  it("does not use a pooled connection the upstream has closed for a streamed upload",
    function()
      local ul = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
        sock:settimeout(10000)
        local head = sock:read_until("\r\n\r\n")
        if head and head:match("^GET") then
          sock:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        elseif head then
          local n = tonumber(head:lower():match("content%-length: *(%d+)"))
          local body = n and sock:read(n) or ""
          sock:write("HTTP/1.1 200 OK\r\nContent-Length: " .. #body .. "\r\n\r\n" .. body)
        end
        sock:close() -- one request a connection: an idle timeout of zero
      end})
      finally(function() ul:close() end)
      local url = ("http://127.0.0.1:%d/"):format(ul:port())
      local res = assert(rill.http.request{url = url})
      assert.equal("ok", res.body:read_all())
      rill.sleep(50) -- the upstream's FIN has arrived
      local sent = false
      local err
      res, err = rill.http.request{url = url, method = "POST",
        headers = {["Content-Length"] = "6"}, body = function()
          if sent then return nil end
          sent = true
          return "upload"
        end}
      assert.is_truthy(res, "the upload failed: " .. tostring(err))
      assert.equal("upload", res.body:read_all())
    end)

  it("follows redirects only when asked", function()
    local res = assert(rill.http.request{url = base .. "/redirect"})
    assert.equal(302, res.status)
    res.body:read_all()
    res = assert(rill.http.request{url = base .. "/redirect", follow_redirects = 3})
    assert.equal(200, res.status)
    assert.equal("hello nil", res.body:read_all())
  end)

  it("times out and reports a refused connection", function()
    local res, err = rill.http.request{url = base .. "/slow", timeout = 200}
    assert.is_nil(res)
    assert.equal("timeout", err)
    local probe = helper.free_port()
    res, err = rill.http.request{url = "http://127.0.0.1:" .. probe .. "/"}
    assert.is_nil(res)
    assert.matches("ECONNREFUSED", err)
  end)

  it("speaks https with verification", function()
    local dir = helper.certs()
    local tl, port = helper.listen(function(req, res) res:send("secure") end,
      {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    local res = assert(rill.http.request{url = ("https://a.test:%d/"):format(port),
      address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}})
    assert.equal("secure", res.body:read_all())
    local bad, err = rill.http.request{url = ("https://b.test:%d/"):format(port),
      address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}}
    assert.is_nil(bad)
    assert.matches("certificate verify failed", err)
    tl:close()
  end)
end)

describe("reverse proxy", function()
  local upstream
  setup(function() upstream = helper.serve("examples/echo.lua") end)
  teardown(function() assert.equal(0, upstream.stop()) end)

  it("answers a CONNECT and an OPTIONS * itself, and passes an h2c Upgrade as a plain request",
    function()
      local seen
      local ul, uport = helper.listen(function(req, res)
        seen = {upgrade = req.headers.upgrade, method = req.method}
        res:send("plain")
      end)
      local pl, pport = helper.listen(function(req, res)
        rill.proxy.pass(req, res, "http://127.0.0.1:" .. uport)
      end)
      finally(function()
        pl:close()
        ul:close()
      end)
      local raw = helper.raw(pport, "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n")
      assert.matches("^HTTP/1.1 405", raw)
      raw = helper.raw(pport, "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 400", raw)
      assert.is_nil(seen)
      raw = helper.raw(pport, "GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, close\r\n" ..
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
      assert.matches("^HTTP/1.1 200", raw)
      assert.matches("plain$", raw)
      assert.same({method = "GET"}, seen)
    end)

  it("passes requests and headers, adding X-Forwarded-*", function()
    local seen
    local app = rill.router()
    app:get("/x/*rest", function(req, res)
      seen = {target = req.target, xff = req.headers["x-forwarded-for"],
        proto = req.headers["x-forwarded-proto"], host = req.headers["x-forwarded-host"],
        hop = req.headers["x-hop"], conn = req.headers.connection}
      res:header("X-Upstream", "yes"):send("from upstream")
    end)
    local ul, uport = helper.listen(app)
    local pl, pport = helper.listen(function(req, res)
      rill.proxy.pass(req, res, "http://127.0.0.1:" .. uport)
    end)
    local code, out = helper.curl("-i", "-H", "Connection: X-Hop", "-H", "X-Hop: drop me",
      "-H", "X-Forwarded-For: 10.0.0.1", ("http://127.0.0.1:%d/x/y?z=1"):format(pport))
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 200", out)
    assert.matches("\r\nX%-Upstream: yes\r\n", out) -- as the upstream wrote it
    assert.matches("from upstream$", out)
    assert.equal("/x/y?z=1", seen.target)
    assert.equal("10.0.0.1, 127.0.0.1", seen.xff)
    assert.equal("http", seen.proto)
    assert.equal("127.0.0.1:" .. pport, seen.host)
    assert.is_nil(seen.hop)
    pl:close()
    ul:close()
  end)

  it("streams a 1 GiB upload and a 1 GiB download with the proxy's peak RSS under 48 MB",
    function()
      local up = ("http://127.0.0.1:%d"):format(upstream.port)
      local p = helper.start({"serve", "examples/proxy.lua", "--listen", "127.0.0.1:0"},
        {UPSTREAM = up})
      local code, out, err = helper.run({"bash", "-c", ("curl -sS -T - http://127.0.0.1:%d/count" ..
        " < <(head -c 1073741824 /dev/zero)"):format(p.port)}, {timeout = 300000})
      assert.equal(0, code, err)
      assert.equal("1073741824\n", out)
      code, out, err = helper.run({"curl", "-sS", "-o", "/dev/null", "-w", "%{size_download}",
        ("http://127.0.0.1:%d/bytes?n=1073741824"):format(p.port)}, {timeout = 300000})
      assert.equal(0, code, err)
      assert.equal("1073741824", out)
      if not helper.sanitized then
        local _, peak = helper.rss(p.pid)
        assert.is_true(peak < 48 * MB, ("proxy peak RSS %.1f MB"):format(peak / MB))
      end
      assert.equal(0, p.stop())
    end)

  it("passes the first bytes on before the last arrive", function()
    local up = ("http://127.0.0.1:%d"):format(upstream.port)
    local p = helper.start({"serve", "examples/proxy.lua", "--listen", "127.0.0.1:0"},
      {UPSTREAM = up})
    local s = helper.connect(p.port)
    s:write("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    local total, sent, first_at = 64 * MB, 0, nil
    local reader = rill.spawn(function()
      assert(s:read_until("\r\n\r\n"))
      local got = 0
      while got < total do
        local size = tonumber(assert(s:read_until("\r\n")), 16)
        local data = assert(s:read(size))
        if not first_at then first_at = sent end
        got = got + #data
        assert(s:read(2))
      end
      return got
    end)
    local block = string.rep("e", 65536)
    while sent < total do
      assert(s:write(("%x\r\n"):format(#block), block, "\r\n"))
      sent = sent + #block
    end
    s:write("0\r\n\r\n")
    local ok, got = rill.wait(reader)
    assert.is_true(ok, got)
    assert.equal(total, got)
    assert.is_true(first_at < total, "nothing came back before the whole body was sent")
    s:close()
    assert.equal(0, p.stop())
  end)

  it("holds the upstream back for a client that reads slowly, in bounded memory", function()
    local up = ("http://127.0.0.1:%d"):format(upstream.port)
    local p = helper.start({"serve", "examples/proxy.lua", "--listen", "127.0.0.1:0"},
      {UPSTREAM = up})
    local s = helper.connect(p.port)
    s:write("GET /stream?n=10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
    local peak = 0
    for _ = 1, 10 do
      rill.sleep(200)
      local rss = helper.rss(p.pid)
      if rss > peak then peak = rss end
    end
    if not helper.sanitized then
      assert.is_true(peak < 48 * MB, ("proxy RSS %.1f MB"):format(peak / MB))
    end
    -- The upstream's writer is held too: when the client leaves, the
    -- upstream's handler stops not far past what the buffers on the way hold.
    s:close()
    local line = tonumber(upstream.wait_log("stream stopped at line (%d+)"))
    assert.is_true(line < 2000000, "the upstream wrote " .. line .. " lines ahead")
    assert.equal(0, p.stop())
  end)

  -- A client that goes away in the middle of its upload: the request can
  -- never complete, so the proxy lets go of the upstream connection rather
  -- than wait for an answer to it (for the upstream timeout, 30 s here),
  -- holding the client's connection and the upstream's.
  it("lets go of the upstream when the client leaves in the middle of its upload", function()
    local rec = {}
    local ul = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      sock:settimeout(10000)
      rec.head = sock:read_until("\r\n\r\n")
      while true do
        local chunk, err = sock:read_some()
        if not chunk then
          rec.ended = err or "closed"
          break
        end
      end
      sock:close()
    end})
    local p = helper.start({"serve", "examples/proxy.lua", "--listen", "127.0.0.1:0",
      "--workers", "1"}, {UPSTREAM = ("http://127.0.0.1:%d"):format(ul:port()),
      UPSTREAM_TIMEOUT_MS = "30000"})
    finally(function()
      p.stop()
      ul:close()
    end)
    local s = helper.connect(p.port)
    assert(s:write("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
      "5\r\nhello\r\n"))
    while not rec.head do rill.sleep(20) end
    s:close() -- the client goes, the body unfinished
    while not rec.ended do rill.sleep(20) end
    assert.matches("^POST /upload HTTP/1.1\r\n", rec.head)
    assert.equal("closed", rec.ended, "the proxy kept the upstream connection open")
    assert.equal(0, p.stop())
  end)

  it("answers 502 when the upstream is down and 504 when it does not answer", function()
    local down = helper.free_port()
    local silent = assert(rill.listen{port = 0, handler = function(sock) rill.sleep(5000) end})
    local app = rill.router()
    app:proxy("/down", "http://127.0.0.1:" .. down)
    app:proxy("/silent", "http://127.0.0.1:" .. silent:port(), {timeout = 300})
    app:get("/ok", function(req, res) res:send("still here") end)
    local pl, pport = helper.listen(app)
    local code, out = helper.curl("-w", "%{http_code}", "-o", "/dev/null",
      ("http://127.0.0.1:%d/down/x"):format(pport))
    assert.equal("502", out)
    local t0 = rill.now()
    code, out = helper.curl("-w", "%{http_code}", "-o", "/dev/null",
      ("http://127.0.0.1:%d/silent/x"):format(pport))
    assert.equal("504", out)
    assert.is_true(rill.now() - t0 < 3000)
    code, out = helper.curl(("http://127.0.0.1:%d/ok"):format(pport))
    assert.equal("still here", out)
    pl:close()
    silent:close()
  end)

  it("joins WebSockets through the proxy, for python3-websockets", function()
    local ws_srv = helper.serve("examples/ws_echo.lua")
    local p = helper.start({"serve", "examples/proxy.lua", "--listen", "127.0.0.1:0"},
      {UPSTREAM = ("http://127.0.0.1:%d"):format(ws_srv.port)})
    local script = [[
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1], max_size=None) as ws:
        for m in ["text", b"\x00binary", "x" * (16 * 1024 * 1024)]:
            await ws.send(m)
            assert (await ws.recv()) == m
        print("echoed")
        await ws.close(4003, "client done")
        print("closed", ws.close_code)
asyncio.run(main())
]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local code, out, err = helper.run({PYTHON, path, ("ws://127.0.0.1:%d/"):format(p.port)},
      {timeout = 60000})
    os.remove(path)
    assert.equal(0, code, err)
    assert.equal("echoed\nclosed 4003\n", out)
    -- and a close from the far side comes through with its code
    local app = rill.router()
    app:websocket("/", function(ws) ws:close(4004, "server says bye") end)
    local ul, uport = helper.listen(app)
    local papp = rill.router()
    papp:proxy("/", "http://127.0.0.1:" .. uport)
    local pl, pport = helper.listen(papp)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(pport)))
    local none, why, ccode, reason = ws:receive()
    assert.is_nil(none)
    assert.equal(4004, ccode)
    assert.equal("server says bye", reason)
    pl:close()
    ul:close()
    assert.equal(0, p.stop())
    assert.equal(0, ws_srv.stop())
  end)
end)

describe("websocket to tcp bridge", function()
  -- A TCP echo server in a child process.
  local function tcp_echo()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local rill = require "rill"
      local l = assert(rill.listen{port = 0, handler = function(s)
        while true do
          local d = s:read_some(65536)
          if not d or not s:write(d) then return end
        end
      end})
      rill.log("info", "echo on 127.0.0.1:" .. l:port())
    ]])
    f:close()
    local srv = helper.start({"run", path})
    os.remove(path)
    return srv
  end

  it("carries a 256 MiB message in 64 KiB fragments whole, in bounded memory", function()
    local echo = tcp_echo()
    local bridge = helper.start({"serve", "examples/ws_tcp_bridge.lua", "--listen",
      "127.0.0.1:0"}, {TARGET = "127.0.0.1:" .. echo.port})
    -- 512 MiB through two sanitized processes: a wait may be long on a
    -- loaded machine; a hang still fails (after 60 s, not the default 10)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(bridge.port), {idle_timeout = 60000}))
    local total = 256 * MB
    local reader = rill.spawn(function()
      local got = 0
      local s = ws:as_stream()
      while got < total do
        local chunk = s:read_some(1024 * 1024)
        if not chunk then break end
        got = got + #chunk
      end
      return got
    end)
    local out = ws:send_stream("binary")
    local block = string.rep("b", 64 * 1024)
    for _ = 1, total / #block do assert(out:write(block)) end
    out:close()
    local ok, got = rill.wait(reader)
    assert.is_true(ok, got)
    assert.equal(total, got)
    if not helper.sanitized then
      local _, peak = helper.rss(bridge.pid)
      assert.is_true(peak < 48 * MB, ("bridge peak RSS %.1f MB"):format(peak / MB))
    end
    ws:close()
    assert.equal(0, bridge.stop())
    assert.equal(0, echo.stop())
  end)

  it("lets psql run SELECT 1 against Postgres through a TCP → WebSocket adapter", function()
    local pgs, why = helper.postgres()
    if not pgs then return pending(why) end
    finally(pgs.stop)
    local pgport = pgs.port
    local bridge = helper.start({"serve", "examples/ws_tcp_bridge.lua", "--listen",
      "127.0.0.1:0"}, {TARGET = "127.0.0.1:" .. pgport})
    -- The adapter: psql speaks TCP to it; it speaks WebSocket to the bridge.
    local adapter = assert(rill.listen{port = 0, handler = function(sock)
      local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(bridge.port)))
      rill.pipe(sock, ws:as_stream())
    end})
    local code, out, err = helper.run({"psql", "-h", "127.0.0.1", "-p", tostring(adapter:port()),
      "-U", "postgres", "-tAc", "SELECT 1"}, {timeout = 30000, env = {PGCONNECT_TIMEOUT = "10",
      PATH = os.getenv("PATH"), PGSSLMODE = "disable"}})
    adapter:close()
    pgs.stop()
    assert.equal(0, bridge.stop())
    assert.equal(0, code, err)
    assert.equal("1\n", out)
  end)
end)

describe("rill.pipe", function()
  it("tunnels curl's CONNECT through examples/connect_proxy.lua, for allowed hosts only",
    function()
      local dir = helper.certs()
      local tl, tport = helper.listen(function(req, res) res:send("through the tunnel") end,
        {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      local p = helper.serve("examples/connect_proxy.lua", {"--workers", "1"})
      local code, out, err = helper.curl("--cacert", dir .. "/ca.crt", "-x",
        ("http://127.0.0.1:%d"):format(p.port), "--resolve", ("a.test:%d:127.0.0.1"):format(tport),
        ("https://a.test:%d/"):format(tport))
      -- curl resolves a.test itself and asks the proxy for a.test: not allowed
      assert.not_equal(0, code)
      assert.matches("403", err)
      code, out, err = helper.curl("--cacert", dir .. "/ca.crt", "-x",
        ("http://127.0.0.1:%d"):format(p.port), "--connect-to",
        ("a.test:%d:127.0.0.1:%d"):format(tport, tport), ("https://a.test:%d/"):format(tport))
      assert.equal(0, code, err)
      assert.equal("through the tunnel", out)
      assert.equal(0, p.stop())
      tl:close()
    end)

  it("tunnels TLS clients to a plain TCP service (examples/tcp_proxy.lua)", function()
    local dir = helper.certs()
    local echo = assert(rill.listen{port = 0, handler = function(s)
      for line in s:lines() do s:write("echo: ", line, "\n") end
    end})
    local p = helper.start({"run", "examples/tcp_proxy.lua", dir .. "/a.test.crt",
      dir .. "/a.test.key", "0", "127.0.0.1:" .. echo:port()})
    local s = assert(rill.connect("127.0.0.1", p.port, {timeout = 5000,
      tls = {ca = dir .. "/ca.crt", server_name = "a.test"}}))
    s:write("through tls\n")
    assert.equal("echo: through tls", s:read_until("\n"))
    s:close()
    echo:close()
    assert.equal(0, p.stop())
  end)
end)
