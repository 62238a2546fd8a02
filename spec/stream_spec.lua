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
