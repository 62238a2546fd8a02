-- What happens when a handler raises, and when a response is over: the
-- error answer (the app's on_error, or the default), and res:on_finish's
-- callbacks. rill.http's dispatch calls these; apps reach them through
-- app:on_error, res:on_finish and rill.http.abort.
--
-- An error object is a table {status =, message =, headers =}: status an
-- integer 400-599, message (optional) the plain-text body, headers
-- (optional) a table name → value added to the answer. The default answer
-- to one is its status and message; to anything else, 500. rill.http.abort
-- raises one. Errors other than 4xx error objects are logged with a
-- traceback.
local core = require "rill.core"

local getmetatable, setmetatable, type, tostring, pcall, xpcall = getmetatable, setmetatable,
  type, tostring, pcall, xpcall
local traceback, lower = debug.traceback, string.lower
local now, log = core.now, core.log

local M = {}

-- Reason phrases for the default answer's body.
local REASONS = {
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required",
  [403] = "Forbidden", [404] = "Not Found", [405] = "Method Not Allowed",
  [406] = "Not Acceptable", [407] = "Proxy Authentication Required",
  [408] = "Request Timeout", [409] = "Conflict", [410] = "Gone", [411] = "Length Required",
  [412] = "Precondition Failed", [413] = "Content Too Large", [414] = "URI Too Long",
  [415] = "Unsupported Media Type", [416] = "Range Not Satisfiable",
  [417] = "Expectation Failed", [418] = "I'm a teapot", [421] = "Misdirected Request",
  [422] = "Unprocessable Content", [423] = "Locked", [424] = "Failed Dependency",
  [425] = "Too Early", [426] = "Upgrade Required", [428] = "Precondition Required",
  [429] = "Too Many Requests", [431] = "Request Header Fields Too Large",
  [451] = "Unavailable For Legal Reasons", [500] = "Internal Server Error",
  [501] = "Not Implemented", [502] = "Bad Gateway", [503] = "Service Unavailable",
  [504] = "Gateway Timeout", [505] = "HTTP Version Not Supported",
  [506] = "Variant Also Negotiates", [507] = "Insufficient Storage", [508] = "Loop Detected",
  [511] = "Network Authentication Required",
}
M.REASONS = REASONS

local function is_error_object(v)
  if type(v) ~= "table" then return false end
  local s = v.status
  return type(s) == "number" and s % 1 == 0 and s >= 400 and s <= 599
end
M.is_error_object = is_error_object

local ErrorObject = {__name = "rill.http.error"}
ErrorObject.__tostring = function(e)
  return e.status .. " " .. (e.message or REASONS[e.status] or "")
end

-- rill.http.abort(status [, message [, headers]]): raises an error object;
-- the request is answered with status and message (see the top).
function M.abort(status, message, headers)
  if type(status) ~= "number" or status % 1 ~= 0 or status < 400 or status > 599 then
    error("rill.http.abort: status must be an integer 400-599, got " .. tostring(status), 2)
  end
  if message ~= nil and type(message) ~= "string" then
    error("rill.http.abort: message must be a string, got " .. type(message), 2)
  end
  if headers ~= nil and type(headers) ~= "table" then
    error("rill.http.abort: headers must be a table, got " .. type(headers), 2)
  end
  error(setmetatable({status = status, message = message, headers = headers}, ErrorObject), 0)
end

-- An unexpected error and its traceback, taken where it was raised.
local Failure = {}

-- xpcall's message handler for handlers: a 4xx error object is the app's
-- answer and passes as it is; anything else keeps its traceback.
function M.caught(e)
  if is_error_object(e) and e.status < 500 then return e end
  local msg
  if type(e) == "string" then
    msg = e
  elseif is_error_object(e) then
    msg = "error " .. e.status .. (e.message and ": " .. e.message or "")
  else
    local mt = getmetatable(e)
    msg = mt and mt.__tostring and tostring(e) or "(error object is a " .. type(e) .. " value)"
  end
  return setmetatable({err = e, trace = traceback(msg, 2)}, Failure)
end

-- Unwraps what caught() returned: the error value, logged if unexpected.
local function unwrap(e, what)
  if getmetatable(e) == Failure then
    log("error", "error in " .. what .. ": " .. e.trace)
    return e.err, true
  end
  return e, false
end

-- Headers a handler set for the body it meant to send; the error answer
-- has a body of its own.
local BODY_HEADERS = {["content-type"] = true, ["content-length"] = true,
  ["content-encoding"] = true, ["transfer-encoding"] = true}

-- The default answer to err: its status and message if it is an error
-- object, else 500.
local function answer(err, res)
  local status, body, headers = 500, nil, nil
  if is_error_object(err) then status, body, headers = err.status, err.message, err.headers end
  local h = res._h
  for i = #h - 1, 1, -2 do
    if type(h[i]) == "string" and BODY_HEADERS[lower(h[i])] then
      table.remove(h, i + 1)
      table.remove(h, i)
    end
  end
  res._status = status
  if headers then
    for k, v in pairs(headers) do res:header(k, v) end
  end
  res:header("Content-Type", "text/plain; charset=utf-8")
  return res:send((body or REASONS[status] or "Error") .. "\n")
end

-- Whether an answer may still be given: nothing of the response went, as
-- the connection sees it (res's flags are set back, in case a response
-- failed to start, as res:send with a bad header). Otherwise res is settled:
-- a started response is cut (the connection is reset when the handler is
-- done, so that the client does not take a part for the whole); one that
-- ended, or a request that is over (its connection gone or upgraded), is
-- left as it is. Returns true, or false and "ended", "started" or nil.
local function can_answer(res)
  local c, g = res._c, res._g
  local ok, state = pcall(c._response, c, g)
  if ok and state == "none" then
    res.headers_sent, res.finished = false, false
    return true
  end
  res.headers_sent, res.finished = true, true
  if ok and state == "started" then pcall(c._cut, c, g) end
  return false, ok and state or nil
end

-- The handler raised e (as caught() left it). While nothing of the
-- response went, the app's on_error(err, req, res) answers, or the default
-- does (also when on_error raises, or returns without answering). After a
-- complete response (res:send twice, next() twice, res:header after
-- res:send) the response stays delivered and the connection goes on; the
-- misuse was logged with the user's file and line.
function M.failed(e, req, res)
  local err, logged = unwrap(e, "request handler")
  local ok, state = can_answer(res)
  if not ok then
    if state == "ended" and not logged then
      log("warn", "request handler: error " .. tostring(err.status) ..
        " raised after the response was sent; it stays as it was")
    end
    return
  end
  local hook = res._on_error
  if hook then
    local hok, herr = xpcall(hook, M.caught, err, req, res)
    if hok and res.headers_sent then return end -- answered (dispatch ends a streamed answer)
    if not hok then err = unwrap(herr, "on_error") end
    if not can_answer(res) then return end
  end
  local aok, aerr = pcall(answer, err, res)
  if not aok then
    -- (a header the handler set that cannot go out): a bare 500 then
    log("error", "error in the error answer: " .. tostring(aerr))
    res._h, res.headers_sent, res.finished = {}, false, false
    pcall(answer, nil, res)
  end
end

local function index(t, k) return t[k] end

-- Runs res's on_finish callbacks, once: fn(status, bytes, ms) with the
-- status the response went with, the body bytes the connection took (not
-- the head nor chunk framing; 0 for HEAD, 1xx, 204 and 304; bytes taken may
-- still be on their way when fn runs), and the milliseconds since the
-- request came (its head was read; the loop's clock, to the ms). Each
-- callback's error is logged; the others still run.
function M.finished(req, res)
  local list = res._on_finish
  res._on_finish = nil
  local status, bytes = res._status, res._sent
  if type(status) ~= "number" then status = tonumber(status) or 0 end
  if status < 200 or status == 204 or status == 304 then
    bytes = 0
  elseif bytes > 0 then
    local ok, m = pcall(index, req, "method")
    if ok and m == "HEAD" then bytes = 0 end
  end
  local ms = now() - res._t0
  for i = 1, #list do
    local ok, e = xpcall(list[i], traceback, status, bytes, ms)
    if not ok then log("error", "error in on_finish: " .. tostring(e)) end
  end
end

return M
