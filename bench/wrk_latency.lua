-- wrk script for figure 1 (bench/run.py): stop after N answers (env
-- WRK_REQUESTS, default 5000), say so on stderr (the harness then sends
-- SIGINT, which ends wrk's run early) and print p50/p99/max in microseconds as JSON.
local limit = tonumber(os.getenv("WRK_REQUESTS") or "5000")
local count = 0

function response(status, headers, body)
  count = count + 1
  if count >= limit then
    wrk.thread:stop()
    if count == limit then
      io.stderr:write("limit reached\n")
      io.stderr:flush()
    end
  end
end

function done(summary, latency, requests)
  io.write(string.format(
    '{"n": %d, "errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.errors.status + summary.errors.read + summary.errors.write
      + summary.errors.timeout + summary.errors.connect,
    latency:percentile(50), latency:percentile(99), latency.max))
end
