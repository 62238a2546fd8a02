-- rill.http.request over HTTP/2 (issue 18): h2 by ALPN for https, one
-- connection per origin multiplexing concurrent requests, streamed bodies
-- both ways, HTTP/1.1 when the server offers only that, GOAWAY, resets and
-- lost connections. Peers: rill's own h2 server, nginx (http2 over TLS) and
-- a scripted h2 server that sends the frames a test needs.
local rill = require "rill"
local bit = require "bit"
local client = require "rill.client"
local helper = require "spec.helper"

local band, rshift, char = bit.band, bit.rshift, string.char

local function have(cmd)
  return helper.run({"sh", "-c", "command -v " .. cmd}) == 0
end

-- ---- a scripted HTTP/2 server (raw frames) ----

local PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

local function u32(x)
  return char(band(rshift(x, 24), 255), band(rshift(x, 16), 255), band(rshift(x, 8), 255),
    band(x, 255))
end

local function frame(typ, flags, sid, payload)
  local n = #payload
  return char(band(rshift(n, 16), 255), band(rshift(n, 8), 255), band(n, 255), typ, flags) ..
    u32(sid) .. payload
end

-- A 200 with body "ok" on stream sid (":status: 200" is HPACK static entry 8).
local function answer(sid, body)
  return frame(1, 4, sid, "\136") .. frame(0, 1, sid, body or "ok")
end

local function goaway(last, code)
  return frame(7, 0, 0, u32(last) .. u32(code))
end

-- A TLS server choosing "h2" by ALPN; on_headers(sock, conn_no, sid) is
-- called for each request head and may return "close"; opts.settings: the
-- payload of its SETTINGS; opts.on_ping_ack(sock): a PING answered.
local function scripted(on_headers, opts)
  opts = opts or {}
  local dir = helper.certs()
  local srv = {accepted = 0}
  local l = assert(rill.listen{host = "127.0.0.1", port = 0,
    tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key", alpn = {"h2"}},
    handler = function(sock)
      srv.accepted = srv.accepted + 1
      local n = srv.accepted
      sock:settimeout(10000)
      if sock:read(24) ~= PREFACE then return sock:close() end
      sock:write(frame(4, 0, 0, opts.settings or ""))
      while true do
        local hd = sock:read(9)
        if not hd or #hd < 9 then break end
        local len = hd:byte(1) * 65536 + hd:byte(2) * 256 + hd:byte(3)
        local typ, flags = hd:byte(4), hd:byte(5)
        local sid = band(hd:byte(6), 127) * 16777216 + hd:byte(7) * 65536 + hd:byte(8) * 256 +
          hd:byte(9)
        if len > 0 and not sock:read(len) then break end
        if typ == 4 and band(flags, 1) == 0 then sock:write(frame(4, 1, 0, "")) end
        if typ == 1 and on_headers(sock, n, sid) == "close" then break end
        if typ == 6 and band(flags, 1) == 1 and opts.on_ping_ack then opts.on_ping_ack(sock) end
      end
      sock:close()
    end})
  srv.port = l:port()
  srv.close = function() l:close() end
  return srv
end

describe("rill.http.request over HTTP/2", function()
  local dir, l, port
  local origin

  local function req(path, extra, p)
    local o = {url = ("https://a.test:%d%s"):format(p or port, path), address = "127.0.0.1",
      tls = {ca = dir .. "/ca.crt"}, timeout = 60000}
    for k, v in pairs(extra or {}) do o[k] = v end
    return rill.http.request(o)
  end

  local function key(p)
    return client.pool_key{url = ("https://a.test:%d/"):format(p or port), address = "127.0.0.1",
      tls = {ca = dir .. "/ca.crt"}}
  end

  setup(function()
    dir = helper.certs()
    l, port = helper.listen(function(r, res)
      local path = r.path
      if path == "/who" then
        res:send(r.remote_port .. " " .. r.version)
      elseif path == "/up" then
        local n = 0
        while true do
          local piece = r.body:read_some(65536)
          if not piece then break end
          n = n + #piece
        end
        res:send("got " .. n .. " " .. r.version)
      elseif path == "/down" then
        local piece = string.rep("d", 65536)
        res:header("Content-Length", tostring(800 * 65536))
        for _ = 1, 800 do res:write(piece) end
      elseif path == "/reset" then
        res:write("partial")
        error("cut short on purpose")
      elseif path == "/headers" then
        res:header("X-Many", "1")
        res:send(r.method .. " " .. tostring(r.headers["x-test"]) .. " " ..
          tostring(r.headers.host) .. " " .. r.body:read_all(1000))
      elseif path == "/early" then
        res:status(413):send("too big") -- the body unread
      elseif path == "/slow" then
        rill.sleep(3000)
        res:send("late")
      else
        res:send("hello " .. r.version)
      end
    end, {http2 = true, tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    origin = key()
  end)

  teardown(function()
    client.drop_idle(origin)
    l:close()
  end)

  it("speaks h2 when ALPN chooses it; the response is as over HTTP/1.1", function()
    local res = assert(req("/headers", {method = "POST", body = "abc",
      headers = {["X-Test"] = "yes", Connection = "keep-alive"}}))
    assert.equal(200, res.status)
    assert.equal("2", res.version)
    assert.equal("1", res.headers["x-many"])
    assert.equal("1", res.headers["X-Many"])
    assert.equal("OK", res.reason)
    assert.equal("POST yes a.test:" .. port .. " abc", res.body:read_all(1000))
    assert.truthy(client.h2_conn(origin))
  end)

  it("multiplexes 50 concurrent requests from separate threads on ONE connection", function()
    client.drop_idle(origin)
    local threads = {}
    for i = 1, 50 do
      threads[i] = rill.spawn(function()
        local res, err = req("/who")
        if not res then return nil, err end
        return res.body:read_all(100)
      end)
    end
    local ports = {}
    for i = 1, 50 do
      local ok, body, err = rill.wait(threads[i], 30000)
      assert.truthy(ok and body, tostring(err))
      local p, version = body:match("^(%d+) (%S+)$")
      assert.equal("2", version)
      ports[p] = true
    end
    local n = 0
    for _ in pairs(ports) do n = n + 1 end
    assert.equal(1, n) -- every request came from the same client port
  end)

  it("streams a 50 MiB upload and a 50 MiB download in bounded memory", function()
    local rss0 = helper.rss("self")
    local piece = string.rep("u", 65536)
    local left = 800
    local res = assert(req("/up", {method = "POST", body = function()
      if left == 0 then return nil end
      left = left - 1
      return piece
    end}))
    assert.equal("got " .. 800 * 65536 .. " 2", res.body:read_all(100))
    res = assert(req("/down"))
    assert.equal("2", res.version)
    local n = 0
    while true do
      local chunk, err = res.body:read_some(65536)
      if not chunk then
        assert.is_nil(err)
        break
      end
      n = n + #chunk
    end
    assert.equal(800 * 65536, n)
    collectgarbage()
    local rss1 = helper.rss("self")
    -- 100 MiB went through; neither side held a body (ASan keeps freed
    -- memory in quarantine: not measured there)
    if not helper.sanitized then
      assert.truthy(rss1 - rss0 < 30 * 1024 * 1024, ("RSS grew by %d bytes"):format(rss1 - rss0))
    end
  end)

  it("takes an answer that comes while the request body is still going", function()
    local piece, sent = string.rep("e", 65536), 0
    local res, err = req("/early", {method = "POST", body = function()
      if sent >= 50 * 1024 * 1024 then return nil end
      sent = sent + #piece
      return piece
    end})
    assert.truthy(res, err)
    assert.equal(413, res.status)
    assert.equal("too big", res.body:read_all(100))
    assert.truthy(sent < 50 * 1024 * 1024) -- the upload stopped
    res = assert(req("/who"))
    assert.equal("2", res.version)
    assert.truthy(res.body:read_all(100))
  end)

  it("uses HTTP/1.1 when the server offers only http/1.1, or when http2 = false", function()
    local l1, p1 = helper.listen(function(r, res) res:send("v" .. r.version) end,
      {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    local res = assert(req("/", nil, p1))
    assert.equal("1.1", res.version)
    assert.equal("v1.1", res.body:read_all(100))
    res = assert(req("/", nil, p1)) -- the pooled HTTP/1.1 connection
    assert.equal("v1.1", res.body:read_all(100))
    client.drop_idle(key(p1))
    l1:close()
    res = assert(req("/", {http2 = false}))
    assert.equal("1.1", res.version)
    assert.equal("hello 1.1", res.body:read_all(100))
    client.drop_idle(origin) -- (that HTTP/1.1 connection, not to be reused below)
  end)

  it("a reset stream fails that request only", function()
    local t = rill.spawn(function()
      local res, err = req("/reset")
      if not res then return nil, err end
      return res.body:read_all(1000)
    end)
    local res = assert(req("/who"))
    local _, body, err = rill.wait(t, 30000)
    assert.is_nil(body)
    assert.truthy(err:find("reset", 1, true), err)
    assert.truthy(res.body:read_all(100):find(" 2$"))
    res = assert(req("/who")) -- the connection still serves
    assert.equal("2", res.version)
    assert.truthy(res.body:read_all(100))
  end)

  it("read_timeout bounds the wait for a response, and the stream is reset", function()
    local t0 = rill.now()
    local res, err = req("/slow", {read_timeout = 100})
    assert.is_nil(res)
    assert.equal("timeout", err)
    assert.truthy(rill.now() - t0 < 3000)
    res = assert(req("/who")) -- other requests go on
    assert.equal("2", res.version)
    assert.truthy(res.body:read_all(100))
  end)

  it("offers h2 again on each new connection (an origin may add it)", function()
    local tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}
    local l1, p1 = helper.listen(function(r, res) res:send("v" .. r.version) end, {tls = tls})
    local res = assert(req("/", nil, p1))
    assert.equal("v1.1", res.body:read_all(100))
    client.drop_idle(key(p1))
    l1:close()
    local l2 = helper.listen(function(r, res) res:send("v" .. r.version) end,
      {port = p1, tls = tls, http2 = true})
    res = assert(req("/", nil, p1))
    assert.equal("2", res.version)
    assert.equal("v2", res.body:read_all(100))
    client.drop_idle(key(p1))
    l2:close()
  end)

  it("a request refused by GOAWAY goes again on a new connection", function()
    local srv = scripted(function(sock, n, sid)
      if n == 1 then
        sock:write(goaway(0, 0)) -- nothing processed: the client may retry
      else
        sock:write(answer(sid, "ok " .. n))
      end
    end)
    local res, err = req("/", nil, srv.port)
    assert.truthy(res, err)
    assert.equal("2", res.version)
    assert.equal("ok 2", res.body:read_all(100))
    assert.equal(2, srv.accepted)
    client.drop_idle(key(srv.port))
    srv.close()
  end)

  it("after GOAWAY in-flight requests finish and the next one opens a new connection", function()
    local srv = scripted(function(sock, n, sid)
      sock:write(goaway(sid, 0) .. answer(sid, "ok " .. n))
    end)
    local res = assert(req("/", nil, srv.port))
    assert.equal("ok 1", res.body:read_all(100))
    res = assert(req("/", nil, srv.port))
    assert.equal("ok 2", res.body:read_all(100))
    assert.equal(2, srv.accepted)
    client.drop_idle(key(srv.port))
    srv.close()
  end)

  it("keeps to the server's SETTINGS_MAX_CONCURRENT_STREAMS; the rest wait", function()
    -- The server answers a request only once the client acknowledged a PING
    -- sent after its head: a second request sent meanwhile would be two
    -- streams open at once.
    local open, max_open, pending = 0, 0, {}
    local srv = scripted(function(sock, n, sid)
      open = open + 1
      if open > max_open then max_open = open end
      pending[#pending + 1] = sid
      sock:write(frame(6, 0, 0, "pingpong"))
    end, {settings = char(0, 3) .. u32(1), on_ping_ack = function(sock)
      local sid = table.remove(pending, 1)
      if sid then
        open = open - 1
        sock:write(answer(sid, "ok " .. sid))
      end
    end})
    assert.equal("ok 1", assert(req("/", nil, srv.port)).body:read_all(100)) -- SETTINGS in
    local threads = {}
    for i = 1, 5 do
      threads[i] = rill.spawn(function()
        local res, err = req("/", nil, srv.port)
        if not res then return nil, err end
        return res.body:read_all(100)
      end)
    end
    for i = 1, 5 do
      local ok, body, err = rill.wait(threads[i], 30000)
      assert.truthy(ok and body, tostring(err))
      assert.truthy(body:find("^ok %d+$"), body)
    end
    assert.equal(1, max_open)
    assert.equal(1, srv.accepted)
    client.drop_idle(key(srv.port))
    srv.close()
  end)

  it("a lost connection fails its requests clearly; the next request reconnects", function()
    local srv = scripted(function(sock, n, sid)
      if n == 1 then return "close" end
      sock:write(answer(sid, "ok " .. n))
    end)
    local res, err = req("/", nil, srv.port)
    assert.is_nil(res)
    assert.truthy(err:find("^closed"), err)
    res = assert(req("/", nil, srv.port))
    assert.equal("ok 2", res.body:read_all(100))
    assert.equal(2, srv.accepted)
    client.drop_idle(key(srv.port))
    srv.close()
  end)

  it("speaks h2c with prior knowledge when asked (http2 = \"prior-knowledge\")", function()
    local l2, p2 = helper.listen(function(r, res) res:send("c" .. r.version) end, {http2 = true})
    local res = assert(rill.http.request{url = helper.url(p2, "/"), http2 = "prior-knowledge"})
    assert.equal("2", res.version)
    assert.equal("c2", res.body:read_all(100))
    res = assert(rill.http.request{url = helper.url(p2, "/")})
    assert.equal("1.1", res.version)
    client.drop_idle(client.pool_key{url = helper.url(p2, "/")})
    l2:close()
  end)

  it("an idle HTTP/2 connection keeps no script running", function()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write(([[
local rill = require "rill"
local res = assert(rill.http.request{url = "https://a.test:%d/who", address = "127.0.0.1",
  tls = {ca = %q}})
io.write(res.version, " ", res.body:read_all(100))
]]):format(port, dir .. "/ca.crt"))
    f:close()
    local code, out, err, sig = helper.run({helper.bin, "run", script}, {timeout = 20000})
    os.remove(script)
    assert.equal(0, code, tostring(sig) .. " " .. err)
    assert.truthy(out:find("^2 %d+ 2$"), out)
  end)

  it("rejects a bad http2 option", function()
    assert.has_error(function() rill.http.request{url = "https://x/", http2 = "yes"} end,
      "rill.http.request: http2 must be true, false or \"prior-knowledge\", got yes")
  end)
end)

describe("rill.http.request over HTTP/2 to nginx", function()
  local dir, tmp, proc, port, port3, www

  local function req(path, p)
    return rill.http.request{url = ("https://a.test:%d%s"):format(p or port, path),
      address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}, timeout = 60000}
  end

  local function connections()
    local f = assert(io.open(tmp .. "/access.log"))
    local seen, n = {}, 0
    for line in f:lines() do
      local c = line:match("^(%d+) ")
      if c and not seen[c] then
        seen[c] = true
        n = n + 1
      end
    end
    f:close()
    return n
  end

  setup(function()
    if not have("nginx") then return end
    dir = helper.certs()
    tmp = os.tmpname()
    os.remove(tmp)
    assert(os.execute("mkdir -p " .. tmp .. "/www") == 0)
    www = tmp .. "/www"
    local f = assert(io.open(www .. "/big", "wb"))
    local piece = string.rep("n", 65536)
    for _ = 1, 800 do f:write(piece) end
    f:close()
    f = assert(io.open(www .. "/small", "wb"))
    f:write("small")
    f:close()
    port, port3 = helper.free_port(), helper.free_port()
    local conf = ([[
daemon off;
master_process off;
worker_processes 1;
pid TMP/nginx.pid;
error_log TMP/error.log;
events { worker_connections 256; }
http {
  log_format conn '$connection $request';
  access_log TMP/access.log conn;
  client_body_temp_path TMP/body;
  proxy_temp_path TMP/proxy;
  fastcgi_temp_path TMP/fastcgi;
  uwsgi_temp_path TMP/uwsgi;
  scgi_temp_path TMP/scgi;
  ssl_certificate DIR/a.test.crt;
  ssl_certificate_key DIR/a.test.key;
  root TMP/www;
  server { listen 127.0.0.1:PORT ssl http2; }
  server { listen 127.0.0.1:PORT3 ssl http2; keepalive_requests 3; }
}
]]):gsub("TMP", tmp):gsub("DIR", dir):gsub("PORT3", tostring(port3)):gsub("PORT", tostring(port))
    f = assert(io.open(tmp .. "/nginx.conf", "w"))
    f:write(conf)
    f:close()
    proc = assert(rill.exec{"nginx", "-p", tmp, "-c", tmp .. "/nginx.conf", stdout = "null",
      stderr = "null"})
    assert(helper.eventually(function()
      local s = rill.connect("127.0.0.1", port3, 1000)
      if s then s:close() end
      return s ~= nil
    end), "nginx did not start")
  end)

  teardown(function()
    if not proc then return end
    proc:kill(15)
    proc:wait(10000)
    os.execute("rm -rf " .. tmp)
  end)

  it("50 concurrent requests share one connection", function()
    if not proc then pending("nginx is not installed") return end
    local threads = {}
    for i = 1, 50 do
      threads[i] = rill.spawn(function()
        local res, err = req("/small")
        if not res then return nil, err end
        return res.version .. " " .. res.body:read_all(100)
      end)
    end
    for i = 1, 50 do
      local ok, body, err = rill.wait(threads[i], 30000)
      assert.truthy(ok and body, tostring(err))
      assert.equal("2 small", body)
    end
    assert.equal(1, connections())
  end)

  it("downloads 50 MiB as a stream", function()
    if not proc then pending("nginx is not installed") return end
    local rss0 = helper.rss("self")
    local res = assert(req("/big"))
    assert.equal("2", res.version)
    assert.equal(tostring(800 * 65536), res.headers["content-length"])
    local n = 0
    while true do
      local chunk = res.body:read_some(65536)
      if not chunk then break end
      n = n + #chunk
    end
    assert.equal(800 * 65536, n)
    collectgarbage()
    local rss1 = helper.rss("self")
    if not helper.sanitized then -- (ASan keeps freed memory in quarantine)
      assert.truthy(rss1 - rss0 < 30 * 1024 * 1024, ("RSS grew by %d bytes"):format(rss1 - rss0))
    end
  end)

  it("goes on over new connections after nginx's GOAWAY (keepalive_requests 3)", function()
    if not proc then pending("nginx is not installed") return end
    local before = connections()
    for i = 1, 10 do
      local res, err = req("/small", port3)
      assert.truthy(res, err)
      assert.equal("small", res.body:read_all(100), "request " .. i)
    end
    assert.equal(before + 4, connections()) -- 3 + 3 + 3 + 1
  end)
end)
