-- wrk script for bench/publish: POST a fixed body, count answers by status.
-- BODY_SIZE, AUTH and PAYLOAD_JSON come from the environment.

local size = tonumber(os.getenv("BODY_SIZE") or "256")
local auth = os.getenv("AUTH")
local json = os.getenv("PAYLOAD_JSON")

wrk.method = "POST"
wrk.body = json or string.rep("x", size)
wrk.headers["Content-Type"] = json and "application/json" or "text/plain"
if auth then
    wrk.headers["Authorization"] = "Basic " .. auth
end

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    ok = 0
    bad = 0
end

function response(status, headers, body)
    if status >= 200 and status < 300 then
        ok = ok + 1
    else
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local o, b = 0, 0
    for _, t in ipairs(threads) do
        o = o + t:get("ok")
        b = b + t:get("bad")
    end
    io.write(string.format("RESULT ok=%d bad=%d rate=%.1f p50_ms=%.2f " ..
                           "p99_ms=%.2f\n", o, b,
                           summary.requests / (summary.duration / 1e6),
                           latency:percentile(50) / 1000,
                           latency:percentile(99) / 1000))
end
