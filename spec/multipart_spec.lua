-- Forms: req:form() for urlencoded bodies, req:parts() for multipart/form-data
-- parts that are streams (core/multipart.c under lua/rill/form.lua), and
-- examples/upload.lua. Driven by curl -F and by raw sockets sending bodies
-- cut at awkward places.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024

local url = helper.url

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d) == 0)
  return d
end

local function write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- A handler that answers with what it saw of each part:
-- "name|filename|content_type|size\n" followed by the data and "\n".
-- The query picks limits (max_parts, max_header_bytes), reading fields with
-- part:value(field_limit), skipping file data (skip=1) and the rest of the
-- body after the parts (rest=1).
local function report(req, res)
  local q = req.query
  local opts = {max_parts = tonumber(q.max_parts), max_header_bytes = tonumber(q.max_header_bytes)}
  local out = {}
  for part, err, status in req:parts(opts) do
    if not part then return res:status(status or 500):send(err) end
    local data
    if q.field_limit and not part.filename then
      local v, verr, vstatus = part:value(tonumber(q.field_limit))
      if not v then return res:status(vstatus or 500):send(verr) end
      data = v
    elseif q.skip and part.filename then
      data = ""
    else
      local t = {}
      while true do
        local chunk, rerr = part:read_some(tonumber(q.read) or 65536)
        if not chunk then
          if rerr then return res:status(require("rill.form").status_of(rerr) or 500):send(rerr) end
          break
        end
        t[#t + 1] = chunk
      end
      data = table.concat(t)
    end
    out[#out + 1] = ("%s|%s|%s|%d|%s\n%s\n"):format(part.name, tostring(part.filename),
      part.content_type, #data, tostring(part.headers["Content-Disposition"] ~= nil), data)
  end
  if q.rest then out[#out + 1] = "rest:" .. assert(req.body:read_all()) end
  res:send(table.concat(out))
end

-- Parses report's answer into {{name=, filename=, type=, data=}, ...}.
local function parse_report(s)
  local parts, i = {}, 1
  while i <= #s do
    local line_end = s:find("\n", i, true)
    local line = s:sub(i, line_end - 1)
    local name, filename, ctype, size, cd = line:match("^(.-)|(.-)|(.-)|(%d+)|(%a+)$")
    if not name then
      parts.rest = s:sub(i)
      break
    end
    size = tonumber(size)
    parts[#parts + 1] = {name = name, filename = filename ~= "nil" and filename or nil,
      type = ctype, data = s:sub(line_end + 1, line_end + size), cd = cd == "true"}
    i = line_end + size + 2
  end
  return parts
end

-- A raw request on a new connection; returns status and body.
local function raw_post(port, path, ctype, body, chunk_sizes)
  local s = helper.connect(port)
  local head = ("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nConnection: close\r\n")
    :format(path, ctype)
  if chunk_sizes then
    -- Each chunk reaches the multipart layer as a separate piece, however
    -- the bytes travel: the splits are exactly these.
    local t, at, k = {head, "Transfer-Encoding: chunked\r\n\r\n"}, 1, 1
    while at <= #body do
      local n = chunk_sizes[(k - 1) % #chunk_sizes + 1]
      local piece = body:sub(at, at + n - 1)
      t[#t + 1] = ("%x\r\n%s\r\n"):format(#piece, piece)
      at, k = at + n, k + 1
    end
    t[#t + 1] = "0\r\n\r\n"
    s:write(table.concat(t))
  else
    s:write(head .. ("Content-Length: %d\r\n\r\n"):format(#body) .. body)
  end
  local status, _, rbody = helper.read_response(s)
  s:close()
  return status, rbody
end

local B = "XyZzy42"
local CT = "multipart/form-data; boundary=" .. B

-- A multipart body of the given parts ({name=, filename=, type=, data=}).
local function multipart(parts, boundary)
  boundary = boundary or B
  local t = {"preamble, ignored\r\n"}
  for _, p in ipairs(parts) do
    t[#t + 1] = "--" .. boundary .. "\r\nContent-Disposition: form-data; name=\"" .. p.name .. "\""
    if p.filename then t[#t + 1] = "; filename=\"" .. p.filename .. "\"" end
    t[#t + 1] = "\r\n"
    if p.type then t[#t + 1] = "Content-Type: " .. p.type .. "\r\n" end
    t[#t + 1] = "\r\n" .. p.data .. "\r\n"
  end
  t[#t + 1] = "--" .. boundary .. "--\r\nepilogue"
  return table.concat(t)
end

describe("forms", function()
  local l, port
  setup(function()
    l, port = helper.listen(function(req, res)
      if req.path == "/form" then
        local f, err, status = req:form(tonumber(req.query.limit))
        if not f then return res:status(status):send(err) end
        local keys = {}
        for k in pairs(f) do keys[#keys + 1] = k end
        table.sort(keys)
        local out = {}
        for _, k in ipairs(keys) do
          local v = f[k]
          if type(v) == "table" then v = "[" .. table.concat(v, ",") .. "]" end
          out[#out + 1] = k .. "=" .. tostring(v)
        end
        return res:send(table.concat(out, ";"))
      end
      return report(req, res)
    end)
  end)
  teardown(function() l:close() end)

  describe("req:form", function()
    it("decodes an urlencoded body, repeated keys as arrays", function()
      local code, out = helper.curl("-d", "a=1&b=x%20y+z&a=2&c&e=", "--data-urlencode",
        "d=&=?/ü", url(port, "/form"))
      assert.equal(0, code)
      assert.equal("a=[1,2];b=x y z;c=true;d=&=?/ü;e=", out)
    end)

    it("gives an empty table for an empty body", function()
      local _, out = helper.curl("-d", "", url(port, "/form"))
      assert.equal("", out)
    end)

    it("refuses another Content-Type (415), a body over its limit (413), bad escapes (400)",
      function()
      local status, body = raw_post(port, "/form", "text/plain", "a=1")
      assert.equal(415, status)
      assert.matches("^unsupported media type", body)
      status, body = raw_post(port, "/form?limit=10", "application/x-www-form-urlencoded",
        "a=0123456789")
      assert.equal(413, status)
      assert.matches("^too large", body)
      status = raw_post(port, "/form?limit=10", "application/x-www-form-urlencoded",
        "a=01234567")
      assert.equal(200, status)
      status, body = raw_post(port, "/form", "application/x-www-form-urlencoded", "a=%zz")
      assert.equal(400, status)
      assert.matches("^bad form", body)
      status = raw_post(port, "/form", "application/x-www-form-urlencoded; charset=UTF-8",
        "a=%41")
      assert.equal(200, status)
    end)
  end)

  describe("req:parts", function()
    local dir
    setup(function() dir = tmpdir() end)
    teardown(function() os.execute("rm -rf " .. dir) end)

    it("gives curl -F fields and files with names, filenames, types and exact bytes", function()
      local bytes = {}
      for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
      local bin = table.concat(bytes):rep(300) ..
        "\r\n--------------------------\r\n--\r\n\r\r\n-" -- boundary-like, CRs at the end
      write_file(dir .. "/a.bin", bin)
      write_file(dir .. "/b.txt", "hello\r\n")
      write_file(dir .. "/e.txt", "")
      local code, out, err = helper.curl("-F", "title=Hello world", "-F", "multi=1",
        "-F", "multi=2", "-F", "f1=@" .. dir .. "/a.bin;type=application/octet-stream",
        "-F", "f2=@" .. dir .. "/b.txt;filename=renamed.txt;type=text/x-custom",
        "-F", "f3=@" .. dir .. "/e.txt", url(port, "/parts"))
      assert.equal(0, code, err)
      local parts = parse_report(out)
      assert.equal(6, #parts, out)
      assert.same({name = "title", type = "text/plain", data = "Hello world", cd = true},
        parts[1])
      assert.same({"multi", "1"}, {parts[2].name, parts[2].data})
      assert.same({"multi", "2"}, {parts[3].name, parts[3].data})
      assert.equal("f1", parts[4].name)
      assert.equal("a.bin", parts[4].filename)
      assert.equal("application/octet-stream", parts[4].type)
      assert.equal(#bin, #parts[4].data)
      assert.is_true(bin == parts[4].data, "a.bin came out different")
      assert.same({name = "f2", filename = "renamed.txt", type = "text/x-custom",
        data = "hello\r\n", cd = true}, parts[5])
      assert.same({name = "f3", filename = "e.txt", type = "text/plain", data = "", cd = true},
        parts[6])
    end)

    it("reaches the next part by reading past the rest of the current one", function()
      local code, out = helper.curl("-F", "a=1", "-F", "f=@" .. dir .. "/a.bin", "-F", "b=2",
        url(port, "/parts?skip=1"))
      assert.equal(0, code)
      local parts = parse_report(out)
      assert.same({"a", "1"}, {parts[1].name, parts[1].data})
      assert.same({"f", "a.bin", ""}, {parts[2].name, parts[2].filename, parts[2].data})
      assert.same({"b", "2"}, {parts[3].name, parts[3].data})
    end)

    -- Data with bytes that begin the delimiter, or nearly are it.
    local awkward = {
      {name = "a", data = "\r\n--XyZzy4"},
      {name = "b", filename = "b.bin", type = "application/octet-stream",
        data = "\r\n--XyZzy4\r\n--XyZzy43\r\r\n--XyZ\r\n--\r\n\r"},
      {name = "c", data = "--XyZzy42"},
      {name = "d", data = ""},
      {name = "e", data = "\r"},
    }
    local body = multipart(awkward)

    local function check_awkward(status, out, what)
      assert.equal(200, status, what)
      local parts = parse_report(out)
      assert.equal(#awkward, #parts, what)
      for i, p in ipairs(awkward) do
        assert.equal(p.name, parts[i].name, what)
        assert.equal(p.data, parts[i].data, what .. ": part " .. p.name)
        assert.equal(p.filename, parts[i].filename, what)
        assert.equal(p.type or "text/plain", parts[i].type, what)
      end
    end

    it("splits parts right wherever the body is cut (chunks of 1, 2, 3, 5, 7, 64 bytes)",
      function()
      for _, sizes in ipairs({{1}, {2}, {3}, {5}, {7}, {64}, {1, 4, 9}, {#body}}) do
        local status, out = raw_post(port, "/parts", CT, body, sizes)
        check_awkward(status, out, "chunks of " .. table.concat(sizes, ","))
      end
    end)

    it("splits parts right with the body cut in two at every byte", function()
      for i = 1, #body - 1 do
        local status, out = raw_post(port, "/parts?read=3", CT, body, {i, #body})
        check_awkward(status, out, "cut at " .. i)
      end
    end)

    it("leaves the bytes after the close delimiter in the body", function()
      local status, out = raw_post(port, "/parts?rest=1", CT, body)
      check_awkward(status, out, "whole")
      assert.equal("rest:\r\nepilogue", parse_report(out).rest)
    end)

    it("lets a handler leave the parts and read the rest of the body itself", function()
      local l2, port2 = helper.listen(function(req, res)
        local next_part = req:parts()
        local part = next_part()
        local first = part:read(2)
        res:send(first .. "|" .. assert(req.body:read_all()))
      end)
      local s = helper.connect(port2)
      s:write("POST / HTTP/1.1\r\nHost: x\r\nContent-Type: " .. CT .. "\r\n" ..
        "Transfer-Encoding: chunked\r\n\r\n")
      local whole = multipart({{name = "a", data = "0123456789"}})
      local cut = whole:find("234", 1, true)
      s:write(("%x\r\n%s\r\n"):format(cut - 1, whole:sub(1, cut - 1)))
      -- The rest comes later: the body's own read must hear it, not the parts.
      rill.sleep(50)
      s:write(("%x\r\n%s\r\n0\r\n\r\n"):format(#whole - cut + 1, whole:sub(cut)))
      local status, _, body = helper.read_response(s)
      s:close()
      l2:close()
      assert.equal(200, status)
      assert.equal("01|23456789\r\n--" .. B .. "--\r\nepilogue", body)
    end)

    it("answers 400 for broken bodies", function()
      local cases = {
        {"no close delimiter", CT, "--" .. B .. "\r\nContent-Disposition: form-data; name=a\r\n\r\nx"},
        {"no delimiter", CT, "just bytes"},
        {"junk after a boundary", CT, "--" .. B .. "x\r\n\r\n--" .. B .. "--"},
        {"a folded header", CT, "--" .. B .. "\r\nContent-Disposition: form-data;\r\n name=a\r\n\r\nx\r\n--" .. B .. "--"},
        {"a part without a name", CT, "--" .. B .. "\r\nContent-Type: text/plain\r\n\r\nx\r\n--" .. B .. "--"},
        {"no boundary", "multipart/form-data", multipart({{name = "a", data = "x"}})},
        {"a bad boundary", "multipart/form-data; boundary=\"a\\\"b\"", "--a\"b\r\n\r\n--a\"b--"},
      }
      for _, c in ipairs(cases) do
        local status, out = raw_post(port, "/parts", c[2], c[3])
        assert.equal(400, status, c[1])
        assert.is_truthy(tostring(out):match("^bad multipart"), c[1] .. ": " .. tostring(out))
        status = raw_post(port, "/parts", c[2], c[3], {3})
        assert.equal(400, status, c[1] .. ", chunked")
      end
    end)

    it("answers 413 past a limit and 415 for another Content-Type", function()
      local three = multipart({{name = "a", data = "1"}, {name = "b", data = "2"},
        {name = "c", data = "3"}})
      local status, out = raw_post(port, "/parts?max_parts=2", CT, three)
      assert.equal(413, status)
      assert.matches("^too large: too many parts", out)
      assert.equal(200, (raw_post(port, "/parts?max_parts=3", CT, three)))
      status, out = raw_post(port, "/parts?max_header_bytes=40", CT,
        multipart({{name = "a-rather-long-field-name", data = "1"}}))
      assert.equal(413, status)
      assert.matches("^too large", out)
      status, out = raw_post(port, "/parts?field_limit=4", CT,
        multipart({{name = "a", data = "12345"}}))
      assert.equal(413, status)
      assert.matches("^too large: field \"a\" over 4 bytes", out)
      assert.equal(200, (raw_post(port, "/parts?field_limit=5", CT,
        multipart({{name = "a", data = "12345"}}))))
      status, out = raw_post(port, "/parts", "text/plain", "x")
      assert.equal(415, status)
      assert.matches("^unsupported media type", out)
    end)

    it("lets a handler hand a failure to the error hooks with rill.http.abort", function()
      local l2, port2 = helper.listen(function(req, res)
        for part, err, status in req:parts() do
          if not part then rill.http.abort(status, err) end
        end
        res:send("all parts")
      end)
      local status, out = raw_post(port2, "/", CT, multipart({{name = "a", data = "1"}}))
      assert.equal(200, status)
      assert.equal("all parts", out)
      status, out = raw_post(port2, "/", CT, "--" .. B .. "\r\n\r\nno end")
      l2:close()
      assert.equal(400, status)
      assert.matches("bad multipart", out)
    end)

    it("raises for bad options and a second iterator, at the caller", function()
      local ok, err, ok2, err2
      local l2, port2 = helper.listen(function(req, res)
        ok, err = pcall(function() local _ = req:parts({max_parts = -1}) end)
        req:parts()
        ok2, err2 = pcall(function() local _ = req:parts() end)
        res:send("x")
      end)
      helper.curl(url(port2, "/"))
      l2:close()
      assert.is_false(ok)
      assert.matches("multipart_spec%.lua:%d+: req:parts: max_parts must be a non%-negative " ..
        "integer", err)
      assert.is_false(ok2)
      assert.matches("multipart_spec%.lua:%d+: req:parts: called a second time", err2)
    end)
  end)
end)

describe("examples/upload.lua", function()
  local dir, srv
  setup(function()
    dir = tmpdir()
    srv = helper.start({"serve", "examples/upload.lua", "--listen", "127.0.0.1:0",
      "--workers", "1", "--max-body-bytes", "2147483648"}, {UPLOAD_DIR = dir})
  end)
  teardown(function()
    assert.equal(0, srv.stop())
    os.execute("rm -rf " .. dir)
  end)

  it("saves each file part and answers with names and sizes", function()
    local data = ("0123456789\r\n"):rep(5000)
    write_file(dir .. "/in.bin", data)
    local code, out, err = helper.curl("-F", "note=hi there", "-F",
      "doc=@" .. dir .. "/in.bin;filename=../../etc/x y.bin", url(srv.port, "/"))
    assert.equal(0, code, err)
    local saved = out:match("^field note 8\nfile doc %.%./%.%./etc/x y%.bin 60000 (%S+)\n$")
    assert.is_truthy(saved, out)
    assert.matches("^%d+%-%d+%-x_y%.bin$", saved)
    assert.is_true(read_file(dir .. "/" .. saved) == data, "the saved file differs")
    os.remove(dir .. "/" .. saved)
  end)

  it("streams a 1 GiB file part to disk with the server's peak RSS under 48 MB", function()
    local gen = "{ printf -- '--XyZ\\r\\nContent-Disposition: form-data; name=\"big\"; " ..
      "filename=\"big.bin\"\\r\\nContent-Type: application/octet-stream\\r\\n\\r\\n'; " ..
      "head -c 1073741824 /dev/zero; printf -- '\\r\\n--XyZ--\\r\\n'; }"
    local t0 = rill.now()
    local code, out, err = helper.run({"bash", "-c", "curl -sS -X POST -T - -H " ..
      "'Content-Type: multipart/form-data; boundary=XyZ' " .. url(srv.port, "/") ..
      " < <(" .. gen .. ")"}, {timeout = 300000})
    local secs = (rill.now() - t0) / 1000
    assert.equal(0, code, err)
    local saved = out:match("^file big big%.bin 1073741824 (%S+)\n$")
    assert.is_truthy(saved, out)
    local f = assert(io.open(dir .. "/" .. saved, "rb"))
    assert.equal(1073741824, f:seek("end"))
    f:close()
    os.remove(dir .. "/" .. saved)
    local _, peak = helper.rss(srv.pid)
    io.stderr:write(("[multipart 1 GiB: %.1f s, server peak RSS %.1f MB]\n"):format(secs,
      peak / MB))
    if not helper.sanitized then
      assert.is_true(peak < 48 * MB, ("peak RSS %.1f MB"):format(peak / MB))
    end
  end)

  it("saves 64 MiB of near-delimiters (CRLF--XyQ, boundary XyZ) byte for byte", function()
    local line = "ab\\r\\n--XyQ\\r" -- for printf: a CR before each newline too
    local gen = ("{ printf -- '--XyZ\\r\\nContent-Disposition: form-data; name=\"n\"; " ..
      "filename=\"n.bin\"\\r\\n\\r\\n'; yes \"$(printf '%s')\" | head -c 67108864; " ..
      "printf -- '\\r\\n--XyZ--\\r\\n'; }"):format(line)
    local code, out, err = helper.run({"bash", "-c", "curl -sS -X POST -T - -H " ..
      "'Content-Type: multipart/form-data; boundary=XyZ' " .. url(srv.port, "/") ..
      " < <(" .. gen .. ")"}, {timeout = 120000})
    assert.equal(0, code, err)
    local saved = out:match("^file n n%.bin 67108864 (%S+)\n$")
    assert.is_truthy(saved, out)
    code = helper.run({"bash", "-c", ("cmp <(yes \"$(printf '%s')\" | head -c 67108864) %s")
      :format(line, dir .. "/" .. saved)})
    os.remove(dir .. "/" .. saved)
    assert.equal(0, code, "the saved file differs")
  end)

  it("answers 400 for a broken body and 405 for a GET", function()
    local status, out = raw_post(srv.port, "/", CT, "--" .. B .. "\r\n\r\nno end")
    assert.equal(400, status)
    assert.matches("^bad multipart", out)
    local _, got = helper.curl("-i", url(srv.port, "/"))
    assert.matches("^HTTP/1.1 405", got)
  end)
end)
