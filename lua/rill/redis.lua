-- A Redis client on rill's socket streams: RESP2 and RESP3, pipelining,
-- transactions, pub/sub as a pull stream of messages, a per-worker pool.
--
--   local r = assert(rill.redis.connect{host = "127.0.0.1", port = 6379})
--   r:set("k", "v")
--   print(r:get("k"))                       --> v
--   local res = r:pipeline(function(pl) pl:incr("n"); pl:get("n") end)
--   r:release()                             -- back to this worker's pool
--
-- Replies are parsed by rill.resp, which reads from the socket only while
-- a caller waits for a reply or a message: a slow subscriber leaves the
-- bytes with Redis.
local core = require "rill.core"
local resp = require "rill.resp"
local rill = require "rill"

local byte, concat, find, format, getmetatable, select, setmetatable, tonumber, tostring,
  type, upper = string.byte, table.concat, string.find, string.format, getmetatable, select,
  setmetatable, tonumber, tostring, type, string.upper

local redis = {}

redis.MAX_BULK = 512 * 1024 * 1024 -- bytes of one string in a reply
redis.MAX_DEPTH = 16               -- nesting of arrays, maps and sets in a reply
redis.MAX_ELEMENTS = 16777216      -- elements of one array, map or set
redis.MAX_LINE = 65536             -- bytes of a status, error or number line
redis.POOL_SIZE = 64               -- idle connections kept per key in a worker
redis.IDLE_TIMEOUT = 30000         -- ms an idle pooled connection is kept

-- The value of a null inside an array, a map or a pipeline's results (a
-- null reply to a command is nil).
redis.null = resp.null
local NULL = redis.null

-- An error reply inside an array (EXEC) or a pipeline's results:
-- {err = "WRONGTYPE ..."}.
local Error = resp.Error

-- rill.redis.is_error(v): whether v is an error reply (a table {err = "..."}).
function redis.is_error(v)
  return getmetatable(v) == Error
end

local NEED, parse, fill, read_reply, encode = resp.NEED, resp.parse, resp.fill, resp.read_reply,
  resp.encode

local scratch = {} -- parts of one command (a call never waits while it is used)

-- Commands that change the connection's state, tracked so that only a
-- clean connection goes back to the pool.
local STATE = {}
for _, name in ipairs{"MULTI", "EXEC", "DISCARD", "WATCH", "UNWATCH", "SELECT", "RESET",
  "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "UNSUBSCRIBE", "PUNSUBSCRIBE", "MONITOR",
  "CLIENT", "HELLO", "AUTH", "QUIT"} do
  STATE[name], STATE[name:lower()] = name, name
end
local nstate = 0

-- STATE[name] for a name not seen yet (any case); the first 1024 names are
-- remembered (false: an ordinary command).
local function state_of(name)
  local special = STATE[upper(name)] or false
  if nstate < 1024 then
    nstate = nstate + 1
    STATE[name] = special
  end
  return special
end

-- The connection: the socket, the bytes read and not parsed, the parser's
-- state, and what the commands sent so far left in effect. Pooled as it is.
local Conn = {}
Conn.__index = Conn

function Conn:close()
  local sock = self._sock
  if sock then
    self._sock = false
    sock:close()
  end
end

-- Closes the connection after a failure; returns nil, err. Redis gone
-- (the end of the stream, a reset, a broken pipe) is "closed".
local function fail(c, err)
  c:close()
  if err == nil or find(err, "^ECONNRESET") or find(err, "^EPIPE") then err = "closed" end
  return nil, err
end

-- The CLIENT subcommands that change the connection's state.
local CLIENT_STATE = {REPLY = true, TRACKING = true, SETNAME = true, CACHING = true,
  ["NO-EVICT"] = true, ["NO-TOUCH"] = true, SETINFO = true}

-- Follows a reply to a command that changes the connection's state.
local function track(c, name, v, arg)
  if v == nil or getmetatable(v) == Error then
    if name == "EXEC" then c._multi, c._watch = false, false end
    return
  end
  if name == "MULTI" then
    c._multi = true
  elseif name == "EXEC" or name == "DISCARD" then
    c._multi, c._watch = false, false
  elseif name == "WATCH" then
    c._watch = true
  elseif name == "UNWATCH" then
    c._watch = false
  elseif name == "SELECT" then
    c._db = tonumber(arg) or c._db
  elseif name == "RESET" then
    c._multi, c._watch, c._db, c._dirty = false, false, 0, true
  elseif name ~= "CLIENT" or CLIENT_STATE[upper(tostring(arg))] then
    -- CLIENT REPLY, TRACKING, SETNAME..., HELLO, AUTH, QUIT: not
    -- worth following: such a connection is not pooled.
    c._dirty = true
  end
end

-- Sends one command (name, ...) on c for the handle h (nil while
-- connecting) and reads its reply. Returns the reply, or nil, err. Misuse
-- raises at the level of the caller of h's method.
local function call(h, c, fname, ...)
  local n = select("#", ...)
  if n == 0 then error(fname .. ": a command name is needed", 3) end
  local name = ...
  if type(name) ~= "string" then
    error(format("%s: the command name must be a string, got %s", fname, type(name)), 3)
  end
  local special = STATE[name]
  if special == nil then special = state_of(name) end
  if special and (special == "SUBSCRIBE" or special == "PSUBSCRIBE" or special == "SSUBSCRIBE"
    or special == "UNSUBSCRIBE" or special == "PUNSUBSCRIBE") then
    error(fname .. ": use r:subscribe() or r:psubscribe() for " .. special, 3)
  end
  if special == "MONITOR" then error(fname .. ": MONITOR is not supported", 3) end
  local np = encode(scratch, 0, fname, 5, n, ...)
  local cmd = concat(scratch, "", 1, np)
  if #cmd > 65536 then -- a large argument is not kept alive by scratch
    for i = 1, np do scratch[i] = nil end
  end
  local sock = c._sock
  if not sock then return nil, "closed" end
  if h then
    if h._busy then error(fname .. ": the connection is in use by another thread", 3) end
    h._busy = true
  end
  local ok, err = sock:write(cmd)
  local v, t
  if ok then
    repeat
      v, t = read_reply(c)
    until v == nil or t ~= 62 -- a push (client tracking) while no subscription reads them: dropped
    err = t
  end
  if h then h._busy = false end
  if v == nil then return fail(c, err) end
  if special then track(c, special, v, select(2, ...)) end
  if v == NULL then return nil end
  if getmetatable(v) == Error then return nil, v.err end
  return v
end

-- ---- the client: a handle on a connection, until released or closed ----

local Client = {}
local Pipeline = {}
local Subscription = {}

-- Methods for commands: r:get(...) is r:call("GET", ...). Made when first
-- named, for any lower-case name; kept in `commands`, not in Client.
local commands, pcommands = {}, {}

local function command_method(k)
  if type(k) ~= "string" or not find(k, "^%l[%l%d_]*$") then return nil end
  local f = commands[k]
  if not f then
    local name = upper(k)
    local fname = "r:" .. k
    f = function(self, ...)
      local c = self._c
      if not c then return nil, "closed" end
      local a, b = call(self, c, fname, name, ...)
      return a, b
    end
    commands[k] = f
  end
  return f
end

setmetatable(Client, {__index = function(_, k) return command_method(k) end})
local ClientMT = {__index = Client, __name = "rill.redis.client"}
ClientMT.__tostring = function(r)
  local c = r._c
  return c and format("rill.redis.client (%s:%d db %d)", c._host, c._port, c._db)
    or "rill.redis.client (closed)"
end

-- r:call(name, ...): any command; the reply or nil, err.
function Client:call(...)
  local c = self._c
  if not c then return nil, "closed" end
  local a, b = call(self, c, "r:call", ...)
  return a, b
end

-- The common commands, made now so that their calls find them at once.
for _, k in ipairs{"get", "set", "del", "exists", "expire", "incr", "incrby", "decr", "mget",
  "mset", "hget", "hset", "hgetall", "hdel", "lpush", "rpush", "lpop", "rpop", "lrange",
  "sadd", "srem", "smembers", "zadd", "zrange", "publish", "ping", "multi", "exec",
  "discard", "watch", "unwatch", "select"} do
  Client[k] = command_method(k)
end

-- r:pipeline(fn): fn(pl) names commands on pl (pl:set(...), pl:call(...)),
-- which are sent together in one write; then every reply is read. Returns
-- results (results[i] the reply to the i-th command: rill.redis.null for a
-- null, {err = "..."} for an error reply; results.n their number), or nil,
-- err when the connection failed (it is closed then).
function Client:pipeline(fn)
  if type(fn) ~= "function" then
    error("r:pipeline: fn must be a function, got " .. type(fn), 2)
  end
  local c = self._c
  if not c then return nil, "closed" end
  if self._busy then error("r:pipeline: the connection is in use by another thread", 2) end
  local p = setmetatable({_parts = {}, _np = 0, _names = {}, _args = {}, _n = 0}, Pipeline)
  fn(p)
  local n = p._n
  if n == 0 then return {n = 0} end
  self._busy = true
  local ok, err = c._sock and c._sock:write(concat(p._parts, "", 1, p._np))
  if not ok then
    self._busy = false
    if not c._sock then return nil, "closed" end
    return fail(c, err)
  end
  local results = {n = n}
  local names, args = p._names, p._args
  for i = 1, n do
    local v, t
    repeat
      v, t = read_reply(c)
      if v == nil then
        self._busy = false
        return fail(c, t)
      end
    until t ~= 62
    results[i] = v
    if names[i] then track(c, names[i], v, args[i]) end
  end
  self._busy = false
  return results
end

local function pipeline_add(p, fname, ...)
  local n = select("#", ...)
  if n == 0 then error(fname .. ": a command name is needed", 3) end
  local name = ...
  if type(name) ~= "string" then
    error(format("%s: the command name must be a string, got %s", fname, type(name)), 3)
  end
  p._np = encode(p._parts, p._np, fname, 5, n, ...)
  local i = p._n + 1
  p._n = i
  local special = STATE[name]
  if special == nil then special = state_of(name) end
  if special then
    if special == "SUBSCRIBE" or special == "PSUBSCRIBE" or special == "SSUBSCRIBE" or
      special == "UNSUBSCRIBE" or special == "PUNSUBSCRIBE" then
      error(fname .. ": use r:subscribe() or r:psubscribe() for " .. special, 3)
    end
    if special == "MONITOR" then error(fname .. ": MONITOR is not supported", 3) end
    p._names[i], p._args[i] = special, select(2, ...)
  end
  return p
end

local PipelineMethods = {}
Pipeline.__name = "rill.redis.pipeline"

-- pl:call(name, ...): adds any command.
function PipelineMethods:call(...)
  local pl = pipeline_add(self, "pl:call", ...)
  return pl
end

Pipeline.__index = function(_, k)
  local m = PipelineMethods[k]
  if m then return m end
  if type(k) ~= "string" or not find(k, "^%l[%l%d_]*$") then return nil end
  local f = pcommands[k]
  if not f then
    local name, fname = upper(k), "pl:" .. k
    f = function(self, ...)
      local pl = pipeline_add(self, fname, name, ...)
      return pl
    end
    pcommands[k] = f
  end
  return f
end

-- r:transaction(fn): as r:pipeline(fn), between MULTI and EXEC, sent in one
-- write. Returns EXEC's reply (the list of results, errors as {err =}), nil
-- when a WATCHed key changed, or nil, err (a command refused when queued
-- gives "EXECABORT ...").
function Client:transaction(fn)
  if type(fn) ~= "function" then
    error("r:transaction: fn must be a function, got " .. type(fn), 2)
  end
  local res, err = self:pipeline(function(p)
    p:call("MULTI")
    fn(p)
    p:call("EXEC")
  end)
  if not res then return nil, err end
  local v = res[res.n]
  if getmetatable(res[1]) == Error then return nil, res[1].err end
  if getmetatable(v) == Error then return nil, v.err end
  if v == NULL then return nil end
  return v
end

-- ---- the pool ----

local pool -- this worker's, made when first used

local function get_pool()
  if not pool then
    pool = require("rill.pool").new{size = redis.POOL_SIZE, idle_timeout = redis.IDLE_TIMEOUT}
  end
  return pool
end

-- Key fields escaped so that no value can pose as another field.
local function esc(v)
  return (tostring(v):gsub("[%z\1-\32%%=]", function(ch) return format("%%%02X", byte(ch)) end))
end

local function hex(s)
  return (s:gsub(".", function(ch) return format("%02x", byte(ch)) end))
end

-- What the pool key says about a connection besides its database.
local function key_base(o, tls)
  local parts = {"redis://" .. esc(o.host) .. ":" .. o.port, "resp=" .. o.resp}
  if o.username then parts[#parts + 1] = "user=" .. esc(o.username) end
  if o.password then
    parts[#parts + 1] = "password=" .. hex(core.hmac_sha256("rill.redis", o.password))
  end
  if tls then
    local t = {}
    for k, v in pairs(tls) do
      if k ~= "handshake_timeout" then t[#t + 1] = "tls." .. esc(k) .. "=" .. esc(v) end
    end
    table.sort(t)
    parts[#parts + 1] = concat(t, " ")
  end
  return concat(parts, " ")
end

local function pool_key(c)
  return c._key .. " db=" .. c._db
end

-- ---- connecting ----

local OPTS = {host = "string", port = "number", password = "string", username = "string",
  db = "number", timeout = "number", resp = "number", pool = "boolean", max_bulk = "number",
  max_depth = "number", max_elements = "number", max_line = "number"}

local function check_opts(opts)
  if type(opts) ~= "table" then
    error("rill.redis.connect: opts must be a table, got " .. type(opts), 3)
  end
  for k, v in pairs(opts) do
    local want = OPTS[k]
    if k == "tls" then
      if v ~= true and v ~= false and type(v) ~= "table" then
        error("rill.redis.connect: tls must be true or a table, got " .. type(v), 3)
      end
    elseif not want then
      error("rill.redis.connect: unknown option " .. tostring(k), 3)
    elseif type(v) ~= want then
      error(format("rill.redis.connect: %s must be a %s, got %s", k, want, type(v)), 3)
    end
  end
  if opts.resp and opts.resp ~= 2 and opts.resp ~= 3 then
    error("rill.redis.connect: resp must be 2 or 3", 3)
  end
end

-- Whom connect(opts) talks to, and how: {host, port, resp, username,
-- password}, and the TLS options for rill.connect (server_name defaults to
-- host) or nil.
local function endpoint(opts)
  local o = {host = opts.host or "127.0.0.1", port = opts.port or 6379, resp = opts.resp or 2,
    username = opts.username, password = opts.password}
  local tls
  if opts.tls then
    tls = {server_name = o.host}
    if type(opts.tls) == "table" then
      for k, v in pairs(opts.tls) do tls[k] = v end
    end
  end
  return o, tls
end

local function limits(c, opts)
  c._max_bulk = opts.max_bulk or redis.MAX_BULK
  c._max_depth = opts.max_depth or redis.MAX_DEPTH
  c._max_elements = opts.max_elements or redis.MAX_ELEMENTS
  c._max_line = opts.max_line or redis.MAX_LINE
end

local function new_client(c)
  return setmetatable({_c = c, _busy = false}, ClientMT)
end

-- rill.redis.connect(opts) → client, or nil, err. See lua/README.md.
function redis.connect(opts)
  opts = opts or {}
  check_opts(opts)
  local o, tls = endpoint(opts)
  local timeout = opts.timeout or 5000
  local db = opts.db or 0
  local base = key_base(o, tls)
  local use_pool = opts.pool ~= false
  if use_pool then
    local c = get_pool():get(base .. " db=" .. db)
    if c then
      c._sock:settimeout(timeout)
      c._timeout = timeout
      limits(c, opts)
      return new_client(c)
    end
  end
  local sock, err = rill.connect(o.host, o.port, {timeout = timeout, tls = tls})
  if not sock then return nil, err end
  sock:settimeout(timeout)
  local c = setmetatable({_sock = sock, _buf = "", _pos = 1, _need = 0, _stack = {}, _depth = 0,
    _host = o.host, _port = o.port, _db = 0, _key = base, _pool = use_pool,
    _timeout = timeout, _multi = false, _watch = false, _dirty = false, _sub = false}, Conn)
  limits(c, opts)
  local v, cerr
  if o.resp == 3 then
    if o.password then
      v, cerr = call(nil, c, "rill.redis.connect", "HELLO", "3", "AUTH", o.username or "default",
        o.password)
    else
      v, cerr = call(nil, c, "rill.redis.connect", "HELLO", "3")
    end
  elseif o.password then
    if o.username then
      v, cerr = call(nil, c, "rill.redis.connect", "AUTH", o.username, o.password)
    else
      v, cerr = call(nil, c, "rill.redis.connect", "AUTH", o.password)
    end
  else
    v = true
  end
  if v and db ~= 0 then v, cerr = call(nil, c, "rill.redis.connect", "SELECT", db) end
  c._dirty = false -- HELLO and AUTH made the state the key says
  if not v then
    c:close()
    return nil, cerr or "closed"
  end
  return new_client(c)
end

-- r:settimeout(ms): the limit on each wait of later commands (a blocking
-- command such as BLPOP needs more than its own timeout); nil or a
-- negative value: none. Returns r.
function Client:settimeout(ms)
  if ms ~= nil and type(ms) ~= "number" then
    error("r:settimeout: ms must be a number, got " .. type(ms), 2)
  end
  local c = self._c
  if c and c._sock then
    c._timeout = ms or -1
    c._sock:settimeout(ms or -1)
  end
  return self
end

-- r:close(): closes the connection; later calls give nil, "closed".
function Client:close()
  local c = self._c
  if not c then return true end
  if self._busy then error("r:close: the connection is in use by another thread", 2) end
  self._c = false
  c:close()
  return true
end

-- Why c cannot be reused as it is, or nil.
local function unclean(c)
  if not c._sock then return "closed" end
  if c._sub then return "subscribed" end
  if c._multi then return "in a transaction (MULTI)" end
  if c._watch then return "keys are watched (WATCH)" end
  if c._dirty then return "its state was changed (CLIENT, HELLO, AUTH, RESET...)" end
  if c._pos <= #c._buf or c._depth > 0 then return "unread bytes" end
end

-- r:release(): puts the connection back into this worker's pool, if it is
-- in a clean state, else closes it. This handle is done with either way.
-- Returns true, or nil, why when it was closed instead.
function Client:release()
  local c = self._c
  if not c then return nil, "closed" end
  if self._busy then error("r:release: the connection is in use by another thread", 2) end
  self._c = false
  local why = unclean(c)
  if why then
    c:close()
    return nil, "not reusable: " .. why
  end
  if not c._pool then
    c:close()
    return true
  end
  c._buf, c._pos = "", 1
  get_pool():put(pool_key(c), c, c._sock)
  return true
end

-- rill.redis.pooled(opts): how many idle connections the pool holds for
-- connections made with these options (for tests and metrics).
function redis.pooled(opts)
  opts = opts or {}
  check_opts(opts)
  local o, tls = endpoint(opts)
  if not pool then return 0 end
  return pool:count(key_base(o, tls) .. " db=" .. (opts.db or 0))
end

-- ---- pub/sub ----

local SubMT = {__index = Subscription, __name = "rill.redis.subscription"}

local KINDS = {message = true, pmessage = true, smessage = true, subscribe = true,
  psubscribe = true, ssubscribe = true, unsubscribe = true, punsubscribe = true,
  sunsubscribe = true, pong = true}

-- The message of a reply in subscribe mode: {kind =, channel =, data =}
-- (pmessage: and pattern =; confirmations: count =), or nil, err.
local function message(v)
  -- RESP3 answers a PING in subscribe mode as it does outside it
  if type(v) == "string" then return {kind = "pong", data = v} end
  if type(v) ~= "table" then return nil, "bad reply: not a message" end
  local kind = v[1]
  if not KINDS[kind] then return nil, "bad reply: not a message" end
  if kind == "message" or kind == "smessage" then
    return {kind = kind, channel = v[2], data = v[3]}
  elseif kind == "pmessage" then
    return {kind = kind, pattern = v[2], channel = v[3], data = v[4]}
  elseif kind == "pong" then
    return {kind = kind, data = v[2]}
  end
  local ch = v[2]
  if ch == NULL then ch = nil end
  return {kind = kind, channel = ch, count = v[3]}
end

-- Sends cmd with the channels given (strings: else raises at level lvl).
local function sub_send(c, fname, lvl, cmd, ...)
  local n = select("#", ...)
  for i = 1, n do
    local a = select(i, ...)
    if type(a) ~= "string" then
      error(format("%s: argument #%d must be a string, got %s", fname, i, type(a)), lvl)
    end
  end
  local np = encode(scratch, 0, fname, lvl, n + 1, cmd, ...)
  local sock = c._sock
  if not sock then return nil, "closed" end
  local ok, err = sock:write(concat(scratch, "", 1, np))
  if not ok then return fail(c, err) end
  return true
end

-- r:subscribe(channel, ...) / r:psubscribe(pattern, ...): the connection
-- goes into subscribe mode and becomes the subscription returned (this
-- handle is done with). Waits for Redis to confirm each; returns the
-- subscription (rs), or nil, err.
local function start_subscription(self, fname, cmd, ...)
  if select("#", ...) == 0 then error(fname .. ": a channel is needed", 3) end
  local c = self._c
  if not c then return nil, "closed" end
  if self._busy then error(fname .. ": the connection is in use by another thread", 3) end
  if c._multi then error(fname .. ": not inside MULTI", 3) end
  local ok, err = sub_send(c, fname, 4, cmd, ...)
  if not ok then return nil, err end
  self._c = false
  c._sub = true
  local sub = setmetatable({_c = c, _busy = false, _queue = {}, count = 0}, SubMT)
  local want = select("#", ...)
  local kind = cmd:lower()
  while want > 0 do
    local v, t = read_reply(c)
    if v == nil then return fail(c, t) end
    if getmetatable(v) == Error then
      c:close()
      return nil, v.err
    end
    local msg, merr = message(v)
    if not msg then return fail(c, merr) end
    if msg.kind == kind then
      want = want - 1
      sub.count = msg.count
    else
      sub._queue[#sub._queue + 1] = msg
    end
  end
  return sub
end

function Client:subscribe(...)
  local sub, err = start_subscription(self, "r:subscribe", "SUBSCRIBE", ...)
  return sub, err
end

function Client:psubscribe(...)
  local sub, err = start_subscription(self, "r:psubscribe", "PSUBSCRIBE", ...)
  return sub, err
end

-- rs:read([timeout_ms]) → the next message, or nil, err: "timeout" (the
-- subscription goes on), "closed" or another failure (it is closed). Waits
-- as long as it takes without a timeout.
function Subscription:read(timeout)
  if timeout ~= nil and type(timeout) ~= "number" then
    error("rs:read: timeout must be a number (ms), got " .. type(timeout), 2)
  end
  local q = self._queue
  if q[1] then return table.remove(q, 1) end
  local c = self._c
  if not c or not c._sock then return nil, "closed" end
  if self._busy then error("rs:read: another thread is reading this subscription", 2) end
  self._busy = true
  c._sock:settimeout(timeout or -1)
  while true do
    local v, t = parse(c)
    if v == NEED then
      local ok, err = fill(c)
      if not ok then
        self._busy = false
        if err == "timeout" and c._sock then return nil, "timeout" end
        return fail(c, err)
      end
    elseif v == nil then
      self._busy = false
      return fail(c, t)
    else
      self._busy = false
      if getmetatable(v) == Error then return nil, v.err end -- (a refused command)
      local msg, err = message(v)
      if not msg then return fail(c, err) end
      if msg.count then self.count = msg.count end
      return msg
    end
  end
end

-- rs:subscribe(channel, ...), rs:psubscribe, rs:unsubscribe([channel,
-- ...]), rs:punsubscribe: send the command and return true (or nil, err)
-- without waiting; Redis's confirmations come through rs:read() as
-- messages of that kind, with count =.
for _, name in ipairs{"subscribe", "psubscribe", "unsubscribe", "punsubscribe"} do
  local cmd, fname = upper(name), "rs:" .. name
  Subscription[name] = function(self, ...)
    if (name == "subscribe" or name == "psubscribe") and select("#", ...) == 0 then
      error(fname .. ": a channel is needed", 2)
    end
    local c = self._c
    if not c then return nil, "closed" end
    local ok, err = sub_send(c, fname, 3, cmd, ...)
    return ok, err
  end
end

-- rs:ping([data]): Redis answers through rs:read() with {kind = "pong"}.
function Subscription:ping(data)
  local c = self._c
  if not c then return nil, "closed" end
  if data == nil then return sub_send(c, "rs:ping", 3, "PING") end
  return sub_send(c, "rs:ping", 3, "PING", tostring(data))
end

-- rs:close(): closes the connection; a read waiting ends with nil, "closed".
function Subscription:close()
  local c = self._c
  if not c then return true end
  self._c = false
  c:close()
  return true
end

-- for msg in rs:messages([timeout_ms]): the messages (kind "message" and
-- "pmessage" only) until the subscription ends or a read fails (then the
-- loop ends; rs.err says why).
function Subscription:messages(timeout)
  return function()
    while true do
      local msg, err = self:read(timeout)
      if not msg then
        self.err = err
        return nil
      end
      if msg.kind == "message" or msg.kind == "pmessage" or msg.kind == "smessage" then
        return msg
      end
    end
  end
end

return redis
