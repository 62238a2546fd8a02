-- wrk script for the harness:  wrk ... -s wrk.lua URL -- DEPTH
-- DEPTH > 1 sends DEPTH requests per write (HTTP pipelining); with DEPTH 1
-- no request() is defined, so wrk keeps its fast static request buffer.
-- done() prints one line the harness parses: "RESULT requests=N ...".

function init(args)
  local depth = tonumber(args[1]) or 1
  if depth > 1 then
    local batch = string.rep(wrk.format(), depth)
    request = function() return batch end
  end
end

function done(summary, latency)
  local e = summary.errors
  io.write(("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d " ..
    "errors_connect=%d errors_read=%d errors_write=%d errors_status=%d errors_timeout=%d\n")
    :format(summary.requests, summary.duration, latency:percentile(50),
      latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
