-- static, rill (rill.fs alone, the "rill-fs" row): the files under $WWW by path, each opened with rill.fs.open
-- through the open-file cache (an open of up to 1 s ago is reused, as
-- nginx's open_file_cache would) and sent with res:send_file (a small file
-- from the page cache with its head in one write; a large one by sendfile(2)
-- from the thread pool), with the validators nginx sends (Last-Modified,
-- ETag). A bench stand-in for app:static: no path checks, no ranges, no
-- conditionals.
--   WWW=/srv/www rill serve bench/scenarios/static/fs_app.lua
local rill = require "rill"
local fs = rill.fs
local root = assert(os.getenv("WWW"), "set WWW to the directory to serve")
local date, format = os.date, string.format
local CACHE = {cache = tonumber(os.getenv("CACHE_MS") or 1000)}
if CACHE.cache < 0 then CACHE = nil end

return function(req, res)
  local f = fs.open(root .. req.path, CACHE)
  local st = f and f:stat()
  if not st or st.type ~= "file" then
    if f then f:close() end
    res:status(404)
    return res:send("not found\n")
  end
  res:header("Content-Type", "application/octet-stream")
  res:header("Last-Modified", date("!%a, %d %b %Y %H:%M:%S GMT", st.mtime_sec))
  res:header("ETag", format('"%x-%x"', st.mtime_sec, st.size))
  res:header("Accept-Ranges", "bytes")
  res:send_file(f, 0, st.size)
  f:close()
end
