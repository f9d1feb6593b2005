-- wrk script for scripts/bench-serve: POST /v1/preview, cycling through the request bodies of a
-- file (one JSON body a line: every (venture, block) of the graph), each thread from its own
-- offset; at the end one line `bench-serve-wrk {JSON}` with the counts and latency percentiles
-- (microseconds), parsed by bench/serve/report.py.
--
--   wrk -t2 -c64 -d30s --latency -s bench/serve/preview.lua http://HOST:PORT -- BODIES_FILE

local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

local bodies = {}
local next_body = 1

function init(args)
  local path = args[1] or error("usage: wrk ... -s preview.lua URL -- BODIES_FILE")
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  file:close()
  assert(#bodies > 0, "no request bodies in " .. path)
  -- Threads start apart in the list, so they do not ask the same pairs at the same time.
  next_body = (index * 7919) % #bodies + 1
  wrk.method = "POST"
  wrk.path = "/v1/preview"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/v1/preview", nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'bench-serve-wrk {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "stdev": %.1f, "p50": %d, "p75": %d, "p90": %d, ' ..
    '"p99": %d, "p999": %d, "max": %d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency:percentile(50), latency:percentile(75),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
end
