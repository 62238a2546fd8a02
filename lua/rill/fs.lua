-- rill.fs: files through libuv's thread pool (core/lua_fs.c). Each call
-- makes the calling task wait while a pool thread does the work, so the
-- loop goes on serving; usable from handlers and `rill run` scripts.
-- Failures return nil, message, code (code: libuv's error name, "ENOENT").
--
--   local st = fs.stat(path)   -- {type=, size=, mtime=, mtime_sec=, ino=, dev=, mode=}
--   local f = fs.open(path); local data = f:read(65536); f:close()
local core = require "rill.core"

return {
  stat = core.fs_stat,         -- fs.stat(path) → st (follows symlinks)
  lstat = core.fs_lstat,       -- fs.lstat(path) → st (a link itself: type "link")
  realpath = core.fs_realpath, -- fs.realpath(path) → absolute path, links resolved
  readdir = core.fs_readdir,   -- fs.readdir(path) → {{name=, type=}, ...} without . and ..
  open = core.fs_open,         -- fs.open(path) → file: file:read(n [, offset]), file:stat(), file:close()
}
