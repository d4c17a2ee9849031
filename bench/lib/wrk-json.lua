-- wrk script: GET one path with the given headers, and print a JSON summary at the end
-- (requests/s, latency percentiles in microseconds, errors, status codes other than 2xx/3xx).
-- Headers come from the environment: WRK_HEADERS="Name: value\nName2: value2".
local hdrs = os.getenv("WRK_HEADERS") or ""
for line in string.gmatch(hdrs, "[^\n]+") do
  local k, v = string.match(line, "^([^:]+):%s*(.*)$")
  if k then wrk.headers[k] = v end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nWRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"rps":%.2f,"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
    summary.requests, summary.duration, summary.bytes, summary.requests / (summary.duration / 1e6),
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    e.connect, e.read, e.write, e.status, e.timeout))
end
