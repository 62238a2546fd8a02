-- postgres bench, rill: GET /run?q=add|lookup&n=N&c=C runs N parameterized
-- queries over C connections (C tasks, each its own connection from the
-- pool), then answers "ok N". The harness measures this process's CPU.
--   PG_PORT=5432 rill serve app.lua
local rill = require "rill"
local pg = require "rill.pg"

local PORT = tonumber(os.getenv("PG_PORT"))
local QUERIES = {
  add = {"SELECT $1::int + 1 AS v", function(i) return i end},
  lookup = {"SELECT id, name FROM items WHERE id = $1", function(i) return i % 1000 + 1 end},
}

local function worker(sql, arg, from, to)
  local db = assert(pg.connect{port = PORT, user = "postgres"})
  for i = from, to do
    local rows = assert(db:query(sql, arg(i)))
    assert(rows[1], "no row")
  end
  db:release()
end

return function(req, res)
  local q = QUERIES[req.query.q or "add"]
  local n, c = tonumber(req.query.n) or 1000, tonumber(req.query.c) or 16
  local tasks, per = {}, math.ceil(n / c)
  for k = 1, c do
    tasks[k] = rill.spawn(worker, q[1], q[2], (k - 1) * per + 1, math.min(n, k * per))
  end
  for k = 1, c do
    local ok, err = rill.wait(tasks[k])
    if not ok then return res:status(500):send(tostring(err)) end
  end
  res:send("ok " .. n)
end
