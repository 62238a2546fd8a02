-- The HTTP/1.1 server: requests and responses, streaming bodies, keep-alive,
-- pipelining, limits, timeouts, and every request-smuggling shape. Driven by
-- curl and by raw sockets.
local rill = require "rill"
local helper = require "spec.helper"

local url = helper.url

-- Counts the status lines in a raw response stream.
local function statuses(raw)
  local t = {}
  for code in raw:gmatch("HTTP/1%.1 (%d%d%d) ") do t[#t + 1] = tonumber(code) end
  return t
end

describe("http server", function()
  local l
  after_each(function()
    if l then l:close() end
    l = nil
  end)

  describe("requests", function()
    it("exposes method, path, decoded query, headers and peer address", function()
      local seen
      local port
      l, port = helper.listen(function(req, res)
        seen = {method = req.method, path = req.path, query = req.query, target = req.target,
          ua = req.headers["User-Agent"], multi = req.headers["x-multi"],
          addr = req.remote_addr, version = req.version}
        res:send("ok")
      end)
      local code, out = helper.curl("-H", "X-Multi: one", "-H", "X-Multi: two",
        url(port, "/a/b?x=1&y=hello%20world&x=2&flag"))
      assert.equal(0, code)
      assert.equal("ok", out)
      assert.equal("GET", seen.method)
      assert.equal("/a/b", seen.path)
      assert.equal("/a/b?x=1&y=hello%20world&x=2&flag", seen.target)
      assert.same({x = {"1", "2"}, y = "hello world", flag = true}, seen.query)
      assert.matches("^curl/", seen.ua)
      assert.same({"one", "two"}, seen.multi)
      assert.equal("127.0.0.1", seen.addr)
      assert.equal("1.1", seen.version)
    end)

    it("streams a Content-Length body to the handler", function()
      local port
      l, port = helper.listen(function(req, res)
        res:send(#assert(req.body:read_all(1e7)) .. " bytes")
      end)
      local code, out = helper.run({"curl", "-sS", "--data-binary", "@-", url(port, "/up")},
        {input = string.rep("z", 300000)})
      assert.equal(0, code)
      assert.equal("300000 bytes", out)
    end)

    it("decodes a chunked body (RFC 9112 example) and exposes its trailers", function()
      local port
      local body, trailers
      l, port = helper.listen(function(req, res)
        body = req.body:read_all()
        trailers = req.trailers
        res:send("ok")
      end)
      local raw = helper.raw(port, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" ..
        "Connection: close\r\n\r\n" ..
        "4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Checksum: abc\r\n\r\n")
      assert.matches("^HTTP/1.1 200 OK", raw)
      assert.equal("Wikipedia in\r\n\r\nchunks.", body)
      assert.equal("abc", trailers["x-checksum"])
    end)

    it("gives read_some the data of every chunk that has come, not one chunk at a time",
      function()
      local port
      local first, second
      l, port = helper.listen(function(req, res)
        first = req.body:read_some(65536)
        second = req.body:read_some(65536)
        res:send("ok")
      end)
      local chunks = {}
      for i = 1, 200 do chunks[i] = ("%x\r\n%s\r\n"):format(#("line " .. i .. "\n"),
        "line " .. i .. "\n") end
      -- The head, 200 chunks and the last chunk in one write: one read.
      helper.raw(port, "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n" ..
        "Connection: close\r\n\r\n" .. table.concat(chunks) .. "0\r\n\r\n")
      local want = {}
      for i = 1, 200 do want[i] = "line " .. i .. "\n" end
      assert.equal(table.concat(want), first)
      assert.is_nil(second)
    end)

    it("reads body lines and chunks with the iterators", function()
      local port
      local lines = {}
      l, port = helper.listen(function(req, res)
        for line in req.body:lines() do lines[#lines + 1] = line end
        res:send(#lines .. "")
      end)
      local code, out = helper.curl("--data-binary", "a\nbb\n\nccc", url(port, "/"))
      assert.equal("4", out)
      assert.same({"a", "bb", "", "ccc"}, lines)
    end)

    it("limits read_all", function()
      local port
      local err
      l, port = helper.listen(function(req, res)
        local data
        data, err = req.body:read_all(1000)
        res:status(data and 200 or 413):send(err)
      end)
      local code, out = helper.curl("-w", "%{http_code}", "--data-binary", string.rep("q", 5000),
        url(port))
      assert.equal("too large413", out)
    end)
  end)

  describe("responses", function()
    it("send() gives a Content-Length; headers are set, replaced and added", function()
      local port
      l, port = helper.listen(function(req, res)
        res:status(201)
        res:header("X-One", "1")
        res:header("x-one", "2")
        res:add_header("Set-Cookie", "a=1")
        res:add_header("Set-Cookie", "b=2")
        res:send("created")
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 201 Created\r\n", raw)
      assert.matches("\r\nx%-one: 2\r\n", raw)
      assert.not_matches("X%-One: 1", raw)
      assert.matches("\r\nSet%-Cookie: a=1\r\nSet%-Cookie: b=2\r\n", raw)
      assert.matches("\r\nContent%-Length: 7\r\n", raw)
      assert.matches("\r\nDate: %a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT\r\n", raw)
      assert.matches("\r\n\r\ncreated$", raw)
    end)

    it("write() streams chunked on HTTP/1.1 and close-delimited on HTTP/1.0", function()
      local port
      l, port = helper.listen(function(req, res)
        res:write("part one, ")
        rill.sleep(10)
        res:write("part two")
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("\r\nTransfer%-Encoding: chunked\r\n", raw)
      assert.matches("\r\n\r\na\r\npart one, \r\n8\r\npart two\r\n0\r\n\r\n$", raw)
      raw = helper.raw(port, "GET / HTTP/1.0\r\n\r\n")
      assert.not_matches("Transfer%-Encoding", raw)
      assert.not_matches("Content%-Length", raw)
      assert.matches("\r\n\r\npart one, part two$", raw)
    end)

    it("streams under a Content-Length the handler set", function()
      local port
      l, port = helper.listen(function(req, res)
        res:header("Content-Length", "6")
        res:write("abc")
        res:write("def")
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("\r\nContent%-Length: 6\r\n", raw)
      assert.matches("\r\n\r\nabcdef$", raw)
      assert.not_matches("chunked", raw)
    end)

    it("answers HEAD without a body", function()
      local port
      l, port = helper.listen(function(req, res) res:send("twelve bytes") end)
      local raw = helper.raw(port, "HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local head, rest = raw:match("^(.-\r\n\r\n)(.*)$")
      assert.matches("Content%-Length: 12", head)
      assert.matches("^HTTP/1.1 200 OK", rest)
      assert.matches("twelve bytes$", rest)
    end)

    -- A HEAD answer's Content-Length is what the GET would send: a handler
    -- (or a proxy) that sets it and sends no body keeps it.
    it("answers HEAD with the Content-Length its handler set", function()
      local port
      l, port = helper.listen(function(req, res)
        res:header("Content-Length", "1234")
        res:finish()
      end)
      local raw = helper.raw(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("\r\nContent%-Length: 1234\r\n", raw)
      assert.matches("\r\n\r\n$", raw)
    end)

    it("sends an empty 200 when the handler returns without answering", function()
      local port
      l, port = helper.listen(function(req, res) end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 200 OK\r\n.*Content%-Length: 0\r\n", raw)
    end)

    it("rejects header injection", function()
      local port
      local ok, err
      l, port = helper.listen(function(req, res)
        res:header("X-Bad", "a\r\nInjected: yes")
        ok, err = pcall(res.send, res, "x")
        -- the head was refused, so nothing went out: answer cleanly
        res._h = {}
        res.headers_sent, res.finished = false, false
        res:status(400):send("refused")
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.is_false(ok)
      assert.matches("invalid", err)
      assert.matches("^HTTP/1.1 400", raw)
      assert.not_matches("Injected", raw)
    end)

    it("refuses a table as a body, pointing at res:json, and sends numbers as text", function()
      local port
      local errs = {}
      l, port = helper.listen(function(req, res)
        errs.send = select(2, pcall(function() res:send({a = 1}) end))
        errs.write = select(2, pcall(function() res:write("x", {}) end))
        res:send(42)
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("\r\n\r\n42$", raw)
      assert.matches("http_spec%.lua:%d+: res:send: the body must be a string, got table " ..
        "%(res:json sends a table as JSON%)", errs.send)
      assert.matches("http_spec%.lua:%d+: res:write: the body must be a string, got table", errs.write)
    end)

    it("refuses a status that is not an integer 100-999, at the caller's line", function()
      local port
      local errs = {}
      l, port = helper.listen(function(req, res)
        for _, bad in ipairs({"abc", 99, 1000, 200.5, true}) do
          local ok, err = pcall(function() res:status(bad) end)
          errs[#errs + 1] = not ok and err
        end
        res:status(204):send()
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("^HTTP/1.1 204 No Content\r\n", raw)
      assert.equal(5, #errs)
      assert.matches('http_spec%.lua:%d+: res:status: the status must be an integer 100%-999, ' ..
        'got "abc"', errs[1])
      assert.matches("got 99$", errs[2])
      assert.matches("got 200%.5$", errs[4])
    end)

    it("names every registered status code, and keeps a HEAD answer's Content-Length", function()
      local port
      l, port = helper.listen(function(req, res)
        if req.method == "HEAD" then
          res:header("Content-Length", "1234")
          res:finish()
          return
        end
        res:status(tonumber(req.path:sub(2))):send("x")
      end)
      for status, reason in pairs({[416] = "Range Not Satisfiable", [418] = "I'm a teapot",
        [422] = "Unprocessable Content", [425] = "Too Early",
        [451] = "Unavailable For Legal Reasons", [507] = "Insufficient Storage"}) do
        local _, out = helper.curl("-si", ("http://127.0.0.1:%d/%d"):format(port, status))
        assert.matches("^HTTP/1.1 " .. status .. " " .. reason:gsub("%p", "%%%0") .. "\r\n", out)
      end
      local _, out = helper.curl("-sI", ("http://127.0.0.1:%d/"):format(port))
      assert.matches("\r\nContent%-Length: 1234\r\n", out)
    end)
  end)

  describe("connections", function()
    it("keeps a connection alive across requests", function()
      local port
      l, port = helper.listen(function(req, res) res:send(req.path) end)
      local s = helper.connect(port)
      for i = 1, 3 do
        s:write("GET /" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n")
        local status, _, body = helper.read_response(s)
        assert.equal(200, status)
        assert.equal("/" .. i, body)
      end
      s:write("GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local status, h = helper.read_response(s)
      assert.equal("close", h.connection)
      assert.is_nil(s:read_some())
      s:close()
    end)

    it("answers pipelined requests in order, one at a time", function()
      local port
      local running, overlap = 0, false
      l, port = helper.listen(function(req, res)
        running = running + 1
        if running > 1 then overlap = true end
        rill.sleep(req.path == "/1" and 50 or 5)
        running = running - 1
        res:send(req.path)
      end)
      local raw = helper.raw(port, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n" ..
        "GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.is_false(overlap)
      local bodies = {}
      for b in raw:gmatch("\r\n\r\n(/%d)") do bodies[#bodies + 1] = b end
      assert.same({"/1", "/2", "/3"}, bodies)
    end)

    it("answers Expect: 100-continue when the handler reads the body", function()
      local port
      l, port = helper.listen(function(req, res) res:send(req.body:read_all()) end)
      local s = helper.connect(port)
      s:write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
      assert.equal("HTTP/1.1 100 Continue", s:read_until("\r\n"))
      assert.equal("", s:read_until("\r\n"))
      s:write("hello")
      local status, _, body = helper.read_response(s)
      assert.equal(200, status)
      assert.equal("hello", body)
      s:close()
    end)

    it("does not send 100 Continue when the handler answers without reading", function()
      local port
      l, port = helper.listen(function(req, res) res:status(403):send("no") end)
      local s = helper.connect(port)
      s:write("PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
      local status, h = helper.read_response(s)
      assert.equal(403, status)
      assert.equal("close", h.connection)
      assert.is_nil(s:read_some())
      s:close()
    end)

    it("drains a small unread body and serves the next request", function()
      local port
      l, port = helper.listen(function(req, res) res:send(req.path) end)
      local s = helper.connect(port)
      s:write("POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" ..
        "POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" ..
        "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
      for i = 1, 3 do
        local status, _, body = helper.read_response(s)
        assert.equal(200, status)
        assert.equal("/" .. i, body)
      end
      s:close()
    end)

    it("closes after the response when an unread body is too large to drain", function()
      local port
      l, port = helper.listen(function(req, res) res:send("early") end, {drain_bytes = 1000})
      local s = helper.connect(port)
      s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
      local status, h, body = helper.read_response(s)
      assert.equal(200, status)
      assert.equal("early", body)
      assert.equal("close", h.connection)
      s:close()
    end)

    it("ends a body stream kept past its request, while the connection serves the next",
      function()
      -- An idle connection keeps no request state: the kept stream must say
      -- so, not read what the connection has freed (ASan watches this).
      local kept, after = nil, {}
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/keep" then
          kept = req.body
          res:send("kept")
          return
        end
        after.ok, after.err = pcall(kept.read_some, kept, 10)
        res:send(req.path)
      end)
      local s = helper.connect(port)
      s:write("POST /keep HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
      local status, _, body = helper.read_response(s)
      assert.equal(200, status)
      assert.equal("kept", body)
      rill.sleep(50) -- the connection goes idle: its request state is freed
      s:write("POST /next HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nxy")
      status, _, body = helper.read_response(s)
      assert.equal(200, status)
      assert.equal("/next", body)
      assert.is_false(after.ok)
      assert.matches("closed stream", after.err)
      s:close()
    end)

    it("keeps nothing in Lua for an idle keep-alive connection", function()
      -- Each request's Lua objects go with its handler: a keep-alive
      -- connection waiting for its next request holds no Lua memory.
      local port, served = nil, 0
      l, port = helper.listen(function(req, res)
        served = served + 1
        res:send("ok")
      end)
      local n, socks = 200, {}
      for i = 1, n do socks[i] = helper.connect(port) end
      local function lua_bytes()
        collectgarbage("collect")
        collectgarbage("collect")
        return collectgarbage("count") * 1024
      end
      local function round()
        -- the answers are left unread: only the server's side is measured
        for i = 1, n do socks[i]:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n") end
        while served < n + 1 do rill.sleep(5) end
        rill.sleep(50) -- every connection is idle again
      end
      local warm = helper.connect(port) -- makes what every request reuses
      warm:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, (helper.read_response(warm)))
      warm:close()
      local before = lua_bytes()
      round()
      local grown = lua_bytes() - before
      for i = 1, n do socks[i]:close() end
      -- What grows is the client sockets' own (about 30 bytes each); a face
      -- kept per idle connection added 70 more.
      assert.is_true(grown < n * 64, ("%.0f bytes per connection"):format(grown / n))
    end)

    it("does not let a request's objects kept past it act on a later request, on any connection",
      function()
      -- An idle connection's Lua face is reused by the next request on
      -- another connection: the old request's objects must stay dead.
      local kept, stale = nil, {}
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/keep" then
          kept = {req = req, res = res} -- the handler ends without answering
          return
        end
        stale.addr = {pcall(function() return kept.req.remote_addr end)}
        stale.path = {pcall(function() return kept.req.path end)}
        stale.header = {pcall(function() return kept.req.headers.host end)}
        res:send("fresh " .. req.path)
      end)
      local a = helper.connect(port)
      a:write("GET /keep HTTP/1.1\r\nHost: a\r\n\r\n")
      local status, _, body = helper.read_response(a)
      assert.equal(200, status)
      assert.equal("", body)
      rill.sleep(50) -- a is idle: its face is spare
      for _, path in ipairs({"/b1", "/b2"}) do
        local b = helper.connect(port)
        b:write("GET " .. path .. " HTTP/1.1\r\nHost: b\r\n\r\n")
        status, _, body = helper.read_response(b)
        assert.equal(200, status)
        assert.equal("fresh " .. path, body)
        b:close()
        for _, what in ipairs({"addr", "header"}) do
          assert.is_false(stale[what][1], what)
          assert.matches("the request is over", stale[what][2])
        end
        assert.equal("/keep", stale.path[2]) -- kept on the request object
      end
      a:settimeout(200)
      assert.same({nil, "timeout"}, {a:read_some()}) -- nothing more for a
      a:close()
    end)

    it("notices a client that leaves while its handler sleeps: on_close runs, req.closed, " ..
      "the next write fails, and its slot serves another client", function()
      local ev = {}
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/second" then
          ev.second_served_while_first_runs = ev.first_done == nil
          res:send("second")
          return
        end
        ev.closed_before = req.closed
        req:on_close(function() ev.on_close = true end)
        res:write("first bytes\n")
        rill.sleep(1500) -- the client leaves meanwhile
        ev.closed_after = req.closed
        ev.write = {res:write("more")}
        req:on_close(function() ev.late_on_close = true end) -- runs at once
        ev.first_done = true
      end, {max_connections = 1})
      local a = helper.connect(port)
      a:write("GET /first HTTP/1.1\r\nHost: x\r\n\r\n")
      assert(a:read_until("first bytes\n"))
      a:close()
      -- the slot is free again: a second client is served at once
      local b = helper.connect(port)
      b:write("GET /second HTTP/1.1\r\nHost: x\r\n\r\n")
      local status, _, body = helper.read_response(b)
      b:close()
      assert.equal(200, status)
      assert.equal("second", body)
      assert.is_true(ev.second_served_while_first_runs)
      assert.is_true(ev.on_close)
      for _ = 1, 100 do
        if ev.late_on_close then break end
        rill.sleep(20)
      end
      assert.is_false(ev.closed_before)
      assert.is_true(ev.closed_after)
      assert.same({nil, "closed"}, ev.write)
      assert.is_true(ev.late_on_close)
    end)

    it("watches a request with a body once the handler has read it", function()
      local ev = {}
      local port
      l, port = helper.listen(function(req, res)
        ev.body = req.body:read_all()
        req:on_close(function() ev.on_close = rill.now() end)
        res:write("got it\n")
        rill.sleep(1000)
        ev.closed = req.closed
      end)
      local a = helper.connect(port)
      a:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
      assert(a:read_until("got it\n"))
      local left = rill.now()
      a:close()
      for _ = 1, 100 do
        if ev.closed ~= nil then break end
        rill.sleep(20)
      end
      assert.equal("hello", ev.body)
      assert.is_number(ev.on_close)
      assert.is_true(ev.on_close - left < 900, "on_close came with the client's leaving")
      assert.is_true(ev.closed)
    end)

    it("still answers a client that half-closes right after its request", function()
      local port
      local closed
      l, port = helper.listen(function(req, res)
        rill.sleep(200)
        closed = req.closed
        res:send("late answer")
      end)
      local a = helper.connect(port)
      a:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert(a:shutdown())
      local out = helper.read_to_end(a)
      assert.matches("^HTTP/1.1 200 OK\r\n", out)
      assert.matches("late answer$", out)
      assert.is_false(closed)
    end)

    it("holds connections past max_connections in the kernel's queue while all are busy",
      function()
        local port
        local release = {}
        l, port = helper.listen(function(req, res)
          if req.path ~= "/c" then
            local waiter = {}
            release[#release + 1] = waiter
            while not waiter.go do rill.sleep(5) end
          end
          res:send(req.path)
        end, {max_connections = 2})
        local a, b = helper.connect(port), helper.connect(port)
        a:write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        b:write("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        for _ = 1, 500 do
          if #release == 2 then break end
          rill.sleep(2)
        end
        assert.equal(2, #release)
        local c = helper.connect(port) -- the kernel completes the handshake
        c:settimeout(300)
        c:write("GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        local status, err = helper.read_response(c)
        assert.is_nil(status)
        assert.equal("timeout", err)
        release[1].go = true
        assert.equal(200, helper.read_response(a))
        a:close()
        c:settimeout(5000)
        local _, _, body = helper.read_response(c)
        assert.equal("/c", body)
        release[2].go = true
        assert.equal(200, helper.read_response(b))
        b:close()
        c:close()
      end)

    it("at max_connections, closes the longest idle connection to serve a new one",
      function()
        local port
        l, port = helper.listen(function(req, res) res:send(req.path) end,
          {max_connections = 2})
        local a, b = helper.connect(port), helper.connect(port)
        a:write("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equal(200, helper.read_response(a))
        b:write("GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.equal(200, helper.read_response(b))
        -- a and b are idle between requests: a new client takes a's place.
        local c = helper.connect(port)
        c:settimeout(5000)
        c:write("GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
        local _, _, body = helper.read_response(c)
        assert.equal("/c", body)
        a:settimeout(5000)
        local chunk, err = a:read_some()
        assert.is_nil(chunk)
        assert.truthy(err == "closed" or err:match("ECONNRESET"), err)
        b:write("GET /b2 HTTP/1.1\r\nHost: x\r\n\r\n")
        _, _, body = helper.read_response(b)
        assert.equal("/b2", body)
        a:close()
        b:close()
        c:close()
      end)

    it("at max_connections, a flood of silent connections does not lock out new clients",
      function()
        local port
        l, port = helper.listen(function(req, res) res:send(req.path) end,
          {max_connections = 20})
        local silent = {}
        for i = 1, 40 do silent[i] = helper.connect(port) end
        for i = 1, 5 do
          local code, out = helper.curl(url(port, "/new" .. i))
          assert.equal(0, code)
          assert.equal("/new" .. i, out)
        end
        for _, s in ipairs(silent) do s:close() end
      end)

    -- A connection the server has closed (after a "Connection: close"
    -- response, a bad request) lingers up to 5 s, reading and dropping what
    -- its peer still sends, until the peer closes too. A peer that never
    -- closes must not hold a place at max_connections for all that time: the
    -- server has nothing left to do for it. Whether a closed connection still
    -- lingers shows when its peer writes twice more: a lingering one takes
    -- the bytes, one the server has let go of answers the first with a
    -- reset, which fails the second write.
    it("at max_connections, connections closed by the server but held open by their " ..
      "clients do not keep a new client waiting", function()
        local port
        l, port = helper.listen(function(req, res) res:send(req.path) end,
          {max_connections = 2})
        local held = {}
        for i = 1, 2 do
          local s = helper.connect(port)
          s:write("GET /held HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          assert.equal(200, helper.read_response(s))
          assert.is_nil(s:read_some()) -- the server's FIN; this client stays
          held[i] = s
        end
        local c = helper.connect(port)
        c:write("GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        local _, _, body = helper.read_response(c)
        assert.equal("/new", body)
        c:close()
        local lingering = 0
        for _, s in ipairs(held) do
          s:write("x")
          rill.sleep(100)
          if s:write("y") then lingering = lingering + 1 end
          s:close()
        end
        assert.is_true(lingering > 0,
          "the new client was answered only once the closed connections were let go")
      end)

    -- A request whose body the handler did not read has been answered; the
    -- server reads the rest of the body only to keep the connection for a
    -- next request, as it keeps an idle one. At max_connections such a
    -- connection (its client sends no more) makes room like an idle one,
    -- rather than holding its place for body_timeout (60 s here).
    it("at max_connections, a connection draining an unread body makes room for a new one",
      function()
        local port
        l, port = helper.listen(function(req, res) res:send(req.path) end,
          {max_connections = 2, body_timeout = 60000})
        local held = {}
        for i = 1, 2 do
          local s = helper.connect(port)
          s:write("POST /held HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
          assert.equal(200, helper.read_response(s))
          held[i] = s
        end
        local c = helper.connect(port)
        c:write("GET /new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        local status, _, body = helper.read_response(c)
        assert.equal(200, status, "the new client was not served: " .. tostring(_))
        assert.equal("/new", body)
        c:close()
        for _, s in ipairs(held) do s:close() end
      end)

    it("serves many connections at once", function()
      local port
      l, port = helper.listen(function(req, res)
        rill.sleep(20)
        res:send(req.path)
      end)
      local threads = {}
      for i = 1, 100 do
        threads[i] = rill.spawn(function()
          local s = helper.connect(port)
          s:write("GET /" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n")
          local _, _, body = helper.read_response(s)
          s:close()
          return body
        end)
      end
      for i = 1, 100 do
        local ok, body = rill.wait(threads[i])
        assert.is_true(ok)
        assert.equal("/" .. i, body)
      end
    end)
  end)

  describe("handler errors", function()
    it("answer 500 and leave the server serving", function()
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/boom" then error("handler failed on purpose") end
        res:send("fine")
      end)
      local code, out = helper.curl("-w", " %{http_code}", url(port, "/boom"))
      assert.matches("500$", out)
      code, out = helper.curl(url(port, "/ok"))
      assert.equal("fine", out)
    end)

    it("cut the connection when the response had started", function()
      local port
      l, port = helper.listen(function(req, res)
        res:write("partial")
        rill.sleep(10)
        error("failed mid-response on purpose")
      end)
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.matches("7\r\npartial\r\n", raw)
      assert.not_matches("0\r\n\r\n$", raw) -- no last chunk: the client sees it cut
    end)
  end)

  describe("limits", function()
    it("431 for a head larger than max_header_bytes", function()
      local port
      l, port = helper.listen(function(req, res) res:send("x") end, {max_header_bytes = 1024})
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 2000) ..
        "\r\n\r\n")
      assert.same({431}, statuses(raw))
    end)

    it("431, not a stall, for a head larger than a connection's buffer can hold", function()
      -- max_header_bytes above the most a socket buffers (1 MiB): the reader
      -- that asked for more used to be left waiting for the header timeout.
      local port
      l, port = helper.listen(function(req, res) res:send("x") end,
        {max_header_bytes = 4 * 1024 * 1024, header_timeout = 30000})
      local s = helper.connect(port)
      s:settimeout(5000)
      s:write("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 1200 * 1024))
      local status, err = helper.read_response(s)
      assert.equal(431, status, tostring(err))
      s:close()
    end)

    it("414 for a request target larger than max_header_bytes", function()
      local port
      l, port = helper.listen(function(req, res) res:send("x") end, {max_header_bytes = 1024})
      local raw = helper.raw(port, "GET /" .. string.rep("u", 2000) .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.same({414}, statuses(raw))
    end)

    it("431 for more header fields than max_headers", function()
      local port
      l, port = helper.listen(function(req, res) res:send("x") end, {max_headers = 10})
      local head = {"GET / HTTP/1.1\r\nHost: x\r\n"}
      for i = 1, 20 do head[#head + 1] = "X-" .. i .. ": v\r\n" end
      local raw = helper.raw(port, table.concat(head) .. "\r\n")
      assert.same({431}, statuses(raw))
    end)

    -- Misuse raises, naming what is wrong (DESIGN.md, Conventions); a bad
    -- option leaves nothing behind (the ASan run checks for leaks at exit).
    local bad_limits = {{"max_headers", "lots"}, {"max_headers", -1}, {"min_body_rate", "fast"},
      {"max_connections_per_address", "x"}}
    local function listen_with(bad)
      local o = {host = "127.0.0.1", port = 0, handler = function() end}
      o[bad[1]] = bad[2]
      local ok, err = pcall(rill.http.listen, o)
      if ok then err:close() end -- a listener was made: not ours to keep
      return ok, err
    end

    it("a limit that is not a number, or is negative, raises and makes no listener", function()
      for _, bad in ipairs(bad_limits) do
        local ok = listen_with(bad)
        assert.is_false(ok, ("%s = %q was taken"):format(bad[1], tostring(bad[2])))
      end
    end)

    it("the error for a limit that is not a number, or is negative, names the option",
      function()
        for _, bad in ipairs(bad_limits) do
          local ok, err = listen_with(bad)
          assert.is_false(ok, ("%s = %q was taken"):format(bad[1], tostring(bad[2])))
          assert.matches(bad[1], err, 1, true)
        end
      end)

    it("413 for a Content-Length over max_body_bytes, before the handler runs", function()
      local port
      local ran = false
      l, port = helper.listen(function(req, res) ran = true end, {max_body_bytes = 1000})
      local raw = helper.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
      assert.same({413}, statuses(raw))
      assert.is_false(ran)
    end)

    it("413 for a chunked body that grows over max_body_bytes", function()
      local port
      local err
      l, port = helper.listen(function(req, res)
        local _
        _, err = req.body:read_all(1e6)
        res:send("handler's answer")
      end, {max_body_bytes = 1000})
      local raw = helper.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
        "400\r\n" .. string.rep("a", 1024) .. "\r\n0\r\n\r\n")
      assert.equal("body too large", err)
      assert.same({413}, statuses(raw))
    end)

    it("408 when the head does not arrive within header_timeout", function()
      local port
      l, port = helper.listen(function(req, res) res:send("x") end, {header_timeout = 200})
      local t0 = rill.now()
      local raw, why = helper.raw(port, "GET / HTTP/1.1\r\nHost:", 3000)
      assert.same({408}, statuses(raw))
      assert.equal("closed", why)
      assert.is_true(rill.now() - t0 < 2000)
    end)

    it("closes an idle keep-alive connection after keepalive_timeout", function()
      local port
      l, port = helper.listen(function(req, res) res:send("x") end, {keepalive_timeout = 200})
      local s = helper.connect(port)
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, helper.read_response(s))
      local t0 = rill.now()
      assert.is_nil(s:read_some())
      assert.is_true(rill.now() - t0 < 2000)
      s:close()
    end)

    it("times out each connection by its own kind of timeout, in deadline order", function()
      -- One server, three kinds of wait with three delays: a partial head
      -- (header_timeout), an unread body being drained (body_timeout) and
      -- an idle keep-alive connection (keepalive_timeout), set in the order
      -- that is not their deadlines' order.
      local port
      l, port = helper.listen(function(req, res) res:send("x") end,
        {keepalive_timeout = 1200, body_timeout = 600, header_timeout = 300})
      local t0 = rill.now()
      local idle = helper.connect(port)
      idle:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, helper.read_response(idle))
      local draining = helper.connect(port)
      draining:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
      assert.equal(200, helper.read_response(draining))
      local partial = helper.connect(port)
      partial:write("GET / HTTP/1.1\r\nHost:")
      local ended = {}
      local function watch(name, s)
        return rill.spawn(function()
          s:settimeout(5000)
          local raw = s:read_some(4096) or ""
          while s:read_some(4096) do end -- to the server's close
          ended[name] = rill.now() - t0
          s:close()
          return raw
        end)
      end
      local threads = {watch("idle", idle), watch("draining", draining),
        watch("partial", partial)}
      local _, raw = rill.wait(threads[3])
      assert.same({408}, statuses(raw))
      rill.wait(threads[1])
      rill.wait(threads[2])
      assert.is_true(ended.partial < ended.draining, "header before body timeout")
      assert.is_true(ended.draining < ended.idle, "body before keep-alive timeout")
      assert.is_true(ended.partial >= 250 and ended.idle < 4000)
      -- The server still serves.
      local s = helper.connect(port)
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, helper.read_response(s))
      s:close()
    end)

    it("ends a body read with 'timeout' after body_timeout", function()
      local port
      local got, err, partial
      l, port = helper.listen(function(req, res)
        got, err, partial = req.body:read(10)
        res:status(408):send("slow")
      end, {body_timeout = 200})
      local s = helper.connect(port)
      s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
      local status = helper.read_response(s)
      assert.equal(408, status)
      assert.is_nil(got)
      assert.equal("timeout", err)
      assert.equal("abc", partial)
      s:close()
    end)

    -- A body that stops coming (a wait past body_timeout) is a body too
    -- slow, as one below min_body_rate is: the README promises 408 "once a
    -- read of the body finds it, whatever the handler then sends" — not a
    -- 500 and a traceback in the log for a handler that raises on the
    -- failed read (as examples/echo.lua does), nor a 200 for one that
    -- ignores it.
    for _, variant in ipairs({"raises", "ignores it"}) do
      it("408 and a closed connection for a body that stops past body_timeout, when the " ..
        "handler " .. variant, function()
          local port
          local got = {}
          l, port = helper.listen(function(req, res)
            got.data, got.err = req.body:read_all()
            if variant == "raises" then error("the body failed on purpose: " .. tostring(got.err)) end
          end, {body_timeout = 200})
          local s = helper.connect(port)
          s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
          local raw, why = helper.read_to_end(s)
          assert.is_nil(got.data)
          assert.equal("timeout", got.err)
          assert.same({408}, statuses(raw))
          assert.matches("\r\nConnection: close\r\n", raw)
          assert.equal("closed", why)
        end)
    end

    -- Slow peers (issue 11): a body must keep up a minimum rate once a grace
    -- period of waiting is used. The client drips one byte every 300 ms
    -- (3 B/s) to a server asking for 100 B/s after 1 s of waiting: 1 s plus
    -- 10 ms per byte brought is used up at the 4th byte. It drips at most 30
    -- bytes (9 s); a server still waiting then holds it as long as it drips.
    local function drip(s)
      local reader = rill.spawn(function()
        local parts = {}
        while true do
          local chunk, err = s:read_some()
          if not chunk then return table.concat(parts), err or "closed" end
          parts[#parts + 1] = chunk
        end
      end)
      local sent = 0
      while reader:status() == "running" and sent < 30 do
        s:write("x")
        sent = sent + 1
        rill.sleep(300)
      end
      local cut = reader:status() ~= "running"
      s:close()
      local _, raw, why = rill.wait(reader)
      return cut, sent, raw, why
    end

    -- A POST of 100 bytes whose head is sent; returns the socket.
    local function post(port, path)
      local s = helper.connect(port)
      s:write("POST " .. (path or "/") .. " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
      return s
    end

    -- A GET on a new connection: what came back, and how the connection
    -- ended (a connection closed at once may fail the connect or the write).
    local function try_get(port)
      local s, cerr = rill.connect("127.0.0.1", port, 5000)
      if not s then return "", cerr end
      s:settimeout(5000)
      local ok, err = s:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local parts = {}
      while ok do
        local chunk
        chunk, err = s:read_some()
        if not chunk then break end
        parts[#parts + 1] = chunk
      end
      s:close()
      return table.concat(parts), err or "closed"
    end

    for _, variant in ipairs({"raises", "ignores it"}) do
      it("408 and a closed connection for a body dripped below min_body_rate once " ..
        "body_rate_grace is used, when the handler " .. variant, function()
          local port
          local got = {}
          l, port = helper.listen(function(req, res)
            got.data, got.err = req.body:read_all()
            if variant == "raises" then error("the body failed on purpose: " .. tostring(got.err)) end
          end, {min_body_rate = 100, body_rate_grace = 1000})
          local cut, sent, raw, why = drip(post(port))
          assert.is_true(cut, "the server held a client dripping 3 B/s for " .. sent .. " bytes")
          assert.is_nil(got.data)
          assert.equal("timeout", got.err)
          assert.same({408}, statuses(raw))
          assert.matches("\r\nConnection: close\r\n", raw)
          assert.equal("closed", why)
        end)
    end

    -- A body that brings nothing at all is below any rate: once the grace is
    -- used (1 s here) it is too slow, without waiting for a byte that would
    -- show it, or for body_timeout (60 s here).
    it("408 for a body that sends nothing once body_rate_grace is used", function()
      local port
      local got = {}
      l, port = helper.listen(function(req, res)
        got.data, got.err = req.body:read_all()
      end, {min_body_rate = 100, body_rate_grace = 1000, body_timeout = 60000})
      local s = post(port)
      s:settimeout(10000)
      local raw, why = helper.read_to_end(s)
      assert.equal("closed", why, "the server held a body that sent nothing")
      assert.same({408}, statuses(raw))
      assert.equal("timeout", got.err)
    end)

    -- The client sends 256 KiB at once; the handler takes 64 KiB (what one
    -- read from the socket brings) every 300 ms. By wall time it is far
    -- behind 1 MB/s after 0.5 s of grace; by time spent waiting for the
    -- client it never waited at all.
    it("does not count a handler slow between reads against the client (only waiting counts)",
      function()
        local port
        l, port = helper.listen(function(req, res)
          local n = 0
          while true do
            local chunk, err = req.body:read_some(65536)
            if not chunk then
              if err then return res:status(500):send(err) end
              break
            end
            n = n + #chunk
            rill.sleep(300)
          end
          res:send(tostring(n))
        end, {min_body_rate = 1000000, body_rate_grace = 500})
        local raw = helper.raw(port, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 262144\r\n" ..
          "Connection: close\r\n\r\n" .. string.rep("s", 262144), 10000)
        assert.same({200}, statuses(raw), raw:sub(1, 200))
        assert.matches("\r\n\r\n262144$", raw)
      end)

    it("closes a 4th connection from one address at once while 3 are open, " ..
      "and accepts one again when one of them closes", function()
        local port
        l, port = helper.listen(function(req, res) res:send(req.path) end,
          {max_connections_per_address = 3})
        local open = {}
        for i = 1, 3 do
          open[i] = helper.connect(port)
          open[i]:write("GET /" .. i .. " HTTP/1.1\r\nHost: x\r\n\r\n")
          local _, _, body = helper.read_response(open[i])
          assert.equal("/" .. i, body)
        end
        local raw, why = try_get(port)
        assert.equal("", raw, "a 4th connection was served")
        assert.truthy(why == "closed" or why:match("^ECONN") or why:match("^EPIPE"), why)
        open[1]:close()
        -- the server has seen it go
        for _ = 1, 500 do
          if l:connections() == 2 then break end
          rill.sleep(10)
        end
        assert.equal(2, l:connections())
        raw = helper.raw(port, "GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert.matches("\r\n\r\n/5$", raw)
        -- the others were not disturbed
        open[2]:write("GET /2b HTTP/1.1\r\nHost: x\r\n\r\n")
        local _, _, body = helper.read_response(open[2])
        assert.equal("/2b", body)
        open[2]:close()
        open[3]:close()
      end)

    it("takes --min-body-rate, --body-rate-grace and --max-connections-per-address " ..
      "on the command line", function()
        local srv = helper.serve("examples/echo.lua", {"--workers", "1", "--min-body-rate", "100",
          "--body-rate-grace", "1", "--max-connections-per-address", "1"})
        finally(function() srv.stop() end)
        local dripping = post(srv.port, "/count")
        local raw, why = try_get(srv.port)
        assert.equal("", raw, "a second connection from 127.0.0.1 was served")
        local cut, sent, raw2 = drip(dripping)
        assert.is_true(cut, "the server held a client dripping 3 B/s for " .. sent .. " bytes")
        assert.same({408}, statuses(raw2))
        assert.equal(0, srv.stop())
      end)

    it("lets a held response writer go on when a slow client reads again", function()
      local port
      local total = 32 * 1024 * 1024
      l, port = helper.listen(function(req, res)
        local block = string.rep("s", 65536)
        res:header("Content-Length", tostring(total))
        for _ = 1, total / #block do assert(res:write(block)) end
      end)
      local s = helper.connect(port)
      s:write("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local got = 0
      local head = assert(s:read_until("\r\n\r\n"))
      assert.matches("Content%-Length: 33554432", head)
      while true do
        rill.sleep(1) -- a reader slower than the writer: the writer waits, many times
        local chunk = s:read_some(256 * 1024)
        if not chunk then break end
        got = got + #chunk
      end
      assert.equal(total, got)
      s:close()
    end)

    it("holds a response writer while the client does not read, then times it out",
      function()
        local port
        local wrote, err = 0, nil
        l, port = helper.listen(function(req, res)
          local block = string.rep("d", 65536)
          while true do
            local ok, e = res:write(block)
            if not ok then
              err = e
              return
            end
            wrote = wrote + #block
          end
        end, {send_timeout = 500})
        local s = helper.connect(port)
        s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        rill.sleep(1500)
        assert.equal("timeout", err)
        assert.is_true(wrote < 32 * 1024 * 1024, "wrote " .. wrote)
        s:close()
      end)
  end)

  -- A handler that gives up on a chunked body (its read timed out) while
  -- the trailer section is cut inside a line, then answers (or raises)
  -- after the rest of the line came. On ba67d2a the check of the buffered
  -- body at the answer read before the trailer buffer it had not copied
  -- (SIGSEGV: the worker and every connection lost). The server is a child
  -- process, so that a crash fails the spec instead of ending the run.
  describe("a chunked body given up inside its trailer section", function()
    local TRAILER_APP = [[
local rill = require "rill"
local go = false
return function(req, res)
  if req.path == "/go" then
    go = true
    return res:send("going")
  end
  if req.path == "/trailer" then
    req.body:settimeout(100)
    local data, err = req.body:read_all()
    rill.log("info", "gave up on the body: " .. tostring(err))
    while not go do rill.sleep(5) end -- until the spec says the rest was sent
    go = false
    if req.query_string == "raise" then error("giving up on purpose") end
    return res:send("gave up: " .. tostring(err))
  end
  res:send("served " .. req.path)
end
]]
    local tmp, app_path, srv
    before_each(function()
      tmp = os.tmpname()
      app_path = tmp .. ".lua"
      local f = assert(io.open(app_path, "w"))
      f:write(TRAILER_APP)
      f:close()
      srv = helper.serve(app_path, {"--workers", "1"})
    end)
    after_each(function()
      srv.stop()
      os.remove(app_path)
      os.remove(tmp)
    end)

    local function request(s, path)
      s:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n")
      local status, _, body = helper.read_response(s)
      return status, body
    end

    for _, variant in ipairs({"answers", "raises"}) do
      it("the handler " .. variant .. " after the rest of the trailer came, " ..
        "and the server serves everyone else", function()
          local other = helper.connect(srv.port) -- a keep-alive client from before
          assert.same({200, "served /before"}, {request(other, "/before")})
          local s = helper.connect(srv.port)
          s:write("POST /trailer" .. (variant == "raises" and "?raise" or "") ..
            " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "3\r\nabc\r\n0\r\nX: y\r")
          srv.wait_log("gave up on the body: timeout")
          s:write("\n\r\n")
          -- the rest is in the server's socket before it lets the handler answer
          local go = helper.connect(srv.port)
          assert.same({200, "going"}, {request(go, "/go")})
          go:close()
          local status, headers, body = helper.read_response(s)
          if variant == "answers" then
            assert.equal(200, status, "no answer: " .. tostring(headers))
            assert.equal("gave up: timeout", body)
          else
            assert.equal(500, status, "no answer: " .. tostring(headers))
          end
          s:close()
          assert.same({200, "served /after"}, {request(other, "/after")})
          other:close()
          local code, out = helper.curl(url(srv.port, "/new"))
          assert.equal(0, code)
          assert.equal("served /new", out)
          assert.equal(0, srv.stop())
        end)
    end
  end)

  -- RFC 9112 §6.3 and §11.2: each of these must get a 4xx and a closed
  -- connection; the request pipelined behind it must not be served.
  describe("rejects request smuggling shapes:", function()
    local port
    local served
    before_each(function()
      served = {}
      l, port = helper.listen(function(req, res)
        served[#served + 1] = req.path
        -- a body with broken framing is answered with 400 once read
        if req.path ~= "/unread" then req.body:read_all() end
        res:send("served " .. req.path)
      end)
    end)

    local function rejects(name, head, status)
      it(name, function()
        local raw, why = helper.raw(port, head ..
          "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        local got = statuses(raw)
        assert.equal(1, #got, "responses: " .. raw)
        assert.equal(status or 400, got[1])
        assert.matches("\r\nConnection: close\r\n", raw)
        assert.equal("closed", why)
        for _, p in ipairs(served) do assert.not_equal("/smuggled", p) end
      end)
    end

    rejects("Content-Length with Transfer-Encoding",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    rejects("Transfer-Encoding with Content-Length",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n")
    rejects("conflicting Content-Lengths",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc")
    rejects("a Content-Length list",
      "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc")
    rejects("a Transfer-Encoding whose last coding is not chunked",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n")
    rejects("a Transfer-Encoding that is not chunked",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n")
    rejects("a Transfer-Encoding that only resembles chunked",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n")
    rejects("a transfer coding we do not implement before chunked",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501)
    rejects("Transfer-Encoding in HTTP/1.0",
      "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    rejects("a chunk size that is not hex",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    rejects("a negative chunk size",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-3\r\nabc\r\n0\r\n\r\n")
    rejects("a chunk size with a 0x prefix",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n")
    rejects("an overflowing chunk size",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000003\r\nabc\r\n0\r\n\r\n")
    rejects("a chunk longer than its size",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n")
    rejects("a bare LF in chunk framing",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n")
    rejects("obs-fold",
      "GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n")
    rejects("whitespace before the colon",
      "GET / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nabcde")
    rejects("a NUL byte in a field",
      "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n")
    rejects("a control byte in a field",
      "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\1b\r\n\r\n")
    rejects("a bare LF line ending",
      "GET / HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n")
    rejects("a missing Host in HTTP/1.1",
      "GET / HTTP/1.1\r\nX-A: b\r\n\r\n")
    rejects("two Host fields",
      "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
    rejects("an oversized head",
      "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " .. string.rep("b", 20000) .. "\r\n\r\n", 431)
    rejects("an unsupported HTTP version",
      "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505)

    rejects("a bare CR in the head",
      "GET / HTTP/1.1\r\nHost: x\r\n\rX-Smuggled: a\r\n\r\n")
    rejects("a bare CR inside a field value",
      "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n")
    rejects("a trailer line without a colon",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-No-Colon\r\n\r\n")
    rejects("a bare CR in the trailer section",
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\rZ: w\r\n\r\n")

    it("does not take what follows a broken body its handler did not read as a request",
      function()
        -- The handler answers without reading: its answer goes out as it
        -- was (it does not depend on when the broken bytes arrived), and
        -- the connection closes when draining meets the broken framing.
        local raw, why = helper.raw(port,
          "POST /unread HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" ..
          "zz\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n", 5000)
        assert.equal("closed", why)
        for _, p in ipairs(served) do assert.not_equal("/smuggled", p) end
        assert.same({"/unread"}, served)
        assert.equal(1, #statuses(raw))
      end)

    it("and keeps serving other clients while rejecting", function()
      local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
      assert.same({400}, statuses(raw))
      local code, out = helper.curl(url(port, "/after"))
      assert.equal("served /after", out)
    end)
  end)
end)
