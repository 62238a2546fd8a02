-- A router: routes by method and path pattern, with middleware.
--
--   local app = rill.router()
--   app:use(function(req, res, next) res:header("X-Served-By", "rill") return next() end)
--   app:get("/users/:id", function(req, res) res:send("user " .. req.params.id) end)
--   app:get("/static/*path", ...)   -- "*name" takes the rest of the path
--
-- Patterns are matched segment by segment: static segments first, then
-- ":param", then "*rest". No route → 404; a route without the method → 405
-- with Allow (app:not_found and app:method_not_allowed give their bodies).
-- HEAD falls back to GET. Parameter values are percent-decoded in
-- req.params; req.raw_params has them as they came in the URL (for a path
-- that must be decoded once and checked: rill.path.safe_join). A handler
-- that raises is answered by app:on_error (rill.hooks).
local http = require "rill.http"

local find, sub, byte, concat, sort, next, pairs = string.find, string.sub, string.byte,
  table.concat, table.sort, next, pairs
local unescape = http.unescape

local Router = {}
Router.__index = Router
Router.__name = "rill.router"

local function new_node()
  return {static = {}, param = nil, param_name = nil, rest = nil, rest_name = nil,
    handlers = nil}
end

local M = {}

function M.new()
  return setmetatable({tree = new_node(), middleware = {}}, Router)
end

-- "/" has no segments; "/a/b" has "a", "b"; "/a/" has "a", "".
local function segments(pattern)
  local segs = {}
  if pattern == "/" then return segs end
  local pos = 2
  while true do
    local slash = find(pattern, "/", pos, true)
    segs[#segs + 1] = sub(pattern, pos, (slash or #pattern + 1) - 1)
    if not slash then return segs end
    pos = slash + 1
  end
end

-- What a route's options do to its handler (app:get(pattern, opts, fn)):
-- json = true | {limit = bytes}: the body must be JSON (rill.json._route);
-- timeout = ms: a deadline for the handler (rill.http.deadline), applied
-- around the others.
local route_options = {
  json = function(fn, v) return require("rill.json")._route(fn, v) end,
  timeout = function(fn, ms)
    if type(ms) ~= "number" or ms <= 0 then
      error("route option timeout must be a positive number of ms, got " .. tostring(ms), 3)
    end
    local deadline = require("rill.http").deadline
    return function(req, res) return deadline(ms, fn, req, res) end
  end,
}

-- app:route(method, pattern, [opts,] fn): method "*" matches any method.
function Router:route(method, pattern, fn, ...)
  if type(fn) == "table" and select("#", ...) > 0 then
    local opts = fn
    fn = ...
    if type(fn) ~= "function" then
      error("app:route: the handler must be a function, got " .. type(fn), 2)
    end
    for k, v in pairs(opts) do
      local wrap = route_options[k]
      if not wrap then error("unknown route option " .. tostring(k), 2) end
      if k ~= "timeout" then fn = wrap(fn, v) end
    end
    if opts.timeout ~= nil then fn = route_options.timeout(fn, opts.timeout) end
  end
  if type(pattern) ~= "string" or byte(pattern, 1) ~= 47 then
    error("app:route: the pattern must be a string starting with /, got " ..
      (type(pattern) == "string" and ("%q"):format(pattern) or tostring(pattern)), 2)
  end
  if type(fn) ~= "function" then
    error("app:route: the handler must be a function, got " .. type(fn), 2)
  end
  local node = self.tree
  local segs = segments(pattern)
  for i, seg in ipairs(segs) do
    local c = byte(seg, 1)
    if c == 58 then -- ":name"
      local name = sub(seg, 2)
      if node.param and node.param_name ~= name then
        error("conflicting parameter names :" .. node.param_name .. " and :" .. name, 2)
      end
      node.param = node.param or new_node()
      node.param_name = name
      node = node.param
    elseif c == 42 then -- "*name": the rest of the path
      if i ~= #segs then error("* must be the last segment of " .. pattern, 2) end
      node.rest = node.rest or new_node()
      node.rest_name = sub(seg, 2) ~= "" and sub(seg, 2) or "rest"
      node = node.rest
    else
      local child = node.static[seg]
      if not child then
        child = new_node()
        node.static[seg] = child
      end
      node = child
    end
  end
  node.handlers = node.handlers or {}
  node.handlers[method] = fn
  return self
end

for _, m in ipairs({"get", "post", "put", "delete", "patch", "head", "options"}) do
  local M_ = m:upper()
  Router[m] = function(self, pattern, ...) return self:route(M_, pattern, ...) end
end

function Router:any(pattern, ...)
  return self:route("*", pattern, ...)
end

local function check_path(fn, path)
  if path == nil then return end
  if type(path) ~= "string" or byte(path, 1) ~= 47 then
    error(fn .. ": path must be a string starting with /, got " .. tostring(path), 3)
  end
end

-- app:health([path]): GET path (default "/health") answers 200 "ok", or
-- 503 "stopping" once a graceful stop has begun, so that a load balancer's
-- health check drains this instance.
function Router:health(path)
  check_path("app:health", path)
  local rill = require "rill"
  return self:route("GET", path or "/health", function(_, res)
    local stopping = rill.stopping()
    res:status(stopping and 503 or 200)
    res:header("Content-Type", "text/plain")
    res:header("Cache-Control", "no-store")
    res:send(stopping and "stopping\n" or "ok\n")
  end)
end

-- app:metrics([path]): GET path (default "/metrics") answers every
-- worker's counters, summed, in Prometheus's text format (rill.metrics).
function Router:metrics(path)
  check_path("app:metrics", path)
  local metrics = require "rill.metrics"
  return self:route("GET", path or "/metrics", function(_, res)
    res:header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
    res:header("Cache-Control", "no-store")
    res:send(metrics.text())
  end)
end

-- app:websocket(pattern, fn [, opts]): fn(ws, req) serves WebSocket upgrades
-- of GET pattern (see rill.websocket.upgrade for opts); the websocket is
-- closed when fn returns.
function Router:websocket(pattern, fn, opts)
  if type(fn) ~= "function" then
    error("app:websocket: the handler must be a function, got " .. type(fn), 2)
  end
  if type(opts) == "table" then require("rill.ws_deflate").config(opts.deflate, "app:websocket", 2) end
  return self:route("GET", pattern, function(req, res)
    local ws = req:upgrade_websocket(opts)
    if ws then return require("rill.websocket").run(ws, fn, req) end
  end)
end

-- app:proxy(prefix, upstream [, opts]): every method under prefix goes to
-- upstream (see rill.proxy.pass), WebSocket upgrades included.
function Router:proxy(prefix, upstream, opts)
  if type(prefix) ~= "string" or byte(prefix, 1) ~= 47 then
    error("app:proxy: the prefix must be a string starting with /, got " .. tostring(prefix), 2)
  end
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  local function pass(req, res) return require("rill.proxy").pass(req, res, upstream, opts) end
  self:route("*", prefix .. "*rest", pass)
  if prefix ~= "/" then self:route("*", prefix:sub(1, -2), pass) end
  return self
end

-- app:static(prefix, root [, opts]): GET and HEAD under prefix (and prefix
-- itself) serve the files under root (see rill.static for opts); a missing
-- file is answered as a path no route matches (app:not_found) unless
-- opts.fallthrough is false.
function Router:static(prefix, root, opts)
  if type(prefix) ~= "string" or byte(prefix, 1) ~= 47 then
    error("app:static: the prefix must be a string starting with /, got " .. tostring(prefix), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("app:static: opts must be a table, got " .. type(opts), 2)
  end
  local o = {}
  for k, v in pairs(opts or {}) do o[k] = v end
  o.param = "rest"
  if o.fallthrough ~= false and o.not_found == nil then
    local app = self
    o.not_found = function(req, res)
      res:status(404)
      local hook = app._not_found
      if hook then return hook(req, res) end
      res:header("Content-Type", "text/plain")
      return res:send("Not Found\n")
    end
  end
  local ok, handler = pcall(require("rill.static").new, root, o, "app:static")
  if not ok then error(handler, 2) end
  if prefix:sub(-1) ~= "/" then prefix = prefix .. "/" end
  self:route("GET", prefix .. "*rest", handler)
  if prefix ~= "/" then
    -- the prefix itself is the root (redirected to prefix/)
    self:route("GET", prefix:sub(1, -2), function(req, res)
      req.raw_params.rest = ""
      return handler(req, res)
    end)
  end
  return self
end

-- app:use([prefix,] fn): fn(req, res, next) runs before the route for paths
-- under prefix (default "/"); it calls next() to go on.
function Router:use(prefix, fn)
  if fn == nil then prefix, fn = "/", prefix end
  if type(fn) ~= "function" then
    error("app:use: the middleware must be a function, got " .. type(fn), 2)
  end
  if type(prefix) ~= "string" or byte(prefix, 1) ~= 47 then
    error("app:use: the prefix must be a string starting with /, got " .. tostring(prefix), 2)
  end
  if #prefix > 1 and sub(prefix, -1) == "/" then prefix = sub(prefix, 1, -2) end
  self.middleware[#self.middleware + 1] = {prefix = prefix, fn = fn}
  return self
end

-- app:on_error(fn): fn(err, req, res) answers a request whose handler (or
-- middleware) raised err, while nothing of the response has gone; see
-- rill.hooks for error objects and what happens otherwise.
function Router:on_error(fn)
  if type(fn) ~= "function" then error("app:on_error: fn must be a function", 2) end
  self._on_error = fn
  return self
end

-- app:not_found(fn): fn(req, res) answers requests no route matches (the
-- status is 404 already); middleware runs first.
function Router:not_found(fn)
  if type(fn) ~= "function" then error("app:not_found: fn must be a function", 2) end
  self._not_found = fn
  return self
end

-- app:method_not_allowed(fn): fn(req, res) answers a request whose path has
-- routes but none for its method (the status is 405 and Allow is set).
function Router:method_not_allowed(fn)
  if type(fn) ~= "function" then error("app:method_not_allowed: fn must be a function", 2) end
  self._method_not_allowed = fn
  return self
end

-- Matches the segments of path from position pos against node, filling
-- params. Static segments win over parameters, parameters over a rest match;
-- a dead end backtracks.
local function match(node, path, pos, params)
  local len = #path
  if pos > len + 1 then
    if node.handlers then return node end
    local rest = node.rest
    if rest and rest.handlers then
      params[node.rest_name] = ""
      return rest
    end
    return nil
  end
  local slash = find(path, "/", pos, true)
  local seg = sub(path, pos, (slash or len + 1) - 1)
  local nextpos = slash and slash + 1 or len + 2
  local child = node.static[seg]
  if child then
    local found = match(child, path, nextpos, params)
    if found then return found end
  end
  if node.param and seg ~= "" then
    local found = match(node.param, path, nextpos, params)
    if found then
      params[node.param_name] = seg
      return found
    end
  end
  local rest = node.rest
  if rest and rest.handlers then
    params[node.rest_name] = sub(path, pos)
    return rest
  end
  return nil
end

local function allow(node)
  local methods, seen = {}, {}
  for m in pairs(node.handlers) do
    if m == "*" then return nil end
    methods[#methods + 1] = m
    seen[m] = true
  end
  if seen.GET and not seen.HEAD then methods[#methods + 1] = "HEAD" end
  sort(methods)
  return concat(methods, ", ")
end

-- The route's handler, or the 404 or 405 answer (the app's not_found or
-- method_not_allowed hook, with the status and Allow set, else a line of
-- text).
local function final(app, node, req, res)
  if not node then
    res:status(404)
    local hook = app._not_found
    if hook then return hook(req, res) end
    res:header("Content-Type", "text/plain")
    return res:send("Not Found\n")
  end
  local h = node.handlers
  local m = req.method
  -- (an HTTP/2 Extended CONNECT, RFC 8441, is HTTP/2's GET + Upgrade)
  local fn = h[m] or (m == "HEAD" and h.GET) or (m == "CONNECT" and req.protocol and h.GET)
    or h["*"]
  if not fn then
    res:status(405):header("Allow", allow(node))
    local hook = app._method_not_allowed
    if hook then return hook(req, res) end
    res:header("Content-Type", "text/plain")
    return res:send("Method Not Allowed\n")
  end
  return fn(req, res)
end

local function under(prefix, path)
  if prefix == "/" then return true end
  local n = #prefix
  if sub(path, 1, n) ~= prefix then return false end
  local c = byte(path, n + 1)
  return c == nil or c == 47
end

function Router:handle(req, res)
  local path = req.path
  local params = {}
  local node = match(self.tree, path, path == "/" and 3 or 2, params)
  req.params = params
  if next(params) ~= nil then
    -- match keeps the values raw: a second table only for routes with some
    local raw = {}
    for k, v in pairs(params) do
      raw[k] = v
      params[k] = unescape(v)
    end
    req.raw_params = raw
  end
  if self._on_error then res._on_error = self._on_error end
  local mw = self.middleware
  if #mw == 0 then return final(self, node, req, res) end
  -- The one next of this request. A call is the second of its caller once
  -- the step started last has returned: every step still running has
  -- called next already.
  local i, over = 0, false
  local function nxt()
    if over then error("next: called twice (the rest of the chain has run already)", 2) end
    i = i + 1
    local m = mw[i]
    while m and not under(m.prefix, path) do
      i = i + 1
      m = mw[i]
    end
    local r
    if m then r = m.fn(req, res, nxt) else r = final(self, node, req, res) end
    over = true
    return r
  end
  return nxt()
end

Router.__call = Router.handle

return M
