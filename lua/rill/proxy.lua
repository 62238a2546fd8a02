-- Proxying: a streaming reverse proxy, WebSocket proxying, a WebSocket ↔ TCP
-- bridge and raw tunnels. Every byte is passed on as it arrives and each side
-- waits for the slower one: nothing holds a whole body or message.
--
--   app:proxy("/api/", "http://127.0.0.1:9000")                -- in a router
--   rill.proxy.pass(req, res, "http://127.0.0.1:9000", opts)  -- in a handler
--   rill.proxy.ws_to_tcp(ws, "127.0.0.1", 5432)                -- WebSocket → TCP
--   rill.pipe(a, b)                                             -- any two streams
local rill = require "rill"
local client = require "rill.client"
local websocket = require "rill.websocket"
local http = require "rill.http"

local concat, gmatch, lower, tostring, type = table.concat, string.gmatch, string.lower,
  tostring, type

local proxy = {}

proxy.CONNECT_TIMEOUT = 5000 -- ms to connect upstream
proxy.TIMEOUT = 60000        -- ms the upstream may keep us waiting

-- ---- raw tunnels ----

-- Copies from → to until from ends, then ends to's write side.
local function copy(from, to)
  while true do
    local chunk = from:read_some(65536)
    if not chunk then break end
    if not to:write(chunk) then break end
  end
  if to.shutdown then to:shutdown() end
end

-- rill.pipe(a, b [, {idle_timeout = ms}]): copies both ways until both
-- directions have ended, with backpressure each way, then closes both.
function proxy.pipe(a, b, opts)
  local idle = opts and opts.idle_timeout
  if idle then
    a:settimeout(idle)
    b:settimeout(idle)
  end
  local back = rill.spawn(copy, b, a)
  copy(a, b)
  rill.wait(back)
  a:close()
  b:close()
  return true
end

-- ---- headers ----

-- Hop-by-hop headers (RFC 9110 §7.6.1): they concern one connection only.
local HOP = {connection = true, ["keep-alive"] = true, ["proxy-connection"] = true,
  te = true, trailer = true, ["transfer-encoding"] = true, upgrade = true,
  ["proxy-authenticate"] = true, ["proxy-authorization"] = true}

-- The headers named by Connection are hop-by-hop too.
local NONE = setmetatable({}, {__newindex = function() error("read-only", 2) end})

local function connection_tokens(value)
  if value == nil then return NONE end
  local set = {}
  if type(value) == "table" then value = concat(value, ",") end
  for t in gmatch(value or "", "[^,%s]+") do set[lower(t)] = true end
  return set
end

-- Copies raw headers {name, value, ...} without hop-by-hop ones and skip.
local function end_to_end(raw, connection, skip)
  local extra = connection and connection_tokens(connection)
  local out, n = {}, 0
  for i = 1, #raw, 2 do
    local name = lower(raw[i])
    if not HOP[name] and not (extra and extra[name]) and not (skip and skip[name]) then
      out[n + 1], out[n + 2] = raw[i], raw[i + 1]
      n = n + 2
    end
  end
  return out
end

-- base URL → its parts (client.request's _base: scheme, host, port,
-- authority, path prefix, and "scheme://authority/prefix"), parsed once (a
-- few hundred kept; upstreams built per request just start the table over).
-- Returns the request's URL and the base.
local bases, nbases = {}, 0
local function join(base, target)
  local b = bases[base]
  if not b then
    if nbases >= 256 then bases, nbases = {}, 0 end
    local scheme, host, port, path, authority = client.parse_url(base)
    if not scheme or authority:find("[%z\1-\32\127]") then return nil end
    if path == "/" then path = "" end
    if path:sub(-1) == "/" then path = path:sub(1, -2) end
    b = {scheme = scheme, host = host, port = port, authority = authority, path = path,
      prefix = scheme .. "://" .. authority .. path}
    bases[base], nbases = b, nbases + 1
  end
  return b.prefix .. target, b
end

-- ---- the reverse proxy ----

-- Appends a header line to a flat list (a function, not a closure per request).
local function add(headers, name, value)
  local n = #headers
  headers[n + 1] = name
  headers[n + 2] = value
end

-- Request headers the proxy writes itself.
local REPLACED = {host = true, ["content-length"] = true, ["x-forwarded-for"] = true,
  ["x-forwarded-proto"] = true, ["x-forwarded-host"] = true, expect = true}

local function fail(res, status, why)
  rill.log("warn", "proxy: " .. why)
  if res.headers_sent then return end
  res:status(status):header("Content-Type", "text/plain")
  res:send(status == 504 and "Gateway Timeout\n" or "Bad Gateway\n")
end

-- A WebSocket upgrade (others, h2c among them, are not passed on: the
-- request goes as a plain one, its Upgrade header being hop-by-hop).
local function is_upgrade(req)
  if req.protocol == "websocket" then return true end -- HTTP/2's (RFC 8441)
  local h = req.headers
  return h.upgrade ~= nil and connection_tokens(h.connection).upgrade and
    connection_tokens(h.upgrade).websocket
end

-- rill.proxy.pass(req, res, upstream [, opts]): forwards req to upstream (a
-- base URL, "http://host:port" or "https://host:port/prefix") and streams
-- the response back. opts:
--   timeout, connect_timeout   ms (504 past timeout, 502 when refused)
--   preserve_host              send the client's Host instead of upstream's
--   strip_prefix               remove this prefix from the path first
--   headers                    {name = value | false}: set or remove request headers
--   on_response(ures, req, res) inspect or change the response head; return
--                              false to answer yourself
--   tls                        TLS options for an https upstream
-- WebSocket upgrades are joined to a WebSocket to the upstream.
function proxy.pass(req, res, upstream, opts)
  opts = opts or {}
  if req.method == "CONNECT" and req.protocol ~= "websocket" then
    res:status(405):header("Allow", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH")
    return res:send("a reverse proxy does not tunnel\n")
  end
  local target = req.target
  if target == "*" then
    return res:status(400):send("the * target names no resource to pass on\n")
  end
  if target:sub(1, 1) ~= "/" then target = req.path .. (req.query_string ~= "" and "?" .. req.query_string or "") end
  if opts.strip_prefix and target:sub(1, #opts.strip_prefix) == opts.strip_prefix then
    target = target:sub(#opts.strip_prefix + 1)
    if target:sub(1, 1) ~= "/" then target = "/" .. target end
  end
  local url, base = join(upstream, target)
  if not url then error("bad upstream URL: " .. tostring(upstream), 2) end
  if is_upgrade(req) then return proxy.websocket(req, res, url, opts) end

  local h = req.headers
  local headers = end_to_end(req.raw_headers, h.connection, REPLACED)
  local xff = h["x-forwarded-for"]
  if type(xff) == "table" then xff = concat(xff, ", ") end
  add(headers, "X-Forwarded-For", (xff and xff .. ", " or "") .. req.remote_addr)
  add(headers, "X-Forwarded-Proto", req.scheme)
  if h.host then add(headers, "X-Forwarded-Host", h.host) end
  if opts.headers then
    for name, value in pairs(opts.headers) do
      local lname = lower(name)
      for i = #headers - 1, 1, -2 do
        if lower(headers[i]) == lname then
          table.remove(headers, i + 1)
          table.remove(headers, i)
        end
      end
      if value then add(headers, name, tostring(value)) end
    end
  end

  -- The request body streams through as it arrives, under the client's own
  -- Content-Length or chunked.
  local body
  local clen = h["content-length"]
  if clen or h["transfer-encoding"] then
    body = req.body
    if clen then add(headers, "Content-Length", clen) end
  end

  -- The method, target and fields came from our parser (so they are valid in
  -- a request head) or from us: the client need not check them again, unless
  -- opts.headers added some.
  local ures, err = client.request{url = url, _base = base, _target = target, _flat = true,
    method = req.method, headers = headers,
    body = body, read_timeout = opts.timeout or proxy.TIMEOUT, _raw = true,
    connect_timeout = opts.connect_timeout or proxy.CONNECT_TIMEOUT, tls = opts.tls,
    host = opts.preserve_host and h.host or nil, _checked = opts.headers == nil}
  if not ures then
    err = tostring(err)
    return fail(res, err:find("timeout") and 504 or 502, url .. ": " .. err)
  end
  if opts.on_response and opts.on_response(ures, req, res) == false then
    ures.body:close()
    return
  end
  res:status(ures.status)
  -- The upstream's header lines as they came (case, order, repeats), unless
  -- on_response set a header of that name already.
  local raw, out = ures.raw_headers, res._h
  local skip = connection_tokens(ures.headers.connection)
  local set = NONE
  if #out > 0 then
    set = {}
    for i = 1, #out, 2 do set[lower(out[i])] = true end
  end
  local n = #out
  for i = 1, #raw, 2 do
    local name = lower(raw[i])
    if not HOP[name] and not skip[name] and not set[name] then
      out[n + 1] = raw[i]
      out[n + 2] = raw[i + 1]
      n = n + 2
    end
  end
  while true do
    local chunk, rerr = ures.body:read_some(65536)
    if not chunk then
      if rerr then
        -- The upstream broke off mid-body: the client must see a cut, not an end.
        ures.body:close()
        error("proxy: upstream " .. url .. ": " .. tostring(rerr))
      end
      break
    end
    local ok, werr = res:write(chunk)
    if not ok then -- the client went away: so does the upstream request
      ures.body:close()
      rill.log("info", "proxy: client gone: " .. tostring(werr))
      return
    end
  end
  res:finish()
end

-- ---- WebSockets ----

-- Forwards every message of a to b, fragment by fragment; passes on the close.
local function forward(a, b)
  while true do
    local msg, why, code, reason = a:receive()
    if not msg then
      b:close(code and code ~= 1005 and code ~= 1006 and code or 1000, reason)
      return
    end
    -- a message that came in one frame is passed on in one, as it arrives
    local out = b:send_stream(msg.type, nil, msg.length)
    while true do
      local chunk, err = msg:read_some(65536)
      if not chunk then
        if err then
          -- a frame begun with its length cannot end early: closing the
          -- writer fails the connection; otherwise a close says why
          if msg.length then out:close() end
          b:close(1011, "upstream message cut short")
          return
        end
        break
      end
      if not out:write(chunk) then return end
    end
    out:close()
  end
end

-- proxy.websocket(req, res, url, opts): joins the client's WebSocket to one
-- opened to url (http(s) URLs become ws(s)); subprotocols pass through.
-- permessage-deflate is negotiated on each side on its own (opts.deflate
-- for both): messages are inflated as read from one and, if that side
-- negotiated it, deflated as written to the other.
function proxy.websocket(req, res, url, opts)
  opts = opts or {}
  url = url:gsub("^http", "ws")
  local offered = {}
  local p = req.headers["sec-websocket-protocol"]
  if type(p) == "table" then p = concat(p, ",") end
  for t in gmatch(p or "", "[^,%s]+") do offered[#offered + 1] = t end
  local xff = req.headers["x-forwarded-for"]
  local uws, err = websocket.connect(url, {protocols = offered, origin = req.headers.origin,
    timeout = opts.connect_timeout or proxy.CONNECT_TIMEOUT, tls = opts.tls,
    max_message = opts.max_message or 1024 * 1024 * 1024, deflate = opts.deflate,
    headers = {["X-Forwarded-For"] = (type(xff) == "string" and xff .. ", " or "") .. req.remote_addr}})
  if not uws then return fail(res, tostring(err):find("timeout") and 504 or 502, url .. ": " .. tostring(err)) end
  local chosen = uws:protocol()
  local ws = req:upgrade_websocket({protocols = chosen and {chosen} or nil,
    max_message = opts.max_message or 1024 * 1024 * 1024, idle_timeout = opts.idle_timeout,
    deflate = opts.deflate})
  if not ws then
    uws:close(1001)
    return
  end
  local back = rill.spawn(forward, uws, ws)
  forward(ws, uws)
  rill.wait(back)
end

-- rill.proxy.connect(req, res, opts): serves a CONNECT request as a tunnel:
-- connects to the host:port it names and pipes bytes both ways. An open
-- tunnel reaches anything the server can, so opts.allow(host, port, req)
-- must say yes (403 otherwise). opts.connect_timeout in ms.
function proxy.connect(req, res, opts)
  opts = opts or {}
  local host, port = req.target:match("^%[?([^%]]+)%]?:(%d+)$")
  port = tonumber(port)
  if req.method ~= "CONNECT" or not host or port < 1 or port > 65535 then
    res:status(400):send("CONNECT host:port\n")
    return
  end
  if not (opts.allow and opts.allow(host, port, req)) then
    res:status(403):send("Forbidden\n")
    return
  end
  local up, err = rill.connect(host, port, {timeout = opts.connect_timeout or proxy.CONNECT_TIMEOUT})
  if not up then return fail(res, tostring(err):find("timeout") and 504 or 502, req.target .. ": " .. tostring(err)) end
  http.keep_fields(req)
  local s = req._c:upgrade(req._g, {}, 200)
  res.headers_sent, res.finished = true, true
  return proxy.pipe(s, up, opts)
end

-- rill.proxy.ws_to_tcp(ws, host, port [, opts]): the bytes of ws's binary
-- messages go to a TCP connection as they arrive; its bytes come back as
-- binary messages. Returns when both directions have ended.
function proxy.ws_to_tcp(ws, host, port, opts)
  opts = opts or {}
  local s, err = rill.connect(host, port, {timeout = opts.connect_timeout or proxy.CONNECT_TIMEOUT,
    tls = opts.tls})
  if not s then
    rill.log("warn", ("proxy: %s:%d: %s"):format(host, port, tostring(err)))
    ws:close(1011, "upstream unreachable")
    return nil, err
  end
  return proxy.pipe(ws:as_stream(), s, opts)
end

return proxy
