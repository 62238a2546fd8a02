-- Hooks (rill.hooks, the router's on_error / not_found / method_not_allowed,
-- res:on_finish), errors after a complete response, and res:redirect.
-- Driven by curl and raw sockets against servers in this process, and by a
-- child `rill serve` where the log is what is checked.
local rill = require "rill"
local helper = require "spec.helper"

local url = helper.url

local eventually = helper.eventually

describe("hooks", function()
  local l
  after_each(function()
    if l then l:close() end
    l = nil
  end)

  describe("on_error", function()
    it("answers for a handler that raised, and on_finish still runs", function()
      local app = rill.router()
      local finished = {}
      app:use(function(req, res, next)
        res:on_finish(function(status, bytes, ms)
          finished[#finished + 1] = {status = status, bytes = bytes, ms = ms}
        end)
        res:header("X-Trace", "kept")
        return next()
      end)
      local seen
      app:on_error(function(err, req, res)
        seen = {err = err, path = req.path, res = res ~= nil}
        res:status(503):header("Content-Type", "application/json")
        res:send('{"error":"sorry"}')
      end)
      app:get("/boom", function() error("handler failed on purpose") end)
      local port
      l, port = helper.listen(app)
      local status, headers, body = helper.fetch(url(port, "/boom"))
      assert.equal(503, status)
      assert.equal('{"error":"sorry"}', body)
      assert.equal("application/json", headers["content-type"])
      assert.equal("kept", headers["x-trace"])
      assert.matches("hooks_spec%.lua:%d+: handler failed on purpose", seen.err)
      assert.equal("/boom", seen.path)
      assert.is_true(eventually(function() return #finished == 1 end))
      assert.same({status = 503, bytes = #'{"error":"sorry"}'},
        {status = finished[1].status, bytes = finished[1].bytes})
      -- the connection goes on: a second request on it is answered
      local s = helper.connect(port)
      s:write("GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(503, (helper.read_response(s)))
      assert.equal(503, (helper.read_response(s)))
      s:close()
    end)

    it("by default: 500 for an error, the status and message of an error object", function()
      local app = rill.router()
      app:use(function(req, res, next)
        res:header("X-Kept", "yes")
        return next()
      end)
      app:get("/plain", function(req, res)
        res:header("Content-Type", "application/json")
        error("a bug on purpose")
      end)
      app:get("/object", function() error({status = 404, message = "no such todo"}) end)
      app:get("/bare", function() error({status = 503}) end)
      app:get("/abort", function()
        rill.http.abort(409, "name taken", {["Retry-After"] = "5"})
      end)
      app:get("/odd", function() error({status = 200, message = "not an error status"}) end)
      app:get("/table", function() error({}) end)
      app:get("/badheader", function(req, res)
        res:header("X-Bad", "a\r\nInjected: yes")
        res:send("never")
      end)
      local port
      l, port = helper.listen(app)

      local status, headers, body = helper.fetch(url(port, "/plain"))
      assert.equal(500, status)
      assert.equal("Internal Server Error\n", body)
      assert.equal("text/plain; charset=utf-8", headers["content-type"])
      assert.equal("yes", headers["x-kept"])

      status, headers, body = helper.fetch(url(port, "/object"))
      assert.equal(404, status)
      assert.equal("no such todo\n", body)
      assert.equal("yes", headers["x-kept"])

      status, _, body = helper.fetch(url(port, "/bare"))
      assert.equal(503, status)
      assert.equal("Service Unavailable\n", body)

      status, headers, body = helper.fetch(url(port, "/abort"))
      assert.equal(409, status)
      assert.equal("name taken\n", body)
      assert.equal("5", headers["retry-after"])

      status, _, body = helper.fetch(url(port, "/odd"))
      assert.equal(500, status)
      assert.equal("Internal Server Error\n", body)
      status = helper.fetch(url(port, "/table"))
      assert.equal(500, status)
      -- a response that could not start (a header with CR LF) is answered
      -- 500, without the headers the handler set
      status, headers, body = helper.fetch(url(port, "/badheader"))
      assert.same({500, "Internal Server Error\n"}, {status, body})
      assert.is_nil(headers.injected)
      assert.is_nil(headers["x-kept"])
    end)

    it("gives on_error the error object as raised", function()
      local app = rill.router()
      local got
      app:on_error(function(err, req, res)
        got = err
        res:status(err.status):send("custom " .. err.message)
      end)
      app:get("/", function() rill.http.abort(418, "short and stout") end)
      local port
      l, port = helper.listen(app)
      local status, _, body = helper.fetch(url(port, "/"))
      assert.equal(418, status)
      assert.equal("custom short and stout", body)
      assert.equal(418, got.status)
      assert.equal("418 short and stout", tostring(got))
    end)

    it("falls back to the default answer when on_error raises or does not answer", function()
      local app = rill.router()
      app:on_error(function(err, req, res)
        if req.path == "/raises" then error("on_error failed on purpose") end
        -- /silent: logs nothing, answers nothing
      end)
      app:get("/raises", function() rill.http.abort(404) end)
      app:get("/silent", function() rill.http.abort(403, "go away") end)
      local port
      l, port = helper.listen(app)
      local status, _, body = helper.fetch(url(port, "/raises"))
      assert.equal(500, status)
      assert.equal("Internal Server Error\n", body)
      status, _, body = helper.fetch(url(port, "/silent"))
      assert.equal(403, status)
      assert.equal("go away\n", body)
    end)

    it("is not asked once the response has started: the connection is cut, on_finish runs",
      function()
        local app = rill.router()
        local called, finished = false, nil
        app:on_error(function() called = true end)
        app:get("/", function(req, res)
          res:on_finish(function(status, bytes) finished = {status, bytes} end)
          res:write("partial")
          rill.sleep(10)
          error("failed mid-response on purpose")
        end)
        local port
        l, port = helper.listen(app)
        local raw = helper.raw(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert.matches("7\r\npartial\r\n", raw)
        assert.not_matches("0\r\n\r\n$", raw) -- no last chunk: the client sees it cut
        assert.is_true(eventually(function() return finished ~= nil end))
        assert.same({200, 7}, finished)
        assert.is_false(called)
      end)

    it("refuses what is not a function", function()
      local app = rill.router()
      local ok, err = pcall(app.on_error, app, "nope")
      assert.is_false(ok)
      assert.matches("app:on_error: fn must be a function", err)
      ok, err = pcall(rill.http.abort, 200)
      assert.is_false(ok)
      assert.matches("rill.http.abort: status must be an integer 400%-599, got 200", err)
    end)
  end)

  describe("not_found and method_not_allowed", function()
    it("give the 404 and 405 bodies, the status and Allow set; middleware runs first", function()
      local app = rill.router()
      local ran = 0
      app:use(function(req, res, next)
        ran = ran + 1
        return next()
      end)
      app:get("/thing", function(req, res) res:send("thing") end)
      app:post("/thing", function(req, res) res:send("posted") end)
      app:not_found(function(req, res)
        res:header("Content-Type", "text/html")
        res:send("<h1>nothing at " .. req.path .. "</h1>")
      end)
      app:method_not_allowed(function(req, res)
        res:send(req.method .. " is not one of " .. res:header("Allow"))
      end)
      local port
      l, port = helper.listen(app)
      local status, headers, body = helper.fetch(url(port, "/nope"))
      assert.equal(404, status)
      assert.equal("<h1>nothing at /nope</h1>", body)
      assert.equal("text/html", headers["content-type"])
      status, headers, body = helper.fetch("-X", "DELETE", url(port, "/thing"))
      assert.equal(405, status)
      assert.equal("GET, HEAD, POST", headers.allow)
      assert.equal("DELETE is not one of GET, HEAD, POST", body)
      assert.equal(2, ran)
    end)

    it("keep today's answers when not set", function()
      local app = rill.router()
      app:get("/thing", function(req, res) res:send("thing") end)
      local port
      l, port = helper.listen(app)
      local status, _, body = helper.fetch(url(port, "/nope"))
      assert.same({404, "Not Found\n"}, {status, body})
      local headers
      status, headers, body = helper.fetch("-X", "PUT", url(port, "/thing"))
      assert.same({405, "Method Not Allowed\n", "GET, HEAD"}, {status, body, headers.allow})
    end)
  end)

  describe("res:on_finish", function()
    local function serve(handler)
      local calls = {}
      local port
      l, port = helper.listen(function(req, res)
        res:on_finish(function(status, bytes, ms)
          calls[#calls + 1] = {status = status, bytes = bytes, ms = ms}
        end)
        return handler(req, res)
      end)
      return port, calls
    end

    it("gets the status, the body bytes (no head, no framing) and the duration in ms", function()
      local port, calls = serve(function(req, res)
        if req.path == "/sent" then return res:status(201):send("hello") end
        if req.path == "/slow" then
          rill.sleep(60)
          return res:send("late")
        end
        if req.path == "/empty" then return res:status(204):send("ignored") end
        res:write("ab")
        res:write("cde", "fg")
      end)
      assert.equal(201, (helper.fetch(url(port, "/sent"))))
      assert.is_true(eventually(function() return #calls == 1 end))
      assert.same({201, 5}, {calls[1].status, calls[1].bytes})
      assert.is_true(calls[1].ms >= 0 and calls[1].ms < 1000, tostring(calls[1].ms))

      local _, _, body = helper.fetch(url(port, "/streamed"))
      assert.equal("abcdefg", body)
      assert.is_true(eventually(function() return #calls == 2 end))
      assert.same({200, 7}, {calls[2].status, calls[2].bytes})

      helper.fetch(url(port, "/slow"))
      assert.is_true(eventually(function() return #calls == 3 end))
      assert.is_true(calls[3].ms >= 50 and calls[3].ms < 5000, tostring(calls[3].ms))

      helper.fetch("-I", url(port, "/sent")) -- HEAD: the length goes, no body
      assert.is_true(eventually(function() return #calls == 4 end))
      assert.same({201, 0}, {calls[4].status, calls[4].bytes})

      assert.equal(204, (helper.fetch(url(port, "/empty"))))
      assert.is_true(eventually(function() return #calls == 5 end))
      assert.same({204, 0}, {calls[5].status, calls[5].bytes})
    end)

    it("runs once when the client went away, with the bytes taken before", function()
      local result
      local port, calls = serve(function(req, res)
        local n = 0
        while true do
          local ok, err = res:write(string.rep("x", 1000))
          if not ok then
            result = err
            return
          end
          n = n + 1
          rill.sleep(5)
        end
      end)
      local s = helper.connect(port)
      s:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      assert.equal(200, (helper.read_response_head(s)))
      s:close()
      assert.is_true(eventually(function() return #calls == 1 end))
      assert.equal(200, calls[1].status)
      assert.equal(0, calls[1].bytes % 1000)
      assert.is_true(calls[1].bytes >= 1000)
      assert.is_string(result)
      rill.sleep(50)
      assert.equal(1, #calls)
    end)

    it("logs a callback that raises, and still runs the others", function()
      local ran = {}
      local port
      l, port = helper.listen(function(req, res)
        res:on_finish(function() error("on_finish failed on purpose") end)
        res:on_finish(function(status) ran[#ran + 1] = status end)
        res:send("ok")
      end)
      local status, _, body = helper.fetch(url(port, "/"))
      assert.same({200, "ok"}, {status, body})
      assert.is_true(eventually(function() return #ran == 1 end))
      assert.equal(200, ran[1])
    end)
  end)

  describe("an error after a complete response", function()
    local APP = [[
local rill = require "rill"
local app = rill.router()
app:use(function(req, res, next)
  next()
  if req.path == "/next" then next() end -- line 5
end)
app:get("/twice", function(req, res)
  res:send("first")
  res:send("second") -- line 9
end)
app:get("/header", function(req, res)
  res:send("sent")
  res:header("X-Late", "1") -- line 13
end)
app:get("/next", function(req, res) res:send("once") end)
app:get("/write", function(req, res)
  res:send("whole")
  res:write("more") -- line 18
end)
app:get("/ok", function(req, res) res:send("ok") end)
return app
]]
    local tmp, srv
    setup(function()
      tmp = os.tmpname()
      local f = assert(io.open(tmp .. ".lua", "w"))
      f:write(APP)
      f:close()
      srv = helper.serve(tmp .. ".lua", {"--workers", "1"})
    end)
    teardown(function()
      srv.stop()
      os.remove(tmp .. ".lua")
      os.remove(tmp)
    end)

    for _, case in ipairs({
      {"/twice", "first", ".lua:9: res:send: the response was sent already"},
      {"/header", "sent", ".lua:13: res:header: the response head has been sent already"},
      {"/next", "once", ".lua:5: next: called twice"},
      {"/write", "whole", ".lua:18: res:write: the response has ended"},
    }) do
      local path, body, logged = case[1], case[2], case[3]
      it(path .. ": the response is delivered, the connection goes on, the misuse is logged " ..
        "at the user's line", function()
          local s = helper.connect(srv.port)
          s:write("GET " .. path .. " HTTP/1.1\r\nHost: x\r\n\r\n")
          local status, _, got = helper.read_response(s)
          assert.same({200, body}, {status, got})
          s:write("GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
          status, _, got = helper.read_response(s)
          assert.same({200, "ok"}, {status, got})
          s:close()
          srv.wait_log("error in request handler: .*" .. (logged:gsub("%p", "%%%0")))
        end)
    end
  end)

  describe("res:redirect", function()
    it("answers 302 (or the status given) with Location", function()
      local port
      l, port = helper.listen(function(req, res)
        if req.path == "/old" then return res:redirect("/new?x=1", 301) end
        res:redirect("https://example.com/elsewhere")
      end)
      local code, out = helper.curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
        url(port, "/"))
      assert.equal(0, code)
      assert.equal("302 https://example.com/elsewhere", out)
      local status, headers, body = helper.fetch(url(port, "/old"))
      assert.equal(301, status)
      assert.equal("/new?x=1", headers.location)
      assert.equal("Redirecting to /new?x=1\n", body)
    end)

    it("refuses CR, LF and NUL in the url, and a status outside 300-399, at the caller's line",
      function()
        local errs = {}
        local port
        l, port = helper.listen(function(req, res)
          local target = req.path == "/crlf" and "/x\r\nSet-Cookie: a=b" or "/x"
          local status = req.path == "/status" and 200 or nil
          local ok, err = pcall(function() res:redirect(target, status) end)
          errs[#errs + 1] = err
          if not ok then res:status(400):send("refused") end
        end)
        local status, headers = helper.fetch(url(port, "/crlf"))
        assert.equal(400, status)
        assert.is_nil(headers["set-cookie"])
        assert.is_nil(headers.location)
        assert.matches("hooks_spec%.lua:%d+: res:redirect: url must be a string without CR, LF " ..
          "or NUL", errs[1])
        status = helper.fetch(url(port, "/status"))
        assert.equal(400, status)
        assert.matches("hooks_spec%.lua:%d+: res:redirect: status must be an integer 300%-399, " ..
          "got 200", errs[2])
      end)
  end)
end)
