-- rill.middleware.cors([opts]): Cross-Origin Resource Sharing (the Fetch
-- standard's CORS protocol).
--
--   app:use(rill.middleware.cors{origins = {"https://app.example"}, credentials = true})
--
-- opts.origins: "*" (default: any origin), a list of origins
--   ("https://app.example", scheme, host and port as the browser sends them),
--   or function(origin, req) → true to allow.
-- opts.methods: methods a preflight allows (default GET, HEAD, PUT, PATCH,
--   POST, DELETE).
-- opts.headers: request headers a preflight allows (default: those it asks
--   for, Access-Control-Request-Headers, are allowed).
-- opts.expose: response headers the page may read (default: none beyond
--   the CORS-safelisted ones).
-- opts.credentials: true lets the page send cookies and read the answer
--   (default false); the allowed origin is then named, never "*".
-- opts.max_age: ms a browser may keep a preflight's answer (default: not
--   sent; the header carries whole seconds, rounded down).
--
-- A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
-- answered here with 204, and goes no further; from an origin not allowed it
-- gets a 204 without Access-Control-Allow-* headers, which the browser takes
-- as a refusal. Other requests go on, with Access-Control-Allow-Origin (and
-- -Credentials, -Expose-Headers) added when their origin is allowed.
-- Answers that depend on the origin (a list or function, or credentials)
-- carry Vary: Origin, as do preflight answers, so that caches keep them
-- apart.
local concat, floor, type, tostring, ipairs = table.concat, math.floor, type, tostring, ipairs

local DEFAULT_METHODS = {"GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"}

local function bad(name, what, got)
  error("rill.middleware.cors: " .. name .. " must be " .. what .. ", got " .. tostring(got), 3)
end

local function list(v, name)
  if v == nil then return nil end
  if type(v) ~= "table" then bad(name, "a list of strings", v) end
  for _, s in ipairs(v) do
    if type(s) ~= "string" or s:find("[%z\r\n,]") then
      bad(name, "a list of strings (no CR, LF, NUL or comma)", s)
    end
  end
  return concat(v, ", ")
end

return function(opts)
  opts = opts or {}
  local origins = opts.origins == nil and "*" or opts.origins
  local allow -- function(origin, req) → bool
  local any = origins == "*"
  if any then
    allow = function() return true end
  elseif type(origins) == "function" then
    allow = origins
  elseif type(origins) == "table" then
    local set = {}
    for _, o in ipairs(origins) do
      if type(o) ~= "string" then bad("origins", "a list of strings", o) end
      set[o] = true
    end
    allow = function(origin) return set[origin] == true end
  else
    bad("origins", '"*", a list of origins or a function', origins)
  end
  local methods = list(opts.methods or DEFAULT_METHODS, "methods")
  local headers = list(opts.headers, "headers")
  local expose = list(opts.expose, "expose")
  local credentials = opts.credentials == true
  local max_age = opts.max_age
  if max_age ~= nil then
    if type(max_age) ~= "number" or max_age < 0 then
      bad("max_age", "a non-negative number of ms", max_age)
    end
    max_age = ("%d"):format(floor(max_age / 1000))
  end
  -- "*" only when the answer is the same for every origin
  local star = any and not credentials
  local varies = not star

  local function allow_origin(res, origin)
    res:header("Access-Control-Allow-Origin", star and "*" or origin)
    if credentials then res:header("Access-Control-Allow-Credentials", "true") end
  end

  return function(req, res, next)
    local h = req.headers
    local origin = h.origin
    if type(origin) == "table" then origin = nil end -- repeated: not a browser's
    if req.method == "OPTIONS" and origin and h["access-control-request-method"] then
      res:status(204)
      res:add_header("Vary", "Origin")
      if allow(origin, req) then
        allow_origin(res, origin)
        res:header("Access-Control-Allow-Methods", methods)
        local asked = h["access-control-request-headers"]
        if headers then
          res:header("Access-Control-Allow-Headers", headers)
        elseif type(asked) == "string" and asked ~= "" then
          res:header("Access-Control-Allow-Headers", asked)
          res:add_header("Vary", "Access-Control-Request-Headers")
        end
        if max_age then res:header("Access-Control-Max-Age", max_age) end
      end
      return res:send()
    end
    if varies then res:add_header("Vary", "Origin") end
    if origin and allow(origin, req) then
      allow_origin(res, origin)
      if expose then res:header("Access-Control-Expose-Headers", expose) end
    end
    return next()
  end
end
