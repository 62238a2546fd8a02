-- The fast paths of the hot methods (core/lua_ffi.h): C functions that Lua
-- calls through the FFI and that never wait. They answer at once — data, done,
-- or "take the slow path" — and the Lua wrappers in rill (streams) and
-- rill.websocket fall back to the C methods, which wait. A loop that finds
-- its data waiting then runs as one compiled trace (lua-resty-core's way).
local ffi = require "ffi"
local core = require "rill.core"

-- The table's declaration comes from the core (core/lua_ffi.h), so the two
-- cannot differ; it is made once (a reload finds it: a type cannot be
-- declared twice).
if not pcall(ffi.typeof, "rill_ffi_api_t") then ffi.cdef(core.ffi_cdef) end

local api = ffi.cast("const rill_ffi_api_t *", core.ffi_api)
assert(tonumber(api.size) == ffi.sizeof("rill_ffi_api_t"), "rill.ffi does not match the core")

return {api = api, ptr = ffi.new("const char *[1]"), ptr2 = ffi.new("const char *[1]"),
  int = ffi.new("int[1]"), string = ffi.string}
