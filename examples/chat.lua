-- A chat room over WebSocket: GET / serves a page; every message a browser
-- sends on /ws goes to every connected browser.
--   rill serve examples/chat.lua --workers 1    then open http://127.0.0.1:8080/ in two tabs
-- (one worker: each worker has a Lua state of its own, so clients on
-- different workers would not see each other's messages)
local rill = require "rill"

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

local clients = {} -- ws → {queue = {...}, busy = bool}
local MAX_QUEUE = 1000

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

local function broadcast(text)
  for ws in pairs(clients) do deliver(ws, text) end
end

local app = rill.router()
local n = 0

app:get("/", function(req, res)
  res:header("Content-Type", "text/html; charset=utf-8")
  res:send(page)
end)

app:websocket("/ws", function(ws, req)
  n = n + 1
  local name = "guest" .. n
  clients[ws] = {queue = {}, busy = false}
  broadcast(name .. " joined")
  while true do
    local msg = ws:receive()
    if not msg then break end
    local text = msg:read_all(4096)
    if text then broadcast(name .. ": " .. text) end
  end
  clients[ws] = nil
  broadcast(name .. " left")
end, {idle_timeout = 3600000})

return app
