-- Files and standard I/O as streams (issue 17): rill.fs.open's modes, a file
-- read and written as a stream, the few calls tools need (mkdir, rename,
-- remove), and rill.stdin / rill.stdout that never block the loop.
local rill = require "rill"
local helper = require "spec.helper"
local fs = rill.fs

local dir = os.tmpname()
os.remove(dir)
teardown(function() os.execute("rm -rf " .. dir) end)

-- Runs a rill script given as text with input on its stdin; returns code,
-- stdout, stderr.
local function script(code, input)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local rc, out, err = helper.run({helper.bin, "run", path}, {input = input})
  os.remove(path)
  return rc, out, err
end

describe("rill.fs files as streams", function()
  setup(function() assert(fs.mkdir(dir)) end)

  it("writes with w, appends with a, and reads lines back", function()
    local f = assert(fs.open(dir .. "/log", "w"))
    assert.is_true(f:write("one\n", "two\n"))
    f:close()
    f = assert(fs.open(dir .. "/log", "a"))
    assert.is_true(f:write("three"))
    f:close()
    local lines = {}
    f = assert(fs.open(dir .. "/log"))
    for line in f:lines() do lines[#lines + 1] = line end
    f:close()
    assert.same({"one", "two", "three"}, lines)
    -- w truncates
    f = assert(fs.open(dir .. "/log", "w"))
    f:write("x")
    f:close()
    assert.equal("x", assert(fs.open(dir .. "/log")):read_all())
  end)

  it("mixes read_until and read without losing bytes", function()
    local f = assert(fs.open(dir .. "/mix", "w+"))
    f:write("head\r\n\r\nbody bytes")
    f:close()
    f = assert(fs.open(dir .. "/mix"))
    assert.equal("head", f:read_until("\r\n\r\n"))
    assert.equal("body", f:read(4))
    assert.equal(" bytes", f:read_all())
    f:close()
  end)

  it("refuses wx on a file that exists, and a bad mode at the call", function()
    assert(fs.open(dir .. "/exists", "w")):close()
    local f, err, code = fs.open(dir .. "/exists", "wx")
    assert.is_nil(f)
    assert.equal("EEXIST", code)
    assert.matches("exists", err)
    assert.has_error(function() fs.open(dir .. "/x", "rw") end)
  end)

  it("makes directories, renames and removes files and empty directories", function()
    assert.is_true(fs.mkdir(dir .. "/d"))
    assert.equal("EEXIST", select(3, fs.mkdir(dir .. "/d")))
    assert(fs.open(dir .. "/d/a", "w")):close()
    assert.is_true(fs.rename(dir .. "/d/a", dir .. "/d/b"))
    assert.equal("ENOENT", select(3, fs.stat(dir .. "/d/a")))
    assert.equal("ENOTEMPTY", select(3, fs.remove(dir .. "/d")))
    assert.is_true(fs.remove(dir .. "/d/b"))
    assert.is_true(fs.remove(dir .. "/d"))
    assert.equal("ENOENT", select(3, fs.remove(dir .. "/d")))
  end)

  it("is a request body, sent with backpressure, and takes a response body", function()
    local data = ("0123456789abcdef"):rep(200000) -- 3.2 MB
    local f = assert(fs.open(dir .. "/up", "w"))
    f:write(data)
    f:close()
    local got
    local l = helper.listen(function(req, res)
      got = req.body:read_all(1e8)
      res:send(data)
    end)
    finally(function() l:close() end)
    local res = assert(rill.http.request{url = helper.url(l:port(), "/"), method = "PUT",
      body = assert(fs.open(dir .. "/up"))})
    local out = assert(fs.open(dir .. "/down", "w"))
    for chunk in res.body:chunks() do assert(out:write(chunk)) end
    out:close()
    assert.equal(#data, #got)
    assert.is_true(got == data)
    assert.is_true(assert(fs.open(dir .. "/down")):read_all(1e8) == data)
  end)
end)

describe("a large file as a request body", function()
  it("goes up in bounded memory: 512 MiB with RSS growing less than 48 MB", function()
    local path = dir .. "/sparse"
    assert(fs.open(path, "w")):close()
    assert(os.execute("truncate -s 512M " .. path) == 0)
    local got = 0
    local l = helper.listen(function(req, res)
      for chunk in req.body:chunks() do got = got + #chunk end
      res:send(tostring(got))
    end, {max_body_bytes = 0})
    finally(function()
      l:close()
      os.remove(path)
    end)
    local before = helper.rss("self")
    local res = assert(rill.http.request{url = helper.url(l:port(), "/"), method = "PUT",
      body = assert(fs.open(path)), headers = {["Content-Length"] = tostring(512 * 1048576)}})
    assert.equal(tostring(512 * 1048576), res.body:read_all())
    local after = helper.rss("self")
    -- (ASan keeps freed memory in quarantine: the bytes are counted alone)
    if not helper.sanitized then
      assert.is_true(after - before < 48 * 1048576, ("RSS grew %d bytes"):format(after - before))
    end
  end)
end)

describe("rill.stdin and rill.stdout", function()
  it("read standard input as a stream of lines", function()
    local rc, out, err = script([[
      local rill = require "rill"
      local lines, bytes = 0, 0
      for line in rill.stdin:lines() do lines, bytes = lines + 1, bytes + #line end
      rill.stdout:write(("%d lines, %d bytes\n"):format(lines, bytes))
    ]], ("a line\n"):rep(100000))
    assert.equal(0, rc, err)
    assert.equal("100000 lines, 600000 bytes\n", out)
  end)

  it("keep the loop running while stdin is slow: a timer ticks between its lines", function()
    -- the shell writes a line, waits, writes another: the script counts
    -- the ticks it saw between them
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write([[
      local rill = require "rill"
      local ticks = 0
      rill.timer(10, function() ticks = ticks + 1 end, 10):unref()
      local first = rill.stdin:read_until("\n")
      local at = ticks
      local second = rill.stdin:read_until("\n")
      rill.stdout:write(first, " ", second, " ", tostring(ticks > at), "\n")
    ]])
    f:close()
    finally(function() os.remove(path) end)
    local rc, out, err = helper.run({"sh", "-c",
      "(echo one; sleep 0.3; echo two) | " .. helper.bin .. " run " .. path})
    assert.equal(0, rc, err)
    assert.equal("one two true\n", out)
  end)

  it("write to standard error too", function()
    local rc, _, err = script([[
      local rill = require "rill"
      assert(rill.stderr:write("to stderr\n"))
    ]])
    assert.equal(0, rc)
    assert.equal("to stderr\n", err)
  end)
end)
