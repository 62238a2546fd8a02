-- Cancelling threads, and the concurrency primitives tools build on:
-- rill.semaphore, rill.queue, rill.wait_any.
local rill = require "rill"
local helper = require "spec.helper"

describe("th:cancel()", function()
  it("ends the thread's wait with canceled and closes the socket it let go of", function()
    local closed = false
    local l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(s)
      -- the client sends nothing: the read ends when its socket closes
      closed = s:read_some() == nil
    end})
    finally(function() l:close() end)
    local _, port = l:address()
    local th = rill.spawn(function()
      local s = assert(rill.connect("127.0.0.1", port))
      local data, err = s:read_some() -- the server never writes
      if not data then return nil, err end
    end)
    rill.sleep(20)
    assert.equal("running", th:status())
    assert.is_true(th:cancel())
    assert.same({true, nil, "canceled"}, {rill.wait(th)})
    assert.is_true(helper.eventually(function() return closed end))
    assert.is_false(th:cancel()) -- it has ended
  end)

  it("makes every later wait of the thread fail too, sleeps included", function()
    local steps = {}
    local th = rill.spawn(function()
      steps[#steps + 1] = {rill.sleep(10000)}
      steps[#steps + 1] = {rill.sleep(1)}
      return "unwound"
    end)
    rill.sleep(10)
    th:cancel()
    assert.same({true, "unwound"}, {rill.wait(th)})
    assert.same({{nil, "canceled"}, {nil, "canceled"}}, steps)
  end)

  it("cancels a thread that has not run yet at its first wait", function()
    local reached = false
    local th = rill.spawn(function()
      reached = true
      return rill.sleep(1000)
    end)
    th:cancel()
    assert.same({true, nil, "canceled"}, {rill.wait(th)})
    assert.is_true(reached)
  end)

  it("gives rill.wait's timeout as nil, timeout, and the thread goes on", function()
    local th = rill.spawn(function() rill.sleep(100) return "done" end)
    assert.same({nil, "timeout"}, {rill.wait(th, 10)})
    assert.same({true, "done"}, {rill.wait(th)})
  end)
end)

describe("rill.semaphore", function()
  it("lets n holders in at once, in the order they came", function()
    local sem = rill.semaphore(2)
    local active, most, order = 0, 0, {}
    local ths = {}
    for i = 1, 6 do
      ths[i] = rill.spawn(function()
        return sem:with(function()
          order[#order + 1] = i
          active = active + 1
          most = math.max(most, active)
          rill.sleep(10)
          active = active - 1
          return i * 10
        end)
      end)
    end
    for i = 1, 6 do assert.same({true, i * 10}, {rill.wait(ths[i])}) end
    assert.equal(2, most)
    assert.same({1, 2, 3, 4, 5, 6}, order)
    assert.equal(2, sem:available())
  end)

  it("releases the permit when fn raises, and passes the error on", function()
    local sem = rill.semaphore(1)
    local ok, err = pcall(sem.with, sem, function() error("boom", 0) end)
    assert.same({false, "boom"}, {ok, err})
    assert.equal(1, sem:available())
  end)

  it("times out, and a cancelled waiter takes no permit", function()
    local sem = rill.semaphore(1)
    assert.is_true(sem:acquire())
    assert.same({nil, "timeout"}, {sem:acquire(10)})
    local th = rill.spawn(function() return sem:acquire() end)
    rill.sleep(5)
    th:cancel()
    assert.same({true, nil, "canceled"}, {rill.wait(th)})
    sem:release()
    assert.equal(1, sem:available())
  end)

  it("refuses a bad count at the caller's line", function()
    local ok, err = pcall(function()
      local s = rill.semaphore(-1)
      return s
    end)
    assert.is_false(ok)
    assert.matches("sync_spec%.lua:%d+: rill%.semaphore: n must be a count", err)
  end)
end)

describe("rill.queue", function()
  it("makes push wait while full and pop while empty, in order", function()
    local q = rill.queue(2)
    local pushed = 0
    local producer = rill.spawn(function()
      for i = 1, 5 do
        assert(q:push(i))
        pushed = i
      end
      q:close()
    end)
    rill.sleep(10)
    assert.equal(2, pushed) -- the third push waits for room
    assert.equal(2, q:len())
    local got = {}
    while true do
      local v, err = q:pop(1000)
      if not v then
        assert.equal("closed", err)
        break
      end
      got[#got + 1] = v
    end
    assert.same({1, 2, 3, 4, 5}, got)
    assert.same({true}, {rill.wait(producer)})
    assert.same({nil, "closed"}, {q:push(6)})
  end)

  it("times out a pop on an empty queue and a push on a full one", function()
    local q = rill.queue(1)
    assert.same({nil, "timeout"}, {q:pop(10)})
    assert.is_true(q:push("a"))
    assert.same({nil, "timeout"}, {q:push("b", 10)})
    assert.equal("a", q:pop())
  end)

  it("wakes waiting pushers and poppers on close", function()
    local q = rill.queue(1)
    local popper = rill.spawn(function() return q:pop() end)
    rill.sleep(5)
    q:close()
    assert.same({true, nil, "closed"}, {rill.wait(popper)})
  end)
end)

describe("rill.wait_any", function()
  it("gives the first thread to end, and leaves the others to wait for", function()
    local slow = rill.spawn(function() rill.sleep(100) return "slow" end)
    local fast = rill.spawn(function() rill.sleep(5) return "fast" end)
    assert.same({2, true, "fast"}, {rill.wait_any({slow, fast})})
    assert.same({true, "slow"}, {rill.wait(slow)})
  end)

  it("reports a failure as rill.wait does, and times out", function()
    local bad = rill.spawn(function() error("no", 0) end)
    assert.same({1, false, "no"}, {rill.wait_any({bad})})
    local th = rill.spawn(function() rill.sleep(200) end)
    assert.same({nil, "timeout"}, {rill.wait_any({th}, 10)})
    assert.same({true}, {rill.wait(th)})
  end)
end)
