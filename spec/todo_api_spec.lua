-- examples/todo_api.lua through rill.test.client: the CRUD round trip,
-- sessions kept apart, CORS, validation and unknown ids.
local rill = require "rill"

local function load_app()
  local handler, err = require("rill.app").load("examples/todo_api.lua")
  return assert(handler, err)
end

describe("examples/todo_api.lua", function()
  local c
  before_each(function() c = assert(rill.test.client(load_app())) end)
  after_each(function() c:close() end)

  it("creates, lists, reads, updates and deletes todos", function()
    local res = assert(c:get("/todos"))
    assert.equal(200, res.status)
    assert.equal("[]", res.body)
    assert.is_nil(c.cookies.todo_session) -- no session until something is stored

    res = assert(c:post("/todos", {json = {title = "milk"}}))
    assert.equal(201, res.status)
    assert.is_string(c.cookies.todo_session)
    local milk = res:json()
    assert.same({id = milk.id, title = "milk", done = false}, milk)
    assert.equal("/todos/" .. milk.id, res.headers.location)
    local bread = assert(c:post("/todos", {json = {title = "bread", done = true}})):json()

    assert.same({milk, bread}, assert(c:get("/todos")):json())
    assert.same(milk, assert(c:get("/todos/" .. milk.id)):json())

    res = assert(c:patch("/todos/" .. milk.id, {json = {done = true}}))
    assert.equal(200, res.status)
    assert.same({id = milk.id, title = "milk", done = true}, res:json())
    assert.is_true(assert(c:get("/todos/" .. milk.id)):json().done)

    res = assert(c:delete("/todos/" .. milk.id))
    assert.equal(204, res.status)
    assert.equal("", res.body)
    assert.same({bread}, assert(c:get("/todos")):json())
    assert.equal(404, assert(c:get("/todos/" .. milk.id)).status)
  end)

  it("keeps sessions apart", function()
    -- one app, two browsers (each client has its own cookie jar)
    local app = load_app()
    c:close()
    c = assert(rill.test.client(app))
    local other = assert(rill.test.client(app))
    local mine = assert(c:post("/todos", {json = {title = "mine"}})):json()
    assert(other:post("/todos", {json = {title = "theirs"}}))
    assert.not_equal(c.cookies.todo_session, other.cookies.todo_session)
    local list = assert(c:get("/todos")):json()
    assert.equal(1, #list)
    assert.equal("mine", list[1].title)
    list = assert(other:get("/todos")):json()
    assert.equal(1, #list)
    assert.equal("theirs", list[1].title)
    assert.equal(404, assert(other:get("/todos/" .. mine.id)).status)
    assert.equal(404, assert(other:delete("/todos/" .. mine.id)).status)
    assert.equal(200, assert(c:get("/todos/" .. mine.id)).status)
    -- a forged session cookie is a new session, not someone else's
    local forged = assert(rill.test.client(app, {cookies = false}))
    local cookie = {todo_session = c.cookies.todo_session:gsub("%.", "x.", 1)}
    local res = assert(forged:get("/todos", {cookies = cookie}))
    assert.equal("[]", res.body)
    assert.is_nil(res.headers["set-cookie"])
    res = assert(forged:post("/todos", {json = {title = "forged"}, cookies = cookie}))
    assert.equal(201, res.status)
    assert.matches("^todo_session=", res.headers["set-cookie"])
    assert.equal(1, #assert(c:get("/todos")):json())
    other:close()
    forged:close()
  end)

  it("answers a CORS preflight", function()
    local res = assert(c:options("/todos", {headers = {Origin = "https://app.example",
      ["Access-Control-Request-Method"] = "POST",
      ["Access-Control-Request-Headers"] = "content-type"}}))
    assert.equal(204, res.status)
    assert.equal("*", res.headers["access-control-allow-origin"])
    assert.matches("POST", res.headers["access-control-allow-methods"])
    assert.equal("content-type", res.headers["access-control-allow-headers"]:lower())
    res = assert(c:get("/todos", {headers = {Origin = "https://app.example"}}))
    assert.equal("*", res.headers["access-control-allow-origin"])
  end)

  it("answers 400 with a JSON error for bad input", function()
    local res = assert(c:post("/todos", {body = "{not json",
      headers = {["Content-Type"] = "application/json"}}))
    assert.equal(400, res.status)
    assert.equal("application/json", res.headers["content-type"])
    assert.is_string(res:json().error)
    for _, body in ipairs({{}, {title = ""}, {title = 5}, {title = "x", done = "yes"},
      {title = "x", owner = "me"}, {"a list"}, {title = ("x"):rep(201)}}) do
      res = assert(c:post("/todos", {json = body}))
      assert.equal(400, res.status, rill.json.encode(body))
      assert.is_string(res:json().error)
    end
    local todo = assert(c:post("/todos", {json = {title = "ok"}})):json()
    res = assert(c:patch("/todos/" .. todo.id, {json = {done = 1}}))
    assert.equal(400, res.status)
    assert.same({error = "done must be true or false"}, res:json())
    assert.is_false(assert(c:get("/todos/" .. todo.id)):json().done)
    res = assert(c:post("/todos", {body = "title=x",
      headers = {["Content-Type"] = "application/x-www-form-urlencoded"}}))
    assert.equal(415, res.status)
    -- nothing bad was stored
    assert.equal(1, #assert(c:get("/todos")):json())
  end)

  it("answers 404 with a JSON error for an unknown id or path", function()
    for _, m in ipairs({"get", "delete"}) do
      local res = assert(c[m](c, "/todos/12345"))
      assert.equal(404, res.status)
      assert.same({error = "no such todo"}, res:json())
    end
    local res = assert(c:patch("/todos/12345", {json = {done = true}}))
    assert.equal(404, res.status)
    res = assert(c:get("/nothing"))
    assert.equal(404, res.status)
    assert.same({error = "not found"}, res:json())
  end)
end)
