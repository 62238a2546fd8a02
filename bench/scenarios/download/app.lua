-- download, rill: GET /download?blocks=N sends N blocks of 64 KiB, one
-- res:write each, under a Content-Length.
--   rill serve bench/scenarios/download/app.lua
local BLOCK = string.rep("x", 65536)

return function(req, res)
  local n = tonumber(req.query.blocks) or 1
  res:header("Content-Type", "application/octet-stream")
  res:header("Content-Length", tostring(n * #BLOCK))
  for _ = 1, n do
    if not res:write(BLOCK) then return end -- the client went away
  end
end
