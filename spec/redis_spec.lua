-- rill.redis against a real redis-server (Debian's), started by the spec on
-- a free port in a temporary directory and stopped in teardown; and against
-- a fake server on rill.listen for replies Redis would not send (limits,
-- broken RESP, replies cut anywhere).
local rill = require "rill"
local helper = require "spec.helper"
local redis = rill.redis

-- Starts redis-server with the given extra arguments; returns {port, pid,
-- stop(), pause(), resume()}. Fails the spec if there is no redis-server
-- (setup.sh installs it).
local function start_redis(extra, port_flag)
  local dir = os.tmpname()
  os.remove(dir)
  assert(helper.run({"mkdir", "-p", dir}) == 0)
  local port = helper.free_port()
  local spec = {"redis-server", port_flag or "--port", tostring(port), "--bind", "127.0.0.1",
    "--save", "", "--appendonly", "no", "--dir", dir, stdout = "null", stderr = "null"}
  if port_flag then
    spec[#spec + 1] = "--port"
    spec[#spec + 1] = "0"
  end
  for _, a in ipairs(extra or {}) do spec[#spec + 1] = a end
  local p = assert(rill.exec(spec), "redis-server is missing: setup.sh installs it")
  local srv = {port = port, pid = p.pid, dir = dir}
  local up = helper.eventually(function()
    local s = rill.connect("127.0.0.1", port, 1000)
    if s then s:close() end
    return s ~= nil
  end)
  if not up then
    p:kill(9)
    p:wait()
    error("redis-server did not start on port " .. port)
  end
  local stopped = false
  function srv.stop()
    if stopped then return end
    stopped = true
    p:kill(18) -- SIGCONT, in case it was paused
    p:kill(15)
    local code, sig = p:wait(10000)
    if code == nil and sig == "timeout" then
      p:kill(9)
      p:wait()
    end
    helper.run({"rm", "-rf", dir})
  end
  function srv.pause() p:kill(19) end  -- SIGSTOP
  function srv.resume() p:kill(18) end -- SIGCONT
  return srv
end

describe("rill.redis", function()
  local srv
  local function connect(opts)
    local o = {port = srv.port}
    for k, v in pairs(opts or {}) do o[k] = v end
    return redis.connect(o)
  end

  setup(function() srv = start_redis() end)
  teardown(function() srv.stop() end)

  it("sends commands and returns RESP2 replies as Lua values", function()
    local r = assert(connect())
    assert.equal("PONG", r:ping())
    assert.equal("OK", r:set("k1", "v1"))
    assert.equal("v1", r:get("k1"))
    assert.is_nil(r:get("no such key"))
    assert.equal(1, r:incr("n1"))
    assert.equal(11, r:incrby("n1", 10))
    assert.equal(1.5, tonumber(r:call("INCRBYFLOAT", "f1", 1.5)))
    -- binary-safe, and a large value in one string
    local bin = "a\r\nb\0c$3\r\n"
    assert.equal("OK", r:set("bin", bin))
    assert.equal(bin, r:get("bin"))
    local big = string.rep("0123456789abcdef", 262144) -- 4 MiB
    r:set("big", big)
    assert.equal(big, r:get("big"))
    -- arrays, with a null in them
    assert.same({"v1", redis.null, bin}, r:mget("k1", "missing", "bin"))
    r:del("list")
    assert.equal(3, r:rpush("list", "a", "b", 3))
    assert.same({"a", "b", "3"}, r:lrange("list", 0, -1))
    assert.same({}, r:lrange("missing", 0, -1))
    -- any command by its name, and through call
    assert.equal(1, r:hset("h", "f", "x"))
    assert.equal("x", r:hget("h", "f"))
    assert.equal(1, r:sismember("set0", "m") + 1)
    assert.equal("v1", r:call("get", "k1"))
    r:close()
    assert.same({nil, "closed"}, {r:get("k1")})
  end)

  it("gives error replies as nil and Redis's message", function()
    local r = assert(connect())
    r:set("str", "x")
    assert.same({nil, "WRONGTYPE Operation against a key holding the wrong kind of value"},
      {r:lpush("str", "a")})
    local v, err = r:call("NOSUCHCOMMAND", "a")
    assert.is_nil(v)
    assert.matches("^ERR unknown command 'NOSUCHCOMMAND'", err)
    assert.equal("x", r:get("str")) -- the connection goes on
    r:close()
  end)

  it("raises on misuse, at the caller's line", function()
    local r = assert(connect())
    local ok, err = pcall(function() r:set("k", {}) end)
    assert.is_false(ok)
    assert.matches("redis_spec.lua:%d+: r:set: argument #3 must be a string or a number, got table",
      err)
    ok, err = pcall(function() r:call() end)
    assert.matches("redis_spec.lua:%d+: r:call: a command name is needed", err)
    ok, err = pcall(function() r:call("SUBSCRIBE", "x") end)
    assert.matches("redis_spec.lua:%d+: r:call: use r:subscribe", err)
    ok, err = pcall(function() r:monitor() end)
    assert.matches("redis_spec.lua:%d+: r:monitor: MONITOR is not supported", err)
    ok, err = pcall(function() redis.connect{port = "x"} end)
    assert.matches("redis_spec.lua:%d+: rill.redis.connect: port must be a number", err)
    ok, err = pcall(function() redis.connect{prot = 1} end)
    assert.matches("unknown option prot", err)
    ok, err = pcall(function() r:pipeline(function(p) p:set("k", true) end) end)
    assert.matches("redis_spec.lua:%d+: pl:set: argument #3", err)
    assert.equal("PONG", r:ping())
    -- one thread at a time: a call while another thread's waits raises
    local th = rill.spawn(function() return r:call("BLPOP", "nothing", 0.2) end)
    rill.yield() -- it runs until it waits for the reply
    ok, err = pcall(function() r:get("k") end)
    assert.matches("redis_spec.lua:%d+: r:get: the connection is in use by another thread", err)
    assert.same({true, nil}, {rill.wait(th)})
    assert.equal("PONG", r:ping())
    r:close()
  end)

  it("speaks RESP3 after HELLO 3: maps, sets, doubles, booleans, nulls, verbatim strings", function()
    local r = assert(connect{resp = 3})
    r:del("h3", "s3", "z3")
    r:hset("h3", "a", "1", "b", "2")
    assert.same({a = "1", b = "2"}, r:hgetall("h3"))
    r:sadd("s3", "x", "y")
    local members = r:smembers("s3")
    table.sort(members)
    assert.same({"x", "y"}, members)
    r:zadd("z3", 1.5, "m")
    assert.equal(1.5, r:zscore("z3", "m")) -- a double, not a string
    assert.is_nil(r:get("missing"))
    assert.is_true(r:eval("redis.setresp(3); return true", 0))
    assert.is_false(r:eval("redis.setresp(3); return false", 0))
    assert.equal(3.25, r:eval("return {double = 3.25}", 0))
    assert.equal("123456789012345678901234567890",
      r:eval("return {big_number = '123456789012345678901234567890'}", 0))
    local info = r:call("CLIENT", "INFO") -- a verbatim string
    assert.matches("^id=%d+ ", info)
    local hello = r:call("HELLO", "3")
    assert.equal(3, hello.proto)
    assert.equal("redis", hello.server)
    r:close()
  end)

  it("logs in with a password and an ACL user, and says why it cannot", function()
    local secure = start_redis{"--requirepass", "s3cret"}
    finally(secure.stop)
    local r = assert(redis.connect{port = secure.port})
    assert.same({nil, "NOAUTH Authentication required."}, {r:get("k")})
    r:close()
    local nr, err = redis.connect{port = secure.port, password = "wrong"}
    assert.is_nil(nr)
    assert.equal("WRONGPASS invalid username-password pair or user is disabled.", err)
    nr, err = redis.connect{port = secure.port, password = "wrong", resp = 3}
    assert.is_nil(nr)
    assert.matches("^WRONGPASS", err)
    r = assert(redis.connect{port = secure.port, password = "s3cret"})
    assert.equal("PONG", r:ping())
    -- the pool keys on the password: a login without it does not get this one
    local id = r:call("CLIENT", "ID")
    assert.is_true(r:release())
    assert.equal(0, redis.pooled{port = secure.port})
    assert.equal(1, redis.pooled{port = secure.port, password = "s3cret"})
    local anon = assert(redis.connect{port = secure.port})
    assert.same({nil, "NOAUTH Authentication required."}, {anon:call("CLIENT", "ID")})
    anon:close()
    r = assert(redis.connect{port = secure.port, password = "s3cret"})
    assert.equal(id, r:call("CLIENT", "ID"))
    assert.equal("OK", r:call("ACL", "SETUSER", "alice", "on", ">pw", "~*", "+@all"))
    r:close()
    r = assert(redis.connect{port = secure.port, username = "alice", password = "pw", resp = 3})
    assert.equal("alice", r:call("ACL", "WHOAMI"))
    r:close()
  end)

  it("selects the database given", function()
    local r2 = assert(connect{db = 2})
    r2:set("only in 2", "yes")
    local r0 = assert(connect())
    assert.is_nil(r0:get("only in 2"))
    assert.equal("yes", r2:get("only in 2"))
    r0:close()
    r2:close()
  end)

  it("pipelines 10,000 commands in one write and returns every reply in order", function()
    local r = assert(connect())
    r:del("counter")
    local res = assert(r:pipeline(function(p)
      for i = 1, 5000 do
        p:set("pk" .. i, i)
        p:incr("counter")
      end
    end))
    assert.equal(10000, res.n)
    for i = 1, 5000 do
      assert.equal("OK", res[2 * i - 1])
      if res[2 * i] ~= i then assert.equal(i, res[2 * i]) end
    end
    res = assert(r:pipeline(function(p)
      p:get("pk77")
      p:get("missing")
      p:lpush("pk1", "x") -- an error reply: in its place, and the rest goes on
      p:call("GET", "pk78")
    end))
    assert.equal(4, res.n)
    assert.equal("77", res[1])
    assert.equal(redis.null, res[2])
    assert.is_true(redis.is_error(res[3]))
    assert.matches("^WRONGTYPE", res[3].err)
    assert.equal("78", res[4])
    assert.same({n = 0}, r:pipeline(function() end))
    r:close()
  end)

  it("runs MULTI/EXEC transactions, and WATCH aborts them", function()
    local r = assert(connect())
    r:del("tx")
    assert.equal("OK", r:multi())
    assert.equal("QUEUED", r:incr("tx"))
    assert.equal("QUEUED", r:lpush("tx", "x")) -- fails when run
    assert.equal("QUEUED", r:incr("tx"))
    local res = r:exec()
    assert.equal(1, res[1])
    assert.matches("^WRONGTYPE", res[2].err)
    assert.equal(2, res[3])
    -- WATCH: another client changes the key, EXEC gives nil
    local other = assert(connect())
    assert.equal("OK", r:watch("tx"))
    other:set("tx", 100)
    r:multi()
    r:incr("tx")
    local v, err = r:exec()
    assert.is_nil(v)
    assert.is_nil(err)
    assert.equal("100", r:get("tx"))
    -- the helper: MULTI, the commands and EXEC in one write
    res = assert(r:transaction(function(t)
      t:incr("tx")
      t:get("tx")
    end))
    assert.same({101, "101"}, res)
    v, err = r:transaction(function(t) t:call("SET", "tx") end) -- refused when queued
    assert.is_nil(v)
    assert.matches("^EXECABORT", err)
    assert.equal("PONG", r:ping())
    other:close()
    r:close()
  end)

  it("reads a subscription as a pull stream: a slow reader leaves the messages with Redis", function()
    local r = assert(connect())
    local sub = assert(r:subscribe("news", "sport"))
    assert.equal(2, sub.count)
    assert.same({nil, "closed"}, {r:get("x")}) -- the handle became the subscription
    local pub = assert(connect())
    local payload = string.rep("x", 10000)
    -- 2,000 messages of 10 kB while the subscriber reads nothing
    for i = 1, 2000 do
      if i % 100 == 0 then
        assert.equal(1, pub:publish("news", i .. ":" .. payload))
      else
        pub:publish("news", i .. ":" .. payload)
      end
    end
    -- Redis holds what the kernel's buffers could not: rill read nothing
    local list = pub:call("CLIENT", "LIST", "TYPE", "pubsub")
    local omem = tonumber(list:match("omem=(%d+)"))
    assert.is_true(omem > 1000000, "Redis's output buffer for the subscriber: " .. omem)
    for i = 1, 2000 do
      local msg = assert(sub:read(5000))
      if i == 1 then
        assert.same({kind = "message", channel = "news", data = "1:" .. payload}, msg)
      elseif msg.data ~= i .. ":" .. payload then
        assert.equal(i .. ":" .. payload, msg.data)
      end
    end
    assert.same({nil, "timeout"}, {sub:read(50)})
    -- more channels and patterns on the same subscription
    assert.is_true(sub:psubscribe("w*"))
    assert.same({kind = "psubscribe", channel = "w*", count = 3}, sub:read(5000))
    pub:publish("weather", "rain")
    assert.same({kind = "pmessage", pattern = "w*", channel = "weather", data = "rain"},
      sub:read(5000))
    pub:publish("sport", "goal")
    assert.same({kind = "message", channel = "sport", data = "goal"}, sub:read(5000))
    assert.is_true(sub:unsubscribe("news"))
    assert.same({kind = "unsubscribe", channel = "news", count = 2}, sub:read(5000))
    assert.is_true(sub:ping("x"))
    assert.same({kind = "pong", data = "x"}, sub:read(5000))
    sub:close()
    assert.same({nil, "closed"}, {sub:read(10)})
    pub:close()
  end)

  it("a RESP3 subscription reads push messages; Redis drops a subscriber past its limit", function()
    local r = assert(connect{resp = 3})
    local sub = assert(r:subscribe("c3"))
    local pub = assert(connect())
    pub:publish("c3", "hi")
    assert.same({kind = "message", channel = "c3", data = "hi"}, sub:read(5000))
    assert.is_true(sub:ping("are you there"))
    assert.same({kind = "pong", data = "are you there"}, sub:read(5000))
    -- client-output-buffer-limit for pubsub: a subscriber that does not read
    -- is disconnected; what was read before the limit still comes, then "closed"
    assert.equal("OK", pub:call("CONFIG", "SET", "client-output-buffer-limit", "pubsub 1mb 1mb 0"))
    finally(function()
      local p = assert(connect())
      p:call("CONFIG", "SET", "client-output-buffer-limit", "pubsub 32mb 8mb 60")
      p:close()
    end)
    local payload = string.rep("y", 100000)
    for _ = 1, 400 do pub:publish("c3", payload) end -- 40 MB
    local n, err = 0, nil
    while true do
      local msg
      msg, err = sub:read(5000)
      if not msg then break end
      n = n + 1
    end
    assert.equal("closed", err)
    assert.is_true(n < 400, n .. " messages")
    pub:close()
  end)

  it("times out on a Redis that does not answer, and closes that connection", function()
    local paused = start_redis()
    finally(paused.stop)
    local r = assert(redis.connect{port = paused.port, timeout = 200})
    assert.equal("PONG", r:ping())
    paused.pause()
    assert.same({nil, "timeout"}, {r:get("k")})
    assert.same({nil, "closed"}, {r:get("k")})
    paused.resume()
    -- a blocking command longer than the timeout: r:settimeout for it
    r = assert(redis.connect{port = paused.port, timeout = 100})
    assert.equal(r, r:settimeout(5000))
    assert.same({}, {r:blpop("nothing", 0.3)}) -- Redis's null after 300 ms
    r:settimeout(100)
    assert.same({nil, "timeout"}, {r:blpop("nothing", 0.3)})
  end)

  it("says closed when Redis kills the connection", function()
    local r = assert(connect())
    local id = r:call("CLIENT", "ID")
    local killer = assert(connect())
    assert.equal(1, killer:call("CLIENT", "KILL", "ID", id))
    killer:close()
    assert.same({nil, "closed"}, {r:get("k")})
    assert.same({nil, "closed"}, {r:get("k")})
  end)

  it("keeps released connections in this worker's pool, per database and credentials", function()
    local r = assert(connect{db = 5})
    local id = r:call("CLIENT", "ID")
    assert.is_true(r:release())
    assert.same({nil, "closed"}, {r:get("k")}) -- the handle is done with
    assert.equal(1, redis.pooled{port = srv.port, db = 5})
    local again = assert(connect{db = 5})
    assert.equal(id, again:call("CLIENT", "ID"))
    assert.equal(0, redis.pooled{port = srv.port, db = 5})
    -- another database, or pool = false: a new connection
    local other = assert(connect{db = 6})
    assert.are_not.equal(id, other:call("CLIENT", "ID"))
    other:close()
    local unpooled = assert(connect{db = 5, pool = false})
    assert.are_not.equal(id, unpooled:call("CLIENT", "ID"))
    unpooled:close()
    -- SELECT moves it to that database's pool
    again:select(7)
    assert.is_true(again:release())
    assert.equal(1, redis.pooled{port = srv.port, db = 7})
    local seven = assert(connect{db = 7})
    assert.equal(id, seven:call("CLIENT", "ID"))
    -- a connection in a transaction is closed, not pooled
    seven:multi()
    local ok, why = seven:release()
    assert.is_nil(ok)
    assert.equal("not reusable: in a transaction (MULTI)", why)
    assert.equal(0, redis.pooled{port = srv.port, db = 7})
    -- one Redis closed while pooled is not given out
    local r8 = assert(connect{db = 8})
    local id8 = r8:call("CLIENT", "ID")
    r8:release()
    local killer = assert(connect())
    killer:call("CLIENT", "KILL", "ID", id8)
    killer:close()
    assert.is_true(helper.eventually(function()
      local s = assert(connect{db = 8})
      local id_now = s:call("CLIENT", "ID")
      s:close()
      return id_now ~= nil and id_now ~= id8
    end))
  end)

  it("talks TLS with verification to redis-server --tls-port", function()
    local dir = helper.certs()
    local tls = start_redis({"--tls-cert-file", dir .. "/a.test.crt", "--tls-key-file",
      dir .. "/a.test.key", "--tls-ca-cert-file", dir .. "/ca.crt", "--tls-auth-clients", "no"},
      "--tls-port")
    finally(tls.stop)
    local r = assert(redis.connect{port = tls.port,
      tls = {server_name = "a.test", ca = dir .. "/ca.crt"}})
    assert.equal("OK", r:set("t", "over tls"))
    assert.equal("over tls", r:get("t"))
    r:close()
    -- the system's CAs do not know the test CA
    local nr, err = redis.connect{port = tls.port, tls = {server_name = "a.test"}}
    assert.is_nil(nr)
    assert.is_string(err)
  end)
end)

describe("rill.redis parser", function()
  -- A fake server: answers each command with the next canned reply, written
  -- a byte at a time when slow is true, in pieces of slow() bytes when it is
  -- a function (replies cut everywhere).
  local function fake(replies, slow)
    local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      sock:settimeout(5000)
      for _, reply in ipairs(replies) do
        local line = sock:read_until("\r\n")
        if not line then return end
        local n = tonumber(line:match("^%*(%d+)"))
        for _ = 1, n do
          local len = tonumber(sock:read_until("\r\n"):sub(2))
          sock:read(len + 2)
        end
        if slow then
          -- slow: true (a byte at a time) or a function giving piece sizes
          local i = 1
          while i <= #reply do
            local n = slow == true and 1 or slow()
            sock:write(reply:sub(i, i + n - 1))
            sock:flush()
            i = i + n
            if slow ~= true or i % 7 == 0 then rill.yield() end
          end
        else
          sock:write(reply)
        end
      end
      sock:read_some()
    end})
    return l
  end

  local REPLIES = {
    "%2\r\n+a\r\n:1\r\n$1\r\nb\r\n*2\r\n_\r\n#f\r\n",
    "|1\r\n+ttl\r\n:3600\r\n$5\r\nvalue\r\n",
    "*3\r\n(3492890328409238509324850943850943825024385\r\n=15\r\ntxt:Some string\r\n,-inf\r\n",
    ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n+after push\r\n",
    "*2\r\n*1\r\n*0\r\n~1\r\n$-1\r\n",
    "!21\r\nSYNTAX invalid syntax\r\n",
    "*-1\r\n",
  }

  local function check(r)
    assert.same({a = 1, b = {redis.null, false}}, r:call("X"))
    assert.equal("value", r:call("X")) -- the attribute before it is dropped
    assert.same({"3492890328409238509324850943850943825024385", "Some string", -math.huge},
      r:call("X"))
    assert.equal("after push", r:call("X")) -- a push outside a subscription is dropped
    assert.same({{{}}, {redis.null}}, r:call("X"))
    assert.same({nil, "SYNTAX invalid syntax"}, {r:call("X")})
    assert.same({nil}, {r:call("X")})
  end

  it("reads every RESP3 type, whole or cut into single bytes", function()
    for _, slow in ipairs{false, true} do
      local l = fake(REPLIES, slow)
      local r = assert(redis.connect{port = l:port(), pool = false})
      check(r)
      r:close()
      l:close()
    end
  end)

  it("parses 300 random replies the same however the bytes are cut", function()
    math.randomseed(15)
    local random, char = math.random, string.char
    local function str()
      local t = {}
      for i = 1, random(0, 12) do t[i] = char(random(0, 255)) end
      return table.concat(t)
    end
    local word = function() return ("k" .. random(1, 1e6)) end
    -- a random reply: its RESP3 bytes and the value rill.redis gives for it
    local function gen(depth, top)
      local kind = random(1, depth < 4 and 11 or 8)
      if kind == 1 then
        local w = word()
        return "+" .. w .. "\r\n", w
      elseif kind == 2 then
        local v = str()
        return "$" .. #v .. "\r\n" .. v .. "\r\n", v
      elseif kind == 3 then
        local n = random(-1e12, 1e12)
        return ":" .. n .. "\r\n", n
      elseif kind == 4 and not top then
        return "_\r\n", redis.null
      elseif kind == 5 then
        local d = random(-1000, 1000) / 4
        return "," .. d .. "\r\n", d
      elseif kind == 6 then
        local b = random(2) == 1
        return (b and "#t" or "#f") .. "\r\n", b
      elseif kind == 7 then
        local w = "=" -- verbatim
        local v = str()
        return w .. (#v + 4) .. "\r\ntxt:" .. v .. "\r\n", v
      elseif kind == 8 or kind == 4 then
        local digits = tostring(random(1, 9)) .. string.rep("7", random(20, 40))
        return "(" .. digits .. "\r\n", digits
      end
      local n = random(0, 4)
      local parts, value = {}, {}
      if kind == 9 then -- a map with string keys
        parts[1] = "%" .. n .. "\r\n"
        for _ = 1, n do
          local k = word()
          local b, v = gen(depth + 1)
          parts[#parts + 1] = "+" .. k .. "\r\n" .. b
          value[k] = v
        end
      else -- an array or a set
        parts[1] = (kind == 10 and "*" or "~") .. n .. "\r\n"
        for i = 1, n do
          local b, v = gen(depth + 1)
          parts[#parts + 1] = b
          value[i] = v
        end
      end
      return table.concat(parts), value
    end
    local replies, values = {}, {}
    for i = 1, 300 do replies[i], values[i] = gen(1, true) end
    for _, cut in ipairs{false, true} do
      local l = fake(replies, cut and function() return random(1, 40) end)
      local r = assert(redis.connect{port = l:port(), pool = false})
      for i = 1, 300 do assert.same(values[i], r:call("X")) end
      r:close()
      l:close()
    end
  end)

  it("closes the connection with 'too large' past the limits, and 'bad reply' on broken RESP", function()
    local cases = {
      {"$11\r\nhello world\r\n", {max_bulk = 10}, "^too large"},
      {"*1\r\n*1\r\n*1\r\n:1\r\n", {max_depth = 2}, "^too large"},
      {"*5\r\n", {max_elements = 4}, "^too large"},
      {"+" .. string.rep("a", 2000), {max_line = 1000}, "^too large"},
      {"?what\r\n", {}, "^bad reply"},
      {"$abc\r\n", {}, "^bad reply"},
    }
    for _, case in ipairs(cases) do
      local l = fake({case[1], "+OK\r\n"})
      local opts = {port = l:port(), pool = false}
      for k, v in pairs(case[2]) do opts[k] = v end
      local r = assert(redis.connect(opts))
      local v, err = r:call("X")
      assert.is_nil(v)
      assert.matches(case[3], err)
      assert.same({nil, "closed"}, {r:call("X")})
      l:close()
    end
  end)
end)

describe("examples/redis_chat.lua", function()
  it("carries a chat between two rill instances of two workers each through Redis", function()
    local rs, a, b = start_redis(), nil, nil
    -- (busted keeps one finally per test)
    finally(function()
      if a then a.stop() end
      if b then b.stop() end
      rs.stop()
    end)
    local env = {REDIS_PORT = tostring(rs.port), CHAT_CHANNEL = "chat" .. rs.port}
    a = helper.start({"serve", "examples/redis_chat.lua", "--listen", "127.0.0.1:0",
      "--workers", "2"}, env)
    b = helper.start({"serve", "examples/redis_chat.lua", "--listen", "127.0.0.1:0",
      "--workers", "2"}, env)
    local clients = {}
    for i = 1, 8 do
      local port = i % 2 == 1 and a.port or b.port
      local ws = assert(helper.ws(("ws://127.0.0.1:%d/ws?name=u%d"):format(port, i)))
      -- welcomed once its worker is subscribed
      assert.equal("welcome u" .. i, ws:receive():read_all())
      clients[i] = ws
    end
    -- every client hears every client, whichever instance and worker it is on
    for i = 1, 8 do clients[i]:send("hello from " .. i) end
    for j = 1, 8 do
      local heard = {}
      local n = 0
      while n < 8 do
        local text = assert(clients[j]:receive()):read_all()
        local from = text:match("^u%d+: hello from (%d+)$")
        if from and not heard[from] then
          heard[from] = true
          n = n + 1
        end
      end
    end
    for i = 1, 8 do clients[i]:close() end
    assert.equal(0, a.stop())
    assert.equal(0, b.stop())
  end)
end)
