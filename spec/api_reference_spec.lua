-- The API reference (lua/README.md) against the API: walks the exported
-- tables and the methods of real objects (a listener, a socket, a request and
-- its response, a router, a WebSocket and its messages, a client response
-- body, an SSE writer...) and fails on a public name the reference does not
-- mention, or a name the reference mentions that does not exist.
--
-- The rule. Each kind of object has the prefix the reference writes it with:
-- `rill.http.` for the functions of rill.http, `req:` for a request's
-- methods, `req.` for its fields, `s:` for a stream's methods, and so on
-- (KINDS below). A public name (one not starting with `_`) is mentioned when
-- the reference holds, in code, prefix .. name followed by `(` for a function
-- or method (or `{` or `"`, Lua's other call forms), or by a character that cannot continue a name for another value
-- (`rill.json.null`, `req.path`). Conversely, every prefix .. name .. `(` in
-- the reference must name a function that exists.
local rill = require "rill"

local SOURCE = debug.getinfo(1, "S").source:sub(2)
local ROOT = SOURCE:match("^(.*)/spec/[^/]*$") or "."

local function read(path)
  local f = assert(io.open(ROOT .. "/" .. path, "rb"))
  local text = f:read("*a")
  f:close()
  return text
end

-- The code in the reference: fenced blocks and `inline` spans, so that
-- prose cannot count as a mention by accident.
local function code_of(md)
  local parts = {}
  md = md:gsub("\n```[^\n]*\n(.-)\n```", function(block)
    parts[#parts + 1] = block
    return "\n"
  end)
  for span in md:gmatch("`([^`]+)`") do parts[#parts + 1] = span end
  return "\n" .. table.concat(parts, "\n") .. "\n"
end

local REF = code_of(read("lua/README.md"))

local function escape(s) return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0")) end

local function mentions(prefix, name, is_function)
  local p = "%f[%w_.:]" .. escape(prefix) .. escape(name)
  if is_function then return REF:find(p .. "[%({\"]") ~= nil end
  return REF:find(p .. "[^%w_]") ~= nil
end

local function public(name) return type(name) == "string" and name:sub(1, 1) ~= "_" end

-- What the walk found: kind → {name → "function" | "value"}
local found = {}

local function add(kind, name, value)
  if not public(name) then return end
  found[kind] = found[kind] or {}
  found[kind][name] = type(value) == "function" and "function" or "value"
end

-- A table's own entries (a module, a methods table).
local function walk_table(kind, t, skip)
  for k, v in pairs(t) do
    if not (skip and skip[k]) then add(kind, k, v) end
  end
end

-- The methods an object has through its metatable: __index as a table (and
-- the tables it falls back to), or as a function whose upvalues hold them.
local rill_stream_methods = require("rill.core").stream_methods

local function walk_methods(kind, obj)
  local mt = assert(getmetatable(obj), kind .. " has no metatable")
  local seen = {}
  local function walk_index(idx)
    if seen[idx] then return end
    seen[idx] = true
    if type(idx) == "table" then
      for k, v in pairs(idx) do
        if type(v) == "function" and public(k) then add(kind, k, v) end
      end
      local imt = getmetatable(idx)
      if imt and imt.__index then walk_index(imt.__index) end
    end
  end
  if type(mt.__index) == "table" then walk_index(mt.__index) end
  if type(mt.__index) == "function" then
    -- methods tables among its upvalues (named as classes: Request, Part),
    -- and the stream methods the object answers to
    for i = 1, 20 do
      local name, v = debug.getupvalue(mt.__index, i)
      if not name then break end
      if type(v) == "table" and name:match("^%u%l") then walk_index(v) end
    end
    for k in pairs(rill_stream_methods) do
      if public(k) and type(obj[k]) == "function" then add(kind, k, obj[k]) end
    end
  end
  return mt
end

-- Values of the object itself (fields set when it is made).
local function walk_fields(kind, obj, skip)
  for k, v in pairs(obj) do
    if not (skip and skip[k]) and type(v) ~= "function" then add(kind, k, v) end
  end
end

-- prefix for each kind; the reverse check looks for these in the text.
local KINDS = {
  rill = "rill.", http = "rill.http.", websocket = "rill.websocket.",
  proxy = "rill.proxy.", json = "rill.json.", path = "rill.path.", cookie = "rill.cookie.",
  middleware = "rill.middleware.", test = "rill.test.", form = "rill.form.",
  router = "app:", request = "req:", request_field = "req.", response = "res:",
  response_field = "res.", stream = "s:", listener = "l:", timer = "t:",
  thread = "th:", process = "p:", process_field = "p.", websocket_obj = "ws:",
  message = "msg:", message_field = "msg.", ws_writer = "wr:",
  client_response = "cres.", body = "body:", sse = "w:", part = "part:",
  part_field = "part.", error_object = "e.", test_client = "c:", test_client_field = "c.",
  test_response = "tres:", test_response_field = "tres.", fs = "rill.fs.", file = "f:",
  shared = "rill.shared.", dict = "dict:", dict_field = "dict.", channel = "ch:",
  channel_field = "ch.", subscription = "sub:",
  metrics = "rill.metrics.",
  pool = "rill.pool.", pool_object = "conns:",
  redis = "rill.redis.", redis_client = "r:", redis_sub = "rs:", redis_sub_field = "rs.",
  pg = "rill.pg.", pg_conn = "conn:", pg_copy_out = "cout:", pg_copy_in = "cin:",
  pg_notifications = "ns:",
}

describe("lua/README.md", function()
  local sub = {"http", "websocket", "proxy", "json", "cookie", "middleware", "path"}

  it("covers every public name of rill.* and of the objects it makes", function()
    local stop = {}
    local function finally_stop(x) stop[#stop + 1] = x return x end
    finally(function() for _, x in ipairs(stop) do x:close() end end)

    -- modules
    walk_table("rill", rill)
    for _, m in ipairs(sub) do add("rill", m, rill[m]) end
    add("rill", "router", rill.router)
    for _, m in ipairs(sub) do
      if m ~= "middleware" then walk_table(m, rill[m], {Headers = true, Request = true,
        Response = true}) end
    end
    -- rill.middleware loads each middleware when first named: the names are
    -- those its module lists.
    local names = read("lua/rill/middleware/init.lua"):match("local NAMES = (%b{})")
    for name in names:gmatch("([%w_]+) = true") do
      assert.is_function(rill.middleware[name], name)
      add("middleware", name, rill.middleware[name])
    end
    walk_table("test", require "rill.test")
    walk_table("form", require "rill.form")
    add("rill", "fs", rill.fs)
    walk_table("fs", rill.fs)
    add("rill", "shared", rill.shared)
    walk_table("shared", rill.shared)
    local dict = rill.shared.dict("api_reference")
    walk_methods("dict", dict)
    walk_fields("dict_field", dict)
    local ch = rill.shared.channel("api_reference")
    walk_methods("channel", ch)
    walk_fields("channel_field", ch)
    local sub = ch:subscribe()
    walk_methods("subscription", sub)
    sub:close()
    add("rill", "metrics", rill.metrics)
    walk_table("metrics", rill.metrics)
    local f = assert(rill.fs.open(SOURCE))
    walk_methods("file", f)
    f:close()
    add("rill", "pool", rill.pool)
    walk_table("pool", rill.pool)
    walk_methods("pool_object", rill.pool.new())

    -- rill.pg and its objects (their methods; a server is not needed)
    add("rill", "pg", rill.pg)
    walk_table("pg", rill.pg)
    walk_methods("pg_conn", setmetatable({}, rill.pg._Conn))
    walk_methods("pg_copy_out", setmetatable({}, rill.pg._CopyOut))
    walk_methods("pg_copy_in", setmetatable({}, rill.pg._CopyIn))
    walk_methods("pg_notifications", setmetatable({}, rill.pg._Notifications))

    -- a thread, a timer, a child process
    local th = rill.spawn(function() return 1 end)
    walk_methods("thread", th)
    rill.wait(th)
    local t = rill.timer(60000, function() end)
    walk_methods("timer", t)
    t:cancel()
    local p = assert(rill.exec{"true", stdout = "pipe"})
    walk_methods("process", p)
    walk_fields("process_field", p)
    p:wait()

    -- a raw listener and a connected socket
    local l = finally_stop(assert(rill.listen{host = "127.0.0.1", port = 0,
      handler = function(sock) sock:read_all() sock:close() end}))
    walk_methods("listener", l)
    local s = assert(rill.connect("127.0.0.1", l:port(), {timeout = 5000}))
    walk_methods("stream", s)
    s:close()

    -- an HTTP server with a router: a request, a response, an SSE writer, a
    -- WebSocket and its messages, a multipart part
    local app = rill.router()
    walk_methods("router", app)
    local seen = {}
    app:get("/objects", function(req, res)
      walk_methods("request", req)
      -- a request's fields are computed by the getters its __index holds
      local idx = getmetatable(req).__index
      for i = 1, 20 do
        local name, v = debug.getupvalue(idx, i)
        if not name then break end
        if name == "getters" then for k in pairs(v) do add("request_field", k, 0) end end
      end
      for k, v in pairs(req) do if type(v) ~= "function" then add("request_field", k, v) end end
      walk_methods("response", res)
      walk_fields("response_field", res)
      seen.req = true
      res:send("ok")
    end)
    app:get("/sse", function(req, res)
      local w = res:sse()
      walk_methods("sse", w)
      w:send("x")
      w:close()
    end)
    app:post("/parts", function(req, res)
      for part in req:parts() do
        walk_methods("part", part)
        for k, v in pairs(part) do
          if type(v) == "function" then add("part", k, v) else add("part_field", k, v) end
        end
        part:value()
      end
      res:send("ok")
    end)
    app:get("/abort", function() rill.http.abort(418) end)
    app:on_error(function(e, req, res)
      if type(e) == "table" then walk_fields("error_object", e) end
      res:status(418):send("e")
    end)
    app:websocket("/ws", function(ws)
      local msg = ws:receive()
      if msg then ws:send(msg:read_all()) end
      ws:receive()
    end)
    local srv = finally_stop(assert(rill.http.listen{host = "127.0.0.1", port = 0, handler = app}))
    local base = "http://127.0.0.1:" .. srv:port()

    local r = assert(rill.http.request{url = base .. "/objects"})
    assert.equal(200, r.status)
    for k, v in pairs(r) do add("client_response", k, v) end
    walk_methods("body", r.body)
    assert.equal("ok", r.body:read_all())
    assert.is_true(seen.req)
    r = assert(rill.http.request{url = base .. "/sse"})
    r.body:read_all()
    r = assert(rill.http.request{url = base .. "/abort"})
    assert.equal(418, r.status)
    r.body:read_all()
    r = assert(rill.http.request{url = base .. "/parts", method = "POST",
      headers = {["Content-Type"] = "multipart/form-data; boundary=XX"},
      body = "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--XX--\r\n"})
    assert.equal("ok", r.body:read_all())

    local ws = assert(rill.websocket.connect("ws://127.0.0.1:" .. srv:port() .. "/ws"))
    walk_methods("websocket_obj", ws)
    local wr = ws:send_stream("text")
    walk_methods("ws_writer", wr)
    wr:write("hi")
    wr:close()
    local msg = assert(ws:receive())
    walk_methods("message", msg)
    walk_fields("message_field", msg)
    assert.equal("hi", msg:read_all())
    ws:close(1000)

    -- a test client and its response
    local c = assert(rill.test.client(app))
    walk_methods("test_client", c)
    walk_fields("test_client_field", c)
    local tres = assert(c:get("/objects"))
    walk_methods("test_response", tres)
    walk_fields("test_response_field", tres)
    c:close()

    -- a Redis client and a subscription, from a server that confirms one
    -- SUBSCRIBE (connecting sends nothing without a password, db or RESP3)
    add("rill", "redis", rill.redis)
    walk_table("redis", rill.redis)
    local fake = finally_stop(assert(rill.listen{host = "127.0.0.1", port = 0,
      handler = function(sock)
        if sock:read_until("\r\n") then
          sock:write("*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n")
        end
        sock:read_all()
      end}))
    local rc = assert(rill.redis.connect{port = fake:port(), pool = false})
    walk_methods("redis_client", rc)
    local sub = assert(rc:subscribe("x"))
    walk_methods("redis_sub", sub)
    walk_fields("redis_sub_field", sub)
    add("redis_sub_field", "err", "")
    sub:close()

    -- every name found is mentioned
    local missing = {}
    for kind, names in pairs(found) do
      local prefix = assert(KINDS[kind], kind)
      for name, what in pairs(names) do
        if not mentions(prefix, name, what == "function") then
          missing[#missing + 1] = prefix .. name .. (what == "function" and "(" or "")
        end
      end
    end
    table.sort(missing)
    assert(#missing == 0, "lua/README.md does not mention: " .. table.concat(missing, " "))

    -- and every function the reference names exists
    local stale = {}
    for kind, prefix in pairs(KINDS) do
      for name in REF:gmatch("%f[%w_.:]" .. escape(prefix) .. "([%a_][%w_]*)%(") do
        if not (found[kind] and found[kind][name] == "function") then
          stale[#stale + 1] = prefix .. name .. "("
        end
      end
    end
    table.sort(stale)
    assert(#stale == 0, "lua/README.md names what does not exist: " .. table.concat(stale, " "))
  end)
end)
