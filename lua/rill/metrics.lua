-- rill.metrics: what the workers counted (core/worker.h), summed across
-- workers, as a table (rill.metrics.collect) or in Prometheus's text
-- exposition format (rill.metrics.text, app:metrics). Each worker keeps its
-- own counters in C with plain stores; a scrape reads every worker's with
-- relaxed loads, so the request path takes no lock.
local core = require "rill.core"

local format, concat = string.format, table.concat

local M = {}

local classes = {"1xx", "2xx", "3xx", "4xx", "5xx"}

-- rill.metrics.collect() → {workers =, requests =, responses = {["1xx"] =,
-- ..., ["5xx"] =, other =}, bytes_in =, bytes_out =, connections =,
-- websockets =, reloads =, lua_bytes =, buffers_pooled =, per_worker =
-- {{...}, ...}}: sums over the workers (reloads: the most any worker made);
-- per_worker has each worker's own, in worker order (worker ids from 0).
function M.collect()
  local per = core.metrics()
  local sum = {workers = #per, requests = 0, bytes_in = 0, bytes_out = 0, connections = 0,
    websockets = 0, reloads = 0, lua_bytes = 0, buffers_pooled = 0,
    responses = {other = 0}, per_worker = per}
  for _, c in ipairs(classes) do sum.responses[c] = 0 end
  for _, w in ipairs(per) do
    for _, k in ipairs({"requests", "bytes_in", "bytes_out", "connections", "websockets",
      "lua_bytes", "buffers_pooled"}) do
      sum[k] = sum[k] + w[k]
    end
    if w.reloads > sum.reloads then sum.reloads = w.reloads end
    local r = w.responses
    for i, c in ipairs(classes) do sum.responses[c] = sum.responses[c] + r[i] end
    sum.responses.other = sum.responses.other + r[0]
    -- by class name, for per_worker's readers too
    w.responses = {other = r[0]}
    for i, c in ipairs(classes) do w.responses[c] = r[i] end
  end
  return sum
end

local function num(n) return format("%.0f", n) end

-- rill.metrics.text() → the Prometheus text format (version 0.0.4) of
-- collect(): counters end in _total; memory and buffer gauges are per
-- worker, with a worker label.
function M.text()
  local m = M.collect()
  local out = {}
  local function metric(name, kind, help, samples)
    out[#out + 1] = "# HELP " .. name .. " " .. help
    out[#out + 1] = "# TYPE " .. name .. " " .. kind
    for _, s in ipairs(samples) do
      out[#out + 1] = name .. (s[1] or "") .. " " .. num(s[2])
    end
  end
  local by_class = {}
  for _, c in ipairs(classes) do by_class[#by_class + 1] = {'{class="' .. c .. '"}', m.responses[c]} end
  metric("rill_requests_total", "counter", "HTTP responses sent, by status class.", by_class)
  metric("rill_requests_dispatched_total", "counter", "HTTP requests given to a handler.",
    {{nil, m.requests}})
  metric("rill_received_bytes_total", "counter", "Bytes read from sockets.", {{nil, m.bytes_in}})
  metric("rill_sent_bytes_total", "counter",
    "Bytes written to sockets (files sent by sendfile not included).", {{nil, m.bytes_out}})
  metric("rill_connections", "gauge", "Connections open now.", {{nil, m.connections}})
  metric("rill_websockets", "gauge", "WebSockets open now.", {{nil, m.websockets}})
  metric("rill_reloads_total", "counter", "App reloads since the start.", {{nil, m.reloads}})
  metric("rill_workers", "gauge", "Worker threads.", {{nil, m.workers}})
  local lua, bufs = {}, {}
  for i, w in ipairs(m.per_worker) do
    local label = '{worker="' .. (i - 1) .. '"}'
    lua[#lua + 1] = {label, w.lua_bytes}
    bufs[#bufs + 1] = {label, w.buffers_pooled}
  end
  metric("rill_lua_memory_bytes", "gauge", "Memory of the worker's Lua state.", lua)
  metric("rill_buffers_pooled", "gauge", "Idle 64 KiB buffers in the worker's pool.", bufs)
  out[#out + 1] = ""
  return concat(out, "\n")
end

return M
