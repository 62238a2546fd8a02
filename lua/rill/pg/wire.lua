-- rill.pg's wire protocol: the connection object and what every operation
-- on it shares. Messages are built as strings (i32, msg); the reader keeps
-- its own buffer (c.buf from c.pos), so that a read that times out keeps
-- what came (a notification read may time out and go on) and messages are
-- cut from it without a copy per header. Nothing is read that the caller
-- did not ask for: a large result or a COPY goes only as fast as the task
-- pulls it. Failures that leave the connection unusable close it (fail).
local rill = require "rill"
local bit = require "bit"

local band, rshift = bit.band, bit.rshift
local byte, char, sub, find, format = string.byte, string.char, string.sub, string.find,
  string.format
local concat = table.concat
local select, type, tostring, tonumber, error, pcall, setmetatable = select, type, tostring,
  tonumber, error, pcall, setmetatable
local floor, huge = math.floor, math.huge
local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then new_tab = function() return {} end end

local pg = {} -- the names rill.pg shares (null, bytea); wire.pg
-- rill.pg.null: a parameter that is SQL NULL (nil works too).
pg.null = setmetatable({}, {__name = "rill.pg.null",
  __tostring = function() return "rill.pg.null" end})

local Bytea = {}
-- rill.pg.bytea(s): a parameter sent as raw bytes (binary format), for a
-- bytea column.
function pg.bytea(s)
  if type(s) ~= "string" then error("rill.pg.bytea: s must be a string, got " .. type(s), 2) end
  return setmetatable({s}, Bytea)
end

-- ---- encoding messages ----

local function i32(n)
  return char(band(rshift(n, 24), 255), band(rshift(n, 16), 255), band(rshift(n, 8), 255),
    band(n, 255))
end
local function i16(n) return char(band(rshift(n, 8), 255), band(n, 255)) end
local function msg(t, body) return t .. i32(#body + 4) .. body end

local SYNC = "S\0\0\0\4"
local EXECUTE = msg("E", "\0" .. i32(0)) -- unnamed portal, all rows
local DESCRIBE_PORTAL = msg("D", "P\0")
local TERMINATE = "X\0\0\0\4"

local function hex(s)
  return (s:gsub(".", function(c) return format("%02x", byte(c)) end))
end

-- A parameter as text (or nil for NULL, or raw bytes and true for bytea).
local function param_text(v, i, fname)
  local t = type(v)
  if t == "string" then return v end
  if v == nil or v == pg.null then return nil end
  if t == "number" then
    if v ~= v then return "NaN" end
    if v == huge then return "Infinity" end
    if v == -huge then return "-Infinity" end
    -- (tostring writes integers below 1e14 exactly, and is compiled)
    if v == floor(v) then
      if v > -1e14 and v < 1e14 then return tostring(v) end
      if v > -2 ^ 63 and v < 2 ^ 63 then return format("%.0f", v) end
    end
    return format("%.17g", v)
  end
  if t == "boolean" then return v and "true" or "false" end
  if t == "table" and getmetatable(v) == Bytea then return v[1], true end
  if t == "cdata" then return (tostring(v):gsub("U?LL$", "")) end
  error(format("%s: parameter %d must be a string, number, boolean, nil, rill.pg.null or" ..
    " rill.pg.bytea, got %s", fname, i, t), 5)
end

-- The Bind message for statement name with the parameters n, ...
local function bind_msg(fname, name, n, ...)
  local parts, formats, binary = {}, nil, false
  for i = 1, n do
    local v, bin = param_text(select(i, ...), i, fname)
    if bin then binary = true end
    if v == nil then parts[i] = "\255\255\255\255" else parts[i] = i32(#v) .. v end
  end
  if binary then
    formats = {i16(n)}
    for i = 1, n do
      local v = select(i, ...)
      formats[i + 1] = (type(v) == "table" and getmetatable(v) == Bytea) and "\0\1" or "\0\0"
    end
    formats = concat(formats)
  else
    formats = "\0\0"
  end
  return msg("B", "\0" .. name .. "\0" .. formats .. i16(n) .. concat(parts) .. "\0\0")
end

-- ---- decoding values ----

local function int8(s)
  local n = tonumber(s)
  if n and n > -2 ^ 53 and n < 2 ^ 53 then return n end
  return s
end

local FLOATS = {NaN = 0 / 0, Infinity = huge, ["-Infinity"] = -huge}
local function float(s) return tonumber(s) or FLOATS[s] end

local function bytea(s)
  if sub(s, 1, 2) ~= "\\x" then return s end -- (bytea_output = escape: left as it is)
  return (sub(s, 3):gsub("%x%x", function(h) return char(tonumber(h, 16)) end))
end

local function bool(s) return s == "t" end

local DECODERS = {[16] = bool, [17] = bytea, [20] = int8, [21] = tonumber, [23] = tonumber,
  [26] = tonumber, [700] = float, [701] = float}

-- ---- the connection ----

local Conn = {}
Conn.__index = Conn
Conn.__name = "rill.pg.connection"
function Conn:__tostring()
  return format("rill.pg.connection (%s)", self.closed and "closed" or "pid " .. tostring(self.pid))
end

-- Ends the connection at once (a timeout, a protocol error, a lost socket):
-- nothing on it can be trusted any more.
local function kill(c)
  if c.closed then return end
  c.closed = true
  c.pending = nil
  if c.sock then pcall(c.sock.close, c.sock) end
end

-- Asks the server to cancel what c's backend runs (a CancelRequest on a
-- connection of its own), in a thread of its own: the caller goes on.
local function cancel(c)
  local host, port, pid, secret = c.host, c.port, c.pid, c.secret
  if not (host and pid and secret) then return end
  rill.spawn(function()
    local s = rill.connect(host, port, {timeout = 5000})
    if not s then return end
    s:settimeout(5000)
    s:write(i32(16) .. i32(80877102) .. i32(pid) .. secret)
    s:read_some() -- the server closes it when done
    s:close()
  end)
end

-- Fails the operation and the connection; returns nil, err. The server
-- going away is "closed", however the socket learnt it (an end, a reset).
-- After a timeout the server is asked to cancel the statement, so that it
-- does not run on for nobody.
local function fail(c, err)
  local was_open = not c.closed
  kill(c)
  if err == "timeout" and was_open then cancel(c) end
  if err == nil or find(err, "^ECONNRESET") or find(err, "^EPIPE") then err = "closed" end
  return nil, err
end

-- Makes n bytes held in c.buf from c.pos, reading as needed: true, or nil,
-- err (what came before the error stays held).
local function fill(c, n)
  local buf, pos = c.buf, c.pos
  local have = #buf - pos + 1
  local sock = c.sock
  while have < n do
    local want = n - have
    local chunk, err, partial
    if want > 65536 then
      chunk, err, partial = sock:read(want)
    else
      chunk, err, partial = sock:read_some(65536)
    end
    if not chunk then
      if partial and partial ~= "" then
        buf = (have > 0 and sub(buf, pos) or "") .. partial
        pos = 1
      end
      c.buf, c.pos = buf, pos
      return nil, err or "closed"
    end
    if have > 0 then buf = sub(buf, pos) .. chunk else buf = chunk end
    pos = 1
    have = #buf
  end
  c.buf, c.pos = buf, pos
  return true
end

-- The least body of the messages whose fixed fields are read without
-- further checks: ReadyForQuery, BackendKeyData, Authentication,
-- NotificationResponse, RowDescription, DataRow.
local MIN_BODY = {[90] = 1, [75] = 8, [82] = 4, [65] = 6, [84] = 2, [68] = 2}

-- The next message: its type (a byte), and where its body is in c.buf
-- (first, last), c.pos past it. soft: a timeout fails only the call.
local function recv(c, soft)
  local ok, err = fill(c, 5)
  if not ok then
    if soft and err == "timeout" then return nil, err end
    return fail(c, err)
  end
  local buf, pos = c.buf, c.pos
  local t, a, b, cc, d = byte(buf, pos, pos + 4)
  local len = a * 16777216 + b * 65536 + cc * 256 + d
  if len - 4 < (MIN_BODY[t] or 0) then
    return fail(c, "protocol error: a message of length " .. len)
  end
  if len - 4 > c.max_message then return fail(c, "too large") end
  if #buf - pos < len then
    ok, err = fill(c, len + 1)
    if not ok then
      if soft and err == "timeout" then return nil, err end
      return fail(c, err)
    end
    buf, pos = c.buf, c.pos
  end
  c.pos = pos + len + 1
  return t, pos + 5, pos + len
end

local function cstring(buf, p)
  local z = find(buf, "\0", p, true)
  if not z then return nil, p end
  return sub(buf, p, z - 1), z + 1
end

local FIELDS = {S = "severity_local", V = "severity", C = "code", M = "message", D = "detail",
  H = "hint", P = "position", p = "internal_position", q = "internal_query", W = "where",
  s = "schema", t = "table", c = "column", d = "data_type", n = "constraint", F = "file",
  L = "line", R = "routine"}

-- The fields of an ErrorResponse or NoticeResponse.
local function fields(buf, p, e)
  local f = {}
  while p < e do
    local code = byte(buf, p)
    if code == 0 then break end
    local v
    v, p = cstring(buf, p + 1)
    if not v then break end
    f[FIELDS[char(code)] or char(code)] = v
  end
  f.severity = f.severity or f.severity_local
  f.severity_local = nil
  return f
end

local function error_text(f)
  return format("%s %s: %s", f.severity or "ERROR", f.code or "?????", f.message or "")
end

local MAX_QUEUED = 10000 -- notifications kept while nobody reads them

-- Messages that may come at any time: a notification (queued), a notice, a
-- parameter status. Returns true when t was one of them.
local function async(c, t, p, e)
  local buf = c.buf
  if t == 65 then -- 'A' NotificationResponse
    local a, b, cc, d = byte(buf, p, p + 3)
    local pid = a * 16777216 + b * 65536 + cc * 256 + d
    local channel, q = cstring(buf, p + 4)
    local payload = cstring(buf, q)
    local queue = c.queue
    if #queue >= MAX_QUEUED then table.remove(queue, 1) c.dropped = (c.dropped or 0) + 1 end
    queue[#queue + 1] = {channel = channel, payload = payload, pid = pid}
    return true
  elseif t == 78 then -- 'N' NoticeResponse
    local f = fields(buf, p, e)
    if c.on_notice then pcall(c.on_notice, f) end
    return true
  elseif t == 83 then -- 'S' ParameterStatus
    local name, q = cstring(buf, p)
    if name then c.parameters[name] = cstring(buf, q) end
    return true
  end
  return false
end

-- The next message that is not an asynchronous one.
local function next_msg(c, soft)
  while true do
    local t, p, e = recv(c, soft)
    if not t then return nil, p end
    if not async(c, t, p, e) then return t, p, e end
  end
end

-- Writes the pieces as one string (the stream's fast path takes it).
local function send(c, data, ...)
  if select("#", ...) > 0 then data = concat({data, ...}) end
  local ok, err = c.sock:write(data)
  if not ok then return fail(c, err) end
  return true
end

-- ---- reading results ----

-- The columns of a RowDescription: {name =, type = oid, decode =}.
local function columns(c, buf, p, e)
  local n = byte(buf, p) * 256 + byte(buf, p + 1)
  p = p + 2
  local cols = new_tab(n, 0)
  local json = c.decode_json
  for i = 1, n do
    local name
    name, p = cstring(buf, p)
    if not name or p + 17 > e then return nil end
    local a, b, cc, d = byte(buf, p + 6, p + 9)
    local oid = a * 16777216 + b * 65536 + cc * 256 + d
    local dec = DECODERS[oid]
    if json and (oid == 114 or oid == 3802) then dec = json end
    cols[i] = {name = name, type = oid, decode = dec}
    p = p + 18
  end
  -- what rows.columns shows (made once per statement)
  local public = new_tab(n, 0)
  for i = 1, n do public[i] = {name = cols[i].name, type = cols[i].type} end
  cols.public = public
  return cols
end

local NO_COLUMNS = {public = {}}

-- A DataRow (body p..e) as a table keyed by column name (NULL: the key is
-- absent); nil for one whose lengths do not fit the message.
local function row_of(buf, p, e, cols)
  if p + 1 > e then return nil end
  local n = byte(buf, p) * 256 + byte(buf, p + 1)
  p = p + 2
  local row = new_tab(0, n)
  for i = 1, n do
    if p + 3 > e then return nil end
    local a, b, cc, d = byte(buf, p, p + 3)
    p = p + 4
    if a ~= 255 then
      local len = a * 16777216 + b * 65536 + cc * 256 + d
      if p + len - 1 > e then return nil end
      local v = sub(buf, p, p + len - 1)
      p = p + len
      local col = cols[i]
      if col then
        local dec = col.decode
        if dec then v = dec(v) end
        row[col.name] = v
      end
    end
  end
  return row
end

-- A CommandComplete's tag ("INSERT 0 3"): {command = its first word, count
-- = the number ending it (nil when it has none)}. (By hand: patterns are
-- not compiled, and this runs for every query.)
local function command_info(buf, p)
  local z = find(buf, "\0", p, true) or p
  local sp = find(buf, " ", p, true)
  local command = sub(buf, p, (sp and sp < z and sp or z) - 1)
  local q = z - 1
  while q >= p do
    local ch = byte(buf, q)
    if ch < 48 or ch > 57 then break end
    q = q - 1
  end
  local count
  if q < z - 1 and q >= p and byte(buf, q) == 32 then count = tonumber(sub(buf, q + 1, z - 1)) end
  return {command = command, count = count}
end

-- Reads up to ReadyForQuery after an error; returns nil, text, fields.
local function finish_error(c, f)
  while true do
    local t, p = next_msg(c)
    if not t then return nil, p end
    if t == 90 then
      c.status = char(byte(c.buf, p))
      break
    end
  end
  return nil, error_text(f), f
end

-- After a failed query: a statement that was never parsed (a syntax error)
-- is forgotten, and so is one the server no longer has (DEALLOCATE,
-- DISCARD) or whose plan changed under it.
local function forget(c, stmt, failure)
  if not stmt then return end
  if not stmt.parsed then
    c.statements[stmt.sql] = nil
    c.nstatements = c.nstatements - 1
  elseif failure.code == "26000" or failure.code == "0A000" then
    c.statements[stmt.sql] = nil
  end
end

-- Reads messages until ReadyForQuery; each row goes to each_row(row) when
-- given, else into the rows returned. stmt: the cached statement whose
-- columns a RowDescription fills. Returns rows, info or nil, err, fields.
local function result(c, stmt, each_row)
  local cols = stmt and stmt.columns
  local rows, n, info, failure = {}, 0, nil, nil
  while true do
    local t, p, e = next_msg(c)
    if not t then return nil, p end
    local buf = c.buf
    if t == 68 then -- 'D' DataRow
      if not failure then
        local row = row_of(buf, p, e, cols or NO_COLUMNS)
        if not row then return fail(c, "protocol error: a bad DataRow") end
        if each_row then each_row(row) else n = n + 1 rows[n] = row end
      end
    elseif t == 84 then -- 'T' RowDescription
      cols = columns(c, buf, p, e)
      if not cols then return fail(c, "protocol error: a bad RowDescription") end
      if stmt then stmt.columns = cols end
    elseif t == 110 then -- 'n' NoData
      cols = NO_COLUMNS
      if stmt then stmt.columns = cols end
    elseif t == 67 then -- 'C' CommandComplete
      info = command_info(buf, p)
    elseif t == 90 then -- 'Z' ReadyForQuery
      c.status = char(byte(buf, p))
      break
    elseif t == 69 then -- 'E' ErrorResponse
      failure = fields(buf, p, e)
    elseif t == 49 then -- '1' ParseComplete: the statement exists now
      if stmt then stmt.parsed = true end
    elseif t == 50 or t == 116 or t == 73 or t == 115 or t == 100 or t == 99 then
      -- BindComplete, ParameterDescription, EmptyQueryResponse, PortalSuspended;
      -- CopyData, CopyDone of a COPY left unread (begin() drains it)
      if t == 73 then info = {command = "", count = nil} end
    elseif t == 71 or t == 72 then -- CopyIn/CopyOut from query(): not here
      return fail(c, "protocol error: COPY through query(); use copy_in or copy_out")
    else
      return fail(c, "protocol error: unexpected message " .. char(t))
    end
  end
  if failure then
    forget(c, stmt, failure)
    return nil, error_text(failure), failure
  end
  rows.columns = (cols or NO_COLUMNS).public
  return rows, info or {command = "", count = nil}
end

-- ---- operations ----

-- Makes c ready for an operation: raises on misuse, finishes an operation
-- that was left half read (a rows loop broken off); nil, err when the
-- connection is gone.
local function drop_row() end

local function begin(c, fname)
  if getmetatable(c) ~= Conn then error(fname .. ": not a connection (use ':')", 3) end
  if c.closed then return nil, "closed" end
  if c.busy then error(fname .. ": the connection is in use by another operation", 3) end
  if c.pending then
    c.pending = nil
    c.gen = c.gen + 1
    local ok, err = result(c, nil, drop_row)
    if not ok and c.closed then return nil, err end
  end
  return true
end


return {pg = pg, Conn = Conn, i32 = i32, i16 = i16, msg = msg, SYNC = SYNC, EXECUTE = EXECUTE,
  DESCRIBE_PORTAL = DESCRIBE_PORTAL, TERMINATE = TERMINATE, hex = hex, bind_msg = bind_msg,
  kill = kill, fail = fail, recv = recv, next_msg = next_msg, async = async, send = send,
  cstring = cstring, fields = fields, error_text = error_text, columns = columns,
  row_of = row_of, NO_COLUMNS = NO_COLUMNS, command_info = command_info,
  finish_error = finish_error, forget = forget, result = result, begin = begin,
  new_tab = new_tab}
