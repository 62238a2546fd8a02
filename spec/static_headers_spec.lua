-- The header arithmetic of rill.static as pure functions (rill.static.headers,
-- rill.static.mime): dates, entity tags, the RFC 9110 conditionals, Range,
-- Accept-Encoding and content types. The served behaviour is in
-- static_spec.lua.
local H = require "rill.static.headers"
local mime = require "rill.static.mime"

describe("rill.static.headers", function()
  it("formats and parses HTTP dates in all three forms (RFC 9110 5.6.7)", function()
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", H.http_date(784111777))
    assert.equal("Thu, 01 Jan 1970 00:00:00 GMT", H.http_date(0))
    assert.equal("Tue, 29 Feb 2000 23:59:59 GMT", H.http_date(951868799))
    assert.equal("Fri, 01 Jan 2106 00:00:00 GMT", H.http_date(4291747200))
    assert.equal(784111777, H.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(784111777, H.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(784111777, H.parse_http_date("Sun Nov  6 08:49:37 1994"))
    for t = 0, 4102444800, 86400 * 397 + 3661 do
      assert.equal(t, H.parse_http_date(H.http_date(t)))
    end
    assert.is_nil(H.parse_http_date("yesterday"))
    assert.is_nil(H.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"))
    assert.is_nil(H.parse_http_date("Sun, 06 Nov 1994 25:49:37 GMT"))
    assert.is_nil(H.parse_http_date(nil))
  end)

  it("makes a strong ETag from size, mtime and inode", function()
    local st = {size = 1234, mtime = 1700000000.25, ino = 99}
    assert.equal('"4d2-18bcfe568fa-63"', H.etag(st))
    st.mtime = 1700000000.5
    assert.is_not.equal('"4d2-18bcfe568fa-63"', H.etag(st))
    assert.equal('"10000000000-0-0"', H.etag({size = 2 ^ 40, mtime = 0, ino = 0}))
  end)

  it("compares entity tags weakly and strongly", function()
    local e = '"abc"'
    assert.is_true(H.etag_matches('"x", "abc"', e, true))
    assert.is_true(H.etag_matches('W/"abc"', e, true))
    assert.is_false(H.etag_matches('W/"abc"', e, false))
    assert.is_true(H.etag_matches({'"x"', '"abc"'}, e, false)) -- a repeated header
    assert.is_false(H.etag_matches('"ab"', e, true))
    assert.is_false(H.etag_matches('abc', e, true))
    assert.is_true(H.etag_matches('"a,b", "abc"', e, true))
  end)

  describe("precondition (RFC 9110 13.2.2)", function()
    local e, t = '"abc"', 1000000
    local d = H.http_date
    local function pc(h, method) return H.precondition(h, method or "GET", e, t) end

    it("If-Match: 412 unless it names the tag (strongly) or is *", function()
      assert.is_nil(pc{["if-match"] = '"abc"'})
      assert.is_nil(pc{["if-match"] = "*"})
      assert.equal(412, pc{["if-match"] = '"old"'})
      assert.equal(412, pc{["if-match"] = 'W/"abc"'})
      -- If-Match wins over If-Unmodified-Since
      assert.is_nil(pc{["if-match"] = '"abc"', ["if-unmodified-since"] = d(t - 10)})
    end)

    it("If-Unmodified-Since: 412 once modified after it; a bad date is ignored", function()
      assert.equal(412, pc{["if-unmodified-since"] = d(t - 1)})
      assert.is_nil(pc{["if-unmodified-since"] = d(t)})
      assert.is_nil(pc{["if-unmodified-since"] = "garbage"})
    end)

    it("If-None-Match: 304 for GET and HEAD when it matches weakly or is *", function()
      assert.equal(304, pc{["if-none-match"] = 'W/"abc"'})
      assert.equal(304, pc({["if-none-match"] = '"x", "abc"'}, "HEAD"))
      assert.equal(304, pc{["if-none-match"] = "*"})
      assert.is_nil(pc{["if-none-match"] = '"old"'})
      assert.equal(412, pc({["if-none-match"] = '"abc"'}, "PUT"))
      -- If-None-Match wins over If-Modified-Since
      assert.is_nil(pc{["if-none-match"] = '"old"', ["if-modified-since"] = d(t)})
    end)

    it("If-Modified-Since: 304 unless modified after it (GET and HEAD)", function()
      assert.equal(304, pc{["if-modified-since"] = d(t)})
      assert.equal(304, pc{["if-modified-since"] = d(t + 5)})
      assert.is_nil(pc{["if-modified-since"] = d(t - 1)})
      assert.is_nil(pc({["if-modified-since"] = d(t)}, "POST"))
      assert.is_nil(pc{["if-modified-since"] = "not a date"})
    end)

    it("412 comes before 304", function()
      assert.equal(412, pc{["if-match"] = '"old"', ["if-none-match"] = '"abc"'})
    end)

    it("uses neither validator when the handler sends none", function()
      assert.is_nil(H.precondition({["if-none-match"] = '"abc"',
        ["if-modified-since"] = d(t)}, "GET", nil, nil))
      assert.equal(304, H.precondition({["if-none-match"] = "*"}, "GET", nil, nil))
    end)
  end)

  it("If-Range holds for the same strong tag or the exact date only", function()
    local e, t = '"abc"', 1000000
    assert.is_true(H.if_range_holds(nil, e, t))
    assert.is_true(H.if_range_holds('"abc"', e, t))
    assert.is_false(H.if_range_holds('W/"abc"', e, t))
    assert.is_false(H.if_range_holds('"old"', e, t))
    assert.is_true(H.if_range_holds(H.http_date(t), e, t))
    assert.is_false(H.if_range_holds(H.http_date(t + 1), e, t))
    assert.is_false(H.if_range_holds("garbage", e, t))
    assert.is_false(H.if_range_holds('"abc', nil, t))
  end)

  describe("parse_range", function()
    local function pr(h, size) return H.parse_range(h, size or 1000, 16) end

    it("reads first-last, open and suffix ranges, clamped to the size", function()
      assert.same({{0, 499}}, pr("bytes=0-499"))
      assert.same({{500, 999}}, pr("bytes=500-"))
      assert.same({{900, 999}}, pr("bytes=-100"))
      assert.same({{0, 999}}, pr("bytes=-5000"))
      assert.same({{990, 999}}, pr("bytes=990-5000"))
      assert.same({{0, 0}, {999, 999}}, pr("bytes= 0-0 , -1"))
      assert.same({{5, 9}}, pr("Bytes=5-9"))
    end)

    it("says unsatisfiable when no range falls inside", function()
      assert.equal("unsatisfiable", pr("bytes=1000-"))
      assert.equal("unsatisfiable", pr("bytes=5000-6000, -0"))
      assert.same({{0, 9}}, pr("bytes=5000-6000, 0-9")) -- one satisfiable is enough
    end)

    it("ignores a malformed Range, another unit, too many or overlapping ranges", function()
      assert.is_nil(pr(nil))
      assert.is_nil(pr("items=0-5"))
      assert.is_nil(pr("bytes=abc"))
      assert.is_nil(pr("bytes=5-1"))
      assert.is_nil(pr("bytes=-"))
      assert.is_nil(pr("bytes="))
      assert.is_nil(pr("bytes=1-2-3"))
      assert.is_nil(pr("bytes=9999999999999999999-"))
      assert.is_nil(pr({"bytes=0-1", "bytes=2-3"})) -- repeated
      local many = {}
      for i = 0, 16 do many[#many + 1] = i .. "-" .. i end
      assert.is_nil(pr("bytes=" .. table.concat(many, ",")))
      assert.equal(16, #pr("bytes=" .. table.concat(many, ",", 1, 16)))
      assert.is_nil(pr("bytes=0-999,0-999")) -- adds up past the size
      assert.is_nil(pr("bytes=0-0", 0)) -- an empty file: no ranges
    end)
  end)

  it("never raises on random Range headers, and keeps every range inside the size", function()
    local alphabet = {"bytes=", "bytes=", "0", "1", "9", "99", "-", "-", ",", " ", "x", "=",
      "999999999999999999"}
    math.randomseed(9110)
    for _ = 1, 20000 do
      local parts = {}
      for i = 1, math.random(1, 10) do parts[i] = alphabet[math.random(#alphabet)] end
      local h = table.concat(parts)
      local size = math.random(0, 200)
      local r = H.parse_range(h, size, 16)
      if type(r) == "table" then
        assert.is_true(#r >= 1 and #r <= 16, h)
        for _, x in ipairs(r) do
          assert.is_true(x[1] >= 0 and x[1] <= x[2] and x[2] < size, h)
        end
      else
        assert.is_truthy(r == nil or r == "unsatisfiable", h)
      end
    end
  end)

  it("reads Accept-Encoding with q-values and *", function()
    assert.is_true(H.accepts("gzip, deflate, br", "br"))
    assert.is_true(H.accepts("GZIP", "gzip"))
    assert.is_true(H.accepts("x-gzip", "gzip"))
    assert.is_false(H.accepts("gzip;q=0", "gzip"))
    assert.is_false(H.accepts("gzip; q=0.0, br", "gzip"))
    assert.is_true(H.accepts("gzip;q=0.5", "gzip"))
    assert.is_true(H.accepts("*", "br"))
    assert.is_false(H.accepts("*, br;q=0", "br"))
    assert.is_false(H.accepts("*;q=0", "br"))
    assert.is_false(H.accepts("identity", "gzip"))
    assert.is_false(H.accepts(nil, "gzip"))
    assert.is_true(H.accepts({"deflate", "gzip"}, "gzip"))
  end)
end)

describe("rill.static.mime", function()
  it("parses mime.types text, the first type of an extension winning", function()
    local m = mime.parse("# comment\ntext/html\t\thtml htm\napplication/x-foo foo\n" ..
      "text/x-other html\nimage/x-none\n")
    assert.same({html = "text/html", htm = "text/html", foo = "application/x-foo"}, m)
  end)

  it("gives whole Content-Type values, with charset=utf-8 for text", function()
    assert.equal("text/html; charset=utf-8", mime.lookup("index.html"))
    assert.equal("text/css; charset=utf-8", mime.lookup("a/b/site.CSS"))
    assert.equal("text/javascript; charset=utf-8", mime.lookup("app.mjs"))
    assert.equal("application/json; charset=utf-8", mime.lookup("data.json"))
    assert.equal("image/svg+xml; charset=utf-8", mime.lookup("logo.svg"))
    assert.equal("image/png", mime.lookup("logo.png"))
    assert.equal("application/wasm", mime.lookup("m.wasm"))
    assert.equal("application/gzip", mime.lookup("a.tar.gz"))
    assert.equal("application/octet-stream", mime.lookup("Makefile"))
    assert.equal("application/octet-stream", mime.lookup(".bashrc"))
    assert.equal("application/octet-stream", mime.lookup("x.nosuchext"))
    assert.equal("text/x-lua; charset=utf-8", mime.lookup("a.lua", {lua = "text/x-lua; charset=utf-8"}))
  end)

  it("reads the system's table (Debian's media-types) when it is there", function()
    local f = io.open("/etc/mime.types")
    if not f then return end
    f:close()
    -- types only /etc/mime.types has
    assert.equal("application/vnd.oasis.opendocument.text", mime.lookup("a.odt"))
    assert.equal("text/calendar; charset=utf-8", mime.lookup("a.ics"))
  end)
end)
