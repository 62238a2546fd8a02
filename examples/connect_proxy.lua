-- A forward proxy for HTTPS: CONNECT host:443 opens a tunnel (rill.pipe) to
-- hosts on the ALLOW list (comma separated, default "127.0.0.1").
--   ALLOW=example.com rill serve examples/connect_proxy.lua --listen 127.0.0.1:3128
--   curl -x http://127.0.0.1:3128 https://example.com/
local rill = require "rill"

local allowed = {}
for h in (os.getenv("ALLOW") or "127.0.0.1"):gmatch("[^,%s]+") do allowed[h] = true end

return function(req, res)
  if req.method ~= "CONNECT" then
    res:status(405):header("Allow", "CONNECT"):send("a CONNECT proxy\n")
    return
  end
  rill.proxy.connect(req, res, {
    allow = function(host) return allowed[host] end,
    idle_timeout = 300000,
  })
end
