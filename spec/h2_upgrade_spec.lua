-- HTTP/2 by the HTTP/1.1 Upgrade to h2c (RFC 7540 3.2, issue 18): on a
-- cleartext listener with http2 = true, a request with Upgrade: h2c, one
-- valid HTTP2-Settings and no body gets 101 and becomes stream 1 of an
-- HTTP/2 connection. Anything else (a body, a bad HTTP2-Settings, TLS, a
-- listener without http2) is served over HTTP/1.1.
local helper = require "spec.helper"

local url = helper.url

local function have(cmd)
  return helper.run({"sh", "-c", "command -v " .. cmd}) == 0
end

local unpack = table.unpack or unpack

-- curl -i --http1.1 (which never upgrades by itself) with the upgrade's
-- headers by hand, the given HTTP2-Settings value(s), then more arguments.
local function curl_upgrade(settings, ...)
  local args = {"-i", "-w", "\n%{http_version}", "--http1.1",
    "-H", "Connection: Upgrade, HTTP2-Settings", "-H", "Upgrade: h2c"}
  for _, v in ipairs(settings) do
    args[#args + 1] = "-H"
    args[#args + 1] = "HTTP2-Settings: " .. v
  end
  for _, a in ipairs({...}) do args[#args + 1] = a end
  return helper.curl(unpack(args))
end

-- spec/h2/upgrade.py CASE PORT ARGS... with Python's h2; nil without it.
local python
local function upgrade_py(case, port, ...)
  if python == nil then
    python = false
    for _, py in ipairs({"python3", "/usr/bin/python3"}) do
      if helper.run({py, "-c", "import h2"}) == 0 then python = py break end
    end
  end
  if not python then return nil end
  local code, out, err = helper.run({python, "spec/h2/upgrade.py", case, tostring(port), ...})
  assert(code == 0, err)
  return out
end

describe("h2c by the HTTP/1.1 Upgrade", function()
  local l, port, seen
  local function handler(req, res)
    local body = assert(req.body:read_all(1024 * 1024))
    seen[#seen + 1] = {version = req.version, method = req.method, path = req.path,
      host = req.headers.host, upgrade = req.headers.upgrade,
      settings = req.headers["http2-settings"], body = body}
    res:header("X-Proto", req.version)
    res:send(req.method .. " " .. req.path .. " over " .. req.version .. " got " .. #body)
  end
  setup(function()
    seen = {}
    l, port = helper.listen(handler, {http2 = true})
  end)
  teardown(function() l:close() end)
  before_each(function() seen = {} end)

  it("upgrades curl --http2 on an http:// URL: 101, then HTTP/2", function()
    local code, out, err = helper.curl("--http2", "-i", "-w", "\n%{http_version}",
      url(port, "/x?y=1"))
    assert.equal(0, code, err)
    assert.truthy(out:find("^HTTP/1.1 101 Switching Protocols\r\n"), out)
    assert.truthy(out:find("\r\nUpgrade: h2c\r\n", 1, true), out)
    assert.truthy(out:find("\r\n\r\nHTTP/2 200 \r\n", 1, true), out)
    assert.truthy(out:find("GET /x over 2 got 0\n2$"), out)
    assert.equal(1, #seen)
    -- stream 1's head: authority from Host, the connection's fields gone
    assert.same({version = "2", method = "GET", path = "/x", host = "127.0.0.1:" .. port,
      body = ""}, seen[1])
  end)

  it("upgrades a HEAD (no body in the answer)", function()
    local code, out, err = helper.curl("--http2", "-I", "-w", "%{http_version}",
      url(port, "/h"))
    assert.equal(0, code, err)
    assert.truthy(out:find("\r\n\r\nHTTP/2 200 \r\n", 1, true), out)
    assert.truthy(out:find("\r\n\r\n2$"), out)
    assert.equal("HEAD", seen[1].method)
    assert.equal("2", seen[1].version)
  end)

  it("upgrades nghttp -u, and serves more streams on the connection", function()
    if not have("nghttp") then pending("nghttp is not installed") return end
    local code, out, err = helper.run({"nghttp", "-u", url(port, "/n1"), url(port, "/n2")})
    assert.equal(0, code, err)
    assert.truthy(out:find("GET /n1 over 2 got 0", 1, true), out)
    assert.truthy(out:find("GET /n2 over 2 got 0", 1, true), out)
    assert.equal(2, #seen)
    assert.equal("2", seen[1].version)
    assert.equal("2", seen[2].version)
  end)

  it("loses no byte the client sent with the request head (its preface, a second stream)",
    function()
      local out = upgrade_py("eager", port)
      if not out then pending("python3-h2 is not installed") return end
      assert.equal("HTTP/1.1 101 Switching Protocols\n" ..
        "stream 1 200 GET /one over 2 got 0\n" ..
        "stream 3 200 GET /two over 2 got 0\n", out)
    end)

  it("closes an upgraded connection whose client sends no preface within header_timeout",
    function()
      -- (keepalive_timeout far away: the wait for the preface is not an idle one)
      local ql, qport = helper.listen(handler, {http2 = true, header_timeout = 100,
        keepalive_timeout = 600000})
      local s = helper.connect(qport) -- reads time out after 10 s
      assert(s:write("GET /np HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n" ..
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"))
      local out, why = helper.read_to_end(s)
      ql:close()
      assert.equal("closed", why)
      assert.truthy(out:find("^HTTP/1.1 101 Switching Protocols\r\n"), out)
      assert.truthy(out:find("GET /np over 2 got 0", 1, true), out) -- stream 1 answered
    end)

  it("answers a request with a body over HTTP/1.1 (no upgrade)", function()
    local code, out, err = helper.curl("--http2", "-i", "-w", "\n%{http_version}",
      "--data-binary", "hello", url(port, "/post"))
    assert.equal(0, code, err)
    assert.falsy(out:find(" 101 ", 1, true), out)
    assert.truthy(out:find("^HTTP/1.1 200"), out)
    assert.truthy(out:find("POST /post over 1.1 got 5\n1.1$"), out)
    assert.equal("h2c", seen[1].upgrade) -- curl did ask
    assert.equal("hello", seen[1].body)
  end)

  it("serves a bad or repeated HTTP2-Settings over HTTP/1.1", function()
    local cases = {
      {"not base64url", "AAMA+/8A"},
      {"not whole settings (4 bytes)", "AAMAAAA"},
      {"a bad value (ENABLE_PUSH 2)", "AAIAAAAC"},
      {"a stray last character", "AAMAAABkA"},
      {"two of them", "AAMAAABk", "AAMAAABk"},
      {"33 settings (nghttp2 takes 32)", string.rep("AAMAAABk", 33)},
    }
    for i, case in ipairs(cases) do
      local code, out, err = curl_upgrade({unpack(case, 2)}, url(port, "/bad" .. i))
      assert.equal(0, code, err)
      assert.truthy(out:find("^HTTP/1.1 200"), case[1] .. ": " .. out)
      assert.truthy(out:find("over 1.1 got 0\n1.1$"), case[1] .. ": " .. out)
      assert.equal("h2c", seen[#seen].upgrade) -- the upgrade was asked
      assert.truthy(seen[#seen].settings, case[1])
    end
    -- the same headers with a good value do upgrade (what the cases above change matters)
    local out = upgrade_py("probe", port, "AAMAAABk")
    if not out then return end
    assert.equal("HTTP/1.1 101 Switching Protocols\n", out)
    assert.truthy(helper.eventually(function() return seen[#seen].path == "/probe" end))
    assert.equal("2", seen[#seen].version)
  end)

  it("ignores Upgrade: h2c over TLS", function()
    local dir = helper.certs()
    local tl, tport = helper.listen(handler, {http2 = true,
      tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    local code, out, err = curl_upgrade({"AAMAAABk"}, "--cacert", dir .. "/ca.crt",
      "--resolve", "a.test:" .. tport .. ":127.0.0.1", "https://a.test:" .. tport .. "/tls")
    tl:close()
    assert.equal(0, code, err)
    assert.truthy(out:find("^HTTP/1.1 200"), out)
    assert.truthy(out:find("GET /tls over 1.1 got 0\n1.1$"), out)
  end)

  it("ignores Upgrade: h2c on a listener without http2", function()
    local pl, pport = helper.listen(handler)
    local code, out, err = helper.curl("--http2", "-i", "-w", "\n%{http_version}",
      url(pport, "/plain"))
    pl:close()
    assert.equal(0, code, err)
    assert.truthy(out:find("^HTTP/1.1 200"), out)
    assert.truthy(out:find("GET /plain over 1.1 got 0\n1.1$"), out)
    assert.equal("h2c", seen[1].upgrade)
  end)
end)

describe("rill serve --http2 and Upgrade: h2c", function()
  it("upgrades curl --http2 on an http:// URL (a file by rill.static, whole)", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(helper.run({"mkdir", dir}) == 0)
    local app = dir .. "/app.lua"
    local f = assert(io.open(app, "w"))
    f:write("local rill = require 'rill'\nreturn rill.static(" .. ("%q"):format(dir) .. ")\n")
    f:close()
    assert(helper.run({"sh", "-c", "head -c 300000 /dev/urandom > " .. dir .. "/r.bin"}) == 0)
    local srv = helper.serve(app, {"--http2", "--workers", "1"})
    local code, out, err = helper.curl("--http2", "-o", dir .. "/got.bin", "-w",
      "%{http_version} %{http_code}", helper.url(srv.port, "/r.bin"))
    local same = helper.run({"cmp", dir .. "/r.bin", dir .. "/got.bin"})
    assert.equal(0, srv.stop())
    helper.run({"rm", "-r", dir})
    assert.equal(0, code, err)
    assert.equal("2 200", out)
    assert.equal(0, same)
  end)
end)
