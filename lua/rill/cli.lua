-- The command line: rill serve | run | test | version.
local rill = require "rill"
local http = require "rill.http"

local M = {}

local usage = [[
usage: rill serve APP.lua [--listen HOST:PORT|unix:PATH|fd:N]... [--tls-cert F --tls-key F]... [options]
       rill run SCRIPT.lua [ARGS...]
       rill test [PATH...]
       rill version

serve options (sizes in bytes, times in seconds):
  --listen HOST:PORT        address to serve (default 127.0.0.1:8080); repeatable.
                            unix:PATH: a unix socket file (a stale one is
                            replaced, removed at exit); fd:N: a listening
                            descriptor the server inherited. Started by
                            systemd (socket activation: LISTEN_PID and
                            LISTEN_FDS), its sockets are served as fd:3...
  --unix-mode MODE          unix:PATH sockets' permissions, octal (660);
                            default: as the umask leaves them
  --listen-tls HOST:PORT    an HTTPS address; repeatable (with --listen-tls, the
                            --listen addresses stay plain; without, certificates
                            make every --listen address HTTPS)
  --tls-cert FILE           PEM certificate (chain); repeatable, paired in order
  --tls-key FILE            with --tls-key; the first pair is the default, the
                            others are chosen by SNI
  --handshake-timeout S     TLS handshake (default 10)
  --http2                   HTTP/2 too, on every listener: "h2" by ALPN over
                            TLS, h2c in clear (prior knowledge, or Upgrade:
                            h2c on a request without a body); HTTP/1.1 goes
                            on as before
  --workers N               worker threads (default: one per CPU this process
                            may run on, from its affinity mask)
  --pin                     pin worker i to the i-th CPU of that mask
  --grace S                 on SIGTERM/SIGINT, how long requests in flight may
                            take to finish (default 30)
  --watch                   reload when a .lua file beside the app changes
                            (SIGHUP reloads too); an app whose first load
                            fails answers 503 until an edit loads
  --max-connections N       per worker (default 16384); at the limit the
                            longest idle connection is closed to make room
  --max-connections-per-address N
                            per worker, from one client address (default 0:
                            no limit)
  --max-header-bytes N      request line and fields (default 16384)
  --max-headers N           header fields (default 100)
  --max-body-bytes N        request body, 0 for no limit (default 1 GiB)
  --header-timeout S        to receive a request head (default 30)
  --body-timeout S          longest wait for body bytes (default 60)
  --min-body-rate N         bytes/s a request body must keep up while the
                            server waits for it, once --body-rate-grace of
                            waiting is used; 0 for none (default 500)
  --body-rate-grace S       waiting for body bytes before the rate counts
                            (default 20)
  --keepalive-timeout S     idle connection between requests (default 60)
  --send-timeout S          longest a response write waits (default 60)
  --log-level LEVEL         error, warn, info or debug (default info)
  --proxy-protocol          every connection begins with a PROXY protocol
                            header (v1 or v2, as HAProxy's send-proxy and
                            send-proxy-v2 send): req.remote_addr is the client
                            it names; a connection without one is closed
  --proxy-from ADDR[/BITS]  a source allowed to send the header; repeatable
                            (default: 127.0.0.0/8 and ::1 only)
  --tls-client-ca FILE      ask HTTPS clients for a certificate signed by a CA
                            in FILE (PEM): req.tls_client names it
  --tls-verify-client MODE  required (the default with --tls-client-ca: no
                            handshake without a valid certificate) or
                            optional (a certificate given must verify)
  --tls-ticket-keys FILE    TLS session ticket keys shared by instances: one
                            or more 80-byte keys (openssl rand 80), the first
                            encrypts; read again on reload (SIGHUP). Without
                            it the workers share keys made at start, rotated
                            every 12 hours
]]

local function die(msg)
  io.stderr:write("rill: ", msg, "\n")
  return 2
end

local flag_keys = {
  ["--max-connections"] = "max_connections",
  ["--max-connections-per-address"] = "max_connections_per_address",
  ["--min-body-rate"] = "min_body_rate",
  ["--body-rate-grace"] = "body_rate_grace",
  ["--max-header-bytes"] = "max_header_bytes",
  ["--max-headers"] = "max_headers",
  ["--max-body-bytes"] = "max_body_bytes",
  ["--header-timeout"] = "header_timeout",
  ["--body-timeout"] = "body_timeout",
  ["--keepalive-timeout"] = "keepalive_timeout",
  ["--send-timeout"] = "send_timeout",
  ["--handshake-timeout"] = "handshake_timeout",
}

-- Loads an app file; returns its handler or nil and a message naming the file.
function M.load_app(path)
  return require("rill.app").load(path)
end

local function serve(args)
  local app_path, watch, ticket_keys, client_ca, verify_client, unix_mode
  local listens, tls_listens, certs, keys, opts = {}, {}, {}, {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    local v = args[i + 1]
    if a == "--help" or a == "-h" then
      io.stdout:write(usage)
      return 0
    elseif a == "--listen" then
      if not v then return die("--listen needs HOST:PORT") end
      listens[#listens + 1] = v
      i = i + 2
    elseif a == "--listen-tls" or a == "--tls-cert" or a == "--tls-key" then
      if not v then return die(a .. " needs a value") end
      local list = a == "--listen-tls" and tls_listens or a == "--tls-cert" and certs or keys
      list[#list + 1] = v
      i = i + 2
    elseif flag_keys[a] then
      local n = tonumber(v)
      if not n or n < 0 then return die(a .. " needs a number") end
      -- flags give seconds; the Lua API takes milliseconds
      local seconds = a:find("%-timeout$") or a == "--body-rate-grace"
      opts[flag_keys[a]] = seconds and n * 1000 or n
      i = i + 2
    elseif a == "--workers" or a == "--grace" then
      -- read by the runtime before any Lua ran (core/rill.c)
      if not tonumber(v) or tonumber(v) < (a == "--workers" and 1 or 0) then
        return die(a .. " needs a number")
      end
      i = i + 2
    elseif a == "--watch" then
      watch = true
      i = i + 1
    elseif a == "--proxy-protocol" then
      opts.proxy_protocol = true
      i = i + 1
    elseif a == "--http2" then
      opts.http2 = true
      i = i + 1
    elseif a == "--proxy-from" then
      if not v then return die("--proxy-from needs an address (ADDR or ADDR/BITS)") end
      opts.proxy_from = opts.proxy_from or {}
      opts.proxy_from[#opts.proxy_from + 1] = v
      i = i + 2
    elseif a == "--unix-mode" then
      if not (v and v:match("^[0-7]+$") and tonumber(v, 8) > 0 and tonumber(v, 8) <= 4095) then
        return die("--unix-mode needs octal permission bits (660)")
      end
      unix_mode = v
      i = i + 2
    elseif a == "--tls-client-ca" then
      if not v then return die("--tls-client-ca needs a file") end
      client_ca = v
      i = i + 2
    elseif a == "--tls-verify-client" then
      if v ~= "optional" and v ~= "required" then
        return die("--tls-verify-client: optional or required")
      end
      verify_client = v
      i = i + 2
    elseif a == "--tls-ticket-keys" then
      if not v then return die("--tls-ticket-keys needs a file") end
      ticket_keys = v
      i = i + 2
    elseif a == "--pin" then
      i = i + 1 -- read by the runtime (core/rill.c)
    elseif a == "--log-level" then
      local ok = pcall(rill.set_log_level, v)
      if not ok then return die("--log-level: error, warn, info or debug") end
      i = i + 2
    elseif a:sub(1, 2) == "--" then
      return die("unknown option " .. a .. "\n" .. usage)
    elseif not app_path then
      app_path = a
      i = i + 1
    else
      return die("unexpected argument " .. a)
    end
  end
  if not app_path then return die("serve needs an app file\n" .. usage) end
  if #certs ~= #keys then return die("give one --tls-key for each --tls-cert") end
  if #tls_listens > 0 and #certs == 0 then
    return die("--listen-tls needs --tls-cert and --tls-key")
  end
  local tls
  if opts.proxy_from and not opts.proxy_protocol then
    return die("--proxy-from needs --proxy-protocol")
  end
  if ticket_keys and #certs == 0 then return die("--tls-ticket-keys needs --tls-cert") end
  if (client_ca or verify_client) and #certs == 0 then
    return die("--tls-client-ca and --tls-verify-client need --tls-cert")
  end
  if verify_client and not client_ca then return die("--tls-verify-client needs --tls-client-ca") end
  if #certs > 0 then
    tls = {handshake_timeout = opts.handshake_timeout, ticket_keys = ticket_keys,
      client_ca = client_ca, verify_client = verify_client}
    for n = 1, #certs do tls[n] = {cert = certs[n], key = keys[n]} end
  end
  local cfg = {path = app_path, listens = {}, limits = opts, watch = watch}
  if #listens == 0 and #tls_listens == 0 then listens[1] = "127.0.0.1:8080" end
  local function add(addr, t)
    local path = addr:match("^unix:(.+)$")
    if path then
      cfg.listens[#cfg.listens + 1] = {unix = path, unix_mode = unix_mode, tls = t}
      return true
    end
    local fd = tonumber(addr:match("^fd:(%d+)$"))
    if fd then
      cfg.listens[#cfg.listens + 1] = {fd = fd, tls = t}
      return true
    end
    local host, port = addr:match("^%[?([^%]]*)%]?:(%d+)$")
    port = tonumber(port)
    if not host or host == "" or port > 65535 then return false end
    cfg.listens[#cfg.listens + 1] = {host = host, port = port, tls = t}
    return true
  end
  for _, a in ipairs(listens) do
    if not add(a, #tls_listens == 0 and tls or nil) then
      return die("bad --listen address " .. a .. " (HOST:PORT, PORT 0-65535, unix:PATH or fd:N)")
    end
  end
  for _, a in ipairs(tls_listens) do
    if not add(a, tls) then
      return die("bad --listen-tls address " .. a ..
        " (HOST:PORT, PORT 0-65535, unix:PATH or fd:N)")
    end
  end
  -- A bad flag value that only the listener can judge (a --proxy-from
  -- address) raises there: say it as the other errors are said.
  local called, ok, err = pcall(require("rill.app").start, cfg)
  if not called then ok, err = nil, (tostring(ok):gsub("^[^\n]-:%d+: ", "")) end
  if not ok then
    io.stderr:write("rill: ", err, "\n")
    return 1
  end
end

local function run(args)
  local path = args[1]
  if path == "--help" or path == "-h" then
    io.stdout:write(usage)
    return 0
  end
  if not path then return die("run needs a script\n" .. usage) end
  local chunk, err = loadfile(path)
  if not chunk then
    io.stderr:write("rill: ", err, "\n")
    return 1
  end
  local a = {[0] = path}
  for i = 2, #args do a[i - 1] = args[i] end
  _G.arg = a
  return chunk(unpack(a, 1, #a))
end

function M.main(cmd, ...)
  local args = {...}
  if cmd == "serve" then
    return serve(args)
  elseif cmd == "run" then
    return run(args)
  elseif cmd == "test" then
    return require("rill.test").run(args)
  elseif cmd == "version" or cmd == "--version" then
    print("rill " .. rill.version .. " (" .. jit.version .. ")")
    return 0
  elseif cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(usage)
    return 0
  end
  io.stderr:write(usage)
  return 2
end

return M
