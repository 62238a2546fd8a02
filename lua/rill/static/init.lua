-- Static files: rill.static(root [, opts]) returns a handler (req, res)
-- serving the files under root, as nginx's `root` and Express's
-- serve-static do; app:static(prefix, root [, opts]) mounts one.
--
--   app:static("/", "./www", {max_age = 3600000})
--   app:get("/files/*rest", rill.static("/srv/files", {listing = true}))
--
-- What a request goes through, in order: the method (GET and HEAD, else
-- 405); the path, as it came in the URL, split and decoded once
-- (rill.path: a shape that could leave the root is 400); dotfiles (404);
-- fs.stat; symlinks leaving the root (fs.realpath, 404); a directory: 301
-- to the path with "/", then its index file or listing; a file: the
-- precompressed sibling the client accepts, the validators and the
-- conditionals (304, 412), Range (206, 416, multipart/byteranges), and the
-- bytes by res:send_file / res:write_file (sendfile on plain TCP). No
-- request reads a file on the loop: every look at the disk is rill.fs's,
-- through libuv's thread pool, and what it learns of a path (stat, symlink
-- check, the file open) is kept briefly (rill.static.cache).
local core = require "rill.core"
local fs = require "rill.fs"
local rpath = require "rill.path"
local mime = require "rill.static.mime"
local H = require "rill.static.headers"
local cache_m = require "rill.static.cache"

local byte, concat, find, format, gsub, lower, sub, floor, sort, type, tostring, pairs,
  ipairs, rawget, error =
  string.byte, table.concat, string.find, string.format, string.gsub, string.lower,
  string.sub, math.floor, table.sort, type, tostring, pairs, ipairs, rawget, error
local segments, etag_of, http_date, precondition, if_range_holds, parse_range, accepts =
  rpath._segments, H.etag, H.http_date, H.precondition, H.if_range_holds, H.parse_range,
  H.accepts
local release = cache_m.release

local M = {}

-- What each coding's sibling file is called.
local SUFFIX = {br = ".br", gzip = ".gz"}

-- At most this many entries in a listing (a larger directory is cut, and
-- says so).
M.MAX_LISTING = 10000

-- ---- answers ----

local function text(res, status, body)
  res:status(status):header("Content-Type", "text/plain; charset=utf-8")
  return res:send(body)
end

-- A path with nothing to serve: the app's answer for an unknown path when
-- falling through (app:static sets not_found), else 404.
local function not_found(cfg, req, res)
  if cfg.not_found then return cfg.not_found(req, res) end
  return text(res, 404, "Not Found\n")
end

-- A stat or realpath failure: 404 for what is not there (or cannot be a
-- path), 403 for what may not be read, 500 (logged) for the rest.
local GONE = {ENOENT = true, ENOTDIR = true, ENAMETOOLONG = true, ELOOP = true}
local function fs_failed(cfg, req, res, path, err, code)
  if GONE[code] then return not_found(cfg, req, res) end
  if code == "EACCES" or code == "EPERM" then return text(res, 403, "Forbidden\n") end
  core.log("error", "rill.static: " .. path .. ": " .. tostring(err))
  return text(res, 500, "Internal Server Error\n")
end

-- ---- symlinks ----

local function join(dir, rel)
  if rel == "" then return dir end
  if dir == "/" then return "/" .. rel end
  return dir .. "/" .. rel
end

-- Whether path (root/rel, rel without a trailing "/") may be served under
-- cfg.symlinks: "allow" any; "inside" (default) when its real path is the
-- root's or under it, component-wise ("/srv/www2" is not under "/srv/www");
-- "deny" when it is root/rel itself (no symlink on the way). Returns true
-- or false, or nil, err, code of a failed realpath.
local function under(mode, real, root, rel)
  if mode == "deny" then return real == join(root, rel) end
  if root == "/" or real == root then return true end
  return sub(real, 1, #root + 1) == root .. "/"
end

local function allowed(cfg, path, rel)
  local mode = cfg.symlinks
  if mode == "allow" then return true end
  local real, err, code = fs.realpath(path)
  if not real then return nil, err, code end
  -- The root's real path is kept, and asked again when a path seems to
  -- leave it: a root reached through a symlink that a deploy switches
  -- ("current" → a new release) is followed at once.
  local root = cfg.root_real
  if root and under(mode, real, root, rel) then return true end
  root, err, code = fs.realpath(cfg.root)
  if not root then return nil, err, code end
  cfg.root_real = root
  return under(mode, real, root, rel)
end

-- ---- listing ----

local function html_escape(s)
  return (gsub(s, "[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;"}))
end

local function url_escape(s)
  return (gsub(s, "[^A-Za-z0-9%-._~]", function(c) return format("%%%02X", byte(c)) end))
end

local function by_name(a, b) return a.name < b.name end

-- An HTML page of the directory's entries (dotfiles left out unless
-- allowed): names HTML-escaped, links percent-encoded and relative (the
-- directory's URL ends in "/").
local function listing(cfg, req, res, dir, top)
  local entries, err, code = fs.readdir(dir)
  if not entries then return fs_failed(cfg, req, res, dir, err, code) end
  sort(entries, by_name)
  local title = html_escape(require("rill.http").unescape(req.path))
  local out = {'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Index of ', title,
    '</title></head>\n<body><h1>Index of ', title, '</h1>\n<ul>\n'}
  if not top then out[#out + 1] = '<li><a href="../">../</a></li>\n' end
  local shown = 0
  for _, e in ipairs(entries) do
    local name = e.name
    if cfg.dotfiles == "allow" or byte(name, 1) ~= 46 then
      if shown == M.MAX_LISTING then
        out[#out + 1] = "<li>(" .. (#entries - shown) .. " more not shown)</li>\n"
        break
      end
      shown = shown + 1
      local slash = e.type == "directory" and "/" or ""
      out[#out + 1] = '<li><a href="' .. url_escape(name) .. slash .. '">' ..
        html_escape(name) .. slash .. "</a></li>\n"
    end
  end
  out[#out + 1] = "</ul></body></html>\n"
  res:header("Content-Type", "text/html; charset=utf-8")
  return res:send(concat(out))
end

-- ---- files ----

local function hex(s)
  return (gsub(s, ".", function(c) return format("%02x", byte(c)) end))
end

-- The bytes of a file from offset, length of them, as the whole response
-- or a piece of it. body is {data} for a small file kept in memory, else
-- the open file or its path.
local function send_body(res, body, offset, length)
  if type(body) == "table" then
    local data = body[1]
    if offset == 0 and length == #data then return res:send(data) end
    return res:send(sub(data, offset + 1, offset + length))
  end
  return res:send_file(body, offset, length)
end

local function write_body(res, body, offset, length)
  if type(body) == "table" then return res:write(sub(body[1], offset + 1, offset + length)) end
  return res:write_file(body, offset, length)
end

-- The Range answer: 206 with one range, or multipart/byteranges (RFC 9110
-- 14.6) with a random boundary, each part's head written before its bytes.
local function send_ranges(res, body, size, ctype, ranges)
  res:status(206)
  if #ranges == 1 then
    local r = ranges[1]
    res:header("Content-Type", ctype)
    res:header("Content-Range", format("bytes %d-%d/%d", r[1], r[2], size))
    return send_body(res, body, r[1], r[2] - r[1] + 1)
  end
  local boundary = hex(core.random(12))
  local heads, total = {}, 0
  for i, r in ipairs(ranges) do
    heads[i] = format("\r\n--%s\r\nContent-Type: %s\r\nContent-Range: bytes %d-%d/%d\r\n\r\n",
      boundary, ctype, r[1], r[2], size)
    total = total + #heads[i] + (r[2] - r[1] + 1)
  end
  local tail = "\r\n--" .. boundary .. "--\r\n"
  res:header("Content-Type", "multipart/byteranges; boundary=" .. boundary)
  res:header("Content-Length", format("%d", total + #tail))
  for i, r in ipairs(ranges) do
    local ok, err = res:write(heads[i])
    if ok then ok, err = write_body(res, body, r[1], r[2] - r[1] + 1) end
    if not ok then return nil, err end
  end
  local ok, err = res:write(tail)
  if not ok then return nil, err end
  return res:finish()
end

-- The entry of path (rel: its path under the root), held by the caller
-- until release(e): from the cache when fresh, else made: fs.stat, the
-- symlink check, and when caching, a file opened and its fstat (so that
-- the bytes sent are those of the file stated). See rill.static.cache.
local function lookup(cfg, path, rel)
  local cache = cfg.cache
  if cache then
    local e = cache:get(path)
    if e then return e end
  end
  local e = {users = 1, file = false}
  local st, err, code = fs.stat(path)
  if st then
    local ok
    ok, err, code = allowed(cfg, path, rel)
    e.ok = ok
    if ok == nil then
      st = nil
    elseif ok and cache and st.type == "file" then
      local f
      f, err, code = fs.open(path)
      st = nil
      if f then
        st, err, code = f:stat()
        if not st then
          f:close()
        elseif st.size <= cfg.memory_max then
          -- small: kept in memory, sent without a trip to the pool
          local data = st.size == 0 and "" or f:read(st.size, 0)
          if data and #data == st.size then
            e.data = {data}
            f:close()
          else
            e.file = f
          end
        else
          e.file = f
        end
      end
    end
  end
  e.st = st
  if not st then e.err, e.code = err, code end
  -- what is there, and what is not; not a failure that may pass
  if cache and (st or GONE[code]) then cache:put(path, e) end
  return e
end

-- The answer for a file (e its entry: its ETag is made once; path its
-- path): validators, conditionals, Range, then the bytes: from memory, the
-- open file, or by path when not caching.
local function answer(cfg, req, res, h, e, path, ctype, encoding)
  local method = req.method
  local st = e.st
  local body = e.data or e.file or path -- (data: {bytes})
  local etag, mtime = e.etag, nil
  if cfg.etag and not etag then
    etag = etag_of(st)
    e.etag = etag
  end
  if cfg.last_modified then
    mtime = st.mtime_sec or floor(st.mtime)
    res:header("Last-Modified", http_date(mtime))
  end
  if etag then res:header("ETag", etag) end
  if cfg.cache_control then res:header("Cache-Control", cfg.cache_control) end
  if cfg.precompressed then res:header("Vary", "Accept-Encoding") end
  if cfg.set_headers then cfg.set_headers(res, path, st) end

  local cond = precondition(h, method, etag, mtime)
  if cond == 304 then
    res:status(304)
    return res:send()
  elseif cond == 412 then
    return text(res, 412, "Precondition Failed\n")
  end

  local size = st.size
  local ranges
  if cfg.max_ranges > 0 then
    res:header("Accept-Ranges", "bytes")
    local range = method == "GET" and h.range
    if range and if_range_holds(h["if-range"], etag, mtime) then
      ranges = parse_range(range, size, cfg.max_ranges)
      if ranges == "unsatisfiable" then
        res:header("Content-Range", "bytes */" .. format("%d", size))
        return text(res, 416, "Range Not Satisfiable\n")
      end
    end
  end
  if encoding then res:header("Content-Encoding", encoding) end
  if ranges then return send_ranges(res, body, size, ctype, ranges) end
  res:header("Content-Type", ctype)
  return send_body(res, body, 0, size)
end

-- Serves the file at path (e its entry, rel its path under the root) or,
-- when cfg.precompressed and the client accepts one, its .br / .gz sibling.
local function serve_file(cfg, req, res, path, rel, e)
  local h = req.headers
  local ctype = e.ctype
  if not ctype then
    ctype = mime.lookup(path, cfg.mime_types)
    if ctype == mime.DEFAULT then ctype = cfg.default_type end
    e.ctype = ctype
  end
  local pre = cfg.precompressed
  local ae = pre and h["accept-encoding"]
  if ae then
    for i = 1, #pre do
      local coding = pre[i]
      if accepts(ae, coding) then
        local suffix = SUFFIX[coding]
        local se = lookup(cfg, path .. suffix, rel .. suffix)
        local st = se.st
        if st and se.ok and st.type == "file" then
          local p = path .. suffix
          local r1, r2 = answer(cfg, req, res, h, se, p, ctype, coding)
          release(se)
          return r1, r2
        end
        release(se)
      end
    end
  end
  return answer(cfg, req, res, h, e, path, ctype, nil)
end

-- ---- the handler ----

-- The answer for path once its entry e is known.
local function serve_entry(cfg, req, res, path, rel, dir_asked, e)
  local st = e.st
  if not st then return fs_failed(cfg, req, res, path, e.err, e.code) end
  if not e.ok then return not_found(cfg, req, res) end
  if st.type == "file" then
    if dir_asked then return not_found(cfg, req, res) end
    return serve_file(cfg, req, res, path, rel, e)
  end
  if st.type ~= "directory" then return not_found(cfg, req, res) end

  -- A directory: its URL ends in "/", so that relative links in it work.
  if byte(req.path, -1) ~= 47 then
    if not cfg.redirect then return not_found(cfg, req, res) end
    local qs = req.query_string
    return res:redirect(req.path .. "/" .. (qs ~= "" and "?" .. qs or ""), 301)
  end
  local index = cfg.index
  for i = 1, #index do
    local name = index[i]
    local ipath, irel = join(path, name), rel == "" and name or rel .. "/" .. name
    local ie = lookup(cfg, ipath, irel)
    local ist = ie.st
    if ist and ist.type == "file" then
      local r1, r2
      if ie.ok then
        r1, r2 = serve_file(cfg, req, res, ipath, irel, ie)
      else
        r1, r2 = not_found(cfg, req, res)
      end
      release(ie)
      return r1, r2
    end
    release(ie)
  end
  if cfg.listing then return listing(cfg, req, res, path, rel == "") end
  return not_found(cfg, req, res)
end

local function serve(cfg, req, res)
  local method = req.method
  if method ~= "GET" and method ~= "HEAD" then
    res:header("Allow", "GET, HEAD")
    return text(res, 405, "Method Not Allowed\n")
  end
  local raw = rawget(req, "raw_params")
  local rest = raw and raw[cfg.param]
  if not rest then rest = sub(req.path, 2) end

  -- The path under the root. Most paths need no decoding and hold no
  -- segment that starts with "." (no dotfile, no "." or ".."): they are
  -- their own relative path. The others are split and decoded once.
  local rel, dir_asked
  if not find(rest, "[%%\\%z]") and not find(rest, "//", 1, true) and byte(rest, 1) ~= 47 and
    byte(rest, 1) ~= 46 and not find(rest, "/.", 1, true) then
    rel = rest
    dir_asked = byte(rest, -1) == 47
    if dir_asked then rel = sub(rest, 1, -2) end
  else
    local segs, why = segments(rest)
    if not segs then return text(res, 400, "Bad Request: " .. why .. "\n") end
    local n = #segs
    if segs[n] == "" then
      dir_asked = true
      segs[n] = nil
      n = n - 1
    end
    if cfg.dotfiles ~= "allow" then
      for i = 1, n do
        if byte(segs[i], 1) == 46 then return not_found(cfg, req, res) end
      end
    end
    rel = concat(segs, "/")
  end
  local path = join(cfg.root, rel)
  local e = lookup(cfg, path, rel)
  local r1, r2 = serve_entry(cfg, req, res, path, rel, dir_asked, e)
  release(e)
  return r1, r2
end

-- ---- options ----

local CHOICES = {
  dotfiles = {deny = true, ignore = true, allow = true},
  symlinks = {inside = true, allow = true, deny = true},
}

local TYPES = {
  index = "string, list or false", listing = "boolean", dotfiles = "string",
  symlinks = "string", precompressed = "boolean or list", etag = "boolean",
  last_modified = "boolean", max_age = "number", immutable = "boolean",
  cache_control = "string or false", mime_types = "table", default_type = "string",
  fallthrough = "boolean", not_found = "function", param = "string", max_ranges = "number",
  redirect = "boolean", set_headers = "function", cache = "number or false",
  cache_entries = "number", memory_max = "number",
}

local function check(fname, k, v)
  local want = TYPES[k]
  if not want then error(fname .. ": unknown option " .. tostring(k), 3) end
  local t = type(v)
  local okay = find(want, t, 1, true) ~= nil or (v == false and find(want, "false", 1, true))
    or (t == "table" and find(want, "list", 1, true))
  if not okay then
    error(format("%s: option %s must be a %s, got %s", fname, k, want, t), 3)
  end
  if CHOICES[k] and not CHOICES[k][v] then
    error(format("%s: option %s must be one of %s, got %q", fname, k,
      k == "dotfiles" and '"deny", "ignore", "allow"' or '"inside", "allow", "deny"', v), 3)
  end
end

-- rill.static(root [, opts]) → a handler function(req, res); see the top and
-- lua/README.md for the options. fname names the caller in errors.
function M.new(root, opts, fname)
  fname = fname or "rill.static"
  if type(root) ~= "string" or root == "" then
    error(fname .. ": root must be a non-empty string (a directory), got " .. tostring(root), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(fname .. ": opts must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  for k, v in pairs(opts) do check(fname, k, v) end

  local cfg = {
    root = #root > 1 and byte(root, -1) == 47 and sub(root, 1, -2) or root,
    listing = opts.listing == true,
    dotfiles = opts.dotfiles or "deny",
    symlinks = opts.symlinks or "inside",
    etag = opts.etag ~= false,
    last_modified = opts.last_modified ~= false,
    default_type = opts.default_type or mime.DEFAULT,
    not_found = opts.not_found,
    param = opts.param or "rest",
    max_ranges = opts.max_ranges or 16,
    redirect = opts.redirect ~= false,
    set_headers = opts.set_headers,
  }
  if cfg.max_ranges < 0 or cfg.max_ranges % 1 ~= 0 then
    error(fname .. ": option max_ranges must be a whole number >= 0", 2)
  end

  local index = opts.index
  if index == nil then index = "index.html" end
  if index == false then
    cfg.index = {}
  elseif type(index) == "string" then
    cfg.index = {index}
  else
    cfg.index = {}
    for i, name in ipairs(index) do
      if type(name) ~= "string" then error(fname .. ": option index must list strings", 2) end
      cfg.index[i] = name
    end
  end
  for _, name in ipairs(cfg.index) do
    if name == "" or find(name, "/", 1, true) or name == "." or name == ".." then
      error(fname .. ": an index name is a file name, got " .. format("%q", name), 2)
    end
  end

  local pre = opts.precompressed
  if pre == true then pre = {"br", "gzip"} end
  if pre then
    for _, coding in ipairs(pre) do
      if not SUFFIX[coding] then
        error(fname .. ': option precompressed lists "br" and "gzip", got ' .. tostring(coding), 2)
      end
    end
    if #pre == 0 then pre = nil end
  end
  cfg.precompressed = pre or nil

  if opts.cache_control ~= nil then
    cfg.cache_control = opts.cache_control or nil
  else
    local ms = opts.max_age or 0
    if ms < 0 then error(fname .. ": option max_age must be >= 0 (ms)", 2) end
    cfg.cache_control = format("public, max-age=%d", floor(ms / 1000)) ..
      (opts.immutable and ", immutable" or "")
  end

  local ttl = opts.cache
  if ttl == nil then ttl = 1000 end
  local entries = opts.cache_entries or 256
  if ttl and ttl < 0 or entries < 1 or entries % 1 ~= 0 then
    error(fname .. ": options cache (ms) and cache_entries must be >= 0 and >= 1", 2)
  end
  if ttl and ttl > 0 then cfg.cache = cache_m.new(ttl, entries) end
  cfg.memory_max = opts.memory_max or 16384
  if cfg.memory_max < 0 then error(fname .. ": option memory_max must be >= 0 (bytes)", 2) end

  if opts.mime_types then
    cfg.mime_types = {}
    for ext, t in pairs(opts.mime_types) do
      if type(ext) ~= "string" or type(t) ~= "string" then
        error(fname .. ": option mime_types maps extensions to types (strings)", 2)
      end
      ext = lower(gsub(ext, "^%.", ""))
      cfg.mime_types[ext] = find(t, ";", 1, true) and t or mime.content_type(t)
    end
  end

  return function(req, res) return serve(cfg, req, res) end
end

M._serve = serve
return M
