-- rill.pool: idle connections kept by key, given out only while their socket
-- is still idle, closed past the size and the idle timeout.
local rill = require "rill"

describe("rill.pool", function()
  -- A server whose connections each do what the test asks through `script`
  -- (a function of the socket), then wait for the client's close.
  local l, script
  before_each(function()
    script = nil
    l = assert(rill.listen{host = "127.0.0.1", port = 0, handler = function(sock)
      sock:settimeout(30000)
      if script then script(sock) end
      sock:read_some(1) -- until the client closes
    end})
  end)
  after_each(function() l:close() end)

  -- A connection as a client library would wrap one.
  local function conn()
    local sock = assert(rill.connect("127.0.0.1", l:port()))
    return {sock = sock, closed = false, close = function(self)
      self.closed = true
      self.sock:close()
    end}
  end

  it("gives back the newest connection put for the key, and nothing for another key", function()
    local conns = rill.pool.new()
    local a, b = conn(), conn()
    assert.is_nil(conns:get("k"))
    conns:put("k", a, a.sock)
    conns:put("k", b, b.sock)
    assert.equal(2, conns:count("k"))
    assert.is_nil(conns:get("other"))
    assert.equal(b, conns:get("k"))
    assert.equal(a, conns:get("k"))
    assert.is_nil(conns:get("k"))
    assert.is_false(a.closed or b.closed)
    -- a connection taken back is usable
    assert.is_true(a.sock:write("x"))
    a:close()
    b:close()
  end)

  it("closes a connection past size instead of keeping it", function()
    local conns = rill.pool.new{size = 2}
    local cs = {conn(), conn(), conn()}
    for _, c in ipairs(cs) do conns:put("k", c, c.sock) end
    assert.equal(2, conns:count("k"))
    assert.is_true(cs[3].closed)
    assert.is_false(cs[1].closed or cs[2].closed)
    conns:drop("k")
    assert.equal(0, conns:count("k"))
    assert.is_true(cs[1].closed and cs[2].closed)
  end)

  it("does not give out a connection the peer closed or wrote on while it was idle", function()
    local conns = rill.pool.new()
    for _, what in ipairs{"close", "bytes"} do
      script = function(sock)
        rill.sleep(50)
        if what == "close" then sock:close() else sock:write("stray") end
      end
      local c = conn()
      conns:put("k", c, c.sock)
      rill.sleep(200)
      assert.is_nil(conns:get("k"), what)
      assert.is_true(c.closed, what)
    end
  end)

  it("closes connections idle for idle_timeout ms, read on every use", function()
    local conns = rill.pool.new{idle_timeout = 60000}
    conns.idle_timeout = 100
    local c = conn()
    conns:put("k", c, c.sock)
    rill.sleep(400)
    assert.is_true(c.closed)
    assert.equal(0, conns:count("k"))
  end)

  it("keeps no script running while it holds idle connections", function()
    local dir = os.tmpname()
    local f = assert(io.open(dir, "w"))
    f:write(([[
      local rill = require "rill"
      local conns = rill.pool.new()
      local s = assert(rill.connect("127.0.0.1", %d))
      conns:put("k", s)
      print("done")
    ]]):format(l:port()))
    f:close()
    local helper = require "spec.helper"
    local code, out = helper.run({helper.bin, "run", dir}, {timeout = 10000})
    os.remove(dir)
    assert.equal(0, code)
    assert.equal("done\n", out)
  end)
end)
