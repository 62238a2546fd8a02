-- rill.encoding (internal): Content-Encoding for rill's HTTP server:
-- negotiation, the decision to compress a response (made just before its
-- head goes; the compression itself is C's, core/http_conn.c), and decoded
-- request bodies (core/inflate_stream.c). The public faces are
-- rill.middleware.compress, rill.middleware.decompress and req:decompress;
-- what they do is said here.
--
-- rill.middleware.compress([opts]): gzip or deflate response bodies for the
-- clients that accept them (Accept-Encoding), compressed in C as they are
-- written (core/http_conn.c).
--
--   app:use(rill.middleware.compress{level = 6, min_size = 1024})
--
-- opts.level: zlib's level, 1 (fastest) to 9 (smallest); default 6 (zlib's
--   own default, as Express's compression).
-- opts.min_size: bytes; a body known to be smaller (res:send's whole body,
--   or a Content-Length header) is sent as it is; default 1024. A streamed
--   body of unknown length is always compressed.
-- opts.types: the Content-Types to compress, a list of "type/subtype"
--   (exact), "type/*" (any subtype) or "+suffix" ("+json": any
--   application/ld+json...); default DEFAULT_TYPES below. A response without
--   a Content-Type is not compressed.
--
-- Negotiation (RFC 9110 12.5.3): q-values count, "*" stands for codings not
-- named, "q=0" refuses; gzip is preferred to deflate on a tie, and a coding
-- is used only if the client likes it at least as much as identity (which,
-- when not named, ranks with the least liked coding named). No
-- Accept-Encoding header: not compressed.
--
-- Not compressed: status 1xx, 204, 206, 304; a response with
-- Content-Encoding or Content-Range already; Cache-Control: no-transform;
-- a type not in the list; a body under min_size. A compressed response
-- gets Content-Encoding, loses its Content-Length (chunked for HTTP/1.1,
-- delimited by the connection's end for HTTP/1.0), and a strong ETag
-- becomes weak (W/"..."). Every response that could be compressed (type,
-- size and status allow it) carries Vary: Accept-Encoding, added to a Vary
-- already set. A HEAD answer gets the head its GET would have (as nginx
-- does), without a body.
--
-- Each burst of writes is flushed through the compressor when it leaves
-- (the handler waits or ends, res:flush), so a streamed body or res:sse
-- arrives piece by piece. zlib's state per compressed response: 256 KiB
-- (window 32 KiB) plus a 16 KiB buffer, less for a small whole body;
-- released when the response ends.
--
-- rill.middleware.decompress([opts]): request bodies sent with
-- Content-Encoding gzip or deflate are read decoded (req.body, req:json,
-- req:form, req:parts), as Express's body-parser does with inflate = true.
--
--   app:use(rill.middleware.decompress{limit = 16 * 1024 * 1024})
--
-- opts.limit: bytes the decoded body may reach (default 16 MiB); a read past
--   it fails with "too large" and the request is answered 413 whatever the
--   handler sends (so a small bomb never grows memory: the body is inflated
--   as it is read, a buffer at a time).
--
-- A coding other than gzip, x-gzip, deflate or identity (or more than one
-- coding) is answered 415 with Accept-Encoding: gzip, deflate (RFC 7694).
-- Corrupt or truncated compressed data fails the read with zlib's reason
-- ("incorrect header check", "truncated compressed data", ...) and the
-- request is answered 400. req.headers still show the
-- request as sent (Content-Encoding, Content-Length of the compressed body).
--
-- Without the middleware a body is given as sent; req:decompress([opts])
-- does the same for one request.
local find, lower, sub, tonumber, tostring, type =
  string.find, string.lower, string.sub, tonumber, tostring, type

local M = {}

M.DEFAULT_TYPES = {"text/*", "application/json", "application/javascript",
  "application/x-javascript", "application/ecmascript", "application/xml",
  "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
  "application/wasm", "application/x-www-form-urlencoded", "+json", "+xml",
  "image/svg+xml", "image/x-icon", "image/bmp", "font/ttf", "font/otf"}

-- The coding to use for an Accept-Encoding value: "gzip", "deflate", or nil.
function M.negotiate(accept)
  if type(accept) == "table" then accept = table.concat(accept, ",") end
  if type(accept) ~= "string" then return nil end
  local q = {}
  for item in accept:gmatch("[^,]+") do
    local name, params = item:match("^%s*([^;%s]+)%s*(.*)$")
    if name then
      name = lower(name)
      local v = 1
      local qs = params:match(";%s*[qQ]%s*=%s*([%d.]+)")
      if qs then v = tonumber(qs) or 0 end
      if name == "x-gzip" then name = "gzip" end
      if q[name] == nil or v > q[name] then q[name] = v end
    end
  end
  local star = q["*"]
  local function of(name)
    local v = q[name]
    if v == nil then v = star or 0 end
    return v
  end
  -- identity, when not named (nor by "*"), ranks with the least liked
  -- coding named (as Express's negotiator ranks it): "gzip;q=0.8" alone
  -- still means gzip.
  local identity = q.identity or star
  if identity == nil then
    identity = 1
    for _, v in pairs(q) do
      if v < identity then identity = v end
    end
  end
  local best, bq = nil, 0
  for _, name in ipairs({"gzip", "deflate"}) do
    local v = of(name)
    if v > bq then best, bq = name, v end
  end
  if best and bq >= identity then return best end
  return nil
end

-- A matcher for a list of types: exact, "type/*", "+suffix".
local function matcher(types)
  local exact, prefix, suffix = {}, {}, {}
  for i, t in ipairs(types) do
    if type(t) ~= "string" or t == "" then
      error("rill.middleware.compress: types[" .. i .. "] must be a media type, got " ..
        tostring(t), 3)
    end
    t = lower(t)
    if sub(t, 1, 1) == "+" then
      suffix[#suffix + 1] = t
    elseif sub(t, -2) == "/*" then
      prefix[#prefix + 1] = sub(t, 1, -2)
    else
      exact[t] = true
    end
  end
  return function(ctype)
    local t = lower(ctype:match("^%s*([^;%s]+)") or "")
    if exact[t] then return true end
    for i = 1, #prefix do
      if sub(t, 1, #prefix[i]) == prefix[i] then return true end
    end
    for i = 1, #suffix do
      if sub(t, -#suffix[i]) == suffix[i] then return true end
    end
    return false
  end
end

local function drop_header(res, lname)
  local h = res._h
  for i = #h - 1, 1, -2 do
    if lower(h[i]) == lname then
      table.remove(h, i + 1)
      table.remove(h, i)
    end
  end
end

local function add_vary(res)
  local vary = res:header("Vary")
  if vary == nil then
    res:header("Vary", "Accept-Encoding")
    return
  end
  local l = lower(vary)
  if l == "*" or find(l, "accept%-encoding") then return end
  res:header("Vary", vary .. ", Accept-Encoding")
end

-- Called by rill.http just before the head of a response goes (res._zip is
-- the middleware's settings): decides, sets the headers, and turns the
-- compressor on. len: the whole body's size when known.
function M._head(res, len)
  local cfg, enc = res._zip, res._zip_enc
  res._zip = nil
  local status = res._status
  if status < 200 or status == 204 or status == 206 or status == 304 then return end
  if res:header("Content-Encoding") ~= nil or res:header("Content-Range") ~= nil then return end
  local cc = res:header("Cache-Control")
  if cc and find(lower(cc), "no-transform", 1, true) then return end
  local ctype = res:header("Content-Type")
  if type(ctype) ~= "string" or not cfg.match(ctype) then return end
  if len == nil then len = tonumber(res:header("Content-Length")) end
  if len and len < cfg.min_size then return end
  add_vary(res)
  if not enc then return end
  res:header("Content-Encoding", enc)
  drop_header(res, "content-length")
  local etag = res:header("ETag")
  if type(etag) == "string" and sub(etag, 1, 1) == '"' then res:header("ETag", "W/" .. etag) end
  res._c:_compress(res._g, enc, cfg.level)
  -- The body is transformed: a file's bytes go through res:write (the
  -- compressor), not sendfile (rill.http's res:write_file checks this).
  res._transform = enc
end

function M.compress(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("rill.middleware.compress: opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  local level = opts.level or 6
  if type(level) ~= "number" or level % 1 ~= 0 or level < 1 or level > 9 then
    error("rill.middleware.compress: level must be an integer 1-9, got " .. tostring(level), 2)
  end
  local min_size = opts.min_size or 1024
  if type(min_size) ~= "number" or min_size < 0 then
    error("rill.middleware.compress: min_size must be a byte count, got " ..
      tostring(min_size), 2)
  end
  local types = opts.types or M.DEFAULT_TYPES
  if type(types) ~= "table" then
    error("rill.middleware.compress: types must be a list of media types, got " ..
      tostring(types), 2)
  end
  local cfg = {level = level, min_size = min_size, match = matcher(types)}
  return function(req, res, next)
    if not res.headers_sent then
      res._zip = cfg
      res._zip_enc = M.negotiate(req.headers["accept-encoding"])
    end
    return next()
  end
end
M.DEFAULT_DECODED_LIMIT = 16 * 1024 * 1024

local FORMATS = {gzip = "gzip", ["x-gzip"] = "gzip", deflate = "deflate", identity = false}

local function check_limit(limit, fname, level)
  if limit == nil then return M.DEFAULT_DECODED_LIMIT end
  if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
    error(fname .. ": limit must be a byte count (at least 1), got " .. tostring(limit), level + 1)
  end
  return limit
end

-- req:decompress([opts]) → true (req.body is the decoded body from now on),
-- or nil, "unsupported content encoding: ..." (the request is not changed).
function M._decompress_request(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("req:decompress: opts must be a table, got " .. type(opts), 2)
  end
  local limit = check_limit(opts and opts.limit, "req:decompress", 2)
  local ce = req.headers["content-encoding"]
  if ce == nil then return true end
  if type(ce) == "table" then ce = table.concat(ce, ",") end
  local coding = ce:lower():match("^%s*([^,%s]+)%s*$")
  local format = coding and FORMATS[coding]
  if format == nil then return nil, "unsupported content encoding: " .. ce end
  if format == false then return true end -- identity
  if rawget(req, "_decoded") then return true end
  if rawget(req, "body") ~= nil then
    error("req:decompress: the body stream was taken already", 2)
  end
  local h = req.headers
  if h["transfer-encoding"] == nil and (h["content-length"] == nil or h["content-length"] == "0") then
    return true -- no body to decode
  end
  rawset(req, "body", req._c:_inflate(req._g, format, limit))
  rawset(req, "_decoded", true)
  return true
end

function M.decompress(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("rill.middleware.decompress: opts must be a table, got " .. type(opts), 2)
  end
  local limit = check_limit(opts and opts.limit, "rill.middleware.decompress", 2)
  local o = {limit = limit}
  return function(req, res, next)
    if req.headers["content-encoding"] ~= nil then
      local ok, err = M._decompress_request(req, o)
      if not ok then
        res:status(415):header("Content-Type", "text/plain")
          :header("Accept-Encoding", "gzip, deflate")
        return res:send(err .. "\n")
      end
    end
    return next()
  end
end

return M
