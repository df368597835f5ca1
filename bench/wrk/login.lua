-- POST /login with the JSON body of $BENCH_EMAIL / $BENCH_PASSWORD.
local common = dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = string.format('{"email":"%s","password":"%s"}',
  os.getenv("BENCH_EMAIL"), os.getenv("BENCH_PASSWORD"))
delay = common.delay_from_env()
done = common.done
