-- rill.test.client(app [, opts]): serves app on 127.0.0.1 (a free port) in
-- this runtime and sends it requests, for specs.
--
--   local c = rill.test.client(require("rill.app").load("examples/todo_api.lua"))
--   local res = assert(c:post("/todos", {json = {title = "milk"}}))
--   assert.equal(201, res.status)
--   assert.equal("milk", res:json().title)
--
-- Requests go through rill.http.request (keep-alive, pooled); response
-- bodies are read whole. Set-Cookie cookies are kept in c.cookies and sent
-- with later requests, as a browser would for one site.
local rill = require "rill"
local http = require "rill.http"
local client = require "rill.client"
local json = require "rill.json"

local byte, concat, format, gsub, lower, sort, tostring, type = string.byte, table.concat,
  string.format, string.gsub, string.lower, table.sort, tostring, type

local M = {}

M.TIMEOUT = 10000            -- ms each wait of a request may take
M.MAX_BODY = 16 * 1024 * 1024 -- bytes of a response body read

-- Options of the client itself; the others go to rill.http.listen.
local OWN = {timeout = true, max_body = true, headers = true, cookies = true}

local Client = {}
Client.__index = Client
Client.__name = "rill.test.client"

local Response = {}
Response.__index = Response
Response.__name = "rill.test.response"

-- res:json() → the body decoded, or nil, err.
function Response:json()
  return json.decode(self.body, {max_size = #self.body + 1})
end

-- ---- queries and cookies ----

-- {a = 1, b = {"x", "y"}, c = true} → "a=1&b=x&b=y&c" (rill.http.encode_query).
local encode_query = http.encode_query
M.encode_query = encode_query

-- An HTTP-date ("Thu, 01 Jan 1970 00:00:00 GMT") → seconds, or nil.
local http_date = require("rill.cookiejar").parse_date

-- Keeps (or drops) the cookie of one Set-Cookie value in jar.
local function store(jar, line)
  local name, value, attrs = line:match("^%s*([^=;]-)%s*=%s*([^;]*)(.*)$")
  if not name or name == "" then return end
  value = value:match("^(.-)%s*$")
  if value:match('^".*"$') then value = value:sub(2, -2) end
  local expired = false
  for attr in attrs:gmatch(";%s*([^;]+)") do
    local k, v = attr:match("^([^=]-)%s*=%s*(.-)%s*$")
    k = lower(k or attr)
    if k == "max-age" then
      local n = tonumber(v)
      if n and n <= 0 then expired = true end
    elseif k == "expires" and v then
      local t = http_date(v)
      if t and t <= rill.time() then expired = true end
    end
  end
  if expired then jar[name] = nil else jar[name] = value end
end

-- ---- requests ----

-- Copies headers ({name = value | {values}}) into out, keyed by lower-case
-- name (a later one replaces an earlier of the same name).
local function merge_headers(out, headers)
  for k, v in pairs(headers or {}) do out[lower(k)] = {k, v} end
end

local function check_opts(fname, o)
  if o ~= nil and type(o) ~= "table" then
    error(("%s: options must be a table, got %s"):format(fname, type(o)), 4)
  end
end

-- c:request(method, path [, opts]) → res | nil, err. opts: headers, body
-- (a string, a stream or a function), json (a value, sent encoded with
-- Content-Type application/json), query (a table, added to the path),
-- cookies ({name = value}, sent with the jar's for this request), timeout
-- (ms).
local function request(self, method, path, o, level)
  local fname = "client:" .. lower(method)
  if type(path) ~= "string" or byte(path, 1) ~= 47 then
    error(("%s: path must be a string starting with /, got %s"):format(fname,
      type(path) == "string" and http.quote(path) or type(path)), level)
  end
  check_opts(fname, o)
  o = o or {}
  if self.closed then return nil, "closed" end
  local target = path
  if o.query ~= nil then
    if type(o.query) ~= "table" then
      error(fname .. ": query must be a table, got " .. type(o.query), level)
    end
    local qs = encode_query(o.query)
    if qs ~= "" then target = target .. (target:find("?", 1, true) and "&" or "?") .. qs end
  end
  local hs = {}
  merge_headers(hs, self.headers)
  merge_headers(hs, o.headers)
  local body = o.body
  if o.json ~= nil then
    if body ~= nil then error(fname .. ": give body or json, not both", level) end
    body = json.encode(o.json)
    if not hs["content-type"] then hs["content-type"] = {"Content-Type", "application/json"} end
  end
  if not hs.cookie and (self.cookies or o.cookies) then
    local all = {}
    for k, v in pairs(self.cookies or {}) do all[k] = v end
    for k, v in pairs(o.cookies or {}) do all[k] = v end
    local names = {}
    for k in pairs(all) do names[#names + 1] = k end
    sort(names)
    for i, k in ipairs(names) do names[i] = k .. "=" .. tostring(all[k]) end
    if #names > 0 then hs.cookie = {"Cookie", concat(names, "; ")} end
  end
  local list = {}
  for _, pair in pairs(hs) do
    local v = pair[2]
    if type(v) == "table" then
      for _, x in ipairs(v) do list[#list + 1] = {pair[1], x} end
    else
      list[#list + 1] = {pair[1], v}
    end
  end
  local res, err = client.request{url = self.url .. target, method = method, headers = list,
    body = body, read_timeout = o.timeout or self.timeout, decompress = false}
  if not res then return nil, err end
  local text = ""
  if res.body then
    text, err = res.body:read_all(self.max_body)
    if not text then return nil, err end
  end
  if self.cookies then
    local sc = res.headers["set-cookie"]
    if type(sc) == "string" then sc = {sc} end
    for _, line in ipairs(sc or {}) do store(self.cookies, line) end
  end
  return setmetatable({status = res.status, reason = res.reason, version = res.version,
    headers = res.headers, body = text}, Response)
end

function Client:request(method, path, o)
  if type(method) ~= "string" then
    error("client:request: method must be a string, got " .. type(method), 2)
  end
  return request(self, method:upper(), path, o, 3)
end

for _, m in ipairs({"get", "post", "put", "patch", "delete", "head", "options"}) do
  local M_ = m:upper()
  Client[m] = function(self, path, o) return request(self, M_, path, o, 3) end
end

-- c:websocket(path [, opts]) → ws, headers | nil, err: rill.websocket.connect
-- to this server (opts as its; idle_timeout defaults to the client's
-- timeout), with the jar's cookies.
function Client:websocket(path, o)
  if type(path) ~= "string" or byte(path, 1) ~= 47 then
    error("client:websocket: path must be a string starting with /, got " ..
      (type(path) == "string" and http.quote(path) or type(path)), 2)
  end
  check_opts("client:websocket", o)
  if self.closed then return nil, "closed" end
  local wo = {idle_timeout = self.timeout, timeout = self.timeout}
  for k, v in pairs(o or {}) do wo[k] = v end
  local has_cookie = false
  for k in pairs(wo.headers or {}) do
    if lower(k) == "cookie" then has_cookie = true end
  end
  if self.cookies and next(self.cookies) and not has_cookie then
    local hs = {}
    for k, v in pairs(wo.headers or {}) do hs[k] = v end
    local names = {}
    for k, v in pairs(self.cookies) do names[#names + 1] = k .. "=" .. v end
    sort(names)
    hs.Cookie = concat(names, "; ")
    wo.headers = hs
  end
  local ws, headers = require("rill.websocket").connect("ws://127.0.0.1:" .. self.port .. path, wo)
  if ws then self.websockets[ws] = true end
  return ws, headers
end

-- c:close(): stops the server (new connections are refused), closes the
-- client's idle connections to it and the websockets it opened that are
-- still open (with 1001, not waiting for the answer). Requests after it
-- return nil, "closed". Closing twice does nothing.
function Client:close()
  if self.closed then return end
  self.closed = true
  self.listener:close()
  client.drop_idle(client.pool_key{url = self.url})
  for ws in pairs(self.websockets) do
    if ws:state() == "open" then
      rill.spawn(function() pcall(ws.close, ws, 1001) end)
    end
  end
  self.websockets = {}
end

-- rill.test.client(app [, opts]) → client | nil, err. opts: timeout (ms,
-- default 10000: each wait of a request), max_body (bytes of a response
-- body, default 16 MiB: past it a request returns nil, "too large"),
-- headers (sent with every request), cookies (false: no jar; a table: the
-- jar's first cookies); the others go to rill.http.listen (its limits).
function M.new(app, opts)
  local handler = http.handler(app)
  if not handler then
    error("rill.test.client: app must be a handler function or a router, got " .. type(app), 2)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("rill.test.client: options must be a table, got " .. type(opts), 2)
  end
  opts = opts or {}
  if opts.tls then error("rill.test.client: tls is not supported", 2) end
  local lo = {}
  for k, v in pairs(opts) do
    if not OWN[k] then lo[k] = v end
  end
  lo.host, lo.port, lo.handler = "127.0.0.1", 0, handler
  local l, err = http.listen(lo)
  if not l then return nil, err end
  local port = l:port()
  local jar = nil
  if opts.cookies ~= false then
    jar = {}
    for k, v in pairs(type(opts.cookies) == "table" and opts.cookies or {}) do jar[k] = v end
  end
  local c = setmetatable({url = "http://127.0.0.1:" .. port, port = port, listener = l,
    timeout = opts.timeout or M.TIMEOUT, max_body = opts.max_body or M.MAX_BODY,
    headers = opts.headers, cookies = jar, websockets = setmetatable({}, {__mode = "k"}),
    closed = false}, Client)
  -- rill test closes the clients a spec file left open when the file ends.
  local runner = package.loaded["rill.test"]
  if runner and runner._opened then runner._opened(c) end
  return c
end

return M
