-- Behind a load balancer: the PROXY protocol (in this process, and with a
-- real HAProxy in front of two `rill serve` instances, one of them stopped
-- gracefully under wrk load), TLS session tickets shared by workers and by
-- instances (openssl s_client -sess_out / -sess_in), app:health and
-- app:metrics (Prometheus text format, summed across workers).
local rill = require "rill"
local helper = require "spec.helper"

local V2SIG = "\r\n\r\n\0\r\nQUIT\n"

local function be16(n) return string.char(math.floor(n / 256), n % 256) end

-- A PROXY v2 header for TCP over IPv4.
local function v2_inet(src, dst, sport, dport, tlvs)
  local function ip(a)
    local b = {}
    for x in a:gmatch("%d+") do b[#b + 1] = string.char(tonumber(x)) end
    return table.concat(b)
  end
  local body = ip(src) .. ip(dst) .. be16(sport) .. be16(dport) .. (tlvs or "")
  return V2SIG .. "\x21\x11" .. be16(#body) .. body
end

local function echo_addr(req, res)
  res:send(("%s %s %s %s"):format(tostring(req.remote_addr), tostring(req.remote_port),
    tostring(req.proxy_addr), tostring(req.proxy_port)))
end

-- A GET after header on a new connection: what came back ("" when the
-- server closed it, even before the connection was reported made).
local function get_over(port, header)
  local s = rill.connect("127.0.0.1", port, 5000)
  if not s then return "" end
  s:settimeout(5000)
  if not s:write(header .. "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") then
    s:close()
    return ""
  end
  return helper.read_to_end(s)
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  return dir
end

describe("PROXY protocol", function()
  it("gives req.remote_addr and remote_port from a v1 header, the balancer's as proxy_addr", function()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true})
    local out = get_over(port, "PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n")
    assert.matches("\r\n\r\n203%.0%.113%.7 40000 127%.0%.0%.1 %d+$", out)
    out = get_over(port, "PROXY TCP6 2001:db8::5 ::1 1234 443\r\n")
    assert.matches("\r\n\r\n2001:db8::5 1234 127%.0%.0%.1 %d+$", out)
    -- UNKNOWN: the connection's own address stands
    out = get_over(port, "PROXY UNKNOWN\r\n")
    assert.matches("\r\n\r\n127%.0%.0%.1 %d+ false false$", out)
    l:close()
  end)

  it("reads v2 headers, TLVs skipped, LOCAL ones keeping the connection's address", function()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true})
    local out = get_over(port, v2_inet("198.51.100.9", "127.0.0.1", 65535, 8080,
      "\x04" .. be16(5) .. "abcde"))
    assert.matches("\r\n\r\n198%.51%.100%.9 65535 127%.0%.0%.1 %d+$", out)
    out = get_over(port, V2SIG .. "\x20\x00" .. be16(0))
    assert.matches("\r\n\r\n127%.0%.0%.1 %d+ false false$", out)
    l:close()
  end)

  it("closes a connection without a header, with a bad one, or from a source not allowed", function()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true})
    assert.equal("", (get_over(port, "")))
    assert.equal("", (get_over(port, "PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n")))
    assert.equal("", (get_over(port, "PROXY TCP4 1.2.3.4 5.6.7.8 1 80\n")))
    local bad = v2_inet("1.2.3.4", "5.6.7.8", 1, 2)
    assert.equal("", (get_over(port, bad:sub(1, 12) .. "\x22" .. bad:sub(14))))
    -- and goes on serving others
    assert.matches("\r\n\r\n1%.2%.3%.4 1 ", (get_over(port, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    l:close()
    local l2, port2 = helper.listen(echo_addr, {proxy_protocol = true,
      proxy_from = {"10.0.0.0/8", "192.168.0.0/16"}})
    assert.equal("", (get_over(port2, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    l2:close()
    local l3, port3 = helper.listen(echo_addr, {proxy_protocol = true,
      proxy_from = {"10.0.0.0/8", "127.0.0.0/8"}})
    assert.matches("1%.2%.3%.4 1 ", (get_over(port3, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    l3:close()
  end)

  it("closes a connection whose header does not come within the header timeout", function()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true, header_timeout = 200})
    local s = helper.connect(port)
    assert(s:write("PROXY TCP4 1.2.3.4"))
    local out, how = helper.read_to_end(s)
    assert.equal("", out)
    assert.is_not.equal("timeout", how) -- the server closed it, we did not wait it out
    l:close()
  end)

  it("at the connection limit, closes the connection waiting longest for its header", function()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true, max_connections = 2})
    local c1 = helper.connect(port)
    assert(c1:write("PROX"))
    assert(helper.eventually(function() return l:connections() == 1 end))
    local c2 = helper.connect(port)
    assert(c2:write("PROXY TCP4"))
    assert(helper.eventually(function() return l:connections() == 2 end))
    -- a third, with its header: served, and the first one closed for it
    assert.matches("\r\n\r\n1%.2%.3%.4 1 ", (get_over(port, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    local out, how = helper.read_to_end(c1)
    assert.equal("", out)
    assert.is_not.equal("timeout", how)
    c2:close()
    l:close()
  end)

  it("raises on bad options", function()
    local ok, err = pcall(rill.http.listen, {handler = echo_addr, proxy_protocol = 1})
    assert.is_false(ok)
    assert.matches("option proxy_protocol must be a boolean, not number", err)
    ok, err = pcall(rill.listen, {handler = echo_addr, proxy_protocol = true,
      proxy_from = {"127.0.0.1", "10.0.0.0/33"}})
    assert.is_false(ok)
    assert.matches("option proxy_from: bad address 10%.0%.0%.0/33", err)
  end)

  it("comes before TLS, and a raw stream's peername is the client's", function()
    local dir = helper.certs()
    local l, port = helper.listen(echo_addr, {proxy_protocol = true,
      tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    local s = helper.connect(port)
    assert(s:write("PROXY TCP4 203.0.113.8 127.0.0.1 4444 443\r\n"))
    assert(s:starttls{server_name = "a.test", ca = dir .. "/ca.crt"})
    assert(s:write("GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"))
    local out = helper.read_to_end(s)
    assert.matches("\r\n\r\n203%.0%.113%.8 4444 127%.0%.0%.1 %d+$", out)
    l:close()

    local seen = {}
    local raw = assert(rill.listen{host = "127.0.0.1", port = 0, proxy_protocol = true,
      handler = function(sock)
        seen.peer = {sock:peername()}
        seen.proxy = {sock:proxyname()}
        seen.data = sock:read(5)
        sock:close()
      end})
    local c = helper.connect(raw:port())
    assert(c:write(v2_inet("192.0.2.1", "127.0.0.1", 5555, 6666) .. "hello"))
    helper.read_to_end(c)
    assert.same({"192.0.2.1", 5555}, seen.peer)
    assert.equal("127.0.0.1", seen.proxy[1])
    assert.equal("hello", seen.data) -- nothing after the header was taken
    raw:close()

    -- a raw TLS server: the header, then the handshake
    local tls_raw = assert(rill.listen{host = "127.0.0.1", port = 0, proxy_protocol = true,
      tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"},
      handler = function(sock)
        local host, port = sock:peername()
        sock:write(host .. " " .. port)
        sock:close()
      end})
    local t = helper.connect(tls_raw:port())
    assert(t:write("PROXY TCP6 2001:db8::9 ::1 9999 443\r\n"))
    assert(t:starttls{server_name = "a.test", ca = dir .. "/ca.crt"})
    assert.equal("2001:db8::9 9999", (helper.read_to_end(t)))
    tls_raw:close()
  end)

  it("rill serve --proxy-from allows only the sources listed, and says what is wrong", function()
    local srv = helper.serve("examples/hello.lua", {"--workers", "1", "--proxy-protocol",
      "--proxy-from", "10.0.0.0/8"})
    assert.equal("", (get_over(srv.port, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    assert.equal(0, srv.stop())
    srv = helper.serve("examples/hello.lua", {"--workers", "1", "--proxy-protocol",
      "--proxy-from", "10.0.0.0/8", "--proxy-from", "127.0.0.1"})
    assert.matches("Hello", (get_over(srv.port, "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n")))
    assert.equal(0, srv.stop())
    local code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua", "--listen",
      "127.0.0.1:0", "--workers", "1", "--proxy-protocol", "--proxy-from", "bogus"})
    assert.equal(1, code)
    assert.matches("rill: listen: option proxy_from: bad address bogus", err)
    code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua", "--proxy-from",
      "10.0.0.1"})
    assert.equal(2, code)
    assert.matches("%-%-proxy%-from needs %-%-proxy%-protocol", err)
  end)

  it("gives a WebSocket handler the client's address", function()
    local app = rill.router()
    app:websocket("/ws", function(ws, req)
      ws:send(req.remote_addr .. " " .. req.remote_port .. " " .. req.proxy_addr)
      ws:close()
    end)
    local l, port = helper.listen(app, {proxy_protocol = true})
    local s = helper.connect(port)
    assert(s:write(v2_inet("203.0.113.9", "127.0.0.1", 7777, 80) ..
      "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" ..
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
    local status = helper.read_response_head(s)
    assert.equal(101, status)
    local hdr = s:read(2)
    assert.equal(0x81, hdr:byte(1)) -- one text frame
    assert.equal("203.0.113.9 7777 127.0.0.1", s:read(hdr:byte(2)))
    s:close()
    l:close()
  end)

  it("s:proxyname() and req.proxy_addr say when there was no header", function()
    local got
    local l, port = helper.listen(function(req, res)
      got = {req.proxy_addr, req.remote_addr}
      res:send("ok")
    end)
    helper.curl(helper.url(port))
    assert.same({false, "127.0.0.1"}, got)
    l:close()
    local raw = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      got = {sock:proxyname()}
      sock:close()
    end})
    helper.read_to_end(helper.connect(raw:port()))
    assert.same({nil, "no PROXY header"}, got)
    raw:close()
  end)
end)

-- An app for the HAProxy specs: echoes the client's address and port.
local APP = [[
local rill = require "rill"
local app = rill.router()
app:health()
app:metrics()
local name = os.getenv("INSTANCE") or "?"
app:get("/", function(req, res)
  res:send(req.remote_addr .. ":" .. req.remote_port .. " via " .. tostring(req.proxy_addr) ..
    " at " .. name)
end)
return app
]]

-- The HAProxy configuration of README.md's "Running several instances",
-- with the ports filled in.
local HAPROXY = [[
global
    maxconn 4096

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A request that meets a refused connection, or a connection closed
    # before an answer (an instance stopping), goes to the other instance.
    retries 3
    option redispatch 1
    retry-on all-retryable-errors

frontend web
    bind 127.0.0.1:%d
    default_backend rill

frontend web_v1
    bind 127.0.0.1:%d
    default_backend rill_v1

backend rill
    balance roundrobin
    option httpchk GET /health
    server a 127.0.0.1:%d send-proxy-v2 check inter 200ms fall 1 rise 2
    server b 127.0.0.1:%d send-proxy-v2 check inter 200ms fall 1 rise 2

backend rill_v1
    server a 127.0.0.1:%d send-proxy check inter 200ms
]]

describe("HAProxy in front of two instances", function()
  local dir, a, b, hap, fport, fport1

  local function start_haproxy()
    fport, fport1 = helper.free_port(), helper.free_port()
    write_file(dir .. "/haproxy.cfg", HAPROXY:format(fport, fport1, a.port, b.port, a.port))
    hap = assert(rill.exec{"haproxy", "-db", "-f", dir .. "/haproxy.cfg",
      stdout = "null", stderr = "pipe"})
    rill.spawn(function() hap.stderr:read_all(1e7) end)
    -- up once both backends answer their health checks
    assert(helper.eventually(function()
      local code, out = helper.curl(helper.url(fport))
      return code == 0 and out:match(" via 127%.0%.0%.1 at %a$")
    end), "haproxy did not come up")
  end

  setup(function()
    dir = tmpdir()
    write_file(dir .. "/app.lua", APP)
    local function instance(name)
      return helper.start({"serve", dir .. "/app.lua", "--listen", "127.0.0.1:0", "--workers",
        "2", "--proxy-protocol", "--grace", "10"}, {INSTANCE = name})
    end
    a, b = instance("a"), instance("b")
    start_haproxy()
  end)

  teardown(function()
    if hap then
      hap:kill(15)
      hap:wait(5000)
    end
    if a then a.stop() end
    if b then b.stop() end
    os.execute("rm -rf " .. dir)
  end)

  it("tells rill the client's address and port, with send-proxy-v2 and send-proxy", function()
    local seen = {}
    for _, p in ipairs({fport, fport1}) do
      for _ = 1, 4 do -- both instances, round robin
        local code, out = helper.curl("-w", " %{local_port}", helper.url(p))
        assert.equal(0, code)
        local port, via, at, client = out:match("^127%.0%.0%.1:(%d+) via (%S+) at (%a) (%d+)$")
        assert.equal(client, port, out) -- the client's port, not haproxy's
        assert.equal("127.0.0.1", via)
        seen[p .. at] = true
      end
    end
    assert.same({[fport .. "a"] = true, [fport .. "b"] = true, [fport1 .. "a"] = true}, seen)
  end)

  it("refuses a direct connection without the header", function()
    local code = helper.curl(helper.url(a.port))
    assert.is_not.equal(0, code)
  end)

  it("loses no request while one instance stops gracefully under wrk load", function()
    -- a's count of 2xx answers, asked directly (with a header)
    local function served_by_a()
      local s = helper.connect(a.port)
      assert(s:write("PROXY TCP4 127.0.0.1 127.0.0.1 1 2\r\n" ..
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
      return tonumber(helper.read_to_end(s):match('\nrill_requests_total{class="2xx"} (%d+)'))
    end
    local before = served_by_a()
    local wrk = assert(rill.exec{"wrk", "-t1", "-c8", "-d4s", helper.url(fport),
      stdout = "pipe", stderr = "pipe"})
    local out = rill.spawn(function() return wrk.stdout:read_all(1e6) end)
    rill.sleep(1000)
    -- a has been serving wrk's requests, not only health checks (5 a second)
    local served = served_by_a() - before
    assert.is_true(served > 30, tostring(served))
    assert.equal(0, a.stop()) -- SIGTERM: a graceful stop, exit 0
    local code = wrk:wait()
    local _, report = rill.wait(out)
    assert.equal(0, code)
    assert.matches("requests in", report)
    assert.not_matches("Socket errors", report)
    assert.not_matches("Non%-2xx", report)
    -- b alone serves now
    for _ = 1, 3 do
      local c, body = helper.curl(helper.url(fport))
      assert.equal(0, c)
      assert.matches(" via 127%.0%.0%.1 at b$", body)
    end
  end)
end)

describe("TLS session tickets", function()
  local certs, dir
  setup(function()
    certs = helper.certs()
    dir = tmpdir()
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  -- openssl s_client, sending a request: its output (with the answer,
  -- "worker N") and its log.
  local function s_client(port, ...)
    local argv = {"openssl", "s_client", "-connect", "127.0.0.1:" .. port, "-servername",
      "a.test", "-tls1_2", "-ign_eof"}
    for _, x in ipairs({...}) do argv[#argv + 1] = x end
    local _, out, err = helper.run(argv, {timeout = 20000,
      input = "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"})
    return out .. err
  end

  local function serve(...)
    write_file(dir .. "/worker.lua",
      'local rill = require "rill"\n' ..
      'return function(req, res) res:send("worker " .. rill.worker_id()) end\n')
    return helper.serve(dir .. "/worker.lua", {"--workers", "2", "--tls-cert",
      certs .. "/a.test.crt", "--tls-key", certs .. "/a.test.key", ...})
  end

  local function key_file(path, ...)
    write_file(path, table.concat({...}))
  end

  local function rand80()
    local f = assert(io.open("/dev/urandom", "rb"))
    local k = f:read(80)
    f:close()
    return k
  end

  it("resume on every worker of an instance", function()
    local srv = serve()
    local sess = dir .. "/sess1"
    assert.matches("\nNew, TLSv1.2", s_client(srv.port, "-sess_out", sess))
    local workers, n = {}, 0
    while n < 6 or not (workers["0"] and workers["1"]) do
      n = n + 1
      assert(n < 100, "the connections never reached both workers")
      local out = s_client(srv.port, "-sess_in", sess)
      assert.matches("\nReused, TLSv1.2", out)
      workers[assert(out:match("worker (%d)"))] = true
    end
    assert.equal(0, srv.stop())
  end)

  it("resume across instances sharing a key file, and after a reload adds a key", function()
    local k1, k2, k3 = rand80(), rand80(), rand80()
    local keys = dir .. "/ticket.keys"
    key_file(keys, k1)
    local a = serve("--tls-ticket-keys", keys)
    local b = serve("--tls-ticket-keys", keys)
    local sess = dir .. "/sess2"
    assert.matches("\nNew, TLSv1.2", s_client(a.port, "-sess_out", sess))
    for _ = 1, 4 do
      assert.matches("\nReused, TLSv1.2", s_client(b.port, "-sess_in", sess))
    end
    -- a new key first, the old one still accepted
    key_file(keys, k2, k1)
    assert(rill.exec{"kill", "-HUP", tostring(a.pid)}:wait() == 0)
    a.wait_log("reloaded")
    for _ = 1, 4 do
      assert.matches("\nReused, TLSv1.2", s_client(a.port, "-sess_in", sess))
    end
    -- new tickets are sealed with the new key: b (old keys only) cannot open them
    local sess3 = dir .. "/sess3"
    assert.matches("\nNew, TLSv1.2", s_client(a.port, "-sess_out", sess3))
    assert.matches("\nNew, TLSv1.2", s_client(b.port, "-sess_in", sess3))
    -- and a key dropped from the file no longer opens its tickets
    key_file(keys, k3)
    assert(rill.exec{"kill", "-HUP", tostring(a.pid)}:wait() == 0)
    helper.eventually(function()
      local n = 0
      for _, line in ipairs(a.log) do if line:match("reloaded") then n = n + 1 end end
      return n >= 4 -- two workers, two reloads
    end)
    assert.matches("\nNew, TLSv1.2", s_client(a.port, "-sess_in", sess))
    assert.equal(0, a.stop())
    assert.equal(0, b.stop())
  end)

  it("refuse a bad key file at start", function()
    local keys = dir .. "/short.keys"
    write_file(keys, ("x"):rep(48))
    local code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua", "--listen",
      "127.0.0.1:0", "--workers", "1", "--tls-cert", certs .. "/a.test.crt", "--tls-key",
      certs .. "/a.test.key", "--tls-ticket-keys", keys}, {timeout = 10000})
    assert.is_not.equal(0, code)
    assert.matches("TLS ticket keys .*short%.keys: 48 bytes", err)
  end)
end)

-- Parses Prometheus's text format strictly enough to catch a broken page:
-- returns {name{labels} = value}, and the TYPE of each name.
local function parse_prometheus(text)
  local samples, types, helps = {}, {}, {}
  assert.equal("\n", text:sub(-1))
  for line in text:gmatch("([^\n]*)\n") do
    if line:match("^# HELP ") then
      local name = assert(line:match("^# HELP ([%a_:][%w_:]*) %S"), line)
      helps[name] = true
    elseif line:match("^# TYPE ") then
      local name, kind = line:match("^# TYPE ([%a_:][%w_:]*) (%a+)$")
      assert(name and (kind == "counter" or kind == "gauge"), line)
      assert(not types[name], "two TYPE lines for " .. name)
      types[name] = kind
    else
      local name, labels, value = line:match('^([%a_:][%w_:]*)(%b{}) (%S+)$')
      if not name then
        name, value = line:match("^([%a_:][%w_:]*) (%S+)$")
        labels = ""
      else
        assert(labels:match('^{[%a_][%w_]*="[^"]*"}$'), line) -- one label each, here
      end
      assert(name and tonumber(value), "bad sample line: " .. line)
      assert(types[name], "a sample before its TYPE: " .. line)
      assert(helps[name], "a sample without HELP: " .. line)
      samples[name .. labels] = tonumber(value)
    end
  end
  return samples, types
end

describe("app:health and app:metrics", function()
  local METRICS_APP = [[
local rill = require "rill"
local app = rill.router()
app:health("/healthz")
app:metrics("/metrics")
app:get("/s/:code", function(req, res)
  res:header("X-Worker", tostring(rill.worker_id()))
  res:status(tonumber(req.params.code))
  res:send("x")
end)
app:get("/boom", function() error("boom") end)
app:websocket("/ws", function(ws) ws:receive() end)
return app
]]

  it("answer ok, and every worker's counters summed in the Prometheus text format", function()
    local dir = tmpdir()
    write_file(dir .. "/app.lua", METRICS_APP)
    local srv = helper.serve(dir .. "/app.lua", {"--workers", "2"})
    local status, headers, body = helper.fetch(helper.url(srv.port, "/healthz"))
    assert.equal(200, status)
    assert.equal("ok\n", body)
    assert.equal("no-store", headers["cache-control"])
    -- requests with several statuses, until both workers have answered
    local made = {["2xx"] = 1, ["3xx"] = 0, ["4xx"] = 0, ["5xx"] = 0} -- the health check
    local workers = {}
    local codes = {200, 201, 302, 404, 418, 503}
    local n = 0
    while n < 24 or not (workers["0"] and workers["1"]) do
      n = n + 1
      assert(n < 400, "the requests never reached both workers")
      local code = codes[n % #codes + 1]
      local st, h = helper.fetch(helper.url(srv.port, "/s/" .. code))
      assert.equal(code, st)
      workers[h["x-worker"]] = true
      local class = math.floor(code / 100) .. "xx"
      made[class] = made[class] + 1
    end
    assert.equal(500, (helper.fetch(helper.url(srv.port, "/boom"))))
    made["5xx"] = made["5xx"] + 1
    assert.equal(404, (helper.fetch(helper.url(srv.port, "/nowhere"))))
    made["4xx"] = made["4xx"] + 1
    local st, h, text = helper.fetch(helper.url(srv.port, "/metrics"))
    assert.equal(200, st)
    assert.matches("^text/plain; version=0%.0%.4", h["content-type"])
    local m, types = parse_prometheus(text)
    for class, count in pairs(made) do
      assert.equal(count, m['rill_requests_total{class="' .. class .. '"}'], class)
    end
    assert.equal("counter", types.rill_requests_total)
    assert.equal(2, m.rill_workers)
    assert.equal("gauge", types.rill_connections)
    assert.is_true(m.rill_connections >= 1) -- this scrape's
    assert.equal(0, m.rill_websockets)
    -- a WebSocket open now is counted (its 101 too)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/ws"):format(srv.port)))
    local _, _, t2 = helper.fetch(helper.url(srv.port, "/metrics"))
    local m2 = parse_prometheus(t2)
    assert.equal(1, m2.rill_websockets)
    assert.equal(1, m2['rill_requests_total{class="1xx"}'])
    ws:close()
    assert.is_true(m.rill_received_bytes_total > 0)
    assert.is_true(m.rill_sent_bytes_total > 0)
    assert.equal(0, m.rill_reloads_total)
    assert.is_true(m['rill_lua_memory_bytes{worker="0"}'] > 100000)
    assert.is_true(m['rill_lua_memory_bytes{worker="1"}'] > 100000)
    assert.is_number(m['rill_buffers_pooled{worker="1"}'])
    -- a reload is counted
    assert(rill.exec{"kill", "-HUP", tostring(srv.pid)}:wait() == 0)
    assert(helper.eventually(function()
      local _, _, t = helper.fetch(helper.url(srv.port, "/metrics"))
      return parse_prometheus(t).rill_reloads_total == 1
    end))
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)

  it("health answers 503 once a graceful stop has begun", function()
    local app = rill.router()
    app:health()
    local c = rill.test.client(app)
    assert.equal(200, c:get("/health").status)
    local real = rill.stopping
    rill.stopping = function() return true end -- as during a graceful stop
    local res = c:get("/health")
    rill.stopping = real
    assert.equal(503, res.status)
    assert.equal("stopping\n", res.body)
  end)

  it("raise on a bad path", function()
    local app = rill.router()
    assert.has_error(function() app:health("healthz") end,
      "app:health: path must be a string starting with /, got healthz")
    assert.has_error(function() app:metrics(42) end,
      "app:metrics: path must be a string starting with /, got 42")
  end)

  it("rill.metrics.collect() has this process's counters", function()
    local m = rill.metrics.collect()
    assert.is_true(m.workers >= 1)
    assert.is_number(m.responses["2xx"])
    assert.is_table(m.per_worker[1])
  end)
end)
