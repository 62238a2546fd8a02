-- Content types by file extension: /etc/mime.types (Debian's media-types),
-- read once per worker when this module loads (when an app makes its first
-- static handler: at load, not while a request waits), over a small
-- built-in table for a system without it. Text types get
-- "; charset=utf-8". The values are whole Content-Type strings, made once,
-- so a request's lookup is one table index.
local lower, match, find, sub, gmatch = string.lower, string.match, string.find, string.sub,
  string.gmatch

local M = {}

M.DEFAULT = "application/octet-stream"

-- What a system without /etc/mime.types still needs, and the few types
-- where browsers and the file disagree (JavaScript modules, web fonts).
local builtin = {
  html = "text/html", htm = "text/html", css = "text/css", js = "text/javascript",
  mjs = "text/javascript", json = "application/json", txt = "text/plain", md = "text/markdown",
  csv = "text/csv", xml = "application/xml", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif", webp = "image/webp",
  avif = "image/avif", ico = "image/vnd.microsoft.icon", pdf = "application/pdf",
  wasm = "application/wasm", woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf",
  otf = "font/otf", mp4 = "video/mp4", webm = "video/webm", mp3 = "audio/mpeg",
  ogg = "audio/ogg", wav = "audio/wav", zip = "application/zip", gz = "application/gzip",
  tar = "application/x-tar", map = "application/json", webmanifest = "application/manifest+json",
}

-- Whether a type is text that browsers should read as UTF-8.
local text_apps = {
  ["application/javascript"] = true, ["application/x-javascript"] = true,
  ["application/ecmascript"] = true, ["application/json"] = true, ["application/xml"] = true,
  ["application/x-sh"] = true,
}

function M.is_text(t)
  if sub(t, 1, 5) == "text/" then return true end
  if text_apps[t] then return true end
  return find(t, "%+json$") ~= nil or find(t, "%+xml$") ~= nil
end

-- The Content-Type header for a media type: with "; charset=utf-8" for text.
function M.content_type(t)
  if M.is_text(t) then return t .. "; charset=utf-8" end
  return t
end

-- Parses mime.types text ("type ext ext ...", "#" comments) into
-- {ext = type}; a later line does not replace an earlier extension.
function M.parse(text)
  local map = {}
  for line in gmatch(text, "[^\n]+") do
    if not find(line, "^%s*#") then
      local t, rest = match(line, "^%s*([%w!#$&^_.+-]+/[%w!#$&^_.+-]+)%s+(.*)$")
      if t then
        t = lower(t)
        for ext in gmatch(rest, "[^%s]+") do
          ext = lower(ext)
          if map[ext] == nil then map[ext] = t end
        end
      end
    end
  end
  return map
end

-- ext → Content-Type string: the file's types, the built-in ones over them.
local function load(file)
  local types = {}
  local f = io.open(file or "/etc/mime.types", "rb")
  if f then
    local text = f:read("*a") or ""
    f:close()
    types = M.parse(text)
  end
  for ext, t in pairs(builtin) do types[ext] = t end
  local ct = {}
  for ext, t in pairs(types) do ct[ext] = M.content_type(t) end
  return ct
end

M.by_ext = load()

-- The extension of a file name, lower-cased, or nil ("a.tar.gz" → "gz";
-- ".bashrc" and "Makefile" have none).
function M.ext(name)
  local e = match(name, "[^/.]%.([^./]+)$")
  return e and lower(e)
end

-- The Content-Type for a file name; overrides ({ext = type}, whole
-- Content-Type strings) first.
function M.lookup(name, overrides)
  local e = M.ext(name)
  if not e then return M.DEFAULT end
  return overrides and overrides[e] or M.by_ext[e] or M.DEFAULT
end

return M
