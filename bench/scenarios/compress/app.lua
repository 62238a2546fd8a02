-- compress, rill: GET /data.json answers a 1 MB JSON document (read once at
-- startup from $COMPRESS_BODY, the file nginx serves), gzip'd by
-- rill.middleware.compress at level $COMPRESS_LEVEL for clients that ask.
--   COMPRESS_BODY=data.json rill serve bench/scenarios/compress/app.lua
local rill = require "rill"

local f = assert(io.open(assert(os.getenv("COMPRESS_BODY"), "COMPRESS_BODY is not set"), "rb"))
local body = f:read("*a")
f:close()

local app = rill.router()
app:use(rill.middleware.compress{level = tonumber(os.getenv("COMPRESS_LEVEL")) or 6})
app:get("/data.json", function(req, res)
  res:header("Content-Type", "application/json")
  res:send(body)
end)
return app
