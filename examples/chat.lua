-- A chat room over WebSocket: GET / serves a page; every message a browser
-- sends on /ws goes to every connected browser, on every worker.
--   rill serve examples/chat.lua    then open http://127.0.0.1:8080/ in two tabs
-- Workers share nothing in Lua: the room is a shared channel
-- (rill.shared.channel), which each client subscribes to. A client whose
-- queue overflows (it reads too slowly) is closed with 1008.
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

local room = rill.shared.channel("chat")
local n = 0

local app = rill.router()

app:get("/", function(req, res)
  res:header("Content-Type", "text/html; charset=utf-8")
  res:send(page)
end)

app:websocket("/ws", function(ws, req)
  n = n + 1
  local name = ("guest%d.%d"):format(rill.worker_id(), n) -- unique across workers
  -- Subscribed before it says it joined: it sees its own "joined" first.
  local sub = room:subscribe({queue = 1000})
  local sender = rill.spawn(function()
    for msg in sub:messages() do
      if msg == false then -- overflow: it fell 1000 messages behind
        ws:close(1008, "too slow")
        break
      end
      if not ws:send(msg) then break end
    end
    sub:close()
  end)
  room:publish(name .. " joined")
  while true do
    local msg = ws:receive()
    if not msg then break end
    local text = msg:read_all(4096)
    if text then room:publish(name .. ": " .. text) end
  end
  sub:close() -- ends the sender
  rill.wait(sender)
  room:publish(name .. " left")
end, {idle_timeout = 3600000})

return app
