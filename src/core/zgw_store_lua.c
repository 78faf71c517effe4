/*
 * ngx_zmq core: the store's Lua scripts.
 *
 * Both run inside Redis, so a snapshot is consistent and a write is atomic.
 * Names are validated before they get here (letters, digits and ._:-@), so
 * they can be put into the event text without escaping.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "zgw_store.h"


/*
 * ARGV: the kinds. Returns {version, {name, json, ...} per kind,
 * {"kind:name", version, ...}}: the last element is zmq:objver, the
 * version at which each object was last written.
 */
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
    "out[#out + 1] = redis.call('HGETALL', 'zmq:objver')\n"
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
    "  if op == 'put' then\n"
    "    redis.call('HSET', 'zmq:objver', kind .. ':' .. name, cur)\n"
    "  else\n"
    "    redis.call('HDEL', 'zmq:objver', kind .. ':' .. name)\n"
    "  end\n"
    "  redis.call('PUBLISH', 'zmq:events', '{\"version\":' .. cur .. "
    "',\"kind\":\"' .. kind .. '\",\"name\":\"' .. name .. "
    "'\",\"op\":\"' .. op .. '\"}')\n"
    "end\n"
    "return cur\n";


/*
 * ARGV: expected version, the least new version, the event's op (a word),
 * then (op, kind, name, value) per change. The version moves once, to
 * max(current + 1, least). Returns it, or an error when the version moved.
 */
const char  zgw_store_replace_lua[] =
    "local cur = tonumber(redis.call('GET', 'zmq:version') or '0')\n"
    "if cur ~= tonumber(ARGV[1]) then\n"
    "  return redis.error_reply('CONFLICT the configuration changed "
    "(version ' .. cur .. ', expected ' .. ARGV[1] .. '); run the command "
    "again')\n"
    "end\n"
    "local v = math.max(cur + 1, tonumber(ARGV[2]))\n"
    "for i = 4, #ARGV, 4 do\n"
    "  local op, kind, name = ARGV[i], ARGV[i + 1], ARGV[i + 2]\n"
    "  local key = 'zmq:obj:' .. kind .. ':' .. name\n"
    "  if op == 'put' then\n"
    "    redis.call('SET', key, ARGV[i + 3])\n"
    "    redis.call('SADD', 'zmq:index:' .. kind, name)\n"
    "    redis.call('HSET', 'zmq:objver', kind .. ':' .. name, "
    "string.format('%d', v))\n"
    "  else\n"
    "    redis.call('DEL', key)\n"
    "    redis.call('SREM', 'zmq:index:' .. kind, name)\n"
    "    redis.call('HDEL', 'zmq:objver', kind .. ':' .. name)\n"
    "  end\n"
    "end\n"
    "redis.call('SET', 'zmq:version', string.format('%d', v))\n"
    "redis.call('PUBLISH', 'zmq:events', '{\"version\":' .. "
    "string.format('%d', v) .. ',\"op\":\"' .. ARGV[3] .. '\"}')\n"
    "return v\n";


static int zgw_store_snapshot_versions(const redisReply *list,
    zgw_config_t *cfg, zgw_errors_t *errs);


int
zgw_store_snapshot_argv(const char **argv)
{
    int  k, argc;

    argc = 0;
    argv[argc++] = "EVAL";
    argv[argc++] = zgw_store_snapshot_lua;
    argv[argc++] = "0";

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        argv[argc++] = zgw_kind_name(k);
    }

    return argc;
}


/*
 * A stored object that does not load is remembered in cfg->invalid[kind]
 * under its key's name, with the reasons (errs from index first on), so
 * that zmqctl can show it and delete or replace it.
 */
static void
zgw_store_invalid(zgw_config_t *cfg, int kind, const char *name,
    const zgw_errors_t *errs, size_t first)
{
    char    *reason, *p;
    size_t   i, len;

    if (errs == NULL) {
        json_object_set_new(cfg->invalid[kind], name, json_true());
        return;
    }

    len = 1;
    for (i = first; i < errs->n; i++) {
        len += strlen(errs->msgs[i]) + 2;
    }

    reason = malloc(len);
    if (reason == NULL) {
        json_object_set_new(cfg->invalid[kind], name, json_true());
        return;
    }

    p = reason;
    *p = '\0';

    for (i = first; i < errs->n; i++) {
        p += sprintf(p, "%s%s", i > first ? "; " : "", errs->msgs[i]);
    }

    json_object_set_new(cfg->invalid[kind], name, json_string(reason));
    free(reason);
}


static int
zgw_store_snapshot_object(zgw_config_t *cfg, int k, const redisReply *name,
    const redisReply *text, zgw_errors_t *errs)
{
    int            rc;
    char           where[ZGW_NAME_MAX + 64], shown[ZGW_SHOW_SIZE];
    json_t        *obj;
    json_error_t   jerr;

    /* the store's names and texts are shown printable and cut */
    snprintf(where, sizeof(where), "%s%s:%s", ZGW_KEY_OBJ, zgw_kind_name(k),
             zgw_show(shown, sizeof(shown), name->str, name->len));

    if (text->type != REDIS_REPLY_STRING || text->len == 0) {
        zgw_errors_add(errs, "%s: listed in %s%s but missing", where,
                       ZGW_KEY_INDEX, zgw_kind_name(k));
        return ZGW_ERROR;
    }

    obj = json_loadb(text->str, text->len, 0, &jerr);
    if (obj == NULL) {
        zgw_errors_add(errs, "%s: invalid JSON at %d:%d: %s", where,
                       jerr.line, jerr.column,
                       zgw_show(shown, sizeof(shown), jerr.text,
                                strlen(jerr.text)));
        return ZGW_ERROR;
    }

    if (!json_is_object(obj)
        || !json_is_string(json_object_get(obj, "name"))
        || strcmp(json_string_value(json_object_get(obj, "name")),
                  name->str) != 0)
    {
        zgw_errors_add(errs, "%s: the object's name does not match its key",
                       where);
        json_decref(obj);
        return ZGW_ERROR;
    }

    rc = zgw_config_put(cfg, k, obj, where, errs);
    json_decref(obj);
    return rc;
}


/*
 * The model's messages quote the values they refuse ("ack_mode 'x' is not
 * one of ..."): from the store, a hostile writer's bytes. What it added
 * since first becomes printable (as zgw_show() shows a text) before it is
 * logged: no line breaks or escape sequences from the store in a log.
 */
static void
zgw_store_printable(zgw_errors_t *errs, size_t first)
{
    size_t   i;
    char    *p;

    if (errs == NULL) {
        return;
    }

    for (i = first; i < errs->n; i++) {
        for (p = errs->msgs[i]; *p; p++) {
            if (!zgw_printable(*p)) {
                *p = '?';
            }
        }
    }
}


int
zgw_store_snapshot_parse(const redisReply *r, zgw_config_t *cfg,
    zgw_errors_t *errs)
{
    int           k, rc;
    char          shown[ZGW_SHOW_SIZE];
    size_t        i, first;
    redisReply   *list, *name;

    if (r->type == REDIS_REPLY_ERROR) {
        zgw_errors_add(errs, "redis: snapshot: %s",
                       zgw_show(shown, sizeof(shown), r->str, r->len));
        return ZGW_ERROR;
    }

    /* 1 + ZGW_KIND_MAX: a store written before objects had versions */
    if (r->type != REDIS_REPLY_ARRAY
        || (r->elements != 1 + ZGW_KIND_MAX
            && r->elements != 2 + ZGW_KIND_MAX)
        || r->element[0]->type != REDIS_REPLY_STRING)
    {
        zgw_errors_add(errs, "redis: snapshot: unexpected reply");
        return ZGW_ERROR;
    }

    rc = ZGW_OK;
    cfg->version = strtoll(r->element[0]->str, NULL, 10);

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        list = r->element[1 + k];

        if (list->type != REDIS_REPLY_ARRAY) {
            zgw_errors_add(errs, "redis: snapshot: unexpected reply");
            return ZGW_ERROR;
        }

        for (i = 0; i + 1 < list->elements; i += 2) {
            name = list->element[i];
            if (name->type != REDIS_REPLY_STRING) {
                zgw_errors_add(errs, "redis: snapshot: unexpected reply");
                return ZGW_ERROR;
            }

            first = errs != NULL ? errs->n : 0;

            if (zgw_store_snapshot_object(cfg, k, name, list->element[i + 1],
                                          errs)
                != ZGW_OK)
            {
                zgw_store_printable(errs, first);
                zgw_store_invalid(cfg, k, name->str, errs, first);
                rc = ZGW_ERROR;
            }
        }
    }

    if (r->elements == 2 + ZGW_KIND_MAX
        && zgw_store_snapshot_versions(r->element[1 + ZGW_KIND_MAX], cfg,
                                       errs)
           != ZGW_OK)
    {
        return ZGW_ERROR;
    }

    return rc;
}


/* {"kind:name", version, ...}: kept for the objects cfg holds */
static int
zgw_store_snapshot_versions(const redisReply *list, zgw_config_t *cfg,
    zgw_errors_t *errs)
{
    int          k;
    char        *colon, *end, kind[32];
    size_t       i;
    long long    v;
    redisReply  *field, *value;

    if (list->type != REDIS_REPLY_ARRAY) {
        zgw_errors_add(errs, "redis: snapshot: unexpected reply");
        return ZGW_ERROR;
    }

    for (i = 0; i + 1 < list->elements; i += 2) {
        field = list->element[i];
        value = list->element[i + 1];

        if (field->type != REDIS_REPLY_STRING
            || value->type != REDIS_REPLY_STRING)
        {
            zgw_errors_add(errs, "redis: snapshot: unexpected reply");
            return ZGW_ERROR;
        }

        /* a malformed entry is ignored: the object then has no version */
        colon = memchr(field->str, ':', field->len);
        if (colon == NULL || (size_t) (colon - field->str) >= sizeof(kind)) {
            continue;
        }

        memcpy(kind, field->str, colon - field->str);
        kind[colon - field->str] = '\0';

        k = zgw_kind_from_name(kind);
        if (k < 0 || zgw_config_get(cfg, k, colon + 1) == NULL) {
            continue;
        }

        errno = 0;
        v = strtoll(value->str, &end, 10);
        if (errno || end == value->str || *end != '\0' || v < 0) {
            continue;
        }

        json_object_set_new(cfg->versions[k], colon + 1, json_integer(v));
    }

    return ZGW_OK;
}


/* ------------------------------------------- the apply command, built */


int
zgw_store_argv_push(zgw_store_argv_t *a, const char *s, int owned)
{
    size_t        cap;
    const char  **argv;
    char        **own;

    if (a->n == a->cap) {
        cap = a->cap ? a->cap * 2 : 64;
        argv = realloc(a->argv, cap * sizeof(char *));
        if (argv == NULL) {
            return ZGW_ERROR;
        }
        a->argv = argv;
        own = realloc(a->owned, cap * sizeof(char *));
        if (own == NULL) {
            return ZGW_ERROR;
        }
        a->owned = own;
        a->cap = cap;
    }

    a->argv[a->n++] = s;
    if (owned) {
        a->owned[a->nowned++] = (char *) s;
    }

    return ZGW_OK;
}


void
zgw_store_argv_free(zgw_store_argv_t *a)
{
    size_t  i;

    for (i = 0; i < a->nowned; i++) {
        free(a->owned[i]);
    }

    free(a->owned);
    free(a->argv);
}


/* (op, kind, name, value) for every object that differs; n counts them */
int
zgw_store_diff(zgw_store_argv_t *a, const zgw_config_t *prev,
    const zgw_config_t *next, size_t *n)
{
    int          k;
    char        *text, *old;
    json_t      *obj, *pobj;
    const char  *name;

    for (k = 0; k < ZGW_KIND_MAX; k++) {
        json_object_foreach(next->objs[k], name, obj) {
            text = zgw_object_dump(k, obj);
            if (text == NULL) {
                return ZGW_ERROR;
            }

            pobj = zgw_config_get(prev, k, name);
            if (pobj != NULL) {
                old = zgw_object_dump(k, pobj);
                if (old != NULL && strcmp(old, text) == 0) {
                    free(old);
                    free(text);
                    continue;
                }
                free(old);
            }

            if (zgw_store_argv_push(a, "put", 0) != ZGW_OK
                || zgw_store_argv_push(a, zgw_kind_name(k), 0) != ZGW_OK
                || zgw_store_argv_push(a, name, 0) != ZGW_OK
                || zgw_store_argv_push(a, text, 1) != ZGW_OK)
            {
                free(text);
                return ZGW_ERROR;
            }
            (*n)++;
        }

        json_object_foreach(prev->objs[k], name, obj) {
            if (zgw_config_get(next, k, name) != NULL) {
                continue;
            }

            if (zgw_store_argv_push(a, "delete", 0) != ZGW_OK
                || zgw_store_argv_push(a, zgw_kind_name(k), 0) != ZGW_OK
                || zgw_store_argv_push(a, name, 0) != ZGW_OK
                || zgw_store_argv_push(a, "", 0) != ZGW_OK)
            {
                return ZGW_ERROR;
            }
            (*n)++;
        }

        /*
         * A stored object that did not load (prev->invalid) is deleted
         * when next has it neither as an object nor as invalid: zmqctl
         * delete, import --replace, restore and wipe can remove it.
         */
        json_object_foreach(prev->invalid[k], name, obj) {
            if (zgw_config_get(next, k, name) != NULL
                || zgw_config_get(prev, k, name) != NULL
                || json_object_get(next->invalid[k], name) != NULL)
            {
                continue;
            }

            if (zgw_store_argv_push(a, "delete", 0) != ZGW_OK
                || zgw_store_argv_push(a, zgw_kind_name(k), 0) != ZGW_OK
                || zgw_store_argv_push(a, name, 0) != ZGW_OK
                || zgw_store_argv_push(a, "", 0) != ZGW_OK)
            {
                return ZGW_ERROR;
            }
            (*n)++;
        }
    }

    return ZGW_OK;
}


int
zgw_store_apply_argv(const zgw_config_t *prev, const zgw_config_t *next,
    zgw_store_argv_t *a, size_t *changes)
{
    char  *expected;

    memset(a, 0, sizeof(zgw_store_argv_t));
    *changes = 0;

    expected = malloc(32);
    if (expected == NULL) {
        return ZGW_ERROR;
    }

    snprintf(expected, 32, "%lld", prev->version);

    if (zgw_store_argv_push(a, "EVAL", 0) != ZGW_OK
        || zgw_store_argv_push(a, zgw_store_apply_lua, 0) != ZGW_OK
        || zgw_store_argv_push(a, "0", 0) != ZGW_OK
        || zgw_store_argv_push(a, expected, 1) != ZGW_OK)
    {
        free(expected);
        return ZGW_ERROR;
    }

    return zgw_store_diff(a, prev, next, changes);
}
