-- rill.fs: files through libuv's thread pool (core/lua_fs.c). Each call
-- makes the calling task wait while a pool thread does the work, so the
-- loop goes on serving; usable from handlers and `rill run` scripts.
-- Failures return nil, message, code (code: libuv's error name, "ENOENT").
--
--   local st = fs.stat(path)   -- {type=, size=, mtime=, mtime_sec=, ino=, dev=, mode=}
--   local f = fs.open(path); local data = f:read(65536); f:close()
--   local out = fs.open("copy", "w"); for chunk in f:chunks() do out:write(chunk) end
--
-- An open file is also a stream: read_some, read_until, read_all, lines,
-- chunks and write, so it can be a request body, go through rill.pipe, or
-- take a response body. rill.stdin, rill.stdout and rill.stderr are such
-- streams over the process's standard descriptors.
local core = require "rill.core"

local concat, find, sub, type = table.concat, string.find, string.sub, type

local fs = {
  stat = core.fs_stat,         -- fs.stat(path) → st (follows symlinks)
  lstat = core.fs_lstat,       -- fs.lstat(path) → st (a link itself: type "link")
  realpath = core.fs_realpath, -- fs.realpath(path) → absolute path, links resolved
  readdir = core.fs_readdir,   -- fs.readdir(path) → {{name=, type=}, ...} without . and ..
  open = core.fs_open,         -- fs.open(path [, mode] [, {cache =}]) → file
  mkdir = core.fs_mkdir,       -- fs.mkdir(path [, mode]) → true
  rename = core.fs_rename,     -- fs.rename(from, to) → true
}

-- fs.remove(path) → true: a file (or link), or an empty directory.
function fs.remove(path)
  local ok, err, code = core.fs_unlink(path)
  if not ok and (code == "EISDIR" or code == "EPERM") then
    local ok2, err2, code2 = core.fs_rmdir(path)
    if ok2 or code2 ~= "ENOTDIR" then return ok2, err2, code2 end
  end
  return ok, err, code
end

-- ---- files as streams ----

local F = debug.getregistry()["rill.file"].__index
local pending = setmetatable({}, {__mode = "k"}) -- file → bytes read but not yet taken

local CHUNK = 65536
local pread = F.read

-- f:read(n [, offset]): as the C method, but bytes read_until held back
-- come first.
function F:read(n, offset)
  local held = offset == nil and pending[self]
  if not held then return pread(self, n, offset) end
  if type(n) ~= "number" or n < 1 then return pread(self, n) end -- raises as it does
  if #held <= n then
    pending[self] = nil
    return held
  end
  pending[self] = sub(held, n + 1)
  return sub(held, 1, n)
end

-- f:read_some([max]) → the next bytes (up to max, default 65536), nil at the
-- end, or nil, message, code.
function F:read_some(max)
  local held = pending[self]
  if held then
    max = max or CHUNK
    if #held <= max then
      pending[self] = nil
      return held
    end
    pending[self] = sub(held, max + 1)
    return sub(held, 1, max)
  end
  return pread(self, max or CHUNK)
end

-- f:read_until(sep [, max]) → the bytes before sep (sep consumed), or nil,
-- "too long" past max bytes (default 65536), or nil, "closed", the partial
-- bytes at the end.
function F:read_until(sep, max)
  max = max or 65536
  local buf = pending[self] or ""
  pending[self] = nil
  local from = 1
  while true do
    local i = find(buf, sep, from, true)
    if i then
      if i - 1 > max then
        pending[self] = buf
        return nil, "too long"
      end
      local rest = sub(buf, i + #sep)
      if rest ~= "" then pending[self] = rest end
      return sub(buf, 1, i - 1)
    end
    if #buf > max then
      pending[self] = buf
      return nil, "too long"
    end
    local more, err, code = pread(self, CHUNK)
    if not more then
      if err then
        if buf ~= "" then pending[self] = buf end
        return nil, err, code
      end
      if buf == "" then return nil end
      return nil, "closed", buf
    end
    from = #buf - #sep + 2
    if from < 1 then from = 1 end
    buf = buf .. more
  end
end

F.read_all = core.stream_methods.read_all
F.lines = core.stream_methods.lines
F.chunks = core.stream_methods.chunks

-- f:write(...) → true once every piece is written (each a string), or nil,
-- message, code.
function F:write(...)
  for i = 1, select("#", ...) do
    local data = select(i, ...)
    if type(data) == "number" then
      data = tostring(data)
    elseif type(data) ~= "string" then
      error("file:write: argument " .. i .. " must be a string or a number, got " .. type(data), 2)
    end
    local off = 1
    while off <= #data do
      local piece = off == 1 and #data <= 16777216 and data or sub(data, off, off + 16777215)
      local n, err, code = self:_write(piece)
      if not n then return nil, err, code end
      off = off + n
    end
  end
  return true
end

-- rill.stdin / rill.stdout / rill.stderr: made once per worker, on first use.
local stdio = {}
local FDS = {stdin = 0, stdout = 1, stderr = 2}

function fs._stdio(name)
  local f = stdio[name]
  if not f then
    f = assert(core.fs_stdio(FDS[name]))
    stdio[name] = f
  end
  return f
end

return fs
