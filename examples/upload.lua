-- examples/upload.lua        UPLOAD_DIR=/tmp/up rill serve examples/upload.lua
--
-- POST a multipart/form-data body (curl -F name=value -F file=@photo.jpg
-- http://127.0.0.1:8080/): each file part is streamed to a file in
-- UPLOAD_DIR (default /tmp/rill-uploads) as its bytes arrive, so a file of
-- any size passes through in a few buffers of memory. The answer lists each
-- part, one line per part:
--
--   field NAME SIZE
--   file NAME FILENAME SIZE SAVED_AS
--
-- Broken bodies get 400, limits 413, another Content-Type 415.
local form = require "rill.form"

local dir = os.getenv("UPLOAD_DIR") or "/tmp/rill-uploads"
os.execute("mkdir -p '" .. dir:gsub("'", "'\\''") .. "'")

-- The client's file name, as a name of our own: its last path segment,
-- with anything but letters, digits, ".", "_" and "-" made "_".
local function safe_name(filename)
  local base = filename:match("[^/\\]*$"):gsub("[^A-Za-z0-9._-]", "_"):gsub("^%.", "_")
  return base ~= "" and base or "upload"
end

local saved = 0 -- files saved by this worker, for unique names

-- Streams part to path; returns its size, or nil, err.
local function save(part, path)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local size = 0
  while true do
    local chunk, rerr = part:read_some(65536)
    if not chunk then
      f:close()
      if rerr then
        os.remove(path)
        return nil, rerr
      end
      return size
    end
    -- Lua's io writes block the worker's loop (other requests wait while the
    -- disk takes a chunk): fine for an example, until rill has async files.
    local ok, werr = f:write(chunk)
    if not ok then
      f:close()
      os.remove(path)
      return nil, werr
    end
    size = size + #chunk
  end
end

return function(req, res)
  res:header("Content-Type", "text/plain")
  if req.method ~= "POST" then
    res:status(405):header("Allow", "POST")
    return res:send("POST a multipart/form-data body here\n")
  end
  local lines = {}
  for part, err, status in req:parts() do
    if not part then
      res:status(status or 400)
      return res:send(err .. "\n")
    end
    if part.filename then
      saved = saved + 1
      local name = ("%d-%d-%s"):format(require("rill").worker_id(), saved,
        safe_name(part.filename))
      local size, serr = save(part, dir .. "/" .. name)
      if not size then
        res:status(form.status_of(serr) or 500)
        return res:send(serr .. "\n")
      end
      lines[#lines + 1] = ("file %s %s %d %s\n"):format(part.name, part.filename, size, name)
    else
      local value, verr, vstatus = part:value() -- up to 1 MiB (max_field_bytes)
      if not value then
        res:status(vstatus or 400)
        return res:send(verr .. "\n")
      end
      lines[#lines + 1] = ("field %s %d\n"):format(part.name, #value)
    end
  end
  res:send(table.concat(lines))
end
