-- Shared fixtures for the specs: servers in this process or in a child
-- `rill serve`, raw socket clients, child processes, memory readings.
local rill = require "rill"

local helper = {}

-- The rill binary under test (ctest sets RILL_BIN; `rill test` by hand runs
-- from the source tree).
helper.bin = os.getenv("RILL_BIN") or "./build/rill"

-- Runs argv to completion; returns exit code, stdout, stderr. opts.input is
-- written to its stdin; opts.timeout (ms) kills it.
function helper.run(argv, opts)
  opts = opts or {}
  local spec = {stdout = "pipe", stderr = "pipe", stdin = opts.input and "pipe" or "null",
    env = opts.env, cwd = opts.cwd}
  for i, a in ipairs(argv) do spec[i] = a end
  local p = assert(rill.exec(spec))
  local out, err
  local t_out = rill.spawn(function() return p.stdout:read_all(256 * 1024 * 1024) end)
  local t_err = rill.spawn(function() return p.stderr:read_all(16 * 1024 * 1024) end)
  if opts.input then
    p.stdin:write(opts.input)
    p.stdin:close()
  end
  local code, sig = p:wait(opts.timeout or 60000)
  if code == nil and sig == "timeout" then
    p:kill(9)
    code, sig = p:wait()
  end
  local _
  _, out = rill.wait(t_out)
  _, err = rill.wait(t_err)
  return code, out or "", err or "", sig
end

-- curl with -sS and the given arguments; returns code, stdout, stderr.
function helper.curl(...)
  return helper.run({"curl", "-sS", "--max-time", "60", ...})
end

-- An HTTP request with curl (-i and the given arguments); returns status,
-- headers (lower-case names; repeated ones joined with ", ") and body of the
-- final response (past any 100 Continue). Fails the spec if curl fails.
function helper.fetch(...)
  local code, out, err = helper.curl("-i", ...)
  assert(code == 0, "curl failed: " .. err)
  local status, headers
  repeat
    local head_end = assert(out:find("\r\n\r\n", 1, true), "no response head: " .. out)
    local head = out:sub(1, head_end - 1)
    out = out:sub(head_end + 4)
    status = tonumber(head:match("^HTTP/%S+ (%d+)"))
    headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+):[ \t]*([^\r\n]*)") do
      name = name:lower()
      headers[name] = headers[name] and headers[name] .. ", " .. value or value
    end
  until status >= 200
  return status, headers, out
end

-- http://127.0.0.1:port/path (path "/" when not given).
function helper.url(port, path)
  return ("http://127.0.0.1:%d%s"):format(port, path or "/")
end

-- Waits (up to 5 s) for fn() to be true: for what a server does after the
-- client has its answer. Returns whether it came true.
function helper.eventually(fn)
  for _ = 1, 500 do
    if fn() then return true end
    rill.sleep(10)
  end
  return false
end

-- Starts an HTTP server in this process; returns its listener and port.
function helper.listen(handler, opts)
  local o = {host = "127.0.0.1", port = 0, handler = handler}
  for k, v in pairs(opts or {}) do o[k] = v end
  local l = assert(rill.http.listen(o))
  return l, l:port()
end

-- Starts a child rill (argv after the binary) and waits for the log line
-- that names its port ("127.0.0.1:PORT"); returns a server object with port,
-- pid, stop() and logtext(). wrap: a command put before the binary (taskset).
function helper.start(argv, env, wrap)
  local spec = {stdout = "null", stderr = "pipe"}
  for _, a in ipairs(wrap or {}) do spec[#spec + 1] = a end
  if env then
    spec[#spec + 1] = "env"
    for k, v in pairs(env) do spec[#spec + 1] = k .. "=" .. v end
  end
  spec[#spec + 1] = helper.bin
  for _, a in ipairs(argv) do spec[#spec + 1] = a end
  local p = assert(rill.exec(spec))
  p.stderr:settimeout(10000)
  local log = {}
  local port
  while not port do
    local line, err = p.stderr:read_until("\n")
    if not line then
      p:kill(9)
      p:wait()
      error("rill did not start (" .. tostring(err) .. "): " .. table.concat(log, "\n"))
    end
    log[#log + 1] = line
    port = tonumber(line:match("127%.0%.0%.1:(%d+)"))
  end
  p.stderr:settimeout(nil)
  -- Keep reading its log so that it never blocks on a full pipe.
  local reader = rill.spawn(function()
    while true do
      local line = p.stderr:read_until("\n", 1e6)
      if not line then return end
      log[#log + 1] = line
    end
  end)
  local srv = {port = port, pid = p.pid, proc = p, log = log}
  local stopped = false
  function srv.stop()
    if stopped then return 0 end
    stopped = true
    p:kill(15)
    local code, sig = p:wait(10000)
    if code == nil and sig == "timeout" then
      p:kill(9)
      code, sig = p:wait()
    end
    rill.wait(reader, 2000)
    if code ~= 0 then
      io.stderr:write("-- log of ", table.concat(argv, " "), " (exit ", tostring(code), ", signal ",
        tostring(sig), "):\n", table.concat(log, "\n"), "\n")
    end
    return code, sig
  end
  function srv.logtext() return table.concat(log, "\n") end
  -- Waits (up to 5 s) for a log line matching pattern; returns its captures.
  function srv.wait_log(pattern)
    for _ = 1, 500 do
      for _, line in ipairs(log) do
        local found = {line:match(pattern)}
        if #found > 0 then return unpack(found) end
      end
      rill.sleep(10)
    end
    error("no log line matches " .. pattern .. ":\n" .. table.concat(log, "\n"))
  end
  return srv
end

-- Starts `rill serve app --listen 127.0.0.1:0 [args]`.
function helper.serve(app, args)
  local argv = {"serve", app, "--listen", "127.0.0.1:0"}
  for _, a in ipairs(args or {}) do argv[#argv + 1] = a end
  return helper.start(argv)
end

-- rill.websocket.connect with a 10 s idle timeout, so that a broken server
-- fails a spec instead of hanging it.
function helper.ws(url, opts)
  local o = {idle_timeout = 10000}
  for k, v in pairs(opts or {}) do o[k] = v end
  return rill.websocket.connect(url, o)
end

-- True under AddressSanitizer, where memory figures mean nothing.
helper.sanitized = os.getenv("RILL_SANITIZED") == "1"

-- Test certificates, made once per run with openssl: a CA and leaves for
-- a.test (and *.a.test), b.test, other.test and client.test (a client
-- certificate, with e-mail client@test) signed by it. Returns the
-- directory; files are NAME.crt / NAME.key, the CA is ca.crt.
local cert_dir
function helper.certs()
  if cert_dir then return cert_dir end
  local dir = os.tmpname()
  os.remove(dir)
  local script = [[
set -e
mkdir -p "$1" && cd "$1"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
  -out ca.crt -days 2 -subj "/CN=rill test CA" 2>/dev/null
leaf() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" \
    -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\n' "$2" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
    -extfile "$1.ext" -out "$1.crt" 2>/dev/null
}
leaf a.test "DNS:a.test,DNS:*.a.test"
leaf b.test "DNS:b.test"
leaf other.test "DNS:other.test"
leaf client.test "DNS:client.test,email:client@test"
]]
  local code, _, err = helper.run({"sh", "-c", script, "sh", dir})
  assert(code == 0, "making test certificates: " .. err)
  cert_dir = dir
  return dir
end

-- A port that was free a moment ago (for servers that cannot report theirs).
function helper.free_port()
  local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function() end})
  local port = l:port()
  l:close()
  return port
end

-- A raw TCP server on 127.0.0.1 that writes down what clients send: each
-- connection is counted when accepted (handlers start in the order the
-- connections came), its request head kept, and the answer is a 200 "ok"
-- with Connection: close. Returns {port =, accepted = n, heads = {...},
-- close()}; heads[i] is nil for a connection that sent no whole head.
function helper.recorder()
  local rec = {accepted = 0, heads = {}}
  local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
    rec.accepted = rec.accepted + 1
    local i = rec.accepted
    sock:settimeout(10000)
    local head = sock:read_until("\r\n\r\n", 65536)
    if head then
      rec.heads[i] = head
      sock:write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    end
    sock:close()
  end})
  rec.port = l:port()
  function rec.close() l:close() end
  return rec
end

-- Memory of a process, from /proc: current and peak resident set, in bytes.
function helper.rss(pid)
  local f = assert(io.open("/proc/" .. pid .. "/status"))
  local s = f:read("*a")
  f:close()
  local rss = tonumber(s:match("VmRSS:%s*(%d+)")) * 1024
  local hwm = tonumber(s:match("VmHWM:%s*(%d+)")) * 1024
  return rss, hwm
end

-- Connects to 127.0.0.1:port with a 10 s timeout on each operation.
function helper.connect(port)
  local s = assert(rill.connect("127.0.0.1", port, 5000))
  s:settimeout(10000)
  return s
end

-- Reads s until it ends (or a read fails), then closes it; returns
-- everything read and how it ended ("closed", "timeout", ...).
function helper.read_to_end(s)
  local parts = {}
  local why
  while true do
    local chunk, err = s:read_some()
    if not chunk then
      why = err or "closed"
      break
    end
    parts[#parts + 1] = chunk
  end
  s:close()
  return table.concat(parts), why
end

-- Sends data on a new connection and reads until the server closes it (or
-- the timeout, default 5 s); returns everything read and how it ended.
function helper.raw(port, data, timeout)
  local s = helper.connect(port)
  s:settimeout(timeout or 5000)
  assert(s:write(data))
  return helper.read_to_end(s)
end

-- Reads an HTTP response head from s: status, headers (lower-case keys).
function helper.read_response_head(s)
  local line, err = s:read_until("\r\n")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  while true do
    local h = assert(s:read_until("\r\n"))
    if h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.-)%s*$")
    headers[k:lower()] = v
  end
  return status, headers
end

-- Reads a chunked body from s, to its end.
function helper.read_chunked(s)
  local parts = {}
  while true do
    local size = tonumber(assert(s:read_until("\r\n")), 16)
    if size == 0 then
      assert(s:read_until("\r\n"))
      break
    end
    parts[#parts + 1] = s:read(size)
    assert(s:read(2) == "\r\n")
  end
  return table.concat(parts)
end

-- Reads one HTTP response from s: status, headers (lower-case keys), body.
-- Handles Content-Length and chunked bodies.
function helper.read_response(s)
  local status, headers = helper.read_response_head(s)
  if not status then return nil, headers end
  local body
  if headers["content-length"] then
    body = s:read(tonumber(headers["content-length"]))
  elseif headers["transfer-encoding"] == "chunked" then
    body = helper.read_chunked(s)
  end
  return status, headers, body
end

-- Debian's PostgreSQL, started for a spec: initdb and pg_ctl as the
-- postgres user in a temporary directory, listening on 127.0.0.1 at a free
-- port (and a Unix socket in the directory). opts: hba (the pg_hba.conf
-- text; default: trust for everyone), conf (lines added to postgresql.conf),
-- files ({name = path}: copied into the data directory, owned by postgres,
-- mode 0600: a TLS certificate and key). Returns {port =, dir =, bin =,
-- psql(sql [, user]) → code, out, err, stop()}, or nil and why (not
-- installed, or could not start: the spec should be pending).
function helper.postgres(opts)
  opts = opts or {}
  local bin = io.popen("ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tail -1"):read("*l")
  if not bin or bin == "" or not io.open(bin .. "/initdb") then
    return nil, "Debian's postgresql is not installed"
  end
  local dir = os.tmpname()
  os.remove(dir)
  local port = helper.free_port()
  local code, _, err = helper.run({"sh", "-c", [[
    set -e
    mkdir -p "$2" && chown postgres "$2"
    runuser -u postgres -- "$1/initdb" -D "$2/data" -A trust -U postgres >/dev/null
  ]], "sh", bin, dir}, {timeout = 60000})
  if code ~= 0 then
    helper.run({"rm", "-rf", dir})
    return nil, "initdb failed: " .. err
  end
  local function put(name, text)
    local f = assert(io.open(dir .. "/data/" .. name, name == "postgresql.conf" and "ab" or "wb"))
    f:write(text)
    f:close()
  end
  if opts.hba then put("pg_hba.conf", opts.hba) end
  put("postgresql.conf", "\n" .. (opts.conf or "") .. "\n")
  for name, path in pairs(opts.files or {}) do
    helper.run({"sh", "-c", 'cp "$1" "$2" && chown postgres "$2" && chmod 600 "$2"', "sh", path,
      dir .. "/data/" .. name})
  end
  code, _, err = helper.run({"runuser", "-u", "postgres", "--", bin .. "/pg_ctl", "-D",
    dir .. "/data", "-l", dir .. "/log", "-w", "-o",
    ("-p %d -k %s -c listen_addresses=127.0.0.1"):format(port, dir), "start"}, {timeout = 60000})
  if code ~= 0 then
    local f = io.open(dir .. "/log")
    local log = f and f:read("*a") or ""
    if f then f:close() end
    helper.run({"rm", "-rf", dir})
    return nil, "could not start Postgres: " .. err .. log
  end
  local pgs = {port = port, dir = dir, bin = bin}
  -- psql as the postgres user over the Unix socket (trust)
  function pgs.psql(sql, user)
    return helper.run({"runuser", "-u", "postgres", "--", bin .. "/psql", "-h", dir, "-p",
      tostring(port), "-U", user or "postgres", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tAc", sql},
      {timeout = 60000})
  end
  local stopped = false
  function pgs.stop()
    if stopped then return end
    stopped = true
    helper.run({"runuser", "-u", "postgres", "--", bin .. "/pg_ctl", "-D", dir .. "/data",
      "-m", "immediate", "-w", "stop"}, {timeout = 30000})
    helper.run({"rm", "-rf", dir})
  end
  return pgs
end

return helper
