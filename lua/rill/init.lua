-- rill: the public Lua API. The C core is rill.core; this module names its
-- pieces, adds the stream helpers written in Lua, and loads the rest lazily
-- (rill.http, rill.router).
local core = require "rill.core"

local concat, select, tostring = table.concat, select, tostring

local rill = {
  version = core.version,
  now = core.now,       -- monotonic milliseconds
  time = core.time,     -- wall clock seconds since the epoch
  sleep = core.sleep,   -- rill.sleep(ms)
  timer = core.timer,   -- rill.timer(ms, fn [, repeat_ms]) → timer:cancel()
  spawn = core.spawn,   -- rill.spawn(fn, ...) → thread
  wait = core.wait,     -- rill.wait(thread [, timeout_ms]) → true, ... | false, err
  listen = core.listen, -- raw TCP: rill.listen{host=, port=, handler=function(sock)}
  connect = core.connect, -- rill.connect(host, port [, {timeout = ms} | ms]) → stream
  exec = core.exec,     -- rill.exec{"cmd", "arg", stdin=, stdout=, stderr=, env=, cwd=}
  exit = core.exit,
  worker_id = core.worker_id,
  stats = core.stats,   -- this worker's counters: {worker=, requests=, connections=, websockets=}
  reload = core.reload, -- every worker loads the app again (as SIGHUP does)
  set_log_level = core.set_log_level,
  yield = coroutine.yield, -- let other threads run; resumes on the next loop turn
}

-- rill.on_shutdown(fn): fn() runs, in a thread of its own, when this worker
-- begins a graceful stop (SIGTERM, SIGINT, rill_stop), so that long-lived
-- handlers (event streams, tunnels) can end cleanly within the grace period.
-- Returns a function that removes fn again. Hooks belong to the worker, not
-- to one version of the app: an app that registers one when it loads should
-- remove the old one in on_reload (or register it once, from a handler).
-- rill.stopping() says whether the graceful stop has begun.
local shutdown_hooks
function rill.on_shutdown(fn)
  if type(fn) ~= "function" then
    error("rill.on_shutdown: fn must be a function, got " .. type(fn), 2)
  end
  if not shutdown_hooks then
    shutdown_hooks = {}
    core.on_shutdown(function()
      local hooks = {unpack(shutdown_hooks)} -- in the order registered
      for i = 1, #hooks do
        local ok, err = xpcall(hooks[i], debug.traceback)
        if not ok then core.log("error", "error in an on_shutdown hook: " .. tostring(err)) end
      end
    end)
  end
  shutdown_hooks[#shutdown_hooks + 1] = fn
  return function()
    for i = #shutdown_hooks, 1, -1 do
      if shutdown_hooks[i] == fn then table.remove(shutdown_hooks, i) end
    end
  end
end
rill.stopping = core.stopping

-- rill.on_signal(name, fn): in a `rill run` script, fn(name) runs (in a
-- thread of its own, handlers in the order registered) each time signal
-- name ("INT", "TERM", "HUP", "USR1", "USR2", with or without "SIG")
-- arrives, instead of its default (ending the script: 130 for INT).
-- Returns a function that removes fn; with no handler left, the default
-- is back.
local signal_handlers = {}
function rill.on_signal(name, fn)
  if type(fn) ~= "function" then
    error("rill.on_signal: fn must be a function, got " .. type(fn), 2)
  end
  local sig = core.on_signal(name, true)
  local list = signal_handlers[sig]
  if not list then
    list = {name = (tostring(name):upper():gsub("^SIG", ""))}
    signal_handlers[sig] = list
  end
  list[#list + 1] = fn
  return function()
    for i = #list, 1, -1 do
      if list[i] == fn then table.remove(list, i) end
    end
    if #list == 0 then core.on_signal(sig, false) end
  end
end

-- Called on worker 0 when a signal a script took arrives (core/rill.c).
function rill._signal(sig)
  local list = signal_handlers[sig]
  if not list then return end
  for _, fn in ipairs({unpack(list)}) do
    core.spawn(function()
      local ok, err = xpcall(fn, debug.traceback, list.name)
      if not ok then core.log("error", "error in a signal handler: " .. tostring(err)) end
    end)
  end
end

-- rill.log(level, ...): "error", "warn", "info" or "debug"; the rest joined
-- with spaces.
function rill.log(level, ...)
  local n = select("#", ...)
  local parts = {...}
  for i = 1, n do parts[i] = tostring(parts[i]) end
  core.log(level, concat(parts, " ", 1, n))
end

-- Stream helpers shared by every stream (sockets, pipes, bodies).
local S = core.stream_methods

-- read_some, read and write: a fast path (rill.ffi) for bytes held now and
-- for writes the stream takes at once; the C methods otherwise.
do
  local fast = require "rill.ffi"
  local api, ptr, ffi_string = fast.api, fast.ptr, fast.string
  local MT, getmetatable, type = core.stream_mt, getmetatable, type
  local c_read_some, c_read, c_write, c_wait = S._read_some, S._read, S._write,
    S._wait_drained

  function S:read_some(max)
    if getmetatable(self) == MT and (max == nil or type(max) == "number" and max >= 1) then
      local n = api.stream_peek(self, ptr)
      if n > 0 then
        max = max or 65536
        local take = n < max and n or max
        local data = ffi_string(ptr[0], take)
        if api.stream_consume(self, take) == 0 or take >= max then return data end
        -- A stream that decodes framing holds more pieces now: up to max in
        -- one string, as the C read gathers them (it returns at once).
        local rest = c_read_some(self, max - take)
        return rest and data .. rest or data
      end
      if n < 0 then return nil end -- the end
    end
    return c_read_some(self, max)
  end

  function S:read(n)
    if getmetatable(self) == MT and type(n) == "number" and n >= 1 then
      local have = api.stream_peek(self, ptr) -- (the end: -1, and C says so)
      if have >= n then
        local data = ffi_string(ptr[0], n)
        api.stream_consume(self, n)
        return data
      end
    end
    return c_read(self, n)
  end

  function S:write(data, ...)
    if select("#", ...) == 0 and type(data) == "string" and getmetatable(self) == MT then
      local r = api.stream_write(self, data, #data)
      if r == 0 then return true end
      if r == 1 then return c_wait(self) end
    end
    return c_write(self, data, ...)
  end
end

-- Reads to the end; fails with "too large" past limit bytes (default 1 MiB).
function S:read_all(limit)
  limit = limit or 1048576
  local parts, n = {}, 0
  while true do
    local chunk, err, partial = self:read_some(65536)
    if not chunk then
      if err then return nil, err, partial end
      break
    end
    n = n + #chunk
    if n > limit then return nil, "too large" end
    parts[#parts + 1] = chunk
  end
  return concat(parts)
end

-- for line in s:lines([max]): lines without their "\n"; the last one may lack
-- it. A read error is raised.
local function next_line(self, _, max)
  local line, err, partial = self:read_until("\n", max)
  if line then return line end
  if err == "closed" and partial then return partial end
  if err then error(err, 2) end
  return nil
end

local function lines_of(self, max)
  return function() return next_line(self, nil, max) end
end

function S:lines(max)
  if max == nil then return next_line, self end
  return lines_of(self, max)
end

-- for chunk in s:chunks([max]): the bytes as they arrive. A read error is
-- raised. Without max the iterator is a plain function (no closure per
-- loop), so a loop over messages compiles.
local function next_chunk(self, _, max)
  local chunk, err = self:read_some(max)
  if err then error(err, 2) end
  return chunk
end

local function chunks_of(self, max) -- a closure here, so that chunks() has none
  return function() return next_chunk(self, nil, max) end
end

function S:chunks(max)
  if max == nil then return next_chunk, self end
  return chunks_of(self, max)
end

local lazy = {http = "rill.http", router = "rill.router", websocket = "rill.websocket",
  proxy = "rill.proxy", middleware = "rill.middleware"}

-- rill.json (lua-cjson) and rill.cookie, loaded when first named.
lazy.json, lazy.cookie = "rill.json", "rill.cookie"
lazy.test = "rill.test" -- rill.test.client(app) for specs
lazy.path = "rill.path" -- rill.path.safe_join(root, rest)

-- rill.static(root [, opts]) → a handler serving the files under root; see
-- rill.static (lua/rill/static/init.lua). (A tail call: its errors point at
-- the caller's line.)
function rill.static(root, opts)
  return require("rill.static").new(root, opts)
end
lazy.fs = "rill.fs" -- files through the thread pool
lazy.redis = "rill.redis" -- rill.redis.connect{...}
lazy.shared = "rill.shared" -- dicts and channels shared by the workers
lazy.metrics = "rill.metrics" -- every worker's counters: rill.metrics.collect(), .text()
lazy.pg = "rill.pg" -- the Postgres client
lazy.pool = "rill.pool" -- idle connections kept for reuse, by key

-- rill.semaphore(n), rill.queue([max]), rill.wait_any(threads [, ms]): see
-- rill.sync. (Tail calls: their errors point at the caller's line.)
function rill.semaphore(n)
  return require("rill.sync").semaphore(n)
end
function rill.queue(max)
  return require("rill.sync").queue(max)
end
function rill.wait_any(threads, ms)
  return require("rill.sync").wait_any(threads, ms)
end

-- rill.pipe(a, b [, opts]): copies both ways between two streams until both
-- end, with backpressure; see rill.proxy.pipe.
function rill.pipe(a, b, opts)
  return require("rill.proxy").pipe(a, b, opts)
end

return setmetatable(rill, {
  __index = function(t, k)
    if k == "stdin" or k == "stdout" or k == "stderr" then
      local f = require("rill.fs")._stdio(k)
      rawset(t, k, f)
      return f
    end
    local name = lazy[k]
    if not name then return nil end
    local m = require(name)
    if k == "router" then m = m.new end
    rawset(t, k, m)
    return m
  end,
})
