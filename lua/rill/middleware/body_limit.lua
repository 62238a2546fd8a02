-- rill.middleware.body_limit(max) or body_limit{max = bytes}: requests
-- with a body over max bytes get 413 (below the server's max_body_bytes,
-- for the routes it is used on).
--
-- A Content-Length over max is answered 413 at once, before the handler
-- runs (and before 100 Continue, so the client sends nothing). A chunked
-- body is counted as it is read: the read that passes max fails with
-- "body too large", and the request is answered 413 whatever the handler then
-- sends, as for max_body_bytes. Either way the connection is closed after
-- the answer, since the rest of the body is not read.
local type, tonumber, tostring = type, tonumber, tostring

return function(opts)
  local max = type(opts) == "table" and opts.max or opts
  if type(max) ~= "number" or max < 1 then
    error("rill.middleware.body_limit: max must be a number of bytes (at least 1), got " ..
      tostring(max), 2)
  end
  return function(req, res, next)
    local len = req.headers["content-length"]
    if len and (tonumber(len) or 0) > max then
      res:status(413):header("Content-Type", "text/plain"):header("Connection", "close")
      return res:send("request body too large\n")
    end
    req._c:_body_max(req._g, max)
    return next()
  end
end
