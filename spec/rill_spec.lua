-- The rill module: time, timers, light threads, child processes, `rill run`.
local rill = require "rill"
local helper = require "spec.helper"

describe("rill", function()
  describe("time", function()
    it("now() is monotonic milliseconds and sleep(ms) waits at least ms", function()
      local t0 = rill.now()
      rill.sleep(50)
      local dt = rill.now() - t0
      assert.is_true(dt >= 49 and dt < 1000, "slept " .. dt)
    end)

    it("time() is the wall clock in seconds", function()
      assert.is_true(math.abs(rill.time() - os.time()) < 2)
    end)

    it("sleep lets other threads run", function()
      local order = {}
      local t = rill.spawn(function()
        order[#order + 1] = "thread"
      end)
      order[#order + 1] = "before sleep"
      rill.sleep(0)
      order[#order + 1] = "after sleep"
      rill.wait(t)
      assert.same({"before sleep", "thread", "after sleep"}, order)
    end)
  end)

  describe("timers", function()
    it("run a function once after ms", function()
      local fired = 0
      rill.timer(20, function() fired = fired + 1 end)
      assert.equal(0, fired)
      rill.sleep(60)
      assert.equal(1, fired)
      rill.sleep(40)
      assert.equal(1, fired)
    end)

    it("repeat when asked, until cancelled", function()
      local fired = 0
      local t = rill.timer(10, function() fired = fired + 1 end, 10)
      rill.sleep(75)
      assert.is_true(t:cancel())
      local seen = fired
      assert.is_true(seen >= 3, "fired " .. seen)
      rill.sleep(40)
      assert.equal(seen, fired)
      assert.is_false(t:cancel())
    end)

    it("can wait inside their function", function()
      local done = false
      rill.timer(1, function()
        rill.sleep(10)
        done = true
      end)
      rill.sleep(60)
      assert.is_true(done)
    end)
  end)

  describe("threads", function()
    it("spawn runs a function with its arguments; wait returns its results", function()
      local t = rill.spawn(function(a, b)
        rill.sleep(10)
        return a + b, "x"
      end, 2, 3)
      assert.same({true, 5, "x"}, {rill.wait(t)})
      -- waiting again returns the same results
      assert.same({true, 5, "x"}, {rill.wait(t)})
    end)

    it("wait reports a thread's error as false, message", function()
      local t = rill.spawn(function() error("boom", 0) end)
      local ok, err = rill.wait(t)
      assert.is_false(ok)
      assert.equal("boom", err)
    end)

    it("wait can time out", function()
      local t = rill.spawn(function() rill.sleep(500) end)
      local ok, err = rill.wait(t, 20)
      assert.is_nil(ok)
      assert.equal("timeout", err)
    end)

    it("many threads run concurrently", function()
      local threads = {}
      local t0 = rill.now()
      for i = 1, 200 do
        threads[i] = rill.spawn(function()
          rill.sleep(50)
          return i
        end)
      end
      for i = 1, 200 do
        local ok, v = rill.wait(threads[i])
        assert.is_true(ok)
        assert.equal(i, v)
      end
      assert.is_true(rill.now() - t0 < 1000)
    end)

    it("a bare coroutine.yield lets the others run and comes back", function()
      local ran = false
      local t = rill.spawn(function() ran = true end)
      coroutine.yield()
      assert.is_true(ran)
      rill.wait(t)
    end)
  end)

  describe("exec", function()
    it("runs a child with piped stdio and reports its exit code", function()
      local code, out, err = helper.run({"sh", "-c", "cat; echo err >&2; exit 3"},
        {input = "to stdin"})
      assert.equal(3, code)
      assert.equal("to stdin", out)
      assert.equal("err\n", err)
    end)

    it("reports a missing program", function()
      local p, err = rill.exec{"/nonexistent/program"}
      assert.is_nil(p)
      assert.matches("ENOENT", err)
    end)

    it("reports a signal", function()
      local p = assert(rill.exec{"sleep", "10"})
      p:kill(9)
      local code, sig = p:wait()
      assert.is_nil(code)
      assert.equal(9, sig)
    end)
  end)

  describe("listen", function()
    local function listen_with_bad_option()
      local ok, err = pcall(rill.listen, {host = "127.0.0.1", port = 0,
        max_connections_per_address = "x", handler = function() end})
      if ok then err:close() end -- a listener was made: not ours to keep
      return ok, err
    end

    it("raises, and makes no listener, when max_connections_per_address is not a number",
      function()
        assert.is_false(listen_with_bad_option(), "max_connections_per_address = \"x\" was taken")
      end)

    it("names max_connections_per_address in the error when it is not a number", function()
      local ok, err = listen_with_bad_option()
      assert.is_false(ok, "max_connections_per_address = \"x\" was taken")
      assert.matches("max_connections_per_address", err, 1, true)
    end)
  end)

  describe("listen ports", function()
    it("refuses a port that is not an integer 0-65535, naming it, for TCP and HTTP", function()
      local handler = function() end
      for _, listen in ipairs({rill.listen, rill.http.listen}) do
        for _, port in ipairs({"x", 99999, 65536, -1, 80.5}) do
          local ok, err = pcall(listen, {host = "127.0.0.1", port = port, handler = handler})
          assert.is_false(ok, tostring(port))
          assert.matches("option port must be", err)
        end
      end
      local ok, err = pcall(rill.listen, {host = "127.0.0.1", port = 99999, handler = handler})
      assert.is_false(ok)
      assert.matches("port must be an integer 0%-65535, got 99999", err)
    end)
  end)

  describe("listen timeouts", function()
    -- A raw connection's waits have a deadline unless the listener says
    -- otherwise (300 s by default): a silent peer does not hold its place
    -- forever.
    it("gives a connection handler's reads the listener's timeout", function()
      local got
      local done = false
      local l = assert(rill.listen{host = "127.0.0.1", port = 0, timeout = 200,
        handler = function(sock)
          got = {sock:read_some()}
          done = true
        end})
      local s = assert(rill.connect("127.0.0.1", l:port()))
      for _ = 1, 300 do
        if done then break end
        rill.sleep(10)
      end
      assert.is_nil(got[1])
      assert.equal("timeout", got[2])
      s:close()
      l:close()
    end)
  end)

  describe("errors", function()
    -- rill_strerror() is the library's (rill.h); the running binary exports
    -- it, so Lua reaches it through the FFI.
    it("rill_strerror names rill's own codes, RILL_ELOAD (-30005) among them", function()
      local ffi = require "ffi"
      pcall(ffi.cdef, "const char *rill_strerror(int err);")
      local ok, lib = pcall(function() return ffi.C.rill_strerror and ffi.C end)
      if not ok then
        lib = ffi.load(helper.bin:match("^(.*)/[^/]+$") .. "/librill.so")
      end
      local codes = {{-30005, "the app did not load"}, {-30001, "closed"},
        {-30002, "too long"}, {-30003, "body too large"}, {-30004, "protocol error"},
        {-30006, "not in this state"}}
      for _, c in ipairs(codes) do
        local msg = ffi.string(lib.rill_strerror(c[1]))
        assert.equal(c[2], msg, "rill_strerror(" .. c[1] .. ")")
      end
    end)
  end)

  describe("rill run", function()
    it("runs a script on the event loop with its arguments and exit code", function()
      local f = assert(io.open("/tmp/rill_run_spec.lua", "w"))
      f:write([[
        local rill = require "rill"
        rill.sleep(10)
        print(arg[0]:match("[^/]+$"), arg[1], arg[2])
        return tonumber(arg[2])
      ]])
      f:close()
      local code, out = helper.run({helper.bin, "run", "/tmp/rill_run_spec.lua", "a", "7"})
      assert.equal("rill_run_spec.lua\ta\t7\n", out)
      assert.equal(7, code)
      os.remove("/tmp/rill_run_spec.lua")
    end)

    it("exits 1 with a traceback when the script raises", function()
      local f = assert(io.open("/tmp/rill_run_err.lua", "w"))
      f:write("local function inner() error('broken on purpose') end\ninner()\n")
      f:close()
      local code, _, err = helper.run({helper.bin, "run", "/tmp/rill_run_err.lua"})
      assert.equal(1, code)
      assert.matches("broken on purpose", err)
      assert.matches("stack traceback", err)
      assert.matches("rill_run_err.lua:1", err)
      os.remove("/tmp/rill_run_err.lua")
    end)

    it("prints usage to stdout and exits 0 for --help, with or without serve", function()
      for _, argv in ipairs({{"--help"}, {"serve", "--help"}, {"serve", "-h"}}) do
        local code, out, err = helper.run({helper.bin, unpack(argv)})
        assert.equal(0, code, table.concat(argv, " "))
        assert.matches("usage: rill serve", out)
        assert.matches("%-%-max%-body%-bytes", out)
        assert.equal("", err)
      end
    end)

    it("refuses a --listen address with a port out of range or no host, before serving",
      function()
      for _, addr in ipairs({"127.0.0.1:99999", "127.0.0.1:65536", ":8080", "127.0.0.1"}) do
        local code, out, err = helper.run({helper.bin, "serve", "examples/hello.lua",
          "--listen", addr})
        assert.equal(2, code, addr)
        assert.equal("", out)
        assert.matches("bad %-%-listen address " .. addr:gsub("%p", "%%%0"), err)
      end
      local code, _, err = helper.run({helper.bin, "serve", "examples/hello.lua",
        "--listen-tls", "127.0.0.1:70000", "--tls-cert", "x", "--tls-key", "y"})
      assert.equal(2, code)
      assert.matches("bad %-%-listen%-tls address", err)
    end)

    it("prints its version", function()
      local code, out = helper.run({helper.bin, "version"})
      assert.equal(0, code)
      assert.matches("^rill %d+%.%d+%.%d+", out)
    end)
  end)
end)
