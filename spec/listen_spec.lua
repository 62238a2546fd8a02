-- Listeners for real hosts: unix sockets (HTTP and HTTPS), descriptors a
-- host made, systemd socket activation, client certificates.
local rill = require "rill"
local helper = require "spec.helper"

-- A fresh path for a unix socket (os.tmpname makes a file: removed).
local function sock_path()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".sock"
end

local function exists(path)
  return (helper.run({"test", "-e", path})) == 0
end

local function whoami(req, res)
  res:send(("%s %s %s"):format(tostring(req.remote_addr), tostring(req.remote_port), req.scheme))
end

describe("listen", function()
  describe("on a unix socket", function()
    it("serves HTTP to curl --unix-socket, the peer as remote_addr \"unix\"", function()
      local path = sock_path()
      local l = assert(rill.http.listen{unix = path, handler = whoami})
      local host, port = l:address()
      assert.equal(path, host)
      assert.equal(0, port)
      local code, out, err = helper.curl("--unix-socket", path, "http://localhost/")
      assert.equal(0, code, err)
      assert.equal("unix 0 http", out)
      l:close()
      assert.is_false(exists(path), "the socket file is removed when the listener closes")
    end)

    it("serves HTTPS", function()
      local dir = helper.certs()
      local path = sock_path()
      local l = assert(rill.http.listen{unix = path, handler = whoami,
        tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      local code, out, err = helper.curl("--unix-socket", path, "--cacert", dir .. "/ca.crt",
        "https://a.test/")
      assert.equal(0, code, err)
      assert.equal("unix 0 https", out)
      l:close()
    end)

    it("serves raw rill.listen connections", function()
      local path = sock_path()
      local l = assert(rill.listen{unix = path, handler = function(s)
        s:write("hello\n")
        s:close()
      end})
      local code, out = helper.run({"python3", "-c", [[
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); sys.stdout.write(s.recv(100).decode())
]], path})
      assert.equal(0, code)
      assert.equal("hello\n", out)
      l:close()
    end)

    it("replaces a stale socket file nothing listens on", function()
      local path = sock_path()
      -- a socket bound and closed leaves its file behind
      local code = helper.run({"python3", "-c", [[
import socket, sys
s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.close()
]], path})
      assert.equal(0, code)
      assert.is_true(exists(path))
      local l = assert(rill.http.listen{unix = path, handler = whoami})
      local c, out = helper.curl("--unix-socket", path, "http://localhost/")
      assert.equal(0, c)
      assert.equal("unix 0 http", out)
      l:close()
    end)

    it("leaves a file that is not a socket alone", function()
      local path = sock_path()
      local f = assert(io.open(path, "w"))
      f:write("data")
      f:close()
      local l, err = rill.http.listen{unix = path, handler = whoami}
      assert.is_nil(l)
      assert.matches("listen unix:" .. path:gsub("%p", "%%%0") .. ": EEXIST", err)
      f = assert(io.open(path))
      assert.equal("data", f:read("*a"))
      f:close()
      os.remove(path)
    end)

    it("leaves a socket another process listens on alone (rill serve --listen unix:)", function()
      local path = sock_path()
      local srv = helper.start({"serve", "examples/hello.lua", "--workers", "2",
        "--listen", "unix:" .. path, "--listen", "127.0.0.1:0"})
      local code, out = helper.curl("--unix-socket", path, "http://localhost/")
      assert.equal(0, code)
      assert.matches("Hello", out)
      local l, err = rill.http.listen{unix = path, handler = whoami}
      assert.is_nil(l)
      assert.matches("EADDRINUSE", err)
      -- both workers accept from the one socket
      for _ = 1, 20 do
        assert.equal(0, (helper.curl("--unix-socket", path, "http://localhost/")))
      end
      assert.equal(0, srv.stop())
      assert.is_false(exists(path), "removed when the server stops")
    end)

    it("takes a PROXY protocol header (a balancer on the same machine)", function()
      local path = sock_path()
      local l = assert(rill.http.listen{unix = path, proxy_protocol = true,
        handler = function(req, res)
          res:send(("%s %s %s"):format(req.remote_addr, req.remote_port, req.proxy_addr))
        end})
      local code, out, err = helper.run({"python3", "-c", [[
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(b"PROXY TCP4 192.0.2.7 192.0.2.1 4711 80\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b: break
    data += b
sys.stdout.write(data.decode().split("\r\n\r\n", 1)[1])
]], path})
      assert.equal(0, code, err)
      assert.equal("192.0.2.7 4711 unix", out)
      l:close()
    end)

    -- the file's permission bits, as stat prints them in octal
    local function mode_of(path)
      local _, out = helper.run({"stat", "-c", "%a", path})
      return out:match("%d+")
    end

    it("sets the file's permissions with unix_mode", function()
      local path = sock_path()
      local l = assert(rill.http.listen{unix = path, unix_mode = "660", handler = whoami})
      assert.equal("660", mode_of(path))
      l:close()
      l = assert(rill.http.listen{unix = path, unix_mode = tonumber("600", 8), handler = whoami})
      assert.equal("600", mode_of(path))
      l:close()
      assert.has_error(function()
        rill.http.listen{unix = path, unix_mode = "rw", handler = whoami}
      end)
      assert.has_error(function()
        rill.http.listen{unix = path, unix_mode = 0, handler = whoami}
      end)
      -- the CLI and the C API
      local srv = helper.start({"serve", "examples/hello.lua", "--workers", "1",
        "--listen", "unix:" .. path, "--unix-mode", "640", "--listen", "127.0.0.1:0"})
      assert.equal("640", mode_of(path))
      assert.equal(0, srv.stop())
    end)

    it("refuses bad options at the caller", function()
      assert.has_error(function()
        rill.http.listen{unix = "/tmp/x.sock", port = 80, handler = whoami}
      end)
      assert.has_error(function() rill.http.listen{unix = 5, handler = whoami} end)
      assert.has_error(function() rill.http.listen{fd = -1, handler = whoami} end)
    end)
  end)

  describe("on a descriptor", function()
    it("is refused when the descriptor is not a listening socket", function()
      local l, err = rill.http.listen{fd = 0, handler = whoami}
      assert.is_nil(l)
      assert.matches("listen fd 0: ", err)
    end)
  end)

  describe("systemd socket activation", function()
    local HAS_SYSTEMD = (helper.run({"sh", "-c", "command -v systemd-socket-activate"})) == 0

    it("serves the sockets systemd-socket-activate gives, and keeps them from the app's children",
      function()
      if not HAS_SYSTEMD then return pending("systemd-socket-activate is not installed") end
      local port = helper.free_port()
      local app = os.tmpname() .. ".lua"
      local f = assert(io.open(app, "w"))
      f:write([[
local rill = require "rill"
return function(req, res)
  local p = rill.exec{"sh", "-c", "echo ${LISTEN_FDS:-none} ${LISTEN_PID:-none}", stdout = "pipe"}
  local out = p.stdout:read_all()
  p:wait()
  res:send(out)
end
]])
      f:close()
      local srv = helper.start({"serve", app, "--workers", "2"}, nil,
        {"systemd-socket-activate", "-l", "127.0.0.1:" .. port})
      assert.equal(port, srv.port)
      for _ = 1, 4 do
        local code, out, err = helper.curl(helper.url(port))
        assert.equal(0, code, err)
        assert.equal("none none\n", out)
      end
      srv.wait_log("serving .* on http://127%.0%.0%.1:" .. port .. " %(fd 3%)")
      assert.equal(0, srv.stop())
      os.remove(app)
    end)

    -- What systemd does, without systemd: bind, put the sockets at 3..,
    -- set LISTEN_PID to the pid that execs rill, LISTEN_FDS to their count.
    local LAUNCHER = [[
import os, socket, sys
port, path = int(sys.argv[1]), sys.argv[2]
t = socket.socket(); t.bind(("127.0.0.1", port)); t.listen(16)
u = socket.socket(socket.AF_UNIX); u.bind(path); u.listen(16)
hi_t, hi_u = os.dup(t.fileno()), os.dup(u.fileno())
while hi_t < 5 or hi_u < 5: hi_t, hi_u = os.dup(hi_t), os.dup(hi_u)
os.dup2(hi_t, 3); os.dup2(hi_u, 4)
env = dict(os.environ, LISTEN_PID=str(os.getpid()), LISTEN_FDS="2")
os.execve(sys.argv[3], sys.argv[3:], env)
]]

    it("serves a TCP and a unix socket handed over as systemd does, over TLS with certificates",
      function()
      local dir = helper.certs()
      local port, path = helper.free_port(), sock_path()
      local srv = helper.start({"serve", "examples/hello.lua", "--workers", "2", "--tls-cert",
        dir .. "/a.test.crt", "--tls-key", dir .. "/a.test.key"}, nil,
        {"python3", "-c", LAUNCHER, tostring(port), path})
      assert.equal(port, srv.port)
      local code, out, err = helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
        "a.test:" .. port .. ":127.0.0.1", "https://a.test:" .. port .. "/")
      assert.equal(0, code, err)
      assert.matches("Hello", out)
      code, out, err = helper.curl("--unix-socket", path, "--cacert", dir .. "/ca.crt",
        "https://a.test/")
      assert.equal(0, code, err)
      assert.matches("Hello", out)
      -- the default address (127.0.0.1:8080) is not served in their place
      assert.is_nil(srv.logtext():find("127.0.0.1:8080", 1, true))
      assert.equal(0, srv.stop())
      os.remove(path)
    end)
  end)

  describe("client certificates", function()
    local dir, stranger
    setup(function()
      dir = helper.certs()
      -- a client certificate no trusted CA signed
      stranger = os.tmpname()
      local code, _, err = helper.run({"sh", "-c", [[
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
  -out "$1.crt" -days 2 -subj "/CN=stranger" 2>/dev/null]], "sh", stranger})
      assert(code == 0, err)
    end)

    local function tls_opts(mode)
      return {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key", client_ca = dir .. "/ca.crt",
        verify_client = mode}
    end

    local function seen(req, res)
      local c = req.tls_client
      res:send(c and ("%s|%s|%s|%s"):format(c.subject, tostring(c.dns), tostring(c.email),
        tostring(c.verified)) or "none")
    end

    local function curl(port, ...)
      return helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
        ("a.test:%d:127.0.0.1"):format(port), ("https://a.test:%d/"):format(port), ...)
    end

    it("required: a client with a certificate of the CA is served and named", function()
      local l, port = helper.listen(seen, {tls = tls_opts("required")})
      local code, out, err = curl(port, "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code, err)
      assert.equal("CN=client.test|client.test|client@test|true", out)
      -- without a certificate, or with one of another CA: no handshake
      code = curl(port)
      assert.not_equal(0, code)
      code = curl(port, "--cert", stranger .. ".crt", "--key", stranger .. ".key")
      assert.not_equal(0, code)
      -- and the listener goes on serving
      code, out = curl(port, "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code)
      assert.matches("^CN=client.test", out)
      l:close()
    end)

    it("optional: no certificate is served as none, a bad one is refused", function()
      local l, port = helper.listen(seen, {tls = tls_opts("optional")})
      local code, out, err = curl(port)
      assert.equal(0, code, err)
      assert.equal("none", out)
      code, out = curl(port, "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code)
      assert.equal("CN=client.test|client.test|client@test|true", out)
      code = curl(port, "--cert", stranger .. ".crt", "--key", stranger .. ".key")
      assert.not_equal(0, code)
      l:close()
    end)

    it("without client_ca no certificate is asked for: req.tls_client is false", function()
      local l, port = helper.listen(function(req, res) res:send(tostring(req.tls_client)) end,
        {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      local code, out = curl(port, "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code)
      assert.equal("false", out)
      l:close()
    end)

    it("a raw listener sees the certificate in s:tls_info().client", function()
      local got
      local l = assert(rill.listen{port = 0, tls = tls_opts("required"), handler = function(s)
        got = s:tls_info().client
        s:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
      end})
      local code, out, err = curl(l:port(), "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code, err)
      assert.equal("ok", out)
      -- the fingerprint as openssl gives it
      local _, fp = helper.run({"openssl", "x509", "-in", dir .. "/client.test.crt", "-noout",
        "-fingerprint", "-sha256"})
      fp = fp:match("=([%x:]+)"):gsub(":", ""):lower()
      assert.same({subject = "CN=client.test", issuer = "CN=rill test CA", dns = "client.test",
        email = "client@test", sha256 = fp, verified = true}, got)
      l:close()
    end)

    it("refuses a bad mode or a missing CA file", function()
      local l, err = rill.http.listen{port = 0, handler = seen, tls = tls_opts("sometimes")}
      assert.is_nil(l)
      assert.matches("verify_client", err)
      local o = tls_opts("required")
      o.client_ca = dir .. "/missing.crt"
      l, err = rill.http.listen{port = 0, handler = seen, tls = o}
      assert.is_nil(l)
      assert.matches("missing.crt", err)
    end)

    it("rill serve --tls-client-ca --tls-verify-client", function()
      local srv = helper.serve("examples/hello.lua", {"--workers", "1", "--tls-cert",
        dir .. "/a.test.crt", "--tls-key", dir .. "/a.test.key", "--tls-client-ca",
        dir .. "/ca.crt", "--tls-verify-client", "required"})
      local code = curl(srv.port, "--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code)
      assert.not_equal(0, (curl(srv.port)))
      assert.equal(0, srv.stop())
    end)
  end)

  -- tests/c/listen_host: a C host that makes its own sockets.
  describe("from the C API", function()
    local HOST = (helper.bin:match("^(.*)/[^/]*$") or ".") .. "/listen_host"
    local dir
    setup(function() dir = helper.certs() end)

    -- Starts listen_host with args; returns {listeners = {[i] = "host:port" |
    -- "unix:path"}, serve_fd = {[i] = port}, stop()}.
    local function host(args)
      local spec = {HOST, stdout = "null", stderr = "pipe"}
      for _, a in ipairs(args) do spec[#spec + 1] = a end
      local p = assert(rill.exec(spec))
      p.stderr:settimeout(10000)
      local h = {listeners = {}, serve_fd = {}, log = {}}
      while true do
        local line, err = p.stderr:read_until("\n")
        if not line then
          p:kill(9)
          p:wait()
          error("listen_host did not start (" .. tostring(err) .. "): " ..
            table.concat(h.log, "\n"))
        end
        h.log[#h.log + 1] = line
        local i, where = line:match("^listener (%d+) (%S+)")
        if i then h.listeners[tonumber(i)] = where end
        local j, port = line:match("^serve_fd (%d+) 127%.0%.0%.1:(%d+)")
        if j then h.serve_fd[tonumber(j)] = tonumber(port) end
        if line == "ready" then break end
      end
      local reader = rill.spawn(function()
        while p.stderr:read_until("\n", 1e6) do end
      end)
      function h.stop()
        p:kill(15)
        local code, sig = p:wait(10000)
        if code == nil then
          p:kill(9)
          code = p:wait()
        end
        rill.wait(reader, 2000)
        return code
      end
      return h
    end

    it("rill_listen_fd and rill_serve_fd: sockets and connections the host made", function()
      local h = host({"--workers", "2", "--tcp-fd", "--serve-fd"})
      local url = "http://" .. h.listeners[0] .. "/"
      for _ = 1, 10 do
        local code, out, err = helper.curl(url)
        assert.equal(0, code, err)
        assert.equal("http 127.0.0.1 -", out)
      end
      -- connections the host accepted itself, served by listener 0, spread
      -- round robin over the workers
      local workers = {}
      for _ = 1, 10 do
        local status, headers, body = helper.fetch(helper.url(h.serve_fd[0]))
        assert.equal(200, status)
        assert.equal("http 127.0.0.1 -", body)
        workers[headers["x-worker"]] = true
      end
      assert.same({["0"] = true, ["1"] = true}, workers)
      -- keep-alive: several requests on one adopted connection
      local code, out = helper.curl(helper.url(h.serve_fd[0]), helper.url(h.serve_fd[0], "/2"))
      assert.equal(0, code)
      assert.equal("http 127.0.0.1 -http 127.0.0.1 -", out)
      assert.equal(0, h.stop())
    end)

    it("rill_listen_unix, and rill_serve_fd onto an HTTPS listener", function()
      local path = sock_path()
      local h = host({"--unix", path, "--unix-mode", "666", "--tcp", "--cert", dir .. "/a.test.crt",
        dir .. "/a.test.key", "--serve-fd"})
      assert.equal("unix:" .. path, h.listeners[0])
      local code, out, err = helper.curl("--unix-socket", path, "http://localhost/")
      assert.equal(0, code, err)
      assert.equal("http unix -", out)
      local _, mode = helper.run({"stat", "-c", "%a", path})
      assert.equal("666\n", mode)
      code, out, err = helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
        "a.test:" .. h.serve_fd[1] .. ":127.0.0.1", "https://a.test:" .. h.serve_fd[1] .. "/")
      assert.equal(0, code, err)
      assert.equal("https 127.0.0.1 -", out)
      assert.equal(0, h.stop())
      assert.is_false(exists(path))
    end)

    it("rill_listener_add_cert: certificates chosen by SNI (openssl s_client -servername)",
      function()
      local h = host({"--tcp", "--cert", dir .. "/a.test.crt", dir .. "/a.test.key", "--cert",
        dir .. "/b.test.crt", dir .. "/b.test.key"})
      local function subject(name)
        local _, out = helper.run({"openssl", "s_client", "-connect", h.listeners[0],
          "-servername", name}, {input = "", timeout = 20000})
        return out:match("subject=([^\n]*)")
      end
      assert.matches("b%.test", subject("b.test"))
      assert.matches("a%.test", subject("a.test"))
      assert.matches("a%.test", subject("unknown.test"), "the first pair is the default")
      assert.equal(0, h.stop())
    end)

    it("RILL_LISTEN_CLIENT_CA and RILL_LISTEN_VERIFY_CLIENT", function()
      local h = host({"--tcp", "--cert", dir .. "/a.test.crt", dir .. "/a.test.key",
        "--client-ca", dir .. "/ca.crt", "--verify", "2"})
      local port = h.listeners[0]:match(":(%d+)$")
      local function curl(...)
        return helper.curl("--cacert", dir .. "/ca.crt", "--resolve",
          "a.test:" .. port .. ":127.0.0.1", "https://a.test:" .. port .. "/", ...)
      end
      local code, out, err = curl("--cert", dir .. "/client.test.crt", "--key",
        dir .. "/client.test.key")
      assert.equal(0, code, err)
      assert.equal("https 127.0.0.1 CN=client.test", out)
      assert.not_equal(0, (curl()))
      assert.equal(0, h.stop())
    end)

    it("RILL_LISTEN_PROXY_PROTOCOL", function()
      local h = host({"--tcp", "--proxy-protocol"})
      local port = tonumber(h.listeners[0]:match(":(%d+)$"))
      local out = helper.raw(port, "PROXY TCP4 192.0.2.7 127.0.0.1 4711 80\r\n" ..
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      assert.matches("\r\n\r\nhttp 192%.0%.2%.7 %-$", out)
      assert.equal(0, h.stop())
    end)

    it("refuses bad listener options", function()
      local h = host({"--tcp"}) -- a host that starts is enough; the checks are below
      assert.equal(0, h.stop())
      local code, _, err = helper.run({HOST, "--tcp", "--verify", "7"})
      assert.equal(1, code)
      assert.matches("invalid argument", err)
      code, _, err = helper.run({HOST, "--tcp", "--cert", "/nonexistent.crt", "/nonexistent.key"})
      assert.equal(1, code)
      assert.matches("invalid argument", err)
    end)
  end)
end)
