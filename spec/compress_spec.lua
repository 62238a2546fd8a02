-- Response compression (rill.middleware.compress) and decoded request
-- bodies (rill.middleware.decompress, req:decompress), with curl
-- (--compressed, raw Accept-Encoding), python3's gzip and zlib, and raw
-- sockets.
local rill = require "rill"
local helper = require "spec.helper"

-- Text that compresses, n bytes, the same each time.
local function text(n)
  local words, t, i = {"alpha ", "bravo ", "charlie\n", "delta ", "{\"echo\":1} "}, {}, 0
  local len = 0
  while len < n do
    i = i + 1
    local w = words[(i * 7 + math.floor(i / 3)) % #words + 1]
    t[#t + 1] = w
    len = len + #w
  end
  return table.concat(t):sub(1, n)
end

local BIG = text(100000)

-- Writes s to a fresh temporary file; returns its path.
local function tmpfile(s, suffix)
  local path = os.tmpname() .. (suffix or "")
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
  return path
end

-- Runs python3 code with args; returns its stdout (fails the spec if it fails).
local function python(code, ...)
  local path = tmpfile(code, ".py")
  local rc, out, err = helper.run({"python3", path, ...})
  os.remove(path)
  assert(rc == 0, "python3 failed: " .. err)
  return out
end

describe("rill.middleware.compress", function()
  local l, port
  local state = {}

  setup(function()
    local app = rill.router()
    app:use(rill.middleware.compress())
    app:get("/big", function(req, res)
      res:header("Content-Type", "text/plain; charset=utf-8")
      res:send(BIG)
    end)
    app:get("/small", function(req, res)
      res:header("Content-Type", "text/plain")
      res:send("tiny")
    end)
    app:get("/json", function(req, res) res:json({text = BIG, n = 42}) end)
    app:get("/stream", function(req, res)
      res:header("Content-Type", "text/plain")
      for i = 1, 2000 do res:write(("%d %s\n"):format(i, BIG:sub(i, i + 40))) end
      res:write(BIG)
    end)
    app:get("/length", function(req, res)
      res:header("Content-Type", "text/plain")
      res:header("Content-Length", #BIG)
      res:write(BIG:sub(1, 50000))
      res:write(BIG:sub(50001))
    end)
    -- /as?type=&status=&cc=&ce=&etag=&vary=&range=: BIG with these headers
    app:get("/as", function(req, res)
      local q = req.query
      if q.type ~= "none" then res:header("Content-Type", q.type or "text/html") end
      if q.status then res:status(tonumber(q.status)) end
      if q.cc then res:header("Cache-Control", q.cc) end
      if q.ce then res:header("Content-Encoding", q.ce) end
      if q.etag then res:header("ETag", q.etag) end
      if q.vary then res:header("Vary", q.vary) end
      if q.range then res:header("Content-Range", q.range) end
      res:send(BIG)
    end)
    app:get("/events", function(req, res)
      local w = res:sse()
      w:send{data = "one"}
      -- the second event only once the client has read the first
      while not state.got_first do rill.sleep(5) end
      w:send{data = "two"}
      w:close()
    end)
    local custom = rill.router()
    custom:use(rill.middleware.compress{level = 1, min_size = 10, types = {"application/x-mine", "+yaml"}})
    custom:get("/custom/mine", function(req, res)
      res:header("Content-Type", req.query.type)
      res:send(req.query.body or BIG)
    end)
    app:get("/custom/mine", function(req, res) return custom(req, res) end)
    l, port = helper.listen(app)
  end)
  teardown(function() l:close() end)

  local function url(path) return helper.url(port, path) end

  -- The Content-Encoding chosen for an Accept-Encoding value (nil: none).
  local function chosen(accept)
    local args = {"-o", "/dev/null", "-D", "-", url("/big")}
    if accept then table.insert(args, 1, "Accept-Encoding: " .. accept) table.insert(args, 1, "-H") end
    local code, out = helper.curl(table.unpack(args))
    assert.equal(0, code)
    return out:lower():match("\ncontent%-encoding: ([^\r\n]*)")
  end

  it("negotiates Accept-Encoding with q-values, preferring gzip on a tie", function()
    local cases = {
      {"gzip", "gzip"}, {"deflate", "deflate"}, {"gzip, deflate", "gzip"},
      {"deflate, gzip", "gzip"}, {"deflate;q=1, gzip;q=1", "gzip"},
      {"gzip;q=0.5, deflate", "deflate"}, {"gzip;q=0", nil}, {"gzip;q=0, deflate;q=0.1", "deflate"},
      {"*", "gzip"}, {"*;q=0", nil}, {"gzip;q=0, *", "deflate"}, {"br", nil}, {"identity", nil},
      {"gzip;q=0.5, identity", nil}, {"gzip, identity;q=0.5", "gzip"}, {"GZIP", "gzip"},
      {"gzip;q=0.8", "gzip"}, {"identity;q=0, deflate;q=0.2", "deflate"},
      {"x-gzip", "gzip"}, {"br;q=1, gzip;q=0.8", "gzip"}, {"", nil}, {false, nil},
      {"gzip ; q=0.001", "gzip"}, {"gzip;q=0.000", nil},
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], chosen(c[1] or nil), "Accept-Encoding: " .. tostring(c[1]))
    end
    assert.equal("gzip", require("rill.encoding").negotiate("deflate;q=0.9, gzip"))
    assert.is_nil(require("rill.encoding").negotiate(nil))
  end)

  it("compresses res:send, res:json and a streamed body to exactly the bytes, with Vary and no Content-Length",
    function()
      local status, h, body = helper.fetch("--compressed", url("/big"))
      assert.equal(200, status)
      assert.equal("gzip", h["content-encoding"])
      assert.equal("Accept-Encoding", h.vary)
      assert.is_nil(h["content-length"])
      assert.equal("chunked", h["transfer-encoding"])
      assert.equal(BIG, body)
      local _, hj, json = helper.fetch("--compressed", url("/json"))
      assert.equal("gzip", hj["content-encoding"])
      assert.same({text = BIG, n = 42}, rill.json.decode(json))
      local want = {}
      for i = 1, 2000 do want[#want + 1] = ("%d %s\n"):format(i, BIG:sub(i, i + 40)) end
      want[#want + 1] = BIG
      for _, enc in ipairs({"gzip", "deflate"}) do
        local _, hs, stream = helper.fetch("-H", "Accept-Encoding: " .. enc, "--compressed",
          url("/stream"))
        assert.equal(enc, hs["content-encoding"])
        assert.equal(table.concat(want), stream)
      end
      -- a Content-Length the handler set is dropped: the body is chunked
      local _, hl, lbody = helper.fetch("--compressed", url("/length"))
      assert.equal("gzip", hl["content-encoding"])
      assert.is_nil(hl["content-length"])
      assert.equal(BIG, lbody)
      -- what goes on the wire is smaller, and real gzip
      local _, _, raw = helper.fetch("-H", "Accept-Encoding: gzip", url("/big"))
      assert.is_true(#raw < #BIG / 4)
      local path = tmpfile(raw, ".gz")
      local _, unzipped = helper.run({"gzip", "-dc", path})
      os.remove(path)
      assert.equal(BIG, unzipped)
    end)

  it("sends a client that accepts nothing the body as it is, with Vary", function()
    local _, h, body = helper.fetch(url("/big"))
    assert.is_nil(h["content-encoding"])
    assert.equal(tostring(#BIG), h["content-length"])
    assert.equal("Accept-Encoding", h.vary)
    assert.equal(BIG, body)
  end)

  it("skips small bodies, other types, encoded, ranged, no-transform and bodiless answers",
    function()
      local function enc(path)
        local status, h = helper.fetch("-H", "Accept-Encoding: gzip", url(path))
        return h["content-encoding"], status, h
      end
      local e, _, h = enc("/small")
      assert.is_nil(e)
      assert.equal("4", h["content-length"])
      assert.is_nil(h.vary)
      e, _, h = enc("/as?type=image/png")
      assert.is_nil(e)
      assert.equal(tostring(#BIG), h["content-length"])
      assert.is_nil(h.vary)
      assert.is_nil(enc("/as?type=none"))
      assert.is_nil(enc("/as?type=application/octet-stream"))
      assert.equal("gzip", enc("/as?type=application/json;%20charset=utf-8"))
      assert.equal("gzip", enc("/as?type=application/ld%2Bjson"))
      assert.equal("gzip", enc("/as?type=image/svg%2Bxml"))
      assert.equal("gzip", enc("/as?type=text/css"))
      assert.equal("gzip", enc("/as?type=text/event-stream"))
      assert.equal("br", enc("/as?ce=br"))
      e, _, h = enc("/as?cc=public,%20no-transform")
      assert.is_nil(e)
      assert.equal(tostring(#BIG), h["content-length"])
      local _, status = enc("/as?status=206&range=bytes%200-99999/200000")
      assert.equal(206, status)
      assert.is_nil((enc("/as?status=206&range=bytes%200-99999/200000")))
      assert.is_nil((enc("/as?range=bytes%200-99999/200000")))
      for _, s in ipairs({"204", "304"}) do
        local e2, st, h2 = enc("/as?status=" .. s)
        assert.equal(tonumber(s), st)
        assert.is_nil(e2)
        assert.is_nil(h2["transfer-encoding"])
      end
    end)

  it("appends to Vary, and turns a strong ETag weak", function()
    local _, h = helper.fetch("-H", "Accept-Encoding: gzip", url("/as?vary=Origin&etag=%22v1%22"))
    assert.equal("Origin, Accept-Encoding", h.vary)
    assert.equal('W/"v1"', h.etag)
    _, h = helper.fetch("-H", "Accept-Encoding: gzip",
      url("/as?vary=Accept-Encoding,%20Origin&etag=W/%22v2%22"))
    assert.equal("Accept-Encoding, Origin", h.vary)
    assert.equal('W/"v2"', h.etag)
    -- not compressed: the strong ETag stays
    _, h = helper.fetch(url("/as?etag=%22v1%22"))
    assert.equal('"v1"', h.etag)
  end)

  it("takes level, min_size and types options", function()
    local e = function(path)
      local _, h, body = helper.fetch("--compressed", url(path))
      return h["content-encoding"], body
    end
    local enc, body = e("/custom/mine?type=application/x-mine")
    assert.equal("gzip", enc)
    assert.equal(BIG, body)
    assert.equal("gzip", (e("/custom/mine?type=application/x-mine&body=0123456789")))
    assert.is_nil((e("/custom/mine?type=application/x-mine&body=012345678")))
    assert.equal("gzip", (e("/custom/mine?type=application/x-thing%2Byaml")))
    assert.is_nil((e("/custom/mine?type=text/plain")))
    assert.has_error(function() rill.middleware.compress{level = 0} end,
      "rill.middleware.compress: level must be an integer 1-9, got 0")
    assert.has_error(function() rill.middleware.compress{min_size = "1k"} end,
      "rill.middleware.compress: min_size must be a byte count, got 1k")
    assert.has_error(function() rill.middleware.compress{types = {"text/*", 3}} end,
      "rill.middleware.compress: types[2] must be a media type, got 3")
  end)

  it("answers HEAD with the head GET would have, and no body", function()
    local _, hg = helper.fetch("-H", "Accept-Encoding: gzip", url("/big"))
    local code, out = helper.curl("-I", "-H", "Accept-Encoding: gzip", url("/big"))
    assert.equal(0, code)
    local head = out:lower()
    assert.truthy(head:find("\ncontent%-encoding: gzip"))
    assert.truthy(head:find("\nvary: accept%-encoding"))
    assert.truthy(head:find("\ntransfer%-encoding: chunked"))
    assert.falsy(head:find("content%-length"))
    assert.equal("gzip", hg["content-encoding"])
    -- on a keep-alive connection, the next request is answered right after
    local s = helper.connect(port)
    s:write("HEAD /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n" ..
      "GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    local st, h = helper.read_response_head(s)
    assert.equal(200, st)
    assert.equal("gzip", h["content-encoding"])
    local st2, _, body = helper.read_response(s)
    assert.equal(200, st2)
    assert.equal("tiny", body)
    s:close()
  end)

  it("ends an HTTP/1.0 answer with the connection", function()
    local s = helper.connect(port)
    s:write("GET /big HTTP/1.0\r\nAccept-Encoding: gzip\r\n\r\n")
    local out = helper.read_to_end(s)
    local head, body = out:match("^(.-\r\n)\r\n(.*)$")
    assert.truthy(head:lower():find("\ncontent%-encoding: gzip"))
    assert.falsy(head:lower():find("content%-length"))
    assert.falsy(head:lower():find("transfer%-encoding"))
    local path = tmpfile(body, ".gz")
    local _, unzipped = helper.run({"gzip", "-dc", path})
    os.remove(path)
    assert.equal(BIG, unzipped)
  end)

  it("delivers server-sent events through gzip one by one", function()
    state.got_first = false
    -- A client that inflates the chunks as they come and prints each event
    -- as soon as it is whole.
    local p = assert(rill.exec{"python3", "-c", [[
import socket, sys, zlib
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n")
f = s.makefile("rb")
head = b""
while not head.endswith(b"\r\n\r\n"):
    head += f.readline()
print("HEAD", b"content-encoding: gzip" in head.lower(), flush=True)
z, text = zlib.decompressobj(31), b""
while True:
    size = int(f.readline().strip(), 16)
    if size == 0:
        break
    text += z.decompress(f.read(size))
    f.readline()
    while b"\n\n" in text:
        ev, text = text.split(b"\n\n", 1)
        print("EVENT", ev.decode(), flush=True)
]], tostring(port), stdout = "pipe", stderr = "pipe"})
    p.stdout:settimeout(10000)
    assert.equal("HEAD True", p.stdout:read_until("\n"))
    assert.equal("EVENT data: one", p.stdout:read_until("\n"))
    state.got_first = true
    assert.equal("EVENT data: two", p.stdout:read_until("\n"))
    assert.equal(0, p:wait(10000))
  end)
end)

describe("decoded request bodies", function()
  local l, port
  setup(function()
    local app = rill.router()
    app:use(rill.middleware.decompress{limit = 1024 * 1024})
    app:post("/count", function(req, res)
      local n = 0
      while true do
        local chunk, err = req.body:read_some(65536)
        if not chunk then
          if err then return res:status(500):send("read failed: " .. err) end
          break
        end
        n = n + #chunk
      end
      res:send(tostring(n))
    end)
    app:post("/echo", function(req, res)
      res:header("Content-Type", "application/octet-stream")
      res:send(assert(req.body:read_all(4 * 1024 * 1024)))
    end)
    app:post("/json", function(req, res)
      local v, err = req:json()
      if v == nil then return res:status(400):send(err) end
      res:json(v)
    end)
    local plain = rill.router()
    plain:post("/raw", function(req, res) res:send(tostring(#req.body:read_all(1e6))) end)
    plain:post("/own", function(req, res)
      local ok, err = req:decompress{limit = 1000}
      if not ok then return res:status(415):send(err) end
      local body, rerr = req.body:read_all(1e6)
      res:send(body or rerr)
    end)
    app:post("/raw", function(req, res) return plain(req, res) end)
    l, port = helper.listen(function(req, res)
      if req.path == "/raw" or req.path == "/own" then return plain(req, res) end
      return app(req, res)
    end)
  end)
  teardown(function() l:close() end)

  local function url(path) return helper.url(port, path) end

  -- curl POSTs the file with a Content-Encoding; returns status and body.
  local function post(path, file, enc, ...)
    local args = {"--data-binary", "@" .. file, "-H", "Content-Type: application/octet-stream",
      "-H", "Content-Encoding: " .. enc, ...}
    args[#args + 1] = url(path)
    local status, _, body = helper.fetch(table.unpack(args))
    return status, body
  end

  it("reads gzip and deflate bodies decoded (python3's gzip and zlib, gzip -c), chunked or not",
    function()
      local data = text(300000)
      local plain = tmpfile(data)
      local gz = plain .. ".gz"
      assert.equal(0, (helper.run({"sh", "-c", "gzip -c " .. plain .. " > " .. gz})))
      local zz = plain .. ".zz"
      python("import sys, zlib; open(sys.argv[2], 'wb').write(zlib.compress(open(sys.argv[1], 'rb').read()))",
        plain, zz)
      local pgz = plain .. ".p.gz"
      python("import gzip, sys; open(sys.argv[2], 'wb').write(gzip.compress(open(sys.argv[1], 'rb').read()))",
        plain, pgz)
      for _, c in ipairs({{gz, "gzip"}, {zz, "deflate"}, {pgz, "x-gzip"}}) do
        local status, body = post("/echo", c[1], c[2])
        assert.equal(200, status)
        assert.equal(data, body, c[2])
        status, body = post("/echo", c[1], c[2], "-H", "Transfer-Encoding: chunked")
        assert.equal(200, status)
        assert.equal(data, body, c[2] .. " chunked")
      end
      -- identity is the body as sent
      local status, body = post("/echo", plain, "identity")
      assert.equal(200, status)
      assert.equal(data, body)
      -- req:json reads the decoded body
      local jz = tmpfile("")
      python("import gzip, sys; open(sys.argv[1], 'wb').write(gzip.compress(b'{\"a\": [1, 2, 3]}'))", jz)
      local st, _, jb = helper.fetch("--data-binary", "@" .. jz, "-H", "Content-Type: application/json",
        "-H", "Content-Encoding: gzip", url("/json"))
      assert.equal(200, st)
      assert.same({a = {1, 2, 3}}, rill.json.decode(jb))
      for _, f in ipairs({plain, gz, zz, pgz, jz}) do os.remove(f) end
    end)

  it("gives the body as sent without the middleware, and req:decompress for one request",
    function()
      local data = text(5000)
      local plain = tmpfile(data)
      local gz = plain .. ".gz"
      python("import gzip, sys; open(sys.argv[2], 'wb').write(gzip.compress(open(sys.argv[1], 'rb').read()))",
        plain, gz)
      local size = #assert(io.open(gz, "rb")):read("*a")
      local status, body = post("/raw", gz, "gzip")
      assert.equal(200, status)
      assert.equal(tostring(size), body)
      -- req:decompress with its own limit: 1000 bytes
      status, body = post("/own", gz, "gzip")
      assert.equal(413, status)
      local small = tmpfile("")
      python("import gzip, sys; open(sys.argv[1], 'wb').write(gzip.compress(b'x' * 999))", small)
      status, body = post("/own", small, "gzip")
      assert.equal(200, status)
      assert.equal(("x"):rep(999), body)
      status, body = post("/own", small, "br")
      assert.equal(415, status)
      assert.equal("unsupported content encoding: br", body)
      for _, f in ipairs({plain, gz, small}) do os.remove(f) end
    end)

  it("answers an unknown encoding 415, corrupt or truncated data 400, and keeps serving",
    function()
      local plain = tmpfile(text(50000))
      local status, _, body
      status, _, body = helper.fetch("--data-binary", "@" .. plain, "-H", "Content-Encoding: br",
        url("/count"))
      assert.equal(415, status)
      assert.equal("unsupported content encoding: br\n", body)
      status = helper.fetch("--data-binary", "@" .. plain, "-H", "Content-Encoding: gzip, gzip",
        url("/count"))
      assert.equal(415, status)
      -- not gzip at all
      status = post("/count", plain, "gzip")
      assert.equal(400, status)
      -- truncated
      local gz = plain .. ".gz"
      python("import gzip, sys; d = gzip.compress(open(sys.argv[1], 'rb').read()); open(sys.argv[2], 'wb').write(d[:len(d) // 2])",
        plain, gz)
      status = post("/count", gz, "gzip")
      assert.equal(400, status)
      -- a byte changed: the CRC does not match
      python("import gzip, sys; d = bytearray(gzip.compress(open(sys.argv[1], 'rb').read())); d[len(d) // 2] ^= 0x55; open(sys.argv[2], 'wb').write(d)",
        plain, gz)
      status = post("/count", gz, "gzip")
      assert.equal(400, status)
      -- and the server goes on
      local code, out = helper.curl("--data-binary", "x", url("/raw"))
      assert.equal(0, code)
      assert.equal("1", out)
      os.remove(plain)
      os.remove(gz)
    end)

  it("answers a 1 MB to 1 GB bomb 413, in flat memory", function()
    -- 1 GiB of zeros as 16 gzip members of 64 MiB each: about 1 MB
    local bomb = os.tmpname() .. ".gz"
    python([[
import gzip, sys
m = gzip.compress(bytes(64 << 20), 9)
open(sys.argv[1], "wb").write(m * 16)
]], bomb)
    local app = tmpfile([[
local rill = require "rill"
local app = rill.router()
app:use(rill.middleware.decompress{limit = 8 * 1024 * 1024 * 1024})
app:post("/count", function(req, res)
  local n = 0
  while true do
    local chunk, err = req.body:read_some(65536)
    if not chunk then
      if err then error("read failed: " .. err) end
      break
    end
    n = n + #chunk
  end
  res:send(tostring(n))
end)
app:post("/json", function(req, res)
  local v, err = req:json(4 * 1024 * 1024)
  res:send(tostring(err))
end)
local small = rill.router()
small:use(rill.middleware.decompress())
small:post("/limited", function(req, res)
  while assert(req.body:read_some(65536)) do end
end)
return function(req, res)
  if req.path == "/limited" then return small(req, res) end
  return app(req, res)
end
]], ".lua")
    local srv = helper.serve(app, {"--workers", "1"})
    local ok, err = pcall(function()
      local before = helper.rss(srv.pid)
      -- all of it read as a stream, with a limit over 1 GiB: it passes, flat
      local st, _, body = helper.fetch("--data-binary", "@" .. bomb, "-H",
        "Content-Encoding: gzip", helper.url(srv.port, "/count"))
      assert.equal(200, st)
      assert.equal(tostring(1024 * 1024 * 1024), body)
      -- the default limit (16 MiB): 413, whatever the handler does
      st = helper.fetch("--data-binary", "@" .. bomb, "-H", "Content-Encoding: gzip",
        helper.url(srv.port, "/limited"))
      assert.equal(413, st)
      -- req:json's own limit stops it too
      local _
      st, _, body = helper.fetch("--data-binary", "@" .. bomb, "-H", "Content-Encoding: gzip",
        "-H", "Content-Type: application/json", helper.url(srv.port, "/json"))
      assert.truthy(body:find("too large") or st == 413)
      if not helper.sanitized then
        local _, peak = helper.rss(srv.pid)
        assert.is_true(peak - before < 24 * 1024 * 1024,
          ("peak RSS grew by %d bytes"):format(peak - before))
        local now = helper.rss(srv.pid)
        assert.is_true(now - before < 16 * 1024 * 1024, ("RSS grew by %d"):format(now - before))
      end
    end)
    srv.stop()
    os.remove(bomb)
    os.remove(app)
    assert(ok, err)
  end)
end)
