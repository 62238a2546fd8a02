-- The fast paths of the hot methods (core/lua_ffi.h): C functions that Lua
-- calls through the FFI and that never wait. They answer at once — data, done,
-- or "take the slow path" — and the Lua wrappers in rill (streams) and
-- rill.websocket fall back to the C methods, which wait. A loop that finds
-- its data waiting then runs as one compiled trace (lua-resty-core's way).
local ffi = require "ffi"
local core = require "rill.core"

-- The declaration survives a reload (a type cannot be declared twice).
if not pcall(ffi.typeof, "rill_ffi_api_t") then
  ffi.cdef [[
typedef struct {
  size_t size;
  int (*stream_peek)(void *face, const char **p);
  int (*stream_consume)(void *face, size_t n);
  int (*stream_write)(void *face, const char *p, size_t n);
  int (*ws_next)(void *ws);
  int (*ws_send)(void *ws, int opcode, int fin, const char *p, size_t n);
  int (*ws_streaming)(void *ws, int set);
  double (*ws_msg_length)(void *ws);
  int (*http_write)(void *conn, unsigned gen, const char *p, size_t n);
  int (*http_reqline)(void *conn, unsigned gen, const char **method, const char **target,
                      int *target_len);
} rill_ffi_api_t;
]]
end

local api = ffi.cast("const rill_ffi_api_t *", core.ffi_api)
assert(tonumber(api.size) == ffi.sizeof("rill_ffi_api_t"), "rill.ffi does not match the core")

return {api = api, ptr = ffi.new("const char *[1]"), ptr2 = ffi.new("const char *[1]"),
  int = ffi.new("int[1]"), string = ffi.string}
