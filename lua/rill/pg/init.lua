-- rill.pg: a PostgreSQL client (frontend/backend protocol 3.0) on rill's
-- streams.
--
--   local pg = require "rill.pg"
--   local db = assert(pg.connect{user = "app", password = "s3cret", database = "app"})
--   local rows, info = db:query("SELECT id, name FROM users WHERE id = $1", 42)
--   for row in db:rows("SELECT * FROM big") do ... end   -- streamed
--   db:release()                                          -- back to the pool
--
-- Queries use the extended protocol (Parse/Bind/Execute/Sync): parameters
-- travel apart from the SQL text, as text (or raw bytes for pg.bytea), never
-- spliced into it. Each connection keeps the statements it parsed (named,
-- up to MAX_STATEMENTS) and only binds them again on the next use.
--
-- The reader keeps its own buffer (c.buf from c.pos): a read that times out
-- keeps what came (a notification read may time out and go on), and
-- messages are cut from it without a copy per message header. Nothing is
-- read that the caller did not ask for: a large result or a COPY goes only
-- as fast as the task pulls it.
local rill = require "rill"
local core = require "rill.core"
local bit = require "bit"
local pool_mod = require "rill.pool"

local bxor = bit.bxor
local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local concat = table.concat
local select, type, tostring, tonumber, error, pcall, setmetatable, unpack = select, type,
  tostring, tonumber, error, pcall, setmetatable, unpack
local floor = math.floor
local W = require "rill.pg.wire"
local Conn, i32, msg, SYNC, EXECUTE, DESCRIBE_PORTAL, TERMINATE, hex, bind_msg, kill, fail,
  next_msg, send, cstring, fields, error_text, columns, row_of, NO_COLUMNS, command_info,
  forget, result, begin = W.Conn, W.i32, W.msg, W.SYNC, W.EXECUTE, W.DESCRIBE_PORTAL,
  W.TERMINATE, W.hex, W.bind_msg, W.kill, W.fail, W.next_msg, W.send, W.cstring, W.fields,
  W.error_text, W.columns, W.row_of, W.NO_COLUMNS, W.command_info, W.forget, W.result,
  W.begin
local streams = require "rill.pg.copy"

local pg = W.pg

pg.MAX_STATEMENTS = 256 -- named statements a connection keeps
pg.pool = pool_mod.new{size = 64, idle_timeout = 30000}

-- Sends a query's messages: a cached statement is only bound again.
-- Returns true and the statement (nil: unnamed), or nil, err.
local function send_query(c, fname, sql, n, ...)
  if type(sql) ~= "string" then error(fname .. ": sql must be a string, got " .. type(sql), 3) end
  if find(sql, "\0", 1, true) then error(fname .. ": sql contains a NUL byte", 3) end
  local stmt = c.statements[sql]
  local ok, err
  if stmt and stmt.parsed then
    local bind = bind_msg(fname, stmt.name, n, ...)
    if stmt.columns then
      ok, err = send(c, bind, EXECUTE, SYNC)
    else
      ok, err = send(c, msg("D", "S" .. stmt.name .. "\0"), bind, EXECUTE, SYNC)
    end
  elseif not stmt and c.nstatements < pg.MAX_STATEMENTS then
    local name = "rill" .. (c.seq + 1)
    local bind = bind_msg(fname, name, n, ...)
    c.nstatements, c.seq = c.nstatements + 1, c.seq + 1
    stmt = {sql = sql, name = name}
    c.statements[sql] = stmt
    ok, err = send(c, msg("P", name .. "\0" .. sql .. "\0\0\0"), msg("D", "S" .. name .. "\0"),
      bind, EXECUTE, SYNC)
  else
    stmt = nil
    ok, err = send(c, msg("P", "\0" .. sql .. "\0\0\0"), bind_msg(fname, "", n, ...),
      DESCRIBE_PORTAL, EXECUTE, SYNC)
  end
  if not ok then return nil, err end
  return true, stmt
end

-- conn:query(sql, ...) → rows, info or nil, err, fields. Parameters $1, $2,
-- ... are the arguments after sql.
function Conn:query(sql, ...)
  local ok, err = begin(self, "conn:query")
  if not ok then return nil, err end
  local stmt
  ok, stmt = send_query(self, "conn:query", sql, select("#", ...), ...)
  if not ok then return nil, stmt end
  self.busy = true
  local rows, info, f = result(self, stmt)
  self.busy = false
  return rows, info, f
end

-- for row in conn:rows(sql, ...): each row as it comes, nothing held; an
-- error is raised (the connection stays usable).
function Conn:rows(sql, ...)
  local ok, err = begin(self, "conn:rows")
  if not ok then error("conn:rows: " .. err, 2) end
  local stmt
  ok, stmt = send_query(self, "conn:rows", sql, select("#", ...), ...)
  if not ok then error("conn:rows: " .. stmt, 2) end
  self.pending = true
  local gen = self.gen
  local c = self
  local cols = stmt and stmt.columns
  local failure, done = nil, false
  return function()
    if done then return nil end
    if c.gen ~= gen or c.closed and not done then
      if c.closed then error("conn:rows: closed", 2) end
      error("conn:rows: the connection was used for another query during the loop", 2)
    end
    c.busy = true
    while true do
      local t, p, e = next_msg(c)
      if not t then
        c.busy = false
        done = true
        error("conn:rows: " .. p, 2)
      end
      local buf = c.buf
      if t == 68 and not failure then
        c.busy = false
        local row = row_of(buf, p, e, cols or NO_COLUMNS)
        if not row then
          done = true
          fail(c, "protocol error")
          error("conn:rows: protocol error: a bad DataRow", 2)
        end
        return row
      elseif t == 84 then
        cols = columns(c, buf, p, e)
        if not cols then
          done = true
          fail(c, "protocol error")
          error("conn:rows: protocol error: a bad RowDescription", 2)
        end
        if stmt then stmt.columns = cols end
      elseif t == 110 then
        cols = NO_COLUMNS
        if stmt then stmt.columns = cols end
      elseif t == 49 then
        if stmt then stmt.parsed = true end
      elseif t == 69 then
        failure = fields(buf, p, e)
      elseif t == 90 then
        c.status = char(byte(buf, p))
        c.busy, c.pending, done = false, nil, true
        if failure then
          forget(c, stmt, failure)
          error(error_text(failure), 2)
        end
        return nil
      elseif t == 71 or t == 72 then
        c.busy, done = false, true
        fail(c, "protocol error")
        error("conn:rows: COPY through rows(); use copy_in or copy_out", 2)
      end
    end
  end
end

-- conn:simple(sql) → rows, info of the last statement: one or more
-- statements in the simple protocol (no parameters).
function Conn:simple(sql)
  local ok, err = begin(self, "conn:simple")
  if not ok then return nil, err end
  if type(sql) ~= "string" then error("conn:simple: sql must be a string, got " .. type(sql), 2) end
  if find(sql, "\0", 1, true) then error("conn:simple: sql contains a NUL byte", 2) end
  ok, err = send(self, msg("Q", sql .. "\0"))
  if not ok then return nil, err end
  self.busy = true
  -- several results: the last one wins
  local last_rows, last_info, cols, rows, failure = nil, nil, NO_COLUMNS, {}, nil
  while true do
    local t, p, e = next_msg(self)
    if not t then
      self.busy = false
      return nil, p
    end
    local buf = self.buf
    if t == 68 then
      if not failure then
        local row = row_of(buf, p, e, cols)
        if not row then
          self.busy = false
          return fail(self, "protocol error: a bad DataRow")
        end
        rows[#rows + 1] = row
      end
    elseif t == 84 then
      cols, rows = columns(self, buf, p, e), {}
      if not cols then
        self.busy = false
        return fail(self, "protocol error: a bad RowDescription")
      end
    elseif t == 67 then
      rows.columns = cols.public or {}
      last_rows, last_info = rows, command_info(buf, p)
      cols, rows = NO_COLUMNS, {}
    elseif t == 73 then
      rows.columns = {}
      last_rows, last_info = rows, {command = "", count = nil}
    elseif t == 69 then
      failure = failure or fields(buf, p, e)
    elseif t == 90 then
      self.status = char(byte(buf, p))
      break
    elseif t == 71 or t == 72 then
      self.busy = false
      return fail(self, "protocol error: COPY through simple(); use copy_in or copy_out")
    end
  end
  self.busy = false
  if failure then return nil, error_text(failure), failure end
  if not last_rows then last_rows, last_info = {columns = {}}, {command = "", count = nil} end
  return last_rows, last_info
end

local function pack(...) return {n = select("#", ...), ...} end

-- conn:transaction(fn, ...) runs fn(conn, ...) between BEGIN and COMMIT:
-- its results. ROLLBACK instead, and nil, err, when fn raises (err the
-- value raised), returns false, or returns nil, err.
function Conn:transaction(fn, ...)
  if type(fn) ~= "function" then
    error("conn:transaction: fn must be a function, got " .. type(fn), 2)
  end
  local ok, err, f = self:query("BEGIN")
  if not ok then return nil, err, f end
  local res = pack(pcall(fn, self, ...))
  local failed = not res[1] or res[2] == false or (res[2] == nil and res.n >= 3)
  if not failed then
    ok, err, f = self:query("COMMIT")
    if not ok then return nil, err, f end
    if err.command == "ROLLBACK" then return nil, "rolled back" end
    return unpack(res, 2, res.n)
  end
  if not self.closed then
    if self.busy or self.pending then self.pending = true end
    self.busy = false
    self:query("ROLLBACK")
  end
  if res[1] then return nil, res[3] end
  return nil, res[2]
end

local function quote_ident(fname, name)
  if type(name) ~= "string" or name == "" or find(name, "\0", 1, true) then
    error(fname .. ": channel must be a non-empty string", 3)
  end
  return '"' .. name:gsub('"', '""') .. '"'
end

-- conn:listen(channel) → true or nil, err: notifications on channel come to
-- conn:notifications().
function Conn:listen(channel)
  local q = "LISTEN " .. quote_ident("conn:listen", channel)
  local ok, err, f = self:simple(q)
  if not ok then return nil, err, f end
  self.listening = true
  return true
end

-- conn:unlisten([channel]) → true or nil, err (every channel when none).
function Conn:unlisten(channel)
  local q = channel == nil and "UNLISTEN *" or "UNLISTEN " .. quote_ident("conn:unlisten", channel)
  local ok, err, f = self:simple(q)
  if not ok then return nil, err, f end
  return true
end

-- ---- connecting, the pool ----

function Conn:settimeout(ms)
  if ms ~= nil and type(ms) ~= "number" then
    error("conn:settimeout: ms must be a number, got " .. type(ms), 2)
  end
  self.timeout = ms
  if not self.closed then self.sock:settimeout(ms) end
  return self
end

-- conn:close(): ends the session (Terminate) and closes the socket.
function Conn:close()
  if self.closed then return true end
  self.closed = true
  pcall(self.sock.write, self.sock, TERMINATE)
  pcall(self.sock.close, self.sock)
  return true
end

-- conn:release(): back to the pool when it is clean (idle, outside a
-- transaction, listening to nothing, nothing left unread); closed
-- otherwise.
function Conn:release()
  if self.closed then return end
  if self.busy or self.pending or self.status ~= "I" or self.listening or not self.key
    or #self.buf >= self.pos or #self.queue > 0 then
    return self:close()
  end
  self.buf, self.pos = "", 1
  pg.pool:put(self.key, self, self.sock)
end

-- SCRAM-SHA-256's proof and the server signature to expect (RFC 5802 3)
-- for password, the salt and iteration count, and the AuthMessage.
function pg._scram(password, salt, iter, auth_message)
  local hmac = core.hmac_sha256
  local salted = core.pbkdf2_sha256(password, salt, iter)
  local client_key = hmac(salted, "Client Key")
  local sig = hmac(core.sha256(client_key), auth_message)
  local proof = {}
  for i = 1, 32 do proof[i] = char(bxor(byte(client_key, i), byte(sig, i))) end
  return concat(proof), hmac(hmac(salted, "Server Key"), auth_message)
end

local function scram(c, sock, user, password, buf, p, e)
  local mechs = {}
  while p <= e do
    local m
    m, p = cstring(buf, p)
    if not m or m == "" then break end
    mechs[m] = true
  end
  if not mechs["SCRAM-SHA-256"] then
    return nil, "auth: no mechanism in common (the server offers SASL mechanisms rill lacks)"
  end
  if not password then return nil, "auth: the server asks for a password" end
  local cnonce = core.base64_encode(core.random(18))
  local first_bare = "n=,r=" .. cnonce
  local first = "n,," .. first_bare
  local ok, err = sock:write(msg("p", "SCRAM-SHA-256\0" .. i32(#first) .. first))
  if not ok then return nil, err end
  -- server-first
  local t, q, qe = next_msg(c)
  if not t then return nil, q end
  if t == 69 then return nil, error_text(fields(c.buf, q, qe)) end
  if t ~= 82 or byte(c.buf, q + 3) ~= 11 then return nil, "auth: protocol error in SCRAM" end
  local server_first = sub(c.buf, q + 4, qe)
  local nonce, salt, iter = server_first:match("^r=([^,]+),s=([^,]+),i=(%d+)$")
  iter = tonumber(iter)
  if not nonce or sub(nonce, 1, #cnonce) ~= cnonce or #nonce <= #cnonce then
    return nil, "auth: bad SCRAM server-first message"
  end
  salt = core.base64_decode(salt)
  if not salt or not iter or iter < 1 or iter > pg.MAX_SCRAM_ITERATIONS then
    return nil, "auth: bad SCRAM salt or iteration count"
  end
  local final_bare = "c=biws,r=" .. nonce
  local proof, server_sig = pg._scram(password, salt, iter, first_bare .. "," .. server_first ..
    "," .. final_bare)
  local final = final_bare .. ",p=" .. core.base64_encode(proof)
  ok, err = sock:write(msg("p", final))
  if not ok then return nil, err end
  t, q, qe = next_msg(c)
  if not t then return nil, q end
  if t == 69 then return nil, error_text(fields(c.buf, q, qe)), fields(c.buf, q, qe) end
  if t ~= 82 or byte(c.buf, q + 3) ~= 12 then return nil, "auth: protocol error in SCRAM" end
  local v = sub(c.buf, q + 4, qe):match("^v=([^,]+)")
  if v ~= core.base64_encode(server_sig) then
    return nil, "auth: the server's SCRAM signature is wrong"
  end
  return true
end

pg.MAX_SCRAM_ITERATIONS = 100000

-- Authenticates and reads to the first ReadyForQuery.
local function startup(c, opts)
  local sock, user, password = c.sock, opts.user, opts.password
  local params = {"user\0", user, "\0database\0", opts.database, "\0client_encoding\0UTF8\0"}
  if opts.application_name then
    params[#params + 1] = "application_name\0" .. opts.application_name .. "\0"
  end
  params[#params + 1] = "\0"
  local body = i32(196608) .. concat(params)
  local ok, err = sock:write(i32(#body + 4) .. body)
  if not ok then return nil, err end
  local authed, scram_done = false, false
  while true do
    local t, p, e = next_msg(c)
    if not t then return nil, p end
    local buf = c.buf
    if t == 82 then -- 'R' Authentication*
      local a, b, cc, d = byte(buf, p, p + 3)
      local kind = a * 16777216 + b * 65536 + cc * 256 + d
      if kind == 0 then
        if c.scram_started and not scram_done then
          return nil, "auth: the server ended SCRAM without proving it knows the password"
        end
        authed = true
      elseif kind == 3 then
        if not password then return nil, "auth: the server asks for a password" end
        ok, err = sock:write(msg("p", password .. "\0"))
        if not ok then return nil, err end
      elseif kind == 5 then
        if not password then return nil, "auth: the server asks for a password" end
        local salt = sub(buf, p + 4, p + 7)
        local inner = hex(core.md5(password .. user))
        ok, err = sock:write(msg("p", "md5" .. hex(core.md5(inner .. salt)) .. "\0"))
        if not ok then return nil, err end
      elseif kind == 10 then
        c.scram_started = true
        local f
        ok, err, f = scram(c, sock, user, password, buf, p + 4, e)
        if not ok then return nil, err, f end
        scram_done = true
      else
        local names = {[2] = "Kerberos V5", [6] = "SCM credentials", [7] = "GSSAPI", [9] = "SSPI"}
        return nil, "auth: unsupported method " .. (names[kind] or tostring(kind))
      end
    elseif t == 75 then -- 'K' BackendKeyData
      local a, b, cc, d = byte(buf, p, p + 3)
      c.pid = a * 16777216 + b * 65536 + cc * 256 + d
      c.secret = sub(buf, p + 4, p + 7)
    elseif t == 90 then
      if not authed then return nil, "protocol error: ready before authentication" end
      c.status = char(byte(buf, p))
      return true
    elseif t == 69 then
      local f = fields(buf, p, e)
      return nil, error_text(f), f
    elseif t == 118 then -- 'v' NegotiateProtocolVersion: accepted as it is
    else
      return nil, "protocol error: unexpected message " .. char(t) .. " at startup"
    end
  end
end

local function opt_string(opts, k, def)
  local v = opts[k]
  if v == nil then return def end
  if type(v) ~= "string" then
    error("rill.pg.connect: option " .. k .. " must be a string, got " .. type(v), 3)
  end
  if find(v, "\0", 1, true) then error("rill.pg.connect: option " .. k .. " has a NUL byte", 3) end
  return v
end

-- The password's part of a pool key: a hash, so that the key does not hold
-- it (memoized: connect runs per request).
local hashes = setmetatable({}, {__mode = "k"})
local function password_hash(pw)
  local h = hashes[pw]
  if not h then
    h = hex(core.sha256(pw))
    hashes[pw] = h
  end
  return h
end

-- rill.pg.connect(opts) → a connection, or nil, err, fields.
function pg.connect(opts)
  if type(opts) ~= "table" then
    error("rill.pg.connect: opts must be a table, got " .. type(opts), 2)
  end
  local host = opt_string(opts, "host", "127.0.0.1")
  local port = opts.port or 5432
  if type(port) ~= "number" or port < 1 or port > 65535 or port ~= floor(port) then
    error("rill.pg.connect: port must be an integer 1-65535", 2)
  end
  local user = opt_string(opts, "user", "postgres")
  local o = {user = user, password = opt_string(opts, "password"),
    database = opt_string(opts, "database", user),
    application_name = opt_string(opts, "application_name")}
  local timeout = opts.timeout
  if timeout == nil then timeout = 60000 end
  if timeout == false then timeout = nil end
  if timeout ~= nil and type(timeout) ~= "number" then
    error("rill.pg.connect: timeout must be a number of ms", 2)
  end
  local max_message = opts.max_message or 64 * 1024 * 1024
  if type(max_message) ~= "number" or max_message < 1 then
    error("rill.pg.connect: max_message must be a number of bytes", 2)
  end
  local tls = opts.tls
  if tls ~= nil and tls ~= false and tls ~= true and type(tls) ~= "table" then
    error("rill.pg.connect: tls must be true, false or a table", 2)
  end
  local tls_opts
  if tls then
    tls_opts = {server_name = host, verify = true}
    if type(tls) == "table" then for k, v in pairs(tls) do tls_opts[k] = v end end
  end
  if opts.on_notice ~= nil and type(opts.on_notice) ~= "function" then
    error("rill.pg.connect: on_notice must be a function", 2)
  end
  local key = concat({host, port, user, o.database, password_hash(o.password or ""),
    tls_opts and concat({"tls", tostring(tls_opts.server_name), tostring(tls_opts.ca),
      tostring(tls_opts.verify)}, ",") or "plain", opts.decode_json and "json" or ""}, "|")
  if opts.pool ~= false then
    local c = pg.pool:get(key)
    if c then
      c:settimeout(timeout)
      c.on_notice, c.max_message = opts.on_notice, max_message
      return c
    end
  end
  local sock, err = rill.connect(host, port, {timeout = timeout})
  if not sock then return nil, err end
  sock:settimeout(timeout)
  local c = setmetatable({sock = sock, buf = "", pos = 1, timeout = timeout,
    max_message = max_message, statements = {}, nstatements = 0, seq = 0, queue = {},
    parameters = {}, gen = 0, status = "I", decode_json = opts.decode_json and
    require("rill.json").decode or nil, on_notice = opts.on_notice,
    key = opts.pool ~= false and key or nil, host = host, port = port}, Conn)
  if tls_opts then
    local ok
    ok, err = sock:write(i32(8) .. i32(80877103))
    local answer
    if ok then answer, err = sock:read(1) end
    if not answer then
      kill(c)
      return nil, err or "closed"
    end
    if answer ~= "S" then
      kill(c)
      return nil, "tls: the server does not accept TLS"
    end
    ok, err = sock:starttls(tls_opts)
    if not ok then
      kill(c)
      return nil, "tls: " .. tostring(err)
    end
  end
  local ok, f
  ok, err, f = startup(c, o)
  if not ok then
    kill(c)
    return nil, err, f
  end
  return c
end

-- Names for specs (the API reference walks these).
pg._Conn, pg._CopyOut, pg._CopyIn, pg._Notifications = Conn, streams.CopyOut, streams.CopyIn,
  streams.Notifications

return pg
