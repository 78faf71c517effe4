-- wrk script for bench/security: bench/count.lua (the same POST, body and
-- RESULT line as bench/publish) plus one credential header from the
-- environment: HEADER_NAME and HEADER_VALUE (e.g. X-API-Key, or
-- Authorization: Bearer <jwt>). Basic credentials come through count.lua's
-- AUTH.

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "count.lua")

local name = os.getenv("HEADER_NAME")
if name then
    wrk.headers[name] = os.getenv("HEADER_VALUE")
end
