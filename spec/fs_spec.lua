-- rill.fs (files through libuv's thread pool) and res:send_file /
-- res:write_file, over HTTP (sendfile) and HTTPS (pooled reads), with curl.
local rill = require "rill"
local helper = require "spec.helper"
local fs = rill.fs

-- A scratch directory for the run, removed at the end.
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir .. "/sub") == 0)

local function write(name, data)
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(data)
  f:close()
  return dir .. "/" .. name
end

-- 200 000 bytes that differ at every offset that matters
local parts = {}
for i = 0, 19999 do parts[#parts + 1] = ("%09d\n"):format(i) end
local big = table.concat(parts)
local big_path = write("big.txt", big)
local small_path = write("small.txt", "hello, file\n")
write("sub/a", "a")
os.execute("ln -s small.txt " .. dir .. "/link")
os.execute("ln -s nowhere " .. dir .. "/dangling")

teardown(function() os.execute("rm -rf " .. dir) end)

describe("rill.fs", function()
  it("stat follows links and describes a file", function()
    local st = assert(fs.stat(dir .. "/link"))
    assert.equal("file", st.type)
    assert.equal(12, st.size)
    assert.is_true(st.mtime_sec > 1.6e9)
    assert.is_true(st.mtime >= st.mtime_sec and st.mtime < st.mtime_sec + 1)
    assert.equal(math.floor(st.mtime), st.mtime_sec)
    assert.is_number(st.ino)
    assert.is_number(st.dev)
    assert.equal(tonumber("644", 8), st.mode)
    assert.equal("directory", fs.stat(dir).type)
  end)

  it("lstat does not follow links", function()
    assert.equal("link", fs.lstat(dir .. "/link").type)
    assert.equal("link", fs.lstat(dir .. "/dangling").type)
  end)

  it("returns nil, message, code for each failure", function()
    local st, err, code = fs.stat(dir .. "/missing")
    assert.is_nil(st)
    assert.equal("ENOENT", code)
    assert.matches("^ENOENT: ", err)
    assert.matches("missing", err)
    assert.equal("ENOTDIR", select(3, fs.stat(small_path .. "/x")))
    assert.equal("ENOENT", select(3, fs.stat(dir .. "/dangling")))
    assert.equal("ENOENT", select(3, fs.open(dir .. "/missing")))
    assert.equal("ENOTDIR", select(3, fs.readdir(small_path)))
    assert.equal("ENOENT", select(3, fs.realpath(dir .. "/dangling")))
    os.execute("ln -sf loop2 " .. dir .. "/loop1; ln -sf loop1 " .. dir .. "/loop2")
    assert.equal("ELOOP", select(3, fs.stat(dir .. "/loop1")))
  end)

  it("raises for misuse, naming the argument", function()
    assert.has_error(function() fs.stat() end)
    assert.has_error(function() fs.open(nil) end)
  end)

  it("realpath resolves links and dots", function()
    local real = assert(fs.realpath(dir .. "/sub/../link"))
    assert.equal(assert(fs.realpath(dir)) .. "/small.txt", real)
  end)

  it("readdir lists names and types without . and ..", function()
    local list = assert(fs.readdir(dir))
    local seen = {}
    for _, e in ipairs(list) do seen[e.name] = e.type end
    assert.is_nil(seen["."])
    assert.is_nil(seen[".."])
    assert.equal("file", seen["big.txt"])
    assert.equal("directory", seen["sub"])
    assert.equal("link", seen["link"])
  end)

  it("open reads ranges, sequentially or at offsets, and ends with nil", function()
    local f = assert(fs.open(big_path))
    assert.equal(big:sub(1, 10), f:read(10))
    assert.equal(big:sub(11, 30), f:read(20))
    assert.equal(big:sub(100001, 100005), f:read(5, 100000))
    assert.equal(big:sub(31, 40), f:read(10)) -- an offset read does not move on
    assert.equal(big:sub(199991), f:read(100, 199990))
    assert.is_nil(f:read(10, 200000))
    local st = assert(f:stat())
    assert.equal(#big, st.size)
    assert.equal("file", st.type)
    assert.is_true(f:close())
    assert.is_true(f:close())
    assert.has_error(function() f:read(1) end)
  end)

  it("reads a whole file in pieces", function()
    local f = assert(fs.open(big_path))
    local got = {}
    while true do
      local data, err = f:read(65536)
      assert.is_nil(err)
      if not data then break end
      got[#got + 1] = data
    end
    f:close()
    assert.equal(big, table.concat(got))
  end)

  it("reading a directory fails with EISDIR", function()
    local f = assert(fs.open(dir))
    assert.equal("EISDIR", select(3, f:read(10)))
    f:close()
  end)

  it("leaves no descriptor open after close or collection", function()
    local function count() return #assert(fs.readdir("/proc/self/fd")) end
    local base = count()
    for _ = 1, 20 do assert(fs.open(small_path)):close() end
    for _ = 1, 20 do assert(fs.open(small_path)) end
    collectgarbage()
    collectgarbage()
    assert.is_true(helper.eventually(function() return count() <= base end))
  end)
end)

describe("res:send_file and res:write_file", function()
  local l, port, l_tls, port_tls
  setup(function()
    local function handler(req, res)
      local q = req.query
      local offset, length = tonumber(q.offset), tonumber(q.length)
      local path = dir .. "/" .. (q.name or "big.txt")
      if q.how == "write" then
        res:header("X-Mode", "write")
        assert(res:write("<"))
        local f = assert(fs.open(path))
        local ok, err = res:write_file(f, offset, length)
        f:close()
        assert(ok, err)
        assert(res:write(">"))
      elseif q.how == "handle" then
        local f = assert(fs.open(path))
        assert(res:send_file(f, offset, length))
        assert(f:read(3, 0)) -- still open: the handler's
        f:close()
      else
        local ok, err = res:send_file(path, offset, length)
        if not ok then
          res._status = 404
          if not res.headers_sent then res:send(err) end
        end
      end
    end
    l, port = helper.listen(handler)
    local certs = helper.certs()
    l_tls = assert(rill.http.listen{host = "127.0.0.1", port = 0, handler = handler,
      tls = {cert = certs .. "/a.test.crt", key = certs .. "/a.test.key"}})
    port_tls = l_tls:port()
  end)
  teardown(function()
    l:close()
    l_tls:close()
  end)

  local function urls(path)
    return {helper.url(port, path), ("https://a.test:%d%s"):format(port_tls, path)}
  end
  local function get(url, ...)
    return helper.fetch("--resolve", "a.test:" .. port_tls .. ":127.0.0.1", "--cacert",
      helper.certs() .. "/ca.crt", url, ...)
  end

  it("sends a whole file byte-exact over HTTP and HTTPS", function()
    for _, url in ipairs(urls("/?name=big.txt")) do
      local status, h, body = get(url)
      assert.equal(200, status)
      assert.equal(tostring(#big), h["content-length"])
      assert.equal(#big, #body)
      assert.is_true(big == body, url)
    end
  end)

  it("sends a range given by offset and length, or offset to the end", function()
    for _, url in ipairs(urls("/?offset=12345&length=67890")) do
      local status, h, body = get(url)
      assert.equal(200, status)
      assert.equal("67890", h["content-length"])
      assert.is_true(big:sub(12346, 12345 + 67890) == body)
    end
    for _, url in ipairs(urls("/?offset=199990")) do
      local _, h, body = get(url)
      assert.equal("10", h["content-length"])
      assert.equal(big:sub(199991), body)
    end
    for _, url in ipairs(urls("/?offset=300000")) do
      local status, h, body = get(url)
      assert.equal(200, status)
      assert.equal("0", h["content-length"])
      assert.equal("", body)
    end
  end)

  it("writes a file as part of a streamed body", function()
    for _, url in ipairs(urls("/?how=write&offset=5&length=100000")) do
      local status, h, body = get(url)
      assert.equal(200, status)
      assert.equal("chunked", h["transfer-encoding"])
      assert.is_true("<" .. big:sub(6, 100005) .. ">" == body, url)
    end
  end)

  it("leaves a file object open for its handler", function()
    for _, url in ipairs(urls("/?how=handle&name=small.txt")) do
      local status, _, body = get(url)
      assert.equal(200, status)
      assert.equal("hello, file\n", body)
    end
  end)

  it("answers HEAD with the length and no body", function()
    for _, url in ipairs(urls("/?name=big.txt")) do
      local status, h, body = get(url, "-I")
      assert.equal(200, status)
      assert.equal(tostring(#big), h["content-length"])
      assert.equal("", body)
    end
  end)

  it("returns nil, err for a missing file", function()
    local status, _, body = get(helper.url(port, "/?name=nothing"))
    assert.equal(404, status)
    assert.matches("^ENOENT", body)
  end)

  it("keeps the connection for the next request", function()
    local code, out = helper.curl(helper.url(port, "/?name=small.txt"),
      helper.url(port, "/?offset=1&length=3"), helper.url(port, "/?name=small.txt"))
    assert.equal(0, code)
    assert.equal("hello, file\n" .. big:sub(2, 4) .. "hello, file\n", out)
  end)
end)
