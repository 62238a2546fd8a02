-- static, rill: app:static (rill.static) serving $WWW under /, with its
-- defaults: validators, ranges, its cache of recent lookups (1 s) and small
-- files (up to 16 KiB) from memory, larger ones by res:send_file.
--   WWW=/srv/www rill serve bench/scenarios/static/app.lua
local rill = require "rill"
local root = assert(os.getenv("WWW"), "set WWW to the directory to serve")

local app = rill.router()
app:static("/", root)
return app
