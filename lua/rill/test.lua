-- rill test [PATH...]: busted specs run inside the runtime, in a rill thread,
-- so a spec's `it` body can call waiting functions (sockets, sleep) directly.
--
-- The runtime's log (rill.log, handler errors, the access logger's default
-- output) is captured while the specs run: the lines logged while a test
-- ran (from its start to its end, not its before_each or after_each) are
-- added to its report if it fails or errs, and dropped if it passes. Lines
-- logged outside tests are added to the report of an error in a hook
-- (before_each, setup, ...), else dropped, as are lines logged after the
-- last test. RILL_TEST_LOG=all turns the
-- capture off: every line goes to stderr as it is logged.
local core = require "rill.core"
local rill = require "rill"

local M = {}

-- rill.test.client(app [, opts]): see rill.test.client.
M.client = require("rill.test.client").new

-- Modules loaded before the specs: busted unloads what a spec file loaded
-- once the file is done, and these should stay one instance each.
local SHARED = {"rill.http", "rill.router", "rill.websocket", "rill.client", "rill.proxy"}

-- Clients a spec file opened (rill.test.client), closed when the file ends.
local opened = setmetatable({}, {__mode = "k"})

function M._opened(c)
  opened[c] = true
end

local function close_opened()
  for c in pairs(opened) do
    opened[c] = nil
    c:close()
  end
end

-- What the capture kept since it was last asked, as text for a report.
local function captured(what)
  local text, dropped = core.log_capture(true)
  if text == "" and dropped == 0 then return "" end
  local n = select(2, text:gsub("\n", ""))
  local s = ("\n\n-- log of %s (%d line%s):\n%s"):format(what, n, n == 1 and "" or "s", text)
  if dropped > 0 then s = s .. ("-- (%d more lines not kept)\n"):format(dropped) end
  return s
end

local function with_log(message, log)
  if log == "" then return message end
  if type(message) ~= "string" then message = require("pl.pretty").write(message) end
  return message .. log
end

-- Makes busted's core (busted.core's constructor) report captured log
-- lines: a test's failure or error is held back until the test ends, then
-- published with the lines logged while it ran; the same for errors in
-- hooks, at once. Clients left open are closed when a file ends.
local function install(busted)
  local publish = busted.publish
  local current, held = nil, {}
  busted.publish = function(channel, element, ...)
    local kind, what = channel[1], channel[2]
    if kind == "test" and what == "start" then
      captured("") -- lines logged before the test are not its own
      current, held = element, {}
    elseif (kind == "failure" or kind == "error") and what == "it" and element == current then
      held[#held + 1] = {channel, select("#", ...), ...}
      return {}
    elseif kind == "test" and what == "end" and element == current then
      current = nil
      local log = captured("this test")
      for _, h in ipairs(held) do
        local parent, message, trace = h[3], h[4], h[5]
        publish(h[1], element, parent, with_log(message, log), trace)
      end
      held = {}
    elseif (kind == "failure" or kind == "error") and what ~= "output" and what ~= "helper" then
      local parent, message, trace = ...
      return publish(channel, element, parent,
        with_log(message, captured("the runtime since the last test")), trace)
    elseif kind == "file" and what == "end" then
      close_opened()
    end
    return publish(channel, element, ...)
  end
  return busted
end

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

  local capture = os.getenv("RILL_TEST_LOG") ~= "all"
  if capture then
    local make_core = require "busted.core"
    package.loaded["busted.core"] = function(...) return install(make_core(...)) end
    core.log_capture(true)
  end

  -- busted ends with os.exit through this function; take the code instead.
  local compat = require "busted.compatibility"
  local code = 0
  local stop = {}
  compat.exit = function(c)
    code = c or 0
    error(stop, 0)
  end
  local ok, err = pcall(require("busted.runner"), {standalone = false})
  close_opened()
  -- The capture stays on to the end: lines logged after the last test (an
  -- access logger's gathered lines, written when the Lua state closes)
  -- belong to no test and are dropped.
  if not ok and err ~= stop then
    io.stderr:write("rill test: ", tostring(err), "\n")
    code = 1
  end
  io.stdout:flush()
  rill.exit(code)
end

return M
