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

-- Closes the idle connections the pool holds for key (rill.test.client,
-- when it stops its server).
function client.drop_idle(key)
  conns:drop(key)
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

-- Splits "http://host:port/path?q" → scheme, host, port, target, authority.
function client.parse_url(url)
  local scheme, rest = tostring(url):match("^(https?)://(.*)$")
  if not scheme then return nil end
  local authority, target = rest:match("^([^/?#]*)([^#]*)")
  if target == "" then target = "/" end
  if target:sub(1, 1) == "?" then target = "/" .. target end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  if host == "" then return nil end
  return scheme, host, tonumber(port) or (scheme == "https" and 443 or 80), target, authority
end

-- ---- responses ----

-- The body of a response: a stream that gives its connection back when read
-- to the end.
local Body = {}
Body.__index = Body
Body.__name = "rill.http.client.body"

local function body_done(self, err)
  if self.finished then return end
  self.finished = true
  local sock = self.sock
  self.sock = nil
  if not sock then return end
  local sent_all = self.sent_all -- true, or a function while a body is being sent
  if err or not self.reusable or not (sent_all == true or sent_all()) then
    sock:close()
  else
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

-- Trailers of a chunked body, once it has been read to the end.
function Body:trailers()
  return core.http_trailers(self.stream)
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
local function exchange(sock, o, key, reused)
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
      return nil, send_err or reason, reused and reason ~= "timeout"
    end
  until status >= 200 or status == 101

  local res = {status = status, reason = reason, version = minor == 1 and "1.1" or "1.0",
    headers = setmetatable(headers, http.Headers), raw_headers = raw}
  if status == 101 then
    res.stream = sock -- the connection is the caller's now
    return res
  end
  local stream = core.http_body(sock, mode, clen)
  res.body = setmetatable({stream = stream, sock = sock, key = key,
    reusable = keepalive and not o.close, finished = false,
    sent_all = not streamed or function() return sent_all end}, Body)
  if mode == "none" then body_done(res.body) end
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

local function without_credentials(headers)
  local list, out = flatten(headers), {}
  for i = 1, #list, 2 do
    if not CREDENTIALS[lower(tostring(list[i]))] then
      out[#out + 1] = list[i]
      out[#out + 1] = list[i + 1]
    end
  end
  return out
end

-- follow_redirects = true follows up to this many, as Go's http.Client does.
client.MAX_REDIRECTS = 10

-- Whether v is a stream (anything with read_some): a request body.
local function has_read_some(v)
  local ok, f = pcall(function() return v.read_some end)
  return ok and f ~= nil
end

-- client.request{url=, method=, headers=, body=, timeout=, connect_timeout=,
--   tls=, address=, host=, follow_redirects=, close=} → res | nil, err.
-- res.status, res.reason, res.headers (lower-case keys), res.body (a stream).
-- timeout (ms, default 60 s) bounds each wait for the server; connect_timeout
-- (default 10 s) the connection; tls = rill.connect's TLS options for https
-- (verified by default); address = connect here instead of the URL's host;
-- host = the Host header instead of the URL's; follow_redirects = how many to
-- follow (default 0; true: client.MAX_REDIRECTS). A redirect to another
-- origin (scheme, host or port) drops Authorization, Proxy-Authorization and
-- Cookie headers and the address, host and tls.server_name overrides. A
-- pooled connection is only reused by a request to the same scheme, host,
-- port and address with the same TLS options. A method, target or header
-- that cannot go into a request head as it is gives nil, "bad ..." with
-- nothing sent.
function client.request(opts)
  local body, bt = opts.body, type(opts.body)
  if body ~= nil and bt ~= "string" and bt ~= "function" and not has_read_some(body) then
    error(("rill.http.request: body must be a string, a function or a stream (with " ..
      "read_some), got %s%s"):format(bt, bt == "table" and " (rill.json.encode it?)" or ""), 2)
  end
  local redirects = opts.follow_redirects
  if redirects == true then
    redirects = client.MAX_REDIRECTS
  elseif not redirects then
    redirects = 0
  elseif type(redirects) ~= "number" then
    error("follow_redirects must be a number or a boolean", 2)
  end
  local scheme, host, port, target, authority
  local base = opts._base -- the reverse proxy's upstream, parsed once per route
  if base then
    scheme, host, port, authority = base.scheme, base.host, base.port, base.authority
    target = base.path .. opts._target
  else
    scheme, host, port, target, authority = client.parse_url(opts.url)
    if not scheme or find(authority, "[%z\1-\32\127]") then
      return nil, "bad URL: " .. http.quote(opts.url)
    end
  end
  local method = opts.method or "GET"
  if type(method) == "string" then method = method:upper() end
  local o = {method = method, target = target, host_header = opts.host or authority,
    header_list = opts._flat and opts.headers or flatten(opts.headers), body = opts.body, close = opts.close}
  -- (_flat: the reverse proxy's list is flat strings made for this request,
  -- taken as it is.)
  -- The reverse proxy passes on a request our server parsed (so checked)
  -- with fields it made itself: _checked skips checking it again.
  if not opts._checked then
    local bad = check_head(o)
    if bad then return nil, bad end
  end
  local tls = tls_options(scheme, host, opts)
  local key = pool_key_of(scheme, host, port, opts.address, tls)
  local timeout = opts.timeout or 60000
  local res, err
  for attempt = 1, 2 do
    local sock = not opts.close and conns:get(key)
    local reused = sock ~= nil
    if not sock then
      sock, err = rill.connect(opts.address or host, port,
        {timeout = opts.connect_timeout or 10000, tls = tls})
      if not sock then return nil, "connect: " .. tostring(err) end
    end
    sock:settimeout(timeout)
    local retry
    res, err, retry = exchange(sock, o, key, reused)
    if res then break end
    sock:close()
    -- A pooled connection the server had closed: try a fresh one, if the
    -- request can be sent again.
    if not (retry and attempt == 1 and (o.body == nil or type(o.body) == "string")) then
      return nil, err
    end
  end
  local location = res.headers.location
  if redirects > 0 and location and (res.status == 301 or res.status == 302 or
    res.status == 303 or res.status == 307 or res.status == 308) then
    res.body:read_all(1024 * 1024)
    local next_url = location
    if not next_url:match("^https?://") then
      next_url = scheme .. "://" .. authority .. (location:sub(1, 1) == "/" and "" or "/") .. location
    end
    local again = {}
    for k, v in pairs(opts) do again[k] = v end
    again.url = next_url
    again.follow_redirects = redirects - 1
    if res.status == 303 or ((res.status == 301 or res.status == 302) and o.method == "POST") then
      again.method, again.body = "GET", nil
    end
    local nscheme, nhost, nport = client.parse_url(next_url)
    if nscheme ~= scheme or lower(nhost or "") ~= lower(host) or nport ~= port then
      again.headers = without_credentials(opts.headers)
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
