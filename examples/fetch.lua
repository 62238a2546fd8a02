-- A bounded concurrent fetcher with retries: at most N requests in flight,
-- each retried with backoff on a connection error, a timeout or a 5xx, and
-- the whole request (connect, head, body) bounded by a deadline.
--
--   rill run examples/fetch.lua [-n 8] [-t 5000] URL...   (or URLs on stdin)
--
-- Prints one line per URL, in the order given: status, bytes, ms, URL (or
-- the error). Exits 1 if any URL failed.
local rill = require "rill"

local concurrency, timeout, tries = 8, 5000, 3
local urls = {}
local args = {...}
local i = 1
while i <= #args do
  local a = args[i]
  if a == "-n" then
    concurrency, i = tonumber(args[i + 1]), i + 2
  elseif a == "-t" then
    timeout, i = tonumber(args[i + 1]), i + 2
  else
    urls[#urls + 1], i = a, i + 1
  end
end
if #urls == 0 then
  for line in rill.stdin:lines() do
    if line:match("%S") then urls[#urls + 1] = line:match("^%s*(.-)%s*$") end
  end
end

-- One URL: its status and body size, or nil and why, after up to `tries`
-- attempts (100 ms, then 200 ms between them).
local function fetch(url)
  local err
  for attempt = 1, tries do
    local t0 = rill.now()
    local res
    res, err = rill.http.request{url = url, timeout = timeout, redirects = true}
    if res then
      local body, berr = res.body:read_all(64 * 1024 * 1024)
      if body and res.status < 500 then
        return res.status, #body, rill.now() - t0
      end
      err = body and ("HTTP " .. res.status) or berr
    end
    if attempt < tries then rill.sleep(100 * 2 ^ (attempt - 1)) end
  end
  return nil, err
end

local sem = rill.semaphore(concurrency)
local threads = {}
for n, url in ipairs(urls) do
  threads[n] = rill.spawn(function() return sem:with(fetch, url) end)
end
local failed = 0
for n, th in ipairs(threads) do
  local _, status, size, ms = rill.wait(th)
  if status then
    rill.stdout:write(("%d %d %.0fms %s\n"):format(status, size, ms, urls[n]))
  else
    failed = failed + 1
    rill.stdout:write(("error %s %s\n"):format(tostring(size), urls[n]))
  end
end
return failed > 0 and 1 or 0
