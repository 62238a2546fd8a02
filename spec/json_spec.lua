-- rill.json: lua-cjson loaded in every way rill runs Lua, encode and decode
-- with their limits, req:json and res:json over real requests from curl, and
-- the router's {json = true} option.
local rill = require "rill"
local helper = require "spec.helper"
local json = require "rill.json"

local url = helper.url

-- A file with text in it; its name.
local function tmpfile(text, suffix)
  local name = os.tmpname()
  os.remove(name)
  name = name .. (suffix or "")
  local f = assert(io.open(name, "w"))
  f:write(text)
  f:close()
  return name
end

-- curl with a JSON body (or the given Content-Type): status, body, content type.
local function post(port, path, body, ctype)
  local code, out, err = helper.run({"curl", "-sS", "--max-time", "60", "-o", "-", "-w",
    "\n%{http_code} %{content_type}", "-H", "Content-Type: " .. (ctype or "application/json"),
    "--data-binary", "@-", url(port, path)}, {input = body})
  assert.equal(0, code, err)
  local text, status, ct = out:match("^(.*)\n(%d+) (.*)$")
  return tonumber(status), text, ct
end

-- The message of the error fn raises.
local function raised(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "no error raised")
  return tostring(err)
end

describe("rill.json", function()
  describe("lua-cjson", function()
    it("loads under rill test", function()
      local cjson = require "cjson"
      assert.equal("2.1.0", cjson._VERSION)
      assert.equal("[]", rill.json.encode(rill.json.empty_array))
    end)

    it("loads under rill run", function()
      local script = tmpfile([[
local rill = require "rill"
io.write(rill.json.encode({v = require("cjson")._VERSION, list = rill.json.empty_array}))
]], ".lua")
      local code, out, err = helper.run({helper.bin, "run", script})
      os.remove(script)
      assert.equal(0, code, err)
      assert.same({v = "2.1.0", list = {}}, json.decode(out))
      assert.truthy(out:find('"list":[]', 1, true), out)
    end)

    it("loads under rill serve", function()
      local app = tmpfile([[
return function(req, res) res:json({v = require("cjson")._VERSION}) end
]], ".lua")
      local srv = helper.serve(app)
      local code, out = helper.curl(url(srv.port, "/"))
      assert.equal(0, srv.stop())
      os.remove(app)
      assert.equal(0, code)
      assert.equal('{"v":"2.1.0"}', out)
    end)

    it("loads in a runtime embedded in a C program (librill.so)", function()
      local build = helper.bin:match("^(.*)/[^/]+$")
      local dir = os.tmpname()
      os.remove(dir)
      assert(os.execute("mkdir -p " .. dir) == 0)
      local src = dir .. "/host.c"
      local f = assert(io.open(src, "w"))
      f:write([[
#include <stdio.h>
#include <rill.h>
static const char app[] =
    "local json = require 'rill.json'\n"
    "return function(req, res) res:json({v = require('cjson')._VERSION}) end\n";
int main(void) {
  rill_t *r;
  int err = rill_new(&r, NULL);
  if (err == 0) err = rill_listen(r, "127.0.0.1", 0, NULL);
  if (err == 0) err = rill_load_string(r, app, "json-host");
  if (err == 0) err = rill_start(r);
  if (err) {
    fprintf(stderr, "host: %s\n", rill_strerror(err));
    return 1;
  }
  printf("127.0.0.1:%d\n", rill_port(r, 0));
  fflush(stdout);
  return rill_run(r);
}
]])
      f:close()
      local exe = dir .. "/host"
      local cc = ("cc %s -I core/include $(pkg-config --cflags luajit libuv) -L %s " ..
        "-Wl,-rpath,$(cd %s && pwd) -lrill -o %s"):format(src, build, build, exe)
      if helper.sanitized then cc = cc .. " -fsanitize=address,undefined" end
      local code, _, err = helper.run({"sh", "-c", cc}, {timeout = 120000})
      assert.equal(0, code, err)
      local host = assert(rill.exec{exe, stdout = "pipe", stderr = "pipe"})
      host.stdout:settimeout(10000)
      local line = host.stdout:read_until("\n")
      local port = line and tonumber(line:match("127%.0%.0%.1:(%d+)"))
      local out
      if port then code, out = helper.curl(url(port, "/")) end
      host:kill(9)
      host:wait(10000)
      os.execute("rm -rf " .. dir)
      assert.is_truthy(port, "the host did not start: " .. tostring(line) .. " " ..
        tostring(host.stderr:read_all()))
      assert.equal(0, code)
      assert.equal('{"v":"2.1.0"}', out)
    end)
  end)

  describe("encode and decode", function()
    it("round-trip objects, arrays, strings, numbers and booleans", function()
      local v = {name = "caf\195\169 \"quoted\" \\ /path\n", list = {1, 2.5, -3e-7, true, false},
        nested = {deep = {deeper = {"x"}}}, count = 99999999999999}
      assert.same(v, json.decode(json.encode(v)))
      assert.equal('[1,"two",{"three":3}]', json.encode({1, "two", {three = 3}}))
      assert.same({1, "two", {three = 3}}, json.decode('[1,"two",{"three":3}]'))
      assert.equal('"a"', json.encode("a"))
      assert.equal("12", json.encode(12))
      assert.equal(12, json.decode(" 12 "))
    end)

    it("writes integers up to 14 digits exactly (cjson 2.1.0's precision)", function()
      assert.equal("99999999999999", json.encode(99999999999999))
      assert.equal("-1234567890", json.encode(-1234567890))
    end)

    it("writes / as it is, and a backslash before it escaped", function()
      assert.equal('"a/b"', json.encode("a/b"))
      assert.equal('"c\\\\/d"', json.encode("c\\/d"))
      assert.equal("c\\/d", json.decode(json.encode("c\\/d")))
      assert.equal('["\\\\","/"]', json.encode({"\\", "/"}))
    end)

    it("decodes null to json.null and encodes json.null as null", function()
      local v = json.decode('{"a":null,"b":[1,null,3]}')
      assert.equal(json.null, v.a)
      assert.equal(json.null, v.b[2])
      assert.equal(3, v.b[3])
      assert.equal('[null,1]', json.encode({json.null, 1}))
      assert.equal("null", json.encode(json.null))
    end)

    it("encodes json.empty_array as [] and an empty table as {}", function()
      assert.equal("[]", json.encode(json.empty_array))
      assert.equal("{}", json.encode({}))
      assert.equal('{"items":[]}', json.encode({items = json.empty_array}))
      assert.equal('[[],[[]],{}]', json.encode({json.empty_array, {json.empty_array}, {}}))
    end)

    it("keeps json.empty_array the same value when the module loads again (a reload)",
      function()
      local old = json.empty_array
      package.loaded["rill.json"] = nil
      local again = require "rill.json"
      assert.is_not.equal(json, again)
      assert.equal(old, again.empty_array)
      assert.equal('{"a":[]}', again.encode({a = old}))
    end)

    it("returns nil and an error for text that is not JSON, never raising", function()
      for _, text in ipairs({"", "{", "[1,]", "{'a':1}", "{\"a\" 1}", "nul", "NaN",
        "Infinity", "0x10", "[1] x", "\"abc"}) do
        local v, err = json.decode(text)
        assert.is_nil(v, text)
        assert.matches("^invalid json: ", err, 1, false)
      end
      local _, err = json.decode("[1,]")
      assert.equal("invalid json: Expected value but found T_ARR_END at character 4", err)
    end)

    it("limits nesting (128 levels unless told) and size (1 MiB unless told)", function()
      local ok = string.rep("[", 128) .. string.rep("]", 128)
      assert.is_table(json.decode(ok))
      local v, err = json.decode("[" .. ok .. "]")
      assert.is_nil(v)
      assert.equal("too deep: more than 128 levels of nesting at character 129", err)
      v, err = json.decode('{"a":{"b":{"c":1}}}', {max_depth = 2})
      assert.is_nil(v)
      assert.matches("^too deep", err)
      assert.same({a = {b = {c = 1}}}, json.decode('{"a":{"b":{"c":1}}}', {max_depth = 3}))
      -- the depth given to one call is not kept for the next
      assert.is_table(json.decode(ok))

      local big = '"' .. string.rep("x", 1048576 - 2) .. '"'
      assert.equal(1048576 - 2, #json.decode(big))
      v, err = json.decode(big .. " ")
      assert.is_nil(v)
      assert.equal("too large", err)
      v, err = json.decode('"12345"', {max_size = 6})
      assert.is_nil(v)
      assert.equal("too large", err)
      assert.equal("12345", json.decode('"12345"', {max_size = 7}))
    end)

    it("raises at the caller's line for values JSON cannot hold and for bad arguments",
      function()
      assert.matches("json_spec%.lua:%d+: rill%.json%.encode: Cannot serialise function",
        raised(function() json.encode({f = print}) end))
      assert.matches("json_spec%.lua:%d+: rill%.json%.encode: Cannot serialise number",
        raised(function() json.encode(0 / 0) end))
      local t = {}
      t.self = t
      assert.matches("json_spec%.lua:%d+: rill%.json%.encode: .*nesting",
        raised(function() json.encode(t) end))
      assert.matches("json_spec%.lua:%d+: rill%.json%.decode: text must be a string, got number",
        raised(function() json.decode(42) end))
      assert.matches("json_spec%.lua:%d+: rill%.json%.decode: max_depth must be a positive " ..
        "integer, got 0", raised(function() json.decode("1", {max_depth = 0}) end))
    end)

    it("encodes a sparse table as an object rather than failing", function()
      assert.same({["1000"] = "x"}, json.decode(json.encode({[1000] = "x"})))
      assert.equal("[1,null,3]", json.encode({1, nil, 3}))
    end)
  end)

  describe("requests and responses", function()
    local l
    after_each(function()
      if l then l:close() end
      l = nil
    end)

    -- A server whose handler answers {got = req:json(limit)} or {err = err}.
    local function echo_server(limit)
      local port
      l, port = helper.listen(function(req, res)
        local v, err = req:json(limit)
        local again = req:json(limit)
        if v ~= nil then
          assert(again == v, "a second req:json() gave another value")
          return res:json({got = v})
        end
        res:json({err = err}, 422)
      end)
      return port
    end

    it("req:json decodes a Content-Length body", function()
      local port = echo_server()
      local status, body, ct = post(port, "/", '{"title":"milk","done":false,"tags":["a"]}')
      assert.equal(200, status)
      assert.equal("application/json", ct)
      assert.same({got = {title = "milk", done = false, tags = {"a"}}}, json.decode(body))
    end)

    it("req:json decodes a chunked body", function()
      local port = echo_server()
      local big = {}
      for i = 1, 5000 do big[i] = {id = i, name = "item " .. i} end
      local code, out, err = helper.run({"curl", "-sS", "-H", "Content-Type: application/json",
        "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", url(port, "/")},
        {input = json.encode(big)})
      assert.equal(0, code, err)
      local v = json.decode(out)
      assert.equal(5000, #v.got)
      assert.same({id = 4321, name = "item 4321"}, v.got[4321])
    end)

    it("req:json(limit) fails with too large past limit bytes, chunked or not", function()
      local port = echo_server(64)
      local body = json.encode({pad = string.rep("x", 100)})
      local status, out = post(port, "/", body)
      assert.equal(422, status)
      assert.same({err = "too large"}, json.decode(out))
      local code, raw = helper.run({"curl", "-sS", "-w", " %{http_code}", "-H",
        "Content-Type: application/json", "-H", "Transfer-Encoding: chunked",
        "--data-binary", "@-", url(port, "/")}, {input = body})
      assert.equal(0, code)
      assert.equal('{"err":"too large"} 422', raw)
      status, out = post(port, "/", '{"a":1}')
      assert.equal(200, status)
      assert.same({got = {a = 1}}, json.decode(out))
    end)

    it("req:json refuses a body that does not say it is JSON", function()
      local port = echo_server()
      local status, out = post(port, "/", '{"a":1}', "application/x-www-form-urlencoded")
      assert.equal(422, status)
      assert.same({err = 'unsupported media type: "application/x-www-form-urlencoded"'},
        json.decode(out))
      local code, raw = helper.run({"curl", "-sS", "-H", "Content-Type:", "--data-binary",
        '{"a":1}', url(port, "/")})
      assert.equal(0, code)
      assert.same({err = "unsupported media type: none"}, json.decode(raw))
      for _, ct in ipairs({"application/json; charset=utf-8", "Application/JSON",
        "application/merge-patch+json"}) do
        status, out = post(port, "/", '{"a":1}', ct)
        assert.equal(200, status, ct)
        assert.same({got = {a = 1}}, json.decode(out))
      end
    end)

    it("req:json returns nil and an error for a body that is not JSON", function()
      local port = echo_server()
      local status, out = post(port, "/", '{"a":')
      assert.equal(422, status)
      assert.equal("invalid json: Expected value but found T_END at character 6",
        json.decode(out).err)
    end)

    it("res:json sends the value with its status and application/json", function()
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/problem" then
          res:header("Content-Type", "application/problem+json")
          return res:json({title = "nope"}, 409)
        end
        if req.path == "/bad" then
          local ok, err = pcall(res.json, res, {f = print})
          return res:json({raised = err, ok = ok}, 500)
        end
        res:json({id = 7, tags = json.empty_array, none = json.null}, 201)
      end)
      local code, out = helper.curl("-i", url(port, "/"))
      assert.equal(0, code)
      assert.matches("^HTTP/1%.1 201 Created\r\n", out)
      assert.matches("\r\nContent%-Type: application/json\r\n", out)
      local body = out:match("\r\n\r\n(.*)$")
      assert.matches("\r\nContent%-Length: " .. #body .. "\r\n", out)
      assert.same({id = 7, tags = {}, none = json.null}, json.decode(body))
      assert.matches('"tags":%[%]', body)

      code, out = helper.curl("-i", url(port, "/problem"))
      assert.matches("^HTTP/1%.1 409 ", out)
      assert.matches("\r\nContent%-Type: application/problem%+json\r\n", out)
      assert.is_nil(out:find("application/json", 1, true))

      code, out = helper.curl(url(port, "/bad"))
      local v = json.decode(out)
      assert.is_false(v.ok)
      assert.matches("res:json: Cannot serialise function", v.raised)
    end)
  end)

  describe("the router's json option", function()
    local l, port, ran
    before_each(function()
      ran = 0
      local app = rill.router()
      app:post("/todos", {json = true}, function(req, res)
        ran = ran + 1
        local todo = req:json()
        res:json({title = todo.title, done = todo.done or false}, 201)
      end)
      app:put("/small", {json = {limit = 16}}, function(req, res)
        ran = ran + 1
        res:json(req:json())
      end)
      l, port = helper.listen(app)
    end)
    after_each(function() l:close() end)

    it("passes good JSON to the handler", function()
      local status, body, ct = post(port, "/todos", '{"title":"milk"}')
      assert.equal(201, status)
      assert.equal("application/json", ct)
      assert.same({title = "milk", done = false}, json.decode(body))
      assert.equal(1, ran)
    end)

    it("answers 400 with the reason to a body that is not JSON, without the handler",
      function()
      local status, body, ct = post(port, "/todos", '{"title": milk}')
      assert.equal(400, status)
      assert.equal("application/json", ct)
      assert.matches("^invalid json: ", json.decode(body).error)
      status, body = post(port, "/todos", string.rep("[", 200) .. string.rep("]", 200))
      assert.equal(400, status)
      assert.matches("^too deep", json.decode(body).error)
      assert.equal(0, ran)
    end)

    it("answers 415 to another media type and 413 past its limit", function()
      local status, body = post(port, "/todos", '{"title":"milk"}', "text/plain")
      assert.equal(415, status)
      assert.same({error = 'unsupported media type: "text/plain"'}, json.decode(body))
      local code, out = helper.run({"curl", "-sS", "-X", "PUT", "-w", " %{http_code}", "-H",
        "Content-Type: application/json", "--data-binary", '{"a":"0123456789abcdef"}',
        url(port, "/small")})
      assert.equal(0, code)
      assert.equal('{"error":"too large"} 413', out)
      code, out = helper.run({"curl", "-sS", "-X", "PUT", "-H",
        "Content-Type: application/json", "--data-binary", '{"a":1}', url(port, "/small")})
      assert.equal('{"a":1}', out)
      assert.equal(1, ran)
    end)

    it("refuses an unknown route option and a bad json option at the caller's line",
      function()
      local app = rill.router()
      assert.matches("json_spec%.lua:%d+: unknown route option jsn",
        raised(function() app:post("/x", {jsn = true}, function() end) end))
      assert.matches("json_spec%.lua:%d+: route option json must be true or " ..
        "{limit = bytes}, got yes",
        raised(function() app:post("/x", {json = "yes"}, function() end) end))
    end)
  end)
end)
