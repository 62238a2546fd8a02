-- The router: matching, parameters, 404/405, middleware. Driven with fake
-- request/response objects, then once through a real server and curl.
local rill = require "rill"
local helper = require "spec.helper"

local function fake(method, path)
  local res = {_status = 200, _h = {}}
  function res:status(c) self._status = c return self end
  function res:header(k, v) self._h[k] = v return self end
  function res:send(b) self.body = b return true end
  return {method = method, path = path}, res
end

local function call(app, method, path)
  local req, res = fake(method, path)
  app:handle(req, res)
  return res, req
end

describe("router", function()
  local app
  before_each(function()
    app = rill.router()
    app:get("/", function(req, res) res:send("root") end)
    app:get("/users", function(req, res) res:send("list") end)
    app:get("/users/:id", function(req, res) res:send("user " .. req.params.id) end)
    app:post("/users/:id", function(req, res) res:send("update " .. req.params.id) end)
    app:get("/users/me", function(req, res) res:send("me") end)
    app:get("/users/:id/posts/:post", function(req, res)
      res:send(req.params.id .. "/" .. req.params.post)
    end)
    app:get("/files/*path", function(req, res) res:send("file " .. req.params.path) end)
    app:any("/any", function(req, res) res:send("any " .. req.method) end)
  end)

  it("matches static paths", function()
    assert.equal("root", call(app, "GET", "/").body)
    assert.equal("list", call(app, "GET", "/users").body)
  end)

  it("captures and decodes parameters", function()
    assert.equal("user 42", call(app, "GET", "/users/42").body)
    assert.equal("user a b", call(app, "GET", "/users/a%20b").body)
    assert.equal("7/9", call(app, "GET", "/users/7/posts/9").body)
  end)

  it("prefers a static segment to a parameter", function()
    assert.equal("me", call(app, "GET", "/users/me").body)
  end)

  it("takes the rest of the path with *name", function()
    assert.equal("file a/b/c.txt", call(app, "GET", "/files/a/b/c.txt").body)
    assert.equal("file ", call(app, "GET", "/files/").body)
  end)

  it("answers 404 when no route matches", function()
    local res = call(app, "GET", "/nope")
    assert.equal(404, res._status)
    res = call(app, "GET", "/users/1/other")
    assert.equal(404, res._status)
  end)

  it("answers 405 with Allow for a known path and another method", function()
    local res = call(app, "DELETE", "/users/1")
    assert.equal(405, res._status)
    assert.equal("GET, HEAD, POST", res._h.Allow)
  end)

  it("serves HEAD with the GET route, and any method with any()", function()
    assert.equal("user 1", call(app, "HEAD", "/users/1").body)
    assert.equal("any PATCH", call(app, "PATCH", "/any").body)
  end)

  it("runs middleware in order before the route; next() goes on", function()
    local seen = {}
    app:use(function(req, res, nxt)
      seen[#seen + 1] = "first"
      nxt()
      seen[#seen + 1] = "first after"
    end)
    app:use("/users", function(req, res, nxt)
      seen[#seen + 1] = "users " .. req.params.id
      return nxt()
    end)
    call(app, "GET", "/users/5")
    assert.same({"first", "users 5", "first after"}, seen)
    seen = {}
    call(app, "GET", "/")
    assert.same({"first", "first after"}, seen)
  end)

  it("lets middleware answer and stop", function()
    app:use(function(req, res, nxt)
      res:status(401)
      return res:send("no")
    end)
    local res = call(app, "GET", "/users")
    assert.equal(401, res._status)
    assert.equal("no", res.body)
  end)

  it("serves a real request through rill.http and curl", function()
    local l, port = helper.listen(app)
    local code, out = helper.curl("-i", ("http://127.0.0.1:%d/users/99?x=1"):format(port))
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 200 OK", out)
    assert.matches("user 99$", out)
    code, out = helper.curl("-i", "-X", "PUT", ("http://127.0.0.1:%d/users/99"):format(port))
    assert.matches("^HTTP/1.1 405", out)
    assert.matches("\r\nAllow: GET, HEAD, POST\r\n", out)
    l:close()
  end)
end)
