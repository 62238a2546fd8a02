-- The HTTP client (lua/rill/client.lua): whom a pooled connection is shared
-- with, what a redirect carries to another origin, and request heads that
-- cannot be sent as they are. (Bodies, timeouts and the proxy on top of the
-- client are in proxy_spec.lua.)
local rill = require "rill"
local helper = require "spec.helper"
local client = require "rill.client"

local SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

-- GET url with opts; returns status and the whole body, or nil, err.
local function get(url, opts)
  local o = {url = url}
  for k, v in pairs(opts or {}) do o[k] = v end
  local res, err = rill.http.request(o)
  if not res then return nil, err end
  return res.status, assert(res.body:read_all(1e6))
end

describe("http client pool", function()
  local dir
  setup(function() dir = helper.certs() end)

  describe("over https", function()
    local l, url
    before_each(function()
      l = helper.listen(function(req, res) res:send("secret") end,
        {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      url = ("https://a.test:%d/"):format(l:port())
    end)
    after_each(function() l:close() end)

    -- To the system CA bundle our test CA is unknown: a.test's certificate
    -- is as good as self-signed, as a man in the middle's would be.
    it("never gives a verifying request a connection opened with verify = false", function()
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {verify = false}})})
      local status, err = get(url, {address = "127.0.0.1"})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
      status, err = get(url, {address = "127.0.0.1", tls = {ca = SYSTEM_CA}})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
    end)

    it("never gives a request a connection verified against another CA file", function()
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}})})
      local status, err = get(url, {address = "127.0.0.1", tls = {ca = SYSTEM_CA}})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
    end)

    it("shares a connection between requests with the same TLS options only", function()
      local same = {address = "127.0.0.1", tls = {ca = dir .. "/ca.crt", handshake_timeout = 5000}}
      assert.same({200, "secret"}, {get(url, same)})
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1",
        tls = {ca = dir .. "/ca.crt", handshake_timeout = 9000}})})
      assert.equal(1, l:connections())
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {verify = false}})})
      assert.equal(2, l:connections())
      assert.equal(1, client.pooled(client.pool_key{url = url, address = "127.0.0.1",
        tls = {ca = dir .. "/ca.crt"}}))
    end)
  end)

  it("never gives a request with an address override a connection to another address",
    function()
      local a = helper.listen(function(req, res) res:send("A") end)
      local port = a:port()
      local b = assert(rill.http.listen{host = "127.0.0.2", port = port,
        handler = function(req, res) res:send("B") end})
      finally(function()
        a:close()
        b:close()
      end)
      local url = ("http://127.0.0.1:%d/"):format(port)
      assert.same({200, "A"}, {get(url)})
      assert.same({200, "B"}, {get(url, {address = "127.0.0.2"})})
      assert.same({200, "B"}, {get(url, {address = "127.0.0.2"})})
      assert.same({200, "A"}, {get(url)})
      assert.equal(1, a:connections())
      assert.equal(1, b:connections())
    end)
end)

describe("http client redirects", function()
  -- Each server answers /echo with what reached it, redirects /away to
  -- the other origin's /echo, /here to its own, and /loop to itself
  -- (counted in loops[name]).
  local loops = {}
  local function server(name, host)
    local app = rill.router()
    app:get("/echo", function(req, res)
      local h = req.headers
      res:send(("%s auth=%s cookie=%s keep=%s host=%s"):format(name, tostring(h.authorization),
        tostring(h.cookie), tostring(h["x-keep"]), tostring(h.host)))
    end)
    app:get("/here", function(req, res)
      res:status(302):header("Location", "/echo"):send("")
    end)
    app:get("/loop", function(req, res)
      loops[name] = (loops[name] or 0) + 1
      res:status(302):header("Location", "/loop"):send("")
    end)
    app:get("/away", function(req, res)
      res:status(307):header("Location", req.query.to .. "/echo"):send("")
    end)
    local l = helper.listen(app, {host = host})
    return l, ("http://%s:%d"):format(host or "127.0.0.1", l:port())
  end

  local one, two, base1, base2
  before_each(function()
    loops = {}
    one, base1 = server("one")
    two, base2 = server("two")
  end)
  after_each(function()
    one:close()
    two:close()
  end)

  local forms = {
    ["{name = value}"] = {Authorization = "Bearer s3cret", cookie = "sid=1", ["X-Keep"] = "yes"},
    ["{{name, value}}"] = {{"AUTHORIZATION", "Bearer s3cret"}, {"Cookie", "sid=1"},
      {"x-keep", "yes"}},
    ["a flat list"] = {"authorization", "Bearer s3cret", "COOKIE", "sid=1", "X-Keep", "yes"},
  }
  for form, headers in pairs(forms) do
    it("drops Authorization and Cookie given as " .. form .. " on the way to another port, " ..
      "and keeps them on the same origin", function()
        local _, body = get(base1 .. "/away?to=" .. base2, {headers = headers,
          follow_redirects = 1})
        assert.equal("two auth=nil cookie=nil keep=yes host=127.0.0.1:" .. two:port(), body)
        _, body = get(base1 .. "/here", {headers = headers, follow_redirects = 1})
        assert.equal("one auth=Bearer s3cret cookie=sid=1 keep=yes host=127.0.0.1:" ..
          one:port(), body)
      end)
  end

  it("drops the address and Host overrides on the way to another origin", function()
    local three = server("three", "127.0.0.2")
    finally(function() three:close() end)
    local from = ("http://one.test:%d"):format(three:port())
    local _, body = get(from .. "/here", {address = "127.0.0.2", host = "one.test",
      headers = {Authorization = "Bearer s3cret"}, follow_redirects = 1})
    assert.equal("three auth=Bearer s3cret cookie=nil keep=nil host=one.test", body)
    local status
    status, body = get(from .. "/away?to=" .. base2, {address = "127.0.0.2", host = "one.test",
      headers = {Authorization = "Bearer s3cret"}, follow_redirects = 1})
    assert.equal(200, status, body)
    assert.equal("two auth=nil cookie=nil keep=nil host=127.0.0.1:" .. two:port(), body)
  end)

  it("takes redirects = true as 10, as Go does, and fails past them", function()
    assert.same({200, "one auth=nil cookie=nil keep=nil host=127.0.0.1:" .. one:port()},
      {get(base1 .. "/here", {redirects = true})})
    assert.same({nil, "too many redirects (10): last to /loop"},
      {get(base1 .. "/loop", {redirects = true})})
    assert.equal(11, loops.one)
    assert.same({302, ""}, {get(base1 .. "/here", {redirects = false})})
    -- follow_redirects is the older name of the same option
    assert.same({nil, "too many redirects (2): last to /loop"},
      {get(base1 .. "/loop", {follow_redirects = 2})})
  end)
end)

describe("http client request heads", function()
  local rec
  before_each(function() rec = helper.recorder() end)
  after_each(function() rec.close() end)

  -- Each bad request must fail at once with err matching why, and reach
  -- nothing: the good request after them is the first connection the
  -- server sees.
  local function refused(cases)
    local base = ("http://127.0.0.1:%d"):format(rec.port)
    for _, case in ipairs(cases) do
      local opts, why = case[1], case[2]
      local o = {url = base .. "/"}
      for k, v in pairs(opts) do o[k] = v end
      if opts.path then o.url = base .. opts.path end
      o.path = nil
      local res, err = rill.http.request(o)
      assert.is_nil(res, why)
      assert.matches(why, err)
      assert.not_matches("[\r\n]", err)
    end
    assert.same({200, "ok"}, {get(base .. "/fine", {headers = {["X-Fine"] = "yes"}})})
    assert.equal(1, rec.accepted)
    assert.matches("^GET /fine HTTP/1.1\r\n", rec.heads[1])
    assert.not_matches("Injected", rec.heads[1])
  end

  it("refuses a method that is not a token", function()
    refused({
      {{method = "GET / HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET"}, "^bad method"},
      {{method = "GE T"}, "^bad method \"GE T\""},
      {{method = "GET\0"}, "^bad method"},
      {{method = ""}, "^bad method"},
    })
  end)

  it("refuses a target with CR, LF, NUL, space or another control byte", function()
    refused({
      {{path = "/a\r\nX-Injected: 1"}, "^bad request target"},
      {{path = "/a HTTP/1.1\nX-Injected: 1\n"}, "^bad request target"},
      {{path = "/a b"}, "^bad request target"},
      {{path = "/a\0b"}, "^bad request target"},
      {{path = "/a\tb"}, "^bad request target"},
      {{path = "/a\127b"}, "^bad request target"},
    })
  end)

  it("refuses header names that are not tokens, in every header form", function()
    refused({
      {{headers = {["X-A\r\nX-Injected"] = "1"}}, "^bad header name"},
      {{headers = {{"X A", "1"}}}, "^bad header name \"X A\""},
      {{headers = {"X-A:", "1"}}, "^bad header name"},
      {{headers = {[""] = "1"}}, "^bad header name"},
    })
  end)

  it("refuses header values with CR, LF or NUL, in every header form", function()
    refused({
      {{headers = {["X-A"] = "1\r\nX-Injected: 1"}}, "^bad value for header X%-A"},
      {{headers = {{"X-A", "1\nX-Injected: 1"}}}, "^bad value for header X%-A"},
      {{headers = {"X-A", "1\0"}}, "^bad value for header X%-A"},
      {{headers = {["X-A"] = {"ok", "1\rX-Injected: 1"}}}, "^bad value for header X%-A"},
      {{headers = {Connection = "close\r\nX-Injected: 1"}}, "^bad value for header"},
      {{headers = {["Content-Length"] = "0\r\nX-Injected: 1"}}, "^bad value for header"},
      {{headers = {["Content-Length"] = "-1"}}, "^bad Content%-Length"},
      {{host = "h\r\nX-Injected: 1"}, "^bad Host header"},
    })
  end)

  it("refuses a URL whose authority has CR, LF or a space", function()
    local res, err = rill.http.request{url = "http://127.0.0.1\r\nX-Injected: 1\r\n:" ..
      rec.port .. "/"}
    assert.is_nil(res)
    assert.matches("^bad URL", err)
    assert.not_matches("[\r\n]", err)
    res, err = rill.http.request{url = "http://127.0.0.1 :" .. rec.port .. "/"}
    assert.is_nil(res)
    assert.matches("^bad URL", err)
    refused({})
  end)
end)

-- The response head is parsed where it lies in the connection's buffer
-- (core.http_read_response): however the upstream splits its bytes, the
-- head ends where it ends and the body's bytes stay for the body.
describe("http client response heads", function()
  -- An upstream that answers each request with the pieces given for it,
  -- flushed one by one with a pause between.
  local accepted -- connections the upstream has taken
  local function upstream(answers)
    local n = 0
    accepted = 0
    local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      accepted = accepted + 1
      sock:settimeout(10000)
      while sock:read_until("\r\n\r\n") do
        n = n + 1
        for _, piece in ipairs(answers[n] or {}) do
          sock:write(piece)
          sock:flush()
          rill.sleep(5)
        end
      end
      sock:close()
    end})
    return l, ("http://127.0.0.1:%d/"):format(l:port())
  end

  it("reads a head split anywhere, after 1xx heads, and leaves the body's bytes", function()
    local head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Split: yes\r\n\r\n"
    local pieces = {"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 100 Cont", "inue\r\n\r\n"}
    for i = 1, #head do pieces[#pieces + 1] = head:sub(i, i) end
    pieces[#pieces + 1] = "hel"
    pieces[#pieces + 1] = "lo" .. "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope"
    local l, url = upstream({pieces, {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}})
    finally(function() l:close() end)
    local res = assert(rill.http.request{url = url})
    assert.equal(200, res.status)
    assert.equal("yes", res.headers["x-split"])
    assert.same({"Content-Length", "5", "X-Split", "yes"}, res.raw_headers)
    assert.equal("hello", res.body:read_all())
    -- the bytes after the body were not a response to the next request: the
    -- connection is not reused, and the next request gets its own answer
    res = assert(rill.http.request{url = url})
    assert.equal(200, res.status)
    assert.equal(2, accepted)
  end)

  it("answers a malformed or oversized head with an error, not a response", function()
    local l, url = upstream({{"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n"}})
    local res, err = rill.http.request{url = url}
    l:close()
    assert.is_nil(res)
    assert.matches("^bad response", err)
    l, url = upstream({{"HTTP/1.1 200 OK\r\nX-Long: " .. string.rep("a", client.MAX_HEAD) ..
      "\r\n\r\n"}})
    res, err = rill.http.request{url = url}
    l:close()
    assert.is_nil(res)
    assert.truthy(err)
  end)

  it("reuses a pooled connection until client.pool.idle_timeout, then closes it", function()
    local old = client.pool.idle_timeout
    client.pool.idle_timeout = 200
    local ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"
    local l, url = upstream({{ok .. "r1"}, {ok .. "r2"}, {ok .. "r3"}})
    finally(function()
      client.pool.idle_timeout = old
      l:close()
    end)
    local key = client.pool_key{url = url}
    assert.equal("r1", assert(rill.http.request{url = url}).body:read_all())
    assert.equal(1, client.pooled(key))
    rill.sleep(50)
    assert.equal("r2", assert(rill.http.request{url = url}).body:read_all())
    assert.equal(1, accepted)
    rill.sleep(500)
    assert.equal(0, client.pooled(key))
    assert.equal("r3", assert(rill.http.request{url = url}).body:read_all())
    assert.equal(2, accepted)
  end)

  it("reads response after response on a kept-alive connection, by each body's framing",
    function()
    local l, url = upstream({
      {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\none"},
      {"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n"},
      {"HTTP/1.1 204 No Content\r\n\r\n"},
    })
    finally(function() l:close() end)
    local res = assert(rill.http.request{url = url})
    assert.equal("one", res.body:read_all())
    res = assert(rill.http.request{url = url})
    assert.equal(201, res.status)
    assert.equal("two", res.body:read_all())
    res = assert(rill.http.request{url = url, method = "HEAD"})
    assert.equal(204, res.status)
    assert.equal(1, accepted)
  end)
end)

describe("request bodies of the wrong type", function()
  it("are refused at the call, naming the argument, with nothing sent", function()
    local ok, err = pcall(function()
      rill.http.request{url = "http://127.0.0.1:1/", method = "POST", body = {a = 1}}
    end)
    assert.is_false(ok)
    assert.matches("client_spec%.lua:%d+: rill%.http%.request: body must be a string, a " ..
      "function or a stream %(with read_some%), got table %(or give json =%)", err)
    ok, err = pcall(function() rill.http.request{url = "http://127.0.0.1:1/", body = true} end)
    assert.is_false(ok)
    assert.matches("got boolean", err)
  end)
end)
