-- GET <url> with "Authorization: Bearer $BENCH_TOKEN" (or no header when unset).
-- No request() function: wrk builds the request once, so the load generator
-- spends its core on sockets, not Lua.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local token = os.getenv("BENCH_TOKEN")
if token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end
delay = common.delay_from_env()
done = common.done
