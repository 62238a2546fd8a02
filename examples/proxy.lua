-- A reverse proxy: everything goes to UPSTREAM (default http://127.0.0.1:9000),
-- bodies and WebSocket messages streamed both ways as they arrive.
--   UPSTREAM=http://127.0.0.1:9000 rill serve examples/proxy.lua --listen 127.0.0.1:8080
local rill = require "rill"

local upstream = os.getenv("UPSTREAM") or "http://127.0.0.1:9000"
local timeout = tonumber(os.getenv("UPSTREAM_TIMEOUT_MS")) or 60000

local app = rill.router()
app:proxy("/", upstream, {timeout = timeout})
return app
