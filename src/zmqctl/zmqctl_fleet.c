/*
 * zmqctl fleet: every gateway and zmqd that follows the store, as they
 * last reported themselves (see zgw_fleet.h).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "zgw_err.h"
#include "zgw_fleet.h"
#include "zgw_redis_conn.h"
#include "zmqctl.h"


int
zmqctl_fleet(zmqctl_opts_t *o)
{
    int            json, behind;
    char          *text, shown[ZGW_SHOW_SIZE];
    json_t        *doc, *e;
    size_t         i;
    redisReply    *r;
    zgw_store_t   *st;
    const char    *argv[3] = { "EVAL", zgw_fleet_read_lua, "0" };

    if (o->argc != 0) {
        fprintf(stderr, "zmqctl: fleet takes no arguments (only --json)\n");
        return ZMQCTL_EXIT_USAGE;
    }

    json = o->json;

    st = zmqctl_connect(o);
    if (st == NULL) {
        return ZMQCTL_EXIT_FAIL;
    }

    r = zgw_redis_command_argv(zgw_store_context(st), 3, argv, NULL);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "zmqctl: fleet: %s\n",
                r ? zgw_show(shown, sizeof(shown), r->str, r->len)
                  : zgw_redis_error(zgw_store_context(st)));
        if (r) {
            freeReplyObject(r);
        }
        zgw_store_close(st);
        return ZMQCTL_EXIT_FAIL;
    }

    doc = zgw_fleet_parse(r);
    freeReplyObject(r);
    zgw_store_close(st);

    if (doc == NULL) {
        fprintf(stderr, "zmqctl: fleet: the store's answer has not the "
                "expected shape\n");
        return ZMQCTL_EXIT_FAIL;
    }

    behind = 0;

    json_array_foreach(json_object_get(doc, "instances"), i, e) {
        if (json_integer_value(json_object_get(e, "lag")) > 0) {
            behind++;
        }
    }

    if (json) {
        text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (text != NULL) {
            printf("%s\n", text);
            free(text);
        }
        json_decref(doc);
        return behind ? ZMQCTL_EXIT_FAIL : ZMQCTL_EXIT_OK;
    }

    printf("store version %lld, %zu instances\n",
           (long long) json_integer_value(json_object_get(doc,
                                                          "store_version")),
           json_array_size(json_object_get(doc, "instances")));
    printf("%-8s %-32s %-20s %8s %10s %5s %5s  %s\n", "KIND", "INSTANCE",
           "HOST", "PID", "VERSION", "LAG", "AGE", "STATE");

    json_array_foreach(json_object_get(doc, "instances"), i, e) {
        printf("%-8.8s %-32.64s %-20.40s %8lld %10lld %5lld %4llds  %.32s\n",
               json_string_value(json_object_get(e, "kind")),
               json_string_value(json_object_get(e, "instance")),
               json_is_string(json_object_get(e, "host"))
               ? json_string_value(json_object_get(e, "host")) : "-",
               (long long) json_integer_value(json_object_get(e, "pid")),
               (long long) json_integer_value(json_object_get(e, "version")),
               (long long) json_integer_value(json_object_get(e, "lag")),
               (long long) json_integer_value(json_object_get(e, "age")),
               json_is_string(json_object_get(e, "state"))
               ? json_string_value(json_object_get(e, "state")) : "-");
    }

    json_decref(doc);

    /* 0 when every instance runs the store's version; 1 when some lag */
    return behind ? ZMQCTL_EXIT_FAIL : ZMQCTL_EXIT_OK;
}
