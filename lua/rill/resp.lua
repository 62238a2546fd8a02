-- RESP, the Redis protocol: commands encoded as arrays of strings, and a
-- parser of RESP2 and RESP3 replies that reads from a connection's socket
-- only when it needs bytes and resumes where it stopped (a reply cut between
-- two reads is not parsed again from its start). rill.redis's connections
-- hold the parser's state: _sock, _buf and _pos (the bytes read and not
-- parsed), _need, _stack and _depth (the aggregates begun), and the limits
-- _max_bulk, _max_depth, _max_elements and _max_line.
local byte, find, floor, format, huge, select, setmetatable, sub, tonumber, type =
  string.byte, string.find, math.floor, string.format, math.huge, select, setmetatable,
  string.sub, tonumber, type

local resp = {}
-- A null (rill.redis.null): parse() gives it for every null.
resp.null = setmetatable({}, {__name = "rill.redis.null",
  __tostring = function() return "rill.redis.null" end})
local NULL = resp.null

-- An error reply: {err = "WRONGTYPE ..."} with this metatable.
local Error = {__name = "rill.redis.error"}
Error.__index = Error
Error.__tostring = function(e) return e.err end

local function err_obj(msg)
  return setmetatable({err = msg}, Error)
end

resp.Error = Error

-- ---- the reply parser ----

local NEED = {} -- parse(): the reply is not whole yet

-- The integer in buf[i..j] (an optional "-" then digits), or nil.
local function int(buf, i, j)
  local neg = byte(buf, i) == 45
  if neg then i = i + 1 end
  if i > j or j - i > 19 then return nil end
  local n = 0
  for k = i, j do
    local d = byte(buf, k) - 48
    if d < 0 or d > 9 then return nil end
    n = n * 10 + d
  end
  return neg and -n or n
end

local DOUBLE = {inf = huge, ["-inf"] = -huge, nan = 0 / 0, ["-nan"] = 0 / 0}

-- Parses one reply from c._buf at c._pos. Returns the reply and its type
-- byte (42 "*" for an array, 62 ">" for a push, ...), or NEED when the bytes
-- held end first (the aggregates begun are kept in c._stack and the next
-- call goes on from there), or nil, err for a reply that breaks RESP or a
-- limit.
local function parse(c)
  local buf, pos = c._buf, c._pos
  local len = #buf
  local stack, depth = c._stack, c._depth
  while pos <= len do
    local e = find(buf, "\r\n", pos + 1, true)
    if not e then
      if len - pos > c._max_line then return nil, "too large: a reply line past max_line" end
      break
    end
    local t = byte(buf, pos)
    local v, open
    if t == 36 or t == 61 or t == 33 then -- $ blob, = verbatim, ! blob error
      local n = int(buf, pos + 1, e - 1)
      if not n then return nil, "bad reply: bad length" end
      if n < 0 then
        v = NULL
        pos = e + 2
      else
        if n > c._max_bulk then return nil, "too large: a reply string past max_bulk" end
        local s = e + 2
        local stop = s + n -- the "\r" after it
        if stop + 1 > len then
          c._need = stop + 1 - len
          break
        end
        v = sub(buf, s, stop - 1)
        pos = stop + 2
        if t == 61 then
          v = sub(v, 5) -- "txt:" or "mkd:"
        elseif t == 33 then
          v = err_obj(v)
        end
      end
    elseif t == 43 then -- + simple string
      v = sub(buf, pos + 1, e - 1)
      pos = e + 2
    elseif t == 58 then -- : integer
      v = int(buf, pos + 1, e - 1)
      if not v then return nil, "bad reply: bad integer" end
      pos = e + 2
    elseif t == 45 then -- - error
      v = err_obj(sub(buf, pos + 1, e - 1))
      pos = e + 2
    elseif t == 42 or t == 126 or t == 62 or t == 37 or t == 124 then -- * ~ > % |
      local n = int(buf, pos + 1, e - 1)
      if not n then return nil, "bad reply: bad length" end
      pos = e + 2
      if n < 0 then
        v = NULL
      elseif n > c._max_elements then
        return nil, "too large: a reply array past max_elements"
      elseif n == 0 then
        if t == 124 then open = true else v = {} end -- an empty attribute: nothing
      else
        depth = depth + 1
        if depth > c._max_depth then return nil, "too large: a reply nested past max_depth" end
        local f = stack[depth]
        if not f then
          f = {}
          stack[depth] = f
        end
        f.t, f.n, f.i, f.kind, f.key = {}, (t == 37 or t == 124) and 2 * n or n, 0, t, nil
        open = true
      end
    elseif t == 95 then -- _ null
      v = NULL
      pos = e + 2
    elseif t == 44 then -- , double
      local s = sub(buf, pos + 1, e - 1)
      v = tonumber(s) or DOUBLE[s]
      if not v then return nil, "bad reply: bad double" end
      pos = e + 2
    elseif t == 35 then -- # boolean
      v = byte(buf, pos + 1) == 116
      pos = e + 2
    elseif t == 40 then -- ( big number, as its digits
      v = sub(buf, pos + 1, e - 1)
      pos = e + 2
    else
      return nil, format("bad reply: unexpected byte 0x%02x", t)
    end
    -- v is whole: it fills its place in the aggregates begun, and those it
    -- completes fill theirs.
    while not open do
      if depth == 0 then
        c._pos, c._depth = pos, 0
        return v, t
      end
      local f = stack[depth]
      local i = f.i + 1
      f.i = i
      local kind = f.kind
      if kind == 37 then -- a map: key, value, key, value...
        if i % 2 == 1 then
          f.key = v
        elseif f.key ~= NULL then
          f.t[f.key] = v
        end
      elseif kind ~= 124 then
        f.t[i] = v
      end
      if i < f.n then break end
      v, t = f.t, kind
      f.t, f.key = nil, nil
      depth = depth - 1
      -- an attribute is dropped: the value after it takes its place
      if kind == 124 then break end
    end
  end
  c._pos, c._depth = pos, depth
  return NEED
end

-- Reads more bytes into c._buf (what is left of it first). Returns true or
-- nil, err (the stream's: "closed", "timeout", ...).
local function fill(c)
  local sock = c._sock
  local need = c._need
  c._need = 0
  local data, err, partial
  if need > 65536 then
    data, err, partial = sock:read(need) -- a long string: read at once
  else
    data, err = sock:read_some(65536)
  end
  data = data or partial
  if data then
    local buf, pos = c._buf, c._pos
    if pos > #buf then
      c._buf = data
    else
      c._buf = sub(buf, pos) .. data
    end
    c._pos = 1
  end
  if err then return nil, err end
  if not data then return nil, "closed" end
  return true
end

-- One reply: value, type byte; or nil, err when the connection failed (the
-- caller closes it).
local function read_reply(c)
  while true do
    local v, t = parse(c)
    if v ~= NEED then return v, t end
    local ok, err = fill(c)
    if not ok then return nil, err end
  end
end

-- ---- commands ----

-- "*N\r\n" and "$N\r\n" made once for small N.
local STAR, DOLLAR = {}, {}
for i = 0, 1023 do
  STAR[i] = "*" .. i .. "\r\n"
  DOLLAR[i] = "$" .. i .. "\r\n"
end

local function arg_string(a, fname, i, lvl)
  local ta = type(a)
  if ta == "string" then return a end
  if ta == "number" then
    if a == floor(a) and a > -2 ^ 53 and a < 2 ^ 53 then return format("%d", a) end
    return format("%.17g", a)
  end
  error(format("%s: argument #%d must be a string or a number, got %s", fname, i, ta), lvl)
end

-- Appends the command (args[1..n]) in RESP to parts from parts[np + 1];
-- returns the new count. Raises at level lvl (counted from arg_string) on
-- an argument that is not a string or a number.
local function encode(parts, np, fname, lvl, n, ...)
  np = np + 1
  parts[np] = STAR[n] or "*" .. n .. "\r\n"
  for i = 1, n do
    local a = select(i, ...)
    if type(a) ~= "string" then a = arg_string(a, fname, i, lvl) end
    local l = #a
    parts[np + 1] = DOLLAR[l] or "$" .. l .. "\r\n"
    parts[np + 2] = a
    parts[np + 3] = "\r\n"
    np = np + 3
  end
  return np
end

resp.NEED, resp.parse, resp.fill, resp.read_reply, resp.encode = NEED, parse, fill, read_reply,
  encode

return resp
