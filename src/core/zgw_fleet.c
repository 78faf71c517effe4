/*
 * ngx_zmq core: the fleet, every gateway and zmqd that follows one store.
 */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/hiredis.h>

#include "zgw_err.h"
#include "zgw_fleet.h"


const char  zgw_fleet_report_lua[] =
    "local now = tonumber(redis.call('TIME')[1])\n"
    "local ttl = tonumber(ARGV[3])\n"
    "redis.call('SET', 'zmq:fleet:' .. ARGV[1], ARGV[2], 'EX', ttl)\n"
    "redis.call('ZADD', 'zmq:fleet', now + ttl, ARGV[1])\n"
    "redis.call('ZREMRANGEBYSCORE', 'zmq:fleet', '-inf', '(' .. now)\n"
    "return now\n";


const char  zgw_fleet_read_lua[] =
    "local now = tonumber(redis.call('TIME')[1])\n"
    "local ids = redis.call('ZRANGEBYSCORE', 'zmq:fleet', now, '+inf',"
    " 'LIMIT', 0, 1000)\n"
    "local out = {}\n"
    "for _, id in ipairs(ids) do\n"
    "  local e = redis.call('GET', 'zmq:fleet:' .. id)\n"
    "  if e then out[#out + 1] = e end\n"
    "end\n"
    "return {now, redis.call('GET', 'zmq:version') or '0', out}\n";


int
zgw_fleet_name_ok(const char *name)
{
    size_t       n;
    const char  *p;

    n = strlen(name);

    if (n == 0 || n >= ZGW_FLEET_INSTANCE_MAX) {
        return 0;
    }

    for (p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9') || strchr("._:@/-", *p) != NULL))
        {
            return 0;
        }
    }

    return 1;
}


char *
zgw_fleet_entry(const char *kind, const char *instance, const char *host,
    long pid, long long version, long long max_version, const char *state,
    int workers, long long started, int interval)
{
    char    *text;
    json_t  *o;

    o = json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:s, s:i, s:I, s:I,"
                  " s:i}",
                  "kind", kind, "instance", instance,
                  "host", host ? host : "",
                  "pid", (json_int_t) pid,
                  "software", "ngx_zmq",
                  "version", (json_int_t) version,
                  "max_version", (json_int_t) max_version,
                  "state", state ? state : "",
                  "workers", workers,
                  "started", (json_int_t) started,
                  "reported", (json_int_t) time(NULL),
                  "interval", interval);
    if (o == NULL) {
        return NULL;
    }

    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}


static long long
zgw_fleet_int(const redisReply *r)
{
    char  *end;
    long long  v;

    if (r->type == REDIS_REPLY_INTEGER) {
        return r->integer;
    }

    if (r->type == REDIS_REPLY_STRING && r->len > 0 && r->len < 24) {
        v = strtoll(r->str, &end, 10);
        if (end == r->str + r->len) {
            return v;
        }
    }

    return -1;
}


/*
 * The optional fields of an entry, with their types: nothing else of an
 * entry is kept (the store is shared, an entry may hold anything)
 */
static const struct {
    const char  *name;
    int          text;          /* 1: a string, 0: an integer */
} zgw_fleet_fields[] = {
    { "host", 1 },
    { "software", 1 },
    { "state", 1 },
    { "pid", 0 },
    { "max_version", 0 },
    { "workers", 0 },
    { "started", 0 },
    { "interval", 0 },
};


/* a text field: kept when a short string of printable ASCII, else "?" */
static void
zgw_fleet_clean(json_t *out, const char *field, json_t *v)
{
    size_t       i, n;
    const char  *s;

    if (!json_is_string(v) || json_string_length(v) > 255) {
        json_object_set_new(out, field, json_string("?"));
        return;
    }

    s = json_string_value(v);
    n = json_string_length(v);

    for (i = 0; i < n; i++) {
        if (!zgw_printable(s[i])) {
            json_object_set_new(out, field, json_string("?"));
            return;
        }
    }

    json_object_set(out, field, v);
}


/* the known fields of e, checked (kind, instance, version and reported
   are already) */
static json_t *
zgw_fleet_known(json_t *e)
{
    size_t   i;
    json_t  *out, *v;

    out = json_object();
    if (out == NULL) {
        return NULL;
    }

    json_object_set(out, "kind", json_object_get(e, "kind"));
    json_object_set(out, "instance", json_object_get(e, "instance"));
    json_object_set(out, "version", json_object_get(e, "version"));
    json_object_set(out, "reported", json_object_get(e, "reported"));

    for (i = 0; i < sizeof(zgw_fleet_fields) / sizeof(zgw_fleet_fields[0]);
         i++)
    {
        v = json_object_get(e, zgw_fleet_fields[i].name);
        if (v == NULL) {
            continue;
        }

        if (zgw_fleet_fields[i].text) {
            zgw_fleet_clean(out, zgw_fleet_fields[i].name, v);

        } else if (json_is_integer(v)) {
            json_object_set(out, zgw_fleet_fields[i].name, v);
        }

        /* an integer field of another type: left out */
    }

    return out;
}


static int
zgw_fleet_cmp(const void *a, const void *b)
{
    int          c;
    json_t      *x, *y;

    x = *(json_t * const *) a;
    y = *(json_t * const *) b;

    c = strcmp(json_string_value(json_object_get(x, "kind")),
               json_string_value(json_object_get(y, "kind")));
    if (c != 0) {
        return c;
    }

    return strcmp(json_string_value(json_object_get(x, "instance")),
                  json_string_value(json_object_get(y, "instance")));
}


json_t *
zgw_fleet_parse(const struct redisReply *r)
{
    size_t       i, n;
    json_t      *doc, *list, *e, *known, **sorted;
    long long    now, store, version, reported;
    redisReply  *entries, *item;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 3
        || r->element[2]->type != REDIS_REPLY_ARRAY)
    {
        return NULL;
    }

    now = zgw_fleet_int(r->element[0]);
    store = zgw_fleet_int(r->element[1]);
    entries = r->element[2];

    if (now < 0 || store < 0) {
        return NULL;
    }

    sorted = calloc(entries->elements + 1, sizeof(json_t *));
    if (sorted == NULL) {
        return NULL;
    }

    n = 0;

    for (i = 0; i < entries->elements && i < ZGW_FLEET_READ_MAX; i++) {
        item = entries->element[i];

        if (item->type != REDIS_REPLY_STRING || item->len == 0
            || item->len > ZGW_FLEET_ENTRY_MAX)
        {
            continue;
        }

        e = json_loadb(item->str, item->len, JSON_REJECT_DUPLICATES, NULL);

        if (e == NULL || !json_is_object(e)
            || !json_is_string(json_object_get(e, "kind"))
            || !json_is_string(json_object_get(e, "instance"))
            || !json_is_integer(json_object_get(e, "version"))
            || !json_is_integer(json_object_get(e, "reported")))
        {
            json_decref(e);
            continue;
        }

        /* names as a reporter writes them; text without control bytes */
        if (!zgw_fleet_name_ok(json_string_value(json_object_get(e,
                                                                 "instance")))
            || (strcmp(json_string_value(json_object_get(e, "kind")),
                       "gateway") != 0
                && strcmp(json_string_value(json_object_get(e, "kind")),
                          "zmqd") != 0))
        {
            json_decref(e);
            continue;
        }

        version = json_integer_value(json_object_get(e, "version"));
        reported = json_integer_value(json_object_get(e, "reported"));

        /* no reporter writes these: left out, and no overflow below */
        if (version < 0 || reported < 0) {
            json_decref(e);
            continue;
        }

        /* only what a reporter writes, in its types */
        known = zgw_fleet_known(e);
        json_decref(e);
        e = known;

        if (e == NULL) {
            continue;
        }

        json_object_set_new(e, "lag", json_integer(
            store > version ? (json_int_t) (store - version) : 0));
        json_object_set_new(e, "age", json_integer(
            now > reported ? (json_int_t) (now - reported) : 0));

        sorted[n++] = e;
    }

    qsort(sorted, n, sizeof(json_t *), zgw_fleet_cmp);

    doc = json_object();
    list = json_array();

    if (doc == NULL || list == NULL) {
        json_decref(doc);
        json_decref(list);
        for (i = 0; i < n; i++) {
            json_decref(sorted[i]);
        }
        free(sorted);
        return NULL;
    }

    for (i = 0; i < n; i++) {
        json_array_append_new(list, sorted[i]);
    }

    free(sorted);

    json_object_set_new(doc, "store_version", json_integer(store));
    json_object_set_new(doc, "time", json_integer(now));
    json_object_set_new(doc, "instances", list);

    return doc;
}
