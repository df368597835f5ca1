-- POST /token/refresh, rotating a pool of refresh tokens (one use each).
--
-- $BENCH_TOKENS_FILE holds one refresh token per line, at least as many as
-- connections. Each request takes the oldest token of the pool; each 200
-- puts the rotated token back, so no token is ever sent twice (a reuse would
-- revoke its session, RFC 9700 4.14.2). Run with -t1: the pool is per thread.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local pool, first, last = {}, 1, 0

local function push(token)
  last = last + 1
  pool[last] = token
end

local function pop()
  if first > last then return nil end
  local token = pool[first]
  pool[first] = nil
  first = first + 1
  return token
end

function init(args)
  for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
    if line ~= "" then push(line) end
  end
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  -- An empty pool (only if tokens were lost to errors) sends a token that is
  -- certainly unknown: it shows up as a non-2xx, never as a reuse.
  local token = pop() or "exhausted"
  return wrk.format("POST", "/token/refresh", headers,
    '{"refresh_token":"' .. token .. '"}')
end

function response(status, hdrs, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then push(token) end
  end
end

delay = common.delay_from_env()
done = common.done
