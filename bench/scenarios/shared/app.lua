-- shared, rill: GET /dict -> one incr and ten gets on a shared dict, the
-- last value as the answer
--   rill serve bench/scenarios/shared/app.lua
local rill = require "rill"

local d = rill.shared.dict("bench", {size = 1024 * 1024})
d:set("greeting", "Hello, world!")
for i = 1, 10 do d:set("k" .. i, "value " .. i) end
local keys = {}
for i = 1, 10 do keys[i] = "k" .. i end

return function(req, res)
  d:incr("hits", 1, 0)
  local v
  for i = 1, 10 do v = d:get(keys[i]) end
  res:send(d:get("greeting"))
end
