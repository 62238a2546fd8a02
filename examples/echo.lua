-- Streaming bodies both ways.   rill serve examples/echo.lua
--   GET  /            a short greeting
--   POST /echo        the request body streamed back as it arrives (chunked)
--   POST /count       the body's length in bytes, read in chunks
--                     (PUT works for both: curl -T uploads with PUT)
--   GET  /stream?n=N  N numbered lines, streamed without a Content-Length
--   GET  /bytes?n=N   N bytes in 64 KiB writes, under a Content-Length
local rill = require "rill"

local app = rill.router()

app:get("/", function(req, res)
  res:header("Content-Type", "text/plain")
  res:send("rill echo: POST /echo, POST /count, GET /stream?n=N\n")
end)

local function echo(req, res)
  res:header("Content-Type", req.headers["content-type"] or "application/octet-stream")
  local body = req.body
  while true do
    local chunk, err = body:read_some(65536)
    if not chunk then
      if err then error("reading the body: " .. err) end
      break
    end
    local ok, werr = res:write(chunk)
    if not ok then error("writing the echo: " .. werr) end
  end
  res:finish()
end

local function count(req, res)
  local n = 0
  for chunk in req.body:chunks(65536) do
    n = n + #chunk
  end
  res:header("Content-Type", "text/plain")
  res:send(("%d\n"):format(n))
end

app:post("/echo", echo)
app:put("/echo", echo)
app:post("/count", count)
app:put("/count", count)

app:get("/stream", function(req, res)
  local n = tonumber(req.query.n) or 10
  res:header("Content-Type", "text/plain")
  for i = 1, n do
    local ok, err = res:write(("line %d\n"):format(i))
    if not ok then return rill.log("info", "stream stopped at line", i, err) end
  end
end)

local BLOCK = string.rep("\0", 65536)

app:get("/bytes", function(req, res)
  local n = tonumber(req.query.n) or 0
  res:header("Content-Type", "application/octet-stream")
  res:header("Content-Length", tostring(n))
  while n > 0 do
    local piece = n >= #BLOCK and BLOCK or BLOCK:sub(1, n)
    if not res:write(piece) then return end
    n = n - #piece
  end
end)

return app
