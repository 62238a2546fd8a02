-- WebSockets (RFC 6455): the server handshake, the client, and the Lua side
-- of websocket objects (core/lua_ws.c): messages as streams, streaming sends.
--
--   app:websocket("/echo", function(ws, req)
--     while true do
--       local msg = ws:receive()            -- nil, "closed", code, reason at the end
--       if not msg then return end
--       local out = ws:send_stream(msg.type)
--       for chunk in msg:chunks() do out:write(chunk) end   -- fragment by fragment
--       out:close()
--     end
--   end)
local core = require "rill.core"
local rill = require "rill"
local http = require "rill.http"
local deflate = require "rill.ws_deflate"

local concat, find, gmatch, lower, sub = table.concat, string.find, string.gmatch,
  string.lower, string.sub
local setmetatable, type, tostring, tonumber = setmetatable, type, tostring, tonumber

local M = {}

M.DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024
M.DEFAULT_IDLE_TIMEOUT = 300000 -- ms a server waits in receive() by default

-- The methods of websocket objects (core/lua_ws.c); this module adds the
-- ones written in Lua. State lives on the objects, not here, so that loading
-- this module again (a reload) changes nothing for websockets already open.
local WS = core.ws_methods

-- next, send and frame: a fast path (rill.ffi) for a message that has begun
-- and a frame the connection takes at once; the C methods (_next, _send,
-- _frame) otherwise.
local fast = require "rill.ffi"
local api = fast.api
local WS_MT = debug.getregistry()["rill.websocket"]
local c_next, c_send, c_frame, c_streaming, c_wait = WS._next, WS._send, WS._frame,
  WS._streaming, WS._wait_drained
local c_begin, c_part, c_abort = WS._frame_begin, WS._frame_part, WS._frame_abort
local OPCODE = {text = 1, binary = 2}

-- The face of each websocket's message stream (the core makes one and binds
-- it to every message in turn), once the slow path has handed it over.
local message_face = setmetatable({}, {__mode = "k"})

-- ws:next() → "text" | "binary", message stream | nil, why, code, reason
function WS:next()
  if getmetatable(self) == WS_MT then
    local face = message_face[self]
    if face then
      local kind = api.ws_next(self)
      if kind == 1 then return "text", face end
      if kind == 2 then return "binary", face end
    end
    local kind, s, code, reason = c_next(self)
    if kind then message_face[self] = s end
    return kind, s, code, reason
  end
  return c_next(self)
end

-- One frame, through the fast path when the connection takes it now.
local function send_frame(ws, op, fin, data)
  if getmetatable(ws) == WS_MT and type(data) == "string" and type(op) == "number" then
    local r = api.ws_send(ws, op, fin and 1 or 0, data, #data)
    if r == 0 then return true end
    if r == 1 then return c_wait(ws) end
  end
  return c_frame(ws, op, fin, data)
end

-- Whether a message is being streamed on ws (before setting it to set).
local function streaming(ws, set)
  if getmetatable(ws) == WS_MT then
    return api.ws_streaming(ws, set == nil and -1 or set and 1 or 0) ~= 0
  end
  if set == nil then return c_streaming(ws) end
  return c_streaming(ws, set)
end

-- ws:frame(opcode, fin, data): one frame of a message sent in pieces.
WS.frame = send_frame

-- ---- messages ----

-- A received message: msg.type is "text" or "binary"; its payload is a
-- stream, read fragment by fragment as frames arrive.
local Message = {}
Message.__index = Message
Message.__name = "rill.websocket.message"
for _, m in ipairs({"read", "read_some", "read_until", "read_all", "lines", "chunks",
  "settimeout"}) do
  Message[m] = function(self, ...)
    local s = self.stream
    return s[m](s, ...)
  end
end

-- The stream a message held once the next one came: the core serves every
-- message of a websocket with one stream object, so an old message must not
-- read the new one's bytes.
local gone_stream = setmetatable({}, {__index = function()
  return function() error("attempt to use a closed stream", 2) end
end})
local last_message = setmetatable({}, {__mode = "kv"}) -- websocket → its message

-- ws:receive() → message | nil, "closed", code, reason | nil, error[, code].
-- msg.length is the payload's length in bytes when the message came in one
-- frame (nil when fragmented: its length is known only at its end).
function WS:receive()
  local kind, s, code, reason = self:next()
  local last = last_message[self]
  if last then last.stream = gone_stream end
  if not kind then return nil, s, code, reason end
  local length = getmetatable(self) == WS_MT and api.ws_msg_length(self) or -1
  local msg = setmetatable({type = kind, stream = s, length = length >= 0 and length or nil},
    Message)
  last_message[self] = msg
  return msg
end

-- ---- sending ----

-- ws:send(data [, "text" | "binary"]): one frame, text by default.
function WS:send(data, kind)
  if streaming(self) then error("a message is being streamed on this websocket", 2) end
  local op = kind == nil and 1 or OPCODE[kind]
  if op and type(data) == "string" then return send_frame(self, op, true, data) end
  return c_send(self, data, kind)
end

local Writer = {}
Writer.__index = Writer
Writer.__name = "rill.websocket.writer"

-- ws:send_stream([type [, fragment_size [, length]]]) → writer:
-- writer:write(data) sends fragments (writes gathered up to fragment_size,
-- 64 KiB by default; the latest write is held for the next fragment or the
-- last, so a message sent in one write goes as one frame), writer:close()
-- ends the message. With length (bytes, known before they are: a relayed
-- message's msg.length) the message goes as one frame whose bytes leave as
-- they are written; writing more is an error, and closing with fewer fails
-- the connection (1011), as a frame begun cannot end early.
function WS:send_stream(kind, fragment_size, length)
  if length ~= nil and (type(length) ~= "number" or length < 0 or length % 1 ~= 0) then
    error("bad length " .. tostring(length), 2)
  end
  if streaming(self, true) then error("a message is being streamed on this websocket", 2) end
  return setmetatable({ws = self, op = kind == "binary" and 2 or 1, started = false,
    held = nil, parts = nil, n = 0, size = fragment_size or 65536, length = length,
    left = length}, Writer)
end

-- A write of a message of declared length: its frame's header first, then
-- the bytes as they come (one write of the whole message: one plain frame).
local function write_declared(self, data, len)
  local left = self.left
  if len > left then error("more than the message's declared length", 3) end
  self.left = left - len
  if not self.started then
    self.started = true
    if len == left then return send_frame(self.ws, self.op, true, data) end
    local ok, err = c_begin(self.ws, self.op, true, self.length)
    if not ok then return ok, err end
  end
  return c_part(self.ws, data)
end

-- The writer holds its latest write in held; parts gathers the writes before
-- it only when several make up one fragment (most messages are one write).
function Writer:write(data)
  if self.closed then error("the message has ended", 2) end
  if type(data) ~= "string" then data = tostring(data) end
  local len = #data
  if len == 0 then return true end
  if self.left ~= nil then return write_declared(self, data, len) end
  local held = self.held
  if held == nil then
    self.held, self.n = data, len
    return true
  end
  local parts, total = self.parts, self.n + len
  if total < self.size then
    if parts == nil then
      self.parts = {held}
    else
      parts[#parts + 1] = held
    end
    self.held, self.n = data, total
    return true
  end
  -- A fragment's worth: all but the latest write go now; the latest waits,
  -- so that a message ends with data, not with an empty final fragment.
  local payload = held
  if parts ~= nil then
    parts[#parts + 1] = held
    payload = concat(parts)
    self.parts = nil
  end
  self.held, self.n = data, len
  local op = self.started and 0 or self.op
  self.started = true
  return send_frame(self.ws, op, false, payload)
end

function Writer:close()
  if self.closed then return true end
  self.closed = true
  streaming(self.ws, false)
  local left = self.left
  if left ~= nil then
    if left > 0 and self.started then
      c_abort(self.ws, "message shorter than its declared length")
      return nil, "message shorter than its declared length"
    end
    if self.started then return true end
    if left > 0 then return nil, "message shorter than its declared length" end
    return send_frame(self.ws, self.op, true, "")
  end
  local op = self.started and 0 or self.op
  local payload, parts = self.held or "", self.parts
  if parts ~= nil then
    parts[#parts + 1] = payload
    payload = concat(parts)
  end
  return send_frame(self.ws, op, true, payload)
end

-- ---- the server side ----

local function has_token(value, token)
  if type(value) == "table" then value = concat(value, ",") end
  if type(value) ~= "string" then return false end
  for t in gmatch(value, "[^,%s]+") do
    if lower(t) == token then return true end
  end
  return false
end

local function tokens(value)
  local list = {}
  if type(value) == "table" then value = concat(value, ",") end
  if type(value) == "string" then
    for t in gmatch(value, "[^,%s]+") do list[#list + 1] = t end
  end
  return list
end

-- Upgrades req to a WebSocket, or answers 400/403/426 and returns nil, why.
-- Over HTTP/2 the request is an Extended CONNECT (RFC 8441: :protocol
-- websocket), answered 200 with no Sec-WebSocket-Accept; the frames then
-- travel in the stream's DATA. opts: protocols = {...} (server's preference order), origin = function(origin,
-- req) → bool or a list of allowed origins, headers = {name = value},
-- max_frame, max_message (bytes), idle_timeout, close_timeout (milliseconds),
-- deflate = false | {...} (permessage-deflate, rill.ws_deflate; on by default).
function M.upgrade(req, res, opts)
  opts = opts or {}
  -- (req:upgrade_websocket tail-calls this: level 2 is the caller's line)
  local zcfg = deflate.config(opts.deflate, "upgrade_websocket", 2)
  local h = req.headers
  local function refuse(status, why, extra)
    res:status(status):header("Content-Type", "text/plain")
    for k, v in pairs(extra or {}) do res:header(k, v) end
    res:send(why .. "\n")
    return nil, why
  end
  local accept
  if req.version == "2" then
    if req.method ~= "CONNECT" then
      return refuse(426, "this resource speaks WebSocket (over HTTP/2: an Extended CONNECT)",
        {["Sec-WebSocket-Version"] = "13"})
    end
    if req.protocol ~= "websocket" then
      return refuse(400, "a WebSocket over HTTP/2 is a CONNECT with :protocol websocket")
    end
    if h["sec-websocket-version"] ~= "13" then
      return refuse(426, "unsupported WebSocket version", {["Sec-WebSocket-Version"] = "13"})
    end
  else
    if h.upgrade == nil then
      return refuse(426, "this resource speaks WebSocket",
        {Upgrade = "websocket", Connection = "Upgrade", ["Sec-WebSocket-Version"] = "13"})
    end
    if req.method ~= "GET" or req.version ~= "1.1" then
      return refuse(400, "a WebSocket upgrade is a GET over HTTP/1.1")
    end
    if not has_token(h.upgrade, "websocket") or not has_token(h.connection, "upgrade") then
      return refuse(400, "bad Upgrade or Connection header")
    end
    if h["sec-websocket-version"] ~= "13" then
      return refuse(426, "unsupported WebSocket version", {["Sec-WebSocket-Version"] = "13"})
    end
    local key = h["sec-websocket-key"]
    accept = type(key) == "string" and core.ws_accept(key)
    if not accept then return refuse(400, "bad Sec-WebSocket-Key") end
  end
  local origin = h.origin
  if opts.origin then
    local ok
    if type(opts.origin) == "function" then
      ok = opts.origin(origin, req)
    else
      for _, o in ipairs(opts.origin) do
        if o == origin then ok = true end
      end
    end
    if not ok then return refuse(403, "origin not allowed") end
  end
  local chosen
  if opts.protocols then
    local offered = {}
    for _, p in ipairs(tokens(h["sec-websocket-protocol"])) do offered[p] = true end
    for _, p in ipairs(opts.protocols) do
      if offered[p] then
        chosen = p
        break
      end
    end
  end
  local hdrs = accept and {"Upgrade", "websocket", "Connection", "Upgrade",
    "Sec-WebSocket-Accept", accept} or {}
  if chosen then
    hdrs[#hdrs + 1] = "Sec-WebSocket-Protocol"
    hdrs[#hdrs + 1] = chosen
  end
  local ext, zparams = deflate.accept(h["sec-websocket-extensions"], zcfg)
  if ext then
    hdrs[#hdrs + 1] = "Sec-WebSocket-Extensions"
    hdrs[#hdrs + 1] = ext
  end
  for k, v in pairs(opts.headers or {}) do
    hdrs[#hdrs + 1] = k
    hdrs[#hdrs + 1] = tostring(v)
  end
  http.keep_fields(req) -- the connection is the websocket's from here
  local status = accept and 101 or 200
  local s = req._c:upgrade(req._g, hdrs, status)
  if not s then return refuse(400, "a WebSocket upgrade must not have a body") end
  res.headers_sent, res.finished, res._status = true, true, status
  local max = opts.max_message or M.DEFAULT_MAX_MESSAGE
  local ws = core.ws_new(s, {server = true, max_frame = opts.max_frame or max, max_message = max,
    close_timeout = opts.close_timeout, timeout = opts.idle_timeout or M.DEFAULT_IDLE_TIMEOUT,
    protocol = chosen, deflate = zparams, extensions = ext})
  return ws
end

-- Runs fn(ws, req) and closes the websocket after it: 1000 when it returns,
-- 1011 (logged with a traceback) when it raises.
function M.run(ws, fn, req)
  local ok, err = xpcall(fn, debug.traceback, ws, req)
  if not ok then
    rill.log("error", "error in websocket handler: " .. tostring(err))
    ws:close(1011, "internal error")
  elseif ws:state() == "open" then
    ws:close(1000)
  end
end

-- ---- the client ----

local function parse_url(url)
  local scheme, rest = url:match("^(wss?)://(.*)$")
  if not scheme then return nil end
  local authority, path = rest:match("^([^/?#]*)(.*)$")
  if path == "" then path = "/" end
  local host, port = authority:match("^%[(.+)%]:?(%d*)$")
  if not host then host, port = authority:match("^([^:]*):?(%d*)$") end
  port = tonumber(port) or (scheme == "wss" and 443 or 80)
  return scheme, host, port, path, authority
end

-- Checks what will go into the handshake request, before anything is sent:
-- returns nil, or why it cannot be sent.
local function check_request(path, opts)
  -- RFC 9112 request-target: no space, no control byte.
  if find(path, "[%z\1-\32\127]") then return "bad request target " .. http.quote(path) end
  for _, p in ipairs(opts.protocols or {}) do
    if not http.is_token(p) then return "bad subprotocol " .. http.quote(p) end
  end
  if opts.origin and not http.is_field_value(opts.origin) then
    return "bad origin " .. http.quote(opts.origin)
  end
  for k, v in pairs(opts.headers or {}) do
    if not http.is_token(k) then return "bad header name " .. http.quote(k) end
    if not http.is_field_value(tostring(v)) then return "bad value for header " .. k end
  end
end

-- rill.websocket.connect(url, opts) → ws, response headers | nil, err.
-- opts: protocols = {...}, headers = {name = value}, origin, timeout (ms for
-- connect and handshake), tls = {...} (rill.connect's TLS options for wss),
-- address (connect here instead of the URL's host), max_frame, max_message,
-- idle_timeout, close_timeout (milliseconds), deflate = false | {...}
-- (permessage-deflate offered, rill.ws_deflate; on by default). A path,
-- subprotocol, origin or header that cannot go into a request head as it is
-- gives nil, "bad ..." with nothing sent.
function M.connect(url, opts)
  opts = opts or {}
  local zcfg = deflate.config(opts.deflate, "rill.websocket.connect", 2)
  local scheme, host, port, path, authority = parse_url(url)
  if not scheme or not host or host == "" or find(authority, "[%z\1-\32\127]") then
    return nil, "bad WebSocket URL: " .. http.quote(url)
  end
  local bad = check_request(path, opts)
  if bad then return nil, bad end
  local tls
  if scheme == "wss" then
    tls = {server_name = host}
    for k, v in pairs(type(opts.tls) == "table" and opts.tls or {}) do tls[k] = v end
  end
  local timeout = opts.timeout or 10000
  local s, err = rill.connect(opts.address or host, port, {timeout = timeout, tls = tls})
  if not s then return nil, err end
  s:settimeout(timeout)
  local key = core.ws_key()
  local req = {"GET " .. path .. " HTTP/1.1", "Host: " .. authority, "Upgrade: websocket",
    "Connection: Upgrade", "Sec-WebSocket-Key: " .. key, "Sec-WebSocket-Version: 13"}
  if opts.protocols and #opts.protocols > 0 then
    req[#req + 1] = "Sec-WebSocket-Protocol: " .. concat(opts.protocols, ", ")
  end
  if opts.origin then req[#req + 1] = "Origin: " .. opts.origin end
  if zcfg then req[#req + 1] = "Sec-WebSocket-Extensions: " .. deflate.offer(zcfg) end
  for k, v in pairs(opts.headers or {}) do
    req[#req + 1] = k .. ": " .. tostring(v)
  end
  local ok, werr = s:write(concat(req, "\r\n"), "\r\n\r\n")
  if not ok then
    s:close()
    return nil, werr
  end
  local head, rerr = s:read_until("\r\n\r\n", 16384)
  if not head then
    s:close()
    return nil, "handshake: " .. tostring(rerr)
  end
  local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d)"))
  local headers = {}
  for line in gmatch(sub(head, (find(head, "\r\n", 1, true) or #head) + 2) .. "\r\n", "(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then
      k = lower(k)
      -- extension lists may come in several lines: they join (RFC 9110 §5.3)
      if k == "sec-websocket-extensions" and headers[k] then v = headers[k] .. ", " .. v end
      headers[k] = v
    end
  end
  local function fail(why)
    s:close()
    return nil, "handshake: " .. why
  end
  if status ~= 101 then return fail("server answered " .. tostring(status)) end
  if not has_token(headers.upgrade, "websocket") or not has_token(headers.connection, "upgrade") then
    return fail("bad Upgrade or Connection header")
  end
  if headers["sec-websocket-accept"] ~= core.ws_accept(key) then
    return fail("bad Sec-WebSocket-Accept")
  end
  local chosen = headers["sec-websocket-protocol"]
  if chosen then
    local offered = false
    for _, p in ipairs(opts.protocols or {}) do
      if p == chosen then offered = true end
    end
    if not offered then return fail("server chose a subprotocol we did not offer") end
  end
  local ext = headers["sec-websocket-extensions"]
  local zparams, zerr = deflate.check(ext, zcfg)
  if zparams == false then return fail(zerr) end
  s:settimeout(nil)
  local max = opts.max_message or M.DEFAULT_MAX_MESSAGE
  local ws = core.ws_new(s, {server = false, max_frame = opts.max_frame or max, max_message = max,
    close_timeout = opts.close_timeout, timeout = opts.idle_timeout, protocol = chosen,
    deflate = zparams, extensions = zparams and ext or nil})
  return ws, headers
end

return M
