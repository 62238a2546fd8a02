-- `rill run` as a tool's runtime (issue 17): exit statuses, signals, and
-- log lines on a terminal.
local rill = require "rill"
local helper = require "spec.helper"

local function script_file(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  return path
end

-- Starts `rill run` on code; returns the process, once it printed "ready".
local function start(code)
  local path = script_file(code)
  local p = assert(rill.exec{helper.bin, "run", path, stdout = "pipe", stderr = "pipe"})
  p.stdout:settimeout(10000)
  assert.equal("ready", p.stdout:read_until("\n"))
  os.remove(path)
  return p
end

describe("rill run", function()
  it("exits 130 on SIGINT and 129 on SIGHUP when the script takes neither, " ..
    "and stops gracefully on SIGTERM", function()
    for sig, want in pairs{INT = 130, HUP = 129, TERM = 0} do
      local p = start([[
        local rill = require "rill"
        rill.stdout:write("ready\n")
        rill.sleep(30000)
      ]])
      assert.is_true(p:kill(sig))
      assert.same({want}, {p:wait(10000)})
    end
  end)

  it("runs rill.on_signal handlers instead, and the default again once removed", function()
    local p = start([[
      local rill = require "rill"
      local remove
      remove = rill.on_signal("SIGUSR1", function(name)
        rill.stdout:write("got ", name, "\n")
      end)
      rill.on_signal("INT", function()
        rill.stdout:write("int: cleaning up\n")
        remove()
        rill.exit(3)
      end)
      rill.stdout:write("ready\n")
      rill.sleep(30000)
    ]])
    p:kill("USR1")
    assert.equal("got USR1", p.stdout:read_until("\n"))
    p:kill("USR1")
    assert.equal("got USR1", p.stdout:read_until("\n"))
    p:kill("INT")
    assert.equal("int: cleaning up", p.stdout:read_until("\n"))
    assert.same({3}, {p:wait(10000)})
  end)

  it("refuses a signal it cannot take, naming it", function()
    local code, _, err = helper.run({helper.bin, "run", script_file([[
      local rill = require "rill"
      rill.on_signal("KILL", function() end)
    ]])})
    assert.equal(1, code)
    assert.matches("rill.on_signal: INT, TERM, HUP, USR1 or USR2, not KILL", err, 1, true)
  end)

  it("exits 1 when a thread raised and nobody took its error, 0 when one did", function()
    local code, _, err = helper.run({helper.bin, "run", script_file([[
      local rill = require "rill"
      rill.spawn(function() error("lost") end)
    ]])})
    assert.equal(1, code)
    assert.matches("lost", err)
    code, _, err = helper.run({helper.bin, "run", script_file([[
      local rill = require "rill"
      local th = rill.spawn(function() error("seen") end)
      local ok, e = rill.wait(th)
      assert(not ok and e:find("seen"))
    ]])})
    assert.equal(0, code, err)
  end)

  it("writes plain log lines on a terminal, stamped ones otherwise", function()
    local path = script_file([[
      local rill = require "rill"
      rill.log("warn", "careful")
    ]])
    finally(function() os.remove(path) end)
    -- script(1) gives the child a pseudo-terminal
    local code, out = helper.run({"script", "-qec", helper.bin .. " run " .. path, "/dev/null"})
    assert.equal(0, code)
    assert.equal("rill: warn: careful\r\n", out)
    local _, _, err = helper.run({helper.bin, "run", path})
    assert.matches("^%d%d%d%d%-%d%d%-%d%dT[%d:.]+Z %[warn%] %[w0%] careful\n$", err)
  end)

  it("prints its usage for --help", function()
    local code, out = helper.run({helper.bin, "run", "--help"})
    assert.equal(0, code)
    assert.matches("usage: rill serve", out, 1, true)
  end)
end)
