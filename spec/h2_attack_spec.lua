-- Hostile peers against the newest HTTP/2 surfaces (issue 18): files sent
-- by reference, request trailers, websocket tunnels (RFC 8441), the
-- HTTP/1.1 Upgrade to h2c and the handlers one read starts together. Each
-- case checks the answer a well-behaved server gives and that nothing is
-- held afterwards: every handler ended, no connection left open. The peer
-- is Python's h2 (python3-h2) driven by spec/h2/surfaces.py.
local rill = require "rill"
local helper = require "spec.helper"

local python
local function attack(case, port, ...)
  if python == nil then
    python = false
    for _, py in ipairs({"python3", "/usr/bin/python3"}) do
      if helper.run({py, "-c", "import h2"}) == 0 then python = py break end
    end
  end
  if not python then return nil end
  local argv = {python, "spec/h2/surfaces.py", case, tostring(port)}
  for _, a in ipairs({...}) do argv[#argv + 1] = tostring(a) end
  local code, out, err = helper.run(argv, {timeout = 60000})
  assert(code == 0, "surfaces.py " .. case .. ": " .. err .. out)
  return out
end

-- Waits up to ms for fn() (what the server does after the peer went).
local function within(ms, fn)
  for _ = 1, ms / 20 do
    if fn() then return true end
    rill.sleep(20)
  end
  return fn()
end

local function connections()
  return rill.metrics.collect().connections
end

local function write_file(path, n)
  local f = assert(io.open(path, "wb"))
  local block = string.rep("0123456789abcdef", 4096) -- 64 KiB
  for _ = 1, n / #block do f:write(block) end
  f:close()
end

describe("HTTP/2 under attack", function()
  local l, port, seen, dir, base
  local function count(k) seen[k] = (seen[k] or 0) + 1 end

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(rill.fs.mkdir(dir))
    write_file(dir .. "/big.bin", 4 * 1024 * 1024)
    local app = rill.router()
    local function handler(fn)
      return function(req, res)
        count("started")
        local ok, err = pcall(fn, req, res)
        count("ended")
        if not ok then error(err, 0) end
      end
    end
    app:get("/small", handler(function(req, res) res:send("small") end))
    app:get("/big", handler(function(req, res)
      local ok, err = res:send_file(dir .. "/big.bin")
      count("big " .. tostring(ok or err))
    end))
    app:get("/trunc", handler(function(req, res)
      local ok, err = res:send_file(dir .. "/trunc.bin")
      count("trunc " .. tostring(ok or err))
    end))
    app:post("/trailers", handler(function(req, res)
      local b, err = req.body:read_all(1024 * 1024)
      local n = 0
      for _ in pairs(req.trailers or {}) do n = n + 1 end
      res:send("body " .. tostring(b and #b) .. " " .. tostring(err) .. " trailers " .. n)
    end))
    app:post("/early", handler(function(req, res) res:send("early") end))
    app:get("/err", handler(function(req, res) error("boom") end))
    app:get("/spawn", handler(function(req, res)
      rill.spawn(function() count("spawned") end)
      res:send("spawned")
    end))
    app:post("/block", handler(function(req, res)
      local b = req.body:read_all(1024 * 1024)
      res:send("got " .. tostring(b and #b))
    end))
    app:websocket("/echo", function(ws)
      count("ws")
      while true do
        local msg, err = ws:receive()
        if not msg then count("ws end " .. tostring(err)) return end
        local data, rerr = msg:read_all(100000)
        if not data then count("ws end " .. tostring(rerr)) return end
        ws:send(data, msg.type)
      end
    end, {max_message = 100000, idle_timeout = 1000, close_timeout = 300})
    app:websocket("/flood", function(ws)
      while true do
        local ok, err = ws:send(string.rep("z", 60000), "binary")
        if not ok then count("flood end " .. tostring(err)) return end
      end
    end, {idle_timeout = 300, close_timeout = 300})
    l, port = helper.listen(app, {http2 = true, header_timeout = 500,
      keepalive_timeout = 500, send_timeout = 300})
    base = connections()
  end)
  teardown(function()
    l:close()
    os.remove(dir .. "/big.bin")
    os.remove(dir .. "/trunc.bin")
    os.remove(dir)
  end)
  before_each(function() seen = {} end)
  -- nothing held once the peer went: every handler ended, every connection
  -- closed (by the peer, or by a timeout)
  local function released(ms)
    assert.is_true(within(ms or 5000, function()
      return seen.started == seen.ended and connections() == base
    end), "held: " .. tostring(seen.started) .. " handlers started, " ..
      tostring(seen.ended) .. " ended, " .. connections() - base .. " connections")
  end

  describe("files", function()
    it("streams reset while their file waits for a shut window: buffers back, " ..
      "the connection goes on", function()
      local out = attack("file_reset", port, 20)
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("heads 20\nafter 200 b'small'\n", 1, true), out)
      released()
      assert.equal(20, seen["big closed"])
    end)

    it("streams reset while a read of their file is in the pool", function()
      local out = attack("file_cold_reset", port, dir .. "/big.bin", 10)
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("after 200 b'small'\n", 1, true), out)
      released()
    end)

    it("many file streams with windows that never open: each holds at most " ..
      "its high-water mark, and send_timeout frees it", function()
      local out = attack("file_zero", port, 30)
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("heads 30\n", 1, true), out)
      local resets = 0
      for code in out:gmatch("reset %d+ (%d+)\n") do
        assert.equal("2", code) -- INTERNAL_ERROR: not the whole answer
        resets = resets + 1
      end
      assert.equal(30, resets, out)
      assert.truthy(out:find("closed\n", 1, true), out)
      assert.equal(30, seen["big timeout"])
      released()
    end)

    it("a file cut short while it is sent ends in a reset, never in an " ..
      "END_STREAM", function()
      write_file(dir .. "/trunc.bin", 1024 * 1024)
      local out = attack("file_truncate", port, dir .. "/trunc.bin")
      if not out then pending("python3-h2 is not installed") return end
      local clen, got, how = out:match("clen (%d+) got (%d+) (.-)\n")
      assert.equal("1048576", clen, out)
      assert.truthy(tonumber(got) < 1048576, out)
      assert.equal("reset 2", how)
      released()
      assert.equal(1, seen["trunc file ended early (truncated while it was sent?)"])
    end)
  end)

  describe("trailers", function()
    it("with a pseudo-header: the stream is refused (PROTOCOL_ERROR)", function()
      local out = attack("trailers", port, "pseudo")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("reset 1 \nthen 200 b'small'\n", 1, true), out)
      released()
    end)

    it("past max_header_bytes with the head: 413", function()
      local out = attack("trailers", port, "huge")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("413 \nthen 200 b'small'\n", 1, true), out)
      released()
    end)

    it("right after the head (no body)", function()
      local out = attack("trailers", port, "get")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("200 body 0 nil trailers 1\n", 1, true), out)
      released()
    end)

    it("after the handler answered: the stream was reset (NO_ERROR)", function()
      local out = attack("trailers", port, "after")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("reset 0 early\nthen 200 b'small'\n", 1, true), out)
      released()
    end)

    it("without END_STREAM, then DATA: the stream is refused", function()
      local out = attack("trailers_raw", port, "noend")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("(3, 0, 1, 1)", 1, true), out) -- RST_STREAM PROTOCOL_ERROR
      released()
    end)
  end)

  describe("websocket tunnels", function()
    it("a client that never opens its window: the send times out, the close " ..
      "lingers, then the stream is reset", function()
      local out = attack("tunnel", port, "flood")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("reset 8 ended False\n", 1, true), out) -- CANCEL
      assert.truthy(out:find("then 200 b'small'\n", 1, true), out)
      assert.equal(1, seen["flood end timeout"])
      released()
    end)

    for _, case in ipairs({"rst", "after_end", "nohandshake", "goaway", "hugeframe"}) do
      it("survives " .. case, function()
        local out = attack("tunnel", port, case)
        if not out then pending("python3-h2 is not installed") return end
        assert.truthy(out:find("status 200\n", 1, true), out)
        assert.truthy(out:find("then 200 b'small'\n", 1, true), out)
        assert.is_true(within(5000, function()
          for k in pairs(seen) do if k:find("^ws end") then return true end end
        end))
        assert.equal(1, seen.ws)
        released()
      end)
    end

    it("a message past max_message closes its websocket (1009), not the " ..
      "connection", function()
      local out = attack("toobig", port)
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("frames [(8, b'\\x03\\xf1')]", 1, true), out) -- 1009
      assert.truthy(out:find("other other\n", 1, true), out)
      released()
    end)

    it("max streams of idle tunnels: the websocket's idle_timeout ends them",
      function()
      local out = attack("many_tunnels", port, 128)
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("open 128 max 128\nclosed 128", 1, true), out)
      assert.equal(128, seen["ws end timeout"])
      released()
    end)
  end)

  describe("the Upgrade to h2c", function()
    it("a client that never sends its preface: closed at header_timeout",
      function()
      local out = attack("upgrade", port, "nopreface")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("first HTTP/1.1 101 Switching Protocols\n", 1, true), out)
      assert.truthy(out:find("end eof", 1, true), out)
      assert.truthy(out:find("(7, 0, 0)]", 1, true), out) -- GOAWAY
      released()
    end)

    for _, case in ipairs({"h1after", "h1later", "twice", "halfclose"}) do
      it("HTTP/1.1 (or nothing) where the preface belongs: " .. case, function()
        local out = attack("upgrade", port, case)
        if not out then pending("python3-h2 is not installed") return end
        assert.truthy(out:find("end eof") or out:find("end reset"), out)
        released()
        assert.equal(200, (helper.fetch("--http2-prior-knowledge", helper.url(port, "/small"))))
      end)
    end

    it("after requests on a keep-alive connection", function()
      local out = attack("upgrade", port, "keepalive")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("HTTP/1.1 101 Switching Protocols", 1, true), out)
      released()
    end)

    it("a huge HTTP2-Settings: 431 over HTTP/1.1", function()
      local out = attack("upgrade", port, "hugesettings")
      if not out then pending("python3-h2 is not installed") return end
      assert.truthy(out:find("first HTTP/1.1 431 ", 1, true), out)
      released()
    end)
  end)

  describe("request bodies", function()
    local bl, bport
    setup(function()
      bl, bport = helper.listen(function(req, res)
        count("started")
        local b, err = req.body:read_all(1024)
        count("read " .. tostring(b and #b or err))
        count("ended")
        res:send("got " .. tostring(b and #b))
      end, {http2 = true, body_timeout = 500})
    end)
    teardown(function() bl:close() end)

    it("a body that never comes: its reader gets \"timeout\" after body_timeout, " ..
      "the answer is 408 (as over HTTP/1.1), the connection goes on", function()
      local out = attack("body_wait", bport, "stall")
      if not out then pending("python3-h2 is not installed") return end
      assert.equal("408  ended\nthen 200 b'got 0'\n", out)
      assert.equal(1, seen["read timeout"])
      released()
    end)

    it("a body whose bytes each come within body_timeout is read whole", function()
      local out = attack("body_wait", bport, "trickle")
      if not out then pending("python3-h2 is not installed") return end
      assert.equal("200 got 30 ended\nthen 200 b'got 0'\n", out)
      assert.equal(1, seen["read 30"])
      released()
    end)
  end)

  describe("responses a client never takes", function()
    local sl, sport
    setup(function()
      local app = rill.router()
      app:get("/bigstr", function(req, res)
        count("started")
        res:send(string.rep("x", 8 * 1024 * 1024))
        count("ended")
      end)
      app:get("/mid", function(req, res)
        count("started")
        res:send(string.rep("m", 20000))
        count("ended")
      end)
      sl, sport = helper.listen(app, {http2 = true, send_timeout = 1000})
    end)
    teardown(function() sl:close() end)

    it("a response queued whole whose handler ended: reset once send_timeout " ..
      "passes with no byte taken (its memory goes)", function()
      local out = attack("stuck", sport, "/bigstr", 10)
      if not out then pending("python3-h2 is not installed") return end
      local n = 0
      for how in out:gmatch("%d+ (reset %d+) 0\n") do
        assert.equal("reset 8", how) -- CANCEL
        n = n + 1
      end
      assert.equal(10, n, out)
      released()
    end)

    it("a slow client that keeps taking bytes is not cut", function()
      local out = attack("stuck", sport, "/mid", 2, "slow")
      if not out then pending("python3-h2 is not installed") return end
      assert.equal("1 ended 20000\n3 ended 20000\n", out)
      released()
    end)
  end)

  it("handlers started by one read run together: errors, spawns and " ..
    "handlers waiting for their body do not stall the others", function()
    local out = attack("burst", port, 25)
    if not out then pending("python3-h2 is not installed") return end
    assert.truthy(out:find("/block 200 got 100 25\n", 1, true), out)
    assert.truthy(out:find("/err 500 Internal Server Error\n 25\n", 1, true), out)
    assert.truthy(out:find("/small 200 small 25\n", 1, true), out)
    assert.truthy(out:find("/spawn 200 spawned 25\n", 1, true), out)
    assert.truthy(out:find("then 200 b'small'\n", 1, true), out)
    released()
    assert.is_true(within(2000, function() return seen.spawned == 25 end))
  end)
end)
