-- Forms over the request body: req:form() for urlencoded bodies, and
-- req:parts() for multipart/form-data, whose parts are streams pulled from
-- the body (the parsing is C's: core/multipart.c). rill.http's Request
-- methods call these.
--
--   for part, err, status in req:parts() do
--     if not part then return res:status(status or 400):send(err) end
--     if part.filename then ... part:read_some() ... else local v = part:value() end
--   end
local core = require "rill.core"

local byte, find, format, gsub, lower, sub, type, tostring = string.byte, string.find,
  string.format, string.gsub, string.lower, string.sub, type, tostring
local setmetatable = setmetatable

local form = {}

form.FORM_LIMIT = 1048576       -- bytes of an urlencoded body (req:form)
form.MAX_PARTS = 1000           -- parts of a multipart body
form.MAX_HEADER_BYTES = 16384   -- bytes of one part's header section
form.MAX_FIELD_BYTES = 1048576  -- bytes part:value() reads

local TOKEN = "^([A-Za-z0-9!#$%%&'*+%-.^_`|~]+)"

-- Parses a media type with parameters (RFC 9110 5.6.6, 8.3.1): "Type/Sub;
-- a=b; c=\"d\"" → "type/sub", {a = "b", c = "d"} (names in lower case), or
-- nil. Values that are neither a token nor a quoted string are taken up to
-- the next ";", as browsers send them.
function form.parse_params(s)
  if type(s) ~= "string" then return nil end
  local _, e, value = find(s, "^[ \t]*([^;]*)")
  value = lower(gsub(value, "[ \t]+$", ""))
  local params, i, n = {}, e + 1, #s
  while i <= n do
    local _, pe = find(s, "^[ \t]*;[ \t]*", i)
    if not pe then return nil end
    i = pe + 1
    local _, ne, name = find(s, TOKEN, i)
    if not ne then
      if find(s, "^[ \t]*$", i) then break end -- a ";" at the end
      return nil
    end
    i = ne + 1
    if byte(s, i) ~= 61 then return nil end -- "="
    i = i + 1
    local v
    if byte(s, i) == 34 then -- a quoted string, with \-escapes
      local parts, j = {}, i + 1
      while true do
        local q = find(s, '["\\]', j)
        if not q then return nil end
        parts[#parts + 1] = sub(s, j, q - 1)
        if byte(s, q) == 34 then
          i = q + 1
          break
        end
        parts[#parts + 1] = sub(s, q + 1, q + 1)
        j = q + 2
      end
      v = table.concat(parts)
    else
      local _, ve
      _, ve, v = find(s, "^([^;]*)", i)
      v = gsub(v, "[ \t]+$", "")
      i = ve + 1
    end
    params[lower(name)] = v
  end
  return value, params
end

-- The HTTP status an error message answers to (400 broken, 413 over a
-- limit, 408 too slow), or nil.
local function status_of(err)
  if type(err) ~= "string" then return nil end
  if find(err, "^too large") or find(err, "^body too large") then return 413 end
  if find(err, "^timeout") then return 408 end
  if find(err, "^bad ") or find(err, "^protocol error") or find(err, "chunk") then
    return 400
  end
  return nil
end
form.status_of = status_of

local function content_type(req)
  local ct = req.headers["content-type"]
  if type(ct) ~= "string" then return nil, nil, ct end
  local mt, params = form.parse_params(ct)
  return mt, params, ct
end

local function wrong_type(ct, want)
  local quote = require("rill.http").quote
  return nil, format("unsupported media type: %s, not %s",
    ct and quote(type(ct) == "table" and table.concat(ct, ", ") or ct) or "none", want), 415
end

-- req:form([limit]) → a table as req.query (repeated keys give arrays), or
-- nil, err, status: 415 for another Content-Type, 413 past limit bytes
-- (default 1 MiB), 400 for a bad %-escape, or the body's own error.
function form.form(req, limit)
  local cached = req._form
  if cached then return cached end
  limit = limit or form.FORM_LIMIT
  if type(limit) ~= "number" or limit < 0 then
    error("req:form: limit must be a number of bytes, got " .. tostring(limit), 2)
  end
  local mt, _, ct = content_type(req)
  if mt ~= "application/x-www-form-urlencoded" then
    return wrong_type(ct, "application/x-www-form-urlencoded")
  end
  local body, err = req.body:read_all(limit)
  if not body then
    if err == "too large" then
      return nil, format("too large: a form over %d bytes", limit), 413
    end
    return nil, err, status_of(err)
  end
  if find(gsub(body, "%%%x%x", ""), "%", 1, true) then
    return nil, "bad form: a % not followed by two hex digits", 400
  end
  local t = require("rill.http").parse_query(body)
  req._form = t
  return t
end

-- ---- parts ----

local S = core.stream_methods
local Part = {}
local forwarded = {}

-- A stream method of the part, called on its stream.
local function stream_method(k)
  local f = forwarded[k]
  if f == nil then
    local m = S[k]
    if type(m) ~= "function" then return nil end
    f = function(self, ...) return m(self.stream, ...) end
    forwarded[k] = f
  end
  return f
end

local part_mt = {
  __name = "rill.multipart.part",
  __index = function(_, k) return Part[k] or stream_method(k) end,
  __tostring = function(p)
    return format("rill.multipart.part: name=%q filename=%s", p.name or "",
      p.filename and format("%q", p.filename) or "none")
  end,
}

-- part:value([limit]) → the part's data as a string, or nil, err, status:
-- 413 past limit bytes (default: the max_field_bytes of req:parts, 1 MiB).
function Part:value(limit)
  limit = limit or self._max_field
  local v, err, partial = self.stream:read_all(limit)
  if v then return v end
  if err == "too large" then
    return nil, format("too large: field %q over %d bytes", self.name or "", limit), 413
  end
  return nil, err, status_of(err), partial
end

local function new_part(s, raw, opts)
  local http = require("rill.http")
  local h = setmetatable({}, http.Headers)
  for i = 1, #raw, 2 do http._add_value(h, lower(raw[i]), raw[i + 1]) end
  local cd = h["content-disposition"]
  local disp, params = form.parse_params(type(cd) == "string" and cd or nil)
  if disp ~= "form-data" or type(params.name) ~= "string" then return nil end
  return setmetatable({
    name = params.name,
    filename = params.filename,
    content_type = type(h["content-type"]) == "string" and h["content-type"] or "text/plain",
    headers = h,
    stream = s,
    _max_field = opts.max_field_bytes or form.MAX_FIELD_BYTES,
  }, part_mt)
end

local function check_opt(opts, k, def)
  local v = opts[k]
  if v == nil then return def end
  if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then
    error(format("req:parts: %s must be a non-negative integer, got %s", k, tostring(v)), 3)
  end
  return v
end

-- req:parts([opts]) → an iterator over the parts of a multipart/form-data
-- body, in order. Each call gives the next part (the rest of the one before
-- is read and dropped), nil after the last, or false, err, status once on a
-- failure: 415 for another Content-Type, 400 for a broken body, 413 over a
-- limit. opts: max_parts (1000), max_header_bytes (16384, per part),
-- max_field_bytes (1 MiB, part:value()'s default limit).
function form.parts(req, opts)
  opts = opts or {}
  if type(opts) ~= "table" then
    error("req:parts: opts must be a table, got " .. type(opts), 2)
  end
  if req._parts then error("req:parts: called a second time for one request", 2) end
  local max_parts = check_opt(opts, "max_parts", form.MAX_PARTS)
  local max_header = check_opt(opts, "max_header_bytes", form.MAX_HEADER_BYTES)
  check_opt(opts, "max_field_bytes", form.MAX_FIELD_BYTES)
  req._parts = true
  local mp, done
  local function failed(err, status)
    done = true
    if mp then mp:close() end
    return false, err, status
  end
  return function()
    if done then return nil end
    if not mp then
      local mt, params, ct = content_type(req)
      if mt ~= "multipart/form-data" then
        return failed(select(2, wrong_type(ct, "multipart/form-data")), 415)
      end
      if not params.boundary then
        return failed("bad multipart: no boundary in the Content-Type", 400)
      end
      local err, status
      mp, err, status = core.multipart(req.body, params.boundary, max_parts, max_header)
      if not mp then return failed(err, status) end
    end
    local s, raw, status = mp:next()
    if not s then
      if raw then return failed(raw, status or status_of(raw)) end
      done = true
      mp:close()
      return nil
    end
    local part = new_part(s, raw, opts)
    if not part then
      return failed("bad multipart: a part without Content-Disposition: form-data; name=...", 400)
    end
    return part
  end
end

return form
