-- JSON through lua-cjson (Debian's lua-cjson 2.1.0), with limits for what
-- comes from clients, and the request and response helpers.
--
--   local json = rill.json
--   json.encode({ok = true, items = json.empty_array})  --> {"ok":true,"items":[]}
--   local v, err = json.decode(text)                     -- nil, "invalid json: ..." if bad
--   app:post("/todos", {json = true}, function(req, res)  -- 400 for a body that is not JSON
--     res:json({title = req:json().title}, 201)
--   end)
--
-- Decoded null is json.null. An empty table encodes as {} (cjson 2.1.0
-- cannot tell an empty array from an empty object); json.empty_array
-- encodes as []. Numbers are written with 14 significant digits, cjson
-- 2.1.0's most: integers beyond 10^14 lose their last digits, so send
-- large identifiers as strings.
local core = require "rill.core"

local find, format, gsub, lower, match = string.find, string.format, string.gsub,
  string.lower, string.match
local byte, concat, pcall, rawget, rawset, tostring, type = string.byte, table.concat, pcall,
  rawget, rawset, tostring, type

local DEFAULT_MAX_SIZE = 1048576 -- bytes, as read_all's default
local DEFAULT_MAX_DEPTH = 128    -- serde_json's recursion limit
local ENCODE_MAX_DEPTH = 1000    -- cjson's: past it, a table that holds itself

-- An instance of its own: settings apart from any cjson the app uses.
local cjson = require("cjson").new()
cjson.decode_invalid_numbers(false) -- strict JSON: no NaN, Infinity or hex
cjson.encode_sparse_array(true)     -- {[1000] = x} as an object, not an error
cjson.encode_max_depth(ENCODE_MAX_DEPTH)
cjson.decode_max_depth(DEFAULT_MAX_DEPTH)
local depth_now = DEFAULT_MAX_DEPTH -- the decode depth as last set
local c_encode, c_decode = cjson.encode, cjson.decode

local json = {}

-- The value cjson decodes null to, and encodes as null.
json.null = cjson.null

-- json.empty_array: a value that encodes as []. It is a string no client
-- can guess, made once per Lua state and kept in the registry, so that every
-- load of this module (a hot reload, a spec file) shares it; encode finds
-- it, quoted, in cjson's output.
local registry = debug.getregistry()
local EMPTY = registry["rill.json.empty_array"]
if not EMPTY then
  EMPTY = "rill_empty_array_" .. gsub(core.random(16), ".", function(c)
    return format("%02x", byte(c))
  end)
  registry["rill.json.empty_array"] = EMPTY
end
json.empty_array = EMPTY
local EMPTY_QUOTED = '"' .. EMPTY .. '"' -- no pattern magic in it

-- cjson 2.1.0 writes "/" as "\/"; every backslash in its output starts a
-- two-byte escape, so pairs are taken left to right and only "\/" changes.
local function unslash(c)
  if c == "/" then return "/" end
end

-- value as JSON text, or raises (at the caller of the caller) with what
-- cjson could not encode, prefixed by fname.
local function encode(value, fname)
  local ok, out = pcall(c_encode, value)
  if not ok then error(fname .. ": " .. tostring(out), 3) end
  if find(out, EMPTY_QUOTED, 1, true) then out = gsub(out, EMPTY_QUOTED, "[]") end
  if find(out, "\\/", 1, true) then out = gsub(out, "\\(.)", unslash) end
  return out
end

-- json.encode(value) → text. Tables with keys 1..n are arrays, other
-- tables objects (keys strings or numbers). Raises, naming the value, for
-- what JSON cannot hold: functions, userdata, NaN, infinities, nesting
-- past 1000 levels (a table that contains itself).
function json.encode(value)
  return (encode(value, "rill.json.encode"))
end

local function check_limit(fname, opts, key, default)
  local v = opts and opts[key]
  if v == nil then return default end
  if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then
    error(format("%s: %s must be a positive integer, got %s", fname, key, tostring(v)), 3)
  end
  return v
end

-- Decodes text with the depth and size given; nil and an error that starts
-- with a stable word if it is not JSON.
local function decode(text, max_size, max_depth)
  if #text > max_size then return nil, "too large" end
  if max_depth ~= depth_now then
    cjson.decode_max_depth(max_depth)
    depth_now = max_depth
  end
  local ok, v = pcall(c_decode, text)
  if ok then return v end
  v = tostring(v)
  if find(v, "^Found too many nested") then
    return nil, format("too deep: more than %d levels of nesting%s", max_depth,
      match(v, "( at character %d+)$") or "")
  end
  return nil, "invalid json: " .. v
end

-- json.decode(text [, {max_size = bytes, max_depth = levels}]) → value, or
-- nil and "too large" (text over max_size, default 1 MiB), "too deep: ..."
-- (arrays and objects nested past max_depth, default 128) or
-- "invalid json: ...". null decodes to json.null.
function json.decode(text, opts)
  if type(text) ~= "string" then
    error("rill.json.decode: text must be a string, got " .. type(text), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("rill.json.decode: opts must be a table, got " .. type(opts), 2)
  end
  return decode(text, check_limit("rill.json.decode", opts, "max_size", DEFAULT_MAX_SIZE),
    check_limit("rill.json.decode", opts, "max_depth", DEFAULT_MAX_DEPTH))
end

-- True for application/json and application/*+json, whatever parameters.
local function is_json_type(ctype)
  if type(ctype) ~= "string" then return false end
  local mime = lower(match(ctype, "^[ \t]*([^; \t]*)"))
  return mime == "application/json" or find(mime, "^application/[^/]+%+json$") ~= nil
end

-- req:json([limit]) → the body decoded, or nil and an error. The body must
-- say Content-Type: application/json (or application/*+json): a form or a
-- text/plain body is refused with "unsupported media type: ...", so that a
-- cross-site form cannot post JSON without a CORS preflight. limit (bytes,
-- default 1 MiB) bounds the body ("too large" past it); its nesting is bounded
-- as json.decode's. The body is read once; later calls return the same value.
-- Reached from rill.http's Request:json by a tail call: level 2 is the caller.
function json._read_request(req, limit)
  local cached = rawget(req, "_json")
  if cached ~= nil then return cached end
  local failed = rawget(req, "_json_err")
  if failed then return nil, failed end
  if limit ~= nil and (type(limit) ~= "number" or limit < 0 or limit % 1 ~= 0) then
    error("req:json: limit must be a byte count, got " .. tostring(limit), 2)
  end
  limit = limit or DEFAULT_MAX_SIZE
  local ctype = req.headers["content-type"]
  if not is_json_type(ctype) then
    if type(ctype) == "table" then ctype = concat(ctype, ", ") end
    return nil, "unsupported media type: " .. (ctype and ("%q"):format(ctype) or "none")
  end
  local text, err = req.body:read_all(limit)
  local v
  if text then v, err = decode(text, limit, DEFAULT_MAX_DEPTH) end
  if v == nil then
    rawset(req, "_json_err", err)
    return nil, err
  end
  rawset(req, "_json", v)
  return v
end

-- res:json(value [, status]) sends value encoded, with Content-Type
-- application/json unless a Content-Type was set. Reached from rill.http's
-- Response:json by a tail call.
function json._respond(res, value, status)
  if status ~= nil and (type(status) ~= "number" or status % 1 ~= 0 or status < 100 or
      status > 999) then
    error("res:json: status must be an integer 100-999, got " .. tostring(status), 2)
  end
  local body = encode(value, "res:json")
  if status then res:status(status) end
  if res:header("Content-Type") == nil then res:header("Content-Type", "application/json") end
  return res:send(body)
end

-- The router's {json = true | {limit = bytes}} option: fn runs only once the
-- body has decoded (req:json() then returns it); otherwise the client gets
-- 415 (not JSON's media type), 413 (over the limit) or 400 (not JSON), with
-- {"error": reason}.
function json._route(fn, opt)
  local limit
  if type(opt) == "table" then
    limit = opt.limit
    if limit ~= nil and (type(limit) ~= "number" or limit < 0 or limit % 1 ~= 0) then
      error("route option json.limit must be a byte count, got " .. tostring(limit), 3)
    end
  elseif opt ~= true then
    error("route option json must be true or {limit = bytes}, got " .. tostring(opt), 3)
  end
  return function(req, res)
    local v, err = req:json(limit)
    if v ~= nil then return fn(req, res) end
    local status = err == "too large" and 413 or
      (find(err, "^unsupported media type") and 415) or 400
    res:status(status)
    res:header("Content-Type", "application/json")
    return res:send(json.encode({error = err}))
  end
end

return json
