-- rill.shared: dicts and channels shared by the workers of one process.
-- Semantics in this process first, then `rill serve --workers 2` apps:
-- a value set through one worker read through both, 10,000 messages to
-- four subscribers on two workers with one of them slow, and reloads.
local rill = require "rill"
local helper = require "spec.helper"

local shared = rill.shared

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function tmpdir()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir) == 0)
  return dir
end

local function get(port, path)
  local code, out, err = helper.curl("-i", helper.url(port, path))
  assert(code == 0, "curl: " .. err)
  local worker = out:match("\r\n[Xx]%-[Ww]orker: (%d+)")
  return out:match("\r\n\r\n(.*)$"), worker
end

-- A unique name per test, so that tests in one process do not meet.
local seq = 0
local function uniq(base)
  seq = seq + 1
  return ("%s.%d.%d"):format(base, seq, math.floor(rill.time() * 1000))
end

describe("rill.shared.dict", function()
  it("stores strings, numbers and booleans; get of a missing key is nil", function()
    local d = shared.dict(uniq("types"))
    assert.is_nil(d:get("none"))
    assert.is_true(d:set("s", "hello"))
    assert.is_true(d:set("n", 42.5))
    assert.is_true(d:set("t", true))
    assert.is_true(d:set("f", false))
    assert.is_true(d:set("e", ""))
    assert.is_true(d:set(7, "seven")) -- a number key is its text
    assert.equal("hello", d:get("s"))
    assert.equal(42.5, d:get("n"))
    assert.is_true(d:get("t"))
    assert.is_false(d:get("f"))
    assert.equal("", d:get("e"))
    assert.equal("seven", d:get("7"))
    local big = string.rep("0123456789", 20000) -- larger than the scratch buffer
    assert.is_true(d:set("big", big))
    assert.equal(big, d:get("big"))
    assert.equal(big, d:get("big"))
    local bin = "a\0b\255"
    assert.is_true(d:set(bin, bin))
    assert.equal(bin, d:get(bin))
    assert.is_true(d:delete("s"))
    assert.is_nil(d:get("s"))
    assert.is_true(d:delete("s")) -- again: fine
  end)

  it("is the same dict under the same name, and keeps its first size", function()
    local name = uniq("same")
    local a = shared.dict(name, {size = 64 * 1024})
    local b = shared.dict(name, {size = 4096 * 1024})
    assert.equal(a, b)
    assert.equal(64 * 1024, b:capacity())
    assert.equal(1024 * 1024, shared.dict(uniq("default")):capacity())
    a:set("k", "v")
    assert.equal("v", b:get("k"))
    assert.equal(name, a.name)
  end)

  it("expires values after ttl ms; ttl, expire and flush_expired", function()
    local d = shared.dict(uniq("ttl"))
    assert.is_true(d:set("short", "x", 30))
    assert.is_true(d:set("long", "y", 60000))
    assert.is_true(d:set("never", "z"))
    local left = d:ttl("long")
    assert.is_true(left > 50000 and left <= 60000, tostring(left))
    assert.equal(0, d:ttl("never"))
    local none, err = d:ttl("missing")
    assert.is_nil(none)
    assert.equal("not found", err)
    assert.is_true(helper.eventually(function() return d:get("short") == nil end))
    assert.equal("y", d:get("long"))
    assert.is_true(d:expire("never", 20))
    assert.is_true(d:expire("long", 0)) -- 0: never expires
    assert.equal(0, d:ttl("long"))
    assert.same({nil, "not found"}, {d:expire("missing", 10)})
    assert.is_true(d:set("a", 1, 10))
    assert.is_true(d:set("b", 2, 10))
    rill.sleep(40)
    assert.equal(3, d:flush_expired()) -- a, b and never
    assert.equal(0, d:flush_expired())
    assert.same({"long"}, d:keys())
  end)

  it("add, replace, safe_set and incr", function()
    local d = shared.dict(uniq("ops"))
    assert.is_true(d:add("k", "one"))
    assert.same({nil, "exists"}, {d:add("k", "two")})
    assert.equal("one", d:get("k"))
    assert.same({nil, "not found"}, {d:replace("other", "x")})
    assert.is_nil(d:get("other"))
    assert.is_true(d:replace("k", "three"))
    assert.equal("three", d:get("k"))
    assert.is_true(d:safe_set("k", "four"))
    assert.equal("four", d:get("k"))
    -- add over an expired value works
    assert.is_true(d:set("gone", 1, 10))
    rill.sleep(30)
    assert.is_true(d:add("gone", 2))

    assert.same({nil, "not found"}, {d:incr("n", 1)})
    assert.equal(11, d:incr("n", 1, 10))
    assert.equal(8, d:incr("n", -3))
    assert.equal(8.5, d:incr("n", 0.5))
    assert.same({nil, "not a number"}, {d:incr("k", 1)})
    assert.equal(5, d:incr("t", 5, 0, 300)) -- init_ttl
    assert.is_true(d:ttl("t") > 0 or d:get("t") == nil)
    assert.is_true(helper.eventually(function() return d:get("t") == nil end))
  end)

  it("set evicts the least recently used past the cap; safe_set and add say no memory", function()
    local d = shared.dict(uniq("cap"), {size = 16 * 1024})
    local v = string.rep("x", 1000)
    local evicted = false
    for i = 1, 100 do
      local ok, how = d:set("k" .. i, v)
      assert.is_true(ok)
      if how == "evicted" then evicted = true end
      assert.is_true(d:free_space() >= 0)
    end
    assert.is_true(evicted)
    assert.equal(v, d:get("k100"))
    assert.is_nil(d:get("k1"))
    local keys = d:keys(0)
    assert.is_true(#keys > 5 and #keys < 17, #keys)
    assert.equal("k100", keys[1]) -- most recently used first
    -- a get makes a key recently used: the oldest left survives the next set
    local oldest = keys[#keys]
    assert.equal(v, d:get(oldest))
    d:set("one more", v)
    assert.equal(v, d:get(oldest))

    assert.same({nil, "no memory"}, {d:safe_set("safe", string.rep("y", 8000))})
    assert.same({nil, "no memory"}, {d:add("safe", string.rep("y", 8000))})
    assert.is_nil(d:get("safe"))
    assert.equal(v, d:get("k100"))
    assert.is_true(d:flush_all())
    assert.same({}, d:keys())
    assert.equal(16 * 1024, d:free_space())
    assert.is_true(d:safe_set("safe", string.rep("y", 8000)))
    -- sizes past the limits are errors, not raises
    assert.same({nil, "too large"}, {d:set("huge", string.rep("z", 17 * 1024))})
    assert.same({nil, "too large"}, {d:set(string.rep("k", 65536), 1)})
    assert.is_nil(d:get(string.rep("k", 65536)))
  end)

  it("keys(max) lists at most max live keys", function()
    local d = shared.dict(uniq("keys"))
    for i = 1, 20 do d:set("k" .. i, i) end
    d:set("dead", 1, 1)
    rill.sleep(10)
    assert.equal(5, #d:keys(5))
    assert.equal(20, #d:keys())
    local seen = {}
    for _, k in ipairs(d:keys(0)) do seen[k] = true end
    assert.is_nil(seen.dead)
    assert.is_true(seen.k1 and seen.k20)
  end)

  it("raises on misuse, at the caller's line", function()
    local d = shared.dict(uniq("misuse"))
    local line = debug.getinfo(1, "l").currentline
    local cases = {
      {function() d:set("k", nil) end, "dict:set: value must be a string, number or boolean, got nil"},
      {function() d:set("k", {}) end, "got table"},
      {function() d:add({}, 1) end, "dict:add: key must be a string or a number"},
      {function() d:set("k", 1, -5) end, "dict:set: ttl must be a number of ms"},
      {function() d:incr("k", "1") end, "dict:incr: by must be a number"},
      {function() d.get("k") end, "dict:get: self must be a dict"},
      {function() shared.dict("x", {size = 10}) end, "rill.shared.dict: size must be"},
      {function() shared.dict(nil) end, "rill.shared.dict: name must be"},
    }
    for i, c in ipairs(cases) do
      local ok, err = pcall(c[1])
      assert.is_false(ok)
      assert.matches(c[2], err, 1, true)
      assert.matches("shared_spec.lua:" .. (line + 1 + i) .. ":", err, 1, true)
    end
  end)
end)

describe("rill.shared.channel", function()
  it("delivers to every subscriber, in order; read waits, with a timeout", function()
    local ch = shared.channel(uniq("basic"))
    assert.equal(0, ch:publish("nobody"))
    local a, b = ch:subscribe(), ch:subscribe()
    assert.equal(2, ch:subscribers())
    assert.equal(2, ch:publish("one"))
    assert.equal(2, ch:publish(2))
    assert.equal("one", a:read())
    assert.equal("2", a:next())
    assert.equal("one", b:read())
    assert.equal(1, b:pending())
    assert.same({nil, "timeout"}, {a:read(20)})
    -- a read that waits is woken by a publish from another thread
    local t = rill.spawn(function() return a:read(5000) end)
    rill.sleep(10)
    ch:publish("later")
    assert.same({true, "later"}, {rill.wait(t)})
    a:close()
    b:close()
    assert.equal(0, ch:subscribers())
    assert.same({nil, "closed"}, {a:read()})
  end)

  it("tells a subscriber that fell behind once, then goes on with new messages", function()
    local ch = shared.channel(uniq("overflow"))
    local sub = ch:subscribe({queue = 3})
    for i = 1, 4 do ch:publish("m" .. i) end
    assert.same({nil, "overflow"}, {sub:read()})
    assert.equal("m4", sub:read())
    ch:publish("m5")
    assert.equal("m5", sub:read())
    local bytes = ch:subscribe({bytes = 10})
    ch:publish("0123456789")
    ch:publish("x")
    local got = {}
    for msg, err in bytes:messages() do
      got[#got + 1] = msg or err
      if #got == 2 then break end
    end
    assert.same({"overflow", "x"}, got)
    sub:close()
    bytes:close()
  end)

  it("ends a waiting read with closed, and ends messages()", function()
    local ch = shared.channel(uniq("close"))
    local sub = ch:subscribe()
    local t = rill.spawn(function() return sub:read() end)
    local n = 0
    local sub2 = ch:subscribe()
    local th2 = rill.spawn(function()
      for _ in sub2:messages() do n = n + 1 end
      return "ended"
    end)
    rill.sleep(10)
    ch:publish("x")
    assert.same({true, "x"}, {rill.wait(t, 5000)})
    assert.is_true(helper.eventually(function() return n == 1 end))
    sub:close()
    sub2:close() -- ends the loop
    assert.same({true, "ended"}, {rill.wait(th2, 5000)})
    assert.equal(1, n)
    local t2 = rill.spawn(function() return sub:read() end)
    assert.same({true, nil, "closed"}, {rill.wait(t2)})
    local sub3 = ch:subscribe()
    local t3 = rill.spawn(function() return sub3:read(5000) end)
    rill.sleep(5)
    sub3:close()
    assert.same({true, nil, "closed"}, {rill.wait(t3)})
  end)

  it("unsubscribes a subscription that is collected", function()
    local ch = shared.channel(uniq("gc"))
    local function make() for _ = 1, 10 do ch:subscribe() end end
    make()
    assert.equal(10, ch:subscribers())
    collectgarbage()
    collectgarbage()
    assert.equal(0, ch:subscribers())
    assert.equal(0, ch:publish("x"))
  end)

  it("frees channels nobody holds: names made from input do not pile up", function()
    local core = require "rill.core"
    collectgarbage()
    local before = core.chan_count()
    local function rooms()
      for i = 1, 1000 do
        local ch = shared.channel(uniq("room"))
        local sub = ch:subscribe()
        ch:publish("hello " .. i)
        assert.equal("hello " .. i, sub:read())
        if i % 2 == 0 then sub:close() end
      end
    end
    rooms()
    assert.is_true(core.chan_count() >= before)
    collectgarbage()
    collectgarbage()
    assert.equal(before, core.chan_count())
  end)

  it("raises on misuse", function()
    local ch = shared.channel(uniq("misuse"))
    assert.has_error(function() ch:publish({}) end, nil)
    local ok, err = pcall(ch.publish, ch, nil)
    assert.is_false(ok)
    assert.matches("ch:publish: msg must be a string", err, 1, true)
    ok, err = pcall(ch.subscribe, ch, {queue = 0})
    assert.matches("ch:subscribe: queue must be", err, 1, true)
    ok, err = pcall(shared.channel, "")
    assert.matches("rill.shared.channel: name must be", err, 1, true)
    local sub = ch:subscribe()
    local t = rill.spawn(function() return sub:read() end)
    rill.sleep(1)
    ok, err = pcall(sub.read, sub, 10)
    assert.is_false(ok)
    assert.matches("has a reader already", err, 1, true)
    sub:close()
    rill.wait(t)
    assert.same({nil, "too large"}, {ch:publish(string.rep("x", 16 * 1024 * 1024 + 1))})
  end)
end)

-- ---- across workers ----

local APP = [[
local rill = require "rill"
local d = rill.shared.dict("app")
local ch = rill.shared.channel("app")
local keep = ch:subscribe() -- one per load: the old one goes with the old app

local RESULTS = rill.shared.dict("results")
local N = 10000

-- Four subscribers for the issue's test: two on each worker; D, on worker 1,
-- reads slowly with the default queue (1024 messages).
local function subscriber(name, opts, slow)
  local sub = rill.shared.channel("flood"):subscribe(opts)
  RESULTS:set(name .. ".worker", rill.worker_id())
  rill.spawn(function()
    local want, count, bad, over = 0, 0, 0, 0
    while true do
      local msg, err = sub:read()
      if err == "overflow" then
        over = over + 1
        RESULTS:set(name .. ".overflow", over)
      elseif not msg then
        return
      else
        local i = tonumber(msg:match("^(%d+) "))
        if slow then
          if not i or i < want then bad = bad + 1 end
        elseif i ~= want then
          bad = bad + 1
        end
        want = (i or want) + 1
        count = count + 1
        RESULTS:set(name .. ".count", count)
        RESULTS:set(name .. ".bad", bad)
        RESULTS:set(name .. ".pending", math.max(RESULTS:get(name .. ".pending") or 0,
          sub:pending()))
        if slow then rill.sleep(5) end
      end
    end
  end)
end
if rill.worker_id() == 0 then
  subscriber("A", {queue = N})
  subscriber("B", {queue = N})
elseif rill.worker_id() == 1 then
  subscriber("C", {queue = N})
  subscriber("D", nil, true)
end

return function(req, res)
  res:header("X-Worker", tostring(rill.worker_id()))
  res:header("Connection", "close")
  local key, value = req.path:match("^/set/([^/]+)/(.*)$")
  if key then return res:send(tostring(d:set(key, value))) end
  key = req.path:match("^/get/(.*)$")
  if key then return res:send(tostring(d:get(key))) end
  key = req.path:match("^/incr/(.*)$")
  if key then return res:send(tostring(d:incr(key, 1, 0))) end
  if req.path == "/subscribers" then
    assert(keep) -- the handler holds this app's subscription
    collectgarbage()
    collectgarbage()
    return res:send(tostring(ch:subscribers()))
  end
  if req.path == "/flood" then
    local pad = string.rep("m", 1000)
    for i = 0, N - 1 do rill.shared.channel("flood"):publish(i .. " " .. pad) end
    return res:send("published")
  end
  if req.path == "/results" then
    local out = {}
    for _, name in ipairs({"A", "B", "C", "D"}) do
      local function v(k) return tostring(RESULTS:get(name .. "." .. k) or 0) end
      out[#out + 1] = ("%s %s %s %s %s %s"):format(name, v("worker"), v("count"), v("bad"),
        v("overflow"), v("pending"))
    end
    return res:send(table.concat(out, "\n"))
  end
  res:status(404):send("no")
end
]]

describe("shared across workers", function()
  local dir, srv
  before_each(function()
    dir = tmpdir()
    write(dir .. "/app.lua", APP)
    srv = helper.serve(dir .. "/app.lua", {"--workers", "2"})
  end)
  after_each(function()
    if srv then assert.equal(0, srv.stop()) end
    os.execute("rm -rf " .. dir)
  end)

  it("a value set through one worker is read through both", function()
    assert.equal("true", get(srv.port, "/set/colour/blue"))
    local seen, n = {}, 0
    while not (seen["0"] and seen["1"]) and n < 200 do
      local body, worker = get(srv.port, "/get/colour")
      assert.equal("blue", body)
      seen[worker] = true
      n = n + 1
    end
    assert.is_true(seen["0"] and seen["1"], "both workers answered")
    -- counters from both workers add up
    local total = 0
    for _ = 1, 20 do total = tonumber((get(srv.port, "/incr/hits"))) end
    assert.equal(20, total)
  end)

  it("incr from both workers at once loses no increment", function()
    local urls = {}
    for _ = 1, 50 do urls[#urls + 1] = helper.url(srv.port, "/incr/together") end
    local runs = {}
    for i = 1, 10 do
      -- ten curls at once, each request on a connection of its own (the app
      -- answers Connection: close), so both workers serve them
      runs[i] = rill.spawn(function()
        local argv = {"curl", "-sS", "--max-time", "60"}
        for _, u in ipairs(urls) do argv[#argv + 1] = u end
        return helper.run(argv)
      end)
    end
    for i = 1, 10 do
      local _, code = rill.wait(runs[i])
      assert.equal(0, code)
    end
    assert.equal("501", (get(srv.port, "/incr/together")))
  end)

  it("10,000 messages to 4 subscribers on 2 workers, one slow: the others get all " ..
     "in order, the slow one overflow, memory bounded", function()
    local rss0 = helper.rss(srv.pid)
    assert.equal("published", (get(srv.port, "/flood")))
    local results
    local function parse()
      results = {}
      for name, w, count, bad, over, pending in
        (get(srv.port, "/results")):gmatch("(%a) (%d+) (%d+) (%d+) (%d+) (%d+)") do
        results[name] = {worker = tonumber(w), count = tonumber(count), bad = tonumber(bad),
          overflow = tonumber(over), pending = tonumber(pending)}
      end
      return results
    end
    local done = false
    for _ = 1, 600 do
      parse()
      if results.A and results.A.count == 10000 and results.B.count == 10000 and
        results.C.count == 10000 and results.D.overflow > 0 then
        done = true
        break
      end
      rill.sleep(50)
    end
    assert.is_true(done, "results: " .. (get(srv.port, "/results")))
    for _, name in ipairs({"A", "B", "C"}) do
      assert.equal(0, results[name].bad, name .. " in order")
      assert.equal(0, results[name].overflow, name .. " never overflowed")
    end
    assert.equal(0, results.A.worker)
    assert.equal(0, results.B.worker)
    assert.equal(1, results.C.worker)
    assert.equal(1, results.D.worker)
    assert.equal(0, results.D.bad, "the slow one's messages in order too")
    assert.is_true(results.D.count < 10000)
    assert.is_true(results.D.pending <= 1024, "the slow queue is bounded")
    if not helper.sanitized then
      local rss = helper.rss(srv.pid)
      -- 10,000 messages of 1 KB: 10 MB if all were kept at once
      assert.is_true(rss - rss0 < 32 * 1024 * 1024, ("RSS grew by %d"):format(rss - rss0))
    end
  end)

  it("keeps dicts across a reload and leaks no subscription of the old app", function()
    assert.equal("true", get(srv.port, "/set/kept/yes"))
    local function count()
      local seen = {}
      -- each worker holds one subscription of the current app
      for _ = 1, 200 do
        local body, worker = get(srv.port, "/subscribers")
        seen[worker] = tonumber(body)
        if seen["0"] and seen["1"] then break end
      end
      return seen["0"]
    end
    assert.equal(2, count())
    for _ = 1, 3 do
      srv.proc:kill(1) -- SIGHUP
      rill.sleep(200)
    end
    assert.is_true(helper.eventually(function()
      local total = 0
      for _ = 1, 4 do total = tonumber((get(srv.port, "/subscribers"))) end
      return total == 2
    end), "subscriptions after reloads: " .. tostring((get(srv.port, "/subscribers"))))
    assert.equal("yes", (get(srv.port, "/get/kept")))
  end)
end)
