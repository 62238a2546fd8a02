-- The HTTP client (lua/rill/client.lua): whom a pooled connection is shared
-- with. (Bodies, timeouts and the proxy on top of the client are in
-- proxy_spec.lua.)
local rill = require "rill"
local helper = require "spec.helper"
local client = require "rill.client"

local SYSTEM_CA = "/etc/ssl/certs/ca-certificates.crt"

-- GET url with opts; returns status and the whole body, or nil, err.
local function get(url, opts)
  local o = {url = url}
  for k, v in pairs(opts or {}) do o[k] = v end
  local res, err = rill.http.request(o)
  if not res then return nil, err end
  return res.status, assert(res.body:read_all(1e6))
end

describe("http client pool", function()
  local dir
  setup(function() dir = helper.certs() end)

  describe("over https", function()
    local l, url
    before_each(function()
      l = helper.listen(function(req, res) res:send("secret") end,
        {tls = {cert = dir .. "/a.test.crt", key = dir .. "/a.test.key"}})
      url = ("https://a.test:%d/"):format(l:port())
    end)
    after_each(function() l:close() end)

    -- To the system CA bundle our test CA is unknown: a.test's certificate
    -- is as good as self-signed, as a man in the middle's would be.
    it("never gives a verifying request a connection opened with verify = false", function()
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {verify = false}})})
      local status, err = get(url, {address = "127.0.0.1"})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
      status, err = get(url, {address = "127.0.0.1", tls = {ca = SYSTEM_CA}})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
    end)

    it("never gives a request a connection verified against another CA file", function()
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {ca = dir .. "/ca.crt"}})})
      local status, err = get(url, {address = "127.0.0.1", tls = {ca = SYSTEM_CA}})
      assert.is_nil(status)
      assert.matches("^connect: certificate verify failed", err)
    end)

    it("shares a connection between requests with the same TLS options only", function()
      local same = {address = "127.0.0.1", tls = {ca = dir .. "/ca.crt", handshake_timeout = 5}}
      assert.same({200, "secret"}, {get(url, same)})
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1",
        tls = {ca = dir .. "/ca.crt", handshake_timeout = 9}})})
      assert.equal(1, l:connections())
      assert.same({200, "secret"}, {get(url, {address = "127.0.0.1", tls = {verify = false}})})
      assert.equal(2, l:connections())
      assert.equal(1, client.pooled(client.pool_key{url = url, address = "127.0.0.1",
        tls = {ca = dir .. "/ca.crt"}}))
    end)
  end)

  it("never gives a request with an address override a connection to another address",
    function()
      local a = helper.listen(function(req, res) res:send("A") end)
      local port = a:port()
      local b = assert(rill.http.listen{host = "127.0.0.2", port = port,
        handler = function(req, res) res:send("B") end})
      finally(function()
        a:close()
        b:close()
      end)
      local url = ("http://127.0.0.1:%d/"):format(port)
      assert.same({200, "A"}, {get(url)})
      assert.same({200, "B"}, {get(url, {address = "127.0.0.2"})})
      assert.same({200, "B"}, {get(url, {address = "127.0.0.2"})})
      assert.same({200, "A"}, {get(url)})
      assert.equal(1, a:connections())
      assert.equal(1, b:connections())
    end)
end)
