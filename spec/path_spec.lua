-- rill.path.safe_join: URL paths joined under a root, decoded once, with
-- every shape that could leave the root refused; and the router's raw
-- parameters it is meant for.
local rill = require "rill"


describe("rill.path.safe_join", function()
  local join = rill.path.safe_join

  it("joins plain and encoded paths, decoding each segment once", function()
    assert.equal("www/a/b.txt", join("www", "a/b.txt"))
    assert.equal("www/a b.txt", join("www/", "a%20b.txt"))
    assert.equal("/srv/%41.txt", join("/srv", "%2541.txt")) -- once, not twice
    assert.equal("/srv/caf\195\169", join("/srv", "caf%C3%A9"))
    assert.equal("www", join("www", ""))
    assert.equal("www/dir/", join("www", "dir/"))
    assert.equal("/etc", join("/", "etc"))
    assert.equal("www/..a/b..", join("www", "..a/b.."))
    assert.equal("www/.hidden", join("www", ".hidden")) -- dotfiles are the caller's
  end)

  it("refuses each shape that leaves the root, naming it", function()
    local cases = {
      {"..", "dot segment"}, {"a/../../etc/passwd", "dot segment"},
      {"%2e%2e/etc/passwd", "dot segment"}, {"%2E%2e", "dot segment"},
      {"a/./b", "dot segment"}, {".", "dot segment"}, {"a/%2e", "dot segment"},
      {"..%2fetc%2fpasswd", "encoded slash"}, {"a%2Fb", "encoded slash"},
      {"..%5c..%5cwin.ini", "backslash"}, {"a\\b", "backslash"},
      {"a%00.txt", "NUL byte"}, {"/etc/passwd", "absolute path"},
      {"a//b", "empty segment"}, {"%zz", "bad escape"}, {"a%4", "bad escape"},
      {"a%", "bad escape"}, {"%%41", "bad escape"}, {"%4g", "bad escape"},
    }
    for _, c in ipairs(cases) do
      local p, why = join("/srv/www", c[1])
      assert.is_nil(p, c[1])
      assert.equal(c[2], why, c[1])
    end
  end)

  it("never returns a path outside the root, for 50000 random shapes", function()
    local alphabet = {".", ".", "/", "/", "%", "2", "e", "E", "f", "F", "5", "c", "0", "a",
      "\\", "%2e", "%2f", "%5c", "%00", "..", "%2E%2E", "x"}
    math.randomseed(14)
    for _ = 1, 50000 do
      local parts = {}
      for i = 1, math.random(1, 12) do parts[i] = alphabet[math.random(#alphabet)] end
      local rest = table.concat(parts)
      local p = join("/srv/www", rest)
      if p then
        assert.equal("/srv/www", p:sub(1, 8), rest)
        local tail = p:sub(9)
        assert.is_truthy(tail == "" or tail:sub(1, 1) == "/", rest)
        assert.is_nil(tail:find("[%z\\]"), rest)
        for seg in (tail:sub(2) .. "/"):gmatch("([^/]*)/") do
          assert.is_truthy(seg ~= "." and seg ~= "..", rest)
        end
        assert.is_nil(tail:find("//", 1, true), rest)
      end
    end
  end)

  it("raises for a root or rest that is not a string, at the caller's line", function()
    local ok, err = pcall(join, nil, "a")
    assert.is_false(ok)
    assert.matches("rill.path.safe_join: root", err)
    ok, err = pcall(join, "www", 3)
    assert.matches("rill.path.safe_join: rest must be a string", err)
  end)
end)

describe("req.raw_params", function()
  it("holds route parameters as they came, beside the decoded req.params", function()
    local app = rill.router()
    app:get("/files/:dir/*rest", function(req, res)
      res:json({params = req.params, raw = req.raw_params})
    end)
    app:get("/none", function(req, res) res:json({n = #req.raw_params}) end)
    local c = assert(rill.test.client(app))
    local r = assert(c:get("/files/a%20b/%2e%2e/x%2Fy"))
    local v = assert(r:json())
    assert.same({dir = "a b", rest = "../x/y"}, v.params)
    assert.same({dir = "a%20b", rest = "%2e%2e/x%2Fy"}, v.raw)
    assert.equal(0, assert(c:get("/none")):json().n)
    c:close()
  end)

  it("is what a naive handler needs to stay inside its root", function()
    -- the issue's traversal: req.params.p is decoded, so "%2e%2e" became ".."
    local app = rill.router()
    app:get("/naive/*p", function(req, res)
      local path, why = rill.path.safe_join("/srv/www", req.raw_params.p)
      if not path then return res:status(400):send(why) end
      res:send(path)
    end)
    local c = assert(rill.test.client(app))
    local r = assert(c:get("/naive/%2e%2e/%2e%2e/etc/hostname"))
    assert.equal(400, r.status)
    assert.equal("dot segment", r.body)
    r = assert(c:get("/naive/docs/a%20b.txt"))
    assert.equal("/srv/www/docs/a b.txt", r.body)
    c:close()
  end)
end)


