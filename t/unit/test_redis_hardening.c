/*
 * Unit tests: what a hostile store or sentinel can make us show or
 * follow. zgw_show() (printable, cut), the new master a +switch-master
 * message names, and the fields of a fleet entry that are kept.
 */

#include "zgw_test_util.h"

#include <jansson.h>

#include "zgw_fleet.h"
#include "zgw_sentinel.h"


static void
test_show(void **state)
{
    char    out[ZGW_SHOW_SIZE], small[8], big[10240];
    size_t  i;

    (void) state;

    assert_string_equal(zgw_show(out, sizeof(out), "ERR wrong", 9),
                        "ERR wrong");
    assert_string_equal(zgw_show(out, sizeof(out), NULL, 5), "");
    assert_string_equal(zgw_show(out, sizeof(out), "", 0), "");

    /* control characters, DEL, bytes >= 0x80, a NUL: '?' */
    assert_string_equal(zgw_show(out, sizeof(out),
                                 "a\r\nb\x1b[31mc\x7f\xc3\xa9\0d", 15),
                        "a??b?[31mc????d");

    /* 10 KB: 200 bytes and "..." */
    memset(big, 'x', sizeof(big));
    big[5] = '\n';
    zgw_show(out, sizeof(out), big, sizeof(big));
    assert_int_equal(strlen(out), ZGW_SHOW_MAX + 3);
    assert_memory_equal(out + ZGW_SHOW_MAX, "...", 3);
    assert_int_equal(out[5], '?');

    for (i = 0; out[i]; i++) {
        assert_true(out[i] >= 0x20 && out[i] < 0x7f);
    }

    /* exactly ZGW_SHOW_MAX: not cut */
    zgw_show(out, sizeof(out), big + 10, ZGW_SHOW_MAX);
    assert_int_equal(strlen(out), ZGW_SHOW_MAX);

    /* a small buffer: what fits, still with "..." */
    assert_string_equal(zgw_show(small, sizeof(small), "abcdefghij", 10),
                        "abcd...");
    assert_string_equal(zgw_show(small, sizeof(small), "abcdefg", 7),
                        "abcdefg");
    assert_string_equal(zgw_show(small, 3, "abcdefg", 7), "ab");
    small[0] = 'z';
    zgw_show(small, 0, "abc", 3);
    assert_int_equal(small[0], 'z');
}


typedef struct {
    const char  *msg;
    int          ok;
    const char  *ip;
    int          port;
} switch_case_t;


static const switch_case_t  switches[] = {
    { "m 127.0.0.1 6379 127.0.0.1 6380", 1, "127.0.0.1", 6380 },
    { "m ::1 6379 ::1 65535", 1, "::1", 65535 },
    { "m 127.0.0.1 6379 10.0.0.1 1", 1, "10.0.0.1", 1 },
    { "other 127.0.0.1 6379 127.0.0.1 6380", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 6380 x", 0, NULL, 0 },
    { "m 127.0.0.1 6379  127.0.0.1 6380", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 6380 ", 0, NULL, 0 },
    { "m 127.0.0.1 6379 localhost 6380", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 0", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 65536", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 -1", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 000006380", 0, NULL, 0 },
    { "m 127.0.0.1 6379 127.0.0.1 63a0", 0, NULL, 0 },
    { "m 127.0.0.1 6379 1111111111222222222233333333334444444444555555 1",
      0, NULL, 0 },
    { "m", 0, NULL, 0 },
    { "", 0, NULL, 0 },
};


static void
test_switch_target(void **state)
{
    int     port, rc;
    char    ip[ZGW_SENTINEL_IP_MAX];
    size_t  i;

    (void) state;

    for (i = 0; i < sizeof(switches) / sizeof(switches[0]); i++) {
        port = -1;
        rc = zgw_sentinel_switch_target(switches[i].msg,
                                        strlen(switches[i].msg), "m", ip,
                                        sizeof(ip), &port);
        if (rc != (switches[i].ok ? 0 : -1)) {
            print_error("case %zu (%s): rc %d\n", i, switches[i].msg, rc);
            fail();
        }

        if (switches[i].ok) {
            assert_string_equal(ip, switches[i].ip);
            assert_int_equal(port, switches[i].port);
        }
    }

    /* a NUL inside the new address */
    rc = zgw_sentinel_switch_target("m 1.1.1.1 1 1.1.1.1\0x 2", 23, "m", ip,
                                    sizeof(ip), &port);
    assert_int_equal(rc, -1);

    /* an address buffer too small: refused, not overrun */
    rc = zgw_sentinel_switch_target(switches[0].msg, strlen(switches[0].msg),
                                    "m", ip, 4, &port);
    assert_int_equal(rc, -1);
}


static redisReply *
fleet_reply(const char *entry)
{
    char         buf[8192];
    void        *r;
    redisReader *rd;

    snprintf(buf, sizeof(buf), "*3\r\n:100\r\n$1\r\n7\r\n*1\r\n$%zu\r\n%s\r\n",
             strlen(entry), entry);

    rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, buf, strlen(buf)), REDIS_OK);
    r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}


static void
test_fleet_known_fields(void **state)
{
    json_t      *doc, *e;
    const char  *key;
    json_t      *v;
    redisReply  *r;
    static const char  *known[] = {
        "kind", "instance", "host", "pid", "software", "version",
        "max_version", "state", "workers", "started", "reported",
        "interval", "lag", "age", NULL
    };
    size_t       i;
    int          found;

    (void) state;

    r = fleet_reply("{\"kind\":\"gateway\",\"instance\":\"gw\","
                    "\"host\":\"h\",\"pid\":12,\"software\":\"ngx_zmq\","
                    "\"version\":5,\"max_version\":6,\"state\":\"connected\","
                    "\"workers\":2,\"started\":10,\"reported\":90,"
                    "\"interval\":1,"
                    "\"evil\":\"<script>\",\"lag\":-5,\"age\":\"x\","
                    "\"nested\":{\"a\":[1,2,3]},"
                    "\"workers2\":1}");
    doc = zgw_fleet_parse(r);
    freeReplyObject(r);
    assert_non_null(doc);
    assert_int_equal(json_array_size(json_object_get(doc, "instances")), 1);
    e = json_array_get(json_object_get(doc, "instances"), 0);

    json_object_foreach(e, key, v) {
        found = 0;
        for (i = 0; known[i] != NULL; i++) {
            if (strcmp(known[i], key) == 0) {
                found = 1;
            }
        }
        if (!found) {
            print_error("unknown key kept: %s\n", key);
            fail();
        }
    }

    assert_int_equal(json_object_size(e), 14);
    assert_int_equal(json_integer_value(json_object_get(e, "lag")), 2);
    assert_int_equal(json_integer_value(json_object_get(e, "age")), 10);
    assert_int_equal(json_integer_value(json_object_get(e, "pid")), 12);
    assert_string_equal(json_string_value(json_object_get(e, "host")), "h");
    json_decref(doc);

    /* known keys of the wrong type: integers left out, texts "?" */
    r = fleet_reply("{\"kind\":\"zmqd\",\"instance\":\"z\",\"version\":1,"
                    "\"reported\":1,\"pid\":\"12\",\"workers\":[1],"
                    "\"interval\":1.5,\"started\":null,"
                    "\"max_version\":{\"a\":1},\"host\":{\"x\":1},"
                    "\"state\":\"a\\u001b[31mb\",\"software\":7}");
    doc = zgw_fleet_parse(r);
    freeReplyObject(r);
    assert_non_null(doc);
    e = json_array_get(json_object_get(doc, "instances"), 0);
    assert_non_null(e);
    assert_null(json_object_get(e, "pid"));
    assert_null(json_object_get(e, "workers"));
    assert_null(json_object_get(e, "interval"));
    assert_null(json_object_get(e, "started"));
    assert_null(json_object_get(e, "max_version"));
    assert_string_equal(json_string_value(json_object_get(e, "host")), "?");
    assert_string_equal(json_string_value(json_object_get(e, "state")), "?");
    assert_string_equal(json_string_value(json_object_get(e, "software")),
                        "?");
    assert_int_equal(json_object_size(e), 9);
    json_decref(doc);
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_show),
        cmocka_unit_test(test_switch_target),
        cmocka_unit_test(test_fleet_known_fields),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
