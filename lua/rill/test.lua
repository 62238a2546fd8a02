-- rill test [PATH...]: busted specs run inside the runtime, in a rill thread,
-- so a spec's `it` body can call waiting functions (sockets, sleep) directly.
local rill = require "rill"

local M = {}

-- Modules loaded before the specs: busted unloads what a spec file loaded
-- once the file is done, and these should stay one instance each.
local SHARED = {"rill.http", "rill.router", "rill.websocket", "rill.client", "rill.proxy"}

function M.run(paths)
  for _, name in ipairs(SHARED) do require(name) end
  local args = {}
  for i, p in ipairs(paths) do args[i] = p end
  if #args == 0 then args[1] = "spec" end
  local has_pattern = false
  for _, a in ipairs(args) do
    if a:match("^%-%-pattern") or a == "-p" then has_pattern = true end
  end
  if not has_pattern then table.insert(args, 1, "--pattern=_spec") end
  args[0] = "rill test"
  _G.arg = args

  -- busted ends with os.exit through this function; take the code instead.
  local compat = require "busted.compatibility"
  local code = 0
  local stop = {}
  compat.exit = function(c)
    code = c or 0
    error(stop, 0)
  end
  local ok, err = pcall(require("busted.runner"), {standalone = false})
  if not ok and err ~= stop then
    io.stderr:write("rill test: ", tostring(err), "\n")
    code = 1
  end
  io.stdout:flush()
  rill.exit(code)
end

return M
