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
local find, gsub, lower, sub, tonumber, tostring, type =
  string.find, string.gsub, string.lower, string.sub, tonumber, tostring, type

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
end

local function new(opts)
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

return setmetatable(M, {__call = function(_, opts) return new(opts) end})
