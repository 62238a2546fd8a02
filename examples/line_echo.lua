-- A line echo server built on read_until("\n"), over raw TCP and over
-- WebSocket: the same handler serves both, since ws:as_stream() turns the
-- binary messages of a WebSocket into one byte stream.
--   rill run examples/line_echo.lua [PORT [WS_PORT]]
--   then: nc 127.0.0.1 7000, or a WebSocket client on ws://127.0.0.1:7080/
local rill = require "rill"

local port = tonumber(arg[1]) or 7000 -- 0: any free port

local function serve(sock)
  sock:settimeout(60000)
  while true do
    local line, err = sock:read_until("\n", 8192)
    if not line then
      if err == "too long" then sock:write("error: line too long\n") end
      return
    end
    sock:write(line, "\n")
  end
end

local l = assert(rill.listen{host = "127.0.0.1", port = port, handler = serve})
rill.log("info", "line echo on 127.0.0.1:" .. l:port())

local app = rill.router()
app:websocket("/", function(ws) serve(ws:as_stream()) end)
local wl = assert(rill.http.listen{host = "127.0.0.1", port = tonumber(arg[2]) or 7080,
  handler = app})
rill.log("info", "line echo over WebSocket on ws://127.0.0.1:" .. wl:port() .. "/")
return serve
