-- GET / → "Hello, world!"   rill serve examples/hello.lua
return function(req, res)
  res:header("Content-Type", "text/plain")
  res:send("Hello, world!")
end
