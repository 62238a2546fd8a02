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

describe("rill.fs.open with the open-file cache", function()
  it("reuses a recent open and its stat, and sees a change once the entry is older than cache",
    function()
      local path = write("cached.txt", "one")
      local f1 = assert(fs.open(path, {cache = 60000}))
      assert.equal(3, f1:stat().size)
      write("cached.txt", "three") -- same inode, rewritten
      os.execute("mv " .. path .. " " .. path .. ".old && printf 'second!' > " .. path)
      local f2 = assert(fs.open(path, {cache = 60000}))
      -- the cached open: the old file, and its stat as of the open
      assert.equal(3, f2:stat().size)
      assert.equal("three", f2:read(100, 0))
      local f3 = assert(fs.open(path, {cache = 0})) -- too old for 0 ms: opened again
      rill.sleep(5)
      local f4 = assert(fs.open(path, {cache = 1}))
      assert.equal(7, f4:stat().size)
      assert.equal("second!", f4:read(100, 0))
      for _, f in ipairs({f1, f2, f3, f4}) do f:close() end
    end)

  it("caches a failure too, with its code", function()
    local path = dir .. "/later.txt"
    local f, err, code = fs.open(path, {cache = 60000})
    assert.is_nil(f)
    assert.equal("ENOENT", code)
    assert.matches("later.txt", err)
    write("later.txt", "now")
    assert.equal("ENOENT", select(3, fs.open(path, {cache = 60000})))
    rill.sleep(5)
    assert.equal("now", assert(fs.open(path, {cache = 1})):read(10))
  end)

  it("opens a directory and says so in its stat", function()
    local f = assert(fs.open(dir .. "/sub", {cache = 1000}))
    assert.equal("directory", f:stat().type)
    f:close()
  end)

  it("keeps at most 1024 descriptors, closing those it drops", function()
    local function count() return #assert(fs.readdir("/proc/self/fd")) end
    for i = 1, 1100 do write("many" .. i, "x") end
    local base = count()
    for i = 1, 1100 do assert(fs.open(dir .. "/many" .. i, {cache = 60000})):close() end
    collectgarbage()
    assert.is_true(helper.eventually(function() return count() <= base + 1024 end),
      count() - base .. " more descriptors")
    assert.is_true(count() > base + 1000)
    for i = 1, 1100 do os.remove(dir .. "/many" .. i) end
  end)

  it("raises for options that are not a table", function()
    assert.has_error(function() fs.open(small_path, 5) end)
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

-- A server of its own (rill run), for what is measured on its process:
-- descriptors, memory, syscalls. It serves dir's files by path, over HTTP
-- and HTTPS, and logs how each send_file ended.
local function server_script(wrap_env)
  local certs = helper.certs()
  local script = dir .. "/server.lua"
  local f = assert(io.open(script, "wb"))
  f:write(([[
local rill = require "rill"
local dir = %q
local function handler(req, res)
  local ok, err = res:send_file(dir .. req.path)
  if not ok then rill.log("info", "send_file " .. req.path .. ": " .. tostring(err)) end
  if ok then rill.log("info", "sent " .. req.path) end
end
local l = assert(rill.http.listen{host = "127.0.0.1", port = 0, handler = handler})
local t = assert(rill.http.listen{host = "127.0.0.1", port = 0, handler = handler,
  tls = {cert = %q, key = %q}})
local f = io.open("/proc/self/stat")
local pid = f:read("*l"):match("^%%d+")
f:close()
rill.log("info", "listening on 127.0.0.1:" .. l:port() .. " tls " .. t:port() .. " pid " .. pid)
]]):format(dir, certs .. "/a.test.crt", certs .. "/a.test.key"))
  f:close()
  local srv = helper.start({"run", script}, nil, wrap_env)
  srv.tls_port = tonumber(srv.wait_log("tls (%d+)"))
  srv.pid = tonumber(srv.wait_log("pid (%d+)")) -- rill's, under strace too
  if wrap_env then
    -- stopping strace would only detach it: rill is told, and strace ends with it
    local stop = srv.stop
    function srv.stop()
      helper.run({"kill", "-TERM", tostring(srv.pid)})
      return stop()
    end
  end
  return srv
end

local function fd_count(pid)
  local list = fs.readdir("/proc/" .. pid .. "/fd")
  return list and #list
end

local MB = 1024 * 1024

describe("sending files, measured on the server", function()
  local srv
  setup(function()
    assert(os.execute("truncate -s 1G " .. dir .. "/huge.bin") == 0)
    srv = server_script()
  end)
  teardown(function()
    if srv then assert.equal(0, srv.stop()) end
    os.remove(dir .. "/huge.bin")
  end)

  -- Reads a response head and then n body bytes slowly (a pause between
  -- reads), then stops reading (the server is held back), then closes.
  local function slow_reader(port, path, tls, n)
    local s
    if tls then
      s = assert(rill.connect("127.0.0.1", port, {timeout = 10000,
        tls = {server_name = "a.test", ca = helper.certs() .. "/ca.crt"}}))
    else
      s = helper.connect(port)
    end
    s:settimeout(20000)
    s:write("GET " .. path .. " HTTP/1.1\r\nHost: a.test\r\n\r\n")
    local head = assert(s:read_until("\r\n\r\n"))
    local got = 0
    while got < n do
      local data = assert(s:read_some(65536))
      got = got + #data
      if got % (1 * MB) < 65536 then rill.sleep(5) end
    end
    return s, head, got
  end

  for _, tls in ipairs({false, true}) do
    local scheme = tls and "HTTPS" or "HTTP"
    it("sends 1 GiB to a slow reader over " .. scheme .. " in flat memory, and frees the " ..
      "descriptors when the reader leaves", function()
      local base = fd_count(srv.pid)
      local s, head = slow_reader(tls and srv.tls_port or srv.port, "/huge.bin", tls, 8 * MB)
      assert.matches("Content%-Length: 1073741824", head)
      -- held: the reader reads no more for a while; others are served
      for _ = 1, 5 do
        rill.sleep(100)
        local code, out = helper.curl(helper.url(srv.port, "/small.txt"))
        assert.equal(0, code)
        assert.equal("hello, file\n", out)
      end
      assert.is_true(fd_count(srv.pid) > base) -- the socket, the file
      s:close()
      assert.is_true(helper.eventually(function() return fd_count(srv.pid) <= base end),
        "descriptors: " .. fd_count(srv.pid) .. " > " .. base)
      srv.wait_log("send_file /huge.bin: ")
      if not helper.sanitized then
        local rss, peak = helper.rss(srv.pid)
        assert.is_true(peak < 48 * MB, ("peak RSS %.1f MB"):format(peak / MB))
        assert.is_true(rss < 48 * MB)
      end
    end)
  end

  it("sends 1 GiB whole over HTTP and HTTPS to curl, with the server's peak RSS under 48 MB",
    function()
      for _, url in ipairs({helper.url(srv.port, "/huge.bin"),
          ("https://a.test:%d/huge.bin"):format(srv.tls_port)}) do
        local code, out, err = helper.run({"curl", "-sS", "-o", "/dev/null", "-w",
          "%{size_download}", "--resolve", "a.test:" .. srv.tls_port .. ":127.0.0.1",
          "--cacert", helper.certs() .. "/ca.crt", url}, {timeout = 300000})
        assert.equal(0, code, err)
        assert.equal("1073741824", out)
      end
      if not helper.sanitized then
        local _, peak = helper.rss(srv.pid)
        assert.is_true(peak < 48 * MB, ("peak RSS %.1f MB"):format(peak / MB))
      end
    end)

  for _, tls in ipairs({false, true}) do
    local scheme = tls and "HTTPS" or "HTTP"
    it("cuts the response of a file truncated while it is sent over " .. scheme ..
      ", and goes on serving", function()
      local name = "shrinks" .. (tls and "_tls" or "")
      assert(os.execute("head -c 20000000 /dev/urandom > " .. dir .. "/" .. name) == 0)
      local s, _, got = slow_reader(tls and srv.tls_port or srv.port, "/" .. name, tls, 1 * MB)
      assert(os.execute("truncate -s 2000000 " .. dir .. "/" .. name) == 0)
      while true do
        local data = s:read_some(65536)
        if not data then break end
        got = got + #data
      end
      s:close()
      assert.is_true(got < 20000000, got .. " bytes")
      assert.matches("ended early", srv.wait_log("send_file /" .. name .. ": (.*)"))
      local code, out = helper.curl(helper.url(srv.port, "/small.txt"))
      assert.equal("hello, file\n", out)
    end)
  end

  it("sends a file deleted while it is sent whole (the open file lives on)", function()
    assert(os.execute("head -c 20000000 /dev/urandom > " .. dir .. "/gone") == 0)
    local s, _, got = slow_reader(srv.port, "/gone", false, 1 * MB)
    os.remove(dir .. "/gone")
    while true do
      local data = s:read_some(65536)
      if not data then break end
      got = got + #data
      if got >= 20000000 then break end
    end
    s:close()
    assert.equal(20000000, got)
    srv.wait_log("sent /gone")
  end)
end)

describe("plain HTTP uses sendfile(2)", function()
  local has_strace = helper.run({"strace", "-f", "-qq", "-o", "/dev/null", "true"}) == 0
  it("sends a file by sendfile from a thread, and no file bytes by write", function()
    if not has_strace then return pending("strace is not installed or may not trace here") end
    local log = dir .. "/strace.log"
    local srv = server_script({"strace", "-f", "-qq", "-o", log, "-e",
      "trace=sendfile,write,writev,read,pread64"})
    finally(srv.stop)
    local code, out = helper.curl(helper.url(srv.port, "/big.txt"))
    srv.stop()
    assert.equal(0, code)
    assert.is_true(out == big)
    local sendfiles, sent, file_reads = 0, 0, 0
    for line in io.lines(log) do
      local n = line:match("sendfile%(.-%) = (%d+)")
      if n then
        sendfiles = sendfiles + 1
        sent = sent + tonumber(n)
      end
      if line:match("pread64%(.-%) = 65536") then file_reads = file_reads + 1 end
    end
    assert.is_true(sendfiles >= 1, "no sendfile")
    assert.equal(#big, sent)
    assert.equal(0, file_reads)
  end)
end)
