-- TLS termination in front of a plain TCP service: TLS clients on LISTEN,
-- bytes passed both ways to TARGET with rill.pipe.
--   rill run examples/tcp_proxy.lua CERT KEY [LISTEN_PORT [TARGET_HOST:PORT]]
local rill = require "rill"

local cert, key = arg[1], arg[2]
local port = tonumber(arg[3]) or 8443
local host, tport = (arg[4] or "127.0.0.1:7000"):match("^(.+):(%d+)$")
if not cert or not key then
  io.stderr:write("usage: rill run examples/tcp_proxy.lua CERT KEY [PORT [HOST:PORT]]\n")
  return 2
end

local l, err = rill.listen{host = "127.0.0.1", port = port, tls = {cert = cert, key = key},
  handler = function(client)
    local up, cerr = rill.connect(host, tonumber(tport), 5000)
    if not up then
      rill.log("warn", "tcp_proxy: " .. tostring(cerr))
      return
    end
    rill.pipe(client, up, {idle_timeout = 300000})
  end}
if not l then
  io.stderr:write("rill: ", err, "\n")
  return 1
end
rill.log("info", ("tcp proxy on 127.0.0.1:%d → %s:%s"):format(l:port(), host, tport))
