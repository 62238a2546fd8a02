-- URL paths to file paths, safely: the path is split on "/" as it came in
-- the URL, each segment percent-decoded once, and any shape that could name
-- something outside the root is refused rather than repaired.
--
--   local path = rill.path.safe_join("./www", req.raw_params.rest)
--   if not path then return res:status(400):send("bad path\n") end
--
-- Refused (the reason returned): a bad escape ("%zz", "%4"), a segment that
-- decodes to "/" , "\" or NUL ("%2f", "%5c", "%00"), a raw backslash, a "."
-- or ".." segment (raw or encoded: "%2e%2e"), an empty segment ("a//b"), and
-- an absolute rest ("/etc/passwd", which "//etc/passwd" under a prefix
-- becomes). Only the shape is judged: dotfiles and symlinks are the
-- caller's (rill.static checks both).
local byte, char, find, gsub, sub, tonumber, type, concat =
  string.byte, string.char, string.find, string.gsub, string.sub, tonumber, type, table.concat

local M = {}

local function unhex(h) return char(tonumber(h, 16)) end

-- The decoded segments of a raw (percent-encoded) relative path, as a list,
-- or nil and the reason it is refused (see the top). "" gives no segments;
-- a trailing "/" gives a last segment "" (a directory was asked for).
function M._segments(raw)
  local segs, n, pos, len = {}, 0, 1, #raw
  if len == 0 then return segs end
  if byte(raw, 1) == 47 then return nil, "absolute path" end
  while true do
    local slash = find(raw, "/", pos, true)
    local seg = sub(raw, pos, (slash or len + 1) - 1)
    if seg == "" and slash then return nil, "empty segment" end
    if find(seg, "%", 1, true) then
      -- every "%" must start an escape: "%zz" and a cut "%4" are refused
      if find(seg, "%%%X") or find(seg, "%%%x%X") or find(seg, "%%%x?$") then
        return nil, "bad escape"
      end
      seg = gsub(seg, "%%(%x%x)", unhex)
      if find(seg, "/", 1, true) then return nil, "encoded slash" end
    end
    if find(seg, "\\", 1, true) then return nil, "backslash" end
    if find(seg, "%z") then return nil, "NUL byte" end
    if seg == "." or seg == ".." then return nil, "dot segment" end
    n = n + 1
    segs[n] = seg
    if not slash then return segs end
    pos = slash + 1
  end
end

-- rill.path.safe_join(root, rest) → root .. "/" .. the decoded rest, or nil
-- and the reason (see the top). rest is the raw form, as in the URL
-- (req.raw_params.rest, not req.params.rest, which is decoded already).
function M.safe_join(root, rest)
  if type(root) ~= "string" or root == "" then
    error("rill.path.safe_join: root must be a non-empty string, got " .. tostring(root), 2)
  end
  if type(rest) ~= "string" then
    error("rill.path.safe_join: rest must be a string, got " .. type(rest), 2)
  end
  local segs, why = M._segments(rest)
  if not segs then return nil, why end
  if byte(root, -1) == 47 then root = sub(root, 1, -2) end
  if #segs == 0 then return root == "" and "/" or root end
  return (root == "" and "" or root) .. "/" .. concat(segs, "/")
end

return M
