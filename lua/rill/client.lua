-- An HTTP/1.1 client with streaming bodies both ways and a connection pool.
--
--   local res, err = rill.http.request{url = "http://127.0.0.1:9000/x", method = "POST",
--     headers = {["Content-Type"] = "text/plain"}, body = "hi"}
--   print(res.status, res.headers["content-type"], res.body:read_all(1e6))
--
-- A body may be a string (sent with a Content-Length), a stream or a function
-- returning pieces (sent chunked, or raw under a Content-Length header the
-- caller gives). The response body is a stream; reading it to the end gives
-- the connection back to the pool.
local core = require "rill.core"
local rill = require "rill"
local http = require "rill.http"
local pool = require "rill.pool"

local byte, concat, find, format, gsub, lower, sort, tostring, type = string.byte,
  table.concat, string.find, string.format, string.gsub, string.lower, table.sort,
  tostring, type

local client = {}

client.MAX_HEAD = 65536      -- bytes of response head

-- Idle keep-alive connections by client.pool_key(): 256 per key, closed
-- after 30000 ms idle (client.pool.size, client.pool.idle_timeout).
client.pool = pool.new{size = 256, idle_timeout = 30000}
local conns = client.pool
local h2_release -- (below)
local h2state = {} -- pool key → HTTP/2 state (below)
local h2active = setmetatable({}, {__mode = "k"}) -- HTTP/2 connection → requests in flight

-- Closes the idle connections the pool holds for key (rill.test.client,
-- when it stops its server).
function client.drop_idle(key)
  conns:drop(key)
  local s = h2state[key]
  if s and s.conn and (h2active[s.conn] or 0) == 0 then
    s.conn:close()
    s.conn = nil
  end
end

-- How many idle connections the pool holds for key (for tests).
function client.pooled(key)
  return conns:count(key)
end

-- Options in opts.tls that decide nothing about whom we talk to or trust.
local TLS_NEUTRAL = {handshake_timeout = true}

-- A key field: "%", space, "=", "," and control bytes as %XX, so that no
-- value can pose as another field.
local function hex(c)
  return format("%%%02X", byte(c))
end

local function esc(v)
  if type(v) == "table" then
    local list = {}
    for i, x in ipairs(v) do list[i] = esc(x) end
    return concat(list, ",")
  end
  return (gsub(tostring(v), "[%z\1-\32%%=,\127]", hex))
end

-- The pool key of a request with these options (tls: the options given to
-- rill.connect, server_name included): a connection is shared only by
-- requests that would have opened the same one. "scheme://host:port", then
-- " address=A" when the address is overridden, then for https each TLS
-- option but those in TLS_NEUTRAL as " tls.NAME=VALUE", sorted, with verify
-- always there ("true" unless it is false, as rill.connect reads it).
local function pool_key(scheme, host, port, address, tls)
  local key = scheme .. "://" .. esc(lower(host)) .. ":" .. port
  if address then key = key .. " address=" .. esc(address) end
  if tls then
    local parts = {}
    for k, v in pairs(tls) do
      if not TLS_NEUTRAL[k] and k ~= "verify" then
        parts[#parts + 1] = "tls." .. esc(k) .. "=" .. esc(v)
      end
    end
    sort(parts)
    key = key .. " tls.verify=" .. tostring(tls.verify ~= false) .. " " .. concat(parts, " ")
  end
  return key
end

-- The keys of plain http requests, made once per host, port and address (a
-- proxy asks for the same one on every request); forgotten past 1024.
local plain_keys, nplain = {}, 0

local function pool_key_of(scheme, host, port, address, tls)
  if tls then return pool_key(scheme, host, port, address, tls) end
  local a = address or false
  local ports = plain_keys[host]
  local addrs = ports and ports[port]
  local key = addrs and addrs[a]
  if key then return key end
  key = pool_key(scheme, host, port, address, nil)
  if nplain >= 1024 then plain_keys, nplain, ports = {}, 0, nil end
  if not ports then
    ports = {}
    plain_keys[host] = ports
  end
  addrs = ports[port]
  if not addrs then
    addrs = {}
    ports[port] = addrs
  end
  addrs[a] = key
  nplain = nplain + 1
  return key
end

-- The TLS options rill.connect gets for an https URL: opts.tls (a table, or
-- true for the defaults), with server_name the URL's host unless given.
local function tls_options(scheme, host, opts)
  if scheme ~= "https" then return nil end
  local tls = {server_name = host}
  if type(opts.tls) == "table" then
    for k, v in pairs(opts.tls) do tls[k] = v end
  end
  return tls
end

-- client.pool_key(opts) → the key client.pooled() takes for a request with
-- these options (url, address, tls), or nil for a bad URL.
function client.pool_key(opts)
  local scheme, host, port = client.parse_url(opts.url)
  if not scheme then return nil end
  return pool_key(scheme, host, port, opts.address, tls_options(scheme, host, opts))
end

-- ---- URLs ----

-- Splits "http://user:pass@host:port/path?q" → scheme, host, port, target,
-- authority ("host:port" as given), userinfo ("user:pass" or nil).
function client.parse_url(url)
  local scheme, rest = tostring(url):match("^([hH][tT][tT][pP][sS]?)://(.*)$")
  if not scheme then return nil end
  scheme = lower(scheme)
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  local info, hostport = authority:match("^(.*)@([^@]*)$")
  if info then authority = hostport end
  if target == "" then target = "/" end
  if target:sub(1, 1) == "?" then target = "/" .. target end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if host == nil or host == "" then return nil end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), target, authority,
    info
end

-- ---- responses ----

-- The body of a response: a stream that gives its connection back when read
-- to the end.
local Body = {}
Body.__index = Body
Body.__name = "rill.http.client.body"

-- ---- connections per host ----

-- At most this many requests to one origin (one pool key) are in flight at
-- once; more wait for one to end (client.max_per_host, read on every
-- request; 0: no limit).
client.max_per_host = 256

local permits = {} -- pool key → {n = free, q = waitq}

-- Takes a permit for key, waiting up to ms (nil: as long as it takes).
-- Returns the permit's record, or nil, err.
local function take_permit(key, ms)
  local max = client.max_per_host
  if not max or max <= 0 then return false end
  local p = permits[key]
  if not p then
    p = {n = max, max = max, q = core.waitq()}
    permits[key] = p
  end
  if p.n > 0 and p.q:waiting() == 0 then
    p.n = p.n - 1
    return p
  end
  if ms and ms <= 0 then return nil, "timeout" end
  local ok, err = p.q:wait(ms)
  if not ok then return nil, err end
  return p -- handed over by give_permit
end

local function give_permit(key, p)
  if not p then return end
  if p.q:signal() then return end
  p.n = p.n + 1
  if p.n >= p.max and permits[key] == p then permits[key] = nil end
end

-- ---- HTTP/2 connections ----
--
-- One connection per pool key carries every request to that origin at once
-- (requests past the server's SETTINGS_MAX_CONCURRENT_STREAMS wait in the
-- connection's queue). h2state[key] = {conn =, dialing =, h1 =,
-- q = waitq}: h1 is set once the origin answered ALPN with http/1.1 (its
-- requests then take the HTTP/1.1 pool, still offering h2 on each new
-- connection); while one request dials, the others to the same origin wait
-- for its outcome rather than open connections of their own.

-- The idle timeout (ms) of an HTTP/2 connection with no request in flight.
client.h2_idle_timeout = 30000

-- A request on conn starts; one ends: a connection with none in flight
-- keeps no script running (as a pooled HTTP/1.1 one).
local function h2_hold(conn)
  local n = (h2active[conn] or 0) + 1
  h2active[conn] = n
  if n == 1 then conn:ref(true) end
end

function h2_release(conn)
  local n = h2active[conn] - 1
  h2active[conn] = n
  if n == 0 then conn:ref(false) end
end

local function h2_wake(s)
  while s.q:signal() do end
end

-- The HTTP/2 state of key and the connection to use now, waiting (up to ms)
-- while another request dials it. Without a connection: a dial token when
-- this request dials (it has connect_ms; then h2_dialed), else nothing: it
-- goes over HTTP/1.1 (the origin did not choose h2). A dial that did not
-- report within its time (its thread was cancelled) is not waited for.
local function h2_conn(key, ms, connect_ms)
  local s = h2state[key]
  if not s then
    s = {q = core.waitq()}
    h2state[key] = s
  end
  while true do
    local conn = s.conn
    if conn and not conn:usable() then
      s.conn, conn = nil, nil
    end
    if conn then return s, conn end
    local now = rill.now()
    local d = s.dialing
    if d and now > d.due then
      s.dialing, d = nil, nil
    end
    if not d then
      if s.h1 then return s end
      d = {due = now + connect_ms + 1000}
      s.dialing = d
      return s, nil, nil, d
    end
    if ms and ms <= 0 then return nil, nil, "timeout" end
    local wait = d.due - now + 1
    if ms and ms < wait then wait = ms end
    local ok, err = s.q:wait(wait)
    if not ok and err ~= "timeout" then return nil, nil, err end
    if ms then ms = ms - (rill.now() - now) end
  end
end

-- The dial this request made for s (with token, if it was the origin's
-- first) ended with sock (nil: failed): h2 (by ALPN, or prior knowledge)
-- makes sock the origin's connection, returned.
local function h2_dialed(s, token, sock, prior)
  local was = token ~= nil and s.dialing == token
  if was then s.dialing = nil end
  local conn
  if sock and (prior or sock:alpn() == "h2") then
    conn = core.h2_client(sock, {idle_timeout = client.h2_idle_timeout})
    conn:ref(false)
    -- (Two dials that raced, to an origin that had chosen http/1.1 before:
    -- the first connection stays the origin's; the other serves its
    -- request, then goes with it.)
    if not (s.conn and s.conn:usable()) then s.conn, s.h1 = conn, false end
  elseif sock and was then
    s.h1 = true
  end
  if was then h2_wake(s) end
  return conn
end

-- For tests: the HTTP/2 connection of a pool key, or nil.
function client.h2_conn(key)
  local s = h2state[key]
  return s and s.conn
end

local function body_done(self, err)
  if self.finished then return end
  self.finished = true
  give_permit(self.key, self.permit)
  local req = self.h2req
  if req then
    self.h2req = nil
    req:done() -- resets a stream whose response is not whole
    h2_release(self.h2conn)
    return
  end
  local sock = self.sock
  self.sock = nil
  if not sock then return end
  local sent_all = self.sent_all -- true, or a function while a body is being sent
  if self.raw then self.raw:close() end
  if err or not self.reusable or not (sent_all == true or sent_all()) then
    sock:close()
  else
    sock:setdeadline()
    conns:put(self.key, sock)
  end
end

local function forward(name)
  return function(self, ...)
    local s = self.stream
    local a, b, c = s[name](s, ...)
    if a == nil then body_done(self, b) end
    return a, b, c
  end
end

Body.read_some = forward("read_some")
Body.read = forward("read")
Body.read_until = forward("read_until")
Body.read_all = core.stream_methods.read_all
Body.lines = core.stream_methods.lines
Body.chunks = core.stream_methods.chunks

function Body:settimeout(ms)
  self.stream:settimeout(ms)
  return self
end

-- body:close(): stop reading; the connection is closed, not reused.
function Body:close()
  self.stream:close()
  body_done(self, "closed")
  return true
end

-- Trailers of a chunked body, once it has been read to the end (not kept
-- over HTTP/2: nil).
function Body:trailers()
  if self.h2conn then return nil end
  return core.http_trailers(self.raw or self.stream)
end

-- ---- requests ----

local hop = {connection = true, ["keep-alive"] = true, ["transfer-encoding"] = true,
  te = true, trailer = true, upgrade = true, ["proxy-connection"] = true}

-- Normalizes headers given as {name = value | {values}}, {{name, value}, ...}
-- or already flat {name, value, ...} into a new flat list name, value, ...
-- (values as strings).
local function flatten(headers)
  local list = {}
  if not headers then return list end
  if type(headers[1]) == "string" then
    for i = 1, #headers, 2 do
      list[i] = headers[i]
      list[i + 1] = tostring(headers[i + 1])
    end
    return list
  end
  if headers[1] ~= nil then
    for _, pair in ipairs(headers) do
      list[#list + 1] = pair[1]
      list[#list + 1] = tostring(pair[2])
    end
  else
    for k, v in pairs(headers) do
      if type(v) == "table" then
        for _, x in ipairs(v) do
          list[#list + 1] = k
          list[#list + 1] = tostring(x)
        end
      else
        list[#list + 1] = k
        list[#list + 1] = tostring(v)
      end
    end
  end
  return list
end

-- Sends a streamed body: raw under a known length, else chunked.
local function send_body(sock, body, length)
  local next_piece
  if type(body) == "function" then
    next_piece = body
  else
    next_piece = function() return body:read_some(65536) end
  end
  local sent = 0
  while true do
    local piece, err = next_piece()
    if not piece then
      if err then return nil, "request body: " .. tostring(err), true end
      break
    end
    if #piece > 0 then
      local ok, werr
      if length then
        sent = sent + #piece
        if sent > length then return nil, "request body longer than its Content-Length" end
        ok, werr = sock:write(piece)
      else
        ok, werr = sock:write(format("%x\r\n", #piece), piece, "\r\n")
      end
      if not ok then return nil, werr end
    end
  end
  if length then
    if sent ~= length then return nil, "request body shorter than its Content-Length" end
    return true
  end
  return sock:write("0\r\n\r\n")
end

-- One request/response exchange on sock. Returns res, or nil, err, retry
-- (retry: the connection failed before any response byte: another may work).
local function exchange(sock, o, key, reused, permit)
  local method = o.method
  local lines = {method .. " " .. o.target .. " HTTP/1.1", "Host: " .. o.host_header}
  local user = o.header_list
  local length, has_te
  for i = 1, #user, 2 do
    local name = lower(user[i])
    if name == "content-length" then
      length = tonumber(user[i + 1])
    elseif name == "transfer-encoding" then
      has_te = true
    end
    if not hop[name] and name ~= "host" and name ~= "content-length" then
      lines[#lines + 1] = user[i] .. ": " .. user[i + 1]
    end
  end
  local body = o.body
  local streamed = body ~= nil and type(body) ~= "string"
  if type(body) == "string" then
    lines[#lines + 1] = "Content-Length: " .. #body
  elseif streamed then
    if length then
      lines[#lines + 1] = "Content-Length: " .. length
    else
      lines[#lines + 1] = "Transfer-Encoding: chunked"
    end
  elseif length then
    lines[#lines + 1] = "Content-Length: " .. length
  end
  if o.close then lines[#lines + 1] = "Connection: close" end
  local head = concat(lines, "\r\n") .. "\r\n\r\n"
  local ok, err
  if type(body) == "string" then
    ok, err = sock:write(head, body)
  else
    ok, err = sock:write(head)
  end
  if not ok then return nil, err, reused end

  -- The body goes out while the response is read, so that an upstream that
  -- answers early (or streams back) is not held up.
  local sender, send_err
  local sent_all = not streamed
  if streamed then
    sender = rill.spawn(function()
      local sok, serr, source_failed = send_body(sock, body, length)
      if sok then
        sent_all = true
      else
        send_err = serr
        -- The body's source failed (a client gone mid-upload): the server
        -- waits for bytes that will not come, so the exchange ends here.
        if source_failed then sock:close() end
      end
    end)
  end

  local status, reason, minor, headers, mode, clen, keepalive, raw
  repeat
    -- parsed where it lies in the socket's buffer; the body's bytes stay
    status, reason, minor, headers, mode, clen, keepalive, raw =
      core.http_read_response(sock, method, client.MAX_HEAD)
    if not status then
      if reason and find(reason, "^bad response") then return nil, reason end
      if sender then rill.wait(sender, 0) end
      -- (the end of the stream before any byte: nil alone)
      reason = reason or "closed before a response"
      return nil, send_err or reason, reused and reason ~= "timeout"
    end
  until status >= 200 or status == 101

  local res = {status = status, reason = reason, version = minor == 1 and "1.1" or "1.0",
    headers = setmetatable(headers, http.Headers), raw_headers = raw}
  if status == 101 then
    res.stream = sock -- the connection is the caller's now, not counted
    give_permit(key, permit)
    return res
  end
  local stream = core.http_body(sock, mode, clen)
  local raw
  local coding = o.decode and mode ~= "none" and headers["content-encoding"]
  coding = type(coding) == "string" and lower(coding):match("^%s*(%S-)%s*$")
  if coding == "gzip" or coding == "x-gzip" or coding == "deflate" then
    -- Decoded as it is read, as Go's client does when it asked for it: the
    -- headers no longer describe the bytes the body gives.
    raw, stream = stream, core.inflate(stream, coding == "deflate" and "deflate" or "gzip", 0)
    headers["content-encoding"], headers["content-length"] = nil, nil
    res.decoded = coding
  end
  res.body = setmetatable({stream = stream, raw = raw, sock = sock, key = key, permit = permit,
    reusable = keepalive and not o.close, finished = false,
    sent_all = not streamed or function() return sent_all end}, Body)
  if mode == "none" then body_done(res.body) end
  return res
end

-- One request on an HTTP/2 connection. Returns res, or nil, err, retry
-- (retry: the server refused the stream unprocessed, or the connection was
-- gone before the request went: another connection may take it).
local function h2_exchange(conn, o, scheme, key, permit, read_ms, deadline)
  local user = o.header_list
  local list, length = {}, nil
  for i = 1, #user, 2 do
    local name = lower(user[i])
    if name == "content-length" then
      length = tonumber(user[i + 1])
    elseif not hop[name] and name ~= "host" then
      list[#list + 1] = name
      list[#list + 1] = user[i + 1]
    end
  end
  local body = o.body
  local streamed = body ~= nil and type(body) ~= "string"
  if type(body) == "string" then length = #body end
  local req, err = conn:request(o.method, scheme, o.host_header, o.target, list,
    body ~= nil and body ~= "", length)
  if not req then return nil, err, true end
  h2_hold(conn)
  local function wait_ms()
    local left = deadline and deadline - rill.now()
    if left and left < read_ms then return left > 0 and left or 0 end
    return read_ms
  end

  -- The body goes out while the response is read (an upstream may answer
  -- early, or stream back), with the window as backpressure.
  local sender, send_err, source_failed
  if body ~= nil and body ~= "" then
    sender = rill.spawn(function()
      local ok, werr = true, nil
      if not streamed then
        ok, werr = req:write(body, wait_ms())
      else
        local next_piece = type(body) == "function" and body or
          function() return body:read_some(65536) end
        local sent = 0
        while ok do
          local piece, perr = next_piece()
          if not piece then
            if perr then ok, werr, source_failed = nil, "request body: " .. tostring(perr), true end
            break
          end
          sent = sent + #piece
          if length and sent > length then
            ok, werr = nil, "request body longer than its Content-Length"
          elseif #piece > 0 then
            ok, werr = req:write(piece, wait_ms())
          end
        end
        if ok and length and sent ~= length then
          ok, werr = nil, "request body shorter than its Content-Length"
        end
      end
      if ok then ok, werr = req:finish() end
      if not ok then
        send_err = werr
        -- The server would wait for bytes that will not come: the stream ends.
        if not req:ended() then req:reset() end
      end
    end)
  end

  local status, headers, raw = req:head(wait_ms())
  if status == true then status, headers, raw = req:head(wait_ms()) end
  if not status then
    if sender then rill.wait(sender, 0) end
    req:done()
    h2_release(conn)
    return nil, send_err or headers, find(headers, "refused", 1, true) ~= nil
  end
  local res = {status = status, reason = core.http_reason(status), version = "2",
    headers = setmetatable(headers, http.Headers), raw_headers = raw}
  local stream = req:body()
  stream:settimeout(read_ms)
  if deadline then stream:setdeadline(deadline - rill.now()) end
  local rawstream
  local nobody = o.method == "HEAD" or status == 204 or status == 304
  local coding = o.decode and not nobody and headers["content-encoding"]
  coding = type(coding) == "string" and lower(coding):match("^%s*(%S-)%s*$")
  if coding == "gzip" or coding == "x-gzip" or coding == "deflate" then
    rawstream, stream = stream, core.inflate(stream, coding == "deflate" and "deflate" or "gzip", 0)
    headers["content-encoding"], headers["content-length"] = nil, nil
    res.decoded = coding
  end
  res.body = setmetatable({stream = stream, raw = rawstream, key = key, permit = permit,
    h2req = req, h2conn = conn, finished = false}, Body)
  if nobody then body_done(res.body) end
  return res
end

-- Checks what will go into the request head, before anything is sent:
-- returns nil, or why the request cannot be sent.
local function check_head(o)
  if not http.is_token(o.method) then return "bad method " .. http.quote(o.method) end
  -- RFC 9112 request-target: no space, no control byte.
  if find(o.target, "[%z\1-\32\127]") then
    return "bad request target " .. http.quote(o.target)
  end
  if not http.is_field_value(o.host_header) then
    return "bad Host header " .. http.quote(o.host_header)
  end
  local list = o.header_list
  for i = 1, #list, 2 do
    local name, value = list[i], list[i + 1]
    if not http.is_token(name) then return "bad header name " .. http.quote(name) end
    if not http.is_field_value(value) then return "bad value for header " .. name end
    if lower(name) == "content-length" and not find(value, "^%d+$") then
      return "bad Content-Length " .. http.quote(value)
    end
  end
end

-- Headers that carry the user's credentials for one origin, dropped on a
-- redirect to another (as curl and Go do).
local CREDENTIALS = {authorization = true, ["proxy-authorization"] = true, cookie = true}

local function without_credentials(list)
  local out = {}
  for i = 1, #list, 2 do
    if not CREDENTIALS[lower(list[i])] then
      out[#out + 1] = list[i]
      out[#out + 1] = list[i + 1]
    end
  end
  return out
end

-- redirects = true follows up to this many, as Go's http.Client does.
client.MAX_REDIRECTS = 10

-- The User-Agent sent when the request names none.
client.USER_AGENT = "rill/" .. rill.version

-- Whether v is a stream (anything with read_some): a request body.
local function has_read_some(v)
  local ok, f = pcall(function() return v.read_some end)
  return ok and f ~= nil
end

-- Every option client.request takes (names starting with "_" are the
-- reverse proxy's and the test client's).
local OPTIONS = {url = true, method = true, headers = true, body = true, json = true,
  form = true, query = true, auth = true, timeout = true, read_timeout = true,
  connect_timeout = true, tls = true, address = true, host = true, redirects = true,
  follow_redirects = true, close = true, jar = true, decompress = true, proxy = true,
  max_redirect_body = true, _base = true, _target = true, _flat = true, _checked = true,
  http2 = true, _raw = true, _deadline = true, _hops = true}

local function b64(s)
  return core.base64_encode(s)
end

local function unescape(s)
  return (gsub(s, "%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- The options' mistakes, found before anything is sent: raises at the
-- caller's line (level).
local H2_ALPN = {"h2", "http/1.1"}

local function check_options(opts, level)
  if type(opts) ~= "table" then
    error("rill.http.request: options must be a table, got " .. type(opts), level)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error("rill.http.request: unknown option " .. tostring(k), level)
    end
  end
  local body, bt = opts.body, type(opts.body)
  if body ~= nil and bt ~= "string" and bt ~= "function" and not has_read_some(body) then
    error(("rill.http.request: body must be a string, a function or a stream (with " ..
      "read_some), got %s%s"):format(bt, bt == "table" and " (or give json =)" or ""), level)
  end
  local n = (body ~= nil and 1 or 0) + (opts.json ~= nil and 1 or 0) +
    (opts.form ~= nil and 1 or 0)
  if n > 1 then error("rill.http.request: give one of body, json and form", level) end
  if opts.form ~= nil and type(opts.form) ~= "table" then
    error("rill.http.request: form must be a table, got " .. type(opts.form), level)
  end
  if opts.query ~= nil and type(opts.query) ~= "table" then
    error("rill.http.request: query must be a table, got " .. type(opts.query), level)
  end
  local auth = opts.auth
  if auth ~= nil and not (type(auth) == "table" and type(auth.user or auth[1]) == "string") then
    error("rill.http.request: auth must be {user = , password = }", level)
  end
  for _, k in ipairs{"timeout", "read_timeout", "connect_timeout"} do
    local v = opts[k]
    if v ~= nil and (type(v) ~= "number" or v < 0) then
      error("rill.http.request: " .. k .. " must be milliseconds (a number >= 0), got " ..
        tostring(v), level)
    end
  end
  local r = opts.redirects
  if r == nil then r = opts.follow_redirects end
  if r ~= nil and type(r) ~= "boolean" and (type(r) ~= "number" or r < 0) then
    error("rill.http.request: redirects must be a count or a boolean, got " .. tostring(r), level)
  end
  if opts.proxy ~= nil and opts.proxy ~= false and type(opts.proxy) ~= "string" then
    error("rill.http.request: proxy must be a URL or false, got " .. type(opts.proxy), level)
  end
  local h2 = opts.http2
  if h2 ~= nil and type(h2) ~= "boolean" and h2 ~= "prior-knowledge" then
    error("rill.http.request: http2 must be true, false or \"prior-knowledge\", got " ..
      tostring(h2), level)
  end
  if opts.jar ~= nil and not (type(opts.jar) == "table" and opts.jar.header) then
    error("rill.http.request: jar must be a rill.http.cookie_jar()", level)
  end
end

-- ---- proxies ----

-- Whether host is one NO_PROXY names: "*", a name (also matching its
-- subdomains), ".name" (subdomains only), or an address.
local function no_proxy(host)
  local list = os.getenv("no_proxy") or os.getenv("NO_PROXY")
  if not list or list == "" then return false end
  host = lower(host)
  for entry in list:gmatch("[^,%s]+") do
    entry = lower(entry):gsub(":%d+$", "")
    if entry == "*" then return true end
    if entry:sub(1, 1) == "." then
      if host:sub(-#entry) == entry then return true end
    elseif host == entry or host:sub(-(#entry + 1)) == "." .. entry then
      return true
    end
  end
  return false
end

-- The proxy URL for a request to scheme://host, or nil: opts.proxy (false:
-- none), else http_proxy / HTTP_PROXY for http and https_proxy /
-- HTTPS_PROXY for https, unless NO_PROXY names the host.
local function proxy_for(opts, scheme, host)
  if opts.proxy == false or opts._raw then return nil end
  if opts.proxy then return opts.proxy end
  local url
  if scheme == "https" then
    url = os.getenv("https_proxy") or os.getenv("HTTPS_PROXY")
  else
    url = os.getenv("http_proxy")
    -- A CGI program gets the client's "Proxy:" header as HTTP_PROXY.
    if not url and not os.getenv("REQUEST_METHOD") then url = os.getenv("HTTP_PROXY") end
  end
  if not url or url == "" or no_proxy(host) then return nil end
  if not url:find("^%a[%w+.-]*://") then url = "http://" .. url end
  return url
end

-- "user:pass" → user, password (percent-decoded); nil for nil.
local function userinfo(info)
  if not info then return nil end
  local user, pass = info:match("^([^:]*):(.*)$")
  return unescape(user or info), pass and unescape(pass) or ""
end

-- ---- requests ----

-- Connects for a request: straight to the origin, or through a proxy (an
-- absolute-form request for http; a CONNECT tunnel, then TLS, for https).
-- Returns sock, or nil, err.
local function dial(p, connect_ms)
  if not p.proxy then
    local sock, err = rill.connect(p.address or p.host, p.port,
      {timeout = connect_ms, tls = p.tls})
    if not sock then return nil, "connect: " .. tostring(err) end
    return sock
  end
  local px = p.proxy
  local sock, err = rill.connect(px.host, px.port, {timeout = connect_ms, tls = px.tls})
  if not sock then return nil, "proxy: connect: " .. tostring(err) end
  if not p.tls then return sock end
  local to = p.address or p.host -- the tunnel's end; TLS inside still checks p.host
  local target = (find(to, ":", 1, true) and "[" .. to .. "]" or to) .. ":" .. p.port
  local lines = {"CONNECT " .. target .. " HTTP/1.1", "Host: " .. target}
  if px.auth then lines[#lines + 1] = "Proxy-Authorization: " .. px.auth end
  sock:settimeout(connect_ms)
  local ok, werr = sock:write(concat(lines, "\r\n") .. "\r\n\r\n")
  if not ok then
    sock:close()
    return nil, "proxy: " .. tostring(werr)
  end
  local status, reason = core.http_read_response(sock, "CONNECT", client.MAX_HEAD)
  if status ~= 200 then
    sock:close()
    if not status then return nil, "proxy: " .. tostring(reason or "closed") end
    return nil, ("proxy: CONNECT %s refused: %d %s"):format(target, status, reason or "")
  end
  ok, err = sock:starttls(p.tls)
  if not ok then
    sock:close()
    return nil, "connect: " .. tostring(err)
  end
  return sock
end

local function lower_names(list)
  local set = {}
  for i = 1, #list, 2 do set[lower(list[i])] = true end
  return set
end

-- client.request(opts) → res | nil, err. The options are in lua/README.md
-- ("HTTP client"). A method, target or header that cannot go into a request
-- head as it is gives nil, "bad ..." with nothing sent; a bad option raises.
function client.request(opts)
  -- (rill.http.request and the redirects below are tail calls: the
  -- caller's line is 3 levels up from check_options)
  check_options(opts, 3)
  local now = rill.now()
  local deadline = opts._deadline or (opts.timeout and now + opts.timeout)
  local redirects = opts.redirects
  if redirects == nil then redirects = opts.follow_redirects end
  if redirects == true then
    redirects = client.MAX_REDIRECTS
  elseif not redirects then
    redirects = 0
  end
  local scheme, host, port, target, authority, info
  local base = opts._base -- the reverse proxy's upstream, parsed once per route
  if base then
    scheme, host, port, authority = base.scheme, base.host, base.port, base.authority
    target = base.path .. opts._target
  else
    scheme, host, port, target, authority, info = client.parse_url(opts.url)
    if not scheme or find(authority, "[%z\1-\32\127]") then
      return nil, "bad URL: " .. http.quote(opts.url)
    end
  end
  local url_user, url_pass = userinfo(info)
  if opts.query then
    local q = http.encode_query(opts.query)
    if q ~= "" then target = target .. (find(target, "?", 1, true) and "&" or "?") .. q end
  end
  local method = opts.method or "GET"
  if type(method) == "string" then method = method:upper() end
  local list = opts.headers
  if not opts._flat then
    list = flatten(list)
  elseif not opts._raw then
    list = {unpack(list)} -- defaults are added below: the caller's list stays as it is
  end
  local body = opts.body
  if opts.json ~= nil or opts.form ~= nil then
    local names = lower_names(list)
    if opts.json ~= nil then
      body = require("rill.json").encode(opts.json)
      if not names["content-type"] then list[#list + 1] = "Content-Type" list[#list + 1] = "application/json" end
    else
      body = http.encode_query(opts.form)
      if not names["content-type"] then
        list[#list + 1] = "Content-Type"
        list[#list + 1] = "application/x-www-form-urlencoded"
      end
    end
    if method == "GET" and not opts.method then method = "POST" end
  end
  local decoding = false
  if not opts._raw then
    local names = lower_names(list)
    local user = opts.auth and (opts.auth.user or opts.auth[1]) or url_user
    if user and not names.authorization then
      local pass = opts.auth and (opts.auth.password or opts.auth[2]) or url_pass or ""
      list[#list + 1] = "Authorization"
      list[#list + 1] = "Basic " .. b64(user .. ":" .. pass)
    end
    if not names["user-agent"] then
      list[#list + 1] = "User-Agent"
      list[#list + 1] = client.USER_AGENT
    end
    -- Decoded here only when we asked for it: a caller's own Accept-Encoding
    -- gets the body as the server sent it.
    if opts.decompress ~= false and not names["accept-encoding"] and method ~= "HEAD" then
      list[#list + 1] = "Accept-Encoding"
      list[#list + 1] = "gzip, deflate"
      decoding = true
    end
    if opts.jar and not names.cookie then
      local c = opts.jar:header(scheme .. "://" .. authority .. target)
      if c then
        list[#list + 1] = "Cookie"
        list[#list + 1] = c
      end
    end
  end
  local proxy_url = proxy_for(opts, scheme, host)
  local px
  if proxy_url then
    local pscheme, phost, pport, _, pa, pinfo = client.parse_url(proxy_url)
    if not pscheme then return nil, "bad proxy URL: " .. http.quote(proxy_url) end
    local puser, ppass = userinfo(pinfo)
    px = {host = phost, port = pport,
      tls = pscheme == "https" and tls_options("https", phost, {}) or nil,
      auth = puser and "Basic " .. b64(puser .. ":" .. ppass) or nil,
      url = pscheme .. "://" .. pa}
  end
  local o = {method = method, target = target, host_header = opts.host or authority,
    header_list = list, body = body, close = opts.close, decode = decoding}
  if px and scheme == "http" then
    -- the absolute form, to the proxy; the proxy's credentials with it
    o.target = "http://" .. authority .. target
    if px.auth then
      list[#list + 1] = "Proxy-Authorization"
      list[#list + 1] = px.auth
    end
  end
  -- (_flat: the reverse proxy's list is flat strings made for this request,
  -- taken as it is.) The reverse proxy passes on a request our server parsed
  -- (so checked) with fields it made itself: _checked skips checking it again.
  if not opts._checked then
    local bad = check_head(o)
    if bad then return nil, bad end
  end
  local tls = tls_options(scheme, host, opts)
  local key = pool_key_of(scheme, host, port, opts.address, tls)
  if px then key = key .. " proxy=" .. esc(px.url) end
  local read_ms = opts.read_timeout or 60000
  -- (the reverse proxy's requests are not limited: the clients it serves are)
  local permit
  if not opts._raw then
    local perr
    permit, perr = take_permit(key, deadline and deadline - rill.now())
    if not permit and perr then
      return nil, perr == "timeout" and "timeout (waiting for one of the " ..
        client.max_per_host .. " connections to " .. authority .. ")" or perr
    end
  end
  -- HTTP/2: offered by ALPN for https (unless http2 = false; not for the
  -- reverse proxy's requests unless it asks), with prior knowledge for http
  -- only if asked.
  local h2mode = opts.http2
  if h2mode == nil then h2mode = not opts._raw end
  if h2mode == "prior-knowledge" then
    h2mode = scheme == "http" and not px and "prior" or scheme == "https" and "alpn" or nil
  elseif h2mode then
    h2mode = scheme == "https" and "alpn" or nil
  end
  local dial_tls = tls
  if h2mode == "alpn" and tls.alpn == nil then
    dial_tls = {alpn = H2_ALPN}
    for k, v in pairs(tls) do dial_tls[k] = v end
  end
  local res, err
  for attempt = 1, 2 do
    local left = deadline and deadline - rill.now()
    if left and left <= 0 then
      give_permit(key, permit)
      return nil, "timeout"
    end
    local connect_ms = opts.connect_timeout or 10000
    if left and left < connect_ms then connect_ms = left end
    local s, conn, h2err, token
    if h2mode then
      s, conn, h2err, token = h2_conn(key, left, connect_ms)
      if h2err then
        give_permit(key, permit)
        return nil, h2err == "timeout" and "timeout (waiting for the connection to " ..
          authority .. ")" or h2err
      end
    end
    local sock, reused
    if not conn then
      sock = not token and not opts.close and conns:get(key)
      reused = sock ~= nil
      if not sock then
        left = deadline and deadline - rill.now()
        if left and left < connect_ms then connect_ms = left end
        sock, err = dial({host = host, port = port, address = opts.address, tls = dial_tls,
          proxy = px}, connect_ms)
        if s then conn = h2_dialed(s, token, sock, h2mode == "prior") end
        if not sock then
          give_permit(key, permit)
          return nil, err
        end
      end
    end
    local retry
    if conn then
      res, err, retry = h2_exchange(conn, o, scheme, key, permit, read_ms, deadline)
      if res then break end
    else
      sock:settimeout(read_ms)
      sock:setdeadline(left)
      res, err, retry = exchange(sock, o, key, reused, permit)
      if res then break end
      sock:close()
    end
    -- A pooled connection the server had closed: try a fresh one, if the
    -- request can be sent again.
    if not (retry and attempt == 1 and (o.body == nil or type(o.body) == "string")) then
      give_permit(key, permit)
      return nil, err
    end
  end
  res.url = scheme .. "://" .. authority .. target
  if opts.jar then
    local sc = res.headers["set-cookie"]
    if sc then opts.jar:store(res.url, sc) end
  end
  local location = res.headers.location
  if location and (res.status == 301 or res.status == 302 or res.status == 303 or
    res.status == 307 or res.status == 308) and redirects ~= 0 then
    if type(location) == "table" then location = location[1] end
    local hops = (opts._hops or 0) + 1
    if hops > redirects then
      res.body:close()
      return nil, ("too many redirects (%d): last to %s"):format(redirects, location)
    end
    if res.body then res.body:read_all(opts.max_redirect_body or 1024 * 1024) end
    local next_url = location
    if not next_url:match("^[hH][tT][tT][pP][sS]?://") then
      if next_url:sub(1, 2) == "//" then
        next_url = scheme .. ":" .. next_url
      elseif next_url:sub(1, 1) == "/" then
        next_url = scheme .. "://" .. authority .. next_url
      else
        local dir = target:match("^([^?]*/)") or "/"
        next_url = scheme .. "://" .. authority .. dir .. next_url
      end
    end
    local again = {}
    for k, v in pairs(opts) do again[k] = v end
    again.url, again._hops, again._deadline = next_url, hops, deadline
    again.redirects, again.follow_redirects = redirects, nil
    again.query = nil -- it is in the location's target, if the server kept it
    if res.status == 303 or ((res.status == 301 or res.status == 302) and method == "POST") then
      again.method, again.body, again.json, again.form = method == "HEAD" and "HEAD" or "GET",
        nil, nil, nil
    elseif type(o.body) ~= "string" and o.body ~= nil then
      return res -- a streamed body cannot be sent again: this answer is the caller's
    else
      again.body, again.json, again.form = o.body, nil, nil
      again.method = method
    end
    local nscheme, nhost, nport = client.parse_url(next_url)
    if not nscheme then return nil, "bad redirect location: " .. http.quote(location) end
    if nscheme ~= scheme or lower(nhost) ~= lower(host) or nport ~= port then
      again.headers = without_credentials(opts._flat and opts.headers or flatten(opts.headers))
      again._flat = true
      again.auth = nil
      again.address, again.host = nil, nil
      if type(opts.tls) == "table" and opts.tls.server_name then
        again.tls = {}
        for k, v in pairs(opts.tls) do again.tls[k] = v end
        again.tls.server_name = nil
      end
    end
    return client.request(again)
  end
  return res
end

return client
