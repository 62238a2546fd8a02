-- rill.middleware.logger([opts]): one access-log line per request, written
-- when its response is over (res:on_finish).
--
--   app:use(rill.middleware.logger())                       -- combined, to stderr
--   app:use(rill.middleware.logger{format = "common", output = "/var/log/app.log"})
--
-- opts.format: "combined" (default), "common", or function(info) → line (a
--   string without its "\n"; nil skips the request). info has remote_addr,
--   method, target, version, status, bytes, ms, time (seconds since the
--   epoch when the request came), user (req.user, set by basic_auth),
--   referer, user_agent, request_id (req.id, set by request_id), and req.
-- opts.output: where lines go: nil (stderr), a file name (opened to append),
--   a file handle (anything with :write), or function(line), called with
--   each line as it is made.
-- opts.buffer: bytes gathered before a write (default 4096; 0: each line at
--   once). opts.flush: the most ms a line waits in the buffer (default 1000).
--
-- Lines are gathered and written to the file or stderr with one write(2)
-- when the buffer is full or flush ms after its first line, and when the
-- worker's Lua state closes (a graceful stop, a reload that drops this
-- logger). Each write holds whole lines and is at most `buffer` bytes, so
-- lines of several workers never mix (a pipe takes 4096 bytes at once). The
-- write itself is an ordinary blocking one: to a file or a terminal it takes
-- microseconds, but a stderr pipe whose reader stops blocks the worker
-- until it reads again.
local rill = require "rill"
local core = require "rill.core"

local format, byte, gsub, floor, date, type, tostring, rawget =
  string.format, string.byte, string.gsub, math.floor, os.date, type, tostring, rawget
local concat = table.concat

local MONTHS = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

-- [10/Oct/2026:13:55:36 +0000], in UTC (the month's name not from the locale).
local function clf_time(t)
  local d = date("!*t", floor(t))
  return format("%02d/%s/%04d:%02d:%02d:%02d +0000", d.day, MONTHS[d.month], d.year, d.hour,
    d.min, d.sec)
end

-- A value in a log line: `"`, `\`, control bytes and bytes past ASCII as
-- \xHH (as nginx does), so that no request can forge a line or a field.
local function esc(s)
  if s == nil or s == "" then return "-" end
  return (gsub(tostring(s), '[%z\1-\31"\\\127-\255]', function(c)
    return format("\\x%02X", byte(c))
  end))
end

local function field(v)
  if type(v) == "table" then v = v[1] end -- a repeated header: its first value
  return esc(v)
end

local function common(i)
  return format('%s - %s [%s] "%s %s HTTP/%s" %d %s', esc(i.remote_addr), esc(i.user),
    clf_time(i.time), esc(i.method), esc(i.target), esc(i.version), i.status,
    i.bytes > 0 and ("%d"):format(i.bytes) or "-")
end

local function combined(i)
  return format('%s "%s" "%s"', common(i), field(i.referer), field(i.user_agent))
end

local FORMATS = {common = common, combined = combined}

-- stderr, as the runtime's log writes it (core.log_write): one write(2)
-- per call, and captured by `rill test` as its log lines are.
local STDERR = {write = function(_, ...) core.log_write(concat({...})) end}

-- A sink: write(line) gathers, flush() writes what is gathered.
local function file_sink(f, buffer, flush_ms)
  if buffer == 0 then
    return function(line) f:write(line, "\n") end
  end
  local parts, n, timer = {}, 0, nil
  local function flush()
    if timer then
      timer:cancel()
      timer = nil
    end
    if n == 0 then return end
    local text = concat(parts)
    parts, n = {}, 0
    f:write(text)
  end
  -- Whatever is gathered when the Lua state closes is written then.
  local guard = newproxy(true)
  getmetatable(guard).__gc = function()
    if n > 0 then pcall(f.write, f, concat(parts)) end
  end
  return function(line)
    local _ = guard -- kept as long as the logger is
    line = line .. "\n"
    if n > 0 and n + #line > buffer then flush() end
    parts[#parts + 1] = line
    n = n + #line
    if n >= buffer then
      flush()
    elseif not timer then
      timer = rill.timer(flush_ms, flush):unref()
    end
  end
end

local function check_number(v, name, def)
  if v == nil then return def end
  if type(v) ~= "number" or v < 0 then
    error("rill.middleware.logger: " .. name .. " must be a non-negative number, got " ..
      tostring(v), 3)
  end
  return v
end

return function(opts)
  opts = opts or {}
  local fmt = opts.format or "combined"
  if type(fmt) == "string" then
    fmt = FORMATS[fmt] or error("rill.middleware.logger: format must be \"combined\", " ..
      "\"common\" or a function, got " .. esc(fmt), 2)
  elseif type(fmt) ~= "function" then
    error("rill.middleware.logger: format must be a string or a function", 2)
  end
  local buffer = check_number(opts.buffer, "buffer", 4096)
  local flush_ms = check_number(opts.flush, "flush", 1000)
  local out = opts.output
  local write
  if type(out) == "function" then
    write = out
  elseif out == nil then
    write = file_sink(STDERR, buffer, flush_ms)
  elseif type(out) == "string" then
    local f, err = io.open(out, "a")
    if not f then error("rill.middleware.logger: cannot open " .. err, 2) end
    f:setvbuf("no") -- the buffer is ours: one write(2) per flush
    write = file_sink(f, buffer, flush_ms)
  elseif (type(out) == "table" or type(out) == "userdata") and out.write then
    write = file_sink(out, buffer, flush_ms)
  else
    error("rill.middleware.logger: output must be a file name, a file or a function", 2)
  end

  return function(req, res, next)
    local h = req.headers
    local info = {remote_addr = req.remote_addr, method = req.method, target = req.target,
      version = req.version, time = rill.time(), referer = h.referer,
      user_agent = h["user-agent"], req = req}
    res:on_finish(function(status, bytes, ms)
      info.status, info.bytes, info.ms = status, bytes, ms
      info.user, info.request_id = rawget(req, "user"), rawget(req, "id")
      local line = fmt(info)
      if line ~= nil then write(line) end
    end)
    return next()
  end
end
