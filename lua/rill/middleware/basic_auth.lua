-- rill.middleware.basic_auth(opts): HTTP Basic authentication (RFC 7617).
--
--   app:use("/admin", rill.middleware.basic_auth{realm = "admin", users = {ann = "s3cret"}})
--
-- opts.users: a table user → password, or
-- opts.check: function(user, password, req) → true to let the request in.
-- opts.realm: the realm the browser shows (default "rill"; no `"`, `\`, CR
--   or LF).
--
-- A request with good credentials goes on with req.user set; any other
-- gets 401 with WWW-Authenticate: Basic realm="...", charset="UTF-8". Passwords
-- from users are compared in time that does not depend on where they differ
-- (nor on whether the user exists).
local byte, char, find, sub, concat, type, pairs =
  string.byte, string.char, string.find, string.sub, table.concat, type, pairs
local floor = math.floor
local bit = require "bit"
local bxor, bor = bit.bxor, bit.bor

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local VALUE = {}
for i = 1, 64 do VALUE[byte(B64, i)] = i - 1 end

-- Standard base64 with its padding; nil for anything else.
local function unbase64(s)
  if #s % 4 ~= 0 or find(s, "[^A-Za-z0-9+/=]") or find(s, "=[^=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local a, b, c, d = byte(s, i, i + 3)
    local va, vb, vc, vd = VALUE[a], VALUE[b], VALUE[c], VALUE[d]
    if not va or not vb then return nil end
    local n = va * 262144 + vb * 4096 + (vc or 0) * 64 + (vd or 0)
    local b1, b2, b3 = floor(n / 65536), floor(n / 256) % 256, n % 256
    if vc == nil then
      out[#out + 1] = char(b1)
    elseif vd == nil then
      out[#out + 1] = char(b1, b2)
    else
      out[#out + 1] = char(b1, b2, b3)
    end
  end
  return concat(out)
end

-- true when a == b, in time that depends on their lengths only.
local function same(a, b)
  local la, lb = #a, #b
  local diff = la == lb and 0 or 1
  for i = 1, la do
    diff = bor(diff, bxor(byte(a, i), byte(b, (i - 1) % (lb > 0 and lb or 1) + 1) or 0))
  end
  return diff == 0
end

return function(opts)
  opts = opts or {}
  local realm = opts.realm or "rill"
  if type(realm) ~= "string" or find(realm, '[%z\r\n"\\]') then
    error("rill.middleware.basic_auth: realm must be a string without \", \\, CR, LF or NUL", 2)
  end
  local check = opts.check
  if check == nil then
    local users = opts.users
    if type(users) ~= "table" then
      error("rill.middleware.basic_auth: users (a table user → password) or check " ..
        "(a function) is needed", 2)
    end
    local copy = {}
    for u, p in pairs(users) do
      if type(u) ~= "string" or type(p) ~= "string" then
        error("rill.middleware.basic_auth: users must map strings to strings", 2)
      end
      copy[u] = p
    end
    local unknown = string.rep("\0", 32)
    check = function(user, password)
      local want = copy[user]
      -- an unknown user costs a comparison too
      local ok = same(password, want or unknown)
      return ok and want ~= nil
    end
  elseif type(check) ~= "function" then
    error("rill.middleware.basic_auth: check must be a function", 2)
  end
  local challenge = 'Basic realm="' .. realm .. '", charset="UTF-8"'

  return function(req, res, next)
    local auth = req.headers.authorization
    if type(auth) == "string" then
      local scheme, token = auth:match("^(%S+)%s+(%S+)%s*$")
      if scheme and scheme:lower() == "basic" then
        local pair = unbase64(token)
        local colon = pair and find(pair, ":", 1, true)
        if colon then
          local user, password = sub(pair, 1, colon - 1), sub(pair, colon + 1)
          if check(user, password, req) == true then
            req.user = user
            return next()
          end
        end
      end
    end
    res:status(401):header("WWW-Authenticate", challenge):header("Content-Type", "text/plain")
    return res:send("Unauthorized\n")
  end
end
