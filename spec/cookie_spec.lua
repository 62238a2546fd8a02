-- rill.cookie: req.cookies from curl's Cookie header, Set-Cookie lines (exact
-- attributes, refusals), clear_cookie through curl's cookie jar, and signed
-- values (HMAC-SHA256 checked against RFC 4231 and openssl).
local rill = require "rill"
local helper = require "spec.helper"
local core = require "rill.core"
local cookie = require "rill.cookie"

local url = helper.url

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

-- A response object as a handler gets one, not tied to a connection.
local function response()
  return setmetatable({_status = 200, _h = {}, headers_sent = false, finished = false},
    rill.http.Response)
end

-- The Set-Cookie values of a response object, in order.
local function set_cookies(res)
  local t = {}
  for i = 1, #res._h, 2 do
    if res._h[i]:lower() == "set-cookie" then t[#t + 1] = res._h[i + 1] end
  end
  return t
end

-- The message of the error fn raises.
local function raised(fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error raised")
  return tostring(err)
end

describe("rill.cookie", function()
  describe("core.hmac_sha256", function()
    it("gives RFC 4231's HMAC-SHA256 test vectors", function()
      assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
        hex(core.hmac_sha256(string.rep("\11", 20), "Hi There")))
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        hex(core.hmac_sha256("Jefe", "what do ya want for nothing?")))
      -- a key longer than SHA-256's block is hashed first
      assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
        hex(core.hmac_sha256(string.rep("\170", 131),
          "Test Using Larger Than Block-Size Key - Hash Key First")))
      assert.equal(32, #core.hmac_sha256("", ""))
    end)
  end)

  describe("the Cookie header", function()
    it("parses pairs, drops blanks and quotes, keeps the first of a name", function()
      assert.same({a = "1", b = "two words", c = "", d = "4", e = "x=y"},
        cookie.parse('a=1; b="two words"; a=3;c=;  d = 4 ; noeq; =x; e=x=y'))
      assert.same({}, cookie.parse(nil))
      assert.same({}, cookie.parse(""))
      assert.same({a = "1", b = "2"}, cookie.parse({"a=1", "b=2; a=9"}))
    end)

    it("gives req.cookies, parsed when first read, from curl's -b", function()
      local seen = {}
      local l, port = helper.listen(function(req, res)
        seen[#seen + 1] = {before = rawget(req, "cookies"), cookies = req.cookies}
        res:send("ok")
      end)
      local code = helper.curl("-b", 'sid=abc123; theme="dark"; sid=other; empty=',
        url(port, "/"))
      assert.equal(0, code)
      code = helper.curl(url(port, "/"))
      assert.equal(0, code)
      l:close()
      assert.is_nil(seen[1].before)
      assert.same({sid = "abc123", theme = "dark", empty = ""}, seen[1].cookies)
      assert.same({}, seen[2].cookies)
    end)
  end)

  describe("Set-Cookie", function()
    it("writes every attribute exactly, one Set-Cookie line per cookie", function()
      local l, port = helper.listen(function(req, res)
        res:cookie("sid", "abc123", {path = "/app", domain = "example.com", max_age = 3600,
          expires = 1700000000, secure = true, http_only = true, same_site = "lax",
          partitioned = true})
        res:cookie("theme", "dark")
        res:cookie("q", '"quoted"', {path = false, same_site = "None", secure = true,
          expires = "Wed, 21 Oct 2015 07:28:00 GMT"})
        res:send("ok")
      end)
      local code, out = helper.curl("-sS", "-D", "-", "-o", "/dev/null", url(port, "/"))
      l:close()
      assert.equal(0, code)
      local lines = {}
      for v in out:gmatch("\r\n[Ss]et%-[Cc]ookie: ([^\r]*)") do lines[#lines + 1] = v end
      assert.same({
        "sid=abc123; Path=/app; Domain=example.com; Max-Age=3600; " ..
          "Expires=Tue, 14 Nov 2023 22:13:20 GMT; Secure; HttpOnly; SameSite=Lax; Partitioned",
        "theme=dark; Path=/",
        'q="quoted"; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure; SameSite=None',
      }, lines)
    end)

    it("keeps one line per name in a response: the last set", function()
      local res = response()
      res:cookie("a", "1")
      res:cookie("b", "2")
      res:cookie("a", "3", {http_only = true})
      assert.same({"a=3; Path=/; HttpOnly", "b=2; Path=/"}, set_cookies(res))
    end)

    it("refuses names that are not tokens and values that are not cookie-octets, " ..
      "naming the argument at the caller's line", function()
      for _, name in ipairs({"", "a b", "a=b", "a;b", "a,b", "(a)", "a\0", "\195\169"}) do
        assert.matches("cookie_spec%.lua:%d+: res:cookie: name must be a token",
          raised(function() response():cookie(name, "v") end), 1, false)
      end
      assert.matches('res:cookie: name must be a token .*, got nil',
        raised(function() response():cookie(nil, "v") end))
      for _, value in ipairs({"a b", 'a"b', '"ab', "a,b", "a;b", "a\\b", "a\1", "\195\169",
        "tab\t"}) do
        assert.matches("cookie_spec%.lua:%d+: res:cookie: value must be cookie%-octets",
          raised(function() response():cookie("n", value) end), 1, false)
      end
      assert.matches('res:cookie: value must be cookie%-octets .*, got "a b"',
        raised(function() response():cookie("n", "a b") end))
      assert.matches("res:cookie: value must be cookie%-octets .*, got 42",
        raised(function() response():cookie("n", 42) end))
      -- what RFC 6265 allows goes through
      local res = response()
      res:cookie("__Host-id_1.x", "AZaz09!#$%&'()*+-./:<=>?@[]^_`{|}~")
      res:cookie("e", "")
      res:cookie("q", '""')
      assert.same({"__Host-id_1.x=AZaz09!#$%&'()*+-./:<=>?@[]^_`{|}~; Path=/", "e=; Path=/",
        'q=""; Path=/'}, set_cookies(res))
    end)

    it("refuses bad attributes, naming the option", function()
      local cases = {
        {{path = "/a;b"}, "path must be"},
        {{domain = "exa mple.com"}, "domain must be a host name"},
        {{max_age = "1h"}, "max_age must be a number of seconds"},
        {{expires = {}}, "expires must be seconds since the epoch"},
        {{same_site = "maybe"}, 'same_site must be "Strict", "Lax" or "None"'},
        {{same_site = "none"}, 'same_site = "None" needs secure = true'},
        {{partitioned = true}, "partitioned needs secure = true"},
        {{httponly = true}, "unknown option httponly"},
        {"/", "opts must be a table"},
      }
      for _, c in ipairs(cases) do
        local msg = raised(function() response():cookie("n", "v", c[1]) end)
        assert.matches("cookie_spec%.lua:%d+: res:cookie: ", msg)
        assert.truthy(msg:find(c[2], 1, true), msg)
      end
      local res = response()
      res.headers_sent = true
      assert.matches("cookie_spec%.lua:%d+: res:cookie: the response head has been sent",
        raised(function() res:cookie("n", "v") end))
    end)

    it("clear_cookie sends an empty value that expired in 1970", function()
      local res = response()
      res:cookie("sid", "abc")
      res:clear_cookie("sid")
      res:clear_cookie("pref", {path = "/app", domain = "example.com", secure = true})
      assert.same({"sid=; Path=/; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "pref=; Path=/app; Domain=example.com; Max-Age=0; " ..
          "Expires=Thu, 01 Jan 1970 00:00:00 GMT; Secure"}, set_cookies(res))
    end)
  end)

  describe("signed values", function()
    it("signs with HMAC-SHA256 in base64url, as openssl computes it", function()
      local signed = cookie.sign("user42", "s3cret")
      local code, out, err = helper.run({"sh", "-c", "printf %s user42 | openssl dgst " ..
        "-sha256 -hmac s3cret -binary | base64 -w0 | tr '+/' '-_' | tr -d '='"})
      assert.equal(0, code, err)
      assert.equal("user42." .. out, signed)
      assert.equal(43, #out)
    end)

    it("verifies, and refuses a changed value, a changed signature and a wrong secret",
      function()
      local secret = string.rep("k", 32)
      local signed = cookie.sign("a.b.c", secret)
      assert.equal("a.b.c", cookie.verify(signed, secret))
      local sig = signed:sub(-43)
      local v, err = cookie.verify("a.b.d." .. sig, secret)
      assert.is_nil(v)
      assert.equal("bad signature", err)
      local flipped = signed:sub(1, -2) .. (signed:sub(-1) == "A" and "B" or "A")
      assert.same({nil, "bad signature"}, {cookie.verify(flipped, secret)})
      assert.same({nil, "bad signature"}, {cookie.verify(signed, "other secret")})
      assert.same({nil, "malformed"}, {cookie.verify("a.b.c", secret)})
      assert.same({nil, "malformed"}, {cookie.verify("x" .. sig, secret)})
      assert.same({nil, "malformed"}, {cookie.verify(sig, secret)})
      assert.same({nil, "missing"}, {cookie.verify(nil, secret)})
      assert.equal("", cookie.verify(cookie.sign("", secret), secret))
    end)

    it("rotates keys: signs with the first secret, accepts any in the list", function()
      local old = cookie.sign("id7", "old secret")
      local new = cookie.sign("id7", "new secret")
      assert.is_not.equal(old, new)
      assert.equal("id7", cookie.verify(old, {"new secret", "old secret"}))
      assert.equal("id7", cookie.verify(new, {"new secret", "old secret"}))
      assert.same({nil, "bad signature"}, {cookie.verify(old, {"new secret"})})
    end)

    it("raises for a missing value or secret", function()
      assert.matches("cookie_spec%.lua:%d+: rill%.cookie%.sign: value must be a string",
        raised(function() cookie.sign(nil, "k") end))
      assert.matches("rill%.cookie%.sign: a secret must be a non%-empty string",
        raised(function() cookie.sign("v", "") end))
      assert.matches("rill%.cookie%.verify: secrets must be a secret or a list",
        raised(function() cookie.verify("v", {}) end))
      assert.matches("rill%.cookie%.verify: a secret must be a non%-empty string",
        raised(function() cookie.verify("v", {"k", 3}) end))
    end)
  end)

  it("keeps a signed session in curl's cookie jar and forgets it on clear_cookie", function()
    local secrets = {"today's secret", "yesterday's secret"}
    local app = rill.router()
    app:post("/login", function(req, res)
      res:cookie("session", cookie.sign("user42", secrets[1]), {http_only = true,
        same_site = "Strict", max_age = 3600})
      res:cookie("theme", "dark")
      res:send("in")
    end)
    app:get("/me", function(req, res)
      local who, err = cookie.verify(req.cookies.session, secrets)
      res:send((who or err) .. " " .. tostring(req.cookies.theme))
    end)
    app:post("/logout", function(req, res)
      res:clear_cookie("session")
      res:send("out")
    end)
    local l, port = helper.listen(app)
    local jar = os.tmpname()
    local function curl(...)
      local code, out, err = helper.curl("-b", jar, "-c", jar, ...)
      assert.equal(0, code, err)
      return out
    end
    assert.equal("missing nil", curl(url(port, "/me")))
    assert.equal("in", curl("-X", "POST", url(port, "/login")))
    assert.equal("user42 dark", curl(url(port, "/me")))
    -- a cookie the client changed is refused
    local code, out = helper.curl("-b", "session=user43." .. ("A"):rep(43), url(port, "/me"))
    assert.equal("bad signature nil", out)
    assert.equal("out", curl("-X", "POST", url(port, "/logout")))
    assert.equal("missing dark", curl(url(port, "/me")))
    l:close()
    os.remove(jar)
  end)
end)
