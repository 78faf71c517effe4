-- wrk script for bench/latency_probe.py: with one connection per thread
-- (-tN -cN), each answer of a probe build (X-Zmq-Probe: <read> <answered>,
-- CLOCK_MONOTONIC microseconds) splits the request's time into
--   in    the request written by wrk -> its body read by the worker
--   gw    read -> answered (inside the gateway)
--   out   answered -> the whole answer read by wrk
-- done() prints their p50/p99 and the total's on one line:
--   PROBE n=<count> in=<p50>/<p99> gw=... out=... total=... (ms)

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } zmq_timespec_t;
int clock_gettime(int clk, zmq_timespec_t *ts);
]]
local ts = ffi.new("zmq_timespec_t")

local function now()
    ffi.C.clock_gettime(1, ts)      -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local size = tonumber(os.getenv("BODY_SIZE") or "256")
local body = string.rep("x", size)
local threads = {}
local sent = 0
local buf, chunks = {}, {}
-- what done() reads with thread:get(): a string (wrk 4.1 crashes copying
-- a table of tables between Lua states), renewed every 100 answers
ser = ""

function setup(thread)
    table.insert(threads, thread)
end

function request()
    sent = now()
    return wrk.format("POST", nil, {["Content-Type"] = "text/plain"}, body)
end

function response(status, headers, b)
    local t = now()
    local h = headers["X-Zmq-Probe"]
    if h then
        local rd, an = h:match("(%d+) (%d+)")
        rd, an = tonumber(rd), tonumber(an)
        buf[#buf + 1] = string.format("%d %d %d %d", rd - sent, an - rd,
                                      t - an, t - sent)
    end
    if #buf == 100 then
        chunks[#chunks + 1] = table.concat(buf, ",")
        buf = {}
        ser = table.concat(chunks, ",")
    end
end

local function pct(xs, p)
    table.sort(xs)
    local i = math.floor(#xs * p) + 1
    if i > #xs then i = #xs end
    return (xs[i] or 0) / 1000
end

function done(summary, latency, requests)
    local cols = {{}, {}, {}, {}}
    for _, th in ipairs(threads) do
        for a, b, c, d in (th:get("ser") or ""):gmatch(
                "(-?%d+) (-?%d+) (-?%d+) (-?%d+)") do
            local s = {tonumber(a), tonumber(b), tonumber(c), tonumber(d)}
            for k = 1, 4 do
                table.insert(cols[k], s[k])
            end
        end
    end
    local out = string.format("PROBE n=%d", #cols[1])
    for k, name in ipairs({"in", "gw", "out", "total"}) do
        out = out .. string.format(" %s=%.3f/%.3f", name,
                                   pct(cols[k], 0.5), pct(cols[k], 0.99))
    end
    local mx = 0
    for _, v in ipairs(cols[4]) do if v > mx then mx = v end end
    out = out .. string.format(" maxtotal=%.3f wrkmax=%.3f wrkn=%d", mx / 1000,
                               latency.max / 1000, summary.requests)
    out = out .. string.format(" wrk=%.3f/%.3f rate=%.0f",
                               latency:percentile(50) / 1000,
                               latency:percentile(99) / 1000,
                               summary.requests / (summary.duration / 1e6))
    io.write(out .. "\n")
end
