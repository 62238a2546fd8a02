-- The stream contract (DESIGN.md), over TCP sockets on loopback.
local rill = require "rill"
local helper = require "spec.helper"

-- A TCP server whose handler is fn(sock); returns the listener and port.
local function server(fn)
  local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = fn})
  return l, l:port()
end

describe("stream", function()
  local l
  after_each(function()
    if l then l:close() end
    l = nil
  end)

  describe("read(n)", function()
    it("returns exactly n bytes, however they were split on the wire", function()
      local port
      l, port = server(function(sock)
        for _, piece in ipairs({"ab", "c", "defg", "hij"}) do
          sock:write(piece)
          rill.sleep(5)
        end
      end)
      local s = helper.connect(port)
      assert.equal("abcde", s:read(5))
      assert.equal("fgh", s:read(3))
      s:close()
    end)

    it("returns fewer bytes only at the end of the stream, then nil", function()
      local port
      l, port = server(function(sock) sock:write("xyz") end)
      local s = helper.connect(port)
      assert.equal("xyz", s:read(10))
      assert.is_nil(s:read(1))
      assert.is_nil(s:read(1))
      s:close()
    end)

    it("returns the empty string for read(0) without waiting", function()
      local port
      l, port = server(function(sock) rill.sleep(1000) end)
      local s = helper.connect(port)
      assert.equal("", s:read(0))
      s:close()
    end)
  end)

  describe("read_some(max)", function()
    it("returns what has arrived, up to max, without waiting for more", function()
      local port
      l, port = server(function(sock)
        sock:write("hello")
        rill.sleep(300)
        sock:write("world")
      end)
      local s = helper.connect(port)
      local t0 = rill.now()
      assert.equal("hel", s:read_some(3))
      assert.equal("lo", s:read_some(100))
      assert.is_true(rill.now() - t0 < 250)
      assert.equal("world", s:read_some(100))
      assert.is_nil(s:read_some())
      s:close()
    end)
  end)

  -- read, read_some and write answer from C through the FFI when the bytes
  -- are there (or the write is taken); every other case goes to the C
  -- methods. Both must give the same answers, in any mix.
  describe("fast and slow paths", function()
    it("give the same bytes in any mix of reads", function()
      local port
      l, port = server(function(sock)
        sock:write("hello world\nrest of it")
        sock:flush()
        rill.sleep(50)
        sock:write("tail")
      end)
      local s = helper.connect(port)
      assert.equal("hello world\nrest of it", s:read(22)) -- waits (slow), gathers
      assert.equal("tail", s:read_some())
      s:close()
      l:close()
      l, port = server(function(sock) sock:write("hello world\nrest of it") end)
      s = helper.connect(port)
      rill.sleep(50) -- all of it arrived: the fast paths answer
      assert.equal("hello", s:read(5))
      assert.equal(" world", s:read_until("\n"))
      assert.equal("re", s:read_some(2))
      assert.equal("st ", s:read(3))
      assert.equal("of it", s:read_some(100))
      assert.is_nil(s:read_some()) -- the end
      assert.is_nil(s:read(1))
      s:close()
    end)

    it("check what they are given as the C methods do", function()
      local port
      l, port = server(function(sock) sock:write("abc") end)
      local s = helper.connect(port)
      rill.sleep(50)
      assert.has_error(function() s:read_some(0) end)
      assert.has_error(function() s:read(-1) end)
      assert.has_error(function() s.read_some({}) end)
      assert.has_error(function() s.write({}, "x") end)
      assert.equal("abc", s:read_some())
      assert.is_true(s:write("x"))
      assert.is_true(s:write("a", "b", 3)) -- several pieces: the C method
      s:close()
      assert.has_error(function() s:read_some() end, "attempt to use a closed stream")
      assert.has_error(function() s:write("x") end, "attempt to use a closed stream")
    end)
  end)

  describe("read_until(sep, max)", function()
    it("returns the bytes before a separator split across writes", function()
      local port
      l, port = server(function(sock)
        sock:write("one\r")
        rill.sleep(10)
        sock:write("\ntwo\r\nthr")
        rill.sleep(10)
        sock:write("ee\r\n")
      end)
      local s = helper.connect(port)
      assert.equal("one", s:read_until("\r\n"))
      assert.equal("two", s:read_until("\r\n"))
      assert.equal("three", s:read_until("\r\n"))
      s:close()
    end)

    it("does not consume bytes after the separator", function()
      local port
      l, port = server(function(sock) sock:write("head\n\nBODYBYTES") end)
      local s = helper.connect(port)
      assert.equal("head", s:read_until("\n\n"))
      assert.equal("BODYBYTES", s:read(9))
      s:close()
    end)

    it("finds a separator whose first bytes came in an earlier read", function()
      local port
      l, port = server(function(sock)
        sock:write("abc--")
        rill.sleep(10)
        sock:write("-+-rest")
      end)
      local s = helper.connect(port)
      assert.equal("abc--", s:read_until("-+-"))
      assert.equal("rest", s:read(4))
      s:close()
    end)

    it("fails with 'too long' when no separator comes within max bytes", function()
      local port
      l, port = server(function(sock) sock:write(string.rep("x", 100) .. "\n") end)
      local s = helper.connect(port)
      local line, err = s:read_until("\n", 50)
      assert.is_nil(line)
      assert.equal("too long", err)
      s:close()
    end)

    it("returns nil, 'closed' and the partial line at the end of the stream", function()
      local port
      l, port = server(function(sock) sock:write("no newline") end)
      local s = helper.connect(port)
      local line, err, partial = s:read_until("\n")
      assert.is_nil(line)
      assert.equal("closed", err)
      assert.equal("no newline", partial)
      s:close()
    end)
  end)

  describe("timeouts", function()
    it("ends a read with nil, 'timeout' and the partial data; the stream stays usable",
      function()
        local port
        l, port = server(function(sock)
          sock:write("par")
          rill.sleep(300)
          sock:write("tial!")
        end)
        local s = helper.connect(port)
        s:settimeout(100)
        local data, err, partial = s:read(8)
        assert.is_nil(data)
        assert.equal("timeout", err)
        assert.equal("par", partial)
        s:settimeout(2000)
        assert.equal("tial!", s:read(5))
        s:close()
      end)
  end)

  describe("misuse", function()
    it("gives a second concurrent reader an error", function()
      local port
      l, port = server(function(sock) rill.sleep(500) end)
      local s = helper.connect(port)
      local t = rill.spawn(function() return s:read_some() end)
      rill.sleep(20)
      local ok, err = pcall(s.read_some, s)
      assert.is_false(ok)
      assert.matches("reader waiting", err)
      s:close()
      local _, data, rerr = rill.wait(t)
      assert.is_nil(data)
      assert.equal("closed", rerr)
    end)

    it("raises on a closed stream", function()
      local port
      l, port = server(function(sock) end)
      local s = helper.connect(port)
      s:close()
      assert.has_error(function() s:read(1) end, "attempt to use a closed stream")
      assert.has_error(function() s:write("x") end, "attempt to use a closed stream")
    end)

    it("raises in a plain coroutine, where it could not wait", function()
      local port
      l, port = server(function(sock) rill.sleep(200) end)
      local s = helper.connect(port)
      local co = coroutine.create(function() return s:read(1) end)
      local ok, err = coroutine.resume(co)
      assert.is_false(ok)
      assert.matches("rill thread", err)
      s:close()
    end)
  end)

  describe("errors", function()
    it("reports a refused connection by name", function()
      local probe = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function() end})
      local port = probe:port()
      probe:close()
      rill.sleep(10)
      local s, err = rill.connect("127.0.0.1", port)
      assert.is_nil(s)
      assert.matches("^ECONNREFUSED", err)
    end)

    it("resolves names", function()
      local port
      l, port = server(function(sock) sock:write("hi") end)
      local s = assert(rill.connect("localhost", port, 2000))
      assert.equal("hi", s:read(2))
      s:close()
    end)
  end)

  describe("writes", function()
    it("take several strings in one vectored write", function()
      local port
      l, port = server(function(sock) sock:write("a", "bc", "", "def") end)
      local s = helper.connect(port)
      assert.equal("abcdef", s:read(6))
      s:close()
    end)

    it("make the writer wait while the peer does not read (backpressure)", function()
      local written, reading = 0, false
      local port
      local done = false
      l, port = server(function(sock)
        local block = string.rep("x", 65536)
        while written < 64 * 1024 * 1024 do
          local ok = sock:write(block)
          if not ok then break end
          written = written + #block
        end
        done = true
      end)
      local s = helper.connect(port)
      rill.sleep(300)
      -- The kernel buffers a few MB; the writer must be held well short of 64 MB.
      local held = written
      assert.is_true(held < 32 * 1024 * 1024, "writer was not held back: " .. held)
      assert.is_false(done)
      rill.sleep(100)
      assert.equal(held, written)
      -- Reading lets it go on.
      local got = 0
      while got < 64 * 1024 * 1024 do
        local chunk = s:read_some(1024 * 1024)
        if not chunk then break end
        got = got + #chunk
      end
      assert.equal(64 * 1024 * 1024, got)
      s:close()
    end)

    it("shutdown ends the write side: the peer reads the end of the stream", function()
      local port
      local got = {}
      local finished = rill.spawn(function() end)
      l, port = server(function(sock)
        got.data = sock:read_all()
        sock:write("bye")
      end)
      local s = helper.connect(port)
      s:write("last words")
      assert.is_true(s:shutdown())
      assert.equal("bye", s:read_all())
      assert.equal("last words", got.data)
      s:close()
      rill.wait(finished)
    end)
  end)

  it("reads from the socket only when asked (backpressure on the reader's side)", function()
    -- A handler that never reads: the client's writes must stall.
    local port
    l, port = server(function(sock) rill.sleep(2000) end)
    local s = helper.connect(port)
    s:settimeout(500)
    local sent = 0
    local block = string.rep("y", 65536)
    while sent < 128 * 1024 * 1024 do
      local ok, err = s:write(block)
      if not ok then
        assert.equal("timeout", err)
        break
      end
      sent = sent + #block
    end
    assert.is_true(sent < 64 * 1024 * 1024, "the server read everything: " .. sent)
    s:close()
  end)
end)

-- DESIGN.md, "Who wakes a waiter": every object ends each wait it holds
-- exactly once, with nil, "closed" or the real reason when it closes. For
-- each kind of stream and each kind of wait one task waits and another
-- closes the stream (or the peer goes away); the waiter must be resumed
-- with nil and an error. rill.wait with a timeout turns a waiter left
-- stranded into a failure instead of a hung spec.
describe("closing a stream under a waiting task", function()
  local core = require "rill.core"
  local MB = 1024 * 1024
  local STRANDED_MS = 3000 -- how long a resumed waiter may take: far beyond need

  -- Waits (up to 5 s) until cond() is true, for what a handler does in
  -- another task that this one cannot wait on directly.
  local function eventually(cond, what)
    for _ = 1, 1000 do
      if cond() then return end
      rill.sleep(5)
    end
    error("never happened: " .. what)
  end

  -- A raw TCP server whose handler keeps each connection open without
  -- reading or writing (after prepare(sock), if given) until close();
  -- srv.conns holds the server sides, in the order accepted.
  local function held_server(opts, prepare)
    local srv = {conns = {}, done = false}
    local o = {host = "127.0.0.1", port = 0, handler = function(sock)
      if prepare then prepare(sock) end
      srv.conns[#srv.conns + 1] = sock
      while not srv.done do rill.sleep(20) end
    end}
    for k, v in pairs(opts or {}) do o[k] = v end
    local l = assert(rill.listen(o))
    srv.port = l:port()
    function srv.close()
      srv.done = true
      l:close()
    end
    return srv
  end

  -- Writes 1 MB blocks until one waits (the peer does not read); returns
  -- the write's results, or "never waited" after 64 MB.
  local function write_until_blocked(s, block)
    block = block or string.rep("w", MB)
    for _ = 1, 64 * MB / #block do
      local ok, err = s:write(block)
      if not ok then return ok, err end
    end
    return "never waited"
  end

  -- An unmasked server frame.
  local function frame(opcode, payload, fin)
    local n = #payload
    assert(n < 126)
    return string.char((fin == false and 0 or 0x80) + opcode, n) .. payload
  end

  -- A rill WebSocket client whose peer is a raw socket this spec drives:
  -- returns ws, the server side of the connection, and the server.
  local function ws_pair()
    local srv = held_server(nil, function(sock)
      local head = assert(sock:read_until("\r\n\r\n"))
      local key = head:match("\r\n[Ss]ec%-[Ww]eb[Ss]ocket%-[Kk]ey: *([^\r\n]+)")
      sock:write("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" ..
        "Connection: Upgrade\r\nSec-WebSocket-Accept: " .. core.ws_accept(key) .. "\r\n\r\n")
    end)
    local ws = assert(helper.ws(("ws://127.0.0.1:%d/"):format(srv.port), {close_timeout = 200}))
    return ws, srv.conns[1], srv
  end

  local function certs()
    local dir = helper.certs()
    return {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"},
      {ca = dir .. "/ca.crt", server_name = "a.test"}
  end

  -- Each case: setup() → wait (run by the waiter task), close (run by this
  -- task once the waiter waits), cleanup; expect: a pattern for the error.
  local cases = {}
  local function case(name, expect, setup)
    cases[#cases + 1] = {name = name, expect = expect, setup = setup}
  end
  local CLOSED = "^closed$"
  local ANY = "^%a" -- "closed" or the transport's error, e.g. "ECONNRESET: ..."
  -- A peer that ends a byte stream cleanly (a FIN; a WebSocket close frame
  -- under as_stream()) ends it: the reader gets nil and no error, as at
  -- any end of stream (DESIGN.md: "nil at end").
  local END = false

  local reads = {
    read_some = function(s) return s:read_some() end,
    read = function(s) return s:read(10) end,
    read_until = function(s) return s:read_until("\n") end,
  }
  local read_names = {"read_some", "read", "read_until"}

  -- TCP sockets and TLS sockets (TLS from the connect, and after starttls).
  local function tcp_client()
    local srv = held_server()
    local s = helper.connect(srv.port)
    return s, srv
  end
  local function tls_client()
    local server_tls, client_tls = certs()
    local srv = held_server({tls = server_tls})
    local s = assert(rill.connect("127.0.0.1", srv.port, {timeout = 5000, tls = client_tls}))
    return s, srv
  end
  local function starttls_client()
    local server_tls, client_tls = certs()
    local srv = held_server(nil, function(sock) assert(sock:starttls(server_tls)) end)
    local s = helper.connect(srv.port)
    assert(s:starttls(client_tls))
    return s, srv
  end
  for _, kind in ipairs({{"TCP socket", tcp_client}, {"TLS socket", tls_client},
    {"socket after starttls", starttls_client}}) do
    local name, make = kind[1], kind[2]
    for _, r in ipairs(read_names) do
      case(name .. ": " .. r .. ", closed by another task", CLOSED, function()
        local s, srv = make()
        return function() return reads[r](s) end, function() s:close() end, srv.close
      end)
    end
    case(name .. ": write, closed by another task", CLOSED, function()
      local s, srv = make()
      return function() return write_until_blocked(s) end, function() s:close() end, srv.close
    end)
    case(name .. ": read_some, the peer ends the connection", END, function()
      local s, srv = make()
      return function() return s:read_some() end, function()
        eventually(function() return srv.conns[1] end, "accepted")
        srv.conns[1]:close()
      end, function() s:close(); srv.close() end
    end)
  end

  -- TLS handshakes: starttls, and rill.connect with tls, against a server
  -- that accepts and never answers.
  case("TCP socket: starttls handshake, closed by another task", CLOSED, function()
    local srv = held_server()
    local s = helper.connect(srv.port)
    local _, client_tls = certs()
    return function() return s:starttls(client_tls) end, function() s:close() end, srv.close
  end)
  case("TCP socket: starttls handshake, the peer goes away", ANY, function()
    local srv = held_server()
    local s = helper.connect(srv.port)
    local _, client_tls = certs()
    return function() return s:starttls(client_tls) end, function()
      eventually(function() return srv.conns[1] end, "accepted")
      srv.conns[1]:close()
    end, function() s:close(); srv.close() end
  end)
  case("rill.connect with tls: handshake, the peer goes away", ANY, function()
    local srv = held_server()
    local _, client_tls = certs()
    return function()
      return rill.connect("127.0.0.1", srv.port, {tls = client_tls})
    end, function()
      eventually(function() return srv.conns[1] end, "accepted")
      srv.conns[1]:close()
    end, srv.close
  end)

  -- Pipes of a child process.
  for _, r in ipairs(read_names) do
    case("pipe (stdout): " .. r .. ", closed by another task", CLOSED, function()
      local p = assert(rill.exec{"sleep", "30", stdout = "pipe"})
      return function() return reads[r](p.stdout) end, function() p.stdout:close() end,
        function() p:kill(9); p:wait() end
    end)
  end
  case("pipe (stdin): write, closed by another task", CLOSED, function()
    local p = assert(rill.exec{"sleep", "30", stdin = "pipe"})
    return function() return write_until_blocked(p.stdin, string.rep("p", 65536)) end,
      function() p.stdin:close() end, function() p:kill(9); p:wait() end
  end)
  case("pipe (stdin): write, the child goes away", ANY, function()
    local p = assert(rill.exec{"sleep", "30", stdin = "pipe"})
    return function() return write_until_blocked(p.stdin, string.rep("p", 65536)) end,
      function() p:kill(9); p:wait() end, function() p.stdin:close() end
  end)

  -- HTTP request bodies, in a handler: another thread of the handler closes
  -- the body, or the client goes away. The waiter is a thread the handler
  -- spawns; the outcome comes back in the response, or through `waiter`.
  for _, r in ipairs(read_names) do
    case("HTTP request body: " .. r .. ", closed by another thread of the handler", CLOSED,
      function()
        local l, port = helper.listen(function(req, res)
          local t = rill.spawn(function() return reads[r](req.body) end)
          rill.yield()
          local status = t:status()
          req.body:close()
          local ok, a, b = rill.wait(t, STRANDED_MS)
          res:send(table.concat({status, tostring(ok), tostring(a), tostring(b)}, "|"))
        end)
        local s = helper.connect(port)
        return function()
          s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
          local _, _, body = helper.read_response(s)
          local status, ok, a, b = (body or ""):match("^(.-)|(.-)|(.-)|(.*)$")
          if status ~= "running" then return "the read did not wait: " .. tostring(body) end
          if ok ~= "true" then return "the waiter was not resumed: " .. tostring(body) end
          return a ~= "nil" and a or nil, b ~= "nil" and b or nil
        end, function() end, function() s:close(); l:close() end
      end)
  end
  -- The results of a handler's waiter, as this task's own.
  local function handler_outcome(ok, a, b)
    if ok == nil then return "(the handler's waiter was never resumed: stranded)" end
    if not ok then error(a, 0) end
    return a, b
  end
  case("HTTP request body: read_some, the client goes away", ANY, function()
    local waiter
    local l, port = helper.listen(function(req, res)
      waiter = rill.spawn(function() return req.body:read_some() end)
      while waiter:status() == "running" do rill.sleep(20) end
    end)
    local s = helper.connect(port)
    return function()
      s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n" ..
        "Expect: 100-continue\r\n\r\n")
      -- 100 Continue goes out when the handler's thread reads the body
      assert(s:read_until("\r\n\r\n"))
      s:close()
      return handler_outcome(rill.wait(waiter, STRANDED_MS))
    end, function() end, function() l:close() end
  end)
  case("HTTP response: write, the client goes away", ANY, function()
    local waiter
    local l, port = helper.listen(function(req, res)
      waiter = rill.spawn(function() return write_until_blocked(res) end)
      while waiter:status() == "running" do rill.sleep(20) end
    end)
    local s = helper.connect(port)
    return function()
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      -- the first bytes leave when the writer waits
      assert(s:read_some())
      s:close()
      return handler_outcome(rill.wait(waiter, STRANDED_MS))
    end, function() end, function() l:close() end
  end)

  -- HTTP client response bodies.
  local function client_body()
    local state = {}
    local l, port = helper.listen(function(req, res)
      res:header("Content-Length", "100")
      res:write("abc")
      while not state.go do rill.sleep(20) end
      if state.cut then error("cut on purpose") end
    end)
    local res = assert(rill.http.request{url = ("http://127.0.0.1:%d/"):format(port)})
    assert.equal("abc", res.body:read(3))
    return res, state, function()
      state.go = true
      l:close()
    end
  end
  case("HTTP client response body: read_some, closed by another task", CLOSED, function()
    local res, _, cleanup = client_body()
    return function() return res.body:read_some() end, function() res.body:close() end, cleanup
  end)
  case("HTTP client response body: read_some, the server goes away", ANY, function()
    local res, state, cleanup = client_body()
    return function() return res.body:read_some() end, function()
      state.cut = true
      state.go = true
    end, cleanup
  end)

  -- WebSockets: ws:receive(), a message stream, ws:as_stream(), and sends.
  local ws_closers = {
    {"ws:close() in another task", function(ws) ws:close() end},
    {"the peer's close frame", function(_, peer) peer:write(frame(8, "\3\232")) end},
    {"the peer goes away", function(_, peer) peer:close() end},
  }
  for _, c in ipairs(ws_closers) do
    case("ws:receive(), " .. c[1], CLOSED, function()
      local ws, peer, srv = ws_pair()
      return function() return ws:receive() end, function() c[2](ws, peer) end,
        function() ws:close(); srv.close() end
    end)
    case("WebSocket message stream: read_some, " .. c[1], CLOSED, function()
      local ws, peer, srv = ws_pair()
      peer:write(frame(2, "abc", false))
      local msg = assert(ws:receive())
      assert.equal("abc", msg:read(3))
      return function() return msg:read_some() end, function() c[2](ws, peer) end,
        function() ws:close(); srv.close() end
    end)
    -- as_stream() is a byte stream: the peer's close (a close frame, or the
    -- connection ended) is its end; a close of ours is an error, as on a
    -- socket.
    case("ws:as_stream(): read_some, " .. c[1], c == ws_closers[1] and CLOSED or END,
      function()
        local ws, peer, srv = ws_pair()
        local s = ws:as_stream()
        return function() return s:read_some() end, function() c[2](ws, peer) end,
          function() ws:close(); srv.close() end
      end)
  end
  case("ws:as_stream(): read_some, the stream closed by another task", CLOSED, function()
    local ws, _, srv = ws_pair()
    local s = ws:as_stream()
    return function() return s:read_some() end, function() s:close() end,
      function() ws:close(); srv.close() end
  end)
  local block = string.rep("b", 65536)
  for _, c in ipairs({ws_closers[1], ws_closers[3]}) do
    case("ws:send(): write, " .. c[1], c == ws_closers[1] and CLOSED or ANY, function()
      local ws, peer, srv = ws_pair()
      local sender = {write = function(_, data) return ws:send(data, "binary") end}
      return function() return write_until_blocked(sender, block) end,
        function() c[2](ws, peer) end, function() ws:close(); srv.close() end
    end)
    case("ws:as_stream(): write, " .. c[1], c == ws_closers[1] and CLOSED or ANY, function()
      local ws, peer, srv = ws_pair()
      local s = ws:as_stream()
      return function() return write_until_blocked(s, block) end,
        function() c[2](ws, peer) end, function() ws:close(); srv.close() end
    end)
  end

  it("resumes the waiter with nil and an error, for each kind of stream and of wait",
    function()
      local failed, report = {}, {}
      for _, c in ipairs(cases) do
        local wait, close, cleanup = c.setup()
        local waiter = rill.spawn(wait)
        rill.yield() -- the waiter runs until it waits
        local before = waiter:status()
        close()
        local ok, a, b = rill.wait(waiter, STRANDED_MS)
        cleanup()
        local why
        if before ~= "running" then
          why = "the wait ended before the close: " .. tostring(a) .. ", " .. tostring(b)
        elseif ok == nil then
          why = "the waiter was never resumed (stranded)"
        elseif not ok then
          why = "the waiter raised: " .. tostring(a)
        elseif a ~= nil then
          why = "the waiter got " .. tostring(a) .. " (" .. tostring(b) .. ")"
        elseif c.expect == END and b ~= nil then
          why = "the waiter got nil, " .. tostring(b) .. " where the stream ends"
        elseif c.expect ~= END and (type(b) ~= "string" or not b:match(c.expect)) then
          why = "the waiter got nil, " .. tostring(b) .. (b == nil and
            " (an end of stream, not an error)" or "")
        end
        report[#report + 1] = ("%s: %s"):format(c.name, why or ("nil, " .. tostring(b)))
        if why then failed[#failed + 1] = c.name .. ": " .. why end
      end
      io.stderr:write("\n", table.concat(report, "\n"), "\n")
      assert.equal(0, #failed, #failed .. " of " .. #cases .. " waits were not ended:\n" ..
        table.concat(failed, "\n"))
    end)
end)
