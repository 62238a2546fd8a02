-- rill.pg against Debian's PostgreSQL, started here: the hashes its auth
-- needs (RFC vectors), trust, password, md5 and SCRAM-SHA-256 auth, TLS with
-- verification, parameters of every common type, errors with SQLSTATE,
-- streamed rows, COPY both ways (1 GiB into an HTTP response under 48 MB;
-- a slow HTTP reader stalls Postgres itself, for COPY and for rows),
-- LISTEN/NOTIFY, the pool, timeouts, a lost server, and fake servers that
-- misbehave (malformed and random messages: errors, never raised ones).
local rill = require "rill"
local core = require "rill.core"
local pg = require "rill.pg"
local helper = require "spec.helper"

local MB = 1024 * 1024

local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

describe("rill.core hashes", function()
  it("match the RFC vectors: SHA-256, MD5, HMAC-SHA-256, PBKDF2-HMAC-SHA-256, base64",
    function()
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        hex(core.sha256("abc")))
      assert.equal("d41d8cd98f00b204e9800998ecf8427e", hex(core.md5("")))
      assert.equal("900150983cd24fb0d6963f7d28e17f72", hex(core.md5("abc")))
      -- RFC 4231 test case 2
      assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
        hex(core.hmac_sha256("Jefe", "what do ya want for nothing?")))
      -- RFC 7914 11 (PBKDF2-HMAC-SHA256), and the RFC 6070 inputs with SHA-256
      assert.equal("55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc" ..
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783",
        hex(core.pbkdf2_sha256("passwd", "salt", 1, 64)))
      assert.equal("120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b",
        hex(core.pbkdf2_sha256("password", "salt", 1)))
      assert.equal("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a",
        hex(core.pbkdf2_sha256("password", "salt", 4096)))
      assert.has_error(function() core.pbkdf2_sha256("p", "s", 0) end)
      assert.equal("Zm9vYmFy", core.base64_encode("foobar"))
      assert.equal("Zm9vYg==", core.base64_encode("foob"))
      assert.equal("foob", core.base64_decode("Zm9vYg=="))
      assert.is_nil(core.base64_decode("Zm9v*g=="))
    end)

  it("compute RFC 7677's SCRAM-SHA-256 exchange", function()
    local first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
    local server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0," ..
      "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    local final_bare = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
    local proof, server_sig = pg._scram("pencil", core.base64_decode("W22ZaJ0SNY7soEsUEjb6gQ=="),
      4096, first_bare .. "," .. server_first .. "," .. final_bare)
    assert.equal("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", core.base64_encode(proof))
    assert.equal("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", core.base64_encode(server_sig))
  end)
end)

describe("rill.pg", function()
  local pgs, why, certs
  local HBA = [[
local all all trust
hostssl all tlsuser 127.0.0.1/32 scram-sha-256
host all tlsuser 127.0.0.1/32 reject
host all postgres 127.0.0.1/32 trust
host all md5user 127.0.0.1/32 md5
host all scramuser 127.0.0.1/32 scram-sha-256
host all pwuser 127.0.0.1/32 password
]]

  setup(function()
    certs = helper.certs()
    pgs, why = helper.postgres{hba = HBA,
      conf = "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n",
      files = {["server.crt"] = certs .. "/a.test.crt", ["server.key"] = certs .. "/a.test.key"}}
    if pgs then
      local code, _, err = pgs.psql([[
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5 pass';
SET password_encryption = 'scram-sha-256';
CREATE ROLE scramuser LOGIN PASSWORD 'scram pass';
CREATE ROLE pwuser LOGIN PASSWORD 'plain pass';
CREATE ROLE tlsuser LOGIN PASSWORD 'tls pass';
]])
      assert(code == 0, err)
    end
  end)
  teardown(function() if pgs then pgs.stop() end end)

  local function connect(opts)
    local o = {port = pgs.port, user = "postgres", timeout = 20000}
    for k, v in pairs(opts or {}) do o[k] = v end
    return pg.connect(o)
  end

  local function need()
    if not pgs then pending(why) return false end
    return true
  end

  it("authenticates with trust, password, md5 and SCRAM-SHA-256, and says why it cannot",
    function()
      if not need() then return end
      for _, case in ipairs{{"postgres", nil}, {"pwuser", "plain pass"}, {"md5user", "md5 pass"},
        {"scramuser", "scram pass"}} do
        local db, err = connect{user = case[1], password = case[2], database = "postgres",
          pool = false}
        assert.is_truthy(db, case[1] .. ": " .. tostring(err))
        local rows = assert(db:query("SELECT current_user AS u"))
        assert.equal(case[1], rows[1].u)
        db:close()
      end
      local db, err, f = connect{user = "scramuser", password = "wrong", database = "postgres"}
      assert.is_nil(db)
      assert.matches("^FATAL 28P01: password authentication failed", err)
      assert.equal("28P01", f.code)
      db, err = connect{user = "md5user", password = "wrong", database = "postgres"}
      assert.matches("^FATAL 28P01", err)
      db, err = connect{user = "scramuser", database = "postgres"}
      assert.equal("auth: the server asks for a password", err)
      -- tlsuser may only come over TLS
      db, err = connect{user = "tlsuser", password = "tls pass", database = "postgres"}
      assert.matches("^FATAL 28000", err)
    end)

  it("speaks TLS with the certificate verified, and fails on a wrong name or a refusal",
    function()
      if not need() then return end
      local db = assert(connect{user = "tlsuser", password = "tls pass", database = "postgres",
        tls = {ca = certs .. "/ca.crt", server_name = "a.test"}, pool = false})
      local rows = assert(db:query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"))
      assert.is_true(rows[1].ssl)
      db:close()
      local _, err = connect{user = "tlsuser", password = "tls pass", database = "postgres",
        tls = {ca = certs .. "/ca.crt", server_name = "b.test"}}
      assert.matches("^tls: ", err)
      -- the system's CAs do not know the test CA
      _, err = connect{user = "tlsuser", password = "tls pass", database = "postgres", tls = true}
      assert.matches("^tls: ", err)
      -- a server that answers N to the SSLRequest: an error, not plain text
      local fake = assert(rill.listen{port = 0, handler = function(sock)
        sock:settimeout(5000)
        if sock:read(8) then sock:write("N") end
        sock:read_some()
      end})
      _, err = pg.connect{port = fake:port(), tls = true, timeout = 5000}
      fake:close()
      assert.equal("tls: the server does not accept TLS", err)
    end)

  it("sends parameters of every common type apart from the SQL and decodes the results",
    function()
      if not need() then return end
      local db = assert(connect())
      local rows, info = assert(db:query([[SELECT $1::int AS i, $2::bigint AS big,
        $3::bigint AS small8, $4::text AS t, $5::bool AS b, $6::float8 AS f, $7::numeric AS n,
        $8::bytea AS raw, $9::json AS j, $10::int AS nothing, $11::text AS nul2, $12::int2 AS s,
        $13::float8 AS inf, $14::timestamptz AS ts, $15::bool AS no]],
        42, "9007199254740993", 12345678901, "héllo", true, 1.5, "3.14159265358979323846",
        pg.bytea("\0\1\255x"), '{"a": [1, 2]}', nil, pg.null, -7, math.huge,
        "2024-01-02 03:04:05+00", false))
      assert.equal("SELECT", info.command)
      assert.equal(1, info.count)
      local r = rows[1]
      assert.equal(42, r.i)
      assert.equal("9007199254740993", r.big) -- not exact as a number: a string
      assert.equal(12345678901, r.small8)
      assert.equal("héllo", r.t)
      assert.is_true(r.b)
      assert.is_false(r.no)
      assert.equal(1.5, r.f)
      assert.equal("3.14159265358979323846", r.n)
      assert.equal("\0\1\255x", r.raw)
      assert.equal('{"a": [1, 2]}', r.j)
      assert.is_nil(r.nothing)
      assert.is_nil(r.nul2)
      assert.equal(-7, r.s)
      assert.equal(math.huge, r.inf)
      assert.matches("^2024%-01%-02 03:04:05", r.ts)
      assert.equal("i", rows.columns[1].name)
      assert.equal(23, rows.columns[1].type)
      assert.equal(15, #rows.columns)

      -- an injection attempt stays data
      assert(db:query("CREATE TEMP TABLE people (id serial PRIMARY KEY, name text UNIQUE)"))
      local evil = "x'); DROP TABLE people; --"
      rows, info = assert(db:query("INSERT INTO people (name) VALUES ($1), ($2) RETURNING id",
        evil, "bob"))
      assert.equal("INSERT", info.command)
      assert.equal(2, info.count)
      assert.equal(2, #rows)
      rows = assert(db:query("SELECT name FROM people WHERE name = $1", evil))
      assert.equal(evil, rows[1].name)
      -- the same SQL again (a prepared statement now), other parameters
      rows = assert(db:query("SELECT name FROM people WHERE name = $1", "bob"))
      assert.equal("bob", rows[1].name)
      -- JSON decoded when asked
      local jdb = assert(connect{decode_json = true, pool = false})
      rows = assert(jdb:query("SELECT '{\"a\": [1, 2]}'::jsonb AS j"))
      assert.same({a = {1, 2}}, rows[1].j)
      jdb:close()
      -- misuse raises at the caller
      assert.has_error(function() db:query("SELECT $1", {}) end)
      assert.has_error(function() db:query(42) end)
      db:release()
    end)

  it("returns errors with their SQLSTATE and stays usable; transactions commit or roll back",
    function()
      if not need() then return end
      local db = assert(connect{pool = false})
      assert(db:query("CREATE TEMP TABLE u (k int PRIMARY KEY)"))
      assert(db:query("INSERT INTO u VALUES ($1)", 1))
      local rows, err, f = db:query("INSERT INTO u VALUES ($1)", 1)
      assert.is_nil(rows)
      assert.matches("^ERROR 23505: duplicate key value violates unique constraint", err)
      assert.equal("23505", f.code)
      assert.equal("ERROR", f.severity)
      assert.equal("u_pkey", f.constraint)
      assert.matches("already exists", f.detail)
      -- a syntax error, then the connection goes on
      rows, err, f = db:query("SELEC 1")
      assert.equal("42601", f.code)
      assert.equal(2, assert(db:query("SELECT 1 + 1 AS two"))[1].two)
      -- an error inside a transaction aborts it until ROLLBACK
      assert(db:query("BEGIN"))
      assert.is_nil(db:query("INSERT INTO u VALUES (1)"))
      rows, err, f = db:query("SELECT 1")
      assert.equal("25P02", f.code)
      assert(db:query("ROLLBACK"))
      -- the helper
      local ok, e = db:transaction(function(c)
        assert(c:query("INSERT INTO u VALUES (2)"))
        error("changed my mind")
      end)
      assert.is_nil(ok)
      assert.matches("changed my mind", e)
      assert.equal(1, #assert(db:query("SELECT k FROM u")))
      ok, e = db:transaction(function(c)
        assert(c:query("INSERT INTO u VALUES (2)"))
        return "done"
      end)
      assert.equal("done", ok)
      assert.equal(2, #assert(db:query("SELECT k FROM u")))
      ok, e = db:transaction(function(c) return c:query("INSERT INTO u VALUES (2)") end)
      assert.is_nil(ok)
      assert.matches("^ERROR 23505", e)
      assert.equal("I", db.status)
      -- several statements, the simple protocol
      rows = assert(db:simple("SELECT 1 AS a; SELECT 'two' AS b"))
      assert.equal("two", rows[1].b)
      db:close()
      assert.equal("closed", select(2, db:query("SELECT 1")))
    end)

  it("streams a large result row by row, and a loop broken off leaves the connection usable",
    function()
      if not need() then return end
      local db = assert(connect{pool = false})
      local n, sum = 0, 0
      for row in db:rows("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, $1) g",
        200000) do
        n = n + 1
        sum = sum + row.g
      end
      assert.equal(200000, n)
      assert.equal(200000 * 200001 / 2, sum)
      for row in db:rows("SELECT g FROM generate_series(1, 100000) g") do
        if row.g == 10 then break end
      end
      assert.equal(7, assert(db:query("SELECT 3 + 4 AS x"))[1].x)
      local ok, e = pcall(function() for _ in db:rows("SELECT 1/0") do end end)
      assert.is_false(ok)
      assert.matches("ERROR 22012: division by zero", e)
      assert.equal(1, assert(db:query("SELECT 1 AS x"))[1].x)
      db:close()
    end)

  it("copies in and out as streams", function()
    if not need() then return end
    local db = assert(connect{pool = false})
    assert(db:query("CREATE TEMP TABLE c (id int, name text)"))
    local cin = assert(db:copy_in("COPY c FROM STDIN"))
    for i = 1, 1000 do assert(cin:write(i, "\tname ", i, "\n")) end
    assert.equal(1000, cin:finish())
    assert.equal(1000, assert(db:query("SELECT count(*) AS n FROM c"))[1].n)
    -- an abort leaves nothing
    cin = assert(db:copy_in("COPY c FROM STDIN"))
    cin:write("5000\tx\n")
    assert.is_true(cin:abort("no"))
    assert.equal(1000, assert(db:query("SELECT count(*) AS n FROM c"))[1].n)
    -- bad data: the error at finish, then the connection goes on
    cin = assert(db:copy_in("COPY c FROM STDIN"))
    cin:write("not a number\tx\n")
    local n, err, f = cin:finish()
    assert.is_nil(n)
    assert.equal("22P02", f.code)
    local out = assert(db:copy_out("COPY (SELECT id, name FROM c WHERE id <= 3 ORDER BY id) TO STDOUT"))
    assert.equal("1\tname 1\n2\tname 2\n3\tname 3\n", out:read_all())
    assert.is_nil(out:read_some())
    out = assert(db:copy_out("COPY c TO STDOUT (FORMAT csv)"))
    assert.equal("1,name 1\n", out:read(9))
    local rest = assert(out:read_all(1e6))
    assert.equal(1000, select(2, rest:gsub("\n", "")) + 1)
    assert.is_nil(db:copy_out("COPY nothing TO STDOUT"))
    assert.equal("x", assert(db:query("SELECT 'x' AS v"))[1].v)
    db:close()
  end)

  it("delivers NOTIFY through a notification stream", function()
    if not need() then return end
    local listener = assert(connect{pool = false})
    local sender = assert(connect{pool = false})
    assert.is_true(listener:listen("chat room"))
    local ns = listener:notifications()
    local none, why2 = ns:read(50)
    assert.is_nil(none)
    assert.equal("timeout", why2)
    assert(sender:query("SELECT pg_notify($1, $2)", "chat room", "hello"))
    assert(sender:query("NOTIFY \"chat room\", 'again'"))
    local n = assert(ns:read(10000))
    assert.equal("chat room", n.channel)
    assert.equal("hello", n.payload)
    assert.equal(sender.pid, n.pid)
    assert.equal("again", assert(ns:read(10000)).payload)
    -- a notification that comes during a query waits for the stream
    assert(sender:query("NOTIFY \"chat room\", 'third'"))
    assert(listener:query("SELECT pg_sleep(0.1)"))
    assert.equal("third", assert(ns:read(10000)).payload)
    listener:close()
    assert.equal("closed", select(2, ns:read(100)))
    sender:close()
  end)

  it("reuses released connections from the pool, and only clean ones", function()
    if not need() then return end
    local a = assert(connect())
    local pid = a.pid
    a:release()
    local b = assert(connect())
    assert.equal(pid, b.pid)
    assert(b:query("BEGIN"))
    b:release() -- in a transaction: closed, not pooled
    local c = assert(connect())
    assert.not_equal(pid, c.pid)
    local d = assert(connect({user = "postgres", database = "template1"}))
    assert.not_equal(c.pid, d.pid)
    c:release()
    d:release()
    -- another database, another key
    local e = assert(connect())
    assert.equal(c.pid, e.pid)
    e:release()
  end)

  it("times out a slow query and closes that connection; a killed backend gives closed",
    function()
      if not need() then return end
      local db = assert(connect{timeout = 200})
      local rows, err = db:query("SELECT pg_sleep(10)")
      assert.is_nil(rows)
      assert.equal("timeout", err)
      assert.equal("closed", select(2, db:query("SELECT 1")))
      db:release() -- a closed connection is not pooled
      -- and the server was asked to cancel it
      assert.is_true(helper.eventually(function()
        local _, out = pgs.psql("SELECT count(*) FROM pg_stat_activity WHERE query = " ..
          "'SELECT pg_sleep(10)' AND state = 'active'")
        return out == "0\n"
      end))
      -- a message past max_message
      local small = assert(connect{max_message = 1000, pool = false})
      rows, err = small:query("SELECT repeat('x', 5000) AS big")
      assert.is_nil(rows)
      assert.equal("too large", err)
      assert.is_true(small.closed)
      local victim = assert(connect{pool = false})
      local admin = assert(connect{pool = false})
      assert(admin:query("SELECT pg_terminate_backend($1)", victim.pid))
      rows, err = victim:query("SELECT 1")
      assert.is_nil(rows)
      assert.equal("closed", err)
      admin:close()
    end)

  -- A fake server: handler(sock, startup) after the startup message.
  local function fake(handler)
    local l = assert(rill.listen{port = 0, handler = function(sock)
      sock:settimeout(5000)
      local len = sock:read(4)
      if not len then return end
      local a, b, c, d = len:byte(1, 4)
      local startup = sock:read(a * 16777216 + b * 65536 + c * 256 + d - 4)
      handler(sock, startup)
    end})
    return l
  end
  local function be32(n) return string.char(0, 0, math.floor(n / 256) % 256, n % 256) end
  local function R(body) return "R" .. be32(#body + 4) .. body end

  it("waits no longer than its timeout, and refuses what it cannot check", function()
    if not need() then return end
    -- a server that says nothing
    local l = fake(function(sock) sock:read_some() end)
    local db, err = pg.connect{port = l:port(), timeout = 100, pool = false}
    assert.is_nil(db)
    assert.equal("timeout", err)
    l:close()
    -- GSSAPI
    l = fake(function(sock) sock:write(R(be32(7))) sock:read_some() end)
    db, err = pg.connect{port = l:port(), timeout = 5000, pool = false}
    assert.equal("auth: unsupported method GSSAPI", err)
    l:close()
    -- SCRAM from a server that does not know the password: its signature is wrong
    l = fake(function(sock)
      sock:write(R(be32(10) .. "SCRAM-SHA-256\0\0"))
      assert(sock:read(1) == "p")
      local len = sock:read(4)
      local a, b, c, d = len:byte(1, 4)
      local first = sock:read(a * 16777216 + b * 65536 + c * 256 + d - 4)
      local cnonce = first:match("r=([^,]+)$")
      sock:write(R(be32(11) .. "r=" .. cnonce .. "srv,s=" .. core.base64_encode("salt") ..
        ",i=4096"))
      assert(sock:read(1) == "p")
      len = sock:read(4)
      a, b, c, d = len:byte(1, 4)
      sock:read(a * 16777216 + b * 65536 + c * 256 + d - 4)
      sock:write(R(be32(12) .. "v=" .. core.base64_encode(("x"):rep(32))) .. R(be32(0)))
      sock:read_some()
    end)
    db, err = pg.connect{port = l:port(), timeout = 5000, password = "pw", pool = false}
    assert.equal("auth: the server's SCRAM signature is wrong", err)
    l:close()
    -- a server that skips SCRAM's last step
    l = fake(function(sock)
      sock:write(R(be32(10) .. "SCRAM-SHA-256\0\0"))
      sock:read(1)
      local len = sock:read(4)
      local a, b, c, d = len:byte(1, 4)
      sock:read(a * 16777216 + b * 65536 + c * 256 + d - 4)
      sock:write(R(be32(0)))
      sock:read_some()
    end)
    db, err = pg.connect{port = l:port(), timeout = 5000, password = "pw", pool = false}
    assert.matches("^auth: ", err)
    l:close()
  end)

  it("closes with a protocol error on malformed messages, and goes on serving", function()
    if not need() then return end
    local function msg(t, body) return t .. string.char(0, 0, 0, #body + 4) .. body end
    local answers = {
      msg("D", "\0\1\0\0\0\50x"), -- a value longer than its message
      "Z\0\0\0\2", -- a length below 4
      msg("?", ""), -- an unknown message
    }
    for _, bad in ipairs(answers) do
      local l = fake(function(sock)
        sock:write(R(be32(0)) .. msg("Z", "I"))
        sock:read_some()
        sock:write(msg("1", "") .. msg("t", "\0\0") .. msg("T", "\0\1x\0" .. ("\0"):rep(6) ..
          "\0\0\0\25" .. ("\0"):rep(8)) .. msg("2", "") .. bad)
        sock:read_some()
      end)
      local db = assert(pg.connect{port = l:port(), timeout = 5000, pool = false})
      local rows, err = db:query("SELECT x")
      l:close()
      assert.is_nil(rows)
      assert.matches("^protocol error", err)
      assert.is_true(db.closed)
    end
    -- the real server is still served
    local db = assert(connect{pool = false})
    assert.equal(1, assert(db:query("SELECT 1 AS one"))[1].one)
    db:close()
  end)

  it("returns errors, never raises, whatever messages a server sends (random, seeded)", function()
    if not need() then return end
    math.randomseed(15)
    local TYPES = "123tTnDCIZsEANSdcHGKRv?"
    local function random_messages()
      local parts = {}
      for _ = 1, math.random(1, 6) do
        local i = math.random(#TYPES)
        local body = {}
        for k = 1, math.random(0, 24) do
          -- mostly small bytes, so that counts and lengths are often plausible
          body[k] = string.char(math.random() < 0.7 and math.random(0, 3) or math.random(0, 255))
        end
        body = table.concat(body)
        parts[#parts + 1] = TYPES:sub(i, i) .. be32(#body + 4) .. body
      end
      return table.concat(parts)
    end
    local script
    local l = fake(function(sock)
      sock:write(R(be32(0)) .. "Z" .. be32(5) .. "I")
      while sock:read_some() do
        sock:write(script)
        sock:close()
        return
      end
    end)
    for round = 1, 300 do
      script = random_messages()
      local db = assert(pg.connect{port = l:port(), timeout = 2000, pool = false})
      local call = round % 3 == 0 and "simple" or round % 3 == 1 and "query" or "copy_out"
      local ok, r1, r2 = pcall(db[call], db, "SELECT 1")
      assert(ok, ("round %d (%s) raised %s for %q"):format(round, call, tostring(r1), script))
      if call == "copy_out" and r1 then
        ok, r2 = pcall(r1.read_all, r1)
        assert(ok, ("round %d: cout:read_all raised %s for %q"):format(round, tostring(r2), script))
      end
      db:close()
    end
    l:close()
    -- and during the startup and authentication
    l = fake(function(sock)
      sock:write(script)
      sock:close()
    end)
    for round = 1, 300 do
      script = random_messages()
      local ok, err = pcall(pg.connect, {port = l:port(), timeout = 2000, pool = false,
        password = "pw"})
      assert(ok, ("round %d: connect raised %s for %q"):format(round, tostring(err), script))
      if ok and err then err:close() end
    end
    l:close()
  end)

  -- A rill server that sends COPY TO STDOUT into a response, chunk by chunk.
  local APP = [[
local pg = require "rill.pg"
return function(req, res)
  local db = assert(pg.connect{port = tonumber(os.getenv("PG_PORT")), timeout = 60000})
  if req.query.mode == "rows" then -- a result streamed row by row
    res:header("Content-Type", "text/plain")
    for row in db:rows("SELECT repeat('x', 1000) AS x FROM generate_series(1, $1)",
      tonumber(req.query.rows)) do
      if not res:write(row.x, "\n") then return db:close() end
    end
    return db:release()
  end
  local out = assert(db:copy_out(("COPY (SELECT repeat('x', 1000) FROM generate_series(1, %d)) TO STDOUT")
    :format(tonumber(req.query.rows))))
  res:header("Content-Type", "text/plain")
  while true do
    local chunk, err = out:read_some(65536)
    if not chunk then assert(not err, err) break end
    if not res:write(chunk) then out:close() return end
  end
  db:release()
end
]]

  local function serve_app()
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "wb"))
    f:write(APP)
    f:close()
    local srv = helper.start({"serve", path, "--listen", "127.0.0.1:0", "--workers", "1"},
      {PG_PORT = tostring(pgs.port)})
    return srv, path
  end

  it("sends 1 GiB of COPY TO STDOUT into an HTTP response under 48 MB", function()
    if not need() then return end
    local srv, path = serve_app()
    finally(function() srv.stop() os.remove(path) end)
    local rows = 1100000
    local code, out, err = helper.run({"curl", "-sS", "--max-time", "600", "-o", "/dev/null",
      "-w", "%{http_code} %{size_download}", helper.url(srv.port, "/?rows=" .. rows)},
      {timeout = 600000})
    assert.equal(0, code, err)
    assert.equal("200 " .. rows * 1001, out)
    assert.is_true(rows * 1001 > 1024 * MB)
    if not helper.sanitized then
      local _, peak = helper.rss(srv.pid)
      assert.is_true(peak < 48 * MB, ("server peak RSS %.1f MB"):format(peak / MB))
    end
    assert.equal(0, srv.stop())
  end)

  for _, mode in ipairs{"copy", "rows"} do
    it("slows the " .. mode .. " stream down to a slow HTTP reader (backpressure to Postgres)",
      function()
        if not need() then return end
        local srv, path = serve_app()
        finally(function() srv.stop() os.remove(path) end)
        local rows = 50000
        local s = helper.connect(srv.port)
        s:settimeout(30000)
        assert(s:write("GET /?mode=" .. mode .. "&rows=" .. rows ..
          " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
        assert.equal(200, helper.read_response_head(s))
        -- not reading: the Postgres backend waits to write to its client
        local like = mode == "copy" and "COPY (SELECT repeat%" or "SELECT repeat%"
        assert.is_true(helper.eventually(function()
          local _, o = pgs.psql("SELECT wait_event FROM pg_stat_activity WHERE query LIKE '" ..
            like .. "'")
          return o == "ClientWrite\n"
        end))
        local _, held = helper.rss(srv.pid)
        -- now read it all: every byte arrives
        local body = helper.read_chunked(s)
        s:close()
        assert.equal(rows * 1001, #body)
        if not helper.sanitized then
          assert.is_true(held < 48 * MB, ("server RSS %.1f MB while stalled"):format(held / MB))
        end
      end)
  end
end)
