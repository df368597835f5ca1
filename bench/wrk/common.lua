-- Shared by every bench script: print wrk's exact statistics as one JSON line
-- (bench/core.py parses it), instead of the rounded text report.
local M = {}

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

-- Optional think time (ms) before each request: wrk has no rate option, so the
-- soak reaches "half the saturation rate" with a fixed delay per connection.
function M.delay_from_env()
  local ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
  if ms > 0 then
    return function() return ms end
  end
  return nil
end

return M
