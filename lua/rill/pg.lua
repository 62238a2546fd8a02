-- rill.pg: a PostgreSQL client (frontend/backend protocol 3.0) on rill's
-- streams.
--
--   local pg = require "rill.pg"
--   local db = assert(pg.connect{user = "app", password = "s3cret", database = "app"})
--   local rows, info = db:query("SELECT id, name FROM users WHERE id = $1", 42)
--   for row in db:rows("SELECT * FROM big") do ... end   -- streamed
--   db:release()                                          -- back to the pool
--
-- Queries use the extended protocol (Parse/Bind/Execute/Sync): parameters
-- travel apart from the SQL text, as text (or raw bytes for pg.bytea), never
-- spliced into it. Each connection keeps the statements it parsed (named,
-- up to MAX_STATEMENTS) and only binds them again on the next use.
--
-- The reader keeps its own buffer (c.buf from c.pos): a read that times out
-- keeps what came (a notification read may time out and go on), and
-- messages are cut from it without a copy per message header. Nothing is
-- read that the caller did not ask for: a large result or a COPY goes only
-- as fast as the task pulls it.
local rill = require "rill"
local core = require "rill.core"
local bit = require "bit"
local pool_mod = require "rill.pool"

local band, rshift, bxor = bit.band, bit.rshift, bit.bxor
local byte, char, sub, find, format, rep = string.byte, string.char, string.sub, string.find,
  string.format, string.rep
local concat, select, type, tostring, tonumber, error, pcall, setmetatable, unpack =
  table.concat, select, type, tostring, tonumber, error, pcall, setmetatable, unpack
local floor, huge = math.floor, math.huge
local ok_new, new_tab = pcall(require, "table.new")
if not ok_new then new_tab = function() return {} end end

local pg = {}

pg.MAX_STATEMENTS = 256 -- named statements a connection keeps
pg.pool = pool_mod.new{size = 64, idle_timeout = 30000}

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
    if v == floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then return format("%.0f", v) end
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
  if len < 4 then return fail(c, "protocol error: a message of length " .. len) end
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
local function columns(c, buf, p)
  local n = byte(buf, p) * 256 + byte(buf, p + 1)
  p = p + 2
  local cols = new_tab(n, 0)
  local json = c.decode_json
  for i = 1, n do
    local name
    name, p = cstring(buf, p)
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

-- A DataRow as a table keyed by column name (NULL: the key is absent).
local function row_of(buf, p, cols)
  local n = byte(buf, p) * 256 + byte(buf, p + 1)
  p = p + 2
  local row = new_tab(0, n)
  for i = 1, n do
    local a, b, cc, d = byte(buf, p, p + 3)
    p = p + 4
    if a ~= 255 then
      local len = a * 16777216 + b * 65536 + cc * 256 + d
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

local function command_info(buf, p)
  local tag = cstring(buf, p) or ""
  return {command = tag:match("^(%S+)") or tag, count = tonumber(tag:match(" (%d+)$"))}
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
        local row = row_of(buf, p, cols or NO_COLUMNS)
        if each_row then each_row(row) else n = n + 1 rows[n] = row end
      end
    elseif t == 84 then -- 'T' RowDescription
      cols = columns(c, buf, p)
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
local function begin(c, fname)
  if getmetatable(c) ~= Conn then error(fname .. ": not a connection (use ':')", 3) end
  if c.closed then return nil, "closed" end
  if c.busy then error(fname .. ": the connection is in use by another operation", 3) end
  if c.pending then
    c.pending = nil
    c.gen = c.gen + 1
    local ok, err = result(c, nil, function() end)
    if not ok and c.closed then return nil, err end
  end
  return true
end

-- Sends a query's messages: a cached statement is only bound again.
-- Returns true and the statement (nil: unnamed), or nil, err.
local function send_query(c, fname, sql, n, ...)
  if type(sql) ~= "string" then error(fname .. ": sql must be a string, got " .. type(sql), 3) end
  if find(sql, "\0", 1, true) then error(fname .. ": sql contains a NUL byte", 3) end
  local stmt = c.statements[sql]
  local ok, err
  if stmt and stmt.parsed then
    local bind = bind_msg(fname, stmt.name, n, ...)
    if stmt.columns then
      ok, err = send(c, bind, EXECUTE, SYNC)
    else
      ok, err = send(c, msg("D", "S" .. stmt.name .. "\0"), bind, EXECUTE, SYNC)
    end
  elseif not stmt and c.nstatements < pg.MAX_STATEMENTS then
    local name = "rill" .. (c.seq + 1)
    local bind = bind_msg(fname, name, n, ...)
    c.nstatements, c.seq = c.nstatements + 1, c.seq + 1
    stmt = {sql = sql, name = name}
    c.statements[sql] = stmt
    ok, err = send(c, msg("P", name .. "\0" .. sql .. "\0\0\0"), msg("D", "S" .. name .. "\0"),
      bind, EXECUTE, SYNC)
  else
    stmt = nil
    ok, err = send(c, msg("P", "\0" .. sql .. "\0\0\0"), bind_msg(fname, "", n, ...),
      DESCRIBE_PORTAL, EXECUTE, SYNC)
  end
  if not ok then return nil, err end
  return true, stmt
end

-- conn:query(sql, ...) → rows, info or nil, err, fields. Parameters $1, $2,
-- ... are the arguments after sql.
function Conn:query(sql, ...)
  local ok, err = begin(self, "conn:query")
  if not ok then return nil, err end
  local stmt
  ok, stmt = send_query(self, "conn:query", sql, select("#", ...), ...)
  if not ok then return nil, stmt end
  self.busy = true
  local rows, info, f = result(self, stmt)
  self.busy = false
  return rows, info, f
end

-- for row in conn:rows(sql, ...): each row as it comes, nothing held; an
-- error is raised (the connection stays usable).
function Conn:rows(sql, ...)
  local ok, err = begin(self, "conn:rows")
  if not ok then error("conn:rows: " .. err, 2) end
  local stmt
  ok, stmt = send_query(self, "conn:rows", sql, select("#", ...), ...)
  if not ok then error("conn:rows: " .. stmt, 2) end
  self.pending = true
  local gen = self.gen
  local c = self
  local cols = stmt and stmt.columns
  local failure, done = nil, false
  return function()
    if done then return nil end
    if c.gen ~= gen or c.closed and not done then
      if c.closed then error("conn:rows: closed", 2) end
      error("conn:rows: the connection was used for another query during the loop", 2)
    end
    c.busy = true
    while true do
      local t, p, e = next_msg(c)
      if not t then
        c.busy = false
        done = true
        error("conn:rows: " .. p, 2)
      end
      local buf = c.buf
      if t == 68 and not failure then
        c.busy = false
        return row_of(buf, p, cols or NO_COLUMNS)
      elseif t == 84 then
        cols = columns(c, buf, p)
        if stmt then stmt.columns = cols end
      elseif t == 110 then
        cols = NO_COLUMNS
        if stmt then stmt.columns = cols end
      elseif t == 49 then
        if stmt then stmt.parsed = true end
      elseif t == 69 then
        failure = fields(buf, p, e)
      elseif t == 90 then
        c.status = char(byte(buf, p))
        c.busy, c.pending, done = false, nil, true
        if failure then
          forget(c, stmt, failure)
          error(error_text(failure), 2)
        end
        return nil
      elseif t == 71 or t == 72 then
        c.busy, done = false, true
        fail(c, "protocol error")
        error("conn:rows: COPY through rows(); use copy_in or copy_out", 2)
      end
    end
  end
end

-- conn:simple(sql) → rows, info of the last statement: one or more
-- statements in the simple protocol (no parameters).
function Conn:simple(sql)
  local ok, err = begin(self, "conn:simple")
  if not ok then return nil, err end
  if type(sql) ~= "string" then error("conn:simple: sql must be a string, got " .. type(sql), 2) end
  if find(sql, "\0", 1, true) then error("conn:simple: sql contains a NUL byte", 2) end
  ok, err = send(self, msg("Q", sql .. "\0"))
  if not ok then return nil, err end
  self.busy = true
  -- several results: the last one wins
  local last_rows, last_info, cols, rows, failure = nil, nil, NO_COLUMNS, {}, nil
  while true do
    local t, p, e = next_msg(self)
    if not t then
      self.busy = false
      return nil, p
    end
    local buf = self.buf
    if t == 68 then
      if not failure then rows[#rows + 1] = row_of(buf, p, cols) end
    elseif t == 84 then
      cols, rows = columns(self, buf, p), {}
    elseif t == 67 then
      rows.columns = cols.public or {}
      last_rows, last_info = rows, command_info(buf, p)
      cols, rows = NO_COLUMNS, {}
    elseif t == 73 then
      rows.columns = {}
      last_rows, last_info = rows, {command = "", count = nil}
    elseif t == 69 then
      failure = failure or fields(buf, p, e)
    elseif t == 90 then
      self.status = char(byte(buf, p))
      break
    elseif t == 71 or t == 72 then
      self.busy = false
      return fail(self, "protocol error: COPY through simple(); use copy_in or copy_out")
    end
  end
  self.busy = false
  if failure then return nil, error_text(failure), failure end
  if not last_rows then last_rows, last_info = {columns = {}}, {command = "", count = nil} end
  return last_rows, last_info
end

local function pack(...) return {n = select("#", ...), ...} end

-- conn:transaction(fn, ...) runs fn(conn, ...) between BEGIN and COMMIT:
-- its results. ROLLBACK instead, and nil, err, when fn raises (err the
-- value raised), returns false, or returns nil, err.
function Conn:transaction(fn, ...)
  if type(fn) ~= "function" then
    error("conn:transaction: fn must be a function, got " .. type(fn), 2)
  end
  local ok, err, f = self:query("BEGIN")
  if not ok then return nil, err, f end
  local res = pack(pcall(fn, self, ...))
  local failed = not res[1] or res[2] == false or (res[2] == nil and res.n >= 3)
  if not failed then
    ok, err, f = self:query("COMMIT")
    if not ok then return nil, err, f end
    if err.command == "ROLLBACK" then return nil, "rolled back" end
    return unpack(res, 2, res.n)
  end
  if not self.closed then
    if self.busy or self.pending then self.pending = true end
    self.busy = false
    self:query("ROLLBACK")
  end
  if res[1] then return nil, res[3] end
  return nil, res[2]
end

local function quote_ident(fname, name)
  if type(name) ~= "string" or name == "" or find(name, "\0", 1, true) then
    error(fname .. ": channel must be a non-empty string", 3)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- conn:listen(channel) → true or nil, err: notifications on channel come to
-- conn:notifications().
function Conn:listen(channel)
  local q = "LISTEN " .. quote_ident("conn:listen", channel)
  local ok, err, f = self:simple(q)
  if not ok then return nil, err, f end
  self.listening = true
  return true
end

-- conn:unlisten([channel]) → true or nil, err (every channel when none).
function Conn:unlisten(channel)
  local q = channel == nil and "UNLISTEN *" or "UNLISTEN " .. quote_ident("conn:unlisten", channel)
  local ok, err, f = self:simple(q)
  if not ok then return nil, err, f end
  return true
end

-- ---- notifications: a stream of them ----

local Notifications = {}
Notifications.__index = Notifications
Notifications.__name = "rill.pg.notifications"

-- conn:notifications() → a stream of the notifications of the channels
-- listened to.
function Conn:notifications()
  return setmetatable({conn = self}, Notifications)
end

-- ns:read([timeout_ms]) → {channel =, payload =, pid =}, or nil, "timeout"
-- / "closed" / the connection's error.
function Notifications:read(timeout)
  local c = self.conn
  if timeout ~= nil and type(timeout) ~= "number" then
    error("ns:read: timeout_ms must be a number, got " .. type(timeout), 2)
  end
  local queue = c.queue
  if #queue > 0 then return table.remove(queue, 1) end
  local ok, err = begin(c, "ns:read")
  if not ok then return nil, err end
  c.busy = true
  c.sock:settimeout(timeout)
  while #queue == 0 do
    local t, p, e = recv(c, true)
    if not t then
      c.busy = false
      if not c.closed then c.sock:settimeout(c.timeout) end
      return nil, p
    end
    if async(c, t, p, e) then -- a notification is queued now
    elseif t == 69 then -- a FATAL error (the server shuts down)
      local f = fields(c.buf, p, e)
      c.busy = false
      kill(c)
      return nil, "closed", f
    end
  end
  c.busy = false
  c.sock:settimeout(c.timeout)
  return table.remove(queue, 1)
end

-- ns:close(): stops listening on the connection's channels.
function Notifications:close()
  if self.conn.closed then return true end
  return self.conn:unlisten()
end

-- ---- COPY ----

local CopyOut = {}
CopyOut.__index = CopyOut
CopyOut.__name = "rill.pg.copy_out"

-- Starts a COPY with the simple protocol; waits for its CopyIn/CopyOut
-- response (want: 71 'G' or 72 'H'). true or nil, err, fields.
local function copy_start(c, fname, sql, want)
  local ok, err = begin(c, fname)
  if not ok then return nil, err end
  if type(sql) ~= "string" then error(fname .. ": sql must be a string, got " .. type(sql), 3) end
  if find(sql, "\0", 1, true) then error(fname .. ": sql contains a NUL byte", 3) end
  ok, err = send(c, msg("Q", sql .. "\0"))
  if not ok then return nil, err end
  c.busy = true
  while true do
    local t, p, e = next_msg(c)
    if not t then
      c.busy = false
      return nil, p
    end
    if t == want then
      c.busy = false
      c.pending = true -- until the COPY ends
      return true
    elseif t == 69 then
      local r1, r2, r3 = finish_error(c, fields(c.buf, p, e))
      c.busy = false
      return r1, r2, r3
    elseif t == 90 then
      c.busy = false
      c.status = char(byte(c.buf, p))
      return nil, "protocol error: the statement is not a COPY of this direction"
    elseif t == 71 or t == 72 then
      c.busy = false
      return fail(c, "protocol error: a COPY of the other direction")
    end
  end
end

-- conn:copy_out(sql) → a stream of the data of `COPY ... TO STDOUT`, or
-- nil, err, fields.
function Conn:copy_out(sql)
  local ok, err, f = copy_start(self, "conn:copy_out", sql, 72)
  if not ok then return nil, err, f end
  return setmetatable({conn = self, gen = self.gen, left = nil}, CopyOut)
end

-- The next CopyData payloads, up to max bytes, gathered from what is held
-- (one read at most); nil at the end; nil, err on an error.
function CopyOut:read_some(max)
  max = max or 65536
  if type(max) ~= "number" or max < 1 then error("cout:read_some: max must be >= 1", 2) end
  if self.done then return nil, self.err, self.fields end
  local c = self.conn
  if c.gen ~= self.gen or c.closed then
    self.done, self.err = true, "closed"
    return nil, "closed"
  end
  local left = self.left
  if left then
    if #left > max then
      self.left = sub(left, max + 1)
      return sub(left, 1, max)
    end
    self.left = nil
    return left
  end
  c.busy = true
  local parts, got = {}, 0
  while got < max do
    -- after the first piece, only messages held whole: no further wait
    if got > 0 then
      local buf, pos = c.buf, c.pos
      if #buf - pos + 1 < 5 then break end
      local a, b, cc, d = byte(buf, pos + 1, pos + 4)
      if #buf - pos < a * 16777216 + b * 65536 + cc * 256 + d then break end
    end
    local t, p, e = next_msg(c)
    if not t then
      c.busy = false
      self.done, self.err = true, p
      return nil, p
    end
    if t == 100 then -- 'd' CopyData
      local data = sub(c.buf, p, e)
      if got + #data > max then
        self.left = sub(data, max - got + 1)
        data = sub(data, 1, max - got)
      end
      parts[#parts + 1] = data
      got = got + #data
    elseif t == 99 then -- 'c' CopyDone: the CommandComplete and ReadyForQuery follow
      local rows, info, f = result(c, nil)
      c.busy, c.pending = false, nil
      self.done = true
      if not rows then self.err, self.fields = info, f end
      if not rows and got == 0 then return nil, info, f end
      self.info = info
      break
    elseif t == 69 then
      local _, err, f = finish_error(c, fields(c.buf, p, e))
      c.busy, c.pending = false, nil
      self.done, self.err, self.fields = true, err, f
      if got == 0 then return nil, err, f end
      break
    else
      c.busy = false
      self.done, self.err = true, "protocol error"
      fail(c, "protocol error")
      return nil, "protocol error: unexpected message " .. char(t) .. " in COPY"
    end
  end
  c.busy = false
  if got == 0 then return nil end
  if #parts == 1 then return parts[1] end
  return concat(parts)
end

-- cout:read(n) → exactly n bytes, fewer only at the end, nil at the end.
function CopyOut:read(n)
  if type(n) ~= "number" or n < 1 then error("cout:read: n must be >= 1", 2) end
  local parts, got = {}, 0
  while got < n do
    local chunk, err, f = self:read_some(n - got)
    if not chunk then
      if err then return nil, err, concat(parts) end
      break
    end
    parts[#parts + 1] = chunk
    got = got + #chunk
  end
  if got == 0 then return nil end
  return concat(parts)
end

-- cout:read_all([limit]) → everything to the end; nil, "too large" past
-- limit bytes (default 1048576).
function CopyOut:read_all(limit)
  limit = limit or 1048576
  local parts, got = {}, 0
  while true do
    local chunk, err, f = self:read_some(65536)
    if not chunk then
      if err then return nil, err, f end
      break
    end
    got = got + #chunk
    if got > limit then return nil, "too large" end
    parts[#parts + 1] = chunk
  end
  return concat(parts)
end

-- cout:close(): a COPY not read to its end ends the connection (the rest
-- would have to be read to use it again).
function CopyOut:close()
  if not self.done then
    self.done, self.err = true, "closed"
    if self.conn.gen == self.gen then kill(self.conn) end
  end
  return true
end

local CopyIn = {}
CopyIn.__index = CopyIn
CopyIn.__name = "rill.pg.copy_in"

-- conn:copy_in(sql) → a writable stream for `COPY ... FROM STDIN`, or nil,
-- err, fields.
function Conn:copy_in(sql)
  local ok, err, f = copy_start(self, "conn:copy_in", sql, 71)
  if not ok then return nil, err, f end
  self.pending = nil
  self.busy = true -- until finish() or abort()
  return setmetatable({conn = self}, CopyIn)
end

-- cin:write(data, ...) → true or nil, err: the pieces as CopyData.
function CopyIn:write(...)
  if self.done then error("cin:write: the COPY has ended", 2) end
  local c = self.conn
  if c.closed then return nil, "closed" end
  local n = select("#", ...)
  for i = 1, n do
    local data = select(i, ...)
    if type(data) == "number" then data = tostring(data) end
    if type(data) ~= "string" then
      error("cin:write: argument " .. i .. " must be a string, got " .. type(data), 2)
    end
    if #data > 0 then
      local ok, err = c.sock:write("d" .. i32(#data + 4), data)
      if not ok then return fail(c, err) end
    end
  end
  return true
end

local function copy_end(self, m)
  local c = self.conn
  self.done = true
  if c.closed then
    c.busy = false
    return nil, "closed"
  end
  local ok, err = send(c, m)
  if not ok then
    c.busy = false
    return nil, err
  end
  local rows, info, f = result(c, nil)
  c.busy = false
  if not rows then return nil, info, f end
  return info.count or 0
end

-- cin:finish() → the number of rows copied, or nil, err, fields.
function CopyIn:finish()
  if self.done then error("cin:finish: the COPY has ended", 2) end
  return copy_end(self, "c\0\0\0\4")
end

-- cin:abort([message]) → true: the COPY fails on the server with message.
function CopyIn:abort(message)
  if self.done then error("cin:abort: the COPY has ended", 2) end
  message = tostring(message or "aborted by the client")
  local r, err = copy_end(self, msg("f", message:gsub("%z", "") .. "\0"))
  if r == nil and self.conn.closed then return nil, err end
  return true
end

-- ---- connecting, the pool ----

function Conn:settimeout(ms)
  if ms ~= nil and type(ms) ~= "number" then
    error("conn:settimeout: ms must be a number, got " .. type(ms), 2)
  end
  self.timeout = ms
  if not self.closed then self.sock:settimeout(ms) end
  return self
end

-- conn:close(): ends the session (Terminate) and closes the socket.
function Conn:close()
  if self.closed then return true end
  self.closed = true
  pcall(self.sock.write, self.sock, TERMINATE)
  pcall(self.sock.close, self.sock)
  return true
end

-- conn:release(): back to the pool when it is clean (idle, outside a
-- transaction, listening to nothing, nothing left unread); closed
-- otherwise.
function Conn:release()
  if self.closed then return end
  if self.busy or self.pending or self.status ~= "I" or self.listening or not self.key
    or #self.buf >= self.pos or #self.queue > 0 then
    return self:close()
  end
  self.buf, self.pos = "", 1
  pg.pool:put(self.key, self, self.sock)
end

-- SCRAM-SHA-256's proof and the server signature to expect (RFC 5802 3)
-- for password, the salt and iteration count, and the AuthMessage.
function pg._scram(password, salt, iter, auth_message)
  local hmac = core.hmac_sha256
  local salted = core.pbkdf2_sha256(password, salt, iter)
  local client_key = hmac(salted, "Client Key")
  local sig = hmac(core.sha256(client_key), auth_message)
  local proof = {}
  for i = 1, 32 do proof[i] = char(bxor(byte(client_key, i), byte(sig, i))) end
  return concat(proof), hmac(hmac(salted, "Server Key"), auth_message)
end

local function scram(c, sock, user, password, buf, p, e)
  local mechs = {}
  while p <= e do
    local m
    m, p = cstring(buf, p)
    if not m or m == "" then break end
    mechs[m] = true
  end
  if not mechs["SCRAM-SHA-256"] then
    return nil, "auth: no mechanism in common (the server offers SASL mechanisms rill lacks)"
  end
  if not password then return nil, "auth: the server asks for a password" end
  local cnonce = core.base64_encode(core.random(18))
  local first_bare = "n=,r=" .. cnonce
  local first = "n,," .. first_bare
  local ok, err = sock:write(msg("p", "SCRAM-SHA-256\0" .. i32(#first) .. first))
  if not ok then return nil, err end
  -- server-first
  local t, q, qe = next_msg(c)
  if not t then return nil, q end
  if t == 69 then return nil, error_text(fields(c.buf, q, qe)) end
  if t ~= 82 or byte(c.buf, q + 3) ~= 11 then return nil, "auth: protocol error in SCRAM" end
  local server_first = sub(c.buf, q + 4, qe)
  local nonce, salt, iter = server_first:match("^r=([^,]+),s=([^,]+),i=(%d+)$")
  iter = tonumber(iter)
  if not nonce or sub(nonce, 1, #cnonce) ~= cnonce or #nonce <= #cnonce then
    return nil, "auth: bad SCRAM server-first message"
  end
  salt = core.base64_decode(salt)
  if not salt or not iter or iter < 1 or iter > pg.MAX_SCRAM_ITERATIONS then
    return nil, "auth: bad SCRAM salt or iteration count"
  end
  local final_bare = "c=biws,r=" .. nonce
  local proof, server_sig = pg._scram(password, salt, iter, first_bare .. "," .. server_first ..
    "," .. final_bare)
  local final = final_bare .. ",p=" .. core.base64_encode(proof)
  ok, err = sock:write(msg("p", final))
  if not ok then return nil, err end
  t, q, qe = next_msg(c)
  if not t then return nil, q end
  if t == 69 then return nil, error_text(fields(c.buf, q, qe)), fields(c.buf, q, qe) end
  if t ~= 82 or byte(c.buf, q + 3) ~= 12 then return nil, "auth: protocol error in SCRAM" end
  local v = sub(c.buf, q + 4, qe):match("^v=([^,]+)")
  if v ~= core.base64_encode(server_sig) then
    return nil, "auth: the server's SCRAM signature is wrong"
  end
  return true
end

pg.MAX_SCRAM_ITERATIONS = 100000

-- Authenticates and reads to the first ReadyForQuery.
local function startup(c, opts)
  local sock, user, password = c.sock, opts.user, opts.password
  local params = {"user\0", user, "\0database\0", opts.database, "\0client_encoding\0UTF8\0"}
  if opts.application_name then
    params[#params + 1] = "application_name\0" .. opts.application_name .. "\0"
  end
  params[#params + 1] = "\0"
  local body = i32(196608) .. concat(params)
  local ok, err = sock:write(i32(#body + 4) .. body)
  if not ok then return nil, err end
  local authed, scram_done = false, false
  while true do
    local t, p, e = next_msg(c)
    if not t then return nil, p end
    local buf = c.buf
    if t == 82 then -- 'R' Authentication*
      local a, b, cc, d = byte(buf, p, p + 3)
      local kind = a * 16777216 + b * 65536 + cc * 256 + d
      if kind == 0 then
        if c.scram_started and not scram_done then
          return nil, "auth: the server ended SCRAM without proving it knows the password"
        end
        authed = true
      elseif kind == 3 then
        if not password then return nil, "auth: the server asks for a password" end
        ok, err = sock:write(msg("p", password .. "\0"))
        if not ok then return nil, err end
      elseif kind == 5 then
        if not password then return nil, "auth: the server asks for a password" end
        local salt = sub(buf, p + 4, p + 7)
        local inner = hex(core.md5(password .. user))
        ok, err = sock:write(msg("p", "md5" .. hex(core.md5(inner .. salt)) .. "\0"))
        if not ok then return nil, err end
      elseif kind == 10 then
        c.scram_started = true
        local f
        ok, err, f = scram(c, sock, user, password, buf, p + 4, e)
        if not ok then return nil, err, f end
        scram_done = true
      else
        local names = {[2] = "Kerberos V5", [6] = "SCM credentials", [7] = "GSSAPI", [9] = "SSPI"}
        return nil, "auth: unsupported method " .. (names[kind] or tostring(kind))
      end
    elseif t == 75 then -- 'K' BackendKeyData
      local a, b, cc, d = byte(buf, p, p + 3)
      c.pid = a * 16777216 + b * 65536 + cc * 256 + d
      c.secret = sub(buf, p + 4, p + 7)
    elseif t == 90 then
      if not authed then return nil, "protocol error: ready before authentication" end
      c.status = char(byte(buf, p))
      return true
    elseif t == 69 then
      local f = fields(buf, p, e)
      return nil, error_text(f), f
    elseif t == 118 then -- 'v' NegotiateProtocolVersion: accepted as it is
    else
      return nil, "protocol error: unexpected message " .. char(t) .. " at startup"
    end
  end
end

local function opt_string(opts, k, def)
  local v = opts[k]
  if v == nil then return def end
  if type(v) ~= "string" then
    error("rill.pg.connect: option " .. k .. " must be a string, got " .. type(v), 3)
  end
  if find(v, "\0", 1, true) then error("rill.pg.connect: option " .. k .. " has a NUL byte", 3) end
  return v
end

-- rill.pg.connect(opts) → a connection, or nil, err, fields.
function pg.connect(opts)
  if type(opts) ~= "table" then
    error("rill.pg.connect: opts must be a table, got " .. type(opts), 2)
  end
  local host = opt_string(opts, "host", "127.0.0.1")
  local port = opts.port or 5432
  if type(port) ~= "number" or port < 1 or port > 65535 or port ~= floor(port) then
    error("rill.pg.connect: port must be an integer 1-65535", 2)
  end
  local user = opt_string(opts, "user", "postgres")
  local o = {user = user, password = opt_string(opts, "password"),
    database = opt_string(opts, "database", user),
    application_name = opt_string(opts, "application_name")}
  local timeout = opts.timeout
  if timeout == nil then timeout = 60000 end
  if timeout == false then timeout = nil end
  if timeout ~= nil and type(timeout) ~= "number" then
    error("rill.pg.connect: timeout must be a number of ms", 2)
  end
  local max_message = opts.max_message or 64 * 1024 * 1024
  if type(max_message) ~= "number" or max_message < 1 then
    error("rill.pg.connect: max_message must be a number of bytes", 2)
  end
  local tls = opts.tls
  if tls ~= nil and tls ~= false and tls ~= true and type(tls) ~= "table" then
    error("rill.pg.connect: tls must be true, false or a table", 2)
  end
  local tls_opts
  if tls then
    tls_opts = {server_name = host, verify = true}
    if type(tls) == "table" then for k, v in pairs(tls) do tls_opts[k] = v end end
  end
  if opts.on_notice ~= nil and type(opts.on_notice) ~= "function" then
    error("rill.pg.connect: on_notice must be a function", 2)
  end
  local key = concat({host, port, user, o.database, hex(core.sha256(o.password or "")),
    tls_opts and concat({"tls", tostring(tls_opts.server_name), tostring(tls_opts.ca),
      tostring(tls_opts.verify)}, ",") or "plain", opts.decode_json and "json" or ""}, "|")
  if opts.pool ~= false then
    local c = pg.pool:get(key)
    if c then
      c:settimeout(timeout)
      c.on_notice = opts.on_notice
      return c
    end
  end
  local sock, err = rill.connect(host, port, {timeout = timeout})
  if not sock then return nil, err end
  sock:settimeout(timeout)
  local c = setmetatable({sock = sock, buf = "", pos = 1, timeout = timeout,
    max_message = max_message, statements = {}, nstatements = 0, seq = 0, queue = {},
    parameters = {}, gen = 0, status = "I", decode_json = opts.decode_json and
    require("rill.json").decode or nil, on_notice = opts.on_notice,
    key = opts.pool ~= false and key or nil, host = host, port = port}, Conn)
  if tls_opts then
    local ok
    ok, err = sock:write(i32(8) .. i32(80877103))
    local answer
    if ok then answer, err = sock:read(1) end
    if not answer then
      kill(c)
      return nil, err or "closed"
    end
    if answer ~= "S" then
      kill(c)
      return nil, "tls: the server does not accept TLS"
    end
    ok, err = sock:starttls(tls_opts)
    if not ok then
      kill(c)
      return nil, "tls: " .. tostring(err)
    end
  end
  local ok, f
  ok, err, f = startup(c, o)
  if not ok then
    kill(c)
    return nil, err, f
  end
  return c
end

-- Names for specs (the API reference walks these).
pg._Conn, pg._CopyOut, pg._CopyIn, pg._Notifications = Conn, CopyOut, CopyIn, Notifications

return pg
