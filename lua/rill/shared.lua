-- rill.shared: state and messages shared by every worker of the process.
--
-- rill.shared.dict(name [, {size = bytes}]) is a key/value store in C memory
-- (core/shared_dict.c): strings, numbers and booleans, with expiry (ms) and a
-- byte cap (LRU eviction on set, "no memory" from safe_set and add). Its
-- operations are FFI calls that never wait, so a loop using them compiles.
--
-- rill.shared.channel(name) publishes messages to subscribers on any worker
-- (core/shared_chan.c). A subscription has a bounded queue; one that falls
-- behind is told once (nil, "overflow") and goes on with newer messages.
--
-- Both live as long as the process: a reload keeps their data (and a
-- subscription until it is closed or collected).
local ffi = require "ffi"
local core = require "rill.core"

local type, tostring, tonumber, error, getmetatable, setmetatable =
  type, tostring, tonumber, error, getmetatable, setmetatable
local ffi_string = ffi.string

if not pcall(ffi.typeof, "rill_shared_ffi_t") then ffi.cdef(core.shared_ffi_cdef) end
local api = ffi.cast("const rill_shared_ffi_t *", core.shared_ffi_api)
assert(tonumber(api.size) == ffi.sizeof("rill_shared_ffi_t"), "rill.shared does not match the core")

local M = {}

local STRING, NUMBER, BOOLEAN = 1, 2, 3
local SET, SAFE_SET, ADD, REPLACE = 0, 1, 2, 3
local ERRORS = {[-30101] = "no memory", [-30102] = "exists", [-30103] = "not found",
  [-30104] = "not a number", [-30105] = "too large"}

local function errmsg(r)
  return ERRORS[r] or ("error " .. tostring(r))
end

-- ---- dicts ----

local Dict = {}
Dict.__index = Dict
Dict.__name = "rill.shared.dict"
function Dict:__tostring() return "rill.shared.dict: " .. self.name end

local dicts = setmetatable({}, {__mode = "v"}) -- name → the dict object of this state

-- Scratch space for get: a value that fits is copied here; a larger one
-- gets a buffer of its own for that call (up to 64 KiB the scratch grows).
local BUF_KEEP = 65536
local buf_size = 4096
local buf = ffi.new("char[?]", buf_size)
local lenp = ffi.new("size_t[1]")
local nump = ffi.new("double[1]")

-- The checks raise at level lvl (default 3: the caller of the method that
-- called them).
local function check(self, fname, lvl)
  if getmetatable(self) ~= Dict then
    error(("dict:%s: self must be a dict (call it as dict:%s(...))"):format(fname, fname),
      lvl or 3)
  end
  return self._d
end

local function check_key(key, fname, lvl)
  local t = type(key)
  if t == "string" then return key end
  if t == "number" then return tostring(key) end
  error(("dict:%s: key must be a string or a number, got %s"):format(fname, t), lvl or 3)
end

local function check_ms(ms, fname, what, lvl)
  if ms == nil then return 0 end
  if type(ms) ~= "number" or ms < 0 or ms ~= ms then
    error(("dict:%s: %s must be a number of ms >= 0, got %s"):format(fname, what,
      tostring(ms)), lvl or 3)
  end
  return ms
end

function Dict:get(key)
  local d = check(self, "get")
  if type(key) ~= "string" then key = check_key(key, "get") end
  local b, size = buf, buf_size
  while true do
    local t = api.get(d, key, #key, b, size, lenp, nump)
    if t == STRING then
      local n = tonumber(lenp[0])
      if n <= size then return ffi_string(b, n) end
      -- Larger than the buffer: again with one that large (the value may
      -- have changed meanwhile; then this repeats).
      if n <= BUF_KEEP then
        buf_size, buf = n, ffi.new("char[?]", n)
        b, size = buf, n
      else
        b, size = ffi.new("char[?]", n), n
      end
    elseif t == NUMBER then
      return nump[0]
    elseif t == BOOLEAN then
      return nump[0] ~= 0
    else
      return nil
    end
  end
end

-- Stores for set, safe_set, add and replace (called from them, not as a
-- tail call: misuse is raised at their caller, level 3 from here, 4 from a
-- check called here).
local function store(self, key, value, ttl, mode, fname)
  local d = check(self, fname, 4)
  if type(key) ~= "string" then key = check_key(key, fname, 4) end
  if ttl ~= nil then ttl = check_ms(ttl, fname, "ttl", 4) else ttl = 0 end
  local tv, r = type(value)
  if tv == "string" then
    r = api.set(d, key, #key, STRING, value, #value, 0, ttl, mode)
  elseif tv == "number" then
    r = api.set(d, key, #key, NUMBER, nil, 0, value, ttl, mode)
  elseif tv == "boolean" then
    r = api.set(d, key, #key, BOOLEAN, nil, 0, value and 1 or 0, ttl, mode)
  else
    error(("dict:%s: value must be a string, number or boolean, got %s%s"):format(fname, tv,
      value == nil and " (dict:delete removes a key)" or ""), 3)
  end
  if r == 0 then return true end
  if r == 1 then return true, "evicted" end
  return nil, errmsg(r)
end

function Dict:set(key, value, ttl)
  local ok, err = store(self, key, value, ttl, SET, "set")
  return ok, err
end

function Dict:safe_set(key, value, ttl)
  local ok, err = store(self, key, value, ttl, SAFE_SET, "safe_set")
  return ok, err
end

function Dict:add(key, value, ttl)
  local ok, err = store(self, key, value, ttl, ADD, "add")
  return ok, err
end

function Dict:replace(key, value, ttl)
  local ok, err = store(self, key, value, ttl, REPLACE, "replace")
  return ok, err
end

function Dict:incr(key, by, init, init_ttl)
  local d = check(self, "incr")
  if type(key) ~= "string" then key = check_key(key, "incr") end
  if type(by) ~= "number" then
    error("dict:incr: by must be a number, got " .. type(by), 2)
  end
  if init ~= nil and type(init) ~= "number" then
    error("dict:incr: init must be a number, got " .. type(init), 2)
  end
  local ttl = check_ms(init_ttl, "incr", "init_ttl")
  local r = api.incr(d, key, #key, by, init ~= nil and 1 or 0, init or 0, ttl, nump)
  if r >= 0 then return nump[0] end
  return nil, errmsg(r)
end

function Dict:delete(key)
  local d = check(self, "delete")
  if type(key) ~= "string" then key = check_key(key, "delete") end
  api.del(d, key, #key)
  return true
end

function Dict:ttl(key)
  local d = check(self, "ttl")
  if type(key) ~= "string" then key = check_key(key, "ttl") end
  local r = api.ttl(d, key, #key, nump)
  if r == 0 then return nump[0] end
  return nil, errmsg(r)
end

function Dict:expire(key, ttl)
  local d = check(self, "expire")
  if type(key) ~= "string" then key = check_key(key, "expire") end
  ttl = check_ms(ttl, "expire", "ttl")
  local r = api.expire(d, key, #key, ttl)
  if r == 0 then return true end
  return nil, errmsg(r)
end

function Dict:keys(max)
  check(self, "keys")
  if max == nil then max = 1024 end
  if type(max) ~= "number" or max < 0 then
    error("dict:keys: max must be a number >= 0, got " .. tostring(max), 2)
  end
  return core.sdict_keys(self._p, max)
end

function Dict:flush_all()
  api.flush_all(check(self, "flush_all"))
  return true
end

function Dict:flush_expired(max)
  local d = check(self, "flush_expired")
  if max ~= nil and (type(max) ~= "number" or max < 0) then
    error("dict:flush_expired: max must be a number >= 0, got " .. tostring(max), 2)
  end
  return api.flush_expired(d, max or 0)
end

function Dict:capacity()
  return api.capacity(check(self, "capacity"))
end

function Dict:free_space()
  return api.free_space(check(self, "free_space"))
end

local DEFAULT_SIZE = 1024 * 1024

-- rill.shared.dict(name [, {size = bytes}]): the dict named name, made with
-- size bytes (default 1 MiB) by the first call in the process; later calls
-- get the same dict (and its first size: dict:capacity() says it).
function M.dict(name, opts)
  if type(name) ~= "string" or name == "" then
    error("rill.shared.dict: name must be a non-empty string, got " .. tostring(name), 2)
  end
  if #name > 1024 then error("rill.shared.dict: name is longer than 1024 bytes", 2) end
  local size = DEFAULT_SIZE
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("rill.shared.dict: opts must be a table, got " .. type(opts), 2)
    end
    if opts.size ~= nil then
      size = opts.size
      if type(size) ~= "number" or size < 4096 or size > 2 ^ 48 or size ~= size then
        error("rill.shared.dict: size must be a number of bytes from 4096, got " ..
          tostring(size), 2)
      end
    end
  end
  local d = dicts[name]
  if d then return d end
  local p = core.sdict_open(name, size)
  d = setmetatable({name = name, _p = p, _d = ffi.cast("rill_sdict_t *", p)}, Dict)
  dicts[name] = d
  return d
end

-- ---- channels ----

local Channel = {}
Channel.__index = Channel
Channel.__name = "rill.shared.channel"
function Channel:__tostring() return "rill.shared.channel: " .. self.name end

local function check_ch(self, fname)
  if getmetatable(self) ~= Channel then
    error(("ch:%s: self must be a channel (call it as ch:%s(...))"):format(fname, fname), 3)
  end
  return self._c
end

-- ch:publish(msg) → how many subscribers (on every worker) it reached
function Channel:publish(msg)
  local c = check_ch(self, "publish")
  local t = type(msg)
  if t == "number" then
    msg = tostring(msg)
  elseif t ~= "string" then
    error("ch:publish: msg must be a string, got " .. t, 2)
  end
  return core.chan_publish(c, msg)
end

-- ch:subscribers() → how many subscriptions it has now, on every worker
function Channel:subscribers()
  return core.chan_subscribers(check_ch(self, "subscribers"))
end

local QUEUE_MAX, BYTES_MAX = 1024 * 1024, 2 ^ 40

-- ch:subscribe([{queue = messages, bytes = bytes}]) → a subscription
function Channel:subscribe(opts)
  local c = check_ch(self, "subscribe")
  local queue, bytes = 0, 0
  if opts ~= nil then
    if type(opts) ~= "table" then
      error("ch:subscribe: opts must be a table, got " .. type(opts), 2)
    end
    if opts.queue ~= nil then
      queue = opts.queue
      if type(queue) ~= "number" or queue < 1 or queue > QUEUE_MAX then
        error("ch:subscribe: queue must be a number of messages from 1 to " .. QUEUE_MAX ..
          ", got " .. tostring(queue), 2)
      end
    end
    if opts.bytes ~= nil then
      bytes = opts.bytes
      if type(bytes) ~= "number" or bytes < 1 or bytes > BYTES_MAX then
        error("ch:subscribe: bytes must be a number of bytes from 1, got " .. tostring(bytes), 2)
      end
    end
  end
  return core.chan_subscribe(c, queue, bytes)
end

local channels = setmetatable({}, {__mode = "v"})

-- rill.shared.channel(name): the channel named name (made when first named).
function M.channel(name)
  if type(name) ~= "string" or name == "" then
    error("rill.shared.channel: name must be a non-empty string, got " .. tostring(name), 2)
  end
  if #name > 1024 then error("rill.shared.channel: name is longer than 1024 bytes", 2) end
  local ch = channels[name]
  if ch then return ch end
  ch = setmetatable({name = name, _c = core.chan_open(name)}, Channel)
  channels[name] = ch
  return ch
end

-- Subscriptions: the C methods (_read, close, pending) and these.
do
  local S = core.subscription_methods
  local read = S._read

  -- sub:read([timeout_ms]) → msg | nil, "overflow" | nil, "timeout" | nil, "closed"
  function S:read(timeout)
    if timeout ~= nil and type(timeout) ~= "number" then
      error("sub:read: timeout must be a number of ms, got " .. type(timeout), 2)
    end
    return read(self, timeout)
  end
  S.next = S.read

  -- for msg, err in sub:messages() do ... end: each message; false,
  -- "overflow" once after falling behind; the loop ends when the
  -- subscription is closed.
  local function step(self)
    local msg, err = read(self)
    if msg then return msg end
    if err == "overflow" then return false, err end
    return nil
  end
  function S:messages()
    return step, self
  end
end

return M
