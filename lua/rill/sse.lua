-- Server-sent events (the WHATWG HTML "text/event-stream" format): the
-- writer res:sse() returns.
--
--   app:get("/events", function(req, res)
--     local w = res:sse()
--     while w:send{event = "tick", data = os.date(), id = n} do rill.sleep(1000) end
--   end)
--
-- The head goes at once (text/event-stream, Cache-Control: no-cache,
-- X-Accel-Buffering: no so that nginx passes events on as they come), and
-- each event or comment is flushed: it leaves when sent, not when the
-- handler next waits. Sends return true, or nil and why ("closed" once the
-- client has gone), as res:write does.
local find, gsub, gmatch, concat, tostring, type = string.find, string.gsub, string.gmatch,
  table.concat, tostring, type

local M = {}

local Writer = {}
Writer.__index = Writer
Writer.__name = "rill.sse.writer"
Writer.__tostring = function() return "rill.sse.writer" end

-- new(res [, opts]): opts.headers, a table name → value of more headers.
function M.new(res, opts)
  res:header("Content-Type", "text/event-stream; charset=utf-8")
  res:header("Cache-Control", "no-cache")
  res:header("X-Accel-Buffering", "no")
  if opts and opts.headers then
    for k, v in pairs(opts.headers) do res:header(k, v) end
  end
  local ok, err = res:flush()
  return setmetatable({res = res, err = not ok and err or nil}, Writer)
end

-- A field value must stay on its line.
local function one_line(name, v)
  if type(v) == "number" then v = tostring(v) end
  if type(v) ~= "string" or find(v, "[%z\r\n]") then
    error("sse send: " .. name .. " must be a string without CR, LF or NUL", 3)
  end
  return v
end

-- Appends "field: line" for each line of s (CRLF, CR or LF end a line).
local function lines(parts, field, s)
  s = gsub((gsub(s, "\r\n", "\n")), "\r", "\n")
  for line in gmatch(s .. "\n", "([^\n]*)\n") do
    parts[#parts + 1] = field
    parts[#parts + 1] = line
    parts[#parts + 1] = "\n"
  end
end

local function emit(self, text)
  if self.err then return nil, self.err end
  local res = self.res
  local ok, err = res:write(text)
  if ok then ok, err = res:flush() end
  return ok, err
end

-- w:send(event): event is {event =, data =, id =, retry =} or a string (the
-- data). data (a string or number) goes as one "data:" line per line; event
-- and id must be one line; retry is the client's reconnection delay in ms.
function Writer:send(ev)
  if type(ev) ~= "table" then ev = {data = ev} end
  local parts = {}
  if ev.event ~= nil then
    parts[#parts + 1] = "event: " .. one_line("event", ev.event) .. "\n"
  end
  if ev.id ~= nil then parts[#parts + 1] = "id: " .. one_line("id", ev.id) .. "\n" end
  local retry = ev.retry
  if retry ~= nil then
    if type(retry) ~= "number" or retry % 1 ~= 0 or retry < 0 then
      error("sse send: retry must be a non-negative integer (ms), got " .. tostring(retry), 2)
    end
    parts[#parts + 1] = "retry: " .. ("%d"):format(retry) .. "\n"
  end
  local data = ev.data
  if data ~= nil then
    if type(data) == "number" then data = tostring(data) end
    if type(data) ~= "string" then
      error("sse send: data must be a string or a number, got " .. type(data), 2)
    end
    lines(parts, "data: ", data)
  end
  if #parts == 0 then error("sse send: nothing to send (no data, event, id or retry)", 2) end
  parts[#parts + 1] = "\n"
  return emit(self, concat(parts))
end

-- w:comment([text]): a comment line, which clients ignore: a heartbeat that
-- keeps proxies from closing an idle stream.
function Writer:comment(text)
  text = text == nil and "" or tostring(text)
  local parts = {}
  lines(parts, ":", text ~= "" and " " .. gsub(text, "\r?\n", "\n ") or "")
  parts[#parts + 1] = "\n"
  return emit(self, concat(parts))
end

-- w:close(): ends the stream (the handler returning ends it too).
function Writer:close()
  return self.res:finish()
end

return M
