-- A length-prefixed protocol over raw TCP: each message is a 4-byte
-- big-endian length, then that many bytes; the server answers each with the
-- same framing around the message reversed.
--   rill run examples/lenprefix.lua [PORT]
local rill = require "rill"

local byte, char = string.byte, string.char
local MAX = 1024 * 1024 -- what one message may hold: this server reads it whole

local function u32(s)
  local a, b, c, d = byte(s, 1, 4)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function be32(n)
  return char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256,
    math.floor(n / 256) % 256, n % 256)
end

local function serve(sock)
  while true do
    local head = sock:read(4)
    if not head or #head < 4 then return end
    local n = u32(head)
    if n > MAX then return sock:write(be32(0)) end
    local msg = sock:read(n)
    if not msg or #msg < n then return end
    sock:write(be32(n), msg:reverse())
  end
end

local l = assert(rill.listen{host = "127.0.0.1", port = tonumber(arg[1]) or 7001, handler = serve,
  timeout = 30000, max_connections_per_address = 64})
rill.log("info", "length-prefixed server on 127.0.0.1:" .. l:port())
return serve
