-- A JSON CRUD API of todos, each browser session with its own list.
--
--   TODO_SECRET=$(openssl rand -base64 32) rill serve examples/todo_api.lua --workers 1
--   curl -c jar -b jar --json '{"title": "milk"}' http://127.0.0.1:8080/todos
--   curl -c jar -b jar http://127.0.0.1:8080/todos
--
-- GET /todos, POST /todos {title, done?}, GET/PATCH/DELETE /todos/:id.
-- The session is a signed cookie (rill.cookie.sign with TODO_SECRET; a dev
-- secret without it), set with the session's first todo. Errors are JSON
-- {"error": "..."}: 400 for a body that is not a todo, 404 for an unknown
-- id, 415 for a body that is not JSON. CORS for TODO_ORIGINS
-- (comma-separated; default any origin, without credentials), one
-- access-log line per request to stderr.
-- Todos live in this worker's memory: gone at a restart, and with several
-- workers each has its own, so a session would see a different list on each
-- (hence --workers 1; a store shared by workers is another matter).
local rill = require "rill"
local core = require "rill.core"
local mw = rill.middleware

local SECRET = os.getenv("TODO_SECRET") or "dev secret: set TODO_SECRET in production"
local COOKIE = "todo_session"
local MAX_TITLE = 200 -- bytes
local MAX_TODOS = 1000 -- per session
local MAX_SESSIONS = 10000

local app = rill.router()
-- State that a reload hands on (rill serve --watch): the sessions' todos.
app.state = {sessions = {}, nsessions = 0, next_id = 1}
function app.on_reload(old) app.state = old or app.state end

app:use(mw.logger())
local origins = os.getenv("TODO_ORIGINS")
if origins then
  local list = {}
  for o in origins:gmatch("[^,%s]+") do list[#list + 1] = o end
  app:use(mw.cors{origins = list, credentials = true})
else
  app:use(mw.cors())
end

-- A request's session todos ({list = {...}, by_id = {}}): those of its
-- valid session cookie, else none (NONE, never written: only POST adds, and
-- it asks for a session). create: make a session (and set its cookie) if
-- the request has none; past MAX_SESSIONS new ones are refused with 503.
-- Sessions are created only for a client that stores something, so
-- requests without a cookie cost no memory; they never expire here (a real
-- app keeps them in a store with an expiry).
local NONE = {list = {}, by_id = {}}

local function session(req, res, create)
  local state = app.state
  local sid = rill.cookie.verify(req.cookies[COOKIE], SECRET)
  local todos = sid and state.sessions[sid]
  if todos or not create then return todos or NONE end
  if state.nsessions >= MAX_SESSIONS then rill.http.abort(503, "too many sessions") end
  -- 16 bytes from the kernel's generator, as 32 hex digits
  sid = core.random(16):gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  todos = {list = {}, by_id = {}}
  state.sessions[sid] = todos
  state.nsessions = state.nsessions + 1
  res:cookie(COOKIE, rill.cookie.sign(sid, SECRET), {http_only = true, same_site = "Lax"})
  return todos
end

local function bad(res, message)
  return res:json({error = message}, 400)
end

-- The fields of a todo a client may send: title (1..MAX_TITLE bytes of
-- text), done (boolean). Returns them, or nil and what is wrong.
local function fields(body, partial)
  if type(body) ~= "table" or body[1] ~= nil then return nil, "the body must be a JSON object" end
  for k in pairs(body) do
    if k ~= "title" and k ~= "done" then return nil, "unknown field " .. tostring(k) end
  end
  local title, done = body.title, body.done
  if title ~= nil or not partial then
    if type(title) ~= "string" or title:match("^%s*$") then
      return nil, "title must be a non-empty string"
    end
    if #title > MAX_TITLE then return nil, "title is longer than " .. MAX_TITLE .. " bytes" end
  end
  if done ~= nil and type(done) ~= "boolean" then return nil, "done must be true or false" end
  return {title = title, done = done}
end

local function find(req, res)
  local todo = session(req, res).by_id[req.params.id]
  if not todo then rill.http.abort(404, "no such todo") end
  return todo
end

app:get("/todos", function(req, res)
  local list = session(req, res).list
  res:json(#list > 0 and list or rill.json.empty_array)
end)

app:post("/todos", {json = true}, function(req, res)
  local f, err = fields(req:json(), false)
  if not f then return bad(res, err) end
  local todos = session(req, res, true)
  if #todos.list >= MAX_TODOS then return bad(res, "too many todos") end
  local state = app.state
  local todo = {id = tostring(state.next_id), title = f.title, done = f.done or false}
  state.next_id = state.next_id + 1
  todos.list[#todos.list + 1] = todo
  todos.by_id[todo.id] = todo
  res:header("Location", "/todos/" .. todo.id)
  res:json(todo, 201)
end)

app:get("/todos/:id", function(req, res)
  res:json(find(req, res))
end)

app:patch("/todos/:id", {json = true}, function(req, res)
  local todo = find(req, res)
  local f, err = fields(req:json(), true)
  if not f then return bad(res, err) end
  if f.title ~= nil then todo.title = f.title end
  if f.done ~= nil then todo.done = f.done end
  res:json(todo)
end)

app:delete("/todos/:id", function(req, res)
  local todo = find(req, res)
  local todos = session(req, res)
  todos.by_id[todo.id] = nil
  for i, t in ipairs(todos.list) do
    if t == todo then
      table.remove(todos.list, i)
      break
    end
  end
  res:status(204):send()
end)

-- Errors as JSON: 404 for an unknown id (rill.http.abort), 500 otherwise.
app:on_error(function(err, req, res)
  local status = type(err) == "table" and err.status or 500
  local message = type(err) == "table" and err.message or "internal error"
  res:json({error = message}, status)
end)
app:not_found(function(req, res) res:json({error = "not found"}, 404) end)

return app
