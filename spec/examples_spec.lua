-- The examples, run as a user would: `rill serve` / `rill run` in a child
-- process, driven by curl and raw sockets. Memory is read from /proc.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024

describe("examples", function()
  it("hello.lua answers GET / with Hello, world!", function()
    local srv = helper.serve("examples/hello.lua")
    local code, out = helper.curl("-i", ("http://127.0.0.1:%d/"):format(srv.port))
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 200 OK\r\n", out)
    assert.matches("\r\n\r\nHello, world!$", out)
    assert.equal(0, srv.stop())
  end)

  describe("echo.lua", function()
    local srv
    setup(function() srv = helper.serve("examples/echo.lua") end)
    teardown(function() assert.equal(0, srv.stop()) end)

    local function url(path) return ("http://127.0.0.1:%d%s"):format(srv.port, path) end

    it("answers GET /", function()
      local _, out = helper.curl(url("/"))
      assert.matches("^rill echo", out)
    end)

    it("counts a chunked 1 GiB upload with the server's peak RSS under 40 MB", function()
      local code, out, err = helper.run({"bash", "-c",
        "curl -sS -T - " .. url("/count") .. " < <(head -c 1073741824 /dev/zero)"},
        {timeout = 300000})
      assert.equal(0, code, err)
      assert.equal("1073741824\n", out)
      if not helper.sanitized then
        local _, peak = helper.rss(srv.pid)
        assert.is_true(peak < 40 * MB, ("peak RSS %.1f MB"):format(peak / MB))
      end
    end)

    it("counts a Content-Length upload", function()
      local code, out = helper.run({"curl", "-sS", "--data-binary", "@-", url("/count")},
        {input = string.rep("x", 1000001)})
      assert.equal("1000001\n", out)
    end)

    it("POST /echo returns its first bytes while the body is still being sent", function()
      local s = helper.connect(srv.port)
      s:write("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
      -- The rest of the body has not been sent: the echo must already flow.
      local status = s:read_until("\r\n")
      assert.equal("HTTP/1.1 200 OK", status)
      local headers = assert(s:read_until("\r\n\r\n"))
      assert.matches("Transfer%-Encoding: chunked", headers)
      assert.equal("5", s:read_until("\r\n"))
      assert.equal("hello", s:read(5))
      s:write("6\r\n world\r\n0\r\n\r\n")
      local rest = "\r\n6\r\n world\r\n0\r\n\r\n"
      assert.equal(rest, s:read(#rest))
      s:close()
    end)

    it("streams GET /stream?n=N without a Content-Length", function()
      local _, out = helper.curl("-i", url("/stream?n=3"))
      assert.matches("Transfer%-Encoding: chunked", out)
      assert.matches("\r\n\r\nline 1\nline 2\nline 3\n$", out)
    end)

    it("holds memory flat for a client that asks for 10 million lines and reads nothing",
      function()
        local s = helper.connect(srv.port)
        s:write("GET /stream?n=10000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        local peak_seen = 0
        for _ = 1, 10 do
          rill.sleep(200)
          local rss = helper.rss(srv.pid)
          if rss > peak_seen then peak_seen = rss end
          -- others are served meanwhile
          local code, out = helper.curl(url("/"))
          assert.equal(0, code)
          assert.matches("^rill echo", out)
        end
        if not helper.sanitized then
          assert.is_true(peak_seen < 40 * MB, ("RSS %.1f MB"):format(peak_seen / MB))
        end
        -- The writer was held: when the client goes away, the handler's next
        -- write fails, at a line not far past what the kernel buffers hold.
        s:close()
        local line = tonumber(srv.wait_log("stream stopped at line (%d+)"))
        assert.is_true(line < 1000000, "the server wrote " .. line .. " lines ahead")
      end)
  end)

  -- A response to HEAD carries no body, so res:write() sends nothing and
  -- never waits; /stream's loop stops only when a write fails. Once the
  -- client has gone it must fail (as it does for GET), or the handler runs
  -- its billion lines without yielding: its worker serves nobody else and
  -- does not even see SIGTERM. (A server of its own: a frozen one is killed.)
  it("echo.lua: a HEAD /stream?n=1e12 whose client went away lets the worker serve " ..
    "others and stop", function()
      local own = helper.serve("examples/echo.lua", {"--workers", "1"})
      finally(function() own.stop() end)
      local s = helper.connect(own.port)
      assert(s:write("HEAD /stream?n=1000000000000 HTTP/1.1\r\nHost: x\r\n\r\n"))
      assert.matches("^HTTP/1.1 200 OK\r\n", assert(s:read_until("\r\n\r\n")))
      s:close()
      local raw, why = helper.raw(own.port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        10000)
      assert.equal("closed", why, "another client was not answered")
      assert.matches("rill echo", raw)
      assert.equal(0, own.stop())
    end)

  -- --send-timeout bounds how long a response write waits for a client that
  -- does not read. When it passes, the response cannot be whole: the client
  -- must not receive it ended as if it were (a last chunk), and the
  -- connection, whose client is not reading, must not carry on to the next
  -- request. echo.lua's /stream returns when a write fails, as a handler may.
  it("echo.lua: a streamed response whose write timed out is cut, not ended as whole",
    function()
      local own = helper.serve("examples/echo.lua", {"--workers", "1", "--send-timeout", "1"})
      finally(function() own.stop() end)
      local s = helper.connect(own.port)
      local req = "GET /stream?n=100000000 HTTP/1.1\r\nHost: x\r\n\r\n"
      assert(s:write(req .. req))
      local line = own.wait_log("stream stopped at line (%d+)")
      s:settimeout(3000)
      -- Read until the connection ends, or the next response begins (which
      -- would stream its 100 million lines for as long as we read).
      local parts, why, tail = {}, nil, ""
      while true do
        local chunk, err = s:read_some()
        if not chunk then
          why = err or "closed"
          break
        end
        parts[#parts + 1] = chunk
        local _, heads = (tail .. chunk):gsub("HTTP/1.1 200 OK\r\n", "")
        if #parts > 1 and heads > 0 then
          why = "next response"
          break
        end
        tail = chunk:sub(-20)
      end
      s:close()
      local got = table.concat(parts)
      assert.is_nil(got:find("\r\n0\r\n\r\n", 1, true),
        ("the response cut at line %s ended with a last chunk"):format(line))
      assert.is_true(why ~= "timeout" and why ~= "next response",
        "the connection carried on (" .. why .. ")")
      assert.equal(0, own.stop())
    end)

  it("line_echo.lua echoes lines over raw TCP", function()
    local srv = helper.start({"run", "examples/line_echo.lua", "0", "0"})
    local s = helper.connect(srv.port)
    s:write("first line\nsecond")
    assert.equal("first line", s:read_until("\n"))
    s:write(" line\n")
    assert.equal("second line", s:read_until("\n"))
    s:write(string.rep("z", 9000) .. "\n")
    assert.equal("error: line too long", s:read_until("\n"))
    assert.is_nil(s:read_some())
    s:close()
    assert.equal(0, srv.stop())
  end)

  it("line_echo.lua runs the same handler over WebSocket", function()
    local srv = helper.start({"run", "examples/line_echo.lua", "0", "0"})
    local port = tonumber(srv.wait_log("ws://127%.0%.0%.1:(%d+)/"))
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(port)))
    ws:send("one\ntw", "binary")
    ws:send("o\n", "binary")
    local got = {}
    while #table.concat(got) < 8 do
      local msg = assert(ws:receive())
      got[#got + 1] = msg:read_all()
    end
    assert.equal("one\ntwo\n", table.concat(got))
    ws:close()
    assert.equal(0, srv.stop())
  end)

  it("chat.lua broadcasts to every client on both workers", function()
    local srv = helper.serve("examples/chat.lua", {"--workers", "2"})
    local code, page = helper.curl(("http://127.0.0.1:%d/"):format(srv.port))
    assert.matches("new WebSocket", page)
    local url = ("ws://127.0.0.1:%d/ws"):format(srv.port)
    local function recv(ws) return assert(ws:receive()):read_all() end
    -- Clients join one at a time, each seeing its own "joined" first (named
    -- guestW.N: W the worker serving it), then every later one's, until
    -- both workers serve at least two.
    local clients, per = {}, {}
    while #clients < 40 and not ((per["0"] or 0) >= 2 and (per["1"] or 0) >= 2) do
      local ws = assert(helper.ws(url))
      local name, worker = recv(ws):match("^(guest(%d)%.%d+) joined$")
      assert.is_truthy(name)
      for _, c in ipairs(clients) do assert.equal(name .. " joined", recv(c.ws)) end
      clients[#clients + 1] = {ws = ws, name = name}
      per[worker] = (per[worker] or 0) + 1
    end
    assert.is_true(per["0"] >= 2 and per["1"] >= 2, "clients on both workers")
    -- each client says something; every client sees every line
    for i, c in ipairs(clients) do
      c.ws:send("hello " .. i)
      for _, other in ipairs(clients) do
        assert.equal(c.name .. ": hello " .. i, recv(other.ws))
      end
    end
    local last = table.remove(clients)
    last.ws:close()
    for _, c in ipairs(clients) do assert.equal(last.name .. " left", recv(c.ws)) end
    for _, c in ipairs(clients) do c.ws:close() end
    assert.equal(0, srv.stop())
  end)

  it("kv.lua keeps its data in a shared dict: every worker sees every SET", function()
    local srv = helper.start({"serve", "examples/kv.lua", "--listen", "127.0.0.1:0",
      "--workers", "2"}, {KV_PORT = "0"})
    local port = tonumber(srv.wait_log("kv: worker %d serves RESP on port (%d+)"))
    local function cmd(s, line)
      s:write(line .. "\r\n")
      return s:read_until("\r\n")
    end
    local function bulk(s, line)
      local head = cmd(s, line)
      local n = tonumber(head:match("^%$(%-?%d+)$"))
      if n < 0 then return nil end
      local v = s:read(n + 2)
      return v:sub(1, n)
    end
    local setter = helper.connect(port)
    assert.equal("+PONG", cmd(setter, "PING"))
    assert.equal("+OK", cmd(setter, "SET greeting hello"))
    -- RESP arrays, a value with spaces and CRLF in it
    setter:write("*3\r\n$3\r\nSET\r\n$4\r\nodd!\r\n$7\r\na b\r\nc.\r\n")
    assert.equal("+OK", setter:read_until("\r\n"))
    assert.equal(":1", cmd(setter, "INCR visits"))
    local seen, n = {}, 0
    while not (seen["0"] and seen["1"]) and n < 100 do
      local s = helper.connect(port)
      local worker = cmd(s, "WORKER"):match("^:(%d+)$")
      seen[worker] = true
      assert.equal("hello", bulk(s, "GET greeting"))
      assert.equal("a b\r\nc.", bulk(s, "GET odd!"))
      assert.equal(":" .. (n + 2), cmd(s, "INCR visits"))
      assert.is_nil(bulk(s, "GET missing"))
      s:close()
      n = n + 1
    end
    assert.is_true(seen["0"] and seen["1"], "both workers served")
    -- a real client (redis-cli), and the HTTP face
    local code, out = helper.run({"redis-cli", "-p", tostring(port), "SET", "from-cli", "42"})
    assert.equal(0, code)
    assert.matches("OK", out)
    code, out = helper.run({"redis-cli", "-p", tostring(port), "GET", "greeting"})
    assert.equal("hello\n", out)
    local status, _, body = helper.fetch(helper.url(srv.port, "/from-cli"))
    assert.equal(200, status)
    assert.equal("42\n", body)
    -- limits: a bulk past 1 MiB is refused and the connection closed
    local bad = helper.connect(port)
    bad:write("*2\r\n$3\r\nGET\r\n$99999999\r\n")
    assert.matches("^%-ERR protocol", bad:read_until("\r\n"))
    assert.is_nil(bad:read_some())
    bad:close()
    assert.equal("+OK", cmd(setter, "QUIT"))
    setter:close()
    assert.equal(0, srv.stop())
  end)

  it("lenprefix.lua answers 4-byte length-prefixed messages", function()
    local srv = helper.start({"run", "examples/lenprefix.lua", "0"})
    local s = helper.connect(srv.port)
    local function frame(msg)
      local n = #msg
      return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
        math.floor(n / 256) % 256, n % 256) .. msg
    end
    -- two messages in one write, then one split across writes
    s:write(frame("abc") .. frame(""))
    assert.equal(frame("cba"), s:read(7))
    assert.equal(frame(""), s:read(4))
    local big = string.rep("0123456789", 20000)
    local f = frame(big)
    s:write(f:sub(1, 3))
    rill.sleep(10)
    s:write(f:sub(4, 100000))
    rill.sleep(10)
    s:write(f:sub(100001))
    assert.equal(frame(big:reverse()), s:read(#f))
    s:close()
    assert.equal(0, srv.stop())
  end)

  it("sse.lua streams events and sees a client leave within a second", function()
    local srv = helper.start({"serve", "examples/sse.lua", "--listen", "127.0.0.1:0",
      "--workers", "1"}, {SSE_INTERVAL_MS = "2000"})
    local function clients()
      return select(2, helper.curl(("http://127.0.0.1:%d/clients"):format(srv.port)))
    end
    local s = helper.connect(srv.port)
    s:write("GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    local status, headers = helper.read_response_head(s)
    assert.equal(200, status)
    assert.matches("^text/event%-stream", headers["content-type"])
    assert.matches("event: tick\nid: 1\ndata: tick 1\n\n", s:read_until("data: tick 1\n\n") ..
      "data: tick 1\n\n")
    assert.equal("1", clients())
    -- the handler sleeps 2 s between events: the server must not wait for
    -- its next write to learn that the client left
    local left = rill.now()
    s:close()
    local now
    for _ = 1, 100 do
      if clients() == "0" then
        now = rill.now()
        break
      end
      rill.sleep(20)
    end
    assert.is_number(now, "the client's leaving was not noticed")
    assert.is_true(now - left < 1000, ("noticed after %d ms"):format(now - left))
    srv.wait_log("an event stream's client left")
    assert.equal(0, srv.stop())
  end)

  it("static.lua serves its site, the API beside it, and its not_found page", function()
    local srv = helper.serve("examples/static.lua")
    local function url(p) return helper.url(srv.port, p) end
    local status, h, body = helper.fetch(url("/"))
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    assert.matches('<link rel="stylesheet" href="style.css">', body, 1, true)
    assert.equal("public, max-age=60", h["cache-control"])
    status, h = helper.fetch("-H", "If-None-Match: " .. h.etag, url("/"))
    assert.equal(304, status)
    status, h = helper.fetch(url("/style.css"))
    assert.equal("text/css; charset=utf-8", h["content-type"])
    status, h, body = helper.fetch("-r", "0-7", url("/logo.png"))
    assert.equal(206, status)
    assert.equal("image/png", h["content-type"])
    assert.equal("\137PNG\r\n\26\n", body)
    status, h, body = helper.fetch(url("/api/time"))
    assert.equal(200, status)
    assert.is_number(rill.json.decode(body).epoch)
    status, _, body = helper.fetch(url("/nope"))
    assert.equal(404, status)
    assert.matches("<h1>Not found</h1>", body, 1, true)
    assert.equal(400, (helper.fetch("--path-as-is", url("/../static.lua"))))
    assert.equal(400, (helper.fetch(url("/%2e%2e/static.lua"))))
    assert.equal(0, srv.stop())
  end)

  it("rill serve reports an app that does not load, with file and line", function()
    local f = assert(io.open("/tmp/rill_bad_app.lua", "w"))
    f:write("return function(req, res)\n  res:send(\nend\n")
    f:close()
    local code, _, err = helper.run({helper.bin, "serve", "/tmp/rill_bad_app.lua",
      "--listen", "127.0.0.1:0"})
    assert.equal(1, code)
    assert.matches("rill_bad_app.lua:3:", err)
    os.remove("/tmp/rill_bad_app.lua")
  end)

  it("fetch.lua fetches with bounded concurrency, retries a 503, reports each URL", function()
    local active, most, hits = 0, 0, {}
    local l = helper.listen(function(req, res)
      hits[req.path] = (hits[req.path] or 0) + 1
      active = active + 1
      most = math.max(most, active)
      rill.sleep(20)
      active = active - 1
      if req.path == "/flaky" and hits[req.path] < 2 then return res:status(503):send("later") end
      if req.path == "/missing" then return res:status(404):send("no") end
      res:send("body of " .. req.path)
    end)
    finally(function() l:close() end)
    local base = ("http://127.0.0.1:%d"):format(l:port())
    local input = {}
    for n = 1, 6 do input[#input + 1] = base .. "/p" .. n end
    input[#input + 1] = base .. "/flaky"
    input[#input + 1] = base .. "/missing"
    -- the server runs in this process: the script runs in a child
    local p = assert(rill.exec{helper.bin, "run", "examples/fetch.lua", "-n", "2",
      stdin = "pipe", stdout = "pipe", stderr = "pipe"})
    p.stdin:write(table.concat(input, "\n") .. "\n")
    p.stdin:close()
    local out = p.stdout:read_all()
    local code = p:wait()
    assert.equal(0, code, out)
    local lines = {}
    for line in out:gmatch("[^\n]+") do lines[#lines + 1] = line end
    assert.equal(8, #lines)
    assert.matches("^200 11 %d+ms " .. base:gsub("%p", "%%%0") .. "/p1$", lines[1])
    assert.matches("^200 14 %d+ms .*/flaky$", lines[7])
    assert.matches("^404 2 %d+ms .*/missing$", lines[8])
    assert.equal(2, hits["/flaky"])
    assert.equal(2, most)
  end)

  it("tail.lua reads stdin line by line while its timer ticks", function()
    local code, out, err = helper.run({"sh", "-c",
      "(echo error one; echo fine; sleep 2.5; echo error two) | " .. helper.bin ..
      " run examples/tail.lua error"})
    assert.equal(0, code, err)
    assert.equal("error one\nerror two\n3 lines, 25 bytes, 2 matching\n", out)
    -- the tick at one second saw the first two lines, before the third came
    assert.matches("2 lines, 15 bytes, 1 matching so far", err)
  end)
end)
