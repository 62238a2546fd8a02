-- The header arithmetic of a static file response, as pure functions (no
-- I/O, so each has its own spec): HTTP dates, entity tags, the RFC 9110
-- conditionals (If-Match, If-Unmodified-Since, If-None-Match,
-- If-Modified-Since, If-Range), Range, and Accept-Encoding.
local byte, concat, find, format, gmatch, lower, match, tonumber, type, floor =
  string.byte, table.concat, string.find, string.format, string.gmatch, string.lower,
  string.match, tonumber, type, math.floor

local M = {}

-- A repeated header arrives as an array of its values: one list again.
local function joined(h)
  if type(h) == "table" then return concat(h, ", ") end
  return h
end

-- ---- dates (IMF-fixdate, RFC 9110 5.6.7) ----

local DAYS = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
local MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
  "Dec"}
local MONTH_NO = {}
for i, m in ipairs(MONTHS) do MONTH_NO[lower(m)] = i end

-- Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
-- days_from_civil): no time zone, no os.time.
local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- The inverse: year, month, day of a day number.
local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- Dates already formatted: a file's mtime is asked for again and again.
local date_cache, date_cached = {}, 0

-- The IMF-fixdate of t, whole seconds since the epoch ("Sun, 06 Nov 1994
-- 08:49:37 GMT").
function M.http_date(t)
  t = floor(t)
  local s = date_cache[t]
  if s then return s end
  local days = floor(t / 86400)
  local secs = t - days * 86400
  local y, m, d = civil_from_days(days)
  s = format("%s, %02d %s %04d %02d:%02d:%02d GMT", DAYS[(days + 4) % 7 + 1], d, MONTHS[m], y,
    floor(secs / 3600), floor(secs / 60) % 60, secs % 60)
  if date_cached >= 1024 then date_cache, date_cached = {}, 0 end
  date_cache[t] = s
  date_cached = date_cached + 1
  return s
end

local function to_epoch(y, mon, d, hh, mm, ss)
  local m = MONTH_NO[lower(mon)]
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

-- Seconds since the epoch of an HTTP-date in any of the three forms a
-- recipient must accept (IMF-fixdate, RFC 850, asctime), or nil.
function M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  -- Sun, 06 Nov 1994 08:49:37 GMT
  local d, mon, y, hh, mm, ss = match(s,
    "^%s*%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then return to_epoch(y, mon, d, hh, mm, ss) end
  -- Sunday, 06-Nov-94 08:49:37 GMT (a two-digit year: the nearest century
  -- that is not more than 50 years ahead; 1970-2069 is close enough here)
  d, mon, y, hh, mm, ss = match(s,
    "^%s*%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT%s*$")
  if d then
    y = tonumber(y)
    return to_epoch(y < 70 and 2000 + y or 1900 + y, mon, d, hh, mm, ss)
  end
  -- Sun Nov  6 08:49:37 1994
  mon, d, hh, mm, ss, y = match(s,
    "^%s*%a%a%a (%a%a%a) ([ %d]%d) (%d%d):(%d%d):(%d%d) (%d%d%d%d)%s*$")
  if mon then return to_epoch(y, mon, match(d, "%d+"), hh, mm, ss) end
  return nil
end

-- ---- entity tags ----

-- A strong ETag from what changes when a file does: its size, its mtime in
-- milliseconds and its inode (a file replaced by rename gets a new one):
-- "<hex size>-<hex mtime ms>-<hex inode>".
function M.etag(st)
  return format('"%x-%x-%x"', st.size, floor(st.mtime * 1000), st.ino or 0)
end

-- Whether a list of entity-tags (If-Match, If-None-Match) names etag (a
-- strong tag, as M.etag makes): weak comparison ignores W/ on theirs; strong
-- comparison takes no weak tag. "*" is for the caller (it means "any").
function M.etag_matches(h, etag, weak)
  h = joined(h)
  for w, tag in gmatch(h, '(W?/?)("[^"]*")') do
    if tag == etag and (weak or w == "") then return true end
  end
  return false
end

local function is_star(h)
  return find(joined(h), "^%s*%*%s*$") ~= nil
end

-- The answer the conditionals of a request call for, before its Range is
-- looked at (RFC 9110 13.2.2): 412, 304, or nil (go on). h the request's
-- headers (lower-case keys), method its method, etag and mtime (whole
-- seconds) the file's, either nil when not used (then the conditionals on
-- it never hold). Only called for a file that exists.
function M.precondition(h, method, etag, mtime)
  local im = h["if-match"]
  if im then
    if not (is_star(im) or M.etag_matches(im, etag, false)) then return 412 end
  else
    local ius = mtime and M.parse_http_date(joined(h["if-unmodified-since"]))
    if ius and mtime > ius then return 412 end
  end
  local inm = h["if-none-match"]
  local safe = method == "GET" or method == "HEAD"
  if inm then
    if is_star(inm) or M.etag_matches(inm, etag, true) then return safe and 304 or 412 end
  elseif safe then
    local ims = mtime and M.parse_http_date(joined(h["if-modified-since"]))
    if ims and mtime <= ims then return 304 end
  end
  return nil
end

-- Whether If-Range (an entity-tag, compared strongly, or an HTTP-date that
-- must equal the file's mtime) still holds, so that the Range applies.
function M.if_range_holds(v, etag, mtime)
  if v == nil then return true end
  if type(v) == "table" then return false end -- a repeated If-Range: no Range
  local first = byte(v, find(v, "%S") or 1)
  if first == 34 or first == 87 then -- '"' or 'W'
    return etag ~= nil and match(v, '^%s*("[^"]*")%s*$') == etag
  end
  local t = M.parse_http_date(v)
  return t ~= nil and mtime ~= nil and t == mtime
end

-- ---- Range ----

-- The ranges of a Range header for a representation of size bytes
-- (RFC 9110 14.1.2): a list of {first, last} (inclusive, clamped to the
-- size, in the order asked), the string "unsatisfiable" (416), or nil: no
-- Range at all, another unit, a malformed header, more than max_ranges
-- ranges, or ranges that add up past the size (overlaps: nginx's rule) —
-- then the whole representation is sent (200), as the RFC allows.
function M.parse_range(h, size, max_ranges)
  if type(h) ~= "string" or size == 0 then return nil end
  local spec = match(h, "^%s*[Bb][Yy][Tt][Ee][Ss]%s*=(.*)$")
  if not spec then return nil end
  local ranges, n, count, total = {}, 0, 0, 0
  for part in gmatch(spec, "[^,]+") do
    if find(part, "%S") then
      local a, b = match(part, "^%s*(%d*)%s*%-%s*(%d*)%s*$")
      if not a or (a == "" and b == "") or #a > 15 or #b > 15 then return nil end
      count = count + 1
      if count > max_ranges then return nil end
      local first, last
      if a == "" then -- the last b bytes
        local len = tonumber(b)
        if len > 0 then
          first, last = len < size and size - len or 0, size - 1
        end
      else
        first = tonumber(a)
        last = b == "" and first or tonumber(b)
        if last < first then return nil end
        if first >= size then
          first = nil
        elseif b == "" or last >= size then
          last = size - 1
        end
      end
      if first then
        n = n + 1
        ranges[n] = {first, last}
        total = total + (last - first + 1)
      end
    end
  end
  if count == 0 then return nil end
  if n == 0 then return "unsatisfiable" end
  if n > 1 and total > size then return nil end
  return ranges
end

-- ---- Accept-Encoding ----

-- Whether Accept-Encoding h accepts coding (lower-case: "gzip", "br"): named
-- with q > 0, or not named and "*" with q > 0. No header: no.
function M.accepts(h, coding)
  if h == nil then return false end
  local star = false
  for item in gmatch(joined(h), "[^,]+") do
    local name, params = match(item, "^%s*([^;%s]+)%s*(.*)$")
    if name then
      name = lower(name)
      local q = 1
      local qs = match(params, ";%s*[qQ]%s*=%s*([%d.]+)")
      if qs then q = tonumber(qs) or 0 end
      if name == coding or (coding == "gzip" and name == "x-gzip") then return q > 0 end
      if name == "*" then star = q > 0 end
    end
  end
  return star
end

return M
