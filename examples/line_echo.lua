-- A line echo server over raw TCP, built on read_until("\n").
--   rill run examples/line_echo.lua [PORT]      then: nc 127.0.0.1 7000
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
return serve
