/*
 * ngx_zmq core: the store's Lua scripts.
 *
 * Both run inside Redis, so a snapshot is consistent and a write is atomic.
 * Names are validated before they get here (letters, digits and ._:-@), so
 * they can be put into the event text without escaping.
 */

#include "zgw_store.h"


/* ARGV: the kinds. Returns {version, {name, json, ...} per kind}. */
const char  zgw_store_snapshot_lua[] =
    "local out = {redis.call('GET', 'zmq:version') or '0'}\n"
    "for _, kind in ipairs(ARGV) do\n"
    "  local names = redis.call('SMEMBERS', 'zmq:index:' .. kind)\n"
    "  table.sort(names)\n"
    "  local objs = {}\n"
    "  for _, n in ipairs(names) do\n"
    "    objs[#objs + 1] = n\n"
    "    objs[#objs + 1] = redis.call('GET', 'zmq:obj:' .. kind .. ':' .. n)"
    " or ''\n"
    "  end\n"
    "  out[#out + 1] = objs\n"
    "end\n"
    "return out\n";


/*
 * ARGV: expected version, then (op, kind, name, value) per change.
 * Returns the new version, or an error when the version moved.
 */
const char  zgw_store_apply_lua[] =
    "local cur = tonumber(redis.call('GET', 'zmq:version') or '0')\n"
    "if cur ~= tonumber(ARGV[1]) then\n"
    "  return redis.error_reply('CONFLICT the configuration changed "
    "(version ' .. cur .. ', expected ' .. ARGV[1] .. '); run the command "
    "again')\n"
    "end\n"
    "for i = 2, #ARGV, 4 do\n"
    "  local op, kind, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  local key = 'zmq:obj:' .. kind .. ':' .. name\n"
    "  if op == 'put' then\n"
    "    redis.call('SET', key, ARGV[i + 3])\n"
    "    redis.call('SADD', 'zmq:index:' .. kind, name)\n"
    "  else\n"
    "    redis.call('DEL', key)\n"
    "    redis.call('SREM', 'zmq:index:' .. kind, name)\n"
    "  end\n"
    "  cur = redis.call('INCR', 'zmq:version')\n"
    "  redis.call('PUBLISH', 'zmq:events', '{\"version\":' .. cur .. "
    "',\"kind\":\"' .. kind .. '\",\"name\":\"' .. name .. "
    "'\",\"op\":\"' .. op .. '\"}')\n"
    "end\n"
    "return cur\n";
