-- A client's cookie jar (RFC 6265 section 5): what Set-Cookie lines stored,
-- sent back to the requests they match by domain, path, Secure and expiry.
--
--   local jar = rill.http.cookie_jar()
--   rill.http.request{url = "http://127.0.0.1:8080/login", jar = jar, ...}
--   rill.http.request{url = "http://127.0.0.1:8080/me", jar = jar}  -- sends the session
--
-- Kept in memory, per jar; nothing is written to disk. Public suffixes are
-- not known: a Domain attribute is accepted when the request's host is in
-- it and it has a dot (so "com" is refused, "co.uk" is not).
local rill = require "rill"

local find, floor, lower, sort, sub, tonumber, type = string.find, math.floor, string.lower,
  table.sort, string.sub, tonumber, type

local jar = {}

jar.MAX_COOKIES = 3000 -- per jar; the oldest go first
jar.MAX_BYTES = 4096   -- name and value of one cookie

local MONTHS = {jan = 1, feb = 2, mar = 3, apr = 4, may = 5, jun = 6, jul = 7, aug = 8,
  sep = 9, oct = 10, nov = 11, dec = 12}

-- Days since 1970-01-01 of a civil date (proleptic Gregorian).
local function days(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = (m + 9) % 12
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- An HTTP date ("Thu, 01 Jan 1970 00:00:00 GMT", or the old dashed form) →
-- seconds since the epoch, or nil.
function jar.parse_date(s)
  local d, mon, y, h, mi, sec = s:match("(%d+)[ %-](%a%a%a)[ %-](%d+) (%d+):(%d+):(%d+)")
  local m = mon and MONTHS[lower(mon)]
  if not m then return nil end
  y = tonumber(y)
  if y < 100 then y = y + (y < 70 and 2000 or 1900) end
  return days(y, m, tonumber(d)) * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- "scheme://host:port/path?q" → scheme, host (lower case), path.
local function split(url)
  local scheme, authority, path = tostring(url):match("^(%a+)://([^/?#]*)([^?#]*)")
  if not scheme then return nil end
  authority = authority:gsub("^.*@", "")
  local host = authority:match("^%[(.+)%]") or authority:match("^([^:]*)")
  return lower(scheme), lower(host), path == "" and "/" or path
end

local function is_ip(host)
  return find(host, "^%d+%.%d+%.%d+%.%d+$") ~= nil or find(host, ":", 1, true) ~= nil
end

-- RFC 6265 5.1.3
local function domain_match(host, domain)
  if host == domain then return true end
  return not is_ip(host) and #host > #domain and sub(host, -#domain - 1) == "." .. domain
end

-- RFC 6265 5.1.4
local function path_match(path, cpath)
  if path == cpath then return true end
  if sub(path, 1, #cpath) ~= cpath then return false end
  return sub(cpath, -1) == "/" or sub(path, #cpath + 1, #cpath + 1) == "/"
end

local function default_path(path)
  if sub(path, 1, 1) ~= "/" then return "/" end
  local dir = path:match("^(.*)/[^/]*$")
  return (dir == nil or dir == "") and "/" or dir
end

local Jar = {}
Jar.__index = Jar
Jar.__name = "rill.http.cookie_jar"

-- Stores one Set-Cookie line received from url.
local function store_line(self, scheme, host, path, line)
  local name, value, attrs = line:match("^%s*([^=;]-)%s*=%s*([^;]*)(.*)$")
  if not name or name == "" or #name + #value > jar.MAX_BYTES then return end
  value = value:match("^(.-)%s*$")
  local c = {name = name, value = value, host_only = true, domain = host,
    path = default_path(path), secure = false, expires = nil}
  local now = rill.time()
  for attr in attrs:gmatch(";%s*([^;]*)") do
    local k, v = attr:match("^([^=]-)%s*=%s*(.-)%s*$")
    k = lower(k or attr:match("^(.-)%s*$"))
    if k == "max-age" then
      local n = tonumber(v)
      if n then c.expires = now + n; c.max_age = true end
    elseif k == "expires" and v and not c.max_age then
      local t = jar.parse_date(v)
      if t then c.expires = t end
    elseif k == "domain" and v and v ~= "" then
      local d = lower(v:gsub("^%.", ""))
      -- a host may set a cookie for a domain it is in, never for another
      -- one, nor for a name with no dot in it
      if not domain_match(host, d) or not find(d, ".", 1, true) then return end
      c.domain, c.host_only = d, is_ip(host) and d == host
    elseif k == "path" and v and sub(v, 1, 1) == "/" then
      c.path = v
    elseif k == "secure" then
      c.secure = true
    end
  end
  if c.secure and scheme ~= "https" then return end -- RFC 6265bis: not from plain http
  local key = c.domain .. ";" .. c.path .. ";" .. name
  local list = self.list
  local old = self.by_key[key]
  if old then
    for i = 1, #list do
      if list[i] == old then table.remove(list, i) break end
    end
    self.by_key[key] = nil
  end
  if c.expires and c.expires <= now then return end -- a deletion
  c.key, c.created = key, old and old.created or now
  self.seq = self.seq + 1
  c.seq = old and old.seq or self.seq
  list[#list + 1] = c
  self.by_key[key] = c
  while #list > jar.MAX_COOKIES do
    self.by_key[list[1].key] = nil
    table.remove(list, 1)
  end
end

-- jar:store(url, lines): keeps the cookies of Set-Cookie values (a string
-- or a list of them) received in the response to url.
function Jar:store(url, lines)
  local scheme, host, path = split(url)
  if not scheme then error("cookie_jar:store: bad URL " .. tostring(url), 2) end
  if type(lines) == "string" then lines = {lines} end
  for _, line in ipairs(lines) do store_line(self, scheme, host, path, line) end
end

-- jar:cookies(url) → the cookies to send to url, as a list of {name =,
-- value =, domain =, path =, secure =, expires = seconds or nil}, longest
-- path first (then oldest), as RFC 6265 5.4 orders them.
function Jar:cookies(url)
  local scheme, host, path = split(url)
  if not scheme then error("cookie_jar:cookies: bad URL " .. tostring(url), 2) end
  local now, out, live = rill.time(), {}, {}
  for _, c in ipairs(self.list) do
    if not c.expires or c.expires > now then
      live[#live + 1] = c
      local dom = c.host_only and host == c.domain or not c.host_only and domain_match(host, c.domain)
      if dom and path_match(path, c.path) and (not c.secure or scheme == "https") then
        out[#out + 1] = c
      end
    else
      self.by_key[c.key] = nil
    end
  end
  self.list = live
  sort(out, function(a, b)
    if #a.path ~= #b.path then return #a.path > #b.path end
    return a.seq < b.seq
  end)
  return out
end

-- jar:header(url) → the Cookie header value for url, or nil.
function Jar:header(url)
  local list = self:cookies(url)
  if #list == 0 then return nil end
  local parts = {}
  for i, c in ipairs(list) do parts[i] = c.name .. "=" .. c.value end
  return table.concat(parts, "; ")
end

-- jar:get(name [, url]) → the value of the cookie named name (sent to url
-- if given), or nil.
function Jar:get(name, url)
  if url then
    for _, c in ipairs(self:cookies(url)) do
      if c.name == name then return c.value end
    end
    return nil
  end
  local now = rill.time()
  for i = #self.list, 1, -1 do
    local c = self.list[i]
    if c.name == name and (not c.expires or c.expires > now) then return c.value end
  end
  return nil
end

-- jar:clear(): forgets every cookie.
function Jar:clear()
  self.list, self.by_key = {}, {}
end

-- rill.http.cookie_jar() → an empty jar.
function jar.new()
  return setmetatable({list = {}, by_key = {}, seq = 0}, Jar)
end

return jar
