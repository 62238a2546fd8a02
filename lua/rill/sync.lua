-- Concurrency for rill threads: semaphores, bounded queues, and waiting for
-- the first of several threads. Everything here lives in one worker (as its
-- threads do) and waits without blocking the loop; every wait takes a
-- timeout in ms and ends early, with nil and "canceled", when its thread is
-- cancelled (th:cancel()).
--
--   local sem = rill.semaphore(10)          -- at most 10 fetches at once
--   for _, url in ipairs(urls) do
--     rill.spawn(function() sem:with(fetch, url) end)
--   end
local core = require "rill.core"

local select, type, unpack = select, type, unpack

local M = {}

local function count(v)
  return type(v) == "number" and v >= 0 and v % 1 == 0
end

local function check_ms(fname, ms)
  if ms ~= nil and (type(ms) ~= "number" or ms < 0) then
    error(fname .. ": timeout must be milliseconds (a number >= 0), got " .. tostring(ms), 3)
  end
end

-- ---- semaphores ----

local Semaphore = {}
Semaphore.__index = Semaphore
Semaphore.__name = "rill.semaphore"

-- sem:acquire([timeout_ms]) → true, or nil, "timeout" | "canceled". Waiters
-- are served in the order they came: a release hands its permit to the
-- first of them.
function Semaphore:acquire(ms)
  check_ms("sem:acquire", ms)
  if self.n > 0 and self.q:waiting() == 0 then
    self.n = self.n - 1
    return true
  end
  return self.q:wait(ms)
end

-- sem:release(): gives a permit back (to the first waiter, if any).
function Semaphore:release()
  if not self.q:signal() then self.n = self.n + 1 end
end

-- sem:available() → permits free now.
function Semaphore:available()
  return self.n
end

local function after(self, ok, ...)
  self:release()
  if not ok then error((...), 0) end
  return ...
end

-- sem:with(fn, ...) → fn(...)'s results, run holding a permit (released when
-- fn returns or raises; an error goes on up). Waits as long as it takes;
-- nil, "canceled" if the thread is cancelled meanwhile.
function Semaphore:with(fn, ...)
  local ok, err = self:acquire()
  if not ok then return nil, err end
  return after(self, pcall(fn, ...))
end

-- rill.semaphore(n) → a semaphore with n permits.
function M.semaphore(n)
  if not count(n) then
    error("rill.semaphore: n must be a count of permits, got " .. tostring(n), 2)
  end
  return setmetatable({n = n, q = core.waitq()}, Semaphore)
end

-- ---- queues ----

local Queue = {}
Queue.__index = Queue
Queue.__name = "rill.queue"

-- q:push(v [, timeout_ms]) → true; waits while the queue is full; nil,
-- "closed" once it is closed (v is not queued), or "timeout" | "canceled".
function Queue:push(v, ms)
  if v == nil then error("q:push: a value, not nil", 2) end
  check_ms("q:push", ms)
  while not self.closed and self.tail - self.head >= self.max do
    local ok, err = self.not_full:wait(ms)
    if not ok then return nil, err end
  end
  if self.closed then return nil, "closed" end
  self.tail = self.tail + 1
  self.items[self.tail] = v
  self.not_empty:signal()
  return true
end

-- q:pop([timeout_ms]) → the oldest value; waits while the queue is empty;
-- nil, "closed" once it is closed and empty, or "timeout" | "canceled".
function Queue:pop(ms)
  check_ms("q:pop", ms)
  while self.tail == self.head do
    if self.closed then return nil, "closed" end
    local ok, err = self.not_empty:wait(ms)
    if not ok then return nil, err end
  end
  self.head = self.head + 1
  local v = self.items[self.head]
  self.items[self.head] = nil
  self.not_full:signal()
  return v
end

-- q:close(): no more pushes (waiting pushers get nil, "closed"); poppers
-- take what is queued, then get nil, "closed".
function Queue:close()
  self.closed = true
  while self.not_full:signal() do end
  while self.not_empty:signal() do end
end

-- q:len() → values queued now.
function Queue:len()
  return self.tail - self.head
end

-- rill.queue([max]) → a queue of at most max values (default: no limit).
function M.queue(max)
  if max ~= nil and (not count(max) or max < 1) then
    error("rill.queue: max must be a count of at least 1, got " .. tostring(max), 2)
  end
  return setmetatable({max = max or math.huge, items = {}, head = 0, tail = 0, closed = false,
    not_full = core.waitq(), not_empty = core.waitq()}, Queue)
end

-- ---- the first of several threads ----

local function pack(...)
  return {n = select("#", ...), ...}
end

-- rill.wait_any(threads [, timeout_ms]) → i, ok, results... for the first
-- of threads (a list) to end, as rill.wait(threads[i]) gives them; nil,
-- "timeout" | "canceled". The others go on running, and can be waited for
-- afterwards.
function M.wait_any(threads, ms)
  if type(threads) ~= "table" or #threads == 0 then
    error("rill.wait_any: threads must be a list of threads", 2)
  end
  check_ms("rill.wait_any", ms)
  for i, th in ipairs(threads) do
    if th:status() ~= "running" then return i, core.wait(th) end
  end
  local first, got
  local q = core.waitq()
  local watchers = {}
  for i, th in ipairs(threads) do
    watchers[i] = core.spawn(function()
      local r = pack(core.wait(th))
      if r[1] == nil and r[2] == "canceled" then return end
      if not first then
        first, got = i, r
        q:signal()
      end
    end)
  end
  local ok, err = q:wait(ms)
  for _, w in ipairs(watchers) do w:cancel() end
  if not first then return nil, ok == nil and err or "canceled" end
  return first, unpack(got, 1, got.n)
end

return M
