-- The HTTP client's options as a tool's author uses them (issue 17): a
-- deadline for the whole exchange, request bodies from json/form, queries,
-- credentials, redirects, a cookie jar, compressed answers, proxies.
local rill = require "rill"
local helper = require "spec.helper"
local json = require "rill.json"
local core = require "rill.core"

-- A server that tells what it got.
local function echo_app()
  local app = rill.router()
  app:use(rill.middleware.compress())
  local function echo(req, res)
    res:json{method = req.method, target = req.target, ua = req.headers["user-agent"],
      ae = req.headers["accept-encoding"], auth = req.headers.authorization,
      ct = req.headers["content-type"], cookie = req.headers.cookie,
      body = req.body:read_all(1e6)}
  end
  app:get("/echo", echo)
  app:post("/echo", echo)
  app:get("/text", function(req, res)
    res:header("Content-Type", "text/plain")
    res:send(("rill streams "):rep(2000))
  end)
  app:get("/drip", function(req, res)
    res:header("Content-Type", "application/octet-stream")
    for _ = 1, 30 do
      if not res:write("x") then return end
      rill.sleep(100)
    end
  end)
  app:get("/slowhead", function(req, res)
    rill.sleep(3000)
    res:send("late")
  end)
  app:get("/hop", function(req, res)
    res:status(302):header("Location", "/echo?from=hop"):send("")
  end)
  app:post("/see-other", function(req, res)
    res:status(303):header("Location", "/echo"):send("")
  end)
  app:post("/keep", function(req, res)
    res:status(307):header("Location", "/echo"):send("")
  end)
  app:get("/login", function(req, res)
    res:cookie("sid", "abc", {path = "/"})
    res:cookie("narrow", "1", {path = "/account"})
    res:cookie("gone", "x", {path = "/", max_age = 0})
    res:send("ok")
  end)
  return app
end

local function body_of(res)
  return assert(res.body:read_all(1e7))
end

describe("rill.http.request", function()
  local l, base
  setup(function()
    l = helper.listen(echo_app())
    base = helper.url(l:port(), "")
  end)
  teardown(function() l:close() end)

  it("refuses unknown options and wrong types at the caller's line", function()
    local ok, err = pcall(function()
      local res = rill.http.request{url = base, josn = {}}
      return res
    end)
    assert.is_false(ok)
    assert.matches("client_options_spec%.lua:%d+: rill%.http%.request: unknown option josn", err)
    ok, err = pcall(function() return rill.http.request{url = base, timeout = "1s"} end)
    assert.matches("timeout must be milliseconds", err)
    ok, err = pcall(function() return rill.http.request{url = base, body = "x", json = {}} end)
    assert.matches("give one of body, json and form", err)
    ok, err = pcall(function() return rill.http.request{url = base, redirects = "yes"} end)
    assert.matches("redirects must be a count or a boolean", err)
  end)

  it("sends json = and form = with their content types, as POST", function()
    local res = assert(rill.http.request{url = base .. "/echo", json = {a = {1, 2}}})
    local got = json.decode(body_of(res))
    assert.same({"POST", "application/json", '{"a":[1,2]}'}, {got.method, got.ct, got.body})
    res = assert(rill.http.request{url = base .. "/echo", form = {q = "a b&c", n = 1}})
    got = json.decode(body_of(res))
    assert.same({"POST", "application/x-www-form-urlencoded", "n=1&q=a%20b%26c"},
      {got.method, got.ct, got.body})
  end)

  it("adds query = to the URL's own query, encoded", function()
    local res = assert(rill.http.request{url = base .. "/echo?x=1", query = {y = "a/b", z = {1, 2}}})
    assert.equal("/echo?x=1&y=a%2Fb&z=1&z=2", json.decode(body_of(res)).target)
    assert.equal(base .. "/echo?x=1&y=a%2Fb&z=1&z=2", res.url)
  end)

  it("sends Basic credentials from auth = and from user:password@ in the URL", function()
    local res = assert(rill.http.request{url = base .. "/echo", auth = {user = "ann", password = "p:w"}})
    assert.equal("Basic " .. core.base64_encode("ann:p:w"), json.decode(body_of(res)).auth)
    local url = ("http://bo%%20b:s%%40cret@127.0.0.1:%d/echo"):format(l:port())
    res = assert(rill.http.request{url = url})
    assert.equal("Basic " .. core.base64_encode("bo b:s@cret"), json.decode(body_of(res)).auth)
    -- the userinfo is not part of the Host header or the final URL
    assert.equal(base .. "/echo", res.url)
  end)

  it("sends a User-Agent and Accept-Encoding unless the request has its own", function()
    local got = json.decode(body_of(assert(rill.http.request{url = base .. "/echo"})))
    assert.equal("rill/" .. rill.version, got.ua)
    assert.equal("gzip, deflate", got.ae)
    got = json.decode(body_of(assert(rill.http.request{url = base .. "/echo",
      headers = {["User-Agent"] = "tool/2"}, decompress = false})))
    assert.equal("tool/2", got.ua)
    assert.is_nil(got.ae)
  end)

  it("decodes a gzip answer as it is read, and leaves one it did not ask for alone", function()
    local res = assert(rill.http.request{url = base .. "/text"})
    assert.equal("gzip", res.decoded)
    assert.is_nil(res.headers["content-encoding"])
    assert.equal(("rill streams "):rep(2000), body_of(res))
    res = assert(rill.http.request{url = base .. "/text", headers = {["Accept-Encoding"] = "gzip"}})
    assert.is_nil(res.decoded)
    assert.equal("gzip", res.headers["content-encoding"])
    local raw = body_of(res)
    assert.is_true(#raw < 2000 and raw:sub(1, 2) == "\31\139")
    -- the decoded body gave its connection back: the next request reuses it
    local before = l:connections()
    res = assert(rill.http.request{url = base .. "/text"})
    body_of(res)
    assert.equal(before, l:connections())
  end)

  it("decodes deflate (zlib) answers too", function()
    local res = assert(rill.http.request{url = base .. "/text",
      headers = {["Accept-Encoding"] = "deflate"}})
    assert.equal("deflate", res.headers["content-encoding"])
    local z = body_of(res)
    -- a server that answers deflate to whatever was asked
    local srv = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
      s:read_until("\r\n\r\n")
      s:write("HTTP/1.1 200 OK\r\nContent-Encoding: deflate\r\nContent-Length: " .. #z ..
        "\r\n\r\n", z)
      s:close()
    end})
    finally(function() srv:close() end)
    local _, port = srv:address()
    res = assert(rill.http.request{url = helper.url(port, "/"), close = true})
    assert.equal("deflate", res.decoded)
    assert.equal(("rill streams "):rep(2000), body_of(res))
  end)

  it("fails a body dripped past its timeout: the deadline covers reading the body", function()
    local t0 = rill.now()
    local res = assert(rill.http.request{url = base .. "/drip", timeout = 1000,
      read_timeout = 5000})
    local data, err = res.body:read_all(1e6)
    assert.is_nil(data)
    assert.equal("timeout", err)
    -- the server would have finished at 3 s
    assert.is_true(rill.now() - t0 < 2900, "took " .. (rill.now() - t0) .. " ms")
  end)

  it("fails a head that comes after the deadline, and read_timeout bounds each wait", function()
    local t0 = rill.now()
    assert.same({nil, "timeout"}, {rill.http.request{url = base .. "/slowhead", timeout = 500}})
    assert.is_true(rill.now() - t0 < 2900)
    t0 = rill.now()
    assert.same({nil, "timeout"}, {rill.http.request{url = base .. "/slowhead",
      read_timeout = 300}})
    assert.is_true(rill.now() - t0 < 2900)
  end)

  it("says so when a server closes without an answer", function()
    local srv = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
      s:read_until("\r\n\r\n")
      s:close()
    end})
    finally(function() srv:close() end)
    local _, port = srv:address()
    assert.same({nil, "closed before a response"},
      {rill.http.request{url = helper.url(port, "/"), close = true}})
  end)
end)

describe("a rill run script", function()
  it("ends when its work is done, not when an unread body's server closes", function()
    -- the server would keep the connection for 60 s
    local l = helper.listen(function(req, res) res:send(("x"):rep(100000)) end,
      {keepalive_timeout = 60000})
    finally(function() l:close() end)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[
      local rill = require "rill"
      local res = assert(rill.http.request{url = "http://127.0.0.1:%d/"})
      io.write(res.status)
    ]]):format(l:port()))
    f:close()
    finally(function() os.remove(path) end)
    local t0 = rill.now()
    local code, out, err = helper.run({helper.bin, "run", path})
    assert.same({0, "200"}, {code, out}, err)
    -- not the server's 60 s (nor a 5 s linger): well under the 30 s spec timeout
    assert.is_true(rill.now() - t0 < 10000)
  end)
end)

describe("connections per host", function()
  it("keeps at most client.max_per_host requests to one origin in flight", function()
    local client = require "rill.client"
    local old = client.max_per_host
    client.max_per_host = 3
    local active, most = 0, 0
    local l = helper.listen(function(req, res)
      active = active + 1
      most = math.max(most, active)
      rill.sleep(20)
      active = active - 1
      res:send("ok")
    end)
    -- (one finally: busted keeps only the last one a test sets)
    finally(function()
      client.max_per_host = old
      l:close()
    end)
    local ths = {}
    for i = 1, 12 do
      ths[i] = rill.spawn(function()
        local res = assert(rill.http.request{url = helper.url(l:port(), "/")})
        return res.body:read_all(100)
      end)
    end
    for i = 1, 12 do assert.same({true, "ok"}, {rill.wait(ths[i])}) end
    assert.equal(3, most)
    assert.is_true(l:connections() <= 3)
    -- a request that cannot get one of them within its timeout says so
    local held = {}
    for i = 1, 3 do held[i] = assert(rill.http.request{url = helper.url(l:port(), "/")}) end
    local res, err = rill.http.request{url = helper.url(l:port(), "/"), timeout = 50}
    assert.is_nil(res)
    assert.matches("^timeout %(waiting for one of the 3 connections to 127%.0%.0%.1:%d+%)$", err)
    for i = 1, 3 do held[i].body:close() end
    assert.equal("ok", assert(rill.http.request{url = helper.url(l:port(), "/")}).body:read_all(9))
  end)
end)

describe("redirects", function()
  local l, base
  setup(function()
    l = helper.listen(echo_app())
    base = helper.url(l:port(), "")
  end)
  teardown(function() l:close() end)

  it("gives the final URL, turns a POST into a GET on 303 and keeps it on 307", function()
    local res = assert(rill.http.request{url = base .. "/hop", redirects = true})
    assert.equal(base .. "/echo?from=hop", res.url)
    assert.equal("GET", json.decode(body_of(res)).method)
    res = assert(rill.http.request{url = base .. "/see-other", body = "data", method = "POST",
      redirects = 1})
    local got = json.decode(body_of(res))
    assert.same({"GET", ""}, {got.method, got.body})
    res = assert(rill.http.request{url = base .. "/keep", body = "data", method = "POST",
      redirects = 1})
    got = json.decode(body_of(res))
    assert.same({"POST", "data"}, {got.method, got.body})
  end)

  it("are not followed by default", function()
    local res = assert(rill.http.request{url = base .. "/hop"})
    assert.equal(302, res.status)
    assert.equal(base .. "/hop", res.url)
    res.body:close()
  end)
end)

describe("rill.http.cookie_jar", function()
  it("keeps cookies by domain, path, Secure and expiry", function()
    local jar = rill.http.cookie_jar()
    jar:store("http://a.test/login", {"sid=1; Path=/", "pref=dark; Path=/account",
      "all=yes; Domain=a.test", "sec=s; Secure", "old=x; Max-Age=0"})
    assert.equal("sid=1; all=yes", jar:header("http://a.test/"))
    assert.equal("pref=dark; sid=1; all=yes", jar:header("http://a.test/account/x"))
    assert.is_nil(jar:header("http://a.test/accounting"):find("pref"))
    assert.equal("all=yes", jar:header("http://www.a.test/"))
    assert.is_nil(jar:header("http://b.test/"))
    -- Secure cookies come only from and go only to https
    assert.is_nil(jar:get("sec"))
    jar:store("https://a.test/", "sec=s; Secure")
    assert.equal("s", jar:get("sec", "https://a.test/"))
    assert.is_nil(jar:get("sec", "http://a.test/"))
    -- a host cannot set a cookie for another domain, nor for a bare suffix
    jar:store("http://a.test/", {"evil=1; Domain=b.test", "wide=1; Domain=test"})
    assert.is_nil(jar:get("evil"))
    assert.is_nil(jar:get("wide"))
    -- replaced by name, domain and path; removed by an expiry in the past
    jar:store("http://a.test/", "sid=2; Path=/")
    assert.equal("2", jar:get("sid"))
    jar:store("http://a.test/", "sid=; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
    assert.is_nil(jar:get("sid"))
    jar:clear()
    assert.is_nil(jar:header("http://a.test/"))
  end)

  it("is filled and sent by requests given jar =", function()
    local l = helper.listen(echo_app())
    finally(function() l:close() end)
    local base = helper.url(l:port(), "")
    local jar = rill.http.cookie_jar()
    body_of(assert(rill.http.request{url = base .. "/login", jar = jar}))
    local got = json.decode(body_of(assert(rill.http.request{url = base .. "/echo", jar = jar})))
    assert.equal("sid=abc", got.cookie)
    -- a Cookie header given by the request replaces the jar's
    got = json.decode(body_of(assert(rill.http.request{url = base .. "/echo", jar = jar,
      headers = {Cookie = "mine=1"}})))
    assert.equal("mine=1", got.cookie)
  end)
end)

describe("proxies", function()
  local target, proxy, seen, tls_srv, tls_port, ca
  setup(function()
    seen = {}
    target = helper.listen(echo_app())
    local dir = helper.certs()
    tls_srv, tls_port = helper.listen(function(req, res) res:send("secure " .. req.target) end,
      {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    ca = dir .. "/ca.crt"
    -- A forward proxy: absolute-form requests are fetched, CONNECT tunnels.
    proxy = helper.listen(function(req, res)
      seen[#seen + 1] = req.method .. " " .. req.target .. " " ..
        tostring(req.headers["proxy-authorization"])
      if req.method == "CONNECT" then
        return rill.proxy.connect(req, res, {allow = function() return true end})
      end
      local up = assert(rill.http.request{url = req.target, proxy = false, decompress = false})
      res:status(up.status):header("Content-Type", "text/plain")
      res:send("via proxy: " .. up.body:read_all(1e6))
    end)
  end)
  teardown(function()
    target:close()
    tls_srv:close()
    proxy:close()
  end)

  it("sends http requests in absolute form, with the proxy's credentials", function()
    local purl = ("http://pu:pp@127.0.0.1:%d"):format(proxy:port())
    local res = assert(rill.http.request{url = helper.url(target:port(), "/echo"), proxy = purl})
    local text = body_of(res)
    assert.matches("^via proxy: ", text)
    assert.equal("GET " .. helper.url(target:port(), "/echo") .. " Basic " ..
      core.base64_encode("pu:pp"), seen[#seen])
  end)

  it("tunnels https through CONNECT, verifying the origin's certificate", function()
    local url = ("https://a.test:%d/x"):format(tls_port)
    local n = #seen
    local res = assert(rill.http.request{url = url, proxy = helper.url(proxy:port(), ""),
      tls = {ca = ca}, address = "127.0.0.1"})
    assert.equal("secure /x", body_of(res))
    assert.equal("CONNECT 127.0.0.1:" .. tls_port .. " nil", seen[n + 1])
    -- without the CA, the tunnel does not let an unknown certificate pass
    local r2, err = rill.http.request{url = url, proxy = helper.url(proxy:port(), ""),
      address = "127.0.0.1", close = true}
    assert.is_nil(r2)
    assert.matches("certificate verify failed", err)
  end)

  it("follows HTTP_PROXY and NO_PROXY from the environment", function()
    local script = os.tmpname()
    finally(function() os.remove(script) end)
    local f = assert(io.open(script, "w"))
    f:write(([[
      local rill = require "rill"
      local res = assert(rill.http.request{url = "http://127.0.0.1:%d/echo"})
      io.write(res.body:read_all(1e6):match("^via proxy") and "proxied" or "direct")
    ]]):format(target:port()))
    f:close()
    local purl = helper.url(proxy:port(), "")
    local code, out, err = helper.run({helper.bin, "run", script}, {env = {HTTP_PROXY = purl}})
    assert.same({0, "proxied"}, {code, out}, err)
    code, out = helper.run({helper.bin, "run", script},
      {env = {http_proxy = purl, NO_PROXY = "localhost,127.0.0.1"}})
    assert.same({0, "direct"}, {code, out})
  end)
end)

describe("the TLS client", function()
  local dir, srv_a, srv_ip, ca
  setup(function()
    dir = helper.certs()
    ca = dir .. "/ca.crt"
    -- a leaf for an address, as curl accepts it: IP:127.0.0.1 in its names
    local code, _, err = helper.run({"sh", "-c", [[
set -e
cd "$1"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ip.key -out ip.csr \
  -subj "/CN=not an address" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:ip.test\n' > ip.ext
openssl x509 -req -in ip.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile ip.ext \
  -out ip.crt 2>/dev/null
mkdir -p cadir && cp ca.crt cadir/
]], "sh", dir})
    assert(code == 0, err)
    srv_a = helper.listen(function(req, res) res:send("a") end,
      {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    srv_ip = helper.listen(function(req, res) res:send("ip") end,
      {tls = {cert = dir .. "/ip.crt", key = dir .. "/ip.key"}})
  end)
  teardown(function()
    srv_a:close()
    srv_ip:close()
  end)

  it("matches an address against the certificate's IP names", function()
    local res = assert(rill.http.request{url = ("https://127.0.0.1:%d/"):format(srv_ip:port()),
      tls = {ca = ca}})
    assert.equal("ip", body_of(res))
    -- a certificate without that address is refused, naming what it is for
    local r2, err = rill.http.request{url = ("https://127.0.0.1:%d/"):format(srv_a:port()),
      tls = {ca = ca}}
    assert.is_nil(r2)
    assert.equal("connect: certificate verify failed: the certificate is for a.test, " ..
      "*.a.test (its subject alternative names), not 127.0.0.1", err)
  end)

  it("names what it checked when a host name does not match", function()
    local r, err = rill.http.request{url = ("https://b.test:%d/"):format(srv_a:port()),
      address = "127.0.0.1", tls = {ca = ca}}
    assert.is_nil(r)
    assert.equal("connect: certificate verify failed: the certificate is for a.test, " ..
      "*.a.test (its subject alternative names), not b.test", err)
  end)

  it("trusts the CAs SSL_CERT_FILE or SSL_CERT_DIR names instead of the system's", function()
    local script = os.tmpname()
    finally(function() os.remove(script) end)
    local f = assert(io.open(script, "w"))
    f:write(([[
      local rill = require "rill"
      local res, err = rill.http.request{url = "https://a.test:%d/", address = "127.0.0.1"}
      io.write(res and res.body:read_all(100) or err)
    ]]):format(srv_a:port()))
    f:close()
    local code, out = helper.run({helper.bin, "run", script}, {env = {}})
    assert.same({0, "connect: certificate verify failed: The certificate is not correctly " ..
      "signed by the trusted CA"}, {code, out})
    code, out = helper.run({helper.bin, "run", script}, {env = {SSL_CERT_FILE = ca}})
    assert.same({0, "a"}, {code, out})
    code, out = helper.run({helper.bin, "run", script}, {env = {SSL_CERT_DIR = dir .. "/cadir"}})
    assert.same({0, "a"}, {code, out})
  end)
end)
