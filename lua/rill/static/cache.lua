-- What rill.static learned about a path, kept for a short while (nginx's
-- open_file_cache): its stat, whether it may be served (symlinks), and for
-- a regular file the file itself, open. A request that finds its entry
-- fresh touches the disk only to send the bytes (from the open descriptor,
-- so they match the size and ETag it stated, as nginx's do); a miss costs
-- stat, realpath, open and fstat, each a trip through the thread pool.
--
-- An entry is {st =, ok =, file =, data =, err =, code =, expires =, users =,
-- dead =}: st nil for a path that is not there (err, code say why), ok
-- false for one that may not be served, file false for a directory or a
-- small file whose bytes are kept instead (data). Each request
-- using an entry holds it (users); an entry that leaves the cache (expired,
-- replaced, or the cache full) closes its file once the last user lets go.
-- A request that raised never lets go: its entry's file is closed when
-- collected (rill.fs closes a collected file).
local now = require("rill.core").now

local Cache = {}
Cache.__index = Cache
Cache.__name = "rill.static.cache"

local M = {}

-- A cache keeping entries ttl ms, at most max of them.
function M.new(ttl, max)
  return setmetatable({ttl = ttl, max = max, map = {}, n = 0}, Cache)
end

local function drop(e)
  e.dead = true
  if e.users == 0 and e.file then e.file:close() end
end

-- The fresh entry of path, held (users + 1), or nil.
function Cache:get(path)
  local e = self.map[path]
  if not e then return nil end
  if e.expires > now() then
    e.users = e.users + 1
    return e
  end
  self.map[path] = nil
  self.n = self.n - 1
  drop(e)
  return nil
end

-- Keeps e (held by its maker: users 1) for path. A full cache is emptied
-- first: simpler than LRU, and a working set that fits stays warm.
function Cache:put(path, e)
  e.expires = now() + self.ttl
  local old = self.map[path]
  if old then
    drop(old) -- a request that missed at the same time as this one
  else
    if self.n >= self.max then
      for _, o in pairs(self.map) do drop(o) end
      self.map, self.n = {}, 0
    end
    self.n = self.n + 1
  end
  self.map[path] = e
end

-- A request is done with e.
function M.release(e)
  local n = e.users - 1
  e.users = n
  if n == 0 and e.dead and e.file then e.file:close() end
end

return M
