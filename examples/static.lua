-- A small site with a JSON API beside it: the files under examples/www
-- (an index page, a stylesheet, an image) served by app:static, and
-- GET /api/time. Routes win over the files (a static segment beats the
-- mount's *rest), and a path with neither is the app's not_found page.
--
--   rill serve examples/static.lua
--   curl -i http://127.0.0.1:8080/                 the index page, with ETag
--   curl -I -z "$(date -u +'%a, %d %b %Y %T GMT')" http://127.0.0.1:8080/style.css   304
--   curl -r 0-15 http://127.0.0.1:8080/logo.png | xxd
--   curl http://127.0.0.1:8080/api/time
local rill = require "rill"

local app = rill.router()
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

app:get("/api/time", function(req, res)
  local now = rill.time()
  res:json({epoch = now, iso = os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(now))})
end)

-- Revalidated after a minute (ETag / Last-Modified make that a 304).
app:static("/", here .. "/www", {max_age = 60000})

app:not_found(function(req, res)
  res:header("Content-Type", "text/html; charset=utf-8")
  res:send("<!DOCTYPE html><title>Not found</title><h1>Not found</h1>\n")
end)

return app
