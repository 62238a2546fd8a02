-- A chat room over WebSocket whose messages go through Redis pub/sub, so
-- that any number of workers and of rill instances share one room: every
-- worker keeps one subscription to the room's channel and hands what comes
-- to its own WebSockets; a message a browser sends is PUBLISHed.
--   redis-server --port 6379 &
--   rill serve examples/redis_chat.lua --listen 127.0.0.1:8080 &
--   rill serve examples/redis_chat.lua --listen 127.0.0.1:8081 &
--   then open http://127.0.0.1:8080/ and http://127.0.0.1:8081/
-- REDIS_HOST, REDIS_PORT (default 127.0.0.1:6379) and CHAT_CHANNEL
-- (default "rill:chat") set where the room is.
local rill = require "rill"

local REDIS = {host = os.getenv("REDIS_HOST") or "127.0.0.1",
  port = tonumber(os.getenv("REDIS_PORT")) or 6379, timeout = 5000}
local CHANNEL = os.getenv("CHAT_CHANNEL") or "rill:chat"
local MAX_QUEUE = 1000 -- messages a slow browser may fall behind before it is dropped

local page = [[<!doctype html>
<meta charset="utf-8"><title>rill chat</title>
<style>body{font:16px sans-serif;max-width:40em;margin:2em auto}#log{height:20em;overflow:auto;border:1px solid #ccc;padding:.5em}</style>
<div id="log"></div>
<form id="f"><input id="m" autocomplete="off" autofocus size="50"> <button>Send</button></form>
<script>
const log = document.getElementById("log"), m = document.getElementById("m");
const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
ws.onmessage = e => { const p = document.createElement("div"); p.textContent = e.data; log.append(p); log.scrollTop = log.scrollHeight; };
ws.onclose = e => { const p = document.createElement("div"); p.textContent = "(closed " + e.code + ")"; log.append(p); };
document.getElementById("f").onsubmit = e => { e.preventDefault(); if (m.value) ws.send(m.value); m.value = ""; };
</script>
]]

-- This worker's WebSockets: ws → {queue = {...}, busy = bool}.
local clients = {}

-- Each client gets its messages in order from one sender thread at a time;
-- a client that falls MAX_QUEUE messages behind is dropped.
local function deliver(ws, text)
  local c = clients[ws]
  if not c then return end
  if #c.queue >= MAX_QUEUE then
    clients[ws] = nil
    rill.spawn(function() ws:close(1008, "too slow") end)
    return
  end
  c.queue[#c.queue + 1] = text
  if c.busy then return end
  c.busy = true
  rill.spawn(function()
    while #c.queue > 0 do
      local msg = table.remove(c.queue, 1)
      if not ws:send(msg) then break end
    end
    c.busy = false
  end)
end

-- The worker's subscription, made when its first client comes and kept
-- (reconnecting if Redis goes away) until the worker stops: one thread
-- reads the channel and hands each message to this worker's clients.
local sub, started = nil, false

local function subscriber()
  rill.on_shutdown(function()
    if sub then sub:close() end
  end)
  while not rill.stopping() do
    local r, err = rill.redis.connect(REDIS)
    if r then r, err = r:subscribe(CHANNEL) end
    if r then
      sub = r
      for msg in sub:messages() do
        for ws in pairs(clients) do deliver(ws, msg.data) end
      end
      err = sub.err
      sub = nil
    end
    if not rill.stopping() then
      rill.log("warn", "redis_chat: subscription to " .. CHANNEL .. ": " .. tostring(err))
      rill.sleep(1000)
    end
  end
end

-- Waits (up to 5 s) until the worker is subscribed, so that a client that
-- has been welcomed misses nothing.
local function ready()
  if not started then
    started = true
    rill.spawn(subscriber)
  end
  for _ = 1, 500 do
    if sub then return true end
    rill.sleep(10)
  end
  return false
end

local function publish(text)
  local r, err = rill.redis.connect(REDIS)
  if not r then return nil, err end
  local ok, perr = r:publish(CHANNEL, text)
  r:release()
  return ok, perr
end

local app = rill.router()

app:get("/", function(req, res)
  res:header("Content-Type", "text/html; charset=utf-8")
  res:send(page)
end)

app:websocket("/ws", function(ws, req)
  local name = req.query.name or ("guest" .. math.random(1000000))
  if not ready() then
    ws:close(1011, "chat unavailable")
    return
  end
  -- the welcome first, then the room's messages (it leaves when this
  -- thread next waits, before any sender thread of deliver() runs)
  ws:send("welcome " .. name)
  clients[ws] = {queue = {}, busy = false}
  publish(name .. " joined")
  while true do
    local msg = ws:receive()
    if not msg then break end
    local text = msg:read_all(4096)
    if text then publish(name .. ": " .. text) end
  end
  clients[ws] = nil
  publish(name .. " left")
end, {idle_timeout = 3600000})

return app
