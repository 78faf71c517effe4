-- wrk script for bench/rpc: POST a body unique to each request and check
-- that its answer is 2xx with that body (the responder echoes it).
-- BODY_SIZE comes from the environment (at least 16).
--
-- Each body starts with 16 hex digits: the wrk thread, then a count, and
-- is padded with 'x'. A thread keeps the keys of its requests still
-- waiting; an answer counts as ok when it is 2xx, its body is BODY_SIZE
-- bytes, starts with a key still waiting (which it then removes) and
-- carries the padding. Anything else is bad: another status, another
-- body, a body answered twice. (wrk does not tell which connection an
-- answer came on, so two requests' answers swapped with each other would
-- pass; the gateway matches replies by correlation id, not by body.)
--
-- Requests still waiting when wrk stops are not counted either way.

local threads = {}

function setup(thread)
    table.insert(threads, thread)
    thread:set("id", #threads)
end

local size = tonumber(os.getenv("BODY_SIZE") or "256")
local pad = string.rep("x", size - 16)
local n = 0
local waiting = {}

ok = 0
bad = 0

-- the request up to its body, formatted once (wrk.format per request
-- costs the load generator more CPU than the check below)
local head

function init(args)
    head = string.format("POST %s HTTP/1.1\r\nHost: %s\r\n" ..
                         "Content-Type: text/plain\r\n" ..
                         "Content-Length: %d\r\n\r\n",
                         wrk.path, wrk.headers["Host"] or wrk.host, size)
end

function request()
    n = n + 1
    local key = string.format("%02x%014x", id, n)
    waiting[key] = true
    return head .. key .. pad
end

function response(status, headers, body)
    local key = body:sub(1, 16)
    -- find() from 17 answers 17 when the padding is there (the length is
    -- already checked), without copying the body as sub() would
    if status >= 200 and status < 300 and #body == size and waiting[key]
       and body:find(pad, 17, true) == 17
    then
        waiting[key] = nil
        ok = ok + 1
    else
        bad = bad + 1
    end
end

function done(summary, latency, requests)
    local good, wrong = 0, 0
    for _, t in ipairs(threads) do
        good = good + t:get("ok")
        wrong = wrong + t:get("bad")
    end
    local e = summary.errors
    io.write(string.format("RESULT ok=%d bad=%d sockerr=%d rate=%.1f " ..
                           "p50_ms=%.2f p99_ms=%.2f\n", good, wrong,
                           e.connect + e.read + e.write + e.timeout,
                           good / (summary.duration / 1e6),
                           latency:percentile(50) / 1000,
                           latency:percentile(99) / 1000))
end
