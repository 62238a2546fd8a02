-- transports, rill: one handler for the length-prefixed echo (a 4-byte
-- big-endian length, then that many bytes, sent back as they came), served
-- on four transports; over WebSocket, ws:as_stream() makes the binary
-- messages one byte stream, so the same handler serves them:
--   the --listen port     WebSocket on /
--   LP_WSS                WebSocket over TLS
--   LP_TCP                TCP
--   LP_TLS                TLS over TCP
-- The ports, LP_CERT and LP_KEY come from the environment.
--   LP_WSS=P1 LP_TCP=P2 LP_TLS=P3 LP_CERT=cert.pem LP_KEY=key.pem \
--     rill serve app.lua --listen 127.0.0.1:P
local rill = require "rill"

local byte = string.byte
local MAX = 1024 * 1024 * 1024

local function echo(s)
  while true do
    local head = s:read(4)
    if not head or #head < 4 then return end
    local a, b, c, d = byte(head, 1, 4)
    local n = ((a * 256 + b) * 256 + c) * 256 + d
    if n > MAX then return end
    local msg = s:read(n)
    if not msg or #msg < n then return end
    if not s:write(head, msg) then return end
  end
end

local function port(name) return assert(tonumber(os.getenv(name)), name) end
local tls = {cert = assert(os.getenv("LP_CERT")), key = assert(os.getenv("LP_KEY"))}
local app = rill.router()
app:websocket("/", function(ws) echo(ws:as_stream()) end, {max_message = MAX})

assert(rill.http.listen{host = "127.0.0.1", port = port("LP_WSS"), handler = app, tls = tls})
assert(rill.listen{host = "127.0.0.1", port = port("LP_TCP"), handler = echo, timeout = false})
assert(rill.listen{host = "127.0.0.1", port = port("LP_TLS"), handler = echo, timeout = false,
  tls = tls})
return app
