-- WebSocket echo: each message is streamed back fragment by fragment as its
-- frames arrive, so a message of any size flows through in bounded memory.
--   rill serve examples/ws_echo.lua        then connect to ws://127.0.0.1:8080/
local rill = require "rill"

local app = rill.router()

local function echo(ws)
  while true do
    local msg = ws:receive()
    if not msg then return end -- closed by the peer (or timed out)
    -- a message that came in one frame goes back in one (its length is
    -- known before its bytes), its bytes leaving as they arrive
    local out = ws:send_stream(msg.type, nil, msg.length)
    for chunk in msg:chunks() do
      if not out:write(chunk) then return end
    end
    out:close()
  end
end

-- Messages up to 1 GiB: nothing holds a whole message, so the limit only
-- bounds what a peer can make the server read.
app:websocket("/", echo, {max_message = 1024 * 1024 * 1024})

-- The same with permessage-deflate at explicit settings (those of the
-- benchmark's Node peer): every message compressed, zlib level 1, memLevel
-- 8, window 15. (On "/" too it is on, at the defaults, when a client offers it.)
app:websocket("/deflate", echo, {max_message = 1024 * 1024 * 1024,
  deflate = {min_size = 0, level = 1, mem_level = 8, window_bits = 15}})

return app
