-- wrk script for bench/publish: POST a fixed body; count answers by status.
-- BODY_SIZE, AUTH and PAYLOAD_JSON come from the environment.
--
-- No response() callback: with one, wrk hands every response to Lua, which
-- costs the load generator more CPU than NGINX spends answering, on the
-- same two cores the servers use. wrk counts answers with status >= 400
-- itself (summary.errors.status); the services measured here answer only
-- 2xx or >= 400, so ok = requests - status errors.

local size = tonumber(os.getenv("BODY_SIZE") or "256")
local auth = os.getenv("AUTH")
local json = os.getenv("PAYLOAD_JSON")

wrk.method = "POST"
wrk.body = json or string.rep("x", size)
wrk.headers["Content-Type"] = json and "application/json" or "text/plain"
if auth then
    wrk.headers["Authorization"] = "Basic " .. auth
end

function done(summary, latency, requests)
    local bad = summary.errors.status
    io.write(string.format("RESULT ok=%d bad=%d rate=%.1f p50_ms=%.2f " ..
                           "p99_ms=%.2f\n", summary.requests - bad, bad,
                           summary.requests / (summary.duration / 1e6),
                           latency:percentile(50) / 1000,
                           latency:percentile(99) / 1000))
end
