-- rill.static and app:static, driven by curl as a user would (-I, -r, -z,
-- --compressed, If-* headers) and by raw sockets for the paths curl would
-- tidy up: validators and conditionals, Range, index files and listings,
-- MIME types, precompressed siblings, dotfiles, symlinks and every
-- traversal shape.
local rill = require "rill"
local helper = require "spec.helper"

-- The site: T/www is the root; T/outside and T/www2 are beside it.
local T = os.tmpname()
os.remove(T)
local WWW = T .. "/www"
local MTIME = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT
local MTIME_DATE = "Sun, 06 Nov 1994 08:49:37 GMT"
local DIGITS = string.rep("0123456789", 10) -- 100 bytes
local SECRET = "the secret outside the root"

local function write(name, data)
  local f = assert(io.open(T .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

local function sh(script)
  local code, _, err = helper.run({"sh", "-c", script, "sh", T})
  assert(code == 0, script .. ": " .. err)
end

setup(function()
  sh('mkdir -p "$1/www/sub/deeper" "$1/www/noindex" "$1/www/.git" "$1/outside" "$1/www2"')
  write("www/index.html", "<h1>home</h1>\n")
  write("www/digits.txt", DIGITS)
  write("www/style.css", "body{}\n")
  write("www/app.js", "1;\n")
  write("www/data.json", "{}\n")
  write("www/logo.png", "\137PNG\r\n\26\n")
  write("www/blob.unknownext", "?")
  write("www/a b.txt", "space\n")
  write("www/<b>&.txt", "escaped\n")
  write("www/.secret", "dot\n")
  write("www/.git/config", "git\n")
  write("www/empty.txt", "")
  write("www/sub/index.html", "<p>sub</p>\n")
  write("www/sub/deeper/x.txt", "x\n")
  write("www/noindex/one.txt", "1\n")
  write("www/page.txt", string.rep("compress me ", 100))
  write("www/fake.txt", "plain\n")
  write("www/fake.txt.br", "BROTLI")
  write("outside/secret.txt", SECRET)
  write("www2/f.txt", SECRET)
  sh([[cd "$1/www" && gzip -k -9 page.txt && ln -s digits.txt inside_link &&
    ln -s ../outside/secret.txt out_link && ln -s ../outside out_dir &&
    ln -s ../www2/f.txt sibling_link &&
    touch -h -d @784111777 digits.txt index.html inside_link]])
end)

teardown(function() os.execute("rm -rf '" .. T .. "'") end)

-- A server in this process; the app is a router with the API beside.
local function serve(app)
  local l, port = helper.listen(app)
  return port, function() l:close() end
end

local function site(opts)
  local app = rill.router()
  app:get("/api/ping", function(req, res) res:send("pong") end)
  app:static("/", WWW, opts)
  return app
end

describe("rill.static", function()
  local port, stop
  setup(function() port, stop = serve(site()) end)
  teardown(function() stop() end)
  local function url(p) return helper.url(port, p) end

  it("serves a file with its type, length, validators and Cache-Control", function()
    local status, h, body = helper.fetch(url("/digits.txt"))
    assert.equal(200, status)
    assert.equal(DIGITS, body)
    assert.equal("text/plain; charset=utf-8", h["content-type"])
    assert.equal("100", h["content-length"])
    assert.equal(MTIME_DATE, h["last-modified"])
    assert.matches(('^"64%%-%x%%-%%x+"$'):format(MTIME * 1000), h.etag)
    assert.equal("bytes", h["accept-ranges"])
    assert.equal("public, max-age=0", h["cache-control"])
    assert.is_nil(h.vary) -- precompressed is off
  end)

  it("gives MIME types from the system's table, charset=utf-8 for text", function()
    local want = {["/style.css"] = "text/css; charset=utf-8",
      ["/app.js"] = "text/javascript; charset=utf-8",
      ["/data.json"] = "application/json; charset=utf-8", ["/logo.png"] = "image/png",
      ["/index.html"] = "text/html; charset=utf-8",
      ["/blob.unknownext"] = "application/octet-stream"}
    for p, ct in pairs(want) do
      local status, h = helper.fetch(url(p))
      assert.equal(200, status, p)
      assert.equal(ct, h["content-type"], p)
    end
  end)

  it("answers HEAD (curl -I) with GET's headers and no body", function()
    local _, get = helper.fetch(url("/digits.txt"))
    local code, out = helper.curl("-sI", url("/digits.txt"))
    assert.equal(0, code)
    assert.matches("^HTTP/1.1 200", out)
    assert.matches("\r\n\r\n$", out)
    assert.matches("Content%-Length: 100\r\n", out)
    assert.matches("ETag: " .. get.etag:gsub("%p", "%%%0") .. "\r\n", out)
    assert.matches("Last%-Modified: " .. MTIME_DATE, out)
  end)

  it("answers the API beside the files", function()
    local status, _, body = helper.fetch(url("/api/ping"))
    assert.equal(200, status)
    assert.equal("pong", body)
  end)

  it("serves an empty file", function()
    local status, h, body = helper.fetch(url("/empty.txt"))
    assert.equal(200, status)
    assert.equal("0", h["content-length"])
    assert.equal("", body)
  end)

  it("decodes the path once: %20 is a space, %2541 is the name %41", function()
    local status, _, body = helper.fetch(url("/a%20b.txt"))
    assert.equal(200, status)
    assert.equal("space\n", body)
    assert.equal(404, (helper.fetch(url("/a%2520b.txt"))))
  end)

  describe("conditionals", function()
    local etag
    setup(function() etag = select(2, helper.fetch(url("/digits.txt"))).etag end)

    it("If-None-Match with the ETag: 304 with validators and no body", function()
      local status, h, body = helper.fetch("-H", "If-None-Match: " .. etag, url("/digits.txt"))
      assert.equal(304, status)
      assert.equal("", body)
      assert.equal(etag, h.etag)
      assert.equal(MTIME_DATE, h["last-modified"])
      assert.equal("public, max-age=0", h["cache-control"])
      assert.is_nil(h["content-type"])
      -- weak comparison, lists and *
      assert.equal(304, (helper.fetch("-H", 'If-None-Match: "x", W/' .. etag, url("/digits.txt"))))
      assert.equal(304, (helper.fetch("-H", "If-None-Match: *", url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-H", 'If-None-Match: "other"', url("/digits.txt"))))
      -- HEAD too
      local code, out = helper.curl("-sI", "-H", "If-None-Match: " .. etag, url("/digits.txt"))
      assert.equal(0, code)
      assert.matches("^HTTP/1.1 304", out)
    end)

    it("If-Modified-Since (curl -z): 304 unless modified after it", function()
      local status, h, body = helper.fetch("-z", MTIME_DATE, url("/digits.txt"))
      assert.equal(304, status)
      assert.equal("", body)
      assert.equal(etag, h.etag)
      assert.equal(304, (helper.fetch("-z", "Mon, 07 Nov 1994 00:00:00 GMT", url("/digits.txt"))))
      local s2, _, b2 = helper.fetch("-z", "Sat, 05 Nov 1994 00:00:00 GMT", url("/digits.txt"))
      assert.equal(200, s2)
      assert.equal(DIGITS, b2)
      -- If-None-Match decides when both are sent
      assert.equal(200, (helper.fetch("-z", MTIME_DATE, "-H", 'If-None-Match: "other"',
        url("/digits.txt"))))
    end)

    it("If-Match and If-Unmodified-Since: 412 when they fail", function()
      local status, _, body = helper.fetch("-H", 'If-Match: "other"', url("/digits.txt"))
      assert.equal(412, status)
      assert.equal("Precondition Failed\n", body)
      assert.equal(200, (helper.fetch("-H", "If-Match: " .. etag, url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-H", "If-Match: *", url("/digits.txt"))))
      assert.equal(412, (helper.fetch("-H", "If-Match: W/" .. etag, url("/digits.txt"))))
      -- curl -z -DATE sends If-Unmodified-Since
      assert.equal(412, (helper.fetch("-z", "-Sat, 05 Nov 1994 00:00:00 GMT", url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-z", "-" .. MTIME_DATE, url("/digits.txt"))))
    end)
  end)

  describe("Range", function()
    local etag
    setup(function() etag = select(2, helper.fetch(url("/digits.txt"))).etag end)

    it("serves one range (curl -r) as 206 with Content-Range", function()
      local status, h, body = helper.fetch("-r", "10-19", url("/digits.txt"))
      assert.equal(206, status)
      assert.equal("0123456789", body)
      assert.equal("bytes 10-19/100", h["content-range"])
      assert.equal("10", h["content-length"])
      assert.equal("text/plain; charset=utf-8", h["content-type"])
    end)

    it("serves open and suffix ranges, clamped to the size", function()
      local status, h, body = helper.fetch("-r", "95-", url("/digits.txt"))
      assert.equal(206, status)
      assert.equal("56789", body)
      assert.equal("bytes 95-99/100", h["content-range"])
      status, h, body = helper.fetch("-r", "-3", url("/digits.txt"))
      assert.equal(206, status)
      assert.equal("789", body)
      assert.equal("bytes 97-99/100", h["content-range"])
      status, h, body = helper.fetch("-r", "90-500", url("/digits.txt"))
      assert.equal("bytes 90-99/100", h["content-range"])
      assert.equal("0123456789", body)
    end)

    it("answers an unsatisfiable range with 416 and bytes */size", function()
      local status, h = helper.fetch("-r", "100-200", url("/digits.txt"))
      assert.equal(416, status)
      assert.equal("bytes */100", h["content-range"])
    end)

    it("serves several ranges as multipart/byteranges", function()
      local status, h, body = helper.fetch("-r", "0-1,50-52,-2", url("/digits.txt"))
      assert.equal(206, status)
      local boundary = h["content-type"]:match("^multipart/byteranges; boundary=(%w+)$")
      assert.is_truthy(boundary)
      assert.equal(#body, tonumber(h["content-length"]))
      local parts = {}
      for head, data in body:gmatch("\r\n%-%-" .. boundary .. "\r\n(.-)\r\n\r\n(.-)%f[\r]") do
        parts[#parts + 1] = {head, data}
      end
      assert.equal(3, #parts)
      assert.matches("Content%-Type: text/plain; charset=utf%-8", parts[1][1])
      assert.matches("Content%-Range: bytes 0%-1/100", parts[1][1])
      assert.equal("01", parts[1][2])
      assert.matches("Content%-Range: bytes 50%-52/100", parts[2][1])
      assert.equal("012", parts[2][2])
      assert.matches("Content%-Range: bytes 98%-99/100", parts[3][1])
      assert.equal("89", parts[3][2])
      assert.matches("\r\n%-%-" .. boundary .. "%-%-\r\n$", body)
    end)

    it("sends the whole file for many or overlapping ranges, or a malformed Range", function()
      local many = {}
      for i = 0, 20 do many[#many + 1] = i .. "-" .. i end
      local status, _, body = helper.fetch("-r", table.concat(many, ","), url("/digits.txt"))
      assert.equal(200, status)
      assert.equal(DIGITS, body)
      assert.equal(200, (helper.fetch("-r", "0-99,0-99", url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-H", "Range: bytes=x-y", url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-H", "Range: pages=1-2", url("/digits.txt"))))
    end)

    it("applies If-Range only while the ETag or date still match", function()
      local status, _, body = helper.fetch("-r", "0-4", "-H", "If-Range: " .. etag,
        url("/digits.txt"))
      assert.equal(206, status)
      assert.equal("01234", body)
      status, _, body = helper.fetch("-r", "0-4", "-H", 'If-Range: "old"', url("/digits.txt"))
      assert.equal(200, status)
      assert.equal(DIGITS, body)
      assert.equal(206, (helper.fetch("-r", "0-4", "-H", "If-Range: " .. MTIME_DATE,
        url("/digits.txt"))))
      assert.equal(200, (helper.fetch("-r", "0-4", "-H",
        "If-Range: Mon, 07 Nov 1994 00:00:00 GMT", url("/digits.txt"))))
    end)

    it("ignores Range on HEAD", function()
      local code, out = helper.curl("-sI", "-r", "0-4", url("/digits.txt"))
      assert.equal(0, code)
      assert.matches("^HTTP/1.1 200", out)
      assert.matches("Content%-Length: 100\r\n", out)
    end)
  end)

  describe("directories", function()
    it("serves the index file, redirecting a directory without its slash", function()
      local status, _, body = helper.fetch(url("/"))
      assert.equal(200, status)
      assert.equal("<h1>home</h1>\n", body)
      local h
      status, h = helper.fetch(url("/sub?x=1"))
      assert.equal(301, status)
      assert.equal("/sub/?x=1", h.location)
      status, _, body = helper.fetch(url("/sub/"))
      assert.equal(200, status)
      assert.equal("<p>sub</p>\n", body)
    end)

    it("answers 404 for a directory without an index when listing is off", function()
      local status, _, body = helper.fetch(url("/noindex/"))
      assert.equal(404, status)
      assert.equal("Not Found\n", body)
      assert.equal(404, (helper.fetch(url("/digits.txt/")))) -- a file is no directory
    end)
  end)

  it("answers missing files 404, through the app's not_found hook", function()
    local app = site()
    app:not_found(function(req, res) res:send("no such page: " .. req.path) end)
    local p, halt = serve(app)
    local status, _, body = helper.fetch(helper.url(p, "/nope.html"))
    assert.equal(404, status)
    assert.equal("no such page: /nope.html", body)
    assert.equal(404, (helper.fetch(helper.url(p, "/.secret"))))
    halt()
  end)

  it("answers methods other than GET and HEAD with 405 and Allow", function()
    local status, h = helper.fetch("-X", "POST", url("/digits.txt"))
    assert.equal(405, status)
    assert.equal("GET, HEAD", h.allow)
    -- the handler on its own
    local l, p = helper.listen(rill.static(WWW))
    status, h = helper.fetch("-X", "DELETE", helper.url(p, "/digits.txt"))
    assert.equal(405, status)
    assert.equal("GET, HEAD", h.allow)
    l:close()
  end)

  describe("refuses every path that leaves the root", function()
    -- What must never be answered: the secret's bytes or /etc/passwd's.
    local function refused(raw_path, ...)
      local s = helper.connect(port)
      s:write("GET " .. raw_path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      local out = helper.read_to_end(s)
      local status = tonumber(out:match("^HTTP/1%.1 (%d+)"))
      assert.is_truthy(status == 400 or status == 404, raw_path .. " got: " .. out)
      assert.is_nil(out:find(SECRET, 1, true), raw_path)
      assert.is_nil(out:find("root:", 1, true), raw_path)
      return status
    end

    it("dot segments, plain and encoded", function()
      assert.equal(400, refused("/../outside/secret.txt"))
      assert.equal(400, refused("/sub/../../outside/secret.txt"))
      assert.equal(400, refused("/%2e%2e/outside/secret.txt"))
      assert.equal(400, refused("/%2E%2E/%2e%2e/%2e%2e/etc/passwd"))
      assert.equal(400, refused("/.%2e/outside/secret.txt"))
      assert.equal(400, refused("/sub/./index.html"))
      -- curl --path-as-is sends them as written too
      local code, out = helper.curl("-s", "-o", "/dev/null", "-w", "%{http_code}",
        "--path-as-is", url("/../../../../etc/passwd"))
      assert.equal(0, code)
      assert.equal("400", out)
    end)

    it("encoded slashes and backslashes, raw backslashes", function()
      assert.equal(400, refused("/..%2foutside%2fsecret.txt"))
      assert.equal(400, refused("/sub%2f..%2f..%2foutside/secret.txt"))
      assert.equal(400, refused("/..%5coutside%5csecret.txt"))
      assert.equal(400, refused("/..%5C..%5Cetc%5Cpasswd"))
      refused("/..\\outside\\secret.txt")
    end)

    it("NUL, absolute paths, empty segments, bad escapes", function()
      assert.equal(400, refused("/digits.txt%00.png"))
      assert.equal(400, refused("//etc/passwd"))
      assert.equal(400, refused("/sub//index.html"))
      assert.equal(400, refused("/%zz"))
      assert.equal(400, refused("/%"))
      refused("/" .. T .. "/outside/secret.txt")
    end)

    it("dotfiles and dot-directories (404) unless allowed", function()
      assert.equal(404, refused("/.secret"))
      assert.equal(404, refused("/.git/config"))
      assert.equal(404, refused("/%2esecret"))
      local p, halt = serve(site{dotfiles = "allow"})
      local status, _, body = helper.fetch(helper.url(p, "/.secret"))
      assert.equal(200, status)
      assert.equal("dot\n", body)
      halt()
    end)

    it("symlinks whose target is outside the root, even a sibling prefix", function()
      assert.equal(404, refused("/out_link"))
      assert.equal(404, refused("/out_dir/secret.txt"))
      assert.equal(404, refused("/sibling_link")) -- T/www2 is not inside T/www
      -- one inside the root is served
      local status, _, body = helper.fetch(url("/inside_link"))
      assert.equal(200, status)
      assert.equal(DIGITS, body)
    end)

    it("symlinks = \"allow\" follows them anywhere; \"deny\" refuses every one", function()
      local p, halt = serve(site{symlinks = "allow"})
      local status, _, body = helper.fetch(helper.url(p, "/out_link"))
      assert.equal(200, status)
      assert.equal(SECRET, body)
      halt()
      p, halt = serve(site{symlinks = "deny"})
      assert.equal(404, (helper.fetch(helper.url(p, "/inside_link"))))
      assert.equal(200, (helper.fetch(helper.url(p, "/digits.txt"))))
      assert.equal(200, (helper.fetch(helper.url(p, "/sub/"))))
      halt()
    end)
  end)
end)

describe("rill.static options", function()
  it("listing = true lists a directory, names HTML-escaped and links URL-escaped", function()
    local p, halt = serve(site{listing = true})
    local status, h, body = helper.fetch(helper.url(p, "/noindex/"))
    assert.equal(200, status)
    assert.equal("text/html; charset=utf-8", h["content-type"])
    assert.matches('<a href="one.txt">one.txt</a>', body, 1, true)
    assert.matches('<a href="../">', body, 1, true)
    -- the root has no listing (an index), so list "/sub/deeper/"
    _, _, body = helper.fetch(helper.url(p, "/sub/deeper/"))
    assert.matches('<a href="x.txt">x.txt</a>', body, 1, true)
    halt()
    p, halt = serve(site{listing = true, index = false})
    _, _, body = helper.fetch(helper.url(p, "/"))
    assert.matches('<a href="%3Cb%3E%26.txt">&lt;b&gt;&amp;.txt</a>', body, 1, true)
    assert.matches('<a href="a%20b.txt">a b.txt</a>', body, 1, true)
    assert.matches('<a href="sub/">sub/</a>', body, 1, true)
    assert.is_nil(body:find(".secret", 1, true))
    assert.is_nil(body:find('href="../"', 1, true)) -- the root has no parent
    -- the escaped link leads to the file
    status, _, body = helper.fetch(helper.url(p, "/%3Cb%3E%26.txt"))
    assert.equal(200, status)
    assert.equal("escaped\n", body)
    halt()
  end)

  it("index names a list of files, or false for none", function()
    local p, halt = serve(site{index = {"missing.html", "digits.txt"}})
    local _, _, body = helper.fetch(helper.url(p, "/"))
    assert.equal(DIGITS, body)
    halt()
    p, halt = serve(site{index = false})
    assert.equal(404, (helper.fetch(helper.url(p, "/"))))
    halt()
  end)

  it("max_age (ms), immutable and cache_control set Cache-Control", function()
    local p, halt = serve(site{max_age = 86400000, immutable = true})
    local _, h = helper.fetch(helper.url(p, "/digits.txt"))
    assert.equal("public, max-age=86400, immutable", h["cache-control"])
    halt()
    p, halt = serve(site{cache_control = "no-cache"})
    _, h = helper.fetch(helper.url(p, "/digits.txt"))
    assert.equal("no-cache", h["cache-control"])
    halt()
    p, halt = serve(site{cache_control = false})
    _, h = helper.fetch(helper.url(p, "/digits.txt"))
    assert.is_nil(h["cache-control"])
    halt()
  end)

  it("etag = false and last_modified = false leave the validators out", function()
    local p, halt = serve(site{etag = false, last_modified = false})
    local status, h = helper.fetch("-z", MTIME_DATE, helper.url(p, "/digits.txt"))
    assert.equal(200, status)
    assert.is_nil(h.etag)
    assert.is_nil(h["last-modified"])
    halt()
  end)

  it("mime_types overrides the table; default_type names the unknown", function()
    local p, halt = serve(site{mime_types = {unknownext = "application/x-xyz", txt = "text/x-mine"},
      default_type = "text/plain"})
    local _, h = helper.fetch(helper.url(p, "/blob.unknownext"))
    assert.equal("application/x-xyz", h["content-type"])
    _, h = helper.fetch(helper.url(p, "/digits.txt"))
    assert.equal("text/x-mine; charset=utf-8", h["content-type"])
    halt()
  end)

  it("precompressed serves the .gz sibling to curl --compressed, with Vary", function()
    local p, halt = serve(site{precompressed = true})
    local u = helper.url(p, "/page.txt")
    local status, h, body = helper.fetch("--compressed", u)
    assert.equal(200, status)
    assert.equal("gzip", h["content-encoding"])
    assert.equal("Accept-Encoding", h.vary)
    assert.equal("text/plain; charset=utf-8", h["content-type"])
    assert.equal(string.rep("compress me ", 100), body) -- curl inflated it
    local f = assert(io.open(WWW .. "/page.txt.gz", "rb"))
    local gz = f:read("*a")
    f:close()
    assert.equal(tostring(#gz), h["content-length"])
    -- a client that does not accept gzip gets the file itself, still with Vary
    status, h, body = helper.fetch("-H", "Accept-Encoding: gzip;q=0", u)
    assert.is_nil(h["content-encoding"])
    assert.equal("Accept-Encoding", h.vary)
    assert.equal(1200, #body)
    -- .br first when accepted; no sibling: the file
    status, h, body = helper.fetch("-H", "Accept-Encoding: gzip, br", helper.url(p, "/fake.txt"))
    assert.equal("br", h["content-encoding"])
    assert.equal("BROTLI", body)
    status, h, body = helper.fetch("-H", "Accept-Encoding: gzip", helper.url(p, "/fake.txt"))
    assert.is_nil(h["content-encoding"])
    assert.equal("plain\n", body)
    halt()
  end)

  it("fallthrough = false answers 404 itself instead of the app's hook", function()
    local app = site{fallthrough = false}
    app:not_found(function(req, res) res:send("hook") end)
    local p, halt = serve(app)
    local status, _, body = helper.fetch(helper.url(p, "/nope"))
    assert.equal(404, status)
    assert.equal("Not Found\n", body)
    halt()
  end)

  it("app:static mounts under a prefix", function()
    local app = rill.router()
    app:static("/assets", WWW)
    local p, halt = serve(app)
    local status, _, body = helper.fetch(helper.url(p, "/assets/digits.txt"))
    assert.equal(200, status)
    assert.equal(DIGITS, body)
    local h
    status, h = helper.fetch(helper.url(p, "/assets"))
    assert.equal(301, status)
    assert.equal("/assets/", h.location)
    status, _, body = helper.fetch(helper.url(p, "/assets/"))
    assert.equal("<h1>home</h1>\n", body)
    assert.equal(404, (helper.fetch(helper.url(p, "/digits.txt"))))
    halt()
  end)

  it("rill.static on its own serves req.path; in a route, its *rest", function()
    local l, p = helper.listen(rill.static(WWW))
    local _, _, body = helper.fetch(helper.url(p, "/sub/deeper/x.txt"))
    assert.equal("x\n", body)
    l:close()
    local app = rill.router()
    app:get("/files/*rest", rill.static(WWW .. "/sub"))
    local halt
    p, halt = serve(app)
    _, _, body = helper.fetch(helper.url(p, "/files/deeper/x.txt"))
    assert.equal("x\n", body)
    halt()
  end)

  it("follows a root reached through a symlink that a deploy switches", function()
    sh([[mkdir -p "$1/r1" "$1/r2" && echo one > "$1/r1/v.txt" && echo two > "$1/r2/v.txt" &&
      ln -sfn r1 "$1/current"]])
    local app = rill.router()
    app:static("/", T .. "/current")
    local p, halt = serve(app)
    assert.equal("one\n", select(3, helper.fetch(helper.url(p, "/v.txt"))))
    sh([[ln -sfn r2 "$1/current.new" && mv -T "$1/current.new" "$1/current"]])
    -- the cached entry may serve r1's file for up to `cache` ms, whole; then r2's
    assert.is_true(helper.eventually(function()
      local status, _, body = helper.fetch(helper.url(p, "/v.txt"))
      assert.equal(200, status)
      assert.is_truthy(body == "one\n" or body == "two\n")
      return body == "two\n"
    end))
    halt()
  end)

  it("cache = false sees a replaced file at once; with the cache, soon and whole", function()
    sh([[mkdir -p "$1/c" && printf 'old' > "$1/c/f.txt"]])
    local p, halt = serve((function()
      local app = rill.router()
      app:static("/nc", T .. "/c", {cache = false})
      app:static("/c", T .. "/c")
      return app
    end)())
    assert.equal("old", select(3, helper.fetch(helper.url(p, "/nc/f.txt"))))
    assert.equal("old", select(3, helper.fetch(helper.url(p, "/c/f.txt"))))
    sh([[printf 'newer!' > "$1/c/f.new" && mv "$1/c/f.new" "$1/c/f.txt"]])
    assert.equal("newer!", select(3, helper.fetch(helper.url(p, "/nc/f.txt"))))
    local etags = {}
    assert.is_true(helper.eventually(function()
      local _, h, body = helper.fetch(helper.url(p, "/c/f.txt"))
      -- never a mix: the length and ETag are those of the bytes sent
      assert.equal(tostring(#body), h["content-length"])
      etags[body] = etags[body] or h.etag
      assert.equal(etags[body], h.etag)
      return body == "newer!"
    end))
    assert.is_not.equal(etags.old, etags["newer!"])
    halt()
  end)

  it("keeps at most cache_entries files open", function()
    local files = {}
    for i = 1, 60 do files[#files + 1] = ('printf %d > "$1/many/f%d.txt"'):format(i, i) end
    sh('mkdir -p "$1/many" && ' .. table.concat(files, " && "))
    local function fds()
      local _, out = helper.run({"sh", "-c", "ls /proc/$PPID/fd | wc -l"})
      return tonumber(out)
    end
    -- How many descriptors 60 requests leave open, the collector stopped
    -- (curl's pipes wait for it): without the cache, and with 8 entries.
    local function growth(opts)
      local app = rill.router()
      app:static("/", T .. "/many", opts)
      local p, halt = serve(app)
      helper.fetch(helper.url(p, "/f1.txt"))
      collectgarbage()
      collectgarbage("stop")
      local before = fds()
      for i = 1, 60 do
        assert.equal(tostring(i), select(3, helper.fetch(helper.url(p, "/f" .. i .. ".txt"))))
      end
      local after = fds()
      collectgarbage("restart")
      halt()
      return after - before
    end
    local without = growth({cache = false})
    local with = growth({cache = 600000, cache_entries = 8, memory_max = 0})
    assert.is_true(with <= without + 8, ("%d more fds, %d without the cache"):format(with,
      without))
  end)

  it("sends the same bytes from memory, from an open file, and by path", function()
    local configs = {{}, {memory_max = 0}, {cache = false}}
    for i, opts in ipairs(configs) do
      local p, halt = serve(site(opts))
      local u = helper.url(p, "/digits.txt")
      for _ = 1, 2 do -- a miss, then a hit
        local status, h, body = helper.fetch(u)
        assert.equal(200, status, i)
        assert.equal(DIGITS, body, i)
        local code, out = helper.curl("-sI", u)
        assert.equal(0, code)
        assert.matches("Content%-Length: 100\r\n", out)
        assert.matches("\r\n\r\n$", out) -- no body
        status, _, body = helper.fetch("-r", "5-9", u)
        assert.equal(206, status, i)
        assert.equal("56789", body, i)
        status, _, body = helper.fetch("-r", "0-0,-1", u)
        assert.equal(206, status, i)
        assert.matches("\r\n\r\n0\r\n%-%-.*\r\n\r\n9\r\n", body)
        assert.equal(304, (helper.fetch("-H", "If-None-Match: " .. h.etag, u)), i)
      end
      halt()
    end
  end)

  it("serves the same over HTTPS (curl with the test CA)", function()
    local certs = helper.certs()
    local l = assert(rill.http.listen{host = "127.0.0.1", port = 0, handler = site(),
      tls = {cert = certs .. "/a.test.crt", key = certs .. "/a.test.key"}})
    local u = ("https://a.test:%d"):format(l:port())
    local tls = {"--resolve", "a.test:" .. l:port() .. ":127.0.0.1", "--cacert",
      certs .. "/ca.crt"}
    local status, h, body = helper.fetch(tls[1], tls[2], tls[3], tls[4], u .. "/digits.txt")
    assert.equal(200, status)
    assert.equal(DIGITS, body)
    status, h, body = helper.fetch(tls[1], tls[2], tls[3], tls[4], "-r", "0-1,-2",
      u .. "/digits.txt")
    assert.equal(206, status)
    assert.matches("multipart/byteranges", h["content-type"])
    assert.matches("\r\n\r\n01\r\n", body)
    assert.matches("\r\n\r\n89\r\n", body)
    l:close()
  end)

  it("raises for bad options, naming them, at the caller's line", function()
    local function err_of(...)
      local ok, e = pcall(...)
      assert.is_false(ok)
      return e
    end
    assert.matches("rill.static: root must be", err_of(rill.static, nil))
    assert.matches("unknown option colour", err_of(rill.static, WWW, {colour = 1}))
    assert.matches("option listing must be a boolean", err_of(rill.static, WWW, {listing = 1}))
    assert.matches('option dotfiles must be one of', err_of(rill.static, WWW,
      {dotfiles = "maybe"}))
    assert.matches("precompressed", err_of(rill.static, WWW, {precompressed = {"zstd"}}))
    local app = rill.router()
    local e = err_of(app.static, app, "nope", WWW)
    assert.matches("app:static: the prefix must be a string starting with /", e)
    e = err_of(function() app:static("/", WWW, {symlinks = "sometimes"}) end)
    assert.matches("static_spec.lua:%d+: app:static: option symlinks", e)
  end)
end)
