-- The runtime: workers, hot reload with nothing dropped, graceful stops, and
-- embedding librill in a C program.
local rill = require "rill"
local helper = require "spec.helper"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A fresh directory with an app and a module it loads; returns its paths.
local function app_dir(message)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  write(dir .. "/message.lua", ("return {text = %q}\n"):format(message))
  write(dir .. "/app.lua", [[
local rill = require "rill"
local message = require "message"
local app = rill.router()
app.state = {hits = 0}
function app.on_reload(old) if old then app.state = old end end
app:get("/", function(req, res) res:send(message.text) end)
app:get("/worker", function(req, res)
  res:header("Connection", "close")
  res:send(tostring(rill.worker_id()))
end)
app:get("/stats", function(req, res)
  local s = rill.stats()
  res:send(("worker %d requests %d"):format(s.worker, s.requests))
end)
app:get("/hit", function(req, res)
  app.state.hits = app.state.hits + 1
  res:send(tostring(app.state.hits))
end)
app:get("/slow", function(req, res)
  for i = 1, 30 do
    res:write(("chunk %d\n"):format(i))
    rill.sleep(100)
  end
end)
app:get("/reload", function(req, res)
  rill.reload()
  res:send("reloading")
end)
app:websocket("/ws", function(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end
    ws:send(message.text .. ": " .. msg:read_all())
  end
end)
return app
]])
  return dir, dir .. "/app.lua", dir .. "/message.lua"
end

local function get(port, path)
  local _, out = helper.curl(("http://127.0.0.1:%d%s"):format(port, path or "/"))
  return out
end

-- Polls until GET path answers want (or 10 s pass); returns the last answer.
local function wait_for(port, path, want)
  local got
  for _ = 1, 200 do
    got = get(port, path)
    if got == want then return got end
    rill.sleep(50)
  end
  return got
end

describe("workers", function()
  it("--workers 2 serves from both workers, each with its own counters", function()
    local dir, app = app_dir("hello")
    local srv = helper.serve(app, {"--workers", "2"})
    local seen = {}
    for _ = 1, 60 do seen[get(srv.port, "/worker")] = true end
    assert.is_true(seen["0"], "worker 0 served nothing")
    assert.is_true(seen["1"], "worker 1 served nothing")
    -- each worker counts its own requests
    local counts = {}
    for _ = 1, 20 do
      local w, n = get(srv.port, "/stats"):match("^worker (%d) requests (%d+)$")
      assert.is_truthy(w)
      counts[w] = tonumber(n)
    end
    assert.is_truthy(counts["0"] or counts["1"])
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)
end)

describe("hot reload", function()
  it("switches answers under wrk load with no errors and no non-2xx responses", function()
    local dir, app = app_dir("version 0")
    local srv = helper.serve(app, {"--watch", "--workers", "2"})
    assert.equal("version 0", get(srv.port, "/"))
    local wrk = assert(rill.exec{"wrk", "-t1", "-c20", "-d5s",
      ("http://127.0.0.1:%d/"):format(srv.port), stdout = "pipe", stderr = "pipe"})
    local out = rill.spawn(function() return wrk.stdout:read_all(1e6) end)
    rill.sleep(300)
    for v = 1, 20 do
      write(app, (io.open(app):read("*a"):gsub("app:get%(\"/\".-\n", ("app:get(\"/\", function(req, res) res:send(\"version %d\") end)\n"):format(v), 1)))
      rill.sleep(200)
    end
    local code = wrk:wait()
    local _, report = rill.wait(out)
    assert.equal(0, code)
    assert.matches("requests in", report)
    assert.not_matches("Socket errors", report)
    assert.not_matches("Non%-2xx", report)
    assert.equal("version 20", wait_for(srv.port, "/", "version 20"))
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)

  it("reloads modules beside the app, and keeps the old app through a syntax error", function()
    local dir, app, message = app_dir("first")
    local srv = helper.serve(app, {"--watch", "--workers", "1"})
    assert.equal("first", get(srv.port, "/"))
    write(message, 'return {text = "second"}\n')
    assert.equal("second", wait_for(srv.port, "/", "second"))
    -- a syntax error: the old code goes on, and the log says where
    write(message, 'return {text = "third"\n')
    srv.wait_log("reload failed; the old app goes on")
    local line = srv.wait_log("message%.lua:(%d+): '}' expected")
    assert.equal("2", line)
    assert.equal("second", get(srv.port, "/"))
    -- the next good edit is picked up
    write(message, 'return {text = "fourth"}\n')
    assert.equal("fourth", wait_for(srv.port, "/", "fourth"))
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)

  it("with --watch, serves 503 after a failed first load and the app once an edit loads",
    function()
    local dir, app, message = app_dir("fixed")
    local good = io.open(app):read("*a")
    write(app, "local x = \n" .. good) -- a syntax error
    local srv = helper.serve(app, {"--watch", "--workers", "1"})
    srv.wait_log("the app failed to load; answering 503 until an edit loads")
    local _, out = helper.curl("-w", "%{http_code}", ("http://127.0.0.1:%d/"):format(srv.port))
    assert.matches("failed to load", out)
    assert.matches("503$", out)
    write(app, good)
    assert.equal("fixed", wait_for(srv.port, "/", "fixed"))
    -- without --watch, a broken app is an error at once
    write(app, "local x = \n" .. good)
    local code, _, err = helper.run({helper.bin, "serve", app, "--listen", "127.0.0.1:0"})
    assert.equal(1, code)
    assert.matches("app%.lua:%d+:", err)
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)

  it("lets a WebSocket and a slow response that started before a reload finish on it",
    function()
      local dir, app, message = app_dir("old")
      local srv = helper.serve(app, {"--workers", "1"})
      local ws = assert(helper.ws(("ws://127.0.0.1:%d/ws"):format(srv.port)))
      ws:send("a")
      assert.equal("old: a", ws:receive():read_all())
      local s = helper.connect(srv.port)
      s:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
      local slow = rill.spawn(function() return select(3, helper.read_response(s)) end)
      rill.sleep(300)
      write(message, 'return {text = "new"}\n')
      assert.equal("reloading", get(srv.port, "/reload")) -- rill.reload() from Lua
      assert.equal("new", wait_for(srv.port, "/", "new"))
      -- the WebSocket still runs the old handler, and still echoes
      ws:send("b")
      assert.equal("old: b", ws:receive():read_all())
      local ok, body = rill.wait(slow)
      assert.is_true(ok)
      local lines = {}
      for i = 1, 30 do lines[i] = ("chunk %d\n"):format(i) end
      assert.equal(table.concat(lines), body)
      ws:close()
      s:close()
      assert.equal(0, srv.stop())
      os.execute("rm -rf " .. dir)
    end)

  it("hands state to the new app with on_reload, and reloads on SIGHUP", function()
    local dir, app, message = app_dir("x")
    local srv = helper.serve(app, {"--workers", "1"})
    assert.equal("1", get(srv.port, "/hit"))
    assert.equal("2", get(srv.port, "/hit"))
    write(message, 'return {text = "after hup"}\n')
    srv.proc:kill(1) -- SIGHUP
    assert.equal("after hup", wait_for(srv.port, "/", "after hup"))
    assert.equal("3", get(srv.port, "/hit"))
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)
end)

describe("graceful stop", function()
  it("finishes a 3-second streaming response after SIGTERM, then exits 0", function()
    local dir, app = app_dir("bye")
    local srv = helper.serve(app, {"--workers", "2"})
    local s = helper.connect(srv.port)
    s:write("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
    local status, headers = helper.read_response_head(s)
    assert.equal(200, status)
    rill.sleep(300)
    srv.proc:kill(15)
    rill.sleep(200)
    -- no new connections once stopping
    local c = rill.connect("127.0.0.1", srv.port, 1000)
    if c then
      c:settimeout(2000)
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.is_nil(c:read_some())
      c:close()
    end
    local body = helper.read_chunked(s)
    local lines = {}
    for i = 1, 30 do lines[i] = ("chunk %d\n"):format(i) end
    assert.equal(table.concat(lines), body)
    assert.equal("close", headers.connection or "close")
    local code = srv.proc:wait(10000)
    assert.equal(0, code)
    s:close()
    os.execute("rm -rf " .. dir)
  end)
end)

describe("shutdown hooks", function()
  it("run rill.on_shutdown hooks at a graceful stop, so a waiting handler can end", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    write(dir .. "/app.lua", [[
local rill = require "rill"
local stopped, order = false, {}
rill.on_shutdown(function() order[#order + 1] = "first" end)
local remove = rill.on_shutdown(function() order[#order + 1] = "removed" end)
remove()
rill.on_shutdown(function()
  order[#order + 1] = "second"
  stopped = true
end)
return function(req, res)
  res:write("waiting\n")
  while not stopped do rill.sleep(20) end
  res:write(table.concat(order, ",") .. " stopping=" .. tostring(rill.stopping()) .. "\n")
end
]])
    local srv = helper.serve(dir .. "/app.lua", {"--workers", "1"})
    local s = helper.connect(srv.port)
    s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equal(200, (helper.read_response_head(s)))
    assert(s:read_until("waiting\n"))
    assert.equal("\r\n", s:read(2)) -- the chunk's end
    srv.proc:kill(15)
    local body = helper.read_chunked(s)
    assert.equal("first,second stopping=true\n", body)
    assert.equal(0, srv.proc:wait(10000))
    s:close()
    os.execute("rm -rf " .. dir)
  end)

  it("examples/sse.lua ends its event streams at a graceful stop", function()
    local srv = helper.start({"serve", "examples/sse.lua", "--listen", "127.0.0.1:0",
      "--workers", "1"}, {SSE_INTERVAL_MS = "100"})
    local s = helper.connect(srv.port)
    s:write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert.equal(200, (helper.read_response_head(s)))
    assert(s:read_until("data: tick 1\n\n"))
    assert.equal("\r\n", s:read(2)) -- the chunk's end
    local t0 = rill.now()
    srv.proc:kill(15)
    -- the stream ends properly (its last chunk), well within the grace
    assert.not_matches("data: tick 1\n", helper.read_chunked(s))
    assert.equal(0, srv.proc:wait(10000))
    assert.is_true(rill.now() - t0 < 5000)
    s:close()
  end)
end)

describe("stopping a server whose worker does not yield", function()
  -- A handler that computes without yielding (a loop bug, or the HEAD
  -- /stream?n=1e12 of examples/echo.lua) keeps its worker from its loop.
  -- The README's promise stands: a second SIGTERM stops the server at once.
  -- (Signals are watched on worker 0's loop; with one worker, that is the
  -- worker that spins.)
  it("stops on a second SIGTERM", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    write(dir .. "/app.lua", [[
return function(req, res)
  if req.path == "/spin" then
    while true do end
  end
  res:send("ok")
end
]])
    local srv = helper.serve(dir .. "/app.lua", {"--workers", "1", "--grace", "30"})
    finally(function()
      srv.stop()
      os.execute("rm -rf " .. dir)
    end)
    local s = helper.connect(srv.port)
    s:write("GET /spin HTTP/1.1\r\nHost: x\r\n\r\n")
    rill.sleep(300) -- the handler has started spinning
    srv.proc:kill(15)
    rill.sleep(300)
    srv.proc:kill(15)
    local code, sig = srv.proc:wait(10000)
    assert.is_true(code ~= nil or sig ~= "timeout", "the server still runs 10 s after a second SIGTERM")
    s:close()
  end)
end)

describe("embedding", function()
  -- A library is a guest in its host's process: it exports only rill_*,
  -- and each name it exports is one rill.h declares.
  it("librill.so and librill.a define only global symbols named rill_*, each declared " ..
    "in rill.h", function()
      if os.execute("command -v nm >/dev/null 2>&1") ~= 0 then
        pending("nm is not installed")
        return
      end
      local f = assert(io.open("core/include/rill.h"))
      local header = f:read("*a")
      f:close()
      local declared = {}
      for name in header:gmatch("RILL_API[^;(]-([%w_]+)%s*%(") do declared[name] = true end
      assert.is_truthy(declared.rill_strerror, "no RILL_API declarations found in rill.h")
      local build = helper.bin:match("^(.*)/[^/]+$")
      for _, lib in ipairs({{"librill.so", "-D"}, {"librill.a", nil}}) do
        local argv = {"nm", "--defined-only"}
        if lib[2] then argv[#argv + 1] = lib[2] end
        argv[#argv + 1] = build .. "/" .. lib[1]
        local code, out, err = helper.run(argv)
        assert.equal(0, code, err)
        local names, bad = 0, {}
        for line in out:gmatch("[^\n]+") do
          local kind, name = line:match("^%x*%s+(%a)%s+(%S+)$")
          -- upper case: a global symbol (U, undefined, is left out by nm)
          if kind and kind:match("%u") then
            names = names + 1
            if not name:match("^rill_") or not declared[name] then bad[#bad + 1] = name end
          end
        end
        assert.is_true(names > 0, "no global symbols in " .. lib[1])
        assert.equal(0, #bad, lib[1] .. " defines " .. #bad .. " global symbols that rill.h " ..
          "does not declare: " .. table.concat(bad, " ", 1, math.min(#bad, 20)))
      end
    end)

  it("suspends a task in a host C function and resumes it from another thread " ..
    "(examples/embed/slow_add.c: rill_suspend, rill_resume)", function()
    local exe = helper.bin:match("^(.*)/[^/]+$") .. "/embed_slow_add"
    local host = assert(rill.exec{exe, "0", stdout = "pipe", stderr = "pipe",
      env = {UV_THREADPOOL_SIZE = "16", SLOW_ADD_TOGETHER = "10", PATH = os.getenv("PATH")}})
    host.stdout:settimeout(10000)
    local line = assert(host.stdout:read_until("\n"))
    local port = tonumber(line:match("127%.0%.0%.1:(%d+)"))
    assert.is_truthy(port, line)
    -- Ten requests at once, each waiting on the thread pool (until all ten
    -- are in flight, then 200 ms): all ten jobs run at the same time, so no
    -- task waited for another's.
    local ths = {}
    for i = 1, 10 do
      ths[i] = rill.spawn(function() return get(port, ("/add?a=%d&b=40"):format(i)) end)
    end
    for i = 1, 10 do
      local _, sum = rill.wait(ths[i])
      assert.equal(tostring(i + 40), sum)
    end
    local most = tonumber(get(port, "/stats"):match("^(%d+)"))
    assert.equal(10, most)
    host:kill(15)
    assert.equal(0, host:wait(10000))
    -- the host's uv_run returned by itself, after rill's stop had finished and
    -- with nothing of rill's left on the loop; then uv_loop_close gave 0
    assert.equal("slow_add: stopped 1, loop alive 0\nslow_add: loop closed: 0\n",
      host.stdout:read_all(4096))
  end)

  it("serves from a host that polls rill's backend descriptor itself, keeps the host's " ..
    "SIGTERM handler and hands it rill's log lines (examples/embed/poll_host.c)", function()
    local exe = helper.bin:match("^(.*)/[^/]+$") .. "/embed_poll_host"
    local host = assert(rill.exec{exe, "0", stdout = "pipe", stderr = "pipe"})
    host.stdout:settimeout(10000)
    local line = assert(host.stdout:read_until("\n"))
    local port = tonumber(line:match("127%.0%.0%.1:(%d+)"))
    assert.is_truthy(port, line)
    assert.equal("hello, visit 1\n", get(port, "/"))
    assert.equal("hello, visit 2\n", get(port, "/"))
    -- a limit set with rill_set_int (max_body_bytes 1024)
    local code, out = helper.curl("-o", "/dev/null", "-w", "%{http_code}", "--data-binary",
      ("x"):rep(1000), ("http://127.0.0.1:%d/"):format(port))
    assert.equal(0, code)
    assert.equal("200", out)
    code, out = helper.curl("-o", "/dev/null", "-w", "%{http_code}", "--data-binary",
      ("x"):rep(2000), ("http://127.0.0.1:%d/"):format(port))
    assert.equal("413", out)
    code, out = helper.curl("-o", "/dev/null", "-w", "%{http_code}",
      ("http://127.0.0.1:%d/boom"):format(port))
    assert.equal("500", out)
    -- streamed answers cut short: rill writes to gone clients, and the host
    -- (whose SIGPIPE is at SIG_DFL) lives on
    for _ = 1, 5 do
      helper.run({"sh", "-c", ("curl -s http://127.0.0.1:%d/stream | head -c 10 >/dev/null"):format(port)})
    end
    assert.equal("hello, visit 3\n", get(port, "/"))
    -- the host's own SIGTERM handler stops rill (rill installed none)
    host:kill(15)
    assert.equal(0, host:wait(10000))
    local rest = line .. "\n" .. host.stdout:read_all(65536)
    -- rill's lines came through the host's callback: the listener, and the
    -- handler's error with worker 0
    assert.matches("log: info w0 serving poll_host%-app on http://127%.0%.0%.1:" .. port, rest)
    assert.matches("log: error w0 [^\n]*kaboom", rest)
    assert.matches("poll_host: stopped after 3 visits, own SIGTERM handler: yes\n$", rest)
    assert.equal("", host.stderr:read_all(65536))
  end)

  it("installs librill and rill.pc; examples/embed/host.c builds with pkg-config alone " ..
    "and serves its C function's value", function()
    local build = helper.bin:match("^(.*)/[^/]+$")
    local prefix = os.tmpname()
    os.remove(prefix)
    local code, _, err = helper.run({"cmake", "--install", build, "--prefix", prefix},
      {timeout = 120000})
    assert.equal(0, code, err)
    local exe = prefix .. "/host"
    local cc = ("cc examples/embed/host.c $(pkg-config --cflags --libs rill) -o %s"):format(exe)
    if helper.sanitized then cc = cc .. " -fsanitize=address,undefined" end
    code, _, err = helper.run({"sh", "-c", cc}, {timeout = 120000,
      env = {PKG_CONFIG_PATH = prefix .. "/lib/pkgconfig", PATH = os.getenv("PATH")}})
    assert.equal(0, code, err)
    local host = assert(rill.exec{exe, "0", stdout = "pipe", stderr = "pipe"})
    host.stdout:settimeout(10000)
    local line = assert(host.stdout:read_until("\n"))
    local port = tonumber(line:match("127%.0%.0%.1:(%d+)"))
    assert.is_truthy(port, line)
    assert.equal("the answer is 42\n", get(port, "/"))
    -- streamed answers cut short: rill writes to gone clients, and the host
    -- (which ignores no signal) lives on
    for _ = 1, 5 do
      helper.run({"sh", "-c", ("curl -s http://127.0.0.1:%d/stream | head -c 10 >/dev/null"):format(port)})
    end
    assert.equal("the answer is 42\n", get(port, "/"))
    host:kill(15)
    assert.equal(0, host:wait(10000))
    os.execute("rm -rf " .. prefix)
  end)
end)
