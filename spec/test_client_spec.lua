-- rill.test.client: an app served in this runtime and driven by requests;
-- and rill test's captured log, shown under failing tests only.
local rill = require "rill"
local helper = require "spec.helper"

-- An app that tells what it got.
local function echo_app()
  local app = rill.router()
  app:any("/echo", function(req, res)
    local body = req.body:read_all()
    local headers = {}
    for k, v in pairs(req.headers) do headers[k] = v end
    res:json({method = req.method, target = req.target, query = req.query, headers = headers,
      body = body, cookies = req.cookies})
  end)
  app:get("/login", function(req, res)
    res:cookie("sid", "s-" .. req.query.user, {http_only = true})
    res:cookie("theme", "dark")
    res:send("in")
  end)
  app:get("/logout", function(req, res)
    res:clear_cookie("sid")
    res:send("out")
  end)
  app:websocket("/ws", function(ws, req)
    ws:send("hello " .. tostring(req.cookies.sid))
    while true do
      local msg = ws:receive()
      if not msg then return end
      ws:send("echo " .. msg:read_all())
    end
  end)
  return app
end

describe("rill.test.client", function()
  local c
  before_each(function() c = assert(rill.test.client(echo_app())) end)
  after_each(function() c:close() end)

  it("serves the app on 127.0.0.1 and sends each method", function()
    assert.matches("^http://127%.0%.0%.1:%d+$", c.url)
    assert.equal(c.url, "http://127.0.0.1:" .. c.port)
    for _, m in ipairs({"get", "post", "put", "patch", "delete", "options"}) do
      local res = assert(c[m](c, "/echo"))
      assert.equal(200, res.status)
      assert.equal(m:upper(), res:json().method)
    end
    local head = assert(c:head("/echo"))
    assert.equal(200, head.status)
    assert.equal("", head.body)
    assert.equal("application/json", head.headers["content-type"])
    assert.equal("PUT", assert(c:request("put", "/echo")):json().method)
  end)

  it("answers with status, lower-case headers, the whole body and :json()", function()
    local res = assert(c:get("/nope"))
    assert.equal(404, res.status)
    assert.equal("Not Found\n", res.body)
    assert.equal("text/plain", res.headers["content-type"])
    assert.equal("text/plain", res.headers["Content-Type"])
    local v, err = res:json()
    assert.is_nil(v)
    assert.matches("^invalid json", err)
  end)

  it("sends json, body, headers and query", function()
    local got = assert(c:post("/echo", {json = {a = 1, list = {1, 2}}})):json()
    assert.equal("application/json", got.headers["content-type"])
    assert.same({a = 1, list = {1, 2}}, rill.json.decode(got.body))
    got = assert(c:put("/echo", {body = "raw bytes", headers = {["X-One"] = "1",
      ["Content-Type"] = "text/plain"}})):json()
    assert.equal("raw bytes", got.body)
    assert.equal("1", got.headers["x-one"])
    assert.equal("text/plain", got.headers["content-type"])
    got = assert(c:get("/echo?x=0", {query = {q = "a b&c=d/é", list = {"1", "2"}, flag = true}}))
      :json()
    assert.equal("/echo?x=0&flag&list=1&list=2&q=a%20b%26c%3Dd%2F%C3%A9", got.target)
    assert.same({x = "0", flag = true, list = {"1", "2"}, q = "a b&c=d/é"}, got.query)
    assert.has_error(function() c:post("/echo", {body = "x", json = {}}) end,
      "client:post: give body or json, not both")
    assert.has_error(function() c:get("echo") end,
      'client:get: path must be a string starting with /, got "echo"')
  end)

  it("keeps Set-Cookie cookies in a jar, per client", function()
    assert.equal("in", assert(c:get("/login", {query = {user = "ann"}})).body)
    assert.same({sid = "s-ann", theme = "dark"}, c.cookies)
    local got = assert(c:get("/echo")):json()
    assert.same({sid = "s-ann", theme = "dark"}, got.cookies)
    -- a request's own cookies join the jar's for that request only
    got = assert(c:get("/echo", {cookies = {extra = "1", theme = "light"}})):json()
    assert.same({sid = "s-ann", theme = "light", extra = "1"}, got.cookies)
    assert.same({sid = "s-ann", theme = "dark"}, c.cookies)
    -- another client has its own jar
    local other = assert(rill.test.client(echo_app()))
    assert.same({}, assert(other:get("/echo")):json().cookies)
    other:close()
    -- a cleared cookie leaves the jar
    assert(c:get("/logout"))
    assert.same({theme = "dark"}, c.cookies)
    local plain = assert(rill.test.client(echo_app(), {cookies = false}))
    assert(plain:get("/login", {query = {user = "bob"}}))
    assert.same({}, assert(plain:get("/echo")):json().cookies)
    plain:close()
  end)

  it("opens websockets, with the jar's cookies", function()
    assert(c:get("/login", {query = {user = "ws"}}))
    local ws = assert(c:websocket("/ws"))
    assert.equal("hello s-ws", ws:receive():read_all())
    assert(ws:send("x"))
    assert.equal("echo x", ws:receive():read_all())
    ws:close()
  end)

  it("stops the server at close", function()
    local port = c.port
    c:close()
    local res, err = c:get("/echo")
    assert.is_nil(res)
    assert.equal("closed", err)
    assert.is_nil(rill.connect("127.0.0.1", port, 2000))
    c:close() -- twice: nothing
  end)

  it("closes its websockets at close", function()
    local gone
    local ended = false
    local app = rill.router()
    app:websocket("/ws", function(ws)
      local msg, why, code = ws:receive()
      gone, ended = {msg, why, code}, true
    end)
    local wc = assert(rill.test.client(app))
    local ws = assert(wc:websocket("/ws"))
    wc:close()
    for _ = 1, 500 do
      if ended then break end
      rill.sleep(10)
    end
    assert.is_true(ended)
    assert.same({nil, "closed", 1001}, gone)
    assert.equal("closed", (select(2, ws:receive())))
  end)

  it("reads bodies up to max_body", function()
    local small = assert(rill.test.client(function(req, res) res:send(("x"):rep(100)) end,
      {max_body = 50}))
    local res, err = small:get("/")
    assert.is_nil(res)
    assert.equal("too large", err)
    small:close()
  end)
end)

describe("rill test's log capture", function()
  -- Runs `rill test` on a spec file with one failing and one passing test,
  -- both of whose servers log; returns its exit code and output.
  local function run_child(env)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local f = assert(io.open(dir .. "/child_spec.lua", "w"))
    f:write([[
local rill = require "rill"
describe("child", function()
  it("fails on purpose", function()
    local c = rill.test.client(function(req, res)
      rill.log("warn", "LINE-OF-THE-FAILING-TEST")
      res:send("ok")
    end)
    assert.equal(200, c:get("/").status)
    assert.equal("not ok", c:get("/").body)
  end)
  it("passes", function()
    local c = rill.test.client(function(req, res)
      rill.log("warn", "LINE-OF-THE-PASSING-TEST")
      error("HANDLER-ERROR-OF-THE-PASSING-TEST")
    end)
    assert.equal(500, c:get("/").status)
  end)
end)
describe("a hook", function()
  before_each(function()
    rill.log("warn", "LINE-OF-THE-FAILING-HOOK")
    error("the hook fails on purpose")
  end)
  it("is not reached", function() end)
end)
]])
    f:close()
    local argv = {helper.bin, "test", "-o", "plainTerminal", dir .. "/child_spec.lua"}
    if env then table.insert(argv, 1, "env"); table.insert(argv, 2, env) end
    local code, out, err = helper.run(argv)
    os.execute("rm -rf " .. dir)
    return code, out, err
  end

  it("shows a failing test's log lines in its report, and no passing test's", function()
    local code, out, err = run_child()
    assert.equal(2, code) -- a failure and an error
    local report = out:match("Failure.-fails on purpose.*")
    assert.is_not_nil(report, out)
    assert.matches("%-%- log of this test %(2 lines%):\n[^\n]*%[warn%] %[w0%] " ..
      "LINE%-OF%-THE%-FAILING%-TEST\n", report)
    -- a hook's error: with what was logged since the last test
    assert.matches("the hook fails on purpose\n\n%-%- log of the runtime since the last test " ..
      "%(1 line%):\n[^\n]*LINE%-OF%-THE%-FAILING%-HOOK\n", out)
    assert.not_matches("PASSING", out)
    assert.not_matches("PASSING", err)
    assert.not_matches("FAILING", err)
  end)

  it("keeps up to 1 MiB of lines between takes and counts the rest (core.log_capture)", function()
    local core = require "rill.core"
    local was_on = os.getenv("RILL_TEST_LOG") ~= "all"
    core.log_capture(true) -- (takes what the runner kept of this test)
    core.log_write("written whole\n")
    local line = ("x"):rep(1000)
    for _ = 1, 1100 do rill.log("info", line) end
    local text, dropped = core.log_capture(was_on)
    assert.equal("written whole\n", text:sub(1, 14))
    assert.is_true(#text <= 1024 * 1024)
    local kept = select(2, text:gsub("\n", "")) - 1
    assert.is_true(dropped > 0)
    assert.equal(1100, kept + dropped)
    assert.matches("%[info%] %[w0%] x+\n$", text)
  end)

  it("closes the clients a spec file left open when the file ends", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    local function write(name, text)
      local f = assert(io.open(dir .. "/" .. name, "w"))
      f:write(text)
      f:close()
    end
    write("a_spec.lua", ([[
local c = require("rill").test.client(function(req, res) res:send("ok") end)
it("opens a client", function()
  assert.equal("ok", c:get("/").body)
  local f = assert(io.open(%q, "w"))
  f:write(c.port)
  f:close()
end)
]]):format(dir .. "/port"))
    write("b_spec.lua", ([[
it("finds its server stopped", function()
  local f = assert(io.open(%q))
  local port = tonumber(f:read("*a"))
  f:close()
  local s, err = require("rill").connect("127.0.0.1", port, 2000)
  assert.is_nil(s)
  assert.matches("ECONNREFUSED", err)
end)
]]):format(dir .. "/port"))
    local code, out = helper.run({helper.bin, "test", "-o", "plainTerminal",
      dir .. "/a_spec.lua", dir .. "/b_spec.lua"})
    os.execute("rm -rf " .. dir)
    assert.equal(0, code, out)
    assert.matches("2 successes / 0 failures", out)
  end)

  it("writes every line as it comes with RILL_TEST_LOG=all", function()
    local code, out, err = run_child("RILL_TEST_LOG=all")
    assert.equal(2, code)
    assert.matches("LINE%-OF%-THE%-FAILING%-TEST", err)
    assert.matches("HANDLER%-ERROR%-OF%-THE%-PASSING%-TEST", err)
    assert.not_matches("log of this test", out)
  end)
end)
