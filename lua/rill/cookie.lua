-- Cookies (RFC 6265): the Cookie header parsed, Set-Cookie lines built and
-- checked, and values signed with HMAC-SHA256.
--
--   req.cookies.sid                                  -- parsed when first read
--   res:cookie("sid", id, {http_only = true, max_age = 3600})
--   res:clear_cookie("sid")
--   local signed = rill.cookie.sign(id, secret)      -- "id.<signature>"
--   local id, err = rill.cookie.verify(req.cookies.sid, {new_secret, old_secret})
--
-- Values are sent and read as they are, not encoded or decoded: a value
-- outside RFC 6265's cookie-octets (spaces, quotes, commas, semicolons,
-- backslashes, control and non-ASCII bytes) is refused; encode such values
-- first (base64url, percent-encoding).
local core = require "rill.core"
local bit = require "bit"

local band, bor, bxor, lshift, rshift = bit.band, bit.bor, bit.bxor, bit.lshift, bit.rshift
local byte, concat, find, floor, format, gsub, lower, match, sub = string.byte, table.concat,
  string.find, math.floor, string.format, string.gsub, string.lower, string.match, string.sub
local hmac, ipairs, pairs, tostring, type = core.hmac_sha256, ipairs, pairs, tostring, type

local cookie = {}

-- ---- the Cookie header ----

-- cookie.parse(header) → {name = value}: header is a Cookie header's value,
-- or a list of them (joined as one). Pairs are split at ";", blanks around
-- names and values dropped, a value in double quotes taken without them;
-- a pair without "=" or with an empty name is skipped. A name sent twice
-- keeps its first value: browsers send the cookie of the longest path first.
function cookie.parse(header)
  local t = {}
  if type(header) == "table" then header = concat(header, ";") end
  if type(header) ~= "string" then return t end
  for pair in header:gmatch("[^;]+") do
    local name, value = match(pair, "^[ \t]*([^=]-)[ \t]*=[ \t]*(.-)[ \t]*$")
    if name and name ~= "" and t[name] == nil then
      if #value >= 2 and byte(value, 1) == 34 and byte(value, -1) == 34 then
        value = sub(value, 2, -2)
      end
      t[name] = value
    end
  end
  return t
end

-- ---- Set-Cookie ----

-- A cookie name is a token; a value is cookie-octets, possibly in double
-- quotes (RFC 6265 4.1.1). Classes spelled out: %w would follow the locale.
local function is_name(s)
  return type(s) == "string" and find(s, "^[A-Za-z0-9!#$%%&'*+%-.^_`|~]+$") ~= nil
end

-- cookie-octet: %x21 / %x23-2B / %x2D-3A / %x3C-5B / %x5D-7E; an escaped
-- character cannot end a range in a Lua class, hence "%-" and "%]" alone.
local OCTETS = "[!#-+%-.-:<-[%]^-~]*"
local VALUE = "^" .. OCTETS .. "$"
local QUOTED = '^"' .. OCTETS .. '"$'

local function is_value(s)
  return type(s) == "string" and (find(s, VALUE) ~= nil or find(s, QUOTED) ~= nil)
end

-- An attribute value (Path, or an Expires given as text): no control
-- bytes and no ";" (RFC 6265 4.1.1 path-value).
local function is_av(s)
  return type(s) == "string" and find(s, "^[ -:<-~]*$") ~= nil
end

-- A Domain: a host name, letters, digits, "-" and "." (an IDN in its
-- punycode form), a leading dot allowed (and ignored by browsers).
local function is_domain(s)
  return type(s) == "string" and find(s, "^%.?[A-Za-z0-9][A-Za-z0-9.-]*$") ~= nil
end

local function quote(s)
  if type(s) ~= "string" then return tostring(s) end
  return '"' .. gsub(s, '[%z\1-\31\127-\255"\\]', function(c)
    return format("\\%d", byte(c))
  end) .. '"'
end

local DAYS = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
local MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
  "Dec"}

-- An HTTP-date (RFC 9110 IMF-fixdate) for t seconds since the epoch,
-- spelled out here: os.date's %a and %b follow the process's locale.
local function http_date(t)
  local d = os.date("!*t", floor(t))
  return format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[d.wday], d.day, MONTHS[d.month],
    d.year, d.hour, d.min, d.sec)
end

local SAME_SITE = {strict = "Strict", lax = "Lax", none = "None"}
local OPTIONS = {path = true, domain = true, max_age = true, expires = true, secure = true,
  http_only = true, same_site = true, partitioned = true}

-- Raises "fname: what, got <got>" at level as error() counts it in the
-- caller of bad.
local function bad(fname, what, got, level)
  error(format("%s: %s, got %s", fname, what, quote(got)), level + 1)
end

-- The Set-Cookie value for name, value and opts, or raises naming the
-- argument at level, as error() counts it in the caller of serialize.
local function serialize(fname, name, value, opts, level)
  level = level + 1
  if not is_name(name) then
    bad(fname, "name must be a token (letters, digits and !#$%&'*+-.^_`|~)", name, level)
  end
  if not is_value(value) then
    bad(fname, "value must be cookie-octets (no spaces, quotes, commas, semicolons, " ..
      "backslashes, control or non-ASCII bytes; encode it first)", value, level)
  end
  if opts == nil then
    opts = {}
  elseif type(opts) ~= "table" then
    bad(fname, "opts must be a table", opts, level)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then error(fname .. ": unknown option " .. tostring(k), level) end
  end
  local parts = {name .. "=" .. value}
  local path = opts.path
  if path == nil then path = "/" end
  if path then
    if not is_av(path) then
      bad(fname, "path must be text without control bytes or ';'", path, level)
    end
    parts[#parts + 1] = "Path=" .. path
  end
  if opts.domain ~= nil then
    if not is_domain(opts.domain) then
      bad(fname, "domain must be a host name", opts.domain, level)
    end
    parts[#parts + 1] = "Domain=" .. opts.domain
  end
  local max_age = opts.max_age
  if max_age ~= nil then
    if type(max_age) ~= "number" or max_age ~= max_age or max_age == 1 / 0 or
        max_age == -1 / 0 then
      bad(fname, "max_age must be a number of seconds", max_age, level)
    end
    parts[#parts + 1] = format("Max-Age=%d", floor(max_age))
  end
  local expires = opts.expires
  if expires ~= nil then
    if type(expires) == "number" and expires == expires and expires > -1 / 0 and
        expires < 1 / 0 then
      parts[#parts + 1] = "Expires=" .. http_date(expires)
    elseif type(expires) == "string" and is_av(expires) then
      parts[#parts + 1] = "Expires=" .. expires
    else
      bad(fname, "expires must be seconds since the epoch (as rill.time() gives) or an " ..
        "HTTP-date", expires, level)
    end
  end
  if opts.secure then parts[#parts + 1] = "Secure" end
  if opts.http_only then parts[#parts + 1] = "HttpOnly" end
  local same_site = opts.same_site
  if same_site ~= nil and same_site ~= false then
    local v = type(same_site) == "string" and SAME_SITE[lower(same_site)]
    if not v then bad(fname, 'same_site must be "Strict", "Lax" or "None"', same_site, level) end
    if v == "None" and not opts.secure then
      error(fname .. ': same_site = "None" needs secure = true (browsers drop the cookie ' ..
        "otherwise)", level)
    end
    parts[#parts + 1] = "SameSite=" .. v
  end
  if opts.partitioned then
    if not opts.secure then
      error(fname .. ": partitioned needs secure = true (browsers drop the cookie otherwise)",
        level)
    end
    parts[#parts + 1] = "Partitioned"
  end
  return concat(parts, "; ")
end

-- cookie.serialize(name, value [, opts]) → a Set-Cookie header's value; see
-- res:cookie for opts.
function cookie.serialize(name, value, opts)
  return (serialize("rill.cookie.serialize", name, value, opts, 2))
end

-- Adds line as the response's Set-Cookie for name, replacing one this
-- response set before for the same name (RFC 6265 4.1.1: one per name).
local function set_line(res, name, line)
  local h = res._h
  local prefix = name .. "="
  for i = 1, #h, 2 do
    if lower(h[i]) == "set-cookie" and sub(h[i + 1], 1, #prefix) == prefix then
      h[i + 1] = line
      return res
    end
  end
  h[#h + 1] = "Set-Cookie"
  h[#h + 1] = line
  return res
end

-- res:cookie(name, value [, opts]) adds a Set-Cookie header and returns res.
-- opts: path (default "/"; false for none), domain, max_age (seconds, as
-- RFC 6265 counts it), expires (seconds since the epoch, or an HTTP-date),
-- secure, http_only, same_site ("Strict", "Lax" or "None", which needs
-- secure), partitioned (needs secure). Raises, naming the argument, for a
-- name that is not a token or a value that is not cookie-octets. Setting
-- the same name twice in one response keeps the last.
function cookie._set(res, name, value, opts)
  if res.headers_sent then error("res:cookie: the response head has been sent already", 2) end
  return set_line(res, name, serialize("res:cookie", name, value, opts, 2))
end

-- res:clear_cookie(name [, opts]) tells the client to drop the cookie: an
-- empty value, Max-Age=0 and an Expires in 1970. Give the path and domain
-- it was set with (path defaults to "/" as for res:cookie).
function cookie._clear(res, name, opts)
  if res.headers_sent then
    error("res:clear_cookie: the response head has been sent already", 2)
  end
  local o = {}
  if opts ~= nil then
    if type(opts) ~= "table" then bad("res:clear_cookie", "opts must be a table", opts, 2) end
    for k, v in pairs(opts) do o[k] = v end
  end
  o.max_age, o.expires = 0, 0
  return set_line(res, name, serialize("res:clear_cookie", name, "", o, 2))
end

-- ---- signed values ----

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local b64 = {}
for i = 1, 64 do b64[i - 1] = sub(B64, i, i) end

-- base64url without padding (RFC 4648 5).
local function base64url(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = byte(s, i, i + 2)
    local v = bor(lshift(a, 16), lshift(b or 0, 8), c or 0)
    out[#out + 1] = b64[rshift(v, 18)]
    out[#out + 1] = b64[band(rshift(v, 12), 63)]
    if b then out[#out + 1] = b64[band(rshift(v, 6), 63)] end
    if c then out[#out + 1] = b64[band(v, 63)] end
  end
  return concat(out)
end

local SIG_LEN = 43 -- 32 bytes in base64url

local function check_secret(fname, s, level)
  if type(s) ~= "string" or s == "" then
    bad(fname, "a secret must be a non-empty string", s, level + 1)
  end
end

-- cookie.sign(value, secret) → value .. "." .. its HMAC-SHA256 under secret
-- in base64url (43 characters). Use a secret of 32 random bytes or more.
function cookie.sign(value, secret)
  if type(value) ~= "string" then bad("rill.cookie.sign", "value must be a string", value, 2) end
  check_secret("rill.cookie.sign", secret, 2)
  return value .. "." .. base64url(hmac(secret, value))
end

-- Compares two strings of the same length in time that does not depend on
-- where they differ.
local function same(a, b)
  local diff = 0
  for i = 1, #a do diff = bor(diff, bxor(byte(a, i), byte(b, i))) end
  return diff == 0
end

-- cookie.verify(signed, secrets) → the value, or nil and "missing" (signed
-- is nil), "malformed" (no signature) or "bad signature". secrets is one
-- secret or a list: sign with the first, and keep older ones after it while
-- cookies signed with them are about (key rotation); any of them is accepted.
function cookie.verify(signed, secrets)
  if type(secrets) == "string" then secrets = {secrets} end
  if type(secrets) ~= "table" or secrets[1] == nil then
    bad("rill.cookie.verify", "secrets must be a secret or a list of them", secrets, 2)
  end
  for _, s in ipairs(secrets) do check_secret("rill.cookie.verify", s, 2) end
  if signed == nil then return nil, "missing" end
  if type(signed) ~= "string" then
    bad("rill.cookie.verify", "signed must be a string or nil", signed, 2)
  end
  local n = #signed
  if n <= SIG_LEN or byte(signed, n - SIG_LEN) ~= 46 then return nil, "malformed" end
  local value, sig = sub(signed, 1, n - SIG_LEN - 1), sub(signed, n - SIG_LEN + 1)
  local ok = false
  for _, s in ipairs(secrets) do
    -- every secret is tried, so the time taken does not say which matched
    if same(base64url(hmac(s, value)), sig) then ok = true end
  end
  if not ok then return nil, "bad signature" end
  return value
end

return cookie
