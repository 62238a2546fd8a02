-- An HTTPS server from a script.
--
-- Make a self-signed certificate first:
--   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
--     -keyout key.pem -out cert.pem -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost"
-- then:
--   rill run examples/https.lua cert.pem key.pem [PORT]
--   curl --cacert cert.pem https://localhost:8443/
--
-- `rill serve APP.lua --listen 127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem`
-- does the same for any app.
local rill = require "rill"

local cert, key, port = arg[1], arg[2], tonumber(arg[3]) or 8443
if not cert or not key then
  io.stderr:write("usage: rill run examples/https.lua CERT KEY [PORT]\n")
  return 2
end

local app = rill.router()
app:get("/", function(req, res)
  res:header("Content-Type", "text/plain")
  res:send("Hello over TLS\n")
end)

local l, err = rill.http.listen{host = "127.0.0.1", port = port, handler = app,
  tls = {cert = cert, key = key}}
if not l then
  io.stderr:write("rill: ", err, "\n")
  return 1
end
rill.log("info", ("https on https://127.0.0.1:%d/"):format(l:port()))
