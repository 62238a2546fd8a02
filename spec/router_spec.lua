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

describe("handler deadlines", function()
  local l, port, seen
  before_each(function()
    seen = {}
    local app = rill.router()
    app:use("/all", rill.middleware.timeout(150))
    app:get("/slow", {timeout = 150}, function(req, res)
      res:header("X-Set-Before", "yes")
      local t0 = rill.now()
      seen.sleep = {rill.sleep(3000)}
      seen.slept_ms = rill.now() - t0
      res:send("too late") -- raises: the deadline answered; not logged again
      seen.after_send = true
    end)
    app:get("/started", {timeout = 150}, function(req, res)
      res:write("part one\n")
      rill.sleep(3000)
      seen.started_woke = true
    end)
    app:get("/fast", {timeout = 150}, function(req, res) res:send("fast") end)
    app:get("/all/slow", function(req, res) rill.sleep(3000) end)
    l, port = helper.listen(app)
  end)
  after_each(function() l:close() end)

  it("answers 503 past a route's timeout, ends the handler's wait, and keeps the connection",
    function()
      local s = helper.connect(port)
      local t0 = rill.now()
      s:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      local status, headers, body = helper.read_response(s)
      assert.equal(503, status)
      assert.equal("handler timed out\n", body)
      assert.is_nil(headers["x-set-before"]) -- the handler's headers were not the answer's
      assert.is_true(rill.now() - t0 < 2000)
      for _ = 1, 50 do
        if seen.slept_ms then break end
        rill.sleep(20)
      end
      assert.is_true(seen.slept_ms < 1000, "the handler's sleep was ended")
      assert.is_nil(seen.after_send)
      -- the connection serves the next request
      s:write("GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
      status, _, body = helper.read_response(s)
      assert.equal(200, status)
      assert.equal("fast", body)
      s:close()
    end)

  it("cuts a started response past the deadline: the client sees no proper end", function()
    local s = helper.connect(port)
    s:write("GET /started HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equal(200, (helper.read_response_head(s)))
    local rest, why = helper.read_to_end(s)
    assert.matches("part one", rest)
    assert.not_matches("\r\n0\r\n\r\n$", rest)
    assert.matches("ECONNRESET", why) -- reset at once, not left to a timeout
  end)

  it("applies rill.middleware.timeout to everything after it", function()
    local code, out = helper.curl("-w", " %{http_code}", ("http://127.0.0.1:%d/all/slow"):format(port))
    assert.equal(0, code)
    assert.equal("handler timed out\n 503", out)
  end)

  it("refuses a bad timeout and names a bad pattern at the caller's line", function()
    local app = rill.router()
    local ok, err = pcall(function() app:get("/x", {timeout = -1}, function() end) end)
    assert.is_false(ok)
    assert.matches("route option timeout must be a positive number of ms", err)
    ok, err = pcall(function() app:get("todos", function() end) end)
    assert.is_false(ok)
    assert.matches('router_spec%.lua:%d+: app:route: the pattern must be a string starting ' ..
      'with /, got "todos"', err)
    for call, want in pairs({
      [function() app:get("/x", {}, "nope") end] = "app:route: the handler must be a function",
      [function() app:websocket("/ws", 1) end] = "app:websocket: the handler must be a function",
      [function() app:use(42) end] = "app:use: the middleware must be a function",
      [function() app:use("api", function() end) end] = "app:use: the prefix must be a string",
      [function() app:proxy("api", "http://x") end] = "app:proxy: the prefix must be a string",
    }) do
      ok, err = pcall(call)
      assert.is_false(ok)
      assert.matches("router_spec%.lua:%d+: " .. want:gsub("%p", "%%%0"), err)
    end
  end)
end)
