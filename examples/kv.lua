-- A small key/value server speaking the Redis protocol (RESP2) over raw TCP,
-- with its data in a shared dict: every worker serves the same data.
--   KV_PORT=6380 rill serve examples/kv.lua      then: redis-cli -p 6380 set a 1
-- Commands: PING, GET, SET key value [EX s | PX ms] [NX | XX], DEL, EXISTS,
-- INCR, INCRBY, DECR, PTTL, KEYS * (at most 1000), FLUSHALL, DBSIZE (keys
-- up to 1000), WORKER (the worker serving this connection), QUIT. The app
-- also answers HTTP: GET /KEY gives the value.
local rill = require "rill"

local data = rill.shared.dict("kv", {size = 64 * 1024 * 1024})

local MAX_ARGS = 16          -- arguments in one command
local MAX_BULK = 1024 * 1024 -- bytes in one argument
local IDLE_MS = 300000       -- an idle connection is closed

local function bulk(s)
  if s == nil then return "$-1\r\n" end
  return ("$%d\r\n%s\r\n"):format(#s, s)
end

local function int(n) return (":%d\r\n"):format(n) end
local function err(msg) return "-ERR " .. msg .. "\r\n" end

-- Integers are stored as numbers, so that INCR is one atomic dict:incr;
-- everything else as strings.
local function value_of(s)
  if #s <= 15 and s:match("^%-?%d+$") then return tonumber(s) end
  return s
end

local function text_of(v)
  if type(v) == "number" then return ("%.0f"):format(v) end
  return v
end

local commands = {}

function commands.PING(a) return a[2] and bulk(a[2]) or "+PONG\r\n" end
function commands.GET(a)
  if #a ~= 2 then return err("wrong number of arguments for 'get'") end
  local v = data:get(a[2])
  return bulk(v ~= nil and text_of(v) or nil)
end
function commands.SET(a)
  if #a < 3 then return err("wrong number of arguments for 'set'") end
  local ttl, mode = 0, "set"
  local i = 4
  while a[i] do
    local opt = a[i]:upper()
    if (opt == "EX" or opt == "PX") and tonumber(a[i + 1]) then
      ttl = tonumber(a[i + 1]) * (opt == "EX" and 1000 or 1)
      if ttl <= 0 then return err("invalid expire time in 'set' command") end
      i = i + 2
    elseif opt == "NX" then mode, i = "add", i + 1
    elseif opt == "XX" then mode, i = "replace", i + 1
    else return err("syntax error") end
  end
  local ok, e = data[mode](data, a[2], value_of(a[3]), ttl)
  if ok then return "+OK\r\n" end
  if e == "exists" or e == "not found" then return bulk(nil) end
  return err(e)
end
function commands.DEL(a)
  local n = 0
  for i = 2, #a do
    if data:get(a[i]) ~= nil then n = n + 1 end
    data:delete(a[i])
  end
  return int(n)
end
function commands.EXISTS(a)
  local n = 0
  for i = 2, #a do if data:get(a[i]) ~= nil then n = n + 1 end end
  return int(n)
end
local function incr(key, by)
  if not by then return err("value is not an integer or out of range") end
  local v, e = data:incr(key, by, 0)
  if v then return int(v) end
  if e == "not a number" then return err("value is not an integer or out of range") end
  return err(e)
end
function commands.INCR(a) return incr(a[2] or "", 1) end
function commands.DECR(a) return incr(a[2] or "", -1) end
function commands.INCRBY(a) return incr(a[2] or "", tonumber(a[3] or "")) end
function commands.PTTL(a)
  local ms = data:ttl(a[2] or "")
  if not ms then return int(-2) end
  return int(ms == 0 and -1 or math.ceil(ms))
end
function commands.KEYS(a)
  if a[2] ~= "*" then return err("only KEYS * is supported") end
  local keys = data:keys(1000)
  local out = {"*" .. #keys .. "\r\n"}
  for i, k in ipairs(keys) do out[i + 1] = bulk(k) end
  return table.concat(out)
end
function commands.DBSIZE() return int(#data:keys(1000)) end
function commands.FLUSHALL() data:flush_all() return "+OK\r\n" end
function commands.WORKER() return int(rill.worker_id()) end

-- Reads one command: a RESP array of bulk strings, or an inline command (a
-- line of words). Returns its arguments, or nil and what went wrong.
local function read_command(sock)
  local line, e = sock:read_until("\r\n", MAX_BULK + 64)
  if not line then return nil, e end
  if line:sub(1, 1) ~= "*" then
    local a = {}
    for w in line:gmatch("%S+") do
      if #a == MAX_ARGS then return nil, "too many arguments" end
      a[#a + 1] = w
    end
    return a
  end
  local n = tonumber(line:sub(2))
  if not n or n < 1 or n > MAX_ARGS then return nil, "bad or too many arguments" end
  local a = {}
  for i = 1, n do
    local head = sock:read_until("\r\n", 32)
    local len = head and head:match("^%$(%d+)$")
    len = tonumber(len)
    if not len or len > MAX_BULK then return nil, "bad bulk length" end
    local arg = sock:read(len + 2)
    if not arg or #arg < len + 2 or arg:sub(-2) ~= "\r\n" then return nil, "bad bulk" end
    a[i] = arg:sub(1, len)
  end
  return a
end

local function serve(sock)
  sock:settimeout(IDLE_MS)
  while true do
    local a, e = read_command(sock)
    if not a then
      if e ~= "closed" and e ~= "timeout" and e ~= nil then sock:write(err("protocol: " .. e)) end
      break
    end
    if #a > 0 then
      local name = a[1]:upper()
      if name == "QUIT" then
        sock:write("+OK\r\n")
        break
      end
      local cmd = commands[name]
      if not sock:write(cmd and cmd(a) or err("unknown command '" .. a[1] .. "'")) then break end
    end
  end
  sock:close()
end

-- The listener outlives a reload (the new code takes its connections): it is
-- kept in a table the reload leaves alone.
local state = package.loaded["kv.example.state"] or {}
package.loaded["kv.example.state"] = state
if state.listener then
  state.listener:set_handler(serve)
else
  local port = tonumber(os.getenv("KV_PORT") or "6380")
  state.listener = assert(rill.listen{host = "127.0.0.1", port = port, handler = serve})
  -- (not "host:port": a test harness takes the first such line as the HTTP port)
  rill.log("info", ("kv: worker %d serves RESP on port %d"):format(rill.worker_id(),
    state.listener:port()))
end

-- HTTP: GET /KEY → the value (404 when none)
return function(req, res)
  local v = data:get(req.path:sub(2))
  if v == nil then return res:status(404):send("not found\n") end
  res:header("X-Worker", tostring(rill.worker_id()))
  res:send(text_of(v) .. "\n")
end
