-- Idle connections kept for reuse, per worker, by key: the HTTP client's
-- keep-alive pool, and the Redis and Postgres clients'.
--
--   local pool = require "rill.pool"
--   local conns = pool.new{size = 256, idle_timeout = 30000}
--   local c = conns:get(key) or connect()
--   ... use c ...
--   conns:put(key, c, c.sock)
--
-- A connection is given out again only if nothing came on its socket while
-- it was idle (not the peer's close, not stray bytes), and never once it has
-- been idle `idle_timeout` ms. An idle connection keeps no script running
-- (its socket is unref'd while pooled). `size` and `idle_timeout` are read on
-- every use, so a caller may change them on the pool object.
local rill = require "rill"

local max, now = math.max, rill.now

local pool = {}
local Pool = {}
Pool.__index = Pool

-- pool.new{size =, idle_timeout =} → a pool. size: idle connections kept per
-- key (default 256); idle_timeout: ms an idle connection is kept (30000).
function pool.new(opts)
  opts = opts or {}
  return setmetatable({size = opts.size or 256, idle_timeout = opts.idle_timeout or 30000,
    idle = {}, sweeper = nil, sweeper_due = nil}, Pool)
end

local function close(entry)
  entry.conn:close()
end

local sweep

-- One timer per pool, due when its oldest connection will have been idle
-- idle_timeout (not one per connection put back).
local function arm(self, due)
  if self.sweeper and self.sweeper_due <= due then return end
  if self.sweeper then self.sweeper:cancel() end
  self.sweeper_due = due
  self.sweeper = rill.timer(max(0, due - now()), function() sweep(self) end):unref()
end

-- Closes the connections idle for idle_timeout (the oldest are first in each
-- list), then waits for the next to be.
function sweep(self)
  self.sweeper = nil
  local t, limit, next_due = now(), self.idle_timeout, nil
  for key, idle in pairs(self.idle) do
    local n = 0
    while idle[n + 1] and t - idle[n + 1].at >= limit do n = n + 1 end
    if n > 0 then
      for i = 1, n do close(idle[i]) end
      local m = #idle
      table.move(idle, n + 1, m, 1)
      for i = m - n + 1, m do idle[i] = nil end
    end
    if idle[1] then
      local due = idle[1].at + limit
      if not next_due or due < next_due then next_due = due end
    else
      self.idle[key] = nil
    end
  end
  if next_due then arm(self, next_due) end
end

-- p:get(key) → the newest idle connection for key whose socket is still
-- idle (ref'd again), or nil. Stale ones met on the way are closed.
function Pool:get(key)
  local idle = self.idle[key]
  while idle and #idle > 0 do
    local entry = idle[#idle]
    idle[#idle] = nil
    if now() - entry.at < self.idle_timeout and entry.sock:_probe() == "idle" then
      entry.sock:ref()
      return entry.conn
    end
    close(entry)
  end
  return nil
end

-- p:put(key, conn [, sock]) keeps conn for a later p:get(key). sock (conn
-- itself by default) is the socket probed for the peer's close or stray
-- bytes; conn:close() is called when the pool drops it (stale, idle too
-- long, or the pool full).
function Pool:put(key, conn, sock)
  sock = sock or conn
  local entry = {conn = conn, sock = sock, at = 0}
  if sock:_probe() ~= "idle" then return close(entry) end
  local idle = self.idle[key]
  if not idle then
    idle = {}
    self.idle[key] = idle
  end
  if #idle >= self.size then return close(entry) end
  sock:unref()
  entry.at = now()
  idle[#idle + 1] = entry
  arm(self, entry.at + self.idle_timeout)
end

-- p:drop(key) closes the idle connections kept for key.
function Pool:drop(key)
  local idle = self.idle[key]
  if not idle then return end
  self.idle[key] = nil
  for i = 1, #idle do close(idle[i]) end
end

-- p:count(key) → how many idle connections are kept for key.
function Pool:count(key)
  local idle = self.idle[key]
  return idle and #idle or 0
end

return pool
