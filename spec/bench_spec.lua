-- bench/run, smoke-tested: `bench/run --quick hello` installs what it needs,
-- starts rill and every peer, and prints the hello table with a row per
-- server and rill's ratio columns. The figures themselves are not checked:
-- they depend on the machine.
local helper = require "spec.helper"

describe("bench/run", function()
  if helper.sanitized then
    pending("skipped under AddressSanitizer: a sanitized rill is no benchmark")
    return
  end

  it("--quick hello prints a table with a row per server and ratio columns", function()
    local results = os.tmpname()
    os.remove(results)
    -- env(1) keeps this process's environment (PATH) and adds RILL_BIN, so
    -- the harness benchmarks the rill under test instead of building one.
    local code, out, err = helper.run({"env", "RILL_BIN=" .. helper.bin, "bench/run", "--quick",
      "--results", results, "hello"}, {timeout = 600000})
    assert.equal(0, code, err)

    assert.matches("\n%- rill: rill %d", out)
    local header = out:match("\n(| server +|[^\n]*)\n")
    assert.is_truthy(header, out)
    assert.matches("| req/s +| ratio +|", header)
    for _, server in ipairs({"rill", "nginx", "nginx-lua", "node"}) do
      local row = out:match("\n(| " .. server:gsub("%-", "%%-") .. " +|[^\n]*)\n")
      assert.is_truthy(row, "no row for " .. server .. " in:\n" .. out)
      -- rill's own row has empty ratio cells; each peer's has a number.
      local ratio = row:match("^|[^|]+|[^|]+| *([%d.]*) *|")
      if server == "rill" then
        assert.equal("", ratio)
      else
        assert.matches("^%d+%.%d%d$", ratio)
      end
    end

    for _, file in ipairs({"latest.md", "latest.json", "ratios.png"}) do
      local f = io.open(results .. "/" .. file, "rb")
      assert.is_truthy(f, file .. " was not written")
      f:close()
      os.remove(results .. "/" .. file)
    end
    os.remove(results)
  end)
end)
