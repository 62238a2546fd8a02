-- router, rill: GET /users/:id -> {"id":"42","name":"user 42"}
--   rill serve bench/scenarios/router/app.lua
local rill = require "rill"
local cjson = require "cjson"

local encode = cjson.encode

local app = rill.router()

app:get("/users/:id", function(req, res)
  local id = req.params.id
  res:header("Content-Type", "application/json")
  res:send(encode({id = id, name = "user " .. id}))
end)

return app
