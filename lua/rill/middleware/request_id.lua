-- rill.middleware.request_id([opts]): gives each request an id, for logs
-- and for the services it calls: req.id, and the same header on the
-- response.
--
-- opts.header: the header read and set (default "X-Request-Id").
-- opts.trust: take the id an incoming request carries, if valid (default
--   true; a proxy in front that sets it is the usual reason). Valid: 1 to
--   128 bytes of letters, digits and - _ . : + / = ~ @.
-- opts.generate: function(req) → id, for requests without a valid one
--   (default: 16 random bytes from the kernel, as 32 hex digits).
local core = require "rill.core"

local find, format, byte, gsub, type, tostring = string.find, string.format, string.byte,
  string.gsub, type, tostring

local function hex(c) return format("%02x", byte(c)) end

local function random_id()
  return (gsub(core.random(16), ".", hex))
end

local function valid(id)
  return type(id) == "string" and #id <= 128 and find(id, "^[A-Za-z0-9_.:+/=~@-]+$") ~= nil
end

return function(opts)
  opts = opts or {}
  local header = opts.header or "X-Request-Id"
  if type(header) ~= "string" or not find(header, "^[A-Za-z0-9!#$%%&'*+.^_`|~-]+$") then
    error("rill.middleware.request_id: header must be a header name, got " .. tostring(header), 2)
  end
  local trust = opts.trust ~= false
  local generate = opts.generate or random_id
  if type(generate) ~= "function" then
    error("rill.middleware.request_id: generate must be a function", 2)
  end
  return function(req, res, next)
    local id = trust and req.headers[header] or nil
    if not valid(id) then
      id = generate(req)
      if type(id) ~= "string" or find(id, "[%z\r\n]") then
        error("rill.middleware.request_id: generate returned " .. tostring(id) ..
          ", not a one-line string", 0)
      end
    end
    req.id = id
    res:header(header, id)
    return next()
  end
end
