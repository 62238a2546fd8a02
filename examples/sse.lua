-- Server-sent events: GET /events streams a numbered tick every second until
-- the client leaves; the server notices at once (req:on_close) and its count
-- of clients, at GET /clients, goes down. (Per worker: run with --workers 1.)
--   rill serve examples/sse.lua --workers 1
--   curl -N http://127.0.0.1:8080/events
local rill = require "rill"

local interval = tonumber(os.getenv("SSE_INTERVAL_MS")) or 1000
local clients = 0

local app = rill.router()

app:get("/events", function(req, res)
  local events = res:sse()
  clients = clients + 1
  req:on_close(function()
    clients = clients - 1
    rill.log("info", "an event stream's client left")
  end)
  local n = 0
  while not req.closed do
    n = n + 1
    if not events:send{event = "tick", id = tostring(n), data = "tick " .. n} then break end
    rill.sleep(interval)
  end
end)

app:get("/clients", function(req, res)
  res:send(tostring(clients))
end)

return app
