-- Server-sent events (rill.sse, res:sse()): read by a Python client that
-- parses the stream as the HTML standard's event-stream algorithm says.
local rill = require "rill"
local helper = require "spec.helper"

-- Reads events from argv[1] (a URL) with urllib, parsing the stream as a
-- browser does; prints the response headers on one line, then each event
-- on a line as it is dispatched, with the wall-clock time it came; stops
-- after argv[2] events. A line is name=value fields apart by tabs, with
-- backslash, tab, CR and LF escaped.
local CLIENT = [[
import sys, time, urllib.request
def show(fields):
    esc = lambda v: str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\r", "\\r").replace("\n", "\\n")
    print("\t".join("%s=%s" % (k, esc(v)) for k, v in fields.items() if v is not None), flush=True)
resp = urllib.request.urlopen(sys.argv[1], timeout=10)
show({"status": resp.status, "content-type": resp.headers["Content-Type"],
      "cache-control": resp.headers["Cache-Control"],
      "x-accel-buffering": resp.headers["X-Accel-Buffering"]})
want = int(sys.argv[2])
event, data, last_id, retry, got = "", [], "", None, 0
while got < want:
    raw = resp.readline()
    if not raw:
        break
    line = raw.decode("utf-8").rstrip("\r\n")
    if line == "":
        if data:
            show({"event": event or "message", "data": "\n".join(data), "id": last_id,
                  "retry": retry, "at": repr(time.time())})
            got += 1
        event, data = "", []
        continue
    if line.startswith(":"):
        continue
    name, _, value = line.partition(":")
    if value.startswith(" "):
        value = value[1:]
    if name == "event":
        event = value
    elif name == "data":
        data.append(value)
    elif name == "id":
        last_id = value
    elif name == "retry" and value.isdigit():
        retry = int(value)
resp.close()
]]

describe("server-sent events", function()
  local l, client_path
  setup(function()
    client_path = os.tmpname() .. ".py"
    local f = assert(io.open(client_path, "w"))
    f:write(CLIENT)
    f:close()
  end)
  teardown(function() os.remove(client_path) end)
  after_each(function()
    if l then l:close() end
    l = nil
  end)

  -- Starts the client on url for n events; returns a function that gives
  -- its next line as a table (status, retry and at as numbers), and the
  -- process.
  local function client(url, n)
    local p = assert(rill.exec{"python3", client_path, url, tostring(n), stdout = "pipe",
      stderr = "pipe"})
    p.stdout:settimeout(10000)
    local function next_line()
      local line, err = p.stdout:read_until("\n")
      if not line then
        error("the client stopped (" .. tostring(err) .. "): " ..
          tostring(p.stderr:read_all()))
      end
      local t = {}
      local unescape = {n = "\n", r = "\r", t = "\t", ["\\"] = "\\"}
      for k, v in line:gmatch("([^\t=]+)=([^\t]*)") do
        v = v:gsub("\\(.)", unescape)
        t[k] = (k == "status" or k == "retry" or k == "at") and tonumber(v) or v
      end
      return t
    end
    return next_line, p
  end

  it("sends events a client parses: event, multi-line data, id, retry; comments ignored",
    function()
      local port
      l, port = helper.listen(function(req, res)
        local w = res:sse()
        assert(w:send{event = "greet", data = "hello\nworld", id = "1"})
        assert(w:comment("keep-alive"))
        assert(w:send{data = "two\r\nlines\rthree", retry = 1500})
        assert(w:send(42))
        assert(w:send{data = "", id = 7})
        w:close()
      end)
      local next_line, p = client(("http://127.0.0.1:%d/events"):format(port), 4)
      local head = next_line()
      assert.same({status = 200, ["content-type"] = "text/event-stream; charset=utf-8",
        ["cache-control"] = "no-cache", ["x-accel-buffering"] = "no"}, head)
      local e = next_line()
      assert.same({"greet", "hello\nworld", "1"}, {e.event, e.data, e.id})
      e = next_line()
      assert.same({"message", "two\nlines\nthree", "1", 1500}, {e.event, e.data, e.id, e.retry})
      e = next_line()
      assert.same({"message", "42"}, {e.event, e.data})
      assert.equal(0, p:wait(10000))
    end)

  it("writes the exact event-stream bytes", function()
    local port
    l, port = helper.listen(function(req, res)
      local w = res:sse()
      w:send{event = "a", data = "x\ny", id = 3, retry = 10}
      w:comment("one\ntwo")
      w:comment()
    end)
    local code, out = helper.curl(("http://127.0.0.1:%d/"):format(port))
    assert.equal(0, code)
    assert.equal("event: a\nid: 3\nretry: 10\ndata: x\ndata: y\n\n: one\n: two\n\n:\n\n", out)
  end)

  it("flushes each event: it leaves while the handler runs on without waiting", function()
    local port
    local busy_until
    l, port = helper.listen(function(req, res)
      local w = res:sse()
      w:send{data = "first"}
      -- no wait for 300 ms: without the flush the event would leave after
      local t = rill.now()
      while rill.now() - t < 300 do end
      busy_until = rill.time()
      w:send{data = "second"}
    end)
    local next_line, p = client(("http://127.0.0.1:%d/"):format(port), 2)
    next_line()
    local first = next_line()
    assert.equal("first", first.data)
    local second = next_line()
    assert.equal("second", second.data)
    assert.is_true(first.at < busy_until - 0.1,
      ("the first event came at %f, the handler was busy until %f"):format(first.at, busy_until))
    p:wait(10000)
  end)

  it("refuses CR and LF in event and id, and tables as data, at the caller's line", function()
    local errs = {}
    local port
    l, port = helper.listen(function(req, res)
      local w = res:sse()
      for _, ev in ipairs({{event = "a\nb", data = "x"}, {id = "1\r", data = "x"},
        {data = {1}}, {retry = -1}, {}}) do
        local ok, err = pcall(function() w:send(ev) end)
        errs[#errs + 1] = not ok and err or "sent"
      end
      w:send{data = "fine"}
    end)
    local code, out = helper.curl(("http://127.0.0.1:%d/"):format(port))
    assert.equal(0, code)
    assert.equal("data: fine\n\n", out)
    assert.matches("sse_spec%.lua:%d+: sse send: event must be a string without CR, LF or NUL",
      errs[1])
    assert.matches("sse_spec%.lua:%d+: sse send: id must be", errs[2])
    assert.matches("sse_spec%.lua:%d+: sse send: data must be a string or a number, got table",
      errs[3])
    assert.matches("sse send: retry must be a non%-negative integer", errs[4])
    assert.matches("sse send: nothing to send", errs[5])
  end)

  it("tells the handler the client has gone: a send returns nil and why", function()
    local result
    local port
    l, port = helper.listen(function(req, res)
      local w = res:sse()
      while true do
        local ok, err = w:send{data = "tick"}
        if not ok then
          result = err
          return
        end
        rill.sleep(20)
      end
    end)
    local next_line, p = client(("http://127.0.0.1:%d/"):format(port), 1)
    next_line()
    assert.equal("tick", next_line().data)
    assert.equal(0, p:wait(10000))
    for _ = 1, 500 do
      if result then break end
      rill.sleep(10)
    end
    assert.is_string(result)
  end)
end)
