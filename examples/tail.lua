-- Reads standard input as a stream, line by line, while a timer ticks: the
-- loop never waits on the pipe. Every second it reports the lines and bytes
-- seen so far; at the end of input, the totals.
--
--   tail -f /var/log/syslog | rill run examples/tail.lua [PATTERN]
local rill = require "rill"

local pattern = ...
local lines, bytes, matched = 0, 0, 0

local ticker = rill.timer(1000, function()
  rill.stderr:write(("%d lines, %d bytes, %d matching so far\n"):format(lines, bytes, matched))
end, 1000)
ticker:unref() -- the ticks alone do not keep the script running

for line in rill.stdin:lines(1024 * 1024) do
  lines, bytes = lines + 1, bytes + #line + 1
  if pattern and line:find(pattern) then
    matched = matched + 1
    rill.stdout:write(line, "\n")
  end
end
ticker:cancel()
rill.stdout:write(("%d lines, %d bytes, %d matching\n"):format(lines, bytes, matched))
