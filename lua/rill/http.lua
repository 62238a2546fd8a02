-- HTTP/1.1 server: the request and response objects handlers see, built on
-- the connection primitives of rill.core (lua_http.c).
--
--   rill.http.listen{host = "127.0.0.1", port = 8080, handler = function(req, res)
--     res:header("Content-Type", "text/plain")
--     res:send("Hello, world!")
--   end}
local core = require "rill.core"
local hooks = require "rill.hooks"

local byte, char, concat, find, format, gsub, lower, sub, tonumber, tostring, type =
  string.byte, string.char, table.concat, string.find, string.format, string.gsub,
  string.lower, string.sub, tonumber, tostring, type
local rawget, rawset, remove, setmetatable, select, sort = rawget, rawset, table.remove,
  setmetatable, select, table.sort

local http = {}

local api = require("rill.ffi").api -- the fast paths
local CONN_MT = debug.getregistry()["rill.http.conn"]
local H2_MT = debug.getregistry()["rill.http.h2"] -- an HTTP/2 request stream
local getmetatable = getmetatable

-- ---- helpers ----

local function unhex(h)
  return char(tonumber(h, 16))
end

-- Decodes %XX escapes (and "+" as space when form is true).
function http.unescape(s, form)
  if form then s = gsub(s, "+", " ") end
  return (gsub(s, "%%(%x%x)", unhex))
end

-- Adds v under k in t: a second value makes an array of them (as repeated
-- query keys, form fields and header fields are kept).
function http._add_value(t, k, v)
  local old = t[k]
  if old == nil then
    t[k] = v
  elseif type(old) == "table" then
    old[#old + 1] = v
  else
    t[k] = {old, v}
  end
end
local add_value = http._add_value

-- Parses "a=1&b=2&a=3" into {a = {"1", "3"}, b = "2"}; a key with no "=" is true.
function http.parse_query(qs)
  local t = {}
  if qs == nil or qs == "" then return t end
  for pair in qs:gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=(.*)$")
    if k then
      k, v = http.unescape(k, true), http.unescape(v, true)
    else
      k, v = http.unescape(pair, true), true
    end
    add_value(t, k, v)
  end
  return t
end

local function pct(c)
  return format("%%%02X", byte(c))
end

-- http.escape(s) → s percent-encoded but for RFC 3986's unreserved bytes.
function http.escape(s)
  return (gsub(tostring(s), "[^A-Za-z0-9%-._~]", pct))
end

-- http.encode_query{a = 1, b = {"x", "y"}, c = true} → "a=1&b=x&b=y&c":
-- keys sorted, a list repeating its key, true the key alone, false nothing.
function http.encode_query(q)
  local keys = {}
  for k in pairs(q) do keys[#keys + 1] = tostring(k) end
  sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = q[k]
    if v == nil then v = q[tonumber(k)] end
    local list = type(v) == "table" and v or {v}
    for _, x in ipairs(list) do
      if x == true then
        parts[#parts + 1] = http.escape(k)
      elseif x ~= false then
        parts[#parts + 1] = http.escape(k) .. "=" .. http.escape(x)
      end
    end
  end
  return concat(parts, "&")
end

-- What a client may put in a request head (RFC 9110): a method or a header
-- name is a token; a header value has no CR, LF or NUL (a request that had
-- one would end its line early and smuggle in a line of its own choosing).
-- Classes spelled out: %w and %c would follow the process's locale.
function http.is_token(s)
  return type(s) == "string" and find(s, "^[A-Za-z0-9!#$%%&'*+%-.^_`|~]+$") ~= nil
end

function http.is_field_value(s)
  return type(s) == "string" and find(s, "[%z\r\n]") == nil
end

-- s in quotes for an error message, control bytes, quotes and backslashes
-- as \ddd.
function http.quote(s)
  return '"' .. gsub(tostring(s), '[%z\1-\31\127"\\]', function(c)
    return format("\\%d", byte(c))
  end) .. '"'
end

-- Header tables: lower-case keys, looked up case-insensitively.
local Headers = {
  __index = function(t, k)
    if type(k) ~= "string" then return nil end
    local l = lower(k)
    if l ~= k then return rawget(t, l) end
  end,
}
http.Headers = Headers

-- ---- requests ----

local Request = {}
local getters = {}

local fast = require "rill.ffi"
local fptr, fptr2, fint, ffi_string = fast.ptr, fast.ptr2, fast.int, fast.string

local function reqline(req)
  local c, g = req._c, req._g
  local mt = getmetatable(c)
  if mt == CONN_MT or mt == H2_MT then -- the fast path (rill.ffi)
    local minor = (mt == CONN_MT and api.http_reqline or api.h2_reqline)(c, g, fptr, fptr2, fint)
    if minor >= 0 then
      rawset(req, "method", ffi_string(fptr[0]))
      rawset(req, "target", ffi_string(fptr2[0], fint[0]))
      rawset(req, "version", minor == 1 and "1.1" or minor == 20 and "2" or "1.0")
      return
    end
  end
  local m, target, minor, protocol = c:reqline(g)
  rawset(req, "method", m)
  rawset(req, "target", target)
  rawset(req, "version", minor == 1 and "1.1" or minor == 20 and "2" or "1.0")
  rawset(req, "protocol", protocol)
end

function getters.method(req) reqline(req) return req.method end
-- req.protocol: an HTTP/2 Extended CONNECT's :protocol (RFC 8441), such as
-- "websocket"; nil for other requests.
function getters.protocol(req)
  if rawget(req, "method") == nil then reqline(req) end
  return rawget(req, "protocol")
end
function getters.target(req) reqline(req) return req.target end
function getters.version(req) reqline(req) return req.version end

local function split_target(req)
  local t = req.target
  local q = find(t, "?", 1, true)
  local path = q and sub(t, 1, q - 1) or t
  if byte(path, 1) ~= 47 then -- absolute-form: drop scheme and authority
    path = path:match("^%a[%w+.-]*://[^/]*(.*)$") or path
    if path == "" then path = "/" end
  end
  rawset(req, "path", path)
  rawset(req, "query_string", q and sub(t, q + 1) or "")
end

function getters.path(req) split_target(req) return req.path end
function getters.query_string(req) split_target(req) return req.query_string end

function getters.query(req)
  local q = http.parse_query(req.query_string)
  rawset(req, "query", q)
  return q
end

function getters.headers(req)
  local h = setmetatable(req._c:headers(req._g), Headers)
  rawset(req, "headers", h)
  return h
end

function getters.raw_headers(req)
  local h = req._c:raw_headers(req._g)
  rawset(req, "raw_headers", h)
  return h
end

function getters.body(req)
  local b = req._c:body(req._g)
  rawset(req, "body", b)
  return b
end

function getters.trailers(req) -- nil until a chunked body has ended
  local t = req._c:trailers(req._g)
  if t then
    setmetatable(t, Headers)
    rawset(req, "trailers", t)
  end
  return t
end

local function peer(req)
  local host, port = req._c:peer(req._g)
  rawset(req, "remote_addr", host)
  rawset(req, "remote_port", port)
end

function getters.remote_addr(req) peer(req) return req.remote_addr end
function getters.remote_port(req) peer(req) return req.remote_port end

-- req.proxy_addr, req.proxy_port: the load balancer's own address when a
-- PROXY protocol header gave remote_addr (false when there was none).
local function proxy_peer(req)
  local host, port = req._c:peer(req._g, true)
  rawset(req, "proxy_addr", host or false)
  rawset(req, "proxy_port", port or false)
end

function getters.proxy_addr(req) proxy_peer(req) return req.proxy_addr end
function getters.proxy_port(req) proxy_peer(req) return req.proxy_port end

function getters.scheme(req)
  local s = req._c:scheme(req._g)
  rawset(req, "scheme", s)
  return s
end

-- req.tls_client: the client certificate a listener with tls.client_ca
-- verified ({subject =, issuer =, dns =, email =, sha256 =, verified = true}),
-- or false.
function getters.tls_client(req)
  local t = req._c:tls_client(req._g) or false
  rawset(req, "tls_client", t)
  return t
end

-- req.closed: whether the client went away while the request was handled
-- (asked of the connection each time: it can change while the handler runs).
function getters.closed(req) return req._c:closed(req._g) end

-- The on_close callbacks of the request on each connection: conn → {gen, fn...}
local on_close = setmetatable({}, {__mode = "k"})

-- req:on_close(fn): fn() runs, in a thread of its own, when the client goes
-- away before the handler has ended (at once if it has gone already). The
-- connection is watched once the request's body has been read (at once for
-- a request without one).
function Request:on_close(fn)
  if type(fn) ~= "function" then
    error("req:on_close: fn must be a function, got " .. type(fn), 2)
  end
  if self.closed then
    core.spawn(fn)
    return
  end
  local c, list = self._c, on_close[self._c]
  if not list or list.gen ~= self._g then
    list = {gen = self._g}
    on_close[c] = list
  end
  list[#list + 1] = fn
end

-- Called by the server (core/lua_http.c) when a request's client has gone.
local function gone(conn, gen)
  local list = on_close[conn]
  if not list or list.gen ~= gen then return end
  on_close[conn] = nil
  for i = 1, #list do
    local ok, err = xpcall(list[i], debug.traceback)
    if not ok then core.log("error", "error in an on_close callback: " .. tostring(err)) end
  end
end

function getters.params(req)
  local p = {}
  rawset(req, "params", p)
  return p
end

-- req.raw_params: the route parameters as they came in the URL, not
-- percent-decoded (the router sets them; empty for a request it did not
-- route, or a route without parameters).
function getters.raw_params(req)
  local p = {}
  rawset(req, "raw_params", p)
  return p
end

local req_mt = {
  __name = "rill.http.request",
  __index = function(req, k)
    local g = getters[k]
    if g then return g(req) end
    return Request[k]
  end,
  __tostring = function(req) return "rill.http.request: " .. req.method .. " " .. req.target end,
}

-- req:header(name): a header's value (repeated ones as an array), any case.
function Request:header(name)
  return self.headers[name]
end

-- The fields a request reads from its connection, read now and kept on req:
-- called before the connection is handed over (an upgrade), so that a
-- WebSocket or tunnel handler can still read them.
local kept_fields = {"method", "target", "version", "path", "query_string", "headers",
  "raw_headers", "remote_addr", "remote_port", "proxy_addr", "proxy_port", "scheme", "tls_client"}
function http.keep_fields(req)
  for i = 1, #kept_fields do local _ = req[kept_fields[i]] end
end

-- req.cookies: the Cookie header parsed (rill.cookie.parse), when first read.
function getters.cookies(req)
  local c = require("rill.cookie").parse(req.headers.cookie)
  rawset(req, "cookies", c)
  return c
end

-- req:json([limit]) → the body decoded, or nil, err: see rill.json, loaded
-- when first used. (A tail call: its errors point at the caller's line.)
function Request:json(limit)
  return require("rill.json")._read_request(self, limit)
end

-- req:decompress([opts]) → true, or nil, err: from now on req.body (and
-- req:json, req:form, req:parts) reads the body decoded from its
-- Content-Encoding (gzip, deflate). See rill.encoding.
function Request:decompress(opts)
  return require("rill.encoding")._decompress_request(self, opts)
end

-- req:form([limit]) and req:parts([opts]): the body as an urlencoded form,
-- or multipart/form-data parts that are streams. See rill.form. (Tail calls:
-- their errors point at the caller's line.)
function Request:form(limit) return require("rill.form").form(self, limit) end
function Request:parts(opts) return require("rill.form").parts(self, opts) end

-- req:upgrade_websocket([opts]) → websocket | nil, why (the refusal, 400, 403
-- or 426, has been sent). See rill.websocket.upgrade for opts.
function Request:upgrade_websocket(opts)
  return require("rill.websocket").upgrade(self, self.res, opts)
end

-- ---- responses ----

local Response = {}
Response.__index = Response
Response.__name = "rill.http.response"

-- res:status(code) sets the status and returns res; res:status() reads it.
function Response:status(code)
  if code == nil then return self._status end
  if self.headers_sent then error("res:status: the response head has been sent already", 2) end
  if type(code) ~= "number" or code % 1 ~= 0 or code < 100 or code > 999 then
    error("res:status: the status must be an integer 100-999, got " ..
      (type(code) == "string" and ("%q"):format(code) or tostring(code)), 2)
  end
  self._status = code
  return self
end

local function drop(h, lname)
  for i = #h - 1, 1, -2 do
    if lower(h[i]) == lname then
      remove(h, i + 1)
      remove(h, i)
    end
  end
end

-- res:header(name, value) sets a header (replacing one of the same name; a
-- table value gives one line per element); res:header(name) reads it.
function Response:header(name, value)
  local h = self._h
  if value == nil then
    local lname = lower(name)
    for i = 1, #h, 2 do
      if lower(h[i]) == lname then return h[i + 1] end
    end
    return nil
  end
  if self.headers_sent then error("res:header: the response head has been sent already", 2) end
  if #h > 0 then drop(h, lower(name)) end
  if type(value) == "table" then
    for i = 1, #value do
      h[#h + 1] = name
      h[#h + 1] = tostring(value[i])
    end
  else
    h[#h + 1] = name
    h[#h + 1] = tostring(value)
  end
  return self
end

-- res:add_header(name, value) adds a line, keeping others of the same name.
function Response:add_header(name, value)
  if self.headers_sent then
    error("res:add_header: the response head has been sent already", 2)
  end
  local h = self._h
  h[#h + 1] = name
  h[#h + 1] = tostring(value)
  return self
end

-- res:json(value [, status]), res:cookie(name, value [, opts]) and
-- res:clear_cookie(name [, opts]): see rill.json and rill.cookie, loaded when
-- first used. (Tail calls: their errors point at the caller's line.)
function Response:json(value, status)
  return require("rill.json")._respond(self, value, status)
end

function Response:cookie(name, value, opts)
  return require("rill.cookie")._set(self, name, value, opts)
end

function Response:clear_cookie(name, opts)
  return require("rill.cookie")._clear(self, name, opts)
end

-- A body piece: a string, or a number (written as tostring would); anything
-- else is a mistake (a table meant as JSON: res:json).
local function body_piece(data, fname)
  local t = type(data)
  if t == "string" then return data end
  if t == "number" then return tostring(data) end
  error(("%s: the body must be a string, got %s%s"):format(fname, t,
    t == "table" and " (res:json sends a table as JSON)" or ""), 3)
end

-- rill.middleware.compress's decision, made just before the head goes
-- (res._zip is set by the middleware); len is the whole body's size if known.
local function zip_head(res, len)
  return require("rill.encoding")._head(res, len)
end

-- res:write(data): streams a piece of the body; the head goes with the first.
-- Without a Content-Length header the body is chunked (HTTP/1.1) or ends with
-- the connection (HTTP/1.0). Waits while the client is slow.
function Response:write(data, ...)
  if select("#", ...) > 0 then
    for i = 1, select("#", ...) do body_piece((select(i, ...)), "res:write") end
    data = concat({body_piece(data, "res:write"), ...})
  elseif type(data) ~= "string" then
    data = body_piece(data, "res:write")
  end
  if self.finished then error("res:write: the response has ended", 2) end
  local c = self._c
  local mt = getmetatable(c)
  if self.headers_sent and type(data) == "string" and (mt == CONN_MT or mt == H2_MT) then
    -- the head went: the fast path (rill.ffi) takes the piece, if it can
    local r = (mt == CONN_MT and api.http_write or api.h2_write)(c, self._g, data, #data)
    if r == 0 then
      self._sent = self._sent + #data
      return true
    end
    if r == 1 then
      self._sent = self._sent + #data
      return c:_wait_drained(self._g)
    end
  end
  if self._zip and not self.headers_sent then zip_head(self) end
  self.headers_sent = true
  data = tostring(data)
  local ok, err = self._c:write(self._g, self._status, self._h, data)
  if ok then self._sent = self._sent + #data end
  return ok, err
end

-- res:flush(): starts the response if it has not started (its head goes,
-- and the body is streamed), and sends what was written now rather than
-- when the handler next waits.
function Response:flush()
  if self._zip and not self.headers_sent then zip_head(self) end
  self.headers_sent = true
  return self._c:flush(self._g, self._status, self._h)
end

-- res:send(body): the whole response, with a Content-Length.
local MAX_FAST_HEADERS = 32
local fast_headers = require("ffi").new("rill_ffi_hdr_t[?]", MAX_FAST_HEADERS)

-- Counts n body bytes as sent if the connection took them (ok).
local function sent(res, n, ok, err)
  if ok then res._sent = res._sent + n end
  return ok, err
end

function Response:send(body)
  if body ~= nil and type(body) ~= "string" then body = body_piece(body, "res:send") end
  if self.headers_sent then
    error(self.finished and "res:send: the response was sent already" or
      "res:send: the response has started (res:write or res:flush); end it with res:finish", 2)
  end
  if body == nil then body = "" elseif type(body) ~= "string" then body = tostring(body) end
  if self._zip then zip_head(self, #body) end
  self.headers_sent = true
  self.finished = true
  local c, g, status, h = self._c, self._g, self._status, self._h
  local n = #h
  local mt = getmetatable(c)
  if (mt == CONN_MT or mt == H2_MT) and type(status) == "number" and n <= 2 * MAX_FAST_HEADERS then
    -- the fast path (rill.ffi): the header lines point into h's strings
    local ok = true
    for i = 1, n, 2 do
      local name, value = h[i], h[i + 1]
      if type(name) ~= "string" or type(value) ~= "string" then
        ok = false
        break
      end
      local f = fast_headers[(i - 1) / 2]
      f.name, f.nlen, f.value, f.vlen = name, #name, value, #value
    end
    if ok then
      local r = (mt == CONN_MT and api.http_respond or api.h2_respond)(c, g, status,
        fast_headers, n / 2, body, #body)
      if r == 0 then
        self._sent = #body
        return true
      end
      if r ~= 2 then return sent(self, #body, c:_result(g, r)) end
    end
  end
  return sent(self, #body, c:respond(g, status, h, body))
end

-- ---- files as (part of) the body ----

local FILE_MT = debug.getregistry()["rill.file"]
local FILE_CHUNK = 65536 -- bytes per read on the path without sendfile
local SMALL_FILE = 65536 -- a whole body up to this is read from the page cache if it can
local floor = math.floor

-- f: a path (opened here: own is true) or a file from rill.fs.open.
local function file_arg(f, fname)
  if type(f) == "string" then
    local file, err = require("rill.fs").open(f)
    if not file then return nil, err end
    return file, nil, true
  end
  if getmetatable(f) ~= FILE_MT then
    error(fname .. ": file must be a path or a file from rill.fs.open, got " .. type(f), 3)
  end
  return f, nil, false
end

local function range_arg(v, what, fname)
  if v == nil then return nil end
  if type(v) ~= "number" or v < 0 or v ~= floor(v) then
    error(("%s: %s must be a whole number of bytes (0 or more), got %s"):format(fname, what,
      tostring(v)), 3)
  end
  return v
end

-- offset and length of file's range: length defaults to the rest of the file.
local function file_range(file, offset, length)
  if length then return offset, length end
  local st, err = file:stat()
  if not st then return nil, err end
  local left = st.size - offset
  return offset, left > 0 and left or 0
end

-- Whether this response sends no body bytes: HEAD, 1xx, 204, 304.
local function no_body(res)
  local s = res._status
  if s < 200 or s == 204 or s == 304 then return true end
  return (res._c:reqline(res._g)) == "HEAD"
end

-- The bytes of file's range through res:write: pooled reads in the thread
-- pool, each piece written with backpressure (TLS, or a body transformed).
local function write_by_reads(res, file, offset, length)
  while length > 0 do
    local data, err = file:read(length < FILE_CHUNK and length or FILE_CHUNK, offset)
    if not data then
      -- the file shrank under us, or failed: the response cannot be whole
      pcall(res._c._cut, res._c, res._g)
      return nil, err or "file ended early (truncated while it was sent?)"
    end
    local ok, werr = res:write(data)
    if not ok then return nil, werr end
    offset, length = offset + #data, length - #data
  end
  return true
end

local function write_file(res, file, offset, length)
  offset, length = file_range(file, offset, length)
  if not offset then return nil, length end
  if length == 0 or no_body(res) then return res:write("") end
  -- rill.middleware.compress decides before the head goes; if it compresses,
  -- it sets res._transform.
  if res._zip and not res.headers_sent then zip_head(res) end
  -- The hook for body transforms (compression, rill.middleware): a response
  -- whose body is transformed sets res._transform, and its bytes go through
  -- res:write; otherwise plain HTTP sends the file with sendfile(2).
  if res._transform == nil then
    res.headers_sent = true
    local c, g = res._c, res._g
    while length > 0 do
      local n, err = c:_sendfile(g, res._status, res._h, file, offset, length)
      if not n then
        if err == "unsupported" then break end -- TLS: by reads
        return nil, err
      end
      res._sent = res._sent + n
      offset, length = offset + n, length - n
    end
    if length == 0 then return true end
  end
  return write_by_reads(res, file, offset, length)
end

-- res:write_file(file_or_path [, offset [, length]]) → true | nil, err:
-- writes that byte range of the file (length: the rest of the file from
-- offset, 0 by default) as part of the body; the head goes first, as with
-- res:write. Waits while the client is slow.
function Response:write_file(f, offset, length)
  offset = range_arg(offset, "offset", "res:write_file") or 0
  length = range_arg(length, "length", "res:write_file")
  if self.finished then error("res:write_file: the response has ended", 2) end
  local file, err, own = file_arg(f, "res:write_file")
  if not file then return nil, err end
  local ok, werr = write_file(self, file, offset, length)
  if own then file:close() end
  return ok, werr
end

-- res:send_file(file_or_path [, offset [, length]]) → true | nil, err: the
-- whole response: Content-Length is length (unless the handler set one),
-- the range as the body, then the end. HEAD: the head only, no file I/O
-- (but the size of a path is asked of the file system when no length is
-- given).
function Response:send_file(f, offset, length)
  offset = range_arg(offset, "offset", "res:send_file") or 0
  length = range_arg(length, "length", "res:send_file")
  if self.headers_sent then
    error(self.finished and "res:send_file: the response was sent already" or
      "res:send_file: the response has started (res:write or res:flush)", 2)
  end
  local file, err, own = file_arg(f, "res:send_file")
  if not file then return nil, err end
  local ok, werr
  offset, length = file_range(file, offset, length)
  if not offset then
    ok, werr = nil, length
  else
    local cl = self:header("Content-Length")
    if cl == nil then self:header("Content-Length", length) end
    -- A small file all in the page cache is read now (that never waits for
    -- the disk), and its bytes go with the head in one write.
    local data, empty = nil, no_body(self)
    if not empty and length > 0 and length <= SMALL_FILE and (cl == nil or tonumber(cl) == length)
    then
      data = file:_read_now(length, offset)
    end
    if empty then
      ok, werr = self:send("")
    elseif data and #data == length then
      ok, werr = self:send(data)
    else
      ok, werr = write_file(self, file, offset, length)
      if ok then ok, werr = self:finish() else self.finished = true end
    end
  end
  if own then file:close() end
  return ok, werr
end

-- res:finish(): ends the response (an empty one if nothing was sent).
function Response:finish()
  if self.finished then return true end
  if self._zip and not self.headers_sent then zip_head(self, 0) end
  self.headers_sent = true
  self.finished = true
  return self._c:finish(self._g, self._status, self._h)
end

Response.close = Response.finish

-- res:on_finish(fn): fn(status, bytes, ms) runs once when the handler is
-- done, whether it returned or raised (rill.hooks says what the arguments
-- mean).
function Response:on_finish(fn)
  if type(fn) ~= "function" then error("res:on_finish: fn must be a function", 2) end
  local list = self._on_finish
  if list then
    list[#list + 1] = fn
  else
    self._on_finish = {fn}
    self._t0 = self._c:_started() -- (asked now: the connection may serve others later)
  end
  return self
end

-- res:redirect(url [, status]): answers with Location: url and status
-- (default 302; 300-399). A url with CR, LF or NUL is refused.
function Response:redirect(url, status)
  if type(url) ~= "string" or find(url, "[%z\r\n]") then
    error("res:redirect: url must be a string without CR, LF or NUL, got " .. http.quote(url), 2)
  end
  status = status or 302
  if type(status) ~= "number" or status % 1 ~= 0 or status < 300 or status > 399 then
    error("res:redirect: status must be an integer 300-399, got " .. tostring(status), 2)
  end
  if self.headers_sent then error("res:redirect: the response head has been sent already", 2) end
  self._status = status
  return self:header("Location", url):header("Content-Type", "text/plain; charset=utf-8")
    :send("Redirecting to " .. url .. "\n")
end

-- res:sse([opts]) → an event writer (rill.sse): the head goes at once.
function Response:sse(opts)
  if self.headers_sent then error("res:sse: the response head has been sent already", 2) end
  return require("rill.sse").new(self, opts)
end

-- ---- the server ----

local caught = hooks.caught

-- Runs in a fresh (or pooled) coroutine for each request. A handler that
-- raises is answered by rill.hooks (the app's on_error, or 500).
local function dispatch(handler, conn, gen)
  local res = setmetatable({_c = conn, _g = gen, _status = 200, _h = {},
    headers_sent = false, finished = false, _sent = 0}, Response)
  local req = setmetatable({_c = conn, _g = gen, res = res}, req_mt)
  local ok, err = xpcall(handler, caught, req, res)
  if not ok then hooks.failed(err, req, res) end
  if not res.finished then
    if res._zip and not res.headers_sent then pcall(zip_head, res, 0) end
    res.finished = true
    res.headers_sent = true
    if res._on_finish then
      ok, err = pcall(conn.finish, conn, gen, res._status, res._h)
      hooks.finished(req, res)
      if not ok then error(err, 0) end
      return
    end
    conn:finish(gen, res._status, res._h)
  end
  if res._on_finish then hooks.finished(req, res) end
end

-- http.deadline(ms, fn, req, res): runs fn(req, res) with a deadline of ms
-- milliseconds (the route option `timeout`, rill.middleware.timeout). Past
-- it, a response not yet started is answered 503 ("handler timed out"), one
-- started is cut (its connection closed), and the handler's current wait
-- ends with nil, "timeout"; its later calls on res fail, and the error they
-- raise is not logged again. Returns what fn returns.
function http.deadline(ms, fn, req, res)
  if type(ms) ~= "number" or ms <= 0 then
    error("a handler timeout must be a positive number of ms, got " .. tostring(ms), 2)
  end
  local task = core.current_task()
  local timer = core.timer(ms, function()
    res._timed_out = true
    core.log("warn", ("handler past its deadline of %g ms: %s %s"):format(ms,
      tostring(rawget(req, "method") or "?"), tostring(rawget(req, "path") or "?")))
    local c, g = res._c, res._g
    local ok, state = pcall(c._response, c, g)
    if ok and state == "none" then
      res._h = {}
      res._status = 503
      res:header("Content-Type", "text/plain")
      pcall(res.send, res, "handler timed out\n")
    elseif ok and state == "started" then
      pcall(c._abort, c, g)
    end
    res.headers_sent, res.finished = true, true
    core.interrupt(task) -- the handler's task is alive: on_finish cancels this timer
  end)
  res:on_finish(function() timer:cancel() end)
  return fn(req, res)
end

-- A handler is a function(req, res), or an object with a handle method or a
-- __call metamethod (a router).
function http.handler(app)
  if type(app) == "function" then return app end
  if type(app) == "table" then
    if type(app.handle) == "function" then
      return function(req, res) return app:handle(req, res) end
    end
    local mt = getmetatable(app)
    if mt and mt.__call then
      return function(req, res) return app(req, res) end
    end
  end
  return nil
end

-- rill.http.listen{host=, port=, handler=, backlog=, max_connections=,
--   max_connections_per_address=, max_header_bytes=, max_headers=,
--   max_body_bytes=, drain_bytes=, min_body_rate= (bytes/s),
--   header_timeout=, body_timeout=, body_rate_grace=, keepalive_timeout=,
--   send_timeout= (milliseconds), http2= (true: HTTP/2 too: "h2" by ALPN over
--   TLS, h2c in clear by prior knowledge or Upgrade: h2c; HTTP/1.1 goes on
--   as before)}
-- → listener (listener:port(), listener:close()) or nil, err.
function http.listen(opts)
  local h = http.handler(opts.handler)
  if not h then error("handler must be a function or a router", 2) end
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.handler = h
  o.dispatch = dispatch
  o.gone = gone
  return core.http_listen(o)
end

-- rill.http.request{url=, method=, headers=, body=, ...}: see rill.client.
function http.request(opts)
  return require("rill.client").request(opts)
end

-- rill.http.cookie_jar() → a client's cookie jar: see rill.cookiejar.
function http.cookie_jar()
  return require("rill.cookiejar").new()
end

-- rill.http.abort(status [, message [, headers]]): raises an error object
-- that the request is answered with (rill.hooks).
http.abort = hooks.abort

http.Request = Request
http.Response = Response
return http
