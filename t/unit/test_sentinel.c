/*
 * Unit tests: what a sentinel (or a master) answers, read as untrusted
 * input (zgw_sentinel.c). Data-driven: each case is the raw RESP bytes a
 * peer sends and what must come of them.
 */

#include "zgw_test_util.h"

#include "zgw_sentinel.h"


typedef struct {
    const char  *resp;
    size_t       len;          /* 0: strlen */
    int          ok;
    const char  *ip;           /* when ok */
    int          port;
    int          ipv6;
    const char  *why;          /* when not: a part of the reason */
} master_case_t;


static const master_case_t  masters[] = {
    { "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n", 0, 1, "127.0.0.1", 6379, 0,
      NULL },
    { "*2\r\n$3\r\n::1\r\n$5\r\n65535\r\n", 0, 1, "::1", 65535, 1, NULL },
    { "$-1\r\n", 0, 0, NULL, 0, 0, "does not know the master 'm'" },
    { "*-1\r\n", 0, 0, NULL, 0, 0, "does not know the master" },
    { "-IDONTKNOW No such master with that name\r\n", 0, 0, NULL, 0, 0,
      "answered an error: IDONTKNOW" },
    { "+OK\r\n", 0, 0, NULL, 0, 0, "not an address and a port" },
    { ":1\r\n", 0, 0, NULL, 0, 0, "not an address and a port" },
    { "*1\r\n$9\r\n127.0.0.1\r\n", 0, 0, NULL, 0, 0, "not an address" },
    { "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n$1\r\nx\r\n", 0, 0, NULL, 0, 0,
      "not an address" },
    { "*2\r\n:1\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0, "not an address" },
    { "*2\r\n$9\r\n127.0.0.1\r\n:6379\r\n", 0, 0, NULL, 0, 0,
      "not an address" },
    /* a name: never resolved on a sentinel's word */
    { "*2\r\n$9\r\nlocalhost\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0,
      "'localhost', which is not an IP address" },
    { "*2\r\n$13\r\nredis.example\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0,
      "not an IP address" },
    { "*2\r\n$0\r\n\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0,
      "not an IP address" },
    /* a NUL inside: "127.0.0.1\0evil" */
    { "*2\r\n$14\r\n127.0.0.1\0evil\r\n$4\r\n6379\r\n", 35, 0, NULL, 0, 0,
      "not an IP address" },
    /* too long for any address, control characters shown as '?' */
    { "*2\r\n$60\r\n1111111111222222222233333333334444444444555555555566666666"
      "\x01\x02\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0, "not an IP address" },
    { "*2\r\n$11\r\n127.0.0.1 x\r\n$4\r\n6379\r\n", 0, 0, NULL, 0, 0,
      "not an IP address" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$1\r\n0\r\n", 0, 0, NULL, 0, 0,
      "port '0', which is not 1-65535" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n65536\r\n", 0, 0, NULL, 0, 0,
      "not 1-65535" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$0\r\n\r\n", 0, 0, NULL, 0, 0,
      "not 1-65535" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n-6379\r\n", 0, 0, NULL, 0, 0,
      "not 1-65535" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$21\r\n000000000000000006379\r\n", 0, 0,
      NULL, 0, 0, "not 1-65535" },
    { "*2\r\n$9\r\n127.0.0.1\r\n$5\r\n63 79\r\n", 0, 0, NULL, 0, 0,
      "not 1-65535" },
};


static redisReply *
parse(const char *resp, size_t len)
{
    void         *r;
    redisReader  *rd;

    rd = redisReaderCreate();
    assert_non_null(rd);
    assert_int_equal(redisReaderFeed(rd, resp, len ? len : strlen(resp)),
                     REDIS_OK);
    r = NULL;
    assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
    assert_non_null(r);
    redisReaderFree(rd);
    return r;
}


static void
test_master_replies(void **state)
{
    int          port, ipv6, rc;
    char         ip[ZGW_SENTINEL_IP_MAX], why[256];
    size_t       i;
    redisReply  *r;

    (void) state;

    for (i = 0; i < sizeof(masters) / sizeof(masters[0]); i++) {
        r = parse(masters[i].resp, masters[i].len);
        why[0] = '\0';
        port = -1;
        rc = zgw_sentinel_master_reply(r, "m", ip, sizeof(ip), &port, &ipv6,
                                       why, sizeof(why));
        if (masters[i].ok) {
            assert_int_equal(rc, 0);
            assert_string_equal(ip, masters[i].ip);
            assert_int_equal(port, masters[i].port);
            assert_int_equal(ipv6, masters[i].ipv6);

        } else {
            if (rc != -1 || strstr(why, masters[i].why) == NULL) {
                print_error("case %zu: rc %d, why \"%s\"\n", i, rc, why);
                fail();
            }
            /* what is shown of a peer's text is printable */
            for (rc = 0; why[rc]; rc++) {
                assert_true(why[rc] >= 0x20 && why[rc] < 0x7f);
            }
        }

        freeReplyObject(r);
    }

    /* a buffer too small for an address is refused, not overrun */
    r = parse(masters[1].resp, 0);
    assert_int_equal(zgw_sentinel_master_reply(r, "m", ip, 3, &port, &ipv6,
                                               why, sizeof(why)), -1);
    freeReplyObject(r);
    assert_int_equal(zgw_sentinel_master_reply(NULL, "m", ip, sizeof(ip),
                                               &port, &ipv6, why,
                                               sizeof(why)), -1);
}


static void
test_role(void **state)
{
    char         why[128];
    redisReply  *r;

    (void) state;

    r = parse("*3\r\n$6\r\nmaster\r\n:10\r\n*0\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 1);
    freeReplyObject(r);

    r = parse("*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:6379\r\n"
              "$9\r\nconnected\r\n:10\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    assert_string_equal(why, "a replica, not the master");
    freeReplyObject(r);

    r = parse("*2\r\n$8\r\nsentinel\r\n*0\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "'sentinel'"));
    freeReplyObject(r);

    r = parse("-NOAUTH Authentication required.\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    assert_non_null(strstr(why, "NOAUTH"));
    freeReplyObject(r);

    r = parse("*0\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    freeReplyObject(r);

    r = parse("*1\r\n:1\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    freeReplyObject(r);

    r = parse("$6\r\nmaster\r\n", 0);
    assert_int_equal(zgw_sentinel_is_master(r, why, sizeof(why)), 0);
    freeReplyObject(r);

    r = parse("-READONLY You can't write against a read only replica.\r\n",
              0);
    assert_true(zgw_redis_is_readonly(r));
    freeReplyObject(r);
    r = parse("+READONLY\r\n", 0);
    assert_false(zgw_redis_is_readonly(r));
    freeReplyObject(r);
}


static void
test_switch_master(void **state)
{
    const char  *m = "mymaster 127.0.0.1 6379 127.0.0.1 6380";

    (void) state;

    assert_true(zgw_sentinel_switch_is_for(m, strlen(m), "mymaster"));
    assert_false(zgw_sentinel_switch_is_for(m, strlen(m), "my"));
    assert_false(zgw_sentinel_switch_is_for(m, strlen(m), "mymaster2"));
    assert_false(zgw_sentinel_switch_is_for(m, 8, "mymaster"));
    assert_false(zgw_sentinel_switch_is_for(m, strlen(m), ""));
    assert_false(zgw_sentinel_switch_is_for("", 0, "mymaster"));
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test(test_master_replies),
        cmocka_unit_test(test_role),
        cmocka_unit_test(test_switch_master),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
