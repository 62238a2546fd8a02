-- rill's Lua modules as librill carries them (core/lua_modules.c): LuaJIT
-- bytecode compiled into the library, found before package.path; the
-- RILL_LUA_DIR override that loads them from disk; and a host linked
-- statically (pkg-config --static) that runs with no share/rill installed.
local rill = require "rill"
local helper = require "spec.helper"

-- as an absolute path, for children run in other directories
local bin = helper.bin:sub(1, 1) == "/" and helper.bin or os.getenv("PWD") .. "/" .. helper.bin
local build = bin:match("^(.*)/[^/]+$")

-- A fresh directory; removed by the caller with rm_rf.
local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  return dir
end

local function rm_rf(dir) os.execute("rm -rf " .. dir) end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- The environment of a child: PATH, plus extra (RILL_LUA_DIR and
-- RILL_LUA_PATH are left out unless extra sets them).
local function env(extra)
  local e = {PATH = os.getenv("PATH")}
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function get(port, path)
  local status, _, body = helper.fetch(helper.url(port, path))
  return status, body
end

describe("rill's Lua modules", function()
  local dir
  before_each(function() dir = tmpdir() end)
  after_each(function() rm_rf(dir) end)

  it("are inside the binary: a copy of rill with no lua/ beside it runs rill.router " ..
    "and rill.json", function()
      assert(os.execute(("cp %s %s/rill"):format(bin, dir)) == 0)
      write(dir .. "/script.lua", [[
        local router = require("rill.router")
        print(type(router.new), require("rill.json").encode({1, 2}))
        print(debug.getinfo(router.new, "S").source)
      ]])
      local code, out, err = helper.run({dir .. "/rill", "run", "script.lua"},
        {cwd = dir, env = env()})
      assert.equal(0, code, err)
      -- the chunk names are the modules' paths under lua/
      assert.equal("function\t[1,2]\n@rill/router.lua\n", out)
    end)

  it("name their file and line in a handler error's traceback", function()
    write(dir .. "/app.lua", [[
      local app = require("rill.router").new()
      app:get("/", function(req, res) error("failed on purpose") end)
      return app
    ]])
    local srv = helper.start({"serve", dir .. "/app.lua", "--listen", "127.0.0.1:0",
      "--workers", "1"})
    assert.equal(500, (get(srv.port, "/")))
    local trace = srv.wait_log("(stack traceback:.*)")
    srv.stop()
    assert.matches("app%.lua:2: failed on purpose", srv.logtext())
    -- rill's own frames read rill/http.lua:123:, not a build machine's path
    assert.matches("\trill/http%.lua:%d+: in function", srv.logtext())
    assert.is_truthy(trace)
  end)

  it("leave Lua's usual message for a module that is neither embedded nor on disk",
    function()
      write(dir .. "/script.lua", 'require "rill.no_such_module"\n')
      local code, _, err = helper.run({bin, "run", "script.lua"},
        {cwd = dir, env = env()})
      assert.is_not.equal(0, code)
      assert.matches("module 'rill.no_such_module' not found:", err, 1, true)
      assert.matches("no module 'rill.no_such_module' in librill", err, 1, true)
      assert.matches("no file './rill/no_such_module.lua'", err, 1, true)
    end)

  it("come from RILL_LUA_DIR when it is set: a copy of lua/ with a module edited is " ..
    "what runs", function()
      assert(os.execute(("cp -r lua %s/lua"):format(dir)) == 0)
      local path = dir .. "/lua/rill/json.lua"
      local f = assert(io.open(path))
      local src = f:read("*a")
      f:close()
      src = src:gsub("\nreturn json\n$", "\njson.edited = 'from RILL_LUA_DIR'\nreturn json\n")
      assert.matches("from RILL_LUA_DIR", src)
      write(path, src)
      write(dir .. "/app.lua", [[
        local json = require "rill.json"
        return function(req, res) res:send(tostring(json.edited)) end
      ]])
      local srv = helper.start({"serve", dir .. "/app.lua", "--listen", "127.0.0.1:0",
        "--workers", "1"}, {RILL_LUA_DIR = dir .. "/lua"})
      local status, body = get(srv.port, "/")
      assert.equal(0, srv.stop())
      assert.equal(200, status)
      assert.equal("from RILL_LUA_DIR", body)
      -- without it, the embedded copy runs (the edit is not in it)
      srv = helper.start({"serve", dir .. "/app.lua", "--listen", "127.0.0.1:0",
        "--workers", "1"}, {RILL_LUA_DIR = ""})
      status, body = get(srv.port, "/")
      assert.equal(0, srv.stop())
      assert.equal("nil", body)
    end)
end)

describe("a host linked statically", function()
  local host_c = [[
#include <stdio.h>
#include <rill.h>

static const char app[] =
  "local app = require('rill.router').new()\n"
  "local json = require('rill.json')\n"
  "app:get('/hello/:name', function(req, res)\n"
  "  res:header('Content-Type', 'application/json')\n"
  "  res:send(json.encode({hello = req.params.name}))\n"
  "end)\n"
  "return app\n";

int main(void) {
  rill_t *r;
  int err = rill_new(&r, NULL);
  if (err == 0) err = rill_listen(r, "127.0.0.1", 0, NULL);
  if (err == 0) err = rill_load_string(r, app, "static-host");
  if (err == 0) err = rill_start(r);
  if (err) {
    fprintf(stderr, "static host: %s\n", rill_strerror(err));
    return 1;
  }
  printf("static host: listening on 127.0.0.1:%d\n", rill_port(r, 0));
  fflush(stdout);
  err = rill_run(r);
  rill_free(r);
  return err ? 1 : 0;
}
]]

  it("builds with pkg-config --static alone, needs no librill.so, and serves with no " ..
    "share/rill installed (rill.router and rill.json from the bytecode)", function()
      local prefix = tmpdir()
      local code, _, err = helper.run({"cmake", "--install", build, "--prefix", prefix},
        {timeout = 120000})
      assert.equal(0, code, err)
      write(prefix .. "/host.c", host_c)
      local exe = prefix .. "/host"
      local cc = ("cc %s/host.c $(pkg-config --static --cflags --libs rill) -o %s"):format(
        prefix, exe)
      if helper.sanitized then cc = cc .. " -fsanitize=address,undefined" end
      code, _, err = helper.run({"sh", "-c", cc}, {timeout = 120000,
        env = env{PKG_CONFIG_PATH = prefix .. "/lib/pkgconfig"}})
      assert.equal(0, code, err)
      local out
      code, out, err = helper.run({"readelf", "-d", exe})
      assert.equal(0, code, err)
      assert.is_nil(out:find("librill", 1, true), out)
      assert.is_nil(out:find("libluajit", 1, true), out)
      -- the Lua sources are installed (for reading, and for RILL_LUA_DIR);
      -- the host does not need them, nor does the installed rill
      assert.is_truthy(io.open(prefix .. "/share/rill/lua/rill/init.lua"))
      assert(os.execute(("mv %s/share/rill %s/share/gone"):format(prefix, prefix)) == 0)
      write(prefix .. "/script.lua", "print(require('rill.json').encode({ok = true}))\n")
      code, out, err = helper.run({prefix .. "/bin/rill", "run", prefix .. "/script.lua"},
        {env = env()})
      assert.equal(0, code, err)
      assert.equal('{"ok":true}\n', out)

      local host = assert(rill.exec{exe, stdout = "pipe", stderr = "pipe", cwd = "/",
        env = env()})
      host.stdout:settimeout(10000)
      local line = assert(host.stdout:read_until("\n"))
      local port = tonumber(line:match("127%.0%.0%.1:(%d+)"))
      assert.is_truthy(port, line)
      local status, headers, body = helper.fetch(helper.url(port, "/hello/world"))
      host:kill(15)
      host:wait(10000)
      rm_rf(prefix)
      assert.equal(200, status)
      assert.equal("application/json", headers["content-type"])
      assert.equal('{"hello":"world"}', body)
    end)
end)
