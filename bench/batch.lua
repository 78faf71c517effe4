-- wrk script for bench/batch: POST one NDJSON batch (BATCH lines, each a
-- JSON string of BODY_SIZE bytes, quotes included) and count the lines
-- answered 202 in each 200 answer's results.
--
-- A response() callback costs the load generator a Lua call per answer;
-- with 100 messages per answer that is 1/100 of what bench/count.lua
-- avoids, and it is the only way to count per-line results. Each wrk
-- thread counts in its own Lua state; done() adds them up (setup() keeps
-- every thread).
--
-- With KEYS set (the idempotency cases) the body is BODY_SIZE bytes of
-- text/plain, one message per request, and every request carries a header
-- with a value unique in the run: Idempotency-Key when KEYS is "key", the
-- neutral X-Bench-Seq (same length, ignored by the gateway) when KEYS is
-- "seq", so that both cases cost the client the same.

local size = tonumber(os.getenv("BODY_SIZE") or "256")
local batch = tonumber(os.getenv("BATCH") or "100")
local keys = os.getenv("KEYS")
local prefix = os.getenv("KEY_PREFIX") or "k"

local threads = {}
local counter = 1

function setup(thread)
    thread:set("id", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

wrk.method = "POST"

if keys then
    wrk.body = string.rep("x", size)
    wrk.headers["Content-Type"] = "text/plain"
else
    local line = '"' .. string.rep("x", size - 2) .. '"\n'
    wrk.body = string.rep(line, batch)
    wrk.headers["Content-Type"] = "application/x-ndjson"
end

function init(args)
    lines = 0           -- lines answered 202 (batch), or 2xx answers
    others = 0          -- lines with another status, or other answers
    seq = 0
end

if keys then
    local name = keys == "key" and "Idempotency-Key" or "X-Bench-Seq"

    function request()
        seq = seq + 1
        local h = {}
        h[name] = string.format("%s-%d-%012d", prefix, id, seq)
        return wrk.format(nil, nil, h)
    end

    function response(status, headers, body)
        if status >= 200 and status < 300 then
            lines = lines + 1
        else
            others = others + 1
        end
    end
else
    function response(status, headers, body)
        if status == 200 then
            local _, n = string.gsub(body, '"status":%s*202', "")
            lines = lines + n
            others = others + (batch - n)
        else
            others = others + batch
        end
    end
end

function done(summary, latency, requests)
    local ok, bad = 0, 0
    for _, t in ipairs(threads) do
        ok = ok + t:get("lines")
        bad = bad + t:get("others")
    end
    io.write(string.format("RESULT ok=%d bad=%d requests=%d rate=%.1f " ..
                           "p50_ms=%.2f p99_ms=%.2f\n", ok, bad,
                           summary.requests,
                           ok / (summary.duration / 1e6),
                           latency:percentile(50) / 1000,
                           latency:percentile(99) / 1000))
end
