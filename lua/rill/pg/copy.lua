-- rill.pg's streams: COPY out (a pull stream of the data), COPY in (a
-- writable one) and the notifications of LISTEN, as methods of the
-- connection (conn:copy_out, conn:copy_in, conn:notifications).
local rill = require "rill"

local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local concat = table.concat
local select, type, tostring, error, setmetatable = select, type, tostring, error,
  setmetatable
local W = require "rill.pg.wire"
local Conn, i32, msg, kill, fail, recv, next_msg, async, send, fields, finish_error, result,
  begin = W.Conn, W.i32, W.msg, W.kill, W.fail, W.recv, W.next_msg, W.async, W.send,
  W.fields, W.finish_error, W.result, W.begin

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

return {CopyOut = CopyOut, CopyIn = CopyIn, Notifications = Notifications}
