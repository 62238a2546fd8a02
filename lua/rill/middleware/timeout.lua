-- rill.middleware.timeout(ms): a deadline for everything after it (the
-- middleware that follows and the handler), as the route option `timeout`
-- gives one route: past ms milliseconds a response not yet started is
-- answered 503, one started is cut, and the handler's current wait ends
-- with nil, "timeout" (see rill.http.deadline).
local type, tostring = type, tostring

return function(ms)
  if type(ms) ~= "number" or ms <= 0 then
    error("rill.middleware.timeout: ms must be a positive number, got " .. tostring(ms), 2)
  end
  local deadline = require("rill.http").deadline
  return function(req, res, next)
    return deadline(ms, next, req, res)
  end
end
