-- Fetches a page over HTTPS with the TLS client: verifies the certificate
-- (against CAFILE, or the system's CA bundle) and the host name.
--   rill run examples/tls_client.lua https://localhost:8443/ [CAFILE [CONNECT_ADDRESS]]
local rill = require "rill"

local url, ca, addr = arg[1], arg[2], arg[3]
local host, port, path = (url or ""):match("^https://([^:/]+):?(%d*)(.*)$")
if not host then
  io.stderr:write("usage: rill run examples/tls_client.lua https://HOST[:PORT]/PATH [CAFILE]\n")
  return 2
end
port = tonumber(port) or 443
if path == "" then path = "/" end

local sock, err = rill.connect(addr or host, port, {timeout = 10000,
  tls = {ca = ca, server_name = host, alpn = {"http/1.1"}}})
if not sock then
  io.stderr:write("rill: ", err, "\n")
  return 1
end
sock:settimeout(10000)
sock:write("GET ", path, " HTTP/1.1\r\nHost: ", host, "\r\nConnection: close\r\n\r\n")
local page, rerr = sock:read_all(16 * 1024 * 1024)
sock:close()
if not page then
  io.stderr:write("rill: ", rerr, "\n")
  return 1
end
io.write(page)
return 0
