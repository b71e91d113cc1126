-- wrk script for bench_latency.py: GET /related/{id}{QUERY} cycling through the ids in the file
-- $IDS (one per line); prints one JSON line with wrk's own latency percentiles when done.
local ids = {}
for line in io.lines(os.getenv("IDS")) do ids[#ids + 1] = line end
local query = os.getenv("QUERY") or ""
local n = 0

request = function()
  n = n + 1
  return wrk.format("GET", "/related/" .. ids[(n - 1) % #ids + 1] .. query)
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
