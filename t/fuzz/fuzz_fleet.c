/*
 * libFuzzer target: the fleet as zmq_status and zmqctl fleet read it
 * (zgw_fleet_parse), from a store anyone with its password can write to.
 *
 * The first byte picks what the rest is:
 *
 *   even: RESP bytes, through hiredis' reader bounded as ours are, each
 *         reply into zgw_fleet_parse()
 *   odd:  lines: the store's time, its version, then one entry (JSON) a
 *         line, made into the reply the read script gives ({now, version,
 *         {entry, ...}}), so that the fuzzer works on the entries' JSON
 *
 * What must hold: what is returned is {"store_version", "time",
 * "instances"} with no other key; each instance has kind "gateway" or
 * "zmqd", an instance name zgw_fleet_name_ok() takes, integers version,
 * reported, lag and age that are not negative, and of the other fields
 * only those a reporter writes, each in its type (a text of printable
 * ASCII, at most 255 bytes); at most ZGW_FLEET_READ_MAX instances, sorted
 * by kind then instance.
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "zgw_fleet.h"
#include "zgw_resp_limit.h"


static void
fuzz_fail(const char *what, json_t *doc)
{
    char  *text;

    text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
    fprintf(stderr, "fuzz_fleet: %s\n%s\n", what, text ? text : "");
    free(text);
    abort();
}


static int
fuzz_printable(const char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if ((unsigned char) s[i] < 0x20 || (unsigned char) s[i] >= 0x7f) {
            return 0;
        }
    }

    return 1;
}


static void
fuzz_check(json_t *doc)
{
    size_t       i, n;
    int          c;
    json_t      *list, *e, *prev, *v;
    const char  *key, *s;

    static const char  *texts[] = { "kind", "instance", "host", "software",
                                    "state", NULL };
    static const char  *ints[] = { "version", "reported", "lag", "age",
                                   "pid", "max_version", "workers",
                                   "started", "interval", NULL };

    if (!json_is_object(doc) || json_object_size(doc) != 3
        || !json_is_integer(json_object_get(doc, "store_version"))
        || !json_is_integer(json_object_get(doc, "time"))
        || !json_is_array(json_object_get(doc, "instances")))
    {
        fuzz_fail("not {store_version, time, instances}", doc);
    }

    if (json_integer_value(json_object_get(doc, "store_version")) < 0
        || json_integer_value(json_object_get(doc, "time")) < 0)
    {
        fuzz_fail("a negative store version or time", doc);
    }

    list = json_object_get(doc, "instances");

    if (json_array_size(list) > ZGW_FLEET_READ_MAX) {
        fuzz_fail("more than ZGW_FLEET_READ_MAX instances", doc);
    }

    prev = NULL;

    json_array_foreach(list, i, e) {
        if (!json_is_object(e)) {
            fuzz_fail("an instance that is not an object", doc);
        }

        json_object_foreach(e, key, v) {
            for (n = 0; texts[n] != NULL; n++) {
                if (strcmp(key, texts[n]) == 0) {
                    break;
                }
            }

            if (texts[n] != NULL) {
                if (!json_is_string(v)
                    || json_string_length(v) > 255
                    || !fuzz_printable(json_string_value(v),
                                       json_string_length(v)))
                {
                    fuzz_fail("a text field that is not short printable "
                              "text", doc);
                }
                continue;
            }

            for (n = 0; ints[n] != NULL; n++) {
                if (strcmp(key, ints[n]) == 0) {
                    break;
                }
            }

            if (ints[n] == NULL) {
                fuzz_fail("a field no reporter writes", doc);
            }

            if (!json_is_integer(v)) {
                fuzz_fail("an integer field that is not an integer", doc);
            }
        }

        s = json_string_value(json_object_get(e, "kind"));
        if (s == NULL
            || (strcmp(s, "gateway") != 0 && strcmp(s, "zmqd") != 0))
        {
            fuzz_fail("a kind neither gateway nor zmqd", doc);
        }

        s = json_string_value(json_object_get(e, "instance"));
        if (s == NULL || !zgw_fleet_name_ok(s)) {
            fuzz_fail("an instance name a reporter cannot have", doc);
        }

        for (n = 0; n < 4; n++) {
            v = json_object_get(e, ints[n]);
            if (!json_is_integer(v) || json_integer_value(v) < 0) {
                fuzz_fail("version, reported, lag or age missing or "
                          "negative", doc);
            }
        }

        if (prev != NULL) {
            c = strcmp(json_string_value(json_object_get(prev, "kind")),
                       json_string_value(json_object_get(e, "kind")));
            if (c == 0) {
                c = strcmp(json_string_value(json_object_get(prev,
                                                             "instance")),
                           json_string_value(json_object_get(e,
                                                             "instance")));
            }
            if (c > 0) {
                fuzz_fail("instances not sorted", doc);
            }
        }

        prev = e;
    }
}


static void
fuzz_parse(redisReader *reader)
{
    void    *reply;
    json_t  *doc;

    for ( ;; ) {
        reply = NULL;

        if (redisReaderGetReply(reader, &reply) != REDIS_OK
            || reply == NULL)
        {
            break;
        }

        doc = zgw_fleet_parse(reply);

        if (doc != NULL) {
            fuzz_check(doc);
            json_decref(doc);
        }

        freeReplyObject(reply);
    }
}


/* "now\nversion\nentry\nentry..." as the read script's reply */
static char *
fuzz_lines_reply(const uint8_t *data, size_t size, size_t *len)
{
    char         *out, *p;
    size_t        i, start, n, field, cap;
    const char   *s;

    /* at worst every byte a line of its own: "$0\r\n\r\n" each */
    cap = size * 8 + 64;
    out = malloc(cap);
    if (out == NULL) {
        return NULL;
    }

    /* the entries' count: the lines after the first two */
    n = 0;
    for (i = 0; i < size; i++) {
        n += data[i] == '\n';
    }
    n = n >= 2 ? n - 1 : 0;

    p = out;
    p += sprintf(p, "*3\r\n");

    field = 0;
    start = 0;
    s = (const char *) data;

    for (i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n') {
            continue;
        }

        if (field == 2) {
            p += sprintf(p, "*%zu\r\n", n);
        }

        p += sprintf(p, "$%zu\r\n", i - start);
        memcpy(p, s + start, i - start);
        p += i - start;
        *p++ = '\r';
        *p++ = '\n';

        field++;
        start = i + 1;
    }

    /* fewer than three lines: no entries */
    while (field < 2) {
        p += sprintf(p, "$1\r\n0\r\n");
        field++;
    }

    if (field == 2) {
        p += sprintf(p, "*0\r\n");
    }

    *len = (size_t) (p - out);
    return out;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char               *text;
    size_t              len;
    redisReader        *reader;
    zgw_resp_budget_t   budget = { 0, 0, 0 };

    if (size < 1) {
        return 0;
    }

    reader = redisReaderCreate();
    if (reader == NULL) {
        return 0;
    }

    /* bounded as every reader of ours is */
    zgw_resp_limit(reader, &budget);

    if (data[0] & 1) {
        text = fuzz_lines_reply(data + 1, size - 1, &len);
        if (text == NULL) {
            redisReaderFree(reader);
            return 0;
        }

        if (redisReaderFeed(reader, text, len) == REDIS_OK) {
            fuzz_parse(reader);
        }

        free(text);

    } else if (redisReaderFeed(reader, (const char *) data + 1, size - 1)
               == REDIS_OK)
    {
        fuzz_parse(reader);
    }

    redisReaderFree(reader);

    return 0;
}
