-- TLS: HTTPS with curl and openssl, SNI, ALPN, resumption, the rill client
-- against openssl s_server, bad input, start-up errors, starttls.
local rill = require "rill"
local helper = require "spec.helper"

local MB = 1024 * 1024
local PYTHON = "/usr/bin/python3"

-- openssl s_client against port with extra arguments; returns its output.
local function s_client(port, ...)
  local argv = {"openssl", "s_client", "-connect", "127.0.0.1:" .. port}
  for _, a in ipairs({...}) do argv[#argv + 1] = a end
  local _, out, err = helper.run(argv, {input = "", timeout = 20000})
  return out .. err
end

describe("tls", function()
  local dir
  setup(function() dir = helper.certs() end)

  describe("HTTPS with rill serve and curl", function()
    local srv
    setup(function()
      -- One worker is enough here; ticket keys are the process's, so a
      -- session resumes on any worker (spec/lb_spec.lua, with two).
      srv = helper.serve("examples/echo.lua", {"--workers", "1", "--tls-cert", dir .. "/a.test.crt",
        "--tls-key", dir .. "/a.test.key", "--tls-cert", dir .. "/b.test.crt",
        "--tls-key", dir .. "/b.test.key", "--handshake-timeout", "1"})
    end)
    teardown(function() assert.equal(0, srv.stop()) end)

    local function curl(path, ...)
      return helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
        ("a.test:%d:127.0.0.1"):format(srv.port), ("https://a.test:%d%s"):format(srv.port, path),
        ...)
    end

    it("answers GET", function()
      local code, out, err = curl("/")
      assert.equal(0, code, err)
      assert.matches("^rill echo", out)
    end)

    it("knows the client's address over TLS", function()
      local dir2 = helper.certs()
      local seen
      local l, port = helper.listen(function(req, res)
        seen = {req.remote_addr, req.scheme}
        res:send("ok")
      end, {tls = {cert = dir2 .. "/a.test.crt", key = dir2 .. "/a.test.key"}})
      local code = helper.curl("--cacert", dir2 .. "/ca.crt", "--resolve",
        ("a.test:%d:127.0.0.1"):format(port), ("https://a.test:%d/"):format(port))
      assert.equal(0, code)
      assert.same({"127.0.0.1", "https"}, seen)
      l:close()
    end)

    it("streams POST /echo", function()
      local code, out = helper.run({"curl", "-sS", "--cacert", dir .. "/ca.crt", "--resolve",
        ("a.test:%d:127.0.0.1"):format(srv.port), "--data-binary", "@-",
        ("https://a.test:%d/echo"):format(srv.port)}, {input = string.rep("0123456789", 50000)})
      assert.equal(0, code)
      assert.equal(string.rep("0123456789", 50000), out)
    end)

    it("counts a chunked 1 GiB upload with the server's peak RSS under 48 MB", function()
      local code, out, err = helper.run({"bash", "-c",
        ("curl -sS --cacert %s/ca.crt --resolve a.test:%d:127.0.0.1 -T - https://a.test:%d/count" ..
         " < <(head -c 1073741824 /dev/zero)"):format(dir, srv.port, srv.port)},
        {timeout = 300000})
      assert.equal(0, code, err)
      assert.equal("1073741824\n", out)
      if not helper.sanitized then
        local _, peak = helper.rss(srv.pid)
        assert.is_true(peak < 48 * MB, ("peak RSS %.1f MB"):format(peak / MB))
      end
    end)

    it("gives each SNI name its certificate, and unknown names the default", function()
      assert.matches("subject=CN = a.test", s_client(srv.port, "-servername", "a.test"))
      assert.matches("subject=CN = b.test", s_client(srv.port, "-servername", "b.test"))
      assert.matches("subject=CN = a.test", s_client(srv.port, "-servername", "x.a.test"))
      assert.matches("subject=CN = a.test", s_client(srv.port, "-servername", "unknown.test"))
    end)

    it("negotiates ALPN http/1.1", function()
      assert.matches("ALPN protocol: http/1.1", s_client(srv.port, "-alpn", "h2,http/1.1"))
    end)

    it("resumes sessions", function()
      local out = s_client(srv.port, "-reconnect", "-servername", "a.test")
      assert.matches("\nNew, TLSv1.2", out)
      assert.matches("\nReused, TLSv1.2", out)
    end)

    it("prefers X25519, then P-256, for the key exchange", function()
      assert.matches("Server Temp Key: X25519", s_client(srv.port))
      assert.matches("Server Temp Key: ECDH, prime256v1",
        s_client(srv.port, "-groups", "secp521r1:prime256v1"))
    end)

    it("offers TLS 1.2 with ECDHE and AEAD ciphers only", function()
      local out = s_client(srv.port, "-tls1_2", "-cipher", "AES128-SHA")
      assert.not_matches("Cipher is AES128%-SHA", out)
      -- Our order decides: ChaCha20-Poly1305 (mbedTLS seals it faster than AES-GCM).
      assert.matches("ECDHE%-ECDSA%-CHACHA20%-POLY1305", s_client(srv.port))
      assert.matches("ECDHE%-ECDSA%-AES128%-GCM%-SHA256",
        s_client(srv.port, "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256"))
      -- and stays up
      local code = curl("/")
      assert.equal(0, code)
    end)

    it("drops garbage, plain HTTP and stalled handshakes, and serves the next client",
      function()
        local raw, why = helper.raw(srv.port, string.rep("\22\3\1garbage", 200), 3000)
        assert.equal("closed", why)
        raw, why = helper.raw(srv.port, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", 3000)
        assert.not_matches("rill echo", raw)
        assert.equal("closed", why)
        -- A client that sends half a ClientHello and waits: cut after the
        -- handshake timeout (1 s here).
        local t0 = rill.now()
        raw, why = helper.raw(srv.port, "\22\3\1\0\200\1\0\0", 5000)
        assert.equal("closed", why)
        assert.is_true(rill.now() - t0 < 4000)
        local code, out = curl("/")
        assert.equal(0, code)
        assert.matches("^rill echo", out)
      end)
  end)

  describe("the rill client", function()
    local server
    local port
    before_each(function()
      port = helper.free_port()
      server = assert(rill.exec{"openssl", "s_server", "-accept", tostring(port),
        "-cert", dir .. "/other.test.crt", "-key", dir .. "/other.test.key", "-www",
        "-alpn", "http/1.1", stdin = "pipe", stdout = "null", stderr = "null"})
      -- wait until it listens
      for _ = 1, 100 do
        local s = rill.connect("127.0.0.1", port, 1000)
        if s then
          s:close()
          break
        end
        rill.sleep(50)
      end
    end)
    after_each(function()
      server:kill(9)
      server:wait()
    end)

    it("fails with a clear error for a certificate of another name", function()
      local s, err = rill.connect("127.0.0.1", port, {timeout = 5000,
        tls = {ca = dir .. "/ca.crt", server_name = "a.test"}})
      assert.is_nil(s)
      assert.equal("certificate verify failed: the certificate is for other.test (its subject " ..
        "alternative names), not a.test", err)
    end)

    it("fails against the system CA bundle for a private CA", function()
      local s, err = rill.connect("127.0.0.1", port, {timeout = 5000,
        tls = {server_name = "other.test"}})
      assert.is_nil(s)
      assert.matches("^certificate verify failed", err)
    end)

    it("connects with the right CA and name, and talks", function()
      local s, err = rill.connect("127.0.0.1", port, {timeout = 5000,
        tls = {ca = dir .. "/ca.crt", server_name = "other.test", alpn = {"http/1.1"}}})
      assert.is_truthy(s, err)
      assert.equal("http/1.1", s:alpn())
      local info = s:tls_info()
      assert.equal("TLSv1.2", info.version)
      assert.matches("CHACHA20%-POLY1305", info.cipher) -- our first choice; s_server takes it
      s:write("GET / HTTP/1.0\r\n\r\n")
      local page = s:read_all(1e6)
      assert.matches("^HTTP/1.0 200 ok", page)
      s:close()
    end)

    it("resumes a session only with the trust it was made with", function()
      -- s_server -www says on its page whether the session was new or reused.
      local function session(tls)
        tls.server_name = "other.test"
        local s = assert(rill.connect("127.0.0.1", port, {timeout = 5000, tls = tls}))
        s:write("GET / HTTP/1.0\r\n\r\n")
        local page = s:read_all(1e6)
        s:close()
        return page:match("\n(%a+), TLSv1%.2")
      end
      assert.equal("New", session({ca = dir .. "/ca.crt"}))
      assert.equal("Reused", session({ca = dir .. "/ca.crt"}))
      assert.equal("New", session({verify = false}))
      assert.equal("Reused", session({verify = false}))
      assert.equal("Reused", session({ca = dir .. "/ca.crt"}))
    end)

    it("can skip verification when asked", function()
      local s = assert(rill.connect("127.0.0.1", port, {timeout = 5000,
        tls = {verify = false}}))
      s:close()
    end)
  end)

  it("does not offer a server the session of another one (resuming skips the certificate)",
    function()
      local handler = function(sock) sock:write("hi") end
      local b = assert(rill.listen{port = 0, handler = handler,
        tls = {cert = dir .. "/b.test.crt", key = dir .. "/b.test.key"}})
      local a = assert(rill.listen{port = 0, handler = handler,
        tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      local s = assert(rill.connect("127.0.0.1", b:port(), {timeout = 5000,
        tls = {ca = dir .. "/ca.crt", server_name = "b.test"}}))
      assert.equal("hi", s:read(2))
      s:close()
      local bad, err = rill.connect("127.0.0.1", a:port(), {timeout = 5000,
        tls = {ca = dir .. "/ca.crt", server_name = "b.test"}})
      assert.is_nil(bad)
      assert.matches("certificate verify failed", err)
      a:close()
      b:close()
    end)

  describe("does not offer a session to a connection that trusts differently", function()
    local l
    before_each(function()
      l = assert(rill.listen{host = "127.0.0.1", port = 0,
        handler = function(sock) sock:write("hi") end,
        tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
    end)
    after_each(function() l:close() end)

    local function connect(tls)
      tls.server_name = "a.test"
      local s, err = rill.connect("127.0.0.1", l:port(), {timeout = 5000, tls = tls})
      if not s then return nil, err end
      local hi, rerr = s:read(2)
      s:close()
      return hi, rerr
    end

    -- To the system CA bundle our test CA is unknown: a.test's certificate
    -- is as good as self-signed, as a man in the middle's would be.
    it("a session made without verification", function()
      assert.equal("hi", connect({verify = false}))
      local hi, err = connect({})
      assert.is_nil(hi)
      assert.matches("^certificate verify failed", err)
      hi, err = connect({verify = true, ca = "/etc/ssl/certs/ca-certificates.crt"})
      assert.is_nil(hi)
      assert.matches("^certificate verify failed", err)
    end)

    it("a session verified against another CA file", function()
      assert.equal("hi", connect({ca = dir .. "/ca.crt"}))
      local hi, err = connect({ca = "/etc/ssl/certs/ca-certificates.crt"})
      assert.is_nil(hi)
      assert.matches("^certificate verify failed", err)
    end)
  end)

  describe("raw TLS servers and starttls", function()
    it("serve a raw protocol over TLS, with the handshake done before the handler",
      function()
        local l = assert(rill.listen{port = 0, tls = {cert = dir .. "/a.test.crt",
          key = dir .. "/a.test.key", alpn = {"line"}}, handler = function(sock)
          local info = sock:tls_info()
          sock:write(info.server_name or "-", " ", info.alpn or "-", "\n")
          for line in sock:lines() do sock:write(line:upper(), "\n") end
        end})
        local s = assert(rill.connect("127.0.0.1", l:port(), {timeout = 5000,
          tls = {ca = dir .. "/ca.crt", server_name = "a.test", alpn = {"line"}}}))
        assert.equal("a.test line", s:read_until("\n"))
        s:write("hello\nworld\n")
        assert.equal("HELLO", s:read_until("\n"))
        assert.equal("WORLD", s:read_until("\n"))
        s:close()
        l:close()
      end)

    it("upgrade a plain connection on both sides with starttls", function()
      local l = assert(rill.listen{port = 0, handler = function(sock)
        assert(sock:read_until("\n") == "STARTTLS")
        sock:write("GO\n")
        assert(sock:starttls{cert = dir .. "/b.test.crt", key = dir .. "/b.test.key"})
        sock:write("secret: ", sock:read_until("\n"), "\n")
      end})
      local s = helper.connect(l:port())
      s:write("STARTTLS\n")
      assert.equal("GO", s:read_until("\n"))
      assert.is_nil(s:tls_info())
      assert.is_true(s:starttls{ca = dir .. "/ca.crt", server_name = "b.test"})
      assert.equal("TLSv1.2", s:tls_info().version)
      s:write("42\n")
      assert.equal("secret: 42", s:read_until("\n"))
      s:close()
      l:close()
    end)
  end)

  -- Issue 11: a starttls whose stream was closed in its handshake left its
  -- task waiting forever. (spec/stream_spec.lua closes every kind of stream
  -- under every kind of wait.)
  it("resumes a starttls whose socket another task closes in the handshake, " ..
    "with nil, \"closed\"", function()
      local done = false
      local silent = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function()
        while not done do rill.sleep(20) end -- accepts, never answers
      end})
      finally(function()
        done = true
        silent:close()
      end)
      local s = helper.connect(silent:port())
      local t = rill.spawn(function() return s:starttls{verify = false} end)
      rill.yield() -- it runs until it waits for the server's hello
      assert.equal("running", t:status())
      s:close()
      local resumed, ok, err = rill.wait(t, 3000)
      assert.is_true(resumed, "the task in starttls was never resumed")
      assert.is_nil(ok)
      assert.equal("closed", err)
    end)

  describe("start-up errors", function()
    it("name a missing certificate file and exit non-zero", function()
      local code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua", "--listen",
        "127.0.0.1:0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", dir .. "/a.test.key"})
      assert.equal(1, code)
      assert.matches("^rill: cannot load certificate /nonexistent/cert.pem: [^\n]*\n$", err)
    end)

    it("name a key that does not match its certificate", function()
      local code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua", "--listen",
        "127.0.0.1:0", "--tls-cert", dir .. "/a.test.crt", "--tls-key", dir .. "/b.test.key"})
      assert.equal(1, code)
      assert.matches("key .*b.test.key does not match certificate .*a.test.crt", err)
    end)
  end)

  -- A TLS 1.2 client may send a ClientHello after the handshake (a
  -- renegotiation); mbedTLS refuses it with a warning alert. Those alerts are
  -- replies the server writes by itself, so, like a WebSocket's pongs, they
  -- must obey the transport's high-water mark (or the attempt must end the
  -- connection): a peer that sends records full of 4-byte ClientHellos and
  -- never reads must not grow the server's memory. The client is python3's
  -- ssl for the handshake; then it seals records itself with the session's
  -- keys (from its key log). Its figures: bytes sent, how its sending ended
  -- ("held" when a write waited 1.5 s twice, the second time with the
  -- server idle; "closed" when the server hung up; "done" after 4 MiB), and
  -- the server's RSS before and once it has stopped working on them.
  it("answers renegotiation attempts from a peer that never reads in bounded memory",
    function()
      local srv = helper.serve("examples/echo.lua", {"--workers", "1", "--tls-cert",
        dir .. "/a.test.crt", "--tls-key", dir .. "/a.test.key"})
      finally(function() srv.stop() end)
      local client = [=[
import hashlib, hmac, os, socket, ssl, struct, sys, tempfile, time
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
port, pid = int(sys.argv[1]), sys.argv[2]
def rss():
    for l in open("/proc/%s/status" % pid):
        if l.startswith("VmRSS"): return int(l.split()[1]) * 1024
def prf(secret, label, seed, n):
    out, a = b"", label + seed
    while len(out) < n:
        a = hmac.new(secret, a, hashlib.sha256).digest()
        out += hmac.new(secret, a + label + seed, hashlib.sha256).digest()
    return out[:n]
keylog = tempfile.mktemp()
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
ctx.keylog_filename = keylog
sock = socket.create_connection(("127.0.0.1", port))
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inb, outb, server_hostname="a.test")
first = b""
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        sock.sendall(outb.read())
        d = sock.recv(65536)
        first += d
        inb.write(d)
sock.sendall(outb.read())
server_random = first[11:43]  # record header, handshake header, version
cr, ms = [l.split()[1:] for l in open(keylog) if l.startswith("CLIENT_RANDOM")][0]
os.unlink(keylog)
kb = prf(bytes.fromhex(ms), b"key expansion", server_random + bytes.fromhex(cr), 40)
key, iv, seq = kb[:16], kb[32:36], 1
def cpu():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def settle():  # until the server has stopped working on what it was sent
    last = cpu()
    while True:
        time.sleep(0.3)
        now = cpu()
        if now == last: return
        last = now
def send(data):  # "sent", "held" (blocked 1.5 s, twice, with the server idle), "closed"
    off, tries = 0, 0
    while off < len(data):
        try:
            off += sock.send(data[off:])
        except socket.timeout:
            tries += 1
            if tries == 2: return "held"
            settle()
        except OSError:
            return "closed"
    return "sent"
before = rss()
sock.settimeout(1.5)
sent, end = 0, "done"
while sent < 4 * 1024 * 1024:
    plain = b"\x01\x00\x00\x00" * 4096  # 4096 empty ClientHellos in one record
    nonce = struct.pack(">Q", seq)
    sealed = AESGCM(key).encrypt(iv + nonce, plain, struct.pack(">QBHH", seq, 22, 0x0303, len(plain)))
    seq += 1
    record = struct.pack(">BHH", 22, 0x0303, 8 + len(sealed)) + nonce + sealed
    r = send(record)
    if r != "sent":
        end = r
        break
    sent += len(record)
settle()
print(sent, end, before, rss())
sock.close()
]=]
      local code, out, err = helper.run({PYTHON, "-c", client, tostring(srv.port),
        tostring(srv.pid)})
      assert.equal(0, code, err)
      local sent, ended, before, after = out:match("^(%d+) (%a+) (%d+) (%d+)")
      assert.is_not_nil(sent, out .. err)
      local figures = ("%.1f MB of ClientHello records sent (%s); server RSS %.1f -> %.1f MB")
        :format(sent / MB, ended, before / MB, after / MB)
      if not helper.sanitized then
        assert.is_true(after - before < 20 * MB, figures)
      end
      -- and the server goes on serving
      local code2, out2 = helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
        ("a.test:%d:127.0.0.1"):format(srv.port), ("https://a.test:%d/"):format(srv.port))
      assert.equal(0, code2)
      assert.matches("^rill echo", out2)
      assert.equal(0, srv.stop())
    end)

  it("examples/tls_client.lua fetches a page from examples/https.lua", function()
    local port = helper.free_port()
    local srv = helper.start({"run", "examples/https.lua", dir .. "/a.test.crt",
      dir .. "/a.test.key", tostring(port)})
    local code, out, err = helper.run({helper.bin, "run", "examples/tls_client.lua",
      ("https://a.test:%d/"):format(srv.port), dir .. "/ca.crt", "127.0.0.1"})
    assert.equal(0, code, err)
    assert.matches("^HTTP/1.1 200 OK", out)
    assert.matches("Hello over TLS", out)
    assert.equal(0, srv.stop())
  end)
end)
