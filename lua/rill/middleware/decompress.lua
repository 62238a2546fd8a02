-- rill.middleware.decompress([opts]): request bodies sent with
-- Content-Encoding gzip or deflate are read decoded (req.body, req:json,
-- req:form, req:parts), as Express's body-parser does with inflate = true.
--
--   app:use(rill.middleware.decompress{limit = 16 * 1024 * 1024})
--
-- opts.limit: bytes the decoded body may reach (default 16 MiB); a read past
--   it fails with "too large" and the request is answered 413 whatever the
--   handler sends (so a small bomb never grows memory: the body is inflated
--   as it is read, a buffer at a time).
--
-- A coding other than gzip, x-gzip, deflate or identity (or more than one
-- coding) is answered 415 with Accept-Encoding: gzip, deflate (RFC 7694).
-- Corrupt or truncated compressed data fails the read with "bad compressed
-- body: ..." and the request is answered 400. req.headers still show the
-- request as sent (Content-Encoding, Content-Length of the compressed body).
--
-- Without the middleware a body is given as sent; req:decompress([opts])
-- does the same for one request.
local tostring, type = tostring, type

local M = {}

M.DEFAULT_LIMIT = 16 * 1024 * 1024

local FORMATS = {gzip = "gzip", ["x-gzip"] = "gzip", deflate = "deflate", identity = false}

local function check_limit(limit, fname, level)
  if limit == nil then return M.DEFAULT_LIMIT end
  if type(limit) ~= "number" or limit < 1 or limit % 1 ~= 0 then
    error(fname .. ": limit must be a byte count (at least 1), got " .. tostring(limit), level + 1)
  end
  return limit
end

-- req:decompress([opts]) → true (req.body is the decoded body from now on),
-- or nil, "unsupported content encoding: ..." (the request is not changed).
function M._request(req, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("req:decompress: opts must be a table, got " .. type(opts), 2)
  end
  local limit = check_limit(opts and opts.limit, "req:decompress", 2)
  local ce = req.headers["content-encoding"]
  if ce == nil then return true end
  if type(ce) == "table" then ce = table.concat(ce, ",") end
  local coding = ce:lower():match("^%s*([^,%s]+)%s*$")
  local format = coding and FORMATS[coding]
  if format == nil then return nil, "unsupported content encoding: " .. ce end
  if format == false then return true end -- identity
  if rawget(req, "_decoded") then return true end
  if rawget(req, "body") ~= nil then
    error("req:decompress: the body stream was taken already", 2)
  end
  local h = req.headers
  if h["transfer-encoding"] == nil and (h["content-length"] == nil or h["content-length"] == "0") then
    return true -- no body to decode
  end
  rawset(req, "body", req._c:_inflate(req._g, format, limit))
  rawset(req, "_decoded", true)
  return true
end

local function new(opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("rill.middleware.decompress: opts must be a table, got " .. type(opts), 2)
  end
  local limit = check_limit(opts and opts.limit, "rill.middleware.decompress", 2)
  local o = {limit = limit}
  return function(req, res, next)
    if req.headers["content-encoding"] ~= nil then
      local ok, err = M._request(req, o)
      if not ok then
        res:status(415):header("Content-Type", "text/plain")
          :header("Accept-Encoding", "gzip, deflate")
        return res:send(err .. "\n")
      end
    end
    return next()
  end
end

return setmetatable(M, {__call = function(_, opts) return new(opts) end})
