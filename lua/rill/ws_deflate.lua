-- permessage-deflate (RFC 7692): the options, and the negotiation in the
-- opening handshake, for rill.websocket (server upgrade and client connect).
-- Compressing and inflating happen in C (core/ws_conn.c, core/ws_deflate.c)
-- with the parameters negotiated here:
--   own_bits, peer_bits     window bits of our compressor and of the peer's
--                           (8..15; own 8: we send uncompressed, see below)
--   own_reset, peer_reset   no context takeover, ours and the peer's
--   level, mem_level, min_size   our compressor's settings
local byte, concat, find, lower, sub = string.byte, table.concat, string.find, string.lower,
  string.sub
local type, tonumber, tostring, error = type, tonumber, tostring, error

local M = {}

M.NAME = "permessage-deflate"

local DEFAULTS = {min_size = 64, level = 1, mem_level = 8, window_bits = 15,
  peer_window_bits = 15, no_context_takeover = false, peer_no_context_takeover = false}
local RANGES = {min_size = {0, 2 ^ 53}, level = {0, 9}, mem_level = {1, 9}, window_bits = {9, 15},
  peer_window_bits = {8, 15}}

-- The deflate option of an upgrade or a connect: nil/true (the defaults), false
-- (off: returns nil) or a table of the options above. Raises for a bad one,
-- at the line `level` levels up.
function M.config(opt, where, level)
  if opt == false then return nil end
  if opt ~= nil and opt ~= true and type(opt) ~= "table" then
    error(where .. ": deflate must be a boolean or a table, got " .. type(opt), level + 1)
  end
  local cfg = {}
  for k, def in pairs(DEFAULTS) do
    local v
    if type(opt) == "table" then v = opt[k] end
    if v == nil then v = def end
    local range = RANGES[k]
    if range then
      if type(v) ~= "number" or v % 1 ~= 0 or v < range[1] or v > range[2] then
        error(("%s: deflate.%s must be an integer in %d..%d, got %s"):format(where, k, range[1],
          range[2], tostring(v)), level + 1)
      end
    elseif type(v) ~= "boolean" then
      error(("%s: deflate.%s must be a boolean, got %s"):format(where, k, type(v)), level + 1)
    end
    cfg[k] = v
  end
  if type(opt) == "table" then
    for k in pairs(opt) do
      if DEFAULTS[k] == nil then error(where .. ": unknown deflate option " .. tostring(k), level + 1) end
    end
  end
  return cfg
end

-- ---- Sec-WebSocket-Extensions (RFC 6455 §9.1) ----

local function is_tchar(c)
  -- RFC 9110 tchar: ALPHA DIGIT ! # $ % & ' * + - . ^ _ ` | ~
  return c and (c >= 97 and c <= 122 or c >= 65 and c <= 90 or c >= 48 and c <= 57 or
    c == 33 or (c >= 35 and c <= 39) or c == 42 or c == 43 or c == 45 or c == 46 or
    c == 94 or c == 95 or c == 96 or c == 124 or c == 126)
end

-- Parses an extension list: {{name = lowercased, params = {{key, value|true}, ...}}, ...},
-- or nil when the header does not follow the grammar. A quoted value is
-- unquoted (RFC 7692 §7.1 allows either form).
function M.parse(value)
  if type(value) == "table" then value = concat(value, ",") end
  local list = {}
  if type(value) ~= "string" then return list end
  local i, n = 1, #value
  local function ows()
    while i <= n do
      local c = byte(value, i)
      if c ~= 32 and c ~= 9 then return end
      i = i + 1
    end
  end
  local function token()
    local s = i
    while is_tchar(byte(value, i)) do i = i + 1 end
    if i == s then return nil end
    return sub(value, s, i - 1)
  end
  local function quoted()
    i = i + 1 -- the opening quote
    local out = {}
    while i <= n do
      local c = byte(value, i)
      if c == 34 then
        i = i + 1
        return concat(out)
      elseif c == 92 then
        i = i + 1
        if i > n then return nil end
        out[#out + 1] = sub(value, i, i)
      else
        out[#out + 1] = sub(value, i, i)
      end
      i = i + 1
    end
    return nil
  end
  while true do
    ows()
    if i > n then return list end
    if byte(value, i) == 44 then -- an empty element (1#rule allows them)
      i = i + 1
    else
      local name = token()
      if not name then return nil end
      local ext = {name = lower(name), params = {}}
      list[#list + 1] = ext
      while true do
        ows()
        local c = byte(value, i)
        if c == nil then return list end
        if c == 44 then
          i = i + 1
          break
        end
        if c ~= 59 then return nil end -- ";"
        i = i + 1
        ows()
        local key = token()
        if not key then return nil end
        ows()
        local v = true
        if byte(value, i) == 61 then -- "="
          i = i + 1
          ows()
          if byte(value, i) == 34 then v = quoted() else v = token() end
          if not v then return nil end
        end
        ext.params[#ext.params + 1] = {lower(key), v}
      end
    end
  end
end

-- A window-bits value: a decimal 8..15 without leading zeros (RFC 7692 §7.1.2).
local function bits(v)
  if type(v) ~= "string" or not find(v, "^[1-9]%d?$") then return nil end
  local b = tonumber(v)
  return b >= 8 and b <= 15 and b or nil
end

local KNOWN = {server_no_context_takeover = "flag", client_no_context_takeover = "flag",
  server_max_window_bits = "bits", client_max_window_bits = "bits?"}

-- An element's parameters as a table, or nil when one is unknown, repeated or
-- has a bad value (such an offer is declined, such a response fails).
local function params_of(ext)
  local p = {}
  for _, kv in ipairs(ext.params) do
    local k, v = kv[1], kv[2]
    local kind = KNOWN[k]
    if not kind or p[k] ~= nil then return nil end
    if kind == "flag" then
      if v ~= true then return nil end
    elseif kind == "bits" then
      v = bits(v)
      if not v then return nil end
    elseif v ~= true then
      v = bits(v)
      if not v then return nil end
    end
    p[k] = v
  end
  return p
end

local function core_params(cfg, own_bits, peer_bits, own_reset, peer_reset)
  return {own_bits = own_bits, peer_bits = peer_bits, own_reset = own_reset,
    peer_reset = peer_reset, level = cfg.level, mem_level = cfg.mem_level,
    min_size = cfg.min_size}
end

-- The server's answer to a client's Sec-WebSocket-Extensions: the response
-- value and the parameters for the core, for the first offer of
-- permessage-deflate it can accept; nil when none (the extension is
-- declined: no Sec-WebSocket-Extensions in the 101).
function M.accept(value, cfg)
  if not cfg then return nil end
  local list = M.parse(value)
  if not list then return nil end -- a malformed header: decline
  for _, ext in ipairs(list) do
    local p = ext.name == M.NAME and params_of(ext)
    if p then
      local own_bits = cfg.window_bits
      local asked = p.server_max_window_bits
      if asked and asked < own_bits then own_bits = asked end
      -- Our limit on the client's window can be sent only if it offered
      -- client_max_window_bits; else the offer is declined.
      local peer_bits, offered = 15, p.client_max_window_bits
      if type(offered) == "number" then peer_bits = offered end
      local limit_ok, limit = true, cfg.peer_window_bits < peer_bits
      if limit then
        if offered then peer_bits = cfg.peer_window_bits else limit_ok = false end
      end
      if limit_ok then
        local own_reset = cfg.no_context_takeover or p.server_no_context_takeover == true
        -- The client's hint that it resets anyway costs nothing to confirm,
        -- and lets us drop the inflater between messages.
        local peer_reset = cfg.peer_no_context_takeover or p.client_no_context_takeover == true
        local out = {M.NAME}
        if own_reset then out[#out + 1] = "server_no_context_takeover" end
        if peer_reset then out[#out + 1] = "client_no_context_takeover" end
        if asked or own_bits < 15 then out[#out + 1] = "server_max_window_bits=" .. own_bits end
        if limit then out[#out + 1] = "client_max_window_bits=" .. peer_bits end
        return concat(out, "; "), core_params(cfg, own_bits, peer_bits, own_reset, peer_reset)
      end
    end
  end
  return nil
end

-- The client's offer for cfg.
function M.offer(cfg)
  local out = {M.NAME}
  if cfg.no_context_takeover then out[#out + 1] = "client_no_context_takeover" end
  if cfg.peer_no_context_takeover then out[#out + 1] = "server_no_context_takeover" end
  if cfg.peer_window_bits < 15 then
    out[#out + 1] = "server_max_window_bits=" .. cfg.peer_window_bits
  end
  out[#out + 1] = cfg.window_bits < 15 and "client_max_window_bits=" .. cfg.window_bits
    or "client_max_window_bits"
  return concat(out, "; ")
end

-- The client's check of the server's Sec-WebSocket-Extensions against its
-- offer M.offer(cfg): the parameters for the core; nil when the server
-- declined (no header); or false, why when the answer is not one the offer
-- allows (the connection fails).
function M.check(value, cfg)
  if value == nil then return nil end
  local list = M.parse(value)
  if not list then return false, "bad Sec-WebSocket-Extensions" end
  if #list == 0 then return nil end
  if not cfg then return false, "server chose an extension we did not offer" end
  if #list > 1 or list[1].name ~= M.NAME then
    return false, "server chose an extension we did not offer"
  end
  local p = params_of(list[1])
  if not p or p.client_max_window_bits == true then
    return false, "bad permessage-deflate parameters"
  end
  if cfg.peer_no_context_takeover and not p.server_no_context_takeover then
    return false, "server ignored server_no_context_takeover"
  end
  local peer_bits = p.server_max_window_bits or 15
  if peer_bits > cfg.peer_window_bits then
    return false, "server_max_window_bits past what we offered"
  end
  local own_bits = p.client_max_window_bits or cfg.window_bits
  if own_bits > cfg.window_bits then
    return false, "client_max_window_bits past what we offered"
  end
  return core_params(cfg, own_bits, peer_bits, p.client_no_context_takeover == true,
    p.server_no_context_takeover == true)
end

return M
