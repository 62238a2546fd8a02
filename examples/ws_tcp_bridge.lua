-- A WebSocket ↔ TCP bridge: each WebSocket connection on / gets a TCP
-- connection to TARGET; binary message bytes go to it as their fragments
-- arrive, and what it sends comes back as binary messages. For example a
-- Postgres client that can only speak WebSocket, reaching a Postgres server.
--   TARGET=127.0.0.1:5432 rill serve examples/ws_tcp_bridge.lua --listen 127.0.0.1:8080
local rill = require "rill"

local host, port = (os.getenv("TARGET") or "127.0.0.1:5432"):match("^(.+):(%d+)$")

local app = rill.router()
app:websocket("/", function(ws)
  rill.proxy.ws_to_tcp(ws, host, tonumber(port))
end, {max_message = 1024 * 1024 * 1024, idle_timeout = 3600000})
return app
