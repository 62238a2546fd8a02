-- The middleware that ships (rill.middleware.*): logger, cors, request_id,
-- body_limit, basic_auth. Each used with app:use on a real server and driven
-- by curl.
local rill = require "rill"
local helper = require "spec.helper"
local mw = rill.middleware

local url = helper.url

local eventually = helper.eventually

local function read_file(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local function count_lines(s)
  local n = 0
  for _ in s:gmatch("\n") do n = n + 1 end
  return n
end

describe("middleware", function()
  local l
  after_each(function()
    if l then l:close() end
    l = nil
  end)

  -- Serves a router made by setup(app) in this process; returns the port.
  local function serve(setup)
    local app = rill.router()
    setup(app)
    local port
    l, port = helper.listen(app)
    return port
  end

  describe("logger", function()
    it("writes one combined line per request, exactly", function()
      local lines = {}
      local port = serve(function(app)
        app:use(mw.logger{output = function(line) lines[#lines + 1] = line end})
        app:get("/hello", function(req, res) res:send("hello") end)
      end)
      local before = rill.time()
      local status = helper.fetch("-A", 'test-agent/1.0 "quoted"', "-e", "http://ref.example/",
        url(port, "/hello?q=1"))
      assert.equal(200, status)
      assert.is_true(eventually(function() return #lines == 1 end))
      local when = lines[1]:match("%[(.-)%]")
      local expected = ('127.0.0.1 - - [%s] "GET /hello?q=1 HTTP/1.1" 200 5 ' ..
        '"http://ref.example/" "test-agent/1.0 \\x22quoted\\x22"'):format(when)
      assert.equal(expected, lines[1])
      -- the time is the request's, in UTC
      local d, mon, y, h, m, s = when:match("^(%d%d)/(%a%a%a)/(%d%d%d%d):(%d%d):(%d%d):(%d%d) %+0000$")
      assert.is_not_nil(d, when)
      local months = {Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
        Sep = 9, Oct = 10, Nov = 11, Dec = 12}
      local now = os.date("!*t", math.floor(before))
      local t = os.time{year = tonumber(y), month = months[mon], day = tonumber(d),
        hour = tonumber(h), min = tonumber(m), sec = tonumber(s)}
      assert.is_true(math.abs(t - os.time(now)) <= 2, when)
    end)

    it("writes the common format, with the user basic_auth set and - for no body", function()
      local lines = {}
      local port = serve(function(app)
        app:use(mw.logger{format = "common", output = function(line) lines[#lines + 1] = line end})
        app:use(mw.basic_auth{users = {ann = "pw"}})
        app:get("/", function(req, res) res:status(204):send() end)
      end)
      assert.equal(204, (helper.fetch("-u", "ann:pw", url(port, "/"))))
      assert.equal(401, (helper.fetch(url(port, "/"))))
      assert.is_true(eventually(function() return #lines == 2 end))
      assert.matches('^127%.0%.0%.1 %- ann %[[^%]]+%] "GET / HTTP/1%.1" 204 %-$', lines[1])
      assert.matches('^127%.0%.0%.1 %- %- %[[^%]]+%] "GET / HTTP/1%.1" 401 13$', lines[2])
    end)

    it("takes a format function, given what a line needs", function()
      local lines = {}
      local port = serve(function(app)
        app:use(mw.request_id())
        app:use(mw.logger{output = function(line) lines[#lines + 1] = line end,
          format = function(i)
            if i.target == "/skip" then return nil end
            return ("%s %s %d %d %s %s"):format(i.method, i.target, i.status, i.bytes,
              tostring(i.ms >= 0), i.request_id)
          end})
        app:post("/items", function(req, res)
          req.body:read_all()
          res:status(201):send("made")
        end)
        app:get("/skip", function(req, res) res:send("x") end)
      end)
      helper.fetch(url(port, "/skip"))
      helper.fetch("-H", "X-Request-Id: abc-1", "--data-binary", "x", url(port, "/items"))
      assert.is_true(eventually(function() return #lines == 1 end))
      assert.equal("POST /items 201 4 true abc-1", lines[1])
    end)

    it("logs the 500 of a handler that raised", function()
      local lines = {}
      local port = serve(function(app)
        app:use(mw.logger{format = "common", output = function(line) lines[#lines + 1] = line end})
        app:get("/", function() error("failed on purpose") end)
      end)
      assert.equal(500, (helper.fetch(url(port, "/"))))
      assert.is_true(eventually(function() return #lines == 1 end))
      assert.matches('"GET / HTTP/1%.1" 500 22$', lines[1])
    end)

    it("writes to a file: each line at once with buffer = 0", function()
      local path = os.tmpname()
      local port = serve(function(app)
        app:use(mw.logger{format = "common", output = path, buffer = 0})
        app:get("/", function(req, res) res:send("ok") end)
      end)
      helper.fetch(url(port, "/"))
      assert.is_true(eventually(function() return count_lines(read_file(path)) == 1 end))
      helper.fetch(url(port, "/"))
      assert.is_true(eventually(function() return count_lines(read_file(path)) == 2 end))
      assert.matches('"GET / HTTP/1%.1" 200 2\n$', read_file(path))
      os.remove(path)
    end)

    it("gathers lines until the buffer is full or flush ms have passed", function()
      local path = os.tmpname()
      local port = serve(function(app)
        app:use(mw.logger{format = "common", output = path, buffer = 150, flush = 300})
        app:get("/", function(req, res) res:send("ok") end)
      end)
      -- (what is checked before the first flush is due, if this machine is
      -- quick enough to get there first)
      local t0 = rill.now()
      local function early() return rill.now() - t0 < 250 end
      -- one line (about 70 bytes) waits in the buffer...
      helper.fetch(url(port, "/"))
      if early() then assert.equal("", read_file(path)) end
      -- ...a second one fits, a third one does not: the first two go
      helper.fetch(url(port, "/"))
      helper.fetch(url(port, "/"))
      if early() then assert.equal(2, count_lines(read_file(path))) end
      -- the third goes flush ms after it came
      assert.is_true(eventually(function() return count_lines(read_file(path)) == 3 end))
      os.remove(path)
    end)

    it("writes to stderr by default, whole lines", function()
      local tmp = os.tmpname()
      local f = assert(io.open(tmp .. ".lua", "w"))
      f:write([[
local rill = require "rill"
local app = rill.router()
app:use(rill.middleware.logger{flush = 100})
app:get("/logged", function(req, res) res:send("yes") end)
return app
]])
      f:close()
      local srv = helper.serve(tmp .. ".lua", {"--workers", "1"})
      assert.equal(200, (helper.fetch("-A", "stderr-test", url(srv.port, "/logged"))))
      srv.wait_log('^127%.0%.0%.1 %- %- %[[^%]]+%] "GET /logged HTTP/1%.1" 200 3 "%-" ' ..
        '"stderr%-test"$')
      assert.equal(0, srv.stop())
      os.remove(tmp .. ".lua")
      os.remove(tmp)
    end)

    it("writes what it gathered when the server stops", function()
      local tmp = os.tmpname()
      local log_path = tmp .. ".log"
      local f = assert(io.open(tmp .. ".lua", "w"))
      f:write(([[
local rill = require "rill"
local app = rill.router()
app:use(rill.middleware.logger{format = "common", output = %q, flush = 600000})
app:get("/", function(req, res) res:send("ok") end)
return app
]]):format(log_path))
      f:close()
      local srv = helper.serve(tmp .. ".lua", {"--workers", "1"})
      assert.equal(200, (helper.fetch(url(srv.port, "/"))))
      assert.equal(200, (helper.fetch(url(srv.port, "/"))))
      assert.equal("", read_file(log_path)) -- gathered: the buffer is far from full
      assert.equal(0, srv.stop())
      assert.equal(2, count_lines(read_file(log_path)))
      assert.matches('"GET / HTTP/1%.1" 200 2\n$', read_file(log_path))
      for _, p in ipairs({tmp .. ".lua", log_path, tmp}) do os.remove(p) end
    end)

    it("refuses bad options", function()
      assert.has_error(function() mw.logger{format = "apache"} end,
        'rill.middleware.logger: format must be "combined", "common" or a function, got apache')
      assert.has_error(function() mw.logger{buffer = -1} end,
        "rill.middleware.logger: buffer must be a non-negative number, got -1")
      assert.has_error(function() mw.logger{output = 42} end,
        "rill.middleware.logger: output must be a file name, a file or a function")
    end)
  end)

  describe("cors", function()
    local function cors_app(opts, calls)
      return serve(function(app)
        app:use(mw.cors(opts))
        app:any("/api", function(req, res)
          calls[#calls + 1] = req.method
          res:header("X-Total", "3"):send("data")
        end)
      end)
    end

    it("answers a preflight with 204 and exactly its headers, without the route", function()
      local calls = {}
      local port = cors_app({origins = {"https://a.example"}, methods = {"GET", "PUT"},
        credentials = true, max_age = 600000, expose = {"X-Total"}}, calls)
      local status, h, body = helper.fetch("-X", "OPTIONS", "-H", "Origin: https://a.example",
        "-H", "Access-Control-Request-Method: PUT",
        "-H", "Access-Control-Request-Headers: X-Token, Content-Type", url(port, "/api"))
      assert.equal(204, status)
      assert.equal("", body)
      assert.equal("https://a.example", h["access-control-allow-origin"])
      assert.equal("GET, PUT", h["access-control-allow-methods"])
      assert.equal("X-Token, Content-Type", h["access-control-allow-headers"])
      assert.equal("true", h["access-control-allow-credentials"])
      assert.equal("600", h["access-control-max-age"])
      assert.equal("Origin, Access-Control-Request-Headers", h.vary)
      assert.is_nil(h["access-control-expose-headers"])
      assert.same({}, calls)
    end)

    it("refuses a preflight from an origin not allowed: 204 without Allow headers", function()
      local calls = {}
      local port = cors_app({origins = {"https://a.example"}}, calls)
      local status, h = helper.fetch("-X", "OPTIONS", "-H", "Origin: https://evil.example",
        "-H", "Access-Control-Request-Method: DELETE", url(port, "/api"))
      assert.equal(204, status)
      assert.is_nil(h["access-control-allow-origin"])
      assert.is_nil(h["access-control-allow-methods"])
      assert.equal("Origin", h.vary)
      assert.same({}, calls)
    end)

    it("adds Allow-Origin, Credentials and Expose to requests from allowed origins", function()
      local calls = {}
      local port = cors_app({origins = {"https://a.example"}, credentials = true,
        expose = {"X-Total"}}, calls)
      local status, h, body = helper.fetch("-H", "Origin: https://a.example", url(port, "/api"))
      assert.same({200, "data"}, {status, body})
      assert.equal("https://a.example", h["access-control-allow-origin"])
      assert.equal("true", h["access-control-allow-credentials"])
      assert.equal("X-Total", h["access-control-expose-headers"])
      assert.equal("Origin", h.vary)
      status, h, body = helper.fetch("-H", "Origin: https://evil.example", url(port, "/api"))
      assert.same({200, "data"}, {status, body})
      assert.is_nil(h["access-control-allow-origin"])
      assert.equal("Origin", h.vary)
      -- an OPTIONS that is not a preflight goes to the route
      status = helper.fetch("-X", "OPTIONS", "-H", "Origin: https://a.example", url(port, "/api"))
      assert.equal(200, status)
      assert.same({"GET", "GET", "OPTIONS"}, calls)
    end)

    it("allows any origin with * by default, the default methods and asked headers", function()
      local port = cors_app(nil, {})
      local status, h = helper.fetch("-H", "Origin: https://any.example", url(port, "/api"))
      assert.equal(200, status)
      assert.equal("*", h["access-control-allow-origin"])
      assert.is_nil(h.vary)
      assert.is_nil(h["access-control-allow-credentials"])
      status, h = helper.fetch("-X", "OPTIONS", "-H", "Origin: https://any.example",
        "-H", "Access-Control-Request-Method: PATCH", url(port, "/api"))
      assert.equal(204, status)
      assert.equal("*", h["access-control-allow-origin"])
      assert.equal("GET, HEAD, PUT, PATCH, POST, DELETE", h["access-control-allow-methods"])
      assert.is_nil(h["access-control-allow-headers"])
      assert.is_nil(h["access-control-max-age"])
    end)

    it("asks a function about the origin, and allows the headers listed", function()
      local asked = {}
      local port = cors_app({origins = function(origin, req)
        asked[#asked + 1] = origin .. " " .. req.path
        return origin:match("%.trusted%.example$") ~= nil
      end, headers = {"X-Token"}}, {})
      local status, h = helper.fetch("-X", "OPTIONS", "-H", "Origin: https://x.trusted.example",
        "-H", "Access-Control-Request-Method: GET", "-H", "Access-Control-Request-Headers: X-Other",
        url(port, "/api"))
      assert.equal(204, status)
      assert.equal("https://x.trusted.example", h["access-control-allow-origin"])
      assert.equal("X-Token", h["access-control-allow-headers"])
      assert.equal("Origin", h.vary)
      status, h = helper.fetch("-H", "Origin: https://other.example", url(port, "/api"))
      assert.is_nil(h["access-control-allow-origin"])
      assert.same({"https://x.trusted.example /api", "https://other.example /api"}, asked)
    end)

    it("refuses bad options", function()
      assert.has_error(function() mw.cors{origins = 5} end,
        'rill.middleware.cors: origins must be "*", a list of origins or a function, got 5')
      assert.has_error(function() mw.cors{methods = {"GET\r\nX: y"}} end)
      assert.has_error(function() mw.cors{max_age = "1h"} end,
        "rill.middleware.cors: max_age must be a non-negative number of ms, got 1h")
    end)
  end)

  describe("request_id", function()
    local function id_app(opts, seen)
      return serve(function(app)
        app:use(mw.request_id(opts))
        app:get("/", function(req, res)
          seen[#seen + 1] = req.id
          res:send("ok")
        end)
      end)
    end

    it("keeps a valid incoming id, on req.id and the response", function()
      local seen = {}
      local port = id_app(nil, seen)
      local _, h = helper.fetch("-H", "X-Request-Id: abc-123_x.y", url(port, "/"))
      assert.equal("abc-123_x.y", h["x-request-id"])
      assert.same({"abc-123_x.y"}, seen)
    end)

    it("makes one (32 hex digits) when there is none or it is not valid", function()
      local seen = {}
      local port = id_app(nil, seen)
      local _, h1 = helper.fetch(url(port, "/"))
      local _, h2 = helper.fetch("-H", "X-Request-Id: bad id with spaces", url(port, "/"))
      local _, h3 = helper.fetch("-H", "X-Request-Id: " .. string.rep("a", 129), url(port, "/"))
      for i, h in ipairs({h1, h2, h3}) do
        assert.matches("^%x+$", h["x-request-id"])
        assert.equal(32, #h["x-request-id"])
        assert.equal(seen[i], h["x-request-id"])
      end
      assert.are_not.equal(seen[1], seen[2])
      assert.are_not.equal(seen[2], seen[3])
    end)

    it("takes another header, a generator, and trust = false", function()
      local seen = {}
      local n = 0
      local port = id_app({header = "X-Trace-Id", trust = false, generate = function()
        n = n + 1
        return "gen-" .. n
      end}, seen)
      local _, h = helper.fetch("-H", "X-Trace-Id: from-client", url(port, "/"))
      assert.equal("gen-1", h["x-trace-id"])
      assert.is_nil(h["x-request-id"])
      assert.same({"gen-1"}, seen)
    end)
  end)

  describe("body_limit", function()
    local function limited(max, seen)
      return serve(function(app)
        app:use("/up", mw.body_limit(max))
        app:post("/up", function(req, res)
          local data, err = req.body:read_all(1e7)
          seen[#seen + 1] = data and #data or err
          res:send("got " .. tostring(data and #data or err))
        end)
        app:post("/free", function(req, res)
          res:send("got " .. #req.body:read_all(1e7))
        end)
      end)
    end

    it("answers 413 at once for a Content-Length over the limit; the handler does not run",
      function()
        local seen = {}
        local port = limited(1000, seen)
        local status, h, body = helper.fetch("--data-binary", string.rep("x", 1001), url(port, "/up"))
        assert.same({413, "request body too large\n", "close"}, {status, body, h.connection})
        status, _, body = helper.fetch("--data-binary", string.rep("x", 1000), url(port, "/up"))
        assert.same({200, "got 1000"}, {status, body})
        -- (curl waits for 100 Continue past 1 KiB: the 413 comes instead)
        status = helper.fetch("--data-binary", string.rep("x", 5000), url(port, "/up"))
        assert.equal(413, status)
        status, _, body = helper.fetch("--data-binary", string.rep("x", 5000), url(port, "/free"))
        assert.same({200, "got 5000"}, {status, body})
        assert.same({1000}, seen)
      end)

    it("answers 413 for a chunked body once a read passes the limit", function()
      local seen = {}
      local port = limited(1000, seen)
      local code, out = helper.run({"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
        "-H", "Transfer-Encoding: chunked", "--data-binary", "@-", url(port, "/up")},
        {input = string.rep("y", 4000)})
      assert.equal(0, code)
      assert.equal("413", out)
      assert.same({"body too large"}, seen)
      code, out = helper.run({"curl", "-sS", "-H", "Transfer-Encoding: chunked",
        "--data-binary", "@-", url(port, "/up")}, {input = string.rep("y", 900)})
      assert.equal(0, code)
      assert.equal("got 900", out)
    end)

    it("takes {max = bytes} and refuses what is not a size", function()
      assert.is_function(mw.body_limit{max = 10})
      assert.has_error(function() mw.body_limit("1k") end,
        "rill.middleware.body_limit: max must be a number of bytes (at least 1), got 1k")
    end)
  end)

  describe("basic_auth", function()
    local function guarded(opts)
      return serve(function(app)
        app:use("/admin", mw.basic_auth(opts))
        app:get("/admin", function(req, res) res:send("hello " .. req.user) end)
        app:get("/open", function(req, res) res:send("open") end)
      end)
    end

    it("lets good credentials in, with req.user", function()
      local port = guarded{realm = "admin area", users = {ann = "s3cret:x", bob = "pw"}}
      local status, _, body = helper.fetch("-u", "ann:s3cret:x", url(port, "/admin"))
      assert.same({200, "hello ann"}, {status, body})
      status, _, body = helper.fetch(url(port, "/open"))
      assert.same({200, "open"}, {status, body})
    end)

    it("answers 401 with WWW-Authenticate to none, wrong or malformed credentials", function()
      local port = guarded{realm = "admin area", users = {ann = "s3cret", bob = "pw"}}
      for _, args in ipairs({{}, {"-u", "ann:wrong"}, {"-u", "ann:s3cre"}, {"-u", "ann:s3cret2"},
        {"-u", "nobody:s3cret"}, {"-u", "bob:s3cret"}, {"-H", "Authorization: Basic !!!"},
        {"-H", "Authorization: Bearer abc"}, {"-H", "Authorization: Basic YW5u"}}) do
        args[#args + 1] = url(port, "/admin")
        local status, h, body = helper.fetch(unpack(args))
        assert.equal(401, status, table.concat(args, " "))
        assert.equal('Basic realm="admin area", charset="UTF-8"', h["www-authenticate"])
        assert.equal("Unauthorized\n", body)
      end
    end)

    it("asks a check function", function()
      local asked = {}
      local port = guarded{check = function(user, password, req)
        asked[#asked + 1] = user .. ":" .. password .. " " .. req.path
        return user == "carol" and password == "ok"
      end}
      assert.equal(200, (helper.fetch("-u", "carol:ok", url(port, "/admin"))))
      local status, h = helper.fetch("-u", "carol:no", url(port, "/admin"))
      assert.equal(401, status)
      assert.equal('Basic realm="rill", charset="UTF-8"', h["www-authenticate"])
      assert.same({"carol:ok /admin", "carol:no /admin"}, asked)
    end)

    it("refuses bad options", function()
      assert.has_error(function() mw.basic_auth{} end)
      assert.has_error(function() mw.basic_auth{users = {a = "b"}, realm = 'x"y'} end)
      assert.has_error(function() mw.basic_auth{users = {a = 1}} end,
        "rill.middleware.basic_auth: users must map strings to strings")
    end)
  end)
end)
