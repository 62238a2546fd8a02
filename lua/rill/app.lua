-- The app a worker serves: loading it, its listeners, and reloading it with
-- nothing dropped. New requests get the new handler; requests, streams and
-- WebSockets in flight finish on the old one. A reload that fails keeps the
-- old handler and logs the file, line and message.
--
-- An app may hand state to its next version: if the new app (a table, such
-- as a router) has on_reload, it is called with the old app's `state` field.
--
--   local app = rill.router()
--   app.state = {visits = 0}
--   function app.on_reload(old) app.state = old or app.state end
local core = require "rill.core"
local rill = require "rill"
local http = require "rill.http"

local M = {}

-- The one app of this worker: {path | code + name, dir, handler, app, listeners}.
local current

local function dirname(path)
  return path:match("^(.*)/[^/]*$") or "."
end

-- Loads an app file (or chunk). Returns its handler and the app value, or
-- nil and a message that names the file and line.
function M.load(path, code, name)
  local chunk, err
  if code then
    chunk, err = loadstring(code, "=" .. (name or "app"))
  else
    chunk, err = loadfile(path)
  end
  if not chunk then return nil, err end
  local ok, app = pcall(chunk)
  if not ok then return nil, tostring(app) end
  local handler = http.handler(app)
  if not handler then
    return nil, (path or name or "app") .. ": must return a handler function or a router, not " ..
      type(app)
  end
  return handler, app
end

-- What a watched app answers while its first load has failed.
local function unavailable(req, res)
  res:status(503)
  res:header("Content-Type", "text/plain")
  res:send("the app failed to load: the server's log says why\n")
end

-- Starts serving: cfg = {path = | code = name =, listens = {{host =, port = |
-- unix = unix_mode = | fd =, tls =, proxy_protocol =, proxy_from =, backlog =}}, limits =
-- {...}, watch = bool}; a listen's own options win over limits. Returns true and the ports bound,
-- or nil and an error. A watched app file whose first load fails is served
-- as 503 until an edit loads (as nodemon and air wait for a fix).
function M.start(cfg)
  local dir = cfg.path and dirname(cfg.path)
  if dir then
    -- The app's own modules are found beside it.
    package.path = dir .. "/?.lua;" .. dir .. "/?/init.lua;" .. package.path
  end
  local handler, app = M.load(cfg.path, cfg.code, cfg.name)
  if not handler then
    if not (cfg.watch and dir) then return nil, app end
    rill.log("error", "the app failed to load; answering 503 until an edit loads: " .. app)
    handler, app = unavailable, nil
  end
  current = {path = cfg.path, code = cfg.code, name = cfg.name, dir = dir, handler = handler,
    app = app, listeners = {}}
  local ports = {}
  for i, l in ipairs(cfg.listens or {}) do
    local o = {}
    for k, v in pairs(cfg.limits or {}) do o[k] = v end
    o.host, o.port, o.unix, o.fd, o.tls, o.handler = l.host, l.port, l.unix, l.fd, l.tls,
      handler
    if l.proxy_protocol ~= nil then o.proxy_protocol = l.proxy_protocol end
    if l.proxy_from ~= nil then o.proxy_from = l.proxy_from end
    if l.backlog ~= nil then o.backlog = l.backlog end
    if l.unix_mode ~= nil then o.unix_mode = l.unix_mode end
    if l.http2 ~= nil then o.http2 = l.http2 end
    local listener, err = http.listen(o)
    if not listener then return nil, err end
    current.listeners[#current.listeners + 1] = listener
    local host, port = listener:address()
    ports[i] = port
    local scheme, name = l.tls and "https" or "http", cfg.path or cfg.name or "app"
    if l.unix or port == 0 then
      rill.log("info", ("serving %s on %s over unix:%s"):format(name, scheme, host))
    else
      rill.log("info", ("serving %s on %s://%s:%d%s"):format(name, scheme, host, port,
        l.fd and " (fd " .. l.fd .. ")" or ""))
    end
  end
  if cfg.watch and dir then
    local ok, err = core.watch(dir)
    if not ok then rill.log("warn", "cannot watch " .. dir .. ": " .. tostring(err)) end
  end
  return true, ports
end

-- Serves fd, a connection the host accepted (rill_serve_fd), as the i-th
-- listener of this worker would. Returns true, or nil and an error (fd is
-- closed either way).
function M._adopt(i, fd)
  local l = current and current.listeners[i]
  if not l then
    core._close_fd(fd)
    return nil, "no listener " .. tostring(i)
  end
  return l:_adopt(fd)
end

-- Loads the app again; see the top. Returns true, or nil and the error.
function M.reload()
  if not current then return nil, "no app to reload" end
  -- The app's own modules load afresh; shared ones (rill's, the system's)
  -- stay. If the new code fails, they are put back for the old code.
  local removed = {}
  if current.dir then
    local prefix = current.dir .. "/"
    for name, mod in pairs(package.loaded) do
      local file = type(name) == "string" and package.searchpath(name, package.path)
      if file and file:sub(1, #prefix) == prefix then
        removed[name] = mod
        package.loaded[name] = nil
      end
    end
  end
  local handler, app = M.load(current.path, current.code, current.name)
  local err = not handler and app
  if handler and type(app) == "table" and type(app.on_reload) == "function" then
    local old = current.app
    local ok, e = pcall(app.on_reload, type(old) == "table" and old.state or nil)
    if not ok then err = "on_reload: " .. tostring(e) end
  end
  if err then
    for name, mod in pairs(removed) do package.loaded[name] = mod end
    rill.log("error", "reload failed; the old app goes on: " .. err)
    return nil, err
  end
  for _, l in ipairs(current.listeners) do l:set_handler(handler) end
  current.handler, current.app = handler, app
  rill.log("info", "reloaded " .. (current.path or current.name or "app"))
  return true
end

return M
