-- rill.middleware: what apps use with app:use, loaded when first named.
--
--   app:use(rill.middleware.logger())
--   app:use("/api", rill.middleware.cors{origins = {"https://app.example"}})
--
-- logger, cors, request_id, body_limit, basic_auth, timeout, compress,
-- decompress: each is a
-- function of its options that returns a middleware function(req, res,
-- next); its module (rill.middleware.NAME) describes the options.
local NAMES = {logger = true, cors = true, request_id = true, body_limit = true,
  basic_auth = true, timeout = true, compress = true, decompress = true}

return setmetatable({}, {
  __index = function(t, k)
    if not NAMES[k] then return nil end
    local m = require("rill.middleware." .. k)
    rawset(t, k, m)
    return m
  end,
})
